/*
 * pipeline/ct/bits.c — bit-packed binary volumes: thresholds, box morphology, connected
 * components and 2-D hole filling (see ctmask_internal.h for why and the layout).
 */
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/ct/ctmask_internal.h"
#include "pipeline/ct/slicecc_internal.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

static inline uint64_t last_mask(int nx)
{
    int r = nx % 64;
    return r ? (((uint64_t)1 << r) - 1) : ~(uint64_t)0;
}

static inline size_t nrows(const rp_bits *b)
{
    return (size_t)b->ny * b->nz;
}

int rp_bits_init(rp_bits *b, const int dim[3])
{
    b->nx = dim[0];
    b->ny = dim[1];
    b->nz = dim[2];
    b->wpr = (dim[0] + 63) / 64;
    b->w = rp_mem_calloc(((size_t)b->wpr * b->ny * b->nz + 1) * sizeof *b->w);
    b->scratch = NULL;
    return b->w ? 0 : RP_ENOMEM;
}

void rp_bits_free(rp_bits *b)
{
    if (!b)
        return;
    free(b->w);
    free(b->scratch);
    b->w = b->scratch = NULL;
}

size_t rp_bits_count(const rp_bits *b)
{
    size_t n = nrows(b) * b->wpr, c = 0;
    const uint64_t *w = b->w;
#pragma omp parallel for schedule(static) reduction(+ : c) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        c += (size_t)__builtin_popcountll(w[i]);
    return c;
}

/* 64 voxels (n <= 64 valid) compared with t into one word. */
static inline uint64_t pack_cmp(const float *s, int n, float t, int op)
{
    uint64_t w = 0;
    int k = 0;
#ifdef __SSE2__
    const __m128 tv = _mm_set1_ps(t);
    if (op == RP_BITS_GT)
        for (; k + 4 <= n; k += 4)
            w |= (uint64_t)_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(s + k), tv)) << k;
    else
        for (; k + 4 <= n; k += 4)
            w |= (uint64_t)_mm_movemask_ps(_mm_cmplt_ps(_mm_loadu_ps(s + k), tv)) << k;
#endif
    for (; k < n; k++)
        w |= (uint64_t)(op == RP_BITS_GT ? s[k] > t : s[k] < t) << k;
    return w;
}

void rp_bits_threshold(rp_bits *b, const float *d, float thr, int op, const rp_bits *and)
{
    const size_t nr = nrows(b);
    const int nx = b->nx, wpr = b->wpr;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < nr; r++) {
        const float *src = d + r * (size_t)nx;
        uint64_t *dst = b->w + r * wpr;
        const uint64_t *a = and? and->w + r * wpr : NULL;
        for (int j = 0; j < wpr; j++) {
            int n = nx - 64 * j < 64 ? nx - 64 * j : 64;
            if (a && !a[j]) {
                dst[j] = 0; /* nothing to keep: skip the 64 loads */
                continue;
            }
            uint64_t w = pack_cmp(src + 64 * j, n, thr, op);
            dst[j] = a ? w & a[j] : w;
        }
    }
}

void rp_bits_from_bytes(rp_bits *b, const uint8_t *m)
{
    const size_t nr = nrows(b);
    const int nx = b->nx, wpr = b->wpr;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < nr; r++) {
        const uint8_t *src = m + r * (size_t)nx;
        uint64_t *dst = b->w + r * wpr;
        for (int j = 0; j < wpr; j++) {
            int n = nx - 64 * j < 64 ? nx - 64 * j : 64, k = 0;
            const uint8_t *s = src + 64 * j;
            uint64_t w = 0;
#ifdef __SSE2__
            const __m128i z = _mm_setzero_si128();
            for (; k + 16 <= n; k += 16) {
                int zero =
                    _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(s + k)), z));
                w |= (uint64_t)(~zero & 0xFFFF) << k;
            }
#endif
            for (; k < n; k++)
                w |= (uint64_t)(s[k] != 0) << k;
            dst[j] = w;
        }
    }
}

/* byte b -> 8 bytes of 0/1, little-endian */
static uint64_t spread8(unsigned v)
{
    uint64_t o = 0;
    for (int i = 0; i < 8; i++)
        o |= (uint64_t)((v >> i) & 1) << (8 * i);
    return o;
}

static inline int zero64(const uint8_t *p, int n)
{
    uint64_t acc = 0;
    int k = 0;
    for (; k + 8 <= n; k += 8) {
        uint64_t w;
        memcpy(&w, p + k, 8);
        acc |= w;
    }
    for (; k < n; k++)
        acc |= p[k];
    return acc == 0;
}

void rp_bytes_zero(uint8_t *m, size_t n)
{
#pragma omp parallel for schedule(static) if (n > (1u << 20))
    for (size_t i = 0; i < n; i += 64) {
        int l = n - i < 64 ? (int)(n - i) : 64;
        if (!zero64(m + i, l))
            memset(m + i, 0, (size_t)l);
    }
}

void rp_bits_to_bytes(const rp_bits *b, uint8_t *m)
{
    static uint64_t lut[256];
    static int lut_ready;
    if (!__atomic_load_n(&lut_ready, __ATOMIC_ACQUIRE)) {
        for (unsigned v = 0; v < 256; v++)
            lut[v] = spread8(v);
        __atomic_store_n(&lut_ready, 1, __ATOMIC_RELEASE);
    }
    const size_t nr = nrows(b);
    const int nx = b->nx, wpr = b->wpr;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < nr; r++) {
        uint8_t *dst = m + r * (size_t)nx;
        const uint64_t *src = b->w + r * wpr;
        int x = 0;
        for (int j = 0; j < wpr; j++) {
            uint64_t w = src[j];
            if (!w) { /* see rp_bytes_zero */
                int l = nx - x < 64 ? nx - x : 64;
                if (!zero64(dst + x, l))
                    memset(dst + x, 0, (size_t)l);
                x += l;
            } else if (nx - x >= 64) {
                for (int q = 0; q < 8; q++) {
                    uint64_t v = lut[(w >> (8 * q)) & 0xFF];
                    memcpy(dst + x + 8 * q, &v, 8);
                }
                x += 64;
            } else {
                for (; x < nx; x++, w >>= 1)
                    dst[x] = (uint8_t)(w & 1);
            }
        }
    }
}

/* ---- morphology ------------------------------------------------------------------------ */

/* One step of radius 1 along x on every row: dilate (outside 0) or erode (outside 1). */
static void x_step(rp_bits *b, int erode)
{
    const size_t nr = nrows(b);
    const int wpr = b->wpr;
    const uint64_t lm = last_mask(b->nx), ones = ~(uint64_t)0;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < nr; r++) {
        uint64_t *w = b->w + r * wpr;
        if (erode)
            w[wpr - 1] |= ~lm; /* beyond the row counts as foreground */
        uint64_t carry = erode ? 1 : 0;
        for (int j = 0; j < wpr; j++) {
            uint64_t cur = w[j], next = j + 1 < wpr ? w[j + 1] : erode ? ones : 0;
            uint64_t left = (cur << 1) | carry, right = (cur >> 1) | (next << 63);
            carry = cur >> 63;
            w[j] = erode ? cur & left & right : cur | left | right;
        }
        w[wpr - 1] &= lm;
    }
}

/* Radius r along y (axis 1) or z (axis 2): every row becomes the OR (dilate) or AND (erode)
 * of the rows within r; rows outside the volume are left out, which for erosion is the same
 * as counting them as foreground. */
static int yz_pass(rp_bits *b, int axis, int r, int erode)
{
    const int n = axis == 1 ? b->ny : b->nz;
    if (r <= 0 || n == 1)
        return 0;
    if (r >= n)
        r = n - 1;
    const size_t words = nrows(b) * b->wpr;
    if (!b->scratch && !(b->scratch = rp_mem_alloc((words + 1) * sizeof *b->scratch)))
        return RP_ENOMEM;
    /* the rows as they were go to scratch, the result to b->w: swap instead of copying */
    uint64_t *src = b->w;
    b->w = b->scratch;
    b->scratch = src;
    const int wpr = b->wpr, ny = b->ny;
    const size_t nr = nrows(b);
    const size_t stride = axis == 1 ? (size_t)wpr : (size_t)wpr * ny;
#pragma omp parallel for schedule(static)
    for (size_t row = 0; row < nr; row++) {
        int k = axis == 1 ? (int)(row % ny) : (int)(row / ny);
        int lo = k - r < 0 ? 0 : k - r, hi = k + r > n - 1 ? n - 1 : k + r;
        uint64_t *dst = b->w + row * wpr;
        const uint64_t *base = src + row * wpr - (size_t)(k - lo) * stride;
        for (int j = 0; j < wpr; j++) {
            uint64_t acc = base[j];
            for (int q = 1; q <= hi - lo; q++)
                acc =
                    erode ? acc & base[(size_t)q * stride + j] : acc | base[(size_t)q * stride + j];
            dst[j] = acc;
        }
    }
    return 0;
}

static int morph(rp_bits *b, const int r[3], int erode)
{
    int rx = r[0];
    if (b->nx > 1 && rx > 0) {
        if (rx >= b->nx)
            rx = b->nx - 1;
        for (int i = 0; i < rx; i++)
            x_step(b, erode);
    }
    int rc = yz_pass(b, 1, r[1], erode);
    return rc ? rc : yz_pass(b, 2, r[2], erode);
}

int rp_bits_dilate(rp_bits *b, const int r[3])
{
    return morph(b, r, 0);
}

int rp_bits_erode(rp_bits *b, const int r[3])
{
    return morph(b, r, 1);
}

/* ---- runs and 3-D components ----------------------------------------------------------- */

size_t rp_row_runs(const uint64_t *w, int wpr, rp_brun *out)
{
    size_t n = 0;
    uint64_t prev = 0;
    int start = 0;
    for (int j = 0; j < wpr; j++) {
        uint64_t cur = w[j];
        uint64_t t = cur ^ ((cur << 1) | prev); /* bit x: value(x) != value(x-1) */
        prev = cur >> 63;
        while (t) {
            int bit = __builtin_ctzll(t);
            t &= t - 1;
            int x = 64 * j + bit;
            if ((cur >> bit) & 1) {
                start = x;
            } else {
                if (out)
                    out[n] = (rp_brun){start, x};
                n++;
            }
        }
    }
    if (prev) { /* a run reaching the end of the last word (nx a multiple of 64) */
        if (out)
            out[n] = (rp_brun){start, 64 * wpr};
        n++;
    }
    return n;
}

void rp_row_set(uint64_t *row, int x0, int x1)
{
    while (x0 < x1) {
        int j = x0 / 64, b0 = x0 % 64;
        int b1 = x1 - 64 * j >= 64 ? 64 : x1 - 64 * j;
        uint64_t m = (b1 == 64 ? ~(uint64_t)0 : (((uint64_t)1 << b1) - 1)) & (~(uint64_t)0 << b0);
        row[j] |= m;
        x0 = 64 * j + b1;
    }
}

struct rp_bcc {
    int dim[3];
    size_t nrows;
    size_t *row_start; /* nrows + 1 */
    rp_brun *runs;
    int *label;
    int ncomp;
    rp_cc_comp *comp;
};

int rp_uf_find(int *parent, int i)
{
    while (parent[i] != i) {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    return i;
}

void rp_uf_union(int *parent, int a, int b)
{
    a = rp_uf_find(parent, a);
    b = rp_uf_find(parent, b);
    if (a == b)
        return;
    if (a < b) /* the smaller index is the root: labels come out in scan order */
        parent[b] = a;
    else
        parent[a] = b;
}

void rp_uf_union_rows(const rp_brun *runs, int *parent, size_t i, size_t ie, size_t j, size_t je)
{
    while (i < ie && j < je) {
        const rp_brun *a = &runs[i], *b = &runs[j];
        if (a->x0 < b->x1 && b->x0 < a->x1)
            rp_uf_union(parent, (int)i, (int)j);
        if (a->x1 < b->x1)
            i++;
        else
            j++;
    }
}

int rp_bcc_label(const rp_bits *b, rp_bcc **out)
{
    *out = NULL;
    rp_bcc *cc = calloc(1, sizeof *cc);
    if (!cc)
        return RP_ENOMEM;
    cc->dim[0] = b->nx;
    cc->dim[1] = b->ny;
    cc->dim[2] = b->nz;
    const int ny = b->ny, nz = b->nz, wpr = b->wpr;
    cc->nrows = nrows(b);
    cc->row_start = rp_mem_calloc((cc->nrows + 1) * sizeof *cc->row_start);
    if (!cc->row_start)
        goto nomem;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < cc->nrows; r++)
        cc->row_start[r + 1] = rp_row_runs(b->w + r * wpr, wpr, NULL);
    for (size_t r = 0; r < cc->nrows; r++)
        cc->row_start[r + 1] += cc->row_start[r];
    size_t nruns = cc->row_start[cc->nrows];
    if (nruns >= (size_t)1 << 31) {
        rp_bcc_free(cc);
        return RP_EUNSUPPORTED;
    }
    /* huge pages: these are megabytes, and 4 KiB faults cost a trap each on a VM */
    cc->runs = rp_mem_alloc((nruns ? nruns : 1) * sizeof *cc->runs);
    cc->label = rp_mem_alloc((nruns ? nruns : 1) * sizeof *cc->label);
    if (!cc->runs || !cc->label)
        goto nomem;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < cc->nrows; r++) {
        size_t k0 = cc->row_start[r];
        size_t k = rp_row_runs(b->w + r * wpr, wpr, cc->runs + k0);
        for (size_t i = 0; i < k; i++)
            cc->label[k0 + i] = (int)(k0 + i);
    }
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++) {
            size_t r = (size_t)z * ny + y;
            size_t i = cc->row_start[r], ie = cc->row_start[r + 1];
            if (i == ie)
                continue;
            if (y > 0)
                rp_uf_union_rows(cc->runs, cc->label, cc->row_start[r - 1], cc->row_start[r], i,
                                 ie);
            if (z > 0)
                rp_uf_union_rows(cc->runs, cc->label, cc->row_start[r - ny],
                                 cc->row_start[r - ny + 1], i, ie);
        }
    if (rp_cc_summarise(cc->runs, cc->row_start, cc->nrows, cc->label, nruns, cc->dim, &cc->comp,
                        &cc->ncomp) != 0)
        goto nomem;
    *out = cc;
    return 0;
nomem:
    rp_bcc_free(cc);
    return RP_ENOMEM;
}

void rp_bcc_free(rp_bcc *cc)
{
    if (!cc)
        return;
    free(cc->row_start);
    free(cc->runs);
    free(cc->label);
    free(cc->comp);
    free(cc);
}

int rp_bcc_count(const rp_bcc *cc)
{
    return cc->ncomp;
}

const rp_cc_comp *rp_bcc_get(const rp_bcc *cc, int label)
{
    return label >= 0 && label < cc->ncomp ? &cc->comp[label] : NULL;
}

void rp_bcc_paint(const rp_bcc *cc, const uint8_t *keep, rp_bits *out)
{
    const int wpr = out->wpr;
    memset(out->w, 0, cc->nrows * (size_t)wpr * sizeof *out->w);
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < cc->nrows; r++)
        for (size_t i = cc->row_start[r]; i < cc->row_start[r + 1]; i++)
            if (keep[cc->label[i]])
                rp_row_set(out->w + r * wpr, cc->runs[i].x0, cc->runs[i].x1);
}

/* ---- 2-D hole filling -------------------------------------------------------------------- */

int rp_bits_fill_holes_2d(rp_bits *b, int axis, long max_area)
{
    if (axis != 2) {
        /* slices across rows: through bytes and the byte kernel (not the common case; axial
         * CT has its slices along z) */
        int dim[3] = {b->nx, b->ny, b->nz};
        uint8_t *m = malloc((size_t)b->nx * b->ny * b->nz);
        if (!m)
            return RP_ENOMEM;
        rp_bits_to_bytes(b, m);
        int rc = rp_morph_fill_holes_2d_max(m, dim, axis, max_area);
        if (!rc)
            rp_bits_from_bytes(b, m);
        free(m);
        return rc;
    }
    const int ny = b->ny, wpr = b->wpr, nx = b->nx;
    const uint64_t lm = last_mask(nx);
    int fail = 0;
#pragma omp parallel reduction(| : fail)
    {
        rp_slicecc sc;
        rp_slicecc_init(&sc);
        uint64_t *inv = malloc((size_t)ny * wpr * sizeof *inv);
        if (!inv)
            fail = 1;
#pragma omp for schedule(dynamic, 4)
        for (int z = 0; z < b->nz; z++) {
            if (fail)
                continue;
            uint64_t *plane = b->w + (size_t)z * ny * wpr;
            for (size_t i = 0; i < (size_t)ny * wpr; i++)
                inv[i] = ~plane[i];
            for (int y = 0; y < ny; y++)
                inv[(size_t)y * wpr + wpr - 1] &= lm;
            if (rp_slicecc_label(&sc, inv, nx, ny, wpr)) {
                fail = 1;
                continue;
            }
            for (int c = 0; c < sc.ncomp; c++) {
                const rp_slicecomp *k = &sc.comp[c];
                if (k->border || (max_area > 0 && k->area > max_area))
                    continue;
                for (size_t i = k->first; i != (size_t)-1; i = sc.next[i])
                    rp_row_set(plane + (size_t)sc.run_y[i] * wpr, sc.runs[i].x0, sc.runs[i].x1);
            }
        }
        rp_slicecc_free(&sc);
        free(inv);
    }
    return fail ? RP_ENOMEM : 0;
}
