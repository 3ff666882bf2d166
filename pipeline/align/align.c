/*
 * pipeline/align/align.c — midsagittal plane by mirror symmetry, the aligning transform, and
 * its QC picture (contract in align.h).
 *
 * Why symmetry: a head is close to mirror-symmetric about its midsagittal plane, so the plane
 * that makes the image most like its own mirror image is the midline, whatever the scanner
 * (CT or MR) and without a trained model. The search is coarse-to-fine: an exhaustive grid on a
 * 6 mm copy (robust to local optima), then pattern searches on a 2 mm copy.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/align/align.h"
#include "pipeline/register/register.h"

#define MOD "align"

void rp_align_defaults(rp_align_params *p)
{
    memset(p, 0, sizeof *p);
    p->max_deg = 30;
    p->min_score = 0.5;
    p->hu_scale = 1;
}

/* ---- grid frame ---------------------------------------------------------------------------- */

typedef struct frame {
    double u[3], v[3], w[3]; /* orthonormal, towards R, A, S */
    int ax[3];               /* voxel axis of u, v, w */
} frame;

static void grid_frame(const double A[4][4], frame *f)
{
    int used[3] = {0};
    double col[3][3];
    for (int a = 0; a < 3; a++) {
        double n = sqrt(A[0][a] * A[0][a] + A[1][a] * A[1][a] + A[2][a] * A[2][a]);
        for (int r = 0; r < 3; r++)
            col[a][r] = n > 0 ? A[r][a] / n : (r == a);
    }
    for (int r = 0; r < 3; r++) {
        int best = 0;
        double bv = -1;
        for (int a = 0; a < 3; a++)
            if (!used[a] && fabs(col[a][r]) > bv) {
                bv = fabs(col[a][r]);
                best = a;
            }
        used[best] = 1;
        f->ax[r] = best;
    }
    double *e[3] = {f->u, f->v, f->w};
    for (int r = 0; r < 3; r++) {
        double s = col[f->ax[r]][r] < 0 ? -1 : 1;
        for (int k = 0; k < 3; k++)
            e[r][k] = s * col[f->ax[r]][k];
    }
    /* Gram-Schmidt: u kept, v made orthogonal, w = u x v */
    double d = f->u[0] * f->v[0] + f->u[1] * f->v[1] + f->u[2] * f->v[2];
    for (int k = 0; k < 3; k++)
        f->v[k] -= d * f->u[k];
    double nv = sqrt(f->v[0] * f->v[0] + f->v[1] * f->v[1] + f->v[2] * f->v[2]);
    for (int k = 0; k < 3; k++)
        f->v[k] /= nv;
    f->w[0] = f->u[1] * f->v[2] - f->u[2] * f->v[1];
    f->w[1] = f->u[2] * f->v[0] - f->u[0] * f->v[2];
    f->w[2] = f->u[0] * f->v[1] - f->u[1] * f->v[0];
}

/* n = G·(cos ψ cos θ, sin ψ cos θ, −sin θ) */
static void normal_of(const frame *f, double psi, double theta, double n[3])
{
    const double a = cos(psi) * cos(theta), b = sin(psi) * cos(theta), c = -sin(theta);
    for (int k = 0; k < 3; k++)
        n[k] = a * f->u[k] + b * f->v[k] + c * f->w[k];
}

/* ---- preprocessing ------------------------------------------------------------------------- */

static double otsu(const float *v, size_t n, double lo, double hi)
{
    enum { NB = 256 };
    double h[NB] = {0};
    size_t stride = n > 400000 ? n / 400000 : 1;
    for (size_t i = 0; i < n; i += stride) {
        int b = (int)((v[i] - lo) / (hi - lo) * NB);
        h[b < 0 ? 0 : b >= NB ? NB - 1 : b]++;
    }
    double tot = 0, sum = 0, w0 = 0, s0 = 0, best = -1;
    int bt = NB / 2;
    for (int b = 0; b < NB; b++) {
        tot += h[b];
        sum += b * h[b];
    }
    for (int b = 0; b < NB - 1; b++) {
        w0 += h[b];
        s0 += b * h[b];
        double w1 = tot - w0;
        if (w0 == 0 || w1 == 0)
            continue;
        double m0 = s0 / w0, m1 = (sum - s0) / w1, bw = w0 * w1 * (m0 - m1) * (m0 - m1);
        if (bw > best) {
            best = bw;
            bt = b;
        }
    }
    return lo + (bt + 1) * (hi - lo) / NB;
}

static int cmpf(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* 1st and 99th percentiles of a subsample. */
static void range_of(const float *v, size_t n, double *lo, double *hi)
{
    size_t stride = n > 100000 ? n / 100000 : 1, k = 0;
    float *s = malloc((n / stride + 1) * sizeof *s);
    if (!s) {
        *lo = 0;
        *hi = 1;
        return;
    }
    for (size_t i = 0; i < n; i += stride)
        if (isfinite(v[i]))
            s[k++] = v[i];
    qsort(s, k, sizeof *s, cmpf);
    *lo = k ? s[(size_t)(0.01 * (double)(k - 1))] : 0;
    *hi = k ? s[(size_t)(0.99 * (double)(k - 1))] : 1;
    free(s);
    if (!(*hi > *lo))
        *hi = *lo + 1;
}

typedef struct level {
    rp_volume *img;  /* display intensities, block averages */
    uint8_t *head;   /* block mostly inside the head */
    float *pts;      /* world coordinates of head voxels: 3 per point */
    float *val;      /* their values */
    size_t n;
    double Ai[4][4];
} level;

static void level_free(level *L)
{
    rp_volume_free(L->img);
    free(L->head);
    free(L->pts);
    free(L->val);
    memset(L, 0, sizeof *L);
}

/* Block averages of the clipped intensities at about target_mm, and the head mask. */
static int make_level(const rp_volume *v, const float *clip, const uint8_t *head, double target,
                      level *L)
{
    memset(L, 0, sizeof *L);
    int f[3], d[3];
    for (int a = 0; a < 3; a++) {
        f[a] = (int)floor(target / v->spacing[a] + 0.5);
        if (f[a] < 1)
            f[a] = 1;
        if (f[a] > v->dim[a])
            f[a] = v->dim[a];
        d[a] = v->dim[a] / f[a];
    }
    L->img = rp_volume_new(d[0], d[1], d[2], 1);
    L->head = calloc((size_t)d[0] * d[1] * d[2], 1);
    float *cnt = calloc((size_t)d[0] * d[1] * d[2], sizeof *cnt);
    if (!L->img || !L->head || !cnt) {
        free(cnt);
        level_free(L);
        return RP_ENOMEM;
    }
    const int nx = v->dim[0], ny = v->dim[1];
    for (int z = 0; z < d[2] * f[2]; z++)
        for (int y = 0; y < d[1] * f[1]; y++)
            for (int x = 0; x < d[0] * f[0]; x++) {
                size_t i = x + (size_t)nx * (y + (size_t)ny * z);
                size_t o = x / f[0] + (size_t)d[0] * (y / f[1] + (size_t)d[1] * (z / f[2]));
                L->img->data[o] += clip[i];
                cnt[o] += head[i];
            }
    const double per = (double)f[0] * f[1] * f[2];
    size_t nh = 0;
    for (size_t o = 0; o < rp_volume_nvox(L->img); o++) {
        L->img->data[o] = (float)(L->img->data[o] / per);
        L->head[o] = cnt[o] > 0.5 * per;
        nh += L->head[o];
    }
    free(cnt);
    double S[4][4] = {{0}};
    for (int a = 0; a < 3; a++) {
        S[a][a] = f[a];
        S[a][3] = (f[a] - 1) / 2.0;
    }
    S[3][3] = 1;
    rp_mat4_mul(v->affine, S, L->img->affine);
    rp_volume_update_spacing(L->img);
    rp_mat4_invert(L->img->affine, L->Ai);
    L->pts = malloc((nh ? nh : 1) * 3 * sizeof *L->pts);
    L->val = malloc((nh ? nh : 1) * sizeof *L->val);
    if (!L->pts || !L->val) {
        level_free(L);
        return RP_ENOMEM;
    }
    const double(*A)[4] = L->img->affine;
    for (int z = 0; z < d[2]; z++)
        for (int y = 0; y < d[1]; y++)
            for (int x = 0; x < d[0]; x++) {
                size_t o = x + (size_t)d[0] * (y + (size_t)d[1] * z);
                if (!L->head[o])
                    continue;
                for (int r = 0; r < 3; r++)
                    L->pts[3 * L->n + r] =
                        (float)(A[r][0] * x + A[r][1] * y + A[r][2] * z + A[r][3]);
                L->val[L->n++] = L->img->data[o];
            }
    return 0;
}

/* Normalised correlation of the level's head voxels with their mirror images across n·p = d. */
static double symmetry(const level *L, const double n[3], double d)
{
    const rp_volume *I = L->img;
    const int nx = I->dim[0], ny = I->dim[1], nz = I->dim[2];
    double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
    size_t c = 0;
    for (size_t i = 0; i < L->n; i++) {
        const double px = L->pts[3 * i], py = L->pts[3 * i + 1], pz = L->pts[3 * i + 2];
        const double t = 2 * (n[0] * px + n[1] * py + n[2] * pz - d);
        const double qx = px - t * n[0], qy = py - t * n[1], qz = pz - t * n[2];
        const double x = L->Ai[0][0] * qx + L->Ai[0][1] * qy + L->Ai[0][2] * qz + L->Ai[0][3];
        const double y = L->Ai[1][0] * qx + L->Ai[1][1] * qy + L->Ai[1][2] * qz + L->Ai[1][3];
        const double z = L->Ai[2][0] * qx + L->Ai[2][1] * qy + L->Ai[2][2] * qz + L->Ai[2][3];
        if (!(x >= 0 && y >= 0 && z >= 0 && x <= nx - 1 && y <= ny - 1 && z <= nz - 1))
            continue;
        int x0 = (int)x, y0 = (int)y, z0 = (int)z;
        x0 = x0 > nx - 2 ? (nx > 1 ? nx - 2 : 0) : x0;
        y0 = y0 > ny - 2 ? (ny > 1 ? ny - 2 : 0) : y0;
        z0 = z0 > nz - 2 ? (nz > 1 ? nz - 2 : 0) : z0;
        const double fx = nx > 1 ? x - x0 : 0, fy = ny > 1 ? y - y0 : 0, fz = nz > 1 ? z - z0 : 0;
        const size_t sy = nx, sz = (size_t)nx * ny;
        const int dx = nx > 1;
        const size_t dy = ny > 1 ? sy : 0, dz = nz > 1 ? sz : 0;
        const float *p = I->data + x0 + sy * y0 + sz * z0;
        const double c00 = p[0] + fx * (p[dx] - p[0]), c10 = p[dy] + fx * (p[dy + dx] - p[dy]);
        const double c01 = p[dz] + fx * (p[dz + dx] - p[dz]);
        const double c11 = p[dz + dy] + fx * (p[dz + dy + dx] - p[dz + dy]);
        const double c0 = c00 + fy * (c10 - c00), c1 = c01 + fy * (c11 - c01);
        const double b = c0 + fz * (c1 - c0), a = L->val[i];
        sa += a;
        sb += b;
        saa += a * a;
        sbb += b * b;
        sab += a * b;
        c++;
    }
    if (c < 100)
        return -1;
    const double va = saa - sa * sa / c, vb = sbb - sb * sb / c;
    return va > 0 && vb > 0 ? (sab - sa * sb / c) / sqrt(va * vb) : -1;
}

/* ---- estimate ------------------------------------------------------------------------------ */

typedef struct cand {
    double psi, theta, d, s;
} cand;

static int cmp_cand(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->s != y->s)
        return x->s > y->s ? -1 : 1;
    if (x->psi != y->psi) /* a fixed order for ties */
        return x->psi < y->psi ? -1 : 1;
    return (x->theta > y->theta) - (x->theta < y->theta);
}

static double eval(const level *L, const frame *f, double psi, double theta, double d)
{
    double n[3];
    normal_of(f, psi, theta, n);
    return symmetry(L, n, d);
}

static int fail(char *why, size_t whylen, const char *fmt, double a, double b)
{
    if (why && whylen)
        snprintf(why, whylen, fmt, a, b);
    return 0;
}

/* Exhaustive coarse search on L4 around the head centroid cw, then pattern searches on L2 from
 * the best four distinct candidates. b->s < -1: out of memory. */
static void search(const level *L4p, const level *L2p, const frame *fp, const double cw[3],
                   double max_deg, double max_roll, cand *out)
{
    const level L4 = *L4p, L2 = *L2p;
    const frame f = *fp;
    const double D2R = M_PI / 180;
    /* coarse: every 3 degrees, the offset every 4 mm then refined to 1 mm */
    const int npsi = (int)floor(max_deg / 3) * 2 + 1, nth = (int)floor(max_roll / 3) * 2 + 1;
    const int nd = 11;
    const int ntot = npsi * nth;
    cand *best_of = calloc((size_t)ntot, sizeof *best_of);
    if (!best_of) {
        out->s = -3;
        return;
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int k = 0; k < ntot; k++) {
        const double psi = (-(npsi / 2) + k % npsi) * 3 * D2R;
        const double th = (-(nth / 2) + k / npsi) * 3 * D2R;
        double nn[3];
        normal_of(&f, psi, th, nn);
        const double d0 = nn[0] * cw[0] + nn[1] * cw[1] + nn[2] * cw[2];
        cand b = {psi, th, d0, -2};
        for (int j = 0; j < nd; j++) {
            double d = d0 + (j - nd / 2) * 4.0;
            double s = symmetry(&L4, nn, d);
            if (s > b.s) {
                b.s = s;
                b.d = d;
            }
        }
        for (double st = 2; st >= 1; st /= 2) {
            double s1 = symmetry(&L4, nn, b.d - st), s2 = symmetry(&L4, nn, b.d + st);
            if (s1 > b.s && s1 >= s2) {
                b.s = s1;
                b.d -= st;
            } else if (s2 > b.s) {
                b.s = s2;
                b.d += st;
            }
        }
        best_of[k] = b;
    }
    /* refine the best few distinct coarse candidates (a thin skull blurs at 6 mm, so the
     * coarse ranking can be off by a step) by a pattern search on the 2 mm level */
    qsort(best_of, (size_t)ntot, sizeof *best_of, cmp_cand);
    cand top[4];
    int ntop = 0;
    for (int k = 0; k < ntot && ntop < 4; k++) {
        int distinct = 1;
        for (int j = 0; j < ntop; j++)
            if (fabs(top[j].psi - best_of[k].psi) < 2.5 * D2R &&
                fabs(top[j].theta - best_of[k].theta) < 2.5 * D2R)
                distinct = 0;
        if (distinct)
            top[ntop++] = best_of[k];
    }
    free(best_of);
    cand b = {0, 0, 0, -2};
    for (int t = 0; t < ntop; t++) {
        cand c = top[t];
        c.s = eval(&L2, &f, c.psi, c.theta, c.d);
        double step[3] = {1.5 * D2R, max_roll > 0 ? 1.5 * D2R : 0, 2.0};
        for (int it = 0; it < 300 && (step[0] > 0.02 * D2R || step[2] > 0.05); it++) {
            int moved = 0;
            for (int k = 0; k < 3; k++) {
                if (step[k] == 0)
                    continue;
                for (int sgn = -1; sgn <= 1; sgn += 2) {
                    cand q = c;
                    double *x = k == 0 ? &q.psi : k == 1 ? &q.theta : &q.d;
                    *x += sgn * step[k];
                    q.s = eval(&L2, &f, q.psi, q.theta, q.d);
                    if (q.s > c.s + 1e-9) {
                        c = q;
                        moved = 1;
                        break;
                    }
                }
            }
            if (!moved)
                for (int k = 0; k < 3; k++)
                    step[k] /= 2;
        }
        if (c.s > b.s)
            b = c;
    }
    *out = b;
}

/* res->matrix and the plane facts for the plane b: turn u onto n about the head's point on
 * the plane, which moves to the grid centre along u. */
static void set_transform(const rp_volume *v, const frame *fp, const double cw[3], const cand *bp,
                          rp_align_result *res)
{
    const frame f = *fp;
    const cand b = *bp;
    double nn[3];
    normal_of(&f, b.psi, b.theta, nn);
    memcpy(res->normal, nn, sizeof nn);
    double g[3];
    for (int r = 0; r < 3; r++)
        g[r] = v->affine[r][0] * (v->dim[0] - 1) / 2.0 + v->affine[r][1] * (v->dim[1] - 1) / 2.0 +
               v->affine[r][2] * (v->dim[2] - 1) / 2.0 + v->affine[r][3];
    const double dc = nn[0] * cw[0] + nn[1] * cw[1] + nn[2] * cw[2] - b.d;
    double q0[3], o[3];
    for (int r = 0; r < 3; r++)
        q0[r] = cw[r] - dc * nn[r];
    memcpy(res->point, q0, sizeof q0);
    res->offset_mm = b.d - (nn[0] * g[0] + nn[1] * g[1] + nn[2] * g[2]);
    double qv = 0, qw = 0;
    for (int r = 0; r < 3; r++) {
        qv += (q0[r] - g[r]) * f.v[r];
        qw += (q0[r] - g[r]) * f.w[r];
    }
    for (int r = 0; r < 3; r++)
        o[r] = g[r] + qv * f.v[r] + qw * f.w[r];
    /* R = G·Rz(ψ)·Ry(θ)·Gᵀ */
    const double cp = cos(b.psi), sp = sin(b.psi), ct = cos(b.theta), st = sin(b.theta);
    const double Rl[3][3] = {{cp * ct, -sp, cp * st}, {sp * ct, cp, sp * st}, {-st, 0, ct}};
    double G[3][3], R[3][3];
    for (int r = 0; r < 3; r++) {
        G[r][0] = f.u[r];
        G[r][1] = f.v[r];
        G[r][2] = f.w[r];
    }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            double s = 0;
            for (int a = 0; a < 3; a++)
                for (int k = 0; k < 3; k++)
                    s += G[i][a] * Rl[a][k] * G[j][k];
            R[i][j] = s;
        }
    for (int i = 0; i < 3; i++) {
        double t = q0[i];
        for (int j = 0; j < 3; j++) {
            res->matrix[i][j] = R[i][j];
            t -= R[i][j] * o[j];
        }
        res->matrix[i][3] = t;
    }
}

int rp_align_midline(const rp_volume *v, const rp_align_params *pp, rp_align_result *res,
                     char *why, size_t whylen)
{
    rp_align_params p;
    if (pp)
        p = *pp;
    else
        rp_align_defaults(&p);
    if (why && whylen)
        why[0] = '\0';
    if (!v || !v->data || !res || v->dim[0] < 8 || v->dim[1] < 8 || v->dim[2] < 1 ||
        !(p.max_deg > 0) || p.max_deg > 45)
        return RP_EINVAL;
    memset(res, 0, sizeof *res);
    rp_mat4_identity(res->matrix);
    const size_t n = rp_volume_nvox(v);
    float *clip = malloc(n * sizeof *clip);
    uint8_t *head = malloc(n);
    if (!clip || !head) {
        free(clip);
        free(head);
        return RP_ENOMEM;
    }
    double lo, hi, thr;
    if (p.ct) {
        const double s = p.hu_scale ? p.hu_scale : 1, o = p.hu_offset;
        for (size_t i = 0; i < n; i++) {
            double hu = v->data[i] * s + o;
            head[i] = hu > -200;
            clip[i] = (float)(hu < -20 ? -20 : hu > 120 ? 120 : hu);
        }
    } else {
        range_of(v->data, n, &lo, &hi);
        thr = otsu(v->data, n, lo, hi);
        for (size_t i = 0; i < n; i++) {
            double x = v->data[i];
            head[i] = x > thr;
            clip[i] = (float)(x < lo ? lo : x > hi ? hi : x);
        }
    }
    double vox_ml = v->spacing[0] * v->spacing[1] * v->spacing[2] / 1000.0, cnt = 0;
    double c[3] = {0};
    for (int z = 0; z < v->dim[2]; z++)
        for (int y = 0; y < v->dim[1]; y++)
            for (int x = 0; x < v->dim[0]; x++)
                if (head[x + (size_t)v->dim[0] * (y + (size_t)v->dim[1] * z)]) {
                    c[0] += x;
                    c[1] += y;
                    c[2] += z;
                    cnt++;
                }
    res->head_ml = cnt * vox_ml;
    if (res->head_ml < 20) {
        free(clip);
        free(head);
        return fail(why, whylen, "no head found (%.1f ml above the head threshold, need %.0f)",
                    res->head_ml, 20);
    }
    double cw[3];
    for (int r = 0; r < 3; r++)
        cw[r] = v->affine[r][0] * c[0] / cnt + v->affine[r][1] * c[1] / cnt +
                v->affine[r][2] * c[2] / cnt + v->affine[r][3];
    frame f;
    grid_frame(v->affine, &f);
    level L4, L2;
    int rc = make_level(v, clip, head, 6.0, &L4);
    /* the fine level as isotropic as the slices allow: partial volume along thick slices is
     * not mirror-symmetric about a tilted plane and would pull the roll towards 0 */
    const double fine = fmax(2.0, fmax(v->spacing[0], fmax(v->spacing[1], v->spacing[2])));
    if (!rc)
        rc = make_level(v, clip, head, fine, &L2);
    free(clip);
    free(head);
    if (rc) {
        level_free(&L4);
        return rc;
    }
    /* Roll (coronal tilt) needs a tall enough volume, and for CT thin slices: bone partial
     * volume smeared along thick slices is not mirror-symmetric about a tilted plane and pulls
     * the estimate towards 0 (seen on phantoms with 3 mm slices; 2 mm is fine). */
    const double ext_w = v->dim[f.ax[2]] * v->spacing[f.ax[2]];
    const double sw = v->spacing[f.ax[2]];
    const double max_roll = ext_w >= 40 && !(p.ct && sw > 2.5) ? p.max_deg / 2 : 0;
    res->roll_estimated = max_roll > 0;
    cand b;
    search(&L4, &L2, &f, cw, p.max_deg, max_roll, &b);
    if (b.s < -2) {
        level_free(&L4);
        level_free(&L2);
        return RP_ENOMEM;
    }
    /* distinct optimum: the score must drop when the plane turns 10 degrees */
    const double D2R = M_PI / 180;
    double side = fmax(eval(&L2, &f, b.psi + 10 * D2R, b.theta, b.d),
                       eval(&L2, &f, b.psi - 10 * D2R, b.theta, b.d));
    level_free(&L4);
    level_free(&L2);
    res->yaw_deg = b.psi / D2R;
    res->roll_deg = b.theta / D2R;
    res->score = b.s;
    set_transform(v, &f, cw, &b, res);
    /* reliability */
    res->reliable = 0;
    if (b.s < p.min_score)
        return fail(why, whylen,
                    "the head is not symmetric enough (symmetry %.3f < %.3f): no midline "
                    "estimate",
                    b.s, p.min_score);
    if (fabs(res->yaw_deg) > p.max_deg - 1 || (max_roll > 0 && fabs(res->roll_deg) > max_roll - 1))
        return fail(why, whylen,
                    "the estimate lies on the edge of the search range (yaw %.1f, roll %.1f "
                    "degrees)",
                    res->yaw_deg, res->roll_deg);
    if (b.s - side < 0.02)
        return fail(why, whylen,
                    "no distinct symmetry plane (symmetry %.3f, %.3f ten degrees away)", b.s,
                    side);
    res->reliable = 1;
    RP_INFO(MOD, "midline yaw_deg=%.2f roll_deg=%.2f offset_mm=%.1f symmetry=%.3f", res->yaw_deg,
            res->roll_deg, res->offset_mm, res->score);
    return 0;
}

int rp_align_apply(const rp_volume *v, const rp_align_result *r, int order, rp_volume **out)
{
    if (!v || !r || !out)
        return RP_EINVAL;
    const size_t n = rp_volume_nvox(v);
    float mn = INFINITY;
    for (size_t i = 0; i < n; i++)
        if (v->data[i] < mn)
            mn = v->data[i];
    if (!isfinite(mn))
        mn = 0;
    /* resample v - min (0 outside), then add min back: outside becomes the minimum */
    rp_volume *s = rp_volume_new(v->dim[0], v->dim[1], v->dim[2], 1);
    if (!s)
        return RP_ENOMEM;
    memcpy(s->affine, v->affine, sizeof s->affine);
    rp_volume_update_spacing(s);
    for (size_t i = 0; i < n; i++)
        s->data[i] = v->data[i] - mn;
    rp_volume *o = NULL;
    int rc = rp_register_resample(s, v, r->matrix, order, &o);
    rp_volume_free(s);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        o->data[i] += mn;
    *out = o;
    return 0;
}

/* ---- QC picture ---------------------------------------------------------------------------- */

static void window(const rp_volume *v, const rp_align_params *p, double *lo, double *hi)
{
    if (p && p->ct) {
        const double s = p->hu_scale ? p->hu_scale : 1;
        *lo = (0 - p->hu_offset) / s;
        *hi = (80 - p->hu_offset) / s;
        if (*lo > *hi) {
            double t = *lo;
            *lo = *hi;
            *hi = t;
        }
        return;
    }
    range_of(v->data, rp_volume_nvox(v), lo, hi);
}

/* One panel: the axial slice k of vol (u across, radiological: patient's right on the left;
 * anterior up), scale x, with the plane n·p = d drawn in colour rgb. */
static void panel(const rp_volume *vol, const frame *f, int k, int scale, double lo, double hi,
                  const double n[3], double d, const uint8_t rgb[3], uint8_t *pix, int W, int x0)
{
    const int au = f->ax[0], av = f->ax[1], aw = f->ax[2];
    const int nu = vol->dim[au], nv = vol->dim[av];
    const double(*A)[4] = vol->affine;
    for (int row = 0; row < nv * scale; row++) {
        const int jv = nv - 1 - row / scale; /* anterior (largest v) at the top */
        for (int col = 0; col < nu * scale; col++) {
            const int iu = nu - 1 - col / scale; /* patient's right (largest u) on the left */
            int idx[3];
            idx[au] = iu;
            idx[av] = jv;
            idx[aw] = k;
            float x = vol->data[idx[0] + (size_t)vol->dim[0] * (idx[1] + (size_t)vol->dim[1] * idx[2])];
            double g = (x - lo) / (hi - lo) * 255;
            uint8_t gv = (uint8_t)(g < 0 ? 0 : g > 255 ? 255 : g);
            uint8_t *o = pix + 3 * ((size_t)row * W + x0 + col);
            o[0] = o[1] = o[2] = gv;
        }
        /* where the plane crosses this row: n·(A·idx) = d, linear in the u index */
        int idx0[3];
        idx0[au] = 0;
        idx0[av] = jv;
        idx0[aw] = k;
        double base = 0, du = 0;
        for (int r = 0; r < 3; r++) {
            base += n[r] * (A[r][0] * idx0[0] + A[r][1] * idx0[1] + A[r][2] * idx0[2] + A[r][3]);
            du += n[r] * A[r][au];
        }
        if (fabs(du) < 1e-9)
            continue;
        const double t = (d - base) / du;
        const int col = (int)floor((nu - 1 - t) * scale + scale / 2.0);
        for (int dc = -1; dc <= 0; dc++)
            if (col + dc >= 0 && col + dc < nu * scale) {
                uint8_t *o = pix + 3 * ((size_t)row * W + x0 + col + dc);
                o[0] = rgb[0];
                o[1] = rgb[1];
                o[2] = rgb[2];
            }
    }
}

int rp_align_qc_picture(const rp_volume *before, const rp_volume *after, const rp_align_result *r,
                        const rp_align_params *p, uint8_t **pix, int *w, int *h)
{
    if (!before || !after || !r || !pix || !w || !h ||
        memcmp(before->dim, after->dim, 3 * sizeof(int)) != 0)
        return RP_EINVAL;
    frame f;
    grid_frame(before->affine, &f);
    const int nu = before->dim[f.ax[0]], nv = before->dim[f.ax[1]];
    int scale = 1;
    while (nu * scale < 256 && scale < 8)
        scale++;
    /* the axial slice through the head centre on the plane */
    double Ai[4][4];
    if (rp_mat4_invert(before->affine, Ai) != 0)
        return RP_EINVAL;
    double kk = Ai[f.ax[2]][0] * r->point[0] + Ai[f.ax[2]][1] * r->point[1] +
                Ai[f.ax[2]][2] * r->point[2] + Ai[f.ax[2]][3];
    int k = (int)floor(kk + 0.5);
    k = k < 0 ? 0 : k >= before->dim[f.ax[2]] ? before->dim[f.ax[2]] - 1 : k;
    const int W = 2 * nu * scale + 8, H = nv * scale;
    uint8_t *o = calloc((size_t)W * H * 3, 1);
    if (!o)
        return RP_ENOMEM;
    double lo, hi;
    window(before, p, &lo, &hi);
    if (!(hi > lo))
        hi = lo + 1;
    const uint8_t red[3] = {255, 40, 40}, green[3] = {40, 255, 40};
    panel(before, &f, k, scale, lo, hi, r->normal, r->normal[0] * r->point[0] +
          r->normal[1] * r->point[1] + r->normal[2] * r->point[2], red, o, W, 0);
    /* after: the plane is u·p = u·g, g the grid centre */
    double g[3];
    for (int q = 0; q < 3; q++)
        g[q] = after->affine[q][0] * (after->dim[0] - 1) / 2.0 +
               after->affine[q][1] * (after->dim[1] - 1) / 2.0 +
               after->affine[q][2] * (after->dim[2] - 1) / 2.0 + after->affine[q][3];
    panel(after, &f, k, scale, lo, hi, f.u, f.u[0] * g[0] + f.u[1] * g[1] + f.u[2] * g[2], green,
          o, W, nu * scale + 8);
    *pix = o;
    *w = W;
    *h = H;
    return 0;
}
