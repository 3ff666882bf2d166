/*
 * pipeline/recipe/recipe.c — recipe parser, step registry, runner, rule matching and recipe
 * hash (see recipe.h for the contract).
 */
#include "pipeline/recipe/recipe.h"

#include <ctype.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "pipeline/recipe/recipe_internal.h"
#include "pipeline/recipe/ops_fused_internal.h"

#define RP_RECIPE_MAX_STEPS 64

typedef struct recipe_step {
    const rp_step_def *def;
    void *params;
    int table;      /* index into tables[] */
    char text[512]; /* as written, for messages */
} recipe_step;

struct rp_recipe {
    size_t n;
    recipe_step steps[RP_RECIPE_MAX_STEPS];
};

enum { TABLE_GENERIC, TABLE_CT, TABLE_MR, TABLE_XR, TABLE_REG, N_TABLES };

static const rp_step_def *table_at(int t)
{
    switch (t) {
    case TABLE_GENERIC:
        return rp_steps_generic;
    case TABLE_CT:
        return rp_steps_ct;
    case TABLE_MR:
        return rp_steps_mr;
    case TABLE_XR:
        return rp_steps_xr;
    case TABLE_REG:
        return rp_steps_register;
    }
    return NULL;
}

static const rp_step_def *find_step(const char *name, int *table)
{
    for (int t = 0; t < N_TABLES; t++) {
        const rp_step_def *tab = table_at(t);
        for (int i = 0; tab && tab[i].name; i++)
            if (strcmp(tab[i].name, name) == 0) {
                if (table)
                    *table = t;
                return &tab[i];
            }
    }
    return NULL;
}

const rp_step_def *rp_recipe_find_step(const char *name)
{
    return name ? find_step(name, NULL) : NULL;
}

static void known_steps(char *buf, size_t bufsz)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int t = 0; t < N_TABLES; t++) {
        const rp_step_def *tab = table_at(t);
        for (int i = 0; tab && tab[i].name; i++) {
            int w = snprintf(buf + len, bufsz - len, "%s%s", len ? " " : "", tab[i].name);
            if (w < 0 || (size_t)w >= bufsz - len)
                return;
            len += (size_t)w;
        }
    }
}

void rp_recipe_free(rp_recipe *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        if (r->steps[i].def->free_params)
            r->steps[i].def->free_params(r->steps[i].params);
        else
            free(r->steps[i].params);
    }
    free(r);
}

/* Next step token: blanks separate steps except inside parentheses; "name (args)" is allowed.
 * Returns the length of the token starting at *p (after leading blanks), 0 at the end,
 * -1 on an unbalanced ')' or a missing ')'. */
static long next_token(const char **pp)
{
    const char *p = *pp;
    while (isspace((unsigned char)*p))
        p++;
    *pp = p;
    if (!*p)
        return 0;
    int depth = 0;
    const char *q = p;
    for (; *q; q++) {
        if (*q == '(') {
            depth++;
        } else if (*q == ')') {
            if (--depth < 0)
                return -1;
        } else if (isspace((unsigned char)*q) && depth == 0) {
            const char *r = q;
            while (isspace((unsigned char)*r))
                r++;
            if (*r != '(')
                break;
        }
    }
    if (depth != 0)
        return -1;
    return (long)(q - p);
}

int rp_recipe_parse(const char *text, rp_recipe **out, char *err, size_t errlen)
{
    char dummy[8];
    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    *out = NULL;
    if (!text) {
        snprintf(err, errlen, "no steps given");
        return RP_ECONF;
    }
    rp_recipe *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return RP_ENOMEM;
    }
    const char *p = text;
    for (int idx = 1;; idx++) {
        long len = next_token(&p);
        if (len == 0)
            break;
        if (len < 0) {
            snprintf(err, errlen, "step %d: unbalanced parentheses in '%.200s'", idx, p);
            goto fail;
        }
        if (r->n >= RP_RECIPE_MAX_STEPS) {
            snprintf(err, errlen, "too many steps (at most %d)", RP_RECIPE_MAX_STEPS);
            goto fail;
        }
        recipe_step *s = &r->steps[r->n];
        if ((size_t)len >= sizeof s->text) {
            snprintf(err, errlen, "step %d: '%.60s...' is too long", idx, p);
            goto fail;
        }
        memcpy(s->text, p, (size_t)len);
        s->text[len] = '\0';
        p += len;
        char name[64];
        rp_step_args args;
        if (rp_arg_call(s->text, name, sizeof name, &args) != 0) {
            snprintf(err, errlen,
                     "step %d '%.200s': malformed (expected name or name(arg,...) with balanced "
                     "parentheses, no empty arguments, at most %d arguments of < 128 characters)",
                     idx, s->text, RP_STEP_MAX_ARGS);
            goto fail;
        }
        s->def = find_step(name, &s->table);
        if (!s->def) {
            char known[1024];
            known_steps(known, sizeof known);
            snprintf(err, errlen, "unknown step '%.60s' (step %d); known steps: %.700s", name, idx,
                     known);
            goto fail;
        }
        char why[400] = "";
        if (s->def->parse(&args, &s->params, why, sizeof why) != 0) {
            s->def = NULL; /* nothing to free */
            snprintf(err, errlen, "step %d '%.200s': %s", idx, s->text,
                     why[0] ? why : "bad arguments");
            goto fail;
        }
        r->n++;
    }
    if (r->n == 0) {
        snprintf(err, errlen, "no steps given");
        goto fail;
    }
    *out = r;
    return 0;
fail:
    rp_recipe_free(r);
    return RP_ECONF;
}

int rp_recipe_check(const char *steps, char *err, size_t errlen)
{
    rp_recipe *r;
    int rc = rp_recipe_parse(steps, &r, err, errlen);
    rp_recipe_free(r);
    return rc;
}

size_t rp_recipe_nsteps(const rp_recipe *r)
{
    return r ? r->n : 0;
}

const char *rp_recipe_step_name(const rp_recipe *r, size_t i)
{
    return r && i < r->n ? r->steps[i].def->name : NULL;
}

static cJSON *describe_step(const recipe_step *s)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "step", s->def->name);
    cJSON *params = cJSON_AddObjectToObject(o, "params");
    if (params && s->def->describe)
        s->def->describe(s->params, params);
    return o;
}

cJSON *rp_recipe_describe(const rp_recipe *r)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && r && i < r->n; i++) {
        cJSON *o = describe_step(&r->steps[i]);
        if (!o) {
            cJSON_Delete(arr);
            return NULL;
        }
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

int rp_recipe_hash(const rp_recipe *r, char hex[65])
{
    cJSON *d = rp_recipe_describe(r);
    char *txt = d ? cJSON_PrintUnformatted(d) : NULL;
    cJSON_Delete(d);
    if (!txt)
        return RP_ENOMEM;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int ok = EVP_Digest(txt, strlen(txt), md, &mdlen, EVP_sha256(), NULL);
    free(txt);
    if (!ok || mdlen != 32)
        return RP_EINTERNAL;
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* The QC picture of every output: <out_dir>/<stem>_qc.png. A failure here is logged and
 * noted in QC; it never fails the recipe. */
static void write_montage(rp_step_ctx *ctx)
{
    if (!ctx->out_dir || !ctx->out_stem)
        return;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s_qc.png", ctx->out_dir, ctx->out_stem) >=
        sizeof path)
        return;
    int rc = rp_qc_montage_png(ctx, path);
    if (rc) {
        RP_WARN("pipeline", "QC montage not written path=%s rc=%d", path, rc);
        if (ctx->qc)
            cJSON_AddStringToObject(ctx->qc, "montage_error", rp_strerror(rc));
        return;
    }
    if (ctx->extra_outputs) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "kind", "qc_montage");
        cJSON_AddStringToObject(e, "path", path);
        cJSON_AddItemToArray(ctx->extra_outputs, e);
    }
}

static int unpack_masks(rp_step_ctx *ctx)
{
    for (int i = 0; i < ctx->n_masks; i++) {
        int rc = ctx->masks[i] ? rp_mask_unpack(ctx->masks[i]) : 0;
        if (rc)
            return rc;
    }
    return 0;
}

/* QC statistics of ctx->vol; when they show one channel without NaN/Inf, its exact extent
 * is kept in ctx for the steps that follow (until one may change the voxels). */
static cJSON *stats_keep_extent(rp_step_ctx *ctx)
{
    float lo = 0, hi = 0;
    size_t bad = 1;
    const size_t nvals = rp_volume_nvox(ctx->vol) * (size_t)ctx->vol->dim[3];
    if (!ctx->vol->data) { /* deferred (volume.h): the source measured it; run() checked */
        ctx->stats_of = ctx->extent_of = NULL;
        return rp_qc_stats_of(ctx->vol, &ctx->vol->src->stats, &lo, &hi, &bad);
    }
    cJSON *st = ctx->stats_of == ctx->vol->data && ctx->stats.n == nvals
                    ? rp_qc_stats_of(ctx->vol, &ctx->stats, &lo, &hi, &bad)
                    : rp_qc_stats_extent(ctx->vol, &lo, &hi, &bad);
    ctx->stats_of = NULL;
    ctx->extent_of = st && bad == 0 && ctx->vol->dim[3] == 1 && lo <= hi ? ctx->vol->data : NULL;
    ctx->extent_lo = lo;
    ctx->extent_hi = hi;
    return st;
}

/* Steps i and i+1 as one pass when they are clip then normalize(minmax) (see
 * ops_fused_internal.h): 1 when done (QC of both steps recorded, *before set for the step
 * after them), 0 when the pair is not fusable and must run step by step. A fused pair that
 * fails falls back too: the steps then fail with their own reasons. */
static int run_fused(const rp_recipe *r, size_t i, rp_step_ctx *ctx, cJSON *steps_qc, cJSON *sq,
                     cJSON **before)
{
    const recipe_step *a = &r->steps[i], *b = &r->steps[i + 1];
    if (strcmp(a->def->name, "clip") != 0 || strcmp(b->def->name, "normalize") != 0)
        return 0;
    cJSON *sq2 = steps_qc ? describe_step(b) : NULL, *after_a = NULL, *after_b = NULL;
    double t0 = rp_mono_s();
    int rc = rp_ops_clip_minmax(ctx, a->params, b->params, sq, sq2, &after_a, &after_b);
    double ms = (rp_mono_s() - t0) * 1e3;
    if (rc == 0)
        ctx->extent_of = NULL; /* the voxels changed */
    if (rc) {
        cJSON_Delete(sq2);
        return 0;
    }
    RP_DEBUG("pipeline", "steps done step=clip+normalize fused=1 ms=%.1f", ms);
    if (sq) {
        cJSON_AddItemToObject(sq, "after", cJSON_Duplicate(after_a, 1));
        cJSON_AddNumberToObject(sq, "ms", round(ms * 10) / 10);
        cJSON_AddStringToObject(sq, "fused", "one pass with the next step");
    }
    if (sq2) {
        cJSON_AddItemToArray(steps_qc, sq2);
        cJSON_AddItemToObject(sq2, "before", after_a);
        after_a = NULL;
        cJSON_AddItemToObject(sq2, "after", cJSON_Duplicate(after_b, 1));
        cJSON_AddNumberToObject(sq2, "ms", 0);
        cJSON_AddStringToObject(sq2, "fused", "ran in the previous step's pass");
    }
    cJSON_Delete(after_a);
    if (steps_qc)
        *before = after_b;
    else
        cJSON_Delete(after_b);
    return 1;
}

static int run(const rp_recipe *r, rp_step_ctx *ctx);

int rp_recipe_run(const rp_recipe *r, rp_step_ctx *ctx)
{
    int rc = run(r, ctx);
    return rc ? rc : unpack_masks(ctx);
}

int rp_recipe_run_packed(const rp_recipe *r, rp_step_ctx *ctx)
{
    return run(r, ctx);
}

static int run(const rp_recipe *r, rp_step_ctx *ctx)
{
    if (!r || !ctx || !ctx->vol)
        return RP_EINVAL;
    ctx->extent_of = NULL; /* nothing measured yet (callers need not zero it) */
    /* A fresh (zeroed) context: assembly hands CT over in Hounsfield units (slope/intercept
     * applied). A context that already ran a recipe keeps its bookkeeping. */
    if (ctx->hu_scale == 0) {
        ctx->hu_known =
            !ctx->info || !ctx->info->modality[0] || strcasecmp(ctx->info->modality, "CT") == 0;
        ctx->hu_scale = 1.0;
        ctx->hu_offset = 0.0;
        ctx->hu_lo = -INFINITY;
        ctx->hu_hi = INFINITY;
    }
    cJSON *steps_qc = NULL;
    if (ctx->qc) {
        steps_qc = cJSON_GetObjectItemCaseSensitive(ctx->qc, "steps");
        if (!steps_qc)
            steps_qc = cJSON_AddArrayToObject(ctx->qc, "steps");
    }
    if (!ctx->vol->data && ctx->vol->src && (!ctx->vol->src->has_stats || r->n == 0)) {
        int rc = rp_volume_materialize(ctx->vol);
        if (rc)
            return rc;
    }
    cJSON *before = steps_qc ? stats_keep_extent(ctx) : NULL, *before_copy = NULL;
    for (size_t i = 0; i < r->n; i++) {
        const recipe_step *s = &r->steps[i];
        cJSON *sq = NULL;
        if (steps_qc) {
            sq = describe_step(s);
            if (sq) {
                cJSON_AddItemToArray(steps_qc, sq);
                if (before) {
                    if ((s->def->flags & RP_STEP_READS_VOLUME_ONLY))
                        before_copy = cJSON_Duplicate(before, 1);
                    cJSON_AddItemToObject(sq, "before", before);
                }
                before = NULL;
            }
        }
        if ((!(s->def->flags & RP_STEP_MASKS_PACKED_OK) && unpack_masks(ctx) != 0) ||
            (!ctx->vol->data && !(s->def->flags & RP_STEP_READS_DEFERRED) &&
             rp_volume_materialize(ctx->vol) != 0)) {
            snprintf(ctx->err, sizeof ctx->err, "step %zu '%.60s' failed: out of memory", i + 1,
                     s->text);
            cJSON_Delete(before);
            cJSON_Delete(before_copy);
            return RP_ENOMEM;
        }
        if (i + 1 < r->n && run_fused(r, i, ctx, steps_qc, sq, &before)) {
            i++; /* the next step ran with this one */
            continue;
        }
        ctx->step_qc = sq;
        ctx->err[0] = '\0';
        ctx->stats_of = NULL; /* only what this step measures counts */
        double t0 = rp_mono_s();
        int rc = s->def->run(ctx, s->params);
        double ms = (rp_mono_s() - t0) * 1e3;
        ctx->step_qc = NULL;
        if (!(s->def->flags & RP_STEP_READS_VOLUME_ONLY))
            ctx->extent_of = NULL; /* the voxels may have changed */
        if (s->table == TABLE_MR || s->table == TABLE_XR)
            ctx->hu_known = 0;
        if (rc == 0 && !ctx->vol) {
            rc = RP_EINTERNAL;
            snprintf(ctx->err, sizeof ctx->err, "step left no volume");
        }
        if (rc != 0) {
            char reason[256];
            rp_strlcpy(reason, ctx->err[0] ? ctx->err : rp_strerror(rc), sizeof reason);
            snprintf(ctx->err, sizeof ctx->err, "step %zu '%.60s' failed: %.150s", i + 1, s->text,
                     reason);
            if (sq)
                cJSON_AddStringToObject(sq, "error", reason);
            cJSON_Delete(before_copy);
            RP_ERROR("pipeline", "recipe step failed step=%s index=%zu rc=%d reason=\"%s\"",
                     s->def->name, i + 1, rc, reason);
            return rc;
        }
        RP_DEBUG("pipeline", "step done step=%s ms=%.1f", s->def->name, ms);
        if (sq && (s->def->flags & RP_STEP_READS_VOLUME_ONLY)) {
            /* the volume is as before: its statistics too (one pass over it saved) */
            if (before_copy) {
                cJSON_AddItemToObject(sq, "after", before_copy);
                before = cJSON_Duplicate(before_copy, 1);
                before_copy = NULL;
            }
            cJSON_AddNumberToObject(sq, "ms", round(ms * 10) / 10);
        } else if (sq) {
            cJSON *after = stats_keep_extent(ctx);
            if (after) {
                cJSON_AddItemToObject(sq, "after", after);
                before = cJSON_Duplicate(after, 1);
            }
            cJSON_AddNumberToObject(sq, "ms", round(ms * 10) / 10);
        }
    }
    cJSON_Delete(before);
    cJSON_Delete(before_copy);
    if (!ctx->vol->data) { /* a recipe of `hu` alone: the caller gets float voxels */
        int rc = rp_volume_materialize(ctx->vol);
        if (rc)
            return rc;
    }
    if (ctx->qc) {
        cJSON_DeleteItemFromObjectCaseSensitive(ctx->qc, "masks");
        cJSON *m = rp_qc_masks(ctx);
        if (m)
            cJSON_AddItemToObject(ctx->qc, "masks", m);
    }
    write_montage(ctx);
    return 0;
}

/* The node and a batch run pick rules the same way: the choice lives in conf/. */
const rp_conf_rule *rp_recipe_match(const rp_conf *c, const rp_series_info *info)
{
    if (!c || !info)
        return NULL;
    return rp_conf_match_rule(c, info->modality, info->body_part, info->series_description,
                              info->slice_thickness);
}
