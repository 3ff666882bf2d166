/*
 * store_internal.h — what the files of store/ share (store.c: paths, put, duplicates,
 * reconcile; known.c: in-memory sets; spool.c: the group-committed spool log and its
 * promoter). Only store/ includes it.
 *
 * The known-instance set: which SOP Instance UIDs the store holds, and in which study/series,
 * so that a duplicate under another series is found without asking SQLite on a network
 * thread (see store.h for why). It is a hint, never the truth: every answer is checked
 * against the file system before anything is decided, so a stale entry only costs a stat().
 * Two UIDs with one 64-bit hash (about 3e-8 for a million instances) share an entry: the
 * later one's series wins and a cross-series duplicate of the other is then found by nothing
 * but its path. Shape: an open-addressing table of 64-bit hashes of the SOP Instance UID,
 * each pointing at an entry of a table of distinct study/series pairs. 12 bytes per slot,
 * doubled at 70 % load: 17-34 bytes per instance (1 M instances: 25.7 MB) plus ~134 bytes per
 * series. UIDs themselves are not kept. Thread-safe (one mutex, held for a hash probe).
 *
 * The per-instance lock (rp_pending): held on a SOP Instance UID from the moment its
 * duplicate question is asked until the answer is durable in store/ (for the spool log: until
 * the promoter has made the promoted file durable and recorded that in the log header). A
 * second copy of the same UID waits, so two receptions of one instance are decided one after
 * the other, whichever path (log or spool file) they take, and the log never holds two
 * unpromoted records of one UID (which makes replay after a crash order-free). A plain array
 * scanned linearly: it holds the instances in flight, hundreds at most.
 */
#ifndef RP_STORE_INTERNAL_H
#define RP_STORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"
#include "db/db.h"
#include "dicom/dicom.h"
#include "store/store.h"

typedef struct rp_known_series {
    char study_uid[65];
    char series_uid[65];
} rp_known_series;

typedef struct rp_known {
    pthread_mutex_t lock;
    uint64_t *keys;   /* hash of the SOP Instance UID, 0 = free slot */
    uint32_t *series; /* index into ser[] */
    size_t cap, n;    /* slots (power of two), used slots */
    rp_known_series *ser;
    size_t n_ser, cap_ser;
    uint32_t *ser_index; /* open addressing over ser[]: index + 1, 0 = free */
    size_t cap_ser_index;
} rp_known;

uint64_t rp_known_hash(const char *uid);
int rp_known_init(rp_known *k);
void rp_known_free(rp_known *k);
/* Remember that `sop` lives in study/series (replaces what was remembered). RP_ENOMEM. */
int rp_known_set(rp_known *k, const char *sop, const char *study, const char *series);
/* 1 and the store-relative path (study/series/sop.dcm) into rel when `sop` is remembered,
 * else 0. */
int rp_known_get(rp_known *k, const char *sop, char *rel, size_t relsz);
/* Instances remembered (for logs). */
size_t rp_known_count(rp_known *k);

/* A set of UID hashes (open addressing, linear probing; 0 marks an empty slot): the spool
 * log holds back thousands of records during a burst, each holding its lock. */
typedef struct rp_pending {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    uint64_t *keys; /* hashes of the UIDs held, cap slots (a power of two) */
    size_t n, cap;
} rp_pending;

int rp_pending_init(rp_pending *p);
void rp_pending_free(rp_pending *p);
/* Wait until no one holds `sop`, then hold it. RP_ENOMEM. */
int rp_pending_acquire(rp_pending *p, const char *sop);
/* Hold `sop` if no one does: 0, RP_EBUSY (held), RP_ENOMEM. */
int rp_pending_try_acquire(rp_pending *p, const char *sop);
void rp_pending_release(rp_pending *p, const char *sop);

typedef struct rp_spool rp_spool; /* store/spool.c */

struct rp_store {
    char data_dir[RP_PATH_MAX];
    char root[RP_PATH_MAX];  /* <data_dir>/store */
    char spool[RP_PATH_MAX]; /* <data_dir>/spool */
    long long min_free_mb;
    int log_mb; /* spool log size (conf spool_log_mb) */
    rp_dup_policy dup_policy;
    rp_uid_policy uid_policy;
    /* Serialises "make sure <study>/<series> exists and is durable": a second thread must
     * not see a directory that exists but whose entry is not yet fsync'd in its parent. */
    pthread_mutex_t dir_lock;
    atomic_ulong spool_seq;
    rp_known known;     /* which instances are here, and in which series */
    rp_pending pending; /* which instances are being decided or committed */
    rp_db_queue *queue; /* index hand-off, NULL until rp_store_index_start() */
    rp_spool *log;      /* the spool log, NULL until rp_store_log_start() */
    int log_replayed;   /* rp_store_reconcile() has replayed what the log held */
    /* counters for rp_store_log_stats_get() */
    atomic_ullong st_committed, st_syncs, st_sync_wait_us, st_classic;
};

/* ---- store.c, for spool.c -------------------------------------------------------------- */

void rp_store_set_reason(char *reason, size_t sz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int rp_store_errno_rc(int e); /* ENOSPC/EDQUOT -> RP_ENOSPC, else RP_EIO */
int rp_store_fsync_dir(const char *dir);
void rp_store_meta_from_dcm(rp_instance_meta *m, const rp_dcm_meta *d);
/* After the header was read into meta: UIDs valid and as the request said, facts copied from
 * args, file_path set. RP_EUID / RP_EINVAL with a reason. */
int rp_store_admit_checks(const rp_store_put_args *args, rp_uid_policy policy,
                          rp_instance_meta *meta, char *reason,
                          size_t reasonsz);

/* Where the store holds a SOP Instance UID already (checked on disk: the set is a hint). */
typedef struct rp_store_where {
    int here;      /* a file at meta->file_path */
    int elsewhere; /* a file under another series: known_rel */
    char known_rel[RP_PATH_MAX];
} rp_store_where;
void rp_store_locate(rp_store *s, const rp_instance_meta *meta, rp_store_where *w);

/* 1 when the dataset part of `len` bytes at `off` in fd (a Part-10 stream) equals that of
 * the file at `path`, 0 when it differs, negative on I/O error. */
int rp_store_same_dataset_range(int fd, long long off, long long len, const char *path);
/* Remove the copy of `sop` left under another series after a replace (sync: fsync its
 * directory as well). */
void rp_store_remove_old_copy(rp_store *s, const char *old_rel, const char *new_rel,
                              const char *sop, int sync);
/* A new or replaced instance is in store/: remember it, hand it to the index queue. */
void rp_store_learned(rp_store *s, const rp_instance_meta *meta);
/* rp_store_put() for a spool file whose header is already in meta (admitted): settle
 * duplicates under the per-instance lock, commit durably, hand to the index. Consumes the
 * spool file in every case. */
int rp_store_put_admitted(rp_store *s, const char *spool_path, int fd, rp_instance_meta *meta,
                          rp_store_outcome *outcome, char *reason, size_t reasonsz);

/* ---- spool.c, for store.c -------------------------------------------------------------- */

#define RP_SPOOL_LOG_NAME "spool.wal" /* in <data_dir> */

/* Replay what a previous run left committed and unpromoted in <data_dir>/spool.wal into store/
 * (indexed into db when not NULL), durably. Returns the number of instances replayed (>= 0)
 * or an error; *tails gets the number of slabs that ended in an incomplete record. */
long rp_spool_replay(rp_store *s, rp_db *db, long *tails);
/* Wait until everything committed so far is promoted and handed to the index queue. */
void rp_spool_drain(rp_spool *sp);
/* Take the per-instance lock of `sop` (rp_pending_acquire), telling the spool's promoter not
 * to hold back the record that holds it, if one does (works without a log too). */
int rp_spool_hold(rp_store *s, const char *sop);

#endif
