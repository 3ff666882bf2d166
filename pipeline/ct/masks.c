/*
 * pipeline/ct/masks.c — CT body, lung and metal masks (contract and method in ct.h).
 *
 * All three run on bit-packed volumes (ctmask_internal.h): one threshold pass over the float
 * volume, morphology and components on 64 voxels per word, one unpacking into the uint8 mask.
 * The operations are those of the byte kernels in pipeline/volume/morph.c, voxel for voxel.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/ct/ct.h"
#include "pipeline/ct/ctmask_internal.h"

double rp_ct_voxel_ml(const rp_volume *v)
{
    const double(*a)[4] = v->affine;
    double det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) -
                 a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
                 a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
    return fabs(det) / 1000.0;
}

static void radius_vox(const rp_volume *v, double mm, int r[3])
{
    for (int a = 0; a < 3; a++)
        r[a] = v->dim[a] > 1 && v->spacing[a] > 0 ? (int)floor(mm / v->spacing[a] + 0.5) : 0;
}

/* body = largest component of (value > thr) after a 1-voxel opening, filled per axial slice */
static int body_bits(const rp_volume *v, float thr, rp_bits *out)
{
    rp_bits_threshold(out, v->data, thr, RP_BITS_GT, NULL);
    int r1[3] = {1, 1, 1};
    for (int a = 0; a < 3; a++)
        if (v->dim[a] < 3)
            r1[a] = 0;
    int rc;
    if ((rc = rp_bits_erode(out, r1)) != 0 || (rc = rp_bits_dilate(out, r1)) != 0)
        return rc;
    rp_bcc *cc;
    if ((rc = rp_bcc_label(out, &cc)) != 0)
        return rc;
    int best = -1;
    for (int c = 0; c < rp_bcc_count(cc); c++)
        if (best < 0 || rp_bcc_get(cc, c)->voxels > rp_bcc_get(cc, best)->voxels)
            best = c;
    uint8_t *keep = calloc((size_t)rp_bcc_count(cc) + 1, 1);
    if (!keep) {
        rp_bcc_free(cc);
        return RP_ENOMEM;
    }
    if (best >= 0)
        keep[best] = 1;
    rp_bcc_paint(cc, keep, out);
    free(keep);
    rp_bcc_free(cc);
    return rp_bits_fill_holes_2d(out, rp_axial_axis(v->affine), 0);
}

/* The result's words become the packed mask's (no copy); b keeps only its scratch. */
static void hand_over(rp_bits *b, rp_mask *m)
{
    free(m->data);
    free(m->bits);
    m->data = NULL;
    m->bits = b->w;
    m->wpr = b->wpr;
    b->w = NULL;
}

static int grid_ok(const rp_volume *v, const rp_mask *m)
{
    return v && m && v->dim[3] == 1 && memcmp(v->dim, m->dim, sizeof m->dim) == 0;
}

/* A kernel's result b (when rc is 0) to the caller: its words handed to the mask m, or
 * expanded into the bytes md. b is freed either way; returns rc. */
static int deliver(int rc, rp_bits *b, rp_mask *m, uint8_t *md)
{
    if (!rc) {
        if (m)
            hand_over(b, m);
        else
            rp_bits_to_bytes(b, md);
    }
    rp_bits_free(b);
    return rc;
}

static int body_to(const rp_volume *v, float thr, rp_mask *m, uint8_t *md)
{
    rp_bits b;
    if (rp_bits_init(&b, v->dim))
        return RP_ENOMEM;
    return deliver(body_bits(v, thr, &b), &b, m, md);
}

int rp_ct_body_mask_m(const rp_volume *v, float thr, rp_mask *m)
{
    return grid_ok(v, m) ? body_to(v, thr, m, NULL) : RP_EINVAL;
}

int rp_ct_body_mask(const rp_volume *v, float thr, uint8_t *m)
{
    return v && m && v->dim[3] == 1 ? body_to(v, thr, NULL, m) : RP_EINVAL;
}

/* Keep the largest air component that does not touch the in-plane border and the second
 * when it is >= 20 % of the first, each >= min_ml: lung becomes their union. Returns how
 * many were kept (0..2) or a negative RP_E*. */
static int select_lungs(rp_bits *lung, int inplane_border, double vml, double min_ml)
{
    rp_bcc *cc;
    int rc = rp_bcc_label(lung, &cc);
    if (rc)
        return rc;
    int nc = rp_bcc_count(cc);
    uint8_t *keep = calloc((size_t)nc + 1, 1);
    if (!keep) {
        rp_bcc_free(cc);
        return RP_ENOMEM;
    }
    int first = -1, second = -1;
    for (int c = 0; c < nc; c++) {
        const rp_cc_comp *k = rp_bcc_get(cc, c);
        if (k->border & inplane_border)
            continue;
        if ((double)k->voxels * vml < min_ml)
            continue;
        if (first < 0 || k->voxels > rp_bcc_get(cc, first)->voxels) {
            second = first;
            first = c;
        } else if (second < 0 || k->voxels > rp_bcc_get(cc, second)->voxels) {
            second = c;
        }
    }
    int kept = 0;
    if (first >= 0) {
        keep[first] = 1;
        kept = 1;
        if (second >= 0 && rp_bcc_get(cc, second)->voxels >= 0.2 * rp_bcc_get(cc, first)->voxels) {
            keep[second] = 1;
            kept = 2;
        }
    }
    rp_bcc_paint(cc, keep, lung);
    free(keep);
    rp_bcc_free(cc);
    return kept;
}

/* The lung mask into lung (initialised); body_mask (bytes) or body_packed (words of a packed
 * mask, borrowed) or neither (computed). */
static int lung_bits(const rp_volume *v, const uint8_t *body_mask, const uint64_t *body_packed,
                     const rp_ct_lung_params *p, rp_bits *lung_out, int *n_kept,
                     rp_ct_airway *airway)
{
    if (airway)
        memset(airway, 0, sizeof *airway);
    rp_bits body = {0}, lung = *lung_out;
    const rp_bits *bodyp = &body;
    rp_bits borrowed;
    int rc = 0;
    if (body_packed) {
        borrowed = (rp_bits){.nx = v->dim[0],
                             .ny = v->dim[1],
                             .nz = v->dim[2],
                             .wpr = (v->dim[0] + 63) / 64,
                             .w = (uint64_t *)body_packed};
        bodyp = &borrowed;
    } else if (rp_bits_init(&body, v->dim)) {
        rc = RP_ENOMEM;
        goto out;
    } else if (body_mask) {
        rp_bits_from_bytes(&body, body_mask);
    } else if ((rc = body_bits(v, p->threshold, &body)) != 0) {
        goto out;
    }
    rp_bits_threshold(&lung, v->data, p->threshold, RP_BITS_LT, bodyp);
    int axial = rp_axial_axis(v->affine);
    int inplane_border = 7 & ~(1 << axial);
    double vml = rp_ct_voxel_ml(v);
    int kept = select_lungs(&lung, inplane_border, vml, p->min_ml);
    if (kept < 0) {
        rc = kept;
        goto out;
    }
    if (p->airway && kept > 0) {
        rp_airway_result aw = {0};
        if ((rc = rp_airway_remove(&lung, bodyp, axial, v->affine, v->spacing, &aw)) != 0)
            goto out;
        /* without the trachea the lungs may be two components, and bronchial pieces left
         * behind are small ones */
        if (aw.found && (kept = select_lungs(&lung, inplane_border, vml, p->min_ml)) < 0) {
            rc = kept;
            goto out;
        }
        if (airway) {
            airway->found = aw.found;
            airway->removed_ml = (double)aw.voxels * vml;
            airway->top_slice = aw.top_slice;
            airway->carina_slice = aw.carina_slice;
            memcpy(airway->carina_ras, aw.carina_mm, sizeof airway->carina_ras);
        }
    }
    int r[3];
    radius_vox(v, p->closing_mm, r);
    if ((rc = rp_bits_dilate(&lung, r)) != 0 || (rc = rp_bits_erode(&lung, r)) != 0)
        goto out;
    /* vessels and nodules are small holes; the mediastinum, enclosed where the lungs touch
     * in front of and behind it, is a large one and stays out */
    double px_mm2 = 1;
    for (int a = 0; a < 3; a++)
        if (a != axial)
            px_mm2 *= v->spacing[a];
    long max_px = p->max_hole_mm2 > 0 ? (long)(p->max_hole_mm2 / px_mm2) + 1 : 0;
    if ((rc = rp_bits_fill_holes_2d(&lung, axial, max_px)) != 0)
        goto out;
    if (n_kept)
        *n_kept = kept;
out:
    rp_bits_free(&body);
    *lung_out = lung; /* the passes may have swapped its words with the scratch */
    return rc;
}

int rp_ct_lung_mask(const rp_volume *v, const uint8_t *body_mask, const rp_ct_lung_params *p,
                    uint8_t *md, int *n_kept, rp_ct_airway *airway)
{
    if (!v || !p || !md || v->dim[3] != 1)
        return RP_EINVAL;
    rp_bits lung;
    if (rp_bits_init(&lung, v->dim))
        return RP_ENOMEM;
    return deliver(lung_bits(v, body_mask, NULL, p, &lung, n_kept, airway), &lung, NULL, md);
}

int rp_ct_lung_mask_m(const rp_volume *v, const rp_mask *body, const rp_ct_lung_params *p,
                      rp_mask *m, int *n_kept, rp_ct_airway *airway)
{
    if (!p || !grid_ok(v, m) || (body && memcmp(body->dim, v->dim, sizeof body->dim) != 0))
        return RP_EINVAL;
    rp_bits lung;
    if (rp_bits_init(&lung, v->dim))
        return RP_ENOMEM;
    return deliver(lung_bits(v, body ? body->data : NULL, body && !body->data ? body->bits : NULL,
                             p, &lung, n_kept, airway),
                   &lung, m, NULL);
}

/* The metal mask into b (initialised; left empty when no component is kept). */
static int metal_bits(const rp_volume *v, float thr, double min_mm3, rp_bits *b,
                      rp_ct_metal_part **parts, int *n_parts)
{
    rp_bits_threshold(b, v->data, thr, RP_BITS_GT, NULL);
    rp_bcc *cc;
    int rc;
    if ((rc = rp_bcc_label(b, &cc)) != 0)
        return rc;
    int nc = rp_bcc_count(cc);
    uint8_t *keep = calloc((size_t)nc + 1, 1);
    rp_ct_metal_part *list = calloc((size_t)nc + 1, sizeof *list);
    if (!keep || !list) {
        free(keep);
        free(list);
        rp_bcc_free(cc);
        return RP_ENOMEM;
    }
    double vml = rp_ct_voxel_ml(v);
    int count = 0;
    for (int c = 0; c < nc; c++) {
        const rp_cc_comp *k = rp_bcc_get(cc, c);
        double ml = (double)k->voxels * vml;
        if (ml * 1000.0 < min_mm3)
            continue;
        keep[c] = 1;
        double ijk[3] = {k->sum[0] / k->voxels, k->sum[1] / k->voxels, k->sum[2] / k->voxels};
        rp_ct_metal_part *mp = &list[count++];
        mp->volume_ml = ml;
        for (int r = 0; r < 3; r++)
            mp->centroid_ras[r] = v->affine[r][0] * ijk[0] + v->affine[r][1] * ijk[1] +
                                  v->affine[r][2] * ijk[2] + v->affine[r][3];
    }
    /* paint clears b first: no component kept leaves it empty */
    rp_bcc_paint(cc, keep, b);
    free(keep);
    rp_bcc_free(cc);
    if (count == 0) {
        free(list);
        list = NULL;
    }
    *parts = list;
    *n_parts = count;
    return 0;
}

int rp_ct_metal_mask(const rp_volume *v, float thr, double min_mm3, uint8_t *md,
                     rp_ct_metal_part **parts, int *n_parts)
{
    *parts = NULL;
    *n_parts = 0;
    if (!v || !md || v->dim[3] != 1)
        return RP_EINVAL;
    rp_bits b;
    if (rp_bits_init(&b, v->dim))
        return RP_ENOMEM;
    int rc = metal_bits(v, thr, min_mm3, &b, parts, n_parts);
    if (!rc) {
        if (*n_parts)
            rp_bits_to_bytes(&b, md);
        else
            rp_bytes_zero(md, rp_volume_nvox(v));
    }
    rp_bits_free(&b);
    return rc;
}

int rp_ct_metal_mask_m(const rp_volume *v, float thr, double min_mm3, rp_mask *m,
                       rp_ct_metal_part **parts, int *n_parts)
{
    *parts = NULL;
    *n_parts = 0;
    if (!grid_ok(v, m))
        return RP_EINVAL;
    rp_bits b;
    if (rp_bits_init(&b, v->dim))
        return RP_ENOMEM;
    return deliver(metal_bits(v, thr, min_mm3, &b, parts, n_parts), &b, m, NULL);
}
