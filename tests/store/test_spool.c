/*
 * Unit tests for the store's spool log (store/spool.c through store.h's rp_store_rx_* and
 * rp_store_log_*): instances committed through the log reach store/ byte-identical and the
 * index; duplicates under every policy (same series and across series) are settled as on
 * the classic path; bad input leaves nothing; an instance bigger than a slab takes the
 * classic path; after a crash (a child process that commits and dies while its promoter is
 * blocked), reconciliation replays exactly the committed records, drops an uncommitted tail
 * and a record whose bytes do not match its CRC, and starts the log over. The log takes
 * spool_log_mb and keeps it across restarts; promotion held back during a burst starts when
 * receiving pauses, and at once for a duplicate of a held instance or when half the log is
 * taken (a stream 2.5 times the log goes through it whole); the lock set holds many.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "conf/conf.h"
#include "db/db.h"
#include "store/store.h"
#include "store/store_internal.h"

static char g_tmp[256];
static const char *g_data;

#define CT(n) "ct_chest_lidc0001/00000" #n ".dcm"
#define MR_PLAIN                                                                                   \
    "mr_brain_siemens_xa30/5001_anat-T1w_acq-tfl/"                                                 \
    "5001001_1.3.12.2.1107.5.2.43.67093.30000023011319484937100000298.dcm"
#define MR_JPEG "compressed/t1w_jpeg_lossless_multifragment_5001/5001001.dcm"

static const char *shared(const char *rel, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", g_data, rel);
    return buf;
}

static void rm_rf(const char *p)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup failed: %s\n", p);
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* 1 when a and b hold the same dataset after their meta groups. */
static int same_dataset(const char *a, const char *b)
{
    long oa = rp_store_dataset_offset(a), ob = rp_store_dataset_offset(b);
    char *da = NULL, *db = NULL;
    size_t la = 0, lb = 0;
    if (oa < 0 || ob < 0 || rp_read_file(a, &da, &la) || rp_read_file(b, &db, &lb))
        return -1;
    int same = (la - (size_t)oa == lb - (size_t)ob) && memcmp(da + oa, db + ob, la - oa) == 0;
    free(da);
    free(db);
    return same;
}

/* A store under g_tmp/sub, reconciled (log replayed) into its index, index and log started. */
typedef struct {
    rp_conf c;
    rp_store *s;
    rp_db *db;
    long reconciled;
} fixture;

static void fx_open(fixture *f, const char *sub, rp_dup_policy pol, int start_log)
{
    rp_conf_defaults(&f->c);
    snprintf(f->c.data_dir, sizeof f->c.data_dir, "%s/%s", g_tmp, sub);
    f->c.duplicate_policy = pol;
    f->c.min_free_mb = 0;
    assert_int_equal(rp_store_open(&f->c, &f->s), 0);
    char dbp[1200];
    assert_int_equal(rp_db_open(rp_store_db_path(f->s, dbp, sizeof dbp), &f->db), 0);
    f->reconciled = rp_store_reconcile(f->s, f->db);
    assert_true(f->reconciled >= 0);
    assert_int_equal(rp_store_index_start(f->s, 16, 20), 0);
    if (start_log)
        assert_int_equal(rp_store_log_start(f->s), 0);
}

static void fx_close(fixture *f)
{
    rp_db_close(f->db);
    rp_store_close(f->s);
    rp_conf_free(&f->c);
}

/* Stream `path` through a receive handle in pieces, as an association would. */
static int rx_file(rp_store_rx *rx, const char *path, size_t upto, const rp_store_put_args *a,
                   rp_instance_meta *m, rp_store_outcome *o, char *reason, size_t rsz)
{
    char *buf = NULL;
    size_t n = 0;
    assert_int_equal(rp_read_file(path, &buf, &n), 0);
    if (upto && upto < n)
        n = upto;
    int rc = rp_store_rx_begin(rx);
    for (size_t off = 0; rc == 0 && off < n; off += 40000)
        rc = rp_store_rx_write(rx, buf + off, n - off > 40000 ? 40000 : n - off);
    free(buf);
    if (rc != 0 || upto)
        return rc;
    return rp_store_rx_commit(rx, a, m, o, reason, rsz);
}

static long long index_count(rp_db *db, const char *sop)
{
    rp_instance_meta got;
    return rp_db_instance_get(db, sop, &got) == 0;
}

static void test_commit_promote_index(void **st)
{
    (void)st;
    fixture f;
    fx_open(&f, "commit", RP_DUP_KEEP_FIRST, 1);
    rp_store_rx *rx = NULL;
    assert_int_equal(rp_store_rx_new(f.s, &rx), 0);
    char src[3][1024], abs[2048], reason[256], sha[65];
    rp_instance_meta m[3], got;
    rp_store_outcome o;
    rp_store_put_args a = {.calling_ae = "CT1", .peer_host = "127.0.0.1"};
    shared(CT(1), src[0], sizeof src[0]);
    shared(CT(2), src[1], sizeof src[1]);
    shared(CT(3), src[2], sizeof src[2]);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rx_file(rx, src[i], 0, &a, &m[i], &o, reason, sizeof reason), 0);
        assert_int_equal(o, RP_STORE_NEW);
        assert_string_equal(m[i].modality, "CT");
        assert_string_equal(m[i].calling_ae, "CT1");
    }
    /* flush: promoted, durable, indexed with the SHA-256 of the stored file */
    assert_int_equal(rp_store_index_flush(f.s), 0);
    for (int i = 0; i < 3; i++) {
        rp_store_abs_path(f.s, m[i].file_path, abs, sizeof abs);
        assert_int_equal(same_dataset(src[i], abs), 1);
        assert_int_equal(rp_db_instance_get(f.db, m[i].sop_instance_uid, &got), 0);
        assert_string_equal(got.file_path, m[i].file_path);
        assert_int_equal(rp_sha256_file(abs, sha), 0);
        assert_string_equal(got.file_sha256, sha);
    }
    rp_store_log_stats ls;
    rp_store_log_stats_get(f.s, &ls);
    assert_int_equal(ls.committed, 3);
    assert_int_equal(ls.classic, 0);
    assert_true(ls.syncs >= 1 && ls.syncs <= 3);

    /* the same bytes again: idempotent, nothing committed */
    assert_int_equal(rx_file(rx, src[1], 0, &a, &m[1], &o, reason, sizeof reason), 0);
    assert_int_equal(o, RP_STORE_DUP_IDENTICAL);
    rp_store_log_stats_get(f.s, &ls);
    assert_int_equal(ls.committed, 3);
    /* the request named another instance: refused, nothing kept */
    rp_store_put_args bad = {.expect_sop_instance_uid = "1.2.3.4"};
    assert_int_equal(rx_file(rx, src[0], 0, &bad, &m[0], &o, reason, sizeof reason), RP_EUID);
    rp_store_rx_free(rx);
    char spool[1100];
    snprintf(spool, sizeof spool, "%s/spool", f.c.data_dir);
    assert_int_equal(count_files(spool), 0);
    fx_close(&f);
}

/* Promotion makes the series directory when it is missing, also when it was removed by hand
 * after the series' first instance; instances of more than one copy-buffer (a CT slice) and
 * with a partial last page come out byte-identical. */
static void test_series_dir_made_again(void **st)
{
    (void)st;
    fixture f;
    fx_open(&f, "mkdir", RP_DUP_KEEP_FIRST, 1);
    rp_store_rx *rx = NULL;
    assert_int_equal(rp_store_rx_new(f.s, &rx), 0);
    char src[2][1024], abs[2048], dir[2048], reason[256];
    rp_instance_meta m[2];
    rp_store_outcome o;
    shared(CT(1), src[0], sizeof src[0]);
    shared(CT(2), src[1], sizeof src[1]);
    assert_int_equal(rx_file(rx, src[0], 0, NULL, &m[0], &o, reason, sizeof reason), 0);
    assert_int_equal(rp_store_index_flush(f.s), 0);
    rp_store_abs_path(f.s, m[0].file_path, abs, sizeof abs);
    assert_int_equal(same_dataset(src[0], abs), 1);
    snprintf(dir, sizeof dir, "%s", abs);
    *strrchr(dir, '/') = '\0';
    assert_int_equal(rp_rm_rf(dir), 0);
    assert_int_equal(rx_file(rx, src[1], 0, NULL, &m[1], &o, reason, sizeof reason), 0);
    assert_int_equal(o, RP_STORE_NEW);
    assert_int_equal(rp_store_index_flush(f.s), 0);
    rp_store_abs_path(f.s, m[1].file_path, abs, sizeof abs);
    assert_int_equal(same_dataset(src[1], abs), 1);
    struct stat b;
    assert_int_equal(stat(abs, &b), 0);
    assert_true(b.st_size > 512 * 1024 && b.st_size % 4096 != 0);
    rp_store_rx_free(rx);
    fx_close(&f);
}

static void dup_case(rp_dup_policy pol, const char *sub)
{
    fixture f;
    fx_open(&f, sub, pol, 1);
    rp_store_rx *rx = NULL;
    assert_int_equal(rp_store_rx_new(f.s, &rx), 0);
    char a[1024], b[1024], abs[2048], reason[256];
    rp_instance_meta m1, m2;
    rp_store_outcome o;
    shared(MR_PLAIN, a, sizeof a);
    shared(MR_JPEG, b, sizeof b);
    assert_int_equal(rx_file(rx, a, 0, NULL, &m1, &o, reason, sizeof reason), 0);
    assert_int_equal(o, RP_STORE_NEW);
    /* the second copy waits for the first to be durable in store/, then compares */
    int rc = rx_file(rx, b, 0, NULL, &m2, &o, reason, sizeof reason);
    assert_int_equal(rp_store_index_flush(f.s), 0);
    rp_store_abs_path(f.s, m1.file_path, abs, sizeof abs);
    switch (pol) {
    case RP_DUP_KEEP_FIRST:
        assert_int_equal(rc, 0);
        assert_int_equal(o, RP_STORE_DUP_KEPT_FIRST);
        assert_int_equal(same_dataset(a, abs), 1);
        break;
    case RP_DUP_REPLACE:
        assert_int_equal(rc, 0);
        assert_int_equal(o, RP_STORE_DUP_REPLACED);
        assert_int_equal(same_dataset(b, abs), 1);
        break;
    case RP_DUP_REJECT:
        assert_int_equal(rc, RP_EDUP);
        assert_int_equal(same_dataset(a, abs), 1);
        break;
    }
    rc = rx_file(rx, pol == RP_DUP_REPLACE ? b : a, 0, NULL, &m2, &o, reason, sizeof reason);
    assert_int_equal(rc, 0);
    assert_int_equal(o, RP_STORE_DUP_IDENTICAL);
    rp_store_rx_free(rx);
    fx_close(&f);
}

static void test_dup_policies(void **st)
{
    (void)st;
    dup_case(RP_DUP_KEEP_FIRST, "dup_keep");
    dup_case(RP_DUP_REPLACE, "dup_replace");
    dup_case(RP_DUP_REJECT, "dup_reject");
}

/* ---- synthetic datasets: same SOP UID in two series; one bigger than a slab ------------- */

static size_t put_el(unsigned char *p, unsigned g, unsigned e, const char *vr, const char *val)
{
    size_t n = strlen(val), len = n + (n & 1);
    p[0] = g & 0xff, p[1] = g >> 8, p[2] = e & 0xff, p[3] = e >> 8;
    p[4] = vr[0], p[5] = vr[1];
    p[6] = len & 0xff, p[7] = (len >> 8) & 0xff;
    memcpy(p + 8, val, n);
    if (n & 1)
        p[8 + n] = vr[0] == 'U' ? 0 : ' ';
    return 8 + len;
}

/* Part-10 Secondary Capture with `extra` bytes of OB pixel data (0: none). */
static void write_synthetic(const char *path, const char *study, const char *series,
                            const char *sop, size_t extra)
{
    unsigned char meta[512], ds[1024], hdr[2048];
    size_t m = 0, d = 0, o = 0;
    const char *cls = "1.2.840.10008.5.1.4.1.1.7";
    unsigned char ver[] = {0x02, 0, 0x01, 0, 'O', 'B', 0, 0, 2, 0, 0, 0, 0, 1};
    memcpy(meta, ver, sizeof ver);
    m += sizeof ver;
    m += put_el(meta + m, 2, 2, "UI", cls);
    m += put_el(meta + m, 2, 3, "UI", sop);
    m += put_el(meta + m, 2, 0x10, "UI", "1.2.840.10008.1.2.1");
    d += put_el(ds + d, 8, 0x16, "UI", cls);
    d += put_el(ds + d, 8, 0x18, "UI", sop);
    d += put_el(ds + d, 8, 0x60, "CS", "OT");
    d += put_el(ds + d, 0x10, 0x10, "PN", "Test^Spool");
    d += put_el(ds + d, 0x20, 0x0d, "UI", study);
    d += put_el(ds + d, 0x20, 0x0e, "UI", series);
    memset(hdr, 0, 128);
    memcpy(hdr + 128, "DICM", 4);
    o = 132;
    unsigned char gl[] = {0x02, 0, 0, 0, 'U', 'L', 4, 0, 0, 0, 0, 0};
    gl[8] = m & 0xff, gl[9] = (m >> 8) & 0xff;
    memcpy(hdr + o, gl, sizeof gl);
    o += sizeof gl;
    memcpy(hdr + o, meta, m);
    o += m;
    memcpy(hdr + o, ds, d);
    o += d;
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(hdr, 1, o, fp), o);
    if (extra) {
        unsigned char px[12] = {0xe0, 0x7f, 0x10, 0x00, 'O', 'B', 0, 0};
        px[8] = extra & 0xff, px[9] = (extra >> 8) & 0xff, px[10] = (extra >> 16) & 0xff,
        px[11] = (extra >> 24) & 0xff;
        assert_int_equal(fwrite(px, 1, sizeof px, fp), sizeof px);
        for (size_t i = 0; i < extra; i++)
            fputc((int)((i * 2654435761u) >> 24), fp);
    }
    fclose(fp);
}

static void test_other_series(void **st)
{
    (void)st;
    const rp_dup_policy pols[] = {RP_DUP_KEEP_FIRST, RP_DUP_REPLACE, RP_DUP_REJECT};
    char f1[1100], f2[1100], reason[256], p1[2048], p2[2048];
    snprintf(f1, sizeof f1, "%s/series_a.dcm", g_tmp);
    snprintf(f2, sizeof f2, "%s/series_b.dcm", g_tmp);
    write_synthetic(f1, "1.2.3", "1.2.3.1", "1.2.3.1.9", 1000);
    write_synthetic(f2, "1.2.3", "1.2.3.2", "1.2.3.1.9", 2000);
    for (int i = 0; i < 3; i++) {
        char sub[32];
        snprintf(sub, sizeof sub, "other%d", i);
        fixture f;
        fx_open(&f, sub, pols[i], 1);
        rp_store_rx *rx = NULL;
        assert_int_equal(rp_store_rx_new(f.s, &rx), 0);
        rp_instance_meta m;
        rp_store_outcome o;
        assert_int_equal(rx_file(rx, f1, 0, NULL, &m, &o, reason, sizeof reason), 0);
        int rc = rx_file(rx, f2, 0, NULL, &m, &o, reason, sizeof reason);
        assert_int_equal(rp_store_index_flush(f.s), 0);
        rp_store_abs_path(f.s, "1.2.3/1.2.3.1/1.2.3.1.9.dcm", p1, sizeof p1);
        rp_store_abs_path(f.s, "1.2.3/1.2.3.2/1.2.3.1.9.dcm", p2, sizeof p2);
        struct stat sb;
        rp_instance_meta got;
        assert_int_equal(rp_db_instance_get(f.db, "1.2.3.1.9", &got), 0);
        if (pols[i] == RP_DUP_REPLACE) {
            assert_int_equal(rc, 0);
            assert_int_equal(o, RP_STORE_DUP_REPLACED);
            assert_int_not_equal(stat(p1, &sb), 0); /* moved: the old copy is gone */
            assert_int_equal(same_dataset(f2, p2), 1);
            assert_string_equal(got.series_uid, "1.2.3.2");
        } else {
            assert_int_equal(rc, pols[i] == RP_DUP_REJECT ? RP_EDUP : 0);
            if (pols[i] == RP_DUP_KEEP_FIRST)
                assert_int_equal(o, RP_STORE_DUP_KEPT_FIRST);
            assert_int_equal(same_dataset(f1, p1), 1);
            assert_int_not_equal(stat(p2, &sb), 0);
            assert_string_equal(got.series_uid, "1.2.3.1");
        }
        rp_store_rx_free(rx);
        fx_close(&f);
    }
}

static void test_bad_input_and_big_instance(void **st)
{
    (void)st;
    fixture f;
    fx_open(&f, "badbig", RP_DUP_KEEP_FIRST, 1);
    rp_store_rx *rx = NULL;
    assert_int_equal(rp_store_rx_new(f.s, &rx), 0);
    char g[1100], big[1100], ok[1024], reason[256], p[2048];
    rp_instance_meta m;
    rp_store_outcome o;
    snprintf(g, sizeof g, "%s/garbage.bin", g_tmp);
    FILE *fp = fopen(g, "wb");
    for (int i = 0; i < 70000; i++)
        fputc((i * 7919) & 0xff, fp);
    fclose(fp);
    assert_int_equal(rx_file(rx, g, 0, NULL, &m, &o, reason, sizeof reason), RP_EPARSE);
    /* a bad UID is refused before anything is committed */
    snprintf(p, sizeof p, "%s/baduid.dcm", g_tmp);
    write_synthetic(p, "1.2.3", "1.2.x4", "1.2.3.4.5", 10); /* not digits: refused under any uid_policy */
    assert_int_equal(rx_file(rx, p, 0, NULL, &m, &o, reason, sizeof reason), RP_EUID);
    /* a transfer cut short, then dropped */
    shared(CT(1), ok, sizeof ok);
    assert_int_equal(rx_file(rx, ok, 100000, NULL, &m, &o, reason, sizeof reason), 0);
    rp_store_rx_discard(rx);
    /* the next instance takes the same place in the log and is fine */
    assert_int_equal(rx_file(rx, ok, 0, NULL, &m, &o, reason, sizeof reason), 0);
    assert_int_equal(o, RP_STORE_NEW);

    /* bigger than a slab (8 MB): continues in a file of its own, the classic path */
    snprintf(big, sizeof big, "%s/big.dcm", g_tmp);
    write_synthetic(big, "1.2.3", "1.2.3.7", "1.2.3.7.1", 9u << 20);
    assert_int_equal(rx_file(rx, big, 0, NULL, &m, &o, reason, sizeof reason), 0);
    assert_int_equal(o, RP_STORE_NEW);
    rp_store_log_stats ls;
    rp_store_log_stats_get(f.s, &ls);
    assert_int_equal(ls.classic, 1);
    assert_int_equal(ls.committed, 1);
    assert_int_equal(rp_store_index_flush(f.s), 0);
    rp_store_abs_path(f.s, "1.2.3/1.2.3.7/1.2.3.7.1.dcm", p, sizeof p);
    assert_int_equal(same_dataset(big, p), 1);
    rp_store_abs_path(f.s, m.file_path, p, sizeof p);
    snprintf(p, sizeof p, "%s/store", f.c.data_dir);
    assert_int_equal(count_files(p), 2); /* the CT study and 1.2.3: nothing of the bad ones */
    snprintf(p, sizeof p, "%s/spool", f.c.data_dir);
    assert_int_equal(count_files(p), 0);
    rp_store_rx_free(rx);
    fx_close(&f);
}

/* ---- crash and replay -------------------------------------------------------------------- */

/* In a child: commit the three CT slices through the log while promotion cannot happen (a
 * file stands where the series directory would go), begin a fourth and die mid-stream (or,
 * with clean_close, close the store: the stop must not wait for a promotion that cannot
 * happen, and must leave those records to the next start). */
static void crash_child(const char *sub, const char *block, int clean_close)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        fixture f;
        fx_open(&f, sub, RP_DUP_KEEP_FIRST, 1);
        FILE *fp = fopen(block, "w");
        if (!fp)
            _exit(2);
        fclose(fp);
        rp_store_rx *rx = NULL;
        char src[1024], reason[256];
        rp_instance_meta m;
        rp_store_outcome o;
        if (rp_store_rx_new(f.s, &rx) != 0)
            _exit(3);
        for (int i = 1; i <= 3; i++) {
            char rel[64];
            snprintf(rel, sizeof rel, "ct_chest_lidc0001/00000%d.dcm", i);
            if (rx_file(rx, shared(rel, src, sizeof src), 0, NULL, &m, &o, reason, sizeof reason) !=
                0)
                _exit(4);
        }
        rx_file(rx, shared(CT(4), src, sizeof src), 200000, NULL, &m, &o, reason, sizeof reason);
        if (clean_close) {
            rp_store_rx_free(rx);
            fx_close(&f);
        }
        _exit(0); /* without clean_close: no drain, no close, as kill -9 */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void replay_case(const char *sub, int tear_third, int clean_close)
{
    char src[1024], ref[1100], block[1400], p[2048], wal[1200];
    rp_instance_meta m;
    assert_int_equal(rp_store_read_meta(shared(CT(1), src, sizeof src), &m), 0);
    snprintf(ref, sizeof ref, "%s/%s/store/%s", g_tmp, sub, m.study_uid);
    assert_int_equal(rp_mkdir_p(ref, 0750), 0);
    snprintf(block, sizeof block, "%s/%s", ref, m.series_uid);
    crash_child(sub, block, clean_close);
    assert_int_equal(unlink(block), 0);
    snprintf(p, sizeof p, "%s/%s/store/%s", g_tmp, sub, m.study_uid);
    assert_int_equal(count_files(p), 0); /* nothing was promoted */

    snprintf(wal, sizeof wal, "%s/%s/spool.wal", g_tmp, sub);
    if (tear_third) {
        /* the third record's bytes no longer match its CRC: a torn write */
        long long pos = 64 * 1024 + 4096;
        for (int i = 1; i <= 2; i++) {
            struct stat sb;
            char rel[64];
            snprintf(rel, sizeof rel, "ct_chest_lidc0001/00000%d.dcm", i);
            assert_int_equal(stat(shared(rel, src, sizeof src), &sb), 0);
            pos = (pos + 4096 + sb.st_size + 4095) / 4096 * 4096;
        }
        int fd = open(wal, O_RDWR);
        assert_true(fd >= 0);
        unsigned char c = 0;
        assert_int_equal(pread(fd, &c, 1, pos + 4096 + 5000), 1);
        c ^= 0x5a;
        assert_int_equal(pwrite(fd, &c, 1, pos + 4096 + 5000), 1);
        close(fd);
    }
    fixture f;
    fx_open(&f, sub, RP_DUP_KEEP_FIRST, 1);
    int want = tear_third ? 2 : 3;
    assert_int_equal(f.reconciled, want);
    for (int i = 1; i <= 3; i++) {
        char rel[64], abs[2048];
        snprintf(rel, sizeof rel, "ct_chest_lidc0001/00000%d.dcm", i);
        assert_int_equal(rp_store_read_meta(shared(rel, src, sizeof src), &m), 0);
        rp_store_abs_path(f.s, "", abs, sizeof abs);
        snprintf(abs + strlen(abs), sizeof abs - strlen(abs), "%s/%s/%s.dcm", m.study_uid,
                 m.series_uid, m.sop_instance_uid);
        struct stat sb;
        if (i <= want) {
            assert_int_equal(same_dataset(src, abs), 1);
            assert_int_equal(index_count(f.db, m.sop_instance_uid), 1);
        } else {
            assert_int_not_equal(stat(abs, &sb), 0);
            assert_int_equal(index_count(f.db, m.sop_instance_uid), 0);
        }
    }
    /* the cut-short fourth never appears */
    assert_int_equal(rp_store_read_meta(shared(CT(4), src, sizeof src), &m), 0);
    assert_int_equal(index_count(f.db, m.sop_instance_uid), 0);
    fx_close(&f);
    /* the log started over: nothing to replay a second time */
    fx_open(&f, sub, RP_DUP_KEEP_FIRST, 0);
    assert_int_equal(f.reconciled, 0);
    fx_close(&f);
}

static void test_replay_after_crash(void **st)
{
    (void)st;
    replay_case("crash", 0, 0);
}

static void test_stop_with_promotion_blocked(void **st)
{
    (void)st;
    replay_case("stopblocked", 0, 1);
}

static void test_replay_drops_torn_record(void **st)
{
    (void)st;
    replay_case("torn", 1, 0);
}

static void test_log_needs_reconcile(void **st)
{
    (void)st;
    fixture f;
    fx_open(&f, "order", RP_DUP_KEEP_FIRST, 1);
    fx_close(&f);
    /* a store with a log that was not replayed must not start it over */
    rp_conf c;
    rp_conf_defaults(&c);
    snprintf(c.data_dir, sizeof c.data_dir, "%s/order", g_tmp);
    rp_store *s = NULL;
    assert_int_equal(rp_store_open(&c, &s), 0);
    assert_int_equal(rp_store_log_start(s), RP_EINVAL);
    rp_store_close(s);
    rp_conf_free(&c);
}


/* The log takes spool_log_mb at start (reserved, not written), keeps its size across a
 * restart and follows the setting down as well as up. */
static void log_size_case(int mb, long long want_slabs)
{
    fixture f;
    rp_conf_defaults(&f.c);
    snprintf(f.c.data_dir, sizeof f.c.data_dir, "%s/logsize", g_tmp);
    f.c.min_free_mb = 0;
    f.c.spool_log_mb = mb;
    assert_int_equal(rp_store_open(&f.c, &f.s), 0);
    char dbp[1200], wal[1100];
    assert_int_equal(rp_db_open(rp_store_db_path(f.s, dbp, sizeof dbp), &f.db), 0);
    assert_true(rp_store_reconcile(f.s, f.db) >= 0);
    assert_int_equal(rp_store_index_start(f.s, 16, 20), 0);
    assert_int_equal(rp_store_log_start(f.s), 0);
    snprintf(wal, sizeof wal, "%s/spool.wal", f.c.data_dir);
    struct stat sb;
    assert_int_equal(stat(wal, &sb), 0);
    assert_int_equal((long long)sb.st_size, 64 * 1024 + want_slabs * 8 * 1024 * 1024);
    /* reserved on the disk (blocks allocated), so a burst cannot find the disk full */
    assert_true((long long)sb.st_blocks * 512 >= (long long)sb.st_size);
    fx_close(&f);
}

static void test_log_size_follows_setting(void **st)
{
    (void)st;
    log_size_case(128, 16);
    log_size_case(256, 32);
    log_size_case(64, 8);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Promotion waits while instances arrive but not once receiving pauses: an instance nobody
 * asks for reaches store/ well before the 5 s a record may be held at most. */
static void test_pause_promotes(void **st)
{
    (void)st;
    fixture f;
    fx_open(&f, "pause", RP_DUP_KEEP_FIRST, 1);
    rp_store_rx *rx = NULL;
    assert_int_equal(rp_store_rx_new(f.s, &rx), 0);
    char src[1024], abs[2048], reason[256];
    rp_instance_meta m;
    rp_store_outcome o;
    shared(CT(4), src, sizeof src);
    assert_int_equal(rx_file(rx, src, 0, NULL, &m, &o, reason, sizeof reason), 0);
    rp_store_abs_path(f.s, m.file_path, abs, sizeof abs);
    double t0 = now_s();
    struct stat sb;
    while (stat(abs, &sb) != 0 && now_s() - t0 < 10)
        usleep(5000);
    assert_true(now_s() - t0 < 3.0);
    assert_int_equal(same_dataset(src, abs), 1);
    rp_store_rx_free(rx);
    fx_close(&f);
}

typedef struct {
    rp_store *s;
    const char *dir;
    volatile int stop;
    int sent;
} streamer;

/* Another association: small instances, one after the other, until told to stop. */
static void *stream_main(void *arg)
{
    streamer *z = arg;
    rp_store_rx *rx = NULL;
    if (rp_store_rx_new(z->s, &rx) != 0)
        return NULL;
    for (int i = 0; !z->stop && i < 100000; i++) {
        char path[1200], sop[64], reason[256];
        snprintf(path, sizeof path, "%s/stream.dcm", z->dir);
        snprintf(sop, sizeof sop, "1.2.826.0.1.3680043.8.498.77.%d", i);
        write_synthetic(path, "1.2.826.0.1.3680043.8.498.77", "1.2.826.0.1.3680043.8.498.77.0",
                        sop, 2000);
        rp_instance_meta m;
        rp_store_outcome o;
        if (rx_file(rx, path, 0, NULL, &m, &o, reason, sizeof reason) == 0)
            z->sent++;
    }
    rp_store_rx_free(rx);
    return NULL;
}

/* A second copy of an instance the promoter holds back is decided at once, even while
 * another association keeps the log busy (it does not wait for a pause or the 5 s bound). */
static void test_held_duplicate_not_delayed(void **st)
{
    (void)st;
    fixture f;
    fx_open(&f, "helddup", RP_DUP_REPLACE, 1);
    streamer z = {.s = f.s, .dir = f.c.data_dir};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, stream_main, &z), 0);
    rp_store_rx *rx = NULL;
    assert_int_equal(rp_store_rx_new(f.s, &rx), 0);
    char a[1024], b[1024], abs[2048], reason[256];
    rp_instance_meta m1, m2;
    rp_store_outcome o;
    shared(MR_PLAIN, a, sizeof a);
    shared(MR_JPEG, b, sizeof b);
    assert_int_equal(rx_file(rx, a, 0, NULL, &m1, &o, reason, sizeof reason), 0);
    double t0 = now_s();
    assert_int_equal(rx_file(rx, b, 0, NULL, &m2, &o, reason, sizeof reason), 0);
    double dt = now_s() - t0;
    z.stop = 1;
    pthread_join(th, NULL);
    assert_true(z.sent > 0);
    assert_true(dt < 3.0);
    assert_int_equal(o, RP_STORE_DUP_REPLACED);
    assert_int_equal(rp_store_index_flush(f.s), 0);
    rp_store_abs_path(f.s, m1.file_path, abs, sizeof abs);
    assert_int_equal(same_dataset(b, abs), 1);
    rp_store_rx_free(rx);
    fx_close(&f);
}

/* A stream longer than the log: with spool_log_mb = 64 (8 slabs), promotion starts while
 * instances keep arriving once half the log is taken, so the log never runs out and every
 * instance still goes through it (none falls back to a file of its own). */
static void test_stream_longer_than_log(void **st)
{
    (void)st;
    fixture f;
    rp_conf_defaults(&f.c);
    snprintf(f.c.data_dir, sizeof f.c.data_dir, "%s/longstream", g_tmp);
    f.c.min_free_mb = 0;
    f.c.spool_log_mb = 64;
    assert_int_equal(rp_store_open(&f.c, &f.s), 0);
    char dbp[1200], path[1200], sop[64], reason[256], abs[2048];
    assert_int_equal(rp_db_open(rp_store_db_path(f.s, dbp, sizeof dbp), &f.db), 0);
    assert_true(rp_store_reconcile(f.s, f.db) >= 0);
    assert_int_equal(rp_store_index_start(f.s, 16, 20), 0);
    assert_int_equal(rp_store_log_start(f.s), 0);
    rp_store_rx *rx = NULL;
    assert_int_equal(rp_store_rx_new(f.s, &rx), 0);
    enum { N = 160 }; /* 160 x ~1 MB: 2.5 times the log */
    snprintf(path, sizeof path, "%s/in.dcm", g_tmp);
    rp_instance_meta m;
    rp_store_outcome o;
    for (int i = 0; i < N; i++) {
        snprintf(sop, sizeof sop, "1.2.826.0.1.3680043.8.498.88.%d", i);
        write_synthetic(path, "1.2.826.0.1.3680043.8.498.88", "1.2.826.0.1.3680043.8.498.88.0",
                        sop, 1000000);
        assert_int_equal(rx_file(rx, path, 0, NULL, &m, &o, reason, sizeof reason), 0);
        assert_int_equal(o, RP_STORE_NEW);
    }
    assert_int_equal(rp_store_index_flush(f.s), 0);
    rp_store_log_stats ls;
    rp_store_log_stats_get(f.s, &ls);
    assert_int_equal(ls.committed, N);
    assert_int_equal(ls.classic, 0);
    rp_store_abs_path(f.s, m.file_path, abs, sizeof abs);
    assert_int_equal(same_dataset(path, abs), 1);
    char series[1200];
    snprintf(series, sizeof series, "%s/store/1.2.826.0.1.3680043.8.498.88/"
             "1.2.826.0.1.3680043.8.498.88.0", f.c.data_dir);
    assert_int_equal(count_files(series), N);
    rp_store_rx_free(rx);
    fx_close(&f);
}

/* The per-instance lock set: many holders at once (the log holds back a burst). */
static void test_pending_set(void **st)
{
    (void)st;
    rp_pending p;
    assert_int_equal(rp_pending_init(&p), 0);
    enum { N = 20000 };
    char uid[64];
    for (int i = 0; i < N; i++) {
        snprintf(uid, sizeof uid, "1.2.3.%d", i);
        assert_int_equal(rp_pending_try_acquire(&p, uid), 0);
    }
    assert_int_equal((int)p.n, N);
    for (int i = 0; i < N; i++) {
        snprintf(uid, sizeof uid, "1.2.3.%d", i);
        assert_int_equal(rp_pending_try_acquire(&p, uid), RP_EBUSY);
    }
    for (int i = 0; i < N; i += 3) { /* release every third, in an order unlike insertion */
        snprintf(uid, sizeof uid, "1.2.3.%d", (i * 7919) % N);
        rp_pending_release(&p, uid);
    }
    int held = 0;
    for (int i = 0; i < N; i++) {
        snprintf(uid, sizeof uid, "1.2.3.%d", i);
        int rc = rp_pending_try_acquire(&p, uid);
        assert_true(rc == 0 || rc == RP_EBUSY);
        held += rc == RP_EBUSY;
        if (rc == 0)
            rp_pending_release(&p, uid);
    }
    assert_int_equal(held, (int)p.n);
    assert_true(held > N / 2 && held < N);
    rp_pending_free(&p);
}

int main(void)
{
    g_data = getenv("RP_SHARED_DATA");
    if (!g_data)
        g_data = "/work/shared/data";
    snprintf(g_tmp, sizeof g_tmp, "/tmp/rp_test_spool_XXXXXX");
    if (!mkdtemp(g_tmp))
        return 1;
    rp_log_set_level(RP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_promote_index),
        cmocka_unit_test(test_series_dir_made_again),
        cmocka_unit_test(test_dup_policies),
        cmocka_unit_test(test_other_series),
        cmocka_unit_test(test_bad_input_and_big_instance),
        cmocka_unit_test(test_replay_after_crash),
        cmocka_unit_test(test_replay_drops_torn_record),
        cmocka_unit_test(test_stop_with_promotion_blocked),
        cmocka_unit_test(test_log_needs_reconcile),
        cmocka_unit_test(test_log_size_follows_setting),
        cmocka_unit_test(test_pause_promotes),
        cmocka_unit_test(test_held_duplicate_not_delayed),
        cmocka_unit_test(test_pending_set),
        cmocka_unit_test(test_stream_longer_than_log),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rm_rf(g_tmp);
    return rc;
}
