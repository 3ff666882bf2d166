/* The supervisor thread on a real index with real worker processes: a shell script stands in
 * for `radprep process --job N` and behaves according to the job's series (exit 0, crash,
 * hang, exit 3). Checks: at most `workers` at a time, each end recorded with its reason,
 * retries with backoff up to max_attempts, permanent failures not retried, and a stop that
 * requeues the running job without counting the attempt. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "db/db.h"
#include "sched/sched.h"

static char tmpdir[256], dbpath[300], script[300], logdir[300];

/* The worker: argv = process --job N --data-dir DIR. It looks up its series in a map file
 * written by the test (job id → behaviour) and tracks concurrency in a counter directory. */
static const char worker_sh[] =
    "#!/bin/sh\n"
    "job=$3; dir=$(dirname \"$0\")\n"
    "mode=$(sed -n \"s/^$job //p\" \"$dir/modes\")\n"
    "touch \"$dir/run.$job.$$\"; n=$(ls \"$dir\" | grep -c '^run\\.')\n"
    "echo $n >> \"$dir/concurrency\"\n"
    "trap 'rm -f \"$dir/run.$job.$$\"' EXIT\n"
    "trap 'rm -f \"$dir/run.$job.$$\"; exit 143' TERM\n"
    "echo \"$job $mode attempt\" >> \"$dir/attempts\"\n"
    "echo \"$job $OMP_NUM_THREADS ${MALLOC_ARENA_MAX:-unset}\" >> \"$dir/env\"\n"
    "jf=\"$dir/jobs/job-$job.json\"\n"
    "man=$(sed -n 's/.*\"manifest\":[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p' \"$jf\")\n"
    "att=$(sed -n 's/.*\"attempt\":[[:space:]]*\\([0-9]*\\).*/\\1/p' \"$jf\")\n"
    "out=$(sed -n 's/.*\"output_dir\":[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p' \"$jf\")\n"
    "manifest() {\n"
    "  mkdir -p \"$out\"; printf 'nifti' > \"$out/a.nii.gz\"\n"
    "  sha=$(sha256sum \"$out/a.nii.gz\" | cut -d' ' -f1)\n"
    "  printf '{\"format\":\"radprep-result/1\",\"job\":%s,\"attempt\":%s,\"status\":\"%s\",'"
    "'\"output_dir\":\"%s\",\"files\":[{\"path\":\"%s/a.nii.gz\",\"kind\":\"nifti\",'"
    "'\"size\":5,\"sha256\":\"%s\"}]}' \"$job\" \"$att\" \"$1\" \"$out\" \"$out\" \"$sha\" "
    "> \"$man.tmp\" && mv \"$man.tmp\" \"$man\"\n"
    "}\n"
    "case \"$mode\" in\n"
    "  ok) sleep 0.3; manifest ok; exit 0;;\n"
    "  nomanifest) exit 0;;\n"
    "  saysfailed) manifest failed; exit 0;;\n"
    "  segv) rm -f \"$dir/run.$job.$$\"; kill -SEGV $$;;\n"
    "  hang) sleep 60;;\n"
    "  bad) exit 3;;\n"
    "  slow) sleep 30;;\n"
    "esac\n"
    "exit 1\n";

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rp_test_supj_XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(script, sizeof script, "%s/worker.sh", tmpdir);
    snprintf(logdir, sizeof logdir, "%s/logs", tmpdir);
    FILE *f = fopen(script, "w");
    if (!f)
        return -1;
    fputs(worker_sh, f);
    fclose(f);
    return chmod(script, 0755);
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static rp_db *fresh(const char *name, const char *modes)
{
    snprintf(dbpath, sizeof dbpath, "%s/%s.sqlite", tmpdir, name);
    unlink(dbpath);
    char p[1024];
    snprintf(p, sizeof p, "%s/modes", tmpdir);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(modes, f);
    fclose(f);
    snprintf(p, sizeof p, "rm -f %s/concurrency %s/attempts %s/run.*", tmpdir, tmpdir, tmpdir);
    assert_int_equal(system(p), 0);
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(dbpath, &db), 0);
    return db;
}

/* A job of a series the index has (one instance): the node writes its job file from it. */
static long long enqueue(rp_db *db, const char *series_uid, int max_attempts)
{
    rp_instance_meta m;
    memset(&m, 0, sizeof m);
    rp_strlcpy(m.study_uid, "1.2.3", sizeof m.study_uid);
    rp_strlcpy(m.series_uid, series_uid, sizeof m.series_uid);
    snprintf(m.sop_instance_uid, sizeof m.sop_instance_uid, "%s.1", series_uid);
    rp_strlcpy(m.modality, "OT", sizeof m.modality);
    snprintf(m.file_path, sizeof m.file_path, "1.2.3/%s/1.dcm", series_uid);
    m.instance_number = 1;
    m.received_at = rp_now_s() - 1;
    assert_int_equal(rp_db_index_instances(db, &m, 1), 0);
    long long id = 0;
    assert_int_equal(rp_db_job_enqueue(db, series_uid, 1, max_attempts, &id), 0);
    return id;
}

static rp_supervisor *start(int workers, int timeout_s)
{
    rp_supervisor_opts o = {.db_path = dbpath,
                            .worker_bin = script,
                            .data_dir = tmpdir,
                            .log_dir = logdir,
                            .workers = workers,
                            .timeout_s = timeout_s,
                            .memory_mb = 512,
                            .max_attempts = 2,
                            .backoff_base_s = 0.2,
                            .poll_s = 0.1};
    rp_supervisor *s = NULL;
    assert_int_equal(rp_supervisor_start(&o, &s), 0);
    return s;
}

/* Wait until job `id` reaches `state` (at most `secs`). */
static rp_db_job wait_state(rp_db *db, long long id, rp_job_state state, double secs)
{
    rp_db_job j;
    double t0 = rp_mono_s();
    for (;;) {
        assert_int_equal(rp_db_job_get(db, id, &j), 0);
        if (j.state == state)
            return j;
        if (rp_mono_s() - t0 > secs) {
            fprintf(stderr, "job %lld is %s (%s), wanted %s\n", id, rp_job_state_name(j.state),
                    j.reason, rp_job_state_name(state));
            fail();
        }
        usleep(20000);
    }
}

static int max_concurrency(void)
{
    char p[400];
    snprintf(p, sizeof p, "%s/concurrency", tmpdir);
    FILE *f = fopen(p, "r");
    int mx = 0, v;
    if (!f)
        return 0;
    while (fscanf(f, "%d", &v) == 1)
        if (v > mx)
            mx = v;
    fclose(f);
    return mx;
}

static int attempts_of(long long id)
{
    char p[400], line[128];
    snprintf(p, sizeof p, "%s/attempts", tmpdir);
    FILE *f = fopen(p, "r");
    int n = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        n += atoll(line) == id;
    fclose(f);
    return n;
}

static void test_outcomes(void **state)
{
    (void)state;
    rp_db *db = fresh("outcomes", "1 ok\n2 segv\n3 hang\n4 bad\n5 ok\n6 ok\n");
    long long ok = enqueue(db, "1.2.3.1", 3);
    long long segv = enqueue(db, "1.2.3.2", 2);
    long long hang = enqueue(db, "1.2.3.3", 1);
    long long bad = enqueue(db, "1.2.3.4", 3);
    long long ok2 = enqueue(db, "1.2.3.5", 3);
    long long ok3 = enqueue(db, "1.2.3.6", 3);
    assert_int_equal(ok, 1);
    assert_int_equal(ok3, 6);
    /* 3 s: the hang must end at its timeout, the others well before it even on a loaded
     * machine (1 s was too tight next to other builds on two cores) */
    rp_supervisor *s = start(2, 3);

    rp_db_job j = wait_state(db, ok, RP_JOB_DONE, 20);
    assert_int_equal(j.exit_status, 0);
    assert_true(j.started_at > 0 && j.finished_at >= j.started_at);
    /* a crash is retried with backoff, then dead with the signal's name */
    j = wait_state(db, segv, RP_JOB_DEAD, 20);
    assert_int_equal(j.attempts, 2);
    assert_non_null(strstr(j.reason, "SIGSEGV"));
    assert_int_equal(attempts_of(segv), 2);
    /* a hang is killed at its timeout */
    j = wait_state(db, hang, RP_JOB_DEAD, 20);
    assert_non_null(strstr(j.reason, "timeout"));
    assert_true(j.finished_at - j.started_at >= 2.9);
    /* bad input is not retried */
    j = wait_state(db, bad, RP_JOB_DEAD, 20);
    assert_int_equal(j.attempts, 1);
    assert_int_equal(j.exit_status, 3);
    wait_state(db, ok2, RP_JOB_DONE, 20);
    wait_state(db, ok3, RP_JOB_DONE, 20);
    rp_supervisor_stop(s);
    /* never more than 2 workers at once, and more than one at some point */
    assert_int_equal(max_concurrency(), 2);
    rp_db_close(db);
}

static void test_stop_requeues(void **state)
{
    (void)state;
    rp_db *db = fresh("stop", "1 slow\n");
    long long id = enqueue(db, "1.2.3.9", 3);
    rp_supervisor *s = start(1, 600);
    rp_db_job j = wait_state(db, id, RP_JOB_RUNNING, 10);
    /* claimed first, then forked: the pid is recorded a moment after 'running' */
    for (int i = 0; i < 200 && j.pid <= 0; i++) {
        usleep(10000);
        assert_int_equal(rp_db_job_get(db, id, &j), 0);
    }
    assert_true(j.pid > 0);
    int pid = j.pid;
    for (int i = 0; i < 100 && attempts_of(id) == 0; i++)
        usleep(20000);
    double t0 = rp_mono_s();
    rp_supervisor_stop(s);
    assert_true(rp_mono_s() - t0 < 5.0);
    /* the worker is gone, the job waits in the queue, the attempt did not count */
    assert_int_equal(kill(pid, 0), -1);
    assert_int_equal(rp_db_job_get(db, id, &j), 0);
    assert_int_equal(j.state, RP_JOB_QUEUED);
    assert_int_equal(j.attempts, 0);
    rp_db_close(db);
}

static void test_requeue_at_start(void **state)
{
    (void)state;
    /* A job left 'running' by a node that died is retried on start. */
    rp_db *db = fresh("crashrestart", "1 ok\n");
    long long id = enqueue(db, "1.2.3.10", 3);
    rp_db_job j;
    assert_int_equal(rp_db_job_claim(db, rp_now_s(), 999999, &j), 0);
    assert_int_equal(j.id, id);
    rp_supervisor *s = start(1, 60);
    j = wait_state(db, id, RP_JOB_DONE, 10);
    assert_int_equal(attempts_of(id), 1);
    rp_supervisor_stop(s);
    rp_db_close(db);
}

static void test_worker_env(void **state)
{
    (void)state;
    assert_int_equal(rp_supervisor_omp_share(16, 0), 16);
    assert_int_equal(rp_supervisor_omp_share(16, 3), 4);
    assert_int_equal(rp_supervisor_omp_share(2, 5), 1);
    /* a job alone gets every core and the small arena count */
    rp_db *db = fresh("env", "1 ok\n");
    char p[1024];
    snprintf(p, sizeof p, "%s/env", tmpdir);
    unlink(p);
    long long id = enqueue(db, "1.2.3.12", 3);
    unsetenv("OMP_NUM_THREADS");
    rp_supervisor *s = start(2, 60);
    wait_state(db, id, RP_JOB_DONE, 20);
    rp_supervisor_stop(s);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(rp_read_file(p, &text, &len), 0);
    char want[64];
    snprintf(want, sizeof want, "1 %ld 4\n", sysconf(_SC_NPROCESSORS_ONLN));
    assert_string_equal(text, want);
    free(text);
    rp_db_close(db);
}

static void test_missing_worker(void **state)
{
    (void)state;
    /* No worker binary: the supervisor (and so the node) still starts; jobs wait. */
    rp_db *db = fresh("noworker", "1 ok\n");
    long long id = enqueue(db, "1.2.3.11", 3);
    setenv("RP_WORKER_BIN", "/nonexistent/radprep", 1);
    rp_supervisor_opts o = {.db_path = dbpath,
                            .data_dir = tmpdir,
                            .log_dir = logdir,
                            .workers = 1,
                            .timeout_s = 10,
                            .poll_s = 0.05};
    rp_supervisor *s = NULL;
    assert_int_equal(rp_supervisor_start(&o, &s), 0);
    unsetenv("RP_WORKER_BIN");
    usleep(400000);
    rp_db_job j;
    assert_int_equal(rp_db_job_get(db, id, &j), 0);
    assert_int_equal(j.state, RP_JOB_QUEUED);
    assert_int_equal(j.attempts, 0);
    assert_int_equal(rp_supervisor_running(s), 0);
    rp_supervisor_stop(s);
    rp_db_close(db);
}

/* The worker reports through its result manifest only: an exit 0 with one is done and its
 * outputs recorded (job file removed); without one, or with one that says failed, it is not. */
static void test_result_manifest(void **state)
{
    (void)state;
    rp_db *db = fresh("manifest", "1 ok\n2 nomanifest\n3 saysfailed\n");
    long long ok = enqueue(db, "1.2.3.21", 1);
    long long none = enqueue(db, "1.2.3.22", 1);
    long long says = enqueue(db, "1.2.3.23", 1);
    rp_supervisor *s = start(2, 30);
    rp_db_job j = wait_state(db, ok, RP_JOB_DONE, 20);
    char want[512];
    snprintf(want, sizeof want, "%s/outputs/1.2.3/1.2.3.21/v1", tmpdir);
    assert_string_equal(j.output_dir, want);
    rp_db_output *o = NULL;
    size_t no = 0;
    assert_int_equal(rp_db_outputs_list(db, ok, &o, &no), 0);
    assert_int_equal(no, 1);
    assert_string_equal(o[0].kind, "nifti");
    assert_int_equal(strlen(o[0].sha256), 64);
    free(o);
    char jf[512];
    assert_int_equal(rp_jobfile_path(tmpdir, ok, jf, sizeof jf), 0);
    /* done: the job file goes (right after the state is written) */
    for (int i = 0; i < 200 && access(jf, F_OK) == 0; i++)
        usleep(10000);
    assert_int_equal(access(jf, F_OK), -1);
    j = wait_state(db, none, RP_JOB_DEAD, 20);
    assert_non_null(strstr(j.reason, "no result manifest"));
    j = wait_state(db, says, RP_JOB_DEAD, 20);
    assert_non_null(strstr(j.reason, "says failed"));
    assert_int_equal(rp_db_outputs_list(db, says, &o, &no), 0);
    assert_int_equal(no, 0);
    free(o);
    rp_supervisor_stop(s);
    rp_db_close(db);
}

/* A local worker that finished while the node was down left its manifest: at start the
 * version is recorded, not processed again. */
static void test_recorded_at_start(void **state)
{
    (void)state;
    rp_db *db = fresh("atstart", "1 ok\n");
    long long id = enqueue(db, "1.2.3.31", 3);
    rp_db_job j;
    assert_int_equal(rp_db_job_claim(db, rp_now_s(), 999999, &j), 0);
    rp_conf c;
    assert_int_equal(rp_conf_defaults(&c), 0);
    rp_strlcpy(c.data_dir, tmpdir, sizeof c.data_dir);
    rp_job_resources res;
    char why[300];
    assert_int_equal(rp_jobfile_write(db, &c, tmpdir, &j, &res, why, sizeof why), 0);
    /* what the worker would have left */
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "d=%s/outputs/1.2.3/1.2.3.31; mkdir -p $d/v1 && printf '{\"format\":"
             "\"radprep-result/1\",\"job\":%lld,\"attempt\":1,\"status\":\"ok\","
             "\"output_dir\":\"'$d/v1'\",\"files\":[]}' > $d/.v1.result.json",
             tmpdir, id);
    assert_int_equal(system(cmd), 0);
    rp_supervisor *s = start(1, 60);
    j = wait_state(db, id, RP_JOB_DONE, 10);
    assert_int_equal(attempts_of(id), 0); /* no worker ran again */
    assert_int_equal(j.attempts, 1);
    rp_supervisor_stop(s);
    rp_conf_free(&c);
    rp_db_close(db);
}

/* The job file: what the worker needs, and the resources of the node's rule. */
static void test_job_file(void **state)
{
    (void)state;
    rp_db *db = fresh("jobfile", "");
    long long id = enqueue(db, "1.2.3.41", 3);
    rp_db_job j;
    assert_int_equal(rp_db_job_claim(db, rp_now_s(), 0, &j), 0);
    char ini[512];
    snprintf(ini, sizeof ini, "%s/r.ini", tmpdir);
    FILE *f = fopen(ini, "w");
    assert_non_null(f);
    fprintf(f, "[node]\ndata_dir = %s\n[rule big]\nmodality = OT\nsteps = normalize(minmax)\n"
               "cpus_per_task = 3\nmem_mb = 2048\ntime_limit_s = 120\nsend_to = \n",
            tmpdir);
    fclose(f);
    rp_conf c;
    char err[512] = "";
    assert_int_equal(rp_conf_defaults(&c), 0);
    int rc = rp_conf_load(&c, ini, err, sizeof err);
    if (rc)
        fprintf(stderr, "conf: %s\n", err);
    assert_int_equal(rc, 0);
    rp_job_resources res;
    char why[300];
    assert_int_equal(rp_jobfile_write(db, &c, tmpdir, &j, &res, why, sizeof why), 0);
    assert_int_equal(res.cpus, 3);
    assert_int_equal(res.mem_mb, 2048);
    assert_int_equal(res.time_limit_s, 120);
    char jf[512], *text = NULL;
    size_t len = 0;
    assert_int_equal(rp_jobfile_path(tmpdir, id, jf, sizeof jf), 0);
    assert_int_equal(rp_read_file(jf, &text, &len), 0);
    assert_non_null(strstr(text, "\"format\":\t\"radprep-job/1\""));
    assert_non_null(strstr(text, "\"name\":\t\"big\""));
    assert_non_null(strstr(text, "\"file\":\t\"1.2.3/1.2.3.41/1.dcm\""));
    assert_non_null(strstr(text, "/.v1.result.json\""));
    free(text);
    /* a series the index no longer has: the job cannot be prepared, and is not retried */
    rp_db_job gone = j;
    rp_strlcpy(gone.series_uid, "9.9.9", sizeof gone.series_uid);
    assert_int_equal(rp_jobfile_write(db, &c, tmpdir, &gone, &res, why, sizeof why), RP_ENOENT);
    rp_conf_free(&c);
    rp_db_close(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outcomes),         cmocka_unit_test(test_stop_requeues),
        cmocka_unit_test(test_requeue_at_start), cmocka_unit_test(test_worker_env),
        cmocka_unit_test(test_missing_worker),   cmocka_unit_test(test_result_manifest),
        cmocka_unit_test(test_recorded_at_start), cmocka_unit_test(test_job_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
