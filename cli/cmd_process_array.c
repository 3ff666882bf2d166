/* cli/cmd_process_array — `radprep process --executor slurm DIR... | --list FILE --out OUT`:
 * an archive processed on a Slurm cluster as one array job, one task per series folder. Each
 * task runs `radprep process DIR --out OUT/task-I` with the options given here. One
 * `scontrol` call a second gives every task's state (sbatch --wait polls with growing sleeps
 * of up to tens of seconds: measured 42 s for 15 s of work); when every task has ended,
 * OUT/summary.json (and one line on stdout) says how each folder went. OUT must be on a
 * filesystem every node mounts. Exit 0 when every task completed, 1 otherwise, 2 for usage. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/cli.h"
#include "common/common.h"
#include "sched/sched.h"

#define MAX_TASKS 100000

int rp_cli_has_executor_option(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *v = rp_cli_opt_value(argc, argv, &i, "--executor");
        if (v && strcmp(v, "slurm") == 0)
            return 1;
    }
    return 0;
}

static int write_text(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return RP_EIO;
    int ok = fputs(text, f) >= 0;
    ok &= fclose(f) == 0;
    return ok && chmod(path, mode) == 0 ? 0 : RP_EIO;
}

/* Read folder paths, one a line (blank lines and # comments skipped), appended to *dirs. */
static int read_list(const char *path, char ***dirs, int *n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return RP_ENOENT;
    char line[PATH_MAX + 2];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0] || line[0] == '#')
            continue;
        char **nd = realloc(*dirs, (size_t)(*n + 1) * sizeof *nd);
        if (!nd || !(nd[*n] = strdup(line))) {
            fclose(f);
            return RP_ENOMEM;
        }
        *dirs = nd;
        (*n)++;
    }
    fclose(f);
    return 0;
}

/* The task script: the list file, OUT and the radprep command line come as arguments, the
 * task's folder is line SLURM_ARRAY_TASK_ID+1 of the list (never interpolated into code). */
static const char task_script[] =
    "#!/bin/sh\n"
    "# radprep array task: $1 list of folders, $2 OUT, then the radprep process command\n"
    "list=$1; out=$2; shift 2\n"
    "dir=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" \"$list\")\n"
    "[ -n \"$dir\" ] || { echo \"no folder for task $SLURM_ARRAY_TASK_ID\" >&2; exit 2; }\n"
    RP_SCHED_SLURM_TASK_ENV_SH
    "exec \"$@\" \"$dir\" --out \"$out/task-$SLURM_ARRAY_TASK_ID\"\n";

int rp_cli_process_array(int argc, char **argv, const rp_conf *c)
{
    const char *out = NULL, *list = NULL;
    char **dirs = NULL;
    int n = 0, code = RP_CLI_EXIT_FAIL;
    /* options passed on to every task (those of a local `radprep process`) */
    const char **pass = calloc((size_t)argc + 16, sizeof *pass);
    int np = 0;
    char self[PATH_MAX];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (!pass || sl <= 0) {
        free(pass);
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "process", "cannot find the radprep binary");
    }
    self[sl] = '\0';
    pass[np++] = self;
    if (c->source[0] && strcmp(c->source, "(defaults)") != 0) {
        pass[np++] = "--config";
        pass[np++] = c->source;
    }
    pass[np++] = "process";
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = rp_cli_opt_value(argc, argv, &i, "--out")) ||
            (v = rp_cli_opt_value(argc, argv, &i, "-o"))) {
            out = v;
        } else if ((v = rp_cli_opt_value(argc, argv, &i, "--list"))) {
            list = v;
        } else if (rp_cli_opt_value(argc, argv, &i, "--executor")) {
            /* slurm: this command */
        } else if (argv[i][0] == '-' && argv[i][1]) {
            pass[np++] = argv[i]; /* the task checks its own options */
            if (i + 1 < argc && argv[i + 1][0] != '-' && strcmp(argv[i], "--no-gzip") != 0 &&
                strcmp(argv[i], "--no-resample") != 0 && !strchr(argv[i], '='))
                pass[np++] = argv[++i];
        } else {
            char **nd = realloc(dirs, (size_t)(n + 1) * sizeof *nd);
            if (!nd)
                goto nomem;
            dirs = nd;
            if (!(dirs[n] = realpath(argv[i], NULL)))
                dirs[n] = strdup(argv[i]);
            if (!dirs[n])
                goto nomem;
            n++;
        }
    }
    pass[np] = NULL;
    if (list && read_list(list, &dirs, &n) != 0) {
        code = rp_cli_fail(RP_CLI_EXIT_USAGE, "process", "--list: cannot read '%s'", list);
        goto done;
    }
    if (!out || n == 0 || n > MAX_TASKS) {
        code = rp_cli_fail(RP_CLI_EXIT_USAGE, "process", "%s",
                           !out     ? "--out OUT is required"
                           : n == 0 ? "no series folder (give DIR... or --list FILE)"
                                    : "too many folders for one array (at most 100000)");
        goto done;
    }
    for (int i = 0; i < n; i++) {
        struct stat sb;
        if (stat(dirs[i], &sb) != 0 || !S_ISDIR(sb.st_mode) || strchr(dirs[i], '\n')) {
            code = rp_cli_fail(RP_CLI_EXIT_USAGE, "process", "'%s' is not a folder", dirs[i]);
            goto done;
        }
    }
    char outabs[PATH_MAX], meta[PATH_MAX + 32], p[PATH_MAX + 64];
    if (rp_mkdir_p(out, 0750) != 0 || !realpath(out, outabs)) {
        code = rp_cli_fail(RP_CLI_EXIT_FAIL, "process", "cannot create '%s'", out);
        goto done;
    }
    snprintf(meta, sizeof meta, "%s/.radprep-array", outabs);
    rp_mkdir_p(meta, 0750);
    /* the folder list, as the tasks read it */
    size_t cap = 1;
    for (int i = 0; i < n; i++)
        cap += strlen(dirs[i]) + 1;
    char *text = malloc(cap), *w = text;
    if (!text)
        goto nomem;
    for (int i = 0; i < n; i++)
        w += sprintf(w, "%s\n", dirs[i]);
    char listp[PATH_MAX + 64], script[PATH_MAX + 64];
    snprintf(listp, sizeof listp, "%s/folders.txt", meta);
    snprintf(script, sizeof script, "%s/task.sh", meta);
    int wrc = write_text(listp, text, 0640) || write_text(script, task_script, 0750);
    free(text);
    if (wrc) {
        code = rp_cli_fail(RP_CLI_EXIT_FAIL, "process", "cannot write into '%s'", meta);
        goto done;
    }
    /* sbatch --array=0-(n-1) ... task.sh LIST OUT radprep process OPTIONS */
    const rp_conf_executor *e = &c->executor;
    char bin[300], arr[64], outopt[PATH_MAX + 64], part[96], acct[96], tl[48], mem[48], cpus[48];
    const char *sargv[64 + 64];
    int a = 0;
    snprintf(bin, sizeof bin, "%s/sbatch", e->bin_dir[0] ? e->bin_dir : "/usr/bin");
    sargv[a++] = bin;
    sargv[a++] = "--parsable";
    sargv[a++] = "--job-name=radprep-array";
    snprintf(arr, sizeof arr, "--array=0-%d", n - 1);
    sargv[a++] = arr;
    snprintf(outopt, sizeof outopt, "--output=%s/task-%%a.log", meta);
    sargv[a++] = outopt;
    if (e->partition[0] && snprintf(part, sizeof part, "--partition=%s", e->partition))
        sargv[a++] = part;
    if (e->account[0] && snprintf(acct, sizeof acct, "--account=%s", e->account))
        sargv[a++] = acct;
    int limit = e->time_limit_s > 0 ? e->time_limit_s : c->job_timeout_s;
    if (limit > 0 && snprintf(tl, sizeof tl, "--time=%d", (limit + 59) / 60))
        sargv[a++] = tl;
    long long mb = e->mem_mb > 0 ? e->mem_mb : c->job_memory_mb;
    if (mb > 0 && snprintf(mem, sizeof mem, "--mem=%lld", mb))
        sargv[a++] = mem;
    if (e->cpus_per_task > 0 && snprintf(cpus, sizeof cpus, "--cpus-per-task=%d", e->cpus_per_task))
        sargv[a++] = cpus;
    char extra[512];
    rp_strlcpy(extra, e->sbatch_args, sizeof extra);
    char *save = NULL;
    for (char *t = strtok_r(extra, " \t", &save); t && a < 60; t = strtok_r(NULL, " \t", &save))
        sargv[a++] = t;
    sargv[a++] = script;
    sargv[a++] = listp;
    sargv[a++] = outabs;
    for (int i = 0; i < np && a < 126; i++)
        sargv[a++] = pass[i];
    sargv[a] = NULL;

    double t0 = rp_mono_s();
    fprintf(stderr, "radprep: process: submitting an array of %d tasks to slurm\n", n);
    char sout[8192];
    int st = -1;
    int rc = rp_slurm_run(sargv, sout, sizeof sout, &st);
    /* --parsable: "JOBID" or "JOBID;CLUSTER" */
    char jid[64] = "";
    sscanf(sout, "%63[0-9]", jid);
    if (rc != 0 || !jid[0]) {
        code = rp_cli_fail(RP_CLI_EXIT_FAIL, "process", "sbatch failed: %s",
                           rc ? rp_strerror(rc) : sout);
        goto done;
    }
    if (st != 0) {
        code = rp_cli_fail(RP_CLI_EXIT_FAIL, "process", "sbatch failed: %s", sout);
        goto done;
    }
    fprintf(stderr, "radprep: process: array %s submitted, waiting for its tasks\n", jid);
    /* every task's state: one call, one line per task (pending tasks share one line, so
     * the array has ended when every task has a line of its own in an ended state) */
    snprintf(bin, sizeof bin, "%s/scontrol", e->bin_dir[0] ? e->bin_dir : "/usr/bin");
    const char *qargv[] = {bin, "-o", "show", "job", jid, NULL};
    size_t qsz = 4096 + (size_t)n * 4096;
    char *q = malloc(qsz);
    if (!q)
        goto nomem;
    for (int unknown = 0;;) {
        int qst = -1;
        if (rp_slurm_run(qargv, q, qsz, &qst) != 0 || qst != 0) {
            /* a controller restarting: wait for it; a job it forgot: give up after 10 min */
            if (++unknown > 600) {
                free(q);
                code = rp_cli_fail(RP_CLI_EXIT_FAIL, "process",
                                   "array %s: slurm does not "
                                   "answer about it any more",
                                   jid);
                goto done;
            }
            sleep(1);
            continue;
        }
        unknown = 0;
        int ended = 0;
        for (int i = 0; i < n; i++) {
            char key[64], state[64] = "";
            snprintf(key, sizeof key, "ArrayTaskId=%d ", i);
            const char *l = strstr(q, key), *js = l ? strstr(l, "JobState=") : NULL;
            rp_proc_result pr;
            if (js && sscanf(js, "JobState=%63s", state) == 1 &&
                rp_slurm_map_state(state, "0:0", 0, &pr) == 1)
                ended++;
        }
        if (ended == n)
            break;
        sleep(1);
    }
    double wall = rp_mono_s() - t0;
    cJSON *root = cJSON_CreateObject(), *tasks = cJSON_AddArrayToObject(root, "tasks");
    cJSON_AddStringToObject(root, "slurm_job", jid);
    cJSON_AddNumberToObject(root, "tasks_total", n);
    cJSON_AddNumberToObject(root, "wall_s", wall);
    int ok = 0;
    for (int i = 0; i < n; i++) {
        char key[64], state[64] = "UNKNOWN", ec[32] = "", runt[32] = "";
        snprintf(key, sizeof key, "ArrayTaskId=%d ", i);
        const char *l = strstr(q, key);
        if (l) {
            const char *bol = l;
            while (bol > q && bol[-1] != '\n')
                bol--;
            const char *js = strstr(bol, "JobState="), *es = strstr(bol, "ExitCode="),
                       *rs = strstr(bol, "RunTime=");
            if (js)
                sscanf(js, "JobState=%63s", state);
            if (es)
                sscanf(es, "ExitCode=%31s", ec);
            if (rs)
                sscanf(rs, "RunTime=%31s", runt);
        }
        cJSON *t = cJSON_CreateObject();
        cJSON_AddNumberToObject(t, "task", i);
        cJSON_AddStringToObject(t, "folder", dirs[i]);
        snprintf(p, sizeof p, "%s/task-%d", outabs, i);
        cJSON_AddStringToObject(t, "out", p);
        cJSON_AddStringToObject(t, "state", state);
        cJSON_AddStringToObject(t, "exit_code", ec);
        cJSON_AddStringToObject(t, "run_time", runt);
        cJSON_AddItemToArray(tasks, t);
        ok += strcmp(state, "COMPLETED") == 0;
        if (strcmp(state, "COMPLETED") != 0)
            fprintf(stderr, "radprep: process: task %d (%s) %s exit %s, see %s/task-%d.log\n", i,
                    dirs[i], state, ec, meta, i);
    }
    free(q);
    cJSON_AddNumberToObject(root, "tasks_completed", ok);
    cJSON_AddNumberToObject(root, "tasks_failed", n - ok);
    char *js = cJSON_Print(root);
    snprintf(p, sizeof p, "%s/summary.json", outabs);
    if (!js || write_text(p, js, 0640) != 0)
        fprintf(stderr, "radprep: process: cannot write %s\n", p);
    free(js);
    cJSON_Delete(root);
    printf("array %s: %d tasks, %d completed, %d failed, wall %.1f s, summary %s\n", jid, n, ok,
           n - ok, wall, p);
    code = ok == n ? RP_CLI_EXIT_OK : RP_CLI_EXIT_FAIL;
    goto done;
nomem:
    code = rp_cli_fail(RP_CLI_EXIT_FAIL, "process", "out of memory");
done:
    for (int i = 0; i < n; i++)
        free(dirs[i]);
    free(dirs);
    free(pass);
    return code;
}
