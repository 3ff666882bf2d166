/*
 * spool_records — the spool log's records read back: one copied into store/ (for the
 * promoter and for replay), and recovery at start (rp_spool_replay, called by
 * rp_store_reconcile). The format is in spool_internal.h, the reasoning in spool.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"
#include "store/spool_internal.h"

#define MOD "store"

/* ---- reading and writing the log -------------------------------------------------------- */

int rp_spool_pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return rp_store_errno_rc(errno);
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

int rp_spool_pread_all(int fd, void *buf, size_t n, uint64_t off)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return RP_EIO;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

int rp_spool_read_log_hdr(int fd, log_hdr *out)
{
    int found = 0;
    for (int c = 0; c < 2; c++) {
        log_hdr h;
        if (rp_spool_pread_all(fd, &h, sizeof h, (uint64_t)c * LOG_HDR_COPY) != 0)
            continue;
        if (memcmp(h.magic, RP_SPOOL_LOG_MAGIC, 8) != 0 || h.version != 1 ||
            h.crc != crc_of(&h, offsetof(log_hdr, crc)) || h.slab_bytes != SLAB_BYTES ||
            h.slabs_off != SLABS_OFF)
            continue;
        if (!found || h.stamp > out->stamp)
            *out = h;
        found = 1;
    }
    return found ? 0 : RP_ENOENT;
}

/* ---- promotion: one record into store/ ---------------------------------------------------- */

/* Copy `len` bytes at `off` of the log to the start of `out`, hashing them with SHA-256 (hex
 * into sha) on the way, through `buf` (PROMO_BUF bytes, page-aligned). Each chunk is read
 * with pread, which leaves it in the CPU's cache for the hash, and written from there; with
 * `direct` (out opened O_DIRECT) the device takes the whole pages straight from buf, so store/
 * gets no second copy in the page cache and writeback has nothing left to do; a last partial
 * page goes through the page cache (a new block past the end: nothing to read back first).
 * Measured against the earlier mmap of the log per instance (dev VM, 512 KB instances): ~25%
 * less CPU, the mapping's page-table set-up, its faults and the TLB shoot-down of munmap were
 * more than the copy into a buffer that stays in cache. */
static int copy_hashed(int in, uint64_t off, uint64_t len, int out, int direct, unsigned char *buf,
                       char sha[65])
{
    sha[0] = '\0';
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int rc = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 ? 0 : RP_ENOMEM;
    for (uint64_t done = 0; rc == 0 && done < len;) {
        size_t n = len - done > PROMO_BUF ? PROMO_BUF : (size_t)(len - done);
        rc = rp_spool_pread_all(in, buf, n, off + done);
        if (rc != 0)
            break;
        EVP_DigestUpdate(md, buf, n);
        size_t whole = direct ? n & ~(size_t)(BLOCK - 1) : n;
        if (whole > 0)
            rc = rp_spool_pwrite_all(out, buf, whole, done);
        if (rc == 0 && whole < n) {
            int fl = fcntl(out, F_GETFL);
            if (fl < 0 || fcntl(out, F_SETFL, fl & ~O_DIRECT) != 0)
                rc = RP_EIO;
            else
                rc = rp_spool_pwrite_all(out, buf + whole, n - whole, done + whole);
            direct = 0;
        }
        done += n;
    }
    unsigned char d[32];
    unsigned dl = 0;
    if (rc == 0 && EVP_DigestFinal_ex(md, d, &dl) == 1 && dl == 32)
        for (int i = 0; i < 32; i++)
            snprintf(sha + 2 * i, 3, "%02x", d[i]);
    else if (rc == 0)
        rc = RP_EIO;
    EVP_MD_CTX_free(md);
    return rc;
}

static int make_series_dir(rp_store *s, const rp_instance_meta *m)
{
    char dir[RP_PATH_MAX + 200];
    snprintf(dir, sizeof dir, "%s/%s", s->root, m->study_uid);
    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
        return rp_store_errno_rc(errno);
    snprintf(dir, sizeof dir, "%s/%s/%s", s->root, m->study_uid, m->series_uid);
    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
        return rp_store_errno_rc(errno);
    return 0;
}

int rp_spool_promote_bytes(rp_store *s, int log_fd, uint64_t off, uint64_t len,
                           const rp_instance_meta *m, unsigned char *buf, char sha[65])
{
    char final[RP_PATH_MAX + 300], tmp[RP_PATH_MAX + 320];
    snprintf(final, sizeof final, "%s/%s/%s/%s.dcm", s->root, m->study_uid, m->series_uid,
             m->sop_instance_uid);
    /* in spool/: store/ only ever shows whole instances under their final names, and what
     * a crash leaves here is removed at the next start */
    snprintf(tmp, sizeof tmp, "%s/%s.promote", s->spool, m->sop_instance_uid);
    /* O_DIRECT (see copy_hashed); where the file system refuses it (tmpfs), buffered. */
    int rc = RP_EINVAL;
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_DIRECT, 0640);
    if (out >= 0) {
        rc = copy_hashed(log_fd, off, len, out, 1, buf, sha);
        if (rc != 0 && rc != RP_ENOSPC) {
            close(out);
            out = -1;
        }
    }
    if (out < 0) {
        out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (out < 0)
            return rp_store_errno_rc(errno);
        rc = copy_hashed(log_fd, off, len, out, 0, buf, sha);
    }
    if (close(out) != 0 && rc == 0)
        rc = RP_EIO;
    /* The series directory exists for all but its first instance: make it only when the
     * rename says it is missing (two failing mkdir calls per instance otherwise). */
    if (rc == 0 && rename(tmp, final) != 0) {
        rc = errno == ENOENT ? make_series_dir(s, m) : rp_store_errno_rc(errno);
        if (rc == 0 && rename(tmp, final) != 0)
            rc = rp_store_errno_rc(errno);
    }
    if (rc != 0)
        unlink(tmp);
    return rc;
}

/* ---- recovery ----------------------------------------------------------------------------- */

typedef struct {
    uint64_t seq, pos, len;
    unsigned flags;
    char study[RP_UID_MAX + 1], series[RP_UID_MAX + 1], sop[RP_UID_MAX + 1];
    char old_rel[RP_PATH_MAX];
} replay_rec;

static int cmp_seq(const void *a, const void *b)
{
    const replay_rec *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int crc_range(int fd, uint64_t off, uint64_t len, uint32_t *crc)
{
    char *buf = malloc(COPY_BYTES);
    if (!buf)
        return RP_ENOMEM;
    uint32_t c = 0;
    int rc = 0;
    for (uint64_t done = 0; rc == 0 && done < len;) {
        size_t n = len - done > COPY_BYTES ? COPY_BYTES : (size_t)(len - done);
        rc = rp_spool_pread_all(fd, buf, n, off + done);
        c = libdeflate_crc32(c, buf, n);
        done += n;
    }
    free(buf);
    *crc = c;
    return rc;
}

/* Records of slab i above W, appended to *list. 1 when the slab ended in something that is
 * not a record (an uncommitted tail), 0 when it simply ended. */
static int scan_slab(int fd, uint64_t file_size, int i, const log_hdr *lh, replay_rec **list,
                     size_t *n, size_t *cap)
{
    slab_hdr sh;
    uint64_t start = slab_start(i), end = start + SLAB_BYTES;
    if (end > file_size || rp_spool_pread_all(fd, &sh, sizeof sh, start) != 0 ||
        memcmp(sh.magic, RP_SPOOL_SLAB_MAGIC, 8) != 0 ||
        sh.crc != crc_of(&sh, offsetof(slab_hdr, crc)) || sh.log_gen != lh->log_gen ||
        sh.index != (uint32_t)i)
        return 0;
    for (uint64_t p = start + BLOCK; p + BLOCK <= end;) {
        rec_hdr h;
        if (rp_spool_pread_all(fd, &h, sizeof h, p) != 0 ||
            memcmp(h.magic, RP_SPOOL_REC_MAGIC, 8) != 0 ||
            h.crc != crc_of(&h, offsetof(rec_hdr, crc)) || h.log_gen != lh->log_gen ||
            h.slab_gen != sh.slab_gen || h.pos != p || h.len > end - p - BLOCK)
            return 1;
        h.study[RP_UID_MAX] = h.series[RP_UID_MAX] = h.sop[RP_UID_MAX] = '\0';
        h.old_rel[sizeof h.old_rel - 1] = '\0';
        if (h.seq > lh->promoted_through) {
            uint32_t c;
            if (crc_range(fd, p + BLOCK, h.len, &c) != 0 || c != h.data_crc)
                return 1;
            if (rp_store_uid_valid(h.study) || rp_store_uid_valid(h.series) ||
                rp_store_uid_valid(h.sop))
                return 1;
            if (*n == *cap) {
                size_t nc = *cap ? *cap * 2 : 64;
                replay_rec *l = realloc(*list, nc * sizeof *l);
                if (!l)
                    return 1;
                *list = l;
                *cap = nc;
            }
            replay_rec *r = &(*list)[(*n)++];
            r->seq = h.seq;
            r->pos = p;
            r->len = h.len;
            r->flags = h.flags;
            memcpy(r->study, h.study, sizeof r->study);
            memcpy(r->series, h.series, sizeof r->series);
            memcpy(r->sop, h.sop, sizeof r->sop);
            memcpy(r->old_rel, h.old_rel, sizeof r->old_rel);
        }
        p = align_block(p + BLOCK + h.len);
    }
    return 0;
}

long rp_spool_replay(rp_store *s, rp_db *db, long *tails)
{
    *tails = 0;
    char path[RP_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", s->data_dir, RP_SPOOL_LOG_NAME);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        s->log_replayed = 1;
        return errno == ENOENT ? 0 : RP_EIO;
    }
    struct stat st;
    log_hdr lh;
    if (fstat(fd, &st) != 0 || rp_spool_read_log_hdr(fd, &lh) != 0) {
        /* never initialised (a crash while creating it): it held nothing acknowledged */
        close(fd);
        s->log_replayed = 1;
        return 0;
    }
    replay_rec *list = NULL;
    size_t n = 0, cap = 0;
    int n_slabs = (int)(((uint64_t)st.st_size - SLABS_OFF) / SLAB_BYTES);
    for (int i = 0; i < n_slabs; i++)
        *tails += scan_slab(fd, (uint64_t)st.st_size, i, &lh, &list, &n, &cap);
    if (n) /* qsort must not see NULL, even for 0 items */
        qsort(list, n, sizeof *list, cmp_seq);
    long done = 0;
    int rc = 0;
    rp_instance_meta *metas = n ? calloc(n, sizeof *metas) : NULL;
    unsigned char *pbuf = NULL;
    if (n && (!metas || posix_memalign((void **)&pbuf, BLOCK, PROMO_BUF) != 0))
        rc = RP_ENOMEM;
    for (size_t k = 0; rc == 0 && k < n; k++) {
        replay_rec *r = &list[k];
        rp_instance_meta *m = &metas[done];
        rp_strlcpy(m->study_uid, r->study, sizeof m->study_uid);
        rp_strlcpy(m->series_uid, r->series, sizeof m->series_uid);
        rp_strlcpy(m->sop_instance_uid, r->sop, sizeof m->sop_instance_uid);
        char sha[65];
        rc = rp_spool_promote_bytes(s, fd, r->pos + BLOCK, r->len, m, pbuf, sha);
        if (rc != 0) {
            RP_ERROR(MOD, "cannot replay from the spool log sop=%s err=\"%s\"", r->sop,
                     rp_strerror(rc));
            break;
        }
        char rel[RP_PATH_MAX], abs[RP_PATH_MAX + 1100];
        snprintf(rel, sizeof rel, "%s/%s/%s.dcm", r->study, r->series, r->sop);
        if (r->old_rel[0])
            rp_store_remove_old_copy(s, r->old_rel, rel, r->sop, 0);
        snprintf(abs, sizeof abs, "%s/%s", s->root, rel);
        if (rp_store_read_meta(abs, m) != 0) {
            RP_WARN(MOD, "replayed instance has an unreadable header file=%s", rel);
            continue; /* on disk; reconciliation's walk will say more */
        }
        rp_strlcpy(m->file_path, rel, sizeof m->file_path);
        rp_strlcpy(m->file_sha256, sha, sizeof m->file_sha256);
        /* it arrived before the node stopped, not now: the log's last write bounds that, so a
         * series that went quiet while the node was down completes at start */
        m->received_at = (double)st.st_mtim.tv_sec + (double)st.st_mtim.tv_nsec * 1e-9;
        if (rp_known_set(&s->known, r->sop, r->study, r->series) != 0)
            RP_WARN(MOD, "out of memory remembering sop=%s", r->sop);
        RP_INFO(MOD, "replayed from the spool log sop=%s series=%s bytes=%llu", r->sop, r->series,
                (unsigned long long)r->len);
        done++;
    }
    /* Durable before the log may start over (a new generation forgets these records). */
    if (rc == 0 && n > 0) {
        int rfd = open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (rfd < 0 || syncfs(rfd) != 0)
            rc = RP_EIO;
        if (rfd >= 0)
            close(rfd);
    }
    if (rc == 0 && db && done > 0)
        rc = rp_db_index_instances(db, metas, (size_t)done);
    free(pbuf);
    free(metas);
    free(list);
    close(fd);
    if (rc != 0)
        return rc;
    s->log_replayed = 1;
    return done;
}
