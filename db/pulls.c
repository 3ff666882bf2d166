/* db/pulls — what the node asked a PACS for and what came of it (qr/, `radprep pulls`).
 *
 * Two tables, added by one migration step (rp_db_pulls_schema, listed in schema.c):
 *   pulls       one row per run: who asked (pull NAME or ad hoc), which peer, the request,
 *               counts and the first failure with the PACS's status and words;
 *   pull_items  one row per series requested: the count C-FIND announced, what the retrieve
 *               reported (completed/failed/warning sub-operations, status, reason), and how
 *               the series completed afterwards.
 * A trigger on series keeps the last item of a series in step with it: when the series goes
 * from receiving to complete, the item records when and on what evidence ("announced_count"
 * when the index holds exactly the announced instances). The completion monitor reads the
 * announced count of a moved series (rp_db_pull_announced) as its evidence of completeness.
 * Items reference series by UID, like jobs, so a reindex never touches them. */
#include "db/db.h"
#include "db/db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char rp_db_pulls_schema[] =
    "CREATE TABLE pulls ("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL DEFAULT '',"
    "  peer TEXT NOT NULL,"
    "  request TEXT,"
    "  state TEXT NOT NULL DEFAULT 'running'"
    "    CHECK (state IN ('running','done','partial','failed','stopped')),"
    "  started_at REAL NOT NULL, finished_at REAL,"
    "  series_found INTEGER NOT NULL DEFAULT 0, series_present INTEGER NOT NULL DEFAULT 0,"
    "  series_requested INTEGER NOT NULL DEFAULT 0, series_ok INTEGER NOT NULL DEFAULT 0,"
    "  series_failed INTEGER NOT NULL DEFAULT 0, series_left INTEGER NOT NULL DEFAULT 0,"
    "  instances_announced INTEGER NOT NULL DEFAULT 0,"
    "  instances_retrieved INTEGER NOT NULL DEFAULT 0,"
    "  last_status INTEGER, reason TEXT);"
    "CREATE INDEX pulls_name ON pulls(name, started_at);"
    "CREATE TABLE pull_items ("
    "  id INTEGER PRIMARY KEY,"
    "  pull_fk INTEGER NOT NULL REFERENCES pulls(id) ON DELETE CASCADE,"
    "  study_uid TEXT NOT NULL, series_uid TEXT NOT NULL,"
    "  modality TEXT, description TEXT, rule TEXT,"
    "  announced INTEGER NOT NULL DEFAULT -1,"
    "  had INTEGER NOT NULL DEFAULT 0,"
    "  state TEXT NOT NULL DEFAULT 'moving'"
    "    CHECK (state IN ('moving','moved','complete','changed','partial','failed')),"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  completed INTEGER, failed INTEGER, warning INTEGER,"
    "  status INTEGER, reason TEXT,"
    "  requested_at REAL NOT NULL, finished_at REAL,"
    "  completed_at REAL, completed_reason TEXT);"
    "CREATE INDEX pull_items_series ON pull_items(series_uid, id);"
    "CREATE INDEX pull_items_pull ON pull_items(pull_fk);"
    /* The newest item of a series learns how the series completed. */
    "CREATE TRIGGER pull_items_complete AFTER UPDATE OF state ON series"
    " WHEN NEW.state = 'complete' AND OLD.state = 'receiving' BEGIN"
    "  UPDATE pull_items SET"
    "   state = CASE WHEN state IN ('moving','moved') THEN 'complete' ELSE state END,"
    "   completed_at = NEW.completed_at,"
    "   completed_reason = CASE WHEN announced > 0 AND NEW.instance_count = announced"
    "     AND NEW.completed_reason = 'expected_count' THEN 'announced_count'"
    "     ELSE NEW.completed_reason END"
    "  WHERE id = (SELECT max(id) FROM pull_items WHERE series_uid = NEW.series_uid)"
    "   AND completed_at IS NULL;"
    " END;";

static int step_done(rp_db *db, sqlite3_stmt *s, const char *what)
{
    if (!s)
        return RP_EDB;
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : rp_db_fail(db, what);
}

int rp_db_pull_begin(rp_db *db, const char *name, const char *peer, const char *request,
                     long long *id)
{
    sqlite3_stmt *s = rp_db_prepare(db, "INSERT INTO pulls(name, peer, request, started_at)"
                                        " VALUES(?1, ?2, ?3, ?4)");
    if (!s)
        return RP_EDB;
    rp_db_bind_text_raw(s, 1, name ? name : "");
    rp_db_bind_text_raw(s, 2, peer);
    rp_db_bind_text(s, 3, request);
    sqlite3_bind_double(s, 4, rp_now_s());
    int rc = step_done(db, s, "pull begin");
    if (rc == 0 && id)
        *id = sqlite3_last_insert_rowid(db->h);
    return rc;
}

int rp_db_pull_finish(rp_db *db, const rp_db_pull *p)
{
    sqlite3_stmt *s = rp_db_prepare(
        db, "UPDATE pulls SET state = ?2, finished_at = ?3, series_found = ?4,"
            " series_present = ?5, series_requested = ?6, series_ok = ?7, series_failed = ?8,"
            " series_left = ?9, instances_announced = ?10, instances_retrieved = ?11,"
            " last_status = ?12, reason = ?13 WHERE id = ?1");
    if (!s)
        return RP_EDB;
    sqlite3_bind_int64(s, 1, p->id);
    rp_db_bind_text_raw(s, 2, p->state);
    sqlite3_bind_double(s, 3, p->finished_at > 0 ? p->finished_at : rp_now_s());
    sqlite3_bind_int(s, 4, p->series_found);
    sqlite3_bind_int(s, 5, p->series_present);
    sqlite3_bind_int(s, 6, p->series_requested);
    sqlite3_bind_int(s, 7, p->series_ok);
    sqlite3_bind_int(s, 8, p->series_failed);
    sqlite3_bind_int(s, 9, p->series_left);
    sqlite3_bind_int64(s, 10, p->instances_announced);
    sqlite3_bind_int64(s, 11, p->instances_retrieved);
    rp_db_bind_int_opt(s, 12, p->last_status);
    rp_db_bind_text(s, 13, p->reason);
    int rc = step_done(db, s, "pull finish");
    if (rc == 0 && sqlite3_changes(db->h) == 0)
        return RP_ENOENT;
    return rc;
}

int rp_db_pull_item_add(rp_db *db, long long pull_id, const rp_db_pull_item *it, long long *id)
{
    sqlite3_stmt *s = rp_db_prepare(
        db, "INSERT INTO pull_items(pull_fk, study_uid, series_uid, modality, description, rule,"
            " announced, had, requested_at) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)");
    if (!s)
        return RP_EDB;
    sqlite3_bind_int64(s, 1, pull_id);
    rp_db_bind_text_raw(s, 2, it->study_uid);
    rp_db_bind_text_raw(s, 3, it->series_uid);
    rp_db_bind_text(s, 4, it->modality);
    rp_db_bind_text(s, 5, it->description);
    rp_db_bind_text(s, 6, it->rule);
    sqlite3_bind_int64(s, 7, it->announced);
    sqlite3_bind_int64(s, 8, it->had);
    sqlite3_bind_double(s, 9, rp_now_s());
    int rc = step_done(db, s, "pull item add");
    if (rc == 0 && id)
        *id = sqlite3_last_insert_rowid(db->h);
    return rc;
}

int rp_db_pull_item_finish(rp_db *db, long long item_id, const char *state, int attempts,
                           int completed, int failed, int warning, int status, const char *reason)
{
    /* A series that already completed during its move keeps 'complete' when the move then
     * reports success; any other outcome is recorded as it is. */
    sqlite3_stmt *s = rp_db_prepare(
        db, "UPDATE pull_items SET"
            " state = CASE WHEN state = 'complete' AND ?2 = 'moved' THEN state ELSE ?2 END,"
            " attempts = ?3, completed = ?4, failed = ?5, warning = ?6, status = ?7,"
            " reason = ?8, finished_at = ?9 WHERE id = ?1");
    if (!s)
        return RP_EDB;
    sqlite3_bind_int64(s, 1, item_id);
    rp_db_bind_text_raw(s, 2, state);
    sqlite3_bind_int(s, 3, attempts);
    sqlite3_bind_int(s, 4, completed);
    sqlite3_bind_int(s, 5, failed);
    sqlite3_bind_int(s, 6, warning);
    rp_db_bind_int_opt(s, 7, status);
    rp_db_bind_text(s, 8, reason);
    sqlite3_bind_double(s, 9, rp_now_s());
    return step_done(db, s, "pull item finish");
}

int rp_db_pull_announced(rp_db *db, const char *series_uid, long long *announced)
{
    *announced = -1;
    sqlite3_stmt *s = rp_db_prepare(db, "SELECT state, announced FROM pull_items"
                                        " WHERE series_uid = ?1 ORDER BY id DESC LIMIT 1");
    if (!s)
        return RP_EDB;
    rp_db_bind_text_raw(s, 1, series_uid);
    int rc = sqlite3_step(s);
    int found = 0;
    if (rc == SQLITE_ROW) {
        const unsigned char *st = sqlite3_column_text(s, 0);
        /* Only once the move has reported its final count and it matched what C-FIND said:
         * before that, or when the series changed on the PACS, the count is no evidence. */
        if (st && strcmp((const char *)st, "moved") == 0 && sqlite3_column_int64(s, 1) > 0) {
            *announced = sqlite3_column_int64(s, 1);
            found = 1;
        }
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return rp_db_fail(db, "pull announced");
    return found ? 0 : RP_ENOENT;
}

int rp_db_pull_rule(rp_db *db, const char *series_uid, char *rule, size_t rulesz)
{
    rule[0] = '\0';
    sqlite3_stmt *s = rp_db_prepare(db, "SELECT rule FROM pull_items WHERE series_uid = ?1"
                                        " AND rule IS NOT NULL ORDER BY id DESC LIMIT 1");
    if (!s)
        return RP_EDB;
    rp_db_bind_text_raw(s, 1, series_uid);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        rp_db_col_text(s, 0, rule, rulesz);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return rp_db_fail(db, "pull rule");
    return rule[0] ? 0 : RP_ENOENT;
}

int rp_db_pulls_list(rp_db *db, const char *name, int limit, rp_db_pull **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = rp_db_prepare(
        db, "SELECT id, name, peer, request, state, started_at, finished_at, series_found,"
            " series_present, series_requested, series_ok, series_failed, series_left,"
            " instances_announced, instances_retrieved, last_status, reason FROM pulls"
            " WHERE ?1 IS NULL OR name = ?1 ORDER BY id DESC LIMIT ?2");
    if (!s)
        return RP_EDB;
    rp_db_bind_text_raw(s, 1, name);
    sqlite3_bind_int(s, 2, limit > 0 ? limit : -1);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (rp_db_grow((void **)out, &cap, *n, sizeof **out)) {
            rc = SQLITE_NOMEM;
            break;
        }
        rp_db_pull *p = &(*out)[(*n)++];
        memset(p, 0, sizeof *p);
        p->id = sqlite3_column_int64(s, 0);
        rp_db_col_text(s, 1, p->name, sizeof p->name);
        rp_db_col_text(s, 2, p->peer, sizeof p->peer);
        rp_db_col_text(s, 3, p->request, sizeof p->request);
        rp_db_col_text(s, 4, p->state, sizeof p->state);
        p->started_at = rp_db_col_real(s, 5, 0);
        p->finished_at = rp_db_col_real(s, 6, 0);
        p->series_found = (int)sqlite3_column_int(s, 7);
        p->series_present = (int)sqlite3_column_int(s, 8);
        p->series_requested = (int)sqlite3_column_int(s, 9);
        p->series_ok = (int)sqlite3_column_int(s, 10);
        p->series_failed = (int)sqlite3_column_int(s, 11);
        p->series_left = (int)sqlite3_column_int(s, 12);
        p->instances_announced = sqlite3_column_int64(s, 13);
        p->instances_retrieved = sqlite3_column_int64(s, 14);
        p->last_status = (int)rp_db_col_int(s, 15, -1);
        rp_db_col_text(s, 16, p->reason, sizeof p->reason);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        free(*out);
        *out = NULL;
        *n = 0;
        return rc == SQLITE_NOMEM ? RP_ENOMEM : rp_db_fail(db, "pulls list");
    }
    return 0;
}

int rp_db_pull_items_list(rp_db *db, long long pull_id, rp_db_pull_item **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = rp_db_prepare(
        db, "SELECT pi.id, pi.pull_fk, pi.study_uid, pi.series_uid, pi.modality, pi.description,"
            " pi.rule, pi.announced, pi.had, pi.state, pi.attempts, pi.completed, pi.failed,"
            " pi.warning, pi.status, pi.reason, pi.requested_at, pi.finished_at,"
            " pi.completed_at, pi.completed_reason, se.instance_count, se.state"
            " FROM pull_items pi LEFT JOIN series se ON se.series_uid = pi.series_uid"
            " WHERE pi.pull_fk = ?1 ORDER BY pi.id");
    if (!s)
        return RP_EDB;
    sqlite3_bind_int64(s, 1, pull_id);
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (rp_db_grow((void **)out, &cap, *n, sizeof **out)) {
            rc = SQLITE_NOMEM;
            break;
        }
        rp_db_pull_item *it = &(*out)[(*n)++];
        memset(it, 0, sizeof *it);
        it->id = sqlite3_column_int64(s, 0);
        it->pull_id = sqlite3_column_int64(s, 1);
        rp_db_col_text(s, 2, it->study_uid, sizeof it->study_uid);
        rp_db_col_text(s, 3, it->series_uid, sizeof it->series_uid);
        rp_db_col_text(s, 4, it->modality, sizeof it->modality);
        rp_db_col_text(s, 5, it->description, sizeof it->description);
        rp_db_col_text(s, 6, it->rule, sizeof it->rule);
        it->announced = sqlite3_column_int64(s, 7);
        it->had = sqlite3_column_int64(s, 8);
        rp_db_col_text(s, 9, it->state, sizeof it->state);
        it->attempts = sqlite3_column_int(s, 10);
        it->completed = (int)rp_db_col_int(s, 11, -1);
        it->failed = (int)rp_db_col_int(s, 12, -1);
        it->warning = (int)rp_db_col_int(s, 13, -1);
        it->status = (int)rp_db_col_int(s, 14, -1);
        rp_db_col_text(s, 15, it->reason, sizeof it->reason);
        it->requested_at = rp_db_col_real(s, 16, 0);
        it->finished_at = rp_db_col_real(s, 17, 0);
        it->completed_at = rp_db_col_real(s, 18, 0);
        rp_db_col_text(s, 19, it->completed_reason, sizeof it->completed_reason);
        it->received = rp_db_col_int(s, 20, 0);
        rp_db_col_text(s, 21, it->series_state, sizeof it->series_state);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        free(*out);
        *out = NULL;
        *n = 0;
        return rc == SQLITE_NOMEM ? RP_ENOMEM : rp_db_fail(db, "pull items list");
    }
    return 0;
}
