/* bench/register/rp_reg_bench.c — phantom pairs for bench/register/bench_register.py and
 * radprep's registration on them.
 *
 *   rp_reg_bench gen DIR        writes DIR/fixed.raw (float32, T1-like, 1 mm), DIR/mask.raw
 *                               (uint8 head mask, the samples' region for both tools),
 *                               DIR/moving_K.raw (T2-like, 1.5x1.5x3 mm, the head moved by a known
 *                               rigid transform) and DIR/cases.json (grids, truths, centre)
 *   rp_reg_bench run DIR K REPS runs rp_register_rigid on case K REPS times; prints JSON (the
 *                               matrix, best seconds, iterations, samples, MI)
 *
 * Grids are axis-aligned: voxel (i,j,k) sits at origin + spacing * index, so the world of these
 * files is the same for radprep (RAS affine) and ITK (identity direction).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/register/register.h"
#include "tests/register/reg_phantom.h"

static const int FDIM[3] = {176, 208, 176};
static const double FSP[3] = {1.0, 1.0, 1.0};
static const int MDIM[3] = {128, 150, 64};
static const double MSP[3] = {1.5, 1.5, 3.0};
/* rx ry rz (deg), tx ty tz (mm): up to 10 degrees and 10 mm */
static const double CASES[][6] = {
    {3, -2, 5, 4, -3, 2},
    {10, 0, 0, 0, 10, 0},
    {0, -10, 0, -10, 0, 0},
    {0, 0, 10, 5, 5, -5},
    {-6, 8, -10, -5, 4, 6},
};
#define NCASES ((int)(sizeof CASES / sizeof CASES[0]))

static int write_raw(const char *dir, const char *name, const void *p, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, bytes, f) != bytes) {
        perror(path);
        if (f)
            fclose(f);
        return -1;
    }
    return fclose(f);
}

static int read_raw(const char *dir, const char *name, void *p, size_t bytes)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f || fread(p, 1, bytes, f) != bytes) {
        perror(path);
        if (f)
            fclose(f);
        return -1;
    }
    fclose(f);
    return 0;
}

static void print_mat(FILE *f, const double m[4][4])
{
    fprintf(f, "[");
    for (int r = 0; r < 4; r++)
        fprintf(f, "%s[%.10g,%.10g,%.10g,%.10g]", r ? "," : "", m[r][0], m[r][1], m[r][2], m[r][3]);
    fprintf(f, "]");
}

static void grid_json(FILE *f, const rp_volume *v)
{
    fprintf(f, "{\"dim\":[%d,%d,%d],\"spacing\":[%g,%g,%g],\"origin\":[%.10g,%.10g,%.10g]}",
            v->dim[0], v->dim[1], v->dim[2], v->spacing[0], v->spacing[1], v->spacing[2],
            v->affine[0][3], v->affine[1][3], v->affine[2][3]);
}

static int gen(const char *dir)
{
    rp_volume *fx = rph_render(FDIM[0], FDIM[1], FDIM[2], FSP, RPH_T1, NULL, 0, 2.0, 11);
    rp_volume *hd = rph_render(FDIM[0], FDIM[1], FDIM[2], FSP, RPH_HEAD, NULL, 0, 0, 0);
    if (!fx || !hd)
        return 1;
    size_t n = rp_volume_nvox(fx);
    uint8_t *m = malloc(n);
    double c[3] = {0}, cnt = 0;
    for (int z = 0; z < FDIM[2]; z++)
        for (int y = 0; y < FDIM[1]; y++)
            for (int x = 0; x < FDIM[0]; x++) {
                size_t i = x + (size_t)FDIM[0] * (y + (size_t)FDIM[1] * z);
                m[i] = hd->data[i] > 0.5f;
                if (m[i]) {
                    c[0] += x;
                    c[1] += y;
                    c[2] += z;
                    cnt++;
                }
            }
    for (int a = 0; a < 3; a++)
        c[a] = fx->affine[a][3] + FSP[a] * c[a] / cnt;
    if (write_raw(dir, "fixed.raw", fx->data, n * 4) || write_raw(dir, "mask.raw", m, n))
        return 1;
    char path[4096];
    snprintf(path, sizeof path, "%s/cases.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"fixed\":");
    grid_json(f, fx);
    fprintf(f, ",\"mask_voxels\":%.0f,\"center\":[%.10g,%.10g,%.10g],\"cases\":[", cnt, c[0],
            c[1], c[2]);
    for (int k = 0; k < NCASES; k++) {
        double G[4][4];
        const double zero[3] = {0, 0, 0};
        rp_reg_compose(CASES[k], CASES[k] + 3, NULL, zero, G);
        rp_volume *mv = rph_render(MDIM[0], MDIM[1], MDIM[2], MSP, RPH_T2, G, 0, 3.0, 100 + k);
        char name[64];
        snprintf(name, sizeof name, "moving_%d.raw", k);
        if (!mv || write_raw(dir, name, mv->data, rp_volume_nvox(mv) * 4))
            return 1;
        fprintf(f, "%s{\"file\":\"%s\",\"rotation_deg\":[%g,%g,%g],\"translation_mm\":[%g,%g,%g],"
                   "\"grid\":",
                k ? "," : "", name, CASES[k][0], CASES[k][1], CASES[k][2], CASES[k][3],
                CASES[k][4], CASES[k][5]);
        grid_json(f, mv);
        fprintf(f, ",\"truth\":");
        print_mat(f, G);
        fprintf(f, "}");
        rp_volume_free(mv);
    }
    fprintf(f, "]}\n");
    fclose(f);
    rp_volume_free(fx);
    rp_volume_free(hd);
    free(m);
    return 0;
}

static rp_volume *grid(const int d[3], const double sp[3])
{
    rp_volume *v = rp_volume_new(d[0], d[1], d[2], 1);
    for (int a = 0; a < 3; a++) {
        v->affine[a][a] = sp[a];
        v->affine[a][3] = -0.5 * (d[a] - 1) * sp[a];
    }
    rp_volume_update_spacing(v);
    return v;
}

static int run(const char *dir, int k, int reps, int dof)
{
    rp_volume *fx = grid(FDIM, FSP), *mv = grid(MDIM, MSP);
    rp_mask *m = rp_mask_new(FDIM[0], FDIM[1], FDIM[2], "head");
    char name[64];
    snprintf(name, sizeof name, "moving_%d.raw", k);
    if (read_raw(dir, "fixed.raw", fx->data, rp_volume_nvox(fx) * 4) ||
        read_raw(dir, "mask.raw", m->data, rp_volume_nvox(fx)) ||
        read_raw(dir, name, mv->data, rp_volume_nvox(mv) * 4))
        return 1;
    rp_reg_params p;
    rp_reg_defaults(&p);
    p.dof = dof;
    if (getenv("RP_REG_SAMPLES")) /* for exploring the parameters */
        p.max_samples = (size_t)atol(getenv("RP_REG_SAMPLES"));
    if (getenv("RP_REG_BINS"))
        p.bins = atoi(getenv("RP_REG_BINS"));
    rp_reg_result best, r;
    double tbest = 1e30;
    for (int i = 0; i < reps; i++) {
        char err[256];
        if (rp_register_rigid(fx, m, mv, &p, &r, err, sizeof err) != 0) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        if (r.seconds < tbest) {
            tbest = r.seconds;
            best = r;
        }
    }
    printf("{\"seconds\":%.4f,\"matrix\":", tbest);
    print_mat(stdout, best.matrix);
    printf(",\"iterations\":[%d,%d,%d],\"samples\":[%zu,%zu,%zu],\"mi_initial\":%.5f,"
           "\"mi_final\":%.5f,\"center\":[%g,%g,%g]}\n",
           best.iterations[0], best.iterations[1], best.iterations[2], best.samples[0],
           best.samples[1], best.samples[2], best.mi_initial, best.mi_final, best.center_mm[0],
           best.center_mm[1], best.center_mm[2]);
    rp_volume_free(fx);
    rp_volume_free(mv);
    rp_mask_free(m);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "gen") == 0)
        return gen(argv[2]);
    if (argc >= 5 && strcmp(argv[1], "run") == 0)
        return run(argv[2], atoi(argv[3]), atoi(argv[4]), argc >= 6 ? atoi(argv[5]) : 6);
    fprintf(stderr, "usage: rp_reg_bench gen DIR | run DIR CASE REPS [DOF]\n");
    return 2;
}
