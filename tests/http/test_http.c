/* Unit tests for http/: the console served over a small index built here, spoken to with a
 * raw HTTP/1.1 client on loopback. Pages and API agree with the db counts; HTML escapes
 * what the index holds; actions need the token AND the CSRF token (403 and nothing changes
 * otherwise) and leave an audit event; traversal, foreign Host headers and oversized
 * requests are refused; /metrics is Prometheus text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "conf/conf.h"
#include "db/db.h"
#include "http/http.h"
#include "http/http_internal.h" /* rp_http_json_row */
#include "metrics/metrics.h"

#define TOKEN "test-token-0123456789abcdef"
#define SERIES_A "1.2.3.4.100"
#define SERIES_B "1.2.3.4.200"

static char tmpdir[64], dbpath[128], tokpath[128];
static rp_conf conf;
static rp_http *srv;
static int port;

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(s, (struct sockaddr *)&a, sizeof a);
    socklen_t l = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &l);
    close(s);
    return ntohs(a.sin_port);
}

static void add_instances(rp_db *db, const char *series, int n, const char *patient_id,
                          const char *patient_name)
{
    for (int i = 0; i < n; i++) {
        rp_instance_meta m;
        memset(&m, 0, sizeof m);
        snprintf(m.patient_id, sizeof m.patient_id, "%s", patient_id);
        snprintf(m.patient_name, sizeof m.patient_name, "%s", patient_name);
        snprintf(m.study_uid, sizeof m.study_uid, "1.2.3.4.%s", patient_id + 3);
        snprintf(m.study_date, sizeof m.study_date, "20260102");
        snprintf(m.series_uid, sizeof m.series_uid, "%s", series);
        snprintf(m.modality, sizeof m.modality, "CT");
        snprintf(m.series_description, sizeof m.series_description, "Chest <b>thin</b>");
        snprintf(m.sop_class_uid, sizeof m.sop_class_uid, "1.2.840.10008.5.1.4.1.1.2");
        snprintf(m.sop_instance_uid, sizeof m.sop_instance_uid, "%s.%d", series, i + 1);
        snprintf(m.file_path, sizeof m.file_path, "x/%s/%d.dcm", series, i);
        snprintf(m.calling_ae, sizeof m.calling_ae, "CT1");
        m.series_number = 1;
        m.instance_number = i + 1;
        m.number_of_frames = 1;
        m.images_in_acquisition = m.number_of_temporal_positions = m.number_of_slices = -1;
        m.acquisition_number = -1;
        m.slice_thickness = 1.0;
        m.file_size = 1000;
        m.received_at = rp_now_s();
        assert_int_equal(rp_db_index_instances(db, &m, 1), 0);
    }
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rp_http_XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(dbpath, sizeof dbpath, "%s/index.sqlite", tmpdir);
    snprintf(tokpath, sizeof tokpath, "%s/token", tmpdir);
    FILE *fp = fopen(tokpath, "w");
    fputs(TOKEN "\n", fp);
    fclose(fp);
    chmod(tokpath, 0600);
    rp_db *db;
    if (rp_db_open(dbpath, &db) != 0)
        return -1;
    add_instances(db, SERIES_A, 3, "PAT1", "Doe^<script>alert(1)</script>");
    add_instances(db, SERIES_B, 2, "PAT2", "Doe^Jane");
    rp_db_close(db);
    rp_conf_defaults(&conf);
    rp_strlcpy(conf.data_dir, tmpdir, sizeof conf.data_dir);
    rp_strlcpy(conf.http_token_file, tokpath, sizeof conf.http_token_file);
    conf.http_port = port = free_port();
    conf.min_free_mb = 1;
    char err[512];
    if (rp_conf_validate(&conf, err, sizeof err) != 0) {
        fprintf(stderr, "validate: %s\n", err);
        return -1;
    }
    if (rp_http_start(&conf, dbpath, &srv, err, sizeof err) != 0) {
        fprintf(stderr, "start: %s\n", err);
        return -1;
    }
    return srv && rp_http_port(srv) == port ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    rp_http_stop(srv);
    rp_conf_free(&conf);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- a raw HTTP client ----------------------------------------------------------------------- */

typedef struct resp {
    int status;
    char *head, *body; /* malloc'd (one block) */
} resp;

static void resp_free(resp *r)
{
    free(r->head);
    memset(r, 0, sizeof *r);
}

/* Send raw request bytes, read until the server closes. */
static resp raw(const char *req, size_t len)
{
    resp out = {0, NULL, NULL};
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(connect(s, (struct sockaddr *)&a, sizeof a), 0);
    struct timeval tv = {10, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t off = 0;
    while (off < len) {
        ssize_t w = send(s, req + off, len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the server may refuse before reading everything */
        off += (size_t)w;
    }
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 4096 > cap)
            buf = realloc(buf, cap *= 2);
        ssize_t r = recv(s, buf + n, cap - n - 1, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(s);
    buf[n] = '\0';
    out.head = buf;
    char *sep = strstr(buf, "\r\n\r\n");
    out.body = sep ? sep + 4 : buf + n;
    if (strncmp(buf, "HTTP/1.", 7) == 0)
        out.status = atoi(buf + 9);
    return out;
}

/* A request with the usual headers; extra is more header lines ("K: V\r\n"), body may be NULL. */
static resp http(const char *method, const char *path, const char *extra, const char *body)
{
    char req[8192];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s%s"
                     "\r\n%s",
                     method, path, port, extra ? extra : "", "", body ? body : "");
    if (body) {
        char with_len[8192];
        n = snprintf(with_len, sizeof with_len,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s"
                     "Content-Length: %zu\r\n\r\n%s",
                     method, path, port, extra ? extra : "", strlen(body), body);
        return raw(with_len, (size_t)n);
    }
    return raw(req, (size_t)n);
}

static cJSON *get_json(const char *path, const char *extra, int want_status)
{
    resp r = http("GET", path, extra, NULL);
    assert_int_equal(r.status, want_status);
    assert_non_null(strstr(r.head, "Content-Type: application/json"));
    cJSON *j = cJSON_Parse(r.body);
    assert_non_null(j);
    resp_free(&r);
    return j;
}

static const char *state_of(const char *uid)
{
    static char st[32];
    rp_db *db;
    assert_int_equal(rp_db_open_readonly(dbpath, &db), 0);
    rp_db_series_info si;
    assert_int_equal(rp_db_series_get(db, uid, &si), 0);
    rp_db_close(db);
    snprintf(st, sizeof st, "%s", rp_series_state_name(si.state));
    return st;
}

static int count_events(const char *needle)
{
    rp_db *db;
    assert_int_equal(rp_db_open_readonly(dbpath, &db), 0);
    cJSON *arr = cJSON_CreateArray();
    rp_db_console_events_about(db, "console", needle, 0, rp_http_json_row, arr);
    int n = cJSON_GetArraySize(arr);
    cJSON_Delete(arr);
    rp_db_close(db);
    return n;
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_status_matches_db(void **state)
{
    (void)state;
    cJSON *j = get_json("/api/v1/status", NULL, 200);
    rp_db *db;
    rp_db_counts n;
    assert_int_equal(rp_db_open_readonly(dbpath, &db), 0);
    assert_int_equal(rp_db_counts_get(db, &n), 0);
    rp_db_close(db);
    assert_int_equal((long long)cJSON_GetObjectItem(j, "instances")->valuedouble, n.instances);
    assert_int_equal((long long)cJSON_GetObjectItem(j, "instances")->valuedouble, 5);
    assert_int_equal((long long)cJSON_GetObjectItem(j, "series")->valuedouble, 2);
    cJSON *ss = cJSON_GetObjectItem(j, "series_state");
    assert_int_equal((int)cJSON_GetObjectItem(ss, "receiving")->valuedouble, 2);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "node"), "ae_title")->valuestring, "RADPREP");
    cJSON_Delete(j);
    /* the overview shows the same numbers */
    resp r = http("GET", "/", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "data-k=\"instances\">5</span>"));
    assert_non_null(strstr(r.body, "data-k=\"series_state.receiving\">2</span>"));
    assert_non_null(strstr(r.head, "Content-Security-Policy: default-src 'self'"));
    resp_free(&r);
}

static void test_series_pages_escape(void **state)
{
    (void)state;
    cJSON *j = get_json("/api/v1/series?q=Doe&per_page=1", NULL, 200);
    assert_int_equal((int)cJSON_GetObjectItem(j, "total")->valuedouble, 2);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "series")), 1);
    cJSON_Delete(j);
    j = get_json("/api/v1/series?q=Jane", NULL, 200);
    assert_int_equal((int)cJSON_GetObjectItem(j, "total")->valuedouble, 1);
    cJSON_Delete(j);
    j = get_json("/api/v1/series/" SERIES_A, NULL, 200);
    cJSON *s = cJSON_GetObjectItem(j, "series");
    assert_string_equal(cJSON_GetObjectItem(s, "state")->valuestring, "receiving");
    assert_int_equal((int)cJSON_GetObjectItem(s, "instances")->valuedouble, 3);
    cJSON_Delete(j);
    cJSON_Delete(get_json("/api/v1/series/9.9.9", NULL, 404));
    cJSON_Delete(get_json("/api/v1/series/not-a-uid", NULL, 404));
    resp r = http("GET", "/series", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, "<script>alert"));
    assert_non_null(strstr(r.body, "Doe^&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_non_null(strstr(r.body, "Chest &lt;b&gt;thin&lt;/b&gt;"));
    resp_free(&r);
    r = http("GET", "/series/" SERIES_A, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "Completion evidence"));
    assert_null(strstr(r.body, "<script>alert"));
    resp_free(&r);
    static const char *const pages[] = {"/jobs", "/outbox", "/peers", "/config", "/login"};
    for (size_t i = 0; i < sizeof pages / sizeof *pages; i++) {
        r = http("GET", pages[i], NULL, NULL);
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "</html>"));
        resp_free(&r);
    }
    /* the configuration never shows the token file's path */
    r = http("GET", "/api/v1/config", NULL, NULL);
    assert_null(strstr(r.body, tokpath));
    assert_non_null(strstr(r.body, "\"token_file\":\"(redacted)\""));
    resp_free(&r);
}

static void test_refused_paths(void **state)
{
    (void)state;
    resp r = http("GET", "/static/console.css", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "text/css"));
    resp_free(&r);
    static const char *const bad[] = {"/static/../../../etc/passwd",
                                      "/static/%2e%2e/%2e%2e/etc/passwd",
                                      "/outputs/..%2f..%2fetc%2fpasswd",
                                      "/static//etc/passwd",
                                      "/series/..",
                                      "/static/console.css%00.png"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r = http("GET", bad[i], NULL, NULL);
        assert_true(r.status == 400 || r.status == 404);
        assert_null(strstr(r.body, "root:"));
        resp_free(&r);
    }
    r = http("GET", "/outputs/12345", NULL, NULL);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    /* DNS rebinding: a foreign Host on a loopback bind */
    char req[256];
    int n = snprintf(req, sizeof req,
                     "GET /api/v1/status HTTP/1.1\r\nHost: evil.example:%d\r\n"
                     "Connection: close\r\n\r\n",
                     port);
    r = raw(req, (size_t)n);
    assert_int_equal(r.status, 403);
    resp_free(&r);
    r = http("DELETE", "/api/v1/status", NULL, NULL);
    assert_int_equal(r.status, 405);
    resp_free(&r);
}

static void test_oversized(void **state)
{
    (void)state;
    /* a 100 KiB URL, a 100 KiB header, a 64 KiB body */
    size_t big = 100 * 1024;
    char *req = malloc(big + 512);
    int n = snprintf(req, 512, "GET /series?q=");
    memset(req + n, 'a', big);
    n += (int)big;
    n += snprintf(req + n, 512, " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    resp r = raw(req, (size_t)n);
    assert_true(r.status == 414 || r.status == 431 || r.status == 413);
    resp_free(&r);
    n = snprintf(req, 512, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ");
    memset(req + n, 'b', big);
    n += (int)big;
    n += snprintf(req + n, 512, "\r\nConnection: close\r\n\r\n");
    r = raw(req, (size_t)n);
    assert_true(r.status == 431 || r.status == 413 || r.status == 414);
    resp_free(&r);
    size_t body = 64 * 1024;
    n = snprintf(req, 512,
                 "POST /api/v1/series/" SERIES_B "/trigger HTTP/1.1\r\nHost: "
                 "127.0.0.1\r\nAuthorization: Bearer " TOKEN "\r\nContent-Type: "
                 "application/x-www-form-urlencoded\r\nContent-Length: %zu\r\n"
                 "Connection: close\r\n\r\n",
                 body);
    memset(req + n, 'c', body);
    r = raw(req, (size_t)n + body);
    assert_int_equal(r.status, 413);
    resp_free(&r);
    free(req);
    assert_string_equal(state_of(SERIES_B), "receiving");
}

static void test_actions_need_token_and_csrf(void **state)
{
    (void)state;
    const char *path = "/api/v1/series/" SERIES_A "/trigger";
    /* no token */
    resp r = http("POST", path, "Content-Type: application/x-www-form-urlencoded\r\n", "csrf=x");
    assert_int_equal(r.status, 403);
    resp_free(&r);
    /* wrong token */
    r = http("POST", path, "Authorization: Bearer wrong-token-0123456789\r\n", "");
    assert_int_equal(r.status, 403);
    resp_free(&r);
    /* right token, no CSRF token, then a wrong one */
    r = http("POST", path, "Authorization: Bearer " TOKEN "\r\n", "");
    assert_int_equal(r.status, 403);
    resp_free(&r);
    r = http("POST", path, "Authorization: Bearer " TOKEN "\r\nX-CSRF-Token: 0000\r\n", "");
    assert_int_equal(r.status, 403);
    resp_free(&r);
    assert_string_equal(state_of(SERIES_A), "receiving");
    assert_int_equal(count_events("result=refused"), 2);
    /* the CSRF token comes from the session endpoint */
    cJSON *s = get_json("/api/v1/session", "Authorization: Bearer " TOKEN "\r\n", 200);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(s, "authenticated")));
    char hdr[256];
    snprintf(hdr, sizeof hdr, "Authorization: Bearer " TOKEN "\r\nX-CSRF-Token: %s\r\n",
             cJSON_GetObjectItem(s, "csrf")->valuestring);
    cJSON_Delete(s);
    /* a cross-site origin is refused even with both tokens */
    char cross[400];
    snprintf(cross, sizeof cross, "%sOrigin: http://evil.example\r\n", hdr);
    r = http("POST", path, cross, "");
    assert_int_equal(r.status, 403);
    resp_free(&r);
    assert_string_equal(state_of(SERIES_A), "receiving");
    double before = rp_metrics_get(RP_M_SERIES_COMPLETED, "operator");
    r = http("POST", path, hdr, "");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"ok\":true"));
    resp_free(&r);
    assert_string_equal(state_of(SERIES_A), "complete");
    assert_true(rp_metrics_get(RP_M_SERIES_COMPLETED, "operator") == before + 1);
    assert_int_equal(count_events("result=ok"), 1);
    /* again: nothing to trigger */
    r = http("POST", path, hdr, "");
    assert_int_equal(r.status, 409);
    resp_free(&r);
    /* the job can be re-run (same job row, queued again) */
    cJSON *jobs = get_json("/api/v1/jobs?series=" SERIES_A, NULL, 200);
    cJSON *job = cJSON_GetArrayItem(cJSON_GetObjectItem(jobs, "jobs"), 0);
    assert_non_null(job);
    char jp[64];
    snprintf(jp, sizeof jp, "/api/v1/jobs/%.0f/retry", cJSON_GetObjectItem(job, "id")->valuedouble);
    cJSON_Delete(jobs);
    r = http("POST", jp, hdr, "");
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* a dead outbox entry that does not exist: 409, audited */
    r = http("POST", "/api/v1/outbox/99/retry", hdr, "");
    assert_int_equal(r.status, 409);
    resp_free(&r);
}

static void test_login_session(void **state)
{
    (void)state;
    resp r = http("POST", "/login", "Content-Type: application/x-www-form-urlencoded\r\n",
                  "token=nope&next=%2Fseries");
    assert_int_equal(r.status, 403);
    resp_free(&r);
    r = http("POST", "/login", "Content-Type: application/x-www-form-urlencoded\r\n",
             "token=" TOKEN "&next=%2Fseries");
    assert_int_equal(r.status, 303);
    assert_non_null(strstr(r.head, "Location: /series"));
    char *c = strstr(r.head, "Set-Cookie: rp_session=");
    assert_non_null(c);
    assert_non_null(strstr(c, "HttpOnly"));
    assert_non_null(strstr(c, "SameSite=Strict"));
    char cookie[256];
    sscanf(c + 12, "%255[^;]", cookie);
    resp_free(&r);
    char hdr[512];
    snprintf(hdr, sizeof hdr, "Cookie: %s\r\n", cookie);
    cJSON *s = get_json("/api/v1/session", hdr, 200);
    assert_string_equal(cJSON_GetObjectItem(s, "auth")->valuestring, "session");
    /* a browser form: cookie + csrf field, redirected back with a message */
    char body[256];
    snprintf(body, sizeof body, "csrf=%s&next=%%2Fseries%%2F" SERIES_B,
             cJSON_GetObjectItem(s, "csrf")->valuestring);
    cJSON_Delete(s);
    char fh[600];
    snprintf(fh, sizeof fh,
             "%sContent-Type: application/x-www-form-urlencoded\r\nOrigin: "
             "http://127.0.0.1:%d\r\n",
             hdr, port);
    r = http("POST", "/api/v1/series/" SERIES_B "/trigger", fh, body);
    assert_int_equal(r.status, 303);
    assert_non_null(strstr(r.head, "Location: /series/" SERIES_B "?msg="));
    resp_free(&r);
    assert_string_equal(state_of(SERIES_B), "complete");
    /* a tampered cookie is nobody */
    cookie[strlen(cookie) - 1] ^= 1;
    snprintf(hdr, sizeof hdr, "Cookie: %s\r\n", cookie);
    s = get_json("/api/v1/session", hdr, 200);
    assert_false(cJSON_IsTrue(cJSON_GetObjectItem(s, "authenticated")));
    cJSON_Delete(s);
}

/* A job with derived DICOM queued for a destination: the series page and API show the
 * delivery per destination, and a dead row can be retried. */
static void test_delivery(void **state)
{
    (void)state;
    rp_db *db;
    assert_int_equal(rp_db_open(dbpath, &db), 0);
    /* run the job of one series as a worker would: claim, outputs, done */
    rp_db_job claimed_job;
    assert_int_equal(rp_db_job_claim(db, rp_now_s() + 1, 0, &claimed_job), 0);
    long long job = claimed_job.id;
    char uid[RP_UID_MAX + 1];
    snprintf(uid, sizeof uid, "%s", claimed_job.series_uid);
    char dir[256], f1[300], f2[300];
    snprintf(dir, sizeof dir, "%s/outputs/%s/v1", tmpdir, uid);
    snprintf(f1, sizeof f1, "%s/dicom/1.dcm", dir);
    snprintf(f2, sizeof f2, "%s/dicom/2.dcm", dir);
    assert_int_equal(rp_db_job_set_running(db, job, 0, dir), 0);
    assert_int_equal(rp_db_output_add(db, job, "dicom", f1, "00"), 0);
    assert_int_equal(rp_db_output_add(db, job, "dicom", f2, "11"), 0);
    assert_int_equal(rp_db_job_finish(db, job, 1, 0, "exit 0", 0, 0, 0, NULL), 0);
    long long o1 = 0, o2 = 0;
    assert_int_equal(rp_db_outbox_add(db, "9.1", f1, "PACS", &o1), 0);
    assert_int_equal(rp_db_outbox_add(db, "9.2", f2, "PACS", &o2), 0);
    /* make the second one dead (claim, then a permanent failure) */
    rp_db_outbox_entry *claimed = NULL;
    size_t nc = 0;
    assert_int_equal(rp_db_outbox_claim(db, "PACS", rp_now_s() + 1, 10, &claimed, &nc), 0);
    free(claimed);
    assert_int_equal(rp_db_outbox_finish(db, o1, 1, 0, NULL, 0, 0, 0), 0);
    assert_int_equal(rp_db_outbox_finish(db, o2, 0, 0xA900, "SOP class refused", 1, 0, 0), 0);
    rp_db_close(db);

    char path[128];
    snprintf(path, sizeof path, "/api/v1/series/%s", uid);
    cJSON *j = get_json(path, NULL, 200);
    cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "versions"), 0);
    cJSON *jb = cJSON_GetArrayItem(cJSON_GetObjectItem(v, "jobs"), 0);
    cJSON *der = cJSON_GetObjectItem(jb, "derived");
    assert_int_equal((int)cJSON_GetObjectItem(der, "dicom_instances")->valuedouble, 2);
    cJSON *del = cJSON_GetObjectItem(der, "delivery");
    assert_int_equal(cJSON_GetArraySize(del), 2);
    int done = 0, dead = 0;
    cJSON *d;
    cJSON_ArrayForEach(d, del)
    {
        assert_string_equal(cJSON_GetObjectItem(d, "destination")->valuestring, "PACS");
        const char *st = cJSON_GetObjectItem(d, "state")->valuestring;
        done += strcmp(st, "done") == 0;
        if (strcmp(st, "dead") == 0) {
            dead++;
            assert_string_equal(cJSON_GetObjectItem(d, "last_reason")->valuestring,
                                "SOP class refused");
        }
    }
    assert_int_equal(done + dead, 2);
    cJSON_Delete(j);
    resp r = http("GET", path + 7, NULL, NULL); /* the page: /series/<uid> */
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "Derived series"));
    assert_non_null(strstr(r.body, "SOP class refused"));
    resp_free(&r);
    r = http("GET", "/outbox?state=dead", NULL, NULL);
    assert_non_null(strstr(r.body, "SOP class refused"));
    resp_free(&r);
    /* retry the dead row with token + CSRF: pending again */
    cJSON *s = get_json("/api/v1/session", "Authorization: Bearer " TOKEN "\r\n", 200);
    char hdr[256];
    snprintf(hdr, sizeof hdr, "Authorization: Bearer " TOKEN "\r\nX-CSRF-Token: %s\r\n",
             cJSON_GetObjectItem(s, "csrf")->valuestring);
    cJSON_Delete(s);
    snprintf(path, sizeof path, "/api/v1/outbox/%lld/retry", o2);
    r = http("POST", path, hdr, "");
    assert_int_equal(r.status, 200);
    resp_free(&r);
    j = get_json("/api/v1/outbox?state=pending", NULL, 200);
    assert_int_equal((int)cJSON_GetObjectItem(j, "total")->valuedouble, 1);
    cJSON_Delete(j);
}

static void test_metrics(void **state)
{
    (void)state;
    resp r = http("GET", "/metrics", NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "text/plain; version=0.0.4"));
    assert_non_null(strstr(r.body, "# TYPE radprep_jobs gauge"));
    assert_non_null(strstr(r.body, "radprep_jobs{state=\"queued\",rule=\"ct_default\"} 1"));
    assert_non_null(strstr(r.body, "radprep_jobs{state=\"done\",rule=\"ct_default\"} 1"));
    assert_non_null(
        strstr(r.body, "radprep_outbox_entries{destination=\"PACS\",state=\"done\"} 1"));
    assert_non_null(
        strstr(r.body, "radprep_outbox_entries{destination=\"PACS\",state=\"pending\"} 1"));
    assert_non_null(strstr(r.body, "radprep_series{state=\"complete\"} 1"));
    assert_non_null(strstr(r.body, "radprep_disk_free_bytes "));
    assert_non_null(strstr(r.body, "radprep_index_size_bytes "));
    resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_matches_db),
        cmocka_unit_test(test_series_pages_escape),
        cmocka_unit_test(test_refused_paths),
        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_actions_need_token_and_csrf),
        cmocka_unit_test(test_login_session),
        cmocka_unit_test(test_delivery),
        cmocka_unit_test(test_metrics),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
