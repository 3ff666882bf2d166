/*
 * bench/ct/rp_ct_run.c — run a recipe on a raw float32 volume, the way process.c runs it on
 * an assembled series, and report timings and peak memory.
 *
 *   rp_ct_run --in VOL.f32 --dim NX,NY,NZ --affine a00,a01,a02,a03,a10,...,a23
 *             --recipe "hu resample(1,1,1,bspline3) ..." --out DIR [--stem S]
 *             [--modality CT] [--no-write]
 *
 * Writes DIR/S.f32 (the result, x fastest), DIR/S_<mask>.u8 for each mask, DIR/S_qc.json (the
 * QC report: resolved steps, recipe hash, per-step before/after statistics and ms, masks,
 * findings, peak RSS) and, through the runner, DIR/S_qc.png (the QC montage). Prints one JSON
 * line with the figures.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/common.h"
#include "pipeline/recipe/recipe.h"
#include "pipeline/write/write.h"

/* Peak resident memory of this program. VmHWM belongs to this address space; getrusage's
 * ru_maxrss would also count the parent's pages inherited across fork + exec. */
static long peak_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    if (kb < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kb = ru.ru_maxrss;
    }
    return kb;
}

static int parse_list(const char *s, double *out, int n)
{
    for (int i = 0; i < n; i++) {
        char *end;
        out[i] = strtod(s, &end);
        if (end == s)
            return -1;
        s = *end == ',' ? end + 1 : end;
    }
    return 0;
}

static int write_file(const char *path, const void *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(d, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

int main(int argc, char **argv)
{
    const char *in = NULL, *recipe_text = NULL, *out = NULL, *stem = "out", *modality = "CT";
    double dimd[3] = {0}, aff[12] = {1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0};
    int do_write = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--no-write")) {
            do_write = 0;
            continue;
        }
        if (!v) {
            fprintf(stderr, "missing value for %s\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--in"))
            in = v;
        else if (!strcmp(a, "--recipe"))
            recipe_text = v;
        else if (!strcmp(a, "--out"))
            out = v;
        else if (!strcmp(a, "--stem"))
            stem = v;
        else if (!strcmp(a, "--modality"))
            modality = v;
        else if (!strcmp(a, "--dim")) {
            if (parse_list(v, dimd, 3))
                return 2;
        } else if (!strcmp(a, "--affine")) {
            if (parse_list(v, aff, 12))
                return 2;
        } else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    if (!in || !recipe_text || !out || dimd[0] < 1 || dimd[1] < 1 || dimd[2] < 1) {
        fprintf(stderr, "usage: rp_ct_run --in F.f32 --dim NX,NY,NZ --affine 12 numbers "
                        "--recipe TEXT --out DIR [--stem S] [--modality CT] [--no-write]\n");
        return 2;
    }
    char err[1024];
    rp_recipe *r;
    if (rp_recipe_parse(recipe_text, &r, err, sizeof err) != 0) {
        fprintf(stderr, "recipe: %s\n", err);
        return 3;
    }
    double t0 = rp_mono_s();
    rp_volume *v = rp_volume_new((int)dimd[0], (int)dimd[1], (int)dimd[2], 1);
    if (!v)
        return 4;
    FILE *f = fopen(in, "rb");
    size_t n = rp_volume_nvox(v);
    if (!f || fread(v->data, sizeof(float), n, f) != n) {
        fprintf(stderr, "cannot read %s: %s\n", in, strerror(errno));
        return 4;
    }
    fclose(f);
    for (int i = 0; i < 12; i++)
        v->affine[i / 4][i % 4] = aff[i];
    rp_volume_update_spacing(v);
    double t_load = rp_mono_s() - t0;
    rp_series_info info = {0};
    rp_strlcpy(info.modality, modality, sizeof info.modality);
    cJSON *qc = cJSON_CreateObject();
    rp_step_ctx ctx = {.vol = v,
                       .info = &info,
                       .qc = qc,
                       .out_dir = out,
                       .out_stem = stem,
                       .writers = rp_write_step_writers(),
                       .extra_outputs = cJSON_AddArrayToObject(qc, "extra_outputs")};
    char hex[65] = "";
    rp_recipe_hash(r, hex);
    cJSON_AddStringToObject(qc, "recipe_text", recipe_text);
    cJSON_AddItemToObject(qc, "recipe", rp_recipe_describe(r));
    cJSON_AddStringToObject(qc, "recipe_sha256", hex);
    rp_mkdir_p(out, 0755);
    double t1 = rp_mono_s();
    int rc = rp_recipe_run(r, &ctx);
    double t_run = rp_mono_s() - t1;
    if (rc) {
        fprintf(stderr, "run: %s\n", ctx.err);
        return 5;
    }
    double t2 = rp_mono_s();
    char path[4096];
    if (do_write) {
        snprintf(path, sizeof path, "%s/%s.f32", out, stem);
        if (write_file(path, ctx.vol->data,
                       rp_volume_nvox(ctx.vol) * ctx.vol->dim[3] * sizeof(float)))
            return 6;
        for (int i = 0; i < ctx.n_masks; i++) {
            rp_mask *m = ctx.masks[i];
            snprintf(path, sizeof path, "%s/%s_%s.u8", out, stem, m->name);
            if (write_file(path, m->data, (size_t)m->dim[0] * m->dim[1] * m->dim[2]))
                return 6;
        }
    }
    double t_write = rp_mono_s() - t2;
    /* the runner wrote DIR/S_qc.png (the QC montage) at the end of rp_recipe_run */
    snprintf(path, sizeof path, "%s/%s_qc.png", out, stem);
    int prc = access(path, R_OK) == 0 ? 0 : 1;
    cJSON *perf = cJSON_AddObjectToObject(qc, "perf");
    cJSON_AddNumberToObject(perf, "load_s", t_load);
    cJSON_AddNumberToObject(perf, "run_s", t_run);
    cJSON_AddNumberToObject(perf, "write_s", t_write);
    cJSON_AddNumberToObject(perf, "peak_rss_mb", peak_rss_kb() / 1024.0);
    cJSON_AddItemToObject(perf, "out_dim", cJSON_CreateIntArray(ctx.vol->dim, 4));
    double aff_out[12];
    for (int i = 0; i < 12; i++)
        aff_out[i] = ctx.vol->affine[i / 4][i % 4];
    cJSON_AddItemToObject(perf, "out_affine", cJSON_CreateDoubleArray(aff_out, 12));
    cJSON_AddNumberToObject(perf, "out_float32_mb",
                            rp_volume_nvox(ctx.vol) * ctx.vol->dim[3] * 4.0 / 1048576.0);
    char *txt = cJSON_Print(qc);
    snprintf(path, sizeof path, "%s/%s_qc.json", out, stem);
    write_file(path, txt, strlen(txt));
    free(txt);
    txt = cJSON_PrintUnformatted(perf);
    printf("%s\n", txt);
    free(txt);
    cJSON_Delete(qc);
    rp_step_ctx_release(&ctx);
    rp_recipe_free(r);
    return prc ? 7 : 0;
}
