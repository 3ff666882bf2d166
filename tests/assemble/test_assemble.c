/* Unit tests for pipeline/assemble: affine from IOP/IPP/spacing (LPS -> RAS, rows written
 * bottom-up as dcm2niix), sorting a shuffled synthetic series along the slice normal, tilt
 * and uneven-spacing detection, localizer dropping, 4-D grouping and tilt resampling. The
 * series are synthetic headers (rp_dcm_info built in memory): the truth is known exactly. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pipeline/assemble/assemble.h"
#include "pipeline/volume/volume.h"

static rp_dcm_info *mk(int rows, int cols, const double ipp[3], const double iop[6], double dy,
                       double dx, int instance)
{
    rp_dcm_info *in = calloc(1, sizeof *in);
    assert_non_null(in);
    snprintf(in->path, sizeof in->path, "synthetic-%d", instance);
    snprintf(in->sop_instance_uid, sizeof in->sop_instance_uid, "1.2.3.%d", instance);
    strcpy(in->series_uid, "1.2.3");
    strcpy(in->modality, "CT");
    strcpy(in->photometric, "MONOCHROME2");
    in->rows = rows;
    in->cols = cols;
    in->frames = in->n_frames = 1;
    in->samples_per_pixel = 1;
    in->bits_allocated = in->bits_stored = 16;
    in->high_bit = 15;
    in->pixel_representation = 1;
    in->stype = RP_DCM_S16;
    in->has_pixel_data = 1;
    in->instance_number = instance;
    in->acquisition_number = -1;
    in->rescale_slope = 1;
    in->slice_thickness = in->spacing_between_slices = in->gantry_tilt = NAN;
    in->echo_time = NAN;
    in->frame = calloc(1, sizeof(rp_dcm_frame));
    rp_dcm_frame *f = &in->frame[0];
    memcpy(f->ipp, ipp, sizeof f->ipp);
    memcpy(f->iop, iop, sizeof f->iop);
    f->has_ipp = f->has_iop = f->has_spacing = 1;
    f->pixel_spacing[0] = dy;
    f->pixel_spacing[1] = dx;
    f->slope = 1;
    f->echo_time = f->trigger_time = f->b_value = f->slice_thickness = NAN;
    f->echo_number = f->temporal_position = f->stack_position = -1;
    return in;
}

static void free_all(rp_dcm_info **v, int n)
{
    for (int i = 0; i < n; i++)
        rp_dcm_info_free(v[i]);
}

static int has_issue(const cJSON *qc, const char *code)
{
    const cJSON *arr = cJSON_GetObjectItem(qc, "issues"), *it;
    cJSON_ArrayForEach(it, arr)
    {
        const cJSON *c = cJSON_GetObjectItem(it, "code");
        if (c && !strcmp(c->valuestring, code))
            return 1;
    }
    return 0;
}

/* LPS -> RAS with rows flipped: check against a hand-computed affine. */
static void test_affine_axial(void **state)
{
    (void)state;
    const double iop[6] = {1, 0, 0, 0, 1, 0};
    const double ipp0[3] = {-100, -120, 50};
    const double step[3] = {0, 0, 2.5};
    double A[4][4];
    rp_affine_from_dicom(iop, ipp0, step, 0.5, 0.7, 200, A);
    /* i -> LPS +x * 0.5 -> RAS -0.5 */
    assert_true(fabs(A[0][0] + 0.5) < 1e-12);
    /* j (flipped) -> LPS -y * 0.7 -> RAS +0.7 */
    assert_true(fabs(A[1][1] - 0.7) < 1e-12);
    assert_true(fabs(A[2][2] - 2.5) < 1e-12);
    /* origin: first stored row is DICOM row 199: LPS y = -120 + 199*0.7 */
    assert_true(fabs(A[0][3] - 100) < 1e-9);
    assert_true(fabs(A[1][3] - (120 - 199 * 0.7)) < 1e-9);
    assert_true(fabs(A[2][3] - 50) < 1e-9);
    /* voxel (i, j, k) -> world: the DICOM pixel (col i, row ny-1-j) of slice k */
    int i = 17, j = 33, k = 4;
    double x = A[0][0] * i + A[0][1] * j + A[0][2] * k + A[0][3];
    double y = A[1][0] * i + A[1][1] * j + A[1][2] * k + A[1][3];
    double z = A[2][0] * i + A[2][1] * j + A[2][2] * k + A[2][3];
    double lx = ipp0[0] + i * 0.5, ly = ipp0[1] + (199 - j) * 0.7, lz = ipp0[2] + k * 2.5;
    assert_true(fabs(x + lx) < 1e-9 && fabs(y + ly) < 1e-9 && fabs(z - lz) < 1e-9);
}

static void test_affine_oblique(void **state)
{
    (void)state;
    double c = cos(0.3), s = sin(0.3);
    const double iop[6] = {1, 0, 0, 0, c, -s};
    const double ipp0[3] = {10, 20, 30};
    double n[3] = {0, s, c}; /* row x column */
    double step[3] = {n[0] * 3, n[1] * 3, n[2] * 3};
    double A[4][4];
    rp_affine_from_dicom(iop, ipp0, step, 1.0, 2.0, 64, A);
    /* the columns are orthogonal and have the spacings as lengths */
    double d01 = 0, l0 = 0, l1 = 0, l2 = 0;
    for (int r = 0; r < 3; r++) {
        d01 += A[r][0] * A[r][1];
        l0 += A[r][0] * A[r][0];
        l1 += A[r][1] * A[r][1];
        l2 += A[r][2] * A[r][2];
    }
    assert_true(fabs(d01) < 1e-12);
    assert_true(fabs(sqrt(l0) - 1) < 1e-12 && fabs(sqrt(l1) - 2) < 1e-12 &&
                fabs(sqrt(l2) - 3) < 1e-12);
    /* LPS z of the column direction is -s*2 for DICOM rows; flipped -> +s*2 */
    assert_true(fabs(A[2][1] - s * 2) < 1e-12);
}

/* 40 axial slices given in a shuffled order, with Instance Numbers that lie: the stack must
 * come out sorted by position along the normal. Feet-first style descending z in input. */
static void test_sort_shuffled(void **state)
{
    (void)state;
    enum { N = 40 };
    const double iop[6] = {1, 0, 0, 0, 1, 0};
    rp_dcm_info *v[N];
    int perm[N];
    for (int i = 0; i < N; i++)
        perm[i] = i;
    srand(7);
    for (int i = N - 1; i > 0; i--) {
        int j = rand() % (i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int i = 0; i < N; i++) {
        int z = perm[i];
        double ipp[3] = {-50, -60, 100 - 2.0 * z};
        v[i] = mk(8, 8, ipp, iop, 0.5, 0.5, (z * 13) % N + 1);
    }
    rp_series_asm sa;
    assert_int_equal(rp_assemble((const rp_dcm_info *const *)v, N, &sa), 0);
    assert_int_equal(sa.n_stacks, 1);
    rp_stack *st = &sa.stack[0];
    assert_int_equal(st->nz, N);
    assert_int_equal(st->nt, 1);
    for (int k = 1; k < N; k++)
        assert_true(st->slice[k].pos > st->slice[k - 1].pos);
    assert_true(fabs(st->slice[0].ipp[2] - (100 - 2.0 * (N - 1))) < 1e-9);
    assert_false(st->uneven);
    assert_false(st->need_resample);
    assert_true(fabs(st->dz - 2.0) < 1e-9);
    assert_true(fabs(st->affine[2][2] - 2.0) < 1e-9);
    rp_series_asm_free(&sa);
    free_all(v, N);
}

static void test_gaps(void **state)
{
    (void)state;
    double even[5] = {0, 2, 4, 6, 8};
    double mean, gmin, gmax;
    int uneven, missing;
    rp_gaps_analyse(even, 5, &mean, &gmin, &gmax, &uneven, &missing);
    assert_false(uneven);
    assert_int_equal(missing, 0);
    assert_true(fabs(mean - 2) < 1e-12);
    double gap[5] = {0, 2, 4, 8, 10}; /* one slice missing at 6 */
    rp_gaps_analyse(gap, 5, &mean, &gmin, &gmax, &uneven, &missing);
    assert_true(uneven);
    assert_int_equal(missing, 1);
    double ct[5] = {0, 1.081, 5.083, 12.082, 13.163}; /* 1.081 / 4.002 / 6.999 mm */
    rp_gaps_analyse(ct, 5, &mean, &gmin, &gmax, &uneven, &missing);
    assert_true(uneven);
    assert_int_equal(missing, 0);
    assert_true(fabs(gmin - 1.081) < 1e-9 && fabs(gmax - 6.999) < 1e-9);
    double jitter[4] = {0, 2.0004, 3.9998, 6.0001}; /* scanner rounding: not uneven */
    rp_gaps_analyse(jitter, 4, &mean, &gmin, &gmax, &uneven, &missing);
    assert_false(uneven);
}

/* Gantry tilt: slices stacked along z while the image plane is tilted by 18.5 degrees. */
static void test_tilt_detect_and_resample(void **state)
{
    (void)state;
    enum { N = 6, R = 16, C = 12 };
    double t = 18.5 * M_PI / 180;
    const double iop[6] = {1, 0, 0, 0, cos(t), -sin(t)};
    rp_dcm_info *v[N];
    for (int i = 0; i < N; i++) {
        double ipp[3] = {0, 0, 3.0 * i};
        v[i] = mk(R, C, ipp, iop, 1.0, 1.0, i + 1);
    }
    assert_true(fabs(rp_tilt_deg(v[0]->frame[0].ipp, v[N - 1]->frame[0].ipp,
                                 (double[3]){0, sin(t), cos(t)}) -
                     18.5) < 1e-9);
    rp_series_asm sa;
    assert_int_equal(rp_assemble((const rp_dcm_info *const *)v, N, &sa), 0);
    assert_int_equal(sa.n_stacks, 1);
    rp_stack *st = &sa.stack[0];
    assert_true(fabs(st->tilt_deg - 18.5) < 1e-6);
    assert_true(st->need_resample);
    assert_true(has_issue(st->qc, "gantry_tilt"));
    /* resample a known volume: value = DICOM row index + 100*slice; after correction every
     * source voxel keeps its value at its world position */
    rp_stack_data d;
    memset(&d, 0, sizeof d);
    d.type = RP_ST_S16;
    int16_t *p = malloc(sizeof(int16_t) * R * C * N);
    for (int k = 0; k < N; k++)
        for (int row = 0; row < R; row++)
            for (int col = 0; col < C; col++)
                p[(size_t)k * R * C + (size_t)(R - 1 - row) * C + col] = (int16_t)(row + 100 * k);
    d.data = p;
    char err[256];
    assert_int_equal(rp_stack_resample(st, &d, err, sizeof err), 0);
    assert_false(st->need_resample);
    /* orthogonal grid now */
    double d01 = 0, d02 = 0, d12 = 0;
    for (int r = 0; r < 3; r++) {
        d01 += st->affine[r][0] * st->affine[r][1];
        d02 += st->affine[r][0] * st->affine[r][2];
        d12 += st->affine[r][1] * st->affine[r][2];
    }
    assert_true(fabs(d01) < 1e-9 && fabs(d02) < 1e-9 && fabs(d12) < 1e-9);
    /* source pixel (row 5, col 3) of slice 0 lands exactly on our grid with its value */
    double inv[4][4];
    assert_int_equal(rp_mat4_invert(st->affine, inv), 0);
    int16_t *q = d.data;
    {
        double lps[3];
        for (int a = 0; a < 3; a++)
            lps[a] = v[0]->frame[0].ipp[a] + 3 * iop[a] + 5 * iop[3 + a];
        double ras[4] = {-lps[0], -lps[1], lps[2], 1}, ijk[3];
        for (int r = 0; r < 3; r++)
            ijk[r] = inv[r][0] * ras[0] + inv[r][1] * ras[1] + inv[r][2] * ras[2] + inv[r][3];
        for (int r = 0; r < 3; r++)
            assert_true(fabs(ijk[r] - lround(ijk[r])) < 1e-6);
        size_t idx =
            (size_t)lround(ijk[0]) +
            (size_t)st->nx * ((size_t)lround(ijk[1]) + (size_t)st->ny * (size_t)lround(ijk[2]));
        assert_int_equal(q[idx], 5);
    }
    /* last plane: the value is linear in the source row, so interpolation must reproduce
     * row + 100*k at the fractional source row of every voxel inside the source slice */
    int checked = 0;
    for (int j = 0; j < st->ny; j++) {
        int i = 3, k2 = st->nz - 1;
        double ras[3];
        for (int r = 0; r < 3; r++)
            ras[r] = st->affine[r][0] * i + st->affine[r][1] * j + st->affine[r][2] * k2 +
                     st->affine[r][3];
        double lps[3] = {-ras[0], -ras[1], ras[2]};
        double row = 0;
        for (int a = 0; a < 3; a++)
            row += (lps[a] - v[N - 1]->frame[0].ipp[a]) * iop[3 + a];
        if (row < 0 || row > R - 1)
            continue;
        int16_t got = q[(size_t)i + (size_t)st->nx * ((size_t)j + (size_t)st->ny * k2)];
        assert_true(fabs(got - (row + 100 * (N - 1))) <= 0.5 + 1e-6);
        checked++;
    }
    assert_true(checked >= R - 1);
    rp_stack_data_free(&d);
    rp_series_asm_free(&sa);
    free_all(v, N);
}

/* A series with a main stack and two localizer frames of another orientation. */
static void test_localizer_dropped(void **state)
{
    (void)state;
    const double ax[6] = {1, 0, 0, 0, 1, 0}, sag[6] = {0, 1, 0, 0, 0, -1};
    rp_dcm_info *v[12];
    for (int i = 0; i < 10; i++)
        v[i] = mk(8, 8, (double[3]){0, 0, i * 1.0}, ax, 1, 1, i + 1);
    v[10] = mk(8, 8, (double[3]){0, 0, 0}, sag, 1, 1, 11);
    v[11] = mk(8, 8, (double[3]){5, 0, 0}, sag, 1, 1, 12);
    rp_series_asm sa;
    assert_int_equal(rp_assemble((const rp_dcm_info *const *)v, 12, &sa), 0);
    assert_int_equal(sa.n_stacks, 1);
    assert_int_equal(sa.stack[0].nz, 10);
    assert_true(has_issue(sa.qc, "dropped_frames"));
    rp_series_asm_free(&sa);
    free_all(v, 12);
}

/* Repeated positions become volumes (4-D), ordered by temporal position. */
static void test_four_d(void **state)
{
    (void)state;
    const double ax[6] = {1, 0, 0, 0, 1, 0};
    enum { Z = 5, T = 3 };
    rp_dcm_info *v[Z * T];
    for (int t = 0; t < T; t++)
        for (int z = 0; z < Z; z++) {
            int i = (T - 1 - t) * Z + z; /* later volumes first */
            v[i] = mk(4, 4, (double[3]){0, 0, z * 2.0}, ax, 1, 1, i + 1);
            v[i]->frame[0].temporal_position = t + 1;
        }
    rp_series_asm sa;
    assert_int_equal(rp_assemble((const rp_dcm_info *const *)v, Z * T, &sa), 0);
    assert_int_equal(sa.n_stacks, 1);
    rp_stack *st = &sa.stack[0];
    assert_int_equal(st->nz, Z);
    assert_int_equal(st->nt, T);
    for (int t = 0; t < T; t++)
        for (int z = 0; z < Z; z++)
            assert_int_equal(v[st->slice[z + Z * t].file]->frame[0].temporal_position, t + 1);
    rp_series_asm_free(&sa);
    free_all(v, Z * T);
}

/* Two echoes are two stacks, labelled _e1/_e2. */
static void test_echo_split(void **state)
{
    (void)state;
    const double ax[6] = {1, 0, 0, 0, 1, 0};
    rp_dcm_info *v[8];
    for (int i = 0; i < 8; i++) {
        v[i] = mk(4, 4, (double[3]){0, 0, (i % 4) * 2.0}, ax, 1, 1, i + 1);
        v[i]->frame[0].echo_number = i < 4 ? 1 : 2;
        v[i]->frame[0].echo_time = i < 4 ? 5.0 : 10.0;
    }
    rp_series_asm sa;
    assert_int_equal(rp_assemble((const rp_dcm_info *const *)v, 8, &sa), 0);
    assert_int_equal(sa.n_stacks, 2);
    assert_int_equal(sa.stack[0].nz, 4);
    assert_int_equal(sa.stack[0].nt, 1);
    assert_string_not_equal(sa.stack[0].label, sa.stack[1].label);
    rp_series_asm_free(&sa);
    free_all(v, 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_affine_axial),
        cmocka_unit_test(test_affine_oblique),
        cmocka_unit_test(test_sort_shuffled),
        cmocka_unit_test(test_gaps),
        cmocka_unit_test(test_tilt_detect_and_resample),
        cmocka_unit_test(test_localizer_dropped),
        cmocka_unit_test(test_four_d),
        cmocka_unit_test(test_echo_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
