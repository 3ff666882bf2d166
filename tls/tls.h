/*
 * scp/tls.h — scp's internal C view of dcmtk's dcmtls (scp/tls.cc) on OpenSSL 3. Only scp/
 * (net.cc, sender.cc, scp.c, outbox.c) and its tests include it; no dcmtk type crosses it.
 *
 * Contract:
 *  - rp_tls_new() builds one DcmTLSTransportLayer from [tls]: the node's certificate and key
 *    (key_passphrase_file read once, never a prompt), the trusted CAs (ca_file and/or ca_dir),
 *    the profile (bcp195-nd, the default: TLS 1.2+ with the BCP 195 suites, no fallback;
 *    bcp195: may fall back to TLS 1.0 for old peers; bcp195-ex: TLS 1.2 only, ECDSA too),
 *    and peer verification: with require_client_cert (default) a server refuses a client
 *    without a certificate from a trusted CA; a client always requires the server's.
 *  - Server side, one call per connection thread, never holding a lock: rp_tls_accept()
 *    performs the handshake on an accepted socket (bounded by timeout_s) and fills the facts
 *    the audit log and the peer binding need (protocol, cipher, subject, SHA-256 of the
 *    certificate). The connection object it returns is handed to dcmtk through the layer:
 *    rp_tls_offer() makes the layer's next createConnection() for that socket return it
 *    (net.cc calls it under its hand-off mutex), so dcmtk never handshakes itself.
 *  - Everything returned is owned by the caller: rp_tls_free(), rp_tls_conn_free() (only for a
 *    connection never handed to dcmtk; once handed over, dcmtk owns and closes it).
 */
#ifndef RP_SCP_TLS_H
#define RP_SCP_TLS_H

#include <stddef.h>

#include "conf/conf.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rp_tls rp_tls;
typedef struct rp_tls_conn rp_tls_conn;

typedef enum { RP_TLS_SERVER = 0, RP_TLS_CLIENT = 1 } rp_tls_role;

/* What a handshake established (empty strings when not applicable). */
typedef struct rp_tls_peer {
    char protocol[16]; /* "TLSv1.3" */
    char cipher[64];   /* "TLS_AES_256_GCM_SHA384" */
    char subject[256]; /* peer certificate subject, RFC 2253 ("CN=x,O=y"); "" if none */
    char issuer[256];  /* its issuer */
    char sha256[65];   /* lower-case hex SHA-256 of the peer certificate (DER) */
    int days_left;     /* days until the peer certificate expires */
} rp_tls_peer;

/* Build the layer for `role` from c's [tls] keys. RP_ECONF with a reason in err. */
int rp_tls_new(const rp_conf *c, rp_tls_role role, rp_tls **out, char *err, size_t errsz);
void rp_tls_free(rp_tls *t);

/* The dcmtk DcmTransportLayer* behind t (C++ callers cast it); owned by t. */
void *rp_tls_layer(rp_tls *t);

/* Server handshake on fd (blocking socket; the socket's receive timeout is set to timeout_s
 * while it runs). On success *out holds the connection (it owns fd from now on) and peer
 * the facts. On failure fd is NOT closed and why says why (e.g. "peer did not return a
 * certificate", "certificate has expired", "unsupported protocol"). RP_EREFUSED on a failed
 * handshake, RP_ETIMEOUT, RP_ENOMEM. */
int rp_tls_accept(rp_tls *t, int fd, int timeout_s, rp_tls_conn **out, rp_tls_peer *peer, char *why,
                  size_t whysz);
/* Wait until application data (the A-ASSOCIATE-RQ) can be read: 1 ready with its first byte
 * in *first (the PDU type), 0 timeout, RP_ENET closed. */
int rp_tls_wait_data(rp_tls_conn *c, int timeout_ms, unsigned char *first);
/* Hand c to dcmtk: the next createConnection() of t's layer for c's socket returns it.
 * Call under the same mutex that serialises dcmtk's accept path. */
void rp_tls_offer(rp_tls *t, rp_tls_conn *c);
/* Withdraw an offer dcmtk did not take (e.g. it failed before creating a connection):
 * returns 1 if c was still pending (the caller still owns it). */
int rp_tls_withdraw(rp_tls *t, rp_tls_conn *c);
/* Close and free a connection that was never handed over (closes its socket). */
void rp_tls_conn_free(rp_tls_conn *c);
/* Free only the handle of a connection dcmtk took (dcmtk owns and closes the connection). */
void rp_tls_conn_forget(rp_tls_conn *c);

/* Days until the certificate in `path` expires (negative: expired). RP_EPARSE if unreadable. */
int rp_tls_cert_days_left(const char *path, int *days);

/* Map a [tls] profile name to a log-friendly name; NULL if unknown. */
const char *rp_tls_profile_describe(const char *profile);

#ifdef __cplusplus
}
#endif
#endif
