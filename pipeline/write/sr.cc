/*
 * pipeline/write/sr.cc — the measurement report: a TID 1500 Comprehensive 3D SR built with
 * dcmtk's dcmsr/cmr, and the mask statistics it carries. Contract in write.h.
 *
 * Why TID 1500: it is the report IHE AI Results expects next to a SEG; viewers that know it
 * (OHIF, 3D Slicer, many PACS) show the numbers per segment, and dsrdump renders it as text
 * for every other reader.
 */
#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dctk.h"
#include "dcmtk/dcmsr/cmr/tid1500.h"
#include "dcmtk/dcmsr/codes/dcm.h"
#include "dcmtk/dcmsr/dsrdoc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>
#include <vector>

extern "C" {
#include "common/common.h"
#include "dicom/dicom.h"
#include "pipeline/write/write.h"
}

#include "pipeline/write/write_internal.h"

#define MOD "sr"

using namespace rpw;

extern "C" int rp_mask_stats_compute(const rp_mask *m, const rp_volume *src, rp_mask_stats *out)
{
    if (!m || !m->data || !out)
        return RP_EINVAL;
    memset(out, 0, sizeof *out);
    out->mean = out->sd = NAN;
    const size_t n = (size_t)m->dim[0] * m->dim[1] * m->dim[2];
    for (size_t i = 0; i < n; i++)
        out->voxels += m->data[i] != 0;
    const double(*a)[4] = m->affine;
    double det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) -
                 a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0]) +
                 a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
    out->volume_ml = (double)out->voxels * fabs(det) / 1000.0;
    rp_cc *cc = NULL;
    std::vector<uint8_t> bin(m->data, m->data + n);
    for (uint8_t &b : bin)
        b = b ? 1 : 0;
    if (rp_cc_label(bin.data(), m->dim, &cc) == 0) {
        out->components = rp_cc_count(cc);
        rp_cc_free(cc);
    } else {
        return RP_ENOMEM;
    }
    if (src && src->data) {
        const int sdim[3] = {src->dim[0], src->dim[1], src->dim[2]};
        std::vector<uint8_t> on = mask_on_grid(m, sdim, src->affine);
        if (on.empty())
            return RP_ENOMEM;
        /* Welford: one pass, stable for millions of voxels */
        double mean = 0, m2 = 0;
        size_t k = 0;
        for (size_t i = 0; i < on.size(); i++) {
            if (!on[i] || !isfinite(src->data[i]))
                continue;
            k++;
            double d = src->data[i] - mean;
            mean += d / (double)k;
            m2 += d * (src->data[i] - mean);
        }
        out->n_inside = k;
        if (k) {
            out->mean = mean;
            out->sd = k > 1 ? sqrt(m2 / (double)(k - 1)) : 0;
        }
    }
    return 0;
}

namespace
{

typedef TID1500_MeasurementReport::TID1411_Measurements ROI;

/* a numeric value the DS VR can carry */
OFString num(double v)
{
    return ds(isfinite(v) ? v : 0).c_str();
}

OFCondition add_measure(ROI &roi, const DSRCodedEntryValue &concept, double value,
                        const DSRCodedEntryValue &unit, const DSRCodedEntryValue *derivation)
{
    OFCondition c = roi.addMeasurement(CID7469_GenericIntensityAndSizeMeasurements(concept),
                                       ROI::MeasurementValue(num(value), unit, OFFalse),
                                       OFFalse /* always a new TID 1419 */, OFFalse);
    if (c.good() && derivation)
        c = roi.getMeasurement().setDerivation(
            CID7464_GeneralRegionOfInterestMeasurementModifiers(*derivation), OFFalse);
    return c;
}

} // namespace

extern "C" int rp_sr_write(const rp_sr_opts *o, rp_mask *const *masks, size_t n,
                           const rp_volume *src, const char *src_file, const char *out_path)
{
    if (!o || (n && !masks) || !src_file || !out_path)
        return RP_EINVAL;
    int rc = 0;
    DcmFileFormat srcff;
    if ((rc = load_header(src_file, srcff)))
        return rc;
    DcmDataset *sd = srcff.getDataset();
    std::vector<src_slice> sources;
    if (o->src_slice_files && o->n_src_slices)
        rc = read_sources(o->src_slice_files, o->n_src_slices, sources);
    else
        rc = read_sources(&src_file, 1, sources);
    if (rc)
        return rc;
    const std::string study_uid = get_str(sd, DCM_StudyInstanceUID);
    const std::string src_series =
        sources[0].series_uid.empty() ? get_str(sd, DCM_SeriesInstanceUID) : sources[0].series_uid;
    if (study_uid.empty()) {
        RP_ERROR(MOD, "source has no Study Instance UID path=%s", src_file);
        return RP_EUID;
    }
    rp_dcm_ref seg;
    int have_seg = 0;
    if (o->seg_file && *o->seg_file) {
        char why[256];
        if (rp_dcm_read_ref(o->seg_file, &seg, why, sizeof why) != 0) {
            RP_ERROR(MOD, "cannot read SEG path=%s reason=\"%s\"", o->seg_file, why);
            return RP_EPARSE;
        }
        have_seg = 1;
    }

    if (n > 0 && !have_seg) {
        /* TID 1411 requires the Referenced Segment: volumes of masks nobody can look at
         * would be numbers without a region */
        RP_ERROR(MOD, "a measurement report of masks needs their SEG path=%s", out_path);
        return RP_EINVAL;
    }
    std::string why;
    OFCondition c;
    TID1500_MeasurementReport report(CMR_CID7021::ImagingMeasurementReport);
    const DSRCodedEntryValue ml("ml", "UCUM", "milliliter");
    const DSRCodedEntryValue hu("[hnsf'U]", "UCUM", "Hounsfield unit");
    const DSRCodedEntryValue nounit("1", "UCUM", "no units");
    const DSRCodedEntryValue c_volume("118565006", "SCT", "Volume");
    const DSRCodedEntryValue c_atten("112031", "DCM", "Attenuation Coefficient");
    const DSRCodedEntryValue c_intensity("110852", "DCM", "MR signal intensity");
    const DSRCodedEntryValue c_pixel("130400", "DCM", "Pixel value");
    const DSRCodedEntryValue c_count("C25463", "NCIt", "Count");
    const DSRCodedEntryValue d_mean("373098007", "SCT", "Mean");
    const DSRCodedEntryValue d_sd("386136009", "SCT", "Standard Deviation");
    const std::string modality = get_str(sd, DCM_Modality);
    const DSRCodedEntryValue &c_value =
        o->values_hu ? c_atten : (modality == "MR" ? c_intensity : c_pixel);
    const DSRCodedEntryValue &u_value = o->values_hu ? hu : nounit;

    c = report.setLanguage(CID5000_Languages::English_US);
    if (c.good())
        c = report.getObservationContext().addDeviceObserver(
            gen_uid(o->uid_root).c_str(), "radprep", "radprep", "radprep", "", "",
            TID1001_ObservationContext::DeviceParticipatingRolesList(), "", OFFalse);
    if (c.good())
        c = report.addProcedureReported(DSRCodedEntryValue("363679005", "SCT", "Imaging procedure"),
                                        OFFalse);
    /* Image Library: the source images the measurements were made on (TID 1600 needs one
     * entry at least); descriptors from the first source, entries for every slice */
    if (c.good())
        c = report.getImageLibrary().createNewImageLibrary();
    if (c.good())
        c = report.getImageLibrary().addImageGroup();
    for (size_t i = 0; c.good() && i < (o->n_src_slices ? o->n_src_slices : 1); i++) {
        DcmFileFormat hf;
        const char *f = o->n_src_slices ? o->src_slice_files[i] : src_file;
        if ((rc = load_header(f, hf)))
            return rc;
        c = report.getImageLibrary().addImageEntry(
            *hf.getDataset(),
            i == 0 ? TID1600_ImageLibrary::withAllDescriptors
                   : TID1600_ImageLibrary::withoutDescriptors,
            TID1600_ImageLibrary::ConceptNameList(), OFFalse);
        if (c == CMR_EC_NoImageLibraryEntryDescriptorsToBeAdded)
            c = EC_Normal;
    }
    if (c.bad()) {
        why = std::string("report header: ") + c.text();
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const rp_mask *m = masks[i];
        rp_mask_stats st;
        if ((rc = rp_mask_stats_compute(m, src, &st)))
            return rc;
        if (i > 0 && (c = report.addVolumetricROIMeasurements(OFFalse)).bad()) {
            why = std::string("measurement group: ") + c.text();
            goto fail;
        }
        ROI &roi = report.getVolumetricROIMeasurements();
        seg_codes sc = codes_for_mask(m->name);
        std::string tid = std::string(m->name[0] ? m->name : "mask") + " mask";
        c = roi.setTrackingIdentifier(tid.c_str());
        if (c.good())
            c = roi.setTrackingUniqueIdentifier(gen_uid(o->uid_root).c_str());
        if (c.good())
            c = roi.setFinding(DSRCodedEntryValue(sc.type_value, "SCT", sc.type_meaning), OFFalse);
        if (c.good() && have_seg) {
            DSRImageReferenceValue ref(seg.sop_class_uid, seg.sop_instance_uid);
            ref.getSegmentList().addItem((Uint16)(i + 1));
            c = roi.setReferencedSegment(ref, OFFalse);
        }
        if (c.good())
            c = roi.setSourceSeriesForSegmentation(src_series.c_str());
        if (c.good())
            c = add_measure(roi, c_volume, st.volume_ml, ml, NULL);
        if (c.good() && st.n_inside) {
            c = add_measure(roi, c_value, st.mean, u_value, &d_mean);
            if (c.good())
                c = add_measure(roi, c_value, st.sd, u_value, &d_sd);
        }
        if (c.good())
            c = add_measure(roi, c_count, st.components, nounit, NULL);
        if (c.bad()) {
            why = std::string("mask ") + m->name + ": " + c.text();
            goto fail;
        }
    }
    for (size_t i = 0; i < o->n_findings; i++) {
        std::string t = o->findings[i] ? o->findings[i] : "";
        if (t.empty())
            continue;
        if (t.size() > 1024)
            t = t.substr(0, 1024);
        c = report.addQualitativeEvaluation(DSRCodedEntryValue("121106", "DCM", "Comment"),
                                            t.c_str(), OFFalse);
        if (c.bad()) {
            why = std::string("finding: ") + c.text();
            goto fail;
        }
    }
    {
        DSRDocument doc(DSRTypes::DT_Comprehensive3DSR);
        c = doc.setTreeFromRootTemplate(report, OFTrue /* expand included templates */);
        if (c.bad()) {
            why = std::string("document tree: ") + c.text() + " (valid: report " +
                  std::to_string(report.isValid()) + " language " +
                  std::to_string(report.getLanguage().isValid()) + " observer " +
                  std::to_string(report.getObservationContext().isValid()) + " library " +
                  std::to_string(report.getImageLibrary().isValid()) + " roi " +
                  std::to_string(report.getVolumetricROIMeasurements().isValid()) + ")";
            goto fail;
        }
        doc.createNewSeriesInStudy(study_uid.c_str());
        rp_derived_opts dflt;
        rp_derived_opts_init(&dflt);
        int sn = o->series_number > 0 ? o->series_number : series_number(&dflt, sd) + 3;
        std::string desc = o->series_description && *o->series_description
                               ? o->series_description
                               : "Measurements [radprep]";
        if (desc.size() > 64)
            desc = desc.substr(0, 64);
        doc.setSeriesDescription(desc.c_str(), OFFalse);
        doc.setSeriesNumber(std::to_string(sn).c_str(), OFFalse);
        doc.setManufacturer("radprep", OFFalse);
        doc.setManufacturerModelName("radprep", OFFalse);
        doc.setSoftwareVersions(RP_VERSION, OFFalse);
        doc.setInstanceNumber("1", OFFalse);
        /* Completion Flag COMPLETE: the report says everything radprep measured */
        doc.completeDocument();
        /* evidence: every source instance and the SEG, so a PACS can fetch what it cites */
        for (const src_slice &s : sources)
            doc.getCurrentRequestedProcedureEvidence().addItem(
                study_uid.c_str(), s.series_uid.empty() ? src_series.c_str() : s.series_uid.c_str(),
                s.sop_class.c_str(), s.sop_instance.c_str(), OFFalse);
        if (have_seg)
            doc.getCurrentRequestedProcedureEvidence().addItem(study_uid.c_str(), seg.series_uid,
                                                               seg.sop_class_uid,
                                                               seg.sop_instance_uid, OFFalse);
        /* our UID root for the SOP instance */
        DcmFileFormat ff;
        DcmDataset *d = ff.getDataset();
        c = doc.write(*d);
        if (c.bad()) {
            why = std::string("write: ") + c.text();
            goto fail;
        }
        d->putAndInsertString(DCM_SOPInstanceUID, gen_uid(o->uid_root).c_str());
        if ((rc = copy_patient_study(sd, d)))
            return rc;
        copy_if_present(sd, d, {DCM_BodyPartExamined});
        if (modality.size())
            d->putAndInsertString(DCM_Modality, "SR");
        if ((rc = save_atomic(ff, out_path)))
            return rc;
        rp_fsync_path(dir_of(out_path).c_str(), 1);
        RP_INFO(MOD, "measurement report written masks=%zu findings=%zu seg=%s path=%s", n,
                o->n_findings, have_seg ? "yes" : "no", out_path);
    }
    return 0;
fail:
    RP_ERROR(MOD, "cannot build measurement report path=%s reason=\"%s\"", out_path, why.c_str());
    return RP_EINTERNAL;
}
