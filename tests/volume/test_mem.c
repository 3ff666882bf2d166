/* tests/volume/test_mem.c — large working buffers (rp_mem_alloc/calloc/realloc in volume.h):
 * at least the bytes asked for, calloc's reads as zeros, realloc keeps the contents both ways,
 * free() releases them; and, where the kernel reports it, they are backed by huge pages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <malloc.h>

#include "pipeline/volume/volume.h"

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 2654435761u) >> 24 ^ seed);
}

static int same(const uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (uint8_t)((i * 2654435761u) >> 24 ^ seed))
            return 0;
    return 1;
}

static void test_sizes_and_contents(void **state)
{
    (void)state;
    /* small, just under, at and over 2 MiB multiples */
    const size_t sizes[] = {1, 4096, (2u << 20) - 1, 2u << 20, (5u << 20) + 123, 41472000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        uint8_t *a = rp_mem_alloc(n);
        assert_non_null(a);
        assert_true(malloc_usable_size(a) >= n);
        fill(a, n, 7);
        assert_true(same(a, n, 7));
        uint8_t *z = rp_mem_calloc(n);
        assert_non_null(z);
        assert_true(malloc_usable_size(z) >= n);
        for (size_t i = 0; i < n; i += 4093)
            assert_int_equal(z[i], 0);
        assert_int_equal(z[n - 1], 0);
        /* grow then shrink: the first bytes survive */
        uint8_t *g = rp_mem_realloc(a, 3 * n + 4096);
        assert_non_null(g);
        assert_true(same(g, n, 7));
        memset(g + n, 1, 2 * n + 4096);
        uint8_t *s = rp_mem_realloc(g, n / 2 + 1);
        assert_non_null(s);
        assert_true(same(s, n / 2 + 1, 7));
        free(s);
        free(z);
    }
}

/* AnonHugePages of this process, kB (-1 when the kernel does not say). */
static long anon_huge_kb(void)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f)
        return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static void test_huge_pages_where_available(void **state)
{
    (void)state;
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    char mode[128] = "";
    if (f) {
        if (!fgets(mode, sizeof mode, f))
            mode[0] = '\0';
        fclose(f);
    }
    long before = anon_huge_kb();
#if defined(__SANITIZE_ADDRESS__)
    /* AddressSanitizer's allocator places large blocks its own way (the 2 MiB rounding is
     * made for glibc's) */
    mode[0] = '\0';
#endif
    if (before < 0 || !strstr(mode, "[madvise]")) {
        print_message("THP not in madvise mode here (%s): nothing to check\n", mode);
        return;
    }
    size_t n = 33u << 20;
    uint8_t *p = rp_mem_alloc(n);
    assert_non_null(p);
    memset(p, 3, n);
    long after = anon_huge_kb();
    print_message("AnonHugePages %ld -> %ld kB for a %zu MiB buffer\n", before, after, n >> 20);
    /* the kernel may lack free huge pages; when it has them the whole buffer gets them (the
     * first 2 MiB included, see MADV_COLLAPSE in mem.c): at least most of it */
    if (after > before)
        assert_true(after - before >= (long)(n >> 10) * 3 / 4);
    free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_and_contents),
        cmocka_unit_test(test_huge_pages_where_available),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
