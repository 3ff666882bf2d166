/* tests/write/test_derived.c — pipeline/write/derived.cc: derived series and SEG writers.
 *
 * Also a driver for tests/integration/test_derived.py:
 *   pipeline_test_derived --spec SPEC.json
 * where SPEC gives a raw float32 volume (from pydicom), its affine, source files and masks;
 * the driver writes the derived series and the SEG and prints the paths, one per line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "pipeline/write/write.h"

static char g_tmp[256];
static char g_src[3][1024];

static int have_sources(void)
{
    const char *d = getenv("RP_SHARED_DATA");
    if (!d)
        d = "/work/shared/data";
    for (int i = 0; i < 3; i++) {
        snprintf(g_src[i], sizeof g_src[i], "%s/seg_with_source_ct/ct_3slice/%02d.dcm", d, i + 1);
        if (access(g_src[i], R_OK))
            return 0;
    }
    return 1;
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/rp_test_derived_XXXXXX");
    return mkdtemp(g_tmp) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    return system(cmd) == 0 ? 0 : -1;
}

/* A small volume on an axial grid, values a ramp with fractions. */
static rp_volume *phantom(int nx, int ny, int nz, double scale)
{
    rp_volume *v = rp_volume_new(nx, ny, nz, 1);
    if (!v)
        return NULL;
    for (size_t i = 0; i < rp_volume_nvox(v); i++)
        v->data[i] = (float)((double)i * scale - 1000.0);
    rp_mat4_identity(v->affine);
    v->affine[0][0] = -0.7; /* RAS: x to the left = +L in LPS */
    v->affine[1][1] = -0.7;
    v->affine[2][2] = 2.5;
    v->affine[0][3] = 100;
    v->affine[1][3] = 120;
    v->affine[2][3] = -50;
    rp_volume_update_spacing(v);
    return v;
}

static long file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) ? -1 : (long)st.st_size;
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

static void test_codes_from_recipe(void **state)
{
    (void)state;
    rp_derived_code c[8];
    int n = rp_derived_codes_from_recipe("hu clip(-1200,600) resample(1,1,1,bspline3) window(lung) "
                                         "denoise(gauss(1)) resample(2,2,2)",
                                         c, 8);
    assert_int_equal(n, 2);
    assert_string_equal(c[0].value, "113085");
    assert_string_equal(c[0].meaning, "Spatial resampling");
    assert_string_equal(c[1].value, "113087");
    assert_int_equal(rp_derived_codes_from_recipe("hu window(lung)", c, 8), 0);
    assert_int_equal(rp_derived_codes_from_recipe(NULL, c, 8), 0);
    assert_int_equal(rp_derived_codes_from_recipe("resample(1) denoise", c, 1), 1);
}

static void test_series_written(void **state)
{
    (void)state;
    if (!have_sources())
        skip();
    rp_volume *v = phantom(16, 12, 3, 0.37);
    assert_non_null(v);
    rp_derived_opts o;
    rp_derived_opts_init(&o);
    o.uid_root = "1.2.826.0.1.3680043.10.1338";
    o.series_description = "unit [radprep: test]";
    o.window_center = -600;
    o.window_width = 1600;
    const char *srcs[3] = {g_src[0], g_src[1], g_src[2]};
    o.src_slice_files = srcs;
    o.n_src_slices = 3;
    o.recipe = "resample(1,1,1)";
    char dir[512];
    snprintf(dir, sizeof dir, "%s/series", g_tmp);
    char **paths = NULL;
    size_t n = 0;
    assert_int_equal(rp_derived_write_series(&o, v, g_src[0], dir, &paths, &n), 0);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        assert_true(file_size(paths[i]) > 16 * 12 * 2);
        /* values are fractional: not physical, so Secondary Capture */
        assert_true(file_contains(paths[i], "1.2.840.10008.5.1.4.1.1.7"));
        assert_true(file_contains(paths[i], "DERIVED\\SECONDARY"));
        assert_true(file_contains(paths[i], "unit [radprep: test]"));
        assert_true(file_contains(paths[i], "113085"));
        assert_true(file_contains(paths[i], "1.2.826.0.1.3680043.10.1338."));
    }
    /* no temporary file is left behind */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", paths[0]);
    assert_int_equal(access(tmp, F_OK), -1);
    rp_derived_paths_free(paths, n);

    /* physical CT values (integers) -> CT Image Storage, exact storage */
    for (size_t i = 0; i < rp_volume_nvox(v); i++)
        v->data[i] = (float)((int)(i % 3000) - 1024);
    o.values_physical = 1;
    snprintf(dir, sizeof dir, "%s/series_ct", g_tmp);
    assert_int_equal(rp_derived_write_series(&o, v, g_src[0], dir, &paths, &n), 0);
    assert_int_equal(n, 3);
    assert_true(file_contains(paths[0], "1.2.840.10008.5.1.4.1.1.2"));
    assert_true(file_contains(paths[0], "AXIAL"));
    rp_derived_paths_free(paths, n);
    rp_volume_free(v);
}

static void test_series_errors(void **state)
{
    (void)state;
    if (!have_sources())
        skip();
    rp_volume *v = phantom(4, 4, 2, 1);
    rp_derived_opts o;
    rp_derived_opts_init(&o);
    char **paths = (char **)1;
    size_t n = 7;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/err", g_tmp);
    o.channel = 1; /* only one channel */
    assert_int_equal(rp_derived_write_series(&o, v, g_src[0], dir, &paths, &n), RP_EINVAL);
    assert_null(paths);
    assert_int_equal(n, 0);
    o.channel = 0;
    assert_int_equal(rp_derived_write_series(&o, v, "/nonexistent/x.dcm", dir, &paths, &n),
                     RP_EPARSE);
    /* a non-DICOM source file is refused, nothing is written */
    char junk[600];
    snprintf(junk, sizeof junk, "%s/junk.dcm", g_tmp);
    FILE *f = fopen(junk, "w");
    assert_non_null(f);
    fputs("not dicom at all", f);
    fclose(f);
    assert_int_equal(rp_derived_write_series(&o, v, junk, dir, &paths, &n), RP_EPARSE);
    assert_int_equal(rp_derived_write_series(&o, NULL, g_src[0], dir, &paths, &n), RP_EINVAL);
    rp_volume_free(v);
}

static void test_seg_written(void **state)
{
    (void)state;
    if (!have_sources())
        skip();
    rp_volume *v = phantom(16, 12, 3, 1);
    rp_mask *lung = rp_mask_like(v, "lung");
    rp_mask *metal = rp_mask_like(v, "metal");
    assert_non_null(lung);
    assert_non_null(metal);
    for (int i = 20; i < 60; i++)
        lung->data[16 * 12 + i] = 1; /* slice 1 only */
    /* metal empty: the segment must still get one frame */
    rp_derived_opts o;
    rp_derived_opts_init(&o);
    o.uid_root = "1.2.826.0.1.3680043.10.1338";
    const char *srcs[3] = {g_src[0], g_src[1], g_src[2]};
    rp_mask *ms[2] = {lung, metal};
    char out[600];
    snprintf(out, sizeof out, "%s/masks_seg.dcm", g_tmp);
    assert_int_equal(rp_derived_write_seg(&o, ms, 2, g_src[0], srcs, 3, out), 0);
    assert_true(file_size(out) > 0);
    assert_true(file_contains(out, "1.2.840.10008.5.1.4.1.1.66.4"));
    assert_true(file_contains(out, "39607008"));
    /* mismatched grids are refused */
    rp_mask *odd = rp_mask_new(5, 5, 3, "body");
    ms[1] = odd;
    assert_int_equal(rp_derived_write_seg(&o, ms, 2, g_src[0], srcs, 3, out), RP_EINVAL);
    rp_mask_free(odd);
    rp_mask_free(lung);
    rp_mask_free(metal);
    rp_volume_free(v);
}

static int count_dcm(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strstr(e->d_name, ".dcm") != NULL && !strstr(e->d_name, ".tmp");
    closedir(d);
    return n;
}

static void test_write_outputs_for_rule(void **state)
{
    (void)state;
    if (!have_sources())
        skip();
    rp_step_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    rp_series_info info;
    memset(&info, 0, sizeof info);
    strcpy(info.modality, "CT");
    strcpy(info.series_description, "chest");
    info.window_center = 40;
    info.window_width = 400;
    ctx.info = &info;
    ctx.vol = phantom(16, 12, 3, 1); /* integer HU */
    ctx.hu_known = 1;
    ctx.hu_scale = 1;
    ctx.hu_offset = 0;
    rp_mask *lung = rp_mask_like(ctx.vol, "lung");
    lung->data[5] = 1;
    assert_int_equal(rp_step_ctx_add_mask(&ctx, lung), 0);
    rp_mask *pad = rp_mask_like(ctx.vol, "padding"); /* bookkeeping, not a SEG segment */
    pad->data[0] = 1;
    assert_int_equal(rp_step_ctx_add_mask(&ctx, pad), 0);
    const char *srcs[3] = {g_src[0], g_src[1], g_src[2]};
    rp_derived_request r = {.outputs = "nifti json dicom seg",
                            .uid_root = "1.2.826.0.1.3680043.10.1338",
                            .rule_name = "ct-test",
                            .recipe = "hu resample(1,1,1)",
                            .ctx = &ctx,
                            .src_files = srcs,
                            .n_src = 3};
    char out[512], dir[600];
    snprintf(out, sizeof out, "%s/rule", g_tmp);
    r.out_dir = out;
    size_t n = 0;
    assert_int_equal(rp_derived_write_outputs(&r, &n), 0);
    assert_int_equal(n, 4);
    snprintf(dir, sizeof dir, "%s/dicom", out);
    assert_int_equal(count_dcm(dir), 4);
    char p[700];
    snprintf(p, sizeof p, "%s/IM00001.dcm", dir);
    assert_true(file_contains(p, "1.2.840.10008.5.1.4.1.1.2")); /* HU kept: CT Image */
    assert_true(file_contains(p, "chest [radprep: ct-test]"));
    snprintf(p, sizeof p, "%s/seg.dcm", dir);
    assert_true(file_contains(p, "1.2.840.10008.5.1.4.1.1.66.4"));
    assert_true(file_contains(p, "39607008"));
    assert_false(file_contains(p, "padding"));
    /* a rule that asks for no DICOM writes nothing */
    snprintf(out, sizeof out, "%s/rule_nifti", g_tmp);
    r.out_dir = out;
    r.outputs = "nifti json";
    assert_int_equal(rp_derived_write_outputs(&r, &n), 0);
    assert_int_equal(n, 0);
    snprintf(dir, sizeof dir, "%s/dicom", out);
    assert_int_equal(count_dcm(dir), -1);
    /* windowed values are no longer HU: Secondary Capture */
    ctx.hu_scale = 1.0 / 1400;
    snprintf(out, sizeof out, "%s/rule_sc", g_tmp);
    r.out_dir = out;
    r.outputs = "dicom";
    assert_int_equal(rp_derived_write_outputs(&r, &n), 0);
    assert_int_equal(n, 3);
    snprintf(p, sizeof p, "%s/dicom/IM00002.dcm", out);
    assert_true(file_contains(p, "1.2.840.10008.5.1.4.1.1.7"));
    rp_step_ctx_release(&ctx);
}

/* ------------------------------------------------------------------ driver mode */

static void *read_raw(const char *path, size_t bytes)
{
    char *buf = NULL;
    size_t len = 0;
    if (rp_read_file(path, &buf, &len) || len != bytes) {
        fprintf(stderr, "driver: %s has %zu bytes, expected %zu\n", path, len, bytes);
        free(buf);
        return NULL;
    }
    return buf;
}

static int get_affine(const cJSON *spec, double a[4][4])
{
    const cJSON *aff = cJSON_GetObjectItem(spec, "affine");
    if (cJSON_GetArraySize(aff) != 4)
        return -1;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            a[r][c] = cJSON_GetArrayItem(cJSON_GetArrayItem(aff, r), c)->valuedouble;
    return 0;
}

static int driver(const char *spec_path)
{
    char *text = NULL;
    size_t len = 0;
    if (rp_read_file(spec_path, &text, &len))
        return 2;
    cJSON *spec = cJSON_Parse(text);
    free(text);
    if (!spec)
        return 2;
    int rc = 1;
    const cJSON *dim = cJSON_GetObjectItem(spec, "dim");
    int nx = cJSON_GetArrayItem(dim, 0)->valueint, ny = cJSON_GetArrayItem(dim, 1)->valueint,
        nz = cJSON_GetArrayItem(dim, 2)->valueint;
    const cJSON *srcs = cJSON_GetObjectItem(spec, "src_files");
    size_t nsrc = (size_t)cJSON_GetArraySize(srcs);
    const char **src = calloc(nsrc ? nsrc : 1, sizeof *src);
    for (size_t i = 0; i < nsrc; i++)
        src[i] = cJSON_GetArrayItem(srcs, (int)i)->valuestring;
    rp_derived_opts o;
    rp_derived_opts_init(&o);
    const cJSON *it;
    if ((it = cJSON_GetObjectItem(spec, "uid_root")))
        o.uid_root = it->valuestring;
    if ((it = cJSON_GetObjectItem(spec, "description")))
        o.series_description = it->valuestring;
    if ((it = cJSON_GetObjectItem(spec, "recipe"))) {
        o.recipe = it->valuestring;
        o.derivation_description = it->valuestring;
    }
    if ((it = cJSON_GetObjectItem(spec, "physical")))
        o.values_physical = it->valueint;
    if ((it = cJSON_GetObjectItem(spec, "window"))) {
        o.window_center = cJSON_GetArrayItem(it, 0)->valuedouble;
        o.window_width = cJSON_GetArrayItem(it, 1)->valuedouble;
    }
    o.src_slice_files = src;
    o.n_src_slices = nsrc;
    rp_volume *v = NULL;
    rp_mask *masks[8] = {0};
    int nm = 0;
    const cJSON *raw = cJSON_GetObjectItem(spec, "raw");
    if (raw) {
        v = rp_volume_new(nx, ny, nz, 1);
        float *data = read_raw(raw->valuestring, (size_t)nx * ny * nz * sizeof(float));
        if (!v || !data || get_affine(spec, v->affine)) {
            free(data);
            goto out;
        }
        memcpy(v->data, data, (size_t)nx * ny * nz * sizeof(float));
        free(data);
        rp_volume_update_spacing(v);
        char **paths = NULL;
        size_t n = 0;
        if (rp_derived_write_series(&o, v, src[0],
                                    cJSON_GetObjectItem(spec, "out_dir")->valuestring, &paths, &n))
            goto out;
        for (size_t i = 0; i < n; i++)
            printf("%s\n", paths[i]);
        rp_derived_paths_free(paths, n);
    }
    const cJSON *jm = cJSON_GetObjectItem(spec, "masks");
    for (int i = 0; i < cJSON_GetArraySize(jm) && nm < 8; i++) {
        const cJSON *m = cJSON_GetArrayItem(jm, i);
        rp_mask *mk = rp_mask_new(nx, ny, nz, cJSON_GetObjectItem(m, "name")->valuestring);
        uint8_t *d = read_raw(cJSON_GetObjectItem(m, "raw")->valuestring, (size_t)nx * ny * nz);
        if (!mk || !d || get_affine(spec, mk->affine)) {
            free(d);
            rp_mask_free(mk);
            goto out;
        }
        memcpy(mk->data, d, (size_t)nx * ny * nz);
        free(d);
        masks[nm++] = mk;
    }
    if (nm) {
        const char *seg_out = cJSON_GetObjectItem(spec, "seg_out")->valuestring;
        if (rp_derived_write_seg(&o, masks, (size_t)nm, src[0], src, nsrc, seg_out))
            goto out;
        printf("%s\n", seg_out);
    }
    rc = 0;
out:
    for (int i = 0; i < nm; i++)
        rp_mask_free(masks[i]);
    rp_volume_free(v);
    free(src);
    cJSON_Delete(spec);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--spec"))
        return driver(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes_from_recipe),      cmocka_unit_test(test_series_written),
        cmocka_unit_test(test_series_errors),          cmocka_unit_test(test_seg_written),
        cmocka_unit_test(test_write_outputs_for_rule),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
