/*
 * pipeline/imgops.h — numeric kernels behind the CT and generic steps (internal to pipeline/
 * and its tests; nothing outside pipeline/ includes it).
 *
 * Conventions: volumes are rp_volume (float32, x fastest); masks are uint8 0/1 arrays with the
 * same dims; every kernel is a pure function of its inputs; OpenMP over slices or lines.
 */
#ifndef RP_PIPELINE_IMGOPS_H
#define RP_PIPELINE_IMGOPS_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/step.h"
#include "pipeline/volume/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- resample.c ---------------------------------------------------------------------- */
enum { RP_INTERP_NEAREST = 0, RP_INTERP_LINEAR = 1, RP_INTERP_BSPLINE3 = 3 };

/* New grid for a target spacing (origin fixed; n' = max(1, round(n * old / new)); voxel i'
 * sits at old index i' * new/old). */
void rp_resample_grid(const int dim[3], const double old_sp[3], const double new_sp[3],
                      int new_dim[3]);
/* Resample *vol to new_sp with one interpolation order per axis (0, 1 or 3); boundary:
 * mirror (scipy.ndimage mode='mirror', prefilter included for order 3). Replaces *vol
 * (the old one is freed on success). */
int rp_resample_volume(rp_volume **vol, const double new_sp[3], const int order[3]);
/* Nearest-neighbour resample of a mask onto new_dim with the same index scale. */
int rp_resample_mask(rp_mask **m, const int new_dim[3], const double scale[3]);
/* In-place cubic B-spline prefilter of a float line set: n samples along an axis with the
 * given stride, mirror boundary (exposed for tests). */
void rp_bspline_prefilter_line(double *c, int n);

/* ---- morph.c ------------------------------------------------------------------------- */
/* Box structuring element, radius per axis in voxels (0: no change along that axis). */
int rp_morph_dilate(uint8_t *m, const int dim[3], const int r[3]);
/* Erosion treats outside the volume as foreground, so closing never eats the border. */
int rp_morph_erode(uint8_t *m, const int dim[3], const int r[3]);
int rp_morph_close(uint8_t *m, const int dim[3], const int r[3]);
int rp_morph_open(uint8_t *m, const int dim[3], const int r[3]);
/* Fill holes slice by slice (2-D, 4-connected background) in slices normal to `axis`. */
int rp_morph_fill_holes_2d(uint8_t *m, const int dim[3], int axis);
/* Same, filling only holes of at most max_area pixels (0: any size). */
int rp_morph_fill_holes_2d_max(uint8_t *m, const int dim[3], int axis, long max_area);
/* Fill 3-D holes: background components (6-connected) not touching the volume border. */
int rp_morph_fill_holes_3d(uint8_t *m, const int dim[3]);

/* Connected components (6-connectivity) on runs along x. */
typedef struct rp_cc_comp {
    int64_t voxels;
    int bbox[6];   /* x0,x1,y0,y1,z0,z1 inclusive */
    double sum[3]; /* sum of voxel indices, for the centroid */
    int border;    /* bit 0/1/2: touches an x / y / z face of the volume */
} rp_cc_comp;
typedef struct rp_cc rp_cc;
int rp_cc_label(const uint8_t *m, const int dim[3], rp_cc **out);
void rp_cc_free(rp_cc *cc);
int rp_cc_count(const rp_cc *cc);
const rp_cc_comp *rp_cc_get(const rp_cc *cc, int label); /* label in [0, count) */
/* Set out[v] = value for every voxel of each component with keep[label] != 0. */
void rp_cc_paint(const rp_cc *cc, const uint8_t *keep, uint8_t *out, uint8_t value);

/* ---- masks.c ------------------------------------------------------------------------- */
/* Voxel axis closest to the patient's superior-inferior direction (axial slices are normal
 * to it). */
int rp_axial_axis(const double affine[4][4]);

/* ---- ops_generic.c ------------------------------------------------------------------- */
/* Gaussian smoothing with sigma in voxels per axis, truncate 4 sigma, mirror ('reflect'). */
int rp_gaussian_3d(float *data, const int dim[3], const double sigma_vox[3]);
/* k-th smallest of a copy of n floats (numpy.percentile 'linear' when combined). */
double rp_percentile(const float *data, size_t n, double q);

/* Step function sets, wired into the tables in steps_generic.c and steps_ct.c. */
#define RP_STEP_FNS(x)                                                                             \
    int rp_step_##x##_parse(const rp_step_args *args, void **params, char *err, size_t errlen);    \
    int rp_step_##x##_run(rp_step_ctx *ctx, const void *params);                                   \
    void rp_step_##x##_describe(const void *params, cJSON *obj);
#define RP_STEP_ENTRY(x, usage)                                                                    \
    {                                                                                              \
#x, usage, rp_step_##x##_parse, rp_step_##x##_run, NULL, rp_step_##x##_describe            \
    }

RP_STEP_FNS(hu)
RP_STEP_FNS(clip)
RP_STEP_FNS(window)
RP_STEP_FNS(multiwindow)
RP_STEP_FNS(normalize)
RP_STEP_FNS(resample)
RP_STEP_FNS(reorient)
RP_STEP_FNS(crop)
RP_STEP_FNS(crop_or_pad)
RP_STEP_FNS(denoise)
RP_STEP_FNS(patches)
RP_STEP_FNS(bodymask)
RP_STEP_FNS(lungmask)
RP_STEP_FNS(metal)

#ifdef __cplusplus
}
#endif
#endif
