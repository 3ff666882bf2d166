/*
 * pipeline/register/register.h — rigid (6 degrees of freedom) or rigid + scaling (9) registration
 * of two volumes of one study by Mattes mutual information, multi-resolution, masked to the
 * fixed image's foreground; applying the result; and a checkerboard picture for QC.
 *
 * Contract:
 *  - The transform T maps a point of the FIXED volume's world (RAS mm, volume.h) to the point of
 *    the MOVING volume's world that shows the same anatomy:
 *        y = T(x) = R·S·(x − c) + c + t,   R = Rz(rz)·Ry(ry)·Rx(rx),   S = diag(sx, sy, sz)
 *    with c the centre of the fixed foreground (the rotation centre), angles about the RAS
 *    axes, S = identity for 6 degrees of freedom. rp_reg_result.matrix is T as a 4x4, so the
 *    moving volume aligned to the fixed one is M(T(x)); equivalently the moving volume with
 *    affine T⁻¹·A_moving (how fusion applies it: no extra resampling pass).
 *  - Metric: Mattes et al. (2003) mutual information: fixed intensities binned with a box
 *    (zero-order) Parzen window, moving intensities with a cubic B-spline window, bins over the
 *    0.5–99.5th percentile range of each image's foreground; the analytic gradient uses the
 *    derivative of the trilinear interpolant. Samples: voxel centres of the fixed foreground
 *    mask (given, or Otsu of the fixed volume dilated by two voxels), a seeded subset when there
 *    are more than max_samples; samples that map outside the moving volume are left out.
 *  - Optimiser: regular-step gradient ascent on MI in scaled parameters (rotation and scale
 *    × the RMS radius of the samples, so every parameter moves tissue by about the step in mm);
 *    the step halves when the gradient turns by more than 90°; a level stops when the step
 *    falls below min_step_mm (× the level's shrink) or after max_iterations.
 *  - Pyramid: each level smooths (Gaussian, σ = shrink/2 voxels) and shrinks both volumes so
 *    that their spacing approaches shrink × the fixed volume's smallest spacing.
 *  - Never worse than the start: when MI at the result is below MI at the identity (finest
 *    level, same samples), the identity is returned with kept_identity = 1.
 *  - Deterministic: the same inputs and parameters give the same result bits whatever the
 *    number of OpenMP threads (sums are taken per fixed block of samples and added in order).
 *  - Nothing is allocated for the caller except where a function says "new".
 *  - Errors: RP_EINVAL (arguments, a volume under 4 voxels along an axis), RP_ENOMEM,
 *    RP_EGEOM (no overlap: too few fixed samples fall inside the moving volume), with a reason
 *    in err.
 */
#ifndef RP_PIPELINE_REGISTER_H
#define RP_PIPELINE_REGISTER_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/volume/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RP_REG_MAX_LEVELS 5

typedef struct rp_reg_params {
    int dof;                  /* 6 (rigid, default) or 9 (rigid + scaling per axis) */
    int levels;               /* pyramid levels (3): shrink 2^(levels-1) ... 1 */
    int bins;                 /* histogram bins (32) */
    size_t max_samples;       /* fixed samples per level (100000; 0: every masked voxel) */
    int max_iterations;       /* per level (200) */
    double initial_step_mm;   /* first step at the coarsest level (2.0) */
    double min_step_mm;       /* stop a level below this × its shrink (0.005) */
    uint64_t seed;            /* sample subset (1) */
} rp_reg_params;

void rp_reg_defaults(rp_reg_params *p);

typedef struct rp_reg_result {
    double rotation_deg[3];    /* rx, ry, rz */
    double translation_mm[3];  /* t (RAS) */
    double scale[3];           /* sx, sy, sz (1 for 6 DOF) */
    double center_mm[3];       /* c */
    double matrix[4][4];       /* T: fixed world -> moving world (RAS mm) */
    double mi_initial;         /* MI (nats) at the identity, finest level */
    double mi_final;           /* MI at the result, finest level */
    double max_displacement_mm;/* largest |T(x) - x| over the fixed samples: what moved */
    double rms_displacement_mm;
    int kept_identity;         /* 1: MI at the result was below MI at the identity (an
                                  ill-posed problem, e.g. scaling along an object that leaves
                                  the field of view): the identity is returned instead */
    int iterations[RP_REG_MAX_LEVELS];
    int levels;
    size_t samples[RP_REG_MAX_LEVELS];
    double seconds;
} rp_reg_result;

/* Register `moving` to `fixed` (channel 0 of each). fixed_mask: the samples' region on the
 * fixed grid (NULL: Otsu of fixed, dilated). */
int rp_register_rigid(const rp_volume *fixed, const rp_mask *fixed_mask, const rp_volume *moving,
                      const rp_reg_params *p, rp_reg_result *res, char *err, size_t errlen);

/* T (4x4) from the parameters: angles in degrees, translation in mm, scales, centre. */
void rp_reg_compose(const double rot_deg[3], const double trans[3], const double scale[3],
                    const double center[3], double T[4][4]);

/* New volume: channel 0 of `moving` sampled on `grid`'s lattice (dims and affine; its data are
 * not read) at T(x): order 0 nearest, 1 trilinear; 0 outside the moving volume. */
int rp_register_resample(const rp_volume *moving, const rp_volume *grid, const double T[4][4],
                         int order, rp_volume **out);

/* Mutual information (nats) of fixed and moving∘T over fixed_mask (NULL: whole fixed volume)
 * with the metric above at full resolution and every masked voxel: a quality number to report
 * beside an applied transform. */
int rp_register_mi(const rp_volume *fixed, const rp_mask *fixed_mask, const rp_volume *moving,
                   const double T[4][4], int bins, double *mi);

/* The transform as ITK writes it (#Insight Transform File V1.0, AffineTransform_double_3_3 in
 * LPS, mapping fixed to moving points, as ITK/ANTs/Slicer expect). buf gets NUL-terminated
 * text; RP_EINVAL when it does not fit. */
int rp_reg_itk_text(const double T[4][4], char *buf, size_t buflen);

/* r as the JSON object sidecars and transform files carry (method, matrix, rotation,
 * translation, scale for dof 9, metric before/after, displacement, iterations). New cJSON
 * object owned by the caller (cJSON_Delete); passed as void * to keep cJSON out of C++. */
struct cJSON *rp_reg_result_json(const rp_reg_result *r, int dof, int bins);
/* A 4x4 matrix as a JSON array of rows (new cJSON array, owned by the caller). */
struct cJSON *rp_reg_matrix_json(const double m[4][4]);
/* The QC picture of a registration: fixed vs moving resampled through the identity (top row,
 * before) and through T (bottom row, after) as an 8-bit checkerboard; *pix malloc'd. */
int rp_reg_checkerboard_before_after(const rp_volume *fixed, const rp_volume *moving,
                                     const double T[4][4], uint8_t **pix, int *w, int *h);

/* QC picture: checkerboards of `fixed` and each moved[r] (all on fixed's grid), one row per
 * moved volume (e.g. before and after registration), each row the axial | coronal | sagittal
 * planes through the volume centre, `tile` output pixels per square, physical aspect kept,
 * each volume windowed to its own 0.5-99.5th percentile (moved: over its non-zero voxels).
 * *pix is new (w*h grey bytes, top row first; free()). */
int rp_reg_checkerboard(const rp_volume *fixed, const rp_volume *const *moved, int n_rows,
                        int tile, uint8_t **pix, int *w, int *h);

#ifdef __cplusplus
}
#endif
#endif
