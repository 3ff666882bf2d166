/*
 * http internals shared by the files of http/: the server object, one request, one
 * response, the text buffer pages are written into, and the functions each file offers.
 * Used only inside http/ (and its tests).
 */
#ifndef RP_HTTP_INTERNAL_H
#define RP_HTTP_INTERNAL_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stddef.h>

#include "conf/conf.h"
#include "db/db.h"
#include "http/http.h"

#define RP_HTTP_POOL_MAX 16
#define RP_HTTP_BODY_MAX (16 * 1024) /* a POST body larger than this is refused (413) */
#define RP_HTTP_RATE_SAMPLES 180     /* 15 minutes of 5-second samples */
#define RP_HTTP_RATE_STEP_S 5.0
#define RP_HTTP_NICE 10 /* the console's threads yield to receiving */

typedef struct rp_http_sample {
    double t;                /* monotonic seconds */
    double instances, bytes; /* counters at t */
} rp_http_sample;

struct rp_http {
    const rp_conf *conf;
    char db_path[RP_PATH_MAX + 64];
    struct MHD_Daemon *mhd;
    int port;
    int remote; /* bound beyond loopback: every request authenticates */
    int tls;
    /* read-only index handles, one per request in flight (never shared with the node) */
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    rp_db *pool[RP_HTTP_POOL_MAX];
    int pool_busy[RP_HTTP_POOL_MAX];
    int pool_n;
    /* authentication */
    unsigned char secret[32]; /* per start: signs session cookies and CSRF tokens */
    char token[512];          /* bearer token ("" none) */
    int client_cert;
    char *cert_pem, *key_pem, *ca_pem;
    char key_pass[1024];
    /* rates */
    pthread_t sampler;
    int sampler_started, stopping;
    pthread_mutex_t rate_mu;
    pthread_cond_t rate_cv;
    rp_http_sample ring[RP_HTTP_RATE_SAMPLES];
    int ring_n, ring_head;
    /* identity */
    double started_at; /* wall clock */
    char hostname[256];
    pthread_mutex_t scrape_mu; /* one /metrics scrape at a time: they reset gauges */
};

/* ---- text buffer ----------------------------------------------------------------------------- */
typedef struct rp_hbuf {
    char *p;
    size_t len, cap;
    int oom;
} rp_hbuf;
void rp_hbuf_init(rp_hbuf *b);
void rp_hbuf_free(rp_hbuf *b);
void rp_hbuf_put(rp_hbuf *b, const char *s);
void rp_hbuf_printf(rp_hbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* HTML-escaped text (& < > " '); NULL prints nothing. */
void rp_hbuf_esc(rp_hbuf *b, const char *s);
/* URL-component encoding (for links built from UIDs and search text). */
void rp_hbuf_url(rp_hbuf *b, const char *s);
/* Take the buffer's memory (malloc'd, NUL-terminated); the buffer is emptied. */
char *rp_hbuf_take(rp_hbuf *b, size_t *len);

/* ---- one request ----------------------------------------------------------------------------- */
typedef enum { RP_AUTH_NONE = 0, RP_AUTH_TOKEN, RP_AUTH_SESSION, RP_AUTH_CERT } rp_auth_kind;

typedef struct rp_http_req {
    rp_http *h;
    struct MHD_Connection *conn;
    const char *method;
    char path[512]; /* decoded path, without the query */
    int is_post;
    char *body; /* POST body (NUL-terminated), NULL when none */
    size_t body_len;
    int body_too_big;
    rp_db *db; /* read-only handle for this request (from the pool) */
    /* who is asking */
    rp_auth_kind auth;
    char principal[160]; /* "token", "session:<id>", "cert:<sha256>" */
    char csrf[65];       /* the CSRF token of this principal ("" when not authenticated) */
    char remote_ip[64];
    int wants_html; /* a browser form: answer with a redirect, not JSON */
} rp_http_req;

typedef struct rp_http_resp {
    int status;
    const char *type; /* Content-Type */
    char *body;       /* malloc'd */
    size_t len;
    int fd; /* >= 0: send this file (size fd_size) instead of body; closed by MHD */
    long long fd_size;
    char location[600];
    char cookie[400];
    char disposition[320];
    int cache; /* static assets may be cached */
} rp_http_resp;

/* Query-string or form value (borrowed, NULL when absent). Form values are read from the
 * urlencoded POST body. */
const char *rp_http_arg(rp_http_req *r, const char *key);
const char *rp_http_header(rp_http_req *r, const char *name);

/* Responses. */
void rp_http_resp_text(rp_http_resp *o, int status, const char *type, char *body, size_t len);
void rp_http_resp_json(rp_http_resp *o, int status, cJSON *j); /* takes j */
void rp_http_resp_error(rp_http_req *r, rp_http_resp *o, int status, const char *why);
void rp_http_resp_redirect(rp_http_resp *o, const char *where);

/* ---- auth.c ---------------------------------------------------------------------------------- */
int rp_http_auth_init(rp_http *h, char *err, size_t errsz);
/* Work out who is asking (token, session cookie, client certificate): fills r->auth,
 * principal and csrf. */
void rp_http_auth_identify(rp_http_req *r);
/* 1 when the request may read pages/API (always on loopback). */
int rp_http_auth_may_read(rp_http_req *r);
/* 0 when an action may proceed; else 403 with the reason in why. */
int rp_http_auth_check_action(rp_http_req *r, char *why, size_t whysz);
/* POST /login (token form field) and /logout. */
void rp_http_login(rp_http_req *r, rp_http_resp *o);
void rp_http_logout(rp_http_req *r, rp_http_resp *o);
/* 0 when the Host header is acceptable (loopback binds: names the loopback). */
int rp_http_auth_check_host(rp_http_req *r);

/* ---- api.c: JSON the pages render and /api/v1 returns ---------------------------------------- */
/* Row callback appending one JSON object per row to the cJSON array `user`. */
int rp_http_json_row(void *user, int ncol, const char *const *names, const char *const *values,
                     const int *kinds);
cJSON *rp_http_api_status(rp_http_req *r);
cJSON *rp_http_api_series_list(rp_http_req *r);
cJSON *rp_http_api_series(rp_http_req *r, const char *uid); /* NULL: unknown */
cJSON *rp_http_api_jobs(rp_http_req *r);
cJSON *rp_http_api_job(rp_http_req *r, long long id); /* NULL: unknown */
cJSON *rp_http_api_outbox(rp_http_req *r);
cJSON *rp_http_api_peers(rp_http_req *r);
cJSON *rp_http_api_config(rp_http_req *r);
/* Dispatch /api/v1/... (GET and the POST actions). */
void rp_http_api(rp_http_req *r, rp_http_resp *o, const char *rest);
/* The tail of a job's log (at most max bytes) into a malloc'd string; NULL if none. */
char *rp_http_job_log(rp_http *h, long long job_id, size_t max, size_t *len);

/* ---- actions.c ------------------------------------------------------------------------------- */
void rp_http_action_trigger(rp_http_req *r, rp_http_resp *o, const char *uid);
void rp_http_action_job_retry(rp_http_req *r, rp_http_resp *o, long long id);
void rp_http_action_outbox_retry(rp_http_req *r, rp_http_resp *o, long long id);

/* ---- pages.c / pages_series.c: HTML ---------------------------------------------------------- */
void rp_http_page(rp_http_req *r, rp_http_resp *o); /* GET of a console page */
/* Shared layout. */
void rp_http_page_begin(rp_hbuf *b, rp_http_req *r, const char *title, const char *nav);
void rp_http_page_end(rp_hbuf *b, rp_http_req *r);
void rp_http_page_series(rp_http_req *r, rp_hbuf *b, const char *uid, int *status);
void rp_http_page_series_list(rp_http_req *r, rp_hbuf *b);
/* Small renderers shared by the pages. */
void rp_http_html_time(rp_hbuf *b, double t);           /* "2026-01-02 03:04:05Z" or "—" */
void rp_http_html_bytes(rp_hbuf *b, double n);          /* "12.3 MiB" */
void rp_http_html_state(rp_hbuf *b, const char *state); /* a coloured state badge */
void rp_http_html_csrf(rp_hbuf *b, rp_http_req *r);     /* hidden csrf + next fields */
void rp_http_html_action(rp_hbuf *b, rp_http_req *r, const char *action, const char *label,
                         const char *next);
/* cJSON helpers */
const char *rp_http_js(const cJSON *o, const char *key); /* string or "" */
double rp_http_jn(const cJSON *o, const char *key);      /* number or -1 */

/* Lower the calling thread's priority to RP_HTTP_NICE (once per thread). */
void rp_http_lower_priority(void);

/* ---- assets.c -------------------------------------------------------------------------------- */
/* An embedded asset by exact name ("console.css"); 0 or RP_ENOENT. */
int rp_http_asset(const char *name, const char **data, size_t *len, const char **type);

/* ---- scrape.c: /metrics ---------------------------------------------------------------------- */
void rp_http_metrics(rp_http_req *r, rp_http_resp *o);
/* Rates over the last `seconds` from the sampler: instances/s and bytes/s. */
void rp_http_rates(rp_http *h, double seconds, double *inst_per_s, double *bytes_per_s);
/* The samples (oldest first) as a JSON array of [seconds_ago, inst_per_s, bytes_per_s]. */
cJSON *rp_http_rate_series(rp_http *h);
int rp_http_sampler_start(rp_http *h);
void rp_http_sampler_stop(rp_http *h);

#endif
