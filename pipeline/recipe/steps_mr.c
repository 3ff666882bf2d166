/*
 * pipeline/recipe/steps_mr.c — the MR recipe steps (rp_steps_mr[]) around pipeline/mr/mr.h:
 *   headmask([open=mm, close=mm, scale=x])      Otsu head mask -> ctx mask "head"
 *   foreground([open=mm, close=mm, scale=x])    Otsu foreground -> ctx mask "foreground"
 *   n4([shrink, iterations, levels, spline_mm, convergence] | key=value...)
 *                                               N4 bias-field correction (mr.h); field=yes
 *                                               also writes <stem>_n4field.nii.gz
 *   whitestripe([auto|t1|t2|flair|pd|last|largest|first] [, width])  White Stripe z-score
 *   nyul(model=PATH)                            Nyúl standardisation with a fitted model
 *   fuse(T1, T2, FLAIR, ...)                    study-level; see rp_mr_fuse_study()
 *
 * Masks: n4, whitestripe and nyul work inside ctx mask "brain", else "foreground", else
 * "head" (first present), or the one named by mask=NAME; with none, n4 computes the Otsu
 * foreground itself and adds it to the context.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "pipeline/mr/mr.h"
#include "pipeline/recipe/recipe_internal.h"

/* ---- small parse helpers (key=value or positional) ------------------------------------ */

static int perr(char *err, size_t errlen, const char *usage, const char *what, const char *val)
{
    snprintf(err, errlen, "%s '%s' (usage: %s)", what, val, usage);
    return RP_EINVAL;
}

/* Split "key=value": *key points into buf, *val after '='; no '=': key empty. */
static void split_kv(const char *arg, char *buf, size_t bufsz, const char **key, const char **val)
{
    rp_strlcpy(buf, arg, bufsz);
    char *eq = strchr(buf, '=');
    if (!eq) {
        *key = "";
        *val = buf;
        return;
    }
    *eq = 0;
    char *k = buf, *v = eq + 1;
    while (*k == ' ')
        k++;
    for (char *e = k + strlen(k); e > k && e[-1] == ' ';)
        *--e = 0;
    while (*v == ' ')
        v++;
    *key = k;
    *val = v;
}

static const char *pick_mask_name(rp_step_ctx *ctx, const char *want)
{
    if (want && want[0])
        return rp_step_ctx_mask(ctx, want) ? want : NULL;
    static const char *const order[] = {"brain", "foreground", "head"};
    for (size_t i = 0; i < 3; i++)
        if (rp_step_ctx_mask(ctx, order[i]))
            return order[i];
    return NULL;
}

static void qc_num(rp_step_ctx *ctx, const char *key, double v)
{
    if (ctx->step_qc)
        cJSON_AddNumberToObject(ctx->step_qc, key, v);
}

/* A non-owning 3-D view of channel c of v. */
static rp_volume channel_view(const rp_volume *v, int c)
{
    rp_volume w = *v;
    w.dim[3] = 1;
    w.data = v->data + (size_t)c * rp_volume_nvox(v);
    return w;
}

/* ---- headmask / foreground ----------------------------------------------------------- */

typedef struct fg_step {
    rp_mr_fg_params p;
    int head;
} fg_step;

static int fg_parse_common(const rp_step_args *a, void **out, char *err, size_t errlen, int head)
{
    const char *usage = head ? "headmask or headmask(open=MM, close=MM, scale=X)"
                             : "foreground or foreground(open=MM, close=MM, scale=X)";
    fg_step *s = calloc(1, sizeof *s);
    if (!s)
        return RP_ENOMEM;
    s->head = head;
    rp_mr_fg_defaults(&s->p, head);
    for (int i = 0; i < a->n; i++) {
        char buf[128];
        const char *k, *v;
        double d;
        split_kv(a->arg[i], buf, sizeof buf, &k, &v);
        if (rp_arg_double(v, &d) != 0 || !(d >= 0) || d > 100) {
            free(s);
            return perr(err, errlen, usage, "bad value", a->arg[i]);
        }
        if (strcasecmp(k, "open") == 0)
            s->p.open_mm = d;
        else if (strcasecmp(k, "close") == 0)
            s->p.close_mm = d;
        else if (strcasecmp(k, "scale") == 0 && d > 0)
            s->p.threshold_scale = d;
        else {
            free(s);
            return perr(err, errlen, usage, "unknown argument", a->arg[i]);
        }
    }
    *out = s;
    return 0;
}

static int headmask_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    return fg_parse_common(a, out, err, errlen, 1);
}

static int foreground_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    return fg_parse_common(a, out, err, errlen, 0);
}

static int fg_run(rp_step_ctx *ctx, const void *params)
{
    const fg_step *s = params;
    rp_mask *m = NULL;
    int rc = rp_mr_foreground(ctx->vol, &s->p, s->head ? "head" : "foreground", &m, ctx->err,
                              sizeof ctx->err);
    if (rc != 0)
        return rc;
    size_t cnt = rp_mask_count(m);
    qc_num(ctx, "voxels", (double)cnt);
    qc_num(ctx, "fraction", (double)cnt / (double)rp_volume_nvox(ctx->vol));
    return rp_step_ctx_add_mask(ctx, m);
}

static void fg_describe(const void *params, cJSON *o)
{
    const fg_step *s = params;
    cJSON_AddStringToObject(o, "mask", s->head ? "head" : "foreground");
    cJSON_AddStringToObject(o, "threshold", "otsu");
    cJSON_AddNumberToObject(o, "scale", s->p.threshold_scale);
    cJSON_AddNumberToObject(o, "open_mm", s->p.open_mm);
    cJSON_AddNumberToObject(o, "close_mm", s->p.close_mm);
    cJSON_AddBoolToObject(o, "fill_holes", s->p.fill_holes);
}

/* ---- n4 ---------------------------------------------------------------------------------- */

typedef struct n4_step {
    rp_n4_params p;
    char mask[32];
    int write_field; /* write <stem>_n4field.nii.gz (multiplicative field) under out_dir */
} n4_step;

static const char n4_usage[] =
    "n4, n4(shrink, iterations e.g. 50x50x50x50, levels, spline_mm, convergence) or "
    "n4(shrink=4, iterations=50x50x50x50, levels=4, spline=200, control_points=4, "
    "convergence=0.001, bins=200, fwhm=0.15, wiener=0.01, mask=NAME, field=yes|no)";

static int n4_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    n4_step *s = calloc(1, sizeof *s);
    if (!s)
        return RP_ENOMEM;
    rp_n4_defaults(&s->p);
    static const char *const pos[] = {"shrink", "iterations", "levels", "spline", "convergence"};
    int levels_set = 0, n_list = 0, list[RP_N4_MAX_LEVELS];
    for (int i = 0; i < a->n; i++) {
        char buf[128];
        const char *k, *v;
        split_kv(a->arg[i], buf, sizeof buf, &k, &v);
        if (!k[0]) {
            if (i >= 5)
                goto bad;
            k = pos[i];
        }
        double d = 0;
        int iv = 0;
        if (strcasecmp(k, "iterations") == 0) {
            rp_n4_params t = s->p;
            if (rp_n4_parse_iterations(v, &t) != 0)
                goto bad;
            n_list = t.levels;
            memcpy(list, t.iterations, sizeof list);
        } else if (strcasecmp(k, "mask") == 0) {
            if (!v[0] || rp_strlcpy(s->mask, v, sizeof s->mask) != 0)
                goto bad;
        } else if (strcasecmp(k, "field") == 0) {
            if (strcasecmp(v, "yes") == 0 || strcmp(v, "1") == 0)
                s->write_field = 1;
            else if (strcasecmp(v, "no") == 0 || strcmp(v, "0") == 0)
                s->write_field = 0;
            else
                goto bad;
        } else if (strcasecmp(k, "shrink") == 0 || strcasecmp(k, "levels") == 0 ||
                   strcasecmp(k, "control_points") == 0 || strcasecmp(k, "bins") == 0) {
            if (rp_arg_int(v, &iv) != 0)
                goto bad;
            if (strcasecmp(k, "shrink") == 0 && iv >= 1 && iv <= 16)
                s->p.shrink = iv;
            else if (strcasecmp(k, "levels") == 0 && iv >= 1 && iv <= RP_N4_MAX_LEVELS) {
                s->p.levels = iv;
                levels_set = 1;
            } else if (strcasecmp(k, "control_points") == 0 && iv >= 4 && iv <= 64) {
                s->p.control_points = iv;
                s->p.spline_mm = 0;
            } else if (strcasecmp(k, "bins") == 0 && iv >= 16 && iv <= 4096)
                s->p.bins = iv;
            else
                goto bad;
        } else {
            if (rp_arg_double(v, &d) != 0)
                goto bad;
            if (strcasecmp(k, "spline") == 0 && d > 0 && d < 10000)
                s->p.spline_mm = d;
            else if (strcasecmp(k, "convergence") == 0 && d >= 0 && d < 1)
                s->p.convergence = d;
            else if (strcasecmp(k, "fwhm") == 0 && d > 0 && d < 10)
                s->p.fwhm = d;
            else if (strcasecmp(k, "wiener") == 0 && d >= 0 && d < 10)
                s->p.wiener = d;
            else
                goto bad;
        }
    }
    /* One number means that many iterations at every level; a list AxBxC sets the levels
     * unless levels= says otherwise (then the list's last entry repeats). */
    if (n_list == 1)
        for (int l = 0; l < RP_N4_MAX_LEVELS; l++)
            s->p.iterations[l] = list[0];
    else if (n_list > 1) {
        if (!levels_set)
            s->p.levels = n_list;
        for (int l = 0; l < RP_N4_MAX_LEVELS; l++)
            s->p.iterations[l] = list[l < n_list ? l : n_list - 1];
    }
    *out = s;
    return 0;
bad:
    free(s);
    snprintf(err, errlen, "n4: bad argument (usage: %s)", n4_usage);
    return RP_EINVAL;
}

/* The multiplicative bias field (input = corrected * field) as float32 NIfTI beside the
 * outputs; listed in ctx->extra_outputs. */
static int write_field(rp_step_ctx *ctx, const rp_volume *log_field, int channel)
{
    if (!ctx->writers || !ctx->writers->nifti) {
        snprintf(ctx->err, sizeof ctx->err, "n4: cannot write the field: no file writer");
        return RP_EUNSUPPORTED;
    }
    rp_volume *f = rp_volume_clone(log_field);
    if (!f)
        return RP_ENOMEM;
    size_t n = rp_volume_nvox(f);
    for (size_t i = 0; i < n; i++)
        f->data[i] = expf(f->data[i]);
    char path[1400];
    const char *stem = ctx->out_stem ? ctx->out_stem : "out";
    if (channel == 0)
        snprintf(path, sizeof path, "%s/%s_n4field.nii.gz", ctx->out_dir, stem);
    else
        snprintf(path, sizeof path, "%s/%s_n4field-c%d.nii.gz", ctx->out_dir, stem, channel);
    char err[200];
    int rc =
        ctx->writers->nifti(path, f, "radprep N4 bias field (multiplicative)", err, sizeof err);
    rp_volume_free(f);
    if (rc != 0) {
        snprintf(ctx->err, sizeof ctx->err, "n4: cannot write the field: %s", err);
        return rc;
    }
    if (ctx->extra_outputs) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "kind", "n4_bias_field");
        cJSON_AddStringToObject(e, "path", path);
        cJSON_AddItemToArray(ctx->extra_outputs, e);
    }
    return 0;
}

static int n4_run(rp_step_ctx *ctx, const void *params)
{
    const n4_step *s = params;
    const char *mname = pick_mask_name(ctx, s->mask);
    if (s->mask[0] && !mname) {
        snprintf(ctx->err, sizeof ctx->err, "n4: mask '%s' not present (run its step first)",
                 s->mask);
        return RP_EINVAL;
    }
    rp_mask *mask = mname ? rp_step_ctx_mask(ctx, mname) : NULL;
    int rc;
    if (!mask) {
        rp_mr_fg_params fp;
        rp_mr_fg_defaults(&fp, 0);
        rp_volume ch0 = channel_view(ctx->vol, 0);
        rc = rp_mr_foreground(&ch0, &fp, "foreground", &mask, ctx->err, sizeof ctx->err);
        if (rc != 0)
            return rc;
        if ((rc = rp_step_ctx_add_mask(ctx, mask)) != 0)
            return rc;
        mname = "foreground";
    }
    cJSON *chq = ctx->step_qc ? cJSON_CreateArray() : NULL;
    for (int c = 0; c < ctx->vol->dim[3]; c++) {
        rp_volume view = channel_view(ctx->vol, c);
        rp_volume *corr = NULL, *field = NULL;
        rp_n4_report rep;
        rc = rp_n4_correct(&view, mask, &s->p, &corr, &field, &rep, ctx->err, sizeof ctx->err);
        if (rc != 0) {
            cJSON_Delete(chq);
            return rc;
        }
        memcpy(view.data, corr->data, rp_volume_nvox(corr) * sizeof(float));
        if (s->write_field && ctx->out_dir) {
            rc = write_field(ctx, field, c);
            if (rc != 0) {
                rp_volume_free(corr);
                rp_volume_free(field);
                cJSON_Delete(chq);
                return rc;
            }
        }
        if (chq) {
            /* field range and spread over the mask, as multiplicative factors */
            double lo = INFINITY, hi = -INFINITY, s1 = 0, s2 = 0;
            size_t k = 0, nv = rp_volume_nvox(field);
            for (size_t i = 0; i < nv; i++)
                if (mask->data[i]) {
                    double f = field->data[i];
                    lo = f < lo ? f : lo;
                    hi = f > hi ? f : hi;
                    s1 += f;
                    s2 += f * f;
                    k++;
                }
            cJSON *q = cJSON_CreateObject();
            cJSON_AddNumberToObject(q, "field_min", k ? exp(lo) : 1);
            cJSON_AddNumberToObject(q, "field_max", k ? exp(hi) : 1);
            cJSON_AddNumberToObject(q, "log_field_sd",
                                    k ? sqrt(fmax(0, s2 / k - s1 * s1 / k / k)) : 0);
            cJSON_AddItemToObject(q, "iterations",
                                  cJSON_CreateIntArray(rep.iterations, rep.levels));
            cJSON_AddItemToObject(q, "convergence",
                                  cJSON_CreateDoubleArray(rep.convergence, rep.levels));
            cJSON_AddItemToObject(q, "lattice", cJSON_CreateIntArray(rep.lattice, 3));
            cJSON_AddNumberToObject(q, "fit_voxels", (double)rep.fit_voxels);
            cJSON_AddNumberToObject(q, "seconds", rep.seconds);
            cJSON_AddItemToArray(chq, q);
        }
        rp_volume_free(corr);
        rp_volume_free(field);
    }
    if (ctx->step_qc) {
        cJSON_AddStringToObject(ctx->step_qc, "mask", mname);
        cJSON_AddItemToObject(ctx->step_qc, "channels", chq);
    }
    return 0;
}

static void n4_describe(const void *params, cJSON *o)
{
    const n4_step *s = params;
    cJSON_AddNumberToObject(o, "shrink", s->p.shrink);
    cJSON_AddItemToObject(o, "iterations", cJSON_CreateIntArray(s->p.iterations, s->p.levels));
    cJSON_AddNumberToObject(o, "levels", s->p.levels);
    if (s->p.spline_mm > 0)
        cJSON_AddNumberToObject(o, "spline_mm", s->p.spline_mm);
    else
        cJSON_AddNumberToObject(o, "control_points", s->p.control_points);
    cJSON_AddNumberToObject(o, "spline_order", 3);
    cJSON_AddNumberToObject(o, "convergence", s->p.convergence);
    cJSON_AddNumberToObject(o, "histogram_bins", s->p.bins);
    cJSON_AddNumberToObject(o, "fwhm", s->p.fwhm);
    cJSON_AddNumberToObject(o, "wiener_noise", s->p.wiener);
    cJSON_AddStringToObject(o, "mask", s->mask[0] ? s->mask : "brain|foreground|head|otsu");
    cJSON_AddBoolToObject(o, "write_field", s->write_field);
}

/* ---- whitestripe ----------------------------------------------------------------------- */

typedef struct ws_step {
    int auto_mode; /* pick the mode from the series' sequence (T2/FLAIR largest, PD first) */
    rp_ws_mode mode;
    char contrast[16];
    double width;
    char mask[32];
} ws_step;

static const char ws_usage[] =
    "whitestripe, whitestripe(auto|t1|t2|flair|pd|last|largest|first[, width]) or "
    "whitestripe(t1, width=0.05, mask=NAME); auto (default) reads the series' TR/TE/TI and "
    "description";

static int ws_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    ws_step *s = calloc(1, sizeof *s);
    if (!s)
        return RP_ENOMEM;
    s->auto_mode = 1;
    s->mode = RP_WS_LAST;
    rp_strlcpy(s->contrast, "auto", sizeof s->contrast);
    s->width = 0.05;
    for (int i = 0; i < a->n; i++) {
        char buf[128];
        const char *k, *v;
        split_kv(a->arg[i], buf, sizeof buf, &k, &v);
        if (((!k[0] && i == 0) || strcasecmp(k, "contrast") == 0) && strcasecmp(v, "auto") == 0) {
            s->auto_mode = 1;
        } else if ((!k[0] && i == 0) || strcasecmp(k, "contrast") == 0) {
            static const struct {
                const char *w;
                rp_ws_mode m;
            } words[] = {{"t1", RP_WS_LAST},         {"last", RP_WS_LAST},
                         {"t2", RP_WS_LARGEST},      {"flair", RP_WS_LARGEST},
                         {"largest", RP_WS_LARGEST}, {"pd", RP_WS_FIRST},
                         {"first", RP_WS_FIRST}};
            size_t j;
            for (j = 0; j < sizeof words / sizeof words[0]; j++)
                if (strcasecmp(v, words[j].w) == 0)
                    break;
            if (j == sizeof words / sizeof words[0])
                goto bad;
            s->mode = words[j].m;
            s->auto_mode = 0;
            rp_strlcpy(s->contrast, words[j].w, sizeof s->contrast);
        } else if ((!k[0] && i == 1) || strcasecmp(k, "width") == 0) {
            double d;
            if (rp_arg_double(v, &d) != 0 || !(d > 0 && d < 0.5))
                goto bad;
            s->width = d;
        } else if (strcasecmp(k, "mask") == 0) {
            if (!v[0] || rp_strlcpy(s->mask, v, sizeof s->mask) != 0)
                goto bad;
        } else
            goto bad;
    }
    *out = s;
    return 0;
bad:
    free(s);
    snprintf(err, errlen, "whitestripe: bad argument (usage: %s)", ws_usage);
    return RP_EINVAL;
}

static int ws_run(rp_step_ctx *ctx, const void *params)
{
    const ws_step *s = params;
    const char *mname = pick_mask_name(ctx, s->mask);
    if (s->mask[0] && !mname) {
        snprintf(ctx->err, sizeof ctx->err, "whitestripe: mask '%s' not present", s->mask);
        return RP_EINVAL;
    }
    rp_mask *mask = mname ? rp_step_ctx_mask(ctx, mname) : NULL;
    rp_ws_mode mode = s->mode;
    const char *seq = "T1";
    if (s->auto_mode && ctx->info) {
        /* T2 and FLAIR: WM is the largest mode; PD: the first; anything else as T1 */
        static const struct {
            const char *name;
            rp_ws_mode mode;
        } order[] = {{"FLAIR", RP_WS_LARGEST}, {"T2", RP_WS_LARGEST}, {"PD", RP_WS_FIRST}};
        for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
            rp_mr_seq_rule r;
            if (rp_mr_seq_rule_builtin(order[i].name, &r) == 0 && rp_mr_seq_match(&r, ctx->info)) {
                mode = order[i].mode;
                seq = order[i].name;
                break;
            }
        }
    }
    if (s->auto_mode && ctx->step_qc)
        cJSON_AddStringToObject(ctx->step_qc, "contrast_detected", seq);
    /* each channel (echo) gets its own stripe */
    for (int c = 0; c < ctx->vol->dim[3]; c++) {
        rp_volume ch = channel_view(ctx->vol, c);
        rp_ws_result r;
        int rc = rp_mr_whitestripe(&ch, mask, mode, s->width, &r, ctx->err, sizeof ctx->err);
        if (rc != 0)
            return rc;
        size_t n = rp_volume_nvox(ctx->vol);
        const double mu = r.mu, inv = 1.0 / r.sd;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++)
            ch.data[i] = (float)((ch.data[i] - mu) * inv);
        if (c == 0) {
            qc_num(ctx, "mode", r.mode);
            qc_num(ctx, "stripe_lo", r.lo);
            qc_num(ctx, "stripe_hi", r.hi);
            qc_num(ctx, "mu", r.mu);
            qc_num(ctx, "sd", r.sd);
            qc_num(ctx, "stripe_voxels", (double)r.n_stripe);
        }
    }
    if (ctx->step_qc)
        cJSON_AddStringToObject(ctx->step_qc, "mask", mname ? mname : "value>0");
    return 0;
}

static void ws_describe(const void *params, cJSON *o)
{
    const ws_step *s = params;
    cJSON_AddStringToObject(o, "contrast", s->contrast);
    cJSON_AddStringToObject(o, "mode",
                            s->auto_mode            ? "auto (T2/FLAIR largest, PD first, else last)"
                            : s->mode == RP_WS_LAST ? "last"
                            : s->mode == RP_WS_LARGEST ? "largest"
                                                       : "first");
    cJSON_AddNumberToObject(o, "width", s->width);
    cJSON_AddNumberToObject(o, "histogram_bins", 2000);
    cJSON_AddStringToObject(o, "mask", s->mask[0] ? s->mask : "brain|foreground|head|value>0");
}

/* ---- nyul -------------------------------------------------------------------------------- */

typedef struct nyul_step {
    char model[512];
    char mask[32];
} nyul_step;

static const char nyul_usage[] = "nyul(model=PATH[, mask=NAME]) (fit with rp_nyul_fit)";

static int nyul_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    nyul_step *s = calloc(1, sizeof *s);
    if (!s)
        return RP_ENOMEM;
    for (int i = 0; i < a->n; i++) {
        char buf[128];
        const char *k, *v;
        split_kv(a->arg[i], buf, sizeof buf, &k, &v);
        if ((!k[0] && i == 0) || strcasecmp(k, "model") == 0) {
            if (!v[0] || rp_strlcpy(s->model, v, sizeof s->model) != 0)
                goto bad;
        } else if (strcasecmp(k, "mask") == 0) {
            if (!v[0] || rp_strlcpy(s->mask, v, sizeof s->mask) != 0)
                goto bad;
        } else
            goto bad;
    }
    if (!s->model[0])
        goto bad;
    *out = s;
    return 0;
bad:
    free(s);
    snprintf(err, errlen, "nyul: bad or missing argument (usage: %s)", nyul_usage);
    return RP_EINVAL;
}

static int nyul_run(rp_step_ctx *ctx, const void *params)
{
    const nyul_step *s = params;
    rp_nyul_model m;
    int rc = rp_nyul_load(s->model, &m, ctx->err, sizeof ctx->err);
    if (rc != 0)
        return rc;
    const char *mname = pick_mask_name(ctx, s->mask);
    if (s->mask[0] && !mname) {
        snprintf(ctx->err, sizeof ctx->err, "nyul: mask '%s' not present", s->mask);
        return RP_EINVAL;
    }
    rp_mask *mask = mname ? rp_step_ctx_mask(ctx, mname) : NULL;
    for (int c = 0; c < ctx->vol->dim[3]; c++) {
        rp_volume view = channel_view(ctx->vol, c);
        if ((rc = rp_nyul_apply(&view, mask, &m, ctx->err, sizeof ctx->err)) != 0)
            return rc;
    }
    if (ctx->step_qc) {
        cJSON_AddItemToObject(ctx->step_qc, "standard", cJSON_CreateDoubleArray(m.standard, m.n));
        cJSON_AddNumberToObject(ctx->step_qc, "n_train", m.n_train);
        cJSON_AddStringToObject(ctx->step_qc, "mask", mname ? mname : "value>0");
    }
    return 0;
}

static void nyul_describe(const void *params, cJSON *o)
{
    const nyul_step *s = params;
    cJSON_AddStringToObject(o, "model", s->model);
    cJSON_AddStringToObject(o, "mask", s->mask[0] ? s->mask : "brain|foreground|head|value>0");
}

/* ---- fuse -------------------------------------------------------------------------------- */

typedef struct fuse_step {
    int n;
    char seq[RP_STEP_MAX_ARGS][16];
} fuse_step;

static int fuse_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    if (a->n < 1) {
        snprintf(err, errlen, "fuse: name the sequences (usage: fuse(T1, T2, FLAIR))");
        return RP_EINVAL;
    }
    fuse_step *s = calloc(1, sizeof *s);
    if (!s)
        return RP_ENOMEM;
    for (int i = 0; i < a->n; i++) {
        rp_mr_seq_rule r;
        if (rp_mr_seq_rule_builtin(a->arg[i], &r) != 0) {
            free(s);
            snprintf(err, errlen,
                     "fuse: unknown sequence '%s' (known: T1, T2, FLAIR, PD, BOLD, FIELDMAP)",
                     a->arg[i]);
            return RP_EINVAL;
        }
        rp_strlcpy(s->seq[i], r.name, sizeof s->seq[i]);
    }
    s->n = a->n;
    *out = s;
    return 0;
}

static int fuse_run(rp_step_ctx *ctx, const void *params)
{
    (void)params;
    /* A single-series context has no other sequences to fuse with; the study-level runner
     * calls rp_mr_fuse_study() with every assembled series of the study. */
    snprintf(ctx->err, sizeof ctx->err,
             "fuse is a study-level operation: it needs all series of the study "
             "(rp_mr_fuse_study), not one series' recipe");
    return RP_EUNSUPPORTED;
}

static void fuse_describe(const void *params, cJSON *o)
{
    const fuse_step *s = params;
    cJSON *a = cJSON_AddArrayToObject(o, "sequences");
    for (int i = 0; i < s->n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(s->seq[i]));
    cJSON_AddStringToObject(o, "reference", s->seq[0]);
    cJSON_AddStringToObject(o, "interpolation", "trilinear");
    cJSON_AddStringToObject(o, "normalize", "zscore(otsu foreground)");
}

const rp_step_def rp_steps_mr[] = {
    {"headmask", "headmask or headmask(open=MM, close=MM, scale=X)", headmask_parse, fg_run, NULL,
     fg_describe, 0},
    {"foreground", "foreground or foreground(open=MM, close=MM, scale=X)", foreground_parse, fg_run,
     NULL, fg_describe, 0},
    {"n4", n4_usage, n4_parse, n4_run, NULL, n4_describe, 0},
    {"whitestripe", ws_usage, ws_parse, ws_run, NULL, ws_describe, 0},
    {"nyul", nyul_usage, nyul_parse, nyul_run, NULL, nyul_describe, 0},
    {"fuse", "fuse(T1, T2, FLAIR, ...) (study level)", fuse_parse, fuse_run, NULL, fuse_describe, 0},
    {0},
};
