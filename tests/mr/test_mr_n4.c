/* tests/mr/test_mr_n4.c — N4 on a brain-like phantom with a known field, lattice
 * refinement exactness, the foreground mask (the MR steps: tests/recipe/test_steps_mr_n4.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <omp.h>

#include "common/common.h"
#include "pipeline/mr/mr.h"
#include "tests/mr/mr_phantom.h"

/* T1-like: air, scalp, skull, CSF, GM, WM */
static const double T1[6] = {0, 500, 100, 300, 700, 1000};

static void n4_phantom_case(int kind, double amp, uint64_t seed)
{
    ph_phantom ph;
    ph_field_kind = kind;
    assert_int_equal(ph_make(&ph, 192, 192, 120, 1.33, T1, 25, amp, seed), 0);
    ph_field_kind = 0;
    size_t n = rp_volume_nvox(ph.biased);
    rp_mask *m = rp_mask_like(ph.biased, "foreground");
    for (size_t i = 0; i < n; i++)
        m->data[i] = ph.label[i] >= PH_SCALP;
    rp_n4_params p;
    rp_n4_defaults(&p);
    rp_volume *c = NULL, *f = NULL;
    rp_n4_report rep;
    char err[256] = "";
    assert_int_equal(rp_n4_correct(ph.biased, m, &p, &c, &f, &rep, err, sizeof err), 0);
    double corr = ph_corr(f->data, ph.logf->data, ph.label, n, PH_SCALP);
    printf("n4 phantom 192x192x120 field %s amp %.2f: corr(log field, truth) over foreground "
           "= %.4f, %.2f s, iterations %d/%d/%d/%d\n",
           kind ? "bump" : "polynomial", amp, corr, rep.seconds, rep.iterations[0],
           rep.iterations[1], rep.iterations[2], rep.iterations[3]);
    assert_true(corr >= 0.95);
    for (int lab = PH_GM; lab <= PH_WM; lab++) {
        double cc = ph_cv(ph.clean->data, ph.label, n, lab);
        double cb = ph_cv(ph.biased->data, ph.label, n, lab);
        double ca = ph_cv(c->data, ph.label, n, lab);
        printf("  label %d CV clean %.4f biased %.4f corrected %.4f (removed %.0f%% of the "
               "added CV)\n",
               lab, cc, cb, ca, 100 * (cb - ca) / (cb - cc));
        assert_true(cb - ca >= 0.5 * (cb - cc));
    }
    /* the corrected image keeps the geometric mean inside the mask: field mean is 0 there */
    double s = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (m->data[i] && ph.biased->data[i] > 0) {
            s += f->data[i];
            k++;
        }
    assert_true(fabs(s / k) < 1e-4);
    rp_volume_free(c);
    rp_volume_free(f);
    rp_mask_free(m);
    ph_free(&ph);
}

static void test_n4_phantom(void **state)
{
    (void)state;
    n4_phantom_case(0, 0.3, 42); /* smooth polynomial field, +-35% */
    n4_phantom_case(1, 0.5, 4);  /* surface-coil-like bump, x0.7..x2.2 */
}

/* Without a bias the estimated field stays nearly flat. */
static void test_n4_no_bias(void **state)
{
    (void)state;
    ph_phantom ph;
    assert_int_equal(ph_make(&ph, 128, 128, 80, 1.5, T1, 25, 0.0, 7), 0);
    size_t n = rp_volume_nvox(ph.clean);
    rp_mask *m = rp_mask_like(ph.clean, "foreground");
    for (size_t i = 0; i < n; i++)
        m->data[i] = ph.label[i] >= PH_SCALP;
    rp_n4_params p;
    rp_n4_defaults(&p);
    rp_volume *f = NULL;
    assert_int_equal(rp_n4_correct(ph.clean, m, &p, NULL, &f, NULL, NULL, 0), 0);
    double s = 0, s2 = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (m->data[i]) {
            s += f->data[i];
            s2 += (double)f->data[i] * f->data[i];
            k++;
        }
    double sd = sqrt(s2 / k - (s / k) * (s / k));
    printf("n4 unbiased phantom: log field SD %.4f\n", sd);
    assert_true(sd < 0.03);
    rp_volume_free(f);
    rp_mask_free(m);
    ph_free(&ph);
}

/* Refining the lattice must not change the spline (ITK's RefineControlPointLattice): checked
 * on a quadratic, which cubic B-splines reproduce exactly. */
static void test_lattice_refine_exact(void **state)
{
    (void)state;
    /* Control values c_k = q(k-1) of a uniform cubic B-spline (centre of c_k at knot k-1) give
     * s(u) = q(u) + q''/6 (the B-spline kernel has variance 1/3). With c_k = (k-1)^2 + 1/3,
     * s(u) = u^2 + 2/3; in the doubled parameter u' = 2u that is u'^2/4 + 2/3, whose controls
     * are c'_k = (k-1)^2/4 + 2/3 - 1/12. Constant along y and z. */
    int L[3] = {6, 4, 4};
    double phi[6 * 4 * 4];
    for (int z = 0; z < 4; z++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 6; x++)
                phi[x + 6 * (y + 4 * z)] = (x - 1.0) * (x - 1.0) + 1.0 / 3.0;
    double *out = NULL;
    int Lo[3];
    assert_int_equal(rp_n4_refine_lattice(phi, L, &out, Lo), 0);
    assert_int_equal(Lo[0], 9);
    assert_int_equal(Lo[1], 5);
    assert_int_equal(Lo[2], 5);
    for (int z = 0; z < Lo[2]; z++)
        for (int y = 0; y < Lo[1]; y++)
            for (int x = 0; x < Lo[0]; x++) {
                double want = (x - 1.0) * (x - 1.0) / 4.0 + 7.0 / 12.0;
                assert_true(fabs(out[x + Lo[0] * (y + Lo[1] * z)] - want) < 1e-12);
            }
    free(out);
    int bad[3] = {3, 4, 4};
    assert_int_equal(rp_n4_refine_lattice(phi, bad, &out, Lo), RP_EINVAL);
}

static void test_foreground_mask(void **state)
{
    (void)state;
    ph_phantom ph;
    assert_int_equal(ph_make(&ph, 96, 96, 64, 2.0, T1, 25, 0.2, 3), 0);
    size_t n = rp_volume_nvox(ph.biased);
    rp_mr_fg_params fp;
    rp_mr_fg_defaults(&fp, 1);
    rp_mask *m = NULL;
    char err[256];
    assert_int_equal(rp_mr_foreground(ph.biased, &fp, "head", &m, err, sizeof err), 0);
    assert_string_equal(m->name, "head");
    /* Dice against the true head (label >= scalp); the dark skull and CSF are inside */
    size_t a = 0, b = 0, ab = 0;
    for (size_t i = 0; i < n; i++) {
        int t = ph.label[i] >= PH_SCALP;
        a += t;
        b += m->data[i];
        ab += t && m->data[i];
    }
    double dice = 2.0 * ab / (a + b);
    printf("head mask dice vs truth %.4f\n", dice);
    assert_true(dice > 0.97);
    rp_mask_free(m);
    /* a constant image has no threshold: clear error, no crash */
    rp_volume *flat = rp_volume_new(8, 8, 8, 1);
    for (size_t i = 0; i < 512; i++)
        flat->data[i] = 5;
    assert_int_not_equal(rp_mr_foreground(flat, &fp, "head", &m, err, sizeof err), 0);
    rp_volume_free(flat);
    ph_free(&ph);
}

static void test_n4_deterministic(void **state)
{
    (void)state;
    ph_phantom ph;
    /* > 2^20 voxels, so the full-resolution loops run threaded */
    assert_int_equal(ph_make(&ph, 128, 128, 80, 1.5, T1, 25, 0.3, 21), 0);
    rp_n4_params p;
    rp_n4_defaults(&p);
    rp_mr_fg_params fp;
    rp_mr_fg_defaults(&fp, 0);
    rp_volume *c[2] = {NULL, NULL};
    rp_mask *m[2] = {NULL, NULL};
    int saved = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k ? 3 : 1);
        assert_int_equal(rp_mr_foreground(ph.biased, &fp, "foreground", &m[k], NULL, 0), 0);
        assert_int_equal(rp_n4_correct(ph.biased, m[k], &p, &c[k], NULL, NULL, NULL, 0), 0);
    }
    omp_set_num_threads(saved);
    size_t n = rp_volume_nvox(ph.biased);
    assert_memory_equal(m[0]->data, m[1]->data, n);
    assert_memory_equal(c[0]->data, c[1]->data, n * sizeof(float));
    for (int k = 0; k < 2; k++) {
        rp_volume_free(c[k]);
        rp_mask_free(m[k]);
    }
    ph_free(&ph);
}

/* Degenerate inputs get a clear error or a sane result, never a crash. */
static void test_n4_bad_inputs(void **state)
{
    (void)state;
    rp_n4_params p;
    rp_n4_defaults(&p);
    char err[256] = "";
    rp_volume *c = NULL, *f = NULL;
    /* all zero: nothing to fit */
    rp_volume *z = rp_volume_new(32, 32, 32, 1);
    assert_int_equal(rp_n4_correct(z, NULL, &p, &c, &f, NULL, err, sizeof err), RP_EINVAL);
    assert_non_null(strstr(err, "foreground"));
    /* tiny */
    rp_volume *t = rp_volume_new(3, 3, 3, 1);
    for (int i = 0; i < 27; i++)
        t->data[i] = 100;
    assert_int_equal(rp_n4_correct(t, NULL, &p, &c, &f, NULL, err, sizeof err), RP_EINVAL);
    /* mask on another grid */
    rp_mask *m = rp_mask_new(16, 16, 16, "x");
    assert_int_equal(rp_n4_correct(z, m, &p, &c, &f, NULL, err, sizeof err), RP_EINVAL);
    rp_mask_free(m);
    /* bad parameters */
    rp_n4_params bad = p;
    bad.levels = 0;
    assert_int_equal(rp_n4_correct(t, NULL, &bad, &c, &f, NULL, err, sizeof err), RP_EINVAL);
    /* a 2-D slice with a horizontal ramp and NaNs: corrected, NaNs stay NaN, no crash */
    rp_volume *s2 = rp_volume_new(128, 128, 1, 1);
    for (int y = 0; y < 128; y++)
        for (int x = 0; x < 128; x++) {
            double r = hypot(x - 64, y - 64);
            double v = r < 50 ? (r < 30 ? 1000 : 600) : 0;
            s2->data[x + 128 * y] = (float)(v * exp(0.3 * (x - 64) / 64.0));
        }
    s2->data[64 + 128 * 64] = NAN;
    assert_int_equal(rp_n4_correct(s2, NULL, &p, &c, &f, NULL, err, sizeof err), 0);
    assert_true(isnan(c->data[64 + 128 * 64]));
    double left = c->data[30 + 128 * 64], right = c->data[98 + 128 * 64];
    double left0 = s2->data[30 + 128 * 64], right0 = s2->data[98 + 128 * 64];
    printf("2-D ramp: right/left %.3f before, %.3f after\n", right0 / left0, right / left);
    assert_true(fabs(right / left - 1) < 0.5 * fabs(right0 / left0 - 1));
    rp_volume_free(c);
    rp_volume_free(f);
    rp_volume_free(s2);
    rp_volume_free(z);
    rp_volume_free(t);
}

int main(void)
{
    rp_log_set_level(RP_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lattice_refine_exact), cmocka_unit_test(test_foreground_mask),
        cmocka_unit_test(test_n4_no_bias),           cmocka_unit_test(test_n4_phantom),
        cmocka_unit_test(test_n4_bad_inputs),        cmocka_unit_test(test_n4_deterministic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
