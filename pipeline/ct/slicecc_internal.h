/*
 * pipeline/ct/slicecc_internal.h — runs of bit rows and 2-D connected components of one slice
 * of an rp_bits volume (internal to pipeline/ct/: hole filling and airway tracking).
 */
#ifndef RP_PIPELINE_CT_SLICECC_INTERNAL_H
#define RP_PIPELINE_CT_SLICECC_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/volume/volume.h"

typedef rp_cc_run rp_brun; /* [x0, x1), as volume's runs */

/* Runs of 1 bits of one row of wpr words (out may be NULL: count only). */
size_t rp_row_runs(const uint64_t *w, int wpr, rp_brun *out);
/* Set bits [x0, x1) of a row. */
void rp_row_set(uint64_t *row, int x0, int x1);

/* Union-find over run indices (the smaller index is the root). */
int rp_uf_find(int *parent, int i);
void rp_uf_union(int *parent, int a, int b);
/* Union the runs [i, ie) and [j, je) of two adjacent rows wherever they overlap along x. */
void rp_uf_union_rows(const rp_brun *runs, int *parent, size_t i, size_t ie, size_t j, size_t je);

typedef struct rp_slicecomp {
    long area;     /* pixels */
    int border;    /* touches the slice border */
    size_t first;  /* first run (then next[]) */
    double cx, cy; /* centroid, pixels */
    int bbox[4];   /* x0, x1, y0, y1 inclusive */
} rp_slicecomp;

/* 4-connected components of one slice; buffers grow as needed and are reused. */
typedef struct rp_slicecc {
    rp_brun *runs;
    int *run_y, *lab; /* row and component of each run */
    size_t *next;     /* next run of the same component, (size_t)-1 at the end */
    int *parent;
    size_t *row_start; /* ny + 1 */
    size_t nruns, cap;
    int rows_cap;
    rp_slicecomp *comp;
    int ncomp, ccap;
} rp_slicecc;

void rp_slicecc_init(rp_slicecc *sc);
void rp_slicecc_free(rp_slicecc *sc);
/* Label the 1 bits of the plane (ny rows of wpr words, nx voxels per row). RP_ENOMEM. */
int rp_slicecc_label(rp_slicecc *sc, const uint64_t *plane, int nx, int ny, int wpr);

#endif
