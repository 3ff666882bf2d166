/* tests/xray/test_xray_resize.c — rp_xr_resize_* against cv2.resize (INTER_AREA shrinking and
 * enlarging, INTER_LINEAR) and skimage's block mean, run by this test on the same arrays;
 * the display quantization's orientation and scaling. The resize/pad/clahe/png steps are
 * tested in tests/recipe/test_steps_xr_resize.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/common.h"
#include "pipeline/xray/xray.h"
#include "tests/xray/test_xray_util.h"

static void compare_u8(int w, int h, int ow, int oh)
{
    const size_t n = (size_t)w * h, on = (size_t)ow * oh;
    float *f = malloc(n * sizeof *f);
    uint8_t *in = malloc(n), *ours = malloc(on), *ref = malloc(on);
    xt_phantom(f, w, h, 0.3);
    for (size_t i = 0; i < n; i++)
        in[i] = (uint8_t)lrintf(f[i] * 255);
    char pin[512], pout[512], args[1400];
    snprintf(pin, sizeof pin, "%s/rs_in.raw", xt_tmpdir());
    snprintf(pout, sizeof pout, "%s/rs_out.raw", xt_tmpdir());
    assert_int_equal(xt_write(pin, in, n), 0);
    snprintf(args, sizeof args, "area8 %d %d %d %d '%s' '%s'", w, h, ow, oh, pin, pout);
    assert_int_equal(xt_ref(args), 0);
    assert_int_equal(xt_read(pout, ref, on), 0);
    assert_int_equal(rp_xr_resize_u8(in, w, h, ours, ow, oh, RP_XR_RESIZE_AREA), 0);
    int me = 0;
    size_t exact = 0;
    for (size_t i = 0; i < on; i++) {
        int d = abs((int)ours[i] - (int)ref[i]);
        me = d > me ? d : me;
        exact += d == 0;
    }
    print_message("area8 %dx%d -> %dx%d: max diff %d, exact %.4f\n", w, h, ow, oh, me,
                  (double)exact / on);
    assert_true(me <= 1);
    free(f);
    free(in);
    free(ours);
    free(ref);
}

static void compare_f32(const char *op, int w, int h, int ow, int oh, double tol)
{
    const size_t n = (size_t)w * h, on = (size_t)ow * oh;
    float *in = malloc(n * 4), *ours = malloc(on * 4), *ref = malloc(on * 4);
    xt_phantom(in, w, h, 0.3);
    char pin[512], pout[512], args[1400];
    snprintf(pin, sizeof pin, "%s/rs_in.raw", xt_tmpdir());
    snprintf(pout, sizeof pout, "%s/rs_out.raw", xt_tmpdir());
    assert_int_equal(xt_write(pin, in, n * 4), 0);
    if (!strcmp(op, "meanf"))
        snprintf(args, sizeof args, "meanf %d %d %d '%s' '%s'", w, h, w / ow, pin, pout);
    else
        snprintf(args, sizeof args, "%s %d %d %d %d '%s' '%s'", op, w, h, ow, oh, pin, pout);
    assert_int_equal(xt_ref(args), 0);
    assert_int_equal(xt_read(pout, ref, on * 4), 0);
    assert_int_equal(
        rp_xr_resize_f32(in, w, h, ours, ow, oh,
                         strcmp(op, "linearf") ? RP_XR_RESIZE_AREA : RP_XR_RESIZE_LINEAR),
        0);
    double me = 0;
    for (size_t i = 0; i < on; i++)
        me = fmax(me, fabs(ours[i] - ref[i]));
    print_message("%s %dx%d -> %dx%d: max abs diff %.3g\n", op, w, h, ow, oh, me);
    assert_true(me <= tol);
    free(in);
    free(ours);
    free(ref);
}

static void test_area_vs_opencv(void **state)
{
    (void)state;
    compare_u8(3000, 2500, 1024, 853); /* the benchmark's shape, non-integer factor */
    compare_u8(2394, 3062, 801, 1024); /* the mammogram */
    compare_u8(1024, 1024, 512, 512);  /* integer factor (OpenCV's fast path) */
    compare_u8(1760, 1760, 1024, 1024);
    compare_u8(440, 440, 439, 300);   /* barely shrinking */
    compare_u8(440, 440, 1024, 1024); /* enlarging: OpenCV's INTER_AREA upscaling */
    compare_u8(300, 200, 1001, 777);
    compare_f32("areaf", 1760, 1760, 1024, 1024, 1e-4);
    compare_f32("areaf", 777, 555, 100, 71, 1e-4);
    compare_f32("areaf", 440, 440, 1024, 1024, 1e-4);
    compare_f32("meanf", 1200, 900, 300, 225, 1e-5); /* skimage block mean, factor 4 */
}

static void test_linear_vs_opencv(void **state)
{
    (void)state;
    compare_f32("linearf", 440, 440, 1024, 1024, 1e-4);
    compare_f32("linearf", 300, 200, 1001, 777, 1e-4);
}

/* 0..1 -> 0..255 / 0..65535, clamped, row 0 out = first DICOM row (top). */
static void test_quantize(void **state)
{
    (void)state;
    rp_volume *v = rp_volume_new(3, 2, 1, 1);
    /* stored bottom-up: row 1 is the displayed top */
    const float d[6] = {0.0f, 0.5f, 1.0f, -1.0f, 2.0f, 0.25f};
    memcpy(v->data, d, sizeof d);
    for (int bits = 8; bits <= 16; bits += 8) {
        const int mx = bits == 8 ? 255 : 65535;
        const int want[6] = {0, mx, (int)lrint(0.25 * mx), 0, (int)lrint(0.5 * mx), mx};
        int got[6];
        if (bits == 8) {
            uint8_t b[6];
            assert_int_equal(rp_xr_quantize_plane(v, 0, bits, b), 0);
            for (int i = 0; i < 6; i++)
                got[i] = b[i];
        } else {
            uint16_t b[6];
            assert_int_equal(rp_xr_quantize_plane(v, 0, bits, b), 0);
            for (int i = 0; i < 6; i++)
                got[i] = b[i];
        }
        for (int i = 0; i < 6; i++)
            assert_int_equal(got[i], want[i]);
    }
    uint16_t b[6];
    assert_int_equal(rp_xr_quantize_plane(v, 1, 8, b), RP_EINVAL);
    assert_int_equal(rp_xr_quantize_plane(v, 0, 12, b), RP_EINVAL);
    rp_volume_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_area_vs_opencv),
        cmocka_unit_test(test_linear_vs_opencv),
        cmocka_unit_test(test_quantize),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    xt_cleanup();
    return rc;
}
