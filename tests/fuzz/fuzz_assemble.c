/* libFuzzer target: assembly from headers. The input describes up to 12 "files" of one series
 * the way dicom/'s rp_dcm_read_info() hands them over (per-frame positions, orientations,
 * spacings, echo / temporal / diffusion labels, image kinds, mosaics), with any values a
 * hostile or broken header can declare: NaN and infinite numbers, zero or parallel
 * orientation vectors, repeated or absurd positions. Fields stay within what the reader
 * itself guarantees (rows and cols > 0, the sample type matching Bits Allocated, a mosaic
 * grid that holds its tiles), so that every finding is one a real file could trigger.
 * Then, for small images, the stacks are loaded from preloaded pixels and resampled when
 * assembly asks for it, as `radprep process` does.
 * Contract checked: 0 or a negative RP_E*, never a crash, leak, undefined behaviour or an
 * allocation the process cannot make. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "dicom/dicom.h"
#include "fuzz_util.h"
#include "pipeline/assemble/assemble.h"

#define MAX_FILES 12
#define MAX_FRAMES 6

static void fill_frame(rp_fuzz_bytes *b, rp_dcm_frame *f, const rp_dcm_frame *prev)
{
    uint8_t flags = rp_fuzz_u8(b);
    /* most frames share the previous frame's orientation and spacing and step along
     * the normal: the shape of real series, so the fuzzer reaches stacking and resampling */
    if (prev && (flags & 0x80)) {
        *f = *prev;
        double step = rp_fuzz_double(b);
        f->ipp[2] = prev->ipp[2] + step;
        if (flags & 0x40)
            f->ipp[0] += rp_fuzz_double(b) / 16;
        f->temporal_position = (int)(rp_fuzz_u8(b) % 4) - 1;
        return;
    }
    f->has_ipp = flags & 1;
    f->has_iop = (flags >> 1) & 1;
    f->has_spacing = (flags >> 2) & 1;
    f->has_rescale = (flags >> 3) & 1;
    for (int i = 0; i < 3; i++)
        f->ipp[i] = rp_fuzz_double(b);
    if (flags & 0x10) {
        static const double axial[6] = {1, 0, 0, 0, 1, 0};
        memcpy(f->iop, axial, sizeof axial);
    } else {
        for (int i = 0; i < 6; i++)
            f->iop[i] = rp_fuzz_double(b);
    }
    f->pixel_spacing[0] = rp_fuzz_double(b);
    f->pixel_spacing[1] = (flags & 0x20) ? f->pixel_spacing[0] : rp_fuzz_double(b);
    f->slice_thickness = (flags & 0x40) ? NAN : rp_fuzz_double(b);
    f->slope = f->has_rescale ? rp_fuzz_double(b) : 1;
    f->intercept = f->has_rescale ? rp_fuzz_double(b) : 0;
    uint8_t more = rp_fuzz_u8(b);
    f->echo_time = (more & 1) ? rp_fuzz_double(b) : NAN;
    f->echo_number = (more & 2) ? (int)rp_fuzz_u8(b) - 1 : -1;
    f->temporal_position = (more & 4) ? (int)rp_fuzz_u8(b) - 1 : -1;
    f->stack_position = (more & 8) ? (int)rp_fuzz_u8(b) - 1 : -1;
    f->b_value = (more & 16) ? rp_fuzz_double(b) : NAN;
    for (int i = 0; i < 3; i++)
        f->b_vec[i] = (more & 32) ? rp_fuzz_double(b) : NAN;
    f->trigger_time = (more & 64) ? rp_fuzz_double(b) : NAN;
    f->window_center = f->window_width = NAN;
    f->n_dim_index = (more & 128) ? rp_fuzz_u8(b) % 9 : 0;
    for (int i = 0; i < f->n_dim_index; i++)
        f->dim_index[i] = (int)rp_fuzz_u8(b);
    f->kind = (rp_dcm_kind)(rp_fuzz_u8(b) % 5);
    snprintf(f->stack_id, sizeof f->stack_id, "%u", rp_fuzz_u8(b) % 3);
}

static rp_dcm_info *make_info(rp_fuzz_bytes *b, int idx, const rp_dcm_frame **prev)
{
    rp_dcm_info *in = calloc(1, sizeof *in);
    if (!in)
        return NULL;
    uint8_t shape = rp_fuzz_u8(b);
    snprintf(in->path, sizeof in->path, "fuzz/%d.dcm", idx);
    snprintf(in->sop_instance_uid, sizeof in->sop_instance_uid, "1.2.3.%d", idx);
    snprintf(in->series_uid, sizeof in->series_uid, "1.2.3");
    snprintf(in->sop_class_uid, sizeof in->sop_class_uid,
             (shape & 1) ? "1.2.840.10008.5.1.4.1.1.4.1" : "1.2.840.10008.5.1.4.1.1.2");
    snprintf(in->modality, sizeof in->modality, (shape & 2) ? "MR" : "CT");
    snprintf(in->photometric, sizeof in->photometric, "MONOCHROME2");
    in->rows = 1 + rp_fuzz_u8(b) % 8;
    in->cols = 1 + rp_fuzz_u8(b) % 8;
    in->samples_per_pixel = 1;
    in->bits_allocated = (shape & 4) ? 8 : 16;
    in->high_bit = in->bits_allocated - 1;
    in->bits_stored = in->bits_allocated;
    in->pixel_representation = (shape >> 3) & 1;
    in->stype = in->bits_allocated == 8 ? (in->pixel_representation ? RP_DCM_S8 : RP_DCM_U8)
                                        : (in->pixel_representation ? RP_DCM_S16 : RP_DCM_U16);
    in->planar_configuration = -1;
    in->has_pixel_data = (shape & 0x10) ? 0 : 1;
    in->enhanced = (shape >> 5) & 1;
    in->frames = 1 + rp_fuzz_u8(b) % MAX_FRAMES;
    in->series_number = 1;
    in->instance_number = (int)rp_fuzz_u8(b) - 1;
    in->acquisition_number = (int)(rp_fuzz_u8(b) % 3) - 1;
    in->slice_thickness = rp_fuzz_double(b);
    in->spacing_between_slices = (shape & 0x40) ? rp_fuzz_double(b) : NAN;
    in->gantry_tilt = (shape & 0x80) ? rp_fuzz_double(b) : NAN;
    in->repetition_time = in->echo_time = in->inversion_time = in->flip_angle = NAN;
    in->rescale_slope = 1;
    in->philips_scale_slope = NAN;
    uint8_t mos = rp_fuzz_u8(b);
    if ((mos & 0xF0) == 0xF0) {
        /* a mosaic: one frame of tiles_x * tiles_y tiles, as the CSA reader sets it up */
        int m = 2 + (mos & 0x0F) % 9;
        int t = 1;
        while (t * t < m)
            t++;
        in->frames = 1;
        in->mosaic_images = m;
        in->mosaic_tiles_x = in->mosaic_tiles_y = t;
        in->rows *= t;
        in->cols *= t;
        in->has_csa_slice_normal = rp_fuzz_u8(b) & 1;
        for (int i = 0; i < 3; i++)
            in->csa_slice_normal[i] = rp_fuzz_double(b);
        if (rp_fuzz_u8(b) & 1) {
            in->mosaic_ipp = malloc(3 * (size_t)m * sizeof(double));
            for (int i = 0; in->mosaic_ipp && i < 3 * m; i++)
                in->mosaic_ipp[i] = rp_fuzz_double(b);
        }
    }
    in->n_frames = in->frames;
    in->frame = calloc((size_t)in->n_frames, sizeof *in->frame);
    if (!in->frame) {
        rp_dcm_info_free(in);
        return NULL;
    }
    for (int k = 0; k < in->n_frames; k++) {
        fill_frame(b, &in->frame[k], *prev);
        *prev = &in->frame[k];
    }
    in->slice_thickness = in->frame[0].slice_thickness;
    return in;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rp_fuzz_bytes b = {data, size};
    size_t n = 1 + rp_fuzz_u8(&b) % MAX_FILES;
    rp_dcm_info *infos[MAX_FILES] = {0};
    const rp_dcm_frame *prev = NULL;
    size_t have = 0;
    for (; have < n; have++) {
        infos[have] = make_info(&b, (int)have, &prev);
        if (!infos[have])
            break;
    }
    rp_series_asm sa;
    int rc = rp_assemble((const rp_dcm_info *const *)infos, have, &sa);
    if (rc > 0)
        abort();
    if (rc == 0) {
        for (size_t s = 0; s < sa.n_stacks; s++) {
            rp_stack *st = &sa.stack[s];
            /* pixels of every file, preloaded as rp_dcm_read_info_pixels() gives them */
            void *pix[MAX_FILES] = {0};
            for (size_t f = 0; f < have; f++) {
                size_t nb = rp_dcm_frame_bytes(infos[f]) * (size_t)infos[f]->frames;
                pix[f] = infos[f]->has_pixel_data ? calloc(1, nb ? nb : 1) : NULL;
                if (pix[f] && nb)
                    memset(pix[f], (int)f * 37, nb);
            }
            rp_stack_data d;
            memset(&d, 0, sizeof d);
            char err[512];
            rc = rp_stack_load(st, (const rp_dcm_info *const *)infos, pix, NULL,
                               RP_LOAD_CONTIGUOUS | RP_LOAD_PAD_MASK, 1, &d, err, sizeof err);
            if (rc > 0)
                abort();
            if (rc == 0 && st->need_resample) {
                rc = rp_stack_resample(st, &d, err, sizeof err);
                if (rc > 0)
                    abort();
            }
            rp_stack_data_free(&d);
            for (size_t f = 0; f < have; f++)
                free(pix[f]);
        }
    }
    rp_series_asm_free(&sa); /* also after an error: rp_assemble() may have started out */
    for (size_t i = 0; i < have; i++)
        rp_dcm_info_free(infos[i]);
    return 0;
}
