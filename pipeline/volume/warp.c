/* Resampling through a general voxel-to-voxel affine (rotations, shears): the slow path that
 * axis-aligned resampling avoids. Used wherever one volume is placed on another's grid. */
#include <math.h>
#include <string.h>

#include "common/common.h"
#include "pipeline/volume/volume.h"

/* Trilinear sample at (x, y, z) in voxel units; the caller has checked the point is inside. */
static float sample_linear(const float *s, int nx, int ny, int nz, double x, double y, double z)
{
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
    return (float)(c0 + fz * (c1 - c0));
}

int rp_volume_warp(const rp_volume *src, const rp_volume *grid, const double m[4][4], int order,
                   rp_volume **out)
{
    if (!src || !grid || !m || !out || (order != 0 && order != 1))
        return RP_EINVAL;
    rp_volume *o = rp_volume_new(grid->dim[0], grid->dim[1], grid->dim[2], 1);
    if (!o)
        return RP_ENOMEM;
    memcpy(o->affine, grid->affine, sizeof o->affine);
    rp_volume_update_spacing(o);
    const int nx = src->dim[0], ny = src->dim[1], nz = src->dim[2];
    const int ox = o->dim[0], oy = o->dim[1], oz = o->dim[2];
    const float *s = src->data;
    /* Points this close outside the voxel-centre box still count as inside: double round-off
     * when two grids share planes. Kept tiny so the edge matches scipy's mode='constant'. */
    const double eps = 1e-6;
#pragma omp parallel for schedule(static)
    for (int k = 0; k < oz; k++)
        for (int j = 0; j < oy; j++) {
            float *row = o->data + (size_t)ox * (j + (size_t)oy * k);
            double bx = m[0][1] * j + m[0][2] * k + m[0][3];
            double by = m[1][1] * j + m[1][2] * k + m[1][3];
            double bz = m[2][1] * j + m[2][2] * k + m[2][3];
            for (int i = 0; i < ox; i++) {
                double x = bx + m[0][0] * i, y = by + m[1][0] * i, z = bz + m[2][0] * i;
                if (x < -eps || y < -eps || z < -eps || x > nx - 1 + eps || y > ny - 1 + eps ||
                    z > nz - 1 + eps) {
                    row[i] = 0.0f;
                } else if (order == 0) {
                    int xi = (int)floor(x + 0.5), yi = (int)floor(y + 0.5),
                        zi = (int)floor(z + 0.5);
                    xi = xi < 0 ? 0 : xi >= nx ? nx - 1 : xi;
                    yi = yi < 0 ? 0 : yi >= ny ? ny - 1 : yi;
                    zi = zi < 0 ? 0 : zi >= nz ? nz - 1 : zi;
                    row[i] = s[xi + (size_t)nx * (yi + (size_t)ny * zi)];
                } else {
                    row[i] = sample_linear(s, nx, ny, nz, x, y, z);
                }
            }
        }
    *out = o;
    return 0;
}
