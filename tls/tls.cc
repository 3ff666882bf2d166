/*
 * scp/tls.cc — dcmtk dcmtls adapter: the TLS transport layer of the node (server role, the
 * TLS port) and of the outbox sender (client role). See scp/tls.h for the contract.
 *
 * Why the handshake is not left to dcmtk on the server side: dcmtk's DUL performs it inside
 * ASC_receiveAssociation(), which net.cc runs under a process-wide hand-off mutex (dcmtk
 * reads the accepted socket from a global). A slow or silent TLS client would then stall
 * every other connection. So the connection thread handshakes on its own (RpTlsConnection),
 * and the layer's createConnection() returns that already-secured connection to dcmtk,
 * whose serverSideHandshake() call is then a no-op.
 */
#include "tls/tls.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmnet/assoc.h>
#include <dcmtk/dcmtls/tlslayer.h>
#include <dcmtk/dcmtls/tlstrans.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/common.h"
#include "metrics/metrics.h"

#define MOD "tls"

static bool g_quickack = true;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init_once(void)
{
    DcmTLSTransportLayer::initializeOpenSSL();
    const char *qa = getenv("RP_NET_QUICKACK");
    g_quickack = !(qa && strcmp(qa, "0") == 0);
}

/* A TLS connection whose server handshake we ran ourselves; reads re-arm TCP_QUICKACK like
 * net.cc's plain connections, so both ports behave the same for senders that keep Nagle on. */
class RpTlsConnection : public DcmTLSConnection
{
  public:
    RpTlsConnection(int fd, SSL *ssl) : DcmTLSConnection(fd, ssl), ssl_(ssl), fd_(fd) {}
    OFCondition serverSideHandshake() override
    {
        return done_ ? EC_Normal : DcmTLSConnection::serverSideHandshake();
    }
    ssize_t read(void *buf, size_t nbyte) override
    {
        ssize_t r = DcmTLSConnection::read(buf, nbyte);
        /* Re-arm only when the next read will go to the socket (nothing buffered). */
        if (g_quickack && r > 0 && !SSL_has_pending(ssl_)) {
            int one = 1;
            setsockopt(fd_, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
        }
        return r;
    }
    /* With read-ahead, decrypted-but-unread data is not all that can be buffered: a record
     * read from the socket but not yet decrypted counts too (SSL_has_pending, not
     * SSL_pending, which dcmtk uses), else dcmtk would wait on an idle socket for it. */
    OFBool networkDataAvailable(int timeout) override
    {
        if (SSL_has_pending(ssl_))
            return OFTrue;
        struct pollfd pfd = {fd_, POLLIN, 0};
        int r = poll(&pfd, 1, timeout * 1000);
        return r > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)) ? OFTrue : OFFalse;
    }
    SSL *ssl_;
    int fd_; /* getSocket() is protected in dcmtk */
    bool done_ = false;
};

class RpTlsLayer : public DcmTLSTransportLayer
{
  public:
    RpTlsLayer(T_ASC_NetworkRole role) : DcmTLSTransportLayer(role, NULL, OFFalse) {}
    DcmTransportConnection *createConnection(DcmNativeSocketType s, OFBool secure) override
    {
        if (secure && pending_ && pending_->fd_ == (int)s) {
            RpTlsConnection *c = pending_;
            pending_ = NULL;
            return c;
        }
        return DcmTLSTransportLayer::createConnection(s, secure);
    }
    RpTlsConnection *pending_ = NULL; /* guarded by the caller's hand-off mutex */
};

struct rp_tls {
    RpTlsLayer *layer;
    rp_tls_role role;
};

struct rp_tls_conn {
    RpTlsConnection *conn;
};

static const char *ssl_err_text(char *buf, size_t bufsz)
{
    unsigned long e = ERR_peek_last_error();
    if (e) {
        const char *r = ERR_reason_error_string(e);
        snprintf(buf, bufsz, "%s", r ? r : "openssl error");
    } else {
        snprintf(buf, bufsz, "no detail");
    }
    ERR_clear_error();
    return buf;
}

static int profile_of(const char *name, DcmTLSSecurityProfile *p)
{
    if (!name[0] || strcmp(name, "bcp195-nd") == 0)
        *p = TSP_Profile_BCP195_ND;
    else if (strcmp(name, "bcp195") == 0)
        *p = TSP_Profile_BCP195;
    else if (strcmp(name, "bcp195-ex") == 0)
        *p = TSP_Profile_BCP195_Extended;
    else
        return RP_EINVAL;
    return 0;
}

extern "C" const char *rp_tls_profile_describe(const char *profile)
{
    DcmTLSSecurityProfile p;
    if (profile_of(profile, &p) != 0)
        return NULL;
    switch (p) {
    case TSP_Profile_BCP195_ND:
        return "bcp195-nd(TLS1.2+,no-fallback)";
    case TSP_Profile_BCP195:
        return "bcp195(TLS1.0+,fallback)";
    default:
        return "bcp195-ex(TLS1.2-only)";
    }
}

extern "C" int rp_tls_new(const rp_conf *c, rp_tls_role role, rp_tls **out, char *err, size_t errsz)
{
    *out = NULL;
    if (errsz)
        err[0] = '\0';
    pthread_once(&g_once, init_once);
    DcmTLSSecurityProfile prof;
    if (profile_of(c->tls_profile, &prof) != 0) {
        snprintf(err, errsz, "[tls] profile %s: unknown", c->tls_profile);
        return RP_ECONF;
    }
    RpTlsLayer *l =
        new (std::nothrow) RpTlsLayer(role == RP_TLS_SERVER ? NET_ACCEPTOR : NET_REQUESTOR);
    if (!l)
        return RP_ENOMEM;
    char why[256];
    OFCondition cond;
    if (!*l) {
        snprintf(err, errsz, "cannot create the TLS context: %s", ssl_err_text(why, sizeof why));
        goto fail;
    }
    if ((cond = l->setTLSProfile(prof)).bad() || (cond = l->activateCipherSuites()).bad()) {
        snprintf(err, errsz, "[tls] profile %s: %s", c->tls_profile, cond.text());
        goto fail;
    }
    if (c->tls_key_passphrase_file[0]) {
        char pass[1024] = "";
        FILE *fp = fopen(c->tls_key_passphrase_file, "r");
        if (!fp) {
            snprintf(err, errsz, "[tls] key_passphrase_file %s: %s", c->tls_key_passphrase_file,
                     strerror(errno));
            goto fail;
        }
        if (!fgets(pass, sizeof pass, fp))
            pass[0] = '\0';
        fclose(fp);
        pass[strcspn(pass, "\r\n")] = '\0';
        l->setPrivateKeyPasswd(pass); /* dcmtk copies it */
        OPENSSL_cleanse(pass, sizeof pass);
    } else {
        l->setPrivateKeyPasswd(""); /* never prompt on a console for an encrypted key */
    }
    if (c->tls_cert[0] && (cond = l->setCertificateFile(c->tls_cert, DCF_Filetype_PEM)).bad()) {
        snprintf(err, errsz, "[tls] cert %s: %s", c->tls_cert, ssl_err_text(why, sizeof why));
        goto fail;
    }
    if (c->tls_key[0] && (cond = l->setPrivateKeyFile(c->tls_key, DCF_Filetype_PEM)).bad()) {
        snprintf(err, errsz, "[tls] key %s: %s", c->tls_key, ssl_err_text(why, sizeof why));
        goto fail;
    }
    if (c->tls_cert[0] && c->tls_key[0] && !l->checkPrivateKeyMatchesCertificate()) {
        snprintf(err, errsz, "[tls] key %s does not belong to cert %s", c->tls_key, c->tls_cert);
        goto fail;
    }
    if (c->tls_ca_file[0] &&
        (cond = l->addTrustedCertificateFile(c->tls_ca_file, DCF_Filetype_PEM)).bad()) {
        snprintf(err, errsz, "[tls] ca_file %s: %s", c->tls_ca_file, cond.text());
        goto fail;
    }
    if (c->tls_ca_dir[0] &&
        (cond = l->addTrustedCertificateDir(c->tls_ca_dir, DCF_Filetype_PEM)).bad()) {
        snprintf(err, errsz, "[tls] ca_dir %s: %s", c->tls_ca_dir, cond.text());
        goto fail;
    }
    /* A client always verifies the server; a server requires a client certificate unless
     * require_client_cert = no (then one that is presented must still verify). */
    l->setCertificateVerification(role == RP_TLS_CLIENT || c->tls_require_client_cert
                                      ? DCV_requireCertificate
                                      : DCV_checkCertificate);
    l->setBuiltInDHParameters(); /* the profiles' DHE suites need them */
    ERR_clear_error();
    *out = (rp_tls *)calloc(1, sizeof **out);
    if (!*out)
        goto fail;
    (*out)->layer = l;
    (*out)->role = role;
    return 0;
fail:
    delete l;
    ERR_clear_error();
    return *err ? RP_ECONF : RP_ENOMEM;
}

extern "C" void rp_tls_free(rp_tls *t)
{
    if (!t)
        return;
    delete t->layer;
    free(t);
}

extern "C" void *rp_tls_layer(rp_tls *t)
{
    return static_cast<DcmTransportLayer *>(t->layer);
}

static void fill_peer(SSL *ssl, rp_tls_peer *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->protocol, sizeof p->protocol, "%s", SSL_get_version(ssl));
    const char *cn = SSL_get_cipher_name(ssl);
    snprintf(p->cipher, sizeof p->cipher, "%s", cn ? cn : "");
    X509 *x = SSL_get1_peer_certificate(ssl);
    if (!x)
        return;
    BIO *b = BIO_new(BIO_s_mem());
    if (b) {
        X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
        int n = BIO_read(b, p->subject, (int)sizeof p->subject - 1);
        p->subject[n > 0 ? n : 0] = '\0';
        (void)BIO_reset(b);
        X509_NAME_print_ex(b, X509_get_issuer_name(x), 0, XN_FLAG_RFC2253);
        n = BIO_read(b, p->issuer, (int)sizeof p->issuer - 1);
        p->issuer[n > 0 ? n : 0] = '\0';
        BIO_free(b);
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (X509_digest(x, EVP_sha256(), md, &mdlen) == 1)
        for (unsigned i = 0; i < mdlen && i < 32; i++)
            snprintf(p->sha256 + 2 * i, 3, "%02x", md[i]);
    int days = 0, secs = 0;
    if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)))
        p->days_left = days;
    X509_free(x);
}

static void set_rcv_timeout(int fd, int s)
{
    struct timeval tv = {s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

extern "C" int rp_tls_accept(rp_tls *t, int fd, int timeout_s, rp_tls_conn **out, rp_tls_peer *peer,
                             char *why, size_t whysz)
{
    *out = NULL;
    memset(peer, 0, sizeof *peer);
    SSL *ssl = SSL_new(t->layer->getNativeHandle());
    if (!ssl)
        return RP_ENOMEM;
    SSL_set_fd(ssl, fd);
    set_rcv_timeout(fd, timeout_s > 0 ? timeout_s : 30);
    ERR_clear_error();
    errno = 0;
    int r = SSL_accept(ssl);
    rp_metrics_add(RP_M_TLS_HANDSHAKES, 1, r == 1 ? "ok" : "failed");
    if (r != 1) {
        int e = SSL_get_error(ssl, r);
        int saved = errno;
        long v = SSL_get_verify_result(ssl);
        char buf[200];
        if (v != X509_V_OK)
            snprintf(why, whysz, "TLS handshake failed: peer certificate: %s",
                     X509_verify_cert_error_string(v));
        else if (e == SSL_ERROR_SYSCALL && (saved == EAGAIN || saved == EWOULDBLOCK))
            snprintf(why, whysz, "TLS handshake timed out after %d s", timeout_s);
        else if (e == SSL_ERROR_SYSCALL || (e == SSL_ERROR_SSL && !ERR_peek_last_error()))
            snprintf(why, whysz, "TLS handshake failed: connection closed by peer");
        else
            snprintf(why, whysz, "TLS handshake failed: %s", ssl_err_text(buf, sizeof buf));
        ERR_clear_error();
        SSL_free(ssl); /* leaves fd open: the caller closes it */
        return (e == SSL_ERROR_SYSCALL && (saved == EAGAIN || saved == EWOULDBLOCK)) ? RP_ETIMEOUT
                                                                                     : RP_EREFUSED;
    }
    fill_peer(ssl, peer);
    /* Pull whole batches of records per read() (a 128 KB PDU is 8 records): fewer syscalls
     * on the C-STORE path. networkDataAvailable() above accounts for what it buffers. */
    if (!getenv("RP_TLS_NO_READ_AHEAD")) {
        SSL_set_default_read_buffer_len(ssl, 128 * 1024);
        SSL_set_read_ahead(ssl, 1);
    }
    rp_tls_conn *c = (rp_tls_conn *)calloc(1, sizeof *c);
    RpTlsConnection *conn = c ? new (std::nothrow) RpTlsConnection(fd, ssl) : NULL;
    if (!conn) {
        free(c);
        SSL_free(ssl);
        return RP_ENOMEM;
    }
    conn->done_ = true;
    c->conn = conn;
    *out = c;
    return 0;
}

extern "C" int rp_tls_wait_data(rp_tls_conn *c, int timeout_ms, unsigned char *first)
{
    SSL *ssl = c->conn->ssl_;
    if (!SSL_has_pending(ssl)) {
        struct pollfd pfd = {c->conn->fd_, POLLIN, 0};
        int r = poll(&pfd, 1, timeout_ms);
        if (r <= 0)
            return r < 0 && errno != EINTR ? RP_ENET : 0;
    }
    /* Readable: decrypt the next record (it may be a TLS 1.3 post-handshake message rather
     * than data; then wait again). The peek blocks at most the socket's receive timeout. */
    int n = SSL_peek(ssl, first, 1);
    if (n > 0)
        return 1;
    int e = SSL_get_error(ssl, n);
    ERR_clear_error();
    return (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) ? 0 : RP_ENET;
}

extern "C" void rp_tls_offer(rp_tls *t, rp_tls_conn *c)
{
    t->layer->pending_ = c->conn;
}

extern "C" int rp_tls_withdraw(rp_tls *t, rp_tls_conn *c)
{
    if (t->layer->pending_ == c->conn) {
        t->layer->pending_ = NULL;
        return 1;
    }
    return 0;
}

extern "C" void rp_tls_conn_free(rp_tls_conn *c)
{
    if (!c)
        return;
    delete c->conn; /* SSL_shutdown, SSL_free, close(fd) */
    free(c);
}

extern "C" void rp_tls_conn_forget(rp_tls_conn *c)
{
    free(c);
}

extern "C" int rp_tls_cert_days_left(const char *path, int *days)
{
    BIO *b = BIO_new_file(path, "r");
    if (!b)
        return RP_EPARSE;
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!x) {
        ERR_clear_error();
        return RP_EPARSE;
    }
    int d = 0, s = 0;
    int ok = ASN1_TIME_diff(&d, &s, NULL, X509_get0_notAfter(x));
    X509_free(x);
    if (!ok)
        return RP_EPARSE;
    *days = (d == 0 && s < 0) ? -1 : d;
    return 0;
}
