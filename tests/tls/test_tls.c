/* Unit tests for scp/tls.cc: building the dcmtls layer from [tls] (good material, unknown
 * profile, key of another certificate, missing files), the certificate expiry helper, and the
 * server handshake rp_tls_accept() against a real OpenSSL client over a socketpair: a client
 * with a certificate from the CA is accepted with the facts the audit needs (protocol,
 * cipher, subject, SHA-256), one without a certificate is refused with the reason.
 * Certificates are made with `openssl` in a temporary directory. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"
#include "conf/conf.h"
#include "tls/tls.h"

static char g_tmp[256];

static void path(char *out, size_t sz, const char *name)
{
    snprintf(out, sz, "%s/%s", g_tmp, name);
}

static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/rp_tls_XXXXXX");
    if (!mkdtemp(g_tmp))
        return -1;
    /* CA, server (3 days), client, and an unrelated key */
    int rc = sh("cd %s && "
                "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 "
                "-subj '/CN=test ca' -addext basicConstraints=critical,CA:TRUE 2>/dev/null && "
                "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
                "-subj '/CN=localhost' 2>/dev/null && "
                "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
                "-days 3 -out server.crt 2>/dev/null && "
                "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr "
                "-subj '/O=rp/CN=client one' 2>/dev/null && "
                "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
                "-days 30 -out client.crt 2>/dev/null && "
                "openssl genpkey -algorithm RSA -out other.key 2>/dev/null && "
                "chmod 600 *.key",
                g_tmp);
    return rc == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sh("rm -rf %s", g_tmp);
    return 0;
}

static void tls_conf(rp_conf *c)
{
    rp_conf_defaults(c);
    c->tls_port = 2762;
    path(c->tls_cert, sizeof c->tls_cert, "server.crt");
    path(c->tls_key, sizeof c->tls_key, "server.key");
    path(c->tls_ca_file, sizeof c->tls_ca_file, "ca.crt");
}

static void test_new_server_and_client(void **state)
{
    (void)state;
    rp_conf c;
    tls_conf(&c);
    char err[512] = "";
    rp_tls *s = NULL, *cl = NULL;
    assert_int_equal(rp_tls_new(&c, RP_TLS_SERVER, &s, err, sizeof err), 0);
    assert_non_null(s);
    assert_non_null(rp_tls_layer(s));
    assert_int_equal(rp_tls_new(&c, RP_TLS_CLIENT, &cl, err, sizeof err), 0);
    rp_tls_free(s);
    rp_tls_free(cl);
    assert_string_equal(rp_tls_profile_describe("bcp195-nd"), "bcp195-nd(TLS1.2+,no-fallback)");
    assert_null(rp_tls_profile_describe("tls1.0"));
    rp_conf_free(&c);
}

static void test_bad_material(void **state)
{
    (void)state;
    rp_conf c;
    char err[512];
    rp_tls *t = NULL;

    tls_conf(&c);
    rp_strlcpy(c.tls_profile, "bogus", sizeof c.tls_profile);
    assert_int_equal(rp_tls_new(&c, RP_TLS_SERVER, &t, err, sizeof err), RP_ECONF);
    assert_null(t);
    assert_non_null(strstr(err, "profile bogus"));
    rp_conf_free(&c);

    tls_conf(&c);
    path(c.tls_key, sizeof c.tls_key, "other.key");
    assert_int_equal(rp_tls_new(&c, RP_TLS_SERVER, &t, err, sizeof err), RP_ECONF);
    assert_non_null(strstr(err, "other.key"));
    rp_conf_free(&c);

    tls_conf(&c);
    path(c.tls_cert, sizeof c.tls_cert, "missing.crt");
    assert_int_equal(rp_tls_new(&c, RP_TLS_SERVER, &t, err, sizeof err), RP_ECONF);
    assert_non_null(strstr(err, "missing.crt"));
    rp_conf_free(&c);
}

static void test_passphrase_file(void **state)
{
    (void)state;
    assert_int_equal(sh("cd %s && openssl pkey -in server.key -aes256 -passout pass:s3cret "
                        "-out enc.key && printf 's3cret\\n' > pass.txt && printf 'wrong\\n' > "
                        "bad.txt && chmod 600 enc.key pass.txt bad.txt",
                        g_tmp),
                     0);
    rp_conf c;
    char err[512];
    rp_tls *t = NULL;
    tls_conf(&c);
    path(c.tls_key, sizeof c.tls_key, "enc.key");
    path(c.tls_key_passphrase_file, sizeof c.tls_key_passphrase_file, "pass.txt");
    assert_int_equal(rp_tls_new(&c, RP_TLS_SERVER, &t, err, sizeof err), 0);
    rp_tls_free(t);
    t = NULL;
    path(c.tls_key_passphrase_file, sizeof c.tls_key_passphrase_file, "bad.txt");
    assert_int_equal(rp_tls_new(&c, RP_TLS_SERVER, &t, err, sizeof err), RP_ECONF);
    assert_non_null(strstr(err, "enc.key"));
    /* no passphrase file: refused at once, never a console prompt */
    c.tls_key_passphrase_file[0] = '\0';
    assert_int_equal(rp_tls_new(&c, RP_TLS_SERVER, &t, err, sizeof err), RP_ECONF);
    rp_conf_free(&c);
}

static void test_days_left(void **state)
{
    (void)state;
    char p[512];
    int days = -100;
    path(p, sizeof p, "server.crt");
    assert_int_equal(rp_tls_cert_days_left(p, &days), 0);
    assert_true(days >= 2 && days <= 3);
    path(p, sizeof p, "server.key");
    assert_int_equal(rp_tls_cert_days_left(p, &days), RP_EPARSE);
    assert_int_equal(rp_tls_cert_days_left("/nonexistent.crt", &days), RP_EPARSE);
}

/* ---- a real handshake over a socketpair ----------------------------------------------- */

typedef struct {
    int fd;
    int with_cert;
    int ok; /* client saw a completed handshake */
} client_arg;

static void *client_main(void *p)
{
    client_arg *a = p;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    char f[512];
    path(f, sizeof f, "ca.crt");
    SSL_CTX_load_verify_locations(ctx, f, NULL);
    if (a->with_cert) {
        path(f, sizeof f, "client.crt");
        SSL_CTX_use_certificate_file(ctx, f, SSL_FILETYPE_PEM);
        path(f, sizeof f, "client.key");
        SSL_CTX_use_PrivateKey_file(ctx, f, SSL_FILETYPE_PEM);
    }
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, a->fd);
    a->ok = SSL_connect(ssl) == 1;
    if (a->ok) {
        /* TLS 1.3: the server's verdict on our certificate arrives with the first read */
        const char rq = 0x01;
        SSL_write(ssl, &rq, 1);
        char b;
        SSL_read(ssl, &b, 1);
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    close(a->fd);
    return NULL;
}

static int handshake(int with_cert, rp_tls_peer *peer, char *why, size_t whysz,
                     unsigned char *first)
{
    rp_conf c;
    tls_conf(&c);
    char err[512];
    rp_tls *t = NULL;
    assert_int_equal(rp_tls_new(&c, RP_TLS_SERVER, &t, err, sizeof err), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    client_arg a = {sv[1], with_cert, 0};
    pthread_t th;
    pthread_create(&th, NULL, client_main, &a);
    rp_tls_conn *conn = NULL;
    int rc = rp_tls_accept(t, sv[0], 10, &conn, peer, why, whysz);
    if (rc == 0) {
        int w = 0;
        for (int i = 0; i < 20 && w == 0; i++)
            w = rp_tls_wait_data(conn, 500, first);
        assert_int_equal(w, 1);
        rp_tls_conn_free(conn); /* closes sv[0] */
    } else {
        close(sv[0]);
    }
    pthread_join(th, NULL);
    rp_tls_free(t);
    rp_conf_free(&c);
    return rc;
}

static void test_accept_trusted_client(void **state)
{
    (void)state;
    rp_tls_peer peer;
    char why[256] = "";
    unsigned char first = 0;
    assert_int_equal(handshake(1, &peer, why, sizeof why, &first), 0);
    assert_int_equal(first, 0x01);
    assert_true(!strcmp(peer.protocol, "TLSv1.3") || !strcmp(peer.protocol, "TLSv1.2"));
    assert_true(peer.cipher[0] != '\0');
    assert_string_equal(peer.subject, "CN=client one,O=rp");
    assert_string_equal(peer.issuer, "CN=test ca");
    assert_int_equal(strlen(peer.sha256), 64);
    /* the fingerprint is the one openssl computes */
    char cmd[1024], line[256] = "";
    snprintf(cmd, sizeof cmd,
             "openssl x509 -in %s/client.crt -noout -fingerprint -sha256 | cut -d= -f2 | "
             "tr -d ':' | tr A-F a-f",
             g_tmp);
    FILE *fp = popen(cmd, "r");
    assert_non_null(fp);
    assert_non_null(fgets(line, sizeof line, fp));
    pclose(fp);
    line[strcspn(line, "\n")] = '\0';
    assert_string_equal(peer.sha256, line);
    assert_true(peer.days_left >= 29);
}

static void test_refuse_client_without_cert(void **state)
{
    (void)state;
    rp_tls_peer peer;
    char why[256] = "";
    unsigned char first = 0;
    assert_int_equal(handshake(0, &peer, why, sizeof why, &first), RP_EREFUSED);
    assert_non_null(strstr(why, "did not return a certificate"));
}

int main(void)
{
    /* As radprepd does: a peer that drops the connection must give EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_server_and_client),
        cmocka_unit_test(test_bad_material),
        cmocka_unit_test(test_passphrase_file),
        cmocka_unit_test(test_days_left),
        cmocka_unit_test(test_accept_trusted_client),
        cmocka_unit_test(test_refuse_client_without_cert),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
