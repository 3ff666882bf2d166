/*
 * tests/mr/mr_phantom.h — a brain-like MR phantom with known tissue classes and a known
 * smooth bias field, for the MR tests and bench/mr (header-only, test code).
 *
 * Labels: 0 air, 1 scalp, 2 skull, 3 CSF, 4 grey matter, 5 white matter.
 * T1-like intensities by default (WM brightest); the GM/WM boundary is folded so the classes
 * are not plain ellipsoids. Noise is Gaussian from a fixed-seed generator, so every run sees
 * the same volume.
 */
#ifndef RP_TEST_MR_PHANTOM_H
#define RP_TEST_MR_PHANTOM_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "pipeline/volume/volume.h"

enum { PH_AIR = 0, PH_SCALP, PH_SKULL, PH_CSF, PH_GM, PH_WM, PH_NLABELS };

typedef struct ph_phantom {
    rp_volume *clean;  /* tissue intensities + noise, no bias */
    rp_volume *biased; /* clean * exp(field) */
    rp_volume *logf;   /* true log field */
    uint8_t *label;
} ph_phantom;

static uint64_t ph_rng_state __attribute__((unused));
/* field shape: 0 low-order polynomial, 1 off-centre Gaussian bump (a surface coil's
 * sensitivity) plus a tilt; a test may change it */
static int ph_field_kind __attribute__((unused)) = 0;
/* outer radius of white matter (fraction of the head); a test may change it */
static double ph_wm_radius __attribute__((unused)) = 0.66;
static inline double ph_uniform(void)
{
    ph_rng_state = ph_rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((ph_rng_state >> 11) + 0.5) / 9007199254740992.0;
}
static inline double ph_gauss(void)
{
    double u = ph_uniform(), v = ph_uniform();
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

/* intensity[label]; noise SD; field_amp scales the log field (0.3 gives about +-35%). */
static inline int ph_make(ph_phantom *ph, int nx, int ny, int nz, double sp,
                          const double intensity[6], double noise, double field_amp, uint64_t seed)
{
    ph->clean = rp_volume_new(nx, ny, nz, 1);
    ph->biased = rp_volume_new(nx, ny, nz, 1);
    ph->logf = rp_volume_new(nx, ny, nz, 1);
    ph->label = calloc((size_t)nx * ny * nz, 1);
    if (!ph->clean || !ph->biased || !ph->logf || !ph->label)
        return -1;
    for (int d = 0; d < 3; d++) {
        ph->clean->affine[d][d] = ph->biased->affine[d][d] = ph->logf->affine[d][d] = sp;
    }
    rp_volume_update_spacing(ph->clean);
    rp_volume_update_spacing(ph->biased);
    rp_volume_update_spacing(ph->logf);
    ph_rng_state = seed;
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                double X = (2.0 * x - (nx - 1)) / (nx - 1), Y = (2.0 * y - (ny - 1)) / (ny - 1),
                       Z = (2.0 * z - (nz - 1)) / (nz - 1);
                /* head ellipsoid radius measure */
                double r = sqrt(X * X / 0.81 + Y * Y / 0.88 + Z * Z / 0.81);
                double th = atan2(Y, X), ph_ = acos(fmax(-1.0, fmin(1.0, Z / (r + 1e-9))));
                double fold = 0.05 * sin(7 * th) * sin(5 * ph_);
                int lab = PH_AIR;
                if (r < 1.0)
                    lab = PH_SCALP;
                if (r < 0.93)
                    lab = PH_SKULL;
                if (r < 0.86)
                    lab = PH_CSF;
                if (r < 0.82)
                    lab = PH_GM;
                if (r < ph_wm_radius + fold)
                    lab = PH_WM;
                /* ventricles */
                double v1 = ((X - 0.12) * (X - 0.12)) / 0.006 + (Y * Y) / 0.06 + (Z * Z) / 0.02;
                double v2 = ((X + 0.12) * (X + 0.12)) / 0.006 + (Y * Y) / 0.06 + (Z * Z) / 0.02;
                if (v1 < 1 || v2 < 1)
                    lab = PH_CSF;
                size_t i = x + (size_t)nx * (y + (size_t)ny * z);
                ph->label[i] = (uint8_t)lab;
                double f = field_amp * (0.6 * X + 0.5 * Y * Y - 0.4 * Z + 0.4 * X * Z - 0.2 * Y);
                if (ph_field_kind == 1)
                    f = field_amp *
                        (1.6 * exp(-((X - 0.7) * (X - 0.7) + (Y + 0.5) * (Y + 0.5) + Z * Z) / 0.8) -
                         0.3 * Y + 0.2 * Z);
                double c = intensity[lab] + noise * ph_gauss();
                if (c < 0)
                    c = -c; /* magnitude images are non-negative */
                ph->clean->data[i] = (float)c;
                ph->logf->data[i] = (float)f;
                ph->biased->data[i] = (float)(c * exp(f));
            }
    return 0;
}

static inline void ph_free(ph_phantom *ph)
{
    rp_volume_free(ph->clean);
    rp_volume_free(ph->biased);
    rp_volume_free(ph->logf);
    free(ph->label);
}

/* Coefficient of variation of v over voxels with label == lab. */
static inline double ph_cv(const float *v, const uint8_t *label, size_t n, int lab)
{
    double s = 0, s2 = 0;
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (label[i] == lab) {
            s += v[i];
            s2 += (double)v[i] * v[i];
            c++;
        }
    double m = s / c;
    return sqrt(fmax(0, s2 / c - m * m)) / m;
}

static inline double ph_mean(const float *v, const uint8_t *label, size_t n, int lab)
{
    double s = 0;
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (label[i] == lab) {
            s += v[i];
            c++;
        }
    return c ? s / c : 0;
}

/* Pearson correlation of a and b where sel[i] (label >= lo). */
static inline double ph_corr(const float *a, const float *b, const uint8_t *label, size_t n, int lo)
{
    double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (label[i] >= lo) {
            sa += a[i];
            sb += b[i];
            saa += (double)a[i] * a[i];
            sbb += (double)b[i] * b[i];
            sab += (double)a[i] * b[i];
            c++;
        }
    double ma = sa / c, mb = sb / c;
    return (sab / c - ma * mb) / sqrt((saa / c - ma * ma) * (sbb / c - mb * mb));
}

#endif
