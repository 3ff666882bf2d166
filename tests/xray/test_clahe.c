/* CLAHE against OpenCV: rp_xr_clahe_u8/u16 and cv2.createCLAHE().apply() (Debian's
 * python3-opencv, run by this test on the same arrays) must agree within +-1 grey level on
 * at least 99% of pixels, 8-bit and 16-bit, for sizes that divide the tile grid and sizes
 * that do not (reflect-101 extension), tiny images, several clip limits and no clipping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/common.h"
#include "pipeline/xray/xray.h"
#include "tests/xray/test_xray_util.h"

typedef struct clahe_case {
    int w, h, tx, ty, bits;
    double clip;
    int kind; /* 0 phantom, 1 uniform noise, 2 12-bit phantom in 16-bit */
} clahe_case;

/* Compare one case; returns the fraction of pixels within +-1, prints the max error. */
static double run_case(const clahe_case *c, int *max_err)
{
    const size_t n = (size_t)c->w * c->h;
    const size_t bps = c->bits == 8 ? 1 : 2;
    float *f = malloc(n * sizeof *f);
    void *in = malloc(n * bps), *ours = malloc(n * bps), *ref = malloc(n * bps);
    assert_non_null(f);
    assert_non_null(in);
    assert_non_null(ours);
    assert_non_null(ref);
    xt_phantom(f, c->w, c->h, 0.1);
    const double maxv = c->kind == 2 ? 4095 : c->bits == 8 ? 255 : 65535;
    for (size_t i = 0; i < n; i++) {
        double v = c->kind == 1 ? xt_rand() : f[i];
        long q = lround(v * maxv);
        if (c->bits == 8)
            ((uint8_t *)in)[i] = (uint8_t)q;
        else
            ((uint16_t *)in)[i] = (uint16_t)q;
    }
    char pin[512], pout[512], args[1400];
    snprintf(pin, sizeof pin, "%s/clahe_in.raw", xt_tmpdir());
    snprintf(pout, sizeof pout, "%s/clahe_out.raw", xt_tmpdir());
    assert_int_equal(xt_write(pin, in, n * bps), 0);
    snprintf(args, sizeof args, "clahe%d %d %d %.17g %d %d '%s' '%s'", c->bits, c->w, c->h, c->clip,
             c->tx, c->ty, pin, pout);
    assert_int_equal(xt_ref(args), 0);
    assert_int_equal(xt_read(pout, ref, n * bps), 0);
    int rc = c->bits == 8 ? rp_xr_clahe_u8(in, ours, c->w, c->h, c->clip, c->tx, c->ty)
                          : rp_xr_clahe_u16(in, ours, c->w, c->h, c->clip, c->tx, c->ty);
    assert_int_equal(rc, 0);
    size_t ok = 0, exact = 0;
    int me = 0;
    for (size_t i = 0; i < n; i++) {
        int a = c->bits == 8 ? ((uint8_t *)ours)[i] : ((uint16_t *)ours)[i];
        int b = c->bits == 8 ? ((uint8_t *)ref)[i] : ((uint16_t *)ref)[i];
        int d = abs(a - b);
        ok += d <= 1;
        exact += d == 0;
        if (d > me)
            me = d;
    }
    /* In-place operation gives the same result. */
    rc = c->bits == 8 ? rp_xr_clahe_u8(in, in, c->w, c->h, c->clip, c->tx, c->ty)
                      : rp_xr_clahe_u16(in, in, c->w, c->h, c->clip, c->tx, c->ty);
    assert_int_equal(rc, 0);
    assert_memory_equal(in, ours, n * bps);
    print_message("clahe%d %dx%d tiles %dx%d clip %g kind %d: within1 %.5f exact %.5f max %d\n",
                  c->bits, c->w, c->h, c->tx, c->ty, c->clip, c->kind, (double)ok / n,
                  (double)exact / n, me);
    *max_err = me;
    free(f);
    free(in);
    free(ours);
    free(ref);
    return (double)ok / n;
}

static void test_clahe_8bit(void **state)
{
    (void)state;
    const clahe_case cases[] = {
        {512, 512, 8, 8, 8, 2.0, 0}, {1000, 771, 8, 8, 8, 2.0, 0},    {640, 480, 8, 8, 8, 40.0, 1},
        {333, 517, 5, 3, 8, 3.5, 0}, {300, 200, 8, 8, 8, 0.0, 0},     {37, 23, 8, 8, 8, 2.0, 1},
        {5, 3, 8, 8, 8, 1.0, 1},     {1024, 1024, 16, 16, 8, 1.0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int me;
        double frac = run_case(&cases[i], &me);
        assert_true(frac >= 0.99);
    }
}

static void test_clahe_16bit(void **state)
{
    (void)state;
    const clahe_case cases[] = {
        {512, 512, 8, 8, 16, 2.0, 0}, {801, 613, 8, 8, 16, 2.0, 2}, {400, 300, 4, 4, 16, 40.0, 2},
        {256, 256, 8, 8, 16, 0.0, 1}, {97, 61, 8, 8, 16, 3.0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int me;
        double frac = run_case(&cases[i], &me);
        assert_true(frac >= 0.99);
    }
}

/* Float wrapper: quantize, equalize, back to 0..1; clamps and counts out-of-range. */
static void test_clahe_float(void **state)
{
    (void)state;
    const int w = 200, h = 150;
    float *f = malloc(sizeof(float) * w * h);
    uint8_t *q = malloc((size_t)w * h), *r = malloc((size_t)w * h);
    assert_non_null(f);
    xt_phantom(f, w, h, 0.05);
    for (int i = 0; i < w * h; i++)
        q[i] = (uint8_t)lrintf(f[i] * 255.0f);
    f[0] = -0.5f;
    f[1] = 1.5f;
    q[0] = 0;
    q[1] = 255;
    assert_int_equal(rp_xr_clahe_u8(q, r, w, h, 2.0, 8, 8), 0);
    size_t clamped = 0;
    float *g = malloc(sizeof(float) * w * h); /* the same image stored bottom-up */
    for (int y = 0; y < h; y++)
        memcpy(g + (size_t)(h - 1 - y) * w, f + (size_t)y * w, sizeof(float) * w);
    assert_int_equal(rp_xr_clahe_f32(f, w, h, 2.0, 8, 8, 8, 0, &clamped), 0);
    assert_int_equal(clamped, 2);
    for (int i = 0; i < w * h; i++)
        assert_true(fabsf(f[i] - r[i] / 255.0f) < 1e-6f);
    assert_int_equal(rp_xr_clahe_f32(g, w, h, 2.0, 8, 8, 8, 1, NULL), 0);
    for (int y = 0; y < h; y++)
        assert_memory_equal(g + (size_t)(h - 1 - y) * w, f + (size_t)y * w, sizeof(float) * w);
    free(g);
    assert_int_equal(rp_xr_clahe_f32(f, w, h, 2.0, 8, 8, 12, 0, NULL), RP_EINVAL);
    assert_int_equal(rp_xr_clahe_u8(q, r, 0, h, 2.0, 8, 8), RP_EINVAL);
    assert_int_equal(rp_xr_clahe_u8(q, r, w, h, 2.0, 0, 8), RP_EINVAL);
    free(f);
    free(q);
    free(r);
}

/* A constant image stays constant and equalization is monotonic in the input value. */
static void test_clahe_properties(void **state)
{
    (void)state;
    const int w = 64, h = 64;
    uint8_t *a = malloc(w * h), *b = malloc(w * h);
    memset(a, 100, w * h);
    assert_int_equal(rp_xr_clahe_u8(a, b, w, h, 2.0, 8, 8), 0);
    for (int i = 1; i < w * h; i++)
        assert_int_equal(b[i], b[0]);
    for (int i = 0; i < w * h; i++)
        a[i] = (uint8_t)(i % 256);
    assert_int_equal(rp_xr_clahe_u8(a, b, w, h, 0.0, 1, 1), 0);
    for (int i = 1; i < 256; i++)
        assert_true(b[i] >= b[i - 1]);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clahe_8bit),
        cmocka_unit_test(test_clahe_16bit),
        cmocka_unit_test(test_clahe_float),
        cmocka_unit_test(test_clahe_properties),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    xt_cleanup();
    return rc;
}
