/* qr/run — retrieving a plan, gently: lanes (max_concurrent threads, one association each)
 * take series from a shared cursor; each lane pauses pause_ms between its moves; nothing
 * starts after the deadline (the end of the window); a PACS that is down is retried with a
 * doubling backoff; a failure that would repeat for every series stops the run. Every series
 * requested gets a pull_items row before its move and its outcome after. */
#include "qr/qr_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "store/store.h"

#define MOD "pull"

typedef struct run_ctx {
    const rp_conf *c;
    const rp_qr_pull_request *r;
    rp_qr_plan *plan;
    rp_qr_peer peer;
    char db_path[RP_PATH_MAX + 64];
    long long pull_id;
    rp_store *store; /* C-GET only */
    pthread_mutex_t mu;
    size_t next;      /* cursor into plan->t */
    int stop;         /* a fatal failure: start nothing more */
    int window_closed;
} run_ctx;

typedef struct lane {
    run_ctx *x;
    int id;
    rp_db *db;
    rp_qr *q;
    pthread_t th;
} lane;

static void say(run_ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(run_ctx *x, const char *fmt, ...)
{
    if (!x->r->out)
        return;
    va_list ap;
    va_start(ap, fmt);
    flockfile(x->r->out);
    vfprintf(x->r->out, fmt, ap);
    fflush(x->r->out);
    funlockfile(x->r->out);
    va_end(ap);
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* ---- C-GET sink: the store's durable commit, then the index ---- */

typedef struct get_sink_ctx {
    run_ctx *x;
    rp_db *db;
} get_sink_ctx;

static int sink_spool(void *user, char *path, size_t pathsz)
{
    get_sink_ctx *g = user;
    int fd = -1;
    int rc = rp_store_space_check(g->x->store);
    if (rc == 0)
        rc = rp_store_spool_new(g->x->store, path, pathsz, &fd);
    if (fd >= 0)
        close(fd); /* dcmtk writes the file by name */
    return rc;
}

static int sink_commit(void *user, const char *path, const char *sop_class, const char *sop_uid,
                       char *why, size_t whysz)
{
    get_sink_ctx *g = user;
    rp_store_put_args a = {.expect_sop_instance_uid = sop_uid,
                              .expect_sop_class_uid = sop_class,
                              .calling_ae = g->x->peer.called_ae,
                              .peer_host = g->x->peer.host};
    rp_instance_meta meta;
    rp_store_outcome oc;
    /* dcmtk wrote and closed the file; the commit's fsync needs an fd, so sync it here. */
    int rc = rp_fsync_path(path, 0);
    if (rc != 0) {
        snprintf(why, whysz, "fsync of the received instance failed");
        unlink(path);
        return rc;
    }
    rc = rp_store_put(g->x->store, path, -1, &a, &meta, &oc, why, whysz);
    if (rc != 0)
        return rc;
    meta.received_at = rp_now_s();
    rc = rp_db_index_instances(g->db, &meta, 1);
    if (rc != 0)
        /* Durable in the store: reconciliation indexes it if we cannot now. */
        RP_WARN(MOD, "indexing a retrieved instance failed sop=%s rc=%s", sop_uid,
                rp_strerror(rc));
    return 0;
}

/* ---- one series ---- */

static const char *state_word(rp_qr_series_state s)
{
    static const char *const w[] = {"moving", "moved", "changed", "partial", "failed", "left"};
    return w[s];
}

/* A move refused before any sub-operation most often means the PACS does not know where to
 * send: say which AE, host and port it should know (0xA801 says so itself; Orthanc answers
 * 0xC000 with no comment). */
static void move_destination_hint(run_ctx *x, rp_qr_result *res)
{
    size_t len = strlen(res->reason);
    if (res->status == 0xA801)
        snprintf(res->reason + len, sizeof res->reason - len,
                 ": the PACS does not know the move destination %s (this node): register it "
                 "there with this node's host and port %d",
                 x->c->ae_title, x->c->port);
    else if ((res->status & 0xF000) == 0xC000)
        snprintf(res->reason + len, sizeof res->reason - len,
                 "; nothing was sent: does the PACS know the move destination %s (this node, "
                 "port %d)?",
                 x->c->ae_title, x->c->port);
}

static void retrieve_one(lane *l, rp_qr_target *t)
{
    run_ctx *x = l->x;
    const rp_qr_pull_request *r = x->r;
    unsigned services = r->method == RP_PULL_GET ? RP_QR_GET : RP_QR_MOVE;
    rp_db_pull_item it;
    memset(&it, 0, sizeof it);
    rp_strlcpy(it.study_uid, t->study_uid, sizeof it.study_uid);
    rp_strlcpy(it.series_uid, t->series_uid, sizeof it.series_uid);
    rp_strlcpy(it.modality, t->modality, sizeof it.modality);
    rp_strlcpy(it.description, t->description, sizeof it.description);
    rp_strlcpy(it.rule, r->rule ? r->rule : "", sizeof it.rule);
    it.announced = t->announced;
    it.had = t->have;
    if (rp_db_pull_item_add(l->db, x->pull_id, &it, &t->item_id) != 0)
        RP_ERROR(MOD, "cannot record the series request series=%s", t->series_uid);

    double t0 = rp_mono_s();
    int rc = 0;
    get_sink_ctx g = {x, l->db};
    rp_qr_get_sink sink = {sink_spool, sink_commit, &g};
    for (t->attempts = 1;; t->attempts++) {
        if (!l->q)
            rc = rp_qr_open(&x->peer, services, &l->q, &t->res);
        if (l->q) {
            rc = r->method == RP_PULL_GET
                     ? rp_qr_get(l->q, t->study_uid, t->series_uid, &sink, &t->res)
                     : rp_qr_move(l->q, x->c->ae_title, t->study_uid, t->series_uid, &t->res);
            if (rc == RP_ENET) { /* the association broke: a fresh one next time */
                rp_qr_close(l->q);
                l->q = NULL;
            }
        }
        if (rc != RP_ENET || t->attempts > r->retries)
            break;
        double wait = rp_qr_backoff_s(r->retry_backoff_s, t->attempts);
        if (r->deadline > 0 && rp_now_s() + wait >= r->deadline)
            break;
        say(x, "  PACS %s down (%s): retry %d/%d of series %s in %.0f s\n", x->peer.called_ae,
            t->res.reason, t->attempts, r->retries, t->series_uid, wait);
        RP_WARN(MOD, "PACS down, retrying series=%s attempt=%d wait_s=%.0f reason=\"%s\"",
                t->series_uid, t->attempts, wait, t->res.reason);
        sleep_s(wait);
    }
    t->seconds = rp_mono_s() - t0;
    if (rc == 0) {
        t->state = rp_qr_classify(&t->res, t->announced);
        if (t->state == RP_QR_S_CHANGED)
            snprintf(t->res.reason, sizeof t->res.reason,
                     "series changed on the PACS between C-FIND and %s: announced %lld, "
                     "retrieved %d",
                     r->method == RP_PULL_GET ? "C-GET" : "C-MOVE", t->announced,
                     t->res.completed + t->res.warning);
    } else {
        t->state = rc == RP_EIO ? RP_QR_S_PARTIAL : RP_QR_S_FAILED;
        if (r->method == RP_PULL_MOVE && t->res.outcome == RP_QR_FAILED && t->res.completed == 0)
            move_destination_hint(x, &t->res);
    }
    rp_db_pull_item_finish(l->db, t->item_id, state_word(t->state), t->attempts,
                           t->res.completed, t->res.failed, t->res.warning, t->res.status,
                           t->res.reason);
    char q[600];
    rp_log_kv_quote(t->res.reason, q, sizeof q);
    RP_INFO(MOD,
            "series %s series=%s announced=%lld completed=%d failed=%d warning=%d status=%d "
            "attempts=%d seconds=%.3f reason=%s",
            state_word(t->state), t->series_uid, t->announced, t->res.completed, t->res.failed,
            t->res.warning, t->res.status, t->attempts, t->seconds, q);
    if (t->state == RP_QR_S_MOVED)
        say(x, "  %s %s: %s %d/%lld instances in %.1f s\n", t->modality[0] ? t->modality : "-",
            t->series_uid, r->method == RP_PULL_GET ? "got" : "moved", t->res.completed,
            t->announced, t->seconds);
    else
        say(x, "  %s %s: %s: %s\n", t->modality[0] ? t->modality : "-", t->series_uid,
            state_word(t->state), t->res.reason);
    if (rc != 0 && rp_qr_failure_is_fatal(&t->res)) {
        pthread_mutex_lock(&x->mu);
        x->stop = 1;
        pthread_mutex_unlock(&x->mu);
    }
}

static void *lane_main(void *arg)
{
    lane *l = arg;
    run_ctx *x = l->x;
    int moved = 0;
    if (rp_db_open(x->db_path, &l->db) != 0)
        return NULL;
    for (;;) {
        pthread_mutex_lock(&x->mu);
        rp_qr_target *t = NULL;
        while (x->next < x->plan->n && x->plan->t[x->next].action != RP_QR_T_RETRIEVE)
            x->next++;
        if (!x->stop && x->next < x->plan->n) {
            if (x->r->deadline > 0 && rp_now_s() >= x->r->deadline)
                x->window_closed = 1;
            else
                t = &x->plan->t[x->next++];
        }
        pthread_mutex_unlock(&x->mu);
        if (!t)
            break;
        if (moved++ > 0 && x->r->pause_ms > 0)
            sleep_s(x->r->pause_ms / 1000.0);
        /* the pause may have run into the end of the window */
        if (x->r->deadline > 0 && rp_now_s() >= x->r->deadline) {
            pthread_mutex_lock(&x->mu);
            x->window_closed = 1;
            pthread_mutex_unlock(&x->mu);
            t->state = RP_QR_S_LEFT;
            continue;
        }
        retrieve_one(l, t);
    }
    rp_qr_close(l->q);
    l->q = NULL;
    rp_db_close(l->db);
    return NULL;
}

/* ---- the run ---- */

static void print_plan(run_ctx *x)
{
    const rp_qr_plan *p = x->plan;
    for (size_t i = 0; i < p->n; i++) {
        const rp_qr_target *t = &p->t[i];
        const char *what = t->action == RP_QR_T_PRESENT    ? "present, skip"
                           : t->action == RP_QR_T_RETRIEVE ? "retrieve"
                                                           : "over max_series, next run";
        say(x, "series %s study %s %s #%d \"%s\": announced %lld, here %lld -> %s\n",
            t->series_uid, t->study_uid, t->modality[0] ? t->modality : "-", t->series_number,
            t->description, t->announced, t->have, what);
    }
}

static void report_from_plan(const rp_qr_plan *p, rp_qr_pull_report *rep)
{
    rep->series_found = (int)p->n;
    for (size_t i = 0; i < p->n; i++) {
        const rp_qr_target *t = &p->t[i];
        if (t->action == RP_QR_T_PRESENT) {
            rep->series_present++;
            continue;
        }
        if (t->announced > 0)
            rep->instances_announced += t->announced;
        if (t->state == RP_QR_S_LEFT || t->state == RP_QR_S_PENDING) {
            rep->series_left++;
            continue;
        }
        rep->series_requested++;
        rep->instances_retrieved += t->res.completed + t->res.warning;
        if (t->state == RP_QR_S_MOVED) {
            rep->series_ok++;
        } else {
            rep->series_failed++;
            if (!rep->reason[0]) {
                rp_strlcpy(rep->reason, t->res.reason, sizeof rep->reason);
                rep->last_status = t->res.status;
            }
        }
    }
}

static int run_lanes(run_ctx *x)
{
    int n = x->r->max_concurrent > 0 ? x->r->max_concurrent : 1;
    lane *lanes = calloc((size_t)n, sizeof *lanes);
    if (!lanes)
        return RP_ENOMEM;
    int started = 0;
    for (int i = 0; i < n; i++) {
        lanes[i].x = x;
        lanes[i].id = i;
        if (pthread_create(&lanes[i].th, NULL, lane_main, &lanes[i]) != 0)
            break;
        started++;
    }
    if (started == 0) {
        free(lanes);
        return RP_EINTERNAL;
    }
    for (int i = 0; i < started; i++)
        pthread_join(lanes[i].th, NULL);
    free(lanes);
    return 0;
}

int rp_qr_pull_run(const rp_conf *c, const rp_qr_pull_request *r, rp_qr_pull_report *rep)
{
    memset(rep, 0, sizeof *rep);
    rep->last_status = -1;
    run_ctx x;
    memset(&x, 0, sizeof x);
    x.c = c;
    x.r = r;
    rp_qr_peer_from_conf(c, r->peer, &x.peer);
    pthread_mutex_init(&x.mu, NULL);
    rp_db *db = NULL;
    rp_qr_plan plan;
    memset(&plan, 0, sizeof plan);
    x.plan = &plan;
    snprintf(x.db_path, sizeof x.db_path, "%s/index.sqlite", c->data_dir);
    int rc = rp_db_open(x.db_path, &db);
    if (rc)
        goto out;
    if (r->method == RP_PULL_GET && !r->dry_run && (rc = rp_store_open(c, &x.store)) != 0)
        goto out;

    rp_qr_result res;
    char request[512];
    rp_qr_request_text(r, request, sizeof request);
    if (!r->dry_run &&
        (rc = rp_db_pull_begin(db, r->name, r->peer->name, request, &x.pull_id)) != 0)
        goto out;
    rep->pull_id = x.pull_id;
    double t0 = rp_mono_s();
    rc = rp_qr_plan_build(c, r, db, &plan, &res);
    if (rc) {
        rp_strlcpy(rep->reason, res.reason, sizeof rep->reason);
        rep->last_status = res.status;
        RP_ERROR(MOD, "query failed peer=%s outcome=%s status=%d reason=\"%s\"",
                 r->peer->name, rp_qr_outcome_name(res.outcome), res.status, res.reason);
    } else {
        print_plan(&x);
        if (!r->dry_run)
            rc = run_lanes(&x);
        if (r->dry_run)
            for (size_t i = 0; i < plan.n; i++)
                if (plan.t[i].action == RP_QR_T_RETRIEVE)
                    plan.t[i].state = RP_QR_S_LEFT;
        for (size_t i = 0; i < plan.n; i++) /* not reached by a lane: stopped or closed */
            if (plan.t[i].action == RP_QR_T_RETRIEVE && plan.t[i].state == RP_QR_S_PENDING)
                plan.t[i].state = RP_QR_S_LEFT;
        report_from_plan(&plan, rep);
        rep->window_closed = x.window_closed;
    }
    if (!r->dry_run && x.pull_id > 0) {
        rp_db_pull p;
        memset(&p, 0, sizeof p);
        p.id = x.pull_id;
        const char *state = "done";
        if (rc || (rep->series_failed > 0 && rep->series_ok == 0))
            state = "failed";
        else if (rep->series_failed > 0)
            state = "partial";
        else if (rep->series_left > 0)
            state = "stopped";
        rp_strlcpy(p.state, state, sizeof p.state);
        p.series_found = rep->series_found;
        p.series_present = rep->series_present;
        p.series_requested = rep->series_requested;
        p.series_ok = rep->series_ok;
        p.series_failed = rep->series_failed;
        p.series_left = rep->series_left;
        p.instances_announced = rep->instances_announced;
        p.instances_retrieved = rep->instances_retrieved;
        p.last_status = rep->last_status;
        if (!rep->reason[0] && rep->window_closed)
            snprintf(rep->reason, sizeof rep->reason,
                     "the window closed with %d series left; the next run resumes",
                     rep->series_left);
        rp_strlcpy(p.reason, rep->reason, sizeof p.reason);
        rp_db_pull_finish(db, &p);
        char q[600];
        rp_log_kv_quote(rep->reason, q, sizeof q);
        RP_INFO(MOD,
                "pull %s id=%lld name=%s peer=%s found=%d present=%d requested=%d ok=%d "
                "failed=%d left=%d announced=%lld retrieved=%lld seconds=%.3f reason=%s",
                state, x.pull_id, r->name && *r->name ? r->name : "-", r->peer->name,
                rep->series_found, rep->series_present, rep->series_requested, rep->series_ok,
                rep->series_failed, rep->series_left, rep->instances_announced,
                rep->instances_retrieved, rp_mono_s() - t0, q);
        char detail[900];
        snprintf(detail, sizeof detail,
                 "pull=%lld name=%s peer=%s state=%s ok=%d failed=%d left=%d retrieved=%lld",
                 x.pull_id, r->name && *r->name ? r->name : "-", r->peer->name, state,
                 rep->series_ok, rep->series_failed, rep->series_left, rep->instances_retrieved);
        rp_db_event_add(db, "pull", detail);
    }
    if (rc == 0 && rep->series_failed > 0) {
        /* the first failure decides the code: partial, refused, or the network */
        rc = RP_ENET;
        for (size_t i = 0; i < plan.n; i++)
            if (plan.t[i].state == RP_QR_S_PARTIAL || plan.t[i].state == RP_QR_S_CHANGED ||
                plan.t[i].state == RP_QR_S_FAILED) {
                rc = plan.t[i].state == RP_QR_S_FAILED
                         ? (plan.t[i].res.outcome == RP_QR_UNREACHABLE ||
                                    plan.t[i].res.outcome == RP_QR_NETWORK
                                ? RP_ENET
                                : RP_EREFUSED)
                         : RP_EIO;
                break;
            }
    } else if (rc == 0 && rep->window_closed && rep->series_left > 0) {
        rc = RP_ETIMEOUT;
    }
out:
    rp_qr_plan_free(&plan);
    rp_store_close(x.store);
    rp_db_close(db);
    pthread_mutex_destroy(&x.mu);
    return rc;
}

void rp_qr_pull_defaults(rp_qr_pull_request *r, const rp_conf_peer *peer)
{
    memset(r, 0, sizeof *r);
    r->peer = peer;
    r->method = RP_PULL_MOVE;
    r->max_concurrent = 1;
    r->max_series = 100000;
    r->pause_ms = 0;
    r->retries = 2;
    r->retry_backoff_s = 5;
}

int rp_qr_pull_from_conf(const rp_conf_pull *p, const rp_conf_peer *peer, double now,
                         rp_qr_pull_request *r)
{
    static const rp_qr_selector query = {RP_QR_SEL_QUERY, ""};
    rp_qr_pull_defaults(r, peer);
    r->name = p->name;
    r->sel = &query;
    r->n_sel = 1;
    r->keys.level = RP_QR_STUDY;
    if (rp_conf_pull_date_range(p->study_date, now, r->keys.study_date,
                                sizeof r->keys.study_date) != 0)
        return RP_EINVAL;
    rp_strlcpy(r->keys.patient_id, p->patient_id, sizeof r->keys.patient_id);
    rp_strlcpy(r->keys.accession, p->accession, sizeof r->keys.accession);
    rp_strlcpy(r->keys.modality, p->modality, sizeof r->keys.modality);
    rp_strlcpy(r->keys.body_part, p->body_part, sizeof r->keys.body_part);
    rp_strlcpy(r->keys.study_description, p->study_description,
               sizeof r->keys.study_description);
    rp_strlcpy(r->keys.series_description, p->series_description,
               sizeof r->keys.series_description);
    r->rule = p->rule[0] ? p->rule : NULL;
    r->method = p->method;
    r->max_concurrent = p->max_concurrent;
    r->max_series = p->max_series;
    r->pause_ms = p->pause_ms;
    r->retries = p->retries;
    r->retry_backoff_s = p->retry_backoff_s;
    double end = 0;
    rp_conf_pull_in_window(p, now, &end);
    r->deadline = end;
    return 0;
}
