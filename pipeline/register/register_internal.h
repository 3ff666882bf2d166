/*
 * pipeline/register/register_internal.h — pieces of the registration shared inside
 * pipeline/register/ only: the pyramid (pyramid.c), the Mattes metric (mattes.c) and the
 * transform algebra (transform.c).
 */
#ifndef RP_PIPELINE_REGISTER_INTERNAL_H
#define RP_PIPELINE_REGISTER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/register/register.h"

#define REG_NPARAM_MAX 9
/* Sums are formed per block of samples and added in block order: the same bits whatever the
 * thread count. */
#define REG_NBLOCKS 32

/* ---- pyramid.c --------------------------------------------------------------------------- */

/* New volume: channel 0 of v smoothed with a Gaussian of sigma f[a]/2 voxels along each axis
 * with f[a] > 1, then sampled at index i*f + (f-1)/2 (the centre of each block of f voxels);
 * the affine follows. */
int rp_reg_shrink(const rp_volume *v, const int f[3], rp_volume **out);
/* New mask on the shrunk grid: a voxel is set when any voxel of its block is. */
uint8_t *rp_reg_shrink_mask(const uint8_t *m, const int dim[3], const int f[3], int out_dim[3]);
/* Per-axis shrink factors that bring spacing sp towards target_mm, keeping >= 4 voxels. */
void rp_reg_factors(const int dim[3], const double sp[3], double target_mm, int f[3]);
/* Otsu threshold of channel 0 over a subsample (up to ~65k voxels). */
double rp_reg_otsu(const float *v, size_t n);
/* q-th percentile (0..100) of a subsample of v (where mask, when given, is set); two at once
 * with one sort. */
double rp_reg_percentile(const float *v, const uint8_t *mask, size_t n, double q);
void rp_reg_range(const float *v, const uint8_t *mask, size_t n, double qlo, double qhi,
                  double *lo, double *hi);
/* Box dilation by r voxels along each axis, in place. */
int rp_reg_dilate(uint8_t *m, const int dim[3], int r);

/* ---- mattes.c ---------------------------------------------------------------------------- */

typedef struct reg_samples {
    size_t n;
    float *xyz;    /* 3 per sample: fixed world coordinate minus the centre */
    uint8_t *fbin; /* fixed-image bin of each sample */
    int bins;
} reg_samples;

typedef struct reg_moving {
    const float *data;
    int dim[3];
    double w2i[3][4]; /* moving world -> continuous voxel index */
    double lo, hi;    /* intensity range of the Parzen bins */
} reg_moving;

/* Per-call work memory (per sample: the moving bin position and the derivatives). */
typedef struct reg_work {
    float *kpos; /* moving bin position; < 0: sample outside the moving volume */
    float *dm;   /* np per sample: d(moving value)/d(parameter) */
    size_t cap;
    int np;
} reg_work;

void rp_reg_work_free(reg_work *w);

/* The transform as the metric needs it: y = L·x̃ + o (x̃ = sample coordinate), and for each
 * parameter the derivative of y: D[p]·x̃ + d[p]. */
typedef struct reg_xform {
    double L[3][3], o[3];
    double D[REG_NPARAM_MAX][3][3];
    double d[REG_NPARAM_MAX][3];
    int np;
} reg_xform;

/* MI (nats) and, when grad is non-NULL, dMI/dparam (np values). n_valid: samples inside the
 * moving volume. RP_EGEOM when fewer than 64 samples land inside. */
int rp_reg_mattes(const reg_samples *s, const reg_moving *m, const reg_xform *x, reg_work *w,
                  double *mi, double *grad, size_t *n_valid);

/* ---- transform.c ------------------------------------------------------------------------- */

/* Parameters: [rx ry rz (rad), tx ty tz (mm), sx sy sz]. Fills x for the metric (L, o and the
 * derivatives, composed with the moving world->index map w2i) and, when T is non-NULL, the
 * world transform about centre c. */
void rp_reg_xform(const double *prm, int np, const double c[3], const double w2i[3][4],
                  reg_xform *x, double T[4][4]);

#endif
