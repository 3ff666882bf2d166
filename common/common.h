/*
 * common — what every radprep module shares: error codes, logging, time.
 *
 * Contract:
 *  - Every radprep function that can fail returns 0 on success or a negative RP_E* code;
 *    rp_strerror() turns a code into a short, static, human-readable string.
 *  - rp_log() writes one line per call to stderr (or the file set by rp_log_open), with an
 *    ISO-8601 UTC timestamp, the level and the module. Lines from many threads never
 *    interleave. Machine-parseable facts go in key=value form after the message, e.g.
 *      2026-11-21T15:30:18.123Z INFO  scp: association accepted calling_ae=CT1 peer=127.0.0.1:5012
 *    Values with spaces or quotes are written quoted by rp_log_kv_quote().
 *  - Nothing here allocates memory that the caller has to free unless the name says _dup/_new.
 */
#ifndef RP_COMMON_H
#define RP_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    RP_OK = 0,
    RP_ENOMEM = -1,       /* out of memory */
    RP_EINVAL = -2,       /* invalid argument or value */
    RP_EIO = -3,          /* I/O error (errno is logged where it happened) */
    RP_ENOENT = -4,       /* not found */
    RP_EEXIST = -5,       /* already exists */
    RP_ENOSPC = -6,       /* free space below the watermark, or disk full */
    RP_EPARSE = -7,       /* malformed DICOM or other input that cannot be parsed */
    RP_EUID = -8,         /* missing or invalid DICOM UID */
    RP_EDB = -9,          /* database error */
    RP_ECONF = -10,       /* configuration error */
    RP_EUNSUPPORTED = -11,/* valid but unsupported (transfer syntax, SOP class, geometry) */
    RP_ENET = -12,        /* network error */
    RP_ETIMEOUT = -13,    /* a peer or a job ran out of time */
    RP_EDUP = -14,        /* duplicate rejected by policy */
    RP_EDECODE = -15,     /* pixel data could not be decoded */
    RP_EGEOM = -16,       /* geometry cannot be assembled into a volume */
    RP_EREFUSED = -17,    /* refused by a peer (association or status) */
    RP_EINTERNAL = -18,   /* a bug: an invariant did not hold */
    RP_ETLS = -19,        /* TLS setup or handshake failure */
    RP_EBUSY = -20,       /* resource busy / limit reached, try later */
    RP_EPERM = -21,       /* not permitted (access control, file permissions) */
    RP_ECANCELED = -22,   /* stopped on request (shutdown) */
    RP_ERR_MIN_ = -23
};

/* Short static description of an RP_E* code ("unknown error" for anything else). */
const char *rp_strerror(int code);

typedef enum { RP_LOG_DEBUG = 0, RP_LOG_INFO, RP_LOG_WARN, RP_LOG_ERROR } rp_log_level;

/* Minimum level printed (default INFO; RP_LOG_LEVEL=debug in the environment lowers it). */
void rp_log_set_level(rp_log_level lvl);
rp_log_level rp_log_get_level(void);
/* Send log lines to a file instead of stderr (append). Returns 0 or RP_EIO. */
int rp_log_open(const char *path);

/* One log line: `module` is a short fixed word ("scp", "store", "db", ...). */
void rp_log(rp_log_level lvl, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void rp_logv(rp_log_level lvl, const char *module, const char *fmt, va_list ap);

#define RP_DEBUG(mod, ...) rp_log(RP_LOG_DEBUG, mod, __VA_ARGS__)
#define RP_INFO(mod, ...) rp_log(RP_LOG_INFO, mod, __VA_ARGS__)
#define RP_WARN(mod, ...) rp_log(RP_LOG_WARN, mod, __VA_ARGS__)
#define RP_ERROR(mod, ...) rp_log(RP_LOG_ERROR, mod, __VA_ARGS__)

/* Quote a value for key=value logs: copies `in` into `out` (size `outsz`), adding double
 * quotes and escaping `"` and `\` when the value is empty or has spaces, quotes, `=` or
 * control characters (those become '?'). Returns `out`. */
const char *rp_log_kv_quote(const char *in, char *out, size_t outsz);

/* Clocks. */
double rp_now_s(void);        /* wall clock, seconds since the epoch (UTC) */
double rp_mono_s(void);       /* monotonic seconds, for durations */
/* Format a wall-clock time as "2026-11-21T15:30:18.123Z" into buf (>= 32 bytes). */
char *rp_time_iso8601(double t, char *buf, size_t bufsz);

/* Bounded string copy that always terminates; returns RP_EINVAL if truncated. */
int rp_strlcpy(char *dst, const char *src, size_t dstsz);

/* mkdir -p with mode; 0 if it exists already as a directory. */
int rp_mkdir_p(const char *path, unsigned mode);

/* Read a whole file into a newly malloc'd buffer (NUL-terminated; caller frees). */
int rp_read_file(const char *path, char **out, size_t *len);

/* SHA-256 as 64 lower-case hex digits + NUL: of a buffer, and of a whole file. */
int rp_sha256_hex(const void *data, size_t len, char hex[65]);
int rp_sha256_file(const char *path, char hex[65]);

/* rm -rf: remove `path` and everything below it (links are not followed); 0 when it does
 * not exist. */
int rp_rm_rf(const char *path);

/* fsync a file, or a directory (is_dir) so that the entries in it are durable. */
int rp_fsync_path(const char *path, int is_dir);

#ifdef __cplusplus
}
#endif
#endif
