/*
 * store — instances on disk: spool, validated paths, atomic durable commit, duplicates,
 * free-space watermark, reconciliation with the index. See store.h for the contract.
 *
 * Durability argument (invariant 1, "acknowledged means durable"):
 *   spool file written -> fsync(file) -> [mkdir study/series, fsync(parent) for each new dir]
 *   -> rename(spool, final) -> fsync(series dir). Only then does rp_store_commit() return 0.
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
#include "dicom/meta.h"

#define MOD "store"

struct rp_store {
    char data_dir[RP_PATH_MAX];
    char root[RP_PATH_MAX];  /* <data_dir>/store */
    char spool[RP_PATH_MAX]; /* <data_dir>/spool */
    long long min_free_mb;
    rp_dup_policy dup_policy;
    /* Serialises "make sure <study>/<series> exists and is durable": a second thread must
     * not see a directory that exists but whose entry is not yet fsync'd in its parent. */
    pthread_mutex_t dir_lock;
    atomic_ulong spool_seq;
};

/* ---- UIDs ------------------------------------------------------------------------------ */

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

static int fsync_path(const char *dir)
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

static int errno_to_rp(int e)
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
        return errno_to_rp(errno);
    }
    return fsync_path(parent);
}

long rp_store_dataset_offset(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return RP_EIO;
    unsigned char b[132];
    long off = 0;
    ssize_t r = pread(fd, b, sizeof b, 0);
    if (r == (ssize_t)sizeof b && memcmp(b + 128, "DICM", 4) == 0) {
        /* Walk the File Meta group (always explicit VR little endian) element by element:
         * the group length may be missing or wrong in files from the wild. */
        off = 132;
        for (;;) {
            unsigned char e[12];
            if (pread(fd, e, 8, off) != 8)
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
                if (pread(fd, e, 12, off) != 12)
                    break;
                unsigned long len = (unsigned long)e[8] | ((unsigned long)e[9] << 8) |
                                    ((unsigned long)e[10] << 16) | ((unsigned long)e[11] << 24);
                if (len == 0xffffffffUL)
                    break; /* undefined length in meta: give up walking */
                off += 12 + (long)len;
            } else {
                off += 8 + (long)(e[6] | (e[7] << 8));
            }
        }
    }
    close(fd);
    return off;
}

/* 1 when the dataset parts (after each file's meta group) are byte-identical, 0 when they
 * differ, negative on I/O error. The meta group is ours (rewritten per reception), the
 * dataset is what the sender sent: identity of the dataset is what "same instance" means. */
static int same_dataset_bytes(const char *a, const char *b)
{
    long oa = rp_store_dataset_offset(a), ob = rp_store_dataset_offset(b);
    if (oa < 0 || ob < 0)
        return RP_EIO;
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0)
        return RP_EIO;
    if (sa.st_size - oa != sb.st_size - ob)
        return 0;
    int fa = open(a, O_RDONLY | O_CLOEXEC), fb = open(b, O_RDONLY | O_CLOEXEC);
    int rc = RP_EIO;
    static const size_t bufsz = 65536;
    unsigned char *ba = malloc(bufsz), *bb = malloc(bufsz);
    if (fa < 0 || fb < 0 || !ba || !bb)
        goto out;
    long long left = (long long)(sa.st_size - oa);
    off_t pa = oa, pb = ob;
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
    if (fa >= 0)
        close(fa);
    if (fb >= 0)
        close(fb);
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
    s->dup_policy = c->duplicate_policy;
    pthread_mutex_init(&s->dir_lock, NULL);
    atomic_init(&s->spool_seq, 0);
    *out = s;
    return 0;
}

void rp_store_close(rp_store *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->dir_lock);
    free(s);
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
            return errno_to_rp(errno);
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

int rp_store_read_meta(const char *path, rp_instance_meta *meta)
{
    char why[256];
    int rc = rp_dcm_read_meta(path, meta, why, sizeof why);
    if (rc == RP_ENOENT)
        return rc;
    if (rc != 0)
        return RP_EPARSE;
    if (!meta->study_uid[0] || !meta->series_uid[0] || !meta->sop_instance_uid[0] ||
        !meta->sop_class_uid[0])
        return RP_EPARSE;
    return 0;
}

static void set_reason(char *reason, size_t sz, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_reason(char *reason, size_t sz, const char *fmt, ...)
{
    if (!reason || !sz)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sz, fmt, ap);
    va_end(ap);
}

/* Check the four UIDs that make the path and identity of an instance. */
static int check_uids(const rp_instance_meta *m, char *reason, size_t rsz)
{
    struct {
        const char *name, *v;
    } u[] = {{"study_uid", m->study_uid},
             {"series_uid", m->series_uid},
             {"sop_instance_uid", m->sop_instance_uid},
             {"sop_class_uid", m->sop_class_uid}};
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        if (!u[i].v[0]) {
            set_reason(reason, rsz, "missing %s", u[i].name);
            return RP_EUID;
        }
        if (rp_store_uid_valid(u[i].v) != 0) {
            char q[160];
            set_reason(reason, rsz, "invalid %s=%s", u[i].name,
                       rp_log_kv_quote(u[i].v, q, sizeof q));
            return RP_EUID;
        }
    }
    return 0;
}

/* ---- commit ---------------------------------------------------------------------------- */

int rp_store_commit(rp_store *s, const char *spool_path, int fd, const rp_store_commit_args *args,
                    rp_instance_meta *meta, rp_store_outcome *outcome, char *reason,
                    size_t reasonsz)
{
    static const rp_store_commit_args no_args;
    if (!args)
        args = &no_args;
    set_reason(reason, reasonsz, "%s", "");
    *outcome = RP_STORE_NEW;
    int rc = 0;
    char why[256];
    char study_dir[RP_PATH_MAX + 80], series_dir[RP_PATH_MAX + 160], final[RP_PATH_MAX + 240];

    if (fd >= 0) {
        if (fsync(fd) != 0) {
            int e = errno;
            set_reason(reason, reasonsz, "fsync of spool file failed: %s", strerror(e));
            rc = errno_to_rp(e);
            goto fail;
        }
        if (close(fd) != 0) {
            fd = -1;
            rc = RP_EIO;
            set_reason(reason, reasonsz, "close of spool file failed: %s", strerror(errno));
            goto fail;
        }
        fd = -1;
    }

    rc = rp_dcm_read_meta(spool_path, meta, why, sizeof why);
    if (rc != 0) {
        set_reason(reason, reasonsz, "%s", why);
        rc = rc == RP_ENOENT ? RP_EIO : RP_EPARSE;
        goto fail;
    }
    if ((rc = check_uids(meta, reason, reasonsz)) != 0)
        goto fail;
    if (args->expect_sop_instance_uid &&
        strcmp(args->expect_sop_instance_uid, meta->sop_instance_uid) != 0) {
        char q[160];
        set_reason(reason, reasonsz,
                   "SOP Instance UID in dataset differs from request request_sop=%s",
                   rp_log_kv_quote(args->expect_sop_instance_uid, q, sizeof q));
        rc = RP_EUID;
        goto fail;
    }
    if (args->expect_sop_class_uid &&
        strcmp(args->expect_sop_class_uid, meta->sop_class_uid) != 0) {
        char q[160];
        set_reason(reason, reasonsz,
                   "SOP Class UID in dataset differs from request "
                   "request_class=%s dataset_class=%s",
                   rp_log_kv_quote(args->expect_sop_class_uid, q, sizeof q), meta->sop_class_uid);
        rc = RP_EINVAL;
        goto fail;
    }
    if (args->file_sha256)
        rp_strlcpy(meta->file_sha256, args->file_sha256, sizeof meta->file_sha256);
    else if (rp_sha256_file(spool_path, meta->file_sha256) != 0)
        meta->file_sha256[0] = '\0';
    if (args->calling_ae)
        rp_strlcpy(meta->calling_ae, args->calling_ae, sizeof meta->calling_ae);
    if (args->peer_host)
        rp_strlcpy(meta->peer_host, args->peer_host, sizeof meta->peer_host);
    meta->received_at = rp_now_s();

    /* Only validated UIDs from here on: they are digits and dots, never "..". */
    snprintf(study_dir, sizeof study_dir, "%s/%s", s->root, meta->study_uid);
    snprintf(series_dir, sizeof series_dir, "%s/%s", study_dir, meta->series_uid);
    snprintf(final, sizeof final, "%s/%s.dcm", series_dir, meta->sop_instance_uid);
    snprintf(meta->file_path, sizeof meta->file_path, "%s/%s/%s.dcm", meta->study_uid,
             meta->series_uid, meta->sop_instance_uid);

    /* The same SOP Instance UID under another study/series (the index knows where). */
    char old_abs[RP_PATH_MAX + 1100] = "";
    if (args->existing_path && args->existing_path[0] &&
        strcmp(args->existing_path, meta->file_path) != 0 && !strstr(args->existing_path, "..")) {
        struct stat ost;
        snprintf(old_abs, sizeof old_abs, "%s/%s", s->root, args->existing_path);
        if (stat(old_abs, &ost) != 0) {
            old_abs[0] = '\0';
        } else if (s->dup_policy == RP_DUP_KEEP_FIRST) {
            *outcome = RP_STORE_DUP_KEPT_FIRST;
            rp_strlcpy(meta->file_path, args->existing_path, sizeof meta->file_path);
            rp_store_spool_discard(spool_path, -1);
            return 0;
        } else if (s->dup_policy == RP_DUP_REJECT) {
            set_reason(reason, reasonsz,
                       "duplicate SOP Instance UID, stored under another series (%s) "
                       "(duplicate_policy=reject)",
                       args->existing_path);
            rc = RP_EDUP;
            goto fail;
        }
    }

    pthread_mutex_lock(&s->dir_lock);
    rc = ensure_dir_durable(study_dir, s->root);
    if (rc == 0)
        rc = ensure_dir_durable(series_dir, study_dir);
    pthread_mutex_unlock(&s->dir_lock);
    if (rc != 0) {
        set_reason(reason, reasonsz, "cannot create series directory");
        goto fail;
    }

    /* First copy: rename without replacing, so two writers of one UID cannot both believe
     * they were first. */
    if (renameat2(AT_FDCWD, spool_path, AT_FDCWD, final, RENAME_NOREPLACE) == 0) {
        *outcome = RP_STORE_NEW;
    } else if (errno == EEXIST) {
        int same = same_dataset_bytes(spool_path, final);
        if (same < 0) {
            set_reason(reason, reasonsz, "cannot compare with the stored duplicate");
            rc = RP_EIO;
            goto fail;
        }
        if (same) {
            *outcome = RP_STORE_DUP_IDENTICAL;
            rp_store_spool_discard(spool_path, -1);
            struct stat st;
            if (stat(final, &st) == 0)
                meta->file_size = (long long)st.st_size;
            return 0;
        }
        switch (s->dup_policy) {
        case RP_DUP_KEEP_FIRST:
            *outcome = RP_STORE_DUP_KEPT_FIRST;
            rp_store_spool_discard(spool_path, -1);
            return 0;
        case RP_DUP_REJECT:
            set_reason(reason, reasonsz,
                       "duplicate SOP Instance UID with different content "
                       "(duplicate_policy=reject)");
            rc = RP_EDUP;
            goto fail;
        case RP_DUP_REPLACE:
            if (rename(spool_path, final) != 0) {
                int e = errno;
                set_reason(reason, reasonsz, "rename failed: %s", strerror(e));
                rc = errno_to_rp(e);
                goto fail;
            }
            *outcome = RP_STORE_DUP_REPLACED;
            break;
        }
    } else {
        int e = errno;
        set_reason(reason, reasonsz, "rename into store failed: %s", strerror(e));
        rc = errno_to_rp(e);
        goto fail;
    }
    rc = fsync_path(series_dir);
    if (rc != 0) {
        /* The file is in place but its entry may not be durable: do not acknowledge. The
         * file stays (it is complete and valid); reconciliation indexes it. */
        set_reason(reason, reasonsz, "fsync of series directory failed");
        return rc;
    }
    if (old_abs[0]) {
        /* replace across series: the new copy is durable, now the old one goes */
        if (unlink(old_abs) == 0) {
            char *slash = strrchr(old_abs, '/');
            if (slash) {
                *slash = '\0';
                fsync_path(old_abs);
            }
        } else {
            RP_WARN(MOD, "cannot remove the replaced copy file=%s errno=%s", args->existing_path,
                    strerror(errno));
        }
        *outcome = RP_STORE_DUP_REPLACED;
    }
    return 0;

fail:
    rp_store_spool_discard(spool_path, fd);
    return rc;
}

int rp_store_put_file(rp_store *s, const char *src_path, const rp_store_commit_args *args,
                      rp_instance_meta *meta, rp_store_outcome *outcome, char *reason,
                      size_t reasonsz)
{
    char spool[RP_PATH_MAX + 64];
    int fd = -1, rc;
    int in = open(src_path, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        set_reason(reason, reasonsz, "cannot open %s: %s", src_path, strerror(errno));
        return errno == ENOENT ? RP_ENOENT : RP_EIO;
    }
    if ((rc = rp_store_space_check(s)) != 0) {
        close(in);
        set_reason(reason, reasonsz, "free space below min_free_mb");
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
                rc = errno_to_rp(errno);
                break;
            }
            off += w;
        }
        if (rc != 0)
            break;
    }
    close(in);
    if (rc != 0) {
        set_reason(reason, reasonsz, "cannot copy into spool");
        rp_store_spool_discard(spool, fd);
        return rc;
    }
    return rp_store_commit(s, spool, fd, args, meta, outcome, reason, reasonsz);
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
        if (rp_store_uid_valid(a->d_name) != 0)
            continue;
        char p1[RP_PATH_MAX + 300];
        snprintf(p1, sizeof p1, "%s/%s", s->root, a->d_name);
        DIR *d2 = opendir(p1);
        if (!d2)
            continue;
        struct dirent *b;
        while (rc == 0 && (b = readdir(d2)) != NULL) {
            if (rp_store_uid_valid(b->d_name) != 0)
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
                if (rp_store_uid_valid(sop) != 0)
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

static int index_one(rp_store *s, const char *abs, const char *rel, const char *sop, void *ctx)
{
    index_ctx *x = ctx;
    if (x->only_missing) {
        rp_instance_meta have;
        int g = rp_db_instance_get(x->db, sop, &have);
        if (g != 0 && g != RP_ENOENT)
            return g;
        if (g == 0 && strcmp(have.file_path, rel) == 0)
            return 0;
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
                return 0;
            }
        }
    }
    rp_instance_meta *m = &x->batch[x->n];
    char why[256];
    if (rp_dcm_read_meta(abs, m, why, sizeof why) != 0 || check_uids(m, why, sizeof why) != 0) {
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
    long removed = clean_spool(s);
    long n = index_walk(s, db, 1);
    if (n < 0) {
        RP_ERROR(MOD, "reconcile failed err=\"%s\"", rp_strerror((int)n));
        return n;
    }
    RP_INFO(MOD, "reconcile done indexed=%ld spool_removed=%ld seconds=%.3f", n,
            removed < 0 ? 0 : removed, rp_mono_s() - t0);
    return n;
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
