/* pipeline/volume/vstats.c — running statistics of float samples, block by block (contract in
 * volume.h, "running statistics"). */
#include <math.h>

#include "pipeline/volume/volume.h"

/* Blocks stay in L1 between the vectorised min/max/sum pass and the count of the extremes. */
enum { VB = 4096 };

void rp_vstats_init(rp_vstats *s)
{
    s->lo = INFINITY;
    s->hi = -INFINITY;
    s->sum = s->sumsq = 0;
    s->n_lo = s->n_hi = s->bad = s->n = 0;
}

static void merge_ext(rp_vstats *s, float blo, size_t clo, float bhi, size_t chi)
{
    if (clo) {
        s->n_lo = blo < s->lo ? clo : s->n_lo + (blo == s->lo ? clo : 0);
        s->lo = blo < s->lo ? blo : s->lo;
    }
    if (chi) {
        s->n_hi = bhi > s->hi ? chi : s->n_hi + (bhi == s->hi ? chi : 0);
        s->hi = bhi > s->hi ? bhi : s->hi;
    }
}

void rp_vstats_add(rp_vstats *s, const float *p, size_t n)
{
    for (size_t o = 0; o < n; o += VB) {
        const float *q = p + o;
        const int m = (int)(n - o < VB ? n - o : VB);
        float blo = INFINITY, bhi = -INFINITY;
        double bs = 0, bss = 0;
#pragma omp simd reduction(min : blo) reduction(max : bhi) reduction(+ : bs, bss)
        for (int i = 0; i < m; i++) {
            float x = q[i];
            blo = x < blo ? x : blo;
            bhi = x > bhi ? x : bhi;
            bs += x;
            bss += (double)x * x;
        }
        if (!isfinite(bs) || !isfinite(bss)) {
            /* NaN/Inf in the block (or sums beyond double): the checking path */
            blo = INFINITY;
            bhi = -INFINITY;
            bs = bss = 0;
            for (int i = 0; i < m; i++) {
                float x = q[i];
                if (!isfinite(x)) {
                    s->bad++;
                    continue;
                }
                blo = x < blo ? x : blo;
                bhi = x > bhi ? x : bhi;
                bs += x;
                bss += (double)x * x;
            }
        }
        int clo = 0, chi = 0;
        if (blo <= bhi) {
#pragma omp simd reduction(+ : clo, chi)
            for (int i = 0; i < m; i++) {
                clo += q[i] == blo;
                chi += q[i] == bhi;
            }
        }
        s->sum += bs;
        s->sumsq += bss;
        s->n += (size_t)m;
        merge_ext(s, blo, (size_t)clo, bhi, (size_t)chi);
    }
}

void rp_vstats_merge(rp_vstats *into, const rp_vstats *from)
{
    into->sum += from->sum;
    into->sumsq += from->sumsq;
    into->bad += from->bad;
    into->n += from->n;
    merge_ext(into, from->lo, from->n_lo, from->hi, from->n_hi);
}
