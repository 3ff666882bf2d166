/*
 * sched — deciding and scheduling work in the node: the series completion monitor, the
 * study-level fusion decisions, the job supervisor with its executors, and the "processing"
 * node service that runs the monitor and the supervisor inside radprepd.
 *
 * Contract:
 *  - Decisions come from the index only (db/): sched never runs the pipeline, so the
 *    daemon's threads stay small and a decision can always be explained from the database.
 *    What the work is (the job) runs elsewhere: the supervisor writes the job's job file and
 *    starts `radprep process --job N` (worker/) through an executor; the worker never opens
 *    the database and reports through its result manifest, which the supervisor records
 *    (the only DICOM it reads is the header of a derived instance it queues for sending).
 *  - Completion. A series in state receiving is complete when, per the rule of its modality
 *    (rp_conf_completion_for), any of these holds:
 *      1. the expected number of instances is known from the headers and reached exactly
 *         (use_expected_count = yes), decided by rp_completion_expected();
 *      2. no new instance for quiet_s seconds (last_seen is wall-clock time in the index);
 *      3. an operator asked (`radprep trigger SERIES`), which the index records.
 *    The reason recorded says which evidence decided, e.g.
 *      "expected_count=20 (images_in_acquisition=20)", "quiet_s=3 (idle 3.2s)", "operator".
 *    No timer lives in memory: each pass re-reads the index and decides from what is there,
 *    so a restart resumes exactly where it was. Completing a series and enqueuing its job are
 *    one transaction, and a (series, version) gets at most one job.
 *    The monitor looks when woken (rp_monitor_wake: the index queue committed instances) and
 *    at least every poll_s (0.1 s by default) as a fallback for changes made by other
 *    processes (the CLI); each pass is one indexed query.
 *  - Fusion decisions. When a series completes, each [fusion NAME] rule looks at its study:
 *    every series no longer receiving is matched against the rule's sequences on what the
 *    index keeps of its first instance (modality, description or protocol name, TR/TE/TI:
 *    rp_conf_fusion_match), one series per sequence (sequence order, lowest series number
 *    not taken). When every sequence has one, one 'fuse' job is queued for that set of member
 *    versions (rp_db_fusion_enqueue: idempotent per set). While a series of the study still
 *    receives nothing is decided; when the study is quiet and a sequence is missing, it is
 *    reported once per situation (WARN line + event 'fuse_missing'), never guessed.
 *  - Supervisor. One thread claims due jobs from the index, at most `workers` in flight,
 *    writes each one's job file (a series gone or empty: dead at once), runs it through the
 *    executor with the resources of its rule, and records how it ended, from the exit code
 *    and the result manifest of that attempt (an exit 0 without one is a failure): done (the
 *    manifest's outputs, derived instances and event recorded first), or failed with a reason
 *    and retried after base·2^(attempts-1) seconds (backoff_base_s, 10 s by default, capped
 *    at backoff_max_s, 3600 s by default) until max_attempts, or dead at once when the
 *    worker's exit code says no retry can help. It never touches the network threads: it
 *    sleeps on its own condition variable and uses its own database handle. When a job ends
 *    done and derived instances wait in the outbox, it calls the derived_queued hook (the
 *    node wires it to the outbox sender's kick).
 *  - Executors. An executor runs a worker command somewhere and reports its end: submit,
 *    a batched poll of every job in flight, cancel, and (for executors whose jobs outlive
 *    the node, such as a batch system) reattach after a restart. Job ids are strings. The
 *    local executor (the default) forks/execs on this machine: own process group, nice,
 *    best-effort I/O class, RLIMIT_AS, no core dumps, PR_SET_PDEATHSIG(SIGKILL) so a worker
 *    never outlives a daemon that was killed; the wall-clock timeout is SIGTERM to the group,
 *    then SIGKILL. Its jobs cannot outlive the node, so at start every job left running is
 *    recorded from its manifest when its worker finished before the node died, else
 *    requeued; at stop running workers are terminated and requeued, the attempt not counted
 *    (a shutdown is not the job's fault).
 *  - How a job ended is one reason a person can read: "exit 0", "exit code N",
 *    "signal SIGSEGV", "timeout after Ns (...)", "oom (...)".
 *  - Processing service: start (after reconciliation, before READY) requeues what a dead
 *    node left running, starts the supervisor, runs one completion pass (series that went
 *    quiet while the node was down complete now), then the monitor thread; stop stops the
 *    monitor, then the supervisor.
 */
#ifndef RP_SCHED_H
#define RP_SCHED_H

#include <stddef.h>
#include <sys/types.h>

#include "conf/conf.h"
#include "db/db.h"
#include "scp/scp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ===========================================================================================
 * Completion decisions (pure)
 * =========================================================================================== */

/* What one instance's header says about the size of its series (-1 when absent). */
typedef struct rp_completion_hint {
    int images_in_acquisition;        /* (0020,1002) */
    int number_of_temporal_positions; /* (0020,0105) */
    int number_of_slices;             /* (0054,0081) */
    int acquisition_number;           /* (0020,0012) */
    int number_of_frames;             /* (0028,0008), 1 when absent */
    char sop_class_uid[65];
} rp_completion_hint;

/* Expected instance count of a series from its instances' hints, or -1 when the headers do
 * not say (or disagree). Evidence, in order of trust:
 *   - one enhanced multi-frame instance (Enhanced CT/MR/PET/XA/XRF/US, Legacy Converted,
 *     tomosynthesis) with Number of Frames > 1 holds the whole series: expected 1;
 *   - Number of Slices (0054,0081) × Number of Temporal Positions (or 1), the same in every
 *     instance;
 *   - Images in Acquisition, the same in every instance and one Acquisition Number.
 * `evidence` receives e.g. "images_in_acquisition=20" (empty when -1). Pure. */
long long rp_completion_expected(const rp_completion_hint *h, size_t n, char *evidence,
                                 size_t evsz);

/* 1 if sop_class_uid is an enhanced (multi-frame, whole-series-in-one) image storage class. */
int rp_completion_is_enhanced(const char *sop_class_uid);

typedef struct rp_series_progress {
    long long instances;  /* instances in the series now */
    double last_seen;     /* wall clock of the last instance (seconds since the epoch) */
    long long expected;   /* from rp_completion_expected(), -1 unknown */
    const char *evidence; /* its evidence text, may be NULL */
    int triggered;        /* an operator asked for completion */
} rp_series_progress;

typedef enum {
    RP_COMPLETE_WAIT = 0, /* not yet */
    RP_COMPLETE_EXPECTED, /* expected count reached */
    RP_COMPLETE_QUIET,    /* quiet long enough */
    RP_COMPLETE_OPERATOR  /* operator trigger */
} rp_complete_why;

/* Decide one series at wall time `now`. Fills `reason` (what decided, for the database and
 * the log) and *wait_s (seconds until the quiet rule could fire, when WAIT). Pure. */
rp_complete_why rp_completion_decide(const rp_series_progress *p, const rp_conf_completion *rule,
                                     double now, double *wait_s, char *reason, size_t reasonsz);

/* ---- instances acknowledged but not yet indexed ----
 * The index is written in batches, so for up to index_flush_ms an acknowledged instance is
 * not yet in series.last_seen. The receiving side notes each stored instance here; a pass
 * does not complete a series with a note newer than its last_seen (the index is about to
 * say more), for at most RP_NOTE_HOLD_S. Only a hint that delays: a lost note (table slot
 * reused, restart) costs at most an extra version, never a missed instance. */
#define RP_NOTE_HOLD_S 10.0
typedef struct rp_completion_notes rp_completion_notes;
/* Owned: rp_completion_notes_free(). NULL on ENOMEM. */
rp_completion_notes *rp_completion_notes_new(void);
void rp_completion_notes_free(rp_completion_notes *n);
/* An instance of series_uid was received at wall time received_at. Thread-safe, O(1). */
void rp_completion_notes_add(rp_completion_notes *n, const char *series_uid, double received_at);
/* 1 if a note for series_uid is newer than last_seen and younger than RP_NOTE_HOLD_S. */
int rp_completion_notes_pending(rp_completion_notes *n, const char *series_uid, double last_seen,
                                double now);

/* ===========================================================================================
 * Fusion decisions (from the index)
 * =========================================================================================== */
typedef struct rp_fusion_check {
    int queued;         /* jobs newly queued */
    int already;        /* sets that already had a job */
    int missing;        /* rules with a missing sequence (study quiet) */
    int waiting;        /* rules not decided: a series is still receiving */
    long long last_job; /* id of the last job queued or found */
    int last_version;
    char reason[512]; /* the last "fuse: missing sequence ..." or waiting reason */
} rp_fusion_check;

/* Look at one study for every [fusion] rule (rule_name NULL) or the one named. manual: an
 * operator asked (`radprep fuse`): do not wait for receiving series (they are left out).
 * RP_ENOENT (with out->reason) for an unknown rule or a study the index does not have. */
int rp_fusion_check_study(rp_db *db, const rp_conf *c, const char *study_uid,
                          const char *rule_name, int manual, rp_fusion_check *out);

/* For the monitor: the study of `series_uid` (just completed) is checked; problems are
 * logged. */
void rp_fusion_on_series_complete(rp_db *db, const rp_conf *c, const char *series_uid);

/* ===========================================================================================
 * Executors: where a job's worker runs
 * =========================================================================================== */

typedef enum {
    RP_PROC_EXITED = 0, /* ended by exit() */
    RP_PROC_SIGNALED,   /* killed by a signal we did not send */
    RP_PROC_TIMEOUT,    /* we killed it: wall-clock timeout */
    RP_PROC_OOM,        /* out of memory (worker said so, or the kernel killed it) */
    RP_PROC_LOST        /* the executor lost track of it (e.g. a batch node failed) */
} rp_proc_end;

/* How one worker ended, as the supervisor records it. */
typedef struct rp_proc_result {
    rp_proc_end end;
    int exit_code; /* valid for EXITED (and OOM reported by exit code); -1 otherwise */
    int signo;     /* valid for SIGNALED / TIMEOUT (the signal that ended it) */
    double wall_s;
    char reason[160]; /* one short phrase, see the contract */
} rp_proc_result;

/* What the job's rule asks for (0: not given; see rp_conf_rule). */
typedef struct rp_job_resources {
    int cpus;         /* sbatch --cpus-per-task; a local worker's OpenMP threads */
    long long mem_mb; /* sbatch --mem; a local worker's RLIMIT_AS */
    int time_limit_s; /* sbatch --time; a local worker's wall-clock timeout */
} rp_job_resources;

/* What the supervisor asks an executor to run. */
typedef struct rp_exec_request {
    long long job_id;
    const char *const *argv; /* the worker command; argv[0] an absolute path */
    const char *log_path;    /* stdout + stderr of the worker (appended) */
    long long memory_mb;     /* the node's default; <= 0: unlimited */
    double timeout_s;        /* the node's default, wall clock; <= 0: none */
    rp_job_resources res;    /* the rule's: each one given wins over every default */
} rp_exec_request;

/* One job in flight, as handed to poll(). */
typedef struct rp_exec_job {
    char id[64];           /* the executor's id of the job */
    long long job_id;      /* the node's job */
    int ended;             /* poll() sets it to 1 when the job has ended ... */
    rp_proc_result result; /* ... and fills how */
} rp_exec_job;

typedef struct rp_executor_ops {
    const char *name; /* for logs: "local", ... */
    /* Start rq. Fills id (the executor's job id, NUL-terminated) and *pid (> 0 when the
     * worker is a process on this machine, else 0). 0 or RP_E* (nothing started);
     * RP_EBUSY: the executor cannot take jobs now (a batch controller is down): the job
     * waits in the queue, the attempt not counted, and the supervisor asks again later. */
    int (*submit)(void *self, const rp_exec_request *rq, char *id, size_t idsz, int *pid);
    /* One look at every job in flight (a batch system answers all of them in one query):
     * sets ended and result for those that ended. Enforces timeouts. Never blocks for long.
     * 0, or RP_E* when nothing could be learned this time (nothing is decided then). */
    int (*poll)(void *self, rp_exec_job *jobs, size_t n, double now_mono);
    /* Ask a job to end now: terminate, then kill after a grace period (on later polls). */
    int (*cancel)(void *self, const char *id, double now_mono);
    /* After a restart: track job `id`, submitted by an earlier life of the node, again (its
     * end then comes from poll). 0, or RP_ENOENT when it is gone (the node requeues it).
     * NULL for executors whose jobs cannot outlive the node: every job left running is
     * requeued at start, and running jobs are cancelled and requeued at stop. */
    int (*reattach)(void *self, const char *id, long long job_id);
    void (*free)(void *self);
} rp_executor_ops;

typedef struct rp_executor {
    const rp_executor_ops *ops;
    void *self;
} rp_executor;

/* The local executor (fork/exec on this machine, see the contract). The worker's environment
 * is the daemon's plus MALLOC_ARENA_MAX=4 (arenas reserve address space that RLIMIT_AS
 * counts), OMP_WAIT_POLICY=passive and OMP_NUM_THREADS = cores / (workers running + 1), each
 * unless the daemon's environment sets it. Owned: out->ops->free(out->self). */
int rp_executor_local(rp_executor *out);

/* The Slurm executor: submits with `sbatch --parsable` (the job id is the executor's id),
 * learns every end from one `scontrol -o show job` (at most every poll_s; sacct for jobs the
 * controller already forgot), cancels with `scancel`, reattaches after a restart (jobs
 * outlive the node). The tools are run by fork/exec with argv arrays, never a shell. States:
 * COMPLETED/FAILED → the worker's exit code as with local jobs; TIMEOUT/DEADLINE → timeout;
 * OUT_OF_MEMORY → oom; CANCELLED → signal; NODE_FAIL, PREEMPTED, BOOT_FAIL → lost (retried);
 * PENDING, RUNNING, REQUEUED... → still in flight. A controller that does not answer decides
 * nothing: jobs stay running in the index and wait. Strings are copied. */
typedef struct rp_slurm_opts {
    const char *partition, *account; /* "" or NULL: not given */
    const char *sbatch_args;         /* extra options, split on blanks */
    const char *bin_dir;             /* where the tools are; "" or NULL: /usr/bin */
    const char *script_dir;          /* the batch script goes here (on the shared filesystem) */
    int cpus_per_task;               /* 0: not given */
    long long mem_mb;                /* 0: the request's memory_mb */
    int time_limit_s;                /* 0: the request's timeout_s */
    double poll_s;                   /* <= 0: 1 s */
} rp_slurm_opts;
int rp_executor_slurm(const rp_slurm_opts *o, rp_executor *out);
/* Options from [executor] (strings borrowed from c; script_dir left NULL). */
void rp_slurm_opts_from_conf(const rp_conf *c, rp_slurm_opts *o);
/* Pure parts, exposed for tests. The sbatch command for rq: strings built into store,
 * argv NULL-terminated (at most maxargs). 0 or RP_EINVAL (too long). */
int rp_slurm_sbatch_argv(const rp_slurm_opts *o, const rp_exec_request *rq, const char *script,
                         char *store, size_t storesz, const char **argv, size_t maxargs);
/* A Slurm job state ("COMPLETED", "CANCELLED by 0", ...) and ExitCode "X:Y" into *res:
 * 1 when the job has ended, 0 while it is in flight (res untouched). limit_s: for the reason. */
int rp_slurm_map_state(const char *state, const char *exit_code, double limit_s,
                       rp_proc_result *res);
/* Run argv (no shell) and capture stdout+stderr into out (NUL-terminated, truncated);
 * *status: the exit code. 0, RP_EIO (fork), RP_ETIMEOUT (killed after 20 s). */
int rp_slurm_run(const char *const argv[], char *out, size_t outsz, int *status);
/* The same with a time limit of its own (sbatch --wait). */
int rp_slurm_run_for(const char *const argv[], char *out, size_t outsz, int *status,
                     double timeout_s);

/* ---- the local executor's process runner (exposed for tests) ---- */
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
 * whether we killed it for its time. Pure. */
void rp_proc_classify(int wstatus, int timed_out, double timeout_s, rp_proc_result *res);
/* "SIGSEGV" for 11, "SIG42" for unknown numbers. Static storage or buf. */
const char *rp_signal_name(int signo, char *buf, size_t bufsz);
/* OpenMP threads for a worker started while `running` others run: cores / (running + 1),
 * at least 1. Pure. */
int rp_supervisor_omp_share(int cores, int running);

/* ===========================================================================================
 * Job files and result manifests: the one way a job reports (sched/jobfile.c)
 *
 * Before a job runs anywhere the node writes its job file, <data_dir>/jobs/job-N.json
 * (format RP_JOBFILE_FORMAT, docs/cluster.md): the job, its attempt, the series version's
 * input files (relative to store_root), the rule the node chose, the output folder and the
 * path of the result manifest the worker leaves beside it (<parent>/.v<N>.result.json). The
 * worker reads only that file and the configuration: it never opens the database. When the
 * job has ended the node reads the manifest of that attempt and records it in the index:
 * the output folder, every file (checked on disk: size; sha256 from the manifest), the
 * derived instances queued for the rule's send_to, the worker's event. Recording is
 * idempotent (a job Slurm ran twice, a node that died while recording: the same rows).
 * =========================================================================================== */
#define RP_JOBFILE_FORMAT "radprep-job/1"
#define RP_RESULT_FORMAT "radprep-result/1"

/* <data_dir>/jobs/job-N.json into buf. 0 or RP_EINVAL (too long). */
int rp_jobfile_path(const char *data_dir, long long job_id, char *buf, size_t bufsz);
/* Write job's job file (atomically: tmp, fsync, rename) from the index and c (rule matching,
 * outputs dir); *res gets the rule's resources. RP_ENOENT: the series (or fusion set) is gone
 * (not retried); RP_EUID, RP_EPARSE: an unsafe UID, no instance (bad input, not retried);
 * other RP_E*: I/O. why gets one phrase on failure. */
int rp_jobfile_write(rp_db *db, const rp_conf *c, const char *data_dir, const rp_db_job *job,
                     rp_job_resources *res, char *why, size_t whysz);
/* Record the result manifest of job's current attempt (job as the index has it, running).
 * exited_ok: the worker exited 0; then the manifest must be there and say ok: 0 when
 * recorded, else RP_E* with why (no manifest: RP_ENOENT; it says failed: RP_EINVAL; an
 * output missing: RP_EIO). For a failed end only the manifest's event is recorded (0). */
int rp_jobfile_record(rp_db *db, const rp_conf *c, const char *data_dir, const rp_db_job *job,
                      int exited_ok, char *why, size_t whysz);
/* The job file is no longer needed (the job is done or dead). */
void rp_jobfile_remove(const char *data_dir, long long job_id);

/* ===========================================================================================
 * The supervisor thread
 * =========================================================================================== */

/* Path of the `radprep` worker binary: $RP_WORKER_BIN if set, else `radprep` in the
 * directory of /proc/self/exe (or ../cli/radprep from there, the build tree's layout).
 * Returns 0 or RP_ENOENT (logged) when it is not executable. */
int rp_worker_bin(char *buf, size_t bufsz);

typedef struct rp_supervisor rp_supervisor;

typedef struct rp_supervisor_opts {
    const char *db_path;     /* index database (jobs table) */
    const char *worker_bin;  /* NULL: rp_worker_bin() */
    const char *config_path; /* passed to workers as --config (NULL: defaults) */
    const char *data_dir;    /* passed to workers as --data-dir */
    const char *log_dir;     /* worker logs: <log_dir>/job-N.log (NULL: <data_dir>/logs) */
    int workers;             /* jobs in flight at most; <= 0: number of cores */
    int timeout_s;           /* per job, wall clock */
    long long memory_mb;     /* per job, RLIMIT_AS */
    int max_attempts;        /* failures before a job stays failed (<= 0: 3) */
    double backoff_base_s;   /* first retry delay (<= 0: 10 s) */
    double backoff_max_s;    /* cap of the retry delay (<= 0: 3600 s) */
    double poll_s;           /* idle poll period (<= 0: 0.5 s) */
    const rp_executor *executor; /* borrowed, must outlive the supervisor; NULL: local */
    /* rules, outputs dir and peers for the job files and the derived instances (borrowed, must
     * outlive the supervisor); NULL: the defaults with data_dir */
    const rp_conf *conf;
    /* A job ended done and derived instances wait in the outbox (may be NULL). Called on the
     * supervisor thread: quick, non-blocking. */
    void (*derived_queued)(void *arg);
    void *derived_queued_arg;
} rp_supervisor_opts;

/* Fill opts from the configuration (strings borrowed from c). */
void rp_supervisor_opts_from_conf(const rp_conf *c, rp_supervisor_opts *o);

/* Start the thread (strings in opts are copied). Jobs a previous life left running are
 * reattached or requeued first (see the executors). Owned: rp_supervisor_stop(). */
int rp_supervisor_start(const rp_supervisor_opts *o, rp_supervisor **out);
/* Something was enqueued: look now instead of at the next poll. Safe from any thread. */
void rp_supervisor_wake(rp_supervisor *s);
/* Number of jobs in flight now (for status and tests). */
int rp_supervisor_running(rp_supervisor *s);
/* Stop: terminate running workers and requeue their jobs (an executor whose jobs outlive
 * the node leaves them running for the next start), join, free. NULL is a no-op. */
void rp_supervisor_stop(rp_supervisor *s);

/* ===========================================================================================
 * The completion monitor thread
 * =========================================================================================== */

typedef struct rp_monitor rp_monitor;

/* One pass over every receiving series in `db` at wall time `now`: completes (and enqueues)
 * what is due, except series with a pending note in `notes` (may be NULL), and runs the
 * fusion decisions of each completed series' study. *completed: how many; *next_wait_s:
 * seconds until the next one may be due (3600 when nothing waits). Returns 0 or RP_E*. */
int rp_monitor_pass(rp_db *db, const rp_conf *c, rp_completion_notes *notes, double now,
                    int *completed, double *next_wait_s);

/* Start the thread on its own database handle. poll_s: the longest it sleeps when not woken
 * (<= 0: 0.1 s). `sup` (woken after each enqueue) and `notes` may be NULL; both borrowed.
 * `c` must outlive the monitor. Owned: rp_monitor_stop(). */
int rp_monitor_start(const rp_conf *c, const char *db_path, double poll_s, rp_supervisor *sup,
                     rp_completion_notes *notes, rp_monitor **out);

/* Instances were indexed or an operator triggered: look now. Safe from any thread. */
void rp_monitor_wake(rp_monitor *m);

/* Stop and join the thread, free. NULL is a no-op. */
void rp_monitor_stop(rp_monitor *m);

/* ===========================================================================================
 * The processing node service (radprepd)
 * =========================================================================================== */

typedef struct rp_processing_hooks {
    void (*derived_queued)(void *arg); /* see rp_supervisor_opts; may be NULL */
    void *arg;
} rp_processing_hooks;

/* Fill *svc (name "processing") with a fresh context; register it with rp_node_add_service.
 * hooks (may be NULL) is copied. The context is freed by the service's stop. The worker
 * binary is `radprep` next to radprepd (/proc/self/exe), or $RP_WORKER_BIN. 0 or RP_ENOMEM. */
int rp_processing_service(rp_node_service *svc, const rp_processing_hooks *hooks);

/* An rp_db_queue_on_commit() hook (arg: the service's svc->arg): the index committed n
 * instances, so the monitor looks now. Does nothing before start; the node removes the hook
 * before it stops its services (the service's stop frees arg). */
void rp_processing_indexed(void *arg, size_t n);

#ifdef __cplusplus
}
#endif
/* Shell lines every Slurm task script of radprep runs before its worker (the executor's job
 * script and the array of `radprep process --executor slurm`): OpenMP threads = the task's
 * CPUs; the address space bounded by the task's memory (RLIMIT_AS, as the local executor does:
 * a hard bound on a cluster without cgroups, where Slurm only samples memory, so an allocation
 * fails and the worker exits oom); fewer malloc arenas, each reserving address space. */
#define RP_SCHED_SLURM_TASK_ENV_SH                                                               \
    "if [ -n \"$SLURM_CPUS_PER_TASK\" ]; then\n"                                                 \
    "  export OMP_NUM_THREADS=\"$SLURM_CPUS_PER_TASK\"\n"                                        \
    "fi\n"                                                                                        \
    "mem=\"${SLURM_MEM_PER_NODE:-}\"\n"                                                          \
    "if [ -z \"$mem\" ] && [ -n \"${SLURM_MEM_PER_CPU:-}\" ]; then\n"                            \
    "  mem=$((SLURM_MEM_PER_CPU * ${SLURM_CPUS_PER_TASK:-1}))\n"                                  \
    "fi\n"                                                                                        \
    "if [ -n \"$mem\" ] && [ \"$mem\" -gt 0 ] 2>/dev/null; then\n"                               \
    "  ulimit -v $((mem * 1024)) || echo \"radprep: ulimit -v failed: $(ulimit -v)\" >&2\n"       \
    "fi\n"                                                                                        \
    "export MALLOC_ARENA_MAX=\"${MALLOC_ARENA_MAX:-4}\"\n"

#endif
