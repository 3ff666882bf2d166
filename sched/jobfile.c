/* sched/jobfile — the node's half of the one way a job reports: before a job runs anywhere
 * the node writes its job file (everything the worker needs, from the index), and when the
 * job has ended it records the worker's result manifest in the index. A worker never opens
 * the database (docs/cluster.md has both formats). */
#include "sched/sched.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "outbox/outbox.h"
#include "store/store.h"

#define MOD "jobfile"

int rp_jobfile_path(const char *data_dir, long long job_id, char *buf, size_t bufsz)
{
    if (snprintf(buf, bufsz, "%s/jobs/job-%lld.json", data_dir, job_id) >= (int)bufsz)
        return RP_EINVAL;
    return 0;
}

/* Write text to path through path.tmp: written, fsynced, renamed, the folder fsynced, so that
 * a reader on any host sees the whole file or none (rename is atomic on NFS, Lustre, BeeGFS). */
static int write_atomic(const char *path, const char *text)
{
    char tmp[RP_PATH_MAX + 32];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        return RP_EINVAL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) {
        RP_ERROR(MOD, "cannot write path=%s errno=%d", tmp, errno);
        return RP_EIO;
    }
    size_t n = strlen(text), off = 0;
    while (off < n) {
        ssize_t w = write(fd, text + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    int ok = off == n && fsync(fd) == 0;
    ok &= close(fd) == 0;
    if (!ok || rename(tmp, path) != 0) {
        RP_ERROR(MOD, "cannot write path=%s errno=%d", path, errno);
        unlink(tmp);
        return RP_EIO;
    }
    char dir[RP_PATH_MAX + 32];
    rp_strlcpy(dir, path, sizeof dir);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        rp_fsync_path(dir, 1);
    }
    return 0;
}

/* The instances of one series version (received up to the job's creation: a later instance
 * reopened the series and belongs to the next version) as the job file's list. */
static int add_inputs(rp_db *db, const char *series_uid, double created_at, cJSON *arr,
                      size_t *n_used)
{
    rp_instance_meta *inst = NULL;
    size_t n = 0;
    *n_used = 0;
    int rc = rp_db_series_instances(db, series_uid, &inst, &n);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (created_at > 0 && inst[i].received_at > created_at)
            continue;
        cJSON *o = cJSON_CreateObject();
        if (!o) {
            free(inst);
            return RP_ENOMEM;
        }
        cJSON_AddStringToObject(o, "sop_instance_uid", inst[i].sop_instance_uid);
        cJSON_AddNumberToObject(o, "instance_number", inst[i].instance_number);
        cJSON_AddStringToObject(o, "file", inst[i].file_path);
        cJSON_AddStringToObject(o, "sha256", inst[i].file_sha256);
        cJSON_AddItemToArray(arr, o);
        (*n_used)++;
    }
    free(inst);
    return 0;
}

/* A 'process' job: the series, its version's instances, the rule the node chose. */
static int plan_process(rp_db *db, const rp_conf *c, const rp_db_job *job, cJSON *root,
                        char *parent, size_t parentsz, rp_job_resources *res, char *why,
                        size_t whysz)
{
    rp_db_series_info si;
    int rc = rp_db_series_get(db, job->series_uid, &si);
    if (rc) {
        snprintf(why, whysz, "series gone (%s)", rp_strerror(rc));
        return rc;
    }
    if (rp_store_uid_safe(si.study_uid) != 0 || rp_store_uid_safe(si.series_uid) != 0) {
        snprintf(why, whysz, "unsafe UID in the index");
        return RP_EUID;
    }
    char root_out[RP_PATH_MAX];
    rp_conf_outputs_dir(c, root_out, sizeof root_out);
    if (snprintf(parent, parentsz, "%s/%s/%s", root_out, si.study_uid, si.series_uid) >=
        (int)parentsz)
        return RP_EINVAL;
    const rp_conf_rule *rule = rp_conf_match_rule(c, si.modality, si.body_part, si.description,
                                                  si.slice_thickness);
    char pulled[64]; /* a pull that named a rule (pull --rule, [pull] rule) chose it */
    if (rp_db_pull_rule(db, si.series_uid, pulled, sizeof pulled) == 0)
        for (size_t i = 0; i < c->n_rules; i++)
            if (strcmp(c->rules[i].name, pulled) == 0)
                rule = &c->rules[i];
    cJSON_AddStringToObject(root, "series_uid", si.series_uid);
    cJSON_AddStringToObject(root, "study_uid", si.study_uid);
    cJSON_AddStringToObject(root, "modality", si.modality);
    if (rule) {
        cJSON *r = cJSON_AddObjectToObject(root, "rule");
        cJSON_AddStringToObject(r, "name", rule->name);
        cJSON_AddStringToObject(r, "recipe", rule->steps);
        cJSON_AddStringToObject(r, "outputs", rule->outputs);
        cJSON_AddStringToObject(r, "overlay_caption", rule->overlay_caption);
        cJSON_AddStringToObject(r, "send_to", rule->send_to);
        cJSON_AddStringToObject(r, "philips_scaling", rule->philips_float ? "float" : "display");
        res->cpus = rule->cpus_per_task;
        res->mem_mb = rule->mem_mb;
        res->time_limit_s = rule->time_limit_s;
    } else {
        cJSON_AddNullToObject(root, "rule");
    }
    cJSON *inputs = cJSON_AddArrayToObject(root, "inputs");
    size_t used = 0;
    if ((rc = add_inputs(db, si.series_uid, job->created_at, inputs, &used)) != 0)
        return rc;
    if (used == 0) {
        snprintf(why, whysz, "series has no instances");
        return RP_EPARSE;
    }
    return 0;
}

/* A 'fuse' job: the member series versions ("T1=UID@V;T2=UID@V") and their files. */
static int plan_fuse(rp_db *db, const rp_conf *c, const rp_db_job *job, cJSON *root,
                     char *parent, size_t parentsz, char *why, size_t whysz)
{
    char members[RP_FUSION_MAX_SEQ * 96];
    int rc = rp_db_fusion_get(db, job->study_uid, job->rule, job->version, members,
                              sizeof members);
    if (rc) {
        snprintf(why, whysz, "fusion set unknown (%s)", rp_strerror(rc));
        return rc;
    }
    if (rp_store_uid_safe(job->study_uid) != 0) {
        snprintf(why, whysz, "unsafe UID in the index");
        return RP_EUID;
    }
    char root_out[RP_PATH_MAX];
    rp_conf_outputs_dir(c, root_out, sizeof root_out);
    if (snprintf(parent, parentsz, "%s/%s/fusion-%s", root_out, job->study_uid, job->rule) >=
        (int)parentsz)
        return RP_EINVAL;
    cJSON_AddStringToObject(root, "study_uid", job->study_uid);
    cJSON_AddStringToObject(root, "fusion_rule", job->rule);
    cJSON *jm = cJSON_AddArrayToObject(root, "members");
    char *save = NULL;
    for (char *m = strtok_r(members, ";", &save); m; m = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(m, '='), *at = strrchr(m, '@');
        if (!eq || !at || at < eq)
            return RP_EINTERNAL;
        *eq = *at = '\0';
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(jm, o);
        cJSON_AddStringToObject(o, "sequence", m);
        cJSON_AddStringToObject(o, "series_uid", eq + 1);
        cJSON_AddNumberToObject(o, "series_version", atoi(at + 1));
        size_t used = 0;
        if ((rc = add_inputs(db, eq + 1, job->created_at, cJSON_AddArrayToObject(o, "inputs"),
                             &used)) != 0)
            return rc;
        /* an empty member is the worker's to report (fuse_missing), as before */
    }
    return 0;
}

int rp_jobfile_write(rp_db *db, const rp_conf *c, const char *data_dir, const rp_db_job *job,
                     rp_job_resources *res, char *why, size_t whysz)
{
    memset(res, 0, sizeof *res);
    why[0] = '\0';
    char store_root[RP_PATH_MAX], abs[RP_PATH_MAX], parent[RP_PATH_MAX + 256];
    char path[RP_PATH_MAX + 64], jobs_dir[RP_PATH_MAX + 16];
    if (!realpath(data_dir, abs) ||
        snprintf(store_root, sizeof store_root, "%s/store", abs) >= (int)sizeof store_root ||
        rp_jobfile_path(data_dir, job->id, path, sizeof path) != 0)
        return RP_EINVAL;
    snprintf(jobs_dir, sizeof jobs_dir, "%s/jobs", data_dir);
    int rc = rp_mkdir_p(jobs_dir, 0750);
    if (rc)
        return rc;
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return RP_ENOMEM;
    cJSON_AddStringToObject(root, "format", RP_JOBFILE_FORMAT);
    cJSON_AddStringToObject(root, "software", "radprep " RP_VERSION);
    cJSON_AddNumberToObject(root, "job", (double)job->id);
    cJSON_AddStringToObject(root, "kind", rp_job_kind_name(job->kind));
    cJSON_AddNumberToObject(root, "version", job->version);
    cJSON_AddNumberToObject(root, "attempt", job->attempts);
    cJSON_AddNumberToObject(root, "created_at", job->created_at);
    cJSON_AddStringToObject(root, "store_root", store_root);
    if (job->kind == RP_JOB_KIND_FUSE)
        rc = plan_fuse(db, c, job, root, parent, sizeof parent, why, whysz);
    else
        rc = plan_process(db, c, job, root, parent, sizeof parent, res, why, whysz);
    if (rc == 0) {
        char dir[sizeof parent + 32], manifest[sizeof parent + 48];
        snprintf(dir, sizeof dir, "%s/v%d", parent, job->version);
        snprintf(manifest, sizeof manifest, "%s/.v%d.result.json", parent, job->version);
        cJSON_AddStringToObject(root, "output_parent", parent);
        cJSON_AddStringToObject(root, "output_dir", dir);
        cJSON_AddStringToObject(root, "manifest", manifest);
        cJSON *r = cJSON_AddObjectToObject(root, "resources");
        cJSON_AddNumberToObject(r, "cpus_per_task", res->cpus);
        cJSON_AddNumberToObject(r, "mem_mb", (double)res->mem_mb);
        cJSON_AddNumberToObject(r, "time_limit_s", res->time_limit_s);
        char *text = cJSON_Print(root);
        rc = text ? write_atomic(path, text) : RP_ENOMEM;
        free(text);
    }
    cJSON_Delete(root);
    if (rc && !why[0])
        snprintf(why, whysz, "cannot write the job file (%s)", rp_strerror(rc));
    return rc;
}

void rp_jobfile_remove(const char *data_dir, long long job_id)
{
    char path[RP_PATH_MAX + 64];
    if (rp_jobfile_path(data_dir, job_id, path, sizeof path) == 0)
        unlink(path);
}

/* Parse a JSON file; NULL (RP_ENOENT / RP_EPARSE in *rc) when absent or malformed. */
static cJSON *read_json(const char *path, int *rc)
{
    char *text = NULL;
    size_t len = 0;
    if ((*rc = rp_read_file(path, &text, &len)) != 0)
        return NULL;
    cJSON *j = cJSON_Parse(text);
    free(text);
    *rc = j ? 0 : RP_EPARSE;
    return j;
}

static const char *jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double jnum(const cJSON *o, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

/* The manifest of this job's attempt (NULL and *rc when none: absent, malformed, or left by
 * another attempt). */
static cJSON *load_manifest(const char *data_dir, const rp_db_job *job, int *rc, char *why,
                            size_t whysz)
{
    char path[RP_PATH_MAX + 64];
    rp_jobfile_path(data_dir, job->id, path, sizeof path);
    cJSON *jf = read_json(path, rc);
    if (!jf) {
        snprintf(why, whysz, "job file unreadable (%s)", rp_strerror(*rc));
        return NULL;
    }
    char mpath[RP_PATH_MAX + 64];
    rp_strlcpy(mpath, jstr(jf, "manifest"), sizeof mpath);
    cJSON_Delete(jf);
    cJSON *m = mpath[0] ? read_json(mpath, rc) : NULL;
    if (!m) {
        if (!mpath[0])
            *rc = RP_EPARSE;
        snprintf(why, whysz, "no result manifest (%s)", rp_strerror(*rc));
        return NULL;
    }
    if ((long long)jnum(m, "job", -1) != job->id || (int)jnum(m, "attempt", -1) != job->attempts) {
        snprintf(why, whysz, "no result manifest of attempt %d", job->attempts);
        cJSON_Delete(m);
        *rc = RP_ENOENT;
        return NULL;
    }
    *rc = 0;
    return m;
}

/* The outputs the manifest lists, recorded (each one checked on disk: its size, as close-to-
 * open consistency guarantees after the job ended). Idempotent. */
static int record_outputs(rp_db *db, const rp_db_job *job, const cJSON *m, int *n, char *why,
                          size_t whysz)
{
    const char *dir = jstr(m, "output_dir");
    int rc = rp_db_job_set_running(db, job->id, 0, dir);
    if (rc)
        return rc;
    const cJSON *f;
    cJSON_ArrayForEach(f, cJSON_GetObjectItemCaseSensitive(m, "files"))
    {
        const char *p = jstr(f, "path"), *sha = jstr(f, "sha256");
        struct stat st;
        if (!p[0] || strlen(sha) != 64 || stat(p, &st) != 0 ||
            (double)st.st_size != jnum(f, "size", -1)) {
            snprintf(why, whysz, "output missing or changed: %s", p);
            return RP_EIO;
        }
        rc = rp_db_output_add(db, job->id, jstr(f, "kind"), p, sha);
        if (rc == RP_EEXIST)
            rc = 0; /* recorded by an earlier look at the same manifest */
        if (rc)
            return rc;
        (*n)++;
    }
    return 0;
}

int rp_jobfile_record(rp_db *db, const rp_conf *c, const char *data_dir, const rp_db_job *job,
                      int exited_ok, char *why, size_t whysz)
{
    why[0] = '\0';
    int rc;
    cJSON *m = load_manifest(data_dir, job, &rc, why, whysz);
    if (!m)
        return exited_ok ? rc : 0;
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(m, "event");
    int ok = strcmp(jstr(m, "status"), "ok") == 0;
    if (!exited_ok || !ok) {
        /* a failure: what the worker had to say goes into the audit trail */
        if (cJSON_IsObject(ev) && jstr(ev, "kind")[0])
            rp_db_event_add(db, jstr(ev, "kind"), jstr(ev, "detail"));
        if (exited_ok)
            snprintf(why, whysz, "result manifest says failed: %s", jstr(m, "reason"));
        cJSON_Delete(m);
        return exited_ok ? RP_EINVAL : 0;
    }
    int n = 0;
    if ((rc = record_outputs(db, job, m, &n, why, whysz)) != 0)
        goto out;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(m, "derived");
    const char *send_to = jstr(d, "send_to"), *ddir = jstr(d, "dir");
    if (send_to[0] && ddir[0]) {
        /* rows are idempotent: recording the same manifest twice never sends twice */
        size_t queued = 0;
        if ((rc = rp_outbox_enqueue_dir(db, c, send_to, ddir, &queued)) != 0) {
            snprintf(why, whysz, "cannot queue derived instances for %s (%s)", send_to,
                     rp_strerror(rc));
            goto out;
        }
        RP_INFO(MOD, "derived instances queued job=%lld send_to=\"%s\" rows=%zu", job->id,
                send_to, queued);
    }
    if (cJSON_IsObject(ev) && jstr(ev, "kind")[0])
        rp_db_event_add(db, jstr(ev, "kind"), jstr(ev, "detail"));
    RP_INFO(MOD, "outputs recorded job=%lld attempt=%d n=%d dir=%s", job->id, job->attempts, n,
            jstr(m, "output_dir"));
out:
    cJSON_Delete(m);
    return rc;
}
