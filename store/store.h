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
