/* pipeline/study.c — work over several series at once: study-level multi-sequence fusion
 * ([fusion NAME], rp_pipeline_fuse_files) and fitting a Nyúl model over a set of series
 * (rp_pipeline_fit_nyul). Contract in pipeline/pipeline.h; kernels in pipeline/mr/mr.h.
 *
 * Each series is assembled as `radprep process` does (its largest stack; a 4-D stack gives its
 * first volume), made float32 with rescale applied, and given to the kernels. The Nyúl fit
 * loads one series at a time, so its memory stays at one series whatever the training set. */
#include "pipeline/pipeline.h"

#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "dicom/dicom.h"
#include "pipeline/assemble/assemble.h"
#include "pipeline/mr/mr.h"
#include "pipeline/recipe/recipe.h"
#include "pipeline/write/write.h"
#include "pipeline/pipeline_internal.h"

#define MOD "study"

/* ---- reading and grouping ---------------------------------------------------------------- */

typedef struct header_set {
    rp_dcm_info **all; /* image headers, sorted by series number, series UID, path */
    size_t n;
    size_t *start; /* series k = all[start[k] .. start[k+1]) */
    size_t n_series;
    size_t n_failed; /* unreadable files */
} header_set;

static int cmp_info(const void *a, const void *b)
{
    const rp_dcm_info *x = *(const rp_dcm_info *const *)a, *y = *(const rp_dcm_info *const *)b;
    if (x->series_number != y->series_number)
        return x->series_number < y->series_number ? -1 : 1;
    int c = strcmp(x->series_uid, y->series_uid);
    return c ? c : strcmp(x->path, y->path);
}

static void headers_free(header_set *h)
{
    for (size_t i = 0; i < h->n; i++)
        rp_dcm_info_free(h->all[i]);
    free(h->all);
    free(h->start);
    memset(h, 0, sizeof *h);
}

/* Read every file's header (no pixels); files that are not images are left out, unreadable
 * ones counted (a folder may hold README or NIfTI files). */
static int headers_read(const char *const *files, size_t n, header_set *h, char *err, size_t errlen)
{
    memset(h, 0, sizeof *h);
    rp_dcm_global_init();
    h->all = calloc(n ? n : 1, sizeof *h->all);
    h->start = calloc(n + 2, sizeof *h->start);
    if (!h->all || !h->start) {
        headers_free(h);
        return RP_ENOMEM;
    }
    rp_dcm_info **tmp = calloc(n ? n : 1, sizeof *tmp);
    if (!tmp) {
        headers_free(h);
        return RP_ENOMEM;
    }
#pragma omp parallel for schedule(dynamic, 8)
    for (size_t i = 0; i < n; i++) {
        char e[256];
        if (rp_dcm_read_info(files[i], &tmp[i], e, sizeof e) != 0)
            tmp[i] = NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!tmp[i]) {
            h->n_failed++;
            continue;
        }
        if (!tmp[i]->has_pixel_data || !tmp[i]->series_uid[0]) {
            rp_dcm_info_free(tmp[i]);
            continue;
        }
        h->all[h->n++] = tmp[i];
    }
    free(tmp);
    if (h->n == 0) {
        snprintf(err, errlen, "no DICOM image among %zu file(s)", n);
        headers_free(h);
        return RP_ENOENT;
    }
    qsort(h->all, h->n, sizeof *h->all, cmp_info);
    for (size_t i = 0; i < h->n; i++)
        if (i == 0 || strcmp(h->all[i]->series_uid, h->all[i - 1]->series_uid) ||
            h->all[i]->series_number != h->all[i - 1]->series_number)
            h->start[h->n_series++] = i;
    h->start[h->n_series] = h->n;
    return 0;
}

static void series_info_from(const rp_dcm_info *in, rp_series_info *info)
{
    memset(info, 0, sizeof *info);
    rp_strlcpy(info->modality, in->modality, sizeof info->modality);
    rp_strlcpy(info->body_part, in->body_part, sizeof info->body_part);
    rp_strlcpy(info->series_description,
               in->series_description[0] ? in->series_description : in->protocol_name,
               sizeof info->series_description);
    rp_strlcpy(info->series_uid, in->series_uid, sizeof info->series_uid);
    rp_strlcpy(info->study_uid, in->study_uid, sizeof info->study_uid);
    rp_strlcpy(info->photometric, in->photometric, sizeof info->photometric);
    info->window_center = in->n_windows ? in->window_center[0] : 0;
    info->window_width = in->n_windows ? in->window_width[0] : -1;
    info->slice_thickness = isnan(in->slice_thickness) ? -1 : in->slice_thickness;
    info->bits_stored = in->bits_stored;
    info->repetition_time = isnan(in->repetition_time) ? -1 : in->repetition_time;
    info->echo_time = isnan(in->echo_time) ? -1 : in->echo_time;
    info->inversion_time = isnan(in->inversion_time) ? -1 : in->inversion_time;
    info->dcm = in;
}

/* Assemble one series into a float volume: its largest stack, first volume of a 4-D one,
 * rescale applied, irregular geometry regularised. *out is new (caller frees). */
static int load_series(const rp_dcm_info *const *infos, size_t n, rp_volume **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    rp_series_asm sa;
    int rc = rp_assemble(infos, n, &sa);
    if (rc) {
        snprintf(err, errlen, "series %s: assembly failed: %s", infos[0]->series_uid,
                 rp_strerror(rc));
        return rc;
    }
    if (sa.n_stacks == 0) {
        snprintf(err, errlen, "series %s: no image stack", infos[0]->series_uid);
        rp_series_asm_free(&sa);
        return RP_EGEOM;
    }
    size_t best = 0;
    for (size_t s = 1; s < sa.n_stacks; s++)
        if ((long long)sa.stack[s].nx * sa.stack[s].ny * sa.stack[s].nz >
            (long long)sa.stack[best].nx * sa.stack[best].ny * sa.stack[best].nz)
            best = s;
    rp_stack *st = &sa.stack[best];
    rp_stack_data d;
    rc = rp_stack_load(st, infos, NULL, NULL, RP_LOAD_CONTIGUOUS, 0, &d, err, errlen);
    if (rc) {
        rp_series_asm_free(&sa);
        return rc;
    }
    if (st->need_resample && (rc = rp_stack_resample(st, &d, err, errlen)) != 0) {
        rp_stack_data_free(&d);
        rp_series_asm_free(&sa);
        return rc;
    }
    rp_volume *v = rp_volume_new(st->nx, st->ny, st->nz, 1);
    if (!v) {
        rp_stack_data_free(&d);
        rp_series_asm_free(&sa);
        return RP_ENOMEM;
    }
    rp_stack_data_to_f32(&d, rp_volume_nvox(v), v->data);
    memcpy(v->affine, st->affine, sizeof v->affine);
    rp_volume_update_spacing(v);
    rp_stack_data_free(&d);
    rp_series_asm_free(&sa);
    *out = v;
    return 0;
}

/* Run `steps` (may be NULL/empty) on v in a fresh context; on return ctx owns v (release it
 * with rp_step_ctx_release). qc (may be NULL) gets the runner's report. */
static int run_steps(const char *steps, rp_volume *v, const rp_series_info *info, rp_step_ctx *ctx,
                     cJSON *qc, char *err, size_t errlen)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->vol = v;
    ctx->info = info;
    ctx->qc = qc;
    ctx->writers = rp_pipeline_step_io();
    if (!steps || !steps[0])
        return 0;
    rp_recipe *rec = NULL;
    int rc = rp_recipe_parse(steps, &rec, err, errlen);
    if (rc)
        return rc;
    rc = rp_recipe_run(rec, ctx);
    if (rc)
        snprintf(err, errlen, "%s", ctx->err);
    rp_recipe_free(rec);
    return rc;
}

/* ---- sequence matching -------------------------------------------------------------------- */

static unsigned match_bits(const rp_conf_fusion *f, const rp_dcm_info *in)
{
    rp_series_info info;
    series_info_from(in, &info);
    rp_conf_series_attrs a = {.modality = in->modality,
                              .description = info.series_description,
                              .tr_ms = info.repetition_time,
                              .te_ms = info.echo_time,
                              .ti_ms = info.inversion_time};
    return rp_conf_fusion_match(f, &a);
}

int rp_pipeline_fusion_match_file(const rp_conf_fusion *f, const char *file, unsigned *bits,
                                  char *err, size_t errlen)
{
    rp_dcm_info *in = NULL;
    *bits = 0;
    rp_dcm_global_init();
    int rc = rp_dcm_read_info(file, &in, err, errlen);
    if (rc)
        return rc;
    *bits = match_bits(f, in);
    rp_dcm_info_free(in);
    return 0;
}

/* Assign one series to each sequence, in sequence order: the lowest series number among the
 * matching series no earlier sequence took. pick[s] = series index or -1. Returns the number
 * of missing sequences; their names go into `missing`. */
static int assign(const rp_conf_fusion *f, const header_set *h, const unsigned *bits, int *pick,
                  char *missing, size_t msz, cJSON *warnings)
{
    int n_missing = 0;
    missing[0] = '\0';
    for (int s = 0; s < f->n_seq; s++) {
        pick[s] = -1;
        int count = 0;
        for (size_t k = 0; k < h->n_series; k++) {
            if (!(bits[k] & (1u << s)))
                continue;
            int taken = 0;
            for (int q = 0; q < s && !taken; q++)
                taken = pick[q] == (int)k;
            if (taken)
                continue;
            if (pick[s] < 0)
                pick[s] = (int)k;
            count++;
        }
        if (pick[s] < 0) {
            size_t l = strlen(missing);
            snprintf(missing + l, msz - l, "%s%s", n_missing ? ", " : "", f->seq[s].name);
            n_missing++;
        } else if (count > 1) {
            char w[300];
            const rp_dcm_info *in = h->all[h->start[pick[s]]];
            snprintf(w, sizeof w,
                     "%d series match sequence %s; took series %d (%s), the lowest number", count,
                     f->seq[s].name, in->series_number, in->series_description);
            cJSON_AddItemToArray(warnings, cJSON_CreateString(w));
            RP_WARN(MOD, "fuse several series match sequence=%s taking=%s", f->seq[s].name,
                    in->series_uid);
        }
    }
    return n_missing;
}

/* ---- fusion ------------------------------------------------------------------------------ */

static cJSON *affine_json(const double a[4][4])
{
    cJSON *rows = cJSON_CreateArray();
    for (int r = 0; r < 4; r++)
        cJSON_AddItemToArray(rows, cJSON_CreateDoubleArray(a[r], 4));
    return rows;
}

void rp_fusion_result_free(rp_fusion_result *r)
{
    if (!r)
        return;
    free(r->sidecar_json);
    r->sidecar_json = NULL;
}

int rp_pipeline_fuse_files(const rp_conf_fusion *f, const char *const *files, size_t n,
                           const char *out_dir, const char *stem, const rp_process_opts *o,
                           const char *node_json, rp_fusion_result *res)
{
    memset(res, 0, sizeof *res);
    char err[512] = "";
    header_set h;
    rp_volume *vols[RP_FUSION_MAX_SEQ] = {0};
    rp_volume *fused = NULL;
    unsigned *bits = NULL;
    int pick[RP_FUSION_MAX_SEQ] = {0};
    cJSON *side = cJSON_CreateObject();
    cJSON *warnings = cJSON_CreateArray();
    rp_process_opts dflt;
    if (!o) {
        rp_process_opts_init(&dflt);
        o = &dflt;
    }
    if (!stem || !stem[0])
        stem = f->name;
    int rc = headers_read(files, n, &h, err, sizeof err);
    if (rc) {
        snprintf(res->reason, sizeof res->reason, "fuse %s: %s", f->name, err);
        cJSON_Delete(side);
        cJSON_Delete(warnings);
        return rc;
    }
    bits = calloc(h.n_series, sizeof *bits);
    if (!bits || !side || !warnings) {
        rc = RP_ENOMEM;
        goto out;
    }
    for (size_t k = 0; k < h.n_series; k++)
        bits[k] = match_bits(f, h.all[h.start[k]]);
    char missing[256];
    if (assign(f, &h, bits, pick, missing, sizeof missing, warnings) > 0) {
        snprintf(res->reason, sizeof res->reason, "fuse: missing sequence %s", missing);
        rp_strlcpy(res->missing, missing, sizeof res->missing);
        RP_WARN(MOD, "fuse rule=%s missing=\"%s\" series=%zu", f->name, missing, h.n_series);
        rc = RP_ENOENT;
        goto out;
    }
    const rp_dcm_info *ref_in = h.all[h.start[pick[f->reference]]];
    /* Resampling through the affines is only meaningful inside one frame of reference. */
    for (int s = 0; s < f->n_seq; s++) {
        const rp_dcm_info *in = h.all[h.start[pick[s]]];
        if (strcmp(in->study_uid, ref_in->study_uid) != 0) {
            snprintf(res->reason, sizeof res->reason,
                     "fuse: sequence %s (series %s) belongs to another study than %s",
                     f->seq[s].name, in->series_uid, f->seq[f->reference].name);
            rc = RP_EINVAL;
            goto out;
        }
        const int registered =
            s != f->reference &&
            (f->seq[s].register_mode >= 0 ? f->seq[s].register_mode : f->register_mode) !=
                RP_FUSION_REG_NONE;
        if (in->frame_of_reference_uid[0] && ref_in->frame_of_reference_uid[0] &&
            strcmp(in->frame_of_reference_uid, ref_in->frame_of_reference_uid) != 0 &&
            registered) { /* registration finds the mapping the shared frame would give */
            char w[200];
            snprintf(w, sizeof w,
                     "sequence %s is in another frame of reference: registered onto %s from "
                     "its scanner coordinates",
                     f->seq[s].name, f->seq[f->reference].name);
            cJSON_AddItemToArray(warnings, cJSON_CreateString(w));
        } else if (in->frame_of_reference_uid[0] && ref_in->frame_of_reference_uid[0] &&
                   strcmp(in->frame_of_reference_uid, ref_in->frame_of_reference_uid) != 0) {
            snprintf(res->reason, sizeof res->reason,
                     "fuse: sequence %s (series %d) is in another frame of reference than %s "
                     "(series %d): its affine does not place it on the same anatomy",
                     f->seq[s].name, in->series_number, f->seq[f->reference].name,
                     ref_in->series_number);
            rc = RP_EGEOM;
            goto out;
        }
        if (!in->frame_of_reference_uid[0]) {
            char w[160];
            snprintf(w, sizeof w, "sequence %s has no Frame of Reference UID", f->seq[s].name);
            cJSON_AddItemToArray(warnings, cJSON_CreateString(w));
        }
    }
    cJSON *sw = cJSON_AddObjectToObject(side, "Software");
    cJSON_AddStringToObject(sw, "name", "radprep");
    cJSON_AddStringToObject(sw, "version", RP_VERSION);
    cJSON_AddStringToObject(side, "Fusion", f->name);
    cJSON_AddStringToObject(side, "StudyInstanceUID", ref_in->study_uid);
    cJSON_AddStringToObject(side, "FrameOfReferenceUID", ref_in->frame_of_reference_uid);
    cJSON_AddStringToObject(side, "Reference", f->seq[f->reference].name);
    cJSON_AddStringToObject(side, "Interpolation", f->order ? "linear" : "nearest");
    cJSON *norm = cJSON_AddObjectToObject(side, "Normalize");
    cJSON_AddStringToObject(norm, "steps", f->normalize);
    if (f->normalize[0]) {
        rp_recipe *rec = NULL;
        if ((rc = rp_recipe_parse(f->normalize, &rec, err, sizeof err)) != 0) {
            snprintf(res->reason, sizeof res->reason, "fuse %s: normalize: %s", f->name, err);
            goto out;
        }
        char hex[65];
        if (rp_recipe_hash(rec, hex) == 0)
            cJSON_AddStringToObject(norm, "hash", hex);
        cJSON_AddItemToObject(norm, "resolved", rp_recipe_describe(rec));
        rp_recipe_free(rec);
    }
    cJSON *chans = cJSON_AddArrayToObject(side, "Channels");
    for (int s = 0; s < f->n_seq; s++) {
        size_t k = (size_t)pick[s];
        const rp_dcm_info *const *infos = (const rp_dcm_info *const *)&h.all[h.start[k]];
        size_t cnt = h.start[k + 1] - h.start[k];
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddItemToArray(chans, ch);
        cJSON_AddNumberToObject(ch, "index", s);
        cJSON_AddStringToObject(ch, "sequence", f->seq[s].name);
        cJSON_AddStringToObject(ch, "SeriesInstanceUID", infos[0]->series_uid);
        cJSON_AddNumberToObject(ch, "SeriesNumber", infos[0]->series_number);
        cJSON_AddStringToObject(ch, "SeriesDescription", infos[0]->series_description);
        if (!isnan(infos[0]->repetition_time))
            cJSON_AddNumberToObject(ch, "RepetitionTime_ms", infos[0]->repetition_time);
        if (!isnan(infos[0]->echo_time))
            cJSON_AddNumberToObject(ch, "EchoTime_ms", infos[0]->echo_time);
        if (!isnan(infos[0]->inversion_time))
            cJSON_AddNumberToObject(ch, "InversionTime_ms", infos[0]->inversion_time);
        cJSON_AddNumberToObject(ch, "files", (double)cnt);
        rp_strlcpy(res->series_uid[s], infos[0]->series_uid, sizeof res->series_uid[s]);
        rp_volume *v = NULL;
        if ((rc = load_series(infos, cnt, &v, err, sizeof err)) != 0) {
            snprintf(res->reason, sizeof res->reason, "fuse: sequence %s: %s", f->seq[s].name, err);
            goto out;
        }
        int gd[3] = {v->dim[0], v->dim[1], v->dim[2]};
        cJSON_AddItemToObject(ch, "source_dim", cJSON_CreateIntArray(gd, 3));
        cJSON_AddItemToObject(ch, "source_affine", affine_json(v->affine));
        /* normalise each member on its own grid: the zeros resampling adds outside a
         * member's field of view must not enter its statistics */
        rp_series_info info;
        series_info_from(infos[0], &info);
        rp_step_ctx ctx;
        cJSON *qc = cJSON_CreateObject();
        rc = run_steps(f->normalize, v, &info, &ctx, qc, err, sizeof err);
        cJSON *steps = cJSON_DetachItemFromObject(qc, "steps");
        if (steps)
            cJSON_AddItemToObject(ch, "steps", steps);
        cJSON_Delete(qc);
        vols[s] = ctx.vol;
        ctx.vol = NULL;
        rp_step_ctx_release(&ctx);
        if (rc) {
            snprintf(res->reason, sizeof res->reason, "fuse: sequence %s: normalize: %s",
                     f->seq[s].name, err);
            goto out;
        }
    }
    /* members that moved between sequences: registered onto the reference first */
    if ((rc = rp_fuse_register(f, vols, side, out_dir, stem, err, sizeof err)) != 0) {
        snprintf(res->reason, sizeof res->reason, "fuse: %s", err);
        goto out;
    }
    if ((rc = rp_mr_fuse((const rp_volume *const *)vols, (size_t)f->n_seq, (size_t)f->reference,
                         f->order, &fused)) != 0) {
        snprintf(res->reason, sizeof res->reason, "fuse: resampling failed: %s", rp_strerror(rc));
        goto out;
    }
    for (int s = 0; s < f->n_seq; s++) {
        rp_volume_free(vols[s]);
        vols[s] = NULL;
    }
    memcpy(res->dim, fused->dim, sizeof res->dim);
    res->n_channels = f->n_seq;
    cJSON_AddItemToObject(side, "dim", cJSON_CreateIntArray(fused->dim, 4));
    cJSON_AddItemToObject(side, "affine", affine_json(fused->affine));
    if (rp_mkdir_p(out_dir, 0755) != 0) {
        snprintf(res->reason, sizeof res->reason, "cannot create %s: %s", out_dir, strerror(errno));
        rc = RP_EIO;
        goto out;
    }
    rp_nifti_opts no;
    memset(&no, 0, sizeof no);
    no.gzip = o->gzip;
    no.level = o->gzip_level;
    no.threads = o->threads;
    snprintf(no.descrip, sizeof no.descrip, "radprep %s fusion %s", RP_VERSION, f->name);
    cJSON *outs = cJSON_AddArrayToObject(side, "Outputs");
    if (f->layout & RP_FUSION_LAYOUT_NIFTI4D) {
        snprintf(res->nifti, sizeof res->nifti, "%s/%s.nii%s", out_dir, stem, o->gzip ? ".gz" : "");
        if ((rc = rp_nifti_write_volume(res->nifti, fused, &no, err, sizeof err)) != 0) {
            snprintf(res->reason, sizeof res->reason, "%s", err);
            goto out;
        }
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "kind", "nifti4d");
        cJSON_AddStringToObject(e, "path", strrchr(res->nifti, '/') + 1);
        cJSON_AddItemToArray(outs, e);
    }
    if (f->layout & RP_FUSION_LAYOUT_NNUNET) {
        snprintf(res->nnunet_dir, sizeof res->nnunet_dir, "%s/nnunet", out_dir);
        if (rp_mkdir_p(res->nnunet_dir, 0755) != 0) {
            rc = RP_EIO;
            snprintf(res->reason, sizeof res->reason, "cannot create %.600s", res->nnunet_dir);
            goto out;
        }
        if ((rc = rp_nifti_write_nnunet(fused, res->nnunet_dir, stem, err, sizeof err)) != 0) {
            snprintf(res->reason, sizeof res->reason, "%s", err);
            goto out;
        }
        for (int s = 0; s < f->n_seq; s++) {
            char p[200];
            snprintf(p, sizeof p, "nnunet/%s_%04d.nii.gz", stem, s);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "kind", "nnunet_channel");
            cJSON_AddStringToObject(e, "sequence", f->seq[s].name);
            cJSON_AddStringToObject(e, "path", p);
            cJSON_AddItemToArray(outs, e);
        }
    }
    cJSON_AddItemToObject(side, "Warnings", warnings);
    warnings = NULL;
    if (node_json && node_json[0]) {
        cJSON *nj = cJSON_Parse(node_json);
        if (nj)
            cJSON_AddItemToObject(side, "Node", nj);
    }
    snprintf(res->sidecar, sizeof res->sidecar, "%s/%s.json", out_dir, stem);
    if ((rc = rp_json_write(res->sidecar, side, err, sizeof err)) != 0) {
        snprintf(res->reason, sizeof res->reason, "%s", err);
        goto out;
    }
    res->sidecar_json = cJSON_Print(side);
    RP_INFO(MOD, "fused rule=%s channels=%d dims=%dx%dx%d out=%s", f->name, f->n_seq, fused->dim[0],
            fused->dim[1], fused->dim[2], out_dir);
out:
    for (int s = 0; s < RP_FUSION_MAX_SEQ; s++)
        rp_volume_free(vols[s]);
    rp_volume_free(fused);
    free(bits);
    cJSON_Delete(side);
    cJSON_Delete(warnings);
    headers_free(&h);
    return rc;
}

/* ---- Nyúl fit ------------------------------------------------------------------------------ */

int rp_pipeline_fit_nyul(const char *const *files, size_t n, const char *steps,
                         const char *mask_name, size_t max_series, const char *model_path,
                         rp_nyul_fit_result *res)
{
    memset(res, 0, sizeof *res);
    char err[512] = "";
    header_set h;
    int rc = headers_read(files, n, &h, err, sizeof err);
    if (rc) {
        snprintf(res->reason, sizeof res->reason, "fit nyul: %s", err);
        return rc;
    }
    rp_nyul_model m, acc;
    rp_nyul_model_defaults(&m);
    acc = m;
    memset(acc.standard, 0, sizeof acc.standard);
    size_t used = 0;
    for (size_t k = 0; k < h.n_series && (max_series == 0 || used < max_series); k++) {
        const rp_dcm_info *const *infos = (const rp_dcm_info *const *)&h.all[h.start[k]];
        size_t cnt = h.start[k + 1] - h.start[k];
        rp_volume *v = NULL;
        if ((rc = load_series(infos, cnt, &v, err, sizeof err)) != 0)
            break;
        rp_series_info info;
        series_info_from(infos[0], &info);
        rp_step_ctx ctx;
        rc = run_steps(steps, v, &info, &ctx, NULL, err, sizeof err);
        if (rc) {
            char e2[600];
            snprintf(e2, sizeof e2, "series %s: steps: %s", infos[0]->series_uid, err);
            rp_strlcpy(err, e2, sizeof err);
            rp_step_ctx_release(&ctx);
            break;
        }
        /* the mask the nyul step will use: named, else brain, foreground, head, else > 0 */
        const rp_mask *mask = NULL;
        if (mask_name && mask_name[0]) {
            if (!(mask = rp_step_ctx_mask(&ctx, mask_name))) {
                snprintf(err, sizeof err, "series %s: mask '%s' not made by the steps",
                         infos[0]->series_uid, mask_name);
                rc = RP_EINVAL;
                rp_step_ctx_release(&ctx);
                break;
            }
        } else {
            static const char *const pref[] = {"brain", "foreground", "head"};
            for (int i = 0; i < 3 && !mask; i++)
                mask = rp_step_ctx_mask(&ctx, pref[i]);
        }
        /* One volume at a time: the fit of one volume is its mapped landmarks, and the model
         * is their mean (rp_nyul_fit's definition), so memory stays at one series. */
        rp_nyul_model one = m;
        const rp_volume *vv = ctx.vol;
        rc = rp_nyul_fit(&vv, mask ? &mask : NULL, 1, &one, NULL, err, sizeof err);
        if (rc == 0) {
            for (int i = 0; i < m.n; i++)
                acc.standard[i] += one.standard[i];
            used++;
            RP_INFO(MOD, "nyul landmarks series=%s mask=%s", infos[0]->series_uid,
                    mask ? mask->name : "value>0");
        } else {
            char e2[600];
            snprintf(e2, sizeof e2, "series %s: %s", infos[0]->series_uid, err);
            rp_strlcpy(err, e2, sizeof err);
        }
        rp_step_ctx_release(&ctx);
        if (rc)
            break;
    }
    if (rc == 0 && used == 0) {
        snprintf(err, sizeof err, "no series to train on");
        rc = RP_ENOENT;
    }
    if (rc == 0) {
        for (int i = 0; i < m.n; i++)
            m.standard[i] = acc.standard[i] / (double)used;
        m.n_train = (int)used;
        if ((rc = rp_nyul_save(&m, model_path)) != 0)
            snprintf(err, sizeof err, "cannot write %s", model_path);
    }
    res->n_series = (int)used;
    res->n_unreadable = (int)h.n_failed;
    if (rc) {
        snprintf(res->reason, sizeof res->reason, "fit nyul: %s", err);
    } else {
        res->n_landmarks = m.n;
        memcpy(res->standard, m.standard, sizeof m.standard[0] * (size_t)m.n);
    }
    headers_free(&h);
    return rc;
}
