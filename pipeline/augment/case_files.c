/*
 * pipeline/augment/case_files.c — augmenting a curated case on disk: read the image and its
 * masks, apply one draw, write the copies (radprep's NIfTI writer, so the bytes are the same on
 * every run).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "pipeline/augment/augment.h"
#include "pipeline/write/write.h"

int rp_aug_interp_of_sidecar(const cJSON *side)
{
    const cJSON *prov = cJSON_GetObjectItemCaseSensitive(side, "Provenance");
    const cJSON *rec = cJSON_GetObjectItemCaseSensitive(prov, "Recipe");
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(rec, "steps");
    const cJSON *st;
    int order = 1;
    cJSON_ArrayForEach(st, steps)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(st, "step");
        if (!cJSON_IsString(name) || strcmp(name->valuestring, "resample") != 0)
            continue;
        const cJSON *par = cJSON_GetObjectItemCaseSensitive(st, "params");
        const cJSON *in = cJSON_GetObjectItemCaseSensitive(par, "interpolation");
        if (!cJSON_IsString(in))
            continue;
        if (!strcasecmp(in->valuestring, "nearest"))
            order = 0;
        else if (!strcasecmp(in->valuestring, "bspline3"))
            order = 3;
        else
            order = 1;
    }
    return order;
}

static int write_vol(const char *path, const rp_volume *v, int labels, char *err, size_t errlen)
{
    rp_nifti_opts o;
    memset(&o, 0, sizeof o);
    size_t l = strlen(path);
    o.gzip = l > 3 && strcmp(path + l - 3, ".gz") == 0;
    o.threads = 1;
    snprintf(o.descrip, sizeof o.descrip, "radprep augmented %s", labels ? "labels" : "image");
    int dim[4] = {v->dim[0], v->dim[1], v->dim[2], 1};
    if (!labels)
        return rp_nifti_write(path, dim, RP_NII_FLOAT32, v->data, v->affine, 1.0, 0.0, &o, err,
                              errlen);
    size_t n = rp_volume_nvox(v);
    uint8_t *b = malloc(n ? n : 1);
    if (!b)
        return RP_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        float x = v->data[i];
        b[i] = (uint8_t)(x < 0 ? 0 : x > 255 ? 255 : lrintf(x));
    }
    int rc = rp_nifti_write(path, dim, RP_NII_UINT8, b, v->affine, 0, 0, &o, err, errlen);
    free(b);
    return rc;
}

static int same_grid(const rp_volume *a, const rp_volume *b)
{
    if (memcmp(a->dim, b->dim, 3 * sizeof(int)) != 0)
        return 0;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            if (fabs(a->affine[r][c] - b->affine[r][c]) > 1e-3)
                return 0;
    return 1;
}

int rp_aug_case_files(const rp_aug_draw *d, const char *img_src, const char *img_dst,
                      const char *const *mask_src, const char *const *mask_dst, int n_masks,
                      char *err, size_t errlen)
{
    rp_volume *img = NULL, *out = NULL;
    int rc = rp_aug_read_nifti(img_src, &img, err, errlen);
    if (rc)
        return rc;
    if (img->dim[3] != 1) {
        snprintf(err, errlen, "augment: %s has %d channels; one is supported", img_src,
                 img->dim[3]);
        rp_volume_free(img);
        return RP_EUNSUPPORTED;
    }
    if ((rc = rp_aug_apply_image(img, d, &out)) == 0)
        rc = write_vol(img_dst, out, 0, err, errlen);
    rp_volume_free(out);
    for (int k = 0; k < n_masks && rc == 0; k++) {
        rp_volume *m = NULL, *mo = NULL;
        if ((rc = rp_aug_read_nifti(mask_src[k], &m, err, errlen)) != 0)
            break;
        if (!same_grid(m, img)) {
            snprintf(err, errlen, "augment: mask %s is not on the grid of %s", mask_src[k],
                     img_src);
            rc = RP_EGEOM;
        } else if ((rc = rp_aug_apply_mask(m, d, &mo)) == 0) {
            rc = write_vol(mask_dst[k], mo, 1, err, errlen);
        }
        rp_volume_free(m);
        rp_volume_free(mo);
    }
    rp_volume_free(img);
    if (rc && err && errlen && !err[0])
        snprintf(err, errlen, "augment: %s", rp_strerror(rc));
    return rc;
}
