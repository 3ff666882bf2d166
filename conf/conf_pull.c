/*
 * conf_pull — the [pull NAME] section: a query that radprep runs against a PACS on a schedule,
 * retrieving what matches into the node (docs/retrieve.md).
 *
 *   [pull chest_ct]
 *   peer = pacs                     ; [peer NAME] to ask; it needs find = yes and move = yes
 *                                   ; (get = yes with method = get)
 *   study_date = yesterday          ; today | yesterday | last N days | YYYYMMDD |
 *                                   ; YYYYMMDD-YYYYMMDD (either end may be left open)
 *   modality = CT                   ; series modality
 *   body_part = CHEST
 *   study_description = *THORAX*    ; DICOM wildcards * and ?
 *   series_description = *
 *   patient_id = ...                ; and accession = ... (exact)
 *   rule = ct_default               ; process the pulled series with this rule (default:
 *                                   ; whichever rule matches, as for pushed series)
 *   dataset = chest                 ; afterwards: radprep curate into datasets/NAME
 *   window = 20:00-06:00            ; off-peak: moves start only inside it (HH:MM[:SS])
 *   max_concurrent = 1              ; retrievals at once
 *   max_series = 200                ; series retrieved per run (the rest: next run)
 *   pause_ms = 1000                 ; between two moves of one retrieval lane
 *   retries = 5                     ; attempts per series when the PACS is down
 *   retry_backoff_s = 30            ; first wait, doubled each time, inside the window
 *   method = move                   ; move (C-MOVE to our AE) | get (C-GET)
 *
 * A date range is text until a run turns it into dates with rp_conf_pull_date_range(), so a
 * timer that fires each night asks for that night's "yesterday". Errors come back as a reason;
 * conf_parse.c adds FILE:LINE.
 */
#include "conf/conf.h"
#include "conf/conf_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/common.h"

static int why_f(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int why_f(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return -1;
}

void rp_conf_pull_init(rp_conf_pull *p, const char *name, int line)
{
    memset(p, 0, sizeof *p);
    rp_strlcpy(p->name, name, sizeof p->name);
    p->max_concurrent = 1;
    p->max_series = 200;
    p->pause_ms = 1000;
    p->retries = 5;
    p->retry_backoff_s = 30;
    p->window_start_s = p->window_end_s = 0; /* equal: any time */
    p->method = RP_PULL_MOVE;
    p->line = line;
}

/* "HH:MM" or "HH:MM:SS" -> seconds after midnight; -1 when malformed. */
static int parse_clock(const char *s, const char **end)
{
    int h = 0, m = 0, sec = 0, n = 0;
    if (sscanf(s, "%2d:%2d%n", &h, &m, &n) != 2)
        return -1;
    s += n;
    if (*s == ':') {
        int k = 0;
        if (sscanf(s + 1, "%2d%n", &sec, &k) != 1)
            return -1;
        s += 1 + k;
    }
    if (h < 0 || h > 24 || m < 0 || m > 59 || sec < 0 || sec > 59 || (h == 24 && (m || sec)))
        return -1;
    *end = s;
    return h * 3600 + m * 60 + sec;
}

int rp_conf_pull_window(const char *v, int *start_s, int *end_s)
{
    const char *p = v;
    while (isspace((unsigned char)*p))
        p++;
    if (!*p || strcasecmp(p, "any") == 0) {
        *start_s = *end_s = 0;
        return 0;
    }
    int a = parse_clock(p, &p);
    if (a < 0)
        return RP_EINVAL;
    while (isspace((unsigned char)*p))
        p++;
    if (*p++ != '-')
        return RP_EINVAL;
    while (isspace((unsigned char)*p))
        p++;
    int b = parse_clock(p, &p);
    while (b >= 0 && isspace((unsigned char)*p))
        p++;
    if (b < 0 || *p || a == b)
        return RP_EINVAL;
    *start_s = a;
    *end_s = b;
    return 0;
}

/* An 8-digit DICOM date that is a real calendar day. */
static int date_ok(const char *s, size_t n)
{
    if (n != 8)
        return 0;
    for (size_t i = 0; i < 8; i++)
        if (!isdigit((unsigned char)s[i]))
            return 0;
    int y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    int m = (s[4] - '0') * 10 + (s[5] - '0');
    int d = (s[6] - '0') * 10 + (s[7] - '0');
    if (y < 1800 || m < 1 || m > 12 || d < 1)
        return 0;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (d > mdays[m - 1])
        return 0;
    if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 0;
    return 1;
}

/* The local calendar day `days_back` days before `now`, as YYYYMMDD. */
static void day_before(time_t now, int days_back, char out[16])
{
    struct tm tm;
    localtime_r(&now, &tm);
    tm.tm_mday -= days_back;
    tm.tm_hour = 12; /* noon: a DST change never moves the day */
    tm.tm_isdst = -1;
    mktime(&tm);
    snprintf(out, 16, "%04d%02d%02d", (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100,
             tm.tm_mday % 100);
}

int rp_conf_pull_date_range(const char *spec, double now, char *out, size_t outsz)
{
    char s[64];
    if (!spec || !out || outsz < 18)
        return RP_EINVAL;
    out[0] = '\0';
    while (isspace((unsigned char)*spec))
        spec++;
    if (rp_strlcpy(s, spec, sizeof s) != 0)
        return RP_EINVAL;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    if (n == 0)
        return 0; /* no date key */
    time_t t = (time_t)now;
    char a[16], b[16];
    if (strcasecmp(s, "today") == 0) {
        day_before(t, 0, a);
        snprintf(out, outsz, "%s", a);
        return 0;
    }
    if (strcasecmp(s, "yesterday") == 0) {
        day_before(t, 1, a);
        snprintf(out, outsz, "%s", a);
        return 0;
    }
    int days = 0, k = 0;
    if (strncasecmp(s, "last ", 5) == 0 && sscanf(s + 5, "%d%n", &days, &k) == 1) {
        const char *rest = s + 5 + k;
        while (isspace((unsigned char)*rest))
            rest++;
        if (days < 1 || days > 36500 || (strcasecmp(rest, "days") && strcasecmp(rest, "day")))
            return RP_EINVAL;
        /* "last 7 days": the seven days before today, today included. */
        day_before(t, days - 1, a);
        day_before(t, 0, b);
        snprintf(out, outsz, "%s-%s", a, b);
        return 0;
    }
    const char *dash = strchr(s, '-');
    if (!dash) {
        if (!date_ok(s, n))
            return RP_EINVAL;
        snprintf(out, outsz, "%s", s);
        return 0;
    }
    size_t la = (size_t)(dash - s), lb = n - la - 1;
    if ((la == 0 && lb == 0) || (la && !date_ok(s, la)) || (lb && !date_ok(dash + 1, lb)))
        return RP_EINVAL;
    if (la && lb && strncmp(s, dash + 1, 8) > 0)
        return RP_EINVAL; /* reversed range */
    snprintf(out, outsz, "%.*s-%.*s", (int)la, s, (int)lb, dash + 1);
    return 0;
}

typedef struct pull_key {
    const char *name;
    size_t off, size;
} pull_key;
#define S(f) offsetof(rp_conf_pull, f), sizeof(((rp_conf_pull *)0)->f)
static const pull_key str_keys[] = {
    {"peer", S(peer)},
    {"patient_id", S(patient_id)},
    {"accession", S(accession)},
    {"modality", S(modality)},
    {"body_part", S(body_part)},
    {"study_description", S(study_description)},
    {"series_description", S(series_description)},
    {"rule", S(rule)},
    {"dataset", S(dataset)},
    {NULL, 0, 0},
};
#undef S

typedef struct int_key {
    const char *name;
    size_t off;
    int min, max;
} int_key;
static const int_key int_keys[] = {
    {"max_concurrent", offsetof(rp_conf_pull, max_concurrent), 1, 16},
    {"max_series", offsetof(rp_conf_pull, max_series), 1, 1000000},
    {"pause_ms", offsetof(rp_conf_pull, pause_ms), 0, 3600000},
    {"retries", offsetof(rp_conf_pull, retries), 0, 100},
    {"retry_backoff_s", offsetof(rp_conf_pull, retry_backoff_s), 1, 86400},
    {NULL, 0, 0, 0},
};

/* A DICOM query value: no backslash (multi-value) and no control characters. */
static int query_value_ok(const char *v)
{
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p == '\\' || *p == 0x7f)
            return 0;
    return 1;
}

int rp_conf_pull_key(rp_conf_pull *p, const char *key, const char *v, char *why, size_t whylen)
{
    for (const pull_key *k = str_keys; k->name; k++) {
        if (strcmp(k->name, key) != 0)
            continue;
        if (strlen(v) >= k->size)
            return why_f(why, whylen, "%s: value is too long (max %zu characters)", key,
                         k->size - 1);
        if (!query_value_ok(v))
            return why_f(why, whylen, "%s: '%s' has a backslash or a control character", key, v);
        if ((!strcmp(key, "peer") || !strcmp(key, "rule") || !strcmp(key, "dataset")) && *v &&
            !rp_conf_name_valid(v))
            return why_f(why, whylen, "%s: invalid name '%s' (letters, digits, _ - . only)", key,
                         v);
        memcpy((char *)p + k->off, v, strlen(v) + 1);
        return 0;
    }
    for (const int_key *k = int_keys; k->name; k++) {
        if (strcmp(k->name, key) != 0)
            continue;
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (!*v || *end || errno)
            return why_f(why, whylen, "%s: '%s' is not an integer", key, v);
        if (n < k->min || n > k->max)
            return why_f(why, whylen, "%s: %ld is out of range %d..%d", key, n, k->min, k->max);
        *(int *)((char *)p + k->off) = (int)n;
        return 0;
    }
    if (strcmp(key, "study_date") == 0) {
        char range[32];
        if (strlen(v) >= sizeof p->study_date ||
            rp_conf_pull_date_range(v, rp_now_s(), range, sizeof range) != 0)
            return why_f(why, whylen,
                         "study_date: '%s' is not a date (today, yesterday, last N days, "
                         "YYYYMMDD, YYYYMMDD-YYYYMMDD)",
                         v);
        rp_strlcpy(p->study_date, v, sizeof p->study_date);
        return 0;
    }
    if (strcmp(key, "window") == 0) {
        if (rp_conf_pull_window(v, &p->window_start_s, &p->window_end_s) != 0)
            return why_f(why, whylen,
                         "window: '%s' is not HH:MM-HH:MM (seconds optional, 'any' for all day)",
                         v);
        return 0;
    }
    if (strcmp(key, "method") == 0) {
        if (strcasecmp(v, "move") == 0)
            p->method = RP_PULL_MOVE;
        else if (strcasecmp(v, "get") == 0)
            p->method = RP_PULL_GET;
        else
            return why_f(why, whylen, "method: '%s' is not one of move|get", v);
        return 0;
    }
    return why_f(why, whylen, "unknown key '%s' in [pull %s]", key, p->name);
}

int rp_conf_pull_close(const rp_conf_pull *p, char *why, size_t whylen)
{
    if (!p->peer[0])
        return why_f(why, whylen, "pull %s: peer is required", p->name);
    /* A scheduled pull with no key at all would ask the PACS for everything it has. */
    if (!p->study_date[0] && !p->patient_id[0] && !p->accession[0] && !p->modality[0] &&
        !p->body_part[0] && !p->study_description[0] && !p->series_description[0])
        return why_f(why, whylen,
                     "pull %s: no query key (study_date, modality, accession...): it would "
                     "retrieve the whole PACS",
                     p->name);
    return 0;
}

int rp_conf_pull_check_refs(const rp_conf *c, char *why, size_t whylen, int *line)
{
    for (size_t i = 0; i < c->n_pulls; i++) {
        const rp_conf_pull *p = &c->pulls[i];
        const rp_conf_peer *peer = rp_conf_peer_by_name(c, p->peer);
        *line = p->line;
        if (!peer)
            return why_f(why, whylen, "pull %s: unknown peer '%s'", p->name, p->peer);
        if (!peer->host[0] || !peer->port)
            return why_f(why, whylen, "pull %s: peer %s needs host and port", p->name, p->peer);
        if (!peer->may_find)
            return why_f(why, whylen, "pull %s: peer %s does not allow find (find = yes)",
                         p->name, p->peer);
        if (p->method == RP_PULL_MOVE && !peer->may_move)
            return why_f(why, whylen, "pull %s: peer %s does not allow move (move = yes)",
                         p->name, p->peer);
        if (p->method == RP_PULL_GET && !peer->may_get)
            return why_f(why, whylen, "pull %s: peer %s does not allow get (get = yes)", p->name,
                         p->peer);
        if (p->rule[0]) {
            size_t r = 0;
            while (r < c->n_rules && strcmp(c->rules[r].name, p->rule) != 0)
                r++;
            if (r == c->n_rules)
                return why_f(why, whylen, "pull %s: unknown rule '%s'", p->name, p->rule);
        }
    }
    return 0;
}

const rp_conf_pull *rp_conf_pull_by_name(const rp_conf *c, const char *name)
{
    for (size_t i = 0; c && name && i < c->n_pulls; i++)
        if (strcmp(c->pulls[i].name, name) == 0)
            return &c->pulls[i];
    return NULL;
}

int rp_conf_pull_in_window(const rp_conf_pull *p, double now, double *end)
{
    if (p->window_start_s == p->window_end_s) {
        if (end)
            *end = 0;
        return 1;
    }
    time_t t = (time_t)now;
    struct tm tm;
    localtime_r(&t, &tm);
    int sod = tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
    int a = p->window_start_s, b = p->window_end_s, in;
    int left; /* seconds until the window ends */
    if (a < b) {
        in = sod >= a && sod < b;
        left = b - sod;
    } else { /* across midnight, e.g. 20:00-06:00 */
        in = sod >= a || sod < b;
        left = sod >= a ? 86400 - sod + b : b - sod;
    }
    if (end)
        *end = in ? (double)t + left : 0;
    return in;
}
