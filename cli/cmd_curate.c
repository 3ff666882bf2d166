/* cli/cmd_curate — `radprep curate --out DATASET_DIR [...]`: a training dataset from the
 * outputs radprep has written, with a manifest saying exactly what went in.
 *
 * Sources: the index (the done job of the highest version of every series, db/curate.c) or,
 * with --from-dir, an outputs folder tree (`radprep process` outputs or a copy of a node's
 * outputs/<study>/<series>/v<N>/ tree). One case per image NIfTI (masks, sidecar and QC
 * montage beside it share its stem).
 *
 * Promises:
 *  - Atomic: the dataset is built in DATASET_DIR.tmp-XXXXXX and renamed over DATASET_DIR
 *    (renameat2 RENAME_EXCHANGE when it exists), so readers see the old or the new dataset.
 *    An existing DATASET_DIR that is not a radprep dataset (no manifest.json) and not empty
 *    is never replaced.
 *  - Deterministic: cases sorted by id, splits from a seeded hash, no timestamps except
 *    `created` (--no-timestamp drops it): the same sources give the same bytes.
 *  - Pseudonymous: case ids are sha256(salt, study UID, series UID); the salt lives in
 *    DATASET_DIR/.salt (kept across re-curations). Patient fields are never copied: sidecars
 *    that carry them are rewritten without; --deidentify also drops every UID.
 *  - Files are hard links to the outputs (a copy where linking is impossible, or --copy);
 *    every file's sha256 is in the manifest, and in index mode it must equal the checksum the
 *    worker recorded, else the run fails.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "cli/cli.h"
#include "common/common.h"
#include "cli/curate_internal.h"
#include "db/db.h"
#include "pipeline/augment/augment.h"
#include "pipeline/write/write.h"

#define CMD "curate"
#define MAX_MASKS 16
#define MAX_SPLITS 4
#define PATHSZ 2048

static const char usage[] =
    "usage: radprep curate --out DATASET_DIR [--from-dir OUTPUTS_DIR] [--rule NAME]\n"
    "                      [--modality M] [--since YYYY-MM-DD[THH:MM:SS]]\n"
    "                      [--layout plain|nnunet [--values hu|processed]] [--label MASK]\n"
    "                      [--link|--copy]\n"
    "                      [--split train=0.8,val=0.2 [--seed N]] [--deidentify]\n"
    "                      [--salt-file FILE] [--no-timestamp]\n"
    "                      [--augment \"SPEC\" [--copies N]] (train split only; see "
    "docs/curation.md)\n"
    "       radprep curate --executor slurm|local DIR... | --list FILE --out DATASET_DIR\n"
    "                      [--work DIR] [--rule NAME | --recipe STEPS] [options above]\n"
    "                      (series folders preprocessed first; docs/cluster.md)";

/* ---- data ---------------------------------------------------------------------------------- */

typedef struct cur_file {
    char src[PATHSZ]; /* where it is now */
    char rec_sha[65]; /* checksum the index recorded ("" when none) */
    char rel[512];    /* path inside the dataset */
    char sha[65];     /* checksum of what the dataset holds */
} cur_file;

typedef struct cur_mask {
    char name[64];
    cur_file f;
    double ml; /* < 0: unknown */
} cur_mask;

typedef struct cur_case {
    char id[48];
    char study_uid[RP_UID_MAX + 1], series_uid[RP_UID_MAX + 1];
    char modality[17], rule[64], recipe_sha[65], recipe[2048];
    int version;
    char src_dir[PATHSZ];
    char stem[256];
    int stack;   /* 1-based index of this image among its series' images */
    int nstacks; /* images of the series */
    cur_file image, sidecar, qcpng;
    int has_qcpng;
    int rewrite_sidecar; /* written from `side` instead of linked */
    cJSON *side;         /* parsed sidecar, owned */
    char aug_of[48];     /* augmented copy: the case it was made from ("" otherwise) */
    int aug_copy;        /* 1.. */
    cJSON *aug;          /* drawn parameters, owned */
    cur_mask masks[MAX_MASKS];
    int n_masks;
    int dim[4];
    double spacing[3];
    int metal_count; /* -1: unknown */
    char split[16];
    int hu_view; /* the image was placed with its HU view (nnU-Net) */
} cur_case;

typedef struct cur_opts {
    const char *out, *from_dir, *rule, *modality, *label, *salt_file;
    double since;
    int nnunet, copy, deidentify, no_timestamp;
    int values_processed; /* --values processed: nnU-Net images keep the recipe's values */
    long long seed;
    int n_splits;
    char split_name[MAX_SPLITS][16];
    double split_frac[MAX_SPLITS];
    char since_text[32], split_text[128];
    const char *augment; /* SPEC, or NULL */
    int copies;          /* augmented copies per training case */
    rp_aug_spec spec;
} cur_opts;

typedef struct cur_set {
    cur_case *c;
    size_t n, cap;
    cJSON *skipped; /* array of {source, reason} */
} cur_set;

/* ---- small helpers ------------------------------------------------------------------------- */

static void skip(cur_set *s, const char *source, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void skip(cur_set *s, const char *source, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "source", source);
    cJSON_AddStringToObject(o, "reason", reason);
    cJSON_AddItemToArray(s->skipped, o);
    RP_INFO(CMD, "skipped source=%s reason=\"%s\"", source, reason);
}

/* ---- collecting the cases of one output folder --------------------------------------------- */

typedef struct dir_meta {
    char study_uid[RP_UID_MAX + 1], series_uid[RP_UID_MAX + 1], modality[17], rule[64];
    int version;
    const rp_db_output *recorded; /* index mode: the job's outputs (checksums) */
    size_t n_recorded;
} dir_meta;

static const char *recorded_sha(const dir_meta *m, const char *path)
{
    for (size_t i = 0; i < m->n_recorded; i++)
        if (strcmp(m->recorded[i].path, path) == 0)
            return m->recorded[i].sha256;
    return "";
}

static int set_grow(cur_set *s)
{
    if (s->n < s->cap)
        return 0;
    size_t cap = s->cap ? 2 * s->cap : 32;
    cur_case *c = realloc(s->c, cap * sizeof *c);
    if (!c)
        return RP_ENOMEM;
    s->c = c;
    s->cap = cap;
    return 0;
}

/* Number of image NIfTIs (not masks) in a sorted name list. */
static int count_images(char **names, size_t n)
{
    int k = 0;
    for (size_t i = 0; i < n; i++)
        if (rp_curate_nifti_ext(names[i]) && !strstr(names[i], "_mask-"))
            k++;
    return k;
}

/* Add the cases of dir (one per image NIfTI with its sidecar). Returns 0 or a fatal error. */
static int collect_dir(cur_set *s, const cur_opts *o, const char *dir, const dir_meta *m)
{
    char **names;
    size_t n;
    int rc = rp_curate_list_dir(dir, &names, &n);
    if (rc != 0) {
        skip(s, dir, "cannot read folder: %s", strerror(errno));
        return rc == RP_ENOMEM ? rc : 0;
    }
    int nstacks = count_images(names, n), stack = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *ext = rp_curate_nifti_ext(names[i]);
        if (!ext || strstr(names[i], "_mask-"))
            continue;
        stack++;
        if ((rc = set_grow(s)) != 0)
            break;
        cur_case *c = &s->c[s->n];
        memset(c, 0, sizeof *c);
        c->metal_count = -1;
        c->stack = stack;
        c->nstacks = nstacks;
        c->version = m->version;
        rp_strlcpy(c->rule, m->rule, sizeof c->rule);
        rp_strlcpy(c->src_dir, dir, sizeof c->src_dir);
        size_t stem_len = strlen(names[i]) - strlen(ext);
        if (stem_len >= sizeof c->stem)
            continue;
        memcpy(c->stem, names[i], stem_len);
        c->stem[stem_len] = '\0';
        snprintf(c->image.src, sizeof c->image.src, "%s/%s", dir, names[i]);
        snprintf(c->sidecar.src, sizeof c->sidecar.src, "%s/%s.json", dir, c->stem);
        if (!(c->side = rp_curate_read_json(c->sidecar.src))) {
            skip(s, c->image.src, "no readable JSON sidecar %s.json", c->stem);
            continue;
        }
        const cJSON *prov = cJSON_GetObjectItemCaseSensitive(c->side, "Provenance");
        const cJSON *recipe = cJSON_GetObjectItemCaseSensitive(prov, "Recipe");
        rp_strlcpy(c->study_uid,
                   *rp_curate_jstr(prov, "StudyInstanceUID")
                       ? rp_curate_jstr(prov, "StudyInstanceUID")
                       : m->study_uid,
                   sizeof c->study_uid);
        rp_strlcpy(c->series_uid,
                   *rp_curate_jstr(prov, "SeriesInstanceUID")
                       ? rp_curate_jstr(prov, "SeriesInstanceUID")
                       : m->series_uid,
                   sizeof c->series_uid);
        rp_strlcpy(c->modality,
                   *rp_curate_jstr(c->side, "Modality") ? rp_curate_jstr(c->side, "Modality")
                                                        : m->modality,
                   sizeof c->modality);
        rp_strlcpy(c->recipe_sha, rp_curate_jstr(recipe, "hash"), sizeof c->recipe_sha);
        rp_strlcpy(c->recipe, rp_curate_jstr(recipe, "text"), sizeof c->recipe);
        const cJSON *metal = cJSON_GetObjectItemCaseSensitive(recipe, "metal");
        const cJSON *mc = cJSON_GetObjectItemCaseSensitive(metal, "count");
        if (cJSON_IsNumber(mc))
            c->metal_count = mc->valueint;
        if (!c->series_uid[0] || !c->study_uid[0]) {
            skip(s, c->image.src, "sidecar names no study/series UID");
            cJSON_Delete(c->side);
            continue;
        }
        /* filters that need the sidecar */
        if (o->modality && strcasecmp(o->modality, c->modality) != 0) {
            cJSON_Delete(c->side);
            continue;
        }
        if (o->rule && strcmp(o->rule, c->rule) != 0) {
            cJSON_Delete(c->side);
            continue;
        }
        if (rp_curate_nifti_geometry(c->image.src, c->dim, c->spacing) != 0) {
            skip(s, c->image.src, "not a readable NIfTI-1 image");
            cJSON_Delete(c->side);
            continue;
        }
        rp_strlcpy(c->image.rec_sha, recorded_sha(m, c->image.src), sizeof c->image.rec_sha);
        rp_strlcpy(c->sidecar.rec_sha, recorded_sha(m, c->sidecar.src), sizeof c->sidecar.rec_sha);
        char qc[PATHSZ];
        struct stat st;
        snprintf(qc, sizeof qc, "%s/%s_qc.png", dir, c->stem);
        if (stat(qc, &st) == 0 && S_ISREG(st.st_mode)) {
            c->has_qcpng = 1;
            rp_strlcpy(c->qcpng.src, qc, sizeof c->qcpng.src);
            rp_strlcpy(c->qcpng.rec_sha, recorded_sha(m, qc), sizeof c->qcpng.rec_sha);
        }
        /* masks: <stem>_mask-<name>.nii[.gz], sorted by name (names[] is sorted) */
        const cJSON *vols = cJSON_GetObjectItemCaseSensitive(recipe, "masks");
        for (size_t k = 0; k < n && c->n_masks < MAX_MASKS; k++) {
            const char *mext = rp_curate_nifti_ext(names[k]);
            if (!mext || strncmp(names[k], c->stem, stem_len) != 0 ||
                strncmp(names[k] + stem_len, "_mask-", 6) != 0)
                continue;
            cur_mask *mk = &c->masks[c->n_masks];
            size_t nl = strlen(names[k]) - stem_len - 6 - strlen(mext);
            if (nl == 0 || nl >= sizeof mk->name)
                continue;
            memcpy(mk->name, names[k] + stem_len + 6, nl);
            mk->name[nl] = '\0';
            snprintf(mk->f.src, sizeof mk->f.src, "%s/%s", dir, names[k]);
            rp_strlcpy(mk->f.rec_sha, recorded_sha(m, mk->f.src), sizeof mk->f.rec_sha);
            const cJSON *mv = cJSON_GetObjectItemCaseSensitive(vols, mk->name);
            const cJSON *ml = cJSON_GetObjectItemCaseSensitive(mv, "volume_ml");
            mk->ml = cJSON_IsNumber(ml) ? ml->valuedouble : -1;
            c->n_masks++;
        }
        s->n++;
    }
    rp_curate_free_names(names, n);
    return rc;
}

/* ---- sources -------------------------------------------------------------------------------- */

static void read_series_json(const char *dir, dir_meta *m, int *ok)
{
    char p[PATHSZ];
    snprintf(p, sizeof p, "%s/series.json", dir);
    cJSON *j = rp_curate_read_json(p);
    *ok = 1;
    if (!j)
        return;
    rp_strlcpy(m->rule, rp_curate_jstr(j, "rule"), sizeof m->rule);
    if (!m->study_uid[0])
        rp_strlcpy(m->study_uid, rp_curate_jstr(j, "study_uid"), sizeof m->study_uid);
    if (!m->series_uid[0])
        rp_strlcpy(m->series_uid, rp_curate_jstr(j, "series_uid"), sizeof m->series_uid);
    if (!m->modality[0])
        rp_strlcpy(m->modality, rp_curate_jstr(j, "modality"), sizeof m->modality);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "version");
    if (cJSON_IsNumber(v) && m->version <= 0)
        m->version = v->valueint;
    const char *res = rp_curate_jstr(j, "result");
    if (*res && strcmp(res, "ok") != 0)
        *ok = 0;
    cJSON_Delete(j);
}

static int from_index(cur_set *s, const cur_opts *o, const rp_conf *conf, int *exit_code)
{
    rp_db *db = NULL;
    int code = rp_cli_open_db(conf, CMD, 1, &db);
    if (code) {
        *exit_code = code;
        return RP_EIO;
    }
    rp_db_curated_version *v = NULL;
    size_t n = 0;
    int rc = rp_db_curate_versions(db, o->modality, o->since, &v, &n);
    if (rc != 0) {
        *exit_code =
            rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "cannot read the index: %s", rp_cli_errstr(rc));
        rp_db_close(db);
        return rc;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct stat st;
        if (stat(v[i].output_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            skip(s, v[i].output_dir, "output folder of job %lld is missing", v[i].job_id);
            continue;
        }
        dir_meta m;
        memset(&m, 0, sizeof m);
        rp_strlcpy(m.study_uid, v[i].study_uid, sizeof m.study_uid);
        rp_strlcpy(m.series_uid, v[i].series_uid, sizeof m.series_uid);
        rp_strlcpy(m.modality, v[i].modality, sizeof m.modality);
        m.version = v[i].version;
        int ok;
        read_series_json(v[i].output_dir, &m, &ok);
        rp_db_output *outs = NULL;
        size_t nout = 0;
        if ((rc = rp_db_outputs_list(db, v[i].job_id, &outs, &nout)) != 0) {
            *exit_code = rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "cannot read outputs of job %lld: %s",
                                     v[i].job_id, rp_cli_errstr(rc));
            break;
        }
        m.recorded = outs;
        m.n_recorded = nout;
        rc = collect_dir(s, o, v[i].output_dir, &m);
        free(outs);
        if (rc)
            *exit_code = rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "%s", rp_strerror(rc));
    }
    free(v);
    rp_db_close(db);
    return rc;
}

static int is_version_name(const char *name, int *version)
{
    if (name[0] != 'v' || !isdigit((unsigned char)name[1]))
        return 0;
    for (const char *p = name + 1; *p; p++)
        if (!isdigit((unsigned char)*p))
            return 0;
    *version = atoi(name + 1);
    return 1;
}

/* Walk an outputs tree: every folder holding image NIfTIs is a source; a v<N> folder whose
 * series.json says the run failed is skipped. Versions of one series are resolved later. */
static int walk_outputs(cur_set *s, const cur_opts *o, const char *dir, int depth)
{
    char **names;
    size_t n;
    if (rp_curate_list_dir(dir, &names, &n) != 0) {
        skip(s, dir, "cannot read folder: %s", strerror(errno));
        return 0;
    }
    int rc = 0;
    /* a curated dataset inside the tree is not a source (its files are links to sources) */
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], "manifest.json") == 0) {
            rp_curate_free_names(names, n);
            return 0;
        }
    if (count_images(names, n) > 0) {
        dir_meta m;
        memset(&m, 0, sizeof m);
        const char *base = strrchr(dir, '/');
        base = base ? base + 1 : dir;
        int ver = 0, ok = 1;
        if (is_version_name(base, &ver))
            m.version = ver;
        read_series_json(dir, &m, &ok);
        struct stat st;
        if (!ok)
            skip(s, dir, "series.json says this version failed");
        else if (o->since > 0 && stat(dir, &st) == 0 && (double)st.st_mtime < o->since)
            ; /* older than --since */
        else
            rc = collect_dir(s, o, dir, &m);
    }
    for (size_t i = 0; i < n && rc == 0 && depth < 8; i++) {
        char p[PATHSZ];
        struct stat st;
        if (snprintf(p, sizeof p, "%s/%s", dir, names[i]) >= (int)sizeof p)
            continue;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rc = walk_outputs(s, o, p, depth + 1);
    }
    rp_curate_free_names(names, n);
    return rc;
}

/* ---- identities, order, splits ----------------------------------------------------------- */

static int cmp_by_series_then_newest(const void *a, const void *b)
{
    const cur_case *x = a, *y = b;
    int r = strcmp(x->series_uid, y->series_uid);
    if (r)
        return r;
    if (x->version != y->version)
        return y->version - x->version; /* newest first */
    r = strcmp(y->src_dir, x->src_dir); /* then a fixed order of folders */
    if (r)
        return r;
    return x->stack - y->stack;
}

static int cmp_by_id(const void *a, const void *b)
{
    return strcmp(((const cur_case *)a)->id, ((const cur_case *)b)->id);
}

/* Keep, per series, only the cases of its newest source folder (after the sort, the first
 * case of each series comes from that folder). */
static void dedupe(cur_set *s)
{
    if (s->n == 0)
        return;
    qsort(s->c, s->n, sizeof *s->c, cmp_by_series_then_newest);
    size_t keep = 0, first = 0; /* first: index (in the kept part) of this series' first case */
    for (size_t i = 0; i < s->n; i++) {
        cur_case *c = &s->c[i];
        if (keep == 0 || strcmp(s->c[first].series_uid, c->series_uid) != 0) {
            first = keep;
        } else if (strcmp(s->c[first].src_dir, c->src_dir) != 0) {
            skip(s, c->image.src, "older or duplicate output of series (version %d)", c->version);
            cJSON_Delete(c->side);
            continue;
        }
        if (keep != i)
            s->c[keep] = *c;
        keep++;
    }
    s->n = keep;
}

static int make_ids(cur_set *s, const char *salt)
{
    for (size_t i = 0; i < s->n; i++) {
        cur_case *c = &s->c[i];
        char buf[512], hex[65];
        int len = snprintf(buf, sizeof buf, "%s\n%s\n%s", salt, c->study_uid, c->series_uid);
        if (rp_sha256_hex(buf, (size_t)len, hex) != 0)
            return RP_EINTERNAL;
        if (c->nstacks > 1)
            snprintf(c->id, sizeof c->id, "case_%.16s_s%d", hex, c->stack);
        else
            snprintf(c->id, sizeof c->id, "case_%.16s", hex);
    }
    qsort(s->c, s->n, sizeof *s->c, cmp_by_id);
    return 0;
}

/* Seeded and stable: each case draws u = sha256("seed:id")[:16 hex] / 2^64 in [0,1) and goes to
 * the first split whose cumulative fraction exceeds u. A case's split depends only on its
 * id and the seed, never on the other cases, so a dataset that grows night after night keeps
 * every case where it was (no validation case ever moves into training). The counts follow
 * the fractions statistically, not exactly. */
static int assign_splits(cur_set *s, const cur_opts *o)
{
    for (size_t i = 0; o->n_splits && i < s->n; i++) {
        char buf[128], hex[65];
        int len = snprintf(buf, sizeof buf, "%lld:%s", o->seed, s->c[i].id);
        if (rp_sha256_hex(buf, (size_t)len, hex) != 0)
            return RP_EINTERNAL;
        hex[16] = '\0';
        double u = (double)strtoull(hex, NULL, 16) / 18446744073709551616.0;
        double cum = 0;
        int k = 0;
        for (; k < o->n_splits - 1; k++) {
            cum += o->split_frac[k];
            if (u < cum)
                break;
        }
        rp_strlcpy(s->c[i].split, o->split_name[k], sizeof s->c[i].split);
    }
    return 0;
}

/* ---- writing the dataset ----------------------------------------------------------------- */

static const char *const patient_keys[] = {
    "PatientName",       "PatientID",       "PatientBirthDate", "PatientSex",
    "PatientAge",        "PatientWeight",   "PatientSize",      "AccessionNumber",
    "IssuerOfPatientID", "OtherPatientIDs", "PatientComments",  NULL,
};
static const char *const uid_keys[] = {
    "StudyInstanceUID",    "SeriesInstanceUID",
    "FrameOfReferenceUID", "SourceSOPInstanceUIDs",
    "SOPInstanceUID",      "StudyID",
    "StudyDate",           "StudyTime",
    "AcquisitionDateTime", "AcquisitionDate",
    "AcquisitionTime",     "SeriesDate",
    "SeriesTime",          "InstitutionName",
    "InstitutionAddress",  "StationName",
    "DeviceSerialNumber",  NULL,
};

/* Remove keys (at the top and inside Provenance); returns how many were removed. */
static int strip_keys(cJSON *side, const char *const *keys)
{
    int removed = 0;
    cJSON *prov = cJSON_GetObjectItemCaseSensitive(side, "Provenance");
    for (const char *const *k = keys; *k; k++) {
        if (cJSON_HasObjectItem(side, *k)) {
            cJSON_DeleteItemFromObjectCaseSensitive(side, *k);
            removed++;
        }
        if (prov && cJSON_HasObjectItem(prov, *k)) {
            cJSON_DeleteItemFromObjectCaseSensitive(prov, *k);
            removed++;
        }
    }
    return removed;
}

/* Put src at dir/rel: a hard link unless copying (or linking is impossible). */
static int place(const char *tmp, cur_file *f, int copy, long long *n_copied)
{
    char dst[PATHSZ];
    snprintf(dst, sizeof dst, "%s/%s", tmp, f->rel);
    char *slash = strrchr(dst, '/');
    *slash = '\0';
    int rc = rp_mkdir_p(dst, 0755);
    *slash = '/';
    if (rc != 0)
        return rc;
    if (!copy && link(f->src, dst) == 0)
        return 0;
    if (!copy && errno != EXDEV && errno != EPERM && errno != EMLINK && errno != EACCES)
        return RP_EIO;
    (*n_copied)++;
    return rp_curate_copy_file(f->src, dst);
}

/* sha256 of the file as placed; index mode: it must equal what the worker recorded. */
static int check_file(const char *tmp, cur_file *f, char *err, size_t errlen)
{
    char dst[PATHSZ];
    snprintf(dst, sizeof dst, "%s/%s", tmp, f->rel);
    if (rp_sha256_file(dst, f->sha) != 0) {
        snprintf(err, errlen, "cannot read %s", f->src);
        return RP_EIO;
    }
    if (f->rec_sha[0] && strcmp(f->rec_sha, f->sha) != 0) {
        snprintf(err, errlen,
                 "checksum mismatch: %s has sha256 %.12s..., the index recorded %.12s...", f->src,
                 f->sha, f->rec_sha);
        return RP_EIO;
    }
    return 0;
}

static const char *img_ext(const cur_case *c)
{
    const char *e = rp_curate_nifti_ext(c->image.src);
    return e ? e : ".nii.gz";
}

static void set_rels(cur_case *c, const cur_opts *o)
{
    const char *ext = img_ext(c);
    /* A copy of the id: gcc cannot see that c->id and the c->*.rel buffers are disjoint
     * members and warns (-Wrestrict) when both come through `c`. */
    char id[sizeof c->id];
    memcpy(id, c->id, sizeof id);
    if (o->nnunet) {
        const char *imgdir = strcmp(c->split, "test") == 0 ? "imagesTs" : "imagesTr";
        snprintf(c->image.rel, sizeof c->image.rel, "%s/%s_0000%s", imgdir, id, ext);
        snprintf(c->sidecar.rel, sizeof c->sidecar.rel, "radprep/%s/sidecar.json", id);
        snprintf(c->qcpng.rel, sizeof c->qcpng.rel, "radprep/%s/qc.png", id);
        for (int k = 0; k < c->n_masks; k++) {
            cur_mask *m = &c->masks[k];
            const char *mext = rp_curate_nifti_ext(m->f.src);
            char name[sizeof m->name]; /* copied for the same -Wrestrict reason as id */
            memcpy(name, m->name, sizeof name);
            if (o->label && strcmp(o->label, name) == 0)
                snprintf(m->f.rel, sizeof m->f.rel, "%s/%s%s",
                         strcmp(c->split, "test") == 0 ? "labelsTs" : "labelsTr", id, mext);
            else
                snprintf(m->f.rel, sizeof m->f.rel, "radprep/%s/mask-%s%s", id, name, mext);
        }
    } else {
        snprintf(c->image.rel, sizeof c->image.rel, "cases/%s/image%s", id, ext);
        snprintf(c->sidecar.rel, sizeof c->sidecar.rel, "cases/%s/sidecar.json", id);
        snprintf(c->qcpng.rel, sizeof c->qcpng.rel, "cases/%s/qc.png", id);
        for (int k = 0; k < c->n_masks; k++) {
            char name[sizeof c->masks[k].name];
            memcpy(name, c->masks[k].name, sizeof name);
            snprintf(c->masks[k].f.rel, sizeof c->masks[k].f.rel, "cases/%s/mask-%s%s", id, name,
                     rp_curate_nifti_ext(c->masks[k].f.src));
        }
    }
}

/* nnU-Net normalises CT itself and wants HU. An image stored as int16 on a HU grid
 * (Provenance.Storage: HU = stored x hu_step + hu_inter) reads back HU with another header;
 * the voxels stay as they are. 1 with the scaling when this case's image has such a view. */
static int hu_view_of(const cur_case *c, double *slope, double *inter)
{
    const cJSON *prov = cJSON_GetObjectItemCaseSensitive(c->side, "Provenance");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(prov, "Storage");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(st, "hu_step");
    const cJSON *i = cJSON_GetObjectItemCaseSensitive(st, "hu_inter");
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(st, "datatype");
    if (!cJSON_IsNumber(s) || !cJSON_IsNumber(i) || !(s->valuedouble > 0) ||
        !cJSON_IsString(dt) || strcmp(dt->valuestring, "int16") != 0)
        return 0;
    *slope = s->valuedouble;
    *inter = i->valuedouble;
    return 1;
}

/* The image as placed in an nnU-Net dataset: its HU view (a rescaled header) when it has one,
 * after the source's recorded checksum is confirmed. */
static int place_hu_view(const char *tmp, cur_case *c, double slope, double inter, char *err,
                         size_t errlen)
{
    cur_file *f = &c->image;
    if (f->rec_sha[0]) {
        char sha[65];
        if (rp_sha256_file(f->src, sha) != 0 || strcmp(sha, f->rec_sha) != 0) {
            snprintf(err, errlen, "checksum mismatch: %s differs from the index", f->src);
            return RP_EIO;
        }
        f->rec_sha[0] = '\0';
    }
    char dst[PATHSZ];
    snprintf(dst, sizeof dst, "%s/%s", tmp, f->rel);
    char *slash = strrchr(dst, '/');
    *slash = '\0';
    int rc = rp_mkdir_p(dst, 0755);
    *slash = '/';
    if (!rc)
        rc = rp_nifti_copy_rescaled(f->src, dst, slope, inter, err, errlen);
    if (rc)
        return rc;
    cJSON *prov = cJSON_GetObjectItemCaseSensitive(c->side, "Provenance");
    cJSON *st = cJSON_GetObjectItemCaseSensitive(prov, "Storage");
    cJSON_AddStringToObject(st, "dataset_values", "HU (scl_slope = hu_step, scl_inter = hu_inter)");
    return check_file(tmp, f, err, errlen);
}

static int write_case_files(const char *tmp, cur_case *c, const cur_opts *o, long long *n_copied,
                            char *err, size_t errlen)
{
    int rc;
    double slope, inter;
    if (o->nnunet && !o->values_processed && !o->augment && hu_view_of(c, &slope, &inter)) {
        if ((rc = place_hu_view(tmp, c, slope, inter, err, errlen)) != 0)
            goto fail;
        c->hu_view = 1;
    } else if ((rc = place(tmp, &c->image, o->copy, n_copied)) != 0 ||
               (rc = check_file(tmp, &c->image, err, errlen)) != 0)
        goto fail;
    for (int k = 0; k < c->n_masks; k++)
        if ((rc = place(tmp, &c->masks[k].f, o->copy, n_copied)) != 0 ||
            (rc = check_file(tmp, &c->masks[k].f, err, errlen)) != 0)
            goto fail;
    if (c->has_qcpng && ((rc = place(tmp, &c->qcpng, o->copy, n_copied)) != 0 ||
                         (rc = check_file(tmp, &c->qcpng, err, errlen)) != 0))
        goto fail;
    /* The sidecar: linked when it carries nothing to remove, else rewritten. Its recorded
     * checksum is checked on the original first. */
    if (c->sidecar.rec_sha[0]) {
        char sha[65];
        if (rp_sha256_file(c->sidecar.src, sha) != 0 ||
            strcmp(sha, c->sidecar.rec_sha) != 0) {
            snprintf(err, errlen, "checksum mismatch: %s differs from the index", c->sidecar.src);
            return RP_EIO;
        }
        c->sidecar.rec_sha[0] = '\0';
    }
    int removed = strip_keys(c->side, patient_keys);
    if (o->deidentify)
        removed += strip_keys(c->side, uid_keys);
    if (removed == 0 && !c->hu_view) {
        if ((rc = place(tmp, &c->sidecar, o->copy, n_copied)) != 0)
            goto fail;
    } else {
        char *text = cJSON_Print(c->side);
        char dst[PATHSZ];
        snprintf(dst, sizeof dst, "%s/%s", tmp, c->sidecar.rel);
        char *slash = strrchr(dst, '/');
        *slash = '\0';
        rc = text ? rp_mkdir_p(dst, 0755) : RP_ENOMEM;
        *slash = '/';
        if (rc == 0)
            rc = rp_curate_write_text(dst, text, 0644);
        free(text);
        if (rc)
            goto fail;
    }
    return check_file(tmp, &c->sidecar, err, errlen);
fail:
    if (!err[0])
        snprintf(err, errlen, "cannot place %s's files: %s", c->id, rp_strerror(rc));
    return rc;
}

static cJSON *file_json(const cur_file *f)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "path", f->rel);
    cJSON_AddStringToObject(o, "sha256", f->sha);
    return o;
}

static cJSON *int_array(const int *v, int n)
{
    return cJSON_CreateIntArray(v, n);
}

static cJSON *case_json(const cur_case *c, const cur_opts *o)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "case", c->id);
    if (o->n_splits)
        cJSON_AddStringToObject(j, "split", c->split);
    cJSON_AddStringToObject(j, "modality", c->modality);
    cJSON_AddStringToObject(j, "rule", c->rule);
    cJSON_AddStringToObject(j, "recipe", c->recipe);
    cJSON_AddStringToObject(j, "recipe_sha256", c->recipe_sha);
    if (!o->deidentify) {
        cJSON_AddStringToObject(j, "study_uid", c->study_uid);
        cJSON_AddStringToObject(j, "series_uid", c->series_uid);
    }
    if (c->version > 0)
        cJSON_AddNumberToObject(j, "version", c->version);
    else
        cJSON_AddNullToObject(j, "version"); /* a `radprep process` folder has none */
    if (c->nstacks > 1)
        cJSON_AddNumberToObject(j, "stack", c->stack);
    if (c->aug_of[0]) {
        cJSON *a = cJSON_AddObjectToObject(j, "augmented");
        cJSON_AddStringToObject(a, "from", c->aug_of);
        cJSON_AddNumberToObject(a, "copy", c->aug_copy);
        cJSON_AddStringToObject(a, "spec", o->spec.text);
        cJSON_AddItemToObject(a, "parameters", cJSON_Duplicate(c->aug, 1));
    }
    cJSON *img = file_json(&c->image);
    int nd = c->dim[3] > 1 ? 4 : 3;
    cJSON_AddItemToObject(img, "shape", int_array(c->dim, nd));
    cJSON_AddItemToObject(img, "spacing_mm", cJSON_CreateDoubleArray(c->spacing, 3));
    cJSON_AddItemToObject(j, "image", img);
    cJSON *masks = cJSON_CreateObject();
    for (int k = 0; k < c->n_masks; k++)
        cJSON_AddItemToObject(masks, c->masks[k].name, file_json(&c->masks[k].f));
    cJSON_AddItemToObject(j, "masks", masks);
    cJSON_AddItemToObject(j, "sidecar", file_json(&c->sidecar));
    if (c->has_qcpng)
        cJSON_AddItemToObject(j, "qc_png", file_json(&c->qcpng));
    cJSON *qc = cJSON_CreateObject();
    cJSON *ml = cJSON_CreateObject();
    for (int k = 0; k < c->n_masks; k++)
        if (c->masks[k].ml >= 0)
            cJSON_AddNumberToObject(ml, c->masks[k].name, c->masks[k].ml);
    cJSON_AddItemToObject(qc, "mask_volume_ml", ml);
    if (c->metal_count >= 0)
        cJSON_AddNumberToObject(qc, "metal_components", c->metal_count);
    cJSON_AddItemToObject(j, "qc", qc);
    return j;
}

static int cmp_name64(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* CSV field, quoted when it holds a comma, quote or newline (RFC 4180). */
static void csv_field(FILE *f, const char *v, int last)
{
    if (strpbrk(v, ",\"\n\r")) {
        fputc('"', f);
        for (const char *p = v; *p; p++) {
            if (*p == '"')
                fputc('"', f);
            fputc(*p, f);
        }
        fputc('"', f);
    } else {
        fputs(v, f);
    }
    fputc(last ? '\n' : ',', f);
}

static char *manifest_csv(const cur_set *s, const cur_opts *o)
{
    /* mask columns: the union of mask names, sorted */
    char names[64][64];
    int nn = 0;
    for (size_t i = 0; i < s->n; i++)
        for (int k = 0; k < s->c[i].n_masks; k++) {
            int found = 0;
            for (int q = 0; q < nn; q++)
                found |= strcmp(names[q], s->c[i].masks[k].name) == 0;
            if (!found && nn < 64)
                rp_strlcpy(names[nn++], s->c[i].masks[k].name, sizeof names[0]);
        }
    qsort(names, (size_t)nn, sizeof names[0], cmp_name64);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    fputs("case,split,modality,rule,recipe_sha256", f);
    if (!o->deidentify)
        fputs(",study_uid,series_uid", f);
    fputs(",version,image,image_sha256,shape,spacing_mm", f);
    for (int q = 0; q < nn; q++)
        fprintf(f, ",mask_%s,mask_%s_sha256,%s_ml", names[q], names[q], names[q]);
    fputs(",sidecar,sidecar_sha256,qc_png,metal_components\n", f);
    for (size_t i = 0; i < s->n; i++) {
        const cur_case *c = &s->c[i];
        char num[64], shape[64], sp[96];
        csv_field(f, c->id, 0);
        csv_field(f, c->split, 0);
        csv_field(f, c->modality, 0);
        csv_field(f, c->rule, 0);
        csv_field(f, c->recipe_sha, 0);
        if (!o->deidentify) {
            csv_field(f, c->study_uid, 0);
            csv_field(f, c->series_uid, 0);
        }
        num[0] = '\0';
        if (c->version > 0)
            snprintf(num, sizeof num, "%d", c->version);
        csv_field(f, num, 0);
        csv_field(f, c->image.rel, 0);
        csv_field(f, c->image.sha, 0);
        if (c->dim[3] > 1)
            snprintf(shape, sizeof shape, "%dx%dx%dx%d", c->dim[0], c->dim[1], c->dim[2],
                     c->dim[3]);
        else
            snprintf(shape, sizeof shape, "%dx%dx%d", c->dim[0], c->dim[1], c->dim[2]);
        csv_field(f, shape, 0);
        snprintf(sp, sizeof sp, "%.6gx%.6gx%.6g", c->spacing[0], c->spacing[1], c->spacing[2]);
        csv_field(f, sp, 0);
        for (int q = 0; q < nn; q++) {
            const cur_mask *m = NULL;
            for (int k = 0; k < c->n_masks; k++)
                if (strcmp(c->masks[k].name, names[q]) == 0)
                    m = &c->masks[k];
            csv_field(f, m ? m->f.rel : "", 0);
            csv_field(f, m ? m->f.sha : "", 0);
            num[0] = '\0';
            if (m && m->ml >= 0)
                snprintf(num, sizeof num, "%.6g", m->ml);
            csv_field(f, num, 0);
        }
        csv_field(f, c->sidecar.rel, 0);
        csv_field(f, c->sidecar.sha, 0);
        csv_field(f, c->has_qcpng ? c->qcpng.rel : "", 0);
        num[0] = '\0';
        if (c->metal_count >= 0)
            snprintf(num, sizeof num, "%d", c->metal_count);
        csv_field(f, num, 1);
    }
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* nnU-Net v2 dataset.json (and splits_final.json when train and val are given). */
static int write_nnunet(const char *tmp, const cur_set *s, const cur_opts *o, const char *name)
{
    cJSON *d = cJSON_CreateObject();
    cJSON *ch = cJSON_CreateObject();
    cJSON_AddStringToObject(ch, "0", s->n ? s->c[0].modality : "CT");
    cJSON_AddItemToObject(d, "channel_names", ch);
    cJSON *labels = cJSON_CreateObject();
    cJSON_AddNumberToObject(labels, "background", 0);
    if (o->label)
        cJSON_AddNumberToObject(labels, o->label, 1);
    cJSON_AddItemToObject(d, "labels", labels);
    int ntr = 0;
    for (size_t i = 0; i < s->n; i++)
        ntr += strcmp(s->c[i].split, "test") != 0;
    cJSON_AddNumberToObject(d, "numTraining", ntr);
    cJSON_AddStringToObject(d, "file_ending", s->n ? img_ext(&s->c[0]) : ".nii.gz");
    cJSON_AddStringToObject(d, "name", name);
    cJSON_AddStringToObject(d, "description", "curated by radprep " RP_VERSION);
    char p[PATHSZ];
    snprintf(p, sizeof p, "%s/dataset.json", tmp);
    int rc = rp_curate_write_json(p, d);
    if (rc || o->n_splits == 0)
        return rc;
    cJSON *arr = cJSON_CreateArray(), *fold = cJSON_CreateObject();
    cJSON *tr = cJSON_CreateArray(), *va = cJSON_CreateArray();
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->c[i].split, "train") == 0)
            cJSON_AddItemToArray(tr, cJSON_CreateString(s->c[i].id));
        else if (strcmp(s->c[i].split, "val") == 0)
            cJSON_AddItemToArray(va, cJSON_CreateString(s->c[i].id));
    }
    cJSON_AddItemToObject(fold, "train", tr);
    cJSON_AddItemToObject(fold, "val", va);
    cJSON_AddItemToArray(arr, fold);
    snprintf(p, sizeof p, "%s/splits_final.json", tmp);
    return rp_curate_write_json(p, arr);
}

/* ---- augmentation ------------------------------------------------------------------------- */

/* Copies of every training case through --augment (pipeline/augment): new cases
 * "<id>_augNN" in the training split, their files generated in tmp, their drawn parameters
 * in the manifest and in their sidecar. The parameters depend on (seed, case id, copy) only. */
static int augment_cases(const char *tmp, cur_set *s, const cur_opts *o, char *err, size_t errlen)
{
    const size_t n0 = s->n;
    for (size_t i = 0; i < n0; i++) {
        if (strcmp(s->c[i].split, "train") != 0)
            continue;
        for (int k = 1; k <= o->copies; k++) {
            if (set_grow(s) != 0)
                return RP_ENOMEM;
            const cur_case *src = &s->c[i];
            cur_case *c = &s->c[s->n];
            *c = *src;
            c->side = cJSON_Duplicate(src->side, 1);
            c->aug = NULL;
            char sid[sizeof c->id]; /* a copy: gcc sees c and src as possibly overlapping */
            memcpy(sid, src->id, sizeof sid);
            snprintf(c->id, sizeof c->id, "%.30s_aug%02d", sid, k);
            rp_strlcpy(c->aug_of, sid, sizeof c->aug_of);
            c->aug_copy = k;
            c->has_qcpng = 0;
            c->metal_count = -1;
            set_rels(c, o);
            rp_aug_draw d;
            rp_aug_draw_params(&o->spec, (uint64_t)o->seed, src->id, k,
                               rp_aug_interp_of_sidecar(src->side), &d);
            char img[PATHSZ], mdst[MAX_MASKS][PATHSZ];
            const char *msrc_p[MAX_MASKS], *mdst_p[MAX_MASKS];
            snprintf(img, sizeof img, "%s/%s", tmp, c->image.rel);
            for (int m = 0; m < c->n_masks; m++) {
                snprintf(mdst[m], sizeof mdst[m], "%s/%s", tmp, c->masks[m].f.rel);
                msrc_p[m] = src->masks[m].f.src;
                mdst_p[m] = mdst[m];
                c->masks[m].ml = -1; /* the copy's volumes differ; not measured */
                c->masks[m].f.rec_sha[0] = '\0';
            }
            char *slash = strrchr(img, '/');
            *slash = '\0';
            int rc = rp_mkdir_p(img, 0755);
            *slash = '/';
            for (int m = 0; m < c->n_masks && !rc; m++) {
                char *sl = strrchr(mdst[m], '/');
                *sl = '\0';
                rc = rp_mkdir_p(mdst[m], 0755);
                *sl = '/';
            }
            if (rc)
                snprintf(err, errlen, "cannot create the folders of %s: %s", c->id,
                         rp_strerror(rc));
            else
                rc = rp_aug_case_files(&d, src->image.src, img, msrc_p, mdst_p, c->n_masks, err,
                                       errlen);
            c->aug = rp_aug_draw_json(&o->spec, &d);
            s->n++; /* owned by the set from here: freed with it on failure */
            if (rc)
                return rc;
            c->image.rec_sha[0] = c->sidecar.rec_sha[0] = '\0';
            if ((rc = check_file(tmp, &c->image, err, errlen)) != 0)
                return rc;
            for (int m = 0; m < c->n_masks; m++)
                if ((rc = check_file(tmp, &c->masks[m].f, err, errlen)) != 0)
                    return rc;
            cJSON *a = cJSON_AddObjectToObject(c->side, "Augmentation");
            cJSON_AddStringToObject(a, "from_case", c->aug_of);
            cJSON_AddNumberToObject(a, "copy", k);
            cJSON_AddStringToObject(a, "spec", o->spec.text);
            cJSON_AddItemToObject(a, "parameters", cJSON_Duplicate(c->aug, 1));
            char *text = cJSON_Print(c->side), dst[PATHSZ];
            snprintf(dst, sizeof dst, "%s/%s", tmp, c->sidecar.rel);
            char *sl = strrchr(dst, '/');
            *sl = '\0';
            rc = text ? rp_mkdir_p(dst, 0755) : RP_ENOMEM;
            *sl = '/';
            if (!rc)
                rc = rp_curate_write_text(dst, text, 0644);
            free(text);
            if (rc) {
                snprintf(err, errlen, "cannot write %s: %s", dst, rp_strerror(rc));
                return rc;
            }
            if ((rc = check_file(tmp, &c->sidecar, err, errlen)) != 0)
                return rc;
        }
    }
    /* each copy right after its source in the manifest */
    qsort(s->c, s->n, sizeof *s->c, cmp_by_id);
    return 0;
}

/* ---- options --------------------------------------------------------------------------------- */

static int parse_since(const char *v, double *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(v, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end) {
        memset(&tm, 0, sizeof tm);
        end = strptime(v, "%Y-%m-%d", &tm);
    }
    if (!end || (*end && strcmp(end, "Z") != 0))
        return RP_EINVAL;
    *out = (double)timegm(&tm);
    return 0;
}

static int parse_split(const char *v, cur_opts *o)
{
    char buf[128];
    if (rp_strlcpy(buf, v, sizeof buf) != 0)
        return RP_EINVAL;
    double sum = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || o->n_splits >= MAX_SPLITS || (size_t)(eq - tok) >= 16)
            return RP_EINVAL;
        *eq = '\0';
        for (char *p = tok; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '_')
                return RP_EINVAL;
        for (int k = 0; k < o->n_splits; k++)
            if (strcmp(o->split_name[k], tok) == 0)
                return RP_EINVAL;
        char *end;
        double f = strtod(eq + 1, &end);
        if (*end || !(f >= 0 && f <= 1))
            return RP_EINVAL;
        rp_strlcpy(o->split_name[o->n_splits], tok, sizeof o->split_name[0]);
        o->split_frac[o->n_splits++] = f;
        sum += f;
    }
    return o->n_splits > 0 && sum > 0.999999 && sum < 1.000001 ? 0 : RP_EINVAL;
}

static int parse_opts(int argc, char **argv, cur_opts *o, int *help)
{
    memset(o, 0, sizeof *o);
    *help = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        static const char *const with_value[] = {"--out",      "-o",      "--from-dir",  "--rule",
                                                 "--modality", "--since", "--layout",    "--label",
                                                 "--split",    "--seed",  "--salt-file", "--values",
                                                 "--augment",  "--copies", NULL};
        const char *name = a;
        char namebuf[32];
        const char *eq = strchr(a, '=');
        if (eq && a[0] == '-' && (size_t)(eq - a) < sizeof namebuf) {
            memcpy(namebuf, a, (size_t)(eq - a));
            namebuf[eq - a] = '\0';
            name = namebuf;
            v = eq + 1;
        }
        int takes = 0;
        for (const char *const *w = with_value; *w; w++)
            takes |= strcmp(name, *w) == 0;
        if (takes && !v) {
            if (i + 1 >= argc)
                return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "option '%s' needs a value", a);
            v = argv[++i];
        }
        if (!strcmp(name, "--out") || !strcmp(name, "-o")) {
            o->out = v;
        } else if (!strcmp(name, "--from-dir")) {
            o->from_dir = v;
        } else if (!strcmp(name, "--rule")) {
            o->rule = v;
        } else if (!strcmp(name, "--modality")) {
            o->modality = v;
        } else if (!strcmp(name, "--since")) {
            if (parse_since(v, &o->since) != 0)
                return rp_cli_fail(
                    RP_CLI_EXIT_USAGE, CMD,
                    "--since wants YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS (UTC), got '%s'", v);
            rp_strlcpy(o->since_text, v, sizeof o->since_text);
        } else if (!strcmp(name, "--layout")) {
            if (!strcmp(v, "nnunet"))
                o->nnunet = 1;
            else if (strcmp(v, "plain") != 0)
                return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "--layout wants plain|nnunet, got '%s'",
                                   v);
        } else if (!strcmp(name, "--values")) {
            if (!strcmp(v, "processed"))
                o->values_processed = 1;
            else if (strcmp(v, "hu") != 0)
                return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "--values wants hu|processed, got '%s'",
                                   v);
        } else if (!strcmp(name, "--label")) {
            o->label = v;
        } else if (!strcmp(name, "--split")) {
            if (parse_split(v, o) != 0)
                return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD,
                                   "--split wants NAME=FRACTION,... summing to 1 (e.g. "
                                   "train=0.8,val=0.2), got '%s'",
                                   v);
            rp_strlcpy(o->split_text, v, sizeof o->split_text);
        } else if (!strcmp(name, "--seed")) {
            char *end;
            errno = 0;
            o->seed = strtoll(v, &end, 10);
            if (errno || *end || !*v)
                return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "--seed wants an integer, got '%s'", v);
        } else if (!strcmp(name, "--salt-file")) {
            o->salt_file = v;
        } else if (!strcmp(name, "--augment")) {
            char why[256];
            if (rp_aug_parse(v, &o->spec, why, sizeof why) != 0)
                return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "--augment: %s", why);
            o->augment = v;
        } else if (!strcmp(name, "--copies")) {
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || !*v || n < 1 || n > 99)
                return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "--copies wants 1..99, got '%s'", v);
            o->copies = (int)n;
        } else if (!strcmp(a, "--link")) {
            o->copy = 0;
        } else if (!strcmp(a, "--copy")) {
            o->copy = 1;
        } else if (!strcmp(a, "--deidentify")) {
            o->deidentify = 1;
        } else if (!strcmp(a, "--no-timestamp")) {
            o->no_timestamp = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            *help = 1;
            return 0;
        } else {
            return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "%s '%s' (see radprep curate --help)",
                               a[0] == '-' ? "unknown option" : "unexpected argument", a);
        }
    }
    if (!o->out)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "--out DATASET_DIR is required");
    if (o->label && !o->nnunet)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "--label is for --layout nnunet");
    if (o->copies && !o->augment)
        return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "--copies goes with --augment \"SPEC\"");
    if (o->augment) {
        int train = 0;
        for (int k = 0; k < o->n_splits; k++)
            train |= strcmp(o->split_name[k], "train") == 0;
        if (!train)
            return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD,
                               "--augment copies the training split only: give --split with a "
                               "'train' part (e.g. train=0.8,val=0.2)");
        if (!o->copies)
            o->copies = 1;
    }
    if (o->nnunet && o->n_splits)
        for (int k = 0; k < o->n_splits; k++)
            if (strcmp(o->split_name[k], "train") && strcmp(o->split_name[k], "val") &&
                strcmp(o->split_name[k], "test"))
                return rp_cli_fail(RP_CLI_EXIT_USAGE, CMD,
                                   "--layout nnunet knows the splits train, val and test, not '%s'",
                                   o->split_name[k]);
    return 0;
}

/* ---- salt and the final swap ------------------------------------------------------------- */

/* ---- the command ------------------------------------------------------------------------- */

int rp_cli_curate(int argc, char **argv, const rp_conf *conf)
{
    if (rp_cli_curate_has_executor(argc, argv)) /* from DICOM folders (cmd_curate_batch.c) */
        return rp_cli_curate_batch(argc, argv, conf);
    cur_opts o;
    int help = 0, code = parse_opts(argc, argv, &o, &help);
    if (code)
        return code;
    if (help) {
        printf("%s\n", usage);
        return RP_CLI_EXIT_OK;
    }
    cur_set s;
    memset(&s, 0, sizeof s);
    s.skipped = cJSON_CreateArray();
    char out[PATHSZ], tmp[PATHSZ + 16] = "", err[PATHSZ + 256] = "", salt[65] = "";
    char *csv = NULL, *json_text = NULL;
    cJSON *man = NULL;
    long long n_copied = 0;
    int rc = 0;
    code = RP_CLI_EXIT_OK;

    /* where the dataset goes: the parent must exist or be creatable */
    rp_strlcpy(out, o.out, sizeof out);
    while (strlen(out) > 1 && out[strlen(out) - 1] == '/')
        out[strlen(out) - 1] = '\0';
    struct stat st;
    char mf[PATHSZ + 32];
    snprintf(mf, sizeof mf, "%s/manifest.json", out);
    int exists = stat(out, &st) == 0;
    if (exists && (!S_ISDIR(st.st_mode) || (stat(mf, &st) != 0 && !rp_curate_dir_is_empty(out)))) {
        code = rp_cli_fail(RP_CLI_EXIT_FAIL, CMD,
                           "%s exists and is not a radprep dataset (no manifest.json); "
                           "refusing to replace it",
                           out);
        goto done;
    }
    if (o.from_dir && (stat(o.from_dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
        code = rp_cli_fail(RP_CLI_EXIT_USAGE, CMD, "--from-dir %s is not a folder", o.from_dir);
        goto done;
    }

    /* salt: --salt-file, else the dataset's own, else a new one */
    char salt_path[PATHSZ + 16];
    snprintf(salt_path, sizeof salt_path, "%s/.salt", out);
    if (o.salt_file) {
        if (rp_curate_load_salt(o.salt_file, salt) != 0) {
            code = rp_cli_fail(RP_CLI_EXIT_USAGE, CMD,
                               "--salt-file %s: not readable or not 16-64 hex digits", o.salt_file);
            goto done;
        }
    } else if (rp_curate_load_salt(salt_path, salt) != 0 && rp_curate_new_salt(salt) != 0) {
        code = rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "cannot draw a random salt");
        goto done;
    }

    /* collect */
    if (o.from_dir) {
        char abs[PATHSZ];
        if (!realpath(o.from_dir, abs))
            rp_strlcpy(abs, o.from_dir, sizeof abs);
        rc = walk_outputs(&s, &o, abs, 0);
        if (rc) {
            code = rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "%s", rp_strerror(rc));
            goto done;
        }
    } else if (from_index(&s, &o, conf, &code) != 0) {
        goto done;
    }
    dedupe(&s);
    if (s.n == 0) {
        code = rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "no processed series match%s%s%s%s%s",
                           o.modality ? " modality=" : "", o.modality ? o.modality : "",
                           o.rule ? " rule=" : "", o.rule ? o.rule : "",
                           o.from_dir ? " in --from-dir" : " in the index");
        goto done;
    }
    if ((rc = make_ids(&s, salt)) != 0 || (rc = assign_splits(&s, &o)) != 0) {
        code = rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "%s", rp_strerror(rc));
        goto done;
    }
    if (o.nnunet) {
        for (size_t i = 0; i < s.n; i++) {
            const cur_case *c = &s.c[i];
            if (c->dim[3] > 1) {
                code = rp_cli_fail(RP_CLI_EXIT_FAIL, CMD,
                                   "--layout nnunet: %s is 4-D (%d channels); nnU-Net wants one "
                                   "file per channel",
                                   c->image.src, c->dim[3]);
                goto done;
            }
            if (strcmp(c->modality, s.c[0].modality) != 0 ||
                strcmp(img_ext(c), img_ext(&s.c[0])) != 0) {
                code = rp_cli_fail(RP_CLI_EXIT_USAGE, CMD,
                                   "--layout nnunet needs one modality and one file type; "
                                   "found %s and %s (choose with --modality)",
                                   s.c[0].modality, c->modality);
                goto done;
            }
        }
        if (o.label) {
            /* nnU-Net trains only on cases with a label: the others are left out, said so */
            size_t keep = 0;
            for (size_t i = 0; i < s.n; i++) {
                int has = 0;
                for (int k = 0; k < s.c[i].n_masks; k++)
                    has |= strcmp(s.c[i].masks[k].name, o.label) == 0;
                if (!has) {
                    skip(&s, s.c[i].image.src, "no mask '%s' for --label", o.label);
                    cJSON_Delete(s.c[i].side);
                    continue;
                }
                s.c[keep++] = s.c[i];
            }
            s.n = keep;
            if (s.n == 0) {
                code = rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "no case has a mask '%s'", o.label);
                goto done;
            }
        }
    }

    /* build next to the target (same filesystem: the rename is atomic) */
    char parent[PATHSZ];
    rp_strlcpy(parent, out, sizeof parent);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        if (rp_mkdir_p(parent, 0755) != 0) {
            code =
                rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "cannot create %s: %s", parent, strerror(errno));
            goto done;
        }
    }
    snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", out);
    if (!mkdtemp(tmp)) {
        code = rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "cannot create %s: %s", tmp, strerror(errno));
        tmp[0] = '\0';
        goto done;
    }
    chmod(tmp, 0755);
    for (size_t i = 0; i < s.n; i++) {
        set_rels(&s.c[i], &o);
        if ((rc = write_case_files(tmp, &s.c[i], &o, &n_copied, err, sizeof err)) != 0) {
            code = rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "%s", err);
            goto done;
        }
    }
    if (o.augment && (rc = augment_cases(tmp, &s, &o, err, sizeof err)) != 0) {
        code = rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "%s", err);
        goto done;
    }
    {
        char p[PATHSZ + 32];
        snprintf(p, sizeof p, "%s/.salt", tmp);
        char line[80];
        snprintf(line, sizeof line, "%s\n", salt);
        if ((rc = rp_curate_write_text(p, line, 0600)) != 0)
            goto io_fail;
    }
    const char *base = strrchr(out, '/');
    base = base ? base + 1 : out;
    if (o.nnunet && (rc = write_nnunet(tmp, &s, &o, base)) != 0)
        goto io_fail;

    /* manifest.json */
    man = cJSON_CreateObject();
    cJSON_AddStringToObject(man, "format", "radprep-dataset-manifest");
    cJSON_AddNumberToObject(man, "format_version", 1);
    cJSON_AddStringToObject(man, "software", "radprep " RP_VERSION);
    if (!o.no_timestamp) {
        char ts[64];
        cJSON_AddStringToObject(man, "created", rp_time_iso8601(rp_now_s(), ts, sizeof ts));
    }
    cJSON_AddStringToObject(man, "name", base);
    cJSON_AddStringToObject(man, "source", o.from_dir ? "outputs_dir" : "index");
    cJSON *sel = cJSON_CreateObject();
    cJSON_AddItemToObject(sel, "rule", o.rule ? cJSON_CreateString(o.rule) : cJSON_CreateNull());
    cJSON_AddItemToObject(sel, "modality",
                          o.modality ? cJSON_CreateString(o.modality) : cJSON_CreateNull());
    cJSON_AddItemToObject(sel, "since",
                          o.since_text[0] ? cJSON_CreateString(o.since_text) : cJSON_CreateNull());
    cJSON_AddItemToObject(man, "selection", sel);
    cJSON_AddStringToObject(man, "layout", o.nnunet ? "nnunet" : "plain");
    if (o.nnunet) {
        int n_hu = 0;
        for (size_t i = 0; i < s.n; i++)
            n_hu += s.c[i].hu_view;
        cJSON_AddNumberToObject(man, "images_in_hu", n_hu);
    }
    if (o.label)
        cJSON_AddStringToObject(man, "label", o.label);
    cJSON *priv = cJSON_CreateObject();
    cJSON_AddStringToObject(priv, "case_id",
                            "case_ + sha256(salt \\n study_uid \\n series_uid)[:16]");
    cJSON_AddStringToObject(priv, "salt_file", ".salt");
    cJSON_AddBoolToObject(priv, "patient_fields", 0);
    cJSON_AddBoolToObject(priv, "uids", !o.deidentify);
    cJSON_AddItemToObject(man, "privacy", priv);
    if (o.n_splits) {
        cJSON *sp = cJSON_CreateObject();
        for (int k = 0; k < o.n_splits; k++)
            cJSON_AddNumberToObject(sp, o.split_name[k], o.split_frac[k]);
        cJSON_AddItemToObject(man, "split", sp);
        cJSON_AddNumberToObject(man, "seed", (double)o.seed);
    }
    cJSON_AddNumberToObject(man, "n_cases", (double)s.n);
    cJSON *cases = cJSON_CreateArray();
    for (size_t i = 0; i < s.n; i++)
        cJSON_AddItemToArray(cases, case_json(&s.c[i], &o));
    cJSON_AddItemToObject(man, "cases", cases);
    cJSON_AddItemToObject(man, "skipped", s.skipped);
    s.skipped = NULL;
    json_text = cJSON_Print(man);
    csv = manifest_csv(&s, &o);
    if (!json_text || !csv) {
        rc = RP_ENOMEM;
        goto io_fail;
    }
    {
        char p[PATHSZ + 32];
        snprintf(p, sizeof p, "%s/manifest.json", tmp);
        size_t l = strlen(json_text);
        char *jt = realloc(json_text, l + 2);
        if (!jt) {
            rc = RP_ENOMEM;
            goto io_fail;
        }
        json_text = jt;
        memcpy(json_text + l, "\n", 2);
        if ((rc = rp_curate_write_text(p, json_text, 0644)) != 0)
            goto io_fail;
        snprintf(p, sizeof p, "%s/manifest.csv", tmp);
        if ((rc = rp_curate_write_text(p, csv, 0644)) != 0)
            goto io_fail;
    }
    rp_curate_fsync_dir(tmp);

    /* swap in: the old dataset (if any) is replaced in one step, then removed */
    if (exists) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, out, RENAME_EXCHANGE) != 0) {
            code =
                rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "cannot replace %s: %s", out, strerror(errno));
            goto done;
        }
        rp_rm_rf(tmp); /* now the previous dataset */
    } else if (rename(tmp, out) != 0) {
        code = rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "cannot rename %s to %s: %s", tmp, out,
                           strerror(errno));
        goto done;
    }
    tmp[0] = '\0';
    if (slash && slash != parent)
        rp_curate_fsync_dir(parent);
    printf("%s: %zu cases (%d skipped, %lld files copied)\n", out, s.n,
           cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(man, "skipped")), n_copied);
    goto done;
io_fail:
    code = rp_cli_fail(RP_CLI_EXIT_FAIL, CMD, "cannot write the dataset in %s: %s", tmp,
                       rp_strerror(rc));
done:
    if (tmp[0])
        rp_rm_rf(tmp);
    for (size_t i = 0; i < s.n; i++) {
        cJSON_Delete(s.c[i].side);
        cJSON_Delete(s.c[i].aug);
    }
    free(s.c);
    cJSON_Delete(s.skipped);
    cJSON_Delete(man);
    free(json_text);
    free(csv);
    return code;
}
