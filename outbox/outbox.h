/*
 * outbox — sending derived instances to their destination peers: the durable queue (rows of
 * the db outbox), the sender threads, and the C-STORE sender underneath them (outbox/sender.cc,
 * dcmtk's DcmStorageSCU). radprepd runs the sender as a node service; workers and the CLI
 * queue files with rp_outbox_enqueue*().
 *
 * Contract of the queue and its threads:
 *  - Each (instance file, destination) is one db outbox row: pending → sending → done, or
 *    pending again later, or dead with the reason. Nothing is dropped silently: a row for a
 *    destination that is no longer configured goes to dead saying so.
 *  - One thread per destination, at most max_threads threads (destinations are shared
 *    round-robin when there are more). A thread claims up to `batch` due rows of its
 *    destination and sends them in one association (several when > 128 contexts), or over
 *    the destination's [peer] send_associations parallel associations (the rows dealt
 *    round-robin, each association on a thread of its own); every row still gets its own
 *    outcome, recorded as below, whichever association carried it.
 *  - Order: the batch's derived instances first; its SEG, SR and overlay files (results that
 *    refer to images) after them: on one association in that order, on several only once
 *    every derived instance of the batch was answered (one more association), and not at all
 *    when the destination went down meanwhile (they wait with the others).
 *  - A destination that refuses some of the parallel associations while it accepts others
 *    (a per-AE limit) is not down: the refused associations' rows are due again at once,
 *    and the destination is sent to on as many associations as it accepted, for max_delay_s,
 *    then on send_associations again (logged both times).
 *  - Failure classes (see the sender below): RETRY (connection refused/timeout, rejected transient,
 *    0xA7xx) puts the rows back with the destination's backoff: base_delay_s doubling per
 *    consecutive failure up to max_delay_s (2 s .. 10 min by default), never dead; RETRY_FEW
 *    (0x0110, unknown statuses) is retried up to few_attempts times, then dead; DEAD
 *    (rejected permanent, SOP class/syntax refused, 0xA9xx/0xCxxx/...) goes to dead at once.
 *  - The schedule lives in the db (next_attempt_at), so a restart resumes where it was; rows
 *    left 'sending' by a crash are re-queued at start (the receiver de-duplicates by SOP
 *    Instance UID; a C-STORE whose answer was lost may be sent twice, never zero times).
 *  - New rows are picked up at once after rp_outbox_kick() (radprepd kicks the sender when a
 *    job ends having queued rows), else within poll_s (an idle poll is one read-only query
 *    per destination).
 *
 * Contract of the sender (rp_sender_send), one association's worth of files to one peer:
 *  - Presentation contexts are built by DcmStorageSCU from each file's SOP class and transfer
 *    syntax: the file's own syntax plus the three uncompressed ones (lossless-compressed files
 *    are decompressed, through dcmtk's registered codecs, when the destination refuses their
 *    syntax). More than 128 contexts -> several associations, transparently.
 *  - Every file gets an outcome:
 *      DONE       success, or a warning status (0xB000, 0xB006, 0xB007, 0x0107, 0x0116);
 *      RETRY      the destination could not take it now: connection refused or timed out,
 *                 association rejected transient, network error while sending, 0xA7xx
 *                 (out of resources). Retried with the destination's backoff, for ever;
 *      RETRY_FEW  a failure that may be transient but may also never succeed (0x0110
 *                 processing failure, unknown statuses, a peer that accepts the association
 *                 but aborts it at our first C-STORE, as Orthanc does for an AE title it does
 *                 not know): retried a few times, then dead;
 *      DEAD       permanent: association rejected permanent (e.g. our AE title unknown),
 *                 SOP class / transfer syntax not accepted, 0xA9xx, 0xCxxx, 0x0122, 0x0124,
 *                 0x0111, unreadable file. The reason says which.
 *  - The return value tells the destination's state: 0 when an association was made (even if
 *    some files failed), RP_ENET (connection refused/reset), RP_ETIMEOUT (connect/ACSE
 *    timeout), RP_EBUSY (rejected transient, or the peer answered 0xA7xx), RP_EREFUSED
 *    (rejected permanent: every file DEAD), RP_EPERM (aborted at the first C-STORE: every
 *    unsent file RETRY_FEW), RP_EINVAL (bad arguments), RP_ECANCELED (stop was raised;
 *    unsent files are RETRY).
 *  - Thread-safe: one call per thread, no shared state besides dcmtk's codec registry.
 */
#ifndef RP_OUTBOX_H
#define RP_OUTBOX_H

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
 * <job output dir>/dicom after the job's folder was renamed into place, each destination
 * getting only the result kinds its [peer] results key names (default "derived seg"; by
 * file name: seg.dcm = seg, sr.dcm = sr, overlay*.dcm = overlay, the rest = derived). 0 and
 * *n_added = 0 when dir does not exist (the rule asked for no DICOM output).
 * Substitution: when a destination accepts no presentation context for a result's SOP
 * class (a SEG, SR or derived instance; rp_sender_result.sop_refused), that row goes dead
 * and the overlay files of the same folder are queued for it instead (once: queueing is
 * idempotent and an overlay has no substitute); the dead row's reason says "substituted by
 * overlay (N instance(s) ...)" or that there was no overlay to substitute. */
int rp_outbox_enqueue_dir(rp_db *db, const rp_conf *c, const char *send_to, const char *dir,
                          size_t *n_added);

/* The node service ("outbox") wrapping start/stop with options from the node's conf; fill
 * *svc and register it with rp_node_add_service(). Returns 0 or RP_ENOMEM. */
int rp_outbox_service(rp_node_service *svc);
/* rp_outbox_kick() on the sender of the service whose svc->arg is `svc_arg`; nothing before
 * it started. For hooks (e.g. the supervisor's derived_queued): register the outbox service
 * before the services that call this, so that it stops after them. */
void rp_outbox_service_kick(void *svc_arg);

/* ---- the sender (outbox/sender.cc), see the contract ---- */

typedef struct rp_sender_dest {
    const char *host;
    int port;
    const char *called_ae;  /* the destination's AE title */
    const char *calling_ae; /* ours ([node] ae_title) */
    int connect_timeout_s;  /* TCP connect; <= 0: 10 */
    int acse_timeout_s;     /* association negotiation/release; <= 0: 30 */
    int dimse_timeout_s;    /* wait for each C-STORE-RSP; <= 0: 60 */
    unsigned max_pdu;       /* our max receive PDU; 0: 65536 */
    struct rp_tls *tls;     /* client-role TLS layer (tls/tls.h, borrowed); NULL: plain */
} rp_sender_dest;

typedef enum { RP_SEND_DONE = 0, RP_SEND_RETRY, RP_SEND_RETRY_FEW, RP_SEND_DEAD } rp_send_outcome;

typedef struct rp_sender_result {
    rp_send_outcome outcome;
    int dimse_status; /* C-STORE-RSP status; -1 when no response came */
    char reason[256]; /* empty on plain success */
    int sop_refused;  /* DEAD because the destination accepted no presentation context for
                         the file's SOP class at association time */
} rp_sender_result;

typedef struct rp_sender_stats {
    int associations;    /* associations negotiated */
    size_t sent, failed; /* files DONE / not DONE */
    long long bytes;     /* bytes of the files sent */
    double seconds;      /* wall time of the call */
} rp_sender_stats;

/* Send files[0..n) to d. results[n] is filled for every file (caller's array). stop may be
 * NULL; when *stop becomes non-zero, sending stops after the current instance. stats may be
 * NULL. See the contract above for outcomes and the return value. */
int rp_sender_send(const rp_sender_dest *d, const char *const *files, size_t n,
                   rp_sender_result *results, volatile int *stop, rp_sender_stats *stats);

/* SOP Instance UID of a DICOM file (header only), into uid (>= 65 bytes). RP_EPARSE/RP_EUID. */
int rp_sender_file_uid(const char *path, char *uid, size_t uidsz);

/* Short static name of an outcome ("done", "retry", "retry-few", "dead"). */
const char *rp_send_outcome_name(rp_send_outcome o);

#ifdef __cplusplus
}
#endif
#endif
