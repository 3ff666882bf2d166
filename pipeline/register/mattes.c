/*
 * pipeline/register/mattes.c — Mattes mutual information and its analytic gradient over a
 * fixed sample set (contract in register.h).
 *
 * Two passes. Pass 1 maps every sample into the moving volume, interpolates the value and the
 * gradient of the trilinear interpolant, stores the moving Parzen position and
 * d(value)/d(parameter), and adds the sample to a per-block joint histogram (box window on the
 * fixed bin, cubic B-spline on the moving bin). The blocks are summed in order, the joint PDF
 * normalised, MI = Σ p log(p / (pf pm)). Pass 2 uses the identity
 *     dMI/dμ = (1/N) Σ_i Σ_κ ∂β3(κ − κ_i)/∂μ · log(p(ι_i, κ) / pm(κ))
 * (the marginal terms sum to zero), so each sample needs only four table look-ups and one
 * multiply-add per parameter: no bins × bins × parameters derivative histogram.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/register/register_internal.h"

void rp_reg_work_free(reg_work *w)
{
    free(w->kpos);
    free(w->dm);
    memset(w, 0, sizeof *w);
}

static int work_reserve(reg_work *w, size_t n, int np)
{
    if (w->cap >= n && w->np >= np)
        return 0;
    float *k = realloc(w->kpos, n * sizeof *k);
    if (!k)
        return RP_ENOMEM;
    w->kpos = k;
    float *d = realloc(w->dm, n * (size_t)np * sizeof *d);
    if (!d)
        return RP_ENOMEM;
    w->dm = d;
    w->cap = n;
    w->np = np;
    return 0;
}

/* Trilinear value and index-space gradient at (x, y, z), inside [0, n-1] on every axis
 * (axes of one voxel contribute a zero derivative). */
static inline float interp_grad(const float *d, const int dim[3], double x, double y, double z,
                                double g[3])
{
    const int nx = dim[0], ny = dim[1], nz = dim[2];
    int x0 = (int)x, y0 = (int)y, z0 = (int)z;
    if (x0 > nx - 2)
        x0 = nx - 2;
    if (y0 > ny - 2)
        y0 = ny - 2;
    if (z0 > nz - 2)
        z0 = nz - 2;
    const double fx = x - x0, fy = y - y0, fz = z - z0;
    const size_t sy = (size_t)nx, sz = (size_t)nx * ny;
    const float *p = d + x0 + sy * y0 + sz * z0;
    const double c000 = p[0], c100 = p[1], c010 = p[sy], c110 = p[sy + 1];
    const double c001 = p[sz], c101 = p[sz + 1], c011 = p[sz + sy], c111 = p[sz + sy + 1];
    const double ax0 = c000 + fx * (c100 - c000), ax1 = c010 + fx * (c110 - c010);
    const double ax2 = c001 + fx * (c101 - c001), ax3 = c011 + fx * (c111 - c011);
    const double by0 = ax0 + fy * (ax1 - ax0), by1 = ax2 + fy * (ax3 - ax2);
    const double dx00 = c100 - c000, dx10 = c110 - c010, dx01 = c101 - c001, dx11 = c111 - c011;
    const double dxa = dx00 + fy * (dx10 - dx00), dxb = dx01 + fy * (dx11 - dx01);
    g[0] = dxa + fz * (dxb - dxa);
    g[1] = (ax1 - ax0) + fz * ((ax3 - ax2) - (ax1 - ax0));
    g[2] = by1 - by0;
    return (float)(by0 + fz * (by1 - by0));
}

/* Cubic B-spline Parzen weights of the four bins k0-1..k0+2 at fraction t, and d/dt. */
static inline void bspline_w(double t, double w[4], double dw[4])
{
    const double t2 = t * t, t3 = t2 * t, u = 1 - t;
    w[0] = u * u * u / 6;
    w[1] = (4 - 6 * t2 + 3 * t3) / 6;
    w[2] = (1 + 3 * t + 3 * t2 - 3 * t3) / 6;
    w[3] = t3 / 6;
    if (dw) {
        dw[0] = -u * u / 2;
        dw[1] = -2 * t + 1.5 * t2;
        dw[2] = 0.5 + t - 1.5 * t2;
        dw[3] = t2 / 2;
    }
}

int rp_reg_mattes(const reg_samples *s, const reg_moving *m, const reg_xform *x, reg_work *w,
                  double *mi, double *grad, size_t *n_valid)
{
    const int B = s->bins, np = x->np;
    const size_t n = s->n;
    if (B < 8 || B > 256 || np > REG_NPARAM_MAX || n == 0)
        return RP_EINVAL;
    int rc = work_reserve(w, n, grad ? np : 1);
    if (rc)
        return rc;
    const double xmax = m->dim[0] - 1, ymax = m->dim[1] - 1, zmax = m->dim[2] - 1;
    /* moving Parzen position: 2 + (v - lo) * kscale, in [2, B-3] */
    const double kscale = (B - 5) / (m->hi - m->lo > 0 ? m->hi - m->lo : 1.0);
    const size_t BB = (size_t)B * B;
    double *hist = calloc(REG_NBLOCKS * BB, sizeof *hist);
    size_t cnt[REG_NBLOCKS] = {0};
    if (!hist)
        return RP_ENOMEM;
    const size_t per = (n + REG_NBLOCKS - 1) / REG_NBLOCKS;
#pragma omp parallel for schedule(dynamic, 1)
    for (int b = 0; b < REG_NBLOCKS; b++) {
        double *H = hist + (size_t)b * BB;
        const size_t i0 = (size_t)b * per, i1 = i0 + per < n ? i0 + per : n;
        size_t c = 0;
        for (size_t i = i0; i < i1; i++) {
            const double px = s->xyz[3 * i], py = s->xyz[3 * i + 1], pz = s->xyz[3 * i + 2];
            const double vx = x->L[0][0] * px + x->L[0][1] * py + x->L[0][2] * pz + x->o[0];
            const double vy = x->L[1][0] * px + x->L[1][1] * py + x->L[1][2] * pz + x->o[1];
            const double vz = x->L[2][0] * px + x->L[2][1] * py + x->L[2][2] * pz + x->o[2];
            if (!(vx >= 0 && vy >= 0 && vz >= 0 && vx <= xmax && vy <= ymax && vz <= zmax)) {
                w->kpos[i] = -1;
                continue;
            }
            double g[3];
            double v = interp_grad(m->data, m->dim, vx, vy, vz, g);
            int clamped = 0;
            if (v < m->lo) {
                v = m->lo;
                clamped = 1;
            } else if (v > m->hi) {
                v = m->hi;
                clamped = 1;
            }
            const double kp = 2 + (v - m->lo) * kscale;
            w->kpos[i] = (float)kp;
            int k0 = (int)kp;
            if (k0 > B - 3)
                k0 = B - 3;
            double wt[4];
            bspline_w(kp - k0, wt, NULL);
            double *row = H + (size_t)s->fbin[i] * B + (k0 - 1);
            row[0] += wt[0];
            row[1] += wt[1];
            row[2] += wt[2];
            row[3] += wt[3];
            c++;
            if (!grad)
                continue;
            float *dm = w->dm + i * (size_t)np;
            if (clamped) {
                for (int p = 0; p < np; p++)
                    dm[p] = 0;
                continue;
            }
            for (int p = 0; p < np; p++) {
                const double(*D)[3] = x->D[p];
                const double dy0 = D[0][0] * px + D[0][1] * py + D[0][2] * pz + x->d[p][0];
                const double dy1 = D[1][0] * px + D[1][1] * py + D[1][2] * pz + x->d[p][1];
                const double dy2 = D[2][0] * px + D[2][1] * py + D[2][2] * pz + x->d[p][2];
                dm[p] = (float)(g[0] * dy0 + g[1] * dy1 + g[2] * dy2);
            }
        }
        cnt[b] = c;
    }
    size_t N = 0;
    for (int b = 0; b < REG_NBLOCKS; b++)
        N += cnt[b];
    for (int b = 1; b < REG_NBLOCKS; b++) {
        const double *H = hist + (size_t)b * BB;
        for (size_t k = 0; k < BB; k++)
            hist[k] += H[k];
    }
    if (n_valid)
        *n_valid = N;
    if (N < 64) {
        free(hist);
        return RP_EGEOM;
    }
    double *P = hist, pf[256] = {0}, pm[256] = {0};
    const double inv = 1.0 / (double)N;
    for (int a = 0; a < B; a++)
        for (int k = 0; k < B; k++) {
            double v = P[(size_t)a * B + k] * inv;
            P[(size_t)a * B + k] = v;
            pf[a] += v;
            pm[k] += v;
        }
    double sum = 0;
    for (int a = 0; a < B; a++)
        for (int k = 0; k < B; k++) {
            double v = P[(size_t)a * B + k];
            if (v > 1e-16 && pf[a] > 0 && pm[k] > 0)
                sum += v * log(v / (pf[a] * pm[k]));
        }
    *mi = sum;
    if (grad) {
        /* L(ι, κ) = log(p / pm), 0 where p is zero (no sample weight there) */
        for (int a = 0; a < B; a++)
            for (int k = 0; k < B; k++) {
                double v = P[(size_t)a * B + k];
                P[(size_t)a * B + k] = v > 1e-16 && pm[k] > 0 ? log(v / pm[k]) : 0;
            }
        double part[REG_NBLOCKS][REG_NPARAM_MAX];
        memset(part, 0, sizeof part);
#pragma omp parallel for schedule(dynamic, 1)
        for (int b = 0; b < REG_NBLOCKS; b++) {
            const size_t i0 = (size_t)b * per, i1 = i0 + per < n ? i0 + per : n;
            double acc[REG_NPARAM_MAX] = {0};
            for (size_t i = i0; i < i1; i++) {
                const double kp = w->kpos[i];
                if (kp < 0)
                    continue;
                int k0 = (int)kp;
                if (k0 > B - 3)
                    k0 = B - 3;
                double wt[4], dw[4];
                bspline_w(kp - k0, wt, dw);
                const double *Lr = P + (size_t)s->fbin[i] * B + (k0 - 1);
                const double si = kscale * (dw[0] * Lr[0] + dw[1] * Lr[1] + dw[2] * Lr[2] +
                                            dw[3] * Lr[3]);
                const float *dm = w->dm + i * (size_t)np;
                for (int p = 0; p < np; p++)
                    acc[p] += si * dm[p];
            }
            for (int p = 0; p < np; p++)
                part[b][p] = acc[p];
        }
        for (int p = 0; p < np; p++) {
            double g = 0;
            for (int b = 0; b < REG_NBLOCKS; b++)
                g += part[b][p];
            grad[p] = g * inv;
        }
    }
    free(hist);
    return 0;
}
