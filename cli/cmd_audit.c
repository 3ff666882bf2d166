/*
 * cli/cmd_audit — `radprep audit --study UID`: who sent this study, from where, over what,
 * and when. The index keeps per instance the calling AE title, the peer host and the received
 * time; the transport (plain / TLS version, cipher, certificate subject) is a property of the
 * association, recorded in its end event (scp/scp.c). An instance is matched to the
 * association of the same calling AE and host whose time span contains its received time.
 * When none matches (the event was pruned) or two with different transports do (two
 * simultaneous associations from the same AE and host), the transport says "unknown" or
 * "ambiguous" rather than guess.
 */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "common/common.h"

typedef struct {
    double start, end;
    char calling_ae[17];
    char host[64];
    char transport[320]; /* "tls TLSv1.3 TLS_AES_256_GCM_SHA384 CN=x,O=y" or "plain" */
} assoc_span;

typedef struct {
    assoc_span *v;
    size_t n, cap;
} span_list;

/* Value of key in a key=value detail text (values may be "quoted"); "" if absent. */
static void kv_get(const char *detail, const char *key, char *out, size_t outsz)
{
    out[0] = '\0';
    size_t kl = strlen(key);
    for (const char *p = detail; (p = strstr(p, key)) != NULL; p += kl) {
        if ((p != detail && p[-1] != ' ') || p[kl] != '=')
            continue;
        const char *v = p + kl + 1;
        size_t j = 0;
        if (*v == '"') {
            for (v++; *v && *v != '"' && j + 1 < outsz; v++) {
                if (*v == '\\' && v[1])
                    v++;
                out[j++] = *v;
            }
        } else {
            for (; *v && *v != ' ' && j + 1 < outsz; v++)
                out[j++] = *v;
        }
        out[j] = '\0';
        return;
    }
}

static double iso_to_epoch(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
        return 0;
    return (double)timegm(&tm);
}

/* rp_db_row_fn over association events: keep the end events (they carry the span). */
static int span_row(void *user, int ncol, const char *const *names, const char *const *values,
                    const int *kinds)
{
    (void)kinds;
    span_list *l = user;
    const char *at = NULL, *detail = NULL;
    for (int i = 0; i < ncol; i++) {
        if (!strcmp(names[i], "at"))
            at = values[i];
        else if (!strcmp(names[i], "detail"))
            detail = values[i];
    }
    if (!at || !detail)
        return 0;
    char result[32], secs[32], peer[80], ae[40];
    kv_get(detail, "result", result, sizeof result);
    kv_get(detail, "seconds", secs, sizeof secs);
    if (!secs[0] || !strcmp(result, "rejected") || !strcmp(result, "dropped"))
        return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        assoc_span *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return 1;
        l->v = v;
        l->cap = cap;
    }
    assoc_span *s = &l->v[l->n];
    memset(s, 0, sizeof *s);
    double end = iso_to_epoch(at);
    /* event times have 1 s resolution: widen the span by a second on each side */
    s->end = end + 1.0;
    s->start = end - atof(secs) - 1.0;
    kv_get(detail, "calling_ae", ae, sizeof ae);
    rp_strlcpy(s->calling_ae, ae, sizeof s->calling_ae);
    kv_get(detail, "peer", peer, sizeof peer);
    char *colon = strrchr(peer, ':');
    if (colon)
        *colon = '\0';
    rp_strlcpy(s->host, peer, sizeof s->host);
    char tr[16], ver[32], cipher[80], subj[200];
    kv_get(detail, "transport", tr, sizeof tr);
    kv_get(detail, "tls_version", ver, sizeof ver);
    kv_get(detail, "cipher", cipher, sizeof cipher);
    kv_get(detail, "cert_subject", subj, sizeof subj);
    if (!strcmp(tr, "tls"))
        snprintf(s->transport, sizeof s->transport, "tls %s %s %s", ver, cipher, subj);
    else
        snprintf(s->transport, sizeof s->transport, "%s", tr[0] ? tr : "plain");
    l->n++;
    return 0;
}

static const char *transport_of(const span_list *l, const rp_instance_meta *m)
{
    const char *found = NULL;
    for (size_t i = 0; i < l->n; i++) {
        const assoc_span *s = &l->v[i];
        if (m->received_at < s->start || m->received_at > s->end ||
            strcmp(s->calling_ae, m->calling_ae) || strcmp(s->host, m->peer_host))
            continue;
        if (found && strcmp(found, s->transport))
            return "ambiguous";
        found = s->transport;
    }
    return found ? found : "unknown";
}

typedef struct {
    char **uids;
    size_t n, cap;
} uid_list;

static int series_row(void *user, int ncol, const char *const *names, const char *const *values,
                      const int *kinds)
{
    (void)kinds;
    uid_list *u = user;
    for (int i = 0; i < ncol; i++) {
        if (strcmp(names[i], "series_uid") || !values[i])
            continue;
        if (u->n == u->cap) {
            size_t cap = u->cap ? u->cap * 2 : 16;
            char **v = realloc(u->uids, cap * sizeof *v);
            if (!v)
                return 1;
            u->uids = v;
            u->cap = cap;
        }
        u->uids[u->n] = strdup(values[i]);
        if (!u->uids[u->n])
            return 1;
        u->n++;
    }
    return 0;
}

static void usage(FILE *fp)
{
    fprintf(fp, "usage: radprep audit --study UID [--json]\n"
                "Who sent a study and when: every instance with its series, calling AE title,\n"
                "peer host, received time and the association's transport (plain, or TLS\n"
                "version, cipher and the peer certificate's subject).\n");
}

int rp_cli_audit(int argc, char **argv, const rp_conf *c)
{
    static const struct option opts[] = {{"help", no_argument, NULL, 'h'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"study", required_argument, NULL, 's'},
                                         {NULL, 0, NULL, 0}};
    const char *study = NULL;
    int json = 0, o;
    while ((o = getopt_long(argc, argv, "hjs:", opts, NULL)) != -1) {
        switch (o) {
        case 'h':
            usage(stdout);
            return 0;
        case 'j':
            json = 1;
            break;
        case 's':
            study = optarg;
            break;
        default:
            return rp_cli_fail(RP_CLI_EXIT_USAGE, "audit", "unknown option or missing value '%s'",
                               argv[optind - 1]);
        }
    }
    if (!study)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "audit", "which study? --study UID");
    if (optind < argc)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "audit", "unexpected argument '%s'", argv[optind]);
    rp_db *db;
    int rc = rp_cli_open_db(c, "audit", 1, &db);
    if (rc)
        return rc;
    uid_list series = {0};
    span_list spans = {0};
    rp_cli_table *t = NULL;
    int exit_code = RP_CLI_EXIT_FAIL;
    rp_db_filter f = {NULL, study, NULL, NULL, 0, NULL};
    if ((rc = rp_db_ls(db, "series", &f, series_row, &series)) != 0 ||
        (rc = rp_db_events_list(db, "association", 0, span_row, &spans)) != 0) {
        rp_cli_fail(RP_CLI_EXIT_FAIL, "audit", "cannot read the index: %s", rp_cli_errstr(rc));
        goto done;
    }
    if (series.n == 0) {
        rp_cli_fail(RP_CLI_EXIT_FAIL, "audit", "study %s is not in the index", study);
        goto done;
    }
    static const char *const names[] = {"series_uid", "sop_uid",   "calling_ae",
                                        "peer_host",  "transport", "received_at"};
    t = rp_cli_table_new(6, names);
    if (!t)
        goto done;
    for (size_t i = 0; i < series.n; i++) {
        rp_instance_meta *m = NULL;
        size_t n = 0;
        if ((rc = rp_db_series_instances(db, series.uids[i], &m, &n)) != 0) {
            rp_cli_fail(RP_CLI_EXIT_FAIL, "audit", "cannot read series %s: %s", series.uids[i],
                        rp_cli_errstr(rc));
            goto done;
        }
        for (size_t k = 0; k < n; k++) {
            char when[48];
            const char *row[6] = {series.uids[i],
                                  m[k].sop_instance_uid,
                                  m[k].calling_ae,
                                  m[k].peer_host,
                                  transport_of(&spans, &m[k]),
                                  rp_cli_time(m[k].received_at, when, sizeof when)};
            rp_cli_table_add(t, row, NULL);
        }
        free(m);
    }
    if (json)
        rp_cli_json_print(rp_cli_table_json(t));
    else
        rp_cli_table_print(t, stdout);
    exit_code = RP_CLI_EXIT_OK;
done:
    rp_cli_table_free(t);
    for (size_t i = 0; i < series.n; i++)
        free(series.uids[i]);
    free(series.uids);
    free(spans.v);
    rp_db_close(db);
    return exit_code;
}
