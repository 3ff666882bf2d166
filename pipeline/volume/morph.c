/*
 * pipeline/volume/morph.c — binary morphology (box structuring element, separable), hole filling
 * and 3-D connected components on uint8 masks.
 *
 * Why runs: components are labelled on runs of foreground along x (union-find over runs,
 * 6-connectivity), so memory is proportional to the number of runs, not voxels, and no int32
 * label volume is ever allocated.
 */
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/volume/volume.h"

/* ---- dilation / erosion -------------------------------------------------------------- */

/* 1-D dilation of every line along `axis` with radius r: out = 1 where a 1 lies within r.
 * Radii here are small (a few voxels), so the plain OR of 2r+1 shifted copies wins: it runs
 * on contiguous bytes that the compiler vectorises, along x as well as across rows. */
static int dilate_axis(uint8_t *m, const int dim[3], int axis, int r)
{
    if (r <= 0 || dim[axis] == 1)
        return 0;
    size_t inner = 1, outer = 1;
    for (int a = 0; a < axis; a++)
        inner *= (size_t)dim[a];
    for (int a = axis + 1; a < 3; a++)
        outer *= (size_t)dim[a];
    const int n = dim[axis];
    if (r >= n)
        r = n - 1;
    int fail = 0;
    if (inner == 1) {
#pragma omp parallel
        {
            uint8_t *line = malloc((size_t)n + 2 * (size_t)r);
            if (!line) {
#pragma omp atomic write
                fail = 1;
            }
#pragma omp for schedule(static)
            for (size_t o = 0; o < outer; o++) {
                if (!line)
                    continue;
                uint8_t *d = m + o * (size_t)n;
                memset(line, 0, (size_t)r);
                memcpy(line + r, d, (size_t)n);
                memset(line + r + n, 0, (size_t)r);
                for (int k = -r; k <= r; k++) {
                    const uint8_t *src = line + r + k;
                    if (k == -r)
                        memcpy(d, src, (size_t)n);
                    else
#pragma omp simd
                        for (int x = 0; x < n; x++)
                            d[x] |= src[x];
                }
            }
            free(line);
        }
        return fail ? RP_ENOMEM : 0;
    }
    const size_t CW = 4096, nch = (inner + CW - 1) / CW;
#pragma omp parallel
    {
        uint8_t *blk = malloc((size_t)n * CW);
        if (!blk) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (size_t j = 0; j < outer * nch; j++) {
            if (!blk)
                continue;
            size_t o = j / nch, c0 = (j % nch) * CW;
            size_t cw = inner - c0 < CW ? inner - c0 : CW;
            uint8_t *base = m + o * (size_t)n * inner + c0;
            for (int k = 0; k < n; k++)
                memcpy(blk + (size_t)k * cw, base + (size_t)k * inner, cw);
            for (int k = 0; k < n; k++) {
                uint8_t *d = base + (size_t)k * inner;
                int lo = k - r < 0 ? 0 : k - r, hi = k + r > n - 1 ? n - 1 : k + r;
                memcpy(d, blk + (size_t)lo * cw, cw);
                for (int q = lo + 1; q <= hi; q++) {
                    const uint8_t *src = blk + (size_t)q * cw;
#pragma omp simd
                    for (size_t c = 0; c < cw; c++)
                        d[c] |= src[c];
                }
            }
        }
        free(blk);
    }
    return fail ? RP_ENOMEM : 0;
}

static void invert(uint8_t *m, size_t n)
{
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++)
        m[i] = !m[i];
}

int rp_morph_dilate(uint8_t *m, const int dim[3], const int r[3])
{
    for (int a = 0; a < 3; a++) {
        int rc = dilate_axis(m, dim, a, r[a]);
        if (rc)
            return rc;
    }
    return 0;
}

int rp_morph_erode(uint8_t *m, const int dim[3], const int r[3])
{
    /* erosion = not dilate(not m); outside counts as foreground because the complement's
     * dilation only sees the inside */
    size_t n = (size_t)dim[0] * dim[1] * dim[2];
    invert(m, n);
    int rc = rp_morph_dilate(m, dim, r);
    invert(m, n);
    return rc;
}

int rp_morph_close(uint8_t *m, const int dim[3], const int r[3])
{
    int rc = rp_morph_dilate(m, dim, r);
    return rc ? rc : rp_morph_erode(m, dim, r);
}

int rp_morph_open(uint8_t *m, const int dim[3], const int r[3])
{
    int rc = rp_morph_erode(m, dim, r);
    return rc ? rc : rp_morph_dilate(m, dim, r);
}

/* ---- 2-D hole filling ---------------------------------------------------------------- */

static int cc_label_impl(const uint8_t *m, const int dim[3], int parallel, rp_cc **out);
static void cc_paint_impl(const rp_cc *cc, const uint8_t *keep, uint8_t *out, uint8_t value,
                          int parallel);

/* Fill one w x h slice in place: background components (4-connected, labelled on runs) that
 * do not touch the slice border are holes and become 1 — only holes of at most max_area
 * pixels when max_area > 0. `inv` is scratch of w*h bytes. */
static int fill_slice(uint8_t *s, int w, int h, uint8_t *inv, long max_area)
{
    size_t n = (size_t)w * h;
    for (size_t i = 0; i < n; i++)
        inv[i] = !s[i];
    int dim[3] = {w, h, 1};
    rp_cc *cc;
    int rc = cc_label_impl(inv, dim, 0, &cc);
    if (rc)
        return rc;
    int nc = rp_cc_count(cc);
    uint8_t *keep = calloc((size_t)nc + 1, 1);
    if (!keep) {
        rp_cc_free(cc);
        return RP_ENOMEM;
    }
    int any = 0;
    for (int c = 0; c < nc; c++) {
        const rp_cc_comp *k = rp_cc_get(cc, c);
        keep[c] = (k->border & 3) == 0 && (max_area <= 0 || k->voxels <= max_area);
        any |= keep[c];
    }
    if (any)
        cc_paint_impl(cc, keep, s, 1, 0);
    free(keep);
    rp_cc_free(cc);
    return 0;
}

int rp_morph_fill_holes_2d(uint8_t *m, const int dim[3], int axis)
{
    return rp_morph_fill_holes_2d_max(m, dim, axis, 0);
}

int rp_morph_fill_holes_2d_max(uint8_t *m, const int dim[3], int axis, long max_area)
{
    /* slice axes (u fastest, v) for slices normal to `axis` */
    int ua = axis == 0 ? 1 : 0, va = axis == 2 ? 1 : 2;
    const int w = dim[ua], h = dim[va], ns = dim[axis];
    size_t stride[3] = {1, (size_t)dim[0], (size_t)dim[0] * dim[1]};
    int fail = 0;
#pragma omp parallel
    {
        uint8_t *s = malloc((size_t)w * h);
        uint8_t *inv = malloc((size_t)w * h);
        if (!s || !inv) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for schedule(dynamic, 2)
        for (int k = 0; k < ns; k++) {
            if (!s || !inv)
                continue;
            uint8_t *base = m + (size_t)k * stride[axis];
            int rc;
            if (axis == 2) {
                rc = fill_slice(base, w, h, inv, max_area);
            } else {
                for (int v = 0; v < h; v++)
                    for (int u = 0; u < w; u++)
                        s[(size_t)v * w + u] = base[u * stride[ua] + v * stride[va]];
                rc = fill_slice(s, w, h, inv, max_area);
                for (int v = 0; v < h; v++)
                    for (int u = 0; u < w; u++)
                        base[u * stride[ua] + v * stride[va]] = s[(size_t)v * w + u];
            }
            if (rc) {
#pragma omp atomic write
                fail = 1;
            }
        }
        free(s);
        free(inv);
    }
    return fail ? RP_ENOMEM : 0;
}

/* ---- connected components ------------------------------------------------------------ */

typedef rp_cc_run cc_run;

struct rp_cc {
    int dim[3];
    size_t nrows;
    size_t *row_start; /* nrows + 1 */
    cc_run *runs;
    int *label; /* per run: parent during union-find, then component label */
    int ncomp;
    rp_cc_comp *comp;
};

static int uf_find(int *parent, int i)
{
    while (parent[i] != i) {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    return i;
}

static void uf_union(int *parent, int a, int b)
{
    a = uf_find(parent, a);
    b = uf_find(parent, b);
    if (a == b)
        return;
    /* the smaller index becomes the root: labels come out in scan order */
    if (a < b)
        parent[b] = a;
    else
        parent[a] = b;
}

/* Union the runs of two rows wherever they overlap along x (6-connectivity). */
static void union_rows(const rp_cc *cc, int *parent, size_t ra, size_t rb)
{
    size_t i = cc->row_start[ra], ie = cc->row_start[ra + 1];
    size_t j = cc->row_start[rb], je = cc->row_start[rb + 1];
    while (i < ie && j < je) {
        const cc_run *a = &cc->runs[i], *b = &cc->runs[j];
        if (a->x0 < b->x1 && b->x0 < a->x1)
            uf_union(parent, (int)i, (int)j);
        if (a->x1 < b->x1)
            i++;
        else
            j++;
    }
}

int rp_cc_label(const uint8_t *m, const int dim[3], rp_cc **out)
{
    return cc_label_impl(m, dim, 1, out);
}

static int cc_label_impl(const uint8_t *m, const int dim[3], int parallel, rp_cc **out)
{
    *out = NULL;
    rp_cc *cc = calloc(1, sizeof *cc);
    if (!cc)
        return RP_ENOMEM;
    memcpy(cc->dim, dim, sizeof cc->dim);
    const int nx = dim[0], ny = dim[1], nz = dim[2];
    cc->nrows = (size_t)ny * nz;
    cc->row_start = calloc(cc->nrows + 1, sizeof *cc->row_start);
    if (!cc->row_start)
        goto nomem;
        /* count runs per row, then fill: both passes in parallel over rows */
#pragma omp parallel for schedule(static) if (parallel)
    for (size_t r = 0; r < cc->nrows; r++) {
        const uint8_t *row = m + r * nx;
        size_t k = 0;
        for (int x = 0; x < nx; x++)
            k += row[x] && (x == 0 || !row[x - 1]);
        cc->row_start[r + 1] = k;
    }
    for (size_t r = 0; r < cc->nrows; r++)
        cc->row_start[r + 1] += cc->row_start[r];
    size_t nruns = cc->row_start[cc->nrows];
    if (nruns >= (size_t)1 << 31) {
        rp_cc_free(cc);
        return RP_EUNSUPPORTED;
    }
    cc->runs = malloc((nruns ? nruns : 1) * sizeof *cc->runs);
    cc->label = malloc((nruns ? nruns : 1) * sizeof *cc->label);
    if (!cc->runs || !cc->label)
        goto nomem;
#pragma omp parallel for schedule(static) if (parallel)
    for (size_t r = 0; r < cc->nrows; r++) {
        const uint8_t *row = m + r * nx;
        size_t k = cc->row_start[r];
        for (int x = 0; x < nx;) {
            if (!row[x]) {
                x++;
                continue;
            }
            int x0 = x;
            while (x < nx && row[x])
                x++;
            cc->runs[k].x0 = x0;
            cc->runs[k].x1 = x;
            cc->label[k] = (int)k;
            k++;
        }
    }
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++) {
            size_t r = (size_t)z * ny + y;
            if (cc->row_start[r] == cc->row_start[r + 1])
                continue;
            if (y > 0)
                union_rows(cc, cc->label, r - 1, r);
            if (z > 0)
                union_rows(cc, cc->label, r - ny, r);
        }
    if (rp_cc_summarise(cc->runs, cc->row_start, cc->nrows, cc->label, nruns, cc->dim, &cc->comp,
                        &cc->ncomp) != 0)
        goto nomem;
    *out = cc;
    return 0;
nomem:
    rp_cc_free(cc);
    return RP_ENOMEM;
}

int rp_cc_summarise(const rp_cc_run *runs, const size_t *row_start, size_t nrows, int *label,
                    size_t nruns, const int dim[3], rp_cc_comp **comp, int *ncomp)
{
    const int nx = dim[0], ny = dim[1], nz = dim[2];
    /* compact labels: every set's root is its smallest run index, so after full path
     * compression a single forward pass can number the roots in scan order */
    for (size_t i = 0; i < nruns; i++)
        label[i] = uf_find(label, (int)i);
    int n = 0;
    for (size_t i = 0; i < nruns; i++)
        label[i] = (size_t)label[i] == i ? -(++n) : label[label[i]];
    for (size_t i = 0; i < nruns; i++)
        label[i] = -label[i] - 1;
    rp_cc_comp *cs = calloc(n ? (size_t)n : 1, sizeof *cs);
    if (!cs)
        return RP_ENOMEM;
    for (int c = 0; c < n; c++) {
        cs[c].bbox[0] = cs[c].bbox[2] = cs[c].bbox[4] = 1 << 30;
        cs[c].bbox[1] = cs[c].bbox[3] = cs[c].bbox[5] = -1;
    }
    for (size_t r = 0; r < nrows; r++) {
        int y = (int)(r % ny), z = (int)(r / ny);
        for (size_t i = row_start[r]; i < row_start[r + 1]; i++) {
            rp_cc_comp *c = &cs[label[i]];
            int x0 = runs[i].x0, x1 = runs[i].x1, len = x1 - x0;
            c->voxels += len;
            c->sum[0] += (double)len * (x0 + x1 - 1) / 2.0;
            c->sum[1] += (double)len * y;
            c->sum[2] += (double)len * z;
            if (x0 < c->bbox[0])
                c->bbox[0] = x0;
            if (x1 - 1 > c->bbox[1])
                c->bbox[1] = x1 - 1;
            if (y < c->bbox[2])
                c->bbox[2] = y;
            if (y > c->bbox[3])
                c->bbox[3] = y;
            if (z < c->bbox[4])
                c->bbox[4] = z;
            if (z > c->bbox[5])
                c->bbox[5] = z;
            if (x0 == 0 || x1 == nx)
                c->border |= 1;
            if (y == 0 || y == ny - 1)
                c->border |= 2;
            if (z == 0 || z == nz - 1)
                c->border |= 4;
        }
    }
    *comp = cs;
    *ncomp = n;
    return 0;
}

void rp_cc_free(rp_cc *cc)
{
    if (!cc)
        return;
    free(cc->row_start);
    free(cc->runs);
    free(cc->label);
    free(cc->comp);
    free(cc);
}

int rp_cc_count(const rp_cc *cc)
{
    return cc->ncomp;
}

const rp_cc_comp *rp_cc_get(const rp_cc *cc, int label)
{
    return label >= 0 && label < cc->ncomp ? &cc->comp[label] : NULL;
}

void rp_cc_paint(const rp_cc *cc, const uint8_t *keep, uint8_t *out, uint8_t value)
{
    cc_paint_impl(cc, keep, out, value, 1);
}

static void cc_paint_impl(const rp_cc *cc, const uint8_t *keep, uint8_t *out, uint8_t value,
                          int parallel)
{
    const size_t nx = (size_t)cc->dim[0];
#pragma omp parallel for schedule(static) if (parallel)
    for (size_t r = 0; r < cc->nrows; r++)
        for (size_t i = cc->row_start[r]; i < cc->row_start[r + 1]; i++)
            if (keep[cc->label[i]])
                memset(out + r * nx + cc->runs[i].x0, value,
                       (size_t)(cc->runs[i].x1 - cc->runs[i].x0));
}

int rp_morph_fill_holes_3d(uint8_t *m, const int dim[3])
{
    size_t n = (size_t)dim[0] * dim[1] * dim[2];
    invert(m, n);
    rp_cc *cc;
    int rc = rp_cc_label(m, dim, &cc);
    invert(m, n);
    if (rc)
        return rc;
    uint8_t *keep = calloc((size_t)rp_cc_count(cc) + 1, 1);
    if (!keep) {
        rp_cc_free(cc);
        return RP_ENOMEM;
    }
    for (int c = 0; c < rp_cc_count(cc); c++)
        keep[c] = rp_cc_get(cc, c)->border == 0;
    rp_cc_paint(cc, keep, m, 1);
    free(keep);
    rp_cc_free(cc);
    return 0;
}
