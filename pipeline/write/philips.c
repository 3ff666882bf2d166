/* pipeline/write/philips.c — Philips' private floating-point scaling (dcm2niix's -p y) as an
 * option: FP = display / (RS x SS), display = stored x RS + RI, RS/RI the DICOM Rescale
 * Slope/Intercept and SS the private Scale Slope (2005,xx0E). Contract in write.h. */
#include "pipeline/write/write.h"

#include <math.h>
#include <string.h>

int rp_philips_float_apply(const rp_stack *st, const rp_dcm_info *const *infos, rp_stack_data *d)
{
    const rp_dcm_info *in = st->ref;
    if (!in || isnan(in->philips_scale_slope) || !st->slice)
        return 0;
    size_t plane = (size_t)st->nx * st->ny, n = (size_t)st->nz * st->nt;
    if (d->type == RP_ST_F32 && (d->scl_slope == 0 || d->scl_slope == 1) && d->scl_inter == 0) {
        /* real values per slice already: divide each by its own RS x SS */
        for (size_t k = 0; k < n && k < (size_t)st->n_refs; k++) {
            const rp_dcm_info *fi = infos[st->slice[k].file];
            double rs = fi->frame[st->slice[k].frame].slope, ss = fi->philips_scale_slope;
            if (isnan(ss) || rs == 0 || ss == 0)
                return 0; /* cannot happen after the first slice passed; keep display */
        }
        for (size_t k = 0; k < n && k < (size_t)st->n_refs; k++) {
            const rp_dcm_info *fi = infos[st->slice[k].file];
            double f = 1.0 / (fi->frame[st->slice[k].frame].slope * fi->philips_scale_slope);
            float *p = d->data ? (float *)d->data + k * plane : (float *)d->slice[k];
            for (size_t i = 0; i < plane; i++)
                p[i] = (float)(p[i] * f);
        }
        d->philips_float = 1;
        return 1;
    }
    /* one RS/SS for the stack: the NIfTI scaling carries the change */
    double rs = infos[st->slice[0].file]->frame[st->slice[0].frame].slope;
    for (int k = 1; k < st->n_refs; k++) {
        const rp_dcm_info *fi = infos[st->slice[k].file];
        if (fi->philips_scale_slope != in->philips_scale_slope ||
            fi->frame[st->slice[k].frame].slope != rs)
            return 0;
    }
    if (rs == 0)
        return 0;
    double f = 1.0 / (rs * in->philips_scale_slope);
    double s = d->scl_slope == 0 ? 1 : d->scl_slope;
    d->scl_slope = s * f;
    d->scl_inter = d->scl_inter * f;
    d->philips_float = 1;
    return 1;
}
