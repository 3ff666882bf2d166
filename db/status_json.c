/* The index's status figures as JSON: one writer for `radprep status --json` and the
 * console's /api/status, so both say the same thing under the same names. */
#include <cjson/cJSON.h>
#include <sys/statvfs.h>

#include "db/db.h"

void rp_db_status_json(const rp_db_counts *n, const char *data_dir, long long min_free_mb,
                       struct cJSON *j)
{
    cJSON_AddStringToObject(j, "data_dir", data_dir);
    cJSON_AddNumberToObject(j, "patients", (double)n->patients);
    cJSON_AddNumberToObject(j, "studies", (double)n->studies);
    cJSON_AddNumberToObject(j, "series", (double)n->series);
    cJSON_AddNumberToObject(j, "instances", (double)n->instances);
    cJSON_AddNumberToObject(j, "indexed_bytes", (double)n->bytes);
    cJSON *s = cJSON_AddObjectToObject(j, "series_state");
    cJSON_AddNumberToObject(s, "receiving", (double)n->series_receiving);
    cJSON_AddNumberToObject(s, "complete", (double)n->series_complete);
    cJSON_AddNumberToObject(s, "processing", (double)n->series_processing);
    cJSON_AddNumberToObject(s, "done", (double)n->series_done);
    cJSON_AddNumberToObject(s, "failed", (double)n->series_failed);
    cJSON *jb = cJSON_AddObjectToObject(j, "jobs");
    cJSON_AddNumberToObject(jb, "queued", (double)n->jobs_queued);
    cJSON_AddNumberToObject(jb, "running", (double)n->jobs_running);
    cJSON_AddNumberToObject(jb, "done", (double)n->jobs_done);
    cJSON_AddNumberToObject(jb, "failed", (double)n->jobs_failed);
    cJSON_AddNumberToObject(jb, "dead", (double)n->jobs_dead);
    cJSON *ob = cJSON_AddObjectToObject(j, "outbox");
    cJSON_AddNumberToObject(ob, "pending", (double)n->outbox_pending);
    cJSON_AddNumberToObject(ob, "sending", (double)n->outbox_sending);
    cJSON_AddNumberToObject(ob, "done", (double)n->outbox_done);
    cJSON_AddNumberToObject(ob, "dead", (double)n->outbox_dead);
    struct statvfs vfs;
    long long free_b = -1, total_b = -1;
    if (statvfs(data_dir, &vfs) == 0) {
        free_b = (long long)vfs.f_bavail * (long long)vfs.f_frsize;
        total_b = (long long)vfs.f_blocks * (long long)vfs.f_frsize;
    }
    cJSON_AddNumberToObject(j, "free_bytes", (double)free_b);
    cJSON_AddNumberToObject(j, "total_bytes", (double)total_b);
    cJSON_AddNumberToObject(j, "min_free_mb", (double)min_free_mb);
    cJSON_AddBoolToObject(j, "below_watermark",
                          free_b >= 0 && free_b < min_free_mb * 1024LL * 1024LL);
    cJSON_AddNumberToObject(j, "associations", (double)n->associations);
    cJSON_AddNumberToObject(j, "associations_refused", (double)n->associations_refused);
}
