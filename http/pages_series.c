/*
 * http/pages_series — the searchable series list and the series page: completion evidence,
 * versions, jobs with their logs, outputs (the QC montage as an image, the QC report as
 * tables, NIfTI/JSON downloads), derived DICOM and its delivery per destination.
 */
#include "http/http_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/common.h"

/* ---- list ------------------------------------------------------------------------------------ */

static void search_form(rp_hbuf *b, rp_http_req *r)
{
    static const char *const ss[] = {"receiving", "complete", "processing", "done", "failed", NULL};
    const char *q = rp_http_arg(r, "q"), *st = rp_http_arg(r, "state"),
               *mod = rp_http_arg(r, "modality");
    rp_hbuf_put(b, "<form class=\"filters\" method=\"get\" action=\"/series\"><input "
                   "type=\"search\" name=\"q\" id=\"q\" placeholder=\"patient, description, UID, "
                   "accession, date (YYYYMMDD)\" value=\"");
    rp_hbuf_esc(b, q ? q : "");
    rp_hbuf_put(b, "\"><select name=\"state\"><option value=\"\">any state</option>");
    for (int i = 0; ss[i]; i++)
        rp_hbuf_printf(b, "<option%s>%s</option>", st && strcmp(st, ss[i]) == 0 ? " selected" : "",
                       ss[i]);
    rp_hbuf_put(b, "</select><input name=\"modality\" size=\"6\" placeholder=\"modality\" "
                   "value=\"");
    rp_hbuf_esc(b, mod ? mod : "");
    rp_hbuf_put(b, "\"><button class=\"primary\" type=\"submit\">Search</button>"
                   "<a href=\"/series\">clear</a></form>");
}

static void date8(rp_hbuf *b, const char *d)
{
    if (strlen(d) == 8)
        rp_hbuf_printf(b, "%.4s-%.2s-%.2s", d, d + 4, d + 6);
    else
        rp_hbuf_esc(b, d[0] ? d : "—");
}

void rp_http_page_series_list(rp_http_req *r, rp_hbuf *b)
{
    cJSON *j = rp_http_api_series_list(r);
    rp_http_page_begin(b, r, "Series", "series");
    rp_hbuf_put(b, "<h1>Studies and series</h1><section class=\"card\">");
    search_form(b, r);
    rp_hbuf_put(b, "<table id=\"series\"><thead><tr><th>Patient</th><th>Study date</th>"
                   "<th>Modality</th><th class=\"num\">#</th><th>Description</th>"
                   "<th class=\"num\">Instances</th><th>State</th><th class=\"num\">Version</th>"
                   "<th>Last received</th></tr></thead><tbody>");
    const cJSON *row;
    int n = 0;
    cJSON_ArrayForEach(row, cJSON_GetObjectItem(j, "series"))
    {
        const char *uid = rp_http_js(row, "series_uid");
        n++;
        rp_hbuf_put(b, "<tr data-series=\"");
        rp_hbuf_esc(b, uid);
        rp_hbuf_put(b, "\"><td>");
        const char *pn = rp_http_js(row, "patient_name"), *pid = rp_http_js(row, "patient_id");
        rp_hbuf_esc(b, pn[0] ? pn : pid);
        if (pn[0]) {
            rp_hbuf_put(b, "<div class=\"uid\">");
            rp_hbuf_esc(b, pid);
            rp_hbuf_put(b, "</div>");
        }
        rp_hbuf_put(b, "</td><td>");
        date8(b, rp_http_js(row, "study_date"));
        rp_hbuf_put(b, "</td><td>");
        rp_hbuf_esc(b, rp_http_js(row, "modality"));
        rp_hbuf_put(b, "</td><td class=\"num\">");
        if (rp_http_jn(row, "number") >= 0)
            rp_hbuf_printf(b, "%.0f", rp_http_jn(row, "number"));
        rp_hbuf_put(b, "</td><td><a href=\"/series/");
        rp_hbuf_url(b, uid);
        rp_hbuf_put(b, "\">");
        rp_hbuf_esc(b, rp_http_js(row, "description")[0] ? rp_http_js(row, "description")
                                                         : "(no description)");
        rp_hbuf_put(b, "</a><div class=\"uid\">");
        rp_hbuf_esc(b, uid);
        rp_hbuf_printf(b, "</div></td><td class=\"num\">%.0f", rp_http_jn(row, "instances"));
        if (rp_http_jn(row, "expected") > 0)
            rp_hbuf_printf(b, " <span class=\"muted\">/ %.0f</span>", rp_http_jn(row, "expected"));
        rp_hbuf_put(b, "</td><td>");
        rp_http_html_state(b, rp_http_js(row, "state"));
        rp_hbuf_printf(b, "</td><td class=\"num\">%.0f</td><td>", rp_http_jn(row, "version"));
        rp_http_html_time(b, rp_http_jn(row, "last_seen"));
        rp_hbuf_put(b, "</td></tr>");
    }
    if (!n)
        rp_hbuf_put(b, "<tr><td colspan=\"9\" class=\"muted\">No series match.</td></tr>");
    rp_hbuf_put(b, "</tbody></table>");
    double total = rp_http_jn(j, "total"), page = rp_http_jn(j, "page"),
           per = rp_http_jn(j, "per_page");
    int pages = per > 0 ? (int)((total + per - 1) / per) : 1;
    rp_hbuf_printf(b,
                   "<div class=\"pager\"><span id=\"total\">%.0f</span> series · page %.0f "
                   "of %d",
                   total, page, pages < 1 ? 1 : pages);
    for (int dir = -1; dir <= 1; dir += 2) {
        int to = (int)page + dir;
        if (to < 1 || to > pages)
            continue;
        rp_hbuf_printf(b, " <a href=\"/series?page=%d", to);
        static const char *const keys[] = {"q", "state", "modality"};
        for (int i = 0; i < 3; i++) {
            const char *v = rp_http_arg(r, keys[i]);
            if (v && *v) {
                rp_hbuf_printf(b, "&amp;%s=", keys[i]);
                rp_hbuf_url(b, v);
            }
        }
        rp_hbuf_put(b, dir < 0 ? "\">‹ previous</a>" : "\">next ›</a>");
    }
    rp_hbuf_put(b, "</div></section>");
    cJSON_Delete(j);
}

/* ---- the QC report as tables ----------------------------------------------------------------- */

static void qc_value(rp_hbuf *b, const cJSON *v, int depth);

static void qc_scalar(rp_hbuf *b, const cJSON *v)
{
    if (cJSON_IsString(v))
        rp_hbuf_esc(b, v->valuestring);
    else if (cJSON_IsBool(v))
        rp_hbuf_put(b, cJSON_IsTrue(v) ? "yes" : "no");
    else if (cJSON_IsNumber(v) && v->valuedouble == (double)(long long)v->valuedouble)
        rp_hbuf_printf(b, "%lld", (long long)v->valuedouble);
    else if (cJSON_IsNumber(v))
        rp_hbuf_printf(b, "%.6g", v->valuedouble);
    else if (cJSON_IsNull(v))
        rp_hbuf_put(b, "—");
}

static int all_scalars(const cJSON *arr)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, arr) if (cJSON_IsObject(e) || cJSON_IsArray(e)) return 0;
    return 1;
}

/* An array of objects: one row each, columns = the keys of the first (up to 12). */
static void qc_rows(rp_hbuf *b, const cJSON *arr, int depth)
{
    const cJSON *first = cJSON_GetArrayItem(arr, 0), *k, *row;
    int n = cJSON_GetArraySize(arr), shown = 0;
    if (n > 12)
        rp_hbuf_printf(b, "<details><summary>%d rows</summary>", n);
    rp_hbuf_put(b, "<table><thead><tr>");
    int cols = 0;
    cJSON_ArrayForEach(k, first) if (cols++ < 12)
    {
        rp_hbuf_put(b, "<th>");
        rp_hbuf_esc(b, k->string);
        rp_hbuf_put(b, "</th>");
    }
    rp_hbuf_put(b, "</tr></thead><tbody>");
    cJSON_ArrayForEach(row, arr)
    {
        if (shown++ >= 500)
            break;
        rp_hbuf_put(b, "<tr>");
        int c = 0;
        cJSON_ArrayForEach(k, first) if (c++ < 12)
        {
            rp_hbuf_put(b, "<td>");
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, k->string);
            if (v)
                qc_value(b, v, depth + 1);
            rp_hbuf_put(b, "</td>");
        }
        rp_hbuf_put(b, "</tr>");
    }
    rp_hbuf_put(b, "</tbody></table>");
    if (n > 12)
        rp_hbuf_put(b, "</details>");
}

static void qc_value(rp_hbuf *b, const cJSON *v, int depth)
{
    if (depth > 5) {
        rp_hbuf_put(b, "…");
        return;
    }
    if (cJSON_IsObject(v)) {
        rp_hbuf_put(b, "<table><tbody>");
        const cJSON *k;
        cJSON_ArrayForEach(k, v)
        {
            rp_hbuf_put(b, "<tr><th>");
            rp_hbuf_esc(b, k->string);
            rp_hbuf_put(b, "</th><td>");
            qc_value(b, k, depth + 1);
            rp_hbuf_put(b, "</td></tr>");
        }
        rp_hbuf_put(b, "</tbody></table>");
    } else if (cJSON_IsArray(v)) {
        if (all_scalars(v)) {
            const cJSON *e;
            int i = 0, n = cJSON_GetArraySize(v);
            if (n > 8)
                rp_hbuf_printf(b, "<details><summary>%d values</summary>", n);
            cJSON_ArrayForEach(e, v)
            {
                if (i++ >= 64) {
                    rp_hbuf_put(b, " …");
                    break;
                }
                if (i > 1)
                    rp_hbuf_put(b, n > 8 ? "<br>" : ", ");
                qc_scalar(b, e);
            }
            if (n > 8)
                rp_hbuf_put(b, "</details>");
        } else {
            qc_rows(b, v, depth);
        }
    } else {
        qc_scalar(b, v);
    }
}

static void qc_report(rp_hbuf *b, const char *path)
{
    struct stat st;
    char *txt = NULL;
    size_t len = 0;
    if (stat(path, &st) != 0 || st.st_size > 4 * 1024 * 1024 || rp_read_file(path, &txt, &len)) {
        rp_hbuf_put(b, "<p class=\"muted\">QC report not readable.</p>");
        return;
    }
    cJSON *j = cJSON_ParseWithLength(txt, len);
    free(txt);
    if (!j) {
        rp_hbuf_put(b, "<p class=\"muted\">QC report is not valid JSON.</p>");
        return;
    }
    rp_hbuf_put(b, "<div class=\"qc-table\" id=\"qc-report\">");
    qc_value(b, j, 0);
    rp_hbuf_put(b, "</div>");
    cJSON_Delete(j);
}

/* ---- the series page ------------------------------------------------------------------------- */

static void evidence(rp_hbuf *b, const cJSON *j)
{
    const cJSON *ev = cJSON_GetObjectItem(j, "completion");
    rp_hbuf_put(b, "<section class=\"card\" id=\"evidence\"><h2>Completion evidence</h2>"
                   "<dl class=\"kv\"><dt>Reason</dt><dd>");
    const char *reason = rp_http_js(ev, "reason");
    if (!reason[0])
        rp_hbuf_put(b, "<span class=\"muted\">not complete yet</span>");
    else if (strcmp(reason, "quiet") == 0)
        rp_hbuf_printf(b, "<strong>quiet</strong>: no instance for %.0f s",
                       rp_http_jn(ev, "quiet_s"));
    else if (strcmp(reason, "expected_count") == 0)
        rp_hbuf_put(b, "<strong>expected count</strong> reached (from the headers)");
    else
        rp_hbuf_printf(b, "<strong>%s</strong>",
                       strcmp(reason, "operator") == 0 ? "operator" : "other");
    rp_hbuf_printf(b, "</dd><dt>Instances</dt><dd>%.0f", rp_http_jn(ev, "instances"));
    if (rp_http_jn(ev, "expected") > 0)
        rp_hbuf_printf(b, " of %.0f expected", rp_http_jn(ev, "expected"));
    rp_hbuf_put(b, "</dd><dt>Last instance</dt><dd>");
    rp_http_html_time(b, rp_http_jn(ev, "last_instance_at"));
    rp_hbuf_put(b, "</dd><dt>Completed</dt><dd>");
    rp_http_html_time(b, rp_http_jn(ev, "completed_at"));
    if (rp_http_jn(ev, "latency_s") >= 0)
        rp_hbuf_printf(b, " (%.1f s after the last instance)", rp_http_jn(ev, "latency_s"));
    rp_hbuf_printf(b, "</dd><dt>Rule</dt><dd>quiet_s = %.0f, use_expected_count = %s</dd></dl>",
                   rp_http_jn(ev, "quiet_s"),
                   cJSON_IsTrue(cJSON_GetObjectItem(ev, "use_expected_count")) ? "yes" : "no");
    const cJSON *e;
    rp_hbuf_put(b, "<h3>Events</h3><table id=\"series-events\"><tbody>");
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(j, "events"))
    {
        rp_hbuf_put(b, "<tr><td>");
        rp_http_html_time(b, rp_http_jn(e, "at"));
        rp_hbuf_put(b, "</td><td>");
        rp_hbuf_esc(b, rp_http_js(e, "kind"));
        rp_hbuf_put(b, "</td><td class=\"mono\">");
        rp_hbuf_esc(b, rp_http_js(e, "detail"));
        rp_hbuf_put(b, "</td></tr>");
    }
    rp_hbuf_put(b, "</tbody></table></section>");
}

static void outputs_block(rp_hbuf *b, const cJSON *outs)
{
    const cJSON *o;
    const char *qc_json = NULL;
    cJSON_ArrayForEach(o, outs)
    {
        const char *name = rp_http_js(o, "name");
        size_t nl = strlen(name);
        if (nl > 7 && strcmp(name + nl - 7, "_qc.png") == 0) {
            rp_hbuf_put(b, "<h3>QC montage</h3><img class=\"qc\" alt=\"QC montage\" src=\"");
            rp_hbuf_esc(b, rp_http_js(o, "url"));
            rp_hbuf_put(b, "\">");
        }
        if (strcmp(name, "qc.json") == 0)
            qc_json = rp_http_js(o, "path");
    }
    rp_hbuf_put(b, "<h3>Files</h3><table class=\"outputs\"><thead><tr><th>File</th><th>Kind</th>"
                   "<th class=\"num\">Size</th><th>sha256</th></tr></thead><tbody>");
    int dicom = 0;
    cJSON_ArrayForEach(o, outs)
    {
        const char *kind = rp_http_js(o, "kind");
        if (strcmp(kind, "dicom") == 0 || strcmp(kind, "seg") == 0) {
            dicom++;
            if (dicom > 3)
                continue; /* derived instances are summarised with their delivery */
        }
        rp_hbuf_put(b, "<tr><td><a href=\"");
        rp_hbuf_esc(b, rp_http_js(o, "url"));
        rp_hbuf_put(b, "?download=1\">");
        rp_hbuf_esc(b, rp_http_js(o, "name"));
        rp_hbuf_put(b, "</a></td><td>");
        rp_hbuf_esc(b, kind);
        rp_hbuf_put(b, "</td><td class=\"num\">");
        rp_http_html_bytes(b, rp_http_jn(o, "bytes"));
        rp_hbuf_put(b, "</td><td class=\"uid\">");
        rp_hbuf_esc(b, rp_http_js(o, "sha256"));
        rp_hbuf_put(b, "</td></tr>");
    }
    if (dicom > 3)
        rp_hbuf_printf(b,
                       "<tr><td colspan=\"4\" class=\"muted\">… and %d more derived DICOM "
                       "instances</td></tr>",
                       dicom - 3);
    rp_hbuf_put(b, "</tbody></table>");
    if (qc_json) {
        rp_hbuf_put(b, "<h3>QC report</h3>");
        qc_report(b, qc_json);
    }
}

static void delivery_block(rp_hbuf *b, const cJSON *derived)
{
    double n = rp_http_jn(derived, "dicom_instances"), seg = rp_http_jn(derived, "seg_instances");
    if (n <= 0 && seg <= 0)
        return;
    rp_hbuf_printf(b, "<h3>Derived series</h3><p>%.0f derived DICOM instance%s, %.0f SEG</p>", n,
                   n == 1 ? "" : "s", seg);
    const cJSON *del = cJSON_GetObjectItem(derived, "delivery"), *d;
    if (!cJSON_GetArraySize(del)) {
        rp_hbuf_put(b, "<p class=\"muted\">No destination (the rule has no send_to).</p>");
        return;
    }
    rp_hbuf_put(b, "<table class=\"delivery\"><thead><tr><th>Destination</th><th>State</th><th "
                   "class=\"num\">Instances</th><th class=\"num\">Attempts</th><th>Updated</th>"
                   "<th>Last reason</th></tr></thead><tbody>");
    cJSON_ArrayForEach(d, del)
    {
        rp_hbuf_put(b, "<tr><td>");
        rp_hbuf_esc(b, rp_http_js(d, "destination"));
        rp_hbuf_put(b, "</td><td>");
        rp_http_html_state(b, rp_http_js(d, "state"));
        rp_hbuf_printf(b, "</td><td class=\"num\">%.0f</td><td class=\"num\">%.0f</td><td>",
                       rp_http_jn(d, "instances"), rp_http_jn(d, "attempts"));
        rp_http_html_time(b, rp_http_jn(d, "updated_at"));
        rp_hbuf_put(b, "</td><td>");
        rp_hbuf_esc(b, rp_http_js(d, "last_reason"));
        rp_hbuf_put(b, "</td></tr>");
    }
    rp_hbuf_put(b, "</tbody></table>");
}

static void job_block(rp_hbuf *b, rp_http_req *r, const cJSON *job, const char *next)
{
    long long id = (long long)rp_http_jn(job, "id");
    const char *st = rp_http_js(job, "state");
    rp_hbuf_printf(b, "<div class=\"job\" id=\"job-%lld\"><h3>Job %lld · ", id, id);
    rp_hbuf_esc(b, rp_http_js(job, "kind"));
    rp_hbuf_put(b, "</h3><p>");
    rp_http_html_state(b, st);
    rp_hbuf_printf(b, " attempt %.0f of %.0f · started ", rp_http_jn(job, "attempts"),
                   rp_http_jn(job, "max_attempts"));
    rp_http_html_time(b, rp_http_jn(job, "started_at"));
    rp_hbuf_put(b, " · finished ");
    rp_http_html_time(b, rp_http_jn(job, "finished_at"));
    if (rp_http_js(job, "reason")[0]) {
        rp_hbuf_put(b, " · <span class=\"muted\">");
        rp_hbuf_esc(b, rp_http_js(job, "reason"));
        rp_hbuf_put(b, "</span>");
    }
    rp_hbuf_put(b, " ");
    if (strcmp(st, "running") != 0 && strcmp(st, "queued") != 0) {
        char action[64];
        snprintf(action, sizeof action, "/api/v1/jobs/%lld/retry", id);
        rp_http_html_action(b, r, action, "Re-run job", next);
    }
    rp_hbuf_put(b, "</p>");
    size_t len = 0;
    char *log = rp_http_job_log(r->h, id, 6000, &len);
    if (log) {
        rp_hbuf_printf(b,
                       "<details><summary>log (tail) · <a href=\"/jobs/%lld/log\">full log"
                       "</a></summary><pre class=\"log\">",
                       id);
        rp_hbuf_esc(b, log);
        rp_hbuf_put(b, "</pre></details>");
        free(log);
    }
    const cJSON *outs = cJSON_GetObjectItem(job, "outputs");
    if (cJSON_GetArraySize(outs))
        outputs_block(b, outs);
    delivery_block(b, cJSON_GetObjectItem(job, "derived"));
    rp_hbuf_put(b, "</div>");
}

void rp_http_page_series(rp_http_req *r, rp_hbuf *b, const char *uid, int *status)
{
    cJSON *j = rp_http_api_series(r, uid);
    if (!j) {
        *status = 404;
        rp_http_page_begin(b, r, "Unknown series", "series");
        rp_hbuf_put(b, "<h1>No such series</h1><p class=\"notice bad\">The index has no series "
                       "with this UID.</p>");
        return;
    }
    const cJSON *s = cJSON_GetObjectItem(j, "series");
    char next[RP_UID_MAX + 16];
    snprintf(next, sizeof next, "/series/%s", uid);
    rp_http_page_begin(
        b, r, rp_http_js(s, "description")[0] ? rp_http_js(s, "description") : "Series", "series");
    rp_hbuf_put(b, "<p><a href=\"/series\">‹ all series</a></p><h1>");
    rp_hbuf_esc(b, rp_http_js(s, "modality"));
    rp_hbuf_put(b, " · ");
    rp_hbuf_esc(b, rp_http_js(s, "description")[0] ? rp_http_js(s, "description")
                                                   : "(no description)");
    rp_hbuf_put(b, " ");
    rp_http_html_state(b, rp_http_js(s, "state"));
    rp_hbuf_put(b, "</h1><div class=\"row\"><section class=\"card\"><h2>Series</h2><dl "
                   "class=\"kv\"><dt>Patient</dt><dd>");
    rp_hbuf_esc(b, rp_http_js(s, "patient_name"));
    rp_hbuf_put(b, " <span class=\"uid\">");
    rp_hbuf_esc(b, rp_http_js(s, "patient_id"));
    rp_hbuf_put(b, "</span></dd><dt>Study</dt><dd>");
    date8(b, rp_http_js(s, "study_date"));
    rp_hbuf_put(b, " ");
    rp_hbuf_esc(b, rp_http_js(s, "study_description"));
    rp_hbuf_put(b, "<div class=\"uid\">");
    rp_hbuf_esc(b, rp_http_js(s, "study_uid"));
    rp_hbuf_put(b, "</div></dd><dt>Series UID</dt><dd class=\"uid\" id=\"series-uid\">");
    rp_hbuf_esc(b, uid);
    rp_hbuf_put(b, "</dd><dt>Body part</dt><dd>");
    rp_hbuf_esc(b, rp_http_js(s, "body_part")[0] ? rp_http_js(s, "body_part") : "—");
    rp_hbuf_printf(b,
                   "</dd><dt>Instances</dt><dd id=\"instances\">%.0f</dd><dt>State</dt><dd "
                   "id=\"state\">",
                   rp_http_jn(s, "instances"));
    rp_hbuf_esc(b, rp_http_js(s, "state"));
    rp_hbuf_printf(b,
                   "</dd><dt>Version</dt><dd>%.0f (processed: %.0f)</dd><dt>First / last "
                   "instance</dt><dd>",
                   rp_http_jn(s, "version"), rp_http_jn(s, "processed_version"));
    rp_http_html_time(b, rp_http_jn(s, "first_seen"));
    rp_hbuf_put(b, " / ");
    rp_http_html_time(b, rp_http_jn(s, "last_seen"));
    rp_hbuf_put(b, "</dd></dl><p>");
    if (strcmp(rp_http_js(s, "state"), "receiving") == 0) {
        char action[RP_UID_MAX + 32];
        snprintf(action, sizeof action, "/api/v1/series/%s/trigger", uid);
        rp_http_html_action(b, r, action, "Complete now", next);
    }
    rp_hbuf_put(b, "</p></section>");
    evidence(b, j);
    rp_hbuf_put(b, "</div>");
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(j, "versions"))
    {
        rp_hbuf_printf(b, "<section class=\"card version\" id=\"v%.0f\"><h2>Version %.0f%s</h2>",
                       rp_http_jn(v, "version"), rp_http_jn(v, "version"),
                       cJSON_IsTrue(cJSON_GetObjectItem(v, "current")) ? " (current)" : "");
        const cJSON *jobs = cJSON_GetObjectItem(v, "jobs"), *job;
        if (!cJSON_GetArraySize(jobs))
            rp_hbuf_put(b, "<p class=\"muted\">No job for this version.</p>");
        cJSON_ArrayForEach(job, jobs) job_block(b, r, job, next);
        rp_hbuf_put(b, "</section>");
    }
    cJSON_Delete(j);
}
