/*
 * pipeline/png.h — write 8/16-bit grey or RGB PNG files (internal to pipeline/ and its tests).
 *
 * Contract:
 *  - rp_png_write() writes `pixels` (row-major, top row first, `channels` interleaved samples per
 *    pixel: 1 = grey, 3 = RGB, 4 = RGBA) as a PNG file at `path`. With bit_depth 16 the samples
 *    are host-order uint16_t; libpng's big-endian order is handled here.
 *  - The file is written to "<path>.tmp" and renamed, so a reader never sees half a PNG.
 *  - Returns 0, RP_EINVAL (bad arguments), RP_ENOMEM or RP_EIO (reason logged).
 */
#ifndef RP_PIPELINE_PNG_H
#define RP_PIPELINE_PNG_H

#ifdef __cplusplus
extern "C" {
#endif

int rp_png_write(const char *path, const void *pixels, int w, int h, int channels, int bit_depth);

#ifdef __cplusplus
}
#endif
#endif
