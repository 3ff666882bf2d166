/* cli/cmd_pull — `radprep pull` (retrieve from a PACS into this node) and `radprep pulls`
 * (what was asked and what came of it). The work is qr/'s rp_qr_pull_run(); this file turns
 * options and [pull NAME] sections into a request, prints the outcome, and for a scheduled
 * pull with `dataset` waits for the pulled series to be processed and curates them.
 *
 * Exit status: 0 when every requested series was retrieved (or nothing was needed, or the run
 * stopped at the end of its window: the next run resumes), 1 with the PACS's status and words
 * when a query or a retrieve failed, 2 for usage and configuration errors. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli.h"
#include "common/common.h"
#include "qr/qr.h"

#define CMD "pull"
#define MAX_SEL 100000

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: radprep pull --peer NAME (--study UID | --series UID | --accession N)...\n"
            "                    [--file LIST] [--dry-run] [--rule NAME] [--get]\n"
            "                    [--concurrent N] [--max-series N] [--pause-ms N]\n"
            "       radprep pull NAME [--dry-run] [--now YYYY-MM-DD[THH:MM[:SS]]]\n"
            "                    [--ignore-window] [--no-curate] [--wait-s N]\n"
            "  NAME is a [pull NAME] section (what radprep-pull@NAME.timer runs).\n"
            "  LIST: one per line: an accession number, or study=UID, series=UID,\n"
            "        accession=N ('#' starts a comment).\n"
            "  --now: run as if it were that time (relative dates, the window).\n");
}

typedef struct sel_list {
    rp_qr_selector *v;
    size_t n, cap;
} sel_list;

static int sel_add(sel_list *l, rp_qr_sel_kind kind, const char *value)
{
    if (l->n >= MAX_SEL)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "more than %d selectors", MAX_SEL);
    size_t max = kind == RP_QR_SEL_ACCESSION ? 16 : RP_UID_MAX;
    if (!*value || strlen(value) > max || strchr(value, '\\') || strchr(value, '*') ||
        strchr(value, '?'))
        return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD,
                           "'%s' is not a %s (no wildcards; at most %zu characters)", value,
                           kind == RP_QR_SEL_ACCESSION ? "accession number" : "UID", max);
    if (kind != RP_QR_SEL_ACCESSION)
        for (const char *p = value; *p; p++)
            if (!isdigit((unsigned char)*p) && *p != '.')
                return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "'%s' is not a UID", value);
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 16;
        rp_qr_selector *p = realloc(l->v, nc * sizeof *p);
        if (!p)
            return rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "out of memory");
        l->v = p;
        l->cap = nc;
    }
    l->v[l->n].kind = kind;
    rp_strlcpy(l->v[l->n].value, value, sizeof l->v[l->n].value);
    l->n++;
    return 0;
}

static int read_list(sel_list *l, const char *path)
{
    FILE *fp = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (!fp)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "--file %s: %s", path, strerror(errno));
    char line[512];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, fp)) {
        lineno++;
        char *h = strchr(line, '#');
        if (h)
            *h = '\0';
        char *s = line;
        while (isspace((unsigned char)*s))
            s++;
        size_t n = strlen(s);
        while (n && isspace((unsigned char)s[n - 1]))
            s[--n] = '\0';
        if (!*s)
            continue;
        rp_qr_sel_kind kind = RP_QR_SEL_ACCESSION;
        const char *v = s;
        if (!strncasecmp(s, "study=", 6))
            kind = RP_QR_SEL_STUDY, v = s + 6;
        else if (!strncasecmp(s, "series=", 7))
            kind = RP_QR_SEL_SERIES, v = s + 7;
        else if (!strncasecmp(s, "accession=", 10))
            v = s + 10;
        if ((rc = sel_add(l, kind, v)) != 0)
            fprintf(stderr, "radprep: pull: (%s:%d)\n", path, lineno);
    }
    if (fp != stdin)
        fclose(fp);
    return rc;
}

/* "2023-01-14", "2023-01-14T03:00", "2023-01-14T03:00:00" (local time) -> wall seconds. */
static int parse_now(const char *s, double *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &n) != 3)
        return -1;
    tm.tm_hour = 12;
    if (s[n] == 'T' || s[n] == ' ') {
        int k = 0;
        tm.tm_sec = 0;
        if (sscanf(s + n + 1, "%2d:%2d%n", &tm.tm_hour, &tm.tm_min, &k) != 2)
            return -1;
        n += 1 + k;
        if (s[n] == ':') {
            if (sscanf(s + n + 1, "%2d%n", &tm.tm_sec, &k) != 1)
                return -1;
            n += 1 + k;
        }
    }
    if (s[n])
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    tm.tm_isdst = -1;
    time_t t = mktime(&tm);
    if (t == (time_t)-1)
        return -1;
    *out = (double)t;
    return 0;
}

static void print_report(const rp_qr_pull_report *rep, int dry_run)
{
    if (dry_run) {
        printf("dry run: %d series found, %d already here, %d to retrieve (%lld instances "
               "announced); nothing retrieved\n",
               rep->series_found, rep->series_present, rep->series_left,
               rep->instances_announced);
        return;
    }
    printf("pull %lld: %d series found, %d already here, %d retrieved, %d failed, %d left; "
           "%lld of %lld announced instances retrieved\n",
           rep->pull_id, rep->series_found, rep->series_present, rep->series_ok,
           rep->series_failed, rep->series_left, rep->instances_retrieved,
           rep->instances_announced);
    if (rep->window_closed)
        printf("window closed: %d series left for the next run\n", rep->series_left);
}

/* Exit status and the one stderr line for a run's result. */
static int finish(int rc, const rp_qr_pull_report *rep)
{
    if (rc == 0 || rc == RP_ETIMEOUT)
        return 0;
    if (rep->reason[0])
        return rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "%s", rep->reason);
    return rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "%s", rp_cli_errstr(rc));
}

/* Wait until every series the run retrieved has been processed (done or failed). */
static int wait_processed(const rp_conf *c, long long pull_id, double deadline)
{
    rp_db *db = NULL;
    if (rp_cli_open_db(c, CMD, 1, &db) != 0)
        return -1;
    int ready = 0;
    while (!ready && rp_now_s() < deadline) {
        rp_db_pull_item *it = NULL;
        size_t n = 0;
        if (rp_db_pull_items_list(db, pull_id, &it, &n) != 0)
            break;
        ready = 1;
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(it[i].state, "failed"))
                continue;
            if (strcmp(it[i].series_state, "done") && strcmp(it[i].series_state, "failed"))
                ready = 0;
        }
        free(it);
        if (!ready)
            sleep(1);
    }
    rp_db_close(db);
    return ready ? 0 : -1;
}

static int curate_after(const rp_conf *c, const rp_conf_pull *p, long long pull_id,
                        double wait_s)
{
    printf("waiting (at most %.0f s) for the pulled series to be processed...\n", wait_s);
    fflush(stdout);
    if (wait_processed(c, pull_id, rp_now_s() + wait_s) != 0)
        printf("not every pulled series is processed yet: curating what is\n");
    char out[RP_PATH_MAX + 128];
    snprintf(out, sizeof out, "%s/datasets/%s", c->data_dir, p->dataset);
    char *argv[] = {"curate", "--out", out, p->rule[0] ? "--rule" : NULL,
                    p->rule[0] ? (char *)p->rule : NULL, NULL};
    int argc = p->rule[0] ? 5 : 3;
    optind = 0;
    printf("curating dataset %s into %s\n", p->dataset, out);
    fflush(stdout);
    return rp_cli_curate(argc, argv, c);
}

static int pull_named(const rp_conf *c, const char *name, int dry_run, double now, int fake_now,
                      int ignore_window, int no_curate, double wait_s)
{
    const rp_conf_pull *p = rp_conf_pull_by_name(c, name);
    if (!p)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "no [pull %s] in %s", name, c->source);
    const rp_conf_peer *peer = rp_conf_peer_by_name(c, p->peer);
    if (!peer) /* conf checked it; a --config of another file could not */
        return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "pull %s: unknown peer %s", name, p->peer);
    double end = 0;
    if (!ignore_window && !rp_conf_pull_in_window(p, now, &end)) {
        printf("pull %s: outside its window (%02d:%02d-%02d:%02d): nothing done\n", name,
               p->window_start_s / 3600, p->window_start_s / 60 % 60, p->window_end_s / 3600,
               p->window_end_s / 60 % 60);
        return 0;
    }
    rp_qr_pull_request r;
    if (rp_qr_pull_from_conf(p, peer, now, &r) != 0)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "pull %s: bad study_date '%s'", name,
                           p->study_date);
    if (ignore_window)
        r.deadline = 0;
    else if (fake_now && r.deadline > 0) /* the window's end, on the real clock */
        r.deadline = rp_now_s() + (r.deadline - now);
    r.dry_run = dry_run;
    r.out = stdout;
    char text[512];
    rp_qr_request_text(&r, text, sizeof text);
    printf("pull %s from %s: %s%s\n", name, peer->name, text,
           r.deadline > 0 ? " (until the window closes)" : "");
    fflush(stdout);
    rp_qr_pull_report rep;
    int rc = rp_qr_pull_run(c, &r, &rep);
    print_report(&rep, dry_run);
    if (rc == 0 && !dry_run && p->dataset[0] && !no_curate) {
        int crc = curate_after(c, p, rep.pull_id, wait_s);
        if (crc != 0)
            return crc;
    }
    return finish(rc, &rep);
}

int rp_cli_pull(int argc, char **argv, const rp_conf *c)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"peer", required_argument, NULL, 'p'},
        {"study", required_argument, NULL, 's'},
        {"series", required_argument, NULL, 'e'},
        {"accession", required_argument, NULL, 'a'},
        {"file", required_argument, NULL, 'f'},
        {"dry-run", no_argument, NULL, 'n'},
        {"rule", required_argument, NULL, 'r'},
        {"get", no_argument, NULL, 'g'},
        {"concurrent", required_argument, NULL, 'C'},
        {"max-series", required_argument, NULL, 'M'},
        {"pause-ms", required_argument, NULL, 'P'},
        {"now", required_argument, NULL, 'N'},
        {"ignore-window", no_argument, NULL, 'I'},
        {"no-curate", no_argument, NULL, 'X'},
        {"wait-s", required_argument, NULL, 'W'},
        {NULL, 0, NULL, 0}};
    sel_list sel = {0};
    const char *peer_name = NULL, *rule = NULL;
    int dry_run = 0, get = 0, ignore_window = 0, no_curate = 0, fake_now = 0, rc = 0, o;
    long long conc = 1, max_series = 100000, pause_ms = 0, wait_s = 3600;
    double now = rp_now_s();
    while (rc == 0 && (o = getopt_long(argc, argv, "hn", opts, NULL)) != -1) {
        switch (o) {
        case 'h':
            usage(stdout);
            free(sel.v);
            return 0;
        case 'p':
            peer_name = optarg;
            break;
        case 's':
            rc = sel_add(&sel, RP_QR_SEL_STUDY, optarg);
            break;
        case 'e':
            rc = sel_add(&sel, RP_QR_SEL_SERIES, optarg);
            break;
        case 'a':
            rc = sel_add(&sel, RP_QR_SEL_ACCESSION, optarg);
            break;
        case 'f':
            rc = read_list(&sel, optarg);
            break;
        case 'n':
            dry_run = 1;
            break;
        case 'r':
            rule = optarg;
            break;
        case 'g':
            get = 1;
            break;
        case 'C':
        case 'M':
        case 'P':
        case 'W': {
            long long v = rp_cli_parse_count(optarg);
            long long max = o == 'C' ? 16 : 100000000;
            if (v < (o == 'P' ? 0 : 1) || v > max) {
                rc = rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "%s needs a number in %d..%lld",
                                 argv[optind - 1], o == 'P' ? 0 : 1, max);
                break;
            }
            *(o == 'C' ? &conc : o == 'M' ? &max_series : o == 'P' ? &pause_ms : &wait_s) = v;
            break;
        }
        case 'N':
            if (parse_now(optarg, &now) != 0)
                rc = rp_cli_fail(RP_CLI_EXIT_USAGE, CMD,
                                 "--now: '%s' is not YYYY-MM-DD[THH:MM[:SS]]", optarg);
            fake_now = 1;
            break;
        case 'I':
            ignore_window = 1;
            break;
        case 'X':
            no_curate = 1;
            break;
        default:
            rc = rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "unknown option or missing value '%s'",
                             argv[optind - 1]);
        }
    }
    if (rc) {
        free(sel.v);
        return rc;
    }
    /* Make sure the index can be opened (and exists) before talking to the PACS. */
    rp_db *db = NULL;
    if ((rc = rp_cli_open_db(c, CMD, 0, &db)) != 0) {
        free(sel.v);
        return rc;
    }
    rp_db_close(db);

    if (optind < argc) { /* radprep pull NAME */
        if (optind + 1 < argc || peer_name || sel.n) {
            free(sel.v);
            return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD,
                               "a [pull NAME] run takes no --peer or selectors (see --help)");
        }
        free(sel.v);
        return pull_named(c, argv[optind], dry_run, now, fake_now, ignore_window, no_curate,
                          (double)wait_s);
    }
    if (!peer_name || sel.n == 0) {
        free(sel.v);
        return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD,
                           "give a [pull NAME], or --peer NAME and what to retrieve (--study, "
                           "--series, --accession, --file); see --help");
    }
    const rp_conf_peer *peer = rp_conf_peer_by_name(c, peer_name);
    const char *why = NULL;
    if (!peer)
        why = "no such [peer] section";
    else if (!peer->host[0] || !peer->port)
        why = "it needs host and port";
    else if (!peer->may_find)
        why = "it does not allow find (find = yes)";
    else if (!get && !peer->may_move)
        why = "it does not allow move (move = yes)";
    else if (get && !peer->may_get)
        why = "it does not allow get (get = yes)";
    if (why) {
        free(sel.v);
        return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "peer %s: %s", peer_name, why);
    }
    if (rule) {
        size_t i = 0;
        while (i < c->n_rules && strcmp(c->rules[i].name, rule) != 0)
            i++;
        if (i == c->n_rules) {
            free(sel.v);
            return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "--rule: no [rule %s]", rule);
        }
    }
    rp_qr_pull_request r;
    rp_qr_pull_defaults(&r, peer);
    r.sel = sel.v;
    r.n_sel = sel.n;
    r.rule = rule;
    r.method = get ? RP_PULL_GET : RP_PULL_MOVE;
    r.max_concurrent = (int)conc;
    r.max_series = (int)max_series;
    r.pause_ms = (int)pause_ms;
    r.dry_run = dry_run;
    r.out = stdout;
    rp_qr_pull_report rep;
    rc = rp_qr_pull_run(c, &r, &rep);
    free(sel.v);
    print_report(&rep, dry_run);
    return finish(rc, &rep);
}

/* ---- radprep pulls ---- */

static void pulls_usage(FILE *fp)
{
    fprintf(fp, "usage: radprep pulls [NAME] [--items ID | --last] [--limit N] [--json]\n"
                "  runs of `radprep pull` newest first; --items: the series of run ID\n"
                "  (--last: of the newest run)\n");
}

static int print_items(rp_db *db, long long id, int json)
{
    rp_db_pull_item *it = NULL;
    size_t n = 0;
    if (rp_db_pull_items_list(db, id, &it, &n) != 0)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "pulls", "%s", rp_db_errmsg());
    static const char *const names[] = {"series_uid", "modality",  "announced", "had",
                                        "retrieved",  "failed",    "received",  "state",
                                        "completed",  "status",    "attempts",  "reason"};
    static const int kinds[] = {RP_DB_COL_TEXT, RP_DB_COL_TEXT, RP_DB_COL_INT, RP_DB_COL_INT,
                                RP_DB_COL_INT,  RP_DB_COL_INT,  RP_DB_COL_INT, RP_DB_COL_TEXT,
                                RP_DB_COL_TEXT, RP_DB_COL_TEXT, RP_DB_COL_INT, RP_DB_COL_TEXT};
    rp_cli_table *t = rp_cli_table_new(12, names);
    for (size_t i = 0; t && i < n; i++) {
        char an[24], had[24], ret[24], fa[24], rec[24], st[16], att[16];
        snprintf(an, sizeof an, "%lld", it[i].announced);
        snprintf(had, sizeof had, "%lld", it[i].had);
        snprintf(ret, sizeof ret, "%d", it[i].completed + (it[i].warning > 0 ? it[i].warning : 0));
        snprintf(fa, sizeof fa, "%d", it[i].failed);
        snprintf(rec, sizeof rec, "%lld", it[i].received);
        snprintf(st, sizeof st, "0x%04X", it[i].status);
        snprintf(att, sizeof att, "%d", it[i].attempts);
        const char *v[] = {it[i].series_uid,
                           it[i].modality[0] ? it[i].modality : NULL,
                           it[i].announced >= 0 ? an : NULL,
                           had,
                           it[i].completed >= 0 ? ret : NULL,
                           it[i].failed >= 0 ? fa : NULL,
                           rec,
                           it[i].state,
                           it[i].completed_reason[0] ? it[i].completed_reason : NULL,
                           it[i].status >= 0 ? st : NULL,
                           att,
                           it[i].reason[0] ? it[i].reason : NULL};
        rp_cli_table_add(t, v, kinds);
    }
    free(it);
    if (!t)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "pulls", "out of memory");
    if (json)
        rp_cli_json_print(rp_cli_table_json(t));
    else
        rp_cli_table_print(t, stdout);
    rp_cli_table_free(t);
    return 0;
}

int rp_cli_pulls(int argc, char **argv, const rp_conf *c)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"items", required_argument, NULL, 'i'},
                                         {"last", no_argument, NULL, 'L'},
                                         {"limit", required_argument, NULL, 'n'},
                                         {NULL, 0, NULL, 0}};
    int json = 0, last = 0, o;
    long long items = 0, limit = 50;
    while ((o = getopt_long(argc, argv, "hj", opts, NULL)) != -1) {
        switch (o) {
        case 'h':
            pulls_usage(stdout);
            return 0;
        case 'j':
            json = 1;
            break;
        case 'L':
            last = 1;
            break;
        case 'i':
        case 'n': {
            long long v = rp_cli_parse_count(optarg);
            if (v < 1)
                return rp_cli_fail(RP_CLI_EXIT_USAGE, "pulls", "%s needs a positive number",
                                   argv[optind - 1]);
            *(o == 'i' ? &items : &limit) = v;
            break;
        }
        default:
            return rp_cli_fail(RP_CLI_EXIT_USAGE, "pulls", "unknown option or missing value '%s'",
                               argv[optind - 1]);
        }
    }
    const char *name = optind < argc ? argv[optind] : NULL;
    if (optind + 1 < argc)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "pulls", "unexpected argument '%s'",
                           argv[optind + 1]);
    rp_db *db = NULL;
    int rc = rp_cli_open_db(c, "pulls", 1, &db);
    if (rc)
        return rc;
    rp_db_pull *p = NULL;
    size_t n = 0;
    if (rp_db_pulls_list(db, name, last ? 1 : (int)limit, &p, &n) != 0) {
        rp_db_close(db);
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "pulls", "%s", rp_db_errmsg());
    }
    if (last || items) {
        if (last && n == 0) {
            free(p);
            rp_db_close(db);
            return rp_cli_fail(RP_CLI_EXIT_FAIL, "pulls", "no pull recorded yet");
        }
        rc = print_items(db, last ? p[0].id : items, json);
        free(p);
        rp_db_close(db);
        return rc;
    }
    static const char *const names[] = {"id",      "name",    "peer",      "state",  "started",
                                        "found",   "present", "retrieved", "failed", "left",
                                        "announced", "instances", "status", "reason", "request"};
    static const int kinds[] = {RP_DB_COL_INT,  RP_DB_COL_TEXT, RP_DB_COL_TEXT, RP_DB_COL_TEXT,
                                RP_DB_COL_TEXT, RP_DB_COL_INT,  RP_DB_COL_INT,  RP_DB_COL_INT,
                                RP_DB_COL_INT,  RP_DB_COL_INT,  RP_DB_COL_INT,  RP_DB_COL_INT,
                                RP_DB_COL_TEXT, RP_DB_COL_TEXT, RP_DB_COL_TEXT};
    rp_cli_table *t = rp_cli_table_new(15, names);
    for (size_t i = 0; t && i < n; i++) {
        char id[24], sa[40], f[16], pr[16], ok[16], fa[16], le[16], an[24], ins[24], st[16];
        snprintf(id, sizeof id, "%lld", p[i].id);
        snprintf(f, sizeof f, "%d", p[i].series_found);
        snprintf(pr, sizeof pr, "%d", p[i].series_present);
        snprintf(ok, sizeof ok, "%d", p[i].series_ok);
        snprintf(fa, sizeof fa, "%d", p[i].series_failed);
        snprintf(le, sizeof le, "%d", p[i].series_left);
        snprintf(an, sizeof an, "%lld", p[i].instances_announced);
        snprintf(ins, sizeof ins, "%lld", p[i].instances_retrieved);
        snprintf(st, sizeof st, "0x%04X", p[i].last_status);
        const char *v[] = {id,
                           p[i].name[0] ? p[i].name : NULL,
                           p[i].peer,
                           p[i].state,
                           rp_cli_time(p[i].started_at, sa, sizeof sa),
                           f,
                           pr,
                           ok,
                           fa,
                           le,
                           an,
                           ins,
                           p[i].last_status >= 0 ? st : NULL,
                           p[i].reason[0] ? p[i].reason : NULL,
                           p[i].request[0] ? p[i].request : NULL};
        rp_cli_table_add(t, v, kinds);
    }
    free(p);
    rp_db_close(db);
    if (!t)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "pulls", "out of memory");
    if (json)
        rp_cli_json_print(rp_cli_table_json(t));
    else
        rp_cli_table_print(t, stdout);
    rp_cli_table_free(t);
    return 0;
}
