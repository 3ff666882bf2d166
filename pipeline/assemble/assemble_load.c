/* pipeline/assemble/assemble_load.c — decode an assembled stack into one native-typed buffer,
 * read its samples, and put sheared or unevenly spaced stacks on a regular grid. Contract in
 * pipeline/assemble/assemble.h. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/assemble/assemble.h"

size_t rp_sample_bytes(rp_sample_type t)
{
    switch (t) {
    case RP_ST_U8:
    case RP_ST_S8:
        return 1;
    case RP_ST_S16:
    case RP_ST_U16:
        return 2;
    case RP_ST_RGB24:
        return 3;
    default:
        return 4;
    }
}

void rp_stack_data_free(rp_stack_data *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n_bufs; i++)
        rp_dcm_pixels_free(d->bufs[i]); /* pooled or malloc'd */
    free(d->bufs);
    free(d->slice);
    free(d->data);
    free(d->pad_mask);
    memset(d, 0, sizeof *d);
}

typedef struct {
    int slice;
    int file;
} sref;
static int cmp_sref(const void *a, const void *b)
{
    const sref *x = a, *y = b;
    if (x->file != y->file)
        return x->file < y->file ? -1 : 1;
    return x->slice - y->slice;
}

static void invert_row(rp_sample_type t, void *row, size_t n, long smin, long smax)
{
    long s = smin + smax;
    switch (t) {
    case RP_ST_U8: {
        uint8_t *p = row;
        for (size_t i = 0; i < n; i++)
            p[i] = (uint8_t)(s - p[i]);
        break;
    }
    case RP_ST_S8: {
        int8_t *p = row;
        for (size_t i = 0; i < n; i++)
            p[i] = (int8_t)(s - p[i]);
        break;
    }
    case RP_ST_U16: {
        uint16_t *p = row;
        for (size_t i = 0; i < n; i++)
            p[i] = (uint16_t)(s - p[i]);
        break;
    }
    case RP_ST_S16: {
        int16_t *p = row;
        for (size_t i = 0; i < n; i++)
            p[i] = (int16_t)(s - p[i]);
        break;
    }
    case RP_ST_U32: {
        uint32_t *p = row;
        for (size_t i = 0; i < n; i++)
            p[i] = (uint32_t)(s - (long)p[i]);
        break;
    }
    case RP_ST_S32: {
        int32_t *p = row;
        for (size_t i = 0; i < n; i++)
            p[i] = (int32_t)(s - p[i]);
        break;
    }
    default:
        break;
    }
}

/* Padding voxels in a row: the value (or [value, range limit]) in stored units. Typed loops:
 * this runs over every voxel of every series that declares padding. */
static long count_padding(const rp_dcm_info *in, const void *row, size_t n, uint8_t *mask)
{
    long lo = in->padding_value, hi = in->padding_value;
    if (in->has_padding_range) {
        lo = in->padding_value < in->padding_range_limit ? in->padding_value
                                                         : in->padding_range_limit;
        hi = in->padding_value < in->padding_range_limit ? in->padding_range_limit
                                                         : in->padding_value;
    }
    long c = 0;
    /* int compares so the counting loop vectorises (omp simd) */
#define RP_PAD_LOOP(T, W)                                                                          \
    do {                                                                                           \
        const T *p = (const T *)row;                                                               \
        const W l = (W)lo, h = (W)hi;                                                              \
        if (mask) {                                                                                \
            for (size_t i = 0; i < n; i++) {                                                       \
                int b = p[i] >= l && p[i] <= h;                                                    \
                mask[i] = (uint8_t)b;                                                              \
                c += b;                                                                            \
            }                                                                                      \
        } else {                                                                                   \
            int cc = 0;                                                                            \
            _Pragma("omp simd reduction(+ : cc)") for (size_t i = 0; i < n; i++) cc +=             \
                (p[i] >= l) & (p[i] <= h);                                                         \
            c += cc;                                                                               \
        }                                                                                          \
    } while (0)
    switch (in->stype) {
    case RP_DCM_U8:
        RP_PAD_LOOP(uint8_t, int);
        break;
    case RP_DCM_S8:
        RP_PAD_LOOP(int8_t, int);
        break;
    case RP_DCM_U16:
        RP_PAD_LOOP(uint16_t, int);
        break;
    case RP_DCM_S16:
        RP_PAD_LOOP(int16_t, int);
        break;
    case RP_DCM_U32:
        RP_PAD_LOOP(uint32_t, long long);
        break;
    default:
        RP_PAD_LOOP(int32_t, long long);
        break;
    }
#undef RP_PAD_LOOP
    return c;
}

int rp_stack_data_contiguous(rp_stack_data *d)
{
    if (d->data || !d->slice)
        return 0;
    uint8_t *p = malloc(d->n_slices * d->slice_bytes);
    if (!p)
        return RP_ENOMEM;
    const size_t rb = d->stored_row_bytes, ny = rb ? d->slice_bytes / rb : 0;
    for (size_t k = 0; k < d->n_slices; k++) {
        if (!rb) {
            memcpy(p + k * d->slice_bytes, d->slice[k], d->slice_bytes);
            continue;
        }
        for (size_t y = 0; y < ny; y++) /* to the stack's bottom-up order */
            memcpy(p + k * d->slice_bytes + y * rb,
                   (const uint8_t *)d->slice[k] + (ny - 1 - y) * rb, rb);
    }
    d->stored_row_bytes = 0;
    for (size_t i = 0; i < d->n_bufs; i++)
        rp_dcm_pixels_free(d->bufs[i]); /* pooled or malloc'd */
    free(d->bufs);
    free(d->slice);
    d->bufs = NULL;
    d->slice = NULL;
    d->n_bufs = 0;
    d->data = p;
    return 0;
}

static void flip_frame(uint8_t *f, size_t rowbytes, size_t ny)
{
    uint8_t tmp[16384];
    for (size_t y = 0; y < ny / 2; y++) {
        uint8_t *a = f + y * rowbytes, *b = f + (ny - 1 - y) * rowbytes;
        for (size_t o = 0; o < rowbytes; o += sizeof tmp) {
            size_t l = rowbytes - o < sizeof tmp ? rowbytes - o : sizeof tmp;
            memcpy(tmp, a + o, l);
            memcpy(a + o, b + o, l);
            memcpy(b + o, tmp, l);
        }
    }
}

static rp_sample_type native_type(const rp_dcm_info *ref, int use_float)
{
    if (ref->samples_per_pixel == 3)
        return RP_ST_RGB24;
    if (use_float)
        return RP_ST_F32;
    switch (ref->stype) {
    case RP_DCM_U8:
        return RP_ST_U8;
    case RP_DCM_S8:
        return RP_ST_S8;
    case RP_DCM_U16:
        return RP_ST_U16;
    case RP_DCM_S16:
        return RP_ST_S16;
    case RP_DCM_U32:
        return RP_ST_U32;
    default:
        return RP_ST_S32;
    }
}

/* Plain conversion without a copy: the decoded file buffers become the stack. */
static int load_in_place(const rp_stack *st, const rp_dcm_info *const *infos, void **pixels,
                         int *pix_refs, int rows_as_stored, rp_stack_data *out)
{
    const rp_dcm_info *ref = st->ref;
    size_t nslices = (size_t)st->nz * st->nt;
    size_t ss = rp_dcm_stype_size(ref->stype) * (size_t)ref->samples_per_pixel;
    out->type = native_type(ref, 0);
    out->slice_bytes = (size_t)st->nx * st->ny * ss;
    out->n_slices = nslices;
    out->slice = calloc(nslices, sizeof(void *));
    out->bufs = calloc(nslices, sizeof(void *));
    if (!out->slice || !out->bufs)
        return RP_ENOMEM;
    int invert = !strcmp(ref->photometric, "MONOCHROME1");
    out->inverted_mono1 = invert;
    /* take every file's buffer over (first slice that names it), then fix frames in parallel */
    int *files = malloc(nslices * sizeof(int));
    if (!files)
        return RP_ENOMEM;
    int nf = 0;
    for (size_t k = 0; k < nslices; k++) {
        int f = st->slice[k].file;
        if (pixels[f]) {
            files[nf++] = f;
            out->bufs[out->n_bufs++] = pixels[f];
            pixels[f] = NULL;
            if (pix_refs)
                pix_refs[f] = 0;
        }
    }
    for (size_t k = 0; k < nslices; k++) {
        int f = st->slice[k].file;
        for (int i = 0; i < nf; i++)
            if (files[i] == f) {
                out->slice[k] = (uint8_t *)out->bufs[i] +
                                (size_t)st->slice[k].frame * rp_dcm_frame_bytes(infos[f]);
                break;
            }
    }
    long npad = 0;
    const size_t n = (size_t)st->nx * st->ny;
#pragma omp parallel for schedule(dynamic, 4) reduction(+ : npad)
    for (int i = 0; i < nf; i++) {
        const rp_dcm_info *in = infos[files[i]];
        long smin = in->pixel_representation ? -(1L << (in->bits_stored - 1)) : 0;
        long smax = in->pixel_representation ? (1L << (in->bits_stored - 1)) - 1
                                             : (long)((1UL << in->bits_stored) - 1);
        size_t fb = rp_dcm_frame_bytes(in);
        for (int f = 0; f < in->frames; f++) {
            uint8_t *fr = (uint8_t *)out->bufs[i] + (size_t)f * fb;
            /* rows as stored: the reader flips them and counts padding in its own pass */
            if (!rows_as_stored) {
                flip_frame(fr, (size_t)st->nx * ss, (size_t)st->ny);
                if (in->has_padding_value && in->samples_per_pixel == 1)
                    npad += count_padding(in, fr, n, NULL);
            }
            if (invert)
                invert_row(out->type, fr, n, smin, smax);
        }
    }
    free(files);
    out->n_padding = npad;
    out->stored_row_bytes = rows_as_stored ? (size_t)st->nx * ss : 0;
    const rp_dcm_frame *f0 = &infos[st->slice[0].file]->frame[st->slice[0].frame];
    out->scl_slope = f0->slope;
    out->scl_inter = f0->intercept;
    if (out->type == RP_ST_U16) {
        uint16_t mx = 0;
        for (size_t k = 0; k < nslices; k++) {
            const uint16_t *p = out->slice[k];
            for (size_t i = 0; i < out->slice_bytes / 2; i++)
                if (p[i] > mx)
                    mx = p[i];
        }
        if (mx < 32768)
            out->type = RP_ST_S16;
    }
    return 0;
}

int rp_stack_load(const rp_stack *st, const rp_dcm_info *const *infos, void **pixels, int *pix_refs,
                  unsigned flags, int threads, rp_stack_data *out, char *err, size_t errlen)
{
    int want_pad_mask = (flags & RP_LOAD_PAD_MASK) != 0;
    memset(out, 0, sizeof *out);
    const rp_dcm_info *ref = st->ref;
    int spp = ref->samples_per_pixel;
    int use_float = st->varying_rescale || (ref->has_modality_lut && !ref->enhanced);
    if (spp == 3) {
        if (ref->stype != RP_DCM_U8) {
            snprintf(err, errlen, "colour images with %d bits per sample are not supported",
                     ref->bits_allocated);
            return RP_EUNSUPPORTED;
        }
        out->type = RP_ST_RGB24;
        use_float = 0;
    } else if (use_float) {
        out->type = RP_ST_F32;
    } else {
        switch (ref->stype) {
        case RP_DCM_U8:
            out->type = RP_ST_U8;
            break;
        case RP_DCM_S8:
            out->type = RP_ST_S8;
            break;
        case RP_DCM_U16:
            out->type = RP_ST_U16;
            break;
        case RP_DCM_S16:
            out->type = RP_ST_S16;
            break;
        case RP_DCM_U32:
            out->type = RP_ST_U32;
            break;
        default:
            out->type = RP_ST_S32;
            break;
        }
    }
    size_t nx = (size_t)st->nx, ny = (size_t)st->ny, nslices = (size_t)st->nz * st->nt;
    if (!(flags & RP_LOAD_CONTIGUOUS) && !use_float && pixels && !st->mosaic && !want_pad_mask) {
        int ok = 1;
        for (size_t k = 0; k < nslices && ok; k++) {
            int f = st->slice[k].file;
            /* each file whole and only here (a file shared with another stack must stay) */
            ok = pixels[f] != NULL && (!pix_refs || pix_refs[f] <= 1);
        }
        /* the file's frames are flipped in place: every frame of it must belong here */
        for (size_t k = 0; k < nslices && ok; k++) {
            const rp_dcm_info *in = infos[st->slice[k].file];
            if (in->frames > 1) {
                int cnt = 0;
                for (size_t q = 0; q < nslices; q++)
                    cnt += st->slice[q].file == st->slice[k].file;
                ok = cnt == in->frames;
            }
        }
        if (ok) {
            int rc = load_in_place(st, infos, pixels, pix_refs,
                                   (flags & RP_LOAD_ROWS_AS_STORED) != 0, out);
            if (rc) {
                snprintf(err, errlen, "out of memory");
                rp_stack_data_free(out);
            }
            return rc;
        }
    }
    size_t ss = rp_sample_bytes(out->type), nvox = nx * ny;
    out->data = malloc(nvox * nslices * ss);
    if (!out->data) {
        snprintf(err, errlen, "out of memory for %zux%zux%zu", nx, ny, nslices);
        return RP_ENOMEM;
    }
    int any_pad = 0;
    for (size_t k = 0; k < nslices; k++)
        any_pad |= infos[st->slice[k].file]->has_padding_value;
    if (any_pad && spp == 1 && want_pad_mask) {
        out->pad_mask = calloc(nvox * nslices, 1);
        if (!out->pad_mask) {
            rp_stack_data_free(out);
            return RP_ENOMEM;
        }
    }
    int invert = !strcmp(ref->photometric, "MONOCHROME1");
    out->inverted_mono1 = invert;
    sref *order = malloc(nslices * sizeof *order);
    int *gstart = malloc((nslices + 1) * sizeof(int));
    if (!order || !gstart) {
        free(order);
        free(gstart);
        rp_stack_data_free(out);
        return RP_ENOMEM;
    }
    for (size_t k = 0; k < nslices; k++) {
        order[k].slice = (int)k;
        order[k].file = st->slice[k].file;
    }
    qsort(order, nslices, sizeof *order, cmp_sref);
    int ng = 0;
    for (size_t k = 0; k < nslices; k++)
        if (k == 0 || order[k].file != order[k - 1].file)
            gstart[ng++] = (int)k;
    gstart[ng] = (int)nslices;

    int failed = 0;
    long npad = 0;
    char ferr[1400] = "";
    if (threads <= 0)
        threads = omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) reduction(+ : npad)
    for (int g = 0; g < ng; g++) {
        if (failed)
            continue;
        const int f = order[gstart[g]].file;
        const rp_dcm_info *in = infos[f];
        int fmin = 1 << 30, fmax = -1;
        for (int k = gstart[g]; k < gstart[g + 1]; k++) {
            int fr = st->slice[order[k].slice].frame;
            if (fr < fmin)
                fmin = fr;
            if (fr > fmax)
                fmax = fr;
        }
        size_t fbytes = rp_dcm_frame_bytes(in);
        uint8_t *buf;
        char e[256] = "";
        int rc = 0;
        int owned = 1;
        if (pixels && pixels[f]) {
            buf = pixels[f]; /* all frames, decoded while the header was read */
            fmin = 0;
            owned = 0;
        } else {
            size_t nb = fbytes * (size_t)(fmax - fmin + 1);
            buf = malloc(nb);
            rc = buf ? rp_dcm_decode_frames(in->path, in, fmin, fmax - fmin + 1, buf, nb, e,
                                            sizeof e)
                     : RP_ENOMEM;
        }
        if (rc) {
#pragma omp critical(rp_stack_err)
            {
                if (!failed) {
                    failed = rc;
                    snprintf(ferr, sizeof ferr, "%s: %s", in->path, e[0] ? e : rp_strerror(rc));
                }
            }
            if (owned)
                free(buf);
            continue;
        }
        size_t sss = rp_dcm_stype_size(in->stype) * (size_t)spp; /* bytes per source pixel */
        long smin = in->pixel_representation ? -(1L << (in->bits_stored - 1)) : 0;
        long smax = in->pixel_representation ? (1L << (in->bits_stored - 1)) - 1
                                             : (long)((1UL << in->bits_stored) - 1);
        for (int k = gstart[g]; k < gstart[g + 1]; k++) {
            const rp_slice_ref *s = &st->slice[order[k].slice];
            const uint8_t *frame = buf + (size_t)(s->frame - fmin) * fbytes;
            size_t x0 = 0, y0 = 0;
            if (s->tile >= 0) {
                x0 = (size_t)(s->tile % in->mosaic_tiles_x) * nx;
                y0 = (size_t)(s->tile / in->mosaic_tiles_x) * ny;
            }
            uint8_t *dst = (uint8_t *)out->data + (size_t)order[k].slice * nvox * ss;
            uint8_t *pm = out->pad_mask ? out->pad_mask + (size_t)order[k].slice * nvox : NULL;
            for (size_t y = 0; y < ny; y++) {
                const uint8_t *srow = frame + ((y0 + y) * (size_t)in->cols + x0) * sss;
                size_t oy = st->flip_rows ? ny - 1 - y : y; /* bottom-up, as dcm2niix */
                uint8_t *drow = dst + oy * nx * ss;
                uint8_t *prow = pm ? pm + oy * nx : NULL;
                if (use_float) {
                    npad += rp_dcm_stored_to_float(in, s->frame, srow, nx,
                                                   RP_DCM_F_RESCALE | RP_DCM_F_INVERT_MONO1,
                                                   (float *)drow, prow);
                    continue;
                }
                memcpy(drow, srow, nx * ss);
                if (in->has_padding_value && spp == 1)
                    npad += count_padding(in, srow, nx, prow);
                if (invert)
                    invert_row(out->type, drow, nx, smin, smax);
            }
        }
        if (owned) {
            free(buf);
        } else if (pix_refs) {
            /* last stack that needs this file: give its pixels back now, so the slices and
             * the volume are never both held in full */
            int last;
#pragma omp atomic capture
            last = --pix_refs[f];
            if (last <= 0) {
                rp_dcm_pixels_free(pixels[f]);
                pixels[f] = NULL;
            }
        }
    }
    free(order);
    free(gstart);
    if (failed) {
        rp_strlcpy(err, ferr, errlen);
        rp_stack_data_free(out);
        return failed;
    }
    out->n_padding = npad;
    const rp_dcm_frame *f0 = &infos[st->slice[0].file]->frame[st->slice[0].frame];
    out->scl_slope = use_float ? 1.0 : f0->slope;
    out->scl_inter = use_float ? 0.0 : f0->intercept;
    if (out->type == RP_ST_U16) {
        /* like dcm2niix: unsigned 16-bit data that fits is written as int16 */
        const uint16_t *p = out->data;
        uint16_t mx = 0;
        size_t n = nvox * nslices;
        for (size_t i = 0; i < n; i++)
            if (p[i] > mx)
                mx = p[i];
        if (mx < 32768)
            out->type = RP_ST_S16;
    }
    return 0;
}

/* ---- resampling onto a regular grid ---------------------------------------------------- */

double rp_stack_sample(const rp_stack_data *d, size_t i)
{
    switch (d->type) {
    case RP_ST_U8:
        return ((const uint8_t *)d->data)[i];
    case RP_ST_S8:
        return ((const int8_t *)d->data)[i];
    case RP_ST_S16:
        return ((const int16_t *)d->data)[i];
    case RP_ST_U16:
        return ((const uint16_t *)d->data)[i];
    case RP_ST_S32:
        return ((const int32_t *)d->data)[i];
    case RP_ST_U32:
        return ((const uint32_t *)d->data)[i];
    case RP_ST_F32:
        return ((const float *)d->data)[i];
    default:
        return 0;
    }
}

/* One loop per type, so the switch is not taken per voxel on volumes of 10^8 voxels. */
#define TO_F32(T)                                                                                  \
    do {                                                                                           \
        const T *s = d->data;                                                                      \
        for (size_t i = 0; i < n; i++)                                                             \
            out[i] = (float)(a * (double)s[i] + b);                                                \
    } while (0)

void rp_stack_data_to_f32(const rp_stack_data *d, size_t n, float *out)
{
    const double a = d->scl_slope == 0 ? 1 : d->scl_slope, b = d->scl_inter;
    switch (d->type) {
    case RP_ST_U8:
        TO_F32(uint8_t);
        break;
    case RP_ST_S8:
        TO_F32(int8_t);
        break;
    case RP_ST_S16:
        TO_F32(int16_t);
        break;
    case RP_ST_U16:
        TO_F32(uint16_t);
        break;
    case RP_ST_S32:
        TO_F32(int32_t);
        break;
    case RP_ST_U32:
        TO_F32(uint32_t);
        break;
    case RP_ST_F32:
        TO_F32(float);
        break;
    default:
        for (size_t i = 0; i < n; i++)
            out[i] = (float)b;
        break;
    }
}
#undef TO_F32

static void sample_put(rp_sample_type t, void *p, size_t i, double v)
{
    switch (t) {
    case RP_ST_U8:
        ((uint8_t *)p)[i] = (uint8_t)fmin(255, fmax(0, lround(v)));
        break;
    case RP_ST_S8:
        ((int8_t *)p)[i] = (int8_t)fmin(127, fmax(-128, lround(v)));
        break;
    case RP_ST_S16:
        ((int16_t *)p)[i] = (int16_t)fmin(32767, fmax(-32768, lround(v)));
        break;
    case RP_ST_U16:
        ((uint16_t *)p)[i] = (uint16_t)fmin(65535, fmax(0, lround(v)));
        break;
    case RP_ST_S32:
        ((int32_t *)p)[i] = (int32_t)llround(v);
        break;
    case RP_ST_U32:
        ((uint32_t *)p)[i] = (uint32_t)llround(fmax(0, v));
        break;
    default:
        ((float *)p)[i] = (float)v;
        break;
    }
}

/* Bilinear sample of slice `z` (DICOM row/column coordinates); NAN outside. */
static double bilinear(const rp_stack_data *d, size_t base, int nx, int ny, double col, double row)
{
    /* written so that NaN coordinates (from NaN positions in a header) are outside too */
    if (!(col >= -1e-6 && row >= -1e-6 && col <= nx - 1 + 1e-6 && row <= ny - 1 + 1e-6))
        return NAN;
    int c0 = (int)floor(col), r0 = (int)floor(row);
    if (c0 >= nx - 1)
        c0 = nx - 2 < 0 ? 0 : nx - 2;
    if (r0 >= ny - 1)
        r0 = ny - 2 < 0 ? 0 : ny - 2;
    if (c0 < 0)
        c0 = 0;
    if (r0 < 0)
        r0 = 0;
    double fc = col - c0, fr = row - r0;
    int c1 = c0 + 1 < nx ? c0 + 1 : c0, r1 = r0 + 1 < ny ? r0 + 1 : r0;
    /* stored rows are flipped */
    size_t y0 = (size_t)(ny - 1 - r0), y1 = (size_t)(ny - 1 - r1);
    double v00 = rp_stack_sample(d, base + y0 * nx + c0);
    double v01 = rp_stack_sample(d, base + y0 * nx + c1);
    double v10 = rp_stack_sample(d, base + y1 * nx + c0);
    double v11 = rp_stack_sample(d, base + y1 * nx + c1);
    return (v00 * (1 - fc) + v01 * fc) * (1 - fr) + (v10 * (1 - fc) + v11 * fc) * fr;
}

/* Largest ratio of resampled to acquired voxels rp_stack_resample() accepts (a 30-degree tilt
 * over a long stack roughly doubles one in-plane dimension; 10x is the most slices the
 * smallest-gap rule can add). */
#define RESAMPLE_MAX_GROWTH 64.0

int rp_stack_resample(rp_stack *st, rp_stack_data *d, char *err, size_t errlen)
{
    if (!st->need_resample || st->nz < 2)
        return 0;
    if (d->type == RP_ST_RGB24) {
        snprintf(err, errlen, "cannot resample colour data");
        return RP_EUNSUPPORTED;
    }
    const double r[3] = {st->iop[0], st->iop[1], st->iop[2]};
    const double c[3] = {st->iop[3], st->iop[4], st->iop[5]};
    const double *n = st->normal;
    int nz = st->nz_acquired, nx = st->nx, ny = st->ny;
    double *a = malloc(sizeof(double) * nz), *b = malloc(sizeof(double) * nz);
    if (!a || !b) {
        free(a);
        free(b);
        return RP_ENOMEM;
    }
    double amin = 0, amax = 0, bmin = 0, bmax = 0;
    for (int k = 0; k < nz; k++) {
        double o[3];
        for (int i = 0; i < 3; i++)
            o[i] = st->slice[k].ipp[i] - st->slice[0].ipp[i];
        a[k] = (o[0] * r[0] + o[1] * r[1] + o[2] * r[2]) / st->dx;
        b[k] = (o[0] * c[0] + o[1] * c[1] + o[2] * c[2]) / st->dy;
        amin = fmin(amin, a[k]);
        amax = fmax(amax, a[k]);
        bmin = fmin(bmin, b[k]);
        bmax = fmax(bmax, b[k]);
    }
    /* whole-voxel margins keep the in-plane grid of slice 0 */
    amin = floor(amin + 1e-6);
    bmin = floor(bmin + 1e-6);
    double p0 = st->slice[0].pos, pn = st->slice[nz - 1].pos;
    double dz = st->uneven ? st->gap_min : (pn - p0) / (nz - 1);
    if (dz < 0.1 * (pn - p0) / (nz - 1))
        dz = (pn - p0) / (nz - 1);
    /* The grid comes from header positions: hostile or broken ones (huge offsets, a spacing
     * of nearly 0, NaN) would ask for an absurd grid (an int overflow, hours of work, or more
     * memory than the machine has). A real tilt or uneven spacing enlarges a stack a few
     * times at most; refuse anything beyond RESAMPLE_MAX_GROWTH or a NIfTI dimension. */
    double fx2 = nx + (ceil(amax - 1e-6) - amin), fy2 = ny + (ceil(bmax - 1e-6) - bmin);
    double fz2 = floor((pn - p0) / dz + 1e-6) + 1;
    if (!(fx2 >= 1 && fx2 <= 32767 && fy2 >= 1 && fy2 <= 32767 && fz2 >= 1 && fz2 <= 32767 &&
          fx2 * fy2 * fz2 <= RESAMPLE_MAX_GROWTH * (double)nx * ny * nz)) {
        free(a);
        free(b);
        snprintf(err, errlen,
                 "slice positions describe a %gx%gx%g grid for %dx%dx%d acquired voxels: "
                 "not a gantry tilt or uneven spacing that resampling can correct",
                 fx2, fy2, fz2, nx, ny, nz);
        return RP_EUNSUPPORTED;
    }
    int nx2 = (int)fx2, ny2 = (int)fy2, nz2 = (int)fz2;
    size_t ss = d->type == RP_ST_F32 || d->type == RP_ST_S32 || d->type == RP_ST_U32 ? 4
                : (d->type == RP_ST_U8 || d->type == RP_ST_S8)                       ? 1
                                                                                     : 2;
    size_t nvox2 = (size_t)nx2 * ny2;
    void *o = malloc(nvox2 * nz2 * st->nt * ss);
    if (!o) {
        free(a);
        free(b);
        snprintf(err, errlen, "out of memory resampling to %dx%dx%d", nx2, ny2, nz2);
        return RP_ENOMEM;
    }
    /* fill outside the acquired field of view with the data minimum (air) */
    double fill = 1e300;
    size_t ntot = (size_t)nx * ny * nz * st->nt;
    for (size_t i = 0; i < ntot; i++) {
        double v = rp_stack_sample(d, i);
        if (v < fill)
            fill = v;
    }
    for (int t = 0; t < st->nt; t++) {
#pragma omp parallel for schedule(static)
        for (int k2 = 0; k2 < nz2; k2++) {
            double p = p0 + k2 * dz;
            int k = 0;
            while (k + 2 < nz && st->slice[k + 1].pos <= p)
                k++;
            double w = (p - st->slice[k].pos) / (st->slice[k + 1].pos - st->slice[k].pos);
            if (w < 0)
                w = 0;
            if (w > 1)
                w = 1;
            size_t b0 = (size_t)(k + nz * t) * nx * ny, b1 = (size_t)(k + 1 + nz * t) * nx * ny;
            for (int j2 = 0; j2 < ny2; j2++) {
                size_t orow = (size_t)(k2 + (size_t)nz2 * t) * nvox2 + (size_t)(ny2 - 1 - j2) * nx2;
                for (int i2 = 0; i2 < nx2; i2++) {
                    double col = i2 + amin, row = j2 + bmin;
                    double v0 = bilinear(d, b0, nx, ny, col - a[k], row - b[k]);
                    double v1 = bilinear(d, b1, nx, ny, col - a[k + 1], row - b[k + 1]);
                    double v;
                    if (isnan(v0) && isnan(v1))
                        v = fill;
                    else if (isnan(v0))
                        v = v1;
                    else if (isnan(v1))
                        v = v0;
                    else
                        v = v0 * (1 - w) + v1 * w;
                    sample_put(d->type, o, orow + i2, v);
                }
            }
        }
    }
    /* new geometry: orthogonal, origin at slice 0's grid shifted by the margins */
    double ipp0[3], step[3];
    for (int i = 0; i < 3; i++) {
        ipp0[i] = st->slice[0].ipp[i] + amin * st->dx * r[i] + bmin * st->dy * c[i];
        step[i] = n[i] * dz;
    }
    rp_affine_from_dicom(st->iop, ipp0, step, st->dx, st->dy, ny2, st->affine);
    cJSON *rs = cJSON_AddObjectToObject(st->qc, "resampled");
    cJSON_AddStringToObject(rs, "method",
                            "linear; slices shifted in-plane to undo the shear "
                            "(gantry tilt), then equidistant along the normal");
    cJSON *od = cJSON_AddArrayToObject(rs, "from_dims");
    cJSON_AddItemToArray(od, cJSON_CreateNumber(nx));
    cJSON_AddItemToArray(od, cJSON_CreateNumber(ny));
    cJSON_AddItemToArray(od, cJSON_CreateNumber(nz));
    cJSON *nd = cJSON_AddArrayToObject(rs, "to_dims");
    cJSON_AddItemToArray(nd, cJSON_CreateNumber(nx2));
    cJSON_AddItemToArray(nd, cJSON_CreateNumber(ny2));
    cJSON_AddItemToArray(nd, cJSON_CreateNumber(nz2));
    cJSON_AddNumberToObject(rs, "slice_spacing_mm", dz);
    cJSON_AddNumberToObject(rs, "fill_value", fill);
    free(d->data);
    d->data = o;
    free(d->pad_mask); /* padding no longer maps onto the new grid */
    d->pad_mask = NULL;
    st->nx = nx2;
    st->ny = ny2;
    st->nz = nz2;
    st->dz = dz;
    st->need_resample = 0;
    free(a);
    free(b);
    return 0;
}
