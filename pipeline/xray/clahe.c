/*
 * pipeline/xray/clahe.c — contrast-limited adaptive histogram equalization (Zuiderveld 1994),
 * with exactly OpenCV's definition (imgproc/src/clahe.cpp, CLAHE_Impl::apply):
 *
 *  - the image is cut into tiles_x * tiles_y tiles; when its size is not a multiple of the
 *    grid it is extended at the right/bottom by reflect-101 up to the next multiple (and,
 *    like OpenCV, by a whole extra tile-row/column of pixels on the axis that already
 *    divides: OpenCV extends both axes as soon as one does not divide);
 *  - per tile: integer histogram (256 or 65536 bins), clip at
 *    max(1, (int)(clip * tile_area / bins)), redistribute the clipped count evenly and the
 *    residual on every (bins / residual)-th bin, cumulative sum scaled by
 *    (float)(bins - 1) / tile_area and rounded -> one LUT per tile;
 *  - every pixel is the bilinear blend of the LUTs of its four nearest tile centres, in
 *    float, rounded to nearest even (cvRound).
 *
 * Tiles are independent (OpenMP over tiles), rows are independent (OpenMP over rows).
 * Extension pixels are never materialised: tiles that reach past the image read through
 * a reflect-101 index map.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/xray/xray.h"

/* Round to nearest, ties to even (what lrintf and OpenCV's cvRound do in the default mode),
 * without a libm call: adding and removing 1.5 * 2^23 leaves the rounded value for
 * |x| < 2^22 (the compiler may not fold it: we never build with -ffast-math). Keeps the
 * per-pixel loops free of libm calls and vectorisable. */
static inline int round_even(float x)
{
    return (int)((x + 12582912.0f) - 12582912.0f);
}

/* cv::borderInterpolate for BORDER_REFLECT_101 (gfedcb|abcdefgh|gfedcba). */
static int reflect101(int p, int n)
{
    if (n == 1)
        return 0;
    while (p < 0 || p >= n) {
        if (p < 0)
            p = -p;
        else
            p = 2 * n - 2 - p;
    }
    return p;
}

/* Grid geometry shared by both depths. */
typedef struct clahe_grid {
    int tw, th;       /* tile size */
    int ew, eh;       /* extended size */
    int *xmap, *ymap; /* extended index -> source index (reflect-101) */
    int clip;         /* integer clip limit, 0 = none */
    float lut_scale;
} clahe_grid;

static int grid_init(clahe_grid *g, int w, int h, double clip, int tx, int ty, int bins)
{
    memset(g, 0, sizeof *g);
    if (w % tx == 0 && h % ty == 0) {
        g->ew = w;
        g->eh = h;
    } else {
        g->ew = w + tx - (w % tx);
        g->eh = h + ty - (h % ty);
    }
    g->tw = g->ew / tx;
    g->th = g->eh / ty;
    g->xmap = malloc(sizeof(int) * (size_t)(g->ew + g->eh));
    if (!g->xmap)
        return RP_ENOMEM;
    g->ymap = g->xmap + g->ew;
    for (int x = 0; x < g->ew; x++)
        g->xmap[x] = reflect101(x, w);
    for (int y = 0; y < g->eh; y++)
        g->ymap[y] = reflect101(y, h);
    const int area = g->tw * g->th;
    g->lut_scale = (float)(bins - 1) / area;
    if (clip > 0.0) {
        g->clip = (int)(clip * area / bins);
        if (g->clip < 1)
            g->clip = 1;
    }
    return 0;
}

/* Clip, redistribute and integrate one tile histogram into its LUT (OpenCV's order). */
#define CLAHE_HIST_TO_LUT(T, MAXV)                                                                 \
    static void hist_to_lut_##T(int *hist, int bins, int clip, float scale, T *lut)                \
    {                                                                                              \
        if (clip > 0) {                                                                            \
            int clipped = 0;                                                                       \
            for (int i = 0; i < bins; i++) {                                                       \
                if (hist[i] > clip) {                                                              \
                    clipped += hist[i] - clip;                                                     \
                    hist[i] = clip;                                                                \
                }                                                                                  \
            }                                                                                      \
            int batch = clipped / bins;                                                            \
            int residual = clipped - batch * bins;                                                 \
            if (batch)                                                                             \
                for (int i = 0; i < bins; i++)                                                     \
                    hist[i] += batch;                                                              \
            if (residual != 0) {                                                                   \
                int step = bins / residual;                                                        \
                if (step < 1)                                                                      \
                    step = 1;                                                                      \
                for (int i = 0; i < bins && residual > 0; i += step, residual--)                   \
                    hist[i]++;                                                                     \
            }                                                                                      \
        }                                                                                          \
        int sum = 0;                                                                               \
        for (int i = 0; i < bins; i++) {                                                           \
            sum += hist[i];                                                                        \
            int v = round_even((float)sum * scale);                                                \
            lut[i] = (T)(v < 0 ? 0 : v > (MAXV) ? (MAXV) : v);                                     \
        }                                                                                          \
    }

CLAHE_HIST_TO_LUT(uint8_t, 255)
CLAHE_HIST_TO_LUT(uint16_t, 65535)

/* One implementation per depth. The result goes to dst (same type), or, when fdst is not
 * NULL, straight to float as value * fscale (the f32 wrapper: saves a pass and a buffer). */
#define CLAHE_APPLY(NAME, T, BINS, MAXV, LT, FLOATLUT)                                             \
    static int NAME(const T *src, T *dst, float *fdst, float fscale, int fflip, int w, int h,      \
                    double clip, int tiles_x, int tiles_y)                                         \
    {                                                                                              \
        if (!src || (!dst && !fdst) || w < 1 || h < 1 || tiles_x < 1 || tiles_y < 1 ||             \
            (long long)w * h > (1LL << 31) - 1)                                                    \
            return RP_EINVAL;                                                                      \
        clahe_grid g;                                                                              \
        int rc = grid_init(&g, w, h, clip, tiles_x, tiles_y, BINS);                                \
        if (rc)                                                                                    \
            return rc;                                                                             \
        const int ntiles = tiles_x * tiles_y;                                                      \
        T *lut = malloc(sizeof(T) * (size_t)ntiles * BINS);                                        \
        if (!lut) {                                                                                \
            free(g.xmap);                                                                          \
            return RP_ENOMEM;                                                                      \
        }                                                                                          \
        int fail = 0;                                                                              \
        const int par = (size_t)w * h >= RP_XR_PAR_MIN;                                            \
        _Pragma("omp parallel if (par)")                                                           \
        {                                                                                          \
            int *hist = malloc(sizeof(int) * BINS);                                                \
            if (!hist) {                                                                           \
                _Pragma("omp atomic write") fail = 1;                                              \
            }                                                                                      \
            _Pragma("omp for schedule(dynamic)") for (int k = 0; k < ntiles; k++)                  \
            {                                                                                      \
                if (!hist)                                                                         \
                    continue;                                                                      \
                const int x0 = (k % tiles_x) * g.tw, y0 = (k / tiles_x) * g.th;                    \
                memset(hist, 0, sizeof(int) * BINS);                                               \
                const int inside = x0 + g.tw <= w;                                                 \
                for (int y = y0; y < y0 + g.th; y++) {                                             \
                    const T *row = src + (size_t)g.ymap[y] * w;                                    \
                    if (inside) {                                                                  \
                        const T *p = row + x0;                                                     \
                        for (int x = 0; x < g.tw; x++)                                             \
                            hist[p[x]]++;                                                          \
                    } else {                                                                       \
                        for (int x = x0; x < x0 + g.tw; x++)                                       \
                            hist[row[g.xmap[x]]]++;                                                \
                    }                                                                              \
                }                                                                                  \
                hist_to_lut_##T(hist, BINS, g.clip, g.lut_scale, lut + (size_t)k * BINS);          \
            }                                                                                      \
            free(hist);                                                                            \
        }                                                                                          \
        if (fail) {                                                                                \
            free(lut);                                                                             \
            free(g.xmap);                                                                          \
            return RP_ENOMEM;                                                                      \
        }                                                                                          \
        /* 8-bit: blend from float copies of the LUTs (64 KiB for 8x8 tiles; the same values,      \
         * so the same arithmetic, minus four int->float conversions per pixel). */                \
        LT *flut = NULL;                                                                           \
        const LT *ilut = (const LT *)lut;                                                          \
        if (FLOATLUT) {                                                                            \
            flut = malloc(sizeof(LT) * (size_t)ntiles * BINS);                                     \
            if (!flut) {                                                                           \
                free(lut);                                                                         \
                free(g.xmap);                                                                      \
                return RP_ENOMEM;                                                                  \
            }                                                                                      \
            for (size_t i = 0; i < (size_t)ntiles * BINS; i++)                                     \
                flut[i] = (LT)lut[i];                                                              \
            ilut = flut;                                                                           \
        }                                                                                          \
        /* Per-column tile indices and weights, as OpenCV's interpolation body. */                 \
        int *ind1 = malloc(sizeof(int) * 2 * (size_t)w);                                           \
        float *xa = malloc(sizeof(float) * 2 * (size_t)w);                                         \
        if (!ind1 || !xa) {                                                                        \
            free(ind1);                                                                            \
            free(xa);                                                                              \
            free(flut);                                                                            \
            free(lut);                                                                             \
            free(g.xmap);                                                                          \
            return RP_ENOMEM;                                                                      \
        }                                                                                          \
        int *ind2 = ind1 + w;                                                                      \
        float *xa1 = xa + w;                                                                       \
        const float inv_tw = 1.0f / g.tw, inv_th = 1.0f / g.th;                                    \
        for (int x = 0; x < w; x++) {                                                              \
            float txf = x * inv_tw - 0.5f;                                                         \
            int tx1 = (int)floorf(txf), tx2 = tx1 + 1;                                             \
            xa[x] = txf - tx1;                                                                     \
            xa1[x] = 1.0f - xa[x];                                                                 \
            tx1 = tx1 < 0 ? 0 : tx1;                                                               \
            tx2 = tx2 > tiles_x - 1 ? tiles_x - 1 : tx2;                                           \
            ind1[x] = tx1 * BINS;                                                                  \
            ind2[x] = tx2 * BINS;                                                                  \
        }                                                                                          \
        _Pragma("omp parallel for if (par) schedule(dynamic, 16)") for (int y = 0; y < h; y++)     \
        {                                                                                          \
            float tyf = y * inv_th - 0.5f;                                                         \
            int ty1 = (int)floorf(tyf), ty2 = ty1 + 1;                                             \
            float ya = tyf - ty1, ya1 = 1.0f - ya;                                                 \
            ty1 = ty1 < 0 ? 0 : ty1;                                                               \
            ty2 = ty2 > tiles_y - 1 ? tiles_y - 1 : ty2;                                           \
            const LT *l1 = ilut + (size_t)ty1 * tiles_x * BINS;                                    \
            const LT *l2 = ilut + (size_t)ty2 * tiles_x * BINS;                                    \
            const T *s = src + (size_t)y * w;                                                      \
            if (fdst) {                                                                            \
                float *d = fdst + (size_t)(fflip ? h - 1 - y : y) * w;                             \
                for (int x = 0; x < w; x++) {                                                      \
                    int v = s[x];                                                                  \
                    int i1 = ind1[x] + v, i2 = ind2[x] + v;                                        \
                    float res = (l1[i1] * xa1[x] + l1[i2] * xa[x]) * ya1 +                         \
                                (l2[i1] * xa1[x] + l2[i2] * xa[x]) * ya;                           \
                    int r = round_even(res);                                                       \
                    d[x] = (r < 0 ? 0 : r > (MAXV) ? (MAXV) : r) * fscale;                         \
                }                                                                                  \
                continue;                                                                          \
            }                                                                                      \
            T *d = dst + (size_t)y * w;                                                            \
            for (int x = 0; x < w; x++) {                                                          \
                int v = s[x];                                                                      \
                int i1 = ind1[x] + v, i2 = ind2[x] + v;                                            \
                float res = (l1[i1] * xa1[x] + l1[i2] * xa[x]) * ya1 +                             \
                            (l2[i1] * xa1[x] + l2[i2] * xa[x]) * ya;                               \
                int r = round_even(res);                                                           \
                d[x] = (T)(r < 0 ? 0 : r > (MAXV) ? (MAXV) : r);                                   \
            }                                                                                      \
        }                                                                                          \
        free(ind1);                                                                                \
        free(xa);                                                                                  \
        free(flut);                                                                                \
        free(lut);                                                                                 \
        free(g.xmap);                                                                              \
        return 0;                                                                                  \
    }

CLAHE_APPLY(clahe_u8, uint8_t, 256, 255, float, 1)
CLAHE_APPLY(clahe_u16, uint16_t, 65536, 65535, uint16_t, 0)

int rp_xr_clahe_u8(const uint8_t *src, uint8_t *dst, int w, int h, double clip, int tiles_x,
                   int tiles_y)
{
    return dst ? clahe_u8(src, dst, NULL, 0.0f, 0, w, h, clip, tiles_x, tiles_y) : RP_EINVAL;
}

int rp_xr_clahe_u16(const uint16_t *src, uint16_t *dst, int w, int h, double clip, int tiles_x,
                    int tiles_y)
{
    return dst ? clahe_u16(src, dst, NULL, 0.0f, 0, w, h, clip, tiles_x, tiles_y) : RP_EINVAL;
}

int rp_xr_clahe_f32(float *img, int w, int h, double clip, int tiles_x, int tiles_y, int bits,
                    int bottom_up, size_t *n_clamped)
{
    if (!img || w < 1 || h < 1 || (bits != 8 && bits != 16))
        return RP_EINVAL;
    const size_t n = (size_t)w * h;
    const float maxv = bits == 8 ? 255.0f : 65535.0f;
    size_t clamped = 0;
    void *q = malloc(n * (bits == 8 ? 1 : 2));
    if (!q)
        return RP_ENOMEM;
    uint8_t *q8 = q;
    uint16_t *q16 = q;
    /* Quantize into displayed row order (the equalization sees the image as cv2 would), two
     * specialised loops (no per-pixel branch on the depth). NaN counts as clamped -> 0. */
#pragma omp parallel for if (n >= RP_XR_PAR_MIN) reduction(+ : clamped) schedule(dynamic, 16)
    for (int y = 0; y < h; y++) {
        const float *s = img + (size_t)(bottom_up ? h - 1 - y : y) * w;
        size_t c = 0;
        if (bits == 8) {
            uint8_t *d = q8 + (size_t)y * w;
#pragma omp simd reduction(+ : c)
            for (int x = 0; x < w; x++) {
                float v = s[x];
                int in = v >= 0.0f && v <= 1.0f;
                c += !in;
                v = in ? v : (v > 1.0f ? 1.0f : 0.0f);
                d[x] = (uint8_t)round_even(v * maxv);
            }
        } else {
            uint16_t *d = q16 + (size_t)y * w;
#pragma omp simd reduction(+ : c)
            for (int x = 0; x < w; x++) {
                float v = s[x];
                int in = v >= 0.0f && v <= 1.0f;
                c += !in;
                v = in ? v : (v > 1.0f ? 1.0f : 0.0f);
                d[x] = (uint16_t)round_even(v * maxv);
            }
        }
        clamped += c;
    }
    const float inv = 1.0f / maxv;
    int rc = bits == 8 ? clahe_u8(q8, NULL, img, inv, bottom_up, w, h, clip, tiles_x, tiles_y)
                       : clahe_u16(q16, NULL, img, inv, bottom_up, w, h, clip, tiles_x, tiles_y);
    free(q);
    if (n_clamped)
        *n_clamped = clamped;
    return rc;
}
