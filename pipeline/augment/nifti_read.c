/*
 * pipeline/augment/nifti_read.c — NIfTI-1 files into an rp_volume through Debian's libniftiio
 * (the reader of the NIfTI reference implementation; radprep's own nifti.c only writes).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <nifti1_io.h>

#include "common/common.h"
#include "pipeline/augment/augment.h"

static double sample(const void *p, int dt, size_t i, int *ok)
{
    switch (dt) {
    case DT_UINT8:
        return ((const uint8_t *)p)[i];
    case DT_INT8:
        return ((const int8_t *)p)[i];
    case DT_INT16:
        return ((const int16_t *)p)[i];
    case DT_UINT16:
        return ((const uint16_t *)p)[i];
    case DT_INT32:
        return ((const int32_t *)p)[i];
    case DT_UINT32:
        return ((const uint32_t *)p)[i];
    case DT_INT64:
        return (double)((const int64_t *)p)[i];
    case DT_UINT64:
        return (double)((const uint64_t *)p)[i];
    case DT_FLOAT32:
        return ((const float *)p)[i];
    case DT_FLOAT64:
        return ((const double *)p)[i];
    }
    *ok = 0;
    return 0;
}

int rp_aug_read_nifti(const char *path, rp_volume **out, char *err, size_t errlen)
{
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    if (!path || !out)
        return RP_EINVAL;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: no such file", path);
        return RP_EIO;
    }
    nifti_set_debug_level(0);
    nifti_image *nim = nifti_image_read(path, 1);
    if (!nim || !nim->data) {
        snprintf(err, errlen, "%s: not a readable NIfTI file", path);
        if (nim)
            nifti_image_free(nim);
        return RP_EPARSE;
    }
    const int nx = nim->nx > 0 ? nim->nx : 1, ny = nim->ny > 0 ? nim->ny : 1,
              nz = nim->nz > 0 ? nim->nz : 1;
    size_t nc = nim->nvox / ((size_t)nx * ny * nz);
    if (nc < 1 || nc > 4096 || (size_t)nx * ny * nz * nc != nim->nvox) {
        snprintf(err, errlen, "%s: %d dimensions are not supported", path, nim->ndim);
        nifti_image_free(nim);
        return RP_EUNSUPPORTED;
    }
    rp_volume *v = rp_volume_new(nx, ny, nz, (int)nc);
    if (!v) {
        nifti_image_free(nim);
        return RP_ENOMEM;
    }
    const double slope = nim->scl_slope != 0 && isfinite(nim->scl_slope) ? nim->scl_slope : 1.0;
    const double inter = nim->scl_slope != 0 ? nim->scl_inter : 0.0;
    int ok = 1;
    for (size_t i = 0; i < nim->nvox && ok; i++)
        v->data[i] = (float)(sample(nim->data, nim->datatype, i, &ok) * slope +
                             (isfinite(inter) ? inter : 0));
    if (!ok) {
        snprintf(err, errlen, "%s: NIfTI datatype %d is not supported", path, nim->datatype);
        nifti_image_free(nim);
        rp_volume_free(v);
        return RP_EUNSUPPORTED;
    }
    const mat44 *m = nim->sform_code > 0 ? &nim->sto_xyz : nim->qform_code > 0 ? &nim->qto_xyz
                                                                                : NULL;
    rp_mat4_identity(v->affine);
    if (m) {
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++)
                v->affine[r][c] = m->m[r][c];
    } else {
        v->affine[0][0] = nim->dx > 0 ? nim->dx : 1;
        v->affine[1][1] = nim->dy > 0 ? nim->dy : 1;
        v->affine[2][2] = nim->dz > 0 ? nim->dz : 1;
    }
    rp_volume_update_spacing(v);
    nifti_image_free(nim);
    *out = v;
    return 0;
}
