/*
 * pipeline/xray/xray.h — X-ray (CR/DX/MG/XA) image kernels. Library rp_xray; depends on
 * rp_volume only.
 *
 * Pure functions on plain arrays; the `present`, `clahe`, `resize`, `pad` and `png` steps
 * (pipeline/recipe/steps_xr.c) are thin glue around them.
 *
 * Contract:
 *  - Presentation (voi.c) follows DICOM PS3.3 C.11.1 (Modality LUT) and C.11.2 (VOI LUT)
 *    literally. Output range is float 0..1 (ymin = 0, ymax = 1 in the C.11.2 formulas),
 *    where 1 is "bright" (bone) whatever the photometric interpretation: MONOCHROME1 is
 *    inverted after the VOI stage (y = 1 - y), as the standard's display pipeline does.
 *    Writers map 0..1 to 0..255 or 0..65535 (rp_xr_quantize_plane).
 *  - CLAHE (clahe.c) is bit-for-bit the definition of OpenCV's cv::createCLAHE()->apply()
 *    on CV_8UC1 (256 bins) and CV_16UC1 (65536 bins): the same clip limit scaling
 *    (clip * tile_area / bins, at least 1), the same redistribution of clipped counts, the
 *    same reflect-101 extension when the size is not a multiple of the grid, the same
 *    bilinear interpolation between tile LUTs (float arithmetic, round to nearest even).
 *  - Resize (resize.c), AREA: each output pixel is the mean of the input area it covers
 *    (exact pixel-overlap weights), which is cv2.INTER_AREA both when shrinking (no
 *    aliasing) and when enlarging (OpenCV's INTER_AREA upscaling is the same box overlap);
 *    LINEAR: bilinear on pixel centres (cv2.INTER_LINEAR). Pixel centres are preserved:
 *    output pixel i sits at input coordinate (i + 0.5) * in/out - 0.5.
 *  - No function here allocates memory that the caller frees unless its name says _new;
 *    every function returns 0 or a negative RP_E* code.
 */
#ifndef RP_PIPELINE_XRAY_H
#define RP_PIPELINE_XRAY_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/volume/volume.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Below this many pixels a kernel runs on one thread: waking OpenMP threads costs more
 * than the work, and on a busy machine spinning threads steal the core doing it. Above it,
 * loops hand out chunks dynamically (64 Ki pixels, 16 rows): a thread the OS preempts
 * holds up one chunk, not a static half of the image. */
#define RP_XR_PAR_MIN ((size_t)1 << 21)

/* ---- Presentation: Modality LUT + VOI (PS3.3 C.11.1, C.11.2) ---- */

/* A LUT as the standard describes it (LUT Descriptor + LUT Data). Borrowed data. */
typedef struct rp_xr_lut {
    int n;                /* number of entries (descriptor value 0 already turned into 65536) */
    int first;            /* first input value mapped (already sign-interpreted) */
    int bits;             /* bits per entry as declared (8..16) */
    const uint16_t *data; /* n entries (8-bit LUTs widened to uint16 by the decoder) */
} rp_xr_lut;

typedef enum {
    RP_XR_MOD_IDENTITY = 0, /* no rescale, no Modality LUT Sequence */
    RP_XR_MOD_RESCALE,      /* y = slope * x + intercept */
    RP_XR_MOD_LUT           /* Modality LUT Sequence (first item) */
} rp_xr_mod_kind;

typedef struct rp_xr_modality {
    rp_xr_mod_kind kind;
    double slope, intercept;
    rp_xr_lut lut;
} rp_xr_modality;

typedef enum {
    RP_XR_VOI_NONE = 0,     /* nothing in the header: linear over the data's min..max */
    RP_XR_VOI_LINEAR,       /* C.11.2.1.2.1: the -0.5 / -1 offsets */
    RP_XR_VOI_LINEAR_EXACT, /* C.11.2.1.3.2 */
    RP_XR_VOI_SIGMOID,      /* C.11.2.1.3.1 */
    RP_XR_VOI_LUT           /* VOI LUT Sequence item (C.11.2.1.1) */
} rp_xr_voi_kind;

typedef struct rp_xr_voi {
    rp_xr_voi_kind kind;
    double center, width; /* window kinds */
    rp_xr_lut lut;        /* RP_XR_VOI_LUT */
    double lo, hi;        /* RP_XR_VOI_NONE: the range mapped to 0..1 (filled by present) */
} rp_xr_voi;

/* Everything the presentation needs about one image. */
typedef struct rp_xr_present_params {
    rp_xr_modality modality;
    rp_xr_voi voi;
    int invert;                    /* 1 for MONOCHROME1 */
    int has_padding;               /* Pixel Padding Value present */
    double padding_lo, padding_hi; /* input values in [lo,hi] are padding (hi = lo if no range) */
    const uint8_t *pad_mask; /* optional, n bytes, non-zero = padding (instead of the values) */
    int negate;              /* input is k - m (assembly's MONOCHROME1 inversion): m = k - x */
    double negate_k;
    int has_range;             /* the header bounds the input: integers in [range_lo, range_hi] */
    double range_lo, range_hi; /* (speed only: one pass; values outside still come out right) */
} rp_xr_present_params;

/* What present did (for the sidecar). */
typedef struct rp_xr_present_report {
    size_t n_padding;        /* pixels recognised as padding (set to 0 = black) */
    double in_min, in_max;   /* stored values seen (padding excluded) */
    double mod_min, mod_max; /* after the Modality LUT */
    int lut_path;            /* 0 formula, 1 lookup table, 2 table + formula for values off it */
} rp_xr_present_report;

/* One value through the Modality LUT stage. */
double rp_xr_modality_eval(const rp_xr_modality *m, double stored);
/* One modality value through the VOI stage: 0..1 (no MONOCHROME1 inversion here). */
double rp_xr_voi_eval(const rp_xr_voi *v, double x);
/* Validate a VOI (width >= 1 for LINEAR, > 0 for LINEAR_EXACT/SIGMOID, LUT sane). */
int rp_xr_voi_check(const rp_xr_voi *v, char *err, size_t errlen);
/* Name for the sidecar: "LINEAR", "LINEAR_EXACT", "SIGMOID", "LUT", "NONE(minmax)". */
const char *rp_xr_voi_name(rp_xr_voi_kind k);

/* In place: stored values (integers held in float) -> 0..1, bone bright. `p->voi` of kind
 * NONE gets lo/hi from the data (padding excluded). When every value is an integer in a
 * range of at most 2^20 the whole chain is tabulated once and applied as a lookup.
 * `p` is updated (voi.lo/hi) so describe() can report it; `rep` may be NULL. */
int rp_xr_present_f32(float *data, size_t n, rp_xr_present_params *p, rp_xr_present_report *rep);

/* ---- CLAHE (OpenCV definition) ---- */

/* 8-bit: src and dst are w*h bytes (may be the same buffer). clip <= 0 disables clipping.
 * tiles_x, tiles_y >= 1. Returns RP_EINVAL for bad sizes, RP_ENOMEM. */
int rp_xr_clahe_u8(const uint8_t *src, uint8_t *dst, int w, int h, double clip, int tiles_x,
                   int tiles_y);
/* 16-bit, 65536 bins. */
int rp_xr_clahe_u16(const uint16_t *src, uint16_t *dst, int w, int h, double clip, int tiles_x,
                    int tiles_y);
/* Float 0..1 image, in place: quantize to `bits` (8 or 16) with rounding and clamping,
 * equalize, map back to 0..1. With bottom_up the rows are stored bottom-up (assembly's
 * volumes): tiles are still laid from the displayed top-left, as cv2 does on the displayed
 * image. `n_clamped` (may be NULL) gets how many values lay outside [0,1] (NaN included). */
int rp_xr_clahe_f32(float *img, int w, int h, double clip, int tiles_x, int tiles_y, int bits,
                    int bottom_up, size_t *n_clamped);

/* ---- Resize and pad ---- */

typedef enum { RP_XR_RESIZE_AREA = 0, RP_XR_RESIZE_LINEAR = 1 } rp_xr_resize_method;

/* Resize one float plane w*h -> ow*oh. dst must not overlap src. */
int rp_xr_resize_f32(const float *src, int w, int h, float *dst, int ow, int oh,
                     rp_xr_resize_method method);
/* Same on 8-bit data (rounded), for comparisons with cv2 on uint8. */
int rp_xr_resize_u8(const uint8_t *src, int w, int h, uint8_t *dst, int ow, int oh,
                    rp_xr_resize_method method);

/* Output size for resize(size, keep_aspect): the longer side becomes `size`, the other
 * round(side * size / longer) (at least 1). */
void rp_xr_fit_size(int w, int h, int size, int *ow, int *oh);

/* New volume with every (z, c) plane resized to ow x oh; affine updated so that each
 * output voxel centre maps to the same world point as the corresponding input position. */
rp_volume *rp_xr_resize_volume_new(const rp_volume *v, int ow, int oh, rp_xr_resize_method method);
/* New volume padded to ow x oh (>= input) with `value`, the image at (off_x, off_y);
 * affine updated. */
rp_volume *rp_xr_pad_volume_new(const rp_volume *v, int ow, int oh, int off_x, int off_y,
                                float value);

/* ---- Output ---- */

/* Plane z (channel 0) of a 0..1 float volume as nx*ny grey samples of bit_depth 8 (uint8_t)
 * or 16 (uint16_t) into `out` (values clamped, NaN as 0, rounded: 0 -> 0, 1 -> 255 / 65535),
 * row 0 first as displayed: volumes store rows bottom-up (pipeline/assemble/assemble.h), so
 * out row 0 is y = ny-1 and an image written from it looks like the DICOM image.
 * Returns 0 or RP_EINVAL (bad plane or depth). */
int rp_xr_quantize_plane(const rp_volume *v, int z, int bit_depth, void *out);

#ifdef __cplusplus
}
#endif
#endif
