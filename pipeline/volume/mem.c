/* pipeline/volume/mem.c — huge-page hints for large working buffers (see mem_internal.h). */
#include "pipeline/volume/mem_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#define HUGE_SZ ((size_t)2 << 20)

void rp_mem_hint_huge(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
    if (!p || n < 2 * HUGE_SZ)
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
