/* cli/cmd_job — `radprep process --job N [--config FILE] [--data-dir DIR]`: the worker entry
 * the supervisor execs (scp/supervisor.c). cmd_process.c hands over any argument vector that
 * contains --job. Returns the process exit code (RP_JOB_EXIT_* in scp/supervisor.h). */
#ifndef RP_CLI_CMD_JOB_H
#define RP_CLI_CMD_JOB_H

/* argv[0] is the subcommand name ("process"); options follow in any order. */
int rp_cli_process_job(int argc, char **argv);

/* 1 if argv (argc entries) has a --job option, so the caller should hand over. */
int rp_cli_has_job_option(int argc, char **argv);

#endif
