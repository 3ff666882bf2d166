/*
 * scp/sender.h — C view of dcmtk's DcmStorageSCU (scp/sender.cc): send a list of DICOM files
 * to one destination and say, per file, what happened and what should happen next.
 * Internal to scp/ (the outbox thread) and its tests; no dcmtk type crosses this header.
 *
 * Contract:
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
 *    unsent file RETRY_FEW), RP_EINVAL (bad arguments), RP_ECANCELED (stop
 *    was raised; unsent files are RETRY).
 *  - Thread-safe: one call per thread, no shared state besides dcmtk's codec registry.
 */
#ifndef RP_SCP_SENDER_H
#define RP_SCP_SENDER_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_sender_dest {
    const char *host;
    int port;
    const char *called_ae;  /* the destination's AE title */
    const char *calling_ae; /* ours ([node] ae_title) */
    int connect_timeout_s;  /* TCP connect; <= 0: 10 */
    int acse_timeout_s;     /* association negotiation/release; <= 0: 30 */
    int dimse_timeout_s;    /* wait for each C-STORE-RSP; <= 0: 60 */
    unsigned max_pdu;       /* our max receive PDU; 0: 65536 */
    struct rp_tls *tls;     /* client-role TLS layer (scp/tls.h, borrowed); NULL: plain */
} rp_sender_dest;

typedef enum { RP_SEND_DONE = 0, RP_SEND_RETRY, RP_SEND_RETRY_FEW, RP_SEND_DEAD } rp_send_outcome;

typedef struct rp_sender_result {
    rp_send_outcome outcome;
    int dimse_status; /* C-STORE-RSP status; -1 when no response came */
    char reason[256]; /* empty on plain success */
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
