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
    return rp_volume_warp(src, ref, m, order, out);
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
