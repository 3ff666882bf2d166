/* scp/processing — the supervisor and the completion monitor as one node service. */
#include "sched/processing.h"

#include <stdlib.h>

#include "common/common.h"
#include "sched/monitor.h"
#include "sched/supervisor.h"

typedef struct processing {
    rp_supervisor *sup;
    rp_monitor *mon;
    rp_completion_notes *notes; /* instances acknowledged, maybe not indexed yet */
} processing;

static int start(rp_node *node, void *arg)
{
    processing *p = arg;
    const rp_conf *c = rp_node_conf(node);
    rp_supervisor_opts o;
    rp_supervisor_opts_from_conf(c, &o);
    o.db_path = rp_node_db_path(node);
    int rc = rp_supervisor_start(&o, &p->sup);
    if (rc != 0) {
        RP_ERROR("processing", "cannot start the job supervisor rc=%s", rp_strerror(rc));
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
    if (rc == 0)
        rc = rp_monitor_start(c, o.db_path, p->sup, p->notes, &p->mon);
    if (rc != 0) {
        RP_ERROR("processing", "cannot start the completion monitor rc=%s", rp_strerror(rc));
        rp_supervisor_stop(p->sup);
        p->sup = NULL;
        return rc;
    }
    rp_supervisor_wake(p->sup);
    return 0;
}

static void stop(rp_node *node, void *arg)
{
    (void)node;
    processing *p = arg;
    rp_monitor_stop(p->mon);
    rp_supervisor_stop(p->sup);
    rp_completion_notes_free(p->notes);
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

int rp_processing_service(rp_node_service *svc)
{
    processing *p = calloc(1, sizeof *p);
    if (!p || !(p->notes = rp_completion_notes_new())) {
        free(p);
        return RP_ENOMEM;
    }
    svc->name = "processing";
    svc->start = start;
    svc->stop = stop;
    svc->on_instance = on_instance;
    svc->arg = p;
    return 0;
}
