/* Helpers shared by the libFuzzer targets of tests/fuzz (header-only, test code).
 *
 * The readers under test take paths (dcmtk, inih), so a target writes its input into an
 * anonymous in-memory file (memfd) and hands the reader /proc/self/fd/N: no disk traffic and
 * nothing to clean up. A byte reader turns the rest of an input into structured values for
 * the targets that build records rather than parse bytes (assembly from headers). */
#ifndef RP_FUZZ_UTIL_H
#define RP_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Write data into a fresh memfd; path gets /proc/self/fd/N. Returns the fd (close it) or -1. */
static inline int rp_fuzz_memfile(const uint8_t *data, size_t size, char *path, size_t pathsz)
{
    int fd = memfd_create("rp_fuzz", 0);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    snprintf(path, pathsz, "/proc/self/fd/%d", fd);
    return fd;
}

/* Consumes an input front to back; past the end every value is 0. */
typedef struct rp_fuzz_bytes {
    const uint8_t *p;
    size_t n;
} rp_fuzz_bytes;

static inline uint8_t rp_fuzz_u8(rp_fuzz_bytes *b)
{
    if (b->n == 0)
        return 0;
    b->n--;
    return *b->p++;
}

static inline uint16_t rp_fuzz_u16(rp_fuzz_bytes *b)
{
    uint16_t lo = rp_fuzz_u8(b);
    return (uint16_t)(lo | rp_fuzz_u8(b) << 8);
}

/* A double that is usually a small, plausible value and sometimes any bit pattern (NaN,
 * infinities, denormals, huge values): what a hostile header can declare. */
static inline double rp_fuzz_double(rp_fuzz_bytes *b)
{
    uint8_t sel = rp_fuzz_u8(b);
    if (sel < 0xE0)
        return ((double)(int16_t)rp_fuzz_u16(b)) / (double)((sel & 7) + 1);
    double d = 0;
    uint8_t raw[8] = {0};
    for (int i = 0; i < 8; i++)
        raw[i] = rp_fuzz_u8(b);
    memcpy(&d, raw, sizeof d);
    return d;
}

#endif
