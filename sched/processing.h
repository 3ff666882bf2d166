/*
 * scp/processing — the node service that runs processing: the job supervisor and the
 * completion monitor, registered with rp_node_add_service() (see scp/scp.h).
 * Internal to scp/ (scp/main.c).
 *
 * Contract:
 *  - start (after reconciliation, before the port accepts, i.e. before READY=1): requeue jobs
 *    a dead node left running, start the supervisor, run one completion pass so that series
 *    that went quiet while the node was down complete now, then start the monitor thread.
 *  - stop: stop the monitor, then the supervisor (running workers get SIGTERM, then SIGKILL,
 *    and their jobs go back to the queue without counting an attempt).
 *  - The worker binary is `radprep` next to radprepd (/proc/self/exe), or $RP_WORKER_BIN.
 */
#ifndef RP_SCP_PROCESSING_H
#define RP_SCP_PROCESSING_H

#include "scp/scp.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fill *svc (name "processing") with a fresh context; register it with rp_node_add_service.
 * The context is freed by the service's stop. Returns 0 or RP_ENOMEM. */
int rp_processing_service(rp_node_service *svc);

#ifdef __cplusplus
}
#endif
#endif
