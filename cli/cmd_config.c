/* cli/cmd_config — `radprep check-config [FILE]`: load, validate, check every rule's steps
 * with the pipeline's recipe parser, print OK and a summary. Exit 2 with "FILE:LINE: reason"
 * on the first error. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "common/common.h"
#include "pipeline/pipeline.h"


static void usage(FILE *fp)
{
    fprintf(fp, "usage: radprep check-config [--quiet] [FILE]\n"
                "Load FILE (or the global --config file) over the built-in defaults, validate\n"
                "every value and cross-reference (peers, TLS files and key permissions, rule\n"
                "steps), then print OK and a summary. Exit 2 and one line FILE:LINE: reason on\n"
                "the first error.\n");
}

int rp_cli_check_config(int argc, char **argv, const rp_conf *global)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'}, {"quiet", no_argument, NULL, 'q'}, {NULL, 0, NULL, 0}};
    int quiet = 0, o;
    while ((o = getopt_long(argc, argv, "hq", opts, NULL)) != -1) {
        if (o == 'h') {
            usage(stdout);
            return 0;
        }
        if (o == 'q') {
            quiet = 1;
            continue;
        }
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "check-config", "unknown option '%s'",
                           argv[optind - 1]);
    }
    const char *file = NULL;
    if (optind < argc)
        file = argv[optind++];
    else if (strcmp(global->source, "(defaults)") != 0)
        file = global->source;
    if (optind < argc)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "check-config", "one FILE at most");

    rp_conf c;
    char err[1024] = "";
    if (rp_conf_defaults(&c) != 0)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "check-config", "out of memory");
    int rc = RP_CLI_EXIT_USAGE;
    if (file && rp_conf_load(&c, file, err, sizeof err) != 0)
        goto fail;
    if (rp_conf_validate(&c, err, sizeof err) != 0)
        goto fail;
    char warn[512] = "";
    if (rp_conf_tls_check(&c, err, sizeof err, warn, sizeof warn) != 0)
        goto fail;
    if (rp_conf_validate_rules(&c, rp_pipeline_check_recipe, err, sizeof err) != 0)
        goto fail;
    if (rp_conf_validate_fusions(&c, rp_pipeline_check_recipe, err, sizeof err) != 0)
        goto fail;

    if (warn[0])
        fprintf(stderr, "radprep: check-config: warning: %s\n", warn);
    if (quiet) {
        printf("OK\n");
        rp_conf_free(&c);
        return 0;
    }
    printf("OK %s\n", file ? file : "(built-in defaults)");
    printf("node        ae_title=%s port=%d bind=%s data_dir=%s\n", c.ae_title, c.port, c.bind,
           c.data_dir);
    char outdir[RP_PATH_MAX + 16];
    printf("            outputs_dir=%s max_associations=%d per_peer=%d max_pdu=%u "
           "duplicate_policy=%s\n",
           rp_conf_outputs_dir(&c, outdir, sizeof outdir), c.max_associations,
           c.max_associations_per_peer, c.max_pdu,
           c.duplicate_policy == RP_DUP_KEEP_FIRST ? "keep_first"
           : c.duplicate_policy == RP_DUP_REPLACE  ? "replace"
                                                   : "reject");
    printf("            min_free_mb=%lld workers=%d job_timeout_s=%d job_memory_mb=%lld "
           "job_max_attempts=%d\n",
           c.min_free_mb, c.workers, c.job_timeout_s, c.job_memory_mb, c.job_max_attempts);
    if (c.tls_port)
        printf("tls         port=%d profile=%s require_client_cert=%s cert=%s\n", c.tls_port,
               c.tls_profile, c.tls_require_client_cert ? "yes" : "no", c.tls_cert);
    else
        printf("tls         off\n");
    printf("peers       %zu%s\n", c.n_peers, c.n_peers ? "" : " (any calling AE title may store)");
    for (size_t i = 0; i < c.n_peers; i++) {
        const rp_conf_peer *p = &c.peers[i];
        printf("  %-16s ae_title=%s", p->name, p->ae_title);
        if (p->host[0])
            printf(" host=%s", p->host);
        if (p->port)
            printf(" port=%d", p->port);
        printf(" store=%s echo=%s%s%s%s%s%s\n", p->may_store ? "yes" : "no",
               p->may_echo ? "yes" : "no", p->is_destination ? " destination" : "",
               p->tls_only ? " tls_only" : "", p->may_find ? " find" : "",
               p->may_move ? " move" : "", p->may_get ? " get" : "");
    }
    printf("completion ");
    for (size_t i = 0; i < c.n_completion; i++)
        printf(" %s=%ds%s", c.completion[i].modality, c.completion[i].quiet_s,
               c.completion[i].use_expected_count ? "" : "(no count)");
    printf("\nrules       %zu\n", c.n_rules);
    for (size_t i = 0; i < c.n_rules; i++) {
        const rp_conf_rule *r = &c.rules[i];
        printf("  %-16s %s modality=%s priority=%d steps=\"%s\"\n", r->name,
               r->builtin ? "built-in" : "file    ", r->modality[0] ? r->modality : "any",
               r->priority, r->steps);
    }
    printf("fusions     %zu\n", c.n_fusions);
    for (size_t i = 0; i < c.n_fusions; i++) {
        const rp_conf_fusion *f = &c.fusions[i];
        printf("  %-16s sequences=", f->name);
        for (int k = 0; k < f->n_seq; k++)
            printf("%s%s%s", k ? "," : "", f->seq[k].name, f->seq[k].custom ? "(file)" : "");
        printf(" reference=%s layout=%s%s%s normalize=\"%s\"\n", f->seq[f->reference].name,
               f->layout & RP_FUSION_LAYOUT_NIFTI4D ? "nifti4d" : "",
               f->layout == (RP_FUSION_LAYOUT_NIFTI4D | RP_FUSION_LAYOUT_NNUNET) ? "+" : "",
               f->layout & RP_FUSION_LAYOUT_NNUNET ? "nnunet" : "", f->normalize);
    }
    printf("pulls       %zu\n", c.n_pulls);
    for (size_t i = 0; i < c.n_pulls; i++) /* docs/retrieve.md */
        printf("  %-16s peer=%s study_date=%s modality=%s rule=%s window=%02d:%02d-%02d:%02d\n",
               c.pulls[i].name, c.pulls[i].peer, c.pulls[i].study_date[0] ? c.pulls[i].study_date : "-",
               c.pulls[i].modality[0] ? c.pulls[i].modality : "-",
               c.pulls[i].rule[0] ? c.pulls[i].rule : "-", c.pulls[i].window_start_s / 3600,
               c.pulls[i].window_start_s / 60 % 60, c.pulls[i].window_end_s / 3600,
               c.pulls[i].window_end_s / 60 % 60);
    printf("steps       checked by the recipe parser\n");
    rp_conf_free(&c);
    return 0;
fail:
    rp_conf_free(&c);
    return rp_cli_fail(rc, NULL, "%s", err);
}
