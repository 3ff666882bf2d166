/*
 * store — instances on disk: spool, validated paths, atomic durable commit, duplicates,
 * hand-off to the index queue, free-space watermark, reconciliation with the index. See
 * store.h for the contract.
 *
 * Durability argument ("acknowledged means durable"):
 *   spool file written -> fsync(file) -> [mkdir study/series, fsync(parent) for each new dir]
 *   -> rename(spool, final) -> fsync(series dir). Only then does rp_store_put() return 0.
 *   spool/ and store/ are on one filesystem (both under data_dir), so rename is atomic: a
 *   crash leaves either a spool leftover (removed by rp_store_reconcile) or the full file.
 */
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/common.h"
#include "dicom/dicom.h"
#include "store/store_internal.h"

#define MOD "store"

/* ---- UIDs ------------------------------------------------------------------------------ */

int rp_store_uid_safe(const char *uid)
{
    if (!uid)
        return RP_EUID;
    size_t n = strlen(uid);
    if (n == 0 || n > RP_UID_MAX || uid[0] == '.' || uid[n - 1] == '.' || strstr(uid, ".."))
        return RP_EUID;
    for (size_t i = 0; i < n; i++)
        if ((uid[i] < '0' || uid[i] > '9') && uid[i] != '.')
            return RP_EUID;
    return 0;
}

int rp_store_uid_valid(const char *uid)
{
    if (!uid)
        return RP_EUID;
    size_t n = strlen(uid);
    if (n == 0 || n > RP_UID_MAX)
        return RP_EUID;
    size_t comp_len = 0;
    char comp_first = 0;
    for (size_t i = 0; i <= n; i++) {
        char ch = uid[i];
        if (ch == '.' || ch == '\0') {
            if (comp_len == 0)
                return RP_EUID; /* empty component: leading/trailing/double dot */
            if (comp_len > 1 && comp_first == '0')
                return RP_EUID; /* "01": leading zero */
            comp_len = 0;
            continue;
        }
        if (ch < '0' || ch > '9')
            return RP_EUID;
        if (comp_len == 0)
            comp_first = ch;
        comp_len++;
    }
    return 0;
}

/* ---- small file helpers ---------------------------------------------------------------- */

int rp_store_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        RP_ERROR(MOD, "cannot open directory for fsync dir=%s errno=%s", dir, strerror(errno));
        return RP_EIO;
    }
    int rc = 0;
    if (fsync(fd) != 0) {
        RP_ERROR(MOD, "fsync failed dir=%s errno=%s", dir, strerror(errno));
        rc = RP_EIO;
    }
    close(fd);
    return rc;
}

int rp_store_errno_rc(int e)
{
    return (e == ENOSPC || e == EDQUOT) ? RP_ENOSPC : RP_EIO;
}

/* mkdir `path` if missing; when created, fsync its parent so the entry survives a crash. */
static int ensure_dir_durable(const char *path, const char *parent)
{
    struct stat st;
    if (stat(path, &st) == 0)
        return S_ISDIR(st.st_mode) ? 0 : RP_EIO;
    if (mkdir(path, 0750) != 0 && errno != EEXIST) {
        RP_ERROR(MOD, "mkdir failed dir=%s errno=%s", path, strerror(errno));
        return rp_store_errno_rc(errno);
    }
    return rp_store_fsync_dir(parent);
}

/* Where the dataset starts in the Part-10 stream at `base` in fd: after preamble and File
 * Meta group, or `base` itself for a raw dataset. */
static long long dataset_offset_fd(int fd, long long base)
{
    unsigned char b[132];
    long long off = base;
    ssize_t r = pread(fd, b, sizeof b, (off_t)base);
    if (r == (ssize_t)sizeof b && memcmp(b + 128, "DICM", 4) == 0) {
        /* Walk the File Meta group (always explicit VR little endian) element by element:
         * the group length may be missing or wrong in files from the wild. */
        off = base + 132;
        for (;;) {
            unsigned char e[12];
            if (pread(fd, e, 8, (off_t)off) != 8)
                break;
            unsigned group = e[0] | (e[1] << 8);
            if (group != 0x0002)
                break;
            int long_vr = (memcmp(e + 4, "OB", 2) == 0 || memcmp(e + 4, "OW", 2) == 0 ||
                           memcmp(e + 4, "OF", 2) == 0 || memcmp(e + 4, "SQ", 2) == 0 ||
                           memcmp(e + 4, "UT", 2) == 0 || memcmp(e + 4, "UN", 2) == 0 ||
                           memcmp(e + 4, "UC", 2) == 0 || memcmp(e + 4, "UR", 2) == 0 ||
                           memcmp(e + 4, "OD", 2) == 0 || memcmp(e + 4, "OL", 2) == 0 ||
                           memcmp(e + 4, "OV", 2) == 0);
            if (long_vr) {
                if (pread(fd, e, 12, (off_t)off) != 12)
                    break;
                unsigned long len = (unsigned long)e[8] | ((unsigned long)e[9] << 8) |
                                    ((unsigned long)e[10] << 16) | ((unsigned long)e[11] << 24);
                if (len == 0xffffffffUL)
                    break; /* undefined length in meta: give up walking */
                off += 12 + (long long)len;
            } else {
                off += 8 + (long long)(e[6] | (e[7] << 8));
            }
        }
    }
    return off;
}

long rp_store_dataset_offset(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return RP_EIO;
    long off = (long)dataset_offset_fd(fd, 0);
    close(fd);
    return off;
}

/* 1 when the dataset parts (after each copy's meta group) are byte-identical, 0 when they
 * differ, negative on I/O error. The meta group is ours (rewritten per reception), the
 * dataset is what the sender sent: identity of the dataset is what "same instance" means.
 * Copy a is `alen` bytes at `abase` in fa (a Part-10 stream), copy b the file at `bpath`. */
int rp_store_same_dataset_range(int fa, long long abase, long long alen, const char *bpath)
{
    int fb = open(bpath, O_RDONLY | O_CLOEXEC);
    if (fb < 0)
        return RP_EIO;
    struct stat sb;
    long long oa = dataset_offset_fd(fa, abase), ob = dataset_offset_fd(fb, 0);
    int rc = RP_EIO;
    static const size_t bufsz = 65536;
    unsigned char *ba = malloc(bufsz), *bb = malloc(bufsz);
    if (fstat(fb, &sb) != 0 || !ba || !bb)
        goto out;
    rc = 0;
    if (abase + alen - oa != (long long)sb.st_size - ob)
        goto out;
    long long left = abase + alen - oa;
    off_t pa = (off_t)oa, pb = (off_t)ob;
    rc = 1;
    while (left > 0) {
        size_t want = left > (long long)bufsz ? bufsz : (size_t)left;
        if (pread(fa, ba, want, pa) != (ssize_t)want || pread(fb, bb, want, pb) != (ssize_t)want) {
            rc = RP_EIO;
            break;
        }
        if (memcmp(ba, bb, want) != 0) {
            rc = 0;
            break;
        }
        pa += (off_t)want;
        pb += (off_t)want;
        left -= (long long)want;
    }
out:
    free(ba);
    free(bb);
    close(fb);
    return rc;
}

static int same_dataset_bytes(const char *a, const char *b)
{
    int fa = open(a, O_RDONLY | O_CLOEXEC);
    struct stat sa;
    if (fa < 0)
        return RP_EIO;
    int rc =
        fstat(fa, &sa) == 0 ? rp_store_same_dataset_range(fa, 0, (long long)sa.st_size, b) : RP_EIO;
    close(fa);
    return rc;
}

/* ---- open / close ---------------------------------------------------------------------- */

int rp_store_open(const rp_conf *c, rp_store **out)
{
    *out = NULL;
    if (!c || !c->data_dir[0])
        return RP_EINVAL;
    rp_store *s = calloc(1, sizeof *s);
    if (!s)
        return RP_ENOMEM;
    char abs[PATH_MAX];
    int rc = rp_mkdir_p(c->data_dir, 0750);
    if (rc != 0) {
        RP_ERROR(MOD, "cannot create data_dir=%s", c->data_dir);
        free(s);
        return rc;
    }
    if (!realpath(c->data_dir, abs)) {
        free(s);
        return RP_EIO;
    }
    if (rp_strlcpy(s->data_dir, abs, sizeof s->data_dir) != 0 ||
        snprintf(s->root, sizeof s->root, "%s/store", abs) >= (int)sizeof s->root ||
        snprintf(s->spool, sizeof s->spool, "%s/spool", abs) >= (int)sizeof s->spool) {
        free(s);
        return RP_EINVAL;
    }
    if ((rc = rp_mkdir_p(s->root, 0750)) != 0 || (rc = rp_mkdir_p(s->spool, 0750)) != 0) {
        RP_ERROR(MOD, "cannot create store/spool under data_dir=%s", abs);
        free(s);
        return rc;
    }
    s->min_free_mb = c->min_free_mb;
    s->log_mb = c->spool_log_mb > 0 ? c->spool_log_mb : 1024;
    s->dup_policy = c->duplicate_policy;
    s->uid_policy = c->uid_policy;
    if ((rc = rp_known_init(&s->known)) != 0) {
        free(s);
        return rc;
    }
    if ((rc = rp_pending_init(&s->pending)) != 0) {
        rp_known_free(&s->known);
        free(s);
        return rc;
    }
    pthread_mutex_init(&s->dir_lock, NULL);
    atomic_init(&s->spool_seq, 0);
    *out = s;
    return 0;
}

void rp_store_close(rp_store *s)
{
    if (!s)
        return;
    rp_store_index_stop(s);
    rp_known_free(&s->known);
    rp_pending_free(&s->pending);
    pthread_mutex_destroy(&s->dir_lock);
    free(s);
}

int rp_store_index_start(rp_store *s, int batch, int flush_ms)
{
    if (s->queue)
        return 0;
    char db[RP_PATH_MAX + 32];
    return rp_db_queue_start(rp_store_db_path(s, db, sizeof db), batch, flush_ms, &s->queue);
}

void rp_store_index_on_commit(rp_store *s, void (*fn)(void *arg, size_t n), void *arg)
{
    if (s && s->queue)
        rp_db_queue_on_commit(s->queue, fn, arg);
}

int rp_store_index_flush(rp_store *s)
{
    if (s->log)
        rp_spool_drain(s->log); /* committed instances reach the queue when promoted */
    return s->queue ? rp_db_queue_flush(s->queue) : 0;
}

void rp_store_index_stop(rp_store *s)
{
    rp_store_log_stop(s); /* promotes what is committed, which feeds the queue */
    if (s->queue) {
        rp_db_queue_stop(s->queue); /* flushes everything pushed */
        s->queue = NULL;
    }
}

const char *rp_store_root(const rp_store *s)
{
    return s->root;
}

const char *rp_store_db_path(const rp_store *s, char *buf, size_t bufsz)
{
    snprintf(buf, bufsz, "%s/index.sqlite", s->data_dir);
    return buf;
}

const char *rp_store_abs_path(const rp_store *s, const char *rel, char *buf, size_t bufsz)
{
    snprintf(buf, bufsz, "%s/%s", s->root, rel);
    return buf;
}

const char *rp_store_outcome_name(rp_store_outcome o)
{
    switch (o) {
    case RP_STORE_NEW:
        return "new";
    case RP_STORE_DUP_IDENTICAL:
        return "duplicate_identical";
    case RP_STORE_DUP_KEPT_FIRST:
        return "duplicate_kept_first";
    case RP_STORE_DUP_REPLACED:
        return "duplicate_replaced";
    }
    return "unknown";
}

/* ---- space and spool ------------------------------------------------------------------- */

int rp_store_space_check(rp_store *s)
{
    if (s->min_free_mb <= 0)
        return 0;
    struct statvfs v;
    if (statvfs(s->root, &v) != 0)
        return RP_EIO;
    unsigned long long free_b = (unsigned long long)v.f_bavail * (unsigned long long)v.f_frsize;
    if (free_b / (1024ULL * 1024ULL) < (unsigned long long)s->min_free_mb)
        return RP_ENOSPC;
    return 0;
}

int rp_store_spool_new(rp_store *s, char *path, size_t pathsz, int *fd)
{
    *fd = -1;
    for (int attempt = 0; attempt < 16; attempt++) {
        unsigned long seq = atomic_fetch_add(&s->spool_seq, 1);
        if (snprintf(path, pathsz, "%s/%ld-%lu-%d.part", s->spool, (long)getpid(), seq, attempt) >=
            (int)pathsz)
            return RP_EINVAL;
        int f = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
        if (f >= 0) {
            *fd = f;
            return 0;
        }
        if (errno != EEXIST) {
            RP_ERROR(MOD, "cannot create spool file path=%s errno=%s", path, strerror(errno));
            return rp_store_errno_rc(errno);
        }
    }
    return RP_EIO;
}

void rp_store_spool_discard(const char *path, int fd)
{
    if (fd >= 0)
        close(fd);
    if (path && path[0] && unlink(path) != 0 && errno != ENOENT)
        RP_WARN(MOD, "cannot remove spool file path=%s errno=%s", path, strerror(errno));
}

/* ---- header ---------------------------------------------------------------------------- */

/* The index's view of an instance, from dicom/'s view of its header. */
void rp_store_meta_from_dcm(rp_instance_meta *m, const rp_dcm_meta *d)
{
    memset(m, 0, sizeof *m);
#define CP(f)                                                                                      \
    _Static_assert(sizeof m->f == sizeof d->f, "field " #f " differs between db and dicom");       \
    memcpy(m->f, d->f, sizeof m->f)
    CP(patient_id);
    CP(issuer_of_patient_id);
    CP(patient_name);
    CP(patient_birth_date);
    CP(patient_sex);
    CP(study_uid);
    CP(study_date);
    CP(study_time);
    CP(accession_number);
    CP(study_description);
    CP(series_uid);
    CP(modality);
    CP(series_description);
    CP(body_part);
    CP(frame_of_reference_uid);
    CP(protocol_name);
    CP(sop_class_uid);
    CP(sop_instance_uid);
    CP(transfer_syntax_uid);
#undef CP
    m->series_number = d->series_number;
    m->instance_number = d->instance_number;
    m->number_of_frames = d->number_of_frames;
    m->images_in_acquisition = d->images_in_acquisition;
    m->number_of_temporal_positions = d->number_of_temporal_positions;
    m->number_of_slices = d->number_of_slices;
    m->acquisition_number = d->acquisition_number;
    m->slice_thickness = d->slice_thickness;
    m->repetition_time = d->repetition_time;
    m->echo_time = d->echo_time;
    m->inversion_time = d->inversion_time;
    m->file_size = d->file_size;
}

static int read_meta(const char *path, rp_instance_meta *meta, char *why, size_t whysz)
{
    rp_dcm_meta d;
    int rc = rp_dcm_read_meta(path, &d, why, whysz);
    if (rc == 0)
        rp_store_meta_from_dcm(meta, &d);
    return rc;
}

int rp_store_read_meta(const char *path, rp_instance_meta *meta)
{
    char why[256];
    int rc = read_meta(path, meta, why, sizeof why);
    if (rc == RP_ENOENT)
        return rc;
    if (rc != 0)
        return RP_EPARSE;
    if (!meta->study_uid[0] || !meta->series_uid[0] || !meta->sop_instance_uid[0] ||
        !meta->sop_class_uid[0])
        return RP_EPARSE;
    return 0;
}

void rp_store_set_reason(char *reason, size_t sz, const char *fmt, ...)
{
    if (!reason || !sz)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sz, fmt, ap);
    va_end(ap);
}

/* Check the four UIDs that make the path and identity of an instance. */
static int check_uids(const rp_instance_meta *m, rp_uid_policy policy, char *reason, size_t rsz)
{
    struct {
        const char *name, *v;
    } u[] = {{"study_uid", m->study_uid},
             {"series_uid", m->series_uid},
             {"sop_instance_uid", m->sop_instance_uid},
             {"sop_class_uid", m->sop_class_uid}};
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        if (!u[i].v[0]) {
            rp_store_set_reason(reason, rsz, "missing %s", u[i].name);
            return RP_EUID;
        }
        if (rp_store_uid_valid(u[i].v) == 0)
            continue;
        char q[160];
        rp_log_kv_quote(u[i].v, q, sizeof q);
        if (policy == RP_UID_LENIENT && rp_store_uid_safe(u[i].v) == 0) {
            /* old modalities send such UIDs and other archives store them: refusing would
             * lose the study; the path stays safe (digits and dots) */
            RP_WARN(MOD,
                    "uid_not_ps35 %s=%s reason=\"leading zero in a component; stored "
                    "under uid_policy=lenient\"",
                    u[i].name, q);
            continue;
        }
        rp_store_set_reason(reason, rsz, "invalid %s=%s%s", u[i].name, q,
                   rp_store_uid_safe(u[i].v) == 0 ? " (leading zero; uid_policy=strict)" : "");
        return RP_EUID;
    }
    return 0;
}

/* ---- put ------------------------------------------------------------------------------- */

int rp_store_admit_checks(const rp_store_put_args *args, rp_uid_policy policy,
                          rp_instance_meta *meta, char *reason, size_t reasonsz)
{
    int rc = check_uids(meta, policy, reason, reasonsz);
    if (rc != 0)
        return rc;
    if (args->expect_sop_instance_uid &&
        strcmp(args->expect_sop_instance_uid, meta->sop_instance_uid) != 0) {
        char q[160];
        rp_store_set_reason(reason, reasonsz,
                            "SOP Instance UID in dataset differs from request request_sop=%s",
                            rp_log_kv_quote(args->expect_sop_instance_uid, q, sizeof q));
        return RP_EUID;
    }
    if (args->expect_sop_class_uid &&
        strcmp(args->expect_sop_class_uid, meta->sop_class_uid) != 0) {
        char q[160];
        rp_store_set_reason(reason, reasonsz,
                            "SOP Class UID in dataset differs from request "
                            "request_class=%s dataset_class=%s",
                            rp_log_kv_quote(args->expect_sop_class_uid, q, sizeof q),
                            meta->sop_class_uid);
        return RP_EINVAL;
    }
    if (args->file_sha256)
        rp_strlcpy(meta->file_sha256, args->file_sha256, sizeof meta->file_sha256);
    if (args->calling_ae)
        rp_strlcpy(meta->calling_ae, args->calling_ae, sizeof meta->calling_ae);
    if (args->peer_host)
        rp_strlcpy(meta->peer_host, args->peer_host, sizeof meta->peer_host);
    meta->received_at = rp_now_s();
    /* Only validated UIDs from here on: they are digits and dots, never "..". */
    snprintf(meta->file_path, sizeof meta->file_path, "%s/%s/%s.dcm", meta->study_uid,
             meta->series_uid, meta->sop_instance_uid);
    return 0;
}

/* Read the header of the spool file and decide whether it may enter the store at all: UIDs
 * valid and as the request said. Fills meta (file_path is where it would go). */
static int admit(const char *spool_path, const rp_store_put_args *args, rp_uid_policy policy,
                 rp_instance_meta *meta, char *reason, size_t reasonsz)
{
    char why[256];
    int rc = read_meta(spool_path, meta, why, sizeof why);
    if (rc != 0) {
        rp_store_set_reason(reason, reasonsz, "%s", why);
        return rc == RP_ENOENT ? RP_EIO : RP_EPARSE;
    }
    if ((rc = rp_store_admit_checks(args, policy, meta, reason, reasonsz)) != 0)
        return rc;
    if (!args->file_sha256 && rp_sha256_file(spool_path, meta->file_sha256) != 0)
        meta->file_sha256[0] = '\0';
    return 0;
}

void rp_store_locate(rp_store *s, const rp_instance_meta *meta, rp_store_where *w)
{
    w->here = w->elsewhere = 0;
    w->known_rel[0] = '\0';
    if (rp_known_get(&s->known, meta->sop_instance_uid, w->known_rel, sizeof w->known_rel)) {
        char abs[RP_PATH_MAX + 1100];
        struct stat st;
        snprintf(abs, sizeof abs, "%s/%s", s->root, w->known_rel);
        if (stat(abs, &st) == 0) {
            w->here = strcmp(w->known_rel, meta->file_path) == 0;
            w->elsewhere = !w->here;
        }
    }
}

void rp_store_learned(rp_store *s, const rp_instance_meta *meta)
{
    if (rp_known_set(&s->known, meta->sop_instance_uid, meta->study_uid, meta->series_uid) != 0)
        RP_WARN(MOD,
                "out of memory remembering sop=%s: duplicates of it under another series "
                "will not be found",
                meta->sop_instance_uid);
    /* The index row follows the file: a move to another series updates the row and both
     * series' counts in the queue's transaction. */
    if (s->queue) {
        int qrc = rp_db_queue_push(s->queue, meta);
        if (qrc != 0) /* the file is durable; reconciliation will index it */
            RP_WARN(MOD, "index queue push failed sop=%s err=\"%s\"", meta->sop_instance_uid,
                    rp_strerror(qrc));
    }
}

/* The paths of one put. */
typedef struct {
    char study_dir[RP_PATH_MAX + 80];
    char series_dir[RP_PATH_MAX + 160];
    char final[RP_PATH_MAX + 240];
    int renamed; /* the spool file has become `final` */
} put_paths;

/* The durable commit: fsync the spool file (*fd, closed and set to -1; -1 when it already
 * is), make sure study/ and series/ exist with durable entries, rename the spool file to
 * `final` (without replacing an existing file unless `replace`), fsync the series directory.
 * Returns 0 when the instance is durable, RP_EEXIST when `final` exists and !replace (the
 * spool file stays), RP_EIO / RP_ENOSPC otherwise. This is the one step a group-committed
 * spool log would take over. */
static int commit_durable(rp_store *s, int *fd, const char *spool_path, put_paths *p, int replace,
                          char *reason, size_t reasonsz)
{
    if (*fd >= 0) {
        int f = *fd;
        *fd = -1;
        if (fsync(f) != 0) {
            int e = errno;
            close(f);
            rp_store_set_reason(reason, reasonsz, "fsync of spool file failed: %s", strerror(e));
            return rp_store_errno_rc(e);
        }
        if (close(f) != 0) {
            rp_store_set_reason(reason, reasonsz, "close of spool file failed: %s",
                                strerror(errno));
            return RP_EIO;
        }
    }
    pthread_mutex_lock(&s->dir_lock);
    int rc = ensure_dir_durable(p->study_dir, s->root);
    if (rc == 0)
        rc = ensure_dir_durable(p->series_dir, p->study_dir);
    pthread_mutex_unlock(&s->dir_lock);
    if (rc != 0) {
        rp_store_set_reason(reason, reasonsz, "cannot create series directory");
        return rc;
    }
    /* Without replacing: two writers of one UID cannot both believe they were first. */
    int r = replace ? rename(spool_path, p->final)
                    : renameat2(AT_FDCWD, spool_path, AT_FDCWD, p->final, RENAME_NOREPLACE);
    if (r != 0) {
        int e = errno;
        if (!replace && e == EEXIST)
            return RP_EEXIST;
        rp_store_set_reason(reason, reasonsz, "rename into store failed: %s", strerror(e));
        return rp_store_errno_rc(e);
    }
    p->renamed = 1;
    rc = rp_store_fsync_dir(p->series_dir);
    if (rc != 0) {
        /* The file is in place but its entry may not be durable: do not acknowledge. The
         * file stays (it is complete and valid); reconciliation indexes it. */
        rp_store_set_reason(reason, reasonsz, "fsync of series directory failed");
    }
    return rc;
}

/* A copy of this SOP Instance UID exists at p->final: settle it by policy. */
static int settle_same_path(rp_store *s, int *fd, const char *spool_path, put_paths *p,
                            rp_instance_meta *meta, rp_store_outcome *outcome, char *reason,
                            size_t reasonsz)
{
    int same = same_dataset_bytes(spool_path, p->final);
    if (same < 0) {
        rp_store_set_reason(reason, reasonsz, "cannot compare with the stored duplicate");
        return RP_EIO;
    }
    if (same) {
        *outcome = RP_STORE_DUP_IDENTICAL;
        struct stat st;
        if (stat(p->final, &st) == 0)
            meta->file_size = (long long)st.st_size;
        return 0;
    }
    switch (s->dup_policy) {
    case RP_DUP_KEEP_FIRST:
        *outcome = RP_STORE_DUP_KEPT_FIRST;
        return 0;
    case RP_DUP_REJECT:
        rp_store_set_reason(
            reason, reasonsz,
            "duplicate SOP Instance UID with different content (duplicate_policy=reject)");
        return RP_EDUP;
    case RP_DUP_REPLACE:
        break;
    }
    int rc = commit_durable(s, fd, spool_path, p, 1, reason, reasonsz);
    if (rc == 0)
        *outcome = RP_STORE_DUP_REPLACED;
    return rc;
}

/* After a replace across series: the new copy is durable, now the old one goes. */
void rp_store_remove_old_copy(rp_store *s, const char *old_rel, const char *new_rel,
                              const char *sop, int sync)
{
    char old_abs[RP_PATH_MAX + 1100];
    snprintf(old_abs, sizeof old_abs, "%s/%s", s->root, old_rel);
    if (unlink(old_abs) == 0) {
        char *slash = strrchr(old_abs, '/');
        if (slash && sync) {
            *slash = '\0';
            rp_store_fsync_dir(old_abs);
        }
        RP_WARN(MOD, "duplicate moved across series sop=%s from=%s to=%s", sop, old_rel, new_rel);
    } else if (errno != ENOENT) {
        RP_WARN(MOD, "cannot remove the replaced copy file=%s errno=%s", old_rel, strerror(errno));
    }
}

int rp_store_put(rp_store *s, const char *spool_path, int fd, const rp_store_put_args *args,
                 rp_instance_meta *meta, rp_store_outcome *outcome, char *reason, size_t reasonsz)
{
    static const rp_store_put_args no_args;
    if (!args)
        args = &no_args;
    rp_store_set_reason(reason, reasonsz, "%s", "");
    *outcome = RP_STORE_NEW;
    int rc = admit(spool_path, args, s->uid_policy, meta, reason, reasonsz);
    if (rc != 0) {
        rp_store_spool_discard(spool_path, fd);
        return rc;
    }
    return rp_store_put_admitted(s, spool_path, fd, meta, outcome, reason, reasonsz);
}

int rp_store_put_admitted(rp_store *s, const char *spool_path, int fd, rp_instance_meta *meta,
                          rp_store_outcome *outcome, char *reason, size_t reasonsz)
{
    *outcome = RP_STORE_NEW;
    put_paths p = {.renamed = 0};
    snprintf(p.study_dir, sizeof p.study_dir, "%s/%s", s->root, meta->study_uid);
    snprintf(p.series_dir, sizeof p.series_dir, "%s/%s", p.study_dir, meta->series_uid);
    snprintf(p.final, sizeof p.final, "%s/%s.dcm", p.series_dir, meta->sop_instance_uid);
    int rc = rp_spool_hold(s, meta->sop_instance_uid);
    if (rc != 0) {
        rp_store_set_reason(reason, reasonsz, "out of memory");
        rp_store_spool_discard(spool_path, fd);
        return rc;
    }
    rp_store_where w;
    rp_store_locate(s, meta, &w);
    if (w.elsewhere && s->dup_policy == RP_DUP_KEEP_FIRST) {
        *outcome = RP_STORE_DUP_KEPT_FIRST;
        rp_strlcpy(meta->file_path, w.known_rel, sizeof meta->file_path);
        goto out;
    }
    if (w.elsewhere && s->dup_policy == RP_DUP_REJECT) {
        rp_store_set_reason(reason, reasonsz,
                            "duplicate SOP Instance UID, stored under another series (%s) "
                            "(duplicate_policy=reject)",
                            w.known_rel);
        rc = RP_EDUP;
        goto out;
    }

    /* A copy already at this path skips the fsync a first copy needs (re-sent series are
     * common); the rename without replace still decides races the set cannot see. */
    rc = w.here ? RP_EEXIST : commit_durable(s, &fd, spool_path, &p, 0, reason, reasonsz);
    if (rc == RP_EEXIST)
        rc = settle_same_path(s, &fd, spool_path, &p, meta, outcome, reason, reasonsz);
    if (rc != 0 || *outcome == RP_STORE_DUP_IDENTICAL || *outcome == RP_STORE_DUP_KEPT_FIRST)
        goto out;
    if (w.elsewhere) {
        rp_store_remove_old_copy(s, w.known_rel, meta->file_path, meta->sop_instance_uid, 1);
        *outcome = RP_STORE_DUP_REPLACED;
    }
    rp_store_learned(s, meta);
out:
    rp_pending_release(&s->pending, meta->sop_instance_uid);
    rp_store_spool_discard(p.renamed ? NULL : spool_path, fd);
    return rc;
}

int rp_store_put_file(rp_store *s, const char *src_path, const rp_store_put_args *args,
                      rp_instance_meta *meta, rp_store_outcome *outcome, char *reason,
                      size_t reasonsz)
{
    char spool[RP_PATH_MAX + 64];
    int fd = -1, rc;
    int in = open(src_path, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        rp_store_set_reason(reason, reasonsz, "cannot open %s: %s", src_path, strerror(errno));
        return errno == ENOENT ? RP_ENOENT : RP_EIO;
    }
    if ((rc = rp_store_space_check(s)) != 0) {
        close(in);
        rp_store_set_reason(reason, reasonsz, "free space below min_free_mb");
        return rc;
    }
    if ((rc = rp_store_spool_new(s, spool, sizeof spool, &fd)) != 0) {
        close(in);
        return rc;
    }
    char buf[65536];
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = RP_EIO;
            break;
        }
        if (r == 0)
            break;
        ssize_t off = 0;
        while (off < r) {
            ssize_t w = write(fd, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = rp_store_errno_rc(errno);
                break;
            }
            off += w;
        }
        if (rc != 0)
            break;
    }
    close(in);
    if (rc != 0) {
        rp_store_set_reason(reason, reasonsz, "cannot copy into spool");
        rp_store_spool_discard(spool, fd);
        return rc;
    }
    return rp_store_put(s, spool, fd, args, meta, outcome, reason, reasonsz);
}

/* ---- reconcile / reindex --------------------------------------------------------------- */

/* Remove everything in spool/: those are transfers that were never acknowledged. */
static long clean_spool(rp_store *s)
{
    DIR *d = opendir(s->spool);
    if (!d)
        return RP_EIO;
    long n = 0;
    struct dirent *e;
    char p[RP_PATH_MAX + 300];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", s->spool, e->d_name);
        if (unlink(p) == 0) {
            n++;
            RP_INFO(MOD, "removed spool leftover file=%s", e->d_name);
        }
    }
    closedir(d);
    return n;
}

typedef int (*file_fn)(rp_store *s, const char *abs, const char *rel, const char *sop, void *ctx);

/* Visit every store/<study>/<series>/<sop>.dcm whose three names are valid UIDs. */
static int walk_store(rp_store *s, file_fn fn, void *ctx)
{
    DIR *d1 = opendir(s->root);
    if (!d1)
        return RP_EIO;
    int rc = 0;
    struct dirent *a;
    while (rc == 0 && (a = readdir(d1)) != NULL) {
        if (rp_store_uid_safe(a->d_name) != 0)
            continue;
        char p1[RP_PATH_MAX + 300];
        snprintf(p1, sizeof p1, "%s/%s", s->root, a->d_name);
        DIR *d2 = opendir(p1);
        if (!d2)
            continue;
        struct dirent *b;
        while (rc == 0 && (b = readdir(d2)) != NULL) {
            if (rp_store_uid_safe(b->d_name) != 0)
                continue;
            char p2[RP_PATH_MAX + 600];
            snprintf(p2, sizeof p2, "%s/%s", p1, b->d_name);
            DIR *d3 = opendir(p2);
            if (!d3)
                continue;
            struct dirent *c;
            while (rc == 0 && (c = readdir(d3)) != NULL) {
                size_t n = strlen(c->d_name);
                if (n < 5 || n > RP_UID_MAX + 4 || strcmp(c->d_name + n - 4, ".dcm") != 0)
                    continue;
                char sop[RP_UID_MAX + 1];
                memcpy(sop, c->d_name, n - 4);
                sop[n - 4] = '\0';
                if (rp_store_uid_safe(sop) != 0)
                    continue;
                char abs[RP_PATH_MAX + 900], rel[RP_PATH_MAX];
                snprintf(abs, sizeof abs, "%s/%s", p2, c->d_name);
                snprintf(rel, sizeof rel, "%s/%s/%s", a->d_name, b->d_name, c->d_name);
                rc = fn(s, abs, rel, sop, ctx);
            }
            closedir(d3);
        }
        closedir(d2);
    }
    closedir(d1);
    return rc;
}

typedef struct {
    rp_db *db;
    int only_missing;
    rp_instance_meta *batch;
    size_t n, cap;
    long indexed;
    int rc;
} index_ctx;

static int flush_batch(index_ctx *x)
{
    if (x->n == 0)
        return 0;
    int rc = rp_db_index_instances(x->db, x->batch, x->n);
    if (rc != 0)
        return rc;
    x->indexed += (long)x->n;
    x->n = 0;
    return 0;
}

/* Remember that the instance `sop` lives at `rel` (study/series/sop.dcm under the root). */
static void remember(rp_store *s, const char *rel, const char *sop)
{
    char study[RP_UID_MAX + 1], series[RP_UID_MAX + 1];
    const char *a = strchr(rel, '/'), *b = a ? strchr(a + 1, '/') : NULL;
    if (!b || a - rel > RP_UID_MAX || b - a - 1 > RP_UID_MAX)
        return;
    memcpy(study, rel, (size_t)(a - rel));
    study[a - rel] = '\0';
    memcpy(series, a + 1, (size_t)(b - a - 1));
    series[b - a - 1] = '\0';
    if (rp_known_set(&s->known, sop, study, series) != 0)
        RP_WARN(MOD, "out of memory remembering sop=%s", sop);
}

static int index_one(rp_store *s, const char *abs, const char *rel, const char *sop, void *ctx)
{
    index_ctx *x = ctx;
    if (x->only_missing) {
        rp_instance_meta have;
        int g = rp_db_instance_get(x->db, sop, &have);
        if (g != 0 && g != RP_ENOENT)
            return g;
        if (g == 0 && strcmp(have.file_path, rel) == 0) {
            remember(s, rel, sop);
            return 0;
        }
        if (g == 0) {
            /* The row points elsewhere: after a crash in the middle of a cross-series
             * replace, the file it names may be gone; then this file is the instance. */
            char other[RP_PATH_MAX + 1100];
            struct stat ost;
            snprintf(other, sizeof other, "%s/%s", s->root, have.file_path);
            if (stat(other, &ost) == 0) {
                RP_WARN(MOD,
                        "same SOP Instance UID stored twice, index keeps file=%s "
                        "other=%s",
                        have.file_path, rel);
                remember(s, have.file_path, sop);
                return 0;
            }
        }
    }
    rp_instance_meta *m = &x->batch[x->n];
    char why[256];
    if (read_meta(abs, m, why, sizeof why) != 0 ||
        check_uids(m, RP_UID_LENIENT, why, sizeof why) != 0) {
        RP_WARN(MOD, "not indexed, unreadable file in store file=%s reason=\"%s\"", rel, why);
        return 0;
    }
    if (strcmp(m->sop_instance_uid, sop) != 0) {
        RP_WARN(MOD, "not indexed, file name differs from its SOP Instance UID file=%s sop=%s", rel,
                m->sop_instance_uid);
        return 0;
    }
    rp_strlcpy(m->file_path, rel, sizeof m->file_path);
    if (rp_sha256_file(abs, m->file_sha256) != 0)
        m->file_sha256[0] = '\0';
    struct stat st;
    m->received_at = stat(abs, &st) == 0 ? (double)st.st_mtime : rp_now_s();
    remember(s, rel, sop);
    if (x->only_missing)
        RP_INFO(MOD, "reconcile indexed file the index missed sop=%s series=%s", sop,
                m->series_uid);
    if (++x->n == x->cap)
        return flush_batch(x);
    return 0;
}

static long index_walk(rp_store *s, rp_db *db, int only_missing)
{
    index_ctx x = {.db = db, .only_missing = only_missing, .cap = 256};
    x.batch = calloc(x.cap, sizeof *x.batch);
    if (!x.batch)
        return RP_ENOMEM;
    int rc = walk_store(s, index_one, &x);
    if (rc == 0)
        rc = flush_batch(&x);
    free(x.batch);
    return rc != 0 ? rc : x.indexed;
}

long rp_store_reconcile(rp_store *s, rp_db *db)
{
    double t0 = rp_mono_s();
    long tails = 0;
    long replayed = rp_spool_replay(s, db, &tails);
    if (replayed < 0) {
        RP_ERROR(MOD, "reconcile failed replaying the spool log err=\"%s\"",
                 rp_strerror((int)replayed));
        return replayed;
    }
    long removed = clean_spool(s);
    long n = index_walk(s, db, 1);
    if (n < 0) {
        RP_ERROR(MOD, "reconcile failed err=\"%s\"", rp_strerror((int)n));
        return n;
    }
    RP_INFO(MOD,
            "reconcile done indexed=%ld spool_removed=%ld log_replayed=%ld log_tails=%ld "
            "known=%zu seconds=%.3f",
            n + replayed, removed < 0 ? 0 : removed, replayed, tails, rp_known_count(&s->known),
            rp_mono_s() - t0);
    return n + replayed;
}

long rp_store_reindex(rp_store *s, rp_db *db)
{
    double t0 = rp_mono_s();
    int rc = rp_db_clear_index(db);
    if (rc != 0)
        return rc;
    long n = index_walk(s, db, 0);
    if (n >= 0)
        RP_INFO(MOD, "reindex done indexed=%ld seconds=%.3f", n, rp_mono_s() - t0);
    return n;
}
