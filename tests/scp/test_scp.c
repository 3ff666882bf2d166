/*
 * Unit tests for scp/: a node on a free loopback port receives with dcmtk's storescu as the
 * peer; what the store decided comes back as the right answer (success for a new instance
 * and for identical bytes, a failure and nothing stored for a cross-series duplicate under
 * duplicate_policy=reject), the counters say so, and the index has the rows after the node
 * stopped. Real instances from $RP_SHARED_DATA; small synthetic ones written here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "conf/conf.h"
#include "db/db.h"
#include "scp/scp.h"
#include "store/store.h"

static char g_tmp[256];
static const char *g_data;

#define CT1 "ct_chest_lidc0001/000001.dcm"
#define CT1_SOP "1.3.6.1.4.1.14519.5.2.1.6279.6001.143451261327128179989900675595"

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

/* A Part-10 Secondary Capture header (no pixels) with the given UIDs. */
static void write_synthetic(const char *path, const char *study, const char *series,
                            const char *sop)
{
    unsigned char meta[512], ds[1024], out[2048];
    size_t m = 0, d = 0, o;
    const char *cls = "1.2.840.10008.5.1.4.1.1.7";
    unsigned char ver[] = {0x02, 0, 0x01, 0, 'O', 'B', 0, 0, 2, 0, 0, 0, 0, 1};
    memcpy(meta, ver, sizeof ver);
    m += sizeof ver;
    m += put_el(meta + m, 2, 2, "UI", cls, 0);
    m += put_el(meta + m, 2, 3, "UI", sop, 0);
    m += put_el(meta + m, 2, 0x10, "UI", "1.2.840.10008.1.2.1", 0);
    d += put_el(ds + d, 8, 0x16, "UI", cls, 0);
    d += put_el(ds + d, 8, 0x18, "UI", sop, 0);
    d += put_el(ds + d, 8, 0x60, "CS", "OT", ' ');
    d += put_el(ds + d, 0x10, 0x20, "LO", "SYN1", ' ');
    d += put_el(ds + d, 0x20, 0x0d, "UI", study, 0);
    d += put_el(ds + d, 0x20, 0x0e, "UI", series, 0);
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

/* storescu one file to the node; the C-STORE answer shows in the node's counters. */
static void send(int port, const char *file)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "storescu -aet SENDER -aec RPTEST 127.0.0.1 %d '%s' >>'%s/storescu.log' 2>&1", port,
             file, g_tmp);
    int rc = system(cmd);
    (void)rc; /* storescu's exit code for a refused instance differs between dcmtk versions */
}

static int exists(const char *root, const char *rel)
{
    char p[2048];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", root, rel);
    return stat(p, &st) == 0;
}

static void test_receive_outcomes(void **st)
{
    (void)st;
    rp_conf c;
    rp_conf_defaults(&c);
    rp_strlcpy(c.ae_title, "RPTEST", sizeof c.ae_title);
    rp_strlcpy(c.bind, "127.0.0.1", sizeof c.bind);
    snprintf(c.data_dir, sizeof c.data_dir, "%s/node", g_tmp);
    c.port = 0;
    c.duplicate_policy = RP_DUP_REJECT;
    c.index_flush_ms = 20;
    rp_node *n = NULL;
    char err[512] = "", ct[1024], a[600], b[600];
    assert_int_equal(rp_node_new(&c, &n), 0);
    rp_node_set_shutdown_grace(n, 5);
    int rc = rp_node_start(n, err, sizeof err);
    if (rc != 0)
        fail_msg("node did not start: %s", err);
    int port = rp_node_port(n);
    assert_true(port > 0);
    const char *root = rp_store_root(rp_node_store(n));

    snprintf(ct, sizeof ct, "%s/%s", g_data, CT1);
    struct stat sb;
    if (stat(ct, &sb) != 0)
        fail_msg("shared test data missing: %s (set RP_SHARED_DATA)", ct);
    rp_node_stats s0, s;
    rp_node_stats_get(n, &s0);
    send(port, ct);
    rp_node_stats_get(n, &s);
    assert_int_equal(s.stored - s0.stored, 1);
    assert_int_equal(s.failed - s0.failed, 0);

    send(port, ct); /* identical bytes: success again */
    rp_node_stats_get(n, &s);
    assert_int_equal(s.stored - s0.stored, 2);
    assert_int_equal(s.failed - s0.failed, 0);

    snprintf(a, sizeof a, "%s/a.dcm", g_tmp);
    snprintf(b, sizeof b, "%s/b.dcm", g_tmp);
    write_synthetic(a, "1.2.3", "1.2.3.1", "1.2.3.1.7");
    write_synthetic(b, "1.2.3", "1.2.3.2", "1.2.3.1.7");
    send(port, a);
    send(port, b); /* same SOP Instance UID, another series, policy reject */
    rp_node_stats_get(n, &s);
    assert_int_equal(s.stored - s0.stored, 3);
    assert_int_equal(s.failed - s0.failed, 1);
    assert_true(exists(root, "1.2.3/1.2.3.1/1.2.3.1.7.dcm"));
    assert_false(exists(root, "1.2.3/1.2.3.2/1.2.3.1.7.dcm"));

    char dbp[RP_PATH_MAX + 64];
    rp_strlcpy(dbp, rp_node_db_path(n), sizeof dbp);
    rp_node_stop(n); /* flushes the index queue */
    rp_db *db = NULL;
    rp_instance_meta m;
    assert_int_equal(rp_db_open(dbp, &db), 0);
    assert_int_equal(rp_db_instance_get(db, CT1_SOP, &m), 0);
    assert_string_equal(m.calling_ae, "SENDER");
    assert_int_equal(rp_db_instance_get(db, "1.2.3.1.7", &m), 0);
    assert_string_equal(m.series_uid, "1.2.3.1");
    rp_db_close(db);
    rp_node_free(n);
    rp_conf_free(&c);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as radprepd does: a peer closing first must not kill us */
    g_data = getenv("RP_SHARED_DATA");
    if (!g_data)
        g_data = "/work/shared/data";
    snprintf(g_tmp, sizeof g_tmp, "/tmp/rp_test_scp_XXXXXX");
    if (!mkdtemp(g_tmp))
        return 1;
    rp_log_set_level(RP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_receive_outcomes),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup failed: %s\n", g_tmp);
    return rc;
}
