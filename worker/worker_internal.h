/*
 * worker internals: the job file a worker reads, the result it reports, and the two kinds of
 * work behind rp_job_run(). Used only inside worker/.
 */
#ifndef RP_WORKER_INTERNAL_H
#define RP_WORKER_INTERNAL_H

#include <cjson/cJSON.h>

#include "worker/worker.h"

/* A job file, parsed (see sched/sched.h and docs/cluster.md). Strings point into root. */
typedef struct rp_job_spec {
    cJSON *root; /* owned: rp_job_spec_free() */
    long long id;
    int attempt, version;
    int fuse; /* kind "fuse"; else "process" */
    double created_at;
    const char *series_uid, *study_uid, *modality; /* "" when absent */
    const char *store_root, *parent, *out_dir, *manifest;
    const cJSON *rule;    /* process: the node's rule (object) or NULL */
    const cJSON *inputs;  /* process: [{sop_instance_uid, instance_number, file, sha256}] */
    const char *fusion_rule;
    const cJSON *members; /* fuse: [{sequence, series_uid, series_version, inputs}] */
} rp_job_spec;

/* Parse the job file at path. RP_ENOENT when absent, RP_EPARSE (logged) when malformed. */
int rp_job_spec_load(const char *path, rp_job_spec *js);
void rp_job_spec_free(rp_job_spec *js);
/* String value of key in o ("" when absent or not a string). */
const char *rp_job_str(const cJSON *o, const char *key);

/* What a job reports in its result manifest. */
typedef struct rp_job_result {
    int code;           /* the rp_worker_exit */
    char reason[600];   /* why it failed ("" when ok) */
    int published;      /* the version folder is in place */
    rp_output_list files;
    cJSON *qc;          /* owned; may be NULL */
    char send_to[512];  /* derived instances go there ("" none) */
    char derived_dir[1200];
    char event_kind[32]; /* an audit event for the node to add ("" none) */
    char event_detail[2048];
} rp_job_result;

/* A 'fuse' job: the members through the [fusion] rule, published with pub. Fills r. */
void rp_worker_fuse(const rp_conf *c, const rp_job_spec *js, rp_publish *pub, rp_job_result *r);

#endif
