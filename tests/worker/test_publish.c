/* Unit tests for worker/publish.c: a version folder appears whole (renamed from a temporary
 * folder) and is listed with every file's kind, size and sha256 for the result manifest (the
 * worker opens no database); one worker per version (the lock); leftovers of interrupted
 * attempts go; an existing folder of the version is replaced; and the worker's exit codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "worker/worker.h"

static char tmpdir[64], parent[128];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rp_test_pub_XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(parent, sizeof parent, "%s/out/1.2.3/1.2.3.4", tmpdir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char p[1400];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int exists(const char *fmt, const char *a)
{
    char p[1400];
    struct stat st;
    snprintf(p, sizeof p, fmt, a);
    return stat(p, &st) == 0;
}

static void test_publish(void **state)
{
    (void)state;
    /* what an interrupted attempt left: a temporary folder of this version, and a whole
     * folder it renamed but never recorded */
    char stale[256], old[256];
    snprintf(stale, sizeof stale, "%s/.v1.tmp.99999", parent);
    snprintf(old, sizeof old, "%s/v1", parent);
    assert_int_equal(rp_mkdir_p(stale, 0750), 0);
    assert_int_equal(rp_mkdir_p(old, 0750), 0);
    write_file(old, "old.json", "{}");

    rp_publish p;
    assert_int_equal(rp_publish_begin(&p, parent, 1), 0);
    assert_false(exists("%s", stale));
    assert_true(exists("%s", p.tmp_dir));
    assert_string_equal(p.dir, old);

    /* a second worker for the same version is refused while the first holds it */
    rp_publish q;
    assert_int_equal(rp_publish_begin(&q, parent, 1), RP_EBUSY);
    rp_publish_end(&q);
    /* another version is independent */
    assert_int_equal(rp_publish_begin(&q, parent, 2), 0);
    rp_publish_end(&q);

    char sub[1300];
    write_file(p.tmp_dir, "series.nii.gz", "nifti bytes");
    write_file(p.tmp_dir, "series.json", "{\"a\": 1}");
    write_file(p.tmp_dir, "qc.png", "png");
    snprintf(sub, sizeof sub, "%s/dicom", p.tmp_dir);
    assert_int_equal(rp_mkdir_p(sub, 0750), 0);
    write_file(sub, "000001.dcm", "dicom");
    write_file(sub, "seg.dcm", "seg");
    write_file(p.tmp_dir, "notes.txt", "x");

    /* nothing of the version is visible before the commit */
    assert_false(exists("%s/v1/series.json", parent));
    rp_output_list l;
    assert_int_equal(rp_publish_commit(&p, &l), 0);
    assert_int_equal(l.n, 6);
    assert_true(exists("%s/v1/series.nii.gz", parent));
    assert_true(exists("%s/v1/dicom/seg.dcm", parent));
    assert_false(exists("%s/v1/old.json", parent)); /* replaced, not merged */
    assert_false(exists("%s", p.tmp_dir));
    rp_publish_end(&p);
    rp_publish_end(&p); /* idempotent */

    int seen = 0;
    for (size_t i = 0; i < l.n; i++) {
        const char *base = strrchr(l.v[i].path, '/') + 1;
        const char *want = !strcmp(base, "series.nii.gz") ? "nifti"
                           : !strcmp(base, "series.json") ? "json"
                           : !strcmp(base, "qc.png")      ? "png"
                           : !strcmp(base, "000001.dcm")  ? "dicom"
                           : !strcmp(base, "seg.dcm")     ? "seg"
                                                          : "file";
        assert_string_equal(l.v[i].kind, want);
        assert_int_equal(strlen(l.v[i].sha256), 64);
        assert_int_equal(strncmp(l.v[i].path, old, strlen(old)), 0); /* in the final folder */
        char hex[65];
        assert_int_equal(rp_sha256_file(l.v[i].path, hex), 0);
        assert_string_equal(hex, l.v[i].sha256);
        struct stat st;
        assert_int_equal(stat(l.v[i].path, &st), 0);
        assert_int_equal(st.st_size, l.v[i].size);
        seen++;
    }
    assert_int_equal(seen, 6);
    rp_output_list_free(&l);

    /* the lock is released: the next attempt of the version may publish */
    assert_int_equal(rp_publish_begin(&p, parent, 1), 0);
    rp_publish_end(&p);
    assert_false(exists("%s", p.tmp_dir));
}

static void test_exit_codes(void **state)
{
    (void)state;
    assert_int_equal(rp_worker_exit_for(0), RP_JOB_EXIT_OK);
    assert_int_equal(rp_worker_exit_for(RP_ENOMEM), RP_JOB_EXIT_OOM);
    assert_int_equal(rp_worker_exit_for(RP_EPARSE), RP_JOB_EXIT_BADINPUT);
    assert_int_equal(rp_worker_exit_for(RP_EDECODE), RP_JOB_EXIT_BADINPUT);
    assert_int_equal(rp_worker_exit_for(RP_EUNSUPPORTED), RP_JOB_EXIT_BADINPUT);
    assert_int_equal(rp_worker_exit_for(RP_ECONF), RP_JOB_EXIT_CONFIG);
    assert_int_equal(rp_worker_exit_for(RP_EIO), RP_JOB_EXIT_FAIL);
    assert_int_equal(rp_worker_exit_for(RP_EBUSY), RP_JOB_EXIT_FAIL);
    assert_int_equal(rp_worker_exit_for(RP_ENOENT), RP_JOB_EXIT_FAIL);
    assert_true(rp_worker_exit_permanent(RP_JOB_EXIT_BADINPUT));
    assert_true(rp_worker_exit_permanent(RP_JOB_EXIT_USAGE));
    assert_true(rp_worker_exit_permanent(RP_JOB_EXIT_GONE));
    assert_true(rp_worker_exit_permanent(RP_JOB_EXIT_CONFIG));
    assert_false(rp_worker_exit_permanent(RP_JOB_EXIT_FAIL));
    assert_false(rp_worker_exit_permanent(RP_JOB_EXIT_OOM));
    assert_false(rp_worker_exit_permanent(127));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish),
        cmocka_unit_test(test_exit_codes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
