/*
 * pipeline/recipe/steps_xr.c — the X-ray steps: present, clahe, resize, pad, png (table
 * rp_steps_xr) around the kernels of pipeline/xray/xray.h.
 *
 *   present[(auto|window|lut|minmax[, index])]
 *       DICOM presentation into 0..1, bone bright. The input volume is what assembly makes
 *       (pipeline/assemble/assemble.h): Modality LUT output (Rescale Slope/Intercept or the
 *       Modality LUT Sequence applied) and, for MONOCHROME1, inverted so that higher means denser
 *       (v = omin + omax - m, omin/omax the modality range of the stored range). present
 *       undoes that inversion, so that the header's windows and LUTs apply to the values
 *       they were written for, and inverts again after the VOI stage (PS3.3: MONOCHROME1 is
 *       inverted after VOI). VOI choice, `auto`: the VOI LUT Sequence item `index` when
 *       the image has one (the manufacturer's exact curve; PS3.3 C.11.2 lets the application
 *       pick either, pydicom's apply_voi_lut prefers the LUT too), else window pair `index`
 *       with the VOI LUT Function, else a linear ramp over the data range. MONOCHROME1 is
 *       inverted after the VOI stage. Pixel padding (mask "padding" or Pixel Padding Value)
 *       becomes 0. The QC entry says which path was taken, with its numbers.
 *   clahe(clip, tiles[, bits])      tiles "8" or "8x4" (columns x rows), bits 8 (default) | 16
 *       OpenCV's CLAHE on every 2-D slice: [0,1] quantized to `bits`, equalized, back to 0..1.
 *   resize(size[, keep_aspect|stretch[, area|linear]])   size "1024" or "1024x800" (W x H)
 *       keep_aspect (default): the image fits inside size (longer side = size).
 *       area (default): cv2.INTER_AREA (box average, anti-aliased); linear: cv2.INTER_LINEAR.
 *   pad(size[, value])              letterbox to size ("1024" = square), image centred.
 *   png[(8|16)]                     write the image at this point as <stem>.png (extra output).
 * resize and pad update the affine and record the in-plane map in QC:
 *       source_px = scale * output_px + offset  (0-based pixel centres, per axis)
 * both for the step ("scale"/"offset") and from the original image ("pixel_map", top level
 * of the QC report, composed through every geometric step since `present`). Coordinates
 * are those of the image as displayed (DICOM rows, PNG rows): volumes store rows bottom-up
 * like dcm2niix (assemble.h), so clahe, pad and the PNG writer work in display order, and
 * the results equal OpenCV's on the displayed image.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "dicom/dicom.h"
#include "pipeline/recipe/recipe_internal.h"
#include "pipeline/xray/xray.h"

/* Volumes hold rows bottom-up (assemble.h, as dcm2niix); row ny-1 is the first DICOM row. */
#define XR_ROWS_BOTTOM_UP 1

/* ---------------- present ---------------- */

enum { VOI_AUTO, VOI_WINDOW, VOI_LUT, VOI_MINMAX };
static const char *const voi_words[] = {"auto", "window", "lut", "minmax", NULL};
static const char present_usage[] = "present or present(auto|window|lut|minmax[, index>=1])";

typedef struct present_params {
    int source;
    int index; /* 1-based */
} present_params;

static int present_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    present_params *p = calloc(1, sizeof *p);
    if (!p)
        return RP_ENOMEM;
    p->source = VOI_AUTO;
    p->index = 1;
    if (a->n > 2) {
        free(p);
        return rp_arg_fail(err, errlen, present_usage, "too many arguments");
    }
    if (a->n >= 1 && (p->source = rp_arg_word(a->arg[0], voi_words)) < 0) {
        free(p);
        return rp_arg_fail(err, errlen, present_usage, "unknown VOI source '%s'", a->arg[0]);
    }
    if (a->n >= 2 &&
        (rp_arg_int(a->arg[1], &p->index) < 0 || p->index < 1 || p->index > RP_DCM_MAX_WINDOWS)) {
        free(p);
        return rp_arg_fail(err, errlen, present_usage, "bad index '%s'", a->arg[1]);
    }
    *out = p;
    return 0;
}

static void present_describe(const void *vp, cJSON *o)
{
    const present_params *p = vp;
    cJSON_AddStringToObject(o, "voi", voi_words[p->source]);
    cJSON_AddNumberToObject(o, "index", p->index);
    cJSON_AddStringToObject(o, "output", "float 0..1, bone bright (MONOCHROME1 inverted)");
    cJSON_AddStringToObject(o, "standard", "PS3.3 C.11.1, C.11.2");
}

static void lut_from_dcm(rp_xr_lut *l, const rp_dcm_lut *d)
{
    l->n = d->n_entries;
    l->first = d->first_mapped;
    l->bits = d->bits;
    l->data = d->data;
}

static rp_xr_voi_kind function_kind(const char *fn)
{
    if (strcasecmp(fn, "SIGMOID") == 0)
        return RP_XR_VOI_SIGMOID;
    if (strcasecmp(fn, "LINEAR_EXACT") == 0)
        return RP_XR_VOI_LINEAR_EXACT;
    return RP_XR_VOI_LINEAR; /* LINEAR, or absent (the default, C.11.2.1.3) */
}

/* Choose the VOI transform; fills the QC entry with the reasons. */
/* skip: 1 = not the LUT, 2 = not the window (auto falls back past an invalid one). */
static int choose_voi(rp_step_ctx *ctx, const present_params *pp, rp_xr_voi *voi, cJSON *q,
                      int skip)
{
    const rp_series_info *si = ctx->info;
    const rp_dcm_info *d = si ? si->dcm : NULL;
    const int k = pp->index - 1;
    int n_luts = d ? d->n_voi_luts : 0;
    int n_win = d ? d->n_windows : (si && si->window_width > 0 ? 1 : 0);
    memset(voi, 0, sizeof *voi);
    voi->kind = RP_XR_VOI_NONE;

    const int autom = pp->source == VOI_AUTO;
    int want_lut = pp->source == VOI_LUT || (autom && !(skip & 1) && n_luts > k);
    int want_win = pp->source == VOI_WINDOW || (autom && !want_lut && !(skip & 2) && n_win > k);
    if (want_lut) {
        if (k >= n_luts) {
            snprintf(ctx->err, sizeof ctx->err,
                     "present: VOI LUT %d requested but the image has %d", pp->index, n_luts);
            return RP_EINVAL;
        }
        voi->kind = RP_XR_VOI_LUT;
        lut_from_dcm(&voi->lut, &d->voi_lut[k]);
        cJSON_AddStringToObject(q, "voi_path", "VOI LUT Sequence");
        cJSON_AddNumberToObject(q, "voi_lut_item", pp->index);
        cJSON_AddStringToObject(q, "voi_lut_explanation", d->voi_lut[k].explanation);
        cJSON *desc = cJSON_AddArrayToObject(q, "voi_lut_descriptor");
        cJSON_AddItemToArray(desc, cJSON_CreateNumber(voi->lut.n));
        cJSON_AddItemToArray(desc, cJSON_CreateNumber(voi->lut.first));
        cJSON_AddItemToArray(desc, cJSON_CreateNumber(voi->lut.bits));
        if (n_win)
            cJSON_AddStringToObject(q, "voi_note", "window also present; the LUT was used");
    } else if (want_win) {
        if (k >= n_win) {
            snprintf(ctx->err, sizeof ctx->err, "present: window %d requested but the image has %d",
                     pp->index, n_win);
            return RP_EINVAL;
        }
        if (d) {
            voi->center = d->window_center[k];
            voi->width = d->window_width[k];
            voi->kind = function_kind(d->voi_lut_function);
            if (d->window_explanation[k][0])
                cJSON_AddStringToObject(q, "window_explanation", d->window_explanation[k]);
        } else {
            voi->center = si->window_center;
            voi->width = si->window_width;
            voi->kind = RP_XR_VOI_LINEAR;
        }
        cJSON_AddStringToObject(q, "voi_path", "window");
        cJSON_AddStringToObject(q, "voi_lut_function", rp_xr_voi_name(voi->kind));
        cJSON_AddNumberToObject(q, "window_index", pp->index);
        cJSON_AddNumberToObject(q, "window_center", voi->center);
        cJSON_AddNumberToObject(q, "window_width", voi->width);
        cJSON_AddNumberToObject(q, "windows_in_header", n_win);
    } else {
        cJSON_AddStringToObject(q, "voi_path",
                                pp->source == VOI_MINMAX ? "min-max (requested)"
                                                         : "min-max (no VOI in the header)");
    }
    char why[160];
    if (rp_xr_voi_check(voi, why, sizeof why) < 0) {
        if (autom && voi->kind != RP_XR_VOI_NONE) {
            /* A broken VOI in the header (width 0, empty LUT) must not lose the image:
             * take the next choice and say so. */
            RP_WARN("xray", "present: %s; falling back", why);
            cJSON_AddStringToObject(
                q, voi->kind == RP_XR_VOI_LUT ? "voi_lut_rejected" : "window_rejected", why);
            cJSON_DeleteItemFromObject(q, "voi_path");
            return choose_voi(ctx, pp, voi, q, skip | (voi->kind == RP_XR_VOI_LUT ? 1 : 2));
        }
        snprintf(ctx->err, sizeof ctx->err, "present: %s", why);
        return RP_EINVAL;
    }
    return 0;
}

static int present_run(rp_step_ctx *ctx, const void *vp)
{
    const present_params *pp = vp;
    rp_volume *v = ctx->vol;
    const rp_series_info *si = ctx->info;
    const rp_dcm_info *d = si ? si->dcm : NULL;
    cJSON *q = cJSON_CreateObject();
    if (!q)
        return RP_ENOMEM;
    const char *photometric = d ? d->photometric : si ? si->photometric : "";
    if (d && d->samples_per_pixel > 1) {
        snprintf(ctx->err, sizeof ctx->err, "present: %s colour image, grayscale expected",
                 photometric);
        cJSON_Delete(q);
        return RP_EUNSUPPORTED;
    }

    rp_xr_present_params p;
    memset(&p, 0, sizeof p);
    p.modality.kind = RP_XR_MOD_IDENTITY; /* assembly applied it; say what it was */
    if (d && d->has_modality_lut)
        cJSON_AddStringToObject(q, "modality_lut", "Modality LUT Sequence (at assembly)");
    else if (d && d->has_rescale) {
        char buf[96];
        snprintf(buf, sizeof buf, "rescale slope=%g intercept=%g (at assembly)", d->rescale_slope,
                 d->rescale_intercept);
        cJSON_AddStringToObject(q, "modality_lut", buf);
    } else
        cJSON_AddStringToObject(q, "modality_lut", "identity");

    int rc = choose_voi(ctx, pp, &p.voi, q, 0);
    if (rc)
        goto out;
    p.invert = strcasecmp(photometric, "MONOCHROME1") == 0;
    cJSON_AddStringToObject(q, "photometric", photometric[0] ? photometric : "unknown");
    cJSON_AddBoolToObject(q, "inverted", p.invert);

    /* Padding: a mask from assembly wins; else the header value in modality units. */
    const rp_mask *pm = rp_step_ctx_mask(ctx, "padding");
    if (pm && pm->dim[0] == v->dim[0] && pm->dim[1] == v->dim[1] && pm->dim[2] == v->dim[2] &&
        v->dim[3] == 1) {
        p.pad_mask = pm->data;
    } else if (d && d->has_padding_value && !d->has_modality_lut) {
        double s = d->has_rescale ? d->rescale_slope : 1.0;
        double b = d->has_rescale ? d->rescale_intercept : 0.0;
        double lo = d->padding_value, hi = d->has_padding_range ? d->padding_range_limit : lo;
        p.has_padding = 1;
        p.padding_lo = s * lo + b;
        p.padding_hi = s * hi + b;
    }

    /* Undo assembly's MONOCHROME1 inversion (the same omin + omax as rp_dcm_stored_to_float);
     * without a header, assume unsigned stored values without rescale. */
    const size_t nall = rp_volume_nvox(v) * v->dim[3];
    if (p.invert) {
        double k;
        if (d) {
            double smin = d->pixel_representation ? -ldexp(1.0, d->bits_stored - 1) : 0;
            double smax = d->pixel_representation ? ldexp(1.0, d->bits_stored - 1) - 1
                                                  : ldexp(1.0, d->bits_stored) - 1;
            if (d->has_modality_lut)
                k = ldexp(1.0, d->modality_lut.bits > 0 ? d->modality_lut.bits : 16) - 1;
            else if (d->has_rescale)
                k = d->rescale_slope * (smin + smax) + 2 * d->rescale_intercept;
            else
                k = smin + smax;
        } else {
            k = ldexp(1.0, si && si->bits_stored > 0 ? si->bits_stored : 16) - 1;
        }
        p.negate = 1; /* folded into the presentation pass */
        p.negate_k = k;
        cJSON_AddNumberToObject(q, "mono1_undo_constant", k);
    }

    /* The values assembly can produce, for the one-pass table (integers only). */
    if (d && d->bits_stored >= 1 && d->bits_stored <= 20) {
        double smin = d->pixel_representation ? -ldexp(1.0, d->bits_stored - 1) : 0;
        double smax = d->pixel_representation ? ldexp(1.0, d->bits_stored - 1) - 1
                                              : ldexp(1.0, d->bits_stored) - 1;
        double s = 1, b = 0;
        if (d->has_modality_lut) {
            smin = 0;
            smax = ldexp(1.0, d->modality_lut.bits > 0 ? d->modality_lut.bits : 16) - 1;
        } else if (d->has_rescale) {
            s = d->rescale_slope;
            b = d->rescale_intercept;
        }
        if (s == floor(s) && b == floor(b) && s != 0) {
            double a0 = s * smin + b, a1 = s * smax + b;
            p.has_range = 1;
            p.range_lo = a0 < a1 ? a0 : a1;
            p.range_hi = a0 < a1 ? a1 : a0;
        }
    }

    rp_xr_present_report rep;
    rc = rp_xr_present_f32(v->data, nall, &p, &rep);
    if (rc) {
        snprintf(ctx->err, sizeof ctx->err, "present: %s", rp_strerror(rc));
        goto out;
    }
    if (p.voi.kind == RP_XR_VOI_NONE) {
        cJSON_AddNumberToObject(q, "minmax_lo", p.voi.lo);
        cJSON_AddNumberToObject(q, "minmax_hi", p.voi.hi);
    }
    cJSON_AddNumberToObject(q, "input_min", rep.in_min);
    cJSON_AddNumberToObject(q, "input_max", rep.in_max);
    cJSON_AddNumberToObject(q, "padding_pixels", (double)rep.n_padding);
    cJSON_AddStringToObject(q, "evaluation",
                            rep.lut_path == 1   ? "table per stored value"
                            : rep.lut_path == 2 ? "table, formula off it"
                                                : "formula");
    ctx->hu_known = 0;

    /* Remember the source grid so resize/pad can report a map back to source pixels. */
    if (ctx->qc) {
        cJSON_DeleteItemFromObject(ctx->qc, "xray_source_affine");
        cJSON *a = cJSON_AddArrayToObject(ctx->qc, "xray_source_affine");
        for (int r = 0; r < 4 && a; r++)
            for (int c = 0; c < 4; c++)
                cJSON_AddItemToArray(a, cJSON_CreateNumber(v->affine[r][c]));
        cJSON *dims = cJSON_AddArrayToObject(ctx->qc, "xray_source_size");
        if (dims) {
            cJSON_AddItemToArray(dims, cJSON_CreateNumber(v->dim[0]));
            cJSON_AddItemToArray(dims, cJSON_CreateNumber(v->dim[1]));
        }
    }
    RP_INFO("xray", "present voi=%s invert=%d padding=%zu", rp_xr_voi_name(p.voi.kind), p.invert,
            rep.n_padding);
out:
    rp_step_qc_add(ctx, "presentation", q); /* frees q when there is no QC */
    return rc;
}

/* ---------------- clahe ---------------- */

static const char clahe_usage[] = "clahe(clip, tiles[, 8|16]) e.g. clahe(2.0,8) or clahe(2,8x4,16)";

typedef struct clahe_params {
    double clip;
    int tiles_x, tiles_y;
    int bits;
} clahe_params;

/* "8" -> 8x8, "8x4" -> 8 columns, 4 rows. */
static int parse_pair(const char *s, int *a, int *b)
{
    char tmp[128];
    rp_strlcpy(tmp, s, sizeof tmp);
    char *x = strpbrk(tmp, "xX");
    if (!x)
        return rp_arg_int(tmp, a) < 0 ? RP_EINVAL : (*b = *a, 0);
    *x = '\0';
    if (rp_arg_int(tmp, a) < 0 || rp_arg_int(x + 1, b) < 0)
        return RP_EINVAL;
    return 0;
}

static int clahe_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    clahe_params p = {2.0, 8, 8, 8};
    if (a->n > 3)
        return rp_arg_fail(err, errlen, clahe_usage, "too many arguments");
    if (a->n >= 1 && (rp_arg_double(a->arg[0], &p.clip) < 0 || p.clip < 0 || p.clip > 1e4))
        return rp_arg_fail(err, errlen, clahe_usage,
                           "clip '%s' must be a number in [0, 10000]"
                           " (0 = no clipping)",
                           a->arg[0]);
    if (a->n >= 2 && (parse_pair(a->arg[1], &p.tiles_x, &p.tiles_y) < 0 || p.tiles_x < 1 ||
                      p.tiles_y < 1 || p.tiles_x > 256 || p.tiles_y > 256))
        return rp_arg_fail(err, errlen, clahe_usage, "tiles '%s' must be N or NxM, 1..256",
                           a->arg[1]);
    if (a->n >= 3 && (rp_arg_int(a->arg[2], &p.bits) < 0 || (p.bits != 8 && p.bits != 16)))
        return rp_arg_fail(err, errlen, clahe_usage, "bits '%s' must be 8 or 16", a->arg[2]);
    clahe_params *o = malloc(sizeof *o);
    if (!o)
        return RP_ENOMEM;
    *o = p;
    *out = o;
    return 0;
}

static void clahe_describe(const void *vp, cJSON *o)
{
    const clahe_params *p = vp;
    cJSON_AddNumberToObject(o, "clip", p->clip);
    cJSON_AddNumberToObject(o, "tiles_x", p->tiles_x);
    cJSON_AddNumberToObject(o, "tiles_y", p->tiles_y);
    cJSON_AddNumberToObject(o, "bits", p->bits);
    cJSON_AddStringToObject(o, "definition", "OpenCV createCLAHE (per 2-D slice)");
}

static int clahe_run(rp_step_ctx *ctx, const void *vp)
{
    const clahe_params *p = vp;
    rp_volume *v = ctx->vol;
    const int w = v->dim[0], h = v->dim[1];
    const size_t plane = (size_t)w * h, planes = (size_t)v->dim[2] * v->dim[3];
    const size_t n = plane * planes;
    /* Input must already be 0..1 (present, window, normalize(minmax)). A stray value from
     * rounding is clamped, but HU or raw values are a recipe mistake: refused (the count
     * comes from the quantization pass itself, no extra pass over the data). */
    size_t clamped_total = 0;
    for (size_t k = 0; k < planes; k++) {
        size_t c = 0;
        float *pl = v->data + k * plane;
        int rc = rp_xr_clahe_f32(pl, w, h, p->clip, p->tiles_x, p->tiles_y, p->bits,
                                 XR_ROWS_BOTTOM_UP, &c);
        if (rc) {
            snprintf(ctx->err, sizeof ctx->err, "clahe: slice %zu: %s", k, rp_strerror(rc));
            return rc;
        }
        if (c > plane / 100) {
            snprintf(ctx->err, sizeof ctx->err,
                     "clahe: expects values in [0,1] but %.1f%% of slice %zu lie outside; put "
                     "present, window(...) or normalize(minmax) before it",
                     100.0 * c / plane, k);
            return RP_EINVAL;
        }
        clamped_total += c;
    }
    rp_step_qc_number(ctx, "clamped_fraction", (double)clamped_total / n);
    ctx->hu_known = 0;
    return 0;
}

/* ---------------- geometry bookkeeping ---------------- */

/* Record source_px = scale*out + offset for this step and, when present ran, from the
 * original image (via the affines, so steps in between such as crop are included). */
static void note_map(rp_step_ctx *ctx, double sx, double ox, double sy, double oy)
{
    cJSON *s = cJSON_CreateArray(), *o = cJSON_CreateArray();
    if (s && o) {
        cJSON_AddItemToArray(s, cJSON_CreateNumber(sx));
        cJSON_AddItemToArray(s, cJSON_CreateNumber(sy));
        cJSON_AddItemToArray(o, cJSON_CreateNumber(ox));
        cJSON_AddItemToArray(o, cJSON_CreateNumber(oy));
    }
    rp_step_qc_add(ctx, "scale", s);
    rp_step_qc_add(ctx, "offset", o);
    if (!ctx->qc)
        return;
    cJSON *a0 = cJSON_GetObjectItem(ctx->qc, "xray_source_affine");
    if (!cJSON_IsArray(a0) || cJSON_GetArraySize(a0) != 16)
        return;
    double A0[4][4], inv[4][4], M[4][4];
    for (int i = 0; i < 16; i++)
        A0[i / 4][i % 4] = cJSON_GetArrayItem(a0, i)->valuedouble;
    if (rp_mat4_invert((const double(*)[4])A0, inv) < 0)
        return;
    rp_mat4_mul((const double(*)[4])inv, (const double(*)[4])ctx->vol->affine, M);
    if (XR_ROWS_BOTTOM_UP) {
        /* stored row j <-> displayed row H-1-j, for the source and for the output */
        cJSON *sz = cJSON_GetObjectItem(ctx->qc, "xray_source_size");
        double h0 = cJSON_IsArray(sz) && cJSON_GetArraySize(sz) == 2
                        ? cJSON_GetArrayItem(sz, 1)->valuedouble
                        : ctx->vol->dim[1];
        double h1 = ctx->vol->dim[1];
        M[1][3] = (h0 - 1) - M[1][1] * (h1 - 1) - M[1][3];
    }
    cJSON_DeleteItemFromObject(ctx->qc, "pixel_map");
    cJSON *pmap = cJSON_AddObjectToObject(ctx->qc, "pixel_map");
    if (!pmap)
        return;
    cJSON *sc = cJSON_AddArrayToObject(pmap, "scale");
    cJSON *of = cJSON_AddArrayToObject(pmap, "offset");
    for (int i = 0; i < 2 && sc && of; i++) {
        cJSON_AddItemToArray(sc, cJSON_CreateNumber(M[i][i]));
        cJSON_AddItemToArray(of, cJSON_CreateNumber(M[i][3]));
    }
    cJSON_AddStringToObject(pmap, "meaning",
                            "source_px = scale * output_px + offset per axis (x = column, "
                            "y = row; 0-based pixel centres of the image given to present)");
}

/* Masks follow the image: zero margins (pad); for resize, binary masks are area-averaged
 * and kept where at least half covered (thin structures survive shrinking), label masks
 * take the nearest label. Masks on another grid are left alone. */
static int masks_follow(rp_step_ctx *ctx, const rp_volume *old, int ow, int oh, int resize,
                        int offx, int offy)
{
    const int w = old->dim[0], h = old->dim[1], nz = old->dim[2];
    for (int m = 0; m < ctx->n_masks; m++) {
        rp_mask *k = ctx->masks[m];
        if (k->dim[0] != w || k->dim[1] != h || k->dim[2] != nz)
            continue;
        uint8_t *d = calloc((size_t)ow * oh * nz, 1);
        if (!d)
            return RP_ENOMEM;
        for (int z = 0; z < nz; z++) {
            const uint8_t *sp = k->data + (size_t)z * w * h;
            uint8_t *dp = d + (size_t)z * ow * oh;
            int binary = 1;
            for (size_t i = 0; resize && binary && i < (size_t)w * h; i++)
                binary = sp[i] <= 1;
            if (resize && binary) {
                float *a = malloc(sizeof(float) * ((size_t)w * h + (size_t)ow * oh));
                if (!a) {
                    free(d);
                    return RP_ENOMEM;
                }
                float *b = a + (size_t)w * h;
                for (size_t i = 0; i < (size_t)w * h; i++)
                    a[i] = sp[i];
                int rc = rp_xr_resize_f32(a, w, h, b, ow, oh, RP_XR_RESIZE_AREA);
                for (size_t i = 0; rc == 0 && i < (size_t)ow * oh; i++)
                    dp[i] = b[i] >= 0.5f - 1e-6f;
                free(a);
                if (rc) {
                    free(d);
                    return rc;
                }
            } else if (resize) {
                for (int y = 0; y < oh; y++) {
                    int sy = (int)floor((y + 0.5) * h / oh);
                    sy = sy < h ? sy : h - 1;
                    for (int x = 0; x < ow; x++) {
                        int sx = (int)floor((x + 0.5) * w / ow);
                        dp[(size_t)y * ow + x] = sp[(size_t)sy * w + (sx < w ? sx : w - 1)];
                    }
                }
            } else {
                for (int y = 0; y < h; y++)
                    memcpy(dp + (size_t)(y + offy) * ow + offx, sp + (size_t)y * w, w);
            }
        }
        free(k->data);
        k->data = d;
        k->dim[0] = ow;
        k->dim[1] = oh;
        memcpy(k->affine, ctx->vol->affine, sizeof k->affine);
    }
    return 0;
}

/* ---------------- resize ---------------- */

static const char resize_usage[] =
    "resize(size[, keep_aspect|stretch[, area|linear]]), size N or WxH";
static const char *const resize_methods[] = {"area", "linear", NULL};

typedef struct resize_params {
    int w, h;
    int keep_aspect;
    int method; /* rp_xr_resize_method */
} resize_params;

static int resize_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    static const char *const modes[] = {"stretch", "keep_aspect", NULL};
    resize_params p = {0, 0, 1, RP_XR_RESIZE_AREA};
    if (a->n < 1 || a->n > 3)
        return rp_arg_fail(err, errlen, resize_usage, "expected 1 to 3 arguments");
    if (parse_pair(a->arg[0], &p.w, &p.h) < 0 || p.w < 1 || p.h < 1 || p.w > 65535 || p.h > 65535)
        return rp_arg_fail(err, errlen, resize_usage, "size '%s' must be N or WxH, 1..65535",
                           a->arg[0]);
    if (a->n >= 2 && (p.keep_aspect = rp_arg_word(a->arg[1], modes)) < 0)
        return rp_arg_fail(err, errlen, resize_usage, "unknown mode '%s'", a->arg[1]);
    if (a->n >= 3 && (p.method = rp_arg_word(a->arg[2], resize_methods)) < 0)
        return rp_arg_fail(err, errlen, resize_usage, "unknown method '%s'", a->arg[2]);
    resize_params *o = malloc(sizeof *o);
    if (!o)
        return RP_ENOMEM;
    *o = p;
    *out = o;
    return 0;
}

static void resize_describe(const void *vp, cJSON *o)
{
    const resize_params *p = vp;
    cJSON_AddNumberToObject(o, "width", p->w);
    cJSON_AddNumberToObject(o, "height", p->h);
    cJSON_AddBoolToObject(o, "keep_aspect", p->keep_aspect);
    cJSON_AddStringToObject(o, "method",
                            p->method == RP_XR_RESIZE_AREA ? "area (cv2.INTER_AREA)"
                                                           : "linear (cv2.INTER_LINEAR)");
}

static int resize_run(rp_step_ctx *ctx, const void *vp)
{
    const resize_params *p = vp;
    rp_volume *v = ctx->vol;
    const int w = v->dim[0], h = v->dim[1];
    int ow = p->w, oh = p->h;
    if (p->keep_aspect) {
        /* Fit inside W x H: the limiting axis takes its full size, the other is rounded. */
        if ((double)p->w / w <= (double)p->h / h)
            oh = (int)lround((double)h * p->w / w);
        else
            ow = (int)lround((double)w * p->h / h);
        if (ow < 1)
            ow = 1;
        if (oh < 1)
            oh = 1;
    }
    if (ow == w && oh == h) { /* already the size: nothing to do, nothing to allocate */
        note_map(ctx, 1.0, 0.0, 1.0, 0.0);
        return 0;
    }
    rp_volume *o = rp_xr_resize_volume_new(v, ow, oh, (rp_xr_resize_method)p->method);
    if (!o) {
        snprintf(ctx->err, sizeof ctx->err, "resize: %dx%d -> %dx%d: out of memory", w, h, ow, oh);
        return RP_ENOMEM;
    }
    rp_volume *old = ctx->vol;
    ctx->vol = o;
    int rc = masks_follow(ctx, old, ow, oh, 1, 0, 0);
    rp_volume_free(old);
    if (rc) {
        snprintf(ctx->err, sizeof ctx->err, "resize: out of memory for masks");
        return rc;
    }
    double sx = (double)w / ow, sy = (double)h / oh;
    note_map(ctx, sx, (sx - 1) / 2, sy, (sy - 1) / 2);
    return 0;
}

/* ---------------- pad ---------------- */

static const char pad_usage[] = "pad(size[, value]), size N (square) or WxH";

typedef struct pad_params {
    int w, h;
    double value;
} pad_params;

static int pad_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    pad_params p = {0, 0, 0.0};
    if (a->n < 1 || a->n > 2)
        return rp_arg_fail(err, errlen, pad_usage, "expected 1 or 2 arguments");
    if (parse_pair(a->arg[0], &p.w, &p.h) < 0 || p.w < 1 || p.h < 1 || p.w > 65535 || p.h > 65535)
        return rp_arg_fail(err, errlen, pad_usage, "size '%s' must be N or WxH, 1..65535",
                           a->arg[0]);
    if (a->n == 2 && rp_arg_double(a->arg[1], &p.value) < 0)
        return rp_arg_fail(err, errlen, pad_usage, "value '%s' is not a number", a->arg[1]);
    pad_params *o = malloc(sizeof *o);
    if (!o)
        return RP_ENOMEM;
    *o = p;
    *out = o;
    return 0;
}

static void pad_describe(const void *vp, cJSON *o)
{
    const pad_params *p = vp;
    cJSON_AddNumberToObject(o, "width", p->w);
    cJSON_AddNumberToObject(o, "height", p->h);
    cJSON_AddNumberToObject(o, "value", p->value);
    cJSON_AddStringToObject(o, "placement", "centred (extra pixel right/bottom)");
}

static int pad_run(rp_step_ctx *ctx, const void *vp)
{
    const pad_params *p = vp;
    rp_volume *v = ctx->vol;
    const int w = v->dim[0], h = v->dim[1];
    if (w > p->w || h > p->h) {
        snprintf(ctx->err, sizeof ctx->err,
                 "pad: image is %dx%d, larger than %dx%d; put resize(...) before pad", w, h, p->w,
                 p->h);
        return RP_EINVAL;
    }
    /* Centred; an odd margin leaves the extra pixel right and at the displayed bottom. */
    if (w == p->w && h == p->h) {
        note_map(ctx, 1.0, 0.0, 1.0, 0.0);
        return 0;
    }
    const int offx = (p->w - w) / 2;
    const int offy = XR_ROWS_BOTTOM_UP ? (p->h - h) - (p->h - h) / 2 : (p->h - h) / 2;
    rp_volume *o = rp_xr_pad_volume_new(v, p->w, p->h, offx, offy, (float)p->value);
    if (!o) {
        snprintf(ctx->err, sizeof ctx->err, "pad: out of memory");
        return RP_ENOMEM;
    }
    rp_volume *old = ctx->vol;
    ctx->vol = o;
    int rc = masks_follow(ctx, old, p->w, p->h, 0, offx, offy);
    rp_volume_free(old);
    if (rc) {
        snprintf(ctx->err, sizeof ctx->err, "pad: out of memory for masks");
        return rc;
    }
    note_map(ctx, 1.0, -offx, 1.0, -((p->h - h) / 2));
    return 0;
}

/* ---------------- png ---------------- */

static const char png_usage[] = "png or png(8|16): write <stem>.png (0..1 -> 0..255|65535)";

static int png_parse(const rp_step_args *a, void **out, char *err, size_t errlen)
{
    int bits = 8;
    if (a->n > 1)
        return rp_arg_fail(err, errlen, png_usage, "too many arguments");
    if (a->n == 1 && (rp_arg_int(a->arg[0], &bits) < 0 || (bits != 8 && bits != 16)))
        return rp_arg_fail(err, errlen, png_usage, "bit depth '%s' must be 8 or 16", a->arg[0]);
    int *o = malloc(sizeof *o);
    if (!o)
        return RP_ENOMEM;
    *o = bits;
    *out = o;
    return 0;
}

static void png_describe(const void *vp, cJSON *o)
{
    cJSON_AddNumberToObject(o, "bits", *(const int *)vp);
    cJSON_AddStringToObject(o, "mapping", "clamp to [0,1], round(x * (2^bits - 1)), rows as DICOM");
}

/* Writes the volume as it is at this point of the recipe (one PNG per slice of channel 0:
 * <stem>.png for 2-D, <stem>_zNNNN.png otherwise); the volume is not changed. */
static int png_run(rp_step_ctx *ctx, const void *vp)
{
    const int bits = *(const int *)vp;
    const rp_volume *v = ctx->vol;
    if (!ctx->out_dir || !ctx->out_stem) {
        rp_step_qc_add(ctx, "note", cJSON_CreateString("no output directory: nothing written"));
        return 0;
    }
    if (!ctx->writers || !ctx->writers->png) {
        snprintf(ctx->err, sizeof ctx->err, "png: no file writer");
        return RP_EUNSUPPORTED;
    }
    const rp_step_writers *wr = ctx->writers;
    const size_t n = (size_t)v->dim[0] * v->dim[1] * v->dim[2];
    size_t outside = 0;
    for (size_t i = 0; i < n; i++)
        outside += !(v->data[i] >= 0.0f && v->data[i] <= 1.0f);
    rp_step_qc_number(ctx, "clamped_fraction", (double)outside / n);
    /* Slices are independent files: compress them in parallel, list them in order. */
    const int nz = v->dim[2];
    int failed = 0, fail_rc = 0, fail_z = -1;
#pragma omp parallel for if (nz > 1) schedule(dynamic, 1)
    for (int z = 0; z < nz; z++) {
        char path[1400];
        if (nz == 1)
            snprintf(path, sizeof path, "%s/%s.png", ctx->out_dir, ctx->out_stem);
        else
            snprintf(path, sizeof path, "%s/%s_z%04d.png", ctx->out_dir, ctx->out_stem, z);
        void *buf = malloc((size_t)v->dim[0] * v->dim[1] * (bits / 8));
        int rc = buf ? rp_xr_quantize_plane(v, z, bits, buf) : RP_ENOMEM;
        if (rc == 0)
            rc = wr->png(path, buf, v->dim[0], v->dim[1], 1, bits);
        free(buf);
        if (rc) {
#pragma omp critical(rp_xr_png_fail)
            if (!failed || z < fail_z) {
                failed = 1;
                fail_rc = rc;
                fail_z = z;
            }
        }
    }
    if (failed) {
        snprintf(ctx->err, sizeof ctx->err, "png: cannot write slice %d under %.200s: %s", fail_z,
                 ctx->out_dir, rp_strerror(fail_rc));
        return fail_rc;
    }
    for (int z = 0; z < nz && ctx->extra_outputs; z++) {
        char path[1400];
        if (nz == 1)
            snprintf(path, sizeof path, "%s/%s.png", ctx->out_dir, ctx->out_stem);
        else
            snprintf(path, sizeof path, "%s/%s_z%04d.png", ctx->out_dir, ctx->out_stem, z);
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "kind", "png");
        cJSON_AddStringToObject(e, "path", path);
        cJSON_AddNumberToObject(e, "bits", bits);
        cJSON_AddItemToArray(ctx->extra_outputs, e);
    }
    return 0;
}

const rp_step_def rp_steps_xr[] = {
    {"present", present_usage, present_parse, present_run, NULL, present_describe, 0},
    {"clahe", clahe_usage, clahe_parse, clahe_run, NULL, clahe_describe, 0},
    {"resize", resize_usage, resize_parse, resize_run, NULL, resize_describe, 0},
    {"pad", pad_usage, pad_parse, pad_run, NULL, pad_describe, 0},
    {"png", png_usage, png_parse, png_run, NULL, png_describe, 0},
    {0},
};
