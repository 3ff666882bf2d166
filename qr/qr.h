/*
 * qr — query/retrieve from a PACS: C-FIND, C-MOVE and C-GET as a service class user (dcmtk's
 * DcmSCU behind qr/qr.cc), and the pull planner/runner that turns a query into series
 * retrieved into this node, gently and exactly (docs/retrieve.md).
 *
 * Contract:
 *  - Study Root only; queries at study, series or image level with the common keys
 *    (rp_qr_keys). Wildcards (* ?) pass through; a date is a DICOM range.
 *  - A retrieve is always one SERIES (StudyInstanceUID + SeriesInstanceUID), so every series
 *    has its own outcome. C-MOVE names the node's own AE as destination: the instances come
 *    to radprepd by C-STORE and take the normal durable path. C-GET (optional) receives them
 *    on the same association and commits them through store/ before answering each C-STORE.
 *  - Every failure carries the PACS's DIMSE status and its words (Error Comment), or the
 *    network reason, classified in rp_qr_result.outcome.
 *  - Pulls (rp_qr_pull_run) are idempotent: a series the index already holds with the
 *    announced instance count (NumberOfSeriesRelatedInstances from C-FIND) is never retrieved
 *    again. Each run and each series requested is recorded in the index (db pulls tables);
 *    the announced count is what the completion monitor completes a moved series on.
 *  - Gentle: moves start only inside the window, at most max_concurrent at once, at most
 *    max_series per run, pause_ms between two moves of a lane; a PACS that is down is retried
 *    with a doubling backoff while the window lasts. A run that meets the end of its window
 *    lets running moves finish, starts no other, and says so; the next run resumes.
 *  - Functions return 0 or a negative RP_E* code.
 */
#ifndef RP_QR_H
#define RP_QR_H

#include <stddef.h>
#include <stdio.h>

#include "conf/conf.h"
#include "db/db.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the SCU ------------------------------------------------------------------------------ */

typedef enum { RP_QR_STUDY = 0, RP_QR_SERIES, RP_QR_IMAGE } rp_qr_level;

/* Services an association is negotiated for (bits). */
enum { RP_QR_FIND = 1, RP_QR_MOVE = 2, RP_QR_GET = 4 };

/* Who to call. */
typedef struct rp_qr_peer {
    char calling_ae[RP_AE_MAX + 1]; /* ours */
    char called_ae[RP_AE_MAX + 1];
    char host[256];
    int port;
    int acse_timeout_s, dimse_timeout_s; /* 0: 30 s / 600 s */
    unsigned max_pdu;                    /* 0: 128 KiB */
} rp_qr_peer;

/* Query keys; empty strings are universal (returned, not matched). */
typedef struct rp_qr_keys {
    rp_qr_level level;
    char patient_id[65];
    char accession[17];
    char study_date[18]; /* YYYYMMDD, YYYYMMDD-YYYYMMDD, -YYYYMMDD or YYYYMMDD- */
    char modality[17];   /* study level: Modalities in Study; series level: Modality */
    char body_part[17];  /* series level */
    char study_description[65];
    char series_description[65]; /* series level */
    char study_uid[RP_UID_MAX + 1];
    char series_uid[RP_UID_MAX + 1]; /* series/image level */
} rp_qr_keys;

/* One C-FIND match. Counts are -1 when the PACS did not return them. */
typedef struct rp_qr_match {
    char patient_id[65], patient_name[325];
    char study_uid[RP_UID_MAX + 1], study_date[9], study_time[17], accession[17];
    char study_description[65], modalities[65];
    long long study_series, study_instances; /* NumberOfStudyRelated{Series,Instances} */
    char series_uid[RP_UID_MAX + 1], modality[17], series_description[65], body_part[17];
    int series_number;           /* -1 absent */
    long long series_instances;  /* NumberOfSeriesRelatedInstances */
    char sop_uid[RP_UID_MAX + 1]; /* image level */
} rp_qr_match;

/* How an operation ended. */
typedef enum {
    RP_QR_OK = 0,         /* success */
    RP_QR_UNREACHABLE,    /* no TCP connection (PACS down, wrong host/port) */
    RP_QR_REJECTED,       /* A-ASSOCIATE-RJ (our AE unknown to the PACS, ...) */
    RP_QR_NO_CONTEXT,     /* the PACS accepted none of the proposed services */
    RP_QR_NETWORK,        /* aborted or timed out during the operation */
    RP_QR_FAILED,         /* DIMSE failure status (e.g. 0xA801 move destination unknown) */
    RP_QR_PARTIAL,        /* warning 0xB000: some sub-operations failed */
    RP_QR_CANCELED        /* 0xFE00 */
} rp_qr_outcome;

typedef struct rp_qr_result {
    rp_qr_outcome outcome;
    int status; /* final DIMSE status, -1 when there was none */
    int completed, failed, warning, remaining; /* sub-operations (move/get) */
    char reason[512]; /* the PACS's words or the network's, one line */
} rp_qr_result;

/* Short word for an outcome ("ok", "unreachable", "rejected", ...). */
const char *rp_qr_outcome_name(rp_qr_outcome o);
/* Text of a retrieve/find status, e.g. "0xA801 refused: move destination unknown". */
const char *rp_qr_status_text(int status, char *buf, size_t bufsz);

typedef struct rp_qr rp_qr; /* one open association */

/* Associate with the peer for `services` (RP_QR_* bits). On failure *out is NULL, res says
 * why (RP_ENET unreachable, RP_EREFUSED rejected or no context). Owned: rp_qr_close(). */
int rp_qr_open(const rp_qr_peer *p, unsigned services, rp_qr **out, rp_qr_result *res);
/* Release (or abort when it broke) and free. NULL is a no-op. */
void rp_qr_close(rp_qr *q);

/* C-FIND at k->level. *out malloc'd (free()), *n matches. RP_EREFUSED for a failure status,
 * RP_ENET for a broken association (res says which). */
int rp_qr_find(rp_qr *q, const rp_qr_keys *k, rp_qr_match **out, size_t *n, rp_qr_result *res);

/* C-MOVE of one series (series_uid NULL: the whole study) to dest_ae. 0 on success; a
 * warning (partial) is RP_EIO, a failure status RP_EREFUSED, a broken association RP_ENET;
 * res has the counts, status and reason in every case. */
int rp_qr_move(rp_qr *q, const char *dest_ae, const char *study_uid, const char *series_uid,
               rp_qr_result *res);

/* C-GET receiving: `spool` gives a fresh file path for an incoming instance; `commit` makes
 * it durable (and indexes it) and returns 0, or a reason and non-zero to refuse it (status
 * 0xA700: out of resources). Both run on the calling thread, before the C-STORE-RSP. */
typedef struct rp_qr_get_sink {
    int (*spool)(void *user, char *path, size_t pathsz);
    int (*commit)(void *user, const char *path, const char *sop_class_uid,
                  const char *sop_instance_uid, char *why, size_t whysz);
    void *user;
} rp_qr_get_sink;
/* C-GET of one series (needs an association opened with RP_QR_GET). Same returns as move. */
int rp_qr_get(rp_qr *q, const char *study_uid, const char *series_uid, const rp_qr_get_sink *sink,
              rp_qr_result *res);

/* The peer a [peer NAME] section describes, calling as the node's AE. */
void rp_qr_peer_from_conf(const rp_conf *c, const rp_conf_peer *p, rp_qr_peer *out);

/* ---- pulls --------------------------------------------------------------------------------- */

/* What one selector asks for (ad hoc pulls have one per --study/--series/--accession/line). */
typedef enum { RP_QR_SEL_QUERY = 0, RP_QR_SEL_STUDY, RP_QR_SEL_SERIES, RP_QR_SEL_ACCESSION } rp_qr_sel_kind;
typedef struct rp_qr_selector {
    rp_qr_sel_kind kind;
    char value[RP_UID_MAX + 1]; /* UID or accession number (SEL_QUERY: unused) */
} rp_qr_selector;

/* A pull: who, what, how gently. */
typedef struct rp_qr_pull_request {
    const char *name;           /* [pull NAME], or NULL/"" for an ad hoc pull */
    const rp_conf_peer *peer;   /* borrowed */
    rp_qr_keys keys;            /* SEL_QUERY: the query (dates already resolved) */
    const rp_qr_selector *sel;  /* borrowed array */
    size_t n_sel;
    const char *rule;           /* process pulled series with this rule (NULL/"": matching) */
    int method;                 /* RP_PULL_MOVE | RP_PULL_GET */
    int max_concurrent, max_series, pause_ms, retries, retry_backoff_s;
    double deadline;            /* wall time after which no move starts (0: none) */
    int dry_run;                /* plan and print, retrieve nothing, record nothing */
    FILE *out;                  /* one line per series decision/outcome (may be NULL) */
} rp_qr_pull_request;

/* Fill r with the defaults of an ad hoc pull from `peer` (1 lane, no series cap beyond
 * 100000, no pause, 2 retries 5 s apart, move). */
void rp_qr_pull_defaults(rp_qr_pull_request *r, const rp_conf_peer *peer);
/* A [pull NAME] section as a request at wall time `now` (relative dates resolved, window end
 * as deadline). RP_EINVAL when the section's date cannot be resolved. */
int rp_qr_pull_from_conf(const rp_conf_pull *p, const rp_conf_peer *peer, double now,
                         rp_qr_pull_request *r);

/* The request as one line of key=value words (the pulls table's `request`). */
void rp_qr_request_text(const rp_qr_pull_request *r, char *buf, size_t bufsz);

/* What a run did. */
typedef struct rp_qr_pull_report {
    long long pull_id;        /* the row in the index (0 for a dry run) */
    int series_found;         /* series the queries returned */
    int series_present;       /* already in the index with the announced count: skipped */
    int series_requested;     /* retrieves started */
    int series_ok, series_failed, series_left; /* left: not started (window end, cap) */
    long long instances_announced, instances_retrieved;
    int window_closed;        /* the run stopped at the end of its window */
    int last_status;          /* last DIMSE failure status, -1 none */
    char reason[512];         /* first failure, the PACS's words */
} rp_qr_pull_report;

/* Plan (C-FIND), then retrieve what is missing, recording everything in the index at
 * c->data_dir. 0 when every requested series was retrieved; RP_EREFUSED/RP_ENET/RP_EIO with
 * the first reason in rep when some failed; RP_ETIMEOUT when the window closed with series
 * left; query failures return their code before anything is retrieved. */
int rp_qr_pull_run(const rp_conf *c, const rp_qr_pull_request *r, rp_qr_pull_report *rep);

/* The planner's rule for one series, pure: 1 retrieve, 0 skip (already complete here).
 * announced < 0 (unknown): retrieve unless the index has the series at all. */
int rp_qr_should_retrieve(long long announced, long long have);

#ifdef __cplusplus
}
#endif
#endif
