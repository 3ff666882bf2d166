/*
 * pipeline/ops_fused_internal.h — element-wise steps run as one pass (internal to pipeline/:
 * the runner in recipe.c, the steps in ops_generic.c).
 *
 * Why: `clip(lo,hi) normalize(minmax)` (the end of the CT recipes) costs five passes over the
 * volume when run step by step (clip, statistics, min/max, scaling, statistics); the pair
 * needs one pass for the minimum and maximum and one that clips, scales and gathers the
 * statistics of both results. The values are the same floats as step by step.
 */
#ifndef RP_PIPELINE_OPS_FUSED_INTERNAL_H
#define RP_PIPELINE_OPS_FUSED_INTERNAL_H

#include <cjson/cJSON.h>

#include "pipeline/step/step.h"

/* Run clip (clip_params) and then normalize (norm_params) on ctx as one fused pair. The QC
 * entries of the two steps get what each would have added; *after_clip / *after_norm are
 * the statistics after each (new objects). RP_EUNSUPPORTED, with nothing changed, when the
 * pair cannot be fused (normalize is not minmax, several channels, non-finite values): the
 * runner then runs them one by one. Other RP_E* with a reason in ctx->err. */
int rp_ops_clip_minmax(rp_step_ctx *ctx, const void *clip_params, const void *norm_params,
                       cJSON *clip_qc, cJSON *norm_qc, cJSON **after_clip, cJSON **after_norm);

#endif
