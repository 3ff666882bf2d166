/*
 * pipeline/ct/ctmask_internal.h — bit-packed binary volumes for the CT masks (internal to
 * pipeline/ct/).
 *
 * Why bits: the masks of a 1 mm chest CT have ~45 M voxels. As bytes, every morphology pass
 * streams 45 MB through memory; as bits it is 5.6 MB, which stays in cache, and a 64-bit
 * word does 64 voxels per operation. Connected components are labelled on runs found with
 * count-trailing-zeros, so a row of 360 voxels costs a handful of instructions. The results
 * are exactly those of the byte kernels in pipeline/volume/morph.c (same structuring elements,
 * same border rules, same connectivity): only the representation differs.
 *
 * Layout: row r = y + ny*z holds wpr 64-bit words, bit (x % 64) of word x / 64; bits at
 * x >= nx are always 0.
 */
#ifndef RP_PIPELINE_CT_CTMASK_INTERNAL_H
#define RP_PIPELINE_CT_CTMASK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/volume/volume.h"

typedef struct rp_bits {
    int nx, ny, nz;
    int wpr;           /* words per row */
    uint64_t *w;       /* ny * nz * wpr words, owned */
    uint64_t *scratch; /* as large, for passes across rows (allocated on first use) */
} rp_bits;

/* Zeroed bit volume; RP_ENOMEM. */
int rp_bits_init(rp_bits *b, const int dim[3]);
void rp_bits_free(rp_bits *b);
size_t rp_bits_count(const rp_bits *b);

enum { RP_BITS_GT = 0, RP_BITS_LT = 1 };
/* b = (d > thr) or (d < thr) voxel by voxel (NaN is neither), one parallel pass. When `and`
 * is not NULL the result is also ANDed with it (same dims). */
void rp_bits_threshold(rp_bits *b, const float *d, float thr, int op, const rp_bits *and);
/* From / to a uint8 mask (non-zero = 1; to_bytes leaves 0/1 everywhere, but stores no zeros
 * over bytes that already read as zero: see rp_bytes_zero). */
void rp_bits_from_bytes(rp_bits *b, const uint8_t *m);
void rp_bits_to_bytes(const rp_bits *b, uint8_t *m);
/* m[0..n) = 0, writing only the 64-byte pieces that are not zero already. The pages of a
 * fresh calloc block that are never written are never backed by memory (reads map the
 * shared zero page): most of a lung or metal mask on a 1 mm grid, 40 MB for LIDC's. */
void rp_bytes_zero(uint8_t *m, size_t n);

/* Box dilation / erosion with radius r[a] voxels along axis a (0: unchanged). Erosion treats
 * outside the volume as foreground (as rp_morph_erode). RP_ENOMEM. */
int rp_bits_dilate(rp_bits *b, const int r[3]);
int rp_bits_erode(rp_bits *b, const int r[3]);

/* 3-D connected components, 6-connected, on runs; component stats as rp_cc_comp. */
typedef struct rp_bcc rp_bcc;
int rp_bcc_label(const rp_bits *b, rp_bcc **out);
void rp_bcc_free(rp_bcc *cc);
int rp_bcc_count(const rp_bcc *cc);
const rp_cc_comp *rp_bcc_get(const rp_bcc *cc, int label);
/* out = the union of the components with keep[label] != 0 (out is cleared first). */
void rp_bcc_paint(const rp_bcc *cc, const uint8_t *keep, rp_bits *out);

/* Fill holes in every slice normal to `axis`: background components (4-connected) that do not
 * touch the slice border and have at most max_area pixels (0: any size). RP_ENOMEM. */
int rp_bits_fill_holes_2d(rp_bits *b, int axis, long max_area);

/* Airway (trachea and main bronchi) taken out of a lung mask: tracked slice by slice from the
 * top of the chest down through the carina until each bronchus enters the lung. */
typedef struct rp_airway_result {
    int found;           /* 1: a trachea was found and removed */
    long voxels;         /* voxels removed */
    int carina_slice;    /* axial slice index of the carina (-1: not reached) */
    int top_slice;       /* first (most superior) slice with trachea */
    double carina_mm[3]; /* RAS of the carina (centroid of the last undivided airway slice) */
} rp_airway_result;
/* lung: the kept lung components (changed in place). body: the body mask (for the midline),
 * may be NULL. axis: the axial axis; affine: voxel -> RAS; spacing in mm. */
int rp_airway_remove(rp_bits *lung, const rp_bits *body, int axis, const double affine[4][4],
                     const double spacing[3], rp_airway_result *res);

#endif
