/* libFuzzer target: every reader of dicom/ on one untrusted file, as a received instance,
 * a file in the store and a file given to `radprep process` meet them. The in-memory header
 * reader first (the receiving path), then the path-based readers through a memfd: index
 * meta, reference, header re-encoding, and the pixel reader (header + decoding of every
 * frame, then the modality transform) when the file declares a small enough image.
 * Contract checked: any bytes give 0 or a negative RP_E* code and a NUL-terminated reason,
 * never a crash, leak or undefined behaviour. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "dicom/dicom.h"
#include "fuzz_util.h"

/* Decoding is the expensive part; frames above this many bytes are not decoded here (the
 * header reader's own size checks still run). */
#define FUZZ_MAX_DECODE (4u << 20)

static void check_reason(int rc, const char *reason, size_t sz)
{
    if (rc > 0 || memchr(reason, '\0', sz) == NULL)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int inited;
    if (!inited) {
        rp_dcm_global_init();
        inited = 1;
    }
    char reason[256];
    rp_dcm_meta *meta = malloc(sizeof *meta);
    if (!meta)
        return 0;
    int rc = rp_dcm_read_meta_mem(data, size, (long long)size, meta, reason, sizeof reason);
    check_reason(rc, reason, sizeof reason);

    char path[64];
    int fd = rp_fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0) {
        free(meta);
        return 0;
    }
    rc = rp_dcm_read_meta(path, meta, reason, sizeof reason);
    check_reason(rc, reason, sizeof reason);
    free(meta);

    rp_dcm_ref ref;
    rc = rp_dcm_read_ref(path, &ref, reason, sizeof reason);
    check_reason(rc, reason, sizeof reason);

    void *hdr = NULL;
    size_t nhdr = 0;
    rc = rp_dcm_read_header_bytes(path, &hdr, &nhdr, reason, sizeof reason);
    check_reason(rc, reason, sizeof reason);
    free(hdr);

    rp_dcm_info *info = NULL;
    rc = rp_dcm_read_info(path, &info, reason, sizeof reason);
    check_reason(rc, reason, sizeof reason);
    if (rc == 0 && info && info->has_pixel_data) {
        size_t fb = rp_dcm_frame_bytes(info);
        if (fb > 0 && info->frames > 0 && fb * (size_t)info->frames <= FUZZ_MAX_DECODE) {
            rp_dcm_info *info2 = NULL;
            void *pix = NULL;
            size_t npix = 0;
            rc = rp_dcm_read_info_pixels(path, &info2, &pix, &npix, reason, sizeof reason);
            check_reason(rc, reason, sizeof reason);
            if (rc == 0 && pix && info2) {
                size_t per = rp_dcm_frame_bytes(info2) / rp_dcm_stype_size(info2->stype);
                float *f = malloc(per * sizeof *f);
                uint8_t *mask = malloc(per ? per : 1);
                if (f && mask && npix >= rp_dcm_frame_bytes(info2))
                    (void)rp_dcm_stored_to_float(info2, 0, pix, per,
                                                 RP_DCM_F_RESCALE | RP_DCM_F_INVERT_MONO1, f,
                                                 mask);
                free(f);
                free(mask);
            }
            free(pix);
            rp_dcm_info_free(info2);
        }
    }
    rp_dcm_info_free(info);
    close(fd);
    return 0;
}
