/*
 * pipeline/recipe/steps_register.c — the steps `register(REF)` and `align(midline)` (kernels in
 * pipeline/register/ and pipeline/align/). Files go through ctx->writers like every step's: the
 * reference volume is read by ctx->writers->load_volume, pictures by ctx->writers->png.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/common.h"
#include "pipeline/align/align.h"
#include "pipeline/recipe/recipe_internal.h"
#include "pipeline/register/register.h"

#define MOD "register"

/* Channel c of v as a borrowed single-channel view. */
static rp_volume channel_view(const rp_volume *v, int c)
{
    rp_volume ch = *v;
    ch.dim[3] = 1;
    ch.data = v->data + (size_t)c * rp_volume_nvox(v);
    return ch;
}


/* text into path atomically (temporary name + rename). */
static int write_text_atomic(const char *path, const char *text)
{
    char tmpp[4200];
    snprintf(tmpp, sizeof tmpp, "%s.tmp-%d", path, (int)getpid());
    FILE *f = fopen(tmpp, "w");
    if (!f)
        return RP_EIO;
    int bad = fputs(text, f) < 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmpp, path) != 0) {
        unlink(tmpp);
        return RP_EIO;
    }
    return 0;
}

/* ---- register(REF) ------------------------------------------------------------------------- */

static const char reg_usage[] =
    "register(REF[, rigid|rigid_scale][, grid=reference|own][, interp=linear|nearest]): REF a "
    "NIfTI file or a DICOM folder (its largest stack)";

typedef struct reg_step {
    char ref[128];
    int dof;
    int own_grid;
    int order;
} reg_step;

static int reg_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    if (a->n < 1)
        return rp_arg_fail(err, errlen, reg_usage, "register: the reference is missing");
    reg_step *s = calloc(1, sizeof *s);
    if (!s)
        return RP_ENOMEM;
    rp_strlcpy(s->ref, a->arg[0], sizeof s->ref);
    s->dof = 6;
    s->order = 1;
    for (int i = 1; i < a->n; i++) {
        const char *v = a->arg[i];
        if (!strcasecmp(v, "rigid"))
            s->dof = 6;
        else if (!strcasecmp(v, "rigid_scale"))
            s->dof = 9;
        else if (!strcasecmp(v, "grid=reference") || !strcasecmp(v, "grid=ref"))
            s->own_grid = 0;
        else if (!strcasecmp(v, "grid=own"))
            s->own_grid = 1;
        else if (!strcasecmp(v, "interp=linear"))
            s->order = 1;
        else if (!strcasecmp(v, "interp=nearest"))
            s->order = 0;
        else {
            free(s);
            return rp_arg_fail(err, errlen, reg_usage, "register: unknown option '%s'", v);
        }
    }
    *out = s;
    return 0;
}

static void reg_describe(const void *pp, cJSON *o)
{
    const reg_step *s = pp;
    cJSON_AddStringToObject(o, "reference", s->ref);
    cJSON_AddStringToObject(o, "method", s->dof == 9 ? "rigid_scale" : "rigid");
    cJSON_AddStringToObject(o, "grid", s->own_grid ? "own" : "reference");
    cJSON_AddStringToObject(o, "interpolation", s->order ? "linear" : "nearest");
}

/* m resampled (nearest) onto grid through T, as a new mask with m's name. */
static int mask_to_grid(const rp_mask *m, const rp_volume *grid, const double T[4][4],
                        rp_mask **out)
{
    rp_volume *f = rp_volume_new(m->dim[0], m->dim[1], m->dim[2], 1), *r = NULL;
    if (!f)
        return RP_ENOMEM;
    memcpy(f->affine, m->affine, sizeof f->affine);
    rp_volume_update_spacing(f);
    size_t n = rp_volume_nvox(f);
    for (size_t i = 0; i < n; i++)
        f->data[i] = m->data[i];
    int rc = rp_register_resample(f, grid, T, 0, &r);
    rp_volume_free(f);
    if (rc)
        return rc;
    rp_mask *o = rp_mask_like(r, m->name);
    if (!o) {
        rp_volume_free(r);
        return RP_ENOMEM;
    }
    for (size_t i = 0; i < rp_volume_nvox(r); i++)
        o->data[i] = (uint8_t)(r->data[i] + 0.5f);
    rp_volume_free(r);
    *out = o;
    return 0;
}

static void add_output(rp_step_ctx *ctx, const char *kind, const char *path)
{
    if (!ctx->extra_outputs)
        return;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "kind", kind);
    cJSON_AddStringToObject(e, "path", path);
    cJSON_AddItemToArray(ctx->extra_outputs, e);
}

/* <stem>_transform.json and <stem>_transform.tfm (ITK) beside the outputs. */
static int write_transform(rp_step_ctx *ctx, const reg_step *s, cJSON *rj)
{
    const char *stem = ctx->out_stem ? ctx->out_stem : "out";
    char path[4096], e2[256];
    snprintf(path, sizeof path, "%s/%s_transform.json", ctx->out_dir, stem);
    cJSON *j = cJSON_Duplicate(rj, 1);
    cJSON_AddStringToObject(j, "reference", s->ref);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    int rc = text ? write_text_atomic(path, text) : RP_ENOMEM;
    free(text);
    if (rc)
        snprintf(e2, sizeof e2, "cannot write %.200s", path);
    if (rc) {
        snprintf(ctx->err, sizeof ctx->err, "register: %.200s", e2);
        return rc;
    }
    add_output(ctx, "transform_json", path);
    char txt[1024];
    const cJSON *mj = cJSON_GetObjectItemCaseSensitive(rj, "matrix");
    double M[4][4];
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            M[r][c] = cJSON_GetArrayItem(cJSON_GetArrayItem(mj, r), c)->valuedouble;
    if ((rc = rp_reg_itk_text(M, txt, sizeof txt)) != 0)
        return rc;
    snprintf(path, sizeof path, "%s/%s_transform.tfm", ctx->out_dir, stem);
    if (write_text_atomic(path, txt) != 0) {
        snprintf(ctx->err, sizeof ctx->err, "register: cannot write %.200s", path);
        return RP_EIO;
    }
    add_output(ctx, "transform_itk", path);
    return 0;
}

static int reg_run(rp_step_ctx *ctx, const void *pp)
{
    const reg_step *s = pp;
    rp_volume *ref = NULL;
    char why[384] = "";
    int rc = ctx->writers && ctx->writers->load_volume
                 ? ctx->writers->load_volume(s->ref, &ref, why, sizeof why)
                 : RP_EUNSUPPORTED;
    if (rc == RP_EUNSUPPORTED && !why[0])
        snprintf(why, sizeof why, "register: no volume reader in this context");
    if (rc) {
        snprintf(ctx->err, sizeof ctx->err, "%.250s", why);
        return rc;
    }
    rp_reg_params p;
    rp_reg_defaults(&p);
    p.dof = s->dof;
    rp_reg_result r;
    rp_volume fx = channel_view(ref, 0), mv = channel_view(ctx->vol, 0);
    if ((rc = rp_register_rigid(&fx, NULL, &mv, &p, &r, why, sizeof why)) != 0) {
        snprintf(ctx->err, sizeof ctx->err, "%.250s", why);
        rp_volume_free(ref);
        return rc;
    }
    cJSON *rj = rp_reg_result_json(&r, p.dof, p.bins);
    if (ctx->out_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s_register_qc.png", ctx->out_dir,
                 ctx->out_stem ? ctx->out_stem : "out");
        uint8_t *pix = NULL;
        int w = 0, h = 0;
        if (ctx->writers && ctx->writers->png &&
            rp_reg_checkerboard_before_after(&fx, &mv, r.matrix, &pix, &w, &h) == 0 &&
            ctx->writers->png(path, pix, w, h, 1, 8) == 0)
            add_output(ctx, "qc_register", path);
        else
            RP_WARN(MOD, "QC checkerboard not written path=%s", path);
        free(pix);
        if ((rc = write_transform(ctx, s, rj)) != 0)
            goto out;
    }
    if (s->own_grid) {
        /* header only: the voxels stay, their place in the world moves to T⁻¹·A */
        double Ti[4][4], A[4][4];
        if (rp_mat4_invert(r.matrix, Ti) != 0) {
            rc = RP_EINTERNAL;
            goto out;
        }
        rp_mat4_mul(Ti, ctx->vol->affine, A);
        memcpy(ctx->vol->affine, A, sizeof A);
        rp_volume_update_spacing(ctx->vol);
        for (int i = 0; i < ctx->n_masks; i++) {
            rp_mat4_mul(Ti, ctx->masks[i]->affine, A);
            memcpy(ctx->masks[i]->affine, A, sizeof A);
        }
    } else {
        const int nc = ctx->vol->dim[3];
        rp_volume *o = rp_volume_new(ref->dim[0], ref->dim[1], ref->dim[2], nc);
        if (!o) {
            rc = RP_ENOMEM;
            goto out;
        }
        memcpy(o->affine, ref->affine, sizeof o->affine);
        rp_volume_update_spacing(o);
        const size_t nv = rp_volume_nvox(o);
        for (int c = 0; c < nc && !rc; c++) {
            rp_volume ch = channel_view(ctx->vol, c), *rs = NULL;
            if ((rc = rp_register_resample(&ch, ref, r.matrix, s->order, &rs)) == 0)
                memcpy(o->data + (size_t)c * nv, rs->data, nv * sizeof(float));
            rp_volume_free(rs);
        }
        for (int i = 0; i < ctx->n_masks && !rc; i++) {
            rp_mask *nm = NULL;
            if ((rc = mask_to_grid(ctx->masks[i], ref, r.matrix, &nm)) == 0) {
                rp_mask_free(ctx->masks[i]);
                ctx->masks[i] = nm;
            }
        }
        if (rc) {
            rp_volume_free(o);
            snprintf(ctx->err, sizeof ctx->err, "register: resampling failed: %s",
                     rp_strerror(rc));
            goto out;
        }
        rp_volume_free(ctx->vol);
        ctx->vol = o;
    }
    rp_step_qc_add(ctx, "registration", rj);
    rj = NULL;
out:
    cJSON_Delete(rj);
    rp_volume_free(ref);
    return rc;
}

/* ---- align(midline) ------------------------------------------------------------------------ */

static const char align_usage[] =
    "align(midline[, max_deg=D][, min_score=S][, unreliable=fail|keep])";

typedef struct align_step {
    rp_align_params p;
    int keep_unreliable;
} align_step;

static int align_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    if (a->n < 1 || strcasecmp(a->arg[0], "midline") != 0)
        return rp_arg_fail(err, errlen, align_usage, "align: only align(midline) is known");
    align_step *s = calloc(1, sizeof *s);
    if (!s)
        return RP_ENOMEM;
    rp_align_defaults(&s->p);
    for (int i = 1; i < a->n; i++) {
        const char *v = a->arg[i];
        double x;
        if (!strncasecmp(v, "max_deg=", 8) && rp_arg_double(v + 8, &x) == 0 && x > 0 && x <= 45)
            s->p.max_deg = x;
        else if (!strncasecmp(v, "min_score=", 10) && rp_arg_double(v + 10, &x) == 0 && x >= 0 &&
                 x < 1)
            s->p.min_score = x;
        else if (!strcasecmp(v, "unreliable=fail"))
            s->keep_unreliable = 0;
        else if (!strcasecmp(v, "unreliable=keep"))
            s->keep_unreliable = 1;
        else {
            free(s);
            return rp_arg_fail(err, errlen, align_usage, "align: bad option '%s'", v);
        }
    }
    *out = s;
    return 0;
}

static void align_describe(const void *pp, cJSON *o)
{
    const align_step *s = pp;
    cJSON_AddStringToObject(o, "target", "midline");
    cJSON_AddNumberToObject(o, "max_deg", s->p.max_deg);
    cJSON_AddNumberToObject(o, "min_score", s->p.min_score);
    cJSON_AddStringToObject(o, "unreliable", s->keep_unreliable ? "keep" : "fail");
}

static int align_run(rp_step_ctx *ctx, const void *pp)
{
    const align_step *s = pp;
    rp_align_params p = s->p;
    /* CT: the head and its bone are found in Hounsfield units whatever ran before */
    p.ct = ctx->info && !strcasecmp(ctx->info->modality, "CT");
    if (p.ct && ctx->hu_known) {
        p.hu_scale = ctx->hu_scale;
        p.hu_offset = ctx->hu_offset;
    }
    rp_align_result r;
    char why[384] = "";
    rp_volume v0 = channel_view(ctx->vol, 0);
    int rc = rp_align_midline(&v0, &p, &r, why, sizeof why);
    cJSON *q = cJSON_CreateObject();
    cJSON_AddBoolToObject(q, "reliable", rc == 0 && r.reliable);
    if (rc == 0) {
        cJSON_AddNumberToObject(q, "yaw_deg", r.yaw_deg);
        cJSON_AddNumberToObject(q, "roll_deg", r.roll_deg);
        cJSON_AddNumberToObject(q, "offset_mm", r.offset_mm);
        cJSON_AddNumberToObject(q, "symmetry", r.score);
        cJSON_AddItemToObject(q, "plane_normal", cJSON_CreateDoubleArray(r.normal, 3));
        cJSON_AddItemToObject(q, "matrix", rp_reg_matrix_json(r.matrix));
        cJSON_AddStringToObject(q, "maps", "aligned world (RAS mm) -> input world");
    }
    if (why[0])
        cJSON_AddStringToObject(q, "reason", why);
    if (rc == 0 && !r.reliable && !s->keep_unreliable)
        rc = RP_EUNSUPPORTED;
    if (rc) {
        snprintf(ctx->err, sizeof ctx->err, "align: midline not aligned: %.200s",
                 why[0] ? why : rp_strerror(rc));
        rp_step_qc_add(ctx, "midline", q);
        return rc;
    }
    if (!r.reliable) { /* unreliable=keep: the volume stays as it is */
        rp_step_qc_add(ctx, "midline", q);
        return 0;
    }
    /* resample every channel and mask through the alignment */
    const int nc = ctx->vol->dim[3];
    rp_volume *o = rp_volume_new(ctx->vol->dim[0], ctx->vol->dim[1], ctx->vol->dim[2], nc);
    if (!o) {
        cJSON_Delete(q);
        return RP_ENOMEM;
    }
    memcpy(o->affine, ctx->vol->affine, sizeof o->affine);
    rp_volume_update_spacing(o);
    const size_t nv = rp_volume_nvox(o);
    for (int c = 0; c < nc && !rc; c++) {
        rp_volume ch = channel_view(ctx->vol, c), *rs = NULL;
        if ((rc = rp_align_apply(&ch, &r, 1, &rs)) == 0)
            memcpy(o->data + (size_t)c * nv, rs->data, nv * sizeof(float));
        rp_volume_free(rs);
    }
    for (int i = 0; i < ctx->n_masks && !rc; i++) {
        rp_mask *nm = NULL;
        if ((rc = mask_to_grid(ctx->masks[i], o, r.matrix, &nm)) == 0) {
            rp_mask_free(ctx->masks[i]);
            ctx->masks[i] = nm;
        }
    }
    if (rc) {
        rp_volume_free(o);
        cJSON_Delete(q);
        snprintf(ctx->err, sizeof ctx->err, "align: resampling failed: %s", rp_strerror(rc));
        return rc;
    }
    if (ctx->out_dir) {
        uint8_t *pix = NULL;
        int w = 0, h = 0;
        rp_volume a0 = channel_view(o, 0);
        char path[4096];
        snprintf(path, sizeof path, "%s/%s_midline_qc.png", ctx->out_dir,
                 ctx->out_stem ? ctx->out_stem : "out");
        if (rp_align_qc_picture(&v0, &a0, &r, &p, &pix, &w, &h) == 0 &&
            ctx->writers && ctx->writers->png &&
            ctx->writers->png(path, pix, w, h, 3, 8) == 0) {
            add_output(ctx, "qc_midline", path);
            cJSON_AddStringToObject(q, "qc", strrchr(path, '/') + 1);
        } else {
            RP_WARN(MOD, "midline QC picture not written path=%s", path);
        }
        free(pix);
    }
    rp_volume_free(ctx->vol);
    ctx->vol = o;
    rp_step_qc_add(ctx, "midline", q);
    return 0;
}

const rp_step_def rp_steps_register[] = {
    {"register", reg_usage, reg_parse, reg_run, NULL, reg_describe, 0},
    {"align", align_usage, align_parse, align_run, NULL, align_describe, 0},
    {0},
};
