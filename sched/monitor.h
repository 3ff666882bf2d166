/*
 * scp/monitor — the series completion monitor. Internal to scp/ (scp/main.c, tests/scp/).
 *
 * Contract:
 *  - A series in state "receiving" is complete when, per the rule of its modality
 *    (rp_conf_completion_for), any of these holds:
 *      1. the expected number of instances is known from the headers and reached exactly
 *         (use_expected_count = yes), decided by rp_completion_expected() below;
 *      2. no new instance for quiet_s seconds (last_seen is wall-clock time in the database);
 *      3. an operator asked (`radprep trigger SERIES`), which the database records.
 *    The reason recorded says which evidence decided, e.g.
 *      "expected_count=20 (images_in_acquisition=20)", "quiet_s=3 (idle 3.2s)", "operator".
 *  - No timer lives in memory: each pass re-reads the database and decides from what is
 *    there, so a restart resumes exactly where it was (a series that went quiet while the
 *    node was down completes on the first pass; a half-received one keeps waiting).
 *  - Completing a series and enqueuing its job are one database transaction; a (series,
 *    version) gets at most one job (UNIQUE in the schema), so a pass repeated after a crash
 *    cannot process a version twice.
 *  - The monitor thread only touches the database and the supervisor's wake-up; it never
 *    blocks a network thread.
 */
#ifndef RP_SCP_MONITOR_H
#define RP_SCP_MONITOR_H

#include <stddef.h>

#include "conf/conf.h"
#include "db/db.h"
#include "sched/supervisor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What one instance's header says about the size of its series (-1 when absent). */
typedef struct rp_completion_hint {
    int images_in_acquisition;        /* (0020,1002) */
    int number_of_temporal_positions; /* (0020,0105) */
    int number_of_slices;             /* (0054,0081) */
    int acquisition_number;           /* (0020,0012) */
    int number_of_frames;             /* (0028,0008), 1 when absent */
    char sop_class_uid[65];
} rp_completion_hint;

/* Expected instance count of a series from its instances' hints, or -1 when the headers do
 * not say (or disagree). Evidence, in order of trust:
 *   - one enhanced multi-frame instance (Enhanced CT/MR/PET/XA/XRF/US, Legacy Converted,
 *     tomosynthesis) with Number of Frames > 1 holds the whole series: expected 1;
 *   - Number of Slices (0054,0081) × Number of Temporal Positions (or 1), the same in every
 *     instance;
 *   - Images in Acquisition, the same in every instance and one Acquisition Number.
 * `evidence` receives e.g. "images_in_acquisition=20" (empty when -1). Pure. */
long long rp_completion_expected(const rp_completion_hint *h, size_t n, char *evidence,
                                 size_t evsz);

/* 1 if sop_class_uid is an enhanced (multi-frame, whole-series-in-one) image storage class. */
int rp_completion_is_enhanced(const char *sop_class_uid);

typedef struct rp_series_progress {
    long long instances;  /* instances in the series now */
    double last_seen;     /* wall clock of the last instance (seconds since the epoch) */
    long long expected;   /* from rp_completion_expected(), -1 unknown */
    const char *evidence; /* its evidence text, may be NULL */
    int triggered;        /* an operator asked for completion */
} rp_series_progress;

typedef enum {
    RP_COMPLETE_WAIT = 0, /* not yet */
    RP_COMPLETE_EXPECTED, /* expected count reached */
    RP_COMPLETE_QUIET,    /* quiet long enough */
    RP_COMPLETE_OPERATOR  /* operator trigger */
} rp_complete_why;

/* Decide one series at wall time `now`. Fills `reason` (what decided, for the database and
 * the log) and *wait_s (seconds until the quiet rule could fire, when WAIT). Pure. */
rp_complete_why rp_completion_decide(const rp_series_progress *p, const rp_conf_completion *rule,
                                     double now, double *wait_s, char *reason, size_t reasonsz);

/* ---- instances acknowledged but not yet indexed ----
 * The index is written in batches, so for up to index_flush_ms an acknowledged instance is
 * not yet in series.last_seen. The receiving side notes each stored instance here; a pass
 * does not complete a series with a note newer than its last_seen (the index is about to
 * say more), for at most RP_NOTE_HOLD_S. Only a hint that delays: a lost note (table slot
 * reused, restart) costs at most an extra version, never a missed instance. */
#define RP_NOTE_HOLD_S 10.0
typedef struct rp_completion_notes rp_completion_notes;
/* Owned: rp_completion_notes_free(). NULL on ENOMEM. */
rp_completion_notes *rp_completion_notes_new(void);
void rp_completion_notes_free(rp_completion_notes *n);
/* An instance of series_uid was received at wall time received_at. Thread-safe, O(1). */
void rp_completion_notes_add(rp_completion_notes *n, const char *series_uid, double received_at);
/* 1 if a note for series_uid is newer than last_seen and younger than RP_NOTE_HOLD_S. */
int rp_completion_notes_pending(rp_completion_notes *n, const char *series_uid, double last_seen,
                                double now);

/* ---- the monitor thread ---- */

typedef struct rp_monitor rp_monitor;

/* One pass over every receiving series in `db` at wall time `now`: completes (and enqueues)
 * what is due, except series with a pending note in `notes` (may be NULL). *completed: how many;
 * *next_wait_s: seconds until the next one may be due (3600 when nothing waits). The daemon calls
 * it once at start, before READY, so that series that went quiet while it was down complete right
 * away. Returns 0 or an RP_E* code. */
int rp_monitor_pass(rp_db *db, const rp_conf *c, rp_completion_notes *notes, double now,
                    int *completed, double *next_wait_s);

/* Start the thread on its own database handle. `sup` and `notes` (may be NULL) are borrowed:
 * sup is woken after each enqueue. `c` must outlive the monitor. Owned: rp_monitor_stop(). */
int rp_monitor_start(const rp_conf *c, const char *db_path, rp_supervisor *sup,
                     rp_completion_notes *notes, rp_monitor **out);

/* An instance was indexed or an operator triggered: look now. Safe from any thread. */
void rp_monitor_wake(rp_monitor *m);

/* Stop and join the thread, free. NULL is a no-op. */
void rp_monitor_stop(rp_monitor *m);

#ifdef __cplusplus
}
#endif
#endif
