/* Unit tests for metrics/: counters, gauges and histograms with labels, the "_other"
 * overflow series, exact totals under concurrent updates, and the text format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/metrics.h"

static int reset(void **state)
{
    (void)state;
    rp_metrics_reset();
    return 0;
}

static char *render(void)
{
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(rp_metrics_render(&out, &len), 0);
    assert_non_null(out);
    assert_int_equal(strlen(out), len);
    return out;
}

static void test_counter_labels(void **state)
{
    (void)state;
    rp_metrics_add(RP_M_INSTANCES_RECEIVED, 1, "CT1", "0x0000");
    rp_metrics_add(RP_M_INSTANCES_RECEIVED, 2, "CT1", "0x0000");
    rp_metrics_add(RP_M_INSTANCES_RECEIVED, 1, "CT1", "0xA700");
    rp_metrics_add(RP_M_INSTANCES_RECEIVED, 5, "MR2", "0x0000");
    assert_true(rp_metrics_get(RP_M_INSTANCES_RECEIVED, "CT1", "0x0000") == 3);
    assert_true(rp_metrics_get(RP_M_INSTANCES_RECEIVED, "CT1", "0xA700") == 1);
    assert_true(rp_metrics_get(RP_M_INSTANCES_RECEIVED, "MR2", "0x0000") == 5);
    assert_true(rp_metrics_get(RP_M_INSTANCES_RECEIVED, "XX", "0x0000") == 0);
    assert_true(rp_metrics_sum(RP_M_INSTANCES_RECEIVED) == 9);
    /* a histogram id is not a counter: ignored */
    rp_metrics_add(RP_M_STORE_COMMIT_SECONDS, 1);
    assert_true(rp_metrics_sum(RP_M_STORE_COMMIT_SECONDS) == 0);
    char *t = render();
    assert_non_null(strstr(t, "# TYPE radprep_instances_received_total counter\n"));
    assert_non_null(
        strstr(t, "radprep_instances_received_total{calling_ae=\"CT1\",status=\"0x0000\"} 3\n"));
    assert_non_null(
        strstr(t, "radprep_instances_received_total{calling_ae=\"MR2\",status=\"0x0000\"} 5\n"));
    /* families without labels are always there, at 0 before their first update */
    assert_non_null(strstr(t, "radprep_associations_total 0\n"));
    /* labelled families without any series are left out */
    assert_null(strstr(t, "radprep_outbox_entries"));
    free(t);
}

static void test_gauge_set_zero(void **state)
{
    (void)state;
    rp_metrics_set(RP_M_OUTBOX, 4, "PACS", "pending");
    rp_metrics_set(RP_M_OUTBOX, 7, "PACS", "done");
    rp_metrics_add(RP_M_ASSOCIATIONS_OPEN, 1);
    rp_metrics_add(RP_M_ASSOCIATIONS_OPEN, 1);
    rp_metrics_add(RP_M_ASSOCIATIONS_OPEN, -1);
    assert_true(rp_metrics_sum(RP_M_ASSOCIATIONS_OPEN) == 1);
    rp_metrics_zero(RP_M_OUTBOX);
    rp_metrics_set(RP_M_OUTBOX, 8, "PACS", "done");
    assert_true(rp_metrics_get(RP_M_OUTBOX, "PACS", "pending") == 0);
    assert_true(rp_metrics_get(RP_M_OUTBOX, "PACS", "done") == 8);
    char *t = render();
    assert_non_null(
        strstr(t, "radprep_outbox_entries{destination=\"PACS\",state=\"pending\"} 0\n"));
    assert_non_null(strstr(t, "radprep_associations_open 1\n"));
    free(t);
}

static void test_histogram(void **state)
{
    (void)state;
    rp_metrics_observe(RP_M_STORE_COMMIT_SECONDS, 0.0004);
    rp_metrics_observe(RP_M_STORE_COMMIT_SECONDS, 0.003);
    rp_metrics_observe(RP_M_STORE_COMMIT_SECONDS, 0.003);
    rp_metrics_observe(RP_M_STORE_COMMIT_SECONDS, 99);
    assert_true(rp_metrics_sum(RP_M_STORE_COMMIT_SECONDS) == 4);
    char *t = render();
    assert_non_null(strstr(t, "# TYPE radprep_store_commit_seconds histogram\n"));
    assert_non_null(strstr(t, "radprep_store_commit_seconds_bucket{le=\"0.0005\"} 1\n"));
    assert_non_null(strstr(t, "radprep_store_commit_seconds_bucket{le=\"0.0025\"} 1\n"));
    assert_non_null(strstr(t, "radprep_store_commit_seconds_bucket{le=\"0.005\"} 3\n"));
    assert_non_null(strstr(t, "radprep_store_commit_seconds_bucket{le=\"2.5\"} 3\n"));
    assert_non_null(strstr(t, "radprep_store_commit_seconds_bucket{le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(t, "radprep_store_commit_seconds_count 4\n"));
    assert_non_null(strstr(t, "radprep_store_commit_seconds_sum 99.0064"));
    free(t);
    rp_metrics_observe(RP_M_JOB_DURATION, 3, "done");
    t = render();
    assert_non_null(strstr(t, "radprep_job_duration_seconds_bucket{state=\"done\",le=\"5\"} 1\n"));
    assert_non_null(strstr(t, "radprep_job_duration_seconds_count{state=\"done\"} 1\n"));
    free(t);
}

static void test_escaping_and_truncation(void **state)
{
    (void)state;
    rp_metrics_add(RP_M_ASSOCIATIONS_REJECTED, 1, "a\"b\\c\nd");
    char longv[200];
    memset(longv, 'x', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    rp_metrics_add(RP_M_ASSOCIATIONS_REJECTED, 1, longv);
    rp_metrics_add(RP_M_ASSOCIATIONS_REJECTED, 1, longv); /* same (cut) label set */
    rp_metrics_add(RP_M_ASSOCIATIONS_REJECTED, 1, NULL);
    char *t = render();
    assert_non_null(
        strstr(t, "radprep_associations_rejected_total{reason=\"a\\\"b\\\\c\\nd\"} 1\n"));
    char want[128];
    snprintf(want, sizeof want, "{reason=\"%.*s\"} 2\n", RP_METRICS_LABEL_MAX - 1, longv);
    assert_non_null(strstr(t, want));
    assert_non_null(strstr(t, "{reason=\"\"} 1\n"));
    free(t);
}

static void test_overflow_other(void **state)
{
    (void)state;
    char ae[32];
    for (int i = 0; i < 200; i++) {
        snprintf(ae, sizeof ae, "AE%d", i);
        rp_metrics_add(RP_M_ASSOCIATIONS_REJECTED, 1, ae);
    }
    /* nothing lost: every count is somewhere, the excess in "_other" */
    assert_true(rp_metrics_sum(RP_M_ASSOCIATIONS_REJECTED) == 200);
    assert_true(rp_metrics_get(RP_M_ASSOCIATIONS_REJECTED, "_other") ==
                200 - (RP_METRICS_MAX_SERIES - 1));
    char *t = render();
    assert_non_null(strstr(t, "{reason=\"_other\"}"));
    free(t);
}

#define THREADS 4
#define PER_THREAD 50000
static void *hammer(void *arg)
{
    int k = (int)(intptr_t)arg;
    char ae[16];
    for (int i = 0; i < PER_THREAD; i++) {
        snprintf(ae, sizeof ae, "AE%d", i % 8);
        rp_metrics_add(RP_M_INSTANCES_RECEIVED, 1, ae, k % 2 ? "0x0000" : "0xC000");
        rp_metrics_add(RP_M_BYTES_RECEIVED, 1000, ae, "0x0000");
        rp_metrics_observe(RP_M_STORE_COMMIT_SECONDS, 0.001 * (i % 10));
    }
    return NULL;
}

static void test_concurrent_exact(void **state)
{
    (void)state;
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    assert_true(rp_metrics_sum(RP_M_INSTANCES_RECEIVED) == THREADS * PER_THREAD);
    assert_true(rp_metrics_sum(RP_M_BYTES_RECEIVED) == 1000.0 * THREADS * PER_THREAD);
    assert_true(rp_metrics_sum(RP_M_STORE_COMMIT_SECONDS) == THREADS * PER_THREAD);
    assert_true(rp_metrics_get(RP_M_INSTANCES_RECEIVED, "AE3", "0x0000") ==
                (THREADS / 2) * PER_THREAD / 8);
    /* each label set has exactly one series */
    char *txt = render();
    int n = 0;
    for (const char *p = txt; (p = strstr(p, "radprep_instances_received_total{")); p++)
        n++;
    assert_int_equal(n, 16);
    free(txt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_counter_labels, reset),
        cmocka_unit_test_setup(test_gauge_set_zero, reset),
        cmocka_unit_test_setup(test_histogram, reset),
        cmocka_unit_test_setup(test_escaping_and_truncation, reset),
        cmocka_unit_test_setup(test_overflow_other, reset),
        cmocka_unit_test_setup(test_concurrent_exact, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
