/*
 * conf internals shared by conf.c (defaults, lookups, validation) and conf_parse.c (INI).
 * Used only inside conf/ and its tests.
 */
#ifndef RP_CONF_INTERNAL_H
#define RP_CONF_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>

#include "conf/conf.h"

#define RP_CONF_DEFAULT_DATA_DIR "/var/lib/radprep"

/* Value checkers shared by the parser and rp_conf_validate(). 0 = valid. */
int rp_conf_ae_valid(const char *ae, char *why, size_t whylen);
int rp_conf_uid_root_valid(const char *uid, char *why, size_t whylen);
int rp_conf_name_valid(const char *name);
/* Known output kinds for a rule's `outputs` ("nifti json qc png dicom seg manifest npy"). */
int rp_conf_output_known(const char *word);

/* snprintf into err, never overflowing; returns RP_ECONF for one-line error paths. */
int rp_conf_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* [fusion NAME] (conf_fusion.c): init a section, apply one key, check it when it closes.
 * 0, or -1 with a reason (no FILE:LINE) in why. */
void rp_conf_fusion_init(rp_conf_fusion *f, const char *name, int line);
int rp_conf_fusion_key(rp_conf_fusion *f, const char *key, const char *value, int line, char *why,
                       size_t whylen);
int rp_conf_fusion_close(rp_conf_fusion *f, char *why, size_t whylen);

/* [pull NAME] (conf_pull.c): init, one key, checks when it closes, and the references to
 * peers and rules once the whole file is read (*line: the section that failed). 0, or -1
 * with a reason in why. */
void rp_conf_pull_init(rp_conf_pull *p, const char *name, int line);
int rp_conf_pull_key(rp_conf_pull *p, const char *key, const char *value, char *why,
                     size_t whylen);
int rp_conf_pull_close(const rp_conf_pull *p, char *why, size_t whylen);
int rp_conf_pull_check_refs(const rp_conf *c, char *why, size_t whylen, int *line);
/* [http] (conf_http.c): defaults, and the cross-field checks rp_conf_validate() runs. */
void rp_conf_http_defaults(rp_conf *c);
int rp_conf_http_validate(const rp_conf *c, char *err, size_t errlen);

/* [executor] (conf_executor.c): defaults, one key (0 or -1 with a reason in why). */
void rp_conf_executor_defaults(rp_conf_executor *e);
int rp_conf_executor_key(rp_conf_executor *e, const char *key, const char *value, char *why,
                         size_t whylen);

#endif
