/* sched/exec_local — the local executor: fork/exec each worker on this machine under limits,
 * poll it without blocking, classify how it ended. No database here. */
#include "sched/sched.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "worker/worker.h"

extern char **environ;

const char *rp_signal_name(int signo, char *buf, size_t bufsz)
{
    static const struct {
        int no;
        const char *name;
    } names[] = {
        {SIGHUP, "SIGHUP"},   {SIGINT, "SIGINT"},   {SIGQUIT, "SIGQUIT"}, {SIGILL, "SIGILL"},
        {SIGTRAP, "SIGTRAP"}, {SIGABRT, "SIGABRT"}, {SIGBUS, "SIGBUS"},   {SIGFPE, "SIGFPE"},
        {SIGKILL, "SIGKILL"}, {SIGUSR1, "SIGUSR1"}, {SIGSEGV, "SIGSEGV"}, {SIGUSR2, "SIGUSR2"},
        {SIGPIPE, "SIGPIPE"}, {SIGALRM, "SIGALRM"}, {SIGTERM, "SIGTERM"}, {SIGXCPU, "SIGXCPU"},
        {SIGXFSZ, "SIGXFSZ"}, {SIGSYS, "SIGSYS"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (names[i].no == signo)
            return names[i].name;
    snprintf(buf, bufsz, "SIG%d", signo);
    return buf;
}

void rp_proc_classify(int wstatus, int timed_out, double timeout_s, rp_proc_result *res)
{
    char sb[16];
    res->exit_code = -1;
    res->signo = 0;
    if (timed_out) {
        res->end = RP_PROC_TIMEOUT;
        if (WIFSIGNALED(wstatus))
            res->signo = WTERMSIG(wstatus);
        else if (WIFEXITED(wstatus))
            res->exit_code = WEXITSTATUS(wstatus);
        snprintf(res->reason, sizeof res->reason, "timeout after %gs (%s)", timeout_s,
                 res->signo ? rp_signal_name(res->signo, sb, sizeof sb) : "exited on SIGTERM");
        return;
    }
    if (WIFEXITED(wstatus)) {
        res->exit_code = WEXITSTATUS(wstatus);
        if (res->exit_code == RP_JOB_EXIT_OOM) {
            res->end = RP_PROC_OOM;
            snprintf(res->reason, sizeof res->reason, "oom (memory limit reached, exit code %d)",
                     res->exit_code);
        } else {
            res->end = RP_PROC_EXITED;
            if (res->exit_code == 0)
                snprintf(res->reason, sizeof res->reason, "exit 0");
            else if (res->exit_code == 127)
                snprintf(res->reason, sizeof res->reason, "exit code 127 (worker not executable)");
            else if (res->exit_code == RP_JOB_EXIT_BADINPUT)
                snprintf(res->reason, sizeof res->reason,
                         "exit code 3 (input cannot be processed, see the job log)");
            else if (res->exit_code == RP_JOB_EXIT_GONE)
                snprintf(res->reason, sizeof res->reason, "exit code 5 (job or series gone)");
            else if (res->exit_code == RP_JOB_EXIT_CONFIG)
                snprintf(res->reason, sizeof res->reason,
                         "exit code 6 (configuration error, see the job log)");
            else if (res->exit_code == RP_JOB_EXIT_USAGE)
                snprintf(res->reason, sizeof res->reason, "exit code 2 (worker usage error)");
            else
                snprintf(res->reason, sizeof res->reason, "exit code %d", res->exit_code);
        }
        return;
    }
    if (WIFSIGNALED(wstatus)) {
        res->signo = WTERMSIG(wstatus);
        /* We never send SIGKILL except after a timeout, so a SIGKILL out of the blue comes
         * from the kernel's OOM killer (or an operator): say both. */
        if (res->signo == SIGKILL) {
            res->end = RP_PROC_OOM;
            snprintf(res->reason, sizeof res->reason,
                     "oom (killed by SIGKILL: kernel OOM killer or operator)");
        } else {
            res->end = RP_PROC_SIGNALED;
            snprintf(res->reason, sizeof res->reason, "signal %s%s",
                     rp_signal_name(res->signo, sb, sizeof sb),
                     WCOREDUMP(wstatus) ? " (core dumped)" : "");
        }
        return;
    }
    res->end = RP_PROC_SIGNALED;
    snprintf(res->reason, sizeof res->reason, "unknown wait status 0x%x", (unsigned)wstatus);
}

int rp_worker_bin(char *buf, size_t bufsz)
{
    const char *env = getenv("RP_WORKER_BIN");
    if (env && *env) {
        if (rp_strlcpy(buf, env, bufsz) != 0)
            return RP_EINVAL;
    } else {
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n < 0) {
            RP_ERROR("supervisor", "cannot read /proc/self/exe errno=%d", errno);
            return RP_ENOENT;
        }
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash)
            *slash = '\0';
        /* Installed: radprep sits beside radprepd. Build tree: build/node/radprepd and
         * build/cli/radprep. */
        if (snprintf(buf, bufsz, "%s/radprep", self) >= (int)bufsz)
            return RP_EINVAL;
        if (access(buf, X_OK) != 0 &&
            snprintf(buf, bufsz, "%s/../cli/radprep", self) < (int)bufsz && access(buf, X_OK) != 0)
            snprintf(buf, bufsz, "%s/radprep", self);
    }
    if (access(buf, X_OK) != 0) {
        char q[1100];
        RP_ERROR("supervisor", "worker binary not executable path=%s errno=%d",
                 rp_log_kv_quote(buf, q, sizeof q), errno);
        return RP_ENOENT;
    }
    return 0;
}

/* Build environ + extra (extra wins for the same key). Caller frees the array only. */
static char **build_env(const char *const extra[])
{
    size_t n = 0, m = 0;
    while (environ && environ[n])
        n++;
    while (extra && extra[m])
        m++;
    char **env = calloc(n + m + 1, sizeof *env);
    if (!env)
        return NULL;
    /* systemd's notification and watchdog variables belong to the daemon alone. */
    static const char *const drop[] = {"NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC",
                                       "LISTEN_FDS",    "LISTEN_PID",   "LISTEN_FDNAMES"};
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int overridden = 0;
        for (size_t j = 0; j < sizeof drop / sizeof drop[0] && !overridden; j++)
            overridden = strlen(drop[j]) == klen && strncmp(drop[j], environ[i], klen) == 0;
        for (size_t j = 0; j < m && !overridden; j++)
            overridden = strncmp(extra[j], environ[i], klen) == 0 && extra[j][klen] == '=';
        if (!overridden)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < m; j++)
        env[k++] = (char *)extra[j];
    env[k] = NULL;
    return env;
}

int rp_proc_spawn(const char *const argv[], const char *const extra_env[],
                  const rp_proc_limits *lim, const char *log_path, rp_proc *p)
{
    memset(p, 0, sizeof *p);
    p->lim = *lim;
    if (p->lim.kill_grace_s <= 0)
        p->lim.kill_grace_s = 5.0;

    int out_fd =
        open(log_path ? log_path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (out_fd < 0) {
        RP_ERROR("supervisor", "cannot open worker log path=%s errno=%d",
                 log_path ? log_path : "/dev/null", errno);
        return RP_EIO;
    }
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    char **env = build_env(extra_env);
    if (null_fd < 0 || !env) {
        close(out_fd);
        if (null_fd >= 0)
            close(null_fd);
        free(env);
        return env ? RP_EIO : RP_ENOMEM;
    }
    struct rlimit as = {RLIM_INFINITY, RLIM_INFINITY};
    if (lim->memory_mb > 0)
        as.rlim_cur = as.rlim_max = (rlim_t)lim->memory_mb * 1024 * 1024;
    const struct rlimit nocore = {0, 0};
    pid_t parent = getpid();

    pid_t pid = fork();
    if (pid == 0) {
        /* Child of a multi-threaded parent: async-signal-safe calls only until execve. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126); /* the daemon died between fork and prctl */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGCHLD, SIG_DFL);
        dup2(null_fd, 0);
        dup2(out_fd, 1);
        dup2(out_fd, 2);
        /* Drop every other descriptor (listening sockets, database): the worker opens its own. */
        if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
            for (int fd = 3; fd < 4096; fd++)
                close(fd);
        setrlimit(RLIMIT_AS, &as);
        setrlimit(RLIMIT_CORE, &nocore);
        if (lim->nice > 0) {
            /* relative to the node's own niceness, as nice(1): a node started under nice
             * keeps its jobs below itself */
            int base = getpriority(PRIO_PROCESS, 0);
            setpriority(PRIO_PROCESS, 0, base + lim->nice > 19 ? 19 : base + lim->nice);
            /* and the lowest best-effort I/O priority: the store's fsyncs go first */
            syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, (2 << 13) | 7);
        }
        execve(argv[0], (char *const *)argv, env);
        _exit(127);
    }
    int saved = errno;
    close(out_fd);
    close(null_fd);
    free(env);
    if (pid < 0) {
        RP_ERROR("supervisor", "fork failed errno=%d", saved);
        return RP_EIO;
    }
    /* Also from the parent, so that a kill(-pid) right after spawn reaches the group. */
    setpgid(pid, pid);
    p->pid = pid;
    p->started_mono = rp_mono_s();
    p->started_wall = rp_now_s();
    return 0;
}

void rp_proc_terminate(rp_proc *p, double now_mono)
{
    if (p->pid <= 0 || p->term_sent_mono > 0)
        return;
    kill(-p->pid, SIGTERM);
    kill(p->pid, SIGTERM);
    p->term_sent_mono = now_mono;
}

int rp_proc_poll(rp_proc *p, double now_mono, rp_proc_result *res)
{
    if (p->pid <= 0)
        return RP_EINTERNAL;
    int st = 0;
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid) {
        /* Take any grandchildren still in the group down with it. */
        kill(-p->pid, SIGKILL);
        rp_proc_classify(st, p->timed_out, p->lim.timeout_s, res);
        res->wall_s = now_mono - p->started_mono;
        p->pid = 0;
        return 1;
    }
    if (r < 0 && errno != EINTR) {
        /* ECHILD: someone set SIGCHLD to SIG_IGN and the kernel reaped it for us. */
        RP_ERROR("supervisor", "waitpid failed pid=%d errno=%d", (int)p->pid, errno);
        memset(res, 0, sizeof *res);
        res->end = RP_PROC_SIGNALED;
        res->exit_code = -1;
        res->wall_s = now_mono - p->started_mono;
        snprintf(res->reason, sizeof res->reason, "lost track of worker (waitpid errno %d)", errno);
        p->pid = 0;
        return 1;
    }
    if (p->lim.timeout_s > 0 && !p->timed_out && now_mono - p->started_mono >= p->lim.timeout_s) {
        p->timed_out = 1;
        rp_proc_terminate(p, now_mono);
    }
    if (p->term_sent_mono > 0 && !p->kill_sent &&
        now_mono - p->term_sent_mono >= p->lim.kill_grace_s) {
        kill(-p->pid, SIGKILL);
        kill(p->pid, SIGKILL);
        p->kill_sent = 1;
    }
    return 0;
}

int rp_proc_wait(rp_proc *p, rp_proc_result *res)
{
    for (;;) {
        int r = rp_proc_poll(p, rp_mono_s(), res);
        if (r != 0)
            return r < 0 ? r : 0;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int rp_supervisor_omp_share(int cores, int running)
{
    int k = cores / (running + 1);
    return k > 0 ? k : 1;
}

/* ---- the executor ---- */

typedef struct local_exec {
    rp_proc *procs; /* in flight; pid 0 = free entry */
    size_t n;
} local_exec;

static int n_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static rp_proc *find(local_exec *x, const char *id)
{
    char *end = NULL;
    long pid = strtol(id, &end, 10);
    if (!*id || *end || pid <= 0)
        return NULL;
    for (size_t i = 0; i < x->n; i++)
        if (x->procs[i].pid == (pid_t)pid)
            return &x->procs[i];
    return NULL;
}

static int running(const local_exec *x)
{
    int k = 0;
    for (size_t i = 0; i < x->n; i++)
        k += x->procs[i].pid > 0;
    return k;
}

static int local_submit(void *self, const rp_exec_request *rq, char *id, size_t idsz, int *pid)
{
    local_exec *x = self;
    rp_proc *slot = NULL;
    for (size_t i = 0; i < x->n && !slot; i++)
        if (x->procs[i].pid <= 0)
            slot = &x->procs[i];
    if (!slot) {
        rp_proc *np = realloc(x->procs, (x->n + 1) * sizeof *np);
        if (!np)
            return RP_ENOMEM;
        x->procs = np;
        slot = &x->procs[x->n++];
        memset(slot, 0, sizeof *slot);
    }
    /* The job's rule may ask for its own memory, time and CPUs: they win over the node's. */
    rp_proc_limits lim = {.memory_mb = rq->res.mem_mb > 0 ? rq->res.mem_mb : rq->memory_mb,
                          .timeout_s = rq->res.time_limit_s > 0 ? rq->res.time_limit_s
                                                                : rq->timeout_s,
                          .kill_grace_s = 5.0,
                          .nice = 10};
    /* Fewer malloc arenas: each reserves 64 MiB of address space per thread, which counts
     * against RLIMIT_AS without being memory the job uses. And a share of the cores for the
     * pipeline's OpenMP loops: a job alone gets them all, the next ones what is left, so
     * that `workers` jobs do not run workers x cores threads. OpenMP threads that spin while
     * waiting steal the cores from receiving and from other jobs, so they sleep instead
     * (measured: the X-ray chain runs 1.3-2x faster on a busy 2-core machine). The daemon's
     * own environment wins when it sets any of these. */
    char omp[48];
    snprintf(omp, sizeof omp, "OMP_NUM_THREADS=%d",
             rq->res.cpus > 0 ? rq->res.cpus : rp_supervisor_omp_share(n_cores(), running(x)));
    const char *env[4];
    int e = 0;
    if (!getenv("MALLOC_ARENA_MAX"))
        env[e++] = "MALLOC_ARENA_MAX=4";
    if (!getenv("OMP_WAIT_POLICY"))
        env[e++] = "OMP_WAIT_POLICY=passive";
    if (!getenv("OMP_NUM_THREADS") || rq->res.cpus > 0)
        env[e++] = omp;
    env[e] = NULL;
    int rc = rp_proc_spawn(rq->argv, env, &lim, rq->log_path, slot);
    if (rc != 0) {
        slot->pid = 0;
        return rc;
    }
    snprintf(id, idsz, "%d", (int)slot->pid);
    *pid = (int)slot->pid;
    return 0;
}

static int local_poll(void *self, rp_exec_job *jobs, size_t n, double now_mono)
{
    local_exec *x = self;
    for (size_t i = 0; i < n; i++) {
        rp_proc *p = find(x, jobs[i].id);
        if (!p) {
            memset(&jobs[i].result, 0, sizeof jobs[i].result);
            jobs[i].result.end = RP_PROC_LOST;
            jobs[i].result.exit_code = -1;
            snprintf(jobs[i].result.reason, sizeof jobs[i].result.reason,
                     "lost track of worker %s", jobs[i].id);
            jobs[i].ended = 1;
            continue;
        }
        if (rp_proc_poll(p, now_mono, &jobs[i].result) == 1)
            jobs[i].ended = 1; /* rp_proc_poll cleared p->pid: the entry is free again */
    }
    return 0;
}

static int local_cancel(void *self, const char *id, double now_mono)
{
    rp_proc *p = find(self, id);
    if (!p)
        return RP_ENOENT;
    /* a stop, not a timeout: the grace is shorter so the node stops in time */
    p->lim.kill_grace_s = 3.0;
    rp_proc_terminate(p, now_mono);
    return 0;
}

static void local_free(void *self)
{
    local_exec *x = self;
    if (!x)
        return;
    free(x->procs);
    free(x);
}

static const rp_executor_ops local_ops = {
    .name = "local",
    .submit = local_submit,
    .poll = local_poll,
    .cancel = local_cancel,
    .reattach = NULL, /* PR_SET_PDEATHSIG: a worker never outlives its daemon */
    .free = local_free,
};

int rp_executor_local(rp_executor *out)
{
    local_exec *x = calloc(1, sizeof *x);
    if (!x)
        return RP_ENOMEM;
    out->ops = &local_ops;
    out->self = x;
    return 0;
}
