/* Unit tests for the Slurm executor without a cluster: the mapping of Slurm's job states to
 * how a job ended, the sbatch command line built for a request, and the executor against
 * stand-in sbatch/scontrol/scancel scripts (one scontrol call answers every job in flight,
 * polls are rate-limited, a controller that does not answer decides nothing, reattach asks
 * Slurm and only "Invalid job id" makes the node forget the job), and the batch script's
 * address-space bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "sched/sched.h"

static void test_map_states(void **state)
{
    (void)state;
    rp_proc_result r;
    const char *live[] = {"PENDING",  "RUNNING",   "COMPLETING",
                          "REQUEUED", "SUSPENDED", "CONFIGURING"};
    for (size_t i = 0; i < sizeof live / sizeof live[0]; i++)
        assert_int_equal(rp_slurm_map_state(live[i], "0:0", 60, &r), 0);

    assert_int_equal(rp_slurm_map_state("COMPLETED", "0:0", 60, &r), 1);
    assert_int_equal(r.end, RP_PROC_EXITED);
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(r.reason, "exit 0");

    assert_int_equal(rp_slurm_map_state("FAILED", "3:0", 60, &r), 1);
    assert_int_equal(r.end, RP_PROC_EXITED);
    assert_int_equal(r.exit_code, 3); /* permanent: the supervisor makes it dead */

    /* the worker's own out-of-memory exit code (its allocation failed under the batch
     * script's RLIMIT_AS): Slurm says FAILED, or COMPLETED on some versions, ExitCode=4:0 */
    assert_int_equal(rp_slurm_map_state("FAILED", "4:0", 60, &r), 1);
    assert_int_equal(r.end, RP_PROC_OOM);
    assert_int_equal(r.exit_code, 4);
    assert_string_equal(r.reason, "oom (memory limit reached, exit code 4)");
    assert_int_equal(rp_slurm_map_state("COMPLETED", "4:0", 60, &r), 1);
    assert_int_equal(r.end, RP_PROC_OOM);
    assert_int_equal(r.exit_code, 4);

    assert_int_equal(rp_slurm_map_state("FAILED", "0:9", 60, &r), 1);
    assert_int_equal(r.end, RP_PROC_OOM);
    assert_non_null(strstr(r.reason, "oom"));

    assert_int_equal(rp_slurm_map_state("FAILED", "0:11", 60, &r), 1);
    assert_int_equal(r.end, RP_PROC_SIGNALED);
    assert_string_equal(r.reason, "signal SIGSEGV (slurm FAILED)");

    assert_int_equal(rp_slurm_map_state("TIMEOUT", "0:15", 60, &r), 1);
    assert_int_equal(r.end, RP_PROC_TIMEOUT);
    assert_string_equal(r.reason, "timeout after 60s (slurm TIMEOUT)");

    assert_int_equal(rp_slurm_map_state("OUT_OF_MEMORY", "0:125", 60, &r), 1);
    assert_int_equal(r.end, RP_PROC_OOM);
    assert_string_equal(r.reason, "oom (slurm OUT_OF_MEMORY)");

    assert_int_equal(rp_slurm_map_state("CANCELLED by 0", "0:15", 60, &r), 1);
    assert_int_equal(r.end, RP_PROC_SIGNALED);
    assert_string_equal(r.reason, "cancelled (slurm CANCELLED)");

    const char *lost[] = {"NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "SOMETHING_NEW"};
    for (size_t i = 0; i < sizeof lost / sizeof lost[0]; i++) {
        assert_int_equal(rp_slurm_map_state(lost[i], "0:0", 60, &r), 1);
        assert_int_equal(r.end, RP_PROC_LOST);
        assert_non_null(strstr(r.reason, lost[i]));
    }
}

static void test_sbatch_argv(void **state)
{
    (void)state;
    const char *wargv[] = {"/opt/radprep/bin/radprep", "process", "--job", "42", NULL};
    rp_exec_request rq = {.job_id = 42,
                          .argv = wargv,
                          .log_path = "/shared/logs/job-42.log",
                          .memory_mb = 2048,
                          .timeout_s = 90};
    rp_slurm_opts o = {.partition = "cpu",
                       .account = "radiology",
                       .sbatch_args = "--qos=low  -x n3",
                       .cpus_per_task = 4};
    char store[4096];
    const char *argv[64];
    assert_int_equal(rp_slurm_sbatch_argv(&o, &rq, "/shared/logs/radprep-slurm.sh", store,
                                          sizeof store, argv, 64),
                     0);
    const char *want[] = {"/usr/bin/sbatch",
                          "--parsable",
                          "--job-name=radprep-42",
                          "--output=/shared/logs/job-42.log",
                          "--open-mode=append",
                          "--time=2", /* 90 s rounded up to whole minutes */
                          "--mem=2048",
                          "--cpus-per-task=4",
                          "--partition=cpu",
                          "--account=radiology",
                          "--qos=low",
                          "-x",
                          "n3",
                          "/shared/logs/radprep-slurm.sh",
                          "/opt/radprep/bin/radprep",
                          "process",
                          "--job",
                          "42",
                          NULL};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        if (!want[i]) {
            assert_null(argv[i]);
            break;
        }
        assert_non_null(argv[i]);
        assert_string_equal(argv[i], want[i]);
    }
    /* [executor] limits win over the node's; no limits: no options */
    o = (rp_slurm_opts){.time_limit_s = 3600, .mem_mb = 100, .bin_dir = "/opt/slurm/bin"};
    assert_int_equal(rp_slurm_sbatch_argv(&o, &rq, "/s.sh", store, sizeof store, argv, 64), 0);
    assert_string_equal(argv[0], "/opt/slurm/bin/sbatch");
    assert_string_equal(argv[5], "--time=60");
    assert_string_equal(argv[6], "--mem=100");
    /* the job's rule wins over [executor] and the node */
    rq.res = (rp_job_resources){.cpus = 8, .mem_mb = 12000, .time_limit_s = 7200};
    o.cpus_per_task = 2;
    assert_int_equal(rp_slurm_sbatch_argv(&o, &rq, "/s.sh", store, sizeof store, argv, 64), 0);
    assert_string_equal(argv[5], "--time=120");
    assert_string_equal(argv[6], "--mem=12000");
    assert_string_equal(argv[7], "--cpus-per-task=8");
    rq.res = (rp_job_resources){0};
    rq.memory_mb = 0;
    rq.timeout_s = 0;
    rq.log_path = NULL;
    o = (rp_slurm_opts){0};
    assert_int_equal(rp_slurm_sbatch_argv(&o, &rq, "/s.sh", store, sizeof store, argv, 64), 0);
    assert_string_equal(argv[3], "/s.sh");
    /* too many arguments for the array: an error, not an overflow */
    assert_int_equal(rp_slurm_sbatch_argv(&o, &rq, "/s.sh", store, sizeof store, argv, 5),
                     RP_EINVAL);
}

static char tmpdir[64];

static void write_tool(const char *name, const char *body)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\nT=%s\n%s", tmpdir, body);
    fclose(f);
    chmod(p, 0755);
}

static int count_lines(const char *name)
{
    char p[256], line[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "r");
    if (!f)
        return 0;
    int n = 0;
    while (fgets(line, sizeof line, f))
        n++;
    fclose(f);
    return n;
}

/* Stand-in tools: sbatch hands out ids 101, 102...; scontrol prints $T/jobs (what the test
 * wrote) or fails when $T/down exists; scancel records its argument. */
static void test_executor_fake_tools(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rp_slurm_XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    write_tool("sbatch", "n=$(cat $T/next 2>/dev/null || echo 101)\n"
                         "echo $((n+1)) > $T/next\n"
                         "echo \"$@\" >> $T/sbatch.calls\n"
                         "echo \"$n;cluster\"\n");
    write_tool("scontrol",
               "echo \"$@\" >> $T/scontrol.calls\n"
               "if [ -e $T/down ]; then echo 'slurm_load_jobs error: Unable to contact "
               "slurm controller' >&2; exit 1; fi\n"
               "if [ -n \"$4\" ]; then grep -q \"^JobId=$4 \" $T/jobs && exit 0; "
               "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1; fi\n"
               "cat $T/jobs\n");
    write_tool("scancel", "echo \"$@\" >> $T/scancel.calls\n");
    write_tool("sacct", "exit 1\n");

    rp_slurm_opts o = {.bin_dir = tmpdir, .script_dir = tmpdir, .poll_s = 0.2};
    rp_executor ex;
    assert_int_equal(rp_executor_slurm(&o, &ex), 0);
    char script[128];
    snprintf(script, sizeof script, "%s/radprep-slurm.sh", tmpdir);
    assert_int_equal(access(script, X_OK), 0);
    /* the batch script bounds the worker's address space by the job's memory in MB
     * (per node, or per CPU times the CPUs), and leaves it alone without one */
    const char *cases[][2] = {
        {"SLURM_MEM_PER_NODE=64", "65536 4"},
        {"SLURM_MEM_PER_CPU=100 SLURM_CPUS_PER_TASK=2", "204800 4"},
        {"SLURM_MEM_PER_NODE=", "unlimited 4"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cmd[512], got[64] = "";
        snprintf(cmd, sizeof cmd,
                 "env -u SLURM_MEM_PER_NODE -u SLURM_MEM_PER_CPU -u MALLOC_ARENA_MAX %s %s "
                 "/bin/sh -c 'echo $(ulimit -v) $MALLOC_ARENA_MAX'",
                 cases[i][0], script);
        FILE *p = popen(cmd, "r");
        assert_non_null(p);
        assert_non_null(fgets(got, sizeof got, p));
        assert_int_equal(pclose(p), 0);
        got[strcspn(got, "\n")] = '\0';
        if (i == 2 && strcmp(got, cases[i][1]) != 0) {
            /* this shell itself runs under a limit: the script must not change it */
            char mine[32] = "";
            FILE *q = popen("/bin/sh -c 'ulimit -v'", "r");
            assert_non_null(q);
            assert_non_null(fgets(mine, sizeof mine, q));
            pclose(q);
            mine[strcspn(mine, "\n")] = '\0';
            assert_true(strncmp(got, mine, strlen(mine)) == 0);
            continue;
        }
        assert_string_equal(got, cases[i][1]);
    }

    const char *wargv[] = {"/bin/true", "process", "--job", "7", NULL};
    rp_exec_request rq = {.job_id = 7, .argv = wargv, .timeout_s = 60};
    char id[64];
    int pid = -1;
    assert_int_equal(ex.ops->submit(ex.self, &rq, id, sizeof id, &pid), 0);
    assert_string_equal(id, "101");
    assert_int_equal(pid, 0);
    rq.job_id = 8;
    assert_int_equal(ex.ops->submit(ex.self, &rq, id, sizeof id, &pid), 0);
    assert_string_equal(id, "102");

    char jp[128];
    snprintf(jp, sizeof jp, "%s/jobs", tmpdir);
    FILE *f = fopen(jp, "w");
    fprintf(f, "JobId=101 JobName=radprep-7 JobState=RUNNING Reason=None ExitCode=0:0 "
               "RunTime=00:00:03 TimeLimit=00:01:00\n"
               "JobId=1010 JobName=other JobState=COMPLETED Reason=None ExitCode=0:0 "
               "RunTime=00:00:01 TimeLimit=00:01:00\n"
               "JobId=102 JobName=radprep-8 JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15 "
               "RunTime=00:01:02 TimeLimit=00:01:00\n");
    fclose(f);

    rp_exec_job jobs[2];
    memset(jobs, 0, sizeof jobs);
    strcpy(jobs[0].id, "101");
    jobs[0].job_id = 7;
    strcpy(jobs[1].id, "102");
    jobs[1].job_id = 8;
    assert_int_equal(ex.ops->poll(ex.self, jobs, 2, 100.0), 0);
    assert_int_equal(jobs[0].ended, 0);
    assert_int_equal(jobs[1].ended, 1);
    assert_int_equal(jobs[1].result.end, RP_PROC_TIMEOUT);
    assert_string_equal(jobs[1].result.reason, "timeout after 60s (slurm TIMEOUT)");
    assert_true(jobs[1].result.wall_s == 62);
    assert_int_equal(count_lines("scontrol.calls"), 1); /* both jobs, one call */

    /* rate limit: a poll right after asks nothing */
    assert_int_equal(ex.ops->poll(ex.self, jobs, 1, 100.05), 0);
    assert_int_equal(count_lines("scontrol.calls"), 1);

    /* controller down: an error, nothing decided */
    char down[128];
    snprintf(down, sizeof down, "%s/down", tmpdir);
    fclose(fopen(down, "w"));
    jobs[0].ended = 0;
    assert_int_equal(ex.ops->poll(ex.self, jobs, 1, 101.0) < 0, 1);
    assert_int_equal(jobs[0].ended, 0);
    /* reattach while down: kept (asked again later), never forgotten */
    assert_int_equal(ex.ops->reattach(ex.self, "101", 7), 0);
    unlink(down);

    /* reattach: known → tracked; unknown → RP_ENOENT */
    assert_int_equal(ex.ops->reattach(ex.self, "101", 7), 0);
    assert_int_equal(ex.ops->reattach(ex.self, "555", 9), RP_ENOENT);
    assert_int_equal(ex.ops->reattach(ex.self, "1;rm", 9), RP_ENOENT);

    /* a job that vanished from scontrol (and no sacct) is lost after a few polls */
    strcpy(jobs[0].id, "103");
    jobs[0].ended = 0;
    double t = 200;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ex.ops->poll(ex.self, jobs, 1, t += 1), 0);
        assert_int_equal(jobs[0].ended, 0);
    }
    assert_int_equal(ex.ops->poll(ex.self, jobs, 1, t += 1), 0);
    assert_int_equal(jobs[0].ended, 1);
    assert_int_equal(jobs[0].result.end, RP_PROC_LOST);

    assert_int_equal(ex.ops->cancel(ex.self, "101", 0), 0);
    assert_int_equal(count_lines("scancel.calls"), 1);
    assert_int_equal(ex.ops->cancel(ex.self, "--all", 0), RP_EINVAL);

    /* sbatch saying no: nothing started */
    write_tool("sbatch", "echo 'sbatch: error: invalid partition specified' >&2; exit 1\n");
    assert_int_equal(ex.ops->submit(ex.self, &rq, id, sizeof id, &pid), RP_EIO);
    ex.ops->free(ex.self);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    rp_log_set_level(RP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_map_states),
        cmocka_unit_test(test_sbatch_argv),
        cmocka_unit_test(test_executor_fake_tools),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
