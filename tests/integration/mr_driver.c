/*
 * tests/integration/mr_driver.c — a small driver the MR integration tests and bench/mr build
 * against the static libraries, so real series decoded by pydicom can go through the C kernels
 * (float32 raw + JSON geometry in, raw + JSON out). Not part of the product.
 *
 *   mr_driver n4 DIR [shrink levels iters spline_mm]   DIR/in0.{json,raw} -> corrected, field,
 *                                                      mask raws + report JSON on stdout
 *   mr_driver fuse DIR N REF ORDER                     DIR/in0..in{N-1} -> DIR/fused.raw/json
 *                                                      and DIR/nnunet/case_000c.nii.gz
 *   mr_driver montage DIR                              before/after PNG of the n4 outputs
 *   mr_driver phantom DIR nx ny nz spacing_mm amp      the test phantom (mr_phantom.h) as
 *                                                      in0 + truth_logf.raw + label.raw
 * n4 uses DIR/inmask.raw (uint8) as the mask when present, else the Otsu foreground.
 *
 * in<i>.json: {"dim":[nx,ny,nz], "affine":[[4 numbers] x4]}; raw: float32, x fastest.
 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/mr/mr.h"
#include "pipeline/write/write.h"
#include "tests/mr/mr_phantom.h"

static rp_volume *load(const char *dir, int i)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/in%d.json", dir, i);
    char *txt;
    size_t len;
    if (rp_read_file(p, &txt, &len))
        return NULL;
    cJSON *o = cJSON_Parse(txt);
    free(txt);
    if (!o)
        return NULL;
    cJSON *d = cJSON_GetObjectItem(o, "dim"), *a = cJSON_GetObjectItem(o, "affine");
    int dim[3];
    for (int k = 0; k < 3; k++)
        dim[k] = cJSON_GetArrayItem(d, k)->valueint;
    rp_volume *v = rp_volume_new(dim[0], dim[1], dim[2], 1);
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 4; c++)
            v->affine[r][c] = cJSON_GetArrayItem(cJSON_GetArrayItem(a, r), c)->valuedouble;
    rp_volume_update_spacing(v);
    cJSON_Delete(o);
    snprintf(p, sizeof p, "%s/in%d.raw", dir, i);
    FILE *f = fopen(p, "rb");
    size_t n = rp_volume_nvox(v);
    if (!f || fread(v->data, sizeof(float), n, f) != n) {
        fprintf(stderr, "cannot read %s\n", p);
        exit(2);
    }
    fclose(f);
    return v;
}

static void save(const char *dir, const char *name, const void *data, size_t bytes)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, bytes, f) != bytes) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(2);
    }
    fclose(f);
}

static double cv_in(const float *v, const uint8_t *m, size_t n)
{
    double s = 0, s2 = 0;
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (m[i]) {
            s += v[i];
            s2 += (double)v[i] * v[i];
            c++;
        }
    double mu = s / c;
    return sqrt(fmax(0, s2 / c - mu * mu)) / mu;
}

static int cmd_n4(int argc, char **argv)
{
    const char *dir = argv[2];
    rp_volume *v = load(dir, 0);
    if (!v)
        return 2;
    rp_n4_params p;
    rp_n4_defaults(&p);
    if (argc > 3)
        p.shrink = atoi(argv[3]);
    if (argc > 4)
        p.levels = atoi(argv[4]);
    if (argc > 5)
        for (int l = 0; l < RP_N4_MAX_LEVELS; l++)
            p.iterations[l] = atoi(argv[5]);
    if (argc > 6)
        p.spline_mm = atof(argv[6]);
    char err[256] = "";
    rp_mr_fg_params fp;
    rp_mr_fg_defaults(&fp, 0);
    rp_mask *m = NULL;
    double t0 = rp_mono_s();
    char mp[4096];
    snprintf(mp, sizeof mp, "%s/inmask.raw", dir);
    FILE *mf = fopen(mp, "rb");
    int rc = 0;
    if (mf) {
        m = rp_mask_like(v, "foreground");
        if (fread(m->data, 1, rp_volume_nvox(v), mf) != rp_volume_nvox(v))
            rc = RP_EIO;
        fclose(mf);
    } else
        rc = rp_mr_foreground(v, &fp, "foreground", &m, err, sizeof err);
    double t_mask = rp_mono_s() - t0;
    if (rc) {
        fprintf(stderr, "foreground: %s\n", err);
        return 1;
    }
    rp_volume *c = NULL, *f = NULL;
    rp_n4_report rep;
    t0 = rp_mono_s();
    rc = rp_n4_correct(v, m, &p, &c, &f, &rep, err, sizeof err);
    double t_n4 = rp_mono_s() - t0;
    if (rc) {
        fprintf(stderr, "n4: %s\n", err);
        return 1;
    }
    size_t n = rp_volume_nvox(v);
    save(dir, "corrected.raw", c->data, n * 4);
    save(dir, "field.raw", f->data, n * 4);
    save(dir, "mask.raw", m->data, n);
    printf("{\"seconds\": %.4f, \"mask_seconds\": %.4f, \"mask_voxels\": %zu, "
           "\"cv_before\": %.5f, \"cv_after\": %.5f, \"lattice\": [%d,%d,%d], "
           "\"iterations\": [%d,%d,%d,%d], \"shrunk\": [%d,%d,%d]}\n",
           t_n4, t_mask, rp_mask_count(m), cv_in(v->data, m->data, n), cv_in(c->data, m->data, n),
           rep.lattice[0], rep.lattice[1], rep.lattice[2], rep.iterations[0], rep.iterations[1],
           rep.iterations[2], rep.iterations[3], rep.shrunk[0], rep.shrunk[1], rep.shrunk[2]);
    rp_volume_free(v);
    rp_volume_free(c);
    rp_volume_free(f);
    rp_mask_free(m);
    return 0;
}

static int cmd_fuse(char **argv)
{
    const char *dir = argv[2];
    int n = atoi(argv[3]), ref = atoi(argv[4]), order = atoi(argv[5]);
    rp_volume *in[16];
    for (int i = 0; i < n; i++)
        if (!(in[i] = load(dir, i)))
            return 2;
    rp_volume *o = NULL;
    int rc = rp_mr_fuse((const rp_volume *const *)in, n, ref, order, &o);
    if (rc) {
        fprintf(stderr, "fuse: %s\n", rp_strerror(rc));
        return 1;
    }
    save(dir, "fused.raw", o->data, rp_volume_nvox(o) * o->dim[3] * 4);
    char p[4096], err[256] = "";
    snprintf(p, sizeof p, "%s/nnunet", dir);
    if ((rc = rp_nifti_write_nnunet(o, p, "case", err, sizeof err)) != 0) {
        fprintf(stderr, "nnunet layout: %s\n", err);
        return 1;
    }
    snprintf(p, sizeof p, "%s/fused.json", dir);
    FILE *f = fopen(p, "w");
    fprintf(f, "{\"dim\": [%d,%d,%d,%d], \"affine\": [", o->dim[0], o->dim[1], o->dim[2],
            o->dim[3]);
    for (int r = 0; r < 4; r++)
        fprintf(f, "%s[%.17g,%.17g,%.17g,%.17g]", r ? "," : "", o->affine[r][0], o->affine[r][1],
                o->affine[r][2], o->affine[r][3]);
    fprintf(f, "]}\n");
    fclose(f);
    for (int i = 0; i < n; i++)
        rp_volume_free(in[i]);
    rp_volume_free(o);
    return 0;
}

/* before | after, middle slice of each axis, each scaled by its own 99.5th percentile */
static int cmd_montage(char **argv)
{
    const char *dir = argv[2];
    rp_volume *v = load(dir, 0);
    if (!v)
        return 2;
    size_t n = rp_volume_nvox(v);
    rp_volume *c = rp_volume_clone(v);
    char p[4096];
    snprintf(p, sizeof p, "%s/corrected.raw", dir);
    FILE *f = fopen(p, "rb");
    if (!f || fread(c->data, 4, n, f) != n)
        return 2;
    fclose(f);
    const int nx = v->dim[0], ny = v->dim[1], nz = v->dim[2];
    /* three orthogonal mid slices side by side: (ny x nz), (nx x nz), (nx x ny) */
    int W = ny + nx + nx, H = nz > ny ? nz : ny;
    uint8_t *img = calloc((size_t)W * 2 * H, 1);
    const rp_volume *src[2] = {v, c};
    for (int s = 0; s < 2; s++) {
        float *tmp = malloc(n * 4);
        memcpy(tmp, src[s]->data, n * 4);
        /* crude percentile by sampling */
        double mx = 0;
        for (size_t i = 0; i < n; i++)
            mx = tmp[i] > mx ? tmp[i] : mx;
        size_t hist[1024] = {0}, tot = 0;
        for (size_t i = 0; i < n; i++)
            if (tmp[i] > 0) {
                hist[(int)(tmp[i] / mx * 1023)]++;
                tot++;
            }
        double top = mx;
        for (size_t k = 0, acc = 0; k < 1024; k++) {
            acc += hist[k];
            if (acc >= 0.995 * tot) {
                top = (k + 1) * mx / 1023;
                break;
            }
        }
        free(tmp);
        const float *d = src[s]->data;
#define PIX(val) (uint8_t)((val) <= 0 ? 0 : (val) >= top ? 255 : (int)((val) / top * 255))
        for (int z = 0; z < nz; z++)
            for (int y = 0; y < ny; y++)
                img[(size_t)(H - 1 - z) * W * 2 + s * W + y] =
                    PIX(d[nx / 2 + (size_t)nx * (y + (size_t)ny * z)]);
        for (int z = 0; z < nz; z++)
            for (int x = 0; x < nx; x++)
                img[(size_t)(H - 1 - z) * W * 2 + s * W + ny + x] =
                    PIX(d[x + (size_t)nx * (ny / 2 + (size_t)ny * z)]);
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++)
                img[(size_t)(H - 1 - y) * W * 2 + s * W + ny + nx + x] =
                    PIX(d[x + (size_t)nx * (y + (size_t)ny * (nz / 2))]);
#undef PIX
    }
    snprintf(p, sizeof p, "%s/n4_before_after.png", dir);
    int rc = rp_png_write(p, img, 2 * W, H, 1, 8);
    free(img);
    rp_volume_free(v);
    rp_volume_free(c);
    return rc ? 1 : 0;
}

static int cmd_phantom(char **argv)
{
    const char *dir = argv[2];
    static const double T1[6] = {0, 500, 100, 300, 700, 1000};
    ph_phantom ph;
    if (ph_make(&ph, atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atof(argv[6]), T1, 25,
                atof(argv[7]), 42))
        return 2;
    size_t n = rp_volume_nvox(ph.biased);
    save(dir, "in0.raw", ph.biased->data, n * 4);
    save(dir, "clean.raw", ph.clean->data, n * 4);
    save(dir, "truth_logf.raw", ph.logf->data, n * 4);
    save(dir, "label.raw", ph.label, n);
    char p[4096];
    snprintf(p, sizeof p, "%s/in0.json", dir);
    FILE *f = fopen(p, "w");
    const double sp = atof(argv[6]);
    fprintf(f, "{\"dim\": [%d,%d,%d], \"affine\": [[%g,0,0,0],[0,%g,0,0],[0,0,%g,0],[0,0,0,1]]}\n",
            ph.biased->dim[0], ph.biased->dim[1], ph.biased->dim[2], sp, sp, sp);
    fclose(f);
    ph_free(&ph);
    return 0;
}

int main(int argc, char **argv)
{
    rp_log_set_level(RP_LOG_WARN);
    if (argc >= 3 && strcmp(argv[1], "n4") == 0)
        return cmd_n4(argc, argv);
    if (argc >= 6 && strcmp(argv[1], "fuse") == 0)
        return cmd_fuse(argv);
    if (argc >= 3 && strcmp(argv[1], "montage") == 0)
        return cmd_montage(argv);
    if (argc >= 8 && strcmp(argv[1], "phantom") == 0)
        return cmd_phantom(argv);
    fprintf(stderr, "usage: mr_driver n4 DIR [shrink levels iters spline] | fuse DIR N REF "
                    "ORDER | montage DIR | phantom DIR nx ny nz sp amp\n");
    return 2;
}
