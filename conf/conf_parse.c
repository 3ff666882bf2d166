/*
 * conf_parse — the INI reader (inih) with strict, line-numbered errors.
 *
 * inih's handler does not receive line numbers in Debian's build, so we feed it through
 * ini_parse_stream() with our own reader: the reader counts lines, checks the syntax of each
 * line itself (so inih never reports an error we cannot place) and opens/closes sections,
 * which also lets us see empty sections. The handler then applies one key at a time using a
 * table of keys per section kind. Parsing happens on a copy of the configuration that
 * replaces the caller's only on success.
 */
#include "conf/conf.h"
#include "conf/conf_internal.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"

#define MAX_LINE 8192

typedef enum {
    SEC_NONE = 0,
    SEC_NODE,
    SEC_TLS,
    SEC_PEER,
    SEC_COMPLETION,
    SEC_RULE,
    SEC_FUSION,
    SEC_PULL,
    SEC_HTTP,
    SEC_EXECUTOR
} sec_kind;

typedef enum {
    K_STR,   /* char[size] */
    K_PATH,  /* char[size], made absolute relative to the file's directory */
    K_AE,    /* AE title */
    K_INT,   /* int in [min,max] */
    K_UINT,  /* unsigned in [min,max] */
    K_LL,    /* long long in [min,max] */
    K_DBL,   /* double >= min */
    K_BOOL,  /* int 0/1 */
    K_SENUM, /* char[size] from a list */
    K_IENUM, /* int index into a list */
    K_PDU,   /* unsigned: 0 or 4096..128 KiB (what dcmtk receives) */
    K_UID,   /* uid_root */
    K_MODS,  /* space-separated modality words */
    K_WORDS, /* space-separated words (names) */
    K_OUTS,  /* known output kinds */
    K_RESULTS, /* result kinds a destination receives: derived seg overlay sr */
    K_STEPS, /* recipe text, remembers its line */
    K_DTYPE, /* a rule's storage type (dtype_valid) */
} key_kind;

typedef struct key_def {
    const char *name;
    key_kind kind;
    size_t off, size;
    long long min, max;
    const char *const *choices;
} key_def;

static const char *const dup_choices[] = {"keep_first", "replace", "reject", NULL};
static const char *const uid_policy_choices[] = {"lenient", "strict", NULL};
static const char *const profile_choices[] = {"bcp195", "bcp195-nd", "bcp195-ex", NULL};
static const char *const level_choices[] = {"debug", "info", "warn", "error", NULL};
static const char *const philips_scaling_choices[] = {"display", "float", NULL};

#define F(st, f) offsetof(st, f), sizeof(((st *)0)->f)
#define N(f) F(rp_conf, f)
static const key_def node_keys[] = {
    {"ae_title", K_AE, N(ae_title), 0, 0, NULL},
    {"port", K_INT, N(port), 1, 65535, NULL},
    {"bind", K_STR, N(bind), 0, 0, NULL},
    {"data_dir", K_PATH, N(data_dir), 0, 0, NULL},
    {"outputs_dir", K_PATH, N(outputs_dir), 0, 0, NULL},
    {"max_associations", K_INT, N(max_associations), 1, 4096, NULL},
    {"max_associations_per_peer", K_INT, N(max_associations_per_peer), 1, 4096, NULL},
    {"acse_timeout_s", K_INT, N(acse_timeout_s), 1, 86400, NULL},
    {"dimse_timeout_s", K_INT, N(dimse_timeout_s), 1, 86400, NULL},
    {"network_timeout_s", K_INT, N(network_timeout_s), 1, 86400, NULL},
    {"max_pdu", K_PDU, N(max_pdu), 0, 0, NULL},
    {"min_free_mb", K_LL, N(min_free_mb), 0, 1LL << 40, NULL},
    {"duplicate_policy", K_IENUM, N(duplicate_policy), 0, 0, dup_choices},
    {"uid_policy", K_IENUM, N(uid_policy), 0, 0, uid_policy_choices},
    {"max_instance_mb", K_LL, N(max_instance_mb), 1, 1LL << 22, NULL},
    {"log_file", K_PATH, N(log_file), 0, 0, NULL},
    {"log_level", K_SENUM, N(log_level), 0, 0, level_choices},
    {"uid_root", K_UID, N(uid_root), 0, 0, NULL},
    {"workers", K_INT, N(workers), 0, 1024, NULL},
    {"job_timeout_s", K_INT, N(job_timeout_s), 1, 7 * 86400, NULL},
    {"job_memory_mb", K_LL, N(job_memory_mb), 64, 1LL << 30, NULL},
    {"job_max_attempts", K_INT, N(job_max_attempts), 1, 100, NULL},
    {"index_batch", K_INT, N(index_batch), 1, 100000, NULL},
    {"index_flush_ms", K_INT, N(index_flush_ms), 1, 60000, NULL},
    {"spool_log_mb", K_INT, N(spool_log_mb), 64, 1 << 20, NULL},
    {NULL, 0, 0, 0, 0, 0, NULL},
};
static const key_def tls_keys[] = {
    {"port", K_INT, N(tls_port), 0, 65535, NULL},
    {"cert", K_PATH, N(tls_cert), 0, 0, NULL},
    {"key", K_PATH, N(tls_key), 0, 0, NULL},
    {"key_passphrase_file", K_PATH, N(tls_key_passphrase_file), 0, 0, NULL},
    {"ca_file", K_PATH, N(tls_ca_file), 0, 0, NULL},
    {"ca_dir", K_PATH, N(tls_ca_dir), 0, 0, NULL},
    {"profile", K_SENUM, N(tls_profile), 0, 0, profile_choices},
    {"require_client_cert", K_BOOL, N(tls_require_client_cert), 0, 0, NULL},
    {"expiry_warn_days", K_INT, N(tls_expiry_warn_days), 0, 3650, NULL},
    {NULL, 0, 0, 0, 0, 0, NULL},
};
static const key_def http_keys[] = {
    {"port", K_INT, N(http_port), 0, 65535, NULL},
    {"bind", K_STR, N(http_bind), 0, 0, NULL},
    {"tls", K_BOOL, N(http_tls), 0, 0, NULL},
    {"token_file", K_PATH, N(http_token_file), 0, 0, NULL},
    {"client_cert", K_BOOL, N(http_client_cert), 0, 0, NULL},
    {"metrics_open", K_BOOL, N(http_metrics_open), 0, 0, NULL},
    {"max_connections", K_INT, N(http_max_connections), 1, 1024, NULL},
    {"threads", K_INT, N(http_threads), 1, 16, NULL},
    {NULL, 0, 0, 0, 0, 0, NULL},
};
#undef N
#define P(f) F(rp_conf_peer, f)
static const key_def peer_keys[] = {
    {"ae_title", K_AE, P(ae_title), 0, 0, NULL},
    {"host", K_STR, P(host), 0, 0, NULL},
    {"port", K_INT, P(port), 1, 65535, NULL},
    {"store", K_BOOL, P(may_store), 0, 0, NULL},
    {"echo", K_BOOL, P(may_echo), 0, 0, NULL},
    {"destination", K_BOOL, P(is_destination), 0, 0, NULL},
    {"tls_only", K_BOOL, P(tls_only), 0, 0, NULL},
    {"cert_fingerprint", K_STR, P(cert_fingerprint), 0, 0, NULL},
    {"cert_subject", K_STR, P(cert_subject), 0, 0, NULL},
    {"max_associations", K_INT, P(max_associations), 0, 4096, NULL},
    {"find", K_BOOL, P(may_find), 0, 0, NULL},
    {"move", K_BOOL, P(may_move), 0, 0, NULL},
    {"get", K_BOOL, P(may_get), 0, 0, NULL},
    {"results", K_RESULTS, P(results), 0, 0, NULL},
    {"send_associations", K_INT, P(send_associations), 1, 16, NULL},
    {NULL, 0, 0, 0, 0, 0, NULL},
};
#undef P
#define C(f) F(rp_conf_completion, f)
static const key_def completion_keys[] = {
    {"quiet_s", K_INT, C(quiet_s), 1, 7 * 86400, NULL},
    {"use_expected_count", K_BOOL, C(use_expected_count), 0, 0, NULL},
    {NULL, 0, 0, 0, 0, 0, NULL},
};
#undef C
#define R(f) F(rp_conf_rule, f)
static const key_def rule_keys[] = {
    {"modality", K_MODS, R(modality), 0, 0, NULL},
    {"body_part", K_MODS, R(body_part), 0, 0, NULL},
    {"series_description", K_STR, R(series_description), 0, 0, NULL},
    {"slice_thickness_min", K_DBL, R(slice_thickness_min), 0, 0, NULL},
    {"slice_thickness_max", K_DBL, R(slice_thickness_max), 0, 0, NULL},
    {"steps", K_STEPS, R(steps), 0, 0, NULL},
    {"outputs", K_OUTS, R(outputs), 0, 0, NULL},
    {"send_to", K_WORDS, R(send_to), 0, 0, NULL},
    {"priority", K_INT, R(priority), -1000000, 1000000, NULL},
    {"overlay_caption", K_STR, R(overlay_caption), 0, 0, NULL},
    {"dtype", K_DTYPE, R(dtype), 0, 0, NULL},
    {"cpus_per_task", K_INT, R(cpus_per_task), 1, 4096, NULL},
    {"mem_mb", K_INT, R(mem_mb), 16, 67108864, NULL},
    {"time_limit_s", K_INT, R(time_limit_s), 1, 31536000, NULL},
    {"philips_scaling", K_IENUM, R(philips_float), 0, 0, philips_scaling_choices},
    {NULL, 0, 0, 0, 0, 0, NULL},
};
#undef R

/* comp_flags bits: the file has a section for it; the file created it (a modality without a
 * built-in entry); which keys the file set (bit per completion_keys index, from bit 2). */
enum { COMP_DEFINED = 1, COMP_CREATED = 2, COMP_KEYS_SHIFT = 2 };

typedef struct parse_ctx {
    rp_conf *c;
    const char *path;
    char dir[RP_PATH_MAX]; /* directory of the file, for relative paths */
    FILE *fp;
    char *buf;
    size_t bufsz;
    int line;
    int failed;
    char *err;
    size_t errlen;
    /* current section */
    sec_kind sec;
    char sec_arg[128];
    int sec_line;
    void *obj; /* the struct keys of this section write into */
    const key_def *keys;
    uint64_t seen;                /* keys already given in this section */
    uint64_t node_seen, tls_seen, http_seen; /* [node]/[tls]/[http] may repeat; keys may not */
    /* user sections already given (duplicates are errors) */
    unsigned char *comp_flags; /* parallel to c->completion: COMP_* bits */
    size_t comp_cap;
    unsigned char *user_rule; /* parallel to c->rules: 1 when defined by the file */
    char fusion_keys[64][48]; /* keys given in the current [fusion] (duplicates are errors) */
    int n_fusion_keys;
} parse_ctx;

static int fail_at(parse_ctx *x, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(parse_ctx *x, int line, const char *fmt, ...)
{
    if (x->failed)
        return 0;
    char why[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(x->err, x->errlen, "%s:%d: %s", x->path, line, why);
    x->failed = 1;
    return 0; /* inih: 0 = error */
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* ---- values ---------------------------------------------------------------------------- */

static int parse_ll(const char *v, long long *out)
{
    if (!*v)
        return -1;
    errno = 0;
    char *end;
    long long n = strtoll(v, &end, 10);
    if (errno || *end)
        return -1;
    *out = n;
    return 0;
}

static int check_words(parse_ctx *x, const key_def *k, const char *v, int upper)
{
    char buf[2048];
    rp_strlcpy(buf, v, sizeof buf);
    char *save = NULL;
    for (char *w = strtok_r(buf, " \t,", &save); w; w = strtok_r(NULL, " \t,", &save)) {
        if (k->kind == K_RESULTS) {
            if (!rp_conf_result_kind(w))
                return fail_at(x, x->line,
                               "results: unknown result '%s' (known: derived seg overlay sr)", w);
            continue;
        }
        if (k->kind == K_OUTS) {
            if (!rp_conf_output_known(w))
                return fail_at(x, x->line,
                               "outputs: unknown output '%s' (known: nifti json qc png dicom "
                               "seg overlay sr manifest npy)",
                               w);
            continue;
        }
        for (const char *p = w; *p; p++) {
            int ok = upper ? (isalnum((unsigned char)*p) || *p == '_')
                           : (isalnum((unsigned char)*p) || *p == '_' || *p == '-' || *p == '.');
            if (!ok)
                return fail_at(x, x->line, "%s: invalid word '%s'", k->name, w);
        }
    }
    return 1;
}

/* A rule's dtype: "", auto, float32, int16, uint8, hu; auto/int16/hu may add "(step)" in HU,
 * 0.001..100 (the pipeline reads the same syntax). */
static int dtype_valid(const char *v)
{
    static const char *const words[] = {"auto", "float32", "int16", "uint8", "hu", NULL};
    if (!*v)
        return 1;
    size_t n = strcspn(v, "(");
    int k = -1;
    for (int i = 0; words[i]; i++)
        if (strlen(words[i]) == n && strncasecmp(v, words[i], n) == 0)
            k = i;
    if (k < 0)
        return 0;
    if (!v[n])
        return 1;
    if (k == 1 || k == 3)
        return 0;
    char *end;
    double s = strtod(v + n + 1, &end);
    return end != v + n + 1 && end[0] == ')' && end[1] == 0 && s >= 0.001 && s <= 100;
}

static int set_string(parse_ctx *x, const key_def *k, void *dst, const char *v)
{
    if (strlen(v) >= k->size)
        return fail_at(x, x->line, "%s: value is too long (max %zu characters)", k->name,
                       k->size - 1);
    memcpy(dst, v, strlen(v) + 1);
    return 1;
}

static int apply_key(parse_ctx *x, const key_def *k, const char *v)
{
    char *dst = (char *)x->obj + k->off;
    char why[256];
    long long n;
    switch (k->kind) {
    case K_STR:
        return set_string(x, k, dst, v);
    case K_PATH: {
        if (!*v || v[0] == '/' || !x->dir[0])
            return set_string(x, k, dst, v);
        char abs[RP_PATH_MAX * 2];
        snprintf(abs, sizeof abs, "%s/%s", x->dir, v);
        return set_string(x, k, dst, abs);
    }
    case K_AE:
        if (rp_conf_ae_valid(v, why, sizeof why))
            return fail_at(x, x->line, "%s: %s", k->name, why);
        return set_string(x, k, dst, v);
    case K_UID:
        if (rp_conf_uid_root_valid(v, why, sizeof why))
            return fail_at(x, x->line, "%s", why);
        return set_string(x, k, dst, v);
    case K_INT:
    case K_UINT:
    case K_LL:
        if (parse_ll(v, &n))
            return fail_at(x, x->line, "%s: '%s' is not an integer", k->name, v);
        if (n < k->min || n > k->max)
            return fail_at(x, x->line, "%s: %lld is out of range %lld..%lld", k->name, n, k->min,
                           k->max);
        if (k->kind == K_INT)
            *(int *)dst = (int)n;
        else if (k->kind == K_UINT)
            *(unsigned *)dst = (unsigned)n;
        else
            *(long long *)dst = n;
        return 1;
    case K_PDU:
        if (parse_ll(v, &n))
            return fail_at(x, x->line, "%s: '%s' is not an integer", k->name, v);
        if (n != 0 && (n < 4096 || n > 131072))
            return fail_at(x, x->line,
                           "%s: %lld is out of range (0 = the largest, or 4096..131072 bytes)",
                           k->name, n);
        *(unsigned *)dst = (unsigned)n;
        return 1;
    case K_DBL: {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (!*v || *end || errno || d != d)
            return fail_at(x, x->line, "%s: '%s' is not a number", k->name, v);
        if (d < 0)
            return fail_at(x, x->line, "%s: %s must be >= 0", k->name, v);
        *(double *)dst = d;
        return 1;
    }
    case K_BOOL: {
        int b = rp_conf_parse_bool(v);
        if (b < 0)
            return fail_at(x, x->line,
                           "%s: '%s' is not a boolean (yes/no, true/false, on/off, 1/0)", k->name,
                           v);
        *(int *)dst = b;
        return 1;
    }
    case K_SENUM:
    case K_IENUM:
        for (int i = 0; k->choices[i]; i++) {
            if (strcasecmp(v, k->choices[i]) == 0) {
                if (k->kind == K_IENUM)
                    *(int *)dst = i;
                else
                    rp_strlcpy(dst, k->choices[i], k->size);
                return 1;
            }
        }
        {
            char list[256] = "";
            for (int i = 0; k->choices[i]; i++) {
                if (i)
                    strncat(list, "|", sizeof list - strlen(list) - 1);
                strncat(list, k->choices[i], sizeof list - strlen(list) - 1);
            }
            return fail_at(x, x->line, "%s: '%s' is not one of %s", k->name, v, list);
        }
    case K_MODS:
        if (!check_words(x, k, v, 1))
            return 0;
        return set_string(x, k, dst, v);
    case K_WORDS:
    case K_OUTS:
    case K_RESULTS:
        if (!check_words(x, k, v, 0))
            return 0;
        return set_string(x, k, dst, v);
    case K_DTYPE:
        if (!dtype_valid(v))
            return fail_at(x, x->line,
                           "dtype: '%s' (want auto, float32, int16, uint8 or hu; auto, int16 and "
                           "hu take an optional HU step, e.g. int16(0.5))",
                           v);
        return set_string(x, k, dst, v);
    case K_STEPS:
        if (!*v)
            return fail_at(x, x->line, "rule %s: steps is empty", x->sec_arg);
        if (!set_string(x, k, dst, v))
            return 0;
        ((rp_conf_rule *)x->obj)->steps_line = x->line;
        return 1;
    }
    return fail_at(x, x->line, "internal: unhandled key kind");
}

/* ---- sections ------------------------------------------------------------------------- */

/* Checks when a section ends (next header or end of file). */
static int close_section(parse_ctx *x)
{
    if (x->sec == SEC_COMPLETION) {
        size_t idx = (size_t)((rp_conf_completion *)x->obj - x->c->completion);
        x->comp_flags[idx] |= (unsigned char)((x->seen & 3u) << COMP_KEYS_SHIFT);
    } else if (x->sec == SEC_PEER) {
        rp_conf_peer *p = x->obj;
        if (!p->ae_title[0])
            return fail_at(x, x->sec_line, "peer %s: ae_title is required", p->name);
        for (size_t i = 0; i + 1 < x->c->n_peers; i++)
            if (strcmp(x->c->peers[i].ae_title, p->ae_title) == 0)
                return fail_at(x, x->sec_line, "peer %s: AE title '%s' is already used by peer %s",
                               p->name, p->ae_title, x->c->peers[i].name);
    } else if (x->sec == SEC_PULL) {
        char why[512];
        if (rp_conf_pull_close(x->obj, why, sizeof why))
            return fail_at(x, x->sec_line, "%s", why);
    } else if (x->sec == SEC_FUSION) {
        char why[512];
        if (rp_conf_fusion_close(x->obj, why, sizeof why))
            return fail_at(x, x->sec_line, "%s", why);
    } else if (x->sec == SEC_RULE) {
        rp_conf_rule *r = x->obj;
        if (!r->steps[0])
            return fail_at(x, x->sec_line, "rule %s: steps is empty", r->name);
        if (r->slice_thickness_min >= 0 && r->slice_thickness_max >= 0 &&
            r->slice_thickness_min > r->slice_thickness_max)
            return fail_at(x, x->sec_line,
                           "rule %s: slice_thickness_min is greater than slice_thickness_max",
                           r->name);
    }
    x->sec = SEC_NONE;
    x->obj = NULL;
    x->keys = NULL;
    return 1;
}

static void *grow(void *arr, size_t n, size_t size)
{
    void *p = realloc(arr, (n + 1) * size);
    if (p)
        memset((char *)p + n * size, 0, size);
    return p;
}

static int open_peer(parse_ctx *x, const char *name)
{
    if (rp_conf_peer_by_name(x->c, name))
        return fail_at(x, x->line, "duplicate [peer %s]", name);
    rp_conf_peer *p = grow(x->c->peers, x->c->n_peers, sizeof *p);
    if (!p)
        return fail_at(x, x->line, "out of memory");
    x->c->peers = p;
    p = &x->c->peers[x->c->n_peers++];
    rp_strlcpy(p->name, name, sizeof p->name);
    p->may_store = 1;
    p->may_echo = 1;
    rp_strlcpy(p->results, "derived seg", sizeof p->results);
    p->send_associations = 1;
    p->line = x->line;
    x->obj = p;
    x->keys = peer_keys;
    return 1;
}

static int comp_flags_room(parse_ctx *x, size_t n)
{
    if (n <= x->comp_cap)
        return 1;
    unsigned char *f = realloc(x->comp_flags, n);
    if (!f)
        return 0;
    memset(f + x->comp_cap, 0, n - x->comp_cap);
    x->comp_flags = f;
    x->comp_cap = n;
    return 1;
}

/* A modality section the file created takes the keys it did not set from the final
 * [completion default], wherever that section is in the file. */
static void completion_inherit(parse_ctx *x)
{
    const rp_conf_completion *def = rp_conf_completion_for(x->c, "default");
    for (size_t i = 0; i < x->c->n_completion && i < x->comp_cap; i++) {
        unsigned f = x->comp_flags[i];
        rp_conf_completion *cc = &x->c->completion[i];
        if (!(f & COMP_CREATED) || cc == def)
            continue;
        if (!(f & (1u << (COMP_KEYS_SHIFT + 0))))
            cc->quiet_s = def->quiet_s;
        if (!(f & (1u << (COMP_KEYS_SHIFT + 1))))
            cc->use_expected_count = def->use_expected_count;
    }
}

static int open_completion(parse_ctx *x, const char *mod)
{
    char m[16];
    if (strlen(mod) >= sizeof m)
        return fail_at(x, x->line, "completion: modality '%s' is too long", mod);
    for (const char *p = mod; *p; p++)
        if (!isalnum((unsigned char)*p))
            return fail_at(x, x->line, "completion: invalid modality '%s'", mod);
    if (strcasecmp(mod, "default") == 0)
        rp_strlcpy(m, "default", sizeof m);
    else
        for (size_t i = 0; i <= strlen(mod); i++)
            m[i] = (char)toupper((unsigned char)mod[i]);
    size_t idx = x->c->n_completion;
    for (size_t i = 0; i < x->c->n_completion; i++)
        if (strcmp(x->c->completion[i].modality, m) == 0)
            idx = i;
    if (!comp_flags_room(x, x->c->n_completion + 1))
        return fail_at(x, x->line, "out of memory");
    if (x->comp_flags[idx] & COMP_DEFINED)
        return fail_at(x, x->line, "duplicate [completion %s]", m);
    if (idx == x->c->n_completion) {
        x->comp_flags[idx] |= COMP_CREATED;
        rp_conf_completion *cc = grow(x->c->completion, x->c->n_completion, sizeof *cc);
        if (!cc)
            return fail_at(x, x->line, "out of memory");
        x->c->completion = cc;
        cc = &x->c->completion[x->c->n_completion++];
        const rp_conf_completion *def = rp_conf_completion_for(x->c, "default");
        cc->quiet_s = def->quiet_s;
        cc->use_expected_count = def->use_expected_count;
        rp_strlcpy(cc->modality, m, sizeof cc->modality);
    }
    x->comp_flags[idx] |= COMP_DEFINED;
    x->obj = &x->c->completion[idx];
    x->keys = completion_keys;
    return 1;
}

static int open_rule(parse_ctx *x, const char *name)
{
    size_t idx = x->c->n_rules;
    for (size_t i = 0; i < x->c->n_rules; i++)
        if (strcmp(x->c->rules[i].name, name) == 0)
            idx = i;
    if (idx < x->c->n_rules && x->user_rule[idx])
        return fail_at(x, x->line, "duplicate [rule %s]", name);
    if (idx == x->c->n_rules) {
        rp_conf_rule *r = grow(x->c->rules, x->c->n_rules, sizeof *r);
        unsigned char *u = realloc(x->user_rule, x->c->n_rules + 1);
        if (r)
            x->c->rules = r;
        if (u)
            x->user_rule = u;
        if (!r || !u)
            return fail_at(x, x->line, "out of memory");
        x->c->n_rules++;
    }
    /* A file's rule with a built-in's name replaces the built-in completely. */
    rp_conf_rule *r = &x->c->rules[idx];
    memset(r, 0, sizeof *r);
    rp_strlcpy(r->name, name, sizeof r->name);
    r->slice_thickness_min = -1;
    r->slice_thickness_max = -1;
    r->steps_line = x->line;
    x->user_rule[idx] = 1;
    x->obj = r;
    x->keys = rule_keys;
    return 1;
}

static int open_fusion(parse_ctx *x, const char *name)
{
    if (strlen(name) >= sizeof(((rp_conf_fusion *)0)->name))
        return fail_at(x, x->line, "fusion name '%s' is too long (max %zu characters)", name,
                       sizeof(((rp_conf_fusion *)0)->name) - 1);
    if (rp_conf_fusion_by_name(x->c, name))
        return fail_at(x, x->line, "duplicate [fusion %s]", name);
    if (x->c->n_fusions == RP_FUSION_MAX)
        return fail_at(x, x->line, "too many [fusion] sections (max %d)", RP_FUSION_MAX);
    rp_conf_fusion *f = &x->c->fusions[x->c->n_fusions++];
    rp_conf_fusion_init(f, name, x->line);
    x->n_fusion_keys = 0;
    x->obj = f;
    x->keys = NULL;
    return 1;
}

static int fusion_key(parse_ctx *x, const char *name, const char *value)
{
    for (int i = 0; i < x->n_fusion_keys; i++)
        if (strcasecmp(x->fusion_keys[i], name) == 0)
            return fail_at(x, x->line, "duplicate key '%s'", name);
    if (x->n_fusion_keys == 64)
        return fail_at(x, x->line, "too many keys in [fusion %s]", x->sec_arg);
    rp_strlcpy(x->fusion_keys[x->n_fusion_keys++], name, sizeof x->fusion_keys[0]);
    char why[512];
    if (x->sec == SEC_EXECUTOR ? rp_conf_executor_key(x->obj, name, value, why, sizeof why)
        : x->sec == SEC_PULL   ? rp_conf_pull_key(x->obj, name, value, why, sizeof why)
                               : rp_conf_fusion_key(x->obj, name, value, x->line, why, sizeof why))
        return fail_at(x, x->line, "%s", why);
    return 1;
}

/* `hdr` is the text between the brackets. */
static int open_section(parse_ctx *x, char *hdr)
{
    char *kind = trim(hdr);
    char *arg = kind;
    while (*arg && !isspace((unsigned char)*arg))
        arg++;
    if (*arg)
        *arg++ = '\0';
    arg = trim(arg);
    x->sec_line = x->line;
    x->seen = 0;
    rp_strlcpy(x->sec_arg, arg, sizeof x->sec_arg);
    if (strcmp(kind, "node") == 0 || strcmp(kind, "tls") == 0 || strcmp(kind, "http") == 0) {
        if (*arg)
            return fail_at(x, x->line, "section [%s] takes no name", kind);
        x->sec = kind[0] == 'n' ? SEC_NODE : kind[0] == 't' ? SEC_TLS : SEC_HTTP;
        x->obj = x->c;
        x->keys = x->sec == SEC_NODE ? node_keys : x->sec == SEC_TLS ? tls_keys : http_keys;
        x->seen = x->sec == SEC_NODE ? x->node_seen : x->sec == SEC_TLS ? x->tls_seen : x->http_seen;
        return 1;
    }
    if (strcmp(kind, "executor") == 0) {
        if (*arg)
            return fail_at(x, x->line, "section [executor] takes no name");
        x->sec = SEC_EXECUTOR;
        x->obj = &x->c->executor;
        x->n_fusion_keys = 0; /* duplicate keys are checked like [fusion]'s */
        x->keys = NULL;
        return 1;
    }
    int needs_name = strcmp(kind, "peer") == 0 || strcmp(kind, "completion") == 0 ||
                     strcmp(kind, "rule") == 0 || strcmp(kind, "fusion") == 0 ||
                     strcmp(kind, "pull") == 0;
    if (!needs_name)
        return fail_at(x, x->line,
                       "unknown section [%s%s%s] (expected node, tls, http, peer NAME, "
                       "completion MODALITY, rule NAME)",
                       kind, *arg ? " " : "", arg);
    if (!*arg)
        return fail_at(x, x->line, "section [%s] needs a name: [%s NAME]", kind, kind);
    if (!rp_conf_name_valid(arg))
        return fail_at(x, x->line, "invalid name '%s' (letters, digits, _ - . only)", arg);
    if (strcmp(kind, "pull") == 0) {
        if (rp_conf_pull_by_name(x->c, arg) || strlen(arg) >= sizeof x->c->pulls[0].name ||
            x->c->n_pulls == RP_PULL_MAX)
            return fail_at(x, x->line, "[pull %s]: duplicate, name too long or more than %d",
                           arg, RP_PULL_MAX);
        x->sec = SEC_PULL;
        x->obj = &x->c->pulls[x->c->n_pulls++];
        rp_conf_pull_init(x->obj, arg, x->line);
        x->n_fusion_keys = 0; /* duplicate keys are checked like [fusion]'s */
        x->keys = NULL;
        return 1;
    }
    if (kind[0] == 'p') {
        x->sec = SEC_PEER;
        return open_peer(x, arg);
    }
    if (kind[0] == 'c') {
        x->sec = SEC_COMPLETION;
        return open_completion(x, arg);
    }
    if (kind[0] == 'f') {
        x->sec = SEC_FUSION;
        return open_fusion(x, arg);
    }
    x->sec = SEC_RULE;
    return open_rule(x, arg);
}

/* ---- inih glue ------------------------------------------------------------------------ */

/* fgets-like reader for ini_parse_stream(): one line per call, syntax checked here. */
static char *reader(char *str, int num, void *stream)
{
    parse_ctx *x = stream;
    if (x->failed)
        return NULL;
    ssize_t n = getline(&x->buf, &x->bufsz, x->fp);
    if (n < 0) {
        if (x->sec != SEC_NONE)
            close_section(x);
        return NULL;
    }
    x->line++;
    if (n + 3 > num || n + 3 > MAX_LINE) {
        fail_at(x, x->line, "line is too long (max %d characters)",
                (num < MAX_LINE ? num : MAX_LINE) - 3);
        return NULL;
    }
    if (memchr(x->buf, '\0', (size_t)n)) {
        fail_at(x, x->line, "NUL byte in configuration file");
        return NULL;
    }
    /* Strip leading blanks so inih never treats a line as a multi-line continuation. */
    char *s = x->buf;
    if (x->line == 1 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB &&
        (unsigned char)s[2] == 0xBF)
        s += 3;
    while (*s == ' ' || *s == '\t')
        s++;
    char copy[MAX_LINE];
    rp_strlcpy(copy, s, sizeof copy);
    char *t = trim(copy);
    if (*t == '\0' || *t == ';' || *t == '#') {
        /* blank or comment */
    } else if (*t == '[') {
        char *end = strchr(t, ']');
        if (!end) {
            fail_at(x, x->line, "section header without closing ']'");
            return NULL;
        }
        char *rest = trim(end + 1);
        if (*rest && *rest != ';' && *rest != '#') {
            fail_at(x, x->line, "unexpected text after section header: '%s'", rest);
            return NULL;
        }
        *end = '\0';
        if (x->sec != SEC_NONE && !close_section(x))
            return NULL;
        if (!open_section(x, t + 1))
            return NULL;
    } else if (!strchr(t, '=') && !strchr(t, ':')) {
        fail_at(x, x->line, "syntax error: expected 'key = value' or '[section]'");
        return NULL;
    }
    snprintf(str, (size_t)num, "%s", s);
    return str;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
    parse_ctx *x = user;
    (void)section;
    if (x->failed)
        return 0;
    if (x->sec == SEC_NONE)
        return fail_at(x, x->line, "key '%s' outside of any section", name);
    if (x->sec == SEC_FUSION || x->sec == SEC_PULL || x->sec == SEC_EXECUTOR)
        return fusion_key(x, name, value ? value : "");
    int i = 0;
    for (; x->keys[i].name; i++)
        if (strcmp(x->keys[i].name, name) == 0)
            break;
    const key_def *k = &x->keys[i];
    if (!k->name) {
        static const char *const secname[] = {"",     "node",   "tls",  "peer", "completion",
                                              "rule", "fusion", "pull", "http"};
        return fail_at(x, x->line, "unknown key '%s' in [%s%s%s]", name, secname[x->sec],
                       x->sec_arg[0] ? " " : "", x->sec_arg);
    }
    if ((x->seen >> i) & 1)
        return fail_at(x, x->line, "duplicate key '%s'", name);
    x->seen |= (uint64_t)1 << i;
    if (x->sec == SEC_NODE)
        x->node_seen = x->seen;
    else if (x->sec == SEC_TLS)
        x->tls_seen = x->seen;
    else if (x->sec == SEC_HTTP)
        x->http_seen = x->seen;
    return apply_key(x, k, value ? value : "");
}

int rp_conf_load(rp_conf *c, const char *path, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = '\0';
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    FILE *fp = fopen(path, "r");
    if (!fp)
        return rp_conf_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(fp);
        return rp_conf_errf(err, errlen, "%s: not a regular file", path);
    }

    rp_conf work;
    int rc = rp_conf_copy(&work, c);
    if (rc) {
        fclose(fp);
        return rp_conf_errf(err, errlen, "%s: out of memory", path);
    }
    parse_ctx x;
    memset(&x, 0, sizeof x);
    x.c = &work;
    x.path = path;
    x.fp = fp;
    x.err = err;
    x.errlen = errlen;
    x.user_rule = calloc(work.n_rules + 1, 1);
    const char *slash = strrchr(path, '/');
    if (slash && (size_t)(slash - path) < sizeof x.dir) {
        memcpy(x.dir, path, (size_t)(slash - path));
        x.dir[slash - path] = '\0';
        if (!x.dir[0])
            rp_strlcpy(x.dir, "/", sizeof x.dir);
    }
    if (path[0] != '/') {
        char cwd[RP_PATH_MAX];
        if (getcwd(cwd, sizeof cwd)) {
            char tmp[2 * RP_PATH_MAX + 2];
            snprintf(tmp, sizeof tmp, "%s%s%s", cwd, x.dir[0] ? "/" : "", x.dir);
            rp_strlcpy(x.dir, tmp, sizeof x.dir);
        }
    }

    /* Debian's inih reads lines into a 200-byte stack buffer unless told otherwise; recipes
     * are longer. These globals only matter while we parse (single-threaded start-up). */
    ini_use_stack = false;
    ini_max_line = MAX_LINE;
    ini_initial_alloc = MAX_LINE;
    ini_allow_multiline = false;
    /* "key = value ; note" and "key = value # note" are both comments after a blank. */
    static char inline_prefixes[] = ";#";
    ini_inline_comment_prefixes = inline_prefixes;
    int r = x.user_rule ? ini_parse_stream(reader, &x, handler, &x) : -2;
    if (!x.failed && r > 0)
        fail_at(&x, r, "syntax error");
    else if (!x.failed && r < 0)
        rp_conf_errf(err, errlen, "%s: cannot parse (error %d)", path, r);
    if (!x.failed && ferror(fp))
        fail_at(&x, x.line, "read error");
    fclose(fp);
    free(x.buf);
    if (!x.failed && r == 0)
        completion_inherit(&x);
    char pwhy[512];
    int pline = 0;
    if (!x.failed && r == 0 && rp_conf_pull_check_refs(&work, pwhy, sizeof pwhy, &pline))
        fail_at(&x, pline, "%s", pwhy);
    free(x.user_rule);
    free(x.comp_flags);
    if (x.failed || r != 0) {
        rp_conf_free(&work);
        return RP_ECONF;
    }
    rp_strlcpy(work.source, path, sizeof work.source);
    rp_conf_free(c);
    *c = work;
    return 0;
}
