/*
 * pipeline/mr/mrmask.c — MR foreground / head masks: Otsu threshold (log domain), opening
 * (optional), closing, largest 6-connected component, hole filling (3-D from the volume
 * border, then per slice, so the neck opening does not leave the head's interior unfilled).
 *
 * Morphology uses a cuboid structuring element of radius round(r_mm / spacing) voxels per axis:
 * it is separable (three 1-D min/max passes), so cost does not grow with the cube of the radius.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/mr/mr.h"

int rp_mr_otsu(const float *v, const uint8_t *mask, size_t n, int bins, double *thr)
{
    if (!v || !thr || bins < 2)
        return RP_EINVAL;
    double lo = INFINITY, hi = -INFINITY;
    size_t cnt = 0;
    for (size_t i = 0; i < n; i++) {
        if ((mask && !mask[i]) || !isfinite(v[i]))
            continue;
        if (v[i] < lo)
            lo = v[i];
        if (v[i] > hi)
            hi = v[i];
        cnt++;
    }
    if (cnt < 2 || !(hi > lo))
        return RP_EINVAL;
    /* 99.9th percentile from a fine histogram, to keep a few bright voxels (vessels, fat,
     * artefacts) from squeezing everything else into the first bins. */
    enum { FINE = 4096 };
    size_t *fh = calloc(FINE, sizeof(size_t));
    double *h = calloc(bins, sizeof(double));
    if (!fh || !h) {
        free(fh);
        free(h);
        return RP_ENOMEM;
    }
    double fs = (FINE - 1) / (hi - lo);
    for (size_t i = 0; i < n; i++)
        if ((!mask || mask[i]) && isfinite(v[i]))
            fh[(int)((v[i] - lo) * fs)]++;
    size_t want = (size_t)(0.999 * cnt), acc = 0;
    double top = hi;
    for (int k = 0; k < FINE; k++) {
        acc += fh[k];
        if (acc >= want) {
            top = lo + (k + 1) / fs;
            break;
        }
    }
    if (!(top > lo))
        top = hi;
    double bs = bins / (top - lo);
    for (size_t i = 0; i < n; i++) {
        if ((mask && !mask[i]) || !isfinite(v[i]))
            continue;
        int k = (int)((v[i] - lo) * bs);
        h[k < 0 ? 0 : k >= bins ? bins - 1 : k] += 1.0;
    }
    double total = 0, sum_all = 0;
    for (int k = 0; k < bins; k++) {
        total += h[k];
        sum_all += h[k] * (k + 0.5);
    }
    double w0 = 0, s0 = 0, best = -1;
    int best_k = 0;
    for (int k = 0; k < bins - 1; k++) {
        w0 += h[k];
        s0 += h[k] * (k + 0.5);
        double w1 = total - w0;
        if (w0 <= 0 || w1 <= 0)
            continue;
        double m0 = s0 / w0, m1 = (sum_all - s0) / w1;
        double between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if (between > best) {
            best = between;
            best_k = k;
        }
    }
    *thr = lo + (best_k + 1) / bs;
    free(fh);
    free(h);
    return 0;
}

/* 1-D running min (erode) or max (dilate) of radius r along `axis`, window clamped at edges.
 * A sliding count of set voxels makes it O(1) per voxel whatever the radius. */
static void morph_axis(const uint8_t *in, uint8_t *out, const int n[3], int axis, int r, int dilate)
{
    const size_t stride = axis == 0 ? 1 : axis == 1 ? (size_t)n[0] : (size_t)n[0] * n[1];
    const int len = n[axis];
    /* the two axes other than `axis` enumerate the lines */
    const int a0 = axis == 0 ? 1 : 0, a1 = axis == 2 ? 1 : 2;
    const size_t s0 = a0 == 0 ? 1 : (size_t)n[0], s1 = a1 == 1 ? (size_t)n[0] : (size_t)n[0] * n[1];
    const int n0 = n[a0], n1 = n[a1];
#pragma omp parallel for schedule(static)
    for (int q1 = 0; q1 < n1; q1++)
        for (int q0 = 0; q0 < n0; q0++) {
            const size_t base = (size_t)q0 * s0 + (size_t)q1 * s1;
            const uint8_t *li = in + base;
            uint8_t *lo = out + base;
            int cnt = 0;
            for (int p = 0; p < r && p < len; p++)
                cnt += li[(size_t)p * stride] != 0;
            for (int p = 0; p < len; p++) {
                if (p + r < len)
                    cnt += li[(size_t)(p + r) * stride] != 0;
                if (p - r - 1 >= 0)
                    cnt -= li[(size_t)(p - r - 1) * stride] != 0;
                int lo_p = p - r < 0 ? 0 : p - r, hi_p = p + r >= len ? len - 1 : p + r;
                lo[(size_t)p * stride] = dilate ? cnt > 0 : cnt == hi_p - lo_p + 1;
            }
        }
}

static int morph(uint8_t *m, const int n[3], const int r[3], int dilate)
{
    size_t nv = (size_t)n[0] * n[1] * n[2];
    uint8_t *tmp = malloc(nv);
    if (!tmp)
        return RP_ENOMEM;
    for (int d = 0; d < 3; d++) {
        if (r[d] <= 0)
            continue;
        morph_axis(m, tmp, n, d, r[d], dilate);
        memcpy(m, tmp, nv);
    }
    free(tmp);
    return 0;
}

/* Queue entries hold packed coordinates, so the flood fills need no division per voxel. */
#define PK(x, y, z) ((uint64_t)(x) | (uint64_t)(y) << 21 | (uint64_t)(z) << 42)
#define PX(q) ((int)((q)&0x1FFFFF))
#define PY(q) ((int)(((q) >> 21) & 0x1FFFFF))
#define PZ(q) ((int)((q) >> 42))

/* Flood from the queued seeds through voxels with want[i] == val and !seen[i] (6-connected;
 * in-plane only when planar). Marks seen[i] = mark. Returns the queue length (voxels reached). */
static size_t flood(const uint8_t *want, uint8_t val, int32_t *seen32, uint8_t *seen8, int32_t mark,
                    uint64_t *queue, size_t tail, const int n[3], int planar)
{
    const size_t sy = n[0], sz = (size_t)n[0] * n[1];
    size_t head = 0;
#define VISIT(xx, yy, zz)                                                                          \
    do {                                                                                           \
        size_t j = (size_t)(xx) + sy * (yy) + sz * (zz);                                           \
        if ((want[j] != 0) == (val != 0) && !(seen32 ? seen32[j] : seen8[j])) {                    \
            if (seen32)                                                                            \
                seen32[j] = mark;                                                                  \
            else                                                                                   \
                seen8[j] = 1;                                                                      \
            queue[tail++] = PK(xx, yy, zz);                                                        \
        }                                                                                          \
    } while (0)
    while (head < tail) {
        uint64_t q = queue[head++];
        int x = PX(q), y = PY(q), z = PZ(q);
        if (x > 0)
            VISIT(x - 1, y, z);
        if (x < n[0] - 1)
            VISIT(x + 1, y, z);
        if (y > 0)
            VISIT(x, y - 1, z);
        if (y < n[1] - 1)
            VISIT(x, y + 1, z);
        if (!planar && z > 0)
            VISIT(x, y, z - 1);
        if (!planar && z < n[2] - 1)
            VISIT(x, y, z + 1);
    }
#undef VISIT
    return tail;
}

/* Keep the largest 6-connected component of m (in place). */
static int largest_component(uint8_t *m, const int n[3])
{
    size_t nv = (size_t)n[0] * n[1] * n[2];
    int32_t *lab = calloc(nv, sizeof(int32_t));
    uint64_t *queue = malloc(nv * sizeof(uint64_t));
    if (!lab || !queue) {
        free(lab);
        free(queue);
        return RP_ENOMEM;
    }
    int32_t next = 0, best = 0;
    size_t best_size = 0;
    for (int z = 0; z < n[2]; z++)
        for (int y = 0; y < n[1]; y++)
            for (int x = 0; x < n[0]; x++) {
                size_t s = x + (size_t)n[0] * (y + (size_t)n[1] * z);
                if (!m[s] || lab[s] || next == INT32_MAX)
                    continue;
                lab[s] = ++next;
                queue[0] = PK(x, y, z);
                size_t size = flood(m, 1, lab, NULL, next, queue, 1, n, 0);
                if (size > best_size) {
                    best_size = size;
                    best = next;
                }
            }
    for (size_t i = 0; i < nv; i++)
        m[i] = lab[i] == best && best;
    free(lab);
    free(queue);
    return 0;
}

/* Fill background regions not connected to the border (per_slice: border of each z slice,
 * connectivity in-plane). */
static int fill_holes(uint8_t *m, const int n[3], int per_slice)
{
    size_t nv = (size_t)n[0] * n[1] * n[2];
    uint8_t *outside = calloc(nv, 1);
    uint64_t *queue = malloc(nv * sizeof(uint64_t));
    if (!outside || !queue) {
        free(outside);
        free(queue);
        return RP_ENOMEM;
    }
    const size_t sy = n[0], sz = (size_t)n[0] * n[1];
    size_t tail = 0;
    for (int z = 0; z < n[2]; z++)
        for (int y = 0; y < n[1]; y++)
            for (int x = 0; x < n[0]; x++) {
                int border = x == 0 || y == 0 || x == n[0] - 1 || y == n[1] - 1;
                if (!per_slice)
                    border = border || z == 0 || z == n[2] - 1;
                size_t i = x + sy * y + sz * z;
                if (border && !m[i]) {
                    outside[i] = 1;
                    queue[tail++] = PK(x, y, z);
                }
            }
    flood(m, 0, NULL, outside, 1, queue, tail, n, per_slice);
    for (size_t i = 0; i < nv; i++)
        if (!outside[i])
            m[i] = 1;
    free(outside);
    free(queue);
    return 0;
}

void rp_mr_fg_defaults(rp_mr_fg_params *p, int head)
{
    p->threshold_scale = 1.0;
    /* No opening by default: a cuboid opening erases thin curved shells such as the scalp,
     * and isolated noise specks go with the largest-component step anyway. */
    p->open_mm = 0.0;
    p->close_mm = head ? 6.0 : 2.0;
    p->fill_holes = 1;
}

static void radius_vox(const rp_volume *v, double mm, int r[3])
{
    for (int d = 0; d < 3; d++) {
        double sp = v->spacing[d] > 0 ? v->spacing[d] : 1.0;
        r[d] = v->dim[d] > 1 ? (int)floor(mm / sp + 0.5) : 0;
    }
}

int rp_mr_foreground(const rp_volume *v, const rp_mr_fg_params *p, const char *name, rp_mask **out,
                     char *err, size_t errlen)
{
    if (!v || !p || !out)
        return RP_EINVAL;
    const int n[3] = {v->dim[0], v->dim[1], v->dim[2]};
    size_t nv = rp_volume_nvox(v);
    /* Otsu on log(1 + v - min): on a linear scale a head has several bright classes and Otsu
     * splits them (leaving the dark skull and CSF out); in the log domain the split that
     * dominates is air versus tissue, which is the one wanted. */
    double vmin = INFINITY;
    for (size_t i = 0; i < nv; i++)
        if (isfinite(v->data[i]) && v->data[i] < vmin)
            vmin = v->data[i];
    /* The threshold of a 256-bin histogram needs no more than ~2M samples: a fixed stride
     * keeps it deterministic and 5x cheaper on a 256x256x160 volume. */
    size_t stride = nv / (2u << 20) + 1, ns = (nv + stride - 1) / stride;
    float *lg = malloc(sizeof(float) * ns);
    if (!lg)
        return RP_ENOMEM;
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < ns; k++) {
        float x = v->data[k * stride];
        lg[k] = isfinite(x) ? log1pf(x - (float)vmin) : 0.0f;
    }
    double lthr;
    int rc = rp_mr_otsu(lg, NULL, ns, 256, &lthr);
    free(lg);
    if (rc != 0) {
        if (err)
            snprintf(err, errlen, "foreground: image is constant, no threshold");
        return rc;
    }
    double thr = vmin + expm1(lthr);
    thr *= p->threshold_scale;
    rp_mask *m = rp_mask_like(v, name);
    if (!m)
        return RP_ENOMEM;
    for (size_t i = 0; i < nv; i++)
        m->data[i] = v->data[i] > thr;
    int r[3];
    radius_vox(v, p->open_mm, r);
    if ((rc = morph(m->data, n, r, 0)) || (rc = morph(m->data, n, r, 1)))
        goto fail;
    /* close before keeping the largest component: the scalp is a separate shell from the
     * brain until the dark skull between them is bridged */
    radius_vox(v, p->close_mm, r);
    if ((rc = morph(m->data, n, r, 1)) || (rc = morph(m->data, n, r, 0)))
        goto fail;
    if ((rc = largest_component(m->data, n)))
        goto fail;
    if (p->fill_holes && ((rc = fill_holes(m->data, n, 0)) || (rc = fill_holes(m->data, n, 1))))
        goto fail;
    size_t cnt = rp_mask_count(m);
    if (cnt == 0) {
        rc = RP_EINVAL;
        if (err)
            snprintf(err, errlen, "foreground: empty mask (Otsu threshold %.6g)", thr);
        goto fail;
    }
    RP_INFO("mr", "foreground mask=%s otsu=%.6g voxels=%zu fraction=%.3f", name, thr, cnt,
            (double)cnt / nv);
    *out = m;
    return 0;
fail:
    rp_mask_free(m);
    if (rc == RP_ENOMEM && err)
        snprintf(err, errlen, "foreground: out of memory");
    return rc;
}
