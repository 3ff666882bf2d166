/*
 * pipeline/write/nifti_store.c — which NIfTI type a recipe's float32 volume is stored in.
 *
 * Why: trainers read int16 CT (nnU-Net, MONAI loaders cast anyway), and a float32 volume at
 * 1 mm is twice the bytes to compress and about twice the file. After `hu` and linear steps
 * (clip, window, normalize) every value is a known linear function of Hounsfield units, so an
 * int16 grid of HU steps (0.1 HU by default, below any scanner's noise) with scl_slope /
 * scl_inter gives back the recipe's values to within half a step: a reader (nibabel, ITK,
 * nnU-Net) applies the scaling and sees the normalised numbers. Integer-valued volumes are
 * stored exactly in the smallest integer type; anything else stays float32.
 */
#include "pipeline/write/write.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"

#define DEFAULT_STEP_HU 0.1
/* Largest error in stored units: half a step from rounding, plus the float32 arithmetic of
 * the conversion (< 0.004 units at |stored| <= 32767) and of the header's scl fields. */
#define ROUND_ERR 0.505

const char *rp_dtype_name(rp_dtype_kind k)
{
    switch (k) {
    case RP_DTYPE_FLOAT32:
        return "float32";
    case RP_DTYPE_INT16:
        return "int16";
    case RP_DTYPE_UINT8:
        return "uint8";
    case RP_DTYPE_HU:
        return "hu";
    default:
        return "auto";
    }
}

int rp_dtype_parse(const char *text, rp_dtype_spec *out, char *err, size_t errlen)
{
    out->kind = RP_DTYPE_AUTO;
    out->step_hu = DEFAULT_STEP_HU;
    if (!text)
        return 0;
    while (*text == ' ' || *text == '\t')
        text++;
    if (!*text)
        return 0;
    char word[32];
    size_t n = strcspn(text, "( \t");
    if (n == 0 || n >= sizeof word)
        goto bad;
    memcpy(word, text, n);
    word[n] = 0;
    static const char *const names[] = {"auto", "float32", "int16", "uint8", "hu"};
    int k = -1;
    for (int i = 0; i < 5; i++)
        if (!strcasecmp(word, names[i]))
            k = i;
    if (k < 0)
        goto bad;
    out->kind = (rp_dtype_kind)k;
    const char *p = text + n;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '(') {
        if (out->kind == RP_DTYPE_FLOAT32 || out->kind == RP_DTYPE_UINT8)
            goto bad;
        char *end;
        double s = strtod(p + 1, &end);
        while (*end == ' ')
            end++;
        if (end == p + 1 || *end != ')' || !(s >= 0.001 && s <= 100))
            goto bad;
        out->step_hu = s;
        p = end + 1;
        while (*p == ' ' || *p == '\t')
            p++;
    }
    if (*p)
        goto bad;
    return 0;
bad:
    if (err && errlen)
        snprintf(err, errlen,
                 "dtype '%s': want auto, float32, int16, uint8 or hu; auto, int16 and hu take an "
                 "optional HU step in (0.001..100), e.g. int16(0.5)",
                 text);
    return RP_EINVAL;
}

typedef struct vstats {
    double lo, hi;
    size_t nonfinite, nonint;
} vstats;

static vstats scan(const float *d, size_t n)
{
    float lo = INFINITY, hi = -INFINITY;
    size_t nonfinite = 0, nonint = 0;
#pragma omp parallel for schedule(static) reduction(min : lo) reduction(max : hi)                  \
    reduction(+ : nonfinite, nonint)
    for (size_t i = 0; i < n; i++) {
        float v = d[i];
        if (!isfinite(v)) {
            nonfinite++;
            continue;
        }
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        nonint += v != rintf(v);
    }
    vstats s = {lo, hi, nonfinite, nonint};
    return s;
}

static void set_float(rp_nifti_store *o, const char *why)
{
    memset(o, 0, sizeof *o);
    o->datatype = RP_NII_FLOAT32;
    o->a = 1;
    o->scl_slope = 1;
    o->exact = 1;
    rp_strlcpy(o->why, why, sizeof o->why);
}

/* Integers in range: stored as they are. */
static int try_integer(const vstats *s, int datatype, rp_nifti_store *o)
{
    double lo = datatype == RP_NII_UINT8 ? 0 : -32768, hi = datatype == RP_NII_UINT8 ? 255 : 32767;
    if (s->nonint || s->lo < lo || s->hi > hi)
        return 0;
    memset(o, 0, sizeof *o);
    o->datatype = datatype;
    o->a = 1;
    o->scl_slope = 1;
    o->exact = 1;
    snprintf(o->why, sizeof o->why, "integer values %g..%g stored exactly", s->lo, s->hi);
    return 1;
}

/* int16 grid of `step` HU around a centre c (a multiple of step, 0 when the range allows):
 * stored q = round((HU - c) / step). 0 when the range does not fit. */
static int try_hu(const vstats *s, double hu_scale, double hu_offset, double step, int reads_hu,
                  rp_nifti_store *o)
{
    double h1 = s->lo * hu_scale + hu_offset, h2 = s->hi * hu_scale + hu_offset;
    double hlo = h1 < h2 ? h1 : h2, hhi = h1 < h2 ? h2 : h1;
    if ((hhi - hlo) / step > 65534)
        return 0;
    double c = 0;
    if (hlo / step < -32767.5 || hhi / step > 32766.5)
        c = step * floor((hlo + hhi) / (2 * step) + 0.5);
    memset(o, 0, sizeof *o);
    o->datatype = RP_NII_INT16;
    /* q = (value * hu_scale + hu_offset - c) / step */
    o->a = hu_scale / step;
    o->b = (hu_offset - c) / step;
    o->hu_slope = step;
    o->hu_inter = c;
    if (reads_hu) {
        o->scl_slope = step;
        o->scl_inter = c;
    } else {
        /* value = (q * step + c - hu_offset) / hu_scale */
        o->scl_slope = step / hu_scale;
        o->scl_inter = (c - hu_offset) / hu_scale;
    }
    o->max_err = fabs(o->scl_slope) * ROUND_ERR;
    snprintf(o->why, sizeof o->why, "%s on a %g HU grid (HU = stored * %g + %g)",
             reads_hu ? "Hounsfield units" : "values linear in HU", step, step, c);
    return 1;
}

/* Linear map of the value range onto the type (lossy). */
static void range_map(const vstats *s, int datatype, rp_nifti_store *o)
{
    double qlo = datatype == RP_NII_UINT8 ? 0 : -32767,
           qhi = datatype == RP_NII_UINT8 ? 255 : 32767;
    double span = s->hi - s->lo;
    memset(o, 0, sizeof *o);
    o->datatype = datatype;
    o->scl_slope = span > 0 ? span / (qhi - qlo) : 1;
    o->scl_inter = s->lo - qlo * o->scl_slope;
    o->a = 1 / o->scl_slope;
    o->b = -o->scl_inter / o->scl_slope;
    o->max_err = span > 0 ? o->scl_slope * ROUND_ERR : 0;
    snprintf(o->why, sizeof o->why, "value range %g..%g mapped linearly onto %s (lossy)", s->lo,
             s->hi, datatype == RP_NII_UINT8 ? "uint8" : "int16");
}

int rp_nifti_store_choose(const rp_volume *v, const rp_dtype_spec *spec, int hu_known,
                          double hu_scale, double hu_offset, const double *hu_bounds,
                          rp_nifti_store *o, char *err, size_t errlen)
{
    rp_dtype_spec dflt = {RP_DTYPE_AUTO, DEFAULT_STEP_HU};
    if (!spec)
        spec = &dflt;
    double step = spec->step_hu > 0 ? spec->step_hu : DEFAULT_STEP_HU;
    hu_known = hu_known && hu_scale != 0 && isfinite(hu_scale) && isfinite(hu_offset);
    if (spec->kind == RP_DTYPE_FLOAT32) {
        set_float(o, "float32 as the rule asks");
        return 0;
    }
    if (spec->kind == RP_DTYPE_HU && !hu_known) {
        snprintf(err, errlen,
                 "dtype hu: the recipe's values are not a linear function of Hounsfield units "
                 "(not CT, or a non-linear step ran)");
        return RP_EINVAL;
    }
    if (hu_known && hu_bounds && isfinite(hu_bounds[0]) && isfinite(hu_bounds[1]) &&
        spec->kind != RP_DTYPE_UINT8) {
        /* the bounds hold every value: the HU grid needs no pass over the data */
        double a = (hu_bounds[0] - hu_offset) / hu_scale, b = (hu_bounds[1] - hu_offset) / hu_scale;
        vstats k = {a < b ? a : b, a < b ? b : a, 0, 1};
        if (try_hu(&k, hu_scale, hu_offset, step, spec->kind == RP_DTYPE_HU, o))
            return 0;
    }
    size_t n = rp_volume_nvox(v) * (size_t)v->dim[3];
    vstats s = scan(v->data, n);
    if (s.nonfinite) {
        set_float(o, "float32: the volume holds NaN or infinite values");
        return 0;
    }
    if (!(s.lo <= s.hi)) { /* empty */
        s.lo = s.hi = 0;
    }
    switch (spec->kind) {
    case RP_DTYPE_UINT8:
        if (!try_integer(&s, RP_NII_UINT8, o))
            range_map(&s, RP_NII_UINT8, o);
        return 0;
    case RP_DTYPE_HU:
        if (!try_hu(&s, hu_scale, hu_offset, step, 1, o)) {
            double st = step;
            while (!try_hu(&s, hu_scale, hu_offset, st, 1, o))
                st *= 2;
            snprintf(o->why + strlen(o->why), sizeof o->why - strlen(o->why),
                     "; step coarsened from %g HU to fit", step);
        }
        return 0;
    case RP_DTYPE_INT16:
        if (try_integer(&s, RP_NII_INT16, o))
            return 0;
        if (hu_known) {
            if (!try_hu(&s, hu_scale, hu_offset, step, 0, o)) {
                double st = step;
                while (!try_hu(&s, hu_scale, hu_offset, st, 0, o))
                    st *= 2;
                snprintf(o->why + strlen(o->why), sizeof o->why - strlen(o->why),
                         "; step coarsened from %g HU to fit", step);
            }
            return 0;
        }
        range_map(&s, RP_NII_INT16, o);
        return 0;
    default: /* auto */
        if (try_integer(&s, RP_NII_UINT8, o) || try_integer(&s, RP_NII_INT16, o))
            return 0;
        if (hu_known && try_hu(&s, hu_scale, hu_offset, step, 0, o))
            return 0;
        set_float(o, hu_known ? "float32: the HU range does not fit int16 at the HU step"
                              : "float32: values are neither integers nor linear in HU");
        return 0;
    }
}

int rp_nifti_write_volume_store(const char *path, const rp_volume *v, const rp_nifti_store *st,
                                const rp_nifti_opts *o, char *err, size_t errlen)
{
    int dim[4] = {v->dim[0], v->dim[1], v->dim[2], v->dim[3]};
    if (st->datatype == RP_NII_FLOAT32)
        return rp_nifti_write_volume(path, v, o, err, errlen);
    return rp_nifti_write_converted(path, dim, st->datatype, v->data, st->a, st->b, v->affine,
                                    st->scl_slope, st->scl_inter, o, err, errlen);
}
