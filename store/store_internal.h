/*
 * store_internal.h — the store's known-instance set (store/known.c). Only store/ includes it.
 *
 * Which SOP Instance UIDs the store holds, and in which study/series, so that a duplicate
 * under another series is found without asking SQLite on a network thread (see store.h for
 * why). It is a hint, never the truth: every answer is checked against the file system
 * before anything is decided, so a stale entry only costs a stat(). Two UIDs with one 64-bit
 * hash (about 3e-8 for a million instances) share an entry: the later one's series wins and
 * a cross-series duplicate of the other is then found by nothing but its path.
 *
 * Shape: an open-addressing table of 64-bit hashes of the SOP Instance UID, each pointing at
 * an entry of a table of distinct study/series pairs. 12 bytes per slot, doubled at 70 %
 * load: 17-34 bytes per instance (1 M instances: 25.7 MB) plus ~134 bytes per series. UIDs
 * themselves are not kept. Thread-safe (one mutex, held for a hash probe).
 */
#ifndef RP_STORE_INTERNAL_H
#define RP_STORE_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rp_known_series {
    char study_uid[65];
    char series_uid[65];
} rp_known_series;

typedef struct rp_known {
    pthread_mutex_t lock;
    uint64_t *keys;   /* hash of the SOP Instance UID, 0 = free slot */
    uint32_t *series; /* index into ser[] */
    size_t cap, n;    /* slots (power of two), used slots */
    rp_known_series *ser;
    size_t n_ser, cap_ser;
    uint32_t *ser_index; /* open addressing over ser[]: index + 1, 0 = free */
    size_t cap_ser_index;
} rp_known;

int rp_known_init(rp_known *k);
void rp_known_free(rp_known *k);
/* Remember that `sop` lives in study/series (replaces what was remembered). RP_ENOMEM. */
int rp_known_set(rp_known *k, const char *sop, const char *study, const char *series);
/* 1 and the store-relative path (study/series/sop.dcm) into rel when `sop` is remembered,
 * else 0. */
int rp_known_get(rp_known *k, const char *sop, char *rel, size_t relsz);
/* Instances remembered (for logs). */
size_t rp_known_count(rp_known *k);

#endif
