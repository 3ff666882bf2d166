/* tests/write/test_nifti_store.c — how a float32 volume is stored: dtype parsing, the int16
 * HU grid chosen for HU-linear data (with and without known HU bounds), integers stored
 * exactly in the smallest integer type, float32 where nothing else is exact; the converted
 * file read back (zlib) gives the values within the stated error, and its HU view (a copy
 * with new scaling) has the same voxels. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <cmocka.h>

#include "common/common.h"
#include "pipeline/write/write.h"
#include "tests/volume/ref_util.h"

static void test_dtype_parse(void **state)
{
    (void)state;
    rp_dtype_spec s;
    char err[256];
    assert_int_equal(rp_dtype_parse(NULL, &s, err, sizeof err), 0);
    assert_int_equal(s.kind, RP_DTYPE_AUTO);
    assert_true(fabs(s.step_hu - 0.1) < 1e-12);
    assert_int_equal(rp_dtype_parse("int16(0.5)", &s, err, sizeof err), 0);
    assert_int_equal(s.kind, RP_DTYPE_INT16);
    assert_true(fabs(s.step_hu - 0.5) < 1e-12);
    assert_int_equal(rp_dtype_parse("Float32", &s, err, sizeof err), 0);
    assert_int_equal(s.kind, RP_DTYPE_FLOAT32);
    assert_int_equal(rp_dtype_parse("hu", &s, err, sizeof err), 0);
    assert_int_equal(s.kind, RP_DTYPE_HU);
    const char *bad[] = {"int8", "float32(1)", "int16(0)", "int16(x)", "auto(0.1", "int16 x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(rp_dtype_parse(bad[i], &s, err, sizeof err), RP_EINVAL);
        assert_non_null(strstr(err, "dtype"));
    }
}

/* Voxels of a .nii.gz written by us (zlib reads the concatenated members). */
static void *read_voxels(const char *path, size_t bytes, rp_nifti_info *h)
{
    assert_int_equal(rp_nifti_read_info(path, h), 0);
    gzFile g = gzopen(path, "rb");
    assert_non_null(g);
    uint8_t hdr[352];
    assert_int_equal(gzread(g, hdr, sizeof hdr), (int)sizeof hdr);
    void *d = malloc(bytes);
    assert_int_equal(gzread(g, d, (unsigned)bytes), (int)bytes);
    gzclose(g);
    return d;
}

static void test_store_roundtrip(void **state)
{
    (void)state;
    const int nx = 70, ny = 50, nz = 41;
    rp_volume *v = rp_volume_new(nx, ny, nz, 1);
    size_t n = rp_volume_nvox(v);
    /* normalised CT: HU in [-1200, 600] mapped to [0, 1], HU = v * 1800 - 1200 */
    for (size_t i = 0; i < n; i++)
        v->data[i] = (float)(rnd() * 0.999 + ((i % 997) == 0 ? 0.0005 : 0));
    v->data[0] = 0;
    v->data[1] = 1;
    rp_nifti_store st;
    char err[256];
    rp_dtype_spec spec;
    rp_dtype_parse("auto", &spec, err, sizeof err);
    assert_int_equal(rp_nifti_store_choose(v, &spec, 1, 1800, -1200, NULL, &st, err, sizeof err),
                     0);
    assert_int_equal(st.datatype, RP_NII_INT16);
    assert_true(fabs(st.hu_slope - 0.1) < 1e-12 && st.hu_inter == 0);
    /* HU bounds from the bookkeeping (a clip ran): the same choice without a pass */
    rp_nifti_store st2;
    const double bounds[2] = {-1200, 600};
    assert_int_equal(rp_nifti_store_choose(v, &spec, 1, 1800, -1200, bounds, &st2, err, sizeof err),
                     0);
    assert_int_equal(st2.datatype, st.datatype);
    assert_true(st2.a == st.a && st2.b == st.b && st2.scl_slope == st.scl_slope);
    char path[600];
    snprintf(path, sizeof path, "%s/store.nii.gz", ref_tmpdir());
    rp_nifti_opts o = {.gzip = 1, .block_bytes = 4099}; /* odd blocks split int16 elements */
    assert_int_equal(rp_nifti_write_volume_store(path, v, &st, &o, err, sizeof err), 0);
    rp_nifti_info h;
    int16_t *q = read_voxels(path, n * 2, &h);
    assert_int_equal(h.datatype, RP_NII_INT16);
    double worst = 0, worst_hu = 0;
    for (size_t i = 0; i < n; i++) {
        double back = q[i] * (double)h.scl_slope + h.scl_inter;
        double e = fabs(back - v->data[i]);
        double ehu = fabs(q[i] * st.hu_slope + st.hu_inter - (v->data[i] * 1800.0 - 1200));
        worst = e > worst ? e : worst;
        worst_hu = ehu > worst_hu ? ehu : worst_hu;
    }
    print_message("int16 HU grid: max error %.3g (stated %.3g), %.4f HU\n", worst, st.max_err,
                  worst_hu);
    assert_true(worst <= st.max_err);
    assert_true(worst_hu <= 0.0505);
    /* the HU view: a copy whose header scaling reads HU, voxels untouched */
    char hu_path[700];
    snprintf(hu_path, sizeof hu_path, "%s/store_hu.nii.gz", ref_tmpdir());
    assert_int_equal(
        rp_nifti_copy_rescaled(path, hu_path, st.hu_slope, st.hu_inter, err, sizeof err), 0);
    rp_nifti_info h2;
    int16_t *q2 = read_voxels(hu_path, n * 2, &h2);
    assert_true(fabsf(h2.scl_slope - 0.1f) < 1e-7f && h2.scl_inter == 0);
    assert_memory_equal(q, q2, n * 2);
    assert_int_equal(h2.datatype, RP_NII_INT16);
    free(q2);
    free(q);
    /* integers: stored exactly in the smallest integer type */
    for (size_t i = 0; i < n; i++)
        v->data[i] = (float)((long)(i % 4000) - 1024);
    assert_int_equal(rp_nifti_store_choose(v, &spec, 1, 1, 0, NULL, &st, err, sizeof err), 0);
    assert_int_equal(st.datatype, RP_NII_INT16);
    assert_true(st.exact && st.scl_slope == 1 && st.scl_inter == 0);
    assert_int_equal(rp_nifti_write_volume_store(path, v, &st, &o, err, sizeof err), 0);
    q = read_voxels(path, n * 2, &h);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(q[i], (int)v->data[i]);
    free(q);
    for (size_t i = 0; i < n; i++)
        v->data[i] = (float)(i % 2);
    assert_int_equal(rp_nifti_store_choose(v, &spec, 0, 0, 0, NULL, &st, err, sizeof err), 0);
    assert_int_equal(st.datatype, RP_NII_UINT8);
    /* neither integer nor HU: float32; dtype hu without HU: an error */
    v->data[3] = 0.25f;
    assert_int_equal(rp_nifti_store_choose(v, &spec, 0, 0, 0, NULL, &st, err, sizeof err), 0);
    assert_int_equal(st.datatype, RP_NII_FLOAT32);
    rp_dtype_parse("hu", &spec, err, sizeof err);
    assert_int_equal(rp_nifti_store_choose(v, &spec, 0, 0, 0, NULL, &st, err, sizeof err),
                     RP_EINVAL);
    /* a HU range wider than int16 at 0.1 HU: auto falls back to float32, int16 coarsens */
    for (size_t i = 0; i < n; i++)
        v->data[i] = (float)(-1024.5 + (i % 3) * 9000.25);
    rp_dtype_parse("auto", &spec, err, sizeof err);
    assert_int_equal(rp_nifti_store_choose(v, &spec, 1, 1, 0, NULL, &st, err, sizeof err), 0);
    assert_int_equal(st.datatype, RP_NII_FLOAT32);
    rp_dtype_parse("int16", &spec, err, sizeof err);
    assert_int_equal(rp_nifti_store_choose(v, &spec, 1, 1, 0, NULL, &st, err, sizeof err), 0);
    assert_int_equal(st.datatype, RP_NII_INT16);
    assert_true(st.hu_slope >= 0.2 && st.hu_slope <= 0.4);
    rp_volume_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtype_parse),
        cmocka_unit_test(test_store_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
