/*
 * pipeline/volume/mem_internal.h — large working buffers (internal to pipeline/volume/).
 *
 * A 512x512x300 CT becomes several buffers of 100-300 MB (the float volume, resampling
 * intermediates, masks). Faulting those in 4 KiB at a time costs more CPU than the
 * arithmetic that fills them, so every large buffer asks the kernel for transparent huge
 * pages. The buffers stay ordinary malloc memory: free()/realloc() work as before.
 */
#ifndef RP_PIPELINE_VOLUME_MEM_INTERNAL_H
#define RP_PIPELINE_VOLUME_MEM_INTERNAL_H

#include <stddef.h>

/* Ask for huge pages on the 2 MiB-aligned part of [p, p+n) (no-op for small buffers, or
 * where the kernel has no THP). Call before the first write. */
void rp_mem_hint_huge(void *p, size_t n);
/* malloc / calloc that apply the hint. */
void *rp_mem_alloc(size_t n);
void *rp_mem_calloc(size_t n);

#endif
