/* cli/cmd_fuse — study-level commands:
 *   radprep fuse --rule NAME --study UID        queue the fusion of one study now
 *   radprep fit nyul RULE [--out MODEL.json] [--max N] [--steps "..."]
 *   radprep fit nyul --dir DIR... --out MODEL.json [--steps "foreground"] [--mask NAME] [--max N]
 *   radprep process DIR... --fusion NAME --out OUT
 * Exit status: 0 success, 1 the operation failed (one line of reason), 2 usage. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "common/common.h"
#include "db/db.h"
#include "pipeline/pipeline.h"
#include "sched/sched.h"
#include "store/store.h"

/* ---- file lists -------------------------------------------------------------------------- */

typedef struct file_list {
    char **v;
    size_t n, cap;
} file_list;

static int fl_add(file_list *fl, const char *p)
{
    if (fl->n == fl->cap) {
        size_t nc = fl->cap ? fl->cap * 2 : 256;
        char **v = realloc(fl->v, nc * sizeof *v);
        if (!v)
            return RP_ENOMEM;
        fl->v = v;
        fl->cap = nc;
    }
    if (!(fl->v[fl->n] = strdup(p)))
        return RP_ENOMEM;
    fl->n++;
    return 0;
}

static void fl_free(file_list *fl)
{
    for (size_t i = 0; i < fl->n; i++)
        free(fl->v[i]);
    free(fl->v);
    memset(fl, 0, sizeof *fl);
}

static file_list *g_walk; /* nftw has no user pointer; the CLI is single-threaded */

static int walk_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)ftw;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (flag == FTW_F && S_ISREG(sb->st_mode) && base[0] != '.')
        return fl_add(g_walk, path) ? 1 : 0;
    return 0;
}

/* Every regular file below each of `paths` (a file is taken as is). */
static int collect(const char *const *paths, int n, file_list *fl, const char *cmd)
{
    for (int i = 0; i < n; i++) {
        struct stat st;
        if (stat(paths[i], &st) != 0)
            return rp_cli_fail(RP_CLI_EXIT_USAGE, cmd, "%s: no such file or directory", paths[i]);
        g_walk = fl;
        if (S_ISDIR(st.st_mode) ? nftw(paths[i], walk_one, 16, FTW_PHYS) != 0
                                : fl_add(fl, paths[i]) != 0)
            return rp_cli_fail(RP_CLI_EXIT_FAIL, cmd, "cannot read %s", paths[i]);
    }
    if (fl->n == 0)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, cmd, "no files in the given folders");
    return 0;
}

/* ---- radprep process DIR --fusion NAME ------------------------------------------------------ */

int rp_cli_has_fusion_option(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--fusion") || !strncmp(argv[i], "--fusion=", 9))
            return 1;
    return 0;
}

int rp_cli_process_fusion(int argc, char **argv, const rp_conf *c)
{
    const char *out = NULL, *name = NULL;
    const char **inputs = calloc((size_t)argc + 1, sizeof *inputs);
    int nin = 0;
    rp_process_opts o;
    rp_process_opts_init(&o);
    if (!inputs)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "process", "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = rp_cli_opt_value(argc, argv, &i, "--out")) || (v = rp_cli_opt_value(argc, argv, &i, "-o")))
            out = v;
        else if ((v = rp_cli_opt_value(argc, argv, &i, "--fusion")))
            name = v;
        else if (!strcmp(argv[i], "--no-gzip"))
            o.gzip = 0;
        else if (argv[i][0] == '-') {
            free(inputs);
            return rp_cli_fail(RP_CLI_EXIT_USAGE, "process",
                               "unknown option '%s' with --fusion (usage: radprep process DIR... "
                               "--fusion NAME --out OUT [--no-gzip])",
                               argv[i]);
        } else
            inputs[nin++] = argv[i];
    }
    if (!out || !name || nin == 0) {
        free(inputs);
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "process",
                           "usage: radprep process DIR... --fusion NAME --out OUT");
    }
    const rp_conf_fusion *f = rp_conf_fusion_by_name(c, name);
    if (!f) {
        free(inputs);
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "process", "no [fusion %s] in the configuration (%s)",
                           name, c->source);
    }
    file_list fl = {0};
    int ex = collect(inputs, nin, &fl, "process");
    free(inputs);
    if (ex) {
        fl_free(&fl);
        return ex;
    }
    rp_fusion_result res;
    int rc =
        rp_pipeline_fuse_files(f, (const char *const *)fl.v, fl.n, out, f->name, &o, NULL, &res);
    fl_free(&fl);
    if (rc) {
        ex = rp_cli_fail(RP_CLI_EXIT_FAIL, "process", "%s", res.reason);
        rp_fusion_result_free(&res);
        return ex;
    }
    if (res.nifti[0])
        printf("%s\n", res.nifti);
    if (res.nnunet_dir[0])
        printf("%s/\n", res.nnunet_dir);
    printf("%s\n", res.sidecar);
    rp_fusion_result_free(&res);
    return 0;
}

/* ---- radprep fuse --rule NAME --study UID --------------------------------------------------- */

int rp_cli_fuse(int argc, char **argv, const rp_conf *c)
{
    const char *rule = NULL, *study = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = rp_cli_opt_value(argc, argv, &i, "--rule")))
            rule = v;
        else if ((v = rp_cli_opt_value(argc, argv, &i, "--study")))
            study = v;
        else if (!strcmp(argv[i], "--help")) {
            printf("usage: radprep fuse --rule NAME --study STUDY_UID\n"
                   "  queues the [fusion NAME] of the study's series in the index now (series\n"
                   "  still receiving are left out); the daemon runs the job, or run it with\n"
                   "  radprep process --job N\n");
            return 0;
        } else
            return rp_cli_fail(RP_CLI_EXIT_USAGE, "fuse", "unexpected argument '%s'", argv[i]);
    }
    if (!rule || !study)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "fuse",
                           "usage: radprep fuse --rule NAME --study UID");
    if (!rp_conf_fusion_by_name(c, rule))
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "fuse", "no [fusion %s] in the configuration (%s)",
                           rule, c->source);
    rp_db *db = NULL;
    int ex = rp_cli_open_db(c, "fuse", 1, &db);
    if (ex)
        return ex;
    rp_fusion_check chk;
    int rc = rp_fusion_check_study(db, c, study, rule, 1, &chk);
    rp_db_close(db);
    if (rc)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "fuse", "%s",
                           chk.reason[0] ? chk.reason : rp_cli_errstr(rc));
    if (chk.missing)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "fuse", "%s", chk.reason);
    if (chk.queued)
        printf("queued job %lld (fusion %s, study %s, version %d)\n", chk.last_job, rule, study,
               chk.last_version);
    else
        printf("already queued or done: job %lld (fusion %s, study %s, version %d)\n", chk.last_job,
               rule, study, chk.last_version);
    return 0;
}

/* ---- radprep fit nyul ------------------------------------------------------------------------ */

/* Split a rule's steps at its `nyul` step: the text before it, and the model / mask it
 * names. 0, or -1 when the rule has no nyul step. Steps are separated by blanks outside
 * parentheses. */
static int split_at_nyul(const char *steps, char *before, size_t bsz, char *model, size_t msz,
                         char *mask, size_t masksz)
{
    before[0] = model[0] = mask[0] = '\0';
    const char *p = steps;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            break;
        const char *s = p;
        int depth = 0;
        while (*p && (depth > 0 || (*p != ' ' && *p != '\t' && *p != '\n'))) {
            depth += *p == '(' ? 1 : *p == ')' ? -1 : 0;
            p++;
        }
        size_t len = (size_t)(p - s);
        if (len >= 4 && !strncasecmp(s, "nyul", 4) && (len == 4 || s[4] == '(' || s[4] == ' ')) {
            char tok[1024];
            snprintf(tok, sizeof tok, "%.*s", (int)len, s);
            /* nyul(model=PATH, mask=NAME) or nyul(PATH) */
            char *in = strchr(tok, '(');
            if (in) {
                char *end = strrchr(in, ')');
                if (end)
                    *end = '\0';
                char *save = NULL;
                int first = 1;
                for (char *a = strtok_r(in + 1, ",", &save); a; a = strtok_r(NULL, ",", &save)) {
                    while (*a == ' ')
                        a++;
                    if (!strncasecmp(a, "model=", 6))
                        rp_strlcpy(model, a + 6, msz);
                    else if (!strncasecmp(a, "mask=", 5))
                        rp_strlcpy(mask, a + 5, masksz);
                    else if (first && !strchr(a, '='))
                        rp_strlcpy(model, a, msz);
                    first = 0;
                }
                for (size_t k = strlen(model); k > 0 && model[k - 1] == ' '; k--)
                    model[k - 1] = '\0';
            }
            return 0;
        }
        size_t bl = strlen(before);
        snprintf(before + bl, bsz - bl, "%s%.*s", bl ? " " : "", (int)len, s);
    }
    return -1;
}

typedef struct uid_list {
    char (*v)[RP_UID_MAX + 1];
    size_t n, cap;
} uid_list;

static int collect_uid(void *user, int ncol, const char *const *names, const char *const *values,
                       const int *kinds)
{
    (void)kinds;
    uid_list *u = user;
    for (int i = 0; i < ncol; i++) {
        if (strcmp(names[i], "series_uid") != 0 || !values[i])
            continue;
        if (u->n == u->cap) {
            size_t nc = u->cap ? u->cap * 2 : 64;
            void *p = realloc(u->v, nc * sizeof *u->v);
            if (!p)
                return 1;
            u->v = p;
            u->cap = nc;
        }
        rp_strlcpy(u->v[u->n++], values[i], sizeof u->v[0]);
    }
    return 0;
}

/* Files of the complete series the index holds that `rule` matches (at most max series). */
static int rule_files(const rp_conf *c, const rp_conf_rule *rule, long long max, file_list *fl,
                      int *n_series)
{
    rp_db *db = NULL;
    int ex = rp_cli_open_db(c, "fit", 1, &db);
    if (ex)
        return ex;
    rp_store *store = NULL;
    if (rp_store_open(c, &store) != 0) {
        rp_db_close(db);
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "fit", "cannot open the store under %s", c->data_dir);
    }
    uid_list u = {0};
    rp_db_filter flt;
    memset(&flt, 0, sizeof flt);
    int rc = rp_db_ls(db, "series", &flt, collect_uid, &u);
    *n_series = 0;
    for (size_t i = 0; rc == 0 && i < u.n && (max <= 0 || *n_series < max); i++) {
        rp_db_series_info si;
        if (rp_db_series_get(db, u.v[i], &si) != 0 || si.state == RP_SERIES_RECEIVING)
            continue;
        const rp_conf_rule *m = rp_pipeline_match_rule(c, si.modality, si.body_part,
                                                       si.description, si.slice_thickness);
        if (!m || strcmp(m->name, rule->name) != 0)
            continue;
        rp_instance_meta *inst = NULL;
        size_t n = 0;
        if ((rc = rp_db_series_instances(db, si.series_uid, &inst, &n)) != 0)
            break;
        for (size_t k = 0; k < n && rc == 0; k++) {
            char p[RP_PATH_MAX * 2];
            snprintf(p, sizeof p, "%s/%s", rp_store_root(store), inst[k].file_path);
            rc = fl_add(fl, p);
        }
        free(inst);
        if (n)
            (*n_series)++;
    }
    free(u.v);
    rp_store_close(store);
    rp_db_close(db);
    if (rc)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "fit", "cannot read the index: %s", rp_cli_errstr(rc));
    if (*n_series == 0)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "fit",
                           "the index holds no complete series that rule %s matches", rule->name);
    return 0;
}

int rp_cli_fit(int argc, char **argv, const rp_conf *c)
{
    static const char usage[] =
        "usage: radprep fit nyul RULE [--out MODEL.json] [--max N] [--steps \"...\"]\n"
        "       radprep fit nyul --dir DIR... --out MODEL.json [--steps \"foreground\"] "
        "[--mask NAME] [--max N]";
    if (argc < 2 || strcmp(argv[1], "nyul") != 0) {
        if (argc >= 2 && !strcmp(argv[1], "--help")) {
            printf("%s\n", usage);
            return 0;
        }
        return rp_cli_fail(RP_CLI_EXIT_USAGE, "fit", "%s", usage);
    }
    const char *out = NULL, *rule_name = NULL, *steps = NULL, *mask = NULL;
    long long max = 0;
    const char **dirs = calloc((size_t)argc + 1, sizeof *dirs);
    int ndir = 0, in_dirs = 0;
    if (!dirs)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "fit", "out of memory");
    int ex = 0;
    for (int i = 2; i < argc && !ex; i++) {
        const char *v;
        if ((v = rp_cli_opt_value(argc, argv, &i, "--out")) || (v = rp_cli_opt_value(argc, argv, &i, "-o"))) {
            out = v;
            in_dirs = 0;
        } else if ((v = rp_cli_opt_value(argc, argv, &i, "--steps"))) {
            steps = v;
            in_dirs = 0;
        } else if ((v = rp_cli_opt_value(argc, argv, &i, "--mask"))) {
            mask = v;
            in_dirs = 0;
        } else if ((v = rp_cli_opt_value(argc, argv, &i, "--max"))) {
            if ((max = rp_cli_parse_count(v)) < 1)
                ex = rp_cli_fail(RP_CLI_EXIT_USAGE, "fit", "--max wants a positive count, got '%s'",
                                 v);
            in_dirs = 0;
        } else if (!strcmp(argv[i], "--dir")) {
            in_dirs = 1;
        } else if (!strncmp(argv[i], "--dir=", 6)) {
            dirs[ndir++] = argv[i] + 6;
            in_dirs = 1;
        } else if (argv[i][0] == '-') {
            ex = rp_cli_fail(RP_CLI_EXIT_USAGE, "fit", "unknown option '%s'\n%s", argv[i], usage);
        } else if (in_dirs) {
            dirs[ndir++] = argv[i];
        } else if (!rule_name) {
            rule_name = argv[i];
        } else {
            ex = rp_cli_fail(RP_CLI_EXIT_USAGE, "fit", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!ex && ((ndir > 0) == (rule_name != NULL)))
        ex = rp_cli_fail(RP_CLI_EXIT_USAGE, "fit", "give a RULE or --dir DIR...\n%s", usage);
    file_list fl = {0};
    char before[2048] = "", model[512] = "", rmask[64] = "";
    int n_series = 0;
    if (!ex && rule_name) {
        const rp_conf_rule *r = NULL;
        for (size_t i = 0; i < c->n_rules; i++)
            if (!strcmp(c->rules[i].name, rule_name))
                r = &c->rules[i];
        if (!r) {
            ex = rp_cli_fail(RP_CLI_EXIT_USAGE, "fit", "no [rule %s] in the configuration (%s)",
                             rule_name, c->source);
        } else if (split_at_nyul(r->steps, before, sizeof before, model, sizeof model, rmask,
                                 sizeof rmask) != 0 &&
                   !steps) {
            ex = rp_cli_fail(RP_CLI_EXIT_USAGE, "fit",
                             "rule %s has no nyul step (steps: %s); give --steps with what should "
                             "run before the landmarks",
                             rule_name, r->steps);
        } else {
            if (!out && model[0])
                out = model;
            if (!mask && rmask[0])
                mask = rmask;
            if (!steps)
                steps = before;
            if (!out)
                ex = rp_cli_fail(RP_CLI_EXIT_USAGE, "fit",
                                 "rule %s's nyul step names no model; give --out", rule_name);
            else
                ex = rule_files(c, r, max, &fl, &n_series);
        }
    } else if (!ex) {
        if (!out)
            ex = rp_cli_fail(RP_CLI_EXIT_USAGE, "fit", "--out MODEL.json is required with --dir");
        else
            ex = collect(dirs, ndir, &fl, "fit");
        if (!steps)
            steps = "foreground";
    }
    free(dirs);
    if (ex) {
        fl_free(&fl);
        return ex;
    }
    if (steps && steps[0]) {
        char err[512];
        if (rp_pipeline_check_recipe(steps, err, sizeof err) != 0) {
            fl_free(&fl);
            return rp_cli_fail(RP_CLI_EXIT_USAGE, "fit", "steps: %s", err);
        }
    }
    rp_nyul_fit_result res;
    int rc = rp_pipeline_fit_nyul((const char *const *)fl.v, fl.n, steps, mask,
                                  max > 0 ? (size_t)max : 0, out, &res);
    fl_free(&fl);
    if (rc)
        return rp_cli_fail(RP_CLI_EXIT_FAIL, "fit", "%s", res.reason);
    printf("model %s: %d series, steps \"%s\", mask %s\n  standard:", out, res.n_series,
           steps ? steps : "", mask && mask[0] ? mask : "brain|foreground|head|value>0");
    for (int i = 0; i < res.n_landmarks; i++)
        printf(" %.3f", res.standard[i]);
    printf("\n");
    return 0;
}
