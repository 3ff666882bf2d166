/* sched/fusion — study-level fusion decisions in the node: when are a study's sequences all
 * there, and which series versions make the set. Decided from the index alone (the fused
 * output itself is made by a worker, worker/fusion.c). See sched/sched.h. */
#include "sched/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

#define MOD "fusion"

/* Bits of f's sequences the series matches, from what the index keeps of its first instance
 * (as the pipeline takes the first file's header); 0 when it has none (or on error). */
static unsigned series_bits(rp_db *db, const rp_conf_fusion *f, const rp_db_series_info *si)
{
    rp_instance_meta *m = malloc(sizeof *m);
    if (!m)
        return 0;
    unsigned bits = 0;
    int rc = rp_db_series_first_instance(db, si->series_uid, m);
    if (rc == 0) {
        rp_conf_series_attrs a = {
            .modality = m->modality,
            .description = m->series_description[0] ? m->series_description : m->protocol_name,
            .tr_ms = m->repetition_time,
            .te_ms = m->echo_time,
            .ti_ms = m->inversion_time};
        bits = rp_conf_fusion_match(f, &a);
    } else if (rc != RP_ENOENT) {
        RP_WARN(MOD, "cannot read the index series=%s rc=%s", si->series_uid, rp_strerror(rc));
    }
    free(m);
    return bits;
}

static int check_rule(rp_db *db, const rp_conf *c, const rp_conf_fusion *f,
                      const char *study_uid, const rp_db_series_info *ser, size_t n, int manual,
                      rp_fusion_check *out)
{
    int receiving = 0;
    for (size_t i = 0; i < n; i++)
        if (ser[i].state == RP_SERIES_RECEIVING)
            receiving++;
    if (receiving && !manual) {
        out->waiting++;
        snprintf(out->reason, sizeof out->reason, "fuse %s: %d series of the study still receiving",
                 f->name, receiving);
        return 0;
    }
    int pick[RP_FUSION_MAX_SEQ];
    unsigned *bits = calloc(n ? n : 1, sizeof *bits);
    if (!bits)
        return RP_ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (ser[i].state != RP_SERIES_RECEIVING)
            bits[i] = series_bits(db, f, &ser[i]);
    /* same assignment as the pipeline: sequence order, lowest series number not taken
     * (ser is sorted by series number) */
    char missing[200] = "", members[RP_FUSION_MAX_SEQ * 96] = "",
         present[RP_FUSION_MAX_SEQ * 96] = "";
    for (int s = 0; s < f->n_seq; s++) {
        pick[s] = -1;
        for (size_t i = 0; i < n && pick[s] < 0; i++) {
            if (!(bits[i] & (1u << s)))
                continue;
            int taken = 0;
            for (int q = 0; q < s && !taken; q++)
                taken = pick[q] == (int)i;
            if (!taken)
                pick[s] = (int)i;
        }
        size_t l;
        if (pick[s] < 0) {
            l = strlen(missing);
            snprintf(missing + l, sizeof missing - l, "%s%s", l ? "," : "", f->seq[s].name);
        } else {
            const rp_db_series_info *si = &ser[pick[s]];
            l = strlen(members);
            snprintf(members + l, sizeof members - l, "%s%s=%s@%d", l ? ";" : "", f->seq[s].name,
                     si->series_uid, si->version);
            l = strlen(present);
            snprintf(present + l, sizeof present - l, "%s%s=%d", l ? "," : "", f->seq[s].name,
                     si->series_number);
        }
    }
    free(bits);
    int rc = 0;
    if (missing[0]) {
        out->missing++;
        snprintf(out->reason, sizeof out->reason, "fuse %s: missing sequence %s", f->name, missing);
        char what[sizeof missing + sizeof members + 32];
        snprintf(what, sizeof what, "missing:%s;present:%s", missing, members);
        if (manual || rp_db_fusion_report_once(db, study_uid, f->name, what) == 0) {
            RP_WARN(MOD, "fuse: missing sequence %s rule=%s study=%s present=\"%s\"", missing,
                    f->name, study_uid, present);
            char detail[sizeof missing + sizeof present + 2 * 80];
            snprintf(detail, sizeof detail, "study=%s rule=%s missing=%s present=%s", study_uid,
                     f->name, missing, present[0] ? present : "-");
            rp_db_event_add(db, "fuse_missing", detail);
        }
        return 0;
    }
    int version = 0;
    long long job = 0;
    rc = rp_db_fusion_enqueue(db, study_uid, f->name, members, c->job_max_attempts, &version, &job);
    if (rc == RP_EEXIST) {
        out->already++;
        rc = 0;
    } else if (rc == 0) {
        out->queued++;
        RP_INFO(MOD, "fusion queued rule=%s study=%s version=%d job=%lld members=\"%s\"", f->name,
                study_uid, version, job, members);
        char detail[900];
        snprintf(detail, sizeof detail, "study=%s rule=%s version=%d job=%lld members=%s",
                 study_uid, f->name, version, job, members);
        rp_db_event_add(db, "fusion_queued", detail);
    } else {
        RP_ERROR(MOD, "cannot queue fusion rule=%s study=%s rc=%s", f->name, study_uid,
                 rp_strerror(rc));
        return rc;
    }
    out->last_job = job;
    out->last_version = version;
    return 0;
}

int rp_fusion_check_study(rp_db *db, const rp_conf *c, const char *study_uid,
                          const char *rule_name, int manual, rp_fusion_check *out)
{
    memset(out, 0, sizeof *out);
    if (rule_name && !rp_conf_fusion_by_name(c, rule_name)) {
        snprintf(out->reason, sizeof out->reason, "no [fusion %s] in the configuration", rule_name);
        return RP_ENOENT;
    }
    rp_db_series_info *ser = NULL;
    size_t n = 0;
    int rc = rp_db_study_series(db, study_uid, &ser, &n);
    if (rc)
        return rc;
    if (n == 0) {
        snprintf(out->reason, sizeof out->reason, "study %s is not in the index", study_uid);
        free(ser);
        return RP_ENOENT;
    }
    for (size_t i = 0; i < c->n_fusions && rc == 0; i++) {
        const rp_conf_fusion *f = &c->fusions[i];
        if (rule_name && strcmp(f->name, rule_name) != 0)
            continue;
        rc = check_rule(db, c, f, study_uid, ser, n, manual, out);
    }
    free(ser);
    return rc;
}

void rp_fusion_on_series_complete(rp_db *db, const rp_conf *c, const char *series_uid)
{
    if (!c || c->n_fusions == 0)
        return;
    rp_db_series_info si;
    if (rp_db_series_get(db, series_uid, &si) != 0)
        return;
    rp_fusion_check chk;
    int rc = rp_fusion_check_study(db, c, si.study_uid, NULL, 0, &chk);
    if (rc)
        RP_WARN(MOD, "study check failed study=%s rc=%s", si.study_uid, rp_strerror(rc));
}
