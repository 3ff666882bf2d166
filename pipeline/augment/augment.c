/*
 * pipeline/augment/augment.c — SPEC parsing, the seeded draws, and applying one draw to an
 * image and to label masks (contract in augment.h).
 *
 * The spatial part is one mapping from an output voxel to a point of the input: flip (an exact
 * index reversal), elastic displacement (cubic B-spline over a control lattice, evaluated row by
 * row so no displacement volume is held), then the inverse of the rotation + zoom about the
 * volume centre. Image and masks use the same mapping function, so they cannot drift apart.
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "pipeline/augment/augment.h"

/* ---- counter-based random numbers ---------------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static double unit(uint64_t key, uint64_t ctr) /* uniform in (0, 1) */
{
    return ((double)(mix64(key ^ mix64(ctr + 0x632be59bd9b4e019ULL)) >> 11) + 0.5) /
           9007199254740992.0;
}

static double gauss(uint64_t key, uint64_t ctr)
{
    double u = unit(key, 2 * ctr), v = unit(key, 2 * ctr + 1);
    return sqrt(-2 * log(u)) * cos(2 * M_PI * v);
}

static double uniform(uint64_t key, uint64_t ctr, double lo, double hi)
{
    return lo + (hi - lo) * unit(key, ctr);
}

/* ---- parsing ------------------------------------------------------------------------------- */

static int num(const char *s, double *v)
{
    char *e;
    *v = strtod(s, &e);
    while (isspace((unsigned char)*e))
        e++;
    return e != s && !*e && isfinite(*v) ? 0 : -1;
}

static int fail(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
    snprintf(err, errlen, fmt, a, b);
    return RP_EINVAL;
}

int rp_aug_parse(const char *text, rp_aug_spec *s, char *err, size_t errlen)
{
    char dummy[8];
    if (!err || !errlen) {
        err = dummy;
        errlen = sizeof dummy;
    }
    memset(s, 0, sizeof *s);
    s->scale_lo = s->scale_hi = 1;
    s->gamma_lo = s->gamma_hi = 1;
    s->interp = -1;
    s->mask_mode = RP_AUG_MASK_LABELS;
    if (!text || strlen(text) >= sizeof s->text) {
        snprintf(err, errlen, "augment: empty or too long SPEC");
        return RP_EINVAL;
    }
    const char *p = text;
    int n_tr = 0;
    size_t tl = 0;
    while (*p) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        char name[32], args[6][64];
        int na = 0;
        size_t k = 0;
        while (isalnum((unsigned char)*p) || *p == '_')
            if (k + 1 < sizeof name)
                name[k++] = (char)tolower((unsigned char)*p++);
            else
                return fail(err, errlen, "augment: name too long near '%s'%s", p, "");
        name[k] = '\0';
        if (!k)
            return fail(err, errlen, "augment: expected a transform name at '%s'%s", p, "");
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '(') {
            p++;
            for (;;) {
                while (isspace((unsigned char)*p))
                    p++;
                size_t j = 0;
                while (*p && *p != ',' && *p != ')') {
                    if (j + 1 >= sizeof args[0] || na >= 6)
                        return fail(err, errlen, "augment: %s(): arguments too long%s", name, "");
                    args[na][j++] = *p++;
                }
                while (j > 0 && isspace((unsigned char)args[na][j - 1]))
                    j--;
                if (na >= 6)
                    return fail(err, errlen, "augment: %s(): too many arguments%s", name, "");
                args[na][j] = '\0';
                if (!j)
                    return fail(err, errlen, "augment: %s(): empty argument%s", name, "");
                na++;
                if (*p == ',') {
                    p++;
                    continue;
                }
                if (*p != ')')
                    return fail(err, errlen, "augment: %s(: missing ')'%s", name, "");
                p++;
                break;
            }
        }
        double v[6] = {0};
        int is_num = 1;
        for (int i = 0; i < na; i++)
            if (num(args[i], &v[i]) != 0)
                is_num = 0;
        if (!strcmp(name, "rotate")) {
            if ((na != 1 && na != 3) || !is_num)
                return fail(err, errlen, "augment: rotate takes rotate(DEG) or rotate(DX,DY,DZ) "
                                         "in degrees%s%s", "", "");
            for (int a = 0; a < 3; a++) {
                s->rot_deg[a] = fabs(na == 1 ? v[0] : v[a]);
                if (s->rot_deg[a] > 180)
                    return fail(err, errlen, "augment: rotate: at most 180 degrees%s%s", "", "");
            }
            s->has_rotate = 1;
        } else if (!strcmp(name, "scale")) {
            if ((na != 1 && na != 2) || !is_num)
                return fail(err, errlen, "augment: scale takes scale(F) or scale(LO,HI)%s%s", "",
                            "");
            s->scale_lo = na == 1 ? 1 - fabs(v[0]) : v[0];
            s->scale_hi = na == 1 ? 1 + fabs(v[0]) : v[1];
            if (!(s->scale_lo > 0.1) || s->scale_hi < s->scale_lo || s->scale_hi > 10)
                return fail(err, errlen, "augment: scale: need 0.1 < LO <= HI <= 10%s%s", "", "");
            s->has_scale = 1;
        } else if (!strcmp(name, "flip")) {
            if (na < 1)
                return fail(err, errlen, "augment: flip takes flip(AXES), AXES among x y z%s%s",
                            "", "");
            for (int i = 0; i < na; i++)
                for (const char *c = args[i]; *c; c++) {
                    int ax = tolower((unsigned char)*c) - 'x';
                    if (ax < 0 || ax > 2)
                        return fail(err, errlen, "augment: flip: '%s' is not among x y z%s",
                                    args[i], "");
                    s->flip_axes[ax] = 1;
                }
            s->has_flip = 1;
        } else if (!strcmp(name, "elastic")) {
            if (na != 2 || !is_num || v[0] < 0 || !(v[1] > 0))
                return fail(err, errlen, "augment: elastic takes elastic(ALPHA_MM,SIGMA_MM), "
                                         "ALPHA >= 0, SIGMA > 0%s%s", "", "");
            s->elastic_alpha_mm = v[0];
            s->elastic_sigma_mm = v[1];
            s->has_elastic = 1;
        } else if (!strcmp(name, "gamma")) {
            if (na != 2 || !is_num || !(v[0] > 0) || v[1] < v[0] || v[1] > 10)
                return fail(err, errlen, "augment: gamma takes gamma(LO,HI), 0 < LO <= HI <= "
                                         "10%s%s", "", "");
            s->gamma_lo = v[0];
            s->gamma_hi = v[1];
            s->has_gamma = 1;
        } else if (!strcmp(name, "noise")) {
            if ((na != 1 && na != 2) || !is_num || v[0] < 0 || (na == 2 && v[1] < v[0]))
                return fail(err, errlen, "augment: noise takes noise(SD) or noise(LO,HI), SD "
                                         ">= 0%s%s", "", "");
            s->noise_lo = na == 1 ? 0 : v[0];
            s->noise_hi = na == 1 ? v[0] : v[1];
            s->has_noise = 1;
        } else if (!strcmp(name, "bias")) {
            if (na != 1 || !is_num || v[0] < 0 || v[0] > 2)
                return fail(err, errlen, "augment: bias takes bias(C), 0 <= C <= 2%s%s", "", "");
            s->bias_coef = v[0];
            s->has_bias = 1;
        } else if (!strcmp(name, "interp")) {
            static const char *const w[] = {"nearest", "linear", "bspline3"};
            static const int o[] = {0, 1, 3};
            int f = -1;
            for (int i = 0; na == 1 && i < 3; i++)
                if (!strcasecmp(args[0], w[i]))
                    f = o[i];
            if (f < 0)
                return fail(err, errlen, "augment: interp takes nearest|linear|bspline3%s%s", "",
                            "");
            s->interp = f;
        } else if (!strcmp(name, "masks")) {
            if (na == 1 && !strcasecmp(args[0], "labels"))
                s->mask_mode = RP_AUG_MASK_LABELS;
            else if (na == 1 && !strcasecmp(args[0], "nearest"))
                s->mask_mode = RP_AUG_MASK_NEAREST;
            else
                return fail(err, errlen, "augment: masks takes labels|nearest%s%s", "", "");
        } else {
            return fail(err, errlen,
                        "augment: unknown transform '%s' (rotate scale flip elastic gamma noise "
                        "bias interp masks)%s",
                        name, "");
        }
        n_tr += strcmp(name, "interp") && strcmp(name, "masks");
        /* canonical text: name(args) with single blanks */
        int w = snprintf(s->text + tl, sizeof s->text - tl, "%s%s", tl ? " " : "", name);
        tl += (size_t)(w > 0 ? w : 0);
        for (int i = 0; i < na && tl < sizeof s->text; i++) {
            w = snprintf(s->text + tl, sizeof s->text - tl, "%s%s", i ? "," : "(", args[i]);
            tl += (size_t)(w > 0 ? w : 0);
        }
        if (na && tl < sizeof s->text) {
            w = snprintf(s->text + tl, sizeof s->text - tl, ")");
            tl += (size_t)(w > 0 ? w : 0);
        }
        if (tl >= sizeof s->text)
            tl = sizeof s->text - 1;
    }
    if (n_tr == 0) {
        snprintf(err, errlen, "augment: SPEC has no transform (rotate scale flip elastic gamma "
                              "noise bias)");
        return RP_EINVAL;
    }
    return 0;
}

/* ---- draws --------------------------------------------------------------------------------- */

void rp_aug_draw_params(const rp_aug_spec *s, uint64_t seed, const char *case_id, int copy,
                        int default_interp, rp_aug_draw *d)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a of the case id */
    for (const char *c = case_id ? case_id : ""; *c; c++)
        h = (h ^ (uint8_t)*c) * 0x100000001b3ULL;
    const uint64_t key = mix64(mix64(seed) ^ h ^ mix64((uint64_t)copy * 0x9e3779b97f4a7c15ULL));
    memset(d, 0, sizeof *d);
    for (int a = 0; a < 3; a++)
        d->rot_deg[a] = s->has_rotate ? uniform(key, (uint64_t)a, -s->rot_deg[a], s->rot_deg[a])
                                      : 0;
    d->scale = s->has_scale ? uniform(key, 3, s->scale_lo, s->scale_hi) : 1;
    for (int a = 0; a < 3; a++)
        d->flip[a] = s->has_flip && s->flip_axes[a] && unit(key, 4 + (uint64_t)a) < 0.5;
    if (s->has_elastic) {
        d->elastic_alpha_mm = s->elastic_alpha_mm;
        d->elastic_sigma_mm = s->elastic_sigma_mm;
        d->elastic_seed = mix64(key ^ 7);
    }
    d->gamma = s->has_gamma ? exp(uniform(key, 8, log(s->gamma_lo), log(s->gamma_hi))) : 1;
    d->noise_sd = s->has_noise ? uniform(key, 9, s->noise_lo, s->noise_hi) : 0;
    d->noise_seed = mix64(key ^ 10);
    for (int k = 0; k < RP_AUG_BIAS_TERMS; k++)
        d->bias[k] = s->has_bias ? uniform(key, 11 + (uint64_t)k, -s->bias_coef, s->bias_coef) : 0;
    d->interp = s->interp >= 0 ? s->interp : default_interp;
    d->mask_mode = s->mask_mode;
}

static double round6(double v)
{
    return round(v * 1e6) / 1e6;
}

cJSON *rp_aug_draw_json(const rp_aug_spec *s, const rp_aug_draw *d)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    char hex[17];
    if (s->has_rotate) {
        double r[3] = {round6(d->rot_deg[0]), round6(d->rot_deg[1]), round6(d->rot_deg[2])};
        cJSON_AddItemToObject(o, "rotate_deg", cJSON_CreateDoubleArray(r, 3));
    }
    if (s->has_scale)
        cJSON_AddNumberToObject(o, "scale", round6(d->scale));
    if (s->has_flip) {
        cJSON *f = cJSON_AddArrayToObject(o, "flip");
        for (int a = 0; a < 3; a++)
            if (d->flip[a]) {
                char ax[2] = {(char)('x' + a), 0};
                cJSON_AddItemToArray(f, cJSON_CreateString(ax));
            }
    }
    if (s->has_elastic) {
        cJSON *e = cJSON_AddObjectToObject(o, "elastic");
        cJSON_AddNumberToObject(e, "alpha_mm", d->elastic_alpha_mm);
        cJSON_AddNumberToObject(e, "sigma_mm", d->elastic_sigma_mm);
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)d->elastic_seed);
        cJSON_AddStringToObject(e, "seed", hex);
    }
    if (s->has_gamma)
        cJSON_AddNumberToObject(o, "gamma", round6(d->gamma));
    if (s->has_noise) {
        cJSON *n = cJSON_AddObjectToObject(o, "noise");
        cJSON_AddNumberToObject(n, "sd", round6(d->noise_sd));
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)d->noise_seed);
        cJSON_AddStringToObject(n, "seed", hex);
    }
    if (s->has_bias) {
        double b[RP_AUG_BIAS_TERMS];
        for (int k = 0; k < RP_AUG_BIAS_TERMS; k++)
            b[k] = round6(d->bias[k]);
        cJSON *bj = cJSON_AddObjectToObject(o, "bias");
        cJSON_AddStringToObject(bj, "terms", "x y z x2 y2 z2 xy xz yz");
        cJSON_AddItemToObject(bj, "coefficients", cJSON_CreateDoubleArray(b, RP_AUG_BIAS_TERMS));
    }
    cJSON_AddStringToObject(o, "interpolation",
                            d->interp == 0 ? "nearest" : d->interp == 3 ? "bspline3" : "linear");
    cJSON_AddStringToObject(o, "masks", d->mask_mode == RP_AUG_MASK_NEAREST ? "nearest" : "labels");
    return o;
}

/* ---- the spatial mapping ------------------------------------------------------------------- */

typedef struct mapping {
    int dim[3];
    double A[4][4], Ai[4][4];
    double c[3];           /* world centre */
    double Rt[3][3];       /* R^T / scale */
    int flip_vox[3];       /* voxel axes reversed */
    /* elastic control lattice */
    int elastic;
    int ncp[3];
    double cp_step[3];     /* voxels between control points */
    float *cp;             /* 3 * ncp[0]*ncp[1]*ncp[2] displacements (mm, world) */
} mapping;

static void mapping_free(mapping *m)
{
    free(m->cp);
    m->cp = NULL;
}

static void rotation(const double deg[3], double R[3][3])
{
    const double a = deg[0] * M_PI / 180, b = deg[1] * M_PI / 180, g = deg[2] * M_PI / 180;
    const double ca = cos(a), sa = sin(a), cb = cos(b), sb = sin(b), cg = cos(g), sg = sin(g);
    const double Rx[3][3] = {{1, 0, 0}, {0, ca, -sa}, {0, sa, ca}};
    const double Ry[3][3] = {{cb, 0, sb}, {0, 1, 0}, {-sb, 0, cb}};
    const double Rz[3][3] = {{cg, -sg, 0}, {sg, cg, 0}, {0, 0, 1}};
    double t[3][3];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            t[i][j] = Rz[i][0] * Ry[0][j] + Rz[i][1] * Ry[1][j] + Rz[i][2] * Ry[2][j];
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            R[i][j] = t[i][0] * Rx[0][j] + t[i][1] * Rx[1][j] + t[i][2] * Rx[2][j];
}

static int mapping_init(mapping *m, const rp_volume *v, const rp_aug_draw *d)
{
    memset(m, 0, sizeof *m);
    memcpy(m->dim, v->dim, sizeof m->dim);
    memcpy(m->A, v->affine, sizeof m->A);
    if (rp_mat4_invert(v->affine, m->Ai) != 0)
        return RP_EINVAL;
    for (int r = 0; r < 3; r++)
        m->c[r] = m->A[r][0] * (m->dim[0] - 1) / 2.0 + m->A[r][1] * (m->dim[1] - 1) / 2.0 +
                  m->A[r][2] * (m->dim[2] - 1) / 2.0 + m->A[r][3];
    double R[3][3];
    rotation(d->rot_deg, R);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            m->Rt[i][j] = R[j][i] / d->scale;
    /* world axis -> nearest voxel axis, for flips */
    int used[3] = {0};
    for (int r = 0; r < 3; r++) {
        int best = 0;
        double bv = -1;
        for (int a = 0; a < 3; a++) {
            double nrm = sqrt(m->A[0][a] * m->A[0][a] + m->A[1][a] * m->A[1][a] +
                              m->A[2][a] * m->A[2][a]);
            double c = nrm > 0 ? fabs(m->A[r][a]) / nrm : 0;
            if (!used[a] && c > bv) {
                bv = c;
                best = a;
            }
        }
        used[best] = 1;
        m->flip_vox[best] = d->flip[r];
    }
    if (d->elastic_alpha_mm > 0 && d->elastic_sigma_mm > 0) {
        m->elastic = 1;
        size_t tot = 3;
        for (int a = 0; a < 3; a++) {
            double sp = sqrt(m->A[0][a] * m->A[0][a] + m->A[1][a] * m->A[1][a] +
                             m->A[2][a] * m->A[2][a]);
            m->cp_step[a] = fmax(d->elastic_sigma_mm / (sp > 0 ? sp : 1), 1.0);
            /* one control point before the first voxel, two after the last (cubic support) */
            m->ncp[a] = (int)ceil((m->dim[a] - 1) / m->cp_step[a]) + 4;
            tot *= (size_t)m->ncp[a];
        }
        if (!(m->cp = malloc(tot * sizeof *m->cp)))
            return RP_ENOMEM;
        for (size_t i = 0; i < tot; i++)
            m->cp[i] = (float)uniform(d->elastic_seed, i, -d->elastic_alpha_mm,
                                      d->elastic_alpha_mm);
    }
    return 0;
}

static inline void bspline4(double t, double w[4])
{
    const double t2 = t * t, t3 = t2 * t, u = 1 - t;
    w[0] = u * u * u / 6;
    w[1] = (4 - 6 * t2 + 3 * t3) / 6;
    w[2] = (1 + 3 * t + 3 * t2 - 3 * t3) / 6;
    w[3] = t3 / 6;
}

/* Input continuous indices of output row (y, z): out[3*x + 0..2]. row is a work buffer of
 * 3 * ncp[0] doubles (elastic only). */
static void map_row(const mapping *m, int y, int z, double *out, double *row)
{
    const int nx = m->dim[0];
    const int yy = m->flip_vox[1] ? m->dim[1] - 1 - y : y;
    const int zz = m->flip_vox[2] ? m->dim[2] - 1 - z : z;
    if (m->elastic) {
        /* collapse the lattice along y and z for this row */
        double ty = yy / m->cp_step[1] + 1, tz = zz / m->cp_step[2] + 1;
        int jy = (int)floor(ty), jz = (int)floor(tz);
        double wy[4], wz[4];
        bspline4(ty - jy, wy);
        bspline4(tz - jz, wz);
        const int ncx = m->ncp[0], ncy = m->ncp[1];
        for (int cx = 0; cx < ncx; cx++)
            for (int k = 0; k < 3; k++) {
                double s = 0;
                for (int b = 0; b < 4; b++)
                    for (int a = 0; a < 4; a++) {
                        int cy = jy - 1 + a, cz = jz - 1 + b;
                        cy = cy < 0 ? 0 : cy >= ncy ? ncy - 1 : cy;
                        cz = cz < 0 ? 0 : cz >= m->ncp[2] ? m->ncp[2] - 1 : cz;
                        s += wy[a] * wz[b] *
                             m->cp[3 * (cx + (size_t)ncx * (cy + (size_t)ncy * cz)) + k];
                    }
                row[3 * cx + k] = s;
            }
    }
    for (int x = 0; x < nx; x++) {
        const int xx = m->flip_vox[0] ? nx - 1 - x : x;
        double p[3];
        for (int r = 0; r < 3; r++)
            p[r] = m->A[r][0] * xx + m->A[r][1] * yy + m->A[r][2] * zz + m->A[r][3];
        if (m->elastic) {
            double tx = xx / m->cp_step[0] + 1;
            int jx = (int)floor(tx);
            double wx[4];
            bspline4(tx - jx, wx);
            for (int a = 0; a < 4; a++) {
                int cx = jx - 1 + a;
                cx = cx < 0 ? 0 : cx >= m->ncp[0] ? m->ncp[0] - 1 : cx;
                for (int k = 0; k < 3; k++)
                    p[k] += wx[a] * row[3 * cx + k];
            }
        }
        double q[3];
        for (int r = 0; r < 3; r++)
            q[r] = m->c[r] + m->Rt[r][0] * (p[0] - m->c[0]) + m->Rt[r][1] * (p[1] - m->c[1]) +
                   m->Rt[r][2] * (p[2] - m->c[2]);
        for (int r = 0; r < 3; r++)
            out[3 * x + r] = m->Ai[r][0] * q[0] + m->Ai[r][1] * q[1] + m->Ai[r][2] * q[2] +
                             m->Ai[r][3];
    }
}

/* ---- interpolation ------------------------------------------------------------------------- */

static inline long mirror(long i, long n)
{
    if (n == 1)
        return 0;
    long p = 2 * (n - 1);
    i %= p;
    if (i < 0)
        i += p;
    return i >= n ? p - i : i;
}

/* Cubic B-spline prefilter of a line (pole sqrt(3)-2, mirror boundary). */
static void prefilter_line(double *c, long n)
{
    const double z = sqrt(3.0) - 2.0;
    if (n < 2)
        return;
    for (long i = 0; i < n; i++)
        c[i] *= 6.0;
    double c0;
    if (n <= 24) {
        const double zn1 = pow(z, (double)(n - 1));
        c0 = c[0] + zn1 * c[n - 1];
        double zi = z;
        for (long i = 1; i < n - 1; i++) {
            c0 += zi * (c[i] + zn1 * c[n - 1 - i]);
            zi *= z;
        }
        c0 /= 1 - zn1 * zn1;
    } else {
        c0 = c[0];
        double zk = z;
        for (long k = 1; k <= 24; k++) {
            c0 += zk * c[k];
            zk *= z;
        }
    }
    c[0] = c0;
    for (long k = 1; k < n; k++)
        c[k] += z * c[k - 1];
    c[n - 1] = (z * c[n - 2] + c[n - 1]) * (z / (z * z - 1));
    for (long k = n - 2; k >= 0; k--)
        c[k] = z * (c[k + 1] - c[k]);
}

/* New B-spline coefficient array (float) of channel 0 of v. */
static float *bspline_coefficients(const rp_volume *v)
{
    const long nx = v->dim[0], ny = v->dim[1], nz = v->dim[2];
    const size_t n = (size_t)nx * ny * nz;
    float *c = malloc(n * sizeof *c);
    if (!c)
        return NULL;
    memcpy(c, v->data, n * sizeof *c);
    const long dims[3] = {nx, ny, nz};
    const size_t stride[3] = {1, (size_t)nx, (size_t)nx * ny};
    int failed = 0;
    for (int a = 0; a < 3; a++) {
        const long len = dims[a];
        const long other = (long)(n / (size_t)len);
#pragma omp parallel
        {
            double *line = malloc((size_t)len * sizeof *line);
            if (!line)
                failed = 1;
#pragma omp for schedule(static)
            for (long o = 0; o < other; o++) {
                if (!line)
                    continue;
                size_t base;
                if (a == 0)
                    base = (size_t)o * nx;
                else if (a == 1)
                    base = (size_t)(o % nx) + (size_t)(o / nx) * nx * ny;
                else
                    base = (size_t)o;
                for (long i = 0; i < len; i++)
                    line[i] = c[base + (size_t)i * stride[a]];
                prefilter_line(line, len);
                for (long i = 0; i < len; i++)
                    c[base + (size_t)i * stride[a]] = (float)line[i];
            }
            free(line);
        }
    }
    if (failed) {
        free(c);
        return NULL;
    }
    return c;
}

static inline int inside(const double *q, const int dim[3])
{
    const double e = 1e-6;
    return q[0] >= -e && q[1] >= -e && q[2] >= -e && q[0] <= dim[0] - 1 + e &&
           q[1] <= dim[1] - 1 + e && q[2] <= dim[2] - 1 + e;
}

static double interp(const float *d, const int dim[3], const double *q, int order)
{
    const long nx = dim[0], ny = dim[1], nz = dim[2];
    if (order == 0) {
        long x = lround(q[0]), y = lround(q[1]), z = lround(q[2]);
        x = x < 0 ? 0 : x >= nx ? nx - 1 : x;
        y = y < 0 ? 0 : y >= ny ? ny - 1 : y;
        z = z < 0 ? 0 : z >= nz ? nz - 1 : z;
        return d[x + nx * (y + ny * z)];
    }
    if (order == 1) {
        long x0 = (long)floor(q[0]), y0 = (long)floor(q[1]), z0 = (long)floor(q[2]);
        double fx = q[0] - x0, fy = q[1] - y0, fz = q[2] - z0;
        double s = 0;
        for (int c = 0; c < 8; c++) {
            long x = x0 + (c & 1), y = y0 + ((c >> 1) & 1), z = z0 + ((c >> 2) & 1);
            double w = ((c & 1) ? fx : 1 - fx) * (((c >> 1) & 1) ? fy : 1 - fy) *
                       (((c >> 2) & 1) ? fz : 1 - fz);
            if (w == 0)
                continue;
            x = x < 0 ? 0 : x >= nx ? nx - 1 : x;
            y = y < 0 ? 0 : y >= ny ? ny - 1 : y;
            z = z < 0 ? 0 : z >= nz ? nz - 1 : z;
            s += w * d[x + nx * (y + ny * z)];
        }
        return s;
    }
    long x0 = (long)floor(q[0]), y0 = (long)floor(q[1]), z0 = (long)floor(q[2]);
    double wx[4], wy[4], wz[4];
    bspline4(q[0] - x0, wx);
    bspline4(q[1] - y0, wy);
    bspline4(q[2] - z0, wz);
    long ix[4], iy[4], iz[4];
    for (int k = 0; k < 4; k++) {
        ix[k] = mirror(x0 - 1 + k, nx);
        iy[k] = mirror(y0 - 1 + k, ny);
        iz[k] = mirror(z0 - 1 + k, nz);
    }
    double s = 0;
    for (int c = 0; c < 4; c++)
        for (int b = 0; b < 4; b++) {
            const float *row = d + nx * (iy[b] + ny * iz[c]);
            double wbc = wy[b] * wz[c];
            s += wbc * (wx[0] * row[ix[0]] + wx[1] * row[ix[1]] + wx[2] * row[ix[2]] +
                        wx[3] * row[ix[3]]);
        }
    return s;
}

/* Label with the largest trilinear weight at q (corners outside count as 0). */
static float label_at(const float *d, const int dim[3], const double *q)
{
    const long nx = dim[0], ny = dim[1], nz = dim[2];
    long x0 = (long)floor(q[0]), y0 = (long)floor(q[1]), z0 = (long)floor(q[2]);
    double fx = q[0] - x0, fy = q[1] - y0, fz = q[2] - z0;
    float lab[8];
    double w[8];
    int n = 0;
    for (int c = 0; c < 8; c++) {
        long x = x0 + (c & 1), y = y0 + ((c >> 1) & 1), z = z0 + ((c >> 2) & 1);
        double wc = ((c & 1) ? fx : 1 - fx) * (((c >> 1) & 1) ? fy : 1 - fy) *
                    (((c >> 2) & 1) ? fz : 1 - fz);
        float l = 0;
        if (x >= 0 && y >= 0 && z >= 0 && x < nx && y < ny && z < nz)
            l = d[x + nx * (y + ny * z)];
        int k = 0;
        while (k < n && lab[k] != l)
            k++;
        if (k == n) {
            lab[n] = l;
            w[n++] = 0;
        }
        w[k] += wc;
    }
    int best = 0;
    for (int k = 1; k < n; k++)
        if (w[k] > w[best] + 1e-12 || (fabs(w[k] - w[best]) <= 1e-12 && lab[k] < lab[best]))
            best = k;
    return lab[best];
}

/* ---- apply --------------------------------------------------------------------------------- */

static int check_vol(const rp_volume *v)
{
    return v && v->data && v->dim[0] >= 1 && v->dim[1] >= 1 && v->dim[2] >= 1;
}

int rp_aug_apply_image(const rp_volume *img, const rp_aug_draw *d, rp_volume **out)
{
    if (!check_vol(img) || !d || !out || !(d->scale > 0) ||
        (d->interp != 0 && d->interp != 1 && d->interp != 3))
        return RP_EINVAL;
    const size_t n = rp_volume_nvox(img);
    float lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (isfinite(img->data[i])) {
            lo = img->data[i] < lo ? img->data[i] : lo;
            hi = img->data[i] > hi ? img->data[i] : hi;
        }
    if (!isfinite(lo)) {
        lo = 0;
        hi = 1;
    }
    mapping m;
    int rc = mapping_init(&m, img, d);
    if (rc) {
        mapping_free(&m);
        return rc;
    }
    float *coef = NULL;
    const float *src = img->data;
    if (d->interp == 3) {
        if (!(coef = bspline_coefficients(img))) {
            mapping_free(&m);
            return RP_ENOMEM;
        }
        src = coef;
    }
    rp_volume *o = rp_volume_new(img->dim[0], img->dim[1], img->dim[2], 1);
    if (!o) {
        free(coef);
        mapping_free(&m);
        return RP_ENOMEM;
    }
    memcpy(o->affine, img->affine, sizeof o->affine);
    rp_volume_update_spacing(o);
    const int nx = img->dim[0], ny = img->dim[1], nz = img->dim[2];
    const double range = hi > lo ? (double)hi - lo : 1.0;
    int failed = 0;
#pragma omp parallel
    {
        double *q = malloc((size_t)nx * 3 * sizeof *q);
        double *row = malloc((size_t)(m.elastic ? m.ncp[0] : 1) * 3 * sizeof *row);
        if (!q || !row)
            failed = 1;
#pragma omp for schedule(static) collapse(2)
        for (int z = 0; z < nz; z++)
            for (int y = 0; y < ny; y++) {
                if (!q || !row)
                    continue;
                map_row(&m, y, z, q, row);
                float *dst = o->data + (size_t)nx * (y + (size_t)ny * z);
                for (int x = 0; x < nx; x++) {
                    const double *p = q + 3 * x;
                    double v = inside(p, img->dim) ? interp(src, img->dim, p, d->interp) : lo;
                    if (d->gamma != 1) {
                        double t = (v - lo) / range;
                        t = t < 0 ? 0 : t > 1 ? 1 : t;
                        v = lo + range * pow(t, d->gamma);
                    }
                    if (d->bias[0] || d->bias[1] || d->bias[2] || d->bias[3] || d->bias[4] ||
                        d->bias[5] || d->bias[6] || d->bias[7] || d->bias[8]) {
                        /* normalised coordinates of the output voxel, [-1, 1] */
                        double X = nx > 1 ? 2.0 * x / (nx - 1) - 1 : 0;
                        double Y = ny > 1 ? 2.0 * y / (ny - 1) - 1 : 0;
                        double Z = nz > 1 ? 2.0 * z / (nz - 1) - 1 : 0;
                        const double *b = d->bias;
                        double f = b[0] * X + b[1] * Y + b[2] * Z + b[3] * X * X + b[4] * Y * Y +
                                   b[5] * Z * Z + b[6] * X * Y + b[7] * X * Z + b[8] * Y * Z;
                        v = lo + (v - lo) * exp(f);
                    }
                    if (d->noise_sd > 0)
                        v += d->noise_sd *
                             gauss(d->noise_seed, x + (uint64_t)nx * (y + (uint64_t)ny * z));
                    dst[x] = (float)v;
                }
            }
        free(q);
        free(row);
    }
    free(coef);
    mapping_free(&m);
    if (failed) {
        rp_volume_free(o);
        return RP_ENOMEM;
    }
    *out = o;
    return 0;
}

int rp_aug_apply_mask(const rp_volume *labels, const rp_aug_draw *d, rp_volume **out)
{
    if (!check_vol(labels) || !d || !out || !(d->scale > 0))
        return RP_EINVAL;
    mapping m;
    int rc = mapping_init(&m, labels, d);
    if (rc) {
        mapping_free(&m);
        return rc;
    }
    rp_volume *o = rp_volume_new(labels->dim[0], labels->dim[1], labels->dim[2], 1);
    if (!o) {
        mapping_free(&m);
        return RP_ENOMEM;
    }
    memcpy(o->affine, labels->affine, sizeof o->affine);
    rp_volume_update_spacing(o);
    const int nx = labels->dim[0], ny = labels->dim[1], nz = labels->dim[2];
    int failed = 0;
#pragma omp parallel
    {
        double *q = malloc((size_t)nx * 3 * sizeof *q);
        double *row = malloc((size_t)(m.elastic ? m.ncp[0] : 1) * 3 * sizeof *row);
        if (!q || !row)
            failed = 1;
#pragma omp for schedule(static) collapse(2)
        for (int z = 0; z < nz; z++)
            for (int y = 0; y < ny; y++) {
                if (!q || !row)
                    continue;
                map_row(&m, y, z, q, row);
                float *dst = o->data + (size_t)nx * (y + (size_t)ny * z);
                for (int x = 0; x < nx; x++) {
                    const double *p = q + 3 * x;
                    if (d->mask_mode == RP_AUG_MASK_NEAREST)
                        dst[x] = inside(p, labels->dim) ? (float)interp(labels->data, labels->dim,
                                                                        p, 0)
                                                        : 0.0f;
                    else
                        dst[x] = label_at(labels->data, labels->dim, p);
                }
            }
        free(q);
        free(row);
    }
    mapping_free(&m);
    if (failed) {
        rp_volume_free(o);
        return RP_ENOMEM;
    }
    *out = o;
    return 0;
}
