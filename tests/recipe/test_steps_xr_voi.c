/* tests/recipe/test_steps_xr_voi.c — the X-ray `present` step on synthetic headers: VOI
 * choice, MONOCHROME1 (as assembly delivers it), padding, QC record (the kernels are tested
 * in tests/xray/test_xray_voi.c). Output range 0..1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "dicom/dicom.h"
#include "pipeline/recipe/recipe.h"

#define EPS 1e-9

/* ---- the step, with a synthetic header ---- */

static const rp_step_def *find(const char *name)
{
    return rp_recipe_find_step(name);
}

static void *parse(const char *name, int n, const char *a0, const char *a1, int want_ok)
{
    const rp_step_def *s = find(name);
    assert_non_null(s);
    rp_step_args args;
    memset(&args, 0, sizeof args);
    args.n = n;
    if (a0)
        strcpy(args.arg[0], a0);
    if (a1)
        strcpy(args.arg[1], a1);
    void *p = NULL;
    char err[256] = "";
    int rc = s->parse(&args, &p, err, sizeof err);
    if (want_ok) {
        if (rc)
            fail_msg("%s: %s", name, err);
    } else {
        assert_int_equal(rc, RP_EINVAL);
        assert_true(strstr(err, "usage") != NULL);
    }
    return p;
}

static void test_parse(void **state)
{
    (void)state;
    free(parse("present", 0, NULL, NULL, 1));
    free(parse("present", 2, "window", "2", 1));
    parse("present", 1, "bogus", NULL, 0);
    parse("present", 2, "lut", "0", 0);
    free(parse("clahe", 2, "2.0", "8", 1));
    free(parse("clahe", 2, "2", "8x4", 1));
    parse("clahe", 2, "-1", "8", 0);
    parse("clahe", 2, "2", "0", 0);
    free(parse("resize", 2, "1024", "keep_aspect", 1));
    free(parse("resize", 1, "640x480", NULL, 1));
    parse("resize", 2, "1024", "squash", 0);
    parse("resize", 0, NULL, NULL, 0);
    free(parse("pad", 1, "1024", NULL, 1));
    parse("pad", 1, "abc", NULL, 0);
    /* describe gives resolved parameters */
    void *p = parse("clahe", 2, "2.0", "8", 1);
    cJSON *o = cJSON_CreateObject();
    find("clahe")->describe(p, o);
    assert_int_equal(cJSON_GetObjectItem(o, "tiles_y")->valueint, 8);
    assert_int_equal(cJSON_GetObjectItem(o, "bits")->valueint, 8);
    cJSON_Delete(o);
    free(p);
}

/* A MONOCHROME1 CR as assembly hands it over: stored s (10-bit, no rescale) inverted to
 * 1023 - s, rows bottom-up. Two windows, SIGMOID, and a VOI LUT. */
typedef struct fixture {
    rp_dcm_info info;
    rp_series_info si;
    rp_step_ctx ctx;
    cJSON *qc;
    uint16_t lut[1024];
} fixture;

static void fixture_init(fixture *f, const char *photometric, int with_lut)
{
    memset(f, 0, sizeof *f);
    rp_strlcpy(f->info.photometric, photometric, sizeof f->info.photometric);
    f->info.bits_stored = 10;
    f->info.samples_per_pixel = 1;
    f->info.n_windows = 2;
    f->info.window_center[0] = 512;
    f->info.window_width[0] = 256;
    f->info.window_center[1] = 300;
    f->info.window_width[1] = 100;
    rp_strlcpy(f->info.voi_lut_function, "SIGMOID", sizeof f->info.voi_lut_function);
    if (with_lut) {
        for (int i = 0; i < 1024; i++)
            f->lut[i] = (uint16_t)(4095 - 4 * i > 0 ? 4095 - 4 * i : 0); /* decreasing */
        f->info.n_voi_luts = 1;
        f->info.voi_lut[0] = (rp_dcm_lut){1024, 0, 12, f->lut, "NORMAL", ""};
    }
    rp_strlcpy(f->si.photometric, photometric, sizeof f->si.photometric);
    f->si.dcm = &f->info;
    f->ctx.info = &f->si;
    f->qc = cJSON_CreateObject();
    f->ctx.qc = f->qc;
    f->ctx.step_qc = cJSON_AddObjectToObject(f->qc, "step");
    f->ctx.vol = rp_volume_new(32, 32, 1, 1);
    for (int i = 0; i < 32 * 32; i++) {
        double s = i; /* stored value */
        f->ctx.vol->data[i] = (float)(strcmp(photometric, "MONOCHROME1") ? s : 1023 - s);
    }
}

static void fixture_free(fixture *f)
{
    rp_step_ctx_release(&f->ctx);
    cJSON_Delete(f->qc);
}

static int run(fixture *f, const char *name, int n, const char *a0, const char *a1)
{
    void *p = parse(name, n, a0, a1, 1);
    int rc = find(name)->run(&f->ctx, p);
    free(p);
    return rc;
}

static const char *qc_str(fixture *f, const char *key)
{
    cJSON *pr = cJSON_GetObjectItem(f->ctx.step_qc, "presentation");
    cJSON *it = cJSON_GetObjectItem(pr, key);
    return cJSON_IsString(it) ? it->valuestring : "";
}

static void test_present_step(void **state)
{
    (void)state;
    fixture f;
    /* MONOCHROME1 with window 1 (SIGMOID): y = 1 - sigmoid(s), s the stored value. */
    fixture_init(&f, "MONOCHROME1", 0);
    assert_int_equal(run(&f, "present", 0, NULL, NULL), 0);
    for (int s = 0; s < 1024; s += 13) {
        double want = 1.0 - 1.0 / (1.0 + exp(-4.0 * (s - 512) / 256.0));
        assert_true(fabs(f.ctx.vol->data[s] - want) < 1e-6);
    }
    assert_string_equal(qc_str(&f, "voi_path"), "window");
    assert_string_equal(qc_str(&f, "voi_lut_function"), "SIGMOID");
    assert_true(cJSON_IsTrue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(f.ctx.step_qc, "presentation"), "inverted")));
    fixture_free(&f);

    /* window 2 on MONOCHROME2 */
    fixture_init(&f, "MONOCHROME2", 0);
    assert_int_equal(run(&f, "present", 2, "window", "2"), 0);
    assert_true(fabs(f.ctx.vol->data[300] - 0.5) < 1e-6);
    fixture_free(&f);

    /* auto prefers the VOI LUT; MONOCHROME1 inverted after it. */
    fixture_init(&f, "MONOCHROME1", 1);
    assert_int_equal(run(&f, "present", 0, NULL, NULL), 0);
    assert_string_equal(qc_str(&f, "voi_path"), "VOI LUT Sequence");
    for (int s = 0; s < 1024; s += 11) {
        double lutv = 4095 - 4 * s > 0 ? 4095 - 4 * s : 0;
        assert_true(fabs(f.ctx.vol->data[s] - (1.0 - lutv / 4095.0)) < 1e-6);
    }
    fixture_free(&f);

    /* minmax on request; asking for a LUT that is not there is an error with a reason. */
    fixture_init(&f, "MONOCHROME2", 0);
    assert_int_equal(run(&f, "present", 1, "lut", NULL), RP_EINVAL);
    assert_true(strstr(f.ctx.err, "VOI LUT") != NULL);
    assert_int_equal(run(&f, "present", 1, "minmax", NULL), 0);
    assert_true(fabs(f.ctx.vol->data[1023] - 1.0) < 1e-6 && f.ctx.vol->data[0] == 0.0f);
    fixture_free(&f);

    /* auto: a header window of width 0 is rejected and min-max used, with a QC note;
     * asking for that window explicitly is an error. */
    fixture_init(&f, "MONOCHROME2", 0);
    f.info.n_windows = 1;
    f.info.window_width[0] = 0;
    rp_strlcpy(f.info.voi_lut_function, "", sizeof f.info.voi_lut_function);
    assert_int_equal(run(&f, "present", 0, NULL, NULL), 0);
    assert_string_equal(qc_str(&f, "voi_path"), "min-max (no VOI in the header)");
    assert_true(strstr(qc_str(&f, "window_rejected"), "width") != NULL);
    assert_true(fabs(f.ctx.vol->data[1023] - 1.0) < 1e-6);
    fixture_free(&f);
    fixture_init(&f, "MONOCHROME2", 0);
    f.info.window_width[0] = 0;
    assert_int_equal(run(&f, "present", 2, "window", "1"), RP_EINVAL);
    fixture_free(&f);

    /* padding mask from assembly -> 0 */
    fixture_init(&f, "MONOCHROME2", 0);
    rp_mask *m = rp_mask_new(32, 32, 1, "padding");
    m->data[1000] = 1;
    rp_step_ctx_add_mask(&f.ctx, m);
    assert_int_equal(run(&f, "present", 1, "minmax", NULL), 0);
    assert_true(f.ctx.vol->data[1000] == 0.0f);
    assert_true(fabs(f.ctx.vol->data[1023] - 1.0) < 1e-6);
    fixture_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_present_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
