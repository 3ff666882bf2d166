/* Unit tests for conf/conf_executor.c: [executor] defaults (local), every key, and the
 * values refused with a FILE:LINE reason (unknown kind, names that could read as options,
 * quotes in sbatch_args that nothing would interpret, out-of-range numbers, unknown keys);
 * a [rule]'s resources (cpus_per_task, mem_mb, time_limit_s) and rp_conf_match_rule(). */
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

static char tmpdir[64];

static int load(rp_conf *c, const char *text, char *err, size_t errlen)
{
    char p[128];
    snprintf(p, sizeof p, "%s/t.ini", tmpdir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(rp_conf_defaults(c), 0);
    return rp_conf_load(c, p, err, errlen);
}

static void test_defaults_and_keys(void **state)
{
    (void)state;
    rp_conf c;
    char err[512];
    assert_int_equal(rp_conf_defaults(&c), 0);
    assert_int_equal(c.executor.kind, RP_EXECUTOR_LOCAL);
    assert_true(c.executor.poll_s == 1.0);
    rp_conf_free(&c);

    assert_int_equal(load(&c,
                          "[executor]\nkind = slurm\npartition = cpu-long\naccount = rad.01\n"
                          "sbatch_args = --qos=low --exclude=n3\nmax_in_flight = 64\n"
                          "cpus_per_task = 4\nmem_mb = 8000\ntime_limit_s = 5400\npoll_s = 2.5\n"
                          "bin_dir = /opt/slurm/bin\n",
                          err, sizeof err),
                     0);
    assert_int_equal(c.executor.kind, RP_EXECUTOR_SLURM);
    assert_string_equal(c.executor.partition, "cpu-long");
    assert_string_equal(c.executor.account, "rad.01");
    assert_string_equal(c.executor.sbatch_args, "--qos=low --exclude=n3");
    assert_int_equal(c.executor.max_in_flight, 64);
    assert_int_equal(c.executor.cpus_per_task, 4);
    assert_int_equal(c.executor.mem_mb, 8000);
    assert_int_equal(c.executor.time_limit_s, 5400);
    assert_true(c.executor.poll_s == 2.5);
    assert_string_equal(c.executor.bin_dir, "/opt/slurm/bin");
    assert_string_equal(rp_conf_executor_kind_name(c.executor.kind), "slurm");
    /* copies carry it */
    rp_conf d;
    assert_int_equal(rp_conf_copy(&d, &c), 0);
    assert_int_equal(d.executor.kind, RP_EXECUTOR_SLURM);
    rp_conf_free(&d);
    rp_conf_free(&c);
}

static void test_bad_values(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"[executor]\nkind = kubernetes\n", "t.ini:2: kind: 'kubernetes' is not local or slurm"},
        {"[executor]\npartition = --all\n", "partition: invalid name"},
        {"[executor]\naccount = a b\n", "account: invalid name"},
        {"[executor]\nsbatch_args = --comment=\"x y\"\n", "quotes and backslashes"},
        {"[executor]\nmax_in_flight = -1\n", "max_in_flight: expected"},
        {"[executor]\ncpus_per_task = lots\n", "cpus_per_task: expected"},
        {"[executor]\npoll_s = 0\n", "poll_s: expected"},
        {"[executor]\nbin_dir = bin\n", "bin_dir: expected an absolute path"},
        {"[executor]\nqueue = x\n", "unknown key 'queue' in [executor]"},
        {"[executor]\nkind = slurm\nkind = local\n", "t.ini:3: duplicate key 'kind'"},
        {"[executor x]\n", "section [executor] takes no name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rp_conf c;
        char err[512] = "";
        assert_int_equal(load(&c, cases[i].text, err, sizeof err), RP_ECONF);
        if (!strstr(err, cases[i].want))
            fail_msg("case %zu: '%s' does not say '%s'", i, err, cases[i].want);
        rp_conf_free(&c);
    }
}

static void test_rule_resources(void **state)
{
    (void)state;
    rp_conf c;
    char err[512] = "";
    assert_int_equal(load(&c,
                          "[rule big_ct]\nmodality = CT\nbody_part = CHEST\n"
                          "steps = hu normalize(minmax)\ncpus_per_task = 8\nmem_mb = 16000\n"
                          "time_limit_s = 7200\n[rule thin]\nmodality = CT\n"
                          "slice_thickness_max = 1.5\nsteps = hu\npriority = 5\n",
                          err, sizeof err),
                     0);
    const rp_conf_rule *r = rp_conf_match_rule(&c, "CT", "chest", "", 3.0);
    assert_non_null(r);
    assert_string_equal(r->name, "big_ct");
    assert_int_equal(r->cpus_per_task, 8);
    assert_int_equal(r->mem_mb, 16000);
    assert_int_equal(r->time_limit_s, 7200);
    r = rp_conf_match_rule(&c, "CT", "CHEST", "", 1.0); /* the higher priority wins */
    assert_string_equal(r->name, "thin");
    assert_int_equal(r->cpus_per_task, 0); /* not given: the node's defaults */
    r = rp_conf_match_rule(&c, "MR", "", "", -1); /* the built-in one */
    assert_non_null(r);
    assert_string_equal(r->name, "mr_default");
    assert_null(rp_conf_match_rule(&c, "SR", "", "", -1));
    rp_conf_free(&c);
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"[rule r]\nsteps = hu\ncpus_per_task = 0\n", "t.ini:3: cpus_per_task: 0 is out of range"},
        {"[rule r]\nsteps = hu\nmem_mb = 8\n", "t.ini:3: mem_mb: 8 is out of range"},
        {"[rule r]\nsteps = hu\ntime_limit_s = 1h\n", "time_limit_s: '1h' is not an integer"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(load(&c, bad[i].text, err, sizeof err), RP_ECONF);
        if (!strstr(err, bad[i].want))
            fail_msg("case %zu: '%s' does not say '%s'", i, err, bad[i].want);
        rp_conf_free(&c);
    }
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rp_confexec_XXXXXX");
    if (!mkdtemp(tmpdir))
        return 1;
    rp_log_set_level(RP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_keys),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_rule_resources),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
