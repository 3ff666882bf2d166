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
    rp_volume *o = rp_volume_new(grid->dim[0], grid->dim[1], grid->dim[2], 1);
    if (!o)
        return RP_ENOMEM;
    memcpy(o->affine, grid->affine, sizeof o->affine);
    rp_volume_update_spacing(o);
    const int nx = mv->dim[0], ny = mv->dim[1], nz = mv->dim[2];
    const int ox = o->dim[0], oy = o->dim[1], oz = o->dim[2];
    const float *s = mv->data;
    const double eps = 1e-6;
#pragma omp parallel for schedule(static)
    for (int k = 0; k < oz; k++)
        for (int j = 0; j < oy; j++) {
            float *row = o->data + (size_t)ox * (j + (size_t)oy * k);
            for (int i = 0; i < ox; i++) {
                double x = m[0][0] * i + m[0][1] * j + m[0][2] * k + m[0][3];
                double y = m[1][0] * i + m[1][1] * j + m[1][2] * k + m[1][3];
                double z = m[2][0] * i + m[2][1] * j + m[2][2] * k + m[2][3];
                if (x < -eps || y < -eps || z < -eps || x > nx - 1 + eps || y > ny - 1 + eps ||
                    z > nz - 1 + eps) {
                    row[i] = 0.0f;
                    continue;
                }
                if (order == 0) {
                    int xi = (int)floor(x + 0.5), yi = (int)floor(y + 0.5),
                        zi = (int)floor(z + 0.5);
                    xi = xi < 0 ? 0 : xi >= nx ? nx - 1 : xi;
                    yi = yi < 0 ? 0 : yi >= ny ? ny - 1 : yi;
                    zi = zi < 0 ? 0 : zi >= nz ? nz - 1 : zi;
                    row[i] = s[xi + (size_t)nx * (yi + (size_t)ny * zi)];
                    continue;
                }
                int x0 = (int)floor(x), y0 = (int)floor(y), z0 = (int)floor(z);
                x0 = x0 < 0 ? 0 : x0 > nx - 2 ? (nx > 1 ? nx - 2 : 0) : x0;
                y0 = y0 < 0 ? 0 : y0 > ny - 2 ? (ny > 1 ? ny - 2 : 0) : y0;
                z0 = z0 < 0 ? 0 : z0 > nz - 2 ? (nz > 1 ? nz - 2 : 0) : z0;
                double fx = nx > 1 ? x - x0 : 0, fy = ny > 1 ? y - y0 : 0, fz = nz > 1 ? z - z0 : 0;
                fx = fx < 0 ? 0 : fx > 1 ? 1 : fx;
                fy = fy < 0 ? 0 : fy > 1 ? 1 : fy;
                fz = fz < 0 ? 0 : fz > 1 ? 1 : fz;
                int dx = nx > 1, dy = ny > 1 ? nx : 0;
                size_t dz = nz > 1 ? (size_t)nx * ny : 0;
                const float *p = s + x0 + (size_t)nx * (y0 + (size_t)ny * z0);
                double c00 = p[0] + fx * (p[dx] - p[0]);
                double c10 = p[dy] + fx * (p[dy + dx] - p[dy]);
                double c01 = p[dz] + fx * (p[dz + dx] - p[dz]);
                double c11 = p[dz + dy] + fx * (p[dz + dy + dx] - p[dz + dy]);
                double c0 = c00 + fy * (c10 - c00), c1 = c01 + fy * (c11 - c01);
                row[i] = (float)(c0 + fz * (c1 - c0));
            }
        }
    *out = o;
    return 0;
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
