/* tests/volume/test_deferred.c — a deferred volume (volume.h: rows from an rp_vol_source)
 * resampled gives the same bytes as the float volume it stands for, whichever axis the first
 * pass runs along (x and y read the source, z materialises first), for every order; every
 * slice goes back to the source exactly once, and the source is released; materialising
 * gives the float voxels. The x and y passes run slice by slice with the same bytes as pass by
 * pass. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pipeline/volume/volume.h"

typedef struct src_state {
    const float *v; /* the float volume the source stands for */
    int nx, ny, nz;
    int *done;     /* per slice: slice_done calls */
    int *released; /* set by release */
} src_state;

static void row(void *user, int y, int z, int x0, int n, float *out)
{
    const src_state *s = user;
    assert_non_null(s->v);
    assert_true(s->done[z] == 0); /* a slice given back is never read again */
    memcpy(out, s->v + ((size_t)z * s->ny + y) * s->nx + x0, (size_t)n * sizeof *out);
}

static void slice_done(void *user, int z)
{
    src_state *s = user;
#pragma omp atomic
    s->done[z]++;
}

static void release(void *user)
{
    src_state *s = user;
    (*s->released)++;
}

static rp_volume *make(int nx, int ny, int nz, unsigned seed)
{
    rp_volume *v = rp_volume_new(nx, ny, nz, 1);
    assert_non_null(v);
    uint32_t r = seed;
    for (size_t i = 0; i < rp_volume_nvox(v); i++) {
        r = r * 1664525u + 1013904223u;
        v->data[i] = (float)((int)(r >> 20) - 2048) * 0.75f;
    }
    v->affine[0][0] = 0.7;
    v->affine[1][1] = 0.8;
    v->affine[2][2] = 2.5;
    v->affine[3][3] = 1;
    rp_volume_update_spacing(v);
    return v;
}

static void one(const double sp[3], int order)
{
    const int nx = 37, ny = 29, nz = 11;
    rp_volume *ref = make(nx, ny, nz, 7);
    rp_volume *keep = rp_volume_clone(ref);
    int done[11] = {0}, released = 0;
    src_state st = {
        .v = keep->data, .nx = nx, .ny = ny, .nz = nz, .done = done, .released = &released};
    rp_vol_source *src = calloc(1, sizeof *src);
    assert_non_null(src);
    *src = (rp_vol_source){.row = row, .slice_done = slice_done, .release = release, .user = &st};
    rp_volume *d = rp_volume_new_deferred(nx, ny, nz, src);
    assert_non_null(d);
    assert_null(d->data);
    memcpy(d->affine, ref->affine, sizeof d->affine);
    rp_volume_update_spacing(d);
    const int ord[3] = {order, order, order};
    assert_int_equal(rp_resample_volume(&ref, sp, ord), 0);
    assert_int_equal(rp_resample_volume(&d, sp, ord), 0);
    assert_non_null(d->data);
    assert_null(d->src);
    assert_memory_equal(d->dim, ref->dim, sizeof d->dim);
    assert_memory_equal(d->affine, ref->affine, sizeof d->affine);
    assert_memory_equal(d->data, ref->data, rp_volume_nvox(ref) * sizeof(float));
    assert_int_equal(released, 1);
    for (int z = 0; z < nz; z++)
        assert_int_equal(done[z], 1); /* materialising gives them back too */
    rp_volume_free(ref);
    rp_volume_free(d);
    rp_volume_free(keep);
}

static void test_first_pass_x(void **state)
{
    (void)state;
    const double sp[3] = {1.0, 1.0, 1.0}; /* x and y shrink (x first), z grows */
    one(sp, RP_INTERP_BSPLINE3);
    one(sp, RP_INTERP_LINEAR);
    one(sp, RP_INTERP_NEAREST);
}

static void test_first_pass_y(void **state)
{
    (void)state;
    const double sp[3] = {0.5, 1.6, 2.0}; /* y shrinks most */
    one(sp, RP_INTERP_BSPLINE3);
    one(sp, RP_INTERP_LINEAR);
}

static void test_first_pass_z_materialises(void **state)
{
    (void)state;
    const double sp[3] = {0.7, 0.8, 6.0}; /* z shrinks, x and y nearest identity */
    one(sp, RP_INTERP_BSPLINE3);
    one(sp, RP_INTERP_NEAREST);
}

static void test_materialize(void **state)
{
    (void)state;
    rp_volume *ref = make(13, 9, 5, 3);
    int done[5] = {0}, released = 0;
    src_state st = {
        .v = ref->data, .nx = 13, .ny = 9, .nz = 5, .done = done, .released = &released};
    rp_vol_source *src = calloc(1, sizeof *src);
    assert_non_null(src);
    *src = (rp_vol_source){.row = row, .slice_done = slice_done, .release = release, .user = &st};
    rp_volume *d = rp_volume_new_deferred(13, 9, 5, src);
    assert_non_null(d);
    assert_int_equal(rp_volume_materialize(d), 0);
    assert_memory_equal(d->data, ref->data, rp_volume_nvox(ref) * sizeof(float));
    assert_int_equal(released, 1);
    rp_volume_free(d);
    /* freeing a deferred volume releases its source */
    released = 0;
    memset(done, 0, sizeof done);
    src = calloc(1, sizeof *src);
    assert_non_null(src);
    *src = (rp_vol_source){.row = row, .release = release, .user = &st};
    d = rp_volume_new_deferred(13, 9, 5, src);
    rp_volume_free(d);
    assert_int_equal(released, 1);
    rp_volume_free(ref);
}

/* The x and y passes run slice by slice (pass_xy) for one channel; several channels go pass by
 * pass over whole volumes. Both must give the same bytes: in place (the slice shrinks, in
 * rounds; or keeps its size, all slices at once), into a new buffer (it grows), and as the
 * last pass (z unchanged). */
static void fused_vs_separate_dims(int nx, int ny, int nz, const double sp[3], int order,
                                   int order_z)
{
    rp_volume *one = make(nx, ny, nz, 11);
    rp_volume *two = rp_volume_new(nx, ny, nz, 2);
    assert_non_null(two);
    const size_t nv = rp_volume_nvox(one);
    memcpy(two->data, one->data, nv * sizeof(float));
    memcpy(two->data + nv, one->data, nv * sizeof(float));
    memcpy(two->affine, one->affine, sizeof two->affine);
    rp_volume_update_spacing(two);
    const int ord[3] = {order, order, order_z};
    rp_vstats st;
    assert_int_equal(rp_resample_volume_stats(&one, sp, ord, &st), 0);
    assert_int_equal(rp_resample_volume(&two, sp, ord), 0);
    assert_memory_equal(one->dim, two->dim, 3 * sizeof(int));
    assert_memory_equal(one->data, two->data, rp_volume_nvox(one) * sizeof(float));
    /* the statistics of the result, whichever pass measured them */
    assert_int_equal(st.n, rp_volume_nvox(one));
    float lo = one->data[0], hi = one->data[0];
    for (size_t i = 0; i < rp_volume_nvox(one); i++) {
        lo = one->data[i] < lo ? one->data[i] : lo;
        hi = one->data[i] > hi ? one->data[i] : hi;
    }
    assert_true(st.lo == lo && st.hi == hi);
    rp_volume_free(one);
    rp_volume_free(two);
}

static void fused_vs_separate(const double sp[3], int order, int order_z)
{
    fused_vs_separate_dims(37, 29, 23, sp, order, order_z);
}

static void test_xy_per_slice(void **state)
{
    (void)state;
    /* spacing 0.7 x 0.8 x 2.5: x changes relatively less than y, so it goes first */
    const double shrink[3] = {1.0, 1.1, 1.0}, grow[3] = {0.6, 0.5, 1.0},
                 last[3] = {1.0, 1.1, 2.5};
    for (int o = 1; o <= 3; o += 2) {
        fused_vs_separate(shrink, o, o);
        fused_vs_separate(grow, o, o);
        fused_vs_separate(last, o, RP_INTERP_NEAREST); /* z untouched: x+y is the last pass */
        /* 40 x 32 at 0.7 x 0.8 mm -> 32 x 40: the slice keeps its size, all slices at once */
        const double same[3] = {0.875, 0.64, 1.0};
        fused_vs_separate_dims(40, 32, 23, same, o, o);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_pass_x),
        cmocka_unit_test(test_first_pass_y),
        cmocka_unit_test(test_first_pass_z_materialises),
        cmocka_unit_test(test_materialize),
        cmocka_unit_test(test_xy_per_slice),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
