/*
 * pipeline/augment/augment.h — reproducible offline data augmentation of an image and its masks
 * (used by `radprep curate --augment`), and the NIfTI reader that curation needs for it.
 *
 * Contract:
 *  - A SPEC is text of blank-separated transforms, each with its range:
 *        rotate(D) | rotate(DX,DY,DZ)   degrees about the world x, y, z axes through the volume
 *                                       centre, each uniform in [-D, D]
 *        scale(F) | scale(LO,HI)        isotropic zoom, uniform in [1-F, 1+F] or [LO, HI]
 *        flip(AXES)                     AXES among x y z (the voxel axis nearest each world
 *                                       axis); each listed axis is flipped with probability 1/2
 *        elastic(ALPHA,SIGMA)           smooth deformation: control points every SIGMA mm with
 *                                       displacements uniform in [-ALPHA, ALPHA] mm, cubic B-spline
 *        gamma(LO,HI)                   intensity gamma uniform in [LO, HI] on the image rescaled
 *                                       to its own [min, max]
 *        noise(SD) | noise(LO,HI)       additive Gaussian noise, its SD uniform in [0, SD] (or
 *                                       [LO, HI]) in image units
 *        bias(C)                        multiplicative field exp(quadratic polynomial of the
 *                                       normalised coordinates), coefficients uniform in [-C, C];
 *                                       multiplies the intensity above the image's minimum
 *        interp(nearest|linear|bspline3) image interpolation (default: the caller's, else linear)
 *        masks(labels|nearest)          mask interpolation (default labels: the label with the
 *                                       largest trilinear weight, so boundaries move with the
 *                                       image's; nearest: nearest neighbour)
 *    Spatial transforms are composed into one mapping and every output voxel is interpolated
 *    once. Outside the input the image takes its minimum value, masks 0.
 *  - rp_aug_draw() draws one copy's parameters from (seed, case id, copy number) only, with a
 *    counter-based generator: the same three give the same numbers on any machine, whatever the
 *    order in which cases are processed. rp_aug_apply_*() are pure functions of (input, draw):
 *    same bytes out whatever the number of threads (per-voxel noise is hashed from its index).
 *  - Errors: RP_EINVAL with a reason (parse), RP_ENOMEM, RP_EIO / RP_EPARSE (reader).
 */
#ifndef RP_PIPELINE_AUGMENT_H
#define RP_PIPELINE_AUGMENT_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/volume/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { RP_AUG_MASK_LABELS = 0, RP_AUG_MASK_NEAREST = 1 };

typedef struct rp_aug_spec {
    int has_rotate, has_scale, has_flip, has_elastic, has_gamma, has_noise, has_bias;
    double rot_deg[3];
    double scale_lo, scale_hi;
    int flip_axes[3];          /* world x, y, z listed */
    double elastic_alpha_mm, elastic_sigma_mm;
    double gamma_lo, gamma_hi;
    double noise_lo, noise_hi;
    double bias_coef;
    int interp;                /* -1: the caller's; else 0 nearest, 1 linear, 3 bspline3 */
    int mask_mode;             /* RP_AUG_MASK_* */
    char text[512];            /* canonical SPEC (rp_aug_spec_parse) */
} rp_aug_spec;

/* Parse SPEC text; RP_EINVAL with a reason such as "rotate(a): 'a' is not a number". */
int rp_aug_parse(const char *text, rp_aug_spec *spec, char *err, size_t errlen);

#define RP_AUG_BIAS_TERMS 9 /* x y z x² y² z² xy xz yz */

/* One copy's drawn parameters. */
typedef struct rp_aug_draw {
    double rot_deg[3];
    double scale;
    int flip[3];               /* world x, y, z */
    double elastic_alpha_mm, elastic_sigma_mm;
    uint64_t elastic_seed;
    double gamma;
    double noise_sd;
    uint64_t noise_seed;
    double bias[RP_AUG_BIAS_TERMS];
    int interp;                /* image interpolation used */
    int mask_mode;
} rp_aug_draw;

/* Draw copy `copy` (1-based) of case `case_id` under `seed`; default_interp is used when the
 * spec has no interp(). */
void rp_aug_draw_params(const rp_aug_spec *s, uint64_t seed, const char *case_id, int copy,
                        int default_interp, rp_aug_draw *d);
/* The draw as a new JSON object (what the manifest lists). */
cJSON *rp_aug_draw_json(const rp_aug_spec *s, const rp_aug_draw *d);

/* New volume: channel 0 of img augmented (spatial + intensity) on its own grid. */
int rp_aug_apply_image(const rp_volume *img, const rp_aug_draw *d, rp_volume **out);
/* New label volume: labels (values 0..255 held as float, on img's grid) through the same
 * spatial mapping only, with d->mask_mode. */
int rp_aug_apply_mask(const rp_volume *labels, const rp_aug_draw *d, rp_volume **out);

/* ---- whole cases on disk ------------------------------------------------------------------- */

/* The image interpolation of the rule that made a case: the `resample` step's in the sidecar's
 * Provenance.Recipe.steps (0 nearest, 1 linear, 3 bspline3), else 1 (linear). */
int rp_aug_interp_of_sidecar(const cJSON *sidecar);

/* One augmented copy on disk: img_src -> img_dst (float32), mask_src[k] -> mask_dst[k] (uint8
 * labels), all through draw d. .nii.gz destinations are gzip-compressed (same bytes every run).
 * Every mask must lie on the image's grid (RP_EGEOM otherwise). */
int rp_aug_case_files(const rp_aug_draw *d, const char *img_src, const char *img_dst,
                      const char *const *mask_src, const char *const *mask_dst, int n_masks,
                      char *err, size_t errlen);

/* ---- NIfTI reading (libniftiio) ------------------------------------------------------------- */

/* New float32 volume from a .nii / .nii.gz (scl_slope/inter applied; affine: sform when its
 * code is set, else qform, else the pixdim diagonal; 4-D files give their channels). */
int rp_aug_read_nifti(const char *path, rp_volume **out, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
