/*
 * db/console — read-only queries for the web console and its JSON API (http/).
 *
 * The console reads through its own handles opened with rp_db_open_readonly(): SQLite in
 * WAL mode lets them read a consistent snapshot while the index writer commits, so serving a
 * page never waits for, nor delays, the receiving path. Rows come back as named columns
 * through the same callback `radprep ls` uses (rp_db_row_fn), so the API can hand them to
 * JSON without knowing SQL, numbers staying numbers. Times are wall-clock seconds (REAL).
 */
#include "db/db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int rp_db_open_readonly(const char *path, rp_db **out)
{
    *out = NULL;
    rp_db *db = calloc(1, sizeof *db);
    if (!db)
        return RP_ENOMEM;
    rp_strlcpy(db->path, path, sizeof db->path);
    if (sqlite3_open_v2(path, &db->h, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        rp_db_fail(db, "open read-only");
        sqlite3_close(db->h);
        free(db);
        return RP_EDB;
    }
    sqlite3_busy_timeout(db->h, 2000);
    sqlite3_extended_result_codes(db->h, 1);
    /* query_only: even a bug in a console query cannot write. ready stays 0 so that
     * rp_db_close() does not run PRAGMA optimize (a write) on this handle. */
    if (rp_db_exec(db, "PRAGMA query_only = 1; PRAGMA temp_store = MEMORY;")) {
        sqlite3_close(db->h);
        free(db);
        return RP_EDB;
    }
    *out = db;
    return 0;
}

/* One integer from a query whose parameters are already bound; finalizes s. */
static int scalar(rp_db *db, sqlite3_stmt *s, long long *out, const char *what)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : rp_db_fail(db, what);
}

/* "%text%" for LIKE with the user's % _ and \ taken literally (ESCAPE '\'). */
static void like_pattern(const char *text, char *out, size_t outsz)
{
    size_t j = 0;
    out[j++] = '%';
    for (const char *p = text; *p && j + 3 < outsz; p++) {
        if (*p == '%' || *p == '_' || *p == '\\')
            out[j++] = '\\';
        out[j++] = *p;
    }
    out[j++] = '%';
    out[j] = '\0';
}

/* ---- series ---------------------------------------------------------------------------------- */

/* ?1 like-pattern, ?2 exact text (UIDs, accession), ?3 state, ?4 modality. */
#define SERIES_FROM                                                                                \
    " FROM series se JOIN studies st ON st.id = se.study_fk JOIN patients p ON p.id = "            \
    "st.patient_fk"                                                                                \
    " WHERE (?1 IS NULL OR p.patient_id LIKE ?1 ESCAPE '\\' OR p.name LIKE ?1 ESCAPE '\\'"         \
    "   OR st.description LIKE ?1 ESCAPE '\\' OR se.description LIKE ?1 ESCAPE '\\'"               \
    "   OR se.series_uid = ?2 OR st.study_uid = ?2 OR st.accession = ?2 OR st.date = ?2)"          \
    " AND (?3 IS NULL OR se.state = ?3) AND (?4 IS NULL OR se.modality = ?4)"

static void bind_series_query(sqlite3_stmt *s, const rp_db_series_query *q)
{
    char pat[256];
    if (q && q->text && *q->text) {
        like_pattern(q->text, pat, sizeof pat);
        sqlite3_bind_text(s, 1, pat, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(s, 2, q->text, -1, SQLITE_TRANSIENT);
    }
    rp_db_bind_text(s, 3, q ? q->state : NULL);
    rp_db_bind_text(s, 4, q ? q->modality : NULL);
}

int rp_db_console_series(rp_db *db, const rp_db_series_query *q, long long *total, rp_db_row_fn fn,
                         void *user)
{
    if (total) {
        sqlite3_stmt *c = rp_db_prepare(db, "SELECT count(*)" SERIES_FROM);
        if (!c)
            return RP_EDB;
        bind_series_query(c, q);
        int rc = scalar(db, c, total, "console series count");
        if (rc)
            return rc;
    }
    sqlite3_stmt *s = rp_db_prepare(
        db, "SELECT se.series_uid AS series_uid, st.study_uid AS study_uid,"
            " p.patient_id AS patient_id, p.name AS patient_name, st.date AS study_date,"
            " st.description AS study_description, se.modality AS modality,"
            " se.number AS number, se.description AS description, se.body_part AS body_part,"
            " se.instance_count AS instances, se.expected_count AS expected, se.state AS state,"
            " se.version AS version, se.processed_version AS processed_version,"
            " se.first_seen AS first_seen, se.last_seen AS last_seen,"
            " se.completed_at AS completed_at, se.completed_reason AS completed_reason" SERIES_FROM
            " ORDER BY se.last_seen DESC, se.id DESC LIMIT ?5 OFFSET ?6");
    if (!s)
        return RP_EDB;
    bind_series_query(s, q);
    sqlite3_bind_int(s, 5, q && q->limit > 0 ? q->limit : -1);
    sqlite3_bind_int(s, 6, q && q->offset > 0 ? q->offset : 0);
    return rp_db_run_rows(db, s, fn, user, "console series");
}

/* ---- jobs and outbox ------------------------------------------------------------------------- */

int rp_db_console_jobs(rp_db *db, const char *state, const char *series_uid, int offset, int limit,
                       long long *total, rp_db_row_fn fn, void *user)
{
    static const char where[] =
        " WHERE (?1 IS NULL OR j.state = ?1) AND (?2 IS NULL OR j.series_uid = ?2)";
    if (total) {
        sqlite3_stmt *c =
            rp_db_prepare(db, "SELECT count(*) FROM jobs j WHERE (?1 IS NULL OR j.state = ?1)"
                              " AND (?2 IS NULL OR j.series_uid = ?2)");
        if (!c)
            return RP_EDB;
        rp_db_bind_text(c, 1, state);
        rp_db_bind_text(c, 2, series_uid);
        int rc = scalar(db, c, total, "console jobs count");
        if (rc)
            return rc;
    }
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT j.id AS id, COALESCE(j.series_uid, j.study_uid) AS series_uid, j.version AS version,"
             " CASE WHEN j.kind = 'fuse' THEN 'fuse:' || j.rule ELSE j.kind END AS kind, j.state AS state, j.attempts AS attempts,"
             " j.max_attempts AS max_attempts, j.created_at AS created_at,"
             " j.started_at AS started_at, j.finished_at AS finished_at,"
             " j.next_attempt_at AS next_attempt_at, j.exit_status AS exit_status,"
             " j.reason AS reason, j.output_dir AS output_dir, se.modality AS modality,"
             " se.description AS description"
             " FROM jobs j LEFT JOIN series se ON se.series_uid = j.series_uid%s"
             " ORDER BY j.id DESC LIMIT ?3 OFFSET ?4",
             where);
    sqlite3_stmt *s = rp_db_prepare(db, sql);
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, state);
    rp_db_bind_text(s, 2, series_uid);
    sqlite3_bind_int(s, 3, limit > 0 ? limit : -1);
    sqlite3_bind_int(s, 4, offset > 0 ? offset : 0);
    return rp_db_run_rows(db, s, fn, user, "console jobs");
}

int rp_db_console_outbox(rp_db *db, const char *state, const char *destination, int offset,
                         int limit, long long *total, rp_db_row_fn fn, void *user)
{
    if (total) {
        sqlite3_stmt *c =
            rp_db_prepare(db, "SELECT count(*) FROM outbox WHERE (?1 IS NULL OR state = ?1)"
                              " AND (?2 IS NULL OR destination = ?2)");
        if (!c)
            return RP_EDB;
        rp_db_bind_text(c, 1, state);
        rp_db_bind_text(c, 2, destination);
        int rc = scalar(db, c, total, "console outbox count");
        if (rc)
            return rc;
    }
    sqlite3_stmt *s = rp_db_prepare(
        db, "SELECT id, sop_uid, file_path, destination, state, attempts, next_attempt_at,"
            " last_status, last_reason, created_at, updated_at FROM outbox"
            " WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR destination = ?2)"
            " ORDER BY id DESC LIMIT ?3 OFFSET ?4");
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, state);
    rp_db_bind_text(s, 2, destination);
    sqlite3_bind_int(s, 3, limit > 0 ? limit : -1);
    sqlite3_bind_int(s, 4, offset > 0 ? offset : 0);
    return rp_db_run_rows(db, s, fn, user, "console outbox");
}

int rp_db_console_delivery(rp_db *db, const char *dir, rp_db_row_fn fn, void *user)
{
    if (!dir || !*dir)
        return RP_EINVAL;
    /* substr() rather than LIKE: a path may hold % or _ */
    sqlite3_stmt *s = rp_db_prepare(
        db, "SELECT destination, state, count(*) AS instances, max(attempts) AS attempts,"
            " max(updated_at) AS updated_at,"
            " (SELECT o2.last_reason FROM outbox o2 WHERE o2.destination = o.destination"
            "   AND o2.state = o.state AND substr(o2.file_path, 1, length(?1) + 1) = ?1 || '/'"
            "   AND o2.last_reason IS NOT NULL ORDER BY o2.updated_at DESC LIMIT 1)"
            "   AS last_reason"
            " FROM outbox o WHERE substr(file_path, 1, length(?1) + 1) = ?1 || '/'"
            " GROUP BY destination, state ORDER BY destination, state");
    if (!s)
        return RP_EDB;
    sqlite3_bind_text(s, 1, dir, -1, SQLITE_TRANSIENT);
    return rp_db_run_rows(db, s, fn, user, "console delivery");
}

int rp_db_console_output_get(rp_db *db, long long id, rp_db_output *out)
{
    sqlite3_stmt *s = rp_db_prepare(
        db, "SELECT id, job_fk, kind, path, sha256, created_at FROM outputs WHERE id = ?1");
    if (!s)
        return RP_EDB;
    sqlite3_bind_int64(s, 1, id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof *out);
        out->id = sqlite3_column_int64(s, 0);
        out->job_id = sqlite3_column_int64(s, 1);
        rp_db_col_text(s, 2, out->kind, sizeof out->kind);
        rp_db_col_text(s, 3, out->path, sizeof out->path);
        rp_db_col_text(s, 4, out->sha256, sizeof out->sha256);
        out->created_at = rp_db_col_real(s, 5, 0);
    }
    sqlite3_finalize(s);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? RP_ENOENT : rp_db_fail(db, "console output");
}

/* ---- events ---------------------------------------------------------------------------------- */

int rp_db_console_events_about(rp_db *db, const char *kind, const char *needle, int limit,
                               rp_db_row_fn fn, void *user)
{
    /* instr() on the space-padded detail finds "key=value" as a whole word without LIKE's
     * wildcards (AE titles may contain _ or %). */
    sqlite3_stmt *s =
        rp_db_prepare(db, "SELECT id, at, kind, detail FROM events WHERE (?1 IS NULL OR kind = ?1)"
                          " AND (?2 IS NULL OR instr(' ' || detail || ' ', ' ' || ?2 || ' ') > 0)"
                          " ORDER BY id DESC LIMIT ?3");
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, kind);
    rp_db_bind_text(s, 2, needle);
    sqlite3_bind_int(s, 3, limit > 0 ? limit : -1);
    return rp_db_run_rows(db, s, fn, user, "console events");
}

int rp_db_console_warnings(rp_db *db, int limit, rp_db_row_fn fn, void *user)
{
    sqlite3_stmt *s = rp_db_prepare(
        db, "SELECT id, at, kind, detail FROM events WHERE"
            " (kind = 'association' AND detail NOT LIKE 'result=released%'"
            "   AND detail NOT LIKE 'result=accepted%')"
            " OR (kind = 'job' AND (instr(detail, ' state=failed ') > 0"
            "   OR instr(detail, ' state=dead ') > 0))"
            " OR kind IN ('fuse_missing', 'fusion_failed', 'outbox_dead', 'store_failed',"
            "   'reconcile', 'uid_not_ps35')"
            " ORDER BY id DESC LIMIT ?1");
    if (!s)
        return RP_EDB;
    sqlite3_bind_int(s, 1, limit > 0 ? limit : 20);
    return rp_db_run_rows(db, s, fn, user, "console warnings");
}

/* ---- peers and groups for metrics ------------------------------------------------------------ */

int rp_db_console_senders(rp_db *db, rp_db_row_fn fn, void *user)
{
    sqlite3_stmt *s = rp_db_prepare(
        db, "SELECT coalesce(calling_ae, '') AS calling_ae, count(*) AS instances,"
            " coalesce(sum(file_size), 0) AS bytes, max(received_at) AS last_received,"
            " count(DISTINCT series_fk) AS series,"
            " (SELECT peer_host FROM instances i2 WHERE i2.calling_ae IS i.calling_ae"
            "   ORDER BY i2.received_at DESC LIMIT 1) AS last_host"
            " FROM instances i GROUP BY calling_ae ORDER BY calling_ae");
    if (!s)
        return RP_EDB;
    return rp_db_run_rows(db, s, fn, user, "console senders");
}

int rp_db_console_job_groups(rp_db *db, rp_db_row_fn fn, void *user)
{
    sqlite3_stmt *s =
        rp_db_prepare(db, "SELECT j.state AS state, CASE WHEN j.kind = 'fuse' THEN 'fuse:' || j.rule ELSE j.kind END AS kind, se.modality AS modality,"
                          " se.body_part AS body_part, se.description AS description,"
                          " se.slice_thickness AS slice_thickness, count(*) AS n"
                          " FROM jobs j LEFT JOIN series se ON se.series_uid = j.series_uid"
                          " GROUP BY 1, 2, 3, 4, 5, 6");
    if (!s)
        return RP_EDB;
    return rp_db_run_rows(db, s, fn, user, "console job groups");
}

int rp_db_console_outbox_groups(rp_db *db, rp_db_row_fn fn, void *user)
{
    sqlite3_stmt *s = rp_db_prepare(db, "SELECT destination, state, count(*) AS n FROM outbox"
                                        " GROUP BY destination, state");
    if (!s)
        return RP_EDB;
    return rp_db_run_rows(db, s, fn, user, "console outbox groups");
}
