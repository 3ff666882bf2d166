/*
 * pipeline/register/pyramid.c — the resolution pyramid (Gaussian smoothing fused with the
 * subsampling: each output voxel is a Gaussian-weighted sum centred on its block, one pass per
 * axis, so a level costs one read of the input) and the small statistics the registration
 * needs (Otsu threshold, percentiles, box dilation of a mask).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/register/register_internal.h"

#define SUBSAMPLE_MAX 65536

static inline long mirror(long i, long n)
{
    if (n == 1)
        return 0;
    long p = 2 * (n - 1);
    i %= p;
    if (i < 0)
        i += p;
    return i >= n ? p - i : i;
}

typedef struct taps {
    int n;    /* taps per output */
    int *idx; /* n_out * n */
    float *w;
} taps;

static int make_taps(taps *t, int n_in, int n_out, int f)
{
    const double sigma = f / 2.0;
    const int r = (int)ceil(3 * sigma);
    t->n = 2 * r + 2;
    t->idx = malloc((size_t)n_out * t->n * sizeof *t->idx);
    t->w = malloc((size_t)n_out * t->n * sizeof *t->w);
    if (!t->idx || !t->w)
        return RP_ENOMEM;
    for (int o = 0; o < n_out; o++) {
        const double c = o * (double)f + (f - 1) / 2.0;
        const long j0 = (long)floor(c) - r;
        double s = 0, w[64];
        for (int k = 0; k < t->n; k++) {
            double d = (double)(j0 + k) - c;
            w[k] = exp(-d * d / (2 * sigma * sigma));
            s += w[k];
        }
        for (int k = 0; k < t->n; k++) {
            t->idx[(size_t)o * t->n + k] = (int)mirror(j0 + k, n_in);
            t->w[(size_t)o * t->n + k] = (float)(w[k] / s);
        }
    }
    return 0;
}

/* One axis: in (dims d) -> out (dims d with d[axis] = n_out). */
static int axis_pass(const float *in, const int d[3], int axis, int f, int n_out, float *out)
{
    taps t = {0};
    int rc = make_taps(&t, d[axis], n_out, f);
    if (rc) {
        free(t.idx);
        free(t.w);
        return rc;
    }
    const int nx = d[0], ny = d[1], nz = d[2];
    if (axis == 0) {
#pragma omp parallel for schedule(static)
        for (long line = 0; line < (long)ny * nz; line++) {
            const float *src = in + (size_t)line * nx;
            float *dst = out + (size_t)line * n_out;
            for (int o = 0; o < n_out; o++) {
                const int *ix = t.idx + (size_t)o * t.n;
                const float *w = t.w + (size_t)o * t.n;
                double s = 0;
                for (int k = 0; k < t.n; k++)
                    s += w[k] * src[ix[k]];
                dst[o] = (float)s;
            }
        }
    } else {
        const int n_other = axis == 1 ? nz : ny;
#pragma omp parallel
        {
            double *acc = malloc((size_t)nx * sizeof *acc);
#pragma omp for schedule(static) collapse(2)
            for (int k = 0; k < n_other; k++)
                for (int o = 0; o < n_out; o++) {
                    if (!acc)
                        continue;
                    for (int x = 0; x < nx; x++)
                        acc[x] = 0;
                    for (int q = 0; q < t.n; q++) {
                        const int j = t.idx[(size_t)o * t.n + q];
                        const double w = t.w[(size_t)o * t.n + q];
                        const float *src = axis == 1 ? in + (size_t)nx * (j + (size_t)ny * k)
                                                     : in + (size_t)nx * (k + (size_t)ny * j);
#pragma omp simd
                        for (int x = 0; x < nx; x++)
                            acc[x] += w * src[x];
                    }
                    float *dst = axis == 1 ? out + (size_t)nx * (o + (size_t)n_out * k)
                                           : out + (size_t)nx * (k + (size_t)ny * o);
                    for (int x = 0; x < nx; x++)
                        dst[x] = (float)acc[x];
                }
            free(acc);
        }
    }
    free(t.idx);
    free(t.w);
    return 0;
}

int rp_reg_shrink(const rp_volume *v, const int f[3], rp_volume **out)
{
    int d[3] = {v->dim[0], v->dim[1], v->dim[2]};
    const float *cur = v->data; /* the input is read in place by the first pass */
    float *own = NULL;
    for (int a = 0; a < 3; a++) {
        if (f[a] <= 1)
            continue;
        int n_out = d[a] / f[a];
        if (n_out < 1)
            n_out = 1;
        int od[3] = {d[0], d[1], d[2]};
        od[a] = n_out;
        float *nxt = malloc((size_t)od[0] * od[1] * od[2] * sizeof *nxt);
        if (!nxt) {
            free(own);
            return RP_ENOMEM;
        }
        int rc = axis_pass(cur, d, a, f[a], n_out, nxt);
        free(own);
        if (rc) {
            free(nxt);
            return rc;
        }
        cur = own = nxt;
        memcpy(d, od, sizeof d);
    }
    if (!own) {
        size_t n0 = (size_t)d[0] * d[1] * d[2];
        if (!(own = malloc(n0 * sizeof *own)))
            return RP_ENOMEM;
        memcpy(own, v->data, n0 * sizeof *own);
    }
    rp_volume *o = rp_volume_new(d[0], d[1], d[2], 1);
    if (!o) {
        free(own);
        return RP_ENOMEM;
    }
    free(o->data); /* take the last pass's buffer */
    o->data = own;
    double S[4][4] = {{0}};
    for (int a = 0; a < 3; a++) {
        int fa = f[a] > 1 ? f[a] : 1;
        S[a][a] = fa;
        S[a][3] = (fa - 1) / 2.0;
    }
    S[3][3] = 1;
    rp_mat4_mul(v->affine, S, o->affine);
    rp_volume_update_spacing(o);
    *out = o;
    return 0;
}

uint8_t *rp_reg_shrink_mask(const uint8_t *m, const int dim[3], const int f[3], int od[3])
{
    int fa[3];
    for (int a = 0; a < 3; a++) {
        fa[a] = f[a] > 1 ? f[a] : 1;
        od[a] = dim[a] / fa[a];
        if (od[a] < 1)
            od[a] = 1;
    }
    uint8_t *o = calloc((size_t)od[0] * od[1] * od[2], 1);
    if (!o)
        return NULL;
    for (int z = 0; z < dim[2]; z++) {
        int oz = z / fa[2];
        if (oz >= od[2])
            continue;
        for (int y = 0; y < dim[1]; y++) {
            int oy = y / fa[1];
            if (oy >= od[1])
                continue;
            const uint8_t *row = m + (size_t)dim[0] * (y + (size_t)dim[1] * z);
            uint8_t *orow = o + (size_t)od[0] * (oy + (size_t)od[1] * oz);
            for (int x = 0; x < dim[0]; x++) {
                int ox = x / fa[0];
                if (row[x] && ox < od[0])
                    orow[ox] = 1;
            }
        }
    }
    return o;
}

void rp_reg_factors(const int dim[3], const double sp[3], double target_mm, int f[3])
{
    for (int a = 0; a < 3; a++) {
        int k = (int)floor(target_mm / sp[a] + 0.5);
        if (k < 1)
            k = 1;
        if (k > 16) /* the Gaussian taps of make_taps() stay under 64 */
            k = 16;
        while (k > 1 && dim[a] / k < 4)
            k--;
        f[a] = k;
    }
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Sorted subsample (finite values, where mask when given); *k values. */
static float *subsample(const float *v, const uint8_t *mask, size_t n, size_t *k)
{
    size_t cnt = 0;
    if (mask) {
        for (size_t i = 0; i < n; i++)
            cnt += mask[i] != 0;
    } else {
        cnt = n;
    }
    size_t stride = cnt > SUBSAMPLE_MAX ? (cnt + SUBSAMPLE_MAX - 1) / SUBSAMPLE_MAX : 1;
    float *s = malloc((cnt / stride + 1) * sizeof *s);
    if (!s)
        return NULL;
    size_t j = 0, seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (mask && !mask[i])
            continue;
        if (seen++ % stride == 0 && isfinite(v[i]))
            s[j++] = v[i];
    }
    qsort(s, j, sizeof *s, cmp_float);
    *k = j;
    return s;
}

static double pick(const float *s, size_t k, double q)
{
    double pos = q / 100.0 * (double)(k - 1);
    size_t i = (size_t)pos;
    double fr = pos - (double)i;
    return i + 1 < k ? s[i] + fr * (s[i + 1] - s[i]) : s[k - 1];
}

double rp_reg_percentile(const float *v, const uint8_t *mask, size_t n, double q)
{
    double lo, hi;
    rp_reg_range(v, mask, n, q, q, &lo, &hi);
    return lo;
}

void rp_reg_range(const float *v, const uint8_t *mask, size_t n, double qlo, double qhi,
                  double *lo, double *hi)
{
    size_t k = 0;
    float *s = subsample(v, mask, n, &k);
    if (!s || k == 0) {
        free(s);
        *lo = *hi = 0;
        return;
    }
    *lo = pick(s, k, qlo);
    *hi = pick(s, k, qhi);
    free(s);
}

double rp_reg_otsu(const float *v, size_t n)
{
    size_t k = 0;
    float *s = subsample(v, NULL, n, &k);
    if (!s || k < 2) {
        free(s);
        return 0;
    }
    /* histogram over [min, 99.9th percentile]: a few bright voxels do not squash it */
    const double lo = s[0], hi = s[(size_t)(0.999 * (double)(k - 1))];
    if (!(hi > lo)) {
        free(s);
        return lo;
    }
    enum { NB = 256 };
    double h[NB] = {0};
    for (size_t i = 0; i < k; i++) {
        int b = (int)((s[i] - lo) / (hi - lo) * NB);
        h[b < 0 ? 0 : b >= NB ? NB - 1 : b] += 1;
    }
    free(s);
    double tot = 0, sum = 0;
    for (int b = 0; b < NB; b++) {
        tot += h[b];
        sum += b * h[b];
    }
    double w0 = 0, s0 = 0, best = -1;
    int bt = 0;
    for (int b = 0; b < NB - 1; b++) {
        w0 += h[b];
        s0 += b * h[b];
        double w1 = tot - w0;
        if (w0 == 0 || w1 == 0)
            continue;
        double m0 = s0 / w0, m1 = (sum - s0) / w1;
        double between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if (between > best) {
            best = between;
            bt = b;
        }
    }
    return lo + (bt + 1) * (hi - lo) / NB;
}

int rp_reg_dilate(uint8_t *m, const int dim[3], int r)
{
    if (r <= 0)
        return 0;
    const size_t n = (size_t)dim[0] * dim[1] * dim[2];
    uint8_t *t = malloc(n);
    if (!t)
        return RP_ENOMEM;
    const size_t stride[3] = {1, (size_t)dim[0], (size_t)dim[0] * dim[1]};
    for (int a = 0; a < 3; a++) {
        if (dim[a] == 1)
            continue;
        memcpy(t, m, n);
        const long len = dim[a];
#pragma omp parallel for schedule(static)
        for (size_t base = 0; base < n; base++) {
            /* only line starts: index along axis a is 0 */
            if ((base / stride[a]) % (size_t)len != 0)
                continue;
            for (long i = 0; i < len; i++) {
                uint8_t v = 0;
                for (long j = i - r; j <= i + r && !v; j++)
                    if (j >= 0 && j < len)
                        v = t[base + (size_t)j * stride[a]];
                m[base + (size_t)i * stride[a]] = v;
            }
        }
    }
    free(t);
    return 0;
}
