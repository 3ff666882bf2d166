/* pipeline/steps_ct.c — the table of CT steps (see step.h). */
#include "pipeline/volume/imgops.h"

const rp_step_def rp_steps_ct[] = {
    RP_STEP_ENTRY(hu, "hu"),
    RP_STEP_ENTRY(window, "window(lung|mediastinal|bone|brain|abdomen) or window(level,width)"),
    RP_STEP_ENTRY(multiwindow, "multiwindow(w1,w2,...) of presets or level/width"),
    RP_STEP_ENTRY(bodymask, "bodymask[(threshold_hu)]"),
    RP_STEP_ENTRY(lungmask, "lungmask[(threshold_hu[,min_ml[,closing_mm]])]"),
    RP_STEP_ENTRY(metal, "metal[(threshold_hu[,min_mm3])]"),
    {0},
};
