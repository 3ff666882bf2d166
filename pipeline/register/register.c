/*
 * pipeline/register/register.c — the multi-resolution driver: masks, centre, pyramid levels,
 * sample sets, the regular-step gradient ascent, and the result (contract in register.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "pipeline/register/register_internal.h"

#define MOD "register"
#define RESTARTS 3 /* restarts per level, each with half the previous first step */

void rp_reg_defaults(rp_reg_params *p)
{
    memset(p, 0, sizeof *p);
    p->dof = 6;
    p->levels = 3;
    p->bins = 32;
    p->max_samples = 100000;
    p->max_iterations = 200;
    p->initial_step_mm = 2.0;
    p->min_step_mm = 0.005;
    p->seed = 1;
}

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void voxel_world(const double A[4][4], double i, double j, double k, double w[3])
{
    for (int r = 0; r < 3; r++)
        w[r] = A[r][0] * i + A[r][1] * j + A[r][2] * k + A[r][3];
}

static int w2i_of(const rp_volume *v, double w2i[3][4])
{
    double inv[4][4];
    if (rp_mat4_invert(v->affine, inv) != 0)
        return RP_EINVAL;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            w2i[r][c] = inv[r][c];
    return 0;
}

static int dims_ok(const rp_volume *v)
{
    return v && v->data && v->dim[0] >= 4 && v->dim[1] >= 4 && v->dim[2] >= 4;
}

/* Trilinear value of channel 0 at a continuous index inside the volume. */
static float trilinear(const rp_volume *v, double x, double y, double z)
{
    const int nx = v->dim[0], ny = v->dim[1], nz = v->dim[2];
    int x0 = (int)x, y0 = (int)y, z0 = (int)z;
    x0 = x0 > nx - 2 ? (nx > 1 ? nx - 2 : 0) : x0;
    y0 = y0 > ny - 2 ? (ny > 1 ? ny - 2 : 0) : y0;
    z0 = z0 > nz - 2 ? (nz > 1 ? nz - 2 : 0) : z0;
    const double fx = nx > 1 ? x - x0 : 0, fy = ny > 1 ? y - y0 : 0, fz = nz > 1 ? z - z0 : 0;
    const size_t dy = ny > 1 ? (size_t)nx : 0, dz = nz > 1 ? (size_t)nx * ny : 0;
    const int dx = nx > 1;
    const float *p = v->data + x0 + (size_t)nx * (y0 + (size_t)ny * z0);
    double c00 = p[0] + fx * (p[dx] - p[0]), c10 = p[dy] + fx * (p[dy + dx] - p[dy]);
    double c01 = p[dz] + fx * (p[dz + dx] - p[dz]);
    double c11 = p[dz + dy] + fx * (p[dz + dy + dx] - p[dz + dy]);
    double c0 = c00 + fy * (c10 - c00), c1 = c01 + fy * (c11 - c01);
    return (float)(c0 + fz * (c1 - c0));
}

static void samples_free(reg_samples *s)
{
    free(s->xyz);
    free(s->fbin);
    memset(s, 0, sizeof *s);
}

/* Samples of one level: voxel centres of `mask` on fix's grid (a seeded subset of about
 * max_samples when there are more), coordinates relative to c, fixed bins over the 0.1-99.9th
 * percentile range of the sampled values. */
static int build_samples(const rp_volume *fix, const uint8_t *mask, const double c[3],
                         size_t max_samples, uint64_t seed, int bins, reg_samples *s)
{
    memset(s, 0, sizeof *s);
    const int nx = fix->dim[0], ny = fix->dim[1], nz = fix->dim[2];
    const size_t n = (size_t)nx * ny * nz;
    size_t cnt = 0;
    for (size_t i = 0; i < n; i++)
        cnt += mask[i] != 0;
    if (cnt == 0)
        return RP_EINVAL;
    /* keep voxel i when its hash falls under the fraction: deterministic, spread evenly */
    const uint64_t lim = max_samples && cnt > max_samples
                             ? (uint64_t)((double)max_samples / (double)cnt * 18446744073709551615.0)
                             : UINT64_MAX;
    size_t cap = max_samples && cnt > max_samples ? max_samples + max_samples / 8 + 1024 : cnt;
    s->xyz = malloc(cap * 3 * sizeof *s->xyz);
    s->fbin = malloc(cap);
    float *val = calloc(cap, sizeof *val);
    if (!s->xyz || !s->fbin || !val) {
        free(val);
        samples_free(s);
        return RP_ENOMEM;
    }
    size_t k = 0;
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                size_t i = x + (size_t)nx * (y + (size_t)ny * z);
                if (!mask[i] || (lim != UINT64_MAX && mix64(seed ^ (uint64_t)i) > lim))
                    continue;
                if (k == cap)
                    break;
                /* a point jittered inside the voxel (up to half a voxel per axis): samples on
                 * the voxel centres make MI bumpy at sub-voxel shifts (interpolation
                 * artefacts); the fixed value is interpolated there too */
                const uint64_t h = mix64(seed * 0x2545f4914f6cdd1dULL ^ (uint64_t)i);
                double j[3];
                for (int a = 0; a < 3; a++)
                    j[a] = ((double)((h >> (21 * a)) & 0x1fffff) / 2097152.0 - 0.5);
                double fx = x + (nx > 1 ? j[0] : 0), fy = y + (ny > 1 ? j[1] : 0),
                       fz = z + (nz > 1 ? j[2] : 0);
                fx = fx < 0 ? 0 : fx > nx - 1 ? nx - 1 : fx;
                fy = fy < 0 ? 0 : fy > ny - 1 ? ny - 1 : fy;
                fz = fz < 0 ? 0 : fz > nz - 1 ? nz - 1 : fz;
                double w[3];
                voxel_world(fix->affine, fx, fy, fz, w);
                s->xyz[3 * k] = (float)(w[0] - c[0]);
                s->xyz[3 * k + 1] = (float)(w[1] - c[1]);
                s->xyz[3 * k + 2] = (float)(w[2] - c[2]);
                val[k++] = trilinear(fix, fx, fy, fz);
            }
    s->n = k;
    s->bins = bins;
    double lo, hi;
    rp_reg_range(val, NULL, k, 0.1, 99.9, &lo, &hi);
    double sc = hi > lo ? bins / (hi - lo) : 0;
    for (size_t i = 0; i < k; i++) {
        int b = (int)floor((val[i] - lo) * sc);
        s->fbin[i] = (uint8_t)(b < 0 ? 0 : b >= bins ? bins - 1 : b);
    }
    free(val);
    return k < 64 ? RP_EINVAL : 0;
}

static int moving_of(const rp_volume *mv, reg_moving *m)
{
    m->data = mv->data;
    memcpy(m->dim, mv->dim, sizeof m->dim);
    size_t n = rp_volume_nvox(mv);
    rp_reg_range(mv->data, NULL, n, 0.1, 99.9, &m->lo, &m->hi);
    if (!(m->hi > m->lo))
        m->hi = m->lo + 1;
    return w2i_of(mv, m->w2i);
}

/* Metric-ready form of a 4x4 world transform for samples given relative to c:
 * v = W·(T_lin·(x̃ + c) + T_t) + w0. */
static void xform_of_matrix(const double T[4][4], const double c[3], const double w2i[3][4],
                            reg_xform *x)
{
    memset(x, 0, sizeof *x);
    double y[3];
    for (int k = 0; k < 3; k++)
        y[k] = T[k][3] + T[k][0] * c[0] + T[k][1] * c[1] + T[k][2] * c[2];
    for (int i = 0; i < 3; i++) {
        x->o[i] = w2i[i][3];
        for (int k = 0; k < 3; k++)
            x->o[i] += w2i[i][k] * y[k];
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 3; k++)
                x->L[i][j] += w2i[i][k] * T[k][j];
    }
}

/* The fixed mask at full resolution: given (copied) or Otsu of the volume dilated by 2. */
static uint8_t *full_mask(const rp_volume *fixed, const rp_mask *fm, char *err, size_t errlen)
{
    const size_t n = rp_volume_nvox(fixed);
    uint8_t *m = malloc(n);
    if (!m)
        return NULL;
    if (fm) {
        if (memcmp(fm->dim, fixed->dim, sizeof fm->dim) != 0) {
            snprintf(err, errlen, "register: the fixed mask is not on the fixed volume's grid");
            free(m);
            return NULL;
        }
        for (size_t i = 0; i < n; i++)
            m[i] = fm->data[i] != 0;
        return m;
    }
    double t = rp_reg_otsu(fixed->data, n);
    for (size_t i = 0; i < n; i++)
        m[i] = fixed->data[i] > t;
    if (rp_reg_dilate(m, fixed->dim, 2) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

typedef struct opt_state {
    double prm[REG_NPARAM_MAX];
    double scale[REG_NPARAM_MAX];
    int np;
    double center[3];
} opt_state;

/* Regular-step gradient ascent on one level; returns iterations used or RP_E*. */
static int optimise_level(const reg_samples *s, const reg_moving *m, opt_state *st, double step,
                          double min_step, int max_it, reg_work *w)
{
    double gprev[REG_NPARAM_MAX] = {0};
    int it = 0;
    for (; it < max_it; it++) {
        reg_xform x;
        rp_reg_xform(st->prm, st->np, st->center, m->w2i, &x, NULL);
        double mi, g[REG_NPARAM_MAX];
        int rc = rp_reg_mattes(s, m, &x, w, &mi, g, NULL);
        if (rc)
            return rc;
        double gu[REG_NPARAM_MAX], norm = 0, dot = 0;
        for (int p = 0; p < st->np; p++) {
            gu[p] = g[p] / st->scale[p];
            norm += gu[p] * gu[p];
            dot += gu[p] * gprev[p];
        }
        norm = sqrt(norm);
        if (!(norm > 0))
            break;
        if (it > 0 && dot < 0)
            step *= 0.5;
        if (step < min_step)
            break;
        for (int p = 0; p < st->np; p++) {
            st->prm[p] += step * gu[p] / norm / st->scale[p];
            gprev[p] = gu[p];
        }
    }
    return it;
}

static int mi_at(const reg_samples *s, const reg_moving *m, const double *prm, int np,
                 const double c[3], reg_work *w, double *mi)
{
    reg_xform x;
    rp_reg_xform(prm, np, c, m->w2i, &x, NULL);
    return rp_reg_mattes(s, m, &x, w, mi, NULL, NULL);
}

/* Rotation centre: centroid of the fixed mask; parameter scales: its RMS radius. */
static int centre_and_scales(const rp_volume *fixed, const uint8_t *mask, opt_state *st,
                             char *err, size_t errlen)
{
    double sum[3] = {0}, cnt = 0;
    const int nx = fixed->dim[0], ny = fixed->dim[1], nz = fixed->dim[2];
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++)
                if (mask[x + (size_t)nx * (y + (size_t)ny * z)]) {
                    sum[0] += x;
                    sum[1] += y;
                    sum[2] += z;
                    cnt++;
                }
    if (cnt < 64) {
        snprintf(err, errlen, "register: the fixed foreground has %.0f voxels (need 64)", cnt);
        return RP_EINVAL;
    }
    voxel_world(fixed->affine, sum[0] / cnt, sum[1] / cnt, sum[2] / cnt, st->center);
    double r2 = 0;
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++)
                if (mask[x + (size_t)nx * (y + (size_t)ny * z)]) {
                    double w[3];
                    voxel_world(fixed->affine, x, y, z, w);
                    for (int r = 0; r < 3; r++)
                        r2 += (w[r] - st->center[r]) * (w[r] - st->center[r]);
                }
    const double radius = fmax(sqrt(r2 / cnt), 1.0);
    for (int k = 0; k < 3; k++) {
        st->scale[k] = radius;
        st->scale[3 + k] = 1;
        st->scale[6 + k] = radius;
        st->prm[6 + k] = 1;
    }
    return 0;
}

/* One level's ascent, then restarts with half the first step while they still move tissue:
 * in a narrow valley the step halves on every zig-zag and stops short along the valley floor.
 * Returns the iterations or RP_E*. */
static int optimise_restarts(const reg_samples *s, const reg_moving *m, opt_state *st,
                             double step, double min_step, int max_it, reg_work *w)
{
    int total = optimise_level(s, m, st, step, min_step, max_it, w);
    for (int rs = 0; rs < RESTARTS && total >= 0; rs++) {
        double before[REG_NPARAM_MAX];
        memcpy(before, st->prm, sizeof before);
        step *= 0.5;
        int it = optimise_level(s, m, st, step, min_step, max_it, w);
        if (it < 0)
            return it;
        total += it;
        double moved = 0;
        for (int q = 0; q < st->np; q++)
            moved = fmax(moved, fabs(st->prm[q] - before[q]) * st->scale[q]);
        if (moved < min_step * 4)
            break;
    }
    return total;
}

/* After the finest level: MI at the result (the identity when that is better) and what moved
 * (displacement of the samples). */
static int finish(const reg_samples *s, const reg_moving *m, opt_state *st, reg_work *w,
                  rp_reg_result *res)
{
    int rc = mi_at(s, m, st->prm, st->np, st->center, w, &res->mi_final);
    if (rc)
        return rc;
    if (res->mi_final < res->mi_initial) {
        RP_WARN(MOD, "rigid mi=%.4f below mi_identity=%.4f: identity kept", res->mi_final,
                res->mi_initial);
        for (int k = 0; k < 3; k++) {
            st->prm[k] = st->prm[3 + k] = 0;
            st->prm[6 + k] = 1;
        }
        res->mi_final = res->mi_initial;
        res->kept_identity = 1;
    }
    double T[4][4];
    reg_xform x;
    rp_reg_xform(st->prm, st->np, st->center, m->w2i, &x, T);
    double mx = 0, ss = 0;
    for (size_t i = 0; i < s->n; i++) {
        double q[3] = {s->xyz[3 * i] + st->center[0], s->xyz[3 * i + 1] + st->center[1],
                       s->xyz[3 * i + 2] + st->center[2]};
        double d2 = 0;
        for (int r = 0; r < 3; r++) {
            double y = T[r][0] * q[0] + T[r][1] * q[1] + T[r][2] * q[2] + T[r][3];
            d2 += (y - q[r]) * (y - q[r]);
        }
        mx = fmax(mx, d2);
        ss += d2;
    }
    res->max_displacement_mm = sqrt(mx);
    res->rms_displacement_mm = sqrt(ss / (double)s->n);
    return 0;
}

/* Pyramid level L (0 = coarsest): shrink both volumes, draw the samples, optimise. */
static int run_level(const rp_volume *fixed, const uint8_t *mask, const rp_volume *moving,
                     const rp_reg_params *p, int L, opt_state *st, reg_work *w,
                     rp_reg_result *res, char *err, size_t errlen)
{
    const int shrink = 1 << (p->levels - 1 - L), max_shrink = 1 << (p->levels - 1);
    const double min_sp = fmin(fixed->spacing[0], fmin(fixed->spacing[1], fixed->spacing[2]));
    int ff[3], fm[3], md[3], rc = 0;
    rp_reg_factors(fixed->dim, fixed->spacing, shrink * min_sp, ff);
    rp_reg_factors(moving->dim, moving->spacing, shrink * min_sp, fm);
    rp_volume *fl = NULL, *ml = NULL;
    uint8_t *mk = NULL;
    reg_samples s = {0};
    reg_moving m;
    /* a level at full resolution reads the inputs themselves */
    const rp_volume *fuse = fixed, *muse = moving;
    const uint8_t *kuse = mask;
    if (ff[0] > 1 || ff[1] > 1 || ff[2] > 1) {
        if ((rc = rp_reg_shrink(fixed, ff, &fl)) != 0)
            goto out;
        if (!(mk = rp_reg_shrink_mask(mask, fixed->dim, ff, md))) {
            rc = RP_ENOMEM;
            goto out;
        }
        fuse = fl;
        kuse = mk;
    }
    if (fm[0] > 1 || fm[1] > 1 || fm[2] > 1) {
        if ((rc = rp_reg_shrink(moving, fm, &ml)) != 0)
            goto out;
        muse = ml;
    }
    if ((rc = build_samples(fuse, kuse, st->center, p->max_samples, p->seed + (uint64_t)L * 7919,
                            p->bins, &s)) != 0) {
        if (rc == RP_EINVAL)
            snprintf(err, errlen, "register: too few foreground samples at level %d", L);
        goto out;
    }
    if ((rc = moving_of(muse, &m)) != 0)
        goto out;
    res->samples[L] = s.n;
    const int finest = L == p->levels - 1;
    if (finest) {
        const double id[REG_NPARAM_MAX] = {0, 0, 0, 0, 0, 0, 1, 1, 1};
        if ((rc = mi_at(&s, &m, id, st->np, st->center, w, &res->mi_initial)) != 0)
            goto out;
    }
    int it = optimise_restarts(&s, &m, st, p->initial_step_mm * shrink / max_shrink,
                               p->min_step_mm * shrink, p->max_iterations, w);
    if (it < 0) {
        rc = it;
        goto out;
    }
    res->iterations[L] = it;
    if (finest)
        rc = finish(&s, &m, st, w, res);
out:
    if (rc == RP_EGEOM && !err[0])
        snprintf(err, errlen,
                 "register: the volumes do not overlap (fewer than 64 of the fixed samples fall "
                 "inside the moving volume at level %d)",
                 L);
    samples_free(&s);
    free(mk);
    rp_volume_free(fl);
    rp_volume_free(ml);
    return rc;
}

int rp_register_rigid(const rp_volume *fixed, const rp_mask *fixed_mask, const rp_volume *moving,
                      const rp_reg_params *pp, rp_reg_result *res, char *err, size_t errlen)
{
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    rp_reg_params p;
    if (pp)
        p = *pp;
    else
        rp_reg_defaults(&p);
    if (!fixed || !moving || !res)
        return RP_EINVAL;
    memset(res, 0, sizeof *res);
    if (!dims_ok(fixed) || !dims_ok(moving)) {
        snprintf(err, errlen, "register: both volumes need at least 4 voxels along every axis");
        return RP_EINVAL;
    }
    if ((p.dof != 6 && p.dof != 9) || p.levels < 1 || p.levels > RP_REG_MAX_LEVELS ||
        p.bins < 8 || p.bins > 256 || p.max_iterations < 0 || !(p.initial_step_mm > 0) ||
        !(p.min_step_mm > 0)) {
        snprintf(err, errlen, "register: invalid parameters (dof 6|9, levels 1..%d, bins 8..256)",
                 RP_REG_MAX_LEVELS);
        return RP_EINVAL;
    }
    const double t0 = now_s();
    uint8_t *mask = full_mask(fixed, fixed_mask, err, errlen);
    if (!mask)
        return err[0] ? RP_EINVAL : RP_ENOMEM;
    opt_state st;
    memset(&st, 0, sizeof st);
    st.np = p.dof;
    int rc = centre_and_scales(fixed, mask, &st, err, errlen);
    reg_work w = {0};
    for (int L = 0; L < p.levels && rc == 0; L++)
        rc = run_level(fixed, mask, moving, &p, L, &st, &w, res, err, errlen);
    rp_reg_work_free(&w);
    free(mask);
    if (rc) {
        if (!err[0])
            snprintf(err, errlen, "register: %s", rp_strerror(rc));
        return rc;
    }
    res->levels = p.levels;
    for (int k = 0; k < 3; k++) {
        res->rotation_deg[k] = st.prm[k] * 180.0 / M_PI;
        res->translation_mm[k] = st.prm[3 + k];
        res->scale[k] = st.np >= 9 ? st.prm[6 + k] : 1.0;
        res->center_mm[k] = st.center[k];
    }
    double w2i[3][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}};
    reg_xform x;
    rp_reg_xform(st.prm, st.np, st.center, w2i, &x, res->matrix);
    res->seconds = now_s() - t0;
    RP_INFO(MOD,
            "rigid dof=%d rot_deg=%.3f,%.3f,%.3f trans_mm=%.3f,%.3f,%.3f mi=%.4f->%.4f "
            "max_moved_mm=%.2f s=%.2f",
            p.dof, res->rotation_deg[0], res->rotation_deg[1], res->rotation_deg[2],
            res->translation_mm[0], res->translation_mm[1], res->translation_mm[2],
            res->mi_initial, res->mi_final, res->max_displacement_mm, res->seconds);
    return 0;
}

int rp_register_mi(const rp_volume *fixed, const rp_mask *fixed_mask, const rp_volume *moving,
                   const double T[4][4], int bins, double *mi)
{
    if (!dims_ok(fixed) || !dims_ok(moving) || !T || !mi || bins < 8 || bins > 256)
        return RP_EINVAL;
    const size_t n = rp_volume_nvox(fixed);
    uint8_t *mask = malloc(n);
    if (!mask)
        return RP_ENOMEM;
    if (fixed_mask && memcmp(fixed_mask->dim, fixed->dim, sizeof fixed_mask->dim) == 0)
        for (size_t i = 0; i < n; i++)
            mask[i] = fixed_mask->data[i] != 0;
    else
        memset(mask, 1, n);
    const double c[3] = {0, 0, 0};
    reg_samples s;
    reg_moving m;
    reg_work w = {0};
    int rc = build_samples(fixed, mask, c, 0, 0, bins, &s);
    free(mask);
    if (rc)
        return rc;
    if ((rc = moving_of(moving, &m)) == 0) {
        reg_xform x;
        xform_of_matrix(T, c, m.w2i, &x);
        rc = rp_reg_mattes(&s, &m, &x, &w, mi, NULL, NULL);
    }
    rp_reg_work_free(&w);
    samples_free(&s);
    return rc;
}
