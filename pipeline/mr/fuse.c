/*
 * pipeline/mr/fuse.c — multi-sequence fusion of one study: resample each series onto a reference
 * grid through the affines (world space), normalise per channel, stack as a 4-D volume; and
 * the sequence matcher that picks which series is T1, T2, FLAIR... A sequence that is not
 * there is reported, never guessed.
 */
#include <ctype.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "conf/conf.h"
#include "pipeline/mr/mr.h"

int rp_mr_resample_to(const rp_volume *src, const rp_volume *ref, int order, rp_volume **out)
{
    if (!src || !ref || !out || (order != 0 && order != 1))
        return RP_EINVAL;
    double inv[4][4], m[4][4];
    if (rp_mat4_invert(src->affine, inv) != 0)
        return RP_EINVAL;
    rp_mat4_mul(inv, ref->affine, m); /* ref voxel -> src voxel */
    rp_volume *o = rp_volume_new(ref->dim[0], ref->dim[1], ref->dim[2], 1);
    if (!o)
        return RP_ENOMEM;
    memcpy(o->affine, ref->affine, sizeof o->affine);
    rp_volume_update_spacing(o);
    const int nx = src->dim[0], ny = src->dim[1], nz = src->dim[2];
    const int ox = o->dim[0], oy = o->dim[1], oz = o->dim[2];
    const float *s = src->data;
    /* Points this close outside the voxel-centre box still count as inside: double round-off
     * when two grids share planes. Kept tiny so the edge matches scipy's mode='constant'. */
    const double eps = 1e-6;
#pragma omp parallel for schedule(static)
    for (int k = 0; k < oz; k++)
        for (int j = 0; j < oy; j++) {
            float *row = o->data + (size_t)ox * (j + (size_t)oy * k);
            double bx = m[0][1] * j + m[0][2] * k + m[0][3];
            double by = m[1][1] * j + m[1][2] * k + m[1][3];
            double bz = m[2][1] * j + m[2][2] * k + m[2][3];
            for (int i = 0; i < ox; i++) {
                double x = bx + m[0][0] * i, y = by + m[1][0] * i, z = bz + m[2][0] * i;
                if (x < -eps || y < -eps || z < -eps || x > nx - 1 + eps || y > ny - 1 + eps ||
                    z > nz - 1 + eps) {
                    row[i] = 0.0f;
                    continue;
                }
                if (order == 0) {
                    int xi = (int)floor(x + 0.5), yi = (int)floor(y + 0.5),
                        zi = (int)floor(z + 0.5);
                    xi = xi < 0 ? 0 : xi >= nx ? nx - 1 : xi;
                    yi = yi < 0 ? 0 : yi >= ny ? ny - 1 : yi;
                    zi = zi < 0 ? 0 : zi >= nz ? nz - 1 : zi;
                    row[i] = s[xi + (size_t)nx * (yi + (size_t)ny * zi)];
                    continue;
                }
                int x0 = (int)floor(x), y0 = (int)floor(y), z0 = (int)floor(z);
                x0 = x0 < 0 ? 0 : x0 > nx - 2 ? (nx > 1 ? nx - 2 : 0) : x0;
                y0 = y0 < 0 ? 0 : y0 > ny - 2 ? (ny > 1 ? ny - 2 : 0) : y0;
                z0 = z0 < 0 ? 0 : z0 > nz - 2 ? (nz > 1 ? nz - 2 : 0) : z0;
                double fx = nx > 1 ? x - x0 : 0, fy = ny > 1 ? y - y0 : 0, fz = nz > 1 ? z - z0 : 0;
                fx = fx < 0 ? 0 : fx > 1 ? 1 : fx;
                fy = fy < 0 ? 0 : fy > 1 ? 1 : fy;
                fz = fz < 0 ? 0 : fz > 1 ? 1 : fz;
                int dx = nx > 1, dy = ny > 1 ? nx : 0;
                size_t dz = nz > 1 ? (size_t)nx * ny : 0;
                const float *p = s + x0 + (size_t)nx * (y0 + (size_t)ny * z0);
                double c00 = p[0] + fx * (p[dx] - p[0]);
                double c10 = p[dy] + fx * (p[dy + dx] - p[dy]);
                double c01 = p[dz] + fx * (p[dz + dx] - p[dz]);
                double c11 = p[dz + dy] + fx * (p[dz + dy + dx] - p[dz + dy]);
                double c0 = c00 + fy * (c10 - c00), c1 = c01 + fy * (c11 - c01);
                row[i] = (float)(c0 + fz * (c1 - c0));
            }
        }
    *out = o;
    return 0;
}

int rp_mr_fuse(const rp_volume *const *inputs, size_t n, size_t ref_index, int order,
               rp_volume **out)
{
    if (!inputs || n == 0 || ref_index >= n || !out || n > 64)
        return RP_EINVAL;
    const rp_volume *ref = inputs[ref_index];
    rp_volume *o = rp_volume_new(ref->dim[0], ref->dim[1], ref->dim[2], (int)n);
    if (!o)
        return RP_ENOMEM;
    memcpy(o->affine, ref->affine, sizeof o->affine);
    rp_volume_update_spacing(o);
    size_t nv = rp_volume_nvox(ref);
    for (size_t c = 0; c < n; c++) {
        rp_volume *r = NULL;
        int rc = rp_mr_resample_to(inputs[c], ref, order, &r);
        if (rc != 0) {
            rp_volume_free(o);
            return rc;
        }
        memcpy(o->data + c * nv, r->data, nv * sizeof(float));
        rp_volume_free(r);
    }
    *out = o;
    return 0;
}

/* ---- sequence matching ------------------------------------------------------------------- */

/* One matcher for the node and the pipeline: conf/ holds the criteria and the matching. */
static void seq_of_rule(const rp_mr_seq_rule *r, rp_conf_fusion_seq *q)
{
    memset(q, 0, sizeof *q);
    rp_strlcpy(q->name, r->name, sizeof q->name);
    rp_strlcpy(q->description, r->pattern, sizeof q->description);
    q->tr_lo = r->tr_lo;
    q->tr_hi = r->tr_hi;
    q->te_lo = r->te_lo;
    q->te_hi = r->te_hi;
    q->ti_lo = r->ti_lo;
    q->ti_hi = r->ti_hi;
    q->ti_absent_ok = r->ti_absent_ok;
}

int rp_mr_seq_match(const rp_mr_seq_rule *r, const rp_series_info *info)
{
    if (!r || !info)
        return 0;
    rp_conf_fusion_seq q;
    seq_of_rule(r, &q);
    rp_conf_series_attrs a = {.modality = info->modality,
                              .description = info->series_description,
                              .tr_ms = info->repetition_time,
                              .te_ms = info->echo_time,
                              .ti_ms = info->inversion_time};
    return rp_conf_seq_match(&q, &a);
}

int rp_mr_seq_rule_builtin(const char *name, rp_mr_seq_rule *r)
{
    rp_conf_fusion_seq q;
    if (rp_conf_seq_builtin(name, &q) != 0)
        return RP_ENOENT;
    memset(r, 0, sizeof *r);
    rp_strlcpy(r->name, q.name, sizeof r->name);
    rp_strlcpy(r->pattern, q.description, sizeof r->pattern);
    r->tr_lo = q.tr_lo;
    r->tr_hi = q.tr_hi;
    r->te_lo = q.te_lo;
    r->te_hi = q.te_hi;
    r->ti_lo = q.ti_lo;
    r->ti_hi = q.ti_hi;
    r->ti_absent_ok = q.ti_absent_ok;
    return 0;
}

/* z-score channel c of v inside its own foreground (rp_mr_foreground: log-domain Otsu, so
 * the dark tissues count; the zeros outside a resampled series' field of view do not). */
static int zscore_channel(rp_volume *v, int c)
{
    size_t nv = rp_volume_nvox(v);
    rp_volume ch = *v;
    ch.dim[3] = 1;
    ch.data = v->data + (size_t)c * nv;
    rp_mr_fg_params fp;
    rp_mr_fg_defaults(&fp, 0);
    rp_mask *m = NULL;
    int rc = rp_mr_foreground(&ch, &fp, "foreground", &m, NULL, 0);
    if (rc != 0)
        return rc;
    double s = 0, s2 = 0;
    size_t k = 0;
    for (size_t i = 0; i < nv; i++)
        if (m->data[i]) {
            s += ch.data[i];
            s2 += (double)ch.data[i] * ch.data[i];
            k++;
        }
    rp_mask_free(m);
    if (k < 2)
        return RP_EINVAL;
    double mu = s / k, sd = sqrt(fmax(0, (s2 - s * s / k) / (k - 1)));
    if (!(sd > 0))
        return RP_EINVAL;
    for (size_t i = 0; i < nv; i++)
        ch.data[i] = (float)((ch.data[i] - mu) / sd);
    return 0;
}

int rp_mr_fuse_study(const rp_volume *const *vols, const rp_series_info *const *infos, size_t n,
                     const char *const *wanted, size_t n_wanted, int order, int normalize,
                     rp_volume **out, size_t *chosen, char *err, size_t errlen)
{
    if (!vols || !infos || !wanted || n_wanted == 0 || n_wanted > 16 || !out)
        return RP_EINVAL;
    const rp_volume *pick[16];
    size_t idx[16];
    for (size_t w = 0; w < n_wanted; w++) {
        rp_mr_seq_rule r;
        if (rp_mr_seq_rule_builtin(wanted[w], &r) != 0) {
            if (err)
                snprintf(err, errlen, "fuse: unknown sequence %s", wanted[w]);
            return RP_EINVAL;
        }
        size_t found = n, count = 0;
        for (size_t i = 0; i < n; i++)
            if (rp_mr_seq_match(&r, infos[i])) {
                if (found == n)
                    found = i;
                count++;
            }
        if (found == n) {
            if (err)
                snprintf(err, errlen, "fuse: missing sequence %s", r.name);
            RP_WARN("mr", "fuse missing sequence=%s series=%zu", r.name, n);
            return RP_ENOENT;
        }
        if (count > 1)
            RP_WARN("mr", "fuse several series match sequence=%s taking=%s", r.name,
                    infos[found]->series_uid);
        pick[w] = vols[found];
        idx[w] = found;
    }
    rp_volume *o = NULL;
    int rc = rp_mr_fuse(pick, n_wanted, 0, order, &o);
    if (rc != 0) {
        if (err)
            snprintf(err, errlen, "fuse: resampling failed: %s", rp_strerror(rc));
        return rc;
    }
    if (normalize)
        for (size_t w = 0; w < n_wanted; w++)
            if ((rc = zscore_channel(o, (int)w)) != 0) {
                if (err)
                    snprintf(err, errlen, "fuse: channel %s cannot be normalised (flat)",
                             wanted[w]);
                rp_volume_free(o);
                return rc;
            }
    if (chosen)
        memcpy(chosen, idx, n_wanted * sizeof(size_t));
    *out = o;
    return 0;
}
