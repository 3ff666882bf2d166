/* pipeline/ct/slicecc.c — 2-D connected components of one bit slice (see slicecc_internal.h). */
#include "pipeline/ct/slicecc_internal.h"

#include <stdlib.h>
#include <string.h>

#include "common/common.h"

void rp_slicecc_init(rp_slicecc *sc)
{
    memset(sc, 0, sizeof *sc);
}

void rp_slicecc_free(rp_slicecc *sc)
{
    free(sc->runs);
    free(sc->run_y);
    free(sc->lab);
    free(sc->next);
    free(sc->parent);
    free(sc->row_start);
    free(sc->comp);
    memset(sc, 0, sizeof *sc);
}

static int grow_runs(rp_slicecc *sc, size_t need)
{
    if (need <= sc->cap)
        return 0;
    size_t cap = sc->cap ? sc->cap : 1024;
    while (cap < need)
        cap *= 2;
    rp_brun *r = realloc(sc->runs, cap * sizeof *r);
    if (r)
        sc->runs = r;
    int *y = realloc(sc->run_y, cap * sizeof *y);
    if (y)
        sc->run_y = y;
    int *l = realloc(sc->lab, cap * sizeof *l);
    if (l)
        sc->lab = l;
    size_t *n = realloc(sc->next, cap * sizeof *n);
    if (n)
        sc->next = n;
    int *p = realloc(sc->parent, cap * sizeof *p);
    if (p)
        sc->parent = p;
    if (!r || !y || !l || !n || !p)
        return RP_ENOMEM;
    sc->cap = cap;
    return 0;
}

int rp_slicecc_label(rp_slicecc *sc, const uint64_t *plane, int nx, int ny, int wpr)
{
    if (ny + 1 > sc->rows_cap) {
        size_t *rs = realloc(sc->row_start, (size_t)(ny + 1) * sizeof *rs);
        if (!rs)
            return RP_ENOMEM;
        sc->row_start = rs;
        sc->rows_cap = ny + 1;
    }
    size_t n = 0;
    for (int y = 0; y < ny; y++) {
        const uint64_t *row = plane + (size_t)y * wpr;
        sc->row_start[y] = n;
        size_t k = rp_row_runs(row, wpr, NULL);
        if (grow_runs(sc, n + k))
            return RP_ENOMEM;
        rp_row_runs(row, wpr, sc->runs + n);
        for (size_t i = n; i < n + k; i++) {
            sc->run_y[i] = y;
            sc->parent[i] = (int)i;
        }
        n += k;
    }
    sc->row_start[ny] = n;
    sc->nruns = n;
    for (int y = 1; y < ny; y++)
        rp_uf_union_rows(sc->runs, sc->parent, sc->row_start[y - 1], sc->row_start[y],
                         sc->row_start[y], sc->row_start[y + 1]);
    int nc = 0;
    for (size_t i = 0; i < n; i++) {
        int r = rp_uf_find(sc->parent, (int)i);
        sc->lab[i] = (size_t)r == i ? nc++ : sc->lab[r];
    }
    if (nc > sc->ccap) {
        rp_slicecomp *c = realloc(sc->comp, (size_t)nc * sizeof *c);
        if (!c)
            return RP_ENOMEM;
        sc->comp = c;
        sc->ccap = nc;
    }
    sc->ncomp = nc;
    for (int c = 0; c < nc; c++) {
        rp_slicecomp *k = &sc->comp[c];
        memset(k, 0, sizeof *k);
        k->first = (size_t)-1;
        k->bbox[0] = k->bbox[2] = 1 << 30;
        k->bbox[1] = k->bbox[3] = -1;
    }
    /* link runs per component in reverse, so the lists come out in scan order */
    for (size_t i = n; i-- > 0;) {
        rp_slicecomp *k = &sc->comp[sc->lab[i]];
        const rp_brun *r = &sc->runs[i];
        int y = sc->run_y[i], len = r->x1 - r->x0;
        sc->next[i] = k->first;
        k->first = i;
        k->area += len;
        k->cx += (double)len * (r->x0 + r->x1 - 1) / 2.0;
        k->cy += (double)len * y;
        if (r->x0 < k->bbox[0])
            k->bbox[0] = r->x0;
        if (r->x1 - 1 > k->bbox[1])
            k->bbox[1] = r->x1 - 1;
        if (y < k->bbox[2])
            k->bbox[2] = y;
        if (y > k->bbox[3])
            k->bbox[3] = y;
        if (r->x0 == 0 || r->x1 >= nx || y == 0 || y == ny - 1)
            k->border = 1;
    }
    for (int c = 0; c < nc; c++) {
        rp_slicecomp *k = &sc->comp[c];
        if (k->area) {
            k->cx /= (double)k->area;
            k->cy /= (double)k->area;
        }
    }
    return 0;
}
