/*
 * http/server — libmicrohttpd set-up, request life cycle, routing, and the read-only index
 * handles requests borrow.
 *
 * Threads: MHD runs a fixed pool of [http] threads with epoll (or poll) inside; each
 * request is answered on the thread that read it, synchronously, with one read-only SQLite
 * handle from our pool (as many handles as threads, so a request never waits for one).
 * Bounds: max_connections in total, a quarter of them per client address, 64 KiB of memory
 * per connection (request line, headers and our POST buffer must fit: beyond that MHD
 * answers 414/431 itself), a 15 s idle timeout, POST bodies up to RP_HTTP_BODY_MAX. The
 * threads run at nice RP_HTTP_NICE so that, on a busy machine, receiving gets the CPU first.
 */
#include "http/http_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/common.h"
#include "metrics/metrics.h"

#define MOD "http"

/* ---- text buffer ----------------------------------------------------------------------------- */

void rp_hbuf_init(rp_hbuf *b)
{
    b->cap = 8192;
    b->len = 0;
    b->oom = 0;
    b->p = malloc(b->cap);
    if (b->p)
        b->p[0] = '\0';
    else
        b->oom = 1;
}

void rp_hbuf_free(rp_hbuf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static int room(rp_hbuf *b, size_t n)
{
    if (b->oom)
        return 0;
    if (b->len + n + 1 <= b->cap)
        return 1;
    size_t nc = b->cap ? b->cap : 8192;
    while (nc < b->len + n + 1)
        nc *= 2;
    char *np = realloc(b->p, nc);
    if (!np) {
        b->oom = 1;
        return 0;
    }
    b->p = np;
    b->cap = nc;
    return 1;
}

static void put_n(rp_hbuf *b, const char *s, size_t n)
{
    if (!room(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void rp_hbuf_put(rp_hbuf *b, const char *s)
{
    if (s)
        put_n(b, s, strlen(s));
}

void rp_hbuf_printf(rp_hbuf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof small) {
        put_n(b, small, (size_t)n);
        return;
    }
    if (!room(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void rp_hbuf_esc(rp_hbuf *b, const char *s)
{
    if (!s)
        return;
    const char *run = s;
    for (const char *p = s; *p; p++) {
        const char *rep = NULL;
        switch (*p) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            break;
        }
        if (rep) {
            put_n(b, run, (size_t)(p - run));
            rp_hbuf_put(b, rep);
            run = p + 1;
        }
    }
    rp_hbuf_put(b, run);
}

void rp_hbuf_url(rp_hbuf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; s && *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            *p == '.' || *p == '-' || *p == '_' || *p == '~') {
            put_n(b, (const char *)p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            put_n(b, e, 3);
        }
    }
}

char *rp_hbuf_take(rp_hbuf *b, size_t *len)
{
    if (b->oom) {
        rp_hbuf_free(b);
        return NULL;
    }
    char *p = b->p;
    if (len)
        *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

/* ---- requests and responses ------------------------------------------------------------------ */

#define MAX_FORM 24
typedef struct req_state {
    rp_http_req r;
    char *keys[MAX_FORM], *vals[MAX_FORM];
    int n_form, form_parsed;
} req_state;

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* In-place application/x-www-form-urlencoded decoding. */
static void form_decode(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '+') {
            *o++ = ' ';
        } else if (*p == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
            *o++ = (char)(hexval(p[1]) * 16 + hexval(p[2]));
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
}

static void parse_form(req_state *st)
{
    st->form_parsed = 1;
    if (!st->r.body)
        return;
    const char *ct = rp_http_header(&st->r, "Content-Type");
    if (!ct || strncasecmp(ct, "application/x-www-form-urlencoded", 33) != 0)
        return;
    char *save = NULL;
    for (char *kv = strtok_r(st->r.body, "&", &save); kv && st->n_form < MAX_FORM;
         kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq)
            *eq++ = '\0';
        form_decode(kv);
        if (eq)
            form_decode(eq);
        st->keys[st->n_form] = kv;
        st->vals[st->n_form++] = eq ? eq : kv + strlen(kv);
    }
}

const char *rp_http_arg(rp_http_req *r, const char *key)
{
    req_state *st = (req_state *)r; /* r is the first member */
    if (r->is_post) {
        if (!st->form_parsed)
            parse_form(st);
        for (int i = 0; i < st->n_form; i++)
            if (strcmp(st->keys[i], key) == 0)
                return st->vals[i];
    }
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *rp_http_header(rp_http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

void rp_http_resp_text(rp_http_resp *o, int status, const char *type, char *body, size_t len)
{
    free(o->body);
    o->status = status;
    o->type = type;
    o->body = body;
    o->len = body ? len : 0;
}

void rp_http_resp_json(rp_http_resp *o, int status, cJSON *j)
{
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (!s) {
        rp_http_resp_text(o, 500, "text/plain; charset=utf-8", strdup("out of memory\n"), 14);
        return;
    }
    rp_http_resp_text(o, status, "application/json", s, strlen(s));
}

void rp_http_resp_error(rp_http_req *r, rp_http_resp *o, int status, const char *why)
{
    int api = strncmp(r->path, "/api/", 5) == 0 || strcmp(r->path, "/metrics") == 0;
    if (api) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "status", status);
        cJSON_AddStringToObject(j, "error", why);
        rp_http_resp_json(o, status, j);
        return;
    }
    rp_hbuf b;
    rp_hbuf_init(&b);
    char title[32];
    snprintf(title, sizeof title, "%d", status);
    rp_http_page_begin(&b, r, title, "");
    rp_hbuf_printf(&b, "<h1>%d</h1><p class=\"notice bad\">", status);
    rp_hbuf_esc(&b, why);
    rp_hbuf_put(&b, "</p>");
    rp_http_page_end(&b, r);
    size_t len = 0;
    char *body = rp_hbuf_take(&b, &len);
    rp_http_resp_text(o, status, "text/html; charset=utf-8", body, len);
}

void rp_http_resp_redirect(rp_http_resp *o, const char *where)
{
    o->status = 303;
    rp_strlcpy(o->location, where, sizeof o->location);
    rp_http_resp_text(o, 303, "text/plain; charset=utf-8", strdup("see other\n"), 10);
}

/* ---- the read-only handle pool --------------------------------------------------------------- */

static rp_db *pool_get(rp_http *h)
{
    pthread_mutex_lock(&h->pool_mu);
    for (;;) {
        for (int i = 0; i < h->pool_n; i++) {
            if (h->pool_busy[i])
                continue;
            if (!h->pool[i] && rp_db_open_readonly(h->db_path, &h->pool[i]) != 0) {
                pthread_mutex_unlock(&h->pool_mu);
                return NULL;
            }
            h->pool_busy[i] = 1;
            rp_db *db = h->pool[i];
            pthread_mutex_unlock(&h->pool_mu);
            return db;
        }
        pthread_cond_wait(&h->pool_cv, &h->pool_mu);
    }
}

static void pool_put(rp_http *h, rp_db *db)
{
    if (!db)
        return;
    pthread_mutex_lock(&h->pool_mu);
    for (int i = 0; i < h->pool_n; i++)
        if (h->pool[i] == db)
            h->pool_busy[i] = 0;
    pthread_cond_signal(&h->pool_cv);
    pthread_mutex_unlock(&h->pool_mu);
}

/* ---- routing --------------------------------------------------------------------------------- */

/* A path we are willing to route: absolute, printable, no "..", no "//", no backslash. */
static int path_ok(const char *p)
{
    if (p[0] != '/' || strstr(p, "..") || strstr(p, "//") || strchr(p, '\\'))
        return 0;
    for (const unsigned char *s = (const unsigned char *)p; *s; s++)
        if (*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* GET /outputs/<id>: a file a job wrote, found by its row (never by a path from the URL). */
static void serve_output(rp_http_req *r, rp_http_resp *o, const char *idtxt)
{
    char *end = NULL;
    long long id = strtoll(idtxt, &end, 10);
    if (!*idtxt || *end || id <= 0) {
        rp_http_resp_error(r, o, 404, "no such output");
        return;
    }
    rp_db_output out;
    if (rp_db_console_output_get(r->db, id, &out) != 0) {
        rp_http_resp_error(r, o, 404, "no such output");
        return;
    }
    int fd = open(out.path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        rp_http_resp_error(r, o, 410, "the output file is gone from disk");
        return;
    }
    const char *name = strrchr(out.path, '/');
    name = name ? name + 1 : out.path;
    const char *type = "application/octet-stream";
    int inline_ok = 0;
    size_t nl = strlen(name);
    if (nl > 4 && strcmp(name + nl - 4, ".png") == 0) {
        type = "image/png";
        inline_ok = 1;
    } else if (nl > 5 && strcmp(name + nl - 5, ".json") == 0) {
        type = "application/json";
        inline_ok = 1;
    } else if (nl > 4 && strcmp(name + nl - 4, ".dcm") == 0) {
        type = "application/dicom";
    }
    o->status = 200;
    o->type = type;
    o->fd = fd;
    o->fd_size = (long long)st.st_size;
    /* The name is ours (derived from UIDs and recipe words) but quote-safe anyway. */
    char safe[256];
    size_t j = 0;
    for (const char *p = name; *p && j + 1 < sizeof safe; p++)
        safe[j++] = (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) ? '_' : *p;
    safe[j] = '\0';
    snprintf(o->disposition, sizeof o->disposition, "%s; filename=\"%s\"",
             inline_ok && !rp_http_arg(r, "download") ? "inline" : "attachment", safe);
}

static void serve_job_log(rp_http_req *r, rp_http_resp *o, const char *idtxt)
{
    char *end = NULL;
    long long id = strtoll(idtxt, &end, 10);
    if (!*idtxt || strcmp(end, "/log") != 0 || id <= 0) {
        rp_http_resp_error(r, o, 404, "no such page");
        return;
    }
    size_t len = 0;
    char *log = rp_http_job_log(r->h, id, 1 << 20, &len);
    if (!log) {
        rp_http_resp_error(r, o, 404, "this job has no log (yet)");
        return;
    }
    rp_http_resp_text(o, 200, "text/plain; charset=utf-8", log, len);
}

static void route(rp_http_req *r, rp_http_resp *o)
{
    const char *p = r->path;
    if (!path_ok(p)) {
        rp_http_resp_error(r, o, 400, "bad path");
        return;
    }
    if (rp_http_auth_check_host(r) != 0) {
        rp_http_resp_error(r, o, 403,
                           "Host header does not name this server's loopback address "
                           "(use http://127.0.0.1:PORT/)");
        return;
    }
    rp_http_auth_identify(r);
    if (strncmp(p, "/static/", 8) == 0) {
        const char *data, *type;
        size_t len;
        if (r->is_post || rp_http_asset(p + 8, &data, &len, &type) != 0) {
            rp_http_resp_error(r, o, 404, "no such asset");
            return;
        }
        char *copy = malloc(len + 1);
        if (copy) {
            memcpy(copy, data, len);
            copy[len] = '\0';
        }
        rp_http_resp_text(o, copy ? 200 : 500, type, copy, len);
        o->cache = 1;
        return;
    }
    if (strcmp(p, "/login") == 0) {
        if (r->is_post)
            rp_http_login(r, o);
        else
            rp_http_page(r, o);
        return;
    }
    if (strcmp(p, "/logout") == 0 && r->is_post) {
        rp_http_logout(r, o);
        return;
    }
    int is_metrics = strcmp(p, "/metrics") == 0;
    if (!(is_metrics && r->h->conf->http_metrics_open) && !rp_http_auth_may_read(r)) {
        if (strncmp(p, "/api/", 5) == 0 || is_metrics || r->is_post) {
            rp_http_resp_error(r, o, 401,
                               "authentication required (bearer token, session or "
                               "client certificate)");
        } else {
            rp_http_resp_redirect(o, "/login");
        }
        return;
    }
    if (r->is_post && strncmp(p, "/api/v1/", 8) != 0) {
        rp_http_resp_error(r, o, 405, "POST only to /api/v1/ actions, /login and /logout");
        return;
    }
    r->db = pool_get(r->h);
    if (!r->db) {
        rp_http_resp_error(r, o, 503, "the index cannot be opened");
        return;
    }
    if (is_metrics)
        rp_http_metrics(r, o);
    else if (strncmp(p, "/api/v1/", 8) == 0)
        rp_http_api(r, o, p + 8);
    else if (strncmp(p, "/outputs/", 9) == 0)
        serve_output(r, o, p + 9);
    else if (strncmp(p, "/jobs/", 6) == 0 && strstr(p + 6, "/log"))
        serve_job_log(r, o, p + 6);
    else
        rp_http_page(r, o);
}

/* ---- MHD glue -------------------------------------------------------------------------------- */

static enum MHD_Result queue(struct MHD_Connection *conn, rp_http_req *r, rp_http_resp *o)
{
    struct MHD_Response *resp;
    if (o->fd >= 0) {
        resp = MHD_create_response_from_fd((uint64_t)o->fd_size, o->fd);
        o->fd = -1; /* MHD owns it now (closes it with the response) */
    } else {
        resp = MHD_create_response_from_buffer(o->len, o->body ? o->body : (void *)"",
                                               o->body ? MHD_RESPMEM_MUST_FREE
                                                       : MHD_RESPMEM_PERSISTENT);
        if (resp)
            o->body = NULL;
    }
    if (!resp)
        return MHD_NO;
    if (o->type)
        MHD_add_response_header(resp, "Content-Type", o->type);
    /* Nothing but our own origin, no framing, no sniffing, no referrer with UIDs in it to other
     * sites ("no-referrer" would make browsers send Origin: null on our own forms). */
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                            "script-src 'self'; object-src 'none'; base-uri 'none'; "
                            "frame-ancestors 'none'; form-action 'self'");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Referrer-Policy", "same-origin");
    MHD_add_response_header(resp, "Cache-Control", o->cache ? "max-age=300" : "no-store");
    if (o->location[0])
        MHD_add_response_header(resp, "Location", o->location);
    if (o->cookie[0])
        MHD_add_response_header(resp, "Set-Cookie", o->cookie);
    if (o->disposition[0])
        MHD_add_response_header(resp, "Content-Disposition", o->disposition);
    if (r && r->h->tls)
        MHD_add_response_header(resp, "Strict-Transport-Security", "max-age=31536000");
    char code[8];
    snprintf(code, sizeof code, "%d", o->status);
    rp_metrics_add(RP_M_HTTP_REQUESTS, 1, code);
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)o->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* The console's threads yield the CPU to receiving: when the machine is busy, a page may
 * wait, an instance should not. (Linux: nice is per thread.) */
void rp_http_lower_priority(void)
{
    static _Thread_local int done;
    if (!done) {
        setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), RP_HTTP_NICE);
        done = 1;
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    rp_http *h = cls;
    rp_http_lower_priority();
    req_state *st = *con_cls;
    if (!st) {
        st = calloc(1, sizeof *st);
        if (!st)
            return MHD_NO;
        *con_cls = st;
        st->r.h = h;
        st->r.conn = conn;
        st->r.method = method;
        st->r.is_post = strcmp(method, "POST") == 0;
        if (rp_strlcpy(st->r.path, url, sizeof st->r.path) != 0)
            st->r.path[0] = '\0'; /* too long: refused below */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, st->r.remote_ip,
                          sizeof st->r.remote_ip);
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, st->r.remote_ip,
                          sizeof st->r.remote_ip);
        }
        if (st->r.is_post)
            return MHD_YES; /* the body comes in the next calls */
    }
    rp_http_req *r = &st->r;
    if (r->is_post && *upload_data_size) {
        size_t n = *upload_data_size;
        if (!r->body_too_big && r->body_len + n <= RP_HTTP_BODY_MAX) {
            char *nb = realloc(r->body, r->body_len + n + 1);
            if (!nb) {
                r->body_too_big = 1;
            } else {
                r->body = nb;
                memcpy(r->body + r->body_len, upload_data, n);
                r->body_len += n;
                r->body[r->body_len] = '\0';
            }
        } else {
            r->body_too_big = 1;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    rp_http_resp o;
    memset(&o, 0, sizeof o);
    o.fd = -1;
    o.status = 500;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0 && !r->is_post) {
        rp_http_resp_error(r, &o, 405, "method not allowed");
    } else if (!r->path[0]) {
        rp_http_resp_error(r, &o, 414, "URI too long");
    } else if (r->body_too_big) {
        rp_http_resp_error(r, &o, 413, "request body too large");
    } else {
        route(r, &o);
    }
    if (!o.body && o.fd < 0 && o.status != 303)
        rp_http_resp_error(r, &o, o.status >= 400 ? o.status : 500, "internal error");
    enum MHD_Result ret = queue(conn, r, &o);
    free(o.body);
    if (o.fd >= 0)
        close(o.fd);
    pool_put(h, r->db);
    r->db = NULL;
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    (void)toe;
    req_state *st = *con_cls;
    if (!st)
        return;
    if (st->r.db)
        pool_put((rp_http *)cls, st->r.db);
    free(st->r.body);
    free(st);
    *con_cls = NULL;
}

/* Our own %XX decoding of the path and query arguments, so that an encoded NUL cannot cut a
 * path short behind our checks: it becomes DEL, which path_ok() refuses. */
static size_t unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
            char c = (char)(hexval(p[1]) * 16 + hexval(p[2]));
            *o++ = c ? c : 0x7f;
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return (size_t)(o - s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\r\n")] = '\0';
    char q[600];
    RP_DEBUG(MOD, "libmicrohttpd says msg=%s", rp_log_kv_quote(msg, q, sizeof q));
}

/* ---- start / stop ---------------------------------------------------------------------------- */

static int resolve_bind(const char *host, int port, struct sockaddr_storage *ss, int *v6)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    if (getaddrinfo(host, ps, &hints, &res) != 0 || !res)
        return RP_EINVAL;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return 0;
}

int rp_http_start(const rp_conf *c, const char *db_path, rp_http **out, char *err, size_t errsz)
{
    *out = NULL;
    if (err && errsz)
        err[0] = '\0';
    if (c->http_port == 0)
        return 0;
    rp_http *h = calloc(1, sizeof *h);
    if (!h)
        return RP_ENOMEM;
    h->conf = c;
    rp_strlcpy(h->db_path, db_path, sizeof h->db_path);
    h->remote = !rp_conf_http_is_loopback(c->http_bind);
    h->tls = c->http_tls;
    h->pool_n = c->http_threads < RP_HTTP_POOL_MAX ? c->http_threads : RP_HTTP_POOL_MAX;
    h->started_at = rp_now_s();
    if (gethostname(h->hostname, sizeof h->hostname) != 0)
        rp_strlcpy(h->hostname, "?", sizeof h->hostname);
    pthread_mutex_init(&h->pool_mu, NULL);
    pthread_cond_init(&h->pool_cv, NULL);
    pthread_mutex_init(&h->rate_mu, NULL);
    pthread_cond_init(&h->rate_cv, NULL);
    pthread_mutex_init(&h->scrape_mu, NULL);
    int rc = rp_http_auth_init(h, err, errsz);
    if (rc) {
        rp_http_stop(h);
        return rc;
    }
    struct sockaddr_storage ss;
    int v6 = 0;
    if (resolve_bind(c->http_bind, c->http_port, &ss, &v6) != 0) {
        snprintf(err, errsz, "[http] bind %s: not an address of this host", c->http_bind);
        rp_http_stop(h);
        return RP_ECONF;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
    if (v6)
        flags |= MHD_USE_IPv6;
    if (h->tls)
        flags |= MHD_USE_TLS;
    unsigned max_conn = (unsigned)c->http_max_connections;
    unsigned per_ip = max_conn / 4 > 2 ? max_conn / 4 : 2;
    struct MHD_OptionItem tls_opts[5];
    int nt = 0;
    if (h->tls) {
        tls_opts[nt++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, h->key_pem};
        tls_opts[nt++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, h->cert_pem};
        if (h->key_pass[0])
            tls_opts[nt++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_KEY_PASSWORD, 0, h->key_pass};
        if (h->ca_pem)
            tls_opts[nt++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, h->ca_pem};
    }
    tls_opts[nt] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    h->mhd = MHD_start_daemon(
        flags, (uint16_t)c->http_port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)c->http_threads,
        MHD_OPTION_CONNECTION_LIMIT, max_conn, MHD_OPTION_PER_IP_CONNECTION_LIMIT, per_ip,
        MHD_OPTION_CONNECTION_TIMEOUT, 15u, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape, h, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    if (!h->mhd) {
        snprintf(err, errsz, "cannot listen on %s:%d%s", c->http_bind, c->http_port,
                 errno ? ": " : "");
        if (errno)
            snprintf(err + strlen(err), errsz - strlen(err), "%s", strerror(errno));
        rp_http_stop(h);
        return RP_EIO;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    h->port = di ? di->port : c->http_port;
    if ((rc = rp_http_sampler_start(h)) != 0) {
        snprintf(err, errsz, "cannot start the rate sampler");
        rp_http_stop(h);
        return rc;
    }
    rp_metrics_set(RP_M_START_TIME, h->started_at);
    RP_INFO(MOD,
            "console listening bind=%s port=%d tls=%s auth=%s%s%s metrics_open=%s threads=%d "
            "max_connections=%d",
            c->http_bind, h->port, h->tls ? "yes" : "no", h->token[0] ? "token" : "",
            h->token[0] && h->client_cert ? "+" : "",
            h->client_cert ? "client_cert" : (h->token[0] ? "" : "none"),
            c->http_metrics_open ? "yes" : "no", c->http_threads, c->http_max_connections);
    if (!h->token[0] && !h->client_cert)
        RP_INFO(MOD, "console actions are disabled: set [http] token_file to allow them");
    *out = h;
    return 0;
}

int rp_http_port(const rp_http *h)
{
    return h ? h->port : -1;
}

void rp_http_stop(rp_http *h)
{
    if (!h)
        return;
    if (h->mhd)
        MHD_stop_daemon(h->mhd);
    rp_http_sampler_stop(h);
    for (int i = 0; i < RP_HTTP_POOL_MAX; i++)
        rp_db_close(h->pool[i]);
    free(h->cert_pem);
    free(h->key_pem);
    free(h->ca_pem);
    memset(h->key_pass, 0, sizeof h->key_pass);
    memset(h->token, 0, sizeof h->token);
    memset(h->secret, 0, sizeof h->secret);
    pthread_mutex_destroy(&h->pool_mu);
    pthread_cond_destroy(&h->pool_cv);
    pthread_mutex_destroy(&h->rate_mu);
    pthread_cond_destroy(&h->rate_cv);
    pthread_mutex_destroy(&h->scrape_mu);
    free(h);
}

/* ---- the node service ------------------------------------------------------------------------ */

typedef struct http_service {
    rp_http *h;
} http_service;

static int svc_start(rp_node *n, void *arg)
{
    http_service *s = arg;
    char err[512] = "";
    int rc = rp_http_start(rp_node_conf(n), rp_node_db_path(n), &s->h, err, sizeof err);
    if (rc == RP_EIO) {
        /* Receiving matters more than the console: run without it, loudly. */
        char q[600];
        RP_ERROR(MOD, "console not started, the DICOM node runs without it reason=%s",
                 rp_log_kv_quote(err, q, sizeof q));
        return 0;
    }
    if (rc != 0) {
        char q[600];
        RP_ERROR(MOD, "cannot start the console reason=%s", rp_log_kv_quote(err, q, sizeof q));
        fprintf(stderr, "radprepd: console: %s\n", err);
    }
    return rc;
}

static void svc_stop(rp_node *n, void *arg)
{
    (void)n;
    http_service *s = arg;
    rp_http_stop(s->h);
    free(s);
}

int rp_http_service(rp_node_service *svc)
{
    http_service *s = calloc(1, sizeof *s);
    if (!s)
        return RP_ENOMEM;
    memset(svc, 0, sizeof *svc);
    svc->name = "console";
    svc->start = svc_start;
    svc->stop = svc_stop;
    svc->arg = s;
    return 0;
}
