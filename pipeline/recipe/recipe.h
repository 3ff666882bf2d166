/*
 * pipeline/recipe/recipe.h — recipes (parsed `steps = ...` text), the step registry and
 * every step of every modality, the runner, rule matching, the recipe hash and the QC
 * report/montage. Library rp_recipe; depends on rp_step, the kernels (rp_volume, rp_ct, rp_mr,
 * rp_xray), conf (rules), cJSON and OpenSSL (SHA-256). Not on DICOM decoding nor on any file
 * writer: radprepd links it alone to validate the configuration's recipes at start, and
 * pipeline/pipeline.h's rp_pipeline_check_recipe() is this rp_recipe_check().
 *
 * Why the step glue (steps_*.c) lives here and not beside each kernel: the kernels stay free
 * of the step framework, and the registry has every table at hand without a kernel library
 * depending on it. The step tables are the reason this library links the kernels.
 *
 * Contract:
 *  - rp_recipe_parse() turns recipe text into an rp_recipe: every step name is resolved in the
 *    registry (tables rp_steps_generic, rp_steps_ct, rp_steps_mr, rp_steps_xr, in that order)
 *    and every step's parse() validates its arguments. Errors: RP_ECONF with a reason such as
 *    "step 3 'clip': expected clip(lo,hi) ...: 'abc' is not a number". Parsing touches no image.
 *  - rp_recipe_check() has the signature of conf's rp_conf_steps_check_fn (parse, then free).
 *  - rp_recipe_describe() gives the resolved steps as JSON:
 *        [{"step":"clip","params":{"lo":-1200,"hi":600}}, ...]
 *    and rp_recipe_hash() is the SHA-256 (hex) of that array printed unformatted by cJSON.
 *    Both depend only on the resolved parameters: "window(lung)" and "window(-600,1500)" hash
 *    the same; blanks and spelling of numbers do not matter; parameters and order do.
 *  - rp_recipe_run() runs the steps in order on ctx (see step.h). Before each step it takes
 *    statistics of ctx->vol, runs it, takes them again and appends to ctx->qc["steps"]:
 *        {"step":..,"params":{..},"before":{stats},"after":{stats},"ms":..}
 *    stats = {dim:[..], spacing:[..], min, max, mean, sd, at_min_fraction, at_max_fraction,
 *    nonfinite}. Steps that clip add "clipped_fraction" themselves. After the last step it
 *    writes ctx->qc["masks"] = {name: {voxels, volume_ml}} and, when ctx->out_dir and
 *    ctx->out_stem are set, the QC montage <out_dir>/<out_stem>_qc.png (rp_qc_montage_png),
 *    listed in ctx->extra_outputs as {"kind":"qc_montage","path":..}; without ctx->writers
 *    it is not written and ctx->qc["montage_error"] says why. On failure ctx->err
 *    says which step failed and why; the volume is left as the failing step left it.
 *    On a fresh context (zeroed, hu_scale == 0) the runner sets the HU bookkeeping (see
 *    step.h): for CT (info->modality "CT", or no info) the input is taken as Hounsfield units,
 *    as produced by assembly (slope/intercept applied); a context that already ran a recipe
 *    keeps its bookkeeping.
 *  - rp_recipe_match() picks the rule for a series: every non-empty criterion must match
 *    (modality and body part: any word of the rule's list, case-insensitive; series
 *    description: fnmatch glob, case-insensitive; slice thickness within [min,max] when the
 *    bound is >= 0). Highest priority wins; on a tie a user rule beats a built-in one, then the
 *    earlier rule wins. NULL when none matches.
 *  - rp_qc_montage_png() writes one PNG: axial, coronal and sagittal mid-slices of channel 0
 *    side by side (display window: lung window for HU data, else 0.5-99.5th percentile),
 *    physical aspect kept, masks in ctx overlaid in colour, through ctx->writers->png
 *    (RP_EUNSUPPORTED without one).
 */
#ifndef RP_PIPELINE_RECIPE_H
#define RP_PIPELINE_RECIPE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "conf/conf.h"
#include "pipeline/step/step.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_recipe rp_recipe; /* opaque */

/* Parse recipe text; *out is new (rp_recipe_free). RP_ECONF with a reason in err. */
int rp_recipe_parse(const char *steps, rp_recipe **out, char *err, size_t errlen);
void rp_recipe_free(rp_recipe *r);
/* rp_conf_steps_check_fn: 0 when `steps` parses, else RP_ECONF and a reason. */
int rp_recipe_check(const char *steps, char *err, size_t errlen);

size_t rp_recipe_nsteps(const rp_recipe *r);
const char *rp_recipe_step_name(const rp_recipe *r, size_t i); /* NULL when out of range */
/* New JSON array of {"step","params"} (caller deletes with cJSON_Delete); NULL on ENOMEM. */
cJSON *rp_recipe_describe(const rp_recipe *r);
/* SHA-256 of the canonical description, 64 hex digits + NUL. 0 or RP_ENOMEM/RP_EINTERNAL. */
int rp_recipe_hash(const rp_recipe *r, char hex[65]);

/* Run every step on ctx (ctx->vol must be set; ctx->qc may be NULL: no QC is recorded). */
int rp_recipe_run(const rp_recipe *r, rp_step_ctx *ctx);
/* The same, but the masks may come back packed in bits (rp_mask.bits, volume.h): for a caller
 * that writes them with rp_nifti_write_mask() and unpacks them before anything else. */
int rp_recipe_run_packed(const rp_recipe *r, rp_step_ctx *ctx);

/* Registry lookup over all step tables; NULL if unknown. */
const rp_step_def *rp_recipe_find_step(const char *name);

/* Rule for a series (borrowed pointer into c) or NULL. */
const rp_conf_rule *rp_recipe_match(const rp_conf *c, const rp_series_info *info);

/* QC helpers (qc.c). Stats of channel 0..nc-1 of v as a new JSON object. */
cJSON *rp_qc_stats(const rp_volume *v);
/* Mask volumes {name:{voxels, volume_ml}} as a new JSON object. */
cJSON *rp_qc_masks(const rp_step_ctx *ctx);
/* Montage PNG of ctx->vol with ctx's masks overlaid. 0 or RP_E*. */
int rp_qc_montage_png(const rp_step_ctx *ctx, const char *path);
/* The same JSON as rp_qc_stats() from figures a step gathered in its own pass over v:
 * finite min/max, sum and sum of squares of the finite values, how many equal min / max,
 * how many are not finite. */
cJSON *rp_qc_stats_from(const rp_volume *v, double lo, double hi, double sum, double sumsq,
                        size_t n_at_lo, size_t n_at_hi, size_t nonfinite);

#ifdef __cplusplus
}
#endif
#endif
