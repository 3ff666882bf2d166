/* sched/monitor — the completion monitor thread: re-reads the receiving series from the
 * database on every pass, decides with rp_completion_decide(), and completes + enqueues in one
 * transaction. Nothing it knows lives only in memory except a cache of expected counts, which
 * is rebuilt from the database whenever a series' instance count changes. */
#include "sched/sched.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "db/db.h"
#include "metrics/metrics.h"

/* The longest the thread sleeps unless told otherwise: bounds completion latency for changes
 * nobody wakes it for (a trigger from the CLI, another process). Each pass is one indexed
 * query. */
#define RP_MONITOR_POLL_S 0.1

/* Expected count of a series from its instances' headers (loads the instance rows). */
static long long series_expected_load(rp_db *db, const char *series_uid, char *ev, size_t evsz)
{
    rp_instance_meta *m = NULL;
    size_t n = 0;
    ev[0] = '\0';
    if (rp_db_series_instances(db, series_uid, &m, &n) != 0 || n == 0) {
        free(m);
        return -1;
    }
    rp_completion_hint *h = calloc(n, sizeof *h);
    long long e = -1;
    if (h) {
        for (size_t i = 0; i < n; i++) {
            h[i].images_in_acquisition = m[i].images_in_acquisition;
            h[i].number_of_temporal_positions = m[i].number_of_temporal_positions;
            h[i].number_of_slices = m[i].number_of_slices;
            h[i].acquisition_number = m[i].acquisition_number;
            h[i].number_of_frames = m[i].number_of_frames;
            rp_strlcpy(h[i].sop_class_uid, m[i].sop_class_uid, sizeof h[i].sop_class_uid);
        }
        e = rp_completion_expected(h, n, ev, evsz);
    }
    free(h);
    free(m);
    return e;
}

/* A series whose count sits at its hint but whose headers disagree would otherwise be
 * reloaded on every pass until quiet fires: remember the answer per (series, version,
 * count). Only a cache: losing it costs one reload, never a decision. */
#define RP_EXPECT_CACHE 32
static struct expect_cache {
    char uid[RP_UID_MAX + 1];
    int version;
    long long count, expected;
    char ev[128];
} expect_cache[RP_EXPECT_CACHE];
static unsigned expect_next;
static pthread_mutex_t expect_lock = PTHREAD_MUTEX_INITIALIZER;

static long long series_expected(rp_db *db, const rp_db_series_info *s, char *ev, size_t evsz)
{
    pthread_mutex_lock(&expect_lock);
    for (int i = 0; i < RP_EXPECT_CACHE; i++) {
        struct expect_cache *e = &expect_cache[i];
        if (e->count == s->instance_count && e->version == s->version &&
            strcmp(e->uid, s->series_uid) == 0) {
            rp_strlcpy(ev, e->ev, evsz);
            long long x = e->expected;
            pthread_mutex_unlock(&expect_lock);
            return x;
        }
    }
    pthread_mutex_unlock(&expect_lock);
    long long x = series_expected_load(db, s->series_uid, ev, evsz);
    pthread_mutex_lock(&expect_lock);
    struct expect_cache *e = &expect_cache[expect_next++ % RP_EXPECT_CACHE];
    rp_strlcpy(e->uid, s->series_uid, sizeof e->uid);
    e->version = s->version;
    e->count = s->instance_count;
    e->expected = x;
    rp_strlcpy(e->ev, ev, sizeof e->ev);
    pthread_mutex_unlock(&expect_lock);
    return x;
}

/* ---- notes: a small open-addressed table keyed by series UID ---- */

#define RP_NOTE_SLOTS 512
struct rp_completion_notes {
    pthread_mutex_t mu;
    struct {
        char uid[RP_UID_MAX + 1];
        double at;
    } slot[RP_NOTE_SLOTS];
};

rp_completion_notes *rp_completion_notes_new(void)
{
    rp_completion_notes *n = calloc(1, sizeof *n);
    if (n)
        pthread_mutex_init(&n->mu, NULL);
    return n;
}

void rp_completion_notes_free(rp_completion_notes *n)
{
    if (!n)
        return;
    pthread_mutex_destroy(&n->mu);
    free(n);
}

static unsigned note_hash(const char *s)
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % RP_NOTE_SLOTS;
}

void rp_completion_notes_add(rp_completion_notes *n, const char *series_uid, double received_at)
{
    if (!n || !series_uid || !*series_uid)
        return;
    unsigned i = note_hash(series_uid);
    pthread_mutex_lock(&n->mu);
    /* A colliding series simply takes the slot: see the contract. */
    if (strcmp(n->slot[i].uid, series_uid) != 0) {
        rp_strlcpy(n->slot[i].uid, series_uid, sizeof n->slot[i].uid);
        n->slot[i].at = received_at;
    } else if (received_at > n->slot[i].at) {
        n->slot[i].at = received_at;
    }
    pthread_mutex_unlock(&n->mu);
}

int rp_completion_notes_pending(rp_completion_notes *n, const char *series_uid, double last_seen,
                                double now)
{
    if (!n || !series_uid)
        return 0;
    unsigned i = note_hash(series_uid);
    pthread_mutex_lock(&n->mu);
    int pending = strcmp(n->slot[i].uid, series_uid) == 0 && n->slot[i].at > last_seen + 1e-3 &&
                  now - n->slot[i].at < RP_NOTE_HOLD_S;
    pthread_mutex_unlock(&n->mu);
    return pending;
}

static rp_completed_reason completed_reason(rp_complete_why why)
{
    switch (why) {
    case RP_COMPLETE_EXPECTED:
        return RP_COMPLETED_EXPECTED_COUNT;
    case RP_COMPLETE_OPERATOR:
        return RP_COMPLETED_OPERATOR;
    default:
        return RP_COMPLETED_QUIET;
    }
}

int rp_monitor_pass(rp_db *db, const rp_conf *c, rp_completion_notes *notes, double now,
                    int *completed, double *next_wait_s)
{
    rp_db_series_info *list = NULL;
    size_t n = 0;
    if (completed)
        *completed = 0;
    double next = 3600;
    int rc = rp_db_series_receiving(db, &list, &n);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        const rp_db_series_info *s = &list[i];
        const rp_conf_completion *rule = rp_conf_completion_for(c, s->modality);
        char ev[128] = "";
        long long expected = -1;
        /* A retrieve from a PACS announced the series' size (C-FIND) and delivered exactly
         * that: evidence of its own, whatever the headers or use_expected_count say. */
        rp_conf_completion pulled = *rule;
        if (rp_db_pull_announced(db, s->series_uid, &expected) == 0) {
            snprintf(ev, sizeof ev, "announced by C-FIND");
            pulled.use_expected_count = 1;
            rule = &pulled;
        }
        /* Loading every instance row is the costly part: do it only when the cheap hint
         * the index keeps says the count may have been reached (or one instance could be a
         * whole enhanced series). */
        else if (rule->use_expected_count &&
            (s->instance_count == 1 ||
             (s->expected_count > 0 && s->instance_count >= s->expected_count)))
            expected = series_expected(db, s, ev, sizeof ev);
        rp_series_progress p = {.instances = s->instance_count,
                                .last_seen = s->last_seen,
                                .expected = expected,
                                .evidence = ev,
                                .triggered = 0};
        double wait = 0;
        char why[200];
        rp_complete_why w = rp_completion_decide(&p, rule, now, &wait, why, sizeof why);
        if (w == RP_COMPLETE_WAIT) {
            if (wait < next)
                next = wait;
            continue;
        }
        if (rp_completion_notes_pending(notes, s->series_uid, s->last_seen, now)) {
            /* acknowledged instances the index has not written yet: look again shortly */
            RP_DEBUG("monitor",
                     "completion held: instance pending in the index queue "
                     "series=%s",
                     s->series_uid);
            if (next > 0.05)
                next = 0.05;
            continue;
        }
        long long job_id = 0;
        rc = rp_db_series_complete(db, s->series_uid, s->version, completed_reason(w),
                                   c->job_max_attempts, &job_id);
        if (rc == RP_EBUSY || rc == RP_EEXIST) {
            /* a new instance arrived (new version) or someone else completed it: fine */
            RP_DEBUG("monitor", "series moved on series=%s version=%d rc=%s", s->series_uid,
                     s->version, rp_strerror(rc));
            continue;
        }
        if (rc != 0) {
            RP_ERROR("monitor", "cannot complete series=%s version=%d rc=%s", s->series_uid,
                     s->version, rp_strerror(rc));
            continue;
        }
        rp_metrics_add(RP_M_SERIES_COMPLETED, 1, rp_completed_reason_name(completed_reason(w)));
        rp_metrics_observe(RP_M_COMPLETION_LATENCY, now - s->last_seen, rp_completed_reason_name(completed_reason(w)));
        if (expected > 0 && expected != s->expected_count)
            rp_db_series_set_expected(db, s->series_uid, (int)expected);
        char q[260], lt[32];
        rp_log_kv_quote(why, q, sizeof q);
        RP_INFO("monitor",
                "series complete series=%s version=%d modality=%s instances=%lld "
                "reason=%s job=%lld last_instance_at=%s latency_s=%.3f",
                s->series_uid, s->version, s->modality[0] ? s->modality : "-", s->instance_count, q,
                job_id, rp_time_iso8601(s->last_seen, lt, sizeof lt), now - s->last_seen);
        char detail[600];
        snprintf(detail, sizeof detail, "series=%s version=%d instances=%lld reason=%s job=%lld",
                 s->series_uid, s->version, s->instance_count, q, job_id);
        rp_db_event_add(db, "series_complete", detail);
        rp_fusion_on_series_complete(db, c, s->series_uid); /* study-level fusion rules */
        if (completed)
            (*completed)++;
    }
    free(list);
    if (next_wait_s)
        *next_wait_s = next < 0 ? 0 : next;
    return 0;
}

struct rp_monitor {
    const rp_conf *c;
    double poll_s;
    rp_supervisor *sup;
    rp_completion_notes *notes;
    rp_db *db;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping, woken;
};

void rp_monitor_wake(rp_monitor *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->woken = 1;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
}

static void *run(void *arg)
{
    rp_monitor *m = arg;
    for (;;) {
        int done = 0;
        double wait = m->poll_s;
        int rc = rp_monitor_pass(m->db, m->c, m->notes, rp_now_s(), &done, &wait);
        if (rc != 0)
            RP_WARN("monitor", "pass failed rc=%s", rp_strerror(rc));
        if (done > 0)
            rp_supervisor_wake(m->sup);
        if (wait > m->poll_s)
            wait = m->poll_s;
        if (wait < 0.01)
            wait = 0.01;
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long long ns = ts.tv_nsec + (long long)(wait * 1e9);
        ts.tv_sec += ns / 1000000000LL;
        ts.tv_nsec = ns % 1000000000LL;
        pthread_mutex_lock(&m->mu);
        while (!m->woken && !m->stopping)
            if (pthread_cond_timedwait(&m->cv, &m->mu, &ts) == ETIMEDOUT)
                break;
        m->woken = 0;
        int stop = m->stopping;
        pthread_mutex_unlock(&m->mu);
        if (stop)
            break;
    }
    return NULL;
}

int rp_monitor_start(const rp_conf *c, const char *db_path, double poll_s, rp_supervisor *sup,
                     rp_completion_notes *notes, rp_monitor **out)
{
    *out = NULL;
    rp_monitor *m = calloc(1, sizeof *m);
    if (!m)
        return RP_ENOMEM;
    m->c = c;
    m->poll_s = poll_s > 0 ? poll_s : RP_MONITOR_POLL_S;
    m->sup = sup;
    m->notes = notes;
    int rc = rp_db_open(db_path, &m->db);
    if (rc != 0) {
        free(m);
        return rc;
    }
    pthread_mutex_init(&m->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&m->thread, NULL, run, m) != 0) {
        pthread_cond_destroy(&m->cv);
        pthread_mutex_destroy(&m->mu);
        rp_db_close(m->db);
        free(m);
        return RP_EINTERNAL;
    }
    RP_INFO("monitor", "started poll_s=%.2f", m->poll_s);
    *out = m;
    return 0;
}

void rp_monitor_stop(rp_monitor *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->stopping = 1;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    rp_db_close(m->db);
    free(m);
}
