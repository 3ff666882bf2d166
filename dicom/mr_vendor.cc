// dicom/mr_vendor.cc — MR details that dcm2niix derives from vendor headers and that BIDS
// tools need: diffusion b-values and gradient directions (Siemens CSA, GE, Philips and UIH
// private elements; the standard (0018,9087)/(0018,9089) are read in decode.cc), the phase
// encoding axis and polarity, and per-tile slice acquisition times of mosaics. Private
// elements are found through their creator's block (the usual block as a fallback, as some
// anonymisers drop creators). Contract in dicom.h / mr_vendor_internal.h.
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcelem.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dcsequen.h>

#include <cctype>
#include <cmath>
#include <string>
#include <cstdlib>
#include <cstring>
#include <strings.h>
#include <zlib.h>

#include "common/common.h"
#include "dicom/mr_vendor_internal.h"

namespace
{

/* Block byte (0x10..0xFF) reserved in `group` by a creator containing `creator`, or
 * `fallback` when no such creator is declared. */
Uint16 block_of(DcmItem *ds, Uint16 group, const char *creator, Uint16 fallback)
{
    for (Uint16 blk = 0x10; blk <= 0xFF; blk++) {
        OFString c;
        if (ds->findAndGetOFString(DcmTagKey(group, blk), c).good() &&
            strstr(c.c_str(), creator))
            return blk;
    }
    return fallback;
}

DcmTagKey ptag(Uint16 group, Uint16 blk, Uint16 el)
{
    return DcmTagKey(group, (Uint16)((blk << 8) | (el & 0xFF)));
}

/* Value `pos` of a numeric element whatever its VR (FD, FL, DS, IS, SL, or UN/OB holding the
 * binary form of `bin_bytes` 4 = float32, 8 = float64, 0 = text). NAN when absent. */
double num(DcmItem *it, const DcmTagKey &tag, unsigned long pos = 0, int bin_bytes = 0)
{
    DcmElement *el = NULL;
    if (!it || it->findAndGetElement(tag, el).bad() || !el)
        return NAN;
    const DcmEVR vr = el->getVR();
    if (vr == EVR_UN || vr == EVR_OB) {
        Uint8 *p = NULL;
        if (el->getUint8Array(p).bad() || !p)
            return NAN;
        unsigned long n = el->getLength();
        if (bin_bytes == 4 && (pos + 1) * 4 <= n) {
            float f;
            memcpy(&f, p + pos * 4, 4);
            return std::isfinite(f) ? f : NAN;
        }
        if (bin_bytes == 8 && (pos + 1) * 8 <= n) {
            double d;
            memcpy(&d, p + pos * 8, 8);
            return std::isfinite(d) ? d : NAN;
        }
        if (bin_bytes == 0 && n < 256) {
            char buf[256];
            memcpy(buf, p, n);
            buf[n] = 0;
            char *s = buf;
            for (unsigned long k = 0; k < pos && s; k++) {
                s = strchr(s, '\\');
                if (s)
                    s++;
            }
            char *end = NULL;
            double v = s ? strtod(s, &end) : NAN;
            return s && end != s && std::isfinite(v) ? v : NAN;
        }
        return NAN;
    }
    Float64 d;
    if (el->getFloat64(d, pos).good() && std::isfinite(d))
        return d;
    Float32 f;
    if (el->getFloat32(f, pos).good() && std::isfinite(f))
        return f;
    Sint32 i;
    if (el->getSint32(i, pos).good())
        return i;
    OFString s;
    if (el->getOFString(s, pos).good()) {
        char *end = NULL;
        double v = strtod(s.c_str(), &end);
        if (end != s.c_str() && std::isfinite(v))
            return v;
    }
    return NAN;
}

void str(DcmItem *it, const DcmTagKey &tag, char *dst, size_t n)
{
    OFString s;
    dst[0] = 0;
    if (it && it->findAndGetOFString(tag, s).good()) {
        rp_strlcpy(dst, s.c_str(), n);
        size_t l = strlen(dst);
        while (l && (dst[l - 1] == ' ' || dst[l - 1] == 0))
            dst[--l] = 0;
    }
}

DcmItem *item(DcmItem *parent, const DcmTagKey &seq, unsigned long i = 0)
{
    DcmItem *it = NULL;
    if (parent && parent->findAndGetSequenceItem(seq, it, (signed long)i).good())
        return it;
    return NULL;
}

/* `tag` in `it` or in the first item of any of its sequences, `depth` levels down. */
double num_nested(DcmItem *it, const DcmTagKey &tag, int depth)
{
    if (!it)
        return NAN;
    double v = num(it, tag);
    if (!std::isnan(v) || depth <= 0)
        return v;
    for (unsigned long i = 0; i < it->card(); i++) {
        DcmElement *el = it->getElement(i);
        if (!el || el->ident() != EVR_SQ)
            continue;
        DcmSequenceOfItems *sq = static_cast<DcmSequenceOfItems *>(el);
        if (sq->card() > 0 && !std::isnan(v = num_nested(sq->getItem(0), tag, depth - 1)))
            return v;
    }
    return NAN;
}

bool vendor(const rp_dcm_info *in, const char *name)
{
    return !strncasecmp(in->manufacturer, name, strlen(name));
}

/* Every frame without a b-value (or direction) from the standard tags gets these; with
 * `override`, every frame (the vendor's own elements are what its scanners fill reliably). */
void set_frames_b(rp_dcm_info *in, double b, const double *v, bool override)
{
    for (int f = 0; f < in->n_frames; f++) {
        rp_dcm_frame *fr = &in->frame[f];
        if (!std::isnan(b) && (override || std::isnan(fr->b_value)))
            fr->b_value = b;
        if (v && (override || std::isnan(fr->b_vec[0])))
            memcpy(fr->b_vec, v, 3 * sizeof(double));
    }
}

/* A number after "<key>" and "=" in Siemens' ASCII protocol (MrPhoenixProtocol, inside the
 * CSA series header); `dflt` when absent. */
long ascconv_value(const Uint8 *p, size_t n, const char *key, long dflt)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl + 4 < n; i++) {
        if (p[i] != (Uint8)key[0] || memcmp(p + i, key, kl) != 0)
            continue;
        size_t j = i + kl;
        if (p[j] != ' ' && p[j] != '\t' && p[j] != '=')
            continue; /* a longer key with this prefix */
        while (j < n && (p[j] == ' ' || p[j] == '\t'))
            j++;
        if (j >= n || p[j] != '=')
            continue;
        j++;
        char buf[32];
        size_t k = 0;
        while (j < n && (p[j] == ' ' || p[j] == '\t'))
            j++;
        while (j < n && k + 1 < sizeof buf && p[j] > ' ' && p[j] < 127)
            buf[k++] = (char)p[j++];
        buf[k] = 0;
        char *end = NULL;
        long v = strtol(buf, &end, 0);
        return end != buf ? v : dflt;
    }
    return dflt;
}

/* Mosaics without MosaicRefAcqTimes (syngo B12/B13): dcm2niix's "rescue" — times from the
 * protocol's slice order (sSliceArray.ucMode 1 ascending, 2 descending, 4 interleaved, odd
 * counts starting with the first slice, even ones with the second) spread evenly over
 * TR - lDelayTimeInTR; not for multiband. Per tile, ms. */
void siemens_rescue_times(DcmDataset *ds, Uint16 blk, rp_dcm_info *in)
{
    const Uint8 *p = NULL;
    unsigned long n = 0;
    int ns = in->mosaic_images;
    if (ns < 2 || std::isnan(in->repetition_time) || !strcmp(in->mr_acquisition_type, "3D") ||
        ds->findAndGetUint8Array(ptag(0x0029, blk, 0x20), p, &n).bad() || !p)
        return;
    long mode = ascconv_value(p, n, "sSliceArray.ucMode", -1);
    long delay_us = ascconv_value(p, n, "lDelayTimeInTR", 0);
    if ((mode != 1 && mode != 2 && mode != 4) ||
        ascconv_value(p, n, "sSliceAcceleration.lMultiBandFactor", 1) > 1)
        return;
    double *t = (double *)calloc((size_t)ns, sizeof(double));
    if (!t)
        return;
    double ta = in->repetition_time - delay_us / 1000.0; /* ms */
    for (int i = 0; i < ns; i++) {
        int k = i; /* excitation index of slice i */
        if (mode == 2) {
            k = ns - 1 - i;
        } else if (mode == 4) {
            int first_even = (ns + 1) / 2, odd0 = 0;
            if (ns % 2 == 0) {
                odd0 = first_even;
                first_even = 0;
            }
            k = i % 2 == 0 ? odd0 + i / 2 : first_even + i / 2;
        }
        t[i] = k * ta / ns;
    }
    in->tile_times_ms = t;
    in->n_tile_times = ns;
}

/* Siemens CSA image header: B_value, DiffusionGradientDirection, PhaseEncodingDirectionPositive,
 * MosaicRefAcqTimes (ms, one per tile). */
void siemens(DcmDataset *ds, rp_dcm_info *in)
{
    Uint16 blk = block_of(ds, 0x0029, "SIEMENS CSA HEADER", 0);
    const Uint8 *p = NULL;
    unsigned long n = 0;
    if (blk && ds->findAndGetUint8Array(ptag(0x0029, blk, 0x10), p, &n).good() && p) {
        double v[3];
        if (rp_dcm_csa_find(p, n, "PhaseEncodingDirectionPositive", v, 1) == 1 &&
            (v[0] == 0 || v[0] == 1))
            in->pe_positive = (int)v[0];
        double b;
        if (rp_dcm_csa_find(p, n, "B_value", &b, 1) == 1) {
            double g[3] = {0, 0, 0};
            if (rp_dcm_csa_find(p, n, "DiffusionGradientDirection", v, 3) == 3)
                memcpy(g, v, sizeof g);
            set_frames_b(in, b, g, false);
        }
        if (in->mosaic_images > 1) {
            double *t = (double *)calloc((size_t)in->mosaic_images, sizeof(double));
            if (t && rp_dcm_csa_find(p, n, "MosaicRefAcqTimes", t, in->mosaic_images) ==
                         in->mosaic_images) {
                in->tile_times_ms = t;
                in->n_tile_times = in->mosaic_images;
            } else {
                free(t);
            }
        }
        if (!in->tile_times_ms)
            siemens_rescue_times(ds, blk, in);
    }
    Uint16 b2 = block_of(ds, 0x0021, "SIEMENS MR SDI", 0x11);
    if (!in->mosaic_images) { /* XA 2-D slices: each file's time within the run (s) */
        double tas = num(ds, ptag(0x0021, b2, 0x04));
        if (!std::isnan(tas))
            in->time_after_start_ms = tas * 1000.0;
    }
    if (in->pe_positive < 0) { /* XA: no CSA; the polarity is (0021,xx1C) */
        double ph = num(ds, ptag(0x0021, b2, 0x1C));
        if (std::isnan(ph)) /* enhanced XA: inside the functional groups' private items */
            ph = num_nested(item(ds, DCM_SharedFunctionalGroupsSequence),
                            ptag(0x0021, b2, 0x1C), 2);
        if (std::isnan(ph))
            ph = num_nested(item(ds, DCM_PerFrameFunctionalGroupsSequence),
                            ptag(0x0021, b2, 0x1C), 2);
        if (ph == 0 || ph == 1)
            in->pe_positive = (int)ph;
    }
}

/* GE user data header (0043,xx2A): phase-encoding polarity flag and k-space direction at
 * fixed offsets, as dcm2niix reads them (EPI only). */
void ge_user_data(DcmDataset *ds, Uint16 blk, rp_dcm_info *in)
{
    const Uint8 *p = NULL;
    unsigned long n = 0;
    if (ds->findAndGetUint8Array(ptag(0x0043, blk, 0x2A), p, &n).bad() || !p || n < 916)
        return;
    auto u16 = [&](size_t off) -> int { return p[off] | (p[off + 1] << 8); };
    size_t off = (size_t)u16(24);
    if (off + 916 > n)
        return;
    float version;
    memcpy(&version, p + off, 4);
    if (!(version >= 5.0f && version <= 40.0f))
        return;
    size_t hdr = off, kydir = 0x394;
    if (version >= 25.002f) {
        hdr += 0x4c;
        kydir -= 0x8c;
    }
    if (hdr + kydir + 2 > n || !(u16(hdr + 0x3a) & 0x800)) /* not EPI */
        return;
    int flipped = (u16(hdr + 0x30) & 0x0004) != 0;
    if ((short)u16(hdr + kydir) == 2) /* slices acquired bottom-up: k-space reversed */
        flipped = !flipped;
    in->pe_positive = flipped ? 0 : 1;
}

/* The text after `key` up to the end of its line, quotes dropped (GE protocol block lines
 * read `KEY "value"`). `at_line_start`: the key must begin a line. */
bool pdb_value(const std::string &t, const char *key, bool at_line_start, char *out, size_t n)
{
    size_t kl = strlen(key), pos = 0;
    for (;;) {
        pos = t.find(key, pos);
        if (pos == std::string::npos)
            return false;
        if ((!at_line_start || pos == 0 || t[pos - 1] == '\n') && pos + kl < t.size() &&
            t[pos + kl] == ' ')
            break;
        pos += kl;
    }
    size_t e = t.find('\n', pos);
    std::string v = t.substr(pos + kl, e == std::string::npos ? std::string::npos : e - pos - kl);
    size_t k = 0;
    for (char ch : v)
        if (ch != '"' && k + 1 < n && !(k == 0 && ch == ' '))
            out[k++] = ch;
    out[k] = 0;
    return true;
}

/* GE EPI slice timing as dcm2niix derives it from the protocol data block (0025,xx1B: a
 * 4-byte length, then gzip'ed `KEY "value"` lines): SLICEORDER (0 sequential) for epiRT /
 * FMRI, always interleaved for multi-phase epi; MBACCEL; not for diffusion, pepolar,
 * variable delays. The times themselves need the stack (pipeline/write/sidecar.c). */
void ge_protocol_block(DcmDataset *ds, rp_dcm_info *in)
{
    char psd[65] = "";
    str(ds, ptag(0x0019, block_of(ds, 0x0019, "GEMS_ACQU_01", 0x10), 0x9C), psd, sizeof psd);
    if (strlen(in->software_versions) < 10 || !strcmp(in->mr_acquisition_type, "3D") ||
        strstr(psd, "epi_pepolar") || strstr(psd, "epi2"))
        return;
    const Uint8 *p = NULL;
    unsigned long n = 0;
    Uint16 blk = block_of(ds, 0x0025, "GEMS_SERS_01", 0x10);
    if (ds->findAndGetUint8Array(ptag(0x0025, blk, 0x1B), p, &n).bad() || !p || n < 24 ||
        p[4] != 0x1f || p[5] != 0x8b)
        return;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return;
    std::string t;
    char buf[8192];
    z.next_in = (Bytef *)(p + 4);
    z.avail_in = (uInt)(n - 4);
    int zr;
    do {
        z.next_out = (Bytef *)buf;
        z.avail_out = sizeof buf;
        zr = inflate(&z, Z_NO_FLUSH);
        t.append(buf, sizeof buf - z.avail_out);
    } while (zr == Z_OK && t.size() < (4u << 20));
    inflateEnd(&z);
    if (zr != Z_STREAM_END)
        return;
    char so[32] = "", iopt[512] = "", mb[32] = "", delacq[64] = "";
    pdb_value(t, "SLICEORDER", true, so, sizeof so);
    pdb_value(t, "IOPT", true, iopt, sizeof iopt);
    pdb_value(t, "MBACCEL", true, mb, sizeof mb);
    pdb_value(t, "DELACQ", true, delacq, sizeof delacq);
    bool rt = strstr(psd, "epiRT") != NULL, epi = !rt && strstr(psd, "epi") != NULL;
    if (rt || strstr(iopt, "FMRI")) {
        in->ge_slice_order = atoi(so) != 0 ? 1 : 0;
    } else if (epi || strstr(iopt, "MPh")) {
        if (strstr(iopt, "MPhVar"))
            return; /* variable delays between phases */
        in->ge_slice_order = 1;
    } else {
        return; /* diffusion and others: dcm2niix gives none */
    }
    in->ge_mb = atoi(mb) > 1 ? atoi(mb) : 1;
    /* "27\LX\MR Software release:RX27.0_R03_..." -> 27.0, release 3 */
    const char *v = in->software_versions;
    const char *r = strstr(v, "release:");
    if (r)
        r += 8;
    else
        r = strrchr(v, '\\') ? strrchr(v, '\\') + 1 : v;
    while (*r && !(isdigit((unsigned char)r[0]) && strchr(r, '.')))
        r++;
    in->ge_version = atof(r);
    const char *rel = strstr(r, "_R");
    int relno = rel ? atoi(rel + 2) : 0;
    in->ge_r3 = in->ge_version >= 28 || (in->ge_version >= 27 && relno >= 3);
}

/* GE: b-value in (0043,xx39) (first value; values above 1e9 carry a bias of 1e9),
 * direction in the image frame (0019,xxBB/BC/BD), polarity (0018,9034) or (0043,xx2A). */
void ge(DcmDataset *ds, rp_dcm_info *in)
{
    char re[17];
    str(ds, DCM_RectilinearPhaseEncodeReordering, re, sizeof re);
    if (re[0] == 'L')
        in->pe_positive = 0;
    else if (re[0] == 'R')
        in->pe_positive = 1;
    Uint16 b43 = block_of(ds, 0x0043, "GEMS_PARM_01", 0x10);
    if (in->pe_positive < 0)
        ge_user_data(ds, b43, in);
    ge_protocol_block(ds, in);
    double b = num(ds, ptag(0x0043, b43, 0x39));
    if (std::isnan(b))
        return;
    b = std::fmod(b, 1e9);
    Uint16 b19 = block_of(ds, 0x0019, "GEMS_ACQU_01", 0x10);
    double nd = num(ds, ptag(0x0019, b19, 0xE0));
    if (!std::isnan(nd))
        in->ge_diffusion_dirs = (int)std::lround(nd);
    double g[3];
    for (int k = 0; k < 3; k++)
        g[k] = num(ds, ptag(0x0019, b19, (Uint16)(0xBB + k)));
    bool has_g = !std::isnan(g[0]) && !std::isnan(g[1]) && !std::isnan(g[2]);
    /* a standard world-frame direction wins (GE RX27+ writes both); an empty one does not */
    const double *sv = in->n_frames > 0 ? in->frame[0].b_vec : NULL;
    bool std_vec = sv && !std::isnan(sv[0]) && (sv[0] != 0 || sv[1] != 0 || sv[2] != 0);
    if (has_g && !std_vec)
        in->bvec_frame = RP_DCM_BVEC_GE;
    set_frames_b(in, b, has_g && !std_vec ? g : NULL, true);
}

/* Philips classic: b-value (2001,xx03) FL, direction (2005,xxB0/B1/B2) FL in RL, AP, FH,
 * i.e. patient LPS axes. */
void philips(DcmDataset *ds, rp_dcm_info *in)
{
    Uint16 b01 = block_of(ds, 0x2001, "Philips Imaging DD 001", 0x10);
    Uint16 b05 = block_of(ds, 0x2005, "Philips MR Imaging DD 001", 0x10);
    double b = num(ds, ptag(0x2001, b01, 0x03), 0, 4);
    double g[3];
    for (int k = 0; k < 3; k++)
        g[k] = num(ds, ptag(0x2005, b05, (Uint16)(0xB0 + k)), 0, 4);
    bool has_g = !std::isnan(g[0]) && !std::isnan(g[1]) && !std::isnan(g[2]);
    set_frames_b(in, b, has_g ? g : NULL, !in->enhanced);
}

/* UIH: b-value (0065,xx09) FD, direction (0065,xx37) FD in the image frame, polarity
 * (0065,xx58) (1: reversed), and per-tile Acquisition Time in the items of (0065,xx51). */
void uih(DcmDataset *ds, rp_dcm_info *in)
{
    Uint16 blk = block_of(ds, 0x0065, "Image Private Header", 0x10);
    double ph = num(ds, ptag(0x0065, blk, 0x58));
    if (ph == 0 || ph == 1)
        in->pe_positive = ph == 1 ? 0 : 1;
    double b = num(ds, ptag(0x0065, blk, 0x09), 0, 8);
    double g[3];
    for (int k = 0; k < 3; k++)
        g[k] = num(ds, ptag(0x0065, blk, 0x37), (unsigned long)k, 8);
    if (!std::isnan(g[0]) && !std::isnan(g[1]) && !std::isnan(g[2])) {
        in->bvec_frame = RP_DCM_BVEC_UIH;
        set_frames_b(in, b, g, true);
    } else if (!std::isnan(b)) {
        set_frames_b(in, b, NULL, true);
    }
    DcmSequenceOfItems *sq = NULL;
    if (in->mosaic_images > 1 &&
        ds->findAndGetSequence(ptag(0x0065, blk, 0x51), sq).good() && sq &&
        sq->card() == (unsigned long)in->mosaic_images) {
        double *t = (double *)calloc((size_t)in->mosaic_images, sizeof(double));
        if (!t)
            return;
        double mn = INFINITY;
        for (int k = 0; k < in->mosaic_images; k++) {
            char tm[32];
            str(sq->getItem((unsigned long)k), DCM_AcquisitionTime, tm, sizeof tm);
            int hh, mm;
            double ss;
            if (strlen(tm) < 6 || sscanf(tm, "%2d%2d%lf", &hh, &mm, &ss) != 3) {
                free(t);
                return;
            }
            t[k] = ((hh * 60.0 + mm) * 60.0 + ss) * 1000.0;
            mn = t[k] < mn ? t[k] : mn;
        }
        for (int k = 0; k < in->mosaic_images; k++) /* midnight: dcm2niix ignores it too */
            t[k] -= mn;
        in->tile_times_ms = t;
        in->n_tile_times = in->mosaic_images;
    }
}

/* Diffusion Directionality other than DIRECTIONAL / BMATRIX (ISOTROPIC, NONE): the frame has
 * no direction even when a vector is given (Philips writes the trace with a stale one). */
void directionality(DcmDataset *ds, rp_dcm_info *in)
{
    char d[17];
    str(ds, DCM_DiffusionDirectionality, d, sizeof d);
    DcmSequenceOfItems *pf = NULL;
    if (in->enhanced) { /* classic files: no functional groups to search (time per file) */
        ds->findAndGetSequence(DCM_PerFrameFunctionalGroupsSequence, pf);
        if (!d[0])
            str(item(item(ds, DCM_SharedFunctionalGroupsSequence), DCM_MRDiffusionSequence),
                DCM_DiffusionDirectionality, d, sizeof d);
    }
    for (int f = 0; f < in->n_frames; f++) {
        char fd[17];
        rp_strlcpy(fd, d, sizeof fd);
        if (pf && (unsigned long)f < pf->card()) {
            char x[17];
            str(item(pf->getItem((unsigned long)f), DCM_MRDiffusionSequence),
                DCM_DiffusionDirectionality, x, sizeof x);
            if (x[0])
                rp_strlcpy(fd, x, sizeof fd);
        }
        if ((!strcmp(fd, "ISOTROPIC") || !strcmp(fd, "NONE")) && !std::isnan(in->frame[f].b_value))
            in->frame[f].b_vec[0] = in->frame[f].b_vec[1] = in->frame[f].b_vec[2] = 0;
    }
}

} // namespace

void rp_dcm_read_mr_vendor(DcmDataset *ds, rp_dcm_info *in)
{
    in->pe_positive = -1;
    in->ge_diffusion_dirs = -1;
    in->time_after_start_ms = NAN;
    in->ge_slice_order = -1;
    in->ge_mb = 1;
    in->bvec_frame = RP_DCM_BVEC_PATIENT;
    if (strcmp(in->modality, "MR") != 0 || !in->frame)
        return;
    str(ds, DCM_MRAcquisitionType, in->mr_acquisition_type, sizeof in->mr_acquisition_type);
    str(ds, DCM_InPlanePhaseEncodingDirection, in->inplane_pe_dir, sizeof in->inplane_pe_dir);
    if (!in->inplane_pe_dir[0] && in->enhanced) /* MR FOV/Geometry in the functional groups */
        str(item(item(ds, DCM_SharedFunctionalGroupsSequence), DCM_MRFOVGeometrySequence),
            DCM_InPlanePhaseEncodingDirection, in->inplane_pe_dir, sizeof in->inplane_pe_dir);
    if (!in->inplane_pe_dir[0] && in->enhanced) {
        DcmItem *pf = item(ds, DCM_PerFrameFunctionalGroupsSequence);
        str(item(pf, DCM_MRFOVGeometrySequence), DCM_InPlanePhaseEncodingDirection,
            in->inplane_pe_dir, sizeof in->inplane_pe_dir);
    }
    if (vendor(in, "SIEMENS"))
        siemens(ds, in);
    else if (vendor(in, "GE"))
        ge(ds, in);
    else if (vendor(in, "Philips"))
        philips(ds, in);
    else if (vendor(in, "UIH"))
        uih(ds, in);
    directionality(ds, in);
}
