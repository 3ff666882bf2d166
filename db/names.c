/*
 * db/names — the words for states and kinds, used where text is needed: in SQL (this folder)
 * and on the command line. Everything else works with the enums of db/db.h.
 */
#include "db/db_internal.h"

#include <string.h>

static const char *const series_states[] = {"receiving", "complete", "processing", "done",
                                            "failed"};
static const char *const completed_reasons[] = {"", "quiet", "expected_count", "operator"};
static const char *const job_kinds[] = {"process", "fuse"};
static const char *const job_states[] = {"queued", "running", "done", "failed", "dead"};
static const char *const outbox_states[] = {"pending", "sending", "done", "dead"};

#define N_OF(a) ((int)(sizeof(a) / sizeof(a[0])))

static const char *name_of(const char *const *names, int n, int v)
{
    return v >= 0 && v < n ? names[v] : "?";
}

static int parse_of(const char *const *names, int n, const char *text, int *out)
{
    for (int i = 0; text && i < n; i++)
        if (strcmp(text, names[i]) == 0) {
            *out = i;
            return 0;
        }
    return RP_EINVAL;
}

#define NAMES(type, fn, table)                                                                     \
    const char *fn##_name(type v)                                                                  \
    {                                                                                              \
        return name_of(table, N_OF(table), (int)v);                                                \
    }                                                                                              \
    int fn##_parse(const char *text, type *out)                                                    \
    {                                                                                              \
        int v;                                                                                     \
        if (parse_of(table, N_OF(table), text, &v) != 0)                                           \
            return RP_EINVAL;                                                                      \
        *out = (type)v;                                                                            \
        return 0;                                                                                  \
    }

NAMES(rp_series_state, rp_series_state, series_states)
NAMES(rp_completed_reason, rp_completed_reason, completed_reasons)
NAMES(rp_job_kind, rp_job_kind, job_kinds)
NAMES(rp_job_state, rp_job_state, job_states)
NAMES(rp_outbox_state, rp_outbox_state, outbox_states)

static const struct {
    const char *const *names;
    int n;
} sets[] = {
    [RP_DB_WORDS_SERIES_STATE] = {series_states, N_OF(series_states)},
    [RP_DB_WORDS_COMPLETED_REASON] = {completed_reasons, N_OF(completed_reasons)},
    [RP_DB_WORDS_JOB_KIND] = {job_kinds, N_OF(job_kinds)},
    [RP_DB_WORDS_JOB_STATE] = {job_states, N_OF(job_states)},
    [RP_DB_WORDS_OUTBOX_STATE] = {outbox_states, N_OF(outbox_states)},
};

int rp_db_col_enum(sqlite3_stmt *s, int i, rp_db_words set, int dflt)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    int v = dflt;
    if (parse_of(sets[set].names, sets[set].n, t ? (const char *)t : "", &v) != 0) {
        /* a hand-edited row: say so, and let the listing go on */
        RP_WARN("db", "unknown word in the index column=%s value=%s", sqlite3_column_name(s, i),
                t ? (const char *)t : "NULL");
        v = dflt;
    }
    return v;
}

const char *rp_db_job_subject(const rp_db_job *j)
{
    return j->kind == RP_JOB_KIND_FUSE ? j->study_uid : j->series_uid;
}
