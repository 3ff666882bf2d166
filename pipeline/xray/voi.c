/*
 * pipeline/xray/voi.c — DICOM presentation of a grayscale image: Modality LUT (PS3.3 C.11.1),
 * VOI LUT or window (C.11.2), MONOCHROME1 inversion, into float 0..1 with bone bright.
 *
 * The formulas are the standard's, with ymin = 0 and ymax = 1. Stored values are integers
 * of at most 16 bits, so the whole chain is tabulated once per distinct stored value and
 * applied as one lookup per pixel; the per-pixel formula path is kept for inputs that are
 * not integers (already rescaled data).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/common.h"
#include "pipeline/xray/xray.h"

/* Largest tabulated stored-value range (2^20 floats = 4 MiB). */
#define RP_XR_TABLE_MAX (1 << 20)

const char *rp_xr_voi_name(rp_xr_voi_kind k)
{
    switch (k) {
    case RP_XR_VOI_LINEAR:
        return "LINEAR";
    case RP_XR_VOI_LINEAR_EXACT:
        return "LINEAR_EXACT";
    case RP_XR_VOI_SIGMOID:
        return "SIGMOID";
    case RP_XR_VOI_LUT:
        return "LUT";
    case RP_XR_VOI_NONE:
    default:
        return "NONE(minmax)";
    }
}

static int lut_index(const rp_xr_lut *l, double x)
{
    /* C.11.1.1 / C.11.2.1.1: inputs below the first mapped value take the first entry,
     * inputs past the end the last one. Non-integer inputs round to the nearest entry. */
    double i = floor(x + 0.5) - l->first;
    if (i < 0)
        return 0;
    if (i > l->n - 1)
        return l->n - 1;
    return (int)i;
}

/* Divisor turning VOI LUT entries into 0..1. The declared depth, unless the data exceed it
 * (some writers declare 8 or 12 bits and store more): then the depth the data need. */
static double lut_divisor(const rp_xr_lut *l)
{
    int bits = l->bits >= 1 && l->bits <= 16 ? l->bits : 16;
    unsigned mx = 0;
    for (int i = 0; i < l->n; i++)
        if (l->data[i] > mx)
            mx = l->data[i];
    while (bits < 16 && mx > (1u << bits) - 1)
        bits++;
    return (double)((1u << bits) - 1);
}

double rp_xr_modality_eval(const rp_xr_modality *m, double x)
{
    switch (m->kind) {
    case RP_XR_MOD_RESCALE:
        return m->slope * x + m->intercept;
    case RP_XR_MOD_LUT:
        return m->lut.data[lut_index(&m->lut, x)];
    case RP_XR_MOD_IDENTITY:
    default:
        return x;
    }
}

static double voi_eval_div(const rp_xr_voi *v, double x, double lut_div)
{
    const double c = v->center, w = v->width;
    switch (v->kind) {
    case RP_XR_VOI_LINEAR:
        /* C.11.2.1.2.1 */
        if (x <= c - 0.5 - (w - 1) / 2)
            return 0.0;
        if (x > c - 0.5 + (w - 1) / 2)
            return 1.0;
        return (x - (c - 0.5)) / (w - 1) + 0.5;
    case RP_XR_VOI_LINEAR_EXACT:
        /* C.11.2.1.3.2 */
        if (x <= c - w / 2)
            return 0.0;
        if (x > c + w / 2)
            return 1.0;
        return (x - c) / w + 0.5;
    case RP_XR_VOI_SIGMOID:
        /* C.11.2.1.3.1 */
        return 1.0 / (1.0 + exp(-4.0 * (x - c) / w));
    case RP_XR_VOI_LUT:
        return v->lut.data[lut_index(&v->lut, x)] / lut_div;
    case RP_XR_VOI_NONE:
    default:
        if (!(v->hi > v->lo))
            return 0.0;
        x = (x - v->lo) / (v->hi - v->lo);
        return x < 0 ? 0 : x > 1 ? 1 : x;
    }
}

double rp_xr_voi_eval(const rp_xr_voi *v, double x)
{
    return voi_eval_div(v, x, v->kind == RP_XR_VOI_LUT ? lut_divisor(&v->lut) : 1.0);
}

static int lut_check(const rp_xr_lut *l, const char *what, char *err, size_t errlen)
{
    if (!l->data || l->n < 1 || l->n > 65536) {
        snprintf(err, errlen, "%s LUT has %d entries (1..65536 expected)", what, l->n);
        return RP_EINVAL;
    }
    return 0;
}

int rp_xr_voi_check(const rp_xr_voi *v, char *err, size_t errlen)
{
    switch (v->kind) {
    case RP_XR_VOI_LINEAR:
        /* C.11.2.1.2.1: "Window Width shall always be greater than or equal to 1" */
        if (!(v->width >= 1.0) || !isfinite(v->center)) {
            snprintf(err, errlen, "LINEAR window needs width >= 1 (center=%g width=%g)", v->center,
                     v->width);
            return RP_EINVAL;
        }
        return 0;
    case RP_XR_VOI_LINEAR_EXACT:
    case RP_XR_VOI_SIGMOID:
        if (!(v->width > 0.0) || !isfinite(v->center)) {
            snprintf(err, errlen, "%s window needs width > 0 (center=%g width=%g)",
                     rp_xr_voi_name(v->kind), v->center, v->width);
            return RP_EINVAL;
        }
        return 0;
    case RP_XR_VOI_LUT:
        return lut_check(&v->lut, "VOI", err, errlen);
    case RP_XR_VOI_NONE:
    default:
        return 0;
    }
}

static inline int is_padding(const rp_xr_present_params *p, size_t i, double x)
{
    if (p->pad_mask)
        return p->pad_mask[i] != 0;
    return p->has_padding && x >= p->padding_lo && x <= p->padding_hi;
}

/* The whole chain for every integer in [lo, hi], MONOCHROME1 inversion included. */
static float *build_table(const rp_xr_present_params *p, int32_t lo, long span, double lut_div)
{
    float *t = malloc((size_t)span * sizeof *t);
    if (!t)
        return NULL;
    for (long k = 0; k < span; k++) {
        double y =
            voi_eval_div(&p->voi, rp_xr_modality_eval(&p->modality, (double)(lo + k)), lut_div);
        t[k] = (float)(p->invert ? 1.0 - y : y);
    }
    return t;
}

/* Range known from the header (bits stored, rescale) and a VOI that does not depend on the
 * data: one pass, a table lookup per pixel; a value off the table (not an integer, outside
 * the declared range) takes the formula, so the result never depends on the guess. */
static int present_one_pass(float *data, size_t n, const rp_xr_present_params *p,
                            rp_xr_present_report *rep, double lut_div)
{
    const int32_t lo = (int32_t)p->range_lo;
    const long span = (long)(p->range_hi - p->range_lo) + 1;
    const float lof = (float)p->range_lo, hif = (float)p->range_hi;
    float *t = build_table(p, lo, span, lut_div);
    if (!t)
        return RP_ENOMEM;
    const int inv = p->invert != 0, any_pad = p->pad_mask || p->has_padding;
    const int neg = p->negate != 0;
    const float kneg = (float)p->negate_k;
    float mn = INFINITY, mx = -INFINITY;
    size_t npad = 0, noff = 0;
#pragma omp parallel for if (n >= RP_XR_PAR_MIN) reduction(min : mn) reduction(max : mx) \
    reduction(+ : npad, noff) schedule(dynamic, 65536)
    for (size_t i = 0; i < n; i++) {
        float x = neg ? kneg - data[i] : data[i];
        if (any_pad && is_padding(p, i, x)) {
            npad++;
            data[i] = 0.0f;
            continue;
        }
        mn = x < mn ? x : mn;
        mx = x > mx ? x : mx;
        int in = x >= lof && x <= hif; /* false for NaN */
        int32_t k = in ? (int32_t)x : lo;
        if (in && (float)k == x) {
            data[i] = t[k - lo];
        } else {
            noff++;
            double y = isfinite(x)
                           ? voi_eval_div(&p->voi, rp_xr_modality_eval(&p->modality, x), lut_div)
                           : 0.0;
            data[i] = isfinite(x) ? (float)(inv ? 1.0 - y : y) : 0.0f;
        }
    }
    free(t);
    if (rep) {
        rep->n_padding = npad;
        rep->in_min = npad < n ? mn : 0;
        rep->in_max = npad < n ? mx : 0;
        double a = rp_xr_modality_eval(&p->modality, rep->in_min);
        double b = rp_xr_modality_eval(&p->modality, rep->in_max);
        rep->mod_min = a < b ? a : b;
        rep->mod_max = a < b ? b : a;
        rep->lut_path = noff == 0 ? 1 : 2;
    }
    return 0;
}

int rp_xr_present_f32(float *data, size_t n, rp_xr_present_params *p, rp_xr_present_report *rep)
{
    char err[160];
    if (!data || !p || n == 0)
        return RP_EINVAL;
    if (p->modality.kind == RP_XR_MOD_LUT &&
        lut_check(&p->modality.lut, "Modality", err, sizeof err) < 0) {
        RP_ERROR("xray", "present: %s", err);
        return RP_EINVAL;
    }
    if (rp_xr_voi_check(&p->voi, err, sizeof err) < 0) {
        RP_ERROR("xray", "present: %s", err);
        return RP_EINVAL;
    }
    if (p->has_padding && p->padding_hi < p->padding_lo) {
        double t = p->padding_lo;
        p->padding_lo = p->padding_hi;
        p->padding_hi = t;
    }

    const double lut_div = p->voi.kind == RP_XR_VOI_LUT ? lut_divisor(&p->voi.lut) : 1.0;
    if (p->has_range && p->voi.kind != RP_XR_VOI_NONE && p->range_lo == floor(p->range_lo) &&
        p->range_hi == floor(p->range_hi) && p->range_hi >= p->range_lo &&
        p->range_hi - p->range_lo < RP_XR_TABLE_MAX && fabs(p->range_lo) < 1e9 &&
        fabs(p->range_hi) < 1e9)
        return present_one_pass(data, n, p, rep, lut_div);

    if (p->negate) { /* the general path: undo the inversion first */
        const float k = (float)p->negate_k;
#pragma omp parallel for if (n >= RP_XR_PAR_MIN) schedule(dynamic, 65536)
        for (size_t i = 0; i < n; i++)
            data[i] = k - data[i];
    }

    /* Scan: range of non-padding values, padding count, are all values integers?
     * (Values beyond +-2^30, NaN and inf count as non-integer: formula path.) */
    int32_t imn = INT32_MAX, imx = INT32_MIN;
    float mnf = INFINITY, mxf = -INFINITY;
    size_t npad = 0, nonint = 0;
#pragma omp parallel for if (n >= RP_XR_PAR_MIN) reduction(min : imn) reduction(max : imx) \
    reduction(+ : npad, nonint) schedule(dynamic, 65536)
    for (size_t i = 0; i < n; i++) {
        float x = data[i];
        int ok = x > -1073741824.0f && x < 1073741824.0f;
        int32_t k = (int32_t)(ok ? x : 0.0f);
        nonint += !ok || (float)k != x;
        if (is_padding(p, i, x)) {
            npad++;
            continue;
        }
        imn = k < imn ? k : imn;
        imx = k > imx ? k : imx;
    }
    if (nonint) { /* the integer range is meaningless: take the float range (formula path) */
#pragma omp parallel for if (n >= RP_XR_PAR_MIN) reduction(min                                     \
                                                           : mnf) reduction(max                    \
                                                                            : mxf)                 \
    schedule(dynamic, 65536)
        for (size_t i = 0; i < n; i++) {
            float x = data[i];
            if (!isfinite(x) || is_padding(p, i, x))
                continue;
            mnf = x < mnf ? x : mnf;
            mxf = x > mxf ? x : mxf;
        }
    } else if (npad < n) {
        mnf = (float)imn;
        mxf = (float)imx;
    }
    double mn = mnf, mx = mxf;
    if (npad == n) { /* only padding: an all-black image */
        mn = mx = 0;
    }
    int use_table = nonint == 0 && mx - mn < RP_XR_TABLE_MAX;

    /* Range after the Modality LUT (a LUT need not be monotonic: scan it). */
    double mmin = INFINITY, mmax = -INFINITY;
    if (p->modality.kind == RP_XR_MOD_LUT && use_table) {
        for (double x = mn; x <= mx; x += 1.0) {
            double y = rp_xr_modality_eval(&p->modality, x);
            if (y < mmin)
                mmin = y;
            if (y > mmax)
                mmax = y;
        }
    } else {
        double a = rp_xr_modality_eval(&p->modality, mn);
        double b = rp_xr_modality_eval(&p->modality, mx);
        mmin = a < b ? a : b;
        mmax = a < b ? b : a;
    }
    if (p->voi.kind == RP_XR_VOI_NONE) {
        p->voi.lo = mmin;
        p->voi.hi = mmax;
    }

    const int inv = p->invert != 0;
    if (use_table) {
        const int32_t lo = (int32_t)mn;
        const long span = (long)(mx - mn) + 1;
        float *t = build_table(p, lo, span, lut_div);
        if (!t)
            return RP_ENOMEM;
        if (p->pad_mask || p->has_padding) {
#pragma omp parallel for if (n >= RP_XR_PAR_MIN) schedule(dynamic, 65536)
            for (size_t i = 0; i < n; i++) {
                float x = data[i];
                data[i] = is_padding(p, i, x) ? 0.0f : t[(int32_t)x - lo];
            }
        } else {
#pragma omp parallel for if (n >= RP_XR_PAR_MIN) schedule(dynamic, 65536)
            for (size_t i = 0; i < n; i++)
                data[i] = t[(int32_t)data[i] - lo];
        }
        free(t);
    } else {
#pragma omp parallel for if (n >= RP_XR_PAR_MIN) schedule(dynamic, 65536)
        for (size_t i = 0; i < n; i++) {
            double x = data[i];
            if (!isfinite(x) || is_padding(p, i, x)) {
                data[i] = 0.0f;
                continue;
            }
            double y = voi_eval_div(&p->voi, rp_xr_modality_eval(&p->modality, x), lut_div);
            data[i] = (float)(inv ? 1.0 - y : y);
        }
    }
    if (rep) {
        rep->n_padding = npad;
        rep->in_min = mn;
        rep->in_max = mx;
        rep->mod_min = mmin;
        rep->mod_max = mmax;
        rep->lut_path = use_table;
    }
    return 0;
}

/* ---- Output: 0..1 to display samples ---- */

int rp_xr_quantize_plane(const rp_volume *v, int z, int bit_depth, void *out)
{
    if (!v || !out || z < 0 || z >= v->dim[2] || (bit_depth != 8 && bit_depth != 16))
        return RP_EINVAL;
    const size_t n = (size_t)v->dim[0] * v->dim[1];
    const float *s = v->data + (size_t)z * n;
    const float maxv = bit_depth == 8 ? 255.0f : 65535.0f;
    const int w = v->dim[0], h = v->dim[1];
    for (int y = 0; y < h; y++) {
        /* row 0 out is the first DICOM row: the volume is stored bottom-up */
        const float *row = s + (size_t)(h - 1 - y) * w;
        for (int x = 0; x < w; x++) {
            float f = row[x];
            f = f >= 0.0f ? (f <= 1.0f ? f : 1.0f) : 0.0f; /* NaN -> 0 */
            long q = lrintf(f * maxv);
            size_t i = (size_t)y * w + x;
            if (bit_depth == 8)
                ((uint8_t *)out)[i] = (uint8_t)q;
            else
                ((uint16_t *)out)[i] = (uint16_t)q;
        }
    }
    return 0;
}
