/* worker/job — `radprep process --job N`: one job, in its own process. See worker/worker.h. */
#include "worker/worker_internal.h"

#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "db/db.h"
#include "outbox/outbox.h"
#include "pipeline/pipeline.h"
#include "store/store.h"

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

int rp_job_output_dir(const rp_conf *c, const char *study_uid, const char *series_uid, int version,
                      char *buf, size_t bufsz)
{
    char root[RP_PATH_MAX];
    if (rp_store_uid_safe(study_uid) != 0 || rp_store_uid_safe(series_uid) != 0)
        return RP_EUID;
    rp_conf_outputs_dir(c, root, sizeof root);
    if (snprintf(buf, bufsz, "%s/%s/%s/v%d", root, study_uid, series_uid, version) >= (int)bufsz)
        return RP_EINVAL;
    return 0;
}

/* The rule that matches the series (borrowed from c), or NULL. */
static const rp_conf_rule *match_rule(const rp_conf *c, const rp_db_series_info *si)
{
    return rp_pipeline_match_rule(c, si->modality, si->body_part, si->description,
                                  si->slice_thickness);
}

/* The processing itself, into tmp_dir: every file of this version goes through the
 * pipeline with the recipe of the rule that matches the series; series.json says what was
 * taken (instances, rule, recipe) and how it went. */
static int process_into(const rp_conf *c, const rp_conf_rule *rule, const char *store_root,
                        const rp_db_job *job, const rp_db_series_info *si,
                        const rp_instance_meta *inst, size_t n, const char *tmp_dir)
{
    int rc = 0;
    char **paths = calloc(n, sizeof *paths);
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
    cJSON_AddStringToObject(root, "study_uid", si->study_uid);
    cJSON_AddStringToObject(root, "series_uid", si->series_uid);
    cJSON_AddStringToObject(root, "modality", si->modality);
    cJSON_AddNumberToObject(root, "version", job->version);
    cJSON_AddNumberToObject(root, "job", (double)job->id);
    cJSON_AddNumberToObject(root, "instances", (double)n);
    cJSON_AddItemToObject(root, "files", arr);
    for (size_t i = 0; i < n; i++) {
        if (asprintf(&paths[i], "%s/%s", store_root, inst[i].file_path) < 0) {
            paths[i] = NULL;
            rc = RP_ENOMEM;
            goto out;
        }
        cJSON *o = cJSON_CreateObject();
        if (!o) {
            rc = RP_ENOMEM;
            goto out;
        }
        cJSON_AddStringToObject(o, "sop_instance_uid", inst[i].sop_instance_uid);
        cJSON_AddNumberToObject(o, "instance_number", inst[i].instance_number);
        cJSON_AddStringToObject(o, "file", inst[i].file_path);
        cJSON_AddStringToObject(o, "sha256", inst[i].file_sha256);
        cJSON_AddItemToArray(arr, o);
    }

    /* The rule for this series chooses the recipe (none: plain conversion). */
    rp_process_opts o;
    rp_process_opts_init(&o);
    o.recipe = rule && rule->steps[0] ? rule->steps : NULL;
    /* The rule's "dicom"/"seg"/"overlay"/"sr" outputs go to <version>/dicom/, which the outbox
     * picks up (each destination gets the kinds its [peer] results key names). */
    o.outputs = rule ? rule->outputs : NULL;
    o.rule_name = rule ? rule->name : NULL;
    o.philips_float = rule ? rule->philips_float : 0;
    if (rule && rule->overlay_caption[0])
        o.overlay_caption = strcmp(rule->overlay_caption, "none") ? rule->overlay_caption : "";
    cJSON_AddStringToObject(root, "rule", rule ? rule->name : "");
    cJSON_AddStringToObject(root, "recipe", o.recipe ? o.recipe : "");
    RP_INFO("job", "pipeline job=%lld files=%zu rule=%s", job->id, n, rule ? rule->name : "-");

    rc = rp_pipeline_process_files(c, (const char *const *)paths, n, tmp_dir, &o, &res);
    cJSON_AddNumberToObject(root, "outputs", (double)res.n_outputs);
    cJSON_AddNumberToObject(root, "failed_inputs", res.n_failed);
    cJSON_AddNumberToObject(root, "skipped_inputs", res.n_skipped);
    cJSON_AddStringToObject(root, "result", rc == 0 ? "ok" : rp_strerror(rc));
    if (rc != 0) {
        char q[600];
        cJSON_AddStringToObject(root, "reason", res.reason);
        RP_ERROR("job", "pipeline failed job=%lld rc=%s reason=%s", job->id, rp_strerror(rc),
                 rp_log_kv_quote(res.reason, q, sizeof q));
    }
    /* The manifest is written whatever happened: a failed version's folder says why. */
    char *text = cJSON_Print(root);
    char p[RP_PATH_MAX * 2];
    snprintf(p, sizeof p, "%s/series.json", tmp_dir);
    int wrc = text ? write_file_durable(p, text) : RP_ENOMEM;
    free(text);
    if (rc == 0)
        rc = wrc;
out:
    rp_process_result_free(&res);
    for (size_t i = 0; paths && i < n; i++)
        free(paths[i]);
    free(paths);
    cJSON_Delete(root);
    return rc;
}

/* A 'process' job: the series version's files through the pipeline, published. */
static int process_job(const rp_conf *c, rp_db *db, rp_store *store, const rp_db_job *job)
{
    rp_instance_meta *inst = NULL;
    size_t n = 0;
    int rc;
    double t0 = rp_mono_s();
    char out_dir[RP_PATH_MAX + 256];
    rp_publish pub;
    memset(&pub, 0, sizeof pub);
    pub.lock_fd = -1;

    rp_db_series_info si;
    if ((rc = rp_db_series_get(db, job->series_uid, &si)) != 0) {
        RP_ERROR("job", "series of job gone job=%lld series=%s rc=%s", job->id, job->series_uid,
                 rp_strerror(rc));
        return rc == RP_ENOENT ? RP_JOB_EXIT_GONE : RP_JOB_EXIT_FAIL;
    }
    test_fault(job->series_uid, 0);
    RP_INFO("job", "start job=%lld series=%s version=%d attempt=%d modality=%s pid=%d", job->id,
            job->series_uid, job->version, job->attempts, si.modality, (int)getpid());

    if ((rc = rp_db_series_instances(db, job->series_uid, &inst, &n)) != 0)
        goto out;
    /* This version is what had arrived when it completed (the job's creation); anything
     * later reopened the series and belongs to the next version. */
    size_t keep = 0;
    for (size_t i = 0; i < n; i++)
        if (job->created_at <= 0 || inst[i].received_at <= job->created_at)
            inst[keep++] = inst[i];
    if (keep < n)
        RP_INFO("job", "instances after completion left to the next version job=%lld n=%zu",
                job->id, n - keep);
    n = keep;
    if (n == 0) {
        RP_ERROR("job", "series has no instances job=%lld series=%s", job->id, job->series_uid);
        free(inst);
        return RP_JOB_EXIT_BADINPUT;
    }
    if ((rc = rp_job_output_dir(c, si.study_uid, si.series_uid, job->version, out_dir,
                                sizeof out_dir)) != 0)
        goto out;
    *strrchr(out_dir, '/') = '\0'; /* the series folder holds the versions */
    if ((rc = rp_publish_begin(&pub, out_dir, job->version)) != 0)
        goto out;
    test_fault(job->series_uid, 1);
    const rp_conf_rule *rule = match_rule(c, &si);
    char pulled[64]; /* a pull that named a rule (pull --rule, [pull] rule) chose it */
    if (rp_db_pull_rule(db, si.series_uid, pulled, sizeof pulled) == 0)
        for (size_t i = 0; i < c->n_rules; i++)
            if (strcmp(c->rules[i].name, pulled) == 0)
                rule = &c->rules[i];
    if ((rc = process_into(c, rule, rp_store_root(store), job, &si, inst, n, pub.tmp_dir)) != 0 ||
        (rc = rp_publish_commit(&pub, db, job->id, NULL)) != 0)
        goto out;
    /* Derived instances the rule sends back (the .dcm files in <version>/dicom) go to the outbox;
     * the rows are idempotent, so a re-run never sends twice. */
    if (rule && rule->send_to[0]) {
        char dcm_dir[sizeof pub.dir + 16];
        size_t queued = 0;
        snprintf(dcm_dir, sizeof dcm_dir, "%s/dicom", pub.dir);
        if ((rc = rp_outbox_enqueue_dir(db, c, rule->send_to, dcm_dir, &queued)) != 0)
            goto out;
        RP_INFO("job", "derived instances queued job=%lld rule=%s send_to=\"%s\" rows=%zu",
                job->id, rule->name, rule->send_to, queued);
    }
    /* Done is recorded here, with the outputs, and not only by the supervisor from the exit
     * code: if the daemon died right now the version would not be processed again. Run by
     * hand for a job that is not running, this changes nothing (RP_EINVAL). */
    if (job->state == RP_JOB_RUNNING) {
        rc = rp_db_job_finish(db, job->id, 1, 0, "exit 0", 0, 0, 0, NULL);
        if (rc == RP_EINVAL)
            rc = 0;
        if (rc != 0)
            goto out;
    }
    RP_INFO("job", "done job=%lld series=%s version=%d instances=%zu out=%s wall_s=%.3f", job->id,
            job->series_uid, job->version, n, pub.dir, rp_mono_s() - t0);
out:
    rp_publish_end(&pub);
    free(inst);
    int code = rp_worker_exit_for(rc);
    if (rc != 0)
        RP_ERROR("job", "failed job=%lld rc=%s exit=%d", job->id, rp_strerror(rc), code);
    return code;
}

int rp_job_run(const rp_conf *c, long long job_id)
{
    rp_store *store = NULL;
    rp_db *db = NULL;
    int rc, code = RP_JOB_EXIT_FAIL;
    char dbpath[RP_PATH_MAX + 64];

    if ((rc = rp_store_open(c, &store)) != 0) {
        RP_ERROR("job", "cannot open store data_dir=%s rc=%s", c->data_dir, rp_strerror(rc));
        RP_ERROR("job", "failed job=%lld rc=%s exit=%d", job_id, rp_strerror(rc),
                 rp_worker_exit_for(rc));
        return rp_worker_exit_for(rc);
    }
    rp_store_db_path(store, dbpath, sizeof dbpath);
    if ((rc = rp_db_open(dbpath, &db)) != 0) {
        code = rp_worker_exit_for(rc);
        RP_ERROR("job", "failed job=%lld rc=%s exit=%d", job_id, rp_strerror(rc), code);
        goto out;
    }
    rp_db_job job;
    if ((rc = rp_db_job_get(db, job_id, &job)) != 0) {
        RP_ERROR("job", "no such job job=%lld rc=%s", job_id, rp_strerror(rc));
        code = rc == RP_ENOENT ? RP_JOB_EXIT_GONE : RP_JOB_EXIT_FAIL;
        goto out;
    }
    if (job.kind == RP_JOB_KIND_FUSE)
        code = rp_worker_fuse(c, db, rp_store_root(store), &job);
    else
        code = process_job(c, db, store, &job);
out:
    if (db)
        rp_db_close(db);
    rp_store_close(store);
    return code;
}
