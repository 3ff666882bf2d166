/*
 * qr internals shared by plan.c (what to retrieve) and run.c (retrieving it). Used only
 * inside qr/ and its tests.
 */
#ifndef RP_QR_INTERNAL_H
#define RP_QR_INTERNAL_H

#include "qr/qr.h"

/* What the planner decided for one series. */
typedef enum {
    RP_QR_T_PRESENT = 0, /* the index has it with the announced count: skipped */
    RP_QR_T_RETRIEVE,    /* to retrieve */
    RP_QR_T_LEFT         /* over max_series: next run */
} rp_qr_target_action;

/* How the retrieve of one series ended (the pull_items states). */
typedef enum {
    RP_QR_S_PENDING = 0,
    RP_QR_S_MOVED,   /* success and the count C-FIND announced */
    RP_QR_S_CHANGED, /* success, but not the announced count: the series changed on the PACS */
    RP_QR_S_PARTIAL, /* warning: some sub-operations failed */
    RP_QR_S_FAILED,  /* failure status or the PACS stayed unreachable */
    RP_QR_S_LEFT     /* not started: window closed, or the run stopped on a fatal failure */
} rp_qr_series_state;

typedef struct rp_qr_target {
    char study_uid[RP_UID_MAX + 1], series_uid[RP_UID_MAX + 1];
    char modality[17], description[65];
    int series_number;
    long long announced; /* -1 unknown */
    long long have;      /* instances in the index before, 0 when absent */
    rp_qr_target_action action;
    /* outcome */
    rp_qr_series_state state;
    long long item_id;
    int attempts;
    double seconds;
    rp_qr_result res;
} rp_qr_target;

typedef struct rp_qr_plan {
    rp_qr_target *t;
    size_t n, cap;
} rp_qr_plan;

/* Query the peer for what the request selects (C-FIND at study then series level, image
 * level to count a series whose count the PACS did not give) and decide per series against
 * the index `db`. Retries an unreachable PACS like the runner does. res has the failure. */
int rp_qr_plan_build(const rp_conf *c, const rp_qr_pull_request *r, rp_db *db, rp_qr_plan *plan,
                     rp_qr_result *res);
void rp_qr_plan_free(rp_qr_plan *plan);

/* Open an association, retrying an unreachable PACS with a doubling backoff from
 * r->retry_backoff_s, at most r->retries times and never past r->deadline. */
int rp_qr_open_retry(const rp_qr_peer *p, unsigned services, const rp_qr_pull_request *r,
                     rp_qr **out, rp_qr_result *res);

/* Seconds to wait before attempt `attempt` (1-based) after a failure: base * 2^(attempt-1),
 * capped at one hour. Pure. */
double rp_qr_backoff_s(int base_s, int attempt);

/* Classify a successful retrieve against the announced count: MOVED, or CHANGED when the
 * PACS sent a different number (when its final response has counts). Pure. */
rp_qr_series_state rp_qr_classify(const rp_qr_result *res, long long announced);

/* 1 when a failure will repeat for every series of the run (our AE unknown to the PACS, move
 * destination unknown, service not offered, PACS still down after the retries): the run
 * stops instead of hammering; the rest is left for the next run. Pure. */
int rp_qr_failure_is_fatal(const rp_qr_result *res);

#endif
