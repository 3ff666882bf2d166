/* pipeline/volume/mem.c — large working buffers on transparent huge pages (contract in
 * volume.h, "large working buffers"). */
#include "pipeline/volume/volume.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define HUGE_SZ ((size_t)2 << 20)
/* glibc serves a large block as a mapping of its own: the block starts 16 bytes into it and
 * the mapping is the request plus 8 bytes, rounded up to a page. Asking for 32 bytes less
 * than a multiple of 2 MiB makes the mapping exactly that multiple, which the kernel places
 * on a 2 MiB boundary, so huge pages cover all of it (not only its aligned middle, with up
 * to 4 MiB of 4 KiB pages at the ends), and the advice below covers the whole mapping.
 * Another allocator only wastes < 2 MiB per buffer. */
#define MAP_SLACK 32
/* From here up a request takes whole huge pages: one fault and 2 MiB of zeroing cost less
 * than the 128+ faults of 4 KiB pages it replaces (each a trap to the host on a VM). */
#define HUGE_MIN ((size_t)512 << 10)

static size_t huge_request(size_t n)
{
    if (n < HUGE_MIN)
        return n ? n : 1;
    size_t r = (n + MAP_SLACK + HUGE_SZ - 1) & ~(HUGE_SZ - 1);
    return r < n ? n : r - MAP_SLACK; /* r < n: overflow, leave the size alone */
}

/* Ask for huge pages on [p, p+n) rounded out to pages (no-op for small buffers, or where the
 * kernel has no THP). Before the first write. */
static void hint_huge(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
    if (!p || n + MAP_SLACK < HUGE_SZ)
        return;
    /* The advice covers [p, p+n) rounded out to whole pages. A large glibc block is a mapping
     * of its own that starts a few bytes before p and ends on the page after p+n, so this is
     * the whole mapping: advice on part of it would split it in several kernel areas, and
     * then realloc could no longer mremap it and would copy every byte instead. Elsewhere
     * (a block inside the heap, another allocator) advice on a neighbour's page is harmless:
     * it changes no contents. No allocator internals are read. */
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0)
        return;
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(pg - 1);
    uintptr_t e = ((uintptr_t)p + n + (uintptr_t)pg - 1) & ~(uintptr_t)(pg - 1);
    (void)madvise((void *)a, e - a, MADV_HUGEPAGE); /* advisory: failure changes nothing */
#else
    (void)p;
    (void)n;
#endif
}

/* malloc wrote the block's size in the mapping's first page before the advice, so that page
 * is already a 4 KiB one and the whole first 2 MiB would fault in 4 KiB at a time (512
 * faults per buffer). A synchronous collapse of that one region (Linux >= 6.1; elsewhere an
 * ignored error) makes it one huge page now, keeping the header. */
static void collapse_head(void *p, size_t n)
{
#if defined(__linux__)
    const int madv_collapse = 25; /* MADV_COLLAPSE, not yet in every libc's headers */
    long pg = sysconf(_SC_PAGESIZE);
    if (!p || n + MAP_SLACK < HUGE_SZ || pg <= 0)
        return;
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(pg - 1);
    if (a % HUGE_SZ == 0) /* a fresh mapping of its own (see MAP_SLACK), not heap memory */
        (void)madvise((void *)a, HUGE_SZ, madv_collapse);
#else
    (void)p;
    (void)n;
#endif
}

void *rp_mem_alloc(size_t n)
{
    size_t r = huge_request(n);
    void *p = malloc(r);
    hint_huge(p, r);
    collapse_head(p, r);
    return p;
}

void *rp_mem_calloc(size_t n)
{
    /* calloc of a large block is a fresh mapping: its pages are zero until touched, so the
     * hint still comes before any fault but the header's */
    size_t r = huge_request(n);
    void *p = calloc(r, 1);
    hint_huge(p, r);
    collapse_head(p, r);
    return p;
}

void *rp_mem_realloc(void *p, size_t n)
{
    size_t r = huge_request(n);
    void *q = realloc(p, r);
    hint_huge(q, r); /* the grown part of a moved or extended mapping */
    return q;
}
