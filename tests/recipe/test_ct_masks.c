/* tests/recipe/test_ct_masks.c — body / lung / metal masks on a generated chest phantom
 * with known truth, plus the QC montage and the geometric steps' affine bookkeeping. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "common/common.h"
#include "pipeline/recipe/recipe.h"
#include "tests/recipe/step_writers_test.h"
#include "tests/volume/ref_util.h"

#define NX 128
#define NY 128
#define NZ 100
#define SX 2.0
#define SY 2.0
#define SZ 2.5

/* world (mm, RAS) of voxel centre; origin at the volume centre */
static void world(int x, int y, int z, double *wx, double *wy, double *wz)
{
    *wx = (x - NX / 2.0) * SX;
    *wy = (y - NY / 2.0) * SY;
    *wz = (z - NZ / 2.0) * SZ;
}

static int in_lung(double wx, double wy, double wz)
{
    for (int s = -1; s <= 1; s += 2) {
        double dx = (wx - s * 55) / 40, dy = (wy - 5) / 55, dz = wz / 90;
        if (dx * dx + dy * dy + dz * dz <= 1)
            return 1;
    }
    return 0;
}

/* chest phantom: body (40 HU) with two lungs (-850 HU) holding vessels (40 HU), a gas
 * bubble in the abdomen, a table under the body, a metal wire; truth = lung ellipsoids */
static rp_volume *phantom(uint8_t *truth)
{
    rp_volume *v = rp_volume_new(NX, NY, NZ, 1);
    assert_non_null(v);
    v->affine[0][0] = SX;
    v->affine[1][1] = SY;
    v->affine[2][2] = SZ;
    v->affine[0][3] = -NX / 2.0 * SX;
    v->affine[1][3] = -NY / 2.0 * SY;
    v->affine[2][3] = -NZ / 2.0 * SZ;
    rp_volume_update_spacing(v);
    for (int z = 0; z < NZ; z++)
        for (int y = 0; y < NY; y++)
            for (int x = 0; x < NX; x++) {
                double wx, wy, wz;
                world(x, y, z, &wx, &wy, &wz);
                size_t i = ((size_t)z * NY + y) * NX + x;
                double hu = -1000 + 10 * rnd_normal();
                double bx = wx / 110, by = wy / 85;
                int lung = in_lung(wx, wy, wz);
                if (bx * bx + by * by <= 1)
                    hu = 40 + 20 * rnd_normal();
                if (wy < -95 && wy > -105 && fabs(wx) < 120)
                    hu = 200 + 20 * rnd_normal(); /* table, 10 mm below an air gap */
                if (lung) {
                    hu = -850 + 30 * rnd_normal();
                    /* vessels: small spheres of soft tissue, part of the lung by definition */
                    for (int k = 0; k < 6; k++) {
                        double cx = (k % 2 ? 55 : -55) + ((k % 3) - 1) * 15,
                               cy = 5 + ((k % 3) - 1) * 20, cz = (k - 2.5) * 25;
                        double d2 =
                            (wx - cx) * (wx - cx) + (wy - cy) * (wy - cy) + (wz - cz) * (wz - cz);
                        if (d2 < 25)
                            hu = 40 + 20 * rnd_normal();
                    }
                }
                double gx = wx - 20, gy = wy + 40, gz = wz + 100;
                if (gx * gx + gy * gy + gz * gz < 144)
                    hu = -900 + 30 * rnd_normal(); /* bowel gas, 7 ml */
                if (fabs(wx - 0) < 2.1 && fabs(wy + 60) < 2.1 && wz > 10 && wz < 30)
                    hu = 3500; /* metal wire 2x2x~8 voxels */
                v->data[i] = (float)hu;
                if (truth)
                    truth[i] = (uint8_t)lung;
            }
    return v;
}

static double dice(const uint8_t *a, const uint8_t *b, size_t n)
{
    size_t inter = 0, sa = 0, sb = 0;
    for (size_t i = 0; i < n; i++) {
        inter += a[i] && b[i];
        sa += a[i] != 0;
        sb += b[i] != 0;
    }
    return sa + sb ? 2.0 * inter / (sa + sb) : 1;
}

static void run_recipe(rp_step_ctx *ctx, const char *text)
{
    rp_recipe *r;
    char err[512];
    if (rp_recipe_parse(text, &r, err, sizeof err))
        fail_msg("parse '%s': %s", text, err);
    if (rp_recipe_run(r, ctx))
        fail_msg("run '%s': %s", text, ctx->err);
    rp_recipe_free(r);
}

static void test_lungmask_phantom(void **state)
{
    (void)state;
    size_t n = (size_t)NX * NY * NZ;
    uint8_t *truth = malloc(n);
    rp_volume *v = phantom(truth);
    rp_step_ctx ctx = {.vol = v, .qc = cJSON_CreateObject()};
    run_recipe(&ctx, "hu bodymask lungmask metal");
    rp_mask *lung = rp_step_ctx_mask(&ctx, "lung");
    rp_mask *body = rp_step_ctx_mask(&ctx, "body");
    assert_non_null(lung);
    assert_non_null(body);
    double d = dice(lung->data, truth, n);
    double ml = rp_mask_count(lung) * SX * SY * SZ / 1000, tml = 0;
    for (size_t i = 0; i < n; i++)
        tml += truth[i];
    tml *= SX * SY * SZ / 1000;
    print_message("lungmask phantom: Dice %.4f, volume %.1f ml (truth %.1f ml)\n", d, ml, tml);
    assert_true(d >= 0.98);
    /* the body excludes the table and outside air, includes the lungs */
    size_t table = 0;
    for (int x = 0; x < NX; x++)
        table += body->data[((size_t)NZ / 2 * NY + 16) * NX + x]; /* y=16: wy=-96 */
    assert_int_equal(table, 0);
    for (size_t i = 0; i < n; i++)
        if (truth[i])
            assert_int_equal(body->data[i], 1);
    /* metal: one component, centroid near (0,-60,20) mm */
    cJSON *metal = cJSON_GetObjectItem(ctx.qc, "metal");
    assert_non_null(metal);
    assert_int_equal(cJSON_GetObjectItem(metal, "count")->valueint, 1);
    cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(metal, "components"), 0);
    cJSON *cen = cJSON_GetObjectItem(c0, "centroid_mm_ras");
    char *mtxt = cJSON_PrintUnformatted(metal);
    print_message("metal: %s\n", mtxt);
    free(mtxt);
    assert_true(fabs(cJSON_GetArrayItem(cen, 0)->valuedouble - 0) < 2.5);
    assert_true(fabs(cJSON_GetArrayItem(cen, 1)->valuedouble + 60) < 2.5);
    assert_true(fabs(cJSON_GetArrayItem(cen, 2)->valuedouble - 20) < 3);
    cJSON *masks = cJSON_GetObjectItem(ctx.qc, "masks");
    assert_true(
        fabs(cJSON_GetObjectItem(cJSON_GetObjectItem(masks, "lung"), "volume_ml")->valuedouble -
             ml) < 0.1);
    /* montage */
    char png[700];
    snprintf(png, sizeof png, "%s/montage.png", ref_tmpdir());
    ctx.writers = &test_step_writers;
    assert_int_equal(rp_qc_montage_png(&ctx, png), 0);
    struct stat st;
    assert_int_equal(stat(png, &st), 0);
    assert_true(st.st_size > 1000);
    cJSON_Delete(ctx.qc);
    rp_step_ctx_release(&ctx);

    /* the same lung mask after clip + window: the HU bookkeeping translates -500 HU */
    v = phantom(NULL);
    rp_step_ctx c2 = {.vol = v};
    g_rng = 88172645463325252ULL;
    run_recipe(&c2, "hu clip(-1200,600) window(lung) lungmask");
    assert_true(dice(rp_step_ctx_mask(&c2, "lung")->data, truth, n) >= 0.98);
    rp_step_ctx_release(&c2);
    free(truth);
}

static void test_default_ct_recipe(void **state)
{
    (void)state;
    rp_volume *v = phantom(NULL);
    rp_step_ctx ctx = {.vol = v, .qc = cJSON_CreateObject()};
    run_recipe(
        &ctx,
        "hu resample(1,1,1,bspline3) bodymask lungmask metal clip(-1200,600) normalize(minmax)");
    assert_int_equal(ctx.vol->dim[0], 256);
    assert_int_equal(ctx.vol->dim[2], 250);
    assert_int_equal(ctx.n_masks, 3);
    for (int i = 0; i < ctx.n_masks; i++)
        assert_int_equal(ctx.masks[i]->dim[0], 256);
    cJSON *lung = cJSON_GetObjectItem(cJSON_GetObjectItem(ctx.qc, "masks"), "lung");
    double ml = cJSON_GetObjectItem(lung, "volume_ml")->valuedouble;
    double truth_ml = 2 * 4.0 / 3 * M_PI * 40 * 55 * 90 / 1000;
    print_message("default recipe on phantom: lung %.1f ml (analytic %.1f ml)\n", ml, truth_ml);
    assert_true(fabs(ml - truth_ml) / truth_ml < 0.03);
    cJSON_Delete(ctx.qc);
    rp_step_ctx_release(&ctx);
}

static void test_geometry_steps(void **state)
{
    (void)state;
    rp_volume *v = rp_volume_new(10, 8, 6, 1);
    /* LPS-like affine: x to the left, y posterior */
    v->affine[0][0] = -0.5;
    v->affine[1][1] = -0.7;
    v->affine[2][2] = 2;
    v->affine[0][3] = 10;
    v->affine[1][3] = 20;
    v->affine[2][3] = 30;
    rp_volume_update_spacing(v);
    for (size_t i = 0; i < rp_volume_nvox(v); i++)
        v->data[i] = (float)i;
    double before[4][4];
    memcpy(before, v->affine, sizeof before);
    rp_step_ctx ctx = {.vol = v};
    rp_mask *m = rp_mask_like(v, "lung");
    m->data[3 + 10 * (2 + 8 * 1)] = 1;
    rp_step_ctx_add_mask(&ctx, m);
    run_recipe(&ctx, "reorient(RAS)");
    assert_true(ctx.vol->affine[0][0] == 0.5 && ctx.vol->affine[1][1] == 0.7);
    /* voxel (3,2,1) moved to (6,5,1); same world position, same value */
    size_t j = 6 + 10 * (5 + 8 * 1);
    assert_true(ctx.vol->data[j] == (float)(3 + 10 * (2 + 8 * 1)));
    assert_int_equal(rp_step_ctx_mask(&ctx, "lung")->data[j], 1);
    double w_old = before[0][0] * 3 + before[0][3],
           w_new = ctx.vol->affine[0][0] * 6 + ctx.vol->affine[0][3];
    assert_true(fabs(w_old - w_new) < 1e-12);
    run_recipe(&ctx, "crop(mask,lung,1)");
    assert_int_equal(ctx.vol->dim[0], 3);
    assert_int_equal(ctx.vol->dim[2], 3);
    assert_true(ctx.vol->data[1 + 3 * (1 + 3 * 1)] == (float)(3 + 10 * (2 + 8 * 1)));
    run_recipe(&ctx, "crop_or_pad(5,5,5,-7)");
    assert_int_equal(ctx.vol->dim[1], 5);
    assert_true(ctx.vol->data[0] == -7.0f);
    assert_true(ctx.vol->data[2 + 5 * (2 + 5 * 2)] == (float)(3 + 10 * (2 + 8 * 1)));
    double w_final = ctx.vol->affine[0][0] * 2 + ctx.vol->affine[0][3];
    assert_true(fabs(w_old - w_final) < 1e-12);
    rp_step_ctx_release(&ctx);
}

static void test_crop_background_and_patches(void **state)
{
    (void)state;
    /* X-ray-like image with uniform collimation borders */
    rp_volume *v = rp_volume_new(100, 80, 1, 1);
    for (int y = 0; y < 80; y++)
        for (int x = 0; x < 100; x++)
            v->data[y * 100 + x] =
                (x >= 12 && x < 90 && y >= 5 && y < 70)
                    ? (float)(500 + 200 * sin(x * 0.3) * cos(y * 0.2) + 30 * rnd_normal())
                    : 4095.0f;
    rp_step_ctx ctx = {.vol = v, .qc = cJSON_CreateObject()};
    run_recipe(&ctx, "crop(background)");
    assert_int_equal(ctx.vol->dim[0], 78);
    assert_int_equal(ctx.vol->dim[1], 65);
    cJSON *st = cJSON_GetArrayItem(cJSON_GetObjectItem(ctx.qc, "steps"), 0);
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(st, "box_start"), 0)->valueint, 12);
    assert_true(ctx.vol->affine[0][3] == 12 && ctx.vol->affine[1][3] == 5);
    cJSON_Delete(ctx.qc);
    rp_step_ctx_release(&ctx);

    /* patches: coordinate list JSON + npy files */
    rp_volume *w = phantom(NULL);
    cJSON *extra = cJSON_CreateArray();
    rp_step_ctx c2 = {.vol = w,
                      .out_dir = ref_tmpdir(),
                      .out_stem = "ph",
                      .writers = &test_step_writers,
                      .extra_outputs = extra};
    run_recipe(&c2, "lungmask patches(32,inside(lung),10,files) patches(64,48)");
    char path[800];
    snprintf(path, sizeof path, "%s/ph_patches.json", ref_tmpdir());
    char *txt;
    size_t len;
    assert_int_equal(rp_read_file(path, &txt, &len), 0);
    cJSON *doc = cJSON_Parse(txt);
    assert_non_null(doc);
    /* the second patches step wrote the grid: 128/48 -> starts 0,48,64 per axis in x,y; z: 0,36 */
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "patches")), 3 * 3 * 2);
    cJSON_Delete(doc);
    free(txt);
    snprintf(path, sizeof path, "%s/ph_patches/patch_00009.npy", ref_tmpdir());
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_size, 128 + 32 * 32 * 32 * 4);
    /* the runner wrote the QC montage next to the outputs and listed it */
    snprintf(path, sizeof path, "%s/ph_qc.png", ref_tmpdir());
    assert_int_equal(stat(path, &sb), 0);
    int montage_listed = 0;
    cJSON *e;
    cJSON_ArrayForEach(e, extra) montage_listed |=
        !strcmp(cJSON_GetObjectItem(e, "kind")->valuestring, "qc_montage");
    assert_true(montage_listed);
    cJSON_Delete(extra);
    rp_step_ctx_release(&c2);
}

/* clip + normalize(minmax) run fused by the runner (one min/max pass, one pass that clips,
 * scales and gathers both steps' statistics): the same floats, HU bookkeeping and QC figures
 * as the two steps run one by one (two recipes, so the runner cannot fuse them). */
static void test_fused_clip_normalize(void **state)
{
    (void)state;
    g_rng = 88172645463325252ULL;
    rp_step_ctx a = {.vol = phantom(NULL), .qc = cJSON_CreateObject()};
    g_rng = 88172645463325252ULL;
    rp_step_ctx b = {.vol = phantom(NULL), .qc = cJSON_CreateObject()};
    run_recipe(&a, "hu clip(-1200,600) normalize(minmax)");
    run_recipe(&b, "hu clip(-1200,600)");
    run_recipe(&b, "normalize(minmax)");
    size_t n = rp_volume_nvox(a.vol);
    assert_memory_equal(a.vol->data, b.vol->data, n * sizeof(float));
    assert_true(a.hu_known && b.hu_known);
    assert_true(a.hu_scale == b.hu_scale && a.hu_offset == b.hu_offset);
    cJSON *sa = cJSON_GetObjectItem(a.qc, "steps"), *sb = cJSON_GetObjectItem(b.qc, "steps");
    assert_int_equal(cJSON_GetArraySize(sa), 3);
    assert_int_equal(cJSON_GetArraySize(sb), 3);
    assert_non_null(cJSON_GetObjectItem(cJSON_GetArrayItem(sa, 1), "fused"));
    assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(sb, 1), "fused"));
    for (int i = 1; i < 3; i++) {
        cJSON *fa = cJSON_GetObjectItem(cJSON_GetArrayItem(sa, i), "after");
        cJSON *fb = cJSON_GetObjectItem(cJSON_GetArrayItem(sb, i), "after");
        assert_non_null(fa);
        assert_non_null(fb);
        for (cJSON *k = fa->child; k; k = k->next) {
            cJSON *o = cJSON_GetObjectItem(fb, k->string);
            assert_non_null(o);
            if (cJSON_IsNumber(k))
                assert_true(fabs(k->valuedouble - o->valuedouble) <=
                            1e-9 * (1 + fabs(o->valuedouble)));
        }
    }
    cJSON *clip = cJSON_GetArrayItem(sa, 1), *clipb = cJSON_GetArrayItem(sb, 1);
    assert_true(fabs(cJSON_GetObjectItem(clip, "clipped_fraction")->valuedouble -
                     cJSON_GetObjectItem(clipb, "clipped_fraction")->valuedouble) < 1e-12);
    cJSON_Delete(a.qc);
    cJSON_Delete(b.qc);
    rp_step_ctx_release(&a);
    rp_step_ctx_release(&b);
}

/* lungmask's 5th argument: 1 (default) takes the airway out and says so in QC, 0 keeps it,
 * anything else is refused with the usage. */
static void test_lungmask_airway_arg(void **state)
{
    (void)state;
    rp_recipe *r = NULL;
    char err[512];
    assert_int_equal(rp_recipe_parse("lungmask(-500,20,2,1500,2)", &r, err, sizeof err),
                     RP_ECONF);
    assert_non_null(strstr(err, "airway"));
    assert_int_equal(rp_recipe_parse("lungmask(-500,20,2,1500,0,1)", &r, err, sizeof err),
                     RP_ECONF);
    rp_step_ctx ctx = {.vol = phantom(NULL), .qc = cJSON_CreateObject()};
    run_recipe(&ctx, "hu lungmask");
    cJSON *lm = cJSON_GetArrayItem(cJSON_GetObjectItem(ctx.qc, "steps"), 1);
    cJSON *params = cJSON_GetObjectItem(lm, "params");
    assert_string_equal(cJSON_GetObjectItem(params, "airway")->valuestring, "removed");
    /* the phantom has no trachea: the finding says so */
    cJSON *aw = cJSON_GetObjectItem(lm, "airway");
    assert_true(cJSON_IsObject(aw));
    assert_non_null(cJSON_GetObjectItem(aw, "found"));
    cJSON_Delete(ctx.qc);
    rp_step_ctx_release(&ctx);
    rp_step_ctx c2 = {.vol = phantom(NULL), .qc = cJSON_CreateObject()};
    run_recipe(&c2, "hu lungmask(-500,20,2,1500,0)");
    lm = cJSON_GetArrayItem(cJSON_GetObjectItem(c2.qc, "steps"), 1);
    params = cJSON_GetObjectItem(lm, "params");
    assert_string_equal(cJSON_GetObjectItem(params, "airway")->valuestring, "kept");
    assert_null(cJSON_GetObjectItem(lm, "airway"));
    cJSON_Delete(c2.qc);
    rp_step_ctx_release(&c2);
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
        cmocka_unit_test(test_lungmask_phantom),
        cmocka_unit_test(test_default_ct_recipe),
        cmocka_unit_test(test_geometry_steps),
        cmocka_unit_test(test_crop_background_and_patches),
        cmocka_unit_test(test_fused_clip_normalize),
        cmocka_unit_test(test_lungmask_airway_arg),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
