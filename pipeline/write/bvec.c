/* pipeline/write/bvec.c — the diffusion gradient table of a 4-D stack (.bval / .bvec), with
 * dcm2niix's conventions so that the files are interchangeable with its own. Contract in
 * write.h.
 *
 * Directions are expressed in the voxel frame of the data as written: x along a row (DICOM
 * row cosines), y along the written rows — which run bottom-up, so y is minus the DICOM
 * column cosines — and z along row x column. Where the slice axis runs against row x column
 * (Siemens sagittal mosaics) dcm2niix negates y as well; so do we. GE and UIH give their
 * directions in the image frame already, each with its own axis conventions (below). */
#include "pipeline/write/write.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/common.h"

static int is_vendor(const rp_dcm_info *in, const char *v)
{
    return !strncasecmp(in->manufacturer, v, strlen(v));
}

static double dot3(const double *a, const double *b)
{
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
}

static int zero3(const double *v)
{
    return fabs(v[0]) < 1e-6 && fabs(v[1]) < 1e-6 && fabs(v[2]) < 1e-6;
}

static double nz(double v)
{
    return v == 0 ? 0.0 : v; /* no "-0" in the files */
}

/* GE: directions along (phase?, frequency, slice) of the image; dcm2niix (after dicm2nii)
 * swaps x/y for row phase encoding, flips by slice orientation, and finally negates all. */
static void ge_to_voxel(const rp_stack *st, const rp_dcm_info *in, double *b, double v[3])
{
    double len = sqrt(dot3(v, v));
    if (*b <= 0 || len <= 1e-6) {
        v[0] = v[1] = v[2] = 0;
        return;
    }
    if (len > 0.03 && len < 0.97) {
        /* b-value scaled by |g|^2: GE stores the nominal b and a shortened vector */
        double bt = *b * len * len;
        double bv = bt > 0 && bt < 5 ? 5 : (double)(int)((bt + 2.5) / 5) * 5;
        double sc = bv == 0 ? 0 : sqrt(*b / bv);
        *b = bv;
        for (int k = 0; k < 3; k++)
            v[k] *= sc;
    }
    if (strcmp(in->inplane_pe_dir, "COL") != 0) {
        double s = v[0];
        v[0] = v[1];
        v[1] = -s;
    }
    const double *n = st->normal;
    int ax = fabs(n[0]) >= fabs(n[1]) && fabs(n[0]) >= fabs(n[2]) ? 1
             : fabs(n[1]) >= fabs(n[2])                           ? 2
                                                                  : 3;
    if (ax == 1) {
        v[0] = -v[0];
        v[1] = -v[1];
    } else if (ax == 2) {
        v[1] = -v[1];
        v[2] = -v[2];
    } else {
        v[2] = -v[2];
    }
    v[1] = -v[1];
    for (int k = 0; k < 3; k++)
        v[k] = -v[k];
}

/* Patient LPS -> voxel frame as dcm2niix writes it (see the file comment). */
static void lps_to_voxel(const rp_stack *st, double v[3])
{
    const double *r = st->iop, *c = st->iop + 3;
    double s[3] = {r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]};
    double o[3] = {dot3(v, r), dot3(v, c), dot3(v, s)};
    double len = sqrt(dot3(o, o));
    if (len <= 1e-6) {
        v[0] = v[1] = v[2] = 0;
        return;
    }
    /* the written slice axis, LPS (the affine is RAS) */
    double k[3] = {-st->affine[0][2], -st->affine[1][2], st->affine[2][2]};
    double ysign = dot3(k, s) < 0 ? 1 : -1;
    v[0] = o[0] / len;
    v[1] = ysign * o[1] / len;
    v[2] = o[2] / len;
}

void rp_dwi_free(rp_dwi *d)
{
    if (!d)
        return;
    free(d->bval);
    free(d->bvec);
    free(d->drop);
    memset(d, 0, sizeof *d);
}

int rp_dwi_build(const rp_stack *st, const rp_dcm_info *const *infos, rp_dwi *out)
{
    memset(out, 0, sizeof *out);
    const rp_dcm_info *in = st->ref;
    if (st->nt < 2 || !st->slice || !in || strcmp(in->modality, "MR") != 0 || !st->has_geometry)
        return 0;
    int n = st->nt, any_b = 0;
    double *b = calloc((size_t)n, sizeof *b);
    double(*v)[3] = calloc((size_t)n, sizeof *v);
    int *drop = calloc((size_t)n, sizeof *drop);
    if (!b || !v || !drop) {
        free(b);
        free(v);
        free(drop);
        return RP_ENOMEM;
    }
    for (int t = 0; t < n; t++) {
        const rp_slice_ref *sr = &st->slice[(size_t)st->nz_acquired * t];
        const rp_dcm_frame *f = &infos[sr->file]->frame[sr->frame];
        b[t] = isnan(f->b_value) ? 0 : f->b_value;
        any_b |= !isnan(f->b_value);
        for (int k = 0; k < 3; k++)
            v[t][k] = isnan(f->b_vec[k]) ? 0 : f->b_vec[k];
    }
    int rc = 0;
    if (!any_b)
        goto none;
    double thr = is_vendor(in, "SIEMENS") ? 50 : 6, bmin = b[0];
    int varies = !zero3(v[0]);
    for (int t = 1; t < n; t++) {
        varies |= b[t] != b[0];
        bmin = b[t] < bmin ? b[t] : bmin;
    }
    varies |= bmin > thr;
    if (!varies) {
        /* one b-value for all: a table only when the directions vary, and then the volumes
         * without a direction are b=0 (scanners that repeat the b-value on them) */
        int vecs_vary = 0, any_zero = 0;
        for (int t = 1; t < n; t++)
            vecs_vary |= v[t][0] != v[0][0] || v[t][1] != v[0][1] || v[t][2] != v[0][2];
        for (int t = 0; t < n; t++)
            any_zero |= zero3(v[t]);
        if (!vecs_vary || !any_zero)
            goto none;
        for (int t = 0; t < n; t++)
            if (zero3(v[t]))
                b[t] = 0;
    }
    /* Philips appends derived isotropic (trace/ADC) volumes: b > 0 without a direction.
     * dcm2niix drops them when at least two real volumes remain; a b=0 + trace pair keeps
     * both. GE does the same in series that say they have no diffusion directions
     * ((0019,xxE0) = 0: trace-weighted DWI); otherwise GE repeats the b-value on its b=0
     * volumes: those are b=0. */
    int n_adc = 0;
    int ge_trace = in->bvec_frame == RP_DCM_BVEC_GE && in->ge_diffusion_dirs == 0;
    for (int t = 0; t < n; t++) {
        if (b[t] == 0 || !zero3(v[t]))
            continue;
        if (is_vendor(in, "Philips") || ge_trace) {
            drop[t] = 1;
            n_adc++;
        } else if (in->bvec_frame == RP_DCM_BVEC_GE) {
            b[t] = 0;
        }
    }
    if (n_adc && (n - n_adc < 2)) {
        out->isotropic = n_adc == n;
        memset(drop, 0, (size_t)n * sizeof *drop);
        n_adc = 0;
    }
    out->n_volumes = n;
    out->n_dropped = n_adc;
    out->n = n - n_adc;
    out->bval = calloc((size_t)out->n, sizeof *out->bval);
    out->bvec = calloc((size_t)out->n, sizeof *out->bvec);
    out->drop = drop;
    drop = NULL;
    if (!out->bval || !out->bvec) {
        rc = RP_ENOMEM;
        rp_dwi_free(out);
        goto none;
    }
    for (int t = 0, o = 0; t < n; t++) {
        if (out->drop[t])
            continue;
        double bb = b[t], g[3] = {v[t][0], v[t][1], v[t][2]};
        if (in->bvec_frame == RP_DCM_BVEC_GE) {
            ge_to_voxel(st, in, &bb, g);
        } else if (in->bvec_frame == RP_DCM_BVEC_UIH) {
            g[1] = -g[1];
        } else if (bb > 0) {
            lps_to_voxel(st, g);
        } else {
            g[0] = g[1] = g[2] = 0;
        }
        out->bval[o] = bb;
        for (int k = 0; k < 3; k++)
            out->bvec[o][k] = nz(g[k]);
        o++;
    }
none:
    free(b);
    free(v);
    free(drop);
    return rc;
}

int rp_dwi_drop_volumes(rp_stack *st, const rp_dwi *d)
{
    if (!d->n_dropped || d->n_volumes != st->nt || st->nz != st->nz_acquired)
        return 0;
    int nz = st->nz, o = 0;
    for (int t = 0; t < st->nt; t++) {
        if (d->drop[t])
            continue;
        if (o != t)
            memmove(&st->slice[(size_t)nz * o], &st->slice[(size_t)nz * t],
                    (size_t)nz * sizeof *st->slice);
        o++;
    }
    st->nt = o;
    st->n_refs = nz * o;
    if (st->qc) {
        cJSON *a = cJSON_AddArrayToObject(st->qc, "dropped_volumes");
        for (int t = 0; t < d->n_volumes; t++)
            if (d->drop[t])
                cJSON_AddItemToArray(a, cJSON_CreateNumber(t));
        cJSON_AddStringToObject(st->qc, "dropped_volumes_reason",
                                "derived isotropic diffusion (trace/ADC) volume: b > 0 without a "
                                "gradient direction, dropped as dcm2niix does");
    }
    return d->n_dropped;
}

/* One line of values, "%g" of the float value as dcm2niix prints them, space separated. */
static int put_line(FILE *f, const double *v, int n, int stride)
{
    for (int i = 0; i < n; i++)
        if (fprintf(f, "%s%g", i ? " " : "", (double)(float)v[(size_t)i * stride]) < 0)
            return -1;
    return fputc('\n', f) == EOF ? -1 : 0;
}

static int write_text(const char *path, const rp_dwi *d, int vec, char *err, size_t errlen)
{
    char tmp[1400];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return RP_EIO;
    }
    int bad = 0;
    if (!vec)
        bad = put_line(f, d->bval, d->n, 1);
    else
        for (int k = 0; k < 3 && !bad; k++)
            bad = put_line(f, &d->bvec[0][k], d->n, 3);
    if (fclose(f) != 0)
        bad = 1;
    if (bad || rename(tmp, path) != 0) {
        snprintf(err, errlen, "writing %s failed: %s", path, strerror(errno));
        unlink(tmp);
        return RP_EIO;
    }
    return 0;
}

int rp_dwi_write(const char *stem_path, const rp_dwi *d, char *err, size_t errlen)
{
    if (!d->n)
        return 0;
    char p[1400];
    snprintf(p, sizeof p, "%s.bval", stem_path);
    int rc = write_text(p, d, 0, err, errlen);
    if (!rc && !d->isotropic) {
        snprintf(p, sizeof p, "%s.bvec", stem_path);
        rc = write_text(p, d, 1, err, errlen);
    }
    return rc;
}
