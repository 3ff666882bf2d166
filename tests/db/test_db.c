/* Unit tests for db/: schema, index upserts, series versions, queue, jobs, outbox. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "db/db.h"

static char tmpdir[64];
static char dbpath[128];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rp_db_XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A fresh database file per test. */
static rp_db *fresh(const char *name)
{
    snprintf(dbpath, sizeof dbpath, "%s/%s.sqlite", tmpdir, name);
    unlink(dbpath);
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(dbpath, &db), 0);
    assert_non_null(db);
    return db;
}

static void make_meta(rp_instance_meta *m, int patient, int study, int series, int inst)
{
    memset(m, 0, sizeof *m);
    snprintf(m->patient_id, sizeof m->patient_id, "P%d", patient);
    snprintf(m->patient_name, sizeof m->patient_name, "Doe^John%d", patient);
    snprintf(m->study_uid, sizeof m->study_uid, "1.2.3.%d", study);
    snprintf(m->study_date, sizeof m->study_date, "20260101");
    snprintf(m->series_uid, sizeof m->series_uid, "1.2.3.%d.%d", study, series);
    snprintf(m->modality, sizeof m->modality, "CT");
    m->series_number = series;
    snprintf(m->sop_class_uid, sizeof m->sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
    snprintf(m->sop_instance_uid, sizeof m->sop_instance_uid, "1.2.3.%d.%d.%d", study, series,
             inst);
    snprintf(m->transfer_syntax_uid, sizeof m->transfer_syntax_uid, "1.2.840.10008.1.2.1");
    m->instance_number = inst;
    m->number_of_frames = 1;
    m->images_in_acquisition = -1;
    m->number_of_temporal_positions = -1;
    m->number_of_slices = -1;
    m->acquisition_number = 1;
    m->slice_thickness = 1.25;
    snprintf(m->file_path, sizeof m->file_path, "store/%s/%s/%s.dcm", m->study_uid, m->series_uid,
             m->sop_instance_uid);
    m->file_size = 1000 + inst;
    snprintf(m->file_sha256, sizeof m->file_sha256, "%064d", inst);
    snprintf(m->calling_ae, sizeof m->calling_ae, "CT1");
    snprintf(m->peer_host, sizeof m->peer_host, "127.0.0.1");
    m->received_at = 1000.0 + inst;
}

static long long scalar(const char *sql)
{
    sqlite3 *h;
    assert_int_equal(sqlite3_open(dbpath, &h), SQLITE_OK);
    sqlite3_stmt *s;
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    long long v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(h);
    return v;
}

static void test_migrate_and_reopen(void **state)
{
    (void)state;
    rp_db *db = fresh("migrate");
    rp_db_close(db);
    assert_int_equal(scalar("PRAGMA user_version"), 3); /* 3: pulls (db/pulls.c) */
    assert_int_equal(scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN"
                            " ('patients','studies','series','instances','jobs','outputs',"
                            "'outbox','events')"),
                     8);
    /* reopen: no migration again, data kept */
    assert_int_equal(rp_db_open(dbpath, &db), 0);
    assert_int_equal(rp_db_event_add(db, "test", "a=1"), 0);
    rp_db_close(db);
    assert_int_equal(rp_db_open(dbpath, &db), 0);
    rp_db_close(db);
    assert_int_equal(scalar("SELECT count(*) FROM events WHERE kind = 'test'"), 1);
    assert_int_equal(scalar("PRAGMA user_version"), 3); /* 3: pulls (db/pulls.c) */
    {
        sqlite3 *h;
        assert_int_equal(sqlite3_open(dbpath, &h), SQLITE_OK);
        sqlite3_stmt *s;
        sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &s, NULL);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
        sqlite3_finalize(s);
        /* a database from the future is refused */
        assert_int_equal(sqlite3_exec(h, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(h);
    }
    assert_int_equal(rp_db_open(dbpath, &db), RP_EDB);
    assert_null(db);
}

static void test_upsert_idempotent_and_counts(void **state)
{
    (void)state;
    rp_db *db = fresh("upsert");
    rp_instance_meta m[6];
    /* two patients, two studies, three series */
    make_meta(&m[0], 1, 1, 1, 1);
    make_meta(&m[1], 1, 1, 1, 2);
    make_meta(&m[2], 1, 1, 2, 1);
    make_meta(&m[3], 2, 2, 1, 1);
    make_meta(&m[4], 2, 2, 1, 2);
    make_meta(&m[5], 2, 2, 1, 3);
    assert_int_equal(rp_db_index_instances(db, m, 6), 0);
    assert_int_equal(rp_db_index_instances(db, m, 6), 0); /* again: idempotent */
    assert_int_equal(rp_db_index_instances(db, &m[1], 1), 0);
    rp_db_counts c;
    assert_int_equal(rp_db_counts_get(db, &c), 0);
    assert_int_equal(c.patients, 2);
    assert_int_equal(c.studies, 2);
    assert_int_equal(c.series, 3);
    assert_int_equal(c.instances, 6);
    assert_int_equal(c.bytes, 1001 + 1002 + 1001 + 1001 + 1002 + 1003);
    assert_int_equal(c.series_receiving, 3);
    rp_db_series_info si;
    assert_int_equal(rp_db_series_get(db, "1.2.3.2.1", &si), 0);
    assert_int_equal(si.instance_count, 3);
    assert_int_equal(si.version, 1);
    assert_int_equal(si.state, RP_SERIES_RECEIVING);
    assert_string_equal(si.modality, "CT");
    assert_string_equal(si.patient_id, "P2");
    assert_true(si.first_seen == 1001.0);
    assert_true(si.last_seen == 1003.0);
    assert_int_equal(rp_db_series_get(db, "9.9", &si), RP_ENOENT);
    /* instance lookup round trip */
    rp_instance_meta got;
    assert_int_equal(rp_db_instance_get(db, m[4].sop_instance_uid, &got), 0);
    assert_string_equal(got.series_uid, m[4].series_uid);
    assert_string_equal(got.file_path, m[4].file_path);
    assert_string_equal(got.file_sha256, m[4].file_sha256);
    assert_string_equal(got.patient_name, "Doe^John2");
    assert_int_equal(got.instance_number, 2);
    assert_int_equal(got.file_size, 1002);
    assert_true(got.slice_thickness == 1.25);
    assert_int_equal(rp_db_instance_get(db, "1.9.9", &got), RP_ENOENT);
    /* series instances ordered */
    rp_instance_meta *list;
    size_t n;
    assert_int_equal(rp_db_series_instances(db, "1.2.3.2.1", &list, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(list[0].instance_number, 1);
    assert_int_equal(list[2].instance_number, 3);
    free(list);
    /* delete one */
    assert_int_equal(rp_db_instance_delete(db, m[5].sop_instance_uid), 0);
    assert_int_equal(rp_db_instance_delete(db, m[5].sop_instance_uid), RP_ENOENT);
    assert_int_equal(rp_db_series_get(db, "1.2.3.2.1", &si), 0);
    assert_int_equal(si.instance_count, 2);
    /* a meta without UIDs is skipped, the rest committed */
    rp_instance_meta bad[2];
    make_meta(&bad[0], 3, 3, 1, 1);
    make_meta(&bad[1], 3, 3, 1, 2);
    bad[1].series_uid[0] = '\0';
    assert_int_equal(rp_db_index_instances(db, bad, 2), RP_EUID);
    assert_int_equal(rp_db_counts_get(db, &c), 0);
    assert_int_equal(c.instances, 6);
    rp_db_close(db);
}

static void test_late_instance_reopens(void **state)
{
    (void)state;
    rp_db *db = fresh("reopen");
    rp_instance_meta m[3];
    for (int i = 0; i < 3; i++)
        make_meta(&m[i], 1, 1, 1, i + 1);
    m[0].images_in_acquisition = 3;
    assert_int_equal(rp_db_index_instances(db, m, 2), 0);
    rp_db_series_info *recv;
    size_t n;
    assert_int_equal(rp_db_series_receiving(db, &recv, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(recv[0].expected_count, 3);
    assert_int_equal(recv[0].instance_count, 2);
    int v = recv[0].version;
    free(recv);
    long long job = 0, job2 = 0;
    assert_int_equal(rp_db_series_complete(db, "1.2.3.1.1", v, RP_COMPLETED_QUIET, 3, &job), 0);
    assert_true(job > 0);
    /* idempotent per version */
    assert_int_equal(rp_db_series_complete(db, "1.2.3.1.1", v, RP_COMPLETED_QUIET, 3, &job2), RP_EEXIST);
    assert_int_equal(job2, job);
    assert_int_equal(rp_db_series_receiving(db, &recv, &n), 0);
    assert_int_equal(n, 0);
    /* re-indexing a known instance does not reopen */
    assert_int_equal(rp_db_index_instances(db, m, 2), 0);
    rp_db_series_info si;
    assert_int_equal(rp_db_series_get(db, "1.2.3.1.1", &si), 0);
    assert_int_equal(si.state, RP_SERIES_COMPLETE);
    assert_int_equal(si.completed_reason, RP_COMPLETED_QUIET);
    assert_int_equal(si.version, 1);
    /* a late instance reopens with version 2 */
    assert_int_equal(rp_db_index_instances(db, &m[2], 1), 0);
    assert_int_equal(rp_db_series_get(db, "1.2.3.1.1", &si), 0);
    assert_int_equal(si.state, RP_SERIES_RECEIVING);
    assert_int_equal(si.version, 2);
    assert_int_equal(si.instance_count, 3);
    assert_true(si.completed_at == 0);
    assert_int_equal(scalar("SELECT count(*) FROM events WHERE kind = 'series_reopened'"), 1);
    /* completing with a stale version is refused */
    assert_int_equal(rp_db_series_complete(db, "1.2.3.1.1", 1, RP_COMPLETED_QUIET, 3, NULL), RP_EBUSY);
    assert_int_equal(rp_db_series_complete(db, "1.2.3.1.1", 0, RP_COMPLETED_EXPECTED_COUNT, 3, &job2),
                     0);
    assert_true(job2 != job);
    /* the old version's job is superseded when claimed: the new one runs */
    rp_db_job j;
    assert_int_equal(rp_db_job_claim(db, rp_now_s(), 42, &j), 0);
    assert_int_equal(j.id, job2);
    assert_int_equal(j.version, 2);
    rp_db_job old;
    assert_int_equal(rp_db_job_get(db, job, &old), 0);
    assert_int_equal(old.state, RP_JOB_DEAD);
    assert_non_null(strstr(old.reason, "superseded"));
    /* a changed file (same SOP UID, new checksum) reopens too */
    assert_int_equal(rp_db_job_finish(db, j.id, 1, 0, "ok", 0, 0, 0, NULL), 0);
    assert_int_equal(rp_db_series_get(db, "1.2.3.1.1", &si), 0);
    assert_int_equal(si.state, RP_SERIES_DONE);
    assert_int_equal(si.processed_version, 2);
    snprintf(m[1].file_sha256, sizeof m[1].file_sha256, "%064d", 77);
    assert_int_equal(rp_db_index_instances(db, &m[1], 1), 0);
    assert_int_equal(rp_db_series_get(db, "1.2.3.1.1", &si), 0);
    assert_int_equal(si.state, RP_SERIES_RECEIVING);
    assert_int_equal(si.version, 3);
    assert_int_equal(si.instance_count, 3);
    rp_db_close(db);
}

static void test_clear_index_keeps_state(void **state)
{
    (void)state;
    rp_db *db = fresh("clear");
    rp_instance_meta m[3];
    for (int i = 0; i < 3; i++)
        make_meta(&m[i], 1, 1, 1, i + 1);
    assert_int_equal(rp_db_index_instances(db, m, 3), 0);
    long long job;
    assert_int_equal(rp_db_series_complete(db, "1.2.3.1.1", 0, RP_COMPLETED_OPERATOR, 3, &job), 0);
    assert_int_equal(rp_db_clear_index(db), 0);
    rp_db_counts c;
    assert_int_equal(rp_db_counts_get(db, &c), 0);
    assert_int_equal(c.instances, 0);
    assert_int_equal(c.series, 0);
    assert_int_equal(c.jobs_queued, 1);
    /* the rebuild gives the series its state back and does not reopen it */
    assert_int_equal(rp_db_index_instances(db, m, 3), 0);
    rp_db_series_info si;
    assert_int_equal(rp_db_series_get(db, "1.2.3.1.1", &si), 0);
    assert_int_equal(si.state, RP_SERIES_COMPLETE);
    assert_int_equal(si.version, 1);
    assert_int_equal(si.instance_count, 3);
    /* the same rebuild without the saved state (an old index): the done job of version 1 is
     * not run twice, the series shows it as done */
    rp_db_job j;
    assert_int_equal(rp_db_job_claim(db, rp_now_s(), 1, &j), 0);
    assert_int_equal(rp_db_job_finish(db, j.id, 1, 0, NULL, 0, 0, 0, NULL), 0);
    assert_int_equal(rp_db_clear_index(db), 0);
    {
        sqlite3 *h;
        assert_int_equal(sqlite3_open(dbpath, &h), SQLITE_OK);
        assert_int_equal(
            sqlite3_exec(h, "DELETE FROM series_keep; DELETE FROM instance_keep", NULL, NULL, NULL),
            SQLITE_OK);
        sqlite3_close(h);
    }
    assert_int_equal(rp_db_index_instances(db, m, 3), 0);
    assert_int_equal(rp_db_series_get(db, "1.2.3.1.1", &si), 0);
    assert_int_equal(si.state, RP_SERIES_RECEIVING);
    long long job2;
    assert_int_equal(rp_db_series_complete(db, "1.2.3.1.1", 0, RP_COMPLETED_QUIET, 3, &job2), 0);
    assert_int_equal(job2, job);
    assert_int_equal(rp_db_series_get(db, "1.2.3.1.1", &si), 0);
    assert_int_equal(si.state, RP_SERIES_DONE);
    assert_int_equal(scalar("SELECT count(*) FROM jobs"), 1);
    rp_db_close(db);
}

typedef struct {
    rp_db_queue *q;
    int thread;
    int n;
} push_arg;

static void *pusher(void *arg)
{
    push_arg *a = arg;
    for (int i = 0; i < a->n; i++) {
        rp_instance_meta m;
        make_meta(&m, a->thread, a->thread, i % 7, i);
        if (rp_db_queue_push(a->q, &m) != 0)
            return (void *)1;
    }
    return NULL;
}

static void test_queue_threads(void **state)
{
    (void)state;
    rp_db *db = fresh("queue");
    rp_db_queue *q;
    assert_int_equal(rp_db_queue_start(dbpath, 64, 50, &q), 0);
    enum { THREADS = 4, PER = 2500 };
    pthread_t t[THREADS];
    push_arg a[THREADS];
    double t0 = rp_mono_s();
    for (int i = 0; i < THREADS; i++) {
        a[i] = (push_arg){q, i + 1, PER};
        assert_int_equal(pthread_create(&t[i], NULL, pusher, &a[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        assert_null(r);
    }
    double t_push = rp_mono_s() - t0;
    assert_int_equal(rp_db_queue_flush(q), 0);
    double t_all = rp_mono_s() - t0;
    rp_db_counts c;
    assert_int_equal(rp_db_counts_get(db, &c), 0);
    assert_int_equal(c.instances, THREADS * PER);
    assert_int_equal(c.series, THREADS * 7);
    print_message("queue: %d instances pushed in %.3f s, committed in %.3f s (%.0f/s)\n",
                  THREADS * PER, t_push, t_all, THREADS * PER / t_all);
    /* a partial batch is written after flush_ms without a flush */
    rp_instance_meta m;
    make_meta(&m, 9, 9, 1, 1);
    assert_int_equal(rp_db_queue_push(q, &m), 0);
    usleep(400 * 1000);
    assert_int_equal(rp_db_counts_get(db, &c), 0);
    assert_int_equal(c.instances, THREADS * PER + 1);
    /* stop flushes what is pending */
    make_meta(&m, 9, 9, 1, 2);
    assert_int_equal(rp_db_queue_push(q, &m), 0);
    rp_db_queue_stop(q);
    assert_int_equal(rp_db_counts_get(db, &c), 0);
    assert_int_equal(c.instances, THREADS * PER + 2);
    rp_db_close(db);
}

/* The writer never drops: while another process holds the write lock longer than the busy
 * timeout, batches fail and are retried until they commit. */
static void test_queue_survives_locked_db(void **state)
{
    (void)state;
    rp_db *db = fresh("locked");
    rp_db_queue *q;
    assert_int_equal(rp_db_queue_start(dbpath, 4, 20, &q), 0);
    sqlite3 *h;
    assert_int_equal(sqlite3_open(dbpath, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < 10; i++) {
        rp_instance_meta m;
        make_meta(&m, 1, 1, 1, i + 1);
        assert_int_equal(rp_db_queue_push(q, &m), 0);
    }
    sleep(6); /* > busy_timeout: the first attempt fails */
    rp_db_counts c;
    assert_int_equal(rp_db_counts_get(db, &c), 0);
    assert_int_equal(c.instances, 0);
    assert_int_equal(sqlite3_exec(h, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
    assert_int_equal(rp_db_queue_flush(q), 0);
    assert_int_equal(rp_db_counts_get(db, &c), 0);
    assert_int_equal(c.instances, 10);
    rp_db_series_info si;
    assert_int_equal(rp_db_series_get(db, "1.2.3.1.1", &si), 0);
    assert_int_equal(si.instance_count, 10);
    rp_db_queue_stop(q);
    rp_db_close(db);
}

static void test_jobs_state_machine(void **state)
{
    (void)state;
    rp_db *db = fresh("jobs");
    rp_instance_meta m;
    make_meta(&m, 1, 1, 1, 1);
    assert_int_equal(rp_db_index_instances(db, &m, 1), 0);
    long long id, id2;
    assert_int_equal(rp_db_series_complete(db, m.series_uid, 1, RP_COMPLETED_QUIET, 2, &id), 0);
    assert_int_equal(rp_db_job_enqueue(db, m.series_uid, 1, 2, &id2), RP_EEXIST);
    assert_int_equal(id2, id);
    assert_int_equal(scalar("SELECT count(*) FROM jobs"), 1);
    double now = rp_now_s();
    rp_db_job j;
    assert_int_equal(rp_db_job_claim(db, now, 0, &j), 0);
    assert_int_equal(j.id, id);
    assert_int_equal(j.state, RP_JOB_RUNNING);
    assert_int_equal(j.attempts, 1);
    assert_int_equal(rp_db_job_claim(db, now, 0, &j), RP_ENOENT); /* nothing else due */
    assert_int_equal(rp_db_job_set_running(db, id, 1234, "/out/x"), 0);
    rp_db_series_info si;
    assert_int_equal(rp_db_series_get(db, m.series_uid, &si), 0);
    assert_int_equal(si.state, RP_SERIES_PROCESSING);
    /* first failure: retry later with backoff */
    assert_int_equal(rp_db_job_finish(db, id, 0, 139, "crashed", 0, 10, 0, &j), 0);
    assert_int_equal(j.state, RP_JOB_FAILED);
    assert_int_equal(j.exit_status, 139);
    assert_string_equal(j.output_dir, "/out/x");
    assert_true(j.next_attempt_at >= now + 9.9 && j.next_attempt_at <= rp_now_s() + 10.1);
    assert_int_equal(rp_db_job_finish(db, id, 0, 1, "again", 0, 10, 0, NULL), RP_EINVAL);
    assert_int_equal(rp_db_job_claim(db, now, 0, &j), RP_ENOENT); /* not yet due */
    double due;
    assert_int_equal(rp_db_jobs_next_due(db, &due), 0);
    assert_true(due > now);
    assert_int_equal(rp_db_job_claim(db, now + 11, 99, &j), 0);
    assert_int_equal(j.attempts, 2);
    assert_int_equal(j.pid, 99);
    /* second failure: attempts exhausted -> dead, series failed */
    assert_int_equal(rp_db_job_finish(db, id, 0, 1, "bad input", 0, 10, 0, &j), 0);
    assert_int_equal(j.state, RP_JOB_DEAD);
    assert_int_equal(rp_db_series_get(db, m.series_uid, &si), 0);
    assert_int_equal(si.state, RP_SERIES_FAILED);
    /* operator reprocess resets it */
    assert_int_equal(rp_db_series_reprocess(db, m.series_uid, 3, &id2), 0);
    assert_int_equal(id2, id);
    assert_int_equal(rp_db_job_get(db, id, &j), 0);
    assert_int_equal(j.state, RP_JOB_QUEUED);
    assert_int_equal(j.attempts, 0);
    assert_int_equal(j.max_attempts, 3);
    assert_int_equal(rp_db_job_claim(db, rp_now_s(), 5, &j), 0);
    assert_int_equal(rp_db_series_reprocess(db, m.series_uid, 3, NULL), RP_EBUSY);
    /* outputs */
    assert_int_equal(rp_db_output_add(db, id, "nifti", "/out/x/a.nii.gz", "ab"), 0);
    assert_int_equal(rp_db_output_add(db, id, "json", "/out/x/a.json", NULL), 0);
    assert_int_equal(rp_db_output_add(db, id, "nifti", "/out/x/a.nii.gz", "cd"), 0);
    assert_int_equal(rp_db_output_add(db, 999, "nifti", "/x", NULL), RP_ENOENT);
    rp_db_output *outs;
    size_t n;
    assert_int_equal(rp_db_outputs_list(db, id, &outs, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(outs[0].sha256, "cd");
    free(outs);
    /* permanent failure is dead at once */
    assert_int_equal(rp_db_job_finish(db, id, 0, 2, "unsupported", 1, 10, 0, &j), 0);
    assert_int_equal(j.state, RP_JOB_DEAD);
    /* trigger on a complete series: RP_EEXIST */
    assert_int_equal(rp_db_series_complete(db, m.series_uid, 0, RP_COMPLETED_OPERATOR, 3, NULL),
                     RP_EEXIST);
    assert_int_equal(rp_db_series_complete(db, m.series_uid, 0, RP_COMPLETED_NONE, 3, NULL), RP_EINVAL);
    rp_db_job *list;
    assert_int_equal(rp_db_jobs_list(db, RP_JOB_DEAD, NULL, 0, &list, &n), 0);
    assert_int_equal(n, 1);
    free(list);
    rp_db_close(db);
}

static void test_requeue_running_at_start(void **state)
{
    (void)state;
    rp_db *db = fresh("requeue");
    rp_instance_meta m;
    long long ids[2];
    for (int i = 0; i < 2; i++) {
        make_meta(&m, 1, 1, i + 1, 1);
        assert_int_equal(rp_db_index_instances(db, &m, 1), 0);
        assert_int_equal(rp_db_series_complete(db, m.series_uid, 0, RP_COMPLETED_QUIET, 3, &ids[i]), 0);
    }
    rp_db_job j;
    assert_int_equal(rp_db_job_claim(db, rp_now_s(), 11, &j), 0);
    assert_int_equal(rp_db_job_claim(db, rp_now_s(), 12, &j), 0);
    rp_db_close(db); /* the node dies */
    assert_int_equal(rp_db_open(dbpath, &db), 0);
    long long n = 0;
    assert_int_equal(rp_db_jobs_requeue_running(db, 0, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(rp_db_job_get(db, ids[0], &j), 0);
    assert_int_equal(j.state, RP_JOB_QUEUED);
    assert_int_equal(j.attempts, 0);
    assert_int_equal(j.pid, 0);
    rp_db_series_info si;
    assert_int_equal(rp_db_series_get(db, m.series_uid, &si), 0);
    assert_int_equal(si.state, RP_SERIES_COMPLETE);
    assert_int_equal(rp_db_jobs_requeue_running(db, 0, &n), 0);
    assert_int_equal(n, 0);
    rp_db_close(db);
}

static void test_outbox(void **state)
{
    (void)state;
    rp_db *db = fresh("outbox");
    long long id, id2;
    assert_int_equal(rp_db_outbox_add(db, "1.2.9.1", "/d/a.dcm", "pacs", &id), 0);
    assert_int_equal(rp_db_outbox_add(db, "1.2.9.1", "/d/a.dcm", "pacs", &id2), RP_EEXIST);
    assert_int_equal(id2, id);
    assert_int_equal(rp_db_outbox_add(db, "1.2.9.2", "/d/b.dcm", "pacs", NULL), 0);
    assert_int_equal(rp_db_outbox_add(db, "1.2.9.1", "/d/a.dcm", "other", NULL), 0);
    rp_db_outbox_entry *e;
    size_t n;
    double now = rp_now_s();
    assert_int_equal(rp_db_outbox_claim(db, "pacs", now, 10, &e, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(e[0].state, RP_OUTBOX_SENDING);
    assert_int_equal(e[0].attempts, 1);
    free(e);
    assert_int_equal(rp_db_outbox_claim(db, "pacs", now, 10, &e, &n), RP_ENOENT);
    /* a ends done, b fails: backoff 10 s then 20 s, then dead at the 3rd attempt */
    long long b = 0;
    {
        rp_db_outbox_entry *l;
        size_t ln;
        assert_int_equal(rp_db_outbox_list(db, RP_OUTBOX_SENDING, "pacs", 0, &l, &ln), 0);
        assert_int_equal(ln, 2);
        b = strcmp(l[0].file_path, "/d/b.dcm") == 0 ? l[0].id : l[1].id;
        free(l);
    }
    assert_int_equal(rp_db_outbox_finish(db, id, 1, 0, NULL, 0, 10, 3), 0);
    assert_int_equal(rp_db_outbox_finish(db, b, 0, -1, "connection refused", 0, 10, 3), 0);
    double due;
    assert_int_equal(rp_db_outbox_next_due(db, "pacs", &due), 0);
    assert_true(due >= now + 9.9 && due <= rp_now_s() + 10.1);
    assert_int_equal(rp_db_outbox_claim(db, "pacs", now + 5, 10, &e, &n), RP_ENOENT);
    assert_int_equal(rp_db_outbox_claim(db, "pacs", now + 11, 10, &e, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(e[0].attempts, 2);
    free(e);
    assert_int_equal(rp_db_outbox_finish(db, b, 0, 0xA700, "out of resources", 0, 10, 3), 0);
    assert_int_equal(rp_db_outbox_next_due(db, "pacs", &due), 0);
    assert_true(due >= now + 19.9);
    assert_int_equal(rp_db_outbox_claim(db, "pacs", due + 1, 10, &e, &n), 0);
    free(e);
    assert_int_equal(rp_db_outbox_finish(db, b, 0, -1, "connection refused", 0, 10, 3), 0);
    assert_int_equal(rp_db_outbox_list(db, RP_OUTBOX_DEAD, NULL, 0, &e, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(e[0].last_reason, "connection refused");
    assert_int_equal(e[0].attempts, 3);
    free(e);
    assert_int_equal(rp_db_outbox_next_due(db, "pacs", &due), RP_ENOENT);
    rp_db_counts c;
    assert_int_equal(rp_db_counts_get(db, &c), 0);
    assert_int_equal(c.outbox_dead, 1);
    assert_int_equal(c.outbox_done, 1);
    assert_int_equal(c.outbox_pending, 1);
    /* permanent failure: dead at once */
    assert_int_equal(rp_db_outbox_claim(db, "other", now, 10, &e, &n), 0);
    long long o = e[0].id;
    free(e);
    assert_int_equal(rp_db_outbox_finish(db, o, 0, 0x0122, "SOP class not supported", 1, 10, 0), 0);
    /* `radprep send`: requeue dead entries of one destination */
    long long cnt;
    assert_int_equal(rp_db_outbox_requeue(db, RP_OUTBOX_DEAD, "pacs", 0, &cnt), 0);
    assert_int_equal(cnt, 1);
    assert_int_equal(rp_db_outbox_list(db, RP_OUTBOX_DEAD, NULL, 0, &e, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(e[0].destination, "other");
    free(e);
    assert_int_equal(rp_db_outbox_requeue(db, RP_OUTBOX_DONE, NULL, 0, &cnt), RP_EINVAL);
    rp_db_close(db);
}

static int count_rows(void *user, int ncol, const char *const *names, const char *const *vals,
                      const int *kinds)
{
    (void)kinds;
    (void)ncol;
    (void)names;
    (void)vals;
    (*(int *)user)++;
    return 0;
}

static int first_col(void *user, int ncol, const char *const *names, const char *const *vals,
                     const int *kinds)
{
    (void)kinds;
    (void)ncol;
    (void)names;
    snprintf(user, 128, "%s", vals[0] ? vals[0] : "(null)");
    return 1;
}

static void test_ls(void **state)
{
    (void)state;
    rp_db *db = fresh("ls");
    rp_instance_meta m[5];
    make_meta(&m[0], 1, 1, 1, 1);
    make_meta(&m[1], 1, 1, 2, 1);
    snprintf(m[1].modality, sizeof m[1].modality, "SR");
    make_meta(&m[2], 2, 2, 1, 1);
    make_meta(&m[3], 2, 2, 1, 2);
    make_meta(&m[4], 2, 3, 1, 1);
    assert_int_equal(rp_db_index_instances(db, m, 5), 0);
    assert_int_equal(rp_db_series_complete(db, m[1].series_uid, 0, RP_COMPLETED_OPERATOR, 1, NULL), 0);
    struct {
        const char *level;
        rp_db_filter f;
        int want;
    } cases[] = {
        {"patients", {NULL, NULL, NULL, NULL, 0, NULL}, 2},
        {"patients", {NULL, NULL, NULL, "SR", 0, NULL}, 1},
        {"studies", {NULL, NULL, NULL, NULL, 0, NULL}, 3},
        {"studies", {"P2", NULL, NULL, NULL, 0, NULL}, 2},
        {"studies", {NULL, NULL, NULL, NULL, 1, NULL}, 1},
        {"series", {NULL, NULL, NULL, NULL, 0, NULL}, 4},
        {"series", {NULL, "1.2.3.1", NULL, NULL, 0, NULL}, 2},
        {"series", {NULL, NULL, NULL, "CT", 0, NULL}, 3},
        {"instances", {NULL, NULL, "1.2.3.2.1", NULL, 0, NULL}, 2},
        {"instances", {"P1", NULL, NULL, NULL, 0, NULL}, 2},
        {"series", {NULL, NULL, NULL, NULL, 0, "complete"}, 1},
        {"studies", {NULL, NULL, NULL, NULL, 0, "complete"}, 1},
        {"patients", {NULL, NULL, NULL, NULL, 0, "complete"}, 1},
        {"instances", {NULL, NULL, NULL, NULL, 0, "complete"}, 1},
        {"series", {NULL, NULL, NULL, NULL, 0, "done"}, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rows = 0;
        assert_int_equal(rp_db_ls(db, cases[i].level, &cases[i].f, count_rows, &rows), 0);
        if (rows != cases[i].want)
            fail_msg("ls %s case %zu: %d rows, want %d", cases[i].level, i, rows, cases[i].want);
    }
    assert_int_equal(rp_db_ls(db, "bogus", NULL, count_rows, NULL), RP_EINVAL);
    char first[128];
    rp_db_filter f = {NULL, "1.2.3.1", NULL, NULL, 0, NULL};
    assert_int_equal(rp_db_ls(db, "studies", &f, first_col, first), 0);
    assert_string_equal(first, "1.2.3.1");
    assert_int_equal(rp_db_event_add(db, "association", "result=released calling_ae=CT1"), 0);
    assert_int_equal(rp_db_event_add(db, "association", "result=rejected calling_ae=X"), 0);
    assert_int_equal(rp_db_events_list(db, "association", 10, first_col, first), 0);
    rp_db_counts c;
    assert_int_equal(rp_db_counts_get(db, &c), 0);
    assert_int_equal(c.associations, 1);
    assert_int_equal(c.associations_refused, 1);
    long long pruned;
    assert_int_equal(rp_db_events_prune(db, rp_now_s() - 3600, &pruned), 0);
    assert_int_equal(pruned, 0);
    long long all = scalar("SELECT count(*) FROM events");
    assert_true(all >= 2);
    assert_int_equal(rp_db_events_prune(db, rp_now_s() + 1, &pruned), 0);
    assert_int_equal(pruned, all);
    assert_int_equal(scalar("SELECT count(*) FROM events"), 0);
    rp_db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_and_reopen),
        cmocka_unit_test(test_upsert_idempotent_and_counts),
        cmocka_unit_test(test_late_instance_reopens),
        cmocka_unit_test(test_clear_index_keeps_state),
        cmocka_unit_test(test_queue_threads),
        cmocka_unit_test(test_queue_survives_locked_db),
        cmocka_unit_test(test_jobs_state_machine),
        cmocka_unit_test(test_requeue_running_at_start),
        cmocka_unit_test(test_outbox),
        cmocka_unit_test(test_ls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
