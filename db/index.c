/*
 * db/index — the patient ▸ study ▸ series ▸ instance index: upserts in one transaction,
 * instance lookups, clearing before a rebuild, counters and the event trail.
 */
#include "db/db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int expected_hint(const rp_instance_meta *m)
{
    if (m->images_in_acquisition > 0)
        return m->images_in_acquisition;
    if (m->number_of_slices > 0)
        return m->number_of_slices *
               (m->number_of_temporal_positions > 0 ? m->number_of_temporal_positions : 1);
    return -1;
}

/* Step a cached statement that RETURNs one id. */
static int step_id(rp_db *db, sqlite3_stmt *s, const char *what, long long *id)
{
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return rp_db_fail(db, what);
    }
    *id = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return 0;
}

static int step_nothing(rp_db *db, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : rp_db_fail(db, what);
}

static void bind_instance(sqlite3_stmt *s, const rp_instance_meta *m, long long series_id,
                          double at)
{
    rp_db_bind_text(s, 1, m->sop_instance_uid);
    sqlite3_bind_int64(s, 2, series_id);
    rp_db_bind_text(s, 3, m->sop_class_uid);
    rp_db_bind_int_opt(s, 4, m->instance_number);
    sqlite3_bind_int(s, 5, m->number_of_frames > 0 ? m->number_of_frames : 1);
    rp_db_bind_text(s, 6, m->transfer_syntax_uid);
    rp_db_bind_text_raw(s, 7, m->file_path);
    rp_db_bind_int_opt(s, 8, m->file_size);
    rp_db_bind_text(s, 9, m->file_sha256);
    rp_db_bind_text(s, 10, m->calling_ae);
    rp_db_bind_text(s, 11, m->peer_host);
    sqlite3_bind_double(s, 12, at);
    rp_db_bind_int_opt(s, 13, m->images_in_acquisition);
    rp_db_bind_int_opt(s, 14, m->number_of_temporal_positions);
    rp_db_bind_int_opt(s, 15, m->number_of_slices);
    rp_db_bind_int_opt(s, 16, m->acquisition_number);
    rp_db_bind_text(s, 17, m->protocol_name);
    rp_db_bind_real_opt(s, 18, m->repetition_time);
    rp_db_bind_real_opt(s, 19, m->echo_time);
    rp_db_bind_real_opt(s, 20, m->inversion_time);
}

/* After a rebuild (rp_db_clear_index) a series row is created again: give it back the
 * state and version it had. */
static int restore_series(rp_db *db, long long series_id, const char *uid)
{
    sqlite3_stmt *s = rp_db_stmt(db, ST_SERIES_KEEP_TAKE);
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, uid);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        sqlite3_reset(s);
        return 0;
    }
    if (rc != SQLITE_ROW) {
        sqlite3_reset(s);
        return rp_db_fail(db, "series restore");
    }
    sqlite3_stmt *u = rp_db_stmt(db, ST_SERIES_RESTORE);
    if (!u) {
        sqlite3_reset(s);
        return RP_EDB;
    }
    sqlite3_bind_int64(u, 1, series_id);
    for (int i = 0; i < 6; i++)
        sqlite3_bind_value(u, i + 2, sqlite3_column_value(s, i));
    rc = step_nothing(db, u, "series restore");
    sqlite3_reset(s);
    return rc;
}

/* Was this SOP UID in the index before a rebuild, with the same checksum? */
static int known_before_rebuild(rp_db *db, const rp_instance_meta *m, int *same)
{
    *same = 0;
    sqlite3_stmt *s = rp_db_stmt(db, ST_INSTANCE_KEPT);
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, m->sop_instance_uid);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const unsigned char *sha = sqlite3_column_text(s, 0);
        *same = strcmp(sha ? (const char *)sha : "", m->file_sha256) == 0;
        rc = SQLITE_DONE;
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : rp_db_fail(db, "instance keep");
}

static int reopen_series(rp_db *db, long long series_id, const char *sop_uid)
{
    sqlite3_stmt *s = rp_db_stmt(db, ST_SERIES_REOPEN);
    if (!s)
        return RP_EDB;
    sqlite3_bind_int64(s, 1, series_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        char uid[RP_UID_MAX + 1], detail[256];
        rp_db_col_text(s, 0, uid, sizeof uid);
        int version = sqlite3_column_int(s, 1);
        sqlite3_reset(s);
        snprintf(detail, sizeof detail, "series_uid=%s version=%d sop_uid=%s", uid, version,
                 sop_uid);
        RP_INFO("db", "series reopened by a late instance %s", detail);
        return rp_db_event_add(db, "series_reopened", detail);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : rp_db_fail(db, "series reopen");
}

/* Within one transaction, consecutive instances of the same study (the common case: a
 * scanner sends series after series) reuse the patient and study rows instead of upserting
 * them again. */
static int same_study(const rp_db_index_cache *k, const rp_instance_meta *m)
{
    return k && k->study_id > 0 && strcmp(k->study_uid, m->study_uid) == 0 &&
           strcmp(k->patient_id, m->patient_id) == 0 &&
           strcmp(k->issuer, m->issuer_of_patient_id) == 0;
}

int rp_db_index_one(rp_db *db, const rp_instance_meta *m, rp_db_index_cache *k)
{
    long long patient_id = 0, study_id = 0, series_id = 0;
    double at = m->received_at > 0 ? m->received_at : rp_now_s();
    sqlite3_stmt *s;
    if (same_study(k, m)) {
        study_id = k->study_id;
        goto series;
    }
    if (!(s = rp_db_stmt(db, ST_PATIENT_UPSERT)))
        return RP_EDB;
    rp_db_bind_text_raw(s, 1, m->patient_id);
    rp_db_bind_text_raw(s, 2, m->issuer_of_patient_id);
    rp_db_bind_text(s, 3, m->patient_name);
    rp_db_bind_text(s, 4, m->patient_birth_date);
    rp_db_bind_text(s, 5, m->patient_sex);
    if (step_id(db, s, "patient upsert", &patient_id))
        return RP_EDB;

    if (!(s = rp_db_stmt(db, ST_STUDY_UPSERT)))
        return RP_EDB;
    rp_db_bind_text(s, 1, m->study_uid);
    sqlite3_bind_int64(s, 2, patient_id);
    rp_db_bind_text(s, 3, m->study_date);
    rp_db_bind_text(s, 4, m->study_time);
    rp_db_bind_text(s, 5, m->accession_number);
    rp_db_bind_text(s, 6, m->study_description);
    if (step_id(db, s, "study upsert", &study_id))
        return RP_EDB;
    if (k) {
        k->study_id = study_id;
        rp_strlcpy(k->study_uid, m->study_uid, sizeof k->study_uid);
        rp_strlcpy(k->patient_id, m->patient_id, sizeof k->patient_id);
        rp_strlcpy(k->issuer, m->issuer_of_patient_id, sizeof k->issuer);
    }

series:
    if (!(s = rp_db_stmt(db, ST_SERIES_UPSERT)))
        return RP_EDB;
    rp_db_bind_text(s, 1, m->series_uid);
    sqlite3_bind_int64(s, 2, study_id);
    rp_db_bind_text(s, 3, m->modality);
    rp_db_bind_int_opt(s, 4, m->series_number);
    rp_db_bind_text(s, 5, m->series_description);
    rp_db_bind_text(s, 6, m->body_part);
    rp_db_bind_text(s, 7, m->frame_of_reference_uid);
    rp_db_bind_real_opt(s, 8, m->slice_thickness);
    sqlite3_bind_double(s, 9, at);
    sqlite3_bind_int(s, 10, expected_hint(m));
    if (sqlite3_step(s) != SQLITE_ROW) {
        sqlite3_reset(s);
        return rp_db_fail(db, "series upsert");
    }
    series_id = sqlite3_column_int64(s, 0);
    long long count = sqlite3_column_int64(s, 1);
    sqlite3_reset(s);
    if (count == 0 && restore_series(db, series_id, m->series_uid))
        return RP_EDB;

    if (!(s = rp_db_stmt(db, ST_INSTANCE_INSERT)))
        return RP_EDB;
    bind_instance(s, m, series_id, at);
    if (step_nothing(db, s, "instance insert"))
        return RP_EDB;
    int changed;
    if (sqlite3_changes(db->h) == 1) {
        int same;
        if (known_before_rebuild(db, m, &same))
            return RP_EDB;
        changed = !same;
        if (!(s = rp_db_stmt(db, ST_SERIES_COUNT_INC)))
            return RP_EDB;
        sqlite3_bind_int64(s, 1, series_id);
        if (step_nothing(db, s, "series count"))
            return RP_EDB;
    } else {
        /* Known SOP UID: re-indexing is idempotent; a changed file (replace policy) or a
         * move to another series updates the row and counts as a change. */
        if (!(s = rp_db_stmt(db, ST_INSTANCE_OLD)))
            return RP_EDB;
        rp_db_bind_text(s, 1, m->sop_instance_uid);
        if (sqlite3_step(s) != SQLITE_ROW) {
            sqlite3_reset(s);
            return rp_db_fail(db, "instance lookup");
        }
        long long old_series = sqlite3_column_int64(s, 0);
        char old_sha[65];
        rp_db_col_text(s, 1, old_sha, sizeof old_sha);
        sqlite3_reset(s);
        changed =
            old_series != series_id || (m->file_sha256[0] && strcmp(old_sha, m->file_sha256) != 0);
        if (!(s = rp_db_stmt(db, ST_INSTANCE_UPDATE)))
            return RP_EDB;
        bind_instance(s, m, series_id, at);
        if (step_nothing(db, s, "instance update"))
            return RP_EDB;
        if (old_series != series_id) {
            long long ids[2] = {old_series, series_id};
            for (int i = 0; i < 2; i++) {
                if (!(s = rp_db_stmt(db, ST_SERIES_RECOUNT)))
                    return RP_EDB;
                sqlite3_bind_int64(s, 1, ids[i]);
                if (step_nothing(db, s, "series recount"))
                    return RP_EDB;
            }
        }
    }
    if (changed && reopen_series(db, series_id, m->sop_instance_uid))
        return RP_EDB;
    return 0;
}

static int meta_ok(const rp_instance_meta *m)
{
    if (m->study_uid[0] && m->series_uid[0] && m->sop_instance_uid[0])
        return 1;
    RP_WARN("db", "not indexed: missing UID study_uid=%s series_uid=%s sop_uid=%s file=%s",
            m->study_uid[0] ? m->study_uid : "-", m->series_uid[0] ? m->series_uid : "-",
            m->sop_instance_uid[0] ? m->sop_instance_uid : "-", m->file_path);
    return 0;
}

int rp_db_index_instances(rp_db *db, const rp_instance_meta *metas, size_t n)
{
    if (n == 0)
        return 0;
    int rc = rp_db_begin_write(db);
    if (rc)
        return rc;
    int skipped = 0;
    rp_db_index_cache cache = {0};
    for (size_t i = 0; i < n; i++) {
        if (!meta_ok(&metas[i])) {
            skipped = 1;
            continue;
        }
        if ((rc = rp_db_index_one(db, &metas[i], &cache)) != 0) {
            rp_db_rollback(db);
            return rc;
        }
    }
    rc = rp_db_commit(db);
    return rc ? rc : (skipped ? RP_EUID : 0);
}

int rp_db_instance_delete(rp_db *db, const char *sop_instance_uid)
{
    int rc = rp_db_begin_write(db);
    if (rc)
        return rc;
    sqlite3_stmt *s = rp_db_prepare(db, "DELETE FROM instances WHERE sop_uid = ?1"
                                        " RETURNING series_fk");
    if (!s) {
        rp_db_rollback(db);
        return RP_EDB;
    }
    rp_db_bind_text(s, 1, sop_instance_uid);
    rc = sqlite3_step(s);
    long long series_id = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    if (rc == SQLITE_ROW)
        rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        rp_db_rollback(db);
        return rp_db_fail(db, "instance delete");
    }
    if (series_id < 0) {
        rp_db_rollback(db);
        return RP_ENOENT;
    }
    s = rp_db_stmt(db, ST_SERIES_RECOUNT);
    if (!s) {
        rp_db_rollback(db);
        return RP_EDB;
    }
    sqlite3_bind_int64(s, 1, series_id);
    if (step_nothing(db, s, "series recount")) {
        rp_db_rollback(db);
        return RP_EDB;
    }
    return rp_db_commit(db);
}

static void read_instance(sqlite3_stmt *s, void *element)
{
    rp_instance_meta *m = element;
    memset(m, 0, sizeof *m);
    rp_db_col_text(s, 0, m->patient_id, sizeof m->patient_id);
    rp_db_col_text(s, 1, m->issuer_of_patient_id, sizeof m->issuer_of_patient_id);
    rp_db_col_text(s, 2, m->patient_name, sizeof m->patient_name);
    rp_db_col_text(s, 3, m->patient_birth_date, sizeof m->patient_birth_date);
    rp_db_col_text(s, 4, m->patient_sex, sizeof m->patient_sex);
    rp_db_col_text(s, 5, m->study_uid, sizeof m->study_uid);
    rp_db_col_text(s, 6, m->study_date, sizeof m->study_date);
    rp_db_col_text(s, 7, m->study_time, sizeof m->study_time);
    rp_db_col_text(s, 8, m->accession_number, sizeof m->accession_number);
    rp_db_col_text(s, 9, m->study_description, sizeof m->study_description);
    rp_db_col_text(s, 10, m->series_uid, sizeof m->series_uid);
    rp_db_col_text(s, 11, m->modality, sizeof m->modality);
    m->series_number = (int)rp_db_col_int(s, 12, -1);
    rp_db_col_text(s, 13, m->series_description, sizeof m->series_description);
    rp_db_col_text(s, 14, m->body_part, sizeof m->body_part);
    rp_db_col_text(s, 15, m->frame_of_reference_uid, sizeof m->frame_of_reference_uid);
    rp_db_col_text(s, 16, m->sop_class_uid, sizeof m->sop_class_uid);
    rp_db_col_text(s, 17, m->sop_instance_uid, sizeof m->sop_instance_uid);
    rp_db_col_text(s, 18, m->transfer_syntax_uid, sizeof m->transfer_syntax_uid);
    m->instance_number = (int)rp_db_col_int(s, 19, -1);
    m->number_of_frames = (int)rp_db_col_int(s, 20, 1);
    m->images_in_acquisition = (int)rp_db_col_int(s, 21, -1);
    m->number_of_temporal_positions = (int)rp_db_col_int(s, 22, -1);
    m->number_of_slices = (int)rp_db_col_int(s, 23, -1);
    m->acquisition_number = (int)rp_db_col_int(s, 24, -1);
    m->slice_thickness = rp_db_col_real(s, 25, -1);
    rp_db_col_text(s, 26, m->file_path, sizeof m->file_path);
    m->file_size = rp_db_col_int(s, 27, 0);
    rp_db_col_text(s, 28, m->file_sha256, sizeof m->file_sha256);
    rp_db_col_text(s, 29, m->calling_ae, sizeof m->calling_ae);
    rp_db_col_text(s, 30, m->peer_host, sizeof m->peer_host);
    m->received_at = rp_db_col_real(s, 31, 0);
    rp_db_col_text(s, 32, m->protocol_name, sizeof m->protocol_name);
    m->repetition_time = rp_db_col_real(s, 33, -1);
    m->echo_time = rp_db_col_real(s, 34, -1);
    m->inversion_time = rp_db_col_real(s, 35, -1);
}

int rp_db_instance_get(rp_db *db, const char *sop_instance_uid, rp_instance_meta *out)
{
    /* cached: reconciliation asks this once per file in the store */
    sqlite3_stmt *s = rp_db_stmt(db, ST_INSTANCE_GET);
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, sop_instance_uid);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        read_instance(s, out);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? RP_ENOENT : rp_db_fail(db, "instance get");
}

int rp_db_series_instances(rp_db *db, const char *series_uid, rp_instance_meta **out, size_t *n)
{
    sqlite3_stmt *s = rp_db_prepare(db, "SELECT " RP_DB_INSTANCE_COLUMNS " WHERE se.series_uid = ?1"
                                        " ORDER BY i.instance_number IS NULL, i.instance_number,"
                                        " i.sop_uid");
    if (s)
        rp_db_bind_text(s, 1, series_uid);
    return rp_db_collect(db, s, (void **)out, n, sizeof **out, read_instance, "series instances");
}

int rp_db_series_first_instance(rp_db *db, const char *series_uid, rp_instance_meta *out)
{
    sqlite3_stmt *s = rp_db_prepare(db, "SELECT " RP_DB_INSTANCE_COLUMNS " WHERE se.series_uid = ?1"
                                        " ORDER BY i.instance_number IS NULL, i.instance_number,"
                                        " i.sop_uid LIMIT 1");
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, series_uid);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        read_instance(s, out);
    sqlite3_finalize(s);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? RP_ENOENT : rp_db_fail(db, "series first instance");
}

int rp_db_clear_index(rp_db *db)
{
    int rc = rp_db_begin_write(db);
    if (rc)
        return rc;
    rc =
        rp_db_exec(db, "INSERT OR REPLACE INTO series_keep SELECT series_uid, state, version,"
                       " completed_at, completed_reason, processed_version, expected_count"
                       " FROM series;"
                       "INSERT OR REPLACE INTO instance_keep SELECT sop_uid, sha256 FROM instances;"
                       "DELETE FROM instances; DELETE FROM series; DELETE FROM studies;"
                       "DELETE FROM patients;");
    if (rc) {
        rp_db_rollback(db);
        return rc;
    }
    return rp_db_commit(db);
}

int rp_db_counts_get(rp_db *db, rp_db_counts *out)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s = rp_db_prepare(
        db, "SELECT (SELECT count(*) FROM patients), (SELECT count(*) FROM studies),"
            " (SELECT count(*) FROM series), (SELECT count(*) FROM instances),"
            " (SELECT coalesce(sum(file_size), 0) FROM instances),"
            " (SELECT count(*) FROM jobs WHERE state = 'queued'),"
            " (SELECT count(*) FROM jobs WHERE state = 'running'),"
            " (SELECT count(*) FROM jobs WHERE state = 'done'),"
            " (SELECT count(*) FROM jobs WHERE state = 'failed'),"
            " (SELECT count(*) FROM outbox WHERE state = 'pending'),"
            " (SELECT count(*) FROM outbox WHERE state = 'dead'),"
            " (SELECT count(*) FROM events WHERE kind = 'association'"
            "   AND detail NOT LIKE 'result=rejected%' AND detail NOT LIKE 'result=dropped%'),"
            " (SELECT count(*) FROM jobs WHERE state = 'dead'),"
            " (SELECT count(*) FROM outbox WHERE state = 'sending'),"
            " (SELECT count(*) FROM outbox WHERE state = 'done'),"
            " (SELECT count(*) FROM series WHERE state = 'receiving'),"
            " (SELECT count(*) FROM series WHERE state = 'complete'),"
            " (SELECT count(*) FROM series WHERE state = 'processing'),"
            " (SELECT count(*) FROM series WHERE state = 'done'),"
            " (SELECT count(*) FROM series WHERE state = 'failed'),"
            " (SELECT count(*) FROM events WHERE kind = 'association'"
            "   AND (detail LIKE 'result=rejected%' OR detail LIKE 'result=dropped%'))");
    if (!s)
        return RP_EDB;
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        long long *f[] = {
            &out->patients,         &out->studies,         &out->series,
            &out->instances,        &out->bytes,           &out->jobs_queued,
            &out->jobs_running,     &out->jobs_done,       &out->jobs_failed,
            &out->outbox_pending,   &out->outbox_dead,     &out->associations,
            &out->jobs_dead,        &out->outbox_sending,  &out->outbox_done,
            &out->series_receiving, &out->series_complete, &out->series_processing,
            &out->series_done,      &out->series_failed,   &out->associations_refused};
        for (int i = 0; i < (int)(sizeof f / sizeof f[0]); i++)
            *f[i] = sqlite3_column_int64(s, i);
    }
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : rp_db_fail(db, "counts");
}

int rp_db_event_add(rp_db *db, const char *kind, const char *detail)
{
    sqlite3_stmt *s = rp_db_stmt(db, ST_EVENT_ADD);
    if (!s)
        return RP_EDB;
    sqlite3_bind_double(s, 1, rp_now_s());
    rp_db_bind_text_raw(s, 2, kind ? kind : "event");
    rp_db_bind_text(s, 3, detail);
    return step_nothing(db, s, "event add");
}
