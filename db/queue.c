/*
 * db/queue — batched, asynchronous indexing for the SCP.
 *
 * Network threads push copies of rp_instance_meta into a ring that grows when full (never
 * drops, never blocks on SQLite); one writer thread with its own connection commits them in
 * transactions of up to `batch` items, or whatever is pending once the oldest item has waited
 * `flush_ms`. Durability comes from the instance files (store/), so the index may lag by one
 * batch; rp_store_reconcile() covers a crash in between.
 *
 * Sequence numbers make flush exact: every push gets seq = ++pushed; flush waits until
 * `committed` reaches the pushed value it saw.
 */
#include "db/db_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct rp_db_queue {
    rp_db *db;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t more; /* writer waits: items, flush request or stop */
    pthread_cond_t done; /* flushers wait: committed advanced or failed */
    rp_instance_meta *ring;
    size_t cap, head, count; /* items ring[head .. head+count) modulo cap */
    unsigned long long pushed, committed;
    unsigned long long flush_target; /* highest seq a flusher waits for */
    int failures;                    /* consecutive failed commits */
    int stop;
    int batch, flush_ms;
    double oldest_at; /* monotonic time the oldest pending item was pushed */
    void (*on_commit)(void *arg, size_t n); /* called with mu held; see db.h */
    void *on_commit_arg;
};

static int ring_grow(rp_db_queue *q)
{
    size_t ncap = q->cap ? q->cap * 2 : 256;
    rp_instance_meta *n = malloc(ncap * sizeof *n);
    if (!n)
        return RP_ENOMEM;
    for (size_t i = 0; i < q->count; i++)
        n[i] = q->ring[(q->head + i) % q->cap];
    free(q->ring);
    q->ring = n;
    q->cap = ncap;
    q->head = 0;
    return 0;
}

static void deadline_after(struct timespec *ts, double secs)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    long long ns = ts->tv_nsec + (long long)(secs * 1e9);
    ts->tv_sec += ns / 1000000000LL;
    ts->tv_nsec = ns % 1000000000LL;
}

static void *writer_main(void *arg)
{
    rp_db_queue *q = arg;
    size_t bufcap = (size_t)q->batch;
    rp_instance_meta *buf = malloc(bufcap * sizeof *buf);
    pthread_mutex_lock(&q->mu);
    for (;;) {
        /* Wait until a batch is full, the oldest item is flush_ms old, someone flushes, or
         * we stop. */
        while (!q->stop) {
            if (q->count >= (size_t)q->batch)
                break;
            if (q->count > 0 && q->flush_target > q->committed)
                break;
            if (q->count > 0 && rp_mono_s() - q->oldest_at >= q->flush_ms / 1000.0)
                break;
            struct timespec ts;
            double wait_s =
                q->count > 0 ? q->flush_ms / 1000.0 - (rp_mono_s() - q->oldest_at) : 1.0;
            if (q->failures)
                wait_s = 0.2 * q->failures < 2.0 ? 0.2 * q->failures : 2.0;
            deadline_after(&ts, wait_s > 0 ? wait_s : 0.001);
            int w = pthread_cond_timedwait(&q->more, &q->mu, &ts);
            if (w == ETIMEDOUT && q->failures && q->count > 0)
                break; /* retry a failed batch */
        }
        if (q->count == 0 && q->stop)
            break;
        if (q->count == 0)
            continue;
        size_t n = q->count < bufcap ? q->count : bufcap;
        if (!buf)
            n = 0;
        for (size_t i = 0; i < n; i++)
            buf[i] = q->ring[(q->head + i) % q->cap];
        pthread_mutex_unlock(&q->mu);

        int rc = n ? rp_db_index_instances(q->db, buf, n) : RP_ENOMEM;

        pthread_mutex_lock(&q->mu);
        /* RP_EUID means bad items were skipped and the rest committed: never retry those. */
        if (rc == 0 || rc == RP_EUID) {
            q->head = (q->head + n) % q->cap;
            q->count -= n;
            q->committed += n;
            q->failures = 0;
            q->oldest_at = rp_mono_s();
            /* Under mu, so that removing the hook waits for a call in progress. */
            if (q->on_commit && n)
                q->on_commit(q->on_commit_arg, n);
        } else {
            q->failures++;
            RP_WARN("db", "index batch failed, will retry items=%zu attempt=%d error=\"%s\"", n,
                    q->failures, rp_strerror(rc));
            if (q->stop && q->failures >= 5) {
                RP_ERROR("db",
                         "giving up on index batch at stop items=%zu (files are kept; "
                         "reconcile indexes them at next start)",
                         q->count);
                q->committed += q->count;
                q->count = 0;
            }
        }
        pthread_cond_broadcast(&q->done);
    }
    pthread_cond_broadcast(&q->done);
    pthread_mutex_unlock(&q->mu);
    free(buf);
    return NULL;
}

int rp_db_queue_start(const char *path, int batch, int flush_ms, rp_db_queue **out)
{
    *out = NULL;
    rp_db_queue *q = calloc(1, sizeof *q);
    if (!q)
        return RP_ENOMEM;
    q->batch = batch > 0 ? batch : 64;
    q->flush_ms = flush_ms > 0 ? flush_ms : 200;
    int rc = rp_db_open(path, &q->db);
    if (rc) {
        free(q);
        return rc;
    }
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->more, &ca);
    pthread_cond_init(&q->done, &ca);
    pthread_condattr_destroy(&ca);
    if (ring_grow(q) || pthread_create(&q->thread, NULL, writer_main, q) != 0) {
        rp_db_close(q->db);
        free(q->ring);
        pthread_mutex_destroy(&q->mu);
        pthread_cond_destroy(&q->more);
        pthread_cond_destroy(&q->done);
        free(q);
        return RP_ENOMEM;
    }
    *out = q;
    return 0;
}

int rp_db_queue_push(rp_db_queue *q, const rp_instance_meta *meta)
{
    pthread_mutex_lock(&q->mu);
    if (q->count == q->cap && ring_grow(q) != 0) {
        pthread_mutex_unlock(&q->mu);
        RP_ERROR("db", "index queue cannot grow sop_uid=%s", meta->sop_instance_uid);
        return RP_ENOMEM;
    }
    q->ring[(q->head + q->count) % q->cap] = *meta;
    if (q->count == 0)
        q->oldest_at = rp_mono_s();
    q->count++;
    q->pushed++;
    /* Wake the writer only when it must act or re-arm its timer: the first pending item
     * (starts the flush_ms clock) and a full batch. */
    if (q->count == 1 || q->count == (size_t)q->batch)
        pthread_cond_signal(&q->more);
    pthread_mutex_unlock(&q->mu);
    return 0;
}

int rp_db_queue_flush(rp_db_queue *q)
{
    pthread_mutex_lock(&q->mu);
    unsigned long long target = q->pushed;
    if (target > q->flush_target)
        q->flush_target = target;
    pthread_cond_signal(&q->more);
    int rc = 0;
    while (q->committed < target) {
        int before = q->failures;
        pthread_cond_wait(&q->done, &q->mu);
        if (q->failures > before && q->failures >= 3) {
            rc = RP_EDB; /* still queued; the writer keeps retrying */
            break;
        }
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

void rp_db_queue_on_commit(rp_db_queue *q, void (*fn)(void *arg, size_t n), void *arg)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->on_commit = fn;
    q->on_commit_arg = fn ? arg : NULL;
    pthread_mutex_unlock(&q->mu);
}

void rp_db_queue_stop(rp_db_queue *q)
{
    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_signal(&q->more);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->thread, NULL);
    rp_db_close(q->db);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->more);
    pthread_cond_destroy(&q->done);
    free(q->ring);
    free(q);
}
