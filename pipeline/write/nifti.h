/*
 * pipeline/nifti.h — NIfTI-1 writer (.nii and .nii.gz), internal to pipeline/ and its tests.
 *
 * Contract:
 *  - One header (348 bytes + 4 extension bytes, vox_offset 352) then the voxels, x fastest.
 *  - sform = the given affine (voxel -> RAS mm, NIfTI convention), sform_code 1 (scanner);
 *    qform = the closest rigid transform with pixdim/qfac, qform_code 1. Readers (nibabel,
 *    FSL, ITK) get the affine we meant.
 *  - .nii.gz is written as concatenated gzip members compressed in parallel with libdeflate
 *    (valid gzip: zlib, gzip -d and nibabel read it). Memory: at most 2 blocks per thread in
 *    flight besides the caller's data.
 *  - Written to "<path>.tmp-<pid>" then renamed: a crash never leaves a half file at `path`.
 */
#ifndef RP_PIPELINE_NIFTI_H
#define RP_PIPELINE_NIFTI_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/volume/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

/* NIfTI datatype codes we write (same numbers as rp_sample_type in assemble.h). */
enum {
    RP_NII_UINT8 = 2,
    RP_NII_INT16 = 4,
    RP_NII_INT32 = 8,
    RP_NII_FLOAT32 = 16,
    RP_NII_RGB24 = 128,
    RP_NII_INT8 = 256,
    RP_NII_UINT16 = 512,
    RP_NII_UINT32 = 768
};

typedef struct rp_nifti_opts {
    int gzip;           /* 1: gzip (the path should end in .nii.gz) */
    int level;          /* libdeflate level 1..12; 0: default (RP_NIFTI_DEFAULT_LEVEL) */
    int threads;        /* compression threads; <= 0: OpenMP default */
    size_t block_bytes; /* uncompressed bytes per gzip member; 0: 1 MiB */
    double tr_s;        /* pixdim[4] for 4-D data (seconds), 0 when unknown */
    char descrip[80];   /* header description */
} rp_nifti_opts;

#define RP_NIFTI_DEFAULT_LEVEL 6 /* libdeflate 6: ~3.5x faster than zlib 6, smaller */

/* Write dims (nx, ny, nz, nt; nt 1 for 3-D) of `datatype` voxels. scl_slope 0 means
 * "no scaling" (written as 1/0 unless the caller gives real values). */
int rp_nifti_write(const char *path, const int dim[4], int datatype, const void *data,
                   const double affine[4][4], double scl_slope, double scl_inter,
                   const rp_nifti_opts *o, char *err, size_t errlen);

/* Same, the voxels given as dim[2]*dim[3] slices of dim[0]*dim[1] voxels each (written in
 * that order, without gathering them first). */
int rp_nifti_write_slices(const char *path, const int dim[4], int datatype,
                          const void *const *slices, const double affine[4][4], double scl_slope,
                          double scl_inter, const rp_nifti_opts *o, char *err, size_t errlen);

/* Write a float32 rp_volume (channels become the 4th dimension). */
int rp_nifti_write_volume(const char *path, const rp_volume *v, const rp_nifti_opts *o, char *err,
                          size_t errlen);

/* Header fields as read back (tests, tools). */
typedef struct rp_nifti_info {
    int dim[8];
    int datatype, bitpix;
    float pixdim[8];
    float vox_offset, scl_slope, scl_inter;
    int qform_code, sform_code;
    float quatern[3], qoffset[3];
    double srow[3][4];
    char descrip[80];
    char magic[4];
} rp_nifti_info;

/* Read the header of a .nii or .nii.gz (zlib; multi-member gzip is fine). */
int rp_nifti_read_info(const char *path, rp_nifti_info *out);
/* qform of a header as a 4x4 (for tests). */
void rp_nifti_qform_affine(const rp_nifti_info *h, double A[4][4]);

#ifdef __cplusplus
}
#endif
#endif
