/*
 * pipeline/volume/resample.c — separable resampling (nearest, linear, cubic B-spline) of
 * volumes and masks (contract in volume.h).
 *
 * Why separable: the new grid is axis-aligned with the old one (origin fixed, only the
 * spacing changes), so the tensor-product B-spline interpolation factorises into three 1-D
 * passes, each "prefilter along the axis, then interpolate along the axis". This is
 * mathematically the same as scipy.ndimage.map_coordinates(order=3, mode='mirror') over the
 * whole volume, but costs 4 taps per pass instead of 64 per voxel, and each pass frees its
 * input, so memory stays near input + output. The axis that shrinks most goes first.
 *
 * Boundary: mirror (d c b | a b c d | c b a), the boundary scipy's spline_filter uses by
 * default and that mode='mirror' uses for the taps; the reference test calls map_coordinates
 * with mode='mirror' (prefilter included). Intermediate sums are double; output is float32.
 */
#include <assert.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "pipeline/volume/volume.h"

/* The B-spline kernels are loops over independent columns (lanes): RP_SIMD_CLONES. */
#define BSPLINE_HORIZON 22 /* |z|^22 < 1e-12: the causal init sum is exact to double */
/* Columns per job when the axis is not x: as many as keep the job's block (n_in doubles per
 * column) near 1 MiB, within [CHUNK_MIN, CHUNK_MAX]. Along z each input row of the block is a
 * separate stretch of memory a whole slice apart; wider stretches stream (LIDC's 133 -> 333
 * pass: 128 columns 160 ms, 1024 columns 133 ms, 4096 no better). */
#define CHUNK_BLOCK_BYTES ((size_t)1 << 20)
#define CHUNK_MIN 128
#define CHUNK_MAX 4096

static inline long mirror_index(long i, long n)
{
    if (n == 1)
        return 0;
    long p = 2 * (n - 1);
    i %= p;
    if (i < 0)
        i += p;
    return i >= n ? p - i : i;
}

static inline double mirror_coord(double x, long n)
{
    if (n == 1)
        return 0;
    double p = 2.0 * (double)(n - 1);
    x = fmod(x, p);
    if (x < 0)
        x += p;
    return x > (double)(n - 1) ? p - x : x;
}

void rp_resample_grid(const int dim[3], const double old_sp[3], const double new_sp[3],
                      int new_dim[3])
{
    for (int a = 0; a < 3; a++) {
        double n = floor((double)dim[a] * old_sp[a] / new_sp[a] + 0.5);
        new_dim[a] = n < 1 ? 1 : n > 1e8 ? 100000000 : (int)n;
    }
}

/* Cubic B-spline prefilter, pole z = sqrt(3)-2, mirror boundary, over `cw` interleaved
 * columns: element k of column c is b[k*cw + c]. Same recursion as scipy's ni_splines.c. */
static inline __attribute__((always_inline)) void prefilter_cols(double *b, int n, int cw)
{
    const double z = sqrt(3.0) - 2.0;
    if (n < 2)
        return;
    size_t tot = (size_t)n * cw;
    for (size_t i = 0; i < tot; i++)
        b[i] *= 6.0; /* gain (1-z)(1-1/z) */
    /* causal initialisation */
    if (n <= BSPLINE_HORIZON) {
        const double zn1 = pow(z, n - 1);
        for (int c = 0; c < cw; c++) {
            double c0 = b[c] + zn1 * b[(size_t)(n - 1) * cw + c];
            double zi = z;
            for (int i = 1; i < n - 1; i++) {
                c0 += zi * (b[(size_t)i * cw + c] + zn1 * b[(size_t)(n - 1 - i) * cw + c]);
                zi *= z;
            }
            b[c] = c0 / (1 - zn1 * zn1);
        }
    } else {
        double zk = z;
        for (int k = 1; k <= BSPLINE_HORIZON; k++) {
            const double *row = b + (size_t)k * cw;
#pragma omp simd
            for (int c = 0; c < cw; c++)
                b[c] += zk * row[c];
            zk *= z;
        }
    }
    for (int k = 1; k < n; k++) {
        double *row = b + (size_t)k * cw;
        const double *prev = row - cw;
#pragma omp simd
        for (int c = 0; c < cw; c++)
            row[c] += z * prev[c];
    }
    {
        double *last = b + (size_t)(n - 1) * cw;
        const double *prev = last - cw;
        const double f = z / (z * z - 1);
#pragma omp simd
        for (int c = 0; c < cw; c++)
            last[c] = (z * prev[c] + last[c]) * f;
    }
    for (int k = n - 2; k >= 0; k--) {
        double *row = b + (size_t)k * cw;
        const double *next = row + cw;
#pragma omp simd
        for (int c = 0; c < cw; c++)
            row[c] = z * (next[c] - row[c]);
    }
}

RP_SIMD_CLONES static void prefilter_block(double *b, int n, int cw)
{
    prefilter_cols(b, n, cw);
}

/* Same filter on one contiguous line (the x axis), without the column loops. */
static void prefilter_line(double *c, int n)
{
    const double z = sqrt(3.0) - 2.0;
    if (n < 2)
        return;
    if (n <= BSPLINE_HORIZON) {
        prefilter_block(c, n, 1);
        return;
    }
    for (int i = 0; i < n; i++)
        c[i] *= 6.0;
    double c0 = c[0], zk = z;
    for (int k = 1; k <= BSPLINE_HORIZON; k++) {
        c0 += zk * c[k];
        zk *= z;
    }
    c[0] = c0;
    for (int k = 1; k < n; k++)
        c[k] += z * c[k - 1];
    c[n - 1] = (z * c[n - 2] + c[n - 1]) * (z / (z * z - 1));
    for (int k = n - 2; k >= 0; k--)
        c[k] = z * (c[k + 1] - c[k]);
}

void rp_bspline_prefilter_line(double *c, int n)
{
    prefilter_line(c, n);
}

/* Taps and weights of every output index along one axis. */
typedef struct axis_plan {
    int n_in, n_out, taps, order;
    int *idx;  /* n_out * taps */
    double *w; /* n_out * taps */
} axis_plan;

static int plan_axis(axis_plan *p, int n_in, int n_out, double scale, int order)
{
    p->n_in = n_in;
    p->n_out = n_out;
    p->order = order;
    p->taps = order == RP_INTERP_BSPLINE3 ? 4 : order == RP_INTERP_LINEAR ? 2 : 1;
    p->idx = malloc((size_t)n_out * p->taps * sizeof *p->idx);
    p->w = malloc((size_t)n_out * p->taps * sizeof *p->w);
    if (!p->idx || !p->w)
        return RP_ENOMEM;
    for (int i = 0; i < n_out; i++) {
        double x = (double)i * scale;
        int *ix = p->idx + (size_t)i * p->taps;
        double *w = p->w + (size_t)i * p->taps;
        if (p->taps == 1) {
            ix[0] = (int)mirror_index((long)floor(mirror_coord(x, n_in) + 0.5), n_in);
            w[0] = 1;
        } else if (p->taps == 2) {
            double f = floor(x), t = x - f;
            ix[0] = (int)mirror_index((long)f, n_in);
            ix[1] = (int)mirror_index((long)f + 1, n_in);
            w[0] = 1 - t;
            w[1] = t;
        } else {
            double f = floor(x), t = x - f, t2 = t * t, t3 = t2 * t, u = 1 - t;
            for (int k = 0; k < 4; k++)
                ix[k] = (int)mirror_index((long)f - 1 + k, n_in);
            w[0] = u * u * u / 6.0;
            w[1] = 2.0 / 3.0 - t2 + 0.5 * t3;
            w[2] = (1.0 + 3.0 * t + 3.0 * t2 - 3.0 * t3) / 6.0;
            w[3] = t3 / 6.0;
        }
    }
    return 0;
}

static void plan_free(axis_plan *p)
{
    free(p->idx);
    free(p->w);
}

/* One pass along `axis` of a 3-D float array with dims dim[] into out (dims with
 * dim[axis] = p->n_out). The data are seen as [outer][n][inner]; a job is a group of LINES
 * lines (inner == 1, the x axis: the sequential prefilter runs on LINES lines side by side)
 * or c->cols columns of one outer block. Every job gathers its input into a private block
 * before it writes, which is what makes the in-place mode below safe. */
enum { LINES = 8 };

typedef struct pass_ctx {
    const float *in;
    float *out;
    size_t inner, outer, nchunks;
    size_t cols; /* columns per job (inner > 1) */
    const axis_plan *p;
    double *scratch; /* per thread: the job's block (n_in * cols) then cols sums */
    size_t per_thread, nthreads;
    rp_vstats *stats; /* per thread, or NULL: statistics of what the pass writes */
    /* A deferred volume's first pass (in NULL): rows come from src into the thread's part of
     * rows (row_len floats each); left[z]: the lines (x pass) or jobs (y pass) of slice z not
     * yet done, the slice handed back at 0. */
    const rp_vol_source *src;
    float *rows;
    size_t row_len;
    int src_ny, src_z0; /* line l of the source is row l % src_ny of slice src_z0 + l / src_ny */
    int *left;
} pass_ctx;

/* Four doubles, at any 8-byte alignment (a job's block is read and written through these). */
typedef double v4d __attribute__((vector_size(32), aligned(8)));

/* prefilter_cols() over the LINES interleaved lines of a job_lines block, with the recursions
 * carried in registers: each step of a recursion needs the one before it, and through memory
 * every step also waited for its own store to come back (the x pass spent half its time
 * there). The same operations in the same order as prefilter_cols(): the same bits. */
static inline __attribute__((always_inline)) void prefilter_lanes(double *b, int n)
{
    enum { NV = LINES / 4 };
    if (n <= BSPLINE_HORIZON) {
        prefilter_cols(b, n, LINES);
        return;
    }
    const double z = sqrt(3.0) - 2.0;
    v4d *r = (v4d *)b;
    v4d p[NV];
    for (int j = 0; j < NV; j++)
        p[j] = r[j] * 6.0;
    double zk = z;
    for (int k = 1; k <= BSPLINE_HORIZON; k++) { /* causal initialisation */
        for (int j = 0; j < NV; j++)
            p[j] += zk * (r[k * NV + j] * 6.0);
        zk *= z;
    }
    for (int j = 0; j < NV; j++)
        r[j] = p[j];
    for (int k = 1; k < n; k++)
        for (int j = 0; j < NV; j++)
            r[k * NV + j] = p[j] = r[k * NV + j] * 6.0 + z * p[j];
    const double f = z / (z * z - 1);
    for (int j = 0; j < NV; j++) /* p: causal n-1; r[n-2]: causal n-2 */
        r[(n - 1) * NV + j] = p[j] = (z * r[(n - 2) * NV + j] + p[j]) * f;
    for (int k = n - 2; k >= 0; k--)
        for (int j = 0; j < NV; j++)
            r[k * NV + j] = p[j] = z * (p[j] - r[k * NV + j]);
}

/* LINES is a constant lane count here, so the prefilter and the taps are vector code; a short
 * last group fills its spare lanes with a copy of its first line (each lane is independent)
 * and stores only g. */
RP_SIMD_CLONES static void job_lines(const pass_ctx *c, size_t gi, double *tmp, rp_vstats *st)
{
    const int n = c->p->n_in, no = c->p->n_out, T = c->p->taps;
    size_t o0 = gi * LINES;
    int g = (int)(c->outer - o0 < LINES ? c->outer - o0 : LINES);
    for (int l = 0; l < LINES; l++) {
        const float *src = c->in ? c->in + (o0 + (l < g ? l : 0)) * n : NULL;
        if (!src) {
            float *r = c->rows + (size_t)omp_get_thread_num() * c->row_len;
            int line = (int)(o0 + (l < g ? l : 0));
            c->src->row(c->src->user, line % c->src_ny, c->src_z0 + line / c->src_ny, 0, n, r);
            src = r;
        }
        for (int k = 0; k < n; k++)
            tmp[(size_t)k * LINES + l] = src[k];
    }
    if (c->p->order == RP_INTERP_BSPLINE3)
        prefilter_lanes(tmp, n);
    const int *ix = c->p->idx;
    const double *w = c->p->w;
    float *out = c->out + o0 * no;
    for (int i = 0; i < no; i++, ix += T, w += T) {
        double acc[LINES] = {0};
        for (int t = 0; t < T; t++) {
            const double wt = w[t];
            const double *row = tmp + (size_t)ix[t] * LINES;
#pragma omp simd
            for (int l = 0; l < LINES; l++)
                acc[l] += wt * row[l];
        }
        for (int l = 0; l < g; l++)
            out[(size_t)l * no + i] = (float)acc[l];
    }
    if (st) /* the group's output lines, still in cache */
        rp_vstats_add(st, out, (size_t)g * no);
}

RP_SIMD_CLONES static void job_chunk(const pass_ctx *c, size_t j, double *tmp, double *acc,
                                     rp_vstats *st)
{
    const int n = c->p->n_in, no = c->p->n_out, T = c->p->taps;
    const size_t inner = c->inner;
    size_t o = j / c->nchunks, c0 = (j % c->nchunks) * c->cols;
    int cw = (int)(inner - c0 < c->cols ? inner - c0 : c->cols);
    const float *src = c->in ? c->in + o * n * inner + c0 : NULL;
    float *r = c->in ? NULL : c->rows + (size_t)omp_get_thread_num() * c->row_len;
    for (int k = 0; k < n; k++) {
        const float *s = src ? src + (size_t)k * inner : r;
        if (!src) /* a deferred volume's y pass: row k of slice o */
            c->src->row(c->src->user, k, (int)o, (int)c0, cw, r);
        double *d = tmp + (size_t)k * cw;
#pragma omp simd
        for (int q = 0; q < cw; q++)
            d[q] = s[q];
    }
    if (c->p->order == RP_INTERP_BSPLINE3)
        prefilter_block(tmp, n, cw);
    float *dst = c->out + o * (size_t)no * inner + c0;
    for (int i = 0; i < no; i++) {
        const int *ix = c->p->idx + (size_t)i * T;
        const double *w = c->p->w + (size_t)i * T;
        for (int q = 0; q < cw; q++)
            acc[q] = 0;
        for (int t = 0; t < T; t++) {
            const double wt = w[t];
            const double *row = tmp + (size_t)ix[t] * cw;
#pragma omp simd
            for (int q = 0; q < cw; q++)
                acc[q] += wt * row[q];
        }
        float *d = dst + (size_t)i * inner;
#pragma omp simd
        for (int q = 0; q < cw; q++)
            d[q] = (float)acc[q];
        if (st)
            rp_vstats_add(st, d, (size_t)cw);
    }
}

/* Columns per job_chunk job along an axis of n_in samples (see CHUNK_BLOCK_BYTES). */
static size_t chunk_cols(int n_in)
{
    size_t cols = CHUNK_BLOCK_BYTES / ((size_t)n_in * sizeof(double)) / 64 * 64;
    return cols < CHUNK_MIN ? CHUNK_MIN : cols > CHUNK_MAX ? CHUNK_MAX : cols;
}

/* After job j of a deferred volume's pass: the slices it finished go back to the source. */
static void job_done(const pass_ctx *c, size_t j)
{
    size_t l0 = c->inner == 1 ? j * LINES : j / c->nchunks;
    size_t l1 = c->inner == 1 ? (l0 + LINES < c->outer ? l0 + LINES : c->outer) : l0 + 1;
    for (size_t l = l0; l < l1; l++) {
        int z = c->inner == 1 ? (int)(l / (size_t)c->src_ny) : (int)l, now;
#pragma omp atomic capture
        now = --c->left[z];
        if (now == 0 && c->src->slice_done)
            c->src->slice_done(c->src->user, z);
    }
}

/* Run jobs [j0, j1) in parallel, each thread in its part of c->scratch (allocated once per
 * pass: the in-place rounds below call this many times, and fresh blocks each time would be
 * faulted in again each time). */
static void run_jobs(const pass_ctx *c, size_t j0, size_t j1)
{
#pragma omp parallel if (j1 - j0 > 1) num_threads((int)c->nthreads)
    {
        double *tmp = c->scratch + (size_t)omp_get_thread_num() * c->per_thread;
        double *acc = tmp + (c->per_thread - c->cols);
        rp_vstats *st = c->stats ? &c->stats[omp_get_thread_num()] : NULL;
#pragma omp for schedule(dynamic, 4)
        for (size_t j = j0; j < j1; j++) {
            if (c->inner == 1)
                job_lines(c, j, tmp, st);
            else
                job_chunk(c, j, tmp, acc, st);
            if (c->left)
                job_done(c, j);
        }
    }
}

/* out == in (a shrinking axis) runs in place: output block o lies below input block o,
 * so blocks are done in rounds [a, b) whose outputs land only in input blocks < a, already
 * consumed: b <= a * n / n_out. The first blocks go one at a time (always safe: a block's jobs
 * gather their input first and different column chunks never touch each other's columns). */
static int pass_axis_src(const float *in, const rp_vol_source *src, const int dim[3], int axis,
                         const axis_plan *p, float *out, rp_vstats *stats)
{
    const double t0 = rp_mono_s();
    pass_ctx c = {.in = in, .out = out, .inner = 1, .outer = 1, .p = p, .src = src};
    for (int a = 0; a < axis; a++)
        c.inner *= (size_t)dim[a];
    for (int a = axis + 1; a < 3; a++)
        c.outer *= (size_t)dim[a];
    c.cols = chunk_cols(p->n_in);
    c.nchunks = (c.inner + c.cols - 1) / c.cols;
    /* jobs per block and number of blocks */
    size_t per = c.inner == 1 ? 1 : c.nchunks;
    size_t blocks = c.inner == 1 ? (c.outer + LINES - 1) / LINES : c.outer;
    c.nthreads = (size_t)omp_get_max_threads();
    c.per_thread = (size_t)p->n_in * (c.inner == 1 ? LINES : c.cols) + c.cols;
    c.scratch = rp_mem_alloc(c.nthreads * c.per_thread * sizeof *c.scratch);
    if (!c.scratch)
        return RP_ENOMEM;
    if (stats) {
        c.stats = malloc(c.nthreads * sizeof *c.stats);
        if (!c.stats) {
            free(c.scratch);
            return RP_ENOMEM;
        }
        for (size_t t = 0; t < c.nthreads; t++)
            rp_vstats_init(&c.stats[t]);
    }
    if (!in) {
        /* rows of the source: a whole line along x, a chunk of columns along y */
        c.row_len = axis == 0 ? (size_t)dim[0] : c.cols;
        c.src_ny = dim[1];
        c.rows = malloc(c.nthreads * c.row_len * sizeof *c.rows);
        c.left = malloc((size_t)dim[2] * sizeof *c.left);
        if (axis > 1 || !c.rows || !c.left) {
            free(c.rows);
            free(c.left);
            free(c.scratch);
            free(c.stats);
            return axis > 1 ? RP_EINVAL : RP_ENOMEM;
        }
        for (int z = 0; z < dim[2]; z++)
            c.left[z] = axis == 0 ? dim[1] : (int)c.nchunks;
        run_jobs(&c, 0, blocks * per);
        free(c.rows);
        free(c.left);
    } else if (in != out) {
        run_jobs(&c, 0, blocks * per);
    } else if (c.outer == 1 && c.inner > 1) {
        run_jobs(&c, 0, per); /* one block: every job owns its columns, in and out */
    } else {
        assert(p->n_out <= p->n_in);
        size_t a = 0;
        while (a < blocks) {
            size_t b = (size_t)((double)a * p->n_in / p->n_out);
            if (b <= a)
                b = a + 1;
            if (b > blocks)
                b = blocks;
            run_jobs(&c, a * per, b * per);
            a = b;
        }
    }
    free(c.scratch);
    RP_DEBUG("volume", "resample pass axis=%d %d->%d %s ms=%.1f", axis, p->n_in, p->n_out,
             !in ? "from slices" : in == out ? "in place" : "to new buffer",
             (rp_mono_s() - t0) * 1e3);
    if (stats) {
        rp_vstats_init(stats);
        for (size_t t = 0; t < c.nthreads; t++)
            rp_vstats_merge(stats, &c.stats[t]);
        free(c.stats);
    }
    return 0;
}

static int pass_axis(const float *in, const int dim[3], int axis, const axis_plan *p, float *out,
                     rp_vstats *stats)
{
    return pass_axis_src(in, NULL, dim, axis, p, out, stats);
}

/* The x and y passes one slice at a time: a slice's x pass lands in the thread's slice buffer
 * (float, as the x pass would leave it in memory, so the result has the same bits) and its y
 * pass goes from there to the slice's place in out, so the volume between the two passes is
 * never written: for a CT that is 1.4x the final grid's size in fresh memory and a pass over
 * it saved. in: the float volume, or NULL to read src's rows (each slice handed back when
 * done); in == out runs in place, in rounds, when a slice shrinks (as pass_axis does along an
 * axis: slice z's output lies below input slice z + 1). stats: of what is written, or NULL. */
static int pass_xy(const float *in, const rp_vol_source *src, const int dim[3],
                   const axis_plan *px, const axis_plan *py, float *out, rp_vstats *stats)
{
    const double t0 = rp_mono_s();
    const size_t nx = (size_t)dim[0], ny = (size_t)dim[1], nxo = (size_t)px->n_out;
    const size_t s_in = nx * ny, s_out = nxo * (size_t)py->n_out;
    const int nz = dim[2];
    if (in == out && s_out > s_in)
        return RP_EINVAL;
    const size_t nth = (size_t)omp_get_max_threads(), cols = chunk_cols((int)ny);
    /* per thread: the slice after x (floats), the x lanes, the y block and its sums */
    const size_t xt = nx * LINES, yt = ny * cols + cols;
    const size_t per = (ny * nxo + 1) / 2 + xt + yt; /* in doubles */
    double *scratch = rp_mem_alloc(nth * per * sizeof(double));
    float *rows = src ? malloc(nth * nx * sizeof *rows) : NULL; /* job_lines': a source row */
    rp_vstats *ts = stats ? malloc(nth * sizeof *ts) : NULL;
    if (!scratch || (src && !rows) || (stats && !ts)) {
        free(scratch);
        free(rows);
        free(ts);
        return RP_ENOMEM;
    }
    for (size_t t = 0; stats && t < nth; t++)
        rp_vstats_init(&ts[t]);
    int a = 0;
    while (a < nz) {
        int b = nz;
        /* in place with a smaller slice: outputs of [a, b) end at b * s_out <= a * s_in, in
         * consumed input (a slice of the same size overwrites only its own input, which its
         * job has read before it writes) */
        if (in == out && s_out < s_in) {
            b = s_out ? (int)((double)a * (double)s_in / (double)s_out) : nz;
            b = b <= a ? a + 1 : b > nz ? nz : b;
        }
#pragma omp parallel if (b - a > 1) num_threads((int)nth)
        {
            const int t = omp_get_thread_num();
            double *base = scratch + (size_t)t * per;
            float *slice = (float *)base;
            double *xtmp = base + (ny * nxo + 1) / 2, *ytmp = xtmp + xt;
            pass_ctx cx = {.out = slice, .inner = 1, .outer = ny, .p = px, .src = src,
                           .rows = rows, .row_len = nx, .src_ny = (int)ny};
            pass_ctx cy = {.in = slice, .inner = nxo, .outer = 1, .p = py, .cols = cols,
                           .nchunks = (nxo + cols - 1) / cols};
#pragma omp for schedule(dynamic, 1)
            for (int z = a; z < b; z++) {
                cx.in = in ? in + (size_t)z * s_in : NULL;
                cx.src_z0 = z;
                for (size_t g = 0; g < (ny + LINES - 1) / LINES; g++)
                    job_lines(&cx, g, xtmp, NULL);
                if (src && src->slice_done)
                    src->slice_done(src->user, z);
                cy.out = out + (size_t)z * s_out;
                for (size_t j = 0; j < cy.nchunks; j++)
                    job_chunk(&cy, j, ytmp, ytmp + ny * cols, stats ? &ts[t] : NULL);
            }
        }
        a = b;
    }
    free(rows);
    free(scratch);
    RP_DEBUG("volume", "resample passes x+y %zux%zu->%zux%d per slice %s ms=%.1f", nx, ny, nxo,
             py->n_out, !in ? "from slices" : in == out ? "in place" : "to new buffer",
             (rp_mono_s() - t0) * 1e3);
    if (stats) {
        rp_vstats_init(stats);
        for (size_t t = 0; t < nth; t++)
            rp_vstats_merge(stats, &ts[t]);
        free(ts);
    }
    return 0;
}

/* 1 when the passes from order[k] on start with x then y, both doing something (pass_xy). */
static int xy_first(const int order[3], int k, const int dim[3], const int new_dim[3],
                    const axis_plan plan[3])
{
    return k < 2 && order[k] == 0 && order[k + 1] == 1 &&
           !(new_dim[1] == dim[1] && plan[1].order == RP_INTERP_NEAREST);
}

/* Resample one 3-D channel. `in` may be freed after the first pass when `own_in` (it is then
 * set to NULL through *inp). Result goes to `out` (preallocated, final dims). */
static int resample_channel(float **inp, int own_in, const int dim[3], const int new_dim[3],
                            axis_plan plan[3], float *out)
{
    /* pass order: the axis that shrinks most first keeps intermediates small */
    int order[3] = {0, 1, 2};
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++) {
            double ri = (double)new_dim[order[i]] / dim[order[i]];
            double rj = (double)new_dim[order[j]] / dim[order[j]];
            if (rj < ri) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
        }
    int cur_dim[3] = {dim[0], dim[1], dim[2]};
    float *cur = *inp;
    int cur_owned = own_in;
    int rc = 0;
    int npass = 0;
    for (int a = 0; a < 3; a++)
        if (new_dim[a] != dim[a] || plan[a].order != RP_INTERP_NEAREST)
            npass++;
    int done = 0;
    for (int k = 0; k < 3; k++) {
        int axis = order[k];
        /* identity along an axis whose size and order leave data unchanged */
        if (new_dim[axis] == dim[axis] && plan[axis].order == RP_INTERP_NEAREST)
            continue;
        int nd[3] = {cur_dim[0], cur_dim[1], cur_dim[2]};
        nd[axis] = new_dim[axis];
        size_t nbytes = (size_t)nd[0] * nd[1] * nd[2] * sizeof(float);
        int last = ++done == npass;
        /* a shrinking pass over a buffer we own, with blocks outside the axis, runs in place
         * and the buffer is then shrunk: memory stays at the larger of input and output */
        int inplace = cur_owned && !last && nd[axis] < cur_dim[axis];
        float *nxt = last ? out : inplace ? cur : rp_mem_alloc(nbytes);
        if (!nxt) {
            rc = RP_ENOMEM;
            break;
        }
        rc = pass_axis(cur, cur_dim, axis, &plan[axis], nxt, NULL);
        if (inplace) {
            float *shrunk = rp_mem_realloc(cur, nbytes);
            if (shrunk)
                nxt = shrunk;
            if (cur == *inp)
                *inp = NULL; /* the caller's buffer now lives on as nxt */
        } else if (cur_owned) {
            free(cur);
            if (cur == *inp)
                *inp = NULL;
        }
        cur = nxt;
        cur_owned = nxt != out;
        memcpy(cur_dim, nd, sizeof nd);
        if (rc)
            break;
    }
    if (rc == 0 && npass == 0)
        memcpy(out, cur, (size_t)dim[0] * dim[1] * dim[2] * sizeof(float));
    if (cur_owned && cur != out) {
        free(cur);
        if (cur == *inp)
            *inp = NULL;
    }
    return rc;
}

/* The pass order: the axis that shrinks most first keeps intermediates small. */
static void pass_order(const int dim[3], const int new_dim[3], int order[3])
{
    for (int i = 0; i < 3; i++)
        order[i] = i;
    for (int i = 0; i < 3; i++)
        for (int j = i + 1; j < 3; j++) {
            double ri = (double)new_dim[order[i]] / dim[order[i]];
            double rj = (double)new_dim[order[j]] / dim[order[j]];
            if (rj < ri) {
                int t = order[i];
                order[i] = order[j];
                order[j] = t;
            }
        }
}

/* One channel that owns its buffer: every pass runs in that buffer when it can. Shrinking
 * passes run in place (rounds, see pass_axis); a growing pass along the outermost axis runs
 * in place after the buffer is enlarged (each job gathers its columns before it writes
 * them). Pages already touched are reused, so a 1 mm CT does not fault in a fresh output
 * volume; only other growing passes get a new buffer. *bufp is replaced by the result. */
static int resample_owned_from(float **bufp, size_t cap, const int dim[3], const int start_dim[3],
                               int k0, const int new_dim[3], axis_plan plan[3], rp_vstats *stats)
{
    int order[3];
    pass_order(dim, new_dim, order);
    int last = -1; /* the last pass measures the result */
    for (int k = 0; k < 3; k++)
        if (!(new_dim[order[k]] == dim[order[k]] && plan[order[k]].order == RP_INTERP_NEAREST))
            last = k;
    int cur_dim[3] = {start_dim[0], start_dim[1], start_dim[2]};
    float *cur = *bufp;
    int rc = 0;
    for (int k = k0; k < 3 && rc == 0; k++) {
        int axis = order[k];
        if (new_dim[axis] == dim[axis] && plan[axis].order == RP_INTERP_NEAREST)
            continue; /* identity along this axis */
        int nd[3] = {cur_dim[0], cur_dim[1], cur_dim[2]};
        nd[axis] = new_dim[axis];
        if (xy_first(order, k, dim, new_dim, plan)) { /* x and y slice by slice */
            nd[1] = new_dim[1];
            size_t nb = (size_t)nd[0] * nd[1] * nd[2] * sizeof(float);
            int inplace = (size_t)nd[0] * nd[1] <= (size_t)cur_dim[0] * cur_dim[1];
            float *nxt = inplace ? cur : rp_mem_alloc(nb);
            if (!nxt) {
                rc = RP_ENOMEM;
                break;
            }
            rc = pass_xy(cur, NULL, cur_dim, &plan[0], &plan[1], nxt,
                         k + 1 == last ? stats : NULL);
            if (!inplace) {
                free(cur);
                cur = nxt;
                cap = nb;
            }
            memcpy(cur_dim, nd, sizeof nd);
            k++; /* the y pass is done */
            continue;
        }
        size_t nbytes = (size_t)nd[0] * nd[1] * nd[2] * sizeof(float);
        int outer = 1;
        for (int a = axis + 1; a < 3; a++)
            outer *= nd[a];
        if (nd[axis] <= cur_dim[axis] || (outer == 1 && axis > 0)) {
            if (nbytes > cap) {
                float *g = rp_mem_realloc(cur, nbytes);
                if (!g) {
                    rc = RP_ENOMEM;
                    break;
                }
                cur = g;
                cap = nbytes;
            }
            rc = pass_axis(cur, cur_dim, axis, &plan[axis], cur, k == last ? stats : NULL);
        } else {
            float *nxt = rp_mem_alloc(nbytes);
            if (!nxt) {
                rc = RP_ENOMEM;
                break;
            }
            rc = pass_axis(cur, cur_dim, axis, &plan[axis], nxt, k == last ? stats : NULL);
            free(cur);
            cur = nxt;
            cap = nbytes;
        }
        memcpy(cur_dim, nd, sizeof nd);
    }
    size_t fin = (size_t)new_dim[0] * new_dim[1] * new_dim[2] * sizeof(float);
    if (!rc && cap > fin) {
        float *s2 = rp_mem_realloc(cur, fin);
        if (s2)
            cur = s2;
    }
    *bufp = cur;
    return rc;
}

static int resample_owned(float **bufp, const int dim[3], const int new_dim[3], axis_plan plan[3],
                          rp_vstats *stats)
{
    return resample_owned_from(bufp, (size_t)dim[0] * dim[1] * dim[2] * sizeof(float), dim, dim,
                               0, new_dim, plan, stats);
}

/* A deferred volume: the first pass reads the source's rows (along x or y, the axes inside a
 * slice; each slice goes back once its lines are done) into a buffer sized for the largest
 * grid of the passes after it, which then run in it as resample_owned's do. The source is
 * spent either way. RP_EUNSUPPORTED, with nothing read, when the first pass would run along z
 * or there is none. */
static int resample_deferred(rp_volume *in, const int new_dim[3], axis_plan plan[3],
                             rp_vstats *stats, float **outp)
{
    int order[3], k0 = 0, npass = 0;
    pass_order(in->dim, new_dim, order);
    while (k0 < 3 && new_dim[order[k0]] == in->dim[order[k0]] &&
           plan[order[k0]].order == RP_INTERP_NEAREST)
        k0++;
    if (k0 == 3 || order[k0] > 1)
        return RP_EUNSUPPORTED;
    for (int k = k0; k < 3; k++)
        npass += !(new_dim[order[k]] == in->dim[order[k]] &&
                   plan[order[k]].order == RP_INTERP_NEAREST);
    const int axis = order[k0], xy = xy_first(order, k0, in->dim, new_dim, plan);
    const int kn = k0 + (xy ? 2 : 1); /* the passes after the first (two with pass_xy) */
    int cd[3] = {in->dim[0], in->dim[1], in->dim[2]}, gd[3];
    cd[axis] = new_dim[axis];
    if (xy)
        cd[1] = new_dim[1];
    memcpy(gd, cd, sizeof gd);
    size_t cap = (size_t)cd[0] * cd[1] * cd[2] * sizeof(float);
    for (int k = kn; k < 3; k++) { /* the largest grid any pass writes */
        gd[order[k]] = new_dim[order[k]];
        size_t b = (size_t)gd[0] * gd[1] * gd[2] * sizeof(float);
        cap = b > cap ? b : cap;
    }
    float *buf = rp_mem_alloc(cap);
    int rc = !buf ? RP_ENOMEM
             : xy ? pass_xy(NULL, in->src, in->dim, &plan[0], &plan[1], buf,
                            npass == 2 ? stats : NULL)
                  : pass_axis_src(NULL, in->src, in->dim, axis, &plan[axis], buf,
                                  npass == 1 ? stats : NULL);
    if (in->src->release)
        in->src->release(in->src->user);
    free(in->src);
    in->src = NULL;
    if (!rc)
        rc = resample_owned_from(&buf, cap, in->dim, cd, kn, new_dim, plan, stats);
    if (rc) {
        free(buf);
        return rc;
    }
    *outp = buf;
    return 0;
}

int rp_resample_volume(rp_volume **volp, const double new_sp[3], const int order[3])
{
    return rp_resample_volume_stats(volp, new_sp, order, NULL);
}

int rp_resample_volume_stats(rp_volume **volp, const double new_sp[3], const int order[3],
                             rp_vstats *stats)
{
    if (stats)
        rp_vstats_init(stats); /* n == 0: not measured, unless the last pass does */
    rp_volume *in = *volp;
    double scale[3];
    for (int a = 0; a < 3; a++) {
        if (!(in->spacing[a] > 0) || !(new_sp[a] > 0))
            return RP_EINVAL;
        scale[a] = new_sp[a] / in->spacing[a];
    }
    int nd[3];
    rp_resample_grid(in->dim, in->spacing, new_sp, nd);
    axis_plan plan[3] = {{0}};
    rp_volume *out = NULL;
    int rc = 0;
    for (int a = 0; a < 3 && rc == 0; a++)
        rc = plan_axis(&plan[a], in->dim[a], nd[a], scale[a], order[a]);
    if (rc)
        goto done;
    float *fused = NULL; /* a deferred volume's result */
    if (!in->data && in->src) {
        rc = resample_deferred(in, nd, plan, stats, &fused);
        if (rc == RP_EUNSUPPORTED) {
            RP_DEBUG("volume", "deferred volume materialised: the first pass runs along z");
            rc = rp_volume_materialize(in);
        }
        if (rc)
            goto done;
    }
    if (in->dim[3] == 1) {
        /* the working buffer becomes the output volume's */
        out = calloc(1, sizeof *out);
        if (!out) {
            free(fused);
            rc = RP_ENOMEM;
            goto done;
        }
        float *buf = fused ? fused : in->data;
        in->data = NULL;
        rc = fused ? 0 : resample_owned(&buf, in->dim, nd, plan, stats);
        if (rc) {
            free(buf);
            goto done;
        }
        out->data = buf;
        memcpy(out->dim, nd, sizeof nd);
        out->dim[3] = 1;
    } else if (!(out = rp_volume_new(nd[0], nd[1], nd[2], in->dim[3]))) {
        rc = RP_ENOMEM;
        goto done;
    }
    size_t nin = rp_volume_nvox(in), nout = rp_volume_nvox(out);
    int single = in->dim[3] == 1;
    for (int c = 0; c < in->dim[3] && rc == 0 && !single; c++) {
        float *src = in->data + (size_t)c * nin;
        /* With one channel the input buffer is freed after the first pass (we replace it). */
        rc = resample_channel(&src, single, in->dim, nd, plan, out->data + (size_t)c * nout);
        if (single && !src)
            in->data = NULL;
    }
    if (rc)
        goto done;
    memcpy(out->affine, in->affine, sizeof out->affine);
    for (int r = 0; r < 3; r++)
        for (int a = 0; a < 3; a++)
            out->affine[r][a] = in->affine[r][a] * scale[a];
    rp_volume_update_spacing(out);
    rp_volume_free(in);
    *volp = out;
    out = NULL;
done:
    rp_volume_free(out);
    for (int a = 0; a < 3; a++)
        plan_free(&plan[a]);
    if (rc && !(*volp)->data && !(*volp)->src) {
        /* input already consumed: the caller has no volume left */
        rp_volume_free(*volp);
        *volp = NULL;
    }
    return rc;
}

int rp_resample_mask(rp_mask **mp, const int new_dim[3], const double scale[3])
{
    rp_mask *m = *mp;
    /* a packed mask stays packed */
    rp_mask *o = m->data ? rp_mask_new(new_dim[0], new_dim[1], new_dim[2], m->name)
                         : rp_mask_new_bits(new_dim[0], new_dim[1], new_dim[2], m->name);
    int *ix[3] = {0};
    int rc = 0;
    if (!o) {
        rc = RP_ENOMEM;
        goto done;
    }
    for (int a = 0; a < 3; a++) {
        ix[a] = malloc((size_t)new_dim[a] * sizeof(int));
        if (!ix[a]) {
            rc = RP_ENOMEM;
            goto done;
        }
        for (int i = 0; i < new_dim[a]; i++)
            ix[a][i] = (int)mirror_index(
                (long)floor(mirror_coord((double)i * scale[a], m->dim[a]) + 0.5), m->dim[a]);
    }
    const size_t nx = (size_t)m->dim[0], ny = (size_t)m->dim[1];
    if (!m->data) {
        /* rows with no voxel set (most of a padding or metal mask) leave the zeroed output
         * untouched; the others are gathered a word at a time */
#pragma omp parallel for schedule(static)
        for (int z = 0; z < new_dim[2]; z++)
            for (int y = 0; y < new_dim[1]; y++) {
                const uint64_t *src = m->bits + ((size_t)ix[2][z] * ny + (size_t)ix[1][y]) * m->wpr;
                uint64_t any = 0;
                for (int j = 0; j < m->wpr; j++)
                    any |= src[j];
                if (!any)
                    continue;
                uint64_t *dst = o->bits + ((size_t)z * new_dim[1] + y) * o->wpr;
                for (int j = 0; j < o->wpr; j++) {
                    uint64_t w = 0;
                    int x1 = 64 * j + 64 < new_dim[0] ? 64 * j + 64 : new_dim[0];
                    for (int x = 64 * j; x < x1; x++) {
                        int sx = ix[0][x];
                        w |= ((src[sx / 64] >> (sx % 64)) & 1) << (x % 64);
                    }
                    dst[j] = w;
                }
            }
    }
#pragma omp parallel for schedule(static)
    for (int z = 0; z < (m->data ? new_dim[2] : 0); z++)
        for (int y = 0; y < new_dim[1]; y++) {
            const uint8_t *src = m->data + ((size_t)ix[2][z] * ny + (size_t)ix[1][y]) * nx;
            uint8_t *dst = o->data + ((size_t)z * new_dim[1] + y) * (size_t)new_dim[0];
            for (int x = 0; x < new_dim[0]; x++)
                dst[x] = src[ix[0][x]];
        }
    memcpy(o->affine, m->affine, sizeof o->affine);
    for (int r = 0; r < 3; r++)
        for (int a = 0; a < 3; a++)
            o->affine[r][a] = m->affine[r][a] * scale[a];
    rp_mask_free(m);
    *mp = o;
    o = NULL;
done:
    for (int a = 0; a < 3; a++)
        free(ix[a]);
    rp_mask_free(o);
    return rc;
}
