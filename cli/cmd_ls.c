/* cli/cmd_ls — `radprep ls LEVEL [filters]` and `radprep show SERIES_UID`. */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/common.h"

static void ls_usage(FILE *fp)
{
    fprintf(fp,
            "usage: radprep ls patients|studies|series|instances [--patient ID]\n"
            "                  [--study UID] [--series UID] [--modality M]\n"
            "                  [--state receiving|complete|processing|done|failed]\n"
            "                  [--limit N] [--json]\n"
            "List one level of the index as an aligned table (or a JSON array with --json).\n"
            "Filters combine: --modality on studies/patients keeps those with such a series.\n");
}

int rp_cli_ls(int argc, char **argv, const rp_conf *c)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"patient", required_argument, NULL, 'p'},
                                         {"study", required_argument, NULL, 's'},
                                         {"series", required_argument, NULL, 'S'},
                                         {"modality", required_argument, NULL, 'm'},
                                         {"limit", required_argument, NULL, 'n'},
                                         {"state", required_argument, NULL, 't'},
                                         {NULL, 0, NULL, 0}};
    rp_db_filter f = {NULL, NULL, NULL, NULL, 0, NULL};
    int json = 0, o;
    while ((o = getopt_long(argc, argv, "hjp:s:S:m:n:t:", opts, NULL)) != -1) {
        switch (o) {
        case 'h':
            ls_usage(stdout);
            return 0;
        case 'j':
            json = 1;
            break;
        case 'p':
            f.patient_id = optarg;
            break;
        case 's':
            f.study_uid = optarg;
            break;
        case 'S':
            f.series_uid = optarg;
            break;
        case 'm':
            f.modality = optarg;
            break;
        case 't': {
            rp_series_state st;
            if (rp_series_state_parse(optarg, &st) != 0)
                return rp_cli_fail(RP_CLI_EXIT_USAGE, "ls",
                                   "unknown state '%s' (receiving, complete, processing, done, "
                                   "failed)",
                                   optarg);
            f.state = rp_series_state_name(st);
            break;
        }
        case 'n': {
            long long v = rp_cli_parse_count(optarg);
            if (v < 0 || v > 1000000000)
                return rp_cli_fail(RP_CLI_EXIT_USAGE, "ls", "--limit needs a positive number");
            f.limit = (int)v;
            break;
        }
        default:
            return rp_cli_fail(RP_CLI_EXIT_USAGE, "ls", "unknown option or missing value '%s'",
                               argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "ls",
                           "which level? patients, studies, series or instances");
    const char *level = argv[optind++];
    static const char *const levels[] = {"patients", "studies", "series", "instances"};
    int known = 0;
    for (int i = 0; i < 4; i++)
        known |= strcmp(level, levels[i]) == 0;
    if (!known)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "ls",
                           "unknown level '%s' (patients, studies, series, instances)", level);
    if (optind < argc)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "ls", "unexpected argument '%s'", argv[optind]);
    rp_db *db;
    int rc = rp_cli_open_db(c, "ls", 1, &db);
    if (rc)
        return rc;
    rp_cli_table *t = NULL;
    rc = rp_db_ls(db, level, &f, rp_cli_table_row_fn, &t);
    rp_db_close(db);
    if (rc) {
        rp_cli_table_free(t);
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "ls", "cannot read the index: %s", rp_cli_errstr(rc));
    }
    if (json)
        rp_cli_json_print(rp_cli_table_json(t));
    else
        rp_cli_table_print(t, stdout);
    rp_cli_table_free(t);
    return 0;
}

/* ---- show ---------------------------------------------------------------------------- */

static void show_usage(FILE *fp)
{
    fprintf(fp, "usage: radprep show [--json] SERIES_UID\n"
                "One series: patient, study, completion state and version, expected and received\n"
                "instance counts, the instances in order, its jobs and their outputs.\n");
}

static rp_cli_table *instances_table(const rp_instance_meta *m, size_t n)
{
    static const char *const names[] = {"number",      "sop_uid",         "frames",
                                        "bytes",       "transfer_syntax", "calling_ae",
                                        "received_at", "file_path"};
    static const int kinds[] = {RP_DB_COL_INT,  RP_DB_COL_TEXT, RP_DB_COL_INT,  RP_DB_COL_INT,
                                RP_DB_COL_TEXT, RP_DB_COL_TEXT, RP_DB_COL_TEXT, RP_DB_COL_TEXT};
    rp_cli_table *t = rp_cli_table_new(8, names);
    for (size_t i = 0; t && i < n; i++) {
        char num[16], frames[16], bytes[24], at[40];
        snprintf(num, sizeof num, "%d", m[i].instance_number);
        snprintf(frames, sizeof frames, "%d", m[i].number_of_frames);
        snprintf(bytes, sizeof bytes, "%lld", m[i].file_size);
        rp_cli_time(m[i].received_at, at, sizeof at);
        const char *v[] = {m[i].instance_number >= 0 ? num : NULL,
                           m[i].sop_instance_uid,
                           frames,
                           bytes,
                           m[i].transfer_syntax_uid,
                           m[i].calling_ae[0] ? m[i].calling_ae : NULL,
                           at,
                           m[i].file_path};
        rp_cli_table_add(t, v, kinds);
    }
    return t;
}

int rp_cli_show(int argc, char **argv, const rp_conf *c)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'}, {"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
    int json = 0, o;
    while ((o = getopt_long(argc, argv, "hj", opts, NULL)) != -1) {
        if (o == 'h') {
            show_usage(stdout);
            return 0;
        }
        if (o == 'j') {
            json = 1;
            continue;
        }
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "show", "unknown option '%s'", argv[optind - 1]);
    }
    if (optind + 1 != argc)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "show", "needs exactly one SERIES_UID");
    const char *uid = argv[optind];
    rp_db *db;
    int rc = rp_cli_open_db(c, "show", 1, &db);
    if (rc)
        return rc;
    rp_db_series_info si;
    rp_instance_meta *inst = NULL;
    rp_db_job *jobs = NULL;
    size_t ni = 0, nj = 0;
    rc = rp_db_series_get(db, uid, &si);
    if (rc == RP_ENOENT) {
        rp_db_close(db);
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "show", "no series %s in the index", uid);
    }
    if (!rc)
        rc = rp_db_series_instances(db, uid, &inst, &ni);
    if (!rc)
        rc = rp_db_jobs_list(db, -1, uid, 0, &jobs, &nj);
    rp_db_output *outs = NULL;
    size_t no = 0;
    if (!rc && nj > 0)
        rc = rp_db_outputs_list(db, jobs[0].id, &outs, &no);
    rp_db_close(db);
    if (rc) {
        free(inst);
        free(jobs);
        free(outs);
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "show", "cannot read the index: %s",
                           rp_cli_errstr(rc));
    }
    rp_cli_table *ti = instances_table(inst, ni);
    rp_cli_table *tj = rp_cli_jobs_table(jobs, nj);
    char t1[40], t2[40], t3[40];
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "series_uid", si.series_uid);
        cJSON_AddStringToObject(j, "study_uid", si.study_uid);
        cJSON_AddStringToObject(j, "patient_id", si.patient_id);
        cJSON_AddStringToObject(j, "patient_name", si.patient_name);
        cJSON_AddStringToObject(j, "modality", si.modality);
        if (si.series_number >= 0)
            cJSON_AddNumberToObject(j, "series_number", si.series_number);
        else
            cJSON_AddNullToObject(j, "series_number");
        cJSON_AddStringToObject(j, "description", si.description);
        cJSON_AddStringToObject(j, "body_part", si.body_part);
        cJSON_AddStringToObject(j, "state", rp_series_state_name(si.state));
        cJSON_AddNumberToObject(j, "version", si.version);
        cJSON_AddNumberToObject(j, "processed_version", si.processed_version);
        cJSON_AddNumberToObject(j, "instance_count", (double)si.instance_count);
        cJSON_AddNumberToObject(j, "expected_count", si.expected_count);
        cJSON_AddStringToObject(j, "first_seen", rp_cli_time(si.first_seen, t1, sizeof t1));
        cJSON_AddStringToObject(j, "last_seen", rp_cli_time(si.last_seen, t2, sizeof t2));
        if (si.completed_at > 0)
            cJSON_AddStringToObject(j, "completed_at", rp_cli_time(si.completed_at, t3, sizeof t3));
        else
            cJSON_AddNullToObject(j, "completed_at");
        cJSON_AddStringToObject(j, "completed_reason", rp_completed_reason_name(si.completed_reason));
        cJSON_AddItemToObject(j, "instances", rp_cli_table_json(ti));
        cJSON_AddItemToObject(j, "jobs", rp_cli_table_json(tj));
        cJSON *ja = cJSON_AddArrayToObject(j, "outputs");
        for (size_t i = 0; i < no; i++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddNumberToObject(x, "job_id", (double)outs[i].job_id);
            cJSON_AddStringToObject(x, "kind", outs[i].kind);
            cJSON_AddStringToObject(x, "path", outs[i].path);
            cJSON_AddStringToObject(x, "sha256", outs[i].sha256);
            cJSON_AddItemToArray(ja, x);
        }
        rp_cli_json_print(j);
    } else {
        printf("series        %s\n", si.series_uid);
        printf("study         %s\n", si.study_uid);
        printf("patient       %s %s\n", si.patient_id[0] ? si.patient_id : "(no id)",
               si.patient_name);
        printf("modality      %s  number=%d  body_part=%s  description=%s\n",
               si.modality[0] ? si.modality : "-", si.series_number,
               si.body_part[0] ? si.body_part : "-", si.description[0] ? si.description : "-");
        printf("state         %s  version=%d  processed_version=%d", rp_series_state_name(si.state),
               si.version,
               si.processed_version);
        if (si.completed_at > 0)
            printf("  completed_at=%s (%s)", rp_cli_time(si.completed_at, t3, sizeof t3),
                   rp_completed_reason_name(si.completed_reason));
        printf("\ninstances     %lld received, expected %s%d\n", si.instance_count,
               si.expected_count < 0 ? "unknown " : "", si.expected_count);
        printf("seen          first=%s last=%s\n", rp_cli_time(si.first_seen, t1, sizeof t1),
               rp_cli_time(si.last_seen, t2, sizeof t2));
        printf("\n");
        rp_cli_table_print(ti, stdout);
        if (nj) {
            printf("\njobs\n");
            rp_cli_table_print(tj, stdout);
        }
        if (no) {
            printf("\noutputs of job %lld\n", jobs[0].id);
            for (size_t i = 0; i < no; i++)
                printf("  %-8s %s\n", outs[i].kind, outs[i].path);
        }
    }
    rp_cli_table_free(ti);
    rp_cli_table_free(tj);
    free(inst);
    free(jobs);
    free(outs);
    return 0;
}
