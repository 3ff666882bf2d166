/*
 * pipeline/volume.h — the image types every pipeline step works on (internal to pipeline/
 * and its tests).
 *
 * Contract:
 *  - rp_volume holds float32 voxels, contiguous, x fastest: index = x + nx*(y + ny*(z + nz*c)).
 *    dim[3] (nc) is the number of channels / time points (1 for a plain 3-D volume).
 *  - affine maps voxel indices (i,j,k,1) to world coordinates in millimetres in the NIfTI
 *    convention, RAS+: +x = patient Right, +y = Anterior, +z = Superior. DICOM patient
 *    coordinates are LPS+, so x and y change sign on the way in (as dcm2niix does).
 *    spacing[] is the length of the affine's first three columns, kept in sync by rp_volume_update_spacing().
 *  - A volume owns its data; rp_volume_free() releases both. Functions that return a new
 *    volume say so and the caller frees it.
 *  - rp_mask is a uint8 volume (0 or 1, sometimes labels) on the same grid as an image.
 */
#ifndef RP_PIPELINE_VOLUME_H
#define RP_PIPELINE_VOLUME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_volume {
    int dim[4];            /* nx, ny, nz, nc (all >= 1) */
    float *data;           /* owned, nx*ny*nz*nc floats */
    double affine[4][4];   /* voxel -> RAS mm */
    double spacing[3];     /* mm, column norms of affine[0..2][0..2] */
} rp_volume;

typedef struct rp_mask {
    int dim[3];
    uint8_t *data;         /* owned, nx*ny*nz bytes */
    double affine[4][4];
    char name[32];         /* "lung", "body", "metal", "head"... */
} rp_mask;

/* New zero-filled volume with an identity affine; NULL when out of memory or dims invalid. */
rp_volume *rp_volume_new(int nx, int ny, int nz, int nc);
/* Deep copy. */
rp_volume *rp_volume_clone(const rp_volume *v);
void rp_volume_free(rp_volume *v);
size_t rp_volume_nvox(const rp_volume *v);   /* nx*ny*nz (one channel) */
/* Recompute spacing[] from the affine. */
void rp_volume_update_spacing(rp_volume *v);

rp_mask *rp_mask_new(int nx, int ny, int nz, const char *name);
rp_mask *rp_mask_like(const rp_volume *v, const char *name);  /* same grid as v */
void rp_mask_free(rp_mask *m);
size_t rp_mask_count(const rp_mask *m);  /* number of non-zero voxels */

/* 4x4 helpers. */
void rp_mat4_identity(double m[4][4]);
void rp_mat4_mul(const double a[4][4], const double b[4][4], double out[4][4]);
int rp_mat4_invert(const double m[4][4], double out[4][4]);  /* RP_EINVAL if singular */

#ifdef __cplusplus
}
#endif
#endif
