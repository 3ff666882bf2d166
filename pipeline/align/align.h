/*
 * pipeline/align/align.h — midline alignment of head CT and brain MR: estimate the midsagittal
 * plane by left-right symmetry, then rotate and resample so that the plane is vertical and
 * centred in the axial slices.
 *
 * Contract:
 *  - The grid frame: u, v, w are the unit directions of the voxel axes nearest to the patient's
 *    left-right, anterior-posterior and superior-inferior axes (orthonormalised). The plane has
 *    normal n = G·(cos ψ cos θ, sin ψ cos θ, −sin θ), G = [u v w]: ψ (yaw) is the head's turn in
 *    the axial plane, θ (roll) its tilt in the coronal plane, and offset d = n·p for its points.
 *  - Estimate: the plane maximising the normalised correlation between the volume and its
 *    mirror image across the plane, over the head (CT: HU > −200; MR: above Otsu): an
 *    exhaustive search on a 6 mm copy (ψ in ±max_deg, θ in ±max_deg/2, every 3°; d within
 *    20 mm of the head centroid), then a pattern search from the best four candidates on a
 *    copy at 2 mm (or the slice spacing when coarser). Roll is held at 0 for volumes under
 *    40 mm tall and for CT with slices over 2.5 mm (roll_estimated). Intensities: CT clipped to [−20, 120] HU (brain and the inner
 *    skull edge), MR to its 1–99th percentiles.
 *  - Reliable when: a head is found (>= 20 cm³), the symmetry score (correlation at the plane)
 *    is >= min_score, the estimate is inside the search range (not on its edge), and the score
 *    drops by >= 0.02 when the plane turns 10° away (a distinct optimum). Otherwise
 *    rp_align_midline() still returns 0 with reliable = 0 and the reason in `why`.
 *  - The result maps the ALIGNED world to the input world: p_in = M·p_out; M turns u onto n
 *    about the head's point on the plane and moves that point to the grid's centre along u, so
 *    the plane becomes u·p = u·g (g: the grid centre); the other two coordinates of the head
 *    centre stay. rp_align_apply() resamples on the same grid (0 outside for MR, −1024 HU
 *    equivalent for CT: the volume's minimum).
 *  - Deterministic: no randomness; sums in a fixed order.
 */
#ifndef RP_PIPELINE_ALIGN_H
#define RP_PIPELINE_ALIGN_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/volume/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_align_params {
    double max_deg;    /* yaw search range ± (30); roll ± max_deg/2 */
    double min_score;  /* least symmetry correlation for a reliable estimate (0.5) */
    int ct;            /* 1: values are CT (HU = value * hu_scale + hu_offset) */
    double hu_scale, hu_offset; /* 1, 0 */
} rp_align_params;

void rp_align_defaults(rp_align_params *p);

typedef struct rp_align_result {
    int reliable;
    double yaw_deg, roll_deg; /* ψ, θ */
    double offset_mm;         /* signed distance of the plane from the grid centre along n */
    double score;             /* symmetry correlation at the plane */
    double normal[3];         /* n (RAS) */
    double point[3];          /* the head centre projected on the plane (RAS mm) */
    double matrix[4][4];      /* M: aligned world -> input world */
    double head_ml;
    int roll_estimated;       /* 0: roll held at 0 (volume under 40 mm tall, or CT slices over
                                 2.5 mm: bone partial volume biases it) */
} rp_align_result;

/* Estimate the midsagittal plane of channel 0 of v. 0 (see res->reliable and why) or RP_EINVAL
 * (not a 3-D volume of at least 8x8x1 voxels), RP_ENOMEM. */
int rp_align_midline(const rp_volume *v, const rp_align_params *p, rp_align_result *res,
                     char *why, size_t whylen);

/* New volume: channel 0 of v resampled on its own grid through res->matrix (order 0 or 1;
 * outside: v's minimum). */
int rp_align_apply(const rp_volume *v, const rp_align_result *res, int order, rp_volume **out);

/* QC picture (RGB, top row first): the axial slice through the head centre before (the
 * estimated midline in red) and after (the grid's vertical centre line in green), side by side.
 * *pix is new (w*h*3 bytes). */
int rp_align_qc_picture(const rp_volume *before, const rp_volume *after, const rp_align_result *r,
                        const rp_align_params *p, uint8_t **pix, int *w, int *h);

#ifdef __cplusplus
}
#endif
#endif
