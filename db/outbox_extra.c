/*
 * db/outbox_extra — added by H7 (outbox sender) next to H1's db/outbox.c: put a claimed
 * entry back to pending at a time the sender chooses.
 *
 * Why: the sender backs off per destination (2 s doubling to 10 min while a peer is down), so
 * every entry of that destination must become due when the destination's next try is, not on
 * a per-entry schedule. Attempts are kept (they count tries, `radprep outbox` shows them).
 */
#include "db/db_internal.h"

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
