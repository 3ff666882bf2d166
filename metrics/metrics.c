/*
 * metrics — the catalog of families and the lock-free registry behind rp_metrics_*.
 *
 * Each family owns a fixed table of series slots. A slot is claimed once, with a CAS from
 * FREE to FILLING, by the first thread that needs its label set; that thread writes the
 * labels and publishes the slot (READY, release). Readers and later writers find it by
 * hashing the label values (open addressing, linear probing). Slots are never released, so
 * a READY slot's labels never change and values can be updated with plain atomic adds.
 * Doubles are kept as their bit patterns in 64-bit atomics (C11 has no atomic double add),
 * added with a CAS loop that only spins while another thread updates the same series.
 * The last slot of every labelled family is kept for the "_other" series (overflow).
 */
#include "metrics/metrics.h"

#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

#define MAX_BUCKETS 16

typedef struct family_def {
    const char *name;
    rp_metric_type type;
    const char *help;
    int n_labels;
    const char *labels[RP_METRICS_MAX_LABELS];
    int n_buckets; /* histograms: upper bounds, ascending; +Inf is implicit */
    double buckets[MAX_BUCKETS];
} family_def;

#define LATENCY_S                                                                                  \
    {                                                                                              \
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5                    \
    }
static const family_def catalog[RP_M__COUNT] = {
    [RP_M_INSTANCES_RECEIVED] = {"radprep_instances_received_total",
                                 RP_METRIC_COUNTER,
                                 "C-STORE requests answered, by calling AE title and DIMSE "
                                 "status (0x0000 = stored).",
                                 2,
                                 {"calling_ae", "status"},
                                 0,
                                 {0}},
    [RP_M_BYTES_RECEIVED] = {"radprep_bytes_received_total",
                             RP_METRIC_COUNTER,
                             "Dataset bytes received in C-STORE requests, by calling AE title "
                             "and DIMSE status.",
                             2,
                             {"calling_ae", "status"},
                             0,
                             {0}},
    [RP_M_ASSOCIATIONS_OPEN] = {"radprep_associations_open",
                                RP_METRIC_GAUGE,
                                "DICOM associations open now.",
                                0,
                                {NULL},
                                0,
                                {0}},
    [RP_M_ASSOCIATIONS] = {"radprep_associations_total",
                           RP_METRIC_COUNTER,
                           "DICOM associations accepted.",
                           0,
                           {NULL},
                           0,
                           {0}},
    [RP_M_ASSOCIATIONS_REJECTED] = {"radprep_associations_rejected_total",
                                    RP_METRIC_COUNTER,
                                    "Association requests refused, or connections dropped "
                                    "before an association, by reason.",
                                    1,
                                    {"reason"},
                                    0,
                                    {0}},
    [RP_M_STORE_COMMIT_SECONDS] = {"radprep_store_commit_seconds",
                                   RP_METRIC_HISTOGRAM,
                                   "Time from the end of a received dataset to the durable, "
                                   "acknowledged instance (header read, fsync, rename).",
                                   0,
                                   {NULL},
                                   12,
                                   LATENCY_S},
    [RP_M_TLS_HANDSHAKES] = {"radprep_tls_handshakes_total",
                             RP_METRIC_COUNTER,
                             "TLS handshakes on the DICOM TLS port, by result (ok, failed).",
                             1,
                             {"result"},
                             0,
                             {0}},
    [RP_M_SERIES_COMPLETED] = {"radprep_series_completed_total",
                               RP_METRIC_COUNTER,
                               "Series marked complete, by evidence (quiet, expected_count, "
                               "operator).",
                               1,
                               {"evidence"},
                               0,
                               {0}},
    [RP_M_COMPLETION_LATENCY] = {"radprep_series_completion_latency_seconds",
                                 RP_METRIC_HISTOGRAM,
                                 "Time from a series' last instance to its completion, by "
                                 "evidence.",
                                 1,
                                 {"evidence"},
                                 11,
                                 {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}},
    [RP_M_JOB_DURATION] = {"radprep_job_duration_seconds",
                           RP_METRIC_HISTOGRAM,
                           "Wall time of processing jobs (one worker run), by the job's state "
                           "after the run.",
                           1,
                           {"state"},
                           11,
                           {0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}},
    [RP_M_JOBS] = {"radprep_jobs",
                   RP_METRIC_GAUGE,
                   "Jobs in the index by state and by the rule that processes the series.",
                   2,
                   {"state", "rule"},
                   0,
                   {0}},
    [RP_M_OUTBOX_SEND_SECONDS] = {"radprep_outbox_send_seconds",
                                  RP_METRIC_HISTOGRAM,
                                  "Time to send one batch of derived instances to a "
                                  "destination (one association), by result.",
                                  2,
                                  {"destination", "result"},
                                  11,
                                  {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}},
    [RP_M_OUTBOX] = {"radprep_outbox_entries",
                     RP_METRIC_GAUGE,
                     "Outbox rows (derived instance x destination) by destination and state.",
                     2,
                     {"destination", "state"},
                     0,
                     {0}},
    [RP_M_DISK_FREE_BYTES] = {"radprep_disk_free_bytes",
                              RP_METRIC_GAUGE,
                              "Free bytes on the file system of data_dir.",
                              0,
                              {NULL},
                              0,
                              {0}},
    [RP_M_DISK_WATERMARK_BYTES] = {"radprep_disk_watermark_bytes",
                                   RP_METRIC_GAUGE,
                                   "min_free_mb in bytes: below it, stores are refused.",
                                   0,
                                   {NULL},
                                   0,
                                   {0}},
    [RP_M_INDEX_BYTES] = {"radprep_index_size_bytes",
                          RP_METRIC_GAUGE,
                          "Size of the SQLite index (index.sqlite and its WAL).",
                          0,
                          {NULL},
                          0,
                          {0}},
    [RP_M_SERIES] =
        {"radprep_series", RP_METRIC_GAUGE, "Series in the index by state.", 1, {"state"}, 0, {0}},
    [RP_M_START_TIME] = {"radprep_start_time_seconds",
                         RP_METRIC_GAUGE,
                         "Start time of the node, seconds since the epoch.",
                         0,
                         {NULL},
                         0,
                         {0}},
    [RP_M_HTTP_REQUESTS] = {"radprep_http_requests_total",
                            RP_METRIC_COUNTER,
                            "Console and API requests answered, by HTTP status code.",
                            1,
                            {"code"},
                            0,
                            {0}},
};

enum { SLOT_FREE = 0, SLOT_FILLING, SLOT_READY };

typedef struct slot {
    atomic_int state;
    uint64_t hash;
    char labels[RP_METRICS_MAX_LABELS][RP_METRICS_LABEL_MAX];
    _Atomic uint64_t value;                    /* double bits: value, or histogram sum */
    _Atomic uint64_t buckets[MAX_BUCKETS + 1]; /* histogram counts per bucket, last = +Inf */
} slot;

typedef struct family {
    slot slots[RP_METRICS_MAX_SERIES];
} family;

static family g_fam[RP_M__COUNT];

/* ---- doubles in 64-bit atomics --------------------------------------------------------------- */

static double bits_to_d(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static uint64_t d_to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static void atomic_add_d(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, d_to_bits(bits_to_d(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* ---- finding a series ------------------------------------------------------------------------ */

static uint64_t hash_labels(int n, const char (*vals)[RP_METRICS_LABEL_MAX])
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (int i = 0; i < n; i++) {
        for (const char *p = vals[i]; *p; p++) {
            h ^= (unsigned char)*p;
            h *= 1099511628211ULL;
        }
        h ^= 0xff; /* separator: ("ab","c") differs from ("a","bc") */
        h *= 1099511628211ULL;
    }
    return h;
}

static int labels_equal(const slot *s, int n, const char (*vals)[RP_METRICS_LABEL_MAX])
{
    for (int i = 0; i < n; i++)
        if (strcmp(s->labels[i], vals[i]) != 0)
            return 0;
    return 1;
}

/* Wait for a slot another thread is filling (a few stores away from READY). */
static int wait_ready(slot *s)
{
    int st;
    while ((st = atomic_load_explicit(&s->state, memory_order_acquire)) == SLOT_FILLING)
        sched_yield();
    return st;
}

/* Publish labels into a slot this thread claimed. */
static void fill(slot *s, int n, const char (*vals)[RP_METRICS_LABEL_MAX], uint64_t h)
{
    for (int i = 0; i < n; i++)
        memcpy(s->labels[i], vals[i], RP_METRICS_LABEL_MAX);
    s->hash = h;
    atomic_store_explicit(&s->state, SLOT_READY, memory_order_release);
}

/* The series of family `id` for the label values in ap (claimed if new); never NULL.
 * create = 0: NULL when the label set has no series. */
static slot *series_for(rp_metric_id id, va_list ap, int create)
{
    const family_def *d = &catalog[id];
    family *f = &g_fam[id];
    char vals[RP_METRICS_MAX_LABELS][RP_METRICS_LABEL_MAX];
    memset(vals, 0, sizeof vals);
    for (int i = 0; i < d->n_labels; i++) {
        const char *v = va_arg(ap, const char *);
        snprintf(vals[i], sizeof vals[i], "%s", v ? v : "");
    }
    if (d->n_labels == 0) {
        slot *s = &f->slots[0];
        if (atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_READY) {
            int expect = SLOT_FREE;
            if (atomic_compare_exchange_strong(&s->state, &expect, SLOT_FILLING))
                fill(s, 0, vals, 0);
            else
                wait_ready(s);
        }
        return s;
    }
    uint64_t h = hash_labels(d->n_labels, vals);
    const int n = RP_METRICS_MAX_SERIES - 1; /* the last slot is "_other" */
    for (int k = 0; k < n; k++) {
        slot *s = &f->slots[(h + (uint64_t)k) % (uint64_t)n];
        int st = atomic_load_explicit(&s->state, memory_order_acquire);
        if (st == SLOT_FREE) {
            if (!create)
                return NULL;
            int expect = SLOT_FREE;
            if (atomic_compare_exchange_strong(&s->state, &expect, SLOT_FILLING)) {
                fill(s, d->n_labels, vals, h);
                return s;
            }
            st = expect;
        }
        if (st == SLOT_FILLING)
            st = wait_ready(s);
        if (st == SLOT_READY && s->hash == h && labels_equal(s, d->n_labels, vals))
            return s;
    }
    slot *o = &f->slots[RP_METRICS_MAX_SERIES - 1];
    if (!create)
        return atomic_load_explicit(&o->state, memory_order_acquire) == SLOT_READY &&
                       labels_equal(o, d->n_labels, vals)
                   ? o
                   : NULL;
    if (atomic_load_explicit(&o->state, memory_order_acquire) != SLOT_READY) {
        int expect = SLOT_FREE;
        if (atomic_compare_exchange_strong(&o->state, &expect, SLOT_FILLING)) {
            for (int i = 0; i < d->n_labels; i++)
                snprintf(vals[i], sizeof vals[i], "_other");
            fill(o, d->n_labels, vals, 0);
        } else {
            wait_ready(o);
        }
    }
    return o;
}

/* ---- updates --------------------------------------------------------------------------------- */

void rp_metrics_add(rp_metric_id id, double v, ...)
{
    if ((unsigned)id >= RP_M__COUNT || catalog[id].type == RP_METRIC_HISTOGRAM)
        return;
    va_list ap;
    va_start(ap, v);
    slot *s = series_for(id, ap, 1);
    va_end(ap);
    atomic_add_d(&s->value, v);
}

void rp_metrics_set(rp_metric_id id, double v, ...)
{
    if ((unsigned)id >= RP_M__COUNT || catalog[id].type != RP_METRIC_GAUGE)
        return;
    va_list ap;
    va_start(ap, v);
    slot *s = series_for(id, ap, 1);
    va_end(ap);
    atomic_store_explicit(&s->value, d_to_bits(v), memory_order_relaxed);
}

void rp_metrics_observe(rp_metric_id id, double v, ...)
{
    if ((unsigned)id >= RP_M__COUNT || catalog[id].type != RP_METRIC_HISTOGRAM)
        return;
    const family_def *d = &catalog[id];
    va_list ap;
    va_start(ap, v);
    slot *s = series_for(id, ap, 1);
    va_end(ap);
    int b = 0;
    while (b < d->n_buckets && v > d->buckets[b])
        b++;
    atomic_fetch_add_explicit(&s->buckets[b], 1, memory_order_relaxed);
    atomic_add_d(&s->value, v);
}

void rp_metrics_zero(rp_metric_id id)
{
    if ((unsigned)id >= RP_M__COUNT)
        return;
    for (int i = 0; i < RP_METRICS_MAX_SERIES; i++)
        atomic_store_explicit(&g_fam[id].slots[i].value, d_to_bits(0.0), memory_order_relaxed);
}

/* ---- reading --------------------------------------------------------------------------------- */

static double series_count(const family_def *d, slot *s)
{
    if (d->type != RP_METRIC_HISTOGRAM)
        return bits_to_d(atomic_load_explicit(&s->value, memory_order_relaxed));
    double n = 0;
    for (int b = 0; b <= d->n_buckets; b++)
        n += (double)atomic_load_explicit(&s->buckets[b], memory_order_relaxed);
    return n;
}

double rp_metrics_sum(rp_metric_id id)
{
    if ((unsigned)id >= RP_M__COUNT)
        return 0;
    double sum = 0;
    for (int i = 0; i < RP_METRICS_MAX_SERIES; i++) {
        slot *s = &g_fam[id].slots[i];
        if (atomic_load_explicit(&s->state, memory_order_acquire) == SLOT_READY)
            sum += series_count(&catalog[id], s);
    }
    return sum;
}

double rp_metrics_get(rp_metric_id id, ...)
{
    if ((unsigned)id >= RP_M__COUNT)
        return 0;
    va_list ap;
    va_start(ap, id);
    slot *s = series_for(id, ap, 0);
    va_end(ap);
    return s ? series_count(&catalog[id], s) : 0;
}

const char *rp_metrics_hex16(unsigned v, char buf[8])
{
    snprintf(buf, 8, "0x%04X", v & 0xFFFFu);
    return buf;
}

const char *rp_metrics_name(rp_metric_id id)
{
    return (unsigned)id < RP_M__COUNT ? catalog[id].name : "";
}

rp_metric_type rp_metrics_type(rp_metric_id id)
{
    return (unsigned)id < RP_M__COUNT ? catalog[id].type : RP_METRIC_GAUGE;
}

void rp_metrics_reset(void)
{
    memset(g_fam, 0, sizeof g_fam);
}

/* ---- Prometheus text format ------------------------------------------------------------------ */

typedef struct buf {
    char *p;
    size_t len, cap;
    int oom;
} buf;

static void put(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(buf *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t nc = b->cap * 2 + (size_t)n + 1;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
}

/* A label value with \, " and newline escaped as the format requires. */
static void put_label_value(buf *b, const char *v)
{
    char tmp[RP_METRICS_LABEL_MAX * 2 + 1];
    size_t j = 0;
    for (const char *p = v; *p && j + 2 < sizeof tmp; p++) {
        if (*p == '\\' || *p == '"') {
            tmp[j++] = '\\';
            tmp[j++] = *p;
        } else if (*p == '\n') {
            tmp[j++] = '\\';
            tmp[j++] = 'n';
        } else {
            tmp[j++] = *p;
        }
    }
    tmp[j] = '\0';
    put(b, "%s", tmp);
}

/* {a="x",b="y"[,le="..."]} or nothing when there are no labels at all. */
static void put_labels(buf *b, const family_def *d, const slot *s, const char *le)
{
    if (d->n_labels == 0 && !le)
        return;
    put(b, "{");
    for (int i = 0; i < d->n_labels; i++) {
        put(b, "%s%s=\"", i ? "," : "", d->labels[i]);
        put_label_value(b, s->labels[i]);
        put(b, "\"");
    }
    if (le)
        put(b, "%sle=\"%s\"", d->n_labels ? "," : "", le);
    put(b, "}");
}

static void put_number(buf *b, double v)
{
    if (v != v)
        put(b, "NaN");
    else if (v == (double)(long long)v && v < 9e15 && v > -9e15)
        put(b, "%lld", (long long)v);
    else
        put(b, "%.15g", v);
}

static void render_family(buf *b, rp_metric_id id)
{
    const family_def *d = &catalog[id];
    family *f = &g_fam[id];
    int any = 0;
    for (int i = 0; i < RP_METRICS_MAX_SERIES && !any; i++)
        any = atomic_load_explicit(&f->slots[i].state, memory_order_acquire) == SLOT_READY;
    if (!any && d->n_labels > 0)
        return;
    static const char *const type_name[] = {"counter", "gauge", "histogram"};
    put(b, "# HELP %s %s\n# TYPE %s %s\n", d->name, d->help, d->name, type_name[d->type]);
    if (!any) { /* a family without labels reads 0 before its first update */
        if (d->type == RP_METRIC_HISTOGRAM) {
            put(b, "%s_bucket{le=\"+Inf\"} 0\n%s_sum 0\n%s_count 0\n", d->name, d->name, d->name);
        } else {
            put(b, "%s 0\n", d->name);
        }
        return;
    }
    for (int i = 0; i < RP_METRICS_MAX_SERIES; i++) {
        slot *s = &f->slots[i];
        if (atomic_load_explicit(&s->state, memory_order_acquire) != SLOT_READY)
            continue;
        if (d->type != RP_METRIC_HISTOGRAM) {
            put(b, "%s", d->name);
            put_labels(b, d, s, NULL);
            put(b, " ");
            put_number(b, bits_to_d(atomic_load_explicit(&s->value, memory_order_relaxed)));
            put(b, "\n");
            continue;
        }
        /* Cumulative buckets from one read of each count, so +Inf and _count agree. */
        unsigned long long cum = 0;
        for (int k = 0; k <= d->n_buckets; k++) {
            cum += atomic_load_explicit(&s->buckets[k], memory_order_relaxed);
            char le[32];
            if (k < d->n_buckets)
                snprintf(le, sizeof le, "%g", d->buckets[k]);
            else
                snprintf(le, sizeof le, "+Inf");
            put(b, "%s_bucket", d->name);
            put_labels(b, d, s, le);
            put(b, " %llu\n", cum);
        }
        put(b, "%s_sum", d->name);
        put_labels(b, d, s, NULL);
        put(b, " ");
        put_number(b, bits_to_d(atomic_load_explicit(&s->value, memory_order_relaxed)));
        put(b, "\n%s_count", d->name);
        put_labels(b, d, s, NULL);
        put(b, " %llu\n", cum);
    }
}

int rp_metrics_render(char **out, size_t *len)
{
    buf b = {malloc(16384), 0, 16384, 0};
    if (!b.p)
        return RP_ENOMEM;
    b.p[0] = '\0';
    for (int id = 0; id < RP_M__COUNT; id++)
        render_family(&b, (rp_metric_id)id);
    if (b.oom) {
        free(b.p);
        return RP_ENOMEM;
    }
    *out = b.p;
    if (len)
        *len = b.len;
    return 0;
}
