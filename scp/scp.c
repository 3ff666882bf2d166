/*
 * scp — the node: association policy (AE titles, hosts, limits), the C-STORE handlers that
 * turn a received dataset into a durable, indexed instance, and the node's life cycle.
 * The dcmtk side lives in scp/net.cc; the contract is in scp/scp.h.
 */
#include "scp/scp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "common/common.h"
#include "metrics/metrics.h"
#include "scp/net_internal.h"
#include "tls/tls.h"

#define MOD "scp"
#define MAX_SERVICES 16
#define MAX_PEER_SLOTS 256

typedef struct {
    char ae[RP_AE_MAX + 1];
    int count;
} peer_slot;

/* An open association, listed so that a stop past its grace can interrupt blocked reads. */
typedef struct live_assoc {
    rp_net_assoc *as;
    struct live_assoc *next;
} live_assoc;

struct rp_node {
    const rp_conf *conf;
    rp_store *store;
    rp_db *db_events; /* events handle, guarded by events_lock */
    pthread_mutex_t events_lock;
    int lock_fd; /* <data_dir>/radprepd.lock, flock'd while the node runs */
    void (*on_indexed)(void *arg, size_t n); /* rp_node_on_indexed() */
    void *on_indexed_arg;
    char db_path[RP_PATH_MAX + 32];
    rp_net *net;
    rp_net *tls_net;         /* the [tls] port's listener, NULL when TLS is off */
    rp_tls *tls;             /* its server-role layer (tls/tls.h) */
    double tls_expiry_check; /* next time (monotonic s) the node certificate's expiry is checked */
    rp_node_service services[MAX_SERVICES];
    size_t n_services, n_started;
    pthread_t listener, tls_listener;
    int listener_started, tls_listener_started;
    atomic_int stop_requested;
    atomic_int stopping;
    atomic_int abort_all;
    int stopped;
    int shutdown_grace_s;
    /* association accounting, under lock */
    pthread_mutex_t lock;
    pthread_cond_t idle;
    int threads; /* connection threads alive */
    int pending; /* connections not yet negotiated */
    int active;  /* accepted associations */
    peer_slot peers[MAX_PEER_SLOTS];
    live_assoc *live; /* open associations (under lock) */
    /* stats */
    atomic_llong st_assoc, st_rejected, st_stored, st_failed, st_bytes, st_recv_us, st_commit_us;
};

/* ---- events ---------------------------------------------------------------------------- */

static void node_event(rp_node *n, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void node_event(rp_node *n, const char *kind, const char *fmt, ...)
{
    if (!n->db_events)
        return;
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&n->events_lock);
    int rc = rp_db_event_add(n->db_events, kind, detail);
    pthread_mutex_unlock(&n->events_lock);
    if (rc != 0)
        RP_WARN(MOD, "cannot record event kind=%s err=\"%s\"", kind, rp_strerror(rc));
}

/* ---- per-association state and the C-STORE handlers ------------------------------------ */

typedef struct {
    rp_node *node;
    rp_net_assoc_info info;
    rp_store_rx *rx; /* this association's way into the store, made at its first C-STORE */
    long long stored, failed, bytes;
    double t_begin; /* when the current C-STORE-RQ arrived */
    /* The last instance answered with success, for what follows its response (h_store_done):
     * the services' on_instance and the log line need not delay the answer. */
    int done_pending;
    rp_store_outcome done_outcome;
    rp_instance_meta done_meta;
    char done_ts[65];
    double done_ms;
    char uid_warned_series[RP_UID_MAX + 1]; /* last series recorded as uid_not_ps35 */
} assoc_ctx;

/* uid_policy=lenient stored an instance whose UIDs break PS3.5 (a leading zero): besides the
 * store's log line, an event in the index (`radprep events --kind uid_not_ps35`, the console's
 * warnings and series page), once per series and association rather than per instance. */
static void note_lenient_uids(assoc_ctx *a, const rp_instance_meta *m)
{
    const struct {
        const char *name, *v;
    } u[] = {{"study_uid", m->study_uid},
             {"series_uid", m->series_uid},
             {"sop_instance_uid", m->sop_instance_uid},
             {"sop_class_uid", m->sop_class_uid}};
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        if (rp_store_uid_valid(u[i].v) == 0)
            continue;
        if (!strcmp(a->uid_warned_series, m->series_uid))
            return;
        rp_strlcpy(a->uid_warned_series, m->series_uid, sizeof a->uid_warned_series);
        node_event(a->node, "uid_not_ps35",
                   "series=%s study=%s %s=%s calling_ae=%s reason=\"leading zero in a "
                   "component; stored under uid_policy=lenient\"",
                   m->series_uid, m->study_uid, u[i].name, u[i].v, a->info.calling_ae);
        return;
    }
}

static unsigned status_for(int rc)
{
    switch (rc) {
    case RP_ENOSPC:
    case RP_EIO:
    case RP_ENOMEM:
        return 0xA700; /* out of resources: the sender may retry */
    case RP_EINVAL:
        return 0xA900; /* dataset does not match SOP class */
    case RP_EDUP:
        return 0x0111; /* duplicate SOP instance */
    default:
        return 0xC000; /* cannot understand */
    }
}

static void log_store_failure(assoc_ctx *a, const rp_net_store_req *r, unsigned status,
                              const char *reason)
{
    char q1[160], q2[320];
    RP_WARN(MOD, "store failed sop=%s calling_ae=%s peer=%s status=0x%04X reason=%s",
            rp_log_kv_quote(r->sop_instance_uid, q1, sizeof q1), a->info.calling_ae,
            a->info.peer_host, status, rp_log_kv_quote(reason, q2, sizeof q2));
}

static unsigned h_store_begin(void *ctx, const rp_net_store_req *r, char *comment, size_t commentsz)
{
    assoc_ctx *a = ctx;
    rp_node *n = a->node;
    a->t_begin = rp_mono_s();
    int rc = rp_store_space_check(n->store);
    if (rc != 0) {
        snprintf(comment, commentsz, "free disk space below min_free_mb=%lld",
                 n->conf->min_free_mb);
        log_store_failure(a, r, 0xA700, comment);
        a->failed++;
        atomic_fetch_add(&n->st_failed, 1);
        return 0xA700;
    }
    if (!a->rx)
        rc = rp_store_rx_new(n->store, &a->rx);
    if (rc == 0)
        rc = rp_store_rx_begin(a->rx);
    if (rc != 0) {
        snprintf(comment, commentsz, "cannot receive into the store: %s", rp_strerror(rc));
        log_store_failure(a, r, 0xA700, comment);
        a->failed++;
        atomic_fetch_add(&n->st_failed, 1);
        return 0xA700;
    }
    return 0;
}

static int h_store_data(void *ctx, const void *buf, size_t n)
{
    assoc_ctx *a = ctx;
    return rp_store_rx_write(a->rx, buf, n);
}

static unsigned h_store_end(void *ctx, const rp_net_store_req *r, int recv_rc, int recv_err,
                            long long bytes, char *comment, size_t commentsz)
{
    assoc_ctx *a = ctx;
    rp_node *n = a->node;
    unsigned status;
    double t_in = rp_mono_s();
    atomic_fetch_add(&n->st_recv_us, (long long)((t_in - a->t_begin) * 1e6));
    a->bytes += bytes;
    atomic_fetch_add(&n->st_bytes, bytes);
    switch (recv_rc) {
    case RP_NET_RECV_OK:
        break;
    case RP_NET_RECV_NET:
        rp_store_rx_discard(a->rx);
        {
            char q[160];
            RP_WARN(MOD,
                    "transfer broken, nothing stored sop=%s calling_ae=%s peer=%s "
                    "bytes_received=%lld",
                    rp_log_kv_quote(r->sop_instance_uid, q, sizeof q), a->info.calling_ae,
                    a->info.peer_host, bytes);
        }
        a->failed++;
        atomic_fetch_add(&n->st_failed, 1);
        return 0;
    case RP_NET_RECV_TOO_BIG:
        rp_store_rx_discard(a->rx);
        snprintf(comment, commentsz, "instance larger than max_instance_mb=%lld",
                 n->conf->max_instance_mb);
        log_store_failure(a, r, 0xA700, comment);
        a->failed++;
        atomic_fetch_add(&n->st_failed, 1);
        return 0xA700;
    default:
        rp_store_rx_discard(a->rx);
        snprintf(comment, commentsz, "cannot write the instance: %s",
                 recv_err ? rp_strerror(recv_err) : "write failed");
        log_store_failure(a, r, 0xA700, comment);
        a->failed++;
        atomic_fetch_add(&n->st_failed, 1);
        return 0xA700;
    }

    rp_store_put_args args = {
        .expect_sop_instance_uid = r->sop_instance_uid,
        .expect_sop_class_uid = r->sop_class_uid,
        .calling_ae = a->info.calling_ae,
        .peer_host = a->info.peer_host,
    };
    rp_instance_meta meta;
    rp_store_outcome outcome;
    char reason[512];
    double t0 = rp_mono_s();
    int rc = rp_store_rx_commit(a->rx, &args, &meta, &outcome, reason, sizeof reason);
    atomic_fetch_add(&n->st_commit_us, (long long)((rp_mono_s() - t_in) * 1e6));
    rp_metrics_observe(RP_M_STORE_COMMIT_SECONDS, rp_mono_s() - t_in);
    if (rc != 0) {
        status = status_for(rc);
        snprintf(comment, commentsz, "%s", reason);
        log_store_failure(a, r, status, reason);
        a->failed++;
        atomic_fetch_add(&n->st_failed, 1);
        return status;
    }
    a->stored++;
    atomic_fetch_add(&n->st_stored, 1);
    a->done_pending = 1;
    a->done_outcome = outcome;
    a->done_meta = meta;
    rp_strlcpy(a->done_ts, r->transfer_syntax_uid, sizeof a->done_ts);
    a->done_ms = (rp_mono_s() - t0) * 1000.0;
    return 0;
}

/* After the success response left: tell the services, log the instance. */
static void h_store_done(void *ctx)
{
    assoc_ctx *a = ctx;
    rp_node *n = a->node;
    if (!a->done_pending)
        return;
    a->done_pending = 0;
    const rp_instance_meta *m = &a->done_meta;
    rp_store_outcome outcome = a->done_outcome;
    if (outcome == RP_STORE_NEW || outcome == RP_STORE_DUP_REPLACED)
        for (size_t i = 0; i < n->n_started; i++)
            if (n->services[i].on_instance)
                n->services[i].on_instance(n, n->services[i].arg, m);
    if (outcome == RP_STORE_NEW && n->conf->uid_policy == RP_UID_LENIENT)
        note_lenient_uids(a, m);
    if (outcome == RP_STORE_NEW) {
        RP_INFO(MOD,
                "stored sop=%s series=%s study=%s bytes=%lld ts=%s calling_ae=%s peer=%s "
                "transport=%s ms=%.1f",
                m->sop_instance_uid, m->series_uid, m->study_uid, m->file_size, a->done_ts,
                a->info.calling_ae, a->info.peer_host, a->info.tls ? "tls" : "plain", a->done_ms);
    } else {
        rp_log(outcome == RP_STORE_DUP_IDENTICAL ? RP_LOG_INFO : RP_LOG_WARN, MOD,
               "stored duplicate sop=%s series=%s outcome=%s policy=%s bytes=%lld calling_ae=%s",
               m->sop_instance_uid, m->series_uid, rp_store_outcome_name(outcome),
               n->conf->duplicate_policy == RP_DUP_REPLACE  ? "replace"
               : n->conf->duplicate_policy == RP_DUP_REJECT ? "reject"
                                                            : "keep_first",
               m->file_size, a->info.calling_ae);
    }
}

static int h_should_abort(void *ctx)
{
    assoc_ctx *a = ctx;
    return atomic_load(&a->node->abort_all);
}

/* ---- access control -------------------------------------------------------------------- */

/* 1 when `ip` (numeric) is one of the addresses `host` names. */
static int host_matches(const char *host, const char *ip)
{
    if (strcmp(host, ip) == 0)
        return 1;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return 0;
    int ok = 0;
    for (struct addrinfo *p = res; p && !ok; p = p->ai_next) {
        char buf[64];
        void *addr = p->ai_family == AF_INET6
                         ? (void *)&((struct sockaddr_in6 *)p->ai_addr)->sin6_addr
                         : (void *)&((struct sockaddr_in *)p->ai_addr)->sin_addr;
        if (inet_ntop(p->ai_family, addr, buf, sizeof buf) && strcmp(buf, ip) == 0)
            ok = 1;
    }
    freeaddrinfo(res);
    return ok;
}

/* Lower-case hex without ':' separators, for comparing fingerprints however written. */
static void hex_norm(const char *in, char *out, size_t outsz)
{
    size_t j = 0;
    for (; *in && j + 1 < outsz; in++)
        if (*in != ':' && *in != ' ')
            out[j++] = (char)((*in >= 'A' && *in <= 'F') ? *in - 'A' + 'a' : *in);
    out[j] = '\0';
}

/* A [peer] bound to a certificate (cert_fingerprint and/or cert_subject) must present that
 * certificate, which only a TLS association can do. 1 when it does (or no binding). */
static int cert_matches(const rp_conf_peer *p, const rp_net_assoc_info *in, char *why, size_t whysz)
{
    if (!p->cert_fingerprint[0] && !p->cert_subject[0])
        return 1;
    if (!in->tls || !in->tls_peer.sha256[0]) {
        snprintf(why, whysz, "peer %s is bound to a certificate and none was presented", p->name);
        return 0;
    }
    if (p->cert_fingerprint[0]) {
        char want[160];
        hex_norm(p->cert_fingerprint, want, sizeof want);
        if (strcmp(want, in->tls_peer.sha256) != 0) {
            snprintf(why, whysz, "peer %s certificate fingerprint mismatch (got sha256=%s)",
                     p->name, in->tls_peer.sha256);
            return 0;
        }
    }
    if (p->cert_subject[0] && strcmp(p->cert_subject, in->tls_peer.subject) != 0) {
        snprintf(why, whysz, "peer %s certificate subject mismatch (got \"%s\")", p->name,
                 in->tls_peer.subject);
        return 0;
    }
    return 1;
}

/* The transport facts of an association as key=value text for log lines and events. */
static const char *transport_kv(const rp_net_assoc_info *in, char *buf, size_t bufsz)
{
    if (!in->tls) {
        snprintf(buf, bufsz, "transport=plain");
        return buf;
    }
    char qs[300];
    snprintf(buf, bufsz, "transport=tls tls_version=%s cipher=%s cert_subject=%s",
             in->tls_peer.protocol[0] ? in->tls_peer.protocol : "-",
             in->tls_peer.cipher[0] ? in->tls_peer.cipher : "-",
             rp_log_kv_quote(in->tls_peer.subject[0] ? in->tls_peer.subject : "-", qs, sizeof qs));
    return buf;
}

typedef struct {
    int ok;
    rp_net_reject_reason rj;
    char why[400];
    const rp_conf_peer *peer;
} decision;

static decision decide(rp_node *n, const rp_net_assoc_info *in)
{
    decision d = {.ok = 0, .rj = RP_NET_RJ_NO_REASON, .why = "", .peer = NULL};
    const rp_conf *c = n->conf;
    if (atomic_load(&n->stopping)) {
        d.rj = RP_NET_RJ_BUSY;
        snprintf(d.why, sizeof d.why, "node is stopping");
        return d;
    }
    if (strcmp(in->called_ae, c->ae_title) != 0) {
        d.rj = RP_NET_RJ_CALLED_AE;
        snprintf(d.why, sizeof d.why, "called AE title is not ours (ours=%s)", c->ae_title);
        return d;
    }
    if (c->n_peers > 0) {
        d.peer = rp_conf_peer_by_ae(c, in->calling_ae);
        if (!d.peer) {
            d.rj = RP_NET_RJ_CALLING_AE;
            snprintf(d.why, sizeof d.why, "calling AE title is not a configured peer");
            return d;
        }
        if (d.peer->host[0] && !host_matches(d.peer->host, in->peer_host)) {
            d.rj = RP_NET_RJ_CALLING_AE;
            snprintf(d.why, sizeof d.why, "peer %s must connect from host %s", d.peer->name,
                     d.peer->host);
            return d;
        }
        if (d.peer->tls_only && !in->tls) {
            d.rj = RP_NET_RJ_CALLING_AE;
            snprintf(d.why, sizeof d.why, "peer %s is tls_only and this port is not TLS",
                     d.peer->name);
            return d;
        }
        if (!cert_matches(d.peer, in, d.why, sizeof d.why)) {
            d.rj = RP_NET_RJ_CALLING_AE;
            return d;
        }
        if (!d.peer->may_store && !d.peer->may_echo) {
            d.rj = RP_NET_RJ_CALLING_AE;
            snprintf(d.why, sizeof d.why, "peer %s may neither store nor echo", d.peer->name);
            return d;
        }
    }
    d.ok = 1;
    return d;
}

/* Reserve an association slot (global and per calling AE); 0 when over a limit. */
static int slot_take(rp_node *n, const char *ae, const rp_conf_peer *peer, char *why, size_t wsz)
{
    const rp_conf *c = n->conf;
    int per_peer =
        peer && peer->max_associations > 0 ? peer->max_associations : c->max_associations_per_peer;
    pthread_mutex_lock(&n->lock);
    int ok = 1;
    peer_slot *slot = NULL, *free_slot = NULL;
    for (int i = 0; i < MAX_PEER_SLOTS; i++) {
        if (n->peers[i].count > 0 && strcmp(n->peers[i].ae, ae) == 0)
            slot = &n->peers[i];
        else if (n->peers[i].count == 0 && !free_slot)
            free_slot = &n->peers[i];
    }
    if (c->max_associations > 0 && n->active >= c->max_associations) {
        snprintf(why, wsz, "max_associations=%d reached", c->max_associations);
        ok = 0;
    } else if (per_peer > 0 && slot && slot->count >= per_peer) {
        snprintf(why, wsz, "max associations for calling AE reached limit=%d", per_peer);
        ok = 0;
    }
    if (ok) {
        if (!slot && free_slot) {
            slot = free_slot;
            rp_strlcpy(slot->ae, ae, sizeof slot->ae);
        }
        if (slot)
            slot->count++;
        n->active++;
    }
    pthread_mutex_unlock(&n->lock);
    return ok;
}

static void slot_release(rp_node *n, const char *ae)
{
    pthread_mutex_lock(&n->lock);
    for (int i = 0; i < MAX_PEER_SLOTS; i++)
        if (n->peers[i].count > 0 && strcmp(n->peers[i].ae, ae) == 0) {
            n->peers[i].count--;
            break;
        }
    n->active--;
    pthread_mutex_unlock(&n->lock);
}

/* ---- connection threads ---------------------------------------------------------------- */

typedef struct {
    rp_node *node;
    rp_net *net; /* the listener it came from (plain or TLS port) */
    int fd;
} conn_arg;

static void thread_done(rp_node *n)
{
    pthread_mutex_lock(&n->lock);
    n->threads--;
    pthread_cond_broadcast(&n->idle);
    pthread_mutex_unlock(&n->lock);
}

static void *conn_thread(void *p)
{
    conn_arg ca = *(conn_arg *)p;
    free(p);
    rp_node *n = ca.node;
    rp_net_assoc *as = NULL;
    assoc_ctx a = {.node = n};
    char why[256] = "";
    char qc[64], qd[64];

    int rc = rp_net_assoc_receive(ca.net, ca.fd, &as, &a.info, why, sizeof why);
    pthread_mutex_lock(&n->lock);
    n->pending--;
    pthread_mutex_unlock(&n->lock);
    if (rc != 0) {
        char qw[300];
        /* A connect-and-close (port probe, health check) is routine: a log line, no event,
         * not counted as refused. Anything else is a problem worth recording. */
        int probe = rc == RP_ENET || rc == RP_ECANCELED;
        const char *tr = ca.net == n->tls_net ? "tls" : "plain";
        rp_log(probe ? RP_LOG_INFO : RP_LOG_WARN, MOD,
               "connection dropped peer=%s:%d reason=%s transport=%s", a.info.peer_host,
               a.info.peer_port, rp_log_kv_quote(why, qw, sizeof qw), tr);
        if (!probe) {
            atomic_fetch_add(&n->st_rejected, 1);
            rp_metrics_add(RP_M_ASSOCIATIONS_REJECTED, 1, "dropped");
            node_event(n, "association", "result=dropped peer=%s:%d reason=\"%s\" transport=%s",
                       a.info.peer_host, a.info.peer_port, why, tr);
        }
        thread_done(n);
        return NULL;
    }
    rp_log_kv_quote(a.info.calling_ae, qc, sizeof qc);
    rp_log_kv_quote(a.info.called_ae, qd, sizeof qd);
    char tkv[512];
    transport_kv(&a.info, tkv, sizeof tkv);

    decision d = decide(n, &a.info);
    if (d.ok && !slot_take(n, a.info.calling_ae, d.peer, d.why, sizeof d.why)) {
        d.ok = 0;
        d.rj = RP_NET_RJ_LIMIT;
    }
    if (!d.ok) {
        atomic_fetch_add(&n->st_rejected, 1);
        rp_metrics_add(RP_M_ASSOCIATIONS_REJECTED, 1, d.rj == RP_NET_RJ_LIMIT ? "limit" : d.rj == RP_NET_RJ_BUSY ? "busy"
                       : d.rj == RP_NET_RJ_CALLED_AE ? "called_ae" : "calling_ae");
        rp_net_assoc_reject(as, d.rj);
        char qw[500];
        RP_WARN(MOD, "association rejected calling_ae=%s called_ae=%s peer=%s:%d %s reason=%s", qc,
                qd, a.info.peer_host, a.info.peer_port, tkv, rp_log_kv_quote(d.why, qw, sizeof qw));
        node_event(n, "association",
                   "result=rejected calling_ae=%s called_ae=%s peer=%s:%d %s "
                   "reason=\"%s\"",
                   qc, qd, a.info.peer_host, a.info.peer_port, tkv, d.why);
        thread_done(n);
        return NULL;
    }

    live_assoc me = {.as = as};
    pthread_mutex_lock(&n->lock);
    me.next = n->live;
    n->live = &me;
    pthread_mutex_unlock(&n->lock);
    int may_echo = d.peer ? d.peer->may_echo : 1, may_store = d.peer ? d.peer->may_store : 1;
    int ctxs = rp_net_assoc_accept(as, n->conf->ae_title, may_echo, may_store);
    double t0 = rp_mono_s();
    rp_net_end end = RP_NET_END_NETWORK_ERROR;
    if (ctxs >= 0) {
        atomic_fetch_add(&n->st_assoc, 1);
        rp_metrics_add(RP_M_ASSOCIATIONS, 1);
        rp_metrics_add(RP_M_ASSOCIATIONS_OPEN, 1);
        RP_INFO(MOD,
                "association accepted calling_ae=%s called_ae=%s peer=%s:%d contexts=%d "
                "max_pdu=%lu %s",
                qc, qd, a.info.peer_host, a.info.peer_port, ctxs, a.info.max_pdu_peer, tkv);
        rp_net_handlers h = {.ctx = &a,
                             .store_begin = h_store_begin,
                             .store_data = h_store_data,
                             .store_end = h_store_end,
                             .store_done = h_store_done,
                             .should_abort = h_should_abort};
        end = rp_net_assoc_serve(as, &h);
        rp_metrics_add(RP_M_ASSOCIATIONS_OPEN, -1);
    }
    rp_store_rx_free(a.rx);
    pthread_mutex_lock(&n->lock);
    for (live_assoc **pp = &n->live; *pp; pp = &(*pp)->next)
        if (*pp == &me) {
            *pp = me.next;
            break;
        }
    pthread_mutex_unlock(&n->lock);
    rp_net_assoc_free(as);
    slot_release(n, a.info.calling_ae);
    double secs = rp_mono_s() - t0;
    rp_log(end == RP_NET_END_RELEASED ? RP_LOG_INFO : RP_LOG_WARN, MOD,
           "association %s calling_ae=%s peer=%s:%d stored=%lld failed=%lld bytes=%lld "
           "seconds=%.3f",
           end == RP_NET_END_RELEASED ? "released" : "ended", qc, a.info.peer_host,
           a.info.peer_port, a.stored, a.failed, a.bytes, secs);
    if (end != RP_NET_END_RELEASED)
        RP_WARN(MOD, "association ended abnormally calling_ae=%s peer=%s:%d end=%s", qc,
                a.info.peer_host, a.info.peer_port, rp_net_end_name(end));
    node_event(n, "association",
               "result=%s calling_ae=%s called_ae=%s peer=%s:%d stored=%lld "
               "failed=%lld bytes=%lld seconds=%.3f %s",
               rp_net_end_name(end), qc, qd, a.info.peer_host, a.info.peer_port, a.stored, a.failed,
               a.bytes, secs, tkv);
    thread_done(n);
    return NULL;
}

typedef struct {
    rp_node *node;
    rp_net *net;
} listen_arg;

static void *listener_thread(void *p)
{
    listen_arg la = *(listen_arg *)p;
    free(p);
    rp_node *n = la.node;
    /* Connections still negotiating are bounded too: a flood of silent sockets must not
     * become a flood of threads. */
    int max_pending = (n->conf->max_associations > 0 ? n->conf->max_associations : 64) + 16;
    while (!atomic_load(&n->stopping)) {
        int fd = -1;
        int r = rp_net_wait_connection(la.net, 200, &fd);
        if (r < 0) {
            RP_ERROR(MOD, "listening socket failed err=\"%s\"", rp_strerror(r));
            usleep(200 * 1000);
            continue;
        }
        if (r == 0)
            continue;
        pthread_mutex_lock(&n->lock);
        int over = n->pending >= max_pending;
        if (!over) {
            n->pending++;
            n->threads++;
        }
        pthread_mutex_unlock(&n->lock);
        if (over) {
            RP_WARN(MOD, "connection refused, too many connections negotiating pending=%d",
                    max_pending);
            atomic_fetch_add(&n->st_rejected, 1);
            rp_metrics_add(RP_M_ASSOCIATIONS_REJECTED, 1, "too_many_connections");
            close(fd);
            continue;
        }
        conn_arg *ca = malloc(sizeof *ca);
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&at, 512 * 1024);
        if (ca) {
            ca->node = n;
            ca->net = la.net;
            ca->fd = fd;
        }
        if (!ca || pthread_create(&t, &at, conn_thread, ca) != 0) {
            RP_ERROR(MOD, "cannot start association thread");
            free(ca);
            close(fd);
            pthread_mutex_lock(&n->lock);
            n->pending--;
            n->threads--;
            pthread_mutex_unlock(&n->lock);
        }
        pthread_attr_destroy(&at);
    }
    return NULL;
}

/* ---- life cycle ------------------------------------------------------------------------ */

int rp_node_new(const rp_conf *c, rp_node **out)
{
    *out = NULL;
    rp_node *n = calloc(1, sizeof *n);
    if (!n)
        return RP_ENOMEM;
    n->conf = c;
    n->shutdown_grace_s = 20;
    n->lock_fd = -1;
    pthread_mutex_init(&n->lock, NULL);
    pthread_mutex_init(&n->events_lock, NULL);
    pthread_cond_init(&n->idle, NULL);
    *out = n;
    return 0;
}

void rp_node_on_indexed(rp_node *n, void (*fn)(void *arg, size_t count), void *arg)
{
    n->on_indexed = fn;
    n->on_indexed_arg = arg;
}

int rp_node_add_service(rp_node *n, const rp_node_service *svc)
{
    if (n->n_services >= MAX_SERVICES || n->net)
        return RP_EINVAL;
    n->services[n->n_services++] = *svc;
    return 0;
}

void rp_node_set_shutdown_grace(rp_node *n, int seconds)
{
    n->shutdown_grace_s = seconds < 0 ? 0 : seconds;
}

const rp_conf *rp_node_conf(const rp_node *n)
{
    return n->conf;
}
rp_store *rp_node_store(rp_node *n)
{
    return n->store;
}
const char *rp_node_db_path(const rp_node *n)
{
    return n->db_path;
}
int rp_node_port(const rp_node *n)
{
    return n->net ? rp_net_port(n->net) : -1;
}
int rp_node_stopping(const rp_node *n)
{
    return atomic_load(&n->stopping);
}

void rp_node_stats_get(rp_node *n, rp_node_stats *o)
{
    o->associations = atomic_load(&n->st_assoc);
    o->rejected = atomic_load(&n->st_rejected);
    o->stored = atomic_load(&n->st_stored);
    o->failed = atomic_load(&n->st_failed);
    o->bytes = atomic_load(&n->st_bytes);
    o->recv_s = (double)atomic_load(&n->st_recv_us) / 1e6;
    o->commit_s = (double)atomic_load(&n->st_commit_us) / 1e6;
    o->sync_wait_s = 0;
    o->log_syncs = 0;
    o->log_classic = 0;
    if (n->store) {
        rp_store_log_stats ls;
        rp_store_log_stats_get(n->store, &ls);
        o->sync_wait_s = ls.sync_wait_s;
        o->log_syncs = (long long)ls.syncs;
        o->log_classic = (long long)ls.classic;
    }
    pthread_mutex_lock(&n->lock);
    o->active = n->active;
    pthread_mutex_unlock(&n->lock);
}

/* Warn when the node certificate expires within expiry_warn_days; at start, then daily. */
static void tls_expiry_check(rp_node *n)
{
    const rp_conf *c = n->conf;
    int days = 0;
    n->tls_expiry_check = rp_mono_s() + 86400.0;
    if (rp_tls_cert_days_left(c->tls_cert, &days) != 0) {
        RP_WARN(MOD, "tls cert unreadable for the expiry check cert=%s", c->tls_cert);
        return;
    }
    if (days < 0)
        RP_ERROR(MOD, "tls cert expired cert=%s days_left=%d", c->tls_cert, days);
    else if (days < c->tls_expiry_warn_days)
        RP_WARN(MOD, "tls cert expires soon cert=%s days_left=%d expiry_warn_days=%d", c->tls_cert,
                days, c->tls_expiry_warn_days);
}

int rp_node_start(rp_node *n, char *err, size_t errsz)
{
    const rp_conf *c = n->conf;
    int rc;
    double t0 = rp_mono_s();
    if ((rc = rp_store_open(c, &n->store)) != 0) {
        snprintf(err, errsz, "cannot open the store under data_dir=%s: %s", c->data_dir,
                 rp_strerror(rc));
        goto fail;
    }
    rp_store_db_path(n->store, n->db_path, sizeof n->db_path);
    /* One node per data_dir: a second one's reconciliation would delete the first one's
     * spool files while they are being received. */
    {
        char lp[RP_PATH_MAX + 32];
        snprintf(lp, sizeof lp, "%s/radprepd.lock", c->data_dir);
        n->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
        if (n->lock_fd < 0 || flock(n->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            char other[32] = "";
            if (n->lock_fd >= 0) {
                ssize_t r = pread(n->lock_fd, other, sizeof other - 1, 0);
                other[r > 0 ? r : 0] = '\0';
                other[strcspn(other, "\n")] = '\0';
            }
            snprintf(err, errsz, "another radprepd (pid %s) is using data_dir=%s",
                     other[0] ? other : "?", c->data_dir);
            if (n->lock_fd >= 0)
                close(n->lock_fd);
            n->lock_fd = -1;
            rc = RP_EBUSY;
            goto fail;
        }
        char pid[32];
        int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
        if (ftruncate(n->lock_fd, 0) != 0 || pwrite(n->lock_fd, pid, (size_t)len, 0) != len)
            RP_WARN(MOD, "cannot write pid into %s", lp);
    }
    if ((rc = rp_db_open(n->db_path, &n->db_events)) != 0) {
        snprintf(err, errsz, "cannot open the index %s: %s", n->db_path, rp_strerror(rc));
        goto fail;
    }

    /* dcmtk's DUL refuses a receive PDU size outside 4 KB..128 KB (every association would
     * fail); 0 means "as large as we can". */
    unsigned max_pdu = c->max_pdu == 0 ? 131072u : c->max_pdu;
    if (max_pdu > 131072u) {
        RP_WARN(MOD, "max_pdu=%u is above what dcmtk receives, using 131072", max_pdu);
        max_pdu = 131072u;
    }
    if (max_pdu < 4096u)
        max_pdu = 4096u;
    rp_net_params np = {
        .bind = c->bind,
        .port = c->port,
        .max_pdu = max_pdu,
        .acse_timeout_s = c->acse_timeout_s,
        .dimse_timeout_s = c->dimse_timeout_s,
        .network_timeout_s = c->network_timeout_s,
        .max_instance_bytes = c->max_instance_mb > 0 ? c->max_instance_mb * 1024LL * 1024LL : 0,
    };
    rp_net_global_init(&np);
    char nerr[256] = "";
    if ((rc = rp_net_open(&np, &n->net, nerr, sizeof nerr)) != 0) {
        snprintf(err, errsz, "%s", nerr);
        goto fail;
    }
    if (c->tls_port) {
        if ((rc = rp_tls_new(c, RP_TLS_SERVER, &n->tls, nerr, sizeof nerr)) != 0) {
            snprintf(err, errsz, "TLS: %s", nerr);
            goto fail;
        }
        np.port = c->tls_port;
        np.tls = n->tls;
        if ((rc = rp_net_open(&np, &n->tls_net, nerr, sizeof nerr)) != 0) {
            snprintf(err, errsz, "[tls] port: %s", nerr);
            goto fail;
        }
    }

    long rec = rp_store_reconcile(n->store, n->db_events);
    if (rec < 0) {
        snprintf(err, errsz, "reconciliation failed: %s", rp_strerror((int)rec));
        rc = (int)rec;
        goto fail;
    }
    if ((rc = rp_store_index_start(n->store, c->index_batch, c->index_flush_ms)) != 0) {
        snprintf(err, errsz, "cannot start the index queue: %s", rp_strerror(rc));
        goto fail;
    }
    if (n->on_indexed)
        rp_store_index_on_commit(n->store, n->on_indexed, n->on_indexed_arg);
    /* Without the log every instance takes the classic path (its own file and fsyncs):
     * slower, just as safe; the node still receives. */
    if ((rc = rp_store_log_start(n->store)) != 0)
        RP_WARN(MOD, "receiving without the spool log err=\"%s\"", rp_strerror(rc));
    for (n->n_started = 0; n->n_started < n->n_services; n->n_started++) {
        rp_node_service *s = &n->services[n->n_started];
        if (s->start && (rc = s->start(n, s->arg)) != 0) {
            snprintf(err, errsz, "service %s failed to start: %s", s->name, rp_strerror(rc));
            goto fail;
        }
        RP_INFO(MOD, "service started name=%s", s->name);
    }
    listen_arg *la = malloc(sizeof *la);
    if (la)
        *la = (listen_arg){n, n->net};
    if (!la || pthread_create(&n->listener, NULL, listener_thread, la) != 0) {
        free(la);
        snprintf(err, errsz, "cannot start the listener thread");
        rc = RP_ENOMEM;
        goto fail;
    }
    n->listener_started = 1;
    if (n->tls_net) {
        la = malloc(sizeof *la);
        if (la)
            *la = (listen_arg){n, n->tls_net};
        if (!la || pthread_create(&n->tls_listener, NULL, listener_thread, la) != 0) {
            free(la);
            snprintf(err, errsz, "cannot start the TLS listener thread");
            rc = RP_ENOMEM;
            goto fail;
        }
        n->tls_listener_started = 1;
        RP_INFO(MOD, "tls listening port=%d profile=%s require_client_cert=%s cert=%s ca_file=%s",
                rp_net_port(n->tls_net), rp_tls_profile_describe(c->tls_profile),
                c->tls_require_client_cert ? "yes" : "no", c->tls_cert,
                c->tls_ca_file[0] ? c->tls_ca_file : "-");
        tls_expiry_check(n);
    }

    if (c->n_peers == 0)
        RP_WARN(MOD,
                "NO [peer] CONFIGURED: accepting associations from ANY calling AE title on "
                "port %d; add [peer NAME] sections to restrict access",
                rp_net_port(n->net));
    char qb[300];
    RP_INFO(MOD,
            "node ready ae_title=%s bind=%s port=%d tls_port=%d data_dir=%s peers=%zu "
            "max_associations=%d duplicate_policy=%s min_free_mb=%lld reconciled=%ld "
            "start_seconds=%.3f version=%s",
            c->ae_title, rp_log_kv_quote(c->bind[0] ? c->bind : "0.0.0.0", qb, sizeof qb),
            rp_net_port(n->net), n->tls_net ? rp_net_port(n->tls_net) : 0, c->data_dir, c->n_peers,
            c->max_associations,
            c->duplicate_policy == RP_DUP_REPLACE  ? "replace"
            : c->duplicate_policy == RP_DUP_REJECT ? "reject"
                                                   : "keep_first",
            c->min_free_mb, rec, rp_mono_s() - t0, RP_VERSION);
    node_event(n, "node", "result=started ae_title=%s port=%d reconciled=%ld", c->ae_title,
               rp_net_port(n->net), rec);
    sd_notifyf(0, "READY=1\nSTATUS=receiving on port %d as %s", rp_net_port(n->net), c->ae_title);
    return 0;

fail:
    rp_node_stop(n);
    return rc ? rc : RP_EINTERNAL;
}

void rp_node_request_stop(rp_node *n)
{
    atomic_store(&n->stop_requested, 1);
}

int rp_node_run(rp_node *n)
{
    uint64_t wd_usec = 0;
    int wd = sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0;
    double wd_every = wd ? (double)wd_usec / 2e6 : 0, last_wd = 0;
    while (!atomic_load(&n->stop_requested)) {
        if (wd && rp_mono_s() - last_wd >= wd_every) {
            sd_notify(0, "WATCHDOG=1");
            last_wd = rp_mono_s();
        }
        if (n->tls && rp_mono_s() >= n->tls_expiry_check)
            tls_expiry_check(n);
        usleep(100 * 1000);
    }
    RP_INFO(MOD, "stop requested, no new associations");
    sd_notify(0, "STOPPING=1");
    rp_node_stop(n);
    return 0;
}

void rp_node_stop(rp_node *n)
{
    if (!n || n->stopped)
        return;
    n->stopped = 1;
    atomic_store(&n->stopping, 1);
    if (n->listener_started) {
        pthread_join(n->listener, NULL);
        n->listener_started = 0;
    }
    if (n->tls_listener_started) {
        pthread_join(n->tls_listener, NULL);
        n->tls_listener_started = 0;
    }
    if (n->net)
        rp_net_stop_listening(n->net);
    if (n->tls_net)
        rp_net_stop_listening(n->tls_net);
    /* In-flight associations may finish what they are sending, within the grace period. */
    double deadline = rp_mono_s() + n->shutdown_grace_s;
    pthread_mutex_lock(&n->lock);
    int warned = 0;
    while (n->threads > 0) {
        if (rp_mono_s() >= deadline && !atomic_load(&n->abort_all)) {
            atomic_store(&n->abort_all, 1);
            RP_WARN(MOD,
                    "shutdown grace over, aborting associations still open active=%d "
                    "grace_s=%d",
                    n->active, n->shutdown_grace_s);
            /* Threads blocked inside a dataset read return at once; their transfers were
             * never acknowledged, so nothing acknowledged is lost. */
            for (live_assoc *l = n->live; l; l = l->next)
                rp_net_assoc_interrupt(l->as);
            deadline = rp_mono_s() + 10; /* aborts are noticed within ~1 s */
        } else if (rp_mono_s() >= deadline) {
            if (!warned)
                RP_ERROR(MOD, "association threads did not stop threads=%d", n->threads);
            warned = 1;
            break;
        } else if (!warned && n->threads > 0) {
            RP_INFO(MOD, "waiting for associations to finish active=%d", n->active);
            warned = -1;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&n->idle, &n->lock, &ts);
    }
    int left = n->threads;
    pthread_mutex_unlock(&n->lock);
    /* The hook may point into a service: no call once services stop. */
    if (n->store)
        rp_store_index_on_commit(n->store, NULL, NULL);
    while (n->n_started > 0) {
        rp_node_service *s = &n->services[--n->n_started];
        if (s->stop)
            s->stop(n, s->arg);
        RP_INFO(MOD, "service stopped name=%s", s->name);
    }
    if (n->store)
        rp_store_index_stop(n->store); /* flushes everything queued */
    rp_node_stats st;
    rp_node_stats_get(n, &st);
    struct rusage ru;
    double cpu_s = getrusage(RUSAGE_SELF, &ru) == 0
                       ? (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                             (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6
                       : 0;
    if (n->net) {
        RP_INFO(MOD,
                "node stopped associations=%lld rejected=%lld stored=%lld failed=%lld "
                "bytes=%lld recv_s=%.3f commit_s=%.3f sync_wait_s=%.3f log_syncs=%lld "
                "log_classic=%lld cpu_s=%.3f",
                st.associations, st.rejected, st.stored, st.failed, st.bytes, st.recv_s,
                st.commit_s, st.sync_wait_s, st.log_syncs, st.log_classic, cpu_s);
        node_event(n, "node",
                   "result=stopped associations=%lld stored=%lld failed=%lld recv_s=%.3f "
                   "commit_s=%.3f sync_wait_s=%.3f log_syncs=%lld log_classic=%lld cpu_s=%.3f",
                   st.associations, st.stored, st.failed, st.recv_s, st.commit_s, st.sync_wait_s,
                   st.log_syncs, st.log_classic, cpu_s);
    }
    if (left == 0 && n->net) {
        rp_net_close(n->net);
        n->net = NULL;
    }
    if (left == 0 && n->tls_net) {
        rp_net_close(n->tls_net);
        n->tls_net = NULL;
    }
    if (n->db_events) {
        rp_db_close(n->db_events);
        n->db_events = NULL;
    }
}

void rp_node_free(rp_node *n)
{
    if (!n)
        return;
    rp_node_stop(n);
    int threads;
    pthread_mutex_lock(&n->lock);
    threads = n->threads;
    pthread_mutex_unlock(&n->lock);
    if (threads > 0)
        return; /* a stuck thread still uses the node: leak it rather than crash at exit */
    if (n->net)
        rp_net_close(n->net);
    if (n->tls_net)
        rp_net_close(n->tls_net);
    rp_tls_free(n->tls); /* after its network: dcmtk's layer pointer dies with it */
    rp_store_close(n->store);
    pthread_mutex_destroy(&n->lock);
    if (n->lock_fd >= 0)
        close(n->lock_fd); /* releases the flock */
    pthread_mutex_destroy(&n->events_lock);
    pthread_cond_destroy(&n->idle);
    free(n);
}
