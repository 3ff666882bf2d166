/* tests/xray/test_xray_voi.c — X-ray presentation (PS3.3 C.11.1 / C.11.2) on hand-computed
 * values; the `present` step is tested in tests/recipe/test_steps_xr_voi.c. Output range
 * 0..1 (ymin = 0, ymax = 1 in the standard's formulas). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/xray/xray.h"

#define EPS 1e-9

static double win(rp_xr_voi_kind k, double c, double w, double x)
{
    rp_xr_voi v = {0};
    v.kind = k;
    v.center = c;
    v.width = w;
    return rp_xr_voi_eval(&v, x);
}

static void test_linear(void **state)
{
    (void)state;
    /* C.11.2.1.2.1 with c = 100, w = 50: x <= 75 -> 0, x > 124 -> 1,
     * else (x - 99.5) / 49 + 0.5. */
    assert_true(fabs(win(RP_XR_VOI_LINEAR, 100, 50, 75) - 0.0) < EPS);
    assert_true(fabs(win(RP_XR_VOI_LINEAR, 100, 50, 74) - 0.0) < EPS);
    assert_true(fabs(win(RP_XR_VOI_LINEAR, 100, 50, 76) - 0.020408163265306) < 1e-12);
    assert_true(fabs(win(RP_XR_VOI_LINEAR, 100, 50, 100) - 0.510204081632653) < 1e-12);
    assert_true(fabs(win(RP_XR_VOI_LINEAR, 100, 50, 124) - 1.0) < EPS);
    assert_true(fabs(win(RP_XR_VOI_LINEAR, 100, 50, 125) - 1.0) < EPS);
    /* The standard's examples: c=2048 w=4096 maps 0 -> ymin and 4095 -> ymax exactly;
     * c=0 w=1 is a threshold: x <= -0.5 -> ymin, x > -0.5 -> ymax. */
    assert_true(fabs(win(RP_XR_VOI_LINEAR, 2048, 4096, 0)) < EPS);
    assert_true(fabs(win(RP_XR_VOI_LINEAR, 2048, 4096, 4095) - 1.0) < EPS);
    assert_true(fabs(win(RP_XR_VOI_LINEAR, 2048, 4096, 2048) - (0.5 / 4095 + 0.5)) < EPS);
    assert_true(win(RP_XR_VOI_LINEAR, 0, 1, 0) == 1.0);
    assert_true(win(RP_XR_VOI_LINEAR, 0, 1, -1) == 0.0);
    /* Negative centres (CT-like, signed data). */
    assert_true(fabs(win(RP_XR_VOI_LINEAR, -600, 1600, -600) - (0.5 / 1599 + 0.5)) < EPS);
}

static void test_linear_exact(void **state)
{
    (void)state;
    /* C.11.2.1.3.2: x <= c - w/2 -> 0, x > c + w/2 -> 1, else (x - c)/w + 0.5 */
    assert_true(fabs(win(RP_XR_VOI_LINEAR_EXACT, 100, 50, 75) - 0.0) < EPS);
    assert_true(fabs(win(RP_XR_VOI_LINEAR_EXACT, 100, 50, 87.5) - 0.25) < EPS);
    assert_true(fabs(win(RP_XR_VOI_LINEAR_EXACT, 100, 50, 100) - 0.5) < EPS);
    assert_true(fabs(win(RP_XR_VOI_LINEAR_EXACT, 100, 50, 125) - 1.0) < EPS);
    assert_true(fabs(win(RP_XR_VOI_LINEAR_EXACT, 100, 50, 126) - 1.0) < EPS);
    /* Widths below 1 are legal for LINEAR_EXACT. */
    assert_true(fabs(win(RP_XR_VOI_LINEAR_EXACT, 0.5, 0.5, 0.5) - 0.5) < EPS);
}

static void test_sigmoid(void **state)
{
    (void)state;
    /* C.11.2.1.3.1: y = 1 / (1 + exp(-4 (x - c) / w)) */
    assert_true(fabs(win(RP_XR_VOI_SIGMOID, 100, 50, 100) - 0.5) < EPS);
    assert_true(fabs(win(RP_XR_VOI_SIGMOID, 100, 50, 125) - 0.880797077977882) < 1e-12);
    assert_true(fabs(win(RP_XR_VOI_SIGMOID, 100, 50, 75) - 0.119202922022118) < 1e-12);
    assert_true(fabs(win(RP_XR_VOI_SIGMOID, 100, 50, 150) - 0.982013790037908) < 1e-12);
    /* the GE mammogram's first window */
    assert_true(fabs(win(RP_XR_VOI_SIGMOID, 2653, 900, 2428) - 0.268941421369995) < 1e-12);
}

static void test_luts(void **state)
{
    (void)state;
    static const uint16_t d8[4] = {0, 100, 200, 255};
    rp_xr_voi v = {0};
    v.kind = RP_XR_VOI_LUT;
    v.lut = (rp_xr_lut){4, 10, 8, d8};
    assert_true(rp_xr_voi_eval(&v, 5) == 0.0); /* below first: first entry */
    assert_true(rp_xr_voi_eval(&v, 10) == 0.0);
    assert_true(fabs(rp_xr_voi_eval(&v, 11) - 100.0 / 255) < EPS);
    assert_true(fabs(rp_xr_voi_eval(&v, 11.4) - 100.0 / 255) < EPS);
    assert_true(fabs(rp_xr_voi_eval(&v, 12) - 200.0 / 255) < EPS);
    assert_true(rp_xr_voi_eval(&v, 13) == 1.0);
    assert_true(rp_xr_voi_eval(&v, 1000) == 1.0); /* past the end: last entry */
    /* Declared 8 bits but 10-bit data: the depth the data need is used. */
    static const uint16_t d10[3] = {0, 512, 1023};
    v.lut = (rp_xr_lut){3, 0, 8, d10};
    assert_true(fabs(rp_xr_voi_eval(&v, 1) - 512.0 / 1023) < EPS);
    /* Modality LUT: first mapped may be negative, output in the LUT's units. */
    static const uint16_t m[3] = {5, 6, 7};
    rp_xr_modality mod = {RP_XR_MOD_LUT, 1, 0, {3, -2, 16, m}};
    assert_true(rp_xr_modality_eval(&mod, -5) == 5);
    assert_true(rp_xr_modality_eval(&mod, -1) == 6);
    assert_true(rp_xr_modality_eval(&mod, 0) == 7);
    rp_xr_modality rs = {RP_XR_MOD_RESCALE, 2.0, -1024, {0}};
    assert_true(rp_xr_modality_eval(&rs, 100) == -824);
    char err[128];
    rp_xr_voi bad = {0};
    bad.kind = RP_XR_VOI_LINEAR;
    bad.width = 0.5;
    assert_int_equal(rp_xr_voi_check(&bad, err, sizeof err), RP_EINVAL);
    bad.kind = RP_XR_VOI_SIGMOID;
    assert_int_equal(rp_xr_voi_check(&bad, err, sizeof err), 0);
    bad.width = 0;
    assert_int_equal(rp_xr_voi_check(&bad, err, sizeof err), RP_EINVAL);
}

/* Whole-image kernel: table path (integers) and formula path (non-integers) agree with
 * the per-value definition; MONOCHROME1 inverts after VOI; padding -> 0 and out of range. */
static void test_present_kernel(void **state)
{
    (void)state;
    const size_t n = 4096;
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    rp_xr_present_params p;
    memset(&p, 0, sizeof p);
    p.modality = (rp_xr_modality){RP_XR_MOD_RESCALE, 0.5, 10, {0}};
    p.voi.kind = RP_XR_VOI_SIGMOID;
    p.voi.center = 600;
    p.voi.width = 700;
    p.invert = 1;
    for (size_t i = 0; i < n; i++) {
        a[i] = (float)i;
        b[i] = (float)i + 0.25f;
    }
    rp_xr_present_report rep;
    assert_int_equal(rp_xr_present_f32(a, n, &p, &rep), 0);
    assert_int_equal(rep.lut_path, 1);
    assert_true(rep.in_min == 0 && rep.in_max == 4095);
    for (size_t i = 0; i < n; i += 7) {
        double want = 1.0 - 1.0 / (1.0 + exp(-4.0 * (0.5 * i + 10 - 600) / 700));
        assert_true(fabs(a[i] - want) < 1e-6);
    }
    assert_int_equal(rp_xr_present_f32(b, n, &p, &rep), 0);
    assert_int_equal(rep.lut_path, 0);
    for (size_t i = 0; i < n; i += 7) {
        double want = 1.0 - 1.0 / (1.0 + exp(-4.0 * (0.5 * (i + 0.25) + 10 - 600) / 700));
        assert_true(fabs(b[i] - want) < 1e-6);
    }
    /* No VOI: min-max of the non-padding values; padding (value 0) -> 0. */
    memset(&p, 0, sizeof p);
    p.has_padding = 1;
    p.padding_lo = p.padding_hi = 0;
    for (size_t i = 0; i < n; i++)
        a[i] = i % 3 == 0 ? 0.0f : (float)(100 + i % 201);
    assert_int_equal(rp_xr_present_f32(a, n, &p, &rep), 0);
    assert_true(p.voi.lo == 101 && p.voi.hi == 300);
    assert_int_equal(rep.n_padding, (n + 2) / 3);
    for (size_t i = 0; i < n; i++) {
        double want = i % 3 == 0 ? 0.0 : (100 + i % 201 - 101) / 199.0;
        assert_true(fabs(a[i] - want) < 1e-6);
    }
    /* Assembly's MONOCHROME1 inversion (x = k - m) undone, on both paths: one pass with the
     * header's range, and the general path (non-integer input). */
    for (int path = 0; path < 2; path++) {
        memset(&p, 0, sizeof p);
        p.voi.kind = RP_XR_VOI_LINEAR_EXACT;
        p.voi.center = 500;
        p.voi.width = 400;
        p.invert = 1;
        p.negate = 1;
        p.negate_k = 1023;
        p.has_range = path == 0;
        p.range_hi = 1023;
        const float off = path == 0 ? 0.0f : 0.5f;
        for (size_t i = 0; i < 1024; i++)
            a[i] = (float)(1023 - i) + off; /* m = i - off */
        assert_int_equal(rp_xr_present_f32(a, 1024, &p, &rep), 0);
        assert_int_equal(rep.lut_path, path == 0 ? 1 : 0);
        for (size_t i = 0; i < 1024; i++) {
            double m = i - off, y = m <= 300 ? 0 : m > 700 ? 1 : (m - 500) / 400 + 0.5;
            assert_true(fabs(a[i] - (1.0 - y)) < 1e-6);
        }
    }

    /* A bad window is refused before touching the data. */
    memset(&p, 0, sizeof p);
    p.voi.kind = RP_XR_VOI_LINEAR;
    p.voi.width = 0;
    a[0] = 7;
    assert_int_equal(rp_xr_present_f32(a, n, &p, NULL), RP_EINVAL);
    assert_true(a[0] == 7);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),         cmocka_unit_test(test_linear_exact),
        cmocka_unit_test(test_sigmoid),        cmocka_unit_test(test_luts),
        cmocka_unit_test(test_present_kernel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
