/* tests/mr/test_mr_norm.c — White Stripe and Nyúl on phantoms with known tissue classes,
 * the Nyúl model file, world-space fusion on analytic data, and the sequence matcher. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/common.h"
#include "pipeline/mr/mr.h"
#include "tests/mr/mr_phantom.h"

static const double T1[6] = {0, 500, 100, 300, 700, 1000};
static const double T2[6] = {0, 600, 100, 2000, 1100, 800};

static rp_mask *head_mask(const ph_phantom *ph)
{
    rp_mask *m = rp_mask_like(ph->clean, "head");
    size_t n = rp_volume_nvox(ph->clean);
    for (size_t i = 0; i < n; i++)
        m->data[i] = ph->label[i] >= PH_SCALP;
    return m;
}

static void check_ws(const double inten[6], rp_ws_mode mode, double scale, const char *what)
{
    ph_phantom ph;
    assert_int_equal(ph_make(&ph, 96, 96, 64, 2.0, inten, 25, 0.0, 5), 0);
    size_t n = rp_volume_nvox(ph.clean);
    for (size_t i = 0; i < n; i++)
        ph.clean->data[i] *= (float)scale;
    rp_mask *m = head_mask(&ph);
    rp_ws_result r;
    char err[256];
    assert_int_equal(rp_mr_whitestripe(ph.clean, m, mode, 0.05, &r, err, sizeof err), 0);
    double wm = ph_mean(ph.clean->data, ph.label, n, PH_WM);
    double gm = ph_mean(ph.clean->data, ph.label, n, PH_GM);
    /* White Stripe's documented target: normal-appearing WM has mean 0 in stripe units, i.e.
     * the stripe mean is the WM mean. */
    double rel = fabs(r.mu - wm) / wm;
    double z_wm = (wm - r.mu) / r.sd, z_gm = (gm - r.mu) / r.sd;
    printf("whitestripe %s x%.1f: mode %.1f stripe [%.1f, %.1f] mu %.1f (true WM %.1f, %.2f%%) "
           "sd %.2f, z(WM) %.3f z(GM) %.2f\n",
           what, scale, r.mode, r.lo, r.hi, r.mu, wm, 100 * rel, r.sd, z_wm, z_gm);
    assert_true(rel < 0.02);
    assert_true(fabs(z_wm) < 0.02 * fabs(z_gm - z_wm));
    rp_mask_free(m);
    ph_free(&ph);
}

static void test_whitestripe_t1(void **state)
{
    (void)state;
    check_ws(T1, RP_WS_LAST, 1.0, "T1");
    check_ws(T1, RP_WS_LAST, 3.7, "T1");
}

static void test_whitestripe_t2(void **state)
{
    (void)state;
    double keep = ph_wm_radius;
    ph_wm_radius = 0.72; /* WM the largest class, as in an adult brain's T2 histogram */
    check_ws(T2, RP_WS_LARGEST, 1.0, "T2");
    ph_wm_radius = keep;
}

static void remap(rp_volume *v, double a, double g, double b)
{
    size_t n = rp_volume_nvox(v);
    for (size_t i = 0; i < n; i++)
        v->data[i] = (float)(a * pow(fmax(0, v->data[i]), g) + b);
}

static void test_nyul(void **state)
{
    (void)state;
    const double tr[3][3] = {{1.0, 1.0, 0}, {2.5, 1.0, 100}, {0.04, 1.3, 30}};
    ph_phantom ph[4];
    rp_volume *vols[4];
    rp_mask *masks[4];
    for (int k = 0; k < 4; k++) {
        assert_int_equal(ph_make(&ph[k], 64, 64, 48, 3.0, T1, 25, 0.0, 100 + k), 0);
        vols[k] = ph[k].clean;
        masks[k] = head_mask(&ph[k]);
    }
    for (int k = 0; k < 3; k++)
        remap(vols[k], tr[k][0], tr[k][1], tr[k][2]);
    remap(vols[3], 0.3, 1.15, 250); /* held back: a scanner none of the training came from */

    char dir[] = "/tmp/rp_test_nyul_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/nyul.json", dir);
    rp_nyul_model m;
    rp_nyul_model_defaults(&m);
    char err[256];
    assert_int_equal(rp_nyul_fit((const rp_volume *const *)vols, (const rp_mask *const *)masks, 3,
                                 &m, path, err, sizeof err),
                     0);
    assert_true(m.standard[0] == 0.0 && fabs(m.standard[m.n - 1] - 100.0) < 1e-9);
    rp_nyul_model ld;
    assert_int_equal(rp_nyul_load(path, &ld, err, sizeof err), 0);
    assert_int_equal(ld.n, m.n);
    for (int i = 0; i < m.n; i++)
        assert_true(fabs(ld.standard[i] - m.standard[i]) < 1e-9);

    double wm_train = 0, gm_train = 0;
    for (int k = 0; k < 4; k++) {
        assert_int_equal(rp_nyul_apply(vols[k], masks[k], &ld, err, sizeof err), 0);
        double lm[RP_NYUL_MAX_LANDMARKS];
        assert_int_equal(rp_nyul_landmarks(vols[k], masks[k], &ld, lm), 0);
        double maxdev = 0;
        for (int i = 0; i < ld.n; i++)
            maxdev = fmax(maxdev, fabs(lm[i] - ld.standard[i]));
        size_t n = rp_volume_nvox(vols[k]);
        double wm = ph_mean(vols[k]->data, ph[k].label, n, PH_WM);
        double gm = ph_mean(vols[k]->data, ph[k].label, n, PH_GM);
        printf("nyul volume %d%s: landmarks off the standard by %.2g; WM %.3f GM %.3f\n", k,
               k == 3 ? " (held back)" : "", maxdev, wm, gm);
        assert_true(maxdev < 1e-3); /* every volume's landmarks land exactly on the standard */
        if (k < 3) {
            wm_train += wm / 3;
            gm_train += gm / 3;
        } else {
            assert_true(fabs(wm - wm_train) / wm_train < 0.05);
            assert_true(fabs(gm - gm_train) / gm_train < 0.05);
        }
    }
    /* a bad model file is a clear error */
    snprintf(path, sizeof path, "%s/bad.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"method\":\"nyul\",\"percentiles\":[1,99],\"standard\":[5]}", f);
    fclose(f);
    assert_int_equal(rp_nyul_load(path, &ld, err, sizeof err), RP_EPARSE);
    assert_non_null(strstr(err, "not a valid model"));
    unlink(path);
    snprintf(path, sizeof path, "%s/nyul.json", dir);
    unlink(path);
    rmdir(dir);
    for (int k = 0; k < 4; k++) {
        rp_mask_free(masks[k]);
        ph_free(&ph[k]);
    }
}

static double lin_f(const double w[3])
{
    return 3.0 + 0.5 * w[0] - 0.2 * w[1] + 0.1 * w[2];
}

static void world(const double a[4][4], double i, double j, double k, double w[3])
{
    for (int r = 0; r < 3; r++)
        w[r] = a[r][0] * i + a[r][1] * j + a[r][2] * k + a[r][3];
}

/* Trilinear interpolation reproduces a function linear in world space exactly, so the fused
 * channel must equal it at every reference voxel centre inside the source. */
static void test_fuse_analytic(void **state)
{
    (void)state;
    rp_volume *ref = rp_volume_new(40, 36, 30, 1);
    rp_volume *src = rp_volume_new(50, 50, 40, 1);
    double c = cos(0.17), s = sin(0.17);
    double ra[4][4] = {{2, 0, 0, -40}, {0, 2, 0, -36}, {0, 0, 3, -45}, {0, 0, 0, 1}};
    double sa[4][4] = {
        {1.5 * c, -1.5 * s, 0, -30}, {1.5 * s, 1.5 * c, 0, -50}, {0, 0, 1.8, -30}, {0, 0, 0, 1}};
    memcpy(ref->affine, ra, sizeof ra);
    memcpy(src->affine, sa, sizeof sa);
    rp_volume_update_spacing(ref);
    rp_volume_update_spacing(src);
    for (int k = 0; k < 40; k++)
        for (int j = 0; j < 50; j++)
            for (int i = 0; i < 50; i++) {
                double w[3];
                world(sa, i, j, k, w);
                src->data[i + 50 * (j + 50 * k)] = (float)lin_f(w);
            }
    for (size_t q = 0; q < rp_volume_nvox(ref); q++)
        ref->data[q] = 7;
    const rp_volume *in[2] = {ref, src};
    rp_volume *o = NULL;
    assert_int_equal(rp_mr_fuse(in, 2, 0, 1, &o), 0);
    assert_int_equal(o->dim[3], 2);
    assert_memory_equal(o->affine, ref->affine, sizeof ref->affine);
    double inv[4][4];
    rp_mat4_invert(sa, inv);
    size_t nv = rp_volume_nvox(o), inside = 0, outside = 0;
    double maxerr = 0;
    for (int k = 0; k < 30; k++)
        for (int j = 0; j < 36; j++)
            for (int i = 0; i < 40; i++) {
                size_t q = i + 40 * (j + 36 * k);
                assert_true(o->data[q] == 7.0f);
                double w[3], v[3];
                world(ra, i, j, k, w);
                for (int r = 0; r < 3; r++)
                    v[r] = inv[r][0] * w[0] + inv[r][1] * w[1] + inv[r][2] * w[2] + inv[r][3];
                float got = o->data[nv + q];
                int in_src = v[0] >= -1e-6 && v[1] >= -1e-6 && v[2] >= -1e-6 && v[0] <= 49 + 1e-6 &&
                             v[1] <= 49 + 1e-6 && v[2] <= 39 + 1e-6;
                if (in_src) {
                    inside++;
                    maxerr = fmax(maxerr, fabs(got - lin_f(w)));
                } else {
                    outside++;
                    assert_true(got == 0.0f);
                }
            }
    printf("fuse analytic: %zu inside, %zu outside, max error %.2g\n", inside, outside, maxerr);
    assert_true(inside > 1000 && outside > 1000);
    assert_true(maxerr < 1e-3);
    rp_volume_free(o);
    assert_int_equal(rp_mr_fuse(in, 2, 2, 1, &o), RP_EINVAL);
    assert_int_equal(rp_mr_fuse(in, 2, 0, 3, &o), RP_EINVAL);
    rp_volume_free(ref);
    rp_volume_free(src);
}

static rp_series_info info(const char *desc, double tr, double te, double ti)
{
    rp_series_info s;
    memset(&s, 0, sizeof s);
    snprintf(s.series_description, sizeof s.series_description, "%s", desc);
    snprintf(s.series_uid, sizeof s.series_uid, "1.2.3.%d", (int)tr);
    s.repetition_time = tr;
    s.echo_time = te;
    s.inversion_time = ti;
    return s;
}

static void test_seq_match(void **state)
{
    (void)state;
    rp_mr_seq_rule t1, t2, flair, bold, fmap;
    assert_int_equal(rp_mr_seq_rule_builtin("t1", &t1), 0);
    assert_int_equal(rp_mr_seq_rule_builtin("T2", &t2), 0);
    assert_int_equal(rp_mr_seq_rule_builtin("FLAIR", &flair), 0);
    assert_int_equal(rp_mr_seq_rule_builtin("bold", &bold), 0);
    assert_int_equal(rp_mr_seq_rule_builtin("fieldmap", &fmap), 0);
    assert_int_equal(rp_mr_seq_rule_builtin("T9", &t1), RP_ENOENT);
    rp_mr_seq_rule_builtin("T1", &t1);
    /* the real study's headers (mr_brain_siemens_xa30) */
    rp_series_info mprage = info("anat-T1w_acq-tfl", 1800, 2.41, 900);
    rp_series_info epi = info("func-bold_task-fa_run-1", 1000, 30, -1);
    rp_series_info gre = info("gre_field_mapping", 600, 10, -1);
    rp_series_info scout = info("AAHead_Scout_MPR_sag", 3.15, 1.37, -1);
    rp_series_info t2w = info("t2_tse_tra", 6000, 95, -1);
    rp_series_info fl = info("t2_tirm_tra_dark-fluid FLAIR", 9000, 81, 2500);
    assert_true(rp_mr_seq_match(&t1, &mprage));
    assert_false(rp_mr_seq_match(&t1, &epi));
    assert_false(rp_mr_seq_match(&t1, &scout));
    assert_true(rp_mr_seq_match(&bold, &epi));
    assert_true(rp_mr_seq_match(&fmap, &gre));
    assert_false(rp_mr_seq_match(&fmap, &mprage));
    assert_true(rp_mr_seq_match(&t2, &t2w));
    assert_false(rp_mr_seq_match(&t2, &mprage));
    assert_true(rp_mr_seq_match(&flair, &fl));
    assert_false(rp_mr_seq_match(&flair, &t2w)); /* no inversion: not a FLAIR */

    /* study-level: T1 + BOLD fused; a missing T2 is reported, not guessed */
    rp_volume *a = rp_volume_new(16, 16, 12, 1), *b = rp_volume_new(8, 8, 6, 1);
    for (int d = 0; d < 3; d++)
        b->affine[d][d] = 2.0;
    rp_volume_update_spacing(b);
    for (size_t i = 0; i < rp_volume_nvox(a); i++)
        a->data[i] = (float)(i % 7 == 0 ? 0 : 100 + i % 13);
    for (size_t i = 0; i < rp_volume_nvox(b); i++)
        b->data[i] = (float)(i % 5 == 0 ? 0 : 50 + i % 11);
    const rp_volume *vols[4] = {b, a, a, a};
    const rp_series_info *infos[4] = {&epi, &scout, &mprage, &gre};
    const char *want[2] = {"T1", "BOLD"};
    rp_volume *o = NULL;
    size_t chosen[2];
    char err[256] = "";
    assert_int_equal(rp_mr_fuse_study(vols, infos, 4, want, 2, 1, 1, &o, chosen, err, sizeof err),
                     0);
    assert_int_equal(chosen[0], 2);
    assert_int_equal(chosen[1], 0);
    assert_int_equal(o->dim[0], 16);
    assert_int_equal(o->dim[3], 2);
    rp_volume_free(o);
    const char *want2[2] = {"T1", "T2"};
    assert_int_equal(rp_mr_fuse_study(vols, infos, 4, want2, 2, 1, 1, &o, NULL, err, sizeof err),
                     RP_ENOENT);
    assert_string_equal(err, "fuse: missing sequence T2");
    rp_volume_free(a);
    rp_volume_free(b);
}

int main(void)
{
    rp_log_set_level(RP_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whitestripe_t1), cmocka_unit_test(test_whitestripe_t2),
        cmocka_unit_test(test_nyul),           cmocka_unit_test(test_fuse_analytic),
        cmocka_unit_test(test_seq_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
