/* common — error strings, thread-safe logging, clocks and small helpers. */
#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *const rp_errstr[] = {
    "success",
    "out of memory",
    "invalid argument",
    "I/O error",
    "not found",
    "already exists",
    "out of disk space (below the free-space watermark)",
    "cannot parse input",
    "missing or invalid UID",
    "database error",
    "configuration error",
    "unsupported",
    "network error",
    "timed out",
    "duplicate rejected by policy",
    "pixel data cannot be decoded",
    "geometry cannot be assembled",
    "refused by peer",
    "internal error",
    "TLS error",
    "busy, try later",
    "not permitted",
    "canceled",
};

const char *rp_strerror(int code)
{
    if (code > 0 || code <= RP_ERR_MIN_)
        return "unknown error";
    return rp_errstr[-code];
}

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *log_fp;
static rp_log_level log_level = RP_LOG_INFO;
static int log_level_init;

void rp_log_set_level(rp_log_level lvl)
{
    log_level = lvl;
    log_level_init = 1;
}

rp_log_level rp_log_get_level(void)
{
    if (!log_level_init) {
        const char *e = getenv("RP_LOG_LEVEL");
        if (e && strcasecmp(e, "debug") == 0)
            log_level = RP_LOG_DEBUG;
        else if (e && strcasecmp(e, "warn") == 0)
            log_level = RP_LOG_WARN;
        else if (e && strcasecmp(e, "error") == 0)
            log_level = RP_LOG_ERROR;
        log_level_init = 1;
    }
    return log_level;
}

int rp_log_open(const char *path)
{
    FILE *fp = fopen(path, "a");
    if (!fp)
        return RP_EIO;
    setvbuf(fp, NULL, _IOLBF, 0);
    pthread_mutex_lock(&log_lock);
    if (log_fp)
        fclose(log_fp);
    log_fp = fp;
    pthread_mutex_unlock(&log_lock);
    return 0;
}

void rp_logv(rp_log_level lvl, const char *module, const char *fmt, va_list ap)
{
    static const char *const names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
    if (lvl < rp_log_get_level())
        return;
    char ts[40], msg[2048];
    rp_time_iso8601(rp_now_s(), ts, sizeof ts);
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* One locked write per line so lines from several threads never interleave. */
    pthread_mutex_lock(&log_lock);
    FILE *fp = log_fp ? log_fp : stderr;
    fprintf(fp, "%s %s %s: %s\n", ts, names[lvl], module ? module : "-", msg);
    fflush(fp);
    pthread_mutex_unlock(&log_lock);
}

void rp_log(rp_log_level lvl, const char *module, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    rp_logv(lvl, module, fmt, ap);
    va_end(ap);
}

const char *rp_log_kv_quote(const char *in, char *out, size_t outsz)
{
    if (!out || outsz == 0)
        return "";
    if (!in)
        in = "";
    int need = (*in == '\0');
    for (const char *p = in; *p && !need; p++)
        if (*p == ' ' || *p == '"' || *p == '=' || *p == '\\' || (unsigned char)*p < 0x20)
            need = 1;
    size_t o = 0;
    if (need && o + 1 < outsz)
        out[o++] = '"';
    for (const char *p = in; *p && o + 2 < outsz; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f) {
            out[o++] = '?';
        } else if (need && (c == '"' || c == '\\')) {
            if (o + 3 >= outsz)
                break;
            out[o++] = '\\';
            out[o++] = (char)c;
        } else {
            out[o++] = (char)c;
        }
    }
    if (need && o + 1 < outsz)
        out[o++] = '"';
    out[o] = '\0';
    return out;
}

double rp_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

double rp_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

char *rp_time_iso8601(double t, char *buf, size_t bufsz)
{
    time_t secs = (time_t)t;
    int ms = (int)((t - (double)secs) * 1000.0);
    if (ms < 0)
        ms = 0;
    if (ms > 999)
        ms = 999;
    struct tm tmv;
    gmtime_r(&secs, &tmv);
    snprintf(buf, bufsz, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tmv.tm_year + 1900,
             tmv.tm_mon + 1, tmv.tm_mday, tmv.tm_hour, tmv.tm_min, tmv.tm_sec, ms);
    return buf;
}

int rp_strlcpy(char *dst, const char *src, size_t dstsz)
{
    if (!dst || dstsz == 0)
        return RP_EINVAL;
    if (!src)
        src = "";
    size_t n = strlen(src);
    if (n >= dstsz) {
        memcpy(dst, src, dstsz - 1);
        dst[dstsz - 1] = '\0';
        return RP_EINVAL;
    }
    memcpy(dst, src, n + 1);
    return 0;
}

int rp_mkdir_p(const char *path, unsigned mode)
{
    char tmp[4096];
    if (rp_strlcpy(tmp, path, sizeof tmp) != 0)
        return RP_EINVAL;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, mode) != 0 && errno != EEXIST)
            return RP_EIO;
        *p = '/';
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST)
        return RP_EIO;
    struct stat st;
    if (stat(tmp, &st) != 0 || !S_ISDIR(st.st_mode))
        return RP_EIO;
    return 0;
}

int rp_read_file(const char *path, char **out, size_t *len)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return errno == ENOENT ? RP_ENOENT : RP_EIO;
    int rc = RP_EIO;
    char *buf = NULL;
    if (fseek(fp, 0, SEEK_END) != 0)
        goto done;
    long sz = ftell(fp);
    if (sz < 0 || fseek(fp, 0, SEEK_SET) != 0)
        goto done;
    buf = malloc((size_t)sz + 1);
    if (!buf) {
        rc = RP_ENOMEM;
        goto done;
    }
    if (fread(buf, 1, (size_t)sz, fp) != (size_t)sz)
        goto done;
    buf[sz] = '\0';
    *out = buf;
    buf = NULL;
    if (len)
        *len = (size_t)sz;
    rc = 0;
done:
    free(buf);
    fclose(fp);
    return rc;
}

int rp_sha256_hex(const void *data, size_t len, char hex[65])
{
    unsigned char md[32];
    unsigned mdlen = 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        return RP_EINTERNAL;
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

int rp_sha256_file(const char *path, char hex[65])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? RP_ENOENT : RP_EIO;
    int rc = RP_ENOMEM;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char *buf = malloc(1 << 20);
    if (!ctx || !buf || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        goto out;
    for (;;) {
        ssize_t r = read(fd, buf, 1 << 20);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = RP_EIO;
            goto out;
        }
        if (r == 0)
            break;
        if (EVP_DigestUpdate(ctx, buf, (size_t)r) != 1) {
            rc = RP_EINTERNAL;
            goto out;
        }
    }
    unsigned char md[32];
    unsigned mdlen = 0;
    if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32) {
        rc = RP_EINTERNAL;
        goto out;
    }
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    rc = 0;
out:
    EVP_MD_CTX_free(ctx);
    free(buf);
    close(fd);
    return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int rp_rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : RP_EIO;
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : RP_EIO;
}

int rp_fsync_path(const char *path, int is_dir)
{
    int fd = open(path, (is_dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return RP_EIO;
    int rc = fsync(fd) == 0 ? 0 : RP_EIO;
    close(fd);
    return rc;
}
