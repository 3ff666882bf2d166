/* pipeline/write/nifti.c — a tight NIfTI-1 writer with parallel multi-member gzip (ISA-L's
 * igzip; libdeflate for the levels that ask for smaller files). Contract in write.h. */
#include "pipeline/write/write.h"

#include <errno.h>
#include <isa-l/igzip_lib.h>
#include <libdeflate.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "common/common.h"
#include "pipeline/volume/volume.h"

#pragma pack(push, 1)
typedef struct nifti1_header {
    int32_t sizeof_hdr;
    char data_type[10];
    char db_name[18];
    int32_t extents;
    int16_t session_error;
    char regular;
    char dim_info;
    int16_t dim[8];
    float intent_p1, intent_p2, intent_p3;
    int16_t intent_code;
    int16_t datatype;
    int16_t bitpix;
    int16_t slice_start;
    float pixdim[8];
    float vox_offset;
    float scl_slope, scl_inter;
    int16_t slice_end;
    char slice_code;
    char xyzt_units;
    float cal_max, cal_min;
    float slice_duration;
    float toffset;
    int32_t glmax, glmin;
    char descrip[80];
    char aux_file[24];
    int16_t qform_code, sform_code;
    float quatern_b, quatern_c, quatern_d;
    float qoffset_x, qoffset_y, qoffset_z;
    float srow_x[4], srow_y[4], srow_z[4];
    char intent_name[16];
    char magic[4];
} nifti1_header;
#pragma pack(pop)

_Static_assert(sizeof(nifti1_header) == 348, "NIfTI-1 header must be 348 bytes");

static int bitpix_of(int dt)
{
    switch (dt) {
    case RP_NII_UINT8:
    case RP_NII_INT8:
        return 8;
    case RP_NII_INT16:
    case RP_NII_UINT16:
        return 16;
    case RP_NII_RGB24:
        return 24;
    case RP_NII_INT32:
    case RP_NII_UINT32:
    case RP_NII_FLOAT32:
        return 32;
    default:
        return 0;
    }
}

/* nifti_mat44_to_quatern, after the reference implementation in nifti1_io.c */
static void to_quatern(const double A[4][4], float *qb, float *qc, float *qd, float pix[3],
                       float *qfac)
{
    double r11 = A[0][0], r12 = A[0][1], r13 = A[0][2];
    double r21 = A[1][0], r22 = A[1][1], r23 = A[1][2];
    double r31 = A[2][0], r32 = A[2][1], r33 = A[2][2];
    double xd = sqrt(r11 * r11 + r21 * r21 + r31 * r31);
    double yd = sqrt(r12 * r12 + r22 * r22 + r32 * r32);
    double zd = sqrt(r13 * r13 + r23 * r23 + r33 * r33);
    if (xd == 0) {
        r11 = 1;
        r21 = r31 = 0;
        xd = 1;
    }
    if (yd == 0) {
        r22 = 1;
        r12 = r32 = 0;
        yd = 1;
    }
    if (zd == 0) {
        r33 = 1;
        r13 = r23 = 0;
        zd = 1;
    }
    pix[0] = (float)xd;
    pix[1] = (float)yd;
    pix[2] = (float)zd;
    r11 /= xd;
    r21 /= xd;
    r31 /= xd;
    r12 /= yd;
    r22 /= yd;
    r32 /= yd;
    r13 /= zd;
    r23 /= zd;
    r33 /= zd;
    /* orthogonalise (polar decomposition by a few Newton steps) so sheared input still gives
     * the nearest rotation */
    double M[3][3] = {{r11, r12, r13}, {r21, r22, r23}, {r31, r32, r33}};
    for (int it = 0; it < 10; it++) {
        double det = M[0][0] * (M[1][1] * M[2][2] - M[1][2] * M[2][1]) -
                     M[0][1] * (M[1][0] * M[2][2] - M[1][2] * M[2][0]) +
                     M[0][2] * (M[1][0] * M[2][1] - M[1][1] * M[2][0]);
        if (fabs(det) < 1e-12)
            break;
        double inv[3][3];
        inv[0][0] = (M[1][1] * M[2][2] - M[1][2] * M[2][1]) / det;
        inv[0][1] = (M[0][2] * M[2][1] - M[0][1] * M[2][2]) / det;
        inv[0][2] = (M[0][1] * M[1][2] - M[0][2] * M[1][1]) / det;
        inv[1][0] = (M[1][2] * M[2][0] - M[1][0] * M[2][2]) / det;
        inv[1][1] = (M[0][0] * M[2][2] - M[0][2] * M[2][0]) / det;
        inv[1][2] = (M[0][2] * M[1][0] - M[0][0] * M[1][2]) / det;
        inv[2][0] = (M[1][0] * M[2][1] - M[1][1] * M[2][0]) / det;
        inv[2][1] = (M[0][1] * M[2][0] - M[0][0] * M[2][1]) / det;
        inv[2][2] = (M[0][0] * M[1][1] - M[0][1] * M[1][0]) / det;
        double diff = 0;
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                double nv = 0.5 * (M[i][j] + inv[j][i]);
                diff += fabs(nv - M[i][j]);
                M[i][j] = nv;
            }
        if (diff < 1e-12)
            break;
    }
    r11 = M[0][0];
    r12 = M[0][1];
    r13 = M[0][2];
    r21 = M[1][0];
    r22 = M[1][1];
    r23 = M[1][2];
    r31 = M[2][0];
    r32 = M[2][1];
    r33 = M[2][2];
    double zdet = r11 * r22 * r33 - r11 * r32 * r23 - r21 * r12 * r33 + r21 * r32 * r13 +
                  r31 * r12 * r23 - r31 * r22 * r13;
    if (zdet > 0) {
        *qfac = 1;
    } else {
        *qfac = -1;
        r13 = -r13;
        r23 = -r23;
        r33 = -r33;
    }
    double a = r11 + r22 + r33 + 1, b, c, d;
    if (a > 0.5) {
        a = 0.5 * sqrt(a);
        b = 0.25 * (r32 - r23) / a;
        c = 0.25 * (r13 - r31) / a;
        d = 0.25 * (r21 - r12) / a;
    } else {
        double xx = 1 + r11 - (r22 + r33), yy = 1 + r22 - (r11 + r33), zz = 1 + r33 - (r11 + r22);
        if (xx > 1) {
            b = 0.5 * sqrt(xx);
            c = 0.25 * (r12 + r21) / b;
            d = 0.25 * (r13 + r31) / b;
            a = 0.25 * (r32 - r23) / b;
        } else if (yy > 1) {
            c = 0.5 * sqrt(yy);
            b = 0.25 * (r12 + r21) / c;
            d = 0.25 * (r23 + r32) / c;
            a = 0.25 * (r13 - r31) / c;
        } else {
            d = 0.5 * sqrt(zz);
            b = 0.25 * (r13 + r31) / d;
            c = 0.25 * (r23 + r32) / d;
            a = 0.25 * (r21 - r12) / d;
        }
        if (a < 0) {
            b = -b;
            c = -c;
            d = -d;
        }
    }
    *qb = (float)b;
    *qc = (float)c;
    *qd = (float)d;
}

void rp_nifti_qform_affine(const rp_nifti_info *h, double A[4][4])
{
    double b = h->quatern[0], c = h->quatern[1], d = h->quatern[2];
    double a = 1.0 - (b * b + c * c + d * d);
    a = a < 1e-7 ? 0 : sqrt(a);
    double qfac = h->pixdim[0] < 0 ? -1 : 1;
    double dx = h->pixdim[1], dy = h->pixdim[2], dz = h->pixdim[3] * qfac;
    double R[3][3] = {{a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)},
                      {2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)},
                      {2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b}};
    memset(A, 0, sizeof(double) * 16);
    for (int i = 0; i < 3; i++) {
        A[i][0] = R[i][0] * dx;
        A[i][1] = R[i][1] * dy;
        A[i][2] = R[i][2] * dz;
        A[i][3] = h->qoffset[i];
    }
    A[3][3] = 1;
}

static int write_all(FILE *f, const void *p, size_t n)
{
    return fwrite(p, 1, n, f) == n ? 0 : RP_EIO;
}

/* The byte stream of a file: header then voxels, as a list of segments (one buffer, or one
 * per slice when the data is written straight from the decoded slices). */
typedef struct seg {
    const uint8_t *p;
    size_t n; /* bytes of the stream this segment makes */
    /* conv != 0: the bytes are made on the fly from float32 voxels f[], stored = round(v * a +
     * b) clamped to the type (int16 or uint8), so a converted copy never exists in memory */
    int conv;
    const float *f;
    double a, b;
    const rp_mask *mask; /* CONV_MASK: a mask in either form (volume.h), as uint8 */
} seg;

enum { CONV_NONE = 0, CONV_F32_S16, CONV_F32_U8, CONV_MASK };

/* Converted bytes [o, o+l) of a conv segment. Block edges may split an element. */
static void convert_range(const seg *s, size_t o, size_t l, uint8_t *dst)
{
    if (s->conv == CONV_MASK) {
        rp_mask_get_bytes(s->mask, o, l, dst);
        return;
    }
    const size_t es = s->conv == CONV_F32_S16 ? 2 : 1;
    const float a = (float)s->a, b = (float)s->b;
    const double ad = s->a, bd = s->b;
    size_t e0 = o / es, e1 = (o + l + es - 1) / es;
    if (s->conv == CONV_F32_U8) {
        for (size_t e = e0; e < e1; e++) {
            double v = rint((double)s->f[e] * ad + bd);
            dst[e - e0] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
        return;
    }
    /* whole elements straight into dst when aligned, else through a small buffer */
    int16_t tmp[2048];
    size_t done = 0;
    for (size_t e = e0; e < e1;) {
        size_t k = e1 - e < 2048 ? e1 - e : 2048;
        const float *src = s->f + e;
        /* float arithmetic: the stored values fit int16, so the product's error (< 0.004
         * stored units) only matters for values within it of a rounding edge; this loop
         * vectorises where a double one runs at half the width */
        size_t q = 0;
#ifdef __SSE2__
        /* round to nearest even (the MXCSR default, as lrintf), pack to int16 with
         * saturation: 8 voxels per step (the caller's values fit int16) */
        const __m128 va = _mm_set1_ps(a), vb = _mm_set1_ps(b);
        for (; q + 8 <= k; q += 8) {
            __m128i lo = _mm_cvtps_epi32(_mm_add_ps(_mm_mul_ps(_mm_loadu_ps(src + q), va), vb));
            __m128i hi = _mm_cvtps_epi32(_mm_add_ps(_mm_mul_ps(_mm_loadu_ps(src + q + 4), va), vb));
            _mm_storeu_si128((__m128i *)(tmp + q), _mm_packs_epi32(lo, hi));
        }
#endif
        for (; q < k; q++) {
            float v = src[q] * a + b;
            v = v < -32768.f ? -32768.f : v > 32767.f ? 32767.f : v;
            tmp[q] = (int16_t)lrintf(v);
        }
        size_t bo = (e == e0) ? o - e0 * es : 0; /* byte offset inside this chunk */
        size_t bl = k * es - bo;
        if (bl > l - done)
            bl = l - done;
        memcpy(dst + done, (const uint8_t *)tmp + bo, bl);
        done += bl;
        e += k;
    }
}

/* Copy stream bytes [off, off+len) into dst. */
static void gather(const seg *sg, size_t nseg, size_t off, size_t len, uint8_t *dst)
{
    size_t pos = 0;
    for (size_t i = 0; i < nseg && len; i++) {
        if (off >= pos + sg[i].n) {
            pos += sg[i].n;
            continue;
        }
        size_t o = off - pos, l = sg[i].n - o < len ? sg[i].n - o : len;
        if (sg[i].conv)
            convert_range(&sg[i], o, l, dst);
        else
            memcpy(dst, sg[i].p + o, l);
        dst += l;
        off += l;
        len -= l;
        pos += sg[i].n;
    }
}

/* Stream bytes [off, off+len) as one pointer when they lie in one plain segment, else NULL. */
static const uint8_t *direct(const seg *sg, size_t nseg, size_t off, size_t len)
{
    size_t pos = 0;
    for (size_t i = 0; i < nseg; i++) {
        if (off < pos + sg[i].n)
            return !sg[i].conv && off + len <= pos + sg[i].n ? sg[i].p + (off - pos) : NULL;
        pos += sg[i].n;
    }
    return NULL;
}

/* 1 when stream bytes [off, off+len) are known to be zeros without making them: they lie in
 * one packed mask segment with none of those voxels set (most of a mask's blocks). */
static int known_zero(const seg *sg, size_t nseg, size_t off, size_t len)
{
    size_t pos = 0;
    for (size_t i = 0; i < nseg; i++) {
        if (off < pos + sg[i].n)
            return sg[i].conv == CONV_MASK && off + len <= pos + sg[i].n &&
                   rp_mask_range_empty(sg[i].mask, off - pos, len);
        pos += sg[i].n;
    }
    return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
    uint64_t acc = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        acc |= w;
        if ((i & 4095) == 4088 && acc)
            return 0; /* give up early on data */
    }
    for (; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* Which compressor a level means. The scale stays libdeflate's 1..12 (rules and
 * --gzip-level keep their meaning); what runs was chosen by measuring LIDC-0001 in 1 MiB
 * members on one core:
 *   1     igzip 1: the recipe's int16 image (0.1 HU grid, noisy low bytes) at 600 MB/s,
 *         4.4x libdeflate 1, for 2 % more bytes (59.4 vs 58.1 MB);
 *   2..6  igzip 2: the plain conversion at 410 MB/s, 4.6x libdeflate 6, for 3.6 % more
 *         (35.5 vs 34.2 MB); masks at ~9 GB/s and 5 % smaller than libdeflate 2;
 *   7..12 libdeflate at that level: only it makes files smaller than igzip does (plain
 *         LIDC 34.1 MB at 9, 32.8 MB at 12), at 4-40x the CPU, for callers who ask.
 * igzip 3 is not used (no smaller than 2 on the image, masks 1.7x larger and 10x slower),
 * nor igzip 0 (fixed Huffman tables: the image stays at 97 % of its size). */
static int isal_level_of(int level)
{
    return level <= 1 ? 1 : level <= 6 ? 2 : -1;
}

/* One thread's compressor: igzip's stream state and level buffer live in the thread's slot
 * of the writer's buffer, libdeflate's compressor is allocated when a level asks for it. */
typedef struct gz_codec {
    int isal; /* igzip level, or -1: libdeflate */
    struct isal_zstream *zs;
    uint8_t *lvl_buf;
    uint32_t lvl_size;
    struct libdeflate_compressor *ld;
} gz_codec;

static uint32_t isal_buf_size(int isal)
{
    return isal == 1 ? ISAL_DEF_LVL1_DEFAULT : isal == 2 ? ISAL_DEF_LVL2_DEFAULT : 0;
}

/* One complete gzip member for src[0, len) in out[0, cap); 0 on failure. cap must hold a
 * stored copy (len + 5 bytes per 64 KiB + gzip header and trailer): igzip's one-shot call
 * falls back to stored blocks when compressing would not fit, libdeflate's bound is larger. */
static size_t gz_member(gz_codec *c, const uint8_t *src, size_t len, uint8_t *out, size_t cap)
{
    if (c->isal < 0)
        return libdeflate_gzip_compress(c->ld, src, len, out, cap);
    struct isal_zstream *s = c->zs;
    isal_deflate_stateless_init(s);
    s->level = (uint32_t)c->isal;
    s->level_buf = c->lvl_buf;
    s->level_buf_size = c->lvl_size;
    s->gzip_flag = IGZIP_GZIP; /* header, CRC-32 (igzip's folded CRC) and size trailer */
    s->flush = NO_FLUSH;
    s->end_of_stream = 1;
    s->next_in = (uint8_t *)(uintptr_t)src; /* read only; igzip's API is not const */
    s->avail_in = (uint32_t)len;
    s->next_out = out;
    s->avail_out = (uint32_t)cap;
    return isal_deflate_stateless(s) == COMP_OK && s->avail_in == 0 ? s->total_out : 0;
}

#define ALIGN64(n) (((n) + 63) / 64 * 64)

/* Compress the stream as consecutive gzip members on all threads of one parallel region:
 * each thread compresses its blocks (gathering or converting them first when needed) and
 * writes them in stream order, so compression never waits for a batch to finish and the
 * file grows while later blocks are compressed. Memory: one input and one output block and
 * igzip's state (~0.4 MB) per thread. */
static int write_gz(FILE *f, const seg *sg, size_t nseg, const rp_nifti_opts *o)
{
    size_t block = o && o->block_bytes ? o->block_bytes : (size_t)1 << 20;
    if (block > (size_t)1 << 30)
        block = (size_t)1 << 30; /* igzip counts in 32 bits */
    int level = o && o->level > 0 ? o->level : RP_NIFTI_DEFAULT_LEVEL;
    if (level > 12)
        level = 12;
    const int isal = isal_level_of(level);
    int threads = o && o->threads > 0 ? o->threads : omp_get_max_threads();
    size_t total = 0;
    for (size_t i = 0; i < nseg; i++)
        total += sg[i].n;
    size_t nblocks = (total + block - 1) / block;
    if (nblocks == 0)
        nblocks = 1;
    if ((size_t)threads > nblocks)
        threads = (int)nblocks;
    int fail = 0, wfail = 0;
    /* every thread's input and output block and igzip state in one huge-page buffer
     * (rp_mem_alloc): a few MB that separate mallocs would fault in 4 KiB at a time for
     * each file written */
    size_t bound = libdeflate_gzip_compress_bound(NULL, block); /* NULL: any compressor */
    size_t zs_off = ALIGN64(block) + ALIGN64(bound), lvl_off = zs_off;
    if (isal >= 0)
        lvl_off += ALIGN64(sizeof(struct isal_zstream));
    size_t slot = lvl_off + (isal >= 0 ? ALIGN64((size_t)isal_buf_size(isal)) : 0);
    uint8_t *blocks = rp_mem_alloc((size_t)threads * slot);
    if (!blocks)
        return RP_ENOMEM;
#pragma omp parallel num_threads(threads)
    {
        uint8_t *in = blocks + (size_t)omp_get_thread_num() * slot, *out = in + ALIGN64(block);
        gz_codec c = {.isal = isal,
                      .zs = isal >= 0 ? (struct isal_zstream *)(void *)(in + zs_off) : NULL,
                      .lvl_buf = isal >= 0 ? in + lvl_off : NULL,
                      .lvl_size = isal_buf_size(isal),
                      .ld = isal < 0 ? libdeflate_alloc_compressor(level) : NULL};
        size_t zlen = 0;
        uint8_t *zmem = NULL; /* this thread's member for a block of zeros */
        if (isal < 0 && !c.ld) {
#pragma omp atomic write
            fail = 1;
        }
#pragma omp for ordered schedule(static, 1)
        for (size_t i = 0; i < nblocks; i++) {
            size_t olen = 0;
            int bad;
#pragma omp atomic read
            bad = fail;
            if (!bad) {
                size_t off = i * block;
                size_t len = total - off < block ? total - off : block;
                /* masks are mostly zero: a whole block of zeros compresses to the same member
                 * every time, so each thread makes it once (and a block a mask's bits show
                 * empty is not even expanded) */
                int zero = len == block && zlen && known_zero(sg, nseg, off, len);
                const uint8_t *src = zero ? NULL : direct(sg, nseg, off, len);
                if (!zero && !src) {
                    gather(sg, nseg, off, len, in);
                    src = in;
                }
                zero = zero || (len == block && all_zero(src, len));
                if (zero && zlen) {
                    memcpy(out, zmem, zlen);
                    olen = zlen;
                } else {
                    olen = gz_member(&c, src, len, out, bound);
                    if (zero && olen && (zmem = malloc(olen)) != NULL) {
                        memcpy(zmem, out, olen);
                        zlen = olen;
                    }
                }
                if (olen == 0) {
#pragma omp atomic write
                    fail = 1;
                }
            }
#pragma omp ordered
            {
                if (olen && !wfail && write_all(f, out, olen) != 0)
                    wfail = 1;
            }
        }
        if (c.ld)
            libdeflate_free_compressor(c.ld);
        free(zmem);
    }
    free(blocks);
    return wfail ? RP_EIO : fail ? RP_ENOMEM : 0;
}

static int write_stream(const char *path, const seg *sg, size_t nseg, const rp_nifti_opts *o,
                        char *err, size_t errlen);

/* The 352 header bytes (header + empty extension); RP_EINVAL for a type or size NIfTI-1
 * cannot hold. */
static int make_header(uint8_t hdr[352], const int dim[4], int datatype, const double A[4][4],
                       double scl_slope, double scl_inter, const rp_nifti_opts *o, char *err,
                       size_t errlen)
{
    int bp = bitpix_of(datatype);
    if (!bp || dim[0] < 1 || dim[1] < 1 || dim[2] < 1 || dim[3] < 1 || dim[0] > 32767 ||
        dim[1] > 32767 || dim[2] > 32767 || dim[3] > 32767) {
        snprintf(err, errlen, "cannot write datatype %d with dims %dx%dx%dx%d", datatype, dim[0],
                 dim[1], dim[2], dim[3]);
        return RP_EINVAL;
    }
    nifti1_header h;
    memset(&h, 0, sizeof h);
    h.sizeof_hdr = 348;
    h.regular = 'r';
    int nd = dim[3] > 1 ? 4 : 3;
    h.dim[0] = (int16_t)nd;
    for (int i = 0; i < 4; i++)
        h.dim[i + 1] = (int16_t)dim[i];
    for (int i = 5; i < 8; i++)
        h.dim[i] = 1;
    h.datatype = (int16_t)datatype;
    h.bitpix = (int16_t)bp;
    h.vox_offset = 352;
    h.scl_slope = scl_slope == 0 ? 1.0f : (float)scl_slope;
    h.scl_inter = scl_slope == 0 ? 0.0f : (float)scl_inter;
    if (h.scl_slope == 1.0f && h.scl_inter == 0.0f && datatype != RP_NII_FLOAT32) {
        h.scl_slope = 1;
        h.scl_inter = 0;
    }
    h.xyzt_units = 2 | 8; /* mm, s */
    float pix[3], qfac;
    to_quatern(A, &h.quatern_b, &h.quatern_c, &h.quatern_d, pix, &qfac);
    h.pixdim[0] = qfac;
    h.pixdim[1] = pix[0];
    h.pixdim[2] = pix[1];
    h.pixdim[3] = pix[2];
    h.pixdim[4] = o && o->tr_s > 0 ? (float)o->tr_s : (nd == 4 ? 1.0f : 0.0f);
    for (int i = 5; i < 8; i++)
        h.pixdim[i] = 1;
    h.qoffset_x = (float)A[0][3];
    h.qoffset_y = (float)A[1][3];
    h.qoffset_z = (float)A[2][3];
    h.qform_code = 1;
    h.sform_code = 1;
    for (int c = 0; c < 4; c++) {
        h.srow_x[c] = (float)A[0][c];
        h.srow_y[c] = (float)A[1][c];
        h.srow_z[c] = (float)A[2][c];
    }
    if (o && o->descrip[0])
        memcpy(h.descrip, o->descrip, strnlen(o->descrip, 79));
    memcpy(h.magic, "n+1", 4);
    memcpy(hdr, &h, 348);
    memset(hdr + 348, 0, 4); /* no extensions */
    return 0;
}

static int write_any(const char *path, const int dim[4], int datatype, const void *data,
                     const void *const *slices, size_t n_slices, const double A[4][4],
                     double scl_slope, double scl_inter, const rp_nifti_opts *o, char *err,
                     size_t errlen)
{
    uint8_t hdr[352];
    int rc = make_header(hdr, dim, datatype, A, scl_slope, scl_inter, o, err, errlen);
    if (rc)
        return rc;
    int bp = bitpix_of(datatype);
    size_t dlen = (size_t)dim[0] * dim[1] * dim[2] * dim[3] * (size_t)(bp / 8);
    if (slices) {
        seg *sg = malloc((n_slices + 1) * sizeof *sg);
        if (!sg)
            return RP_ENOMEM;
        sg[0] = (seg){.p = hdr, .n = sizeof hdr};
        for (size_t k = 0; k < n_slices; k++)
            sg[k + 1] = (seg){.p = (const uint8_t *)slices[k], .n = dlen / n_slices};
        rc = write_stream(path, sg, n_slices + 1, o, err, errlen);
        free(sg);
        return rc;
    }
    seg sg[2] = {{.p = hdr, .n = sizeof hdr}, {.p = (const uint8_t *)data, .n = dlen}};
    return write_stream(path, sg, 2, o, err, errlen);
}

/* The stream uncompressed; converted segments go through a 1 MiB buffer (they have no
 * bytes of their own). */
static int write_plain(FILE *f, const seg *sg, size_t nseg)
{
    const size_t chunk = (size_t)1 << 20;
    uint8_t *buf = NULL;
    int rc = 0;
    for (size_t i = 0; i < nseg && !rc; i++) {
        if (!sg[i].conv) {
            rc = write_all(f, sg[i].p, sg[i].n);
            continue;
        }
        if (!buf && !(buf = malloc(chunk)))
            return RP_ENOMEM;
        for (size_t off = 0; off < sg[i].n && !rc; off += chunk) {
            size_t len = sg[i].n - off < chunk ? sg[i].n - off : chunk;
            convert_range(&sg[i], off, len, buf);
            rc = write_all(f, buf, len);
        }
    }
    free(buf);
    return rc;
}

static int write_stream(const char *path, const seg *sg, size_t nseg, const rp_nifti_opts *o,
                        char *err, size_t errlen)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return RP_EIO;
    }
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    int rc = o && o->gzip ? write_gz(f, sg, nseg, o) : write_plain(f, sg, nseg);
    if (fclose(f) != 0 && !rc)
        rc = RP_EIO;
    if (!rc && rename(tmp, path) != 0)
        rc = RP_EIO;
    if (rc) {
        snprintf(err, errlen, "writing %s failed: %s", path,
                 rc == RP_EIO ? strerror(errno) : rp_strerror(rc));
        unlink(tmp);
    }
    return rc;
}

int rp_nifti_write(const char *path, const int dim[4], int datatype, const void *data,
                   const double A[4][4], double scl_slope, double scl_inter, const rp_nifti_opts *o,
                   char *err, size_t errlen)
{
    return write_any(path, dim, datatype, data, NULL, 0, A, scl_slope, scl_inter, o, err, errlen);
}

int rp_nifti_write_slices(const char *path, const int dim[4], int datatype,
                          const void *const *slices, const double A[4][4], double scl_slope,
                          double scl_inter, const rp_nifti_opts *o, char *err, size_t errlen)
{
    return write_any(path, dim, datatype, NULL, slices, (size_t)dim[2] * dim[3], A, scl_slope,
                     scl_inter, o, err, errlen);
}

int rp_nifti_write_volume(const char *path, const rp_volume *v, const rp_nifti_opts *o, char *err,
                          size_t errlen)
{
    int dim[4] = {v->dim[0], v->dim[1], v->dim[2], v->dim[3]};
    return rp_nifti_write(path, dim, RP_NII_FLOAT32, v->data, v->affine, 1.0, 0.0, o, err, errlen);
}

int rp_nifti_read_info(const char *path, rp_nifti_info *out)
{
    gzFile g = gzopen(path, "rb"); /* reads plain files too */
    if (!g)
        return RP_EIO;
    nifti1_header h;
    int n = gzread(g, &h, sizeof h);
    gzclose(g);
    if (n != (int)sizeof h || h.sizeof_hdr != 348)
        return RP_EPARSE;
    memset(out, 0, sizeof *out);
    for (int i = 0; i < 8; i++) {
        out->dim[i] = h.dim[i];
        out->pixdim[i] = h.pixdim[i];
    }
    out->datatype = h.datatype;
    out->bitpix = h.bitpix;
    out->vox_offset = h.vox_offset;
    out->scl_slope = h.scl_slope;
    out->scl_inter = h.scl_inter;
    out->qform_code = h.qform_code;
    out->sform_code = h.sform_code;
    out->quatern[0] = h.quatern_b;
    out->quatern[1] = h.quatern_c;
    out->quatern[2] = h.quatern_d;
    out->qoffset[0] = h.qoffset_x;
    out->qoffset[1] = h.qoffset_y;
    out->qoffset[2] = h.qoffset_z;
    for (int c = 0; c < 4; c++) {
        out->srow[0][c] = h.srow_x[c];
        out->srow[1][c] = h.srow_y[c];
        out->srow[2][c] = h.srow_z[c];
    }
    memcpy(out->descrip, h.descrip, 80);
    out->descrip[79] = 0;
    memcpy(out->magic, h.magic, 4);
    return 0;
}

int rp_nifti_write_nnunet(const rp_volume *fused, const char *dir, const char *case_id, char *err,
                          size_t errlen)
{
    if (!fused || !dir || !case_id || !case_id[0] || strchr(case_id, '/'))
        return RP_EINVAL;
    int rc = rp_mkdir_p(dir, 0755);
    if (rc != 0) {
        if (err)
            snprintf(err, errlen, "fuse: cannot create %s", dir);
        return rc;
    }
    rp_nifti_opts o;
    memset(&o, 0, sizeof o);
    o.gzip = 1;
    size_t nv = rp_volume_nvox(fused);
    for (int c = 0; c < fused->dim[3]; c++) {
        rp_volume ch = *fused;
        ch.dim[3] = 1;
        ch.data = fused->data + (size_t)c * nv;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s_%04d.nii.gz", dir, case_id, c) >= (int)sizeof path)
            return RP_EINVAL;
        snprintf(o.descrip, sizeof o.descrip, "radprep fused channel %d", c);
        if ((rc = rp_nifti_write_volume(path, &ch, &o, err, errlen)) != 0)
            return rc;
    }
    return 0;
}

int rp_nifti_write_mask(const char *path, const rp_mask *m, const rp_nifti_opts *o, char *err,
                        size_t errlen)
{
    const int dim[4] = {m->dim[0], m->dim[1], m->dim[2], 1};
    uint8_t hdr[352];
    int rc = make_header(hdr, dim, RP_NII_UINT8, m->affine, 0, 0, o, err, errlen);
    if (rc)
        return rc;
    seg sg[2] = {{.p = hdr, .n = sizeof hdr},
                 {.n = (size_t)dim[0] * dim[1] * dim[2], .conv = CONV_MASK, .mask = m}};
    return write_stream(path, sg, 2, o, err, errlen);
}

int rp_nifti_write_converted(const char *path, const int dim[4], int datatype, const float *data,
                             double a, double b, const double A[4][4], double scl_slope,
                             double scl_inter, const rp_nifti_opts *o, char *err, size_t errlen)
{
    if (datatype == RP_NII_FLOAT32)
        return write_any(path, dim, datatype, data, NULL, 0, A, scl_slope, scl_inter, o, err,
                         errlen);
    if (datatype != RP_NII_INT16 && datatype != RP_NII_UINT8) {
        snprintf(err, errlen, "cannot convert float32 voxels to NIfTI datatype %d", datatype);
        return RP_EINVAL;
    }
    uint8_t hdr[352];
    int rc = make_header(hdr, dim, datatype, A, scl_slope, scl_inter, o, err, errlen);
    if (rc)
        return rc;
    size_t nvox = (size_t)dim[0] * dim[1] * dim[2] * dim[3];
    seg sg[2] = {{.p = hdr, .n = sizeof hdr},
                 {.n = nvox * (datatype == RP_NII_INT16 ? 2 : 1),
                  .conv = datatype == RP_NII_INT16 ? CONV_F32_S16 : CONV_F32_U8,
                  .f = data,
                  .a = a,
                  .b = b}};
    return write_stream(path, sg, 2, o, err, errlen);
}
