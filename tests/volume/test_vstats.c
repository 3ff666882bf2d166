/* tests/volume/test_vstats.c — running statistics (rp_vstats in volume.h): any split into
 * blocks and any merge order gives the figures of one naive pass (extent and its counts
 * exact, NaN/Inf counted apart); the resampler's statistics of its result equal a pass over
 * that result, and are marked unmeasured where it does not measure them. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pipeline/volume/volume.h"

static void naive(const float *p, size_t n, rp_vstats *s)
{
    rp_vstats_init(s);
    for (size_t i = 0; i < n; i++) {
        s->n++;
        if (!isfinite(p[i])) {
            s->bad++;
            continue;
        }
        s->sum += p[i];
        s->sumsq += (double)p[i] * p[i];
        if (p[i] < s->lo)
            s->lo = p[i];
        if (p[i] > s->hi)
            s->hi = p[i];
    }
    for (size_t i = 0; i < n; i++) {
        s->n_lo += p[i] == s->lo;
        s->n_hi += p[i] == s->hi;
    }
}

static void assert_same(const rp_vstats *a, const rp_vstats *b)
{
    assert_true(a->lo == b->lo);
    assert_true(a->hi == b->hi);
    assert_int_equal(a->n_lo, b->n_lo);
    assert_int_equal(a->n_hi, b->n_hi);
    assert_int_equal(a->bad, b->bad);
    assert_int_equal(a->n, b->n);
    assert_true(fabs(a->sum - b->sum) <= 1e-9 * (fabs(b->sum) + 1));
    assert_true(fabs(a->sumsq - b->sumsq) <= 1e-9 * (fabs(b->sumsq) + 1));
}

static void test_blocks_and_merges(void **state)
{
    (void)state;
    const size_t n = 100003;
    float *p = malloc(n * sizeof *p);
    srand(3);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(rand() % 2001 - 1000); /* many ties at both ends */
    p[17] = NAN;
    p[50000] = INFINITY;
    p[99999] = -INFINITY;
    rp_vstats want, one, parts, rev;
    naive(p, n, &want);
    rp_vstats_init(&one);
    rp_vstats_add(&one, p, n);
    assert_same(&one, &want);
    /* uneven pieces, merged forward and backward */
    const size_t cut[] = {0, 1, 4095, 4097, 30000, 77777, n};
    rp_vstats piece[6];
    rp_vstats_init(&parts);
    rp_vstats_init(&rev);
    for (int k = 0; k < 6; k++) {
        rp_vstats_init(&piece[k]);
        rp_vstats_add(&piece[k], p + cut[k], cut[k + 1] - cut[k]);
        rp_vstats_merge(&parts, &piece[k]);
    }
    for (int k = 5; k >= 0; k--)
        rp_vstats_merge(&rev, &piece[k]);
    assert_same(&parts, &want);
    assert_same(&rev, &want);
    /* nothing finite: an empty extent, every sample bad */
    float bad[3] = {NAN, INFINITY, NAN};
    rp_vstats b;
    rp_vstats_init(&b);
    rp_vstats_add(&b, bad, 3);
    assert_true(b.lo > b.hi);
    assert_int_equal(b.bad, 3);
    assert_int_equal(b.n_lo + b.n_hi, 0);
    free(p);
}

static rp_volume *noisy(int nx, int ny, int nz, int nc, const double sp[3])
{
    rp_volume *v = rp_volume_new(nx, ny, nz, nc);
    assert_non_null(v);
    size_t n = (size_t)nx * ny * nz * nc;
    for (size_t i = 0; i < n; i++)
        v->data[i] = (float)((i * 2654435761u >> 20) % 3000) - 1024.0f;
    for (int a = 0; a < 3; a++)
        v->affine[a][a] = sp[a];
    v->affine[3][3] = 1;
    rp_volume_update_spacing(v);
    return v;
}

static void check_resample(int order, const double sp[3], const double to[3])
{
    rp_volume *v = noisy(41, 29, 17, 1, sp);
    const int ord[3] = {order, order, order};
    rp_vstats got, want;
    assert_int_equal(rp_resample_volume_stats(&v, to, ord, &got), 0);
    naive(v->data, rp_volume_nvox(v), &want);
    assert_int_equal(got.n, rp_volume_nvox(v));
    assert_same(&got, &want);
    rp_volume_free(v);
}

static void test_resample_measures_its_result(void **state)
{
    (void)state;
    const double sp[3] = {0.7, 0.8, 2.5}, one[3] = {1, 1, 1}, grow[3] = {0.5, 0.6, 1.0};
    check_resample(RP_INTERP_BSPLINE3, sp, one); /* shrinking x, y in place, z grows */
    check_resample(RP_INTERP_LINEAR, sp, one);
    check_resample(RP_INTERP_BSPLINE3, sp, grow); /* every axis grows */
    check_resample(RP_INTERP_NEAREST, sp, grow);
    /* unmeasured: two channels, or nothing to interpolate */
    rp_volume *v = noisy(9, 8, 7, 2, sp);
    const int ord[3] = {RP_INTERP_BSPLINE3, RP_INTERP_BSPLINE3, RP_INTERP_BSPLINE3};
    rp_vstats s;
    assert_int_equal(rp_resample_volume_stats(&v, one, ord, &s), 0);
    assert_int_equal(s.n, 0);
    rp_volume_free(v);
    v = noisy(9, 8, 7, 1, sp);
    const int nn[3] = {RP_INTERP_NEAREST, RP_INTERP_NEAREST, RP_INTERP_NEAREST};
    assert_int_equal(rp_resample_volume_stats(&v, sp, nn, &s), 0);
    assert_int_equal(s.n, 0);
    rp_volume_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blocks_and_merges),
        cmocka_unit_test(test_resample_measures_its_result),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
