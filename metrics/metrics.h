/*
 * metrics — the node's counters, gauges and histograms, with labels, in one lock-free
 * registry that every module may update and the console renders for Prometheus.
 *
 * Contract:
 *  - The families are a fixed catalog (rp_metric_id below, names and help in metrics.c):
 *    a call site names its family by id, so it cannot misspell a metric or its labels, and
 *    a family's label names, type and buckets are defined in one place.
 *  - Updating never blocks and never allocates: values are C11 atomics; a new label set
 *    claims a slot of a fixed table with one compare-and-swap. Safe from any thread, cheap
 *    enough for the C-STORE path (a hash of the label values and a few atomic operations).
 *  - Label values are passed as `const char *` arguments, exactly as many as the family
 *    declares (see the catalog); NULL is taken as "". Values are cut at 47 bytes.
 *  - Cardinality is bounded: each family holds at most RP_METRICS_MAX_SERIES label sets;
 *    further ones are added up in one series whose labels are all "_other", so a peer that
 *    invents AE titles can neither grow memory nor lose counts.
 *  - rp_metrics_render() writes the Prometheus text exposition format (version 0.0.4) of
 *    every family that has at least one series (families without labels always have one).
 *  - The registry is process-wide and lives as long as the process. rp_metrics_reset()
 *    zeroes everything (tests only: not safe while other threads update).
 */
#ifndef RP_METRICS_H
#define RP_METRICS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    /* receiving (scp/) */
    RP_M_INSTANCES_RECEIVED,    /* counter {calling_ae, status}: C-STORE requests answered */
    RP_M_BYTES_RECEIVED,        /* counter {calling_ae, status}: dataset bytes received */
    RP_M_ASSOCIATIONS_OPEN,     /* gauge: associations open now */
    RP_M_ASSOCIATIONS,          /* counter: associations accepted */
    RP_M_ASSOCIATIONS_REJECTED, /* counter {reason}: refused or dropped before accepting */
    RP_M_STORE_COMMIT_SECONDS,  /* histogram: spool file to durable, acknowledged instance */
    RP_M_TLS_HANDSHAKES,        /* counter {result}: server TLS handshakes (ok | failed) */
    /* completion and jobs (sched/) */
    RP_M_SERIES_COMPLETED,   /* counter {evidence}: quiet | expected_count | operator */
    RP_M_COMPLETION_LATENCY, /* histogram {evidence}: last instance to completion, seconds */
    RP_M_JOB_DURATION,       /* histogram {state}: worker wall time by final state */
    RP_M_JOBS,               /* gauge {state, rule}: jobs in the index (set at scrape) */
    /* sending (outbox/) */
    RP_M_OUTBOX_SEND_SECONDS, /* histogram {destination, result}: one association's send */
    RP_M_OUTBOX,              /* gauge {destination, state}: outbox rows (set at scrape) */
    /* the node (set at scrape) */
    RP_M_DISK_FREE_BYTES,      /* gauge: free bytes for the store (data_dir's file system) */
    RP_M_DISK_WATERMARK_BYTES, /* gauge: min_free_mb in bytes; below it stores are refused */
    RP_M_INDEX_BYTES,          /* gauge: index.sqlite + its WAL, bytes */
    RP_M_SERIES,               /* gauge {state}: series in the index (set at scrape) */
    RP_M_START_TIME,           /* gauge: process start, seconds since the epoch */
    /* the console itself (http/) */
    RP_M_HTTP_REQUESTS, /* counter {code}: console requests answered */
    RP_M__COUNT
} rp_metric_id;

#define RP_METRICS_MAX_LABELS 3
#define RP_METRICS_MAX_SERIES 64
#define RP_METRICS_LABEL_MAX 48 /* bytes per label value, NUL included */

typedef enum { RP_METRIC_COUNTER = 0, RP_METRIC_GAUGE, RP_METRIC_HISTOGRAM } rp_metric_type;

/* Counters: add v (>= 0); gauges: add v (may be negative). Label values follow v. */
void rp_metrics_add(rp_metric_id id, double v, ...);
/* Gauges: set the value of one series. */
void rp_metrics_set(rp_metric_id id, double v, ...);
/* Histograms: count one observation v (seconds for *_SECONDS and latencies). */
void rp_metrics_observe(rp_metric_id id, double v, ...);

/* A gauge family computed at scrape time: set every existing series to 0 first, so label
 * sets that disappeared read 0 instead of their last value. */
void rp_metrics_zero(rp_metric_id id);

/* "0x%04X" of a 16-bit status (DIMSE statuses as label values) into buf; returns buf. */
const char *rp_metrics_hex16(unsigned v, char buf[8]);

/* Sum over every series of a counter or gauge (histograms: number of observations). */
double rp_metrics_sum(rp_metric_id id);
/* Value of one series (counter/gauge; histograms: its number of observations); 0 when the
 * label set has no series. Label values follow id. */
double rp_metrics_get(rp_metric_id id, ...);

/* The family's Prometheus name ("radprep_instances_received_total") and type. */
const char *rp_metrics_name(rp_metric_id id);
rp_metric_type rp_metrics_type(rp_metric_id id);

/* Prometheus text format of the whole registry into a malloc'd, NUL-terminated buffer
 * (*out, caller frees; *len its length without the NUL). 0 or RP_ENOMEM. */
int rp_metrics_render(char **out, size_t *len);

/* Zero every value and forget every label set (tests). */
void rp_metrics_reset(void);

#ifdef __cplusplus
}
#endif
#endif
