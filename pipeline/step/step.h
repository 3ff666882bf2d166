/*
 * pipeline/step/step.h — the step framework: what one recipe step is (rp_step_def), what it
 * works on (rp_step_ctx), and the helpers every step uses. Library rp_step; depends on
 * rp_volume and cJSON.
 *
 * Why a module of its own: the kernels (volume/, ct/, mr/, xray/) know nothing about steps,
 * so the same kernels serve the steps, the benchmarks and the study-level code; the steps
 * (pipeline/recipe/) glue kernels to this framework; the writers (pipeline/write/) read a
 * finished context (derived DICOM) and supply the file writers a step may need
 * (rp_step_writers) without the steps linking them.
 *
 * A recipe is text such as
 *     hu clip(-1200,600) resample(1,1,1,bspline3) window(lung) lungmask normalize(minmax)
 * i.e. steps separated by blanks, each `name` or `name(arg, arg, ...)`; an argument may itself
 * contain balanced parentheses (`normalize(percentile(0.5,99.5))`).
 *
 * Contract:
 *  - Each step is an rp_step_def registered by name (the registry is pipeline/recipe/).
 *    Parsing a recipe resolves every name and calls the step's parse() to validate and type
 *    its arguments; an unknown name or bad argument is an error with a reason (conf adds
 *    FILE:LINE). Parsing never touches images.
 *  - run() transforms the context in place: it may replace ctx->vol (freeing the old one),
 *    add masks, add QC entries, or write extra files under ctx->out_dir. It returns 0 or RP_E*
 *    and puts a reason in ctx->err.
 *  - Extra image files (the `png` step, n4's field, the runner's QC montage) are written
 *    through ctx->writers, never by linking a file format library: the step tables then pull
 *    in no libpng / libdeflate, so a program that only validates recipes stays small. A step
 *    that must write and finds no writer fails with RP_EUNSUPPORTED and says so.
 *  - describe() writes the step's resolved parameters (defaults filled in) as a JSON object,
 *    so the sidecar lists exactly what ran; the recipe hash is computed over these.
 *  - Steps are pure functions of (input, params): same input, same bytes out.
 */
#ifndef RP_PIPELINE_STEP_H
#define RP_PIPELINE_STEP_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "pipeline/volume/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RP_STEP_MAX_ARGS 16
#define RP_MAX_MASKS 8

/* Raw arguments of one step occurrence, as written in the recipe. */
typedef struct rp_step_args {
    int n;
    char arg[RP_STEP_MAX_ARGS][128];  /* trimmed, may contain "(...)" */
} rp_step_args;

/* File writers a step may call (see the contract above); pipeline/write implements them
 * (rp_write_step_writers()). Both return 0 or RP_E*. */
typedef struct rp_step_writers {
    /* 8/16-bit grey (channels 1) or RGB (3) PNG, row 0 at the top, host-order samples */
    int (*png)(const char *path, const void *pixels, int w, int h, int channels, int bit_depth);
    /* float32 volume as gzip NIfTI (path ending .nii.gz) with header description `descrip`;
     * a reason in err */
    int (*nifti)(const char *path, const rp_volume *v, const char *descrip, char *err,
                 size_t errlen);
    /* read a reference volume (a NIfTI file, or a DICOM folder where the caller can convert
     * one) into *out (owned by the caller); NULL when the context cannot read volumes */
    int (*load_volume)(const char *path, rp_volume **out, char *err, size_t errlen);
} rp_step_writers;

/* Everything a step can read or change. */
typedef struct rp_step_ctx {
    rp_volume *vol;                  /* owned by the ctx; a step may replace it */
    rp_mask *masks[RP_MAX_MASKS];    /* owned by the ctx */
    int n_masks;
    const rp_series_info *info;      /* borrowed */
    cJSON *qc;                       /* QC report object (owned by the caller); steps add to
                                        qc["steps"][i] and may add top-level findings */
    cJSON *step_qc;                  /* this step's QC object inside qc["steps"] */
    const char *out_dir;             /* where extra outputs go (may be NULL: do not write) */
    const char *out_stem;            /* file name stem for extra outputs */
    const rp_step_writers *writers;  /* borrowed; NULL: no file writer (steps that must
                                        write fail, the montage is skipped with a note) */
    cJSON *extra_outputs;            /* array: steps append {"kind":..,"path":..} */
    char err[256];                   /* reason when run() fails */
    /* Intensity bookkeeping, so HU-based steps (bodymask, lungmask, metal) still work after
     * linear ones (window, normalize): while hu_known, HU = value * hu_scale + hu_offset, and
     * HU values outside [hu_lo, hu_hi] have been clipped to the ends. The runner sets it from
     * the modality; linear steps update it; after a step of the MR or X-ray tables the runner
     * clears hu_known (those steps need not know about it). */
    int hu_known;
    double hu_scale, hu_offset;
    double hu_lo, hu_hi;
    /* The volume's exact finite extent, set by the runner when its QC statistics measured it
     * (no NaN/Inf, one channel) and cleared by it after every step that may change voxels:
     * valid while extent_of == vol->data. Lets a step skip its own min/max pass. */
    const float *extent_of;
    float extent_lo, extent_hi;
    /* Statistics of vol that the step just run measured while writing it (valid while
     * stats_of == vol->data and they cover every voxel): the runner records them as the
     * step's "after" instead of a pass of its own. Cleared by the runner before each step. */
    const float *stats_of;
    rp_vstats stats;
} rp_step_ctx;

typedef struct rp_step_def {
    const char *name;
    const char *usage;               /* e.g. "clip(lo,hi) or clip(soft_tissue|full_body|bone|lung)" */
    /* Validate and type args; *params_out is owned by the recipe (free_params releases it). */
    int (*parse)(const rp_step_args *args, void **params_out, char *err, size_t errlen);
    int (*run)(rp_step_ctx *ctx, const void *params);
    void (*free_params)(void *params);           /* may be NULL: free() is used */
    void (*describe)(const void *params, cJSON *obj);  /* resolved parameters */
    unsigned flags;                  /* RP_STEP_* below: what the step promises the runner */
} rp_step_def;

/* rp_step_def.flags */
enum {
    /* never changes the volume's voxels (adds masks and findings): the runner reuses the
     * statistics and extent measured before it instead of another pass over the data */
    RP_STEP_READS_VOLUME_ONLY = 1u << 0,
    /* never reads a mask's bytes: masks may stay packed in bits (volume.h) while it runs */
    RP_STEP_MASKS_PACKED_OK = 1u << 1,
    /* takes a deferred volume (volume.h: data NULL, its voxels still the decoded slices) as
     * it is; the runner writes the float voxels before any other step */
    RP_STEP_READS_DEFERRED = 1u << 2,
};

/* Mask helpers on a context (ctx keeps ownership). */
rp_mask *rp_step_ctx_mask(rp_step_ctx *ctx, const char *name);      /* NULL if absent */
int rp_step_ctx_add_mask(rp_step_ctx *ctx, rp_mask *m);  /* takes ownership; replaces same name */
void rp_step_ctx_release(rp_step_ctx *ctx);              /* frees vol and masks */
/* Record that the step mapped value -> a*value + b (a != 0) on every voxel. */
void rp_step_ctx_note_linear(rp_step_ctx *ctx, double a, double b);
/* Record that values were clipped to [lo, hi] (in current value units). */
void rp_step_ctx_note_clip(rp_step_ctx *ctx, double lo, double hi);
/* Current value of `hu`: 0, or RP_EINVAL with a reason in ctx->err when HU is unknown or
 * `hu` lies outside the range still represented (it was clipped away). */
int rp_step_ctx_hu_value(rp_step_ctx *ctx, double hu, const char *step, float *value);
/* Attach a number / object to this step's QC entry (no-op without QC). */
void rp_step_qc_number(rp_step_ctx *ctx, const char *key, double v);
void rp_step_qc_add(rp_step_ctx *ctx, const char *key, cJSON *item);  /* takes ownership */

/* Argument helpers shared by all parse() functions: 0 or RP_EINVAL with a reason. */
int rp_arg_double(const char *s, double *out);
int rp_arg_int(const char *s, int *out);
/* Split "name(a,b)" into name and args; "name" alone gives n = 0. Arguments are split at
 * top-level commas only and trimmed; RP_EINVAL on unbalanced parentheses, empty arguments,
 * too many or too long arguments, or text after the closing parenthesis. */
int rp_arg_call(const char *s, char *name, size_t namesz, rp_step_args *args);
/* Index of `s` in the NULL-terminated list `words` (case-insensitive), or -1. */
int rp_arg_word(const char *s, const char *const *words);
/* Format a parse error "<reason> (usage: <usage>)" into err; returns RP_EINVAL. */
int rp_arg_fail(char *err, size_t errlen, const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#ifdef __cplusplus
}
#endif
#endif
