/* tests/qr — the pure parts of query/retrieve (dates, windows, the planner's rules, outcome
 * classification), [pull NAME] parsing, the pulls tables with their completion trigger, and
 * a pull against a PACS that is not there. Orthanc-backed runs are in
 * tests/integration/test_qr_orthanc.py. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/common.h"
#include "conf/conf.h"
#include "db/db.h"
#include "qr/qr.h"
#include "qr/qr_internal.h"

/* Local noon of a given day, so "yesterday" does not depend on the time zone. */
static double day(int y, int m, int d)
{
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    tm.tm_hour = 12;
    tm.tm_isdst = -1;
    return (double)mktime(&tm);
}

static double at(int y, int m, int d, int hh, int mm, int ss)
{
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = m - 1;
    tm.tm_mday = d;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    tm.tm_isdst = -1;
    return (double)mktime(&tm);
}

static void test_date_ranges(void **state)
{
    (void)state;
    char out[32];
    double now = day(2023, 3, 1);
    assert_int_equal(rp_conf_pull_date_range("yesterday", now, out, sizeof out), 0);
    assert_string_equal(out, "20230228");
    assert_int_equal(rp_conf_pull_date_range("today", now, out, sizeof out), 0);
    assert_string_equal(out, "20230301");
    assert_int_equal(rp_conf_pull_date_range("last 7 days", now, out, sizeof out), 0);
    assert_string_equal(out, "20230223-20230301");
    assert_int_equal(rp_conf_pull_date_range("Last 1 day", now, out, sizeof out), 0);
    assert_string_equal(out, "20230301-20230301");
    assert_int_equal(rp_conf_pull_date_range(" 20240229 ", now, out, sizeof out), 0);
    assert_string_equal(out, "20240229");
    assert_int_equal(rp_conf_pull_date_range("20230101-20230131", now, out, sizeof out), 0);
    assert_string_equal(out, "20230101-20230131");
    assert_int_equal(rp_conf_pull_date_range("-20230131", now, out, sizeof out), 0);
    assert_string_equal(out, "-20230131");
    assert_int_equal(rp_conf_pull_date_range("20230101-", now, out, sizeof out), 0);
    assert_string_equal(out, "20230101-");
    assert_int_equal(rp_conf_pull_date_range("", now, out, sizeof out), 0);
    assert_string_equal(out, "");
    /* across a year boundary */
    assert_int_equal(rp_conf_pull_date_range("yesterday", day(2024, 1, 1), out, sizeof out), 0);
    assert_string_equal(out, "20231231");
    const char *bad[] = {"20230229", "2023-01-01", "20230131-20230101", "last 0 days",
                         "last 7 weeks", "last days", "tomorrow", "-", "2023013", "20231301",
                         NULL};
    for (int i = 0; bad[i]; i++)
        assert_int_equal(rp_conf_pull_date_range(bad[i], now, out, sizeof out), RP_EINVAL);
}

static void test_windows(void **state)
{
    (void)state;
    int a, b;
    assert_int_equal(rp_conf_pull_window("20:00-06:00", &a, &b), 0);
    assert_int_equal(a, 20 * 3600);
    assert_int_equal(b, 6 * 3600);
    assert_int_equal(rp_conf_pull_window("01:02:03 - 04:05:06", &a, &b), 0);
    assert_int_equal(a, 3723);
    assert_int_equal(b, 4 * 3600 + 5 * 60 + 6);
    assert_int_equal(rp_conf_pull_window("any", &a, &b), 0);
    assert_int_equal(a, b);
    const char *bad[] = {"20:00", "25:00-01:00", "10:00-10:00", "10:60-11:00", "x-y",
                         "10:00-11:00 extra", NULL};
    for (int i = 0; bad[i]; i++)
        assert_int_equal(rp_conf_pull_window(bad[i], &a, &b), RP_EINVAL);

    rp_conf_pull p;
    memset(&p, 0, sizeof p);
    rp_conf_pull_window("20:00-06:00", &p.window_start_s, &p.window_end_s);
    double end = -1;
    assert_int_equal(rp_conf_pull_in_window(&p, at(2023, 1, 14, 3, 0, 0), &end), 1);
    assert_true(end == at(2023, 1, 14, 6, 0, 0));
    assert_int_equal(rp_conf_pull_in_window(&p, at(2023, 1, 14, 22, 30, 0), &end), 1);
    assert_true(end == at(2023, 1, 15, 6, 0, 0));
    assert_int_equal(rp_conf_pull_in_window(&p, at(2023, 1, 14, 12, 0, 0), &end), 0);
    assert_true(end == 0);
    rp_conf_pull_window("09:00-17:00", &p.window_start_s, &p.window_end_s);
    assert_int_equal(rp_conf_pull_in_window(&p, at(2023, 1, 14, 16, 59, 59), &end), 1);
    assert_true(end == at(2023, 1, 14, 17, 0, 0));
    assert_int_equal(rp_conf_pull_in_window(&p, at(2023, 1, 14, 17, 0, 0), &end), 0);
    p.window_start_s = p.window_end_s = 0;
    assert_int_equal(rp_conf_pull_in_window(&p, at(2023, 1, 14, 12, 0, 0), &end), 1);
    assert_true(end == 0);
}

static void test_planner_rules(void **state)
{
    (void)state;
    /* the same count (or more) here: skip; fewer: retrieve; unknown: only when absent */
    assert_int_equal(rp_qr_should_retrieve(133, 0), 1);
    assert_int_equal(rp_qr_should_retrieve(133, 132), 1);
    assert_int_equal(rp_qr_should_retrieve(133, 133), 0);
    assert_int_equal(rp_qr_should_retrieve(133, 140), 0);
    assert_int_equal(rp_qr_should_retrieve(-1, 0), 1);
    assert_int_equal(rp_qr_should_retrieve(-1, 5), 0);
    assert_true(rp_qr_backoff_s(30, 1) == 30);
    assert_true(rp_qr_backoff_s(30, 3) == 120);
    assert_true(rp_qr_backoff_s(30, 30) == 3600);
    assert_true(rp_qr_backoff_s(0, 1) == 1);

    rp_qr_result r;
    memset(&r, 0, sizeof r);
    r.completed = 40;
    assert_int_equal(rp_qr_classify(&r, 40), RP_QR_S_MOVED);
    assert_int_equal(rp_qr_classify(&r, 39), RP_QR_S_CHANGED);
    assert_int_equal(rp_qr_classify(&r, 41), RP_QR_S_CHANGED);
    r.completed = 0; /* a final response without counts: nothing to compare */
    assert_int_equal(rp_qr_classify(&r, 41), RP_QR_S_MOVED);

    memset(&r, 0, sizeof r);
    r.outcome = RP_QR_FAILED;
    r.status = 0xA801;
    assert_int_equal(rp_qr_failure_is_fatal(&r), 1);
    r.status = 0xC000;
    assert_int_equal(rp_qr_failure_is_fatal(&r), 0);
    r.outcome = RP_QR_REJECTED;
    assert_int_equal(rp_qr_failure_is_fatal(&r), 1);
    r.outcome = RP_QR_UNREACHABLE;
    assert_int_equal(rp_qr_failure_is_fatal(&r), 1);
    r.outcome = RP_QR_NETWORK; /* a broken move: the retry decides */
    assert_int_equal(rp_qr_failure_is_fatal(&r), 0);
    r.outcome = RP_QR_PARTIAL;
    assert_int_equal(rp_qr_failure_is_fatal(&r), 0);

    char buf[96];
    assert_string_equal(rp_qr_status_text(0xA801, buf, sizeof buf),
                        "0xA801 refused: move destination unknown");
    assert_string_equal(rp_qr_status_text(0xC123, buf, sizeof buf),
                        "0xC123 failed: unable to process");
    assert_string_equal(rp_qr_outcome_name(RP_QR_PARTIAL), "partial");
}

static char tmpdir[256];

static int write_file(const char *name, const char *text, char *path, size_t pathsz)
{
    snprintf(path, pathsz, "%s/%s", tmpdir, name);
    FILE *fp = fopen(path, "w");
    if (!fp)
        return -1;
    fputs(text, fp);
    fclose(fp);
    return 0;
}

static int load_text(const char *text, rp_conf *c, char *err, size_t errlen)
{
    char path[512];
    assert_int_equal(write_file("t.ini", text, path, sizeof path), 0);
    assert_int_equal(rp_conf_defaults(c), 0);
    int rc = rp_conf_load(c, path, err, errlen);
    if (rc)
        rp_conf_free(c);
    return rc;
}

#define PACS "[peer pacs]\nae_title = PACS\nhost = 127.0.0.1\nport = 104\nfind = yes\nmove = yes\n"

static void test_conf_pull(void **state)
{
    (void)state;
    rp_conf c;
    char err[1024];
    int rc = load_text("[pull nightly]\npeer = pacs\nstudy_date = last 7 days\nmodality = CT\n"
                       "study_description = *THORAX*\nwindow = 20:00-06:00\nmax_concurrent = 2\n"
                       "max_series = 10\npause_ms = 250\nretries = 3\nretry_backoff_s = 7\n"
                       "rule = ct_default\ndataset = chest\n\n" PACS,
                       &c, err, sizeof err);
    assert_int_equal(rc, 0);
    const rp_conf_pull *p = rp_conf_pull_by_name(&c, "nightly");
    assert_non_null(p);
    assert_string_equal(p->peer, "pacs");
    assert_string_equal(p->study_date, "last 7 days");
    assert_string_equal(p->study_description, "*THORAX*");
    assert_int_equal(p->window_start_s, 20 * 3600);
    assert_int_equal(p->max_concurrent, 2);
    assert_int_equal(p->max_series, 10);
    assert_int_equal(p->pause_ms, 250);
    assert_int_equal(p->retries, 3);
    assert_int_equal(p->retry_backoff_s, 7);
    assert_int_equal(p->method, RP_PULL_MOVE);
    const rp_conf_peer *peer = rp_conf_peer_by_name(&c, "pacs");
    assert_int_equal(peer->may_find, 1);
    assert_int_equal(peer->may_move, 1);
    assert_int_equal(peer->may_get, 0);

    /* as a request at 03:00 on 2023-03-01: dates resolved, deadline at 06:00 */
    rp_qr_pull_request r;
    assert_int_equal(rp_qr_pull_from_conf(p, peer, at(2023, 3, 1, 3, 0, 0), &r), 0);
    assert_string_equal(r.keys.study_date, "20230223-20230301");
    assert_string_equal(r.keys.modality, "CT");
    assert_string_equal(r.rule, "ct_default");
    assert_true(r.deadline == at(2023, 3, 1, 6, 0, 0));
    assert_int_equal(r.n_sel, 1);
    assert_int_equal(r.sel[0].kind, RP_QR_SEL_QUERY);
    char text[512];
    rp_qr_request_text(&r, text, sizeof text);
    assert_non_null(strstr(text, "study_date=20230223-20230301"));
    assert_non_null(strstr(text, "modality=CT"));
    rp_conf_free(&c);

    /* errors name the file and line */
    struct {
        const char *text, *want;
    } bad[] = {
        {"[pull a]\npeer = pacs\nmodality = CT\n", "unknown peer 'pacs'"},
        {"[pull a]\nmodality = CT\n" PACS, "peer is required"},
        {"[pull a]\npeer = pacs\n" PACS, "no query key"},
        {"[pull a]\npeer = pacs\nstudy_date = soon\n" PACS, "is not a date"},
        {"[pull a]\npeer = pacs\nmodality = CT\nwindow = late\n" PACS, "window"},
        {"[pull a]\npeer = pacs\nmodality = CT\nmax_concurrent = 0\n" PACS, "out of range"},
        {"[pull a]\npeer = pacs\nmodality = CT\ncolour = blue\n" PACS, "unknown key 'colour'"},
        {"[pull a]\npeer = pacs\nmodality = CT\nmethod = get\n" PACS, "does not allow get"},
        {"[pull a]\npeer = pacs\nmodality = CT\nrule = nope\n" PACS, "unknown rule 'nope'"},
        {"[pull a]\npeer = pacs\nmodality = CT\nmodality = MR\n" PACS, "duplicate key"},
        {"[pull a]\npeer = pacs\nmodality = CT\n[pull a]\npeer = pacs\nmodality = MR\n" PACS,
         "duplicate"},
        {"[pull a]\npeer = pacs\nmodality = C\\T\n" PACS, "backslash"},
        {"[pull a]\npeer = pacs\nmodality = CT\n[peer pacs]\nae_title = PACS\nhost = h\n"
         "port = 104\nmove = yes\n",
         "does not allow find"},
        {"[peer p]\nae_title = P\nfind = maybe\n", "not a boolean"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        assert_int_equal(load_text(bad[i].text, &c, err, sizeof err), RP_ECONF);
        if (!strstr(err, bad[i].want) || !strstr(err, "t.ini:"))
            fail_msg("case %zu: '%s' does not say '%s'", i, err, bad[i].want);
    }
}

static void meta_for(rp_instance_meta *m, const char *series, int i)
{
    memset(m, 0, sizeof *m);
    snprintf(m->patient_id, sizeof m->patient_id, "P1");
    snprintf(m->study_uid, sizeof m->study_uid, "1.2.3");
    snprintf(m->series_uid, sizeof m->series_uid, "%s", series);
    snprintf(m->sop_instance_uid, sizeof m->sop_instance_uid, "%s.%d", series, i + 1);
    snprintf(m->sop_class_uid, sizeof m->sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
    snprintf(m->modality, sizeof m->modality, "CT");
    snprintf(m->file_path, sizeof m->file_path, "x/%d.dcm", i);
    m->series_number = 1;
    m->instance_number = i + 1;
    m->number_of_frames = 1;
    m->images_in_acquisition = m->number_of_temporal_positions = -1;
    m->number_of_slices = m->acquisition_number = -1;
    m->slice_thickness = -1;
    m->received_at = rp_now_s();
}

static void test_db_pulls(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/index.sqlite", tmpdir);
    unlink(path);
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(path, &db), 0);
    long long pid = 0, item = 0, n = -2;
    assert_int_equal(rp_db_pull_begin(db, "nightly", "pacs", "modality=CT", &pid), 0);
    rp_db_pull_item it;
    memset(&it, 0, sizeof it);
    strcpy(it.study_uid, "1.2.3");
    strcpy(it.series_uid, "1.2.3.4");
    strcpy(it.modality, "CT");
    strcpy(it.rule, "ct_default");
    it.announced = 3;
    assert_int_equal(rp_db_pull_item_add(db, pid, &it, &item), 0);
    /* while moving, the count is no evidence yet */
    assert_int_equal(rp_db_pull_announced(db, "1.2.3.4", &n), RP_ENOENT);
    char rule[64];
    assert_int_equal(rp_db_pull_rule(db, "1.2.3.4", rule, sizeof rule), 0);
    assert_string_equal(rule, "ct_default");
    assert_int_equal(rp_db_pull_rule(db, "9.9", rule, sizeof rule), RP_ENOENT);

    rp_instance_meta m[3];
    for (int i = 0; i < 3; i++)
        meta_for(&m[i], "1.2.3.4", i);
    assert_int_equal(rp_db_index_instances(db, m, 3), 0);
    assert_int_equal(
        rp_db_pull_item_finish(db, item, "moved", 1, 3, 0, 0, 0, NULL), 0);
    assert_int_equal(rp_db_pull_announced(db, "1.2.3.4", &n), 0);
    assert_int_equal(n, 3);
    /* the series completes on that count: the item learns it */
    assert_int_equal(rp_db_series_complete(db, "1.2.3.4", 0, RP_COMPLETED_EXPECTED_COUNT, 3, NULL), 0);
    rp_db_pull_item *items = NULL;
    size_t ni = 0;
    assert_int_equal(rp_db_pull_items_list(db, pid, &items, &ni), 0);
    assert_int_equal(ni, 1);
    assert_string_equal(items[0].state, "complete");
    assert_string_equal(items[0].completed_reason, "announced_count");
    assert_int_equal(items[0].received, 3);
    assert_int_equal(items[0].completed, 3);
    assert_true(items[0].completed_at > 0);
    free(items);
    /* complete: no longer evidence for anything */
    assert_int_equal(rp_db_pull_announced(db, "1.2.3.4", &n), RP_ENOENT);

    /* a second item of another series that changed: no evidence; completes by quiet */
    long long item2 = 0;
    strcpy(it.series_uid, "1.2.3.5");
    it.rule[0] = '\0';
    it.announced = 2;
    assert_int_equal(rp_db_pull_item_add(db, pid, &it, &item2), 0);
    for (int i = 0; i < 3; i++)
        meta_for(&m[i], "1.2.3.5", i);
    assert_int_equal(rp_db_index_instances(db, m, 3), 0);
    assert_int_equal(rp_db_pull_item_finish(db, item2, "changed", 1, 3, 0, 0, 0,
                                            "series changed on the PACS"),
                     0);
    assert_int_equal(rp_db_pull_announced(db, "1.2.3.5", &n), RP_ENOENT);
    assert_int_equal(rp_db_pull_rule(db, "1.2.3.5", rule, sizeof rule), RP_ENOENT);
    assert_int_equal(rp_db_series_complete(db, "1.2.3.5", 0, RP_COMPLETED_QUIET, 3, NULL), 0);
    assert_int_equal(rp_db_pull_items_list(db, pid, &items, &ni), 0);
    assert_int_equal(ni, 2);
    assert_string_equal(items[1].state, "changed");
    assert_string_equal(items[1].completed_reason, "quiet");
    free(items);

    rp_db_pull p;
    memset(&p, 0, sizeof p);
    p.id = pid;
    strcpy(p.state, "partial");
    p.series_found = 2;
    p.series_ok = 1;
    p.series_failed = 1;
    p.last_status = -1;
    strcpy(p.reason, "series changed on the PACS");
    assert_int_equal(rp_db_pull_finish(db, &p), 0);
    rp_db_pull *runs = NULL;
    size_t nr = 0;
    assert_int_equal(rp_db_pulls_list(db, "nightly", 0, &runs, &nr), 0);
    assert_int_equal(nr, 1);
    assert_string_equal(runs[0].state, "partial");
    assert_string_equal(runs[0].request, "modality=CT");
    assert_int_equal(runs[0].last_status, -1);
    assert_true(runs[0].finished_at > 0);
    free(runs);
    assert_int_equal(rp_db_pulls_list(db, "other", 0, &runs, &nr), 0);
    assert_int_equal(nr, 0);
    free(runs);
    p.id = 999;
    assert_int_equal(rp_db_pull_finish(db, &p), RP_ENOENT);
    rp_db_close(db);
}

/* A port nobody listens on. */
static int closed_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(s, (struct sockaddr *)&a, sizeof a);
    socklen_t l = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &l);
    close(s);
    return ntohs(a.sin_port);
}

static void test_pacs_down(void **state)
{
    (void)state;
    rp_qr_peer p;
    memset(&p, 0, sizeof p);
    strcpy(p.calling_ae, "RADPREP");
    strcpy(p.called_ae, "PACS");
    strcpy(p.host, "127.0.0.1");
    p.port = closed_port();
    p.acse_timeout_s = 5;
    rp_qr *q = (rp_qr *)1;
    rp_qr_result res;
    assert_int_equal(rp_qr_open(&p, RP_QR_FIND | RP_QR_MOVE, &q, &res), RP_ENET);
    assert_null(q);
    assert_int_equal(res.outcome, RP_QR_UNREACHABLE);
    assert_non_null(strstr(res.reason, "PACS@127.0.0.1"));

    /* a whole pull: reported and recorded, retried once */
    rp_conf c;
    assert_int_equal(rp_conf_defaults(&c), 0);
    snprintf(c.data_dir, sizeof c.data_dir, "%s", tmpdir);
    rp_conf_peer peer;
    memset(&peer, 0, sizeof peer);
    strcpy(peer.name, "pacs");
    strcpy(peer.ae_title, "PACS");
    strcpy(peer.host, "127.0.0.1");
    peer.port = p.port;
    peer.may_find = peer.may_move = 1;
    rp_qr_pull_request r;
    rp_qr_pull_defaults(&r, &peer);
    rp_qr_selector sel = {RP_QR_SEL_STUDY, "1.2.3"};
    r.sel = &sel;
    r.n_sel = 1;
    r.retries = 1;
    r.retry_backoff_s = 1;
    rp_qr_pull_report rep;
    double t0 = rp_mono_s();
    assert_int_equal(rp_qr_pull_run(&c, &r, &rep), RP_ENET);
    assert_true(rp_mono_s() - t0 >= 0.9); /* it waited for the retry */
    assert_non_null(strstr(rep.reason, "cannot associate"));
    assert_true(rep.pull_id > 0);
    char path[512];
    snprintf(path, sizeof path, "%s/index.sqlite", tmpdir);
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(path, &db), 0);
    rp_db_pull *runs = NULL;
    size_t nr = 0;
    assert_int_equal(rp_db_pulls_list(db, NULL, 1, &runs, &nr), 0);
    assert_int_equal(nr, 1);
    assert_int_equal(runs[0].id, rep.pull_id);
    assert_string_equal(runs[0].state, "failed");
    assert_non_null(strstr(runs[0].reason, "cannot associate"));
    free(runs);
    rp_db_close(db);

    /* a deadline already past: no retry wait */
    r.deadline = rp_now_s() + 0.5;
    r.retry_backoff_s = 30;
    t0 = rp_mono_s();
    assert_int_equal(rp_qr_pull_run(&c, &r, &rep), RP_ENET);
    assert_true(rp_mono_s() - t0 < 5);
    rp_conf_free(&c);
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rp_test_qr_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return rp_rm_rf(tmpdir);
}

int main(void)
{
    rp_log_set_level(RP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_date_ranges),   cmocka_unit_test(test_windows),
        cmocka_unit_test(test_planner_rules), cmocka_unit_test(test_conf_pull),
        cmocka_unit_test(test_db_pulls),      cmocka_unit_test(test_pacs_down),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
