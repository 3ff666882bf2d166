/* tests/write/test_png.c — the PNG writer (pipeline/write/png.c): 8- and 16-bit grey and
 * 8-bit RGB read back with libpng give the samples written, row 0 at the top, 16-bit samples
 * in the host's order (libpng stores them big-endian); bad arguments are refused. The
 * X-ray quantization that feeds it is tested in tests/xray/test_xray_resize.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <png.h>

#include "common/common.h"
#include "pipeline/write/write.h"

static char g_dir[256];

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/rp_test_png_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The file as libpng decodes it, rows top first; 16-bit samples (big-endian in the file)
 * assembled into host order here, independently of the writer's byte swapping. */
static void *read_png(const char *path, int *w, int *h, int *channels, int *bits)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    void *out = NULL;
    if (!png || !info || setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        fclose(f);
        free(out);
        return NULL;
    }
    png_init_io(png, f);
    png_read_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    *w = (int)png_get_image_width(png, info);
    *h = (int)png_get_image_height(png, info);
    *channels = png_get_channels(png, info);
    *bits = png_get_bit_depth(png, info);
    png_bytepp rows = png_get_rows(png, info);
    size_t ns = (size_t)*w * *channels;
    out = malloc((size_t)*h * ns * (*bits / 8));
    for (int y = 0; out && y < *h; y++)
        for (size_t i = 0; i < ns; i++) {
            if (*bits == 8)
                ((uint8_t *)out)[(size_t)y * ns + i] = rows[y][i];
            else
                ((uint16_t *)out)[(size_t)y * ns + i] =
                    (uint16_t)(rows[y][2 * i] << 8 | rows[y][2 * i + 1]);
        }
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    return out;
}

static void test_grey(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/g.png", g_dir);
    const uint8_t g8[6] = {0, 255, 64, 0, 128, 255};
    assert_int_equal(rp_png_write(path, g8, 3, 2, 1, 8), 0);
    int w, h, c, bits;
    uint8_t *r8 = read_png(path, &w, &h, &c, &bits);
    assert_non_null(r8);
    assert_int_equal(w, 3);
    assert_int_equal(h, 2);
    assert_int_equal(c, 1);
    assert_int_equal(bits, 8);
    assert_memory_equal(r8, g8, sizeof g8);
    free(r8);

    const uint16_t g16[6] = {0, 65535, 16384, 1, 32768, 258};
    assert_int_equal(rp_png_write(path, g16, 3, 2, 1, 16), 0);
    uint16_t *r16 = read_png(path, &w, &h, &c, &bits);
    assert_non_null(r16);
    assert_int_equal(bits, 16);
    assert_memory_equal(r16, g16, sizeof g16);
    free(r16);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_not_equal(access(tmp, F_OK), 0); /* renamed into place */
}

static void test_rgb(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/c.png", g_dir);
    uint8_t px[2 * 2 * 3];
    for (int i = 0; i < 12; i++)
        px[i] = (uint8_t)(i * 20);
    assert_int_equal(rp_png_write(path, px, 2, 2, 3, 8), 0);
    int w, h, c, bits;
    uint8_t *r = read_png(path, &w, &h, &c, &bits);
    assert_non_null(r);
    assert_int_equal(c, 3);
    assert_memory_equal(r, px, sizeof px);
    free(r);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/bad.png", g_dir);
    uint8_t px[4] = {0};
    assert_int_equal(rp_png_write(path, px, 2, 2, 1, 12), RP_EINVAL);
    assert_int_equal(rp_png_write(path, px, 0, 2, 1, 8), RP_EINVAL);
    assert_int_equal(rp_png_write(path, px, 2, 2, 5, 8), RP_EINVAL);
    assert_int_equal(rp_png_write(path, NULL, 2, 2, 1, 8), RP_EINVAL);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/no/such/dir/x.png", g_dir);
    assert_int_equal(rp_png_write(path, px, 2, 2, 1, 8), RP_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grey),
        cmocka_unit_test(test_rgb),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
