/* Unit tests for db/curate.c: which version of each series `radprep curate` takes. */
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

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rp_dbcur_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void add_instance(rp_db *db, int series, const char *modality, int inst)
{
    rp_instance_meta m;
    memset(&m, 0, sizeof m);
    snprintf(m.patient_id, sizeof m.patient_id, "P1");
    snprintf(m.study_uid, sizeof m.study_uid, "1.2.9.1");
    snprintf(m.series_uid, sizeof m.series_uid, "1.2.9.1.%d", series);
    snprintf(m.modality, sizeof m.modality, "%s", modality);
    snprintf(m.sop_class_uid, sizeof m.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
    snprintf(m.sop_instance_uid, sizeof m.sop_instance_uid, "1.2.9.1.%d.%d", series, inst);
    snprintf(m.file_path, sizeof m.file_path, "store/%s.dcm", m.sop_instance_uid);
    snprintf(m.file_sha256, sizeof m.file_sha256, "%064d", inst);
    m.series_number = series;
    m.instance_number = inst;
    m.number_of_frames = 1;
    m.images_in_acquisition = m.number_of_temporal_positions = m.number_of_slices = -1;
    m.acquisition_number = 1;
    m.slice_thickness = 1;
    m.received_at = 1000.0 + inst;
    assert_int_equal(rp_db_index_instances(db, &m, 1), 0);
}

/* Complete the series' current version and run its job to the end: ok (done, with
 * output_dir when given) or failed for good. */
static void run_version(rp_db *db, int series, int ok, const char *output_dir)
{
    char uid[64];
    snprintf(uid, sizeof uid, "1.2.9.1.%d", series);
    long long id = 0;
    assert_int_equal(rp_db_series_complete(db, uid, 0, RP_COMPLETED_OPERATOR, 3, &id), 0);
    rp_db_job j;
    assert_int_equal(rp_db_job_claim(db, rp_now_s(), 0, &j), 0);
    assert_int_equal(j.id, id);
    if (output_dir)
        assert_int_equal(rp_db_job_set_running(db, id, 0, output_dir), 0);
    assert_int_equal(
        rp_db_job_finish(db, id, ok, ok ? 0 : 3, ok ? "exit 0" : "exit code 3", !ok, 0, 0, NULL), 0);
}

static void test_latest_done_version(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/index.sqlite", tmpdir);
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(path, &db), 0);

    /* series 1 (CT): v1 done, v2 failed -> v1; series 2 (MR): v1 done; series 3 (CT): a done
     * job without an output folder -> not a source; series 4 (CT): v1 done, v2 done -> v2 */
    add_instance(db, 1, "CT", 1);
    run_version(db, 1, 1, "/out/s1/v1");
    add_instance(db, 1, "CT", 2); /* reopens: version 2 */
    run_version(db, 1, 0, "/out/s1/v2");
    add_instance(db, 2, "MR", 1);
    run_version(db, 2, 1, "/out/s2/v1");
    add_instance(db, 3, "CT", 1);
    run_version(db, 3, 1, NULL);
    add_instance(db, 4, "CT", 1);
    run_version(db, 4, 1, "/out/s4/v1");
    add_instance(db, 4, "CT", 2);
    run_version(db, 4, 1, "/out/s4/v2");

    rp_db_curated_version *v = NULL;
    size_t n = 0;
    assert_int_equal(rp_db_curate_versions(db, NULL, 0, &v, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(v[0].series_uid, "1.2.9.1.1");
    assert_int_equal(v[0].version, 1);
    assert_string_equal(v[0].output_dir, "/out/s1/v1");
    assert_string_equal(v[0].study_uid, "1.2.9.1");
    assert_string_equal(v[0].modality, "CT");
    assert_string_equal(v[1].output_dir, "/out/s2/v1");
    assert_string_equal(v[2].series_uid, "1.2.9.1.4");
    assert_int_equal(v[2].version, 2);
    assert_string_equal(v[2].output_dir, "/out/s4/v2");
    assert_true(v[2].finished_at > 0);
    free(v);

    /* modality filter, any case */
    assert_int_equal(rp_db_curate_versions(db, "mr", 0, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].series_uid, "1.2.9.1.2");
    free(v);
    /* since: nothing finished in the future; everything after the epoch */
    assert_int_equal(rp_db_curate_versions(db, "CT", rp_now_s() + 3600, &v, &n), 0);
    assert_int_equal(n, 0);
    assert_null(v);
    assert_int_equal(rp_db_curate_versions(db, "CT", 1, &v, &n), 0);
    assert_int_equal(n, 2);
    free(v);
    rp_db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_latest_done_version),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
