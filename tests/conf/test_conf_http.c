/* Unit tests for conf/conf_http.c: the [http] section's defaults, keys, and the rules that
 * keep the console safe (loopback by default; elsewhere only with TLS and authentication). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "conf/conf.h"

static char tmpdir[64];
static char paths[32][256]; /* tests keep several file paths at once */
static int n_paths;

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rp_confhttp_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static const char *write_file(const char *name, const char *text, int mode)
{
    char *p = paths[n_paths++ % 32];
    snprintf(p, 256, "%s/%s", tmpdir, name);
    FILE *fp = fopen(p, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    chmod(p, (mode_t)mode);
    return p;
}

/* Load `text` over the defaults (data_dir set to tmpdir) and validate; returns rc. */
static int load_validate(rp_conf *c, const char *text, char *err, size_t errlen)
{
    assert_int_equal(rp_conf_defaults(c), 0);
    char full[4096];
    snprintf(full, sizeof full, "[node]\ndata_dir = %s\n%s", tmpdir, text);
    int rc = rp_conf_load(c, write_file("t.ini", full, 0644), err, errlen);
    if (rc)
        return rc;
    return rp_conf_validate(c, err, errlen);
}

static void test_defaults(void **state)
{
    (void)state;
    rp_conf c;
    assert_int_equal(rp_conf_defaults(&c), 0);
    assert_int_equal(c.http_port, 8480);
    assert_string_equal(c.http_bind, "127.0.0.1");
    assert_int_equal(c.http_tls, 0);
    assert_int_equal(c.http_metrics_open, 0);
    assert_string_equal(c.http_token_file, "");
    assert_true(c.http_max_connections > 0 && c.http_threads > 0);
    rp_conf_free(&c);
}

static void test_loopback(void **state)
{
    (void)state;
    assert_true(rp_conf_http_is_loopback("127.0.0.1"));
    assert_true(rp_conf_http_is_loopback("127.1.2.3"));
    assert_true(rp_conf_http_is_loopback("::1"));
    assert_true(rp_conf_http_is_loopback("localhost"));
    assert_false(rp_conf_http_is_loopback("0.0.0.0"));
    assert_false(rp_conf_http_is_loopback("::"));
    assert_false(rp_conf_http_is_loopback("10.0.0.1"));
    assert_false(rp_conf_http_is_loopback("example.org"));
    assert_false(rp_conf_http_is_loopback(""));
}

static void test_keys(void **state)
{
    (void)state;
    rp_conf c;
    char err[1024] = "";
    const char *tok = write_file("token", "0123456789abcdef0123\n", 0600);
    char text[1024];
    snprintf(text, sizeof text,
             "[http]\nport = 9000\nbind = ::1\ntoken_file = %s\nmetrics_open = yes\n"
             "max_connections = 8\nthreads = 3\n",
             tok);
    assert_int_equal(load_validate(&c, text, err, sizeof err), 0);
    assert_int_equal(c.http_port, 9000);
    assert_string_equal(c.http_bind, "::1");
    assert_string_equal(c.http_token_file, tok);
    assert_int_equal(c.http_metrics_open, 1);
    assert_int_equal(c.http_max_connections, 8);
    assert_int_equal(c.http_threads, 3);
    rp_conf_free(&c);
    /* port 0 turns the console off; nothing else is checked then */
    assert_int_equal(load_validate(&c, "[http]\nport = 0\nbind = 0.0.0.0\n", err, sizeof err), 0);
    rp_conf_free(&c);
    /* unknown key, duplicate key, bad value */
    assert_int_equal(load_validate(&c, "[http]\nfoo = 1\n", err, sizeof err), RP_ECONF);
    assert_non_null(strstr(err, ":4: unknown key 'foo' in [http]"));
    rp_conf_free(&c);
    assert_int_equal(load_validate(&c, "[http]\nport = 1\nport = 2\n", err, sizeof err), RP_ECONF);
    assert_non_null(strstr(err, "duplicate key 'port'"));
    rp_conf_free(&c);
    assert_int_equal(load_validate(&c, "[http]\nthreads = 99\n", err, sizeof err), RP_ECONF);
    assert_non_null(strstr(err, "threads: 99 is out of range"));
    rp_conf_free(&c);
    assert_int_equal(load_validate(&c, "[http]\nport = 11112\n", err, sizeof err), RP_ECONF);
    assert_non_null(strstr(err, "already the DICOM port"));
    rp_conf_free(&c);
}

static void test_remote_needs_tls_and_auth(void **state)
{
    (void)state;
    rp_conf c;
    char err[1024] = "";
    /* no TLS */
    assert_int_equal(load_validate(&c, "[http]\nbind = 0.0.0.0\n", err, sizeof err), RP_ECONF);
    assert_non_null(strstr(err, "[http] bind 0.0.0.0 is not loopback"));
    assert_non_null(strstr(err, "tls = yes"));
    rp_conf_free(&c);
    /* TLS without the node's certificate */
    assert_int_equal(load_validate(&c, "[http]\nbind = 0.0.0.0\ntls = yes\n", err, sizeof err),
                     RP_ECONF);
    assert_non_null(strstr(err, "[tls] cert"));
    rp_conf_free(&c);
    /* TLS with a certificate but no authentication */
    const char *cert = write_file("cert.pem", "x", 0644);
    const char *key = write_file("key.pem", "x", 0600);
    char text[2048];
    snprintf(text, sizeof text, "[tls]\ncert = %s\nkey = %s\n[http]\nbind = 0.0.0.0\ntls = yes\n",
             cert, key);
    assert_int_equal(load_validate(&c, text, err, sizeof err), RP_ECONF);
    assert_non_null(strstr(err, "needs authentication"));
    rp_conf_free(&c);
    /* a token file open to others is refused */
    const char *tok = write_file("token_open", "0123456789abcdef0123\n", 0644);
    snprintf(text, sizeof text,
             "[tls]\ncert = %s\nkey = %s\n[http]\nbind = 0.0.0.0\ntls = yes\ntoken_file = %s\n",
             cert, key, tok);
    assert_int_equal(load_validate(&c, text, err, sizeof err), RP_ECONF);
    assert_non_null(strstr(err, "chmod 600"));
    rp_conf_free(&c);
    /* ... and accepted with mode 0600 */
    chmod(tok, 0600);
    assert_int_equal(load_validate(&c, text, err, sizeof err), 0);
    rp_conf_free(&c);
    /* client certificates need a CA to check them against */
    snprintf(text, sizeof text,
             "[tls]\ncert = %s\nkey = %s\n[http]\nbind = 0.0.0.0\ntls = yes\nclient_cert = yes\n",
             cert, key);
    assert_int_equal(load_validate(&c, text, err, sizeof err), RP_ECONF);
    assert_non_null(strstr(err, "ca_file"));
    rp_conf_free(&c);
    /* a short token is refused */
    const char *shorttok = write_file("token_short", "abc\n", 0600);
    snprintf(text, sizeof text, "[http]\ntoken_file = %s\n", shorttok);
    assert_int_equal(load_validate(&c, text, err, sizeof err), RP_ECONF);
    assert_non_null(strstr(err, "at least 16 characters"));
    rp_conf_free(&c);
    /* a missing token file is an error even on loopback */
    assert_int_equal(load_validate(&c, "[http]\ntoken_file = /nonexistent/tok\n", err, sizeof err),
                     RP_ECONF);
    assert_non_null(strstr(err, "[http] token_file /nonexistent/tok"));
    rp_conf_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_loopback),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_remote_needs_tls_and_auth),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
