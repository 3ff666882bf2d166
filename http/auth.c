/*
 * http/auth — who is asking, and may they act.
 *
 * Callers authenticate with the bearer token ([http] token_file) in an Authorization
 * header, with a session cookie that POST /login gives for that same token (browsers), or
 * with a client certificate that verifies against [tls] ca_file (client_cert = yes).
 * Sessions are stateless: "<expiry>.<nonce>.<HMAC(secret, expiry.nonce)>", the secret being
 * 32 random bytes drawn at each start (a restart logs everybody out, nothing to store).
 * The CSRF token of a caller is HMAC(secret, "csrf|" + who the caller is): a page embeds it in
 * its forms, an API client reads it from GET /api/v1/session; a forged cross-site form
 * cannot know it. Comparisons of secrets are constant-time.
 */
#include "http/http_internal.h"

#include <ctype.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"

#define MOD "http"
#define SESSION_S (12 * 3600)
#define TOKEN_MIN 16

static void hex(const unsigned char *in, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* hex(HMAC-SHA256(secret, msg)) into out (65 bytes). */
static void mac_hex(const rp_http *h, const char *msg, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    HMAC(EVP_sha256(), h->secret, sizeof h->secret, (const unsigned char *)msg, strlen(msg), md,
         &mdlen);
    hex(md, mdlen > 32 ? 32 : mdlen, out);
}

static int equal_secret(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    return la == lb && la > 0 && CRYPTO_memcmp(a, b, la) == 0;
}

/* ---- start ----------------------------------------------------------------------------------- */

static int read_pem(const char *path, char **out, char *err, size_t errsz, const char *what)
{
    size_t len = 0;
    if (rp_read_file(path, out, &len) != 0) {
        snprintf(err, errsz, "%s %s: cannot read", what, path);
        return RP_ECONF;
    }
    return 0;
}

int rp_http_auth_init(rp_http *h, char *err, size_t errsz)
{
    const rp_conf *c = h->conf;
    if (RAND_bytes(h->secret, sizeof h->secret) != 1) {
        snprintf(err, errsz, "no randomness for session keys");
        return RP_EIO;
    }
    if (c->http_token_file[0]) {
        char *t = NULL;
        size_t len = 0;
        if (rp_read_file(c->http_token_file, &t, &len) != 0) {
            snprintf(err, errsz, "[http] token_file %s: cannot read", c->http_token_file);
            return RP_ECONF;
        }
        char *s = t;
        while (*s && isspace((unsigned char)*s))
            s++;
        size_t n = strcspn(s, "\r\n");
        while (n > 0 && isspace((unsigned char)s[n - 1]))
            n--;
        s[n] = '\0';
        int ok = n >= TOKEN_MIN && n < sizeof h->token;
        if (ok)
            memcpy(h->token, s, n + 1);
        OPENSSL_cleanse(t, len);
        free(t);
        if (!ok) {
            snprintf(err, errsz,
                     "[http] token_file %s: the token must be one line of %d to %zu characters "
                     "(e.g. openssl rand -hex 32)",
                     c->http_token_file, TOKEN_MIN, sizeof h->token - 1);
            return RP_ECONF;
        }
    }
    h->client_cert = c->http_client_cert;
    if (c->http_tls) {
        if (read_pem(c->tls_cert, &h->cert_pem, err, errsz, "[tls] cert") ||
            read_pem(c->tls_key, &h->key_pem, err, errsz, "[tls] key"))
            return RP_ECONF;
        if (c->tls_key_passphrase_file[0]) {
            FILE *fp = fopen(c->tls_key_passphrase_file, "r");
            if (!fp || !fgets(h->key_pass, sizeof h->key_pass, fp)) {
                if (fp)
                    fclose(fp);
                snprintf(err, errsz, "[tls] key_passphrase_file %s: cannot read",
                         c->tls_key_passphrase_file);
                return RP_ECONF;
            }
            fclose(fp);
            h->key_pass[strcspn(h->key_pass, "\r\n")] = '\0';
        }
        if (h->client_cert && read_pem(c->tls_ca_file, &h->ca_pem, err, errsz, "[tls] ca_file"))
            return RP_ECONF;
    }
    return 0;
}

/* ---- identifying the caller ------------------------------------------------------------------ */

/* A client certificate that verifies against ca_file: "cert:<sha256 of its DER>". */
static int client_cert_principal(rp_http_req *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session)
        return 0;
    gnutls_session_t s = (gnutls_session_t)ci->tls_session;
    unsigned n = 0, status = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(s, &n);
    if (!certs || n == 0)
        return 0;
    if (gnutls_certificate_verify_peers2(s, &status) != 0 || status != 0)
        return 0;
    char fp[65];
    rp_sha256_hex(certs[0].data, certs[0].size, fp);
    snprintf(r->principal, sizeof r->principal, "cert:%s", fp);
    return 1;
}

/* The session cookie, when its MAC and expiry check out: "session:<nonce>". */
static int session_principal(rp_http_req *r)
{
    const char *v = MHD_lookup_connection_value(r->conn, MHD_COOKIE_KIND, "rp_session");
    if (!v || strlen(v) > 200)
        return 0;
    char copy[256];
    rp_strlcpy(copy, v, sizeof copy);
    char *dot2 = strrchr(copy, '.');
    if (!dot2)
        return 0;
    *dot2 = '\0';
    const char *mac = dot2 + 1;
    char *dot1 = strchr(copy, '.');
    if (!dot1)
        return 0;
    char want[65], msg[300];
    snprintf(msg, sizeof msg, "session|%s", copy);
    mac_hex(r->h, msg, want);
    if (!equal_secret(mac, want))
        return 0;
    long long exp = strtoll(copy, NULL, 10);
    if ((double)exp < rp_now_s())
        return 0;
    snprintf(r->principal, sizeof r->principal, "session:%s", dot1 + 1);
    return 1;
}

void rp_http_auth_identify(rp_http_req *r)
{
    rp_http *h = r->h;
    r->auth = RP_AUTH_NONE;
    r->principal[0] = '\0';
    r->csrf[0] = '\0';
    const char *a = rp_http_header(r, "Authorization");
    if (h->token[0] && a && strncasecmp(a, "Bearer ", 7) == 0) {
        const char *t = a + 7;
        while (*t == ' ')
            t++;
        if (equal_secret(t, h->token)) {
            r->auth = RP_AUTH_TOKEN;
            snprintf(r->principal, sizeof r->principal, "token");
        }
    }
    if (r->auth == RP_AUTH_NONE && h->token[0] && session_principal(r))
        r->auth = RP_AUTH_SESSION;
    if (r->auth == RP_AUTH_NONE && h->client_cert && h->tls && client_cert_principal(r))
        r->auth = RP_AUTH_CERT;
    if (r->auth != RP_AUTH_NONE) {
        char msg[200], m[65];
        snprintf(msg, sizeof msg, "csrf|%s", r->principal);
        mac_hex(h, msg, m);
        memcpy(r->csrf, m, 32);
        r->csrf[32] = '\0';
    }
}

int rp_http_auth_may_read(rp_http_req *r)
{
    return !r->h->remote || r->auth != RP_AUTH_NONE;
}

/* 1 when the host part of a Host header is a loopback name or address. */
static int host_is_loopback(const char *host)
{
    char hb[300];
    rp_strlcpy(hb, host, sizeof hb);
    char *name = hb;
    if (name[0] == '[') { /* [::1]:8480 */
        char *end = strchr(name, ']');
        if (!end)
            return 0;
        *end = '\0';
        name++;
    } else {
        char *colon = strchr(name, ':');
        if (colon)
            *colon = '\0';
    }
    return rp_conf_http_is_loopback(name);
}

int rp_http_auth_check_host(rp_http_req *r)
{
    if (r->h->remote)
        return 0;
    /* On a loopback bind, a page served under another name could only come from a DNS
     * rebinding attack: a web page making the browser read our data as its own origin. */
    const char *host = rp_http_header(r, "Host");
    return !host || host_is_loopback(host) ? 0 : RP_EPERM;
}

/* The request's Origin (or Referer) must be this server when a browser says one. */
static int same_origin(rp_http_req *r)
{
    const char *site = rp_http_header(r, "Sec-Fetch-Site");
    if (site && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0)
        return 0;
    const char *origin = rp_http_header(r, "Origin");
    if (!origin || strcmp(origin, "null") == 0)
        return !origin; /* "null" comes from sandboxed or privacy-stripped contexts: refuse */
    const char *host = rp_http_header(r, "Host");
    if (!host)
        return 0;
    char want[400];
    snprintf(want, sizeof want, "%s://%s", r->h->tls ? "https" : "http", host);
    return strcmp(origin, want) == 0;
}

int rp_http_auth_check_action(rp_http_req *r, char *why, size_t whysz)
{
    if (!r->h->token[0] && !r->h->client_cert) {
        snprintf(why, whysz,
                 "actions are disabled: set [http] token_file (or client_cert) to "
                 "allow them");
        return RP_EPERM;
    }
    if (r->auth == RP_AUTH_NONE) {
        snprintf(why, whysz,
                 "authentication required (bearer token, login or client "
                 "certificate)");
        return RP_EPERM;
    }
    const char *given = rp_http_header(r, "X-CSRF-Token");
    if (!given)
        given = rp_http_arg(r, "csrf");
    if (!given || !equal_secret(given, r->csrf)) {
        snprintf(why, whysz, "missing or wrong CSRF token");
        return RP_EPERM;
    }
    if (!same_origin(r)) {
        snprintf(why, whysz, "cross-origin request refused");
        return RP_EPERM;
    }
    return 0;
}

/* ---- login / logout -------------------------------------------------------------------------- */

/* A local path to go back to after a form ("/series/1.2.3"), never another site. */
static const char *safe_next(const char *next)
{
    if (!next || next[0] != '/' || next[1] == '/' || next[1] == '\\' || strlen(next) > 500)
        return "/";
    for (const char *p = next; *p; p++)
        if ((unsigned char)*p < 0x20)
            return "/";
    return next;
}

void rp_http_login(rp_http_req *r, rp_http_resp *o)
{
    rp_http *h = r->h;
    if (!h->token[0]) {
        rp_http_resp_error(r, o, 403, "login needs [http] token_file on the node");
        return;
    }
    const char *t = rp_http_arg(r, "token");
    const char *origin = rp_http_header(r, "Origin");
    if (origin && !same_origin(r)) {
        rp_http_resp_error(r, o, 403, "cross-origin login refused");
        return;
    }
    if (!t || !equal_secret(t, h->token)) {
        RP_WARN(MOD, "console login refused remote=%s", r->remote_ip);
        rp_http_resp_error(r, o, 403, "wrong token");
        return;
    }
    unsigned char nonce[12];
    char nh[25], msg[120], mac[65];
    RAND_bytes(nonce, sizeof nonce);
    hex(nonce, sizeof nonce, nh);
    long long exp = (long long)rp_now_s() + SESSION_S;
    snprintf(msg, sizeof msg, "session|%lld.%s", exp, nh);
    mac_hex(h, msg, mac);
    snprintf(o->cookie, sizeof o->cookie,
             "rp_session=%lld.%s.%s; Path=/; Max-Age=%d; HttpOnly; SameSite=Strict%s", exp, nh, mac,
             SESSION_S, h->tls ? "; Secure" : "");
    RP_INFO(MOD, "console login remote=%s session=%s", r->remote_ip, nh);
    rp_http_resp_redirect(o, safe_next(rp_http_arg(r, "next")));
}

void rp_http_logout(rp_http_req *r, rp_http_resp *o)
{
    snprintf(o->cookie, sizeof o->cookie,
             "rp_session=; Path=/; Max-Age=0; HttpOnly; "
             "SameSite=Strict");
    (void)r;
    rp_http_resp_redirect(o, "/");
}
