/*
 * pipeline/write/write.h — everything that leaves the pipeline as a file: NIfTI-1 images
 * (nifti.c), PNG (png.c), the JSON sidecar of a stack (sidecar.c), derived DICOM series and
 * DICOM SEG (derived.cc, dcmtk), and the file writers handed to recipe steps
 * (step_writers.c). Library rp_write; depends on rp_assemble (stacks and headers for the
 * sidecar), rp_step (a finished step context for derived DICOM, the writer hooks), rp_volume,
 * ISA-L igzip (private), libdeflate/zlib, libpng and dcmtk (dcmdata, dcmiod, dcmfg, dcmseg).
 * No dcmtk or ISA-L type crosses this header.
 *
 * Contract, NIfTI:
 *  - One header (348 bytes + 4 extension bytes, vox_offset 352) then the voxels, x fastest.
 *  - sform = the given affine (voxel -> RAS mm, NIfTI convention), sform_code 1 (scanner);
 *    qform = the closest rigid transform with pixdim/qfac, qform_code 1. Readers (nibabel,
 *    FSL, ITK) get the affine we meant.
 *  - .nii.gz is written as concatenated gzip members (1 MiB of the stream each) compressed
 *    in parallel (valid gzip: zlib, gzip -d and nibabel read it), written in order as they
 *    finish. Levels keep libdeflate's 1..12 scale and map to compressors by measurement:
 *    1 -> igzip 1 (ISA-L), 2..6 -> igzip 2, 7..12 -> libdeflate at that level (smaller, 4-40x
 *    the CPU); see nifti.c. The decoded bytes are the same at every level; the compressed
 *    bytes are the same for any thread count.
 *    Memory: one input and one output block and ~0.4 MB of igzip state per thread besides
 *    the caller's data.
 *  - Storage (rp_nifti_store_choose, a rule's `dtype`): a float32 volume is stored in the
 *    smallest type that holds it to within a stated error: integers exactly as uint8/int16,
 *    HU-linear values as int16 on a HU grid (0.1 HU by default) with scl_slope/scl_inter so
 *    readers get the values back, else float32. The conversion runs block by block inside
 *    the compression threads: no converted copy of the volume is held.
 *  - Written to "<path>.tmp-<pid>" then renamed: a crash never leaves a half file at `path`.
 *
 * Contract, PNG:
 *  - rp_png_write() writes `pixels` (row-major, top row first, `channels` interleaved samples per
 *    pixel: 1 = grey, 3 = RGB, 4 = RGBA) as a PNG file at `path`. With bit_depth 16 the samples
 *    are host-order uint16_t; libpng's big-endian order is handled here.
 *  - The file is written to "<path>.tmp" and renamed, so a reader never sees half a PNG.
 *  - Returns 0, RP_EINVAL (bad arguments), RP_ENOMEM or RP_EIO (reason logged).
 *
 * Contract, sidecar:
 *  - rp_sidecar_build() returns a new cJSON object with BIDS-style acquisition keys (times in
 *    seconds, as BIDS and dcm2niix write them) and a "Provenance" object: source SOP
 *    Instance UIDs in slice order, transfer syntaxes, the assembly decisions (the stack's QC),
 *    scaling, software name and RP_VERSION. Patient keys appear only when the caller's privacy
 *    policy allows it (with_patient; pipeline.h: RP_PRIVACY_SIDECAR or higher). No
 *    wall-clock time is written (outputs are a pure function of the input).
 *  - rp_json_write() writes any cJSON to a file atomically (temporary name + rename).
 *
 * Contract, derived DICOM:
 *  - Nothing is invented about the patient: the Patient, Patient Study and General Study
 *    module attributes (and Specific Character Set) are copied element by element from the
 *    first source file, empty ones included; absent ones stay absent, except the modules'
 *    Type 2 attributes, which are written empty (unknown) so the object stays valid.
 *  - New Series and SOP Instance UIDs come from dcmGenerateUniqueIdentifier() under
 *    o->uid_root (dcmtk's site root when empty); the Frame of Reference is kept, so the
 *    derived series overlays its source in any viewer.
 *  - Geometry comes from the volume's affine (RAS+, see volume.h), converted back to DICOM
 *    LPS: every slice k gets Image Position = affine·(0,0,k), Image Orientation = the unit
 *    columns 0 and 1 of the affine, Pixel Spacing = (spacing[1], spacing[0]). Rows are y
 *    (index j), columns x (index i), so pixel order is the volume's memory order.
 *  - Pixels are stored as signed 16-bit integers with Rescale Slope/Intercept chosen per
 *    series to cover the float range of the volume: stored*slope + intercept reproduces every
 *    voxel within slope/2 (exactly, with slope 1, when the values are already integers that
 *    fit 16 bits). Window Center/Width are the recipe's window, or the data range.
 *  - IOD (see choose_iod() in derived.cc for the reasons): CT / MR Image Storage when
 *    o->values_physical (HU or the scanner's MR units are kept, geometry only), otherwise
 *    Secondary Capture Image Storage, one instance per slice, with Rescale Type "US".
 *  - Files are written under a temporary name, fsync'ed and renamed: a reader never sees a
 *    half-written instance. Errors: 0 or RP_E* with one log line saying why.
 *  - Thread-safe (separate calls share nothing but dcmtk's dictionary).
 *
 * Contract, step writers: rp_write_step_writers() gives the rp_step_writers a recipe's
 * context needs (png = rp_png_write; nifti = rp_nifti_write_volume with gzip, default level
 * and threads, and the given description), a static table the caller borrows.
 */
#ifndef RP_PIPELINE_WRITE_H
#define RP_PIPELINE_WRITE_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/assemble/assemble.h"
#include "pipeline/step/step.h"
#include "pipeline/volume/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- NIfTI (nifti.c) ------------------------------------------------------------------- */

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
    int level;          /* 1..12 (1 fastest: igzip 1; 2..6 igzip 2; 7..12 libdeflate);
                           0: default (RP_NIFTI_DEFAULT_LEVEL) */
    int threads;        /* compression threads; <= 0: OpenMP default */
    size_t block_bytes; /* uncompressed bytes per gzip member; 0: 1 MiB */
    double tr_s;        /* pixdim[4] for 4-D data (seconds), 0 when unknown */
    char descrip[80];   /* header description */
} rp_nifti_opts;

#define RP_NIFTI_DEFAULT_LEVEL 6 /* igzip 2: ~4.5x faster than libdeflate 6, ~3.5 % larger */

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
/* A mask as uint8 (its affine; no scaling), packed or not (volume.h): a packed one is expanded
 * block by block inside the compression threads, never whole. */
int rp_nifti_write_mask(const char *path, const rp_mask *m, const rp_nifti_opts *o, char *err,
                        size_t errlen);
int rp_nifti_write_volume(const char *path, const rp_volume *v, const rp_nifti_opts *o, char *err,
                          size_t errlen);

/* nnU-Net raw layout: channel c of `fused` as DIR/<case_id>_<cccc>.nii.gz (float32 gzip, the
 * fused affine; DIR created). The 4-D volume itself goes out through rp_nifti_write_volume().
 * RP_EINVAL for a case_id that is empty or holds '/'. */
int rp_nifti_write_nnunet(const rp_volume *fused, const char *dir, const char *case_id, char *err,
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

/* ---- storing a float32 volume in the smallest exact type (nifti.c, nifti_store.c,
 * nifti_rescale.c) ------- */

/* Write float32 voxels converted on the fly to `datatype` (RP_NII_INT16 or RP_NII_UINT8;
 * RP_NII_FLOAT32 writes them as they are): stored = round(value * a + b), clamped to the
 * type, inside the compression threads (no converted copy is ever held in memory). */
int rp_nifti_write_converted(const char *path, const int dim[4], int datatype, const float *data,
                             double a, double b, const double affine[4][4], double scl_slope,
                             double scl_inter, const rp_nifti_opts *o, char *err, size_t errlen);

/* A rule's `dtype`: auto (default), float32, int16, uint8 or hu, the first three and hu with
 * an optional step in HU, e.g. "int16(0.5)" (default step 0.1 HU). */
typedef enum {
    RP_DTYPE_AUTO = 0, /* smallest exact: integers -> uint8/int16; HU-linear data -> int16 at
                          the HU step with scl_slope/scl_inter; anything else float32 */
    RP_DTYPE_FLOAT32,
    RP_DTYPE_INT16, /* int16 always (HU step when HU-linear, else the value range, lossy) */
    RP_DTYPE_UINT8, /* uint8 always (integers 0..255 exact, else the value range, lossy) */
    RP_DTYPE_HU     /* int16 whose scaling reads back as HU, not the recipe's units */
} rp_dtype_kind;
typedef struct rp_dtype_spec {
    rp_dtype_kind kind;
    double step_hu; /* > 0 */
} rp_dtype_spec;
/* NULL or "" is auto. RP_EINVAL with a reason for anything else. */
int rp_dtype_parse(const char *text, rp_dtype_spec *out, char *err, size_t errlen);
const char *rp_dtype_name(rp_dtype_kind k);

/* How a float32 volume is stored: stored = round(value * a + b); a reader gets
 * stored * scl_slope + scl_inter (= the value within max_err); HU = stored * hu_slope +
 * hu_inter when hu_slope != 0. */
typedef struct rp_nifti_store {
    int datatype;
    double a, b;
    double scl_slope, scl_inter;
    double hu_slope, hu_inter;
    double max_err; /* in the units a reader gets (0: exact) */
    int exact;      /* 1: every value is stored exactly */
    char why[160];  /* the choice in words (sidecar) */
} rp_nifti_store;
/* Choose the storage of v under spec (one parallel pass over the data). hu_known: the values
 * are HU * 1/hu_scale - hu_offset/hu_scale, i.e. HU = value * hu_scale + hu_offset.
 * hu_bounds (may be NULL): HU limits every value is known to respect, all finite (a clip
 * ran and no value is NaN): then for auto/int16/hu the pass is skipped. RP_EINVAL with a
 * reason when spec asks for HU and the values are not HU-linear. */
int rp_nifti_store_choose(const rp_volume *v, const rp_dtype_spec *spec, int hu_known,
                          double hu_scale, double hu_offset, const double *hu_bounds,
                          rp_nifti_store *out, char *err, size_t errlen);
/* Write v as st says (channels become the 4th dimension). */
int rp_nifti_write_volume_store(const char *path, const rp_volume *v, const rp_nifti_store *st,
                                const rp_nifti_opts *o, char *err, size_t errlen);

/* Copy a NIfTI-1 file (.nii or .nii.gz) to `out` with new scl_slope / scl_inter, e.g. the HU
 * view of an int16 CT output (slope = hu_step, inter = hu_inter from the sidecar). For our
 * multi-member .nii.gz only the first member (header + first block) is recompressed; the
 * voxels are copied as they are. Written to a temporary name and renamed. */
int rp_nifti_copy_rescaled(const char *in, const char *out, double scl_slope, double scl_inter,
                           char *err, size_t errlen);

/* ---- PNG (png.c) ----------------------------------------------------------------------- */

int rp_png_write(const char *path, const void *pixels, int w, int h, int channels, int bit_depth);

/* ---- sidecar (sidecar.c) --------------------------------------------------------------- */

/* with_patient: add the patient keys (the caller's privacy policy allows it). */
cJSON *rp_sidecar_build(const rp_stack *st, const rp_dcm_info *const *infos, const rp_stack_data *d,
                        int with_patient);

int rp_json_write(const char *path, const cJSON *j, char *err, size_t errlen);

/* ---- diffusion gradient table (bvec.c) ------------------------------------------------- */

/* The .bval/.bvec of a 4-D MR stack as dcm2niix writes them: b-values per volume (standard
 * (0018,9087), Siemens CSA, GE, Philips, UIH private tags: dicom.h) and unit directions in the
 * voxel frame of the written data (rows bottom-up), b=0 volumes (0, 0, 0). No table (n == 0)
 * for 3-D stacks, non-MR, or series whose volumes share one b-value and direction. Philips'
 * derived isotropic volumes (b > 0, no direction) are marked in drop[] when at least two
 * others remain: rp_dwi_drop_volumes() takes them out of the stack (before loading), as
 * dcm2niix leaves them out of its NIfTI. */
typedef struct rp_dwi {
    int n;            /* volumes in the table (after dropping) */
    double *bval;     /* n, s/mm^2 */
    double (*bvec)[3];/* n */
    int n_volumes;    /* volumes of the stack before dropping */
    int *drop;        /* n_volumes: 1 = derived volume to leave out */
    int n_dropped;
    int isotropic;    /* every volume is isotropic: .bval only (as dcm2niix) */
} rp_dwi;

/* 0 (out->n may be 0: no table) or RP_ENOMEM. */
int rp_dwi_build(const rp_stack *st, const rp_dcm_info *const *infos, rp_dwi *out);
/* Remove the volumes d->drop marks from st (slice refs compacted, nt reduced, QC says so).
 * Returns how many were removed. */
int rp_dwi_drop_volumes(rp_stack *st, const rp_dwi *d);
/* Write <stem_path>.bval and (unless isotropic) <stem_path>.bvec; nothing when d->n == 0. */
int rp_dwi_write(const char *stem_path, const rp_dwi *d, char *err, size_t errlen);
void rp_dwi_free(rp_dwi *d);

/* ---- Philips floating-point scaling (philips.c) ----------------------------------------- */

/* Turn a Philips stack's display values into Philips' floating-point values (FP = display /
 * (RS x SS), dcm2niix's default -p y): through scl_slope/scl_inter when one RS and SS hold for
 * the whole stack, else (float32 data, per-slice rescale) slice by slice. Sets
 * d->philips_float and returns 1 when applied; 0 (nothing changed) for non-Philips stacks,
 * without a private Scale Slope, or with per-slice scaling in integer data. */
int rp_philips_float_apply(const rp_stack *st, const rp_dcm_info *const *infos, rp_stack_data *d);

/* ---- derived DICOM (derived.cc) -------------------------------------------------------- */

#define RP_DERIVED_MAX_CODES 8

/* A Derivation Code Sequence item (coding scheme DCM, CID 7203 "Image Derivation"). */
typedef struct rp_derived_code {
    char value[17];   /* e.g. "113085" */
    char meaning[65]; /* e.g. "Spatial resampling" */
} rp_derived_code;

typedef struct rp_derived_opts {
    const char *uid_root;               /* conf uid_root; NULL/"" = dcmtk's site root */
    const char *series_description;     /* e.g. "LIDC chest [radprep: 1 mm, lung window]";
                                           NULL: "<source description> [radprep]" */
    int series_number;                  /* <= 0: source series number + 1000 (or 1000) */
    const char *derivation_description; /* free text, e.g. the recipe; NULL: none */
    const char *recipe;                 /* recipe text: Derivation Codes are chosen from its step
                                           names when n_codes == 0 (rp_derived_codes_from_recipe) */
    rp_derived_code codes[RP_DERIVED_MAX_CODES];
    int n_codes;
    int values_physical;                /* 1: values still in the source's units (HU) */
    double window_center, window_width; /* width <= 0: the data range */
    int channel;                        /* channel of a multi-channel volume to write (0) */
    double slice_thickness_mm;          /* <= 0: spacing along the slice normal */
    /* Source slices, for the per-slice Source Image Sequence (series) and for the SEG's
     * Derivation Image references: each derived slice references the source slice(s)
     * nearest to it along the normal. NULL/0: series get no Source Image Sequence. */
    const char *const *src_slice_files;
    size_t n_src_slices;
    const char *series_uid; /* NULL: generate (tests can pin it) */
} rp_derived_opts;

/* Fill defaults: everything 0/NULL, window width -1. */
void rp_derived_opts_init(rp_derived_opts *o);

/* Map the step names of a recipe to CID 7203 derivation codes (resample -> 113085 Spatial
 * resampling, denoise/smoothing -> 113087 Smoothing, zscore/whitestripe -> 113071 Z-Score,
 * reorient/crop/pad -> 113072 Multiplanar reformatting, ...), without duplicates.
 * Returns the number written (<= max). */
int rp_derived_codes_from_recipe(const char *recipe, rp_derived_code *out, int max);

/* Write vol (channel o->channel) as a derived series, one file per slice, into out_dir
 * (created if missing). src_file: a source instance of the series (patient, study, frame of
 * reference, equipment-independent series attributes come from it).
 * On success *paths_out is a new array of *n_out new strings (the files written, in slice
 * order); free it with rp_derived_paths_free(). On failure nothing is returned and the files
 * already written are removed. */
int rp_derived_write_series(const rp_derived_opts *o, const rp_volume *vol, const char *src_file,
                            const char *out_dir, char ***paths_out, size_t *n_out);
void rp_derived_paths_free(char **paths, size_t n);

/* Write masks[0..n) (same grid each; names "lung", "body", "metal"... pick the segment codes)
 * as one binary DICOM Segmentation at out_path. The SEG references the source series
 * (Referenced Series Sequence, and per frame the nearest source slice in the Derivation Image
 * Sequence when src_slice_files are given). Empty frames are left out, except that every
 * segment keeps at least one frame. src_slice_files may be NULL when nsrc == 0 (then
 * o->src_slice_files are used, if any). */
int rp_derived_write_seg(const rp_derived_opts *o, rp_mask *const *masks, size_t n,
                         const char *src_file, const char *const *src_slice_files, size_t nsrc,
                         const char *out_path);

/* ---- results a PACS can show (overlay.cc, sr.cc) ----------------------------------------
 *
 * Contract, overlay secondary capture (rp_overlay_write):
 *  - One frame per slice of `src` (the source grid: the assembled stack before the recipe, so
 *    frame k lies beside source slice k), grey from the source window (or the 1st..99th
 *    percentile), each mask's contour burned in: a voxel of the mask (resampled nearest-
 *    neighbour onto the source grid when its grid differs) with a 4-neighbour outside it.
 *    Colour i of rp_overlay_colour() per mask; a legend (colour swatch + mask name) top left
 *    and the optional caption bottom left, in a 5x7 bitmap font scaled with the image.
 *  - Multi-frame True Colour Secondary Capture (RGB, 8 bit), or with single_frame one
 *    Secondary Capture Image Storage instance per slice; Burned In Annotation YES, Image
 *    Type DERIVED\SECONDARY, same study and Frame of Reference as the source, Source Image
 *    Sequence = the source instances. Patient/study copied as for derived series.
 *  - Files: <out_dir>/overlay.dcm, or <out_dir>/overlay_NNNNN.dcm (single frame); atomic.
 *
 * Contract, measurement report (rp_sr_write): an Enhanced SR (the SR class dcmsr picks as
 * the smallest that holds the tree: no spatial coordinates) following TID 1500 (dcmtk cmr) with one
 * TID 1411 Volumetric ROI group per mask: tracking identifier (the mask name) and tracking UID,
 * finding (the SEG's segment codes), the referenced SEG segment (when o->seg_file is given; segment
 * i+1 = masks[i]), source series, and measurements Volume (ml; voxel count x voxel volume of the
 * mask's own grid), Mean and Standard Deviation of src inside the mask (HU with o->values_hu, else
 * no units) and the number of 26-connected components. The assembly's QC findings go in as text
 * Qualitative Evaluations. Current Requested Procedure Evidence lists the source instances
 * and the SEG. Zero masks are allowed (the report then carries the findings only).
 */

/* Colour of mask i (RGB), cycling through 6 colours that stay apart on grey. */
void rp_overlay_colour(size_t i, uint8_t rgb[3]);

typedef struct rp_overlay_opts {
    const char *uid_root;
    const char *series_description;     /* NULL: "<NAME> MASK overlay [radprep]" */
    int series_number;                  /* <= 0: source series number + 1002 */
    const char *caption;                /* e.g. "NOT FOR DIAGNOSIS"; NULL/"": none */
    int single_frame;                   /* 1: one single-frame SC per slice */
    double window_center, window_width; /* width <= 0: 1st..99th percentile of src */
    const char *const *src_slice_files; /* slice order; NULL/0: only src_file is referenced */
    size_t n_src_slices;
} rp_overlay_opts;

/* paths_out/n_out as for rp_derived_write_series (free with rp_derived_paths_free). */
int rp_overlay_write(const rp_overlay_opts *o, const rp_volume *src, rp_mask *const *masks,
                     size_t n, const char *src_file, const char *out_dir, char ***paths_out,
                     size_t *n_out);

typedef struct rp_mask_stats {
    size_t voxels;    /* on the mask's own grid */
    double volume_ml; /* voxels x |det| of the mask affine / 1000 */
    double mean, sd;  /* of src inside the mask (on src's grid); NAN when none inside */
    size_t n_inside;  /* src voxels inside */
    int components;   /* 26-connected components */
} rp_mask_stats;

int rp_mask_stats_compute(const rp_mask *m, const rp_volume *src, rp_mask_stats *out);

typedef struct rp_sr_opts {
    const char *uid_root;
    const char *series_description; /* NULL: "Measurements [radprep]" */
    int series_number;              /* <= 0: source series number + 1003 */
    int values_hu;                  /* src values are HU (CT) */
    const char *seg_file;           /* the SEG of the same masks, or NULL */
    const char *const *findings;    /* QC text, one line each */
    size_t n_findings;
    const char *const *src_slice_files;
    size_t n_src_slices;
} rp_sr_opts;

int rp_sr_write(const rp_sr_opts *o, rp_mask *const *masks, size_t n, const rp_volume *src,
                const char *src_file, const char *out_path);

/* ---- one call for process.c: the outputs "dicom" / "seg" of a rule ---------------------- */
typedef struct rp_derived_request {
    const char *outputs;          /* the rule's outputs text: words "dicom" and/or "seg" */
    const char *uid_root;         /* conf uid_root */
    const char *rule_name;        /* goes into the Series Description: "<src> [radprep: NAME]" */
    const char *recipe;           /* steps text (Derivation Description and codes) */
    const rp_step_ctx *ctx;       /* after the recipe: vol, masks, info, HU bookkeeping */
    const char *const *src_files; /* source file of each slice, slice order (src_files[0]
                                     gives patient/study) */
    size_t n_src;
    const char *out_dir; /* files go to <out_dir>/dicom/ (series IM*.dcm, seg.dcm) */
    /* "overlay" / "sr": the source volume on the source grid (NULL: ctx->vol) and whether its
     * values are HU; the assembly's QC findings (text) for the SR; the overlay caption. */
    const rp_volume *src_vol;
    int src_hu;
    const char *const *qc_findings;
    size_t n_qc;
    const char *caption;
    int overlay_single_frame;
} rp_derived_request;

/* Write what the rule asks for ("overlay" -> rp_overlay_write into dicom/overlay.dcm, "sr" ->
 * rp_sr_write into dicom/sr.dcm, referencing seg.dcm when written). "dicom" -> the derived series
 * of ctx->vol (CT Image Storage when the values are still HU, i.e. CT with hu_known, scale 1,
 * offset 0; else Secondary Capture), window = the source's first window for HU output, else the
 * data range; "seg" -> ctx's masks as one SEG (except a "padding" mask; nothing when no mask is
 * left). 0 when nothing was asked. *n_written (may be NULL) gets the number of files written. */
int rp_derived_write_outputs(const rp_derived_request *r, size_t *n_written);

/* ---- step writers (step_writers.c) ----------------------------------------------------- */

const rp_step_writers *rp_write_step_writers(void);

#ifdef __cplusplus
}
#endif
#endif
