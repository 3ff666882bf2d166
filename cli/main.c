/*
 * radprep — the operator tool: global options, configuration, and the command table.
 *
 *   radprep [--config FILE | --data-dir DIR] [-v] <command> [args]
 *
 * Exit status: 0 success, 1 the operation failed, 2 usage or configuration error; a failure
 * prints one line on stderr. Log lines from the modules are hidden unless -v is given (or
 * RP_LOG_LEVEL is set), so scripts see only the command's output and that one line.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/common.h"
#include "conf/conf.h"

#define DEFAULT_CONFIG "/etc/radprep/radprep.ini"

typedef struct command {
    const char *name;
    rp_cli_cmd_fn fn;
    int needs_config; /* 0: the command loads what it needs itself (check-config, process) */
    const char *summary;
} command;

static const command commands[] = {
    {"status", rp_cli_status, 1, "index counts, store size, free space, queues"},
    {"ls", rp_cli_ls, 1, "list patients|studies|series|instances"},
    {"show", rp_cli_show, 1, "one series: state, version, instances, jobs"},
    {"jobs", rp_cli_jobs, 1, "processing jobs"},
    {"outbox", rp_cli_outbox, 1, "derived instances waiting to be sent"},
    {"events", rp_cli_events, 1, "the audit trail (associations, jobs, reopenings...)"},
    {"audit", rp_cli_audit, 1, "who sent a study, from where, over what, when: audit --study UID"},
    {"trigger", rp_cli_trigger, 1, "mark series complete now and queue their processing"},
    {"reprocess", rp_cli_reprocess, 1, "run the processing of series again"},
    {"send", rp_cli_send, 1, "re-queue outbox entries (dead ones by default)"},
    {"reindex", rp_cli_reindex, 1, "rebuild the index from the files in the store"},
    {"check-config", rp_cli_check_config, 0, "load and validate a configuration file"},
    /* "process" also runs one job of the node: process --job N (cli/cmd_job.c) */
    {"process", rp_cli_process, 1, "preprocess a DICOM folder: process DIR --out OUT"},
    {"curate", rp_cli_curate, 1, "build a dataset (manifest, nnU-Net layout) from outputs"},
    {"fuse", rp_cli_fuse, 1, "queue a study's multi-sequence fusion: fuse --rule NAME --study UID"},
    {"fit", rp_cli_fit, 1, "fit a Nyul intensity model: fit nyul RULE | --dir DIR... --out M.json"},
    {"find", rp_cli_find, 1, "query a PACS: find --peer NAME [--level series] [keys...]"},
    {"pull", rp_cli_pull, 1, "retrieve from a PACS: pull --peer NAME --study UID | pull NAME"},
    {"pulls", rp_cli_pulls, 1, "what was pulled from PACS, and how it went"},
    {NULL, NULL, 0, NULL},
};

/* OpenMP reads its wait policy once, when its runtime initialises: left unset, the team's idle
 * threads spin on the cores the gzip writer's threads and serial steps need (LIDC ct_default
 * under load: 2.09-2.49 vs 2.46-3.17 s CPU). So the tool chooses "passive" unless the user
 * chose a policy; the node's jobs get it from their supervisor too. libgomp is linked into
 * this executable (cli/CMakeLists.txt), where this constructor's priority puts it before
 * libgomp's initialiser. (Before: the tool started itself once more with the variable, ~20
 * ms of every batch run.) */
__attribute__((constructor(101))) static void omp_passive(void)
{
    setenv("OMP_WAIT_POLICY", "passive", 0);
}

static void usage(FILE *fp)
{
    fprintf(fp, "usage: radprep [--config FILE] [--data-dir DIR] [-v] <command> [args]\n"
                "       radprep <command> --help\n"
                "       radprep --version\n\n"
                "commands:\n");
    for (const command *c = commands; c->name; c++)
        fprintf(fp, "  %-13s %s\n", c->name, c->summary);
    fprintf(fp,
            "\nglobal options:\n"
            "  --config FILE    configuration (default: $RADPREP_CONFIG, else %s if it\n"
            "                   exists, else the built-in defaults)\n"
            "  --data-dir DIR   use DIR as data_dir (store, index) whatever the file says\n"
            "  -v, --verbose    show log lines from the modules on stderr\n"
            "exit status: 0 success, 1 operation failed, 2 usage or configuration error\n",
            DEFAULT_CONFIG);
}

/* When the daemon runs unprivileged with the default data_dir, rp_conf_resolve_data_dir()
 * moved it to the XDG state directory; find the same index without creating anything. */
static void follow_data_dir_fallback(rp_conf *c)
{
    struct stat st;
    char path[RP_PATH_MAX + 32];
    if (strcmp(c->data_dir, "/var/lib/radprep") != 0 || stat(c->data_dir, &st) == 0)
        return;
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    char alt[RP_PATH_MAX];
    if (xdg && xdg[0] == '/')
        snprintf(alt, sizeof alt, "%s/radprep", xdg);
    else if (home && home[0] == '/')
        snprintf(alt, sizeof alt, "%s/.local/state/radprep", home);
    else
        return;
    snprintf(path, sizeof path, "%s/index.sqlite", alt);
    if (stat(path, &st) == 0)
        rp_strlcpy(c->data_dir, alt, sizeof c->data_dir);
}

int main(int argc, char **argv)
{
    const char *config = NULL, *data_dir = NULL;
    int verbose = 0;
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"data-dir", required_argument, NULL, 'd'},
        {"verbose", no_argument, NULL, 'v'},      {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int o;
    /* '+': stop at the command name; its options are its own. */
    while ((o = getopt_long(argc, argv, "+:c:d:vhV", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
        case 'd':
            if (!*optarg)
                return rp_cli_fail(RP_CLI_EXIT_USAGE, NULL, "option '--%s' needs a value",
                                   o == 'c' ? "config" : "data-dir");
            *(o == 'c' ? &config : &data_dir) = optarg;
            break;
        case 'v':
            verbose = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("radprep %s\n", RP_VERSION);
            return 0;
        case ':':
            return rp_cli_fail(RP_CLI_EXIT_USAGE, NULL, "option '%s' needs a value",
                               argv[optind - 1]);
        default:
            if (optopt && optopt != '?')
                return rp_cli_fail(RP_CLI_EXIT_USAGE, NULL,
                                   "unknown option '-%c' (see radprep --help)", optopt);
            return rp_cli_fail(RP_CLI_EXIT_USAGE, NULL, "unknown option '%s' (see radprep --help)",
                               argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, NULL, "no command given (see radprep --help)");
    if (verbose)
        rp_log_set_level(RP_LOG_DEBUG);
    else if (!getenv("RP_LOG_LEVEL"))
        rp_log_set_level((rp_log_level)(RP_LOG_ERROR + 1));

    const char *name = argv[optind];
    const command *cmd = NULL;
    for (const command *c = commands; c->name; c++)
        if (strcmp(c->name, name) == 0)
            cmd = c;
    if (!cmd)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, NULL, "unknown command '%s' (see radprep --help)",
                           name);

    rp_conf c;
    char err[1024] = "";
    if (rp_conf_defaults(&c) != 0)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, NULL, "out of memory");
    if (!config && getenv("RADPREP_CONFIG") && *getenv("RADPREP_CONFIG"))
        config = getenv("RADPREP_CONFIG");
    if (!config && cmd->needs_config && access(DEFAULT_CONFIG, F_OK) == 0)
        config = DEFAULT_CONFIG;
    if (config && cmd->needs_config && rp_conf_load(&c, config, err, sizeof err) != 0) {
        rp_conf_free(&c);
        return rp_cli_fail(RP_CLI_EXIT_USAGE, NULL, "%s", err);
    }
    if (config && !cmd->needs_config)
        rp_strlcpy(c.source, config, sizeof c.source); /* check-config: the file to check */
    if (data_dir) {
        char abs[RP_PATH_MAX];
        if (data_dir[0] != '/' && realpath(data_dir, abs))
            data_dir = abs;
        if (data_dir[0] != '/') {
            rp_conf_free(&c);
            return rp_cli_fail(RP_CLI_EXIT_USAGE, NULL, "--data-dir %s does not exist", data_dir);
        }
        rp_strlcpy(c.data_dir, data_dir, sizeof c.data_dir);
    } else {
        follow_data_dir_fallback(&c);
    }

    /* Each command parses its own options with getopt_long from a clean state. */
    int first = optind;
    optind = 0;
    int rc = cmd->fn(argc - first, argv + first, &c);
    rp_conf_free(&c);
    return rc;
}
