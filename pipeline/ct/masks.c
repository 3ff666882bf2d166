/*
 * pipeline/masks.c — CT masks: `bodymask`, `lungmask`, `metal`.
 *
 * All thresholds are in Hounsfield units and are translated to the current intensity units
 * through the ctx HU bookkeeping (so lungmask may follow window(lung)); a threshold that an
 * earlier clip/window removed is an error with a clear reason, never a silent empty mask.
 *
 *  bodymask: HU > threshold (-500), opening (1 voxel) to detach the table and blankets, the
 *            largest 3-D component, holes filled slice by slice in the axial plane.
 *  lungmask: inside the body, HU < threshold (-500); 3-D components (6-connected) touching
 *            the in-plane border are outside air; keep the largest component and the second
 *            if it is >= 20 % of the first (the two lungs; they are often one component via
 *            the trachea), each >= min_ml; then closing (closing_mm) and axial hole filling,
 *            of holes up to max_hole_mm2 (1500 mm^2), which puts vessels and nodules
 *            back into the lung but keeps the mediastinum out where the lungs touch.
 *  metal:    HU > threshold (3000), components of at least min_mm3; reported in the QC report
 *            (count, volume in ml, centroid in world mm, RAS) and as the mask "metal".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/volume/imgops.h"

int rp_axial_axis(const double affine[4][4])
{
    int best = 2;
    double bv = -1;
    for (int a = 0; a < 3; a++) {
        double n = sqrt(affine[0][a] * affine[0][a] + affine[1][a] * affine[1][a] +
                        affine[2][a] * affine[2][a]);
        double s = n > 0 ? fabs(affine[2][a]) / n : 0;
        if (s > bv + 1e-9) {
            bv = s;
            best = a;
        }
    }
    return best;
}

static double voxel_ml(const rp_volume *v)
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

static int check_3d(rp_step_ctx *ctx, const char *step)
{
    if (ctx->vol->dim[3] != 1) {
        snprintf(ctx->err, sizeof ctx->err,
                 "%s needs a single-channel volume (got %d channels); put it before multiwindow",
                 step, ctx->vol->dim[3]);
        return RP_EINVAL;
    }
    return 0;
}

typedef struct mask_params {
    double threshold_hu;
    double size;       /* lungmask: min_ml; metal: min_mm3 */
    double closing_mm; /* lungmask */
    double hole_mm2;   /* lungmask: largest axial hole filled */
} mask_params;

static int parse_numbers(const rp_step_args *a, double *vals, int maxn, const char *usage,
                         char *err, size_t errlen)
{
    if (a->n > maxn)
        return rp_arg_fail(err, errlen, usage, "too many arguments (%d)", a->n);
    for (int i = 0; i < a->n; i++)
        if (rp_arg_double(a->arg[i], &vals[i]) != 0)
            return rp_arg_fail(err, errlen, usage, "'%s' is not a number", a->arg[i]);
    return 0;
}

/* body = largest component of (HU > thr) after a 1-voxel opening, filled per axial slice */
static int compute_body(rp_step_ctx *ctx, double thr_hu, const char *step, uint8_t *m)
{
    const rp_volume *v = ctx->vol;
    float thr;
    int rc = rp_step_ctx_hu_value(ctx, thr_hu, step, &thr);
    if (rc)
        return rc;
    size_t n = rp_volume_nvox(v);
    const float *d = v->data;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        m[i] = d[i] > thr;
    int r1[3] = {1, 1, 1};
    for (int a = 0; a < 3; a++)
        if (v->dim[a] < 3)
            r1[a] = 0;
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

/* ---- bodymask ------------------------------------------------------------------------ */

static const char BODY_USAGE[] = "bodymask or bodymask(threshold_hu)";

int rp_step_bodymask_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    double vals[1] = {-500};
    int rc = parse_numbers(a, vals, 1, BODY_USAGE, err, errlen);
    if (rc)
        return rc;
    mask_params *p = calloc(1, sizeof *p);
    if (!p)
        return RP_ENOMEM;
    p->threshold_hu = vals[0];
    *out = p;
    return 0;
}

void rp_step_bodymask_describe(const void *pp, cJSON *o)
{
    const mask_params *p = pp;
    cJSON_AddNumberToObject(o, "threshold_hu", p->threshold_hu);
    cJSON_AddStringToObject(o, "method",
                            "threshold, opening 1 voxel, largest 3-D component, axial hole fill");
}

int rp_step_bodymask_run(rp_step_ctx *ctx, const void *pp)
{
    const mask_params *p = pp;
    int rc = check_3d(ctx, "bodymask");
    if (rc)
        return rc;
    rp_mask *m = rp_mask_like(ctx->vol, "body");
    if (!m)
        return RP_ENOMEM;
    rc = compute_body(ctx, p->threshold_hu, "bodymask", m->data);
    if (rc) {
        rp_mask_free(m);
        return rc;
    }
    double ml = (double)rp_mask_count(m) * voxel_ml(ctx->vol);
    rp_step_qc_number(ctx, "volume_ml", round(ml * 10) / 10);
    return rp_step_ctx_add_mask(ctx, m);
}

/* ---- lungmask ------------------------------------------------------------------------ */

static const char LUNG_USAGE[] =
    "lungmask or lungmask(threshold_hu[,min_ml[,closing_mm[,max_hole_mm2]]])";

int rp_step_lungmask_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    double vals[4] = {-500, 20, 2, 1500};
    int rc = parse_numbers(a, vals, 4, LUNG_USAGE, err, errlen);
    if (rc)
        return rc;
    if (vals[1] < 0 || vals[2] < 0 || vals[2] > 20 || vals[3] < 0)
        return rp_arg_fail(err, errlen, LUNG_USAGE,
                           "min_ml and max_hole_mm2 must be >= 0, closing_mm in [0,20]");
    mask_params *p = calloc(1, sizeof *p);
    if (!p)
        return RP_ENOMEM;
    p->threshold_hu = vals[0];
    p->size = vals[1];
    p->closing_mm = vals[2];
    p->hole_mm2 = vals[3];
    *out = p;
    return 0;
}

void rp_step_lungmask_describe(const void *pp, cJSON *o)
{
    const mask_params *p = pp;
    cJSON_AddNumberToObject(o, "threshold_hu", p->threshold_hu);
    cJSON_AddNumberToObject(o, "min_ml", p->size);
    cJSON_AddNumberToObject(o, "closing_mm", p->closing_mm);
    cJSON_AddNumberToObject(o, "max_hole_mm2", p->hole_mm2);
}

int rp_step_lungmask_run(rp_step_ctx *ctx, const void *pp)
{
    const mask_params *p = pp;
    int rc = check_3d(ctx, "lungmask");
    if (rc)
        return rc;
    const rp_volume *v = ctx->vol;
    float thr;
    if ((rc = rp_step_ctx_hu_value(ctx, p->threshold_hu, "lungmask", &thr)) != 0)
        return rc;
    size_t n = rp_volume_nvox(v);
    rp_mask *m = rp_mask_like(v, "lung");
    uint8_t *keep = NULL;
    rp_cc *cc = NULL;
    if (!m)
        return RP_ENOMEM;
    const rp_mask *body = rp_step_ctx_mask(ctx, "body");
    if (body && memcmp(body->dim, v->dim, sizeof body->dim) == 0) {
        memcpy(m->data, body->data, n);
    } else if ((rc = compute_body(ctx, p->threshold_hu, "lungmask", m->data)) != 0) {
        goto out;
    }
    const float *d = v->data;
    uint8_t *md = m->data;
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
    double vml = voxel_ml(v);
    int first = -1, second = -1;
    for (int c = 0; c < nc; c++) {
        const rp_cc_comp *k = rp_cc_get(cc, c);
        if (k->border & inplane_border)
            continue;
        if ((double)k->voxels * vml < p->size)
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
    long max_px = p->hole_mm2 > 0 ? (long)(p->hole_mm2 / px_mm2) + 1 : 0;
    if ((rc = rp_morph_fill_holes_2d_max(md, v->dim, axial, max_px)) != 0)
        goto out;
    double ml = (double)rp_mask_count(m) * vml;
    rp_step_qc_number(ctx, "volume_ml", round(ml * 10) / 10);
    rp_step_qc_number(ctx, "components", kept);
    if (kept == 0)
        RP_WARN("pipeline", "lungmask found no lung (no air component inside the body)");
    rc = rp_step_ctx_add_mask(ctx, m);
    m = NULL;
out:
    free(keep);
    rp_cc_free(cc);
    rp_mask_free(m);
    return rc;
}

/* ---- metal --------------------------------------------------------------------------- */

static const char METAL_USAGE[] = "metal or metal(threshold_hu[,min_mm3])";

int rp_step_metal_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    double vals[2] = {3000, 10};
    int rc = parse_numbers(a, vals, 2, METAL_USAGE, err, errlen);
    if (rc)
        return rc;
    if (vals[1] < 0)
        return rp_arg_fail(err, errlen, METAL_USAGE, "min_mm3 must be >= 0");
    mask_params *p = calloc(1, sizeof *p);
    if (!p)
        return RP_ENOMEM;
    p->threshold_hu = vals[0];
    p->size = vals[1];
    *out = p;
    return 0;
}

void rp_step_metal_describe(const void *pp, cJSON *o)
{
    const mask_params *p = pp;
    cJSON_AddNumberToObject(o, "threshold_hu", p->threshold_hu);
    cJSON_AddNumberToObject(o, "min_mm3", p->size);
}

int rp_step_metal_run(rp_step_ctx *ctx, const void *pp)
{
    const mask_params *p = pp;
    int rc = check_3d(ctx, "metal");
    if (rc)
        return rc;
    const rp_volume *v = ctx->vol;
    float thr;
    if ((rc = rp_step_ctx_hu_value(ctx, p->threshold_hu, "metal", &thr)) != 0)
        return rc;
    size_t n = rp_volume_nvox(v);
    rp_mask *m = rp_mask_like(v, "metal");
    if (!m)
        return RP_ENOMEM;
    const float *d = v->data;
    uint8_t *md = m->data;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        md[i] = d[i] > thr;
    rp_cc *cc;
    if ((rc = rp_cc_label(md, v->dim, &cc)) != 0) {
        rp_mask_free(m);
        return rc;
    }
    int nc = rp_cc_count(cc);
    uint8_t *keep = calloc((size_t)nc + 1, 1);
    cJSON *list = cJSON_CreateArray();
    if (!keep || !list) {
        free(keep);
        cJSON_Delete(list);
        rp_cc_free(cc);
        rp_mask_free(m);
        return RP_ENOMEM;
    }
    double vml = voxel_ml(v), total_ml = 0;
    int count = 0;
    for (int c = 0; c < nc; c++) {
        const rp_cc_comp *k = rp_cc_get(cc, c);
        double ml = (double)k->voxels * vml;
        if (ml * 1000.0 < p->size)
            continue;
        keep[c] = 1;
        count++;
        total_ml += ml;
        double ijk[3] = {k->sum[0] / k->voxels, k->sum[1] / k->voxels, k->sum[2] / k->voxels};
        double xyz[3];
        for (int r = 0; r < 3; r++)
            xyz[r] = round((v->affine[r][0] * ijk[0] + v->affine[r][1] * ijk[1] +
                            v->affine[r][2] * ijk[2] + v->affine[r][3]) *
                           10) /
                     10;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "volume_ml", round(ml * 1000) / 1000);
        cJSON_AddItemToObject(o, "centroid_mm_ras", cJSON_CreateDoubleArray(xyz, 3));
        cJSON_AddItemToArray(list, o);
    }
    memset(md, 0, n);
    rp_cc_paint(cc, keep, md, 1);
    free(keep);
    rp_cc_free(cc);
    cJSON *finding = cJSON_CreateObject();
    cJSON_AddNumberToObject(finding, "count", count);
    cJSON_AddNumberToObject(finding, "volume_ml", round(total_ml * 1000) / 1000);
    cJSON_AddNumberToObject(finding, "threshold_hu", p->threshold_hu);
    cJSON_AddItemToObject(finding, "components", list);
    if (ctx->qc) {
        cJSON_DeleteItemFromObjectCaseSensitive(ctx->qc, "metal");
        cJSON_AddItemToObject(ctx->qc, "metal", cJSON_Duplicate(finding, 1));
    }
    rp_step_qc_add(ctx, "findings", finding);
    if (count)
        RP_INFO("pipeline", "metal found count=%d volume_ml=%.3f", count, total_ml);
    return rp_step_ctx_add_mask(ctx, m);
}
