/* cli/cmd_process — `radprep process DIR|FILE... --out OUT [options]`: the pipeline on a folder
 * of DICOM files without the daemon (the same code the daemon's jobs run), and
 * `radprep process --job N` (the supervisor's worker, handed to cli/cmd_job.c).
 *
 * Exit status: 0 when every input converted (non-image objects are skipped, not errors);
 * 1 with one line of reason on stderr when any input failed (qc.json in OUT says which and
 * why); 2 for a usage error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "common/common.h"
#include "pipeline/pipeline.h"

static const char usage[] =
    "usage: radprep process DIR|FILE... --out OUT [--no-gzip] [--gzip-level N] [--threads N]\n"
    "                       [--recipe \"steps\" | --rule NAME] [--outputs \"dicom seg overlay sr\"]\n"
    "                       [--overlay-caption TEXT] [--no-resample] [--privacy none|sidecar|filename]\n"
    "                       [--philips-scaling display|float]\n"
    "       radprep process DIR... --fusion NAME --out OUT\n"
    "       radprep process --executor slurm DIR... | --list FILE --out OUT [options]\n"
    "       radprep process --job N";

int rp_cli_process(int argc, char **argv, const rp_conf *c)
{
    if (rp_cli_has_job_option(argc, argv))
        return rp_cli_process_job(argc, argv);
    if (rp_cli_has_fusion_option(argc, argv)) /* study-level fusion (cli/cmd_fuse.c) */
        return rp_cli_process_fusion(argc, argv, c);
    if (rp_cli_has_executor_option(argc, argv)) /* a Slurm array (cmd_process_array.c) */
        return rp_cli_process_array(argc, argv, c);
    rp_process_opts o;
    rp_process_opts_init(&o);
    const char *out = NULL;
    const char **inputs = calloc((size_t)argc + 1, sizeof *inputs);
    int nin = 0;
    if (!inputs)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "process", "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = rp_cli_opt_value(argc, argv, &i, "--out")) || (v = rp_cli_opt_value(argc, argv, &i, "-o"))) {
            out = v;
        } else if (!strcmp(argv[i], "--no-gzip")) {
            o.gzip = 0;
        } else if ((v = rp_cli_opt_value(argc, argv, &i, "--gzip-level"))) {
            long long n = rp_cli_parse_count(v);
            if (n < 1 || n > 12) {
                free(inputs);
                return rp_cli_fail(RP_CLI_EXIT_USAGE, "process",
                                   "--gzip-level wants 1..12, got '%s'", v);
            }
            o.gzip_level = (int)n;
        } else if ((v = rp_cli_opt_value(argc, argv, &i, "--threads"))) {
            long long n = rp_cli_parse_count(v);
            if (n < 1 || n > 1024) {
                free(inputs);
                return rp_cli_fail(RP_CLI_EXIT_USAGE, "process",
                                   "--threads wants 1..1024, got '%s'", v);
            }
            o.threads = (int)n;
        } else if ((v = rp_cli_opt_value(argc, argv, &i, "--recipe"))) {
            o.recipe = v;
        } else if ((v = rp_cli_opt_value(argc, argv, &i, "--rule"))) {
            /* The node's own rule, so a batch run gives what the daemon's job would. */
            const rp_conf_rule *r = NULL;
            for (size_t k = 0; k < c->n_rules && !r; k++)
                if (!strcmp(c->rules[k].name, v))
                    r = &c->rules[k];
            if (!r) {
                free(inputs);
                return rp_cli_fail(RP_CLI_EXIT_USAGE, "process", "--rule: no rule named '%s'",
                                   v);
            }
            o.recipe = r->steps;
            o.rule_name = r->name;
            if (r->overlay_caption[0] && !o.overlay_caption)
                o.overlay_caption = strcmp(r->overlay_caption, "none") ? r->overlay_caption : "";
            if (!o.outputs)
                o.outputs = r->outputs;
            o.philips_float |= r->philips_float;
        } else if ((v = rp_cli_opt_value(argc, argv, &i, "--outputs"))) {
            /* Only "dicom" and "seg" change what process writes; NIfTI + JSON always come. */
            char words[256];
            rp_strlcpy(words, v, sizeof words);
            for (char *save = NULL, *w = strtok_r(words, " ,", &save); w;
                 w = strtok_r(NULL, " ,", &save)) {
                static const char *const known[] = {"nifti", "json", "qc",     "png",
                                                    "dicom", "seg",  "overlay", "sr"};
                int ok = 0;
                for (size_t k = 0; k < sizeof known / sizeof *known; k++)
                    ok |= !strcmp(w, known[k]);
                if (!ok) {
                    free(inputs);
                    return rp_cli_fail(RP_CLI_EXIT_USAGE, "process",
                                       "--outputs: unknown output '%s' (nifti json qc png dicom seg overlay "
                                       "sr)",
                                       w);
                }
            }
            o.outputs = v;
        } else if ((v = rp_cli_opt_value(argc, argv, &i, "--overlay-caption"))) {
            o.overlay_caption = v; /* "" = no caption */
        } else if (!strcmp(argv[i], "--no-resample")) {
            o.resample_irregular = 0;
        } else if ((v = rp_cli_opt_value(argc, argv, &i, "--philips-scaling"))) {
            if (strcmp(v, "display") && strcmp(v, "float")) {
                free(inputs);
                return rp_cli_fail(RP_CLI_EXIT_USAGE, "process",
                                   "--philips-scaling wants display|float");
            }
            o.philips_float = !strcmp(v, "float");
        } else if ((v = rp_cli_opt_value(argc, argv, &i, "--privacy"))) {
            if (!strcmp(v, "none"))
                o.privacy = RP_PRIVACY_NONE;
            else if (!strcmp(v, "sidecar"))
                o.privacy = RP_PRIVACY_SIDECAR;
            else if (!strcmp(v, "filename"))
                o.privacy = RP_PRIVACY_FILENAME;
            else {
                free(inputs);
                return rp_cli_fail(RP_CLI_EXIT_USAGE, "process",
                                   "--privacy wants none|sidecar|filename");
            }
        } else if (rp_cli_opt_value(argc, argv, &i, "--executor")) {
            /* local: processed here, by this process */
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("%s\n", usage);
            free(inputs);
            return RP_CLI_EXIT_OK;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            free(inputs);
            return rp_cli_fail(RP_CLI_EXIT_USAGE, "process", "unknown option '%s'\n%s", argv[i],
                               usage);
        } else {
            inputs[nin++] = argv[i];
        }
    }
    if (!out || nin == 0) {
        free(inputs);
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "process", "%s\n%s",
                           !out ? "--out OUT is required" : "no input folder or files", usage);
    }
    char rerr[400];
    if (rp_pipeline_check_recipe(o.recipe, rerr, sizeof rerr) != 0) {
        free(inputs);
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "process", "--recipe: %s", rerr);
    }
    rp_process_result res;
    int rc;
    struct stat sb;
    if (nin == 1 && stat(inputs[0], &sb) == 0 && S_ISDIR(sb.st_mode)) {
        rc = rp_pipeline_process_dir(c, inputs[0], out, &o, &res);
    } else {
        for (int i = 0; i < nin; i++)
            if (stat(inputs[i], &sb) != 0 || !S_ISREG(sb.st_mode)) {
                int code = rp_cli_fail(RP_CLI_EXIT_USAGE, "process",
                                       "'%s' is not a file or a folder", inputs[i]);
                free(inputs);
                return code;
            }
        rc = rp_pipeline_process_files(c, inputs, (size_t)nin, out, &o, &res);
    }
    free(inputs);
    for (size_t i = 0; i < res.n_outputs; i++)
        printf("%s\t%dx%dx%dx%d\t%s\n", res.outputs[i].nifti, res.outputs[i].dim[0],
               res.outputs[i].dim[1], res.outputs[i].dim[2], res.outputs[i].dim[3],
               res.outputs[i].modality);
    int code = RP_CLI_EXIT_OK;
    if (rc) {
        code = rp_cli_fail(RP_CLI_EXIT_FAIL, "process", "%s (%d of %d inputs failed; see %s)",
                           res.reason[0] ? res.reason : rp_strerror(rc), res.n_failed, res.n_inputs,
                           res.qc_path[0] ? res.qc_path : "the log");
    }
    rp_process_result_free(&res);
    return code;
}
