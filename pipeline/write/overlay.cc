/*
 * pipeline/write/overlay.cc — overlay secondary captures: source slices with each mask's
 * contour burned in (dcmtk adapter). Contract in write.h ("results a PACS can show").
 *
 * Why burned-in colour images: many PACS store DICOM SEG but do not display it; every
 * viewer displays an RGB secondary capture. The contour (not a filled mask) keeps the
 * anatomy under it readable.
 */
#include "dcmtk/config/osconfig.h"

#include "dcmtk/dcmdata/dctk.h"

#include <algorithm>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>
#include <vector>

extern "C" {
#include "common/common.h"
#include "pipeline/write/write.h"
}

#include "pipeline/write/write_internal.h"

#define MOD "overlay"

#define UID_MF_TRUE_COLOR_SC "1.2.840.10008.5.1.4.1.1.7.4"

using namespace rpw;

namespace
{

/* 5x7 glyphs, one byte per row, bit 4 = leftmost column. Letters are drawn upper case. */
struct glyph {
    char c;
    uint8_t rows[7];
};

const glyph k_font[] = {
    {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
    {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}},
    {'D', {0x1E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1E}},
    {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}},
    {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
    {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}},
    {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
    {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
    {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}},
    {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
    {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}},
    {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
    {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
    {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}},
    {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
    {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}},
    {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
    {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}},
    {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
    {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}},
    {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
    {'Y', {0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04}},
    {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
    {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}},
    {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
    {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}},
    {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
    {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}},
    {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
    {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}},
    {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
    {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}},
    {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
    {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
    {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}},
    {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}},
    {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}},
    {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}},
    {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
    {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}},
    {'[', {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E}},
    {']', {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E}},
};

const uint8_t *glyph_rows(char c)
{
    if (c >= 'a' && c <= 'z')
        c = (char)(c - 32);
    for (const glyph &g : k_font)
        if (g.c == c)
            return g.rows;
    return NULL; /* blank (space and anything unknown) */
}

struct canvas {
    uint8_t *px; /* RGB, row-major */
    int w, h;
    void put(int x, int y, const uint8_t c[3])
    {
        if (x < 0 || y < 0 || x >= w || y >= h)
            return;
        uint8_t *p = px + ((size_t)y * w + x) * 3;
        p[0] = c[0];
        p[1] = c[1];
        p[2] = c[2];
    }
    void rect(int x0, int y0, int rw, int rh, const uint8_t c[3])
    {
        for (int y = y0; y < y0 + rh; y++)
            for (int x = x0; x < x0 + rw; x++)
                put(x, y, c);
    }
    /* Text with a one-pixel black halo so it reads on any grey. */
    void text(int x0, int y0, int s, const std::string &t, const uint8_t c[3])
    {
        static const uint8_t black[3] = {0, 0, 0};
        for (int pass = 0; pass < 2; pass++)
            for (size_t i = 0; i < t.size(); i++) {
                const uint8_t *g = glyph_rows(t[i]);
                if (!g)
                    continue;
                int gx = x0 + (int)i * 6 * s;
                for (int r = 0; r < 7; r++)
                    for (int col = 0; col < 5; col++) {
                        if (!(g[r] & (0x10 >> col)))
                            continue;
                        if (pass == 0)
                            rect(gx + col * s - 1, y0 + r * s - 1, s + 2, s + 2, black);
                        else
                            rect(gx + col * s, y0 + r * s, s, s, c);
                    }
            }
    }
};

/* grey window: 1st..99th percentile of the finite values (sampled), so one hot pixel or the
 * padding value does not wash the image out */
void auto_window(const float *v, size_t n, double &lo, double &hi)
{
    std::vector<float> s;
    size_t step = n > 200000 ? n / 200000 : 1;
    for (size_t i = 0; i < n; i += step)
        if (isfinite(v[i]))
            s.push_back(v[i]);
    if (s.empty()) {
        lo = 0;
        hi = 1;
        return;
    }
    std::sort(s.begin(), s.end());
    lo = s[(size_t)(0.01 * (double)(s.size() - 1))];
    hi = s[(size_t)(0.99 * (double)(s.size() - 1))];
    if (!(hi > lo))
        hi = lo + 1;
}

std::string upper(const char *s)
{
    std::string r = s;
    for (char &c : r)
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 32);
    return r;
}

/* Render frame k into rgb (nx*ny*3). flip_x / flip_y: output column x shows volume column
 * nx-1-x (row likewise), so that the frame has the source's own pixel layout. */
void render_frame(const rp_volume *src, int k, double lo, double hi,
                  const std::vector<std::vector<uint8_t>> &masks, rp_mask *const *mk,
                  const char *caption, int flip_x, int flip_y, uint8_t *rgb)
{
    const int nx = src->dim[0], ny = src->dim[1];
    const size_t ns = (size_t)nx * ny;
    const float *s = src->data + (size_t)k * ns;
    const double scale = 255.0 / (hi - lo);
    canvas cv = {rgb, nx, ny};
    for (int y = 0; y < ny; y++)
        for (int x = 0; x < nx; x++) {
            float v = s[(size_t)y * nx + x];
            double g = isfinite(v) ? (v - lo) * scale : 0;
            uint8_t b = (uint8_t)(g < 0 ? 0 : g > 255 ? 255 : g + 0.5);
            const uint8_t c[3] = {b, b, b};
            cv.put(flip_x ? nx - 1 - x : x, flip_y ? ny - 1 - y : y, c);
        }
    for (size_t m = 0; m < masks.size(); m++) {
        const uint8_t *p = masks[m].data() + (size_t)k * ns;
        uint8_t col[3];
        rp_overlay_colour(m, col);
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                size_t i = (size_t)y * nx + x;
                if (!p[i])
                    continue;
                int edge = x == 0 || y == 0 || x == nx - 1 || y == ny - 1 || !p[i - 1] ||
                           !p[i + 1] || !p[i - nx] || !p[i + nx];
                if (edge)
                    cv.put(flip_x ? nx - 1 - x : x, flip_y ? ny - 1 - y : y, col);
            }
    }
    /* legend and caption: scaled so they stay readable on 512 and 3000 pixel images */
    int sc = nx / 256 > 1 ? nx / 256 : 1;
    if (nx < 64 || ny < 32)
        return; /* too small to carry text without hiding the image */
    static const uint8_t white[3] = {255, 255, 255}, yellow[3] = {255, 220, 0};
    int y = 2 * sc;
    for (size_t m = 0; m < masks.size(); m++) {
        uint8_t col[3];
        rp_overlay_colour(m, col);
        cv.rect(2 * sc, y, 7 * sc, 7 * sc, col);
        cv.text(11 * sc, y, sc, upper(mk[m]->name), white);
        y += 9 * sc;
    }
    if (caption && *caption)
        cv.text(2 * sc, ny - 9 * sc, sc, upper(caption), yellow);
}

} // namespace

extern "C" void rp_overlay_colour(size_t i, uint8_t rgb[3])
{
    static const uint8_t pal[6][3] = {{0, 255, 0},   {255, 40, 40}, {0, 160, 255},
                                      {255, 0, 255}, {0, 255, 255}, {255, 140, 0}};
    memcpy(rgb, pal[i % 6], 3);
}

namespace
{

/* The attributes every overlay instance shares (patient, study, series, equipment, SC). */
int put_common(DcmDataset *d, DcmItem *src, const rp_overlay_opts *o, const std::string &series_uid,
               const std::string &desc, int series_no, const std::string &da, const std::string &tm,
               const char *sop_class)
{
    int rc = copy_patient_study(src, d);
    if (rc)
        return rc;
    d->putAndInsertString(DCM_SOPClassUID, sop_class);
    d->putAndInsertString(DCM_SOPInstanceUID, gen_uid(o->uid_root).c_str());
    d->putAndInsertString(DCM_InstanceCreationDate, da.c_str());
    d->putAndInsertString(DCM_InstanceCreationTime, tm.c_str());
    d->putAndInsertString(DCM_ImageType, "DERIVED\\SECONDARY");
    d->putAndInsertString(DCM_ContentDate, da.c_str());
    d->putAndInsertString(DCM_ContentTime, tm.c_str());
    d->putAndInsertString(DCM_BurnedInAnnotation, "YES");
    d->putAndInsertString(DCM_RecognizableVisualFeatures, "NO");
    std::string modality = get_str(src, DCM_Modality);
    d->putAndInsertString(DCM_Modality, modality.empty() ? "OT" : modality.c_str());
    d->putAndInsertString(DCM_SeriesInstanceUID, series_uid.c_str());
    d->putAndInsertString(DCM_SeriesNumber, std::to_string(series_no).c_str());
    d->putAndInsertString(DCM_SeriesDate, da.c_str());
    d->putAndInsertString(DCM_SeriesTime, tm.c_str());
    d->putAndInsertString(DCM_SeriesDescription, desc.c_str());
    copy_if_present(src, d, {DCM_BodyPartExamined});
    put_laterality(src, d);
    d->putAndInsertString(DCM_Manufacturer, "radprep");
    d->putAndInsertString(DCM_ManufacturerModelName, "radprep");
    d->putAndInsertString(DCM_SoftwareVersions, RP_VERSION);
    d->putAndInsertString(DCM_ConversionType, "WSD");
    d->putAndInsertString(DCM_DateOfSecondaryCapture, da.c_str());
    d->putAndInsertString(DCM_TimeOfSecondaryCapture, tm.c_str());
    d->putAndInsertString(DCM_DerivationDescription,
                          "Mask contours burned into the source images by radprep");
    DcmItem *it = NULL;
    if (d->findOrCreateSequenceItem(DCM_DerivationCodeSequence, it, -2).good())
        put_code(it, "113047", "DCM", "Pixel by pixel mask");
    /* RGB, 8 bits per sample, interleaved */
    d->putAndInsertUint16(DCM_SamplesPerPixel, 3);
    d->putAndInsertString(DCM_PhotometricInterpretation, "RGB");
    d->putAndInsertUint16(DCM_PlanarConfiguration, 0);
    d->putAndInsertUint16(DCM_BitsAllocated, 8);
    d->putAndInsertUint16(DCM_BitsStored, 8);
    d->putAndInsertUint16(DCM_HighBit, 7);
    d->putAndInsertUint16(DCM_PixelRepresentation, 0);
    return 0;
}

void put_sources(DcmDataset *d, const std::vector<src_slice> &sources,
                 const std::vector<size_t> &which)
{
    for (size_t si : which) {
        DcmItem *it = NULL;
        if (d->findOrCreateSequenceItem(DCM_SourceImageSequence, it, -2).bad())
            continue;
        it->putAndInsertString(DCM_ReferencedSOPClassUID, sources[si].sop_class.c_str());
        it->putAndInsertString(DCM_ReferencedSOPInstanceUID, sources[si].sop_instance.c_str());
        DcmItem *pr = NULL;
        if (it->findOrCreateSequenceItem(DCM_PurposeOfReferenceCodeSequence, pr, -2).good())
            put_code(pr, "121322", "DCM", "Source image for image processing operation");
    }
}

} // namespace

extern "C" int rp_overlay_write(const rp_overlay_opts *o, const rp_volume *src,
                                rp_mask *const *masks, size_t n, const char *src_file,
                                const char *out_dir, char ***paths_out, size_t *n_out)
{
    if (!o || !src || !src->data || (n && !masks) || !src_file || !out_dir || !paths_out || !n_out)
        return RP_EINVAL;
    *paths_out = NULL;
    *n_out = 0;
    const int nx = src->dim[0], ny = src->dim[1], nz = src->dim[2];
    if (nx <= 0 || ny <= 0 || nz <= 0 || nx > 65535 || ny > 65535 ||
        (!o->single_frame && (double)nx * ny * 3 * nz > 4.0e9)) {
        RP_ERROR(MOD, "source cannot be written as overlay dim=%dx%dx%d", nx, ny, nz);
        return RP_EINVAL;
    }
    int rc = rp_mkdir_p(out_dir, 0750);
    if (rc)
        return rc;
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

    const int sdim[3] = {nx, ny, nz};
    std::vector<std::vector<uint8_t>> onsrc;
    for (size_t i = 0; i < n; i++) {
        onsrc.push_back(mask_on_grid(masks[i], sdim, src->affine));
        if (onsrc.back().empty())
            return RP_ENOMEM;
    }
    const size_t ns = (size_t)nx * ny;
    double lo, hi;
    if (o->window_width > 0) {
        lo = o->window_center - o->window_width / 2;
        hi = o->window_center + o->window_width / 2;
    } else {
        auto_window(src->data, ns * nz, lo, hi);
    }
    vol_geom g;
    affine_to_geom(src->affine, g);
    /* The assembled grid may run the other way than the source's rows or columns (it is
     * made right-handed / RAS-like); frames are drawn in the source's own pixel layout so
     * they match the original series when paged side by side. */
    int flip_x = 0, flip_y = 0;
    {
        OFString iop[6];
        int ok = 1;
        for (int i = 0; i < 6 && ok; i++)
            ok = sd->findAndGetOFString(DCM_ImageOrientationPatient, iop[i], i).good();
        if (ok) {
            double r[3], c[3];
            for (int i = 0; i < 3; i++) {
                r[i] = atof(iop[i].c_str());
                c[i] = atof(iop[i + 3].c_str());
            }
            flip_x = r[0] * g.row_dir[0] + r[1] * g.row_dir[1] + r[2] * g.row_dir[2] < 0;
            flip_y = c[0] * g.col_dir[0] + c[1] * g.col_dir[1] + c[2] * g.col_dir[2] < 0;
        }
        for (int i = 0; i < 3; i++) {
            if (flip_x)
                g.row_dir[i] = -g.row_dir[i];
            if (flip_y)
                g.col_dir[i] = -g.col_dir[i];
        }
    }
    std::string names;
    for (size_t i = 0; i < n && names.size() < 40; i++)
        names += (i ? " " : "") + upper(masks[i]->name);
    std::string desc =
        o->series_description && *o->series_description
            ? std::string(o->series_description)
            : (names.empty() ? std::string("NO") : names) + " MASK overlay [radprep]";
    if (desc.size() > 64)
        desc = desc.substr(0, 64);
    const std::string series_uid = gen_uid(o->uid_root);
    rp_derived_opts dflt;
    rp_derived_opts_init(&dflt);
    const int series_no = o->series_number > 0 ? o->series_number : series_number(&dflt, sd) + 2;
    std::string da, tm;
    now_da_tm(da, tm);
    /* frames are rendered straight into the Pixel Data element's buffer: a 133-slice
     * 512x512 overlay is 105 MB, and a second copy would double it */
    const size_t frame_bytes = ns * 3;
    const int nfiles = o->single_frame ? nz : 1;
    char **paths = (char **)calloc((size_t)nfiles, sizeof(char *));
    if (!paths)
        return RP_ENOMEM;
    size_t written = 0;
    std::vector<size_t> all(sources.size());
    for (size_t i = 0; i < all.size(); i++)
        all[i] = i;
    for (int f = 0; f < nfiles && rc == 0; f++) {
        DcmFileFormat ff;
        DcmDataset *d = ff.getDataset();
        const char *cls = o->single_frame ? UID_SecondaryCaptureImageStorage : UID_MF_TRUE_COLOR_SC;
        if ((rc = put_common(d, sd, o, series_uid, desc, series_no, da, tm, cls)))
            break;
        d->putAndInsertUint16(DCM_Rows, (Uint16)ny);
        d->putAndInsertUint16(DCM_Columns, (Uint16)nx);
        d->putAndInsertString(DCM_InstanceNumber, std::to_string(f + 1).c_str());
        const std::string po = orient_letters(g.row_dir) + "\\" + orient_letters(g.col_dir);
        d->putAndInsertString(DCM_PatientOrientation, po.c_str());
        const size_t bytes = frame_bytes * (o->single_frame ? 1 : (size_t)nz);
        DcmPixelData *pd = new DcmPixelData(DCM_PixelData);
        Uint8 *buf = NULL;
        /* a DICOM value has even length: odd RGB data gets one zero pad byte */
        if (pd->createUint8Array((Uint32)(bytes + (bytes & 1)), buf).bad() || !buf ||
            d->insert(pd, OFTrue).bad()) {
            delete pd;
            rc = RP_ENOMEM;
            break;
        }
        if (bytes & 1)
            buf[bytes] = 0;
        pd->setVR(EVR_OB); /* 8-bit samples */
        if (o->single_frame) {
            double ipp[3];
            slice_ipp(g, f, ipp);
            render_frame(src, f, lo, hi, onsrc, masks, o->caption, flip_x, flip_y, buf);
            put_sources(d, sources,
                        sources.size() > 1 ? sources_for(sources, g.normal, ipp, g.spacing_z)
                                           : all);
        } else {
            /* SC Multi-frame: frames stepped through by their slice location */
            std::string locs;
            for (int k = 0; k < nz; k++) {
                double ipp[3];
                slice_ipp(g, k, ipp);
                locs += (k ? "\\" : "") +
                        ds(ipp[0] * g.normal[0] + ipp[1] * g.normal[1] + ipp[2] * g.normal[2]);
                render_frame(src, k, lo, hi, onsrc, masks, o->caption, flip_x, flip_y,
                             buf + frame_bytes * k);
            }
            d->putAndInsertString(DCM_NumberOfFrames, std::to_string(nz).c_str());
            if (nz > 1) { /* one frame (a radiograph) is stepped through by nothing */
                d->putAndInsertTagKey(DCM_FrameIncrementPointer, DCM_SliceLocationVector);
                d->putAndInsertString(DCM_SliceLocationVector, locs.c_str());
            }
            put_sources(d, sources, all);
        }
        char name[48];
        if (o->single_frame)
            snprintf(name, sizeof name, "/overlay_%05d.dcm", f + 1);
        else
            snprintf(name, sizeof name, "/overlay.dcm");
        std::string path = std::string(out_dir) + name;
        if ((rc = save_atomic(ff, path)))
            break;
        paths[written] = strdup(path.c_str());
        if (!paths[written++]) {
            rc = RP_ENOMEM;
            break;
        }
    }
    if (rc) {
        for (size_t i = 0; i < written; i++)
            if (paths[i])
                unlink(paths[i]);
        rp_derived_paths_free(paths, written);
        return rc;
    }
    rp_fsync_path(out_dir, 1);
    RP_INFO(MOD, "overlay written series_uid=%s frames=%d masks=%zu files=%zu", series_uid.c_str(),
            nz, n, written);
    *paths_out = paths;
    *n_out = written;
    return 0;
}
