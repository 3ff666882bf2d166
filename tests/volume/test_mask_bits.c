/* tests/volume/test_mask_bits.c — masks packed in bits (rp_mask.bits, volume.h): packing and
 * unpacking give back the bytes, counts, single voxels and byte ranges (any offset and length,
 * across rows) read the same in both forms, empty ranges are found from the bits, and
 * nearest-neighbour resampling of a packed mask gives the voxels of the byte one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pipeline/volume/volume.h"

static rp_mask *random_mask(int nx, int ny, int nz, unsigned seed)
{
    rp_mask *m = rp_mask_new(nx, ny, nz, "t");
    assert_non_null(m);
    size_t n = (size_t)nx * ny * nz;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        /* runs and speckle, and whole empty rows */
        size_t row = i / (size_t)nx;
        m->data[i] = (row % 7 == 3) ? 0 : (uint8_t)(((seed >> 16) % 5) < 2);
    }
    return m;
}

static void check_forms(int nx, int ny, int nz)
{
    rp_mask *a = random_mask(nx, ny, nz, 11u + (unsigned)nx);
    size_t n = (size_t)nx * ny * nz;
    uint8_t *want = malloc(n);
    memcpy(want, a->data, n);
    size_t cnt = rp_mask_count(a);
    assert_int_equal(rp_mask_pack(a), 0);
    assert_null(a->data);
    assert_non_null(a->bits);
    assert_int_equal(a->wpr, (nx + 63) / 64);
    assert_int_equal(rp_mask_count(a), cnt);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(rp_mask_at(a, i), want[i]);
    /* ranges as a writer's blocks cut them: odd offsets and lengths, across rows */
    uint8_t *buf = malloc(n + 1);
    const size_t starts[] = {0, 1, 7, 63, 64, 65, (size_t)nx - 1, (size_t)nx + 3, n / 2 + 5};
    for (size_t k = 0; k < sizeof starts / sizeof starts[0]; k++) {
        size_t s = starts[k] % n, l = n - s < 3 * (size_t)nx + 17 ? n - s : 3 * (size_t)nx + 17;
        memset(buf, 0xA5, n + 1);
        rp_mask_get_bytes(a, s, l, buf);
        assert_memory_equal(buf, want + s, l);
        assert_int_equal(buf[l], 0xA5);
    }
    /* empty ranges from the bits: every short range (inside a row, ending at a word edge,
     * across rows) agrees with the bytes */
    for (size_t s = 0; s < n; s += 5)
        for (size_t l = 1; l <= 2 * (size_t)nx + 3 && s + l <= n; l += 1 + l / 3) {
            int empty = memchr(want + s, 1, l) == NULL;
            assert_int_equal(rp_mask_range_empty(a, s, l), empty);
        }
    /* nearest resampling: packed and byte forms agree */
    rp_mask *b = random_mask(nx, ny, nz, 11u + (unsigned)nx);
    const int nd[3] = {nx * 3 / 2 + 1, ny * 2 / 3 + 1, nz * 5 / 2};
    const double sc[3] = {(double)nx / nd[0], (double)ny / nd[1], 0.4};
    rp_mask *pa = a;
    assert_int_equal(rp_resample_mask(&pa, nd, sc), 0);
    assert_int_equal(rp_resample_mask(&b, nd, sc), 0);
    assert_null(pa->data);
    size_t n2 = (size_t)nd[0] * nd[1] * nd[2];
    for (size_t i = 0; i < n2; i++)
        assert_int_equal(rp_mask_at(pa, i), b->data[i]);
    assert_memory_equal(pa->affine, b->affine, sizeof pa->affine);
    assert_int_equal(rp_mask_unpack(pa), 0);
    assert_null(pa->bits);
    assert_memory_equal(pa->data, b->data, n2);
    free(buf);
    free(want);
    rp_mask_free(pa);
    rp_mask_free(b);
}

static void test_pack_unpack_ranges(void **state)
{
    (void)state;
    check_forms(67, 13, 5);  /* partial word */
    check_forms(128, 9, 4);  /* whole words */
    check_forms(200, 11, 3); /* several words, the last partial */
    check_forms(1, 5, 2);    /* one voxel per row */
}

static void test_new_bits_and_noops(void **state)
{
    (void)state;
    rp_mask *m = rp_mask_new_bits(70, 3, 2, "body");
    assert_non_null(m);
    assert_null(m->data);
    assert_string_equal(m->name, "body");
    assert_int_equal(rp_mask_count(m), 0);
    m->bits[1] |= 1ull << 5; /* x = 69, row 0 */
    assert_int_equal(rp_mask_at(m, 69), 1);
    assert_int_equal(rp_mask_count(m), 1);
    assert_int_equal(rp_mask_pack(m), 0); /* already packed */
    assert_int_equal(rp_mask_unpack(m), 0);
    assert_int_equal(rp_mask_unpack(m), 0); /* already bytes */
    assert_int_equal(m->data[69], 1);
    assert_int_equal(rp_mask_count(m), 1);
    rp_mask_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pack_unpack_ranges),
        cmocka_unit_test(test_new_bits_and_noops),
    };
    return cmocka_run_group_tests(tests, 0, 0);
}
