/*
 * pipeline/xray/resize.c — in-plane resize (anti-aliased) and letterbox padding of 2-D images
 * and of every slice of a volume, keeping the affine true.
 *
 * AREA uses OpenCV's exact weights (resizeArea's computeResizeAreaTab: each output pixel
 * is the mean of the input area it covers, fractional pixels weighted by their overlap):
 * cv2.INTER_AREA, free of aliasing when shrinking. When enlarging, OpenCV's INTER_AREA
 * blends the two source pixels an output pixel straddles by overlap, which is the same box
 * overlap, so one tap table serves both directions (OpenCV differs only when one axis
 * shrinks and the other grows: it then uses 2-tap weights on the shrinking axis too).
 * LINEAR is bilinear on pixel centres (cv2.INTER_LINEAR). Both are separable: a horizontal
 * pass into an h x ow buffer, then a vertical pass, each parallel over rows.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/xray/xray.h"

/* Taps of one axis: output o reads src[idx[k]] * wt[k] for k in [start[o], start[o+1]). */
typedef struct axis_taps {
    int *start;
    int *idx;
    float *wt;
} axis_taps;

static void taps_free(axis_taps *t)
{
    free(t->start);
    free(t->idx);
    free(t->wt);
}

static int taps_init(axis_taps *t, int n, int on, rp_xr_resize_method method)
{
    /* Area needs at most n + on taps (each input pixel is split at most once); linear 2*on. */
    size_t cap = (size_t)n + 2 * (size_t)on + 2;
    t->start = malloc(sizeof(int) * ((size_t)on + 1));
    t->idx = malloc(sizeof(int) * cap);
    t->wt = malloc(sizeof(float) * cap);
    if (!t->start || !t->idx || !t->wt) {
        taps_free(t);
        return RP_ENOMEM;
    }
    const double scale = (double)n / on;
    int k = 0;
    if (method == RP_XR_RESIZE_AREA) {
        /* OpenCV computeResizeAreaTab (also right for scale < 1: one or two taps) */
        for (int o = 0; o < on; o++) {
            t->start[o] = k;
            double f1 = o * scale, f2 = f1 + scale;
            double cell = scale < n - f1 ? scale : n - f1;
            int s1 = (int)ceil(f1), s2 = (int)floor(f2);
            if (s2 > n - 1)
                s2 = n - 1;
            if (s1 > s2)
                s1 = s2;
            if (s1 - f1 > 1e-3) {
                t->idx[k] = s1 - 1;
                t->wt[k++] = (float)((s1 - f1) / cell);
            }
            for (int s = s1; s < s2; s++) {
                t->idx[k] = s;
                t->wt[k++] = (float)(1.0 / cell);
            }
            if (f2 - s2 > 1e-3) {
                double a = f2 - s2 < 1.0 ? f2 - s2 : 1.0;
                t->idx[k] = s2;
                t->wt[k++] = (float)((a < cell ? a : cell) / cell);
            }
        }
    } else {
        for (int o = 0; o < on; o++) {
            t->start[o] = k;
            double f = (o + 0.5) * scale - 0.5;
            int s = (int)floor(f);
            double a = f - s;
            if (s < 0) {
                s = 0;
                a = 0;
            }
            if (s >= n - 1) {
                s = n - 1;
                a = 0;
            }
            t->idx[k] = s;
            t->wt[k++] = (float)(1.0 - a);
            if (a > 0) {
                t->idx[k] = s + 1;
                t->wt[k++] = (float)a;
            }
        }
    }
    t->start[on] = k;
    return 0;
}

int rp_xr_resize_f32(const float *src, int w, int h, float *dst, int ow, int oh,
                     rp_xr_resize_method method)
{
    if (!src || !dst || w < 1 || h < 1 || ow < 1 || oh < 1)
        return RP_EINVAL;
    if (w == ow && h == oh) { /* both methods are the identity on the same grid */
        memcpy(dst, src, sizeof(float) * (size_t)w * h);
        return 0;
    }
    axis_taps tx = {0}, ty = {0};
    float *tmp = NULL;
    int rc = taps_init(&tx, w, ow, method);
    if (rc == 0)
        rc = taps_init(&ty, h, oh, method);
    if (rc == 0 && !(tmp = malloc(sizeof(float) * (size_t)h * ow)))
        rc = RP_ENOMEM;
    if (rc)
        goto done;

    const int par = (size_t)w * h + (size_t)ow * oh >= RP_XR_PAR_MIN;
    /* Horizontal pass: h rows of w -> h rows of ow. */
#pragma omp parallel for if (par) schedule(dynamic, 16)
    for (int y = 0; y < h; y++) {
        const float *s = src + (size_t)y * w;
        float *d = tmp + (size_t)y * ow;
        for (int o = 0; o < ow; o++) {
            float acc = 0.0f;
            for (int k = tx.start[o]; k < tx.start[o + 1]; k++)
                acc += s[tx.idx[k]] * tx.wt[k];
            d[o] = acc;
        }
    }
    /* Vertical pass: rows combine whole ow-long lines (contiguous, vectorisable). */
#pragma omp parallel for if (par) schedule(dynamic, 16)
    for (int o = 0; o < oh; o++) {
        float *d = dst + (size_t)o * ow;
        int k0 = ty.start[o];
        const float *s0 = tmp + (size_t)ty.idx[k0] * ow;
        const float w0 = ty.wt[k0];
        for (int x = 0; x < ow; x++)
            d[x] = s0[x] * w0;
        for (int k = k0 + 1; k < ty.start[o + 1]; k++) {
            const float *s = tmp + (size_t)ty.idx[k] * ow;
            const float wk = ty.wt[k];
            for (int x = 0; x < ow; x++)
                d[x] += s[x] * wk;
        }
    }
done:
    free(tmp);
    taps_free(&tx);
    taps_free(&ty);
    return rc;
}

int rp_xr_resize_u8(const uint8_t *src, int w, int h, uint8_t *dst, int ow, int oh,
                    rp_xr_resize_method method)
{
    if (!src || !dst || w < 1 || h < 1 || ow < 1 || oh < 1)
        return RP_EINVAL;
    float *a = malloc(sizeof(float) * (size_t)w * h);
    float *b = malloc(sizeof(float) * (size_t)ow * oh);
    int rc = RP_ENOMEM;
    if (a && b) {
        for (size_t i = 0; i < (size_t)w * h; i++)
            a[i] = src[i];
        rc = rp_xr_resize_f32(a, w, h, b, ow, oh, method);
        for (size_t i = 0; rc == 0 && i < (size_t)ow * oh; i++) {
            long v = lrintf(b[i]);
            dst[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    free(a);
    free(b);
    return rc;
}

void rp_xr_fit_size(int w, int h, int size, int *ow, int *oh)
{
    if (w >= h) {
        *ow = size;
        *oh = (int)lround((double)h * size / w);
    } else {
        *oh = size;
        *ow = (int)lround((double)w * size / h);
    }
    if (*ow < 1)
        *ow = 1;
    if (*oh < 1)
        *oh = 1;
}

/* out = a * m where m maps new voxel indices to old ones (column-vector convention). */
static void affine_compose(double a[4][4], const double m[4][4])
{
    double out[4][4];
    rp_mat4_mul((const double(*)[4])a, m, out);
    memcpy(a, out, sizeof out);
}

rp_volume *rp_xr_resize_volume_new(const rp_volume *v, int ow, int oh, rp_xr_resize_method method)
{
    if (!v || ow < 1 || oh < 1)
        return NULL;
    const int w = v->dim[0], h = v->dim[1];
    const size_t planes = (size_t)v->dim[2] * v->dim[3];
    rp_volume *o = rp_volume_new(ow, oh, v->dim[2], v->dim[3]);
    if (!o)
        return NULL;
    for (size_t p = 0; p < planes; p++) {
        if (rp_xr_resize_f32(v->data + p * w * h, w, h, o->data + p * ow * oh, ow, oh, method) <
            0) {
            rp_volume_free(o);
            return NULL;
        }
    }
    /* old index = s * new index + (s - 1) / 2, s = in / out: pixel centres stay put. */
    double sx = (double)w / ow, sy = (double)h / oh, m[4][4];
    rp_mat4_identity(m);
    m[0][0] = sx;
    m[0][3] = (sx - 1) / 2;
    m[1][1] = sy;
    m[1][3] = (sy - 1) / 2;
    memcpy(o->affine, v->affine, sizeof o->affine);
    affine_compose(o->affine, m);
    rp_volume_update_spacing(o);
    return o;
}

rp_volume *rp_xr_pad_volume_new(const rp_volume *v, int ow, int oh, int off_x, int off_y,
                                float value)
{
    const int w = v ? v->dim[0] : 0, h = v ? v->dim[1] : 0;
    if (!v || off_x < 0 || off_y < 0 || off_x + w > ow || off_y + h > oh)
        return NULL;
    const size_t planes = (size_t)v->dim[2] * v->dim[3];
    rp_volume *o = rp_volume_new(ow, oh, v->dim[2], v->dim[3]);
    if (!o)
        return NULL;
    const size_t on = (size_t)ow * oh;
    for (size_t p = 0; p < planes; p++) {
        float *d = o->data + p * on;
        const float *s = v->data + p * w * h;
        if (value != 0.0f)
            for (size_t i = 0; i < on; i++)
                d[i] = value;
        for (int y = 0; y < h; y++)
            memcpy(d + (size_t)(y + off_y) * ow + off_x, s + (size_t)y * w, sizeof(float) * w);
    }
    double m[4][4];
    rp_mat4_identity(m);
    m[0][3] = -off_x;
    m[1][3] = -off_y;
    memcpy(o->affine, v->affine, sizeof o->affine);
    affine_compose(o->affine, m);
    rp_volume_update_spacing(o);
    return o;
}
