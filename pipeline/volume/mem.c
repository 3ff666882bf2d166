/* pipeline/volume/mem.c — huge-page hints for large working buffers (see mem_internal.h). */
#include "pipeline/volume/mem_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define HUGE_SZ ((size_t)2 << 20)

/* The whole mapping of a large glibc allocation (glibc serves it with its own mmap and keeps
 * the mapping's offset and size in the two words before the pointer). The hint must cover
 * the mapping exactly: advice on part of it splits it in several kernel areas, and then
 * glibc's realloc can no longer mremap it and copies every byte instead. 0 when `p` does
 * not look like such a block. */
static int whole_mapping(void *p, size_t n, uintptr_t *start, size_t *len)
{
#ifdef __GLIBC__
    const size_t *hdr = (const size_t *)p - 2; /* prev_size (offset), size | flags */
    size_t size = hdr[1], off = hdr[0];
    if (!(size & 2)) /* IS_MMAPPED */
        return 0;
    uintptr_t chunk = (uintptr_t)p - 2 * sizeof(size_t);
    *start = chunk - off;
    *len = off + (size & ~(size_t)7);
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0 || (*start % (uintptr_t)pg) != 0 || (*len % (size_t)pg) != 0 ||
        (uintptr_t)p + n > *start + *len || off > (size_t)pg * 16)
        return 0;
    return 1;
#else
    (void)p;
    (void)n;
    (void)start;
    (void)len;
    return 0;
#endif
}

void rp_mem_hint_huge(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
    if (!p || n < 2 * HUGE_SZ)
        return;
    uintptr_t a;
    size_t len;
    if (whole_mapping(p, n, &a, &len)) {
        (void)madvise((void *)a, len, MADV_HUGEPAGE); /* advisory: failure changes nothing */
        return;
    }
    a = ((uintptr_t)p + HUGE_SZ - 1) & ~(uintptr_t)(HUGE_SZ - 1);
    uintptr_t e = ((uintptr_t)p + n) & ~(uintptr_t)(HUGE_SZ - 1);
    if (e > a)
        (void)madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
    (void)p;
    (void)n;
#endif
}

void *rp_mem_alloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    rp_mem_hint_huge(p, n);
    return p;
}

void *rp_mem_calloc(size_t n)
{
    /* calloc of a large block is a fresh mapping: its pages are zero until touched, so the
     * hint still comes before any fault */
    void *p = calloc(n ? n : 1, 1);
    rp_mem_hint_huge(p, n);
    return p;
}
