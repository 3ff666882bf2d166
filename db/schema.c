/*
 * db/schema — opening the index: pragmas, the schema and its migrations, the statement
 * cache and the small helpers every db file uses.
 *
 * Migrations are a list of SQL steps; PRAGMA user_version says how many have been applied.
 * Each step runs inside one BEGIN IMMEDIATE transaction together with the version bump, so
 * two processes opening a new database at once cannot both migrate it. A database newer
 * than this program is refused rather than guessed at.
 */
#include "db/db_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Version 1: everything the node needs. Times are wall-clock seconds (REAL). Jobs and the
 * outbox reference series/instances by UID, not by row id, so that rebuilding the index
 * (rp_db_clear_index + reindex) never touches them. series_keep / instance_keep carry the
 * series state and the known instance checksums across such a rebuild. */
static const char schema_v1[] =
    "CREATE TABLE patients ("
    "  id INTEGER PRIMARY KEY,"
    "  patient_id TEXT NOT NULL DEFAULT '',"
    "  issuer TEXT NOT NULL DEFAULT '',"
    "  name TEXT, birth_date TEXT, sex TEXT,"
    "  UNIQUE (patient_id, issuer));"
    "CREATE TABLE studies ("
    "  id INTEGER PRIMARY KEY,"
    "  study_uid TEXT NOT NULL UNIQUE,"
    "  patient_fk INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,"
    "  date TEXT, time TEXT, accession TEXT, description TEXT);"
    "CREATE INDEX studies_patient ON studies(patient_fk);"
    "CREATE TABLE series ("
    "  id INTEGER PRIMARY KEY,"
    "  series_uid TEXT NOT NULL UNIQUE,"
    "  study_fk INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,"
    "  modality TEXT, number INTEGER, description TEXT, body_part TEXT,"
    "  frame_of_reference_uid TEXT, slice_thickness REAL,"
    "  first_seen REAL, last_seen REAL,"
    "  instance_count INTEGER NOT NULL DEFAULT 0,"
    "  expected_count INTEGER NOT NULL DEFAULT -1,"
    "  state TEXT NOT NULL DEFAULT 'receiving'"
    "    CHECK (state IN ('receiving','complete','processing','done','failed')),"
    "  version INTEGER NOT NULL DEFAULT 1,"
    "  completed_at REAL,"
    "  completed_reason TEXT CHECK (completed_reason IN ('quiet','expected_count','operator')),"
    "  processed_version INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX series_study ON series(study_fk);"
    "CREATE INDEX series_state ON series(state, last_seen);"
    "CREATE TABLE instances ("
    "  id INTEGER PRIMARY KEY,"
    "  sop_uid TEXT NOT NULL UNIQUE,"
    "  series_fk INTEGER NOT NULL REFERENCES series(id) ON DELETE CASCADE,"
    "  sop_class TEXT, instance_number INTEGER, number_of_frames INTEGER,"
    "  transfer_syntax TEXT, file_path TEXT NOT NULL, file_size INTEGER, sha256 TEXT,"
    "  calling_ae TEXT, peer_host TEXT, received_at REAL,"
    "  images_in_acquisition INTEGER, temporal_positions INTEGER, number_of_slices INTEGER,"
    "  acquisition_number INTEGER);"
    "CREATE INDEX instances_series ON instances(series_fk, instance_number);"
    "CREATE TABLE jobs ("
    "  id INTEGER PRIMARY KEY,"
    "  series_uid TEXT NOT NULL,"
    "  series_version INTEGER NOT NULL,"
    "  kind TEXT NOT NULL DEFAULT 'process',"
    "  state TEXT NOT NULL DEFAULT 'queued'"
    "    CHECK (state IN ('queued','running','done','failed','dead')),"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  max_attempts INTEGER NOT NULL DEFAULT 3,"
    "  created_at REAL NOT NULL, started_at REAL, finished_at REAL,"
    "  next_attempt_at REAL NOT NULL,"
    "  pid INTEGER, exit_status INTEGER, reason TEXT, output_dir TEXT,"
    "  UNIQUE (series_uid, series_version, kind));"
    "CREATE INDEX jobs_due ON jobs(state, next_attempt_at);"
    "CREATE TABLE outputs ("
    "  id INTEGER PRIMARY KEY,"
    "  job_fk INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,"
    "  kind TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT, created_at REAL NOT NULL,"
    "  UNIQUE (job_fk, path));"
    "CREATE TABLE outbox ("
    "  id INTEGER PRIMARY KEY,"
    "  sop_uid TEXT, file_path TEXT NOT NULL, destination TEXT NOT NULL,"
    "  state TEXT NOT NULL DEFAULT 'pending'"
    "    CHECK (state IN ('pending','sending','done','dead')),"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_attempt_at REAL NOT NULL,"
    "  last_status INTEGER, last_reason TEXT,"
    "  created_at REAL NOT NULL, updated_at REAL NOT NULL,"
    "  UNIQUE (file_path, destination));"
    "CREATE INDEX outbox_due ON outbox(state, destination, next_attempt_at);"
    "CREATE TABLE events ("
    "  id INTEGER PRIMARY KEY,"
    "  at REAL NOT NULL, kind TEXT NOT NULL, detail TEXT);"
    "CREATE INDEX events_kind ON events(kind, at);"
    "CREATE TABLE series_keep ("
    "  series_uid TEXT PRIMARY KEY, state TEXT, version INTEGER, completed_at REAL,"
    "  completed_reason TEXT, processed_version INTEGER, expected_count INTEGER);"
    "CREATE TABLE instance_keep (sop_uid TEXT PRIMARY KEY, sha256 TEXT);";

/* Version 2: a job is keyed by what it is. Version 1 keyed every job by (series_uid,
 * series_version, kind) and put a fusion job's study UID into series_uid with kind
 * "fuse:RULE"; now kind is 'process' or 'fuse', a fuse job names its study and rule in their
 * own columns, and `version` is the series version or the fusion set's version. The table is
 * rebuilt (SQLite cannot change constraints in place); rows keep their ids, so outputs and
 * fusion_sets still point at them. The jobs also get the executor's id of the running
 * attempt. fusion_sets, until now created on first use, becomes part of the schema, and
 * instances keep the header attributes a [fusion] rule matches a series on. */
static const char schema_v2[] =
    "CREATE TABLE jobs_v2 ("
    "  id INTEGER PRIMARY KEY,"
    "  kind TEXT NOT NULL DEFAULT 'process' CHECK (kind IN ('process','fuse')),"
    "  series_uid TEXT,"
    "  study_uid TEXT,"
    "  rule TEXT,"
    "  version INTEGER NOT NULL,"
    "  state TEXT NOT NULL DEFAULT 'queued'"
    "    CHECK (state IN ('queued','running','done','failed','dead')),"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  max_attempts INTEGER NOT NULL DEFAULT 3,"
    "  created_at REAL NOT NULL, started_at REAL, finished_at REAL,"
    "  next_attempt_at REAL NOT NULL,"
    "  pid INTEGER, exec_id TEXT, exit_status INTEGER, reason TEXT, output_dir TEXT,"
    "  CHECK (CASE kind WHEN 'process' THEN series_uid IS NOT NULL AND study_uid IS NULL"
    "         AND rule IS NULL ELSE series_uid IS NULL AND study_uid IS NOT NULL"
    "         AND rule IS NOT NULL END));"
    "INSERT INTO jobs_v2(id, kind, series_uid, study_uid, rule, version, state, attempts,"
    "  max_attempts, created_at, started_at, finished_at, next_attempt_at, pid, exec_id,"
    "  exit_status, reason, output_dir)"
    " SELECT id, CASE WHEN kind LIKE 'fuse:%' THEN 'fuse' ELSE 'process' END,"
    "  CASE WHEN kind LIKE 'fuse:%' THEN NULL ELSE series_uid END,"
    "  CASE WHEN kind LIKE 'fuse:%' THEN series_uid END,"
    "  CASE WHEN kind LIKE 'fuse:%' THEN substr(kind, 6) END,"
    "  series_version, state, attempts, max_attempts, created_at, started_at, finished_at,"
    "  next_attempt_at, pid, CASE WHEN pid > 0 THEN CAST(pid AS TEXT) END, exit_status,"
    "  reason, output_dir FROM jobs;"
    "DROP TABLE jobs;"
    "ALTER TABLE jobs_v2 RENAME TO jobs;"
    "CREATE UNIQUE INDEX jobs_series ON jobs(series_uid, version) WHERE kind = 'process';"
    "CREATE UNIQUE INDEX jobs_fusion ON jobs(study_uid, rule, version) WHERE kind = 'fuse';"
    "CREATE INDEX jobs_due ON jobs(state, next_attempt_at);"
    "CREATE TABLE IF NOT EXISTS fusion_sets ("
    "  id INTEGER PRIMARY KEY,"
    "  study_uid TEXT NOT NULL,"
    "  rule TEXT NOT NULL,"
    "  members TEXT NOT NULL," /* "T1=UID@V;..." or "missing:T2..." for a report */
    "  version INTEGER NOT NULL,"
    "  job_id INTEGER,"
    "  created_at REAL NOT NULL,"
    "  UNIQUE(study_uid, rule, members));"
    "ALTER TABLE instances ADD COLUMN protocol_name TEXT;"
    "ALTER TABLE instances ADD COLUMN repetition_time REAL;"
    "ALTER TABLE instances ADD COLUMN echo_time REAL;"
    "ALTER TABLE instances ADD COLUMN inversion_time REAL;";
/* Later steps live beside the code that uses their tables. */
extern const char rp_db_pulls_schema[]; /* db/pulls.c: pulls, pull_items */

/* Append new steps at the end; never edit a released one. */
static const char *const migrations[] = {
    schema_v1,
    schema_v2,
    rp_db_pulls_schema, /* v3 */
};
#define N_MIGRATIONS ((int)(sizeof migrations / sizeof migrations[0]))

/* The statement cache, indexed by rp_db_stmt_id. */
static const char *const stmt_sql[ST__COUNT] = {
    [ST_PATIENT_UPSERT] =
        "INSERT INTO patients(patient_id, issuer, name, birth_date, sex) VALUES(?1,?2,?3,?4,?5)"
        " ON CONFLICT(patient_id, issuer) DO UPDATE SET"
        " name = coalesce(excluded.name, name),"
        " birth_date = coalesce(excluded.birth_date, birth_date),"
        " sex = coalesce(excluded.sex, sex) RETURNING id",
    [ST_STUDY_UPSERT] =
        "INSERT INTO studies(study_uid, patient_fk, date, time, accession, description)"
        " VALUES(?1,?2,?3,?4,?5,?6) ON CONFLICT(study_uid) DO UPDATE SET"
        " patient_fk = excluded.patient_fk,"
        " date = coalesce(excluded.date, date), time = coalesce(excluded.time, time),"
        " accession = coalesce(excluded.accession, accession),"
        " description = coalesce(excluded.description, description) RETURNING id",
    [ST_SERIES_UPSERT] =
        "INSERT INTO series(series_uid, study_fk, modality, number, description, body_part,"
        " frame_of_reference_uid, slice_thickness, first_seen, last_seen, expected_count)"
        " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?9,?10) ON CONFLICT(series_uid) DO UPDATE SET"
        " study_fk = excluded.study_fk,"
        " modality = coalesce(excluded.modality, modality),"
        " number = coalesce(excluded.number, number),"
        " description = coalesce(excluded.description, description),"
        " body_part = coalesce(excluded.body_part, body_part),"
        " frame_of_reference_uid = coalesce(excluded.frame_of_reference_uid,"
        "   frame_of_reference_uid),"
        " slice_thickness = coalesce(excluded.slice_thickness, slice_thickness),"
        " first_seen = min(coalesce(first_seen, excluded.first_seen), excluded.first_seen),"
        " last_seen = max(coalesce(last_seen, excluded.last_seen), excluded.last_seen),"
        " expected_count = max(expected_count, excluded.expected_count)"
        " RETURNING id, instance_count",
    [ST_INSTANCE_INSERT] =
        "INSERT INTO instances(sop_uid, series_fk, sop_class, instance_number, number_of_frames,"
        " transfer_syntax, file_path, file_size, sha256, calling_ae, peer_host, received_at,"
        " images_in_acquisition, temporal_positions, number_of_slices, acquisition_number,"
        " protocol_name, repetition_time, echo_time, inversion_time)"
        " VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?19,?20)"
        " ON CONFLICT(sop_uid) DO NOTHING",
    [ST_INSTANCE_OLD] = "SELECT series_fk, sha256 FROM instances WHERE sop_uid = ?1",
    [ST_INSTANCE_UPDATE] =
        "UPDATE instances SET series_fk=?2, sop_class=?3, instance_number=?4,"
        " number_of_frames=?5, transfer_syntax=?6, file_path=?7, file_size=?8, sha256=?9,"
        " calling_ae=?10, peer_host=?11, received_at=?12, images_in_acquisition=?13,"
        " temporal_positions=?14, number_of_slices=?15, acquisition_number=?16,"
        " protocol_name=?17, repetition_time=?18, echo_time=?19, inversion_time=?20"
        " WHERE sop_uid = ?1",
    [ST_SERIES_COUNT_INC] = "UPDATE series SET instance_count = instance_count + 1 WHERE id = ?1",
    [ST_SERIES_RECOUNT] = "UPDATE series SET instance_count ="
                          " (SELECT count(*) FROM instances WHERE series_fk = ?1) WHERE id = ?1",
    [ST_SERIES_REOPEN] =
        "UPDATE series SET state = 'receiving', version = version + 1, completed_at = NULL,"
        " completed_reason = NULL WHERE id = ?1 AND state <> 'receiving'"
        " RETURNING series_uid, version",
    [ST_SERIES_KEEP_TAKE] =
        "DELETE FROM series_keep WHERE series_uid = ?1 RETURNING state, version, completed_at,"
        " completed_reason, processed_version, expected_count",
    [ST_SERIES_RESTORE] =
        "UPDATE series SET state = ?2, version = ?3, completed_at = ?4, completed_reason = ?5,"
        " processed_version = ?6, expected_count = max(expected_count, ?7) WHERE id = ?1",
    [ST_INSTANCE_KEPT] = "DELETE FROM instance_keep WHERE sop_uid = ?1 RETURNING sha256",
    [ST_INSTANCE_GET] = "SELECT " RP_DB_INSTANCE_COLUMNS " WHERE i.sop_uid = ?1",
    [ST_EVENT_ADD] = "INSERT INTO events(at, kind, detail) VALUES(?1, ?2, ?3)",
    [ST_BEGIN] = "BEGIN",
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
};

static _Thread_local char last_error[256];

const char *rp_db_errmsg(void)
{
    return last_error;
}

int rp_db_fail(rp_db *db, const char *what)
{
    const char *msg = db && db->h ? sqlite3_errmsg(db->h) : "no handle";
    snprintf(last_error, sizeof last_error, "%s: %s", what, msg);
    RP_ERROR("db", "%s failed db=%s error=\"%s\"", what, db ? db->path : "?", msg);
    return RP_EDB;
}

sqlite3_stmt *rp_db_stmt(rp_db *db, rp_db_stmt_id id)
{
    sqlite3_stmt *s = db->st[id];
    if (!s) {
        if (sqlite3_prepare_v3(db->h, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &db->st[id],
                               NULL) != SQLITE_OK) {
            rp_db_fail(db, "prepare");
            return NULL;
        }
        return db->st[id];
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

sqlite3_stmt *rp_db_prepare(rp_db *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(db->h, sql, -1, &s, NULL) != SQLITE_OK) {
        rp_db_fail(db, "prepare");
        return NULL;
    }
    return s;
}

int rp_db_exec(rp_db *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(last_error, sizeof last_error, "%s", msg ? msg : "?");
        RP_ERROR("db", "exec failed db=%s error=\"%s\"", db->path, msg ? msg : "?");
        sqlite3_free(msg);
        return RP_EDB;
    }
    return 0;
}

int rp_db_step_done(rp_db *db, sqlite3_stmt *s, const char *what)
{
    if (!s)
        return RP_EDB;
    int rc = sqlite3_step(s);
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(s);
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : rp_db_fail(db, what);
}

int rp_db_collect(rp_db *db, sqlite3_stmt *s, void **out, size_t *n, size_t elsize,
                  rp_db_read_fn read, const char *what)
{
    *out = NULL;
    *n = 0;
    if (!s)
        return RP_EDB;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (rp_db_grow(out, &cap, *n, elsize)) {
            rc = SQLITE_NOMEM;
            break;
        }
        void *e = (char *)*out + *n * elsize;
        memset(e, 0, elsize);
        read(s, e);
        (*n)++;
    }
    sqlite3_finalize(s);
    if (rc != SQLITE_DONE) {
        free(*out);
        *out = NULL;
        *n = 0;
        return rc == SQLITE_NOMEM ? RP_ENOMEM : rp_db_fail(db, what);
    }
    return 0;
}

static int step_done(rp_db *db, rp_db_stmt_id id, const char *what)
{
    sqlite3_stmt *s = rp_db_stmt(db, id);
    if (!s)
        return RP_EDB;
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : rp_db_fail(db, what);
}

int rp_db_begin_write(rp_db *db)
{
    return step_done(db, ST_BEGIN_IMMEDIATE, "begin");
}

int rp_db_commit(rp_db *db)
{
    int rc = step_done(db, ST_COMMIT, "commit");
    if (rc)
        rp_db_rollback(db);
    return rc;
}

void rp_db_rollback(rp_db *db)
{
    if (!sqlite3_get_autocommit(db->h)) {
        sqlite3_stmt *s = rp_db_stmt(db, ST_ROLLBACK);
        if (s) {
            sqlite3_step(s);
            sqlite3_reset(s);
        }
    }
}

void rp_db_bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v && *v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

void rp_db_bind_text_raw(sqlite3_stmt *s, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, i);
}

void rp_db_bind_int_opt(sqlite3_stmt *s, int i, long long v)
{
    if (v >= 0)
        sqlite3_bind_int64(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

void rp_db_bind_real_opt(sqlite3_stmt *s, int i, double v)
{
    if (v >= 0)
        sqlite3_bind_double(s, i, v);
    else
        sqlite3_bind_null(s, i);
}

void rp_db_col_text(sqlite3_stmt *s, int i, char *dst, size_t dstsz)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    rp_strlcpy(dst, t ? (const char *)t : "", dstsz);
}

long long rp_db_col_int(sqlite3_stmt *s, int i, long long dflt)
{
    return sqlite3_column_type(s, i) == SQLITE_NULL ? dflt : sqlite3_column_int64(s, i);
}

double rp_db_col_real(sqlite3_stmt *s, int i, double dflt)
{
    return sqlite3_column_type(s, i) == SQLITE_NULL ? dflt : sqlite3_column_double(s, i);
}

int rp_db_grow(void **arr, size_t *cap, size_t n, size_t elsize)
{
    if (n < *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, nc * elsize);
    if (!p)
        return RP_ENOMEM;
    *arr = p;
    *cap = nc;
    return 0;
}

double rp_db_backoff_s(int attempts, double base_s, double max_s)
{
    if (attempts < 1)
        return 0;
    if (attempts > 30)
        return max_s;
    double d = base_s;
    for (int i = 1; i < attempts && d < max_s; i++)
        d *= 2;
    return d < max_s ? d : max_s;
}

static int migrate(rp_db *db)
{
    int rc = rp_db_begin_write(db);
    if (rc)
        return rc;
    sqlite3_stmt *s = rp_db_prepare(db, "PRAGMA user_version");
    int version = -1;
    if (s && sqlite3_step(s) == SQLITE_ROW)
        version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    if (version < 0) {
        rp_db_rollback(db);
        return rp_db_fail(db, "read user_version");
    }
    if (version > N_MIGRATIONS) {
        rp_db_rollback(db);
        snprintf(last_error, sizeof last_error,
                 "schema version %d is newer than this radprep (supports %d)", version,
                 N_MIGRATIONS);
        RP_ERROR("db",
                 "database schema is newer than this radprep db=%s user_version=%d "
                 "supported=%d",
                 db->path, version, N_MIGRATIONS);
        return RP_EDB;
    }
    for (int v = version; v < N_MIGRATIONS; v++) {
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", v + 1);
        if (rp_db_exec(db, migrations[v]) || rp_db_exec(db, pragma)) {
            rp_db_rollback(db);
            return RP_EDB;
        }
        RP_INFO("db", "schema migrated db=%s from=%d to=%d", db->path, v, v + 1);
    }
    /* Foreign keys are off while migrating (a rebuilt table must not cascade-delete what
     * points at it), so check them before committing. */
    int bad = SQLITE_DONE;
    if (version < N_MIGRATIONS) {
        s = rp_db_prepare(db, "PRAGMA foreign_key_check");
        bad = s ? sqlite3_step(s) : SQLITE_ERROR;
        sqlite3_finalize(s);
    }
    if (bad != SQLITE_DONE) {
        rp_db_rollback(db);
        snprintf(last_error, sizeof last_error, "migration broke a foreign key");
        RP_ERROR("db", "migration left a dangling foreign key db=%s", db->path);
        return RP_EDB;
    }
    return rp_db_commit(db);
}

int rp_db_open(const char *path, rp_db **out)
{
    *out = NULL;
    rp_db *db = calloc(1, sizeof *db);
    if (!db)
        return RP_ENOMEM;
    rp_strlcpy(db->path, path, sizeof db->path);
    int rc = sqlite3_open_v2(
        path, &db->h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rp_db_fail(db, "open");
        rp_db_close(db);
        return RP_EDB;
    }
    sqlite3_busy_timeout(db->h, 5000);
    sqlite3_extended_result_codes(db->h, 1);
    /* journal_mode and foreign_keys cannot change inside a transaction; WAL is persistent
     * once set. Foreign keys go on after migrating: see migrate(). */
    if (rp_db_exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
                       " PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY;") ||
        migrate(db) || rp_db_exec(db, "PRAGMA foreign_keys = ON")) {
        rp_db_close(db);
        return RP_EDB;
    }
    db->ready = 1;
    *out = db;
    return 0;
}

void rp_db_close(rp_db *db)
{
    if (!db)
        return;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(db->st[i]);
    /* SQLite's advice for long-lived connections: refresh planner statistics where useful. */
    if (db->h && db->ready)
        sqlite3_exec(db->h, "PRAGMA optimize", NULL, NULL, NULL);
    if (db->h)
        sqlite3_close(db->h);
    free(db);
}
