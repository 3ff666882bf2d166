/*
 * store — where instances live on disk, how they get there safely, and what happens when
 * one arrives twice. The receiving path (scp/) hands a spool file to rp_store_put() and
 * turns the outcome into a DIMSE status; everything in between is decided here.
 *
 * Contract:
 *  - Layout under <data_dir>: store/<study_uid>/<series_uid>/<sop_uid>.dcm for instances,
 *    spool.wal the spool log (received instances until they are in store/), spool/ for
 *    instances received into files of their own, index.sqlite for the db.
 *  - A UID reaches a path only after rp_store_uid_safe() accepted it: digits and dots,
 *    1..64 characters, no empty component. A leading zero in a multi-digit component breaks
 *    PS3.5 (rp_store_uid_valid()): uid_policy=lenient (default) stores it with a warning in
 *    the log, strict refuses it (0xC000) as any other invalid UID.
 *  - rp_store_put() makes an instance durable: header read (dicom/, up to Pixel Data), UID
 *    validation, fsync(file), rename into place, fsync(directory). Only after it returns 0
 *    may the SCP answer success. On any failure nothing is left behind in store/ or spool/.
 *    rp_store_rx_commit() does the same for an instance streamed into the spool log, with
 *    one fdatasync shared by all associations; it reaches store/ a little later (below).
 *  - Duplicates (same SOP Instance UID, in the same series or another one) follow
 *    c->duplicate_policy; identical dataset bytes are always an idempotent success.
 *    Concurrent writers of one UID in one series never leave a mix (rename without replace
 *    decides who was first).
 *  - Every new or replaced instance is handed to the index queue (when started): indexing
 *    is batched on its own thread and never delays an answer.
 *  - Below c->min_free_mb free space, rp_store_space_check() says RP_ENOSPC.
 *  - Thread-safe: one rp_store may be used by many association threads at once.
 *  - Files are the truth: rp_store_reconcile() indexes files the database missed and removes
 *    spool leftovers; rp_store_reindex() rebuilds the whole index from the files.
 *
 * Finding a duplicate under another series without SQLite on the network threads:
 *   the store keeps an in-memory set of the instances it holds (hash of the SOP Instance UID
 *   -> study/series, store_internal.h), filled by the walk rp_store_reconcile() makes at
 *   start (it visits every file anyway) and kept by every rp_store_put(). Measured on the
 *   2-core dev VM under load (lookups of random present/absent UIDs): the index lookup it
 *   replaces (a four-table join under one mutex shared by every association) took 24 us
 *   with 100 k instances indexed and 53 us with 1 M, 68 / 152 us per lookup with 4 threads
 *   contending; the set takes 0.3-1 us. The set also knows instances the batched index has
 *   not committed yet, which the index lookup missed. Its price is memory: 12 bytes a slot
 *   at <= 70 % load, i.e. 17-34 bytes per instance held (1 M instances: 25.7 MB, filled in
 *   0.9 s), nothing per duplicate received. A hit is always confirmed with stat(), so a
 *   stale entry (a file removed by hand, a hash collision) costs only that stat. The other
 *   candidate, per-thread read-only WAL connections, needs no memory per instance but a
 *   page cache per connection, lags the index queue as before, and keeps SQLite on the path
 *   of every C-STORE; a fixed-size Bloom filter in front of such a lookup is the way out if
 *   stores of tens of millions of instances make the set too big.
 *
 * The durable commit of the classic path (fsync file, directories, rename, fsync directory)
 * is one function in store.c, commit_durable(); the spool log (store/spool.c) replaces it for
 * the node's associations.
 */
#ifndef RP_STORE_H
#define RP_STORE_H

#include <stddef.h>

#include "conf/conf.h"
#include "db/db.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_store rp_store;

/* Open the store under c->data_dir (creates store/ and spool/). Owned: rp_store_close(). */
int rp_store_open(const rp_conf *c, rp_store **out);
void rp_store_close(rp_store *s);

/* 0 if `uid` is a valid DICOM UID (PS3.5) that may become a path component, else RP_EUID. */
int rp_store_uid_valid(const char *uid);
/* 0 if `uid` is safe as a path component: digits and dots, 1..64 characters, no empty
 * component (PS3.5's leading-zero rule not applied); else RP_EUID. What uid_policy=lenient
 * admits, and what a store walk accepts. */
int rp_store_uid_safe(const char *uid);

/* Absolute path of the store root and of the index database, into buf. */
const char *rp_store_root(const rp_store *s);
const char *rp_store_db_path(const rp_store *s, char *buf, size_t bufsz);

/* ---- receiving an instance (scp/ and anything that adds files) ----------------------
 *
 * The life of an instance:
 *   rp_store_space_check()            -> RP_ENOSPC: answer 0xA700 before reading the dataset
 *   rp_store_spool_new()              -> a fresh spool/<unique>.part opened O_EXCL
 *   ...caller writes the Part-10 bytes into the fd...
 *   rp_store_put()                    -> durable in store/ and queued for the index, or a
 *                                        duplicate settled by policy, or nothing left behind
 *   (or rp_store_spool_discard() when the transfer failed)
 */

/* 0 when the data filesystem has at least min_free_mb free, else RP_ENOSPC (or RP_EIO). */
int rp_store_space_check(rp_store *s);

/* Create a unique spool file; its path goes into `path` and an fd open for writing into
 * *fd. The caller hands both to rp_store_put() or rp_store_spool_discard(). */
int rp_store_spool_new(rp_store *s, char *path, size_t pathsz, int *fd);
/* Close fd (if >= 0) and unlink the spool file. */
void rp_store_spool_discard(const char *path, int fd);

/* What rp_store_put() did with an instance it accepted. */
typedef enum {
    RP_STORE_NEW = 0,        /* first copy: now in store/, queued for the index */
    RP_STORE_DUP_IDENTICAL,  /* same dataset bytes already stored: nothing changed */
    RP_STORE_DUP_KEPT_FIRST, /* different bytes, policy keep_first: the new copy was dropped */
    RP_STORE_DUP_REPLACED    /* different bytes, policy replace: the new copy replaced the old
                                one (under another series: the old file is removed), queued */
} rp_store_outcome;

const char *rp_store_outcome_name(rp_store_outcome o);

/* Optional checks and facts for rp_store_put(); any field may be NULL. */
typedef struct rp_store_put_args {
    const char *expect_sop_instance_uid; /* the C-STORE request's Affected SOP Instance UID */
    const char *expect_sop_class_uid;    /* the C-STORE request's Affected SOP Class UID */
    const char *file_sha256;             /* hex of the whole spool file if the caller hashed it
                                            while writing; NULL: computed here */
    const char *calling_ae;              /* copied into meta */
    const char *peer_host;               /* copied into meta */
} rp_store_put_args;

/* Put the spool file into the store: read its header, validate the UIDs and compare them
 * with the request, settle a duplicate (same series or another one) by policy, make a new
 * copy durable (commit_durable: fsync(fd), new directories fsync'd into their parents,
 * rename into store/<study>/<series>/<sop>.dcm, fsync the directory), and queue it for the
 * index. `fd` may be -1 (file already closed). On success `meta` describes the stored
 * instance (file_path relative to the store root: the kept copy for duplicate_kept_first)
 * and `outcome` says what happened; the spool file is gone in every case.
 * Errors (reason gets a one-line text, may be NULL):
 *   RP_EPARSE  not DICOM / header unreadable         -> 0xC000-class status
 *   RP_EUID    a UID missing, invalid or != request  -> 0xC000-class status
 *   RP_EINVAL  SOP Class differs from the request    -> 0xA900
 *   RP_EDUP    duplicate with other bytes, policy reject
 *   RP_EIO / RP_ENOSPC  the disk failed us            -> 0xA700 (the sender retries) */
int rp_store_put(rp_store *s, const char *spool_path, int fd, const rp_store_put_args *args,
                 rp_instance_meta *meta, rp_store_outcome *outcome, char *reason, size_t reasonsz);

/* Copy an existing DICOM file into the store through the spool (same checks, policy,
 * durability and indexing as rp_store_put). For tools and tests. */
int rp_store_put_file(rp_store *s, const char *src_path, const rp_store_put_args *args,
                      rp_instance_meta *meta, rp_store_outcome *outcome, char *reason,
                      size_t reasonsz);

/* ---- receiving through the spool log (the node's associations) --------------------------
 *
 * With the log started, an association streams each instance into <data_dir>/spool.wal and the
 * C-STORE response waits only for the one fdatasync that covers its commit record, shared
 * with every association that committed meanwhile (group commit); a background promoter
 * moves committed instances into store/<study>/<series>/<sop>.dcm, durably, then tells the
 * index: when receiving pauses (a burst up to spool_log_mb is held in the log meanwhile), and
 * at once when rp_store_index_flush() or a duplicate of a held instance needs it; the index
 * lags receiving by at most a few seconds. Same checks, duplicate policy, outcomes and errors as rp_store_put(): an
 * acknowledged instance survives kill -9 and power loss (in the log until promoted, replayed
 * by rp_store_reconcile() at the next start), an unacknowledged one never appears half.
 * Without the log (or when it cannot take an instance: bigger than a slab, no slab free, a
 * failed sync) the same calls use a spool file of the instance's own and rp_store_put().
 * See store/spool.c for the format and the reasoning.
 *
 *   rp_store_rx_new()          one per association thread
 *   rp_store_rx_begin()        per instance, after rp_store_space_check()
 *   rp_store_rx_write()*       the Part-10 bytes, in order, as they arrive
 *   rp_store_rx_commit()       0: durable, acknowledge; or rp_store_rx_discard() on failure
 *   rp_store_rx_free()         at the end of the association
 */

/* Start the spool log and its promoter. Call after rp_store_reconcile() (which replays what
 * a previous run left in the log; RP_EINVAL without it) and rp_store_index_start(). */
int rp_store_log_start(rp_store *s);
/* Promote everything committed, durably, and stop (idempotent; rp_store_index_stop() and
 * rp_store_close() do it). No rp_store_rx_* call may be in progress. */
void rp_store_log_stop(rp_store *s);

typedef struct rp_store_rx rp_store_rx;
int rp_store_rx_new(rp_store *s, rp_store_rx **out);
void rp_store_rx_free(rp_store_rx *rx);
/* A new instance begins (a previous one not committed is dropped). 0, or RP_ENOSPC/RP_EIO
 * when not even a spool file can be made. */
int rp_store_rx_begin(rp_store_rx *rx);
/* Bytes of the instance's Part-10 file, in order. 0, or the instance failed (RP_ENOSPC /
 * RP_EIO, sticky until the next begin): keep reading, then discard and answer 0xA700. */
int rp_store_rx_write(rp_store_rx *rx, const void *buf, size_t n);
/* The instance is complete: as rp_store_put() (meta, outcome, errors). Returns 0 only when
 * the instance is durable or a settled duplicate; nothing of it is kept otherwise. */
int rp_store_rx_commit(rp_store_rx *rx, const rp_store_put_args *args, rp_instance_meta *meta,
                       rp_store_outcome *outcome, char *reason, size_t reasonsz);
/* Drop the instance being received (transfer failed). */
void rp_store_rx_discard(rp_store_rx *rx);
/* Counters since rp_store_open() (for the node's logs and benchmarks). */
typedef struct rp_store_log_stats {
    unsigned long long committed; /* instances made durable through the spool log */
    unsigned long long syncs;     /* fdatasyncs that did it (committed / syncs = group size) */
    double sync_wait_s;           /* summed over those instances: commit record queued -> synced */
    unsigned long long classic;   /* instances received into a file of their own */
} rp_store_log_stats;
void rp_store_log_stats_get(rp_store *s, rp_store_log_stats *out);

/* Start handing stored instances to the index: a batched writer thread (rp_db_queue) on
 * this store's index.sqlite, `batch` instances or `flush_ms` per transaction. Without it,
 * rp_store_put() stores without indexing (reconciliation indexes later). */
int rp_store_index_start(rp_store *s, int batch, int flush_ms);
/* Call fn(arg, n) on the index writer's thread after each committed batch of n instances
 * (the node wakes its completion monitor with it); fn NULL removes the hook. Needs a started
 * index queue; a no-op otherwise. */
void rp_store_index_on_commit(rp_store *s, void (*fn)(void *arg, size_t n), void *arg);
/* Wait until every instance stored so far (promoted from the spool log included) is
 * committed to the index. */
int rp_store_index_flush(rp_store *s);
/* Flush and stop the writer (idempotent; rp_store_close() does it too). */
void rp_store_index_stop(rp_store *s);

/* Absolute path of an indexed instance (meta->file_path under the root) into buf. */
const char *rp_store_abs_path(const rp_store *s, const char *rel, char *buf, size_t bufsz);

/* Byte offset where the dataset starts in a file (after preamble + File Meta group),
 * 0 for a raw dataset; negative RP_E* on error. */
long rp_store_dataset_offset(const char *path);

/* Read the header of a DICOM file (Part-10 or raw dataset) into meta, stopping before
 * Pixel Data. RP_EPARSE when it is not DICOM or misses what the index needs. */
int rp_store_read_meta(const char *path, rp_instance_meta *meta);

/* Rebuild the index from every file in the store: clears the index and reindexes (and
 * learns the instances, as reconcile does).
 * Returns the number of instances indexed (>= 0) or an error code. */
long rp_store_reindex(rp_store *s, rp_db *db);

/* On start: index files the database does not know, remove spool leftovers, and learn which
 * instances the store holds (for duplicates). Call it before the first rp_store_put() of a
 * store that already has files. Returns the number of instances newly indexed (>= 0) or an
 * error code. */
long rp_store_reconcile(rp_store *s, rp_db *db);

#ifdef __cplusplus
}
#endif
#endif
