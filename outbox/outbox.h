/*
 * scp/outbox — the outbox sender: sends derived instances queued in the db outbox to their
 * destination peers with scp/sender (DcmStorageSCU). Internal to scp/ (radprepd registers it
 * as a node service) and its tests; pipeline/cli enqueue with rp_outbox_enqueue().
 *
 * Contract:
 *  - Each (instance file, destination) is one db outbox row: pending → sending → done, or
 *    pending again later, or dead with the reason. Nothing is dropped silently: a row for a
 *    destination that is no longer configured goes to dead saying so.
 *  - One thread per destination, at most max_threads threads (destinations are shared
 *    round-robin when there are more). A thread claims up to `batch` due rows of its
 *    destination and sends them in one association (several when > 128 contexts).
 *  - Failure classes (see sender.h): RETRY (connection refused/timeout, rejected transient,
 *    0xA7xx) puts the rows back with the destination's backoff: base_delay_s doubling per
 *    consecutive failure up to max_delay_s (2 s .. 10 min by default), never dead; RETRY_FEW
 *    (0x0110, unknown statuses) is retried up to few_attempts times, then dead; DEAD
 *    (rejected permanent, SOP class/syntax refused, 0xA9xx/0xCxxx/...) goes to dead at once.
 *  - The schedule lives in the db (next_attempt_at), so a restart resumes where it was; rows
 *    left 'sending' by a crash are re-queued at start (the receiver de-duplicates by SOP
 *    Instance UID; a C-STORE whose answer was lost may be sent twice, never zero times).
 *  - New rows are picked up within poll_s (rows come from worker processes; an idle poll is
 *    one read-only query per destination), or at once after rp_outbox_kick().
 */
#ifndef RP_SCP_OUTBOX_H
#define RP_SCP_OUTBOX_H

#include <stddef.h>

#include "conf/conf.h"
#include "db/db.h"
#include "scp/scp.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_outbox_opts {
    const char *db_path; /* required */
    int batch;           /* rows per claim/association; <= 0: 256 */
    int max_threads;     /* <= 0: 4 */
    double base_delay_s; /* first backoff; <= 0: 2 */
    double max_delay_s;  /* backoff cap; <= 0: 600 */
    int few_attempts;    /* attempts for RETRY_FEW failures; <= 0: 5 */
    double poll_s;       /* how often idle threads look for new rows (a read-only
                            query); <= 0: 0.5 */
} rp_outbox_opts;

typedef struct rp_outbox rp_outbox;

/* Start the sender threads for every [peer] with destination = yes in c (copied). Re-queues
 * rows left 'sending' and dead-letters rows whose destination is not configured. *out is
 * owned: rp_outbox_stop(). Starting with no destination is fine (nothing to do). */
int rp_outbox_start(const rp_conf *c, const rp_outbox_opts *o, rp_outbox **out);
/* Wake every thread now (new rows were added in this process). */
void rp_outbox_kick(rp_outbox *ob);
/* Stop after the instance being sent (unsent rows of a claimed batch go back to pending,
 * due at once), join the threads, free. NULL is fine. */
void rp_outbox_stop(rp_outbox *ob);

/* Totals since start, for logs, tests and benchmarks. */
typedef struct rp_outbox_totals {
    long long sent, retried, dead, associations, bytes;
    double send_seconds; /* time spent inside rp_sender_send */
} rp_outbox_totals;
void rp_outbox_totals_get(rp_outbox *ob, rp_outbox_totals *out);

/* Queue files for every peer named in send_to (space-separated peer names; each must be a
 * [peer] with destination = yes, else RP_ECONF with a log line and nothing queued). The SOP
 * Instance UID is read from each file. Idempotent (rp_db_outbox_add). *n_added (may be NULL)
 * gets the number of new rows. */
int rp_outbox_enqueue(rp_db *db, const rp_conf *c, const char *send_to, const char *const *files,
                      size_t n, size_t *n_added);

/* rp_outbox_enqueue() on every *.dcm file below dir (recursively, sorted by path), e.g.
 * <job output dir>/dicom after the job's folder was renamed into place. 0 and *n_added = 0
 * when dir does not exist (the rule asked for no DICOM output). */
int rp_outbox_enqueue_dir(rp_db *db, const rp_conf *c, const char *send_to, const char *dir,
                          size_t *n_added);

/* The node service ("outbox") wrapping start/stop with options from the node's conf; fill
 * *svc and register it with rp_node_add_service(). Returns 0 or RP_ENOMEM. */
int rp_outbox_service(rp_node_service *svc);

#ifdef __cplusplus
}
#endif
#endif
