/*
 * pipeline/volume/mem_internal.h — the huge-page hint behind rp_mem_alloc() & co. (internal
 * to pipeline/volume/; the allocators themselves are in volume.h).
 */
#ifndef RP_PIPELINE_VOLUME_MEM_INTERNAL_H
#define RP_PIPELINE_VOLUME_MEM_INTERNAL_H

#include <stddef.h>

/* Ask for huge pages on [p, p+n) rounded out to pages (no-op for small buffers, or where the
 * kernel has no THP). Call before the first write. */
void rp_mem_hint_huge(void *p, size_t n);

#endif
