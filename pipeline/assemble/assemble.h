/*
 * pipeline/assemble/assemble.h — from DICOM headers to stacks of slices with one affine, and
 * the stacks' pixels decoded into one buffer. Library rp_assemble; depends on dicom/ (headers
 * and pixel decoding) and cJSON.
 *
 * Contract:
 *  - rp_assemble() takes the headers of ONE series (already grouped by Series Instance UID and
 *    Series Number) and splits its frames into stacks: same size, orientation, pixel spacing
 *    and echo; temporal position / diffusion / repeated acquisitions become the 4th dimension.
 *    Slices are sorted by position along the slice normal (never by file name or Instance
 *    Number alone). Frames that fit no stack (localizers with another orientation next to a
 *    main stack) are dropped and said so in the QC report.
 *  - Siemens mosaics become one volume per file (tiles cut using NumberOfImagesInMosaic from
 *    the CSA header, positions corrected as dcm2niix does).
 *  - Geometry is checked: missing slices, uneven spacing, gantry tilt (sheared grid). A stack
 *    whose slices are not on a regular orthogonal grid gets need_resample = 1 and
 *    rp_stack_resample() puts it on one (dcm2niix-style tilt correction plus equidistant
 *    slices); the QC report says so.
 *  - Every decision or oddity goes into the stack's or series' QC cJSON object.
 *  - The affine maps (i, j, k) of the data AS WRITTEN to RAS mm. Like dcm2niix, rows are
 *    stored bottom-up (j flipped relative to DICOM rows) so files look alike in viewers.
 *  - rp_stack_load() decodes slice by slice straight into one native-typed buffer (OpenMP over
 *    files); no decoded dataset of more than one file per thread is held at a time.
 */
#ifndef RP_PIPELINE_ASSEMBLE_H
#define RP_PIPELINE_ASSEMBLE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "dicom/dicom.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One 2-D slice of a stack: where its pixels come from. */
typedef struct rp_slice_ref {
    int file;      /* index into the info array given to rp_assemble() */
    int frame;     /* frame in that file */
    int tile;      /* mosaic tile, -1 when not a mosaic */
    double ipp[3]; /* position of the slice's first pixel, LPS mm */
    double pos;    /* position along the slice normal, mm */
} rp_slice_ref;

/* NIfTI-ish sample types of an assembled buffer. */
typedef enum {
    RP_ST_U8 = 2, /* the values equal NIfTI datatype codes */
    RP_ST_S16 = 4,
    RP_ST_S32 = 8,
    RP_ST_F32 = 16,
    RP_ST_RGB24 = 128,
    RP_ST_S8 = 256,
    RP_ST_U16 = 512,
    RP_ST_U32 = 768
} rp_sample_type;

/* Bytes per sample of t (RGB24: 3). */
size_t rp_sample_bytes(rp_sample_type t);

typedef struct rp_stack {
    int nx, ny, nz, nt;  /* columns, rows, slices, volumes */
    rp_slice_ref *slice; /* owned, n_refs = nz*nt entries as assembled, index z + nz*t
                            (after rp_stack_resample() nz changes; n_refs does not) */
    int n_refs;
    int nz_acquired;     /* slices per volume as acquired (before resampling) */
    double iop[6];       /* row and column direction cosines, LPS */
    double normal[3];    /* slice normal, LPS (row x column, or the CSA normal) */
    double dx, dy;       /* column spacing (along a row), row spacing, mm */
    double dz;           /* slice spacing (mean of gaps; slice thickness for nz == 1) */
    double affine[4][4]; /* (i,j,k) of the written data -> RAS mm */
    int has_geometry;    /* 0: no IPP/IOP (projection X-ray): a centred identity grid */
    /* 1: a cross-sectional image whose geometry could not be established (no or partial
     * positions/orientation, no pixel spacing): the affine is a placeholder written for
     * inspection only; the sidecar and QC say so and spatial steps refuse the stack */
    int geometry_unknown;
    char geometry_reason[200];
    int flip_rows;       /* 1: rows written bottom-up, as dcm2niix (always, today) */
    int mosaic;          /* 1: slices are mosaic tiles */
    int need_resample;   /* sheared (tilt) or uneven: rp_stack_resample() */
    double tilt_deg;     /* measured from the positions (0 when none) */
    int uneven, missing; /* uneven spacing, number of missing slices detected */
    double gap_min, gap_max;
    int varying_rescale;    /* slope/intercept differ between slices */
    int echo_number;        /* -1 when not split by echo */
    rp_dcm_kind kind;       /* magnitude, phase, real, imaginary, B0 map: never mixed */
    char label[32];         /* suffix for file names: "", "_e2", "_o1" ... */
    const rp_dcm_info *ref; /* borrowed: header of the first slice */
    cJSON *qc;              /* owned: this stack's findings */
} rp_stack;

typedef struct rp_series_asm {
    rp_stack *stack; /* owned array */
    size_t n_stacks;
    cJSON *qc; /* owned: series-level findings (dropped frames, errors...) */
} rp_series_asm;

/* File-name suffix of an image kind ("" for magnitude, "_ph", "_real", "_imaginary",
 * "_fieldmaphz" as dcm2niix names them) and its sidecar name ("MAGNITUDE", "PHASE"...). */
const char *rp_kind_suffix(rp_dcm_kind k);
const char *rp_kind_name(rp_dcm_kind k);

/* Split one series (infos[0..n)) into stacks. infos are borrowed and must outlive `out`.
 * Returns 0 (maybe with zero stacks when nothing is an image, said in out->qc), or RP_E*. */
int rp_assemble(const rp_dcm_info *const *infos, size_t n, rp_series_asm *out);
void rp_series_asm_free(rp_series_asm *s);

/* A decoded stack: nx*ny*nz*nt samples of `type`, x fastest, rows flipped as written. */
typedef struct rp_stack_data {
    rp_sample_type type;
    void *data; /* owned (free()); NULL when the data is held by slice */
    /* Zero-copy form (plain conversion): slice[k] points at slice k (index z + nz*t) inside
     * the decoded file buffers, already flipped in place; the buffers are owned here.
     * rp_stack_data_contiguous() turns this form into `data`. */
    void **slice;
    size_t n_slices, slice_bytes;
    void **bufs;
    size_t n_bufs;
    double scl_slope, scl_inter; /* real value = slope * stored + inter */
    long n_padding;              /* voxels that were Pixel Padding */
    uint8_t *pad_mask;           /* owned, NULL when the series declares no padding */
    int inverted_mono1;          /* 1: MONOCHROME1 inverted so that higher means denser */
    int philips_float;           /* 1: Philips floating-point values (display / (RS x SS)) */
    /* > 0 (zero-copy form loaded with RP_LOAD_ROWS_AS_STORED): the slices keep the file's
     * top-down row order, rows of this many bytes; row y of the stack is row ny-1-y of the
     * slice. 0: rows bottom-up as everywhere else. */
    size_t stored_row_bytes;
} rp_stack_data;

/* Decode the stack's slices into `out` in the native type (int16 with scl_slope/inter as
 * dcm2niix writes; float32 when slices disagree on rescale). `threads` <= 0: OpenMP default.
 * pixels (may be NULL): per info index, frames already decoded by rp_dcm_read_info_pixels();
 * files without an entry are decoded here. pix_refs (may be NULL): per info index, the number
 * of stacks still to load from that file; it is decremented and the file's pixels freed (and
 * set NULL) when it reaches 0, so a series never holds its slices twice. When every file is
 * preloaded and used by this stack only, and no conversion is needed, the slices are taken
 * over in place (zero-copy form, see rp_stack_data) unless RP_LOAD_CONTIGUOUS is set.
 * RP_LOAD_PAD_MASK: build out->pad_mask (padded voxels are counted anyway).
 * On a decode error returns RP_EDECODE with the file and reason in err. */
#define RP_LOAD_PAD_MASK 1u   /* build out->pad_mask */
#define RP_LOAD_CONTIGUOUS 2u /* always fill out->data (resampling and recipes need it) */
/* zero-copy form: leave the frames in the file's row order (see stored_row_bytes) and
 * n_padding at 0, for a reader that converts every voxel anyway and flips and counts in that
 * pass (rp_pf_to_float), instead of two passes here */
#define RP_LOAD_ROWS_AS_STORED 4u
int rp_stack_load(const rp_stack *st, const rp_dcm_info *const *infos, void **pixels, int *pix_refs,
                  unsigned flags, int threads, rp_stack_data *out, char *err, size_t errlen);
/* Gather a zero-copy stack into one buffer (no-op when d->data is set). */
int rp_stack_data_contiguous(rp_stack_data *d);
void rp_stack_data_free(rp_stack_data *d);
/* Sample i of a contiguous stack (d->data) as stored, before scl_slope/scl_inter; 0 for
 * RGB24. The one place that reads a sample of any type. */
double rp_stack_sample(const rp_stack_data *d, size_t i);
/* The first n samples of a contiguous stack as real values, slope * stored + inter (a slope
 * of 0 means 1), rounded to float32 into out. */
void rp_stack_data_to_f32(const rp_stack_data *d, size_t n, float *out);

/* Put a sheared / unevenly spaced stack on a regular orthogonal grid (linear interpolation,
 * FOV enlarged to hold the sheared slices, spacing = smallest gap). Updates st (dims, affine,
 * nz, need_resample = 0, qc) and d (data). */
int rp_stack_resample(rp_stack *st, rp_stack_data *d, char *err, size_t errlen);

/* Geometry helpers (exposed for tests). */
/* LPS -> RAS affine of a regular stack whose data rows are flipped (as written). */
void rp_affine_from_dicom(const double iop[6], const double ipp0[3], const double step[3],
                          double dx, double dy, int ny, double affine[4][4]);
/* Spacing analysis of sorted positions: mean gap, flags, missing count. */
void rp_gaps_analyse(const double *pos, int n, double *gap_mean, double *gap_min, double *gap_max,
                     int *uneven, int *missing);
/* Shear of a stack: the angle (degrees) between the slice-to-slice step and the normal. */
double rp_tilt_deg(const double ipp0[3], const double ippn[3], const double normal[3]);

#ifdef __cplusplus
}
#endif
#endif
