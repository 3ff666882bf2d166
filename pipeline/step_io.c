/*
 * pipeline/step_io.c — the file I/O steps get from the pipeline (contract in
 * pipeline_internal.h): pipeline/write's writers, and a volume reader that takes a NIfTI file
 * or converts a DICOM folder (its largest stack) through the pipeline itself.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/common.h"
#include "pipeline/augment/augment.h"
#include "pipeline/pipeline.h"
#include "pipeline/pipeline_internal.h"
#include "pipeline/step/step.h"
#include "pipeline/write/write.h"

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p) == 0 ? 0 : -1;
}

/* The reference volume: a NIfTI file, or a DICOM folder converted (largest stack) through a
 * temporary folder. */
static int load_reference(const char *path, rp_volume **out, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "register: reference %s: %s", path, strerror(errno));
        return RP_ENOENT;
    }
    if (!S_ISDIR(st.st_mode))
        return rp_aug_read_nifti(path, out, err, errlen);
    const char *td = getenv("TMPDIR");
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/radprep-register-XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(tmp)) {
        snprintf(err, errlen, "register: cannot create a temporary folder: %s", strerror(errno));
        return RP_EIO;
    }
    rp_process_opts o;
    rp_process_opts_init(&o);
    o.gzip = 0;
    o.write_qc = 0;
    rp_process_result res;
    int rc = rp_pipeline_process_dir(NULL, path, tmp, &o, &res);
    const rp_process_output *best = NULL;
    double bestn = 0;
    for (size_t i = 0; i < res.n_outputs; i++) {
        double n = (double)res.outputs[i].dim[0] * res.outputs[i].dim[1] * res.outputs[i].dim[2];
        if (n > bestn) {
            bestn = n;
            best = &res.outputs[i];
        }
    }
    if (!best) {
        snprintf(err, errlen, "register: reference folder %.120s holds no image volume%s%.200s", path,
                 res.reason[0] ? ": " : "", res.reason);
        rc = rc ? rc : RP_ENOENT;
    } else {
        rc = rp_aug_read_nifti(best->nifti, out, err, errlen);
    }
    rp_process_result_free(&res);
    nftw(tmp, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return rc;
}

const rp_step_writers *rp_pipeline_step_io(void)
{
    static rp_step_writers io;
    static int ready;
    if (!ready) { /* set once, before any thread runs steps */
        io = *rp_write_step_writers();
        io.load_volume = load_reference;
        ready = 1;
    }
    return &io;
}
