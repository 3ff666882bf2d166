/* scp/fusion — study-level fusion in the node: decide when a study's sequences are all
 * there, queue one job per set of member versions, and run it. See scp/fusion.h. */
#include "sched/fusion.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/common.h"
#include "pipeline/pipeline.h"
#include "sched/supervisor.h"
#include "store/store.h"

#define MOD "fusion"

/* ---- deciding ------------------------------------------------------------------------------ */

/* Bits of the sequences the series matches (from its first instance's header); 0 on error. */
static unsigned series_bits(rp_db *db, const rp_conf_fusion *f, const char *store_root,
                            const rp_db_series_info *si)
{
    rp_instance_meta *inst = NULL;
    size_t n = 0;
    unsigned bits = 0;
    if (rp_db_series_instances(db, si->series_uid, &inst, &n) != 0 || n == 0) {
        free(inst);
        return 0;
    }
    char path[RP_PATH_MAX * 2], err[256];
    snprintf(path, sizeof path, "%s/%s", store_root, inst[0].file_path);
    if (rp_pipeline_fusion_match_file(f, path, &bits, err, sizeof err) != 0) {
        RP_WARN(MOD, "cannot read header series=%s file=%s reason=\"%s\"", si->series_uid, path,
                err);
        bits = 0;
    }
    free(inst);
    return bits;
}

static int check_rule(rp_db *db, const rp_conf *c, const rp_conf_fusion *f, const char *store_root,
                      const char *study_uid, const rp_db_series_info *ser, size_t n, int manual,
                      rp_fusion_check *out)
{
    int receiving = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(ser[i].state, "receiving") == 0)
            receiving++;
    if (receiving && !manual) {
        out->waiting++;
        snprintf(out->reason, sizeof out->reason, "fuse %s: %d series of the study still receiving",
                 f->name, receiving);
        return 0;
    }
    int pick[RP_FUSION_MAX_SEQ];
    unsigned *bits = calloc(n ? n : 1, sizeof *bits);
    if (!bits)
        return RP_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (strcmp(ser[i].state, "receiving") != 0)
            bits[i] = series_bits(db, f, store_root, &ser[i]);
    /* same assignment as the pipeline: sequence order, lowest series number not taken
     * (ser is sorted by series number) */
    char missing[200] = "", members[RP_FUSION_MAX_SEQ * 96] = "",
         present[RP_FUSION_MAX_SEQ * 96] = "";
    for (int s = 0; s < f->n_seq; s++) {
        pick[s] = -1;
        for (size_t i = 0; i < n && pick[s] < 0; i++) {
            if (!(bits[i] & (1u << s)))
                continue;
            int taken = 0;
            for (int q = 0; q < s && !taken; q++)
                taken = pick[q] == (int)i;
            if (!taken)
                pick[s] = (int)i;
        }
        size_t l;
        if (pick[s] < 0) {
            l = strlen(missing);
            snprintf(missing + l, sizeof missing - l, "%s%s", l ? "," : "", f->seq[s].name);
        } else {
            const rp_db_series_info *si = &ser[pick[s]];
            l = strlen(members);
            snprintf(members + l, sizeof members - l, "%s%s=%s@%d", l ? ";" : "", f->seq[s].name,
                     si->series_uid, si->version);
            l = strlen(present);
            snprintf(present + l, sizeof present - l, "%s%s=%d", l ? "," : "", f->seq[s].name,
                     si->series_number);
        }
    }
    free(bits);
    int rc = 0;
    if (missing[0]) {
        out->missing++;
        snprintf(out->reason, sizeof out->reason, "fuse %s: missing sequence %s", f->name, missing);
        char what[sizeof missing + sizeof members + 32];
        snprintf(what, sizeof what, "missing:%s;present:%s", missing, members);
        if (manual || rp_db_fusion_report_once(db, study_uid, f->name, what) == 0) {
            RP_WARN(MOD, "fuse: missing sequence %s rule=%s study=%s present=\"%s\"", missing,
                    f->name, study_uid, present);
            char detail[sizeof missing + sizeof present + 2 * 80];
            snprintf(detail, sizeof detail, "study=%s rule=%s missing=%s present=%s", study_uid,
                     f->name, missing, present[0] ? present : "-");
            rp_db_event_add(db, "fuse_missing", detail);
        }
        return 0;
    }
    int version = 0;
    long long job = 0;
    rc = rp_db_fusion_enqueue(db, study_uid, f->name, members, c->job_max_attempts, &version, &job);
    if (rc == RP_EEXIST) {
        out->already++;
        rc = 0;
    } else if (rc == 0) {
        out->queued++;
        RP_INFO(MOD, "fusion queued rule=%s study=%s version=%d job=%lld members=\"%s\"", f->name,
                study_uid, version, job, members);
        char detail[900];
        snprintf(detail, sizeof detail, "study=%s rule=%s version=%d job=%lld members=%s",
                 study_uid, f->name, version, job, members);
        rp_db_event_add(db, "fusion_queued", detail);
    } else {
        RP_ERROR(MOD, "cannot queue fusion rule=%s study=%s rc=%s", f->name, study_uid,
                 rp_strerror(rc));
        return rc;
    }
    out->last_job = job;
    out->last_version = version;
    return 0;
}

int rp_fusion_check_study(rp_db *db, const rp_conf *c, const char *store_root,
                          const char *study_uid, const char *rule_name, int manual,
                          rp_fusion_check *out)
{
    memset(out, 0, sizeof *out);
    if (rule_name && !rp_conf_fusion_by_name(c, rule_name)) {
        snprintf(out->reason, sizeof out->reason, "no [fusion %s] in the configuration", rule_name);
        return RP_ENOENT;
    }
    rp_db_series_info *ser = NULL;
    size_t n = 0;
    int rc = rp_db_study_series(db, study_uid, &ser, &n);
    if (rc)
        return rc;
    if (n == 0) {
        snprintf(out->reason, sizeof out->reason, "study %s is not in the index", study_uid);
        free(ser);
        return RP_ENOENT;
    }
    for (size_t i = 0; i < c->n_fusions && rc == 0; i++) {
        const rp_conf_fusion *f = &c->fusions[i];
        if (rule_name && strcmp(f->name, rule_name) != 0)
            continue;
        rc = check_rule(db, c, f, store_root, study_uid, ser, n, manual, out);
    }
    free(ser);
    return rc;
}

void rp_fusion_on_series_complete(rp_db *db, const rp_conf *c, const char *series_uid)
{
    if (!c || c->n_fusions == 0)
        return;
    rp_db_series_info si;
    rp_store *store = NULL;
    if (rp_db_series_get(db, series_uid, &si) != 0 || rp_store_open(c, &store) != 0)
        return;
    rp_fusion_check chk;
    int rc = rp_fusion_check_study(db, c, rp_store_root(store), si.study_uid, NULL, 0, &chk);
    if (rc)
        RP_WARN(MOD, "study check failed study=%s rc=%s", si.study_uid, rp_strerror(rc));
    rp_store_close(store);
}

/* ---- the worker ---------------------------------------------------------------------------- */

/* fsync every file below dir and dir itself: the version folder is whole after the rename */
static int sync_tree(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return RP_EIO;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[RP_PATH_MAX * 2];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode) && depth < 2) {
            rc = sync_tree(p, depth + 1);
        } else if (S_ISREG(st.st_mode)) {
            int fd = open(p, O_RDONLY | O_CLOEXEC);
            if (fd < 0 || fsync(fd) != 0)
                rc = RP_EIO;
            if (fd >= 0)
                close(fd);
        }
    }
    closedir(d);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) != 0)
        rc = RP_EIO;
    if (fd >= 0)
        close(fd);
    return rc;
}

static int record_in(rp_db *db, long long job_id, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return RP_EIO;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[RP_PATH_MAX * 2], hex[65];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (depth < 2)
                rc = record_in(db, job_id, p, depth + 1);
            continue;
        }
        const char *kind = strstr(e->d_name, ".nii")    ? "nifti"
                           : strstr(e->d_name, ".json") ? "json"
                                                        : "file";
        if ((rc = rp_sha256_file(p, hex)) != 0)
            break;
        rc = rp_db_output_add(db, job_id, kind, p, hex);
        if (rc == RP_EEXIST)
            rc = 0;
    }
    closedir(d);
    return rc;
}

static int exit_for(int rc)
{
    switch (rc) {
    case 0:
        return RP_JOB_EXIT_OK;
    case RP_ENOMEM:
        return RP_JOB_EXIT_OOM;
    case RP_ENOENT: /* a member sequence is gone */
    case RP_EPARSE:
    case RP_EUID:
    case RP_EGEOM:
    case RP_EDECODE:
    case RP_EUNSUPPORTED:
        return RP_JOB_EXIT_BADINPUT;
    case RP_ECONF:
        return RP_JOB_EXIT_CONFIG;
    default:
        return RP_JOB_EXIT_FAIL;
    }
}

int rp_fusion_job_run(const rp_conf *c, rp_db *db, const char *store_root, const rp_db_job *job)
{
    const char *rule = job->kind + 5; /* "fuse:RULE" */
    const rp_conf_fusion *f = rp_conf_fusion_by_name(c, rule);
    double t0 = rp_mono_s();
    if (!f) {
        RP_ERROR(MOD, "job names a fusion rule the configuration lacks job=%lld rule=%s", job->id,
                 rule);
        return RP_JOB_EXIT_CONFIG;
    }
    const char *study = job->series_uid;
    char members[RP_FUSION_MAX_SEQ * 96];
    int rc = rp_db_fusion_get(db, study, rule, job->series_version, members, sizeof members);
    if (rc) {
        RP_ERROR(MOD, "fusion set unknown job=%lld study=%s rule=%s version=%d", job->id, study,
                 rule, job->series_version);
        return rc == RP_ENOENT ? RP_JOB_EXIT_GONE : RP_JOB_EXIT_FAIL;
    }
    char root[RP_PATH_MAX], base[RP_PATH_MAX + 200], out_dir[RP_PATH_MAX + 300],
        tmp_dir[RP_PATH_MAX + 400] = "", lock_path[RP_PATH_MAX + 400];
    if (rp_store_uid_valid(study) != 0)
        return RP_JOB_EXIT_BADINPUT;
    rp_conf_outputs_dir(c, root, sizeof root);
    snprintf(base, sizeof base, "%s/%s/fusion-%s", root, study, f->name);
    snprintf(out_dir, sizeof out_dir, "%s/v%d", base, job->series_version);
    char **paths = NULL;
    size_t np = 0, cap = 0;
    int lock_fd = -1;
    rp_fusion_result res;
    memset(&res, 0, sizeof res);
    cJSON *node = cJSON_CreateObject();
    cJSON *jm = cJSON_AddArrayToObject(node, "members");
    cJSON_AddNumberToObject(node, "job", (double)job->id);
    cJSON_AddNumberToObject(node, "version", job->series_version);
    cJSON_AddStringToObject(node, "rule", f->name);
    /* members: "T1=UID@V;T2=UID@V" */
    char buf[sizeof members];
    rp_strlcpy(buf, members, sizeof buf);
    char *save = NULL;
    for (char *m = strtok_r(buf, ";", &save); m && rc == 0; m = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(m, '='), *at = strrchr(m, '@');
        if (!eq || !at || at < eq) {
            rc = RP_EINTERNAL;
            break;
        }
        *eq = *at = '\0';
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "sequence", m);
        cJSON_AddStringToObject(o, "series_uid", eq + 1);
        cJSON_AddNumberToObject(o, "series_version", atoi(at + 1));
        cJSON_AddItemToArray(jm, o);
        rp_instance_meta *inst = NULL;
        size_t n = 0;
        if ((rc = rp_db_series_instances(db, eq + 1, &inst, &n)) != 0)
            break;
        size_t used = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            /* what had arrived when the set was queued: later instances are a new version */
            if (job->created_at > 0 && inst[i].received_at > job->created_at)
                continue;
            if (np == cap) {
                size_t nc = cap ? cap * 2 : 256;
                char **pp = realloc(paths, nc * sizeof *pp);
                if (!pp) {
                    rc = RP_ENOMEM;
                    break;
                }
                paths = pp;
                cap = nc;
            }
            if (asprintf(&paths[np], "%s/%s", store_root, inst[i].file_path) < 0) {
                rc = RP_ENOMEM;
                break;
            }
            np++;
            used++;
        }
        cJSON_AddNumberToObject(o, "instances", (double)used);
        free(inst);
        if (rc == 0 && used == 0) {
            RP_ERROR(MOD, "member series has no instances job=%lld series=%s", job->id, eq + 1);
            rc = RP_ENOENT;
        }
    }
    if (rc)
        goto out;
    if ((rc = rp_mkdir_p(base, 0750)) != 0)
        goto out;
    snprintf(lock_path, sizeof lock_path, "%s/.v%d.lock", base, job->series_version);
    lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
        RP_ERROR(MOD, "version is being fused by another worker job=%lld lock=%s", job->id,
                 lock_path);
        rc = RP_EBUSY;
        goto out;
    }
    snprintf(tmp_dir, sizeof tmp_dir, "%s/.v%d.tmp.%d", base, job->series_version, (int)getpid());
    rp_rm_rf(tmp_dir);
    if (mkdir(tmp_dir, 0750) != 0) {
        rc = RP_EIO;
        tmp_dir[0] = '\0';
        goto out;
    }
    rp_process_opts o;
    rp_process_opts_init(&o);
    char *node_text = cJSON_PrintUnformatted(node);
    RP_INFO(MOD, "fusing job=%lld rule=%s study=%s version=%d files=%zu", job->id, f->name, study,
            job->series_version, np);
    rc = rp_pipeline_fuse_files(f, (const char *const *)paths, np, tmp_dir, f->name, &o, node_text,
                                &res);
    free(node_text);
    if (rc) {
        RP_ERROR(MOD, "fusion failed job=%lld rule=%s study=%s rc=%s reason=\"%s\"", job->id,
                 f->name, study, rp_strerror(rc), res.reason);
        char detail[1100];
        snprintf(detail, sizeof detail, "study=%s rule=%s job=%lld reason=\"%s\"", study, f->name,
                 job->id, res.reason);
        rp_db_event_add(db, rc == RP_ENOENT ? "fuse_missing" : "fusion_failed", detail);
        goto out;
    }
    if ((rc = sync_tree(tmp_dir, 0)) != 0 || (rc = rp_rm_rf(out_dir)) != 0)
        goto out;
    if (rename(tmp_dir, out_dir) != 0) {
        RP_ERROR(MOD, "rename failed from=%s to=%s errno=%d", tmp_dir, out_dir, errno);
        rc = RP_EIO;
        goto out;
    }
    tmp_dir[0] = '\0';
    int dfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    if ((rc = rp_db_job_set_running(db, job->id, 0, out_dir)) != 0 ||
        (rc = record_in(db, job->id, out_dir, 0)) != 0)
        goto out;
    if (strcmp(job->state, "running") == 0) {
        rc = rp_db_job_finish(db, job->id, 1, 0, "exit 0", 0, 0, NULL);
        if (rc == RP_EINVAL)
            rc = 0;
        if (rc)
            goto out;
    }
    char detail[2048];
    snprintf(detail, sizeof detail, "study=%s rule=%s version=%d job=%lld out=%s", study, f->name,
             job->series_version, job->id, out_dir);
    rp_db_event_add(db, "fusion_done", detail);
    RP_INFO(MOD, "fusion done job=%lld rule=%s study=%s version=%d out=%s wall_s=%.3f", job->id,
            f->name, study, job->series_version, out_dir, rp_mono_s() - t0);
out:
    if (tmp_dir[0])
        rp_rm_rf(tmp_dir);
    if (lock_fd >= 0)
        close(lock_fd);
    for (size_t i = 0; i < np; i++)
        free(paths[i]);
    free(paths);
    cJSON_Delete(node);
    rp_fusion_result_free(&res);
    return exit_for(rc);
}
