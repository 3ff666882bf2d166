/* tests/write/test_results.c — pipeline/write/overlay.cc and sr.cc: the overlay secondary
 * capture, the TID 1500 measurement report and the mask statistics it carries.
 * Pixel-level and dciodvfy checks on real data are in tests/integration/test_results.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "pipeline/write/write.h"

static char g_tmp[256];
static char g_src[3][1024];

static void need_sources(void)
{
    const char *d = getenv("RP_SHARED_DATA");
    if (!d)
        d = "/work/shared/data";
    for (int i = 0; i < 3; i++) {
        snprintf(g_src[i], sizeof g_src[i], "%s/seg_with_source_ct/ct_3slice/%02d.dcm", d, i + 1);
        if (access(g_src[i], R_OK))
            fail_msg("shared data missing: %s (set RP_SHARED_DATA)", g_src[i]);
    }
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/rp_test_results_XXXXXX");
    return mkdtemp(g_tmp) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    if (getenv("RP_TEST_KEEP")) /* look at the files: dciodvfy, dsrdump */
        return 0;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    return system(cmd) == 0 ? 0 : -1;
}

static rp_volume *phantom(int nx, int ny, int nz)
{
    rp_volume *v = rp_volume_new(nx, ny, nz, 1);
    if (!v)
        return NULL;
    for (size_t i = 0; i < rp_volume_nvox(v); i++)
        v->data[i] = -1000.0f + (float)(i % 7);
    rp_mat4_identity(v->affine);
    v->affine[0][0] = -0.5;
    v->affine[1][1] = -0.5;
    v->affine[2][2] = 2.0;
    rp_volume_update_spacing(v);
    return v;
}

/* A box [x0,x1) x [y0,y1) x [z0,z1) of ones with value `val` in v under it. */
static void box(rp_mask *m, rp_volume *v, int x0, int x1, int y0, int y1, int z0, int z1, float val)
{
    for (int z = z0; z < z1; z++)
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++) {
                size_t i = ((size_t)z * m->dim[1] + y) * m->dim[0] + x;
                m->data[i] = 1;
                if (v)
                    v->data[i] = val;
            }
}

static int file_contains(const char *p, const char *needle)
{
    char *buf = NULL;
    size_t len = 0;
    if (rp_read_file(p, &buf, &len))
        return 0;
    size_t nl = strlen(needle);
    int found = 0;
    for (size_t i = 0; i + nl <= len && !found; i++)
        found = !memcmp(buf + i, needle, nl);
    free(buf);
    return found;
}

static void test_stats(void **state)
{
    (void)state;
    rp_volume *v = phantom(20, 20, 4);
    rp_mask *m = rp_mask_like(v, "lung");
    assert_non_null(m);
    box(m, v, 2, 6, 2, 6, 0, 2, -800.0f);     /* 32 voxels of -800 */
    box(m, v, 10, 14, 10, 14, 2, 4, -600.0f); /* 32 voxels of -600, apart: 2 components */
    rp_mask_stats s;
    assert_int_equal(rp_mask_stats_compute(m, v, &s), 0);
    assert_int_equal(s.voxels, 64);
    assert_true(fabs(s.volume_ml - 64 * 0.5 * 0.5 * 2.0 / 1000.0) < 1e-12);
    assert_int_equal(s.n_inside, 64);
    assert_true(fabs(s.mean - -700.0) < 1e-9);
    /* sample SD of 32 x -800 and 32 x -600: 100 * sqrt(64/63) */
    assert_true(fabs(s.sd - 100.0 * sqrt(64.0 / 63.0)) < 1e-6);
    assert_int_equal(s.components, 2);
    /* a mask on another grid is sampled nearest-neighbour on the source grid */
    rp_mask *half = rp_mask_new(10, 10, 4, "lung");
    assert_non_null(half);
    memcpy(half->affine, v->affine, sizeof half->affine);
    half->affine[0][0] = -1.0;
    half->affine[1][1] = -1.0;
    box(half, NULL, 2, 3, 2, 3, 0, 2, 0); /* covers source x,y 3..4 (rounding half away) */
    assert_int_equal(rp_mask_stats_compute(half, v, &s), 0);
    assert_int_equal(s.voxels, 2);
    assert_true(fabs(s.volume_ml - 2 * 2.0 / 1000.0) < 1e-12);
    assert_int_equal(s.n_inside, 8); /* each coarse voxel = 4 source voxels */
    assert_true(fabs(s.mean - -800.0) < 1e-9);
    assert_int_equal(rp_mask_stats_compute(NULL, v, &s), RP_EINVAL);
    rp_mask_free(half);
    rp_mask_free(m);
    rp_volume_free(v);
}

static void test_overlay_and_sr(void **state)
{
    (void)state;
    need_sources();
    rp_volume *v = phantom(64, 48, 3);
    rp_mask *lung = rp_mask_like(v, "lung");
    rp_mask *metal = rp_mask_like(v, "metal");
    box(lung, v, 10, 30, 10, 30, 0, 3, -850.0f);
    box(metal, v, 40, 44, 20, 24, 1, 2, 3000.0f);
    rp_mask *ms[2] = {lung, metal};
    const char *srcs[3] = {g_src[0], g_src[1], g_src[2]};
    rp_overlay_opts oo;
    memset(&oo, 0, sizeof oo);
    oo.uid_root = "1.2.826.0.1.3680043.10.1338";
    oo.caption = "not for diagnosis";
    oo.src_slice_files = srcs;
    oo.n_src_slices = 3;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/dicom", g_tmp);
    char **paths = NULL;
    size_t n = 0;
    assert_int_equal(rp_overlay_write(&oo, v, ms, 2, g_src[0], dir, &paths, &n), 0);
    assert_int_equal(n, 1);
    assert_true(file_contains(paths[0], "1.2.840.10008.5.1.4.1.1.7.4"));
    assert_true(file_contains(paths[0], "LUNG METAL MASK overlay [radprep]"));
    assert_true(file_contains(paths[0], "RGB"));
    assert_true(file_contains(paths[0], "YES"));
    rp_derived_paths_free(paths, n);
    oo.single_frame = 1;
    assert_int_equal(rp_overlay_write(&oo, v, ms, 2, g_src[0], dir, &paths, &n), 0);
    assert_int_equal(n, 3);
    assert_true(file_contains(paths[2], "1.2.840.10008.5.1.4.1.1.7\0"));
    rp_derived_paths_free(paths, n);

    rp_sr_opts so;
    memset(&so, 0, sizeof so);
    so.uid_root = oo.uid_root;
    so.values_hu = 1;
    const char *f[2] = {"Missing slices detected: 1", "Pixel padding: 12 voxels"};
    so.findings = f;
    so.n_findings = 2;
    so.src_slice_files = srcs;
    so.n_src_slices = 3;
    char sr[600];
    snprintf(sr, sizeof sr, "%s/sr.dcm", dir);
    /* masks without their SEG: refused (TID 1411 needs the referenced segment) */
    assert_int_equal(rp_sr_write(&so, ms, 2, v, g_src[0], sr), RP_EINVAL);
    assert_int_equal(access(sr, F_OK), -1);
    rp_derived_opts dopt;
    rp_derived_opts_init(&dopt);
    dopt.uid_root = oo.uid_root;
    char seg[600];
    snprintf(seg, sizeof seg, "%s/seg.dcm", dir);
    assert_int_equal(rp_derived_write_seg(&dopt, ms, 2, g_src[0], srcs, 3, seg), 0);
    so.seg_file = seg;
    assert_int_equal(rp_sr_write(&so, ms, 2, v, g_src[0], sr), 0);
    assert_true(file_contains(sr, "1.2.840.10008.5.1.4.1.1.88.22")); /* Enhanced SR */
    assert_true(file_contains(sr, "1.2.840.10008.5.1.4.1.1.66.4"));  /* the SEG, referenced */
    assert_true(file_contains(sr, "lung mask"));
    assert_true(file_contains(sr, "Missing slices detected: 1"));
    assert_true(file_contains(sr, "118565006"));
    /* lung: 20x20x3 voxels of 0.5 mm x 0.5 mm x 2 mm = 0.6 ml */
    assert_true(file_contains(sr, "0.6"));
    /* no masks: the report still carries the findings */
    assert_int_equal(rp_sr_write(&so, NULL, 0, v, g_src[0], sr), 0);
    assert_true(file_contains(sr, "Pixel padding: 12 voxels"));
    rp_mask_free(lung);
    rp_mask_free(metal);
    rp_volume_free(v);
}

static void test_errors(void **state)
{
    (void)state;
    need_sources();
    rp_volume *v = phantom(8, 8, 2);
    rp_overlay_opts oo;
    memset(&oo, 0, sizeof oo);
    char **paths = (char **)1;
    size_t n = 9;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/err", g_tmp);
    assert_int_equal(rp_overlay_write(&oo, v, NULL, 0, "/nonexistent.dcm", dir, &paths, &n),
                     RP_EPARSE);
    assert_int_equal(rp_overlay_write(NULL, v, NULL, 0, g_src[0], dir, &paths, &n), RP_EINVAL);
    assert_int_equal(rp_overlay_write(&oo, NULL, NULL, 0, g_src[0], dir, &paths, &n), RP_EINVAL);
    rp_sr_opts so;
    memset(&so, 0, sizeof so);
    char sr[600];
    snprintf(sr, sizeof sr, "%s/sr.dcm", g_tmp);
    so.seg_file = "/nonexistent-seg.dcm";
    assert_int_equal(rp_sr_write(&so, NULL, 0, v, g_src[0], sr), RP_EPARSE);
    assert_int_equal(rp_sr_write(NULL, NULL, 0, v, g_src[0], sr), RP_EINVAL);
    assert_int_equal(access(sr, F_OK), -1);
    uint8_t c0[3], c6[3];
    rp_overlay_colour(0, c0);
    rp_overlay_colour(6, c6);
    assert_memory_equal(c0, c6, 3);
    rp_volume_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats),
        cmocka_unit_test_setup_teardown(test_overlay_and_sr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
