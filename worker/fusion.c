/* worker/fusion — a 'fuse' job: the member series versions of one fusion set, fused into
 * <outputs_dir>/<study>/fusion-<RULE>/v<k>/ (which set: sched/fusion.c decided). */
#include "worker/worker_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/common.h"
#include "pipeline/pipeline.h"

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

/* The files of every member (the node listed each member version's instances) and the
 * members as JSON for the sidecar. RP_ENOENT when a member has no instance left. */
static int member_files(const rp_job_spec *js, path_list *paths, cJSON *jm)
{
    int rc = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, js->members)
    {
        const char *uid = rp_job_str(m, "series_uid");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "series_version");
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "sequence", rp_job_str(m, "sequence"));
        cJSON_AddStringToObject(o, "series_uid", uid);
        cJSON_AddNumberToObject(o, "series_version", cJSON_IsNumber(v) ? v->valueint : 0);
        cJSON_AddItemToArray(jm, o);
        size_t used = 0;
        const cJSON *in;
        cJSON_ArrayForEach(in, cJSON_GetObjectItemCaseSensitive(m, "inputs"))
        {
            const char *file = rp_job_str(in, "file");
            if (!file[0] || strstr(file, "..") || file[0] == '/')
                return RP_EPARSE;
            if ((rc = add_path(paths, js->store_root, file)) != 0)
                return rc;
            used++;
        }
        cJSON_AddNumberToObject(o, "instances", (double)used);
        if (used == 0) {
            RP_ERROR(MOD, "member series has no instances job=%lld series=%s", js->id, uid);
            return RP_ENOENT;
        }
    }
    return rc;
}

void rp_worker_fuse(const rp_conf *c, const rp_job_spec *js, rp_publish *pub, rp_job_result *r)
{
    const char *study = js->study_uid;
    double t0 = rp_mono_s();
    const rp_conf_fusion *f = rp_conf_fusion_by_name(c, js->fusion_rule);
    if (!f) {
        RP_ERROR(MOD, "job names a fusion rule the configuration lacks job=%lld rule=%s", js->id,
                 js->fusion_rule);
        snprintf(r->reason, sizeof r->reason, "no [fusion %s] in the configuration",
                 js->fusion_rule);
        r->code = RP_JOB_EXIT_CONFIG;
        return;
    }
    path_list paths = {0};
    rp_fusion_result res;
    memset(&res, 0, sizeof res);
    int rc;
    cJSON *node = cJSON_CreateObject();
    cJSON *jm = cJSON_AddArrayToObject(node, "members");
    cJSON_AddNumberToObject(node, "job", (double)js->id);
    cJSON_AddNumberToObject(node, "version", js->version);
    cJSON_AddStringToObject(node, "rule", f->name);
    if ((rc = member_files(js, &paths, jm)) != 0 ||
        (rc = rp_publish_begin(pub, js->parent, js->version)) != 0)
        goto out;
    rp_process_opts o;
    rp_process_opts_init(&o);
    char *node_text = cJSON_PrintUnformatted(node);
    RP_INFO(MOD, "fusing job=%lld rule=%s study=%s version=%d files=%zu", js->id, f->name, study,
            js->version, paths.n);
    rc = rp_pipeline_fuse_files(f, (const char *const *)paths.v, paths.n, pub->tmp_dir, f->name,
                                &o, node_text, &res);
    free(node_text);
    if (rc) {
        RP_ERROR(MOD, "fusion failed job=%lld rule=%s study=%s rc=%s reason=\"%s\"", js->id,
                 f->name, study, rp_strerror(rc), res.reason);
        rp_strlcpy(r->reason, res.reason, sizeof r->reason);
        rp_strlcpy(r->event_kind, rc == RP_ENOENT ? "fuse_missing" : "fusion_failed",
                   sizeof r->event_kind);
        snprintf(r->event_detail, sizeof r->event_detail,
                 "study=%s rule=%s job=%lld reason=\"%s\"", study, f->name, js->id, res.reason);
        goto out;
    }
    if ((rc = rp_publish_commit(pub, &r->files)) != 0)
        goto out;
    r->published = 1;
    rp_strlcpy(r->event_kind, "fusion_done", sizeof r->event_kind);
    snprintf(r->event_detail, sizeof r->event_detail,
             "study=%s rule=%s version=%d job=%lld out=%s", study, f->name, js->version, js->id,
             pub->dir);
    RP_INFO(MOD, "fusion done job=%lld rule=%s study=%s version=%d out=%s wall_s=%.3f", js->id,
            f->name, study, js->version, pub->dir, rp_mono_s() - t0);
out:
    for (size_t i = 0; i < paths.n; i++)
        free(paths.v[i]);
    free(paths.v);
    cJSON_Delete(node);
    rp_fusion_result_free(&res);
    /* a member sequence that is gone cannot come back by retrying */
    r->code = rc == RP_ENOENT ? RP_JOB_EXIT_BADINPUT : rp_worker_exit_for(rc);
    if (rc && !r->reason[0])
        rp_strlcpy(r->reason, rp_strerror(rc), sizeof r->reason);
}
