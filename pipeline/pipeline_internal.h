/*
 * pipeline/pipeline_internal.h — shared between the files of pipeline/ itself (process.c,
 * study.c, fuse_register.c); nothing outside this folder includes it.
 */
#ifndef RP_PIPELINE_INTERNAL_H
#define RP_PIPELINE_INTERNAL_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "conf/conf.h"
#include "pipeline/volume/volume.h"

/* Register every member of fusion f whose register mode is not none onto the reference
 * (vols[f->reference]): the member's affine is replaced by the registered one, the transform
 * and metric go into side's "Channels"[s]."Registration", and a before/after checkerboard
 * <stem>_register_<SEQ>.png is written to out_dir. 0, or RP_E* with a reason in err. */
int rp_fuse_register(const rp_conf_fusion *f, rp_volume **vols, cJSON *side, const char *out_dir,
                     const char *stem, char *err, size_t errlen);

/* The step writers of pipeline/write plus a reference loader that also converts a DICOM
 * folder (its largest stack) through the pipeline itself. */
const struct rp_step_writers *rp_pipeline_step_io(void);

#endif
