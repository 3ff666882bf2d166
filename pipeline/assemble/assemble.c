/* pipeline/assemble/assemble.c — split a series into stacks, sort, check and fix geometry.
 * Contract in pipeline/assemble/assemble.h. The geometry follows dcm2niix: LPS -> RAS by
 * negating x and y, rows written bottom-up, slices ordered along row x column. */
#include "pipeline/assemble/assemble.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

#define POS_TOL_MM 0.02 /* two frames closer than this along the normal share a position */

typedef struct item {
    int file, frame, tile;
    double ipp[3];
    double pos;
    const rp_dcm_info *in;
    const rp_dcm_frame *fr;
    int group;
} item;

static void cross3(const double a[3], const double b[3], double o[3])
{
    o[0] = a[1] * b[2] - a[2] * b[1];
    o[1] = a[2] * b[0] - a[0] * b[2];
    o[2] = a[0] * b[1] - a[1] * b[0];
}
static double dot3(const double a[3], const double b[3])
{
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}
static void norm3(double a[3])
{
    double l = sqrt(dot3(a, a));
    if (l > 0)
        for (int i = 0; i < 3; i++)
            a[i] /= l;
}

void rp_affine_from_dicom(const double iop[6], const double ipp0[3], const double step[3],
                          double dx, double dy, int ny, double A[4][4])
{
    /* LPS: x(i,j,k) = ipp0 + i*dx*r + jd*dy*c + k*step, with jd = ny-1-j (rows flipped). */
    double lps[4][4] = {{0}};
    for (int a = 0; a < 3; a++) {
        lps[a][0] = iop[a] * dx;
        lps[a][1] = -iop[3 + a] * dy;
        lps[a][2] = step[a];
        lps[a][3] = ipp0[a] + (ny - 1) * iop[3 + a] * dy;
    }
    lps[3][3] = 1;
    memcpy(A, lps, sizeof lps);
    for (int c = 0; c < 4; c++) {
        A[0][c] = -lps[0][c];
        A[1][c] = -lps[1][c];
    }
}

void rp_gaps_analyse(const double *pos, int n, double *gap_mean, double *gap_min, double *gap_max,
                     int *uneven, int *missing)
{
    *uneven = 0;
    *missing = 0;
    *gap_mean = *gap_min = *gap_max = 0;
    if (n < 2)
        return;
    double gmin = 1e300, gmax = 0;
    for (int k = 0; k + 1 < n; k++) {
        double g = pos[k + 1] - pos[k];
        if (g < gmin)
            gmin = g;
        if (g > gmax)
            gmax = g;
    }
    *gap_mean = (pos[n - 1] - pos[0]) / (n - 1);
    *gap_min = gmin;
    *gap_max = gmax;
    double tol = fmax(0.01, 0.01 * gmin);
    if (gmax - gmin > tol) {
        *uneven = 1;
        /* gaps that are whole multiples of the smallest gap are missing slices */
        int all_multiples = 1;
        long long miss = 0;
        for (int k = 0; k + 1 < n; k++) {
            double q = (pos[k + 1] - pos[k]) / gmin;
            double r = fabs(q - floor(q + 0.5));
            /* a gap of more than 10,000 smallest gaps (positions from a broken or hostile
             * header, or a near-zero smallest gap) counts no slices: it is no acquisition's
             * missing slices, and its quotient would not fit an int */
            if (!(q >= 0 && q <= 10000) || r * gmin > tol)
                all_multiples = 0;
            else
                miss += (long long)floor(q + 0.5) - 1;
        }
        if (all_multiples)
            *missing = miss > INT_MAX ? INT_MAX : (int)miss;
    }
}

double rp_tilt_deg(const double ipp0[3], const double ippn[3], const double normal[3])
{
    double v[3] = {ippn[0] - ipp0[0], ippn[1] - ipp0[1], ippn[2] - ipp0[2]};
    double l = sqrt(dot3(v, v));
    if (l < 1e-6)
        return 0;
    double c = fabs(dot3(v, normal)) / l;
    if (c > 1)
        c = 1;
    return acos(c) * 180.0 / M_PI;
}

static int iop_equal(const double a[6], const double b[6])
{
    for (int i = 0; i < 6; i++)
        if (fabs(a[i] - b[i]) > 1e-4)
            return 0;
    return 1;
}

const char *rp_kind_suffix(rp_dcm_kind k)
{
    switch (k) {
    case RP_DCM_KIND_PHASE:
        return "_ph";
    case RP_DCM_KIND_REAL:
        return "_real";
    case RP_DCM_KIND_IMAGINARY:
        return "_imaginary";
    case RP_DCM_KIND_FIELDMAP:
        return "_fieldmaphz";
    default:
        return "";
    }
}

const char *rp_kind_name(rp_dcm_kind k)
{
    switch (k) {
    case RP_DCM_KIND_PHASE:
        return "PHASE";
    case RP_DCM_KIND_REAL:
        return "REAL";
    case RP_DCM_KIND_IMAGINARY:
        return "IMAGINARY";
    case RP_DCM_KIND_FIELDMAP:
        return "FIELDMAP";
    default:
        return "MAGNITUDE";
    }
}

/* Stack key: what must be equal for two frames to be in one stack. */
static int same_key(const item *a, const item *b, int with_echo)
{
    if (a->in->rows != b->in->rows || a->in->cols != b->in->cols ||
        a->in->samples_per_pixel != b->in->samples_per_pixel ||
        a->in->bits_allocated != b->in->bits_allocated || (a->tile >= 0) != (b->tile >= 0))
        return 0;
    if (a->fr->has_iop != b->fr->has_iop || (a->fr->has_iop && !iop_equal(a->fr->iop, b->fr->iop)))
        return 0;
    if (a->fr->has_spacing != b->fr->has_spacing ||
        (a->fr->has_spacing && (fabs(a->fr->pixel_spacing[0] - b->fr->pixel_spacing[0]) > 1e-4 ||
                                fabs(a->fr->pixel_spacing[1] - b->fr->pixel_spacing[1]) > 1e-4)))
        return 0;
    if (with_echo) {
        if (a->fr->echo_number != b->fr->echo_number || a->fr->kind != b->fr->kind)
            return 0;
        double ta = a->fr->echo_time, tb = b->fr->echo_time;
        if (isnan(ta) != isnan(tb) || (!isnan(ta) && fabs(ta - tb) > 1e-3))
            return 0;
    }
    return 1;
}

static int cmp_item(const void *pa, const void *pb)
{
    const item *a = pa, *b = pb;
    if (a->pos < b->pos - POS_TOL_MM)
        return -1;
    if (a->pos > b->pos + POS_TOL_MM)
        return 1;
    /* same position: order the repetitions in time */
    int ka[4] = {a->fr->temporal_position, a->in->acquisition_number, a->in->instance_number,
                 a->frame};
    int kb[4] = {b->fr->temporal_position, b->in->acquisition_number, b->in->instance_number,
                 b->frame};
    double ta = isnan(a->fr->trigger_time) ? 0 : a->fr->trigger_time;
    double tb = isnan(b->fr->trigger_time) ? 0 : b->fr->trigger_time;
    for (int i = 0; i < 2; i++)
        if (ka[i] != kb[i])
            return ka[i] < kb[i] ? -1 : 1;
    if (ta != tb)
        return ta < tb ? -1 : 1;
    double ba = isnan(a->fr->b_value) ? 0 : a->fr->b_value,
           bb = isnan(b->fr->b_value) ? 0 : b->fr->b_value;
    if (ba != bb)
        return ba < bb ? -1 : 1;
    for (int i = 2; i < 4; i++)
        if (ka[i] != kb[i])
            return ka[i] < kb[i] ? -1 : 1;
    return a->file < b->file ? -1 : a->file > b->file;
}

void rp_series_asm_free(rp_series_asm *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_stacks; i++) {
        free(s->stack[i].slice);
        cJSON_Delete(s->stack[i].qc);
    }
    free(s->stack);
    cJSON_Delete(s->qc);
    memset(s, 0, sizeof *s);
}

static void qc_add_issue(cJSON *qc, const char *code, const char *level, const char *msg)
{
    cJSON *arr = cJSON_GetObjectItem(qc, "issues");
    if (!arr)
        arr = cJSON_AddArrayToObject(qc, "issues");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "code", code);
    cJSON_AddStringToObject(o, "level", level);
    cJSON_AddStringToObject(o, "message", msg);
    cJSON_AddItemToArray(arr, o);
}

/* Expand the files into items (frames, or mosaic tiles). */
static int collect_items(const rp_dcm_info *const *infos, size_t n, cJSON *qc, item **out,
                         size_t *nout)
{
    size_t cap = 0, cnt = 0;
    for (size_t f = 0; f < n; f++)
        cap += infos[f]->mosaic_images > 1 ? (size_t)infos[f]->mosaic_images
                                           : (size_t)infos[f]->n_frames;
    item *it = calloc(cap ? cap : 1, sizeof *it);
    if (!it)
        return RP_ENOMEM;
    char msg[2048];
    for (size_t f = 0; f < n; f++) {
        const rp_dcm_info *in = infos[f];
        if (!in->has_pixel_data || in->rows < 1 || in->cols < 1) {
            snprintf(msg, sizeof msg, "%s has no pixel data (SOP class %s); not converted",
                     in->path, in->sop_class_uid);
            qc_add_issue(qc, "not_an_image", "info", msg);
            continue;
        }
        /* the same SOP instance twice (e.g. two transfer syntaxes): keep the first */
        int dup = 0;
        for (size_t g = 0; g < f && !dup; g++)
            dup = infos[g]->has_pixel_data && in->sop_instance_uid[0] &&
                  !strcmp(infos[g]->sop_instance_uid, in->sop_instance_uid);
        if (dup) {
            snprintf(msg, sizeof msg, "%s repeats SOP Instance UID %s; the first copy is used",
                     in->path, in->sop_instance_uid);
            qc_add_issue(qc, "duplicate_instance", "warning", msg);
            continue;
        }
        if (in->mosaic_images > 1 && in->n_frames == 1) {
            const rp_dcm_frame *fr = &in->frame[0];
            int tw = in->cols / in->mosaic_tiles_x, th = in->rows / in->mosaic_tiles_y;
            double r[3] = {fr->iop[0], fr->iop[1], fr->iop[2]};
            double c[3] = {fr->iop[3], fr->iop[4], fr->iop[5]};
            double nrm[3];
            if (in->has_csa_slice_normal)
                memcpy(nrm, in->csa_slice_normal, sizeof nrm);
            else
                cross3(r, c, nrm);
            double sp = !isnan(in->spacing_between_slices) ? in->spacing_between_slices
                        : !isnan(in->slice_thickness)      ? in->slice_thickness
                                                           : 1.0;
            /* IPP of a mosaic is the corner of the whole mosaic; move it to the first tile */
            double base[3];
            for (int a = 0; a < 3; a++)
                base[a] = fr->ipp[a] + r[a] * fr->pixel_spacing[1] * (in->cols - tw) / 2.0 +
                          c[a] * fr->pixel_spacing[0] * (in->rows - th) / 2.0;
            for (int t = 0; t < in->mosaic_images; t++) {
                item *x = &it[cnt++];
                x->file = (int)f;
                x->frame = 0;
                x->tile = t;
                x->in = in;
                x->fr = fr;
                for (int a = 0; a < 3; a++)
                    x->ipp[a] = in->mosaic_ipp ? in->mosaic_ipp[3 * t + a] /* UIH: per tile */
                                               : base[a] + t * sp * nrm[a];
            }
            continue;
        }
        for (int fi = 0; fi < in->n_frames; fi++) {
            item *x = &it[cnt++];
            x->file = (int)f;
            x->frame = fi;
            x->tile = -1;
            x->in = in;
            x->fr = &in->frame[fi];
            memcpy(x->ipp, x->fr->ipp, sizeof x->ipp);
        }
    }
    *out = it;
    *nout = cnt;
    return 0;
}

/* Projection modalities: a 2-D image without patient geometry is normal there. */
static int is_projection(const rp_dcm_info *in)
{
    static const char *const m[] = {"CR", "DX", "MG", "XA", "RF", "IO", "PX", "DG", "XC", "ES"};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (!strcmp(in->modality, m[i]))
            return 1;
    return 0;
}

static void set_geometry_unknown(rp_stack *st, const char *why)
{
    if (st->geometry_unknown)
        return;
    st->geometry_unknown = 1;
    snprintf(st->geometry_reason, sizeof st->geometry_reason, "%s", why);
    char msg[400];
    snprintf(msg, sizeof msg,
             "geometry unknown: %s; the affine is a placeholder, spatial steps refuse this "
             "stack",
             why);
    qc_add_issue(st->qc, "geometry_unknown", "error", msg);
}

static void stack_geometry(rp_stack *st, const item *its, size_t m)
{
    const item *i0 = &its[0];
    const rp_dcm_info *in = i0->in;
    char msg[2048];
    st->has_geometry = i0->fr->has_iop && i0->fr->has_ipp;
    st->dx = i0->fr->has_spacing ? i0->fr->pixel_spacing[1] : 1.0;
    st->dy = i0->fr->has_spacing ? i0->fr->pixel_spacing[0] : 1.0;
    if (!i0->fr->has_spacing)
        qc_add_issue(st->qc, "no_pixel_spacing", "warning", "no Pixel Spacing: 1 mm assumed");
    if (!is_projection(in) || st->nz > 1) {
        if (!i0->fr->has_iop || !i0->fr->has_ipp)
            set_geometry_unknown(st, !i0->fr->has_iop ? "no Image Orientation (Patient)"
                                                      : "no Image Position (Patient)");
        else if (!i0->fr->has_spacing)
            set_geometry_unknown(st, "no Pixel Spacing");
    }
    for (size_t k = 1; k < m && !st->geometry_unknown; k++)
        if (its[k].fr->has_ipp != i0->fr->has_ipp || its[k].fr->has_iop != i0->fr->has_iop)
            set_geometry_unknown(st, "position or orientation missing on some frames");
    if (!st->has_geometry) {
        /* projection image or a header without patient geometry: centred identity grid, as
         * dcm2niix writes it */
        double iop[6] = {1, 0, 0, 0, 1, 0};
        memcpy(st->iop, iop, sizeof iop);
        st->normal[0] = st->normal[1] = 0;
        st->normal[2] = 1;
        double dz = 1.0;
        if (!isnan(in->spacing_between_slices) && in->spacing_between_slices > 0)
            dz = in->spacing_between_slices;
        else if (!isnan(i0->fr->slice_thickness) && i0->fr->slice_thickness > 0)
            dz = i0->fr->slice_thickness;
        st->dz = dz;
        st->flip_rows = 1; /* as dcm2niix does for projection images */
        double ipp0[3] = {-(st->nx - 1) * st->dx / 2.0, -(st->ny - 1) * st->dy / 2.0,
                          -(st->nz - 1) * dz / 2.0};
        double step[3] = {0, 0, dz};
        rp_affine_from_dicom(st->iop, ipp0, step, st->dx, st->dy, st->ny, st->affine);
        qc_add_issue(st->qc, "no_patient_geometry", "info",
                     "no Image Position/Orientation (Patient): voxel grid centred on the origin");
        return;
    }
    memcpy(st->iop, i0->fr->iop, sizeof st->iop);
    st->flip_rows = 1;
    double step[3];
    const double *p0 = st->slice[0].ipp, *pn = st->slice[st->nz - 1].ipp;
    if (st->nz > 1) {
        double *pos = malloc(sizeof(double) * st->nz);
        for (int z = 0; z < st->nz; z++)
            pos[z] = st->slice[z].pos;
        rp_gaps_analyse(pos, st->nz, &st->dz, &st->gap_min, &st->gap_max, &st->uneven,
                        &st->missing);
        free(pos);
        for (int a = 0; a < 3; a++)
            step[a] = (pn[a] - p0[a]) / (st->nz - 1);
        st->tilt_deg = rp_tilt_deg(p0, pn, st->normal);
        if (st->tilt_deg > 0.05) {
            snprintf(msg, sizeof msg,
                     "slices are sheared by %.2f deg (Gantry/Detector Tilt %s): grid is not "
                     "orthogonal; corrected by resampling as dcm2niix does",
                     st->tilt_deg, isnan(in->gantry_tilt) ? "absent" : "present");
            qc_add_issue(st->qc, "gantry_tilt", "warning", msg);
            st->need_resample = 1;
        }
        if (st->uneven) {
            snprintf(msg, sizeof msg,
                     "uneven slice spacing: gaps from %.3f to %.3f mm%s; resampled to "
                     "equidistant slices",
                     st->gap_min, st->gap_max, st->missing ? " (missing slices)" : "");
            qc_add_issue(st->qc, "uneven_spacing", "warning", msg);
            st->need_resample = 1;
        }
        if (st->missing) {
            snprintf(msg, sizeof msg, "%d slice(s) missing: gaps are multiples of %.3f mm",
                     st->missing, st->gap_min);
            qc_add_issue(st->qc, "missing_slices", "warning", msg);
        }
    } else {
        double dz = st->mosaic ? 1.0 : 0;
        if (!isnan(in->spacing_between_slices) && in->spacing_between_slices > 0)
            dz = in->spacing_between_slices;
        else if (!isnan(i0->fr->slice_thickness) && i0->fr->slice_thickness > 0)
            dz = i0->fr->slice_thickness;
        else
            dz = 1.0;
        st->dz = dz;
        for (int a = 0; a < 3; a++)
            step[a] = st->normal[a] * dz;
    }
    rp_affine_from_dicom(st->iop, p0, step, st->dx, st->dy, st->ny, st->affine);
}

int rp_assemble(const rp_dcm_info *const *infos, size_t n, rp_series_asm *out)
{
    memset(out, 0, sizeof *out);
    out->qc = cJSON_CreateObject();
    cJSON_AddArrayToObject(out->qc, "issues");
    item *its = NULL;
    size_t nit = 0;
    int rc = collect_items(infos, n, out->qc, &its, &nit);
    if (rc)
        return rc;
    if (nit == 0) {
        free(its);
        return 0;
    }
    char msg[2048];
    /* group by key (size, orientation, spacing, echo) */
    int ngroups = 0;
    int *gsize = calloc(nit, sizeof(int));
    int *grep = calloc(nit, sizeof(int));
    for (size_t i = 0; i < nit; i++) {
        int g = 0;
        for (; g < ngroups; g++)
            if (same_key(&its[grep[g]], &its[i], 1))
                break;
        if (g == ngroups) {
            grep[g] = (int)i;
            ngroups++;
        }
        its[i].group = g;
        gsize[g]++;
    }
    int big = 0;
    for (int g = 1; g < ngroups; g++)
        if (gsize[g] > gsize[big])
            big = g;
    /* drop small groups that differ from the main stack in geometry only (localizers) */
    int *keep = calloc((size_t)ngroups, sizeof(int));
    int n_echo_groups = 0;
    for (int g = 0; g < ngroups; g++) {
        keep[g] = 1;
        int echo_only = same_key(&its[grep[g]], &its[grep[big]], 0);
        if (g != big && echo_only)
            n_echo_groups++;
        if (g != big && !echo_only && gsize[big] >= 3 && gsize[g] <= 2 &&
            gsize[g] * 4 <= gsize[big]) {
            keep[g] = 0;
            snprintf(msg, sizeof msg,
                     "%d frame(s) (first: %s) have another size or orientation than the main "
                     "stack of %d and were left out (localizer?)",
                     gsize[g], its[grep[g]].in->path, gsize[big]);
            qc_add_issue(out->qc, "dropped_frames", "warning", msg);
        }
    }
    int nkeep = 0;
    for (int g = 0; g < ngroups; g++)
        nkeep += keep[g];
    out->stack = calloc((size_t)nkeep, sizeof(rp_stack));
    item *tmp = malloc(nit * sizeof(item));
    int echo_idx = 0, orient_idx = 0;
    for (int g = 0; g < ngroups && out->stack && tmp; g++) {
        if (!keep[g])
            continue;
        rp_stack *st = &out->stack[out->n_stacks++];
        st->qc = cJSON_CreateObject();
        cJSON_AddArrayToObject(st->qc, "issues");
        size_t m = 0;
        for (size_t i = 0; i < nit; i++)
            if (its[i].group == g)
                tmp[m++] = its[i];
        const item *r0 = &tmp[0];
        st->ref = r0->in;
        st->mosaic = r0->tile >= 0;
        st->echo_number = -1;
        st->kind = r0->fr->kind;
        st->nx = r0->in->cols / (st->mosaic ? r0->in->mosaic_tiles_x : 1);
        st->ny = r0->in->rows / (st->mosaic ? r0->in->mosaic_tiles_y : 1);
        if (r0->fr->has_iop) {
            double rr[3] = {r0->fr->iop[0], r0->fr->iop[1], r0->fr->iop[2]};
            double cc[3] = {r0->fr->iop[3], r0->fr->iop[4], r0->fr->iop[5]};
            cross3(rr, cc, st->normal);
            norm3(st->normal);
            /* the CSA normal only orients mosaics (it can point either way) */
            if (st->mosaic && r0->in->has_csa_slice_normal &&
                dot3(st->normal, r0->in->csa_slice_normal) < 0)
                for (int a = 0; a < 3; a++)
                    st->normal[a] = -st->normal[a];
        } else {
            st->normal[2] = 1;
        }
        for (size_t i = 0; i < m; i++)
            tmp[i].pos = r0->fr->has_ipp ? dot3(tmp[i].ipp, st->normal) : (double)i;
        if (!r0->fr->has_ipp) {
            /* no positions: keep the frame order of the file(s) */
            for (size_t i = 0; i < m; i++)
                tmp[i].pos = (double)i * 1.0;
        }
        qsort(tmp, m, sizeof(item), cmp_item);
        /* positions shared by several frames: a 4-D series */
        int nu = 0, maxrep = 0, minrep = 1 << 30, cur = 0;
        for (size_t i = 0; i < m; i++) {
            if (i == 0 || tmp[i].pos - tmp[i - 1].pos > POS_TOL_MM) {
                if (i) {
                    if (cur > maxrep)
                        maxrep = cur;
                    if (cur < minrep)
                        minrep = cur;
                }
                nu++;
                cur = 0;
            }
            cur++;
        }
        if (cur > maxrep)
            maxrep = cur;
        if (cur < minrep)
            minrep = cur;
        st->nz = nu;
        st->nt = minrep;
        if (minrep != maxrep) {
            snprintf(msg, sizeof msg,
                     "positions repeat %d to %d times: incomplete 4-D series, %d volume(s) kept",
                     minrep, maxrep, minrep);
            qc_add_issue(st->qc, "incomplete_volumes", "warning", msg);
        }
        st->slice = calloc((size_t)st->nz * st->nt, sizeof(rp_slice_ref));
        st->n_refs = st->nz * st->nt;
        st->nz_acquired = st->nz;
        int z = -1, rep = 0;
        for (size_t i = 0; i < m && st->slice; i++) {
            if (i == 0 || tmp[i].pos - tmp[i - 1].pos > POS_TOL_MM) {
                z++;
                rep = 0;
            }
            if (rep < st->nt) {
                rp_slice_ref *s = &st->slice[z + st->nz * rep];
                s->file = tmp[i].file;
                s->frame = tmp[i].frame;
                s->tile = tmp[i].tile;
                memcpy(s->ipp, tmp[i].ipp, sizeof s->ipp);
                s->pos = tmp[i].pos;
            }
            rep++;
        }
        if (!st->slice) {
            rc = RP_ENOMEM;
            break;
        }
        /* rescale consistency */
        for (int k = 1; k < st->nz * st->nt; k++) {
            const rp_dcm_frame *a = &infos[st->slice[0].file]->frame[st->slice[0].frame];
            const rp_dcm_frame *b = &infos[st->slice[k].file]->frame[st->slice[k].frame];
            if (a->slope != b->slope || a->intercept != b->intercept) {
                st->varying_rescale = 1;
                qc_add_issue(st->qc, "varying_rescale", "info",
                             "rescale slope/intercept differ between slices: written as float32");
                break;
            }
        }
        if (ngroups > 1) {
            int echo_only = same_key(r0, &its[grep[big]], 0);
            if (echo_only && n_echo_groups > 0) {
                /* split by echo only when another kept group of the same kind (magnitude,
                 * phase...) has another echo; the kind is a suffix of its own (dcm2niix's) */
                int multi_echo = 0;
                for (int g2 = 0; g2 < ngroups && !multi_echo; g2++) {
                    const item *o = &its[grep[g2]];
                    multi_echo = keep[g2] && g2 != g && o->fr->kind == r0->fr->kind &&
                                 same_key(r0, o, 0) && !same_key(r0, o, 1);
                }
                size_t used = 0;
                if (multi_echo) {
                    st->echo_number = r0->fr->echo_number > 0 ? r0->fr->echo_number : ++echo_idx;
                    used = (size_t)snprintf(st->label, sizeof st->label, "_e%d", st->echo_number);
                }
                snprintf(st->label + used, sizeof st->label - used, "%s",
                         rp_kind_suffix(r0->fr->kind));
            } else if (g != big) {
                snprintf(st->label, sizeof st->label, "_o%d", ++orient_idx);
            }
        }
        stack_geometry(st, tmp, m);
        cJSON_AddNumberToObject(st->qc, "n_slices", st->nz);
        cJSON_AddNumberToObject(st->qc, "n_volumes", st->nt);
        cJSON_AddNumberToObject(st->qc, "slice_spacing_mm", st->dz);
        if (st->nz > 1) {
            cJSON_AddNumberToObject(st->qc, "gap_min_mm", st->gap_min);
            cJSON_AddNumberToObject(st->qc, "gap_max_mm", st->gap_max);
        }
        cJSON_AddNumberToObject(st->qc, "tilt_deg", st->tilt_deg);
        cJSON_AddBoolToObject(st->qc, "mosaic", st->mosaic);
        cJSON_AddBoolToObject(st->qc, "geometry_unknown", st->geometry_unknown);
        cJSON_AddBoolToObject(st->qc, "uneven_spacing", st->uneven);
        cJSON_AddNumberToObject(st->qc, "missing_slices", st->missing);
        cJSON_AddStringToObject(st->qc, "sorted_by",
                                r0->fr->has_ipp ? "position along slice normal"
                                                : "frame order (no positions)");
    }
    free(tmp);
    free(keep);
    free(gsize);
    free(grep);
    free(its);
    if (!out->stack && nkeep)
        rc = RP_ENOMEM;
    return rc;
}
