/*
 * pipeline/steps_register.h — glue between pipeline/ and the register / align libraries
 * (internal to pipeline/): the step table of `register(REF)` and `align(midline)`, and the
 * registration of fusion members (`register =` of a [fusion NAME] rule).
 *
 * Contract:
 *  - rp_steps_register[] is one more step table for the registry (recipe.c).
 *  - rp_fuse_register() registers every member vols[s] whose effective `register` setting is
 *    not none onto vols[f->reference] (pipeline/register), then replaces the member's affine
 *    by T⁻¹·A so fusion's resampling through the affines applies the correction (no extra
 *    interpolation). Writes per registered member a QC checkerboard (reference vs member,
 *    before and after) as <out_dir>/<stem>_register_<SEQ>.png and adds to side["Channels"][s]
 *    "Registration": {method, matrix, parameters, metric, what moved, qc}; side["Register"] is
 *    the rule's setting. A member that cannot be registered fails the fusion with the reason.
 */
#ifndef RP_PIPELINE_STEPS_REGISTER_H
#define RP_PIPELINE_STEPS_REGISTER_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "conf/conf.h"
#include "pipeline/step.h"

extern const rp_step_def rp_steps_register[];

int rp_fuse_register(const rp_conf_fusion *f, rp_volume **vols, cJSON *side, const char *out_dir,
                     const char *stem, char *err, size_t errlen);

#endif
