/*
 * http/actions — the console's three writes: trigger a receiving series, re-run a job,
 * retry a dead delivery. Each checks the caller (authentication + CSRF + same origin) before
 * touching anything, runs the same db function as the CLI command it mirrors (radprep
 * trigger / reprocess / send), on its own short-lived read-write handle, and leaves an
 * audit event (kind 'console') saying who did what and how it went.
 */
#include "http/http_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "metrics/metrics.h"

#define MOD "http"

static const char *who(const rp_http_req *r)
{
    static const char *const kinds[] = {"none", "token", "session", "client_cert"};
    return kinds[r->auth];
}

static void audit(rp_http_req *r, rp_db *db, const char *action, const char *target,
                  const char *result, const char *detail)
{
    char line[900];
    snprintf(line, sizeof line, "action=%s %s result=%s by=%s principal=%s remote=%s%s%s", action,
             target, result, who(r), r->principal[0] ? r->principal : "-",
             r->remote_ip[0] ? r->remote_ip : "-", detail && *detail ? " " : "",
             detail ? detail : "");
    int rc = db ? rp_db_event_add(db, "console", line) : RP_EINVAL;
    RP_INFO(MOD, "console %s", line);
    if (rc != 0)
        RP_WARN(MOD, "cannot record the console audit event err=\"%s\"", rp_strerror(rc));
}

/* Finish an action: a browser form (it sent `next`) goes back to its page with a message;
 * an API client gets JSON. */
static void done(rp_http_req *r, rp_http_resp *o, int status, cJSON *j, const char *msg)
{
    const char *next = rp_http_arg(r, "next");
    if (next && next[0] == '/' && next[1] != '/' && next[1] != '\\' && strlen(next) < 300 &&
        !strpbrk(next, "\r\n")) {
        rp_hbuf b;
        rp_hbuf_init(&b);
        rp_hbuf_put(&b, next);
        rp_hbuf_put(&b, strchr(next, '?') ? "&" : "?");
        rp_hbuf_put(&b, status < 300 ? "msg=" : "err=");
        rp_hbuf_url(&b, msg);
        char *loc = rp_hbuf_take(&b, NULL);
        rp_http_resp_redirect(o, loc ? loc : "/");
        free(loc);
        cJSON_Delete(j);
        return;
    }
    if (!j)
        j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "ok", status < 300);
    cJSON_AddStringToObject(j, "message", msg);
    rp_http_resp_json(o, status, j);
}

/* The checks every action runs first; 0 with *db open read-write, or the answer is set. */
static int begin(rp_http_req *r, rp_http_resp *o, const char *action, const char *target,
                 rp_db **db)
{
    *db = NULL;
    char why[200];
    if (rp_http_auth_check_action(r, why, sizeof why) != 0) {
        /* An authenticated caller with a bad CSRF token is worth an audit row; anonymous
         * attempts only get a log line (they must not be able to grow the events table). */
        if (r->auth != RP_AUTH_NONE && rp_db_open(r->h->db_path, db) == 0) {
            char d[260];
            snprintf(d, sizeof d, "reason=\"%s\"", why);
            audit(r, *db, action, target, "refused", d);
            rp_db_close(*db);
            *db = NULL;
        } else {
            RP_WARN(MOD, "console action refused action=%s %s remote=%s reason=\"%s\"", action,
                    target, r->remote_ip, why);
        }
        rp_http_resp_error(r, o, 403, why);
        return RP_EPERM;
    }
    if (rp_db_open(r->h->db_path, db) != 0) {
        rp_http_resp_error(r, o, 503, "the index cannot be opened for writing");
        return RP_EDB;
    }
    return 0;
}

void rp_http_action_trigger(rp_http_req *r, rp_http_resp *o, const char *uid)
{
    char target[RP_UID_MAX + 16];
    snprintf(target, sizeof target, "series=%s", uid);
    rp_db *db;
    if (begin(r, o, "trigger", target, &db) != 0)
        return;
    long long job = 0;
    int rc =
        rp_db_series_complete(db, uid, 0, RP_COMPLETED_OPERATOR, r->h->conf->job_max_attempts, &job);
    char msg[200], d[64];
    cJSON *j = cJSON_CreateObject();
    int status = 200;
    if (rc == 0) {
        char detail[256];
        snprintf(detail, sizeof detail, "series=%s reason=operator job=%lld via=console", uid, job);
        rp_db_event_add(db, "series_complete", detail);
        rp_metrics_add(RP_M_SERIES_COMPLETED, 1, "operator");
        snprintf(msg, sizeof msg, "series complete (operator), job %lld queued", job);
        snprintf(d, sizeof d, "job=%lld", job);
        cJSON_AddNumberToObject(j, "job", (double)job);
        audit(r, db, "trigger", target, "ok", d);
    } else if (rc == RP_EEXIST) {
        status = 409;
        snprintf(msg, sizeof msg,
                 "the series is not receiving: nothing to trigger (re-run its "
                 "job instead)");
        audit(r, db, "trigger", target, "refused", "reason=not_receiving");
    } else if (rc == RP_ENOENT) {
        status = 404;
        snprintf(msg, sizeof msg, "no such series");
        audit(r, db, "trigger", target, "refused", "reason=unknown_series");
    } else {
        status = 500;
        snprintf(msg, sizeof msg, "cannot trigger: %s", rp_strerror(rc));
        audit(r, db, "trigger", target, "failed", NULL);
    }
    rp_db_close(db);
    done(r, o, status, j, msg);
}

void rp_http_action_job_retry(rp_http_req *r, rp_http_resp *o, long long id)
{
    char target[48];
    snprintf(target, sizeof target, "job=%lld", id);
    rp_db *db;
    if (begin(r, o, "job_retry", target, &db) != 0)
        return;
    rp_db_job job;
    rp_db_series_info si;
    memset(&job, 0, sizeof job);
    char msg[300];
    int status = 200;
    cJSON *j = cJSON_CreateObject();
    int rc = rp_db_job_get(db, id, &job);
    if (rc != 0) {
        status = 404;
        snprintf(msg, sizeof msg, "no such job");
    } else if (job.kind != RP_JOB_KIND_PROCESS) {
        status = 409;
        snprintf(msg, sizeof msg, "a %s job is re-run with radprep fuse, not from here", rp_job_kind_name(job.kind));
    } else if ((rc = rp_db_series_get(db, job.series_uid, &si)) != 0) {
        status = 404;
        snprintf(msg, sizeof msg, "the job's series is no longer in the index");
    } else if (si.version != job.version) {
        status = 409;
        snprintf(msg, sizeof msg,
                 "job %lld is for version %d; the series is at version %d now: re-run its "
                 "current job instead",
                 id, job.version, si.version);
    } else {
        long long jid = 0;
        rc = rp_db_series_reprocess(db, job.series_uid, r->h->conf->job_max_attempts,
                                    &jid);
        if (rc == 0) {
            snprintf(msg, sizeof msg, "job %lld queued again (version %d)", jid, si.version);
            cJSON_AddNumberToObject(j, "job", (double)jid);
        } else if (rc == RP_EBUSY) {
            status = 409;
            snprintf(msg, sizeof msg, "job %lld is running now; try again when it has finished",
                     id);
        } else {
            status = 500;
            snprintf(msg, sizeof msg, "cannot re-run: %s", rp_strerror(rc));
        }
    }
    char d[400];
    snprintf(d, sizeof d, "series=%s message=\"%s\"", job.series_uid[0] ? job.series_uid : "-",
             msg);
    audit(r, db, "job_retry", target, status == 200 ? "ok" : "refused", d);
    rp_db_close(db);
    done(r, o, status, j, msg);
}

void rp_http_action_outbox_retry(rp_http_req *r, rp_http_resp *o, long long id)
{
    char target[48];
    snprintf(target, sizeof target, "outbox=%lld", id);
    rp_db *db;
    if (begin(r, o, "outbox_retry", target, &db) != 0)
        return;
    long long n = 0;
    int rc = rp_db_outbox_requeue(db, RP_OUTBOX_DEAD, NULL, id, &n);
    char msg[200];
    int status = 200;
    if (rc != 0) {
        status = 500;
        snprintf(msg, sizeof msg, "cannot retry: %s", rp_strerror(rc));
    } else if (n == 0) {
        status = 409;
        snprintf(msg, sizeof msg, "outbox entry %lld is not dead (or does not exist)", id);
    } else {
        snprintf(msg, sizeof msg, "outbox entry %lld will be sent again now", id);
    }
    audit(r, db, "outbox_retry", target, status == 200 ? "ok" : "refused", NULL);
    rp_db_close(db);
    done(r, o, status, NULL, msg);
}
