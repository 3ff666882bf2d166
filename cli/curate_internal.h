/*
 * cli/curate_internal.h — file helpers of `radprep curate` (cli/curate_util.c), used only by
 * cli/cmd_curate.c. Functions return 0 or a negative RP_E* code unless said otherwise.
 */
#ifndef RP_CLI_CURATE_INTERNAL_H
#define RP_CLI_CURATE_INTERNAL_H

#include <cjson/cJSON.h>
#include <stddef.h>

/* Write text to path (created with mode, truncated) and fsync it. */
int rp_curate_write_text(const char *path, const char *text, unsigned mode);
/* cJSON_Print text with a final newline, written durably; the tree is deleted. */
int rp_curate_write_json(const char *path, cJSON *j);
/* Copy src to dst (which must not exist) and fsync it. */
int rp_curate_copy_file(const char *src, const char *dst);
/* ".nii.gz" or ".nii" when name ends so, else NULL (borrowed: static text). */
const char *rp_curate_nifti_ext(const char *name);
/* dim[1..4] and pixdim[1..3] of a NIfTI-1 file, gzip or not. */
int rp_curate_nifti_geometry(const char *path, int dim[4], double spacing[3]);
/* Parse a JSON file; NULL when unreadable. Owned: cJSON_Delete(). */
cJSON *rp_curate_read_json(const char *path);
/* o[key] when it is a string, else "" (borrowed). */
const char *rp_curate_jstr(const cJSON *o, const char *key);
/* Sorted names of the entries of dir, hidden ones left out. *names owned: free_names(). */
int rp_curate_list_dir(const char *dir, char ***names, size_t *n);
void rp_curate_free_names(char **names, size_t n);
/* Salt: 16-64 hex digits from a file; or 64 fresh random ones. */
int rp_curate_load_salt(const char *path, char salt[65]);
int rp_curate_new_salt(char salt[65]);
/* 1 when dir is an empty folder, else 0. */
int rp_curate_dir_is_empty(const char *dir);
/* fsync a folder (best effort: a rename's durability). */
void rp_curate_fsync_dir(const char *dir);

#endif
