/*
 * pipeline/derived.h — derived DICOM writers (internal to pipeline/ and its tests):
 * a processed volume as a new DICOM series in the source study, and masks as one DICOM
 * Segmentation. Implemented in pipeline/derived.cc (dcmtk); no dcmtk type crosses this header.
 *
 * Contract:
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
 */
#ifndef RP_PIPELINE_DERIVED_H
#define RP_PIPELINE_DERIVED_H

#include <stddef.h>

#include "pipeline/step.h"
#include "pipeline/volume/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

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
} rp_derived_request;

/* Write what the rule asks for: "dicom" -> the derived series of ctx->vol (CT Image Storage
 * when the values are still HU, i.e. CT with hu_known, scale 1, offset 0; else Secondary
 * Capture), window = the source's first window for HU output, else the data range; "seg" ->
 * ctx's masks as one SEG (except a "padding" mask; nothing when no mask is left). 0 when nothing
 * was asked. *n_written (may be NULL) gets the number of files written. */
int rp_derived_write_outputs(const rp_derived_request *r, size_t *n_written);

#ifdef __cplusplus
}
#endif
#endif
