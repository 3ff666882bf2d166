/* tests/write/test_nifti.c — the NIfTI writer (pipeline/write/nifti.c): header fields read
 * back, qform/sform against the affine we meant (both handednesses, oblique), slice-wise
 * writing equals contiguous writing, and the parallel multi-member .nii.gz decompresses with
 * zlib to exactly the .nii bytes at every level (igzip and libdeflate), for images, mostly
 * zero masks, incompressible bytes and voxels converted on the fly. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "common/common.h"
#include "pipeline/write/write.h"

static char g_dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/rp_test_nifti_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void oblique_affine(double A[4][4], int flip)
{
    double t = 0.4, c = cos(t), s = sin(t);
    double R[3][3] = {{c, -s, 0}, {s, c, 0}, {0, 0, 1}};
    double sp[3] = {0.7, 0.8, 2.5};
    memset(A, 0, 16 * sizeof(double));
    for (int r = 0; r < 3; r++)
        for (int k = 0; k < 3; k++)
            A[r][k] = R[r][k] * sp[k] * (k == 0 && flip ? -1 : 1);
    A[0][3] = 12.5;
    A[1][3] = -80.25;
    A[2][3] = 33;
    A[3][3] = 1;
}

static int16_t *make_data(const int dim[4])
{
    size_t n = (size_t)dim[0] * dim[1] * dim[2] * dim[3];
    int16_t *p = malloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++)
        p[i] = (int16_t)((i * 2654435761u) >> 20) - 2048; /* poorly compressible */
    return p;
}

static void check_header(const char *path, const int dim[4], double A[4][4])
{
    rp_nifti_info h;
    assert_int_equal(rp_nifti_read_info(path, &h), 0);
    assert_memory_equal(h.magic, "n+1", 4);
    assert_int_equal(h.dim[0], dim[3] > 1 ? 4 : 3);
    for (int i = 0; i < 4; i++)
        assert_int_equal(h.dim[i + 1], dim[i]);
    assert_int_equal(h.datatype, RP_NII_INT16);
    assert_int_equal(h.bitpix, 16);
    assert_true(h.vox_offset == 352.0f);
    assert_true(fabsf(h.scl_slope - 1.0f) < 1e-7f && fabsf(h.scl_inter + 1024.0f) < 1e-4f);
    assert_int_equal(h.qform_code, 1);
    assert_int_equal(h.sform_code, 1);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            assert_true(fabs(h.srow[r][c] - A[r][c]) < 1e-5 * (1 + fabs(A[r][c])));
    double Q[4][4];
    rp_nifti_qform_affine(&h, Q);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 4; c++)
            assert_true(fabs(Q[r][c] - A[r][c]) < 1e-5 * (1 + fabs(A[r][c])));
    for (int i = 0; i < 3; i++) {
        double l = sqrt(A[0][i] * A[0][i] + A[1][i] * A[1][i] + A[2][i] * A[2][i]);
        assert_true(fabs(h.pixdim[i + 1] - l) < 1e-5);
    }
}

static void test_header_roundtrip(void **state)
{
    (void)state;
    for (int flip = 0; flip < 2; flip++) {
        int dim[4] = {13, 11, 7, 1};
        double A[4][4];
        oblique_affine(A, flip);
        int16_t *d = make_data(dim);
        char path[400], err[256];
        snprintf(path, sizeof path, "%s/h%d.nii", g_dir, flip);
        rp_nifti_opts o;
        memset(&o, 0, sizeof o);
        assert_int_equal(
            rp_nifti_write(path, dim, RP_NII_INT16, d, A, 1.0, -1024.0, &o, err, sizeof err), 0);
        check_header(path, dim, A);
        /* the file is header + 4 bytes + voxels, voxels byte-exact */
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        fseek(f, 0, SEEK_END);
        long sz = ftell(f);
        assert_int_equal(sz, 352 + 13 * 11 * 7 * 2);
        fseek(f, 352, SEEK_SET);
        int16_t *back = malloc(13 * 11 * 7 * 2);
        assert_int_equal(fread(back, 2, 13 * 11 * 7, f), 13 * 11 * 7);
        fclose(f);
        assert_memory_equal(back, d, 13 * 11 * 7 * 2);
        free(back);
        free(d);
    }
}

static void test_4d_pixdim(void **state)
{
    (void)state;
    int dim[4] = {4, 4, 3, 5};
    double A[4][4];
    oblique_affine(A, 1);
    int16_t *d = make_data(dim);
    char path[400], err[256];
    snprintf(path, sizeof path, "%s/t.nii", g_dir);
    rp_nifti_opts o;
    memset(&o, 0, sizeof o);
    o.tr_s = 2.5;
    assert_int_equal(
        rp_nifti_write(path, dim, RP_NII_INT16, d, A, 1.0, -1024.0, &o, err, sizeof err), 0);
    rp_nifti_info h;
    assert_int_equal(rp_nifti_read_info(path, &h), 0);
    assert_int_equal(h.dim[0], 4);
    assert_int_equal(h.dim[4], 5);
    assert_true(fabsf(h.pixdim[4] - 2.5f) < 1e-6f);
    free(d);
}

static long read_all(const char *path, unsigned char **out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc((size_t)n);
    if (fread(*out, 1, (size_t)n, f) != (size_t)n)
        n = -1;
    fclose(f);
    return n;
}

/* Count gzip members and inflate them all with zlib. */
static long gunzip_members(const unsigned char *in, long n, unsigned char *out, long cap,
                           int *members)
{
    long used = 0, produced = 0;
    *members = 0;
    while (used < n) {
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        assert_int_equal(inflateInit2(&zs, 16 + MAX_WBITS), Z_OK);
        zs.next_in = (unsigned char *)in + used;
        zs.avail_in = (uInt)(n - used);
        zs.next_out = out + produced;
        zs.avail_out = (uInt)(cap - produced);
        int rc = inflate(&zs, Z_FINISH);
        assert_int_equal(rc, Z_STREAM_END);
        used += (long)zs.total_in;
        produced += (long)zs.total_out;
        inflateEnd(&zs);
        (*members)++;
    }
    return produced;
}

static void test_gzip_multimember(void **state)
{
    (void)state;
    int dim[4] = {64, 48, 20, 1};
    double A[4][4];
    oblique_affine(A, 0);
    int16_t *d = make_data(dim);
    char plain[400], gz[400], gz2[400], err[256];
    snprintf(plain, sizeof plain, "%s/g.nii", g_dir);
    snprintf(gz, sizeof gz, "%s/g.nii.gz", g_dir);
    snprintf(gz2, sizeof gz2, "%s/g2.nii.gz", g_dir);
    rp_nifti_opts o;
    memset(&o, 0, sizeof o);
    assert_int_equal(
        rp_nifti_write(plain, dim, RP_NII_INT16, d, A, 1.0, -1024.0, &o, err, sizeof err), 0);
    o.gzip = 1;
    o.block_bytes = 10000; /* 13 members, header straddles the first */
    o.threads = 3;
    o.level = 1;
    assert_int_equal(rp_nifti_write(gz, dim, RP_NII_INT16, d, A, 1.0, -1024.0, &o, err, sizeof err),
                     0);
    unsigned char *p = NULL, *g = NULL;
    long np = read_all(plain, &p), ng = read_all(gz, &g);
    assert_true(np > 0 && ng > 0);
    unsigned char *u = malloc((size_t)np + 16);
    int members = 0;
    long nu = gunzip_members(g, ng, u, np + 16, &members);
    assert_int_equal(nu, np);
    assert_memory_equal(u, p, (size_t)np);
    assert_int_equal(members, (int)((np + 9999) / 10000));
    /* zlib's gzread (what nibabel and most readers use) reads across members */
    gzFile zf = gzopen(gz, "rb");
    assert_non_null(zf);
    long tot = 0;
    int k;
    while ((k = gzread(zf, u + tot, (unsigned)(np + 16 - tot))) > 0)
        tot += k;
    gzclose(zf);
    assert_int_equal(tot, np);
    assert_memory_equal(u, p, (size_t)np);
    /* header readable straight from the .nii.gz */
    check_header(gz, dim, A);
    /* slice-wise writing gives the same bytes as contiguous writing (level 6 this time) */
    const void *slices[20];
    for (int z = 0; z < 20; z++)
        slices[z] = d + (size_t)z * 64 * 48;
    o.level = 6;
    o.block_bytes = 0;
    assert_int_equal(
        rp_nifti_write_slices(gz2, dim, RP_NII_INT16, slices, A, 1.0, -1024.0, &o, err, sizeof err),
        0);
    unsigned char *g2 = NULL;
    long ng2 = read_all(gz2, &g2);
    nu = gunzip_members(g2, ng2, u, np + 16, &members);
    assert_int_equal(nu, np);
    assert_memory_equal(u, p, (size_t)np);
    free(g2);
    free(u);
    free(p);
    free(g);
    free(d);
}

/* Inflate a .nii.gz member by member (zlib checks each member's CRC-32 and length) and
 * check it is exactly `want` (header then voxels) in ceil(n / block) members. */
static void check_gz_bytes(const char *gz, const unsigned char *want, long n, size_t block)
{
    unsigned char *g = NULL;
    long ng = read_all(gz, &g);
    assert_true(ng > 0);
    unsigned char *u = malloc((size_t)n + 64);
    assert_non_null(u);
    int members = 0;
    assert_int_equal(gunzip_members(g, ng, u, n + 64, &members), n);
    assert_memory_equal(u, want, (size_t)n);
    assert_int_equal(members, (int)((n + (long)block - 1) / (long)block));
    free(u);
    free(g);
}

/* Write `data` as .nii and as .nii.gz (contiguous and slice by slice) at `level` in `block`
 * byte members on 3 threads; the .nii holds header + exactly `data`, both .nii.gz inflate to
 * the .nii bytes. Returns the contiguous .nii.gz's size. */
static long gz_roundtrip(const char *name, const int dim[4], int datatype, const void *data,
                         size_t nbytes, int level, size_t block)
{
    double A[4][4];
    oblique_affine(A, 1);
    char plain[400], gz[400], err[256];
    snprintf(plain, sizeof plain, "%s/%s_%d.nii", g_dir, name, level);
    snprintf(gz, sizeof gz, "%s/%s_%d.nii.gz", g_dir, name, level);
    rp_nifti_opts o;
    memset(&o, 0, sizeof o);
    assert_int_equal(rp_nifti_write(plain, dim, datatype, data, A, 0, 0, &o, err, sizeof err), 0);
    unsigned char *p = NULL;
    long np = read_all(plain, &p);
    assert_int_equal(np, (long)(352 + nbytes));
    assert_memory_equal(p + 352, data, nbytes);
    o.gzip = 1;
    o.level = level;
    o.block_bytes = block;
    o.threads = 3;
    assert_int_equal(rp_nifti_write(gz, dim, datatype, data, A, 0, 0, &o, err, sizeof err), 0);
    check_gz_bytes(gz, p, np, block);
    unsigned char *g = NULL;
    long ng = read_all(gz, &g);
    free(g);
    /* slices: blocks straddle slice edges, the header and the first slice */
    size_t nsl = (size_t)dim[2] * dim[3], per = nbytes / nsl;
    const void **sl = malloc(nsl * sizeof *sl);
    assert_non_null(sl);
    for (size_t k = 0; k < nsl; k++)
        sl[k] = (const unsigned char *)data + k * per;
    assert_int_equal(rp_nifti_write_slices(gz, dim, datatype, sl, A, 0, 0, &o, err, sizeof err), 0);
    check_gz_bytes(gz, p, np, block);
    free(sl);
    free(p);
    return ng;
}

static uint32_t lcg(uint32_t *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

/* Every level (igzip 1 and 2, libdeflate 9, the default) on a noisy int16 image, a mostly
 * zero mask (whole zero blocks reuse one member, the last block is short), an all-zero
 * volume and incompressible bytes (igzip falls back to stored blocks): each .nii.gz inflates
 * to exactly the bytes, across block edges that split voxels, slices and the header. */
static void test_gzip_levels_exact(void **state)
{
    (void)state;
    static const int levels[] = {0, 1, 2, 6, 9};
    int idim[4] = {61, 47, 19, 1};
    size_t ni = (size_t)idim[0] * idim[1] * idim[2];
    int16_t *img = malloc(ni * sizeof *img);
    uint32_t seed = 7;
    for (int z = 0, i = 0; z < idim[2]; z++)
        for (int y = 0; y < idim[1]; y++)
            for (int x = 0; x < idim[0]; x++, i++)
                img[i] = (int16_t)((x * 7 + y * 3 + z * 11) % 400 - 1000 + (int)(lcg(&seed) & 31));
    int mdim[4] = {96, 80, 40, 1};
    size_t nm = (size_t)mdim[0] * mdim[1] * mdim[2];
    uint8_t *mask = calloc(nm, 1);
    for (int z = 0, i = 0; z < mdim[2]; z++)
        for (int y = 0; y < mdim[1]; y++)
            for (int x = 0; x < mdim[0]; x++, i++)
                mask[i] = (x - 48) * (x - 48) + (y - 40) * (y - 40) + (z - 20) * (z - 20) < 64;
    int zdim[4] = {32, 32, 64, 1};
    uint8_t *zero = calloc(65536, 1);
    int rdim[4] = {64, 64, 16, 1};
    uint8_t *rnd = malloc(65536);
    for (size_t i = 0; i < 65536; i++)
        rnd[i] = (uint8_t)lcg(&seed);
    assert_non_null(img);
    assert_non_null(mask);
    assert_non_null(zero);
    assert_non_null(rnd);
    for (size_t k = 0; k < sizeof levels / sizeof levels[0]; k++) {
        int L = levels[k];
        long gi = gz_roundtrip("img", idim, RP_NII_INT16, img, ni * 2, L, 9999);
        assert_true(gi < (long)(ni * 2)); /* the high bytes compress */
        long gm = gz_roundtrip("mask", mdim, RP_NII_UINT8, mask, nm, L, 8192);
        assert_true(gm < (long)nm / 50);
        long gz = gz_roundtrip("zero", zdim, RP_NII_UINT8, zero, 65536, L, 4096);
        assert_true(gz < 2000);
        long gr = gz_roundtrip("rnd", rdim, RP_NII_UINT8, rnd, 65536, L, 30000);
        assert_true(gr < 65536 + 352 + 200); /* stored, not expanded */
    }
    free(img);
    free(mask);
    free(zero);
    free(rnd);
}

/* float32 voxels converted on the fly (int16 with a scale, uint8), gzip at the image and
 * mask levels with blocks that split int16 voxels, and uncompressed: the voxels are
 * round(v * a + b) exactly. */
static void test_converted_exact(void **state)
{
    (void)state;
    int dim[4] = {40, 30, 25, 1};
    size_t n = (size_t)dim[0] * dim[1] * dim[2];
    float *f = malloc(n * sizeof *f);
    int16_t *s16 = malloc(n * sizeof *s16);
    uint8_t *u8 = malloc(n);
    uint32_t seed = 3;
    for (size_t i = 0; i < n; i++) {
        int v = (int)(lcg(&seed) % 3001) - 1500; /* stored = 2v - 3 exactly */
        f[i] = (float)v;
        s16[i] = (int16_t)(2 * v - 3);
        u8[i] = (uint8_t)(i % 7 == 0);
    }
    float *fm = malloc(n * sizeof *fm);
    for (size_t i = 0; i < n; i++)
        fm[i] = u8[i];
    double A[4][4];
    oblique_affine(A, 0);
    static const int levels[] = {1, 2, 9};
    for (int gzip = 0; gzip <= 1; gzip++)
        for (size_t k = 0; k < sizeof levels / sizeof levels[0]; k++) {
            rp_nifti_opts o;
            memset(&o, 0, sizeof o);
            o.gzip = gzip;
            o.level = levels[k];
            o.block_bytes = 4999; /* odd: blocks end inside an int16 voxel */
            o.threads = 2;
            char path[400], err[256];
            snprintf(path, sizeof path, "%s/conv%d_%d.nii%s", g_dir, gzip, levels[k],
                     gzip ? ".gz" : "");
            assert_int_equal(rp_nifti_write_converted(path, dim, RP_NII_INT16, f, 2.0, -3.0, A,
                                                      0.5, 1.5, &o, err, sizeof err),
                             0);
            unsigned char *want = malloc(352 + n * 2);
            gzFile zf = gzopen(path, "rb");
            assert_non_null(zf);
            assert_int_equal(gzread(zf, want, 352), 352);
            gzclose(zf);
            memcpy(want + 352, s16, n * 2);
            if (gzip) {
                check_gz_bytes(path, want, (long)(352 + n * 2), 4999);
            } else {
                unsigned char *p = NULL;
                assert_int_equal(read_all(path, &p), (long)(352 + n * 2));
                assert_memory_equal(p, want, 352 + n * 2);
                free(p);
            }
            rp_nifti_info h;
            assert_int_equal(rp_nifti_read_info(path, &h), 0);
            assert_int_equal(h.datatype, RP_NII_INT16);
            assert_true(fabs(h.scl_slope - 0.5) < 1e-6 && fabs(h.scl_inter - 1.5) < 1e-6);
            /* a mask stored as uint8 from float32 */
            assert_int_equal(rp_nifti_write_converted(path, dim, RP_NII_UINT8, fm, 1.0, 0.0, A, 0,
                                                      0, &o, err, sizeof err),
                             0);
            zf = gzopen(path, "rb");
            assert_non_null(zf);
            assert_int_equal(gzread(zf, want, 352), 352);
            gzclose(zf);
            memcpy(want + 352, u8, n);
            if (gzip) {
                check_gz_bytes(path, want, (long)(352 + n), 4999);
            } else {
                unsigned char *p = NULL;
                assert_int_equal(read_all(path, &p), (long)(352 + n));
                assert_memory_equal(p, want, 352 + n);
                free(p);
            }
            free(want);
        }
    free(f);
    free(fm);
    free(s16);
    free(u8);
}

/* A mask packed in bits (volume.h) goes out as the same uint8 file as its bytes: gzip'd in
 * blocks that cut rows at odd places, and plain. */
static void test_mask_packed(void **state)
{
    (void)state;
    double A[4][4];
    oblique_affine(A, 0);
    rp_mask *m = rp_mask_new(67, 31, 9, "lung");
    assert_non_null(m);
    memcpy(m->affine, A, sizeof A);
    size_t n = (size_t)67 * 31 * 9;
    unsigned seed = 5;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        m->data[i] = (uint8_t)((i / 67) % 5 != 0 && ((seed >> 16) & 3) == 0);
    }
    char ref[400], gz[400], pl[400], err[256];
    snprintf(ref, sizeof ref, "%s/m_ref.nii", g_dir);
    snprintf(gz, sizeof gz, "%s/m.nii.gz", g_dir);
    snprintf(pl, sizeof pl, "%s/m.nii", g_dir);
    rp_nifti_opts o;
    memset(&o, 0, sizeof o);
    int dim[4] = {67, 31, 9, 1};
    assert_int_equal(rp_nifti_write(ref, dim, RP_NII_UINT8, m->data, A, 0, 0, &o, err, sizeof err),
                     0);
    assert_int_equal(rp_mask_pack(m), 0);
    assert_null(m->data);
    assert_int_equal(rp_nifti_write_mask(pl, m, &o, err, sizeof err), 0);
    o.gzip = 1;
    o.block_bytes = 1000;
    o.threads = 3;
    o.level = 2;
    assert_int_equal(rp_nifti_write_mask(gz, m, &o, err, sizeof err), 0);
    unsigned char *r = NULL, *p = NULL, *g = NULL;
    long nr = read_all(ref, &r), np = read_all(pl, &p), ng = read_all(gz, &g);
    assert_true(nr == (long)(352 + n) && np == nr && ng > 0);
    assert_memory_equal(p, r, (size_t)nr);
    unsigned char *u = malloc((size_t)nr + 16);
    int members = 0;
    assert_int_equal(gunzip_members(g, ng, u, nr + 16, &members), nr);
    assert_memory_equal(u, r, (size_t)nr);
    free(u);
    free(r);
    free(p);
    free(g);
    rp_mask_free(m);
}

static void test_bad_args(void **state)
{
    (void)state;
    int dim[4] = {0, 4, 4, 1};
    double A[4][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}};
    char path[400], err[256] = "";
    snprintf(path, sizeof path, "%s/bad.nii", g_dir);
    int16_t x = 0;
    assert_int_equal(rp_nifti_write(path, dim, RP_NII_INT16, &x, A, 1, 0, NULL, err, sizeof err),
                     RP_EINVAL);
    assert_true(strlen(err) > 0);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/no/such/dir/x.nii", g_dir);
    int dim2[4] = {1, 1, 1, 1};
    assert_int_equal(rp_nifti_write(path, dim2, RP_NII_INT16, &x, A, 1, 0, NULL, err, sizeof err),
                     RP_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_roundtrip),
        cmocka_unit_test(test_4d_pixdim),
        cmocka_unit_test(test_gzip_multimember),
        cmocka_unit_test(test_gzip_levels_exact),
        cmocka_unit_test(test_converted_exact),
        cmocka_unit_test(test_mask_packed),
        cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
