/*
 * pipeline/ct/airway.c — the trachea and main bronchi taken out of the lung mask.
 *
 * Why: at the lung threshold the airway is air like the lungs and joins them through the
 * bronchi, so the largest air component inside the body is "lungs + trachea"; a lung mask
 * for training or volumetry must not contain the trachea.
 *
 * How: in the first axial slices (from the top of the chest down) the trachea is a small
 * air region near the body's left-right midline; from there it is tracked slice by slice:
 * the airway in a slice is every 2-D component of the lung mask that overlaps the airway of
 * the slice above and is small (<= MAX_AIRWAY_MM2). Where it divides into two the carina is
 * passed; each main bronchus is followed until it merges with the lung in the slice (a large
 * component) or MAX_BELOW_CARINA_MM below the carina. Tracked voxels leave the mask. A track
 * shorter than MIN_TRACK_MM without a carina is not an airway and nothing is removed.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/ct/ctmask_internal.h"
#include "pipeline/ct/slicecc_internal.h"

#define MIN_SEED_MM2 30.0    /* trachea lumen: ~150-300 mm^2 in adults */
#define MAX_AIRWAY_MM2 700.0 /* larger 2-D air regions are lung */
#define MAX_MIDLINE_MM 35.0  /* seed centroid from the body's left-right centre */
#define SEED_SEARCH_MM 120.0 /* seed looked for this far below the first lung slice */
#define MAX_BELOW_CARINA_MM 60.0
#define MIN_TRACK_MM 20.0
#define MIN_BRANCH_MM2 15.0 /* a piece of airway smaller than this is not a bronchus */
#define MAX_STUCK 5         /* slices the trachea may hold its outline inside a lung */

/* x centre of the body's extent in slice z (nx / 2 without a body). */
static double body_mid_x(const rp_bits *body, int z, int nx)
{
    if (!body)
        return nx / 2.0;
    int lo = 1 << 30, hi = -1;
    const int wpr = body->wpr;
    for (int y = 0; y < body->ny; y++) {
        const uint64_t *row = body->w + ((size_t)z * body->ny + y) * wpr;
        for (int j = 0; j < wpr; j++)
            if (row[j]) {
                int x = 64 * j + __builtin_ctzll(row[j]);
                if (x < lo)
                    lo = x;
                break;
            }
        for (int j = wpr - 1; j >= 0; j--)
            if (row[j]) {
                int x = 64 * j + 63 - __builtin_clzll(row[j]);
                if (x > hi)
                    hi = x;
                break;
            }
    }
    return hi >= lo ? (lo + hi) / 2.0 : nx / 2.0;
}

/* dst = src dilated by one pixel (3x3 box) in the plane; tmp: scratch of the same size. */
static void plane_dilate1(const uint64_t *src, uint64_t *dst, uint64_t *tmp, int ny, int wpr,
                          uint64_t lm)
{
    for (int y = 0; y < ny; y++) {
        const uint64_t *r = src + (size_t)y * wpr;
        uint64_t *t = tmp + (size_t)y * wpr, carry = 0;
        for (int j = 0; j < wpr; j++) {
            uint64_t c = r[j], next = j + 1 < wpr ? r[j + 1] : 0;
            t[j] = c | (c << 1) | carry | (c >> 1) | (next << 63);
            carry = c >> 63;
        }
        t[wpr - 1] &= lm;
    }
    for (int y = 0; y < ny; y++)
        for (int j = 0; j < wpr; j++) {
            uint64_t v = tmp[(size_t)y * wpr + j];
            if (y > 0)
                v |= tmp[(size_t)(y - 1) * wpr + j];
            if (y + 1 < ny)
                v |= tmp[(size_t)(y + 1) * wpr + j];
            dst[(size_t)y * wpr + j] = v;
        }
}

/* Does component c of sc overlap the plane `prev` (ny rows of wpr words)? */
static int overlaps(const rp_slicecc *sc, int c, const uint64_t *prev, int wpr)
{
    for (size_t i = sc->comp[c].first; i != (size_t)-1; i = sc->next[i]) {
        const uint64_t *row = prev + (size_t)sc->run_y[i] * wpr;
        int x0 = sc->runs[i].x0, x1 = sc->runs[i].x1;
        for (int j = x0 / 64; j <= (x1 - 1) / 64; j++) {
            int b0 = j == x0 / 64 ? x0 % 64 : 0, b1 = j == (x1 - 1) / 64 ? (x1 - 1) % 64 + 1 : 64;
            uint64_t m =
                (b1 == 64 ? ~(uint64_t)0 : (((uint64_t)1 << b1) - 1)) & (~(uint64_t)0 << b0);
            if (row[j] & m)
                return 1;
        }
    }
    return 0;
}

static void paint_comp(const rp_slicecc *sc, int c, uint64_t *plane, int wpr)
{
    for (size_t i = sc->comp[c].first; i != (size_t)-1; i = sc->next[i])
        rp_row_set(plane + (size_t)sc->run_y[i] * wpr, sc->runs[i].x0, sc->runs[i].x1);
}

int rp_airway_remove(rp_bits *lung, const rp_bits *body, int axis, const double A[4][4],
                     const double sp[3], rp_airway_result *res)
{
    memset(res, 0, sizeof *res);
    res->carina_slice = res->top_slice = -1;
    if (axis != 2 || lung->nz < 3)
        return 0; /* tracking runs on axial slices along z (the usual acquisition) */
    const int nx = lung->nx, ny = lung->ny, nz = lung->nz, wpr = lung->wpr;
    const size_t pw = (size_t)ny * wpr;
    const double px_mm2 = sp[0] * sp[1], dz = sp[2];
    const int up = A[2][2] > 0; /* higher k is superior */
    rp_slicecc sc;
    rp_slicecc_init(&sc);
    uint64_t *air = rp_mem_calloc((pw * nz + 1) * sizeof *air); /* airway found, all slices */
    uint64_t *prev = calloc(pw + 1, sizeof *prev);
    int rc = 0;
    if (!air || !prev) {
        rc = RP_ENOMEM;
        goto out;
    }
    /* the first (most superior) slice that holds lung */
    int first = -1;
    for (int s = 0; s < nz && first < 0; s++) {
        int z = up ? nz - 1 - s : s;
        const uint64_t *p = lung->w + (size_t)z * pw;
        for (size_t i = 0; i < pw; i++)
            if (p[i]) {
                first = s;
                break;
            }
    }
    if (first < 0)
        goto out;
    int seed_s = -1;
    for (int s = first; s < nz && (s - first) * dz <= SEED_SEARCH_MM && seed_s < 0; s++) {
        int z = up ? nz - 1 - s : s;
        if ((rc = rp_slicecc_label(&sc, lung->w + (size_t)z * pw, nx, ny, wpr)) != 0)
            goto out;
        double mid = body_mid_x(body, z, nx);
        int best = -1;
        double bd = 1e30;
        for (int c = 0; c < sc.ncomp; c++) {
            const rp_slicecomp *k = &sc.comp[c];
            double a = (double)k->area * px_mm2, d = fabs(k->cx - mid) * sp[0];
            if (k->border || a < MIN_SEED_MM2 || a > MAX_AIRWAY_MM2 || d > MAX_MIDLINE_MM)
                continue;
            if (d < bd) {
                bd = d;
                best = c;
            }
        }
        if (best >= 0) {
            seed_s = s;
            paint_comp(&sc, best, prev, wpr);
            paint_comp(&sc, best, air + (size_t)z * pw, wpr);
        }
    }
    if (seed_s < 0)
        goto out;
    int carina_s = -1, last_s = seed_s, stuck = 0;
    double cx = 0, cy = 0; /* centroid of the airway in the last undivided slice */
    double ref_area = 0;   /* mean trachea area (pixels) in slices where it stood alone */
    int n_ref = 0;
    uint64_t *cur = malloc(pw * sizeof *cur + 8), *dil = malloc(pw * sizeof *dil + 8),
             *tmp = malloc(pw * sizeof *tmp + 8);
    rp_slicecc sc2;
    rp_slicecc_init(&sc2);
    if (!cur || !dil || !tmp) {
        rc = RP_ENOMEM;
        goto track_done;
    }
    const uint64_t lm = nx % 64 ? (((uint64_t)1 << (nx % 64)) - 1) : ~(uint64_t)0;
    for (int s = seed_s + 1; s < nz; s++) {
        int z = up ? nz - 1 - s : s;
        if (carina_s >= 0 && (s - carina_s) * dz > MAX_BELOW_CARINA_MM)
            break;
        if ((rc = rp_slicecc_label(&sc, lung->w + (size_t)z * pw, nx, ny, wpr)) != 0)
            break;
        memset(cur, 0, pw * sizeof *cur);
        int merged = 0, have_dil = 0;
        for (int c = 0; c < sc.ncomp; c++) {
            const rp_slicecomp *k = &sc.comp[c];
            if (!overlaps(&sc, c, prev, wpr))
                continue;
            if ((double)k->area * px_mm2 <= MAX_AIRWAY_MM2) {
                paint_comp(&sc, c, cur, wpr);
                continue;
            }
            if (carina_s >= 0)
                continue; /* a bronchus that reached the lung: this branch ends */
            /* the trachea touches a lung in this slice (a thin wall lost to partial volume):
             * keep the part of the joint region next to the trachea of the slice above */
            if (!have_dil) {
                plane_dilate1(prev, dil, tmp, ny, wpr, lm);
                have_dil = 1;
            }
            memset(tmp, 0, pw * sizeof *tmp);
            paint_comp(&sc, c, tmp, wpr);
            for (size_t i = 0; i < pw; i++)
                cur[i] |= tmp[i] & dil[i];
            merged = 1;
        }
        if (merged && n_ref > 0) {
            long a = 0;
            for (size_t i = 0; i < pw; i++)
                a += __builtin_popcountll(cur[i]);
            /* growing into the lung, not following a tube: hold the previous outline */
            if (a > 1.4 * ref_area) {
                for (size_t i = 0; i < pw; i++)
                    cur[i] &= prev[i];
                if (++stuck > MAX_STUCK)
                    break;
            } else {
                stuck = 0;
            }
        } else {
            stuck = 0;
        }
        if ((rc = rp_slicecc_label(&sc2, cur, nx, ny, wpr)) != 0)
            break;
        int n_air = 0;
        double sx = 0, sy = 0;
        long area = 0;
        for (int c = 0; c < sc2.ncomp; c++) {
            const rp_slicecomp *k = &sc2.comp[c];
            n_air += (double)k->area * px_mm2 >= MIN_BRANCH_MM2;
            sx += k->cx * k->area;
            sy += k->cy * k->area;
            area += k->area;
        }
        if (area == 0)
            break;
        if (n_air <= 1 && carina_s < 0) {
            cx = sx / area;
            cy = sy / area;
            if (!merged) {
                ref_area = (ref_area * n_ref + area) / (n_ref + 1);
                n_ref++;
            }
        }
        if (n_air >= 2 && carina_s < 0)
            carina_s = s - 1;
        memcpy(air + (size_t)z * pw, cur, pw * sizeof *cur);
        memcpy(prev, cur, pw * sizeof *cur);
        last_s = s;
    }
track_done:
    free(cur);
    free(dil);
    free(tmp);
    rp_slicecc_free(&sc2);
    if (rc)
        goto out;
    if (carina_s < 0 && (last_s - seed_s) * dz < MIN_TRACK_MM)
        goto out; /* a short blob, not a trachea: leave the mask alone */
    long removed = 0;
    const size_t words = pw * nz;
#pragma omp parallel for schedule(static) reduction(+ : removed)
    for (size_t i = 0; i < words; i++) {
        removed += __builtin_popcountll(air[i] & lung->w[i]);
        lung->w[i] &= ~air[i];
    }
    res->found = 1;
    res->voxels = removed;
    res->top_slice = up ? nz - 1 - seed_s : seed_s;
    if (carina_s >= 0) {
        int zc = up ? nz - 1 - carina_s : carina_s;
        res->carina_slice = zc;
        for (int r = 0; r < 3; r++)
            res->carina_mm[r] = A[r][0] * cx + A[r][1] * cy + A[r][2] * zc + A[r][3];
    }
out:
    rp_slicecc_free(&sc);
    free(air);
    free(prev);
    return rc;
}
