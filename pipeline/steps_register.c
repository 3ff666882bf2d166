/*
 * pipeline/steps_register.c — the steps `register(REF)` and `align(midline)`, and registration of
 * fusion members (contract in steps_register.h; kernels in pipeline/register/ and
 * pipeline/align/).
 */
#include "pipeline/steps_register.h"

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "pipeline/align/align.h"
#include "pipeline/augment/augment.h"
#include "pipeline/pipeline.h"
#include "pipeline/register/register.h"
#include "pipeline/write/png.h"
#include "pipeline/write/sidecar.h"

#define MOD "register"

/* ---- shared helpers ------------------------------------------------------------------------ */

static cJSON *matrix_json(const double m[4][4])
{
    cJSON *rows = cJSON_CreateArray();
    for (int r = 0; r < 4; r++)
        cJSON_AddItemToArray(rows, cJSON_CreateDoubleArray(m[r], 4));
    return rows;
}

static cJSON *reg_json(const rp_reg_result *r, int dof, int bins)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "method", dof == 9 ? "rigid_scale" : "rigid");
    cJSON_AddNumberToObject(o, "dof", dof);
    cJSON_AddStringToObject(o, "maps", "reference world (RAS mm) -> this series' world");
    cJSON_AddItemToObject(o, "matrix", matrix_json(r->matrix));
    cJSON_AddItemToObject(o, "rotation_deg", cJSON_CreateDoubleArray(r->rotation_deg, 3));
    cJSON_AddItemToObject(o, "translation_mm", cJSON_CreateDoubleArray(r->translation_mm, 3));
    if (dof == 9)
        cJSON_AddItemToObject(o, "scale", cJSON_CreateDoubleArray(r->scale, 3));
    cJSON_AddItemToObject(o, "center_mm", cJSON_CreateDoubleArray(r->center_mm, 3));
    cJSON_AddStringToObject(o, "rotation_order", "R = Rz Ry Rx about center_mm");
    cJSON *m = cJSON_AddObjectToObject(o, "metric");
    cJSON_AddStringToObject(m, "name", "MattesMutualInformation");
    cJSON_AddNumberToObject(m, "bins", bins);
    cJSON_AddNumberToObject(m, "initial", r->mi_initial);
    cJSON_AddNumberToObject(m, "final", r->mi_final);
    cJSON *mv = cJSON_AddObjectToObject(o, "moved_mm");
    cJSON_AddNumberToObject(mv, "max", r->max_displacement_mm);
    cJSON_AddNumberToObject(mv, "rms", r->rms_displacement_mm);
    cJSON_AddItemToObject(o, "iterations", cJSON_CreateIntArray(r->iterations, r->levels));
    if (r->kept_identity)
        cJSON_AddStringToObject(o, "note",
                                "MI at the optimum was below MI at the scanner geometry (an "
                                "ill-posed fit): the scanner geometry was kept");
    return o;
}

/* Checkerboard of fixed vs moving resampled through the identity (before) and T (after). */
static int write_checkerboard(const char *path, const rp_volume *fixed, const rp_volume *moving,
                              const double T[4][4])
{
    double I[4][4];
    rp_mat4_identity(I);
    rp_volume *before = NULL, *after = NULL;
    uint8_t *pix = NULL;
    int w = 0, h = 0;
    int rc = rp_register_resample(moving, fixed, I, 1, &before);
    if (!rc)
        rc = rp_register_resample(moving, fixed, T, 1, &after);
    if (!rc) {
        const rp_volume *rows[2] = {before, after};
        rc = rp_reg_checkerboard(fixed, rows, 2, 12, &pix, &w, &h);
    }
    if (!rc)
        rc = rp_png_write(path, pix, w, h, 1, 8);
    free(pix);
    rp_volume_free(before);
    rp_volume_free(after);
    return rc;
}

/* Channel c of v as a borrowed single-channel view. */
static rp_volume channel_view(const rp_volume *v, int c)
{
    rp_volume ch = *v;
    ch.dim[3] = 1;
    ch.data = v->data + (size_t)c * rp_volume_nvox(v);
    return ch;
}

/* ---- fusion ---------------------------------------------------------------------------------- */

static const char *mode_name(int m)
{
    return m == RP_FUSION_REG_RIGID ? "rigid" : m == RP_FUSION_REG_RIGID_SCALE ? "rigid_scale"
                                                                                : "none";
}

int rp_fuse_register(const rp_conf_fusion *f, rp_volume **vols, cJSON *side, const char *out_dir,
                     const char *stem, char *err, size_t errlen)
{
    cJSON_AddStringToObject(side, "Register", mode_name(f->register_mode));
    cJSON *chans = cJSON_GetObjectItemCaseSensitive(side, "Channels");
    const rp_volume *ref = vols[f->reference];
    for (int s = 0; s < f->n_seq; s++) {
        const int mode =
            f->seq[s].register_mode >= 0 ? f->seq[s].register_mode : f->register_mode;
        if (s == f->reference || mode == RP_FUSION_REG_NONE)
            continue;
        rp_reg_params p;
        rp_reg_defaults(&p);
        p.dof = mode == RP_FUSION_REG_RIGID_SCALE ? 9 : 6;
        rp_reg_result r;
        char why[384] = "";
        rp_volume mv = channel_view(vols[s], 0), fx = channel_view(ref, 0);
        int rc = rp_register_rigid(&fx, NULL, &mv, &p, &r, why, sizeof why);
        if (rc) {
            snprintf(err, errlen, "sequence %s cannot be registered onto %s: %s", f->seq[s].name,
                     f->seq[f->reference].name, why);
            return rc;
        }
        cJSON *rj = reg_json(&r, p.dof, p.bins);
        char path[4096], name[256];
        snprintf(name, sizeof name, "%s_register_%s.png", stem, f->seq[s].name);
        if (snprintf(path, sizeof path, "%s/%s", out_dir, name) < (int)sizeof path &&
            rp_mkdir_p(out_dir, 0755) == 0 && write_checkerboard(path, &fx, &mv, r.matrix) == 0)
            cJSON_AddStringToObject(rj, "qc", name);
        else
            RP_WARN(MOD, "fusion QC checkerboard not written path=%s", path);
        cJSON *ch = cJSON_GetArrayItem(chans, s);
        if (ch)
            cJSON_AddItemToObject(ch, "Registration", rj);
        else
            cJSON_Delete(rj);
        /* T maps reference world -> member world: the member's voxels sit at T⁻¹·A */
        double Ti[4][4], A[4][4];
        if (rp_mat4_invert(r.matrix, Ti) != 0) {
            snprintf(err, errlen, "sequence %s: singular registration result", f->seq[s].name);
            return RP_EINTERNAL;
        }
        rp_mat4_mul(Ti, vols[s]->affine, A);
        memcpy(vols[s]->affine, A, sizeof A);
        rp_volume_update_spacing(vols[s]);
        RP_INFO(MOD, "fusion rule=%s sequence=%s onto=%s moved_max_mm=%.2f rot_deg=%.2f,%.2f,%.2f",
                f->name, f->seq[s].name, f->seq[f->reference].name, r.max_displacement_mm,
                r.rotation_deg[0], r.rotation_deg[1], r.rotation_deg[2]);
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
    int rc = rp_json_write(path, j, e2, sizeof e2);
    cJSON_Delete(j);
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
    char tmpp[4200];
    snprintf(tmpp, sizeof tmpp, "%s.tmp-%d", path, (int)getpid());
    FILE *f = fopen(tmpp, "w");
    if (!f || fputs(txt, f) < 0 || fclose(f) != 0 || rename(tmpp, path) != 0) {
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
    int rc = load_reference(s->ref, &ref, why, sizeof why);
    if (rc) {
        snprintf(ctx->err, sizeof ctx->err, "%s", why);
        return rc;
    }
    rp_reg_params p;
    rp_reg_defaults(&p);
    p.dof = s->dof;
    rp_reg_result r;
    rp_volume fx = channel_view(ref, 0), mv = channel_view(ctx->vol, 0);
    if ((rc = rp_register_rigid(&fx, NULL, &mv, &p, &r, why, sizeof why)) != 0) {
        snprintf(ctx->err, sizeof ctx->err, "%s", why);
        rp_volume_free(ref);
        return rc;
    }
    cJSON *rj = reg_json(&r, p.dof, p.bins);
    if (ctx->out_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s_register_qc.png", ctx->out_dir,
                 ctx->out_stem ? ctx->out_stem : "out");
        if (write_checkerboard(path, &fx, &mv, r.matrix) == 0)
            add_output(ctx, "qc_register", path);
        else
            RP_WARN(MOD, "QC checkerboard not written path=%s", path);
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
        cJSON_AddItemToObject(q, "matrix", matrix_json(r.matrix));
        cJSON_AddStringToObject(q, "maps", "aligned world (RAS mm) -> input world");
    }
    if (why[0])
        cJSON_AddStringToObject(q, "reason", why);
    if (rc == 0 && !r.reliable && !s->keep_unreliable)
        rc = RP_EUNSUPPORTED;
    if (rc) {
        snprintf(ctx->err, sizeof ctx->err, "align: midline not aligned: %s",
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
            rp_png_write(path, pix, w, h, 3, 8) == 0) {
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
    {"register", reg_usage, reg_parse, reg_run, NULL, reg_describe},
    {"align", align_usage, align_parse, align_run, NULL, align_describe},
    {NULL, NULL, NULL, NULL, NULL, NULL},
};
