/* cli/cmd_curate_batch — `radprep curate --executor slurm|local DIR... | --list FILE --out
 * DATASET [--work DIR] [--rule NAME | --recipe STEPS] [curate options]`: a dataset straight
 * from DICOM series folders. The preprocessing runs first, one series per task: on a Slurm
 * cluster as one array job (`radprep process --executor slurm`, cmd_process_array.c: its
 * summary lands in WORK/summary.json), or here one folder after the other; then the dataset is
 * curated from WORK as `radprep curate --from-dir WORK` would. WORK (default DATASET.work)
 * must be on a filesystem every node mounts. The series whose task failed are left out (the
 * summary says why) and the exit status is then 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "common/common.h"

#define CMD "curate"

int rp_cli_curate_has_executor(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (rp_cli_opt_value(argc, argv, &i, "--executor"))
            return 1;
    return 0;
}

/* Curate's own options that take a value (passed on to the curation with it). */
static int curate_takes_value(const char *a)
{
    static const char *const v[] = {"--modality", "--since", "--layout",    "--label",
                                    "--split",    "--seed",  "--salt-file", "--augment",
                                    "--copies",   NULL};
    for (const char *const *p = v; *p; p++)
        if (strcmp(a, *p) == 0)
            return 1;
    return 0;
}

/* Folders from a list file (one a line, # comments) appended to dirs. */
static int add_list(const char *path, const char **dirs, int *n, int max, char **keep, int *nk)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return RP_ENOENT;
    char line[4096];
    while (fgets(line, sizeof line, f) && *n < max) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] || line[0] == '#')
            continue;
        if (!(keep[*nk] = strdup(line))) {
            fclose(f);
            return RP_ENOMEM;
        }
        dirs[(*n)++] = keep[(*nk)++];
    }
    fclose(f);
    return 0;
}

int rp_cli_curate_batch(int argc, char **argv, const rp_conf *c)
{
    const char *executor = NULL, *out = NULL, *work = NULL, *list = NULL, *rule = NULL,
               *recipe = NULL;
    int max = argc + 4096, nd = 0, np = 0, nk = 0, code = RP_CLI_EXIT_USAGE;
    const char **dirs = calloc((size_t)max, sizeof *dirs);
    const char **pass = calloc((size_t)argc + 8, sizeof *pass); /* to the curation */
    const char **pa = calloc((size_t)max + 16, sizeof *pa);     /* to the processing */
    char **keep = calloc(4096, sizeof *keep);
    char workbuf[4096], task_out[4200];
    if (!dirs || !pass || !pa || !keep) {
        code = rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "out of memory");
        goto done;
    }
    pass[np++] = "curate";
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = rp_cli_opt_value(argc, argv, &i, "--executor"))) {
            executor = v;
        } else if ((v = rp_cli_opt_value(argc, argv, &i, "--out")) ||
                   (v = rp_cli_opt_value(argc, argv, &i, "-o"))) {
            out = v;
        } else if ((v = rp_cli_opt_value(argc, argv, &i, "--work"))) {
            work = v;
        } else if ((v = rp_cli_opt_value(argc, argv, &i, "--list"))) {
            list = v;
        } else if ((v = rp_cli_opt_value(argc, argv, &i, "--rule"))) {
            rule = v;
        } else if ((v = rp_cli_opt_value(argc, argv, &i, "--recipe"))) {
            recipe = v;
        } else if (strcmp(argv[i], "--from-dir") == 0 ||
                   strncmp(argv[i], "--from-dir=", 11) == 0) {
            code = rp_cli_fail(RP_CLI_EXIT_USAGE, CMD,
                               "--executor curates from the series it processes: no --from-dir");
            goto done;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            pass[np++] = argv[i];
            if (curate_takes_value(argv[i]) && i + 1 < argc)
                pass[np++] = argv[++i];
        } else if (nd < max) {
            dirs[nd++] = argv[i];
        }
    }
    if (!executor || (strcmp(executor, "slurm") != 0 && strcmp(executor, "local") != 0)) {
        code = rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "--executor wants slurm or local");
        goto done;
    }
    if (list && add_list(list, dirs, &nd, max, keep, &nk) != 0) {
        code = rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "--list: cannot read '%s'", list);
        goto done;
    }
    if (!out || nd == 0) {
        code = rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "%s",
                           !out ? "--out DATASET_DIR is required"
                                : "no series folder (give DIR... or --list FILE)");
        goto done;
    }
    if (!work) {
        snprintf(workbuf, sizeof workbuf, "%s.work", out);
        work = workbuf;
    }
    int pcode;
    if (strcmp(executor, "slurm") == 0) {
        /* one array job, one task per folder, summary at the end (cmd_process_array.c) */
        int a = 0;
        pa[a++] = "process";
        pa[a++] = "--executor";
        pa[a++] = "slurm";
        if (rule) {
            pa[a++] = "--rule";
            pa[a++] = rule;
        }
        if (recipe) {
            pa[a++] = "--recipe";
            pa[a++] = recipe;
        }
        for (int i = 0; i < nd; i++)
            pa[a++] = dirs[i];
        pa[a++] = "--out";
        pa[a++] = work;
        pa[a] = NULL;
        pcode = rp_cli_process_array(a, (char **)pa, c);
    } else {
        /* here, one folder after the other, into the same layout as the array's tasks */
        pcode = RP_CLI_EXIT_OK;
        for (int i = 0; i < nd; i++) {
            int a = 0;
            snprintf(task_out, sizeof task_out, "%s/task-%d", work, i);
            pa[a++] = "process";
            if (rule) {
                pa[a++] = "--rule";
                pa[a++] = rule;
            }
            if (recipe) {
                pa[a++] = "--recipe";
                pa[a++] = recipe;
            }
            pa[a++] = dirs[i];
            pa[a++] = "--out";
            pa[a++] = task_out;
            pa[a] = NULL;
            int t = rp_cli_process(a, (char **)pa, c);
            if (t == RP_CLI_EXIT_USAGE) {
                code = t;
                goto done;
            }
            if (t != RP_CLI_EXIT_OK)
                pcode = t;
        }
    }
    struct stat st;
    if (pcode == RP_CLI_EXIT_USAGE || stat(work, &st) != 0) {
        code = pcode ? pcode : RP_CLI_EXIT_FAIL;
        goto done;
    }
    if (pcode != RP_CLI_EXIT_OK)
        fprintf(stderr, "radprep: curate: some series failed their preprocessing; the dataset "
                        "leaves them out (see %s)\n",
                strcmp(executor, "slurm") == 0 ? "the array's summary.json" : "the log above");
    pass[np++] = "--from-dir";
    pass[np++] = work;
    pass[np++] = "--out";
    pass[np++] = out;
    pass[np] = NULL;
    code = rp_cli_curate(np, (char **)pass, c);
    if (code == RP_CLI_EXIT_OK && pcode != RP_CLI_EXIT_OK)
        code = RP_CLI_EXIT_FAIL;
done:
    for (int i = 0; keep && i < nk; i++)
        free(keep[i]);
    free(keep);
    free(dirs);
    free(pass);
    free(pa);
    return code;
}
