/* Unit tests for conf/: defaults, INI parsing with line-numbered errors, validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/common.h"
#include "conf/conf.h"

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rp_conf_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Write `text` to <tmpdir>/name and return the path (static buffer). */
static const char *write_file(const char *name, const char *text, int mode)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    chmod(path, (mode_t)mode);
    return path;
}

/* Load text over defaults; returns rc, err filled. */
static int load_text(rp_conf *c, const char *text, char *err, size_t errlen)
{
    assert_int_equal(rp_conf_defaults(c), 0);
    return rp_conf_load(c, write_file("t.ini", text, 0644), err, errlen);
}

/* Expect a load error whose message is exactly "<path>:<line>: <why>". */
static void expect_error(const char *text, int line, const char *why)
{
    rp_conf c;
    char err[1024], want[1200];
    assert_int_equal(load_text(&c, text, err, sizeof err), RP_ECONF);
    snprintf(want, sizeof want, "%s/t.ini:%d: %s", tmpdir, line, why);
    assert_string_equal(err, want);
    rp_conf_free(&c);
}

static void test_defaults_valid(void **state)
{
    (void)state;
    rp_conf c;
    char err[512] = "";
    assert_int_equal(rp_conf_defaults(&c), 0);
    assert_int_equal(rp_conf_validate(&c, err, sizeof err), 0);
    assert_string_equal(c.ae_title, "RADPREP");
    assert_int_equal(c.port, 11112);
    assert_string_equal(c.bind, "0.0.0.0");
    assert_string_equal(c.data_dir, "/var/lib/radprep");
    assert_int_equal(c.max_associations, 32);
    assert_int_equal(c.max_associations_per_peer, 8);
    assert_int_equal(c.acse_timeout_s, 30);
    assert_int_equal(c.dimse_timeout_s, 60);
    assert_int_equal(c.max_pdu, 131072);
    assert_int_equal(c.min_free_mb, 1024);
    assert_int_equal(c.duplicate_policy, RP_DUP_KEEP_FIRST);
    assert_int_equal(c.uid_policy, RP_UID_LENIENT);
    assert_int_equal(c.job_max_attempts, 3);
    assert_int_equal(c.index_batch, 64);
    assert_int_equal(c.tls_port, 0);
    assert_string_equal(c.tls_profile, "bcp195-nd");
    assert_int_equal(c.tls_require_client_cert, 1);
    assert_int_equal(c.n_rules, 3);
    assert_string_equal(c.rules[0].name, "ct_default");
    assert_string_equal(c.rules[0].steps, "hu resample(1,1,1,bspline3) bodymask lungmask metal "
                                          "clip(-1200,600) normalize(minmax)");
    assert_int_equal(c.rules[0].builtin, 1);
    assert_int_equal(c.rules[0].priority, -100);
    assert_string_equal(c.rules[2].modality, "CR DX MG");
    assert_int_equal(rp_conf_completion_for(&c, "CT")->quiet_s, 30);
    assert_int_equal(rp_conf_completion_for(&c, "DX")->quiet_s, 5);
    assert_int_equal(rp_conf_completion_for(&c, "OT")->quiet_s, 30);
    assert_string_equal(rp_conf_completion_for(&c, "OT")->modality, "default");
    char buf[RP_PATH_MAX];
    assert_string_equal(rp_conf_outputs_dir(&c, buf, sizeof buf), "/var/lib/radprep/outputs");
    rp_conf_free(&c);
}

static void test_all_keys(void **state)
{
    (void)state;
    rp_conf c;
    char err[1024] = "";
    const char *text = "; comment\n"
                       "# another\n"
                       "[node]\n"
                       "ae_title = NODE1\n"
                       "port = 4242\n"
                       "bind = 127.0.0.1\n"
                       "data_dir = /srv/radprep\n"
                       "outputs_dir = out\n"
                       "max_associations = 10\n"
                       "max_associations_per_peer = 2\n"
                       "acse_timeout_s = 5\n"
                       "dimse_timeout_s = 6\n"
                       "network_timeout_s = 7 # hash comment\n"
                       "max_pdu = 0\n"
                       "min_free_mb = 10\n"
                       "duplicate_policy = replace\n"
                       "max_instance_mb = 100\n"
                       "log_file = /tmp/x.log\n"
                       "log_level = debug\n"
                       "uid_root = 1.2.3.4\n"
                       "workers = 4\n"
                       "job_timeout_s = 60\n"
                       "job_memory_mb = 1024\n"
                       "job_max_attempts = 5\n"
                       "index_batch = 10\n"
                       "index_flush_ms = 50\n"
                       "[tls]\n"
                       "port = 2762\n"
                       "cert = /etc/c.pem\n"
                       "key = /etc/k.pem\n"
                       "key_passphrase_file = /etc/p\n"
                       "ca_file = /etc/ca.pem\n"
                       "ca_dir = /etc/ca\n"
                       "profile = bcp195-nd\n"
                       "require_client_cert = off\n"
                       "expiry_warn_days = 14\n"
                       "[peer pacs]\n"
                       "ae_title = PACS\n"
                       "host = 10.0.0.1\n"
                       "port = 104\n"
                       "store = no\n"
                       "echo = TRUE\n"
                       "destination = yes\n"
                       "tls_only = 0\n"
                       "cert_fingerprint = ab12\n"
                       "cert_subject = CN=pacs\n"
                       "max_associations = 3\n"
                       "[peer ct1]\n"
                       "  ae_title = CT_SCANNER_1\n"
                       "[completion ct]\n"
                       "quiet_s = 12\n"
                       "use_expected_count = false\n"
                       "[completion PT]\n"
                       "quiet_s = 40\n"
                       "[rule brain]\n"
                       "modality = MR\n"
                       "body_part = HEAD BRAIN\n"
                       "series_description = *t1*\n"
                       "slice_thickness_min = 0.5\n"
                       "slice_thickness_max = 3\n"
                       "steps = n4 normalize(zscore) ; trailing comment\n"
                       "outputs = nifti json dicom\n"
                       "send_to = pacs\n"
                       "priority = 10\n";
    assert_int_equal(load_text(&c, text, err, sizeof err), 0);
    assert_string_equal(err, "");
    assert_string_equal(c.ae_title, "NODE1");
    assert_int_equal(c.port, 4242);
    assert_string_equal(c.bind, "127.0.0.1");
    assert_string_equal(c.data_dir, "/srv/radprep");
    char want[256];
    snprintf(want, sizeof want, "%s/out", tmpdir); /* relative to the file's directory */
    assert_string_equal(c.outputs_dir, want);
    assert_int_equal(c.max_associations, 10);
    assert_int_equal(c.max_associations_per_peer, 2);
    assert_int_equal(c.acse_timeout_s, 5);
    assert_int_equal(c.dimse_timeout_s, 6);
    assert_int_equal(c.network_timeout_s, 7);
    assert_int_equal(c.max_pdu, 0);
    assert_int_equal(c.min_free_mb, 10);
    assert_int_equal(c.duplicate_policy, RP_DUP_REPLACE);
    {
        rp_conf u;
        char uerr[512] = "";
        assert_int_equal(load_text(&u, "[node]\nuid_policy = strict\n", uerr, sizeof uerr), 0);
        assert_int_equal(u.uid_policy, RP_UID_STRICT);
        rp_conf_free(&u);
    }
    assert_int_equal(c.max_instance_mb, 100);
    assert_string_equal(c.log_file, "/tmp/x.log");
    assert_string_equal(c.log_level, "debug");
    assert_string_equal(c.uid_root, "1.2.3.4");
    assert_int_equal(c.workers, 4);
    assert_int_equal(c.job_timeout_s, 60);
    assert_int_equal(c.job_memory_mb, 1024);
    assert_int_equal(c.job_max_attempts, 5);
    assert_int_equal(c.index_batch, 10);
    assert_int_equal(c.index_flush_ms, 50);
    assert_int_equal(c.tls_port, 2762);
    assert_string_equal(c.tls_cert, "/etc/c.pem");
    assert_string_equal(c.tls_key, "/etc/k.pem");
    assert_string_equal(c.tls_key_passphrase_file, "/etc/p");
    assert_string_equal(c.tls_ca_file, "/etc/ca.pem");
    assert_string_equal(c.tls_ca_dir, "/etc/ca");
    assert_string_equal(c.tls_profile, "bcp195-nd");
    assert_int_equal(c.tls_require_client_cert, 0);
    assert_int_equal(c.tls_expiry_warn_days, 14);
    assert_int_equal(c.n_peers, 2);
    const rp_conf_peer *p = rp_conf_peer_by_ae(&c, "PACS");
    assert_non_null(p);
    assert_ptr_equal(p, rp_conf_peer_by_ae(&c, " PACS  "));
    assert_ptr_equal(p, rp_conf_peer_by_name(&c, "pacs"));
    assert_string_equal(p->host, "10.0.0.1");
    assert_int_equal(p->port, 104);
    assert_int_equal(p->may_store, 0);
    assert_int_equal(p->may_echo, 1);
    assert_int_equal(p->is_destination, 1);
    assert_int_equal(p->tls_only, 0);
    assert_string_equal(p->cert_fingerprint, "ab12");
    assert_string_equal(p->cert_subject, "CN=pacs");
    assert_int_equal(p->max_associations, 3);
    assert_int_equal(p->line, 37);
    const rp_conf_peer *ct = rp_conf_peer_by_ae(&c, "CT_SCANNER_1");
    assert_non_null(ct);
    assert_int_equal(ct->may_store, 1);
    assert_int_equal(ct->is_destination, 0);
    assert_null(rp_conf_peer_by_ae(&c, "NOPE"));
    assert_int_equal(rp_conf_completion_for(&c, "CT")->quiet_s, 12);
    assert_int_equal(rp_conf_completion_for(&c, "CT")->use_expected_count, 0);
    assert_int_equal(rp_conf_completion_for(&c, "PT")->quiet_s, 40);
    assert_int_equal(rp_conf_completion_for(&c, "PT")->use_expected_count, 1);
    assert_int_equal(c.n_rules, 4);
    const rp_conf_rule *r = &c.rules[3];
    assert_string_equal(r->name, "brain");
    assert_string_equal(r->modality, "MR");
    assert_string_equal(r->body_part, "HEAD BRAIN");
    assert_string_equal(r->series_description, "*t1*");
    assert_true(r->slice_thickness_min == 0.5);
    assert_true(r->slice_thickness_max == 3.0);
    assert_string_equal(r->steps, "n4 normalize(zscore)");
    assert_int_equal(r->steps_line, 61);
    assert_string_equal(r->outputs, "nifti json dicom");
    assert_string_equal(r->send_to, "pacs");
    assert_int_equal(r->priority, 10);
    assert_int_equal(r->builtin, 0);
    snprintf(want, sizeof want, "%s/t.ini", tmpdir);
    assert_string_equal(c.source, want);
    rp_conf_free(&c);
}

static void test_unknown_key_and_section(void **state)
{
    (void)state;
    expect_error("[node]\nport = 104\n\nfoo = 1\n", 4, "unknown key 'foo' in [node]");
    expect_error("[node]\nport = 104\n[nodes]\nport = 1\n", 3,
                 "unknown section [nodes] (expected node, tls, http, peer NAME, completion MODALITY, "
                 "rule NAME)");
    /* an empty unknown section is reported too */
    expect_error("[node]\n[bogus thing]\n", 2,
                 "unknown section [bogus thing] (expected node, tls, http, peer NAME, completion "
                 "MODALITY, rule NAME)");
    expect_error("port = 1\n", 1, "key 'port' outside of any section");
    expect_error("[peer pacs]\nae_title = P\nfoo = 1\n", 3, "unknown key 'foo' in [peer pacs]");
    expect_error("[node]\nthis is not a key\n", 2,
                 "syntax error: expected 'key = value' or '[section]'");
    expect_error("[node\n", 1, "section header without closing ']'");
    expect_error("[node]\nport = 1\nport = 2\n", 3, "duplicate key 'port'");
    expect_error("[peer]\n", 1, "section [peer] needs a name: [peer NAME]");
    expect_error("[node x]\n", 1, "section [node] takes no name");
}

static void test_bad_values(void **state)
{
    (void)state;
    expect_error("[node]\nport = abc\n", 2, "port: 'abc' is not an integer");
    expect_error("[node]\nport = 70000\n", 2, "port: 70000 is out of range 1..65535");
    expect_error("[node]\nport = 12x\n", 2, "port: '12x' is not an integer");
    expect_error("[node]\nport =\n", 2, "port: '' is not an integer");
    expect_error("[node]\nae_title = ABCDEFGHIJKLMNOPQ\n", 2,
                 "ae_title: AE title 'ABCDEFGHIJKLMNOPQ' is longer than 16 characters");
    expect_error("[node]\nae_title = A\\B\n", 2, "ae_title: AE title 'A\\B' contains a backslash");
    expect_error("[node]\nmax_pdu = 1000\n", 2,
                 "max_pdu: 1000 is out of range (0 = the largest, or 4096..131072 bytes)");
    expect_error("[node]\nmax_pdu = 2000000\n", 2,
                 "max_pdu: 2000000 is out of range (0 = the largest, or 4096..131072 bytes)");
    expect_error("[node]\nduplicate_policy = keep_both\n", 2,
                 "duplicate_policy: 'keep_both' is not one of keep_first|replace|reject");
    expect_error("[node]\nuid_policy = loose\n", 2,
                 "uid_policy: 'loose' is not one of lenient|strict");
    expect_error("[rule r]\nsteps = hu\nphilips_scaling = precise\n", 3,
                 "philips_scaling: 'precise' is not one of display|float");
    expect_error("[tls]\nrequire_client_cert = maybe\n", 2,
                 "require_client_cert: 'maybe' is not a boolean (yes/no, true/false, on/off, 1/0)");
    expect_error("[tls]\nprofile = tls13\n", 2,
                 "profile: 'tls13' is not one of bcp195|bcp195-nd|bcp195-ex");
    expect_error("[node]\nuid_root = 1.02.3\n", 2,
                 "uid_root '1.02.3' has a component with a leading zero");
    expect_error("[node]\nuid_root = 1.2.x\n", 2,
                 "uid_root '1.2.x' may contain only digits and dots");
    expect_error("[peer a]\nae_title = A\n[peer a]\nae_title = B\n", 3, "duplicate [peer a]");
    expect_error("[peer a]\nae_title = SAME\n[peer b]\nae_title = SAME\n", 3,
                 "peer b: AE title 'SAME' is already used by peer a");
    expect_error("[peer a]\nhost = x\n", 1, "peer a: ae_title is required");
    expect_error("[rule r1]\nmodality = CT\n\n", 1, "rule r1: steps is empty");
    expect_error("[rule r1]\nsteps =\n", 2, "rule r1: steps is empty");
    expect_error("[rule r1]\nsteps = hu\noutputs = nifti nitfi\n", 3,
                 "outputs: unknown output 'nitfi' (known: nifti json qc png dicom seg overlay "
                 "sr manifest npy)");
    expect_error("[rule r1]\nsteps = hu\n[rule r1]\nsteps = hu\n", 3, "duplicate [rule r1]");
    expect_error("[rule r1]\nsteps = hu\nslice_thickness_min = thin\n", 3,
                 "slice_thickness_min: 'thin' is not a number");
    expect_error("[completion CT]\nquiet_s = 0\n", 2, "quiet_s: 0 is out of range 1..604800");
    expect_error("[completion CT]\nquiet_s = 5\n[completion ct]\n", 3, "duplicate [completion CT]");
    /* a failed load leaves the caller's struct as it was */
    rp_conf c;
    char err[512];
    assert_int_equal(load_text(&c, "[node]\nport = 5\nbad = 1\n", err, sizeof err), RP_ECONF);
    assert_int_equal(c.port, 11112);
    assert_int_equal(c.n_rules, 3);
    rp_conf_free(&c);
}

static void test_long_line_and_bool_spellings(void **state)
{
    (void)state;
    static const char *const yes[] = {"yes", "true", "1", "on", "YES", "On"};
    static const char *const no[] = {"no", "false", "0", "off", "No", "FALSE"};
    for (size_t i = 0; i < 6; i++) {
        assert_int_equal(rp_conf_parse_bool(yes[i]), 1);
        assert_int_equal(rp_conf_parse_bool(no[i]), 0);
    }
    assert_int_equal(rp_conf_parse_bool("2"), RP_EINVAL);
    /* a recipe longer than inih's default 200-byte line */
    char text[1600];
    char steps[1200] = "";
    for (int i = 0; i < 60; i++)
        strcat(steps, "clip(-1000,1000) ");
    steps[strlen(steps) - 1] = '\0';
    snprintf(text, sizeof text, "[rule long]\nsteps = %s\n", steps);
    rp_conf c;
    char err[512] = "";
    int rc = load_text(&c, text, err, sizeof err);
    if (rc)
        print_error("%s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(c.rules[3].steps, steps);
    rp_conf_free(&c);
}

static void test_completion_inherits_final_default(void **state)
{
    (void)state;
    rp_conf c;
    char err[512] = "";
    /* PT is new: what it does not set comes from [completion default], even a later one;
     * CT keeps its built-in entry's values for keys it does not set */
    assert_int_equal(load_text(&c,
                               "[completion PT]\nquiet_s = 40\n[completion CT]\nquiet_s = 7\n"
                               "[completion NM]\nuse_expected_count = no\n"
                               "[completion default]\nquiet_s = 90\nuse_expected_count = no\n",
                               err, sizeof err),
                     0);
    assert_int_equal(rp_conf_completion_for(&c, "PT")->quiet_s, 40);
    assert_int_equal(rp_conf_completion_for(&c, "PT")->use_expected_count, 0);
    assert_int_equal(rp_conf_completion_for(&c, "NM")->quiet_s, 90);
    assert_int_equal(rp_conf_completion_for(&c, "CT")->quiet_s, 7);
    assert_int_equal(rp_conf_completion_for(&c, "CT")->use_expected_count, 1);
    assert_int_equal(rp_conf_completion_for(&c, "OT")->quiet_s, 90);
    assert_int_equal(rp_conf_completion_for(&c, "DX")->quiet_s, 5);
    rp_conf_free(&c);
}

static void test_rule_override(void **state)
{
    (void)state;
    rp_conf c;
    char err[512] = "";
    assert_int_equal(load_text(&c,
                               "[peer pacs]\nae_title = PACS\nhost = h\nport = 104\n"
                               "destination = yes\n\n[rule ct_default]\nmodality = CT\n"
                               "steps = hu clip(-100,200)\nsend_to = pacs\n",
                               err, sizeof err),
                     0);
    assert_int_equal(c.n_rules, 3);
    assert_string_equal(c.rules[0].name, "ct_default");
    assert_string_equal(c.rules[0].steps, "hu clip(-100,200)");
    assert_string_equal(c.rules[0].outputs, ""); /* replaced, not merged */
    assert_int_equal(c.rules[0].builtin, 0);
    assert_int_equal(c.rules[0].priority, 0);
    assert_int_equal(c.rules[0].steps_line, 9);
    assert_int_equal(rp_conf_validate(&c, err, sizeof err), 0);
    rp_conf_free(&c);
}

static int fake_check(const char *steps, char *err, size_t errlen)
{
    if (strstr(steps, "bogus")) {
        snprintf(err, errlen, "unknown step 'bogus'");
        return -1;
    }
    return 0;
}

static void test_validate_rules_callback(void **state)
{
    (void)state;
    rp_conf c;
    char err[512] = "";
    assert_int_equal(load_text(&c,
                               "[node]\nport = 104\n\n[rule r]\nmodality = CT\nsteps = hu bogus\n",
                               err, sizeof err),
                     0);
    assert_int_equal(rp_conf_validate_rules(&c, fake_check, err, sizeof err), RP_ECONF);
    char want[256];
    snprintf(want, sizeof want, "%s/t.ini:6: rule r: unknown step 'bogus'", tmpdir);
    assert_string_equal(err, want);
    rp_conf_free(&c);
    assert_int_equal(rp_conf_defaults(&c), 0);
    assert_int_equal(rp_conf_validate_rules(&c, fake_check, err, sizeof err), 0);
    rp_conf_free(&c);
}

/* [peer] results: what a destination receives; rule outputs overlay / sr */
static void test_peer_results(void **state)
{
    (void)state;
    rp_conf c;
    char err[1024] = "";
    assert_int_equal(load_text(&c,
                               "[peer a]\nae_title = A\n"
                               "[peer b]\nae_title = B\nresults = overlay, sr\n"
                               "[rule r]\nsteps = hu lungmask\noutputs = nifti seg overlay sr\n"
                               "overlay_caption = Research use only\n"
                               "philips_scaling = float\n",
                               err, sizeof err),
                     0);
    const rp_conf_peer *a = rp_conf_peer_by_name(&c, "a"), *b = rp_conf_peer_by_name(&c, "b");
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a->results, "derived seg");
    assert_int_equal(rp_conf_peer_results(a), RP_RESULT_DERIVED | RP_RESULT_SEG);
    assert_int_equal(rp_conf_peer_results(b), RP_RESULT_OVERLAY | RP_RESULT_SR);
    const rp_conf_rule *r = NULL;
    for (size_t i = 0; i < c.n_rules; i++)
        if (!strcmp(c.rules[i].name, "r"))
            r = &c.rules[i];
    assert_non_null(r);
    assert_string_equal(r->overlay_caption, "Research use only");
    assert_int_equal(r->philips_float, 1);
    rp_conf_free(&c);
    expect_error("[peer a]\nae_title = A\nresults = seg nifti\n", 3,
                 "results: unknown result 'nifti' (known: derived seg overlay sr)");
    expect_error("[rule r]\nsteps = hu\noutputs = overlay srx\n", 3,
                 "outputs: unknown output 'srx' (known: nifti json qc png dicom seg overlay sr "
                 "manifest npy)");
}

static void test_validate(void **state)
{
    (void)state;
    rp_conf c;
    char err[1024] = "";
    /* destination needs host+port */
    assert_int_equal(load_text(&c, "[peer p]\nae_title = P\ndestination = yes\n", err, sizeof err),
                     0);
    assert_int_equal(rp_conf_validate(&c, err, sizeof err), RP_ECONF);
    assert_non_null(strstr(err, ":1: peer p: destination = yes needs host and port"));
    rp_conf_free(&c);
    /* send_to unknown peer */
    assert_int_equal(load_text(&c, "[rule r]\nsteps = hu\nsend_to = nowhere\n", err, sizeof err),
                     0);
    assert_int_equal(rp_conf_validate(&c, err, sizeof err), RP_ECONF);
    assert_non_null(strstr(err, ":2: rule r: send_to names unknown peer 'nowhere'"));
    rp_conf_free(&c);
    /* tls port equals the plain port */
    assert_int_equal(load_text(&c, "[node]\nport = 104\n[tls]\nport = 104\n", err, sizeof err), 0);
    assert_int_equal(rp_conf_validate(&c, err, sizeof err), RP_ECONF);
    assert_string_equal(err, "[tls] port 104 is the same as [node] port");
    rp_conf_free(&c);
}

static void test_tls_key_permissions(void **state)
{
    (void)state;
    char cert[256], key[256], ca[256], text[1024], err[1024] = "";
    snprintf(cert, sizeof cert, "%s", write_file("cert.pem", "CERT\n", 0644));
    snprintf(key, sizeof key, "%s", write_file("key.pem", "KEY\n", 0644));
    snprintf(ca, sizeof ca, "%s", write_file("ca.pem", "CA\n", 0644));
    snprintf(text, sizeof text, "[tls]\nport = 2762\ncert = %s\nkey = key.pem\nca_file = %s\n",
             cert, ca);
    rp_conf c;
    assert_int_equal(load_text(&c, text, err, sizeof err), 0);
    assert_string_equal(c.tls_key, key); /* relative to the file's directory */
    assert_int_equal(rp_conf_validate(&c, err, sizeof err), RP_ECONF);
    assert_non_null(strstr(err, "is readable by group or others (mode 0644)"));
    assert_int_equal(chmod(key, 0600), 0);
    assert_int_equal(rp_conf_validate(&c, err, sizeof err), 0);
    /* a missing cert */
    rp_strlcpy(c.tls_cert, "/nonexistent/cert.pem", sizeof c.tls_cert);
    assert_int_equal(rp_conf_validate(&c, err, sizeof err), RP_ECONF);
    assert_non_null(strstr(err, "[tls] cert /nonexistent/cert.pem"));
    /* client certificates without a CA */
    rp_strlcpy(c.tls_cert, cert, sizeof c.tls_cert);
    c.tls_ca_file[0] = '\0';
    assert_int_equal(rp_conf_validate(&c, err, sizeof err), RP_ECONF);
    assert_non_null(strstr(err, "require_client_cert"));
    rp_conf_free(&c);
}

/* A self-signed EC certificate valid from now+from_s to now+to_s, written as PEM; the key
 * optionally encrypted with `pass`. */
static void make_cert(const char *cert_path, const char *key_path, long from_s, long to_s,
                      const char *pass)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    assert_non_null(k);
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), from_s);
    X509_gmtime_adj(X509_getm_notAfter(x), to_s);
    X509_set_pubkey(x, k);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"radprep-test", -1, -1,
                               0);
    X509_set_issuer_name(x, n);
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    FILE *fp = fopen(cert_path, "w");
    assert_non_null(fp);
    PEM_write_X509(fp, x);
    fclose(fp);
    fp = fopen(key_path, "w");
    assert_non_null(fp);
    if (pass)
        PEM_write_PrivateKey(fp, k, EVP_aes_256_cbc(), NULL, 0, NULL, (void *)pass);
    else
        PEM_write_PrivateKey(fp, k, NULL, NULL, 0, NULL, NULL);
    fclose(fp);
    chmod(key_path, 0600);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void test_tls_check(void **state)
{
    (void)state;
    rp_conf c;
    char err[512], warn[512], cert[256], key[256], cert2[256], key2[256], pf[256];
    snprintf(cert, sizeof cert, "%s/tls_c.pem", tmpdir);
    snprintf(key, sizeof key, "%s/tls_k.pem", tmpdir);
    snprintf(cert2, sizeof cert2, "%s/tls_c2.pem", tmpdir);
    snprintf(key2, sizeof key2, "%s/tls_k2.pem", tmpdir);
    assert_int_equal(rp_conf_defaults(&c), 0);
    /* no TLS: nothing to check */
    assert_int_equal(rp_conf_tls_check(&c, err, sizeof err, warn, sizeof warn), 0);
    c.tls_port = 2762;
    rp_strlcpy(c.tls_cert, cert, sizeof c.tls_cert);
    rp_strlcpy(c.tls_key, key, sizeof c.tls_key);
    rp_strlcpy(c.tls_ca_file, cert, sizeof c.tls_ca_file);
    /* valid for a year: fine, no warning */
    make_cert(cert, key, -60, 365 * 86400L, NULL);
    assert_int_equal(rp_conf_tls_check(&c, err, sizeof err, warn, sizeof warn), 0);
    assert_string_equal(warn, "");
    /* expires in 10 days: a warning */
    make_cert(cert, key, -60, 10 * 86400L + 3600, NULL);
    assert_int_equal(rp_conf_tls_check(&c, err, sizeof err, warn, sizeof warn), 0);
    assert_non_null(strstr(warn, "expires in 10 days"));
    /* expired: an error */
    make_cert(cert, key, -10 * 86400L, -2 * 86400L - 60, NULL);
    assert_int_equal(rp_conf_tls_check(&c, err, sizeof err, warn, sizeof warn), RP_ECONF);
    assert_non_null(strstr(err, "expired 2 days ago"));
    /* not valid yet */
    make_cert(cert, key, 86400, 2 * 86400, NULL);
    assert_int_equal(rp_conf_tls_check(&c, err, sizeof err, warn, sizeof warn), RP_ECONF);
    assert_non_null(strstr(err, "is not valid yet"));
    /* key of another certificate */
    make_cert(cert, key, -60, 365 * 86400L, NULL);
    make_cert(cert2, key2, -60, 365 * 86400L, NULL);
    rp_strlcpy(c.tls_key, key2, sizeof c.tls_key);
    assert_int_equal(rp_conf_tls_check(&c, err, sizeof err, warn, sizeof warn), RP_ECONF);
    assert_non_null(strstr(err, "does not belong to cert"));
    /* an encrypted key needs its passphrase file, and the right passphrase */
    make_cert(cert, key, -60, 365 * 86400L, "s3cret");
    rp_strlcpy(c.tls_key, key, sizeof c.tls_key);
    assert_int_equal(rp_conf_tls_check(&c, err, sizeof err, warn, sizeof warn), RP_ECONF);
    assert_non_null(strstr(err, "set key_passphrase_file"));
    snprintf(pf, sizeof pf, "%s", write_file("pass.txt", "s3cret\n", 0600));
    rp_strlcpy(c.tls_key_passphrase_file, pf, sizeof c.tls_key_passphrase_file);
    assert_int_equal(rp_conf_tls_check(&c, err, sizeof err, warn, sizeof warn), 0);
    write_file("pass.txt", "wrong\n", 0600);
    assert_int_equal(rp_conf_tls_check(&c, err, sizeof err, warn, sizeof warn), RP_ECONF);
    assert_non_null(strstr(err, "cannot read the private key with key_passphrase_file"));
    /* garbage instead of a certificate */
    c.tls_key_passphrase_file[0] = '\0';
    make_cert(cert, key, -60, 365 * 86400L, NULL);
    rp_strlcpy(c.tls_cert, write_file("junk.pem", "not a cert\n", 0644), sizeof c.tls_cert);
    assert_int_equal(rp_conf_tls_check(&c, err, sizeof err, warn, sizeof warn), RP_ECONF);
    assert_non_null(strstr(err, "not a PEM certificate"));
    rp_conf_free(&c);
}

static void test_resolve_data_dir(void **state)
{
    (void)state;
    rp_conf c;
    assert_int_equal(rp_conf_defaults(&c), 0);
    snprintf(c.data_dir, sizeof c.data_dir, "%s/data/deep", tmpdir);
    assert_int_equal(rp_conf_resolve_data_dir(&c), 0);
    struct stat st;
    assert_int_equal(stat(c.data_dir, &st), 0);
    if (geteuid() != 0) {
        /* an explicit unusable dir never falls back */
        rp_strlcpy(c.data_dir, "/proc/radprep_no", sizeof c.data_dir);
        assert_true(rp_conf_resolve_data_dir(&c) < 0);
        assert_string_equal(c.data_dir, "/proc/radprep_no");
        /* the default falls back to XDG_STATE_HOME when it cannot be created */
        struct stat vs;
        if (stat("/var/lib/radprep", &vs) != 0 && access("/var/lib", W_OK) != 0) {
            char xdg[256];
            snprintf(xdg, sizeof xdg, "%s/state", tmpdir);
            setenv("XDG_STATE_HOME", xdg, 1);
            rp_strlcpy(c.data_dir, "/var/lib/radprep", sizeof c.data_dir);
            assert_int_equal(rp_conf_resolve_data_dir(&c), 0);
            char want[300];
            snprintf(want, sizeof want, "%s/radprep", xdg);
            assert_string_equal(c.data_dir, want);
        }
    }
    rp_conf_free(&c);
}

static void test_crlf_and_bom(void **state)
{
    (void)state;
    rp_conf c;
    char err[512] = "";
    /* a file saved on Windows: BOM and CRLF line ends */
    assert_int_equal(load_text(&c,
                               "\xEF\xBB\xBF[node]\r\nport = 104\r\nae_title = WIN\r\n\r\n"
                               "[rule r]\r\nsteps = hu clip(-1,1)\r\n",
                               err, sizeof err),
                     0);
    assert_int_equal(c.port, 104);
    assert_string_equal(c.ae_title, "WIN");
    assert_string_equal(c.rules[3].steps, "hu clip(-1,1)");
    assert_int_equal(c.rules[3].steps_line, 6);
    rp_conf_free(&c);
    expect_error("\xEF\xBB\xBF[node]\r\nbogus = 1\r\n", 2, "unknown key 'bogus' in [node]");
}

static void test_missing_file(void **state)
{
    (void)state;
    rp_conf c;
    char err[512];
    assert_int_equal(rp_conf_defaults(&c), 0);
    assert_int_equal(rp_conf_load(&c, "/nonexistent/radprep.ini", err, sizeof err), RP_ECONF);
    assert_string_equal(err, "/nonexistent/radprep.ini: cannot open: No such file or directory");
    assert_int_equal(rp_conf_load(&c, tmpdir, err, sizeof err), RP_ECONF);
    char want[128];
    snprintf(want, sizeof want, "%s: not a regular file", tmpdir);
    assert_string_equal(err, want);
    rp_conf_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_valid),
        cmocka_unit_test(test_all_keys),
        cmocka_unit_test(test_unknown_key_and_section),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_long_line_and_bool_spellings),
        cmocka_unit_test(test_completion_inherits_final_default),
        cmocka_unit_test(test_rule_override),
        cmocka_unit_test(test_validate_rules_callback),
        cmocka_unit_test(test_validate),
        cmocka_unit_test(test_peer_results),
        cmocka_unit_test(test_tls_key_permissions),
        cmocka_unit_test(test_tls_check),
        cmocka_unit_test(test_resolve_data_dir),
        cmocka_unit_test(test_crlf_and_bom),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
