/*
 * db/query — read-only listings for the operator CLI (`radprep ls`, events), returned as
 * named text columns through a row callback so the CLI can print tables or JSON without
 * knowing any SQL.
 */
#include "db/db_internal.h"

#include <string.h>

#define ISO(col) "strftime('%Y-%m-%dT%H:%M:%SZ', " col ", 'unixepoch')"

/* Filters are ?1 patient_id, ?2 study_uid, ?3 series_uid, ?4 modality, ?5 limit,
 * ?6 series state. */
static const char sql_patients[] =
    "SELECT p.patient_id AS patient_id, p.issuer AS issuer, p.name AS name,"
    " p.birth_date AS birth_date, p.sex AS sex,"
    " (SELECT count(*) FROM studies st WHERE st.patient_fk = p.id) AS studies,"
    " (SELECT count(*) FROM series se JOIN studies st ON st.id = se.study_fk"
    "   WHERE st.patient_fk = p.id) AS series,"
    " (SELECT coalesce(sum(se.instance_count), 0) FROM series se"
    "   JOIN studies st ON st.id = se.study_fk WHERE st.patient_fk = p.id) AS instances"
    " FROM patients p WHERE (?1 IS NULL OR p.patient_id = ?1)"
    " AND (?2 IS NULL AND ?3 IS NULL AND ?4 IS NULL AND ?6 IS NULL OR EXISTS (SELECT 1"
    "   FROM studies st JOIN series se ON se.study_fk = st.id WHERE st.patient_fk = p.id"
    "   AND (?2 IS NULL OR st.study_uid = ?2) AND (?3 IS NULL OR se.series_uid = ?3)"
    "   AND (?4 IS NULL OR se.modality = ?4) AND (?6 IS NULL OR se.state = ?6)))"
    " ORDER BY p.patient_id, p.issuer LIMIT ?5";

static const char sql_studies[] =
    "SELECT st.study_uid AS study_uid, p.patient_id AS patient_id, p.name AS patient_name,"
    " st.date AS date, st.time AS time, st.accession AS accession,"
    " st.description AS description,"
    " (SELECT group_concat(m, ' ') FROM (SELECT DISTINCT se.modality AS m FROM series se"
    "   WHERE se.study_fk = st.id AND se.modality IS NOT NULL ORDER BY 1)) AS modalities,"
    " (SELECT count(*) FROM series se WHERE se.study_fk = st.id) AS series,"
    " (SELECT coalesce(sum(se.instance_count), 0) FROM series se WHERE se.study_fk = st.id)"
    "   AS instances"
    " FROM studies st JOIN patients p ON p.id = st.patient_fk"
    " WHERE (?1 IS NULL OR p.patient_id = ?1) AND (?2 IS NULL OR st.study_uid = ?2)"
    " AND (?3 IS NULL AND ?4 IS NULL AND ?6 IS NULL OR EXISTS (SELECT 1 FROM series se"
    "   WHERE se.study_fk = st.id AND (?3 IS NULL OR se.series_uid = ?3)"
    "   AND (?4 IS NULL OR se.modality = ?4) AND (?6 IS NULL OR se.state = ?6)))"
    " ORDER BY st.date, st.time, st.study_uid LIMIT ?5";

static const char sql_series[] =
    "SELECT se.series_uid AS series_uid, st.study_uid AS study_uid,"
    " p.patient_id AS patient_id, se.modality AS modality, se.number AS number,"
    " se.description AS description, se.instance_count AS instances,"
    " se.expected_count AS expected, se.state AS state, se.version AS version,"
    " " ISO("se.last_seen") " AS last_seen"
                            " FROM series se JOIN studies st ON st.id = se.study_fk"
                            " JOIN patients p ON p.id = st.patient_fk"
                            " WHERE (?1 IS NULL OR p.patient_id = ?1) AND (?2 IS NULL OR "
                            "st.study_uid = ?2)"
                            " AND (?3 IS NULL OR se.series_uid = ?3) AND (?4 IS NULL OR "
                            "se.modality = ?4)"
                            " AND (?6 IS NULL OR se.state = ?6)"
                            " ORDER BY st.study_uid, se.number, se.series_uid LIMIT ?5";

static const char sql_instances[] =
    "SELECT i.sop_uid AS sop_uid, se.series_uid AS series_uid,"
    " i.instance_number AS number, i.sop_class AS sop_class,"
    " i.transfer_syntax AS transfer_syntax, i.number_of_frames AS frames,"
    " i.file_size AS bytes, i.calling_ae AS calling_ae,"
    " " ISO("i.received_at") " AS received_at, i.file_path AS file_path"
                             " FROM instances i JOIN series se ON se.id = i.series_fk"
                             " JOIN studies st ON st.id = se.study_fk JOIN patients p ON p.id = "
                             "st.patient_fk"
                             " WHERE (?1 IS NULL OR p.patient_id = ?1) AND (?2 IS NULL OR "
                             "st.study_uid = ?2)"
                             " AND (?3 IS NULL OR se.series_uid = ?3) AND (?4 IS NULL OR "
                             "se.modality = ?4)"
                             " AND (?6 IS NULL OR se.state = ?6)"
                             " ORDER BY se.series_uid, i.instance_number, i.sop_uid LIMIT ?5";

int rp_db_run_rows(rp_db *db, sqlite3_stmt *s, rp_db_row_fn fn, void *user, const char *what)
{
    int ncol = sqlite3_column_count(s);
    const char *names[64], *vals[64];
    int kinds[64];
    if (ncol > 64)
        ncol = 64;
    for (int i = 0; i < ncol; i++)
        names[i] = sqlite3_column_name(s, i);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        for (int i = 0; i < ncol; i++) {
            int t = sqlite3_column_type(s, i);
            kinds[i] = t == SQLITE_INTEGER ? RP_DB_COL_INT
                       : t == SQLITE_FLOAT ? RP_DB_COL_REAL
                       : t == SQLITE_NULL  ? RP_DB_COL_NULL
                                           : RP_DB_COL_TEXT;
            vals[i] = (const char *)sqlite3_column_text(s, i);
        }
        if (fn && fn(user, ncol, names, vals, kinds) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : rp_db_fail(db, what);
}

int rp_db_ls(rp_db *db, const char *level, const rp_db_filter *f, rp_db_row_fn fn, void *user)
{
    const char *sql;
    if (!level || !fn)
        return RP_EINVAL;
    if (strcmp(level, "patients") == 0)
        sql = sql_patients;
    else if (strcmp(level, "studies") == 0)
        sql = sql_studies;
    else if (strcmp(level, "series") == 0)
        sql = sql_series;
    else if (strcmp(level, "instances") == 0)
        sql = sql_instances;
    else
        return RP_EINVAL;
    sqlite3_stmt *s = rp_db_prepare(db, sql);
    if (!s)
        return RP_EDB;
    rp_db_filter none = {NULL, NULL, NULL, NULL, 0, NULL};
    if (!f)
        f = &none;
    rp_db_bind_text(s, 1, f->patient_id);
    rp_db_bind_text(s, 2, f->study_uid);
    rp_db_bind_text(s, 3, f->series_uid);
    rp_db_bind_text(s, 4, f->modality);
    sqlite3_bind_int(s, 5, f->limit > 0 ? f->limit : -1);
    rp_db_bind_text(s, 6, f->state);
    return rp_db_run_rows(db, s, fn, user, "ls");
}

int rp_db_events_list(rp_db *db, const char *kind, int limit, rp_db_row_fn fn, void *user)
{
    sqlite3_stmt *s =
        rp_db_prepare(db, "SELECT id, " ISO("at") " AS at, kind, detail"
                                                  " FROM events WHERE (?1 IS NULL OR kind = ?1)"
                                                  " ORDER BY id DESC LIMIT ?2");
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, kind);
    sqlite3_bind_int(s, 2, limit > 0 ? limit : -1);
    return rp_db_run_rows(db, s, fn, user, "events");
}

int rp_db_events_prune(rp_db *db, double before, long long *n)
{
    if (n)
        *n = 0;
    sqlite3_stmt *s = rp_db_prepare(db, "DELETE FROM events WHERE at < ?1");
    if (!s)
        return RP_EDB;
    sqlite3_bind_double(s, 1, before);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return rp_db_fail(db, "events prune");
    if (n)
        *n = sqlite3_changes(db->h);
    return 0;
}
