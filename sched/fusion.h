/*
 * scp/fusion — study-level fusion in the node ([fusion NAME] rules, docs/processing.md).
 * Internal to scp/ (monitor, job worker) and cli/ (`radprep fuse`).
 *
 * Contract:
 *  - rp_fusion_check_study() looks at one study: for each fusion rule (or the one named), it
 *    reads the header of the first instance of each series that is no longer receiving,
 *    assigns one series per sequence (in sequence order, the lowest series number not taken)
 *    and, when every sequence has one, enqueues one job "fuse:RULE" for the study with
 *    version k (rp_db_fusion_enqueue: idempotent per set of member series versions). While
 *    a series of the study is still receiving, nothing is decided (automatic mode). When the
 *    study is quiet and a sequence is missing, it reports it once per situation: a WARN log
 *    line and an event 'fuse_missing' "study=.. rule=.. missing=T2 present=.."; it never
 *    guesses a substitute.
 *  - rp_fusion_job_run() is the worker for a "fuse:RULE" job: the member series' instances
 *    received up to the job's creation, fused by rp_pipeline_fuse_files() into
 *    <outputs_dir>/<study>/fusion-<RULE>/v<k>/ (temporary folder renamed into place, one
 *    worker per version by flock), outputs recorded with their sha256, job marked done.
 *    Returns an RP_JOB_EXIT_* code.
 */
#ifndef RP_SCP_FUSION_H
#define RP_SCP_FUSION_H

#include "conf/conf.h"
#include "db/db.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_fusion_check {
    int queued;         /* jobs newly queued */
    int already;        /* sets that already had a job */
    int missing;        /* rules with a missing sequence (study quiet) */
    int waiting;        /* rules not decided: a series is still receiving */
    long long last_job; /* id of the last job queued or found */
    int last_version;
    char reason[512]; /* the last "fuse: missing sequence ..." or waiting reason */
} rp_fusion_check;

/* rule_name NULL: every [fusion] rule; manual: do not wait for receiving series (operator
 * trigger; series still receiving are left out). store_root: where instance files live. */
int rp_fusion_check_study(rp_db *db, const rp_conf *c, const char *store_root,
                          const char *study_uid, const char *rule_name, int manual,
                          rp_fusion_check *out);

/* Convenience for the monitor: the study of `series_uid` (just completed) is checked. */
void rp_fusion_on_series_complete(rp_db *db, const rp_conf *c, const char *series_uid);

/* Worker for a job whose kind starts with "fuse:". */
int rp_fusion_job_run(const rp_conf *c, rp_db *db, const char *store_root, const rp_db_job *job);

#ifdef __cplusplus
}
#endif
#endif
