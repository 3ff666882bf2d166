/*
 * outbox/outbox — the outbox sender threads and queueing (contract in outbox/outbox.h).
 *
 * Shape: one rp_outbox owns the destination list and N worker threads; worker w serves
 * destinations w, w+N, w+2N... Each worker has its own db handle (db.h: one per thread).
 * Per destination the worker keeps a failure streak and a gate time: while a destination is
 * down nothing of it is claimed before the gate, and every row it puts back is due exactly
 * at the gate, so the whole destination resumes together when it comes back.
 */
#include "outbox/outbox.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include "common/common.h"
#include "metrics/metrics.h"
#include "tls/tls.h"

#define MOD "outbox"

typedef struct dest_state {
    rp_conf_peer peer;
    int fail_streak;
    double gate_until;   /* wall clock; 0: open */
    int narrow_to;       /* > 0: fewer associations than configured, the peer refused more */
    double narrow_until; /* wall clock: then the configured number is tried again */
} dest_state;

typedef struct worker {
    struct rp_outbox *ob;
    pthread_t th;
    int idx;
    int started;
} worker;

struct rp_outbox {
    rp_outbox_opts o;
    char db_path[RP_PATH_MAX];
    char calling_ae[RP_AE_MAX + 1];
    int acse_timeout_s, dimse_timeout_s, connect_timeout_s;
    unsigned max_pdu;
    rp_tls *tls; /* client TLS layer for tls_only destinations (tls/tls.h), or NULL */
    dest_state *dests;
    size_t n_dests;
    worker *workers;
    int n_workers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    volatile int stop;
    unsigned kicks;
    rp_outbox_totals totals;
};

static void add_totals(rp_outbox *ob, const rp_outbox_totals *t)
{
    pthread_mutex_lock(&ob->mu);
    ob->totals.sent += t->sent;
    ob->totals.retried += t->retried;
    ob->totals.dead += t->dead;
    ob->totals.associations += t->associations;
    ob->totals.bytes += t->bytes;
    ob->totals.send_seconds += t->send_seconds;
    pthread_mutex_unlock(&ob->mu);
}

/* A peer we can send to. A tls_only peer is sent to over TLS with the node's [tls]
 * certificate (conf refuses tls_only without [tls]; a TLS layer that cannot be built at
 * start leaves such a destination out, logged). */
static int dest_usable(const rp_conf_peer *p)
{
    return p->is_destination && p->port > 0 && p->port <= 65535 && p->host[0] && p->ae_title[0];
}

static const char *unusable_reason(const rp_conf_peer *p)
{
    if (!p)
        return "is not configured";
    if (!p->is_destination)
        return "is not a destination (destination = yes)";
    return "lacks host, port or ae_title";
}

static double backoff(const rp_outbox *ob, int streak)
{
    return rp_db_backoff_s(streak > 1 ? streak : 1, ob->o.base_delay_s, ob->o.max_delay_s);
}

/* What a file of a job's dicom/ folder is, by the names pipeline/write gives them. */
static int result_kind_of(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    if (!strcmp(b, "seg.dcm"))
        return RP_RESULT_SEG;
    if (!strcmp(b, "sr.dcm"))
        return RP_RESULT_SR;
    if (!strncmp(b, "overlay", 7))
        return RP_RESULT_OVERLAY;
    return RP_RESULT_DERIVED;
}

static int collect_dcm(const char *dir, char ***list, size_t *n, size_t *cap);
static int cmp_str(const void *a, const void *b);

/* The destination refused the SOP class of `path` (a SEG, SR or derived series) when the
 * association was negotiated: queue the overlay secondary captures of the same job (every
 * PACS takes Secondary Capture) for it instead, and say so in `why` (recorded as the dead
 * row's reason). An overlay refused in turn has no substitute, and queueing is idempotent,
 * so this never loops and a SEG and an SR refused together queue the overlay once. */
static void substitute(rp_db *db, const char *dest, const char *path, const char *reason, char *why,
                       size_t whylen)
{
    int kind = result_kind_of(path);
    snprintf(why, whylen, "%s", reason);
    if (kind == RP_RESULT_OVERLAY)
        return;
    char dir[1024];
    rp_strlcpy(dir, path, sizeof dir);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return;
    *slash = 0;
    char **list = NULL;
    size_t n = 0, cap = 0, added = 0, overlays = 0;
    if (collect_dcm(dir, &list, &n, &cap) == 0)
        qsort(list, n, sizeof *list, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char uid[RP_UID_MAX + 1];
        long long id = 0;
        if (result_kind_of(list[i]) == RP_RESULT_OVERLAY &&
            rp_sender_file_uid(list[i], uid, sizeof uid) == 0) {
            overlays++;
            if (rp_db_outbox_add(db, uid, list[i], dest, &id) == 0)
                added++;
        }
        free(list[i]);
    }
    free(list);
    const char *what = kind == RP_RESULT_SEG ? "seg" : kind == RP_RESULT_SR ? "sr" : "derived";
    if (overlays)
        snprintf(why, whylen, "%s; substituted by overlay (%zu instance(s), %zu newly queued)",
                 reason, overlays, added);
    else
        snprintf(why, whylen, "%s; no overlay result to substitute (rule outputs lack overlay)",
                 reason);
    char q[400];
    RP_WARN(MOD,
            "result substituted destination=%s refused=%s substitute=overlay instances=%zu "
            "queued=%zu file=%s",
            dest, what, overlays, added, rp_log_kv_quote(path, q, sizeof q));
}

/* One association's worth of a batch: what one rp_sender_send call gets, on a thread of its
 * own when the destination takes several associations at once. */
typedef struct slice {
    const rp_sender_dest *sd;
    volatile int *stop;
    const char **files;    /* n files ... */
    size_t *pos;           /* ... and their positions in the claimed batch */
    rp_sender_result *res; /* n */
    size_t n;
    rp_sender_stats st;
    int rc;
} slice;

static void *slice_main(void *arg)
{
    slice *s = arg;
    s->rc = rp_sender_send(s->sd, s->files, s->n, s->res, s->stop, &s->st);
    return NULL;
}

static int rc_down(int rc)
{
    return rc == RP_ENET || rc == RP_ETIMEOUT || rc == RP_EBUSY;
}

/* What one phase of a batch left behind. */
typedef struct phase_out {
    int rc;            /* the destination's state: first failing slice's rc, 0 when fine */
    int accepted;      /* slices that got an association */
    int extra_refused; /* slices refused at association while others were accepted */
    long long bytes;
    int associations;
} phase_out;

/* Send the rows rows[0..m) of batch e over k parallel associations (round-robin, so each
 * association keeps the batch's order and they finish together), results into res[] at the
 * rows' batch positions. A slice refused at association time while another slice to the same
 * destination was accepted is not the destination being down: the peer limits how many
 * associations it takes from us, so its rows are retried at once (RETRY, no gate) and the
 * caller narrows the destination. */
static int send_phase(rp_outbox *ob, dest_state *ds, const rp_sender_dest *sd,
                      const rp_db_outbox_entry *e, const size_t *rows, size_t m, int k,
                      rp_sender_result *res, phase_out *po)
{
    memset(po, 0, sizeof *po);
    if (m == 0)
        return 0;
    if ((size_t)k > m)
        k = (int)m;
    slice *sl = calloc((size_t)k, sizeof *sl);
    pthread_t *th = calloc((size_t)k, sizeof *th);
    int *threaded = calloc((size_t)k, sizeof *threaded);
    const char **files = calloc(m, sizeof *files);
    size_t *pos = calloc(m, sizeof *pos);
    rp_sender_result *r = calloc(m, sizeof *r);
    if (!sl || !th || !threaded || !files || !pos || !r) {
        free(sl), free(th), free(threaded), free(files), free(pos), free(r);
        return RP_ENOMEM;
    }
    size_t at = 0;
    for (int j = 0; j < k; j++) {
        sl[j].sd = sd;
        sl[j].stop = &ob->stop;
        sl[j].files = files + at;
        sl[j].pos = pos + at;
        sl[j].res = r + at;
        for (size_t i = (size_t)j; i < m; i += (size_t)k) {
            files[at] = e[rows[i]].file_path;
            pos[at++] = rows[i];
            sl[j].n++;
        }
    }
    for (int j = 1; j < k; j++)
        threaded[j] = pthread_create(&th[j], NULL, slice_main, &sl[j]) == 0;
    slice_main(&sl[0]);
    for (int j = 1; j < k; j++) {
        if (threaded[j])
            pthread_join(th[j], NULL);
        else
            slice_main(&sl[j]); /* no thread to be had: one after the other */
    }
    for (int j = 0; j < k; j++)
        if (sl[j].st.associations > 0)
            po->accepted++;
    for (int j = 0; j < k; j++) {
        slice *s = &sl[j];
        const char *res_label = s->rc == 0 ? "ok" : rc_down(s->rc) ? "unavailable" : "failed";
        rp_metrics_observe(RP_M_OUTBOX_SEND_SECONDS, s->st.seconds, ds->peer.name, res_label);
        po->bytes += s->st.bytes;
        po->associations += s->st.associations;
        int refused_extra = s->rc != 0 && s->st.associations == 0 && po->accepted > 0 &&
                            (rc_down(s->rc) || s->rc == RP_EREFUSED);
        if (refused_extra) {
            po->extra_refused++;
            for (size_t i = 0; i < s->n; i++) {
                char why[sizeof s->res[i].reason + 64];
                snprintf(why, sizeof why, "not sent: association %d of %d refused (%s)", j + 1, k,
                         s->res[i].reason);
                s->res[i].outcome = RP_SEND_RETRY;
                s->res[i].sop_refused = 0;
                rp_strlcpy(s->res[i].reason, why, sizeof s->res[i].reason);
            }
        } else if (s->rc && !po->rc) {
            po->rc = s->rc;
        }
        for (size_t i = 0; i < s->n; i++)
            res[s->pos[i]] = s->res[i];
    }
    free(sl), free(th), free(threaded), free(files), free(pos), free(r);
    return 0;
}

/* Count the outcomes into t (before they are recorded: whoever sees every row finished in
 * the db finds them counted). */
static void tally(const rp_outbox *ob, const rp_db_outbox_entry *e, const rp_sender_result *res,
                  size_t n, rp_outbox_totals *t)
{
    for (size_t i = 0; i < n; i++) {
        rp_send_outcome o = res[i].outcome;
        if (o == RP_SEND_DONE)
            t->sent++;
        else if (o == RP_SEND_DEAD ||
                 (o == RP_SEND_RETRY_FEW && e[i].attempts >= ob->o.few_attempts))
            t->dead++;
        else
            t->retried++;
    }
}

/* Record every row's outcome in the db. */
static void record(rp_outbox *ob, rp_db *db, dest_state *ds, const rp_db_outbox_entry *e,
                   const rp_sender_result *res, size_t n, double now)
{
    for (size_t i = 0; i < n; i++) {
        const rp_sender_result *r = &res[i];
        int frc = 0;
        switch (r->outcome) {
        case RP_SEND_DONE:
            frc = rp_db_outbox_finish(db, e[i].id, 1, r->dimse_status, r->reason, 0, 0, 0);
            break;
        case RP_SEND_DEAD: {
            char why[512];
            if (r->sop_refused)
                substitute(db, ds->peer.name, e[i].file_path, r->reason, why, sizeof why);
            else
                rp_strlcpy(why, r->reason, sizeof why);
            frc = rp_db_outbox_finish(db, e[i].id, 0, r->dimse_status, why, 1, 0, 0);
            break;
        }
        case RP_SEND_RETRY_FEW:
            frc = rp_db_outbox_finish(db, e[i].id, 0, r->dimse_status, r->reason, 0,
                                      ob->o.base_delay_s, ob->o.few_attempts);
            break;
        case RP_SEND_RETRY:
        default:
            frc = rp_db_outbox_retry_at(db, e[i].id, r->dimse_status, r->reason,
                                        ds->gate_until > now ? ds->gate_until : now);
            break;
        }
        if (frc)
            RP_ERROR(MOD, "cannot record outcome outbox_id=%lld outcome=%s rc=%s", e[i].id,
                     rp_send_outcome_name(r->outcome), rp_strerror(frc));
        else if (r->outcome == RP_SEND_DEAD || r->outcome == RP_SEND_RETRY_FEW) {
            /* a failure of this instance, not of the destination (that has its own line) */
            char q[300];
            rp_log(r->outcome == RP_SEND_DEAD || e[i].attempts >= ob->o.few_attempts ? RP_LOG_ERROR
                                                                                     : RP_LOG_WARN,
                   MOD,
                   "instance not sent destination=%s outbox_id=%lld outcome=%s status=%d "
                   "attempts=%d reason=%s",
                   ds->peer.name, e[i].id,
                   r->outcome == RP_SEND_DEAD || e[i].attempts >= ob->o.few_attempts ? "dead"
                                                                                     : "retry",
                   r->dimse_status, e[i].attempts, rp_log_kv_quote(r->reason, q, sizeof q));
        }
    }
}

/* The destination's associations for the next batch: its send_associations, or fewer for a
 * while after it refused some of them (max_delay_s, then the full number is tried again). */
static int assoc_width(dest_state *ds, double now)
{
    int want = ds->peer.send_associations > 0 ? ds->peer.send_associations : 1;
    if (ds->narrow_to > 0 && now >= ds->narrow_until) {
        RP_INFO(MOD, "trying the configured associations again destination=%s associations=%d",
                ds->peer.name, want);
        ds->narrow_to = 0;
    }
    return ds->narrow_to > 0 && ds->narrow_to < want ? ds->narrow_to : want;
}

/* Claim one batch of due rows of `ds` and send it. Returns 1 when more rows may be due now;
 * *wake is lowered to the next due time of the destination when nothing is due yet.
 * Ordering: the batch's derived instances go first (over the destination's associations in
 * parallel); its other results (SEG, SR, overlay: objects that refer to images) only after
 * every derived instance of the batch was answered, and not at all while the destination is
 * down. */
static int serve_dest(rp_outbox *ob, rp_db *db, dest_state *ds, double *wake)
{
    /* a read first: an idle destination must not take the write lock every poll */
    double due = 0, now0 = rp_now_s();
    int rc = rp_db_outbox_next_due(db, ds->peer.name, &due);
    if (rc == RP_ENOENT)
        return 0;
    if (rc == 0 && due > now0) {
        if (due < *wake)
            *wake = due;
        return 0;
    }
    rp_db_outbox_entry *e = NULL;
    size_t n = 0;
    rc = rp_db_outbox_claim(db, ds->peer.name, now0, ob->o.batch, &e, &n);
    if (rc == RP_ENOENT || n == 0) {
        free(e);
        return 0;
    }
    if (rc) {
        RP_ERROR(MOD, "cannot claim outbox rows destination=%s rc=%s", ds->peer.name,
                 rp_strerror(rc));
        return 0;
    }
    size_t *rows = calloc(n, sizeof *rows);
    rp_sender_result *res = calloc(n, sizeof *res);
    if (!rows || !res) {
        /* give the rows back untouched: they are retried on the next pass */
        for (size_t i = 0; i < n; i++)
            rp_db_outbox_retry_at(db, e[i].id, -1, "out of memory", rp_now_s() + 1);
        free(rows);
        free(res);
        free(e);
        return 0;
    }
    rp_sender_dest sd = {
        .host = ds->peer.host,
        .port = ds->peer.port,
        .called_ae = ds->peer.ae_title,
        .calling_ae = ob->calling_ae,
        .connect_timeout_s = ob->connect_timeout_s,
        .acse_timeout_s = ob->acse_timeout_s,
        .dimse_timeout_s = ob->dimse_timeout_s,
        .max_pdu = ob->max_pdu,
        .tls = ds->peer.tls_only ? ob->tls : NULL,
    };
    int width = assoc_width(ds, now0);
    size_t n_first = 0, n_after = 0;
    for (size_t i = 0; i < n; i++) {
        res[i].outcome = RP_SEND_RETRY;
        res[i].dimse_status = -1;
        rp_strlcpy(res[i].reason, "not sent", sizeof res[i].reason);
        if (result_kind_of(e[i].file_path) == RP_RESULT_DERIVED)
            rows[n_first++] = i;
    }
    for (size_t i = 0; i < n; i++)
        if (result_kind_of(e[i].file_path) != RP_RESULT_DERIVED)
            rows[n_first + n_after++] = i;
    double t0 = rp_mono_s();
    phase_out p1, p2;
    memset(&p2, 0, sizeof p2);
    /* One association sends in the order given, each instance after the previous answer:
     * the whole batch in one go (derived first) is the same order, one negotiation less. */
    int single = width == 1;
    rc = send_phase(ob, ds, &sd, e, rows, single ? n : n_first, width, res, &p1);
    if (!single && rc == 0 && !p1.rc && !ob->stop)
        rc = send_phase(ob, ds, &sd, e, rows + n_first, n_after,
                        p1.extra_refused ? p1.accepted : width, res, &p2);
    else if (!single)
        for (size_t i = n_first; i < n; i++)
            rp_strlcpy(res[rows[i]].reason,
                       ob->stop
                           ? "not sent: stopping"
                           : "not sent: waits for the derived series, which did not get through",
                       sizeof res[rows[i]].reason);
    double secs = rp_mono_s() - t0;
    int state = rc ? rc : p1.rc ? p1.rc : p2.rc;
    int down = rc_down(state);
    double now = rp_now_s();
    int extra = p1.extra_refused + p2.extra_refused;
    if (extra && !down) { /* while it is down, refusals say nothing about a limit */
        int acc = p1.extra_refused ? p1.accepted : p2.accepted;
        ds->narrow_to = acc > 0 ? acc : 1;
        ds->narrow_until = now + ob->o.max_delay_s;
        RP_WARN(MOD,
                "destination refused extra associations, sending on fewer destination=%s "
                "tried=%d accepted=%d retry_full_in_s=%.0f",
                ds->peer.name, width, ds->narrow_to, ob->o.max_delay_s);
    }
    if (down) {
        ds->fail_streak++;
        double wait_s = backoff(ob, ds->fail_streak);
        ds->gate_until = now + wait_s;
        const char *why = "";
        for (size_t i = 0; i < n && !why[0]; i++)
            if (res[i].outcome != RP_SEND_DONE)
                why = res[i].reason;
        char q[300];
        /* busy (a transient rejection or 0xA7xx: the peer answered, it is at its limit) is
         * told apart from unreachable, for the operator reading the log */
        RP_WARN(MOD,
                "destination %s destination=%s host=%s port=%d failures=%d "
                "retry_in_s=%.1f rows=%zu reason=%s",
                state == RP_EBUSY ? "busy" : "unavailable", ds->peer.name, ds->peer.host,
                ds->peer.port, ds->fail_streak, wait_s, n, rp_log_kv_quote(why, q, sizeof q));
    } else {
        if (ds->fail_streak)
            RP_INFO(MOD, "destination reachable again destination=%s after_failures=%d",
                    ds->peer.name, ds->fail_streak);
        ds->fail_streak = 0;
        ds->gate_until = 0;
    }
    rp_outbox_totals t;
    memset(&t, 0, sizeof t);
    t.associations = p1.associations + p2.associations;
    t.bytes = p1.bytes + p2.bytes;
    t.send_seconds = secs;
    tally(ob, e, res, n, &t);
    add_totals(ob, &t);
    record(ob, db, ds, e, res, n, now);
    if (t.sent)
        RP_INFO(MOD,
                "sent destination=%s instances=%lld failed=%zu associations=%lld parallel=%d "
                "bytes=%lld seconds=%.3f",
                ds->peer.name, t.sent, n - (size_t)t.sent, t.associations, width, t.bytes, secs);
    int more = !down && (n == (size_t)ob->o.batch || extra);
    free(rows);
    free(res);
    free(e);
    return more;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    rp_outbox *ob = w->ob;
    rp_db *db = NULL;
    while (!ob->stop && rp_db_open(ob->db_path, &db) != 0) {
        RP_ERROR(MOD, "cannot open the index, retrying path=%s", ob->db_path);
        pthread_mutex_lock(&ob->mu);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 5;
        if (!ob->stop)
            pthread_cond_timedwait(&ob->cv, &ob->mu, &ts);
        pthread_mutex_unlock(&ob->mu);
    }
    while (!ob->stop) {
        pthread_mutex_lock(&ob->mu);
        unsigned kicks = ob->kicks;
        pthread_mutex_unlock(&ob->mu);
        double now = rp_now_s();
        double wake = now + ob->o.poll_s;
        int more = 0;
        for (size_t d = (size_t)w->idx; d < ob->n_dests && !ob->stop; d += (size_t)ob->n_workers) {
            dest_state *ds = &ob->dests[d];
            if (now < ds->gate_until) {
                if (ds->gate_until < wake)
                    wake = ds->gate_until;
                continue;
            }
            more |= serve_dest(ob, db, ds, &wake);
        }
        if (more)
            continue;
        pthread_mutex_lock(&ob->mu);
        if (!ob->stop && ob->kicks == kicks) {
            struct timespec ts;
            ts.tv_sec = (time_t)wake;
            ts.tv_nsec = (long)((wake - (double)ts.tv_sec) * 1e9);
            pthread_cond_timedwait(&ob->cv, &ob->mu, &ts);
        }
        pthread_mutex_unlock(&ob->mu);
    }
    rp_db_close(db);
    return NULL;
}

/* At start: rows a crashed node left 'sending' go back to pending; rows for a destination
 * we cannot send to go to dead with the reason (never silently forgotten). */
static int recover(rp_outbox *ob, const rp_conf *c)
{
    rp_db *db = NULL;
    int rc = rp_db_open(ob->db_path, &db);
    if (rc)
        return rc;
    long long n = 0;
    if (rp_db_outbox_requeue(db, RP_OUTBOX_SENDING, NULL, 0, &n) == 0 && n > 0)
        RP_WARN(MOD, "re-queued rows left sending by a previous run rows=%lld", n);
    rp_db_outbox_entry *e = NULL;
    size_t ne = 0;
    if (rp_db_outbox_list(db, RP_OUTBOX_PENDING, NULL, 0, &e, &ne) == 0) {
        size_t dead = 0;
        for (size_t i = 0; i < ne; i++) {
            const rp_conf_peer *p = rp_conf_peer_by_name(c, e[i].destination);
            if (p && dest_usable(p))
                continue;
            char why[256];
            snprintf(why, sizeof why, "destination '%s' %s", e[i].destination, unusable_reason(p));
            if (rp_db_outbox_finish(db, e[i].id, 0, -1, why, 1, 0, 0) == 0)
                dead++;
        }
        if (dead)
            RP_ERROR(MOD, "outbox rows for unconfigured destinations dead-lettered rows=%zu", dead);
        free(e);
    }
    /* A destination that was down before the restart continues its backoff where it was
     * (attempts and next try are in the rows), instead of starting again at 2 s. */
    for (size_t d = 0; d < ob->n_dests; d++) {
        rp_db_outbox_entry *p = NULL;
        size_t np = 0;
        if (rp_db_outbox_list(db, RP_OUTBOX_PENDING, ob->dests[d].peer.name, 1, &p, &np) == 0 &&
            np && p[0].attempts > 0 && p[0].last_status < 0 && p[0].last_reason[0]) {
            ob->dests[d].fail_streak = p[0].attempts;
            ob->dests[d].gate_until = p[0].next_attempt_at;
        }
        free(p);
    }
    rp_db_close(db);
    return 0;
}

int rp_outbox_start(const rp_conf *c, const rp_outbox_opts *o, rp_outbox **out)
{
    *out = NULL;
    if (!c || !o || !o->db_path)
        return RP_EINVAL;
    rp_outbox *ob = calloc(1, sizeof *ob);
    if (!ob)
        return RP_ENOMEM;
    ob->o = *o;
    if (ob->o.batch <= 0)
        ob->o.batch = 256;
    if (ob->o.max_threads <= 0)
        ob->o.max_threads = 4;
    if (ob->o.base_delay_s <= 0)
        ob->o.base_delay_s = 2;
    if (ob->o.max_delay_s <= 0)
        ob->o.max_delay_s = 600;
    if (ob->o.few_attempts <= 0)
        ob->o.few_attempts = 5;
    if (ob->o.poll_s <= 0)
        ob->o.poll_s = 0.5;
    rp_strlcpy(ob->db_path, o->db_path, sizeof ob->db_path);
    ob->o.db_path = ob->db_path;
    rp_strlcpy(ob->calling_ae, c->ae_title, sizeof ob->calling_ae);
    ob->acse_timeout_s = c->acse_timeout_s;
    ob->dimse_timeout_s = c->dimse_timeout_s;
    ob->connect_timeout_s =
        c->network_timeout_s > 0 && c->network_timeout_s < 30 ? c->network_timeout_s : 10;
    ob->max_pdu = c->max_pdu;
    pthread_mutex_init(&ob->mu, NULL);
    pthread_cond_init(&ob->cv, NULL);
    ob->dests = calloc(c->n_peers ? c->n_peers : 1, sizeof *ob->dests);
    if (!ob->dests) {
        rp_outbox_stop(ob);
        return RP_ENOMEM;
    }
    for (size_t i = 0; i < c->n_peers; i++) {
        const rp_conf_peer *p = &c->peers[i];
        if (!p->is_destination)
            continue;
        if (!dest_usable(p)) {
            RP_ERROR(MOD,
                     "destination peer unusable, nothing is sent to it peer=%s line=%d "
                     "reason=\"%s\"",
                     p->name, p->line, unusable_reason(p));
            continue;
        }
        if (p->tls_only && !ob->tls) {
            char terr[512] = "";
            if (rp_tls_new(c, RP_TLS_CLIENT, &ob->tls, terr, sizeof terr) != 0) {
                RP_ERROR(MOD,
                         "destination peer needs TLS and the TLS layer failed, nothing is "
                         "sent to it peer=%s reason=\"%s\"",
                         p->name, terr);
                continue;
            }
        }
        ob->dests[ob->n_dests++].peer = *p;
    }
    int rc = recover(ob, c);
    if (rc) {
        RP_ERROR(MOD, "cannot open the index path=%s rc=%s", ob->db_path, rp_strerror(rc));
        rp_outbox_stop(ob);
        return rc;
    }
    ob->n_workers =
        (int)(ob->n_dests < (size_t)ob->o.max_threads ? ob->n_dests : (size_t)ob->o.max_threads);
    if (ob->n_workers) {
        ob->workers = calloc((size_t)ob->n_workers, sizeof *ob->workers);
        if (!ob->workers) {
            rp_outbox_stop(ob);
            return RP_ENOMEM;
        }
    }
    for (int i = 0; i < ob->n_workers; i++) {
        ob->workers[i].ob = ob;
        ob->workers[i].idx = i;
        if (pthread_create(&ob->workers[i].th, NULL, worker_main, &ob->workers[i]) != 0) {
            RP_ERROR(MOD, "cannot start sender thread errno=%d", errno);
            rp_outbox_stop(ob);
            return RP_ENOMEM;
        }
        ob->workers[i].started = 1;
    }
    RP_INFO(MOD, "outbox sender started destinations=%zu threads=%d backoff_s=%.1f..%.1f",
            ob->n_dests, ob->n_workers, ob->o.base_delay_s, ob->o.max_delay_s);
    *out = ob;
    return 0;
}

void rp_outbox_kick(rp_outbox *ob)
{
    if (!ob)
        return;
    pthread_mutex_lock(&ob->mu);
    ob->kicks++;
    pthread_cond_broadcast(&ob->cv);
    pthread_mutex_unlock(&ob->mu);
}

void rp_outbox_stop(rp_outbox *ob)
{
    if (!ob)
        return;
    pthread_mutex_lock(&ob->mu);
    ob->stop = 1;
    pthread_cond_broadcast(&ob->cv);
    pthread_mutex_unlock(&ob->mu);
    for (int i = 0; i < ob->n_workers; i++)
        if (ob->workers && ob->workers[i].started)
            pthread_join(ob->workers[i].th, NULL);
    pthread_mutex_destroy(&ob->mu);
    pthread_cond_destroy(&ob->cv);
    free(ob->workers);
    free(ob->dests);
    rp_tls_free(ob->tls);
    free(ob);
}

void rp_outbox_totals_get(rp_outbox *ob, rp_outbox_totals *out)
{
    memset(out, 0, sizeof *out);
    if (!ob)
        return;
    pthread_mutex_lock(&ob->mu);
    *out = ob->totals;
    pthread_mutex_unlock(&ob->mu);
}

static int enqueue(rp_db *db, const rp_conf *c, const char *send_to, const char *const *files,
                   size_t n, int by_results, size_t *n_added);

int rp_outbox_enqueue(rp_db *db, const rp_conf *c, const char *send_to, const char *const *files,
                      size_t n, size_t *n_added)
{
    return enqueue(db, c, send_to, files, n, 0, n_added);
}

/* by_results: files are a job's results, each peer gets the kinds its results key names. */
static int enqueue(rp_db *db, const rp_conf *c, const char *send_to, const char *const *files,
                   size_t n, int by_results, size_t *n_added)
{
    if (n_added)
        *n_added = 0;
    if (!db || !c || (n && !files))
        return RP_EINVAL;
    if (!send_to)
        return 0;
    /* check every name first: a typo must not half-queue the series */
    char names[512];
    rp_strlcpy(names, send_to, sizeof names);
    const char *peers[32];
    int kinds[32];
    int np = 0;
    char *save = NULL;
    for (char *tok = strtok_r(names, " \t,", &save); tok && np < 32;
         tok = strtok_r(NULL, " \t,", &save)) {
        const rp_conf_peer *p = rp_conf_peer_by_name(c, tok);
        if (!p || !dest_usable(p)) {
            RP_ERROR(MOD, "send_to names a peer that cannot be sent to peer=%s reason=\"%s\"", tok,
                     unusable_reason(p));
            return RP_ECONF;
        }
        kinds[np] = by_results ? rp_conf_peer_results(p) : ~0;
        peers[np++] = p->name;
    }
    size_t added = 0;
    for (size_t i = 0; i < n; i++) {
        char uid[RP_UID_MAX + 1];
        int rc = rp_sender_file_uid(files[i], uid, sizeof uid);
        if (rc) {
            RP_ERROR(MOD, "cannot queue file (no SOP Instance UID) path=%s rc=%s", files[i],
                     rp_strerror(rc));
            return rc;
        }
        for (int k = 0; k < np; k++) {
            long long id = 0;
            if (!(kinds[k] & result_kind_of(files[i])))
                continue;
            rc = rp_db_outbox_add(db, uid, files[i], peers[k], &id);
            if (rc == 0)
                added++;
            else if (rc != RP_EEXIST)
                return rc;
        }
    }
    if (n_added)
        *n_added = added;
    if (added)
        RP_INFO(MOD, "queued for sending rows=%zu files=%zu destinations=%d", added, n, np);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int collect_dcm(const char *dir, char ***list, size_t *n, size_t *cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : RP_EIO;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[RP_PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        struct stat st;
        if (stat(path, &st))
            continue;
        if (S_ISDIR(st.st_mode)) {
            rc = collect_dcm(path, list, n, cap);
            continue;
        }
        size_t len = strlen(e->d_name);
        if (!S_ISREG(st.st_mode) || len < 4 || strcasecmp(e->d_name + len - 4, ".dcm"))
            continue;
        if (*n == *cap) {
            size_t nc = *cap ? *cap * 2 : 64;
            char **nl = realloc(*list, nc * sizeof *nl);
            if (!nl) {
                rc = RP_ENOMEM;
                break;
            }
            *list = nl;
            *cap = nc;
        }
        if (!((*list)[*n] = strdup(path))) {
            rc = RP_ENOMEM;
            break;
        }
        (*n)++;
    }
    closedir(d);
    return rc;
}

int rp_outbox_enqueue_dir(rp_db *db, const rp_conf *c, const char *send_to, const char *dir,
                          size_t *n_added)
{
    if (n_added)
        *n_added = 0;
    if (!dir)
        return RP_EINVAL;
    char **list = NULL;
    size_t n = 0, cap = 0;
    int rc = collect_dcm(dir, &list, &n, &cap);
    if (rc == 0 && n) {
        qsort(list, n, sizeof *list, cmp_str);
        rc = enqueue(db, c, send_to, (const char *const *)list, n, 1, n_added);
    }
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
    return rc;
}

/* ------------------------------------------------------------------- node service */

/* The service's context: the sender, set by start on the main thread before the services
 * registered after it start (so before any hook of theirs can run), cleared by stop after
 * they stopped. */
typedef struct service {
    rp_outbox *ob;
} service;

static int svc_start(rp_node *node, void *arg)
{
    service *sv = arg;
    rp_outbox_opts o;
    memset(&o, 0, sizeof o);
    o.db_path = rp_node_db_path(node);
    return rp_outbox_start(rp_node_conf(node), &o, &sv->ob);
}

static void svc_stop(rp_node *node, void *arg)
{
    (void)node;
    service *sv = arg;
    rp_outbox_stop(sv->ob);
    free(sv);
}

void rp_outbox_service_kick(void *svc_arg)
{
    service *sv = svc_arg;
    if (sv)
        rp_outbox_kick(sv->ob);
}

int rp_outbox_service(rp_node_service *svc)
{
    service *slot = calloc(1, sizeof *slot);
    if (!slot)
        return RP_ENOMEM;
    svc->name = "outbox";
    svc->start = svc_start;
    svc->stop = svc_stop;
    svc->on_instance = NULL;
    svc->arg = slot;
    return 0;
}
