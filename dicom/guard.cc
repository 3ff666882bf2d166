/* Structure guard: an iterative walk over the element headers of a file, before dcmtk's
 * recursive reader sees it (see guard_internal.h). The VR of implicit-VR elements comes from
 * dcmtk's data dictionary, so a defined-length sequence is followed like dcmtk follows it. */
#include "dicom/guard_internal.h"

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dctag.h>

#include <cerrno>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <new>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "common/common.h"

namespace
{

const size_t UNDEF = SIZE_MAX;
const uint32_t UNDEF32 = 0xFFFFFFFFu;

enum ckind { C_SEQ, C_PIXSEQ, C_ITEM };

struct container {
    ckind kind;
    size_t end;    /* UNDEF: closed by a delimiter */
    bool implicit; /* elements inside are implicit VR (UN sequences: implicit LE) */
};

/* The file is read through a small window (pread): the walk touches element headers only,
 * and mapping whole files costs more than the walk. */
struct walker {
    int fd;
    /* In-memory mode (rp_dcm_guard_mem): the bytes, and a stricter walk. dcmtk cannot leave
     * a value of a memory stream unread as it can a file's, so it allocates whatever length
     * an element declares (gigabytes from a few hundred bytes); such lengths are refused
     * here, and the walk ends at the top-level Pixel Data, where the header ends. */
    const uint8_t *mem = nullptr;
    size_t n;
    uint8_t win[16384];
    size_t win_off = 0, win_len = 0;
    bool io_error = false;
    bool deflated = false;   /* Deflated Explicit VR Little Endian: the walk stopped at */
    size_t deflate_start = 0; /* the dataset's first (compressed) byte */
    bool le = true;
    bool implicit = false;
    container st[2 * RP_DCM_MAX_DEPTH + 4];
    int top = 0; /* number of containers */
    int seq_depth = 0;
};

/* Pointer to bytes [at, at+len) (len <= 16); zeros past the end or after a read error. */
const uint8_t *need(walker &w, size_t at, size_t len)
{
    static const uint8_t zeros[16] = {0};
    if (w.mem) {
        if (at > w.n || len > w.n - at) {
            w.io_error = true;
            return zeros;
        }
        return w.mem + at;
    }
    if (at >= w.win_off && at + len <= w.win_off + w.win_len)
        return w.win + (at - w.win_off);
    ssize_t r = pread(w.fd, w.win, sizeof w.win, (off_t)at);
    if (r < (ssize_t)len) {
        w.io_error = true;
        w.win_len = 0;
        return zeros;
    }
    w.win_off = at;
    w.win_len = (size_t)r;
    return w.win;
}

uint16_t rd16(walker &w, size_t at, bool le)
{
    const uint8_t *b = need(w, at, 2);
    return le ? (uint16_t)(b[0] | b[1] << 8) : (uint16_t)(b[1] | b[0] << 8);
}

uint32_t rd32(walker &w, size_t at, bool le)
{
    const uint8_t *b = need(w, at, 4);
    return le ? (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24
              : (uint32_t)b[3] | (uint32_t)b[2] << 8 | (uint32_t)b[1] << 16 | (uint32_t)b[0] << 24;
}

/* Whether an explicit VR has a 4-byte length, decided as dcmtk's reader decides it (the walk
 * must see the same element boundaries as dcmtk, or a file could hide its nesting from it):
 * the standard VRs by their definition; an unknown VR of two uppercase letters is taken as a
 * future VR (4-byte length); any other bytes keep a 2-byte length. */
const char *const LONG_VRS[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ",
                                "SV", "UC", "UN", "UR", "UT", "UV"};
const char *const SHORT_VRS[] = {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO",
                                 "LT", "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US"};

bool long_vr(const char *vr)
{
    for (const char *x : LONG_VRS)
        if (!memcmp(vr, x, 2))
            return true;
    for (const char *x : SHORT_VRS)
        if (!memcmp(vr, x, 2))
            return false;
    return vr[0] >= 'A' && vr[0] <= 'Z' && vr[1] >= 'A' && vr[1] <= 'Z';
}

/* A VR of the standard: how dcmtk tells explicit from implicit VR in a raw dataset. */
bool standard_vr(const uint8_t *b)
{
    for (const char *x : LONG_VRS)
        if (!memcmp(b, x, 2))
            return true;
    for (const char *x : SHORT_VRS)
        if (!memcmp(b, x, 2))
            return true;
    return false;
}

void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* 1: pushed; 0: too deep (err set) */
int push(walker &w, ckind k, size_t end, bool implicit, char *err, size_t errlen)
{
    if (k != C_ITEM && ++w.seq_depth > RP_DCM_MAX_DEPTH) {
        seterr(err, errlen,
               "sequences nested deeper than %d levels: refused before parsing "
               "(hostile or damaged structure)",
               RP_DCM_MAX_DEPTH);
        return 0;
    }
    if (w.top >= (int)(sizeof w.st / sizeof w.st[0])) {
        seterr(err, errlen, "items nested deeper than %d levels: refused before parsing",
               RP_DCM_MAX_DEPTH);
        return 0;
    }
    w.st[w.top++] = container{k, end, implicit};
    return 1;
}

void pop(walker &w)
{
    if (w.top > 0 && w.st[--w.top].kind != C_ITEM)
        w.seq_depth--;
}

/* An element runs past the end of the bytes: RP_EPARSE in memory (see walker::mem). A file
 * is left to dcmtk, which reads a file lazily and reports the truncation itself; the walk
 * may also have lost step with a file that dcmtk reads fine (a meta header that names the
 * wrong transfer syntax, which dcmtk detects). */
int past_end(const walker &w, char *err, size_t errlen)
{
    if (!w.mem)
        return 0;
    seterr(err, errlen, "truncated or not DICOM: an element runs past the end of the %zu bytes",
           w.n);
    return RP_EPARSE;
}

/* Walk from `pos`; 0 when nothing exceeded a bound (or the walk lost track), RP_EUNSUPPORTED,
 * or RP_EPARSE (an element past the end). */
int walk(walker &w, size_t pos, char *err, size_t errlen)
{
    long long count = 0;
    bool in_meta_possible = true;
    size_t meta_end = 0;
    while (pos + 8 <= w.n && !w.io_error) {
        while (w.top && w.st[w.top - 1].end != UNDEF && pos >= w.st[w.top - 1].end)
            pop(w);
        if (++count > RP_DCM_MAX_ELEMENTS) {
            seterr(err, errlen, "more than %d elements: refused before parsing",
                   RP_DCM_MAX_ELEMENTS);
            return RP_EUNSUPPORTED;
        }
        /* the meta header is explicit VR little endian: its group 0002, and like dcmtk,
         * whatever lies within the length its (0002,0000) states */
        bool meta = in_meta_possible && w.top == 0 &&
                    (rd16(w, pos, true) == 0x0002 || pos < meta_end);
        if (!meta && w.top == 0)
            in_meta_possible = false;
        if (!meta && w.deflated) {
            w.deflate_start = pos;
            return 0;
        }
        bool le = meta || w.le;
        uint16_t g = rd16(w, pos, le), e = rd16(w, pos + 2, le);
        if (g == 0xFFFE) {
            uint32_t len = rd32(w, pos + 4, le);
            pos += 8;
            if (e == 0xE000) {
                if (w.top && w.st[w.top - 1].kind == C_PIXSEQ) {
                    if (len == UNDEF32 || len > w.n - pos)
                        return past_end(w, err, errlen);
                    pos += len;
                    continue;
                }
                bool imp = w.top ? w.st[w.top - 1].implicit : w.implicit;
                if (!push(w, C_ITEM, len == UNDEF32 ? UNDEF : pos + len, imp, err, errlen))
                    return RP_EUNSUPPORTED;
            } else if (e == 0xE00D) {
                if (w.top && w.st[w.top - 1].kind == C_ITEM)
                    pop(w);
            } else if (e == 0xE0DD) {
                while (w.top && w.st[w.top - 1].kind == C_ITEM)
                    pop(w);
                if (w.top)
                    pop(w);
            }
            continue;
        }
        bool imp = meta ? false : (w.top ? w.st[w.top - 1].implicit : w.implicit);
        char vr[3] = "";
        size_t len;
        if (!imp) {
            const uint8_t *b = need(w, pos + 4, 2);
            vr[0] = (char)b[0];
            vr[1] = (char)b[1];
            if (long_vr(vr)) {
                if (pos + 12 > w.n)
                    return past_end(w, err, errlen);
                len = rd32(w, pos + 8, le);
                pos += 12;
            } else {
                len = rd16(w, pos + 6, le);
                pos += 8;
            }
        } else {
            len = rd32(w, pos + 4, le);
            pos += 8;
            /* a defined-length sequence starts with an item tag: only then ask the dictionary
             * (a locked lookup, too slow for every element of every file) */
            if (len == UNDEF32 ||
                (len >= 8 && pos + 4 <= w.n && rd16(w, pos, le) == 0xFFFE &&
                 rd16(w, pos + 2, le) == 0xE000 && DcmTag(g, e).getEVR() == EVR_SQ))
                memcpy(vr, "SQ", 2);
        }
        bool undef = len == UNDEF32;
        if (meta && g == 0x0002 && e == 0x0000 && len == 4 && pos + 4 <= w.n)
            meta_end = pos + 4 + rd32(w, pos, true);
        if (meta && g == 0x0002 && e == 0x0010 && !undef && len < 80 && pos + len <= w.n) {
            char ts[80];
            size_t tl = len;
            if (w.mem)
                memcpy(ts, w.mem + pos, tl);
            else if (pread(w.fd, ts, tl, (off_t)pos) != (ssize_t)tl)
                return 0;
            ts[tl] = 0;
            while (tl && (ts[tl - 1] == 0 || ts[tl - 1] == ' '))
                ts[--tl] = 0;
            w.implicit = !strcmp(ts, "1.2.840.10008.1.2");
            w.le = strcmp(ts, "1.2.840.10008.1.2.2") != 0;
            if (!strcmp(ts, "1.2.840.10008.1.2.1.99"))
                w.deflated = true; /* the dataset after the meta group: see walk_deflated() */
        }
        bool sq = !memcmp(vr, "SQ", 2);
        if (w.mem && w.top == 0 && g == 0x7FE0 && e == 0x0010)
            return 0; /* the header ends at Pixel Data; its value is the caller's */
        if (undef) {
            /* encapsulated pixel data, at the top or in an item (an icon image) */
            bool pixels = g == 0x7FE0 && e == 0x0010;
            ckind k = pixels ? C_PIXSEQ : C_SEQ;
            /* an undefined-length UN is a sequence in implicit VR little endian */
            bool inner_imp = !memcmp(vr, "UN", 2) ? true : imp;
            if (!push(w, k, UNDEF, inner_imp, err, errlen))
                return RP_EUNSUPPORTED;
            continue;
        }
        if (sq) {
            if (len > w.n - pos)
                return past_end(w, err, errlen);
            if (!push(w, C_SEQ, pos + len, imp, err, errlen))
                return RP_EUNSUPPORTED;
            continue;
        }
        if (len > w.n - pos)
            return past_end(w, err, errlen);
        pos += len;
    }
    /* a few bytes left that cannot be an element header declare no length: dcmtk's to judge */
    return 0;
}

} // namespace

/* A deflated dataset (dcmtk inflates it through a stream it cannot seek, so it reads every
 * value eagerly, whatever length an element declares): inflate it here (up to
 * DEFLATE_WALK_MAX bytes; a larger one is left to dcmtk as before) and walk the result as
 * bytes in memory, explicit VR little endian. */
const size_t DEFLATE_WALK_MAX = (size_t)512 << 20;

int walk_deflated(const uint8_t *src, size_t n, char *err, size_t errlen)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, -MAX_WBITS) != Z_OK)
        return 0;
    size_t cap = n * 4 + 65536, len = 0;
    uint8_t *out = (uint8_t *)malloc(cap);
    int zrc = Z_OK;
    z.next_in = (Bytef *)src;
    while (out && zrc == Z_OK) {
        if (len == cap) {
            if (cap >= DEFLATE_WALK_MAX)
                break;
            size_t ncap = cap * 2 > DEFLATE_WALK_MAX ? DEFLATE_WALK_MAX : cap * 2;
            uint8_t *o2 = (uint8_t *)realloc(out, ncap);
            if (!o2)
                break;
            out = o2;
            cap = ncap;
        }
        size_t in_left = n - (size_t)((const uint8_t *)z.next_in - src);
        z.avail_in = (uInt)(in_left > UINT32_MAX ? UINT32_MAX : in_left);
        z.next_out = out + len;
        size_t room = cap - len;
        z.avail_out = (uInt)(room > UINT32_MAX ? UINT32_MAX : room);
        uInt before = z.avail_out;
        zrc = inflate(&z, Z_NO_FLUSH);
        len += before - z.avail_out;
        if (zrc == Z_BUF_ERROR && z.avail_out == 0)
            zrc = Z_OK; /* output full: grow */
    }
    inflateEnd(&z);
    int rc = 0;
    if (out && len >= 8 && (zrc == Z_STREAM_END || zrc == Z_BUF_ERROR)) {
        walker *w = new (std::nothrow) walker;
        if (w) {
            w->fd = -1;
            w->mem = out;
            w->n = len;
            rc = walk(*w, 0, err, errlen);
            delete w;
        }
    }
    free(out);
    return rc;
}

/* The start of the walk: after the preamble of a Part-10 file, else a raw dataset whose VR
 * encoding the first element tells. */
size_t walk_start(walker &w)
{
    const uint8_t *h = need(w, 0, 8);
    if (w.n >= 132 && !memcmp(need(w, 128, 4), "DICM", 4))
        return 132;
    /* raw dataset: explicit VR when the bytes after the first tag are a standard VR (as dcmtk
     * decides: "FU" there is the start of an implicit VR length) */
    w.implicit = !standard_vr(h + 4);
    w.io_error = false;
    return 0;
}

int rp_dcm_guard(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0; /* the reader reports a missing or unreadable file as it always did */
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 8) {
        close(fd);
        return 0; /* not a regular file or too short: dcmtk says what it is */
    }
    walker *w = new (std::nothrow) walker;
    if (!w) {
        close(fd);
        return 0;
    }
    w->fd = fd;
    w->n = (size_t)st.st_size;
    int rc = walk(*w, walk_start(*w), err, errlen);
    if (rc == 0 && w->deflated && w->deflate_start < w->n) {
        size_t dn = w->n - w->deflate_start;
        uint8_t *d = dn <= DEFLATE_WALK_MAX ? (uint8_t *)malloc(dn) : nullptr;
        if (d && pread(fd, d, dn, (off_t)w->deflate_start) == (ssize_t)dn)
            rc = walk_deflated(d, dn, err, errlen);
        free(d);
    }
    close(fd);
    delete w;
    return rc;
}

int rp_dcm_guard_mem(const void *buf, size_t len, char *err, size_t errlen)
{
    if (!buf || len < 8)
        return 0; /* dcmtk says what it is */
    walker *w = new (std::nothrow) walker;
    if (!w)
        return 0;
    w->fd = -1;
    w->mem = (const uint8_t *)buf;
    w->n = len;
    int rc = walk(*w, walk_start(*w), err, errlen);
    if (rc == 0 && w->deflated && w->deflate_start < w->n)
        rc = walk_deflated(w->mem + w->deflate_start, w->n - w->deflate_start, err, errlen);
    delete w;
    return rc;
}

void rp_dcm_to_utf8(DcmDataset *ds)
{
    OFString cs;
    if (!ds || ds->findAndGetOFStringArray(DCM_SpecificCharacterSet, cs).bad() || cs.empty())
        return;
    if (cs == "ISO_IR 192" || cs == "ISO_IR 6" || cs == "ISO 2022 IR 6")
        return;
    (void)ds->convertToUTF8();
}
