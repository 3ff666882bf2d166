/*
 * pipeline/recipe/steps_ct.c — the CT steps table (rp_steps_ct) and the mask steps
 * `bodymask`, `lungmask`, `metal` around the kernels of pipeline/ct/ct.h. hu, window and
 * multiwindow live with the other intensity steps (steps_intensity.c).
 *
 * Thresholds are written in Hounsfield units and translated to the current intensity units
 * through the ctx HU bookkeeping (so lungmask may follow window(lung)); a threshold that an
 * earlier clip/window removed is an error with a clear reason, never a silent empty mask.
 * Defaults: bodymask -500 HU; lungmask -500 HU, 20 ml, closing 2 mm, holes up to 1500 mm^2,
 * trachea and main bronchi taken out (QC "airway": found, removed ml, carina slice and RAS);
 * metal 3000 HU, 10 mm^3. The metal finding goes into the QC report (count, volume in ml,
 * centroid in world mm, RAS) and the mask "metal".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/ct/ct.h"
#include "pipeline/recipe/recipe_internal.h"

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
    int airway;        /* lungmask: 1 = trachea and main bronchi taken out */
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

/* The CT masks stay packed in bits (volume.h) up to the writer, which expands them block by
 * block: as bytes they were most of the fresh memory a CT job faulted in. The kernel replaces
 * the words, so the mask starts as a shell. */
static rp_mask *new_packed(const rp_volume *v, const char *name)
{
    rp_mask *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    memcpy(m->dim, v->dim, sizeof m->dim);
    memcpy(m->affine, v->affine, sizeof m->affine);
    rp_strlcpy(m->name, name, sizeof m->name);
    return m;
}

int rp_step_bodymask_run(rp_step_ctx *ctx, const void *pp)
{
    const mask_params *p = pp;
    int rc = check_3d(ctx, "bodymask");
    if (rc)
        return rc;
    rp_mask *m = new_packed(ctx->vol, "body");
    if (!m)
        return RP_ENOMEM;
    float thr;
    if ((rc = rp_step_ctx_hu_value(ctx, p->threshold_hu, "bodymask", &thr)) != 0 ||
        (rc = rp_ct_body_mask_m(ctx->vol, thr, m)) != 0) {
        rp_mask_free(m);
        return rc;
    }
    double ml = (double)rp_mask_count(m) * rp_ct_voxel_ml(ctx->vol);
    rp_step_qc_number(ctx, "volume_ml", round(ml * 10) / 10);
    return rp_step_ctx_add_mask(ctx, m);
}

/* ---- lungmask ------------------------------------------------------------------------ */

static const char LUNG_USAGE[] =
    "lungmask or lungmask(threshold_hu[,min_ml[,closing_mm[,max_hole_mm2[,airway]]]]) "
    "(airway 1: trachea and main bronchi taken out, the default; 0: kept)";

int rp_step_lungmask_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    double vals[5] = {-500, 20, 2, 1500, 1};
    int rc = parse_numbers(a, vals, 5, LUNG_USAGE, err, errlen);
    if (rc)
        return rc;
    if (vals[1] < 0 || vals[2] < 0 || vals[2] > 20 || vals[3] < 0)
        return rp_arg_fail(err, errlen, LUNG_USAGE,
                           "min_ml and max_hole_mm2 must be >= 0, closing_mm in [0,20]");
    if (vals[4] != 0 && vals[4] != 1)
        return rp_arg_fail(err, errlen, LUNG_USAGE, "airway must be 0 or 1");
    mask_params *p = calloc(1, sizeof *p);
    if (!p)
        return RP_ENOMEM;
    p->threshold_hu = vals[0];
    p->size = vals[1];
    p->closing_mm = vals[2];
    p->hole_mm2 = vals[3];
    p->airway = (int)vals[4];
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
    cJSON_AddStringToObject(o, "airway", p->airway ? "removed" : "kept");
}

int rp_step_lungmask_run(rp_step_ctx *ctx, const void *pp)
{
    const mask_params *p = pp;
    int rc = check_3d(ctx, "lungmask");
    if (rc)
        return rc;
    const rp_volume *v = ctx->vol;
    rp_ct_lung_params lp = {.min_ml = p->size,
                            .closing_mm = p->closing_mm,
                            .max_hole_mm2 = p->hole_mm2,
                            .airway = p->airway};
    if ((rc = rp_step_ctx_hu_value(ctx, p->threshold_hu, "lungmask", &lp.threshold)) != 0)
        return rc;
    rp_mask *m = new_packed(v, "lung");
    if (!m)
        return RP_ENOMEM;
    /* a bodymask step that ran before saves computing the body again */
    const rp_mask *body = rp_step_ctx_mask(ctx, "body");
    if (body && memcmp(body->dim, v->dim, sizeof body->dim) != 0)
        body = NULL;
    int kept = 0;
    rp_ct_airway aw;
    if ((rc = rp_ct_lung_mask_m(v, body, &lp, m, &kept, &aw)) != 0) {
        rp_mask_free(m);
        return rc;
    }
    double ml = (double)rp_mask_count(m) * rp_ct_voxel_ml(v);
    rp_step_qc_number(ctx, "volume_ml", round(ml * 10) / 10);
    rp_step_qc_number(ctx, "components", kept);
    if (p->airway) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddBoolToObject(a, "found", aw.found);
        if (aw.found) {
            cJSON_AddNumberToObject(a, "removed_ml", round(aw.removed_ml * 10) / 10);
            cJSON_AddNumberToObject(a, "top_slice", aw.top_slice);
            cJSON_AddNumberToObject(a, "carina_slice", aw.carina_slice);
            if (aw.carina_slice >= 0) {
                double c[3];
                for (int k = 0; k < 3; k++)
                    c[k] = round(aw.carina_ras[k] * 10) / 10;
                cJSON_AddItemToObject(a, "carina_mm_ras", cJSON_CreateDoubleArray(c, 3));
            }
        }
        rp_step_qc_add(ctx, "airway", a);
    }
    if (kept == 0)
        RP_WARN("pipeline", "lungmask found no lung (no air component inside the body)");
    return rp_step_ctx_add_mask(ctx, m);
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
    rp_mask *m = new_packed(v, "metal");
    if (!m)
        return RP_ENOMEM;
    rp_ct_metal_part *parts = NULL;
    int count = 0;
    if ((rc = rp_ct_metal_mask_m(v, thr, p->size, m, &parts, &count)) != 0) {
        rp_mask_free(m);
        return rc;
    }
    cJSON *list = cJSON_CreateArray();
    if (!list) {
        free(parts);
        rp_mask_free(m);
        return RP_ENOMEM;
    }
    double total_ml = 0;
    for (int i = 0; i < count; i++) {
        total_ml += parts[i].volume_ml;
        double xyz[3];
        for (int r = 0; r < 3; r++)
            xyz[r] = round(parts[i].centroid_ras[r] * 10) / 10;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "volume_ml", round(parts[i].volume_ml * 1000) / 1000);
        cJSON_AddItemToObject(o, "centroid_mm_ras", cJSON_CreateDoubleArray(xyz, 3));
        cJSON_AddItemToArray(list, o);
    }
    free(parts);
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

/* ---- the table ----------------------------------------------------------------------- */

const rp_step_def rp_steps_ct[] = {
    RP_STEP_ENTRY_F(hu, "hu",
                    RP_STEP_READS_VOLUME_ONLY | RP_STEP_MASKS_PACKED_OK | RP_STEP_READS_DEFERRED),
    RP_STEP_ENTRY_F(window, "window(lung|mediastinal|bone|brain|abdomen) or window(level,width)",
                    RP_STEP_MASKS_PACKED_OK),
    RP_STEP_ENTRY(multiwindow, "multiwindow(w1,w2,...) of presets or level/width"),
    RP_STEP_ENTRY_F(bodymask, "bodymask[(threshold_hu)]", RP_STEP_READS_VOLUME_ONLY | RP_STEP_MASKS_PACKED_OK),
    RP_STEP_ENTRY_F(lungmask,
                    "lungmask[(threshold_hu[,min_ml[,closing_mm[,max_hole_mm2[,airway]]]])]", RP_STEP_READS_VOLUME_ONLY | RP_STEP_MASKS_PACKED_OK),
    RP_STEP_ENTRY_F(metal, "metal[(threshold_hu[,min_mm3])]", RP_STEP_READS_VOLUME_ONLY | RP_STEP_MASKS_PACKED_OK),
    {0},
};
