/* sched/supervisor — the thread that turns queued jobs into workers through an executor and
 * records how each one ended. Its only blocking points are its own condition variable and
 * SQLite on its own handle, so the network threads never wait for it. */
#include "sched/sched.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "db/db.h"
#include "metrics/metrics.h"
#include "worker/worker.h"

/* A worker whose end is not seen within this is taken as gone: bounds a stop (local workers
 * get SIGTERM, then SIGKILL after 3 s). */
#define STOP_WAIT_S 30.0
#define EXEC_BUSY_RETRY_S 5.0 /* ask an executor that said "not now" again after this */

typedef struct slot {
    int busy;
    char subject[RP_UID_MAX + 1]; /* the job's series (or study, for a fusion job) */
    int version;
    rp_exec_job ej;
} slot;

struct rp_supervisor {
    rp_supervisor_opts o;
    char db_path[RP_PATH_MAX], worker_bin[RP_PATH_MAX], config_path[RP_PATH_MAX];
    char data_dir[RP_PATH_MAX], log_dir[RP_PATH_MAX];
    rp_executor exec;
    int own_exec; /* exec is ours to free (the local default) */
    const rp_conf *conf; /* o.conf, or own_conf */
    rp_conf own_conf;
    int has_own_conf;
    rp_db *db;
    slot *slots;
    int n_slots;
    rp_exec_job *polled; /* n_slots entries: what one reap() hands the executor */
    int *polled_slot;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping, woken, running;
    double bin_checked_mono; /* last search for a missing worker binary */
    double exec_busy_until;  /* the executor said "not now" (batch controller down) */
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
    o->conf = c;
    if (c->executor.kind == RP_EXECUTOR_SLURM && c->executor.max_in_flight > 0)
        o->workers = c->executor.max_in_flight;
}

void rp_slurm_opts_from_conf(const rp_conf *c, rp_slurm_opts *o)
{
    memset(o, 0, sizeof *o);
    o->partition = c->executor.partition;
    o->account = c->executor.account;
    o->sbatch_args = c->executor.sbatch_args;
    o->bin_dir = c->executor.bin_dir;
    o->cpus_per_task = c->executor.cpus_per_task;
    o->mem_mb = c->executor.mem_mb;
    o->time_limit_s = c->executor.time_limit_s;
    o->poll_s = c->executor.poll_s;
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

static void add_running(rp_supervisor *s, int d)
{
    pthread_mutex_lock(&s->mu);
    s->running += d;
    pthread_mutex_unlock(&s->mu);
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

/* A job that ended done may have queued derived instances: tell the sender now rather than
 * at its next poll. */
static void after_done(rp_supervisor *s)
{
    double due;
    if (s->o.derived_queued && rp_db_outbox_next_due(s->db, NULL, &due) == 0 &&
        due <= rp_now_s())
        s->o.derived_queued(s->o.derived_queued_arg);
}

/* Record how a job ended in the index. A shutdown is not the job's fault: then the job is
 * requeued instead of counting a failure. */
static void record_end(rp_supervisor *s, slot *sl, const rp_proc_result *res, int stopping)
{
    char q[400], tb[32];
    long long job_id = sl->ej.job_id;
    rp_proc_result rr = *res;
    const rp_proc_result *r = &rr;
    int ok = r->end == RP_PROC_EXITED && r->exit_code == RP_JOB_EXIT_OK;
    /* What the worker reports is its result manifest: an exit 0 without one (or with one
     * that says failed, or with an output gone) is a failure that a retry may fix. */
    rp_db_job cur;
    if (rp_db_job_get(s->db, job_id, &cur) == 0 && cur.state == RP_JOB_RUNNING) {
        char why[300];
        int mrc = rp_jobfile_record(s->db, s->conf, s->data_dir, &cur, ok, why, sizeof why);
        if (ok && mrc != 0) {
            RP_ERROR("supervisor", "job result not recorded job=%lld rc=%s why=\"%s\"", job_id,
                     rp_strerror(mrc), why);
            ok = 0;
            rr.end = RP_PROC_EXITED;
            rr.exit_code = RP_JOB_EXIT_FAIL;
            snprintf(rr.reason, sizeof rr.reason, "exit 0, %.140s", why); /* short column */
        }
    }
    if (stopping && !ok) {
        RP_INFO("supervisor",
                "job interrupted by shutdown job=%lld series=%s version=%d "
                "wall_s=%.2f",
                job_id, sl->subject, sl->version, r->wall_s);
        return; /* rp_db_jobs_requeue_running() after every worker has ended */
    }
    int permanent = r->end == RP_PROC_EXITED && rp_worker_exit_permanent(r->exit_code);
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
        rc = rp_db_job_finish(s->db, job_id, ok, status, r->reason, permanent, s->o.backoff_base_s,
                              s->o.backoff_max_s, &after);
        if (rc == RP_ENOENT || rc == RP_EINVAL)
            break; /* deleted, or no longer running (an operator requeued it) */
    }
    if (rc == RP_EINVAL && ok && rp_db_job_get(s->db, job_id, &after) == 0 &&
        after.state == RP_JOB_DONE)
        rc = 0; /* the worker recorded its success itself, with its outputs */
    if (rc != 0) {
        RP_ERROR("supervisor", "cannot record job end job=%lld rc=%s", job_id, rp_strerror(rc));
        return;
    }
    if (after.state == RP_JOB_DONE || after.state == RP_JOB_DEAD)
        rp_jobfile_remove(s->data_dir, job_id);
    rp_log_kv_quote(r->reason, q, sizeof q);
    rp_metrics_observe(RP_M_JOB_DURATION, r->wall_s, rp_job_state_name(after.state));
    if (ok) {
        RP_INFO("supervisor", "job done job=%lld series=%s version=%d wall_s=%.2f attempts=%d",
                job_id, sl->subject, sl->version, r->wall_s, after.attempts);
    } else if (after.state == RP_JOB_FAILED) {
        RP_WARN("supervisor",
                "job failed job=%lld series=%s version=%d reason=%s wall_s=%.2f "
                "attempts=%d/%d retry_at=%s",
                job_id, sl->subject, sl->version, q, r->wall_s, after.attempts,
                after.max_attempts, rp_time_iso8601(after.next_attempt_at, tb, sizeof tb));
    } else {
        RP_ERROR("supervisor",
                 "job dead job=%lld series=%s version=%d reason=%s wall_s=%.2f "
                 "attempts=%d/%d permanent=%d",
                 job_id, sl->subject, sl->version, q, r->wall_s, after.attempts,
                 after.max_attempts, permanent);
    }
    char detail[600];
    snprintf(detail, sizeof detail, "job=%lld series=%s version=%d state=%s reason=%s wall_s=%.2f",
             job_id, sl->subject, sl->version, rp_job_state_name(after.state), q, r->wall_s);
    rp_db_event_add(s->db, "job", detail);
    if (ok)
        after_done(s);
}

/* One batched poll of every job in flight; records the ends. */
static void reap(rp_supervisor *s, int stopping)
{
    rp_exec_job *jobs = s->polled;
    int *idx = s->polled_slot;
    size_t n = 0;
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].busy) {
            jobs[n] = s->slots[i].ej;
            jobs[n].ended = 0;
            idx[n++] = i;
        }
    if (n == 0)
        return;
    int rc = s->exec.ops->poll(s->exec.self, jobs, n, rp_mono_s());
    if (rc != 0) {
        RP_WARN("supervisor", "executor poll failed executor=%s rc=%s", s->exec.ops->name,
                rp_strerror(rc));
        return;
    }
    for (size_t k = 0; k < n; k++) {
        if (!jobs[k].ended)
            continue;
        slot *sl = &s->slots[idx[k]];
        record_end(s, sl, &jobs[k].result, stopping);
        sl->busy = 0;
        add_running(s, -1);
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
    /* Everything the worker needs, in its job file: it never opens the index. */
    rp_job_resources res;
    char why[300];
    if ((rc = rp_jobfile_write(s->db, s->conf, s->data_dir, &job, &res, why, sizeof why)) != 0) {
        int gone = rc == RP_ENOENT, bad = rc == RP_EUID || rc == RP_EPARSE;
        char reason[400];
        snprintf(reason, sizeof reason, "not started: %s", why);
        RP_ERROR("supervisor", "cannot prepare job job=%lld rc=%s why=\"%s\"", job.id,
                 rp_strerror(rc), why);
        rp_db_job_finish(s->db, job.id, 0,
                         gone  ? RP_JOB_EXIT_GONE
                         : bad ? RP_JOB_EXIT_BADINPUT
                               : RP_JOB_EXIT_FAIL,
                         reason, gone || bad, s->o.backoff_base_s, s->o.backoff_max_s, NULL);
        return rc;
    }
    rp_exec_request rq = {.job_id = job.id,
                          .argv = argv,
                          .log_path = logpath,
                          .memory_mb = s->o.memory_mb,
                          .timeout_s = s->o.timeout_s,
                          .res = res};
    memset(sl, 0, sizeof *sl);
    int pid = 0;
    rc = s->exec.ops->submit(s->exec.self, &rq, sl->ej.id, sizeof sl->ej.id, &pid);
    if (rc == RP_EBUSY) {
        /* The batch system cannot take jobs now (its controller is down): not the job's
         * fault, so it waits in the queue, the attempt not counted, and is asked again. */
        long long n = 0;
        rp_db_jobs_requeue_running(s->db, job.id, &n);
        s->exec_busy_until = rp_mono_s() + EXEC_BUSY_RETRY_S;
        RP_WARN("supervisor", "executor cannot take jobs now, job waits job=%lld executor=%s",
                job.id, s->exec.ops->name);
        return rc;
    }
    if (rc != 0) {
        char why[96];
        snprintf(why, sizeof why, "cannot start worker (%s executor: %s)", s->exec.ops->name,
                 strcmp(s->exec.ops->name, "local") == 0 ? "fork/log file" : "submission refused");
        rp_db_job_finish(s->db, job.id, 0, -1, why, 0,
                         s->o.backoff_base_s, s->o.backoff_max_s, NULL);
        return rc;
    }
    sl->busy = 1;
    sl->ej.job_id = job.id;
    sl->version = job.version;
    rp_strlcpy(sl->subject, rp_db_job_subject(&job), sizeof sl->subject);
    rp_db_job_set_exec(s->db, job.id, sl->ej.id, pid);
    if (res.cpus || res.mem_mb || res.time_limit_s)
        RP_INFO("supervisor", "job resources job=%lld cpus=%d mem_mb=%lld time_limit_s=%d",
                job.id, res.cpus, res.mem_mb, res.time_limit_s);
    add_running(s, 1);
    char tb[32];
    RP_INFO("supervisor",
            "job started job=%lld series=%s version=%d attempt=%d/%d pid=%d "
            "created_at=%s wait_s=%.3f",
            job.id, sl->subject, job.version, job.attempts, job.max_attempts, pid,
            rp_time_iso8601(job.created_at, tb, sizeof tb), rp_now_s() - job.created_at);
    return 0;
}

/* Stop with an executor whose jobs die with the node: ask every worker to end, wait for
 * them, and put their jobs back in the queue. */
static void stop_workers(rp_supervisor *s)
{
    double now = rp_mono_s();
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].busy)
            s->exec.ops->cancel(s->exec.self, s->slots[i].ej.id, now);
    while (rp_supervisor_running(s) > 0 && rp_mono_s() - now < STOP_WAIT_S) {
        reap(s, 1);
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    }
    long long n = 0;
    rp_db_jobs_requeue_running(s->db, 0, &n);
    if (n)
        RP_INFO("supervisor", "requeued interrupted jobs n=%lld", n);
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
        for (int i = 0; i < s->n_slots && s->worker_bin[0] && rp_mono_s() >= s->exec_busy_until;
             i++) {
            if (rp_supervisor_running(s) >= s->o.workers)
                break;
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
        /* An executor that said "not now" is not asked again before its time. */
        double hold = s->exec_busy_until - rp_mono_s();
        if (hold > wait && rp_supervisor_running(s) == 0)
            wait = hold;
        if (nap(s, wait))
            break;
    }
    if (!s->exec.ops->reattach)
        stop_workers(s);
    else if (rp_supervisor_running(s) > 0)
        RP_INFO("supervisor", "jobs left running for the next start executor=%s n=%d",
                s->exec.ops->name, rp_supervisor_running(s));
    return NULL;
}

/* A job left running whose worker finished while the node was down (or that its batch
 * system already forgot) has its result manifest: recorded now, done, not processed again.
 * 1 when it was. */
static int recorded_from_manifest(rp_supervisor *s, const rp_db_job *job)
{
    char why[300];
    if (rp_jobfile_record(s->db, s->conf, s->data_dir, job, 1, why, sizeof why) != 0 ||
        rp_db_job_finish(s->db, job->id, 1, 0, "exit 0 (recorded at start)", 0, 0, 0, NULL) != 0)
        return 0;
    rp_jobfile_remove(s->data_dir, job->id);
    RP_INFO("supervisor", "job result recorded at start job=%lld", job->id);
    return 1;
}

/* Jobs a previous life of the node left running: tracked again when the executor can, else
 * recorded from their manifest when their worker finished, else requeued (the interrupted
 * attempt does not count). */
static int adopt_running(rp_supervisor *s)
{
    long long n = 0;
    rp_db_job *jobs = NULL;
    size_t nj = 0;
    int rc = rp_db_jobs_list(s->db, RP_JOB_RUNNING, NULL, 0, &jobs, &nj);
    if (rc)
        return rc;
    if (!s->exec.ops->reattach) {
        long long requeued = 0;
        for (size_t i = 0; i < nj; i++)
            if (!recorded_from_manifest(s, &jobs[i]) &&
                rp_db_jobs_requeue_running(s->db, jobs[i].id, &n) == 0)
                requeued += n;
        if (requeued)
            RP_WARN("supervisor", "requeued jobs left running by a previous run n=%lld", requeued);
        free(jobs);
        return 0;
    }
    slot *grown = realloc(s->slots, (size_t)(s->n_slots + (int)nj) * sizeof *grown);
    if (!grown) {
        free(jobs);
        return RP_ENOMEM;
    }
    s->slots = grown;
    memset(s->slots + s->n_slots, 0, nj * sizeof *s->slots);
    s->n_slots += (int)nj;
    for (size_t i = 0; i < nj; i++) {
        if (jobs[i].exec_id[0] &&
            s->exec.ops->reattach(s->exec.self, jobs[i].exec_id, jobs[i].id) == 0) {
            slot *sl = NULL;
            for (int k = 0; k < s->n_slots && !sl; k++)
                if (!s->slots[k].busy)
                    sl = &s->slots[k];
            sl->busy = 1;
            rp_strlcpy(sl->ej.id, jobs[i].exec_id, sizeof sl->ej.id);
            sl->ej.job_id = jobs[i].id;
            sl->version = jobs[i].version;
            rp_strlcpy(sl->subject, rp_db_job_subject(&jobs[i]), sizeof sl->subject);
            s->running++;
            RP_INFO("supervisor", "job reattached job=%lld exec_id=%s", jobs[i].id,
                    jobs[i].exec_id);
        } else if (!recorded_from_manifest(s, &jobs[i]) &&
                   rp_db_jobs_requeue_running(s->db, jobs[i].id, &n) == 0 && n) {
            RP_WARN("supervisor", "requeued a job left running by a previous run job=%lld",
                    jobs[i].id);
        }
    }
    free(jobs);
    return 0;
}

int rp_supervisor_start(const rp_supervisor_opts *o, rp_supervisor **out)
{
    *out = NULL;
    rp_supervisor *s = calloc(1, sizeof *s);
    if (!s)
        return RP_ENOMEM;
    s->o = *o;
    if (s->o.workers <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        s->o.workers = cores > 0 ? (int)cores : 1;
    }
    if (s->o.max_attempts < 1)
        s->o.max_attempts = 3;
    if (s->o.backoff_base_s <= 0)
        s->o.backoff_base_s = 10;
    if (s->o.backoff_max_s <= 0)
        s->o.backoff_max_s = 3600;
    if (s->o.poll_s <= 0)
        s->o.poll_s = 0.5;
    int rc = RP_EINVAL;
    if (o->executor) {
        s->exec = *o->executor;
    } else {
        if ((rc = rp_executor_local(&s->exec)) != 0)
            goto fail;
        s->own_exec = 1;
        rc = RP_EINVAL;
    }
    if (!o->db_path || !o->data_dir || rp_strlcpy(s->db_path, o->db_path, sizeof s->db_path) ||
        rp_strlcpy(s->data_dir, o->data_dir, sizeof s->data_dir))
        goto fail;
    if (o->config_path && rp_strlcpy(s->config_path, o->config_path, sizeof s->config_path))
        goto fail;
    s->conf = o->conf;
    if (!s->conf) {
        if ((rc = rp_conf_defaults(&s->own_conf)) != 0)
            goto fail;
        s->has_own_conf = 1;
        rc = RP_EINVAL;
        if (rp_strlcpy(s->own_conf.data_dir, o->data_dir, sizeof s->own_conf.data_dir))
            goto fail;
        s->conf = &s->own_conf;
    }
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
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    if ((rc = adopt_running(s)) == 0 &&
        (!(s->polled = calloc((size_t)s->n_slots, sizeof *s->polled)) ||
         !(s->polled_slot = calloc((size_t)s->n_slots, sizeof *s->polled_slot))))
        rc = RP_ENOMEM;
    if (rc != 0 || pthread_create(&s->thread, NULL, run, s) != 0) {
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        if (rc == 0)
            rc = RP_EINTERNAL;
        goto fail;
    }
    RP_INFO("supervisor",
            "started workers=%d timeout_s=%d memory_mb=%lld max_attempts=%d "
            "backoff_s=%g..%g executor=%s worker=%s",
            s->o.workers, s->o.timeout_s, s->o.memory_mb, s->o.max_attempts, s->o.backoff_base_s,
            s->o.backoff_max_s, s->exec.ops->name, s->worker_bin);
    *out = s;
    return 0;
fail:
    if (s->db)
        rp_db_close(s->db);
    if (s->own_exec)
        s->exec.ops->free(s->exec.self);
    if (s->has_own_conf)
        rp_conf_free(&s->own_conf);
    free(s->polled);
    free(s->polled_slot);
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
    if (s->own_exec)
        s->exec.ops->free(s->exec.self);
    if (s->has_own_conf)
        rp_conf_free(&s->own_conf);
    free(s->polled);
    free(s->polled_slot);
    free(s->slots);
    free(s);
    RP_INFO("supervisor", "stopped");
}
