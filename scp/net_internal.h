/*
 * net — scp's internal C view of dcmtk's ASC_/DIMSE_ layer (scp/net.cc). Only scp/ includes it.
 *
 * Threading model it supports:
 *   - one listener thread: rp_net_wait_connection() accepts TCP connections on our own
 *     socket (bound to [node] bind) and returns the fd at once;
 *   - one thread per connection: rp_net_assoc_receive() waits (ACSE timeout) until the
 *     A-ASSOCIATE-RQ has fully arrived, then lets dcmtk parse it. A peer that connects and
 *     says nothing therefore never blocks the listener or other peers.
 *   - the thread then rejects (rp_net_assoc_reject) or accepts (rp_net_assoc_accept) and
 *     serves DIMSE (rp_net_assoc_serve) until release, abort or timeout.
 * Sockets get TCP_NODELAY, and TCP_QUICKACK is re-armed after every read so that a sender
 * that leaves Nagle on is not stalled by our delayed ACKs (RP_NET_QUICKACK=0 disables it,
 * for measurements).
 */
#ifndef RP_SCP_NET_H
#define RP_SCP_NET_H

#include <stddef.h>

#include "tls/tls.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_net rp_net;
typedef struct rp_net_assoc rp_net_assoc;

typedef struct rp_net_params {
    const char *bind;             /* address to listen on ("" or "0.0.0.0": all IPv4) */
    int port;                     /* 0: any free port (see rp_net_port) */
    unsigned max_pdu;             /* our maximum receive PDU */
    int acse_timeout_s;           /* association negotiation, release */
    int dimse_timeout_s;          /* idle time allowed between / inside DIMSE messages */
    int network_timeout_s;        /* socket send/receive timeout */
    long long max_instance_bytes; /* 0: no limit */
    rp_tls *tls;                  /* server-role TLS layer (borrowed): a TLS port; NULL: plain */
} rp_net_params;

/* Facts about an association request. */
typedef struct rp_net_assoc_info {
    char calling_ae[17];
    char called_ae[17];
    char peer_host[64]; /* numeric address */
    int peer_port;
    unsigned long max_pdu_peer;
    int tls;              /* 1: came over the TLS port (tls_peer says what was negotiated) */
    rp_tls_peer tls_peer; /* protocol, cipher, peer certificate subject and SHA-256 */
} rp_net_assoc_info;

typedef enum {
    RP_NET_RJ_CALLING_AE = 1, /* permanent, service user: calling AE title not recognized */
    RP_NET_RJ_CALLED_AE,      /* permanent, service user: called AE title not recognized */
    RP_NET_RJ_LIMIT,          /* transient, provider (presentation): local limit exceeded */
    RP_NET_RJ_BUSY,           /* transient, provider (presentation): temporary congestion */
    RP_NET_RJ_NO_REASON       /* permanent, service user: no reason given */
} rp_net_reject_reason;

/* One C-STORE request, as the handlers see it. */
typedef struct rp_net_store_req {
    const char *sop_class_uid;
    const char *sop_instance_uid;
    const char *transfer_syntax_uid;
    unsigned short message_id;
} rp_net_store_req;

/* Results of receiving a dataset (recv_rc of store_end). */
enum {
    RP_NET_RECV_OK = 0,
    RP_NET_RECV_TOO_BIG = 1, /* exceeded max_instance_bytes; rest of the dataset drained */
    RP_NET_RECV_WRITE = 2,   /* store_data failed (its RP_E* code in recv_err) */
    RP_NET_RECV_NET = 3      /* the association broke: no response can be sent */
};

typedef struct rp_net_handlers {
    void *ctx;
    /* A C-STORE-RQ arrived. Return 0 to receive the dataset (through store_data), or a DIMSE
     * status (e.g. 0xA700) to refuse it: the dataset is then drained and that status
     * answered with `comment` as Error Comment. */
    unsigned (*store_begin)(void *ctx, const rp_net_store_req *r, char *comment, size_t commentsz);
    /* The next bytes of the instance's Part-10 file (our File Meta group, then the dataset
     * as received), in order, in pieces of 32 KB or more except the last. 0, or an RP_E*
     * code: the rest of the dataset is then read and dropped. */
    int (*store_data)(void *ctx, const void *buf, size_t n);
    /* The dataset has been received (recv_rc says how it went). Return the DIMSE status to
     * answer (ignored for RP_NET_RECV_NET). */
    unsigned (*store_end)(void *ctx, const rp_net_store_req *r, int recv_rc, int recv_err,
                          long long bytes, char *comment, size_t commentsz);
    /* After the response to a C-STORE whose store_end was called (sent or not; may be NULL):
     * what need not delay the answer (services, the log line). */
    void (*store_done)(void *ctx);
    /* Polled between messages: non-zero makes the node abort the association now. */
    int (*should_abort)(void *ctx);
} rp_net_handlers;

/* How an association ended. */
typedef enum {
    RP_NET_END_RELEASED = 0,
    RP_NET_END_ABORTED_BY_PEER,
    RP_NET_END_TIMEOUT,
    RP_NET_END_NETWORK_ERROR,
    RP_NET_END_PROTOCOL_ERROR,
    RP_NET_END_SHUTDOWN
} rp_net_end;
const char *rp_net_end_name(rp_net_end e);

/* Process-wide dcmtk settings (logging, timeouts, reverse DNS off). Call once. */
void rp_net_global_init(const rp_net_params *p);

/* Open our listening socket and the dcmtk network. */
int rp_net_open(const rp_net_params *p, rp_net **out, char *err, size_t errsz);
void rp_net_close(rp_net *n);
/* Close the listening socket only (new connections are refused at once); associations
 * already open keep working until rp_net_close(). */
void rp_net_stop_listening(rp_net *n);
int rp_net_port(const rp_net *n);
/* Wait up to timeout_ms for a connection: 1 and *fd set, 0 on timeout, <0 on error. */
int rp_net_wait_connection(rp_net *n, int timeout_ms, int *fd);

/* In the connection's thread: wait for the association request and parse it (on a TLS port
 * the TLS handshake comes first, in this thread, never under dcmtk's hand-off lock; a failed
 * handshake returns RP_EREFUSED with the reason, e.g. an untrusted certificate). Takes
 * ownership of fd. On error *out is NULL and the connection is closed; `why` says why. */
int rp_net_assoc_receive(rp_net *n, int fd, rp_net_assoc **out, rp_net_assoc_info *info, char *why,
                         size_t whysz);
/* Reject and free the association. */
void rp_net_assoc_reject(rp_net_assoc *a, rp_net_reject_reason r);
/* Accept: set our AE title, accept Verification (if echo) and every storage SOP class
 * dcmtk knows (if store) with the first proposed transfer syntax we support, and send the
 * A-ASSOCIATE-AC. Returns the number of accepted presentation contexts, or RP_ENET. */
int rp_net_assoc_accept(rp_net_assoc *a, const char *our_ae, int echo, int store);
/* Serve C-ECHO and C-STORE until the association ends (the handlers do the counting).
 * Frees nothing: call rp_net_assoc_free() after. */
rp_net_end rp_net_assoc_serve(rp_net_assoc *a, const rp_net_handlers *h);
void rp_net_assoc_free(rp_net_assoc *a);
/* Make a blocked association thread return soon (socket shutdown); thread-safe. */
void rp_net_assoc_interrupt(rp_net_assoc *a);

#ifdef __cplusplus
}
#endif
#endif
