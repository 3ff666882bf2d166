/*
 * outbox/sender.cc — DcmStorageSCU adapter: send files to one destination, classify each
 * outcome. Contract in outbox/outbox.h.
 */
#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dccodec.h"
#include "dcmtk/dcmdata/dcrledrg.h"
#include "dcmtk/dcmdata/dctk.h"
#include "dcmtk/dcmjpeg/djdecode.h"
#include "dcmtk/dcmjpls/djdecode.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/dcmlayer.h"
#include "dcmtk/dcmnet/dcmtrans.h"
#include "dcmtk/dcmnet/diutil.h"
#include "dcmtk/dcmnet/dstorscu.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <map>
#include <mutex>
#include <string>
#include <vector>

extern "C" {
#include "common/common.h"
#include "dicom/dicom.h"
#include "outbox/outbox.h"
#include "tls/tls.h"
}

#define MOD "sender"

/* DcmStorageSCU's own marker for "no accepted presentation context" (dstorscu.cc). */
#define RP_STORE_NO_PC 0xffff
#define RP_STORE_BAD_DATASET 0xfffe

namespace
{

std::once_flag g_codecs_once;

void register_codecs()
{
    /* Decoders let DcmStorageSCU decompress a file whose syntax the destination refuses. */
    std::call_once(g_codecs_once, [] {
        DcmRLEDecoderRegistration::registerCodecs();
        DJDecoderRegistration::registerCodecs();
        DJLSDecoderRegistration::registerCodecs();
    });
}

struct file_state {
    int processed = 0;
    int request_sent = 0;
    unsigned status = 0;
    int broke_association = 0; /* the C-STORE on which the association failed */
    std::string why;           /* why it was not sent, when it was not */
    /* No presentation context for it: the destination took its SOP class in another
     * transfer syntax (so the syntax is the problem, not the SOP class) ... */
    int sop_accepted = 0;
    std::string ts; /* ... and the file's own transfer syntax */
};

class TrackingSCU : public DcmStorageSCU
{
  public:
    std::map<std::string, file_state> *states = nullptr;
    volatile int *stop = nullptr;
    int responses = 0; /* C-STORE-RSPs received on the current association */
    int broken = 0;    /* the current association failed under a C-STORE */
    std::string broken_why;
    OFCondition broken_cond;
    /* DcmSCU keeps this protected (DcmTLSSCU's business); we reuse our own TLS layer. */
    OFCondition useTLS(DcmTransportLayer *l)
    {
        return useSecureConnection(l);
    }

    OFCondition sendSTORERequest(const T_ASC_PresentationContextID presID,
                                 const OFFilename &dicomFile, DcmDataset *dataset,
                                 Uint16 &rspStatusCode, const OFString &moveOriginatorAETitle,
                                 const Uint16 moveOriginatorMsgID) override
    {
        sent_called = 1;
        last = DcmStorageSCU::sendSTORERequest(presID, dicomFile, dataset, rspStatusCode,
                                               moveOriginatorAETitle, moveOriginatorMsgID);
        /* Errors about this one dataset (no context, cannot convert) leave the association
         * usable; anything else (peer abort, timeout, socket error) means it is gone. */
        if (last.bad() && last != DIMSE_NOVALIDPRESENTATIONCONTEXTID &&
            last != EC_CannotChangeRepresentation) {
            broken = 1;
            broken_why = last.text();
            broken_cond = last;
        }
        return last;
    }

  protected:
    OFCondition last;
    int sent_called = 0;

    void notifySOPInstanceToBeSent(const TransferEntry &) override
    {
        sent_called = 0;
        last = EC_Normal;
    }
    void notifySOPInstanceSent(const TransferEntry &e) override
    {
        auto it = states->find(std::string(e.Filename.getCharPointer()));
        if (it == states->end())
            return;
        file_state &f = it->second;
        f.processed = 1;
        f.request_sent = e.RequestSent ? 1 : 0;
        f.status = e.ResponseStatusCode;
        if (f.status == RP_STORE_NO_PC) {
            f.ts = e.TransferSyntaxUID.c_str();
            f.sop_accepted = findPresentationContextID(e.SOPClassUID, "") != 0;
        }
        if (e.RequestSent) {
            responses++;
        } else if (broken && sent_called) {
            f.broke_association = 1;
        } else {
            f.why = sent_called ? std::string("C-STORE could not be sent: ") + last.text()
                                : std::string("file could not be loaded for sending");
        }
        sent_called = 0;
        last = EC_Normal;
    }
    OFBool shouldStopAfterCurrentSOPInstance() override
    {
        /* stop on request, and once the association is gone (a dead connection would make
         * every later C-STORE fail one by one) */
        return (stop && *stop) || broken || !isConnected();
    }
};

/* Plain TCP connections of the sender: TCP_NODELAY, and TCP_QUICKACK re-armed after every
 * read, as the node does on its receiving sockets (scp/net.cc). A PACS whose C-STORE-RSP leaves
 * in more than one write() with Nagle on holds its second write until our ACK of the first;
 * Linux delays that ACK (~40 ms) while we only wait, so every instance would cost ~40 ms.
 * DcmSCU installs a transport layer only through useSecureConnection(); the layer below
 * hands out plain connections whatever it is asked for (the handshake of a DcmTCPConnection
 * does nothing). */
class QuickAckConnection : public DcmTCPConnection
{
  public:
    explicit QuickAckConnection(DcmNativeSocketType s) : DcmTCPConnection(s)
    {
        int one = 1;
        setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(s, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    }
    ssize_t read(void *buf, size_t nbyte) override
    {
        ssize_t r = DcmTCPConnection::read(buf, nbyte);
        if (r > 0)
            quickack();
        return r;
    }
    /* Sending right after receiving puts Linux back into delayed-ACK ("ping-pong") mode, and
     * the response to what we send is the very next thing we read: re-arm after writes too. */
    ssize_t write(void *buf, size_t nbyte) override
    {
        ssize_t r = DcmTCPConnection::write(buf, nbyte);
        if (r > 0)
            quickack();
        return r;
    }

  private:
    void quickack()
    {
        int one = 1;
        setsockopt(getSocket(), IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
    }
};

class QuickAckLayer : public DcmTransportLayer
{
  public:
    DcmTransportConnection *createConnection(DcmNativeSocketType s, OFBool) override
    {
        return new QuickAckConnection(s);
    }
};

DcmTransportLayer *quickack_layer()
{
    static QuickAckLayer layer; /* stateless, shared by every sender thread */
    return &layer;
}

void set_result(rp_sender_result *r, rp_send_outcome o, int status, const std::string &why)
{
    r->outcome = o;
    r->dimse_status = status;
    rp_strlcpy(r->reason, why.c_str(), sizeof r->reason);
}

/* What a C-STORE-RSP status means for the entry (PS3.4 B.2.3, PS3.7 C). */
void classify_status(unsigned st, rp_sender_result *r)
{
    char buf[128];
    if (st == STATUS_Success) {
        set_result(r, RP_SEND_DONE, (int)st, "");
        return;
    }
    if (st == STATUS_STORE_Warning_CoercionOfDataElements ||
        st == STATUS_STORE_Warning_ElementsDiscarded ||
        st == STATUS_STORE_Warning_DataSetDoesNotMatchSOPClass || st == 0x0107 || st == 0x0116) {
        snprintf(buf, sizeof buf, "stored with warning status 0x%04x", st);
        set_result(r, RP_SEND_DONE, (int)st, buf);
        return;
    }
    if ((st & 0xff00) == STATUS_STORE_Refused_OutOfResources) {
        snprintf(buf, sizeof buf, "refused: out of resources (0x%04x)", st);
        set_result(r, RP_SEND_RETRY, (int)st, buf);
        return;
    }
    if ((st & 0xff00) == STATUS_STORE_Error_DataSetDoesNotMatchSOPClass) {
        snprintf(buf, sizeof buf, "error: data set does not match SOP class (0x%04x)", st);
        set_result(r, RP_SEND_DEAD, (int)st, buf);
        return;
    }
    if ((st & 0xf000) == STATUS_STORE_Error_CannotUnderstand) {
        snprintf(buf, sizeof buf, "error: cannot understand (0x%04x)", st);
        set_result(r, RP_SEND_DEAD, (int)st, buf);
        return;
    }
    switch (st) {
    case STATUS_STORE_Refused_SOPClassNotSupported:
        set_result(r, RP_SEND_DEAD, (int)st, "refused: SOP class not supported (0x0122)");
        return;
    case STATUS_STORE_Refused_NotAuthorized:
        set_result(r, RP_SEND_DEAD, (int)st, "refused: not authorized (0x0124)");
        return;
    case 0x0111:
        set_result(r, RP_SEND_DEAD, (int)st, "refused: duplicate SOP instance (0x0111)");
        return;
    case STATUS_STORE_InvalidSOPClass:
    case STATUS_STORE_UnrecognizedOperation:
    case STATUS_STORE_MistypedArgument:
        snprintf(buf, sizeof buf, "failed: request not accepted (0x%04x)", st);
        set_result(r, RP_SEND_DEAD, (int)st, buf);
        return;
    case 0x0110:
        set_result(r, RP_SEND_RETRY_FEW, (int)st, "failed: processing failure (0x0110)");
        return;
    default:
        snprintf(buf, sizeof buf, "failed with status 0x%04x", st);
        set_result(r, RP_SEND_RETRY_FEW, (int)st, buf);
    }
}

/* DcmSCU logs the A-ASSOCIATE-RJ parameters only at debug level and keeps them private, so
 * ask again with a bare Verification proposal through the ASC_ layer and read them there.
 * Sets *permanent and a text such as "rejected-permanent by service-user: calling AE title
 * not recognized". */
void probe_reject(const rp_sender_dest *d, int acse_timeout, int *permanent, std::string &text)
{
    *permanent = 1;
    text = "association rejected";
    T_ASC_Network *net = NULL;
    T_ASC_Parameters *params = NULL;
    T_ASC_Association *assoc = NULL;
    char peer[300];
    snprintf(peer, sizeof peer, "%s:%d", d->host, d->port);
    const char *ts[] = {UID_LittleEndianImplicitTransferSyntax};
    if (ASC_initializeNetwork(NET_REQUESTOR, 0, acse_timeout, &net).bad())
        return;
    if (ASC_createAssociationParameters(&params, ASC_DEFAULTMAXPDU).good()) {
        ASC_setAPTitles(params, d->calling_ae, d->called_ae, NULL);
        ASC_setPresentationAddresses(params, "localhost", peer);
        ASC_addPresentationContext(params, 1, UID_VerificationSOPClass, ts, 1);
        OFCondition c = ASC_requestAssociation(net, params, &assoc);
        if (c == DUL_ASSOCIATIONREJECTED) {
            T_ASC_RejectParameters rej;
            ASC_getRejectParameters(params, &rej);
            *permanent = rej.result != ASC_RESULT_REJECTEDTRANSIENT;
            OFString s;
            ASC_printRejectParameters(s, &rej);
            /* one line: "Result: Rejected Permanent, Source: ..., Reason: ..." */
            std::string t = s.c_str();
            for (char &ch : t)
                if (ch == '\n' || ch == '\r')
                    ch = ' ';
            text = "association rejected: " + t;
        } else if (c.good()) {
            /* accepted now: it was transient after all */
            *permanent = 0;
            text = "association rejected, then accepted on retry";
            ASC_releaseAssociation(assoc);
        }
        if (assoc)
            ASC_destroyAssociation(&assoc);
        else
            ASC_destroyAssociationParameters(&params);
    }
    ASC_dropNetwork(&net);
}

/* An instance for which no accepted presentation context fits: say whether the destination
 * refused its SOP class, or took the class only in syntaxes we cannot convert the file to
 * (a compressed syntax without a decoder here, e.g. JPEG 2000: dcmtk has none). */
void no_context_result(const file_state &s, rp_sender_result *r)
{
    DcmXfer x(s.ts.c_str());
    const E_TransferSyntax from = x.getXfer();
    const int decodable =
        !x.isEncapsulated() || DcmCodecList::canChangeCoding(from, EXS_LittleEndianImplicit);
    std::string name = x.getXferName();
    if (s.sop_accepted) {
        set_result(r, RP_SEND_DEAD, -1,
                   "destination accepts this SOP class only in other transfer syntaxes and the "
                   "file's (" +
                       name + ") cannot be converted to them" +
                       (decodable ? "" : " (no decoder for it here)"));
        return; /* a substitute of another SOP class would not help */
    }
    set_result(r, RP_SEND_DEAD, -1,
               decodable ? "destination accepted no presentation context for this SOP class / "
                           "transfer syntax"
                         : "destination accepted no presentation context for this SOP class in "
                           "the file's transfer syntax (" +
                               name + "), and it cannot be decompressed here to offer others");
    r->sop_refused = 1; /* the outbox may send a substitute it accepts */
}

long long file_bytes(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (long long)st.st_size : 0;
}

} // namespace

extern "C" const char *rp_send_outcome_name(rp_send_outcome o)
{
    switch (o) {
    case RP_SEND_DONE:
        return "done";
    case RP_SEND_RETRY:
        return "retry";
    case RP_SEND_RETRY_FEW:
        return "retry-few";
    case RP_SEND_DEAD:
        return "dead";
    }
    return "?";
}

extern "C" int rp_sender_file_uid(const char *path, char *uid, size_t uidsz)
{
    rp_dcm_ref ref;
    if (rp_dcm_read_ref(path, &ref, NULL, 0) != 0)
        return RP_EPARSE;
    if (!ref.sop_instance_uid[0] || strstr(ref.sop_instance_uid, "..")) /* "...": too long */
        return RP_EUID;
    return rp_strlcpy(uid, ref.sop_instance_uid, uidsz) ? RP_EUID : 0;
}

extern "C" int rp_sender_send(const rp_sender_dest *d, const char *const *files, size_t n,
                              rp_sender_result *results, volatile int *stop, rp_sender_stats *stats)
{
    double t0 = rp_mono_s();
    if (stats)
        memset(stats, 0, sizeof *stats);
    if (!d || !d->host || !*d->host || d->port <= 0 || d->port > 65535 || !d->called_ae ||
        !d->calling_ae || (n && (!files || !results)))
        return RP_EINVAL;
    for (size_t i = 0; i < n; i++)
        set_result(&results[i], RP_SEND_RETRY, -1, "not sent");
    if (n == 0)
        return 0;
    register_codecs();

    const int connect_to = d->connect_timeout_s > 0 ? d->connect_timeout_s : 10;
    const int acse_to = d->acse_timeout_s > 0 ? d->acse_timeout_s : 30;
    const int dimse_to = d->dimse_timeout_s > 0 ? d->dimse_timeout_s : 60;
    char qh[300];
    rp_log_kv_quote(d->host, qh, sizeof qh);

    std::map<std::string, file_state> states;
    std::map<std::string, size_t> index;
    TrackingSCU scu;
    scu.states = &states;
    scu.stop = stop;
    scu.setAETitle(d->calling_ae);
    scu.setPeerAETitle(d->called_ae);
    scu.setPeerHostName(d->host);
    scu.setPeerPort((Uint16)d->port);
    scu.setMaxReceivePDULength(d->max_pdu ? d->max_pdu : 65536);
    scu.setConnectionTimeout(connect_to);
    scu.setACSETimeout((Uint32)acse_to);
    scu.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
    scu.setDIMSETimeout((Uint32)dimse_to);
    /* a destination that refuses our syntax gets the pixels decompressed (lossy files too:
     * decoding adds no loss, and the alternative is not sending at all) */
    scu.setDecompressionMode(DcmStorageSCU::DM_lossyAndLossless);
    scu.setDatasetConversionMode(OFTrue); /* DcmSCU converts only when asked to */
    scu.setHaltOnUnsuccessfulStoreMode(OFFalse);
    scu.setHaltOnInvalidFileMode(OFFalse);

    size_t added = 0;
    for (size_t i = 0; i < n; i++) {
        OFCondition c = scu.addDicomFile(files[i], ERM_fileOnly, OFTrue);
        if (c.bad()) {
            set_result(&results[i], RP_SEND_DEAD, -1, std::string("cannot be sent: ") + c.text());
            RP_WARN(MOD, "file cannot be sent path=%s reason=\"%s\"", files[i], c.text());
            continue;
        }
        states[files[i]] = file_state();
        index[files[i]] = i;
        added++;
    }
    if (added == 0)
        return 0;

    int rc = 0;
    int net_ready = 0;
    OFCondition c;
    std::string assoc_fail;
    rp_send_outcome assoc_outcome = RP_SEND_RETRY;
    int no_context = 0; /* every proposed SOP class / syntax refused at negotiation */
    for (;;) {
        c = scu.addPresentationContexts();
        if (c == NET_EC_NoPresentationContextsDefined)
            break; /* every file has been handled */
        if (c.bad()) {
            assoc_fail = std::string("cannot propose presentation contexts: ") + c.text();
            assoc_outcome = RP_SEND_DEAD;
            rc = RP_EUNSUPPORTED;
            break;
        }
        if (!net_ready) {
            /* needs the presentation contexts of the first association */
            c = scu.initNetwork();
            if (c.bad()) {
                assoc_fail = std::string("cannot initialise network: ") + c.text();
                rc = RP_ENET;
                break;
            }
            /* TLS with our node certificate, trusting [tls] ca_file/ca_dir; DcmSCU wants it
             * after initNetwork() (it sets the network's layer and the parameters' flag). */
            if (d->tls && (c = scu.useTLS((DcmTransportLayer *)rp_tls_layer(d->tls))).bad()) {
                assoc_fail = std::string("cannot enable TLS: ") + c.text();
                rc = RP_ENET;
                break;
            }
            if (!d->tls)
                scu.useTLS(quickack_layer()); /* plain TCP, quick ACKs (see QuickAckLayer) */
            net_ready = 1;
        }
        c = scu.negotiateAssociation();
        if (c.bad()) {
            if (c == DUL_ASSOCIATIONREJECTED) {
                int permanent = 1;
                probe_reject(d, acse_to, &permanent, assoc_fail);
                assoc_outcome = permanent ? RP_SEND_DEAD : RP_SEND_RETRY;
                rc = permanent ? RP_EREFUSED : RP_EBUSY;
            } else if (c == NET_EC_NoAcceptablePresentationContexts) {
                assoc_fail = "destination accepted none of the proposed presentation contexts "
                             "(SOP class / transfer syntax)";
                assoc_outcome = RP_SEND_DEAD;
                no_context = 1;
                rc = 0;
            } else {
                std::string t = c.text();
                assoc_fail = "cannot connect: " + t;
                assoc_outcome = RP_SEND_RETRY;
                rc = (t.find("imeout") != std::string::npos ||
                      t.find("imed out") != std::string::npos)
                         ? RP_ETIMEOUT
                         : RP_ENET;
            }
            break;
        }
        if (stats)
            stats->associations++;
        scu.responses = 0;
        scu.broken = 0;
        scu.broken_cond = EC_Normal;
        c = scu.sendSOPInstances();
        if (c.bad() || scu.broken || !scu.isConnected()) {
            if (scu.broken && c.good())
                c = makeOFCondition(0, 0, OF_error, scu.broken_why.c_str());
            /* Drop the connection without the A-ABORT handshake: dcmtk would wait up to the
             * ACSE timeout for a peer that stopped answering to close its side. */
            if (scu.isConnected())
                scu.closeAssociation(DCMSCU_PEER_ABORTED_ASSOCIATION);
            const int timed_out = scu.broken && scu.broken_cond == DIMSE_NODATAAVAILABLE;
            if (scu.responses == 0 && scu.broken && !timed_out) {
                /* Accepted, then dropped (A-ABORT, or the socket closed under our write) at
                 * our first C-STORE without an answer: how some SCPs (Orthanc with
                 * DicomAlwaysAllowStore=false) refuse an unknown calling AE. Retried a few
                 * times (it may also be a crash), then dead. */
                assoc_fail = std::string("peer aborted the association at the first C-STORE "
                                         "without answering (does it accept calling AE '") +
                             d->calling_ae + "'?)";
                assoc_outcome = RP_SEND_RETRY_FEW;
                rc = RP_EPERM;
            } else {
                assoc_fail = c.bad() ? std::string("association failed while sending: ") + c.text()
                                     : std::string("association ended while sending");
                assoc_outcome = RP_SEND_RETRY;
                rc = timed_out ? RP_ETIMEOUT : RP_ENET;
            }
            break;
        }
        scu.releaseAssociation();
        if (stop && *stop) {
            rc = RP_ECANCELED;
            assoc_fail = "stopped before sending";
            break;
        }
    }
    if (scu.isConnected())
        scu.abortAssociation();

    int busy = 0;
    for (auto &kv : states) {
        size_t i = index[kv.first];
        const file_state &s = kv.second;
        rp_sender_result *r = &results[i];
        if (s.processed && s.request_sent) {
            if (s.status == RP_STORE_NO_PC)
                no_context_result(s, r);
            else if (s.status == RP_STORE_BAD_DATASET)
                set_result(r, RP_SEND_DEAD, -1, "dataset could not be read");
            else
                classify_status(s.status, r);
            if ((s.status & 0xff00) == STATUS_STORE_Refused_OutOfResources)
                busy = 1;
        } else if (s.processed && !s.broke_association) {
            /* the association was fine but this instance could not be sent: its file could
             * not be read, or not converted to an accepted transfer syntax */
            set_result(r, RP_SEND_RETRY_FEW, -1, s.why);
        } else {
            set_result(r, assoc_fail.empty() ? RP_SEND_RETRY : assoc_outcome, -1,
                       assoc_fail.empty() ? "not sent" : assoc_fail);
            r->sop_refused = no_context; /* the outbox may send a substitute it accepts */
        }
        if (r->outcome == RP_SEND_DONE) {
            if (stats) {
                stats->sent++;
                stats->bytes += file_bytes(kv.first.c_str());
            }
        } else if (stats) {
            stats->failed++;
        }
    }
    if (rc == 0 && busy)
        rc = RP_EBUSY;
    if (stats)
        stats->seconds = rp_mono_s() - t0;
    if (!assoc_fail.empty()) {
        char q[300];
        rp_log(rc == RP_EREFUSED || assoc_outcome == RP_SEND_DEAD ? RP_LOG_ERROR : RP_LOG_WARN, MOD,
               "send failed host=%s port=%d called_ae=%s files=%zu outcome=%s reason=%s", qh,
               d->port, d->called_ae, added, rp_send_outcome_name(assoc_outcome),
               rp_log_kv_quote(assoc_fail.c_str(), q, sizeof q));
    }
    return rc;
}
