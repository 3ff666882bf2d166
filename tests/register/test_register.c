/* tests/register/test_register.c — rigid registration on analytic phantom pairs with known
 * transforms (T1-like fixed, T2-like moving on another grid: different contrast, spacing and
 * slice thickness), 9 DOF with scaling, determinism, and bad input. */
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
#include "pipeline/register/register.h"
#include "tests/register/reg_phantom.h"

static rp_volume *g_fixed; /* T1, 1.5 mm isotropic */

static int setup(void **state)
{
    (void)state;
    const double sp[3] = {1.5, 1.5, 1.5};
    g_fixed = rph_render(112, 132, 116, sp, RPH_T1, NULL, 0, 2.0, 11);
    return g_fixed ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    rp_volume_free(g_fixed);
    return 0;
}

/* Rotation angle (deg) of Ra·Rb^T and the largest displacement difference (mm) of the two
 * transforms over a box of brain points. */
static void compare(const double A[4][4], const double B[4][4], double *ang, double *dmax)
{
    double tr = 0;
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 3; k++)
            tr += A[i][k] * B[i][k];
    double c = (tr - 1) / 2;
    *ang = acos(c > 1 ? 1 : c < -1 ? -1 : c) * 180 / M_PI;
    *dmax = 0;
    for (int sx = -1; sx <= 1; sx++)
        for (int sy = -1; sy <= 1; sy++)
            for (int sz = -1; sz <= 1; sz++) {
                double p[3] = {55.0 * sx, 70.0 * sy, 60.0 * sz}, d2 = 0;
                for (int r = 0; r < 3; r++) {
                    double a = A[r][3], b = B[r][3];
                    for (int k = 0; k < 3; k++) {
                        a += A[r][k] * p[k];
                        b += B[r][k] * p[k];
                    }
                    d2 += (a - b) * (a - b);
                }
                *dmax = fmax(*dmax, sqrt(d2));
            }
}

static void run_case(const double rot[3], const double tr[3], const double scale[3], int dof,
                     double *ang, double *dmax)
{
    double G[4][4];
    const double zero[3] = {0, 0, 0};
    rp_reg_compose(rot, tr, scale, zero, G);
    const double sp[3] = {2.0, 2.0, 3.0};
    rp_volume *mv = rph_render(88, 104, 60, sp, RPH_T2, G, 0, 3.0, 23);
    assert_non_null(mv);
    rp_reg_params p;
    rp_reg_defaults(&p);
    p.dof = dof;
    rp_reg_result r;
    char err[256];
    int rc = rp_register_rigid(g_fixed, NULL, mv, &p, &r, err, sizeof err);
    if (rc)
        fprintf(stderr, "register failed: %s\n", err);
    assert_int_equal(rc, 0);
    compare(r.matrix, G, ang, dmax);
    fprintf(stderr,
            "truth rot %.1f %.1f %.1f tr %.1f %.1f %.1f -> rot %.3f %.3f %.3f tr %.3f %.3f %.3f "
            "scale %.4f %.4f %.4f | err %.3f deg %.3f mm | MI %.3f->%.3f moved %.1f mm | it "
            "%d/%d/%d | %.2f s\n",
            rot[0], rot[1], rot[2], tr[0], tr[1], tr[2], r.rotation_deg[0], r.rotation_deg[1],
            r.rotation_deg[2], r.translation_mm[0], r.translation_mm[1], r.translation_mm[2],
            r.scale[0], r.scale[1], r.scale[2], *ang, *dmax, r.mi_initial, r.mi_final,
            r.max_displacement_mm, r.iterations[0], r.iterations[1], r.iterations[2], r.seconds);
    assert_true(r.mi_final > r.mi_initial || (*ang < 0.1 && *dmax < 0.2));
    rp_volume_free(mv);
}

static void test_rigid_known_transforms(void **state)
{
    (void)state;
    const double cases[][6] = {
        {3, -2, 5, 4, -3, 2},
        {10, 0, 0, 0, 10, 0},
        {0, -10, 0, -10, 0, 0},
        {-6, 8, -10, -5, 4, 6},
        {0, 0, 0, 0, 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double ang, dmax;
        run_case(cases[i], cases[i] + 3, NULL, 6, &ang, &dmax);
        assert_true(ang < 0.5);
        assert_true(dmax < 0.5);
    }
}

static void test_scaling_9dof(void **state)
{
    (void)state;
    const double rot[3] = {4, -3, 6}, tr[3] = {3, 5, -4}, sc[3] = {1.04, 0.97, 1.02};
    double ang, dmax;
    run_case(rot, tr, sc, 9, &ang, &dmax);
    assert_true(ang < 0.5);
    assert_true(dmax < 0.5);
}

static void test_deterministic_and_resample(void **state)
{
    (void)state;
    const double rot[3] = {2, 1, -3}, tr[3] = {1, -2, 3}, zero[3] = {0, 0, 0};
    double G[4][4];
    rp_reg_compose(rot, tr, NULL, zero, G);
    const double sp[3] = {2.0, 2.0, 3.0};
    rp_volume *mv = rph_render(88, 104, 60, sp, RPH_T2, G, 0, 3.0, 23);
    rp_reg_result a, b;
    assert_int_equal(rp_register_rigid(g_fixed, NULL, mv, NULL, &a, NULL, 0), 0);
    assert_int_equal(rp_register_rigid(g_fixed, NULL, mv, NULL, &b, NULL, 0), 0);
    assert_memory_equal(a.matrix, b.matrix, sizeof a.matrix);
    /* the moved volume on the fixed grid; MI at the result beats MI at the identity */
    rp_volume *moved = NULL, *before = NULL;
    double I[4][4];
    rp_mat4_identity(I);
    assert_int_equal(rp_register_resample(mv, g_fixed, a.matrix, 1, &moved), 0);
    assert_int_equal(rp_register_resample(mv, g_fixed, I, 1, &before), 0);
    assert_int_equal(moved->dim[0], g_fixed->dim[0]);
    double mi0, mi1;
    assert_int_equal(rp_register_mi(g_fixed, NULL, mv, I, 32, &mi0), 0);
    assert_int_equal(rp_register_mi(g_fixed, NULL, mv, a.matrix, 32, &mi1), 0);
    assert_true(mi1 > mi0);
    /* checkerboard picture, two rows */
    const rp_volume *rows[2] = {before, moved};
    uint8_t *pix = NULL;
    int w = 0, h = 0;
    assert_int_equal(rp_reg_checkerboard(g_fixed, rows, 2, 16, &pix, &w, &h), 0);
    assert_true(w > 300 && h > 200);
    size_t lit = 0;
    for (size_t i = 0; i < (size_t)w * h; i++)
        lit += pix[i] > 40;
    assert_true(lit > (size_t)w * h / 10);
    free(pix);
    /* ITK text: LPS flips the x and y translation signs */
    char txt[1024];
    assert_int_equal(rp_reg_itk_text(a.matrix, txt, sizeof txt), 0);
    assert_non_null(strstr(txt, "AffineTransform_double_3_3"));
    assert_int_equal(rp_reg_itk_text(a.matrix, txt, 20), RP_EINVAL);
    rp_volume_free(moved);
    rp_volume_free(before);
    rp_volume_free(mv);
}

static void test_bad_input(void **state)
{
    (void)state;
    rp_reg_result r;
    char err[256];
    rp_volume *tiny = rp_volume_new(3, 40, 40, 1);
    assert_int_equal(rp_register_rigid(g_fixed, NULL, tiny, NULL, &r, err, sizeof err),
                     RP_EINVAL);
    assert_non_null(strstr(err, "4 voxels"));
    rp_volume_free(tiny);
    /* no overlap: the moving volume is 1 m away */
    const double sp[3] = {2.0, 2.0, 3.0};
    rp_volume *far = rph_render(40, 40, 20, sp, RPH_T2, NULL, 0, 0, 1);
    far->affine[0][3] += 1000;
    assert_int_equal(rp_register_rigid(g_fixed, NULL, far, NULL, &r, err, sizeof err), RP_EGEOM);
    assert_non_null(strstr(err, "overlap"));
    /* a mask on another grid */
    rp_mask *m = rp_mask_new(10, 10, 10, "x");
    assert_int_equal(rp_register_rigid(g_fixed, m, far, NULL, &r, err, sizeof err), RP_EINVAL);
    rp_mask_free(m);
    rp_reg_params p;
    rp_reg_defaults(&p);
    p.dof = 7;
    assert_int_equal(rp_register_rigid(g_fixed, NULL, far, &p, &r, err, sizeof err), RP_EINVAL);
    /* a flat fixed volume has no foreground worth registering */
    rp_volume *flat = rp_volume_new(20, 20, 20, 1);
    assert_int_not_equal(rp_register_rigid(flat, NULL, far, NULL, &r, err, sizeof err), 0);
    rp_volume_free(flat);
    rp_volume_free(far);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rigid_known_transforms),
        cmocka_unit_test(test_scaling_9dof),
        cmocka_unit_test(test_deterministic_and_resample),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
