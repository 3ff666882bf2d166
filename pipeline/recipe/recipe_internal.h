/*
 * pipeline/recipe/recipe_internal.h — what the files of pipeline/recipe/ share and nobody
 * else sees: the step tables the registry searches, and the entry points of the steps whose
 * table lives in another file than their code.
 */
#ifndef RP_PIPELINE_RECIPE_INTERNAL_H
#define RP_PIPELINE_RECIPE_INTERNAL_H

#include <stddef.h>

#include "pipeline/recipe/recipe.h"

/* rp_qc_stats() that also hands out the exact finite extent and the count of NaN/Inf. */
cJSON *rp_qc_stats_extent(const rp_volume *v, float *lo, float *hi, size_t *nonfinite);
/* The same figures from statistics already measured (a step's own pass over its output). */
cJSON *rp_qc_stats_of(const rp_volume *v, const rp_vstats *s, float *lo, float *hi,
                      size_t *nonfinite);

/* One NULL-terminated table per area (an entry with name == NULL ends it); the registry
 * (recipe.c) searches them in this order. */
extern const rp_step_def rp_steps_generic[];
extern const rp_step_def rp_steps_ct[];
extern const rp_step_def rp_steps_mr[];
extern const rp_step_def rp_steps_xr[];
extern const rp_step_def rp_steps_register[]; /* register(REF), align(midline) */

/* Step function sets, wired into the tables in steps_generic.c and steps_ct.c. */
#define RP_STEP_FNS(x)                                                                             \
    int rp_step_##x##_parse(const rp_step_args *args, void **params, char *err, size_t errlen);    \
    int rp_step_##x##_run(rp_step_ctx *ctx, const void *params);                                   \
    void rp_step_##x##_describe(const void *params, cJSON *obj);
#define RP_STEP_ENTRY(x, usage) RP_STEP_ENTRY_F(x, usage, 0)
/* the same with rp_step_def.flags (step.h) */
#define RP_STEP_ENTRY_F(x, usage, flags)                                                           \
    {                                                                                              \
#x, usage, rp_step_##x##_parse, rp_step_##x##_run, NULL, rp_step_##x##_describe, flags     \
    }

RP_STEP_FNS(hu)
RP_STEP_FNS(clip)
RP_STEP_FNS(window)
RP_STEP_FNS(multiwindow)
RP_STEP_FNS(normalize)
RP_STEP_FNS(resample)
RP_STEP_FNS(reorient)
RP_STEP_FNS(crop)
RP_STEP_FNS(crop_or_pad)
RP_STEP_FNS(denoise)
RP_STEP_FNS(patches)
RP_STEP_FNS(bodymask)
RP_STEP_FNS(lungmask)
RP_STEP_FNS(metal)

#endif
