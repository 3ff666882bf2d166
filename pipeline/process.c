/* pipeline/process.c — files in, NIfTI + sidecars + QC report out: read headers, group by
 * series, assemble, decode, (recipe), write. Contract in pipeline/pipeline.h. */
#include "pipeline/pipeline.h"

#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/common.h"
#include "dicom/dicom.h"
#include "pipeline/assemble/assemble.h"
#include "pipeline/recipe/recipe.h"
#include "pipeline/pipeline_internal.h"
#include "pipeline/write/write.h"
#include "pipeline/process_fast_internal.h"

#define MOD "pipeline"

void rp_process_opts_init(rp_process_opts *o)
{
    memset(o, 0, sizeof *o);
    o->gzip = 1;
    o->resample_irregular = 1;
    o->privacy = RP_PRIVACY_NONE;
    o->write_qc = 1;
}

void rp_process_result_free(rp_process_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_outputs; i++) {
        for (size_t k = 0; k < r->outputs[i].n_src_files; k++)
            free(r->outputs[i].src_files[k]);
        free(r->outputs[i].src_files);
    }
    free(r->outputs);
    free(r->qc_json);
    memset(r, 0, sizeof *r);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* file name part: letters, digits, '-', '.' kept; anything else becomes '_' */
static void sanitize(const char *in, char *out, size_t outsz)
{
    size_t k = 0;
    for (const char *p = in; *p && k + 1 < outsz; p++) {
        char ch = *p;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '-' || ch == '.';
        out[k++] = ok ? ch : '_';
    }
    out[k] = 0;
    while (k > 0 && out[k - 1] == '_')
        out[--k] = 0;
}

typedef struct run_state {
    const rp_process_opts *o;
    const char *out_dir;
    char **stems;
    size_t n_stems, cap_stems;
    rp_process_result *res;
    cJSON *qc;
    int first_err;
    const char *uid_root; /* the configuration's, for derived UIDs */
    void **pix; /* the current series' preloaded pixels (per info index) */
    int *refs;  /* stacks still to read each file */
    rp_dtype_spec dtype; /* how recipe outputs are stored (the rule's `dtype`) */
    int threads;         /* cores this call uses */
} run_state;

static void fail(run_state *rs, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(run_state *rs, int code, const char *fmt, ...)
{
    va_list ap;
    char buf[1024];
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (!rs->first_err) {
        rs->first_err = code;
        rp_strlcpy(rs->res->reason, buf, sizeof rs->res->reason);
    }
}

static const char *unique_stem(run_state *rs, const char *want, char *buf, size_t bufsz)
{
    rp_strlcpy(buf, want, bufsz);
    for (int n = 0;; n++) {
        int clash = 0;
        for (size_t i = 0; i < rs->n_stems && !clash; i++)
            clash = !strcmp(rs->stems[i], buf);
        if (!clash)
            break;
        snprintf(buf, bufsz, "%s_%c", want, 'a' + (n % 26));
        if (n >= 26)
            snprintf(buf, bufsz, "%s_%d", want, n);
    }
    if (rs->n_stems == rs->cap_stems) {
        size_t nc = rs->cap_stems ? rs->cap_stems * 2 : 16;
        char **s = realloc(rs->stems, nc * sizeof *s);
        if (!s)
            return buf;
        rs->stems = s;
        rs->cap_stems = nc;
    }
    rs->stems[rs->n_stems++] = strdup(buf);
    return buf;
}

static int add_output(run_state *rs, const rp_stack *st, const rp_dcm_info *const *infos,
                      const char *nii, const char *json, const int dim[4])
{
    rp_process_result *r = rs->res;
    rp_process_output *no = realloc(r->outputs, (r->n_outputs + 1) * sizeof *no);
    if (!no)
        return RP_ENOMEM;
    r->outputs = no;
    rp_process_output *po = &no[r->n_outputs++];
    memset(po, 0, sizeof *po);
    rp_strlcpy(po->nifti, nii, sizeof po->nifti);
    rp_strlcpy(po->sidecar, json, sizeof po->sidecar);
    rp_strlcpy(po->series_uid, st->ref->series_uid, sizeof po->series_uid);
    rp_strlcpy(po->study_uid, st->ref->study_uid, sizeof po->study_uid);
    rp_strlcpy(po->modality, st->ref->modality, sizeof po->modality);
    memcpy(po->dim, dim, sizeof po->dim);
    int nz = st->nz_acquired;
    po->src_files = calloc((size_t)nz, sizeof(char *));
    if (po->src_files) {
        for (int z = 0; z < nz; z++)
            po->src_files[z] = strdup(infos[st->slice[z].file]->path);
        po->n_src_files = (size_t)nz;
    }
    return 0;
}

/* Does the rule's outputs text name a result written from the source volume? */
static int wants_source_results(const char *outputs)
{
    return outputs && (strstr(outputs, "overlay") || strstr(outputs, "sr"));
}

/* The assembly's QC findings as sentences for the measurement report. */
static size_t qc_findings(const rp_stack *st, size_t n_padding, char lines[][256], size_t max)
{
    size_t n = 0;
    if (st->missing > 0 && n < max)
        snprintf(lines[n++], 256, "Missing slices detected: %d", st->missing);
    if (fabs(st->tilt_deg) > 0.01 && n < max)
        snprintf(lines[n++], 256, "Gantry tilt %.2f deg: %s", st->tilt_deg,
                 st->need_resample ? "grid corrected" : "kept as acquired");
    if (st->uneven && n < max)
        snprintf(lines[n++], 256, "Uneven slice spacing %.3f to %.3f mm", st->gap_min,
                 st->gap_max);
    if (n_padding && n < max)
        snprintf(lines[n++], 256, "Pixel padding: %zu voxels excluded (no data)", n_padding);
    cJSON *iss = st->qc ? cJSON_GetObjectItem(st->qc, "issues") : NULL;
    cJSON *it;
    cJSON_ArrayForEach(it, iss)
    {
        const char *m = cJSON_GetStringValue(cJSON_GetObjectItem(it, "message"));
        if (m && n < max)
            snprintf(lines[n++], 256, "%s", m);
    }
    if (n == 0 && n < max)
        snprintf(lines[n++], 256, "Assembly: no missing slices, no gantry tilt, no uneven "
                                  "spacing, no pixel padding");
    return n;
}

static int wants_derived(const char *outputs)
{
    return outputs &&
           (strstr(outputs, "dicom") || strstr(outputs, "seg") || wants_source_results(outputs));
}

/* The rule's outputs of one processed stack ("dicom", "seg", "overlay", "sr"), from the
 * recipe's context; src_vol is the stack before the recipe (NULL unless overlay/sr). */
static int write_derived(run_state *rs, const rp_stack *st, const rp_dcm_info *const *infos,
                         const rp_step_ctx *ctx, const rp_volume *src_vol, size_t n_padding)
{
    const rp_process_opts *o = rs->o;
    if (!wants_derived(o->outputs))
        return 0;
    char lines[16][256];
    const char *findings[16];
    size_t nf = qc_findings(st, n_padding, lines, 16);
    for (size_t i = 0; i < nf; i++)
        findings[i] = lines[i];
    int nz = st->nz_acquired;
    const char **srcs = calloc((size_t)(nz > 0 ? nz : 1), sizeof *srcs);
    if (!srcs)
        return RP_ENOMEM;
    for (int z = 0; z < nz; z++)
        srcs[z] = infos[st->slice[z].file]->path;
    rp_derived_request dr = {.outputs = o->outputs,
                             .uid_root = o->uid_root && o->uid_root[0] ? o->uid_root
                                                                       : rs->uid_root,
                             .rule_name = o->rule_name ? o->rule_name : "recipe",
                             .recipe = o->recipe,
                             .ctx = ctx,
                             .src_files = srcs,
                             .n_src = (size_t)nz,
                             .out_dir = rs->out_dir,
                             .src_vol = src_vol,
                             .src_hu = !strcmp(st->ref->modality, "CT"),
                             .qc_findings = findings,
                             .n_qc = nf,
                             .caption = o->overlay_caption ? o->overlay_caption
                                                           : "NOT FOR DIAGNOSIS"};
    (void)infos;
    size_t n = 0;
    int rc = rp_derived_write_outputs(&dr, &n);
    free(srcs);
    if (rc)
        fail(rs, rc, "derived DICOM: %s", rp_strerror(rc));
    else
        RP_INFO("process", "derived DICOM written files=%zu dir=%s/dicom", n, rs->out_dir);
    return rc;
}

/* 1 when the resample step (recipe step 1) makes the grid smaller than the stack's. The
 * deferred first pass saves the native grid's float volume, which pays only where that volume
 * is the job's largest: where resampling grows the grid (LIDC-0001's 2.5 mm slices to 1 mm)
 * the output is the peak either way and the float path's in-place passes reuse the native
 * volume's pages (7 interleaved pairs: LIDC 0.466 deferred vs 0.447 s float; the 300-slice CT
 * at 1.25 mm, whose grid shrinks, 0.66 vs 0.68 s and no 315 MB float volume). */
static int grid_shrinks(const rp_recipe *rec, const rp_stack *st)
{
    cJSON *d = rp_recipe_describe(rec);
    const cJSON *pa = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(d, 1), "params");
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(pa, "spacing_mm");
    const double old[3] = {st->dx, st->dy, st->dz};
    double f = 1;
    int ok = cJSON_IsArray(sp) && cJSON_GetArraySize(sp) == 3;
    for (int a = 0; ok && a < 3; a++) {
        double s = cJSON_GetArrayItem(sp, a)->valuedouble;
        if (s > 0 && old[a] > 0)
            f *= old[a] / s;
    }
    cJSON_Delete(d);
    return ok && f < 1.0;
}

/* 1 when the stack feeds the recipe as a deferred volume (rp_pf_deferred): the recipe starts
 * `hu resample(...)` and the grid shrinks (above), the stack is 3-D CT in zero-copy form with
 * integer samples, and nothing needs the float volume before the recipe (overlay / report
 * keep a copy of it). RP_PROCESS_DEFER=0 forces the float path, =1 the deferred one whenever
 * it is possible (the test that compares the two). */
static int defer_ok(const run_state *rs, const rp_recipe *rec, const rp_stack *st,
                    const rp_stack_data *d)
{
    const char *force = getenv("RP_PROCESS_DEFER");
    if (force && force[0] == '0')
        return 0;
    return rp_recipe_nsteps(rec) >= 2 && !strcmp(rp_recipe_step_name(rec, 0), "hu") &&
           !strcmp(rp_recipe_step_name(rec, 1), "resample") && st->nt == 1 &&
           !strcmp(st->ref->modality, "CT") && !d->data && !d->pad_mask &&
           !wants_source_results(rs->o->outputs) &&
           ((force && force[0] == '1') || grid_shrinks(rec, st));
}

static int run_recipe(run_state *rs, const rp_stack *st, const rp_dcm_info *const *infos,
                      rp_stack_data *d, const char *stem, const char *nii_path, cJSON *sqc,
                      int dim_out[4], rp_nifti_opts *no, int *datatype_out)
{
    char err[512] = "";
    rp_recipe *rec = NULL;
    int rc = rp_recipe_parse(rs->o->recipe, &rec, err, sizeof err);
    if (rc) {
        fail(rs, rc, "recipe: %s", err);
        return rc;
    }
    if (st->geometry_unknown) {
        /* a placeholder affine must never reach a step that moves voxels in space */
        static const char *const spatial[] = {"resample", "reorient", "crop", "crop_or_pad",
                                              "patches", "register"};
        for (size_t i = 0; i < rp_recipe_nsteps(rec); i++)
            for (size_t k = 0; k < sizeof spatial / sizeof spatial[0]; k++)
                if (!strcmp(rp_recipe_step_name(rec, i), spatial[k])) {
                    cJSON_AddStringToObject(sqc, "refused", "geometry unknown");
                    fail(rs, RP_EUNSUPPORTED, "%s: step %s refused: geometry unknown (%s)",
                         stem, spatial[k], st->geometry_reason);
                    rp_recipe_free(rec);
                    return RP_EUNSUPPORTED;
                }
    }
    double t_conv = rp_mono_s();
    size_t n = (size_t)st->nx * st->ny * st->nz * st->nt;
    /* The padding mask: the loader's, or built here in the conversion pass when the loader
     * handed the decoded slices over as they lie (a series that declares Pixel Padding). */
    rp_mask *pad = NULL;
    uint8_t *pad_all = d->pad_mask;
    int any_pad = 0;
    /* only slices handed over as decoded (no contiguous copy): after a grid correction the
     * loader dropped its mask because padding no longer maps onto the new grid, and values
     * interpolated from padding are no longer the padding value */
    const int direct = d->data == NULL;
    for (int k = 0; direct && k < st->n_refs && !d->pad_mask; k++)
        any_pad |= infos[st->slice[k].file]->has_padding_value &&
                   infos[st->slice[k].file]->samples_per_pixel == 1;
    /* built here for a 3-D stack: packed straight away (volume.h), never whole as bytes */
    const int packed = any_pad && !d->pad_mask && st->nt == 1;
    if (d->pad_mask || any_pad) {
        pad = packed ? rp_mask_new_bits(st->nx, st->ny, st->nz, "padding")
                     : rp_mask_new(st->nx, st->ny, st->nz, "padding");
        if (pad && !d->pad_mask && !packed)
            pad_all = st->nt == 1 ? pad->data : malloc(n);
        if (!pad || (!pad_all && !packed)) {
            rp_mask_free(pad);
            rp_recipe_free(rec);
            return RP_ENOMEM;
        }
        memcpy(pad->affine, st->affine, sizeof pad->affine);
    }
    rp_volume *v = NULL;
    float fill = NAN;
    if (defer_ok(rs, rec, st, d) && (!pad || packed)) {
        /* `hu resample(...)` first: the first resampling pass reads the decoded slices, and
         * the float volume at the native grid is never written (volume.h, deferred) */
        rp_vol_source *src = NULL;
        rc = rp_pf_deferred(d, st, infos, packed ? pad : NULL, &src);
        if (!rc && !(v = rp_volume_new_deferred(st->nx, st->ny, st->nz, src))) {
            src->release(src->user);
            free(src);
            rc = RP_ENOMEM;
        }
        if (!rc) {
            fill = src->stats.lo;
            RP_DEBUG(MOD, "%s: native slices read by the first resampling pass", stem);
        } else if (rc != RP_EUNSUPPORTED) {
            fail(rs, rc, "%s: reading the decoded slices: %s", stem, rp_strerror(rc));
            rp_mask_free(pad);
            rp_recipe_free(rec);
            return rc;
        }
        rc = 0;
    }
    if (!v && !(v = rp_volume_new(st->nx, st->ny, st->nz, st->nt))) {
        if (pad_all && pad_all != d->pad_mask && pad && pad_all != pad->data)
            free(pad_all);
        rp_mask_free(pad);
        rp_recipe_free(rec);
        return RP_ENOMEM;
    }
    /* one parallel pass, slice by slice: HU (slope/intercept) straight into the working
     * volume */
    rp_vstats native;
    rp_vstats_init(&native);
    if (v->data)
        rc = rp_pf_to_float(d, st, infos, v->data, d->pad_mask || packed ? NULL : pad_all,
                            packed ? pad : NULL, &native);
    if (rc) {
        fail(rs, rc, "%s: samples of type %d cannot feed a recipe", stem, (int)d->type);
        if (pad_all && pad_all != d->pad_mask && pad && pad_all != pad->data)
            free(pad_all);
        rp_mask_free(pad);
        rp_volume_free(v);
        rp_recipe_free(rec);
        return rc;
    }
    if (pad && !packed && pad_all != pad->data) /* the first volume's part is the mask */
        memcpy(pad->data, pad_all, (size_t)st->nx * st->ny * st->nz);
    if (pad && d->n_padding > 0) {
        /* Pixel Padding is "no data", not tissue: fill it with the lowest real value (air for
         * CT) so steps never see e.g. -3024 HU; the mask goes out as <stem>_mask-padding. */
        float lo = !v->data ? fill /* the deferred rows hold it already */
                   : packed ? rp_pf_fill_padding_packed(v->data, pad)
                            : rp_pf_fill_padding(v->data, pad_all, n);
        if (isfinite(lo)) {
            cJSON *pq = cJSON_AddObjectToObject(sqc, "padding");
            cJSON_AddNumberToObject(pq, "voxels", (double)d->n_padding);
            cJSON_AddNumberToObject(pq, "filled_with", lo);
            cJSON_AddStringToObject(pq, "mask", "padding");
        }
    }
    if (pad && !packed && pad_all != pad->data && pad_all != d->pad_mask)
        free(pad_all);
    /* the recipe's masks go packed in bits to the writer (rp_recipe_run_packed): so does this
     * one, which is then 1/8 of the fresh memory the resampled copy would need as bytes */
    if (pad && rp_mask_pack(pad) != 0) {
        rp_mask_free(pad);
        rp_volume_free(v);
        rp_recipe_free(rec);
        return RP_ENOMEM;
    }
    {
        /* the float volume replaces the native pixels: never hold both longer; the sidecar
         * still needs the figures */
        rp_stack_data keep = *d;
        rp_stack_data_free(d);
        d->type = keep.type;
        d->scl_slope = keep.scl_slope;
        d->scl_inter = keep.scl_inter;
        d->n_padding = keep.n_padding;
        d->inverted_mono1 = keep.inverted_mono1;
    }
    memcpy(v->affine, st->affine, sizeof v->affine);
    rp_volume_update_spacing(v);
    /* overlay and report show and measure the source as assembled, not the recipe's output */
    rp_volume *srcv = wants_source_results(rs->o->outputs) ? rp_volume_clone(v) : NULL;
    const rp_dcm_info *in = st->ref;
    rp_series_info info;
    memset(&info, 0, sizeof info);
    rp_strlcpy(info.modality, in->modality, sizeof info.modality);
    rp_strlcpy(info.body_part, in->body_part, sizeof info.body_part);
    rp_strlcpy(info.series_description, in->series_description, sizeof info.series_description);
    rp_strlcpy(info.series_uid, in->series_uid, sizeof info.series_uid);
    rp_strlcpy(info.study_uid, in->study_uid, sizeof info.study_uid);
    rp_strlcpy(info.photometric, in->photometric, sizeof info.photometric);
    info.window_center = in->n_windows ? in->window_center[0] : 0;
    info.window_width = in->n_windows ? in->window_width[0] : -1;
    info.slice_thickness = isnan(in->slice_thickness) ? -1 : in->slice_thickness;
    info.bits_stored = in->bits_stored;
    info.repetition_time = isnan(in->repetition_time) ? -1 : in->repetition_time;
    info.echo_time = isnan(in->echo_time) ? -1 : in->echo_time;
    info.inversion_time = isnan(in->inversion_time) ? -1 : in->inversion_time;
    info.dcm = in;
    rp_step_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.vol = v;
    ctx.info = &info;
    if (v->data && !(pad && d->n_padding > 0)) {
        /* no padding filled since: the runner's first figures (a deferred volume's come
         * with its source) */
        ctx.stats = native;
        ctx.stats_of = v->data;
    }
    ctx.qc = cJSON_AddObjectToObject(sqc, "recipe");
    cJSON_AddStringToObject(ctx.qc, "text", rs->o->recipe);
    char hex[65];
    if (rp_recipe_hash(rec, hex) == 0)
        cJSON_AddStringToObject(ctx.qc, "hash", hex);
    ctx.out_dir = rs->out_dir;
    ctx.out_stem = stem;
    ctx.writers = rp_pipeline_step_io();
    ctx.extra_outputs = cJSON_AddArrayToObject(sqc, "extra_outputs");
    if (pad)
        rp_step_ctx_add_mask(&ctx, pad);
    cJSON *tq = cJSON_GetObjectItem(sqc, "timing_s");
    if (!tq)
        tq = cJSON_AddObjectToObject(sqc, "timing_s");
    cJSON_AddNumberToObject(tq, "to_float", round((rp_mono_s() - t_conv) * 1e4) / 1e4);
    double t_run = rp_mono_s();
    rc = rp_recipe_run_packed(rec, &ctx);
    cJSON_AddNumberToObject(tq, "recipe", round((rp_mono_s() - t_run) * 1e4) / 1e4);
    if (rc) {
        fail(rs, rc, "%s: recipe failed: %s", stem, ctx.err);
        cJSON_AddStringToObject(sqc, "error", ctx.err);
    } else {
        rp_nifti_store store;
        double tw = rp_mono_s();
        /* a clip left HU bounds and the last statistics found no NaN: no pass to choose */
        cJSON *last =
            cJSON_GetArrayItem(cJSON_GetObjectItem(ctx.qc, "steps"),
                               cJSON_GetArraySize(cJSON_GetObjectItem(ctx.qc, "steps")) - 1);
        cJSON *nf = cJSON_GetObjectItem(cJSON_GetObjectItem(last, "after"), "nonfinite");
        double bounds[2] = {ctx.hu_lo, ctx.hu_hi};
        int known = nf && cJSON_IsNumber(nf) && nf->valuedouble == 0;
        rc = rp_nifti_store_choose(ctx.vol, &rs->dtype, ctx.hu_known, ctx.hu_scale, ctx.hu_offset,
                                   known ? bounds : NULL, &store, err, sizeof err);
        /* A recipe's image holds interpolated values (int16 on a 0.1 HU grid, or float32):
         * their low bytes are noise, LZ matches are rare, and level 6 (igzip 2) buys ~0.2 %
         * of size for ~8 % more compression CPU than level 1 (igzip 1; LIDC-0001: 59.3 vs
         * 59.4 MB), so the image goes out at level 1 unless a level was asked for */
        rp_nifti_opts io = *no;
        if (rs->o->gzip_level <= 0)
            io.level = 1;
        if (!rc)
            rc = rp_nifti_write_volume_store(nii_path, ctx.vol, &store, &io, err, sizeof err);
        cJSON_AddNumberToObject(tq, "write_image", round((rp_mono_s() - tw) * 1e4) / 1e4);
        tw = rp_mono_s();
        if (rc) {
            fail(rs, rc, "%s", err);
        } else {
            cJSON_AddItemToObject(sqc, "storage", rp_pf_store_json(&store, &rs->dtype, io.level));
            *datatype_out = store.datatype;
        }
        for (int i = 0; i < 4; i++)
            dim_out[i] = ctx.vol->dim[i];
        /* Masks are long runs of 0 and 1: level 2 (igzip 2, ~9 GB/s per core), unless a
         * level was asked for */
        rp_nifti_opts mo = *no;
        if (rs->o->gzip_level <= 0)
            mo.level = 2;
        for (int m = 0; m < ctx.n_masks && !rc; m++) {
            rp_mask *mk = ctx.masks[m];
            char mp[1400];
            snprintf(mp, sizeof mp, "%s/%s_mask-%s.nii%s", rs->out_dir, stem, mk->name,
                     no->gzip ? ".gz" : "");
            rc = rp_nifti_write_mask(mp, mk, &mo, err, sizeof err);
            if (rc)
                fail(rs, rc, "%s", err);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "kind", "mask");
            cJSON_AddStringToObject(e, "name", mk->name);
            cJSON_AddStringToObject(e, "path", mp);
            cJSON_AddItemToArray(ctx.extra_outputs, e);
        }
        cJSON_AddNumberToObject(tq, "write_masks", round((rp_mono_s() - tw) * 1e4) / 1e4);
        /* derived DICOM, SEG, overlay and SR read the masks as bytes */
        for (int m = 0; m < ctx.n_masks && !rc && wants_derived(rs->o->outputs); m++)
            rc = rp_mask_unpack(ctx.masks[m]);
        if (!rc)
            rc = write_derived(rs, st, infos, &ctx, srcv, d->n_padding);
    }
    rp_volume_free(srcv);
    rp_step_ctx_release(&ctx);
    rp_recipe_free(rec);
    return rc;
}

static void process_stack(run_state *rs, rp_stack *st, const rp_dcm_info *const *infos, cJSON *sqc)
{
    const rp_process_opts *o = rs->o;
    const rp_dcm_info *in = st->ref;
    char err[1400] = "";
    rp_stack_data d;
    double t0 = rp_mono_s();
    int with_recipe = o->recipe && o->recipe[0];
    /* a recipe reads the decoded slices where they lie and builds the padding mask in its
     * conversion pass when it can (rp_pf_direct_ok), else the loader gathers and masks */
    unsigned lf = !with_recipe          ? 0
                  : rp_pf_direct_ok(st) ? RP_LOAD_ROWS_AS_STORED /* flipped while converting */
                                        : RP_LOAD_PAD_MASK | RP_LOAD_CONTIGUOUS;
    if (st->need_resample)
        lf |= RP_LOAD_CONTIGUOUS;
    rp_dwi dwi; /* diffusion table; derived trace volumes leave the stack before loading */
    int rc = rp_dwi_build(st, infos, &dwi);
    if (!rc)
        rp_dwi_drop_volumes(st, &dwi);
    if (!rc)
        rc = rp_stack_load(st, infos, rs->pix, rs->refs, lf, rs->threads, &d, err, sizeof err);
    else
        snprintf(err, sizeof err, "out of memory building the diffusion table");
    if (rc) {
        rp_dwi_free(&dwi);
        cJSON_AddStringToObject(sqc, "error", err);
        cJSON_AddStringToObject(sqc, "status", "failed");
        fail(rs, rc, "%s", err);
        RP_ERROR(MOD, "decode failed series=%s reason=\"%s\"", in->series_uid, err);
        return;
    }
    if (o->philips_float)
        rp_philips_float_apply(st, infos, &d);
    if (st->need_resample) {
        if (!o->resample_irregular && !st->uneven) {
            /* evenly spaced but sheared (gantry tilt): the voxels stay as acquired and the
             * sform carries the shear exactly; the qform can only be the nearest rigid one */
            cJSON_AddStringToObject(sqc, "geometry",
                                    "sheared grid kept: sform exact (with shear), qform nearest "
                                    "rigid; no resampling");
        } else if (!o->resample_irregular) {
            cJSON_AddStringToObject(sqc, "error",
                                    "uneven slice spacing cannot be one affine and resampling "
                                    "is off");
            cJSON_AddStringToObject(sqc, "status", "failed");
            fail(rs, RP_EGEOM,
                 "series %s: uneven slice spacing (%.3f to %.3f mm) and resampling is off",
                 in->series_uid, st->gap_min, st->gap_max);
            rp_stack_data_free(&d);
            rp_dwi_free(&dwi);
            return;
        }
        rc = o->resample_irregular ? rp_stack_resample(st, &d, err, sizeof err) : 0;
        if (rc) {
            cJSON_AddStringToObject(sqc, "error", err);
            cJSON_AddStringToObject(sqc, "status", "failed");
            fail(rs, rc, "%s", err);
            rp_stack_data_free(&d);
            rp_dwi_free(&dwi);
            return;
        }
    }
    double t_load = rp_mono_s() - t0;
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(sqc, "timing_s"), "load",
                            round(t_load * 1e4) / 1e4);
    /* name: [PatientID_]<SeriesNumber>_<SeriesDescription><label> */
    char desc[80], num[32], pid[80] = "", want[300], stem[320];
    sanitize(in->series_description[0] ? in->series_description : in->protocol_name, desc,
             sizeof desc);
    if (in->series_number >= 0)
        snprintf(num, sizeof num, "%d", in->series_number);
    else
        rp_strlcpy(num, "x", sizeof num);
    if (o->privacy >= RP_PRIVACY_FILENAME && in->patient_id[0]) {
        char s[70];
        sanitize(in->patient_id, s, sizeof s);
        snprintf(pid, sizeof pid, "%s_", s);
    }
    snprintf(want, sizeof want, "%s%s_%s%s", pid, num, desc[0] ? desc : in->modality, st->label);
    unique_stem(rs, want, stem, sizeof stem);
    char nii[1400], js[1400];
    snprintf(nii, sizeof nii, "%s/%s.nii%s", rs->out_dir, stem, o->gzip ? ".gz" : "");
    snprintf(js, sizeof js, "%s/%s.json", rs->out_dir, stem);
    rp_nifti_opts no;
    memset(&no, 0, sizeof no);
    no.gzip = o->gzip;
    no.level = o->gzip_level;
    no.threads = rs->threads;
    no.tr_s = st->nt > 1 && !isnan(in->repetition_time) ? in->repetition_time / 1000.0 : 0;
    snprintf(no.descrip, sizeof no.descrip, "radprep %s", RP_VERSION);
    int dim[4] = {st->nx, st->ny, st->nz, st->nt};
    int out_type = (int)d.type;
    t0 = rp_mono_s();
    if (o->recipe && o->recipe[0]) {
        rc = run_recipe(rs, st, infos, &d, stem, nii, sqc, dim, &no, &out_type);
    } else {
        if (d.data)
            rc = rp_nifti_write(nii, dim, (int)d.type, d.data, st->affine, d.scl_slope, d.scl_inter,
                                &no, err, sizeof err);
        else
            rc = rp_nifti_write_slices(nii, dim, (int)d.type, (const void *const *)d.slice,
                                       st->affine, d.scl_slope, d.scl_inter, &no, err, sizeof err);
        if (rc)
            fail(rs, rc, "%s", err);
    }
    double t_write = rp_mono_s() - t0;
    if (rc) {
        cJSON_AddStringToObject(sqc, "status", "failed");
        rp_stack_data_free(&d);
        rp_dwi_free(&dwi);
        return;
    }
    cJSON *side = rp_sidecar_build(st, infos, &d, o->privacy >= RP_PRIVACY_SIDECAR);
    if (side && o->recipe && o->recipe[0]) {
        cJSON *rq = cJSON_GetObjectItem(sqc, "recipe");
        if (rq)
            cJSON_AddItemToObject(cJSON_GetObjectItem(side, "Provenance"), "Recipe",
                                  cJSON_Duplicate(rq, 1));
        cJSON *sto = cJSON_GetObjectItem(sqc, "storage");
        if (sto)
            cJSON_AddItemToObject(cJSON_GetObjectItem(side, "Provenance"), "Storage",
                                  cJSON_Duplicate(sto, 1));
    }
    if (side)
        cJSON_AddNumberToObject(cJSON_GetObjectItem(side, "Provenance"), "Threads", rs->threads);
    rc = side ? rp_json_write(js, side, err, sizeof err) : RP_ENOMEM;
    cJSON_Delete(side);
    if (!rc && dwi.n) {
        char sp[1400];
        snprintf(sp, sizeof sp, "%s/%s", rs->out_dir, stem);
        rc = rp_dwi_write(sp, &dwi, err, sizeof err);
    }
    rp_dwi_free(&dwi);
    if (rc) {
        fail(rs, rc, "%s", err);
        cJSON_AddStringToObject(sqc, "status", "failed");
        rp_stack_data_free(&d);
        return;
    }
    cJSON_AddStringToObject(sqc, "status", "written");
    cJSON_AddStringToObject(sqc, "nifti", nii);
    cJSON_AddStringToObject(sqc, "sidecar", js);
    cJSON *dj = cJSON_AddArrayToObject(sqc, "dims");
    for (int i = 0; i < 4; i++)
        cJSON_AddItemToArray(dj, cJSON_CreateNumber(dim[i]));
    cJSON_AddNumberToObject(sqc, "nifti_datatype", out_type);
    if (d.n_padding)
        cJSON_AddNumberToObject(sqc, "padding_voxels", (double)d.n_padding);
    if (d.inverted_mono1)
        cJSON_AddBoolToObject(sqc, "monochrome1_inverted", 1);
    add_output(rs, st, infos, nii, js, dim);
    RP_INFO(MOD, "wrote stem=%s dims=%dx%dx%dx%d load_s=%.3f write_s=%.3f", stem, dim[0], dim[1],
            dim[2], dim[3], t_load, t_write);
    rp_stack_data_free(&d);
}

/* Storage SOP classes that carry no image: skipping them is not a failure. Anything else
 * without Pixel Data (an image class, or no class at all) is a broken image object. */
static int image_class(const rp_dcm_info *in)
{
    static const char *const non_image[] = {
        "1.2.840.10008.5.1.4.1.1.88.",  /* structured reports, KOS */
        "1.2.840.10008.5.1.4.1.1.104.", /* encapsulated PDF/CDA/STL */
        "1.2.840.10008.5.1.4.1.1.11.",  /* presentation states */
        "1.2.840.10008.5.1.4.1.1.9.",   /* waveforms */
        "1.2.840.10008.5.1.4.1.1.66", /* raw data, registration, fiducials, segmentation surfaces */
        "1.2.840.10008.5.1.4.1.1.67", /* real world value mapping */
        "1.2.840.10008.5.1.4.1.1.481.3",
        "1.2.840.10008.5.1.4.1.1.481.4",
        "1.2.840.10008.5.1.4.1.1.481.5",
        "1.2.840.10008.5.1.4.1.1.481.6",
        "1.2.840.10008.5.1.4.1.1.481.7",
        "1.2.840.10008.5.1.4.1.1.481.8",
        "1.2.840.10008.5.1.4.1.1.481.9",
        "1.2.840.10008.5.1.4.34.",     /* RT plans, records */
        "1.2.840.10008.5.1.4.1.1.68.", /* surface */
        "1.2.840.10008.5.1.4.1.1.78.",
        "1.2.840.10008.5.1.4.1.1.79.",
        "1.2.840.10008.5.1.4.1.1.80.",
        "1.2.840.10008.5.1.4.1.1.81.",
        "1.2.840.10008.5.1.4.1.1.82.", /* measurements */
        "1.2.840.10008.5.1.4.1.1.90.",
        "1.2.840.10008.5.1.4.1.1.200.",
        "1.2.840.10008.5.1.4.38.",
        "1.2.840.10008.5.1.4.43.",
        "1.2.840.10008.5.1.4.44.",
        "1.2.840.10008.5.1.4.45.",
        NULL};
    if (!in->sop_class_uid[0])
        return in->rows > 0 || in->cols > 0;
    for (int i = 0; non_image[i]; i++)
        if (!strncmp(in->sop_class_uid, non_image[i], strlen(non_image[i])))
            return 0;
    return 1;
}

/* Files that are plainly something else (text such as README/JSON/TSV, NIfTI, PNG, JPEG,
 * gzip): skipped in a folder walk. Anything binary that could be a damaged DICOM stays a
 * failure with the reader's reason. */
static int plainly_not_dicom(const char *path)
{
    unsigned char b[132];
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    if (n == sizeof b && !memcmp(b + 128, "DICM", 4))
        return 0;
    if (n >= 4) {
        uint32_t le = b[0] | (b[1] << 8) | (b[2] << 16) | ((uint32_t)b[3] << 24);
        uint32_t be = ((uint32_t)b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3];
        if (le == 348 || be == 348 || le == 540 || be == 540)
            return 1; /* NIfTI-1 / NIfTI-2 */
        if (!memcmp(b, "\x89PNG", 4) || (b[0] == 0xFF && b[1] == 0xD8) ||
            (b[0] == 0x1F && b[1] == 0x8B))
            return 1;
    }
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (b[i] < 0x09 || (b[i] > 0x0D && b[i] < 0x20) || b[i] == 0x7F)
            return 0; /* binary */
    return 1;         /* text */
}

typedef struct file_slot {
    const char *path;
    rp_dcm_info *info;
    void *pix; /* all frames decoded while reading the header, or NULL */
    int rc;
    char err[512];
} file_slot;

static int cmp_series(const void *a, const void *b)
{
    const file_slot *x = *(const file_slot *const *)a, *y = *(const file_slot *const *)b;
    int c = strcmp(x->info->series_uid, y->info->series_uid);
    if (c)
        return c;
    if (x->info->series_number != y->info->series_number)
        return x->info->series_number < y->info->series_number ? -1 : 1;
    return strcmp(x->path, y->path);
}

const rp_conf_rule *rp_pipeline_match_rule(const rp_conf *c, const char *modality,
                                           const char *body_part,
                                           const char *series_description,
                                           double slice_thickness)
{
    rp_series_info info;
    memset(&info, 0, sizeof info);
    rp_strlcpy(info.modality, modality, sizeof info.modality);
    rp_strlcpy(info.body_part, body_part, sizeof info.body_part);
    rp_strlcpy(info.series_description, series_description, sizeof info.series_description);
    info.slice_thickness = slice_thickness;
    info.repetition_time = info.echo_time = info.inversion_time = -1;
    return rp_recipe_match(c, &info);
}

int rp_pipeline_process_files(const rp_conf *c, const char *const *files, size_t n,
                              const char *out_dir, const rp_process_opts *opts,
                              rp_process_result *res)
{
    (void)c;
    memset(res, 0, sizeof *res);
    rp_process_opts dflt;
    if (!opts) {
        rp_process_opts_init(&dflt);
        opts = &dflt;
    }
    if (!out_dir || (n && !files)) {
        rp_strlcpy(res->reason, "no output directory or no files", sizeof res->reason);
        return RP_EINVAL;
    }
    if (opts->recipe && opts->recipe[0]) {
        char e[400];
        if (rp_recipe_check(opts->recipe, e, sizeof e) != 0) {
            snprintf(res->reason, sizeof res->reason, "recipe: %s", e);
            return RP_ECONF;
        }
    }
    if (rp_mkdir_p(out_dir, 0755) != 0) {
        snprintf(res->reason, sizeof res->reason, "cannot create %s: %s", out_dir, strerror(errno));
        return RP_EIO;
    }
    rp_dcm_global_init();
    /* Slices are freed one by one while the volume fills up; a fixed mmap threshold makes
     * glibc return each one to the system at once (the dynamic threshold would keep them in
     * the heap and the process would hold the series twice). */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    /* Every core this process was given, every time: a dynamic team (libgomp weighs the
     * load average) ran a batch job on one core of two. A node job's share comes in as
     * OMP_NUM_THREADS from the supervisor; taskset / Slurm / a cgroup quota are honoured. */
    int threads = rp_pf_threads(opts->threads);
    int saved_threads = omp_get_max_threads(), saved_dynamic = omp_get_dynamic();
    omp_set_dynamic(0);
    omp_set_num_threads(threads);
    double t_start = rp_mono_s();
    res->n_inputs = (int)n;
    run_state rs = {.o = opts,
                    .out_dir = out_dir,
                    .res = res,
                    .uid_root = c ? c->uid_root : NULL,
                    .threads = threads};
    rp_dtype_parse(NULL, &rs.dtype, NULL, 0);
    if (c && opts->rule_name)
        for (size_t i = 0; i < c->n_rules; i++)
            if (!strcmp(c->rules[i].name, opts->rule_name) &&
                rp_dtype_parse(c->rules[i].dtype, &rs.dtype, res->reason, sizeof res->reason)) {
                omp_set_num_threads(saved_threads);
                omp_set_dynamic(saved_dynamic);
                return RP_ECONF;
            }
    rs.qc = cJSON_CreateObject();
    cJSON *sw = cJSON_AddObjectToObject(rs.qc, "software");
    cJSON_AddStringToObject(sw, "name", "radprep");
    cJSON_AddStringToObject(sw, "version", RP_VERSION);
    cJSON_AddNumberToObject(rs.qc, "n_inputs", (double)n);
    cJSON *jfailed = cJSON_AddArrayToObject(rs.qc, "failed_inputs");
    cJSON *jskipped = cJSON_AddArrayToObject(rs.qc, "skipped_inputs");
    cJSON *jseries = cJSON_AddArrayToObject(rs.qc, "series");

    /* sorted copy: the outcome must not depend on the order files were listed in */
    const char **sorted = malloc((n ? n : 1) * sizeof *sorted);
    file_slot *slots = calloc(n ? n : 1, sizeof *slots);
    file_slot **ok = malloc((n ? n : 1) * sizeof *ok);
    if (!sorted || !slots || !ok) {
        free(sorted);
        free(slots);
        free(ok);
        cJSON_Delete(rs.qc);
        return RP_ENOMEM;
    }
    memcpy(sorted, files, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, cmp_str);
    /* One parse per file: while the budget lasts, pixels are decoded in the same read as
     * the header (the budget bounds memory when a folder holds many series). */
    long long budget = opts->preload_mb == 0  ? 1024LL << 20
                       : opts->preload_mb < 0 ? 0
                                              : opts->preload_mb << 20;
    long long used = 0;
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
    for (size_t i = 0; i < n; i++) {
        slots[i].path = sorted[i];
        int preload;
#pragma omp critical(rp_preload)
        preload = used < budget;
        if (preload) {
            size_t nb = 0;
            slots[i].rc = rp_dcm_read_info_pixels_pooled(sorted[i], &slots[i].info, &slots[i].pix,
                                                         &nb, slots[i].err, sizeof slots[i].err);
#pragma omp atomic
            used += (long long)nb;
        } else {
            slots[i].rc =
                rp_dcm_read_info(sorted[i], &slots[i].info, slots[i].err, sizeof slots[i].err);
        }
        if (slots[i].rc && slots[i].info) {
            /* header fine, pixels not: the file fails as a whole */
            rp_dcm_info_free(slots[i].info);
            slots[i].info = NULL;
        }
    }
    cJSON_AddNumberToObject(rs.qc, "read_s", round((rp_mono_s() - t_start) * 1e4) / 1e4);
    size_t nok = 0;
    for (size_t i = 0; i < n; i++) {
        if (slots[i].rc && opts->skip_non_dicom && plainly_not_dicom(slots[i].path)) {
            res->n_skipped++;
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "file", slots[i].path);
            cJSON_AddStringToObject(e, "reason", "not a DICOM file");
            cJSON_AddItemToArray(jskipped, e);
            continue;
        }
        if (slots[i].rc) {
            res->n_failed++;
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "file", slots[i].path);
            cJSON_AddStringToObject(e, "error", slots[i].err);
            cJSON_AddStringToObject(e, "code", rp_strerror(slots[i].rc));
            cJSON_AddItemToArray(jfailed, e);
            RP_WARN(MOD, "unreadable input file=%s reason=\"%s\"", slots[i].path, slots[i].err);
            fail(&rs, slots[i].rc, "%s: %s", slots[i].path, slots[i].err);
            continue;
        }
        if (!slots[i].info->has_pixel_data && image_class(slots[i].info)) {
            res->n_failed++;
            char why[300];
            snprintf(why, sizeof why,
                     "no Pixel Data in an image object (SOP class %s, %dx%d "
                     "declared)",
                     slots[i].info->sop_class_uid[0] ? slots[i].info->sop_class_uid : "absent",
                     slots[i].info->cols, slots[i].info->rows);
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "file", slots[i].path);
            cJSON_AddStringToObject(e, "error", why);
            cJSON_AddStringToObject(e, "code", rp_strerror(RP_EPARSE));
            cJSON_AddItemToArray(jfailed, e);
            RP_WARN(MOD, "image without pixel data file=%s", slots[i].path);
            fail(&rs, RP_EPARSE, "%s: %s", slots[i].path, why);
            continue;
        }
        if (!slots[i].info->has_pixel_data) {
            res->n_skipped++;
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "file", slots[i].path);
            cJSON_AddStringToObject(e, "reason", "no pixel data (not an image object)");
            cJSON_AddStringToObject(e, "sop_class_uid", slots[i].info->sop_class_uid);
            cJSON_AddStringToObject(e, "modality", slots[i].info->modality);
            cJSON_AddItemToArray(jskipped, e);
            continue;
        }
        ok[nok++] = &slots[i];
    }
    qsort(ok, nok, sizeof *ok, cmp_series);
    const rp_dcm_info **infos = malloc((nok ? nok : 1) * sizeof *infos);
    void **pix = malloc((nok ? nok : 1) * sizeof *pix);
    int *refs = calloc(nok ? nok : 1, sizeof *refs);
    for (size_t a = 0; a < nok && infos && pix && refs;) {
        size_t b = a + 1;
        while (b < nok && !strcmp(ok[b]->info->series_uid, ok[a]->info->series_uid) &&
               ok[b]->info->series_number == ok[a]->info->series_number)
            b++;
        for (size_t k = a; k < b; k++) {
            infos[k - a] = ok[k]->info;
            pix[k - a] = ok[k]->pix;
            ok[k]->pix = NULL; /* owned by this series now */
            refs[k - a] = 0;
        }
        res->n_series++;
        cJSON *js = cJSON_CreateObject();
        cJSON_AddItemToArray(jseries, js);
        const rp_dcm_info *h = infos[0];
        cJSON_AddStringToObject(js, "series_uid", h->series_uid);
        cJSON_AddNumberToObject(js, "series_number", h->series_number);
        cJSON_AddStringToObject(js, "modality", h->modality);
        cJSON_AddStringToObject(js, "description", h->series_description);
        cJSON_AddNumberToObject(js, "n_files", (double)(b - a));
        cJSON *jf = cJSON_AddArrayToObject(js, "files");
        for (size_t k = a; k < b; k++)
            cJSON_AddItemToArray(jf, cJSON_CreateString(ok[k]->path));
        rp_series_asm sa;
        int rc = rp_assemble(infos, b - a, &sa);
        if (rc) {
            fail(&rs, rc, "series %s: assembly failed: %s", h->series_uid, rp_strerror(rc));
            cJSON_AddStringToObject(js, "error", rp_strerror(rc));
        } else {
            cJSON *iss = cJSON_DetachItemFromObject(sa.qc, "issues");
            cJSON_AddItemToObject(js, "issues", iss ? iss : cJSON_CreateArray());
            cJSON *iss_it;
            cJSON_ArrayForEach(iss_it, iss)
            {
                cJSON *code = cJSON_GetObjectItem(iss_it, "code");
                if (code && cJSON_IsString(code) &&
                    !strcmp(code->valuestring, "duplicate_instance"))
                    res->n_skipped++;
            }
            cJSON *jst = cJSON_AddArrayToObject(js, "stacks");
            /* how many stacks read each file: its pixels are freed after the last one */
            for (size_t s = 0; s < sa.n_stacks; s++) {
                int last = -1;
                for (int k = 0; k < sa.stack[s].n_refs; k++) {
                    int f = sa.stack[s].slice[k].file;
                    if (f == last)
                        continue;
                    int seen = 0;
                    for (int q = 0; q < k && !seen; q++)
                        seen = sa.stack[s].slice[q].file == f;
                    if (!seen)
                        refs[f]++;
                    last = f;
                }
            }
            rs.pix = pix;
            rs.refs = refs;
            for (size_t s = 0; s < sa.n_stacks; s++) {
                cJSON *sq = cJSON_CreateObject();
                cJSON_AddItemToArray(jst, sq);
                process_stack(&rs, &sa.stack[s], infos, sq);
                /* stack findings (issues, geometry) after processing: resampling adds to it */
                cJSON *ch = sa.stack[s].qc ? sa.stack[s].qc->child : NULL;
                for (; ch; ch = ch->next)
                    cJSON_AddItemToObject(sq, ch->string, cJSON_Duplicate(ch, 1));
            }
            rp_series_asm_free(&sa);
        }
        for (size_t k = 0; k < b - a; k++) {
            rp_dcm_pixels_free(pix[k]); /* files no stack used (dropped, duplicates) */
            pix[k] = NULL;
        }
        a = b;
    }
    free(infos);
    free(pix);
    free(refs);
    for (size_t i = 0; i < n; i++) {
        rp_dcm_info_free(slots[i].info);
        rp_dcm_pixels_free(slots[i].pix);
    }
    free(slots);
    free(ok);
    free(sorted);
    for (size_t i = 0; i < rs.n_stems; i++)
        free(rs.stems[i]);
    free(rs.stems);

    double total_s = rp_mono_s() - t_start;
    cJSON_AddNumberToObject(rs.qc, "threads", threads);
    cJSON_AddNumberToObject(rs.qc, "total_s", round(total_s * 1000) / 1000);
    RP_INFO(MOD, "job total files=%zu outputs=%zu threads=%d total_s=%.3f", n, res->n_outputs,
            threads, total_s);
    omp_set_num_threads(saved_threads);
    omp_set_dynamic(saved_dynamic);
    cJSON_AddNumberToObject(rs.qc, "n_failed", res->n_failed);
    cJSON_AddNumberToObject(rs.qc, "n_outputs", (double)res->n_outputs);
    cJSON_AddStringToObject(rs.qc, "status", rs.first_err ? "failed" : "ok");
    if (rs.first_err)
        cJSON_AddStringToObject(rs.qc, "reason", res->reason);
    res->qc_json = cJSON_Print(rs.qc);
    if (opts->write_qc) {
        char err[512];
        snprintf(res->qc_path, sizeof res->qc_path, "%s/qc.json", out_dir);
        if (rp_json_write(res->qc_path, rs.qc, err, sizeof err) != 0) {
            fail(&rs, RP_EIO, "%s", err);
            res->qc_path[0] = 0;
        }
    }
    cJSON_Delete(rs.qc);
    if (n == 0) {
        rp_strlcpy(res->reason, "no input files", sizeof res->reason);
        return RP_ENOENT;
    }
    if (!rs.first_err && res->n_outputs == 0 && res->n_skipped == 0) {
        rp_strlcpy(res->reason, "no image series found", sizeof res->reason);
        return RP_ENOENT;
    }
    return rs.first_err;
}

/* ---- directory walk -------------------------------------------------------------------- */

typedef struct path_list {
    char **v;
    size_t n, cap;
} path_list;

static int walk(const char *dir, path_list *pl, int depth)
{
    if (depth > 32)
        return 0;
    DIR *d = opendir(dir);
    if (!d)
        return RP_EIO;
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[4096];
        if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= sizeof p)
            continue;
        struct stat sb;
        if (stat(p, &sb) != 0)
            continue;
        if (S_ISDIR(sb.st_mode)) {
            rc = walk(p, pl, depth + 1);
        } else if (S_ISREG(sb.st_mode)) {
            if (pl->n == pl->cap) {
                size_t nc = pl->cap ? pl->cap * 2 : 256;
                char **v = realloc(pl->v, nc * sizeof *v);
                if (!v) {
                    rc = RP_ENOMEM;
                    break;
                }
                pl->v = v;
                pl->cap = nc;
            }
            pl->v[pl->n] = strdup(p);
            if (!pl->v[pl->n])
                rc = RP_ENOMEM;
            else
                pl->n++;
        }
    }
    closedir(d);
    return rc;
}

int rp_pipeline_process_dir(const rp_conf *c, const char *dir, const char *out_dir,
                            const rp_process_opts *o, rp_process_result *res)
{
    path_list pl = {0};
    int rc = walk(dir, &pl, 0);
    if (rc) {
        memset(res, 0, sizeof *res);
        snprintf(res->reason, sizeof res->reason, "cannot read directory %s: %s", dir,
                 rc == RP_EIO ? strerror(errno) : rp_strerror(rc));
    } else {
        rp_process_opts oo;
        if (o)
            oo = *o;
        else
            rp_process_opts_init(&oo);
        oo.skip_non_dicom = 1; /* a folder may hold README, NIfTI, JSON next to the DICOM */
        rc = rp_pipeline_process_files(c, (const char *const *)pl.v, pl.n, out_dir, &oo, res);
    }
    for (size_t i = 0; i < pl.n; i++)
        free(pl.v[i]);
    free(pl.v);
    return rc;
}
