/* Unit tests for db/schema.c migrations: an index written by schema version 1, where a fusion
 * job carried its study UID in series_uid and its rule in kind "fuse:RULE", opens as version
 * 2 with every job keyed by what it is, ids kept (outputs and fusion sets still point at their
 * jobs), and nothing else lost. Also the enum <-> text round trips of db/names.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "db/db.h"

/* Schema version 1 exactly as radprep 0.1 created it (db/schema.c, migration 1). */
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

/* What a version-1 node left behind: a done 'process' job with an output, two fusion jobs of
 * one study (one queued, one running when the node died), their fusion sets, a report. */
static const char rows_v1[] =
    "INSERT INTO patients(id, patient_id) VALUES (1, 'P1');"
    "INSERT INTO studies(id, study_uid, patient_fk) VALUES (1, '1.2.3.9', 1);"
    "INSERT INTO series(id, series_uid, study_fk, modality, state, version, instance_count)"
    " VALUES (1, '1.2.3.9.1', 1, 'MR', 'done', 1, 1);"
    "INSERT INTO instances(id, sop_uid, series_fk, file_path, instance_number)"
    " VALUES (1, '1.2.3.9.1.1', 1, 'x/1.dcm', 1);"
    "INSERT INTO jobs(id, series_uid, series_version, kind, state, attempts, max_attempts,"
    " created_at, next_attempt_at, output_dir) VALUES"
    " (5, '1.2.3.9.1', 1, 'process', 'done', 1, 3, 100, 100, '/out/s/v1'),"
    " (6, '1.2.3.9', 1, 'fuse:brain', 'queued', 0, 3, 200, 200, NULL),"
    " (7, '1.2.3.9', 2, 'fuse:brain', 'running', 1, 3, 300, 300, NULL);"
    "UPDATE jobs SET pid = 4242 WHERE id = 7;"
    "INSERT INTO outputs(job_fk, kind, path, sha256, created_at)"
    " VALUES (5, 'nifti', '/out/s/v1/a.nii.gz', 'ab', 150);"
    "CREATE TABLE fusion_sets (id INTEGER PRIMARY KEY, study_uid TEXT NOT NULL,"
    " rule TEXT NOT NULL, members TEXT NOT NULL, version INTEGER NOT NULL, job_id INTEGER,"
    " created_at REAL NOT NULL, UNIQUE(study_uid, rule, members));"
    "INSERT INTO fusion_sets(study_uid, rule, members, version, job_id, created_at) VALUES"
    " ('1.2.3.9', 'brain', 'T1=1.2.3.9.1@1;T2=1.2.3.9.2@1', 1, 6, 200),"
    " ('1.2.3.9', 'brain', 'T1=1.2.3.9.1@1;T2=1.2.3.9.2@2', 2, 7, 300),"
    " ('1.2.3.9', 'other', 'missing:T2;present:', 0, NULL, 310);"
    "PRAGMA user_version = 1;";

static char dbpath[128];

static void write_v1(void)
{
    snprintf(dbpath, sizeof dbpath, "/tmp/rp_db_migrate_%d.sqlite", (int)getpid());
    unlink(dbpath);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(dbpath, &h), SQLITE_OK);
    char *err = NULL;
    int rc = sqlite3_exec(h, "PRAGMA foreign_keys = ON;", NULL, NULL, &err);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(h, schema_v1, NULL, NULL, &err);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(h, rows_v1, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fprintf(stderr, "v1 fixture: %s\n", err ? err : "?");
    sqlite3_free(err);
    assert_int_equal(rc, SQLITE_OK);
    sqlite3_close(h);
}

static void remove_db(void)
{
    char p[160];
    unlink(dbpath);
    snprintf(p, sizeof p, "%s-wal", dbpath);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", dbpath);
    unlink(p);
}

static void test_migrate_fusion_rows(void **state)
{
    (void)state;
    write_v1();
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(dbpath, &db), 0);

    rp_db_job j;
    assert_int_equal(rp_db_job_get(db, 5, &j), 0);
    assert_int_equal(j.kind, RP_JOB_KIND_PROCESS);
    assert_string_equal(j.series_uid, "1.2.3.9.1");
    assert_string_equal(j.study_uid, "");
    assert_string_equal(j.rule, "");
    assert_int_equal(j.version, 1);
    assert_int_equal(j.state, RP_JOB_DONE);
    assert_string_equal(j.output_dir, "/out/s/v1");

    assert_int_equal(rp_db_job_get(db, 6, &j), 0);
    assert_int_equal(j.kind, RP_JOB_KIND_FUSE);
    assert_string_equal(j.series_uid, "");
    assert_string_equal(j.study_uid, "1.2.3.9");
    assert_string_equal(j.rule, "brain");
    assert_int_equal(j.version, 1);
    assert_int_equal(j.state, RP_JOB_QUEUED);
    assert_string_equal(rp_db_job_subject(&j), "1.2.3.9");

    /* the running one keeps its worker pid, now also as the executor's id */
    assert_int_equal(rp_db_job_get(db, 7, &j), 0);
    assert_int_equal(j.kind, RP_JOB_KIND_FUSE);
    assert_int_equal(j.version, 2);
    assert_int_equal(j.state, RP_JOB_RUNNING);
    assert_int_equal(j.pid, 4242);
    assert_string_equal(j.exec_id, "4242");

    /* outputs still belong to their job (the rebuilt table kept the ids, nothing cascaded) */
    rp_db_output *outs = NULL;
    size_t n = 0;
    assert_int_equal(rp_db_outputs_list(db, 5, &outs, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(outs[0].path, "/out/s/v1/a.nii.gz");
    free(outs);

    /* fusion sets and their jobs still answer: the same set again is the same job, a new
     * set is the next version, and a report is still made once */
    char members[256];
    assert_int_equal(rp_db_fusion_get(db, "1.2.3.9", "brain", 2, members, sizeof members), 0);
    assert_string_equal(members, "T1=1.2.3.9.1@1;T2=1.2.3.9.2@2");
    int v = 0;
    long long job = 0;
    assert_int_equal(rp_db_fusion_enqueue(db, "1.2.3.9", "brain", "T1=1.2.3.9.1@1;T2=1.2.3.9.2@1",
                                          3, &v, &job),
                     RP_EEXIST);
    assert_int_equal(v, 1);
    assert_int_equal(job, 6);
    assert_int_equal(rp_db_fusion_enqueue(db, "1.2.3.9", "brain", "T1=1.2.3.9.1@2;T2=1.2.3.9.2@2",
                                          3, &v, &job),
                     0);
    assert_int_equal(v, 3);
    assert_true(job > 7);
    assert_int_equal(rp_db_fusion_report_once(db, "1.2.3.9", "other", "missing:T2;present:"),
                     RP_EEXIST);

    /* the keys hold: one job per (series, version), listing by study finds the fusion jobs */
    long long id = 0;
    assert_int_equal(rp_db_job_enqueue(db, "1.2.3.9.1", 1, 3, &id), RP_EEXIST);
    assert_int_equal(id, 5);
    rp_db_job *list = NULL;
    assert_int_equal(rp_db_jobs_list(db, -1, "1.2.3.9", 0, &list, &n), 0);
    assert_int_equal(n, 3);
    free(list);

    /* the old worker's job goes back to the queue like any other */
    long long requeued = 0;
    assert_int_equal(rp_db_jobs_requeue_running(db, 7, &requeued), 0);
    assert_int_equal(requeued, 1);
    assert_int_equal(rp_db_job_get(db, 7, &j), 0);
    assert_int_equal(j.state, RP_JOB_QUEUED);
    assert_string_equal(j.exec_id, "");
    rp_db_close(db);

    /* opened again: no second migration, same rows */
    assert_int_equal(rp_db_open(dbpath, &db), 0);
    assert_int_equal(rp_db_job_get(db, 6, &j), 0);
    assert_string_equal(j.rule, "brain");
    rp_db_close(db);
    remove_db();
}

/* Every word maps to its enum and back; unknown words are refused. */
static void test_names_round_trip(void **state)
{
    (void)state;
    for (int i = RP_SERIES_RECEIVING; i <= RP_SERIES_FAILED; i++) {
        rp_series_state x = RP_SERIES_FAILED + 1;
        assert_int_equal(rp_series_state_parse(rp_series_state_name(i), &x), 0);
        assert_int_equal(x, i);
    }
    for (int i = RP_COMPLETED_NONE; i <= RP_COMPLETED_OPERATOR; i++) {
        rp_completed_reason x = RP_COMPLETED_OPERATOR + 1;
        assert_int_equal(rp_completed_reason_parse(rp_completed_reason_name(i), &x), 0);
        assert_int_equal(x, i);
    }
    for (int i = RP_JOB_KIND_PROCESS; i <= RP_JOB_KIND_FUSE; i++) {
        rp_job_kind x = RP_JOB_KIND_FUSE + 1;
        assert_int_equal(rp_job_kind_parse(rp_job_kind_name(i), &x), 0);
        assert_int_equal(x, i);
    }
    for (int i = RP_JOB_QUEUED; i <= RP_JOB_DEAD; i++) {
        rp_job_state x = RP_JOB_DEAD + 1;
        assert_int_equal(rp_job_state_parse(rp_job_state_name(i), &x), 0);
        assert_int_equal(x, i);
    }
    for (int i = RP_OUTBOX_PENDING; i <= RP_OUTBOX_DEAD; i++) {
        rp_outbox_state x = RP_OUTBOX_DEAD + 1;
        assert_int_equal(rp_outbox_state_parse(rp_outbox_state_name(i), &x), 0);
        assert_int_equal(x, i);
    }
    /* the words the SQL and the CLI use */
    assert_string_equal(rp_job_state_name(RP_JOB_FAILED), "failed");
    assert_string_equal(rp_series_state_name(RP_SERIES_PROCESSING), "processing");
    assert_string_equal(rp_completed_reason_name(RP_COMPLETED_EXPECTED_COUNT), "expected_count");
    assert_string_equal(rp_job_kind_name(RP_JOB_KIND_FUSE), "fuse");
    assert_string_equal(rp_outbox_state_name(RP_OUTBOX_SENDING), "sending");
    rp_job_state js = RP_JOB_DONE;
    assert_int_equal(rp_job_state_parse("bogus", &js), RP_EINVAL);
    assert_int_equal(js, RP_JOB_DONE); /* untouched on error */
    assert_int_equal(rp_job_state_parse(NULL, &js), RP_EINVAL);
    assert_int_equal(rp_job_state_parse("Queued", &js), RP_EINVAL); /* exact words only */
    assert_string_equal(rp_job_state_name((rp_job_state)42), "?");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_fusion_rows),
        cmocka_unit_test(test_names_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
