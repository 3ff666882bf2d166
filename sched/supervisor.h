/*
 * scp/supervisor — runs each processing job as its own process, under limits.
 * Internal to scp/ (used by scp/main.c and tests/scp/).
 *
 * Contract:
 *  - Process runner (rp_proc_*): fork/exec one child in its own process group, niced (CPU
 *    and best-effort I/O class, lowest level), with RLIMIT_AS = memory limit,
 *    RLIMIT_CORE = 0, stdin from /dev/null, stdout+stderr appended to a log file, and
 *    PR_SET_PDEATHSIG(SIGKILL) so a worker never outlives a daemon that was killed (a job
 *    running when the node died is retried, never run twice at once).
 *    rp_proc_poll() never blocks: it reaps the child if it ended and enforces the wall-clock
 *    timeout (SIGTERM to the group, then SIGKILL after a grace period).
 *  - The outcome of a child is classified into one reason a person can read:
 *      "exit 0", "exit code N", "signal SIGSEGV", "timeout after Ns", "oom (...)".
 *  - Supervisor thread (rp_supervisor_*): claims queued jobs from the database, at most
 *    `workers` at a time, records each end (done / failed with reason, retried with
 *    exponential backoff until job_max_attempts), and never touches the network threads:
 *    it only sleeps on its own condition variable and the database.
 *  - On stop, running workers get SIGTERM (then SIGKILL) and their jobs go back to the queue
 *    without counting an attempt: a shutdown is not the job's fault.
 */
#ifndef RP_SCP_SUPERVISOR_H
#define RP_SCP_SUPERVISOR_H

#include <sys/types.h>

#include "conf/conf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Exit codes of `radprep process --job N` (the worker); anything else is a plain failure. */
enum {
    RP_JOB_EXIT_OK = 0,
    RP_JOB_EXIT_FAIL = 1,     /* failed, may succeed if retried (I/O, transient) */
    RP_JOB_EXIT_USAGE = 2,    /* bad command line: a bug, not retried */
    RP_JOB_EXIT_BADINPUT = 3, /* the series cannot be processed as it is: not retried */
    RP_JOB_EXIT_OOM = 4,      /* ran out of memory under its limit */
    RP_JOB_EXIT_GONE = 5,     /* job or its series no longer exists: not retried */
    RP_JOB_EXIT_CONFIG = 6    /* the configuration cannot work (e.g. send_to names an
                                 unusable peer): not retried */
};

typedef struct rp_proc_limits {
    long long memory_mb; /* RLIMIT_AS; <= 0: unlimited */
    double timeout_s;    /* wall clock; <= 0: none */
    double kill_grace_s; /* SIGTERM → SIGKILL delay (default 5 s when <= 0) */
    int nice;            /* added niceness (e.g. 10) */
} rp_proc_limits;

typedef struct rp_proc {
    pid_t pid; /* also the process group id; 0 when none */
    double started_mono;
    double started_wall;
    double term_sent_mono; /* 0 until SIGTERM was sent */
    int timed_out;
    int kill_sent;
    rp_proc_limits lim;
} rp_proc;

typedef enum {
    RP_PROC_EXITED = 0, /* ended by exit() */
    RP_PROC_SIGNALED,   /* killed by a signal we did not send */
    RP_PROC_TIMEOUT,    /* we killed it: wall-clock timeout */
    RP_PROC_OOM         /* out of memory (worker said so, or the kernel killed it) */
} rp_proc_end;

typedef struct rp_proc_result {
    rp_proc_end end;
    int exit_code; /* valid for EXITED (and OOM reported by exit code) */
    int signo;     /* valid for SIGNALED / TIMEOUT (the signal that ended it) */
    double wall_s;
    char reason[160]; /* one short phrase, see the contract */
} rp_proc_result;

/* Start argv[0] (an absolute path) with argv and the current environment plus `extra_env`
 * (NULL-terminated "K=V" list, may be NULL). Output goes to `log_path` (appended, created
 * 0640) or /dev/null when NULL. Returns 0 and fills *p, or RP_EIO with errno logged.
 * Exec failure in the child shows as exit code 127. */
int rp_proc_spawn(const char *const argv[], const char *const extra_env[],
                  const rp_proc_limits *lim, const char *log_path, rp_proc *p);

/* Non-blocking. Returns 1 and fills *res when the child has ended (and is reaped),
 * 0 while it runs (sending SIGTERM/SIGKILL when its time is up), or RP_EINTERNAL. */
int rp_proc_poll(rp_proc *p, double now_mono, rp_proc_result *res);

/* Ask a running child to stop now (SIGTERM, SIGKILL after the grace period on later polls). */
void rp_proc_terminate(rp_proc *p, double now_mono);

/* Blocking helper for tests and the shutdown path: poll every 20 ms until it ends. */
int rp_proc_wait(rp_proc *p, rp_proc_result *res);

/* Classify a waitpid() status into res (end, exit_code, signo, reason). `timed_out` says
 * whether we killed it for its time. Pure: exposed for tests. */
void rp_proc_classify(int wstatus, int timed_out, double timeout_s, rp_proc_result *res);

/* "SIGSEGV" for 11, "SIG42" for unknown numbers. Static storage or buf. */
const char *rp_signal_name(int signo, char *buf, size_t bufsz);

/* Retry delay before attempt `attempts + 1` after `attempts` failures: base·2^(attempts-1),
 * capped at max. Pure. */
double rp_backoff_s(int attempts, double base_s, double max_s);

/* OpenMP threads for a worker started while `running` others run: cores / (running + 1),
 * at least 1. Pure. */
int rp_supervisor_omp_share(int cores, int running);

/* Path of the `radprep` worker binary: $RP_WORKER_BIN if set, else `radprep` in the
 * directory of /proc/self/exe (or ../cli/radprep from there, the build tree's layout).
 * Returns 0 or RP_ENOENT (logged) when it is not executable. */
int rp_worker_bin(char *buf, size_t bufsz);

/* ---- the supervisor thread ---- */

typedef struct rp_supervisor rp_supervisor;

typedef struct rp_supervisor_opts {
    const char *db_path;     /* index database (jobs table) */
    const char *worker_bin;  /* NULL: rp_worker_bin() */
    const char *config_path; /* passed to workers as --config (NULL: defaults) */
    const char *data_dir;    /* passed to workers as --data-dir */
    const char *log_dir;     /* worker logs: <log_dir>/job-N.log (NULL: <data_dir>/logs) */
    int workers;             /* <= 0: number of cores */
    int timeout_s;           /* per job, wall clock */
    long long memory_mb;     /* per job, RLIMIT_AS */
    int max_attempts;        /* failures before a job stays failed */
    double backoff_base_s;   /* first retry delay (default 5 s) */
    double backoff_max_s;    /* cap (default 600 s) */
    double poll_s;           /* idle poll period (default 0.5 s) */
} rp_supervisor_opts;

/* Fill opts from the configuration (strings borrowed from c). */
void rp_supervisor_opts_from_conf(const rp_conf *c, rp_supervisor_opts *o);

/* Start the thread (strings in opts are copied). Running jobs left by a previous life are
 * requeued first. Owned by the caller: rp_supervisor_stop(). */
int rp_supervisor_start(const rp_supervisor_opts *o, rp_supervisor **out);

/* Something was enqueued: look now instead of at the next poll. Safe from any thread. */
void rp_supervisor_wake(rp_supervisor *s);

/* Number of workers running now (for status and tests). */
int rp_supervisor_running(rp_supervisor *s);

/* Stop: terminate running workers, requeue their jobs, join, free. NULL is a no-op. */
void rp_supervisor_stop(rp_supervisor *s);

#ifdef __cplusplus
}
#endif
#endif
