/* worker/job — `radprep process --job N`: one job, in its own process. See worker/worker.h. */
#include "worker/worker_internal.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "pipeline/pipeline.h"

/* ---- the test-only fault hook ---- */

/* after_lock: 0 at job start (abort, segv, oom, hang, fail), 1 once the version's lock is
 * held (slow), so that a test can meet a worker that holds its version. */
static void test_fault(const char *series_uid, int after_lock)
{
    const char *f = getenv("RP_TEST_JOB_FAULT");
    if (!f || !*f)
        return;
    /* "MODE", "MODE@SERIES_UID" or several of those separated by commas */
    char mode[16] = "";
    for (const char *p = f; *p && !mode[0];) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *at = memchr(p, '@', len);
        size_t ml = at ? (size_t)(at - p) : len;
        size_t ul = at ? len - ml - 1 : 0;
        if (ml < sizeof mode &&
            (!at || (strlen(series_uid) == ul && strncmp(at + 1, series_uid, ul) == 0))) {
            memcpy(mode, p, ml);
            mode[ml] = '\0';
        }
        p += len + (comma ? 1 : 0);
    }
    if (!mode[0] || (strcmp(mode, "slow") == 0) != (after_lock != 0))
        return;
    RP_WARN("job", "test fault injected mode=%s series=%s", mode, series_uid);
    if (strcmp(mode, "abort") == 0) {
        abort();
    } else if (strcmp(mode, "segv") == 0) {
        raise(SIGSEGV);
    } else if (strcmp(mode, "fail") == 0) {
        exit(RP_JOB_EXIT_FAIL);
    } else if (strcmp(mode, "slow") == 0) {
        sleep(3); /* then work normally: lets a test act while a job runs */
    } else if (strcmp(mode, "hang") == 0) {
        for (;;)
            pause();
    } else if (strcmp(mode, "oom") == 0) {
        /* Allocate and touch without bound: the memory limit must stop us. */
        size_t total = 0;
        for (;;) {
            size_t chunk = 32u << 20;
            char *p = malloc(chunk);
            if (!p) {
                RP_ERROR("job", "out of memory allocated_mb=%zu", total >> 20);
                exit(RP_JOB_EXIT_OOM);
            }
            memset(p, 0xA5, chunk);
            total += chunk;
        }
    }
}

/* ---- the job file ---- */

const char *rp_job_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double job_num(const cJSON *o, const char *key, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

void rp_job_spec_free(rp_job_spec *js)
{
    cJSON_Delete(js->root);
    js->root = NULL;
}

int rp_job_spec_load(const char *path, rp_job_spec *js)
{
    memset(js, 0, sizeof *js);
    char *text = NULL;
    size_t len = 0;
    int rc = rp_read_file(path, &text, &len);
    if (rc)
        return rc;
    js->root = cJSON_Parse(text);
    free(text);
    const cJSON *r = js->root;
    if (!r || strcmp(rp_job_str(r, "format"), "radprep-job/1") != 0) {
        RP_ERROR("job", "job file malformed or of another format path=%s", path);
        rp_job_spec_free(js);
        return RP_EPARSE;
    }
    js->id = (long long)job_num(r, "job", -1);
    js->attempt = (int)job_num(r, "attempt", 0);
    js->version = (int)job_num(r, "version", 0);
    js->created_at = job_num(r, "created_at", 0);
    js->fuse = strcmp(rp_job_str(r, "kind"), "fuse") == 0;
    js->series_uid = rp_job_str(r, "series_uid");
    js->study_uid = rp_job_str(r, "study_uid");
    js->modality = rp_job_str(r, "modality");
    js->store_root = rp_job_str(r, "store_root");
    js->parent = rp_job_str(r, "output_parent");
    js->out_dir = rp_job_str(r, "output_dir");
    js->manifest = rp_job_str(r, "manifest");
    js->rule = cJSON_GetObjectItemCaseSensitive(r, "rule");
    if (!cJSON_IsObject(js->rule))
        js->rule = NULL;
    js->inputs = cJSON_GetObjectItemCaseSensitive(r, "inputs");
    js->fusion_rule = rp_job_str(r, "fusion_rule");
    js->members = cJSON_GetObjectItemCaseSensitive(r, "members");
    if (js->id <= 0 || js->version < 1 || !js->store_root[0] || !js->parent[0] ||
        !js->manifest[0] || (js->fuse ? !cJSON_IsArray(js->members) || !js->fusion_rule[0]
                                      : !cJSON_IsArray(js->inputs) || !js->series_uid[0])) {
        RP_ERROR("job", "job file lacks what the job needs path=%s", path);
        rp_job_spec_free(js);
        return RP_EPARSE;
    }
    return 0;
}

/* ---- small file helpers ---- */

static int write_file_durable(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return RP_EIO;
    size_t n = strlen(text);
    int rc = fwrite(text, 1, n, f) == n ? 0 : RP_EIO;
    if (fflush(f) != 0 || fsync(fileno(f)) != 0)
        rc = RP_EIO;
    if (fclose(f) != 0)
        rc = RP_EIO;
    return rc;
}

/* The result manifest: written beside the version (tmp, fsync, rename, fsync the folder), so
 * that the node, on whichever host, reads all of it or nothing. */
static int write_manifest(const rp_job_spec *js, const rp_job_result *r, double wall_s)
{
    cJSON *m = cJSON_CreateObject();
    if (!m)
        return RP_ENOMEM;
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    cJSON_AddStringToObject(m, "format", "radprep-result/1");
    cJSON_AddStringToObject(m, "software", "radprep " RP_VERSION);
    cJSON_AddNumberToObject(m, "job", (double)js->id);
    cJSON_AddNumberToObject(m, "attempt", js->attempt);
    cJSON_AddStringToObject(m, "kind", js->fuse ? "fuse" : "process");
    cJSON_AddNumberToObject(m, "version", js->version);
    cJSON_AddStringToObject(m, "status", r->code == RP_JOB_EXIT_OK ? "ok" : "failed");
    cJSON_AddNumberToObject(m, "exit_code", r->code);
    cJSON_AddStringToObject(m, "reason", r->reason);
    cJSON_AddStringToObject(m, "host", host);
    cJSON_AddNumberToObject(m, "wall_s", wall_s);
    cJSON_AddStringToObject(m, "output_dir", r->published ? js->out_dir : "");
    cJSON *files = cJSON_AddArrayToObject(m, "files");
    for (size_t i = 0; i < r->files.n; i++) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "path", r->files.v[i].path);
        cJSON_AddStringToObject(f, "kind", r->files.v[i].kind);
        cJSON_AddNumberToObject(f, "size", (double)r->files.v[i].size);
        cJSON_AddStringToObject(f, "sha256", r->files.v[i].sha256);
        cJSON_AddItemToArray(files, f);
    }
    if (r->qc)
        cJSON_AddItemReferenceToObject(m, "qc", r->qc);
    cJSON *d = cJSON_AddObjectToObject(m, "derived");
    cJSON_AddStringToObject(d, "send_to", r->send_to);
    cJSON_AddStringToObject(d, "dir", r->derived_dir);
    if (r->event_kind[0]) {
        cJSON *e = cJSON_AddObjectToObject(m, "event");
        cJSON_AddStringToObject(e, "kind", r->event_kind);
        cJSON_AddStringToObject(e, "detail", r->event_detail);
    }
    char *text = cJSON_Print(m);
    cJSON_Delete(m);
    if (!text)
        return RP_ENOMEM;
    char tmp[RP_PATH_MAX + 32];
    int rc = RP_EINVAL;
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", js->manifest, (int)getpid()) < (int)sizeof tmp &&
        (rc = write_file_durable(tmp, text)) == 0 && rename(tmp, js->manifest) != 0)
        rc = RP_EIO;
    free(text);
    if (rc) {
        unlink(tmp);
        RP_ERROR("job", "cannot write the result manifest job=%lld path=%s rc=%s", js->id,
                 js->manifest, rp_strerror(rc));
        return rc;
    }
    rp_fsync_path(js->parent, 1);
    return 0;
}

/* The processing itself, into tmp_dir: every input of this version goes through the
 * pipeline with the recipe of the node's rule; series.json says what was taken (instances,
 * rule, recipe) and how it went. */
static int process_into(const rp_conf *c, const rp_job_spec *js, const char *tmp_dir,
                        rp_job_result *r)
{
    int rc = 0;
    size_t n = (size_t)cJSON_GetArraySize(js->inputs);
    char **paths = calloc(n ? n : 1, sizeof *paths);
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_CreateArray();
    rp_process_result res;
    memset(&res, 0, sizeof res);
    if (!paths || !root || !arr) {
        rc = RP_ENOMEM;
        cJSON_Delete(arr);
        goto out;
    }
    cJSON_AddStringToObject(root, "software", "radprep " RP_VERSION);
    cJSON_AddStringToObject(root, "study_uid", js->study_uid);
    cJSON_AddStringToObject(root, "series_uid", js->series_uid);
    cJSON_AddStringToObject(root, "modality", js->modality);
    cJSON_AddNumberToObject(root, "version", js->version);
    cJSON_AddNumberToObject(root, "job", (double)js->id);
    cJSON_AddNumberToObject(root, "instances", (double)n);
    cJSON_AddItemToObject(root, "files", arr);
    size_t i = 0;
    const cJSON *in;
    cJSON_ArrayForEach(in, js->inputs)
    {
        const char *file = rp_job_str(in, "file");
        if (!file[0] || strstr(file, "..") || file[0] == '/') {
            rc = RP_EPARSE; /* the store keeps relative paths below its root, nothing else */
            goto out;
        }
        if (asprintf(&paths[i], "%s/%s", js->store_root, file) < 0) {
            paths[i] = NULL;
            rc = RP_ENOMEM;
            goto out;
        }
        i++;
        cJSON *o = cJSON_CreateObject();
        if (!o) {
            rc = RP_ENOMEM;
            goto out;
        }
        cJSON_AddStringToObject(o, "sop_instance_uid", rp_job_str(in, "sop_instance_uid"));
        cJSON_AddNumberToObject(o, "instance_number", job_num(in, "instance_number", -1));
        cJSON_AddStringToObject(o, "file", file);
        cJSON_AddStringToObject(o, "sha256", rp_job_str(in, "sha256"));
        cJSON_AddItemToArray(arr, o);
    }

    /* The node's rule chooses the recipe (none: plain conversion). */
    const cJSON *rule = js->rule;
    const char *recipe = rule ? rp_job_str(rule, "recipe") : "";
    const char *caption = rule ? rp_job_str(rule, "overlay_caption") : "";
    const char *outputs = rule ? rp_job_str(rule, "outputs") : "";
    const char *rule_name = rule ? rp_job_str(rule, "name") : "";
    rp_process_opts o;
    rp_process_opts_init(&o);
    o.recipe = recipe[0] ? recipe : NULL;
    /* The rule's "dicom"/"seg"/"overlay"/"sr" outputs go to <version>/dicom/, which the node
     * queues for sending (each destination gets the kinds its [peer] results key names). */
    o.outputs = rule ? outputs : NULL;
    o.rule_name = rule ? rule_name : NULL;
    o.philips_float = rule && strcmp(rp_job_str(rule, "philips_scaling"), "float") == 0;
    if (caption[0])
        o.overlay_caption = strcmp(caption, "none") ? caption : "";
    cJSON_AddStringToObject(root, "rule", rule_name);
    cJSON_AddStringToObject(root, "recipe", o.recipe ? o.recipe : "");
    RP_INFO("job", "pipeline job=%lld files=%zu rule=%s", js->id, n, rule ? rule_name : "-");

    rc = rp_pipeline_process_files(c, (const char *const *)paths, n, tmp_dir, &o, &res);
    cJSON_AddNumberToObject(root, "outputs", (double)res.n_outputs);
    cJSON_AddNumberToObject(root, "failed_inputs", res.n_failed);
    cJSON_AddNumberToObject(root, "skipped_inputs", res.n_skipped);
    cJSON_AddStringToObject(root, "result", rc == 0 ? "ok" : rp_strerror(rc));
    if ((r->qc = cJSON_CreateObject()) != NULL) {
        cJSON_AddNumberToObject(r->qc, "instances", (double)n);
        cJSON_AddNumberToObject(r->qc, "outputs", (double)res.n_outputs);
        cJSON_AddNumberToObject(r->qc, "failed_inputs", res.n_failed);
        cJSON_AddNumberToObject(r->qc, "skipped_inputs", res.n_skipped);
        cJSON_AddStringToObject(r->qc, "result", rc == 0 ? "ok" : rp_strerror(rc));
    }
    if (rc != 0) {
        char q[600];
        cJSON_AddStringToObject(root, "reason", res.reason);
        rp_strlcpy(r->reason, res.reason, sizeof r->reason);
        RP_ERROR("job", "pipeline failed job=%lld rc=%s reason=%s", js->id, rp_strerror(rc),
                 rp_log_kv_quote(res.reason, q, sizeof q));
    }
    /* series.json is written whatever happened: a failed version's folder says why. */
    char *text = cJSON_Print(root);
    char p[RP_PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/series.json", tmp_dir);
    int wrc = text ? write_file_durable(p, text) : RP_ENOMEM;
    free(text);
    if (rc == 0)
        rc = wrc;
out:
    rp_process_result_free(&res);
    for (size_t k = 0; paths && k < n; k++)
        free(paths[k]);
    free(paths);
    cJSON_Delete(root);
    return rc;
}

/* A 'process' job: the series version's files through the pipeline, published. */
static void process_job(const rp_conf *c, const rp_job_spec *js, rp_publish *pub,
                        rp_job_result *r)
{
    int rc;
    double t0 = rp_mono_s();
    size_t n = (size_t)cJSON_GetArraySize(js->inputs);
    test_fault(js->series_uid, 0);
    RP_INFO("job", "start job=%lld series=%s version=%d attempt=%d modality=%s pid=%d", js->id,
            js->series_uid, js->version, js->attempt, js->modality, (int)getpid());
    if ((rc = rp_publish_begin(pub, js->parent, js->version)) != 0)
        goto out;
    test_fault(js->series_uid, 1);
    if ((rc = process_into(c, js, pub->tmp_dir, r)) != 0 ||
        (rc = rp_publish_commit(pub, &r->files)) != 0)
        goto out;
    r->published = 1;
    /* Derived instances the rule sends back (the .dcm files in <version>/dicom): the node
     * queues them when it records this result. */
    const char *send_to = js->rule ? rp_job_str(js->rule, "send_to") : "";
    if (send_to[0]) {
        rp_strlcpy(r->send_to, send_to, sizeof r->send_to);
        snprintf(r->derived_dir, sizeof r->derived_dir, "%s/dicom", pub->dir);
    }
    RP_INFO("job", "done job=%lld series=%s version=%d instances=%zu out=%s wall_s=%.3f", js->id,
            js->series_uid, js->version, n, pub->dir, rp_mono_s() - t0);
out:
    r->code = rp_worker_exit_for(rc);
    if (rc != 0) {
        if (!r->reason[0])
            rp_strlcpy(r->reason, rp_strerror(rc), sizeof r->reason);
        RP_ERROR("job", "failed job=%lld rc=%s exit=%d", js->id, rp_strerror(rc), r->code);
    }
}

int rp_job_run(const rp_conf *c, long long job_id)
{
    char path[RP_PATH_MAX + 64];
    rp_job_spec js;
    double t0 = rp_mono_s();
    if (snprintf(path, sizeof path, "%s/jobs/job-%lld.json", c->data_dir, job_id) >=
        (int)sizeof path)
        return RP_JOB_EXIT_USAGE;
    int rc = rp_job_spec_load(path, &js);
    if (rc) {
        int code = rc == RP_ENOENT ? RP_JOB_EXIT_GONE : RP_JOB_EXIT_FAIL;
        RP_ERROR("job", "no usable job file job=%lld path=%s rc=%s exit=%d", job_id, path,
                 rp_strerror(rc), code);
        return code;
    }
    if (js.id != job_id) {
        RP_ERROR("job", "job file is of another job job=%lld path=%s", job_id, path);
        rp_job_spec_free(&js);
        return RP_JOB_EXIT_USAGE;
    }
    rp_publish pub;
    memset(&pub, 0, sizeof pub);
    pub.lock_fd = -1;
    rp_job_result r;
    memset(&r, 0, sizeof r);
    if (js.fuse)
        rp_worker_fuse(c, &js, &pub, &r);
    else
        process_job(c, &js, &pub, &r);
    /* Another worker holds this version (lock_fd < 0 after a refused lock): its manifest is
     * the one that counts. Otherwise the manifest is written while the lock is held. */
    int held = pub.lock_fd >= 0;
    if (held || (!pub.parent[0] && rp_mkdir_p(js.parent, 0750) == 0)) {
        if (write_manifest(&js, &r, rp_mono_s() - t0) != 0 && r.code == RP_JOB_EXIT_OK)
            r.code = RP_JOB_EXIT_FAIL;
    }
    rp_publish_end(&pub);
    rp_output_list_free(&r.files);
    cJSON_Delete(r.qc);
    rp_job_spec_free(&js);
    return r.code;
}
