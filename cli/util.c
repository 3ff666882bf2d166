/* cli/util — what every radprep command shares: one-line failures, opening the index,
 * aligned tables and JSON output. */
#include "cli/cli.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"

int rp_cli_fail(int code, const char *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* One line, whatever the reason contains. */
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    fflush(stdout);
    if (cmd && *cmd)
        fprintf(stderr, "radprep: %s: %s\n", cmd, msg);
    else
        fprintf(stderr, "radprep: %s\n", msg);
    return code;
}

const char *rp_cli_errstr(int rc)
{
    static char buf[512];
    if (rc == RP_EDB && *rp_db_errmsg()) {
        snprintf(buf, sizeof buf, "%s (%s)", rp_strerror(rc), rp_db_errmsg());
        return buf;
    }
    return rp_strerror(rc);
}

const char *rp_cli_db_path(const rp_conf *c, char *buf, size_t bufsz)
{
    snprintf(buf, bufsz, "%s/index.sqlite", c->data_dir);
    return buf;
}

int rp_cli_open_db(const rp_conf *c, const char *cmd, int must_exist, rp_db **out)
{
    char path[RP_PATH_MAX + 32];
    rp_cli_db_path(c, path, sizeof path);
    *out = NULL;
    struct stat st;
    if (must_exist && stat(path, &st) != 0)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, cmd,
                           "no index at %s (%s); check data_dir or use --data-dir DIR", path,
                           strerror(errno));
    int rc = rp_db_open(path, out);
    if (rc)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, cmd, "cannot open index %s: %s%s%s", path,
                           rp_strerror(rc), *rp_db_errmsg() ? ": " : "", rp_db_errmsg());
    return 0;
}

long long rp_cli_parse_count(const char *s)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v <= 0)
        return -1;
    return v;
}

const char *rp_cli_opt_value(int argc, char **argv, int *i, const char *name)
{
    size_t l = strlen(name);
    if (strncmp(argv[*i], name, l) == 0 && argv[*i][l] == '=')
        return argv[*i] + l + 1;
    if (strcmp(argv[*i], name) == 0 && *i + 1 < argc)
        return argv[++*i];
    return NULL;
}

const char *rp_cli_time(double t, char *buf, size_t bufsz)
{
    if (t <= 0) {
        snprintf(buf, bufsz, "-");
        return buf;
    }
    char iso[40];
    rp_time_iso8601(t, iso, sizeof iso);
    /* seconds are enough for an operator; drop the milliseconds */
    char *dot = strchr(iso, '.');
    if (dot) {
        dot[0] = 'Z';
        dot[1] = '\0';
    }
    snprintf(buf, bufsz, "%s", iso);
    return buf;
}

const char *rp_cli_bytes(long long n, char *buf, size_t bufsz)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, bufsz, "%lld B", n);
    else
        snprintf(buf, bufsz, "%.1f %s", v, unit[u]);
    return buf;
}

/* ---- tables ------------------------------------------------------------------------- */

struct rp_cli_table {
    int ncol;
    char **names;
    char **cells; /* nrows * ncol, NULL for null */
    int *kinds;
    size_t nrows, cap;
};

rp_cli_table *rp_cli_table_new(int ncol, const char *const *names)
{
    rp_cli_table *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->ncol = ncol;
    t->names = calloc((size_t)ncol, sizeof *t->names);
    if (!t->names) {
        free(t);
        return NULL;
    }
    for (int i = 0; i < ncol; i++)
        t->names[i] = strdup(names[i] ? names[i] : "");
    return t;
}

/* Copy of s that is valid UTF-8: DICOM text in other character sets (ISO 8859, GB18030...)
 * may reach the index as raw bytes, and JSON output must stay valid. Invalid bytes -> '?'. */
static char *utf8_dup(const char *s)
{
    size_t n = strlen(s);
    char *o = malloc(n + 1);
    if (!o)
        return NULL;
    size_t i = 0, k = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        int len = c < 0x80             ? 1
                  : (c & 0xE0) == 0xC0 ? 2
                  : (c & 0xF0) == 0xE0 ? 3
                  : (c & 0xF8) == 0xF0 ? 4
                                       : 0;
        int ok = len > 0 && i + (size_t)len <= n && !(len == 2 && c < 0xC2);
        for (int j = 1; ok && j < len; j++)
            ok = ((unsigned char)s[i + j] & 0xC0) == 0x80;
        if (!ok) {
            o[k++] = '?';
            i++;
            continue;
        }
        memcpy(o + k, s + i, (size_t)len);
        k += (size_t)len;
        i += (size_t)len;
    }
    o[k] = '\0';
    return o;
}

int rp_cli_table_add(rp_cli_table *t, const char *const *values, const int *kinds)
{
    if (t->nrows == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 64;
        char **cells = realloc(t->cells, nc * (size_t)t->ncol * sizeof *cells);
        if (!cells)
            return RP_ENOMEM;
        t->cells = cells;
        int *k = realloc(t->kinds, nc * (size_t)t->ncol * sizeof *k);
        if (!k)
            return RP_ENOMEM;
        t->kinds = k;
        t->cap = nc;
    }
    size_t base = t->nrows * (size_t)t->ncol;
    for (int i = 0; i < t->ncol; i++) {
        t->cells[base + i] = values[i] ? utf8_dup(values[i]) : NULL;
        t->kinds[base + i] = !values[i] ? RP_DB_COL_NULL : (kinds ? kinds[i] : RP_DB_COL_TEXT);
    }
    t->nrows++;
    return 0;
}

size_t rp_cli_table_rows(const rp_cli_table *t)
{
    return t ? t->nrows : 0;
}

/* Display width of UTF-8 text: count code points, not bytes (names have accents). */
static size_t text_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

void rp_cli_table_print(const rp_cli_table *t, FILE *fp)
{
    if (!t)
        return;
    size_t *w = calloc((size_t)t->ncol, sizeof *w);
    if (!w)
        return;
    for (int c = 0; c < t->ncol; c++) {
        w[c] = text_width(t->names[c]);
        for (size_t r = 0; r < t->nrows; r++) {
            const char *v = t->cells[r * (size_t)t->ncol + c];
            size_t l = text_width(v ? v : "-");
            if (l > w[c])
                w[c] = l;
        }
    }
    for (int c = 0; c < t->ncol; c++) {
        fputs(t->names[c], fp);
        if (c + 1 < t->ncol)
            for (size_t p = text_width(t->names[c]); p < w[c] + 2; p++)
                fputc(' ', fp);
    }
    fputc('\n', fp);
    for (size_t r = 0; r < t->nrows; r++) {
        for (int c = 0; c < t->ncol; c++) {
            size_t idx = r * (size_t)t->ncol + c;
            const char *v = t->cells[idx] ? t->cells[idx] : "-";
            int numeric = t->kinds[idx] == RP_DB_COL_INT || t->kinds[idx] == RP_DB_COL_REAL;
            size_t l = text_width(v);
            /* numbers right-aligned, text left-aligned; no trailing blanks */
            if (numeric)
                for (size_t p = l; p < w[c]; p++)
                    fputc(' ', fp);
            for (const char *p = v; *p; p++)
                fputc((unsigned char)*p < 0x20 ? '?' : *p, fp);
            if (c + 1 < t->ncol)
                for (size_t p = numeric ? w[c] : l; p < w[c] + 2; p++)
                    fputc(' ', fp);
        }
        fputc('\n', fp);
    }
    free(w);
}

void *rp_cli_table_json(const rp_cli_table *t)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t r = 0; t && arr && r < t->nrows; r++) {
        cJSON *o = cJSON_CreateObject();
        for (int c = 0; c < t->ncol; c++) {
            size_t idx = r * (size_t)t->ncol + c;
            const char *v = t->cells[idx];
            switch (t->kinds[idx]) {
            case RP_DB_COL_NULL:
                cJSON_AddNullToObject(o, t->names[c]);
                break;
            case RP_DB_COL_INT:
            case RP_DB_COL_REAL:
                cJSON_AddNumberToObject(o, t->names[c], strtod(v, NULL));
                break;
            default:
                cJSON_AddStringToObject(o, t->names[c], v);
            }
        }
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

void rp_cli_table_free(rp_cli_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrows * (size_t)t->ncol; i++)
        free(t->cells[i]);
    for (int c = 0; c < t->ncol; c++)
        free(t->names[c]);
    free(t->names);
    free(t->cells);
    free(t->kinds);
    free(t);
}

int rp_cli_table_row_fn(void *user, int ncol, const char *const *names, const char *const *values,
                        const int *kinds)
{
    rp_cli_table **tp = user;
    if (!*tp && !(*tp = rp_cli_table_new(ncol, names)))
        return 1;
    return rp_cli_table_add(*tp, values, kinds) != 0;
}

void rp_cli_json_print(void *json)
{
    char *s = cJSON_Print(json);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
    cJSON_Delete(json);
}
