/*
 * pipeline/register/transform.c — the rigid(+scale) transform: parameters to matrix, the
 * derivatives the metric needs, resampling through a transform, and ITK's text format.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/register/register_internal.h"

static void mat3_mul(const double a[3][3], const double b[3][3], double o[3][3])
{
    double t[3][3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            t[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
    memcpy(o, t, sizeof t);
}

/* R = Rz·Ry·Rx and its three partial derivatives. */
static void rotation(const double r[3], double R[3][3], double dR[3][3][3])
{
    const double ca = cos(r[0]), sa = sin(r[0]), cb = cos(r[1]), sb = sin(r[1]);
    const double cg = cos(r[2]), sg = sin(r[2]);
    const double Rx[3][3] = {{1, 0, 0}, {0, ca, -sa}, {0, sa, ca}};
    const double Ry[3][3] = {{cb, 0, sb}, {0, 1, 0}, {-sb, 0, cb}};
    const double Rz[3][3] = {{cg, -sg, 0}, {sg, cg, 0}, {0, 0, 1}};
    const double dRx[3][3] = {{0, 0, 0}, {0, -sa, -ca}, {0, ca, -sa}};
    const double dRy[3][3] = {{-sb, 0, cb}, {0, 0, 0}, {-cb, 0, -sb}};
    const double dRz[3][3] = {{-sg, -cg, 0}, {cg, -sg, 0}, {0, 0, 0}};
    double zy[3][3];
    mat3_mul(Rz, Ry, zy);
    mat3_mul(zy, Rx, R);
    if (!dR)
        return;
    double t[3][3];
    mat3_mul(zy, dRx, dR[0]);
    mat3_mul(Rz, dRy, t);
    mat3_mul(t, Rx, dR[1]);
    mat3_mul(dRz, Ry, t);
    mat3_mul(t, Rx, dR[2]);
}

void rp_reg_xform(const double *prm, int np, const double c[3], const double w2i[3][4],
                  reg_xform *x, double T[4][4])
{
    double R[3][3], dR[3][3][3], S[3] = {1, 1, 1};
    rotation(prm, R, dR);
    if (np >= 9)
        for (int k = 0; k < 3; k++)
            S[k] = prm[6 + k];
    double RS[3][3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            RS[i][j] = R[i][j] * S[j];
    double W[3][3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            W[i][j] = w2i[i][j];
    memset(x, 0, sizeof *x);
    x->np = np;
    mat3_mul(W, RS, x->L);
    for (int i = 0; i < 3; i++) {
        x->o[i] = w2i[i][3];
        for (int j = 0; j < 3; j++)
            x->o[i] += W[i][j] * (c[j] + prm[3 + j]);
    }
    for (int k = 0; k < 3; k++) {
        double dRS[3][3];
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++)
                dRS[i][j] = dR[k][i][j] * S[j];
        mat3_mul(W, dRS, x->D[k]);
        for (int i = 0; i < 3; i++)
            x->d[3 + k][i] = W[i][k];
    }
    if (np >= 9)
        for (int k = 0; k < 3; k++) {
            double E[3][3] = {{0}};
            for (int i = 0; i < 3; i++)
                E[i][k] = R[i][k];
            mat3_mul(W, E, x->D[6 + k]);
        }
    if (T) {
        memset(T, 0, 16 * sizeof(double));
        for (int i = 0; i < 3; i++) {
            double off = c[i] + prm[3 + i];
            for (int j = 0; j < 3; j++) {
                T[i][j] = RS[i][j];
                off -= RS[i][j] * c[j];
            }
            T[i][3] = off;
        }
        T[3][3] = 1;
    }
}

void rp_reg_compose(const double rot_deg[3], const double trans[3], const double scale[3],
                    const double center[3], double T[4][4])
{
    double prm[9];
    for (int k = 0; k < 3; k++) {
        prm[k] = rot_deg[k] * M_PI / 180.0;
        prm[3 + k] = trans[k];
        prm[6 + k] = scale ? scale[k] : 1.0;
    }
    double w2i[3][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}};
    reg_xform x;
    rp_reg_xform(prm, 9, center, w2i, &x, T);
}

int rp_register_resample(const rp_volume *mv, const rp_volume *grid, const double T[4][4],
                         int order, rp_volume **out)
{
    if (!mv || !grid || !T || !out || (order != 0 && order != 1))
        return RP_EINVAL;
    double inv[4][4], a[4][4], m[4][4];
    if (rp_mat4_invert(mv->affine, inv) != 0)
        return RP_EINVAL;
    rp_mat4_mul(inv, T, a);
    rp_mat4_mul(a, grid->affine, m); /* grid voxel -> moving voxel */
    return rp_volume_warp(mv, grid, m, order, out);
}

int rp_reg_itk_text(const double T[4][4], char *buf, size_t buflen)
{
    /* RAS -> LPS on both sides: F·T·F with F = diag(-1, -1, 1) */
    const double f[3] = {-1, -1, 1};
    double M[3][3], t[3];
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++)
            M[i][j] = f[i] * T[i][j] * f[j];
        t[i] = f[i] * T[i][3];
    }
    int w = snprintf(buf, buflen,
                     "#Insight Transform File V1.0\n#Transform 0\n"
                     "Transform: AffineTransform_double_3_3\n"
                     "Parameters: %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g "
                     "%.17g %.17g\nFixedParameters: 0 0 0\n",
                     M[0][0], M[0][1], M[0][2], M[1][0], M[1][1], M[1][2], M[2][0], M[2][1],
                     M[2][2], t[0], t[1], t[2]);
    return w < 0 || (size_t)w >= buflen ? RP_EINVAL : 0;
}
