/* cli/cmd_queue — `radprep jobs`, `radprep outbox`, `radprep events`: the node's queues and
 * its audit trail as tables (or JSON). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/common.h"

/* Options shared by the three listings. */
typedef struct list_opts {
    int json;
    int limit;
    const char *state, *series, *destination, *kind;
    long long prune_days;
} list_opts;

static int parse_list_opts(int argc, char **argv, const char *cmd, const char *allowed,
                           void (*usage)(FILE *), list_opts *lo)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"limit", required_argument, NULL, 'n'},
                                         {"state", required_argument, NULL, 's'},
                                         {"series", required_argument, NULL, 'S'},
                                         {"destination", required_argument, NULL, 'd'},
                                         {"kind", required_argument, NULL, 'k'},
                                         {"prune-days", required_argument, NULL, 'P'},
                                         {NULL, 0, NULL, 0}};
    memset(lo, 0, sizeof *lo);
    lo->limit = 50;
    int o;
    while ((o = getopt_long(argc, argv, "hjn:s:S:d:k:P:", opts, NULL)) != -1) {
        if (o != 'h' && o != 'j' && o != 'n' && o != '?' && !strchr(allowed, o)) {
            const char *name = "?";
            for (const struct option *p = opts; p->name; p++)
                if (p->val == o)
                    name = p->name;
            return rp_cli_fail(RP_CLI_EXIT_USAGE, cmd, "option --%s does not apply to %s", name,
                               cmd);
        }
        switch (o) {
        case 'h':
            usage(stdout);
            return -1;
        case 'j':
            lo->json = 1;
            break;
        case 'n': {
            long long v = rp_cli_parse_count(optarg);
            if (v < 0 || v > 1000000000)
                return rp_cli_fail(RP_CLI_EXIT_USAGE, cmd, "--limit needs a positive number");
            lo->limit = (int)v;
            break;
        }
        case 's':
            lo->state = optarg;
            break;
        case 'S':
            lo->series = optarg;
            break;
        case 'd':
            lo->destination = optarg;
            break;
        case 'k':
            lo->kind = optarg;
            break;
        case 'P':
            if ((lo->prune_days = rp_cli_parse_count(optarg)) < 0)
                return rp_cli_fail(RP_CLI_EXIT_USAGE, cmd, "--prune-days needs a positive number");
            break;
        default:
            return rp_cli_fail(RP_CLI_EXIT_USAGE, cmd, "unknown option or missing value '%s'",
                               argv[optind - 1]);
        }
    }
    if (optind < argc)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, cmd, "unexpected argument '%s'", argv[optind]);
    return 0;
}


rp_cli_table *rp_cli_jobs_table(const rp_db_job *j, size_t n)
{
    static const char *const names[] = {"id",       "series_uid",   "version", "kind",
                                        "state",    "attempts",     "created", "started",
                                        "finished", "next_attempt", "exit",    "reason",
                                        "exec_id"};
    static const int kinds[] = {RP_DB_COL_INT,  RP_DB_COL_TEXT, RP_DB_COL_INT,  RP_DB_COL_TEXT,
                                RP_DB_COL_TEXT, RP_DB_COL_TEXT, RP_DB_COL_TEXT, RP_DB_COL_TEXT,
                                RP_DB_COL_TEXT, RP_DB_COL_TEXT, RP_DB_COL_INT,  RP_DB_COL_TEXT,
                                RP_DB_COL_TEXT};
    /* exec_id: the executor's id of the last attempt (a Slurm job id, a local pid) */
    rp_cli_table *t = rp_cli_table_new(13, names);
    for (size_t i = 0; t && i < n; i++) {
        char id[24], ver[16], att[24], cr[40], st[40], fi[40], nx[40], ex[16];
        char kind[8 + RP_DB_RULE_MAX];
        snprintf(id, sizeof id, "%lld", j[i].id);
        snprintf(ver, sizeof ver, "%d", j[i].version);
        /* a fusion job shows as the rule it runs, as it always has: "fuse:NAME" */
        if (j[i].kind == RP_JOB_KIND_FUSE)
            snprintf(kind, sizeof kind, "fuse:%s", j[i].rule);
        else
            snprintf(kind, sizeof kind, "%s", rp_job_kind_name(j[i].kind));
        snprintf(att, sizeof att, "%d/%d", j[i].attempts, j[i].max_attempts);
        snprintf(ex, sizeof ex, "%d", j[i].exit_status);
        int waiting = j[i].state == RP_JOB_QUEUED || j[i].state == RP_JOB_FAILED;
        const char *v[] = {id,
                           rp_db_job_subject(&j[i]),
                           ver,
                           kind,
                           rp_job_state_name(j[i].state),
                           att,
                           rp_cli_time(j[i].created_at, cr, sizeof cr),
                           j[i].started_at > 0 ? rp_cli_time(j[i].started_at, st, sizeof st) : NULL,
                           j[i].finished_at > 0 ? rp_cli_time(j[i].finished_at, fi, sizeof fi)
                                                : NULL,
                           waiting ? rp_cli_time(j[i].next_attempt_at, nx, sizeof nx) : NULL,
                           j[i].exit_status >= 0 ? ex : NULL,
                           j[i].reason[0] ? j[i].reason : NULL,
                           j[i].exec_id[0] ? j[i].exec_id : NULL};
        rp_cli_table_add(t, v, kinds);
    }
    return t;
}

static void jobs_usage(FILE *fp)
{
    fprintf(fp, "usage: radprep jobs [--state queued|running|done|failed|dead] [--series UID]\n"
                "                    [--limit N (50)] [--json]\n"
                "Processing jobs, newest first. 'failed' jobs wait for a retry at next_attempt;\n"
                "'dead' ones exhausted their attempts (radprep reprocess runs them again).\n");
}

int rp_cli_jobs(int argc, char **argv, const rp_conf *c)
{
    list_opts lo;
    int rc = parse_list_opts(argc, argv, "jobs", "sS", jobs_usage, &lo);
    if (rc)
        return rc < 0 ? 0 : rc;
    rp_job_state state = RP_JOB_QUEUED;
    if (lo.state && rp_job_state_parse(lo.state, &state) != 0)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "jobs",
                           "unknown state '%s' (queued, running, done, failed, dead)", lo.state);
    rp_db *db;
    if ((rc = rp_cli_open_db(c, "jobs", 1, &db)))
        return rc;
    rp_db_job *jobs;
    size_t n;
    rc = rp_db_jobs_list(db, lo.state ? (int)state : -1, lo.series, lo.limit, &jobs, &n);
    rp_db_close(db);
    if (rc)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "jobs", "cannot read the index: %s",
                           rp_cli_errstr(rc));
    rp_cli_table *t = rp_cli_jobs_table(jobs, n);
    if (lo.json)
        rp_cli_json_print(rp_cli_table_json(t));
    else if (n)
        rp_cli_table_print(t, stdout);
    rp_cli_table_free(t);
    free(jobs);
    return 0;
}

static void outbox_usage(FILE *fp)
{
    fprintf(fp, "usage: radprep outbox [--state pending|sending|done|dead] [--destination PEER]\n"
                "                      [--limit N (50)] [--json]\n"
                "Derived instances and where they go, newest first, with attempts, the next\n"
                "attempt time and the last DIMSE status or network error.\n");
}

int rp_cli_outbox(int argc, char **argv, const rp_conf *c)
{
    list_opts lo;
    int rc = parse_list_opts(argc, argv, "outbox", "sd", outbox_usage, &lo);
    if (rc)
        return rc < 0 ? 0 : rc;
    rp_outbox_state state = RP_OUTBOX_PENDING;
    if (lo.state && rp_outbox_state_parse(lo.state, &state) != 0)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "outbox",
                           "unknown state '%s' (pending, sending, done, dead)", lo.state);
    rp_db *db;
    if ((rc = rp_cli_open_db(c, "outbox", 1, &db)))
        return rc;
    rp_db_outbox_entry *e;
    size_t n;
    rc = rp_db_outbox_list(db, lo.state ? (int)state : -1, lo.destination, lo.limit, &e, &n);
    rp_db_close(db);
    if (rc)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "outbox", "cannot read the index: %s",
                           rp_cli_errstr(rc));
    static const char *const names[] = {"id",       "destination",  "state",
                                        "attempts", "next_attempt", "status",
                                        "reason",   "sop_uid",      "file_path"};
    static const int kinds[] = {RP_DB_COL_INT,  RP_DB_COL_TEXT, RP_DB_COL_TEXT,
                                RP_DB_COL_INT,  RP_DB_COL_TEXT, RP_DB_COL_TEXT,
                                RP_DB_COL_TEXT, RP_DB_COL_TEXT, RP_DB_COL_TEXT};
    rp_cli_table *t = rp_cli_table_new(9, names);
    for (size_t i = 0; t && i < n; i++) {
        char id[24], att[16], nx[40], st[16];
        snprintf(id, sizeof id, "%lld", e[i].id);
        snprintf(att, sizeof att, "%d", e[i].attempts);
        snprintf(st, sizeof st, "0x%04X", (unsigned)e[i].last_status & 0xffffu);
        const char *v[] = {id,
                           e[i].destination,
                           rp_outbox_state_name(e[i].state),
                           att,
                           e[i].state == RP_OUTBOX_PENDING
                               ? rp_cli_time(e[i].next_attempt_at, nx, sizeof nx)
                               : NULL,
                           e[i].last_status >= 0 ? st : NULL,
                           e[i].last_reason[0] ? e[i].last_reason : NULL,
                           e[i].sop_uid[0] ? e[i].sop_uid : NULL,
                           e[i].file_path};
        rp_cli_table_add(t, v, kinds);
    }
    if (lo.json)
        rp_cli_json_print(rp_cli_table_json(t));
    else if (n)
        rp_cli_table_print(t, stdout);
    rp_cli_table_free(t);
    free(e);
    return 0;
}

static void events_usage(FILE *fp)
{
    fprintf(fp, "usage: radprep events [--kind KIND] [--limit N (50)] [--json]\n"
                "       radprep events --prune-days N\n"
                "The audit trail, newest first: associations, series completed and reopened,\n"
                "jobs, dead outbox entries... --prune-days deletes events older than N days.\n");
}

int rp_cli_events(int argc, char **argv, const rp_conf *c)
{
    list_opts lo;
    int rc = parse_list_opts(argc, argv, "events", "kP", events_usage, &lo);
    if (rc)
        return rc < 0 ? 0 : rc;
    rp_db *db;
    if ((rc = rp_cli_open_db(c, "events", 1, &db)))
        return rc;
    if (lo.prune_days > 0) {
        long long n = 0;
        rc = rp_db_events_prune(db, rp_now_s() - (double)lo.prune_days * 86400.0, &n);
        rp_db_close(db);
        if (rc)
            return rp_cli_fail(RP_CLI_EXIT_FAIL, "events", "cannot prune: %s", rp_cli_errstr(rc));
        printf("%lld event%s older than %lld days deleted\n", n, n == 1 ? "" : "s", lo.prune_days);
        return 0;
    }
    rp_cli_table *t = NULL;
    rc = rp_db_events_list(db, lo.kind, lo.limit, rp_cli_table_row_fn, &t);
    rp_db_close(db);
    if (rc) {
        rp_cli_table_free(t);
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "events", "cannot read the index: %s",
                           rp_cli_errstr(rc));
    }
    if (lo.json)
        rp_cli_json_print(rp_cli_table_json(t));
    else
        rp_cli_table_print(t, stdout);
    rp_cli_table_free(t);
    return 0;
}
