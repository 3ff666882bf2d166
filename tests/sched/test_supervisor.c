/* Unit tests for the supervisor's process runner: real child processes (/bin/sh), real
 * limits, real signals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/common.h"
#include "sched/sched.h"

static char tmpdir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rp_test_sup_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static rp_proc_result run_sh(const char *script, const rp_proc_limits *lim, const char *log)
{
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    rp_proc p;
    rp_proc_result res;
    memset(&res, 0, sizeof res);
    assert_int_equal(rp_proc_spawn(argv, NULL, lim, log, &p), 0);
    assert_true(p.pid > 0);
    assert_int_equal(rp_proc_wait(&p, &res), 0);
    assert_int_equal(p.pid, 0);
    return res;
}

static void test_exit_codes(void **state)
{
    (void)state;
    rp_proc_limits lim = {0};
    rp_proc_result r = run_sh("exit 0", &lim, NULL);
    assert_int_equal(r.end, RP_PROC_EXITED);
    assert_int_equal(r.exit_code, 0);
    assert_string_equal(r.reason, "exit 0");

    r = run_sh("exit 3", &lim, NULL);
    assert_int_equal(r.end, RP_PROC_EXITED);
    assert_int_equal(r.exit_code, 3);
    assert_string_equal(r.reason, "exit code 3 (input cannot be processed, see the job log)");

    r = run_sh("exit 1", &lim, NULL);
    assert_string_equal(r.reason, "exit code 1");

    r = run_sh("exit 4", &lim, NULL);
    assert_int_equal(r.end, RP_PROC_OOM);
    assert_non_null(strstr(r.reason, "oom"));
}

static void test_signals(void **state)
{
    (void)state;
    rp_proc_limits lim = {0};
    rp_proc_result r = run_sh("kill -SEGV $$", &lim, NULL);
    assert_int_equal(r.end, RP_PROC_SIGNALED);
    assert_int_equal(r.signo, SIGSEGV);
    assert_string_equal(r.reason, "signal SIGSEGV");

    r = run_sh("kill -ABRT $$", &lim, NULL);
    assert_int_equal(r.signo, SIGABRT);
    assert_string_equal(r.reason, "signal SIGABRT");

    /* A SIGKILL we did not send: the kernel's OOM killer is the usual sender. */
    r = run_sh("kill -KILL $$", &lim, NULL);
    assert_int_equal(r.end, RP_PROC_OOM);
    assert_int_equal(r.signo, SIGKILL);
}

static void test_timeout_term(void **state)
{
    (void)state;
    rp_proc_limits lim = {.timeout_s = 0.3, .kill_grace_s = 5};
    double t0 = rp_mono_s();
    rp_proc_result r = run_sh("sleep 30", &lim, NULL);
    double dt = rp_mono_s() - t0;
    assert_int_equal(r.end, RP_PROC_TIMEOUT);
    assert_int_equal(r.signo, SIGTERM);
    assert_true(dt >= 0.3 && dt < 3.0);
    assert_non_null(strstr(r.reason, "timeout after 0.3s"));
}

static void test_timeout_kill(void **state)
{
    (void)state;
    /* A worker that ignores SIGTERM is killed after the grace period. */
    rp_proc_limits lim = {.timeout_s = 0.2, .kill_grace_s = 0.3};
    double t0 = rp_mono_s();
    rp_proc_result r = run_sh("trap '' TERM; while :; do sleep 0.05; done", &lim, NULL);
    double dt = rp_mono_s() - t0;
    assert_int_equal(r.end, RP_PROC_TIMEOUT);
    assert_int_equal(r.signo, SIGKILL);
    assert_true(dt >= 0.5 && dt < 4.0);
    assert_non_null(strstr(r.reason, "SIGKILL"));
}

static void test_limits_and_log(void **state)
{
    (void)state;
    char log[300];
    snprintf(log, sizeof log, "%s/w.log", tmpdir);
    rp_proc_limits lim = {.memory_mb = 256, .nice = 7};
    /* ulimit -v is in KiB; `nice` alone prints the niceness; fd 5 must not be inherited. */
    rp_proc_result r =
        run_sh("echo as=$(ulimit -v); echo nice=$(nice); echo core=$(ulimit -c);"
               " echo pgid=$(ps -o pgid= -p $$ | tr -d ' ') pid=$$; read x || echo stdin=eof;"
               " echo io=$(ionice -p $$);"
               " echo env=$RP_X",
               &lim, log);
    (void)r;
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(rp_read_file(log, &text, &len), 0);
    assert_non_null(strstr(text, "as=262144\n"));
    int base_nice = getpriority(PRIO_PROCESS, 0);
    char want[32];
    snprintf(want, sizeof want, "nice=%d\n", base_nice + 7 > 19 ? 19 : base_nice + 7);
    assert_non_null(strstr(text, want));
    assert_non_null(strstr(text, "core=0\n"));
    assert_non_null(strstr(text, "stdin=eof\n"));
    assert_non_null(strstr(text, "io=best-effort: prio 7\n"));
    /* the worker leads its own process group */
    int pgid = 0, pid = 0;
    const char *pg = strstr(text, "pgid=");
    if (pg)
        sscanf(pg, "pgid=%d pid=%d", &pgid, &pid);
    assert_true(pgid > 0 && pgid == pid);
    free(text);

    /* extra environment reaches the child; systemd's notify socket does not */
    setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
    const char *argv[] = {"/bin/sh", "-c", "echo env=$RP_X notify=${NOTIFY_SOCKET:-none}", NULL};
    const char *env[] = {"RP_X=hello", NULL};
    rp_proc p;
    rp_proc_limits none = {0};
    assert_int_equal(rp_proc_spawn(argv, env, &none, log, &p), 0);
    assert_int_equal(rp_proc_wait(&p, &r), 0);
    assert_int_equal(rp_read_file(log, &text, &len), 0);
    assert_non_null(strstr(text, "env=hello notify=none\n"));
    unsetenv("NOTIFY_SOCKET");
    free(text);
}

static void test_exec_failure(void **state)
{
    (void)state;
    const char *argv[] = {"/nonexistent/radprep", NULL};
    rp_proc p;
    rp_proc_result r;
    rp_proc_limits lim = {0};
    assert_int_equal(rp_proc_spawn(argv, NULL, &lim, NULL, &p), 0);
    assert_int_equal(rp_proc_wait(&p, &r), 0);
    assert_int_equal(r.exit_code, 127);
    assert_non_null(strstr(r.reason, "127"));
}

static void test_terminate_group(void **state)
{
    (void)state;
    /* Terminating a worker also ends what it started (same process group). */
    char pidfile[300];
    snprintf(pidfile, sizeof pidfile, "%s/grandchild.pid", tmpdir);
    char script[600];
    snprintf(script, sizeof script, "sleep 60 & echo $! > %s; wait", pidfile);
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    rp_proc p;
    rp_proc_result r;
    rp_proc_limits lim = {.kill_grace_s = 0.5};
    assert_int_equal(rp_proc_spawn(argv, NULL, &lim, NULL, &p), 0);
    pid_t gc = 0;
    for (int i = 0; i < 200 && gc <= 0; i++) {
        usleep(10000);
        FILE *f = fopen(pidfile, "r");
        if (f) {
            if (fscanf(f, "%d", &gc) != 1)
                gc = 0;
            fclose(f);
        }
    }
    assert_true(gc > 0);
    rp_proc_terminate(&p, rp_mono_s());
    assert_int_equal(rp_proc_wait(&p, &r), 0);
    assert_int_equal(r.end, RP_PROC_SIGNALED);
    assert_int_equal(r.signo, SIGTERM);
    /* gone, or a zombie waiting for whichever process reaps orphans here */
    int alive = 1;
    for (int i = 0; i < 100 && alive; i++) {
        char path[64], st[256] = "";
        snprintf(path, sizeof path, "/proc/%d/stat", (int)gc);
        FILE *f = fopen(path, "r");
        if (!f) {
            alive = 0;
            break;
        }
        size_t n = fread(st, 1, sizeof st - 1, f);
        fclose(f);
        st[n] = '\0';
        const char *rp = strrchr(st, ')');
        alive = !(rp && rp[1] == ' ' && rp[2] == 'Z');
        if (alive)
            usleep(10000);
    }
    assert_false(alive);
}

static void test_backoff_and_names(void **state)
{
    (void)state;
    assert_true(rp_db_backoff_s(0, 5, 600) == 0);
    assert_true(rp_db_backoff_s(1, 5, 600) == 5);
    assert_true(rp_db_backoff_s(2, 5, 600) == 10);
    assert_true(rp_db_backoff_s(4, 5, 600) == 40);
    assert_true(rp_db_backoff_s(20, 5, 600) == 600);
    assert_true(rp_db_backoff_s(1000, 5, 600) == 600);
    char b[16];
    assert_string_equal(rp_signal_name(SIGSEGV, b, sizeof b), "SIGSEGV");
    assert_string_equal(rp_signal_name(SIGKILL, b, sizeof b), "SIGKILL");
    assert_string_equal(rp_signal_name(63, b, sizeof b), "SIG63");
    rp_proc_result r;
    rp_proc_classify(0, 0, 0, &r); /* exited 0 */
    assert_int_equal(r.end, RP_PROC_EXITED);
}

static void test_worker_bin(void **state)
{
    (void)state;
    char buf[1024];
    setenv("RP_WORKER_BIN", "/bin/sh", 1);
    assert_int_equal(rp_worker_bin(buf, sizeof buf), 0);
    assert_string_equal(buf, "/bin/sh");
    setenv("RP_WORKER_BIN", "/nonexistent/radprep", 1);
    assert_int_equal(rp_worker_bin(buf, sizeof buf), RP_ENOENT);
    unsetenv("RP_WORKER_BIN");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exit_codes),      cmocka_unit_test(test_signals),
        cmocka_unit_test(test_timeout_term),    cmocka_unit_test(test_timeout_kill),
        cmocka_unit_test(test_limits_and_log),  cmocka_unit_test(test_exec_failure),
        cmocka_unit_test(test_terminate_group), cmocka_unit_test(test_backoff_and_names),
        cmocka_unit_test(test_worker_bin),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
