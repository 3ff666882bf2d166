/* sched/exec_slurm — the Slurm executor: each job is submitted with `sbatch --parsable`, the
 * state of every job in flight comes from one `scontrol show job -o` call (sacct as a
 * fallback for jobs slurmctld already forgot), cancel is `scancel`. Slurm's CLI tools are run
 * with fork/exec and argv arrays, never through a shell; Slurm does the scheduling. No
 * database here: the supervisor keeps the Slurm job id in jobs.exec_id. */
#include "sched/sched.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "worker/worker.h"

extern char **environ;

#define CLI_TIMEOUT_S 20.0 /* a slurmctld that does not answer: give up, decide nothing */
#define MISSING_POLLS 3    /* polls a job may be unknown to Slurm before it counts as lost */

typedef struct tracked {
    char id[64];
    int missing; /* consecutive polls in which neither scontrol nor sacct knew it */
} tracked;

typedef struct slurm_exec {
    rp_slurm_opts o;
    char partition[64], account[64], sbatch_args[512], bin_dir[256];
    char script[RP_PATH_MAX];
    double last_poll_mono;
    tracked *t;
    size_t nt, capt;
} slurm_exec;

/* ---- running the CLI tools ---- */

int rp_slurm_run(const char *const argv[], char *out, size_t outsz, int *status)
{
    return rp_slurm_run_for(argv, out, outsz, status, CLI_TIMEOUT_S);
}

int rp_slurm_run_for(const char *const argv[], char *out, size_t outsz, int *status,
                     double timeout_s)
{
    int pfd[2];
    if (outsz == 0 || pipe2(pfd, O_CLOEXEC) != 0)
        return RP_EIO;
    out[0] = '\0';
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return RP_EIO;
    }
    if (pid == 0) {
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0)
            dup2(nul, 0);
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        signal(SIGPIPE, SIG_DFL);
        execve(argv[0], (char *const *)argv, environ);
        _exit(127);
    }
    close(pfd[1]);
    size_t len = 0;
    double t0 = rp_mono_s();
    int killed = 0;
    for (;;) {
        struct pollfd p = {pfd[0], POLLIN, 0};
        double left = timeout_s - (rp_mono_s() - t0);
        int left_ms = left > 86400 ? 86400000 : (int)(left * 1000);
        if (left_ms <= 0) {
            kill(pid, SIGKILL);
            killed = 1;
            break;
        }
        int r = poll(&p, 1, left_ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        char buf[4096];
        ssize_t n = read(pfd[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size_t take = (size_t)n < outsz - 1 - len ? (size_t)n : outsz - 1 - len;
        memcpy(out + len, buf, take);
        len += take;
        out[len] = '\0';
    }
    close(pfd[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (killed) {
        RP_WARN("slurm", "command timed out cmd=%s timeout_s=%g", argv[0], timeout_s);
        return RP_ETIMEOUT;
    }
    *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return 0;
}

static void tool(const slurm_exec *x, const char *name, char *buf, size_t bufsz)
{
    snprintf(buf, bufsz, "%s/%s", x->bin_dir[0] ? x->bin_dir : "/usr/bin", name);
}

/* ---- pure parts (exposed for tests) ---- */

int rp_slurm_sbatch_argv(const rp_slurm_opts *o, const rp_exec_request *rq, const char *script,
                         char *store, size_t storesz, const char **argv, size_t maxargs)
{
    size_t a = 0, used = 0;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        if (a + 2 >= maxargs)                                                                      \
            return RP_EINVAL;                                                                      \
        int n_ = snprintf(store + used, storesz - used, __VA_ARGS__);                              \
        if (n_ < 0 || (size_t)n_ >= storesz - used)                                                \
            return RP_EINVAL;                                                                      \
        argv[a++] = store + used;                                                                  \
        used += (size_t)n_ + 1;                                                                    \
    } while (0)
    PUT("%s/sbatch", o->bin_dir && o->bin_dir[0] ? o->bin_dir : "/usr/bin");
    PUT("--parsable");
    PUT("--job-name=radprep-%lld", rq->job_id);
    if (rq->log_path) {
        PUT("--output=%s", rq->log_path);
        PUT("--open-mode=append");
    }
    /* the job's rule first, then [executor], then the node's job limits */
    double limit = rq->res.time_limit_s > 0 ? rq->res.time_limit_s
                   : o->time_limit_s > 0    ? o->time_limit_s
                                            : rq->timeout_s;
    if (limit > 0)
        PUT("--time=%lld", (long long)ceil(limit / 60.0)); /* minutes, Slurm's finest grain */
    long long mem = rq->res.mem_mb > 0 ? rq->res.mem_mb
                    : o->mem_mb > 0    ? o->mem_mb
                                       : rq->memory_mb;
    if (mem > 0)
        PUT("--mem=%lld", mem);
    int cpus = rq->res.cpus > 0 ? rq->res.cpus : o->cpus_per_task;
    if (cpus > 0)
        PUT("--cpus-per-task=%d", cpus);
    if (o->partition && o->partition[0])
        PUT("--partition=%s", o->partition);
    if (o->account && o->account[0])
        PUT("--account=%s", o->account);
    if (o->sbatch_args && o->sbatch_args[0]) {
        char tmp[512];
        rp_strlcpy(tmp, o->sbatch_args, sizeof tmp);
        char *save = NULL;
        for (char *w = strtok_r(tmp, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
            PUT("%s", w);
    }
    PUT("%s", script);
#undef PUT
    for (size_t i = 0; rq->argv[i]; i++) {
        if (a + 1 >= maxargs)
            return RP_EINVAL;
        argv[a++] = rq->argv[i];
    }
    argv[a] = NULL;
    return 0;
}

/* Value of `key` (e.g. "JobState=") in one `scontrol -o` line into buf; 0 or -1. A value
 * ends at the next blank. */
static int field(const char *line, const char *key, char *buf, size_t bufsz)
{
    size_t kl = strlen(key);
    for (const char *p = line; (p = strstr(p, key)) != NULL; p += kl) {
        if (p != line && p[-1] != ' ')
            continue;
        p += kl;
        size_t n = strcspn(p, " \n");
        if (n >= bufsz)
            n = bufsz - 1;
        memcpy(buf, p, n);
        buf[n] = '\0';
        return 0;
    }
    return -1;
}

/* "[D-]HH:MM:SS" or "MM:SS" into seconds (0 when unreadable). */
static double slurm_duration(const char *s)
{
    int d = 0, h = 0, m = 0, sec = 0;
    if (sscanf(s, "%d-%d:%d:%d", &d, &h, &m, &sec) == 4)
        return d * 86400.0 + h * 3600.0 + m * 60.0 + sec;
    if (sscanf(s, "%d:%d:%d", &h, &m, &sec) == 3)
        return h * 3600.0 + m * 60.0 + sec;
    if (sscanf(s, "%d:%d", &m, &sec) == 2)
        return m * 60.0 + sec;
    return 0;
}

int rp_slurm_map_state(const char *state, const char *exit_code, double limit_s,
                       rp_proc_result *res)
{
    static const char *const live[] = {
        "PENDING",       "CONFIGURING",  "RUNNING",   "COMPLETING",    "SUSPENDED", "REQUEUED",
        "REQUEUE_HOLD",  "REQUEUE_FED",  "RESIZING",  "SIGNALING",     "STAGE_OUT", "STOPPED",
        "RESV_DEL_HOLD", "SPECIAL_EXIT", "UPDATE_DB", "POWER_UP_NODE", NULL};
    char st[32];
    rp_strlcpy(st, state, sizeof st);
    st[strcspn(st, "+ ")] = '\0'; /* "CANCELLED+" / "CANCELLED by 0" */
    for (int i = 0; live[i]; i++)
        if (strcmp(st, live[i]) == 0)
            return 0;
    int code = 0, sig = 0;
    if (exit_code)
        sscanf(exit_code, "%d:%d", &code, &sig);
    memset(res, 0, sizeof *res);
    res->exit_code = -1;
    char sb[16];
    if (strcmp(st, "COMPLETED") == 0 || (strcmp(st, "FAILED") == 0 && sig == 0)) {
        /* The worker's exit code says what happened, as with the local executor. */
        rp_proc_classify(code << 8, 0, 0, res);
        if (strcmp(st, "FAILED") == 0 && code == 0) {
            res->end = RP_PROC_LOST; /* failed before the worker ran (prolog, spank) */
            snprintf(res->reason, sizeof res->reason, "slurm FAILED before the worker ran");
        }
    } else if (strcmp(st, "FAILED") == 0 && sig == SIGKILL) {
        /* Without cgroups Slurm's memory enforcement (JobAcctGatherParams=OverMemoryKill)
         * kills with SIGKILL and reports FAILED, not OUT_OF_MEMORY; time limits and scancel
         * have states of their own, so this is memory, as the local executor says. */
        res->end = RP_PROC_OOM;
        res->signo = sig;
        snprintf(res->reason, sizeof res->reason,
                 "oom (slurm FAILED by SIGKILL: memory limit enforcement or kernel OOM killer)");
    } else if (strcmp(st, "FAILED") == 0) {
        res->end = RP_PROC_SIGNALED;
        res->signo = sig;
        snprintf(res->reason, sizeof res->reason, "signal %s (slurm FAILED)",
                 rp_signal_name(sig, sb, sizeof sb));
    } else if (strcmp(st, "TIMEOUT") == 0 || strcmp(st, "DEADLINE") == 0) {
        res->end = RP_PROC_TIMEOUT;
        res->signo = sig ? sig : SIGTERM;
        snprintf(res->reason, sizeof res->reason, "timeout after %gs (slurm %s)", limit_s, st);
    } else if (strcmp(st, "OUT_OF_MEMORY") == 0) {
        res->end = RP_PROC_OOM;
        res->exit_code = code;
        res->signo = sig;
        snprintf(res->reason, sizeof res->reason, "oom (slurm OUT_OF_MEMORY)");
    } else if (strcmp(st, "CANCELLED") == 0) {
        res->end = RP_PROC_SIGNALED;
        res->signo = sig ? sig : SIGTERM;
        snprintf(res->reason, sizeof res->reason, "cancelled (slurm CANCELLED)");
    } else {
        /* NODE_FAIL, PREEMPTED, BOOT_FAIL, REVOKED or a state this version does not know: the
         * job is not at fault, it is retried. */
        res->end = RP_PROC_LOST;
        snprintf(res->reason, sizeof res->reason, "lost (slurm %s)", st);
    }
    return 1;
}

/* ---- the executor ---- */

static tracked *find_t(slurm_exec *x, const char *id)
{
    for (size_t i = 0; i < x->nt; i++)
        if (strcmp(x->t[i].id, id) == 0)
            return &x->t[i];
    return NULL;
}

static int track(slurm_exec *x, const char *id)
{
    if (find_t(x, id))
        return 0;
    if (x->nt == x->capt) {
        size_t cap = x->capt ? x->capt * 2 : 16;
        tracked *nt = realloc(x->t, cap * sizeof *nt);
        if (!nt)
            return RP_ENOMEM;
        x->t = nt;
        x->capt = cap;
    }
    memset(&x->t[x->nt], 0, sizeof x->t[0]);
    rp_strlcpy(x->t[x->nt++].id, id, sizeof x->t[0].id);
    return 0;
}

static void untrack(slurm_exec *x, const char *id)
{
    tracked *t = find_t(x, id);
    if (t)
        *t = x->t[--x->nt];
}

static int id_ok(const char *id)
{
    if (!*id)
        return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || *p == '_'))
            return 0;
    return 1;
}

static int slurm_submit(void *self, const rp_exec_request *rq, char *id, size_t idsz, int *pid)
{
    slurm_exec *x = self;
    char store[4096], out[2048];
    const char *argv[96];
    *pid = 0;
    int rc = rp_slurm_sbatch_argv(&x->o, rq, x->script, store, sizeof store, argv, 96);
    if (rc != 0)
        return rc;
    int st = -1;
    if ((rc = rp_slurm_run(argv, out, sizeof out, &st)) != 0)
        return rc == RP_ETIMEOUT ? RP_EBUSY : rc;
    char q[600];
    if (st != 0) {
        RP_WARN("slurm", "sbatch failed job=%lld status=%d out=%s", rq->job_id, st,
                rp_log_kv_quote(out, q, sizeof q));
        /* A controller that cannot be reached is a wait, not a failure of the job. */
        if (strstr(out, "Unable to contact") || strstr(out, "onnection refused") ||
            strstr(out, "connect failure") || strstr(out, "timed out"))
            return RP_EBUSY;
        return RP_EIO;
    }
    /* --parsable: "JOBID" or "JOBID;CLUSTER"; warnings may come before it on other lines. */
    char *last = NULL, *save = NULL;
    for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        last = l;
    if (!last)
        return RP_EIO;
    last[strcspn(last, ";")] = '\0';
    if (!id_ok(last) || rp_strlcpy(id, last, idsz) != 0) {
        RP_WARN("slurm", "sbatch answered no job id job=%lld out=%s", rq->job_id,
                rp_log_kv_quote(last, q, sizeof q));
        return RP_EIO;
    }
    RP_INFO("slurm", "submitted job=%lld slurm_job=%s", rq->job_id, id);
    return track(x, id);
}

/* For jobs scontrol no longer knows: ask sacct (works where accounting is configured). */
static void ask_sacct(slurm_exec *x, rp_exec_job *jobs, size_t n, const char *ids)
{
    char bin[300], jarg[1100], out[16384];
    tool(x, "sacct", bin, sizeof bin);
    snprintf(jarg, sizeof jarg, "--jobs=%s", ids);
    const char *argv[] = {bin, "-n", "-P", "-X", "-o", "JobID,State,ExitCode,Elapsed", jarg, NULL};
    int st = -1;
    if (rp_slurm_run(argv, out, sizeof out, &st) != 0 || st != 0)
        return;
    char *save = NULL;
    for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        char jid[64] = "", state[64] = "", ec[32] = "", el[32] = "";
        if (sscanf(l, "%63[^|]|%63[^|]|%31[^|]|%31s", jid, state, ec, el) < 3)
            continue;
        for (size_t i = 0; i < n; i++) {
            if (jobs[i].ended || strcmp(jobs[i].id, jid) != 0)
                continue;
            tracked *t = find_t(x, jid);
            if (t)
                t->missing = 0;
            if (rp_slurm_map_state(state, ec, x->o.time_limit_s, &jobs[i].result) == 1) {
                jobs[i].result.wall_s = slurm_duration(el);
                jobs[i].ended = 1;
                untrack(x, jid);
            }
        }
    }
}

static int slurm_poll(void *self, rp_exec_job *jobs, size_t n, double now_mono)
{
    slurm_exec *x = self;
    /* The supervisor polls often while jobs run; the controller is asked at most every poll_s. */
    if (now_mono - x->last_poll_mono < x->o.poll_s)
        return 0;
    x->last_poll_mono = now_mono;
    char bin[300];
    tool(x, "scontrol", bin, sizeof bin);
    size_t outsz = 65536 + n * 2048;
    char *out = malloc(outsz);
    if (!out)
        return RP_ENOMEM;
    /* All jobs in one call: one line each. */
    const char *argv[] = {bin, "-o", "show", "job", NULL};
    int st = -1;
    int rc = rp_slurm_run(argv, out, outsz, &st);
    if (rc == 0 && st != 0 && !strstr(out, "No jobs in the system"))
        rc = RP_EIO;
    if (rc != 0) {
        char q[300];
        out[200] = '\0';
        RP_WARN("slurm", "cannot ask slurmctld rc=%s status=%d out=%s", rp_strerror(rc), st,
                rp_log_kv_quote(out, q, sizeof q));
        free(out);
        return rc == 0 ? RP_EIO : rc;
    }
    char missing[1024] = "";
    size_t ml = 0;
    for (size_t i = 0; i < n; i++) {
        char key[80];
        snprintf(key, sizeof key, "JobId=%s ", jobs[i].id);
        const char *line = strstr(out, key);
        while (line && line != out && line[-1] != '\n')
            line = strstr(line + 1, key);
        if (!line) {
            int w = snprintf(missing + ml, sizeof missing - ml, "%s%s", ml ? "," : "", jobs[i].id);
            if (w > 0 && (size_t)w < sizeof missing - ml)
                ml += (size_t)w;
            continue;
        }
        char state[64] = "", ec[32] = "", runt[32] = "", tl[32] = "";
        const char *eol = strchr(line, '\n');
        char one[4096];
        size_t len = eol ? (size_t)(eol - line) : strlen(line);
        if (len >= sizeof one)
            len = sizeof one - 1;
        memcpy(one, line, len);
        one[len] = '\0';
        field(one, "JobState=", state, sizeof state);
        field(one, "ExitCode=", ec, sizeof ec);
        field(one, "RunTime=", runt, sizeof runt);
        field(one, "TimeLimit=", tl, sizeof tl);
        tracked *t = find_t(x, jobs[i].id);
        if (t)
            t->missing = 0;
        if (rp_slurm_map_state(state, ec, slurm_duration(tl), &jobs[i].result) == 1) {
            jobs[i].result.wall_s = slurm_duration(runt);
            jobs[i].ended = 1;
            untrack(x, jobs[i].id);
        }
    }
    free(out);
    if (ml) {
        ask_sacct(x, jobs, n, missing);
        for (size_t i = 0; i < n; i++) {
            if (jobs[i].ended || !strstr(missing, jobs[i].id))
                continue;
            tracked *t = find_t(x, jobs[i].id);
            if (!t && track(x, jobs[i].id) == 0)
                t = find_t(x, jobs[i].id);
            if (t && ++t->missing < MISSING_POLLS)
                continue;
            /* Purged by slurmctld (MinJobAge) with no accounting to ask: a worker that
             * succeeded recorded it itself, so the node's record decides (see record_end). */
            memset(&jobs[i].result, 0, sizeof jobs[i].result);
            jobs[i].result.end = RP_PROC_LOST;
            jobs[i].result.exit_code = -1;
            snprintf(jobs[i].result.reason, sizeof jobs[i].result.reason,
                     "lost (slurm job %s unknown to scontrol and sacct)", jobs[i].id);
            jobs[i].ended = 1;
            untrack(x, jobs[i].id);
        }
    }
    return 0;
}

static int slurm_cancel(void *self, const char *id, double now_mono)
{
    (void)now_mono;
    slurm_exec *x = self;
    if (!id_ok(id))
        return RP_EINVAL;
    char bin[300], out[1024];
    tool(x, "scancel", bin, sizeof bin);
    const char *argv[] = {bin, id, NULL};
    int st = -1;
    int rc = rp_slurm_run(argv, out, sizeof out, &st);
    return rc ? rc : st == 0 ? 0 : RP_EIO;
}

static int slurm_reattach(void *self, const char *id, long long job_id)
{
    slurm_exec *x = self;
    if (!id_ok(id))
        return RP_ENOENT;
    char bin[300], out[8192];
    tool(x, "scontrol", bin, sizeof bin);
    const char *argv[] = {bin, "-o", "show", "job", id, NULL};
    int st = -1;
    int rc = rp_slurm_run(argv, out, sizeof out, &st);
    /* Only Slurm saying it does not know the id makes the node submit again; a controller
     * that does not answer now is asked again by the next polls. */
    if (rc == 0 && st != 0 && strstr(out, "Invalid job id")) {
        RP_WARN("slurm", "job unknown to slurm at reattach job=%lld slurm_job=%s", job_id, id);
        return RP_ENOENT;
    }
    return track(x, id);
}

static void slurm_free(void *self)
{
    slurm_exec *x = self;
    free(x->t);
    free(x);
}

static const rp_executor_ops slurm_ops = {"slurm",      slurm_submit,   slurm_poll,
                                          slurm_cancel, slurm_reattach, slurm_free};

/* The batch script: the worker command arrives as its arguments, so nothing is quoted.
 * The worker's address space is bounded by the job's memory (--mem, or --mem-per-cpu times
 * its CPUs), the RLIMIT_AS rule of the local executor: a cluster without cgroups enforces
 * --mem only by sampling (JobAcctGatherParams=OverMemoryKill), and a worker allocating
 * between two samples could take the node's memory. With the hard bound its allocation
 * fails instead and it exits RP_JOB_EXIT_OOM, which rp_slurm_map_state reads as oom. Fewer
 * malloc arenas for the same reason as locally: each reserves address space per thread. */
static int write_script(const char *path)
{
    static const char text[] =
        "#!/bin/sh\n"
        "# radprep: the worker command is given as arguments by sbatch;\n"
        "# OpenMP threads, address space and malloc arenas from the task's resources\n"
        RP_SCHED_SLURM_TASK_ENV_SH
        "exec \"$@\"\n";
    char tmp[RP_PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return RP_EIO;
    int ok = fputs(text, f) >= 0;
    ok &= fclose(f) == 0;
    if (!ok || chmod(tmp, 0755) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return RP_EIO;
    }
    return 0;
}

int rp_executor_slurm(const rp_slurm_opts *o, rp_executor *out)
{
    slurm_exec *x = calloc(1, sizeof *x);
    if (!x)
        return RP_ENOMEM;
    x->o = *o;
    rp_strlcpy(x->partition, o->partition ? o->partition : "", sizeof x->partition);
    rp_strlcpy(x->account, o->account ? o->account : "", sizeof x->account);
    rp_strlcpy(x->sbatch_args, o->sbatch_args ? o->sbatch_args : "", sizeof x->sbatch_args);
    rp_strlcpy(x->bin_dir, o->bin_dir ? o->bin_dir : "", sizeof x->bin_dir);
    x->o.partition = x->partition;
    x->o.account = x->account;
    x->o.sbatch_args = x->sbatch_args;
    x->o.bin_dir = x->bin_dir;
    if (x->o.poll_s <= 0)
        x->o.poll_s = 1.0;
    x->last_poll_mono = -1e9;
    int rc;
    if (!o->script_dir || snprintf(x->script, sizeof x->script, "%s/radprep-slurm.sh",
                                   o->script_dir) >= (int)sizeof x->script) {
        free(x);
        return RP_EINVAL;
    }
    if ((rc = rp_mkdir_p(o->script_dir, 0750)) != 0 || (rc = write_script(x->script)) != 0) {
        RP_ERROR("slurm", "cannot write the batch script path=%s", x->script);
        free(x);
        return rc ? rc : RP_EIO;
    }
    out->ops = &slurm_ops;
    out->self = x;
    RP_INFO("slurm", "executor ready partition=%s account=%s bin_dir=%s script=%s",
            x->partition[0] ? x->partition : "-", x->account[0] ? x->account : "-",
            x->bin_dir[0] ? x->bin_dir : "/usr/bin", x->script);
    return 0;
}
