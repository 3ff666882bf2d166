/*
 * bench/commit_model — what a durable receiver can reach on this disk and these cores, with
 * no network and no DICOM: T "associations" each stream a 512 KB instance into one log file
 * (64 KB writes, writeback started every 128 KB, as store/spool.c does), spending a given
 * CPU time per instance while it arrives (the sender's and receiver's work together) and
 * after its answer (the sender preparing the next one), and wait at the end of each for an
 * fdatasync that covers it: one committer at a time for everything queued (group commit,
 * as radprepd) or every thread its own call (concurrent). With sync=none it is a receiver
 * that never syncs (storescp's durability).
 *
 * It answers "is the gap to storescp on 4 associations the node's code or the disk's
 * flush?": feed it the CPU per instance measured around a real send (/proc/stat) and compare
 * its rate with bench/ingest's. CPU work is spun on the thread's own CPU clock, so on 2 cores
 * shared by T threads it stretches as real work would.
 *
 * usage: commit_model DIR N THREADS XFER_CPU_MS OTHER_CPU_MS [group|concurrent|none]
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define INST (512 * 1024)
#define PIECE (64 * 1024)
#define KICK (128 * 1024)
#define REC 4096

enum sync_mode { SYNC_GROUP, SYNC_CONCURRENT, SYNC_NONE };

static int g_fd, g_n;
static enum sync_mode g_mode;
static double g_xfer_s, g_other_s;
static char *g_data;
static atomic_long g_next;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static int g_syncing;
static long g_done_gen, g_next_gen = 1, g_syncs;
static double g_wait_s;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static double mono_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void spin_cpu(double s)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    double end = t.tv_sec + t.tv_nsec * 1e-9 + s;
    do
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    while (t.tv_sec + t.tv_nsec * 1e-9 < end);
}

/* Wait until an fdatasync that started after this call has finished. */
static void commit(void)
{
    if (g_mode == SYNC_NONE)
        return;
    if (g_mode == SYNC_CONCURRENT) {
        fdatasync(g_fd);
        pthread_mutex_lock(&g_mu);
        g_syncs++;
        pthread_mutex_unlock(&g_mu);
        return;
    }
    pthread_mutex_lock(&g_mu);
    long need = g_next_gen;
    while (g_done_gen < need) {
        if (g_syncing) {
            pthread_cond_wait(&g_cv, &g_mu);
            continue;
        }
        g_syncing = 1;
        long gen = g_next_gen++;
        pthread_mutex_unlock(&g_mu);
        fdatasync(g_fd);
        pthread_mutex_lock(&g_mu);
        g_syncs++;
        g_done_gen = gen;
        g_syncing = 0;
        pthread_cond_broadcast(&g_cv);
    }
    pthread_mutex_unlock(&g_mu);
}

static void *association(void *arg)
{
    (void)arg;
    char rec[REC];
    memset(rec, 7, sizeof rec);
    for (;;) {
        long i = atomic_fetch_add(&g_next, 1);
        if (i >= g_n)
            break;
        off_t at = (off_t)i * (INST + REC);
        for (int k = 0; k < INST; k += PIECE) {
            spin_cpu(g_xfer_s * PIECE / INST);
            if (pwrite(g_fd, g_data + k, PIECE, at + REC + k) != PIECE)
                die("pwrite");
            if ((k + PIECE) % KICK == 0)
                sync_file_range(g_fd, at + REC + k + PIECE - KICK, KICK, SYNC_FILE_RANGE_WRITE);
        }
        double t = mono_s();
        if (pwrite(g_fd, rec, REC, at) != REC)
            die("pwrite");
        commit();
        double w = mono_s() - t;
        pthread_mutex_lock(&g_mu);
        g_wait_s += w;
        pthread_mutex_unlock(&g_mu);
        spin_cpu(g_other_s);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr,
                "usage: %s DIR N THREADS XFER_CPU_MS OTHER_CPU_MS "
                "[group|concurrent|none]\n",
                argv[0]);
        return 2;
    }
    g_n = atoi(argv[2]);
    int nt = atoi(argv[3]);
    g_xfer_s = atof(argv[4]) * 1e-3;
    g_other_s = atof(argv[5]) * 1e-3;
    const char *m = argc > 6 ? argv[6] : "group";
    g_mode = !strcmp(m, "concurrent") ? SYNC_CONCURRENT
             : !strcmp(m, "none")     ? SYNC_NONE
                                      : SYNC_GROUP;
    if (g_n < 1 || nt < 1 || nt > 64) {
        fprintf(stderr, "N >= 1, 1 <= THREADS <= 64\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/commit_model.log", argv[1]);
    g_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (g_fd < 0) {
        perror(path);
        return 1;
    }
    /* overwritten in place, as the spool log: written once and synced before the clock */
    size_t total = (size_t)(g_n + 1) * (INST + REC), chunk = 8u << 20;
    char *zero = calloc(1, chunk);
    g_data = malloc(INST);
    if (!zero || !g_data)
        return 1;
    for (size_t off = 0; off < total; off += chunk)
        if (pwrite(g_fd, zero, chunk, (off_t)off) != (ssize_t)chunk)
            return 1;
    fsync(g_fd);
    for (int i = 0; i < INST; i++)
        g_data[i] = (char)rand();
    pthread_t th[64];
    double t0 = mono_s();
    for (int i = 0; i < nt; i++)
        pthread_create(&th[i], NULL, association, NULL);
    for (int i = 0; i < nt; i++)
        pthread_join(th[i], NULL);
    double dt = mono_s() - t0;
    printf("%-10s %d assoc: %7.1f inst/s, commit wait %.3f ms, %.2f instances per sync\n", m, nt,
           g_n / dt, g_wait_s / g_n * 1e3, g_syncs ? (double)g_n / g_syncs : 0.0);
    unlink(path);
    free(zero);
    free(g_data);
    return 0;
}
