/*
 * db internals: the handle, its prepared-statement cache and small helpers shared by the
 * files of db/. Used only inside db/ (and its tests).
 */
#ifndef RP_DB_INTERNAL_H
#define RP_DB_INTERNAL_H

#include <sqlite3.h>

#include "common/common.h"
#include "db/db.h"

/* Statements prepared once per handle (SQLITE_PREPARE_PERSISTENT) and reused: the index
 * path runs them thousands of times a second. */
typedef enum {
    ST_PATIENT_UPSERT,
    ST_STUDY_UPSERT,
    ST_SERIES_UPSERT,
    ST_INSTANCE_INSERT,
    ST_INSTANCE_OLD,
    ST_INSTANCE_UPDATE,
    ST_SERIES_COUNT_INC,
    ST_SERIES_RECOUNT,
    ST_SERIES_REOPEN,
    ST_SERIES_KEEP_TAKE,
    ST_SERIES_RESTORE,
    ST_INSTANCE_KEPT,
    ST_INSTANCE_GET,
    ST_EVENT_ADD,
    ST_BEGIN,
    ST_BEGIN_IMMEDIATE,
    ST_COMMIT,
    ST_ROLLBACK,
    ST__COUNT
} rp_db_stmt_id;

struct rp_db {
    sqlite3 *h;
    char path[1024];
    sqlite3_stmt *st[ST__COUNT];
    int ready; /* opened and migrated */
};

/* SELECT list (with FROM/JOINs) that rp_db_instance_get and rp_db_series_instances read
 * into an rp_instance_meta (db/index.c). */
#define RP_DB_INSTANCE_COLUMNS                                                                     \
    "p.patient_id, p.issuer, p.name, p.birth_date, p.sex,"                                         \
    " st.study_uid, st.date, st.time, st.accession, st.description,"                               \
    " se.series_uid, se.modality, se.number, se.description, se.body_part,"                        \
    " se.frame_of_reference_uid, i.sop_class, i.sop_uid, i.transfer_syntax,"                       \
    " i.instance_number, i.number_of_frames, i.images_in_acquisition, i.temporal_positions,"       \
    " i.number_of_slices, i.acquisition_number, se.slice_thickness, i.file_path, i.file_size,"     \
    " i.sha256, i.calling_ae, i.peer_host, i.received_at"                                          \
    " FROM instances i JOIN series se ON se.id = i.series_fk"                                      \
    " JOIN studies st ON st.id = se.study_fk JOIN patients p ON p.id = st.patient_fk"

/* The cached statement, reset and with bindings cleared; NULL (logged) on error. */
sqlite3_stmt *rp_db_stmt(rp_db *db, rp_db_stmt_id id);
/* A one-off statement (caller finalizes); NULL (logged) on error. */
sqlite3_stmt *rp_db_prepare(rp_db *db, const char *sql);
/* Log the handle's last error with a context word; returns RP_EDB. */
int rp_db_fail(rp_db *db, const char *what);
/* Run SQL without results (several statements allowed). */
int rp_db_exec(rp_db *db, const char *sql);

/* Transactions. begin_write takes the write lock at once (BEGIN IMMEDIATE) so a
 * read-then-write transaction cannot fail with SQLITE_BUSY half-way. */
int rp_db_begin_write(rp_db *db);
int rp_db_commit(rp_db *db);
void rp_db_rollback(rp_db *db);

/* Binding helpers: empty strings and negative "absent" numbers become NULL. */
void rp_db_bind_text(sqlite3_stmt *s, int i, const char *v);     /* "" -> NULL */
void rp_db_bind_text_raw(sqlite3_stmt *s, int i, const char *v); /* NULL -> NULL, "" kept */
void rp_db_bind_int_opt(sqlite3_stmt *s, int i, long long v);    /* v < 0 -> NULL */
void rp_db_bind_real_opt(sqlite3_stmt *s, int i, double v);      /* v < 0 -> NULL */
/* Column helpers: copy text (NULL -> ""), numbers with a default for NULL. */
void rp_db_col_text(sqlite3_stmt *s, int i, char *dst, size_t dstsz);
long long rp_db_col_int(sqlite3_stmt *s, int i, long long dflt);
double rp_db_col_real(sqlite3_stmt *s, int i, double dflt);

/* Growable array helper for list functions: ensures room for one more element. */
int rp_db_grow(void **arr, size_t *cap, size_t n, size_t elsize);

/* Retry backoff: min(cap_s, base_s * 2^(attempts-1)). */
double rp_db_backoff(double base_s, int attempts, double cap_s);

/* Index rows (db/index.c) inside an open transaction. The cache (may be NULL) remembers the
 * last patient/study rows of this transaction; zero it at the start of each transaction. */
typedef struct rp_db_index_cache {
    long long study_id;
    char study_uid[RP_UID_MAX + 1];
    char patient_id[65];
    char issuer[65];
} rp_db_index_cache;
int rp_db_index_one(rp_db *db, const rp_instance_meta *m, rp_db_index_cache *k);

/* Insert a queued job (jobs.c) inside the caller's transaction: 0 with *id of the new row, or
 * RP_EEXIST with *id of the row that already has (series_uid, version, kind). */
int rp_db_job_insert_queued(rp_db *db, const char *uid, int version, const char *kind,
                            int max_attempts, long long *id);

#endif
