/* scp/supervisor — the thread that turns queued jobs into worker processes and records how
 * each one ended. Its only blocking points are its own condition variable and SQLite on its
 * own handle, so the network threads never wait for it. */
#include "sched/supervisor.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "db/db.h"
#include "metrics/metrics.h"

typedef struct slot {
    int busy;
    long long job_id;
    char series_uid[RP_UID_MAX + 1];
    int version;
    rp_proc proc;
} slot;

struct rp_supervisor {
    rp_supervisor_opts o;
    char db_path[RP_PATH_MAX], worker_bin[RP_PATH_MAX], config_path[RP_PATH_MAX];
    char data_dir[RP_PATH_MAX], log_dir[RP_PATH_MAX];
    rp_db *db;
    slot *slots;
    int n_slots;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping, woken, running;
    double bin_checked_mono; /* last search for a missing worker binary */
};

void rp_supervisor_opts_from_conf(const rp_conf *c, rp_supervisor_opts *o)
{
    memset(o, 0, sizeof *o);
    o->config_path = strcmp(c->source, "(defaults)") == 0 || !c->source[0] ? NULL : c->source;
    o->data_dir = c->data_dir;
    o->workers = c->workers;
    o->timeout_s = c->job_timeout_s;
    o->memory_mb = c->job_memory_mb;
    o->max_attempts = c->job_max_attempts;
}

static int n_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int rp_supervisor_omp_share(int cores, int running)
{
    int k = cores / (running + 1);
    return k > 0 ? k : 1;
}

void rp_supervisor_wake(rp_supervisor *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->woken = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

int rp_supervisor_running(rp_supervisor *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->running;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* Sleep until woken, stopped, or `secs` passed. Returns 1 when stopping. */
static int nap(rp_supervisor *s, double secs)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long long ns = ts.tv_nsec + (long long)(secs * 1e9);
    ts.tv_sec += ns / 1000000000LL;
    ts.tv_nsec = ns % 1000000000LL;
    pthread_mutex_lock(&s->mu);
    while (!s->woken && !s->stopping)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) == ETIMEDOUT)
            break;
    s->woken = 0;
    int stop = s->stopping;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

/* A shutdown is not the job's fault: requeue instead of counting a failure. */
static void record_end(rp_supervisor *s, slot *sl, const rp_proc_result *r, int stopping)
{
    char q[400], tb[32];
    int ok = r->end == RP_PROC_EXITED && r->exit_code == RP_JOB_EXIT_OK;
    if (stopping && !ok) {
        RP_INFO("supervisor",
                "job interrupted by shutdown job=%lld series=%s version=%d "
                "wall_s=%.2f",
                sl->job_id, sl->series_uid, sl->version, r->wall_s);
        return; /* rp_db_jobs_requeue_running() after every worker has ended */
    }
    int permanent = r->end == RP_PROC_EXITED &&
                    (r->exit_code == RP_JOB_EXIT_BADINPUT || r->exit_code == RP_JOB_EXIT_USAGE ||
                     r->exit_code == RP_JOB_EXIT_GONE || r->exit_code == RP_JOB_EXIT_CONFIG);
    int status = r->end == RP_PROC_EXITED || r->end == RP_PROC_OOM
                     ? (r->exit_code >= 0 ? r->exit_code : 128 + r->signo)
                     : 128 + r->signo;
    rp_db_job after;
    memset(&after, 0, sizeof after);
    /* A busy database must not leave the job 'running' with no worker: try a few times. */
    int rc = RP_EDB;
    for (int attempt = 0; attempt < 5 && rc != 0; attempt++) {
        if (attempt)
            nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL);
        rc = rp_db_job_finish(s->db, sl->job_id, ok, status, r->reason, permanent,
                              s->o.backoff_base_s, &after);
        if (rc == RP_ENOENT || rc == RP_EINVAL)
            break; /* deleted, or no longer running (an operator requeued it) */
    }
    if (rc == RP_EINVAL && ok && rp_db_job_get(s->db, sl->job_id, &after) == 0 &&
        strcmp(after.state, "done") == 0)
        rc = 0; /* the worker recorded its success itself, with its outputs */
    if (rc != 0) {
        RP_ERROR("supervisor", "cannot record job end job=%lld rc=%s", sl->job_id, rp_strerror(rc));
        return;
    }
    rp_log_kv_quote(r->reason, q, sizeof q);
    rp_metrics_observe(RP_M_JOB_DURATION, r->wall_s, after.state);
    if (ok) {
        RP_INFO("supervisor", "job done job=%lld series=%s version=%d wall_s=%.2f attempts=%d",
                sl->job_id, sl->series_uid, sl->version, r->wall_s, after.attempts);
    } else if (strcmp(after.state, "failed") == 0) {
        RP_WARN("supervisor",
                "job failed job=%lld series=%s version=%d reason=%s wall_s=%.2f "
                "attempts=%d/%d retry_at=%s",
                sl->job_id, sl->series_uid, sl->version, q, r->wall_s, after.attempts,
                after.max_attempts, rp_time_iso8601(after.next_attempt_at, tb, sizeof tb));
    } else {
        RP_ERROR("supervisor",
                 "job dead job=%lld series=%s version=%d reason=%s wall_s=%.2f "
                 "attempts=%d/%d permanent=%d",
                 sl->job_id, sl->series_uid, sl->version, q, r->wall_s, after.attempts,
                 after.max_attempts, permanent);
    }
    char detail[600];
    snprintf(detail, sizeof detail, "job=%lld series=%s version=%d state=%s reason=%s wall_s=%.2f",
             sl->job_id, sl->series_uid, sl->version, after.state, q, r->wall_s);
    rp_db_event_add(s->db, "job", detail);
}

static void reap(rp_supervisor *s, int stopping)
{
    double now = rp_mono_s();
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (!sl->busy)
            continue;
        rp_proc_result r;
        if (rp_proc_poll(&sl->proc, now, &r) != 1)
            continue;
        record_end(s, sl, &r, stopping);
        sl->busy = 0;
        pthread_mutex_lock(&s->mu);
        s->running--;
        pthread_mutex_unlock(&s->mu);
    }
}

static int start_one(rp_supervisor *s, slot *sl)
{
    rp_db_job job;
    int rc = rp_db_job_claim(s->db, rp_now_s(), 0, &job);
    if (rc != 0)
        return rc; /* RP_ENOENT: nothing due */

    char idbuf[32], logpath[RP_PATH_MAX + 64];
    snprintf(idbuf, sizeof idbuf, "%lld", job.id);
    snprintf(logpath, sizeof logpath, "%s/job-%lld.log", s->log_dir, job.id);
    const char *argv[12];
    int a = 0;
    argv[a++] = s->worker_bin;
    argv[a++] = "process";
    argv[a++] = "--job";
    argv[a++] = idbuf;
    if (s->config_path[0]) {
        argv[a++] = "--config";
        argv[a++] = s->config_path;
    }
    argv[a++] = "--data-dir";
    argv[a++] = s->data_dir;
    argv[a] = NULL;
    rp_proc_limits lim = {
        .memory_mb = s->o.memory_mb, .timeout_s = s->o.timeout_s, .kill_grace_s = 5.0, .nice = 10};
    /* Fewer malloc arenas: each reserves 64 MiB of address space per thread, which counts
     * against RLIMIT_AS without being memory the job uses. And a share of the cores for the
     * pipeline's OpenMP loops: a job alone gets them all, the next ones what is left, so
     * that `workers` jobs do not run workers x cores threads. OpenMP threads that spin while
     * waiting steal the cores from receiving and from other jobs, so they sleep instead
     * (measured: the X-ray chain runs 1.3-2x faster on a busy 2-core machine). The daemon's
     * own environment wins when it sets any of these. */
    char omp[48];
    snprintf(omp, sizeof omp, "OMP_NUM_THREADS=%d",
             rp_supervisor_omp_share(n_cores(), rp_supervisor_running(s)));
    const char *env[4];
    int e = 0;
    if (!getenv("MALLOC_ARENA_MAX"))
        env[e++] = "MALLOC_ARENA_MAX=4";
    if (!getenv("OMP_WAIT_POLICY"))
        env[e++] = "OMP_WAIT_POLICY=passive";
    if (!getenv("OMP_NUM_THREADS"))
        env[e++] = omp;
    env[e] = NULL;
    rc = rp_proc_spawn(argv, env, &lim, logpath, &sl->proc);
    if (rc != 0) {
        rp_db_job_finish(s->db, job.id, 0, -1, "cannot start worker (fork/log file)", 0,
                         s->o.backoff_base_s, NULL);
        return rc;
    }
    sl->busy = 1;
    sl->job_id = job.id;
    sl->version = job.series_version;
    rp_strlcpy(sl->series_uid, job.series_uid, sizeof sl->series_uid);
    rp_db_job_set_running(s->db, job.id, (int)sl->proc.pid, NULL);
    pthread_mutex_lock(&s->mu);
    s->running++;
    pthread_mutex_unlock(&s->mu);
    char tb[32];
    RP_INFO("supervisor",
            "job started job=%lld series=%s version=%d attempt=%d/%d pid=%d "
            "created_at=%s wait_s=%.3f",
            job.id, job.series_uid, job.series_version, job.attempts, job.max_attempts,
            (int)sl->proc.pid, rp_time_iso8601(job.created_at, tb, sizeof tb),
            rp_now_s() - job.created_at);
    return 0;
}

static void *run(void *arg)
{
    rp_supervisor *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int stopping = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stopping)
            break;
        reap(s, 0);
        /* Missing worker: look again every minute (each miss logs one line, on purpose). */
        if (!s->worker_bin[0] && rp_mono_s() - s->bin_checked_mono >= 60.0) {
            s->bin_checked_mono = rp_mono_s();
            if (rp_worker_bin(s->worker_bin, sizeof s->worker_bin) != 0)
                s->worker_bin[0] = '\0';
            if (s->worker_bin[0])
                RP_INFO("supervisor", "worker binary found worker=%s", s->worker_bin);
        }
        for (int i = 0; i < s->n_slots && s->worker_bin[0]; i++) {
            if (s->slots[i].busy)
                continue;
            if (start_one(s, &s->slots[i]) != 0)
                break;
        }
        /* Reap promptly while workers run; otherwise sleep until the next retry is due. */
        double wait = s->o.poll_s;
        if (rp_supervisor_running(s) > 0) {
            wait = 0.05;
        } else {
            double due;
            if (rp_db_jobs_next_due(s->db, &due) == 0) {
                double d = due - rp_now_s();
                if (d < wait)
                    wait = d > 0.01 ? d : 0.01;
            }
        }
        if (nap(s, wait))
            break;
    }
    /* Stop: ask every worker to end, give them the grace period, then kill. */
    double now = rp_mono_s();
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].busy) {
            s->slots[i].proc.lim.kill_grace_s = 3.0;
            rp_proc_terminate(&s->slots[i].proc, now);
        }
    while (rp_supervisor_running(s) > 0) {
        reap(s, 1);
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    long long n = 0;
    rp_db_jobs_requeue_running(s->db, &n);
    if (n)
        RP_INFO("supervisor", "requeued interrupted jobs n=%lld", n);
    return NULL;
}

int rp_supervisor_start(const rp_supervisor_opts *o, rp_supervisor **out)
{
    *out = NULL;
    rp_supervisor *s = calloc(1, sizeof *s);
    if (!s)
        return RP_ENOMEM;
    s->o = *o;
    if (s->o.workers <= 0)
        s->o.workers = n_cores();
    if (s->o.max_attempts < 1)
        s->o.max_attempts = 3;
    if (s->o.backoff_base_s <= 0)
        s->o.backoff_base_s = 10;
    if (s->o.poll_s <= 0)
        s->o.poll_s = 0.5;
    int rc = RP_EINVAL;
    if (!o->db_path || !o->data_dir || rp_strlcpy(s->db_path, o->db_path, sizeof s->db_path) ||
        rp_strlcpy(s->data_dir, o->data_dir, sizeof s->data_dir))
        goto fail;
    if (o->config_path && rp_strlcpy(s->config_path, o->config_path, sizeof s->config_path))
        goto fail;
    if (o->worker_bin) {
        if (rp_strlcpy(s->worker_bin, o->worker_bin, sizeof s->worker_bin))
            goto fail;
    } else if (rp_worker_bin(s->worker_bin, sizeof s->worker_bin) != 0) {
        /* Receiving must not depend on processing: start anyway, keep jobs queued, and look
         * for the binary again (an upgrade in progress, a broken install being fixed). */
        RP_ERROR("supervisor", "no worker binary: jobs stay queued until radprep is found "
                               "beside radprepd (or RP_WORKER_BIN is fixed)");
        s->worker_bin[0] = '\0';
        s->bin_checked_mono = rp_mono_s();
    }
    if (o->log_dir)
        rc = rp_strlcpy(s->log_dir, o->log_dir, sizeof s->log_dir);
    else
        rc = snprintf(s->log_dir, sizeof s->log_dir, "%s/logs", s->data_dir) >=
                     (int)sizeof s->log_dir
                 ? RP_EINVAL
                 : 0;
    if (rc != 0 || (rc = rp_mkdir_p(s->log_dir, 0750)) != 0)
        goto fail;
    s->n_slots = s->o.workers;
    s->slots = calloc((size_t)s->n_slots, sizeof *s->slots);
    if (!s->slots) {
        rc = RP_ENOMEM;
        goto fail;
    }
    if ((rc = rp_db_open(s->db_path, &s->db)) != 0)
        goto fail;
    /* Jobs that were running when the node died are retried (the attempt does not count). */
    long long n = 0;
    if ((rc = rp_db_jobs_requeue_running(s->db, &n)) != 0)
        goto fail;
    if (n)
        RP_WARN("supervisor", "requeued jobs left running by a previous run n=%lld", n);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&s->thread, NULL, run, s) != 0) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        rc = RP_EINTERNAL;
        goto fail;
    }
    RP_INFO("supervisor",
            "started workers=%d timeout_s=%d memory_mb=%lld max_attempts=%d "
            "worker=%s",
            s->o.workers, s->o.timeout_s, s->o.memory_mb, s->o.max_attempts, s->worker_bin);
    *out = s;
    return 0;
fail:
    if (s->db)
        rp_db_close(s->db);
    free(s->slots);
    free(s);
    return rc;
}

void rp_supervisor_stop(rp_supervisor *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    rp_db_close(s->db);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s->slots);
    free(s);
    RP_INFO("supervisor", "stopped");
}
