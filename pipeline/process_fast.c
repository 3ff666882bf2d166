/* pipeline/process_fast.c — cores, native -> float in one pass, storage description (see
 * process_fast_internal.h). */
#include "pipeline/process_fast_internal.h"

#include <limits.h>
#include <math.h>
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

/* cgroup v2 CPU quota of this process in whole cores (rounded up), 0 when unlimited. */
static int cgroup_cores(void)
{
    FILE *f = fopen("/proc/self/cgroup", "r");
    char line[512], path[700];
    int cores = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "0::", 3) != 0)
            continue;
        line[strcspn(line, "\n")] = 0;
        snprintf(path, sizeof path, "/sys/fs/cgroup%s/cpu.max", line + 3);
        FILE *q = fopen(path, "r");
        if (q) {
            char quota[32] = "";
            long period = 0;
            if (fscanf(q, "%31s %ld", quota, &period) == 2 && strcmp(quota, "max") != 0 &&
                period > 0) {
                long qv = atol(quota);
                if (qv > 0)
                    cores = (int)((qv + period - 1) / period);
            }
            fclose(q);
        }
        break;
    }
    fclose(f);
    return cores;
}

int rp_pf_threads(int requested)
{
    if (requested > 0)
        return requested;
    /* omp_get_max_threads() is OMP_NUM_THREADS when set (a node job's share of the cores),
     * else the CPUs of the affinity mask (taskset, Slurm, cpusets) */
    int n = omp_get_max_threads();
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int a = CPU_COUNT(&set);
        if (a > 0 && a < n)
            n = a;
    }
    int q = cgroup_cores();
    if (q > 0 && q < n)
        n = q;
    return n > 0 ? n : 1;
}

int rp_pf_direct_ok(const rp_stack *st)
{
    const rp_dcm_info *ref = st->ref;
    /* the loader's float path (varying rescale, modality LUT) and RGB keep their own way */
    return !st->need_resample && !st->varying_rescale &&
           !(ref->has_modality_lut && !ref->enhanced) && ref->samples_per_pixel == 1;
}

/* Stored-value range that is padding in this slice's file, or 0 when it has none. The
 * loader inverts MONOCHROME1 after it tests for padding: the test here undoes that. */
static int pad_range(const rp_dcm_info *in, int inverted, long *lo, long *hi)
{
    if (!in || !in->has_padding_value || in->samples_per_pixel != 1)
        return 0;
    long a = in->padding_value, b = in->has_padding_range ? in->padding_range_limit : a;
    *lo = a < b ? a : b;
    *hi = a < b ? b : a;
    if (inverted) {
        long smin = in->pixel_representation ? -(1L << (in->bits_stored - 1)) : 0;
        long smax = in->pixel_representation ? (1L << (in->bits_stored - 1)) - 1
                                             : (long)((1UL << in->bits_stored) - 1);
        long l2 = smin + smax - *hi, h2 = smin + smax - *lo;
        *lo = l2;
        *hi = h2;
    }
    return 1;
}

/* n samples of type T from s to d (and the padding test into p when not NULL) */
#define CONVERT(T, s_, d_, p_, n)                                                                  \
    do {                                                                                           \
        const T *sv_ = (const T *)(s_);                                                            \
        float *dr = (d_);                                                                          \
        uint8_t *pr = (p_);                                                                        \
        if (pr) {                                                                                  \
            const long l = lo, h = hi;                                                             \
            _Pragma("omp simd") for (size_t i = 0; i < (n); i++)                                   \
            {                                                                                      \
                long sv = (long)sv_[i];                                                            \
                dr[i] = (float)(a * (double)sv_[i] + b);                                           \
                pr[i] = (uint8_t)((sv >= l) & (sv <= h));                                          \
            }                                                                                      \
        } else {                                                                                   \
            _Pragma("omp simd") for (size_t i = 0; i < (n); i++) dr[i] =                           \
                (float)(a * (double)sv_[i] + b);                                                   \
        }                                                                                          \
    } while (0)

/* One slice: src in the stack's row order, or top-down (row_bytes > 0: the file's order,
 * flipped here, which costs nothing in this pass and saves the loader flipping it). Returns
 * the padding voxels marked in pm (0 without pm). */
RP_SIMD_CLONES static long convert_slice(rp_sample_type t, const void *src, size_t row_bytes,
                                         size_t nx, size_t ny, double a, double b, long lo, long hi,
                                         float *dst, uint8_t *pm, uint64_t *pb, uint8_t *rowbuf)
{
    /* packed mask (pb): the padding test of one row into rowbuf (nx bytes), then packed */
    const size_t rows = row_bytes || pb ? ny : 1, n = row_bytes || pb ? nx : nx * ny;
    const size_t wpr = (nx + 63) / 64;
    long npad = 0;
    for (size_t y = 0; y < rows; y++) {
        const void *row = row_bytes ? (const uint8_t *)src + (ny - 1 - y) * row_bytes
                                    : (const uint8_t *)src + y * n * rp_sample_bytes(t);
        float *d = dst + y * n;
        uint8_t *p = pb ? rowbuf : pm ? pm + y * n : NULL;
        switch (t) {
        case RP_ST_U8:
            CONVERT(uint8_t, row, d, p, n);
            break;
        case RP_ST_S8:
            CONVERT(int8_t, row, d, p, n);
            break;
        case RP_ST_S16:
            CONVERT(int16_t, row, d, p, n);
            break;
        case RP_ST_U16:
            CONVERT(uint16_t, row, d, p, n);
            break;
        case RP_ST_S32:
            CONVERT(int32_t, row, d, p, n);
            break;
        case RP_ST_U32:
            CONVERT(uint32_t, row, d, p, n);
            break;
        default:
            CONVERT(float, row, d, p, n);
            break;
        }
        if (p) {
            int c = 0; /* the row just written, still in cache */
#pragma omp simd reduction(+ : c)
            for (size_t i = 0; i < n; i++)
                c += p[i];
            npad += c;
            if (pb) {
                uint64_t *w = pb + y * wpr;
                for (size_t j = 0; j < wpr; j++) {
                    uint64_t acc = 0;
                    for (size_t x = 64 * j; x < n && x < 64 * j + 64; x++)
                        acc |= (uint64_t)p[x] << (x % 64);
                    w[j] = acc;
                }
            }
        }
    }
    return npad;
}

int rp_pf_to_float(rp_stack_data *d, const rp_stack *st, const rp_dcm_info *const *infos,
                   float *out, uint8_t *pad_out, rp_mask *pad_packed, rp_vstats *stats)
{
    if (stats)
        rp_vstats_init(stats);
    if (pad_packed && (pad_out || pad_packed->data || st->nt != 1 || pad_packed->dim[0] != st->nx ||
                       pad_packed->dim[1] != st->ny || pad_packed->dim[2] != st->nz))
        return RP_EINVAL;
    size_t es;
    switch (d->type) {
    case RP_ST_U8:
    case RP_ST_S8:
        es = 1;
        break;
    case RP_ST_S16:
    case RP_ST_U16:
        es = 2;
        break;
    case RP_ST_S32:
    case RP_ST_U32:
    case RP_ST_F32:
        es = 4;
        break;
    default:
        return RP_EUNSUPPORTED;
    }
    const size_t slice_vox = (size_t)st->nx * st->ny, nslices = (size_t)st->nz * st->nt;
    const double a = d->scl_slope == 0 ? 1 : d->scl_slope, b = d->scl_inter;
    int fail = 0;
    /* Zero-copy slices of single-frame files: each file's buffer is freed as soon as its
     * slice is converted, so the native series and the float volume are never both whole
     * in memory. own[k]: the buffer index holding slice k alone, or -1. */
    long *own = NULL;
    if (!d->data && d->n_bufs == nslices && d->n_slices == nslices &&
        (own = malloc(nslices * sizeof *own)) != NULL) {
        for (size_t k = 0; k < nslices; k++) {
            own[k] = -1;
            for (size_t i = 0; i < d->n_bufs; i++)
                if (d->bufs[i] == d->slice[k]) {
                    own[k] = (long)i;
                    break;
                }
        }
    }
    long npad = 0;
#pragma omp parallel reduction(| : fail) reduction(+ : npad)
    {
        rp_vstats ts;
        rp_vstats_init(&ts);
#pragma omp for schedule(static)
        for (size_t k = 0; k < nslices; k++) {
            const void *src = d->data           ? (const uint8_t *)d->data + k * slice_vox * es
                              : k < d->n_slices ? d->slice[k]
                                                : NULL;
            float *dst = out + k * slice_vox;
            if (!src) {
                fail = 1;
                continue;
            }
            long lo = 0, hi = -1;
            uint8_t *pm = NULL, *rowbuf = NULL;
            uint64_t *pb = NULL;
            if (pad_out || pad_packed) {
                const rp_dcm_info *in =
                    infos && k < (size_t)st->n_refs ? infos[st->slice[k].file] : NULL;
                int has = d->type != RP_ST_F32 && pad_range(in, d->inverted_mono1, &lo, &hi);
                if (pad_out) {
                    pm = pad_out + k * slice_vox;
                    if (!has) {
                        memset(pm, 0, slice_vox);
                        pm = NULL;
                    }
                } else if (has) { /* the packed mask starts zero: slices without padding stay so */
                    pb = pad_packed->bits + k * (size_t)st->ny * (size_t)pad_packed->wpr;
                    if (!(rowbuf = malloc((size_t)st->nx))) {
                        fail = 1;
                        continue;
                    }
                }
            }
            npad += convert_slice(d->type, src, d->data ? 0 : d->stored_row_bytes, (size_t)st->nx,
                                  (size_t)st->ny, a, b, lo, hi, dst, pm, pb, rowbuf);
            free(rowbuf);
            if (stats) /* the slice just written, still in cache */
                rp_vstats_add(&ts, dst, slice_vox);
            if (own && own[k] >= 0) {
                rp_dcm_pixels_free(d->bufs[own[k]]);
                d->bufs[own[k]] = NULL;
                d->slice[k] = NULL;
            }
        }
        if (stats) {
#pragma omp critical(rp_pf_stats)
            rp_vstats_merge(stats, &ts);
        }
    }
    free(own);
    if (pad_out || pad_packed)
        d->n_padding = npad; /* the loader's count, which RP_LOAD_ROWS_AS_STORED leaves here */
    return fail ? RP_EINTERNAL : 0;
}

/* ---- deferred volume: the decoded slices read by the first resampling pass ------------- */

typedef struct pf_src {
    rp_stack_data d; /* taken over: the slices and their buffers */
    size_t nx, ny, es;
    double a, b;
    long *lo, *hi;  /* per slice: the stored range that is padding, when has[z] */
    uint8_t *has;
    long *own; /* per slice: the buffer holding it alone, or -1 */
    float fill;
} pf_src;

/* The values rp_pf_to_float() and rp_pf_fill_padding_packed() together leave in the float
 * volume, for one piece of one row: the conversion pass's own kernel, then the fill where the
 * stored value is padding (in pieces, so the padding bytes stay on the stack). */
static void src_row(void *user, int y, int z, int x0, int n, float *out)
{
    enum { PIECE = 1024 };
    const pf_src *s = user;
    const uint8_t *base = s->d.slice[z];
    const uint8_t *row = s->d.stored_row_bytes
                             ? base + (s->ny - 1 - (size_t)y) * s->d.stored_row_bytes
                             : base + (size_t)y * s->nx * s->es;
    row += (size_t)x0 * s->es;
    if (!s->has[z]) {
        convert_slice(s->d.type, row, 0, (size_t)n, 1, s->a, s->b, 0, -1, out, NULL, NULL, NULL);
        return;
    }
    uint8_t pm[PIECE];
    for (int x = 0; x < n; x += PIECE) {
        const int m = n - x < PIECE ? n - x : PIECE;
        convert_slice(s->d.type, row + (size_t)x * s->es, 0, (size_t)m, 1, s->a, s->b, s->lo[z],
                      s->hi[z], out + x, pm, NULL, NULL);
        for (int i = 0; i < m; i++)
            out[x + i] = pm[i] ? s->fill : out[x + i];
    }
}

static void src_slice_done(void *user, int z)
{
    pf_src *s = user;
    if (s->own && s->own[z] >= 0) {
        rp_dcm_pixels_free(s->d.bufs[s->own[z]]);
        s->d.bufs[s->own[z]] = NULL;
        s->d.slice[z] = NULL;
    }
}

static void src_release(void *user)
{
    pf_src *s = user;
    if (!s)
        return;
    rp_stack_data_free(&s->d);
    free(s->lo);
    free(s->hi);
    free(s->has);
    free(s->own);
    free(s);
}

/* Per slice of the pre-pass: statistics of the voxels that are not padding. */
typedef struct slice_stats {
    rp_vstats v;
    size_t below; /* below -1024 */
    long npad;
} slice_stats;

/* One converted slice f (nx * ny floats; padding marked in pb, rows of wpr words, or pb NULL):
 * the statistics of its voxels that are not padding. A row without padding is measured as it
 * lies; the others through g (nx floats), their real voxels gathered. */
static void slice_stats_of(const float *f, const uint64_t *pb, size_t nx, size_t ny, size_t wpr,
                           float *g, slice_stats *o)
{
    rp_vstats_init(&o->v);
    size_t below = 0;
    for (size_t y = 0; y < ny; y++) {
        const float *r = f + y * nx;
        const uint64_t *w = pb ? pb + y * wpr : NULL;
        uint64_t any = 0;
        for (size_t j = 0; w && j < wpr; j++)
            any |= w[j];
        size_t m = nx;
        if (any) {
            m = 0;
            for (size_t x = 0; x < nx; x++) {
                g[m] = r[x];
                m += !((w[x / 64] >> (x % 64)) & 1);
            }
            r = g;
        }
        int cb = 0;
#pragma omp simd reduction(+ : cb)
        for (size_t x = 0; x < m; x++)
            cb += r[x] < -1024.0f;
        below += (size_t)cb;
        rp_vstats_add(&o->v, r, m);
    }
    o->below = below;
}

/* One int16 slice with no Pixel Padding whose values are exactly stored + b (slope 1, an
 * integral intercept, |b| <= 13000 so that a value squared fits 32 bits): the figures
 * slice_stats_of() takes from the converted floats, straight from the samples in one pass per
 * row (every sum is of integers below 2^53, so both are exact and equal). */
RP_SIMD_CLONES static void slice_stats_s16(const int16_t *src, size_t row_bytes, size_t nx,
                                           size_t ny, int b, slice_stats *o)
{
    rp_vstats_init(&o->v);
    size_t below = 0;
    for (size_t y = 0; y < ny; y++) {
        const int16_t *r = row_bytes
                               ? (const int16_t *)((const uint8_t *)src + (ny - 1 - y) * row_bytes)
                               : src + y * nx;
        int lo = INT_MAX, hi = INT_MIN, nb = 0;
        double sum = 0, ss = 0;
#pragma omp simd reduction(min : lo) reduction(max : hi) reduction(+ : sum, ss, nb)
        for (size_t i = 0; i < nx; i++) {
            const int v = r[i] + b;
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
            sum += (double)v;
            ss += (double)(v * v);
            nb += v < -1024;
        }
        rp_vstats row = {.lo = (float)lo, .hi = (float)hi, .sum = sum, .sumsq = ss, .n = nx};
        /* a row's extremes are counted only when they may be the slice's */
        if (row.lo <= o->v.lo || row.hi >= o->v.hi) {
            int clo = 0, chi = 0;
#pragma omp simd reduction(+ : clo, chi)
            for (size_t i = 0; i < nx; i++) {
                clo += r[i] + b == lo;
                chi += r[i] + b == hi;
            }
            row.n_lo = (size_t)(row.lo <= o->v.lo ? clo : 0);
            row.n_hi = (size_t)(row.hi >= o->v.hi ? chi : 0);
        }
        rp_vstats_merge(&o->v, &row);
        below += (size_t)nb;
    }
    o->below = below;
    o->npad = 0;
}

/* The statistics of the whole filled volume from those of its slices (merged in slice order,
 * so the sums do not depend on the threads): padding voxels hold the fill, the lowest value. */
static void merge_stats(const slice_stats *ps, size_t nslices, rp_vol_source *o, float *fill,
                        long *npad, size_t *good)
{
    rp_vstats *v = &o->stats;
    rp_vstats_init(v);
    size_t below = 0;
    long np = 0;
    for (size_t k = 0; k < nslices; k++) {
        np += ps[k].npad;
        below += ps[k].below;
        rp_vstats_merge(v, &ps[k].v);
    }
    *good = v->n - v->bad;
    if (np > 0 && *good > 0) {
        const rp_vstats fillv = {.lo = v->lo, .hi = v->lo, .sum = (double)np * (double)v->lo,
                                 .sumsq = (double)np * ((double)v->lo * v->lo),
                                 .n_lo = (size_t)np, .n_hi = (size_t)np, .n = (size_t)np};
        below += v->lo < -1024.0f ? (size_t)np : 0;
        rp_vstats_merge(v, &fillv);
    }
    o->has_stats = 1;
    o->below_m1024 = below;
    *fill = v->lo;
    *npad = np;
}

int rp_pf_deferred(rp_stack_data *d, const rp_stack *st, const rp_dcm_info *const *infos,
                   rp_mask *pad_packed, rp_vol_source **out)
{
    *out = NULL;
    const size_t nslices = (size_t)st->nz, nx = (size_t)st->nx, ny = (size_t)st->ny;
    if (st->nt != 1 || d->data || d->pad_mask || d->type == RP_ST_F32 ||
        d->n_slices != nslices ||
        !(d->type == RP_ST_U8 || d->type == RP_ST_S8 || d->type == RP_ST_S16 ||
          d->type == RP_ST_U16 || d->type == RP_ST_S32 || d->type == RP_ST_U32))
        return RP_EUNSUPPORTED;
    if (pad_packed && (pad_packed->data || pad_packed->dim[0] != st->nx ||
                       pad_packed->dim[1] != st->ny || pad_packed->dim[2] != st->nz))
        return RP_EINVAL;
    for (size_t k = 0; k < nslices; k++)
        if (!d->slice[k])
            return RP_EUNSUPPORTED;
    pf_src *s = calloc(1, sizeof *s);
    rp_vol_source *vs = calloc(1, sizeof *vs);
    slice_stats *ps = calloc(nslices, sizeof *ps);
    int nth = omp_get_max_threads();
    float *scratch = rp_mem_alloc((size_t)nth * (nx * ny + nx) * sizeof(float));
    uint8_t *rowbufs = malloc((size_t)nth * nx);
    if (s) {
        s->lo = calloc(nslices, sizeof *s->lo);
        s->hi = calloc(nslices, sizeof *s->hi);
        s->has = calloc(nslices, 1);
    }
    if (!s || !vs || !ps || !scratch || !rowbufs || !s->lo || !s->hi || !s->has) {
        src_release(s);
        free(vs);
        free(ps);
        free(scratch);
        free(rowbufs);
        return RP_ENOMEM;
    }
    s->nx = nx;
    s->ny = ny;
    s->es = rp_sample_bytes(d->type);
    s->a = d->scl_slope == 0 ? 1 : d->scl_slope;
    s->b = d->scl_inter;
    const int exact16 = d->type == RP_ST_S16 && s->a == 1 && s->b == floor(s->b) &&
                        fabs(s->b) <= 13000;
    /* the pre-pass: the padding test and mask exactly as rp_pf_to_float builds them, and the
     * statistics of the volume it would leave (after the fill); each slice is converted into
     * the thread's scratch slice, which stays in cache */
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < nslices; k++) {
        long lo = 0, hi = -1;
        uint64_t *pb = NULL;
        const int t = omp_get_thread_num();
        if (pad_packed) {
            const rp_dcm_info *in =
                infos && k < (size_t)st->n_refs ? infos[st->slice[k].file] : NULL;
            if (pad_range(in, d->inverted_mono1, &lo, &hi))
                pb = pad_packed->bits + k * ny * (size_t)pad_packed->wpr;
        }
        s->has[k] = pb != NULL;
        s->lo[k] = lo;
        s->hi[k] = hi;
        if (exact16 && !pb) {
            slice_stats_s16(d->slice[k], d->stored_row_bytes, nx, ny, (int)s->b, &ps[k]);
            continue;
        }
        float *f = scratch + (size_t)t * (nx * ny + nx);
        ps[k].npad = convert_slice(d->type, d->slice[k], d->stored_row_bytes, nx, ny, s->a, s->b,
                                   lo, hi, f, NULL, pb, rowbufs + (size_t)t * nx);
        slice_stats_of(f, pb, nx, ny, pad_packed ? (size_t)pad_packed->wpr : 0, f + nx * ny,
                       &ps[k]);
    }
    free(scratch);
    free(rowbufs);
    long npad;
    size_t good;
    merge_stats(ps, nslices, vs, &s->fill, &npad, &good);
    free(ps);
    if (!good) {
        /* every voxel is padding: the fill is undefined, the float path leaves them as they
         * are */
        src_release(s);
        free(vs);
        return RP_EUNSUPPORTED;
    }
    /* the slices are the source's now; d keeps the figures */
    s->d = *d;
    d->slice = NULL;
    d->bufs = NULL;
    d->n_slices = d->n_bufs = 0;
    d->n_padding = npad;
    s->d.pad_mask = NULL;
    if (s->d.n_bufs == nslices && (s->own = malloc(nslices * sizeof *s->own)) != NULL)
        for (size_t k = 0; k < nslices; k++) {
            s->own[k] = -1;
            for (size_t i = 0; i < s->d.n_bufs; i++)
                if (s->d.bufs[i] == s->d.slice[k]) {
                    s->own[k] = (long)i;
                    break;
                }
        }
    vs->row = src_row;
    vs->slice_done = src_slice_done;
    vs->release = src_release;
    vs->user = s;
    *out = vs;
    return 0;
}

float rp_pf_fill_padding(float *v, const uint8_t *pad, size_t n)
{
    float lo = INFINITY;
#pragma omp parallel for schedule(static) reduction(min : lo)
    for (size_t i = 0; i < n; i++)
        if (!pad[i] && v[i] < lo)
            lo = v[i];
    if (!isfinite(lo))
        return NAN;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++)
        if (pad[i])
            v[i] = lo;
    return lo;
}

float rp_pf_fill_padding_packed(float *v, const rp_mask *pad)
{
    const size_t nx = (size_t)pad->dim[0], nr = (size_t)pad->dim[1] * pad->dim[2];
    const size_t wpr = (size_t)pad->wpr;
    float lo = INFINITY;
#pragma omp parallel for schedule(static) reduction(min : lo)
    for (size_t r = 0; r < nr; r++) {
        const uint64_t *w = pad->bits + r * wpr;
        const float *row = v + r * nx;
        for (size_t x = 0; x < nx; x++)
            if (!((w[x / 64] >> (x % 64)) & 1) && row[x] < lo)
                lo = row[x];
    }
    if (!isfinite(lo))
        return NAN;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < nr; r++) {
        const uint64_t *w = pad->bits + r * wpr;
        float *row = v + r * nx;
        for (size_t j = 0; j < wpr; j++)
            for (uint64_t b = w[j]; b; b &= b - 1)
                row[64 * j + (size_t)__builtin_ctzll(b)] = lo;
    }
    return lo;
}

static const char *type_name(int dt)
{
    switch (dt) {
    case RP_NII_UINT8:
        return "uint8";
    case RP_NII_INT16:
        return "int16";
    default:
        return "float32";
    }
}

cJSON *rp_pf_store_json(const rp_nifti_store *st, const rp_dtype_spec *spec, int gzip_level)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "datatype", type_name(st->datatype));
    cJSON_AddStringToObject(o, "dtype_rule", rp_dtype_name(spec ? spec->kind : RP_DTYPE_AUTO));
    cJSON_AddNumberToObject(o, "scl_slope", st->scl_slope);
    cJSON_AddNumberToObject(o, "scl_inter", st->scl_inter);
    if (st->hu_slope != 0) {
        cJSON_AddNumberToObject(o, "hu_step", st->hu_slope);
        cJSON_AddNumberToObject(o, "hu_inter", st->hu_inter);
    }
    cJSON_AddNumberToObject(o, "max_abs_error", st->max_err);
    cJSON_AddBoolToObject(o, "exact", st->exact);
    cJSON_AddStringToObject(o, "how", st->why);
    cJSON_AddStringToObject(o, "masks", "uint8");
    if (gzip_level > 0)
        cJSON_AddNumberToObject(o, "gzip_level", gzip_level);
    return o;
}
