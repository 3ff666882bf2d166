/* db/curate — read side of `radprep curate`: the latest successful processing of every
 * series (see the declarations at the end of db.h). Reads only; never changes the index. */
#include "db/db_internal.h"

static void read_version(sqlite3_stmt *s, void *element)
{
    rp_db_curated_version *v = element;
    v->job_id = sqlite3_column_int64(s, 0);
    rp_db_col_text(s, 1, v->series_uid, sizeof v->series_uid);
    v->version = (int)rp_db_col_int(s, 2, 0);
    v->finished_at = rp_db_col_real(s, 3, 0);
    rp_db_col_text(s, 4, v->output_dir, sizeof v->output_dir);
    rp_db_col_text(s, 5, v->study_uid, sizeof v->study_uid);
    rp_db_col_text(s, 6, v->modality, sizeof v->modality);
}

int rp_db_curate_versions(rp_db *db, const char *modality, double since,
                          rp_db_curated_version **out, size_t *n)
{
    /* For each series: its done job of the highest version (a later failed or running
     * version leaves the previous good one in the dataset). Ties cannot happen (UNIQUE
     * kind, series_uid, version), but the id breaks them anyway. */
    sqlite3_stmt *s = rp_db_prepare(
        db, "SELECT j.id, j.series_uid, j.version, j.finished_at, j.output_dir,"
            " coalesce(st.study_uid, ''), coalesce(se.modality, '')"
            " FROM jobs j"
            " LEFT JOIN series se ON se.series_uid = j.series_uid"
            " LEFT JOIN studies st ON st.id = se.study_fk"
            " WHERE j.state = 'done' AND j.kind = 'process'"
            "   AND j.output_dir IS NOT NULL AND j.output_dir <> ''"
            "   AND (?1 IS NULL OR upper(se.modality) = upper(?1))"
            "   AND (?2 <= 0 OR j.finished_at >= ?2)"
            "   AND NOT EXISTS (SELECT 1 FROM jobs k WHERE k.series_uid = j.series_uid"
            "     AND k.kind = j.kind AND k.state = 'done' AND k.output_dir IS NOT NULL"
            "     AND k.output_dir <> '' AND (k.version > j.version"
            "       OR (k.version = j.version AND k.id > j.id)))"
            " ORDER BY j.series_uid");
    if (s) {
        rp_db_bind_text(s, 1, modality && *modality ? modality : NULL);
        sqlite3_bind_double(s, 2, since);
    }
    return rp_db_collect(db, s, (void **)out, n, sizeof **out, read_version, "curate versions");
}
