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
    int series_number; /* -1 when absent */
    char series_description[65];
    char body_part[17];
    char frame_of_reference_uid[RP_UID_MAX + 1];
    /* instance */
    char sop_class_uid[RP_UID_MAX + 1];
    char sop_instance_uid[RP_UID_MAX + 1];
    char transfer_syntax_uid[RP_UID_MAX + 1];
    int instance_number;  /* -1 when absent */
    int number_of_frames; /* 1 when absent */
    /* hints the completion monitor uses to know the expected count (-1 when absent) */
    int images_in_acquisition;
    int number_of_temporal_positions;
    int number_of_slices;   /* (0054,0081) or private-free hints; -1 when absent */
    int acquisition_number; /* -1 when absent */
    double slice_thickness; /* <0 when absent */
    /* what a [fusion] rule matches a series on (the series' first instance), so that the
     * node decides without reading files: ms, <0 when absent */
    char protocol_name[65];
    double repetition_time, echo_time, inversion_time;
    /* storage */
    char file_path[1024]; /* relative to the store root */
    long long file_size;
    char file_sha256[65]; /* hex of the whole file, for idempotent duplicates */
    char calling_ae[17];
    char peer_host[64];
    double received_at; /* wall clock, seconds since the epoch */
} rp_instance_meta;

typedef struct rp_db rp_db;

/* Open (create, migrate) the index at `path`. *out is owned by the caller: rp_db_close(). */
int rp_db_open(const char *path, rp_db **out);
void rp_db_close(rp_db *db);

/* Index instances in one transaction: upsert patient/study/series/instance, update the
 * series' first_seen/last_seen/instance count. A new SOP Instance UID (or a known one whose
 * sha256 changed) on a series that is not 'receiving' reopens it: state 'receiving',
 * version + 1, event 'series_reopened'. The series' expected_count takes the largest hint
 * seen (images_in_acquisition, else number_of_slices x temporal positions). */
int rp_db_index_instances(rp_db *db, const rp_instance_meta *metas, size_t n);
/* (A meta without study/series/SOP UID is skipped with a warning; the others are committed
 * and RP_EUID is returned.) */

/* Remove an instance row (file replaced or deleted). */
int rp_db_instance_delete(rp_db *db, const char *sop_instance_uid);

/* Look up one instance; RP_ENOENT when the index does not have it. */
int rp_db_instance_get(rp_db *db, const char *sop_instance_uid, rp_instance_meta *out);

/* Empty the patient/study/series/instance tables (before a full reindex). The completion
 * state and version of each series and the checksum of each instance are kept aside and
 * restored as the same series/instances are indexed again, so a rebuild neither reopens nor
 * reprocesses anything whose files did not change. Jobs, outputs, outbox, events stay. */
int rp_db_clear_index(rp_db *db);

/* Batched, asynchronous indexing. */
typedef struct rp_db_queue rp_db_queue;
/* Start the writer thread on its own handle to `path`. */
int rp_db_queue_start(const char *path, int batch, int flush_ms, rp_db_queue **out);
/* Copy `meta` into the queue (never blocks on SQLite). */
int rp_db_queue_push(rp_db_queue *q, const rp_instance_meta *meta);
/* Wait until everything pushed so far is committed. */
int rp_db_queue_flush(rp_db_queue *q);
/* Call fn(arg, n) on the writer thread after each committed batch of n instances (e.g. to
 * wake the completion monitor at once instead of at its next poll). fn must be quick and
 * must not call back into the queue. Replaces any earlier hook; fn NULL removes it, and
 * once this returns no call of the old hook is running or will start. */
void rp_db_queue_on_commit(rp_db_queue *q, void (*fn)(void *arg, size_t n), void *arg);
/* Flush, stop the thread and free the queue. */
void rp_db_queue_stop(rp_db_queue *q);

/* The SQLite message of this thread's last database error ("" when none), for one-line
 * error reports (e.g. "file is not a database"). Static, thread-local. */
const char *rp_db_errmsg(void);

/* Counters for `radprep status`. */
typedef struct rp_db_counts {
    long long patients, studies, series, instances, bytes;
    long long jobs_queued, jobs_running, jobs_done, jobs_failed;
    long long outbox_pending, outbox_dead;
    long long associations; /* associations served: events of kind 'association' except
                               those whose detail starts result=rejected / result=dropped */
    long long jobs_dead, outbox_sending, outbox_done;
    long long series_receiving, series_complete, series_processing, series_done, series_failed;
    long long associations_refused; /* 'association' events with result=rejected|dropped */
} rp_db_counts;
int rp_db_counts_get(rp_db *db, rp_db_counts *out);
/* Add the counts, the data directory's free space and its watermark state to the JSON object
 * j (a cJSON object owned by the caller): the fields of `radprep status --json`, shared with
 * the console's /api/status. */
struct cJSON;
void rp_db_status_json(const rp_db_counts *n, const char *data_dir, long long min_free_mb,
                       struct cJSON *j);

/* Retry delay after `attempts` failures: base_s * 2^(attempts-1), capped at max_s; 0 before
 * the first failure. The one backoff of the node (jobs, outbox rows, destinations). Pure. */
double rp_db_backoff_s(int attempts, double base_s, double max_s);

/* Events: an append-only audit trail (associations, stores, rejections, jobs...).
 * `kind` is a short word, `detail` a key=value line. */
int rp_db_event_add(rp_db *db, const char *kind, const char *detail);

/* ===========================================================================================
 * States and kinds. Inside the program they are enums; their text (the words below) exists
 * only in SQL (db/) and on the command line (cli/). Each *_parse() returns 0 or RP_EINVAL.
 * =========================================================================================== */
typedef enum rp_series_state {
    RP_SERIES_RECEIVING = 0, /* "receiving" */
    RP_SERIES_COMPLETE,      /* "complete": a job is queued (or waits for a retry) */
    RP_SERIES_PROCESSING,    /* "processing" */
    RP_SERIES_DONE,          /* "done" */
    RP_SERIES_FAILED         /* "failed": the job is dead */
} rp_series_state;
const char *rp_series_state_name(rp_series_state s);
int rp_series_state_parse(const char *text, rp_series_state *out);

/* Why a series completed (column series.completed_reason). */
typedef enum rp_completed_reason {
    RP_COMPLETED_NONE = 0,       /* "" (still receiving) */
    RP_COMPLETED_QUIET,          /* "quiet" */
    RP_COMPLETED_EXPECTED_COUNT, /* "expected_count" */
    RP_COMPLETED_OPERATOR        /* "operator" */
} rp_completed_reason;
const char *rp_completed_reason_name(rp_completed_reason r);
int rp_completed_reason_parse(const char *text, rp_completed_reason *out);

typedef enum rp_job_kind {
    RP_JOB_KIND_PROCESS = 0, /* "process": one version of one series */
    RP_JOB_KIND_FUSE         /* "fuse": one set of member series versions of a study */
} rp_job_kind;
const char *rp_job_kind_name(rp_job_kind k);
int rp_job_kind_parse(const char *text, rp_job_kind *out);

typedef enum rp_job_state {
    RP_JOB_QUEUED = 0, /* "queued" */
    RP_JOB_RUNNING,    /* "running" */
    RP_JOB_DONE,       /* "done" */
    RP_JOB_FAILED,     /* "failed": waits for a retry at next_attempt_at */
    RP_JOB_DEAD        /* "dead": attempts exhausted or a permanent failure */
} rp_job_state;
const char *rp_job_state_name(rp_job_state s);
int rp_job_state_parse(const char *text, rp_job_state *out);

typedef enum rp_outbox_state {
    RP_OUTBOX_PENDING = 0, /* "pending" */
    RP_OUTBOX_SENDING,     /* "sending" */
    RP_OUTBOX_DONE,        /* "done" */
    RP_OUTBOX_DEAD         /* "dead" */
} rp_outbox_state;
const char *rp_outbox_state_name(rp_outbox_state s);
int rp_outbox_state_parse(const char *text, rp_outbox_state *out);

/* ===========================================================================================
 * Series completion (the completion monitor, `radprep trigger`, `radprep reprocess`).
 *
 * Series state machine (column series.state):
 *   receiving ──complete()──► complete ──job claimed──► processing ──► done | failed
 *       ▲                                                                        │
 *       └───────────── a new instance (or a changed one) arrives: version + 1 ◄───┘
 * `version` starts at 1 and is bumped each time a non-receiving series reopens, so the jobs
 * table (one 'process' job per series and version) processes every version exactly once.
 * Job transitions move the series state only while the series is still at the job's version.
 * =========================================================================================== */
typedef struct rp_db_series_info {
    char series_uid[RP_UID_MAX + 1];
    char study_uid[RP_UID_MAX + 1];
    char patient_id[65];
    char patient_name[325];
    char modality[17];
    int series_number; /* -1 when absent */
    char description[65];
    char body_part[17];
    char frame_of_reference_uid[RP_UID_MAX + 1];
    double slice_thickness; /* <0 when absent */
    rp_series_state state;
    int version;           /* >= 1 */
    int processed_version; /* last version whose job finished 'done'; 0: never */
    long long instance_count;
    int expected_count;           /* -1: unknown (hint from the headers or set by the monitor) */
    double first_seen, last_seen; /* wall clock of the first/last instance received */
    double completed_at;          /* 0 while receiving */
    rp_completed_reason completed_reason;
} rp_db_series_info;

/* One series; RP_ENOENT when unknown. */
int rp_db_series_get(rp_db *db, const char *series_uid, rp_db_series_info *out);

/* Every series in state 'receiving' (what the completion monitor watches), oldest last_seen
 * first. *out is malloc'd (free() it), *n its length (0 with *out NULL when none). */
int rp_db_series_receiving(rp_db *db, rp_db_series_info **out, size_t *n);

/* Set the expected instance count (the monitor's own estimate overrides the header hint). */
int rp_db_series_set_expected(rp_db *db, const char *series_uid, int expected_count);

/* Mark a receiving series complete and enqueue its 'process' job, in ONE transaction.
 *  - version: the version the caller saw (from rp_db_series_receiving); 0 = current version.
 *    If the series moved on (a new instance bumped the version) nothing happens: RP_EBUSY.
 *  - why: QUIET, EXPECTED_COUNT or OPERATOR (NONE is RP_EINVAL); max_attempts >= 1.
 * Returns 0 and *job_id (may be NULL); RP_EEXIST when the series is not 'receiving' (already
 * complete for this version: idempotent, nothing changes); RP_ENOENT for an unknown series.
 * The caller adds the 'series_complete' event (it knows why); rp_db_job_finish() likewise
 * leaves the 'job' event to the supervisor. */
int rp_db_series_complete(rp_db *db, const char *series_uid, int version, rp_completed_reason why,
                          int max_attempts, long long *job_id);

/* Operator re-run of the current version: whatever the state, (re)queue the 'process' job of
 * (series, current version): an existing job is reset to queued with attempts = 0, otherwise
 * one is created; the series becomes 'complete' (reason 'operator' if it was receiving).
 * RP_EBUSY when that job is running right now; RP_ENOENT for an unknown series. */
int rp_db_series_reprocess(rp_db *db, const char *series_uid, int max_attempts,
                           long long *job_id);

/* ===========================================================================================
 * Jobs (the supervisor). States: queued → running → done | failed (waiting for a retry at
 * next_attempt_at) → running ... → dead (attempts exhausted). Times are wall-clock seconds.
 * A job is keyed by what it is: a 'process' job by (series, version), a 'fuse' job by
 * (study, fusion rule, version of the member set); each key has at most one job.
 * =========================================================================================== */
#define RP_DB_RULE_MAX 26 /* longest fusion rule name a job can carry */

typedef struct rp_db_job {
    long long id;
    rp_job_kind kind;
    char series_uid[RP_UID_MAX + 1]; /* PROCESS: the series; "" for FUSE */
    char study_uid[RP_UID_MAX + 1];  /* FUSE: the study; "" for PROCESS */
    char rule[RP_DB_RULE_MAX + 1];   /* FUSE: the [fusion NAME]; "" for PROCESS */
    int version;                     /* PROCESS: the series version; FUSE: the set's version */
    rp_job_state state;
    int attempts; /* attempts started so far */
    int max_attempts;
    double created_at, started_at, finished_at, next_attempt_at; /* 0 when not set */
    int pid;          /* worker pid when it runs on this machine; 0 otherwise */
    char exec_id[64]; /* the executor's id of the running attempt ("" when none) */
    int exit_status;  /* -1 when unknown */
    char reason[256];
    char output_dir[1024];
} rp_db_job;

/* The UID a job is about: its series (PROCESS) or its study (FUSE). Borrowed from j. */
const char *rp_db_job_subject(const rp_db_job *j);

/* Create a queued 'process' job (due now). RP_EEXIST (and *job_id) when (series, version)
 * already has one. */
int rp_db_job_enqueue(rp_db *db, const char *series_uid, int series_version, int max_attempts,
                      long long *job_id);
/* Claim the oldest due job (queued, or failed with next_attempt_at <= now): it becomes
 * running with attempts + 1, started_at = now and `pid` (0 if not forked yet). Atomic across
 * processes. A 'process' job whose series has reopened since is superseded (dead) instead.
 * RP_ENOENT when nothing is due. */
int rp_db_job_claim(rp_db *db, double now, int pid, rp_db_job *out);
/* Record the worker pid and/or output directory of a running job (NULL/0 leave them). */
int rp_db_job_set_running(rp_db *db, long long job_id, int pid, const char *output_dir);
/* Record which executor attempt runs the job: its id (a pid, a batch system's job id) and the
 * pid when the worker runs on this machine (0: not local). RP_ENOENT when not running. */
int rp_db_job_set_exec(rp_db *db, long long job_id, const char *exec_id, int pid);
/* Finish a running job. ok: done. Otherwise failed with next_attempt_at = now +
 * min(max_delay_s, base_delay_s * 2^(attempts-1)) (base_delay_s <= 0: 30 s; max_delay_s
 * <= 0: 3600 s), or dead when attempts reached max_attempts or `permanent` is set (bad input
 * that no retry can fix). The final state is written into *out when out is not NULL.
 * RP_ENOENT: no such job; RP_EINVAL: the job is not running. */
int rp_db_job_finish(rp_db *db, long long job_id, int ok, int exit_status, const char *reason,
                     int permanent, double base_delay_s, double max_delay_s, rp_db_job *out);
/* Jobs left 'running' (by a node that died or stopped) go back to 'queued'; the interrupted
 * attempt does not count. job_id > 0: only that job; <= 0: every running job. *n (may be
 * NULL) gets how many. */
int rp_db_jobs_requeue_running(rp_db *db, long long job_id, long long *n);
int rp_db_job_get(rp_db *db, long long job_id, rp_db_job *out);
/* Jobs, newest first. state: an rp_job_state, or -1 for any; uid (NULL: any) matches the
 * job's series or study; limit <= 0: all. *out malloc'd (free()). */
int rp_db_jobs_list(rp_db *db, int state, const char *uid, int limit, rp_db_job **out,
                    size_t *n);
/* Earliest next_attempt_at among queued/failed jobs (to sleep until then); RP_ENOENT if none. */
int rp_db_jobs_next_due(rp_db *db, double *when);

/* Outputs a job wrote (NIfTI, JSON, PNG...). kind is a short word ("nifti", "json"...). */
typedef struct rp_db_output {
    long long id, job_id;
    char kind[32];
    char path[1024];
    char sha256[65];
    double created_at;
} rp_db_output;
int rp_db_output_add(rp_db *db, long long job_id, const char *kind, const char *path,
                     const char *sha256);
/* *out malloc'd (free()). */
int rp_db_outputs_list(rp_db *db, long long job_id, rp_db_output **out, size_t *n);

/* ===========================================================================================
 * Outbox (the sender). States: pending → sending → done | pending again with backoff | dead.
 * An entry is never deleted by the node; `radprep send` re-queues dead ones.
 * =========================================================================================== */
typedef struct rp_db_outbox_entry {
    long long id;
    char sop_uid[RP_UID_MAX + 1];
    char file_path[1024];
    char destination[64]; /* peer NAME from the configuration */
    rp_outbox_state state;
    int attempts;
    double next_attempt_at;
    int last_status; /* DIMSE status of the last attempt, -1 none/network error */
    char last_reason[256];
    double created_at, updated_at;
} rp_db_outbox_entry;

/* Add (file_path, destination). Idempotent: an existing entry is left as it is and its id
 * returned (with RP_EEXIST) so re-running a job never sends twice. */
int rp_db_outbox_add(rp_db *db, const char *sop_uid, const char *file_path, const char *destination,
                     long long *id);
/* Claim up to `max` due pending entries of `destination` (all destinations when NULL):
 * they become 'sending', attempts + 1. *out malloc'd (free()); RP_ENOENT when none. */
int rp_db_outbox_claim(rp_db *db, const char *destination, double now, int max,
                       rp_db_outbox_entry **out, size_t *n);
/* Finish one entry. ok: done. Else dead if `permanent` (e.g. peer refused the SOP class) or
 * attempts >= max_attempts (> 0), otherwise pending with next_attempt_at = now +
 * min(3600, base_delay_s * 2^(attempts-1)) (base_delay_s <= 0: 10 s). */
int rp_db_outbox_finish(rp_db *db, long long id, int ok, int dimse_status, const char *reason,
                        int permanent, double base_delay_s, int max_attempts);
/* Put an entry (sending or pending) back to pending, due at next_attempt_at, keeping its
 * attempts (they count tries); last status/reason recorded (dimse_status < 0: none). The
 * sender backs off per destination, so every row of a destination that is down becomes due
 * when the destination's next try is. RP_ENOENT when the entry is not sending/pending. */
int rp_db_outbox_retry_at(rp_db *db, long long id, int dimse_status, const char *reason,
                          double next_attempt_at);
/* Make entries pending and due now with attempts = 0. state: RP_OUTBOX_DEAD,
 * RP_OUTBOX_SENDING (at start), RP_OUTBOX_PENDING (retry now), or -1 (dead and pending);
 * RP_OUTBOX_DONE is RP_EINVAL. destination / id filter when set (id <= 0: any). *n (may be
 * NULL) gets how many. */
int rp_db_outbox_requeue(rp_db *db, int state, const char *destination, long long id,
                         long long *n);
/* Newest first; state an rp_outbox_state or -1 for any; destination NULL: any; limit <= 0:
 * all. *out malloc'd (free()). */
int rp_db_outbox_list(rp_db *db, int state, const char *destination, int limit,
                      rp_db_outbox_entry **out, size_t *n);
/* Earliest next_attempt_at among pending entries (destination NULL: any). RP_ENOENT if none. */
int rp_db_outbox_next_due(rp_db *db, const char *destination, double *when);

/* ===========================================================================================
 * Queries for the CLI, the scheduler and the workers.
 * =========================================================================================== */

/* Instances of a series ordered by instance number then SOP UID (`radprep show`, and the
 * file list a job processes). *out malloc'd (free()); 0 with *n = 0 if the series is empty. */
int rp_db_series_instances(rp_db *db, const char *series_uid, rp_instance_meta **out, size_t *n);
/* The first of those instances only (what a [fusion] rule matches the series on).
 * RP_ENOENT when the series has none. */
int rp_db_series_first_instance(rp_db *db, const char *series_uid, rp_instance_meta *out);

/* `radprep ls`: rows of one level as text columns. level: "patients" | "studies" | "series" |
 * "instances". Filters (NULL = any): patient_id, study_uid, series_uid, modality (series and
 * below; studies: any series of that modality). limit <= 0: all. The callback gets the column
 * names, the row's values as text (NULL for SQL NULL) and their kinds; it returns 0 to go on,
 * non-zero to stop. */
typedef struct rp_db_filter {
    const char *patient_id, *study_uid, *series_uid, *modality;
    int limit;
    const char *state; /* series state as the CLI wrote it (rp_series_state_name()) */
} rp_db_filter;
enum { RP_DB_COL_NULL = 0, RP_DB_COL_INT, RP_DB_COL_REAL, RP_DB_COL_TEXT };
/* kinds[i] is one of RP_DB_COL_* (so JSON output can keep numbers numbers). */
typedef int (*rp_db_row_fn)(void *user, int ncol, const char *const *names,
                            const char *const *values, const int *kinds);
int rp_db_ls(rp_db *db, const char *level, const rp_db_filter *f, rp_db_row_fn fn, void *user);

/* Events newest first (kind filter when not NULL), through the same row callback:
 * columns id, at, kind, detail. */
int rp_db_events_list(rp_db *db, const char *kind, int limit, rp_db_row_fn fn, void *user);
/* Delete events older than `before` (wall-clock seconds); *n (may be NULL) gets how many.
 * The trail grows by a few rows per association: prune it from cron (radprep events
 * --prune-days N). */
int rp_db_events_prune(rp_db *db, double before, long long *n);

/* `radprep curate` (db/curate.c): the latest successful version of a series. */
typedef struct rp_db_curated_version {
    long long job_id;
    char series_uid[RP_UID_MAX + 1];
    char study_uid[RP_UID_MAX + 1];
    char modality[17];
    int version;
    double finished_at;
    char output_dir[1024];
} rp_db_curated_version;
/* For every series, the done 'process' job of its highest version (with an output folder);
 * modality (NULL/"": any, case-insensitive) and since (<= 0: any; job finished_at >= since)
 * filter. Ordered by series UID. *out malloc'd (free()); 0 with *n = 0 when none. Outputs of
 * each job: rp_db_outputs_list(). */
int rp_db_curate_versions(rp_db *db, const char *modality, double since,
                          rp_db_curated_version **out, size_t *n);

/* Study-level queries and fusion sets (db/study.c). */
/* Every series of a study (any state), by series number. *out malloc'd (free()). */
int rp_db_study_series(rp_db *db, const char *study_uid, rp_db_series_info **out, size_t *n);
/* A fused output's member set: `members` is canonical text ("T1=UID@VER;T2=UID@VER"). A new
 * (study, rule, members) gets the next version k of (study, rule) and, in the same
 * transaction, a queued 'fuse' job (study, rule, k); rule at most RP_DB_RULE_MAX characters.
 * An existing set returns RP_EEXIST with its version and job id (idempotent: a pass repeated
 * after a crash never fuses the same versions twice). */
int rp_db_fusion_enqueue(rp_db *db, const char *study_uid, const char *rule, const char *members,
                         int max_attempts, int *version, long long *job_id);
/* Members text of version k of (study, rule); RP_ENOENT when none. */
int rp_db_fusion_get(rp_db *db, const char *study_uid, const char *rule, int version,
                     char *members, size_t members_sz);
/* Remember that `what` (e.g. "missing:T2;present=UID@1") was reported for (study, rule):
 * 0 the first time, RP_EEXIST afterwards (so a report is made once per situation). */
int rp_db_fusion_report_once(rp_db *db, const char *study_uid, const char *rule,
                             const char *what);

/* ===========================================================================================
 * Pulls (qr/, `radprep pulls`; db/pulls.c): what the node asked a PACS for, and the outcome.
 * =========================================================================================== */
typedef struct rp_db_pull {
    long long id;
    char name[64];               /* [pull NAME], "" for an ad hoc pull */
    char peer[64];
    char request[512];           /* the query or selectors, key=value words */
    char state[16]; /* running | done | partial | failed | stopped */
    double started_at, finished_at;
    int series_found, series_present, series_requested, series_ok, series_failed, series_left;
    long long instances_announced, instances_retrieved;
    int last_status; /* DIMSE status of the first failure, -1 none */
    char reason[512];
} rp_db_pull;

typedef struct rp_db_pull_item {
    long long id, pull_id;
    char study_uid[RP_UID_MAX + 1], series_uid[RP_UID_MAX + 1];
    char modality[17], description[65], rule[64];
    long long announced; /* NumberOfSeriesRelatedInstances from C-FIND, -1 unknown */
    long long had;       /* instances the index held before */
    char state[16]; /* moving | moved | complete | changed | partial | failed */
    int attempts;
    int completed, failed, warning; /* sub-operations the PACS reported (-1 unknown) */
    int status;                     /* final DIMSE status, -1 none */
    char reason[256];
    double requested_at, finished_at, completed_at;
    char completed_reason[32]; /* announced_count | expected_count | quiet | operator | "" */
    /* listing only: the series in the index now */
    long long received;
    char series_state[16];
} rp_db_pull_item;

/* A run starts: *id of its row (state running). */
int rp_db_pull_begin(rp_db *db, const char *name, const char *peer, const char *request,
                     long long *id);
/* Record a run's outcome (p->id, state, counts, status, reason; finished_at 0: now). */
int rp_db_pull_finish(rp_db *db, const rp_db_pull *p);
/* A series is requested (state moving): study/series UIDs, modality, description, rule,
 * announced, had from `it`. */
int rp_db_pull_item_add(rp_db *db, long long pull_id, const rp_db_pull_item *it, long long *id);
/* The retrieve of an item ended: state moved | changed | partial | failed (a series that
 * completed during its move stays complete on 'moved'), sub-operation counts, status
 * (-1 none) and reason. */
int rp_db_pull_item_finish(rp_db *db, long long item_id, const char *state, int attempts,
                           int completed, int failed, int warning, int status,
                           const char *reason);
/* For the completion monitor: the instance count C-FIND announced for a series whose newest
 * retrieve finished with exactly that count (state moved). RP_ENOENT otherwise. */
int rp_db_pull_announced(rp_db *db, const char *series_uid, long long *announced);
/* For the worker: the rule the newest pull of this series named; RP_ENOENT when none. */
int rp_db_pull_rule(rp_db *db, const char *series_uid, char *rule, size_t rulesz);
/* Runs newest first (name filter when not NULL; limit <= 0: all). *out malloc'd (free()). */
int rp_db_pulls_list(rp_db *db, const char *name, int limit, rp_db_pull **out, size_t *n);
/* Items of one run, in request order, with the series' count and state now. */
int rp_db_pull_items_list(rp_db *db, long long pull_id, rp_db_pull_item **out, size_t *n);

/* ===========================================================================================
 * The web console (db/console.c): read-only handles and the queries its pages and JSON API
 * run. Rows come through rp_db_row_fn with named columns; times are wall-clock seconds.
 * =========================================================================================== */
/* Open an existing index read-only (never creates or migrates; PRAGMA query_only). Close
 * with rp_db_close(). RP_EDB when it cannot be opened. */
int rp_db_open_readonly(const char *path, rp_db **out);

typedef struct rp_db_series_query {
    const char *text;     /* substring of patient ID/name, study/series description, or an
                             exact series/study UID, accession number or study date; NULL any */
    const char *state;    /* series state; NULL any */
    const char *modality; /* NULL any */
    int offset, limit;    /* limit <= 0: all */
} rp_db_series_query;
/* Series with their patient and study, most recently received first; *total (may be NULL)
 * gets the number of matching series regardless of offset/limit. Columns: series_uid,
 * study_uid, patient_id, patient_name, study_date, study_description, modality, number,
 * description, body_part, instances, expected, state, version, processed_version,
 * first_seen, last_seen, completed_at, completed_reason. */
int rp_db_console_series(rp_db *db, const rp_db_series_query *q, long long *total, rp_db_row_fn fn,
                         void *user);
/* Jobs newest first with the series' modality and description (filters when not NULL). */
int rp_db_console_jobs(rp_db *db, const char *state, const char *series_uid, int offset,
                       int limit, long long *total, rp_db_row_fn fn, void *user);
/* Outbox rows newest first (filters when not NULL). */
int rp_db_console_outbox(rp_db *db, const char *state, const char *destination, int offset,
                         int limit, long long *total, rp_db_row_fn fn, void *user);
/* Delivery of the files below `dir` (a job's output folder): one row per (destination,
 * state) with instances, attempts, updated_at and the latest last_reason. */
int rp_db_console_delivery(rp_db *db, const char *dir, rp_db_row_fn fn, void *user);
/* One output row by id; RP_ENOENT when none. */
int rp_db_console_output_get(rp_db *db, long long id, rp_db_output *out);
/* Events (kind filter when not NULL) whose detail holds the word `needle` (e.g.
 * "series=1.2.3" or "calling_ae=CT1"), newest first. Columns id, at, kind, detail. */
int rp_db_console_events_about(rp_db *db, const char *kind, const char *needle, int limit,
                               rp_db_row_fn fn, void *user);
/* Events that report a problem (refused or broken associations, failed or dead jobs,
 * fusion problems, non-PS3.5 UIDs stored under uid_policy=lenient), newest first;
 * limit <= 0: 20. */
int rp_db_console_warnings(rp_db *db, int limit, rp_db_row_fn fn, void *user);
/* Per calling AE title: instances, bytes, series, last_received, last_host. */
int rp_db_console_senders(rp_db *db, rp_db_row_fn fn, void *user);
/* Job counts by (state, kind, modality, body_part, description, slice_thickness): what the
 * rule of each job can be matched from. Column n is the count. */
int rp_db_console_job_groups(rp_db *db, rp_db_row_fn fn, void *user);
/* Outbox counts by (destination, state); column n. */
int rp_db_console_outbox_groups(rp_db *db, rp_db_row_fn fn, void *user);

#ifdef __cplusplus
}
#endif
#endif
