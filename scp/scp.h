/*
 * scp — the radprep node: receives C-ECHO / C-STORE, stores durably, indexes, and hosts the
 * node's background services (completion monitor, job supervisor, outbox sender).
 *
 * Contract of the receiving side:
 *  - Associations: the called AE title must be ours ([node] ae_title). With [peer] sections
 *    configured, the calling AE title must be one of them (and come from the peer's host if
 *    one is given), else A-ASSOCIATE-RJ "calling AE title not recognized" (permanent). With
 *    no peers configured anyone may connect; the node says so loudly at start.
 *    More than max_associations at once (or max_associations_per_peer for one calling AE):
 *    A-ASSOCIATE-RJ transient, "local limit exceeded". While stopping: transient,
 *    "temporary congestion".
 *  - TLS ([tls] port, tls/tls.h, docs/security.md): a second listener whose connections
 *    complete a TLS handshake (mutual authentication by default) before the same policy
 *    runs; in addition a tls_only peer is rejected on the plain port, and a peer bound to a
 *    certificate (cert_fingerprint / cert_subject) must present it: else "calling AE title
 *    not recognized". Association lines and events carry transport=plain|tls (+ version,
 *    cipher, certificate subject); the per-instance "stored" line carries peer and transport.
 *  - Presentation contexts: Verification and every storage SOP class dcmtk knows, with the
 *    first proposed of: implicit/explicit LE, explicit BE, deflated, JPEG baseline/extended/
 *    lossless (14, SV1), JPEG-LS lossless/near-lossless, JPEG 2000 lossless/lossy, RLE.
 *    Bytes are stored as received (bit-preserving) behind a fresh Part-10 meta header.
 *  - C-STORE statuses: the store decides (rp_store_rx_commit(), store/store.h), the SCP maps
 *    its answer: 0x0000 success only after the instance is durable (its commit record in the
 *    spool log synced, or its own file and directory entry)
 *    (duplicates, in the same series or another: see store.h; identical bytes are a success);
 *    0xA700 free space below min_free_mb, disk error, or instance over max_instance_mb;
 *    0xA900 SOP Class of the dataset differs from the request; 0xC000 unparseable dataset,
 *    missing/invalid UIDs, SOP Instance UID differing from the request; 0x0111 duplicate with
 *    other bytes under duplicate_policy=reject. A failure leaves nothing in store/ or spool/.
 *  - Timeouts: no A-ASSOCIATE-RQ within acse_timeout_s after connecting, or no DIMSE traffic
 *    for dimse_timeout_s inside an association: the connection is dropped and logged.
 *  - Index: the store's promoter queues each stored instance for the index once it is in
 *    store/ (batched, off the network thread's path); no SQLite read or write happens per
 *    instance on a network thread. One
 *    event per association (accepted/rejected/ended) via
 *    rp_db_event_add(), written after the association, never while an instance waits.
 *  - Logs: one line per association start/end and per problem, key=value, with calling AE,
 *    peer, and UIDs; one line per stored instance.
 *
 * Life cycle (node/main.c is the reference user):
 *   rp_node_new(conf) -> rp_node_add_service()* -> rp_node_start() -> rp_node_run()
 *   [until rp_node_request_stop(), e.g. from SIGTERM] -> rp_node_free().
 *   rp_node_start(): open store + index, bind the port, reconcile (replay of the spool log,
 *   spool leftovers, files the index missed, the store learns what it holds), start the
 *   store's index queue and spool log, start services in order, start listening, then
 *   sd_notify READY=1. rp_node_run(): WATCHDOG=1 pings while running. On stop: stop
 *   accepting, let in-flight associations finish (bounded by shutdown_grace_s, then abort),
 *   stop services in reverse order, promote what the log holds, flush the index queue.
 *
 * Services (how the completion monitor, job supervisor and outbox sender plug in):
 *   a service is {name, start, stop, on_instance, arg}. start() runs on the main thread
 *   after reconciliation and before the port accepts; it typically starts its own thread
 *   and may use rp_node_conf/rp_node_db_path/rp_node_store. stop() is called after the
 *   last association ended and before the index queue is flushed. on_instance() (optional)
 *   is called from an association thread after each newly stored instance was acknowledged
 *   (it reaches store/ and the index queue a few ms later, when promoted): it must be quick
 *   and non-blocking (e.g. wake a thread).
 */
#ifndef RP_SCP_H
#define RP_SCP_H

#include <stddef.h>

#include "conf/conf.h"
#include "db/db.h"
#include "store/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_node rp_node;

typedef struct rp_node_service {
    const char *name;                       /* for logs */
    int (*start)(rp_node *node, void *arg); /* 0 or RP_E*: failing aborts start */
    void (*stop)(rp_node *node, void *arg);
    void (*on_instance)(rp_node *node, void *arg, const rp_instance_meta *m); /* may be NULL */
    void *arg;
} rp_node_service;

/* Counters since start (for logs and status). */
typedef struct rp_node_stats {
    long long associations; /* accepted */
    long long rejected;     /* association requests rejected or dropped before accepting */
    long long active;       /* associations now open */
    long long stored;       /* instances answered with success (incl. duplicates) */
    long long failed;       /* instances answered with a failure status */
    long long bytes;        /* bytes received */
    /* where the time of the C-STOREs went, summed over instances (seconds) */
    double recv_s;         /* C-STORE-RQ command in -> last byte of the dataset in */
    double commit_s;       /* dataset in -> answer decided (header, duplicates, durable commit) */
    double sync_wait_s;    /* part of commit_s: waiting for the spool log's group fdatasync */
    long long log_syncs;   /* fdatasyncs of the spool log (instances / syncs = group size) */
    long long log_classic; /* instances received into a file of their own instead */
} rp_node_stats;

/* Create a node for configuration `c` (borrowed: must outlive the node). Nothing is opened
 * yet. Owned by the caller: rp_node_free(). */
int rp_node_new(const rp_conf *c, rp_node **out);
/* Register a service (before rp_node_start); the struct is copied. */
int rp_node_add_service(rp_node *n, const rp_node_service *svc);
/* Before rp_node_start: call fn(arg, count) on the index writer's thread after each batch of
 * `count` instances is committed (rp_db_queue_on_commit), from the queue's start until just
 * before the services stop. fn must be quick (e.g. wake a service's thread). */
void rp_node_on_indexed(rp_node *n, void (*fn)(void *arg, size_t count), void *arg);
/* Open everything and start listening (see life cycle). On error `err` says why in one
 * line and everything started so far is stopped again. */
int rp_node_start(rp_node *n, char *err, size_t errsz);
/* Block until a stop is requested, pinging the systemd watchdog; then stop (see life cycle).
 * Returns 0 after a clean stop. */
int rp_node_run(rp_node *n);
/* Ask the node to stop; async-signal-safe (sets a flag). */
void rp_node_request_stop(rp_node *n);
/* Stop now (idempotent; rp_node_run calls it). */
void rp_node_stop(rp_node *n);
void rp_node_free(rp_node *n);

/* For services (borrowed pointers, valid while the node lives). */
const rp_conf *rp_node_conf(const rp_node *n);
rp_store *rp_node_store(rp_node *n);
const char *rp_node_db_path(const rp_node *n);
int rp_node_port(const rp_node *n); /* the bound port (useful with port 0) */
int rp_node_stopping(const rp_node *n);
void rp_node_stats_get(rp_node *n, rp_node_stats *out);

/* Seconds in-flight associations get to finish after a stop request (default 20). */
void rp_node_set_shutdown_grace(rp_node *n, int seconds);

#ifdef __cplusplus
}
#endif
#endif
