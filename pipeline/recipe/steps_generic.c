/* pipeline/recipe/steps_generic.c — the table of modality-independent steps (see step.h);
 * their code is in steps_intensity.c and steps_spatial.c. */
#include "pipeline/recipe/recipe_internal.h"

const rp_step_def rp_steps_generic[] = {
    RP_STEP_ENTRY_F(clip, "clip(lo,hi) or clip(soft_tissue|full_body|bone|lung)", RP_STEP_MASKS_PACKED_OK),
    RP_STEP_ENTRY_F(normalize, "normalize(minmax | zscore | percentile(lo,hi) | zscore_in(mask))",
                    RP_STEP_MASKS_PACKED_OK),
    RP_STEP_ENTRY_F(resample, "resample(s | sx,sy,sz [,nearest|linear|bspline3] [,aniso])",
                    RP_STEP_MASKS_PACKED_OK | RP_STEP_READS_DEFERRED),
    RP_STEP_ENTRY(reorient, "reorient(RAS|LPS)"),
    RP_STEP_ENTRY(crop, "crop(foreground[,margin] | mask,NAME[,margin] | background[,tol])"),
    RP_STEP_ENTRY(crop_or_pad, "crop_or_pad(x,y[,z][,min|VALUE])"),
    RP_STEP_ENTRY(
        denoise, "denoise(gaussian[,sigma_mm] | median[,radius] | edge-preserving[,iter[,kappa]])"),
    RP_STEP_ENTRY(patches, "patches(SIZE, STRIDE | inside(MASK) [,max][,files])"),
    {0},
};
