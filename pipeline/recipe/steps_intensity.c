/*
 * pipeline/recipe/steps_intensity.c — intensity steps: `hu`, `clip`, `window`,
 * `multiwindow` (CT table) and `normalize` (generic table).
 *
 * Units: CT data arrive in Hounsfield units (assembly applies slope/intercept). Named ranges
 * and window presets are HU and go through the ctx HU bookkeeping, so they stay right after
 * a linear step; the numbers of clip(lo,hi) are in the current intensity units. Every step
 * computes in double per voxel and stores float32, which is what NumPy gives when it computes
 * in float64 and casts.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "pipeline/recipe/recipe_internal.h"
#include "pipeline/recipe/ops_fused_internal.h"

static size_t nvals(const rp_volume *v)
{
    return rp_volume_nvox(v) * (size_t)v->dim[3];
}

/* ---- hu ------------------------------------------------------------------------------ */

/* `hu`: the assembled CT is already float32 HU (slope/intercept applied per instance by
 * assembly); this step checks that the series is CT, records the unit and reports how much
 * of the volume lies below -1024 HU (outside the reconstruction circle) — it clamps nothing. */
int rp_step_hu_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    if (a->n != 0)
        return rp_arg_fail(err, errlen, "hu", "hu takes no arguments");
    *out = calloc(1, 1);
    return *out ? 0 : RP_ENOMEM;
}

void rp_step_hu_describe(const void *p, cJSON *o)
{
    (void)p;
    cJSON_AddStringToObject(o, "units", "HU");
    cJSON_AddStringToObject(o, "rescale", "slope/intercept applied at assembly");
}

int rp_step_hu_run(rp_step_ctx *ctx, const void *p)
{
    (void)p;
    if (ctx->info && ctx->info->modality[0] && strcasecmp(ctx->info->modality, "CT") != 0) {
        snprintf(ctx->err, sizeof ctx->err, "hu needs a CT series, this one is %s",
                 ctx->info->modality);
        return RP_EINVAL;
    }
    if (ctx->hu_known && (ctx->hu_scale != 1 || ctx->hu_offset != 0)) {
        snprintf(ctx->err, sizeof ctx->err, "hu must come before window/normalize");
        return RP_EINVAL;
    }
    ctx->hu_known = 1;
    if (!ctx->vol->data && !(ctx->vol->src && ctx->vol->src->has_stats)) {
        int rc = rp_volume_materialize(ctx->vol);
        if (rc)
            return rc;
    }
    const rp_volume *v = ctx->vol;
    size_t n = nvals(v), below = 0;
    const float *d = v->data;
    if (!d) /* deferred (volume.h): the source counted them */
        below = v->src->below_m1024;
#pragma omp parallel for reduction(+ : below) schedule(static)
    for (size_t i = 0; i < (d ? n : 0); i++)
        below += d[i] < -1024.0f;
    rp_step_qc_number(ctx, "below_minus1024_fraction", (double)below / (double)n);
    return 0;
}

/* ---- clip ---------------------------------------------------------------------------- */

typedef struct clip_params {
    double lo, hi;
    int hu; /* named range: lo/hi are HU */
    char name[16];
} clip_params;

static const struct {
    const char *name;
    double lo, hi;
} CLIP_RANGES[] = {
    {"soft_tissue", -200, 400},
    {"full_body", -1000, 1000},
    {"bone", -200, 3000},
    {"lung", -1200, 600}, /* LUNA16 */
};

static const char CLIP_USAGE[] = "clip(lo,hi) or clip(soft_tissue|full_body|bone|lung)";

int rp_step_clip_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    clip_params p = {0};
    if (a->n == 1) {
        size_t i;
        for (i = 0; i < sizeof CLIP_RANGES / sizeof CLIP_RANGES[0]; i++)
            if (strcasecmp(a->arg[0], CLIP_RANGES[i].name) == 0)
                break;
        if (i == sizeof CLIP_RANGES / sizeof CLIP_RANGES[0])
            return rp_arg_fail(err, errlen, CLIP_USAGE, "unknown range '%s'", a->arg[0]);
        p.lo = CLIP_RANGES[i].lo;
        p.hi = CLIP_RANGES[i].hi;
        p.hu = 1;
        rp_strlcpy(p.name, CLIP_RANGES[i].name, sizeof p.name);
    } else if (a->n == 2) {
        if (rp_arg_double(a->arg[0], &p.lo) || rp_arg_double(a->arg[1], &p.hi))
            return rp_arg_fail(err, errlen, CLIP_USAGE, "'%s' or '%s' is not a number", a->arg[0],
                               a->arg[1]);
        if (!(p.lo < p.hi))
            return rp_arg_fail(err, errlen, CLIP_USAGE, "lo (%g) must be below hi (%g)", p.lo,
                               p.hi);
    } else {
        return rp_arg_fail(err, errlen, CLIP_USAGE, "expected 1 or 2 arguments, got %d", a->n);
    }
    clip_params *q = malloc(sizeof *q);
    if (!q)
        return RP_ENOMEM;
    *q = p;
    *out = q;
    return 0;
}

void rp_step_clip_describe(const void *pp, cJSON *o)
{
    const clip_params *p = pp;
    cJSON_AddNumberToObject(o, "lo", p->lo);
    cJSON_AddNumberToObject(o, "hi", p->hi);
    cJSON_AddStringToObject(o, "units", p->hu ? "HU" : "value");
    if (p->hu)
        cJSON_AddStringToObject(o, "range", p->name);
}

static double clip_values(float *d, size_t n, float lo, float hi)
{
    size_t clipped = 0;
#pragma omp parallel for reduction(+ : clipped) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = d[i];
        if (x < lo) {
            d[i] = lo;
            clipped++;
        } else if (x > hi) {
            d[i] = hi;
            clipped++;
        }
    }
    return n ? (double)clipped / (double)n : 0;
}

int rp_step_clip_run(rp_step_ctx *ctx, const void *pp)
{
    const clip_params *p = pp;
    double lo = p->lo, hi = p->hi;
    if (p->hu) {
        if (!ctx->hu_known) {
            snprintf(ctx->err, sizeof ctx->err,
                     "clip(%s) is a HU range, but the intensities are not (linear) HU", p->name);
            return RP_EINVAL;
        }
        lo = (p->lo - ctx->hu_offset) / ctx->hu_scale;
        hi = (p->hi - ctx->hu_offset) / ctx->hu_scale;
        if (lo > hi) {
            double t = lo;
            lo = hi;
            hi = t;
        }
    }
    double f = clip_values(ctx->vol->data, nvals(ctx->vol), (float)lo, (float)hi);
    rp_step_ctx_note_clip(ctx, lo, hi);
    rp_step_qc_number(ctx, "clipped_fraction", f);
    return 0;
}

/* ---- window / multiwindow ------------------------------------------------------------ */

static const struct {
    const char *name;
    double level, width;
} WINDOWS[] = {
    {"lung", -600, 1500}, {"mediastinal", 50, 350}, {"bone", 300, 2000},
    {"brain", 40, 80},    {"abdomen", 50, 400},
};

typedef struct window_params {
    int n; /* number of windows (1 for window) */
    double level[8], width[8];
    char name[8][16]; /* preset name or "" */
} window_params;

static int parse_window(const char *s, double *level, double *width, char *name)
{
    for (size_t i = 0; i < sizeof WINDOWS / sizeof WINDOWS[0]; i++)
        if (strcasecmp(s, WINDOWS[i].name) == 0) {
            *level = WINDOWS[i].level;
            *width = WINDOWS[i].width;
            rp_strlcpy(name, WINDOWS[i].name, 16);
            return 0;
        }
    /* "level/width" inside multiwindow */
    char buf[128];
    rp_strlcpy(buf, s, sizeof buf);
    char *slash = strchr(buf, '/');
    if (!slash)
        return RP_EINVAL;
    *slash = '\0';
    name[0] = '\0';
    if (rp_arg_double(buf, level) || rp_arg_double(slash + 1, width) || !(*width > 0))
        return RP_EINVAL;
    return 0;
}

static const char WINDOW_USAGE[] =
    "window(lung|mediastinal|bone|brain|abdomen) or window(level,width) in HU";
static const char MULTIWINDOW_USAGE[] =
    "multiwindow(w1,w2,...), each a preset (lung, mediastinal, bone, brain, abdomen) or "
    "level/width in HU, 2 to 8 windows";

int rp_step_window_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    window_params p = {.n = 1};
    if (a->n == 1) {
        if (parse_window(a->arg[0], &p.level[0], &p.width[0], p.name[0]) != 0)
            return rp_arg_fail(err, errlen, WINDOW_USAGE, "unknown window '%s'", a->arg[0]);
    } else if (a->n == 2) {
        if (rp_arg_double(a->arg[0], &p.level[0]) || rp_arg_double(a->arg[1], &p.width[0]))
            return rp_arg_fail(err, errlen, WINDOW_USAGE, "'%s' or '%s' is not a number", a->arg[0],
                               a->arg[1]);
        if (!(p.width[0] > 0))
            return rp_arg_fail(err, errlen, WINDOW_USAGE, "width must be > 0");
    } else {
        return rp_arg_fail(err, errlen, WINDOW_USAGE, "expected 1 or 2 arguments, got %d", a->n);
    }
    window_params *q = malloc(sizeof *q);
    if (!q)
        return RP_ENOMEM;
    *q = p;
    *out = q;
    return 0;
}

int rp_step_multiwindow_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    window_params p = {.n = a->n};
    if (a->n < 2 || a->n > 8)
        return rp_arg_fail(err, errlen, MULTIWINDOW_USAGE, "got %d windows", a->n);
    for (int i = 0; i < a->n; i++)
        if (parse_window(a->arg[i], &p.level[i], &p.width[i], p.name[i]) != 0)
            return rp_arg_fail(err, errlen, MULTIWINDOW_USAGE, "bad window '%s'", a->arg[i]);
    window_params *q = malloc(sizeof *q);
    if (!q)
        return RP_ENOMEM;
    *q = p;
    *out = q;
    return 0;
}

static void describe_windows(const window_params *p, cJSON *o)
{
    cJSON *arr = cJSON_AddArrayToObject(o, "windows");
    for (int i = 0; i < p->n; i++) {
        cJSON *w = cJSON_CreateObject();
        cJSON_AddNumberToObject(w, "level", p->level[i]);
        cJSON_AddNumberToObject(w, "width", p->width[i]);
        cJSON_AddItemToArray(arr, w);
    }
    cJSON_AddStringToObject(o, "units", "HU");
    cJSON_AddStringToObject(o, "output", "(HU - (level - width/2)) / width, clipped to [0,1]");
}

void rp_step_window_describe(const void *p, cJSON *o)
{
    describe_windows(p, o);
}

void rp_step_multiwindow_describe(const void *p, cJSON *o)
{
    describe_windows(p, o);
}

/* dst = clip((src * s + off - lo) / width, 0, 1) with HU = src*s + off */
static double window_values(const float *src, float *dst, size_t n, double s, double off,
                            double level, double width)
{
    const double lo = level - width / 2;
    size_t clipped = 0;
#pragma omp parallel for reduction(+ : clipped) schedule(static)
    for (size_t i = 0; i < n; i++) {
        double hu = (double)src[i] * s + off;
        double y = (hu - lo) / width;
        if (y < 0) {
            y = 0;
            clipped++;
        } else if (y > 1) {
            y = 1;
            clipped++;
        }
        dst[i] = (float)y;
    }
    return n ? (double)clipped / (double)n : 0;
}

static int need_hu(rp_step_ctx *ctx, const char *step)
{
    if (!ctx->hu_known) {
        snprintf(ctx->err, sizeof ctx->err,
                 "%s maps Hounsfield units, but the intensities are not (linear) HU", step);
        return RP_EINVAL;
    }
    if (ctx->vol->dim[3] != 1) {
        snprintf(ctx->err, sizeof ctx->err, "%s needs a single-channel volume", step);
        return RP_EINVAL;
    }
    return 0;
}

int rp_step_window_run(rp_step_ctx *ctx, const void *pp)
{
    const window_params *p = pp;
    int rc = need_hu(ctx, "window");
    if (rc)
        return rc;
    rp_volume *v = ctx->vol;
    double s = ctx->hu_scale, off = ctx->hu_offset;
    double f = window_values(v->data, v->data, nvals(v), s, off, p->level[0], p->width[0]);
    /* value' = (v*s + off - lo)/W: linear, then clipped to [0,1] */
    double lo = p->level[0] - p->width[0] / 2;
    rp_step_ctx_note_linear(ctx, s / p->width[0], (off - lo) / p->width[0]);
    rp_step_ctx_note_clip(ctx, 0, 1);
    rp_step_qc_number(ctx, "clipped_fraction", f);
    return 0;
}

int rp_step_multiwindow_run(rp_step_ctx *ctx, const void *pp)
{
    const window_params *p = pp;
    int rc = need_hu(ctx, "multiwindow");
    if (rc)
        return rc;
    rp_volume *v = ctx->vol;
    rp_volume *o = rp_volume_new(v->dim[0], v->dim[1], v->dim[2], p->n);
    if (!o)
        return RP_ENOMEM;
    memcpy(o->affine, v->affine, sizeof o->affine);
    rp_volume_update_spacing(o);
    size_t n = rp_volume_nvox(v);
    cJSON *fr = cJSON_CreateArray();
    for (int c = 0; c < p->n; c++) {
        double f = window_values(v->data, o->data + (size_t)c * n, n, ctx->hu_scale, ctx->hu_offset,
                                 p->level[c], p->width[c]);
        cJSON_AddItemToArray(fr, cJSON_CreateNumber(f));
    }
    rp_step_qc_add(ctx, "clipped_fraction_per_channel", fr);
    rp_volume_free(v);
    ctx->vol = o;
    ctx->hu_known = 0; /* channels no longer share one HU mapping */
    return 0;
}

/* ---- normalize ----------------------------------------------------------------------- */

enum { NORM_MINMAX, NORM_ZSCORE, NORM_PERCENTILE, NORM_ZSCORE_IN };

typedef struct norm_params {
    int kind;
    double plo, phi;
    char mask[32];
} norm_params;

static const char NORM_USAGE[] = "normalize(minmax | zscore | percentile(lo,hi) | zscore_in(mask))";

int rp_step_normalize_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    norm_params p = {0};
    if (a->n != 1)
        return rp_arg_fail(err, errlen, NORM_USAGE, "expected one method, got %d arguments", a->n);
    char name[32];
    rp_step_args sub;
    if (rp_arg_call(a->arg[0], name, sizeof name, &sub) != 0)
        return rp_arg_fail(err, errlen, NORM_USAGE, "malformed '%s'", a->arg[0]);
    static const char *const kinds[] = {"minmax", "zscore", "percentile", "zscore_in", NULL};
    p.kind = rp_arg_word(name, kinds);
    if (p.kind < 0)
        return rp_arg_fail(err, errlen, NORM_USAGE, "unknown method '%s'", name);
    if (p.kind == NORM_PERCENTILE) {
        if (sub.n != 2 || rp_arg_double(sub.arg[0], &p.plo) || rp_arg_double(sub.arg[1], &p.phi))
            return rp_arg_fail(err, errlen, NORM_USAGE, "percentile needs two numbers");
        if (!(p.plo >= 0 && p.plo < p.phi && p.phi <= 100))
            return rp_arg_fail(err, errlen, NORM_USAGE,
                               "percentiles must satisfy 0 <= lo < hi <= 100");
    } else if (p.kind == NORM_ZSCORE_IN) {
        if (sub.n != 1)
            return rp_arg_fail(err, errlen, NORM_USAGE, "zscore_in needs a mask name");
        if (rp_strlcpy(p.mask, sub.arg[0], sizeof p.mask) != 0)
            return rp_arg_fail(err, errlen, NORM_USAGE, "mask name too long");
    } else if (sub.n != 0) {
        return rp_arg_fail(err, errlen, NORM_USAGE, "%s takes no arguments", name);
    }
    norm_params *q = malloc(sizeof *q);
    if (!q)
        return RP_ENOMEM;
    *q = p;
    *out = q;
    return 0;
}

void rp_step_normalize_describe(const void *pp, cJSON *o)
{
    const norm_params *p = pp;
    static const char *names[] = {"minmax", "zscore", "percentile", "zscore_in"};
    cJSON_AddStringToObject(o, "method", names[p->kind]);
    if (p->kind == NORM_PERCENTILE) {
        cJSON_AddNumberToObject(o, "lo", p->plo);
        cJSON_AddNumberToObject(o, "hi", p->phi);
        cJSON_AddStringToObject(o, "output", "clipped to the percentiles, scaled to [0,1]");
    } else if (p->kind == NORM_ZSCORE_IN) {
        cJSON_AddStringToObject(o, "mask", p->mask);
    }
    if (p->kind == NORM_ZSCORE || p->kind == NORM_ZSCORE_IN)
        cJSON_AddStringToObject(o, "sd", "population (ddof=0)");
}

/* mean and population SD (two-pass, double) over values, optionally where mask != 0 */
static int mean_sd(const float *d, const uint8_t *m, size_t n, double *mean, double *sd)
{
    double s = 0;
    size_t cnt = 0;
#pragma omp parallel for reduction(+ : s, cnt) schedule(static)
    for (size_t i = 0; i < n; i++)
        if (!m || m[i]) {
            s += d[i];
            cnt++;
        }
    if (cnt == 0)
        return RP_EINVAL;
    double mu = s / (double)cnt, ss = 0;
#pragma omp parallel for reduction(+ : ss) schedule(static)
    for (size_t i = 0; i < n; i++)
        if (!m || m[i]) {
            double t = d[i] - mu;
            ss += t * t;
        }
    *mean = mu;
    *sd = sqrt(ss / (double)cnt);
    return 0;
}

/* v = (v - sub) / div with optional clipping to [0,1]; multiplying by the reciprocal (in
 * double) differs from NumPy's division by at most one double ulp, invisible in float32
 * except at rare ties */
static double affine_values(float *d, size_t n, double sub, double div, int clip01)
{
    const double inv = 1.0 / div;
    size_t clipped = 0;
#pragma omp parallel for simd reduction(+ : clipped) schedule(static)
    for (size_t i = 0; i < n; i++) {
        double y = ((double)d[i] - sub) * inv;
        if (clip01) {
            clipped += y < 0 || y > 1;
            y = y < 0 ? 0 : y > 1 ? 1 : y;
        }
        d[i] = (float)y;
    }
    return n ? (double)clipped / (double)n : 0;
}

int rp_step_normalize_run(rp_step_ctx *ctx, const void *pp)
{
    const norm_params *p = pp;
    rp_volume *v = ctx->vol;
    size_t n = rp_volume_nvox(v);
    const rp_mask *mask = NULL;
    if (p->kind == NORM_ZSCORE_IN) {
        rp_mask *mm = rp_step_ctx_mask(ctx, p->mask);
        if (mm && rp_mask_unpack(mm) != 0) /* the runner leaves the masks packed for this step */
            return RP_ENOMEM;
        mask = mm;
        if (!mask || memcmp(mask->dim, v->dim, sizeof mask->dim) != 0) {
            snprintf(ctx->err, sizeof ctx->err,
                     "normalize: mask '%s' %s (run a step that makes it first)", p->mask,
                     mask ? "is not on the image grid" : "does not exist");
            return RP_EINVAL;
        }
    }
    cJSON *per = cJSON_CreateArray();
    for (int c = 0; c < v->dim[3]; c++) {
        float *d = v->data + (size_t)c * n;
        double sub = 0, div = 1;
        int clip01 = 0;
        if (p->kind == NORM_MINMAX) {
            float lo = d[0], hi = d[0];
#pragma omp parallel for simd reduction(min : lo) reduction(max : hi) schedule(static)
            for (size_t i = 0; i < n; i++) {
                lo = d[i] < lo ? d[i] : lo;
                hi = d[i] > hi ? d[i] : hi;
            }
            sub = lo;
            div = hi > lo ? (double)hi - lo : 1;
        } else if (p->kind == NORM_PERCENTILE) {
            double a = rp_percentile(d, n, p->plo), b = rp_percentile(d, n, p->phi);
            if (isnan(a) || isnan(b)) {
                cJSON_Delete(per);
                return RP_ENOMEM;
            }
            sub = a;
            div = b > a ? b - a : 1;
            clip01 = 1;
        } else {
            double mu, sd;
            if (mean_sd(d, mask ? mask->data : NULL, n, &mu, &sd) != 0) {
                snprintf(ctx->err, sizeof ctx->err, "normalize: mask '%s' is empty", p->mask);
                cJSON_Delete(per);
                return RP_EINVAL;
            }
            sub = mu;
            div = sd > 0 ? sd : 1;
        }
        double f = affine_values(d, n, sub, div, clip01);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "subtracted", sub);
        cJSON_AddNumberToObject(o, "divided_by", div);
        if (clip01) {
            cJSON_AddNumberToObject(o, "clipped_fraction", f);
            if (v->dim[3] == 1)
                rp_step_qc_number(ctx, "clipped_fraction", f);
        }
        cJSON_AddItemToArray(per, o);
        if (v->dim[3] == 1) {
            rp_step_ctx_note_linear(ctx, 1.0 / div, -sub / div);
            if (clip01)
                rp_step_ctx_note_clip(ctx, 0, 1);
        }
    }
    if (v->dim[3] != 1)
        ctx->hu_known = 0;
    rp_step_qc_add(ctx, "per_channel", per);
    return 0;
}

/* ---- clip + normalize(minmax) in one pass (see ops_fused_internal.h) ------------------ */

int rp_ops_clip_minmax(rp_step_ctx *ctx, const void *clip_p, const void *norm_p, cJSON *clip_qc,
                       cJSON *norm_qc, cJSON **after_clip, cJSON **after_norm)
{
    const clip_params *cp = clip_p;
    const norm_params *np = norm_p;
    rp_volume *v = ctx->vol;
    if (np->kind != NORM_MINMAX || v->dim[3] != 1)
        return RP_EUNSUPPORTED;
    double lo = cp->lo, hi = cp->hi;
    if (cp->hu) {
        if (!ctx->hu_known)
            return RP_EUNSUPPORTED; /* the step itself says why */
        lo = (cp->lo - ctx->hu_offset) / ctx->hu_scale;
        hi = (cp->hi - ctx->hu_offset) / ctx->hu_scale;
        if (lo > hi) {
            double t = lo;
            lo = hi;
            hi = t;
        }
    }
    const float flo = (float)lo, fhi = (float)hi;
    float *d = v->data;
    const size_t n = rp_volume_nvox(v);
    if (n == 0)
        return RP_EUNSUPPORTED;
    /* blocks that stay in L1, vectorised inner loops (as rp_qc_stats) */
    enum { QB = 4096 };
    const size_t nb = (n + QB - 1) / QB;
    float mn = INFINITY, mx = -INFINITY;
    size_t bad = 0;
    /* the runner's QC statistics measured the extent already (masks in between leave the
     * voxels alone): one read pass over the volume less */
    const int known = ctx->extent_of == d;
    if (known) {
        mn = ctx->extent_lo;
        mx = ctx->extent_hi;
    }
#pragma omp parallel for schedule(static) reduction(min : mn) reduction(max : mx) reduction(+ : bad) if (!known)
    for (size_t k = 0; k < (known ? 0 : nb); k++) {
        const float *p = d + k * QB;
        const int m = (int)(n - k * QB < QB ? n - k * QB : QB);
        float bmn = INFINITY, bmx = -INFINITY;
        int bbad = 0;
#pragma omp simd reduction(min : bmn) reduction(max : bmx) reduction(+ : bbad)
        for (int i = 0; i < m; i++) {
            float x = p[i];
            bbad += !(x - x == 0.0f); /* NaN or infinite */
            bmn = x < bmn ? x : bmn;
            bmx = x > bmx ? x : bmx;
        }
        mn = bmn < mn ? bmn : mn;
        mx = bmx > mx ? bmx : mx;
        bad += (size_t)bbad;
    }
    if (bad)
        return RP_EUNSUPPORTED;
    /* what clip_values() then normalize's min/max would see */
    const float cmin = mn < flo ? flo : mn > fhi ? fhi : mn;
    const float cmax = mx < flo ? flo : mx > fhi ? fhi : mx;
    const double sub = cmin, div = cmax > cmin ? (double)cmax - cmin : 1, inv = 1.0 / div;
    const float ylo = (float)(((double)cmin - sub) * inv),
                yhi = (float)(((double)cmax - sub) * inv);
    size_t clipped = 0, c_lo = 0, c_hi = 0, y_lo = 0, y_hi = 0;
    double cs = 0, css = 0, ys = 0, yss = 0;
#pragma omp parallel for schedule(static) reduction(+ : clipped, c_lo, c_hi, y_lo, y_hi, cs, css, ys, yss)
    for (size_t k = 0; k < nb; k++) {
        float *p = d + k * QB;
        const int m = (int)(n - k * QB < QB ? n - k * QB : QB);
        int bcl = 0, bclo = 0, bchi = 0, bylo = 0, byhi = 0;
        double bcs = 0, bcss = 0, bys = 0, byss = 0;
#pragma omp simd reduction(+ : bcl, bclo, bchi, bylo, byhi, bcs, bcss, bys, byss)
        for (int i = 0; i < m; i++) {
            float x = p[i];
            float c = x < flo ? flo : x > fhi ? fhi : x;
            bcl += (x < flo) | (x > fhi);
            float y = (float)(((double)c - sub) * inv);
            p[i] = y;
            bclo += c == cmin;
            bchi += c == cmax;
            bylo += y == ylo;
            byhi += y == yhi;
            bcs += c;
            bcss += (double)c * c;
            bys += y;
            byss += (double)y * y;
        }
        clipped += (size_t)bcl;
        c_lo += (size_t)bclo;
        c_hi += (size_t)bchi;
        y_lo += (size_t)bylo;
        y_hi += (size_t)byhi;
        cs += bcs;
        css += bcss;
        ys += bys;
        yss += byss;
    }
    rp_step_ctx_note_clip(ctx, lo, hi);
    rp_step_ctx_note_linear(ctx, inv, -sub * inv);
    if (clip_qc)
        cJSON_AddNumberToObject(clip_qc, "clipped_fraction", (double)clipped / (double)n);
    if (norm_qc) {
        cJSON *per = cJSON_AddArrayToObject(norm_qc, "per_channel");
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "subtracted", sub);
        cJSON_AddNumberToObject(o, "divided_by", div);
        cJSON_AddItemToArray(per, o);
    }
    *after_clip = rp_qc_stats_from(v, cmin, cmax, cs, css, c_lo, c_hi, 0);
    *after_norm = rp_qc_stats_from(v, ylo, yhi, ys, yss, y_lo, y_hi, 0);
    return 0;
}
