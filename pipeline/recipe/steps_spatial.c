/*
 * pipeline/recipe/steps_spatial.c — geometric and filtering steps: `resample`, `reorient`,
 * `crop`, `crop_or_pad`, `denoise`, `patches` (kernels in pipeline/volume/). Masks in the
 * context follow every geometric change, and the affine is updated exactly (new affine = old
 * affine x index map).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "pipeline/recipe/recipe_internal.h"

/* ---- index maps shared by reorient / crop / crop_or_pad ------------------------------ */

/* new voxel n (per axis j) comes from old index  old[src[j]] = start[j] + step[j]*n[j] */
typedef struct index_map {
    int new_dim[3];
    int src[3]; /* old axis feeding new axis j */
    long start[3];
    int step[3]; /* +1 or -1 */
} index_map;

/* Apply to a float volume (all channels); out-of-range samples get `pad`. */
static rp_volume *map_volume(const rp_volume *v, const index_map *im, float pad)
{
    rp_volume *o = rp_volume_new(im->new_dim[0], im->new_dim[1], im->new_dim[2], v->dim[3]);
    if (!o)
        return NULL;
    size_t ostr[3] = {1, (size_t)v->dim[0], (size_t)v->dim[0] * v->dim[1]};
    size_t nin = rp_volume_nvox(v), nout = rp_volume_nvox(o);
    for (int c = 0; c < v->dim[3]; c++) {
        const float *src = v->data + (size_t)c * nin;
        float *dst = o->data + (size_t)c * nout;
#pragma omp parallel for schedule(static)
        for (int z = 0; z < im->new_dim[2]; z++) {
            long oz = im->start[2] + (long)im->step[2] * z;
            for (int y = 0; y < im->new_dim[1]; y++) {
                long oy = im->start[1] + (long)im->step[1] * y;
                float *d = dst + ((size_t)z * im->new_dim[1] + y) * im->new_dim[0];
                for (int x = 0; x < im->new_dim[0]; x++) {
                    long ox = im->start[0] + (long)im->step[0] * x;
                    long idx[3];
                    idx[im->src[0]] = ox;
                    idx[im->src[1]] = oy;
                    idx[im->src[2]] = oz;
                    if (idx[0] < 0 || idx[0] >= v->dim[0] || idx[1] < 0 || idx[1] >= v->dim[1] ||
                        idx[2] < 0 || idx[2] >= v->dim[2])
                        d[x] = pad;
                    else
                        d[x] = src[idx[0] * ostr[0] + idx[1] * ostr[1] + idx[2] * ostr[2]];
                }
            }
        }
    }
    return o;
}

static rp_mask *map_mask(const rp_mask *m, const index_map *im)
{
    rp_mask *o = rp_mask_new(im->new_dim[0], im->new_dim[1], im->new_dim[2], m->name);
    if (!o)
        return NULL;
    size_t ostr[3] = {1, (size_t)m->dim[0], (size_t)m->dim[0] * m->dim[1]};
#pragma omp parallel for schedule(static)
    for (int z = 0; z < im->new_dim[2]; z++)
        for (int y = 0; y < im->new_dim[1]; y++)
            for (int x = 0; x < im->new_dim[0]; x++) {
                long idx[3];
                idx[im->src[0]] = im->start[0] + (long)im->step[0] * x;
                idx[im->src[1]] = im->start[1] + (long)im->step[1] * y;
                idx[im->src[2]] = im->start[2] + (long)im->step[2] * z;
                if (idx[0] < 0 || idx[0] >= m->dim[0] || idx[1] < 0 || idx[1] >= m->dim[1] ||
                    idx[2] < 0 || idx[2] >= m->dim[2])
                    continue;
                o->data[((size_t)z * im->new_dim[1] + y) * im->new_dim[0] + x] =
                    m->data[idx[0] * ostr[0] + idx[1] * ostr[1] + idx[2] * ostr[2]];
            }
    return o;
}

/* new affine = old affine x T, T: new index -> old index */
static void map_affine(const double a[4][4], const index_map *im, double out[4][4])
{
    double t[4][4] = {{0}};
    for (int j = 0; j < 3; j++) {
        t[im->src[j]][j] = im->step[j];
        t[im->src[j]][3] = (double)im->start[j];
    }
    t[3][3] = 1;
    rp_mat4_mul(a, t, out);
}

/* Replace ctx->vol and every mask by their mapped versions. */
static int apply_map(rp_step_ctx *ctx, const index_map *im, float pad)
{
    rp_volume *nv = map_volume(ctx->vol, im, pad);
    if (!nv)
        return RP_ENOMEM;
    rp_mask *nm[RP_MAX_MASKS] = {0};
    for (int i = 0; i < ctx->n_masks; i++) {
        nm[i] = map_mask(ctx->masks[i], im);
        if (!nm[i]) {
            for (int k = 0; k < i; k++)
                rp_mask_free(nm[k]);
            rp_volume_free(nv);
            return RP_ENOMEM;
        }
        map_affine(ctx->masks[i]->affine, im, nm[i]->affine);
    }
    map_affine(ctx->vol->affine, im, nv->affine);
    rp_volume_update_spacing(nv);
    rp_volume_free(ctx->vol);
    ctx->vol = nv;
    for (int i = 0; i < ctx->n_masks; i++) {
        rp_mask_free(ctx->masks[i]);
        ctx->masks[i] = nm[i];
    }
    return 0;
}

static void identity_map(index_map *im, const int dim[3])
{
    for (int a = 0; a < 3; a++) {
        im->new_dim[a] = dim[a];
        im->src[a] = a;
        im->start[a] = 0;
        im->step[a] = 1;
    }
}

/* ---- reorient ------------------------------------------------------------------------ */

typedef struct reorient_params {
    int lps;
} reorient_params;

static const char REORIENT_USAGE[] = "reorient(RAS|LPS)";

int rp_step_reorient_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    static const char *const w[] = {"RAS", "LPS", NULL};
    int k = a->n == 1 ? rp_arg_word(a->arg[0], w) : a->n == 0 ? 0 : -1;
    if (k < 0)
        return rp_arg_fail(err, errlen, REORIENT_USAGE, "expected RAS or LPS");
    reorient_params *p = malloc(sizeof *p);
    if (!p)
        return RP_ENOMEM;
    p->lps = k;
    *out = p;
    return 0;
}

void rp_step_reorient_describe(const void *pp, cJSON *o)
{
    const reorient_params *p = pp;
    cJSON_AddStringToObject(o, "target", p->lps ? "LPS" : "RAS");
    cJSON_AddStringToObject(o, "method", "closest canonical (axis permutation and flips only)");
}

int rp_step_reorient_run(rp_step_ctx *ctx, const void *pp)
{
    const reorient_params *p = pp;
    const rp_volume *v = ctx->vol;
    /* greedy like nibabel's io_orientation: largest |direction cosine| first */
    double r[3][3];
    for (int i = 0; i < 3; i++) {
        double nrm = v->spacing[i] > 0 ? v->spacing[i] : 1;
        for (int w = 0; w < 3; w++)
            r[w][i] = v->affine[w][i] / nrm;
    }
    int world_of[3] = {-1, -1, -1}, used_w[3] = {0}, used_i[3] = {0};
    for (int k = 0; k < 3; k++) {
        double best = -1;
        int bi = 0, bw = 0;
        for (int i = 0; i < 3; i++)
            for (int w = 0; w < 3; w++)
                if (!used_i[i] && !used_w[w] && fabs(r[w][i]) > best) {
                    best = fabs(r[w][i]);
                    bi = i;
                    bw = w;
                }
        used_i[bi] = used_w[bw] = 1;
        world_of[bi] = bw;
    }
    const int target_sign[2][3] = {{1, 1, 1}, {-1, -1, 1}};
    index_map im;
    char code[4] = "???";
    for (int i = 0; i < 3; i++) {
        int w = world_of[i];
        int s = (r[w][i] >= 0 ? 1 : -1) * target_sign[p->lps][w];
        im.src[w] = i;
        im.new_dim[w] = v->dim[i];
        im.step[w] = s;
        im.start[w] = s > 0 ? 0 : v->dim[i] - 1;
        static const char pos[3] = {'R', 'A', 'S'}, neg[3] = {'L', 'P', 'I'};
        code[i] = r[w][i] >= 0 ? pos[w] : neg[w];
    }
    if (ctx->step_qc)
        cJSON_AddStringToObject(ctx->step_qc, "from_orientation", code);
    return apply_map(ctx, &im, 0);
}

/* ---- crop ---------------------------------------------------------------------------- */

enum { CROP_FOREGROUND, CROP_MASK, CROP_BACKGROUND };

typedef struct crop_params {
    int kind;
    char mask[32];
    int margin;
    double tolerance; /* background: allowed SD and level change of a border line, as a
                         fraction of the image range */
} crop_params;

static const char CROP_USAGE[] =
    "crop(foreground[,margin]) | crop(mask,NAME[,margin]) | crop(background[,tolerance])";

int rp_step_crop_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    crop_params p = {.tolerance = 0.02};
    static const char *const kinds[] = {"foreground", "mask", "background", NULL};
    if (a->n < 1 || (p.kind = rp_arg_word(a->arg[0], kinds)) < 0)
        return rp_arg_fail(err, errlen, CROP_USAGE, "expected foreground, mask or background");
    int next = 1;
    if (p.kind == CROP_MASK) {
        if (a->n < 2 || rp_strlcpy(p.mask, a->arg[1], sizeof p.mask) != 0)
            return rp_arg_fail(err, errlen, CROP_USAGE, "crop(mask,...) needs a mask name");
        next = 2;
    }
    if (a->n > next + 1)
        return rp_arg_fail(err, errlen, CROP_USAGE, "too many arguments");
    if (a->n == next + 1) {
        if (p.kind == CROP_BACKGROUND) {
            if (rp_arg_double(a->arg[next], &p.tolerance) ||
                !(p.tolerance >= 0 && p.tolerance < 0.5))
                return rp_arg_fail(err, errlen, CROP_USAGE, "tolerance must be in [0,0.5)");
        } else if (rp_arg_int(a->arg[next], &p.margin) || p.margin < 0 || p.margin > 10000) {
            return rp_arg_fail(err, errlen, CROP_USAGE, "margin must be an integer >= 0");
        }
    }
    crop_params *q = malloc(sizeof *q);
    if (!q)
        return RP_ENOMEM;
    *q = p;
    *out = q;
    return 0;
}

void rp_step_crop_describe(const void *pp, cJSON *o)
{
    const crop_params *p = pp;
    static const char *names[] = {"foreground", "mask", "background"};
    cJSON_AddStringToObject(o, "mode", names[p->kind]);
    if (p->kind == CROP_MASK)
        cJSON_AddStringToObject(o, "mask", p->mask);
    if (p->kind == CROP_BACKGROUND)
        cJSON_AddNumberToObject(o, "tolerance", p->tolerance);
    else
        cJSON_AddNumberToObject(o, "margin_voxels", p->margin);
}

/* bounding box of m != 0 (or data > thr when m is NULL), inclusive; 0 if empty */
static int bbox_of(const rp_volume *v, const uint8_t *m, float thr, int box[6])
{
    const int nx = v->dim[0], ny = v->dim[1], nz = v->dim[2];
    box[0] = box[2] = box[4] = 1 << 30;
    box[1] = box[3] = box[5] = -1;
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++) {
            size_t off = ((size_t)z * ny + y) * nx;
            for (int x = 0; x < nx; x++) {
                int on = m ? m[off + x] != 0 : v->data[off + x] > thr;
                if (!on)
                    continue;
                if (x < box[0])
                    box[0] = x;
                if (x > box[1])
                    box[1] = x;
                if (y < box[2])
                    box[2] = y;
                if (y > box[3])
                    box[3] = y;
                if (z < box[4])
                    box[4] = z;
                if (z > box[5])
                    box[5] = z;
            }
        }
    return box[1] >= 0;
}

/* mean and SD of the slab of voxels at index k along `axis`, within the current box */
static void slab_stats(const rp_volume *v, int axis, int k, const int box[6], double *mean,
                       double *sd)
{
    double s = 0, ss = 0;
    size_t n = 0;
    int lo[3] = {box[0], box[2], box[4]}, hi[3] = {box[1], box[3], box[5]};
    lo[axis] = hi[axis] = k;
    for (int z = lo[2]; z <= hi[2]; z++)
        for (int y = lo[1]; y <= hi[1]; y++)
            for (int x = lo[0]; x <= hi[0]; x++) {
                double d = v->data[((size_t)z * v->dim[1] + y) * v->dim[0] + x];
                s += d;
                ss += d * d;
                n++;
            }
    *mean = n ? s / n : 0;
    double var = n ? ss / n - *mean * *mean : 0;
    *sd = var > 0 ? sqrt(var) : 0;
}

/* a border slab is background when it is uniform and has the outermost slab's level */
static int is_background(const rp_volume *v, int axis, int k, const int box[6], double ref,
                         double tol)
{
    double m, sd;
    slab_stats(v, axis, k, box, &m, &sd);
    return sd <= tol && fabs(m - ref) <= tol;
}

int rp_step_crop_run(rp_step_ctx *ctx, const void *pp)
{
    const crop_params *p = pp;
    const rp_volume *v = ctx->vol;
    int box[6] = {0, v->dim[0] - 1, 0, v->dim[1] - 1, 0, v->dim[2] - 1};
    if (p->kind == CROP_BACKGROUND) {
        /* peel border lines that are uniform (collimation, burnt-in frames); never more than
         * 45 % of an axis from one side */
        float lo = v->data[0], hi = v->data[0];
        size_t n = rp_volume_nvox(v);
        for (size_t i = 0; i < n; i++) {
            if (v->data[i] < lo)
                lo = v->data[i];
            if (v->data[i] > hi)
                hi = v->data[i];
        }
        double tol = p->tolerance * (double)(hi - lo);
        for (int a = 0; a < 3; a++) {
            if (v->dim[a] < 3)
                continue;
            int limit = (int)(v->dim[a] * 0.45);
            double ref, sd;
            slab_stats(v, a, box[2 * a], box, &ref, &sd);
            while (box[2 * a] < limit && is_background(v, a, box[2 * a], box, ref, tol))
                box[2 * a]++;
            slab_stats(v, a, box[2 * a + 1], box, &ref, &sd);
            while (v->dim[a] - 1 - box[2 * a + 1] < limit &&
                   is_background(v, a, box[2 * a + 1], box, ref, tol))
                box[2 * a + 1]--;
        }
    } else {
        const rp_mask *m = NULL;
        if (p->kind == CROP_MASK) {
            m = rp_step_ctx_mask(ctx, p->mask);
            if (!m) {
                snprintf(ctx->err, sizeof ctx->err, "crop: no mask '%s'", p->mask);
                return RP_EINVAL;
            }
        } else {
            m = rp_step_ctx_mask(ctx, "foreground");
            if (!m)
                m = rp_step_ctx_mask(ctx, "body");
        }
        float thr = v->data[0];
        if (!m) {
            /* foreground without a mask: everything above the volume minimum */
            size_t n = rp_volume_nvox(v);
            for (size_t i = 0; i < n; i++)
                if (v->data[i] < thr)
                    thr = v->data[i];
        }
        if (!bbox_of(v, m ? m->data : NULL, thr, box)) {
            snprintf(ctx->err, sizeof ctx->err, "crop: the %s is empty", m ? "mask" : "foreground");
            return RP_EINVAL;
        }
        for (int a = 0; a < 3; a++) {
            box[2 * a] = box[2 * a] - p->margin < 0 ? 0 : box[2 * a] - p->margin;
            box[2 * a + 1] = box[2 * a + 1] + p->margin > v->dim[a] - 1
                                 ? v->dim[a] - 1
                                 : box[2 * a + 1] + p->margin;
        }
    }
    index_map im;
    identity_map(&im, v->dim);
    for (int a = 0; a < 3; a++) {
        im.start[a] = box[2 * a];
        im.new_dim[a] = box[2 * a + 1] - box[2 * a] + 1;
    }
    if (ctx->step_qc) {
        int start[3] = {box[0], box[2], box[4]};
        cJSON_AddItemToObject(ctx->step_qc, "box_start", cJSON_CreateIntArray(start, 3));
        cJSON_AddItemToObject(ctx->step_qc, "box_size", cJSON_CreateIntArray(im.new_dim, 3));
    }
    return apply_map(ctx, &im, 0);
}

/* ---- crop_or_pad --------------------------------------------------------------------- */

typedef struct cop_params {
    int size[3];
    int pad_min; /* pad with the volume minimum */
    double pad_value;
} cop_params;

static const char COP_USAGE[] = "crop_or_pad(x,y[,z][,min|VALUE]) (centred; pad default: min)";

int rp_step_crop_or_pad_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    cop_params p = {.size = {1, 1, 1}, .pad_min = 1};
    int ns = 0;
    for (int i = 0; i < a->n; i++) {
        int v;
        if (ns < 3 && i == ns && rp_arg_int(a->arg[i], &v) == 0) {
            if (v < 1 || v > 100000)
                return rp_arg_fail(err, errlen, COP_USAGE, "size %d out of range", v);
            p.size[ns++] = v;
        } else if (i == a->n - 1 && ns >= 2) {
            if (strcasecmp(a->arg[i], "min") == 0)
                p.pad_min = 1;
            else if (rp_arg_double(a->arg[i], &p.pad_value) == 0)
                p.pad_min = 0;
            else
                return rp_arg_fail(err, errlen, COP_USAGE, "bad pad value '%s'", a->arg[i]);
        } else {
            return rp_arg_fail(err, errlen, COP_USAGE, "bad argument '%s'", a->arg[i]);
        }
    }
    if (ns < 2)
        return rp_arg_fail(err, errlen, COP_USAGE, "give 2 or 3 sizes");
    cop_params *q = malloc(sizeof *q);
    if (!q)
        return RP_ENOMEM;
    *q = p;
    *out = q;
    return 0;
}

void rp_step_crop_or_pad_describe(const void *pp, cJSON *o)
{
    const cop_params *p = pp;
    cJSON_AddItemToObject(o, "size", cJSON_CreateIntArray(p->size, 3));
    if (p->pad_min)
        cJSON_AddStringToObject(o, "pad", "min");
    else
        cJSON_AddNumberToObject(o, "pad", p->pad_value);
    cJSON_AddStringToObject(o, "align", "centre, extra voxel at the end");
}

int rp_step_crop_or_pad_run(rp_step_ctx *ctx, const void *pp)
{
    const cop_params *p = pp;
    const rp_volume *v = ctx->vol;
    index_map im;
    identity_map(&im, v->dim);
    for (int a = 0; a < 3; a++) {
        im.new_dim[a] = p->size[a];
        long d = (long)v->dim[a] - p->size[a];
        im.start[a] = d >= 0 ? d / 2 : -((-d) / 2);
    }
    float pad = (float)p->pad_value;
    if (p->pad_min) {
        size_t n = rp_volume_nvox(v) * v->dim[3];
        pad = v->data[0];
        for (size_t i = 1; i < n; i++)
            if (v->data[i] < pad)
                pad = v->data[i];
    }
    if (ctx->step_qc) {
        int st[3] = {(int)im.start[0], (int)im.start[1], (int)im.start[2]};
        cJSON_AddItemToObject(ctx->step_qc, "source_start", cJSON_CreateIntArray(st, 3));
        cJSON_AddNumberToObject(ctx->step_qc, "pad_value", pad);
    }
    return apply_map(ctx, &im, pad);
}

/* ---- denoise ------------------------------------------------------------------------- */

enum { DN_GAUSSIAN, DN_MEDIAN, DN_EDGE };

typedef struct denoise_params {
    int kind;
    double sigma_mm; /* gaussian */
    int radius;      /* median */
    int iterations;  /* edge-preserving */
    double kappa;    /* edge-preserving, <0: auto */
} denoise_params;

static const char DENOISE_USAGE[] = "denoise(gaussian[,sigma_mm] | median[,radius_voxels] | "
                                    "edge-preserving[,iterations[,kappa]])";

int rp_step_denoise_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    denoise_params p = {.sigma_mm = 1.0, .radius = 1, .iterations = 5, .kappa = -1};
    static const char *const kinds[] = {"gaussian", "median", "edge-preserving", NULL};
    if (a->n < 1 || (p.kind = rp_arg_word(a->arg[0], kinds)) < 0)
        return rp_arg_fail(err, errlen, DENOISE_USAGE,
                           "expected gaussian, median or edge-preserving");
    int maxn = p.kind == DN_EDGE ? 3 : 2;
    if (a->n > maxn)
        return rp_arg_fail(err, errlen, DENOISE_USAGE, "too many arguments");
    if (p.kind == DN_GAUSSIAN && a->n == 2 &&
        (rp_arg_double(a->arg[1], &p.sigma_mm) || !(p.sigma_mm > 0 && p.sigma_mm <= 50)))
        return rp_arg_fail(err, errlen, DENOISE_USAGE, "sigma_mm must be in (0,50]");
    if (p.kind == DN_MEDIAN && a->n == 2 &&
        (rp_arg_int(a->arg[1], &p.radius) || p.radius < 1 || p.radius > 3))
        return rp_arg_fail(err, errlen, DENOISE_USAGE, "median radius must be 1, 2 or 3");
    if (p.kind == DN_EDGE) {
        if (a->n >= 2 &&
            (rp_arg_int(a->arg[1], &p.iterations) || p.iterations < 1 || p.iterations > 100))
            return rp_arg_fail(err, errlen, DENOISE_USAGE, "iterations must be in [1,100]");
        if (a->n == 3 && (rp_arg_double(a->arg[2], &p.kappa) || !(p.kappa > 0)))
            return rp_arg_fail(err, errlen, DENOISE_USAGE, "kappa must be > 0");
    }
    denoise_params *q = malloc(sizeof *q);
    if (!q)
        return RP_ENOMEM;
    *q = p;
    *out = q;
    return 0;
}

void rp_step_denoise_describe(const void *pp, cJSON *o)
{
    const denoise_params *p = pp;
    if (p->kind == DN_GAUSSIAN) {
        cJSON_AddStringToObject(o, "method", "gaussian");
        cJSON_AddNumberToObject(o, "sigma_mm", p->sigma_mm);
        cJSON_AddStringToObject(o, "boundary", "reflect, truncate 4 sigma (scipy.ndimage)");
    } else if (p->kind == DN_MEDIAN) {
        cJSON_AddStringToObject(o, "method", "median");
        cJSON_AddNumberToObject(o, "radius_voxels", p->radius);
        cJSON_AddStringToObject(o, "boundary", "reflect");
    } else {
        cJSON_AddStringToObject(o, "method", "perona-malik anisotropic diffusion");
        cJSON_AddNumberToObject(o, "iterations", p->iterations);
        if (p->kappa > 0)
            cJSON_AddNumberToObject(o, "kappa", p->kappa);
        else
            cJSON_AddStringToObject(o, "kappa", "auto: 50 HU for CT, else 5% of the range");
        cJSON_AddStringToObject(o, "scheme", "6 neighbours, g=exp(-(d/kappa)^2), dt=1/7");
    }
}

int rp_step_denoise_run(rp_step_ctx *ctx, const void *pp)
{
    const denoise_params *p = pp;
    rp_volume *v = ctx->vol;
    size_t n = rp_volume_nvox(v);
    int rc = 0;
    for (int c = 0; c < v->dim[3] && rc == 0; c++) {
        float *d = v->data + (size_t)c * n;
        if (p->kind == DN_GAUSSIAN) {
            double sig[3];
            for (int a = 0; a < 3; a++)
                sig[a] = v->spacing[a] > 0 ? p->sigma_mm / v->spacing[a] : 0;
            rc = rp_gaussian_3d(d, v->dim, sig);
        } else if (p->kind == DN_MEDIAN) {
            float *o = malloc(n * sizeof *o);
            if (!o)
                return RP_ENOMEM;
            rc = rp_median_3d(d, o, v->dim, p->radius);
            if (rc == 0)
                memcpy(d, o, n * sizeof *o);
            free(o);
        } else {
            double kappa = p->kappa;
            if (!(kappa > 0)) {
                if (ctx->hu_known && v->dim[3] == 1) {
                    kappa = 50.0 / fabs(ctx->hu_scale);
                } else {
                    float lo = d[0], hi = d[0];
                    for (size_t i = 1; i < n; i++) {
                        if (d[i] < lo)
                            lo = d[i];
                        if (d[i] > hi)
                            hi = d[i];
                    }
                    kappa = hi > lo ? 0.05 * ((double)hi - lo) : 1;
                }
            }
            rp_step_qc_number(ctx, "kappa", kappa);
            rc = rp_diffusion_3d(d, v->dim, p->iterations, kappa);
        }
    }
    if (rc)
        snprintf(ctx->err, sizeof ctx->err, "denoise: %s", rp_strerror(rc));
    return rc;
}

/* ---- patches ------------------------------------------------------------------------- */

typedef struct patches_params {
    int size[3];
    int stride[3]; /* 0: inside(mask) mode */
    char mask[32];
    int max; /* 0: all */
    int files;
} patches_params;

static const char PATCHES_USAGE[] =
    "patches(SIZE, STRIDE | inside(MASK) [,max][,files]); SIZE/STRIDE as N or NxNxN voxels";

static int parse_triple(const char *s, int v[3])
{
    char buf[128];
    rp_strlcpy(buf, s, sizeof buf);
    int k = 0;
    for (char *tok = strtok(buf, "xX"); tok; tok = strtok(NULL, "xX")) {
        if (k >= 3 || rp_arg_int(tok, &v[k]) || v[k] < 1 || v[k] > 4096)
            return RP_EINVAL;
        k++;
    }
    if (k == 1)
        v[1] = v[2] = v[0];
    else if (k != 3)
        return RP_EINVAL;
    return 0;
}

int rp_step_patches_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    patches_params p = {0};
    if (a->n < 2 || a->n > 4)
        return rp_arg_fail(err, errlen, PATCHES_USAGE, "expected 2 to 4 arguments");
    if (parse_triple(a->arg[0], p.size))
        return rp_arg_fail(err, errlen, PATCHES_USAGE, "bad size '%s'", a->arg[0]);
    char name[32];
    rp_step_args sub;
    if (rp_arg_call(a->arg[1], name, sizeof name, &sub) == 0 && strcasecmp(name, "inside") == 0) {
        if (sub.n != 1 || rp_strlcpy(p.mask, sub.arg[0], sizeof p.mask) != 0)
            return rp_arg_fail(err, errlen, PATCHES_USAGE, "inside() needs one mask name");
    } else if (parse_triple(a->arg[1], p.stride)) {
        return rp_arg_fail(err, errlen, PATCHES_USAGE, "bad stride '%s'", a->arg[1]);
    }
    for (int i = 2; i < a->n; i++) {
        if (strcasecmp(a->arg[i], "files") == 0)
            p.files = 1;
        else if (rp_arg_int(a->arg[i], &p.max) || p.max < 1 || p.max > 1000000)
            return rp_arg_fail(err, errlen, PATCHES_USAGE, "bad max '%s'", a->arg[i]);
    }
    patches_params *q = malloc(sizeof *q);
    if (!q)
        return RP_ENOMEM;
    *q = p;
    *out = q;
    return 0;
}

void rp_step_patches_describe(const void *pp, cJSON *o)
{
    const patches_params *p = pp;
    cJSON_AddItemToObject(o, "size", cJSON_CreateIntArray(p->size, 3));
    if (p->mask[0]) {
        cJSON_AddStringToObject(o, "inside", p->mask);
        int half[3] = {(p->size[0] + 1) / 2, (p->size[1] + 1) / 2, (p->size[2] + 1) / 2};
        cJSON_AddItemToObject(o, "stride", cJSON_CreateIntArray(half, 3));
    } else {
        cJSON_AddItemToObject(o, "stride", cJSON_CreateIntArray(p->stride, 3));
    }
    cJSON_AddNumberToObject(o, "max", p->max);
    cJSON_AddBoolToObject(o, "files", p->files);
}

typedef struct patch {
    int start[3];
    double frac;
    long order;
} patch;

static int cmp_patch(const void *a, const void *b)
{
    const patch *x = a, *y = b;
    if (x->frac != y->frac)
        return x->frac < y->frac ? 1 : -1;
    return (x->order > y->order) - (x->order < y->order);
}

static int cmp_patch_order(const void *a, const void *b)
{
    const patch *x = a, *y = b;
    return (x->order > y->order) - (x->order < y->order);
}

/* starts 0, s, 2s, ... and finally n-size, so the grid covers the axis */
static int axis_starts(int n, int size, int stride, int *out, int maxn)
{
    if (n <= size) {
        out[0] = 0;
        return 1;
    }
    int k = 0;
    for (int s = 0; s <= n - size && k < maxn; s += stride)
        out[k++] = s;
    if (out[k - 1] != n - size && k < maxn)
        out[k++] = n - size;
    return k;
}

static int write_npy(const char *path, const float *data, const int shape[4])
{
    char hdr[256];
    int hl = snprintf(hdr, sizeof hdr,
                      "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d, %d, %d), }",
                      shape[0], shape[1], shape[2], shape[3]);
    int total = 10 + hl + 1;
    int padn = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f)
        return RP_EIO;
    unsigned short hlen = (unsigned short)(hl + padn + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    unsigned char le[2] = {(unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
    fwrite(le, 1, 2, f);
    fwrite(hdr, 1, (size_t)hl, f);
    for (int i = 0; i < padn; i++)
        fputc(' ', f);
    fputc('\n', f);
    size_t n = (size_t)shape[0] * shape[1] * shape[2] * shape[3];
    size_t w = fwrite(data, sizeof(float), n, f);
    int rc = (w == n && fclose(f) == 0) ? 0 : RP_EIO;
    if (w != n)
        fclose(f);
    return rc;
}

int rp_step_patches_run(rp_step_ctx *ctx, const void *pp)
{
    const patches_params *p = pp;
    const rp_volume *v = ctx->vol;
    const rp_mask *m = NULL;
    int stride[3];
    for (int a = 0; a < 3; a++) {
        int sz = p->size[a] < v->dim[a] ? p->size[a] : v->dim[a];
        stride[a] = p->mask[0] ? (sz + 1) / 2 : p->stride[a];
    }
    if (p->mask[0]) {
        m = rp_step_ctx_mask(ctx, p->mask);
        if (!m || memcmp(m->dim, v->dim, sizeof m->dim) != 0) {
            snprintf(ctx->err, sizeof ctx->err, "patches: mask '%s' %s", p->mask,
                     m ? "is not on the image grid" : "does not exist");
            return RP_EINVAL;
        }
    }
    int *st[3];
    int ns[3];
    int rc = 0;
    patch *list = NULL;
    cJSON *doc = NULL;
    for (int a = 0; a < 3; a++) {
        st[a] = malloc(((size_t)v->dim[a] / (stride[a] ? stride[a] : 1) + 3) * sizeof(int));
        if (!st[a]) {
            for (int k = 0; k < a; k++)
                free(st[k]);
            return RP_ENOMEM;
        }
        ns[a] = axis_starts(v->dim[a], p->size[a], stride[a], st[a], v->dim[a] / stride[a] + 2);
    }
    size_t total = (size_t)ns[0] * ns[1] * ns[2];
    list = calloc(total ? total : 1, sizeof *list);
    if (!list) {
        rc = RP_ENOMEM;
        goto out;
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t i = 0; i < total; i++) {
        int ix = (int)(i % ns[0]), iy = (int)((i / ns[0]) % ns[1]), iz = (int)(i / ns[0] / ns[1]);
        patch *pt = &list[i];
        pt->start[0] = st[0][ix];
        pt->start[1] = st[1][iy];
        pt->start[2] = st[2][iz];
        pt->order = (long)i;
        pt->frac = -1;
        if (m) {
            size_t cnt = 0, vol = 0;
            for (int z = pt->start[2]; z < pt->start[2] + p->size[2] && z < v->dim[2]; z++)
                for (int y = pt->start[1]; y < pt->start[1] + p->size[1] && y < v->dim[1]; y++) {
                    const uint8_t *row = m->data + ((size_t)z * v->dim[1] + y) * v->dim[0];
                    for (int x = pt->start[0]; x < pt->start[0] + p->size[0] && x < v->dim[0]; x++)
                        cnt += row[x] != 0;
                }
            vol = (size_t)p->size[0] * p->size[1] * p->size[2];
            pt->frac = (double)cnt / (double)vol;
        }
    }
    size_t keep = total;
    if (m) {
        qsort(list, total, sizeof *list, cmp_patch);
        keep = 0;
        while (keep < total && list[keep].frac > 0)
            keep++;
        if (p->max && keep > (size_t)p->max)
            keep = (size_t)p->max;
        qsort(list, keep, sizeof *list, cmp_patch_order);
    } else if (p->max && total > (size_t)p->max) {
        /* evenly spaced subset, deterministic */
        for (size_t k = 0; k < (size_t)p->max; k++)
            list[k] = list[k * total / (size_t)p->max];
        keep = (size_t)p->max;
    }
    doc = cJSON_CreateObject();
    cJSON_AddItemToObject(doc, "image_dim", cJSON_CreateIntArray(v->dim, 4));
    cJSON_AddItemToObject(doc, "size", cJSON_CreateIntArray(p->size, 3));
    cJSON_AddItemToObject(doc, "stride", cJSON_CreateIntArray(stride, 3));
    cJSON_AddStringToObject(doc, "index_order", "x,y,z voxel start of each patch (NIfTI i,j,k)");
    cJSON_AddStringToObject(doc, "file_layout", "npy float32 shape (c, z, y, x)");
    cJSON *arr = cJSON_AddArrayToObject(doc, "patches");
    char dir[2048] = "";
    if (p->files && ctx->out_dir) {
        snprintf(dir, sizeof dir, "%s/%s_patches", ctx->out_dir,
                 ctx->out_stem ? ctx->out_stem : "out");
        if ((rc = rp_mkdir_p(dir, 0755)) != 0)
            goto out;
    }
    float *buf = NULL;
    if (dir[0]) {
        buf = malloc((size_t)p->size[0] * p->size[1] * p->size[2] * v->dim[3] * sizeof(float));
        if (!buf) {
            rc = RP_ENOMEM;
            goto out;
        }
    }
    for (size_t k = 0; k < keep; k++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "start", cJSON_CreateIntArray(list[k].start, 3));
        if (m)
            cJSON_AddNumberToObject(o, "mask_fraction", round(list[k].frac * 1e4) / 1e4);
        if (buf) {
            char path[2400];
            snprintf(path, sizeof path, "%s/patch_%05zu.npy", dir, k);
            size_t q = 0, nv = rp_volume_nvox(v);
            for (int c = 0; c < v->dim[3]; c++)
                for (int z = 0; z < p->size[2]; z++)
                    for (int y = 0; y < p->size[1]; y++)
                        for (int x = 0; x < p->size[0]; x++) {
                            int X = list[k].start[0] + x, Y = list[k].start[1] + y,
                                Z = list[k].start[2] + z;
                            buf[q++] = (X < v->dim[0] && Y < v->dim[1] && Z < v->dim[2])
                                           ? v->data[(size_t)c * nv +
                                                     ((size_t)Z * v->dim[1] + Y) * v->dim[0] + X]
                                           : 0.0f;
                        }
            int shape[4] = {v->dim[3], p->size[2], p->size[1], p->size[0]};
            if ((rc = write_npy(path, buf, shape)) != 0) {
                cJSON_Delete(o);
                free(buf);
                goto out;
            }
            char rel[256];
            snprintf(rel, sizeof rel, "%s_patches/patch_%05zu.npy",
                     ctx->out_stem ? ctx->out_stem : "out", k);
            cJSON_AddStringToObject(o, "file", rel);
        }
        cJSON_AddItemToArray(arr, o);
    }
    free(buf);
    rp_step_qc_number(ctx, "patches", (double)keep);
    rp_step_qc_number(ctx, "candidates", (double)total);
    if (ctx->out_dir) {
        char path[2400], tmp[2500];
        snprintf(path, sizeof path, "%s/%s_patches.json", ctx->out_dir,
                 ctx->out_stem ? ctx->out_stem : "out");
        snprintf(tmp, sizeof tmp, "%s.tmp", path);
        char *txt = cJSON_Print(doc);
        FILE *f = txt ? fopen(tmp, "w") : NULL;
        if (!f || fputs(txt, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
            free(txt);
            snprintf(ctx->err, sizeof ctx->err, "patches: cannot write %.200s (errno %d)", path,
                     errno);
            rc = RP_EIO;
            goto out;
        }
        free(txt);
        if (ctx->extra_outputs) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "kind", "patches");
            cJSON_AddStringToObject(e, "path", path);
            cJSON_AddItemToArray(ctx->extra_outputs, e);
        }
    }
out:
    cJSON_Delete(doc);
    free(list);
    for (int a = 0; a < 3; a++)
        free(st[a]);
    return rc;
}

/* ---- the `resample` step ------------------------------------------------------------- */

typedef struct resample_params {
    double spacing[3];
    int order;
    int aniso;
} resample_params;

static const char RESAMPLE_USAGE[] =
    "resample(s | sx,sy,sz [,nearest|linear|bspline3] [,aniso]), spacing in mm";

int rp_step_resample_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    resample_params *p = calloc(1, sizeof *p);
    if (!p)
        return RP_ENOMEM;
    p->order = RP_INTERP_BSPLINE3;
    int nnum = 0;
    for (int i = 0; i < a->n; i++) {
        double v;
        if (rp_arg_double(a->arg[i], &v) == 0) {
            if (nnum >= 3 || i != nnum) {
                free(p);
                return rp_arg_fail(err, errlen, RESAMPLE_USAGE,
                                   "spacings must come first, at most 3");
            }
            if (!(v > 0.01 && v <= 100)) {
                free(p);
                return rp_arg_fail(err, errlen, RESAMPLE_USAGE,
                                   "spacing %s mm out of range (0.01, 100]", a->arg[i]);
            }
            p->spacing[nnum++] = v;
            continue;
        }
        static const char *const w[] = {"nearest", "linear", "bspline3", "cubic", "aniso", NULL};
        int k = rp_arg_word(a->arg[i], w);
        if (k < 0) {
            free(p);
            return rp_arg_fail(err, errlen, RESAMPLE_USAGE, "'%s' is neither a spacing nor %s",
                               a->arg[i], "nearest|linear|bspline3|aniso");
        }
        if (k == 4)
            p->aniso = 1;
        else
            p->order = k == 0 ? RP_INTERP_NEAREST : k == 1 ? RP_INTERP_LINEAR : RP_INTERP_BSPLINE3;
    }
    if (nnum == 1)
        p->spacing[1] = p->spacing[2] = p->spacing[0];
    else if (nnum != 3) {
        free(p);
        return rp_arg_fail(err, errlen, RESAMPLE_USAGE, "give 1 or 3 spacings, got %d", nnum);
    }
    *out = p;
    return 0;
}

static const char *order_name(int o)
{
    return o == RP_INTERP_NEAREST ? "nearest" : o == RP_INTERP_LINEAR ? "linear" : "bspline3";
}

void rp_step_resample_describe(const void *pp, cJSON *o)
{
    const resample_params *p = pp;
    cJSON_AddItemToObject(o, "spacing_mm", cJSON_CreateDoubleArray(p->spacing, 3));
    cJSON_AddStringToObject(o, "interpolation", order_name(p->order));
    cJSON_AddBoolToObject(o, "aniso", p->aniso);
    cJSON_AddStringToObject(o, "boundary", "mirror");
    cJSON_AddStringToObject(o, "grid", "origin fixed, n'=round(n*old/new)");
    cJSON_AddStringToObject(o, "masks", "nearest");
}

int rp_step_resample_run(rp_step_ctx *ctx, const void *pp)
{
    const resample_params *p = pp;
    rp_volume *v = ctx->vol;
    int order[3] = {p->order, p->order, p->order};
    double old_sp[3] = {v->spacing[0], v->spacing[1], v->spacing[2]};
    if (p->aniso) {
        /* nnU-Net: an axis whose spacing exceeds 3x both others is interpolated with order 0,
         * the plane with the high order. */
        for (int a = 0; a < 3; a++) {
            int b = (a + 1) % 3, c = (a + 2) % 3;
            if (old_sp[a] > 3 * old_sp[b] && old_sp[a] > 3 * old_sp[c])
                order[a] = RP_INTERP_NEAREST;
        }
    }
    int nd[3];
    rp_resample_grid(v->dim, old_sp, p->spacing, nd);
    double scale[3];
    for (int a = 0; a < 3; a++)
        scale[a] = p->spacing[a] / old_sp[a];
    int old_dim[3] = {v->dim[0], v->dim[1], v->dim[2]};
    int rc = rp_resample_volume_stats(&ctx->vol, p->spacing, order, &ctx->stats);
    if (rc == 0)
        ctx->stats_of = ctx->vol->data; /* the runner's "after", measured in the last pass */
    if (rc) {
        snprintf(ctx->err, sizeof ctx->err, "resample %dx%dx%d -> %dx%dx%d failed: %s", old_dim[0],
                 old_dim[1], old_dim[2], nd[0], nd[1], nd[2], rp_strerror(rc));
        return rc;
    }
    for (int i = 0; i < ctx->n_masks; i++) {
        rc = rp_resample_mask(&ctx->masks[i], nd, scale);
        if (rc) {
            snprintf(ctx->err, sizeof ctx->err, "resampling mask '%s' failed", ctx->masks[i]->name);
            return rc;
        }
    }
    if (ctx->step_qc) {
        cJSON_AddItemToObject(ctx->step_qc, "from_spacing_mm", cJSON_CreateDoubleArray(old_sp, 3));
        const char *names[3] = {order_name(order[0]), order_name(order[1]), order_name(order[2])};
        cJSON_AddItemToObject(ctx->step_qc, "order_per_axis", cJSON_CreateStringArray(names, 3));
    }
    return 0;
}
