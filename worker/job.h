/*
 * scp/job — the worker side of a job: what `radprep process --job N` does, in its own
 * process, under the limits the supervisor set. Internal to scp/ (cli/cmd_job.c, tests).
 *
 * Contract:
 *  - rp_job_run() loads job N and its series from the database, takes the series' instances
 *    received up to the job's creation (the completion of that version: a later instance
 *    belongs to the next version), checks every file, runs the processing and writes the
 *    outputs into <outputs_dir>/<study_uid>/<series_uid>/v<version>/ through a temporary
 *    directory renamed into place (so a version's folder is whole or absent, and versions
 *    never mix). Every output file is recorded (rp_db_output_add) with its sha256, and the
 *    folder as the job's output_dir. One worker per version at a time (a flock on
 *    <series>/.v<version>.lock): a second one exits at once with RP_JOB_EXIT_FAIL.
 *  - On success it marks the job done itself (when the job is running), right after the
 *    outputs are recorded, so that a daemon dying at that moment cannot have the version
 *    processed again; every other end is recorded by the supervisor from the exit code.
 *    The return value is the process exit code (RP_JOB_EXIT_* in scp/supervisor.h).
 *  - Test hook: when RP_TEST_JOB_FAULT is set in the environment to a mode (abort, segv,
 *    oom, hang, fail; slow = sleep 3 s holding the version's lock, then work normally),
 *    optionally followed by @SERIES_UID to hit one series only (several such entries may be
 *    given, separated by commas), the worker misbehaves that way. Unset (always, outside
 *    tests) it does nothing.
 */
#ifndef RP_SCP_JOB_H
#define RP_SCP_JOB_H

#include "conf/conf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Run job `job_id` with configuration c. Returns an RP_JOB_EXIT_* code. */
int rp_job_run(const rp_conf *c, long long job_id);

/* Output folder of (study, series, version) under c's outputs dir, into buf. */
int rp_job_output_dir(const rp_conf *c, const char *study_uid, const char *series_uid, int version,
                      char *buf, size_t bufsz);

#ifdef __cplusplus
}
#endif
#endif
