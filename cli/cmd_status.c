/* cli/cmd_status — `radprep status [--json]`: what the node holds and how it is doing. */
#include <cjson/cJSON.h>
#include <ftw.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "cli/cli.h"
#include "common/common.h"

static long long walk_bytes, walk_files;

static int walk_cb(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)path;
    (void)f;
    if (flag == FTW_F) {
        walk_bytes += (long long)st->st_blocks * 512;
        walk_files++;
    }
    return 0;
}

/* The last 'node' event: "result=started ..." or "result=stopped ...", and when. */
typedef struct last_node {
    char at[40];
    char detail[256];
} last_node;

static int node_row(void *user, int ncol, const char *const *names, const char *const *values,
                    const int *kinds)
{
    (void)names;
    (void)kinds;
    last_node *ln = user;
    if (ncol >= 4) {
        snprintf(ln->at, sizeof ln->at, "%s", values[1] ? values[1] : "");
        snprintf(ln->detail, sizeof ln->detail, "%s", values[3] ? values[3] : "");
    }
    return 1;
}

static void usage(FILE *fp)
{
    fprintf(fp, "usage: radprep status [--json]\n"
                "Index counts (patients, studies, series by state, instances), jobs and outbox\n"
                "by state, disk use of the store, free space against the watermark, and the\n"
                "number of associations served.\n");
}

int rp_cli_status(int argc, char **argv, const rp_conf *c)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'}, {"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    int json = 0, o;
    while ((o = getopt_long(argc, argv, "hj", opts, NULL)) != -1) {
        if (o == 'h') {
            usage(stdout);
            return 0;
        }
        if (o == 'j') {
            json = 1;
            continue;
        }
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "status", "unknown option '%s'", argv[optind - 1]);
    }
    if (optind < argc)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "status", "unexpected argument '%s'", argv[optind]);
    rp_db *db;
    int rc = rp_cli_open_db(c, "status", 1, &db);
    if (rc)
        return rc;
    rp_db_counts n;
    rc = rp_db_counts_get(db, &n);
    last_node ln = {"", ""};
    if (!rc)
        rc = rp_db_events_list(db, "node", 1, node_row, &ln);
    rp_db_close(db);
    if (rc)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "status", "cannot read the index: %s",
                           rp_cli_errstr(rc));

    char store[RP_PATH_MAX + 16], dbp[RP_PATH_MAX + 32];
    snprintf(store, sizeof store, "%s/store", c->data_dir);
    walk_bytes = walk_files = 0;
    nftw(store, walk_cb, 32, FTW_PHYS);
    struct statvfs vfs;
    long long free_b = -1, total_b = -1;
    if (statvfs(c->data_dir, &vfs) == 0) {
        free_b = (long long)vfs.f_bavail * (long long)vfs.f_frsize;
        total_b = (long long)vfs.f_blocks * (long long)vfs.f_frsize;
    }
    int low = free_b >= 0 && free_b < c->min_free_mb * 1024LL * 1024LL;

    if (json) {
        cJSON *j = cJSON_CreateObject();
        rp_db_status_json(&n, c->data_dir, c->min_free_mb, j);
        if (ln.at[0]) {
            cJSON *nd = cJSON_AddObjectToObject(j, "node");
            cJSON_AddStringToObject(nd, "last_event_at", ln.at);
            cJSON_AddStringToObject(nd, "last_event", ln.detail);
        }
        cJSON_AddStringToObject(j, "index", rp_cli_db_path(c, dbp, sizeof dbp));
        cJSON_AddNumberToObject(j, "store_files", (double)walk_files);
        cJSON_AddNumberToObject(j, "store_bytes_on_disk", (double)walk_bytes);
        rp_cli_json_print(j);
        return 0;
    }
    char b1[32], b2[32], b3[32];
    printf("data_dir      %s\n", c->data_dir);
    if (ln.at[0])
        printf("node          %s at %s\n",
               !strncmp(ln.detail, "result=started", 14)   ? "started"
               : !strncmp(ln.detail, "result=stopped", 14) ? "stopped"
                                                           : ln.detail,
               ln.at);
    printf("index         patients=%lld studies=%lld series=%lld instances=%lld (%s)\n", n.patients,
           n.studies, n.series, n.instances, rp_cli_bytes(n.bytes, b1, sizeof b1));
    printf("series        receiving=%lld complete=%lld processing=%lld done=%lld failed=%lld\n",
           n.series_receiving, n.series_complete, n.series_processing, n.series_done,
           n.series_failed);
    printf("jobs          queued=%lld running=%lld done=%lld failed=%lld dead=%lld\n",
           n.jobs_queued, n.jobs_running, n.jobs_done, n.jobs_failed, n.jobs_dead);
    printf("outbox        pending=%lld sending=%lld done=%lld dead=%lld\n", n.outbox_pending,
           n.outbox_sending, n.outbox_done, n.outbox_dead);
    printf("store         %s files=%lld on_disk=%s\n", store, walk_files,
           rp_cli_bytes(walk_bytes, b1, sizeof b1));
    if (free_b >= 0)
        printf("free          %s of %s (watermark %lld MiB)%s\n",
               rp_cli_bytes(free_b, b2, sizeof b2), rp_cli_bytes(total_b, b3, sizeof b3),
               c->min_free_mb, low ? " BELOW WATERMARK: stores are refused" : "");
    printf("associations  %lld served, %lld refused or dropped\n", n.associations,
           n.associations_refused);
    return 0;
}
