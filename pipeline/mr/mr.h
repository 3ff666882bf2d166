/*
 * pipeline/mr/mr.h — MR kernels: foreground / head masks, N4 bias-field correction, White
 * Stripe, Nyúl–Udupa standardisation, multi-sequence fusion and sequence matching. Library
 * rp_mr; depends on rp_volume and cJSON (the Nyúl model file).
 *
 * Contract:
 *  - Every kernel works on rp_volume (float32, x fastest, see volume.h), reads only channel 0
 *    unless it says otherwise, and returns 0 or a negative RP_E* code; where a reason helps a
 *    person, it is written into `err` (may be NULL) and logged once under module "mr".
 *  - Kernels are deterministic: same input and parameters give the same bytes, whatever the
 *    number of OpenMP threads (reductions are done per slice and summed in a fixed order).
 *  - Functions that return a new volume/mask say so; the caller frees it.
 *  - The recipe steps built on these (headmask, foreground, n4, whitestripe, nyul, fuse) live
 *    in pipeline/recipe/steps_mr.c; nothing here knows about steps or recipes, and nothing
 *    here writes images (the nnU-Net layout writer is rp_nifti_write_nnunet() in
 *    pipeline/write/write.h).
 */
#ifndef RP_PIPELINE_MR_H
#define RP_PIPELINE_MR_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/volume/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- foreground / head mask (mrmask.c) ---------------------------------------------- */

/* Otsu threshold of the `n` values (only where mask[i] != 0 when mask is non-NULL) over a
 * `bins`-bin histogram spanning [min, 99.9th percentile] (bright outliers do not squash the
 * histogram). RP_EINVAL when fewer than 2 distinct values. */
int rp_mr_otsu(const float *v, const uint8_t *mask, size_t n, int bins, double *thr);

typedef struct rp_mr_fg_params {
    double threshold_scale; /* threshold = scale * Otsu (1.0) */
    double open_mm;         /* opening radius, cuts thin bridges (0: off) */
    double close_mm;        /* closing radius before hole filling (head: 6, foreground: 2) */
    int fill_holes;         /* fill enclosed holes in 3-D and per slice (1) */
} rp_mr_fg_params;

void rp_mr_fg_defaults(rp_mr_fg_params *p, int head);
/* Otsu (on log(1+v-min)) + opening + closing + largest 6-connected component + hole filling.
 * Returns a new mask named `name` on v's grid (caller frees). */
int rp_mr_foreground(const rp_volume *v, const rp_mr_fg_params *p, const char *name, rp_mask **out,
                     char *err, size_t errlen);

/* ---- N4 (n4.c) ------------------------------------------------------------------------ */

#define RP_N4_MAX_LEVELS 8

typedef struct rp_n4_params {
    int shrink;                       /* shrink factor for the fit (4) */
    int levels;                       /* fitting levels; mesh doubles each level (4) */
    int iterations[RP_N4_MAX_LEVELS]; /* maximum iterations per level (50 each) */
    double spline_mm;                 /* B-spline distance at level 0 (200); <=0: use
                                         control_points */
    int control_points;               /* control points per axis at level 0 (4) when
                                         spline_mm <= 0; must be >= 4 (cubic) */
    double convergence;               /* stop a level when CV(exp(f_new - f_old)) < this */
    int bins;                         /* histogram bins (200) */
    double fwhm;                      /* FWHM of the Gaussian bias model, log units (0.15) */
    double wiener;                    /* Wiener filter noise (0.01) */
} rp_n4_params;

typedef struct rp_n4_report {
    int levels;
    int iterations[RP_N4_MAX_LEVELS];     /* iterations run per level */
    double convergence[RP_N4_MAX_LEVELS]; /* last convergence measure per level */
    int lattice[3];                       /* control points per axis at the last level */
    int shrunk[3];                        /* dims of the fitted image */
    size_t fit_voxels;                    /* mask voxels of the shrunk image */
    double seconds;
} rp_n4_report;

void rp_n4_defaults(rp_n4_params *p);
/* Parse "50x50x50x50" into p->iterations / p->levels. RP_EINVAL on bad text. */
int rp_n4_parse_iterations(const char *s, rp_n4_params *p);

/* N4 bias-field correction (Tustison et al. 2010) of channel 0 of `in` inside `mask`
 * (NULL: every voxel > 0). Voxels <= 0 never take part in the fit.
 * *corrected (may be NULL: not wanted) gets a new volume in/exp(field), every voxel.
 * *log_field (may be NULL) gets a new volume with the log bias field at full resolution.
 * The field is shifted to zero mean over the mask, so the corrected image keeps the
 * geometric mean of the input there. `rep` (may be NULL) receives what ran. */
int rp_n4_correct(const rp_volume *in, const rp_mask *mask, const rp_n4_params *p,
                  rp_volume **corrected, rp_volume **log_field, rp_n4_report *rep, char *err,
                  size_t errlen);

/* Building blocks exposed for tests: refine a cubic B-spline lattice exactly (mesh doubles:
 * L -> 2L-3 control points per axis, every L >= 4; RP_EINVAL otherwise), as ITK's
 * RefineControlPointLattice. *out is malloc'd (caller frees). */
int rp_n4_refine_lattice(const double *phi, const int L[3], double **out, int Lout[3]);

/* ---- intensity standardisation (mrnorm.c) ---------------------------------------------- */

typedef enum {
    RP_WS_LAST = 0,    /* T1: the last (brightest) mode */
    RP_WS_LARGEST = 1, /* T2 / FLAIR: the largest mode */
    RP_WS_FIRST = 2    /* PD: the first mode */
} rp_ws_mode;

typedef struct rp_ws_result {
    double mode;   /* intensity of the white-matter mode */
    double lo, hi; /* the stripe (quantiles mode_q -/+ width) */
    double mu, sd; /* mean / SD of the voxels inside the stripe */
    size_t n_stripe;
} rp_ws_result;

/* White Stripe (Shinohara et al. 2014, R package WhiteStripe): histogram of the voxels in
 * `mask` (NULL: > 0) above the whole image's mean (the package's VOI), smoothed; the mode
 * per `mode`; the stripe between the quantiles q(mode) -/+ width; mu/sd of the stripe.
 * Does not change `v`. */
int rp_mr_whitestripe(const rp_volume *v, const rp_mask *mask, rp_ws_mode mode, double width,
                      rp_ws_result *res, char *err, size_t errlen);

#define RP_NYUL_MAX_LANDMARKS 32

typedef struct rp_nyul_model {
    int n;                                  /* landmarks, including the two ends */
    double pct[RP_NYUL_MAX_LANDMARKS];      /* percentiles, increasing: 1,10,..,90,99 */
    double standard[RP_NYUL_MAX_LANDMARKS]; /* their positions on the standard scale */
    double s_min, s_max;                    /* standard scale (0, 100) */
    int n_train;
} rp_nyul_model;

/* Default landmark set: 1, 10, 20, ..., 90, 99 percentiles; scale [0, 100]. */
void rp_nyul_model_defaults(rp_nyul_model *m);
/* Landmarks (model->pct) of v inside mask (NULL: > 0) into lm[model->n]. */
int rp_nyul_landmarks(const rp_volume *v, const rp_mask *mask, const rp_nyul_model *m, double *lm);
/* Learn the standard landmarks from `n` volumes (masks[i] may be NULL, masks may be NULL):
 * each volume's [p_first, p_last] maps linearly onto [s_min, s_max] and the standard
 * landmarks are the mean mapped positions (Nyúl & Udupa 1999/2000). `m` holds pct/scale on
 * entry (rp_nyul_model_defaults) and the learned standard on return. If `json_path` is not
 * NULL the model is written there as a small JSON file (temp name + rename). */
int rp_nyul_fit(const rp_volume *const *vols, const rp_mask *const *masks, size_t n,
                rp_nyul_model *m, const char *json_path, char *err, size_t errlen);
int rp_nyul_save(const rp_nyul_model *m, const char *json_path);
int rp_nyul_load(const char *json_path, rp_nyul_model *m, char *err, size_t errlen);
/* Map channel 0 of v in place, piecewise linearly from its own landmarks to the standard
 * ones (linear extrapolation beyond the ends), every voxel. */
int rp_nyul_apply(rp_volume *v, const rp_mask *mask, const rp_nyul_model *m, char *err,
                  size_t errlen);

/* ---- fusion (fuse.c) ------------------------------------------------------------------- */

/* Resample every input onto the grid of inputs[ref_index] through their affines (world
 * space; order 0 nearest, 1 trilinear) and stack them as channels: *out is a new volume
 * nx*ny*nz*n with the reference's affine, channel i = inputs[i] (channel 0 of it). Points
 * outside an input's voxel-centre box get 0 (as scipy map_coordinates mode='constant'). */
int rp_mr_fuse(const rp_volume *const *inputs, size_t n, size_t ref_index, int order,
               rp_volume **out);
/* Resample channel 0 of src onto the grid (dims, affine) of ref; new volume. */
int rp_mr_resample_to(const rp_volume *src, const rp_volume *ref, int order, rp_volume **out);

/* Sequence selection: a rule matches a series when its description matches `pattern`
 * (fnmatch, case-insensitive, '|' separates alternatives; empty: any) and TR/TE/TI lie in
 * their ranges (a range with lo > hi is ignored; an absent value (< 0) fails a set range,
 * except TI where a rule may say ti_absent_ok). */
typedef struct rp_mr_seq_rule {
    char name[16]; /* "T1", "T2", "FLAIR", ... */
    char pattern[128];
    double tr_lo, tr_hi, te_lo, te_hi, ti_lo, ti_hi;
    int ti_absent_ok;
} rp_mr_seq_rule;

/* Built-in rule for T1 / T2 / FLAIR / PD / BOLD / FIELDMAP (case-insensitive); RP_ENOENT. */
int rp_mr_seq_rule_builtin(const char *name, rp_mr_seq_rule *r);
int rp_mr_seq_match(const rp_mr_seq_rule *r, const rp_series_info *info);

/* Study-level fusion: for each wanted sequence name, pick the one series matching its rule
 * (none: RP_ENOENT and "missing sequence T2" in err; several: the first in input order,
 * logged), resample onto the first wanted sequence's grid, z-score each channel inside its
 * own foreground (normalize != 0) and stack. chosen[i] (may be NULL, size n_wanted) gets
 * the input index used for each channel. */
int rp_mr_fuse_study(const rp_volume *const *vols, const rp_series_info *const *infos, size_t n,
                     const char *const *wanted, size_t n_wanted, int order, int normalize,
                     rp_volume **out, size_t *chosen, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
