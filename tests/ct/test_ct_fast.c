/* tests/ct/test_ct_fast.c — the CT mask kernels on bit-packed volumes against the byte
 * kernels of pipeline/volume (what the masks were computed with before):
 *  - body / lung (airway kept) / metal give, voxel for voxel, what opening, components,
 *    closing and axial hole filling on bytes give, on noisy phantoms whose widths are and are
 *    not multiples of 64;
 *  - the airway: a phantom chest with a trachea and two main bronchi; the default lung mask
 *    takes the airway out down to the carina (the result says where) and keeps the lungs. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/common.h"
#include "pipeline/ct/ct.h"
#include "tests/volume/ref_util.h"

static const rp_ct_lung_params LUNG_DEFAULTS = {
    .threshold = -500, .min_ml = 20, .closing_mm = 2, .max_hole_mm2 = 1500, .airway = 1};

/* Noisy chest-like volume: body ellipse, two lung blobs with holes, a table, speckle noise
 * (so components, holes and runs are plentiful), a few metal voxels. */
static rp_volume *noisy(int nx, int ny, int nz, double sp)
{
    rp_volume *v = rp_volume_new(nx, ny, nz, 1);
    assert_non_null(v);
    for (int a = 0; a < 3; a++)
        v->affine[a][a] = sp;
    rp_volume_update_spacing(v);
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                double u = (x - nx / 2.0) / (nx * 0.42), w = (y - ny / 2.0) / (ny * 0.4);
                double hu = -1000 + 40 * rnd_normal();
                if (u * u + w * w < 1)
                    hu = 40 + 30 * rnd_normal();
                for (int s = -1; s <= 1; s += 2) {
                    double lu = (x - nx / 2.0 - s * nx * 0.2) / (nx * 0.13), lw = w / 0.55,
                           lz = (z - nz / 2.0) / (nz * 0.45);
                    if (lu * lu + lw * lw + lz * lz < 1 && rnd() > 0.03)
                        hu = -850 + 60 * rnd_normal();
                }
                if (y == ny - 3 && x > 2 && x < nx - 3)
                    hu = 300; /* table */
                if (rnd() < 0.01)
                    hu = rnd() < 0.5 ? -900 : 100; /* speckle */
                if (rnd() < 0.0005)
                    hu = 3500; /* single voxels: below the metal size floor at these spacings */
                if ((x / 3 == 4 && y / 3 == ny / 6 && z / 3 == 1) ||
                    (x >= nx - 9 && x < nx - 6 && y / 2 == ny / 4 && z == nz / 2))
                    hu = 3500; /* a 3x3x3 and a 3x2x1 piece of metal */
                v->data[((size_t)z * ny + y) * nx + x] = (float)hu;
            }
    return v;
}

/* The byte-kernel pipeline (what the steps computed before they ran on bits). */
static void byte_masks(const rp_volume *v, uint8_t *body, uint8_t *lung, uint8_t *metal)
{
    size_t n = rp_volume_nvox(v);
    int axial = rp_axial_axis(v->affine);
    int r1[3] = {v->dim[0] >= 3, v->dim[1] >= 3, v->dim[2] >= 3};
    for (size_t i = 0; i < n; i++)
        body[i] = v->data[i] > -500;
    assert_int_equal(rp_morph_open(body, v->dim, r1), 0);
    rp_cc *cc;
    assert_int_equal(rp_cc_label(body, v->dim, &cc), 0);
    int best = -1;
    for (int c = 0; c < rp_cc_count(cc); c++)
        if (best < 0 || rp_cc_get(cc, c)->voxels > rp_cc_get(cc, best)->voxels)
            best = c;
    uint8_t *keep = calloc((size_t)rp_cc_count(cc) + 1, 1);
    if (best >= 0)
        keep[best] = 1;
    memset(body, 0, n);
    rp_cc_paint(cc, keep, body, 1);
    free(keep);
    rp_cc_free(cc);
    assert_int_equal(rp_morph_fill_holes_2d(body, v->dim, axial), 0);
    /* lung: defaults threshold -500, min 20 ml, closing 2 mm, holes <= 1500 mm^2 */
    for (size_t i = 0; i < n; i++)
        lung[i] = body[i] && v->data[i] < -500;
    assert_int_equal(rp_cc_label(lung, v->dim, &cc), 0);
    int nc = rp_cc_count(cc), first = -1, second = -1;
    double vml = v->spacing[0] * v->spacing[1] * v->spacing[2] / 1000;
    for (int c = 0; c < nc; c++) {
        const rp_cc_comp *k = rp_cc_get(cc, c);
        if ((k->border & (7 & ~(1 << axial))) || k->voxels * vml < 20)
            continue;
        if (first < 0 || k->voxels > rp_cc_get(cc, first)->voxels) {
            second = first;
            first = c;
        } else if (second < 0 || k->voxels > rp_cc_get(cc, second)->voxels) {
            second = c;
        }
    }
    keep = calloc((size_t)nc + 1, 1);
    if (first >= 0) {
        keep[first] = 1;
        if (second >= 0 && rp_cc_get(cc, second)->voxels >= 0.2 * rp_cc_get(cc, first)->voxels)
            keep[second] = 1;
    }
    memset(lung, 0, n);
    rp_cc_paint(cc, keep, lung, 1);
    free(keep);
    rp_cc_free(cc);
    int r[3];
    for (int a = 0; a < 3; a++)
        r[a] = v->dim[a] > 1 ? (int)floor(2 / v->spacing[a] + 0.5) : 0;
    assert_int_equal(rp_morph_close(lung, v->dim, r), 0);
    double px = 1;
    for (int a = 0; a < 3; a++)
        if (a != axial)
            px *= v->spacing[a];
    assert_int_equal(rp_morph_fill_holes_2d_max(lung, v->dim, axial, (long)(1500 / px) + 1), 0);
    /* metal: > 3000 HU, components >= 10 mm^3 */
    for (size_t i = 0; i < n; i++)
        metal[i] = v->data[i] > 3000;
    assert_int_equal(rp_cc_label(metal, v->dim, &cc), 0);
    keep = calloc((size_t)rp_cc_count(cc) + 1, 1);
    for (int c = 0; c < rp_cc_count(cc); c++)
        keep[c] = rp_cc_get(cc, c)->voxels * vml * 1000 >= 10;
    memset(metal, 0, n);
    rp_cc_paint(cc, keep, metal, 1);
    free(keep);
    rp_cc_free(cc);
}

static void check_same(int nx, int ny, int nz, double sp)
{
    rp_volume *v = noisy(nx, ny, nz, sp);
    size_t n = rp_volume_nvox(v);
    uint8_t *body = malloc(n), *lung = malloc(n), *metal = malloc(n);
    byte_masks(v, body, lung, metal);
    uint8_t *got[3] = {malloc(n), malloc(n), malloc(n)};
    /* garbage in the output: the unpacking skips zero words only over bytes already zero */
    for (int m = 0; m < 3; m++)
        memset(got[m], 0xA5, n);
    assert_int_equal(rp_ct_body_mask(v, -500, got[0]), 0);
    rp_ct_lung_params lp = LUNG_DEFAULTS;
    lp.airway = 0;
    int kept = -1;
    assert_int_equal(rp_ct_lung_mask(v, got[0], &lp, got[1], &kept, NULL), 0);
    rp_ct_metal_part *parts = NULL;
    int nparts = 0;
    assert_int_equal(rp_ct_metal_mask(v, 3000, 10, got[2], &parts, &nparts), 0);
    free(parts);
    const char *names[3] = {"body", "lung", "metal"};
    const uint8_t *want[3] = {body, lung, metal};
    for (int m = 0; m < 3; m++) {
        size_t diff = 0, cnt = 0;
        for (size_t i = 0; i < n; i++) {
            diff += got[m][i] != want[m][i];
            cnt += want[m][i];
        }
        print_message("%dx%dx%d %s: %zu voxels, %zu differ\n", nx, ny, nz, names[m], cnt, diff);
        assert_int_equal(diff, 0);
        assert_true(cnt > (m < 2 ? 100u : 5u));
        free(got[m]);
    }
    /* the packed forms (rp_mask with bits, what the steps keep up to the writer): the same
     * voxels, with a packed body or a byte body given to the lung kernel */
    rp_mask *pm[3];
    for (int m = 0; m < 3; m++) {
        pm[m] = rp_mask_like(v, names[m]);
        assert_non_null(pm[m]);
    }
    assert_int_equal(rp_ct_body_mask_m(v, -500, pm[0]), 0);
    assert_int_equal(rp_ct_lung_mask_m(v, pm[0], &lp, pm[1], &kept, NULL), 0);
    assert_int_equal(rp_ct_metal_mask_m(v, 3000, 10, pm[2], &parts, &nparts), 0);
    free(parts);
    for (int m = 0; m < 3; m++) {
        assert_null(pm[m]->data);
        assert_non_null(pm[m]->bits);
        size_t cnt = 0;
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(rp_mask_at(pm[m], i), want[m][i]);
            cnt += want[m][i];
        }
        assert_int_equal(rp_mask_count(pm[m]), cnt);
    }
    rp_mask *lb = rp_mask_like(v, "lung");
    assert_non_null(lb);
    memcpy(lb->data, body, n);
    rp_mask *lp2 = rp_mask_like(v, "lung");
    assert_int_equal(rp_ct_lung_mask_m(v, lb, &lp, lp2, NULL, NULL), 0);
    assert_int_equal(rp_mask_unpack(lp2), 0);
    assert_memory_equal(lp2->data, lung, n);
    rp_mask_free(lb);
    rp_mask_free(lp2);
    rp_mask *nm = rp_mask_like(v, "metal");
    assert_int_equal(rp_ct_metal_mask_m(v, 1e9f, 10, nm, &parts, &nparts), 0);
    assert_int_equal(nparts, 0);
    assert_int_equal(rp_mask_count(nm), 0);
    rp_mask_free(nm);
    for (int m = 0; m < 3; m++)
        rp_mask_free(pm[m]);
    /* no metal at all: the mask is zeroed whatever it held */
    uint8_t *none = malloc(n);
    memset(none, 0x5A, n);
    assert_int_equal(rp_ct_metal_mask(v, 1e9f, 10, none, &parts, &nparts), 0);
    assert_int_equal(nparts, 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(none[i], 0);
    free(none);
    /* without a body mask the lung kernel computes the same body itself */
    uint8_t *again = malloc(n);
    assert_int_equal(rp_ct_lung_mask(v, NULL, &lp, again, NULL, NULL), 0);
    assert_memory_equal(again, lung, n);
    free(again);
    free(body);
    free(lung);
    free(metal);
    rp_volume_free(v);
}

static void test_bits_equal_bytes(void **state)
{
    (void)state;
    check_same(67, 45, 23, 2.0);   /* one partial word per row */
    check_same(128, 96, 30, 1.2);  /* whole words */
    check_same(200, 130, 17, 1.5); /* several words, the last partial */
}

/* Chest with lungs, a trachea down the midline to a carina at z = 60 mm and two main
 * bronchi into the lungs; 1 mm voxels, z up = superior. */
static rp_volume *airway_phantom(uint8_t *trachea_truth)
{
    const int nx = 160, ny = 120, nz = 140;
    rp_volume *v = rp_volume_new(nx, ny, nz, 1);
    assert_non_null(v);
    for (int a = 0; a < 3; a++)
        v->affine[a][a] = 1;
    rp_volume_update_spacing(v);
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                double wx = x - 80, wy = y - 60, wz = z;
                double hu = -1000 + 15 * rnd_normal();
                if ((wx / 72) * (wx / 72) + (wy / 52) * (wy / 52) < 1)
                    hu = 40 + 15 * rnd_normal();
                int air = 0, tr = 0;
                for (int s = -1; s <= 1; s += 2) {
                    double lx = (wx - s * 36) / 26, ly = wy / 36, lz = (wz - 60) / 58;
                    if (lx * lx + ly * ly + lz * lz < 1)
                        air = 1;
                }
                if (wz > 60 && wx * wx + (wy + 8) * (wy + 8) < 49)
                    air = tr = 1; /* trachea, 7 mm radius, from the carina up */
                for (int s = -1; s <= 1; s += 2) {
                    /* main bronchus: (0,-8,60) -> (s*30,-4,38), radius 4 mm */
                    double dx = s * 30, dy = 4, dz = -22, L2 = dx * dx + dy * dy + dz * dz;
                    double t = (wx * dx + (wy + 8) * dy + (wz - 60) * dz) / L2;
                    t = t < 0 ? 0 : t > 1 ? 1 : t;
                    double ex = wx - t * dx, ey = wy + 8 - t * dy, ez = wz - 60 - t * dz;
                    if (ex * ex + ey * ey + ez * ez < 16)
                        air = 1;
                }
                if (air)
                    hu = tr ? -1000 + 10 * rnd_normal() : -850 + 20 * rnd_normal();
                size_t i = ((size_t)z * ny + y) * nx + x;
                v->data[i] = (float)hu;
                trachea_truth[i] = (uint8_t)tr;
            }
    return v;
}

static void test_airway_removed(void **state)
{
    (void)state;
    uint8_t *tr = malloc((size_t)160 * 120 * 140);
    rp_volume *v = airway_phantom(tr);
    size_t n = rp_volume_nvox(v);
    uint8_t *lung = malloc(n), *kept = malloc(n);
    rp_ct_lung_params lp = LUNG_DEFAULTS;
    rp_ct_airway aw;
    assert_int_equal(rp_ct_lung_mask(v, NULL, &lp, lung, NULL, &aw), 0);
    lp.airway = 0;
    rp_ct_airway none;
    assert_int_equal(rp_ct_lung_mask(v, NULL, &lp, kept, NULL, &none), 0);
    assert_int_equal(none.found, 0);
    size_t in_tr = 0, kept_tr = 0, ntr = 0, nl = 0, nk = 0, in_tr_above = 0;
    for (size_t i = 0; i < n; i++) {
        ntr += tr[i];
        in_tr += tr[i] && lung[i];
        kept_tr += tr[i] && kept[i];
        nl += lung[i];
        nk += kept[i];
        /* slices well above the carina (z > 65) */
        if (i / (160 * 120) > 65)
            in_tr_above += tr[i] && lung[i];
    }
    assert_int_equal(aw.found, 1);
    print_message("airway phantom: trachea %zu voxels, in lung mask %zu (%zu above z 65), with "
                  "the airway kept %zu; lung %zu vs %zu voxels; carina slice %d (true 60), "
                  "removed %.1f ml\n",
                  ntr, in_tr, in_tr_above, kept_tr, nl, nk, aw.carina_slice, aw.removed_ml);
    assert_true(kept_tr > ntr / 2); /* without removal the trachea is in the mask */
    assert_int_equal(in_tr_above, 0);
    assert_true(in_tr < ntr / 50);
    assert_true(abs(aw.carina_slice - 60) <= 6);
    assert_true(aw.removed_ml > 0);
    assert_true(nl > 0.97 * (nk - kept_tr) && nl < nk); /* the lungs themselves stay */
    free(lung);
    free(kept);
    rp_volume_free(v);
    free(tr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bits_equal_bytes),
        cmocka_unit_test(test_airway_removed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
