/*
 * http/api — the JSON documents of /api/v1/ (docs/console.md). The HTML pages render these
 * same documents, so what a page shows and what the API returns cannot drift apart; the
 * overview's counts come from rp_db_counts_get() and statvfs(data_dir), exactly as
 * `radprep status` computes them.
 */
#include "http/http_internal.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/common.h"
#include "metrics/metrics.h"

int rp_http_json_row(void *user, int ncol, const char *const *names, const char *const *values,
                     const int *kinds)
{
    cJSON *arr = user;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return 1;
    for (int i = 0; i < ncol; i++) {
        if (kinds[i] == RP_DB_COL_NULL || !values[i])
            cJSON_AddNullToObject(o, names[i]);
        else if (kinds[i] == RP_DB_COL_INT || kinds[i] == RP_DB_COL_REAL)
            cJSON_AddNumberToObject(o, names[i], strtod(values[i], NULL));
        else
            cJSON_AddStringToObject(o, names[i], values[i]);
    }
    cJSON_AddItemToArray(arr, o);
    return 0;
}

const char *rp_http_js(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : "";
}

double rp_http_jn(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* Non-negative integer argument with a default and a ceiling. */
static int int_arg(rp_http_req *r, const char *key, int dflt, int lo, int hi)
{
    const char *v = rp_http_arg(r, key);
    if (!v || !*v)
        return dflt;
    char *end = NULL;
    long n = strtol(v, &end, 10);
    if (*end || n < lo)
        return dflt;
    return n > hi ? hi : (int)n;
}

/* A short word argument (state, modality, destination) or NULL: printable, no spaces. */
static const char *word_arg(rp_http_req *r, const char *key)
{
    const char *v = rp_http_arg(r, key);
    if (!v || !*v || strlen(v) > 64)
        return NULL;
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return NULL;
    return v;
}

/* ---- status ---------------------------------------------------------------------------------- */

static void add_rate(cJSON *live, rp_http *h, const char *key, double seconds)
{
    double ips = 0, bps = 0;
    rp_http_rates(h, seconds, &ips, &bps);
    cJSON *o = cJSON_AddObjectToObject(live, key);
    cJSON_AddNumberToObject(o, "instances_per_s", ips);
    cJSON_AddNumberToObject(o, "bytes_per_s", bps);
}

cJSON *rp_http_api_status(rp_http_req *r)
{
    rp_http *h = r->h;
    const rp_conf *c = h->conf;
    rp_db_counts n;
    memset(&n, 0, sizeof n);
    if (rp_db_counts_get(r->db, &n) != 0)
        return NULL;
    cJSON *j = cJSON_CreateObject();
    cJSON *nd = cJSON_AddObjectToObject(j, "node");
    cJSON_AddStringToObject(nd, "ae_title", c->ae_title);
    cJSON_AddNumberToObject(nd, "port", c->port);
    cJSON_AddNumberToObject(nd, "tls_port", c->tls_port);
    cJSON_AddNumberToObject(nd, "http_port", h->port);
    cJSON_AddStringToObject(nd, "hostname", h->hostname);
    cJSON_AddStringToObject(nd, "version", RP_VERSION);
    cJSON_AddNumberToObject(nd, "pid", (double)getpid());
    cJSON_AddNumberToObject(nd, "started_at", h->started_at);
    cJSON_AddNumberToObject(nd, "uptime_s", rp_now_s() - h->started_at);
    cJSON_AddStringToObject(nd, "data_dir", c->data_dir);
    /* the same fields, names and queries as `radprep status --json` */
    rp_db_status_json(&n, c->data_dir, c->min_free_mb, j);
    /* live figures of this process (the metrics registry) */
    cJSON *live = cJSON_AddObjectToObject(j, "live");
    cJSON_AddNumberToObject(live, "associations_open", rp_metrics_sum(RP_M_ASSOCIATIONS_OPEN));
    cJSON_AddNumberToObject(live, "instances_received", rp_metrics_sum(RP_M_INSTANCES_RECEIVED));
    cJSON_AddNumberToObject(live, "bytes_received", rp_metrics_sum(RP_M_BYTES_RECEIVED));
    add_rate(live, h, "rate_1m", 60);
    add_rate(live, h, "rate_5m", 300);
    add_rate(live, h, "rate_15m", 900);
    cJSON_AddItemToObject(live, "samples", rp_http_rate_series(h));
    cJSON *w = cJSON_AddArrayToObject(j, "warnings");
    rp_db_console_warnings(r->db, 10, rp_http_json_row, w);
    return j;
}

/* ---- series ---------------------------------------------------------------------------------- */

cJSON *rp_http_api_series_list(rp_http_req *r)
{
    int per = int_arg(r, "per_page", 50, 1, 500);
    int page = int_arg(r, "page", 1, 1, 1000000);
    const char *q = rp_http_arg(r, "q");
    if (q && strlen(q) > 128)
        q = NULL;
    rp_db_series_query sq = {.text = q && *q ? q : NULL,
                             .state = word_arg(r, "state"),
                             .modality = word_arg(r, "modality"),
                             .offset = (page - 1) * per,
                             .limit = per};
    cJSON *j = cJSON_CreateObject();
    cJSON *arr = cJSON_CreateArray();
    long long total = 0;
    if (rp_db_console_series(r->db, &sq, &total, rp_http_json_row, arr) != 0) {
        cJSON_Delete(arr);
        cJSON_Delete(j);
        return NULL;
    }
    cJSON_AddNumberToObject(j, "total", (double)total);
    cJSON_AddNumberToObject(j, "page", page);
    cJSON_AddNumberToObject(j, "per_page", per);
    cJSON_AddItemToObject(j, "series", arr);
    return j;
}

static int uid_ok(const char *uid)
{
    size_t n = strlen(uid);
    if (n == 0 || n > RP_UID_MAX)
        return 0;
    for (const char *p = uid; *p; p++)
        if ((*p < '0' || *p > '9') && *p != '.')
            return 0;
    return 1;
}

/* Outputs of one job, each with its download URL. */
static cJSON *outputs_json(rp_db *db, long long job_id)
{
    cJSON *arr = cJSON_CreateArray();
    rp_db_output *outs = NULL;
    size_t n = 0;
    if (rp_db_outputs_list(db, job_id, &outs, &n) != 0)
        return arr;
    for (size_t i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        const char *name = strrchr(outs[i].path, '/');
        name = name ? name + 1 : outs[i].path;
        cJSON_AddNumberToObject(o, "id", (double)outs[i].id);
        cJSON_AddStringToObject(o, "kind", outs[i].kind);
        cJSON_AddStringToObject(o, "name", name);
        cJSON_AddStringToObject(o, "path", outs[i].path);
        cJSON_AddStringToObject(o, "sha256", outs[i].sha256);
        struct stat st;
        cJSON_AddNumberToObject(o, "bytes", stat(outs[i].path, &st) == 0 ? (double)st.st_size : -1);
        char url[64];
        snprintf(url, sizeof url, "/outputs/%lld", outs[i].id);
        cJSON_AddStringToObject(o, "url", url);
        cJSON_AddItemToArray(arr, o);
    }
    free(outs);
    return arr;
}

/* One job's row with its outputs, derived DICOM and their delivery per destination. */
static cJSON *job_json(rp_http_req *r, cJSON *row)
{
    long long id = (long long)rp_http_jn(row, "id");
    cJSON *outs = outputs_json(r->db, id);
    int dicom = 0, seg = 0;
    cJSON *o;
    cJSON_ArrayForEach(o, outs)
    {
        dicom += strcmp(rp_http_js(o, "kind"), "dicom") == 0;
        seg += strcmp(rp_http_js(o, "kind"), "seg") == 0;
    }
    cJSON_AddItemToObject(row, "outputs", outs);
    cJSON *derived = cJSON_AddObjectToObject(row, "derived");
    cJSON_AddNumberToObject(derived, "dicom_instances", dicom);
    cJSON_AddNumberToObject(derived, "seg_instances", seg);
    cJSON *del = cJSON_AddArrayToObject(derived, "delivery");
    const char *dir = rp_http_js(row, "output_dir");
    if (dir[0])
        rp_db_console_delivery(r->db, dir, rp_http_json_row, del);
    char url[64];
    snprintf(url, sizeof url, "/jobs/%lld/log", id);
    cJSON_AddStringToObject(row, "log_url", url);
    return row;
}

cJSON *rp_http_api_series(rp_http_req *r, const char *uid)
{
    if (!uid_ok(uid))
        return NULL;
    rp_db_series_query sq = {.text = uid, .limit = 20};
    cJSON *rows = cJSON_CreateArray();
    rp_db_console_series(r->db, &sq, NULL, rp_http_json_row, rows);
    cJSON *row = NULL, *it;
    cJSON_ArrayForEach(it, rows) if (strcmp(rp_http_js(it, "series_uid"), uid) == 0) row = it;
    if (!row) {
        cJSON_Delete(rows);
        return NULL;
    }
    cJSON_DetachItemViaPointer(rows, row);
    cJSON_Delete(rows);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "series", row);
    /* completion evidence: what the monitor saw and the rule it applied */
    const rp_conf_completion *cc = rp_conf_completion_for(r->h->conf, rp_http_js(row, "modality"));
    cJSON *ev = cJSON_AddObjectToObject(j, "completion");
    cJSON_AddStringToObject(ev, "reason", rp_http_js(row, "completed_reason"));
    cJSON_AddNumberToObject(ev, "completed_at", rp_http_jn(row, "completed_at"));
    cJSON_AddNumberToObject(ev, "last_instance_at", rp_http_jn(row, "last_seen"));
    cJSON_AddNumberToObject(ev, "instances", rp_http_jn(row, "instances"));
    cJSON_AddNumberToObject(ev, "expected", rp_http_jn(row, "expected"));
    cJSON_AddNumberToObject(ev, "quiet_s", cc->quiet_s);
    cJSON_AddBoolToObject(ev, "use_expected_count", cc->use_expected_count);
    if (rp_http_jn(row, "completed_at") > 0 && rp_http_jn(row, "last_seen") > 0)
        cJSON_AddNumberToObject(ev, "latency_s",
                                rp_http_jn(row, "completed_at") - rp_http_jn(row, "last_seen"));
    char needle[RP_UID_MAX + 16];
    snprintf(needle, sizeof needle, "series=%s", uid);
    cJSON *events = cJSON_AddArrayToObject(j, "events");
    rp_db_console_events_about(r->db, NULL, needle, 50, rp_http_json_row, events);
    /* versions, newest first, each with its jobs */
    cJSON *jobs = cJSON_CreateArray();
    rp_db_console_jobs(r->db, NULL, uid, 0, 200, NULL, rp_http_json_row, jobs);
    cJSON *versions = cJSON_AddArrayToObject(j, "versions");
    int cur = (int)rp_http_jn(row, "version");
    for (int v = cur; v >= 1; v--) {
        cJSON *vo = cJSON_CreateObject();
        cJSON_AddNumberToObject(vo, "version", v);
        cJSON_AddBoolToObject(vo, "current", v == cur);
        cJSON_AddBoolToObject(vo, "processed", v <= rp_http_jn(row, "processed_version"));
        cJSON *vj = cJSON_AddArrayToObject(vo, "jobs");
        cJSON *jr = jobs->child;
        while (jr) {
            cJSON *next = jr->next;
            if ((int)rp_http_jn(jr, "version") == v)
                cJSON_AddItemToArray(vj, job_json(r, cJSON_DetachItemViaPointer(jobs, jr)));
            jr = next;
        }
        cJSON_AddItemToArray(versions, vo);
    }
    cJSON_Delete(jobs);
    return j;
}

/* ---- jobs, outbox ---------------------------------------------------------------------------- */

char *rp_http_job_log(rp_http *h, long long job_id, size_t max, size_t *len)
{
    char path[RP_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/logs/job-%lld.log", h->conf->data_dir, job_id);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return NULL;
    }
    off_t from = st.st_size > (off_t)max ? st.st_size - (off_t)max : 0;
    size_t want = (size_t)(st.st_size - from);
    char *buf = malloc(want + 1);
    ssize_t got = buf ? pread(fd, buf, want, from) : -1;
    close(fd);
    if (got < 0) {
        free(buf);
        return NULL;
    }
    buf[got] = '\0';
    *len = (size_t)got;
    return buf;
}

cJSON *rp_http_api_jobs(rp_http_req *r)
{
    int per = int_arg(r, "per_page", 50, 1, 500);
    int page = int_arg(r, "page", 1, 1, 1000000);
    const char *series = word_arg(r, "series");
    cJSON *arr = cJSON_CreateArray();
    long long total = 0;
    if (rp_db_console_jobs(r->db, word_arg(r, "state"), series, (page - 1) * per, per, &total,
                           rp_http_json_row, arr) != 0) {
        cJSON_Delete(arr);
        return NULL;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "total", (double)total);
    cJSON_AddNumberToObject(j, "page", page);
    cJSON_AddNumberToObject(j, "per_page", per);
    cJSON_AddItemToObject(j, "jobs", arr);
    return j;
}

cJSON *rp_http_api_job(rp_http_req *r, long long id)
{
    rp_db_job job;
    if (rp_db_job_get(r->db, id, &job) != 0)
        return NULL;
    cJSON *rows = cJSON_CreateArray();
    rp_db_console_jobs(r->db, NULL, job.series_uid, 0, 0, NULL, rp_http_json_row, rows);
    cJSON *row = NULL, *it;
    cJSON_ArrayForEach(it, rows) if ((long long)rp_http_jn(it, "id") == id) row = it;
    if (!row) {
        cJSON_Delete(rows);
        return NULL;
    }
    cJSON_DetachItemViaPointer(rows, row);
    cJSON_Delete(rows);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddItemToObject(j, "job", job_json(r, row));
    size_t len = 0;
    char *log = rp_http_job_log(r->h, id, 8192, &len);
    if (log) {
        cJSON_AddStringToObject(j, "log_tail", log);
        free(log);
    } else {
        cJSON_AddNullToObject(j, "log_tail");
    }
    return j;
}

cJSON *rp_http_api_outbox(rp_http_req *r)
{
    int per = int_arg(r, "per_page", 50, 1, 500);
    int page = int_arg(r, "page", 1, 1, 1000000);
    cJSON *arr = cJSON_CreateArray();
    long long total = 0;
    if (rp_db_console_outbox(r->db, word_arg(r, "state"), word_arg(r, "destination"),
                             (page - 1) * per, per, &total, rp_http_json_row, arr) != 0) {
        cJSON_Delete(arr);
        return NULL;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "total", (double)total);
    cJSON_AddNumberToObject(j, "page", page);
    cJSON_AddNumberToObject(j, "per_page", per);
    cJSON_AddItemToObject(j, "entries", arr);
    cJSON *groups = cJSON_AddArrayToObject(j, "by_destination");
    rp_db_console_outbox_groups(r->db, rp_http_json_row, groups);
    return j;
}

/* ---- peers ----------------------------------------------------------------------------------- */

static cJSON *find_by(cJSON *arr, const char *key, const char *val)
{
    cJSON *it;
    cJSON_ArrayForEach(it, arr) if (strcmp(rp_http_js(it, key), val) == 0) return it;
    return NULL;
}

cJSON *rp_http_api_peers(rp_http_req *r)
{
    const rp_conf *c = r->h->conf;
    cJSON *senders = cJSON_CreateArray();
    rp_db_console_senders(r->db, rp_http_json_row, senders);
    cJSON *groups = cJSON_CreateArray();
    rp_db_console_outbox_groups(r->db, rp_http_json_row, groups);
    cJSON *j = cJSON_CreateObject();
    cJSON *peers = cJSON_AddArrayToObject(j, "peers");
    for (size_t i = 0; i < c->n_peers; i++) {
        const rp_conf_peer *p = &c->peers[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", p->name);
        cJSON_AddStringToObject(o, "ae_title", p->ae_title);
        cJSON_AddStringToObject(o, "host", p->host);
        cJSON_AddNumberToObject(o, "port", p->port);
        cJSON_AddBoolToObject(o, "store", p->may_store);
        cJSON_AddBoolToObject(o, "echo", p->may_echo);
        cJSON_AddBoolToObject(o, "destination", p->is_destination);
        cJSON_AddBoolToObject(o, "tls_only", p->tls_only);
        cJSON *tb = cJSON_AddObjectToObject(o, "tls_binding");
        cJSON_AddStringToObject(tb, "cert_fingerprint", p->cert_fingerprint);
        cJSON_AddStringToObject(tb, "cert_subject", p->cert_subject);
        cJSON *s = find_by(senders, "calling_ae", p->ae_title);
        cJSON_AddNumberToObject(o, "instances", s ? rp_http_jn(s, "instances") : 0);
        cJSON_AddNumberToObject(o, "bytes", s ? rp_http_jn(s, "bytes") : 0);
        cJSON_AddNumberToObject(o, "series", s ? rp_http_jn(s, "series") : 0);
        cJSON_AddNumberToObject(o, "last_received", s ? rp_http_jn(s, "last_received") : -1);
        char needle[64];
        snprintf(needle, sizeof needle, "calling_ae=%s", p->ae_title);
        cJSON *last = cJSON_CreateArray();
        rp_db_console_events_about(r->db, "association", needle, 1, rp_http_json_row, last);
        cJSON_AddItemToObject(o, "last_association",
                              cJSON_GetArraySize(last) ? cJSON_DetachItemFromArray(last, 0)
                                                       : cJSON_CreateNull());
        cJSON_Delete(last);
        cJSON *sent = cJSON_AddObjectToObject(o, "outbox");
        cJSON *g;
        cJSON_ArrayForEach(g, groups) if (strcmp(rp_http_js(g, "destination"), p->name) == 0)
            cJSON_AddNumberToObject(sent, rp_http_js(g, "state"), rp_http_jn(g, "n"));
        cJSON_AddItemToArray(peers, o);
    }
    /* callers the configuration does not name (allowed when no [peer] is configured) */
    cJSON *others = cJSON_AddArrayToObject(j, "other_senders");
    cJSON *s;
    cJSON_ArrayForEach(s, senders) if (!rp_conf_peer_by_ae(c, rp_http_js(s, "calling_ae")))
        cJSON_AddItemToArray(others, cJSON_Duplicate(s, 1));
    cJSON_Delete(senders);
    cJSON_Delete(groups);
    return j;
}

/* ---- configuration (read-only, secrets and key paths redacted) ------------------------------- */

static void add_path(cJSON *o, const char *key, const char *v, int secret)
{
    if (!v[0])
        cJSON_AddStringToObject(o, key, "");
    else
        cJSON_AddStringToObject(o, key, secret ? "(redacted)" : v);
}

cJSON *rp_http_api_config(rp_http_req *r)
{
    const rp_conf *c = r->h->conf;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "source", c->source);
    cJSON *n = cJSON_AddObjectToObject(j, "node");
    cJSON_AddStringToObject(n, "ae_title", c->ae_title);
    cJSON_AddNumberToObject(n, "port", c->port);
    cJSON_AddStringToObject(n, "bind", c->bind);
    cJSON_AddStringToObject(n, "data_dir", c->data_dir);
    char od[RP_PATH_MAX + 16];
    cJSON_AddStringToObject(n, "outputs_dir", rp_conf_outputs_dir(c, od, sizeof od));
    cJSON_AddNumberToObject(n, "max_associations", c->max_associations);
    cJSON_AddNumberToObject(n, "max_associations_per_peer", c->max_associations_per_peer);
    cJSON_AddNumberToObject(n, "acse_timeout_s", c->acse_timeout_s);
    cJSON_AddNumberToObject(n, "dimse_timeout_s", c->dimse_timeout_s);
    cJSON_AddNumberToObject(n, "network_timeout_s", c->network_timeout_s);
    cJSON_AddNumberToObject(n, "max_pdu", c->max_pdu);
    cJSON_AddNumberToObject(n, "min_free_mb", (double)c->min_free_mb);
    static const char *const dup[] = {"keep_first", "replace", "reject"};
    cJSON_AddStringToObject(n, "duplicate_policy", dup[c->duplicate_policy % 3]);
    cJSON_AddNumberToObject(n, "max_instance_mb", (double)c->max_instance_mb);
    cJSON_AddStringToObject(n, "log_file", c->log_file);
    cJSON_AddStringToObject(n, "log_level", c->log_level);
    cJSON_AddStringToObject(n, "uid_root", c->uid_root);
    cJSON_AddNumberToObject(n, "workers", c->workers);
    cJSON_AddNumberToObject(n, "job_timeout_s", c->job_timeout_s);
    cJSON_AddNumberToObject(n, "job_memory_mb", (double)c->job_memory_mb);
    cJSON_AddNumberToObject(n, "job_max_attempts", c->job_max_attempts);
    cJSON_AddNumberToObject(n, "index_batch", c->index_batch);
    cJSON_AddNumberToObject(n, "index_flush_ms", c->index_flush_ms);
    cJSON *t = cJSON_AddObjectToObject(j, "tls");
    cJSON_AddNumberToObject(t, "port", c->tls_port);
    add_path(t, "cert", c->tls_cert, 0);
    add_path(t, "key", c->tls_key, 1);
    add_path(t, "key_passphrase_file", c->tls_key_passphrase_file, 1);
    add_path(t, "ca_file", c->tls_ca_file, 0);
    add_path(t, "ca_dir", c->tls_ca_dir, 0);
    cJSON_AddStringToObject(t, "profile", c->tls_profile);
    cJSON_AddBoolToObject(t, "require_client_cert", c->tls_require_client_cert);
    cJSON_AddNumberToObject(t, "expiry_warn_days", c->tls_expiry_warn_days);
    cJSON *hh = cJSON_AddObjectToObject(j, "http");
    cJSON_AddNumberToObject(hh, "port", c->http_port);
    cJSON_AddStringToObject(hh, "bind", c->http_bind);
    cJSON_AddBoolToObject(hh, "tls", c->http_tls);
    add_path(hh, "token_file", c->http_token_file, 1);
    cJSON_AddBoolToObject(hh, "client_cert", c->http_client_cert);
    cJSON_AddBoolToObject(hh, "metrics_open", c->http_metrics_open);
    cJSON_AddNumberToObject(hh, "max_connections", c->http_max_connections);
    cJSON_AddNumberToObject(hh, "threads", c->http_threads);
    cJSON *comp = cJSON_AddArrayToObject(j, "completion");
    for (size_t i = 0; i < c->n_completion; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "modality", c->completion[i].modality);
        cJSON_AddNumberToObject(o, "quiet_s", c->completion[i].quiet_s);
        cJSON_AddBoolToObject(o, "use_expected_count", c->completion[i].use_expected_count);
        cJSON_AddItemToArray(comp, o);
    }
    cJSON *rules = cJSON_AddArrayToObject(j, "rules");
    for (size_t i = 0; i < c->n_rules; i++) {
        const rp_conf_rule *ru = &c->rules[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", ru->name);
        cJSON_AddStringToObject(o, "modality", ru->modality);
        cJSON_AddStringToObject(o, "body_part", ru->body_part);
        cJSON_AddStringToObject(o, "series_description", ru->series_description);
        cJSON_AddStringToObject(o, "steps", ru->steps);
        cJSON_AddStringToObject(o, "outputs", ru->outputs);
        cJSON_AddStringToObject(o, "send_to", ru->send_to);
        cJSON_AddNumberToObject(o, "priority", ru->priority);
        cJSON_AddBoolToObject(o, "builtin", ru->builtin);
        cJSON_AddItemToArray(rules, o);
    }
    cJSON *fus = cJSON_AddArrayToObject(j, "fusions");
    for (size_t i = 0; i < c->n_fusions; i++) {
        const rp_conf_fusion *f = &c->fusions[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", f->name);
        cJSON_AddStringToObject(o, "modality", f->modality);
        cJSON *seqs = cJSON_AddArrayToObject(o, "sequences");
        for (int k = 0; k < f->n_seq; k++)
            cJSON_AddItemToArray(seqs, cJSON_CreateString(f->seq[k].name));
        cJSON_AddStringToObject(o, "normalize", f->normalize);
        cJSON_AddItemToArray(fus, o);
    }
    /* peers without their certificate bindings (those are on the peers page) */
    cJSON *peers = cJSON_AddArrayToObject(j, "peers");
    for (size_t i = 0; i < c->n_peers; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", c->peers[i].name);
        cJSON_AddStringToObject(o, "ae_title", c->peers[i].ae_title);
        cJSON_AddStringToObject(o, "host", c->peers[i].host);
        cJSON_AddNumberToObject(o, "port", c->peers[i].port);
        cJSON_AddItemToArray(peers, o);
    }
    return j;
}

/* ---- dispatch -------------------------------------------------------------------------------- */

static long long id_of(const char *s, const char *suffix)
{
    char *end = NULL;
    long long id = strtoll(s, &end, 10);
    if (end == s || id <= 0 || strcmp(end, suffix) != 0)
        return 0;
    return id;
}

static void answer(rp_http_req *r, rp_http_resp *o, cJSON *j, const char *what)
{
    if (!j)
        rp_http_resp_error(r, o, 404, what);
    else
        rp_http_resp_json(o, 200, j);
}

void rp_http_api(rp_http_req *r, rp_http_resp *o, const char *rest)
{
    char uid[RP_UID_MAX + 1];
    long long id;
    if (r->is_post) {
        const char *slash = strchr(rest, '/');
        if (strncmp(rest, "series/", 7) == 0 && (slash = strchr(rest + 7, '/')) &&
            (size_t)(slash - rest - 7) < sizeof uid) {
            memcpy(uid, rest + 7, (size_t)(slash - rest - 7));
            uid[slash - rest - 7] = '\0';
            if (strcmp(slash, "/trigger") == 0 && uid_ok(uid)) {
                rp_http_action_trigger(r, o, uid);
                return;
            }
        } else if (strncmp(rest, "jobs/", 5) == 0 && (id = id_of(rest + 5, "/retry")) > 0) {
            rp_http_action_job_retry(r, o, id);
            return;
        } else if (strncmp(rest, "outbox/", 7) == 0 && (id = id_of(rest + 7, "/retry")) > 0) {
            rp_http_action_outbox_retry(r, o, id);
            return;
        }
        rp_http_resp_error(r, o, 404, "no such action");
        return;
    }
    if (strcmp(rest, "status") == 0) {
        answer(r, o, rp_http_api_status(r), "index unreadable");
    } else if (strcmp(rest, "series") == 0) {
        answer(r, o, rp_http_api_series_list(r), "index unreadable");
    } else if (strncmp(rest, "series/", 7) == 0) {
        answer(r, o, rp_http_api_series(r, rest + 7), "no such series");
    } else if (strcmp(rest, "jobs") == 0) {
        answer(r, o, rp_http_api_jobs(r), "index unreadable");
    } else if (strncmp(rest, "jobs/", 5) == 0 && (id = id_of(rest + 5, "")) > 0) {
        answer(r, o, rp_http_api_job(r, id), "no such job");
    } else if (strcmp(rest, "outbox") == 0) {
        answer(r, o, rp_http_api_outbox(r), "index unreadable");
    } else if (strcmp(rest, "peers") == 0) {
        answer(r, o, rp_http_api_peers(r), "index unreadable");
    } else if (strcmp(rest, "config") == 0) {
        answer(r, o, rp_http_api_config(r), "no configuration");
    } else if (strcmp(rest, "session") == 0) {
        cJSON *j = cJSON_CreateObject();
        static const char *const kinds[] = {"none", "token", "session", "client_cert"};
        cJSON_AddBoolToObject(j, "authenticated", r->auth != RP_AUTH_NONE);
        cJSON_AddStringToObject(j, "auth", kinds[r->auth]);
        if (r->csrf[0])
            cJSON_AddStringToObject(j, "csrf", r->csrf);
        else
            cJSON_AddNullToObject(j, "csrf");
        cJSON_AddBoolToObject(j, "actions_enabled", r->h->token[0] || r->h->client_cert);
        rp_http_resp_json(o, 200, j);
    } else {
        rp_http_resp_error(r, o, 404, "no such API endpoint");
    }
}
