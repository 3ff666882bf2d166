/* sched/monitor_decide — when is a series complete? Pure functions over what the database
 * holds (hints from headers, counts, times), so that they can be tested without a node. */
#include "sched/sched.h"

#include <stdio.h>
#include <string.h>

#include "common/common.h"

/* Beyond this, a header value is not a count we believe. */
#define RP_EXPECTED_MAX 100000

int rp_completion_is_enhanced(const char *uid)
{
    static const char *const enhanced[] = {
        "1.2.840.10008.5.1.4.1.1.2.1",    /* Enhanced CT */
        "1.2.840.10008.5.1.4.1.1.2.2",    /* Legacy Converted Enhanced CT */
        "1.2.840.10008.5.1.4.1.1.4.1",    /* Enhanced MR */
        "1.2.840.10008.5.1.4.1.1.4.3",    /* Enhanced MR Color */
        "1.2.840.10008.5.1.4.1.1.4.4",    /* Legacy Converted Enhanced MR */
        "1.2.840.10008.5.1.4.1.1.130",    /* Enhanced PET */
        "1.2.840.10008.5.1.4.1.1.128.1",  /* Legacy Converted Enhanced PET */
        "1.2.840.10008.5.1.4.1.1.12.1.1", /* Enhanced XA */
        "1.2.840.10008.5.1.4.1.1.12.2.1", /* Enhanced XRF */
        "1.2.840.10008.5.1.4.1.1.6.2",    /* Enhanced US Volume */
        "1.2.840.10008.5.1.4.1.1.13.1.3", /* Breast Tomosynthesis */
    };
    if (!uid)
        return 0;
    for (size_t i = 0; i < sizeof enhanced / sizeof enhanced[0]; i++)
        if (strcmp(uid, enhanced[i]) == 0)
            return 1;
    return 0;
}

/* The common value of an int field over all hints, -1 if absent anywhere or not the same. */
static int common_value(const rp_completion_hint *h, size_t n, size_t offset)
{
    int v = -2;
    for (size_t i = 0; i < n; i++) {
        int x = *(const int *)((const char *)&h[i] + offset);
        if (x <= 0)
            return -1;
        if (v == -2)
            v = x;
        else if (v != x)
            return -1;
    }
    return v < 0 ? -1 : v;
}

long long rp_completion_expected(const rp_completion_hint *h, size_t n, char *evidence, size_t evsz)
{
    if (evidence && evsz)
        evidence[0] = '\0';
    if (!h || n == 0)
        return -1;

    /* An enhanced object carries all its frames: one instance is the whole acquisition. */
    if (n == 1 && rp_completion_is_enhanced(h[0].sop_class_uid) && h[0].number_of_frames > 1) {
        if (evidence)
            snprintf(evidence, evsz, "enhanced_multiframe number_of_frames=%d",
                     h[0].number_of_frames);
        return 1;
    }

    int slices = common_value(h, n, offsetof(rp_completion_hint, number_of_slices));
    if (slices > 0) {
        int tp = common_value(h, n, offsetof(rp_completion_hint, number_of_temporal_positions));
        long long e = (long long)slices * (tp > 0 ? tp : 1);
        if (e <= RP_EXPECTED_MAX) {
            if (evidence) {
                if (tp > 1)
                    snprintf(evidence, evsz,
                             "number_of_temporal_positions=%d x number_of_slices=%d", tp, slices);
                else
                    snprintf(evidence, evsz, "number_of_slices=%d", slices);
            }
            return e;
        }
    }

    int iia = common_value(h, n, offsetof(rp_completion_hint, images_in_acquisition));
    if (iia > 0 && iia <= RP_EXPECTED_MAX) {
        /* Images in Acquisition counts one acquisition; with several acquisitions in the
         * series we cannot know how many more will come. An absent acquisition number is
         * one acquisition. */
        int acq = -2, several = 0;
        for (size_t i = 0; i < n && !several; i++) {
            int a = h[i].acquisition_number;
            if (acq == -2)
                acq = a;
            else if (a != acq)
                several = 1;
        }
        if (!several) {
            if (evidence)
                snprintf(evidence, evsz, "images_in_acquisition=%d", iia);
            return iia;
        }
    }
    return -1;
}

rp_complete_why rp_completion_decide(const rp_series_progress *p, const rp_conf_completion *rule,
                                     double now, double *wait_s, char *reason, size_t reasonsz)
{
    if (wait_s)
        *wait_s = 0;
    if (reason && reasonsz)
        reason[0] = '\0';
    if (p->triggered) {
        if (reason)
            snprintf(reason, reasonsz, "operator");
        return RP_COMPLETE_OPERATOR;
    }
    if (p->instances <= 0) {
        /* Nothing to process (all instances deleted): wait for data or an operator. */
        if (wait_s)
            *wait_s = rule->quiet_s > 0 ? rule->quiet_s : 1;
        return RP_COMPLETE_WAIT;
    }
    /* Exactly reached: more than expected means the headers were wrong (or instances came
     * in again after a reopen), so only the quiet rule can be trusted then. */
    if (rule->use_expected_count && p->expected > 0 && p->instances == p->expected) {
        if (reason)
            snprintf(reason, reasonsz, "expected_count=%lld (%s)", p->expected,
                     p->evidence && *p->evidence ? p->evidence : "headers");
        return RP_COMPLETE_EXPECTED;
    }
    double idle = now - p->last_seen;
    if (idle < 0)
        idle = 0; /* the clock stepped back: wait until it passes last_seen again */
    if (idle >= rule->quiet_s) {
        if (reason)
            snprintf(reason, reasonsz, "quiet_s=%d (idle %.1fs)", rule->quiet_s, idle);
        return RP_COMPLETE_QUIET;
    }
    if (wait_s)
        *wait_s = rule->quiet_s - idle;
    return RP_COMPLETE_WAIT;
}
