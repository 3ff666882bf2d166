/* rp_xr_bench — times the X-ray chain on one raw image of stored values (uint16, row-major):
 * present (Modality LUT identity, VOI window/LUT/min-max, MONOCHROME1) -> CLAHE (8-bit,
 * OpenCV definition) -> resize (area) so the longer side is SIZE -> pad to SIZE x SIZE.
 * The input is converted to float32 first (the pipeline's volume type) outside the timing.
 *
 * usage: rp_xr_bench RAW W H [--invert] [--window C W LINEAR|LINEAR_EXACT|SIGMOID]
 *                    [--lut FILE N FIRST BITS] [--pad LO HI] [--clip 2.0] [--tiles 8]
 *                    [--range LO HI] [--size 1024] [--reps 7] [--out OUT.raw]
 * --range: the stored-value range the header declares (what the present step passes).
 * Prints one JSON line: {"ms_median":..,"ms_min":..,"cpu_ms_median":..,"rss_peak_mb":..,
 * "rss_extra_mb":..} (cpu = process CPU time of the chain, all threads).
 * where rss_extra is the peak RSS growth over the loaded input (the chain's working memory).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "pipeline/xray/xray.h"

/* Peak RSS of this process image (VmHWM; ru_maxrss would carry the parent's over exec). */
static double rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb / 1024.0;
}

/* CPU seconds of the whole process (all threads): less sensitive to a busy machine. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: see the comment at the top of rp_xr_bench.c\n");
        return 2;
    }
    const char *raw = argv[1], *out = NULL;
    const int w = atoi(argv[2]), h = atoi(argv[3]);
    rp_xr_present_params p0;
    memset(&p0, 0, sizeof p0);
    double clip = 2.0;
    int tiles = 8, size = 1024, reps = 7;
    uint16_t *lut = NULL;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--invert")) {
            p0.invert = 1;
        } else if (!strcmp(argv[i], "--window") && i + 3 < argc) {
            p0.voi.center = atof(argv[++i]);
            p0.voi.width = atof(argv[++i]);
            const char *fn = argv[++i];
            p0.voi.kind = !strcmp(fn, "SIGMOID")        ? RP_XR_VOI_SIGMOID
                          : !strcmp(fn, "LINEAR_EXACT") ? RP_XR_VOI_LINEAR_EXACT
                                                        : RP_XR_VOI_LINEAR;
        } else if (!strcmp(argv[i], "--lut") && i + 4 < argc) {
            const char *f = argv[++i];
            int n = atoi(argv[++i]);
            p0.voi.kind = RP_XR_VOI_LUT;
            p0.voi.lut.n = n;
            p0.voi.lut.first = atoi(argv[++i]);
            p0.voi.lut.bits = atoi(argv[++i]);
            lut = malloc(sizeof(uint16_t) * n);
            FILE *fp = fopen(f, "rb");
            if (!fp || fread(lut, 2, n, fp) != (size_t)n) {
                fprintf(stderr, "cannot read %s\n", f);
                return 1;
            }
            fclose(fp);
            p0.voi.lut.data = lut;
        } else if (!strcmp(argv[i], "--pad") && i + 2 < argc) {
            p0.has_padding = 1;
            p0.padding_lo = atof(argv[++i]);
            p0.padding_hi = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--range") && i + 2 < argc) {
            p0.has_range = 1;
            p0.range_lo = atof(argv[++i]);
            p0.range_hi = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--clip") && i + 1 < argc) {
            clip = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--tiles") && i + 1 < argc) {
            tiles = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
            size = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out = argv[++i];
        } else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    const size_t n = (size_t)w * h;
    uint16_t *stored = malloc(n * 2);
    FILE *fp = fopen(raw, "rb");
    if (!stored || !fp || fread(stored, 2, n, fp) != n) {
        fprintf(stderr, "cannot read %s\n", raw);
        return 1;
    }
    fclose(fp);
    rp_volume *src = rp_volume_new(w, h, 1, 1);
    for (size_t i = 0; i < n; i++)
        src->data[i] = stored[i];
    free(stored);
    const double rss0 = rss_mb();

    double *ms = calloc((size_t)reps + 1, sizeof *ms);
    double *cpu = calloc((size_t)reps + 1, sizeof *cpu);
    rp_volume *res = NULL;
    int ow, oh;
    rp_xr_fit_size(w, h, size, &ow, &oh);
    for (int r = 0; r <= reps; r++) { /* run 0 warms up */
        rp_volume_free(res);
        res = NULL;
        rp_volume *v = rp_volume_clone(src); /* the step works in place on its volume */
        rp_xr_present_params p = p0;
        double t = rp_mono_s(), c0 = cpu_s(), t1, t2, t3;
        int rc = rp_xr_present_f32(v->data, n, &p, NULL);
        t1 = cpu_s();
        if (rc == 0)
            rc = rp_xr_clahe_f32(v->data, w, h, clip, tiles, tiles, 8, 0, NULL);
        t2 = cpu_s();
        /* as the steps do: no new volume when the size is already right */
        if (rc == 0 && (ow != w || oh != h)) {
            rp_volume *o = rp_xr_resize_volume_new(v, ow, oh, RP_XR_RESIZE_AREA);
            rp_volume_free(v);
            v = o;
        }
        t3 = cpu_s();
        if (rc == 0 && v && (ow != size || oh != size)) {
            rp_volume *o =
                rp_xr_pad_volume_new(v, size, size, (size - ow) / 2, (size - oh) / 2, 0.0f);
            rp_volume_free(v);
            v = o;
        }
        ms[r] = (rp_mono_s() - t) * 1000.0;
        cpu[r] = (cpu_s() - c0) * 1000.0;
        if (getenv("RP_XR_BENCH_STAGES"))
            fprintf(stderr, "cpu: present %.2f clahe %.2f resize %.2f pad %.2f ms\n",
                    (t1 - c0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (cpu_s() - t3) * 1e3);
        if (rc == 0)
            res = v;
        else
            rp_volume_free(v);
        if (!res) {
            fprintf(stderr, "chain failed\n");
            return 1;
        }
    }
    if (out) {
        uint8_t *o8 = malloc((size_t)size * size);
        for (size_t i = 0; i < (size_t)size * size; i++) {
            float x = res->data[i];
            o8[i] = (uint8_t)lrintf((x < 0 ? 0 : x > 1 ? 1 : x) * 255.0f);
        }
        fp = fopen(out, "wb");
        if (fp) {
            fwrite(o8, 1, (size_t)size * size, fp);
            fclose(fp);
        }
        free(o8);
    }
    qsort(ms + 1, reps, sizeof *ms, cmp_d);
    qsort(cpu + 1, reps, sizeof *cpu, cmp_d);
    printf("{\"ms_median\": %.3f, \"ms_min\": %.3f, \"cpu_ms_median\": %.3f, "
           "\"rss_peak_mb\": %.1f, \"rss_extra_mb\": %.1f}\n",
           ms[1 + reps / 2], ms[1], cpu[1 + reps / 2], rss_mb(), rss_mb() - rss0);
    free(cpu);
    rp_volume_free(res);
    rp_volume_free(src);
    free(ms);
    free(lut);
    return 0;
}
