/* Unit tests for db/study.c: study series listing, fusion sets (one job per member-version
 * set, versions counted per study and rule, idempotent), reports made once, and fusion jobs
 * never moving a member series' state. */
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
#include "db/db.h"

static char dbpath[128];

static rp_db *fresh(void)
{
    snprintf(dbpath, sizeof dbpath, "/tmp/rp_db_study_%d.sqlite", (int)getpid());
    unlink(dbpath);
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(dbpath, &db), 0);
    return db;
}

static void add_instance(rp_db *db, int series, int inst)
{
    rp_instance_meta m;
    memset(&m, 0, sizeof m);
    snprintf(m.patient_id, sizeof m.patient_id, "P1");
    snprintf(m.study_uid, sizeof m.study_uid, "1.2.3.1");
    snprintf(m.series_uid, sizeof m.series_uid, "1.2.3.1.%d", series);
    snprintf(m.modality, sizeof m.modality, "MR");
    m.series_number = series;
    snprintf(m.sop_class_uid, sizeof m.sop_class_uid, "1.2.840.10008.5.1.4.1.1.4");
    snprintf(m.sop_instance_uid, sizeof m.sop_instance_uid, "1.2.3.1.%d.%d", series, inst);
    m.instance_number = inst;
    m.number_of_frames = 1;
    m.images_in_acquisition = m.number_of_temporal_positions = m.number_of_slices = -1;
    m.slice_thickness = 1;
    snprintf(m.file_path, sizeof m.file_path, "x/%d/%d.dcm", series, inst);
    snprintf(m.file_sha256, sizeof m.file_sha256, "%064d", series * 100 + inst);
    m.received_at = 1000 + inst;
    assert_int_equal(rp_db_index_instances(db, &m, 1), 0);
}

static void test_fusion_sets(void **state)
{
    (void)state;
    rp_db *db = fresh();
    add_instance(db, 5, 1);
    add_instance(db, 3, 1);
    rp_db_series_info *s = NULL;
    size_t n = 0;
    assert_int_equal(rp_db_study_series(db, "1.2.3.1", &s, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(s[0].series_number, 3); /* by series number */
    free(s);
    assert_int_equal(rp_db_study_series(db, "9.9", &s, &n), 0);
    assert_int_equal(n, 0);

    int v = 0;
    long long job = 0, job2 = 0;
    const char *m1 = "T1=1.2.3.1.3@1;T2=1.2.3.1.5@1";
    assert_int_equal(rp_db_fusion_enqueue(db, "1.2.3.1", "brain", m1, 3, &v, &job), 0);
    assert_int_equal(v, 1);
    assert_true(job > 0);
    /* the same set again: nothing new */
    assert_int_equal(rp_db_fusion_enqueue(db, "1.2.3.1", "brain", m1, 3, &v, &job2), RP_EEXIST);
    assert_int_equal(v, 1);
    assert_int_equal(job2, job);
    rp_db_job j;
    assert_int_equal(rp_db_job_get(db, job, &j), 0);
    assert_int_equal(j.kind, RP_JOB_KIND_FUSE);
    assert_string_equal(j.rule, "brain");
    assert_string_equal(j.study_uid, "1.2.3.1");
    assert_string_equal(j.series_uid, "");
    assert_int_equal(j.version, 1);
    char members[256];
    assert_int_equal(rp_db_fusion_get(db, "1.2.3.1", "brain", 1, members, sizeof members), 0);
    assert_string_equal(members, m1);
    assert_int_equal(rp_db_fusion_get(db, "1.2.3.1", "brain", 2, members, sizeof members),
                     RP_ENOENT);
    /* another rule counts its own versions; a new member version is version 2 */
    assert_int_equal(rp_db_fusion_enqueue(db, "1.2.3.1", "other", m1, 3, &v, &job2), 0);
    assert_int_equal(v, 1);
    assert_int_equal(
        rp_db_fusion_enqueue(db, "1.2.3.1", "brain", "T1=1.2.3.1.3@1;T2=1.2.3.1.5@2", 3, &v, &job2),
        0);
    assert_int_equal(v, 2);
    assert_true(job2 != job);
    /* claiming and finishing a fusion job leaves the member series alone */
    rp_db_series_info before;
    assert_int_equal(rp_db_series_get(db, "1.2.3.1.3", &before), 0);
    rp_db_job claimed;
    assert_int_equal(rp_db_job_claim(db, rp_now_s() + 1, 0, &claimed), 0);
    assert_int_equal(rp_db_job_finish(db, claimed.id, 1, 0, "exit 0", 0, 0, 0, NULL), 0);
    rp_db_series_info after;
    assert_int_equal(rp_db_series_get(db, "1.2.3.1.3", &after), 0);
    assert_int_equal(before.state, after.state);
    assert_int_equal(before.version, after.version);
    /* a report is made once per situation */
    assert_int_equal(rp_db_fusion_report_once(db, "1.2.3.1", "brain", "missing:T2;present:"), 0);
    assert_int_equal(rp_db_fusion_report_once(db, "1.2.3.1", "brain", "missing:T2;present:"),
                     RP_EEXIST);
    /* ... and does not count as a version */
    assert_int_equal(
        rp_db_fusion_enqueue(db, "1.2.3.1", "brain", "T1=1.2.3.1.3@2;T2=1.2.3.1.5@2", 3, &v, &job2),
        0);
    assert_int_equal(v, 3);
    /* a rule name too long for the jobs' kind column is refused */
    assert_int_equal(
        rp_db_fusion_enqueue(db, "1.2.3.1", "abcdefghijklmnopqrstuvwxyz0123", m1, 3, &v, &job2),
        RP_EINVAL);
    rp_db_close(db);
    unlink(dbpath);
    char side[160];
    snprintf(side, sizeof side, "%s-wal", dbpath);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", dbpath);
    unlink(side);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fusion_sets)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
