/*
 * cli — the `radprep` operator tool: its commands and their shared helpers (used only inside
 * cli/). The tool reaches the node only through the public headers of db/, store/, conf/,
 * pipeline/, sched/ and worker/; it never includes another folder's internals.
 *
 * Every command has the signature rp_cli_cmd_fn: argv[0] is the command name, options and
 * operands follow; `c` is the loaded configuration (global --config / --data-dir applied).
 * A command returns the process exit status: 0 success, RP_CLI_EXIT_FAIL (1) when the
 * operation failed, RP_CLI_EXIT_USAGE (2) for a usage or configuration error. On failure it
 * prints exactly ONE line, "radprep: <command>: <reason>", on stderr (rp_cli_fail()).
 */
#ifndef RP_CLI_H
#define RP_CLI_H

#include <stdio.h>

#include "conf/conf.h"
#include "db/db.h"

#define RP_CLI_EXIT_OK 0
#define RP_CLI_EXIT_FAIL 1
#define RP_CLI_EXIT_USAGE 2

typedef int (*rp_cli_cmd_fn)(int argc, char **argv, const rp_conf *c);

/* Commands (cli/cmd_*.c). */
int rp_cli_check_config(int argc, char **argv, const rp_conf *c);
int rp_cli_status(int argc, char **argv, const rp_conf *c);
int rp_cli_ls(int argc, char **argv, const rp_conf *c);
int rp_cli_show(int argc, char **argv, const rp_conf *c);
int rp_cli_jobs(int argc, char **argv, const rp_conf *c);
int rp_cli_outbox(int argc, char **argv, const rp_conf *c);
int rp_cli_events(int argc, char **argv, const rp_conf *c);
int rp_cli_trigger(int argc, char **argv, const rp_conf *c);
int rp_cli_reprocess(int argc, char **argv, const rp_conf *c);
int rp_cli_send(int argc, char **argv, const rp_conf *c);
int rp_cli_reindex(int argc, char **argv, const rp_conf *c);
/* Query/retrieve from a PACS (cmd_find.c, cmd_pull.c; docs/retrieve.md). */
int rp_cli_find(int argc, char **argv, const rp_conf *c);
int rp_cli_pull(int argc, char **argv, const rp_conf *c);
int rp_cli_pulls(int argc, char **argv, const rp_conf *c);
/* `radprep process DIR --out OUT` (cli/cmd_process.c); with --job it hands over to
 * rp_cli_process_job(), with --fusion to rp_cli_process_fusion(). */
int rp_cli_process(int argc, char **argv, const rp_conf *c);
/* `radprep process --job N [--config FILE] [--data-dir DIR]` (cli/cmd_job.c): the worker the
 * supervisor execs. Reads its own configuration; returns an rp_worker_exit. */
int rp_cli_process_job(int argc, char **argv);
/* 1 if argv (argc entries) has a --job option, so rp_cli_process hands over. */
int rp_cli_has_job_option(int argc, char **argv);
/* `radprep curate --out DATASET_DIR ...` (cli/cmd_curate.c). */
int rp_cli_curate(int argc, char **argv, const rp_conf *c);
/* `radprep curate --executor slurm|local DIR... --out DATASET`: the series preprocessed first
 * (a Slurm array, or here), then curated (cmd_curate_batch.c). */
int rp_cli_curate_has_executor(int argc, char **argv);
int rp_cli_curate_batch(int argc, char **argv, const rp_conf *c);
/* `radprep audit --study UID [--json]` (cli/cmd_audit.c): who sent a study and when. */
int rp_cli_audit(int argc, char **argv, const rp_conf *c);
/* Study-level commands (cli/cmd_fuse.c): `radprep fuse --rule NAME --study UID` queues the
 * fusion of that study now; `radprep fit nyul ...`; `radprep process DIR... --fusion NAME
 * --out OUT` (1 from rp_cli_has_fusion_option when argv holds --fusion). */
int rp_cli_fuse(int argc, char **argv, const rp_conf *c);
int rp_cli_fit(int argc, char **argv, const rp_conf *c);
int rp_cli_has_fusion_option(int argc, char **argv);
int rp_cli_process_fusion(int argc, char **argv, const rp_conf *c);
/* `radprep process --executor slurm DIR... | --list FILE --out OUT [options]`
 * (cli/cmd_process_array.c): one Slurm array task per series folder, waits for the array and
 * writes OUT/summary.json. 1 from rp_cli_has_executor_option when argv asks for slurm. */
int rp_cli_has_executor_option(int argc, char **argv);
int rp_cli_process_array(int argc, char **argv, const rp_conf *c);

/* Print "radprep: <cmd>: <reason>" on stderr and return `code`. */
int rp_cli_fail(int code, const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* rp_strerror(), with SQLite's own message for RP_EDB (static buffer). */
const char *rp_cli_errstr(int rc);

/* Path of the index database of c (<data_dir>/index.sqlite) into buf. */
const char *rp_cli_db_path(const rp_conf *c, char *buf, size_t bufsz);
/* Open the index. With must_exist, a missing file is an error (no empty index is created in
 * a mistyped data_dir). Returns an exit status (0 ok) after printing the reason. */
int rp_cli_open_db(const rp_conf *c, const char *cmd, int must_exist, rp_db **out);

/* Parse a positive integer option value; -1 when invalid. */
long long rp_cli_parse_count(const char *s);

/* The value of option `name` at argv[*i], as "--name=VALUE" or "--name VALUE" (then *i moves
 * past it); NULL when argv[*i] is not that option (or its value is missing). For commands
 * that take options in any order among operands, where getopt does not fit. */
const char *rp_cli_opt_value(int argc, char **argv, int *i, const char *name);

/* Format helpers. */
const char *rp_cli_time(double t, char *buf, size_t bufsz);     /* "-" for 0 */
const char *rp_cli_bytes(long long n, char *buf, size_t bufsz); /* "1.5 GiB" */

/* A table of text cells printed aligned, or as a JSON array of objects. */
typedef struct rp_cli_table rp_cli_table;
rp_cli_table *rp_cli_table_new(int ncol, const char *const *names);
/* kinds: RP_DB_COL_* per cell (NULL: all text); values NULL print as "-" / JSON null. */
int rp_cli_table_add(rp_cli_table *t, const char *const *values, const int *kinds);
size_t rp_cli_table_rows(const rp_cli_table *t);
void rp_cli_table_print(const rp_cli_table *t, FILE *fp);
/* New cJSON array (cJSON *, as void * to keep cJSON out of this header). */
void *rp_cli_table_json(const rp_cli_table *t);
void rp_cli_table_free(rp_cli_table *t);
/* rp_db_row_fn that appends to the table passed as user (created on the first row when
 * *(rp_cli_table **)user is NULL). */
int rp_cli_table_row_fn(void *user, int ncol, const char *const *names, const char *const *values,
                        const int *kinds);
/* Table of jobs (cmd_queue.c), shared by `jobs` and `show`. */
rp_cli_table *rp_cli_jobs_table(const rp_db_job *j, size_t n);
/* Print a cJSON value (void *) on stdout, formatted, and delete it. */
void rp_cli_json_print(void *json);

#endif
