/*
 * net — the dcmtk adapter of the receiving node: listening socket, association
 * negotiation, and the C-ECHO / C-STORE service loop. See net.h for the contract.
 *
 * Two dcmtk details this file relies on (dcmtk 3.6.7, dcmnet/libsrc/dul.cc):
 *  - receiveTransportConnectionTCP() uses dcmExternalSocketHandle instead of accept() when
 *    it is set. We accept() ourselves and hand each connection to dcmtk under a mutex,
 *    only once its A-ASSOCIATE-RQ has fully arrived, so the dcmtk call never waits on the
 *    network while holding the mutex. The same global, set during ASC_initializeNetwork(),
 *    stops dcmtk from binding its own wildcard listening socket: ours honours [node] bind.
 *  - Every connection is created by the network's DcmTransportLayer::createConnection():
 *    our layer returns a DcmTCPConnection that re-arms TCP_QUICKACK after each read.
 */
#include "scp/net_internal.h"
#include "metrics/metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <string>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcostrma.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcvrae.h>
#include <dcmtk/dcmdata/dcvrobow.h>
#include <dcmtk/dcmdata/dcvrsh.h>
#include <dcmtk/dcmdata/dcvrui.h>
#include <dcmtk/dcmdata/dcvrul.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmnet/dcmlayer.h>
#include <dcmtk/dcmnet/dcmtrans.h>
#include <dcmtk/dcmnet/dimse.h>
#include <dcmtk/dcmnet/dul.h>
#include <dcmtk/oflog/oflog.h>

#include "common/common.h"
#include "metrics/metrics.h"

#define MOD "scp"
#define RP_E2BIG_PDU (RP_ERR_MIN_ - 1) /* local to this file: association request > 1 MB */

/* The transfer syntaxes we store as received. Anything else in a proposal is refused. */
static const char *const k_ts[] = {
    UID_LittleEndianImplicitTransferSyntax, UID_LittleEndianExplicitTransferSyntax,
    UID_BigEndianExplicitTransferSyntax,    UID_DeflatedExplicitVRLittleEndianTransferSyntax,
    UID_JPEGProcess1TransferSyntax,         UID_JPEGProcess2_4TransferSyntax,
    UID_JPEGProcess14TransferSyntax,        UID_JPEGProcess14SV1TransferSyntax,
    UID_JPEGLSLosslessTransferSyntax,       UID_JPEGLSLossyTransferSyntax,
    UID_JPEG2000LosslessOnlyTransferSyntax, UID_JPEG2000TransferSyntax,
    UID_RLELosslessTransferSyntax,
};

/* dcmtk condition texts can span lines ("0006:020c DIMSE Read PDV failed\n0006:0310 ...");
 * log lines must not. Returns buf. */
static std::string one_line(const OFCondition &c)
{
    std::string t = c.text() ? c.text() : "";
    for (char &ch : t)
        if (ch == '\n' || ch == '\r')
            ch = ';';
    return t;
}
#define CTEXT(c) one_line(c).c_str()

static bool ts_supported(const char *uid)
{
    for (const char *t : k_ts)
        if (strcmp(t, uid) == 0)
            return true;
    return false;
}

static const std::set<std::string> &storage_classes()
{
    static const std::set<std::string> s = [] {
        std::set<std::string> r;
        for (int i = 0; i < numberOfDcmAllStorageSOPClassUIDs; i++)
            r.insert(dcmAllStorageSOPClassUIDs[i]);
        return r;
    }();
    return s;
}

/* ---- transport: TCP_NODELAY + TCP_QUICKACK re-armed after reads ------------------------ */

static bool g_quickack = true;
static bool g_nodelay = true; /* RP_NET_NODELAY=0 turns it off, for measurements only */

class RpTcpConnection : public DcmTCPConnection
{
  public:
    explicit RpTcpConnection(DcmNativeSocketType s) : DcmTCPConnection(s)
    {
        int one = 1, nodelay = g_nodelay ? 1 : 0;
        /* Our C-STORE-RSP leaves in more than one write(); with Nagle on, the second waits
         * for the sender's delayed ACK (~40 ms per instance). */
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof nodelay);
        if (g_quickack)
            setsockopt(s, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    }
    ssize_t read(void *buf, size_t nbyte) override
    {
        ssize_t r = DcmTCPConnection::read(buf, nbyte);
        /* Linux drops back to delayed ACKs on its own; re-arm so a sender whose Nagle
         * waits for our ACK is answered at once instead of after ~40 ms. */
        if (g_quickack && r > 0) {
            int one = 1;
            setsockopt(getSocket(), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
        }
        return r;
    }
};

class RpTransportLayer : public DcmTransportLayer
{
  public:
    DcmTransportConnection *createConnection(DcmNativeSocketType s, OFBool secure) override
    {
        if (secure)
            return NULL; /* TLS is not handled by this layer */
        return new RpTcpConnection(s);
    }
};

/* ---- network ---------------------------------------------------------------------------- */

struct rp_net {
    T_ASC_Network *net;
    int listen_fd;
    int port;
    std::atomic<int> stopping; /* set by rp_net_stop_listening: handshakes give up */
    rp_net_params p;
};

struct rp_net_assoc {
    rp_net *net;
    T_ASC_Association *assoc;
    std::atomic<int> fd;
    rp_net_assoc_info info;
};

/* Guards dcmExternalSocketHandle, a process-wide dcmtk setting. */
static pthread_mutex_t g_handoff = PTHREAD_MUTEX_INITIALIZER;

extern "C" const char *rp_net_end_name(rp_net_end e)
{
    switch (e) {
    case RP_NET_END_RELEASED:
        return "released";
    case RP_NET_END_ABORTED_BY_PEER:
        return "aborted_by_peer";
    case RP_NET_END_TIMEOUT:
        return "timeout";
    case RP_NET_END_NETWORK_ERROR:
        return "network_error";
    case RP_NET_END_PROTOCOL_ERROR:
        return "protocol_error";
    case RP_NET_END_SHUTDOWN:
        return "shutdown";
    }
    return "unknown";
}

extern "C" void rp_net_global_init(const rp_net_params *p)
{
    /* dcmtk's own log lines are not key=value; keep only its errors unless debugging. */
    OFLog::configure(rp_log_get_level() == RP_LOG_DEBUG ? OFLogger::INFO_LOG_LEVEL
                                                        : OFLogger::FATAL_LOG_LEVEL);
    dcmDisableGethostbyaddr.set(OFTrue); /* no reverse DNS on the accept path */
    if (p->network_timeout_s > 0) {
        dcmSocketSendTimeout.set(p->network_timeout_s);
        dcmSocketReceiveTimeout.set(p->network_timeout_s);
    }
    const char *qa = getenv("RP_NET_QUICKACK");
    g_quickack = !(qa && strcmp(qa, "0") == 0);
    const char *nd = getenv("RP_NET_NODELAY");
    g_nodelay = !(nd && strcmp(nd, "0") == 0);
}

static int make_listen_socket(const char *bind_addr, int port, int *out_port, char *err,
                              size_t errsz)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    const char *host = (bind_addr && bind_addr[0]) ? bind_addr : "0.0.0.0";
    int gai = getaddrinfo(host, portstr, &hints, &res);
    if (gai != 0) {
        snprintf(err, errsz, "cannot resolve bind address %s: %s", host, gai_strerror(gai));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errsz, "socket: %s", strerror(errno));
        freeaddrinfo(res);
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        snprintf(err, errsz, "cannot bind %s:%d: %s", host, port, strerror(errno));
        close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    if (listen(fd, 128) != 0) {
        snprintf(err, errsz, "listen: %s", strerror(errno));
        close(fd);
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *out_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

extern "C" int rp_net_open(const rp_net_params *p, rp_net **out, char *err, size_t errsz)
{
    *out = NULL;
    rp_net *n = new (std::nothrow) rp_net();
    if (!n)
        return RP_ENOMEM;
    n->p = *p;
    n->listen_fd = make_listen_socket(p->bind, p->port, &n->port, err, errsz);
    if (n->listen_fd < 0) {
        delete n;
        return RP_ENET;
    }
    pthread_mutex_lock(&g_handoff);
    dcmExternalSocketHandle.set(n->listen_fd); /* keeps dcmtk from binding its own socket */
    OFCondition c = ASC_initializeNetwork(NET_ACCEPTOR, n->port, p->acse_timeout_s, &n->net);
    dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
    pthread_mutex_unlock(&g_handoff);
    if (c.bad()) {
        snprintf(err, errsz, "dcmtk network init failed: %s", CTEXT(c));
        close(n->listen_fd);
        delete n;
        return RP_ENET;
    }
    /* A TLS port uses the layer of scp/tls.cc (owned by the caller); a plain one ours. */
    c = p->tls ? ASC_setTransportLayer(n->net, (DcmTransportLayer *)rp_tls_layer(p->tls), 0)
               : ASC_setTransportLayer(n->net, new RpTransportLayer(), 1);
    if (c.bad()) {
        snprintf(err, errsz, "dcmtk transport layer: %s", CTEXT(c));
        ASC_dropNetwork(&n->net);
        close(n->listen_fd);
        delete n;
        return RP_ENET;
    }
    *out = n;
    return 0;
}

extern "C" void rp_net_close(rp_net *n)
{
    if (!n)
        return;
    if (n->net)
        ASC_dropNetwork(&n->net);
    if (n->listen_fd >= 0)
        close(n->listen_fd);
    delete n;
}

extern "C" void rp_net_stop_listening(rp_net *n)
{
    if (n)
        n->stopping.store(1);
    if (n && n->listen_fd >= 0) {
        close(n->listen_fd);
        n->listen_fd = -1;
    }
}

extern "C" int rp_net_port(const rp_net *n)
{
    return n->port;
}

extern "C" int rp_net_wait_connection(rp_net *n, int timeout_ms, int *fd)
{
    struct pollfd pfd = {n->listen_fd, POLLIN, 0};
    int r = poll(&pfd, 1, timeout_ms);
    if (r < 0)
        return errno == EINTR ? 0 : RP_ENET;
    if (r == 0)
        return 0;
    int c = accept4(n->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
            return 0;
        if (errno == EMFILE || errno == ENFILE) {
            RP_WARN(MOD, "accept failed, out of file descriptors errno=%s", strerror(errno));
            usleep(100 * 1000);
            return 0;
        }
        return RP_ENET;
    }
    *fd = c;
    return 1;
}

/* Wait until a whole PDU (header + body, up to 1 MB) sits in the socket buffer, so that
 * dcmtk's read of it cannot block. 0 when ready, RP_ETIMEOUT, or RP_ENET (closed). */
static int wait_full_pdu(rp_net *n, int fd, int timeout_s)
{
    double deadline = rp_mono_s() + (timeout_s > 0 ? timeout_s : 30);
    size_t need = 6;
    unsigned char hdr[6];
    unsigned char *buf = hdr; /* grows to the announced PDU size once the header is in */
    int rc = RP_ETIMEOUT;
    for (;;) {
        if (n->stopping.load()) {
            rc = RP_ECANCELED;
            break;
        }
        ssize_t got = recv(fd, buf, need, MSG_PEEK | MSG_DONTWAIT);
        if (got == 0) {
            rc = RP_ENET;
            break;
        }
        if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            rc = RP_ENET;
            break;
        }
        if (got >= 6 && need == 6) {
            unsigned long len = ((unsigned long)buf[2] << 24) | ((unsigned long)buf[3] << 16) |
                                ((unsigned long)buf[4] << 8) | buf[5];
            /* The first PDU must be an A-ASSOCIATE-RQ of sane size: anything else is not a
             * DICOM peer, and waiting for its announced length would only pin the thread. */
            if (buf[0] != 0x01) {
                rc = RP_EPARSE;
                break;
            }
            if (len > (1UL << 20) - 6) {
                rc = RP_E2BIG_PDU;
                break;
            }
            need = 6 + len;
            buf = (unsigned char *)malloc(need);
            if (!buf) {
                buf = hdr;
                rc = RP_ENOMEM;
                break;
            }
            continue;
        }
        if (got >= 0 && (size_t)got >= need) {
            rc = 0;
            break;
        }
        double left = deadline - rp_mono_s();
        if (left <= 0)
            break;
        struct pollfd pfd = {fd, POLLIN, 0};
        /* After POLLIN the peek may still be short of `need`: poll then returns at once, so
         * wait a little between peeks instead of spinning. */
        if (got > 0)
            usleep(2000);
        else
            poll(&pfd, 1, (int)(left * 1000 > 500 ? 500 : left * 1000 + 1));
    }
    if (buf != hdr)
        free(buf);
    return rc;
}

static void destroy_assoc(T_ASC_Association **a)
{
    if (!*a)
        return;
    ASC_dropSCPAssociation(*a);
    ASC_destroyAssociation(a);
    *a = NULL;
}

static int assoc_finish(rp_net *n, int fd, T_ASC_Association *assoc, rp_net_assoc **out,
                        rp_net_assoc_info *info, char *why, size_t whysz);

/* TLS port: handshake in this thread (bounded by acse_timeout_s), wait for the first
 * application data, then let dcmtk parse the A-ASSOCIATE-RQ over the secured connection.
 * The request's bytes may still be in flight when dcmtk reads under the hand-off mutex (TLS
 * records cannot be peeked whole like plain bytes); only a peer that passed the handshake,
 * i.e. holds a trusted certificate by default, can make it wait, at most acse_timeout_s. */
static int assoc_receive_tls(rp_net *n, int fd, rp_net_assoc **out, rp_net_assoc_info *info,
                             char *why, size_t whysz)
{
    info->tls = 1;
    rp_tls_conn *tc = NULL;
    int rc = rp_tls_accept(n->p.tls, fd, n->p.acse_timeout_s, &tc, &info->tls_peer, why, whysz);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    double deadline = rp_mono_s() + (n->p.acse_timeout_s > 0 ? n->p.acse_timeout_s : 30);
    int w = 0;
    unsigned char pdu_type = 0;
    while (w == 0 && !n->stopping.load() && rp_mono_s() < deadline)
        w = rp_tls_wait_data(tc, 500, &pdu_type);
    if (w == 1 && pdu_type != 0x01) {
        snprintf(why, whysz,
                 "not a DICOM association request over TLS (first PDU is not "
                 "A-ASSOCIATE-RQ)");
        rp_tls_conn_free(tc);
        return RP_EPARSE;
    }
    if (w != 1) {
        if (w < 0)
            snprintf(why, whysz, "connection closed after the TLS handshake");
        else if (n->stopping.load())
            snprintf(why, whysz, "node is stopping");
        else
            snprintf(why, whysz, "no association request within acse_timeout_s=%d",
                     n->p.acse_timeout_s);
        rp_tls_conn_free(tc);
        return w < 0 ? RP_ENET : n->stopping.load() ? RP_ECANCELED : RP_ETIMEOUT;
    }
    T_ASC_Association *assoc = NULL;
    pthread_mutex_lock(&g_handoff);
    rp_tls_offer(n->p.tls, tc);
    dcmExternalSocketHandle.set(fd);
    OFCondition c = ASC_receiveAssociation(n->net, &assoc, n->p.max_pdu, NULL, NULL, OFTrue,
                                           DUL_NOBLOCK, n->p.acse_timeout_s);
    dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
    int still_ours = rp_tls_withdraw(n->p.tls, tc);
    pthread_mutex_unlock(&g_handoff);
    if (still_ours)
        rp_tls_conn_free(tc); /* dcmtk never took it: closes fd */
    else
        rp_tls_conn_forget(tc); /* dcmtk's association owns the connection now */
    if (c.bad()) {
        snprintf(why, whysz, "bad association request: %s", CTEXT(c));
        destroy_assoc(&assoc);
        return RP_EPARSE;
    }
    if (still_ours) { /* cannot happen: dcmtk accepted without our connection */
        snprintf(why, whysz, "TLS connection was not used by dcmtk");
        destroy_assoc(&assoc);
        return RP_EINTERNAL;
    }
    return assoc_finish(n, fd, assoc, out, info, why, whysz);
}

extern "C" int rp_net_assoc_receive(rp_net *n, int fd, rp_net_assoc **out, rp_net_assoc_info *info,
                                    char *why, size_t whysz)
{
    *out = NULL;
    memset(info, 0, sizeof *info);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        void *addr = ss.ss_family == AF_INET6 ? (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                              : (void *)&((struct sockaddr_in *)&ss)->sin_addr;
        inet_ntop(ss.ss_family, addr, info->peer_host, sizeof info->peer_host);
        info->peer_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                         : ((struct sockaddr_in *)&ss)->sin_port);
        /* Report IPv4-mapped IPv6 peers as plain IPv4. */
        if (strncmp(info->peer_host, "::ffff:", 7) == 0)
            memmove(info->peer_host, info->peer_host + 7, strlen(info->peer_host + 7) + 1);
    }
    int nodelay = g_nodelay ? 1 : 0;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof nodelay);

    if (n->p.tls)
        return assoc_receive_tls(n, fd, out, info, why, whysz);
    int w = wait_full_pdu(n, fd, n->p.acse_timeout_s);
    if (w != 0) {
        if (w == RP_ETIMEOUT)
            snprintf(why, whysz, "no association request within acse_timeout_s=%d",
                     n->p.acse_timeout_s);
        else if (w == RP_EPARSE)
            snprintf(why, whysz,
                     "not a DICOM association request (first PDU is not "
                     "A-ASSOCIATE-RQ)");
        else if (w == RP_E2BIG_PDU)
            snprintf(why, whysz, "association request larger than 1 MB");
        else if (w == RP_ECANCELED)
            snprintf(why, whysz, "node is stopping");
        else
            snprintf(why, whysz, "connection closed before association request");
        close(fd);
        return w == RP_ETIMEOUT || w == RP_ENET || w == RP_ECANCELED ? w : RP_EPARSE;
    }

    T_ASC_Association *assoc = NULL;
    pthread_mutex_lock(&g_handoff);
    dcmExternalSocketHandle.set(fd);
    OFCondition c = ASC_receiveAssociation(n->net, &assoc, n->p.max_pdu, NULL, NULL, OFFalse,
                                           DUL_NOBLOCK, n->p.acse_timeout_s);
    dcmExternalSocketHandle.set(DCMNET_INVALID_SOCKET);
    pthread_mutex_unlock(&g_handoff);
    if (c.bad()) {
        snprintf(why, whysz, "bad association request: %s", CTEXT(c));
        bool dcmtk_owns_fd = assoc && assoc->DULassociation;
        destroy_assoc(&assoc);
        if (!dcmtk_owns_fd)
            close(fd);
        return RP_EPARSE;
    }
    return assoc_finish(n, fd, assoc, out, info, why, whysz);
}

/* Common tail: AE titles into info, application context check, the rp_net_assoc. */
static int assoc_finish(rp_net *n, int fd, T_ASC_Association *assoc, rp_net_assoc **out,
                        rp_net_assoc_info *info, char *why, size_t whysz)
{
    ASC_getAPTitles(assoc->params, info->calling_ae, sizeof info->calling_ae, info->called_ae,
                    sizeof info->called_ae, NULL, 0);
    info->max_pdu_peer = assoc->params->theirMaxPDUReceiveSize;

    rp_net_assoc *a = new (std::nothrow) rp_net_assoc();
    if (!a) {
        destroy_assoc(&assoc);
        return RP_ENOMEM;
    }
    a->net = n;
    a->assoc = assoc;
    a->fd = fd;
    a->info = *info;

    char ctx[128] = "";
    ASC_getApplicationContextName(assoc->params, ctx, sizeof ctx);
    if (strcmp(ctx, UID_StandardApplicationContext) != 0) {
        snprintf(why, whysz, "unsupported application context %s", ctx);
        T_ASC_RejectParameters rej = {ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
                                      ASC_REASON_SU_APPCONTEXTNAMENOTSUPPORTED};
        ASC_rejectAssociation(assoc, &rej);
        rp_net_assoc_free(a);
        return RP_EREFUSED;
    }
    *out = a;
    return 0;
}

extern "C" void rp_net_assoc_reject(rp_net_assoc *a, rp_net_reject_reason r)
{
    T_ASC_RejectParameters rej = {ASC_RESULT_REJECTEDPERMANENT, ASC_SOURCE_SERVICEUSER,
                                  ASC_REASON_SU_NOREASON};
    switch (r) {
    case RP_NET_RJ_CALLING_AE:
        rej.reason = ASC_REASON_SU_CALLINGAETITLENOTRECOGNIZED;
        break;
    case RP_NET_RJ_CALLED_AE:
        rej.reason = ASC_REASON_SU_CALLEDAETITLENOTRECOGNIZED;
        break;
    case RP_NET_RJ_LIMIT:
        rej.result = ASC_RESULT_REJECTEDTRANSIENT;
        rej.source = ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED;
        rej.reason = ASC_REASON_SP_PRES_LOCALLIMITEXCEEDED;
        break;
    case RP_NET_RJ_BUSY:
        rej.result = ASC_RESULT_REJECTEDTRANSIENT;
        rej.source = ASC_SOURCE_SERVICEPROVIDER_PRESENTATION_RELATED;
        rej.reason = ASC_REASON_SP_PRES_TEMPORARYCONGESTION;
        break;
    case RP_NET_RJ_NO_REASON:
        break;
    }
    ASC_rejectAssociation(a->assoc, &rej);
    rp_net_assoc_free(a);
}

extern "C" int rp_net_assoc_accept(rp_net_assoc *a, const char *our_ae, int echo, int store)
{
    T_ASC_Parameters *params = a->assoc->params;
    ASC_setAPTitles(params, NULL, NULL, our_ae);
    int n = ASC_countPresentationContexts(params), accepted = 0;
    for (int i = 0; i < n; i++) {
        T_ASC_PresentationContext pc;
        if (ASC_getPresentationContext(params, i, &pc).bad())
            continue;
        bool wanted = (echo && strcmp(pc.abstractSyntax, UID_VerificationSOPClass) == 0) ||
                      (store && storage_classes().count(pc.abstractSyntax) > 0);
        if (!wanted) {
            ASC_refusePresentationContext(params, pc.presentationContextID,
                                          ASC_P_ABSTRACTSYNTAXNOTSUPPORTED);
            continue;
        }
        /* The proposer lists its preference first: take the first one we can store as is,
         * so the sender never has to transcode. */
        const char *ts = NULL;
        for (int j = 0; j < pc.transferSyntaxCount && !ts; j++)
            if (ts_supported(pc.proposedTransferSyntaxes[j]))
                ts = pc.proposedTransferSyntaxes[j];
        if (!ts) {
            ASC_refusePresentationContext(params, pc.presentationContextID,
                                          ASC_P_TRANSFERSYNTAXESNOTSUPPORTED);
            continue;
        }
        if (ASC_acceptPresentationContext(params, pc.presentationContextID, ts).good())
            accepted++;
    }
    OFCondition c = ASC_acknowledgeAssociation(a->assoc);
    if (c.bad()) {
        RP_WARN(MOD, "cannot acknowledge association calling_ae=%s err=\"%s\"", a->info.calling_ae,
                CTEXT(c));
        return RP_ENET;
    }
    return accepted;
}

/* ---- the instance stream: into the store's handler, with a size limit ------------------- */

class RpStoreConsumer : public DcmConsumer
{
  public:
    RpStoreConsumer(const rp_net_handlers *h, long long limit) : h_(h), limit_(limit) {}
    /* Always "good" towards dcmtk: when the limit is passed or the store fails, the rest of
     * the dataset is read and dropped here. Failing the write instead makes dcmtk drain the
     * dataset itself (DIMSE_ignoreDataSet), which waits for PDVs that never come when the
     * failing PDV was the last one, and the association dies on the DIMSE timeout. The
     * caller checks too_big()/write_error() after the receive. */
    OFBool good() const override
    {
        return OFTrue;
    }
    OFCondition status() const override
    {
        return EC_Normal;
    }
    OFBool isFlushed() const override
    {
        return used_ == 0;
    }
    offile_off_t avail() const override
    {
        return 1 << 30;
    }
    offile_off_t write(const void *buf, offile_off_t len) override
    {
        received_ += (long long)len;
        if (too_big_ || err_)
            return len;
        if (limit_ > 0 && total_ + (long long)len > limit_) {
            too_big_ = true;
            return len;
        }
        total_ += (long long)len;
        const char *p = (const char *)buf;
        size_t left = (size_t)len;
        /* Small writes (the meta header's elements) are gathered; big PDVs go straight. */
        if (used_ + left > sizeof buf_ && !drain())
            return len;
        if (left >= sizeof buf_) {
            give(p, left);
        } else {
            memcpy(buf_ + used_, p, left);
            used_ += left;
        }
        return len;
    }
    void flush() override
    {
        drain();
    }
    bool too_big() const
    {
        return too_big_;
    }
    bool write_error() const
    {
        return err_ != 0;
    }
    int err() const
    {
        return err_;
    }
    long long total() const
    {
        return received_;
    }

  private:
    bool drain()
    {
        if (used_ == 0)
            return err_ == 0;
        bool ok = give(buf_, used_);
        used_ = 0;
        return ok;
    }
    bool give(const char *p, size_t n)
    {
        int rc = h_->store_data(h_->ctx, p, n);
        if (rc != 0)
            err_ = rc;
        return rc == 0;
    }
    const rp_net_handlers *h_;
    long long limit_;
    long long total_ = 0;    /* bytes accepted into the store */
    long long received_ = 0; /* bytes that came, dropped ones included */
    bool too_big_ = false;
    int err_ = 0;
    size_t used_ = 0;
    char buf_[32768];
};

class RpStoreStream : public DcmOutputStream
{
  public:
    RpStoreStream(const rp_net_handlers *h, long long limit)
        : DcmOutputStream(&consumer_), consumer_(h, limit)
    {
    }
    RpStoreConsumer &consumer()
    {
        return consumer_;
    }

  private:
    RpStoreConsumer consumer_;
};

/* Part-10 File Meta for a received dataset; mirrors dcmtk's DIMSE_createFilestream(). */
static OFCondition write_meta(DcmOutputStream &out, const T_DIMSE_C_StoreRQ *req, const char *ts,
                              const char *calling_ae)
{
    DcmMetaInfo mi;
    Uint8 version[2] = {0, 1};
    DcmUnsignedLong *gl = new DcmUnsignedLong(DcmTag(DCM_FileMetaInformationGroupLength));
    gl->putUint32(0);
    mi.insert(gl, OFTrue);
    DcmOtherByteOtherWord *ver = new DcmOtherByteOtherWord(DcmTag(DCM_FileMetaInformationVersion));
    ver->putUint8Array(version, 2);
    mi.insert(ver, OFTrue);
    mi.putAndInsertString(DCM_MediaStorageSOPClassUID, req->AffectedSOPClassUID);
    mi.putAndInsertString(DCM_MediaStorageSOPInstanceUID, req->AffectedSOPInstanceUID);
    mi.putAndInsertString(DCM_TransferSyntaxUID, ts);
    mi.putAndInsertString(DCM_ImplementationClassUID, OFFIS_IMPLEMENTATION_CLASS_UID);
    mi.putAndInsertString(DCM_ImplementationVersionName, OFFIS_DTK_IMPLEMENTATION_VERSION_NAME2);
    if (calling_ae && calling_ae[0])
        mi.putAndInsertString(DCM_SourceApplicationEntityTitle, calling_ae);
    OFCondition c = mi.computeGroupLengthAndPadding(
        EGL_withGL, EPD_noChange, META_HEADER_DEFAULT_TRANSFERSYNTAX, EET_UndefinedLength);
    if (c.bad())
        return c;
    mi.transferInit();
    c = mi.write(out, META_HEADER_DEFAULT_TRANSFERSYNTAX, EET_ExplicitLength, NULL);
    mi.transferEnd();
    return c;
}

static void send_store_rsp(T_ASC_Association *assoc, T_ASC_PresentationContextID pid,
                           T_DIMSE_C_StoreRQ *req, unsigned status, const char *comment)
{
    T_DIMSE_C_StoreRSP rsp;
    memset(&rsp, 0, sizeof rsp);
    rsp.MessageIDBeingRespondedTo = req->MessageID;
    rsp.DimseStatus = (DIC_US)status;
    rsp.DataSetType = DIMSE_DATASET_NULL;
    OFStandard::strlcpy(rsp.AffectedSOPClassUID, req->AffectedSOPClassUID,
                        sizeof rsp.AffectedSOPClassUID);
    OFStandard::strlcpy(rsp.AffectedSOPInstanceUID, req->AffectedSOPInstanceUID,
                        sizeof rsp.AffectedSOPInstanceUID);
    rsp.opts = O_STORE_AFFECTEDSOPCLASSUID | O_STORE_AFFECTEDSOPINSTANCEUID;
    if (req->opts & O_STORE_RQ_BLANK_PADDING)
        rsp.opts |= O_STORE_RSP_BLANK_PADDING;
    DcmDataset detail;
    DcmDataset *dp = NULL;
    if (status != 0 && comment && comment[0]) {
        char c64[65];
        OFStandard::strlcpy(c64, comment, sizeof c64); /* LO: 64 characters at most */
        detail.putAndInsertString(DCM_ErrorComment, c64);
        dp = &detail;
    }
    OFCondition c = DIMSE_sendStoreResponse(assoc, pid, req, &rsp, dp);
    if (c.bad())
        RP_WARN(MOD, "cannot send C-STORE-RSP sop=%s err=\"%s\"", req->AffectedSOPInstanceUID,
                CTEXT(c));
}

/* One C-STORE: returns false when the association must end (network broke). */
static bool serve_store(rp_net_assoc *a, T_ASC_PresentationContextID pid, T_DIMSE_C_StoreRQ *req,
                        const rp_net_handlers *h)
{
    T_ASC_Association *assoc = a->assoc;
    int tmo = a->net->p.dimse_timeout_s;
    T_ASC_PresentationContext pc;
    const char *ts = "";
    if (ASC_findAcceptedPresentationContext(assoc->params, pid, &pc).good())
        ts = pc.acceptedTransferSyntax;
    rp_net_store_req r = {req->AffectedSOPClassUID, req->AffectedSOPInstanceUID, ts,
                          req->MessageID};
    char comment[256] = "";
    unsigned status = h->store_begin(h->ctx, &r, comment, sizeof comment);
    if (status != 0) {
        char sl[8]; /* counted for the console and /metrics (metrics/metrics.h) */
        rp_metrics_add(RP_M_INSTANCES_RECEIVED, 1, a->info.calling_ae, rp_metrics_hex16(status, sl));
        DIC_UL bytes = 0, pdvs = 0;
        OFCondition c = DIMSE_ignoreDataSet(assoc, DIMSE_NONBLOCKING, tmo, &bytes, &pdvs);
        if (c.bad())
            return false;
        send_store_rsp(assoc, pid, req, status, comment);
        return true;
    }

    RpStoreStream out(h, a->net->p.max_instance_bytes);
    int recv_rc = RP_NET_RECV_OK;
    OFCondition c = write_meta(out, req, ts, a->info.calling_ae);
    T_ASC_PresentationContextID data_pid = 0;
    if (c.bad() && !out.consumer().write_error()) {
        /* cannot happen with sane UIDs; drain and fail the instance */
        DIC_UL bytes = 0, pdvs = 0;
        if (DIMSE_ignoreDataSet(assoc, DIMSE_NONBLOCKING, tmo, &bytes, &pdvs).bad())
            recv_rc = RP_NET_RECV_NET;
        else
            recv_rc = RP_NET_RECV_WRITE;
    } else if (out.consumer().write_error()) {
        DIC_UL bytes = 0, pdvs = 0;
        recv_rc = DIMSE_ignoreDataSet(assoc, DIMSE_NONBLOCKING, tmo, &bytes, &pdvs).bad()
                      ? RP_NET_RECV_NET
                      : RP_NET_RECV_WRITE;
    } else {
        c = DIMSE_receiveDataSetInFile(assoc, DIMSE_NONBLOCKING, tmo, &data_pid, &out, NULL, NULL);
        out.flush();
        bool dimse_oor = c.bad() && c.module() == OFM_dcmnet && c.code() == DIMSEC_OUTOFRESOURCES;
        if (c.bad() && !dimse_oor)
            recv_rc = RP_NET_RECV_NET;
        else if (out.consumer().too_big())
            recv_rc = RP_NET_RECV_TOO_BIG;
        else if (out.consumer().write_error() || dimse_oor)
            recv_rc = RP_NET_RECV_WRITE;
        else if (data_pid != pid)
            recv_rc = RP_NET_RECV_NET; /* protocol violation: treat as broken association */
    }
    status = h->store_end(h->ctx, &r, recv_rc, out.consumer().err(), out.consumer().total(),
                          comment, sizeof comment);
    if (recv_rc != RP_NET_RECV_NET)
        send_store_rsp(assoc, pid, req, status, comment);
    /* counted for the console and /metrics (metrics/metrics.h) once the answer left; no
     * answer: broken */
    char sl[8];
    const char *st = recv_rc == RP_NET_RECV_NET ? "broken" : rp_metrics_hex16(status, sl);
    rp_metrics_add(RP_M_INSTANCES_RECEIVED, 1, a->info.calling_ae, st);
    rp_metrics_add(RP_M_BYTES_RECEIVED, (double)out.consumer().total(), a->info.calling_ae, st);
    if (h->store_done)
        h->store_done(h->ctx);
    return recv_rc != RP_NET_RECV_NET;
}

extern "C" rp_net_end rp_net_assoc_serve(rp_net_assoc *a, const rp_net_handlers *h)
{
    T_ASC_Association *assoc = a->assoc;
    int idle_limit = a->net->p.dimse_timeout_s > 0 ? a->net->p.dimse_timeout_s : 60;
    double last_activity = rp_mono_s();
    for (;;) {
        if (h->should_abort && h->should_abort(h->ctx)) {
            ASC_abortAssociation(assoc);
            return RP_NET_END_SHUTDOWN;
        }
        T_ASC_PresentationContextID pid = 0;
        T_DIMSE_Message msg;
        /* Wake up every second to notice a shutdown; the real limit is dimse_timeout_s. */
        OFCondition c = DIMSE_receiveCommand(assoc, DIMSE_NONBLOCKING, 1, &pid, &msg, NULL);
        if (c == DIMSE_NODATAAVAILABLE) {
            if (rp_mono_s() - last_activity >= idle_limit) {
                ASC_abortAssociation(assoc);
                return RP_NET_END_TIMEOUT;
            }
            continue;
        }
        if (c == DUL_PEERREQUESTEDRELEASE) {
            ASC_acknowledgeRelease(assoc);
            return RP_NET_END_RELEASED;
        }
        if (c == DUL_PEERABORTEDASSOCIATION)
            return RP_NET_END_ABORTED_BY_PEER;
        if (c.bad()) {
            RP_WARN(MOD, "association error calling_ae=%s peer=%s:%d err=\"%s\"",
                    a->info.calling_ae, a->info.peer_host, a->info.peer_port, CTEXT(c));
            ASC_abortAssociation(assoc);
            return (c.module() == OFM_dcmnet && c.code() == DULC_READTIMEOUT)
                       ? RP_NET_END_TIMEOUT
                       : RP_NET_END_NETWORK_ERROR;
        }
        last_activity = rp_mono_s();
        switch (msg.CommandField) {
        case DIMSE_C_ECHO_RQ:
            DIMSE_sendEchoResponse(assoc, pid, &msg.msg.CEchoRQ, STATUS_Success, NULL);
            break;
        case DIMSE_C_STORE_RQ:
            if (!serve_store(a, pid, &msg.msg.CStoreRQ, h)) {
                ASC_abortAssociation(assoc);
                return RP_NET_END_NETWORK_ERROR;
            }
            break;
        default:
            RP_WARN(MOD, "unsupported DIMSE command, aborting calling_ae=%s command=0x%04x",
                    a->info.calling_ae, (unsigned)msg.CommandField);
            ASC_abortAssociation(assoc);
            return RP_NET_END_PROTOCOL_ERROR;
        }
        last_activity = rp_mono_s();
    }
}

extern "C" void rp_net_assoc_free(rp_net_assoc *a)
{
    if (!a)
        return;
    destroy_assoc(&a->assoc);
    delete a;
}

extern "C" void rp_net_assoc_interrupt(rp_net_assoc *a)
{
    int fd = a->fd.load();
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
}
