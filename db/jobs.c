/*
 * db/jobs — series completion state, the job queue and job outputs.
 *
 * Every transition that touches both a series and its job runs in one BEGIN IMMEDIATE
 * transaction, so the completion monitor, the supervisor, `radprep trigger` and a second
 * node process can race without ever producing two jobs for one version or a series whose
 * state disagrees with its job.
 */
#include "db/db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SERIES_COLUMNS                                                                             \
    "se.series_uid, st.study_uid, p.patient_id, p.name, se.modality, se.number,"                   \
    " se.description, se.body_part, se.frame_of_reference_uid, se.slice_thickness, se.state,"      \
    " se.version, se.processed_version, se.instance_count, se.expected_count, se.first_seen,"      \
    " se.last_seen, se.completed_at, se.completed_reason"                                          \
    " FROM series se JOIN studies st ON st.id = se.study_fk"                                       \
    " JOIN patients p ON p.id = st.patient_fk"

#define JOB_COLUMNS                                                                                \
    "id, kind, series_uid, study_uid, rule, version, state, attempts, max_attempts, created_at,"   \
    " started_at, finished_at, next_attempt_at, pid, exec_id, exit_status, reason, output_dir"

static int series_follow_job(rp_db *db, const char *uid, int version, rp_series_state state,
                             int processed);

static void read_series(sqlite3_stmt *s, void *element)
{
    rp_db_series_info *o = element;
    memset(o, 0, sizeof *o);
    rp_db_col_text(s, 0, o->series_uid, sizeof o->series_uid);
    rp_db_col_text(s, 1, o->study_uid, sizeof o->study_uid);
    rp_db_col_text(s, 2, o->patient_id, sizeof o->patient_id);
    rp_db_col_text(s, 3, o->patient_name, sizeof o->patient_name);
    rp_db_col_text(s, 4, o->modality, sizeof o->modality);
    o->series_number = (int)rp_db_col_int(s, 5, -1);
    rp_db_col_text(s, 6, o->description, sizeof o->description);
    rp_db_col_text(s, 7, o->body_part, sizeof o->body_part);
    rp_db_col_text(s, 8, o->frame_of_reference_uid, sizeof o->frame_of_reference_uid);
    o->slice_thickness = rp_db_col_real(s, 9, -1);
    o->state = rp_db_col_enum(s, 10, RP_DB_WORDS_SERIES_STATE, RP_SERIES_RECEIVING);
    o->version = (int)rp_db_col_int(s, 11, 1);
    o->processed_version = (int)rp_db_col_int(s, 12, 0);
    o->instance_count = rp_db_col_int(s, 13, 0);
    o->expected_count = (int)rp_db_col_int(s, 14, -1);
    o->first_seen = rp_db_col_real(s, 15, 0);
    o->last_seen = rp_db_col_real(s, 16, 0);
    o->completed_at = rp_db_col_real(s, 17, 0);
    o->completed_reason = rp_db_col_enum(s, 18, RP_DB_WORDS_COMPLETED_REASON, RP_COMPLETED_NONE);
}

static void read_job(sqlite3_stmt *s, void *element)
{
    rp_db_job *j = element;
    memset(j, 0, sizeof *j);
    j->id = sqlite3_column_int64(s, 0);
    j->kind = rp_db_col_enum(s, 1, RP_DB_WORDS_JOB_KIND, RP_JOB_KIND_PROCESS);
    rp_db_col_text(s, 2, j->series_uid, sizeof j->series_uid);
    rp_db_col_text(s, 3, j->study_uid, sizeof j->study_uid);
    rp_db_col_text(s, 4, j->rule, sizeof j->rule);
    j->version = (int)rp_db_col_int(s, 5, 0);
    j->state = rp_db_col_enum(s, 6, RP_DB_WORDS_JOB_STATE, RP_JOB_DEAD);
    j->attempts = (int)rp_db_col_int(s, 7, 0);
    j->max_attempts = (int)rp_db_col_int(s, 8, 0);
    j->created_at = rp_db_col_real(s, 9, 0);
    j->started_at = rp_db_col_real(s, 10, 0);
    j->finished_at = rp_db_col_real(s, 11, 0);
    j->next_attempt_at = rp_db_col_real(s, 12, 0);
    j->pid = (int)rp_db_col_int(s, 13, 0);
    rp_db_col_text(s, 14, j->exec_id, sizeof j->exec_id);
    j->exit_status = (int)rp_db_col_int(s, 15, -1);
    rp_db_col_text(s, 16, j->reason, sizeof j->reason);
    rp_db_col_text(s, 17, j->output_dir, sizeof j->output_dir);
}

int rp_db_series_get(rp_db *db, const char *series_uid, rp_db_series_info *out)
{
    sqlite3_stmt *s = rp_db_prepare(db, "SELECT " SERIES_COLUMNS " WHERE se.series_uid = ?1");
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, series_uid);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        read_series(s, out);
    sqlite3_finalize(s);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? RP_ENOENT : rp_db_fail(db, "series get");
}

int rp_db_series_receiving(rp_db *db, rp_db_series_info **out, size_t *n)
{
    sqlite3_stmt *s = rp_db_prepare(db, "SELECT " SERIES_COLUMNS
                                        " WHERE se.state = 'receiving' ORDER BY se.last_seen");
    return rp_db_collect(db, s, (void **)out, n, sizeof **out, read_series, "series receiving");
}

int rp_db_series_set_expected(rp_db *db, const char *series_uid, int expected_count)
{
    sqlite3_stmt *s =
        rp_db_prepare(db, "UPDATE series SET expected_count = ?2 WHERE series_uid = ?1");
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, series_uid);
    sqlite3_bind_int(s, 2, expected_count);
    int rc = rp_db_step_done(db, s, "series set expected");
    if (rc)
        return rc;
    return sqlite3_changes(db->h) ? 0 : RP_ENOENT;
}

/* state/version of a series inside a transaction. */
static int series_state(rp_db *db, const char *uid, rp_series_state *state, int *version)
{
    sqlite3_stmt *s = rp_db_prepare(db, "SELECT state, version FROM series WHERE series_uid = ?1");
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, uid);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *state = rp_db_col_enum(s, 0, RP_DB_WORDS_SERIES_STATE, RP_SERIES_RECEIVING);
        *version = sqlite3_column_int(s, 1);
    }
    sqlite3_finalize(s);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? RP_ENOENT : rp_db_fail(db, "series state");
}

/* Id (and state, when state is not NULL) of the job with this key; RP_ENOENT if none.
 * PROCESS: uid = series, rule NULL; FUSE: uid = study, rule = the fusion rule. */
static int find_job(rp_db *db, rp_job_kind kind, const char *uid, const char *rule, int version,
                    long long *id, rp_job_state *state)
{
    sqlite3_stmt *s =
        kind == RP_JOB_KIND_FUSE
            ? rp_db_prepare(db, "SELECT id, state FROM jobs WHERE kind = 'fuse'"
                                " AND study_uid = ?1 AND rule = ?3 AND version = ?2")
            : rp_db_prepare(db, "SELECT id, state FROM jobs WHERE kind = 'process'"
                                " AND series_uid = ?1 AND version = ?2");
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, uid);
    sqlite3_bind_int(s, 2, version);
    if (kind == RP_JOB_KIND_FUSE)
        rp_db_bind_text(s, 3, rule);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(s, 0);
        if (state)
            *state = rp_db_col_enum(s, 1, RP_DB_WORDS_JOB_STATE, RP_JOB_DEAD);
    }
    sqlite3_finalize(s);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? RP_ENOENT : rp_db_fail(db, "job find");
}

int rp_db_job_insert_queued(rp_db *db, rp_job_kind kind, const char *uid, const char *rule,
                            int version, int max_attempts, long long *id)
{
    int fuse = kind == RP_JOB_KIND_FUSE;
    sqlite3_stmt *s = rp_db_prepare(
        db, "INSERT INTO jobs(kind, series_uid, study_uid, rule, version, state, attempts,"
            " max_attempts, created_at, next_attempt_at)"
            " VALUES(?1, ?2, ?3, ?4, ?5, 'queued', 0, ?6, ?7, ?7) ON CONFLICT DO NOTHING");
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, rp_job_kind_name(kind));
    rp_db_bind_text(s, 2, fuse ? NULL : uid);
    rp_db_bind_text(s, 3, fuse ? uid : NULL);
    rp_db_bind_text(s, 4, fuse ? rule : NULL);
    sqlite3_bind_int(s, 5, version);
    sqlite3_bind_int(s, 6, max_attempts > 0 ? max_attempts : 1);
    sqlite3_bind_double(s, 7, rp_now_s());
    int rc = rp_db_step_done(db, s, "job insert");
    if (rc)
        return rc;
    if (sqlite3_changes(db->h) == 1) {
        *id = sqlite3_last_insert_rowid(db->h);
        return 0;
    }
    rc = find_job(db, kind, uid, rule, version, id, NULL);
    return rc ? rc : RP_EEXIST;
}

static void job_event(rp_db *db, const char *what, long long id, const char *uid, int version,
                      const char *extra)
{
    char detail[512];
    snprintf(detail, sizeof detail, "job_id=%lld series_uid=%s version=%d%s%s", id, uid, version,
             extra && *extra ? " " : "", extra ? extra : "");
    rp_db_event_add(db, what, detail);
}

int rp_db_job_enqueue(rp_db *db, const char *series_uid, int series_version, int max_attempts,
                      long long *job_id)
{
    long long id = 0;
    if (!series_uid || !*series_uid || series_version < 1)
        return RP_EINVAL;
    int rc = rp_db_begin_write(db);
    if (rc)
        return rc;
    rc = rp_db_job_insert_queued(db, RP_JOB_KIND_PROCESS, series_uid, NULL, series_version,
                                 max_attempts, &id);
    if (rc && rc != RP_EEXIST) {
        rp_db_rollback(db);
        return rc;
    }
    int c = rp_db_commit(db);
    if (job_id)
        *job_id = id;
    return c ? c : rc;
}

int rp_db_series_complete(rp_db *db, const char *series_uid, int version, rp_completed_reason why,
                          int max_attempts, long long *job_id)
{
    if (why != RP_COMPLETED_QUIET && why != RP_COMPLETED_EXPECTED_COUNT &&
        why != RP_COMPLETED_OPERATOR)
        return RP_EINVAL;
    int rc = rp_db_begin_write(db);
    if (rc)
        return rc;
    rp_series_state state;
    int cur;
    long long id = 0;
    if ((rc = series_state(db, series_uid, &state, &cur)))
        goto fail;
    if (version > 0 && version != cur) {
        rc = RP_EBUSY;
        goto fail;
    }
    if (state != RP_SERIES_RECEIVING) {
        if (job_id && find_job(db, RP_JOB_KIND_PROCESS, series_uid, NULL, cur, &id, NULL) == 0)
            *job_id = id;
        rc = RP_EEXIST;
        goto fail;
    }
    sqlite3_stmt *s = rp_db_prepare(db, "UPDATE series SET state = 'complete', completed_at = ?2,"
                                        " completed_reason = ?3 WHERE series_uid = ?1");
    if (s) {
        rp_db_bind_text(s, 1, series_uid);
        sqlite3_bind_double(s, 2, rp_now_s());
        rp_db_bind_text(s, 3, rp_completed_reason_name(why));
    }
    if ((rc = rp_db_step_done(db, s, "series complete")))
        goto fail;
    rc = rp_db_job_insert_queued(db, RP_JOB_KIND_PROCESS, series_uid, NULL, cur, max_attempts,
                                 &id);
    if (rc == RP_EEXIST) {
        /* This version already has a job (the index was rebuilt without its saved state):
         * do not run it twice, let the series show what that job became. */
        rp_job_state js = RP_JOB_QUEUED;
        long long jid;
        find_job(db, RP_JOB_KIND_PROCESS, series_uid, NULL, cur, &jid, &js);
        int follow = js == RP_JOB_DONE || js == RP_JOB_DEAD || js == RP_JOB_RUNNING;
        rp_series_state to = js == RP_JOB_DONE   ? RP_SERIES_DONE
                             : js == RP_JOB_DEAD ? RP_SERIES_FAILED
                                                 : RP_SERIES_PROCESSING;
        if (follow && (rc = series_follow_job(db, series_uid, cur, to, js == RP_JOB_DONE)))
            goto fail;
    } else if (rc) {
        goto fail;
    }
    /* The caller records the 'series_complete' event: it knows why (quiet period, count). */
    if ((rc = rp_db_commit(db)))
        return rc;
    if (job_id)
        *job_id = id;
    return 0;
fail:
    rp_db_rollback(db);
    return rc;
}

int rp_db_series_reprocess(rp_db *db, const char *series_uid, int max_attempts, long long *job_id)
{
    int rc = rp_db_begin_write(db);
    if (rc)
        return rc;
    rp_series_state state;
    rp_job_state js;
    int cur;
    long long id = 0;
    sqlite3_stmt *s;
    if ((rc = series_state(db, series_uid, &state, &cur)))
        goto fail;
    rc = find_job(db, RP_JOB_KIND_PROCESS, series_uid, NULL, cur, &id, &js);
    if (rc == 0) {
        if (js == RP_JOB_RUNNING) {
            rc = RP_EBUSY;
            goto fail;
        }
        s = rp_db_prepare(db, "UPDATE jobs SET state = 'queued', attempts = 0, max_attempts = ?2,"
                              " next_attempt_at = ?3, started_at = NULL, finished_at = NULL,"
                              " pid = NULL, exec_id = NULL, exit_status = NULL,"
                              " reason = 'reprocess requested' WHERE id = ?1");
        if (s) {
            sqlite3_bind_int64(s, 1, id);
            sqlite3_bind_int(s, 2, max_attempts > 0 ? max_attempts : 1);
            sqlite3_bind_double(s, 3, rp_now_s());
        }
        if ((rc = rp_db_step_done(db, s, "job requeue")))
            goto fail;
    } else if (rc == RP_ENOENT) {
        if ((rc = rp_db_job_insert_queued(db, RP_JOB_KIND_PROCESS, series_uid, NULL, cur,
                                          max_attempts, &id)))
            goto fail;
    } else {
        goto fail;
    }
    s = rp_db_prepare(db, "UPDATE series SET state = 'complete',"
                          " completed_at = coalesce(completed_at, ?2),"
                          " completed_reason = coalesce(completed_reason, 'operator')"
                          " WHERE series_uid = ?1");
    if (s) {
        rp_db_bind_text(s, 1, series_uid);
        sqlite3_bind_double(s, 2, rp_now_s());
    }
    if ((rc = rp_db_step_done(db, s, "series reprocess")))
        goto fail;
    job_event(db, "reprocess", id, series_uid, cur, NULL);
    if ((rc = rp_db_commit(db)))
        return rc;
    if (job_id)
        *job_id = id;
    return 0;
fail:
    rp_db_rollback(db);
    return rc;
}

int rp_db_job_get(rp_db *db, long long job_id, rp_db_job *out)
{
    sqlite3_stmt *s = rp_db_prepare(db, "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?1");
    if (!s)
        return RP_EDB;
    sqlite3_bind_int64(s, 1, job_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        read_job(s, out);
    sqlite3_finalize(s);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? RP_ENOENT : rp_db_fail(db, "job get");
}

/* Move the series at exactly `version` to `state` (not while it receives again). */
static int series_follow_job(rp_db *db, const char *uid, int version, rp_series_state state,
                             int processed)
{
    sqlite3_stmt *s =
        rp_db_prepare(db, "UPDATE series SET state = ?3,"
                          " processed_version = CASE WHEN ?4 THEN max(processed_version, ?2)"
                          " ELSE processed_version END"
                          " WHERE series_uid = ?1 AND version = ?2 AND state <> 'receiving'");
    if (s) {
        rp_db_bind_text(s, 1, uid);
        sqlite3_bind_int(s, 2, version);
        rp_db_bind_text(s, 3, rp_series_state_name(state));
        sqlite3_bind_int(s, 4, processed);
    }
    return rp_db_step_done(db, s, "series state");
}

/* A job's move that the series follows: only a 'process' job has a series. */
static int job_moves_series(rp_db *db, const rp_db_job *j, rp_series_state state, int processed)
{
    if (j->kind != RP_JOB_KIND_PROCESS)
        return 0;
    return series_follow_job(db, j->series_uid, j->version, state, processed);
}

int rp_db_job_claim(rp_db *db, double now, int pid, rp_db_job *out)
{
    int rc = rp_db_begin_write(db);
    if (rc)
        return rc;
    for (;;) {
        sqlite3_stmt *s = rp_db_prepare(
            db, "SELECT j.id, j.kind, j.series_uid, j.version, se.version FROM jobs j"
                " LEFT JOIN series se ON j.kind = 'process' AND se.series_uid = j.series_uid"
                " WHERE j.state IN ('queued','failed') AND j.next_attempt_at <= ?1"
                " ORDER BY j.next_attempt_at, j.id LIMIT 1");
        if (!s) {
            rc = RP_EDB;
            goto fail;
        }
        sqlite3_bind_double(s, 1, now);
        rc = sqlite3_step(s);
        if (rc == SQLITE_DONE) {
            sqlite3_finalize(s);
            rp_db_rollback(db);
            return RP_ENOENT;
        }
        if (rc != SQLITE_ROW) {
            sqlite3_finalize(s);
            rc = rp_db_fail(db, "job claim");
            goto fail;
        }
        long long id = sqlite3_column_int64(s, 0);
        char uid[RP_UID_MAX + 1];
        rp_db_col_text(s, 2, uid, sizeof uid);
        int jver = sqlite3_column_int(s, 3);
        int sver = (int)rp_db_col_int(s, 4, 0);
        sqlite3_finalize(s);
        if (sver > jver) {
            /* The series reopened after this job was queued: its newer version will get its
             * own job, processing the old one would only waste time. */
            s = rp_db_prepare(db, "UPDATE jobs SET state = 'dead', finished_at = ?2,"
                                  " reason = ?3 WHERE id = ?1");
            char why[96];
            snprintf(why, sizeof why, "superseded: series reopened (now version %d)", sver);
            if (s) {
                sqlite3_bind_int64(s, 1, id);
                sqlite3_bind_double(s, 2, now);
                rp_db_bind_text(s, 3, why);
            }
            if ((rc = rp_db_step_done(db, s, "job supersede")))
                goto fail;
            job_event(db, "job_superseded", id, uid, jver, NULL);
            continue;
        }
        s = rp_db_prepare(db, "UPDATE jobs SET state = 'running', attempts = attempts + 1,"
                              " started_at = ?2, finished_at = NULL, pid = ?3, exec_id = NULL,"
                              " exit_status = NULL WHERE id = ?1 RETURNING " JOB_COLUMNS);
        if (!s) {
            rc = RP_EDB;
            goto fail;
        }
        sqlite3_bind_int64(s, 1, id);
        sqlite3_bind_double(s, 2, now);
        if (pid > 0)
            sqlite3_bind_int(s, 3, pid);
        else
            sqlite3_bind_null(s, 3);
        rp_db_job j;
        memset(&j, 0, sizeof j);
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW)
            read_job(s, &j);
        while (rc == SQLITE_ROW)
            rc = sqlite3_step(s);
        sqlite3_finalize(s);
        if (rc != SQLITE_DONE) {
            rc = rp_db_fail(db, "job claim");
            goto fail;
        }
        if ((rc = job_moves_series(db, &j, RP_SERIES_PROCESSING, 0)))
            goto fail;
        if ((rc = rp_db_commit(db)))
            return rc;
        if (out)
            *out = j;
        return 0;
    }
fail:
    rp_db_rollback(db);
    return rc;
}

int rp_db_job_set_running(rp_db *db, long long job_id, int pid, const char *output_dir)
{
    sqlite3_stmt *s = rp_db_prepare(db, "UPDATE jobs SET pid = coalesce(?2, pid),"
                                        " output_dir = coalesce(?3, output_dir)"
                                        " WHERE id = ?1 AND state = 'running'");
    if (!s)
        return RP_EDB;
    sqlite3_bind_int64(s, 1, job_id);
    if (pid > 0)
        sqlite3_bind_int(s, 2, pid);
    else
        sqlite3_bind_null(s, 2);
    rp_db_bind_text(s, 3, output_dir);
    int rc = rp_db_step_done(db, s, "job set running");
    if (rc)
        return rc;
    return sqlite3_changes(db->h) ? 0 : RP_ENOENT;
}

int rp_db_job_set_exec(rp_db *db, long long job_id, const char *exec_id, int pid)
{
    sqlite3_stmt *s = rp_db_prepare(db, "UPDATE jobs SET exec_id = ?2, pid = ?3"
                                        " WHERE id = ?1 AND state = 'running'");
    if (!s)
        return RP_EDB;
    sqlite3_bind_int64(s, 1, job_id);
    rp_db_bind_text(s, 2, exec_id);
    if (pid > 0)
        sqlite3_bind_int(s, 3, pid);
    else
        sqlite3_bind_null(s, 3);
    int rc = rp_db_step_done(db, s, "job set exec");
    if (rc)
        return rc;
    return sqlite3_changes(db->h) ? 0 : RP_ENOENT;
}

int rp_db_job_finish(rp_db *db, long long job_id, int ok, int exit_status, const char *reason,
                     int permanent, double base_delay_s, double max_delay_s, rp_db_job *out)
{
    int rc = rp_db_begin_write(db);
    if (rc)
        return rc;
    rp_db_job j;
    if ((rc = rp_db_job_get(db, job_id, &j)))
        goto fail;
    if (j.state != RP_JOB_RUNNING) {
        rc = RP_EINVAL;
        goto fail;
    }
    double now = rp_now_s();
    rp_job_state state;
    rp_series_state series_state;
    double next = j.next_attempt_at;
    if (ok) {
        state = RP_JOB_DONE;
        series_state = RP_SERIES_DONE;
    } else if (permanent || j.attempts >= j.max_attempts) {
        state = RP_JOB_DEAD;
        series_state = RP_SERIES_FAILED;
    } else {
        state = RP_JOB_FAILED;
        series_state = RP_SERIES_COMPLETE; /* waits for the retry */
        next = now + rp_db_backoff_s(j.attempts, base_delay_s > 0 ? base_delay_s : 30,
                                     max_delay_s > 0 ? max_delay_s : 3600);
    }
    sqlite3_stmt *s = rp_db_prepare(db, "UPDATE jobs SET state = ?2, finished_at = ?3,"
                                        " next_attempt_at = ?4, exit_status = ?5, reason = ?6,"
                                        " pid = NULL WHERE id = ?1");
    if (s) {
        sqlite3_bind_int64(s, 1, job_id);
        rp_db_bind_text(s, 2, rp_job_state_name(state));
        sqlite3_bind_double(s, 3, now);
        sqlite3_bind_double(s, 4, next);
        sqlite3_bind_int(s, 5, exit_status);
        rp_db_bind_text(s, 6, reason);
    }
    if ((rc = rp_db_step_done(db, s, "job finish")))
        goto fail;
    if ((rc = job_moves_series(db, &j, series_state, ok)))
        goto fail;
    /* The supervisor records the 'job' event with what it measured (wall time, signal). */
    if ((rc = rp_db_commit(db)))
        return rc;
    return out ? rp_db_job_get(db, job_id, out) : 0;
fail:
    rp_db_rollback(db);
    return rc;
}

int rp_db_jobs_requeue_running(rp_db *db, long long job_id, long long *n)
{
    if (n)
        *n = 0;
    int rc = rp_db_begin_write(db);
    if (rc)
        return rc;
    sqlite3_stmt *s = rp_db_prepare(
        db, "UPDATE jobs SET state = 'queued', attempts = max(attempts - 1, 0), pid = NULL,"
            " exec_id = NULL, next_attempt_at = ?1,"
            " reason = 'requeued: the node stopped while it ran'"
            " WHERE state = 'running' AND (?2 <= 0 OR id = ?2)");
    if (s) {
        sqlite3_bind_double(s, 1, rp_now_s());
        sqlite3_bind_int64(s, 2, job_id);
    }
    if ((rc = rp_db_step_done(db, s, "jobs requeue")))
        goto fail;
    long long count = sqlite3_changes(db->h);
    /* Series whose job went back to the queue wait for it again. */
    if ((rc = rp_db_exec(db, "UPDATE series SET state = 'complete' WHERE state = 'processing'"
                             " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.kind = 'process'"
                             " AND j.series_uid = series.series_uid"
                             " AND j.version = series.version AND j.state = 'running')")))
        goto fail;
    if (count) {
        char detail[64];
        snprintf(detail, sizeof detail, "jobs=%lld", count);
        rp_db_event_add(db, "jobs_requeued", detail);
        RP_INFO("db", "jobs left running by a stopped node requeued jobs=%lld", count);
    }
    if ((rc = rp_db_commit(db)))
        return rc;
    if (n)
        *n = count;
    return 0;
fail:
    rp_db_rollback(db);
    return rc;
}

int rp_db_jobs_list(rp_db *db, int state, const char *uid, int limit, rp_db_job **out,
                    size_t *n)
{
    sqlite3_stmt *s = rp_db_prepare(db, "SELECT " JOB_COLUMNS " FROM jobs"
                                        " WHERE (?1 IS NULL OR state = ?1)"
                                        " AND (?2 IS NULL OR series_uid = ?2 OR study_uid = ?2)"
                                        " ORDER BY id DESC LIMIT ?3");
    if (s) {
        rp_db_bind_text(s, 1, state >= 0 ? rp_job_state_name((rp_job_state)state) : NULL);
        rp_db_bind_text(s, 2, uid);
        sqlite3_bind_int(s, 3, limit > 0 ? limit : -1);
    }
    return rp_db_collect(db, s, (void **)out, n, sizeof **out, read_job, "jobs list");
}

int rp_db_jobs_next_due(rp_db *db, double *when)
{
    sqlite3_stmt *s = rp_db_prepare(
        db, "SELECT min(next_attempt_at) FROM jobs WHERE state IN ('queued','failed')");
    if (!s)
        return RP_EDB;
    int rc = sqlite3_step(s);
    int found = rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL;
    if (found)
        *when = sqlite3_column_double(s, 0);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW)
        return rp_db_fail(db, "jobs next due");
    return found ? 0 : RP_ENOENT;
}

int rp_db_output_add(rp_db *db, long long job_id, const char *kind, const char *path,
                     const char *sha256)
{
    sqlite3_stmt *s = rp_db_prepare(
        db, "INSERT INTO outputs(job_fk, kind, path, sha256, created_at) VALUES(?1,?2,?3,?4,?5)"
            " ON CONFLICT(job_fk, path) DO UPDATE SET kind = excluded.kind,"
            " sha256 = excluded.sha256, created_at = excluded.created_at");
    if (!s)
        return RP_EDB;
    sqlite3_bind_int64(s, 1, job_id);
    rp_db_bind_text_raw(s, 2, kind ? kind : "");
    rp_db_bind_text_raw(s, 3, path ? path : "");
    rp_db_bind_text(s, 4, sha256);
    sqlite3_bind_double(s, 5, rp_now_s());
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc == SQLITE_DONE)
        return 0;
    if (sqlite3_extended_errcode(db->h) == SQLITE_CONSTRAINT_FOREIGNKEY)
        return RP_ENOENT;
    return rp_db_fail(db, "output add");
}

static void read_output(sqlite3_stmt *s, void *element)
{
    rp_db_output *o = element;
    o->id = sqlite3_column_int64(s, 0);
    o->job_id = sqlite3_column_int64(s, 1);
    rp_db_col_text(s, 2, o->kind, sizeof o->kind);
    rp_db_col_text(s, 3, o->path, sizeof o->path);
    rp_db_col_text(s, 4, o->sha256, sizeof o->sha256);
    o->created_at = rp_db_col_real(s, 5, 0);
}

int rp_db_outputs_list(rp_db *db, long long job_id, rp_db_output **out, size_t *n)
{
    sqlite3_stmt *s = rp_db_prepare(db, "SELECT id, job_fk, kind, path, sha256, created_at"
                                        " FROM outputs WHERE job_fk = ?1 ORDER BY id");
    if (s)
        sqlite3_bind_int64(s, 1, job_id);
    return rp_db_collect(db, s, (void **)out, n, sizeof **out, read_output, "outputs list");
}
