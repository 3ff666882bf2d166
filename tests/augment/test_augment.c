/* tests/augment/test_augment.c — augmentation keeps image and masks aligned: on a phantom whose
 * label is known, for every spatial transform (and their combination, with each image
 * interpolation), the mask of the augmented image (threshold) equals the augmented mask
 * (Dice >= 0.99); intensity transforms leave the mask alone; draws and outputs are the same
 * bytes for the same seed; SPEC errors are clear. */
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
#include "pipeline/augment/augment.h"
#include "tests/register/reg_phantom.h"

static rp_volume *g_img, *g_lab;

/* brain = everything inside the skull: 100 in the image, label 1 (a known label) */
static int setup(void **state)
{
    (void)state;
    const double sp[3] = {1.5, 1.5, 2.0};
    rp_volume *t1 = rph_render(96, 112, 80, sp, RPH_T1, NULL, 0, 0, 0);
    g_img = rp_volume_new(96, 112, 80, 1);
    g_lab = rp_volume_new(96, 112, 80, 1);
    memcpy(g_img->affine, t1->affine, sizeof t1->affine);
    memcpy(g_lab->affine, t1->affine, sizeof t1->affine);
    rp_volume_update_spacing(g_img);
    rp_volume_update_spacing(g_lab);
    /* label: the white matter region (T1 value >= 95 after partial volume), image 0/100 */
    for (size_t i = 0; i < rp_volume_nvox(t1); i++) {
        g_lab->data[i] = t1->data[i] >= 92.5f ? 1.0f : 0.0f;
        g_img->data[i] = 100.0f * g_lab->data[i];
    }
    rp_volume_free(t1);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rp_volume_free(g_img);
    rp_volume_free(g_lab);
    return 0;
}

static double dice_thr(const rp_volume *img, double thr, const rp_volume *lab)
{
    size_t a = 0, b = 0, ab = 0;
    for (size_t i = 0; i < rp_volume_nvox(img); i++) {
        int x = img->data[i] > thr, y = lab->data[i] > 0.5f;
        a += x;
        b += y;
        ab += x && y;
    }
    return a + b ? 2.0 * ab / (double)(a + b) : 1.0;
}

static void check_spec(const char *spec, double min_dice)
{
    rp_aug_spec s;
    char err[256];
    assert_int_equal(rp_aug_parse(spec, &s, err, sizeof err), 0);
    for (int copy = 1; copy <= 3; copy++) {
        rp_aug_draw d;
        rp_aug_draw_params(&s, 42, "case-a", copy, 1, &d);
        rp_volume *ai = NULL, *am = NULL;
        assert_int_equal(rp_aug_apply_image(g_img, &d, &ai), 0);
        assert_int_equal(rp_aug_apply_mask(g_lab, &d, &am), 0);
        double thr = 100.0 * pow(0.5, d.gamma);
        double dc = dice_thr(ai, thr, am);
        size_t fg = 0;
        for (size_t i = 0; i < rp_volume_nvox(am); i++)
            fg += am->data[i] > 0.5f;
        cJSON *j = rp_aug_draw_json(&s, &d);
        char *txt = cJSON_PrintUnformatted(j);
        fprintf(stderr, "%-40s copy %d dice %.4f fg %zu %s\n", spec, copy, dc, fg, txt);
        free(txt);
        cJSON_Delete(j);
        assert_true(fg > 10000);
        assert_true(dc >= min_dice);
        rp_volume_free(ai);
        rp_volume_free(am);
    }
}

static void test_spatial_transforms_keep_masks_aligned(void **state)
{
    (void)state;
    check_spec("rotate(15)", 0.99);
    check_spec("rotate(0,0,30)", 0.99);
    check_spec("scale(0.15)", 0.99);
    check_spec("flip(xyz)", 0.99);
    check_spec("elastic(6,30)", 0.99);
    check_spec("rotate(10) scale(0.1) flip(x) elastic(4,25)", 0.99);
    check_spec("rotate(10) scale(0.1) flip(x) elastic(4,25) interp(bspline3)", 0.99);
    check_spec("rotate(10) scale(0.1) elastic(4,25) interp(nearest) masks(nearest)", 0.99);
    check_spec("rotate(10) elastic(4,25) gamma(0.6,1.6)", 0.99);
    check_spec("rotate(10) noise(4)", 0.99);
}

static void test_intensity_transforms_leave_masks(void **state)
{
    (void)state;
    rp_aug_spec s;
    assert_int_equal(rp_aug_parse("gamma(0.5,2) noise(5) bias(0.4)", &s, NULL, 0), 0);
    rp_aug_draw d;
    rp_aug_draw_params(&s, 7, "case-b", 1, 1, &d);
    rp_volume *ai = NULL, *am = NULL;
    assert_int_equal(rp_aug_apply_image(g_img, &d, &ai), 0);
    assert_int_equal(rp_aug_apply_mask(g_lab, &d, &am), 0);
    assert_memory_equal(am->data, g_lab->data, rp_volume_nvox(am) * sizeof(float));
    size_t changed = 0;
    for (size_t i = 0; i < rp_volume_nvox(ai); i++)
        changed += fabsf(ai->data[i] - g_img->data[i]) > 1e-3f;
    assert_true(changed > rp_volume_nvox(ai) / 2);
    rp_volume_free(ai);
    rp_volume_free(am);
}

static void test_same_seed_same_bytes(void **state)
{
    (void)state;
    rp_aug_spec s;
    assert_int_equal(
        rp_aug_parse("rotate(10) scale(0.1) flip(x) elastic(5,30) gamma(0.7,1.4) noise(3) bias(0.3)",
                     &s, NULL, 0),
        0);
    rp_aug_draw a, b, c;
    rp_aug_draw_params(&s, 5, "case-c", 2, 3, &a);
    rp_aug_draw_params(&s, 5, "case-c", 2, 3, &b);
    rp_aug_draw_params(&s, 5, "case-c", 3, 3, &c);
    assert_memory_equal(&a, &b, sizeof a);
    assert_true(memcmp(&a, &c, sizeof a) != 0);
    rp_volume *x = NULL, *y = NULL;
    assert_int_equal(rp_aug_apply_image(g_img, &a, &x), 0);
    assert_int_equal(rp_aug_apply_image(g_img, &b, &y), 0);
    assert_memory_equal(x->data, y->data, rp_volume_nvox(x) * sizeof(float));
    rp_volume_free(x);
    rp_volume_free(y);
}

static void test_parse_errors(void **state)
{
    (void)state;
    rp_aug_spec s;
    char err[256];
    const char *bad[] = {"", "spin(3)", "rotate(a)", "rotate(1,2)", "scale(0,0.5)",
                         "flip(w)", "elastic(3)", "gamma(2,1)", "noise(-1)", "bias(9)",
                         "interp(cubic)", "rotate(10", "masks(x)", "interp(linear)"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        assert_int_equal(rp_aug_parse(bad[i], &s, err, sizeof err), RP_EINVAL);
        assert_true(strlen(err) > 10);
        fprintf(stderr, "%-16s -> %s\n", bad[i], err);
    }
    assert_int_equal(rp_aug_parse("rotate( 10 )  flip( x,y )", &s, err, sizeof err), 0);
    assert_string_equal(s.text, "rotate(10) flip(x,y)");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spatial_transforms_keep_masks_aligned),
        cmocka_unit_test(test_intensity_transforms_leave_masks),
        cmocka_unit_test(test_same_seed_same_bytes),
        cmocka_unit_test(test_parse_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
