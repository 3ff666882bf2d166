/* Unit tests for outbox/sender.cc against a real dcmtk storescp on loopback (under the
 * bind_loopback shim): success exactly once, transcoding when the peer refuses our syntax,
 * connection refused -> RETRY, association refused -> DEAD with the reason, bad file -> DEAD
 * without harming the others. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
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
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "outbox/outbox.h"

static char g_tmp[256];
static char g_shim[512];
static char g_data[512];

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

/* Start storescp on port with extra args (NULL-terminated), output into dir. */
static pid_t start_storescp(int port, const char *dir, const char *const *extra)
{
    pid_t pid = fork();
    if (pid == 0) {
        char ports[16];
        snprintf(ports, sizeof ports, "%d", port);
        const char *argv[32];
        int n = 0;
        argv[n++] = "storescp";
        argv[n++] = "-aet";
        argv[n++] = "STORESCP";
        argv[n++] = "-od";
        argv[n++] = dir;
        argv[n++] = "+uf"; /* unique names: a duplicate would show as a second file */
        for (int i = 0; extra && extra[i]; i++)
            argv[n++] = extra[i];
        argv[n++] = ports;
        argv[n] = NULL;
        setenv("LD_PRELOAD", g_shim, 1);
        int devnull = open("/dev/null", 1);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execvp("storescp", (char *const *)argv);
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

static int setup(void **state)
{
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "/tmp/rp_test_sender_XXXXXX");
    if (!mkdtemp(g_tmp))
        return -1;
    const char *tools = getenv("RP_SHARED_TOOLS");
    const char *data = getenv("RP_SHARED_DATA");
    snprintf(g_data, sizeof g_data, "%s", data ? data : "/work/shared/data");
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

static void ct_files(char paths[3][1024])
{
    for (int i = 0; i < 3; i++)
        snprintf(paths[i], 1024, "%s/seg_with_source_ct/ct_3slice/%02d.dcm", g_data, i + 1);
}

static rp_sender_dest dest(int port)
{
    rp_sender_dest d;
    memset(&d, 0, sizeof d);
    d.host = "127.0.0.1";
    d.port = port;
    d.called_ae = "STORESCP";
    d.calling_ae = "RADPREP";
    d.connect_timeout_s = 3;
    d.acse_timeout_s = 5;
    d.dimse_timeout_s = 10;
    return d;
}

static void test_send_ok_once(void **state)
{
    (void)state;
    char p[3][1024];
    ct_files(p);
    if (access(p[0], R_OK))
        fail_msg("shared test data missing (RP_SHARED_DATA): see ../shared/data/README.md");
    char out[512];
    snprintf(out, sizeof out, "%s/ok", g_tmp);
    mkdir(out, 0700);
    int port = free_port();
    pid_t pid = start_storescp(port, out, NULL);
    assert_true(port_open(port));
    const char *files[3] = {p[0], p[1], p[2]};
    rp_sender_result r[3];
    rp_sender_stats st;
    rp_sender_dest d = dest(port);
    assert_int_equal(rp_sender_send(&d, files, 3, r, NULL, &st), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].outcome, RP_SEND_DONE);
        assert_int_equal(r[i].dimse_status, 0);
    }
    assert_int_equal(st.associations, 1);
    assert_int_equal(st.sent, 3);
    assert_true(st.bytes > 3 * 512 * 512);
    usleep(200000);
    stop_child(pid);
    assert_int_equal(count_files(out), 3);
}

static void test_transcode_when_refused(void **state)
{
    (void)state;
    /* JPEG-LS and RLE files to a peer that accepts implicit VR little endian only */
    char a[1024], b[1024];
    snprintf(a, sizeof a, "%s/compressed/ts_same_image_9_syntaxes/8.dcm", g_data);
    snprintf(b, sizeof b, "%s/compressed/ts_same_image_9_syntaxes/4.dcm", g_data);
    if (access(a, R_OK) || access(b, R_OK))
        fail_msg("shared test data missing (RP_SHARED_DATA): see ../shared/data/README.md");
    char out[512];
    snprintf(out, sizeof out, "%s/implicit", g_tmp);
    mkdir(out, 0700);
    int port = free_port();
    const char *extra[] = {"+xi", NULL};
    pid_t pid = start_storescp(port, out, extra);
    const char *files[2] = {a, b};
    rp_sender_result r[2];
    rp_sender_dest d = dest(port);
    assert_int_equal(rp_sender_send(&d, files, 2, r, NULL, NULL), 0);
    assert_int_equal(r[0].outcome, RP_SEND_DONE);
    assert_int_equal(r[1].outcome, RP_SEND_DONE);
    usleep(200000);
    stop_child(pid);
    assert_int_equal(count_files(out), 2);
    /* what arrived is uncompressed */
    char cmd[1200];
    snprintf(
        cmd, sizeof cmd,
        "for f in '%s'/*; do dcmdump -M +P 0002,0010 \"$f\"; done | grep -c LittleEndianImplicit",
        out);
    FILE *f = popen(cmd, "r");
    int n = 0;
    assert_int_equal(fscanf(f, "%d", &n), 1);
    pclose(f);
    assert_int_equal(n, 2);
}

static void test_connection_refused_retry(void **state)
{
    (void)state;
    char p[3][1024];
    ct_files(p);
    int port = free_port(); /* nobody listens there */
    const char *files[2] = {p[0], p[1]};
    rp_sender_result r[2];
    rp_sender_dest d = dest(port);
    double t0 = rp_mono_s();
    int rc = rp_sender_send(&d, files, 2, r, NULL, NULL);
    assert_true(rc == RP_ENET || rc == RP_ETIMEOUT);
    assert_true(rp_mono_s() - t0 < 5);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(r[i].outcome, RP_SEND_RETRY);
        assert_int_equal(r[i].dimse_status, -1);
        assert_non_null(strstr(r[i].reason, "connect"));
    }
}

static void test_association_refused_dead(void **state)
{
    (void)state;
    char p[3][1024];
    ct_files(p);
    if (access(p[0], R_OK))
        fail_msg("shared test data missing (RP_SHARED_DATA): see ../shared/data/README.md");
    char out[512];
    snprintf(out, sizeof out, "%s/refuse", g_tmp);
    mkdir(out, 0700);
    int port = free_port();
    const char *extra[] = {"--refuse", NULL};
    pid_t pid = start_storescp(port, out, extra);
    const char *files[1] = {p[0]};
    rp_sender_result r[1];
    rp_sender_dest d = dest(port);
    assert_int_equal(rp_sender_send(&d, files, 1, r, NULL, NULL), RP_EREFUSED);
    assert_int_equal(r[0].outcome, RP_SEND_DEAD);
    assert_non_null(strstr(r[0].reason, "rejected"));
    print_message("refused reason: %s\n", r[0].reason);
    stop_child(pid);
    assert_int_equal(count_files(out), 0);
}

static void test_bad_file_dead_others_sent(void **state)
{
    (void)state;
    char p[3][1024];
    ct_files(p);
    if (access(p[0], R_OK))
        fail_msg("shared test data missing (RP_SHARED_DATA): see ../shared/data/README.md");
    char junk[600];
    snprintf(junk, sizeof junk, "%s/junk.dcm", g_tmp);
    FILE *f = fopen(junk, "w");
    fputs("not a DICOM file", f);
    fclose(f);
    char out[512];
    snprintf(out, sizeof out, "%s/mixed", g_tmp);
    mkdir(out, 0700);
    int port = free_port();
    pid_t pid = start_storescp(port, out, NULL);
    const char *files[4] = {p[0], junk, "/nonexistent/file.dcm", p[2]};
    rp_sender_result r[4];
    rp_sender_dest d = dest(port);
    assert_int_equal(rp_sender_send(&d, files, 4, r, NULL, NULL), 0);
    assert_int_equal(r[0].outcome, RP_SEND_DONE);
    assert_int_equal(r[1].outcome, RP_SEND_DEAD);
    assert_int_equal(r[2].outcome, RP_SEND_DEAD);
    assert_int_equal(r[3].outcome, RP_SEND_DONE);
    usleep(200000);
    stop_child(pid);
    assert_int_equal(count_files(out), 2);
}

static void test_dimse_timeout_retry(void **state)
{
    (void)state;
    char p[3][1024];
    ct_files(p);
    if (access(p[0], R_OK))
        fail_msg("shared test data missing (RP_SHARED_DATA): see ../shared/data/README.md");
    char out[512];
    snprintf(out, sizeof out, "%s/slow", g_tmp);
    mkdir(out, 0700);
    int port = free_port();
    const char *extra[] = {"--sleep-after", "8", NULL}; /* then hangs */
    pid_t pid = start_storescp(port, out, extra);
    const char *files[2] = {p[0], p[1]};
    rp_sender_result r[2];
    rp_sender_dest d = dest(port);
    d.dimse_timeout_s = 2;
    double t0 = rp_mono_s();
    int rc = rp_sender_send(&d, files, 2, r, NULL, NULL);
    double dt = rp_mono_s() - t0;
    stop_child(pid);
    print_message("timeout after %.1f s rc=%d\n", dt, rc);
    assert_int_equal(rc, RP_ETIMEOUT);
    assert_true(dt < 6); /* gave up after the DIMSE timeout, did not wait for the peer */
    /* storescp sleeps after answering: the first instance is stored, the second times out */
    assert_int_equal(r[0].outcome, RP_SEND_DONE);
    assert_int_equal(r[1].outcome, RP_SEND_RETRY);
    assert_non_null(strstr(r[1].reason, "timeout"));
}

static void test_file_uid(void **state)
{
    (void)state;
    char p[3][1024];
    ct_files(p);
    if (access(p[0], R_OK))
        fail_msg("shared test data missing (RP_SHARED_DATA): see ../shared/data/README.md");
    char uid[65];
    assert_int_equal(rp_sender_file_uid(p[0], uid, sizeof uid), 0);
    assert_string_equal(uid, "1.2.392.200103.20080913.113635.2.2009.6.22.21.43.10.23431.1");
    assert_int_equal(rp_sender_file_uid("/nonexistent", uid, sizeof uid), RP_EPARSE);
    rp_sender_dest d = dest(0);
    rp_sender_result r[1];
    const char *files[1] = {p[0]};
    assert_int_equal(rp_sender_send(&d, files, 1, r, NULL, NULL), RP_EINVAL);
}

int main(void)
{
    /* As radprepd does: a peer that drops the connection must give EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_uid),
        cmocka_unit_test(test_send_ok_once),
        cmocka_unit_test(test_transcode_when_refused),
        cmocka_unit_test(test_connection_refused_retry),
        cmocka_unit_test(test_association_refused_dead),
        cmocka_unit_test(test_bad_file_dead_others_sent),
        cmocka_unit_test(test_dimse_timeout_retry),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
