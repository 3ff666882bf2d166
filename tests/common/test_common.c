/* Unit tests for common/: error strings, kv quoting, mkdir -p. */
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

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(rp_strerror(0), "success");
    assert_string_equal(rp_strerror(RP_ENOSPC),
                        "out of disk space (below the free-space watermark)");
    assert_string_equal(rp_strerror(RP_ECANCELED), "canceled");
    assert_string_equal(rp_strerror(-999), "unknown error");
    assert_string_equal(rp_strerror(5), "unknown error");
}

static void test_kv_quote(void **state)
{
    (void)state;
    char buf[64];
    assert_string_equal(rp_log_kv_quote("CT1", buf, sizeof buf), "CT1");
    assert_string_equal(rp_log_kv_quote("", buf, sizeof buf), "\"\"");
    assert_string_equal(rp_log_kv_quote("a b", buf, sizeof buf), "\"a b\"");
    assert_string_equal(rp_log_kv_quote("x\"y", buf, sizeof buf), "\"x\\\"y\"");
    assert_string_equal(rp_log_kv_quote("a\nb", buf, sizeof buf), "\"a?b\"");
}

static void test_strlcpy(void **state)
{
    (void)state;
    char b[4];
    assert_int_equal(rp_strlcpy(b, "abc", sizeof b), 0);
    assert_string_equal(b, "abc");
    assert_int_equal(rp_strlcpy(b, "abcd", sizeof b), RP_EINVAL);
    assert_string_equal(b, "abc");
}

static void test_mkdir_p(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/rp_common_XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char p[256];
    snprintf(p, sizeof p, "%s/a/b/c", tmpl);
    assert_int_equal(rp_mkdir_p(p, 0755), 0);
    assert_int_equal(rp_mkdir_p(p, 0755), 0);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpl);
    assert_int_equal(system(cmd), 0);
}

static void test_sha256_and_rm_rf(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/rp_common_XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    char p[256], hex[65];
    snprintf(p, sizeof p, "%s/sub/deeper", tmpl);
    assert_int_equal(rp_mkdir_p(p, 0755), 0);
    snprintf(p, sizeof p, "%s/sub/deeper/abc.txt", tmpl);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs("abc", f);
    fclose(f);
    /* FIPS 180-2 test vector for "abc" */
    const char *want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_int_equal(rp_sha256_file(p, hex), 0);
    assert_string_equal(hex, want);
    assert_int_equal(rp_sha256_hex("abc", 3, hex), 0);
    assert_string_equal(hex, want);
    assert_int_equal(rp_fsync_path(p, 0), 0);
    assert_int_equal(rp_sha256_file("/nonexistent/x", hex), RP_ENOENT);
    assert_int_equal(rp_rm_rf(tmpl), 0);
    struct stat st;
    assert_int_not_equal(stat(tmpl, &st), 0);
    assert_int_equal(rp_rm_rf(tmpl), 0); /* already gone: fine */
}

static void test_iso8601(void **state)
{
    (void)state;
    char buf[40];
    assert_string_equal(rp_time_iso8601(0.5, buf, sizeof buf), "1970-01-01T00:00:00.500Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror), cmocka_unit_test(test_kv_quote),
        cmocka_unit_test(test_strlcpy), cmocka_unit_test(test_mkdir_p),
        cmocka_unit_test(test_iso8601), cmocka_unit_test(test_sha256_and_rm_rf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
