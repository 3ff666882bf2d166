/*
 * http — the node's web console, its JSON API (/api/v1/) and /metrics, served by
 * libmicrohttpd on its own port ([http] port, default 8480; 0 turns it off).
 *
 * Contract:
 *  - Serving never slows receiving: the server runs on its own threads (a fixed pool of
 *    [http] threads), with at most [http] max_connections connections, a per-connection
 *    memory limit and a timeout; it reads the index through its own read-only SQLite
 *    handles and the live counters through the lock-free metrics registry. It takes no lock
 *    that the C-STORE path takes. Actions (POST) open their own read-write handle.
 *  - Safe by default: loopback only ([http] bind 127.0.0.1). A non-loopback bind is refused
 *    by configuration validation unless TLS (the node's [tls] certificate) and client
 *    certificates or a bearer token ([http] token_file, mode 0600) are configured. On a
 *    loopback bind pages are readable without authentication but the Host header must name
 *    the loopback (no DNS rebinding); elsewhere every request needs authentication except
 *    /login, /static/ and, with metrics_open = yes, /metrics.
 *  - Actions (re-run a job, trigger a series, retry a dead delivery) are POST only and need
 *    an authenticated caller (bearer token, a session cookie from /login, or a verified client
 *    certificate) AND the caller's CSRF token (X-CSRF-Token header or csrf form field). A
 *    refused action answers 403 and changes nothing. Every action, done or refused for a
 *    bad CSRF token, is written to the audit events (kind 'console').
 *  - Every page and asset is embedded in the binary; nothing is fetched from elsewhere
 *    (Content-Security-Policy default-src 'self'). Unknown paths, '..' and encoded
 *    separators are refused; oversized requests get 413/414/431 from the bounded buffers.
 *  - The overview and `radprep status` compute their numbers with the same db queries
 *    (rp_db_counts_get, statvfs of data_dir). docs/console.md lists pages, API and metrics.
 *  - If the port cannot be bound, the node still runs (receiving matters more than the
 *    console): one ERROR line says so. A bad token file stops the start with the reason.
 */
#ifndef RP_HTTP_H
#define RP_HTTP_H

#include <stddef.h>

#include "conf/conf.h"
#include "scp/scp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_http rp_http;

/* Start serving c's [http] section over the index at db_path (c is borrowed and must outlive
 * the server). 0 with *out NULL when [http] port is 0. RP_ECONF with a reason in err for a bad
 * token file or TLS material; RP_EIO when the port cannot be bound (reason in err). */
int rp_http_start(const rp_conf *c, const char *db_path, rp_http **out, char *err, size_t errsz);
/* The bound port. */
int rp_http_port(const rp_http *h);
/* Stop accepting, finish requests in flight, free. NULL is fine. */
void rp_http_stop(rp_http *h);

/* The node service ("console") wrapping start/stop; fill *svc and register it with
 * rp_node_add_service(). Returns 0 or RP_ENOMEM. */
int rp_http_service(rp_node_service *svc);

#ifdef __cplusplus
}
#endif
#endif
