/*
 * store — where instances live on disk, and how they get there safely.
 *
 * Contract:
 *  - Layout under <data_dir>: store/<study_uid>/<series_uid>/<sop_uid>.dcm for instances,
 *    spool/ for files being received, index.sqlite for the db.
 *  - A UID reaches a path only after rp_store_uid_valid() accepted it: digits and dots,
 *    1..64 characters, no empty component, no leading zero in a multi-digit component.
 *  - rp_store_commit() makes an instance durable: header read (up to Pixel Data), UID
 *    validation, fsync(file), rename into place, fsync(directory). Only after it returns 0
 *    may the SCP answer success. On any failure nothing is left behind in store/.
 *  - Duplicates (same SOP Instance UID) follow c->duplicate_policy; identical dataset bytes
 *    are always an idempotent success. Concurrent writers of one UID never leave a mix.
 *  - Below c->min_free_mb free space, rp_store_space_check() says RP_ENOSPC.
 *  - Thread-safe: one rp_store may be used by many association threads at once.
 *  - Files are the truth: rp_store_reconcile() indexes files the database missed and removes
 *    spool leftovers; rp_store_reindex() rebuilds the whole index from the files.
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

/* 0 if `uid` is a valid DICOM UID that may become a path component, else RP_EUID. */
int rp_store_uid_valid(const char *uid);

/* Absolute path of the store root and of the index database, into buf. */
const char *rp_store_root(const rp_store *s);
const char *rp_store_db_path(const rp_store *s, char *buf, size_t bufsz);

/* ---- receiving an instance (scp/ and anything that adds files) ----------------------
 *
 * The life of an instance:
 *   rp_store_space_check()            -> RP_ENOSPC: answer 0xA700 before reading the dataset
 *   rp_store_spool_new()              -> a fresh spool/<unique>.part opened O_EXCL
 *   ...caller writes the Part-10 bytes into the fd...
 *   rp_store_commit()                 -> durable in store/, or nothing left behind
 *   (or rp_store_spool_discard() when the transfer failed)
 */

/* 0 when the data filesystem has at least min_free_mb free, else RP_ENOSPC (or RP_EIO). */
int rp_store_space_check(rp_store *s);

/* Create a unique spool file; its path goes into `path` and an fd open for writing into
 * *fd. The caller hands both to rp_store_commit() or rp_store_spool_discard(). */
int rp_store_spool_new(rp_store *s, char *path, size_t pathsz, int *fd);
/* Close fd (if >= 0) and unlink the spool file. */
void rp_store_spool_discard(const char *path, int fd);

/* What rp_store_commit() did with an instance. */
typedef enum {
    RP_STORE_NEW = 0,        /* first copy: now in store/ */
    RP_STORE_DUP_IDENTICAL,  /* same dataset bytes already stored: nothing changed */
    RP_STORE_DUP_KEPT_FIRST, /* different bytes, policy keep_first: the new copy was dropped */
    RP_STORE_DUP_REPLACED    /* different bytes, policy replace: the new copy replaced it */
} rp_store_outcome;

const char *rp_store_outcome_name(rp_store_outcome o);

/* Optional checks and facts for rp_store_commit(); any field may be NULL. */
typedef struct rp_store_commit_args {
    const char *expect_sop_instance_uid; /* the C-STORE request's Affected SOP Instance UID */
    const char *expect_sop_class_uid;    /* the C-STORE request's Affected SOP Class UID */
    const char *file_sha256;             /* hex of the whole spool file if the caller hashed it
                                            while writing; NULL: computed here */
    const char *calling_ae;              /* copied into meta */
    const char *peer_host;               /* copied into meta */
    const char *existing_path;           /* where the index says this SOP Instance UID already lives
                                            (relative to the root), or NULL. A copy there, under another
                                            study/series, is a duplicate too and follows the policy
                                            (replace moves it: the old file is removed). */
} rp_store_commit_args;

/* Make the spool file durable in the store: fsync(fd) and close it, read the header (up to
 * Pixel Data), validate the UIDs and compare them with the request, rename into
 * store/<study>/<series>/<sop>.dcm (new directories are fsync'd into their parents),
 * fsync the directory, and apply the duplicate policy. `fd` may be -1 (file already closed).
 * On success `meta` describes the stored instance (file_path relative to the store root)
 * and `outcome` says what happened; the spool file is gone in every case.
 * Errors (reason gets a one-line text, may be NULL):
 *   RP_EPARSE  not DICOM / header unreadable         -> 0xC000-class status
 *   RP_EUID    a UID missing, invalid or != request  -> 0xC000-class status
 *   RP_EINVAL  SOP Class differs from the request    -> 0xA900
 *   RP_EDUP    duplicate with other bytes, policy reject
 *   RP_EIO / RP_ENOSPC  the disk failed us            -> 0xA700 (the sender retries) */
int rp_store_commit(rp_store *s, const char *spool_path, int fd, const rp_store_commit_args *args,
                    rp_instance_meta *meta, rp_store_outcome *outcome, char *reason,
                    size_t reasonsz);

/* Copy an existing DICOM file into the store through the spool (same checks and
 * durability as rp_store_commit). For tools, tests and derived series. */
int rp_store_put_file(rp_store *s, const char *src_path, const rp_store_commit_args *args,
                      rp_instance_meta *meta, rp_store_outcome *outcome, char *reason,
                      size_t reasonsz);

/* Absolute path of an indexed instance (meta->file_path under the root) into buf. */
const char *rp_store_abs_path(const rp_store *s, const char *rel, char *buf, size_t bufsz);

/* Byte offset where the dataset starts in a file (after preamble + File Meta group),
 * 0 for a raw dataset; negative RP_E* on error. */
long rp_store_dataset_offset(const char *path);

/* Read the header of a DICOM file (Part-10 or raw dataset) into meta, stopping before
 * Pixel Data. RP_EPARSE when it is not DICOM or misses what the index needs. */
int rp_store_read_meta(const char *path, rp_instance_meta *meta);

/* Rebuild the index from every file in the store: clears the index and reindexes.
 * Returns the number of instances indexed (>= 0) or an error code. */
long rp_store_reindex(rp_store *s, rp_db *db);

/* On start: index files the database does not know, remove spool leftovers.
 * Returns the number of instances newly indexed (>= 0) or an error code. */
long rp_store_reconcile(rp_store *s, rp_db *db);

#ifdef __cplusplus
}
#endif
#endif
