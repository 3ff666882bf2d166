// pipeline/dicom_decode.cc — dcmtk adapter: header reading and pixel decoding for the
// pipeline (contract in pipeline/dicom.h). JPEG 2000 goes through OpenJPEG because Debian's
// dcmtk 3.6.7 has no J2K codec: we cut the encapsulated fragments into frames ourselves.
#include "dicom/dicom.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcvr.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>

#include <openjpeg.h>

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <strings.h>
#include <sys/mman.h>
#include <mutex>
#include <string>
#include <vector>

#include "common/common.h"
#include "dicom/guard_internal.h"
#include "dicom/mr_vendor_internal.h"

namespace
{

std::once_flag g_init_once;

void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void get_str(DcmItem *it, const DcmTagKey &tag, char *dst, size_t dstsz)
{
    OFString s;
    dst[0] = 0;
    if (it && it->findAndGetOFStringArray(tag, s).good()) {
        size_t b = 0, e = s.size();
        while (b < e && (s[b] == ' ' || s[b] == 0))
            b++;
        while (e > b && (s[e - 1] == ' ' || s[e - 1] == 0))
            e--;
        std::string t = s.substr(b, e - b).c_str();
        rp_strlcpy(dst, t.c_str(), dstsz);
    }
}

double get_f64(DcmItem *it, const DcmTagKey &tag, unsigned long pos = 0)
{
    Float64 v;
    if (it && it->findAndGetFloat64(tag, v, pos).good() && std::isfinite(v))
        return v;
    return NAN;
}

int get_int(DcmItem *it, const DcmTagKey &tag, int dflt, unsigned long pos = 0)
{
    Sint32 v;
    if (it && it->findAndGetSint32(tag, v, pos).good())
        return (int)v;
    Uint16 u;
    if (it && it->findAndGetUint16(tag, u, pos).good())
        return (int)u;
    Float64 d;
    if (it && it->findAndGetFloat64(tag, d, pos).good() && std::isfinite(d))
        return (int)d;
    return dflt;
}

int get_f64_n(DcmItem *it, const DcmTagKey &tag, double *out, int n)
{
    for (int i = 0; i < n; i++) {
        out[i] = get_f64(it, tag, i);
        if (std::isnan(out[i]))
            return 0;
    }
    return 1;
}

DcmItem *seq_item(DcmItem *parent, const DcmTagKey &seq, int idx = 0)
{
    DcmItem *it = NULL;
    if (parent && parent->findAndGetSequenceItem(seq, it, idx).good())
        return it;
    return NULL;
}

void read_lut(DcmItem *it, int signed_first, rp_dcm_lut *lut)
{
    memset(lut, 0, sizeof *lut);
    Uint16 d0 = 0, d2 = 0;
    Sint32 first = 0;
    if (it->findAndGetUint16(DCM_LUTDescriptor, d0, 0).bad())
        return;
    Uint16 d1u = 0;
    it->findAndGetUint16(DCM_LUTDescriptor, d1u, 1);
    first = signed_first ? (Sint16)d1u : d1u;
    it->findAndGetUint16(DCM_LUTDescriptor, d2, 2);
    lut->n_entries = d0 == 0 ? 65536 : d0;
    lut->first_mapped = first;
    lut->bits = d2;
    get_str(it, DCM_LUTExplanation, lut->explanation, sizeof lut->explanation);
    get_str(it, DCM_ModalityLUTType, lut->type, sizeof lut->type);
    const Uint16 *data = NULL;
    unsigned long count = 0;
    DcmElement *el = NULL;
    if (it->findAndGetElement(DCM_LUTData, el).good() && el) {
        if (el->getUint16Array(*(Uint16 **)&data).good())
            count = el->getLength() / 2;
        if (data && count > 0) {
            lut->data = (uint16_t *)calloc((size_t)lut->n_entries, sizeof(uint16_t));
            if (!lut->data) {
                lut->n_entries = 0;
                return;
            }
            if (lut->bits <= 8 && count * 2 >= (unsigned long)lut->n_entries &&
                count < (unsigned long)lut->n_entries) {
                /* 8-bit entries packed two per OW word */
                const uint8_t *b = (const uint8_t *)data;
                for (int i = 0; i < lut->n_entries; i++)
                    lut->data[i] = b[i];
            } else {
                for (unsigned long i = 0; i < count && i < (unsigned long)lut->n_entries; i++)
                    lut->data[i] = data[i];
            }
        }
    }
    if (!lut->data)
        lut->n_entries = 0;
}

} // namespace

/* Siemens CSA header (SV10): find a tag's first items. Returns the number of items read.
 * Shared with mr_vendor.cc (mr_vendor_internal.h). */
int rp_dcm_csa_find(const uint8_t *p, size_t n, const char *name, double *vals, int maxvals)
{
    if (!p || n < 16 || memcmp(p, "SV10", 4) != 0)
        return 0;
    auto u32 = [&](size_t off) -> uint32_t {
        uint32_t v;
        memcpy(&v, p + off, 4);
        return v;
    };
    uint32_t ntags = u32(8);
    size_t off = 16;
    if (ntags > 1000)
        return 0;
    for (uint32_t t = 0; t < ntags; t++) {
        if (off + 84 > n)
            return 0;
        char tname[65];
        memcpy(tname, p + off, 64);
        tname[64] = 0;
        uint32_t nitems = u32(off + 76);
        off += 84;
        if (nitems > 10000)
            return 0;
        int match = strcmp(tname, name) == 0;
        int got = 0;
        for (uint32_t i = 0; i < nitems; i++) {
            if (off + 16 > n)
                return 0;
            uint32_t len = u32(off);
            off += 16;
            if (len > n - off)
                return 0;
            if (match && got < maxvals && len > 0) {
                char buf[64];
                size_t l = len < 63 ? len : 63;
                memcpy(buf, p + off, l);
                buf[l] = 0;
                char *end = NULL;
                double v = strtod(buf, &end);
                if (end != buf)
                    vals[got++] = v;
            }
            off += (len + 3) & ~3u;
        }
        if (match)
            return got;
    }
    return 0;
}

namespace
{

void read_csa(DcmDataset *ds, rp_dcm_info *in)
{
    /* The CSA image header lives in the block reserved by creator "SIEMENS CSA HEADER". */
    for (Uint16 blk = 0x10; blk <= 0xFF; blk++) {
        OFString creator;
        if (ds->findAndGetOFString(DcmTagKey(0x0029, blk), creator).bad())
            continue;
        if (creator.find("SIEMENS CSA HEADER") == OFString_npos)
            continue;
        const Uint8 *p = NULL;
        unsigned long n = 0;
        DcmTagKey key(0x0029, (Uint16)((blk << 8) | 0x10));
        if (ds->findAndGetUint8Array(key, p, &n).bad() || !p)
            return;
        double v[3];
        if (rp_dcm_csa_find(p, n, "NumberOfImagesInMosaic", v, 1) == 1 && v[0] > 1)
            in->mosaic_images = (int)v[0];
        if (rp_dcm_csa_find(p, n, "SliceNormalVector", v, 3) == 3) {
            memcpy(in->csa_slice_normal, v, sizeof v);
            in->has_csa_slice_normal = 1;
        }
        return;
    }
}

/* UIH "VFRAME" mosaic: tile count in (0065,1050), tile size "WxH" as "64*64" in (0065,1004),
 * and one item per tile in (0065,1051) holding that tile's Image Position (Patient). The
 * private block is found by its creator, as for any private tag. */
void read_uih_mosaic(DcmDataset *ds, rp_dcm_info *in)
{
    for (Uint16 blk = 0x10; blk <= 0xFF; blk++) {
        OFString creator;
        if (ds->findAndGetOFString(DcmTagKey(0x0065, blk), creator).bad())
            continue;
        if (creator.find("Image Private Header") == OFString_npos)
            continue;
        Uint16 el = (Uint16)(blk << 8);
        int n = (int)get_f64(ds, DcmTagKey(0x0065, (Uint16)(el | 0x50)));
        char size[32] = "";
        get_str(ds, DcmTagKey(0x0065, (Uint16)(el | 0x04)), size, sizeof size);
        int tw = 0, th = 0;
        if (n < 2 || n > 4096 || sscanf(size, "%d*%d", &tw, &th) != 2 || tw < 1 || th < 1 ||
            in->cols % tw || in->rows % th || (in->cols / tw) * (in->rows / th) < n)
            return;
        DcmSequenceOfItems *sq = NULL;
        if (ds->findAndGetSequence(DcmTagKey(0x0065, (Uint16)(el | 0x51)), sq).bad() || !sq ||
            sq->card() != (unsigned long)n)
            return;
        double *ipp = (double *)calloc((size_t)n * 3, sizeof(double));
        if (!ipp)
            return;
        for (int t = 0; t < n; t++)
            if (!get_f64_n(sq->getItem((unsigned long)t), DCM_ImagePositionPatient, ipp + 3 * t,
                           3)) {
                free(ipp);
                return;
            }
        in->mosaic_images = n;
        in->mosaic_tiles_x = in->cols / tw;
        in->mosaic_tiles_y = in->rows / th;
        in->mosaic_ipp = ipp;
        return;
    }
}

/* Image kind from Complex Image Component (when it says) and the Image Type values: the
 * third and fourth values carry it (Siemens "M"/"P"/"R"/"I", Philips "M_FFE"/"PHASE MAP"/
 * "B0 MAP" and a repeated one-letter value). */
rp_dcm_kind kind_of(const char *component, const char *image_type)
{
    if (!strcmp(component, "PHASE"))
        return RP_DCM_KIND_PHASE;
    if (!strcmp(component, "REAL"))
        return RP_DCM_KIND_REAL;
    if (!strcmp(component, "IMAGINARY"))
        return RP_DCM_KIND_IMAGINARY;
    if (!strcmp(component, "MAGNITUDE"))
        return RP_DCM_KIND_MAGNITUDE;
    char buf[128];
    rp_strlcpy(buf, image_type, sizeof buf);
    char *save = NULL;
    int idx = 0;
    for (char *t = strtok_r(buf, "\\", &save); t; t = strtok_r(NULL, "\\", &save), idx++) {
        if (idx < 2 || idx > 3)
            continue;
        if (strstr(t, "B0 MAP") || strstr(t, "B0_MAP") || !strcmp(t, "B0"))
            return RP_DCM_KIND_FIELDMAP;
        if (!strcmp(t, "P") || !strcmp(t, "PHASE") || strstr(t, "PHASE MAP") ||
            !strncmp(t, "P_", 2))
            return RP_DCM_KIND_PHASE;
        if (!strcmp(t, "R") || !strcmp(t, "REAL") || !strncmp(t, "R_", 2))
            return RP_DCM_KIND_REAL;
        if (!strcmp(t, "I") || !strcmp(t, "IMAGINARY") || !strncmp(t, "I_", 2))
            return RP_DCM_KIND_IMAGINARY;
    }
    return RP_DCM_KIND_MAGNITUDE;
}

/* Fill frame values from one functional-group item (shared or per-frame). */
void read_fg(DcmItem *g, rp_dcm_frame *f)
{
    if (!g)
        return;
    DcmItem *it;
    double v[6];
    if ((it = seq_item(g, DCM_PlanePositionSequence)) &&
        get_f64_n(it, DCM_ImagePositionPatient, v, 3)) {
        memcpy(f->ipp, v, 3 * sizeof(double));
        f->has_ipp = 1;
    }
    if ((it = seq_item(g, DCM_PlaneOrientationSequence)) &&
        get_f64_n(it, DCM_ImageOrientationPatient, v, 6)) {
        memcpy(f->iop, v, 6 * sizeof(double));
        f->has_iop = 1;
    }
    if ((it = seq_item(g, DCM_PixelMeasuresSequence))) {
        if (get_f64_n(it, DCM_PixelSpacing, v, 2)) {
            memcpy(f->pixel_spacing, v, 2 * sizeof(double));
            f->has_spacing = 1;
        }
        double t = get_f64(it, DCM_SliceThickness);
        if (!std::isnan(t))
            f->slice_thickness = t;
    }
    if ((it = seq_item(g, DCM_PixelValueTransformationSequence))) {
        double s = get_f64(it, DCM_RescaleSlope), i = get_f64(it, DCM_RescaleIntercept);
        if (!std::isnan(s) && !std::isnan(i) && s != 0) {
            f->slope = s;
            f->intercept = i;
            f->has_rescale = 1;
        }
    }
    if ((it = seq_item(g, DCM_MRImageFrameTypeSequence))) {
        char comp[17] = "", ft[128] = "";
        get_str(it, DCM_ComplexImageComponent, comp, sizeof comp);
        get_str(it, DCM_FrameType, ft, sizeof ft);
        if (comp[0] || ft[0])
            f->kind = kind_of(comp, ft);
    }
    if ((it = seq_item(g, DCM_FrameContentSequence))) {
        f->temporal_position = get_int(it, DCM_TemporalPositionIndex, f->temporal_position);
        f->stack_position = get_int(it, DCM_InStackPositionNumber, f->stack_position);
        get_str(it, DCM_StackID, f->stack_id, sizeof f->stack_id);
        int k = 0;
        for (; k < 8; k++) {
            int d = get_int(it, DCM_DimensionIndexValues, INT32_MIN, k);
            if (d == INT32_MIN)
                break;
            f->dim_index[k] = d;
        }
        if (k)
            f->n_dim_index = k;
    }
    if ((it = seq_item(g, DCM_MREchoSequence))) {
        double te = get_f64(it, DCM_EffectiveEchoTime);
        if (!std::isnan(te))
            f->echo_time = te;
    }
    if ((it = seq_item(g, DCM_MRDiffusionSequence))) {
        double b = get_f64(it, DCM_DiffusionBValue);
        if (!std::isnan(b))
            f->b_value = b;
        DcmItem *gd = seq_item(it, DCM_DiffusionGradientDirectionSequence);
        if (gd && get_f64_n(gd, DCM_DiffusionGradientOrientation, v, 3))
            memcpy(f->b_vec, v, 3 * sizeof(double));
    }
    if ((it = seq_item(g, DCM_CardiacSynchronizationSequence))) {
        double t = get_f64(it, DCM_NominalCardiacTriggerDelayTime);
        if (!std::isnan(t))
            f->trigger_time = t;
    }
    if ((it = seq_item(g, DCM_FrameVOILUTSequence))) {
        double c = get_f64(it, DCM_WindowCenter), w = get_f64(it, DCM_WindowWidth);
        if (!std::isnan(c) && !std::isnan(w)) {
            f->window_center = c;
            f->window_width = w;
        }
    }
}

rp_dcm_stype stype_for(int bits_alloc, int pixrep)
{
    if (bits_alloc <= 8)
        return pixrep ? RP_DCM_S8 : RP_DCM_U8;
    if (bits_alloc <= 16)
        return pixrep ? RP_DCM_S16 : RP_DCM_U16;
    return pixrep ? RP_DCM_S32 : RP_DCM_U32;
}

bool is_j2k(E_TransferSyntax xs, const char *uid)
{
    (void)xs;
    return !strcmp(uid, "1.2.840.10008.1.2.4.90") || !strcmp(uid, "1.2.840.10008.1.2.4.91") ||
           !strcmp(uid, "1.2.840.10008.1.2.4.92") || !strcmp(uid, "1.2.840.10008.1.2.4.93") ||
           !strcmp(uid, "1.2.840.10008.1.2.4.201") || !strcmp(uid, "1.2.840.10008.1.2.4.202") ||
           !strcmp(uid, "1.2.840.10008.1.2.4.203");
}

/* Load a file; lazy: elements larger than 4 KiB stay on disk until accessed. */
OFCondition load(DcmFileFormat &ff, const char *path, bool lazy)
{
    return ff.loadFile(path, EXS_Unknown, EGL_noChange, lazy ? 4096 : DCM_MaxReadLength,
                       ERM_autoDetect);
}

} // namespace

extern "C" void rp_dcm_global_init(void)
{
    std::call_once(g_init_once, [] {
        /* dcmtk's own logger would print to stderr; our errors go through rp_log. */
        OFLog::configure(OFLogger::FATAL_LOG_LEVEL);
        /* Elements a forwarding node did not know arrive as VR UN (explicit VR): read them
         * with the VR of the data dictionary, or their values are bytes (no geometry, hex
         * names). Process-wide in dcmtk; header.cc sets it too. */
        dcmEnableUnknownVRConversion.set(OFTrue);
        DcmRLEDecoderRegistration::registerCodecs();
        DJDecoderRegistration::registerCodecs();
        DJLSDecoderRegistration::registerCodecs();
    });
}

extern "C" size_t rp_dcm_stype_size(rp_dcm_stype t)
{
    switch (t) {
    case RP_DCM_U8:
    case RP_DCM_S8:
        return 1;
    case RP_DCM_U16:
    case RP_DCM_S16:
        return 2;
    default:
        return 4;
    }
}

extern "C" size_t rp_dcm_frame_bytes(const rp_dcm_info *in)
{
    return (size_t)in->rows * in->cols * (in->samples_per_pixel > 0 ? in->samples_per_pixel : 1) *
           rp_dcm_stype_size(in->stype);
}

extern "C" void rp_dcm_info_free(rp_dcm_info *in)
{
    if (!in)
        return;
    free(in->modality_lut.data);
    for (int i = 0; i < RP_DCM_MAX_VOI_LUTS; i++)
        free(in->voi_lut[i].data);
    free(in->frame);
    free(in->mosaic_ipp);
    free(in->tile_times_ms);
    free(in);
}

static int load_checked(DcmFileFormat &ff, const char *path, char *err, size_t errlen)
{
    int grc = rp_dcm_guard(path, err, errlen);
    if (grc)
        return grc;
    OFCondition c = load(ff, path, true);
    if (c.bad()) {
        if (c == EC_StreamNotifyClient)
            seterr(err, errlen, "truncated or not DICOM: the data ends inside an element (%s)",
                   c.text());
        else
            seterr(err, errlen, "not readable as DICOM: %s", c.text());
        return RP_EPARSE;
    }
    return 0;
}

static int parse_info(DcmFileFormat &ff, const char *path, rp_dcm_info **out, char *err,
                      size_t errlen)
{
    *out = NULL;
    DcmDataset *ds = ff.getDataset();
    rp_dcm_to_utf8(ds);
    OFCondition c;
    rp_dcm_info *in = (rp_dcm_info *)calloc(1, sizeof *in);
    if (!in)
        return RP_ENOMEM;
    rp_strlcpy(in->path, path, sizeof in->path);
    DcmXfer xf(ds->getOriginalXfer());
    rp_strlcpy(in->transfer_syntax_uid, xf.getXferID(), sizeof in->transfer_syntax_uid);
    DcmItem *meta = ff.getMetaInfo();
    char ts_meta[65] = "";
    get_str(meta, DCM_TransferSyntaxUID, ts_meta, sizeof ts_meta);
    if (ts_meta[0] && xf.getXfer() != EXS_Unknown && strcmp(ts_meta, in->transfer_syntax_uid) &&
        !strcmp(ts_meta, "1.2.840.10008.1.2.1.99"))
        rp_strlcpy(in->transfer_syntax_uid, ts_meta, sizeof in->transfer_syntax_uid);

    get_str(ds, DCM_SOPClassUID, in->sop_class_uid, sizeof in->sop_class_uid);
    if (!in->sop_class_uid[0])
        get_str(meta, DCM_MediaStorageSOPClassUID, in->sop_class_uid, sizeof in->sop_class_uid);
    get_str(ds, DCM_SOPInstanceUID, in->sop_instance_uid, sizeof in->sop_instance_uid);
    get_str(ds, DCM_StudyInstanceUID, in->study_uid, sizeof in->study_uid);
    get_str(ds, DCM_SeriesInstanceUID, in->series_uid, sizeof in->series_uid);
    get_str(ds, DCM_FrameOfReferenceUID, in->frame_of_reference_uid,
            sizeof in->frame_of_reference_uid);
    get_str(ds, DCM_Modality, in->modality, sizeof in->modality);
    get_str(ds, DCM_Manufacturer, in->manufacturer, sizeof in->manufacturer);
    get_str(ds, DCM_ManufacturerModelName, in->model, sizeof in->model);
    get_str(ds, DCM_SoftwareVersions, in->software_versions, sizeof in->software_versions);
    get_str(ds, DCM_StationName, in->station_name, sizeof in->station_name);
    get_str(ds, DCM_SeriesDescription, in->series_description, sizeof in->series_description);
    get_str(ds, DCM_ProtocolName, in->protocol_name, sizeof in->protocol_name);
    get_str(ds, DCM_BodyPartExamined, in->body_part, sizeof in->body_part);
    get_str(ds, DCM_PatientPosition, in->patient_position, sizeof in->patient_position);
    get_str(ds, DCM_ImageType, in->image_type, sizeof in->image_type);
    get_str(ds, DCM_SequenceName, in->sequence_name, sizeof in->sequence_name);
    get_str(ds, DCM_ScanningSequence, in->scanning_sequence, sizeof in->scanning_sequence);
    get_str(ds, DCM_SequenceVariant, in->sequence_variant, sizeof in->sequence_variant);
    get_str(ds, DCM_ConvolutionKernel, in->convolution_kernel, sizeof in->convolution_kernel);
    get_str(ds, DCM_StudyDate, in->study_date, sizeof in->study_date);
    get_str(ds, DCM_StudyTime, in->study_time, sizeof in->study_time);
    get_str(ds, DCM_SeriesTime, in->series_time, sizeof in->series_time);
    get_str(ds, DCM_AcquisitionTime, in->acquisition_time, sizeof in->acquisition_time);
    get_str(ds, DCM_AcquisitionDateTime, in->acquisition_date_time,
            sizeof in->acquisition_date_time);
    in->series_number = get_int(ds, DCM_SeriesNumber, -1);
    in->instance_number = get_int(ds, DCM_InstanceNumber, -1);
    in->acquisition_number = get_int(ds, DCM_AcquisitionNumber, -1);
    in->repetition_time = get_f64(ds, DCM_RepetitionTime);
    in->echo_time = get_f64(ds, DCM_EchoTime);
    in->inversion_time = get_f64(ds, DCM_InversionTime);
    in->flip_angle = get_f64(ds, DCM_FlipAngle);
    in->field_strength = get_f64(ds, DCM_MagneticFieldStrength);
    in->imaging_frequency = get_f64(ds, DCM_ImagingFrequency);
    in->kvp = get_f64(ds, DCM_KVP);
    in->exposure_mas = get_f64(ds, DCM_Exposure);
    in->tube_current_ma = get_f64(ds, DCM_XRayTubeCurrent);
    in->slice_thickness = get_f64(ds, DCM_SliceThickness);
    in->spacing_between_slices = get_f64(ds, DCM_SpacingBetweenSlices);
    in->gantry_tilt = get_f64(ds, DCM_GantryDetectorTilt);
    in->pixel_bandwidth = get_f64(ds, DCM_PixelBandwidth);
    in->echo_train_length = get_f64(ds, DCM_EchoTrainLength);
    get_str(ds, DCM_PatientName, in->patient_name, sizeof in->patient_name);
    get_str(ds, DCM_PatientID, in->patient_id, sizeof in->patient_id);
    get_str(ds, DCM_PatientBirthDate, in->patient_birth_date, sizeof in->patient_birth_date);
    get_str(ds, DCM_PatientSex, in->patient_sex, sizeof in->patient_sex);
    get_str(ds, DCM_PatientAge, in->patient_age, sizeof in->patient_age);
    in->patient_weight = get_f64(ds, DCM_PatientWeight);
    get_str(ds, DCM_AccessionNumber, in->accession_number, sizeof in->accession_number);
    get_str(ds, DCM_StudyDescription, in->study_description, sizeof in->study_description);
    get_str(ds, DCM_InstitutionName, in->institution_name, sizeof in->institution_name);
    get_str(ds, DCM_PresentationIntentType, in->presentation_intent,
            sizeof in->presentation_intent);
    get_str(ds, DCM_PresentationLUTShape, in->presentation_lut_shape,
            sizeof in->presentation_lut_shape);

    /* image pixel module */
    in->rows = get_int(ds, DCM_Rows, 0);
    in->cols = get_int(ds, DCM_Columns, 0);
    in->frames = get_int(ds, DCM_NumberOfFrames, 1);
    if (in->frames < 1)
        in->frames = 1;
    in->samples_per_pixel = get_int(ds, DCM_SamplesPerPixel, 1);
    in->bits_allocated = get_int(ds, DCM_BitsAllocated, 0);
    in->bits_stored = get_int(ds, DCM_BitsStored, in->bits_allocated);
    in->high_bit = get_int(ds, DCM_HighBit, in->bits_stored - 1);
    in->pixel_representation = get_int(ds, DCM_PixelRepresentation, 0) ? 1 : 0;
    in->planar_configuration = get_int(ds, DCM_PlanarConfiguration, -1);
    get_str(ds, DCM_PhotometricInterpretation, in->photometric, sizeof in->photometric);
    in->stype = stype_for(in->bits_allocated, in->pixel_representation);
    DcmElement *pix = NULL;
    in->has_pixel_data = ds->findAndGetElement(DCM_PixelData, pix).good() && pix != NULL;

    /* modality / VOI / padding */
    in->rescale_slope = get_f64(ds, DCM_RescaleSlope);
    in->rescale_intercept = get_f64(ds, DCM_RescaleIntercept);
    in->has_rescale = !std::isnan(in->rescale_slope) && !std::isnan(in->rescale_intercept) &&
                      in->rescale_slope != 0;
    if (!in->has_rescale) {
        in->rescale_slope = 1;
        in->rescale_intercept = 0;
    }
    get_str(ds, DCM_RescaleType, in->rescale_type, sizeof in->rescale_type);
    DcmItem *it;
    if ((it = seq_item(ds, DCM_ModalityLUTSequence))) {
        read_lut(it, in->pixel_representation, &in->modality_lut);
        in->has_modality_lut = in->modality_lut.n_entries > 0;
    }
    for (int i = 0; i < RP_DCM_MAX_WINDOWS; i++) {
        double c = get_f64(ds, DCM_WindowCenter, i), w = get_f64(ds, DCM_WindowWidth, i);
        if (std::isnan(c) || std::isnan(w))
            break;
        in->window_center[i] = c;
        in->window_width[i] = w;
        OFString ex;
        if (ds->findAndGetOFString(DCM_WindowCenterWidthExplanation, ex, i).good())
            rp_strlcpy(in->window_explanation[i], ex.c_str(), sizeof in->window_explanation[i]);
        in->n_windows = i + 1;
    }
    get_str(ds, DCM_VOILUTFunction, in->voi_lut_function, sizeof in->voi_lut_function);
    for (int i = 0; i < RP_DCM_MAX_VOI_LUTS; i++) {
        if (!(it = seq_item(ds, DCM_VOILUTSequence, i)))
            break;
        read_lut(it, in->pixel_representation, &in->voi_lut[i]);
        if (in->voi_lut[i].n_entries > 0)
            in->n_voi_luts = i + 1;
    }
    {
        Uint16 u;
        Sint16 s;
        if (in->pixel_representation && ds->findAndGetSint16(DCM_PixelPaddingValue, s).good()) {
            in->has_padding_value = 1;
            in->padding_value = s;
        } else if (ds->findAndGetUint16(DCM_PixelPaddingValue, u).good()) {
            in->has_padding_value = 1;
            in->padding_value = in->pixel_representation ? (long)(Sint16)u : (long)u;
        }
        if (in->pixel_representation &&
            ds->findAndGetSint16(DCM_PixelPaddingRangeLimit, s).good()) {
            in->has_padding_range = 1;
            in->padding_range_limit = s;
        } else if (ds->findAndGetUint16(DCM_PixelPaddingRangeLimit, u).good()) {
            in->has_padding_range = 1;
            in->padding_range_limit = in->pixel_representation ? (long)(Sint16)u : (long)u;
        }
    }
    if (!strncmp(in->manufacturer, "SIEMENS", 7) || !strncmp(in->manufacturer, "Siemens", 7))
        read_csa(ds, in);
    if (!in->mosaic_images && strstr(in->image_type, "MOSAIC")) {
        int n = get_int(ds, DcmTagKey(0x0019, 0x100A), 0);
        if (n > 1)
            in->mosaic_images = n;
    }
    in->philips_scale_slope = NAN;
    if (!strncasecmp(in->manufacturer, "Philips", 7))
        for (Uint16 blk = 0x10; blk <= 0xFF; blk++) {
            OFString creator;
            Float32 ss;
            if (ds->findAndGetOFString(DcmTagKey(0x2005, blk), creator).good() &&
                creator.find("Philips MR Imaging DD 001") != OFString_npos) {
                if (ds->findAndGetFloat32(DcmTagKey(0x2005, (Uint16)((blk << 8) | 0x0E)), ss)
                        .good() &&
                    ss != 0)
                    in->philips_scale_slope = ss;
                break;
            }
        }
    if (!in->mosaic_images && !strncmp(in->manufacturer, "UIH", 3) &&
        strstr(in->image_type, "VFRAME"))
        read_uih_mosaic(ds, in);
    if (in->mosaic_images > 1 && !in->mosaic_tiles_x) {
        in->mosaic_tiles_x = (int)std::ceil(std::sqrt((double)in->mosaic_images));
        in->mosaic_tiles_y = in->mosaic_tiles_x;
    }

    /* sanity of the pixel matrix before anyone allocates for it */
    int rc = 0;
    if (in->has_pixel_data) {
        if (in->rows < 1 || in->cols < 1 || in->rows > 65535 || in->cols > 65535) {
            seterr(err, errlen, "Pixel Data present but Rows/Columns are %dx%d (damaged header?)",
                   in->rows, in->cols);
            rc = RP_EUNSUPPORTED;
        } else if (!(in->bits_allocated == 1 || in->bits_allocated == 8 ||
                     in->bits_allocated == 16 || in->bits_allocated == 32)) {
            seterr(err, errlen, "unsupported Bits Allocated %d", in->bits_allocated);
            rc = RP_EUNSUPPORTED;
        } else if (in->bits_stored < 1 || in->bits_stored > in->bits_allocated ||
                   in->high_bit >= in->bits_allocated || in->high_bit < in->bits_stored - 1) {
            seterr(err, errlen, "inconsistent Bits Stored %d / High Bit %d / Bits Allocated %d",
                   in->bits_stored, in->high_bit, in->bits_allocated);
            rc = RP_EUNSUPPORTED;
        } else if (in->samples_per_pixel != 1 && in->samples_per_pixel != 3) {
            seterr(err, errlen, "unsupported Samples per Pixel %d", in->samples_per_pixel);
            rc = RP_EUNSUPPORTED;
        } else {
            unsigned long long bits = (unsigned long long)in->rows * in->cols *
                                      in->samples_per_pixel * in->bits_allocated;
            unsigned long long need = (bits * (unsigned long long)in->frames + 7) / 8;
            if (need > (16ULL << 30)) {
                seterr(err, errlen, "declared pixel matrix %dx%dx%d is too large", in->rows,
                       in->cols, in->frames);
                rc = RP_EUNSUPPORTED;
            } else if (!xf.isEncapsulated() && pix && pix->getLength() != DCM_UndefinedLength &&
                       (unsigned long long)pix->getLength() < need) {
                seterr(err, errlen, "Pixel Data has %lu bytes, %dx%dx%d frames need %llu",
                       (unsigned long)pix->getLength(), in->rows, in->cols, in->frames, need);
                rc = RP_EUNSUPPORTED;
            }
        }
    }
    if (rc) {
        rp_dcm_info_free(in);
        return rc;
    }

    /* per-frame values: file level first, then shared, then per-frame groups */
    in->n_frames = in->frames;
    in->frame = (rp_dcm_frame *)calloc((size_t)in->n_frames, sizeof(rp_dcm_frame));
    if (!in->frame) {
        rp_dcm_info_free(in);
        return RP_ENOMEM;
    }
    rp_dcm_frame base;
    memset(&base, 0, sizeof base);
    double v[6];
    if (get_f64_n(ds, DCM_ImagePositionPatient, v, 3)) {
        memcpy(base.ipp, v, 3 * sizeof(double));
        base.has_ipp = 1;
    } else if (in->mosaic_ipp) {
        memcpy(base.ipp, in->mosaic_ipp, 3 * sizeof(double)); /* the first tile */
        base.has_ipp = 1;
    }
    if (get_f64_n(ds, DCM_ImageOrientationPatient, v, 6)) {
        memcpy(base.iop, v, 6 * sizeof(double));
        base.has_iop = 1;
    }
    if (get_f64_n(ds, DCM_PixelSpacing, v, 2) || get_f64_n(ds, DCM_ImagerPixelSpacing, v, 2)) {
        memcpy(base.pixel_spacing, v, 2 * sizeof(double));
        base.has_spacing = 1;
    }
    base.slice_thickness = in->slice_thickness;
    base.slope = in->rescale_slope;
    base.intercept = in->rescale_intercept;
    base.has_rescale = in->has_rescale;
    base.echo_time = in->echo_time;
    base.echo_number = get_int(ds, DCM_EchoNumbers, -1);
    base.temporal_position = get_int(ds, DCM_TemporalPositionIdentifier, -1);
    base.stack_position = -1;
    base.b_value = get_f64(ds, DCM_DiffusionBValue);
    base.b_vec[0] = base.b_vec[1] = base.b_vec[2] = NAN;
    if (get_f64_n(ds, DCM_DiffusionGradientOrientation, v, 3))
        memcpy(base.b_vec, v, 3 * sizeof(double));
    base.trigger_time = get_f64(ds, DCM_TriggerTime);
    {
        char comp[17] = "";
        get_str(ds, DCM_ComplexImageComponent, comp, sizeof comp);
        base.kind = kind_of(comp, in->image_type);
    }
    base.window_center = in->n_windows ? in->window_center[0] : NAN;
    base.window_width = in->n_windows ? in->window_width[0] : NAN;
    DcmItem *shared = seq_item(ds, DCM_SharedFunctionalGroupsSequence);
    DcmSequenceOfItems *perframe = NULL;
    ds->findAndGetSequence(DCM_PerFrameFunctionalGroupsSequence, perframe);
    in->enhanced = shared != NULL || perframe != NULL;
    if (shared) {
        read_fg(shared, &base);
        DcmItem *t = seq_item(shared, DCM_MRTimingAndRelatedParametersSequence);
        if (t) {
            double tr = get_f64(t, DCM_RepetitionTime), fa = get_f64(t, DCM_FlipAngle);
            if (!std::isnan(tr))
                in->repetition_time = tr;
            if (!std::isnan(fa))
                in->flip_angle = fa;
        }
        if (std::isnan(in->slice_thickness))
            in->slice_thickness = base.slice_thickness;
        if (!in->has_rescale && base.has_rescale) {
            in->rescale_slope = base.slope;
            in->rescale_intercept = base.intercept;
            in->has_rescale = 1;
        }
    }
    for (int f = 0; f < in->n_frames; f++) {
        in->frame[f] = base;
        if (perframe && (unsigned long)f < perframe->card())
            read_fg(perframe->getItem((unsigned long)f), &in->frame[f]);
    }
    if (in->enhanced && in->n_frames > 0) {
        if (std::isnan(in->echo_time))
            in->echo_time = in->frame[0].echo_time;
        if (!in->n_windows && !std::isnan(in->frame[0].window_center)) {
            in->window_center[0] = in->frame[0].window_center;
            in->window_width[0] = in->frame[0].window_width;
            in->n_windows = 1;
        }
    }
    rp_dcm_read_mr_vendor(ds, in);
    *out = in;
    return 0;
}

/* ---- pixel decoding ------------------------------------------------------------------- */

namespace
{

/* Copy `n` samples of width bits_allocated from src (local byte order) into dst of the
 * info's stype, keeping Bits Stored and sign-extending. */
void normalize_samples(const rp_dcm_info *in, const void *src, size_t n, void *dst)
{
    int shift = in->high_bit + 1 - in->bits_stored;
    int bs = in->bits_stored;
    uint32_t mask = bs >= 32 ? 0xFFFFFFFFu : ((1u << bs) - 1u);
    uint32_t sign = bs >= 32 ? 0x80000000u : (1u << (bs - 1));
    int sgn = in->pixel_representation;
    switch (in->stype) {
    case RP_DCM_U8:
    case RP_DCM_S8: {
        const uint8_t *s = (const uint8_t *)src;
        uint8_t *d = (uint8_t *)dst;
        for (size_t i = 0; i < n; i++) {
            uint32_t v = ((uint32_t)s[i] >> shift) & mask;
            if (sgn && (v & sign))
                v |= ~mask;
            d[i] = (uint8_t)v;
        }
        break;
    }
    case RP_DCM_U16:
    case RP_DCM_S16: {
        const uint16_t *s = (const uint16_t *)src;
        uint16_t *d = (uint16_t *)dst;
        if (shift == 0 && bs == 16) {
            if (s != d)
                memcpy(d, s, n * 2);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            uint32_t v = ((uint32_t)s[i] >> shift) & mask;
            if (sgn && (v & sign))
                v |= ~mask;
            d[i] = (uint16_t)v;
        }
        break;
    }
    default: {
        const uint32_t *s = (const uint32_t *)src;
        uint32_t *d = (uint32_t *)dst;
        for (size_t i = 0; i < n; i++) {
            uint32_t v = (s[i] >> shift) & mask;
            if (sgn && (v & sign))
                v |= ~mask;
            d[i] = v;
        }
    }
    }
}

/* Planar (RRR..GGG..BBB) to interleaved, in place through a temporary buffer. */
int planar_to_interleaved(const rp_dcm_info *in, uint8_t *frame)
{
    size_t npix = (size_t)in->rows * in->cols, ss = rp_dcm_stype_size(in->stype);
    std::vector<uint8_t> tmp(frame, frame + npix * 3 * ss);
    for (size_t p = 0; p < npix; p++)
        for (int c = 0; c < 3; c++)
            memcpy(frame + (p * 3 + c) * ss, tmp.data() + (c * npix + p) * ss, ss);
    return 0;
}

struct MemStream {
    const uint8_t *data;
    size_t len, pos;
};

OPJ_SIZE_T ms_read(void *buf, OPJ_SIZE_T n, void *ud)
{
    MemStream *m = (MemStream *)ud;
    if (m->pos >= m->len)
        return (OPJ_SIZE_T)-1;
    size_t k = m->len - m->pos < n ? m->len - m->pos : n;
    memcpy(buf, m->data + m->pos, k);
    m->pos += k;
    return k;
}
OPJ_OFF_T ms_skip(OPJ_OFF_T n, void *ud)
{
    MemStream *m = (MemStream *)ud;
    if (n < 0) {
        if ((size_t)(-n) > m->pos)
            n = -(OPJ_OFF_T)m->pos;
    } else if ((size_t)n > m->len - m->pos) {
        n = (OPJ_OFF_T)(m->len - m->pos);
    }
    m->pos += n;
    return n;
}
OPJ_BOOL ms_seek(OPJ_OFF_T n, void *ud)
{
    MemStream *m = (MemStream *)ud;
    if (n < 0 || (size_t)n > m->len)
        return OPJ_FALSE;
    m->pos = (size_t)n;
    return OPJ_TRUE;
}

struct OpjMsg {
    char text[200];
};
void opj_err_cb(const char *msg, void *ud)
{
    OpjMsg *m = (OpjMsg *)ud;
    if (!m->text[0]) {
        rp_strlcpy(m->text, msg, sizeof m->text);
        size_t l = strlen(m->text);
        while (l && (m->text[l - 1] == '\n'))
            m->text[--l] = 0;
    }
}
void opj_quiet_cb(const char *, void *) {}

/* Decode one J2K/JP2 codestream into dst (raw stored samples, the info's stype). */
int j2k_decode(const rp_dcm_info *in, const uint8_t *data, size_t len, void *dst, char *err,
               size_t errlen)
{
    if (len < 12) {
        seterr(err, errlen, "JPEG 2000 frame is empty");
        return RP_EDECODE;
    }
    /* skip leading padding some writers put before SOC */
    size_t start = 0;
    while (start + 1 < len && start < 64 && !(data[start] == 0xFF && data[start + 1] == 0x4F) &&
           !(start + 8 <= len && !memcmp(data + start + 4, "jP  ", 4)))
        start++;
    if (start >= 64 || start + 1 >= len)
        start = 0;
    bool jp2 = len - start >= 8 && !memcmp(data + start + 4, "jP  ", 4);
    opj_codec_t *codec = opj_create_decompress(jp2 ? OPJ_CODEC_JP2 : OPJ_CODEC_J2K);
    OpjMsg msg;
    msg.text[0] = 0;
    opj_set_error_handler(codec, opj_err_cb, &msg);
    opj_set_warning_handler(codec, opj_quiet_cb, NULL);
    opj_set_info_handler(codec, opj_quiet_cb, NULL);
    opj_dparameters_t p;
    opj_set_default_decoder_parameters(&p);
    opj_image_t *img = NULL;
    int rc = RP_EDECODE;
    MemStream ms = {data + start, len - start, 0};
    opj_stream_t *st = opj_stream_default_create(OPJ_TRUE);
    opj_stream_set_user_data(st, &ms, NULL);
    opj_stream_set_user_data_length(st, ms.len);
    opj_stream_set_read_function(st, ms_read);
    opj_stream_set_skip_function(st, ms_skip);
    opj_stream_set_seek_function(st, ms_seek);
    size_t npix = (size_t)in->rows * in->cols;
    int spp = in->samples_per_pixel;
    if (!opj_setup_decoder(codec, &p) || !opj_read_header(st, codec, &img) || !img) {
        seterr(err, errlen, "JPEG 2000 header: %s", msg.text[0] ? msg.text : "unreadable");
        goto out;
    }
    if ((int)(img->x1 - img->x0) != in->cols || (int)(img->y1 - img->y0) != in->rows ||
        (int)img->numcomps < spp) {
        seterr(err, errlen, "JPEG 2000 codestream is %ux%u with %u components, header says %dx%d",
               img->x1 - img->x0, img->y1 - img->y0, img->numcomps, in->cols, in->rows);
        goto out;
    }
    if (!opj_decode(codec, st, img) || !opj_end_decompress(codec, st)) {
        seterr(err, errlen, "JPEG 2000 decode: %s", msg.text[0] ? msg.text : "failed");
        goto out;
    }
    for (int c = 0; c < spp; c++) {
        opj_image_comp_t *cp = &img->comps[c];
        if (!cp->data || cp->w != (OPJ_UINT32)in->cols || cp->h != (OPJ_UINT32)in->rows) {
            seterr(err, errlen, "JPEG 2000 component %d has unexpected size", c);
            goto out;
        }
    }
    {
        /* OpenJPEG gives int32 per component; store in the stype with Bits Stored clamp. */
        size_t ss = rp_dcm_stype_size(in->stype);
        for (int c = 0; c < spp; c++) {
            const OPJ_INT32 *s = img->comps[c].data;
            uint8_t *d = (uint8_t *)dst;
            for (size_t i = 0; i < npix; i++) {
                int32_t v = s[i];
                size_t o = (i * spp + c) * ss;
                switch (in->stype) {
                case RP_DCM_U8:
                case RP_DCM_S8:
                    d[o] = (uint8_t)v;
                    break;
                case RP_DCM_U16:
                case RP_DCM_S16: {
                    uint16_t w = (uint16_t)v;
                    memcpy(d + o, &w, 2);
                    break;
                }
                default:
                    memcpy(d + o, &v, 4);
                }
            }
        }
        normalize_samples(in, dst, npix * spp, dst);
    }
    rc = 0;
out:
    if (img)
        opj_image_destroy(img);
    opj_stream_destroy(st);
    opj_destroy_codec(codec);
    return rc;
}

bool starts_codestream(const Uint8 *p, Uint32 len)
{
    if (len >= 4 && p[0] == 0xFF && p[1] == 0x4F && p[2] == 0xFF && p[3] == 0x51)
        return true;
    return len >= 12 && !memcmp(p + 4, "jP  ", 4);
}

/* Split the fragments (items 1..n) of an encapsulated pixel sequence into frames. */
int j2k_frames(DcmPixelSequence *seq, int nframes, std::vector<std::vector<DcmPixelItem *>> &out,
               char *err, size_t errlen)
{
    unsigned long nitems = seq->card();
    if (nitems < 2) {
        seterr(err, errlen, "encapsulated Pixel Data has no fragments");
        return RP_EDECODE;
    }
    std::vector<DcmPixelItem *> frags;
    for (unsigned long i = 1; i < nitems; i++) {
        DcmPixelItem *it = NULL;
        if (seq->getItem(it, i).bad() || !it)
            break;
        frags.push_back(it);
    }
    out.assign((size_t)nframes, {});
    if (nframes == 1) {
        out[0] = frags;
        return 0;
    }
    if ((int)frags.size() == nframes) {
        for (int f = 0; f < nframes; f++)
            out[f].push_back(frags[f]);
        return 0;
    }
    /* Basic Offset Table: byte offsets of each frame's first item, from the first item. */
    DcmPixelItem *bot = NULL;
    Uint8 *botp = NULL;
    if (seq->getItem(bot, 0).good() && bot && bot->getLength() >= 4u * nframes &&
        bot->getUint8Array(botp).good() && botp) {
        std::vector<Uint32> offs((size_t)nframes);
        memcpy(offs.data(), botp, 4u * nframes);
        Uint32 pos = 0;
        int f = -1;
        for (DcmPixelItem *it : frags) {
            while (f + 1 < nframes && offs[f + 1] <= pos)
                f++;
            if (f < 0)
                f = 0;
            out[f].push_back(it);
            pos += 8 + it->getLength();
        }
        return 0;
    }
    /* No table: a new frame starts with a codestream marker. */
    int f = -1;
    for (DcmPixelItem *it : frags) {
        Uint8 *p = NULL;
        if (it->getUint8Array(p).bad())
            p = NULL;
        if (p && starts_codestream(p, it->getLength()) && f + 1 < nframes)
            f++;
        if (f < 0)
            f = 0;
        out[f].push_back(it);
    }
    if (f + 1 != nframes) {
        seterr(err, errlen, "found %d JPEG 2000 frames, header declares %d", f + 1, nframes);
        return RP_EDECODE;
    }
    return 0;
}

} // namespace

static int decode_loaded(DcmFileFormat &ff, const rp_dcm_info *in, int first, int count, void *dst,
                         size_t dst_bytes, char *err, size_t errlen)
{
    if (!in->has_pixel_data) {
        seterr(err, errlen, "no Pixel Data");
        return RP_EDECODE;
    }
    if (first < 0 || count < 1 || first + count > in->frames) {
        seterr(err, errlen, "frames %d..%d out of range (%d frames)", first, first + count - 1,
               in->frames);
        return RP_EINVAL;
    }
    size_t fbytes = rp_dcm_frame_bytes(in);
    if (dst_bytes < fbytes * (size_t)count) {
        seterr(err, errlen, "destination buffer too small");
        return RP_EINVAL;
    }
    size_t fsamples = (size_t)in->rows * in->cols * in->samples_per_pixel;
    OFCondition c;
    DcmDataset *ds = ff.getDataset();
    DcmElement *el = NULL;
    /* dcmtk makes (7FE0,0010) a DcmPixelData only where it is the pixel data of the dataset;
     * a file can carry it with another VR (SQ, a string...) or elsewhere, and casting such an
     * element would call DcmPixelData's code on another class's object */
    if (ds->findAndGetElement(DCM_PixelData, el).bad() || !el || el->ident() != EVR_PixelData) {
        seterr(err, errlen, el ? "Pixel Data is not encoded as pixel data" : "no Pixel Data");
        return RP_EDECODE;
    }
    DcmPixelData *pd = OFstatic_cast(DcmPixelData *, el);
    E_TransferSyntax xs = ds->getOriginalXfer();
    DcmXfer xf(xs);
    uint8_t *out = (uint8_t *)dst;

    if (xf.isEncapsulated() && is_j2k(xs, in->transfer_syntax_uid)) {
        const DcmRepresentationParameter *rep = NULL;
        DcmPixelSequence *seq = NULL;
        if (pd->getEncapsulatedRepresentation(xs, rep, seq).bad() || !seq) {
            seterr(err, errlen, "encapsulated Pixel Data not found");
            return RP_EDECODE;
        }
        std::vector<std::vector<DcmPixelItem *>> frames;
        int rc = j2k_frames(seq, in->frames, frames, err, errlen);
        if (rc)
            return rc;
        std::vector<uint8_t> buf;
        for (int f = first; f < first + count; f++) {
            buf.clear();
            for (DcmPixelItem *it : frames[(size_t)f]) {
                Uint8 *p = NULL;
                Uint32 l = it->getLength();
                if (l == 0)
                    continue;
                if (it->getUint8Array(p).bad() || !p) {
                    seterr(err, errlen, "cannot read JPEG 2000 fragment of frame %d", f);
                    return RP_EDECODE;
                }
                buf.insert(buf.end(), p, p + l);
            }
            rc = j2k_decode(in, buf.data(), buf.size(), out + (size_t)(f - first) * fbytes, err,
                            errlen);
            if (rc)
                return rc;
        }
        return 0;
    }

    int planar = in->planar_configuration;
    if (xf.isEncapsulated()) {
        /* RLE, JPEG, JPEG-LS: dcmtk's registered decoders on the whole object (one file per
         * thread at a time). Frame-wise getUncompressedFrame() mis-joins RLE frames split over
         * several fragments in dcmtk 3.6.7, so the dataset is converted as a whole. */
        if (in->bits_allocated == 1) {
            seterr(err, errlen, "1-bit images in an encapsulated syntax are not supported");
            return RP_EUNSUPPORTED;
        }
        c = ds->chooseRepresentation(EXS_LittleEndianExplicit, NULL);
        if (c.bad() || !ds->canWriteXfer(EXS_LittleEndianExplicit)) {
            seterr(err, errlen, "decoding %s failed: %s", in->transfer_syntax_uid,
                   c.bad() ? c.text() : "no decoder for this transfer syntax");
            return RP_EDECODE;
        }
        if (ds->findAndGetElement(DCM_PixelData, el).bad() || !el ||
            el->ident() != EVR_PixelData) {
            seterr(err, errlen, "no Pixel Data after decoding");
            return RP_EDECODE;
        }
        pd = OFstatic_cast(DcmPixelData *, el);
        planar = get_int(ds, DCM_PlanarConfiguration, planar);
    }

    /* Native: dcmtk gives the value in local byte order. */
    if (in->bits_allocated == 1) {
        Uint8 *p = NULL;
        if (pd->getUint8Array(p).bad() || !p) {
            seterr(err, errlen, "cannot read Pixel Data");
            return RP_EDECODE;
        }
        size_t have_bits = (size_t)pd->getLength() * 8;
        for (int f = first; f < first + count; f++) {
            size_t bit0 = (size_t)f * fsamples;
            if (bit0 + fsamples > have_bits) {
                seterr(err, errlen, "Pixel Data too short for frame %d", f);
                return RP_EDECODE;
            }
            uint8_t *d = out + (size_t)(f - first) * fbytes;
            for (size_t i = 0; i < fsamples; i++) {
                size_t b = bit0 + i;
                d[i] = (p[b >> 3] >> (b & 7)) & 1;
            }
        }
        return 0;
    }
    size_t sbytes = (size_t)(in->bits_allocated / 8);
    size_t have = pd->getLength();
    size_t need = (size_t)(first + count) * fsamples * sbytes;
    if (have < need) {
        seterr(err, errlen, "Pixel Data has %zu bytes, %zu needed", have, need);
        return RP_EDECODE;
    }
    /* Straight from the file (or dcmtk's memory after inflating/decoding) into the caller's
     * buffer, swapped to local byte order: no full copy of the value inside dcmtk. */
    size_t off = (size_t)first * fsamples * sbytes, len = (size_t)count * fsamples * sbytes;
    if (off + len > 0xFFFFFFFFu) {
        seterr(err, errlen, "Pixel Data beyond 4 GiB is not supported");
        return RP_EUNSUPPORTED;
    }
    c = pd->getPartialValue(out, (Uint32)off, (Uint32)len);
    if (c.bad()) {
        seterr(err, errlen, "cannot read Pixel Data: %s", c.text());
        return RP_EDECODE;
    }
    for (int f = first; f < first + count; f++) {
        uint8_t *d = out + (size_t)(f - first) * fbytes;
        normalize_samples(in, d, fsamples, d);
        if (in->samples_per_pixel == 3 && planar == 1)
            planar_to_interleaved(in, d);
    }
    return 0;
}

extern "C" int rp_dcm_read_info(const char *path, rp_dcm_info **out, char *err, size_t errlen)
{
    rp_dcm_global_init();
    *out = NULL;
    DcmFileFormat ff;
    int rc = load_checked(ff, path, err, errlen);
    return rc ? rc : parse_info(ff, path, out, err, errlen);
}

extern "C" int rp_dcm_decode_frames(const char *path, const rp_dcm_info *in, int first, int count,
                                    void *dst, size_t dst_bytes, char *err, size_t errlen)
{
    rp_dcm_global_init();
    DcmFileFormat ff;
    if (load_checked(ff, path, err, errlen))
        return RP_EDECODE;
    return decode_loaded(ff, in, first, count, dst, dst_bytes, err, errlen);
}

/* The pixels are read straight into a fresh buffer: fault its pages in with one call rather
 * than one trap per 4 KiB page inside read() (on a virtual machine each trap goes to the
 * host; measured: 133 CT slices of 512 KiB, 290 -> 150 ms). Whole pages inside the buffer
 * only; advisory (kernels before 5.14 answer EINVAL). */
static void prefault(void *p, size_t n)
{
#ifdef MADV_POPULATE_WRITE
    const uintptr_t pg = 4096;
    uintptr_t a = ((uintptr_t)p + pg - 1) & ~(pg - 1), e = ((uintptr_t)p + n) & ~(pg - 1);
    if (n >= (256u << 10) && e > a)
        (void)madvise((void *)a, e - a, MADV_POPULATE_WRITE);
#else
    (void)p;
    (void)n;
#endif
}

/* ---- the pixel pool ----------------------------------------------------------------------
 * A series' decoded slices (512 KiB each for CT) as separate mallocs are separate mappings of
 * 4 KiB pages, and when they are freed their memory is not whole 2 MiB pages that the next
 * huge-page fault (the float volume filled from them) could take back. Carved from chunks of
 * huge pages instead, a chunk goes back to the kernel in one piece as soon as its last slice
 * is released, and the float volume's faults reuse it (on a VM a page that was never touched
 * costs a trap to the host; one just freed does not). */
namespace
{
struct pool_chunk {
    uint8_t *base;
    size_t size, used;
    long live; /* buffers not yet released */
};
std::mutex pool_mu;
std::vector<pool_chunk> pool; /* the last one is the one being filled */
const size_t POOL_HUGE = (size_t)2 << 20, POOL_CHUNK = (size_t)8 << 20;
} // namespace

static void *pool_alloc(size_t n)
{
    n = (n + 63) & ~(size_t)63;
    std::lock_guard<std::mutex> lk(pool_mu);
    if (pool.empty() || pool.back().size - pool.back().used < n) {
        size_t sz = n > POOL_CHUNK ? (n + POOL_HUGE - 1) & ~(POOL_HUGE - 1) : POOL_CHUNK;
        void *b = nullptr;
        if (posix_memalign(&b, POOL_HUGE, sz) != 0)
            return nullptr;
#ifdef MADV_HUGEPAGE
        (void)madvise(b, sz, MADV_HUGEPAGE); /* advisory */
#endif
        try {
            pool.push_back(pool_chunk{(uint8_t *)b, sz, 0, 0});
        } catch (...) {
            free(b);
            return nullptr;
        }
    }
    pool_chunk &c = pool.back();
    void *p = c.base + c.used;
    c.used += n;
    c.live++;
    return p;
}

extern "C" void rp_dcm_pixels_free(void *p)
{
    if (!p)
        return;
    {
        std::lock_guard<std::mutex> lk(pool_mu);
        for (size_t i = 0; i < pool.size(); i++) {
            pool_chunk &c = pool[i];
            if ((uint8_t *)p < c.base || (uint8_t *)p >= c.base + c.size)
                continue;
            if (--c.live == 0) {
                free(c.base);
                pool.erase(pool.begin() + (long)i);
            }
            return;
        }
    }
    free(p);
}

static int read_info_pixels(const char *path, rp_dcm_info **out, void **pixels, size_t *nbytes,
                            int pooled, char *err, size_t errlen);

extern "C" int rp_dcm_read_info_pixels(const char *path, rp_dcm_info **out, void **pixels,
                                       size_t *nbytes, char *err, size_t errlen)
{
    return read_info_pixels(path, out, pixels, nbytes, 0, err, errlen);
}

extern "C" int rp_dcm_read_info_pixels_pooled(const char *path, rp_dcm_info **out, void **pixels,
                                              size_t *nbytes, char *err, size_t errlen)
{
    return read_info_pixels(path, out, pixels, nbytes, 1, err, errlen);
}

static int read_info_pixels(const char *path, rp_dcm_info **out, void **pixels, size_t *nbytes,
                            int pooled, char *err, size_t errlen)
{
    rp_dcm_global_init();
    *out = NULL;
    *pixels = NULL;
    *nbytes = 0;
    DcmFileFormat ff;
    int rc = load_checked(ff, path, err, errlen);
    if (!rc)
        rc = parse_info(ff, path, out, err, errlen);
    if (rc || !(*out)->has_pixel_data)
        return rc;
    rp_dcm_info *in = *out;
    size_t n = rp_dcm_frame_bytes(in) * (size_t)in->frames;
    void *buf = pooled ? pool_alloc(n ? n : 1) : malloc(n ? n : 1);
    if (!buf) {
        seterr(err, errlen, "out of memory for %zu bytes of pixels", n);
        return RP_ENOMEM; /* *out stays valid: the caller frees it */
    }
    if (!pooled) /* the pool's chunks fault in huge pages */
        prefault(buf, n);
    rc = decode_loaded(ff, in, 0, in->frames, buf, n, err, errlen);
    if (rc) {
        rp_dcm_pixels_free(buf);
        return rc;
    }
    *pixels = buf;
    *nbytes = n;
    return 0;
}

extern "C" int rp_dcm_is_padding(const rp_dcm_info *in, long v)
{
    if (!in->has_padding_value)
        return 0;
    if (!in->has_padding_range)
        return v == in->padding_value;
    long lo =
        in->padding_value < in->padding_range_limit ? in->padding_value : in->padding_range_limit;
    long hi =
        in->padding_value < in->padding_range_limit ? in->padding_range_limit : in->padding_value;
    return v >= lo && v <= hi;
}

extern "C" long rp_dcm_stored_to_float(const rp_dcm_info *in, int frame, const void *src, size_t n,
                                       unsigned flags, float *dst, uint8_t *pad_mask)
{
    const rp_dcm_frame *fr = (frame >= 0 && frame < in->n_frames) ? &in->frame[frame] : NULL;
    double slope = fr ? fr->slope : in->rescale_slope;
    double inter = fr ? fr->intercept : in->rescale_intercept;
    int use_lut = (flags & RP_DCM_F_RESCALE) && in->has_modality_lut &&
                  !(fr && fr->has_rescale && in->enhanced);
    if (!(flags & RP_DCM_F_RESCALE)) {
        slope = 1;
        inter = 0;
    }
    /* range of stored values, for MONOCHROME1 inversion */
    double smin = in->pixel_representation ? -ldexp(1.0, in->bits_stored - 1) : 0;
    double smax = in->pixel_representation ? ldexp(1.0, in->bits_stored - 1) - 1
                                           : ldexp(1.0, in->bits_stored) - 1;
    int invert = (flags & RP_DCM_F_INVERT_MONO1) && !strcmp(in->photometric, "MONOCHROME1");
    double omin = slope * smin + inter, omax = slope * smax + inter;
    if (use_lut) {
        omin = 0;
        omax = ldexp(1.0, in->modality_lut.bits > 0 ? in->modality_lut.bits : 16) - 1;
    }
    long npad = 0;
    for (size_t i = 0; i < n; i++) {
        long s;
        switch (in->stype) {
        case RP_DCM_U8:
            s = ((const uint8_t *)src)[i];
            break;
        case RP_DCM_S8:
            s = ((const int8_t *)src)[i];
            break;
        case RP_DCM_U16:
            s = ((const uint16_t *)src)[i];
            break;
        case RP_DCM_S16:
            s = ((const int16_t *)src)[i];
            break;
        case RP_DCM_U32:
            s = (long)((const uint32_t *)src)[i];
            break;
        default:
            s = ((const int32_t *)src)[i];
            break;
        }
        double v;
        if (use_lut) {
            long k = s - in->modality_lut.first_mapped;
            if (k < 0)
                k = 0;
            if (k >= in->modality_lut.n_entries)
                k = in->modality_lut.n_entries - 1;
            v = in->modality_lut.data[k];
        } else {
            v = slope * (double)s + inter;
        }
        if (invert)
            v = omin + omax - v;
        dst[i] = (float)v;
        if (pad_mask) {
            int p = rp_dcm_is_padding(in, s);
            pad_mask[i] = (uint8_t)p;
            npad += p;
        }
    }
    return npad;
}
