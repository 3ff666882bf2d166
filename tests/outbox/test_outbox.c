/* Unit tests for outbox/outbox.c with a real dcmtk storescp on loopback (bind_loopback shim):
 *  - everything queued arrives exactly once, rows end 'done';
 *  - receiver absent: attempts grow with the backoff, nothing goes dead; receiver started:
 *    everything arrives exactly once;
 *  - a restart resumes from the db (rows left 'sending' are re-queued);
 *  - receiver refusing the association: rows go dead with the reason;
 *  - enqueue refuses unknown destinations and is idempotent.
 *
 * Driver for tests/integration/test_outbox*.py:
 *   scp_test_outbox --send CONF.ini DB TIMEOUT_S FILE...
 * queues FILEs for every destination peer of CONF, runs the outbox until no row is pending
 * or sending (or the timeout), prints one JSON line with totals and row states. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/common.h"
#include "conf/conf.h"
#include "db/db.h"
#include "outbox/outbox.h"

static char g_tmp[256];
static char g_shim[512];
static char g_data[512];
static char g_files[3][1024];

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(fd, (struct sockaddr *)&a, &len)) {
        close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static int port_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static pid_t start_storescp(int port, const char *dir, const char *extra)
{
    pid_t pid = fork();
    if (pid == 0) {
        char ports[16];
        snprintf(ports, sizeof ports, "%d", port);
        setenv("LD_PRELOAD", g_shim, 1);
        int devnull = open("/dev/null", 1);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        if (extra)
            execlp("storescp", "storescp", "-aet", "STORESCP", "-od", dir, "+uf", extra, ports,
                   (char *)NULL);
        else
            execlp("storescp", "storescp", "-aet", "STORESCP", "-od", dir, "+uf", ports,
                   (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100 && !port_open(port); i++)
        usleep(50000);
    return pid;
}

static void stop_child(pid_t pid)
{
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
    }
}

static int count_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* A configuration with one destination peer "pacs" on port. */
static void make_conf(rp_conf *c, int port)
{
    assert_int_equal(rp_conf_defaults(c), 0);
    rp_strlcpy(c->ae_title, "RADPREP", sizeof c->ae_title);
    c->acse_timeout_s = 5;
    c->dimse_timeout_s = 10;
    c->network_timeout_s = 3;
    rp_conf_peer *p = realloc(c->peers, (c->n_peers + 2) * sizeof *p);
    assert_non_null(p);
    c->peers = p;
    rp_conf_peer *d = &c->peers[c->n_peers++];
    memset(d, 0, sizeof *d);
    rp_strlcpy(d->name, "pacs", sizeof d->name);
    rp_strlcpy(d->ae_title, "STORESCP", sizeof d->ae_title);
    rp_strlcpy(d->host, "127.0.0.1", sizeof d->host);
    d->port = port;
    d->is_destination = 1;
    d->may_store = d->may_echo = 1;
    rp_conf_peer *s = &c->peers[c->n_peers++];
    memset(s, 0, sizeof *s);
    rp_strlcpy(s->name, "scanner", sizeof s->name);
    rp_strlcpy(s->ae_title, "CT1", sizeof s->ae_title);
}

typedef struct row_counts {
    int pending, sending, done, dead, max_attempts;
    char last_reason[256];
} row_counts;

static row_counts counts(const char *db_path)
{
    row_counts rc;
    memset(&rc, 0, sizeof rc);
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(db_path, &db), 0);
    rp_db_outbox_entry *e = NULL;
    size_t n = 0;
    assert_int_equal(rp_db_outbox_list(db, -1, NULL, 0, &e, &n), 0);
    for (size_t i = 0; i < n; i++) {
        if (e[i].state == RP_OUTBOX_PENDING)
            rc.pending++;
        else if (e[i].state == RP_OUTBOX_SENDING)
            rc.sending++;
        else if (e[i].state == RP_OUTBOX_DONE)
            rc.done++;
        else if (e[i].state == RP_OUTBOX_DEAD)
            rc.dead++;
        if (e[i].attempts > rc.max_attempts)
            rc.max_attempts = e[i].attempts;
        if (e[i].last_reason[0])
            rp_strlcpy(rc.last_reason, e[i].last_reason, sizeof rc.last_reason);
    }
    free(e);
    rp_db_close(db);
    return rc;
}

static int wait_done(const char *db_path, int want_done, double timeout_s)
{
    double t0 = rp_mono_s();
    while (rp_mono_s() - t0 < timeout_s) {
        row_counts r = counts(db_path);
        if (r.done + r.dead >= want_done && r.pending == 0 && r.sending == 0)
            return 1;
        usleep(100000);
    }
    return 0;
}

static void enqueue(const char *db_path, const rp_conf *c)
{
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(db_path, &db), 0);
    const char *files[3] = {g_files[0], g_files[1], g_files[2]};
    size_t added = 0;
    assert_int_equal(rp_outbox_enqueue(db, c, "pacs", files, 3, &added), 0);
    assert_int_equal(added, 3);
    /* idempotent: a re-run of the job queues nothing new */
    assert_int_equal(rp_outbox_enqueue(db, c, "pacs", files, 3, &added), 0);
    assert_int_equal(added, 0);
    /* an unknown or non-destination peer is refused and nothing is queued */
    assert_int_equal(rp_outbox_enqueue(db, c, "pacs nosuchpeer", files, 3, &added), RP_ECONF);
    assert_int_equal(rp_outbox_enqueue(db, c, "scanner", files, 3, &added), RP_ECONF);
    rp_db_close(db);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/rp_test_outbox_XXXXXX");
    if (!mkdtemp(g_tmp))
        return -1;
    const char *tools = getenv("RP_SHARED_TOOLS");
    const char *data = getenv("RP_SHARED_DATA");
    snprintf(g_data, sizeof g_data, "%s", data ? data : "/work/shared/data");
    for (int i = 0; i < 3; i++)
        snprintf(g_files[i], sizeof g_files[i], "%s/seg_with_source_ct/ct_3slice/%02d.dcm", g_data,
                 i + 1);
    snprintf(g_shim, sizeof g_shim, "%s/bind_loopback.so", g_tmp);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "gcc -O2 -fPIC -shared -o '%s' '%s/bind_loopback.c' -ldl", g_shim,
             tools ? tools : "/work/shared/tools");
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    return system(cmd) == 0 ? 0 : -1;
}

static rp_outbox_opts fast_opts(const char *db_path)
{
    rp_outbox_opts o;
    memset(&o, 0, sizeof o);
    o.db_path = db_path;
    o.base_delay_s = 0.2; /* the default is 2 s doubling to 600 s; scaled down for the test */
    o.max_delay_s = 0.8;
    o.poll_s = 0.1;
    return o;
}

static void test_delivered_once(void **state)
{
    (void)state;
    if (access(g_files[0], R_OK))
        fail_msg("shared test data missing (RP_SHARED_DATA): see ../shared/data/README.md");
    char dir[512], db[512];
    snprintf(dir, sizeof dir, "%s/once", g_tmp);
    snprintf(db, sizeof db, "%s/once.db", g_tmp);
    mkdir(dir, 0700);
    int port = free_port();
    rp_conf c;
    make_conf(&c, port);
    enqueue(db, &c);
    pid_t pid = start_storescp(port, dir, NULL);
    rp_outbox_opts o = fast_opts(db);
    rp_outbox *ob = NULL;
    assert_int_equal(rp_outbox_start(&c, &o, &ob), 0);
    assert_true(wait_done(db, 3, 20));
    rp_outbox_totals t;
    rp_outbox_totals_get(ob, &t);
    rp_outbox_stop(ob);
    assert_int_equal(t.sent, 3);
    assert_int_equal(t.associations, 1);
    row_counts r = counts(db);
    assert_int_equal(r.done, 3);
    assert_int_equal(r.max_attempts, 1);
    usleep(200000);
    stop_child(pid);
    assert_int_equal(count_files(dir), 3);
    rp_conf_free(&c);
}

static void test_backoff_then_delivered(void **state)
{
    (void)state;
    if (access(g_files[0], R_OK))
        fail_msg("shared test data missing (RP_SHARED_DATA): see ../shared/data/README.md");
    char dir[512], db[512];
    snprintf(dir, sizeof dir, "%s/backoff", g_tmp);
    snprintf(db, sizeof db, "%s/backoff.db", g_tmp);
    mkdir(dir, 0700);
    int port = free_port();
    rp_conf c;
    make_conf(&c, port);
    enqueue(db, &c);
    rp_outbox_opts o = fast_opts(db);
    rp_outbox *ob = NULL;
    assert_int_equal(rp_outbox_start(&c, &o, &ob), 0);
    sleep(3); /* nobody listens: 0.2, 0.4, 0.8, 0.8... */
    row_counts r = counts(db);
    assert_int_equal(r.dead, 0);
    assert_int_equal(r.done, 0);
    assert_true(r.max_attempts >= 3);
    assert_true(r.max_attempts <= 8); /* backoff, not a busy loop */
    assert_non_null(strstr(r.last_reason, "connect"));
    /* restart while the receiver is still absent: the schedule is in the db */
    rp_outbox_stop(ob);
    int before = r.max_attempts;
    pid_t pid = start_storescp(port, dir, NULL);
    ob = NULL;
    assert_int_equal(rp_outbox_start(&c, &o, &ob), 0);
    assert_true(wait_done(db, 3, 20));
    rp_outbox_stop(ob);
    r = counts(db);
    assert_int_equal(r.done, 3);
    assert_int_equal(r.dead, 0);
    assert_true(r.max_attempts >= before);
    usleep(200000);
    stop_child(pid);
    assert_int_equal(count_files(dir), 3);
    rp_conf_free(&c);
}

static void test_sending_rows_requeued(void **state)
{
    (void)state;
    if (access(g_files[0], R_OK))
        fail_msg("shared test data missing (RP_SHARED_DATA): see ../shared/data/README.md");
    char dir[512], db_path[512];
    snprintf(dir, sizeof dir, "%s/crash", g_tmp);
    snprintf(db_path, sizeof db_path, "%s/crash.db", g_tmp);
    mkdir(dir, 0700);
    int port = free_port();
    rp_conf c;
    make_conf(&c, port);
    enqueue(db_path, &c);
    /* a crashed node: rows claimed ('sending') and never finished */
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(db_path, &db), 0);
    rp_db_outbox_entry *e = NULL;
    size_t n = 0;
    assert_int_equal(rp_db_outbox_claim(db, "pacs", rp_now_s(), 10, &e, &n), 0);
    assert_int_equal(n, 3);
    free(e);
    /* and a row for a destination that no longer exists */
    long long id = 0;
    assert_int_equal(rp_db_outbox_add(db, "1.2.3.4", g_files[0], "gone", &id), 0);
    rp_db_close(db);
    pid_t pid = start_storescp(port, dir, NULL);
    rp_outbox_opts o = fast_opts(db_path);
    rp_outbox *ob = NULL;
    assert_int_equal(rp_outbox_start(&c, &o, &ob), 0);
    assert_true(wait_done(db_path, 4, 20));
    rp_outbox_stop(ob);
    row_counts r = counts(db_path);
    assert_int_equal(r.done, 3);
    assert_int_equal(r.dead, 1);
    assert_non_null(strstr(r.last_reason, "is not configured"));
    usleep(200000);
    stop_child(pid);
    assert_int_equal(count_files(dir), 3);
    rp_conf_free(&c);
}

/* A destination that rejects every association (permanent): the rows go dead at once, on
 * one association or on several (all refused is not "some refused": no narrowing, no retry
 * loop); re-queued, they reach a working receiver (a non-forking storescp takes the parallel
 * associations one after the other). */
static void refused_then_requeued(int associations)
{
    if (access(g_files[0], R_OK))
        fail_msg("shared test data missing (RP_SHARED_DATA): see ../shared/data/README.md");
    char dir[512], db[512];
    snprintf(dir, sizeof dir, "%s/refused%d", g_tmp, associations);
    snprintf(db, sizeof db, "%s/refused%d.db", g_tmp, associations);
    mkdir(dir, 0700);
    int port = free_port();
    rp_conf c;
    make_conf(&c, port);
    c.peers[0].send_associations = associations;
    enqueue(db, &c);
    pid_t pid = start_storescp(port, dir, "--refuse");
    rp_outbox_opts o = fast_opts(db);
    rp_outbox *ob = NULL;
    assert_int_equal(rp_outbox_start(&c, &o, &ob), 0);
    assert_true(wait_done(db, 3, 20));
    rp_outbox_stop(ob);
    row_counts r = counts(db);
    assert_int_equal(r.dead, 3);
    assert_int_equal(r.max_attempts, 1); /* no endless loop */
    assert_non_null(strstr(r.last_reason, "Rejected Permanent"));
    stop_child(pid);
    assert_int_equal(count_files(dir), 0);
    /* `radprep send` re-queues dead rows: with a working receiver they arrive */
    rp_db *h = NULL;
    assert_int_equal(rp_db_open(db, &h), 0);
    long long nq = 0;
    assert_int_equal(rp_db_outbox_requeue(h, RP_OUTBOX_DEAD, NULL, 0, &nq), 0);
    assert_int_equal(nq, 3);
    rp_db_close(h);
    pid = start_storescp(port, dir, NULL);
    assert_int_equal(rp_outbox_start(&c, &o, &ob), 0);
    assert_true(wait_done(db, 3, 20));
    rp_outbox_stop(ob);
    assert_int_equal(counts(db).done, 3);
    usleep(200000);
    stop_child(pid);
    assert_int_equal(count_files(dir), 3);
    rp_conf_free(&c);
}

static void test_refused_dead(void **state)
{
    (void)state;
    refused_then_requeued(1);
}

static void test_refused_dead_parallel(void **state)
{
    (void)state;
    refused_then_requeued(2);
}

static void test_enqueue_dir(void **state)
{
    (void)state;
    if (access(g_files[0], R_OK))
        fail_msg("shared test data missing (RP_SHARED_DATA): see ../shared/data/README.md");
    char dir[512], db_path[512], cmd[8192];
    snprintf(dir, sizeof dir, "%s/job/dicom", g_tmp);
    snprintf(db_path, sizeof db_path, "%s/enq.db", g_tmp);
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s/sub' && cp '%s' '%s/a.dcm' && cp '%s' '%s/sub/b.dcm' && "
             "cp '%s' '%s/notes.txt'",
             dir, g_files[0], dir, g_files[1], dir, g_files[2], dir);
    assert_int_equal(system(cmd), 0);
    rp_conf c;
    make_conf(&c, 104);
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(db_path, &db), 0);
    size_t added = 0;
    assert_int_equal(rp_outbox_enqueue_dir(db, &c, "pacs", dir, &added), 0);
    assert_int_equal(added, 2); /* *.dcm only, recursively */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nothing", g_tmp);
    assert_int_equal(rp_outbox_enqueue_dir(db, &c, "pacs", missing, &added), 0);
    assert_int_equal(added, 0);
    rp_db_outbox_entry *e = NULL;
    size_t n = 0;
    assert_int_equal(rp_db_outbox_list(db, RP_OUTBOX_PENDING, "pacs", 0, &e, &n), 0);
    assert_int_equal(n, 2);
    free(e);
    rp_db_close(db);
    rp_conf_free(&c);
}

/* A job folder with one result of each kind a PACS may or may not take: seg.dcm (the shared
 * SEG), overlay.dcm (a Secondary Capture), IM00001.dcm (a CT slice as "derived"). */
static void make_results_dir(const char *dir)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && cp '%s/seg_with_source_ct/liver_seg.dcm' '%s/seg.dcm' && "
             "cp '%s/xray/dx_chest_nih_sc_mono2_8bit.dcm' '%s/overlay.dcm' && "
             "cp '%s' '%s/IM00001.dcm'",
             dir, g_data, dir, g_data, dir, g_files[0], dir);
    assert_int_equal(system(cmd), 0);
}

static void test_results_per_destination(void **state)
{
    (void)state;
    char dir[512], db_path[512];
    snprintf(dir, sizeof dir, "%s/resjob/dicom", g_tmp);
    snprintf(db_path, sizeof db_path, "%s/res.db", g_tmp);
    make_results_dir(dir);
    rp_conf c;
    make_conf(&c, 104);
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(db_path, &db), 0);
    size_t added = 0;
    /* default results "derived seg": the SEG and the derived slice, not the overlay */
    assert_int_equal(rp_conf_peer_results(&c.peers[0]), RP_RESULT_DERIVED | RP_RESULT_SEG);
    assert_int_equal(rp_outbox_enqueue_dir(db, &c, "pacs", dir, &added), 0);
    assert_int_equal(added, 2);
    /* a viewer that shows pictures only: overlay */
    rp_strlcpy(c.peers[0].name, "viewer", sizeof c.peers[0].name);
    rp_strlcpy(c.peers[0].results, "overlay", sizeof c.peers[0].results);
    assert_int_equal(rp_outbox_enqueue_dir(db, &c, "viewer", dir, &added), 0);
    assert_int_equal(added, 1);
    rp_db_outbox_entry *e = NULL;
    size_t n = 0;
    assert_int_equal(rp_db_outbox_list(db, RP_OUTBOX_PENDING, "viewer", 0, &e, &n), 0);
    assert_int_equal(n, 1);
    assert_non_null(strstr(e[0].file_path, "overlay.dcm"));
    free(e);
    /* rp_outbox_enqueue (files given by hand) sends what it is given */
    const char *one[1] = {g_files[1]};
    assert_int_equal(rp_outbox_enqueue(db, &c, "viewer", one, 1, &added), 0);
    assert_int_equal(added, 1);
    rp_db_close(db);
    assert_int_equal(rp_conf_result_kind("sr"), RP_RESULT_SR);
    assert_int_equal(rp_conf_result_kind("nifti"), 0);
    rp_conf_free(&c);
}

/* A destination that accepts Secondary Capture only refuses the SEG at association time:
 * the SEG row goes dead saying it was substituted, the overlay is sent instead, once. */
static void test_refused_seg_substituted(void **state)
{
    (void)state;
    char dir[512], db_path[512], out[512], cfg[512];
    snprintf(dir, sizeof dir, "%s/subjob/dicom", g_tmp);
    snprintf(db_path, sizeof db_path, "%s/sub.db", g_tmp);
    snprintf(out, sizeof out, "%s/sub_recv", g_tmp);
    snprintf(cfg, sizeof cfg, "%s/sconly.cfg", g_tmp);
    make_results_dir(dir);
    assert_int_equal(mkdir(out, 0755), 0);
    FILE *f = fopen(cfg, "w");
    assert_non_null(f);
    fputs("[[TransferSyntaxes]]\n[Uncompressed]\nTransferSyntax1 = LocalEndianExplicit\n"
          "TransferSyntax2 = LittleEndianImplicit\n"
          "[[PresentationContexts]]\n[SC]\n"
          "PresentationContext1 = SecondaryCaptureImageStorage\\Uncompressed\n"
          "PresentationContext2 = MultiframeTrueColorSecondaryCaptureImageStorage\\Uncompressed\n"
          "[[Profiles]]\n[SConly]\nPresentationContexts = SC\n",
          f);
    fclose(f);
    int port = 41000 + (getpid() % 9000);
    pid_t pid = fork();
    if (pid == 0) {
        char ports[16];
        snprintf(ports, sizeof ports, "%d", port);
        setenv("LD_PRELOAD", g_shim, 1);
        int devnull = open("/dev/null", 1);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execlp("storescp", "storescp", "-aet", "STORESCP", "-od", out, "+uf", "-xf", cfg, "SConly",
               ports, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 100 && !port_open(port); i++)
        usleep(50000);
    rp_conf c;
    make_conf(&c, port);
    rp_strlcpy(c.peers[0].results, "seg", sizeof c.peers[0].results);
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(db_path, &db), 0);
    size_t added = 0;
    assert_int_equal(rp_outbox_enqueue_dir(db, &c, "pacs", dir, &added), 0);
    assert_int_equal(added, 1); /* the SEG only */
    rp_db_close(db);
    rp_outbox_opts o = fast_opts(db_path);
    rp_outbox *ob = NULL;
    assert_int_equal(rp_outbox_start(&c, &o, &ob), 0);
    /* the SEG dead, then the overlay queued and done: 2 rows finished */
    double t0 = rp_mono_s();
    row_counts r;
    do {
        usleep(100000);
        r = counts(db_path);
    } while (!(r.dead == 1 && r.done == 1 && r.pending == 0 && r.sending == 0) &&
             rp_mono_s() - t0 < 30);
    rp_outbox_stop(ob);
    stop_child(pid);
    r = counts(db_path);
    assert_int_equal(r.dead, 1);
    assert_int_equal(r.done, 1);
    assert_int_equal(r.pending + r.sending, 0); /* no loop */
    assert_int_equal(count_files(out), 1);
    assert_int_equal(rp_db_open(db_path, &db), 0);
    rp_db_outbox_entry *e = NULL;
    size_t n = 0;
    assert_int_equal(rp_db_outbox_list(db, RP_OUTBOX_DEAD, "pacs", 0, &e, &n), 0);
    assert_int_equal(n, 1);
    assert_non_null(strstr(e[0].file_path, "seg.dcm"));
    assert_non_null(strstr(e[0].last_reason, "presentation context"));
    assert_non_null(strstr(e[0].last_reason, "substituted by overlay (1 instance(s)"));
    free(e);
    rp_db_close(db);
    rp_conf_free(&c);
}

/* send_associations = 3: the three CT slices of a job folder go over three parallel
 * associations (a forking storescp takes them at once), its SEG after them on a fourth; each
 * row done once, on its first attempt. */
static void test_parallel_associations(void **state)
{
    (void)state;
    if (access(g_files[0], R_OK))
        fail_msg("shared test data missing (RP_SHARED_DATA): see ../shared/data/README.md");
    char dir[512], db_path[512], out[512], cmd[8192];
    snprintf(dir, sizeof dir, "%s/parjob/dicom", g_tmp);
    snprintf(db_path, sizeof db_path, "%s/par.db", g_tmp);
    snprintf(out, sizeof out, "%s/par_recv", g_tmp);
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' '%s' && cp '%s' '%s/IM00001.dcm' && cp '%s' '%s/IM00002.dcm' && "
             "cp '%s' '%s/IM00003.dcm' && cp '%s/seg_with_source_ct/liver_seg.dcm' '%s/seg.dcm'",
             dir, out, g_files[0], dir, g_files[1], dir, g_files[2], dir, g_data, dir);
    assert_int_equal(system(cmd), 0);
    int port = free_port();
    pid_t pid = start_storescp(port, out, "--fork");
    rp_conf c;
    make_conf(&c, port);
    c.peers[0].send_associations = 3;
    rp_db *db = NULL;
    assert_int_equal(rp_db_open(db_path, &db), 0);
    size_t added = 0;
    assert_int_equal(rp_outbox_enqueue_dir(db, &c, "pacs", dir, &added), 0);
    assert_int_equal(added, 4);
    rp_db_close(db);
    rp_outbox_opts o = fast_opts(db_path);
    rp_outbox *ob = NULL;
    assert_int_equal(rp_outbox_start(&c, &o, &ob), 0);
    assert_true(wait_done(db_path, 4, 30));
    rp_outbox_totals t;
    rp_outbox_totals_get(ob, &t);
    rp_outbox_stop(ob);
    usleep(300000);
    stop_child(pid);
    assert_int_equal(t.sent, 4);
    assert_int_equal(t.associations, 3 + 1);
    row_counts r = counts(db_path);
    assert_int_equal(r.done, 4);
    assert_int_equal(r.max_attempts, 1);
    assert_int_equal(count_files(out), 4);
    /* the SEG was stored after every CT slice (mtimes; equal within a clock tick is fine) */
    DIR *d = opendir(out);
    assert_non_null(d);
    struct dirent *de;
    double seg_t = -1, ct_last = -1;
    while ((de = readdir(d))) {
        char path[1024];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", out, de->d_name);
        if (de->d_name[0] == '.' || stat(path, &st))
            continue;
        double mt = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec / 1e9;
        if (!strncmp(de->d_name, "SG.", 3)) /* storescp --fork: <modality prefix>.X.<uid> */
            seg_t = mt;
        else if (mt > ct_last)
            ct_last = mt;
    }
    closedir(d);
    assert_true(seg_t > 0 && ct_last > 0);
    assert_true(seg_t >= ct_last);
    rp_conf_free(&c);
}

/* ------------------------------------------------------------------ driver mode */

static int driver(int argc, char **argv)
{
    const char *conf_path = argv[2], *db_path = argv[3];
    double timeout_s = atof(argv[4]);
    rp_conf c;
    char err[512];
    rp_conf_defaults(&c);
    if (rp_conf_load(&c, conf_path, err, sizeof err)) {
        fprintf(stderr, "driver: %s\n", err);
        return 2;
    }
    char send_to[512] = "";
    for (size_t i = 0; i < c.n_peers; i++)
        if (c.peers[i].is_destination) {
            strncat(send_to, c.peers[i].name, sizeof send_to - strlen(send_to) - 2);
            strcat(send_to, " ");
        }
    rp_db *db = NULL;
    if (rp_db_open(db_path, &db))
        return 2;
    size_t added = 0;
    int rc =
        rp_outbox_enqueue(db, &c, send_to, (const char *const *)argv + 5, (size_t)argc - 5, &added);
    rp_db_close(db);
    if (rc)
        return 2;
    rp_outbox_opts o;
    memset(&o, 0, sizeof o);
    o.db_path = db_path;
    if (getenv("RP_OUTBOX_BASE_DELAY"))
        o.base_delay_s = atof(getenv("RP_OUTBOX_BASE_DELAY"));
    if (getenv("RP_OUTBOX_MAX_DELAY"))
        o.max_delay_s = atof(getenv("RP_OUTBOX_MAX_DELAY"));
    o.poll_s = 0.05;
    rp_outbox *ob = NULL;
    double t0 = rp_mono_s();
    if (rp_outbox_start(&c, &o, &ob))
        return 2;
    int finished = 0;
    row_counts r;
    while (rp_mono_s() - t0 < timeout_s) {
        usleep(20000);
        r = counts(db_path);
        if (r.pending == 0 && r.sending == 0) {
            finished = 1;
            break;
        }
    }
    double wall = rp_mono_s() - t0;
    rp_outbox_totals t;
    rp_outbox_totals_get(ob, &t);
    rp_outbox_stop(ob);
    r = counts(db_path);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "finished", finished);
    cJSON_AddNumberToObject(j, "queued", (double)added);
    cJSON_AddNumberToObject(j, "sent", (double)t.sent);
    cJSON_AddNumberToObject(j, "dead", (double)t.dead);
    cJSON_AddNumberToObject(j, "retried", (double)t.retried);
    cJSON_AddNumberToObject(j, "associations", (double)t.associations);
    cJSON_AddNumberToObject(j, "bytes", (double)t.bytes);
    cJSON_AddNumberToObject(j, "send_seconds", t.send_seconds);
    cJSON_AddNumberToObject(j, "wall_seconds", wall);
    cJSON_AddNumberToObject(j, "pending", r.pending);
    cJSON_AddNumberToObject(j, "sending", r.sending);
    cJSON_AddNumberToObject(j, "done", r.done);
    cJSON_AddNumberToObject(j, "dead_rows", r.dead);
    cJSON_AddNumberToObject(j, "max_attempts", r.max_attempts);
    cJSON_AddStringToObject(j, "last_reason", r.last_reason);
    char *txt = cJSON_PrintUnformatted(j);
    printf("%s\n", txt ? txt : "{}");
    free(txt);
    cJSON_Delete(j);
    rp_conf_free(&c);
    return 0;
}

int main(int argc, char **argv)
{
    /* As radprepd does: a peer that drops the connection must give EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 5 && !strcmp(argv[1], "--send"))
        return driver(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_results_per_destination),
        cmocka_unit_test(test_refused_seg_substituted),
        cmocka_unit_test(test_delivered_once),
        cmocka_unit_test(test_backoff_then_delivered),
        cmocka_unit_test(test_sending_rows_requeued),
        cmocka_unit_test(test_refused_dead),
        cmocka_unit_test(test_enqueue_dir),
        cmocka_unit_test(test_parallel_associations),
        cmocka_unit_test(test_refused_dead_parallel),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
