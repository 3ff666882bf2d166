/*
 * conf — radprep's configuration: embedded defaults, INI parsing, validation.
 *
 * Contract:
 *  - rp_conf_defaults() fills a complete, valid configuration: the node runs with no file.
 *  - rp_conf_load() parses an INI file (inih) on top of the defaults. Every unknown section,
 *    unknown key or bad value is an error reported as "FILE:LINE: reason" into `err`; the
 *    first error stops loading and the function returns RP_ECONF. Nothing is half-applied
 *    from the caller's point of view: on error the struct must not be used.
 *  - Every [rule NAME] keeps the line number of its `steps` key so that the pipeline's recipe
 *    parser can report "FILE:LINE: unknown step 'x'" (see rp_conf_validate_rules()).
 *  - The struct is plain data, owned by the caller; rp_conf_free() releases the arrays.
 *
 * Sections and keys (the README lists them all with their defaults):
 *   [node]   ae_title, port, bind, data_dir, max_associations, max_associations_per_peer,
 *            acse_timeout_s, dimse_timeout_s, network_timeout_s, max_pdu, min_free_mb,
 *            duplicate_policy (keep_first|replace|reject), uid_policy (lenient|strict),
 *            max_instance_mb, log_file, log_level,
 *            uid_root, workers, job_timeout_s, job_memory_mb, job_max_attempts, outputs_dir,
 *            index_batch, index_flush_ms, spool_log_mb
 *   [tls]    port, cert, key, key_passphrase_file, ca_file, ca_dir, profile (bcp195|bcp195-nd|
 *            bcp195-ex), require_client_cert, expiry_warn_days
 *   [peer NAME] ae_title, host, port, store (bool), echo (bool), destination (bool), tls_only,
 *            cert_fingerprint, cert_subject, max_associations, find, move, get, results
 *            (result kinds it receives: derived seg overlay sr; default "derived seg"),
 *            send_associations (parallel associations of the outbox to it, 1..16, default 1)
 *   [completion MODALITY|default] quiet_s, use_expected_count (bool)
 *   [rule NAME] modality, body_part, series_description (glob), slice_thickness_min/max,
 *            steps, outputs (nifti json qc png dicom seg overlay sr manifest npy), send_to
 *            (peer names, space separated), priority, overlay_caption, philips_scaling
 *   [pull NAME] peer, study_date, patient_id, accession, modality, body_part,
 *            study_description, series_description, rule, dataset, window, max_concurrent,
 *            max_series, pause_ms, retries, retry_backoff_s, method (move|get)
 *   [fusion NAME] modality, sequences, SEQ.description, SEQ.tr_ms/te_ms/ti_ms (LO..HI),
 *            SEQ.ti_absent_ok, reference, normalize, interpolation, layout
 *   [http]   port (0: off), bind, tls, token_file, client_cert, metrics_open,
 *            max_connections, threads (conf_http.c; docs/console.md)
 */
#ifndef RP_CONF_H
#define RP_CONF_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RP_AE_MAX 16 /* DICOM AE title: 16 characters at most */
#define RP_PATH_MAX 1024

typedef enum { RP_DUP_KEEP_FIRST = 0, RP_DUP_REPLACE, RP_DUP_REJECT } rp_dup_policy;
/* UIDs that are safe as path components (digits and dots, <= 64) but break PS3.5 (a leading
 * zero in a component): lenient stores them with a warning, strict refuses them. */
typedef enum { RP_UID_LENIENT = 0, RP_UID_STRICT } rp_uid_policy;

typedef struct rp_conf_peer {
    char name[64]; /* the NAME of [peer NAME] */
    char ae_title[RP_AE_MAX + 1];
    char host[256];             /* empty: any host */
    int port;                   /* 0: not a destination we can call */
    int may_store;              /* default 1 */
    int may_echo;               /* default 1 */
    int is_destination;         /* default 0 */
    int tls_only;               /* default 0 */
    char cert_fingerprint[128]; /* optional SHA-256 hex of the peer's certificate */
    char cert_subject[256];     /* optional subject the peer's certificate must have */
    int max_associations;       /* 0: the node's max_associations_per_peer */
    int line;                   /* line of the section header, for messages */
    int may_find, may_move, may_get; /* what the node may ask of it (query/retrieve), default 0 */
    char results[64]; /* result kinds it receives (rp_conf_result_kind), default "derived seg" */
    int send_associations; /* parallel associations the outbox opens to it, 1..16, default 1 */
} rp_conf_peer;

typedef struct rp_conf_completion {
    char modality[16]; /* "CT", "MR", ... or "default" */
    int quiet_s;
    int use_expected_count;
} rp_conf_completion;

typedef struct rp_conf_rule {
    char name[64];
    char modality[64];            /* space-separated list, empty = any */
    char body_part[128];          /* space-separated list, empty = any */
    char series_description[256]; /* glob (fnmatch, case-insensitive), empty = any */
    double slice_thickness_min;   /* <0: no bound */
    double slice_thickness_max;
    char steps[2048];  /* the recipe text, parsed by pipeline */
    int steps_line;    /* line of the steps key (0 for built-in rules) */
    char outputs[256]; /* e.g. "nifti json qc png dicom seg" */
    char send_to[512]; /* peer names, space separated */
    char overlay_caption[64]; /* "overlay" caption; empty: "NOT FOR DIAGNOSIS"; "none": none */
    int philips_float;        /* philips_scaling = display (0, default) | float (1) */
    int priority;      /* higher wins when several rules match; default 0 */
    int builtin;       /* 1 for rules from the embedded defaults */
    char dtype[32];    /* how the image is stored: "" or auto, float32, int16, uint8, hu; auto,
                          int16 and hu may carry a HU step: "int16(0.5)" (pipeline's
                          rp_dtype_parse reads it) */
    /* What one job of this rule may use (0: not given, the node's defaults apply): CPUs
     * (sbatch --cpus-per-task; a local job's thread count), memory (sbatch --mem; a local
     * job's RLIMIT_AS, as job_memory_mb) and wall-clock time (sbatch --time; a local job's
     * timeout, as job_timeout_s). */
    int cpus_per_task;
    int mem_mb;
    int time_limit_s;
} rp_conf_rule;

/* [fusion NAME]: study-level multi-sequence fusion (docs/configuration.md, docs/fusion.md). */
#define RP_FUSION_MAX_SEQ 8
#define RP_FUSION_MAX 16
typedef struct rp_conf_fusion_seq {
    char name[16];        /* "T1", "T2", "FLAIR", ... (channel name) */
    char description[128]; /* fnmatch glob, '|' separates alternatives; "" = any */
    double tr_lo, tr_hi, te_lo, te_hi, ti_lo, ti_hi; /* ms; lo > hi: no bound */
    int ti_absent_ok;     /* a series without TI passes a TI range */
    int custom;           /* 1: criteria from the file; 0: the built-in matcher of `name` */
    int register_mode;    /* RP_FUSION_REG_*; -1: as the fusion's `register` */
} rp_conf_fusion_seq;

typedef struct rp_conf_fusion {
    char name[24];
    char modality[64]; /* space-separated list (default "MR") */
    rp_conf_fusion_seq seq[RP_FUSION_MAX_SEQ]; /* channels, in order */
    int n_seq;
    int reference;        /* index into seq of the grid every channel is resampled onto */
    char normalize[1024]; /* recipe run on each member before resampling; "" = none */
    int normalize_line;
    int order;            /* 0 nearest, 1 trilinear (default) */
    int layout;           /* RP_FUSION_LAYOUT_* bits */
    int register_mode;    /* RP_FUSION_REG_*: members registered onto the reference (none) */
    int line;             /* line of the section header */
} rp_conf_fusion;
enum { RP_FUSION_LAYOUT_NIFTI4D = 1, RP_FUSION_LAYOUT_NNUNET = 2 };
enum { RP_FUSION_REG_NONE = 0, RP_FUSION_REG_RIGID = 1, RP_FUSION_REG_RIGID_SCALE = 2 };

/* [pull NAME]: a scheduled query/retrieve from a PACS (conf/conf_pull.c, docs/retrieve.md). */
#define RP_PULL_MAX 32
enum { RP_PULL_MOVE = 0, RP_PULL_GET = 1 };
typedef struct rp_conf_pull {
    char name[48];
    char peer[64];             /* [peer NAME] to query and retrieve from */
    char study_date[40];       /* today | yesterday | last N days | YYYYMMDD[-YYYYMMDD] | "" */
    char patient_id[65], accession[17], modality[17], body_part[17];
    char study_description[65], series_description[65]; /* DICOM wildcards */
    char rule[64];             /* process pulled series with this rule ("" = matching rule) */
    char dataset[64];          /* curate into datasets/NAME after the run ("" = none) */
    int window_start_s, window_end_s; /* seconds after local midnight; equal: any time */
    int max_concurrent, max_series, pause_ms, retries, retry_backoff_s;
    int method;                /* RP_PULL_MOVE | RP_PULL_GET */
    int line;
} rp_conf_pull;

/* [executor]: where the supervisor runs job workers. `local` (the default) forks on this
 * machine; `slurm` submits each job with sbatch to an existing Slurm cluster (sched/). The
 * cluster's limits come from [node] job_timeout_s / job_memory_mb unless set here. */
typedef enum { RP_EXECUTOR_LOCAL = 0, RP_EXECUTOR_SLURM } rp_executor_kind;
typedef struct rp_conf_executor {
    rp_executor_kind kind;
    char partition[64];    /* sbatch --partition ("" : the cluster's default) */
    char account[64];      /* sbatch --account ("" : none) */
    char sbatch_args[512]; /* extra sbatch options, split on blanks (no shell, no quoting) */
    int max_in_flight;     /* jobs submitted and not ended at most (0: [node] workers) */
    int cpus_per_task;     /* sbatch --cpus-per-task (0: not given) */
    long long mem_mb;      /* sbatch --mem in MB (0: [node] job_memory_mb) */
    int time_limit_s;      /* sbatch --time, rounded up to minutes (0: [node] job_timeout_s) */
    double poll_s;         /* seconds between two batched state queries (default 1) */
    char bin_dir[256];     /* where sbatch/squeue/scontrol/scancel live ("" : $PATH) */
} rp_conf_executor;

typedef struct rp_conf {
    char source[RP_PATH_MAX]; /* file loaded, or "(defaults)" */
    /* [node] */
    char ae_title[RP_AE_MAX + 1];
    int port;
    char bind[256];
    char data_dir[RP_PATH_MAX];
    char outputs_dir[RP_PATH_MAX]; /* empty: <data_dir>/outputs */
    int max_associations;
    int max_associations_per_peer;
    int acse_timeout_s, dimse_timeout_s, network_timeout_s;
    unsigned max_pdu;
    long long min_free_mb;
    rp_dup_policy duplicate_policy;
    rp_uid_policy uid_policy;
    long long max_instance_mb;
    char log_file[RP_PATH_MAX];
    char log_level[16];
    char uid_root[64];
    int workers; /* 0: number of cores */
    int job_timeout_s;
    long long job_memory_mb;
    int job_max_attempts;
    int index_batch;    /* instances per index transaction */
    int index_flush_ms; /* max delay before a partial batch is written */
    int spool_log_mb;   /* size of the spool log (received, not yet promoted) */
    /* [tls] */
    int tls_port; /* 0: no TLS listener */
    char tls_cert[RP_PATH_MAX], tls_key[RP_PATH_MAX], tls_key_passphrase_file[RP_PATH_MAX];
    char tls_ca_file[RP_PATH_MAX], tls_ca_dir[RP_PATH_MAX];
    char tls_profile[32];
    int tls_require_client_cert;
    int tls_expiry_warn_days;
    /* [http]: the web console (conf_http.c) */
    int http_port; /* 0: no console */
    char http_bind[256];
    int http_tls;                      /* serve HTTPS with [tls] cert/key */
    char http_token_file[RP_PATH_MAX]; /* bearer token, mode 0600; "" none */
    int http_client_cert;              /* require a client certificate from [tls] ca_file */
    int http_metrics_open;             /* /metrics without authentication */
    int http_max_connections, http_threads;
    /* arrays, owned */
    rp_conf_peer *peers;
    size_t n_peers;
    rp_conf_completion *completion;
    size_t n_completion;
    rp_conf_rule *rules;
    size_t n_rules;
    /* [fusion NAME] sections (fixed array: copied with the struct) */
    rp_conf_fusion fusions[RP_FUSION_MAX];
    size_t n_fusions;
    rp_conf_pull pulls[RP_PULL_MAX]; /* [pull NAME] sections (fixed array, like fusions) */
    size_t n_pulls;
    rp_conf_executor executor; /* [executor] (conf_executor.c) */
} rp_conf;

/* [executor] parsing helpers (conf_executor.c). "local" / "slurm" → kind; RP_EINVAL. */
int rp_conf_executor_kind_parse(const char *v, rp_executor_kind *out);
const char *rp_conf_executor_kind_name(rp_executor_kind k);

/* Fill `c` with the embedded defaults (built-in completion and recipe rules included). */
int rp_conf_defaults(rp_conf *c);

/* Load FILE over the defaults. On error: RP_ECONF and "FILE:LINE: reason" in err. */
int rp_conf_load(rp_conf *c, const char *path, char *err, size_t errlen);

/* Cross-field checks after loading and command-line overrides (ports, dirs, TLS files,
 * key permissions...). Returns RP_ECONF with a reason in err. */
int rp_conf_validate(const rp_conf *c, char *err, size_t errlen);

/* Check the TLS material when [tls] port is set (no-op otherwise): cert and key parse (the
 * key with key_passphrase_file when given, never prompting), the key belongs to the cert, the
 * cert is valid now, ca_file holds a certificate. RP_ECONF with a reason in err. A cert that
 * expires within expiry_warn_days is not an error: the reason goes into warn ("" if none).
 * Call after rp_conf_validate() (which checks the files exist and the key's permissions). */
int rp_conf_tls_check(const rp_conf *c, char *err, size_t errlen, char *warn, size_t warnlen);

/* 1 when `bind` is a loopback address (127.0.0.0/8, ::1, localhost). */
int rp_conf_http_is_loopback(const char *bind);

/* Release the arrays; the struct can be filled again with rp_conf_defaults(). */
void rp_conf_free(rp_conf *c);

/* Lookups (borrowed pointers into c, NULL if none). */
const rp_conf_peer *rp_conf_peer_by_ae(const rp_conf *c, const char *ae_title);
const rp_conf_peer *rp_conf_peer_by_name(const rp_conf *c, const char *name);
/* Completion rule for a modality, falling back to "default". Never NULL. */
const rp_conf_completion *rp_conf_completion_for(const rp_conf *c, const char *modality);

/* Result kinds a destination can receive ([peer] results): RP_RESULT_* for "derived" (the
 * derived series), "seg", "overlay" (contour secondary captures), "sr" (measurement report);
 * 0 for anything else. rp_conf_peer_results() is the mask of a peer's results key. */
enum { RP_RESULT_DERIVED = 1, RP_RESULT_SEG = 2, RP_RESULT_OVERLAY = 4, RP_RESULT_SR = 8 };
int rp_conf_result_kind(const char *word);
int rp_conf_peer_results(const rp_conf_peer *p);

/* Resolved outputs directory (outputs_dir or <data_dir>/outputs) into buf. */
const char *rp_conf_outputs_dir(const rp_conf *c, char *buf, size_t bufsz);

/* Deep copy src into dst (dst's previous arrays are NOT freed: pass a fresh struct).
 * Owned by the caller: rp_conf_free(dst). */
int rp_conf_copy(rp_conf *dst, const rp_conf *src);

/* Make sure data_dir can be used: create it (mode 0750) if missing. When it is still the
 * built-in default (/var/lib/radprep) and cannot be created or written (not root), fall back
 * to $XDG_STATE_HOME/radprep or ~/.local/state/radprep with a warning and update c->data_dir.
 * A data_dir the user set explicitly never falls back: RP_EIO/RP_EPERM with a log line. */
int rp_conf_resolve_data_dir(rp_conf *c);

/* Parse a boolean the way the INI parser does (yes/no/true/false/on/off/1/0, any case).
 * Returns 0 or 1, or RP_EINVAL. */
int rp_conf_parse_bool(const char *s);

/* Validate every rule's `steps` with a recipe parser supplied by the caller (pipeline), so
 * conf does not depend on pipeline. The callback returns 0 or fills err with a reason; the
 * first failure gives RP_ECONF and "FILE:LINE: rule NAME: reason" in err (built-in rules are
 * reported as "(built-in): rule NAME: reason"). */
typedef int (*rp_conf_steps_check_fn)(const char *steps, char *err, size_t errlen);
int rp_conf_validate_rules(const rp_conf *c, rp_conf_steps_check_fn check, char *err,
                           size_t errlen);

/* The [fusion NAME] section called `name`, or NULL. */
const rp_conf_fusion *rp_conf_fusion_by_name(const rp_conf *c, const char *name);

/* The [rule] for a series (borrowed from c), or NULL: every non-empty criterion matches
 * (modality and body_part: any word of the list, case-insensitive; series_description: a
 * case-insensitive glob; slice thickness within the bounds), the highest priority wins, a
 * file's rule beats a built-in one of the same priority. The node decides with it what a
 * job gets (its rule and resources) before the job runs anywhere. */
const rp_conf_rule *rp_conf_match_rule(const rp_conf *c, const char *modality,
                                       const char *body_part, const char *description,
                                       double slice_thickness);
/* Validate every fusion's `normalize` recipe the same way (FILE:LINE: fusion NAME: reason). */
int rp_conf_validate_fusions(const rp_conf *c, rp_conf_steps_check_fn check, char *err,
                             size_t errlen);

/* Which sequences of a [fusion] rule a series is. One matcher for the node (deciding from
 * the index) and the pipeline (fusing files), so that both always pick the same series. */
typedef struct rp_conf_series_attrs {
    const char *modality;
    const char *description; /* series description, else protocol name ("" when neither) */
    double tr_ms, te_ms, ti_ms; /* <0 when absent */
} rp_conf_series_attrs;
/* The built-in criteria of a sequence name (T1, T2, FLAIR, PD, BOLD, FIELDMAP; any case):
 * description globs and TR/TE/TI ranges. RP_ENOENT for another name. */
int rp_conf_seq_builtin(const char *name, rp_conf_fusion_seq *out);
/* 1 when a series matches criteria q: its description matches q->description (fnmatch,
 * case-insensitive, '|' separates alternatives, "" any) and TR/TE/TI lie in their ranges (a
 * range with lo > hi is no constraint; an absent value fails a set range, except TI when
 * ti_absent_ok). q is used as given: see rp_conf_fusion_match() for built-in names. */
int rp_conf_seq_match(const rp_conf_fusion_seq *q, const rp_conf_series_attrs *a);
/* Bit s set when the series matches f->seq[s] (its criteria, or the built-in ones of its name
 * when it has none), 0 when its modality is not one of f's. */
unsigned rp_conf_fusion_match(const rp_conf_fusion *f, const rp_conf_series_attrs *a);
/* [pull NAME] (conf_pull.c). The section called `name`, or NULL. */
const rp_conf_pull *rp_conf_pull_by_name(const rp_conf *c, const char *name);
/* A study_date spec (today, yesterday, "last N days", YYYYMMDD, YYYYMMDD-YYYYMMDD, open ends)
 * as a DICOM date range for the local day of `now` into out (>= 18 bytes; "" for an empty
 * spec). RP_EINVAL when the spec is not one of those. */
int rp_conf_pull_date_range(const char *spec, double now, char *out, size_t outsz);
/* "HH:MM[:SS]-HH:MM[:SS]" (or "any"/"") into seconds after midnight (equal: any time). */
int rp_conf_pull_window(const char *v, int *start_s, int *end_s);
/* 1 when `now` (local time) is inside p's window; *end (may be NULL) gets the wall time the
 * window closes (0 for an all-day window). */
int rp_conf_pull_in_window(const rp_conf_pull *p, double now, double *end);

#ifdef __cplusplus
}
#endif
#endif
