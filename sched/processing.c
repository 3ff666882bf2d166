/* sched/processing — the supervisor and the completion monitor as one node service. */
#include "sched/sched.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/common.h"

typedef struct processing {
    rp_processing_hooks hooks;
    rp_supervisor *sup;
    rp_completion_notes *notes; /* instances acknowledged, maybe not indexed yet */
    pthread_mutex_t mu;         /* guards mon: the index queue's thread wakes it */
    rp_monitor *mon;
    rp_executor exec; /* [executor] kind = slurm; ops NULL: the supervisor's local one */
} processing;

static int start(rp_node *node, void *arg)
{
    processing *p = arg;
    const rp_conf *c = rp_node_conf(node);
    rp_supervisor_opts o;
    rp_supervisor_opts_from_conf(c, &o);
    o.db_path = rp_node_db_path(node);
    o.derived_queued = p->hooks.derived_queued;
    o.derived_queued_arg = p->hooks.arg;
    int rc;
    if (c->executor.kind == RP_EXECUTOR_SLURM) {
        rp_slurm_opts so;
        char logs[RP_PATH_MAX + 8];
        rp_slurm_opts_from_conf(c, &so);
        snprintf(logs, sizeof logs, "%s/logs", c->data_dir);
        so.script_dir = logs;
        if ((rc = rp_executor_slurm(&so, &p->exec)) != 0) {
            RP_ERROR("processing", "cannot set up the slurm executor rc=%s", rp_strerror(rc));
            return rc;
        }
        o.executor = &p->exec;
    }
    rc = rp_supervisor_start(&o, &p->sup);
    if (rc != 0) {
        RP_ERROR("processing", "cannot start the job supervisor rc=%s", rp_strerror(rc));
        if (p->exec.ops)
            p->exec.ops->free(p->exec.self);
        p->exec.ops = NULL;
        return rc;
    }
    /* Completions that came due while the node was down happen before READY. */
    rp_db *db = NULL;
    if ((rc = rp_db_open(o.db_path, &db)) == 0) {
        int done = 0;
        rc = rp_monitor_pass(db, c, NULL, rp_now_s(), &done, NULL);
        rp_db_close(db);
        if (done)
            RP_INFO("processing", "series completed at start n=%d", done);
    }
    rp_monitor *mon = NULL;
    if (rc == 0)
        rc = rp_monitor_start(c, o.db_path, 0, p->sup, p->notes, &mon);
    if (rc != 0) {
        RP_ERROR("processing", "cannot start the completion monitor rc=%s", rp_strerror(rc));
        rp_supervisor_stop(p->sup);
        p->sup = NULL;
        if (p->exec.ops)
            p->exec.ops->free(p->exec.self);
        p->exec.ops = NULL;
        return rc;
    }
    pthread_mutex_lock(&p->mu);
    p->mon = mon;
    pthread_mutex_unlock(&p->mu);
    rp_supervisor_wake(p->sup);
    return 0;
}

static void stop(rp_node *node, void *arg)
{
    (void)node;
    processing *p = arg;
    pthread_mutex_lock(&p->mu);
    rp_monitor *mon = p->mon;
    p->mon = NULL;
    pthread_mutex_unlock(&p->mu);
    rp_monitor_stop(mon);
    rp_supervisor_stop(p->sup);
    if (p->exec.ops)
        p->exec.ops->free(p->exec.self);
    rp_completion_notes_free(p->notes);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

/* From an association thread, after each stored instance: O(1), never blocks for long. */
static void on_instance(rp_node *node, void *arg, const rp_instance_meta *m)
{
    (void)node;
    processing *p = arg;
    rp_completion_notes_add(p->notes, m->series_uid,
                            m->received_at > 0 ? m->received_at : rp_now_s());
}

void rp_processing_indexed(void *arg, size_t n)
{
    processing *p = arg;
    if (!p || n == 0)
        return;
    pthread_mutex_lock(&p->mu);
    rp_monitor_wake(p->mon); /* NULL before start and after stop: nothing to wake */
    pthread_mutex_unlock(&p->mu);
}

int rp_processing_service(rp_node_service *svc, const rp_processing_hooks *hooks)
{
    processing *p = calloc(1, sizeof *p);
    if (!p || !(p->notes = rp_completion_notes_new())) {
        free(p);
        return RP_ENOMEM;
    }
    if (hooks)
        p->hooks = *hooks;
    pthread_mutex_init(&p->mu, NULL);
    svc->name = "processing";
    svc->start = start;
    svc->stop = stop;
    svc->on_instance = on_instance;
    svc->arg = p;
    return 0;
}
