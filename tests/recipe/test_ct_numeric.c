/* tests/recipe/test_ct_numeric.c — numeric CT/generic steps against NumPy/SciPy references
 * computed on the same input (tests/volume/ref/ndimage_ref.py). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pipeline/recipe/recipe.h"
#include "tests/volume/ref_util.h"

/* smooth structures plus noise, in an HU-like range */
static rp_volume *make_volume(int nx, int ny, int nz, double sx, double sy, double sz)
{
    rp_volume *v = rp_volume_new(nx, ny, nz, 1);
    assert_non_null(v);
    v->affine[0][0] = sx;
    v->affine[1][1] = sy;
    v->affine[2][2] = sz;
    v->affine[0][3] = -12.5;
    v->affine[1][3] = 30;
    v->affine[2][3] = -100;
    rp_volume_update_spacing(v);
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                double r = hypot(x - nx / 2.0, y - ny / 2.0);
                double val = r < nx / 3.0 ? 40 : -1000;
                val += 300 * sin(x * 0.4) * cos(y * 0.3 + z * 0.5) + 80 * rnd_normal();
                v->data[((size_t)z * ny + y) * nx + x] = (float)val;
            }
    return v;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m))
            m = d;
    }
    return m;
}

static void run_recipe(rp_step_ctx *ctx, const char *text)
{
    rp_recipe *r;
    char err[512];
    int rc = rp_recipe_parse(text, &r, err, sizeof err);
    if (rc)
        fail_msg("parse '%s': %s", text, err);
    rc = rp_recipe_run(r, ctx);
    if (rc)
        fail_msg("run '%s': %s", text, ctx->err);
    rp_recipe_free(r);
}

static void check_resample(int order, const char *interp, double sx, double sy, double sz,
                           double tx, double ty, double tz)
{
    rp_volume *v = make_volume(41, 33, 19, sx, sy, sz);
    char extra[128];
    snprintf(extra, sizeof extra, "%.17g %.17g %.17g %d", tx / sx, ty / sy, tz / sz, order);
    int rd[3];
    float *ref = ref_run("resample", v, extra, rd);
    assert_non_null(ref);
    rp_step_ctx ctx = {.vol = v};
    char text[128];
    snprintf(text, sizeof text, "resample(%g,%g,%g,%s)", tx, ty, tz, interp);
    run_recipe(&ctx, text);
    assert_int_equal(ctx.vol->dim[0], rd[0]);
    assert_int_equal(ctx.vol->dim[1], rd[1]);
    assert_int_equal(ctx.vol->dim[2], rd[2]);
    double d = max_abs_diff(ctx.vol->data, ref, rp_volume_nvox(ctx.vol));
    print_message("resample %s %gx%gx%g -> %gx%gx%g: %dx%dx%d, max |C - scipy| = %.3g HU\n", interp,
                  sx, sy, sz, tx, ty, tz, rd[0], rd[1], rd[2], d);
    assert_true(d < 1e-3);
    /* affine: columns scaled to the new spacing, origin fixed */
    assert_true(fabs(ctx.vol->affine[0][0] - tx) < 1e-12);
    assert_true(fabs(ctx.vol->affine[2][2] - tz) < 1e-12);
    assert_true(fabs(ctx.vol->affine[1][3] - 30) < 1e-12);
    free(ref);
    rp_step_ctx_release(&ctx);
}

static void test_resample_linear(void **state)
{
    (void)state;
    check_resample(1, "linear", 0.7, 0.8, 2.5, 1, 1, 1);
    check_resample(1, "linear", 1.3, 0.6, 1.0, 0.9, 1.1, 0.4);
}

static void test_resample_cubic(void **state)
{
    (void)state;
    check_resample(3, "bspline3", 0.7, 0.8, 2.5, 1, 1, 1);
    check_resample(3, "bspline3", 1.3, 0.6, 1.0, 0.9, 1.1, 0.4);
    /* z shrinks most: in-place passes along z, then x, then y into the output */
    check_resample(3, "bspline3", 1.0, 1.0, 0.5, 1.2, 0.8, 1.0);
    check_resample(0, "nearest", 0.7, 0.8, 2.5, 1, 1, 1);
}

static void test_resample_aniso_and_masks(void **state)
{
    (void)state;
    rp_volume *v = make_volume(40, 40, 10, 0.8, 0.8, 5.0);
    rp_step_ctx ctx = {.vol = v, .qc = cJSON_CreateObject()};
    rp_mask *m = rp_mask_like(v, "lung");
    for (size_t i = 0; i < rp_volume_nvox(v); i++)
        m->data[i] = v->data[i] > 0;
    assert_int_equal(rp_step_ctx_add_mask(&ctx, m), 0);
    run_recipe(&ctx, "resample(1,1,1,bspline3,aniso)");
    cJSON *st = cJSON_GetArrayItem(cJSON_GetObjectItem(ctx.qc, "steps"), 0);
    cJSON *orders = cJSON_GetObjectItem(st, "order_per_axis");
    assert_string_equal(cJSON_GetArrayItem(orders, 0)->valuestring, "bspline3");
    assert_string_equal(cJSON_GetArrayItem(orders, 2)->valuestring, "nearest");
    rp_mask *lm = rp_step_ctx_mask(&ctx, "lung");
    assert_int_equal(lm->dim[0], 32);
    assert_int_equal(lm->dim[2], 50);
    assert_true(fabs(lm->affine[2][2] - 1.0) < 1e-12);
    /* along z, order 0: output slice 5 (old index 1.0) equals old slice 1 resampled in-plane */
    cJSON_Delete(ctx.qc);
    rp_step_ctx_release(&ctx);
}

static void check_pointwise(const char *recipe, const char *op, const char *extra, double tol)
{
    rp_volume *v = make_volume(31, 27, 13, 0.7, 0.7, 2.0);
    int rd[3];
    float *ref = ref_run(op, v, extra, rd);
    assert_non_null(ref);
    rp_step_ctx ctx = {.vol = v};
    run_recipe(&ctx, recipe);
    double d = max_abs_diff(ctx.vol->data, ref, rp_volume_nvox(ctx.vol));
    print_message("%s vs numpy %s: max diff %.3g\n", recipe, op, d);
    assert_true(d <= tol);
    free(ref);
    rp_step_ctx_release(&ctx);
}

static void test_window_normalize(void **state)
{
    (void)state;
    /* float64 in NumPy, float64 in C, both rounded once to float32: identical up to 1 ulp */
    check_pointwise("window(lung)", "window", "-600 1500", 1e-7);
    check_pointwise("window(40,80)", "window", "40 80", 1e-7);
    check_pointwise("window(mediastinal)", "window", "50 350", 1e-7);
    check_pointwise("normalize(minmax)", "minmax", "", 1e-7);
    check_pointwise("normalize(zscore)", "zscore", "", 1e-6);
    check_pointwise("normalize(percentile(0.5,99.5))", "percentile", "0.5 99.5", 1e-6);
    check_pointwise("normalize(percentile(2,98))", "percentile", "2 98", 1e-6);
}

static void test_multiwindow(void **state)
{
    (void)state;
    rp_volume *v = make_volume(21, 17, 9, 0.7, 0.7, 2.0);
    rp_step_ctx ctx = {.vol = rp_volume_clone(v)};
    run_recipe(&ctx, "multiwindow(lung,mediastinal,bone)");
    assert_int_equal(ctx.vol->dim[3], 3);
    const char *single[3] = {"window(lung)", "window(mediastinal)", "window(bone)"};
    size_t n = rp_volume_nvox(v);
    for (int c = 0; c < 3; c++) {
        rp_step_ctx one = {.vol = rp_volume_clone(v)};
        run_recipe(&one, single[c]);
        assert_memory_equal(ctx.vol->data + c * n, one.vol->data, n * sizeof(float));
        rp_step_ctx_release(&one);
    }
    /* a 4-D volume resamples channel by channel and keeps its channels */
    run_recipe(&ctx, "resample(1,1,1,linear) normalize(minmax)");
    assert_int_equal(ctx.vol->dim[3], 3);
    assert_int_equal(ctx.vol->dim[0], 15);
    /* HU steps refuse the stacked channels with a reason */
    rp_recipe *r;
    char err[256];
    assert_int_equal(rp_recipe_parse("lungmask", &r, err, sizeof err), 0);
    assert_int_not_equal(rp_recipe_run(r, &ctx), 0);
    assert_non_null(strstr(ctx.err, "channel"));
    rp_recipe_free(r);
    rp_step_ctx_release(&ctx);
    rp_volume_free(v);
}

static void test_denoise(void **state)
{
    (void)state;
    /* sigma 1.4 mm on 0.7 / 0.7 / 2.0 mm voxels = 2, 2, 0.7 voxels */
    check_pointwise("denoise(gaussian,1.4)", "gaussian", "2 2 0.7", 2e-3);
    check_pointwise("denoise(median,1)", "median", "1", 0);
}

static void test_window_then_lungmask_units(void **state)
{
    (void)state;
    /* after window(lung), HU bookkeeping still finds -500 HU; metal at 3000 HU is gone */
    rp_volume *v = make_volume(30, 30, 10, 1, 1, 1);
    rp_step_ctx ctx = {.vol = v};
    run_recipe(&ctx, "clip(lung) window(lung)");
    float val;
    assert_int_equal(rp_step_ctx_hu_value(&ctx, -500, "t", &val), 0);
    assert_true(fabs(val - (-500 - (-1350.0)) / 1500.0) < 1e-6);
    assert_int_not_equal(rp_step_ctx_hu_value(&ctx, 3000, "metal", &val), 0);
    rp_recipe *r;
    char err[256];
    assert_int_equal(rp_recipe_parse("metal", &r, err, sizeof err), 0);
    assert_int_not_equal(rp_recipe_run(r, &ctx), 0);
    assert_non_null(strstr(ctx.err, "clip"));
    rp_recipe_free(r);
    rp_step_ctx_release(&ctx);
}

static void test_reorient_vs_nibabel(void **state)
{
    (void)state;
    /* voxel axes: i -> posterior (-y), j -> superior (z), k -> left (-x), slightly oblique */
    rp_volume *v = make_volume(13, 11, 7, 1, 1, 1);
    double a[3][4] = {{0.05, 0.02, -2.0, 40}, {-0.8, 0.03, 0.1, 20}, {0.02, 1.2, 0.04, -10}};
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            v->affine[r][c] = a[r][c];
    rp_volume_update_spacing(v);
    char extra[512];
    int k = 0;
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            k += snprintf(extra + k, sizeof extra - k, "%.17g ", a[r][c]);
    int rd[3];
    float *ref = ref_run("canonical", v, extra, rd);
    assert_non_null(ref);
    rp_step_ctx ctx = {.vol = v};
    run_recipe(&ctx, "reorient(RAS)");
    assert_int_equal(ctx.vol->dim[0], rd[0]);
    assert_int_equal(ctx.vol->dim[1], rd[1]);
    assert_int_equal(ctx.vol->dim[2], rd[2]);
    assert_memory_equal(ctx.vol->data, ref, rp_volume_nvox(ctx.vol) * sizeof(float));
    char path[700];
    snprintf(path, sizeof path, "%s/canonical_out.f32.affine", ref_tmpdir());
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    for (int i = 0; i < 12; i++) {
        double x;
        assert_int_equal(fscanf(f, "%lf", &x), 1);
        assert_true(fabs(x - ctx.vol->affine[i / 4][i % 4]) < 1e-9);
    }
    fclose(f);
    free(ref);
    rp_step_ctx_release(&ctx);
}

static void test_edge_preserving(void **state)
{
    (void)state;
    /* a step edge of 400 HU under noise of SD 40: diffusion lowers the noise, keeps the edge */
    rp_volume *v = rp_volume_new(40, 40, 20, 1);
    for (int z = 0; z < 20; z++)
        for (int y = 0; y < 40; y++)
            for (int x = 0; x < 40; x++)
                v->data[(z * 40 + y) * 40 + x] = (float)((x < 20 ? 0 : 400) + 40 * rnd_normal());
    rp_step_ctx ctx = {.vol = v};
    run_recipe(&ctx, "hu denoise(edge-preserving,10,60)");
    double s = 0, ss = 0, lo = 0, hi = 0;
    int n = 0;
    for (int z = 2; z < 18; z++)
        for (int y = 2; y < 38; y++) {
            for (int x = 3; x < 15; x++) {
                double d = ctx.vol->data[(z * 40 + y) * 40 + x];
                s += d;
                ss += d * d;
                n++;
            }
            lo += ctx.vol->data[(z * 40 + y) * 40 + 17];
            hi += ctx.vol->data[(z * 40 + y) * 40 + 22];
        }
    double sd = sqrt(ss / n - (s / n) * (s / n));
    double contrast = (hi - lo) / (16 * 36);
    print_message("edge-preserving: noise SD 40 -> %.1f, edge contrast 400 -> %.1f\n", sd,
                  contrast);
    assert_true(sd < 20);
    assert_true(contrast > 360);
    rp_step_ctx_release(&ctx);
}

static int teardown(void **state)
{
    (void)state;
    ref_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resample_linear),
        cmocka_unit_test(test_resample_cubic),
        cmocka_unit_test(test_resample_aniso_and_masks),
        cmocka_unit_test(test_window_normalize),
        cmocka_unit_test(test_multiwindow),
        cmocka_unit_test(test_denoise),
        cmocka_unit_test(test_reorient_vs_nibabel),
        cmocka_unit_test(test_edge_preserving),
        cmocka_unit_test(test_window_then_lungmask_units),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
