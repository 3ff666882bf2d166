/* pipeline/step/step.c — context and argument helpers shared by every step (see step.h). */
#include "pipeline/step/step.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"

rp_mask *rp_step_ctx_mask(rp_step_ctx *ctx, const char *name)
{
    for (int i = 0; i < ctx->n_masks; i++)
        if (ctx->masks[i] && strcmp(ctx->masks[i]->name, name) == 0)
            return ctx->masks[i];
    return NULL;
}

int rp_step_ctx_add_mask(rp_step_ctx *ctx, rp_mask *m)
{
    if (!m)
        return RP_EINVAL;
    for (int i = 0; i < ctx->n_masks; i++)
        if (ctx->masks[i] && strcmp(ctx->masks[i]->name, m->name) == 0) {
            if (ctx->masks[i] != m)
                rp_mask_free(ctx->masks[i]);
            ctx->masks[i] = m;
            return 0;
        }
    if (ctx->n_masks >= RP_MAX_MASKS) {
        rp_mask_free(m);
        snprintf(ctx->err, sizeof ctx->err, "too many masks (at most %d)", RP_MAX_MASKS);
        return RP_EBUSY;
    }
    ctx->masks[ctx->n_masks++] = m;
    return 0;
}

void rp_step_ctx_release(rp_step_ctx *ctx)
{
    rp_volume_free(ctx->vol);
    ctx->vol = NULL;
    for (int i = 0; i < ctx->n_masks; i++) {
        rp_mask_free(ctx->masks[i]);
        ctx->masks[i] = NULL;
    }
    ctx->n_masks = 0;
}

void rp_step_ctx_note_linear(rp_step_ctx *ctx, double a, double b)
{
    if (!ctx->hu_known || a == 0 || !isfinite(a) || !isfinite(b)) {
        ctx->hu_known = 0;
        return;
    }
    /* value' = a v + b  =>  v = (value' - b)/a  =>  HU = value' * s/a + (o - s b/a) */
    ctx->hu_offset -= ctx->hu_scale * b / a;
    ctx->hu_scale /= a;
}

void rp_step_ctx_note_clip(rp_step_ctx *ctx, double lo, double hi)
{
    if (!ctx->hu_known)
        return;
    double h1 = lo * ctx->hu_scale + ctx->hu_offset, h2 = hi * ctx->hu_scale + ctx->hu_offset;
    if (h1 > h2) {
        double t = h1;
        h1 = h2;
        h2 = t;
    }
    if (h1 > ctx->hu_lo)
        ctx->hu_lo = h1;
    if (h2 < ctx->hu_hi)
        ctx->hu_hi = h2;
}

int rp_step_ctx_hu_value(rp_step_ctx *ctx, double hu, const char *step, float *value)
{
    if (!ctx->hu_known) {
        snprintf(ctx->err, sizeof ctx->err,
                 "%s needs Hounsfield units, but an earlier step made the intensities "
                 "non-linear or the modality is not CT",
                 step);
        return RP_EINVAL;
    }
    if (!(hu > ctx->hu_lo && hu < ctx->hu_hi)) {
        snprintf(ctx->err, sizeof ctx->err,
                 "%s needs %g HU, but earlier steps clipped the data to [%g, %g] HU; "
                 "put %s before clip/window",
                 step, hu, ctx->hu_lo, ctx->hu_hi, step);
        return RP_EINVAL;
    }
    *value = (float)((hu - ctx->hu_offset) / ctx->hu_scale);
    return 0;
}

void rp_step_qc_number(rp_step_ctx *ctx, const char *key, double v)
{
    if (ctx->step_qc)
        cJSON_AddNumberToObject(ctx->step_qc, key, isfinite(v) ? v : 0.0);
}

void rp_step_qc_add(rp_step_ctx *ctx, const char *key, cJSON *item)
{
    if (!item)
        return;
    if (!ctx->step_qc) {
        cJSON_Delete(item);
        return;
    }
    cJSON_AddItemToObject(ctx->step_qc, key, item);
}

int rp_arg_double(const char *s, double *out)
{
    if (!s || !*s)
        return RP_EINVAL;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    while (isspace((unsigned char)*end))
        end++;
    if (end == s || *end || errno == ERANGE || !isfinite(v))
        return RP_EINVAL;
    *out = v;
    return 0;
}

int rp_arg_int(const char *s, int *out)
{
    if (!s || !*s)
        return RP_EINVAL;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    while (isspace((unsigned char)*end))
        end++;
    if (end == s || *end || errno == ERANGE || v < -2147483647L || v > 2147483647L)
        return RP_EINVAL;
    *out = (int)v;
    return 0;
}

static void trim_copy(char *dst, size_t dstsz, const char *b, const char *e)
{
    while (b < e && isspace((unsigned char)*b))
        b++;
    while (e > b && isspace((unsigned char)e[-1]))
        e--;
    size_t n = (size_t)(e - b);
    if (n >= dstsz)
        n = dstsz - 1;
    memcpy(dst, b, n);
    dst[n] = '\0';
}

int rp_arg_call(const char *s, char *name, size_t namesz, rp_step_args *args)
{
    memset(args, 0, sizeof *args);
    if (!s || namesz == 0)
        return RP_EINVAL;
    while (isspace((unsigned char)*s))
        s++;
    const char *p = s;
    while (*p && *p != '(' && !isspace((unsigned char)*p) && *p != ')' && *p != ',')
        p++;
    if (p == s || (size_t)(p - s) >= namesz)
        return RP_EINVAL;
    memcpy(name, s, (size_t)(p - s));
    name[p - s] = '\0';
    while (isspace((unsigned char)*p))
        p++;
    if (!*p)
        return 0;
    if (*p != '(')
        return RP_EINVAL;
    const char *arg_start = ++p;
    int depth = 1;
    for (;; p++) {
        if (!*p)
            return RP_EINVAL; /* unbalanced */
        if (*p == '(') {
            depth++;
        } else if (*p == ')' || (*p == ',' && depth == 1)) {
            if (*p == ')' && --depth > 0)
                continue;
            /* end of one top-level argument */
            const char *b = arg_start, *e = p;
            while (b < e && isspace((unsigned char)*b))
                b++;
            while (e > b && isspace((unsigned char)e[-1]))
                e--;
            if (e == b) {
                /* "name()" is the same as "name"; an empty argument elsewhere is an error */
                if (!(*p == ')' && args->n == 0))
                    return RP_EINVAL;
            } else {
                if (args->n >= RP_STEP_MAX_ARGS || (size_t)(e - b) >= sizeof args->arg[0])
                    return RP_EINVAL;
                trim_copy(args->arg[args->n++], sizeof args->arg[0], b, e);
            }
            arg_start = p + 1;
            if (*p == ')')
                break;
        }
    }
    p++;
    while (isspace((unsigned char)*p))
        p++;
    return *p ? RP_EINVAL : 0;
}

int rp_arg_word(const char *s, const char *const *words)
{
    for (int i = 0; words[i]; i++)
        if (strcasecmp(s, words[i]) == 0)
            return i;
    return -1;
}

int rp_arg_fail(char *err, size_t errlen, const char *usage, const char *fmt, ...)
{
    if (err && errlen) {
        char why[256];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, sizeof why, fmt, ap);
        va_end(ap);
        snprintf(err, errlen, "%s (usage: %s)", why, usage ? usage : "?");
    }
    return RP_EINVAL;
}
