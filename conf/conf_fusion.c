/*
 * conf_fusion — the [fusion NAME] section: which sequences of a study make the channels of one
 * fused multi-channel output, how each is found, normalised and written.
 *
 *   [fusion brain]
 *   modality = MR                 ; default MR
 *   sequences = T1 T2 FLAIR       ; channels in order; NAME or NAME:GLOB (GLOB matches the
 *                                 ; series description, '|' separates alternatives)
 *   T2.description = *t2*|*tse*   ; per-sequence criteria: description, tr_ms, te_ms, ti_ms
 *   T2.te_ms = 60..400            ;   (LO..HI, ms), ti_absent_ok
 *   reference = T1                ; grid every channel is resampled onto (default: first)
 *   normalize = zscore            ; zscore (default) | none | a recipe run on each member
 *   interpolation = linear        ; linear | nearest
 *   layout = nifti4d              ; nifti4d | nnunet | both
 *   register = none               ; none | rigid | rigid_scale: each member registered onto the
 *   FLAIR.register = rigid        ;   reference (Mattes MI, pipeline/register); per sequence too
 *
 * A sequence with any criterion in the file uses exactly those criteria; one without uses the
 * built-in matcher of its name (T1, T2, FLAIR, PD, BOLD, FIELDMAP: description patterns and
 * TR/TE/TI ranges, rp_conf_seq_builtin() below). Errors come back as a reason; conf_parse.c
 * adds FILE:LINE.
 */
#include "conf/conf.h"
#include "conf/conf_internal.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"

/* What `normalize = zscore` means: each member z-scored inside its own foreground (the
 * log-domain Otsu mask of pipeline/mrmask.c), on its own grid, before resampling. */
#define ZSCORE_RECIPE "foreground normalize(zscore_in(foreground))"

/* Description patterns follow what Siemens, GE and Philips write; the timing ranges are the
 * physics: T1 short TE (MPRAGE: TI 300-1300), T2 long TR/TE, FLAIR long TI. */
static const struct {
    const char *name, *pattern;
    double tr_lo, tr_hi, te_lo, te_hi, ti_lo, ti_hi;
    int ti_absent_ok;
} builtin_seq[] = {
    {"T1", "*t1*|*mprage*|*tfl*|*spgr*|*bravo*|*tfe*", 1, 3500, 0, 20, 0, 1500, 1},
    {"T2", "*t2*", 1500, 30000, 60, 400, 1, 0, 1},
    {"FLAIR", "*flair*|*tirm*|*dark*fluid*", 4000, 30000, 60, 400, 1500, 4000, 0},
    {"PD", "*pd*|*proton*", 1000, 30000, 0, 40, 1, 0, 1},
    {"BOLD", "*bold*|*fmri*|*ep2d*|*func*", 300, 5000, 15, 60, 1, 0, 1},
    {"FIELDMAP", "*field*map*|*fmap*|*gre_field*", 1, 2000, 1, 20, 1, 0, 1},
};

int rp_conf_seq_builtin(const char *name, rp_conf_fusion_seq *out)
{
    for (size_t i = 0; name && i < sizeof builtin_seq / sizeof builtin_seq[0]; i++)
        if (strcasecmp(name, builtin_seq[i].name) == 0) {
            memset(out, 0, sizeof *out);
            rp_strlcpy(out->name, builtin_seq[i].name, sizeof out->name);
            rp_strlcpy(out->description, builtin_seq[i].pattern, sizeof out->description);
            out->tr_lo = builtin_seq[i].tr_lo;
            out->tr_hi = builtin_seq[i].tr_hi;
            out->te_lo = builtin_seq[i].te_lo;
            out->te_hi = builtin_seq[i].te_hi;
            out->ti_lo = builtin_seq[i].ti_lo;
            out->ti_hi = builtin_seq[i].ti_hi;
            out->ti_absent_ok = builtin_seq[i].ti_absent_ok;
            return 0;
        }
    return RP_ENOENT;
}

static int builtin_known(const char *name)
{
    rp_conf_fusion_seq q;
    return rp_conf_seq_builtin(name, &q) == 0;
}

static int in_range(double v, double lo, double hi)
{
    if (lo > hi)
        return 1; /* no constraint */
    return v >= 0 && v >= lo && v <= hi;
}

int rp_conf_seq_match(const rp_conf_fusion_seq *q, const rp_conf_series_attrs *a)
{
    if (!q || !a)
        return 0;
    if (q->description[0]) {
        char pat[sizeof q->description];
        rp_strlcpy(pat, q->description, sizeof pat);
        int hit = 0;
        for (char *save = NULL, *alt = strtok_r(pat, "|", &save); alt && !hit;
             alt = strtok_r(NULL, "|", &save))
            hit = fnmatch(alt, a->description ? a->description : "", FNM_CASEFOLD) == 0;
        if (!hit)
            return 0;
    }
    if (!in_range(a->tr_ms, q->tr_lo, q->tr_hi) || !in_range(a->te_ms, q->te_lo, q->te_hi))
        return 0;
    if (q->ti_lo <= q->ti_hi) {
        if (a->ti_ms < 0)
            return q->ti_absent_ok;
        return in_range(a->ti_ms, q->ti_lo, q->ti_hi);
    }
    return 1;
}

static int modality_ok(const char *list, const char *modality)
{
    if (!list[0])
        return 1;
    char buf[sizeof(((rp_conf_fusion *)0)->modality)];
    rp_strlcpy(buf, list, sizeof buf);
    char *save = NULL;
    for (char *w = strtok_r(buf, " \t,", &save); w; w = strtok_r(NULL, " \t,", &save))
        if (strcasecmp(w, modality ? modality : "") == 0)
            return 1;
    return 0;
}

unsigned rp_conf_fusion_match(const rp_conf_fusion *f, const rp_conf_series_attrs *a)
{
    if (!f || !a || !modality_ok(f->modality, a->modality))
        return 0;
    unsigned bits = 0;
    for (int s = 0; s < f->n_seq; s++) {
        rp_conf_fusion_seq q;
        if (f->seq[s].custom || rp_conf_seq_builtin(f->seq[s].name, &q) != 0)
            q = f->seq[s];
        if (rp_conf_seq_match(&q, a))
            bits |= 1u << s;
    }
    return bits;
}

static int why_f(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* `register` value: RP_FUSION_REG_* or -1. */
static int register_mode_of(const char *v)
{
    if (strcasecmp(v, "none") == 0)
        return RP_FUSION_REG_NONE;
    if (strcasecmp(v, "rigid") == 0)
        return RP_FUSION_REG_RIGID;
    if (strcasecmp(v, "rigid_scale") == 0)
        return RP_FUSION_REG_RIGID_SCALE;
    return -1;
}
static int why_f(char *why, size_t whylen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return -1;
}

void rp_conf_fusion_init(rp_conf_fusion *f, const char *name, int line)
{
    memset(f, 0, sizeof *f);
    rp_strlcpy(f->name, name, sizeof f->name);
    rp_strlcpy(f->modality, "MR", sizeof f->modality);
    rp_strlcpy(f->normalize, ZSCORE_RECIPE, sizeof f->normalize);
    f->normalize_line = line;
    f->order = 1;
    f->layout = RP_FUSION_LAYOUT_NIFTI4D;
    f->reference = -1;
    f->line = line;
}

static int seq_name_ok(const char *s)
{
    if (!*s || strlen(s) >= sizeof(((rp_conf_fusion_seq *)0)->name))
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            return 0;
    return 1;
}

static rp_conf_fusion_seq *seq_find(rp_conf_fusion *f, const char *name)
{
    for (int i = 0; i < f->n_seq; i++)
        if (strcasecmp(f->seq[i].name, name) == 0)
            return &f->seq[i];
    return NULL;
}

static void seq_clear_criteria(rp_conf_fusion_seq *q)
{
    q->description[0] = '\0';
    q->tr_lo = q->te_lo = q->ti_lo = 1;
    q->tr_hi = q->te_hi = q->ti_hi = 0; /* lo > hi: no bound */
    q->ti_absent_ok = 0;
}

/* "LO..HI" in ms, both >= 0, LO <= HI. */
static int parse_range(const char *v, double *lo, double *hi)
{
    const char *dots = strstr(v, "..");
    if (!dots)
        return -1;
    char a[64], b[64];
    size_t la = (size_t)(dots - v);
    if (la == 0 || la >= sizeof a || strlen(dots + 2) == 0 || strlen(dots + 2) >= sizeof b)
        return -1;
    memcpy(a, v, la);
    a[la] = '\0';
    rp_strlcpy(b, dots + 2, sizeof b);
    char *e1, *e2;
    errno = 0;
    double x = strtod(a, &e1), y = strtod(b, &e2);
    if (errno || *e1 || *e2 || x != x || y != y || x < 0 || y < x)
        return -1;
    *lo = x;
    *hi = y;
    return 0;
}

static int set_sequences(rp_conf_fusion *f, const char *v, char *why, size_t whylen)
{
    char buf[1024];
    if (strlen(v) >= sizeof buf)
        return why_f(why, whylen, "sequences: value is too long");
    rp_strlcpy(buf, v, sizeof buf);
    f->n_seq = 0;
    char *save = NULL;
    for (char *w = strtok_r(buf, " \t,", &save); w; w = strtok_r(NULL, " \t,", &save)) {
        char *colon = strchr(w, ':');
        if (colon)
            *colon++ = '\0';
        if (!seq_name_ok(w))
            return why_f(why, whylen,
                         "sequences: invalid sequence name '%s' (letters, digits, _ -; at most "
                         "15)",
                         w);
        if (seq_find(f, w))
            return why_f(why, whylen, "sequences: '%s' is listed twice", w);
        if (f->n_seq == RP_FUSION_MAX_SEQ)
            return why_f(why, whylen, "sequences: at most %d sequences", RP_FUSION_MAX_SEQ);
        rp_conf_fusion_seq *q = &f->seq[f->n_seq++];
        memset(q, 0, sizeof *q);
        q->register_mode = -1;
        rp_strlcpy(q->name, w, sizeof q->name);
        seq_clear_criteria(q);
        if (colon) {
            if (!*colon)
                return why_f(why, whylen, "sequences: '%s:' needs a description glob", w);
            if (strlen(colon) >= sizeof q->description)
                return why_f(why, whylen, "sequences: glob of %s is too long", w);
            rp_strlcpy(q->description, colon, sizeof q->description);
            q->custom = 1;
        }
    }
    if (f->n_seq == 0)
        return why_f(why, whylen, "sequences: empty");
    return 0;
}

int rp_conf_fusion_key(rp_conf_fusion *f, const char *key, const char *v, int line, char *why,
                       size_t whylen)
{
    const char *dot = strchr(key, '.');
    if (dot) {
        char sname[32];
        size_t l = (size_t)(dot - key);
        if (l == 0 || l >= sizeof sname)
            return why_f(why, whylen, "unknown key '%s' in [fusion %s]", key, f->name);
        memcpy(sname, key, l);
        sname[l] = '\0';
        rp_conf_fusion_seq *q = seq_find(f, sname);
        if (!q)
            return why_f(why, whylen,
                         "%s: sequence '%s' is not in `sequences` (list the sequences first)", key,
                         sname);
        const char *k = dot + 1;
        if (strcmp(k, "register") == 0) { /* not a matching criterion */
            if ((q->register_mode = register_mode_of(v)) < 0)
                return why_f(why, whylen, "%s: '%s' is not one of none|rigid|rigid_scale", key, v);
            return 0;
        }
        if (!q->custom) {
            /* the first criterion from the file replaces the built-in matcher as a whole */
            seq_clear_criteria(q);
            q->custom = 1;
        }
        if (strcmp(k, "description") == 0) {
            if (!*v)
                return why_f(why, whylen, "%s: empty glob", key);
            if (strlen(v) >= sizeof q->description)
                return why_f(why, whylen, "%s: value is too long (max %zu characters)", key,
                             sizeof q->description - 1);
            rp_strlcpy(q->description, v, sizeof q->description);
            return 0;
        }
        double *lo = NULL, *hi = NULL;
        if (strcmp(k, "tr_ms") == 0) {
            lo = &q->tr_lo;
            hi = &q->tr_hi;
        } else if (strcmp(k, "te_ms") == 0) {
            lo = &q->te_lo;
            hi = &q->te_hi;
        } else if (strcmp(k, "ti_ms") == 0) {
            lo = &q->ti_lo;
            hi = &q->ti_hi;
        } else if (strcmp(k, "ti_absent_ok") == 0) {
            int b = rp_conf_parse_bool(v);
            if (b < 0)
                return why_f(why, whylen, "%s: '%s' is not a boolean", key, v);
            q->ti_absent_ok = b;
            return 0;
        } else {
            return why_f(why, whylen,
                         "unknown key '%s' in [fusion %s] (per sequence: description, tr_ms, "
                         "te_ms, ti_ms, ti_absent_ok, register)",
                         key, f->name);
        }
        if (parse_range(v, lo, hi))
            return why_f(why, whylen, "%s: expected LO..HI in ms (0 <= LO <= HI), got '%s'", key,
                         v);
        return 0;
    }
    if (strcmp(key, "sequences") == 0)
        return set_sequences(f, v, why, whylen);
    if (strcmp(key, "modality") == 0) {
        if (!*v || strlen(v) >= sizeof f->modality)
            return why_f(why, whylen, "modality: expected a list of modalities");
        for (const char *p = v; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != ' ' && *p != '\t' && *p != ',')
                return why_f(why, whylen, "modality: invalid '%s'", v);
        rp_strlcpy(f->modality, v, sizeof f->modality);
        return 0;
    }
    if (strcmp(key, "reference") == 0) {
        rp_conf_fusion_seq *q = seq_find(f, v);
        if (!q)
            return why_f(why, whylen, "reference: '%s' is not one of the sequences", v);
        f->reference = (int)(q - f->seq);
        return 0;
    }
    if (strcmp(key, "normalize") == 0) {
        if (strcasecmp(v, "zscore") == 0)
            rp_strlcpy(f->normalize, ZSCORE_RECIPE, sizeof f->normalize);
        else if (strcasecmp(v, "none") == 0)
            f->normalize[0] = '\0';
        else if (!*v)
            return why_f(why, whylen, "normalize: empty (zscore, none or recipe steps)");
        else if (strlen(v) >= sizeof f->normalize)
            return why_f(why, whylen, "normalize: value is too long");
        else
            rp_strlcpy(f->normalize, v, sizeof f->normalize);
        f->normalize_line = line;
        return 0;
    }
    if (strcmp(key, "interpolation") == 0) {
        if (strcasecmp(v, "linear") == 0)
            f->order = 1;
        else if (strcasecmp(v, "nearest") == 0)
            f->order = 0;
        else
            return why_f(why, whylen, "interpolation: '%s' is not one of linear|nearest", v);
        return 0;
    }
    if (strcmp(key, "layout") == 0) {
        if (strcasecmp(v, "nifti4d") == 0)
            f->layout = RP_FUSION_LAYOUT_NIFTI4D;
        else if (strcasecmp(v, "nnunet") == 0)
            f->layout = RP_FUSION_LAYOUT_NNUNET;
        else if (strcasecmp(v, "both") == 0)
            f->layout = RP_FUSION_LAYOUT_NIFTI4D | RP_FUSION_LAYOUT_NNUNET;
        else
            return why_f(why, whylen, "layout: '%s' is not one of nifti4d|nnunet|both", v);
        return 0;
    }
    if (strcmp(key, "register") == 0) {
        if ((f->register_mode = register_mode_of(v)) < 0)
            return why_f(why, whylen, "register: '%s' is not one of none|rigid|rigid_scale", v);
        return 0;
    }
    return why_f(why, whylen,
                 "unknown key '%s' in [fusion %s] (known: modality, sequences, reference, "
                 "normalize, interpolation, layout, register, SEQ.description, SEQ.tr_ms, "
                 "SEQ.te_ms, SEQ.ti_ms, SEQ.ti_absent_ok, SEQ.register)",
                 key, f->name);
}

int rp_conf_fusion_close(rp_conf_fusion *f, char *why, size_t whylen)
{
    if (f->n_seq == 0)
        return why_f(why, whylen, "fusion %s: sequences is required", f->name);
    for (int i = 0; i < f->n_seq; i++)
        if (!f->seq[i].custom && !builtin_known(f->seq[i].name))
            return why_f(why, whylen,
                         "fusion %s: sequence %s has no built-in matcher (built-in: T1 T2 "
                         "FLAIR PD BOLD FIELDMAP): give %s:GLOB or %s.description / tr_ms / "
                         "te_ms / ti_ms",
                         f->name, f->seq[i].name, f->seq[i].name, f->seq[i].name);
    if (f->reference < 0)
        f->reference = 0;
    return 0;
}

const rp_conf_fusion *rp_conf_fusion_by_name(const rp_conf *c, const char *name)
{
    for (size_t i = 0; c && name && i < c->n_fusions; i++)
        if (strcmp(c->fusions[i].name, name) == 0)
            return &c->fusions[i];
    return NULL;
}

int rp_conf_validate_fusions(const rp_conf *c, rp_conf_steps_check_fn check, char *err,
                             size_t errlen)
{
    for (size_t i = 0; i < c->n_fusions; i++) {
        const rp_conf_fusion *f = &c->fusions[i];
        if (!f->normalize[0])
            continue;
        char why[512] = "";
        if (check(f->normalize, why, sizeof why) != 0)
            return rp_conf_errf(err, errlen, "%s:%d: fusion %s: normalize: %s", c->source,
                                f->normalize_line, f->name, why);
    }
    return 0;
}
