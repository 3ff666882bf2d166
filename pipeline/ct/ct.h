/*
 * pipeline/ct/ct.h — CT masks from intensity thresholds: body, lungs, metal. Library rp_ct;
 * depends on rp_volume only.
 *
 * Contract:
 *  - Every kernel reads a single-channel rp_volume (RP_EINVAL otherwise) and fills a mask the
 *    caller allocated (nx*ny*nz bytes, 0 or 1) on the same grid; the *_m forms fill an rp_mask
 *    on that grid instead, which they leave packed in bits (volume.h): the same voxels, without
 *    the 45 MB of bytes a 1 mm chest CT's mask would be.
 *  - Thresholds are given in the volume's current value units. The recipe steps that use
 *    these (bodymask, lungmask, metal in pipeline/recipe/steps_ct.c) state them in Hounsfield
 *    units and convert through the linear steps that ran before, so the kernels need not
 *    know about recipes.
 *  - Pure functions (same input, same bytes); OpenMP inside; 0 or RP_E*.
 *
 *  body:  value > threshold, opening (1 voxel, per axis of at least 3 voxels) to detach the
 *         table and blankets, the largest 3-D component, holes filled slice by slice in the
 *         axial plane.
 *  lungs: inside the body, value < threshold; 3-D components (6-connected) touching the
 *         in-plane border are outside air; keep the largest component and the second if it
 *         is >= 20 % of the first (the two lungs; they are often one component via the
 *         trachea), each >= min_ml; with `airway` the trachea and main bronchi are then
 *         tracked from the top of the chest down to the carina and the hila and taken out
 *         (airway.c; the selection is made again, the lungs may now be two); then closing
 *         (closing_mm) and axial hole filling of holes
 *         up to max_hole_mm2, which puts vessels and nodules back into the lung but keeps the
 *         mediastinum out where the lungs touch.
 *  metal: value > threshold, components of at least min_mm3, each reported with its volume
 *         and centroid in world (RAS) mm.
 */
#ifndef RP_PIPELINE_CT_H
#define RP_PIPELINE_CT_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/volume/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Volume of one voxel in ml (|det| of the affine's 3x3 / 1000). */
double rp_ct_voxel_ml(const rp_volume *v);

/* Body mask into `mask`. */
int rp_ct_body_mask(const rp_volume *v, float threshold, uint8_t *mask);
int rp_ct_body_mask_m(const rp_volume *v, float threshold, rp_mask *m);

typedef struct rp_ct_lung_params {
    float threshold;     /* air below it, current units (the body uses it too when computed) */
    double min_ml;       /* smallest component kept */
    double closing_mm;   /* closing radius */
    double max_hole_mm2; /* largest axial hole filled (0: any) */
    int airway;          /* 1: trachea and main bronchi taken out of the mask */
} rp_ct_lung_params;

/* What the airway removal found (all zero when it did not run). */
typedef struct rp_ct_airway {
    int found;            /* 1: a trachea was found and removed */
    double removed_ml;    /* volume taken out */
    int top_slice;        /* first (most superior) axial slice index with trachea */
    int carina_slice;     /* axial slice index of the carina (-1: not reached) */
    double carina_ras[3]; /* world mm of the carina (centroid of the last undivided slice) */
} rp_ct_airway;

/* Lung mask into `mask`. body (may be NULL: computed with p->threshold) is the body mask on
 * the same grid. *n_kept (may be NULL) gets the number of components kept (0, 1 or 2),
 * *airway (may be NULL) what the airway removal found. */
int rp_ct_lung_mask(const rp_volume *v, const uint8_t *body, const rp_ct_lung_params *p,
                    uint8_t *mask, int *n_kept, rp_ct_airway *airway);
/* The same into m; body (may be NULL) in either form. */
int rp_ct_lung_mask_m(const rp_volume *v, const rp_mask *body, const rp_ct_lung_params *p,
                      rp_mask *m, int *n_kept, rp_ct_airway *airway);

/* One metal component. */
typedef struct rp_ct_metal_part {
    double volume_ml;
    double centroid_ras[3]; /* world mm (affine applied to the mean voxel index) */
} rp_ct_metal_part;

/* Metal mask into `mask`; *parts is a new array of *n_parts components in label order
 * (caller frees; NULL when none). */
int rp_ct_metal_mask(const rp_volume *v, float threshold, double min_mm3, uint8_t *mask,
                     rp_ct_metal_part **parts, int *n_parts);
int rp_ct_metal_mask_m(const rp_volume *v, float threshold, double min_mm3, rp_mask *m,
                       rp_ct_metal_part **parts, int *n_parts);

#ifdef __cplusplus
}
#endif
#endif
