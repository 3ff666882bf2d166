/*
 * pipeline/ct/masks.c — CT body, lung and metal masks (contract and method in ct.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/ct/ct.h"

double rp_ct_voxel_ml(const rp_volume *v)
{
    const double(*a)[4] = v->affine;
    double det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) -
                 a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
                 a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
    return fabs(det) / 1000.0;
}

static void radius_vox(const rp_volume *v, double mm, int r[3])
{
    for (int a = 0; a < 3; a++)
        r[a] = v->dim[a] > 1 && v->spacing[a] > 0 ? (int)floor(mm / v->spacing[a] + 0.5) : 0;
}

int rp_ct_body_mask(const rp_volume *v, float thr, uint8_t *m)
{
    if (!v || !m || v->dim[3] != 1)
        return RP_EINVAL;
    size_t n = rp_volume_nvox(v);
    const float *d = v->data;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        m[i] = d[i] > thr;
    int r1[3] = {1, 1, 1};
    for (int a = 0; a < 3; a++)
        if (v->dim[a] < 3)
            r1[a] = 0;
    int rc;
    if ((rc = rp_morph_open(m, v->dim, r1)) != 0)
        return rc;
    rp_cc *cc;
    if ((rc = rp_cc_label(m, v->dim, &cc)) != 0)
        return rc;
    int best = -1;
    for (int c = 0; c < rp_cc_count(cc); c++)
        if (best < 0 || rp_cc_get(cc, c)->voxels > rp_cc_get(cc, best)->voxels)
            best = c;
    memset(m, 0, n);
    if (best >= 0) {
        uint8_t *keep = calloc((size_t)rp_cc_count(cc), 1);
        if (!keep) {
            rp_cc_free(cc);
            return RP_ENOMEM;
        }
        keep[best] = 1;
        rp_cc_paint(cc, keep, m, 1);
        free(keep);
    }
    rp_cc_free(cc);
    return rp_morph_fill_holes_2d(m, v->dim, rp_axial_axis(v->affine));
}

int rp_ct_lung_mask(const rp_volume *v, const uint8_t *body, const rp_ct_lung_params *p,
                    uint8_t *md, int *n_kept)
{
    if (!v || !p || !md || v->dim[3] != 1)
        return RP_EINVAL;
    size_t n = rp_volume_nvox(v);
    uint8_t *keep = NULL;
    rp_cc *cc = NULL;
    int rc;
    if (body)
        memcpy(md, body, n);
    else if ((rc = rp_ct_body_mask(v, p->threshold, md)) != 0)
        return rc;
    const float *d = v->data;
    const float thr = p->threshold;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        md[i] = md[i] && d[i] < thr;
    if ((rc = rp_cc_label(md, v->dim, &cc)) != 0)
        goto out;
    int nc = rp_cc_count(cc);
    keep = calloc((size_t)nc + 1, 1);
    if (!keep) {
        rc = RP_ENOMEM;
        goto out;
    }
    int axial = rp_axial_axis(v->affine);
    int inplane_border = 7 & ~(1 << axial);
    double vml = rp_ct_voxel_ml(v);
    int first = -1, second = -1;
    for (int c = 0; c < nc; c++) {
        const rp_cc_comp *k = rp_cc_get(cc, c);
        if (k->border & inplane_border)
            continue;
        if ((double)k->voxels * vml < p->min_ml)
            continue;
        if (first < 0 || k->voxels > rp_cc_get(cc, first)->voxels) {
            second = first;
            first = c;
        } else if (second < 0 || k->voxels > rp_cc_get(cc, second)->voxels) {
            second = c;
        }
    }
    int kept = 0;
    if (first >= 0) {
        keep[first] = 1;
        kept = 1;
        if (second >= 0 && rp_cc_get(cc, second)->voxels >= 0.2 * rp_cc_get(cc, first)->voxels) {
            keep[second] = 1;
            kept = 2;
        }
    }
    memset(md, 0, n);
    rp_cc_paint(cc, keep, md, 1);
    int r[3];
    radius_vox(v, p->closing_mm, r);
    if ((rc = rp_morph_close(md, v->dim, r)) != 0)
        goto out;
    /* vessels and nodules are small holes; the mediastinum, enclosed where the lungs touch
     * in front of and behind it, is a large one and stays out */
    double px_mm2 = 1;
    for (int a = 0; a < 3; a++)
        if (a != axial)
            px_mm2 *= v->spacing[a];
    long max_px = p->max_hole_mm2 > 0 ? (long)(p->max_hole_mm2 / px_mm2) + 1 : 0;
    if ((rc = rp_morph_fill_holes_2d_max(md, v->dim, axial, max_px)) != 0)
        goto out;
    if (n_kept)
        *n_kept = kept;
out:
    free(keep);
    rp_cc_free(cc);
    return rc;
}

int rp_ct_metal_mask(const rp_volume *v, float thr, double min_mm3, uint8_t *md,
                     rp_ct_metal_part **parts, int *n_parts)
{
    *parts = NULL;
    *n_parts = 0;
    if (!v || !md || v->dim[3] != 1)
        return RP_EINVAL;
    size_t n = rp_volume_nvox(v);
    const float *d = v->data;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        md[i] = d[i] > thr;
    rp_cc *cc;
    int rc;
    if ((rc = rp_cc_label(md, v->dim, &cc)) != 0)
        return rc;
    int nc = rp_cc_count(cc);
    uint8_t *keep = calloc((size_t)nc + 1, 1);
    rp_ct_metal_part *list = calloc((size_t)nc + 1, sizeof *list);
    if (!keep || !list) {
        free(keep);
        free(list);
        rp_cc_free(cc);
        return RP_ENOMEM;
    }
    double vml = rp_ct_voxel_ml(v);
    int count = 0;
    for (int c = 0; c < nc; c++) {
        const rp_cc_comp *k = rp_cc_get(cc, c);
        double ml = (double)k->voxels * vml;
        if (ml * 1000.0 < min_mm3)
            continue;
        keep[c] = 1;
        double ijk[3] = {k->sum[0] / k->voxels, k->sum[1] / k->voxels, k->sum[2] / k->voxels};
        rp_ct_metal_part *mp = &list[count++];
        mp->volume_ml = ml;
        for (int r = 0; r < 3; r++)
            mp->centroid_ras[r] = v->affine[r][0] * ijk[0] + v->affine[r][1] * ijk[1] +
                                  v->affine[r][2] * ijk[2] + v->affine[r][3];
    }
    memset(md, 0, n);
    rp_cc_paint(cc, keep, md, 1);
    free(keep);
    rp_cc_free(cc);
    if (count == 0) {
        free(list);
        list = NULL;
    }
    *parts = list;
    *n_parts = count;
    return 0;
}
