/* dicom/header.cc — header reads (index meta, references, the header as bytes), all up to
 * Pixel Data. The contract is in dicom/dicom.h. */
#include "dicom/dicom.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcistrmf.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcostrmb.h>
#include <dcmtk/dcmdata/dcvr.h>
#include <dcmtk/dcmdata/dcxfer.h>

#include <dcmtk/oflog/oflog.h>

#include "common/common.h"
#include "dicom/guard_internal.h"

/* Copy an attribute's first value into dst, trimmed of DICOM padding. Empty when absent.
 * A value too long for dst is cut; for UIDs see get_uid(). Returns false when cut. */
static bool get_str(DcmItem *ds, const DcmTagKey &tag, char *dst, size_t dstsz, bool whole = false)
{
    dst[0] = '\0';
    OFString v;
    OFCondition c = whole ? ds->findAndGetOFStringArray(tag, v) : ds->findAndGetOFString(tag, v);
    if (c.bad())
        return true;
    size_t n = v.length();
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\0'))
        n--;
    size_t start = 0;
    while (start < n && v[start] == ' ')
        start++;
    n -= start;
    bool whole_fit = n < dstsz;
    if (n >= dstsz)
        n = dstsz - 1;
    memcpy(dst, v.c_str() + start, n);
    dst[n] = '\0';
    return whole_fit;
}

/* A UID longer than 64 characters must never be cut into a valid-looking shorter one:
 * mark it so that UID validation fails ("...") and the log shows its beginning. */
static void get_uid(DcmItem *ds, const DcmTagKey &tag, char *dst, size_t dstsz)
{
    if (!get_str(ds, tag, dst, dstsz) && dstsz > 4)
        memcpy(dst + dstsz - 4, "...", 4);
}

static int get_int(DcmItem *ds, const DcmTagKey &tag, int dflt)
{
    OFString v;
    if (ds->findAndGetOFString(tag, v).bad() || v.empty())
        return dflt;
    char *end = NULL;
    long x = strtol(v.c_str(), &end, 10);
    if (end == v.c_str())
        return dflt;
    if (x > 0x7fffffffL || x < -0x7fffffffL)
        return dflt;
    return (int)x;
}

static int get_us(DcmItem *ds, const DcmTagKey &tag, int dflt)
{
    Uint16 u = 0;
    if (ds->findAndGetUint16(tag, u).good())
        return (int)u;
    return get_int(ds, tag, dflt);
}

static double get_double(DcmItem *ds, const DcmTagKey &tag, double dflt)
{
    OFString v;
    if (!ds || ds->findAndGetOFString(tag, v).bad() || v.empty())
        return dflt;
    char *end = NULL;
    double x = strtod(v.c_str(), &end);
    return end == v.c_str() ? dflt : x;
}

/* dcmdata warns on every header-only read ("PixelData encountered, skipping rest"): that
 * is the point of reading the header only, so keep dcmdata to errors unless debugging. */
static void quiet_dcmdata(void)
{
    static const bool done =
        [] { /* C++11: initialised once, thread-safe */
             if (rp_log_get_level() != RP_LOG_DEBUG)
                 OFLog::getLogger("dcmtk.dcmdata").setLogLevel(OFLogger::ERROR_LOG_LEVEL);
             /* VR UN elements (from nodes that did not know them) read with the VR of the
              * data dictionary, so that the index sees their values */
             dcmEnableUnknownVRConversion.set(OFTrue);
             return true;
        }();
    (void)done;
}

/* The first item of sequence `tag` in `it`, or NULL. */
static DcmItem *first_item(DcmItem *it, const DcmTagKey &tag)
{
    DcmItem *out = NULL;
    if (!it || it->findAndGetSequenceItem(tag, out, 0).bad())
        return NULL;
    return out;
}

/* What a [fusion] rule matches a series on, read as the pixel reader does (dicom/decode.cc):
 * top-level TR/TE/TI; in an enhanced MR object TR from the shared MR timing group and TE,
 * when the top level has none, from the first frame's (else the shared) MR echo group. */
static void read_sequence_attrs(DcmItem *ds, rp_dcm_meta *m)
{
    get_str(ds, DCM_ProtocolName, m->protocol_name, sizeof m->protocol_name);
    m->repetition_time = get_double(ds, DCM_RepetitionTime, -1.0);
    m->echo_time = get_double(ds, DCM_EchoTime, -1.0);
    m->inversion_time = get_double(ds, DCM_InversionTime, -1.0);
    DcmItem *shared = first_item(ds, DCM_SharedFunctionalGroupsSequence);
    DcmItem *frame0 = first_item(ds, DCM_PerFrameFunctionalGroupsSequence);
    double tr = get_double(first_item(shared, DCM_MRTimingAndRelatedParametersSequence),
                           DCM_RepetitionTime, -1.0);
    if (tr >= 0)
        m->repetition_time = tr;
    if (m->echo_time < 0 && (shared || frame0)) {
        double te = get_double(first_item(frame0, DCM_MREchoSequence), DCM_EffectiveEchoTime, -1.0);
        if (te < 0)
            te = get_double(first_item(shared, DCM_MREchoSequence), DCM_EffectiveEchoTime, -1.0);
        m->echo_time = te;
    }
}

static void set_reason(char *reason, size_t reasonsz, const char *what, const OFCondition &c)
{
    if (!reason || !reasonsz)
        return;
    snprintf(reason, reasonsz, "%s: %s", what, c.text());
    for (char *p = reason; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ';';
}

/* Load the header of `path` up to Pixel Data. Values above 4 KB stay on disk (loaded lazily
 * if ever asked for): the header of any instance then costs about the same, whatever
 * private blobs it carries. RP_EPARSE with a reason when dcmtk cannot parse it or the
 * dataset is empty. */
static int load_header(DcmFileFormat &ff, const char *path, char *reason, size_t reasonsz)
{
    quiet_dcmdata();
    int grc = rp_dcm_guard(path, reason, reasonsz);
    if (grc)
        return RP_EPARSE;
    OFCondition c =
        ff.loadFileUntilTag(path, EXS_Unknown, EGL_noChange, 4096, ERM_autoDetect, DCM_PixelData);
    if (c.bad()) {
        set_reason(reason, reasonsz, "dcmtk cannot parse the header", c);
        return RP_EPARSE;
    }
    DcmDataset *ds = ff.getDataset();
    if (ds)
        rp_dcm_to_utf8(ds);
    if (!ds || ds->card() == 0) {
        if (reason && reasonsz)
            snprintf(reason, reasonsz, "empty dataset");
        return RP_EPARSE;
    }
    return 0;
}

static void meta_init(rp_dcm_meta *m, char *reason, size_t reasonsz)
{
    if (reason && reasonsz)
        reason[0] = '\0';
    memset(m, 0, sizeof(*m));
    m->series_number = m->instance_number = -1;
    m->number_of_frames = 1;
    m->images_in_acquisition = m->number_of_temporal_positions = -1;
    m->number_of_slices = m->acquisition_number = -1;
    m->slice_thickness = -1.0;
    m->repetition_time = m->echo_time = m->inversion_time = -1.0;
}

static void meta_fill(DcmFileFormat &ff, rp_dcm_meta *m);

extern "C" int rp_dcm_read_meta(const char *path, rp_dcm_meta *m, char *reason, size_t reasonsz)
{
    meta_init(m, reason, reasonsz);
    struct stat st;
    if (stat(path, &st) != 0) {
        if (reason)
            snprintf(reason, reasonsz, "cannot stat: %s", strerror(errno));
        return errno == ENOENT ? RP_ENOENT : RP_EIO;
    }
    m->file_size = (long long)st.st_size;

    DcmFileFormat ff;
    int rc = load_header(ff, path, reason, reasonsz);
    if (rc != 0)
        return rc;
    meta_fill(ff, m);
    return 0;
}

/* One anonymous in-memory file per thread, kept for the thread's life: a receiving thread
 * parses one header per instance, and a fresh memfd each time cost its creation and the
 * faults of its pages (a 64 KB CT header, 2000 calls: 59.5 -> 45.5 us each). Its size is
 * set to exactly len, so the reader sees the end where the bytes end. Returns the fd (the
 * thread's: do not close it) or -1 with a reason. */
namespace {
struct thread_memfd {
    int fd = -1;
    size_t size = 0;
    ~thread_memfd()
    {
        if (fd >= 0)
            close(fd);
    }
};
thread_local thread_memfd t_memfd;
} // namespace

static int meta_memfd(const void *buf, size_t len, char *reason, size_t reasonsz)
{
    thread_memfd &t = t_memfd;
    if (t.fd < 0) {
        t.fd = memfd_create("rp_dcm_meta", MFD_CLOEXEC);
        t.size = 0;
        if (t.fd < 0) {
            if (reason && reasonsz)
                snprintf(reason, reasonsz, "memfd_create: %s", strerror(errno));
            return -1;
        }
    }
    if (t.size != len) {
        if (ftruncate(t.fd, (off_t)len) != 0) {
            if (reason && reasonsz)
                snprintf(reason, reasonsz, "resize memfd: %s", strerror(errno));
            return -1;
        }
        t.size = len;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = pwrite(t.fd, (const char *)buf + off, len - off, (off_t)off);
        if (w <= 0) {
            if (reason && reasonsz)
                snprintf(reason, reasonsz, "write to memfd: %s", strerror(errno));
            close(t.fd);
            t.fd = -1; /* a fresh one next time */
            return -1;
        }
        off += (size_t)w;
    }
    return t.fd;
}

extern "C" int rp_dcm_read_meta_mem(const void *buf, size_t len, long long file_size,
                                    rp_dcm_meta *m, char *reason, size_t reasonsz)
{
    meta_init(m, reason, reasonsz);
    m->file_size = file_size;
    quiet_dcmdata();
    int grc = rp_dcm_guard_mem(buf, len, reason, reasonsz);
    if (grc == RP_EPARSE && (long long)len < file_size) {
        if (reason && reasonsz)
            snprintf(reason, reasonsz, "header goes on past the first %zu bytes", len);
        return RP_EPARSE;
    }
    if (grc)
        return RP_EPARSE;
    /* dcmtk reads the bytes as a file (an anonymous one in memory): from a memory stream it
     * would load every value at once, allocating whatever length an element declares (4 GB
     * from a 16-byte dataset, or through a meta header that dcmtk reads further than the
     * guard can follow); from a file it checks a length against the bytes left and leaves
     * long values unread. The fd stays open while the values are read. */
    int fd = meta_memfd(buf, len, reason, reasonsz);
    if (fd < 0)
        return RP_EIO;
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    DcmInputFileStream in(path);
    DcmFileFormat ff;
    ff.transferInit();
    OFCondition c = in.status().good()
                        ? ff.readUntilTag(in, EXS_Unknown, EGL_noChange, 4096, DCM_PixelData)
                        : in.status();
    ff.transferEnd();
    DcmDataset *ds = ff.getDataset();
    int rc = 0;
    /* Stopping at Pixel Data leaves bytes unread; a part of a file that was read to its end
     * (or cut inside an element) did not reach the end of the header. */
    if ((long long)len < file_size && (c.bad() || in.eos())) {
        if (reason && reasonsz)
            snprintf(reason, reasonsz, "header goes on past the first %zu bytes", len);
        rc = RP_EPARSE;
    } else if (c.bad()) {
        set_reason(reason, reasonsz, "dcmtk cannot parse the header", c);
        rc = RP_EPARSE;
    } else if (!ds || ds->card() == 0) {
        if (reason && reasonsz)
            snprintf(reason, reasonsz, "empty dataset");
        rc = RP_EPARSE;
    } else {
        meta_fill(ff, m);
    }
    return rc;
}

static void meta_fill(DcmFileFormat &ff, rp_dcm_meta *m)
{
    DcmDataset *ds = ff.getDataset();
    DcmMetaInfo *mi = ff.getMetaInfo();

    get_str(ds, DCM_PatientID, m->patient_id, sizeof m->patient_id);
    get_str(ds, DCM_IssuerOfPatientID, m->issuer_of_patient_id, sizeof m->issuer_of_patient_id);
    get_str(ds, DCM_PatientName, m->patient_name, sizeof m->patient_name, true);
    get_str(ds, DCM_PatientBirthDate, m->patient_birth_date, sizeof m->patient_birth_date);
    get_str(ds, DCM_PatientSex, m->patient_sex, sizeof m->patient_sex);
    get_uid(ds, DCM_StudyInstanceUID, m->study_uid, sizeof m->study_uid);
    get_str(ds, DCM_StudyDate, m->study_date, sizeof m->study_date);
    get_str(ds, DCM_StudyTime, m->study_time, sizeof m->study_time);
    get_str(ds, DCM_AccessionNumber, m->accession_number, sizeof m->accession_number);
    get_str(ds, DCM_StudyDescription, m->study_description, sizeof m->study_description);
    get_uid(ds, DCM_SeriesInstanceUID, m->series_uid, sizeof m->series_uid);
    get_str(ds, DCM_Modality, m->modality, sizeof m->modality);
    m->series_number = get_int(ds, DCM_SeriesNumber, -1);
    get_str(ds, DCM_SeriesDescription, m->series_description, sizeof m->series_description);
    get_str(ds, DCM_BodyPartExamined, m->body_part, sizeof m->body_part);
    get_uid(ds, DCM_FrameOfReferenceUID, m->frame_of_reference_uid,
            sizeof m->frame_of_reference_uid);
    get_uid(ds, DCM_SOPClassUID, m->sop_class_uid, sizeof m->sop_class_uid);
    get_uid(ds, DCM_SOPInstanceUID, m->sop_instance_uid, sizeof m->sop_instance_uid);
    m->instance_number = get_int(ds, DCM_InstanceNumber, -1);
    m->number_of_frames = get_int(ds, DCM_NumberOfFrames, 1);
    if (m->number_of_frames < 1)
        m->number_of_frames = 1;
    m->images_in_acquisition = get_int(ds, DCM_ImagesInAcquisition, -1);
    m->number_of_temporal_positions = get_int(ds, DCM_NumberOfTemporalPositions, -1);
    m->number_of_slices = get_us(ds, DCM_NumberOfSlices, -1);
    m->acquisition_number = get_int(ds, DCM_AcquisitionNumber, -1);
    m->slice_thickness = get_double(ds, DCM_SliceThickness, -1.0);
    read_sequence_attrs(ds, m);

    /* The transfer syntax the bytes are in: the meta header says it; a raw dataset has
     * none, so take what the parser detected. */
    if (mi)
        get_str(mi, DCM_TransferSyntaxUID, m->transfer_syntax_uid, sizeof m->transfer_syntax_uid);
    if (!m->transfer_syntax_uid[0]) {
        DcmXfer x(ds->getOriginalXfer());
        if (x.getXfer() != EXS_Unknown)
            rp_strlcpy(m->transfer_syntax_uid, x.getXferID(), sizeof m->transfer_syntax_uid);
    }
}

extern "C" int rp_dcm_read_ref(const char *path, rp_dcm_ref *r, char *reason, size_t reasonsz)
{
    if (reason && reasonsz)
        reason[0] = '\0';
    memset(r, 0, sizeof(*r));
    DcmFileFormat ff;
    int rc = load_header(ff, path, reason, reasonsz);
    if (rc != 0)
        return rc;
    DcmDataset *ds = ff.getDataset();
    get_uid(ds, DCM_SOPClassUID, r->sop_class_uid, sizeof r->sop_class_uid);
    get_uid(ds, DCM_SOPInstanceUID, r->sop_instance_uid, sizeof r->sop_instance_uid);
    get_uid(ds, DCM_SeriesInstanceUID, r->series_uid, sizeof r->series_uid);
    get_uid(ds, DCM_StudyInstanceUID, r->study_uid, sizeof r->study_uid);
    r->has_ipp = 1;
    for (int i = 0; i < 3; i++) {
        Float64 v = 0;
        if (ds->findAndGetFloat64(DCM_ImagePositionPatient, v, (unsigned long)i).bad()) {
            r->has_ipp = 0;
            v = 0;
        }
        r->ipp[i] = v;
    }
    return 0;
}

extern "C" int rp_dcm_read_header_bytes(const char *path, void **bytes, size_t *nbytes,
                                        char *reason, size_t reasonsz)
{
    *bytes = NULL;
    *nbytes = 0;
    if (reason && reasonsz)
        reason[0] = '\0';
    DcmFileFormat ff;
    int rc = load_header(ff, path, reason, reasonsz);
    if (rc != 0)
        return rc;
    DcmDataset *ds = ff.getDataset();
    const E_TransferSyntax xfer = EXS_LittleEndianExplicit;
    /* Lengths are computed (and big values loaded from the file) before anything is written,
     * so the buffer is exactly the dataset. */
    Uint32 len = ds->calcElementLength(xfer, EET_ExplicitLength);
    if (len == 0 || len == DCM_UndefinedLength) {
        if (reason && reasonsz)
            snprintf(reason, reasonsz, "header cannot be encoded (length %lu)", (unsigned long)len);
        return RP_EPARSE;
    }
    void *buf = malloc(len);
    if (!buf)
        return RP_ENOMEM;
    DcmOutputBufferStream out(buf, len);
    ds->transferInit();
    OFCondition c = ds->write(out, xfer, EET_ExplicitLength, NULL);
    ds->transferEnd();
    void *written = NULL;
    offile_off_t n = 0;
    out.flushBuffer(written, n);
    if (c.bad() || n <= 0 || (Uint32)n > len) {
        free(buf);
        set_reason(reason, reasonsz, "header cannot be encoded",
                   c.bad() ? c : OFCondition(EC_IllegalCall));
        return RP_EPARSE;
    }
    *bytes = buf;
    *nbytes = (size_t)n;
    return 0;
}
