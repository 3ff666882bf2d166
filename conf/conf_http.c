/*
 * conf_http — the [http] section: the web console and /metrics.
 *
 * Safe by default: the console listens on loopback only. Anything else exposes the node's
 * index (patient names) and its actions to a network, so a non-loopback bind is refused
 * unless the console speaks TLS with the node's certificate AND authenticates its callers,
 * by client certificate or by a bearer token kept in a file nobody else can read.
 */
#include "conf/conf.h"
#include "conf/conf_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"

void rp_conf_http_defaults(rp_conf *c)
{
    c->http_port = 8480;
    rp_strlcpy(c->http_bind, "127.0.0.1", sizeof c->http_bind);
    c->http_tls = 0;
    c->http_token_file[0] = '\0';
    c->http_client_cert = 0;
    c->http_metrics_open = 0;
    c->http_max_connections = 32;
    c->http_threads = 2;
}

int rp_conf_http_is_loopback(const char *bind)
{
    if (!bind || !*bind)
        return 0;
    if (strcasecmp(bind, "localhost") == 0)
        return 1;
    struct in_addr a4;
    if (inet_pton(AF_INET, bind, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, bind, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return 0;
}

/* A file that exists, is regular, readable, and (private) not open to group or others. */
static int check_file(const char *what, const char *path, int must_be_private, char *err,
                      size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return rp_conf_errf(err, errlen, "%s %s: %s", what, path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return rp_conf_errf(err, errlen, "%s %s: not a regular file", what, path);
    if (access(path, R_OK) != 0)
        return rp_conf_errf(err, errlen, "%s %s: not readable: %s", what, path, strerror(errno));
    if (must_be_private && (st.st_mode & 077))
        return rp_conf_errf(err, errlen,
                            "%s %s is open to group or others (mode %04o): refusing to use it; "
                            "run chmod 600 on it",
                            what, path, (unsigned)(st.st_mode & 07777));
    return 0;
}

/* The token file: private, and one line of at least 16 characters (a guessable token would
 * make the authentication decorative). */
static int check_token(const char *path, char *err, size_t errlen)
{
    if (check_file("[http] token_file", path, 1, err, errlen))
        return RP_ECONF;
    FILE *fp = fopen(path, "r");
    char line[1024] = "";
    if (!fp)
        return rp_conf_errf(err, errlen, "[http] token_file %s: %s", path, strerror(errno));
    if (!fgets(line, sizeof line, fp))
        line[0] = '\0';
    fclose(fp);
    size_t n = strcspn(line, "\r\n");
    const char *s = line;
    while (*s == ' ' || *s == '\t')
        s++, n--;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    memset(line, 0, sizeof line);
    if (n < 16)
        return rp_conf_errf(err, errlen,
                            "[http] token_file %s: the token must be at least 16 characters on "
                            "its first line (e.g. openssl rand -hex 32 > FILE)",
                            path);
    return 0;
}

int rp_conf_http_validate(const rp_conf *c, char *err, size_t errlen)
{
    if (c->http_port == 0)
        return 0;
    if (c->http_port < 0 || c->http_port > 65535)
        return rp_conf_errf(err, errlen, "[http] port %d out of range 0..65535", c->http_port);
    if (c->http_port == c->port || c->http_port == c->tls_port)
        return rp_conf_errf(err, errlen, "[http] port %d is already the DICOM port", c->http_port);
    if (!c->http_bind[0])
        return rp_conf_errf(err, errlen, "[http] bind is empty (127.0.0.1 for loopback only)");
    if (c->http_token_file[0] && check_token(c->http_token_file, err, errlen))
        return RP_ECONF;
    if (c->http_tls) {
        if (!c->tls_cert[0] || !c->tls_key[0])
            return rp_conf_errf(err, errlen,
                                "[http] tls = yes serves the node's certificate: set [tls] cert "
                                "and key");
        if (check_file("[tls] cert", c->tls_cert, 0, err, errlen) ||
            check_file("[tls] key", c->tls_key, 1, err, errlen))
            return RP_ECONF;
    }
    if (c->http_client_cert) {
        if (!c->http_tls)
            return rp_conf_errf(err, errlen, "[http] client_cert = yes needs tls = yes");
        if (!c->tls_ca_file[0])
            return rp_conf_errf(err, errlen,
                                "[http] client_cert = yes needs [tls] ca_file to verify client "
                                "certificates");
        if (check_file("[tls] ca_file", c->tls_ca_file, 0, err, errlen))
            return RP_ECONF;
    }
    if (!rp_conf_http_is_loopback(c->http_bind)) {
        if (!c->http_tls)
            return rp_conf_errf(err, errlen,
                                "[http] bind %s is not loopback: the console would be open to "
                                "the network without TLS; set tls = yes (with [tls] cert and key) "
                                "and client_cert = yes or token_file, or bind 127.0.0.1",
                                c->http_bind);
        if (!c->http_client_cert && !c->http_token_file[0])
            return rp_conf_errf(err, errlen,
                                "[http] bind %s is not loopback: the console needs "
                                "authentication; set client_cert = yes or token_file (a file "
                                "with mode 0600 holding the bearer token)",
                                c->http_bind);
    }
    return 0;
}
