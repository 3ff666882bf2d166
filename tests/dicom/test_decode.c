/* Unit tests for the dcmtk decode adapter (dicom/dicom.h) on the real files in
 * $RP_SHARED_DATA: header values, every compressed variant decodes to the same stored values
 * as its uncompressed twin, multi-fragment frames, enhanced multi-frame geometry, the
 * modality transform (slope/intercept, MONOCHROME1, padding), and clean errors on malformed
 * files. Fails (not skips) when the data folder is missing: the data is part of the setup. */
#include <dirent.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/common.h"
#include "dicom/dicom.h"

static const char *data_dir(void)
{
    const char *d = getenv("RP_SHARED_DATA");
    return d ? d : "/work/shared/data";
}

static rp_dcm_info *info_of(const char *rel)
{
    char p[1024], err[256] = "";
    snprintf(p, sizeof p, "%s/%s", data_dir(), rel);
    rp_dcm_info *in = NULL;
    int rc = rp_dcm_read_info(p, &in, err, sizeof err);
    if (rc)
        fprintf(stderr, "%s: %s\n", rel, err);
    assert_int_equal(rc, 0);
    assert_non_null(in);
    return in;
}

/* All frames of a file, decoded; caller frees. */
static void *decode_all(const rp_dcm_info *in, size_t *n)
{
    char err[256] = "";
    *n = rp_dcm_frame_bytes(in) * (size_t)in->frames;
    void *b = malloc(*n);
    int rc = rp_dcm_decode_frames(in->path, in, 0, in->frames, b, *n, err, sizeof err);
    if (rc)
        fprintf(stderr, "%s: %s\n", in->path, err);
    assert_int_equal(rc, 0);
    return b;
}

static void test_lidc_header(void **state)
{
    (void)state;
    rp_dcm_info *in = info_of("ct_chest_lidc0001/000001.dcm");
    assert_string_equal(in->modality, "CT");
    assert_int_equal(in->rows, 512);
    assert_int_equal(in->cols, 512);
    assert_int_equal(in->frames, 1);
    assert_int_equal(in->pixel_representation, 1);
    assert_int_equal(in->stype, RP_DCM_S16);
    assert_true(in->has_rescale && in->rescale_slope == 1 && in->rescale_intercept == -1024);
    assert_true(in->frame[0].has_iop && in->frame[0].iop[0] == 1 && in->frame[0].iop[4] == 1);
    assert_true(in->frame[0].has_ipp && in->frame[0].has_spacing);
    assert_true(fabs(in->frame[0].pixel_spacing[0] - 0.703125) < 1e-9);
    assert_true(in->has_padding_value);
    assert_int_equal(in->padding_value, -2000); /* US 63536 read as signed */
    assert_true(in->n_windows >= 1);
    assert_true(fabs(in->window_center[0] + 600) < 1e-9 && fabs(in->window_width[0] - 1600) < 1e-9);
    assert_string_equal(in->patient_position, "FFS");
    assert_int_equal(in->mosaic_images, 0);
    /* modality transform and padding on real stored values */
    size_t n;
    int16_t *px = decode_all(in, &n);
    size_t nvox = n / 2;
    float *f = malloc(nvox * sizeof *f);
    uint8_t *m = malloc(nvox);
    long npad = rp_dcm_stored_to_float(in, 0, px, nvox, RP_DCM_F_RESCALE, f, m);
    long expect = 0;
    for (size_t i = 0; i < nvox; i++) {
        expect += px[i] == -2000;
        assert_true(f[i] == (float)(px[i] - 1024));
        assert_int_equal(m[i], px[i] == -2000);
    }
    assert_int_equal(npad, expect);
    free(f);
    free(m);
    free(px);
    rp_dcm_info_free(in);
}

static void test_nine_syntaxes_identical(void **state)
{
    (void)state;
    rp_dcm_info *ref = info_of("compressed/ts_same_image_9_syntaxes/1.dcm");
    assert_int_equal(ref->mosaic_images, 35); /* NumberOfImagesInMosaic from the CSA header */
    assert_true(ref->has_csa_slice_normal);
    size_t n0;
    void *p0 = decode_all(ref, &n0);
    for (int k = 2; k <= 9; k++) {
        char rel[128];
        snprintf(rel, sizeof rel, "compressed/ts_same_image_9_syntaxes/%d.dcm", k);
        rp_dcm_info *in = info_of(rel);
        size_t n;
        void *p = decode_all(in, &n);
        assert_int_equal(n, n0);
        if (memcmp(p, p0, n) != 0)
            fail_msg("%s (%s) differs from the explicit LE copy", rel, in->transfer_syntax_uid);
        free(p);
        rp_dcm_info_free(in);
    }
    free(p0);
    rp_dcm_info_free(ref);
}

static void test_enhanced_variants_and_geometry(void **state)
{
    (void)state;
    const char *v[] = {"", "_jpegls", "_rle", "_j2k"};
    rp_dcm_info *ref = info_of("enhanced_multiframe/mr_enhanced_small_10frames.dcm");
    assert_int_equal(ref->frames, 10);
    size_t n0;
    void *p0 = decode_all(ref, &n0);
    for (int k = 1; k < 4; k++) {
        char rel[128];
        snprintf(rel, sizeof rel, "enhanced_multiframe/mr_enhanced_small_10frames%s.dcm", v[k]);
        rp_dcm_info *in = info_of(rel);
        size_t n;
        void *p = decode_all(in, &n);
        assert_int_equal(n, n0);
        assert_memory_equal(p, p0, n);
        /* a single frame from the middle equals the same frame of the full decode */
        char err[256];
        size_t fb = rp_dcm_frame_bytes(in);
        void *one = malloc(fb);
        assert_int_equal(rp_dcm_decode_frames(in->path, in, 7, 1, one, fb, err, sizeof err), 0);
        assert_memory_equal(one, (char *)p0 + 7 * fb, fb);
        free(one);
        free(p);
        rp_dcm_info_free(in);
    }
    free(p0);
    rp_dcm_info_free(ref);
    /* Siemens XA30 enhanced: per-frame positions from the functional groups */
    rp_dcm_info *e = info_of("enhanced_multiframe/mr_siemens_xa30_enhanced_t1w_96frames.dcm");
    assert_true(e->enhanced);
    assert_int_equal(e->n_frames, 96);
    for (int f = 1; f < 96; f++) {
        assert_true(e->frame[f].has_ipp && e->frame[f].has_iop && e->frame[f].has_spacing);
        double d = 0;
        for (int a = 0; a < 3; a++)
            d += pow(e->frame[f].ipp[a] - e->frame[f - 1].ipp[a], 2);
        assert_true(fabs(sqrt(d) - 2.0) < 0.01); /* 2 mm apart */
    }
    rp_dcm_info_free(e);
}

static void test_fragments_and_twins(void **state)
{
    (void)state;
    /* RLE with several fragments per frame vs the same CT1 image uncompressed (big endian) */
    rp_dcm_info *a = info_of("compressed/single_files/ct_rle_multifragment_CT1.dcm");
    rp_dcm_info *b = info_of("malformed/ct_bigendian_undefined_length_fodicom_gh177.dcm");
    size_t na, nb;
    void *pa = decode_all(a, &na), *pb = decode_all(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(pa, pb, na);
    free(pa);
    free(pb);
    rp_dcm_info_free(a);
    rp_dcm_info_free(b);
    /* JPEG lossless, 4 fragments per frame, vs the uncompressed series (same SOP UIDs) */
    rp_dcm_info *c = info_of("compressed/t1w_jpeg_lossless_multifragment_5001/5001040.dcm");
    rp_dcm_info *d = NULL;
    char rel[512] = "", dir[1024];
    snprintf(dir, sizeof dir, "%s/mr_brain_siemens_xa30/5001_anat-T1w_acq-tfl", data_dir());
    DIR *dh = opendir(dir);
    assert_non_null(dh);
    struct dirent *de;
    while ((de = readdir(dh)))
        if (!strncmp(de->d_name, "5001040_", 8))
            snprintf(rel, sizeof rel, "mr_brain_siemens_xa30/5001_anat-T1w_acq-tfl/%s", de->d_name);
    closedir(dh);
    assert_true(rel[0] != 0);
    d = info_of(rel);
    assert_string_equal(c->sop_instance_uid, d->sop_instance_uid);
    size_t nc, nd;
    void *pc = decode_all(c, &nc), *pd = decode_all(d, &nd);
    assert_int_equal(nc, nd);
    assert_memory_equal(pc, pd, nc);
    free(pc);
    free(pd);
    rp_dcm_info_free(c);
    rp_dcm_info_free(d);
    /* J2K lossless in 13 fragments, MONOCHROME1, 10 bits stored */
    rp_dcm_info *x = info_of("xray/cr_extremity_fuji_mono1_j2k_lossless_wg04_RG3.dcm");
    assert_string_equal(x->photometric, "MONOCHROME1");
    assert_int_equal(x->bits_stored, 10);
    size_t nx;
    uint16_t *px = decode_all(x, &nx);
    uint16_t mx = 0;
    for (size_t i = 0; i < nx / 2; i++)
        mx = px[i] > mx ? px[i] : mx;
    assert_true(mx > 100 && mx <= 1023);
    /* MONOCHROME1 inversion: higher = denser, v -> 1023 - v (slope 1, intercept 0) */
    float *f = malloc(nx / 2 * sizeof *f);
    rp_dcm_stored_to_float(x, 0, px, nx / 2, RP_DCM_F_RESCALE | RP_DCM_F_INVERT_MONO1, f, NULL);
    for (size_t i = 0; i < nx / 2; i += 997)
        assert_true(fabsf(f[i] - (float)(1023 - px[i])) < 1e-3f);
    free(f);
    free(px);
    rp_dcm_info_free(x);
}

static void test_raw_dataset_without_meta(void **state)
{
    (void)state;
    rp_dcm_info *in = info_of("xray/cr_chest_fuji_mono1_no_part10_header.dcm");
    assert_int_equal(in->rows, 440);
    assert_string_equal(in->photometric, "MONOCHROME1");
    size_t n;
    free(decode_all(in, &n));
    rp_dcm_info_free(in);
}

static void test_malformed_errors(void **state)
{
    (void)state;
    const char *bad_header[] = {"malformed/mr_pixeldata_truncated.dcm",
                                "malformed/rtplan_truncated_mid_element.dcm",
                                "malformed/oob_rows_cols_46341.dcm",
                                "malformed/oob_rows_cols_65535.dcm",
                                "malformed/enhanced_mr_j2k_pixeldata_too_short.dcm",
                                "malformed/mr_garbage_command_group_length_fodicom_gh626.dcm"};
    for (size_t i = 0; i < sizeof bad_header / sizeof *bad_header; i++) {
        char p[1024], err[256] = "";
        snprintf(p, sizeof p, "%s/%s", data_dir(), bad_header[i]);
        rp_dcm_info *in = NULL;
        int rc = rp_dcm_read_info(p, &in, err, sizeof err);
        assert_true(rc == RP_EPARSE || rc == RP_EUNSUPPORTED);
        assert_null(in);
        assert_true(strlen(err) > 10);
    }
    /* header fine, codestream broken: a decode error with OpenJPEG's reason */
    rp_dcm_info *in = info_of("malformed/j2k_embedded_sequence_delimiter.dcm");
    size_t n = rp_dcm_frame_bytes(in);
    void *b = malloc(n);
    char err[256] = "";
    assert_int_equal(rp_dcm_decode_frames(in->path, in, 0, 1, b, n, err, sizeof err), RP_EDECODE);
    assert_non_null(strstr(err, "JPEG 2000"));
    /* the one-parse reader reports the same failure and still hands back the header */
    rp_dcm_info *in2 = NULL;
    void *pix = NULL;
    size_t nb = 0;
    assert_int_equal(rp_dcm_read_info_pixels(in->path, &in2, &pix, &nb, err, sizeof err),
                     RP_EDECODE);
    assert_non_null(in2);
    assert_null(pix);
    rp_dcm_info_free(in2);
    /* out-of-range frames and short buffers are argument errors, not crashes */
    assert_int_equal(rp_dcm_decode_frames(in->path, in, 1, 1, b, n, err, sizeof err), RP_EINVAL);
    assert_int_equal(rp_dcm_decode_frames(in->path, in, 0, 1, b, n - 1, err, sizeof err),
                     RP_EINVAL);
    free(b);
    rp_dcm_info_free(in);
    /* not DICOM at all */
    char p[1024];
    snprintf(p, sizeof p, "%s/README.md", data_dir());
    rp_dcm_info *x = NULL;
    assert_int_equal(rp_dcm_read_info(p, &x, err, sizeof err), RP_EPARSE);
}

/* Pooled pixel buffers: the same bytes as the malloc'd reader's, from chunks shared by
 * several files (released in any order, a chunk at a time), and rp_dcm_pixels_free() also
 * takes a plain malloc'd buffer. */
static void test_pixels_pooled(void **state)
{
    (void)state;
    enum { N = 20 }; /* 20 CT slices of 512 KiB: more than one chunk */
    void *pooled[N], *plain[N];
    size_t nb[N];
    for (int k = 0; k < N; k++) {
        char p[1024], err[256] = "";
        snprintf(p, sizeof p, "%s/ct_chest_lidc0001/%06d.dcm", data_dir(), k + 1);
        rp_dcm_info *a = NULL, *b = NULL;
        size_t na = 0;
        assert_int_equal(rp_dcm_read_info_pixels_pooled(p, &a, &pooled[k], &nb[k], err, sizeof err),
                         0);
        assert_int_equal(rp_dcm_read_info_pixels(p, &b, &plain[k], &na, err, sizeof err), 0);
        assert_int_equal(nb[k], na);
        assert_true(nb[k] >= 512 * 512 * 2);
        assert_memory_equal(pooled[k], plain[k], na);
        rp_dcm_info_free(a);
        rp_dcm_info_free(b);
    }
    /* odd ones first, then the rest backwards: buffers outlive their neighbours */
    for (int k = 1; k < N; k += 2)
        rp_dcm_pixels_free(pooled[k]);
    for (int k = N - 2; k >= 0; k -= 2) {
        assert_int_equal(((uint8_t *)pooled[k])[0], ((uint8_t *)plain[k])[0]);
        rp_dcm_pixels_free(pooled[k]);
    }
    for (int k = 0; k < N; k++)
        rp_dcm_pixels_free(plain[k]); /* malloc'd: plain free() */
    rp_dcm_pixels_free(NULL);
}

/* UIH "VFRAME" mosaic: 20 tiles of 64x64 in a 320x256 image (5 x 4, not a square grid), each
 * tile's position from the private per-tile sequence (there is no top-level position). */
static void test_uih_mosaic(void **state)
{
    (void)state;
    rp_dcm_info *in = info_of("dcm_qa/dcm_qa_stc/In/UIH/R002/12_dti_tra_dir16_PA_rot/0003.dcm");
    assert_int_equal(in->mosaic_images, 20);
    assert_int_equal(in->mosaic_tiles_x, 5);
    assert_int_equal(in->mosaic_tiles_y, 4);
    assert_non_null(in->mosaic_ipp);
    assert_true(in->frame[0].has_ipp);
    assert_true(fabs(in->mosaic_ipp[0] - -154.647507) < 1e-6);
    assert_true(fabs(in->mosaic_ipp[3 * 19 + 2] - 70.5479355) < 1e-6);
    rp_dcm_info_free(in);
}

/* Magnitude and phase told apart from Image Type (Philips "M_FFE" / "PHASE MAP"). */
static void test_image_kind(void **state)
{
    (void)state;
    rp_dcm_info *m = info_of("dcm_qa/dcm_qa_table/In/Ph/1301_Dual-echo_iso/001.dcm");
    rp_dcm_info *p = info_of("dcm_qa/dcm_qa_table/In/Ph/1301_Dual-echo_iso/061.dcm");
    assert_int_equal(m->frame[0].kind, RP_DCM_KIND_MAGNITUDE);
    assert_int_equal(p->frame[0].kind, RP_DCM_KIND_PHASE);
    rp_dcm_info_free(m);
    rp_dcm_info_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lidc_header),
        cmocka_unit_test(test_nine_syntaxes_identical),
        cmocka_unit_test(test_enhanced_variants_and_geometry),
        cmocka_unit_test(test_fragments_and_twins),
        cmocka_unit_test(test_raw_dataset_without_meta),
        cmocka_unit_test(test_malformed_errors),
        cmocka_unit_test(test_pixels_pooled),
        cmocka_unit_test(test_uih_mosaic),
        cmocka_unit_test(test_image_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
