/* cli/curate_util — file helpers of `radprep curate`: checksums, durable writes, copies,
 * NIfTI geometry, sorted folder listings, the salt. See curate_internal.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <cjson/cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "cli/curate_internal.h"
#include "common/common.h"

int rp_curate_write_text(const char *path, const char *text, unsigned mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return RP_EIO;
    size_t n = strlen(text), off = 0;
    int rc = 0;
    while (rc == 0 && off < n) {
        ssize_t w = write(fd, text + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            rc = RP_EIO;
        else
            off += (size_t)w;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = RP_EIO;
    if (close(fd) != 0)
        rc = RP_EIO;
    return rc;
}

int rp_curate_copy_file(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return RP_EIO;
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return RP_EIO;
    }
    static char buf[1 << 20];
    int rc = 0;
    for (;;) {
        ssize_t r = read(in, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rc = RP_EIO;
        if (r <= 0)
            break;
        for (ssize_t off = 0; off < r;) {
            ssize_t w = write(out, buf + off, (size_t)(r - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                rc = RP_EIO;
                break;
            }
            off += w;
        }
        if (rc)
            break;
    }
    if (rc == 0 && fsync(out) != 0)
        rc = RP_EIO;
    if (close(out) != 0)
        rc = RP_EIO;
    close(in);
    return rc;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* "x.nii.gz" -> ".nii.gz", "x.nii" -> ".nii", else NULL */
const char *rp_curate_nifti_ext(const char *name)
{
    if (ends_with(name, ".nii.gz"))
        return ".nii.gz";
    if (ends_with(name, ".nii"))
        return ".nii";
    return NULL;
}

/* dim[1..4] and pixdim[1..3] of a NIfTI-1 file, gzip or not (zlib reads both). */
int rp_curate_nifti_geometry(const char *path, int dim[4], double spacing[3])
{
    gzFile g = gzopen(path, "rb");
    if (!g)
        return RP_EIO;
    unsigned char h[348];
    int got = gzread(g, h, sizeof h);
    gzclose(g);
    if (got != (int)sizeof h)
        return RP_EPARSE;
    int32_t sz;
    memcpy(&sz, h, 4);
    int swap = sz != 348;
    if (swap && __builtin_bswap32((uint32_t)sz) != 348)
        return RP_EPARSE;
    for (int i = 0; i < 4; i++) {
        uint16_t v;
        memcpy(&v, h + 40 + 2 * (i + 1), 2);
        if (swap)
            v = __builtin_bswap16(v);
        dim[i] = (int16_t)v;
    }
    int16_t ndim;
    memcpy(&ndim, h + 40, 2);
    if (swap)
        ndim = (int16_t)__builtin_bswap16((uint16_t)ndim);
    if (ndim < 4)
        dim[3] = 1;
    if (ndim < 3)
        dim[2] = 1;
    for (int i = 0; i < 3; i++) {
        uint32_t u;
        memcpy(&u, h + 76 + 4 * (i + 1), 4);
        if (swap)
            u = __builtin_bswap32(u);
        float f;
        memcpy(&f, &u, 4);
        spacing[i] = f;
    }
    return 0;
}

cJSON *rp_curate_read_json(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    if (rp_read_file(path, &text, &len) != 0)
        return NULL;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    return j;
}

const char *rp_curate_jstr(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : "";
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the entries of dir (hidden ones left out). *names malloc'd. */
int rp_curate_list_dir(const char *dir, char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return RP_EIO;
    size_t cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(*names, cap * sizeof *nn);
            if (!nn) {
                rc = RP_ENOMEM;
                break;
            }
            *names = nn;
        }
        if (!((*names)[(*n)++] = strdup(e->d_name))) {
            (*n)--;
            rc = RP_ENOMEM;
            break;
        }
    }
    closedir(d);
    if (*n)
        qsort(*names, *n, sizeof **names, cmp_str);
    return rc;
}

void rp_curate_free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* cJSON_Print text with a final newline, written durably; the tree is deleted. */
int rp_curate_write_json(const char *path, cJSON *j)
{
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    char *t2 = text ? realloc(text, strlen(text) + 2) : NULL;
    if (!t2) {
        free(text);
        return RP_ENOMEM;
    }
    strcat(t2, "\n");
    int rc = rp_curate_write_text(path, t2, 0644);
    free(t2);
    return rc;
}

int rp_curate_load_salt(const char *path, char salt[65])
{
    char *text = NULL;
    size_t len = 0;
    if (rp_read_file(path, &text, &len) != 0)
        return RP_ENOENT;
    size_t k = 0;
    for (size_t i = 0; i < len && k < 64; i++)
        if (isxdigit((unsigned char)text[i]))
            salt[k++] = (char)tolower((unsigned char)text[i]);
        else if (!isspace((unsigned char)text[i]))
            break;
    salt[k] = '\0';
    free(text);
    return k >= 16 ? 0 : RP_EPARSE;
}

int rp_curate_new_salt(char salt[65])
{
    unsigned char r[32];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return RP_EIO;
    for (int i = 0; i < 32; i++)
        sprintf(salt + 2 * i, "%02x", r[i]);
    return 0;
}

int rp_curate_dir_is_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            empty = 0;
    closedir(d);
    return empty;
}

void rp_curate_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}
