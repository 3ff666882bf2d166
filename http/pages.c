/*
 * http/pages — the console's HTML: the shared layout, the overview, jobs, outbox, peers,
 * configuration and login pages (series pages are in pages_series.c). Every page renders the
 * JSON document its /api/v1/ twin returns, server-side; text from the index is always
 * HTML-escaped, links built from it URL-encoded.
 */
#include "http/http_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"

/* ---- small renderers ------------------------------------------------------------------------- */

void rp_http_html_time(rp_hbuf *b, double t)
{
    if (t <= 0) {
        rp_hbuf_put(b, "<span class=\"muted\">—</span>");
        return;
    }
    time_t s = (time_t)t;
    struct tm tm;
    gmtime_r(&s, &tm);
    char buf[40];
    strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
    rp_hbuf_printf(b, "<span data-t=\"%.0f\">%s</span>", t, buf);
}

void rp_http_html_bytes(rp_hbuf *b, double n)
{
    if (n < 0) {
        rp_hbuf_put(b, "—");
        return;
    }
    static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (n >= 1024 && i < 4) {
        n /= 1024;
        i++;
    }
    if (i)
        rp_hbuf_printf(b, "%.1f %s", n, u[i]);
    else
        rp_hbuf_printf(b, "%.0f B", n);
}

void rp_http_html_state(rp_hbuf *b, const char *state)
{
    static const char *const known[] = {"receiving", "complete", "processing", "done",
                                        "failed",    "queued",   "running",    "dead",
                                        "pending",   "sending"};
    const char *cls = "other";
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (state && strcmp(state, known[i]) == 0)
            cls = known[i];
    rp_hbuf_printf(b, "<span class=\"badge b-%s\">", cls);
    rp_hbuf_esc(b, state && *state ? state : "—");
    rp_hbuf_put(b, "</span>");
}

void rp_http_html_csrf(rp_hbuf *b, rp_http_req *r)
{
    rp_hbuf_put(b, "<input type=\"hidden\" name=\"csrf\" value=\"");
    rp_hbuf_esc(b, r->csrf);
    rp_hbuf_put(b, "\">");
}

void rp_http_html_action(rp_hbuf *b, rp_http_req *r, const char *action, const char *label,
                         const char *next)
{
    if (r->auth == RP_AUTH_NONE) {
        if (r->h->token[0]) {
            rp_hbuf_put(b, "<a class=\"button\" href=\"/login?next=");
            rp_hbuf_url(b, next);
            rp_hbuf_put(b, "\" title=\"log in to act\">");
            rp_hbuf_esc(b, label);
            rp_hbuf_put(b, "…</a>");
        }
        return;
    }
    rp_hbuf_put(b, "<form class=\"inline\" method=\"post\" action=\"");
    rp_hbuf_esc(b, action);
    rp_hbuf_put(b, "\">");
    rp_http_html_csrf(b, r);
    rp_hbuf_put(b, "<input type=\"hidden\" name=\"next\" value=\"");
    rp_hbuf_esc(b, next);
    rp_hbuf_put(b, "\"><button type=\"submit\" class=\"primary\">");
    rp_hbuf_esc(b, label);
    rp_hbuf_put(b, "</button></form>");
}

/* A number field the overview refreshes by itself (data-k names the status JSON path). */
static void live_num(rp_hbuf *b, const char *key, double v, const char *fmt)
{
    rp_hbuf_printf(b, "<span data-k=\"%s\"%s%s%s>", key, fmt ? " data-fmt=\"" : "", fmt ? fmt : "",
                   fmt ? "\"" : "");
    if (fmt && strcmp(fmt, "bytes") == 0)
        rp_http_html_bytes(b, v);
    else if (fmt && strcmp(fmt, "rate") == 0)
        rp_hbuf_printf(b, "%.1f", v);
    else if (fmt && strcmp(fmt, "mbps") == 0)
        rp_hbuf_printf(b, "%.2f", v / 1048576.0);
    else if (fmt && strcmp(fmt, "duration") == 0) {
        long long s = (long long)v;
        if (s >= 86400)
            rp_hbuf_printf(b, "%lldd ", s / 86400);
        if (s >= 3600)
            rp_hbuf_printf(b, "%lldh ", s % 86400 / 3600);
        rp_hbuf_printf(b, "%lldm %llds", s % 3600 / 60, s % 60);
    } else
        rp_hbuf_printf(b, "%.0f", v);
    rp_hbuf_put(b, "</span>");
}

static double num_at(const cJSON *o, const char *a, const char *k)
{
    return rp_http_jn(cJSON_GetObjectItemCaseSensitive(o, a), k);
}

/* ---- layout ---------------------------------------------------------------------------------- */

void rp_http_page_begin(rp_hbuf *b, rp_http_req *r, const char *title, const char *nav)
{
    static const struct {
        const char *id, *href, *label;
    } items[] = {{"overview", "/", "Overview"}, {"series", "/series", "Series"},
                 {"jobs", "/jobs", "Jobs"},     {"outbox", "/outbox", "Outbox"},
                 {"peers", "/peers", "Peers"},  {"config", "/config", "Configuration"}};
    const rp_conf *c = r->h->conf;
    rp_hbuf_put(b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                   "<title>");
    rp_hbuf_esc(b, title);
    rp_hbuf_put(b, " · ");
    rp_hbuf_esc(b, c->ae_title);
    rp_hbuf_put(b, " — radprep</title><link rel=\"stylesheet\" href=\"/static/console.css\">"
                   "<link rel=\"icon\" href=\"/static/favicon.svg\">"
                   "<script src=\"/static/console.js\" defer></script></head>\n<body");
    if (strcmp(nav, "overview") == 0)
        rp_hbuf_put(b, " data-live");
    rp_hbuf_put(b, "><header class=\"top\"><a class=\"brand\" href=\"/\">radprep<small>");
    rp_hbuf_esc(b, c->ae_title);
    rp_hbuf_put(b, " @ ");
    rp_hbuf_esc(b, r->h->hostname);
    rp_hbuf_put(b, "</small></a><nav>");
    for (size_t i = 0; i < sizeof items / sizeof *items; i++)
        rp_hbuf_printf(b, "<a href=\"%s\"%s>%s</a>", items[i].href,
                       strcmp(nav, items[i].id) == 0 ? " class=\"on\"" : "", items[i].label);
    rp_hbuf_put(b, "</nav><div class=\"who\">");
    static const char *const how[] = {"", "token", "session", "client certificate"};
    if (r->auth != RP_AUTH_NONE) {
        rp_hbuf_printf(b, "<span id=\"who\">signed in (%s)</span>", how[r->auth]);
        if (r->auth == RP_AUTH_SESSION)
            rp_hbuf_put(b, "<form method=\"post\" action=\"/logout\"><button>Log out</button>"
                           "</form>");
    } else if (r->h->token[0]) {
        rp_hbuf_put(b, "<span>read-only</span><a href=\"/login\">Log in</a>");
    } else {
        rp_hbuf_put(b, "<span>read-only</span>");
    }
    rp_hbuf_put(b, "</div></header>\n<main>");
    const char *msg = rp_http_arg(r, "msg"), *err = rp_http_arg(r, "err");
    if (msg && *msg && strlen(msg) < 300) {
        rp_hbuf_put(b, "<p class=\"notice ok\" id=\"flash\">");
        rp_hbuf_esc(b, msg);
        rp_hbuf_put(b, "</p>");
    }
    if (err && *err && strlen(err) < 300) {
        rp_hbuf_put(b, "<p class=\"notice bad\" id=\"flash\">");
        rp_hbuf_esc(b, err);
        rp_hbuf_put(b, "</p>");
    }
}

void rp_http_page_end(rp_hbuf *b, rp_http_req *r)
{
    rp_hbuf_put(b, "</main><footer>radprep " RP_VERSION " · ");
    rp_hbuf_esc(b, r->h->conf->data_dir);
    rp_hbuf_put(b, " · <a href=\"/api/v1/status\">API</a> · <a href=\"/metrics\">metrics</a>"
                   "</footer></body></html>\n");
}

/* ---- overview -------------------------------------------------------------------------------- */

/* The last 15 minutes of instances/s as an inline SVG polyline (no script needed). */
static void sparkline(rp_hbuf *b, const cJSON *samples)
{
    double max = 1;
    const cJSON *p;
    cJSON_ArrayForEach(p, samples)
    {
        double v = cJSON_GetArrayItem(p, 1)->valuedouble;
        if (v > max)
            max = v;
    }
    rp_hbuf_put(b, "<svg class=\"spark\" viewBox=\"0 0 300 60\" preserveAspectRatio=\"none\" "
                   "role=\"img\" aria-label=\"instances per second, last 15 minutes\">"
                   "<polyline fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"1.5\" points=\"");
    int n = 0;
    cJSON_ArrayForEach(p, samples)
    {
        double ago = cJSON_GetArrayItem(p, 0)->valuedouble;
        double v = cJSON_GetArrayItem(p, 1)->valuedouble;
        double x = 300.0 - ago / 900.0 * 300.0;
        if (x < 0)
            continue;
        rp_hbuf_printf(b, "%.1f,%.1f ", x, 58.0 - v / max * 54.0);
        n++;
    }
    rp_hbuf_put(b, "\"/>");
    if (n < 2)
        rp_hbuf_put(b, "<text x=\"150\" y=\"34\" text-anchor=\"middle\" fill=\"#667085\" "
                       "font-size=\"10\">collecting samples…</text>");
    rp_hbuf_printf(b,
                   "<text x=\"4\" y=\"10\" fill=\"#667085\" font-size=\"9\">%.1f/s</text>"
                   "</svg>",
                   max);
}

static void state_counts(rp_hbuf *b, const cJSON *j, const char *obj, const char *const *states,
                         const char *link)
{
    for (int i = 0; states[i]; i++) {
        char key[64];
        snprintf(key, sizeof key, "%s.%s", obj, states[i]);
        rp_hbuf_put(b, "<div class=\"stat\"><div class=\"label\">");
        if (link)
            rp_hbuf_printf(b, "<a href=\"%s?state=%s\">", link, states[i]);
        rp_http_html_state(b, states[i]);
        if (link)
            rp_hbuf_put(b, "</a>");
        rp_hbuf_put(b, "</div><div class=\"big\">");
        live_num(b, key, num_at(j, obj, states[i]), NULL);
        rp_hbuf_put(b, "</div></div>");
    }
}

static void warnings_table(rp_hbuf *b, const cJSON *w)
{
    if (!cJSON_GetArraySize(w)) {
        rp_hbuf_put(b, "<p class=\"muted\">No warnings recorded.</p>");
        return;
    }
    rp_hbuf_put(b, "<table id=\"warnings\"><thead><tr><th>When</th><th>Kind</th><th>Detail</th>"
                   "</tr></thead><tbody>");
    const cJSON *e;
    cJSON_ArrayForEach(e, w)
    {
        rp_hbuf_put(b, "<tr><td>");
        rp_http_html_time(b, rp_http_jn(e, "at"));
        rp_hbuf_put(b, "</td><td>");
        rp_hbuf_esc(b, rp_http_js(e, "kind"));
        rp_hbuf_put(b, "</td><td class=\"mono\">");
        rp_hbuf_esc(b, rp_http_js(e, "detail"));
        rp_hbuf_put(b, "</td></tr>");
    }
    rp_hbuf_put(b, "</tbody></table>");
}

static void page_overview(rp_http_req *r, rp_hbuf *b)
{
    cJSON *j = rp_http_api_status(r);
    rp_http_page_begin(b, r, "Overview", "overview");
    if (!j) {
        rp_hbuf_put(b, "<p class=\"notice bad\">The index cannot be read.</p>");
        return;
    }
    const cJSON *nd = cJSON_GetObjectItem(j, "node"), *live = cJSON_GetObjectItem(j, "live");
    rp_hbuf_put(b, "<h1>Overview</h1><div class=\"grid\"><section class=\"card\"><h2>Node</h2>"
                   "<dl class=\"kv\"><dt>AE title</dt><dd id=\"ae-title\">");
    rp_hbuf_esc(b, rp_http_js(nd, "ae_title"));
    rp_hbuf_printf(b, "</dd><dt>DICOM port</dt><dd>%.0f", rp_http_jn(nd, "port"));
    if (rp_http_jn(nd, "tls_port") > 0)
        rp_hbuf_printf(b, " · TLS %.0f", rp_http_jn(nd, "tls_port"));
    rp_hbuf_put(b, "</dd><dt>Host</dt><dd>");
    rp_hbuf_esc(b, rp_http_js(nd, "hostname"));
    rp_hbuf_printf(b, " (pid %.0f)</dd><dt>Version</dt><dd>", rp_http_jn(nd, "pid"));
    rp_hbuf_esc(b, rp_http_js(nd, "version"));
    rp_hbuf_put(b, "</dd><dt>Started</dt><dd>");
    rp_http_html_time(b, rp_http_jn(nd, "started_at"));
    rp_hbuf_put(b, "</dd><dt>Uptime</dt><dd>");
    live_num(b, "node.uptime_s", rp_http_jn(nd, "uptime_s"), "duration");
    rp_hbuf_put(b, "</dd></dl></section>");

    rp_hbuf_put(b, "<section class=\"card\"><h2>Receiving</h2><div class=\"stat\"><div "
                   "class=\"label\">open associations</div><div class=\"big\">");
    live_num(b, "live.associations_open", rp_http_jn(live, "associations_open"), NULL);
    rp_hbuf_put(b, "</div></div><div class=\"stat\"><div class=\"label\">instances/s (1 min)"
                   "</div><div class=\"big\">");
    live_num(b, "live.rate_1m.instances_per_s", num_at(live, "rate_1m", "instances_per_s"), "rate");
    rp_hbuf_put(b, "</div></div><div class=\"stat\"><div class=\"label\">MB/s (1 min)</div>"
                   "<div class=\"big\">");
    live_num(b, "live.rate_1m.bytes_per_s", num_at(live, "rate_1m", "bytes_per_s"), "mbps");
    rp_hbuf_put(b, "</div></div>");
    sparkline(b, cJSON_GetObjectItem(live, "samples"));
    rp_hbuf_put(b, "<p class=\"muted\">5 min: ");
    live_num(b, "live.rate_5m.instances_per_s", num_at(live, "rate_5m", "instances_per_s"), "rate");
    rp_hbuf_put(b, " instances/s, ");
    live_num(b, "live.rate_5m.bytes_per_s", num_at(live, "rate_5m", "bytes_per_s"), "mbps");
    rp_hbuf_put(b, " MB/s · since start: ");
    live_num(b, "live.instances_received", rp_http_jn(live, "instances_received"), NULL);
    rp_hbuf_put(b, " instances, ");
    live_num(b, "live.bytes_received", rp_http_jn(live, "bytes_received"), "bytes");
    rp_hbuf_put(b, "</p></section>");

    double fr = rp_http_jn(j, "free_bytes"), tot = rp_http_jn(j, "total_bytes");
    double wm = rp_http_jn(j, "min_free_mb") * 1048576.0;
    rp_hbuf_put(b, "<section class=\"card\"><h2>Disk</h2><div class=\"big\">");
    live_num(b, "free_bytes", fr, "bytes");
    rp_hbuf_put(b, " <span class=\"muted\">free of ");
    rp_http_html_bytes(b, tot);
    rp_hbuf_printf(b,
                   "</span></div><meter data-k-free min=\"0\" max=\"1\" low=\"%.4f\" "
                   "optimum=\"1\" value=\"%.4f\"></meter><p>Watermark ",
                   tot > 0 ? wm / tot : 0, tot > 0 ? fr / tot : 0);
    rp_http_html_bytes(b, wm);
    cJSON *bw = cJSON_GetObjectItem(j, "below_watermark");
    rp_hbuf_put(b, cJSON_IsTrue(bw) ? ": <strong class=\"badge b-dead\">BELOW — stores are "
                                      "refused</strong>"
                                    : ": <span class=\"badge b-done\">ok</span>");
    rp_hbuf_put(b, "</p></section>");

    rp_hbuf_put(b, "<section class=\"card\"><h2>Index</h2><dl class=\"kv\">");
    static const char *const idx[] = {"patients", "studies", "series", "instances", NULL};
    for (int i = 0; idx[i]; i++) {
        rp_hbuf_printf(b, "<dt>%s</dt><dd class=\"big\">", idx[i]);
        live_num(b, idx[i], rp_http_jn(j, idx[i]), NULL);
        rp_hbuf_put(b, "</dd>");
    }
    rp_hbuf_put(b, "<dt>indexed</dt><dd>");
    live_num(b, "indexed_bytes", rp_http_jn(j, "indexed_bytes"), "bytes");
    rp_hbuf_put(b, "</dd><dt>associations</dt><dd>");
    live_num(b, "associations", rp_http_jn(j, "associations"), NULL);
    rp_hbuf_put(b, " served, ");
    live_num(b, "associations_refused", rp_http_jn(j, "associations_refused"), NULL);
    rp_hbuf_put(b, " refused</dd></dl></section></div>");

    static const char *const ss[] = {"receiving", "complete", "processing", "done", "failed", NULL};
    static const char *const js[] = {"queued", "running", "done", "failed", "dead", NULL};
    static const char *const os[] = {"pending", "sending", "done", "dead", NULL};
    rp_hbuf_put(b, "<section class=\"card\"><h2>Series by state</h2>");
    state_counts(b, j, "series_state", ss, "/series");
    rp_hbuf_put(b, "</section><div class=\"row\"><section class=\"card\"><h2>Jobs</h2>");
    state_counts(b, j, "jobs", js, "/jobs");
    rp_hbuf_put(b, "</section><section class=\"card\"><h2>Outbox</h2>");
    state_counts(b, j, "outbox", os, "/outbox");
    rp_hbuf_put(b, "</section></div><section class=\"card\"><h2>Latest warnings</h2>");
    warnings_table(b, cJSON_GetObjectItem(j, "warnings"));
    rp_hbuf_put(b, "</section>");
    cJSON_Delete(j);
}

/* ---- jobs / outbox --------------------------------------------------------------------------- */

static void pager(rp_hbuf *b, rp_http_req *r, const cJSON *j, const char *base)
{
    double total = rp_http_jn(j, "total"), page = rp_http_jn(j, "page"),
           per = rp_http_jn(j, "per_page");
    int pages = per > 0 ? (int)((total + per - 1) / per) : 1;
    if (pages < 1)
        pages = 1;
    rp_hbuf_printf(b,
                   "<div class=\"pager\"><span id=\"total\">%.0f</span> in all · page %.0f of "
                   "%d",
                   total, page, pages);
    const char *keys[] = {"q", "state", "modality", "destination", "series", NULL};
    for (int dir = -1; dir <= 1; dir += 2) {
        int to = (int)page + dir;
        if (to < 1 || to > pages)
            continue;
        rp_hbuf_printf(b, " <a href=\"%s?page=%d", base, to);
        for (int i = 0; keys[i]; i++) {
            const char *v = rp_http_arg(r, keys[i]);
            if (v && *v) {
                rp_hbuf_printf(b, "&amp;%s=", keys[i]);
                rp_hbuf_url(b, v);
            }
        }
        rp_hbuf_put(b, dir < 0 ? "\">‹ previous</a>" : "\">next ›</a>");
    }
    rp_hbuf_put(b, "</div>");
}

static void state_filter(rp_hbuf *b, rp_http_req *r, const char *action, const char *const *states)
{
    const char *cur = rp_http_arg(r, "state");
    rp_hbuf_printf(b,
                   "<form class=\"filters\" method=\"get\" action=\"%s\"><label>State "
                   "<select name=\"state\" data-autosubmit><option value=\"\">any</option>",
                   action);
    for (int i = 0; states[i]; i++)
        rp_hbuf_printf(b, "<option%s>%s</option>",
                       cur && strcmp(cur, states[i]) == 0 ? " selected" : "", states[i]);
    rp_hbuf_put(b, "</select></label><button type=\"submit\">Filter</button></form>");
}

static void page_jobs(rp_http_req *r, rp_hbuf *b)
{
    static const char *const js[] = {"queued", "running", "done", "failed", "dead", NULL};
    cJSON *j = rp_http_api_jobs(r);
    rp_http_page_begin(b, r, "Jobs", "jobs");
    rp_hbuf_put(b, "<h1>Jobs</h1><section class=\"card\">");
    state_filter(b, r, "/jobs", js);
    rp_hbuf_put(b, "<table id=\"jobs\"><thead><tr><th class=\"num\">Job</th><th>Series</th>"
                   "<th class=\"num\">Version</th><th>Kind</th><th>State</th><th class=\"num\">"
                   "Attempts</th><th>Created</th><th>Started</th><th>Finished</th><th>Reason</th>"
                   "<th></th></tr></thead><tbody>");
    const cJSON *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(j, "jobs"))
    {
        long long id = (long long)rp_http_jn(row, "id");
        const char *uid = rp_http_js(row, "series_uid");
        rp_hbuf_printf(b, "<tr data-job=\"%lld\"><td class=\"num\">%lld</td><td>", id, id);
        if (strncmp(rp_http_js(row, "kind"), "fuse:", 5) != 0) {
            rp_hbuf_put(b, "<a href=\"/series/");
            rp_hbuf_url(b, uid);
            rp_hbuf_put(b, "\">");
            rp_hbuf_esc(b, rp_http_js(row, "modality"));
            rp_hbuf_put(b, " ");
            rp_hbuf_esc(b, rp_http_js(row, "description")[0] ? rp_http_js(row, "description")
                                                             : "(no description)");
            rp_hbuf_put(b, "</a>");
        }
        rp_hbuf_put(b, "<div class=\"uid\">");
        rp_hbuf_esc(b, uid);
        rp_hbuf_printf(b, "</div></td><td class=\"num\">%.0f</td><td>", rp_http_jn(row, "version"));
        rp_hbuf_esc(b, rp_http_js(row, "kind"));
        rp_hbuf_put(b, "</td><td>");
        rp_http_html_state(b, rp_http_js(row, "state"));
        rp_hbuf_printf(b, "</td><td class=\"num\">%.0f/%.0f</td><td>", rp_http_jn(row, "attempts"),
                       rp_http_jn(row, "max_attempts"));
        rp_http_html_time(b, rp_http_jn(row, "created_at"));
        rp_hbuf_put(b, "</td><td>");
        rp_http_html_time(b, rp_http_jn(row, "started_at"));
        rp_hbuf_put(b, "</td><td>");
        rp_http_html_time(b, rp_http_jn(row, "finished_at"));
        rp_hbuf_put(b, "</td><td>");
        rp_hbuf_esc(b, rp_http_js(row, "reason"));
        rp_hbuf_printf(b, "</td><td><a href=\"/jobs/%lld/log\">log</a> ", id);
        const char *st = rp_http_js(row, "state");
        if (strcmp(st, "running") != 0 && strcmp(st, "queued") != 0) {
            char action[64];
            snprintf(action, sizeof action, "/api/v1/jobs/%lld/retry", id);
            rp_http_html_action(b, r, action, "Re-run", "/jobs");
        }
        rp_hbuf_put(b, "</td></tr>");
    }
    rp_hbuf_put(b, "</tbody></table>");
    pager(b, r, j, "/jobs");
    rp_hbuf_put(b, "</section>");
    cJSON_Delete(j);
}

static void page_outbox(rp_http_req *r, rp_hbuf *b)
{
    static const char *const os[] = {"pending", "sending", "done", "dead", NULL};
    cJSON *j = rp_http_api_outbox(r);
    rp_http_page_begin(b, r, "Outbox", "outbox");
    rp_hbuf_put(b, "<h1>Outbox</h1><section class=\"card\"><h2>By destination</h2><table><thead>"
                   "<tr><th>Destination</th><th>State</th><th class=\"num\">Instances</th></tr>"
                   "</thead><tbody>");
    const cJSON *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(j, "by_destination"))
    {
        rp_hbuf_put(b, "<tr><td>");
        rp_hbuf_esc(b, rp_http_js(row, "destination"));
        rp_hbuf_put(b, "</td><td>");
        rp_http_html_state(b, rp_http_js(row, "state"));
        rp_hbuf_printf(b, "</td><td class=\"num\">%.0f</td></tr>", rp_http_jn(row, "n"));
    }
    rp_hbuf_put(b, "</tbody></table></section><section class=\"card\">");
    state_filter(b, r, "/outbox", os);
    rp_hbuf_put(b, "<table id=\"outbox\"><thead><tr><th class=\"num\">Id</th><th>Destination</th>"
                   "<th>State</th><th class=\"num\">Attempts</th><th>Next attempt</th><th>Last "
                   "status</th><th>Reason</th><th>File</th><th></th></tr></thead><tbody>");
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(j, "entries"))
    {
        long long id = (long long)rp_http_jn(row, "id");
        rp_hbuf_printf(b, "<tr><td class=\"num\">%lld</td><td>", id);
        rp_hbuf_esc(b, rp_http_js(row, "destination"));
        rp_hbuf_put(b, "</td><td>");
        rp_http_html_state(b, rp_http_js(row, "state"));
        rp_hbuf_printf(b, "</td><td class=\"num\">%.0f</td><td>", rp_http_jn(row, "attempts"));
        if (strcmp(rp_http_js(row, "state"), "pending") == 0)
            rp_http_html_time(b, rp_http_jn(row, "next_attempt_at"));
        double ls = rp_http_jn(row, "last_status");
        rp_hbuf_put(b, "</td><td class=\"mono\">");
        if (ls >= 0)
            rp_hbuf_printf(b, "0x%04X", (unsigned)ls);
        rp_hbuf_put(b, "</td><td>");
        rp_hbuf_esc(b, rp_http_js(row, "last_reason"));
        rp_hbuf_put(b, "</td><td class=\"uid\">");
        const char *f = rp_http_js(row, "file_path"), *slash = strrchr(f, '/');
        rp_hbuf_esc(b, slash ? slash + 1 : f);
        rp_hbuf_put(b, "</td><td>");
        if (strcmp(rp_http_js(row, "state"), "dead") == 0) {
            char action[64];
            snprintf(action, sizeof action, "/api/v1/outbox/%lld/retry", id);
            rp_http_html_action(b, r, action, "Retry", "/outbox");
        }
        rp_hbuf_put(b, "</td></tr>");
    }
    rp_hbuf_put(b, "</tbody></table>");
    pager(b, r, j, "/outbox");
    rp_hbuf_put(b, "</section>");
    cJSON_Delete(j);
}

/* ---- peers / configuration / login ----------------------------------------------------------- */

static void yes(rp_hbuf *b, const cJSON *o, const char *k)
{
    rp_hbuf_put(b, cJSON_IsTrue(cJSON_GetObjectItem(o, k)) ? "yes"
                                                           : "<span class=\"muted\">no"
                                                             "</span>");
}

static void page_peers(rp_http_req *r, rp_hbuf *b)
{
    cJSON *j = rp_http_api_peers(r);
    rp_http_page_begin(b, r, "Peers", "peers");
    rp_hbuf_put(b, "<h1>Peers</h1><section class=\"card\"><h2>Configured peers</h2>");
    const cJSON *peers = cJSON_GetObjectItem(j, "peers"), *p;
    if (!cJSON_GetArraySize(peers))
        rp_hbuf_put(b, "<p class=\"notice info\">No [peer] sections: any calling AE title may "
                       "store.</p>");
    rp_hbuf_put(b, "<table id=\"peers\"><thead><tr><th>Name</th><th>AE title</th><th>Host</th>"
                   "<th>Store</th><th>Destination</th><th>TLS</th><th>Certificate binding</th>"
                   "<th>Last association</th><th class=\"num\">Instances</th><th class=\"num\">"
                   "Series</th><th>Sent</th></tr></thead><tbody>");
    cJSON_ArrayForEach(p, peers)
    {
        rp_hbuf_put(b, "<tr><td>");
        rp_hbuf_esc(b, rp_http_js(p, "name"));
        rp_hbuf_put(b, "</td><td class=\"mono\">");
        rp_hbuf_esc(b, rp_http_js(p, "ae_title"));
        rp_hbuf_put(b, "</td><td>");
        rp_hbuf_esc(b, rp_http_js(p, "host")[0] ? rp_http_js(p, "host") : "any");
        if (rp_http_jn(p, "port") > 0)
            rp_hbuf_printf(b, ":%.0f", rp_http_jn(p, "port"));
        rp_hbuf_put(b, "</td><td>");
        yes(b, p, "store");
        rp_hbuf_put(b, "</td><td>");
        yes(b, p, "destination");
        rp_hbuf_put(b, "</td><td>");
        rp_hbuf_put(b, cJSON_IsTrue(cJSON_GetObjectItem(p, "tls_only")) ? "TLS only"
                                                                        : "plain or "
                                                                          "TLS");
        const cJSON *tb = cJSON_GetObjectItem(p, "tls_binding");
        rp_hbuf_put(b, "</td><td class=\"uid\">");
        if (rp_http_js(tb, "cert_subject")[0]) {
            rp_hbuf_put(b, "subject ");
            rp_hbuf_esc(b, rp_http_js(tb, "cert_subject"));
        }
        if (rp_http_js(tb, "cert_fingerprint")[0]) {
            rp_hbuf_put(b, " sha256 ");
            rp_hbuf_esc(b, rp_http_js(tb, "cert_fingerprint"));
        }
        rp_hbuf_put(b, "</td><td>");
        const cJSON *la = cJSON_GetObjectItem(p, "last_association");
        if (cJSON_IsObject(la)) {
            rp_http_html_time(b, rp_http_jn(la, "at"));
            rp_hbuf_put(b, "<div class=\"uid\">");
            rp_hbuf_esc(b, rp_http_js(la, "detail"));
            rp_hbuf_put(b, "</div>");
        } else {
            rp_hbuf_put(b, "<span class=\"muted\">never</span>");
        }
        rp_hbuf_printf(b, "</td><td class=\"num\">%.0f</td><td class=\"num\">%.0f</td><td>",
                       rp_http_jn(p, "instances"), rp_http_jn(p, "series"));
        const cJSON *ob = cJSON_GetObjectItem(p, "outbox"), *s;
        cJSON_ArrayForEach(s, ob)
        {
            rp_http_html_state(b, s->string);
            rp_hbuf_printf(b, " %.0f ", s->valuedouble);
        }
        rp_hbuf_put(b, "</td></tr>");
    }
    rp_hbuf_put(b, "</tbody></table></section><section class=\"card\"><h2>Other senders</h2>"
                   "<table id=\"senders\"><thead><tr><th>Calling AE</th><th>Last host</th>"
                   "<th>Last received</th><th class=\"num\">Instances</th><th class=\"num\">"
                   "Series</th><th class=\"num\">Bytes</th></tr></thead><tbody>");
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(j, "other_senders"))
    {
        rp_hbuf_put(b, "<tr><td class=\"mono\">");
        rp_hbuf_esc(b, rp_http_js(p, "calling_ae"));
        rp_hbuf_put(b, "</td><td>");
        rp_hbuf_esc(b, rp_http_js(p, "last_host"));
        rp_hbuf_put(b, "</td><td>");
        rp_http_html_time(b, rp_http_jn(p, "last_received"));
        rp_hbuf_printf(b,
                       "</td><td class=\"num\">%.0f</td><td class=\"num\">%.0f</td><td "
                       "class=\"num\">",
                       rp_http_jn(p, "instances"), rp_http_jn(p, "series"));
        rp_http_html_bytes(b, rp_http_jn(p, "bytes"));
        rp_hbuf_put(b, "</td></tr>");
    }
    rp_hbuf_put(b, "</tbody></table></section>");
    cJSON_Delete(j);
}

/* A JSON object of scalars as a two-column table. */
static void kv_table(rp_hbuf *b, const cJSON *o)
{
    rp_hbuf_put(b, "<dl class=\"kv\">");
    const cJSON *it;
    cJSON_ArrayForEach(it, o)
    {
        rp_hbuf_put(b, "<dt>");
        rp_hbuf_esc(b, it->string);
        rp_hbuf_put(b, "</dt><dd class=\"mono\">");
        if (cJSON_IsString(it))
            rp_hbuf_esc(b, it->valuestring[0] ? it->valuestring : "—");
        else if (cJSON_IsBool(it))
            rp_hbuf_put(b, cJSON_IsTrue(it) ? "yes" : "no");
        else if (cJSON_IsNumber(it))
            rp_hbuf_printf(b, "%g", it->valuedouble);
        rp_hbuf_put(b, "</dd>");
    }
    rp_hbuf_put(b, "</dl>");
}

static void list_table(rp_hbuf *b, const cJSON *arr, const char *id)
{
    const cJSON *first = cJSON_GetArrayItem(arr, 0), *it, *row;
    if (!first) {
        rp_hbuf_put(b, "<p class=\"muted\">none</p>");
        return;
    }
    rp_hbuf_printf(b, "<table id=\"%s\"><thead><tr>", id);
    cJSON_ArrayForEach(it, first)
    {
        rp_hbuf_put(b, "<th>");
        rp_hbuf_esc(b, it->string);
        rp_hbuf_put(b, "</th>");
    }
    rp_hbuf_put(b, "</tr></thead><tbody>");
    cJSON_ArrayForEach(row, arr)
    {
        rp_hbuf_put(b, "<tr>");
        cJSON_ArrayForEach(it, row)
        {
            rp_hbuf_put(b, "<td class=\"mono\">");
            if (cJSON_IsString(it))
                rp_hbuf_esc(b, it->valuestring);
            else if (cJSON_IsBool(it))
                rp_hbuf_put(b, cJSON_IsTrue(it) ? "yes" : "no");
            else if (cJSON_IsNumber(it))
                rp_hbuf_printf(b, "%g", it->valuedouble);
            else if (cJSON_IsArray(it)) {
                const cJSON *e;
                cJSON_ArrayForEach(e, it) if (cJSON_IsString(e))
                {
                    rp_hbuf_esc(b, e->valuestring);
                    rp_hbuf_put(b, " ");
                }
            }
            rp_hbuf_put(b, "</td>");
        }
        rp_hbuf_put(b, "</tr>");
    }
    rp_hbuf_put(b, "</tbody></table>");
}

static void page_config(rp_http_req *r, rp_hbuf *b)
{
    cJSON *j = rp_http_api_config(r);
    rp_http_page_begin(b, r, "Configuration", "config");
    rp_hbuf_put(b, "<h1>Configuration</h1><p class=\"muted\">Read-only; loaded from ");
    rp_hbuf_esc(b, rp_http_js(j, "source"));
    rp_hbuf_put(b, ". Secrets and key paths are redacted. Change the file and restart the node "
                   "(<code>radprep check-config</code> first).</p><div class=\"grid\">");
    static const char *const sect[] = {"node", "tls", "http", NULL};
    for (int i = 0; sect[i]; i++) {
        rp_hbuf_printf(b, "<section class=\"card\" id=\"conf-%s\"><h2>[%s]</h2>", sect[i], sect[i]);
        kv_table(b, cJSON_GetObjectItem(j, sect[i]));
        rp_hbuf_put(b, "</section>");
    }
    rp_hbuf_put(b, "</div>");
    static const char *const lists[] = {"peers", "completion", "rules", "fusions", NULL};
    for (int i = 0; lists[i]; i++) {
        rp_hbuf_printf(b, "<section class=\"card\"><h2>%s</h2>", lists[i]);
        char id[32];
        snprintf(id, sizeof id, "conf-%s", lists[i]);
        list_table(b, cJSON_GetObjectItem(j, lists[i]), id);
        rp_hbuf_put(b, "</section>");
    }
    cJSON_Delete(j);
}

static void page_login(rp_http_req *r, rp_hbuf *b)
{
    rp_http_page_begin(b, r, "Log in", "");
    rp_hbuf_put(b, "<section class=\"card login\"><h1>Log in</h1>");
    if (!r->h->token[0]) {
        rp_hbuf_put(b, "<p class=\"notice info\">This node has no [http] token_file: the "
                       "console is read-only.</p></section>");
        return;
    }
    const char *next = rp_http_arg(r, "next");
    rp_hbuf_put(b,
                "<form method=\"post\" action=\"/login\"><label>Access token<input "
                "type=\"password\" name=\"token\" id=\"token\" autocomplete=\"current-password\" "
                "required autofocus></label><input type=\"hidden\" name=\"next\" value=\"");
    rp_hbuf_esc(b, next && next[0] == '/' ? next : "/");
    rp_hbuf_put(b, "\"><button class=\"primary\" type=\"submit\" id=\"login\">Log in</button>"
                   "</form><p class=\"muted\">The token is the content of the node's [http] "
                   "token_file.</p></section>");
}

/* ---- router ---------------------------------------------------------------------------------- */

void rp_http_page(rp_http_req *r, rp_http_resp *o)
{
    const char *p = r->path;
    rp_hbuf b;
    rp_hbuf_init(&b);
    int status = 200;
    if (strcmp(p, "/") == 0)
        page_overview(r, &b);
    else if (strcmp(p, "/series") == 0)
        rp_http_page_series_list(r, &b);
    else if (strncmp(p, "/series/", 8) == 0)
        rp_http_page_series(r, &b, p + 8, &status);
    else if (strcmp(p, "/jobs") == 0)
        page_jobs(r, &b);
    else if (strcmp(p, "/outbox") == 0)
        page_outbox(r, &b);
    else if (strcmp(p, "/peers") == 0)
        page_peers(r, &b);
    else if (strcmp(p, "/config") == 0)
        page_config(r, &b);
    else if (strcmp(p, "/login") == 0)
        page_login(r, &b);
    else {
        rp_hbuf_free(&b);
        rp_http_resp_error(r, o, 404, "no such page");
        return;
    }
    rp_http_page_end(&b, r);
    size_t len = 0;
    char *body = rp_hbuf_take(&b, &len);
    rp_http_resp_text(o, body ? status : 500, "text/html; charset=utf-8", body, len);
}
