/* tests/write/test_bvec.c — the diffusion table (pipeline/write/bvec.c) against dcm2niix's
 * conventions worked by hand: patient-frame directions projected on the row, column and
 * row x column axes with y negated (rows written bottom-up), y negated again when the slice
 * axis runs against row x column; Philips' derived trace volume dropped; GE's image-frame
 * directions and its b-value rescaling; UIH's image-frame directions; no table for 3-D or
 * for series with one b-value and direction; the files as written. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/common.h"
#include "pipeline/write/write.h"

#define NV 4

static rp_dcm_info g_info[NV];
static rp_dcm_frame g_frame[NV];
static const rp_dcm_info *g_infos[NV];
static rp_slice_ref g_refs[NV];

/* One slice per volume, volume t from file t; row/column cosines r, c; slice axis along
 * +-(r x c) (dir). */
static void make(rp_stack *st, const char *vendor, const double r[3], const double c[3], int dir,
                 int nt)
{
    memset(st, 0, sizeof *st);
    memset(g_info, 0, sizeof g_info);
    memset(g_frame, 0, sizeof g_frame);
    for (int t = 0; t < NV; t++) {
        rp_strlcpy(g_info[t].manufacturer, vendor, sizeof g_info[t].manufacturer);
        rp_strlcpy(g_info[t].modality, "MR", sizeof g_info[t].modality);
        rp_strlcpy(g_info[t].inplane_pe_dir, "COL", sizeof g_info[t].inplane_pe_dir);
        g_info[t].n_frames = 1;
        g_info[t].ge_diffusion_dirs = -1;
        g_info[t].frame = &g_frame[t];
        g_frame[t].b_value = NAN;
        g_frame[t].b_vec[0] = g_frame[t].b_vec[1] = g_frame[t].b_vec[2] = NAN;
        g_infos[t] = &g_info[t];
        g_refs[t].file = t;
        g_refs[t].tile = -1;
    }
    st->nx = st->ny = 4;
    st->nz = st->nz_acquired = 1;
    st->nt = nt;
    st->n_refs = nt;
    st->slice = g_refs;
    st->has_geometry = 1;
    st->ref = &g_info[0];
    memcpy(st->iop, r, 3 * sizeof(double));
    memcpy(st->iop + 3, c, 3 * sizeof(double));
    double s[3] = {r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]};
    for (int k = 0; k < 3; k++)
        st->normal[k] = dir * s[k];
    /* third column of the RAS affine: the slice axis with x, y negated */
    st->affine[0][2] = -dir * s[0];
    st->affine[1][2] = -dir * s[1];
    st->affine[2][2] = dir * s[2];
}

static void set_vol(int t, double b, double x, double y, double z)
{
    g_frame[t].b_value = b;
    g_frame[t].b_vec[0] = x;
    g_frame[t].b_vec[1] = y;
    g_frame[t].b_vec[2] = z;
}

static void expect_vec(const double *v, double x, double y, double z)
{
    assert_true(fabs(v[0] - x) < 1e-6);
    assert_true(fabs(v[1] - y) < 1e-6);
    assert_true(fabs(v[2] - z) < 1e-6);
}

/* Axial: x = row (LR), y = -(column) (rows bottom-up), z = r x c. Philips' trace volume
 * (b > 0, no direction) is dropped from the table and the stack. */
static void test_patient_frame_and_philips_trace(void **state)
{
    (void)state;
    rp_stack st;
    const double r[3] = {1, 0, 0}, c[3] = {0, 1, 0};
    make(&st, "Philips Medical Systems", r, c, 1, 4);
    cJSON *qc = cJSON_CreateObject();
    st.qc = qc;
    set_vol(0, 0, 0, 0, 0);
    set_vol(1, 1000, 0.6, 0.8, 0);
    set_vol(2, 1000, 0, 0, 1);
    set_vol(3, 1000, 0, 0, 0); /* derived isotropic */
    rp_dwi d;
    assert_int_equal(rp_dwi_build(&st, g_infos, &d), 0);
    assert_int_equal(d.n, 3);
    assert_int_equal(d.n_dropped, 1);
    assert_int_equal(d.drop[3], 1);
    assert_true(d.bval[0] == 0 && d.bval[1] == 1000 && d.bval[2] == 1000);
    expect_vec(d.bvec[0], 0, 0, 0);
    expect_vec(d.bvec[1], 0.6, -0.8, 0);
    expect_vec(d.bvec[2], 0, 0, 1);
    assert_int_equal(rp_dwi_drop_volumes(&st, &d), 1);
    assert_int_equal(st.nt, 3);
    assert_int_equal(st.n_refs, 3);
    assert_non_null(cJSON_GetObjectItem(qc, "dropped_volumes"));
    rp_dwi_free(&d);
    cJSON_Delete(qc);
}

/* Oblique rows: the direction is projected and renormalised; a slice axis against r x c
 * (Siemens sagittal mosaic) negates y once more, as dcm2niix. */
static void test_oblique_and_reversed_slices(void **state)
{
    (void)state;
    rp_stack st;
    double a = 0.3, ca = cos(a), sa = sin(a);
    const double r[3] = {ca, sa, 0}, c[3] = {-sa, ca, 0};
    for (int dir = 1; dir >= -1; dir -= 2) {
        make(&st, "SIEMENS", r, c, dir, 3);
        set_vol(0, 0, 0, 0, 0);
        set_vol(1, 1000, 1, 0, 0);
        set_vol(2, 1000, 0, 0, 1);
        rp_dwi d;
        assert_int_equal(rp_dwi_build(&st, g_infos, &d), 0);
        assert_int_equal(d.n, 3);
        expect_vec(d.bvec[1], ca, dir > 0 ? sa : -sa, 0);
        expect_vec(d.bvec[2], 0, 0, 1);
        rp_dwi_free(&d);
    }
}

/* GE: (0019,xxBB..BD) in the image frame; axial, column phase encoding: (-x, y, z). A
 * shortened vector means a lower b: b x |g|^2 rounded to 5, vector made unit. GE's b=0
 * volumes that repeat the b-value without a direction are b=0. */
static void test_ge(void **state)
{
    (void)state;
    rp_stack st;
    const double r[3] = {1, 0, 0}, c[3] = {0, 1, 0};
    make(&st, "GE MEDICAL SYSTEMS", r, c, 1, 3);
    for (int t = 0; t < NV; t++)
        g_info[t].bvec_frame = RP_DCM_BVEC_GE;
    set_vol(0, 1000, 0, 0, 0);
    set_vol(1, 1000, 0.6, 0.8, 0);
    set_vol(2, 1000, 0.5, 0, 0); /* |g| = 0.5: b = 250 */
    rp_dwi d;
    assert_int_equal(rp_dwi_build(&st, g_infos, &d), 0);
    assert_int_equal(d.n, 3);
    assert_true(d.bval[0] == 0 && d.bval[1] == 1000 && d.bval[2] == 250);
    expect_vec(d.bvec[1], -0.6, 0.8, 0);
    expect_vec(d.bvec[2], -1, 0, 0);
    rp_dwi_free(&d);
    /* a trace-weighted GE DWI ((0019,xxE0) = 0): b=0 + trace keeps its b-value */
    make(&st, "GE MEDICAL SYSTEMS", r, c, 1, 2);
    for (int t = 0; t < NV; t++) {
        g_info[t].bvec_frame = RP_DCM_BVEC_GE;
        g_info[t].ge_diffusion_dirs = 0;
    }
    set_vol(0, 0, 0, 0, 0);
    set_vol(1, 1000, 0, 0, 0);
    assert_int_equal(rp_dwi_build(&st, g_infos, &d), 0);
    assert_int_equal(d.n, 2);
    assert_int_equal(d.n_dropped, 0);
    assert_true(d.bval[0] == 0 && d.bval[1] == 1000);
    rp_dwi_free(&d);
}

/* UIH: (0065,xx37) in the image frame, y negated (rows bottom-up). */
static void test_uih(void **state)
{
    (void)state;
    rp_stack st;
    const double r[3] = {1, 0, 0}, c[3] = {0, 1, 0};
    make(&st, "UIH", r, c, 1, 2);
    for (int t = 0; t < NV; t++)
        g_info[t].bvec_frame = RP_DCM_BVEC_UIH;
    set_vol(0, 1.25, 0, 0, 0);
    set_vol(1, 929.75, 0.6, 0.03, -0.8);
    rp_dwi d;
    assert_int_equal(rp_dwi_build(&st, g_infos, &d), 0);
    assert_int_equal(d.n, 2);
    assert_true(fabs(d.bval[0] - 1.25) < 1e-9);
    expect_vec(d.bvec[1], 0.6, -0.03, -0.8);
    rp_dwi_free(&d);
}

/* No table: one volume; no b-values; one b-value and one direction for every volume. */
static void test_no_table(void **state)
{
    (void)state;
    rp_stack st;
    const double r[3] = {1, 0, 0}, c[3] = {0, 1, 0};
    rp_dwi d;
    make(&st, "SIEMENS", r, c, 1, 1);
    set_vol(0, 1000, 1, 0, 0);
    assert_int_equal(rp_dwi_build(&st, g_infos, &d), 0);
    assert_int_equal(d.n, 0);
    make(&st, "SIEMENS", r, c, 1, 3);
    assert_int_equal(rp_dwi_build(&st, g_infos, &d), 0);
    assert_int_equal(d.n, 0);
    for (int t = 0; t < 3; t++)
        set_vol(t, 0, 0, 0, 0);
    assert_int_equal(rp_dwi_build(&st, g_infos, &d), 0);
    assert_int_equal(d.n, 0);
    rp_dwi_free(&d);
}

/* The files: one line of b-values, three lines of components, "%g", space separated. */
static void test_write(void **state)
{
    (void)state;
    char dir[] = "/tmp/rp_test_bvec_XXXXXX";
    assert_non_null(mkdtemp(dir));
    double bval[2] = {0, 1000};
    double bvec[2][3] = {{0, 0, 0}, {0.6, -0.8, 0}};
    rp_dwi d = {.n = 2, .bval = bval, .bvec = bvec};
    char stem[300], p[320], err[200], buf[256];
    snprintf(stem, sizeof stem, "%s/x", dir);
    assert_int_equal(rp_dwi_write(stem, &d, err, sizeof err), 0);
    snprintf(p, sizeof p, "%s.bval", stem);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    assert_string_equal(buf, "0 1000\n");
    snprintf(p, sizeof p, "%s.bvec", stem);
    f = fopen(p, "r");
    assert_non_null(f);
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    assert_string_equal(buf, "0 0.6\n0 -0.8\n0 0\n");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_patient_frame_and_philips_trace),
        cmocka_unit_test(test_oblique_and_reversed_slices),
        cmocka_unit_test(test_ge),
        cmocka_unit_test(test_uih),
        cmocka_unit_test(test_no_table),
        cmocka_unit_test(test_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
