/*
 * dicom — the only place that reads DICOM files (dcmtk behind a plain C header). Everything
 * that needs to know what is inside a file asks here: the receiving path and the index
 * (header meta), the outbox (a file's SOP Instance UID), the derived-series writers (source
 * references and the source header) and the pipeline (pixel decoding). Implemented in
 * dicom/header.cc (headers) and dicom/decode.cc (pixels); no dcmtk type crosses this header,
 * and this module knows nothing about the index or the store.
 *
 * Contract, for every function here:
 *  - A file is a Part-10 file or a raw dataset without meta header; the transfer syntax is
 *    detected. Anything else (garbage, a truncated header, a missing file) is an error with
 *    a one-line reason, never a crash: 0 or a negative RP_E* code.
 *  - Safe to call from several threads at once on different files.
 *  - Strings are NUL-terminated, trimmed of DICOM padding, and empty when the attribute is
 *    absent.
 *
 * Headers (header.cc):
 *  - rp_dcm_read_meta() reads the attributes the index keeps, stopping before Pixel Data,
 *    and values over 4 KB stay on disk: a 2 GB multi-frame costs what a 2 KB SR costs.
 *    Absent numbers are -1 (number_of_frames 1). UIDs are not validated here (the store
 *    does that), but a UID too long for its field is never cut into a shorter valid-looking
 *    one: it ends in "..." so that validation fails.
 *  - rp_dcm_read_ref() reads what a reference to an instance needs (SOP Class / Instance,
 *    Series, Study UIDs, Image Position): the outbox and the derived writers use it.
 *  - rp_dcm_read_header_bytes() gives the whole header (every top-level attribute before
 *    Pixel Data, sequences included) re-encoded as an Explicit VR Little Endian dataset, so
 *    a writer can copy attributes element for element without reading files itself.
 *
 * Pixels (decode.cc):
 *  - rp_dcm_read_info() reads one file's header WITHOUT loading pixel data, into a plain
 *    struct: identification, acquisition keys, the image pixel module, presentation
 *    attributes (rescale / Modality LUT, windows, VOI LUT function and sequence, pixel
 *    padding) and per-frame geometry. For enhanced multi-frame objects the per-frame values
 *    come from the Shared and Per-Frame Functional Groups (per-frame wins); for classic
 *    objects every frame gets the file-level values.
 *  - rp_dcm_decode_frames() decodes a range of frames of any transfer syntax the node
 *    accepts (uncompressed LE/BE, deflate, RLE, JPEG baseline/extended/lossless, JPEG-LS,
 *    JPEG 2000 through OpenJPEG) into a caller buffer of RAW STORED VALUES of type
 *    info->stype: bits above Bits Stored are masked off and signed values sign-extended,
 *    nothing else is applied (no rescale, no MONOCHROME1 inversion, no padding handling).
 *    Colour images (samples_per_pixel 3) come out interleaved (RGBRGB...).
 *  - rp_dcm_stored_to_float() applies the modality transform (per-frame slope/intercept,
 *    or the Modality LUT Sequence), optional MONOCHROME1 inversion (higher = denser) and
 *    reports Pixel Padding as a mask. Window/VOI handling is left to the X-ray steps.
 *  - Decoders are registered once per process (thread-safe). In rp_dcm_info, doubles are
 *    NAN when absent (test with isnan), ints -1 when absent unless stated.
 */
#ifndef RP_DICOM_H
#define RP_DICOM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- headers ---------------------------------------------------------------------------- */

#define RP_DCM_UID_MAX 64

/* What the index keeps about an instance, as its header says it. */
typedef struct rp_dcm_meta {
    /* patient */
    char patient_id[65];
    char issuer_of_patient_id[65];
    char patient_name[325]; /* every value, backslash-separated */
    char patient_birth_date[9];
    char patient_sex[17];
    /* study */
    char study_uid[RP_DCM_UID_MAX + 1];
    char study_date[9];
    char study_time[17];
    char accession_number[17];
    char study_description[65];
    /* series */
    char series_uid[RP_DCM_UID_MAX + 1];
    char modality[17];
    int series_number; /* -1 when absent */
    char series_description[65];
    char body_part[17];
    char frame_of_reference_uid[RP_DCM_UID_MAX + 1];
    /* what a [fusion] rule matches a series on (times in ms, < 0 when absent) */
    char protocol_name[65];
    double repetition_time, echo_time, inversion_time;
    /* instance */
    char sop_class_uid[RP_DCM_UID_MAX + 1];
    char sop_instance_uid[RP_DCM_UID_MAX + 1];
    char transfer_syntax_uid[RP_DCM_UID_MAX + 1]; /* of the bytes in the file */
    int instance_number;                          /* -1 when absent */
    int number_of_frames;                         /* 1 when absent */
    /* hints for the expected size of a series (-1 when absent) */
    int images_in_acquisition;
    int number_of_temporal_positions;
    int number_of_slices; /* (0054,0081) */
    int acquisition_number;
    double slice_thickness; /* < 0 when absent */
    long long file_size;    /* bytes of the file */
} rp_dcm_meta;

/* Fill *meta (cleared first) from the header of `path`. `reason` (may be NULL) gets a
 * one-line text on failure. Returns 0, RP_ENOENT (no such file), RP_EIO (cannot stat) or
 * RP_EPARSE (not readable as DICOM, or an empty dataset). */
int rp_dcm_read_meta(const char *path, rp_dcm_meta *meta, char *reason, size_t reasonsz);
/* The same from the first `len` bytes of a Part-10 file (or raw dataset) in memory whose
 * whole size is `file_size` (a received instance before it has a file of its own). When
 * len < file_size and the header does not end (at Pixel Data) within `len`: RP_EPARSE, and
 * the caller asks again with more bytes. */
int rp_dcm_read_meta_mem(const void *buf, size_t len, long long file_size, rp_dcm_meta *meta,
                         char *reason, size_t reasonsz);

/* What a reference to an instance needs. */
typedef struct rp_dcm_ref {
    char sop_class_uid[RP_DCM_UID_MAX + 1];
    char sop_instance_uid[RP_DCM_UID_MAX + 1];
    char series_uid[RP_DCM_UID_MAX + 1];
    char study_uid[RP_DCM_UID_MAX + 1];
    double ipp[3]; /* Image Position (Patient) of the top level, LPS mm */
    int has_ipp;   /* 1 when all three values are there */
} rp_dcm_ref;

/* Fill *ref (cleared first) from the header of `path`. Returns 0 or RP_EPARSE (missing,
 * unreadable, not DICOM; reason says which). A UID the file lacks is an empty string, not
 * an error: the caller says whether it needs it. */
int rp_dcm_read_ref(const char *path, rp_dcm_ref *ref, char *reason, size_t reasonsz);

/* The header of `path` (every top-level attribute before Pixel Data, sequences and private
 * attributes included, no File Meta group) as an Explicit VR Little Endian dataset stream,
 * explicit lengths. *bytes is malloc'd (caller frees), *nbytes its length. Returns 0,
 * RP_EPARSE (not readable as DICOM) or RP_ENOMEM. */
int rp_dcm_read_header_bytes(const char *path, void **bytes, size_t *nbytes, char *reason,
                             size_t reasonsz);

/* ---- pixels ----------------------------------------------------------------------------- */

#define RP_DCM_MAX_WINDOWS 8
#define RP_DCM_MAX_VOI_LUTS 4

/* Type of one decoded stored sample. */
typedef enum {
    RP_DCM_U8 = 1,
    RP_DCM_S8,
    RP_DCM_U16,
    RP_DCM_S16,
    RP_DCM_U32,
    RP_DCM_S32
} rp_dcm_stype;

/* A Modality or VOI LUT (from a LUT sequence item). */
typedef struct rp_dcm_lut {
    int n_entries;        /* descriptor[0], 0 in the file already resolved to 65536 */
    int first_mapped;     /* descriptor[1], read as signed when pixel_representation=1 */
    int bits;             /* descriptor[2]: bits per entry */
    uint16_t *data;       /* owned by the info, n_entries values */
    char explanation[65]; /* LUT Explanation */
    char type[17];        /* Modality LUT Type (e.g. "HU", "OD"), empty for VOI */
} rp_dcm_lut;

/* What a frame's values are: magnitude unless the header says otherwise (Complex Image
 * Component, or the Image Type values vendors use: Siemens "P", Philips "PHASE MAP"/"B0 MAP"). */
typedef enum rp_dcm_kind {
    RP_DCM_KIND_MAGNITUDE = 0,
    RP_DCM_KIND_PHASE,
    RP_DCM_KIND_REAL,
    RP_DCM_KIND_IMAGINARY,
    RP_DCM_KIND_FIELDMAP /* B0 map (Hz) */
} rp_dcm_kind;

/* What a frame's gradient direction (b_vec) is expressed in. */
typedef enum rp_dcm_bvec_frame {
    RP_DCM_BVEC_PATIENT = 0, /* patient LPS: standard tags, Siemens CSA, Philips (RL, AP, FH) */
    RP_DCM_BVEC_GE,          /* GE (0019,xxBB..BD): phase, frequency, slice axes of the image */
    RP_DCM_BVEC_UIH          /* UIH (0065,xx37): the image's row, column, slice axes */
} rp_dcm_bvec_frame;

/* Per-frame values (classic objects: one frame per file, copied from the file level). */
typedef struct rp_dcm_frame {
    double ipp[3]; /* Image Position (Patient), LPS mm */
    int has_ipp;
    double iop[6]; /* Image Orientation (Patient): row cosines, column cosines */
    int has_iop;
    double
        pixel_spacing[2]; /* DICOM order: [0] between rows (along columns), [1] between columns */
    int has_spacing;
    double slice_thickness;  /* NAN when absent */
    double slope, intercept; /* 1 / 0 when absent */
    int has_rescale;
    double echo_time;                   /* ms, NAN when absent */
    int echo_number;                    /* -1 */
    int temporal_position;              /* Temporal Position Index / Identifier, -1 */
    int stack_position;                 /* In-Stack Position Number, -1 */
    char stack_id[17];                  /* Stack ID */
    double b_value;                     /* Diffusion b-value, NAN */
    double b_vec[3];                    /* gradient direction (info->bvec_frame), NAN when absent */
    double trigger_time;                /* ms, NAN */
    double window_center, window_width; /* frame VOI (enhanced) or first file-level pair; NAN */
    int dim_index[8];                   /* Dimension Index Values (enhanced), n_dim_index of them */
    int n_dim_index;
    rp_dcm_kind kind;
} rp_dcm_frame;

typedef struct rp_dcm_info {
    char path[1024];
    /* identification */
    char transfer_syntax_uid[65];
    char sop_class_uid[65];
    char sop_instance_uid[65];
    char study_uid[65];
    char series_uid[65];
    char frame_of_reference_uid[65];
    char modality[17];
    char manufacturer[65];
    char model[65];
    char software_versions[65];
    char station_name[65];
    char series_description[65];
    char protocol_name[65];
    char body_part[17];
    char patient_position[17]; /* HFS, FFS... */
    char image_type[128];      /* backslash-separated as in the file */
    char sequence_name[65];
    char scanning_sequence[65];
    char sequence_variant[65];
    char convolution_kernel[65];
    char study_date[9], study_time[17], series_time[17], acquisition_time[17];
    char acquisition_date_time[27];
    int series_number, instance_number, acquisition_number;
    /* acquisition (NAN when absent) */
    double repetition_time, echo_time, inversion_time, flip_angle; /* ms, ms, ms, deg */
    double field_strength;                                         /* T */
    double imaging_frequency;                                      /* MHz */
    double kvp, exposure_mas, tube_current_ma;
    double slice_thickness, spacing_between_slices;
    double gantry_tilt; /* degrees */
    double pixel_bandwidth;
    double echo_train_length;
    /* patient (written to outputs only when the privacy policy allows it) */
    char patient_name[325];
    char patient_id[65];
    char patient_birth_date[9];
    char patient_sex[17];
    char patient_age[17];
    double patient_weight; /* kg, NAN */
    char accession_number[17];
    char study_description[65];
    char institution_name[65];
    /* image pixel module */
    int rows, cols, frames; /* frames = Number of Frames (1 when absent) */
    int samples_per_pixel;
    int bits_allocated, bits_stored, high_bit;
    int pixel_representation; /* 0 unsigned, 1 two's complement */
    int planar_configuration; /* -1 when absent */
    char photometric[17];     /* MONOCHROME1, MONOCHROME2, RGB, YBR_FULL, PALETTE COLOR... */
    rp_dcm_stype stype;       /* type rp_dcm_decode_frames() writes */
    int has_pixel_data;
    int enhanced; /* 1 when per-frame functional groups were found */
    /* modality transform (file level; frames carry their own slope/intercept) */
    int has_rescale;
    double rescale_slope, rescale_intercept;
    char rescale_type[17];
    int has_modality_lut;
    rp_dcm_lut modality_lut;
    /* VOI */
    int n_windows;
    double window_center[RP_DCM_MAX_WINDOWS];
    double window_width[RP_DCM_MAX_WINDOWS];
    char window_explanation[RP_DCM_MAX_WINDOWS][65];
    char voi_lut_function[17]; /* LINEAR (default when empty), LINEAR_EXACT, SIGMOID */
    int n_voi_luts;
    rp_dcm_lut voi_lut[RP_DCM_MAX_VOI_LUTS];
    /* pixel padding (stored-value units) */
    int has_padding_value;
    long padding_value;
    int has_padding_range;
    long padding_range_limit;
    /* presentation intent (X-ray) */
    char presentation_intent[17];    /* FOR PRESENTATION / FOR PROCESSING */
    char presentation_lut_shape[17]; /* IDENTITY / INVERSE */
    /* Mosaic (Siemens CSA header, or UIH private tags): number of tiles, 0 when the image is
     * not a mosaic; tiles_x * tiles_y tiles of cols/tiles_x x rows/tiles_y, filled row by row
     * (Siemens: a square grid; UIH: the grid its tile size gives). */
    int mosaic_images;
    int mosaic_tiles_x, mosaic_tiles_y;
    /* Philips private floating-point scale slope (2005,xx0E), NAN when absent: the "FP"
     * value dcm2niix writes by default is (stored * RS + RI) / (RS * this) */
    double philips_scale_slope;
    /* UIH mosaics carry each tile's true Image Position (Patient) in a private sequence
     * (there is none at the top level): 3 * mosaic_images values, owned; NULL otherwise */
    double *mosaic_ipp;
    double csa_slice_normal[3]; /* SliceNormalVector from the CSA image header */
    int has_csa_slice_normal;
    /* MR acquisition details dcm2niix derives from vendor headers (mr_vendor.cc) */
    char mr_acquisition_type[5]; /* (0018,0023) "2D" / "3D"; empty when absent */
    char inplane_pe_dir[5];      /* (0018,1312) "ROW" / "COL"; empty when absent */
    /* phase encoded towards +row / +column index: 1; the other way: 0; unknown: -1. From the
     * Siemens CSA PhaseEncodingDirectionPositive or (0021,xx1C), UIH (0065,xx58), GE
     * (0018,9034) or the GE user data header (0043,xx2A) */
    int pe_positive;
    rp_dcm_bvec_frame bvec_frame; /* what frame[].b_vec is expressed in */
    int ge_diffusion_dirs;        /* GE (0019,xxE0) number of diffusion directions; -1 absent */
    double time_after_start_ms;   /* Siemens XA (0021,xx04) TimeAfterStart of this file, NAN */
    /* GE EPI slice order from the protocol data block (0025,xx1B), where dcm2niix derives
     * slice times from it: 0 sequential, 1 interleaved; -1 not derivable. ge_mb: multiband
     * factor (1 without), ge_version: software major version (27.0), ge_r3: 27.0 R03+ */
    int ge_slice_order, ge_mb, ge_r3;
    double ge_version;
    /* per mosaic tile, in tile order, ms from the first excitation: Siemens CSA
     * MosaicRefAcqTimes, UIH per-tile Acquisition Time; owned, NULL when not given */
    double *tile_times_ms;
    int n_tile_times;
    /* per-frame values, n_frames == frames */
    int n_frames;
    rp_dcm_frame *frame; /* owned */
} rp_dcm_info;

/* Register dcmtk's RLE, JPEG and JPEG-LS decoders (idempotent, thread-safe). */
void rp_dcm_global_init(void);

/* Read the header of `path` (pixel data is not loaded). *out is owned: rp_dcm_info_free().
 * RP_EPARSE for a file that is not DICOM or is truncated before the pixel data,
 * RP_EUNSUPPORTED for geometry that cannot be a pixel matrix (rows/cols 0, absurd sizes,
 * pixel data shorter than declared for uncompressed syntaxes). A file without Pixel Data
 * is read successfully with has_pixel_data = 0. */
int rp_dcm_read_info(const char *path, rp_dcm_info **out, char *err, size_t errlen);
void rp_dcm_info_free(rp_dcm_info *info);

/* Bytes per stored sample for a type, and bytes of one decoded frame (rows*cols*spp*size). */
size_t rp_dcm_stype_size(rp_dcm_stype t);
size_t rp_dcm_frame_bytes(const rp_dcm_info *info);

/* Decode frames [first, first+count) of `path` into dst (dst_bytes >= count*frame_bytes).
 * `info` must come from rp_dcm_read_info() on the same file. Raw stored values, see above.
 * RP_EDECODE with a reason when the codec fails or the data is short. */
int rp_dcm_decode_frames(const char *path, const rp_dcm_info *info, int first, int count, void *dst,
                         size_t dst_bytes, char *err, size_t errlen);

/* Header and ALL frames in one read of the file (what assembly uses: each file is parsed
 * once). On success *pixels (malloc'd, caller frees) holds frames*frame_bytes raw stored
 * values as rp_dcm_decode_frames() writes them; NULL when the file has no Pixel Data.
 * When the header is fine but decoding fails, *out is still set (caller frees it) and the
 * return is RP_EDECODE / RP_ENOMEM with the reason in err. */
int rp_dcm_read_info_pixels(const char *path, rp_dcm_info **out, void **pixels, size_t *nbytes,
                            char *err, size_t errlen);
/* The same, but *pixels comes from a process-wide pool of huge-page chunks (a chunk is given
 * back whole when its last buffer is released, so the next large allocation reuses its pages):
 * release it with rp_dcm_pixels_free(), never free(). Thread-safe. */
int rp_dcm_read_info_pixels_pooled(const char *path, rp_dcm_info **out, void **pixels,
                                   size_t *nbytes, char *err, size_t errlen);
/* Releases a pooled pixel buffer, or free()s any other malloc'd one (so code holding either
 * kind calls this); NULL is ignored. */
void rp_dcm_pixels_free(void *p);

/* Flags for rp_dcm_stored_to_float(). */
#define RP_DCM_F_RESCALE 1u      /* apply slope/intercept or the Modality LUT */
#define RP_DCM_F_INVERT_MONO1 2u /* MONOCHROME1: invert so that higher means denser */

/* Convert n stored samples of frame `frame` (raw values from rp_dcm_decode_frames) to float.
 * When pad_mask is not NULL it receives 1 where the stored value is Pixel Padding (value,
 * or the range between value and range limit), 0 elsewhere; padded voxels keep their
 * converted value in dst (the caller decides what to fill). Returns the number of padded
 * samples (>= 0). */
long rp_dcm_stored_to_float(const rp_dcm_info *info, int frame, const void *src, size_t n,
                            unsigned flags, float *dst, uint8_t *pad_mask);

/* Whether a stored value is padding (helper for callers working in stored units). */
int rp_dcm_is_padding(const rp_dcm_info *info, long stored);

#ifdef __cplusplus
}
#endif
#endif
