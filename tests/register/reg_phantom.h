/*
 * tests/register/reg_phantom.h — an analytic head phantom for the registration, midline and
 * augmentation tests (header-only test code; needs only pipeline/volume/volume.h).
 *
 * The head is defined in world millimetres (RAS, centred at the origin): scalp, skull, CSF,
 * folded grey/white matter boundary, two ventricles, and (unless symmetric) landmarks off the
 * midline: a deep nucleus, a lesion and a cyst, so a rigid transform is unambiguous. It is
 * rendered on any grid at G⁻¹(y) for a world transform G (the head moved by G), averaging
 * 2x2x2 sub-samples (partial volume, no interpolation error), with one of three contrasts
 * (T1-like, T2-like, CT in HU, or the head's fraction for masks) and seeded Gaussian noise.
 */
#ifndef RP_TEST_REG_PHANTOM_H
#define RP_TEST_REG_PHANTOM_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "pipeline/volume/volume.h"

enum { RPH_AIR, RPH_SCALP, RPH_SKULL, RPH_CSF, RPH_GM, RPH_WM, RPH_NUCLEUS, RPH_LESION,
       RPH_NLABELS };
enum { RPH_T1, RPH_T2, RPH_CT, RPH_HEAD };

static const double rph_contrast[4][RPH_NLABELS] = {
    /* air scalp skull CSF GM WM nucleus lesion */
    {0, 60, 15, 20, 70, 100, 85, 40},        /* T1: white matter brightest */
    {0, 50, 10, 120, 80, 55, 60, 110},       /* T2: CSF brightest, order reversed */
    {-1000, 20, 1000, 5, 38, 28, 42, 60},    /* CT: bone bright, brain 20-40 HU */
    {0, 1, 1, 1, 1, 1, 1, 1},                /* head: 1 inside (masks) */
};

static inline double rph_sq(double v) { return v * v; }

/* Label at world point p (mm) of the head at rest. symmetric: landmarks mirrored (the head is
 * then symmetric about the plane x = 0). */
static inline int rph_label(const double p[3], int symmetric)
{
    const double X = p[0] / 72.0, Y = p[1] / 92.0, Z = p[2] / 80.0;
    const double r = sqrt(X * X + Y * Y + Z * Z);
    if (r >= 1.0)
        return RPH_AIR;
    if (r >= 0.94)
        return RPH_SCALP;
    if (r >= 0.87)
        return RPH_SKULL;
    /* falx: a thin CSF sheet on the midline, top half (a real head's midline landmark) */
    if (fabs(p[0]) < 1.2 && Z > 0.15 && r > 0.35)
        return RPH_CSF;
    /* the fold pattern is mirrored too when the head is symmetric */
    const double th = atan2(Y, symmetric ? fabs(X) : X);
    const double ph = acos(fmax(-1.0, fmin(1.0, Z / (r + 1e-12))));
    const double fold = 0.05 * sin(6 * th) * sin(4 * ph);
    /* ventricles: symmetric pair */
    for (int s = -1; s <= 1; s += 2) {
        double v = rph_sq((p[0] - s * 9.0) / 5.0) + rph_sq((p[1] - 5.0) / 24.0) +
                   rph_sq((p[2] - 8.0) / 11.0);
        if (v < 1)
            return RPH_CSF;
    }
    if (symmetric) {
        double ax = fabs(p[0]);
        if (rph_sq((ax - 24.0) / 9.0) + rph_sq((p[1] + 12.0) / 12.0) + rph_sq(p[2] / 8.0) < 1)
            return RPH_NUCLEUS;
    } else {
        if (rph_sq((p[0] - 24.0) / 9.0) + rph_sq((p[1] + 12.0) / 12.0) + rph_sq(p[2] / 8.0) < 1)
            return RPH_NUCLEUS;
        if (rph_sq((p[0] + 30.0) / 8.0) + rph_sq((p[1] - 35.0) / 8.0) +
                rph_sq((p[2] - 28.0) / 8.0) < 1)
            return RPH_LESION;
        if (rph_sq((p[0] - 18.0) / 6.0) + rph_sq((p[1] + 50.0) / 9.0) +
                rph_sq((p[2] + 15.0) / 7.0) < 1)
            return RPH_CSF;
    }
    if (r >= 0.83)
        return RPH_CSF;
    if (r >= 0.68 + fold)
        return RPH_GM;
    return RPH_WM;
}

static inline double rph_noise(uint64_t seed, uint64_t i)
{
    uint64_t a = seed * 0x9e3779b97f4a7c15ULL + i * 0xd1b54a32d192ed03ULL + 1;
    a ^= a >> 31;
    a *= 0xbf58476d1ce4e5b9ULL;
    a ^= a >> 27;
    uint64_t b = a * 0x94d049bb133111ebULL;
    b ^= b >> 29;
    double u = ((a >> 11) + 0.5) / 9007199254740992.0, v = ((b >> 11) + 0.5) / 9007199254740992.0;
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

/* New volume nx*ny*nz with spacing sp, centred on the origin, showing the phantom moved by G (4x4,
 * NULL: at rest): value(y) = contrast[label(G⁻¹ y)]. */
static inline rp_volume *rph_render(int nx, int ny, int nz, const double sp[3], int contrast,
                                    const double G[4][4], int symmetric, double noise,
                                    uint64_t seed)
{
    rp_volume *v = rp_volume_new(nx, ny, nz, 1);
    if (!v)
        return NULL;
    for (int a = 0; a < 3; a++) {
        v->affine[a][a] = sp[a];
        v->affine[a][3] = -0.5 * (double)((a == 0 ? nx : a == 1 ? ny : nz) - 1) * sp[a];
    }
    rp_volume_update_spacing(v);
    double Gi[4][4];
    if (G) {
        if (rp_mat4_invert(G, Gi) != 0) {
            rp_volume_free(v);
            return NULL;
        }
    } else {
        rp_mat4_identity(Gi);
    }
    const double *tab = rph_contrast[contrast];
#pragma omp parallel for schedule(static)
    for (int z = 0; z < nz; z++)
        for (int y = 0; y < ny; y++)
            for (int x = 0; x < nx; x++) {
                double acc = 0;
                for (int s = 0; s < 8; s++) {
                    double i = x + ((s & 1) ? 0.25 : -0.25), j = y + ((s & 2) ? 0.25 : -0.25),
                           k = z + ((s & 4) ? 0.25 : -0.25);
                    double w[3], q[3];
                    for (int r = 0; r < 3; r++)
                        w[r] = v->affine[r][0] * i + v->affine[r][1] * j + v->affine[r][2] * k +
                               v->affine[r][3];
                    for (int r = 0; r < 3; r++)
                        q[r] = Gi[r][0] * w[0] + Gi[r][1] * w[1] + Gi[r][2] * w[2] + Gi[r][3];
                    acc += tab[rph_label(q, symmetric)];
                }
                size_t idx = x + (size_t)nx * (y + (size_t)ny * z);
                double val = acc / 8;
                if (noise > 0)
                    val += noise * rph_noise(seed, idx);
                v->data[idx] = (float)val;
            }
    return v;
}

#endif
