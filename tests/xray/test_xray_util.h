/* Helpers shared by the X-ray kernel tests: temp dirs, raw files, running the OpenCV /
 * scikit-image reference script (xray_cv_ref.py) on the same arrays, a deterministic PRNG
 * and synthetic radiograph-like images. Header-only, for tests/xray/test_xray*.c and
 * test_clahe*.c. */
#ifndef RP_TEST_XRAY_UTIL_H
#define RP_TEST_XRAY_UTIL_H

#include <libgen.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char xt_dir[256];

static const char *xt_tmpdir(void)
{
    if (!xt_dir[0]) {
        snprintf(xt_dir, sizeof xt_dir, "/tmp/rp_xray_test_XXXXXX");
        if (!mkdtemp(xt_dir))
            abort();
    }
    return xt_dir;
}

static void xt_cleanup(void)
{
    if (xt_dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", xt_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "cleanup of %s failed\n", xt_dir);
    }
}

static int xt_write(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(p, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

static int xt_read(const char *path, void *p, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t r = fread(p, 1, n, f);
    fclose(f);
    return r == n ? 0 : -1;
}

/* Path of xray_cv_ref.py: $RP_SOURCE_DIR/tests/xray, else next to this file. */
static const char *xt_script(void)
{
    static char path[1024];
    const char *src = getenv("RP_SOURCE_DIR");
    if (src && *src) {
        snprintf(path, sizeof path, "%s/tests/xray/xray_cv_ref.py", src);
    } else {
        char here[1024];
        snprintf(here, sizeof here, "%s", __FILE__);
        snprintf(path, sizeof path, "%s/xray_cv_ref.py", dirname(here));
    }
    return path;
}

/* Run the reference script with `args` (already formatted). 0 on success. */
static int xt_ref(const char *args)
{
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%.1024s' %.2900s", xt_script(), args);
    int rc = system(cmd);
    if (rc != 0)
        fprintf(stderr, "reference failed (%d): %s\n", rc, cmd);
    return rc;
}

static uint64_t xt_rng = 0x9E3779B97F4A7C15ull;
static double xt_rand(void) /* 0..1, xorshift64* */
{
    xt_rng ^= xt_rng >> 12;
    xt_rng ^= xt_rng << 25;
    xt_rng ^= xt_rng >> 27;
    return (double)((xt_rng * 2685821657736338717ull) >> 11) / 9007199254740992.0;
}

/* A radiograph-like float image in 0..1: dark background, a bright body ellipse with
 * darker "lungs", a bright "spine", ribs-like stripes, gradient and noise. */
static void xt_phantom(float *img, int w, int h, double noise)
{
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            double u = (x + 0.5) / w - 0.5, v = (y + 0.5) / h - 0.5;
            double val = 0.05 + 0.05 * v;
            if (u * u / 0.16 + v * v / 0.2 < 1) {
                val = 0.55;
                double lu = fabs(u) - 0.18, lv = v + 0.02;
                if (lu * lu / 0.012 + lv * lv / 0.08 < 1)
                    val = 0.25 + 0.08 * sin(y * 0.15);
                if (fabs(u) < 0.04)
                    val = 0.85;
            }
            val += noise * (xt_rand() - 0.5);
            img[(size_t)y * w + x] = (float)(val < 0 ? 0 : val > 1 ? 1 : val);
        }
    }
}

#endif
