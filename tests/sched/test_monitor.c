/* Unit tests for the completion monitor on a real SQLite index: quiet and expected-count
 * completion with their evidence, one job per version, reopen → version 2, "restart"
 * (a new handle, a later clock) resuming from the database alone, and the wake-up path (the
 * index queue's commit wakes the thread long before its poll interval). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "conf/conf.h"
#include "db/db.h"
#include "sched/sched.h"

static char tmpdir[256], dbpath[300];
static rp_conf conf;

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rp_test_mon_XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    if (rp_conf_defaults(&conf) != 0)
        return -1;
    /* CT: quiet 3 s with expected counts; MR: quiet 5 s, counts ignored */
    for (size_t i = 0; i < conf.n_completion; i++) {
        conf.completion[i].quiet_s = 3;
        conf.completion[i].use_expected_count = 1;
    }
    rp_conf_completion *mr = (rp_conf_completion *)rp_conf_completion_for(&conf, "MR");
    if (strcmp(mr->modality, "MR") == 0) {
        mr->quiet_s = 5;
        mr->use_expected_count = 0;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rp_conf_free(&conf);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static rp_db *fresh(const char *name)
{
    snprintf(dbpath, sizeof dbpath, "%s/%s.sqlite", tmpdir, name);
    unlink(dbpath);
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(dbpath, &db), 0);
    return db;
}

static void meta(rp_instance_meta *m, const char *modality, int series, int inst, double at)
{
    memset(m, 0, sizeof *m);
    snprintf(m->patient_id, sizeof m->patient_id, "P1");
    snprintf(m->study_uid, sizeof m->study_uid, "1.2.3.1");
    snprintf(m->series_uid, sizeof m->series_uid, "1.2.3.1.%d", series);
    snprintf(m->modality, sizeof m->modality, "%s", modality);
    snprintf(m->sop_class_uid, sizeof m->sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
    snprintf(m->sop_instance_uid, sizeof m->sop_instance_uid, "1.2.3.1.%d.%d", series, inst);
    snprintf(m->transfer_syntax_uid, sizeof m->transfer_syntax_uid, "1.2.840.10008.1.2.1");
    m->instance_number = inst;
    m->series_number = series;
    m->number_of_frames = 1;
    m->images_in_acquisition = -1;
    m->number_of_temporal_positions = -1;
    m->number_of_slices = -1;
    m->acquisition_number = 1;
    m->slice_thickness = -1;
    snprintf(m->file_path, sizeof m->file_path, "%s/%s/%s.dcm", m->study_uid, m->series_uid,
             m->sop_instance_uid);
    snprintf(m->file_sha256, sizeof m->file_sha256, "%064d", inst);
    m->received_at = at;
}

static void add(rp_db *db, const char *modality, int series, int first, int count, double at,
                int iia)
{
    for (int i = first; i < first + count; i++) {
        rp_instance_meta m;
        meta(&m, modality, series, i, at);
        m.images_in_acquisition = iia;
        assert_int_equal(rp_db_index_instances(db, &m, 1), 0);
    }
}

static size_t jobs_of(rp_db *db, const char *series_uid, rp_db_job **out)
{
    size_t n = 0;
    *out = NULL;
    assert_int_equal(rp_db_jobs_list(db, -1, series_uid, 0, out, &n), 0);
    return n;
}

static void test_quiet(void **state)
{
    (void)state;
    rp_db *db = fresh("quiet");
    double t = 2000000.0;
    add(db, "CT", 1, 1, 5, t, -1);
    int done = -1;
    double wait = -1;
    assert_int_equal(rp_monitor_pass(db, &conf, NULL, t + 1.0, &done, &wait), 0);
    assert_int_equal(done, 0);
    assert_true(wait > 1.9 && wait < 2.1);
    assert_int_equal(rp_monitor_pass(db, &conf, NULL, t + 3.1, &done, &wait), 0);
    assert_int_equal(done, 1);
    rp_db_series_info si;
    assert_int_equal(rp_db_series_get(db, "1.2.3.1.1", &si), 0);
    assert_int_equal(si.state, RP_SERIES_COMPLETE);
    assert_int_equal(si.completed_reason, RP_COMPLETED_QUIET);
    assert_int_equal(si.version, 1);
    /* a second pass (or a restart) completes nothing more and enqueues nothing more */
    assert_int_equal(rp_monitor_pass(db, &conf, NULL, t + 100, &done, &wait), 0);
    assert_int_equal(done, 0);
    rp_db_job *j;
    assert_int_equal(jobs_of(db, "1.2.3.1.1", &j), 1);
    assert_int_equal(j[0].version, 1);
    assert_int_equal(j[0].state, RP_JOB_QUEUED);
    free(j);
    rp_db_close(db);
}

static void test_expected_count(void **state)
{
    (void)state;
    rp_db *db = fresh("expected");
    double t = 2000000.0;
    add(db, "CT", 2, 1, 4, t, 5);
    int done = -1;
    assert_int_equal(rp_monitor_pass(db, &conf, NULL, t + 0.1, &done, NULL), 0);
    assert_int_equal(done, 0);
    add(db, "CT", 2, 5, 1, t + 0.1, 5);
    /* the fifth of five: complete at once, long before quiet */
    assert_int_equal(rp_monitor_pass(db, &conf, NULL, t + 0.2, &done, NULL), 0);
    assert_int_equal(done, 1);
    rp_db_series_info si;
    assert_int_equal(rp_db_series_get(db, "1.2.3.1.2", &si), 0);
    assert_int_equal(si.completed_reason, RP_COMPLETED_EXPECTED_COUNT);
    assert_int_equal(si.expected_count, 5);

    /* MR with counts switched off waits for its own quiet period (5 s) */
    add(db, "MR", 3, 1, 5, t, 5);
    assert_int_equal(rp_monitor_pass(db, &conf, NULL, t + 4.0, &done, NULL), 0);
    assert_int_equal(done, 0);
    assert_int_equal(rp_monitor_pass(db, &conf, NULL, t + 5.0, &done, NULL), 0);
    assert_int_equal(done, 1);
    assert_int_equal(rp_db_series_get(db, "1.2.3.1.3", &si), 0);
    assert_int_equal(si.completed_reason, RP_COMPLETED_QUIET);
    rp_db_close(db);
}

static void test_reopen_version2(void **state)
{
    (void)state;
    rp_db *db = fresh("reopen");
    double t = 2000000.0;
    add(db, "CT", 4, 1, 3, t, -1);
    int done = 0;
    assert_int_equal(rp_monitor_pass(db, &conf, NULL, t + 3.5, &done, NULL), 0);
    assert_int_equal(done, 1);
    /* a late instance reopens it as version 2 */
    add(db, "CT", 4, 4, 1, t + 10, -1);
    rp_db_series_info si;
    assert_int_equal(rp_db_series_get(db, "1.2.3.1.4", &si), 0);
    assert_int_equal(si.state, RP_SERIES_RECEIVING);
    assert_int_equal(si.version, 2);
    assert_int_equal(rp_monitor_pass(db, &conf, NULL, t + 11, &done, NULL), 0);
    assert_int_equal(done, 0);
    assert_int_equal(rp_monitor_pass(db, &conf, NULL, t + 13.5, &done, NULL), 0);
    assert_int_equal(done, 1);
    rp_db_job *j;
    assert_int_equal(jobs_of(db, "1.2.3.1.4", &j), 2);
    int v1 = 0, v2 = 0;
    for (int i = 0; i < 2; i++) {
        v1 += j[i].version == 1;
        v2 += j[i].version == 2;
    }
    assert_int_equal(v1, 1);
    assert_int_equal(v2, 1);
    free(j);
    rp_db_close(db);
}

static void test_restart_resumes(void **state)
{
    (void)state;
    rp_db *db = fresh("restart");
    double t = 2000000.0;
    add(db, "CT", 5, 1, 3, t, -1);      /* will have gone quiet while "down" */
    add(db, "CT", 6, 1, 3, t + 99, 10); /* half-received (3 of 10), still fresh */
    rp_db_close(db);
    /* the node restarts 100 s later: a new handle, nothing in memory */
    assert_int_equal(rp_db_open(dbpath, &db), 0);
    int done = 0;
    assert_int_equal(rp_monitor_pass(db, &conf, NULL, t + 100, &done, NULL), 0);
    assert_int_equal(done, 1);
    rp_db_series_info si;
    assert_int_equal(rp_db_series_get(db, "1.2.3.1.5", &si), 0);
    assert_int_equal(si.state, RP_SERIES_COMPLETE);
    assert_int_equal(rp_db_series_get(db, "1.2.3.1.6", &si), 0);
    assert_int_equal(si.state, RP_SERIES_RECEIVING);
    rp_db_close(db);
}

static void test_pending_notes(void **state)
{
    (void)state;
    /* An instance acknowledged at t+5 but not yet indexed holds the quiet completion that the
     * index alone (last_seen = t) would allow; once the index has it, or the note is old,
     * the decision is the index's again. */
    rp_db *db = fresh("notes");
    double t = 2000000.0;
    add(db, "CT", 8, 1, 3, t, -1);
    rp_completion_notes *notes = rp_completion_notes_new();
    assert_non_null(notes);
    rp_completion_notes_add(notes, "1.2.3.1.8", t + 5);
    rp_completion_notes_add(notes, "1.2.3.1.8", t + 4); /* older: ignored */
    assert_true(rp_completion_notes_pending(notes, "1.2.3.1.8", t, t + 5.1));
    assert_false(rp_completion_notes_pending(notes, "1.2.3.1.9", t, t + 5.1));
    int done = -1;
    double wait = 0;
    assert_int_equal(rp_monitor_pass(db, &conf, notes, t + 5.1, &done, &wait), 0);
    assert_int_equal(done, 0);
    assert_true(wait <= 0.05);
    /* the index catches up (last_seen = t + 5) */
    add(db, "CT", 8, 4, 1, t + 5, -1);
    assert_false(rp_completion_notes_pending(notes, "1.2.3.1.8", t + 5, t + 5.2));
    assert_int_equal(rp_monitor_pass(db, &conf, notes, t + 6, &done, NULL), 0);
    assert_int_equal(done, 0); /* now quiet counts from t + 5 */
    assert_int_equal(rp_monitor_pass(db, &conf, notes, t + 8.1, &done, NULL), 0);
    assert_int_equal(done, 1);
    rp_db_series_info si;
    assert_int_equal(rp_db_series_get(db, "1.2.3.1.8", &si), 0);
    assert_int_equal(si.instance_count, 4);
    /* a note the index never confirms stops holding after RP_NOTE_HOLD_S */
    add(db, "CT", 9, 1, 2, t, -1);
    rp_completion_notes_add(notes, "1.2.3.1.9", t + 1);
    assert_int_equal(rp_monitor_pass(db, &conf, notes, t + 1 + RP_NOTE_HOLD_S - 1, &done, NULL), 0);
    assert_int_equal(done, 0);
    assert_int_equal(rp_monitor_pass(db, &conf, notes, t + 1 + RP_NOTE_HOLD_S + 0.1, &done, NULL),
                     0);
    assert_int_equal(done, 1);
    rp_completion_notes_free(notes);
    rp_db_close(db);
}

static void test_thread(void **state)
{
    (void)state;
    /* The thread on its own handle: quiet 3 s of real time is too slow for a unit test, so
     * the instances are "received" 10 s ago and must complete on the first pass. */
    rp_db *db = fresh("thread");
    add(db, "CT", 7, 1, 2, rp_now_s() - 10, -1);
    rp_monitor *m = NULL;
    assert_int_equal(rp_monitor_start(&conf, dbpath, 0, NULL, NULL, &m), 0);
    rp_db_series_info si;
    int ok = 0;
    for (int i = 0; i < 100 && !ok; i++) {
        usleep(20000);
        assert_int_equal(rp_db_series_get(db, "1.2.3.1.7", &si), 0);
        ok = si.state == RP_SERIES_COMPLETE;
    }
    assert_true(ok);
    rp_monitor_wake(m);
    rp_monitor_stop(m);
    rp_db_close(db);
}

/* The hook radprepd wires (through rp_processing_indexed): a committed batch wakes the
 * monitor. */
static void wake_monitor(void *arg, size_t n)
{
    (void)n;
    rp_monitor_wake(arg);
}

static double wait_complete(rp_db *db, const char *uid, double secs)
{
    double t0 = rp_mono_s();
    rp_db_series_info si;
    while (rp_mono_s() - t0 < secs) {
        if (rp_db_series_get(db, uid, &si) == 0 && si.state == RP_SERIES_COMPLETE)
            return rp_mono_s() - t0;
        usleep(5000);
    }
    return -1;
}

static void test_wake_from_index_commit(void **state)
{
    (void)state;
    const double poll_s = 5.0;
    rp_db *db = fresh("wake");
    rp_monitor *m = NULL;
    assert_int_equal(rp_monitor_start(&conf, dbpath, poll_s, NULL, NULL, &m), 0);
    usleep(100000); /* its first pass has run: now it sleeps for poll_s unless woken */

    /* Not woken: a series whose expected count is reached waits for the next poll. */
    add(db, "CT", 21, 1, 3, rp_now_s(), 3);
    assert_true(wait_complete(db, "1.2.3.1.21", 0.5) < 0);

    /* Indexed through the queue, whose commit hook wakes the monitor: done at once. */
    rp_db_queue *q = NULL;
    assert_int_equal(rp_db_queue_start(dbpath, 64, 20, &q), 0);
    rp_db_queue_on_commit(q, wake_monitor, m);
    double t0 = rp_mono_s();
    for (int i = 1; i <= 4; i++) {
        rp_instance_meta mt;
        meta(&mt, "CT", 22, i, rp_now_s());
        mt.images_in_acquisition = 4;
        assert_int_equal(rp_db_queue_push(q, &mt), 0);
    }
    assert_int_equal(rp_db_queue_flush(q), 0);
    double latency = wait_complete(db, "1.2.3.1.22", poll_s);
    double since_push = rp_mono_s() - t0;
    print_message("completed %.3f s after the commit (%.3f s after the first push), poll %.1f s\n",
                  latency, since_push, poll_s);
    assert_true(latency >= 0 && latency < 0.5);
    /* the pass that woke for series 22 took series 21 along */
    assert_true(wait_complete(db, "1.2.3.1.21", 0.1) >= 0);
    /* the hook is gone once removed: nothing calls into a monitor about to stop */
    rp_db_queue_on_commit(q, NULL, NULL);
    rp_db_queue_stop(q);
    rp_monitor_stop(m);
    rp_db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quiet),           cmocka_unit_test(test_expected_count),
        cmocka_unit_test(test_reopen_version2), cmocka_unit_test(test_restart_resumes),
        cmocka_unit_test(test_pending_notes),   cmocka_unit_test(test_thread),
        cmocka_unit_test(test_wake_from_index_commit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
