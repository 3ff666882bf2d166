/* tests/volume/test_morph.c — binary morphology, hole filling and connected components
 * against scipy.ndimage on the same random masks. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "pipeline/volume/volume.h"
#include "tests/volume/ref_util.h"

/* blobby random mask: thresholded smoothed noise, so components, holes and cavities occur */
static rp_volume *random_mask(int nx, int ny, int nz, double level)
{
    rp_volume *v = rp_volume_new(nx, ny, nz, 1);
    assert_non_null(v);
    size_t n = rp_volume_nvox(v);
    for (size_t i = 0; i < n; i++)
        v->data[i] = (float)rnd_normal();
    double sig[3] = {1.5, 1.5, 1.0};
    assert_int_equal(rp_gaussian_3d(v->data, v->dim, sig), 0);
    for (size_t i = 0; i < n; i++)
        v->data[i] = v->data[i] > level ? 1.0f : 0.0f;
    return v;
}

static uint8_t *to_u8(const rp_volume *v)
{
    size_t n = rp_volume_nvox(v);
    uint8_t *m = malloc(n);
    for (size_t i = 0; i < n; i++)
        m[i] = v->data[i] > 0.5f;
    return m;
}

static size_t mismatches(const uint8_t *m, const float *ref, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += m[i] != (ref[i] > 0.5f);
    return bad;
}

static int cmp_desc(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x < y) - (x > y);
}

static void test_components_vs_scipy(void **state)
{
    (void)state;
    for (int trial = 0; trial < 3; trial++) {
        rp_volume *v = random_mask(47 + trial * 13, 39, 23 + trial, 0.05 * trial);
        uint8_t *m = to_u8(v);
        int rd[3];
        float *ref = ref_run("label", v, "", rd);
        assert_non_null(ref);
        rp_cc *cc;
        assert_int_equal(rp_cc_label(m, v->dim, &cc), 0);
        int nc = rp_cc_count(cc);
        int64_t *sizes = malloc(((size_t)nc + 1) * sizeof *sizes);
        int64_t total = 0;
        for (int c = 0; c < nc; c++) {
            sizes[c] = rp_cc_get(cc, c)->voxels;
            total += sizes[c];
        }
        qsort(sizes, (size_t)nc, sizeof *sizes, cmp_desc);
        print_message("trial %d: %d components (scipy %d), largest %lld\n", trial, nc, rd[0],
                      (long long)(nc ? sizes[0] : 0));
        assert_int_equal(nc, rd[0]);
        for (int c = 0; c < nc; c++)
            assert_int_equal(sizes[c], (int64_t)ref[c]);
        size_t ones = 0;
        for (size_t i = 0; i < rp_volume_nvox(v); i++)
            ones += m[i];
        assert_int_equal(total, (int64_t)ones);
        /* painting every component back reproduces the mask */
        uint8_t *keep = malloc((size_t)nc + 1), *out = calloc(rp_volume_nvox(v), 1);
        memset(keep, 1, (size_t)nc + 1);
        rp_cc_paint(cc, keep, out, 1);
        assert_memory_equal(out, m, rp_volume_nvox(v));
        free(keep);
        free(out);
        free(sizes);
        rp_cc_free(cc);
        free(ref);
        free(m);
        rp_volume_free(v);
    }
}

static void test_fill_and_dilate_vs_scipy(void **state)
{
    (void)state;
    rp_volume *v = random_mask(50, 44, 30, -0.1);
    size_t n = rp_volume_nvox(v);
    int rd[3];
    uint8_t *m = to_u8(v);
    float *ref = ref_run("fill3d", v, "", rd);
    assert_int_equal(rp_morph_fill_holes_3d(m, v->dim), 0);
    size_t bad = mismatches(m, ref, n);
    print_message("fill 3-D: %zu mismatches\n", bad);
    assert_int_equal(bad, 0);
    free(ref);
    free(m);

    m = to_u8(v);
    ref = ref_run("fill2d", v, "", rd);
    assert_int_equal(rp_morph_fill_holes_2d(m, v->dim, 2), 0);
    assert_int_equal(mismatches(m, ref, n), 0);
    free(ref);
    free(m);

    for (int r = 1; r <= 2; r++) {
        m = to_u8(v);
        char arg[8];
        snprintf(arg, sizeof arg, "%d", r);
        ref = ref_run("dilate", v, arg, rd);
        int rr[3] = {r, r, r};
        assert_int_equal(rp_morph_dilate(m, v->dim, rr), 0);
        assert_int_equal(mismatches(m, ref, n), 0);
        free(ref);
        free(m);
    }
    /* erosion with the outside as foreground: erode(m) == not dilate(not m) */
    m = to_u8(v);
    uint8_t *c = malloc(n);
    for (size_t i = 0; i < n; i++)
        c[i] = !m[i];
    int r1[3] = {1, 1, 1};
    rp_morph_erode(m, v->dim, r1);
    rp_morph_dilate(c, v->dim, r1);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(m[i], !c[i]);
    free(c);
    free(m);
    rp_volume_free(v);
}

static void test_fill_max_area(void **state)
{
    (void)state;
    /* one slice: a ring with a 3x3 hole and a 10x10 hole */
    int dim[3] = {30, 20, 1};
    uint8_t m[600] = {0};
    for (int y = 2; y < 17; y++)
        for (int x = 2; x < 28; x++)
            m[y * 30 + x] = 1;
    for (int y = 5; y < 8; y++)
        for (int x = 5; x < 8; x++)
            m[y * 30 + x] = 0;
    for (int y = 5; y < 15; y++)
        for (int x = 12; x < 22; x++)
            m[y * 30 + x] = 0;
    assert_int_equal(rp_morph_fill_holes_2d_max(m, dim, 2, 20), 0);
    assert_int_equal(m[6 * 30 + 6], 1);   /* small hole filled */
    assert_int_equal(m[10 * 30 + 15], 0); /* big hole kept */
    assert_int_equal(m[0], 0);
    assert_int_equal(rp_morph_fill_holes_2d_max(m, dim, 2, 0), 0);
    assert_int_equal(m[10 * 30 + 15], 1);
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
        cmocka_unit_test(test_components_vs_scipy),
        cmocka_unit_test(test_fill_and_dilate_vs_scipy),
        cmocka_unit_test(test_fill_max_area),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
