/* cli/cmd_job — `radprep process --job N`: the worker process of one job. Reads the same
 * configuration as the daemon (passed by the supervisor as --config/--data-dir) and runs the
 * job (worker/). Its exit code is the worker protocol (worker/worker.h). */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "common/common.h"
#include "conf/conf.h"
#include "worker/worker.h"

int rp_cli_has_job_option(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--job") == 0 || strncmp(argv[i], "--job=", 6) == 0)
            return 1;
    return 0;
}

int rp_cli_process_job(int argc, char **argv)
{
    const char *job_s = NULL, *config = NULL, *data_dir = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = rp_cli_opt_value(argc, argv, &i, "--job")))
            job_s = v;
        else if ((v = rp_cli_opt_value(argc, argv, &i, "--config")))
            config = v;
        else if ((v = rp_cli_opt_value(argc, argv, &i, "--data-dir")))
            data_dir = v;
        else {
            fprintf(stderr,
                    "radprep process: unknown option '%s'\n"
                    "usage: radprep process --job N [--config FILE] [--data-dir DIR]\n",
                    argv[i]);
            return RP_JOB_EXIT_USAGE;
        }
    }
    char *end = NULL;
    long long job_id = job_s ? strtoll(job_s, &end, 10) : 0;
    if (!job_s || !*job_s || *end || job_id <= 0) {
        fprintf(stderr, "radprep process: --job needs a positive job number\n");
        return RP_JOB_EXIT_USAGE;
    }
    rp_conf c;
    char err[512] = "";
    int rc = rp_conf_defaults(&c);
    if (rc == 0 && config)
        rc = rp_conf_load(&c, config, err, sizeof err);
    if (rc == 0 && data_dir && rp_strlcpy(c.data_dir, data_dir, sizeof c.data_dir) != 0)
        rc = RP_EINVAL;
    if (rc != 0) {
        fprintf(stderr, "radprep process: %s\n", err[0] ? err : rp_strerror(rc));
        rp_conf_free(&c);
        return RP_JOB_EXIT_USAGE;
    }
    /* The worker's stderr is its job log: say what happened (the CLI is quiet otherwise). */
    if (!getenv("RP_LOG_LEVEL"))
        rp_log_set_level(strcasecmp(c.log_level, "debug") == 0 ? RP_LOG_DEBUG : RP_LOG_INFO);
    int code = rp_job_run(&c, job_id);
    rp_conf_free(&c);
    return code;
}
