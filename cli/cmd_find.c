/* cli/cmd_find — `radprep find --peer NAME [keys...]`: ask a PACS (C-FIND, Study Root) what it
 * has, and print the matching studies, series or instances as a table or JSON. At series
 * level a column says how many instances of each series this node already holds, which is
 * what `radprep pull` would compare. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli.h"
#include "common/common.h"
#include "qr/qr.h"

#define CMD "find"

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: radprep find --peer NAME [--level study|series|image] [--json]\n"
            "                    [--patient-id ID] [--accession N] [--date SPEC]\n"
            "                    [--modality M] [--body-part B] [--study-desc TEXT]\n"
            "                    [--series-desc TEXT] [--study UID] [--series UID]\n"
            "  SPEC: today | yesterday | 'last N days' | YYYYMMDD | YYYYMMDD-YYYYMMDD\n"
            "  TEXT may hold the DICOM wildcards * and ?. The peer needs find = yes.\n");
}

static int set_key(char *dst, size_t dstsz, const char *v, const char *opt)
{
    if (strlen(v) >= dstsz || strchr(v, '\\'))
        return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "%s: '%s' is too long or has a backslash",
                           opt, v);
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

static rp_cli_table *study_table(const rp_qr_match *m, size_t n)
{
    static const char *const names[] = {"study_uid", "date",        "patient_id", "accession",
                                        "modalities", "description", "series",    "instances"};
    static const int kinds[] = {RP_DB_COL_TEXT, RP_DB_COL_TEXT, RP_DB_COL_TEXT, RP_DB_COL_TEXT,
                                RP_DB_COL_TEXT, RP_DB_COL_TEXT, RP_DB_COL_INT,  RP_DB_COL_INT};
    rp_cli_table *t = rp_cli_table_new(8, names);
    for (size_t i = 0; t && i < n; i++) {
        char se[24], in[24];
        snprintf(se, sizeof se, "%lld", m[i].study_series);
        snprintf(in, sizeof in, "%lld", m[i].study_instances);
        const char *v[] = {m[i].study_uid,
                           m[i].study_date[0] ? m[i].study_date : NULL,
                           m[i].patient_id[0] ? m[i].patient_id : NULL,
                           m[i].accession[0] ? m[i].accession : NULL,
                           m[i].modalities[0] ? m[i].modalities : NULL,
                           m[i].study_description[0] ? m[i].study_description : NULL,
                           m[i].study_series >= 0 ? se : NULL,
                           m[i].study_instances >= 0 ? in : NULL};
        rp_cli_table_add(t, v, kinds);
    }
    return t;
}

static rp_cli_table *series_table(const rp_qr_match *m, size_t n, rp_db *db)
{
    static const char *const names[] = {"study_uid",   "series_uid", "number",    "modality",
                                        "body_part",   "description", "instances", "here"};
    static const int kinds[] = {RP_DB_COL_TEXT, RP_DB_COL_TEXT, RP_DB_COL_INT, RP_DB_COL_TEXT,
                                RP_DB_COL_TEXT, RP_DB_COL_TEXT, RP_DB_COL_INT, RP_DB_COL_INT};
    rp_cli_table *t = rp_cli_table_new(8, names);
    for (size_t i = 0; t && i < n; i++) {
        char num[16], in[24], here[24];
        snprintf(num, sizeof num, "%d", m[i].series_number);
        snprintf(in, sizeof in, "%lld", m[i].series_instances);
        rp_db_series_info si;
        long long have = db && rp_db_series_get(db, m[i].series_uid, &si) == 0 ? si.instance_count : 0;
        snprintf(here, sizeof here, "%lld", have);
        const char *v[] = {m[i].study_uid,
                           m[i].series_uid,
                           m[i].series_number >= 0 ? num : NULL,
                           m[i].modality[0] ? m[i].modality : NULL,
                           m[i].body_part[0] ? m[i].body_part : NULL,
                           m[i].series_description[0] ? m[i].series_description : NULL,
                           m[i].series_instances >= 0 ? in : NULL,
                           here};
        rp_cli_table_add(t, v, kinds);
    }
    return t;
}

static rp_cli_table *image_table(const rp_qr_match *m, size_t n)
{
    static const char *const names[] = {"study_uid", "series_uid", "sop_uid"};
    rp_cli_table *t = rp_cli_table_new(3, names);
    for (size_t i = 0; t && i < n; i++) {
        const char *v[] = {m[i].study_uid, m[i].series_uid, m[i].sop_uid};
        rp_cli_table_add(t, v, NULL);
    }
    return t;
}

int rp_cli_find(int argc, char **argv, const rp_conf *c)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},           {"json", no_argument, NULL, 'j'},
        {"peer", required_argument, NULL, 'p'},     {"level", required_argument, NULL, 'l'},
        {"patient-id", required_argument, NULL, 'P'}, {"accession", required_argument, NULL, 'a'},
        {"date", required_argument, NULL, 'd'},     {"modality", required_argument, NULL, 'm'},
        {"body-part", required_argument, NULL, 'b'}, {"study-desc", required_argument, NULL, 'D'},
        {"series-desc", required_argument, NULL, 'S'}, {"study", required_argument, NULL, 's'},
        {"series", required_argument, NULL, 'e'},   {NULL, 0, NULL, 0}};
    rp_qr_keys k;
    memset(&k, 0, sizeof k);
    const char *peer_name = NULL;
    int json = 0, o, bad = 0;
    while ((o = getopt_long(argc, argv, "hj", opts, NULL)) != -1 && !bad) {
        switch (o) {
        case 'h':
            usage(stdout);
            return 0;
        case 'j':
            json = 1;
            break;
        case 'p':
            peer_name = optarg;
            break;
        case 'l':
            if (!strcasecmp(optarg, "study"))
                k.level = RP_QR_STUDY;
            else if (!strcasecmp(optarg, "series"))
                k.level = RP_QR_SERIES;
            else if (!strcasecmp(optarg, "image") || !strcasecmp(optarg, "instance"))
                k.level = RP_QR_IMAGE;
            else
                return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "--level: '%s' is not study|series|image",
                                   optarg);
            break;
        case 'P':
            bad = set_key(k.patient_id, sizeof k.patient_id, optarg, "--patient-id");
            break;
        case 'a':
            bad = set_key(k.accession, sizeof k.accession, optarg, "--accession");
            break;
        case 'd':
            if (rp_conf_pull_date_range(optarg, rp_now_s(), k.study_date, sizeof k.study_date))
                return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD,
                                   "--date: '%s' is not today, yesterday, 'last N days', "
                                   "YYYYMMDD or YYYYMMDD-YYYYMMDD",
                                   optarg);
            break;
        case 'm':
            bad = set_key(k.modality, sizeof k.modality, optarg, "--modality");
            break;
        case 'b':
            bad = set_key(k.body_part, sizeof k.body_part, optarg, "--body-part");
            break;
        case 'D':
            bad = set_key(k.study_description, sizeof k.study_description, optarg, "--study-desc");
            break;
        case 'S':
            bad = set_key(k.series_description, sizeof k.series_description, optarg,
                          "--series-desc");
            break;
        case 's':
            bad = set_key(k.study_uid, sizeof k.study_uid, optarg, "--study");
            break;
        case 'e':
            bad = set_key(k.series_uid, sizeof k.series_uid, optarg, "--series");
            break;
        default:
            return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "unknown option or missing value '%s'",
                               argv[optind - 1]);
        }
    }
    if (bad)
        return bad;
    if (optind < argc)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "unexpected argument '%s'", argv[optind]);
    if (!peer_name)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "--peer NAME is required (see --help)");
    const rp_conf_peer *peer = rp_conf_peer_by_name(c, peer_name);
    if (!peer)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "no [peer %s] in %s", peer_name, c->source);
    if (!peer->may_find)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "peer %s does not allow find (find = yes)",
                           peer_name);
    if (!peer->host[0] || !peer->port)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "peer %s needs host and port", peer_name);
    if (k.level == RP_QR_STUDY && (k.body_part[0] || k.series_description[0] || k.series_uid[0]))
        return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD,
                           "--body-part, --series-desc and --series are series keys: add "
                           "--level series");

    rp_qr_peer p;
    rp_qr_peer_from_conf(c, peer, &p);
    rp_qr *q = NULL;
    rp_qr_result res;
    int rc = rp_qr_open(&p, RP_QR_FIND, &q, &res);
    rp_qr_match *m = NULL;
    size_t n = 0;
    if (rc == 0) {
        rc = rp_qr_find(q, &k, &m, &n, &res);
        rp_qr_close(q);
    }
    if (rc != 0) {
        free(m);
        return rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "%s (%s)", res.reason,
                           rp_qr_outcome_name(res.outcome));
    }
    rp_db *db = NULL;
    char path[RP_PATH_MAX + 32];
    if (k.level == RP_QR_SERIES && access(rp_cli_db_path(c, path, sizeof path), F_OK) == 0)
        rp_db_open(path, &db);
    rp_cli_table *t = k.level == RP_QR_STUDY    ? study_table(m, n)
                      : k.level == RP_QR_SERIES ? series_table(m, n, db)
                                                : image_table(m, n);
    rp_db_close(db);
    free(m);
    if (!t)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "out of memory");
    if (json)
        rp_cli_json_print(rp_cli_table_json(t));
    else
        rp_cli_table_print(t, stdout);
    rp_cli_table_free(t);
    return 0;
}
