/* tests/volume/ref_util.h — helpers for pipeline tests that compare with a Python
 * reference (Debian's NumPy/SciPy via /usr/bin/python3 tests/volume/ref/ndimage_ref.py). */
#ifndef RP_TESTS_PIPELINE_REF_UTIL_H
#define RP_TESTS_PIPELINE_REF_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/volume/volume.h"

static char g_tmpdir[512];

static const char *ref_tmpdir(void)
{
    if (!g_tmpdir[0]) {
        snprintf(g_tmpdir, sizeof g_tmpdir, "/tmp/rp_pipeline_test_XXXXXX");
        if (!mkdtemp(g_tmpdir))
            abort();
    }
    return g_tmpdir;
}

__attribute__((unused)) static void ref_cleanup(void)
{
    if (g_tmpdir[0]) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmpdir);
        if (system(cmd) != 0) {
        }
        g_tmpdir[0] = '\0';
    }
}

__attribute__((unused)) static int write_raw(const char *path, const float *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(d, sizeof(float), n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

/* Run the reference op on v (channel 0); returns a new malloc'd float array and its dims. */
__attribute__((unused)) static float *ref_run(const char *op, const rp_volume *v, const char *extra,
                                              int out_dim[3])
{
    char in[700], out[700], cmd[2400], shp[720];
    const char *src = getenv("RP_SOURCE_DIR");
    snprintf(in, sizeof in, "%s/%s_in.f32", ref_tmpdir(), op);
    snprintf(out, sizeof out, "%s/%s_out.f32", ref_tmpdir(), op);
    if (write_raw(in, v->data, rp_volume_nvox(v)) != 0)
        return NULL;
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/tests/volume/ref/ndimage_ref.py %s %s %d %d %d %s %s",
             src ? src : ".", op, in, v->dim[0], v->dim[1], v->dim[2], out, extra ? extra : "");
    if (system(cmd) != 0)
        return NULL;
    snprintf(shp, sizeof shp, "%s.shape", out);
    FILE *f = fopen(shp, "r");
    if (!f || fscanf(f, "%d %d %d", &out_dim[0], &out_dim[1], &out_dim[2]) != 3) {
        if (f)
            fclose(f);
        return NULL;
    }
    fclose(f);
    size_t n = (size_t)out_dim[0] * out_dim[1] * out_dim[2];
    float *r = malloc(n * sizeof *r);
    f = fopen(out, "rb");
    if (!r || !f || fread(r, sizeof(float), n, f) != n) {
        free(r);
        if (f)
            fclose(f);
        return NULL;
    }
    fclose(f);
    return r;
}

/* deterministic pseudo-random numbers (xorshift) */
static unsigned long long g_rng = 88172645463325252ULL;
static double rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / 9007199254740992.0;
}
__attribute__((unused)) static double rnd_normal(void)
{
    double u = rnd() + 1e-12, w = rnd();
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * w);
}

#endif
