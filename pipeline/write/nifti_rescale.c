/* pipeline/write/nifti_rescale.c — a NIfTI copy with other scaling fields, without touching
 * the voxels (see rp_nifti_copy_rescaled in write.h). */
#include "pipeline/write/write.h"

#include <errno.h>
#include <libdeflate.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"

#define OFF_SCL_SLOPE 112 /* NIfTI-1 header: float scl_slope, scl_inter */
#define OFF_SCL_INTER 116

static int slurp(const char *path, uint8_t **buf, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return RP_EIO;
    size_t cap = 1 << 20, len = 0;
    uint8_t *b = malloc(cap);
    while (b) {
        size_t r = fread(b + len, 1, cap - len, f);
        len += r;
        if (r == 0)
            break;
        if (len == cap) {
            uint8_t *g = realloc(b, cap *= 2);
            if (!g) {
                free(b);
                b = NULL;
            }
            b = g;
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (!b || bad) {
        free(b);
        return b ? RP_EIO : RP_ENOMEM;
    }
    *buf = b;
    *n = len;
    return 0;
}

static void patch(uint8_t *hdr, double slope, double inter)
{
    float s = (float)slope, i = (float)inter;
    memcpy(hdr + OFF_SCL_SLOPE, &s, 4);
    memcpy(hdr + OFF_SCL_INTER, &i, 4);
}

int rp_nifti_copy_rescaled(const char *in, const char *out, double slope, double inter, char *err,
                           size_t errlen)
{
    uint8_t *src = NULL, *plain = NULL, *head = NULL;
    size_t n = 0;
    int rc = slurp(in, &src, &n);
    if (rc) {
        snprintf(err, errlen, "cannot read %s: %s", in, strerror(errno));
        return rc;
    }
    struct libdeflate_decompressor *d = NULL;
    struct libdeflate_compressor *c = NULL;
    const uint8_t *tail = NULL;
    size_t tail_n = 0, head_n = 0;
    if (n >= 2 && src[0] == 0x1f && src[1] == 0x8b) {
        /* the first member: its size is unknown up front, grow until it fits */
        d = libdeflate_alloc_decompressor();
        size_t cap = 4 << 20, got = 0, used = 0;
        enum libdeflate_result r = LIBDEFLATE_INSUFFICIENT_SPACE;
        while (d && r == LIBDEFLATE_INSUFFICIENT_SPACE && cap <= ((size_t)1 << 34)) {
            free(plain);
            plain = malloc(cap);
            if (!plain)
                break;
            r = libdeflate_gzip_decompress_ex(d, src, n, plain, cap, &used, &got);
            cap *= 4;
        }
        if (!d || !plain || r != LIBDEFLATE_SUCCESS || got < 348) {
            rc = !d || !plain ? RP_ENOMEM : RP_EPARSE;
            snprintf(err, errlen, "%s: not a gzip'd NIfTI-1 file", in);
            goto out;
        }
        patch(plain, slope, inter);
        c = libdeflate_alloc_compressor(RP_NIFTI_DEFAULT_LEVEL);
        size_t bound = c ? libdeflate_gzip_compress_bound(c, got) : 0;
        head = bound ? malloc(bound) : NULL;
        head_n = head ? libdeflate_gzip_compress(c, plain, got, head, bound) : 0;
        if (!head_n) {
            rc = RP_ENOMEM;
            snprintf(err, errlen, "out of memory");
            goto out;
        }
        tail = src + used; /* the other members, as they are */
        tail_n = n - used;
    } else {
        if (n < 348) {
            rc = RP_EPARSE;
            snprintf(err, errlen, "%s: not a NIfTI-1 file", in);
            goto out;
        }
        patch(src, slope, inter);
        tail = src;
        tail_n = n;
    }
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp-%d", out, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f || (head_n && fwrite(head, 1, head_n, f) != head_n) ||
        fwrite(tail, 1, tail_n, f) != tail_n) {
        rc = RP_EIO;
    }
    if (f && fclose(f) != 0)
        rc = RP_EIO;
    if (!rc && rename(tmp, out) != 0)
        rc = RP_EIO;
    if (rc) {
        snprintf(err, errlen, "writing %s failed: %s", out, strerror(errno));
        unlink(tmp);
    }
out:
    if (d)
        libdeflate_free_decompressor(d);
    if (c)
        libdeflate_free_compressor(c);
    free(src);
    free(plain);
    free(head);
    return rc;
}
