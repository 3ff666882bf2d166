/*
 * pipeline/volume/filter.c — smoothing filters (Gaussian, median, Perona-Malik diffusion)
 * and the percentile every normalisation and display window uses (contract in volume.h).
 * The Gaussian and median follow scipy.ndimage (mode 'reflect') so reference tests compare
 * against it directly.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/volume/volume.h"

static inline long reflect_index(long i, long n)
{
    long p = 2 * n;
    i %= p;
    if (i < 0)
        i += p;
    return i >= n ? p - 1 - i : i;
}

/* separable Gaussian (scipy.ndimage.gaussian_filter, mode 'reflect', truncate 4) */
int rp_gaussian_3d(float *data, const int dim[3], const double sigma[3])
{
    for (int axis = 0; axis < 3; axis++) {
        if (!(sigma[axis] > 0) || dim[axis] == 1)
            continue;
        int R = (int)(4.0 * sigma[axis] + 0.5);
        double *w = malloc((size_t)(2 * R + 1) * sizeof *w);
        if (!w)
            return RP_ENOMEM;
        double s = 0;
        for (int k = -R; k <= R; k++)
            s += w[k + R] = exp(-0.5 * k * k / (sigma[axis] * sigma[axis]));
        for (int k = 0; k <= 2 * R; k++)
            w[k] /= s;
        size_t inner = 1, outer = 1;
        for (int a = 0; a < axis; a++)
            inner *= (size_t)dim[a];
        for (int a = axis + 1; a < 3; a++)
            outer *= (size_t)dim[a];
        const int n = dim[axis];
        const size_t CW = 256, nch = (inner + CW - 1) / CW;
        int fail = 0;
#pragma omp parallel
        {
            float *tmp = malloc((size_t)n * CW * sizeof *tmp);
            double *acc = malloc(CW * sizeof *acc);
            if (!tmp || !acc) {
#pragma omp atomic write
                fail = 1;
            }
#pragma omp for schedule(dynamic, 1)
            for (size_t j = 0; j < outer * nch; j++) {
                if (!tmp || !acc)
                    continue;
                size_t o = j / nch, c0 = (j % nch) * CW;
                int cw = (int)(inner - c0 < CW ? inner - c0 : CW);
                float *base = data + o * (size_t)n * inner + c0;
                for (int k = 0; k < n; k++)
                    memcpy(tmp + (size_t)k * cw, base + (size_t)k * inner,
                           (size_t)cw * sizeof(float));
                for (int i = 0; i < n; i++) {
                    for (int c = 0; c < cw; c++)
                        acc[c] = 0;
                    for (int k = -R; k <= R; k++) {
                        const float *row = tmp + (size_t)reflect_index(i + k, n) * cw;
                        const double wk = w[k + R];
#pragma omp simd
                        for (int c = 0; c < cw; c++)
                            acc[c] += wk * row[c];
                    }
                    float *d = base + (size_t)i * inner;
                    for (int c = 0; c < cw; c++)
                        d[c] = (float)acc[c];
                }
            }
            free(tmp);
            free(acc);
        }
        free(w);
        if (fail)
            return RP_ENOMEM;
    }
    return 0;
}

static int cmpf(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

int rp_median_3d(const float *src, float *dst, const int dim[3], int r)
{
    const int nx = dim[0], ny = dim[1], nz = dim[2];
    const int rz = nz > 1 ? r : 0;
    const int win = (2 * r + 1) * (2 * r + 1) * (2 * rz + 1);
    int fail = 0;
#pragma omp parallel
    {
        float *buf = malloc((size_t)win * sizeof *buf);
        if (!buf) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(static)
        for (int z = 0; z < nz; z++) {
            if (!buf)
                continue;
            for (int y = 0; y < ny; y++)
                for (int x = 0; x < nx; x++) {
                    int k = 0;
                    for (int dz = -rz; dz <= rz; dz++) {
                        long zz = reflect_index(z + dz, nz);
                        for (int dy = -r; dy <= r; dy++) {
                            long yy = reflect_index(y + dy, ny);
                            const float *row = src + ((size_t)zz * ny + yy) * nx;
                            for (int dx = -r; dx <= r; dx++)
                                buf[k++] = row[reflect_index(x + dx, nx)];
                        }
                    }
                    qsort(buf, (size_t)k, sizeof *buf, cmpf);
                    dst[((size_t)z * ny + y) * nx + x] = buf[k / 2];
                }
        }
        free(buf);
    }
    return fail ? RP_ENOMEM : 0;
}

/* Perona-Malik: I += dt * sum_6 g(dI) dI, g = exp(-(dI/kappa)^2), zero flux at the border */
int rp_diffusion_3d(float *data, const int dim[3], int iterations, double kappa)
{
    const int nx = dim[0], ny = dim[1], nz = dim[2];
    const size_t n = (size_t)nx * ny * nz, sy = (size_t)nx, sz = (size_t)nx * ny;
    float *prev = malloc(n * sizeof *prev);
    if (!prev)
        return RP_ENOMEM;
    const double dt = 1.0 / 7.0, ik2 = 1.0 / (kappa * kappa);
    for (int it = 0; it < iterations; it++) {
        memcpy(prev, data, n * sizeof *prev);
#pragma omp parallel for schedule(static)
        for (int z = 0; z < nz; z++)
            for (int y = 0; y < ny; y++)
                for (int x = 0; x < nx; x++) {
                    size_t i = (size_t)z * sz + (size_t)y * sy + x;
                    double c = prev[i], f = 0, d;
#define FLUX(cond, j)                                                                              \
    if (cond) {                                                                                    \
        d = prev[j] - c;                                                                           \
        f += exp(-d * d * ik2) * d;                                                                \
    }
                    FLUX(x > 0, i - 1)
                    FLUX(x < nx - 1, i + 1)
                    FLUX(y > 0, i - sy)
                    FLUX(y < ny - 1, i + sy)
                    FLUX(z > 0, i - sz)
                    FLUX(z < nz - 1, i + sz)
#undef FLUX
                    data[i] = (float)(c + dt * f);
                }
    }
    free(prev);
    return 0;
}

/* ---- percentile ---------------------------------------------------------------------- */

#define SWAPF(x, y)                                                                                \
    do {                                                                                           \
        float t_ = (x);                                                                            \
        (x) = (y);                                                                                 \
        (y) = t_;                                                                                  \
    } while (0)

/* k-th smallest (0-based), Numerical Recipes' select: afterwards a[0..k-1] <= a[k] <=
 * a[k+1..n-1]. */
static float select_k(float *a, size_t n, size_t k)
{
    size_t l = 0, ir = n - 1;
    for (;;) {
        if (ir <= l + 1) {
            if (ir == l + 1 && a[ir] < a[l])
                SWAPF(a[l], a[ir]);
            return a[k];
        }
        size_t mid = (l + ir) >> 1;
        SWAPF(a[mid], a[l + 1]);
        if (a[l] > a[ir])
            SWAPF(a[l], a[ir]);
        if (a[l + 1] > a[ir])
            SWAPF(a[l + 1], a[ir]);
        if (a[l] > a[l + 1])
            SWAPF(a[l], a[l + 1]);
        size_t i = l + 1, j = ir;
        float pv = a[l + 1];
        for (;;) {
            do
                i++;
            while (a[i] < pv);
            do
                j--;
            while (a[j] > pv);
            if (j < i)
                break;
            SWAPF(a[i], a[j]);
        }
        a[l + 1] = a[j];
        a[j] = pv;
        if (j >= k)
            ir = j - 1;
        if (j <= k)
            l = i;
    }
}

static float min_from(const float *a, size_t n)
{
    float m = a[0];
    for (size_t i = 1; i < n; i++)
        if (a[i] < m)
            m = a[i];
    return m;
}

double rp_percentile(const float *data, size_t n, double q)
{
    if (n == 0)
        return NAN;
    float *c = malloc(n * sizeof *c);
    if (!c)
        return NAN;
    memcpy(c, data, n * sizeof *c);
    /* numpy 'linear': position q/100*(n-1) between the two order statistics around it */
    double pos = q / 100.0 * (double)(n - 1);
    size_t k = (size_t)floor(pos);
    double t = pos - (double)k;
    double a = select_k(c, n, k);
    double r = a;
    if (t > 0 && k + 1 < n) {
        /* after selection every element above index k is >= a; the next order statistic is
         * their minimum */
        double b = min_from(c + k + 1, n - k - 1);
        r = a + (b - a) * t;
    }
    free(c);
    return r;
}
