/* tests/align/test_align.c — midline alignment: a generated head phantom (CT in HU and T1-like
 * MR, landmarks mirrored) turned by known angles up to 20 degrees in the axial plane (with some
 * coronal tilt and a shift) gives back its angle within 1 degree; after alignment the midline is
 * vertical and centred (a second estimate finds ~0 degrees and ~0 mm); an asymmetric or empty
 * volume is refused with a reason. */
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
#include "pipeline/align/align.h"
#include "pipeline/register/register.h"
#include "tests/register/reg_phantom.h"

/* the phantom turned by yaw (axial plane) and roll (coronal plane), shifted left-right, on a
 * 1.2 mm grid with slices of `slice` mm covering 180 mm */
static rp_volume *head(int contrast, double yaw, double roll, double shift, double slice)
{
    double G[4][4];
    const double rot[3] = {0, roll, yaw}, tr[3] = {shift, -4, 3}, zero[3] = {0, 0, 0};
    rp_reg_compose(rot, tr, NULL, zero, G);
    const double sp[3] = {1.2, 1.2, slice};
    return rph_render(150, 180, (int)(180 / slice), sp, contrast, G, 1,
                      contrast == RPH_CT ? 4.0 : 2.0, 3);
}

static void one(int contrast, double yaw, double roll, double shift, double slice)
{
    rp_volume *v = head(contrast, yaw, roll, shift, slice);
    assert_non_null(v);
    rp_align_params p;
    rp_align_defaults(&p);
    p.ct = contrast == RPH_CT;
    rp_align_result r;
    char why[256];
    assert_int_equal(rp_align_midline(v, &p, &r, why, sizeof why), 0);
    fprintf(stderr,
            "%s slice %.1f yaw %5.1f roll %4.1f shift %4.1f -> yaw %7.3f roll %7.3f offset %6.2f "
            "symmetry %.3f reliable %d %s\n",
            contrast == RPH_CT ? "CT" : "MR", slice, yaw, roll, shift, r.yaw_deg, r.roll_deg,
            r.offset_mm, r.score, r.reliable, why);
    assert_true(r.reliable);
    assert_true(fabs(r.yaw_deg - yaw) < 1.0);
    if (r.roll_estimated)
        assert_true(fabs(r.roll_deg - roll) < 1.0);
    else
        assert_true(r.roll_deg == 0 && roll == 0);
    /* aligned: a second estimate finds the midline vertical and centred */
    rp_volume *a = NULL;
    assert_int_equal(rp_align_apply(v, &r, 1, &a), 0);
    rp_align_result r2;
    assert_int_equal(rp_align_midline(a, &p, &r2, why, sizeof why), 0);
    fprintf(stderr, "   after: yaw %.3f roll %.3f offset %.2f\n", r2.yaw_deg, r2.roll_deg,
            r2.offset_mm);
    assert_true(r2.reliable);
    assert_true(fabs(r2.yaw_deg) < 1.0 && fabs(r2.roll_deg) < 1.0);
    assert_true(fabs(r2.offset_mm) < 1.0);
    uint8_t *pix = NULL;
    int w, h;
    assert_int_equal(rp_align_qc_picture(v, a, &r, &p, &pix, &w, &h), 0);
    assert_true(w > 400 && h > 200);
    free(pix);
    rp_volume_free(a);
    rp_volume_free(v);
}

static void test_ct_known_angles(void **state)
{
    (void)state;
    one(RPH_CT, 0, 0, 0, 1.5);
    one(RPH_CT, 7, 0, 5, 1.5);
    one(RPH_CT, -12, 3, -6, 1.5);
    one(RPH_CT, 20, -4, 8, 1.5);
    one(RPH_CT, -20, 0, 0, 1.5);
    /* thick slices: the turn in the axial plane only (roll is not estimated) */
    one(RPH_CT, 16, 0, 4, 5.0);
}

static void test_mr_known_angles(void **state)
{
    (void)state;
    one(RPH_T1, 15, 2, -5, 3.0);
    one(RPH_T2, -9, 0, 4, 3.0);
}

static void test_refusals(void **state)
{
    (void)state;
    rp_align_params p;
    rp_align_defaults(&p);
    rp_align_result r;
    char why[256];
    /* empty: no head */
    rp_volume *v = rp_volume_new(64, 64, 20, 1);
    p.ct = 1;
    for (size_t i = 0; i < rp_volume_nvox(v); i++)
        v->data[i] = -1000;
    assert_int_equal(rp_align_midline(v, &p, &r, why, sizeof why), 0);
    assert_false(r.reliable);
    assert_non_null(strstr(why, "no head"));
    /* noise: nothing symmetric */
    for (size_t i = 0; i < rp_volume_nvox(v); i++)
        v->data[i] = (float)(40 + 300 * rph_noise(9, i));
    assert_int_equal(rp_align_midline(v, &p, &r, why, sizeof why), 0);
    fprintf(stderr, "noise: %s\n", why);
    assert_false(r.reliable);
    assert_true(strlen(why) > 10);
    rp_volume_free(v);
    /* bad arguments */
    rp_volume *tiny = rp_volume_new(4, 4, 4, 1);
    assert_int_equal(rp_align_midline(tiny, &p, &r, why, sizeof why), RP_EINVAL);
    rp_volume_free(tiny);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ct_known_angles),
        cmocka_unit_test(test_mr_known_angles),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
