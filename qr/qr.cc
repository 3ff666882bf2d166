/*
 * qr/qr.cc — the dcmtk adapter: C-FIND, C-MOVE and C-GET through DcmSCU, translated into the
 * plain structs of qr/qr.h. Nothing here decides what to retrieve; plan.c and run.c do.
 *
 * Why a subclass: DcmSCU hands C-GET's incoming C-STORE to handleSTORERequestFile() with a
 * file name of its own; we give it a spool file of the store instead and commit it through
 * the sink before DcmSCU answers the C-STORE, so "success" means durable, as for radprepd.
 */
#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dctk.h"
#include "dcmtk/dcmnet/assoc.h"
#include "dcmtk/dcmnet/diutil.h"
#include "dcmtk/dcmnet/scu.h"
#include "dcmtk/oflog/oflog.h"

#include <stdio.h>
#include <string.h>

#include <mutex>
#include <string>

extern "C" {
#include "common/common.h"
#include "qr/qr.h"
}

#define MOD "qr"

namespace
{

std::once_flag g_log_once;

void quiet_dcmtk()
{
    /* dcmtk's own lines would interleave with ours on stderr; our messages carry the facts. */
    std::call_once(g_log_once, [] {
        OFLog::configure(rp_log_get_level() == RP_LOG_DEBUG ? OFLogger::INFO_LOG_LEVEL
                                                             : OFLogger::FATAL_LOG_LEVEL);
    });
}

void one_line(char *s)
{
    for (; *s; s++)
        if (*s == '\n' || *s == '\r' || *s == '\t')
            *s = ' ';
}

void set_res(rp_qr_result *res, rp_qr_outcome o, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void set_res(rp_qr_result *res, rp_qr_outcome o, int status, const char *fmt, ...)
{
    res->outcome = o;
    res->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->reason, sizeof res->reason, fmt, ap);
    va_end(ap);
    one_line(res->reason);
}

class QrSCU : public DcmSCU
{
  public:
    const rp_qr_get_sink *sink = nullptr;
    std::string store_fail; /* why the last C-GET instance was refused */

    OFCondition handleSTORERequestFile(T_ASC_PresentationContextID *presID,
                                       const OFString & /*filename*/,
                                       T_DIMSE_C_StoreRQ *request) override
    {
        char path[RP_PATH_MAX + 64], why[256] = "";
        if (!sink || sink->spool(sink->user, path, sizeof path) != 0) {
            store_fail = "cannot create a spool file";
            return EC_IllegalCall;
        }
        OFCondition c = DcmSCU::handleSTORERequestFile(presID, path, request);
        if (c.bad()) {
            store_fail = std::string("receiving the instance failed: ") + c.text();
            remove(path);
            return c;
        }
        if (sink->commit(sink->user, path, request->AffectedSOPClassUID,
                         request->AffectedSOPInstanceUID, why, sizeof why) != 0) {
            store_fail = why[0] ? why : "the store refused the instance";
            return makeOFCondition(0, 1, OF_error, store_fail.c_str());
        }
        return EC_Normal;
    }
};

/* Read the A-ASSOCIATE-RJ parameters, which DcmSCU only logs: ask again with a bare
 * Verification proposal through the ASC_ layer. */
std::string reject_reason(const rp_qr_peer *p)
{
    std::string text = "association rejected by the PACS";
    T_ASC_Network *net = NULL;
    T_ASC_Parameters *params = NULL;
    T_ASC_Association *assoc = NULL;
    char addr[300];
    snprintf(addr, sizeof addr, "%s:%d", p->host, p->port);
    const char *ts[] = {UID_LittleEndianImplicitTransferSyntax};
    if (ASC_initializeNetwork(NET_REQUESTOR, 0, p->acse_timeout_s > 0 ? p->acse_timeout_s : 30,
                              &net)
            .bad())
        return text;
    if (ASC_createAssociationParameters(&params, ASC_DEFAULTMAXPDU).good()) {
        ASC_setAPTitles(params, p->calling_ae, p->called_ae, NULL);
        ASC_setPresentationAddresses(params, "localhost", addr);
        ASC_addPresentationContext(params, 1, UID_VerificationSOPClass, ts, 1);
        OFCondition c = ASC_requestAssociation(net, params, &assoc);
        if (c == DUL_ASSOCIATIONREJECTED) {
            T_ASC_RejectParameters rej;
            ASC_getRejectParameters(params, &rej);
            OFString s;
            ASC_printRejectParameters(s, &rej);
            text = std::string("association rejected by the PACS: ") + s.c_str();
        } else if (c.good()) {
            ASC_releaseAssociation(assoc);
        }
        if (assoc)
            ASC_destroyAssociation(&assoc);
        else
            ASC_destroyAssociationParameters(&params);
    }
    ASC_dropNetwork(&net);
    return text;
}

void copy_str(DcmItem *ds, const DcmTagKey &tag, char *dst, size_t dstsz)
{
    OFString v;
    dst[0] = '\0';
    if (ds && ds->findAndGetOFStringArray(tag, v).good())
        rp_strlcpy(dst, v.c_str(), dstsz);
}

long long get_count(DcmItem *ds, const DcmTagKey &tag)
{
    OFString v;
    if (!ds || ds->findAndGetOFString(tag, v).bad() || v.empty())
        return -1;
    char *end;
    long long n = strtoll(v.c_str(), &end, 10);
    return (*end == '\0' || *end == ' ') && n >= 0 ? n : -1;
}

/* The Error Comment of a response's status detail, if the PACS gave one. */
std::string error_comment(const QRResponse *r)
{
    OFString v;
    if (r && r->m_statusDetail && r->m_statusDetail->findAndGetOFString(DCM_ErrorComment, v).good())
        return v.c_str();
    return "";
}

const char *level_word(rp_qr_level l)
{
    return l == RP_QR_STUDY ? "STUDY" : l == RP_QR_SERIES ? "SERIES" : "IMAGE";
}

} // namespace

struct rp_qr {
    QrSCU scu;
    rp_qr_peer peer;
    unsigned services;
    int broken; /* the association failed: abort instead of release */
};

extern "C" {

const char *rp_qr_outcome_name(rp_qr_outcome o)
{
    static const char *const names[] = {"ok",     "unreachable", "rejected", "no_context",
                                        "network", "failed",     "partial",  "canceled"};
    return (unsigned)o < sizeof names / sizeof names[0] ? names[o] : "?";
}

const char *rp_qr_status_text(int st, char *buf, size_t bufsz)
{
    const char *what;
    switch (st) {
    case -1:
        what = "no response";
        break;
    case 0x0000:
        what = "success";
        break;
    case 0x0122:
        what = "refused: SOP class not supported";
        break;
    case 0x0124:
        what = "refused: not authorized";
        break;
    case 0xA700:
    case 0xA701:
    case 0xA702:
        what = "refused: out of resources";
        break;
    case 0xA801:
        what = "refused: move destination unknown";
        break;
    case 0xA900:
        what = "identifier does not match SOP class";
        break;
    case 0xB000:
        what = "warning: sub-operations complete, one or more failures";
        break;
    case 0xFE00:
        what = "canceled";
        break;
    default:
        what = (st & 0xF000) == 0xC000 ? "failed: unable to process" : "failure";
    }
    snprintf(buf, bufsz, "0x%04X %s", st < 0 ? 0 : st, what);
    return buf;
}

void rp_qr_peer_from_conf(const rp_conf *c, const rp_conf_peer *p, rp_qr_peer *out)
{
    memset(out, 0, sizeof *out);
    rp_strlcpy(out->calling_ae, c->ae_title, sizeof out->calling_ae);
    rp_strlcpy(out->called_ae, p->ae_title, sizeof out->called_ae);
    rp_strlcpy(out->host, p->host, sizeof out->host);
    out->port = p->port;
    out->acse_timeout_s = c->acse_timeout_s;
    out->dimse_timeout_s = c->dimse_timeout_s > 600 ? c->dimse_timeout_s : 600;
    out->max_pdu = c->max_pdu;
}

int rp_qr_open(const rp_qr_peer *p, unsigned services, rp_qr **out, rp_qr_result *res)
{
    *out = NULL;
    memset(res, 0, sizeof *res);
    res->status = -1;
    quiet_dcmtk();
    rp_qr *q = new (std::nothrow) rp_qr;
    if (!q)
        return RP_ENOMEM;
    q->peer = *p;
    q->services = services;
    q->broken = 0;
    QrSCU &s = q->scu;
    s.setAETitle(p->calling_ae);
    s.setPeerAETitle(p->called_ae);
    s.setPeerHostName(p->host);
    s.setPeerPort((Uint16)p->port);
    s.setACSETimeout((Uint32)(p->acse_timeout_s > 0 ? p->acse_timeout_s : 30));
    s.setConnectionTimeout(p->acse_timeout_s > 0 ? p->acse_timeout_s : 30);
    s.setDIMSETimeout((Uint32)(p->dimse_timeout_s > 0 ? p->dimse_timeout_s : 600));
    s.setDIMSEBlockingMode(DIMSE_NONBLOCKING);
    s.setMaxReceivePDULength(p->max_pdu ? p->max_pdu : 131072);
    s.setVerbosePCMode(OFFalse);
    s.setProgressNotificationMode(OFFalse);

    OFList<OFString> ts;
    ts.push_back(UID_LittleEndianExplicitTransferSyntax);
    ts.push_back(UID_LittleEndianImplicitTransferSyntax);
    if (services & RP_QR_FIND)
        s.addPresentationContext(UID_FINDStudyRootQueryRetrieveInformationModel, ts);
    if (services & RP_QR_MOVE)
        s.addPresentationContext(UID_MOVEStudyRootQueryRetrieveInformationModel, ts);
    if (services & RP_QR_GET) {
        s.addPresentationContext(UID_GETStudyRootQueryRetrieveInformationModel, ts);
        /* We are the storage SCP on a C-GET association: propose the storage classes with
         * that role. Any syntax the PACS holds is welcome (we keep the bytes as sent). */
        OFList<OFString> sts;
        const char *all[] = {UID_LittleEndianExplicitTransferSyntax,
                             UID_LittleEndianImplicitTransferSyntax,
                             UID_JPEGProcess14SV1TransferSyntax,
                             UID_JPEGProcess1TransferSyntax,
                             UID_JPEGProcess2_4TransferSyntax,
                             UID_JPEGLSLosslessTransferSyntax,
                             UID_JPEGLSLossyTransferSyntax,
                             UID_JPEG2000LosslessOnlyTransferSyntax,
                             UID_JPEG2000TransferSyntax,
                             UID_RLELosslessTransferSyntax,
                             UID_DeflatedExplicitVRLittleEndianTransferSyntax,
                             UID_BigEndianExplicitTransferSyntax};
        for (const char *t : all)
            sts.push_back(t);
        /* 127 contexts at most besides the GET one (odd IDs 1..255). */
        for (int i = 0; i < numberOfDcmLongSCUStorageSOPClassUIDs && i < 120; i++)
            s.addPresentationContext(dcmLongSCUStorageSOPClassUIDs[i], sts, ASC_SC_ROLE_SCP);
        s.setStorageMode(DCMSCU_STORAGE_BIT_PRESERVING);
    }
    OFCondition c = s.initNetwork();
    if (c.good())
        c = s.negotiateAssociation();
    if (c.bad()) {
        int rc;
        if (c == DUL_ASSOCIATIONREJECTED) {
            std::string why = reject_reason(p);
            set_res(res, RP_QR_REJECTED, -1, "%s (%s@%s:%d)", why.c_str(), p->called_ae,
                    p->host, p->port);
            rc = RP_EREFUSED;
        } else if (c == NET_EC_NoAcceptablePresentationContexts) {
            set_res(res, RP_QR_NO_CONTEXT, -1,
                    "the PACS %s accepted none of the proposed services (%s%s%s)", p->called_ae,
                    services & RP_QR_FIND ? "find " : "", services & RP_QR_MOVE ? "move " : "",
                    services & RP_QR_GET ? "get" : "");
            rc = RP_EREFUSED;
        } else {
            set_res(res, RP_QR_UNREACHABLE, -1, "cannot associate with %s@%s:%d: %s",
                    p->called_ae, p->host, p->port, c.text());
            rc = RP_ENET;
        }
        RP_WARN(MOD, "association failed peer=%s host=%s port=%d outcome=%s reason=\"%s\"",
                p->called_ae, p->host, p->port, rp_qr_outcome_name(res->outcome), res->reason);
        delete q;
        return rc;
    }
    RP_DEBUG(MOD, "association accepted peer=%s host=%s port=%d services=%u", p->called_ae,
             p->host, p->port, services);
    *out = q;
    return 0;
}

void rp_qr_close(rp_qr *q)
{
    if (!q)
        return;
    if (q->scu.isConnected()) {
        if (q->broken)
            q->scu.abortAssociation();
        else
            q->scu.releaseAssociation();
    }
    delete q;
}

static T_ASC_PresentationContextID context_for(rp_qr *q, const char *sop, rp_qr_result *res)
{
    T_ASC_PresentationContextID id = q->scu.findAnyPresentationContextID(sop, "");
    if (id == 0)
        set_res(res, RP_QR_NO_CONTEXT, -1, "the PACS did not accept %s",
                dcmFindNameOfUID(sop, sop));
    return id;
}

/* A broken association (abort, timeout) after a request. */
static int net_fail(rp_qr *q, rp_qr_result *res, const char *what, OFCondition c)
{
    q->broken = 1;
    if (c == DUL_PEERABORTEDASSOCIATION)
        /* Some PACS (Orthanc among them) abort rather than answer an AE they do not serve. */
        set_res(res, RP_QR_NETWORK, -1,
                "%s: the PACS %s aborted the association (shutting down, or it does not "
                "accept %s from our AE title %s)",
                what, q->peer.called_ae, what, q->peer.calling_ae);
    else
        set_res(res, RP_QR_NETWORK, -1, "%s: association broke: %s", what, c.text());
    return RP_ENET;
}

int rp_qr_find(rp_qr *q, const rp_qr_keys *k, rp_qr_match **out, size_t *n, rp_qr_result *res)
{
    *out = NULL;
    *n = 0;
    memset(res, 0, sizeof *res);
    res->status = -1;
    T_ASC_PresentationContextID pc =
        context_for(q, UID_FINDStudyRootQueryRetrieveInformationModel, res);
    if (!pc)
        return RP_EREFUSED;

    DcmDataset query;
    query.putAndInsertString(DCM_QueryRetrieveLevel, level_word(k->level));
    /* Study-level keys are returned at every level (Study Root, relational-friendly). */
    query.putAndInsertString(DCM_PatientID, k->patient_id);
    query.putAndInsertString(DCM_PatientName, "");
    query.putAndInsertString(DCM_StudyInstanceUID, k->study_uid);
    query.putAndInsertString(DCM_StudyDate, k->study_date);
    query.putAndInsertString(DCM_StudyTime, "");
    query.putAndInsertString(DCM_AccessionNumber, k->accession);
    query.putAndInsertString(DCM_StudyDescription, k->study_description);
    if (k->level == RP_QR_STUDY) {
        query.putAndInsertString(DCM_ModalitiesInStudy, k->modality);
        query.putAndInsertString(DCM_NumberOfStudyRelatedSeries, "");
        query.putAndInsertString(DCM_NumberOfStudyRelatedInstances, "");
    } else {
        query.putAndInsertString(DCM_SeriesInstanceUID, k->series_uid);
        query.putAndInsertString(DCM_Modality, k->modality);
        query.putAndInsertString(DCM_SeriesDescription, k->series_description);
        query.putAndInsertString(DCM_BodyPartExamined, k->body_part);
        query.putAndInsertString(DCM_SeriesNumber, "");
        if (k->level == RP_QR_SERIES)
            query.putAndInsertString(DCM_NumberOfSeriesRelatedInstances, "");
        else
            query.putAndInsertString(DCM_SOPInstanceUID, "");
    }

    OFList<QRResponse *> rsp;
    OFCondition c = q->scu.sendFINDRequest(pc, &query, &rsp);
    size_t cap = 0, cnt = 0;
    rp_qr_match *m = NULL;
    int rc = 0, final_status = -1;
    std::string comment;
    for (OFListIterator(QRResponse *) it = rsp.begin(); it != rsp.end(); ++it) {
        QRResponse *r = *it;
        if (r->m_status == STATUS_Pending || r->m_status == STATUS_FIND_Pending_WarningUnsupportedOptionalKeys) {
            if (!r->m_dataset || rc)
                continue;
            if (cnt == cap) {
                size_t nc = cap ? cap * 2 : 64;
                rp_qr_match *p = (rp_qr_match *)realloc(m, nc * sizeof *m);
                if (!p) {
                    rc = RP_ENOMEM;
                    continue;
                }
                m = p;
                cap = nc;
            }
            rp_qr_match *x = &m[cnt++];
            memset(x, 0, sizeof *x);
            DcmDataset *d = r->m_dataset;
            copy_str(d, DCM_PatientID, x->patient_id, sizeof x->patient_id);
            copy_str(d, DCM_PatientName, x->patient_name, sizeof x->patient_name);
            copy_str(d, DCM_StudyInstanceUID, x->study_uid, sizeof x->study_uid);
            copy_str(d, DCM_StudyDate, x->study_date, sizeof x->study_date);
            copy_str(d, DCM_StudyTime, x->study_time, sizeof x->study_time);
            copy_str(d, DCM_AccessionNumber, x->accession, sizeof x->accession);
            copy_str(d, DCM_StudyDescription, x->study_description, sizeof x->study_description);
            copy_str(d, DCM_ModalitiesInStudy, x->modalities, sizeof x->modalities);
            x->study_series = get_count(d, DCM_NumberOfStudyRelatedSeries);
            x->study_instances = get_count(d, DCM_NumberOfStudyRelatedInstances);
            copy_str(d, DCM_SeriesInstanceUID, x->series_uid, sizeof x->series_uid);
            copy_str(d, DCM_Modality, x->modality, sizeof x->modality);
            copy_str(d, DCM_SeriesDescription, x->series_description,
                     sizeof x->series_description);
            copy_str(d, DCM_BodyPartExamined, x->body_part, sizeof x->body_part);
            long long sn = get_count(d, DCM_SeriesNumber);
            x->series_number = sn >= 0 && sn < 1000000000 ? (int)sn : -1;
            x->series_instances = get_count(d, DCM_NumberOfSeriesRelatedInstances);
            copy_str(d, DCM_SOPInstanceUID, x->sop_uid, sizeof x->sop_uid);
        } else {
            final_status = r->m_status;
            comment = error_comment(r);
        }
    }
    for (OFListIterator(QRResponse *) it = rsp.begin(); it != rsp.end(); ++it)
        delete *it;
    if (rc) {
        free(m);
        return rc;
    }
    if (c.bad() && final_status < 0) {
        free(m);
        return net_fail(q, res, "C-FIND", c);
    }
    res->status = final_status;
    if (final_status != STATUS_Success) {
        char st[96];
        set_res(res, final_status == 0xFE00 ? RP_QR_CANCELED : RP_QR_FAILED, final_status,
                "C-FIND %s%s%s", rp_qr_status_text(final_status, st, sizeof st),
                comment.empty() ? "" : ": ", comment.c_str());
        free(m);
        return RP_EREFUSED;
    }
    res->outcome = RP_QR_OK;
    *out = m;
    *n = cnt;
    return 0;
}

/* The final response of a retrieve into res; the return code of rp_qr_move/get. */
static int retrieve_result(rp_qr *q, const char *what, OFCondition c,
                           OFList<RetrieveResponse *> &rsp, rp_qr_result *res)
{
    RetrieveResponse *last = NULL;
    for (OFListIterator(RetrieveResponse *) it = rsp.begin(); it != rsp.end(); ++it)
        last = *it;
    int rc;
    if (!last || (c.bad() && last->m_status == STATUS_Pending)) {
        if (last) {
            res->completed = last->m_numberOfCompletedSubops;
            res->failed = last->m_numberOfFailedSubops;
            res->warning = last->m_numberOfWarningSubops;
            res->remaining = last->m_numberOfRemainingSubops;
        }
        rc = net_fail(q, res, what, c.bad() ? c : OFCondition(EC_IllegalCall));
        if (!q->scu.store_fail.empty())
            snprintf(res->reason + strlen(res->reason), sizeof res->reason - strlen(res->reason),
                     " (%s)", q->scu.store_fail.c_str());
    } else {
        int st = last->m_status;
        res->status = st;
        res->completed = last->m_numberOfCompletedSubops;
        res->failed = last->m_numberOfFailedSubops;
        res->warning = last->m_numberOfWarningSubops;
        res->remaining = last->m_numberOfRemainingSubops;
        std::string comment = error_comment(last);
        char stxt[96];
        rp_qr_status_text(st, stxt, sizeof stxt);
        if (st == STATUS_Success) {
            res->outcome = RP_QR_OK;
            rc = 0;
        } else if (st == STATUS_MOVE_Warning_SubOperationsCompleteOneOrMoreFailures) {
            set_res(res, RP_QR_PARTIAL, st,
                    "%s partial: %s (completed %d, failed %d, warning %d)%s%s", what, stxt,
                    res->completed, res->failed, res->warning, comment.empty() ? "" : ": ",
                    comment.c_str());
            rc = RP_EIO;
        } else {
            set_res(res, st == 0xFE00 ? RP_QR_CANCELED : RP_QR_FAILED, st, "%s %s%s%s", what,
                    stxt, comment.empty() ? "" : ": ", comment.c_str());
            rc = RP_EREFUSED;
        }
        if (rc && !q->scu.store_fail.empty())
            snprintf(res->reason + strlen(res->reason), sizeof res->reason - strlen(res->reason),
                     " (here: %s)", q->scu.store_fail.c_str());
        one_line(res->reason);
    }
    for (OFListIterator(RetrieveResponse *) it = rsp.begin(); it != rsp.end(); ++it)
        delete *it;
    return rc;
}

static void retrieve_ids(DcmDataset &ds, const char *study_uid, const char *series_uid)
{
    ds.putAndInsertString(DCM_QueryRetrieveLevel, series_uid && *series_uid ? "SERIES" : "STUDY");
    ds.putAndInsertString(DCM_StudyInstanceUID, study_uid);
    if (series_uid && *series_uid)
        ds.putAndInsertString(DCM_SeriesInstanceUID, series_uid);
}

int rp_qr_move(rp_qr *q, const char *dest_ae, const char *study_uid, const char *series_uid,
               rp_qr_result *res)
{
    memset(res, 0, sizeof *res);
    res->status = -1;
    T_ASC_PresentationContextID pc =
        context_for(q, UID_MOVEStudyRootQueryRetrieveInformationModel, res);
    if (!pc)
        return RP_EREFUSED;
    DcmDataset ds;
    retrieve_ids(ds, study_uid, series_uid);
    OFList<RetrieveResponse *> rsp;
    q->scu.store_fail.clear();
    OFCondition c = q->scu.sendMOVERequest(pc, dest_ae, &ds, &rsp);
    return retrieve_result(q, "C-MOVE", c, rsp, res);
}

int rp_qr_get(rp_qr *q, const char *study_uid, const char *series_uid, const rp_qr_get_sink *sink,
              rp_qr_result *res)
{
    memset(res, 0, sizeof *res);
    res->status = -1;
    T_ASC_PresentationContextID pc =
        context_for(q, UID_GETStudyRootQueryRetrieveInformationModel, res);
    if (!pc)
        return RP_EREFUSED;
    DcmDataset ds;
    retrieve_ids(ds, study_uid, series_uid);
    OFList<RetrieveResponse *> rsp;
    q->scu.sink = sink;
    q->scu.store_fail.clear();
    OFCondition c = q->scu.sendCGETRequest(pc, &ds, &rsp);
    q->scu.sink = NULL;
    return retrieve_result(q, "C-GET", c, rsp, res);
}

} /* extern "C" */
