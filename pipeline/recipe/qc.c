/*
 * pipeline/recipe/qc.c — QC statistics (per step, computed generically by the runner), mask
 * volumes and the QC montage (axial, coronal and sagittal mid-slices with masks overlaid),
 * written through the context's PNG writer.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/recipe/recipe.h"
#include "pipeline/recipe/recipe_internal.h"

static double round_sig(double v)
{
    if (!isfinite(v) || v == 0)
        return isfinite(v) ? v : 0;
    /* 7 significant digits: enough for QC, stable text */
    double m = pow(10, 6 - (int)floor(log10(fabs(v))));
    return round(v * m) / m;
}

cJSON *rp_qc_stats(const rp_volume *v)
{
    float lo, hi;
    size_t bad;
    return rp_qc_stats_extent(v, &lo, &hi, &bad);
}

cJSON *rp_qc_stats_extent(const rp_volume *v, float *lo_out, float *hi_out, size_t *bad_out)
{
    /* One memory pass in blocks that stay in cache (rp_vstats_add), per-thread partials
     * merged at the end. */
    enum { QB = 1 << 16 };
    const size_t n = rp_volume_nvox(v) * (size_t)v->dim[3];
    const size_t nb = (n + QB - 1) / QB;
    const float *d = v->data;
    rp_vstats all;
    rp_vstats_init(&all);
#pragma omp parallel
    {
        rp_vstats t;
        rp_vstats_init(&t);
#pragma omp for schedule(static)
        for (size_t b = 0; b < nb; b++)
            rp_vstats_add(&t, d + b * QB, n - b * QB < QB ? n - b * QB : QB);
#pragma omp critical
        rp_vstats_merge(&all, &t);
    }
    return rp_qc_stats_of(v, &all, lo_out, hi_out, bad_out);
}

cJSON *rp_qc_stats_of(const rp_volume *v, const rp_vstats *s, float *lo_out, float *hi_out,
                      size_t *bad_out)
{
    *lo_out = s->lo;
    *hi_out = s->hi;
    *bad_out = s->bad;
    return rp_qc_stats_from(v, s->lo, s->hi, s->sum, s->sumsq, s->n_lo, s->n_hi, s->bad);
}

cJSON *rp_qc_stats_from(const rp_volume *v, double lo, double hi, double s, double ss, size_t at_lo,
                        size_t at_hi, size_t bad)
{
    const size_t n = rp_volume_nvox(v) * (size_t)v->dim[3];
    size_t good = n - bad;
    double mean = good ? s / (double)good : 0;
    double var = good ? ss / (double)good - mean * mean : 0;
    if (var < 0)
        var = 0;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddItemToObject(o, "dim", cJSON_CreateIntArray(v->dim, 4));
    double sp[3] = {round_sig(v->spacing[0]), round_sig(v->spacing[1]), round_sig(v->spacing[2])};
    cJSON_AddItemToObject(o, "spacing_mm", cJSON_CreateDoubleArray(sp, 3));
    cJSON_AddNumberToObject(o, "min", good ? round_sig(lo) : 0);
    cJSON_AddNumberToObject(o, "max", good ? round_sig(hi) : 0);
    cJSON_AddNumberToObject(o, "mean", round_sig(mean));
    cJSON_AddNumberToObject(o, "sd", round_sig(sqrt(var)));
    cJSON_AddNumberToObject(o, "at_min_fraction", good ? round_sig((double)at_lo / good) : 0);
    cJSON_AddNumberToObject(o, "at_max_fraction", good ? round_sig((double)at_hi / good) : 0);
    cJSON_AddNumberToObject(o, "nonfinite", (double)bad);
    return o;
}

cJSON *rp_qc_masks(const rp_step_ctx *ctx)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    for (int i = 0; i < ctx->n_masks; i++) {
        const rp_mask *m = ctx->masks[i];
        const double(*a)[4] = m->affine;
        double det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) -
                     a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
                     a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
        size_t cnt = rp_mask_count(m);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "voxels", (double)cnt);
        cJSON_AddNumberToObject(e, "volume_ml", round((double)cnt * fabs(det) / 1000.0 * 10) / 10);
        cJSON_AddItemToObject(o, m->name, e);
    }
    return o;
}

/* ---- montage ------------------------------------------------------------------------- */

typedef struct panel {
    int normal; /* voxel axis normal to the panel */
    int slice;
    int h_axis, v_axis; /* voxel axes along columns / rows */
    int h_flip, v_flip; /* 1: index decreases along columns / rows */
    int w, h;           /* pixels */
} panel;

static int dominant_world(const double a[4][4], int axis)
{
    int best = 0;
    for (int w = 1; w < 3; w++)
        if (fabs(a[w][axis]) > fabs(a[best][axis]))
            best = w;
    return best;
}

/* Voxel axis whose direction is mostly along world axis w (0 x, 1 y, 2 z). */
static int axis_for_world(const double a[4][4], int w)
{
    for (int ax = 0; ax < 3; ax++)
        if (dominant_world(a, ax) == w)
            return ax;
    return w;
}

static const uint8_t COLORS[][3] = {{0, 220, 0},   {255, 40, 40}, {255, 220, 0},   {255, 0, 255},
                                    {0, 220, 255}, {255, 140, 0}, {140, 140, 255}, {255, 255, 255}};

int rp_qc_montage_png(const rp_step_ctx *ctx, const char *path)
{
    const rp_volume *v = ctx->vol;
    if (!v || !path)
        return RP_EINVAL;
    if (!ctx->writers || !ctx->writers->png)
        return RP_EUNSUPPORTED;
    const int nx = v->dim[0], ny = v->dim[1];
    size_t nvox = rp_volume_nvox(v);
    /* display window */
    double lo, hi;
    if (ctx->hu_known && v->dim[3] == 1) {
        lo = (-1350.0 - ctx->hu_offset) / ctx->hu_scale; /* lung window -600/1500 */
        hi = (150.0 - ctx->hu_offset) / ctx->hu_scale;
        if (lo > hi) {
            double t = lo;
            lo = hi;
            hi = t;
        }
    } else {
        size_t step = nvox > 4000000 ? nvox / 2000000 : 1, ns = (nvox + step - 1) / step;
        float *sub = malloc(ns * sizeof *sub);
        if (!sub)
            return RP_ENOMEM;
        for (size_t i = 0, k = 0; k < ns; i += step, k++)
            sub[k] = v->data[i];
        lo = rp_percentile(sub, ns, 0.5);
        hi = rp_percentile(sub, ns, 99.5);
        free(sub);
    }
    if (!(hi > lo))
        hi = lo + 1;
    /* panels: axial (normal S), coronal (normal A), sagittal (normal R) */
    int ax_x = axis_for_world(v->affine, 0), ax_y = axis_for_world(v->affine, 1),
        ax_z = axis_for_world(v->affine, 2);
    if (ax_x == ax_y || ax_x == ax_z || ax_y == ax_z) {
        ax_x = 0;
        ax_y = 1;
        ax_z = 2;
    }
    panel P[3] = {
        {.normal = ax_z, .h_axis = ax_x, .v_axis = ax_y},
        {.normal = ax_y, .h_axis = ax_x, .v_axis = ax_z},
        {.normal = ax_x, .h_axis = ax_y, .v_axis = ax_z},
    };
    double pix = v->spacing[0];
    double ext = 0;
    for (int a = 0; a < 3; a++) {
        if (v->spacing[a] < pix)
            pix = v->spacing[a];
        if (v->dim[a] * v->spacing[a] > ext)
            ext = v->dim[a] * v->spacing[a];
    }
    if (!(pix > 0))
        pix = 1;
    if (ext / pix > 512)
        pix = ext / 512;
    /* a 2-D image (one axis of size 1) shows only the panel spanned by its two axes */
    int npanel = 3;
    for (int k = 0; k < npanel; k++)
        if (v->dim[P[k].h_axis] == 1 || v->dim[P[k].v_axis] == 1) {
            int any_full = 0;
            for (int q = 0; q < npanel; q++)
                any_full |= v->dim[P[q].h_axis] > 1 && v->dim[P[q].v_axis] > 1;
            if (!any_full)
                break;
            for (int q = k; q < npanel - 1; q++)
                P[q] = P[q + 1];
            npanel--;
            k--;
        }
    int W = 0, H = 0;
    for (int k = 0; k < npanel; k++) {
        panel *p = &P[k];
        p->slice = v->dim[p->normal] / 2;
        /* radiological view: patient right on the left of the image, anterior / superior up;
         * sagittal: anterior on the left */
        double hx = v->affine[dominant_world(v->affine, p->h_axis)][p->h_axis];
        double vy = v->affine[dominant_world(v->affine, p->v_axis)][p->v_axis];
        p->h_flip = hx > 0;
        p->v_flip = vy > 0;
        p->w = (int)fmax(1, round(v->dim[p->h_axis] * v->spacing[p->h_axis] / pix));
        p->h = (int)fmax(1, round(v->dim[p->v_axis] * v->spacing[p->v_axis] / pix));
        W += p->w + (k ? 4 : 0);
        if (p->h > H)
            H = p->h;
    }
    uint8_t *img = rp_mem_calloc((size_t)W * H * 3); /* ~1 MB: huge pages, one fault */
    if (!img)
        return RP_ENOMEM;
    size_t str[3] = {1, (size_t)nx, (size_t)nx * ny};
    int x0 = 0;
    for (int k = 0; k < npanel; k++) {
        panel *p = &P[k];
        /* rows are independent (each writes its own pixels); the picture is made at the end
         * of every job, with the cores otherwise idle */
#pragma omp parallel for schedule(static)
        for (int r = 0; r < p->h; r++) {
            int vi = (int)((r + 0.5) * pix / v->spacing[p->v_axis]);
            if (vi >= v->dim[p->v_axis])
                vi = v->dim[p->v_axis] - 1;
            if (p->v_flip)
                vi = v->dim[p->v_axis] - 1 - vi;
            for (int c = 0; c < p->w; c++) {
                int hi_ = (int)((c + 0.5) * pix / v->spacing[p->h_axis]);
                if (hi_ >= v->dim[p->h_axis])
                    hi_ = v->dim[p->h_axis] - 1;
                if (p->h_flip)
                    hi_ = v->dim[p->h_axis] - 1 - hi_;
                size_t off = (size_t)p->slice * str[p->normal] + (size_t)vi * str[p->v_axis] +
                             (size_t)hi_ * str[p->h_axis];
                double g = (v->data[off] - lo) / (hi - lo);
                g = g < 0 ? 0 : g > 1 ? 1 : g;
                double rgb[3] = {g * 255, g * 255, g * 255};
                for (int mi = 0; mi < ctx->n_masks; mi++) {
                    const rp_mask *m = ctx->masks[mi];
                    if (memcmp(m->dim, v->dim, sizeof m->dim) != 0 || !rp_mask_at(m, off))
                        continue;
                    const uint8_t *col = !strcmp(m->name, "lung")    ? COLORS[0]
                                         : !strcmp(m->name, "metal") ? COLORS[1]
                                         : !strcmp(m->name, "body")  ? COLORS[4]
                                                                     : COLORS[2 + mi % 6];
                    int outline = !strcmp(m->name, "body") || !strcmp(m->name, "foreground") ||
                                  !strcmp(m->name, "padding");
                    if (outline) {
                        /* boundary voxels only, so the body does not tint the image */
                        int edge = 0;
                        int idx[3];
                        idx[p->normal] = p->slice;
                        idx[p->v_axis] = vi;
                        idx[p->h_axis] = hi_;
                        for (int dd = 0; dd < 4 && !edge; dd++) {
                            int j[3] = {idx[0], idx[1], idx[2]};
                            int ax = dd < 2 ? p->h_axis : p->v_axis;
                            j[ax] += (dd & 1) ? 1 : -1;
                            if (j[ax] < 0 || j[ax] >= v->dim[ax])
                                continue;
                            edge = !rp_mask_at(m, (size_t)j[0] * str[0] + (size_t)j[1] * str[1] +
                                                      (size_t)j[2] * str[2]);
                        }
                        if (edge)
                            for (int q = 0; q < 3; q++)
                                rgb[q] = col[q];
                    } else {
                        for (int q = 0; q < 3; q++)
                            rgb[q] = 0.6 * rgb[q] + 0.4 * col[q];
                    }
                }
                uint8_t *px = img + ((size_t)r * W + x0 + c) * 3;
                for (int q = 0; q < 3; q++)
                    px[q] = (uint8_t)(rgb[q] + 0.5);
            }
        }
        x0 += p->w + 4;
    }
    int rc = ctx->writers->png(path, img, W, H, 3, 8);
    free(img);
    return rc;
}
