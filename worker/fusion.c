/* worker/fusion — a 'fuse' job: the member series versions of one fusion set, fused into
 * <outputs_dir>/<study>/fusion-<RULE>/v<k>/ (which set: sched/fusion.c decided). */
#include "worker/worker_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/common.h"
#include "pipeline/pipeline.h"
#include "store/store.h"

#define MOD "fusion"

typedef struct path_list {
    char **v;
    size_t n, cap;
} path_list;

static int add_path(path_list *l, const char *root, const char *rel)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 256;
        char **v = realloc(l->v, nc * sizeof *v);
        if (!v)
            return RP_ENOMEM;
        l->v = v;
        l->cap = nc;
    }
    if (asprintf(&l->v[l->n], "%s/%s", root, rel) < 0)
        return RP_ENOMEM;
    l->n++;
    return 0;
}

/* The files of every member ("T1=UID@V;T2=UID@V") received up to the job's creation (later
 * instances are a new version), and the members as JSON for the sidecar. RP_ENOENT when a
 * member has no instance left. */
static int member_files(rp_db *db, const char *store_root, const rp_db_job *job,
                        const char *members, path_list *paths, cJSON *jm)
{
    char buf[RP_FUSION_MAX_SEQ * 96];
    rp_strlcpy(buf, members, sizeof buf);
    char *save = NULL;
    int rc = 0;
    for (char *m = strtok_r(buf, ";", &save); m && rc == 0; m = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(m, '='), *at = strrchr(m, '@');
        if (!eq || !at || at < eq)
            return RP_EINTERNAL;
        *eq = *at = '\0';
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "sequence", m);
        cJSON_AddStringToObject(o, "series_uid", eq + 1);
        cJSON_AddNumberToObject(o, "series_version", atoi(at + 1));
        cJSON_AddItemToArray(jm, o);
        rp_instance_meta *inst = NULL;
        size_t n = 0, used = 0;
        if ((rc = rp_db_series_instances(db, eq + 1, &inst, &n)) != 0)
            break;
        for (size_t i = 0; i < n && rc == 0; i++) {
            if (job->created_at > 0 && inst[i].received_at > job->created_at)
                continue;
            rc = add_path(paths, store_root, inst[i].file_path);
            used++;
        }
        cJSON_AddNumberToObject(o, "instances", (double)used);
        free(inst);
        if (rc == 0 && used == 0) {
            RP_ERROR(MOD, "member series has no instances job=%lld series=%s", job->id, eq + 1);
            rc = RP_ENOENT;
        }
    }
    return rc;
}

int rp_worker_fuse(const rp_conf *c, rp_db *db, const char *store_root, const rp_db_job *job)
{
    const rp_conf_fusion *f = rp_conf_fusion_by_name(c, job->rule);
    const char *study = job->study_uid;
    double t0 = rp_mono_s();
    if (!f) {
        RP_ERROR(MOD, "job names a fusion rule the configuration lacks job=%lld rule=%s", job->id,
                 job->rule);
        return RP_JOB_EXIT_CONFIG;
    }
    char members[RP_FUSION_MAX_SEQ * 96];
    int rc = rp_db_fusion_get(db, study, job->rule, job->version, members, sizeof members);
    if (rc) {
        RP_ERROR(MOD, "fusion set unknown job=%lld study=%s rule=%s version=%d", job->id, study,
                 job->rule, job->version);
        return rc == RP_ENOENT ? RP_JOB_EXIT_GONE : RP_JOB_EXIT_FAIL;
    }
    if (rp_store_uid_safe(study) != 0)
        return RP_JOB_EXIT_BADINPUT;
    char root[RP_PATH_MAX], parent[RP_PATH_MAX + 200];
    rp_conf_outputs_dir(c, root, sizeof root);
    snprintf(parent, sizeof parent, "%s/%s/fusion-%s", root, study, f->name);

    path_list paths = {0};
    rp_publish pub;
    memset(&pub, 0, sizeof pub);
    pub.lock_fd = -1;
    rp_fusion_result res;
    memset(&res, 0, sizeof res);
    cJSON *node = cJSON_CreateObject();
    cJSON *jm = cJSON_AddArrayToObject(node, "members");
    cJSON_AddNumberToObject(node, "job", (double)job->id);
    cJSON_AddNumberToObject(node, "version", job->version);
    cJSON_AddStringToObject(node, "rule", f->name);
    if ((rc = member_files(db, store_root, job, members, &paths, jm)) != 0 ||
        (rc = rp_publish_begin(&pub, parent, job->version)) != 0)
        goto out;
    rp_process_opts o;
    rp_process_opts_init(&o);
    char *node_text = cJSON_PrintUnformatted(node);
    RP_INFO(MOD, "fusing job=%lld rule=%s study=%s version=%d files=%zu", job->id, f->name, study,
            job->version, paths.n);
    rc = rp_pipeline_fuse_files(f, (const char *const *)paths.v, paths.n, pub.tmp_dir, f->name,
                                &o, node_text, &res);
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
    if ((rc = rp_publish_commit(&pub, db, job->id, NULL)) != 0)
        goto out;
    if (job->state == RP_JOB_RUNNING) {
        rc = rp_db_job_finish(db, job->id, 1, 0, "exit 0", 0, 0, 0, NULL);
        if (rc == RP_EINVAL)
            rc = 0;
        if (rc)
            goto out;
    }
    char detail[2048];
    snprintf(detail, sizeof detail, "study=%s rule=%s version=%d job=%lld out=%s", study, f->name,
             job->version, job->id, pub.dir);
    rp_db_event_add(db, "fusion_done", detail);
    RP_INFO(MOD, "fusion done job=%lld rule=%s study=%s version=%d out=%s wall_s=%.3f", job->id,
            f->name, study, job->version, pub.dir, rp_mono_s() - t0);
out:
    rp_publish_end(&pub);
    for (size_t i = 0; i < paths.n; i++)
        free(paths.v[i]);
    free(paths.v);
    cJSON_Delete(node);
    rp_fusion_result_free(&res);
    /* a member sequence that is gone cannot come back by retrying */
    return rc == RP_ENOENT ? RP_JOB_EXIT_BADINPUT : rp_worker_exit_for(rc);
}
