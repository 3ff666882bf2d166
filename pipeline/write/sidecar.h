/*
 * pipeline/sidecar.h — the JSON sidecar of one written stack and the QC report helpers
 * (internal to pipeline/ and its tests).
 *
 * Contract:
 *  - rp_sidecar_build() returns a new cJSON object with BIDS-style acquisition keys (times in
 *    seconds, as BIDS and dcm2niix write them) and a "Provenance" object: source SOP
 *    Instance UIDs in slice order, transfer syntaxes, the assembly decisions (the stack's QC),
 *    scaling, software name and RP_VERSION. Patient keys appear only when the privacy policy
 *    allows (RP_PRIVACY_SIDECAR or higher). No wall-clock time is written (outputs are a pure
 *    function of the input).
 *  - rp_json_write() writes any cJSON to a file atomically (temporary name + rename).
 */
#ifndef RP_PIPELINE_SIDECAR_H
#define RP_PIPELINE_SIDECAR_H

#include <cjson/cJSON.h>

#include "pipeline/assemble/assemble.h"
#include "pipeline/pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

cJSON *rp_sidecar_build(const rp_stack *st, const rp_dcm_info *const *infos, const rp_stack_data *d,
                        rp_privacy privacy);

int rp_json_write(const char *path, const cJSON *j, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
