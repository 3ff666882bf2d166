/* pipeline/write/step_writers.c — the file writers a recipe's steps may call (rp_step_writers,
 * pipeline/step/step.h), bound to this module's PNG and NIfTI writers. Contract in write.h. */
#include <string.h>

#include "common/common.h"
#include "pipeline/write/write.h"

static int write_nifti(const char *path, const rp_volume *v, const char *descrip, char *err,
                       size_t errlen)
{
    rp_nifti_opts o;
    memset(&o, 0, sizeof o);
    o.gzip = 1;
    rp_strlcpy(o.descrip, descrip ? descrip : "", sizeof o.descrip);
    return rp_nifti_write_volume(path, v, &o, err, errlen);
}

static const rp_step_writers WRITERS = {.png = rp_png_write, .nifti = write_nifti};

const rp_step_writers *rp_write_step_writers(void)
{
    return &WRITERS;
}
