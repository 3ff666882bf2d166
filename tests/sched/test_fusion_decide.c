/* Unit tests for sched/fusion.c: study-level fusion decided from the index alone (no instance
 * file exists here): the series matched on what the index keeps of their first instance
 * (description or protocol name, TR/TE/TI), one 'fuse' job per set of member versions,
 * nothing decided while a series receives, a missing sequence reported once, and the operator
 * path (manual) leaving receiving series out. */
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
#include "conf/conf.h"
#include "db/db.h"
#include "sched/sched.h"

static char tmpdir[64], dbpath[128];
static rp_conf conf;

static const char ini[] = "[fusion t1fmap]\n"
                          "sequences = T1 FIELDMAP\n"
                          "[fusion t1t2]\n"
                          "sequences = T1 T2\n";

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rp_test_fuse_XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    char path[128], err[512];
    snprintf(path, sizeof path, "%s/fusion.ini", tmpdir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(ini, f);
    fclose(f);
    if (rp_conf_defaults(&conf) != 0 || rp_conf_load(&conf, path, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    snprintf(dbpath, sizeof dbpath, "%s/index.sqlite", tmpdir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rp_conf_free(&conf);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* One MR instance of series `series` with the header attributes a sequence is matched on.
 * file_path names a file that does not exist: the decision must not need it. */
static void add(rp_db *db, int series, int inst, const char *description, const char *protocol,
                double tr, double te, double ti)
{
    rp_instance_meta m;
    memset(&m, 0, sizeof m);
    snprintf(m.patient_id, sizeof m.patient_id, "P1");
    snprintf(m.study_uid, sizeof m.study_uid, "1.2.3.7");
    snprintf(m.series_uid, sizeof m.series_uid, "1.2.3.7.%d", series);
    snprintf(m.modality, sizeof m.modality, "MR");
    snprintf(m.series_description, sizeof m.series_description, "%s", description);
    snprintf(m.protocol_name, sizeof m.protocol_name, "%s", protocol);
    m.series_number = series;
    snprintf(m.sop_class_uid, sizeof m.sop_class_uid, "1.2.840.10008.5.1.4.1.1.4");
    snprintf(m.sop_instance_uid, sizeof m.sop_instance_uid, "1.2.3.7.%d.%d", series, inst);
    m.instance_number = inst;
    m.number_of_frames = 1;
    m.images_in_acquisition = m.number_of_temporal_positions = m.number_of_slices = -1;
    m.acquisition_number = -1;
    m.slice_thickness = 1;
    m.repetition_time = tr;
    m.echo_time = te;
    m.inversion_time = ti;
    snprintf(m.file_path, sizeof m.file_path, "nowhere/%d/%d.dcm", series, inst);
    snprintf(m.file_sha256, sizeof m.file_sha256, "%064d", series * 100 + inst);
    m.received_at = rp_now_s();
    assert_int_equal(rp_db_index_instances(db, &m, 1), 0);
}

static long long count(const char *sql)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open(dbpath, &h), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    long long v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(h);
    return v;
}

static void test_decide_from_index(void **state)
{
    (void)state;
    unlink(dbpath);
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(dbpath, &db), 0);
    /* an MPRAGE (its description empty: the protocol name says it), a field map, and a
     * localizer that matches neither */
    add(db, 5, 1, "", "t1_mprage_sag", 2300, 2.98, 900);
    add(db, 5, 2, "", "t1_mprage_sag", 2300, 2.98, 900);
    add(db, 9, 1, "gre_field_mapping", "", 488, 4.92, -1);
    add(db, 2, 1, "localizer", "", 8.6, 4.0, -1);

    /* every series still receiving: nothing decided */
    rp_fusion_check chk;
    assert_int_equal(rp_fusion_check_study(db, &conf, "1.2.3.7", NULL, 0, &chk), 0);
    assert_int_equal(chk.waiting, 2);
    assert_int_equal(chk.queued, 0);

    /* the study completes: the monitor's decision queues one job for t1fmap; t1t2 lacks T2 */
    long long job = 0;
    for (int s = 2; s <= 9; s++) {
        char uid[32];
        snprintf(uid, sizeof uid, "1.2.3.7.%d", s);
        int rc = rp_db_series_complete(db, uid, 0, RP_COMPLETED_QUIET, 3, &job);
        assert_true(rc == 0 || rc == RP_ENOENT);
    }
    rp_fusion_on_series_complete(db, &conf, "1.2.3.7.9");
    rp_db_job *jobs = NULL;
    size_t n = 0;
    assert_int_equal(rp_db_jobs_list(db, -1, "1.2.3.7", 0, &jobs, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(jobs[0].kind, RP_JOB_KIND_FUSE);
    assert_string_equal(jobs[0].rule, "t1fmap");
    assert_string_equal(jobs[0].study_uid, "1.2.3.7");
    assert_int_equal(jobs[0].version, 1);
    char members[256];
    assert_int_equal(rp_db_fusion_get(db, "1.2.3.7", "t1fmap", 1, members, sizeof members), 0);
    assert_string_equal(members, "T1=1.2.3.7.5@1;FIELDMAP=1.2.3.7.9@1");
    free(jobs);
    assert_int_equal(count("SELECT count(*) FROM events WHERE kind = 'fuse_missing'"
                           " AND detail LIKE '%rule=t1t2%missing=T2%'"),
                     1);

    /* the same situation again: no new job, no second report */
    assert_int_equal(rp_fusion_check_study(db, &conf, "1.2.3.7", NULL, 0, &chk), 0);
    assert_int_equal(chk.queued, 0);
    assert_int_equal(chk.already, 1);
    assert_int_equal(chk.missing, 1);
    assert_non_null(strstr(chk.reason, "missing sequence T2"));
    assert_int_equal(count("SELECT count(*) FROM events WHERE kind = 'fuse_missing'"), 1);

    /* a late field map instance reopens its series (version 2): automatic mode waits; the
     * operator's check leaves the receiving series out, so T1 alone cannot make a set */
    add(db, 9, 2, "gre_field_mapping", "", 488, 4.92, -1);
    assert_int_equal(rp_fusion_check_study(db, &conf, "1.2.3.7", "t1fmap", 0, &chk), 0);
    assert_int_equal(chk.waiting, 1);
    assert_int_equal(rp_fusion_check_study(db, &conf, "1.2.3.7", "t1fmap", 1, &chk), 0);
    assert_int_equal(chk.missing, 1);
    /* once complete again: a new set, version 2 */
    assert_int_equal(rp_db_series_complete(db, "1.2.3.7.9", 0, RP_COMPLETED_QUIET, 3, &job), 0);
    assert_int_equal(rp_fusion_check_study(db, &conf, "1.2.3.7", "t1fmap", 0, &chk), 0);
    assert_int_equal(chk.queued, 1);
    assert_int_equal(chk.last_version, 2);
    assert_int_equal(rp_db_fusion_get(db, "1.2.3.7", "t1fmap", 2, members, sizeof members), 0);
    assert_string_equal(members, "T1=1.2.3.7.5@1;FIELDMAP=1.2.3.7.9@2");

    /* unknown rule and unknown study are refused with a reason */
    assert_int_equal(rp_fusion_check_study(db, &conf, "1.2.3.7", "nope", 1, &chk), RP_ENOENT);
    assert_non_null(strstr(chk.reason, "no [fusion nope]"));
    assert_int_equal(rp_fusion_check_study(db, &conf, "9.9.9", NULL, 1, &chk), RP_ENOENT);
    assert_non_null(strstr(chk.reason, "not in the index"));
    rp_db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_decide_from_index)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
