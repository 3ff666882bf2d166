/* qr/plan — from a pull request to the list of series to retrieve.
 *
 * The query goes down the Study Root hierarchy as a PACS expects it: study level with the
 * study keys (patient, accession, date, description, Modalities in Study), then series level
 * inside each study with the series keys (modality, body part, description), asking for
 * Number of Series Related Instances. A PACS that does not return that count is asked at
 * image level, so every series has an announced count whenever the PACS can tell. Each series
 * is then compared with the index: the same count (or more) here means nothing to do. */
#include "qr/qr_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"

#define MOD "pull"

int rp_qr_should_retrieve(long long announced, long long have)
{
    if (announced < 0)
        return have <= 0;
    return have < announced;
}

double rp_qr_backoff_s(int base_s, int attempt)
{
    double d = base_s > 0 ? base_s : 1;
    for (int i = 1; i < attempt && d < 3600; i++)
        d *= 2;
    return d < 3600 ? d : 3600;
}

int rp_qr_failure_is_fatal(const rp_qr_result *res)
{
    /* Still unreachable after the retries: the next series would only wait the same way. */
    if (res->outcome == RP_QR_REJECTED || res->outcome == RP_QR_NO_CONTEXT ||
        res->outcome == RP_QR_UNREACHABLE)
        return 1;
    /* 0xA801 move destination unknown, 0x0122 SOP class not supported, 0x0124 not
     * authorized: the same answer awaits every other series. */
    return res->outcome == RP_QR_FAILED &&
           (res->status == 0xA801 || res->status == 0x0122 || res->status == 0x0124);
}

rp_qr_series_state rp_qr_classify(const rp_qr_result *res, long long announced)
{
    int counted = res->completed + res->failed + res->warning;
    if (announced > 0 && counted > 0 && res->completed + res->warning != announced)
        return RP_QR_S_CHANGED;
    return RP_QR_S_MOVED;
}

static void sleep_s(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

int rp_qr_open_retry(const rp_qr_peer *p, unsigned services, const rp_qr_pull_request *r,
                     rp_qr **out, rp_qr_result *res)
{
    for (int attempt = 1;; attempt++) {
        int rc = rp_qr_open(p, services, out, res);
        if (rc != RP_ENET || attempt > r->retries)
            return rc;
        double wait = rp_qr_backoff_s(r->retry_backoff_s, attempt);
        if (r->deadline > 0 && rp_now_s() + wait >= r->deadline) {
            RP_WARN(MOD, "PACS unreachable and the window closes before the next attempt "
                         "peer=%s",
                    p->called_ae);
            return rc;
        }
        if (r->out)
            fprintf(r->out, "PACS %s unreachable (%s): retry %d/%d in %.0f s\n", p->called_ae,
                    res->reason, attempt, r->retries, wait);
        RP_WARN(MOD, "PACS unreachable, retrying peer=%s attempt=%d wait_s=%.0f", p->called_ae,
                attempt, wait);
        sleep_s(wait);
    }
}

void rp_qr_plan_free(rp_qr_plan *plan)
{
    free(plan->t);
    memset(plan, 0, sizeof *plan);
}

static int plan_add(rp_qr_plan *plan, const rp_qr_match *m)
{
    for (size_t i = 0; i < plan->n; i++)
        if (strcmp(plan->t[i].series_uid, m->series_uid) == 0)
            return 0; /* two selectors found the same series */
    if (plan->n == plan->cap) {
        size_t nc = plan->cap ? plan->cap * 2 : 32;
        rp_qr_target *t = realloc(plan->t, nc * sizeof *t);
        if (!t)
            return RP_ENOMEM;
        plan->t = t;
        plan->cap = nc;
    }
    rp_qr_target *t = &plan->t[plan->n++];
    memset(t, 0, sizeof *t);
    rp_strlcpy(t->study_uid, m->study_uid, sizeof t->study_uid);
    rp_strlcpy(t->series_uid, m->series_uid, sizeof t->series_uid);
    rp_strlcpy(t->modality, m->modality, sizeof t->modality);
    rp_strlcpy(t->description, m->series_description, sizeof t->description);
    t->series_number = m->series_number;
    t->announced = m->series_instances;
    return 0;
}

/* Series of one study that match the series keys of k. */
static int find_series(rp_qr *q, const rp_qr_keys *k, const char *study_uid,
                       const char *series_uid, rp_qr_plan *plan, rp_qr_result *res)
{
    rp_qr_keys s;
    memset(&s, 0, sizeof s);
    s.level = RP_QR_SERIES;
    rp_strlcpy(s.study_uid, study_uid ? study_uid : "", sizeof s.study_uid);
    rp_strlcpy(s.series_uid, series_uid ? series_uid : "", sizeof s.series_uid);
    if (k) {
        rp_strlcpy(s.modality, k->modality, sizeof s.modality);
        rp_strlcpy(s.body_part, k->body_part, sizeof s.body_part);
        rp_strlcpy(s.series_description, k->series_description, sizeof s.series_description);
    }
    rp_qr_match *m = NULL;
    size_t n = 0;
    int rc = rp_qr_find(q, &s, &m, &n, res);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!m[i].series_uid[0] || !m[i].study_uid[0]) {
            /* a series answer without its UIDs cannot be retrieved */
            RP_WARN(MOD, "C-FIND answer without study/series UID skipped study=%s",
                    m[i].study_uid);
            continue;
        }
        rc = plan_add(plan, &m[i]);
    }
    free(m);
    return rc;
}

/* Studies matching the study keys, then their series. */
static int find_studies(rp_qr *q, const rp_qr_keys *k, rp_qr_plan *plan, rp_qr_result *res)
{
    rp_qr_keys s = *k;
    s.level = RP_QR_STUDY;
    rp_qr_match *m = NULL;
    size_t n = 0;
    int rc = rp_qr_find(q, &s, &m, &n, res);
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (m[i].study_uid[0])
            rc = find_series(q, k, m[i].study_uid, NULL, plan, res);
    free(m);
    return rc;
}

/* Count a series' instances at image level (the PACS gave no series count). */
static int count_instances(rp_qr *q, rp_qr_target *t, rp_qr_result *res)
{
    rp_qr_keys k;
    memset(&k, 0, sizeof k);
    k.level = RP_QR_IMAGE;
    rp_strlcpy(k.study_uid, t->study_uid, sizeof k.study_uid);
    rp_strlcpy(k.series_uid, t->series_uid, sizeof k.series_uid);
    rp_qr_match *m = NULL;
    size_t n = 0;
    int rc = rp_qr_find(q, &k, &m, &n, res);
    free(m);
    if (rc == 0)
        t->announced = (long long)n;
    return rc;
}

int rp_qr_plan_build(const rp_conf *c, const rp_qr_pull_request *r, rp_db *db, rp_qr_plan *plan,
                     rp_qr_result *res)
{
    memset(plan, 0, sizeof *plan);
    rp_qr_peer peer;
    rp_qr_peer_from_conf(c, r->peer, &peer);
    rp_qr *q = NULL;
    int rc = rp_qr_open_retry(&peer, RP_QR_FIND, r, &q, res);
    if (rc)
        return rc;
    for (size_t i = 0; rc == 0 && i < r->n_sel; i++) {
        const rp_qr_selector *s = &r->sel[i];
        rp_qr_keys k;
        switch (s->kind) {
        case RP_QR_SEL_QUERY:
            if (r->keys.study_uid[0] || r->keys.series_uid[0])
                rc = find_series(q, &r->keys, r->keys.study_uid, r->keys.series_uid, plan, res);
            else
                rc = find_studies(q, &r->keys, plan, res);
            break;
        case RP_QR_SEL_STUDY:
            rc = find_series(q, NULL, s->value, NULL, plan, res);
            break;
        case RP_QR_SEL_SERIES:
            rc = find_series(q, NULL, NULL, s->value, plan, res);
            break;
        case RP_QR_SEL_ACCESSION:
            memset(&k, 0, sizeof k);
            rp_strlcpy(k.accession, s->value, sizeof k.accession);
            rc = find_studies(q, &k, plan, res);
            break;
        }
    }
    for (size_t i = 0; rc == 0 && i < plan->n; i++)
        if (plan->t[i].announced < 0)
            rc = count_instances(q, &plan->t[i], res);
    rp_qr_close(q);
    if (rc) {
        rp_qr_plan_free(plan);
        return rc;
    }
    int wanted = 0;
    for (size_t i = 0; i < plan->n; i++) {
        rp_qr_target *t = &plan->t[i];
        rp_db_series_info si;
        t->have = rp_db_series_get(db, t->series_uid, &si) == 0 ? si.instance_count : 0;
        if (!rp_qr_should_retrieve(t->announced, t->have))
            t->action = RP_QR_T_PRESENT;
        else if (wanted < r->max_series) {
            t->action = RP_QR_T_RETRIEVE;
            wanted++;
        } else {
            t->action = RP_QR_T_LEFT;
            t->state = RP_QR_S_LEFT;
        }
    }
    return 0;
}

static void add_word(char *buf, size_t bufsz, const char *key, const char *v)
{
    size_t len = strlen(buf);
    if (!v || !*v || len + 2 >= bufsz)
        return;
    char q[160];
    rp_log_kv_quote(v, q, sizeof q);
    snprintf(buf + len, bufsz - len, "%s%s=%s", len ? " " : "", key, q);
}

void rp_qr_request_text(const rp_qr_pull_request *r, char *buf, size_t bufsz)
{
    buf[0] = '\0';
    for (size_t i = 0; i < r->n_sel; i++) {
        const rp_qr_selector *s = &r->sel[i];
        if (s->kind == RP_QR_SEL_QUERY) {
            const rp_qr_keys *k = &r->keys;
            add_word(buf, bufsz, "patient_id", k->patient_id);
            add_word(buf, bufsz, "accession", k->accession);
            add_word(buf, bufsz, "study_date", k->study_date);
            add_word(buf, bufsz, "modality", k->modality);
            add_word(buf, bufsz, "body_part", k->body_part);
            add_word(buf, bufsz, "study_description", k->study_description);
            add_word(buf, bufsz, "series_description", k->series_description);
            add_word(buf, bufsz, "study", k->study_uid);
            add_word(buf, bufsz, "series", k->series_uid);
        } else {
            add_word(buf, bufsz,
                     s->kind == RP_QR_SEL_STUDY    ? "study"
                     : s->kind == RP_QR_SEL_SERIES ? "series"
                                                   : "accession",
                     s->value);
        }
    }
    add_word(buf, bufsz, "rule", r->rule);
    add_word(buf, bufsz, "method", r->method == RP_PULL_GET ? "get" : "move");
}
