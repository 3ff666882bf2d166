/* cli/cmd_ops — operator actions: `trigger`, `reprocess`, `send`, `reindex`. They change the
 * node's state only through the db and store APIs, so a running radprepd sees them at once
 * (its monitor, supervisor and sender poll the database). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/common.h"
#include "store/store.h"

/* --help only; returns -1 after printing help, >0 on a usage error, 0 to go on. */
static int help_only(int argc, char **argv, const char *cmd, void (*usage)(FILE *))
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (o == 'h') {
            usage(stdout);
            return -1;
        }
        return rp_cli_fail(RP_CLI_EXIT_USAGE, cmd, "unknown option '%s'", argv[optind - 1]);
    }
    return 0;
}

static void trigger_usage(FILE *fp)
{
    fprintf(fp, "usage: radprep trigger SERIES_UID...\n"
                "Mark receiving series complete now (reason 'operator') and queue their\n"
                "processing job, without waiting for the quiet period. A series that is already\n"
                "complete is left as it is (see radprep reprocess).\n");
}

int rp_cli_trigger(int argc, char **argv, const rp_conf *c)
{
    int rc = help_only(argc, argv, "trigger", trigger_usage);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (optind >= argc)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "trigger", "needs at least one SERIES_UID");
    rp_db *db;
    if ((rc = rp_cli_open_db(c, "trigger", 1, &db)))
        return rc;
    int status = 0;
    for (int i = optind; i < argc && !status; i++) {
        long long job = 0;
        rc = rp_db_series_complete(db, argv[i], 0, RP_COMPLETED_OPERATOR, c->job_max_attempts,
                                   &job);
        if (rc == 0) {
            char detail[256];
            snprintf(detail, sizeof detail, "series=%s reason=operator job=%lld via=cli", argv[i],
                     job);
            rp_db_event_add(db, "series_complete", detail);
            printf("%s complete (operator), job %lld queued\n", argv[i], job);
        } else if (rc == RP_EEXIST) {
            rp_db_series_info si;
            rp_db_series_get(db, argv[i], &si);
            printf("%s already %s (version %d), nothing to do; radprep reprocess runs it "
                   "again\n",
                   argv[i], rp_series_state_name(si.state), si.version);
        } else if (rc == RP_ENOENT) {
            status = rp_cli_fail(RP_CLI_EXIT_FAIL, "trigger", "no series %s in the index", argv[i]);
        } else {
            status = rp_cli_fail(RP_CLI_EXIT_FAIL, "trigger", "%s: %s", argv[i], rp_cli_errstr(rc));
        }
    }
    rp_db_close(db);
    return status;
}

static void reprocess_usage(FILE *fp)
{
    fprintf(fp, "usage: radprep reprocess SERIES_UID...\n"
                "Queue the processing of the current version of each series again (after a\n"
                "configuration change, or a dead job), with a fresh count of attempts.\n");
}

int rp_cli_reprocess(int argc, char **argv, const rp_conf *c)
{
    int rc = help_only(argc, argv, "reprocess", reprocess_usage);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (optind >= argc)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "reprocess", "needs at least one SERIES_UID");
    rp_db *db;
    if ((rc = rp_cli_open_db(c, "reprocess", 1, &db)))
        return rc;
    int status = 0;
    for (int i = optind; i < argc && !status; i++) {
        long long job = 0;
        rc = rp_db_series_reprocess(db, argv[i], c->job_max_attempts, &job);
        if (rc == 0)
            printf("%s job %lld queued\n", argv[i], job);
        else if (rc == RP_ENOENT)
            status =
                rp_cli_fail(RP_CLI_EXIT_FAIL, "reprocess", "no series %s in the index", argv[i]);
        else if (rc == RP_EBUSY)
            status =
                rp_cli_fail(RP_CLI_EXIT_FAIL, "reprocess",
                            "%s: its job is running now; try again when it has finished", argv[i]);
        else
            status =
                rp_cli_fail(RP_CLI_EXIT_FAIL, "reprocess", "%s: %s", argv[i], rp_cli_errstr(rc));
    }
    rp_db_close(db);
    return status;
}

static void send_usage(FILE *fp)
{
    fprintf(fp, "usage: radprep send [--destination PEER] [--id N] [--all]\n"
                "Re-queue outbox entries so the sender tries them now with a fresh count of\n"
                "attempts: dead entries by default, with --all also those waiting for a retry.\n");
}

int rp_cli_send(int argc, char **argv, const rp_conf *c)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                         {"destination", required_argument, NULL, 'd'},
                                         {"id", required_argument, NULL, 'i'},
                                         {"all", no_argument, NULL, 'a'},
                                         {NULL, 0, NULL, 0}};
    const char *dest = NULL;
    long long id = 0;
    int all = 0, o;
    while ((o = getopt_long(argc, argv, "hd:i:a", opts, NULL)) != -1) {
        switch (o) {
        case 'h':
            send_usage(stdout);
            return 0;
        case 'd':
            dest = optarg;
            break;
        case 'i':
            if ((id = rp_cli_parse_count(optarg)) < 0)
                return rp_cli_fail(RP_CLI_EXIT_USAGE, "send", "--id needs a positive number");
            break;
        case 'a':
            all = 1;
            break;
        default:
            return rp_cli_fail(RP_CLI_EXIT_USAGE, "send", "unknown option or missing value '%s'",
                               argv[optind - 1]);
        }
    }
    if (optind < argc)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "send", "unexpected argument '%s'", argv[optind]);
    if (dest) {
        const rp_conf_peer *p = rp_conf_peer_by_name(c, dest);
        if (p && !p->is_destination)
            return rp_cli_fail(RP_CLI_EXIT_USAGE, "send", "peer %s is not a destination in %s",
                               dest, c->source);
    }
    rp_db *db;
    int rc = rp_cli_open_db(c, "send", 1, &db);
    if (rc)
        return rc;
    long long n = 0;
    rc = rp_db_outbox_requeue(db, all ? -1 : RP_OUTBOX_DEAD, dest, id, &n);
    rp_db_close(db);
    if (rc)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "send", "cannot update the outbox: %s",
                           rp_cli_errstr(rc));
    if (id > 0 && n == 0)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "send", "outbox entry %lld is not %s", id,
                           all ? "dead or pending" : "dead");
    printf("%lld outbox entr%s re-queued\n", n, n == 1 ? "y" : "ies");
    return 0;
}

static void reindex_usage(FILE *fp)
{
    fprintf(fp, "usage: radprep reindex\n"
                "Rebuild the index from the files in <data_dir>/store (files are the truth).\n"
                "Series keep their completion state and version; jobs and outbox are kept.\n");
}

int rp_cli_reindex(int argc, char **argv, const rp_conf *c)
{
    int rc = help_only(argc, argv, "reindex", reindex_usage);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (optind < argc)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "reindex", "unexpected argument '%s'", argv[optind]);
    rp_store *s = NULL;
    if ((rc = rp_store_open(c, &s)) != 0)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "reindex", "cannot open the store in %s: %s",
                           c->data_dir, rp_cli_errstr(rc));
    rp_db *db;
    if ((rc = rp_cli_open_db(c, "reindex", 0, &db))) {
        rp_store_close(s);
        return rc;
    }
    double t0 = rp_mono_s();
    long n = rp_store_reindex(s, db);
    rp_db_close(db);
    rp_store_close(s);
    if (n < 0)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "reindex", "%s", rp_cli_errstr((int)n));
    printf("reindexed %ld instances in %.1f s\n", n, rp_mono_s() - t0);
    return 0;
}
