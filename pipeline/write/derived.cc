/*
 * pipeline/derived.cc — derived series and DICOM SEG writers (dcmtk adapter).
 * Contract in pipeline/derived.h. The only file of pipeline/ that builds new DICOM objects.
 */
#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dctk.h"
#include "dcmtk/dcmdata/dcistrmb.h"
#include "dcmtk/dcmdata/dcuid.h"
#include "dcmtk/dcmfg/fgderimg.h"
#include "dcmtk/dcmfg/fgfracon.h"
#include "dcmtk/dcmfg/fgpixmsr.h"
#include "dcmtk/dcmfg/fgplanor.h"
#include "dcmtk/dcmfg/fgplanpo.h"
#include "dcmtk/dcmfg/fgseg.h"
#include "dcmtk/dcmiod/iodmacro.h"
#include "dcmtk/dcmseg/segdoc.h"
#include "dcmtk/dcmseg/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

extern "C" {
#include "common/common.h"
#include "dicom/dicom.h"
#include "pipeline/write/write.h"
}

#include "pipeline/write/write_internal.h"

#define MOD "derived"

namespace rpw
{

/* ---------------------------------------------------------------- small helpers */

/* A DS value has at most 16 characters: try decreasing precision until it fits, then the
 * caller parses it back so that the numbers used for the pixels are the ones in the file. */
std::string ds(double v)
{
    char buf[64];
    if (v == 0.0 || fabs(v) < 1e-30)
        return "0";
    for (int prec = 12; prec >= 4; prec--) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strlen(buf) <= 16)
            return buf;
    }
    snprintf(buf, sizeof buf, "%.3e", v);
    return buf;
}

double ds_round(double v)
{
    return atof(ds(v).c_str());
}

std::string ds3(const double a[3])
{
    return ds(a[0]) + "\\" + ds(a[1]) + "\\" + ds(a[2]);
}

void now_da_tm(std::string &da, std::string &tm)
{
    char d[16], t[32];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(d, sizeof d, "%Y%m%d", &tmv);
    strftime(t, sizeof t, "%H%M%S", &tmv);
    da = d;
    tm = t;
}

std::string gen_uid(const char *root)
{
    char buf[100];
    dcmGenerateUniqueIdentifier(buf, (root && *root) ? root : SITE_INSTANCE_UID_ROOT);
    return buf;
}

std::string dir_of(const std::string &p)
{
    size_t s = p.rfind('/');
    if (s == std::string::npos)
        return ".";
    if (s == 0)
        return "/";
    return p.substr(0, s);
}

/* Write path + ".tmp" (not yet durable). */
int save_tmp(DcmFileFormat &ff, const std::string &path)
{
    std::string tmp = path + ".tmp";
    OFCondition c = ff.saveFile(tmp.c_str(), EXS_LittleEndianExplicit, EET_ExplicitLength,
                                EGL_recalcGL, EPD_noChange, 0, 0, EWM_createNewMeta);
    if (c.bad()) {
        RP_ERROR(MOD, "cannot write DICOM file path=%s reason=\"%s\"", tmp.c_str(), c.text());
        unlink(tmp.c_str());
        return RP_EIO;
    }
    return 0;
}

/* Make every file below dir's filesystem durable at once: one syncfs instead of one fsync
 * per slice (a 133-slice series costs one journal commit, not 133). */
int sync_dir_fs(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return RP_EIO;
    int rc = syncfs(fd);
    close(fd);
    return rc == 0 ? 0 : RP_EIO;
}

/* Save a file so that readers see all of it or nothing: temp name, fsync, rename. */
int save_atomic(DcmFileFormat &ff, const std::string &path)
{
    int rc = save_tmp(ff, path);
    if (rc)
        return rc;
    std::string tmp = path + ".tmp";
    if (rp_fsync_path(tmp.c_str(), 0) || rename(tmp.c_str(), path.c_str())) {
        RP_ERROR(MOD, "cannot fsync/rename path=%s errno=%d", path.c_str(), errno);
        unlink(tmp.c_str());
        return RP_EIO;
    }
    return 0;
}

/* The source file's header, as dicom/ reads it (every attribute before Pixel Data), held
 * as a dataset to copy attributes from. */
int load_header(const char *path, DcmFileFormat &ff)
{
    void *bytes = NULL;
    size_t n = 0;
    char why[256];
    if (rp_dcm_read_header_bytes(path, &bytes, &n, why, sizeof why) != 0) {
        RP_ERROR(MOD, "cannot read source file path=%s reason=\"%s\"", path, why);
        return RP_EPARSE;
    }
    DcmInputBufferStream in;
    in.setBuffer(bytes, (offile_off_t)n);
    in.setEos();
    DcmDataset *d = ff.getDataset();
    d->transferInit();
    OFCondition c = d->read(in, EXS_LittleEndianExplicit);
    d->transferEnd();
    free(bytes);
    if (c.bad()) {
        RP_ERROR(MOD, "cannot read source file path=%s reason=\"%s\"", path, c.text());
        return RP_EPARSE;
    }
    return 0;
}

std::string get_str(DcmItem *it, const DcmTagKey &k)
{
    OFString v;
    if (it->findAndGetOFStringArray(k, v).good())
        return v.c_str();
    return "";
}

/* ------------------------------------------------ patient and study: copied, never invented */

/* Patient module, Patient Study module and General Study module (PS3.3 C.7.1.1, C.7.2.2,
 * C.7.2.1), plus the character set that gives their bytes a meaning. */
const DcmTagKey k_copied[] = {
    DCM_SpecificCharacterSet,
    DCM_TimezoneOffsetFromUTC,
    /* Patient */
    DCM_PatientName,
    DCM_PatientID,
    DCM_IssuerOfPatientID,
    DCM_IssuerOfPatientIDQualifiersSequence,
    DCM_TypeOfPatientID,
    DCM_PatientBirthDate,
    DCM_PatientBirthTime,
    DCM_PatientSex,
    DCM_QualityControlSubject,
    DCM_ReferencedPatientSequence,
    DCM_ReferencedPatientPhotoSequence,
    DCM_OtherPatientIDsSequence,
    DCM_OtherPatientNames,
    DCM_RETIRED_OtherPatientIDs,
    DCM_EthnicGroup,
    DCM_PatientComments,
    DCM_PatientSpeciesDescription,
    DCM_PatientSpeciesCodeSequence,
    DCM_PatientBreedDescription,
    DCM_PatientBreedCodeSequence,
    DCM_BreedRegistrationSequence,
    DCM_StrainDescription,
    DCM_StrainNomenclature,
    DCM_StrainStockSequence,
    DCM_StrainAdditionalInformation,
    DCM_StrainCodeSequence,
    DCM_GeneticModificationsSequence,
    DCM_ResponsiblePerson,
    DCM_ResponsiblePersonRole,
    DCM_ResponsibleOrganization,
    DCM_PatientIdentityRemoved,
    DCM_DeidentificationMethod,
    DCM_DeidentificationMethodCodeSequence,
    DCM_SourcePatientGroupIdentificationSequence,
    DCM_GroupOfPatientsIdentificationSequence,
    /* General Study */
    DCM_StudyInstanceUID,
    DCM_StudyDate,
    DCM_StudyTime,
    DCM_ReferringPhysicianName,
    DCM_ReferringPhysicianIdentificationSequence,
    DCM_ConsultingPhysicianName,
    DCM_ConsultingPhysicianIdentificationSequence,
    DCM_StudyID,
    DCM_AccessionNumber,
    DCM_IssuerOfAccessionNumberSequence,
    DCM_StudyDescription,
    DCM_PhysiciansOfRecord,
    DCM_PhysiciansOfRecordIdentificationSequence,
    DCM_NameOfPhysiciansReadingStudy,
    DCM_PhysiciansReadingStudyIdentificationSequence,
    DCM_RequestingServiceCodeSequence,
    DCM_ReferencedStudySequence,
    DCM_ProcedureCodeSequence,
    DCM_ReasonForPerformedProcedureCodeSequence,
    /* Patient Study */
    DCM_AdmittingDiagnosesDescription,
    DCM_AdmittingDiagnosesCodeSequence,
    DCM_PatientAge,
    DCM_PatientSize,
    DCM_PatientWeight,
    DCM_PatientBodyMassIndex,
    DCM_MeasuredAPDimension,
    DCM_MeasuredLateralDimension,
    DCM_PatientSizeCodeSequence,
    DCM_MedicalAlerts,
    DCM_Allergies,
    DCM_SmokingStatus,
    DCM_PregnancyStatus,
    DCM_LastMenstrualDate,
    DCM_PatientState,
    DCM_Occupation,
    DCM_AdditionalPatientHistory,
    DCM_AdmissionID,
    DCM_IssuerOfAdmissionIDSequence,
    DCM_ServiceEpisodeID,
    DCM_ServiceEpisodeDescription,
    DCM_IssuerOfServiceEpisodeIDSequence,
    DCM_PatientSexNeutered,
    DCM_ReasonForVisit,
    DCM_ReasonForVisitCodeSequence,
};

int copy_patient_study(DcmItem *src, DcmItem *dst)
{
    for (const DcmTagKey &k : k_copied) {
        delete dst->remove(k);
        DcmElement *e = NULL;
        if (src->findAndGetElement(k, e).good() && e) {
            DcmElement *copy = OFstatic_cast(DcmElement *, e->clone());
            if (!copy || dst->insert(copy, OFTrue).bad()) {
                delete copy;
                return RP_ENOMEM;
            }
        }
    }
    /* Type 2 attributes of the Patient and General Study modules that the source lacks are
     * written empty ("unknown"): the object stays valid and no value is invented. */
    static const DcmTagKey type2[] = {
        DCM_PatientName,    DCM_PatientID, DCM_PatientBirthDate,       DCM_PatientSex,
        DCM_StudyDate,      DCM_StudyTime, DCM_ReferringPhysicianName, DCM_StudyID,
        DCM_AccessionNumber};
    for (const DcmTagKey &k : type2)
        if (!dst->tagExists(k))
            dst->insertEmptyElement(k, OFTrue);
    /* A copied optional (Type 3) value that breaks its VR (e.g. Patient's Age "81" without
     * its unit letter) would make our object invalid for something we did not write: it is
     * left out, with a log line, rather than "repaired" into a guess. */
    for (const DcmTagKey &k : k_copied) {
        DcmElement *e = NULL;
        if (dst->findAndGetElement(k, e).bad() || !e || e->getLength() == 0 ||
            e->ident() == EVR_SQ || k == DCM_StudyInstanceUID)
            continue;
        int is_type2 = 0;
        for (const DcmTagKey &t : type2)
            is_type2 |= t == k;
        if (!is_type2 && e->checkValue("1-n").bad()) {
            RP_WARN(MOD, "source attribute with an invalid value left out tag=%s",
                    k.toString().c_str());
            delete dst->remove(k);
        }
    }
    /* De-identification Method is Type 1C (identity removed, no code sequence): some
     * anonymisers leave it empty; say that the method is unknown instead of leaving an
     * invalid empty value */
    if (get_str(dst, DCM_PatientIdentityRemoved) == "YES" &&
        !dst->tagExists(DCM_DeidentificationMethodCodeSequence) &&
        get_str(dst, DCM_DeidentificationMethod).empty())
        dst->putAndInsertString(DCM_DeidentificationMethod, "unknown (empty in source)");
    /* Specific Character Set is Type 1C: an empty one (some scanners write it) means the
     * default repertoire, which is said by leaving it out. */
    DcmElement *cs = NULL;
    if (dst->findAndGetElement(DCM_SpecificCharacterSet, cs).good() && cs && cs->getLength() == 0)
        delete dst->remove(DCM_SpecificCharacterSet);
    return 0;
}

/* Copy a few attributes if the source has them (absent stays absent). */
void copy_if_present(DcmItem *src, DcmItem *dst, std::initializer_list<DcmTagKey> keys)
{
    for (const DcmTagKey &k : keys) {
        DcmElement *e = NULL;
        if (src->findAndGetElement(k, e).good() && e) {
            DcmElement *copy = OFstatic_cast(DcmElement *, e->clone());
            if (copy && dst->insert(copy, OFTrue).bad())
                delete copy;
        }
    }
}

/* Type 2 attributes: copied when present, else written empty. */
void copy_or_empty(DcmItem *src, DcmItem *dst, std::initializer_list<DcmTagKey> keys)
{
    for (const DcmTagKey &k : keys) {
        DcmElement *e = NULL;
        if (src->findAndGetElement(k, e).good() && e) {
            DcmElement *copy = OFstatic_cast(DcmElement *, e->clone());
            if (copy && dst->insert(copy, OFTrue).bad())
                delete copy;
        } else {
            dst->insertEmptyElement(k, OFTrue);
        }
    }
}

/* ----------------------------------------------------------------- geometry */

struct slice_geom {
    double ipp[3]; /* LPS mm */
};

void affine_to_geom(const double a[4][4], vol_geom &g)
{
    double c0[3], c1[3], c2[3];
    for (int r = 0; r < 3; r++) {
        double s = (r < 2) ? -1.0 : 1.0; /* RAS -> LPS: negate x and y */
        c0[r] = s * a[r][0];
        c1[r] = s * a[r][1];
        c2[r] = s * a[r][2];
        g.origin_lps[r] = s * a[r][3];
        g.step_lps[r] = c2[r];
    }
    g.spacing_x = sqrt(c0[0] * c0[0] + c0[1] * c0[1] + c0[2] * c0[2]);
    g.spacing_y = sqrt(c1[0] * c1[0] + c1[1] * c1[1] + c1[2] * c1[2]);
    g.spacing_z = sqrt(c2[0] * c2[0] + c2[1] * c2[1] + c2[2] * c2[2]);
    for (int r = 0; r < 3; r++) {
        g.row_dir[r] = g.spacing_x > 0 ? c0[r] / g.spacing_x : 0;
        g.col_dir[r] = g.spacing_y > 0 ? c1[r] / g.spacing_y : 0;
    }
    g.normal[0] = g.row_dir[1] * g.col_dir[2] - g.row_dir[2] * g.col_dir[1];
    g.normal[1] = g.row_dir[2] * g.col_dir[0] - g.row_dir[0] * g.col_dir[2];
    g.normal[2] = g.row_dir[0] * g.col_dir[1] - g.row_dir[1] * g.col_dir[0];
}

void slice_ipp(const vol_geom &g, int k, double out[3])
{
    for (int r = 0; r < 3; r++)
        out[r] = g.origin_lps[r] + k * g.step_lps[r];
}

/* Patient Orientation letters for a direction (LPS): the dominant axes, strongest first. */
std::string orient_letters(const double d[3])
{
    std::string s;
    double a[3] = {fabs(d[0]), fabs(d[1]), fabs(d[2])};
    const char *pos = "LPH", *neg = "RAF";
    for (int n = 0; n < 3; n++) {
        int best = -1;
        for (int i = 0; i < 3; i++)
            if (a[i] > 0.0001 && (best < 0 || a[i] > a[best]))
                best = i;
        if (best < 0)
            break;
        s += d[best] > 0 ? pos[best] : neg[best];
        a[best] = 0;
    }
    return s;
}

int read_sources(const char *const *files, size_t n, std::vector<src_slice> &out)
{
    out.clear();
    for (size_t i = 0; i < n; i++) {
        rp_dcm_ref ref;
        char why[256];
        if (rp_dcm_read_ref(files[i], &ref, why, sizeof why) != 0) {
            RP_ERROR(MOD, "cannot read source file path=%s reason=\"%s\"", files[i], why);
            return RP_EPARSE;
        }
        src_slice s;
        s.sop_class = ref.sop_class_uid;
        s.sop_instance = ref.sop_instance_uid;
        s.series_uid = ref.series_uid;
        s.has_ipp = ref.has_ipp;
        for (int r = 0; r < 3; r++)
            s.ipp[r] = ref.ipp[r];
        if (s.sop_class.empty() || s.sop_instance.empty()) {
            RP_ERROR(MOD, "source file has no SOP Class/Instance UID path=%s", files[i]);
            return RP_EUID;
        }
        out.push_back(s);
    }
    return 0;
}

/* Source slices that a derived slice at `p` (LPS) with thickness `thick` came from: all
 * sources whose plane lies within half a thickness along the normal, or the nearest one. */
std::vector<size_t> sources_for(const std::vector<src_slice> &src, const double normal[3],
                                const double p[3], double thick)
{
    std::vector<size_t> hit;
    double dp = p[0] * normal[0] + p[1] * normal[1] + p[2] * normal[2];
    size_t best = (size_t)-1;
    double bestd = 1e300;
    for (size_t i = 0; i < src.size(); i++) {
        if (!src[i].has_ipp)
            continue;
        double ds_ =
            src[i].ipp[0] * normal[0] + src[i].ipp[1] * normal[1] + src[i].ipp[2] * normal[2];
        double d = fabs(ds_ - dp);
        if (d <= thick / 2 + 1e-3 && hit.size() < 16)
            hit.push_back(i);
        if (d < bestd) {
            bestd = d;
            best = i;
        }
    }
    if (hit.empty() && best != (size_t)-1)
        hit.push_back(best);
    return hit;
}

/* --------------------------------------------------------------- pixel scaling */

struct scaling {
    double slope, intercept;
    double vmin, vmax;
};

/* Signed 16-bit storage: exact when every finite value is an integer in range, else a slope
 * that maps [min,max] onto [-32767, 32767] (one code of margin each side, so that the
 * DS-rounded slope and intercept can never push a value out of range). */
scaling choose_scaling(const float *v, size_t n)
{
    scaling s;
    double lo = INFINITY, hi = -INFINITY;
    int integral = 1;
    for (size_t i = 0; i < n; i++) {
        double x = v[i];
        if (!isfinite(x))
            continue;
        if (x < lo)
            lo = x;
        if (x > hi)
            hi = x;
        if (integral && x != floor(x))
            integral = 0;
    }
    if (!(lo <= hi)) { /* no finite value at all */
        lo = hi = 0;
        integral = 1;
    }
    s.vmin = lo;
    s.vmax = hi;
    if (integral && lo >= -32768 && hi <= 32767) {
        s.slope = 1;
        s.intercept = 0;
        return s;
    }
    if (hi - lo < 1e-12) {
        s.slope = 1;
        s.intercept = ds_round(lo);
        return s;
    }
    double slope = ds_round((hi - lo) / 65534.0);
    while ((hi - lo) / slope > 65534.0)
        slope = ds_round(slope * (1 + 1e-6));
    s.slope = slope;
    s.intercept = ds_round(lo + 32767.0 * slope);
    return s;
}

inline int16_t to_stored(double x, const scaling &s)
{
    if (!isfinite(x))
        x = s.intercept; /* NaN/inf: no value the data can show; the intercept keeps it neutral */
    double q = floor((x - s.intercept) / s.slope + 0.5);
    if (q < -32768)
        q = -32768;
    if (q > 32767)
        q = 32767;
    return (int16_t)q;
}

/* ---------------------------------------------------------------- IOD choice */

enum iod_kind { IOD_CT, IOD_MR, IOD_SC };

/* Why: CT and MR Image Storage promise that pixel values (after the rescale) are in the
 * modality's physical units — HU for CT — and every PACS, viewer and AI tool treats them
 * so. That holds only while the recipe changed geometry (resample, reorient, crop) and not
 * intensities. Once values are windowed, normalised or z-scored they are no longer HU; a CT
 * object would lie about them, so they go out as Secondary Capture (single frame, one per
 * slice: the multi-frame SC IODs have no per-frame position, and one file per slice keeps
 * the stack usable by every viewer) with Rescale Type "US" (unspecified). Image Plane and
 * Frame of Reference attributes are added to the SC as standard extended attributes so that
 * viewers can still stack and overlay it on its source. */
iod_kind choose_iod(const rp_derived_opts *o, const std::string &modality)
{
    if (o->values_physical && modality == "CT")
        return IOD_CT;
    if (o->values_physical && modality == "MR")
        return IOD_MR;
    return IOD_SC;
}

const char *iod_sop_class(iod_kind k)
{
    switch (k) {
    case IOD_CT:
        return UID_CTImageStorage;
    case IOD_MR:
        return UID_MRImageStorage;
    default:
        return UID_SecondaryCaptureImageStorage;
    }
}

/* Laterality (General Series, Type 2C): required, possibly empty, for a paired body part or
 * when the body part is not said; must be absent for an unpaired one (dciodvfy checks it). */
void put_laterality(DcmItem *src, DcmItem *dst)
{
    static const char *const paired[] = {
        "BREAST",  "EYE",       "ORBIT",    "EAR",      "KIDNEY",  "ADRENAL", "OVARY",
        "TESTIS",  "LUNG",      "SHOULDER", "CLAVICLE", "SCAPULA", "ARM",     "UPRARM",
        "HUMERUS", "ELBOW",     "FOREARM",  "RADIUS",   "ULNA",    "WRIST",   "HAND",
        "FINGER",  "THUMB",     "HIP",      "THIGH",    "FEMUR",   "KNEE",    "PATELLA",
        "LEG",     "LOWLEG",    "TIBIA",    "FIBULA",   "ANKLE",   "FOOT",    "HEEL",
        "TOE",     "EXTREMITY", "UPRLIMB",  "LOWLIMB",  "TMJ",     "PAROTID", "SUBMANDIBULAR",
        NULL};
    std::string lat = get_str(src, DCM_Laterality);
    std::string body = get_str(src, DCM_BodyPartExamined);
    int is_paired = body.empty();
    for (int i = 0; paired[i] && !is_paired; i++)
        is_paired = body == paired[i];
    if (!lat.empty())
        dst->putAndInsertString(DCM_Laterality, lat.c_str());
    else if (is_paired)
        dst->insertEmptyElement(DCM_Laterality, OFTrue);
}

void put_code(DcmItem *item, const char *value, const char *scheme, const char *meaning)
{
    item->putAndInsertString(DCM_CodeValue, value);
    item->putAndInsertString(DCM_CodingSchemeDesignator, scheme);
    item->putAndInsertString(DCM_CodeMeaning, meaning);
}

std::string default_description(DcmItem *src)
{
    std::string d = get_str(src, DCM_SeriesDescription);
    std::string s = d.empty() ? "[radprep]" : d + " [radprep]";
    if (s.size() > 64)
        s = s.substr(0, 64);
    return s;
}

int series_number(const rp_derived_opts *o, DcmItem *src)
{
    if (o->series_number > 0)
        return o->series_number;
    Sint32 n = 0;
    std::string s = get_str(src, DCM_SeriesNumber);
    n = s.empty() ? 0 : atoi(s.c_str());
    return n > 0 ? n + 1000 : 1000;
}

struct code_map {
    const char *pattern;
    const char *value;
    const char *meaning;
};

/* Step name fragments -> CID 7203 Image Derivation codes (DCM). Order: first match wins per
 * step; duplicates are dropped. */
const code_map k_step_codes[] = {
    {"resample", "113085", "Spatial resampling"},
    {"isotropic", "113085", "Spatial resampling"},
    {"resize", "113085", "Spatial resampling"},
    {"reorient", "113072", "Multiplanar reformatting"},
    {"crop", "113072", "Multiplanar reformatting"},
    {"pad", "113072", "Multiplanar reformatting"},
    {"gauss", "113088", "Gaussian blur"},
    {"denoise", "113087", "Smoothing"},
    {"smooth", "113087", "Smoothing"},
    {"median", "113087", "Smoothing"},
    {"bilateral", "113087", "Smoothing"},
    {"zscore", "113071", "Z-Score"},
    {"whitestripe", "113071", "Z-Score"},
    {"unsharp", "113089", "Unsharp mask"},
    {"clahe", "113086", "Edge enhancement"},
    {"mask", "113047", "Pixel by pixel mask"},
};

/* Nearest neighbour through both affines: grid voxel -> world -> mask voxel. */
std::vector<uint8_t> mask_on_grid(const rp_mask *m, const int dim[3], const double affine[4][4])
{
    const size_t n = (size_t)dim[0] * dim[1] * dim[2];
    std::vector<uint8_t> out;
    try {
        out.assign(n, 0);
    } catch (...) {
        return std::vector<uint8_t>();
    }
    int same = m->dim[0] == dim[0] && m->dim[1] == dim[1] && m->dim[2] == dim[2];
    for (int r = 0; r < 4 && same; r++)
        for (int c = 0; c < 4; c++)
            same &= fabs(m->affine[r][c] - affine[r][c]) < 1e-4;
    if (same) {
        for (size_t i = 0; i < n; i++)
            out[i] = m->data[i] ? 1 : 0;
        return out;
    }
    double inv[4][4], t[4][4];
    if (rp_mat4_invert(m->affine, inv))
        return out; /* a singular mask affine covers nothing */
    rp_mat4_mul(inv, affine, t);
    for (int k = 0; k < dim[2]; k++)
        for (int j = 0; j < dim[1]; j++)
            for (int i = 0; i < dim[0]; i++) {
                long q[3];
                for (int r = 0; r < 3; r++)
                    q[r] = lround(t[r][0] * i + t[r][1] * j + t[r][2] * k + t[r][3]);
                if (q[0] < 0 || q[1] < 0 || q[2] < 0 || q[0] >= m->dim[0] || q[1] >= m->dim[1] ||
                    q[2] >= m->dim[2])
                    continue;
                out[((size_t)k * dim[1] + j) * dim[0] + i] =
                    m->data[((size_t)q[2] * m->dim[1] + q[1]) * m->dim[0] + q[0]] ? 1 : 0;
            }
    return out;
}

} // namespace rpw

using namespace rpw;

/* ====================================================================== public API */

extern "C" void rp_derived_opts_init(rp_derived_opts *o)
{
    memset(o, 0, sizeof *o);
    o->window_width = -1;
}

extern "C" int rp_derived_codes_from_recipe(const char *recipe, rp_derived_code *out, int max)
{
    int n = 0;
    if (!recipe || !out || max <= 0)
        return 0;
    const char *p = recipe;
    while (*p && n < max) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            break;
        /* step name: up to '(' or blank; skip a balanced argument list */
        char name[64];
        size_t len = 0;
        while (*p && *p != '(' && *p != ' ' && *p != '\t' && *p != '\n') {
            if (len + 1 < sizeof name)
                name[len++] = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
            p++;
        }
        name[len] = 0;
        if (*p == '(') {
            int depth = 0;
            do {
                if (*p == '(')
                    depth++;
                else if (*p == ')')
                    depth--;
                p++;
            } while (*p && depth > 0);
        }
        for (const code_map &m : k_step_codes) {
            if (!strstr(name, m.pattern))
                continue;
            int dup = 0;
            for (int i = 0; i < n; i++)
                dup |= !strcmp(out[i].value, m.value);
            if (!dup) {
                rp_strlcpy(out[n].value, m.value, sizeof out[n].value);
                rp_strlcpy(out[n].meaning, m.meaning, sizeof out[n].meaning);
                n++;
            }
            break;
        }
    }
    return n;
}

extern "C" void rp_derived_paths_free(char **paths, size_t n)
{
    if (!paths)
        return;
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}

extern "C" int rp_derived_write_series(const rp_derived_opts *o, const rp_volume *vol,
                                       const char *src_file, const char *out_dir, char ***paths_out,
                                       size_t *n_out)
{
    if (!o || !vol || !vol->data || !src_file || !out_dir || !paths_out || !n_out)
        return RP_EINVAL;
    *paths_out = NULL;
    *n_out = 0;
    const int nx = vol->dim[0], ny = vol->dim[1], nz = vol->dim[2], nc = vol->dim[3];
    if (nx <= 0 || ny <= 0 || nz <= 0 || nx > 65535 || ny > 65535 || o->channel < 0 ||
        o->channel >= (nc > 0 ? nc : 1)) {
        RP_ERROR(MOD, "volume cannot be written as DICOM dim=%dx%dx%dx%d channel=%d", nx, ny, nz,
                 nc, o->channel);
        return RP_EINVAL;
    }
    int rc = rp_mkdir_p(out_dir, 0750);
    if (rc)
        return rc;

    DcmFileFormat srcff;
    if ((rc = load_header(src_file, srcff)))
        return rc;
    DcmDataset *src = srcff.getDataset();
    std::vector<src_slice> sources;
    if (o->src_slice_files && o->n_src_slices &&
        (rc = read_sources(o->src_slice_files, o->n_src_slices, sources)))
        return rc;

    const std::string modality = get_str(src, DCM_Modality);
    const iod_kind iod = choose_iod(o, modality);
    vol_geom g;
    affine_to_geom(vol->affine, g);
    const size_t nslice = (size_t)nx * ny;
    const float *chan = vol->data + (size_t)o->channel * nslice * nz;
    const scaling sc = choose_scaling(chan, nslice * nz);
    double wc = o->window_center, ww = o->window_width;
    if (!(ww > 0)) {
        wc = (sc.vmin + sc.vmax) / 2;
        ww = sc.vmax - sc.vmin > 1 ? sc.vmax - sc.vmin : 1;
    }
    const double thick = o->slice_thickness_mm > 0 ? o->slice_thickness_mm : g.spacing_z;
    const std::string series_uid =
        (o->series_uid && *o->series_uid) ? std::string(o->series_uid) : gen_uid(o->uid_root);
    const std::string desc = o->series_description && *o->series_description
                                 ? std::string(o->series_description)
                                 : default_description(src);
    const int series_no = series_number(o, src);
    std::string da, tm;
    now_da_tm(da, tm);
    rp_derived_code codes[RP_DERIVED_MAX_CODES];
    int ncodes = o->n_codes;
    if (ncodes > 0)
        memcpy(codes, o->codes, sizeof(rp_derived_code) * (size_t)ncodes);
    else
        ncodes = rp_derived_codes_from_recipe(o->recipe, codes, RP_DERIVED_MAX_CODES);
    const std::string iop = ds(g.row_dir[0]) + "\\" + ds(g.row_dir[1]) + "\\" + ds(g.row_dir[2]) +
                            "\\" + ds(g.col_dir[0]) + "\\" + ds(g.col_dir[1]) + "\\" +
                            ds(g.col_dir[2]);
    const std::string pixel_spacing = ds(g.spacing_y) + "\\" + ds(g.spacing_x);
    /* Image Type: DERIVED\SECONDARY, and for CT/MR (where value 3 is required) the source's
     * value 3 (AXIAL, M, P, ...), which a geometric derivation does not change */
    std::string image_type = "DERIVED\\SECONDARY";
    if (iod != IOD_SC) {
        OFString v3;
        if (src->findAndGetOFString(DCM_ImageType, v3, 2).bad() || v3.empty())
            v3 = iod == IOD_CT ? "AXIAL" : "OTHER";
        image_type += std::string("\\") + v3.c_str();
    }
    const std::string patient_orientation =
        orient_letters(g.row_dir) + "\\" + orient_letters(g.col_dir);

    char **paths = (char **)calloc((size_t)nz, sizeof(char *));
    if (!paths)
        return RP_ENOMEM;
    std::vector<Uint16> pix(nslice);
    size_t written = 0;
    rc = 0;
    for (int k = 0; k < nz && rc == 0; k++) {
        DcmFileFormat ff;
        DcmDataset *d = ff.getDataset();
        if ((rc = copy_patient_study(src, d)))
            break;
        const std::string sop_uid = gen_uid(o->uid_root);
        double ipp[3];
        slice_ipp(g, k, ipp);

        /* SOP Common, General Image */
        d->putAndInsertString(DCM_SOPClassUID, iod_sop_class(iod));
        d->putAndInsertString(DCM_SOPInstanceUID, sop_uid.c_str());
        d->putAndInsertString(DCM_InstanceCreationDate, da.c_str());
        d->putAndInsertString(DCM_InstanceCreationTime, tm.c_str());
        d->putAndInsertString(DCM_ImageType, image_type.c_str());
        d->putAndInsertString(DCM_InstanceNumber, std::to_string(k + 1).c_str());
        d->putAndInsertString(DCM_ContentDate, da.c_str());
        d->putAndInsertString(DCM_ContentTime, tm.c_str());
        d->putAndInsertString(DCM_PatientOrientation, patient_orientation.c_str());
        d->putAndInsertString(DCM_BurnedInAnnotation, "NO");
        copy_if_present(src, d,
                        {DCM_LossyImageCompression, DCM_LossyImageCompressionRatio,
                         DCM_LossyImageCompressionMethod});
        /* General Series: a new series of the same study */
        d->putAndInsertString(DCM_Modality, modality.empty() ? "OT" : modality.c_str());
        d->putAndInsertString(DCM_SeriesInstanceUID, series_uid.c_str());
        d->putAndInsertString(DCM_SeriesNumber, std::to_string(series_no).c_str());
        d->putAndInsertString(DCM_SeriesDate, da.c_str());
        d->putAndInsertString(DCM_SeriesTime, tm.c_str());
        d->putAndInsertString(DCM_SeriesDescription, desc.c_str());
        copy_if_present(src, d, {DCM_BodyPartExamined, DCM_PatientPosition});
        put_laterality(src, d);
        /* General Equipment: the equipment that made this series is radprep */
        d->putAndInsertString(DCM_Manufacturer, "radprep");
        d->putAndInsertString(DCM_ManufacturerModelName, "radprep");
        d->putAndInsertString(DCM_SoftwareVersions, RP_VERSION);
        /* Frame of Reference kept: the derived series lies in the source's patient space */
        copy_or_empty(src, d, {DCM_FrameOfReferenceUID, DCM_PositionReferenceIndicator});
        if (get_str(d, DCM_FrameOfReferenceUID).empty())
            d->putAndInsertString(DCM_FrameOfReferenceUID, gen_uid(o->uid_root).c_str());
        /* Image Plane */
        d->putAndInsertString(DCM_ImagePositionPatient, ds3(ipp).c_str());
        d->putAndInsertString(DCM_ImageOrientationPatient, iop.c_str());
        d->putAndInsertString(DCM_PixelSpacing, pixel_spacing.c_str());
        d->putAndInsertString(DCM_SliceThickness, ds(thick).c_str());
        d->putAndInsertString(
            DCM_SliceLocation,
            ds(ipp[0] * g.normal[0] + ipp[1] * g.normal[1] + ipp[2] * g.normal[2]).c_str());
        /* Image Pixel */
        d->putAndInsertUint16(DCM_SamplesPerPixel, 1);
        d->putAndInsertString(DCM_PhotometricInterpretation, "MONOCHROME2");
        d->putAndInsertUint16(DCM_Rows, (Uint16)ny);
        d->putAndInsertUint16(DCM_Columns, (Uint16)nx);
        d->putAndInsertUint16(DCM_BitsAllocated, 16);
        d->putAndInsertUint16(DCM_BitsStored, 16);
        d->putAndInsertUint16(DCM_HighBit, 15);
        d->putAndInsertUint16(DCM_PixelRepresentation, 1);
        /* Modality LUT / CT Image rescale, VOI LUT */
        d->putAndInsertString(DCM_RescaleIntercept, ds(sc.intercept).c_str());
        d->putAndInsertString(DCM_RescaleSlope, ds(sc.slope).c_str());
        d->putAndInsertString(DCM_RescaleType, iod == IOD_CT ? "HU" : "US");
        d->putAndInsertString(DCM_WindowCenter, ds(wc).c_str());
        d->putAndInsertString(DCM_WindowWidth, ds(ww).c_str());
        d->putAndInsertString(DCM_WindowCenterWidthExplanation, "radprep");
        if (iod == IOD_CT) {
            copy_or_empty(src, d, {DCM_KVP, DCM_AcquisitionNumber});
            copy_if_present(src, d, {DCM_ConvolutionKernel});
        } else if (iod == IOD_MR) {
            copy_or_empty(src, d,
                          {DCM_ScanningSequence, DCM_SequenceVariant, DCM_ScanOptions,
                           DCM_MRAcquisitionType, DCM_EchoTime, DCM_EchoTrainLength,
                           DCM_AcquisitionNumber});
            copy_if_present(src, d,
                            {DCM_RepetitionTime, DCM_SequenceName, DCM_MagneticFieldStrength,
                             DCM_FlipAngle, DCM_ImagedNucleus, DCM_ImagingFrequency});
            /* Inversion Time is 2C: present only for inversion recovery sequences */
            if (get_str(src, DCM_ScanningSequence).find("IR") != std::string::npos)
                copy_or_empty(src, d, {DCM_InversionTime});
            d->putAndInsertString(DCM_SpacingBetweenSlices, ds(g.spacing_z).c_str());
        } else {
            /* SC Equipment: made on a workstation from images of the source modality */
            d->putAndInsertString(DCM_ConversionType, "WSD");
            d->putAndInsertString(DCM_DateOfSecondaryCapture, da.c_str());
            d->putAndInsertString(DCM_TimeOfSecondaryCapture, tm.c_str());
        }
        /* General Reference: what this slice was derived from and how */
        if (o->derivation_description && *o->derivation_description) {
            std::string dd = o->derivation_description;
            if (dd.size() > 1024)
                dd = dd.substr(0, 1024);
            d->putAndInsertString(DCM_DerivationDescription, dd.c_str());
        }
        for (int i = 0; i < ncodes; i++) {
            DcmItem *it = NULL;
            if (d->findOrCreateSequenceItem(DCM_DerivationCodeSequence, it, -2).good())
                put_code(it, codes[i].value, "DCM", codes[i].meaning);
        }
        if (!sources.empty()) {
            for (size_t si : sources_for(sources, g.normal, ipp, thick)) {
                DcmItem *it = NULL;
                if (d->findOrCreateSequenceItem(DCM_SourceImageSequence, it, -2).bad())
                    continue;
                it->putAndInsertString(DCM_ReferencedSOPClassUID, sources[si].sop_class.c_str());
                it->putAndInsertString(DCM_ReferencedSOPInstanceUID,
                                       sources[si].sop_instance.c_str());
                DcmItem *pr = NULL;
                if (it->findOrCreateSequenceItem(DCM_PurposeOfReferenceCodeSequence, pr, -2).good())
                    put_code(pr, "121322", "DCM", "Source image for image processing operation");
            }
        }
        /* Pixel Data */
        const float *s = chan + (size_t)k * nslice;
        for (size_t i = 0; i < nslice; i++)
            pix[i] = (Uint16)to_stored(s[i], sc);
        if (d->putAndInsertUint16Array(DCM_PixelData, pix.data(), (unsigned long)nslice).bad()) {
            rc = RP_ENOMEM;
            break;
        }
        char name[32];
        snprintf(name, sizeof name, "/IM%05d.dcm", k + 1);
        std::string path = std::string(out_dir) + name;
        if ((rc = save_tmp(ff, path)))
            break;
        paths[written] = strdup(path.c_str());
        if (!paths[written]) {
            unlink((path + ".tmp").c_str());
            rc = RP_ENOMEM;
            break;
        }
        written++;
    }
    /* all slices on disk, then renamed: a reader sees whole files only */
    if (rc == 0 && (rc = sync_dir_fs(out_dir)) != 0)
        RP_ERROR(MOD, "cannot sync derived series dir=%s errno=%d", out_dir, errno);
    for (size_t i = 0; rc == 0 && i < written; i++) {
        std::string tmp = std::string(paths[i]) + ".tmp";
        if (rename(tmp.c_str(), paths[i])) {
            RP_ERROR(MOD, "cannot rename path=%s errno=%d", paths[i], errno);
            rc = RP_EIO;
        }
    }
    if (rc) {
        for (size_t i = 0; i < written; i++) {
            unlink(paths[i]);
            unlink((std::string(paths[i]) + ".tmp").c_str());
        }
        rp_derived_paths_free(paths, written);
        return rc;
    }
    rp_fsync_path(out_dir, 1);
    char q[160];
    RP_INFO(MOD,
            "derived series written series_uid=%s slices=%d iod=%s slope=%s intercept=%s dir=%s",
            series_uid.c_str(), nz,
            iod == IOD_CT   ? "CT"
            : iod == IOD_MR ? "MR"
                            : "SC",
            ds(sc.slope).c_str(), ds(sc.intercept).c_str(), rp_log_kv_quote(out_dir, q, sizeof q));
    *paths_out = paths;
    *n_out = written;
    return 0;
}

/* ------------------------------------------------------------------------ SEG */

namespace rpw
{

/* Segmented Property Category (CID 7150) and Type for the masks radprep makes. */
seg_codes codes_for_mask(const char *name)
{
    if (!strcasecmp(name, "lung"))
        return {"123037004", "Anatomical Structure", "39607008", "Lung"};
    if (!strcasecmp(name, "body"))
        return {"123037004", "Anatomical Structure", "38266002", "Entire body"};
    if (!strcasecmp(name, "head"))
        return {"123037004", "Anatomical Structure", "69536005", "Head"};
    if (!strcasecmp(name, "brain"))
        return {"123037004", "Anatomical Structure", "12738006", "Brain"};
    if (!strcasecmp(name, "metal"))
        return {"260787004", "Physical object", "40388003", "Implant"};
    return {"85756007", "Tissue", "85756007", "Tissue"};
}

} // namespace rpw

extern "C" int rp_derived_write_seg(const rp_derived_opts *o, rp_mask *const *masks, size_t n,
                                    const char *src_file, const char *const *src_slice_files,
                                    size_t nsrc, const char *out_path)
{
    if (!o || !masks || n == 0 || n > 65535 || !src_file || !out_path)
        return RP_EINVAL;
    const rp_mask *m0 = masks[0];
    const int nx = m0->dim[0], ny = m0->dim[1], nz = m0->dim[2];
    if (nx <= 0 || ny <= 0 || nz <= 0 || nx > 65535 || ny > 65535)
        return RP_EINVAL;
    for (size_t i = 1; i < n; i++)
        if (masks[i]->dim[0] != nx || masks[i]->dim[1] != ny || masks[i]->dim[2] != nz) {
            RP_ERROR(MOD, "SEG masks must share one grid mask=%s", masks[i]->name);
            return RP_EINVAL;
        }
    if (!src_slice_files || nsrc == 0) {
        src_slice_files = o->src_slice_files;
        nsrc = o->n_src_slices;
    }
    int rc = 0;
    DcmFileFormat srcff;
    if ((rc = load_header(src_file, srcff)))
        return rc;
    DcmDataset *src = srcff.getDataset();
    std::vector<src_slice> sources;
    if (src_slice_files && nsrc && (rc = read_sources(src_slice_files, nsrc, sources)))
        return rc;
    if (sources.empty()) {
        /* the SEG must reference its source: at least the file we were given */
        if ((rc = read_sources(&src_file, 1, sources)))
            return rc;
    }
    vol_geom g;
    affine_to_geom(m0->affine, g);
    const double thick = o->slice_thickness_mm > 0 ? o->slice_thickness_mm : g.spacing_z;
    const size_t nslice = (size_t)nx * ny;

    IODGeneralEquipmentModule::EquipmentInfo eq("radprep", "radprep", "0", RP_VERSION);
    ContentIdentificationMacro ci("1", "RADPREP_MASKS", "Masks computed by radprep", "radprep^");
    DcmSegmentation *seg = NULL;
    OFCondition c = DcmSegmentation::createBinarySegmentation(seg, (Uint16)ny, (Uint16)nx, eq, ci);
    if (c.bad() || !seg) {
        RP_ERROR(MOD, "cannot create segmentation reason=\"%s\"", c.text());
        return RP_EINTERNAL;
    }
    std::unique_ptr<DcmSegmentation> segp(seg);
    std::string why;
    std::string da, tm;
    now_da_tm(da, tm);
    const std::string series_uid =
        (o->series_uid && *o->series_uid) ? std::string(o->series_uid) : gen_uid(o->uid_root);
    std::string desc = o->series_description && *o->series_description
                           ? std::string(o->series_description)
                           : default_description(src);
    const std::string dim_uid = gen_uid(o->uid_root);
    const std::string src_series = get_str(src, DCM_SeriesInstanceUID);
    FGPixelMeasures meas;
    FGPlaneOrientationPatient *orient = NULL;
    FGFrameContent fc;
    FGSegmentation fgseg;

    c = seg->importFromSourceImage(*src, OFTrue);
    if (c.bad()) {
        why = std::string("import patient/study: ") + c.text();
        goto fail;
    }
    seg->getSeries().setSeriesInstanceUID(series_uid.c_str());
    seg->getSeries().setSeriesDescription(desc.size() > 64 ? desc.substr(0, 64).c_str()
                                                           : desc.c_str());
    seg->getSeries().setSeriesNumber(std::to_string(series_number(o, src) + 1).c_str());
    seg->getSeries().setSeriesDate(da.c_str());
    seg->getSeries().setSeriesTime(tm.c_str());
    seg->getSOPCommon().setSOPInstanceUID(gen_uid(o->uid_root).c_str());
    seg->getGeneralImage().setContentDate(da.c_str());
    seg->getGeneralImage().setContentTime(tm.c_str());

    meas.setPixelSpacing((ds(g.spacing_y) + "\\" + ds(g.spacing_x)).c_str());
    meas.setSliceThickness(ds(thick).c_str());
    meas.setSpacingBetweenSlices(ds(g.spacing_z).c_str());
    orient = FGPlaneOrientationPatient::createMinimal(
        ds(g.row_dir[0]).c_str(), ds(g.row_dir[1]).c_str(), ds(g.row_dir[2]).c_str(),
        ds(g.col_dir[0]).c_str(), ds(g.col_dir[1]).c_str(), ds(g.col_dir[2]).c_str());
    if (!orient || seg->addForAllFrames(meas).bad() || seg->addForAllFrames(*orient).bad()) {
        delete orient;
        why = "shared functional groups";
        goto fail;
    }
    delete orient;

    for (size_t si = 0; si < n; si++) {
        const rp_mask *m = masks[si];
        seg_codes sc = codes_for_mask(m->name);
        DcmSegment *segment = NULL;
        std::string label = m->name[0] ? m->name : "mask";
        c = DcmSegment::create(segment, label.c_str(),
                               CodeSequenceMacro(sc.cat_value, "SCT", sc.cat_meaning),
                               CodeSequenceMacro(sc.type_value, "SCT", sc.type_meaning),
                               DcmSegTypes::SAT_AUTOMATIC, "radprep " RP_VERSION);
        Uint16 segno = 0;
        if (c.bad() || !segment || seg->addSegment(segment, segno).bad()) {
            delete segment;
            why = std::string("segment ") + label + ": " + c.text();
            goto fail;
        }
        /* frames: the non-empty slices, or slice 0 when the mask is empty (a segment without
         * frames would be an invalid object) */
        std::vector<int> zs;
        for (int z = 0; z < nz; z++) {
            const uint8_t *p = m->data + (size_t)z * nslice;
            size_t i = 0;
            while (i < nslice && !p[i])
                i++;
            if (i < nslice)
                zs.push_back(z);
        }
        if (zs.empty())
            zs.push_back(0);
        for (int z : zs) {
            double ipp[3];
            slice_ipp(g, z, ipp);
            FGPlanePosPatient *pos = FGPlanePosPatient::createMinimal(
                ds(ipp[0]).c_str(), ds(ipp[1]).c_str(), ds(ipp[2]).c_str());
            fc.setDimensionIndexValues(segno, 0);
            fc.setDimensionIndexValues((Uint32)z + 1, 1);
            fgseg.setReferencedSegmentNumber(segno);
            OFVector<ImageSOPInstanceReferenceMacro> refs;
            for (size_t k : sources_for(sources, g.normal, ipp, thick)) {
                ImageSOPInstanceReferenceMacro r;
                r.setReferencedSOPClassUID(sources[k].sop_class.c_str());
                r.setReferencedSOPInstanceUID(sources[k].sop_instance.c_str());
                refs.push_back(r);
            }
            FGDerivationImage *der = DcmSegmentation::createDerivationImageFG(
                refs, o->derivation_description ? o->derivation_description : "");
            OFVector<FGBase *> per;
            per.push_back(pos);
            per.push_back(&fc);
            per.push_back(&fgseg);
            if (der)
                per.push_back(der);
            c = seg->addFrame(m->data + (size_t)z * nslice, segno, per);
            delete pos;
            delete der;
            if (c.bad()) {
                why = std::string("add frame: ") + c.text();
                goto fail;
            }
        }
    }
    {
        IODMultiframeDimensionModule &dims = seg->getDimensions();
        if (dims.addDimensionIndex(DCM_ReferencedSegmentNumber, dim_uid.c_str(),
                                   DCM_SegmentIdentificationSequence, "ReferencedSegmentNumber")
                .bad() ||
            dims.addDimensionIndex(DCM_ImagePositionPatient, dim_uid.c_str(),
                                   DCM_PlanePositionSequence, "ImagePositionPatient")
                .bad()) {
            why = "dimension index";
            goto fail;
        }
    }
    {
        DcmFileFormat ff;
        DcmDataset *d = ff.getDataset();
        c = seg->writeDataset(*d);
        if (c.bad()) {
            why = std::string("write dataset: ") + c.text();
            goto fail;
        }
        /* patient and study exactly as the source has them (dcmseg keeps only what its IOD
         * rules know; we promise every attribute, empty ones included) */
        if ((rc = copy_patient_study(src, d)))
            return rc;
        copy_if_present(src, d, {DCM_BodyPartExamined, DCM_Laterality});
        /* Common Instance Reference: the source series and every referenced instance */
        DcmItem *rs = NULL;
        if (d->findOrCreateSequenceItem(DCM_ReferencedSeriesSequence, rs, 0).good()) {
            rs->putAndInsertString(
                DCM_SeriesInstanceUID,
                (sources[0].series_uid.empty() ? src_series : sources[0].series_uid).c_str());
            for (const src_slice &s : sources) {
                DcmItem *ri = NULL;
                if (rs->findOrCreateSequenceItem(DCM_ReferencedInstanceSequence, ri, -2).good()) {
                    ri->putAndInsertString(DCM_ReferencedSOPClassUID, s.sop_class.c_str());
                    ri->putAndInsertString(DCM_ReferencedSOPInstanceUID, s.sop_instance.c_str());
                }
            }
        }
        if ((rc = save_atomic(ff, out_path)))
            return rc;
        rp_fsync_path(dir_of(out_path).c_str(), 1);
        RP_INFO(MOD, "SEG written series_uid=%s segments=%zu frames=%zu path=%s",
                series_uid.c_str(), n, (size_t)seg->getNumberOfFrames(), out_path);
    }
    return 0;
fail:
    RP_ERROR(MOD, "cannot build SEG path=%s reason=\"%s\"", out_path, why.c_str());
    return RP_EINTERNAL;
}

/* ------------------------------------------------------------ rule outputs (process.c) */

namespace rpw
{

int has_word(const char *text, const char *word)
{
    if (!text)
        return 0;
    size_t n = strlen(word);
    for (const char *p = text; (p = strcasestr(p, word)) != NULL; p += n) {
        int start = p == text || p[-1] == ' ' || p[-1] == ',' || p[-1] == '\t';
        int end = p[n] == 0 || p[n] == ' ' || p[n] == ',' || p[n] == '\t';
        if (start && end)
            return 1;
    }
    return 0;
}

} // namespace rpw

extern "C" int rp_derived_write_outputs(const rp_derived_request *r, size_t *n_written)
{
    if (n_written)
        *n_written = 0;
    if (!r || !r->ctx || !r->out_dir)
        return RP_EINVAL;
    const int want_series = has_word(r->outputs, "dicom");
    /* masks worth a SEG: not the assembler's pixel-padding bookkeeping */
    rp_mask *segmasks[RP_MAX_MASKS];
    size_t nseg = 0;
    for (int i = 0; i < r->ctx->n_masks; i++)
        if (r->ctx->masks[i] && strcmp(r->ctx->masks[i]->name, "padding") != 0)
            segmasks[nseg++] = r->ctx->masks[i];
    const int want_overlay = has_word(r->outputs, "overlay");
    const int want_sr = has_word(r->outputs, "sr");
    /* the report references the masks' segments: "sr" writes the SEG too (whether a
     * destination receives it is the outbox's choice) */
    const int want_seg = (has_word(r->outputs, "seg") || want_sr) && nseg > 0;
    if (!want_series && !want_seg && !want_overlay && !want_sr)
        return 0;
    if (!r->src_files || r->n_src == 0)
        return RP_EINVAL;
    const rp_step_ctx *ctx = r->ctx;
    std::string dir = std::string(r->out_dir) + "/dicom";
    rp_derived_opts o;
    rp_derived_opts_init(&o);
    o.uid_root = r->uid_root;
    o.recipe = r->recipe;
    o.derivation_description = r->recipe;
    o.src_slice_files = r->src_files;
    o.n_src_slices = r->n_src;
    std::string src_desc = ctx->info ? ctx->info->series_description : "";
    std::string desc = (src_desc.empty() ? std::string("") : src_desc + " ") +
                       "[radprep: " + (r->rule_name && *r->rule_name ? r->rule_name : "derived") +
                       "]";
    if (desc.size() > 64)
        desc = desc.substr(0, 64);
    o.series_description = desc.c_str();
    const int is_ct = ctx->info && !strcmp(ctx->info->modality, "CT");
    o.values_physical = is_ct && ctx->hu_known && ctx->hu_scale == 1.0 && ctx->hu_offset == 0.0;
    if (o.values_physical && ctx->info && ctx->info->window_width > 0) {
        o.window_center = ctx->info->window_center;
        o.window_width = ctx->info->window_width;
    }
    size_t n = 0;
    int rc = 0;
    if (want_series && ctx->vol) {
        char **paths = NULL;
        size_t np = 0;
        rc = rp_derived_write_series(&o, ctx->vol, r->src_files[0], dir.c_str(), &paths, &np);
        if (rc)
            return rc;
        rp_derived_paths_free(paths, np);
        n += np;
    }
    if (want_seg) {
        if ((rc = rp_mkdir_p(dir.c_str(), 0750)))
            return rc;
        std::string seg_desc =
            (src_desc.empty() ? std::string("") : src_desc + " ") + "[radprep: masks]";
        if (seg_desc.size() > 64)
            seg_desc = seg_desc.substr(0, 64);
        o.series_description = seg_desc.c_str();
        std::string path = dir + "/seg.dcm";
        rc = rp_derived_write_seg(&o, segmasks, nseg, r->src_files[0], r->src_files, r->n_src,
                                  path.c_str());
        if (rc)
            return rc;
        n++;
    }
    const rp_volume *srcv = r->src_vol ? r->src_vol : ctx->vol;
    const std::string rule = r->rule_name && *r->rule_name ? r->rule_name : "derived";
    if (want_overlay && srcv) {
        rp_overlay_opts ov;
        memset(&ov, 0, sizeof ov);
        ov.uid_root = r->uid_root;
        std::string names;
        for (size_t i = 0; i < nseg; i++)
            names += (i ? " " : "") + std::string(segmasks[i]->name);
        for (char &c : names)
            c = (char)toupper((unsigned char)c);
        std::string odesc =
            (names.empty() ? std::string("NO") : names) + " MASK overlay [radprep: " + rule + "]";
        if (odesc.size() > 64)
            odesc = odesc.substr(0, 64);
        ov.series_description = odesc.c_str();
        ov.caption = r->caption;
        ov.single_frame = r->overlay_single_frame;
        ov.src_slice_files = r->src_files;
        ov.n_src_slices = r->n_src;
        if (r->src_hu && ctx->info && ctx->info->window_width > 0) {
            ov.window_center = ctx->info->window_center;
            ov.window_width = ctx->info->window_width;
        }
        char **paths = NULL;
        size_t np = 0;
        rc = rp_overlay_write(&ov, srcv, segmasks, nseg, r->src_files[0], dir.c_str(), &paths, &np);
        if (rc)
            return rc;
        rp_derived_paths_free(paths, np);
        n += np;
    }
    if (want_sr) {
        if ((rc = rp_mkdir_p(dir.c_str(), 0750)))
            return rc;
        rp_sr_opts so;
        memset(&so, 0, sizeof so);
        so.uid_root = r->uid_root;
        std::string sdesc = "Measurements [radprep: " + rule + "]";
        if (sdesc.size() > 64)
            sdesc = sdesc.substr(0, 64);
        so.series_description = sdesc.c_str();
        so.values_hu =
            r->src_vol ? r->src_hu
                       : (is_ct && ctx->hu_known && ctx->hu_scale == 1.0 && ctx->hu_offset == 0.0);
        std::string segp = dir + "/seg.dcm";
        so.seg_file = want_seg ? segp.c_str() : NULL;
        so.findings = r->qc_findings;
        so.n_findings = r->n_qc;
        so.src_slice_files = r->src_files;
        so.n_src_slices = r->n_src;
        std::string path = dir + "/sr.dcm";
        rc = rp_sr_write(&so, segmasks, nseg, srcv, r->src_files[0], path.c_str());
        if (rc)
            return rc;
        n++;
    }
    if (n_written)
        *n_written = n;
    return 0;
}
