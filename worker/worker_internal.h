/*
 * worker internals: the two kinds of work behind rp_job_run(). Used only inside worker/.
 */
#ifndef RP_WORKER_INTERNAL_H
#define RP_WORKER_INTERNAL_H

#include "worker/worker.h"

/* A 'fuse' job (worker/fusion.c): job->kind is RP_JOB_KIND_FUSE. Returns an rp_worker_exit. */
int rp_worker_fuse(const rp_conf *c, rp_db *db, const char *store_root, const rp_db_job *job);

#endif
