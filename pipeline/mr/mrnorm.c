/*
 * pipeline/mr/mrnorm.c — MR intensity standardisation kernels:
 *  - White Stripe (Shinohara et al., NeuroImage: Clinical 2014; R package WhiteStripe):
 *    find the normal-appearing white-matter mode of the smoothed histogram, take the
 *    +-tau quantile stripe around it, z-score by the stripe's mean and SD.
 *  - Nyúl–Udupa piecewise-linear histogram standardisation (Nyúl & Udupa 1999; Nyúl, Udupa &
 *    Zhang 2000): landmarks learned from training volumes, applied per volume.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "pipeline/mr/mr.h"

static void set_err(char *err, size_t errlen, const char *fmt, const char *what)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, what);
}

/* Copy of the voxels of channel 0 where mask != 0 (mask NULL: value > 0). Caller frees. */
static float *masked_values(const rp_volume *v, const rp_mask *mask, double above, size_t *cnt)
{
    size_t nv = rp_volume_nvox(v), k = 0;
    float *out = malloc(sizeof(float) * (nv ? nv : 1));
    if (!out)
        return NULL;
    for (size_t i = 0; i < nv; i++) {
        float x = v->data[i];
        if (!isfinite(x) || !(x > above))
            continue;
        if (mask ? !mask->data[i] : !(x > 0))
            continue;
        out[k++] = x;
    }
    *cnt = k;
    return out;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* numpy-style linear-interpolated percentile of sorted values. */
static double pct_sorted(const float *s, size_t n, double pct)
{
    double pos = pct / 100.0 * (double)(n - 1);
    if (pos <= 0)
        return s[0];
    if (pos >= (double)(n - 1))
        return s[n - 1];
    size_t i = (size_t)pos;
    double f = pos - (double)i;
    return s[i] + f * ((double)s[i + 1] - s[i]);
}

/* ---- White Stripe ---------------------------------------------------------------------- */

int rp_mr_whitestripe(const rp_volume *v, const rp_mask *mask, rp_ws_mode mode, double width,
                      rp_ws_result *res, char *err, size_t errlen)
{
    if (!v || !res || !(width > 0 && width < 0.5))
        return RP_EINVAL;
    size_t nv = rp_volume_nvox(v);
    /* The package's VOI: voxels above the mean of the whole image (background included). */
    double mean_all = 0;
    for (size_t i = 0; i < nv; i++)
        mean_all += isfinite(v->data[i]) ? v->data[i] : 0;
    mean_all /= (double)nv;
    size_t n = 0;
    float *voi = masked_values(v, mask, mean_all, &n);
    if (!voi)
        return RP_ENOMEM;
    int rc = RP_EINVAL;
    enum { BINS = 2000 };
    double *h = NULL, *sm = NULL;
    if (n < 100) {
        set_err(err, errlen, "whitestripe: %s", "fewer than 100 voxels in the VOI");
        goto done;
    }
    qsort(voi, n, sizeof(float), cmp_float);
    double lo = voi[0], hi = voi[n - 1];
    if (!(hi > lo)) {
        set_err(err, errlen, "whitestripe: %s", "constant VOI");
        goto done;
    }
    rc = RP_ENOMEM;
    h = calloc(BINS, sizeof(double));
    sm = calloc(BINS, sizeof(double));
    if (!h || !sm)
        goto done;
    double bw = (hi - lo) / BINS;
    for (size_t i = 0; i < n; i++) {
        int k = (int)((voi[i] - lo) / bw);
        h[k >= BINS ? BINS - 1 : k] += 1;
    }
    /* Smooth as the package's penalised spline with k=30 basis functions does: a Gaussian of
     * sigma = range/60 resolves the tissue modes but not bin noise. */
    double sigma = BINS / 60.0;
    int rad = (int)ceil(3 * sigma);
    for (int k = 0; k < BINS; k++) {
        double s = 0, w = 0;
        for (int j = k - rad; j <= k + rad; j++) {
            if (j < 0 || j >= BINS)
                continue;
            double g = exp(-0.5 * (j - k) * (j - k) / (sigma * sigma));
            s += g * h[j];
            w += g;
        }
        sm[k] = s / w;
    }
    double top = 0;
    int arg_top = 0;
    for (int k = 0; k < BINS; k++)
        if (sm[k] > top) {
            top = sm[k];
            arg_top = k;
        }
    /* Peaks: local maxima at least rare.prop = 1/5 of the highest (the package drops bins
     * rarer than that before looking for modes). */
    int pk = -1;
    if (mode == RP_WS_LARGEST) {
        pk = arg_top;
    } else {
        for (int k = 1; k < BINS - 1; k++) {
            if (!(sm[k] >= sm[k - 1] && sm[k] > sm[k + 1] && sm[k] >= top / 5))
                continue;
            if (mode == RP_WS_FIRST) {
                pk = k;
                break;
            }
            pk = k;
        }
        if (pk < 0)
            pk = arg_top;
    }
    res->mode = lo + (pk + 0.5) * bw;
    /* mode quantile, then the stripe between quantiles q -/+ width */
    size_t below = 0;
    {
        size_t a = 0, b = n;
        while (a < b) {
            size_t m = a + (b - a) / 2;
            if (voi[m] < res->mode)
                a = m + 1;
            else
                b = m;
        }
        below = a;
    }
    double q = (double)below / (double)n;
    double qlo = q - width < 0 ? 0 : q - width, qhi = q + width > 1 ? 1 : q + width;
    res->lo = pct_sorted(voi, n, 100 * qlo);
    res->hi = pct_sorted(voi, n, 100 * qhi);
    double s = 0, s2 = 0;
    size_t c = 0;
    for (size_t i = 0; i < nv; i++) {
        float x = v->data[i];
        if (!(x > res->lo && x < res->hi) || (mask && !mask->data[i]))
            continue;
        s += x;
        s2 += (double)x * x;
        c++;
    }
    if (c < 2) {
        rc = RP_EINVAL;
        set_err(err, errlen, "whitestripe: %s", "empty stripe");
        goto done;
    }
    res->mu = s / c;
    res->sd = sqrt(fmax(0, (s2 - s * s / c) / (c - 1)));
    res->n_stripe = c;
    if (!(res->sd > 0)) {
        rc = RP_EINVAL;
        set_err(err, errlen, "whitestripe: %s", "stripe has zero SD");
        goto done;
    }
    RP_INFO("mr", "whitestripe mode=%.6g quantile=%.4f stripe=[%.6g,%.6g] mu=%.6g sd=%.6g n=%zu",
            res->mode, q, res->lo, res->hi, res->mu, res->sd, c);
    rc = 0;
done:
    free(voi);
    free(h);
    free(sm);
    return rc;
}

/* ---- Nyúl ------------------------------------------------------------------------------ */

void rp_nyul_model_defaults(rp_nyul_model *m)
{
    memset(m, 0, sizeof *m);
    m->n = 11;
    m->pct[0] = 1;
    for (int i = 1; i <= 9; i++)
        m->pct[i] = 10.0 * i;
    m->pct[10] = 99;
    m->s_min = 0;
    m->s_max = 100;
}

static int model_ok(const rp_nyul_model *m)
{
    if (m->n < 2 || m->n > RP_NYUL_MAX_LANDMARKS || !(m->s_max > m->s_min))
        return 0;
    for (int i = 0; i < m->n; i++)
        if (!(m->pct[i] >= 0 && m->pct[i] <= 100) || (i && !(m->pct[i] > m->pct[i - 1])))
            return 0;
    return 1;
}

int rp_nyul_landmarks(const rp_volume *v, const rp_mask *mask, const rp_nyul_model *m, double *lm)
{
    if (!v || !m || !lm || !model_ok(m))
        return RP_EINVAL;
    size_t n = 0;
    float *vals = masked_values(v, mask, -INFINITY, &n);
    if (!vals)
        return RP_ENOMEM;
    if (n < 2) {
        free(vals);
        return RP_EINVAL;
    }
    qsort(vals, n, sizeof(float), cmp_float);
    for (int i = 0; i < m->n; i++)
        lm[i] = pct_sorted(vals, n, m->pct[i]);
    free(vals);
    return 0;
}

int rp_nyul_fit(const rp_volume *const *vols, const rp_mask *const *masks, size_t n,
                rp_nyul_model *m, const char *json_path, char *err, size_t errlen)
{
    if (!vols || n == 0 || !m || !model_ok(m)) {
        set_err(err, errlen, "nyul fit: %s", "no training volumes or bad landmark set");
        return RP_EINVAL;
    }
    double acc[RP_NYUL_MAX_LANDMARKS] = {0};
    for (size_t k = 0; k < n; k++) {
        double lm[RP_NYUL_MAX_LANDMARKS];
        int rc = rp_nyul_landmarks(vols[k], masks ? masks[k] : NULL, m, lm);
        if (rc != 0) {
            if (err)
                snprintf(err, errlen, "nyul fit: volume %zu has no usable voxels", k);
            return rc;
        }
        double span = lm[m->n - 1] - lm[0];
        if (!(span > 0)) {
            if (err)
                snprintf(err, errlen, "nyul fit: volume %zu has a flat histogram", k);
            return RP_EINVAL;
        }
        for (int i = 0; i < m->n; i++)
            acc[i] += m->s_min + (lm[i] - lm[0]) / span * (m->s_max - m->s_min);
    }
    for (int i = 0; i < m->n; i++)
        m->standard[i] = acc[i] / (double)n;
    m->n_train = (int)n;
    RP_INFO("mr", "nyul fit volumes=%zu landmarks=%d", n, m->n);
    if (json_path) {
        int rc = rp_nyul_save(m, json_path);
        if (rc != 0) {
            set_err(err, errlen, "nyul fit: cannot write %s", json_path);
            return rc;
        }
    }
    return 0;
}

int rp_nyul_save(const rp_nyul_model *m, const char *json_path)
{
    if (!m || !json_path || !model_ok(m))
        return RP_EINVAL;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return RP_ENOMEM;
    cJSON_AddStringToObject(o, "method", "nyul");
    cJSON_AddNumberToObject(o, "version", 1);
    cJSON_AddItemToObject(o, "percentiles", cJSON_CreateDoubleArray(m->pct, m->n));
    cJSON_AddItemToObject(o, "standard", cJSON_CreateDoubleArray(m->standard, m->n));
    cJSON *sc = cJSON_AddArrayToObject(o, "scale");
    cJSON_AddItemToArray(sc, cJSON_CreateNumber(m->s_min));
    cJSON_AddItemToArray(sc, cJSON_CreateNumber(m->s_max));
    cJSON_AddNumberToObject(o, "n_train", m->n_train);
    char *txt = cJSON_Print(o);
    cJSON_Delete(o);
    if (!txt)
        return RP_ENOMEM;
    char tmp[4096];
    int rc = RP_EIO;
    if (snprintf(tmp, sizeof tmp, "%s.tmp", json_path) >= (int)sizeof tmp) {
        free(txt);
        return RP_EINVAL;
    }
    FILE *f = fopen(tmp, "w");
    if (f) {
        int ok = fputs(txt, f) >= 0 && fputc('\n', f) != EOF;
        ok = fflush(f) == 0 && fsync(fileno(f)) == 0 && ok;
        ok = fclose(f) == 0 && ok;
        if (ok && rename(tmp, json_path) == 0)
            rc = 0;
        else
            unlink(tmp);
    }
    if (rc)
        RP_ERROR("mr", "nyul model write failed path=%s", json_path);
    free(txt);
    return rc;
}

static int read_array(const cJSON *o, const char *key, double *out, int max)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsArray(a))
        return -1;
    int n = cJSON_GetArraySize(a);
    if (n > max)
        return -1;
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, a)
    {
        if (!cJSON_IsNumber(e))
            return -1;
        out[i++] = e->valuedouble;
    }
    return n;
}

int rp_nyul_load(const char *json_path, rp_nyul_model *m, char *err, size_t errlen)
{
    char *txt = NULL;
    size_t len = 0;
    int rc = rp_read_file(json_path, &txt, &len);
    if (rc != 0) {
        set_err(err, errlen, "nyul: cannot read model %s", json_path);
        return rc;
    }
    cJSON *o = cJSON_Parse(txt);
    free(txt);
    rp_nyul_model t;
    memset(&t, 0, sizeof t);
    double sc[2] = {0, 0};
    const cJSON *meth = o ? cJSON_GetObjectItemCaseSensitive(o, "method") : NULL;
    int np = o ? read_array(o, "percentiles", t.pct, RP_NYUL_MAX_LANDMARKS) : -1;
    int ns = o ? read_array(o, "standard", t.standard, RP_NYUL_MAX_LANDMARKS) : -1;
    int nsc = o ? read_array(o, "scale", sc, 2) : -1;
    const cJSON *nt = o ? cJSON_GetObjectItemCaseSensitive(o, "n_train") : NULL;
    rc = RP_EPARSE;
    if (cJSON_IsString(meth) && strcmp(meth->valuestring, "nyul") == 0 && np >= 2 && np == ns &&
        nsc == 2) {
        t.n = np;
        t.s_min = sc[0];
        t.s_max = sc[1];
        t.n_train = cJSON_IsNumber(nt) ? nt->valueint : 0;
        int mono = 1;
        for (int i = 1; i < t.n; i++)
            mono = mono && t.standard[i] > t.standard[i - 1];
        if (model_ok(&t) && mono) {
            *m = t;
            rc = 0;
        }
    }
    cJSON_Delete(o);
    if (rc)
        set_err(err, errlen, "nyul: %s is not a valid model (method, percentiles, standard, scale)",
                json_path);
    return rc;
}

int rp_nyul_apply(rp_volume *v, const rp_mask *mask, const rp_nyul_model *m, char *err,
                  size_t errlen)
{
    if (!v || !m || !model_ok(m))
        return RP_EINVAL;
    double lm[RP_NYUL_MAX_LANDMARKS];
    int rc = rp_nyul_landmarks(v, mask, m, lm);
    if (rc != 0) {
        set_err(err, errlen, "nyul: %s", "no voxels to take landmarks from");
        return rc;
    }
    for (int i = 1; i < m->n; i++)
        if (!(lm[i] > lm[i - 1])) {
            if (err)
                snprintf(err, errlen,
                         "nyul: landmarks %g and %g percentiles coincide (%g); histogram too "
                         "narrow",
                         m->pct[i - 1], m->pct[i], lm[i]);
            return RP_EINVAL;
        }
    const int L = m->n;
    const double *st = m->standard;
    size_t nv = rp_volume_nvox(v);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < nv; i++) {
        double x = v->data[i];
        int s = 0;
        /* segment: the last landmark <= x, clamped to the first/last segment */
        while (s < L - 2 && x >= lm[s + 1])
            s++;
        double y = st[s] + (x - lm[s]) * (st[s + 1] - st[s]) / (lm[s + 1] - lm[s]);
        v->data[i] = (float)y;
    }
    return 0;
}
