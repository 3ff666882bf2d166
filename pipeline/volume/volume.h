/*
 * pipeline/volume/volume.h — the image types every pipeline stage works on, and the numeric
 * kernels that do not belong to one modality: resampling, binary morphology, connected
 * components, smoothing filters, percentiles. Library rp_volume; depends on common/ only.
 *
 * Contract:
 *  - rp_volume holds float32 voxels, contiguous, x fastest: index = x + nx*(y + ny*(z + nz*c)).
 *    dim[3] (nc) is the number of channels / time points (1 for a plain 3-D volume).
 *  - affine maps voxel indices (i,j,k,1) to world coordinates in millimetres in the NIfTI
 *    convention, RAS+: +x = patient Right, +y = Anterior, +z = Superior. DICOM patient
 *    coordinates are LPS+, so x and y change sign on the way in (as dcm2niix does).
 *    spacing[] is the length of the affine's first three columns, kept in sync by
 *    rp_volume_update_spacing().
 *  - A volume owns its data; rp_volume_free() releases both. Functions that return a new
 *    volume say so and the caller frees it.
 *  - rp_mask is a uint8 volume (0 or 1, sometimes labels) on the same grid as an image, held
 *    either as bytes (data) or, for a 0/1 mask, packed 64 voxels a word (bits, data NULL).
 *    Code that reads data calls rp_mask_unpack() first unless it handles bits itself; the
 *    recipe runner does it for every step that does not (pipeline/recipe/).
 *  - rp_series_info is what is known about the series an image came from, copied out of its
 *    DICOM header by the caller, so that kernels choosing by acquisition (MR sequence
 *    matching) and the steps need no DICOM types.
 *  - Kernels are pure functions of their inputs (same input, same bytes, whatever the number
 *    of OpenMP threads); they parallelise over slices or lines; they return 0 or RP_E*.
 *    Nothing here knows about recipes or steps: the step glue in pipeline/recipe/ calls in.
 */
#ifndef RP_PIPELINE_VOLUME_H
#define RP_PIPELINE_VOLUME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Running statistics of float samples (the QC figures: extent, count at each end, sums for
 * mean and SD, NaN/Inf excluded and counted), filled block by block while a block is still
 * in cache, merged in any order (per-thread partials). */
typedef struct rp_vstats {
    float lo, hi;         /* finite extent: lo > hi while no finite sample was seen */
    double sum, sumsq;    /* of the finite samples */
    size_t n_lo, n_hi;    /* samples equal to lo / hi */
    size_t bad;           /* NaN or Inf */
    size_t n;             /* samples seen, bad ones included */
} rp_vstats;
void rp_vstats_init(rp_vstats *s);
void rp_vstats_add(rp_vstats *s, const float *p, size_t n);
void rp_vstats_merge(rp_vstats *into, const rp_vstats *from);

/* Voxels not yet in a float array (a deferred volume, see rp_volume.src): the decoded slices
 * of a series, read row by row. Why: a recipe that resamples first reads the native samples
 * straight into the first resampling pass, so the float volume at the native grid is never
 * written (nor its fresh pages touched). */
typedef struct rp_vol_source {
    /* out[0..n) = voxels x0..x0+n of row y of slice z, as float (the same values the float
     * volume would hold). Called in parallel from several threads. */
    void (*row)(void *user, int y, int z, int x0, int n, float *out);
    /* slice z is not read again (may be NULL) */
    void (*slice_done)(void *user, int z);
    /* frees user and everything it holds (may be NULL) */
    void (*release)(void *user);
    void *user;
    /* The statistics of the voxels (has_stats 1), taken by whoever made the source, and how
     * many lie below -1024 (the `hu` step's figure): the recipe's first figures without a
     * pass over a float volume. */
    int has_stats;
    rp_vstats stats;
    size_t below_m1024;
} rp_vol_source;

typedef struct rp_volume {
    int dim[4];            /* nx, ny, nz, nc (all >= 1) */
    float *data;           /* owned, nx*ny*nz*nc floats; NULL while deferred (src) */
    double affine[4][4];   /* voxel -> RAS mm */
    double spacing[3];     /* mm, column norms of affine[0..2][0..2] */
    rp_vol_source *src;    /* owned, NULL unless deferred: 3-D (nc 1), data NULL */
} rp_volume;

typedef struct rp_mask {
    int dim[3];
    uint8_t *data;         /* owned, nx*ny*nz bytes; NULL while the mask is packed in bits */
    double affine[4][4];
    char name[32];         /* "lung", "body", "metal", "head"... */
    /* Packed form (data NULL), owned: row r = y + ny*z holds wpr = (nx + 63) / 64 words, voxel
     * x is bit x % 64 of word x / 64, bits at x >= nx are 0. A 1 mm chest CT's mask is 5.6 MB
     * so instead of 45: the fresh memory a job must fault in is most of its cost on a VM. */
    uint64_t *bits;
    int wpr;
} rp_mask;

/* What is known about the series being processed (filled from the first header). */
typedef struct rp_series_info {
    char modality[17];
    char body_part[17];
    char series_description[65];
    char series_uid[65];
    char study_uid[65];
    char photometric[17];      /* MONOCHROME1 / MONOCHROME2 / RGB ... */
    double window_center, window_width;   /* first pair from the header, width<=0: none */
    double slice_thickness;
    int bits_stored;
    double repetition_time, echo_time, inversion_time;  /* ms, <0 when absent */
    /* Header of the first instance (borrowed, may be NULL; see dicom/dicom.h): the X-ray
     * `present` step reads all window pairs, the VOI LUT Function and Sequence, the Modality
     * LUT and pixel padding from it. Only a pointer here, so this module needs no DICOM. */
    const struct rp_dcm_info *dcm;
} rp_series_info;

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
size_t rp_mask_count(const rp_mask *m);  /* number of non-zero voxels (either form) */
/* A packed mask of dims (all zero; data NULL), for kernels that fill bits. */
rp_mask *rp_mask_new_bits(int nx, int ny, int nz, const char *name);
/* To bytes (no-op when already bytes) / to bits (non-zero = 1; no-op when already bits; only
 * for 0/1 masks: labels would be lost). The other form is freed. RP_ENOMEM (mask unchanged). */
int rp_mask_unpack(rp_mask *m);
int rp_mask_pack(rp_mask *m);
/* Voxel i = x + nx*(y + ny*z) as 0/1 (bits) or its byte, in either form. */
static inline unsigned rp_mask_at(const rp_mask *m, size_t i)
{
    if (m->data)
        return m->data[i];
    size_t nx = (size_t)m->dim[0], r = i / nx, x = i % nx;
    return (unsigned)(m->bits[r * (size_t)m->wpr + x / 64] >> (x % 64)) & 1u;
}
/* Voxels [first, first+n) as bytes into out, in either form (a writer's block). */
void rp_mask_get_bytes(const rp_mask *m, size_t first, size_t n, uint8_t *out);
/* 1 when no voxel in [first, first+n) is set, read from the bits of a packed mask (a writer's
 * block of zeros is then known without making its bytes); 0 when one is, or the mask holds
 * bytes (not looked at). */
int rp_mask_range_empty(const rp_mask *m, size_t first, size_t n);

/* Large working buffers (volumes, masks, bit planes, scratch blocks of 512 KiB and up).
 * Faulting such a buffer in 4 KiB at a time costs more CPU than the arithmetic that fills
 * it (on a virtual machine each fault traps to the host), and a buffer freed in huge pages
 * comes back from the kernel nearly free for the next one. So these ask for transparent
 * huge pages and round the request up to whole 2 MiB pages (usable size >= n); they are
 * ordinary malloc memory otherwise: free() releases them, realloc() works, but growing one
 * should go through rp_mem_realloc() to keep the hint. calloc's block reads as zeros. */
void *rp_mem_alloc(size_t n);
void *rp_mem_calloc(size_t n);
void *rp_mem_realloc(void *p, size_t n);

/* On a function of independent lanes (no OpenMP region inside: outlined regions are not
 * cloned): built a second time for AVX2 without FMA, so every lane does the same IEEE
 * operations in the same order and results are bit for bit the baseline build's; the CPU
 * picks at load time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__OPTIMIZE__)
#define RP_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define RP_SIMD_CLONES
#endif

/* 4x4 helpers. */
void rp_mat4_identity(double m[4][4]);
void rp_mat4_mul(const double a[4][4], const double b[4][4], double out[4][4]);
int rp_mat4_invert(const double m[4][4], double out[4][4]);  /* RP_EINVAL if singular */
/* Voxel axis closest to the patient's superior-inferior direction (axial slices are normal
 * to it). */
int rp_axial_axis(const double affine[4][4]);

/* ---- resampling (resample.c) ---------------------------------------------------------- */
enum { RP_INTERP_NEAREST = 0, RP_INTERP_LINEAR = 1, RP_INTERP_BSPLINE3 = 3 };

/* New grid for a target spacing (origin fixed; n' = max(1, round(n * old / new)); voxel i'
 * sits at old index i' * new/old). */
void rp_resample_grid(const int dim[3], const double old_sp[3], const double new_sp[3],
                      int new_dim[3]);
/* Resample *vol to new_sp with one interpolation order per axis (0, 1 or 3); boundary:
 * mirror (scipy.ndimage mode='mirror', prefilter included for order 3). Replaces *vol
 * (the old one is freed on success). */
int rp_resample_volume(rp_volume **vol, const double new_sp[3], const int order[3]);
/* The same; when stats is not NULL it receives the statistics of the result, measured in
 * the last pass while each output block is in cache (stats->n == 0 when they were not: more
 * than one channel, or nothing to interpolate). */
int rp_resample_volume_stats(rp_volume **vol, const double new_sp[3], const int order[3],
                             rp_vstats *stats);
/* A deferred volume (data NULL, src set: dims, affine and spacing as for the float one; src
 * is owned by it from now on). rp_volume_materialize() writes the float voxels and drops the
 * source; rp_resample_volume() reads a deferred volume's slices in its first pass when that
 * pass runs along x or y (else it materialises first), with the same result to the bit. */
rp_volume *rp_volume_new_deferred(int nx, int ny, int nz, rp_vol_source *src);
int rp_volume_materialize(rp_volume *v);
/* Nearest-neighbour resample of a mask onto new_dim with the same index scale. */
int rp_resample_mask(rp_mask **m, const int new_dim[3], const double scale[3]);
/* Place the first channel of src on grid's lattice (warp.c): m maps a grid voxel index to a
 * src voxel index; order 0 (nearest) or 1 (trilinear); points outside src are 0. *out is a new
 * 1-channel volume with grid's affine, owned by the caller. */
int rp_volume_warp(const rp_volume *src, const rp_volume *grid, const double m[4][4], int order,
                   rp_volume **out);
/* In-place cubic B-spline prefilter of a float line set: n samples along an axis with the
 * given stride, mirror boundary (exposed for tests). */
void rp_bspline_prefilter_line(double *c, int n);

/* ---- binary morphology and components (morph.c) ----------------------------------------- */
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
/* One run of foreground voxels along x in row r = y + ny*z: [x0, x1). */
typedef struct rp_cc_run {
    int x0, x1;
} rp_cc_run;
/* The common end of run-based labelling (here and on bit-packed CT masks): label[] holds the
 * union-find parents of nruns runs whose roots are each set's smallest run index; turns them
 * into component labels 0.. in scan order and sums each component's statistics. *comp (one
 * per component, calloc'd, owned by the caller) and *ncomp on success; RP_ENOMEM. */
int rp_cc_summarise(const rp_cc_run *runs, const size_t *row_start, size_t nrows, int *label,
                    size_t nruns, const int dim[3], rp_cc_comp **comp, int *ncomp);
typedef struct rp_cc rp_cc;
int rp_cc_label(const uint8_t *m, const int dim[3], rp_cc **out);
void rp_cc_free(rp_cc *cc);
int rp_cc_count(const rp_cc *cc);
const rp_cc_comp *rp_cc_get(const rp_cc *cc, int label); /* label in [0, count) */
/* Set out[v] = value for every voxel of each component with keep[label] != 0. */
void rp_cc_paint(const rp_cc *cc, const uint8_t *keep, uint8_t *out, uint8_t value);

/* ---- filters and statistics (filter.c) -------------------------------------------------- */
/* Gaussian smoothing with sigma in voxels per axis, truncate 4 sigma, mirror ('reflect'). */
int rp_gaussian_3d(float *data, const int dim[3], const double sigma_vox[3]);
/* Median over a (2r+1)^3 box (2-D box when dim[2] == 1), boundary 'reflect'; dst must not
 * overlap src. */
int rp_median_3d(const float *src, float *dst, const int dim[3], int r);
/* Perona-Malik diffusion in place: I += dt * sum_6 g(dI) dI, g = exp(-(dI/kappa)^2),
 * dt = 1/7, zero flux at the border. */
int rp_diffusion_3d(float *data, const int dim[3], int iterations, double kappa);
/* The q-th percentile of n floats (numpy.percentile 'linear'); NAN when n == 0 or out of
 * memory (it works on a copy). */
double rp_percentile(const float *data, size_t n, double q);

#ifdef __cplusplus
}
#endif
#endif
