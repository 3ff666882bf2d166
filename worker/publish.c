/* worker/publish — one version's output folder appears whole or not at all, and is recorded;
 * and the worker's exit codes. See worker/worker.h. */
#include "worker/worker.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/common.h"

rp_worker_exit rp_worker_exit_for(int rc)
{
    switch (rc) {
    case 0:
        return RP_JOB_EXIT_OK;
    case RP_ENOMEM:
        return RP_JOB_EXIT_OOM;
    case RP_EPARSE:
    case RP_EUID:
    case RP_EGEOM:
    case RP_EDECODE:
    case RP_EUNSUPPORTED:
        return RP_JOB_EXIT_BADINPUT;
    case RP_ECONF:
        return RP_JOB_EXIT_CONFIG;
    default:
        return RP_JOB_EXIT_FAIL;
    }
}

/* Remove temporary folders that earlier, interrupted attempts of this version left. */
static void clean_stale_tmp(const char *parent, int version)
{
    DIR *d = opendir(parent);
    if (!d)
        return;
    char prefix[32];
    snprintf(prefix, sizeof prefix, ".v%d.tmp.", version);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        char p[RP_PATH_MAX * 2];
        if (snprintf(p, sizeof p, "%s/%s", parent, e->d_name) < (int)sizeof p)
            rp_rm_rf(p);
    }
    closedir(d);
}

int rp_publish_begin(rp_publish *p, const char *parent, int version)
{
    memset(p, 0, sizeof *p);
    p->lock_fd = -1;
    p->version = version;
    if (rp_strlcpy(p->parent, parent, sizeof p->parent) != 0 ||
        snprintf(p->dir, sizeof p->dir, "%s/v%d", parent, version) >= (int)sizeof p->dir)
        return RP_EINVAL;
    int rc = rp_mkdir_p(parent, 0750);
    if (rc != 0)
        return rc;
    /* One worker per version at a time (an operator may run `radprep process --job N` by
     * hand while the daemon does): the lock dies with the process, never goes stale. */
    char lock_path[sizeof p->parent + 32];
    snprintf(lock_path, sizeof lock_path, "%s/.v%d.lock", parent, version);
    p->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (p->lock_fd < 0 || flock(p->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        RP_ERROR("job", "version is being processed by another worker lock=%s", lock_path);
        if (p->lock_fd >= 0)
            close(p->lock_fd);
        p->lock_fd = -1; /* -1: the lock is not ours */
        return RP_EBUSY;
    }
    clean_stale_tmp(parent, version);
    snprintf(p->tmp_dir, sizeof p->tmp_dir, "%s/.v%d.tmp.%d", parent, version, (int)getpid());
    if (mkdir(p->tmp_dir, 0750) != 0) {
        RP_ERROR("job", "cannot create folder path=%s errno=%d", p->tmp_dir, errno);
        p->tmp_dir[0] = '\0';
        return RP_EIO;
    }
    return 0;
}

/* fsync every file below dir (two levels) and dir itself. */
static int sync_tree(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return RP_EIO;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[RP_PATH_MAX * 2];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode) && depth < 2)
            rc = sync_tree(p, depth + 1);
        else if (S_ISREG(st.st_mode))
            rc = rp_fsync_path(p, 0);
    }
    closedir(d);
    int drc = rp_fsync_path(dir, 1);
    return rc ? rc : drc;
}

static const char *output_kind(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (strstr(name, ".nii"))
        return "nifti";
    if (dot && strcmp(dot, ".json") == 0)
        return "json";
    if (dot && strcmp(dot, ".png") == 0)
        return "png";
    if (dot && strcmp(dot, ".dcm") == 0)
        return strcmp(name, "seg.dcm") == 0 ? "seg" : "dicom";
    return "file";
}

void rp_output_list_free(rp_output_list *l)
{
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* List every regular file below dir (the version folder and its subfolders). */
static int list_in(rp_output_list *l, size_t *cap, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return RP_EIO;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[RP_PATH_MAX * 2];
        if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof l->v[0].path)
            continue;
        struct stat st;
        if (stat(p, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (depth < 2)
                rc = list_in(l, cap, p, depth + 1);
            continue;
        }
        if (!S_ISREG(st.st_mode))
            continue;
        if (l->n == *cap) {
            size_t nc = *cap ? *cap * 2 : 32;
            rp_output_file *nv = realloc(l->v, nc * sizeof *nv);
            if (!nv) {
                rc = RP_ENOMEM;
                break;
            }
            l->v = nv;
            *cap = nc;
        }
        rp_output_file *f = &l->v[l->n];
        memset(f, 0, sizeof *f);
        rp_strlcpy(f->path, p, sizeof f->path);
        rp_strlcpy(f->kind, output_kind(e->d_name), sizeof f->kind);
        f->size = (long long)st.st_size;
        if ((rc = rp_sha256_file(p, f->sha256)) != 0)
            break;
        l->n++;
    }
    closedir(d);
    return rc;
}

int rp_publish_commit(rp_publish *p, rp_output_list *files)
{
    memset(files, 0, sizeof *files);
    if (!p->tmp_dir[0])
        return RP_EINVAL;
    int rc;
    /* A folder for this version can only come from an attempt that finished but was not
     * recorded (the node died): the work is a pure function of its inputs, so replace it. */
    if ((rc = sync_tree(p->tmp_dir, 0)) != 0 || (rc = rp_rm_rf(p->dir)) != 0)
        return rc;
    if (rename(p->tmp_dir, p->dir) != 0) {
        RP_ERROR("job", "rename failed from=%s to=%s errno=%d", p->tmp_dir, p->dir, errno);
        return RP_EIO;
    }
    p->tmp_dir[0] = '\0';
    rp_fsync_path(p->parent, 1);
    size_t cap = 0;
    if ((rc = list_in(files, &cap, p->dir, 0)) != 0) {
        rp_output_list_free(files);
        return rc;
    }
    RP_INFO("job", "outputs published n=%zu dir=%s", files->n, p->dir);
    return 0;
}

void rp_publish_end(rp_publish *p)
{
    if (p->tmp_dir[0])
        rp_rm_rf(p->tmp_dir);
    p->tmp_dir[0] = '\0';
    if (p->lock_fd >= 0)
        close(p->lock_fd);
    p->lock_fd = -1;
}
