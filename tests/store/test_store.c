/*
 * Unit tests for store/: UID validation, durable commit into the right path, duplicate
 * policies (identical bytes idempotent; across series from the store's own knowledge), the
 * free-space watermark, hostile/missing UIDs, SOP mismatch, reconcile and reindex, the index
 * hand-off. Real instances come from $RP_SHARED_DATA; small
 * synthetic datasets (for hostile UIDs) are written byte by byte here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "conf/conf.h"
#include "db/db.h"
#include "store/store.h"

static char g_tmp[256];
static const char *g_data;

#define CT1 "ct_chest_lidc0001/000001.dcm"
#define MR_PLAIN                                                                                   \
    "mr_brain_siemens_xa30/5001_anat-T1w_acq-tfl/"                                                 \
    "5001001_1.3.12.2.1107.5.2.43.67093.30000023011319484937100000298.dcm"
#define MR_JPEG "compressed/t1w_jpeg_lossless_multifragment_5001/5001001.dcm"

static const char *shared(const char *rel, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", g_data, rel);
    return buf;
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

static void rm_rf(const char *p)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup failed: %s\n", p);
}

static rp_store *open_store(const char *sub, rp_dup_policy pol, long long min_free_mb, rp_conf *c)
{
    rp_conf_defaults(c);
    snprintf(c->data_dir, sizeof c->data_dir, "%s/%s", g_tmp, sub);
    c->duplicate_policy = pol;
    c->min_free_mb = min_free_mb;
    rp_store *s = NULL;
    assert_int_equal(rp_store_open(c, &s), 0);
    return s;
}

/* Compare file b's dataset part with file a's (a may be a raw dataset or Part-10). */
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

/* ---- a tiny Part-10 writer for synthetic datasets ------------------------------------- */

static size_t put_el(unsigned char *p, unsigned g, unsigned e, const char *vr, const char *val,
                     char pad)
{
    size_t n = strlen(val), len = n + (n & 1);
    p[0] = g & 0xff, p[1] = g >> 8, p[2] = e & 0xff, p[3] = e >> 8;
    p[4] = vr[0], p[5] = vr[1];
    p[6] = len & 0xff, p[7] = (len >> 8) & 0xff;
    memcpy(p + 8, val, n);
    if (n & 1)
        p[8 + n] = pad;
    return 8 + len;
}

static void write_synthetic(const char *path, const char *study, const char *series,
                            const char *sop)
{
    unsigned char meta[1024], ds[2048], out[4096];
    size_t m = 0, d = 0;
    const char *cls = "1.2.840.10008.5.1.4.1.1.7"; /* Secondary Capture */
    /* (0002,0001) OB 00 01 */
    unsigned char ver[] = {0x02, 0, 0x01, 0, 'O', 'B', 0, 0, 2, 0, 0, 0, 0, 1};
    memcpy(meta + m, ver, sizeof ver);
    m += sizeof ver;
    m += put_el(meta + m, 2, 2, "UI", cls, 0);
    m += put_el(meta + m, 2, 3, "UI", sop[0] ? sop : "1.2.3", 0);
    m += put_el(meta + m, 2, 0x10, "UI", "1.2.840.10008.1.2.1", 0);
    d += put_el(ds + d, 8, 0x16, "UI", cls, 0);
    if (sop[0])
        d += put_el(ds + d, 8, 0x18, "UI", sop, 0);
    d += put_el(ds + d, 8, 0x60, "CS", "OT", ' ');
    d += put_el(ds + d, 0x10, 0x10, "PN", "Test^Synthetic", ' ');
    d += put_el(ds + d, 0x10, 0x20, "LO", "SYN1", ' ');
    if (study[0])
        d += put_el(ds + d, 0x20, 0x0d, "UI", study, 0);
    if (series[0])
        d += put_el(ds + d, 0x20, 0x0e, "UI", series, 0);
    size_t o = 0;
    memset(out, 0, 128);
    memcpy(out + 128, "DICM", 4);
    o = 132;
    unsigned char gl[] = {0x02, 0, 0, 0, 'U', 'L', 4, 0, 0, 0, 0, 0};
    gl[8] = m & 0xff, gl[9] = (m >> 8) & 0xff;
    memcpy(out + o, gl, sizeof gl);
    o += sizeof gl;
    memcpy(out + o, meta, m);
    o += m;
    memcpy(out + o, ds, d);
    o += d;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(out, 1, o, f), o);
    fclose(f);
}

/* ---- tests ---------------------------------------------------------------------------- */

static void test_uid_valid(void **st)
{
    (void)st;
    assert_int_equal(rp_store_uid_valid("1.2.840.10008.5.1.4.1.1.2"), 0);
    assert_int_equal(rp_store_uid_valid("0.1"), 0);
    assert_int_equal(rp_store_uid_valid("1.0.3"), 0);
    assert_int_equal(rp_store_uid_valid("1"), 0);
    char u64[65], u65[66];
    memset(u64, '1', 64), u64[64] = 0;
    memset(u65, '1', 65), u65[65] = 0;
    u64[1] = '.';
    assert_int_equal(rp_store_uid_valid(u64), 0);
    assert_int_equal(rp_store_uid_valid(u65), RP_EUID);
    assert_int_equal(rp_store_uid_valid(NULL), RP_EUID);
    assert_int_equal(rp_store_uid_valid(""), RP_EUID);
    /* leading zero: not PS3.5, yet safe as a path component (uid_policy=lenient stores it) */
    assert_int_equal(rp_store_uid_valid("999.999.01.23.45.6789"), RP_EUID);
    assert_int_equal(rp_store_uid_safe("999.999.01.23.45.6789"), 0);
    assert_int_equal(rp_store_uid_safe("1..2"), RP_EUID);
    assert_int_equal(rp_store_uid_safe(".1"), RP_EUID);
    assert_int_equal(rp_store_uid_safe("1.2."), RP_EUID);
    assert_int_equal(rp_store_uid_safe("1.2.a"), RP_EUID);
    assert_int_equal(rp_store_uid_safe(""), RP_EUID);
    assert_int_equal(rp_store_uid_safe(u65), RP_EUID);
    assert_int_equal(rp_store_uid_valid("../../etc"), RP_EUID);
    assert_int_equal(rp_store_uid_valid(".."), RP_EUID);
    assert_int_equal(rp_store_uid_valid("1.2/3"), RP_EUID);
    assert_int_equal(rp_store_uid_valid("1.02.3"), RP_EUID); /* leading zero */
    assert_int_equal(rp_store_uid_valid("01.2"), RP_EUID);
    assert_int_equal(rp_store_uid_valid("1.2.a"), RP_EUID); /* letters */
    assert_int_equal(rp_store_uid_valid("1..2"), RP_EUID);
    assert_int_equal(rp_store_uid_valid(".1"), RP_EUID);
    assert_int_equal(rp_store_uid_valid("1."), RP_EUID);
    assert_int_equal(rp_store_uid_valid("1.2 "), RP_EUID);
    assert_int_equal(rp_store_uid_valid("1.2\n"), RP_EUID);
}

static void test_commit_path_and_bytes(void **st)
{
    (void)st;
    rp_conf c;
    rp_store *s = open_store("commit", RP_DUP_KEEP_FIRST, 0, &c);
    char src[1024], abs[2048], reason[256];
    rp_instance_meta m;
    rp_store_outcome o;
    shared(CT1, src, sizeof src);
    rp_store_put_args a = {.calling_ae = "CT1", .peer_host = "127.0.0.1"};
    assert_int_equal(rp_store_put_file(s, src, &a, &m, &o, reason, sizeof reason), 0);
    assert_int_equal(o, RP_STORE_NEW);
    assert_string_equal(m.modality, "CT");
    assert_string_equal(m.transfer_syntax_uid, "1.2.840.10008.1.2.1");
    assert_string_equal(m.calling_ae, "CT1");
    assert_int_equal(strlen(m.file_sha256), 64);
    char want[1024];
    snprintf(want, sizeof want, "%s/%s/%s.dcm", m.study_uid, m.series_uid, m.sop_instance_uid);
    assert_string_equal(m.file_path, want);
    rp_store_abs_path(s, m.file_path, abs, sizeof abs);
    struct stat sb;
    assert_int_equal(stat(abs, &sb), 0);
    assert_int_equal(sb.st_size, m.file_size);
    assert_int_equal(same_dataset(src, abs), 1);
    char spool[1100];
    snprintf(spool, sizeof spool, "%s/spool", c.data_dir);
    assert_int_equal(count_files(spool), 0);

    /* identical bytes: idempotent success, file untouched */
    assert_int_equal(rp_store_put_file(s, src, &a, &m, &o, reason, sizeof reason), 0);
    assert_int_equal(o, RP_STORE_DUP_IDENTICAL);
    assert_int_equal(count_files(spool), 0);

    /* the request said another SOP Instance UID: refused, nothing left */
    rp_store_put_args bad = {.expect_sop_instance_uid = "1.2.3.4"};
    assert_int_equal(rp_store_put_file(s, src, &bad, &m, &o, reason, sizeof reason), RP_EUID);
    assert_non_null(strstr(reason, "differs"));
    rp_store_put_args badcls = {.expect_sop_class_uid = "1.2.840.10008.5.1.4.1.1.4"};
    assert_int_equal(rp_store_put_file(s, src, &badcls, &m, &o, reason, sizeof reason), RP_EINVAL);
    assert_int_equal(count_files(spool), 0);
    rp_store_close(s);
    rp_conf_free(&c);
}

static void dup_case(rp_dup_policy pol, const char *sub)
{
    rp_conf c;
    rp_store *s = open_store(sub, pol, 0, &c);
    char a[1024], b[1024], abs[2048], reason[256], spool[1100];
    rp_instance_meta m1, m2;
    rp_store_outcome o;
    shared(MR_PLAIN, a, sizeof a);
    shared(MR_JPEG, b, sizeof b);
    snprintf(spool, sizeof spool, "%s/spool", c.data_dir);
    assert_int_equal(rp_store_put_file(s, a, NULL, &m1, &o, reason, sizeof reason), 0);
    assert_int_equal(o, RP_STORE_NEW);
    int rc = rp_store_put_file(s, b, NULL, &m2, &o, reason, sizeof reason);
    assert_string_equal(m1.sop_instance_uid, m2.sop_instance_uid); /* same UID, other bytes */
    rp_store_abs_path(s, m1.file_path, abs, sizeof abs);
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
    assert_int_equal(count_files(spool), 0);
    /* identical bytes stay idempotent under every policy */
    rc = rp_store_put_file(s, pol == RP_DUP_REPLACE ? b : a, NULL, &m2, &o, reason, sizeof reason);
    assert_int_equal(rc, 0);
    assert_int_equal(o, RP_STORE_DUP_IDENTICAL);
    rp_store_close(s);
    rp_conf_free(&c);
}

static void test_dup_keep_first(void **st)
{
    (void)st;
    dup_case(RP_DUP_KEEP_FIRST, "dup_keep");
}
static void test_dup_replace(void **st)
{
    (void)st;
    dup_case(RP_DUP_REPLACE, "dup_replace");
}
static void test_dup_reject(void **st)
{
    (void)st;
    dup_case(RP_DUP_REJECT, "dup_reject");
}

/* The same SOP Instance UID arriving under another series: a duplicate by policy. */
static void other_series_case(rp_dup_policy pol, const char *sub)
{
    rp_conf c;
    rp_store *s = open_store(sub, pol, 0, &c);
    char f1[1100], f2[1100], reason[256], p1[2048], p2[2048];
    rp_instance_meta m1, m2;
    rp_store_outcome o;
    snprintf(f1, sizeof f1, "%s/%s_a.dcm", g_tmp, sub);
    snprintf(f2, sizeof f2, "%s/%s_b.dcm", g_tmp, sub);
    write_synthetic(f1, "1.2.3", "1.2.3.1", "1.2.3.1.7");
    write_synthetic(f2, "1.2.3", "1.2.3.2", "1.2.3.1.7");
    assert_int_equal(rp_store_put_file(s, f1, NULL, &m1, &o, reason, sizeof reason), 0);
    /* the store knows where the first copy is: nobody tells it */
    int rc = rp_store_put_file(s, f2, NULL, &m2, &o, reason, sizeof reason);
    rp_store_abs_path(s, "1.2.3/1.2.3.1/1.2.3.1.7.dcm", p1, sizeof p1);
    rp_store_abs_path(s, "1.2.3/1.2.3.2/1.2.3.1.7.dcm", p2, sizeof p2);
    struct stat sb;
    switch (pol) {
    case RP_DUP_KEEP_FIRST:
        assert_int_equal(rc, 0);
        assert_int_equal(o, RP_STORE_DUP_KEPT_FIRST);
        assert_int_equal(stat(p1, &sb), 0);
        assert_int_not_equal(stat(p2, &sb), 0);
        break;
    case RP_DUP_REJECT:
        assert_int_equal(rc, RP_EDUP);
        assert_int_equal(stat(p1, &sb), 0);
        assert_int_not_equal(stat(p2, &sb), 0);
        break;
    case RP_DUP_REPLACE:
        assert_int_equal(rc, 0);
        assert_int_equal(o, RP_STORE_DUP_REPLACED);
        assert_string_equal(m2.file_path, "1.2.3/1.2.3.2/1.2.3.1.7.dcm");
        assert_int_not_equal(stat(p1, &sb), 0);
        assert_int_equal(stat(p2, &sb), 0);
        break;
    }
    char spool[1100];
    snprintf(spool, sizeof spool, "%s/spool", c.data_dir);
    assert_int_equal(count_files(spool), 0);
    rp_store_close(s);
    rp_conf_free(&c);
}

static void test_other_series_keep(void **st)
{
    (void)st;
    other_series_case(RP_DUP_KEEP_FIRST, "os_keep");
}
static void test_other_series_replace(void **st)
{
    (void)st;
    other_series_case(RP_DUP_REPLACE, "os_repl");
}
static void test_other_series_reject(void **st)
{
    (void)st;
    other_series_case(RP_DUP_REJECT, "os_rej");
}

static void test_watermark(void **st)
{
    (void)st;
    rp_conf c;
    rp_store *s = open_store("full", RP_DUP_KEEP_FIRST, 1LL << 40, &c); /* 1 EiB free needed */
    assert_int_equal(rp_store_space_check(s), RP_ENOSPC);
    char src[1024], reason[256], p[1100];
    rp_instance_meta m;
    rp_store_outcome o;
    assert_int_equal(
        rp_store_put_file(s, shared(CT1, src, sizeof src), NULL, &m, &o, reason, sizeof reason),
        RP_ENOSPC);
    snprintf(p, sizeof p, "%s/store", c.data_dir);
    assert_int_equal(count_files(p), 0);
    snprintf(p, sizeof p, "%s/spool", c.data_dir);
    assert_int_equal(count_files(p), 0);
    rp_store_close(s);
    rp_conf_free(&c);
}

static void test_bad_inputs_leave_nothing(void **st)
{
    (void)st;
    rp_conf c;
    rp_store *s = open_store("bad", RP_DUP_KEEP_FIRST, 0, &c);
    char f[1100], reason[256], p[1100];
    rp_instance_meta m;
    rp_store_outcome o;

    snprintf(f, sizeof f, "%s/garbage.bin", g_tmp);
    FILE *fp = fopen(f, "wb");
    for (int i = 0; i < 5000; i++)
        fputc((i * 7919) & 0xff, fp);
    fclose(fp);
    assert_int_equal(rp_store_put_file(s, f, NULL, &m, &o, reason, sizeof reason), RP_EPARSE);

    struct {
        const char *study, *series, *sop;
        int want;
    } cases[] = {
        {"../../etc", "1.2.3", "1.2.4", RP_EUID},
        {"1.2.3", "..", "1.2.4", RP_EUID},
        {"1.2.3", "1.2.4", "../../../tmp/x", RP_EUID},
        {"", "1.2.4", "1.2.5", RP_EUID},
        {"1.2.3", "", "1.2.5", RP_EUID},
        {"1.2.3", "1.2.4", "", RP_EUID},
        {"1.2.3", "1.2.4", "1.2.0x5", RP_EUID},
        {"1.2.3", "1.2.4", "1.2.5", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(f, sizeof f, "%s/syn%zu.dcm", g_tmp, i);
        write_synthetic(f, cases[i].study, cases[i].series, cases[i].sop);
        int rc = rp_store_put_file(s, f, NULL, &m, &o, reason, sizeof reason);
        if (rc != cases[i].want)
            fprintf(stderr, "case %zu: rc=%d reason=%s\n", i, rc, reason);
        assert_int_equal(rc, cases[i].want);
    }
    snprintf(p, sizeof p, "%s/store", c.data_dir);
    assert_int_equal(count_files(p), 1); /* only the valid synthetic study */
    snprintf(p, sizeof p, "%s/store/1.2.3/1.2.4/1.2.5.dcm", c.data_dir);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    snprintf(p, sizeof p, "%s/spool", c.data_dir);
    assert_int_equal(count_files(p), 0);
    /* nothing escaped the data dir */
    snprintf(p, sizeof p, "%s/tmp", g_tmp);
    assert_int_not_equal(stat(p, &sb), 0);
    rp_store_close(s);
    rp_conf_free(&c);
}

static void test_reconcile_and_reindex(void **st)
{
    (void)st;
    rp_conf c;
    rp_store *s = open_store("recon", RP_DUP_KEEP_FIRST, 0, &c);
    char src[1024], reason[256], dbp[1200], p[2048];
    rp_instance_meta m, got;
    rp_store_outcome o;
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(rp_store_db_path(s, dbp, sizeof dbp), &db), 0);

    /* an instance committed but never indexed (as after kill -9) */
    assert_int_equal(
        rp_store_put_file(s, shared(CT1, src, sizeof src), NULL, &m, &o, reason, sizeof reason), 0);
    /* a file dropped into the store by hand, in the right place */
    char src2[1024];
    shared("seg_with_source_ct/ct_3slice/01.dcm", src2, sizeof src2);
    rp_instance_meta m2;
    assert_int_equal(rp_store_read_meta(src2, &m2), 0);
    snprintf(p, sizeof p, "%s/%s/%s", rp_store_root(s), m2.study_uid, m2.series_uid);
    assert_int_equal(rp_mkdir_p(p, 0750), 0);
    snprintf(p, sizeof p, "%s/%s/%s/%s.dcm", rp_store_root(s), m2.study_uid, m2.series_uid,
             m2.sop_instance_uid);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src2, p);
    assert_int_equal(system(cmd), 0);
    /* spool leftovers of an interrupted transfer */
    char spool[1100];
    int fd = -1;
    assert_int_equal(rp_store_spool_new(s, spool, sizeof spool, &fd), 0);
    assert_int_equal(write(fd, "partial", 7), 7);
    close(fd);

    assert_int_equal(rp_db_instance_get(db, m.sop_instance_uid, &got), RP_ENOENT);
    assert_int_equal(rp_store_reconcile(s, db), 2);
    snprintf(p, sizeof p, "%s/spool", c.data_dir);
    assert_int_equal(count_files(p), 0);
    assert_int_equal(rp_db_instance_get(db, m.sop_instance_uid, &got), 0);
    assert_string_equal(got.series_uid, m.series_uid);
    assert_string_equal(got.file_path, m.file_path);
    assert_int_equal(rp_db_instance_get(db, m2.sop_instance_uid, &got), 0);
    assert_int_equal(rp_store_reconcile(s, db), 0); /* nothing new the second time */
    /* the row points at a file that is gone (crash in a cross-series replace): the file
     * that exists wins */
    assert_int_equal(rp_db_instance_get(db, m.sop_instance_uid, &got), 0);
    rp_strlcpy(got.file_path, "1.2.3/1.2.4/gone.dcm", sizeof got.file_path);
    assert_int_equal(rp_db_index_instances(db, &got, 1), 0);
    assert_int_equal(rp_store_reconcile(s, db), 1);
    assert_int_equal(rp_db_instance_get(db, m.sop_instance_uid, &got), 0);
    assert_string_equal(got.file_path, m.file_path);
    assert_int_equal(rp_store_reindex(s, db), 2);
    assert_int_equal(rp_db_instance_get(db, m2.sop_instance_uid, &got), 0);
    rp_db_close(db);
    rp_store_close(s);
    rp_conf_free(&c);
}

/* A store opened on files it did not write learns them from reconcile, so a duplicate under
 * another series is found without the index; a file removed by hand is not a duplicate; new
 * instances reach the index through the store's queue. */
static void test_known_after_restart_and_index(void **st)
{
    (void)st;
    rp_conf c;
    char f1[1100], f2[1100], reason[256], dbp[1200], p[2048];
    rp_instance_meta m;
    rp_store_outcome o;
    snprintf(f1, sizeof f1, "%s/known_a.dcm", g_tmp);
    snprintf(f2, sizeof f2, "%s/known_b.dcm", g_tmp);
    write_synthetic(f1, "1.2.3", "1.2.3.1", "1.2.3.1.9");
    write_synthetic(f2, "1.2.3", "1.2.3.2", "1.2.3.1.9");
    rp_store *s = open_store("known", RP_DUP_REJECT, 0, &c);
    assert_int_equal(rp_store_put_file(s, f1, NULL, &m, &o, reason, sizeof reason), 0);
    rp_store_close(s);
    rp_conf_free(&c);

    s = open_store("known", RP_DUP_REJECT, 0, &c);
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(rp_store_db_path(s, dbp, sizeof dbp), &db), 0);
    assert_int_equal(rp_store_reconcile(s, db), 1);
    assert_int_equal(rp_store_index_start(s, 16, 20), 0);
    assert_int_equal(rp_store_put_file(s, f2, NULL, &m, &o, reason, sizeof reason), RP_EDUP);
    assert_non_null(strstr(reason, "another series"));

    /* the first copy removed by hand: the second one is simply new, and gets indexed */
    rp_store_abs_path(s, "1.2.3/1.2.3.1/1.2.3.1.9.dcm", p, sizeof p);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(rp_store_put_file(s, f2, NULL, &m, &o, reason, sizeof reason), 0);
    assert_int_equal(o, RP_STORE_NEW);
    assert_int_equal(rp_store_index_flush(s), 0);
    rp_instance_meta got;
    assert_int_equal(rp_db_instance_get(db, "1.2.3.1.9", &got), 0);
    assert_string_equal(got.file_path, "1.2.3/1.2.3.2/1.2.3.1.9.dcm");
    assert_string_equal(got.series_uid, "1.2.3.2");
    rp_db_close(db);
    rp_store_close(s);
    rp_conf_free(&c);
}

static void test_read_meta_raw_dataset(void **st)
{
    (void)st;
    char src[1024];
    rp_instance_meta m;
    assert_int_equal(
        rp_store_read_meta(shared("xray/cr_chest_fuji_mono1_no_part10_header.dcm", src, sizeof src),
                           &m),
        0);
    assert_string_equal(m.modality, "CR");
    assert_string_equal(m.transfer_syntax_uid, "1.2.840.10008.1.2");
    assert_int_equal(rp_store_dataset_offset(src), 0);
    assert_int_equal(rp_store_read_meta("/nonexistent/x.dcm", &m), RP_ENOENT);
}

int main(void)
{
    g_data = getenv("RP_SHARED_DATA");
    if (!g_data)
        g_data = "/work/shared/data";
    snprintf(g_tmp, sizeof g_tmp, "/tmp/rp_test_store_XXXXXX");
    if (!mkdtemp(g_tmp))
        return 1;
    rp_log_set_level(RP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uid_valid),
        cmocka_unit_test(test_commit_path_and_bytes),
        cmocka_unit_test(test_dup_keep_first),
        cmocka_unit_test(test_dup_replace),
        cmocka_unit_test(test_dup_reject),
        cmocka_unit_test(test_other_series_keep),
        cmocka_unit_test(test_other_series_replace),
        cmocka_unit_test(test_other_series_reject),
        cmocka_unit_test(test_watermark),
        cmocka_unit_test(test_bad_inputs_leave_nothing),
        cmocka_unit_test(test_reconcile_and_reindex),
        cmocka_unit_test(test_known_after_restart_and_index),
        cmocka_unit_test(test_read_meta_raw_dataset),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    rm_rf(g_tmp);
    return rc;
}
