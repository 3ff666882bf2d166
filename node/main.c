/*
 * radprepd — the radprep DICOM node daemon.
 *
 *   radprepd [--config FILE] [--port N] [--ae-title AE] [--data-dir DIR] [--foreground]
 *
 * Configuration: embedded defaults, then FILE, then the command-line overrides; a bad
 * configuration exits 2 with one line saying why. The daemon never forks (systemd
 * Type=notify runs it in the foreground; --foreground is accepted for clarity). SIGTERM or
 * SIGINT: stop accepting, let in-flight associations finish, flush the index, exit 0.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "conf/conf.h"
#include "http/http.h"
#include "outbox/outbox.h"
#include "pipeline/pipeline.h" /* recipe validation only: jobs run in worker processes */
#include "sched/sched.h"
#include "scp/scp.h"

static rp_node *g_node;

static void on_signal(int sig)
{
    (void)sig;
    if (g_node)
        rp_node_request_stop(g_node);
}

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: radprepd [--config FILE] [--port N] [--ae-title AE] [--data-dir DIR] "
            "[--foreground]\n"
            "\n"
            "radprep DICOM node: receives C-ECHO/C-STORE, stores every instance durably under\n"
            "DATA_DIR/store before answering success, indexes it in DATA_DIR/index.sqlite.\n"
            "\n"
            "  -c, --config FILE   INI configuration (default: built-in defaults only)\n"
            "  -p, --port N        DICOM port (overrides [node] port)\n"
            "  -a, --ae-title AE   our AE title (overrides [node] ae_title)\n"
            "  -d, --data-dir DIR  data directory (overrides [node] data_dir)\n"
            "  -f, --foreground    run in the foreground (the default: radprepd never forks)\n"
            "  -h, --help          this text\n"
            "  -V, --version       print the version\n"
            "\n"
            "Exit status: 0 after a clean stop (SIGTERM/SIGINT), 2 on a configuration error,\n"
            "1 when the node cannot start (port in use, data_dir not writable...).\n");
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || !end || *end || end == s || v < lo || v > hi)
        return RP_EINVAL;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},   {"port", required_argument, NULL, 'p'},
        {"ae-title", required_argument, NULL, 'a'}, {"data-dir", required_argument, NULL, 'd'},
        {"foreground", no_argument, NULL, 'f'},     {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},        {NULL, 0, NULL, 0}};
    const char *config = NULL, *ae = NULL, *data_dir = NULL;
    int port = -1, ch;
    while ((ch = getopt_long(argc, argv, "c:p:a:d:fhV", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': config = optarg; break;
        case 'p':
            if (parse_int(optarg, 1, 65535, &port) != 0) {
                fprintf(stderr, "radprepd: --port %s: not a port number (1..65535)\n", optarg);
                return 2;
            }
            break;
        case 'a': ae = optarg; break;
        case 'd': data_dir = optarg; break;
        case 'f': break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("radprepd %s\n", RP_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "radprepd: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }

    rp_conf conf;
    char err[1024] = "";
    rp_conf_defaults(&conf);
    if (config && rp_conf_load(&conf, config, err, sizeof err) != 0) {
        fprintf(stderr, "radprepd: %s\n", err);
        rp_conf_free(&conf);
        return 2;
    }
    if (port > 0)
        conf.port = port;
    if (ae && rp_strlcpy(conf.ae_title, ae, sizeof conf.ae_title) != 0) {
        fprintf(stderr, "radprepd: --ae-title '%s': longer than 16 characters\n", ae);
        rp_conf_free(&conf);
        return 2;
    }
    if (data_dir && rp_strlcpy(conf.data_dir, data_dir, sizeof conf.data_dir) != 0) {
        fprintf(stderr, "radprepd: --data-dir: path too long\n");
        rp_conf_free(&conf);
        return 2;
    }
    if (data_dir && data_dir[0] != '/') {
        /* conf wants an absolute path; resolve a relative one against the cwd */
        char abs[RP_PATH_MAX];
        if (rp_mkdir_p(data_dir, 0750) != 0 || !realpath(data_dir, abs)) {
            fprintf(stderr, "radprepd: --data-dir %s: cannot create or resolve\n", data_dir);
            rp_conf_free(&conf);
            return 2;
        }
        rp_strlcpy(conf.data_dir, abs, sizeof conf.data_dir);
    }
    /* A rule with an unknown step or a bad parameter stops start-up with its FILE:LINE, as
     * check-config would: better than failing every job of that rule later. */
    if (rp_conf_validate(&conf, err, sizeof err) != 0 ||
        rp_conf_validate_rules(&conf, rp_pipeline_check_recipe, err, sizeof err) != 0 ||
        rp_conf_validate_fusions(&conf, rp_pipeline_check_recipe, err, sizeof err) != 0) {
        fprintf(stderr, "radprepd: %s\n", err);
        rp_conf_free(&conf);
        return 2;
    }
    if (conf.log_file[0] && rp_log_open(conf.log_file) != 0) {
        fprintf(stderr, "radprepd: cannot open log_file %s: %s\n", conf.log_file, strerror(errno));
        rp_conf_free(&conf);
        return 2;
    }
    if (!getenv("RP_LOG_LEVEL") && conf.log_level[0]) {
        if (!strcasecmp(conf.log_level, "debug"))
            rp_log_set_level(RP_LOG_DEBUG);
        else if (!strcasecmp(conf.log_level, "warn") || !strcasecmp(conf.log_level, "warning"))
            rp_log_set_level(RP_LOG_WARN);
        else if (!strcasecmp(conf.log_level, "error"))
            rp_log_set_level(RP_LOG_ERROR);
    }
    if (rp_conf_resolve_data_dir(&conf) != 0) {
        fprintf(stderr, "radprepd: data_dir %s cannot be created or written\n", conf.data_dir);
        rp_conf_free(&conf);
        return 1;
    }
    if (conf.tls_port) {
        /* Bad TLS material stops start-up here, with the reason, not at the first peer. */
        char warn[512] = ""; /* the node logs a near expiry itself, at start and daily */
        if (rp_conf_tls_check(&conf, err, sizeof err, warn, sizeof warn) != 0) {
            fprintf(stderr, "radprepd: %s\n", err);
            RP_ERROR("scp", "cannot start: %s", err);
            rp_conf_free(&conf);
            return 2;
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    rp_node *node = NULL;
    if (rp_node_new(&conf, &node) != 0) {
        fprintf(stderr, "radprepd: out of memory\n");
        rp_conf_free(&conf);
        return 1;
    }
    /* Background services, started in this order after reconciliation and stopped in the
     * reverse order (scp/scp.h). The outbox sender comes first so that it is there for the
     * whole life of the supervisor, which kicks it when a job has queued derived instances;
     * the index queue wakes the completion monitor after each committed batch. Both loops
     * still poll, for what other processes (the CLI) change. */
    rp_node_service outbox;
    if (rp_outbox_service(&outbox) != 0 || rp_node_add_service(node, &outbox) != 0) {
        fprintf(stderr, "radprepd: cannot register the outbox service\n");
        rp_node_free(node);
        rp_conf_free(&conf);
        return 1;
    }
    rp_processing_hooks hooks = {.derived_queued = rp_outbox_service_kick, .arg = outbox.arg};
    rp_node_service processing;
    if (rp_processing_service(&processing, &hooks) != 0 ||
        rp_node_add_service(node, &processing) != 0) {
        fprintf(stderr, "radprepd: cannot register the processing service\n");
        rp_node_free(node);
        rp_conf_free(&conf);
        return 1;
    }
    rp_node_on_indexed(node, rp_processing_indexed, processing.arg);

    rp_node_service console; /* the web console, JSON API and /metrics (http/http.h) */
    if (rp_http_service(&console) != 0 || rp_node_add_service(node, &console) != 0) {
        fprintf(stderr, "radprepd: cannot register the console service\n");
        rp_node_free(node);
        rp_conf_free(&conf);
        return 1;
    }

    g_node = node;
    if (rp_node_start(node, err, sizeof err) != 0) {
        RP_ERROR("scp", "cannot start: %s", err);
        fprintf(stderr, "radprepd: %s\n", err);
        g_node = NULL;
        rp_node_free(node);
        rp_conf_free(&conf);
        return 1;
    }
    int rc = rp_node_run(node);
    g_node = NULL;
    rp_node_free(node);
    rp_conf_free(&conf);
    return rc == 0 ? 0 : 1;
}
