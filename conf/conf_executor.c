/*
 * conf_executor — the [executor] section: which executor runs job workers (local fork/exec,
 * or Slurm through its CLI tools) and what the cluster is asked for each job.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "conf/conf_internal.h"

void rp_conf_executor_defaults(rp_conf_executor *e)
{
    memset(e, 0, sizeof *e);
    e->kind = RP_EXECUTOR_LOCAL;
    e->poll_s = 1.0;
}

int rp_conf_executor_kind_parse(const char *v, rp_executor_kind *out)
{
    if (strcasecmp(v, "local") == 0)
        *out = RP_EXECUTOR_LOCAL;
    else if (strcasecmp(v, "slurm") == 0)
        *out = RP_EXECUTOR_SLURM;
    else
        return RP_EINVAL;
    return 0;
}

const char *rp_conf_executor_kind_name(rp_executor_kind k)
{
    return k == RP_EXECUTOR_SLURM ? "slurm" : "local";
}

static int int_in(const char *v, long long lo, long long hi, long long *out)
{
    if (!*v)
        return -1;
    errno = 0;
    char *end;
    long long n = strtoll(v, &end, 10);
    if (errno || *end || n < lo || n > hi)
        return -1;
    *out = n;
    return 0;
}

/* Slurm names (partition, account): letters, digits, _ - . only, so nothing in them can be
 * read as another option. */
static int slurm_name_ok(const char *v)
{
    if (v[0] == '-')
        return 0;
    for (const char *p = v; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            return 0;
    return 1;
}

int rp_conf_executor_key(rp_conf_executor *e, const char *key, const char *value, char *why,
                         size_t whylen)
{
    long long n;
    if (strcmp(key, "kind") == 0) {
        if (rp_conf_executor_kind_parse(value, &e->kind) != 0)
            return snprintf(why, whylen, "kind: '%s' is not local or slurm", value), -1;
    } else if (strcmp(key, "partition") == 0 || strcmp(key, "account") == 0) {
        char *dst = key[0] == 'p' ? e->partition : e->account;
        if (!slurm_name_ok(value) || strlen(value) >= sizeof e->partition)
            return snprintf(why, whylen, "%s: invalid name '%s' (letters, digits, _ - . only)", key,
                            value),
                   -1;
        strcpy(dst, value);
    } else if (strcmp(key, "sbatch_args") == 0) {
        if (rp_strlcpy(e->sbatch_args, value, sizeof e->sbatch_args) != 0)
            return snprintf(why, whylen, "sbatch_args: too long (at most %zu bytes)",
                            sizeof e->sbatch_args - 1),
                   -1;
        for (const char *p = value; *p; p++)
            if (*p == '"' || *p == '\'' || *p == '\\')
                return snprintf(why, whylen,
                                "sbatch_args: quotes and backslashes are not interpreted "
                                "(options are split on blanks)"),
                       -1;
    } else if (strcmp(key, "max_in_flight") == 0) {
        if (int_in(value, 0, 100000, &n))
            return snprintf(why, whylen, "max_in_flight: expected 0..100000, got '%s'", value), -1;
        e->max_in_flight = (int)n;
    } else if (strcmp(key, "cpus_per_task") == 0) {
        if (int_in(value, 0, 4096, &n))
            return snprintf(why, whylen, "cpus_per_task: expected 0..4096, got '%s'", value), -1;
        e->cpus_per_task = (int)n;
    } else if (strcmp(key, "mem_mb") == 0) {
        if (int_in(value, 0, 64LL * 1024 * 1024, &n))
            return snprintf(why, whylen, "mem_mb: expected 0..67108864, got '%s'", value), -1;
        e->mem_mb = n;
    } else if (strcmp(key, "time_limit_s") == 0) {
        if (int_in(value, 0, 365LL * 86400, &n))
            return snprintf(why, whylen, "time_limit_s: expected 0..31536000, got '%s'", value), -1;
        e->time_limit_s = (int)n;
    } else if (strcmp(key, "poll_s") == 0) {
        char *end;
        errno = 0;
        double d = strtod(value, &end);
        if (!*value || *end || errno || d < 0.05 || d > 600)
            return snprintf(why, whylen, "poll_s: expected 0.05..600, got '%s'", value), -1;
        e->poll_s = d;
    } else if (strcmp(key, "bin_dir") == 0) {
        if (value[0] != '/' || rp_strlcpy(e->bin_dir, value, sizeof e->bin_dir) != 0)
            return snprintf(why, whylen, "bin_dir: expected an absolute path"), -1;
    } else {
        return snprintf(why, whylen,
                        "unknown key '%s' in [executor] (kind, partition, account, sbatch_args, "
                        "max_in_flight, cpus_per_task, mem_mb, time_limit_s, poll_s, bin_dir)",
                        key),
               -1;
    }
    return 0;
}
