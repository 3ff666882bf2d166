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
    " i.sha256, i.calling_ae, i.peer_host, i.received_at, i.protocol_name, i.repetition_time,"    \
    " i.echo_time, i.inversion_time"                                                               \
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

/* A state/kind column read into its enum (db/names.c); an unknown word logs a warning and
 * gives dflt. */
typedef enum {
    RP_DB_WORDS_SERIES_STATE,
    RP_DB_WORDS_COMPLETED_REASON,
    RP_DB_WORDS_JOB_KIND,
    RP_DB_WORDS_JOB_STATE,
    RP_DB_WORDS_OUTBOX_STATE
} rp_db_words;
int rp_db_col_enum(sqlite3_stmt *s, int i, rp_db_words set, int dflt);

/* Growable array helper: ensures room for element n (one more than the n there are). */
int rp_db_grow(void **arr, size_t *cap, size_t n, size_t elsize);

/* Step a one-off statement to the end, ignoring rows, and finalize it. s may be NULL (a
 * failed prepare: RP_EDB). Returns 0 or RP_EDB (logged with `what`). */
int rp_db_step_done(rp_db *db, sqlite3_stmt *s, const char *what);

/* Read every row of s into a malloc'd array of elsize-byte elements, one read(s, element)
 * per row (the element is zeroed first), and finalize s. On error *out is NULL, *n 0 and the
 * result RP_ENOMEM or RP_EDB (logged with `what`). On entry *out and *n are reset. */
typedef void (*rp_db_read_fn)(sqlite3_stmt *s, void *element);
int rp_db_collect(rp_db *db, sqlite3_stmt *s, void **out, size_t *n, size_t elsize,
                  rp_db_read_fn read, const char *what);


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
 * RP_EEXIST with *id of the row that already has its key. PROCESS: uid is the series, rule
 * NULL; FUSE: uid is the study, rule the fusion rule. */
int rp_db_job_insert_queued(rp_db *db, rp_job_kind kind, const char *uid, const char *rule,
                            int version, int max_attempts, long long *id);

/* Step s, calling fn per row (named columns, values as text, kinds RP_DB_COL_*; fn NULL just
 * steps); stops early when fn returns non-zero; finalizes s. query.c, used by console.c. */
int rp_db_run_rows(rp_db *db, sqlite3_stmt *s, rp_db_row_fn fn, void *user, const char *what);

#endif
