/*
 * db/outbox — derived instances waiting to be sent to a destination peer.
 *
 * An entry moves pending → sending (claimed by the sender) → done, or back to pending with an
 * exponential backoff, or to dead with the reason. Entries are never deleted by the node, so
 * nothing is dropped silently; `radprep send` re-queues dead entries.
 */
#include "db/db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUTBOX_COLUMNS                                                                             \
    "id, sop_uid, file_path, destination, state, attempts, next_attempt_at, last_status,"          \
    " last_reason, created_at, updated_at"

static void read_entry(sqlite3_stmt *s, void *element)
{
    rp_db_outbox_entry *e = element;
    e->id = sqlite3_column_int64(s, 0);
    rp_db_col_text(s, 1, e->sop_uid, sizeof e->sop_uid);
    rp_db_col_text(s, 2, e->file_path, sizeof e->file_path);
    rp_db_col_text(s, 3, e->destination, sizeof e->destination);
    e->state = rp_db_col_enum(s, 4, RP_DB_WORDS_OUTBOX_STATE, RP_OUTBOX_DEAD);
    e->attempts = (int)rp_db_col_int(s, 5, 0);
    e->next_attempt_at = rp_db_col_real(s, 6, 0);
    e->last_status = (int)rp_db_col_int(s, 7, -1);
    rp_db_col_text(s, 8, e->last_reason, sizeof e->last_reason);
    e->created_at = rp_db_col_real(s, 9, 0);
    e->updated_at = rp_db_col_real(s, 10, 0);
}

static int collect(rp_db *db, sqlite3_stmt *s, rp_db_outbox_entry **out, size_t *n,
                   const char *what)
{
    return rp_db_collect(db, s, (void **)out, n, sizeof **out, read_entry, what);
}

int rp_db_outbox_add(rp_db *db, const char *sop_uid, const char *file_path, const char *destination,
                     long long *id)
{
    if (!file_path || !*file_path || !destination || !*destination)
        return RP_EINVAL;
    double now = rp_now_s();
    sqlite3_stmt *s = rp_db_prepare(
        db, "INSERT INTO outbox(sop_uid, file_path, destination, state, attempts,"
            " next_attempt_at, created_at, updated_at) VALUES(?1, ?2, ?3, 'pending', 0, ?4, ?4, ?4)"
            " ON CONFLICT(file_path, destination) DO NOTHING");
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, sop_uid);
    rp_db_bind_text(s, 2, file_path);
    rp_db_bind_text(s, 3, destination);
    sqlite3_bind_double(s, 4, now);
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return rp_db_fail(db, "outbox add");
    if (sqlite3_changes(db->h) == 1) {
        if (id)
            *id = sqlite3_last_insert_rowid(db->h);
        return 0;
    }
    s = rp_db_prepare(db, "SELECT id FROM outbox WHERE file_path = ?1 AND destination = ?2");
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, file_path);
    rp_db_bind_text(s, 2, destination);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW && id)
        *id = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? RP_EEXIST : rp_db_fail(db, "outbox add");
}

int rp_db_outbox_claim(rp_db *db, const char *destination, double now, int max,
                       rp_db_outbox_entry **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int rc = rp_db_begin_write(db);
    if (rc)
        return rc;
    sqlite3_stmt *s = rp_db_prepare(
        db, "UPDATE outbox SET state = 'sending', attempts = attempts + 1, updated_at = ?2"
            " WHERE id IN (SELECT id FROM outbox WHERE state = 'pending'"
            " AND (?1 IS NULL OR destination = ?1) AND next_attempt_at <= ?2"
            " ORDER BY next_attempt_at, id LIMIT ?3) RETURNING " OUTBOX_COLUMNS);
    if (!s) {
        rp_db_rollback(db);
        return RP_EDB;
    }
    rp_db_bind_text(s, 1, destination);
    sqlite3_bind_double(s, 2, now);
    sqlite3_bind_int(s, 3, max > 0 ? max : 1);
    if ((rc = collect(db, s, out, n, "outbox claim"))) {
        rp_db_rollback(db);
        return rc;
    }
    if ((rc = rp_db_commit(db))) {
        free(*out);
        *out = NULL;
        *n = 0;
        return rc;
    }
    return *n ? 0 : RP_ENOENT;
}

int rp_db_outbox_finish(rp_db *db, long long id, int ok, int dimse_status, const char *reason,
                        int permanent, double base_delay_s, int max_attempts)
{
    int rc = rp_db_begin_write(db);
    if (rc)
        return rc;
    sqlite3_stmt *s = rp_db_prepare(db, "SELECT attempts, destination, sop_uid"
                                        " FROM outbox WHERE id = ?1");
    if (!s) {
        rp_db_rollback(db);
        return RP_EDB;
    }
    sqlite3_bind_int64(s, 1, id);
    rc = sqlite3_step(s);
    int attempts = 0;
    char dest[64] = "", sop[RP_UID_MAX + 1] = "";
    if (rc == SQLITE_ROW) {
        attempts = sqlite3_column_int(s, 0);
        rp_db_col_text(s, 1, dest, sizeof dest);
        rp_db_col_text(s, 2, sop, sizeof sop);
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW) {
        rp_db_rollback(db);
        return rc == SQLITE_DONE ? RP_ENOENT : rp_db_fail(db, "outbox finish");
    }
    double now = rp_now_s();
    rp_outbox_state state;
    double next = now;
    if (ok) {
        state = RP_OUTBOX_DONE;
    } else if (permanent || (max_attempts > 0 && attempts >= max_attempts)) {
        state = RP_OUTBOX_DEAD;
    } else {
        state = RP_OUTBOX_PENDING;
        next = now + rp_db_backoff_s(attempts, base_delay_s > 0 ? base_delay_s : 10, 3600);
    }
    s = rp_db_prepare(db, "UPDATE outbox SET state = ?2, next_attempt_at = ?3, last_status = ?4,"
                          " last_reason = ?5, updated_at = ?6 WHERE id = ?1");
    if (!s) {
        rp_db_rollback(db);
        return RP_EDB;
    }
    sqlite3_bind_int64(s, 1, id);
    rp_db_bind_text(s, 2, rp_outbox_state_name(state));
    sqlite3_bind_double(s, 3, next);
    if (dimse_status >= 0)
        sqlite3_bind_int(s, 4, dimse_status);
    else
        sqlite3_bind_null(s, 4);
    rp_db_bind_text(s, 5, reason);
    sqlite3_bind_double(s, 6, now);
    rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        rp_db_rollback(db);
        return rp_db_fail(db, "outbox finish");
    }
    if (state == RP_OUTBOX_DEAD) {
        char detail[512], q[300];
        snprintf(detail, sizeof detail,
                 "outbox_id=%lld destination=%s sop_uid=%s attempts=%d "
                 "status=0x%04x reason=%s",
                 id, dest, sop, attempts, dimse_status >= 0 ? (unsigned)dimse_status : 0xffffu,
                 rp_log_kv_quote(reason ? reason : "", q, sizeof q));
        rp_db_event_add(db, "outbox_dead", detail);
        RP_WARN("db", "outbox entry dead %s", detail);
    }
    return rp_db_commit(db);
}

int rp_db_outbox_requeue(rp_db *db, int state, const char *destination, long long id,
                         long long *n)
{
    if (n)
        *n = 0;
    if (state != -1 && state != RP_OUTBOX_DEAD && state != RP_OUTBOX_SENDING &&
        state != RP_OUTBOX_PENDING)
        return RP_EINVAL;
    sqlite3_stmt *s = rp_db_prepare(
        db, "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?4,"
            " updated_at = ?4 WHERE (CASE WHEN ?1 IS NULL THEN state IN ('dead','pending')"
            " ELSE state = ?1 END) AND (?2 IS NULL OR destination = ?2)"
            " AND (?3 <= 0 OR id = ?3)");
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, state >= 0 ? rp_outbox_state_name((rp_outbox_state)state) : NULL);
    rp_db_bind_text(s, 2, destination);
    sqlite3_bind_int64(s, 3, id);
    sqlite3_bind_double(s, 4, rp_now_s());
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return rp_db_fail(db, "outbox requeue");
    if (n)
        *n = sqlite3_changes(db->h);
    return 0;
}

int rp_db_outbox_list(rp_db *db, int state, const char *destination, int limit,
                      rp_db_outbox_entry **out, size_t *n)
{
    sqlite3_stmt *s = rp_db_prepare(db, "SELECT " OUTBOX_COLUMNS " FROM outbox"
                                        " WHERE (?1 IS NULL OR state = ?1)"
                                        " AND (?2 IS NULL OR destination = ?2)"
                                        " ORDER BY id DESC LIMIT ?3");
    if (s) {
        rp_db_bind_text(s, 1, state >= 0 ? rp_outbox_state_name((rp_outbox_state)state) : NULL);
        rp_db_bind_text(s, 2, destination);
        sqlite3_bind_int(s, 3, limit > 0 ? limit : -1);
    }
    return collect(db, s, out, n, "outbox list");
}

int rp_db_outbox_next_due(rp_db *db, const char *destination, double *when)
{
    sqlite3_stmt *s = rp_db_prepare(db, "SELECT min(next_attempt_at) FROM outbox"
                                        " WHERE state = 'pending'"
                                        " AND (?1 IS NULL OR destination = ?1)");
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, destination);
    int rc = sqlite3_step(s);
    int found = rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL;
    if (found)
        *when = sqlite3_column_double(s, 0);
    sqlite3_finalize(s);
    if (rc != SQLITE_ROW)
        return rp_db_fail(db, "outbox next due");
    return found ? 0 : RP_ENOENT;
}

int rp_db_outbox_retry_at(rp_db *db, long long id, int dimse_status, const char *reason,
                          double next_attempt_at)
{
    sqlite3_stmt *s = rp_db_prepare(db, "UPDATE outbox SET state = 'pending', next_attempt_at = ?2,"
                                        " last_status = ?3, last_reason = ?4, updated_at = ?5"
                                        " WHERE id = ?1 AND state IN ('sending', 'pending')");
    if (!s)
        return RP_EDB;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_double(s, 2, next_attempt_at);
    if (dimse_status >= 0)
        sqlite3_bind_int(s, 3, dimse_status);
    else
        sqlite3_bind_null(s, 3);
    rp_db_bind_text(s, 4, reason);
    sqlite3_bind_double(s, 5, rp_now_s());
    int rc = sqlite3_step(s);
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE)
        return rp_db_fail(db, "outbox retry_at");
    return sqlite3_changes(db->h) ? 0 : RP_ENOENT;
}
