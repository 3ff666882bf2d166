/*
 * worker — the work of one job, in its own process: what `radprep process --job N` runs
 * under the limits the supervisor (sched/) set. A library of the `radprep` tool; the daemon
 * never links it.
 *
 * Contract:
 *  - A worker never opens the database: the node (sched/) wrote everything the job needs
 *    into its job file, <data_dir>/jobs/job-N.json (format "radprep-job/1", docs/cluster.md),
 *    and the worker reads only that file and the configuration (for the pipeline's settings
 *    and the [fusion] rules), so it runs the same on this machine or on a cluster node that
 *    mounts data_dir. rp_job_run() does what the job's kind says:
 *      process  the series version's input files (the node listed the instances received up
 *               to the job's creation) go through the pipeline with the rule the node chose,
 *               into <outputs_dir>/<study_uid>/<series_uid>/v<version>/;
 *      fuse     the member series' input files are fused by the [fusion NAME] rule into
 *               <outputs_dir>/<study_uid>/fusion-<NAME>/v<k>/.
 *  - Every version folder is published the same way (rp_publish_*): one worker per version
 *    (a flock on <parent>/.v<N>.lock: a second one exits at once with RP_JOB_EXIT_FAIL and
 *    leaves no manifest), the outputs written into a temporary folder, every file in it
 *    fsynced, the folder renamed into place (replacing what an attempt that finished
 *    unrecorded left), the parent fsynced.
 *  - Then, still holding the version's lock, the worker leaves its result manifest at the
 *    path the job file names (<parent>/.v<N>.result.json, format "radprep-result/1"), written
 *    atomically (tmp, fsync, rename): job and attempt, status ok|failed, exit code, reason,
 *    every file of the version (path, kind, size, sha256), a QC summary, the derived
 *    instances to send (send_to and the folder of .dcm files) and an event for the audit
 *    trail. The node records it when the job has ended (outputs, outbox rows, done): a job
 *    that ran twice writes the same manifest twice and is recorded once.
 *  - The return value is the process exit code, an rp_worker_exit.
 *  - Test hook: when RP_TEST_JOB_FAULT is set in the environment to a mode (abort, segv,
 *    oom, hang, fail; slow = sleep 3 s holding the version's lock, then work normally),
 *    optionally followed by @SERIES_UID to hit one series only (several such entries may be
 *    given, separated by commas), a 'process' worker misbehaves that way. Unset (always,
 *    outside tests) it does nothing.
 */
#ifndef RP_WORKER_H
#define RP_WORKER_H

#include <stddef.h>

#include "conf/conf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Exit codes of a worker: the whole protocol between a worker process and the supervisor,
 * which retries FAIL and OOM, and never retries USAGE, BADINPUT, GONE and CONFIG. Anything
 * else (a signal, 127 for "cannot exec") is a plain failure. */
typedef enum rp_worker_exit {
    RP_JOB_EXIT_OK = 0,
    RP_JOB_EXIT_FAIL = 1,     /* failed, may succeed if retried (I/O, transient) */
    RP_JOB_EXIT_USAGE = 2,    /* bad command line: a bug, not retried */
    RP_JOB_EXIT_BADINPUT = 3, /* the input cannot be processed as it is: not retried */
    RP_JOB_EXIT_OOM = 4,      /* ran out of memory under its limit */
    RP_JOB_EXIT_GONE = 5,     /* job or its series no longer exists: not retried */
    RP_JOB_EXIT_CONFIG = 6    /* the configuration cannot work (e.g. send_to names an
                                 unusable peer, a fusion rule the configuration lacks) */
} rp_worker_exit;

/* 1 when a worker that exited with `code` must not be retried. Inline: the supervisor reads
 * the protocol without linking the worker. */
static inline int rp_worker_exit_permanent(int code)
{
    return code == RP_JOB_EXIT_USAGE || code == RP_JOB_EXIT_BADINPUT ||
           code == RP_JOB_EXIT_GONE || code == RP_JOB_EXIT_CONFIG;
}

/* The exit code for an RP_E* result of the work: 0 OK, RP_ENOMEM OOM, unreadable or
 * unusable input (RP_EPARSE, RP_EUID, RP_EGEOM, RP_EDECODE, RP_EUNSUPPORTED) BADINPUT,
 * RP_ECONF CONFIG, anything else (RP_ENOENT included: a file may be back on a retry) FAIL. */
rp_worker_exit rp_worker_exit_for(int rc);

/* Run job `job_id` (its job file under c->data_dir) with configuration c. Returns an
 * rp_worker_exit (RP_JOB_EXIT_GONE when there is no job file). */
int rp_job_run(const rp_conf *c, long long job_id);

/* ---- publishing one version's folder (see the contract) ---- */
typedef struct rp_publish {
    char parent[1024];  /* the folder the version lives in */
    char dir[1100];     /* <parent>/v<N>: where the version ends up */
    char tmp_dir[1200]; /* <parent>/.v<N>.tmp.<pid>: write the outputs here */
    int version;
    int lock_fd;
} rp_publish;

/* One file of a published version, as the result manifest lists it. */
typedef struct rp_output_file {
    char path[1400];
    char kind[16]; /* nifti, json, png, dicom, seg, file */
    long long size;
    char sha256[65];
} rp_output_file;

typedef struct rp_output_list {
    rp_output_file *v;
    size_t n;
} rp_output_list;
void rp_output_list_free(rp_output_list *l);

/* Create parent, take the version's lock (RP_EBUSY, logged, when another worker holds it),
 * remove temporary folders earlier attempts of this version left, and create tmp_dir.
 * rp_publish_end() must follow whatever this returns. */
int rp_publish_begin(rp_publish *p, const char *parent, int version);
/* fsync everything below tmp_dir, rename it to dir (replacing an old one), fsync parent;
 * list every file below dir (two levels, hidden ones left out) with its kind, size and
 * sha256 into *files (owned: rp_output_list_free). */
int rp_publish_commit(rp_publish *p, rp_output_list *files);
/* Remove tmp_dir if it is still there and release the lock. Idempotent. */
void rp_publish_end(rp_publish *p);

#ifdef __cplusplus
}
#endif
#endif
