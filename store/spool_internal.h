/*
 * spool_internal — the spool log's on-disk format and what both halves of store/spool*.c use:
 * spool.c (the live log: slabs, group commit, the promoter) and spool_records.c (reading
 * records back: writing one into store/, replaying the log at start). Private to store/.
 * Layout and reasoning: the top comment of store/spool.c.
 */
#ifndef RP_STORE_SPOOL_INTERNAL_H
#define RP_STORE_SPOOL_INTERNAL_H

#include <libdeflate.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store_internal.h"

#define LOG_HDR_COPY 512      /* bytes of one header copy */
#define SLABS_OFF (64 * 1024) /* where slab 0 starts */
#define SLAB_BYTES (8u << 20) /* one slab */
#define BLOCK 4096            /* slab header, record header, record alignment */
#define COPY_BYTES (1u << 20)
#define PROMO_BUF (1u << 20) /* promoter's buffer: most instances in one read + write */

/* The magics (8 bytes, no terminator compared). */
#define RP_SPOOL_LOG_MAGIC "RPSPLOG1"
#define RP_SPOOL_SLAB_MAGIC "RPSLAB01"
#define RP_SPOOL_REC_MAGIC "RPINST01"

enum { REC_REPLACE = 1 }; /* rename over an existing file; old_rel: a copy to remove */

/* On-disk structures (written and read by this code only, native layout). */
typedef struct {
    char magic[8];
    uint32_t version, slab_bytes;
    uint64_t slabs_off, log_gen, promoted_through, stamp;
    uint32_t crc;
} log_hdr;

typedef struct {
    char magic[8];
    uint64_t log_gen, slab_gen;
    uint32_t index, crc;
} slab_hdr;

typedef struct {
    char magic[8];
    uint64_t log_gen, slab_gen, pos, len, seq;
    uint32_t data_crc, flags;
    char study[RP_UID_MAX + 1], series[RP_UID_MAX + 1], sop[RP_UID_MAX + 1];
    char old_rel[RP_PATH_MAX];
    uint32_t crc;
} rec_hdr;

_Static_assert(sizeof(log_hdr) <= LOG_HDR_COPY, "log header copy");
_Static_assert(sizeof(rec_hdr) <= BLOCK, "record header");

static inline uint32_t crc_of(const void *p, size_t n)
{
    return libdeflate_crc32(0, p, n);
}

static inline uint64_t align_block(uint64_t x)
{
    return (x + BLOCK - 1) & ~(uint64_t)(BLOCK - 1);
}

static inline uint64_t slab_start(int i)
{
    return SLABS_OFF + (uint64_t)i * SLAB_BYTES;
}

/* Whole pwrite/pread at off, retried on EINTR. 0, or RP_E* (a short read is RP_EIO). */
int rp_spool_pwrite_all(int fd, const void *buf, size_t n, uint64_t off);
int rp_spool_pread_all(int fd, void *buf, size_t n, uint64_t off);
/* The newer valid copy of the log header of fd into *out; RP_ENOENT when neither checks out. */
int rp_spool_read_log_hdr(int fd, log_hdr *out);
/* Copy `len` bytes at `off` of the log into store/<study>/<series>/<sop>.dcm of m through a
 * temporary name in spool/, SHA-256 on the way (hex into sha), through buf (PROMO_BUF bytes,
 * page-aligned). Not fsync'd: the caller makes a batch durable at once. */
int rp_spool_promote_bytes(rp_store *s, int log_fd, uint64_t off, uint64_t len,
                           const rp_instance_meta *m, unsigned char *buf, char sha[65]);

#endif
