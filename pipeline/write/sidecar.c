/* pipeline/write/sidecar.c — BIDS-style JSON sidecar with provenance. Contract in write.h. */
#include "pipeline/write/write.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/common.h"

static void add_str(cJSON *o, const char *k, const char *v)
{
    if (v && v[0])
        cJSON_AddStringToObject(o, k, v);
}
static void add_num(cJSON *o, const char *k, double v, double scale)
{
    if (!isnan(v))
        cJSON_AddNumberToObject(o, k, v * scale);
}

/* "ORIGINAL\PRIMARY\AXIAL" -> ["ORIGINAL","PRIMARY","AXIAL"] */
static void add_split(cJSON *o, const char *k, const char *v)
{
    if (!v || !v[0])
        return;
    cJSON *a = cJSON_AddArrayToObject(o, k);
    char buf[256];
    rp_strlcpy(buf, v, sizeof buf);
    char *save = NULL;
    for (char *t = strtok_r(buf, "\\", &save); t; t = strtok_r(NULL, "\\", &save))
        cJSON_AddItemToArray(a, cJSON_CreateString(t));
}

/* "133020.123" -> "13:30:20.123000" (BIDS/dcm2niix style) */
static void add_time(cJSON *o, const char *k, const char *tm)
{
    if (!tm || strlen(tm) < 6)
        return;
    char buf[32];
    const char *frac = strchr(tm, '.');
    snprintf(buf, sizeof buf, "%.2s:%.2s:%.2s.%-6.6s", tm, tm + 2, tm + 4,
             frac ? frac + 1 : "000000");
    for (char *p = buf; *p; p++)
        if (*p == ' ')
            *p = '0';
    cJSON_AddStringToObject(o, k, buf);
}

/* PhaseEncodingDirection (axis and polarity known) or PhaseEncodingAxis (polarity unknown),
 * as dcm2niix writes them for 2-D acquisitions (and 3-D echo trains): the column axis is
 * j, the row axis i; rows are written bottom-up, so a positive DICOM column direction is j-. */
static void add_phase_encoding(cJSON *j, const rp_dcm_info *in)
{
    int col = !strcmp(in->inplane_pe_dir, "COL"), row = !strcmp(in->inplane_pe_dir, "ROW");
    if (!col && !row)
        return;
    add_str(j, "InPlanePhaseEncodingDirectionDICOM", in->inplane_pe_dir);
    if (!strcmp(in->mr_acquisition_type, "3D") &&
        !(!isnan(in->echo_train_length) && in->echo_train_length > 1))
        return; /* 3-D without an echo train (MP-RAGE ...): no phase-encoding distortion */
    if (in->pe_positive < 0) {
        cJSON_AddStringToObject(j, "PhaseEncodingAxis", col ? "j" : "i");
        return;
    }
    const char *v = col ? (in->pe_positive ? "j-" : "j") : (in->pe_positive ? "i" : "i-");
    cJSON_AddStringToObject(j, "PhaseEncodingDirection", v);
}

/* Span (max - min, ms) of volume t's tile times; -1 when unusable. */
static double tile_span(const rp_stack *st, const rp_dcm_info *const *infos, int t, double *mn_out)
{
    const rp_dcm_info *fi = infos[st->slice[(size_t)st->nz * t].file];
    if (!fi->tile_times_ms)
        return -1;
    double mn = INFINITY, mx = -INFINITY;
    for (int z = 0; z < st->nz; z++) {
        int tile = st->slice[(size_t)st->nz * t + z].tile;
        if (tile < 0 || tile >= fi->n_tile_times)
            return -1;
        double v = fi->tile_times_ms[tile];
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    *mn_out = mn;
    return mx - mn;
}

/* GE EPI (not mosaics): dcm2niix's estimate from the protocol block's slice order — TR
 * spread over the excitations (multiband: ceil(slices / MB), odd before 27.0 R03, with its
 * swap of the last two odd excitations after), interleaved = even-numbered slices first;
 * slice i in acquisition (Instance Number) order. */
static void add_slice_timing_ge(cJSON *j, const rp_stack *st, const rp_dcm_info *const *infos)
{
    const rp_dcm_info *in = st->ref;
    int nz = st->nz, mb = in->ge_mb > 1 ? in->ge_mb : 1;
    if (in->ge_slice_order < 0 || st->nt < 2 || nz < 2 || nz != st->nz_acquired ||
        isnan(in->repetition_time) || nz > 4096 || (mb > 1 && in->ge_version < 26.0))
        return;
    int nexc = (nz + mb - 1) / mb;
    if (mb > 1 && !in->ge_r3 && nexc % 2 == 0)
        nexc++;
    double sec = in->repetition_time / nexc, t[4096];
    int nodd = (nexc - 1) / 2;
    for (int i = 0; i < nexc && i < 4096; i++)
        t[i] = !in->ge_slice_order ? i * sec
               : i % 2 == 0        ? (i / 2) * sec
                                   : (nodd + (i + 1) / 2) * sec;
    if (mb > 1 && in->ge_r3 && in->ge_slice_order && nexc > 2 && nexc % 2 == 0) {
        double x = t[nexc - 1];
        t[nexc - 1] = t[nexc - 3];
        t[nexc - 3] = x;
    }
    cJSON *a = cJSON_AddArrayToObject(j, "SliceTiming");
    for (int z = 0; z < nz; z++) {
        /* acquisition index of slice z: its rank by Instance Number in the first volume */
        const rp_slice_ref *sz = &st->slice[z];
        int in_z = infos[sz->file]->instance_number, rank = 0;
        for (int q = 0; q < nz; q++) {
            const rp_slice_ref *sq = &st->slice[q];
            int in_q = infos[sq->file]->instance_number;
            rank += in_q < in_z || (in_q == in_z && (sq->file < sz->file ||
                                                     (sq->file == sz->file && sq->frame < sz->frame)));
        }
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)(float)(t[rank % nexc] / 1000.0)));
    }
}

/* Siemens XA 2-D slices: each file's TimeAfterStart, from the second volume when there is
 * one (the first can be off), relative to its first excitation; as dcm2niix. */
static void add_slice_timing_xa(cJSON *j, const rp_stack *st, const rp_dcm_info *const *infos)
{
    const rp_dcm_info *in = st->ref;
    int nz = st->nz, t = st->nt > 1 ? 1 : 0;
    if (nz < 2 || nz != st->nz_acquired || !strcmp(in->mr_acquisition_type, "3D"))
        return;
    double mn = INFINITY, mx = -INFINITY;
    for (int z = 0; z < nz; z++) {
        double v = infos[st->slice[(size_t)nz * t + z].file]->time_after_start_ms;
        if (isnan(v))
            return;
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
    }
    if (mx <= mn)
        return;
    cJSON *a = cJSON_AddArrayToObject(j, "SliceTiming");
    for (int z = 0; z < nz; z++) {
        double v = infos[st->slice[(size_t)nz * t + z].file]->time_after_start_ms - mn;
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)(float)(v / 1000.0)));
    }
}

/* SliceTiming (s, per written slice) where the acquisition times of the slices are given:
 * per mosaic tile (Siemens MosaicRefAcqTimes, UIH per-tile times). As dcm2niix (its issue
 * 870): the first volume's times when they are sane (span within TR) and span what the
 * second volume's span, else the second volume's relative to its first excitation (the first
 * volume of some sequences carries bogus ones); equal times (3-D) give none. */
static void add_slice_timing(cJSON *j, const rp_stack *st, const rp_dcm_info *const *infos)
{
    const rp_dcm_info *in = st->ref;
    if (!st->mosaic || st->nz_acquired < 2 || st->nz != st->nz_acquired ||
        !strcmp(in->mr_acquisition_type, "3D"))
        return;
    double tr = isnan(in->repetition_time) ? INFINITY : in->repetition_time;
    double mn0 = 0, mn1 = 0;
    double s0 = tile_span(st, infos, 0, &mn0);
    double s1 = st->nt > 1 ? tile_span(st, infos, 1, &mn1) : -1;
    int t = -1;
    if (s0 > 0 && s0 + mn0 <= tr && (s1 < 0 || fabs(s1 - s0) < 1e-6))
        t = 0;
    else if (s1 > 0 && s1 <= tr)
        t = 1;
    else if (s0 > 0)
        t = 0;
    if (t < 0)
        return;
    const rp_dcm_info *fi = infos[st->slice[(size_t)st->nz * t].file];
    double mn = t ? mn1 : mn0;
    cJSON *a = cJSON_AddArrayToObject(j, "SliceTiming");
    for (int z = 0; z < st->nz; z++) {
        double v = fi->tile_times_ms[st->slice[(size_t)st->nz * t + z].tile] - mn;
        cJSON_AddItemToArray(a, cJSON_CreateNumber((double)(float)(v / 1000.0)));
    }
}

cJSON *rp_sidecar_build(const rp_stack *st, const rp_dcm_info *const *infos, const rp_stack_data *d,
                        int with_patient)
{
    const rp_dcm_info *in = st->ref;
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    add_str(j, "Modality", in->modality);
    add_num(j, "MagneticFieldStrength", in->field_strength, 1);
    add_num(j, "ImagingFrequency", in->imaging_frequency, 1);
    add_str(j, "Manufacturer", in->manufacturer);
    add_str(j, "ManufacturersModelName", in->model);
    add_str(j, "InstitutionName", in->institution_name);
    add_str(j, "StationName", in->station_name);
    add_str(j, "SoftwareVersions", in->software_versions);
    add_str(j, "BodyPartExamined", in->body_part);
    add_str(j, "PatientPosition", in->patient_position);
    add_str(j, "StudyDescription", in->study_description);
    add_str(j, "SeriesDescription", in->series_description);
    add_str(j, "ProtocolName", in->protocol_name);
    add_str(j, "ScanningSequence", in->scanning_sequence);
    add_str(j, "SequenceVariant", in->sequence_variant);
    add_str(j, "SequenceName", in->sequence_name);
    add_split(j, "ImageType", in->image_type);
    if (in->series_number >= 0)
        cJSON_AddNumberToObject(j, "SeriesNumber", in->series_number);
    add_time(j, "AcquisitionTime", in->acquisition_time);
    if (in->acquisition_number >= 0)
        cJSON_AddNumberToObject(j, "AcquisitionNumber", in->acquisition_number);
    add_str(j, "ConvolutionKernel", in->convolution_kernel);
    add_num(j, "SliceThickness", in->slice_thickness, 1);
    add_num(j, "SpacingBetweenSlices", in->spacing_between_slices, 1);
    add_num(j, "EchoTime",
            st->slice && !isnan(infos[st->slice[0].file]->frame[st->slice[0].frame].echo_time)
                ? infos[st->slice[0].file]->frame[st->slice[0].frame].echo_time
                : in->echo_time,
            0.001);
    add_num(j, "RepetitionTime", in->repetition_time, 0.001);
    add_num(j, "InversionTime", in->inversion_time, 0.001);
    add_num(j, "FlipAngle", in->flip_angle, 1);
    add_num(j, "PixelBandwidth", in->pixel_bandwidth, 1);
    add_num(j, "EchoTrainLength", in->echo_train_length, 1);
    if (st->echo_number > 0)
        cJSON_AddNumberToObject(j, "EchoNumber", st->echo_number);
    cJSON_AddStringToObject(j, "ImageComponent", rp_kind_name(st->kind));
    if (!isnan(in->philips_scale_slope)) {
        /* display values (DICOM rescale) unless the float option applied; these give
         * Philips' FP values = display / (RS x SS) */
        add_num(j, "PhilipsRescaleSlope", in->rescale_slope, 1);
        add_num(j, "PhilipsRescaleIntercept", in->rescale_intercept, 1);
        add_num(j, "PhilipsScaleSlope", in->philips_scale_slope, 1);
        cJSON_AddBoolToObject(j, "UsePhilipsFloatNotDisplayScaling", d && d->philips_float);
    }
    add_str(j, "MRAcquisitionType", in->mr_acquisition_type);
    add_phase_encoding(j, in);
    add_slice_timing(j, st, infos);
    if (!st->mosaic && !strncasecmp(in->manufacturer, "GE", 2))
        add_slice_timing_ge(j, st, infos);
    if (!st->mosaic && !strncasecmp(in->manufacturer, "SIEMENS", 7))
        add_slice_timing_xa(j, st, infos);
    add_num(j, "KVP", in->kvp, 1);
    add_num(j, "XRayExposure", in->exposure_mas, 1);
    add_num(j, "XRayTubeCurrent", in->tube_current_ma, 1);
    add_num(j, "GantryDetectorTilt", in->gantry_tilt, 1);
    add_str(j, "PhotometricInterpretation", in->photometric);
    cJSON_AddNumberToObject(j, "BitsStored", in->bits_stored);
    if (in->n_windows > 0) {
        cJSON_AddNumberToObject(j, "WindowCenter", in->window_center[0]);
        cJSON_AddNumberToObject(j, "WindowWidth", in->window_width[0]);
    }
    if (st->geometry_unknown) {
        cJSON_AddBoolToObject(j, "GeometryUnknown", 1);
        cJSON_AddStringToObject(j, "GeometryUnknownReason", st->geometry_reason);
    }
    if (st->has_geometry) {
        cJSON *a = cJSON_AddArrayToObject(j, "ImageOrientationPatientDICOM");
        for (int i = 0; i < 6; i++)
            cJSON_AddItemToArray(a, cJSON_CreateNumber(st->iop[i]));
    }
    if (with_patient) {
        add_str(j, "PatientName", in->patient_name);
        add_str(j, "PatientID", in->patient_id);
        add_str(j, "PatientBirthDate", in->patient_birth_date);
        add_str(j, "PatientSex", in->patient_sex);
        add_str(j, "PatientAge", in->patient_age);
        add_num(j, "PatientWeight", in->patient_weight, 1);
        add_str(j, "AccessionNumber", in->accession_number);
        add_str(j, "StudyDate", in->study_date);
    }
    cJSON_AddStringToObject(j, "ConversionSoftware", "radprep");
    cJSON_AddStringToObject(j, "ConversionSoftwareVersion", RP_VERSION);

    cJSON *p = cJSON_AddObjectToObject(j, "Provenance");
    add_str(p, "StudyInstanceUID", in->study_uid);
    add_str(p, "SeriesInstanceUID", in->series_uid);
    add_str(p, "FrameOfReferenceUID", in->frame_of_reference_uid);
    add_str(p, "SOPClassUID", in->sop_class_uid);
    cJSON *uids = cJSON_AddArrayToObject(p, "SourceSOPInstanceUIDs");
    cJSON *ts = cJSON_AddArrayToObject(p, "SourceTransferSyntaxUIDs");
    int last_file = -1;
    for (int k = 0; k < st->n_refs; k++) {
        int f = st->slice[k].file;
        if (f == last_file)
            continue; /* multi-frame / mosaic: one UID per file */
        int seen = 0;
        for (int q = 0; q < k && !seen; q++)
            seen = st->slice[q].file == f;
        last_file = f;
        if (seen)
            continue;
        cJSON_AddItemToArray(uids, cJSON_CreateString(infos[f]->sop_instance_uid));
        int have = 0;
        cJSON *t;
        cJSON_ArrayForEach(t, ts) have |= !strcmp(t->valuestring, infos[f]->transfer_syntax_uid);
        if (!have)
            cJSON_AddItemToArray(ts, cJSON_CreateString(infos[f]->transfer_syntax_uid));
    }
    if (d) {
        cJSON_AddNumberToObject(p, "RescaleSlope", d->scl_slope);
        cJSON_AddNumberToObject(p, "RescaleIntercept", d->scl_inter);
        cJSON_AddBoolToObject(p, "Monochrome1Inverted", d->inverted_mono1);
        if (in->has_padding_value) {
            cJSON_AddNumberToObject(p, "PixelPaddingValue", (double)in->padding_value);
            cJSON_AddNumberToObject(p, "PixelPaddingVoxels", (double)d->n_padding);
        }
    }
    cJSON_AddItemToObject(p, "Assembly", cJSON_Duplicate(st->qc, 1));
    cJSON_AddStringToObject(p, "Software", "radprep " RP_VERSION);
    return j;
}

int rp_json_write(const char *path, const cJSON *j, char *err, size_t errlen)
{
    char *txt = cJSON_Print(j);
    if (!txt)
        return RP_ENOMEM;
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    int rc = 0;
    if (!f) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        free(txt);
        return RP_EIO;
    }
    size_t n = strlen(txt);
    if (fwrite(txt, 1, n, f) != n || fputc('\n', f) == EOF)
        rc = RP_EIO;
    if (fclose(f) != 0)
        rc = RP_EIO;
    if (!rc && rename(tmp, path) != 0)
        rc = RP_EIO;
    if (rc) {
        snprintf(err, errlen, "writing %s failed: %s", path, strerror(errno));
        unlink(tmp);
    }
    free(txt);
    return rc;
}
