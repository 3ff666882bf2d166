/*
 * db — the SQLite index: patient ▸ study ▸ series ▸ instance, plus the node's durable state
 * (series completion, jobs, outputs, outbox, events). ALL SQL lives in this folder.
 *
 * Contract:
 *  - Files are the truth; the database is an index that can be rebuilt from the store.
 *  - rp_db_open() creates or migrates the schema (PRAGMA user_version), turns on WAL,
 *    synchronous=NORMAL (durability comes from the instance files) and a busy timeout.
 *  - One rp_db handle per thread; handles to the same file may be used concurrently.
 *  - Indexing the same instance twice is idempotent (upsert on SOP Instance UID).
 *  - rp_db_queue batches index writes (one transaction per batch) on its own thread, off the
 *    network threads' critical path; rp_db_queue_stop() flushes everything pushed before it.
 *  - Functions return 0 or a negative RP_E* code; the SQLite message is logged once.
 */
#ifndef RP_DB_H
#define RP_DB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RP_UID_MAX 64

/* What the store reads from an instance's header; what the index keeps about it.
 * Strings are NUL-terminated and may be empty when the header lacks the attribute. */
typedef struct rp_instance_meta {
    /* patient */
    char patient_id[65];
    char issuer_of_patient_id[65];
    char patient_name[325];
    char patient_birth_date[9];
    char patient_sex[17];
    /* study */
    char study_uid[RP_UID_MAX + 1];
    char study_date[9];
    char study_time[17];
    char accession_number[17];
    char study_description[65];
    /* series */
    char series_uid[RP_UID_MAX + 1];
    char modality[17];
    int series_number;          /* -1 when absent */
    char series_description[65];
    char body_part[17];
    char frame_of_reference_uid[RP_UID_MAX + 1];
    /* instance */
    char sop_class_uid[RP_UID_MAX + 1];
    char sop_instance_uid[RP_UID_MAX + 1];
    char transfer_syntax_uid[RP_UID_MAX + 1];
    int instance_number;        /* -1 when absent */
    int number_of_frames;       /* 1 when absent */
    /* hints the completion monitor uses to know the expected count (-1 when absent) */
    int images_in_acquisition;
    int number_of_temporal_positions;
    int number_of_slices;       /* (0054,0081) or private-free hints; -1 when absent */
    int acquisition_number;     /* -1 when absent */
    double slice_thickness;     /* <0 when absent */
    /* storage */
    char file_path[1024];       /* relative to the store root */
    long long file_size;
    char file_sha256[65];       /* hex of the whole file, for idempotent duplicates */
    char calling_ae[17];
    char peer_host[64];
    double received_at;         /* wall clock, seconds since the epoch */
} rp_instance_meta;

typedef struct rp_db rp_db;

/* Open (create, migrate) the index at `path`. *out is owned by the caller: rp_db_close(). */
int rp_db_open(const char *path, rp_db **out);
void rp_db_close(rp_db *db);

/* Index instances in one transaction: upsert patient/study/series/instance, update the
 * series' first_seen/last_seen/instance count. */
int rp_db_index_instances(rp_db *db, const rp_instance_meta *metas, size_t n);

/* Remove an instance row (file replaced or deleted). */
int rp_db_instance_delete(rp_db *db, const char *sop_instance_uid);

/* Look up one instance; RP_ENOENT when the index does not have it. */
int rp_db_instance_get(rp_db *db, const char *sop_instance_uid, rp_instance_meta *out);

/* Empty the patient/study/series/instance tables (before a full reindex). */
int rp_db_clear_index(rp_db *db);

/* Batched, asynchronous indexing. */
typedef struct rp_db_queue rp_db_queue;
/* Start the writer thread on its own handle to `path`. */
int rp_db_queue_start(const char *path, int batch, int flush_ms, rp_db_queue **out);
/* Copy `meta` into the queue (never blocks on SQLite). */
int rp_db_queue_push(rp_db_queue *q, const rp_instance_meta *meta);
/* Wait until everything pushed so far is committed. */
int rp_db_queue_flush(rp_db_queue *q);
/* Flush, stop the thread and free the queue. */
void rp_db_queue_stop(rp_db_queue *q);

/* Counters for `radprep status`. */
typedef struct rp_db_counts {
    long long patients, studies, series, instances, bytes;
    long long jobs_queued, jobs_running, jobs_done, jobs_failed;
    long long outbox_pending, outbox_dead;
    long long associations;     /* events of kind 'association' */
} rp_db_counts;
int rp_db_counts_get(rp_db *db, rp_db_counts *out);

/* Events: an append-only audit trail (associations, stores, rejections, jobs...).
 * `kind` is a short word, `detail` a key=value line. */
int rp_db_event_add(rp_db *db, const char *kind, const char *detail);

#ifdef __cplusplus
}
#endif
#endif
