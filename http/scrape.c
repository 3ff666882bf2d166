/*
 * http/scrape — /metrics in the Prometheus text format, and the rate sampler behind the
 * overview's instances/s and MB/s.
 *
 * Counters and histograms are kept by the modules that count (metrics/); what only the index
 * or the file system knows (jobs by state and rule, outbox rows, series by state, disk free,
 * index size) is read here at scrape time, on the request's read-only handle. A scrape resets
 * those gauges before setting them, so scrapes run one at a time (scrape_mu, local to http/).
 */
#include "http/http_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "common/common.h"
#include "metrics/metrics.h"
#include "pipeline/recipe/recipe.h"

/* ---- gauges read at scrape time -------------------------------------------------------------- */

typedef struct job_group_ctx {
    const rp_conf *c;
} job_group_ctx;

static const char *col(int ncol, const char *const *names, const char *const *values,
                       const char *name)
{
    for (int i = 0; i < ncol; i++)
        if (strcmp(names[i], name) == 0)
            return values[i];
    return NULL;
}

/* One (state, kind, series attributes) group of jobs: its rule is the [fusion] of a fuse job,
 * else the rule the worker would match for that series. */
static int job_group(void *user, int ncol, const char *const *names, const char *const *values,
                     const int *kinds)
{
    (void)kinds;
    job_group_ctx *x = user;
    const char *state = col(ncol, names, values, "state");
    const char *kind = col(ncol, names, values, "kind");
    const char *n = col(ncol, names, values, "n");
    const char *th = col(ncol, names, values, "slice_thickness");
    const char *rule = "none";
    if (kind && strncmp(kind, "fuse:", 5) == 0) {
        rule = kind + 5;
    } else {
        const char *mod = col(ncol, names, values, "modality");
        const char *bp = col(ncol, names, values, "body_part");
        const char *desc = col(ncol, names, values, "description");
        rp_series_info info;
        memset(&info, 0, sizeof info);
        rp_strlcpy(info.modality, mod ? mod : "", sizeof info.modality);
        rp_strlcpy(info.body_part, bp ? bp : "", sizeof info.body_part);
        rp_strlcpy(info.series_description, desc ? desc : "", sizeof info.series_description);
        info.slice_thickness = th ? strtod(th, NULL) : -1.0;
        info.repetition_time = info.echo_time = info.inversion_time = -1;
        const rp_conf_rule *ru = rp_recipe_match(x->c, &info);
        if (ru)
            rule = ru->name;
    }
    rp_metrics_add(RP_M_JOBS, n ? strtod(n, NULL) : 0, state ? state : "", rule);
    return 0;
}

static int outbox_group(void *user, int ncol, const char *const *names, const char *const *values,
                        const int *kinds)
{
    (void)user;
    (void)kinds;
    const char *d = col(ncol, names, values, "destination");
    const char *s = col(ncol, names, values, "state");
    const char *n = col(ncol, names, values, "n");
    rp_metrics_set(RP_M_OUTBOX, n ? strtod(n, NULL) : 0, d ? d : "", s ? s : "");
    return 0;
}

static long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : 0;
}

void rp_http_metrics(rp_http_req *r, rp_http_resp *o)
{
    rp_http *h = r->h;
    const rp_conf *c = h->conf;
    pthread_mutex_lock(&h->scrape_mu);
    struct statvfs vfs;
    if (statvfs(c->data_dir, &vfs) == 0)
        rp_metrics_set(RP_M_DISK_FREE_BYTES, (double)vfs.f_bavail * (double)vfs.f_frsize);
    rp_metrics_set(RP_M_DISK_WATERMARK_BYTES, (double)c->min_free_mb * 1024.0 * 1024.0);
    char wal[sizeof h->db_path + 8];
    snprintf(wal, sizeof wal, "%s-wal", h->db_path);
    rp_metrics_set(RP_M_INDEX_BYTES, (double)(file_size(h->db_path) + file_size(wal)));
    rp_db_counts n;
    if (rp_db_counts_get(r->db, &n) == 0) {
        rp_metrics_set(RP_M_SERIES, (double)n.series_receiving, "receiving");
        rp_metrics_set(RP_M_SERIES, (double)n.series_complete, "complete");
        rp_metrics_set(RP_M_SERIES, (double)n.series_processing, "processing");
        rp_metrics_set(RP_M_SERIES, (double)n.series_done, "done");
        rp_metrics_set(RP_M_SERIES, (double)n.series_failed, "failed");
    }
    rp_metrics_zero(RP_M_JOBS);
    job_group_ctx x = {c};
    rp_db_console_job_groups(r->db, job_group, &x);
    rp_metrics_zero(RP_M_OUTBOX);
    rp_db_console_outbox_groups(r->db, outbox_group, NULL);
    char *text = NULL;
    size_t len = 0;
    int rc = rp_metrics_render(&text, &len);
    pthread_mutex_unlock(&h->scrape_mu);
    if (rc != 0) {
        rp_http_resp_error(r, o, 500, "out of memory");
        return;
    }
    rp_http_resp_text(o, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
}

/* ---- rates ----------------------------------------------------------------------------------- */

static void take_sample(rp_http *h)
{
    rp_http_sample s = {rp_mono_s(), rp_metrics_sum(RP_M_INSTANCES_RECEIVED),
                        rp_metrics_sum(RP_M_BYTES_RECEIVED)};
    pthread_mutex_lock(&h->rate_mu);
    h->ring[h->ring_head] = s;
    h->ring_head = (h->ring_head + 1) % RP_HTTP_RATE_SAMPLES;
    if (h->ring_n < RP_HTTP_RATE_SAMPLES)
        h->ring_n++;
    pthread_mutex_unlock(&h->rate_mu);
}

/* The k-th sample, oldest first (caller holds rate_mu). */
static rp_http_sample sample_at(const rp_http *h, int k)
{
    int first = (h->ring_head - h->ring_n + RP_HTTP_RATE_SAMPLES) % RP_HTTP_RATE_SAMPLES;
    return h->ring[(first + k) % RP_HTTP_RATE_SAMPLES];
}

void rp_http_rates(rp_http *h, double seconds, double *ips, double *bps)
{
    *ips = *bps = 0;
    rp_http_sample now = {rp_mono_s(), rp_metrics_sum(RP_M_INSTANCES_RECEIVED),
                          rp_metrics_sum(RP_M_BYTES_RECEIVED)};
    pthread_mutex_lock(&h->rate_mu);
    int have = h->ring_n > 0;
    rp_http_sample from = have ? sample_at(h, 0) : now;
    for (int k = h->ring_n - 1; k >= 0; k--) {
        rp_http_sample s = sample_at(h, k);
        from = s;
        if (now.t - s.t >= seconds)
            break;
    }
    pthread_mutex_unlock(&h->rate_mu);
    double dt = now.t - from.t;
    if (have && dt > 0.5) {
        *ips = (now.instances - from.instances) / dt;
        *bps = (now.bytes - from.bytes) / dt;
    }
}

cJSON *rp_http_rate_series(rp_http *h)
{
    cJSON *arr = cJSON_CreateArray();
    double now = rp_mono_s();
    pthread_mutex_lock(&h->rate_mu);
    for (int k = 1; k < h->ring_n; k++) {
        rp_http_sample a = sample_at(h, k - 1), b = sample_at(h, k);
        double dt = b.t - a.t;
        if (dt <= 0)
            continue;
        cJSON *p = cJSON_CreateArray();
        cJSON_AddItemToArray(p, cJSON_CreateNumber(now - b.t));
        cJSON_AddItemToArray(p, cJSON_CreateNumber((b.instances - a.instances) / dt));
        cJSON_AddItemToArray(p, cJSON_CreateNumber((b.bytes - a.bytes) / dt));
        cJSON_AddItemToArray(arr, p);
    }
    pthread_mutex_unlock(&h->rate_mu);
    return arr;
}

static void *sampler_main(void *arg)
{
    rp_http *h = arg;
    rp_http_lower_priority();
    take_sample(h);
    pthread_mutex_lock(&h->rate_mu);
    while (!h->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)RP_HTTP_RATE_STEP_S;
        pthread_cond_timedwait(&h->rate_cv, &h->rate_mu, &ts);
        if (h->stopping)
            break;
        pthread_mutex_unlock(&h->rate_mu);
        take_sample(h);
        pthread_mutex_lock(&h->rate_mu);
    }
    pthread_mutex_unlock(&h->rate_mu);
    return NULL;
}

int rp_http_sampler_start(rp_http *h)
{
    if (pthread_create(&h->sampler, NULL, sampler_main, h) != 0)
        return RP_ENOMEM;
    h->sampler_started = 1;
    return 0;
}

void rp_http_sampler_stop(rp_http *h)
{
    if (!h->sampler_started)
        return;
    pthread_mutex_lock(&h->rate_mu);
    h->stopping = 1;
    pthread_cond_broadcast(&h->rate_cv);
    pthread_mutex_unlock(&h->rate_mu);
    pthread_join(h->sampler, NULL);
    h->sampler_started = 0;
}
