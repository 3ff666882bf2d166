/*
 * pipeline/pipeline.h — the pipeline's public entry: turn DICOM files into AI-ready outputs.
 * Used by `radprep process DIR` (cli/), the worker's jobs (worker/job.c), study-level fusion
 * (sched/fusion.c) and radprepd's start-up check (node/). Library rp_pipeline (process.c,
 * study.c) on top of the stage libraries of pipeline/<stage>/ (see pipeline/CMakeLists.txt):
 * decoding and assembly (rp_assemble), recipes and steps (rp_recipe), writers (rp_write).
 *
 * Contract:
 *  - rp_pipeline_process_files() reads every file's header, groups the images by series
 *    (Series Instance UID + Series Number), assembles each series into stacks (one per
 *    orientation / size / echo; 4-D when positions repeat), decodes slice by slice straight
 *    into one buffer per stack, optionally runs a recipe (float32), and writes per stack
 *      <out_dir>/<stem>.nii.gz (or .nii) and <stem>.json (BIDS-style sidecar + provenance),
 *    and one <out_dir>/qc.json for the whole call: every input's fate, every assembly
 *    decision and oddity (tilt, uneven spacing, missing slices, dropped localizers, files
 *    that failed and why) in machine-readable form.
 *  - Processing is a pure function of (files, options, configuration): the same input gives
 *    the same bytes (no timestamps in outputs; the file list is sorted first). Outputs are
 *    written under a temporary name and renamed.
 *  - Patient information (name, ID, birth date, ...) goes into sidecars or file names only
 *    when the privacy policy in the options says so; the default is none.
 *  - Return value: 0 when every input file was converted or deliberately skipped (non-image
 *    objects are skipped, not failures); RP_EPARSE / RP_EDECODE / RP_EGEOM / RP_EUNSUPPORTED
 *    (the first failure) when any input failed — the other series are still written and the
 *    reason is in res->reason and qc.json. RP_EINVAL/RP_EIO/RP_ENOMEM for argument, output or
 *    memory errors.
 */
#ifndef RP_PIPELINE_PIPELINE_H
#define RP_PIPELINE_PIPELINE_H

#include <stddef.h>

#include "conf/conf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What patient information may leave the node in outputs. */
typedef enum {
    RP_PRIVACY_NONE = 0,    /* default: no patient identifiers anywhere in outputs */
    RP_PRIVACY_SIDECAR = 1, /* patient name/ID/birth date/sex/age/weight, accession in JSON */
    RP_PRIVACY_FILENAME = 2 /* as SIDECAR, and the Patient ID prefixes file names */
} rp_privacy;

typedef struct rp_process_opts {
    int gzip;               /* 1 (default): .nii.gz; 0: .nii */
    int gzip_level;         /* 1..12 (write.h: 1 igzip 1, 2..6 igzip 2, 7..12 libdeflate);
                               0: default (6) */
    int threads;            /* decode/compress threads; 0: OpenMP default, fewer when the
                               machine is busy (dynamic) */
    const char *recipe;     /* steps text run on each stack (float32 output); NULL or "":
                               plain conversion in the native integer type */
    int resample_irregular; /* 1 (default): gantry tilt / uneven spacing are resampled onto
                               a regular grid (said in QC); 0: an evenly spaced sheared stack
                               is written as acquired with its exact sheared sform, an
                               unevenly spaced one fails (RP_EGEOM) */
    rp_privacy privacy;     /* default RP_PRIVACY_NONE */
    int write_qc;           /* 1 (default): <out_dir>/qc.json */
    int skip_non_dicom;     /* 1: files that are plainly not DICOM (text such as README/JSON,
                               NIfTI, PNG, JPEG, gzip) are skipped
                               and listed, not failures. rp_pipeline_process_dir() sets it;
                               default 0: every file given explicitly must be DICOM */
    const char *outputs;    /* a rule's outputs words; "dicom" / "seg" / "overlay" / "sr"
                               (with a recipe) write the derived series / the masks as SEG /
                               the contour overlay SC / the TID 1500 report under <out>/dicom/.
                               NULL: NIfTI + JSON only */
    const char *rule_name;  /* names the derived series ("<source> [radprep: NAME]") */
    /* "overlay": the caption burned into every frame; NULL: "NOT FOR DIAGNOSIS"; "": none */
    const char *overlay_caption;
    const char *uid_root;   /* root of derived UIDs; NULL: the configuration's uid_root */
    long long preload_mb;   /* pixels decoded while headers are read (one parse per file),
                               up to this many MiB in total; the rest is decoded per stack.
                               0: default (1024); < 0: never */
    int philips_float;      /* 1: Philips private floating-point values (FP = display /
                               (RS x SS), dcm2niix's -p y) instead of display values; the
                               sidecar says UsePhilipsFloatNotDisplayScaling. Default 0 */
} rp_process_opts;

void rp_process_opts_init(rp_process_opts *o);

/* One written stack. */
typedef struct rp_process_output {
    char nifti[1024];   /* path of the image */
    char sidecar[1024]; /* path of the JSON sidecar */
    char series_uid[65];
    char study_uid[65];
    char modality[17];
    int dim[4];
    char **src_files; /* owned: source file of each slice of volume 0, in slice order
                         (for derived DICOM references) */
    size_t n_src_files;
} rp_process_output;

typedef struct rp_process_result {
    int n_inputs;  /* files given */
    int n_failed;  /* files that could not be read or decoded */
    int n_skipped; /* non-image objects and duplicates */
    int n_series;
    rp_process_output *outputs; /* owned */
    size_t n_outputs;
    char qc_path[1024]; /* "" when not written */
    char *qc_json;      /* owned: the QC report as JSON text */
    char reason[512];   /* first failure, "" when none */
} rp_process_result;

void rp_process_result_free(rp_process_result *r);

/* Process `files` (any order) into out_dir (created when missing). c may be NULL (defaults).
 * res is filled even on failure (free it with rp_process_result_free). */
int rp_pipeline_process_files(const rp_conf *c, const char *const *files, size_t n,
                              const char *out_dir, const rp_process_opts *o,
                              rp_process_result *res);

/* 0 when `steps` is a valid recipe (NULL or "" included: no recipe), else RP_ECONF with the
 * reason in err (e.g. for a command-line --recipe, before any file is read). Inline on
 * rp_recipe_check() (pipeline/recipe/recipe.h) so that a program that only validates recipes
 * links rp_recipe alone, not decoding and the writers (radprepd does). */
int rp_recipe_check(const char *steps, char *err, size_t errlen);
static inline int rp_pipeline_check_recipe(const char *steps, char *err, size_t errlen)
{
    if (!steps || !steps[0])
        return 0;
    return rp_recipe_check(steps, err, errlen);
}

/* The rule (borrowed from c) that processes a series with these index attributes, or NULL
 * when none matches: every non-empty criterion of a rule must match, the highest priority
 * wins. This is how the daemon's jobs and `radprep fit` choose, without the step types. */
const rp_conf_rule *rp_pipeline_match_rule(const rp_conf *c, const char *modality,
                                           const char *body_part,
                                           const char *series_description,
                                           double slice_thickness);

/* Same, on every regular file below `dir` (recursively; hidden files skipped). */
int rp_pipeline_process_dir(const rp_conf *c, const char *dir, const char *out_dir,
                            const rp_process_opts *o, rp_process_result *res);

/* ---- several series at once (study.c) ------------------------------------------------------ */

/* Study-level fusion of the [fusion NAME] rule `f` over `files` (any mix of series; each
 * series assembled as above, its largest stack, first volume of a 4-D one): every sequence
 * of f picks one series (its matcher; several candidates: the lowest series number, said in
 * the sidecar's Warnings), each member is normalised on its own grid (f->normalize steps),
 * resampled onto the reference sequence's grid through the affines (members must share the
 * study and Frame of Reference: RP_EGEOM otherwise) and stacked as channels. Writes into
 * out_dir: <stem>.nii.gz (4-D, layout nifti4d), nnunet/<stem>_0000.nii.gz... (layout nnunet)
 * and <stem>.json (members, steps, affine, outputs; node_json, an object as text, is added
 * as "Node" when given). A missing sequence is RP_ENOENT with "fuse: missing sequence T2"
 * in res->reason and the names in res->missing; nothing is written then. */
typedef struct rp_fusion_result {
    char nifti[1024];      /* "" when not written */
    char nnunet_dir[1024]; /* "" when not written */
    char sidecar[1024];
    char *sidecar_json; /* owned: the sidecar as text */
    int dim[4];
    int n_channels;
    char series_uid[8][65]; /* member of each channel */
    char missing[256];      /* missing sequence names, ", " separated */
    char reason[768];
} rp_fusion_result;
void rp_fusion_result_free(rp_fusion_result *r);
int rp_pipeline_fuse_files(const rp_conf_fusion *f, const char *const *files, size_t n,
                           const char *out_dir, const char *stem, const rp_process_opts *o,
                           const char *node_json, rp_fusion_result *res);
/* Which sequences of f the series whose header is in `file` matches: bit s for f->seq[s]
 * (modality of f and the sequence's matcher). Reads the header only. */
int rp_pipeline_fusion_match_file(const rp_conf_fusion *f, const char *file, unsigned *bits,
                                  char *err, size_t errlen);

/* Fit a Nyúl–Udupa model (pipeline/mr/mr.h) over the series among `files` (one training volume
 * per series, at most max_series, 0: all), each after `steps` (may be NULL: e.g. the steps
 * before `nyul` in a rule), inside mask `mask_name` or, when NULL/"", the mask the nyul step
 * would pick (brain, foreground, head, else voxels > 0). Writes the JSON model that
 * `nyul(model=PATH)` reads to model_path (temp name + rename). One series in memory at a
 * time. */
typedef struct rp_nyul_fit_result {
    int n_series;     /* training volumes used */
    int n_unreadable; /* files that were not DICOM */
    int n_landmarks;
    double standard[32];
    char reason[768];
} rp_nyul_fit_result;
int rp_pipeline_fit_nyul(const char *const *files, size_t n, const char *steps,
                         const char *mask_name, size_t max_series, const char *model_path,
                         rp_nyul_fit_result *res);

#ifdef __cplusplus
}
#endif
#endif
