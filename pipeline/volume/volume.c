/* pipeline/volume/volume.c — allocation and small geometry helpers for rp_volume / rp_mask. */
#include "pipeline/volume/volume.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

static int dims_ok(long long nx, long long ny, long long nz, long long nc)
{
    if (nx < 1 || ny < 1 || nz < 1 || nc < 1)
        return 0;
    /* Refuse sizes whose byte count would overflow or that no machine here could hold. */
    long long n = nx * ny;
    if (n > (1LL << 40) / nz)
        return 0;
    n *= nz;
    if (n > (1LL << 40) / nc)
        return 0;
    return 1;
}

/* The volume's header (grid, identity affine) without voxels; NULL on bad dims or no memory. */
static rp_volume *volume_shell(int nx, int ny, int nz, int nc)
{
    if (!dims_ok(nx, ny, nz, nc))
        return NULL;
    rp_volume *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->dim[0] = nx;
    v->dim[1] = ny;
    v->dim[2] = nz;
    v->dim[3] = nc;
    rp_mat4_identity(v->affine);
    rp_volume_update_spacing(v);
    return v;
}

rp_volume *rp_volume_new(int nx, int ny, int nz, int nc)
{
    rp_volume *v = volume_shell(nx, ny, nz, nc);
    if (!v)
        return NULL;
    v->data = rp_mem_calloc((size_t)nx * ny * nz * nc * sizeof(float));
    if (!v->data) {
        free(v);
        return NULL;
    }
    return v;
}

rp_volume *rp_volume_clone(const rp_volume *v)
{
    if (!v->data) /* deferred: materialise it first */
        return NULL;
    rp_volume *c = rp_volume_new(v->dim[0], v->dim[1], v->dim[2], v->dim[3]);
    if (!c)
        return NULL;
    memcpy(c->data, v->data, rp_volume_nvox(v) * v->dim[3] * sizeof(float));
    memcpy(c->affine, v->affine, sizeof c->affine);
    memcpy(c->spacing, v->spacing, sizeof c->spacing);
    return c;
}

static void source_free(rp_vol_source *s)
{
    if (!s)
        return;
    if (s->release)
        s->release(s->user);
    free(s);
}

void rp_volume_free(rp_volume *v)
{
    if (!v)
        return;
    free(v->data);
    source_free(v->src);
    free(v);
}

rp_volume *rp_volume_new_deferred(int nx, int ny, int nz, rp_vol_source *src)
{
    rp_volume *v = src && src->row ? volume_shell(nx, ny, nz, 1) : NULL;
    if (v)
        v->src = src;
    return v;
}

int rp_volume_materialize(rp_volume *v)
{
    if (!v || v->data || !v->src)
        return v && (v->data || v->src) ? 0 : RP_EINVAL;
    const int nx = v->dim[0], ny = v->dim[1], nz = v->dim[2];
    float *d = rp_mem_alloc(rp_volume_nvox(v) * sizeof(float));
    if (!d)
        return RP_ENOMEM;
    rp_vol_source *s = v->src;
#pragma omp parallel for schedule(static)
    for (int z = 0; z < nz; z++) {
        for (int y = 0; y < ny; y++)
            s->row(s->user, y, z, 0, nx, d + ((size_t)z * ny + y) * nx);
        if (s->slice_done)
            s->slice_done(s->user, z);
    }
    v->data = d;
    v->src = NULL;
    source_free(s);
    return 0;
}

size_t rp_volume_nvox(const rp_volume *v)
{
    return (size_t)v->dim[0] * v->dim[1] * v->dim[2];
}

void rp_volume_update_spacing(rp_volume *v)
{
    for (int c = 0; c < 3; c++) {
        double s = 0;
        for (int r = 0; r < 3; r++)
            s += v->affine[r][c] * v->affine[r][c];
        v->spacing[c] = sqrt(s);
    }
}

/* The mask's header (grid, identity affine, name) without voxels; NULL on bad dims or no
 * memory. */
static rp_mask *mask_shell(int nx, int ny, int nz, const char *name)
{
    if (!dims_ok(nx, ny, nz, 1))
        return NULL;
    rp_mask *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->dim[0] = nx;
    m->dim[1] = ny;
    m->dim[2] = nz;
    rp_mat4_identity(m->affine);
    rp_strlcpy(m->name, name ? name : "mask", sizeof m->name);
    return m;
}

rp_mask *rp_mask_new(int nx, int ny, int nz, const char *name)
{
    rp_mask *m = mask_shell(nx, ny, nz, name);
    if (m && !(m->data = rp_mem_calloc((size_t)nx * ny * nz))) {
        free(m);
        return NULL;
    }
    return m;
}

rp_mask *rp_mask_like(const rp_volume *v, const char *name)
{
    rp_mask *m = rp_mask_new(v->dim[0], v->dim[1], v->dim[2], name);
    if (m)
        memcpy(m->affine, v->affine, sizeof m->affine);
    return m;
}

void rp_mask_free(rp_mask *m)
{
    if (!m)
        return;
    free(m->data);
    free(m->bits);
    free(m);
}

rp_mask *rp_mask_new_bits(int nx, int ny, int nz, const char *name)
{
    rp_mask *m = mask_shell(nx, ny, nz, name);
    if (!m)
        return NULL;
    m->wpr = (nx + 63) / 64;
    if (!(m->bits = rp_mem_calloc((size_t)m->wpr * ny * nz * sizeof *m->bits))) {
        free(m);
        return NULL;
    }
    return m;
}

/* byte v -> 8 bytes of 0/1, little-endian */
static const uint64_t *spread_lut(void)
{
    static uint64_t lut[256];
    static int ready;
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        for (unsigned v = 0; v < 256; v++) {
            uint64_t o = 0;
            for (int i = 0; i < 8; i++)
                o |= (uint64_t)((v >> i) & 1) << (8 * i);
            lut[v] = o;
        }
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    return lut;
}

/* Row bits [x0, x1) as bytes into out. */
static void row_bytes(const uint64_t *w, const uint64_t *lut, int x0, int x1, uint8_t *out)
{
    int x = x0;
    while (x < x1 && (x & 7)) {
        *out++ = (uint8_t)((w[x / 64] >> (x % 64)) & 1);
        x++;
    }
    for (; x + 8 <= x1; x += 8, out += 8) {
        uint64_t v = lut[(w[x / 64] >> (x % 64)) & 0xFF];
        memcpy(out, &v, 8);
    }
    for (; x < x1; x++)
        *out++ = (uint8_t)((w[x / 64] >> (x % 64)) & 1);
}

void rp_mask_get_bytes(const rp_mask *m, size_t first, size_t n, uint8_t *out)
{
    if (m->data) {
        memcpy(out, m->data + first, n);
        return;
    }
    const uint64_t *lut = spread_lut();
    const size_t nx = (size_t)m->dim[0];
    while (n) {
        size_t r = first / nx, x = first % nx, l = nx - x < n ? nx - x : n;
        row_bytes(m->bits + r * (size_t)m->wpr, lut, (int)x, (int)(x + l), out);
        out += l;
        first += l;
        n -= l;
    }
}

int rp_mask_range_empty(const rp_mask *m, size_t first, size_t n)
{
    if (m->data || !m->bits)
        return 0;
    const size_t nx = (size_t)m->dim[0];
    while (n) {
        size_t r = first / nx, x = first % nx, l = nx - x < n ? nx - x : n;
        const uint64_t *w = m->bits + r * (size_t)m->wpr;
        size_t j0 = x / 64, j1 = (x + l - 1) / 64;
        uint64_t acc = 0;
        for (size_t j = j0; j <= j1; j++) {
            uint64_t v = w[j];
            if (j == j0)
                v &= ~0ull << (x % 64);
            if (j == j1 && (x + l) % 64)
                v &= ~0ull >> (64 - (x + l) % 64);
            acc |= v;
        }
        if (acc)
            return 0;
        first += l;
        n -= l;
    }
    return 1;
}

int rp_mask_unpack(rp_mask *m)
{
    if (!m || m->data || !m->bits)
        return 0;
    const size_t nx = (size_t)m->dim[0], nr = (size_t)m->dim[1] * m->dim[2];
    /* a fresh calloc block: rows with no voxel set are never written, so their pages are
     * never backed */
    uint8_t *d = rp_mem_calloc(nx * nr);
    if (!d)
        return RP_ENOMEM;
    const uint64_t *lut = spread_lut();
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < nr; r++) {
        const uint64_t *w = m->bits + r * (size_t)m->wpr;
        for (int j = 0; j < m->wpr; j++)
            if (w[j]) {
                int x0 = 64 * j, x1 = x0 + 64 < (int)nx ? x0 + 64 : (int)nx;
                row_bytes(w, lut, x0, x1, d + r * nx + x0);
            }
    }
    free(m->bits);
    m->bits = NULL;
    m->wpr = 0;
    m->data = d;
    return 0;
}

int rp_mask_pack(rp_mask *m)
{
    if (!m || !m->data)
        return 0;
    const size_t nx = (size_t)m->dim[0], nr = (size_t)m->dim[1] * m->dim[2];
    const int wpr = (int)((nx + 63) / 64);
    uint64_t *b = rp_mem_alloc((size_t)wpr * nr * sizeof *b);
    if (!b)
        return RP_ENOMEM;
#pragma omp parallel for schedule(static)
    for (size_t r = 0; r < nr; r++) {
        const uint8_t *s = m->data + r * nx;
        for (int j = 0; j < wpr; j++) {
            uint64_t w = 0;
            for (size_t x = 64 * (size_t)j; x < nx && x < 64 * (size_t)j + 64; x++)
                w |= (uint64_t)(s[x] != 0) << (x % 64);
            b[r * (size_t)wpr + (size_t)j] = w;
        }
    }
    free(m->data);
    m->data = NULL;
    m->bits = b;
    m->wpr = wpr;
    return 0;
}

size_t rp_mask_count(const rp_mask *m)
{
    size_t n = (size_t)m->dim[0] * m->dim[1] * m->dim[2], c = 0;
    if (!m->data) {
        const size_t nw = (size_t)m->wpr * m->dim[1] * m->dim[2];
        const uint64_t *w = m->bits;
#pragma omp parallel for schedule(static) reduction(+ : c) if (nw > 65536)
        for (size_t i = 0; i < nw; i++)
            c += (size_t)__builtin_popcountll(w[i]);
        return c;
    }
    const uint8_t *d = m->data;
#pragma omp parallel for simd schedule(static) reduction(+ : c) if (n > 65536)
    for (size_t i = 0; i < n; i++)
        c += d[i] != 0;
    return c;
}

void rp_mat4_identity(double m[4][4])
{
    memset(m, 0, 16 * sizeof(double));
    for (int i = 0; i < 4; i++)
        m[i][i] = 1.0;
}

void rp_mat4_mul(const double a[4][4], const double b[4][4], double out[4][4])
{
    double t[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            double s = 0;
            for (int k = 0; k < 4; k++)
                s += a[i][k] * b[k][j];
            t[i][j] = s;
        }
    memcpy(out, t, sizeof t);
}

int rp_mat4_invert(const double m[4][4], double out[4][4])
{
    /* Gauss-Jordan with partial pivoting; 4x4 is small enough that clarity wins. */
    double a[4][8];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 8; j++)
            a[i][j] = j < 4 ? m[i][j] : (j - 4 == i ? 1.0 : 0.0);
    for (int c = 0; c < 4; c++) {
        int p = c;
        for (int r = c + 1; r < 4; r++)
            if (fabs(a[r][c]) > fabs(a[p][c]))
                p = r;
        if (fabs(a[p][c]) < 1e-12)
            return RP_EINVAL;
        if (p != c)
            for (int j = 0; j < 8; j++) {
                double t = a[c][j];
                a[c][j] = a[p][j];
                a[p][j] = t;
            }
        double d = a[c][c];
        for (int j = 0; j < 8; j++)
            a[c][j] /= d;
        for (int r = 0; r < 4; r++) {
            if (r == c)
                continue;
            double f = a[r][c];
            if (f != 0)
                for (int j = 0; j < 8; j++)
                    a[r][j] -= f * a[c][j];
        }
    }
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            out[i][j] = a[i][j + 4];
    return 0;
}

int rp_axial_axis(const double affine[4][4])
{
    int best = 2;
    double bv = -1;
    for (int a = 0; a < 3; a++) {
        double n = sqrt(affine[0][a] * affine[0][a] + affine[1][a] * affine[1][a] +
                        affine[2][a] * affine[2][a]);
        double s = n > 0 ? fabs(affine[2][a]) / n : 0;
        if (s > bv + 1e-9) {
            bv = s;
            best = a;
        }
    }
    return best;
}
