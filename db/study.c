/* db/study — study-level queries and the fusion sets (which series versions one fused output
 * was made from). See the end of db/db.h.
 *
 * A fusion set is one row per (study, fusion rule, members), members being the canonical
 * text "T1=UID@VERSION;T2=UID@VERSION" of the chosen series versions. Each new set gets the
 * next version k of (study, rule) and a 'fuse' job (study, rule, k) in the same transaction;
 * the jobs table's unique key then makes every set run exactly once. A fuse job names no
 * series, so its transitions never touch a member series' state. */
#include "db/db.h"
#include "db/db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef char uid_text[RP_UID_MAX + 1];

static void read_uid(sqlite3_stmt *s, void *element)
{
    rp_db_col_text(s, 0, *(uid_text *)element, sizeof(uid_text));
}

int rp_db_study_series(rp_db *db, const char *study_uid, rp_db_series_info **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = rp_db_prepare(db, "SELECT se.series_uid FROM series se"
                                        " JOIN studies st ON st.id = se.study_fk"
                                        " WHERE st.study_uid = ?1"
                                        " ORDER BY se.number, se.series_uid");
    if (s)
        rp_db_bind_text(s, 1, study_uid);
    uid_text *uids = NULL;
    size_t cnt = 0;
    int rc = rp_db_collect(db, s, (void **)&uids, &cnt, sizeof *uids, read_uid, "study series");
    if (rc || cnt == 0)
        return rc;
    rp_db_series_info *v = calloc(cnt, sizeof *v);
    if (!v) {
        free(uids);
        return RP_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < cnt; i++)
        if (rp_db_series_get(db, uids[i], &v[k]) == 0)
            k++;
    free(uids);
    *out = v;
    *n = k;
    return 0;
}

/* Version and job of an existing (study, rule, members) row; RP_ENOENT when none. */
static int find_set(rp_db *db, const char *study_uid, const char *rule, const char *members,
                    int *version, long long *job_id)
{
    sqlite3_stmt *s = rp_db_prepare(db, "SELECT version, job_id FROM fusion_sets"
                                        " WHERE study_uid = ?1 AND rule = ?2 AND members = ?3");
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, study_uid);
    rp_db_bind_text(s, 2, rule);
    rp_db_bind_text(s, 3, members);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        if (version)
            *version = (int)rp_db_col_int(s, 0, 0);
        if (job_id)
            *job_id = rp_db_col_int(s, 1, 0);
    }
    sqlite3_finalize(s);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? RP_ENOENT : rp_db_fail(db, "fusion set");
}

static int insert_set(rp_db *db, const char *study_uid, const char *rule, const char *members,
                      int version, long long job_id)
{
    sqlite3_stmt *s = rp_db_prepare(db, "INSERT INTO fusion_sets(study_uid, rule, members,"
                                        " version, job_id, created_at)"
                                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, study_uid);
    rp_db_bind_text(s, 2, rule);
    rp_db_bind_text(s, 3, members);
    sqlite3_bind_int(s, 4, version);
    if (job_id > 0)
        sqlite3_bind_int64(s, 5, job_id);
    else
        sqlite3_bind_null(s, 5);
    sqlite3_bind_double(s, 6, rp_now_s());
    return rp_db_step_done(db, s, "fusion set insert");
}

int rp_db_fusion_enqueue(rp_db *db, const char *study_uid, const char *rule, const char *members,
                         int max_attempts, int *version, long long *job_id)
{
    if (!study_uid || !*study_uid || !rule || !*rule || !members || !*members)
        return RP_EINVAL;
    if (strlen(rule) > RP_DB_RULE_MAX)
        return RP_EINVAL;
    int rc;
    if ((rc = rp_db_begin_write(db)) != 0)
        return rc;
    int ver = 0;
    long long jid = 0;
    rc = find_set(db, study_uid, rule, members, &ver, &jid);
    if (rc == 0) {
        rp_db_rollback(db);
        if (version)
            *version = ver;
        if (job_id)
            *job_id = jid;
        return RP_EEXIST;
    }
    if (rc != RP_ENOENT)
        goto fail;
    sqlite3_stmt *s =
        rp_db_prepare(db, "SELECT COALESCE(MAX(version), 0) FROM fusion_sets"
                          " WHERE study_uid = ?1 AND rule = ?2 AND job_id IS NOT NULL");
    if (!s) {
        rc = RP_EDB;
        goto fail;
    }
    rp_db_bind_text(s, 1, study_uid);
    rp_db_bind_text(s, 2, rule);
    rc = sqlite3_step(s);
    ver = rc == SQLITE_ROW ? (int)rp_db_col_int(s, 0, 0) + 1 : 0;
    sqlite3_finalize(s);
    if (ver <= 0) {
        rc = rp_db_fail(db, "fusion version");
        goto fail;
    }
    /* An existing row (from a set this index forgot) is taken over. */
    rc = rp_db_job_insert_queued(db, RP_JOB_KIND_FUSE, study_uid, rule, ver, max_attempts, &jid);
    if (rc == RP_EEXIST)
        rc = 0;
    if (rc != 0)
        goto fail;
    if ((rc = insert_set(db, study_uid, rule, members, ver, jid)) != 0)
        goto fail;
    if ((rc = rp_db_commit(db)) != 0)
        return rc;
    if (version)
        *version = ver;
    if (job_id)
        *job_id = jid;
    return 0;
fail:
    rp_db_rollback(db);
    return rc;
}

int rp_db_fusion_get(rp_db *db, const char *study_uid, const char *rule, int version, char *members,
                     size_t members_sz)
{
    sqlite3_stmt *s = rp_db_prepare(db, "SELECT members FROM fusion_sets WHERE study_uid = ?1"
                                        " AND rule = ?2 AND version = ?3 AND job_id IS NOT NULL");
    if (!s)
        return RP_EDB;
    rp_db_bind_text(s, 1, study_uid);
    rp_db_bind_text(s, 2, rule);
    sqlite3_bind_int(s, 3, version);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        rp_db_col_text(s, 0, members, members_sz);
    sqlite3_finalize(s);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? RP_ENOENT : rp_db_fail(db, "fusion get");
}

int rp_db_fusion_report_once(rp_db *db, const char *study_uid, const char *rule, const char *what)
{
    int rc;
    if ((rc = rp_db_begin_write(db)) != 0)
        return rc;
    rc = find_set(db, study_uid, rule, what, NULL, NULL);
    if (rc == 0) {
        rp_db_rollback(db);
        return RP_EEXIST;
    }
    if (rc == RP_ENOENT)
        rc = insert_set(db, study_uid, rule, what, 0, 0);
    if (rc) {
        rp_db_rollback(db);
        return rc;
    }
    return rp_db_commit(db);
}
