/* tests/recipe/test_steps_xr_resize.c — the X-ray geometry steps keep the affine and the QC
 * pixel map true (a marked pixel is found again through the map) and masks follow the
 * image; clahe on [0,1] equals OpenCV's on the displayed image; the png step writes
 * <stem>.png through the context's writer and lists it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/common.h"
#include "pipeline/recipe/recipe.h"
#include "pipeline/xray/xray.h"
#include "tests/recipe/step_writers_test.h"
#include "tests/xray/test_xray_util.h"

/* ---- steps ---- */

static const rp_step_def *find(const char *name)
{
    return rp_recipe_find_step(name);
}

static int run_step(rp_step_ctx *ctx, const char *name, int n, const char *a0, const char *a1)
{
    const rp_step_def *s = find(name);
    rp_step_args args;
    memset(&args, 0, sizeof args);
    args.n = n;
    if (a0)
        strcpy(args.arg[0], a0);
    if (a1)
        strcpy(args.arg[1], a1);
    void *p = NULL;
    char err[256];
    if (s->parse(&args, &p, err, sizeof err))
        fail_msg("%s", err);
    ctx->step_qc = cJSON_CreateObject();
    cJSON_AddItemToArray(cJSON_GetObjectItem(ctx->qc, "steps"), ctx->step_qc);
    int rc = s->run(ctx, p);
    free(p);
    return rc;
}

/* A 400x300 "radiograph" (rows bottom-up as assembly stores them) with one bright pixel at
 * displayed column 123, row 45; 0.2 mm pixels; through present, resize(200), pad(256). */
static void test_geometry_steps(void **state)
{
    (void)state;
    const int w = 400, h = 300, col = 123, row = 45;
    rp_step_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    rp_series_info si;
    memset(&si, 0, sizeof si);
    strcpy(si.photometric, "MONOCHROME2");
    ctx.info = &si;
    ctx.qc = cJSON_CreateObject();
    cJSON_AddArrayToObject(ctx.qc, "steps");
    ctx.vol = rp_volume_new(w, h, 1, 1);
    for (int i = 0; i < 3; i++)
        ctx.vol->affine[i][i] = i < 2 ? 0.2 : 1.0;
    ctx.vol->affine[0][3] = -40;
    ctx.vol->affine[1][3] = -30;
    rp_volume_update_spacing(ctx.vol);
    /* a 4x4 block so that area averaging keeps it visible at half size */
    for (int dy = 0; dy < 4; dy++)
        for (int dx = 0; dx < 4; dx++)
            ctx.vol->data[(size_t)(h - 1 - (row + dy)) * w + col + dx] = 1000;
    rp_mask *m = rp_mask_new(w, h, 1, "body");
    for (int x = 0; x < w; x++)
        m->data[x] = 1; /* bottom displayed row */
    rp_step_ctx_add_mask(&ctx, m);
    double world0[3];
    for (int i = 0; i < 3; i++) /* centre of the block in world mm */
        world0[i] = ctx.vol->affine[i][0] * (col + 1.5) +
                    ctx.vol->affine[i][1] * (h - 1 - (row + 1.5)) + ctx.vol->affine[i][3];

    assert_int_equal(run_step(&ctx, "present", 0, NULL, NULL), 0);
    assert_int_equal(run_step(&ctx, "resize", 2, "200", "keep_aspect"), 0);
    assert_int_equal(ctx.vol->dim[0], 200);
    assert_int_equal(ctx.vol->dim[1], 150);
    assert_true(fabs(ctx.vol->spacing[0] - 0.4) < 1e-9 && fabs(ctx.vol->spacing[1] - 0.4) < 1e-9);
    assert_int_equal(run_step(&ctx, "pad", 1, "256", NULL), 0);
    assert_int_equal(ctx.vol->dim[0], 256);
    assert_int_equal(ctx.vol->dim[1], 256);
    assert_int_equal(ctx.n_masks, 1);
    assert_int_equal(ctx.masks[0]->dim[0], 256);

    /* Find the block's centre of mass in displayed coordinates of the output. */
    const int W = 256, H = 256;
    double sx = 0, sy = 0, sw = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double v = ctx.vol->data[(size_t)(H - 1 - y) * W + x];
            sx += v * x;
            sy += v * y;
            sw += v;
        }
    sx /= sw;
    sy /= sw;
    cJSON *pm = cJSON_GetObjectItem(ctx.qc, "pixel_map");
    assert_non_null(pm);
    cJSON *sc = cJSON_GetObjectItem(pm, "scale"), *of = cJSON_GetObjectItem(pm, "offset");
    double mx =
        cJSON_GetArrayItem(sc, 0)->valuedouble * sx + cJSON_GetArrayItem(of, 0)->valuedouble;
    double my =
        cJSON_GetArrayItem(sc, 1)->valuedouble * sy + cJSON_GetArrayItem(of, 1)->valuedouble;
    print_message("block centre: output (%.2f, %.2f) -> source (%.2f, %.2f), truth (%.1f, %.1f)\n",
                  sx, sy, mx, my, col + 1.5, row + 1.5);
    assert_true(fabs(mx - (col + 1.5)) < 0.01 && fabs(my - (row + 1.5)) < 0.01);
    /* The affine agrees: output stored index of the centre -> same world point. */
    double j = H - 1 - sy;
    for (int i = 0; i < 3; i++) {
        double wv = ctx.vol->affine[i][0] * sx + ctx.vol->affine[i][1] * j + ctx.vol->affine[i][3];
        assert_true(fabs(wv - world0[i]) < 0.01);
    }
    /* Letterbox: (256 - 150) / 2 = 53 rows on top of the displayed image, zeros. */
    assert_true(ctx.vol->data[(size_t)(H - 1 - 52) * W + 100] == 0.0f);
    /* The mask's bottom displayed row followed the image: displayed row 53 + 149 = 202. */
    assert_int_equal(ctx.masks[0]->data[(size_t)(H - 1 - 202) * W + 100], 1);
    assert_int_equal(ctx.masks[0]->data[(size_t)(H - 1 - 201) * W + 100], 0);

    /* pad smaller than the image is a clear error */
    assert_int_equal(run_step(&ctx, "pad", 1, "100", NULL), RP_EINVAL);
    assert_true(strstr(ctx.err, "resize") != NULL);
    rp_step_ctx_release(&ctx);
    cJSON_Delete(ctx.qc);
}

/* clahe refuses HU-like input; on [0,1] input it equals OpenCV's on the displayed image. */
static void test_clahe_step(void **state)
{
    (void)state;
    const int w = 100, h = 75; /* not multiples of the grid: the reflect-101 side matters */
    rp_step_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.qc = cJSON_CreateObject();
    cJSON_AddArrayToObject(ctx.qc, "steps");
    ctx.vol = rp_volume_new(w, h, 1, 1);
    for (size_t i = 0; i < (size_t)w * h; i++)
        ctx.vol->data[i] = (float)(i % 1000) - 500;
    assert_int_equal(run_step(&ctx, "clahe", 2, "2.0", "8"), RP_EINVAL);
    assert_true(strstr(ctx.err, "[0,1]") != NULL);

    float *disp = malloc(sizeof(float) * w * h);
    xt_phantom(disp, w, h, 0.2);
    uint8_t *q = malloc((size_t)w * h), *r = malloc((size_t)w * h);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            float v = disp[(size_t)y * w + x];
            ctx.vol->data[(size_t)(h - 1 - y) * w + x] = v; /* stored bottom-up */
            q[(size_t)y * w + x] = (uint8_t)lrintf(v * 255);
        }
    char pin[512], pout[512], args[1400];
    snprintf(pin, sizeof pin, "%s/cs_in.raw", xt_tmpdir());
    snprintf(pout, sizeof pout, "%s/cs_out.raw", xt_tmpdir());
    assert_int_equal(xt_write(pin, q, (size_t)w * h), 0);
    snprintf(args, sizeof args, "clahe8 %d %d 2.0 8 8 '%s' '%s'", w, h, pin, pout);
    assert_int_equal(xt_ref(args), 0);
    assert_int_equal(xt_read(pout, r, (size_t)w * h), 0);
    assert_int_equal(run_step(&ctx, "clahe", 2, "2.0", "8"), 0);
    int me = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int ours = (int)lrintf(ctx.vol->data[(size_t)(h - 1 - y) * w + x] * 255);
            int d = abs(ours - r[(size_t)y * w + x]);
            me = d > me ? d : me;
        }
    assert_true(me <= 1);
    free(disp);
    free(q);
    free(r);
    rp_step_ctx_release(&ctx);
    cJSON_Delete(ctx.qc);
}

/* 3-D (CT windowed slices): clahe works slice by slice, each as the 2-D kernel would. */
static void test_clahe_3d(void **state)
{
    (void)state;
    const int w = 90, h = 70, nz = 3;
    rp_step_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.qc = cJSON_CreateObject();
    cJSON_AddArrayToObject(ctx.qc, "steps");
    ctx.vol = rp_volume_new(w, h, nz, 1);
    uint8_t *q = malloc((size_t)w * h * nz), *r = malloc((size_t)w * h);
    for (int z = 0; z < nz; z++) {
        float *pl = ctx.vol->data + (size_t)z * w * h;
        xt_phantom(pl, w, h, 0.1 + 0.1 * z);
        for (int y = 0; y < h; y++) /* displayed order for the reference */
            for (int x = 0; x < w; x++)
                q[(size_t)z * w * h + (size_t)y * w + x] =
                    (uint8_t)lrintf(pl[(size_t)(h - 1 - y) * w + x] * 255);
    }
    assert_int_equal(run_step(&ctx, "clahe", 2, "3.0", "4x2"), 0);
    for (int z = 0; z < nz; z++) {
        assert_int_equal(rp_xr_clahe_u8(q + (size_t)z * w * h, r, w, h, 3.0, 4, 2), 0);
        const float *pl = ctx.vol->data + (size_t)z * w * h;
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                assert_int_equal((int)lrintf(pl[(size_t)(h - 1 - y) * w + x] * 255),
                                 r[(size_t)y * w + x]);
    }
    free(q);
    free(r);
    rp_step_ctx_release(&ctx);
    cJSON_Delete(ctx.qc);
}

/* PNG: 0..1 -> 0..255 / 0..65535, clamped, PNG row 0 = first DICOM row (top). */

/* the png step: <out_dir>/<stem>.png, listed in extra_outputs */
static void test_png_step(void **state)
{
    (void)state;
    rp_volume *v = rp_volume_new(3, 2, 1, 1);
    const float d[6] = {0.0f, 0.5f, 1.0f, -1.0f, 2.0f, 0.25f};
    memcpy(v->data, d, sizeof d);
    char args[1200];
    rp_step_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.qc = cJSON_CreateObject();
    cJSON_AddArrayToObject(ctx.qc, "steps");
    ctx.extra_outputs = cJSON_AddArrayToObject(ctx.qc, "extra_outputs");
    ctx.out_dir = xt_tmpdir();
    ctx.out_stem = "img";
    ctx.writers = &test_step_writers;
    ctx.vol = rp_volume_clone(v);
    assert_int_equal(run_step(&ctx, "png", 1, "16", NULL), 0);
    cJSON *e = cJSON_GetArrayItem(ctx.extra_outputs, 0);
    assert_non_null(e);
    snprintf(args, sizeof args, "%s/img.png", xt_tmpdir());
    assert_string_equal(cJSON_GetObjectItem(e, "path")->valuestring, args);
    assert_int_equal(access(args, R_OK), 0);
    rp_step_ctx_release(&ctx);
    cJSON_Delete(ctx.qc);
    rp_volume_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_geometry_steps),
        cmocka_unit_test(test_clahe_step),
        cmocka_unit_test(test_clahe_3d),
        cmocka_unit_test(test_png_step),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    xt_cleanup();
    return rc;
}
