/*
 * conf — embedded defaults, lookups, cross-field validation and the data_dir fallback.
 * The INI parser lives in conf_parse.c.
 */
#include "conf/conf.h"
#include "conf/conf_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"

int rp_conf_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return RP_ECONF;
}

/* ---- defaults ------------------------------------------------------------------------- */

static const struct {
    const char *modality;
    int quiet_s;
} default_completion[] = {
    {"default", 30}, {"CT", 30}, {"MR", 30}, {"CR", 5}, {"DX", 5}, {"MG", 5}, {"XA", 5}, {"US", 5},
};

static const struct {
    const char *name, *modality, *steps, *outputs;
} default_rules[] = {
    {"ct_default", "CT",
     "hu resample(1,1,1,bspline3) bodymask lungmask metal clip(-1200,600) normalize(minmax)",
     "nifti json qc png"},
    {"mr_default", "MR", "foreground n4 normalize(percentile(0.5,99.5))", "nifti json qc png"},
    {"xr_default", "CR DX MG",
     "present crop(background) clahe(2.0,8) resize(1024,keep_aspect) pad(1024) normalize(minmax) "
     "png(8)",
     "nifti json png"},
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

int rp_conf_defaults(rp_conf *c)
{
    memset(c, 0, sizeof *c);
    rp_strlcpy(c->source, "(defaults)", sizeof c->source);
    rp_strlcpy(c->ae_title, "RADPREP", sizeof c->ae_title);
    c->port = 11112;
    rp_strlcpy(c->bind, "0.0.0.0", sizeof c->bind);
    rp_strlcpy(c->data_dir, RP_CONF_DEFAULT_DATA_DIR, sizeof c->data_dir);
    c->max_associations = 32;
    c->max_associations_per_peer = 8;
    c->acse_timeout_s = 30;
    c->dimse_timeout_s = 60;
    c->network_timeout_s = 60;
    c->max_pdu = 131072;
    c->min_free_mb = 1024;
    c->duplicate_policy = RP_DUP_KEEP_FIRST;
    c->uid_policy = RP_UID_LENIENT;
    c->max_instance_mb = 2048;
    rp_strlcpy(c->log_level, "info", sizeof c->log_level);
    rp_strlcpy(c->uid_root, "1.2.826.0.1.3680043.10.1338", sizeof c->uid_root);
    c->workers = 0;
    c->job_timeout_s = 1800;
    c->job_memory_mb = 8192;
    c->job_max_attempts = 3;
    c->index_batch = 64;
    c->index_flush_ms = 200;
    c->spool_log_mb = 1024;
    c->tls_port = 0;
    rp_strlcpy(c->tls_profile, "bcp195-nd", sizeof c->tls_profile);
    c->tls_require_client_cert = 1;
    c->tls_expiry_warn_days = 30;
    rp_conf_http_defaults(c);
    rp_conf_executor_defaults(&c->executor);

    c->completion = calloc(NELEM(default_completion), sizeof *c->completion);
    c->rules = calloc(NELEM(default_rules), sizeof *c->rules);
    if (!c->completion || !c->rules) {
        rp_conf_free(c);
        return RP_ENOMEM;
    }
    for (size_t i = 0; i < NELEM(default_completion); i++) {
        rp_conf_completion *cc = &c->completion[i];
        rp_strlcpy(cc->modality, default_completion[i].modality, sizeof cc->modality);
        cc->quiet_s = default_completion[i].quiet_s;
        cc->use_expected_count = 1;
    }
    c->n_completion = NELEM(default_completion);
    for (size_t i = 0; i < NELEM(default_rules); i++) {
        rp_conf_rule *r = &c->rules[i];
        rp_strlcpy(r->name, default_rules[i].name, sizeof r->name);
        rp_strlcpy(r->modality, default_rules[i].modality, sizeof r->modality);
        rp_strlcpy(r->steps, default_rules[i].steps, sizeof r->steps);
        rp_strlcpy(r->outputs, default_rules[i].outputs, sizeof r->outputs);
        r->slice_thickness_min = -1;
        r->slice_thickness_max = -1;
        r->priority = -100;
        r->builtin = 1;
        r->steps_line = 0;
    }
    c->n_rules = NELEM(default_rules);
    return 0;
}

void rp_conf_free(rp_conf *c)
{
    if (!c)
        return;
    free(c->peers);
    free(c->completion);
    free(c->rules);
    c->peers = NULL;
    c->completion = NULL;
    c->rules = NULL;
    c->n_peers = c->n_completion = c->n_rules = 0;
}

static void *dup_array(const void *src, size_t n, size_t size, int *fail)
{
    if (n == 0)
        return NULL;
    void *p = malloc(n * size);
    if (!p) {
        *fail = 1;
        return NULL;
    }
    memcpy(p, src, n * size);
    return p;
}

int rp_conf_copy(rp_conf *dst, const rp_conf *src)
{
    int fail = 0;
    *dst = *src;
    dst->peers = dup_array(src->peers, src->n_peers, sizeof *src->peers, &fail);
    dst->completion = dup_array(src->completion, src->n_completion, sizeof *src->completion, &fail);
    dst->rules = dup_array(src->rules, src->n_rules, sizeof *src->rules, &fail);
    if (fail) {
        rp_conf_free(dst);
        return RP_ENOMEM;
    }
    return 0;
}

/* ---- lookups ---------------------------------------------------------------------------- */

const rp_conf_peer *rp_conf_peer_by_ae(const rp_conf *c, const char *ae_title)
{
    if (!c || !ae_title)
        return NULL;
    /* AE titles compare without their non-significant leading/trailing spaces. */
    while (*ae_title == ' ')
        ae_title++;
    size_t n = strlen(ae_title);
    while (n > 0 && ae_title[n - 1] == ' ')
        n--;
    for (size_t i = 0; i < c->n_peers; i++)
        if (strlen(c->peers[i].ae_title) == n && strncmp(c->peers[i].ae_title, ae_title, n) == 0)
            return &c->peers[i];
    return NULL;
}

const rp_conf_peer *rp_conf_peer_by_name(const rp_conf *c, const char *name)
{
    if (!c || !name)
        return NULL;
    for (size_t i = 0; i < c->n_peers; i++)
        if (strcmp(c->peers[i].name, name) == 0)
            return &c->peers[i];
    return NULL;
}

const rp_conf_completion *rp_conf_completion_for(const rp_conf *c, const char *modality)
{
    static const rp_conf_completion fallback = {"default", 30, 1};
    const rp_conf_completion *def = NULL;
    for (size_t i = 0; c && i < c->n_completion; i++) {
        if (modality && *modality && strcasecmp(c->completion[i].modality, modality) == 0)
            return &c->completion[i];
        if (strcmp(c->completion[i].modality, "default") == 0)
            def = &c->completion[i];
    }
    return def ? def : &fallback;
}

const char *rp_conf_outputs_dir(const rp_conf *c, char *buf, size_t bufsz)
{
    if (c->outputs_dir[0])
        snprintf(buf, bufsz, "%s", c->outputs_dir);
    else
        snprintf(buf, bufsz, "%s/outputs", c->data_dir);
    return buf;
}

/* ---- value checks shared with the parser --------------------------------------------- */

int rp_conf_ae_valid(const char *ae, char *why, size_t whylen)
{
    size_t n = strlen(ae);
    if (n == 0)
        return rp_conf_errf(why, whylen, "AE title is empty");
    if (n > RP_AE_MAX)
        return rp_conf_errf(why, whylen, "AE title '%s' is longer than 16 characters", ae);
    for (const char *p = ae; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '\\')
            return rp_conf_errf(why, whylen, "AE title '%s' contains a backslash", ae);
        if (ch < 0x20 || ch >= 0x7f)
            return rp_conf_errf(why, whylen, "AE title contains a control or non-ASCII character");
    }
    return 0;
}

int rp_conf_uid_root_valid(const char *uid, char *why, size_t whylen)
{
    size_t n = strlen(uid);
    /* Leave room for the suffixes derived UIDs append (time, counters, hashes). */
    if (n == 0 || n > 40)
        return rp_conf_errf(why, whylen, "uid_root must have 1..40 characters (has %zu)", n);
    const char *comp = uid;
    for (const char *p = uid;; p++) {
        if (*p == '.' || *p == '\0') {
            size_t len = (size_t)(p - comp);
            if (len == 0)
                return rp_conf_errf(why, whylen, "uid_root '%s' has an empty component", uid);
            if (len > 1 && comp[0] == '0')
                return rp_conf_errf(why, whylen,
                                    "uid_root '%s' has a component with a leading zero", uid);
            if (*p == '\0')
                break;
            comp = p + 1;
        } else if (!isdigit((unsigned char)*p)) {
            return rp_conf_errf(why, whylen, "uid_root '%s' may contain only digits and dots", uid);
        }
    }
    return 0;
}

int rp_conf_name_valid(const char *name)
{
    if (!*name || strlen(name) > 63)
        return 0;
    for (const char *p = name; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            return 0;
    return 1;
}

int rp_conf_output_known(const char *word)
{
    static const char *const known[] = {"nifti", "json",     "qc",  "png",     "dicom",
                                        "seg",   "manifest", "npy", "overlay", "sr"};
    for (size_t i = 0; i < NELEM(known); i++)
        if (strcmp(word, known[i]) == 0)
            return 1;
    return 0;
}

int rp_conf_result_kind(const char *word)
{
    static const struct {
        const char *w;
        int k;
    } kinds[] = {{"derived", RP_RESULT_DERIVED},
                 {"seg", RP_RESULT_SEG},
                 {"overlay", RP_RESULT_OVERLAY},
                 {"sr", RP_RESULT_SR}};
    for (size_t i = 0; word && i < NELEM(kinds); i++)
        if (strcmp(word, kinds[i].w) == 0)
            return kinds[i].k;
    return 0;
}

int rp_conf_peer_results(const rp_conf_peer *p)
{
    char buf[sizeof p->results];
    rp_strlcpy(buf, p->results[0] ? p->results : "derived seg", sizeof buf);
    int mask = 0;
    char *save = NULL;
    for (char *w = strtok_r(buf, " \t,", &save); w; w = strtok_r(NULL, " \t,", &save))
        mask |= rp_conf_result_kind(w);
    return mask;
}

int rp_conf_parse_bool(const char *s)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};
    for (size_t i = 0; i < NELEM(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return 1;
        if (strcasecmp(s, no[i]) == 0)
            return 0;
    }
    return RP_EINVAL;
}

/* ---- cross-field validation ------------------------------------------------------------ */

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
                            "%s %s is readable by group or others (mode %04o): refusing to use "
                            "it; run chmod 600 on it",
                            what, path, (unsigned)(st.st_mode & 07777));
    return 0;
}

/* `list` is a space-separated list of peer names that must be destinations. */
static int check_send_to(const rp_conf *c, const rp_conf_rule *r, char *err, size_t errlen)
{
    char buf[sizeof r->send_to];
    rp_strlcpy(buf, r->send_to, sizeof buf);
    char *save = NULL;
    for (char *w = strtok_r(buf, " \t,", &save); w; w = strtok_r(NULL, " \t,", &save)) {
        const rp_conf_peer *p = rp_conf_peer_by_name(c, w);
        if (!p)
            return rp_conf_errf(err, errlen, "%s:%d: rule %s: send_to names unknown peer '%s'",
                                c->source, r->steps_line, r->name, w);
        if (!p->is_destination)
            return rp_conf_errf(err, errlen,
                                "%s:%d: rule %s: send_to peer '%s' is not a destination "
                                "(set destination = yes in [peer %s])",
                                c->source, r->steps_line, r->name, w, w);
    }
    return 0;
}

int rp_conf_validate(const rp_conf *c, char *err, size_t errlen)
{
    char why[256];
    if (rp_conf_ae_valid(c->ae_title, why, sizeof why))
        return rp_conf_errf(err, errlen, "[node] ae_title: %s", why);
    if (c->port < 1 || c->port > 65535)
        return rp_conf_errf(err, errlen, "[node] port %d out of range 1..65535", c->port);
    if (c->tls_port < 0 || c->tls_port > 65535)
        return rp_conf_errf(err, errlen, "[tls] port %d out of range 1..65535", c->tls_port);
    if (c->tls_port && c->tls_port == c->port)
        return rp_conf_errf(err, errlen, "[tls] port %d is the same as [node] port", c->tls_port);
    if (c->max_pdu != 0 && (c->max_pdu < 4096 || c->max_pdu > 131072))
        return rp_conf_errf(err, errlen, "[node] max_pdu %u must be 0 or 4096..131072",
                            c->max_pdu);
    if (!c->data_dir[0])
        return rp_conf_errf(err, errlen, "[node] data_dir is empty");
    if (c->data_dir[0] != '/')
        return rp_conf_errf(err, errlen, "[node] data_dir '%s' is not an absolute path",
                            c->data_dir);
    if (c->max_associations < 1)
        return rp_conf_errf(err, errlen, "[node] max_associations must be >= 1");
    if (c->max_associations_per_peer < 1 || c->max_associations_per_peer > c->max_associations)
        return rp_conf_errf(err, errlen,
                            "[node] max_associations_per_peer must be 1..max_associations (%d)",
                            c->max_associations);
    if (c->job_max_attempts < 1)
        return rp_conf_errf(err, errlen, "[node] job_max_attempts must be >= 1");
    if (c->index_batch < 1)
        return rp_conf_errf(err, errlen, "[node] index_batch must be >= 1");
    if (rp_conf_uid_root_valid(c->uid_root, why, sizeof why))
        return rp_conf_errf(err, errlen, "[node] %s", why);

    if (c->tls_port) {
        if (!c->tls_cert[0] || !c->tls_key[0])
            return rp_conf_errf(err, errlen, "[tls] port is set: cert and key are required");
        if (check_file("[tls] cert", c->tls_cert, 0, err, errlen))
            return RP_ECONF;
        if (check_file("[tls] key", c->tls_key, 1, err, errlen))
            return RP_ECONF;
        if (c->tls_key_passphrase_file[0] &&
            check_file("[tls] key_passphrase_file", c->tls_key_passphrase_file, 1, err, errlen))
            return RP_ECONF;
        if (c->tls_ca_file[0] && check_file("[tls] ca_file", c->tls_ca_file, 0, err, errlen))
            return RP_ECONF;
        if (c->tls_ca_dir[0]) {
            struct stat st;
            if (stat(c->tls_ca_dir, &st) != 0 || !S_ISDIR(st.st_mode))
                return rp_conf_errf(err, errlen, "[tls] ca_dir %s: not a directory", c->tls_ca_dir);
        }
        if (c->tls_require_client_cert && !c->tls_ca_file[0] && !c->tls_ca_dir[0])
            return rp_conf_errf(err, errlen,
                                "[tls] require_client_cert = yes needs ca_file or ca_dir to "
                                "verify client certificates");
    }

    for (size_t i = 0; i < c->n_peers; i++) {
        const rp_conf_peer *p = &c->peers[i];
        if (p->is_destination && (!p->host[0] || p->port <= 0))
            return rp_conf_errf(err, errlen,
                                "%s:%d: peer %s: destination = yes needs host and port", c->source,
                                p->line, p->name);
        if (p->tls_only && !c->tls_port)
            return rp_conf_errf(err, errlen,
                                "%s:%d: peer %s: tls_only = yes but [tls] port is not set",
                                c->source, p->line, p->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->peers[j].ae_title, p->ae_title) == 0)
                return rp_conf_errf(err, errlen,
                                    "%s:%d: peer %s: AE title '%s' is already used by peer %s",
                                    c->source, p->line, p->name, p->ae_title, c->peers[j].name);
    }
    for (size_t i = 0; i < c->n_rules; i++)
        if (check_send_to(c, &c->rules[i], err, errlen))
            return RP_ECONF;
    return rp_conf_http_validate(c, err, errlen);
}

int rp_conf_validate_rules(const rp_conf *c, rp_conf_steps_check_fn check, char *err, size_t errlen)
{
    if (!check)
        return 0;
    for (size_t i = 0; i < c->n_rules; i++) {
        const rp_conf_rule *r = &c->rules[i];
        char why[512] = "";
        if (check(r->steps, why, sizeof why) != 0) {
            if (!why[0])
                snprintf(why, sizeof why, "invalid steps");
            if (r->builtin)
                return rp_conf_errf(err, errlen, "(built-in): rule %s: %s", r->name, why);
            return rp_conf_errf(err, errlen, "%s:%d: rule %s: %s", c->source, r->steps_line,
                                r->name, why);
        }
    }
    return 0;
}

/* ---- data_dir --------------------------------------------------------------------------- */

static int dir_usable(const char *dir)
{
    if (rp_mkdir_p(dir, 0750) != 0)
        return 0;
    return access(dir, W_OK | X_OK) == 0;
}

int rp_conf_resolve_data_dir(rp_conf *c)
{
    if (dir_usable(c->data_dir))
        return 0;
    int err = errno;
    if (strcmp(c->data_dir, RP_CONF_DEFAULT_DATA_DIR) != 0) {
        RP_ERROR("conf", "data_dir cannot be created or written dir=%s error=\"%s\"", c->data_dir,
                 strerror(err));
        return err == EACCES || err == EPERM ? RP_EPERM : RP_EIO;
    }
    char alt[RP_PATH_MAX];
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    if (xdg && xdg[0] == '/')
        snprintf(alt, sizeof alt, "%s/radprep", xdg);
    else if (home && home[0] == '/')
        snprintf(alt, sizeof alt, "%s/.local/state/radprep", home);
    else
        return RP_EPERM;
    if (!dir_usable(alt)) {
        RP_ERROR("conf", "no usable data_dir default=%s fallback=%s", RP_CONF_DEFAULT_DATA_DIR,
                 alt);
        return RP_EPERM;
    }
    RP_WARN("conf", "default data_dir not writable, using fallback default=%s data_dir=%s",
            RP_CONF_DEFAULT_DATA_DIR, alt);
    rp_strlcpy(c->data_dir, alt, sizeof c->data_dir);
    return 0;
}
