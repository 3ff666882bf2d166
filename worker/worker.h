/*
 * worker — the work of one job, in its own process: what `radprep process --job N` runs
 * under the limits the supervisor (sched/) set. A library of the `radprep` tool; the daemon
 * never links it.
 *
 * Contract:
 *  - rp_job_run() loads job N and does what its kind says:
 *      process  the series' instances received up to the job's creation (the completion of
 *               that version: a later instance belongs to the next version) go through the
 *               pipeline with the recipe of the rule that matches the series, into
 *               <outputs_dir>/<study_uid>/<series_uid>/v<version>/; derived instances the
 *               rule sends (the .dcm files in <version>/dicom) are queued in the outbox (idempotent rows);
 *      fuse     the member series' instances received up to the job's creation are fused by
 *               the [fusion NAME] rule into <outputs_dir>/<study_uid>/fusion-<NAME>/v<k>/.
 *  - Every version folder is published the same way (rp_publish_*): one worker per version
 *    (a flock on <parent>/.v<N>.lock: a second one exits at once with RP_JOB_EXIT_FAIL), the
 *    outputs written into a temporary folder, every file in it fsynced, the folder renamed
 *    into place (replacing what an attempt that finished unrecorded left), the parent
 *    fsynced; then every file is recorded (rp_db_output_add, with its sha256) and the folder
 *    is the job's output_dir. A version's folder is whole or absent; versions never mix.
 *  - On success the worker marks its job done itself (when the job is running), right after
 *    the outputs are recorded, so that a daemon dying at that moment cannot have the version
 *    processed again; every other end is recorded by the supervisor from the exit code.
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
#include "db/db.h"

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

/* Run job `job_id` with configuration c. Returns an rp_worker_exit. */
int rp_job_run(const rp_conf *c, long long job_id);

/* Output folder of (study, series, version) under c's outputs dir, into buf. */
int rp_job_output_dir(const rp_conf *c, const char *study_uid, const char *series_uid, int version,
                      char *buf, size_t bufsz);

/* ---- publishing one version's folder (see the contract) ---- */
typedef struct rp_publish {
    char parent[1024];  /* the folder the version lives in */
    char dir[1100];     /* <parent>/v<N>: where the version ends up */
    char tmp_dir[1200]; /* <parent>/.v<N>.tmp.<pid>: write the outputs here */
    int version;
    int lock_fd;
} rp_publish;

/* Create parent, take the version's lock (RP_EBUSY, logged, when another worker holds it),
 * remove temporary folders earlier attempts of this version left, and create tmp_dir.
 * rp_publish_end() must follow whatever this returns. */
int rp_publish_begin(rp_publish *p, const char *parent, int version);
/* fsync everything below tmp_dir, rename it to dir (replacing an old one), fsync parent;
 * record dir as the job's output_dir and every file below it (two levels) as an output of
 * job_id with its kind (nifti, json, png, dicom, seg, file) and sha256. *n_files (may be
 * NULL) gets how many. */
int rp_publish_commit(rp_publish *p, rp_db *db, long long job_id, int *n_files);
/* Remove tmp_dir if it is still there and release the lock. Idempotent. */
void rp_publish_end(rp_publish *p);

#ifdef __cplusplus
}
#endif
#endif
