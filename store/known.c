/* known — the store's in-memory sets: the instances it holds (SOP UID hash -> study/series)
 * and the SOP Instance UIDs being decided or committed right now (the per-instance lock).
 * See store_internal.h for what they promise and what they cost. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "store/store_internal.h"

/* FNV-1a over the bytes, then a 64-bit finaliser (splitmix64): UIDs are digits and dots that
 * share long prefixes, so the raw FNV value would cluster in the low bits used for slots. */
uint64_t rp_known_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h ? h : 1; /* 0 marks a free slot */
}

int rp_known_init(rp_known *k)
{
    memset(k, 0, sizeof *k);
    k->cap = 1024;
    k->keys = calloc(k->cap, sizeof *k->keys);
    k->series = calloc(k->cap, sizeof *k->series);
    k->cap_ser_index = 64;
    k->ser_index = calloc(k->cap_ser_index, sizeof *k->ser_index);
    if (!k->keys || !k->series || !k->ser_index) {
        rp_known_free(k);
        return RP_ENOMEM;
    }
    pthread_mutex_init(&k->lock, NULL);
    return 0;
}

void rp_known_free(rp_known *k)
{
    if (k->keys)
        pthread_mutex_destroy(&k->lock);
    free(k->keys);
    free(k->series);
    free(k->ser);
    free(k->ser_index);
    memset(k, 0, sizeof *k);
}

/* Slot of `h` in keys[] (where it is, or the free slot where it would go). */
static size_t probe(const uint64_t *keys, size_t cap, uint64_t h)
{
    size_t i = (size_t)h & (cap - 1);
    while (keys[i] && keys[i] != h)
        i = (i + 1) & (cap - 1);
    return i;
}

static int grow_instances(rp_known *k)
{
    size_t cap = k->cap * 2;
    uint64_t *keys = calloc(cap, sizeof *keys);
    uint32_t *series = calloc(cap, sizeof *series);
    if (!keys || !series) {
        free(keys);
        free(series);
        return RP_ENOMEM;
    }
    for (size_t i = 0; i < k->cap; i++)
        if (k->keys[i]) {
            size_t j = probe(keys, cap, k->keys[i]);
            keys[j] = k->keys[i];
            series[j] = k->series[i];
        }
    free(k->keys);
    free(k->series);
    k->keys = keys;
    k->series = series;
    k->cap = cap;
    return 0;
}

/* Index of the study/series pair in ser[], added when new; negative RP_ENOMEM. */
static long series_slot(rp_known *k, const char *study, const char *series)
{
    uint64_t h = rp_known_hash(series);
    size_t mask = k->cap_ser_index - 1, i = (size_t)h & mask;
    for (; k->ser_index[i]; i = (i + 1) & mask) {
        const rp_known_series *e = &k->ser[k->ser_index[i] - 1];
        if (strcmp(e->series_uid, series) == 0 && strcmp(e->study_uid, study) == 0)
            return (long)k->ser_index[i] - 1;
    }
    if (k->n_ser == k->cap_ser) {
        size_t cap = k->cap_ser ? k->cap_ser * 2 : 64;
        rp_known_series *ser = realloc(k->ser, cap * sizeof *ser);
        if (!ser)
            return RP_ENOMEM;
        k->ser = ser;
        k->cap_ser = cap;
    }
    if ((k->n_ser + 1) * 10 > k->cap_ser_index * 7) {
        size_t cap = k->cap_ser_index * 2;
        uint32_t *idx = calloc(cap, sizeof *idx);
        if (!idx)
            return RP_ENOMEM;
        for (size_t j = 0; j < k->n_ser; j++) {
            size_t p = (size_t)rp_known_hash(k->ser[j].series_uid) & (cap - 1);
            while (idx[p])
                p = (p + 1) & (cap - 1);
            idx[p] = (uint32_t)j + 1;
        }
        free(k->ser_index);
        k->ser_index = idx;
        k->cap_ser_index = cap;
        for (i = (size_t)h & (cap - 1); idx[i]; i = (i + 1) & (cap - 1))
            ;
    }
    rp_known_series *e = &k->ser[k->n_ser];
    rp_strlcpy(e->study_uid, study, sizeof e->study_uid);
    rp_strlcpy(e->series_uid, series, sizeof e->series_uid);
    k->ser_index[i] = (uint32_t)++k->n_ser;
    return (long)k->n_ser - 1;
}

int rp_known_set(rp_known *k, const char *sop, const char *study, const char *series)
{
    uint64_t h = rp_known_hash(sop);
    int rc = 0;
    pthread_mutex_lock(&k->lock);
    long si = series_slot(k, study, series);
    if (si < 0) {
        rc = (int)si;
        goto out;
    }
    if ((k->n + 1) * 10 > k->cap * 7 && (rc = grow_instances(k)) != 0)
        goto out;
    size_t i = probe(k->keys, k->cap, h);
    if (!k->keys[i]) {
        k->keys[i] = h;
        k->n++;
    }
    k->series[i] = (uint32_t)si;
out:
    pthread_mutex_unlock(&k->lock);
    return rc;
}

int rp_known_get(rp_known *k, const char *sop, char *rel, size_t relsz)
{
    uint64_t h = rp_known_hash(sop);
    int found = 0;
    pthread_mutex_lock(&k->lock);
    size_t i = probe(k->keys, k->cap, h);
    if (k->keys[i]) {
        const rp_known_series *e = &k->ser[k->series[i]];
        found = snprintf(rel, relsz, "%s/%s/%s.dcm", e->study_uid, e->series_uid, sop) < (int)relsz;
    }
    pthread_mutex_unlock(&k->lock);
    return found;
}

size_t rp_known_count(rp_known *k)
{
    pthread_mutex_lock(&k->lock);
    size_t n = k->n;
    pthread_mutex_unlock(&k->lock);
    return n;
}

/* ---- the per-instance lock ------------------------------------------------------------- */

int rp_pending_init(rp_pending *p)
{
    memset(p, 0, sizeof *p);
    p->cap = 64;
    p->keys = calloc(p->cap, sizeof *p->keys);
    if (!p->keys)
        return RP_ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cv, NULL);
    return 0;
}

void rp_pending_free(rp_pending *p)
{
    if (!p->keys)
        return;
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cv);
    free(p->keys);
    memset(p, 0, sizeof *p);
}

static uint64_t pending_key(const char *sop)
{
    uint64_t h = rp_known_hash(sop);
    return h ? h : 1; /* 0 marks an empty slot */
}

/* Double the table (lock held). */
static int pending_grow(rp_pending *p)
{
    size_t cap = p->cap * 2;
    uint64_t *k = calloc(cap, sizeof *k);
    if (!k)
        return RP_ENOMEM;
    for (size_t i = 0; i < p->cap; i++)
        if (p->keys[i])
            k[probe(k, cap, p->keys[i])] = p->keys[i];
    free(p->keys);
    p->keys = k;
    p->cap = cap;
    return 0;
}

static int pending_take(rp_pending *p, uint64_t h, int wait)
{
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    while (p->keys[probe(p->keys, p->cap, h)] == h) {
        if (!wait) {
            rc = RP_EBUSY;
            goto out;
        }
        pthread_cond_wait(&p->cv, &p->lock);
    }
    if (2 * (p->n + 1) > p->cap && (rc = pending_grow(p)) != 0)
        goto out;
    p->keys[probe(p->keys, p->cap, h)] = h;
    p->n++;
out:
    pthread_mutex_unlock(&p->lock);
    return rc;
}

int rp_pending_acquire(rp_pending *p, const char *sop)
{
    return pending_take(p, pending_key(sop), 1);
}

int rp_pending_try_acquire(rp_pending *p, const char *sop)
{
    return pending_take(p, pending_key(sop), 0);
}

void rp_pending_release(rp_pending *p, const char *sop)
{
    uint64_t h = pending_key(sop);
    pthread_mutex_lock(&p->lock);
    size_t i = probe(p->keys, p->cap, h);
    if (p->keys[i] == h) {
        /* delete with backward shift: every later key of the run must stay reachable */
        p->keys[i] = 0;
        p->n--;
        for (size_t j = (i + 1) & (p->cap - 1); p->keys[j]; j = (j + 1) & (p->cap - 1)) {
            uint64_t k = p->keys[j];
            p->keys[j] = 0;
            p->keys[probe(p->keys, p->cap, k)] = k;
        }
    }
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->lock);
}
