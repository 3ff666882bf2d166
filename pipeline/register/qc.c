/*
 * pipeline/register/qc.c — checkerboard pictures of a fixed volume and moved volumes on its grid:
 * where the two agree, edges run straight across the squares; where they do not, edges jump
 * at every square border, which a person sees at once.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/register/register_internal.h"

typedef struct view {
    int n, h, v;     /* normal, horizontal and vertical voxel axes */
    int w_px, h_px;  /* panel size */
    int flip_h, flip_v;
} view;

/* Voxel axis for each world axis (x, y, z), greedy by the largest direction cosine. */
static void axis_map(const double A[4][4], int vox_of_world[3], int sign[3])
{
    int used[3] = {0};
    for (int r = 0; r < 3; r++) {
        int best = -1;
        double bv = -1;
        for (int a = 0; a < 3; a++) {
            double nrm = sqrt(A[0][a] * A[0][a] + A[1][a] * A[1][a] + A[2][a] * A[2][a]);
            double c = nrm > 0 ? fabs(A[r][a]) / nrm : 0;
            if (!used[a] && c > bv) {
                bv = c;
                best = a;
            }
        }
        used[best] = 1;
        vox_of_world[r] = best;
        sign[best] = A[r][best] >= 0 ? 1 : -1;
    }
}

static void window_of(const rp_volume *v, int nonzero, double *lo, double *hi)
{
    size_t n = rp_volume_nvox(v);
    uint8_t *m = NULL;
    if (nonzero && (m = malloc(n)))
        for (size_t i = 0; i < n; i++)
            m[i] = v->data[i] != 0;
    rp_reg_range(v->data, m, n, 0.5, 99.5, lo, hi);
    free(m);
    if (!(*hi > *lo))
        *hi = *lo + 1;
}

static inline uint8_t grey(float x, double lo, double hi)
{
    double g = (x - lo) / (hi - lo) * 255.0;
    return (uint8_t)(g < 0 ? 0 : g > 255 ? 255 : g + 0.5);
}

int rp_reg_checkerboard(const rp_volume *fixed, const rp_volume *const *moved, int n_rows,
                        int tile, uint8_t **pix, int *w, int *h)
{
    if (!fixed || !moved || n_rows < 1 || n_rows > 8 || tile < 2 || !pix || !w || !h)
        return RP_EINVAL;
    for (int r = 0; r < n_rows; r++)
        if (!moved[r] || memcmp(moved[r]->dim, fixed->dim, 3 * sizeof(int)) != 0)
            return RP_EINVAL;
    int vw[3], sg[3];
    axis_map(fixed->affine, vw, sg);
    const double *sp = fixed->spacing;
    double ext = 0;
    for (int a = 0; a < 3; a++)
        ext = fmax(ext, fixed->dim[a] * sp[a]);
    double pmm = fmin(sp[0], fmin(sp[1], sp[2]));
    if (ext / pmm > 320)
        pmm = ext / 320;
    if (ext / pmm < 160)
        pmm = ext / 160;
    /* axial: normal z, x across, y up; coronal: normal y, x across, z up; sagittal: normal x,
     * y across, z up */
    const int pw[3][3] = {{2, 0, 1}, {1, 0, 2}, {0, 1, 2}};
    view V[3];
    int W = 0, H = 0;
    for (int k = 0; k < 3; k++) {
        V[k].n = vw[pw[k][0]];
        V[k].h = vw[pw[k][1]];
        V[k].v = vw[pw[k][2]];
        V[k].w_px = (int)ceil(fixed->dim[V[k].h] * sp[V[k].h] / pmm);
        V[k].h_px = (int)ceil(fixed->dim[V[k].v] * sp[V[k].v] / pmm);
        V[k].flip_h = sg[V[k].h] < 0;
        V[k].flip_v = sg[V[k].v] > 0; /* top row: largest world coordinate */
        W += V[k].w_px + (k ? 4 : 0);
        if (V[k].h_px > H)
            H = V[k].h_px;
    }
    const int rowH = H + 4;
    const int TH = rowH * n_rows - 4;
    uint8_t *o = calloc((size_t)W * TH, 1);
    if (!o)
        return RP_ENOMEM;
    double flo, fhi;
    window_of(fixed, 0, &flo, &fhi);
    const int mid[3] = {fixed->dim[0] / 2, fixed->dim[1] / 2, fixed->dim[2] / 2};
    for (int r = 0; r < n_rows; r++) {
        double mlo, mhi;
        window_of(moved[r], 1, &mlo, &mhi);
        int x0 = 0;
        for (int k = 0; k < 3; k++) {
            const view *vv = &V[k];
            for (int py = 0; py < vv->h_px; py++)
                for (int px = 0; px < vv->w_px; px++) {
                    int ih = (int)((px + 0.5) * pmm / sp[vv->h]);
                    int iv = (int)((py + 0.5) * pmm / sp[vv->v]);
                    if (ih >= fixed->dim[vv->h] || iv >= fixed->dim[vv->v])
                        continue;
                    if (vv->flip_h)
                        ih = fixed->dim[vv->h] - 1 - ih;
                    if (vv->flip_v)
                        iv = fixed->dim[vv->v] - 1 - iv;
                    int idx[3];
                    idx[vv->n] = mid[vv->n];
                    idx[vv->h] = ih;
                    idx[vv->v] = iv;
                    size_t i = idx[0] + (size_t)fixed->dim[0] * (idx[1] + (size_t)fixed->dim[1] *
                                                                               idx[2]);
                    int use_moved = ((px / tile) + (py / tile)) & 1;
                    uint8_t g = use_moved ? grey(moved[r]->data[i], mlo, mhi)
                                          : grey(fixed->data[i], flo, fhi);
                    o[(size_t)(r * rowH + py) * W + x0 + px] = g;
                }
            x0 += vv->w_px + 4;
        }
    }
    *pix = o;
    *w = W;
    *h = TH;
    return 0;
}
