/* Unit tests for the completion decision: expected count from header hints, quiet period,
 * operator trigger, and the reason text each records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "sched/sched.h"

static rp_completion_hint hint(int iia, int ntp, int slices, int acq, int frames, const char *sop)
{
    rp_completion_hint h;
    memset(&h, 0, sizeof h);
    h.images_in_acquisition = iia;
    h.number_of_temporal_positions = ntp;
    h.number_of_slices = slices;
    h.acquisition_number = acq;
    h.number_of_frames = frames;
    snprintf(h.sop_class_uid, sizeof h.sop_class_uid, "%s", sop);
    return h;
}

#define CT "1.2.840.10008.5.1.4.1.1.2"
#define ECT "1.2.840.10008.5.1.4.1.1.2.1"
#define EMR "1.2.840.10008.5.1.4.1.1.4.1"

static void test_expected_none(void **state)
{
    (void)state;
    char ev[128];
    assert_true(rp_completion_expected(NULL, 0, ev, sizeof ev) == -1);
    rp_completion_hint h[3] = {hint(-1, -1, -1, 1, 1, CT), hint(-1, -1, -1, 1, 1, CT),
                               hint(-1, -1, -1, 1, 1, CT)};
    assert_true(rp_completion_expected(h, 3, ev, sizeof ev) == -1);
    assert_string_equal(ev, "");
    /* temporal positions alone say nothing about the slice count (fMRI in the shared data) */
    h[0] = h[1] = h[2] = hint(-1, 20, -1, 1, 1, "1.2.840.10008.5.1.4.1.1.4");
    assert_true(rp_completion_expected(h, 3, ev, sizeof ev) == -1);
}

static void test_expected_images_in_acquisition(void **state)
{
    (void)state;
    char ev[128];
    rp_completion_hint h[3] = {hint(5, -1, -1, 1, 1, CT), hint(5, -1, -1, 1, 1, CT),
                               hint(5, -1, -1, 1, 1, CT)};
    assert_true(rp_completion_expected(h, 3, ev, sizeof ev) == 5);
    assert_string_equal(ev, "images_in_acquisition=5");
    /* absent acquisition number everywhere is still one acquisition */
    for (int i = 0; i < 3; i++)
        h[i].acquisition_number = -1;
    assert_true(rp_completion_expected(h, 3, ev, sizeof ev) == 5);
    /* two acquisitions: unknown total */
    h[2].acquisition_number = 2;
    assert_true(rp_completion_expected(h, 3, ev, sizeof ev) == -1);
    /* disagreeing headers: no evidence */
    h[2].acquisition_number = -1;
    h[1].images_in_acquisition = 6;
    assert_true(rp_completion_expected(h, 3, ev, sizeof ev) == -1);
    /* one instance missing the attribute: no evidence */
    h[1].images_in_acquisition = -1;
    assert_true(rp_completion_expected(h, 3, ev, sizeof ev) == -1);
    /* absurd values are not believed */
    h[0] = h[1] = h[2] = hint(1000000, -1, -1, 1, 1, CT);
    assert_true(rp_completion_expected(h, 3, ev, sizeof ev) == -1);
}

static void test_expected_slices_times_temporal(void **state)
{
    (void)state;
    char ev[128];
    rp_completion_hint h[2] = {hint(-1, 4, 30, 1, 1, "1.2.840.10008.5.1.4.1.1.128"),
                               hint(-1, 4, 30, 1, 1, "1.2.840.10008.5.1.4.1.1.128")};
    assert_true(rp_completion_expected(h, 2, ev, sizeof ev) == 120);
    assert_string_equal(ev, "number_of_temporal_positions=4 x number_of_slices=30");
    h[0].number_of_temporal_positions = h[1].number_of_temporal_positions = -1;
    assert_true(rp_completion_expected(h, 2, ev, sizeof ev) == 30);
    assert_string_equal(ev, "number_of_slices=30");
    /* slices beat images in acquisition when both are there */
    h[0].images_in_acquisition = h[1].images_in_acquisition = 7;
    assert_true(rp_completion_expected(h, 2, ev, sizeof ev) == 30);
}

static void test_expected_enhanced(void **state)
{
    (void)state;
    char ev[128];
    rp_completion_hint h[2] = {hint(-1, -1, -1, 1, 96, EMR), hint(-1, -1, -1, 1, 96, EMR)};
    assert_true(rp_completion_expected(h, 1, ev, sizeof ev) == 1);
    assert_string_equal(ev, "enhanced_multiframe number_of_frames=96");
    /* two enhanced instances: the headers do not say how many more */
    assert_true(rp_completion_expected(h, 2, ev, sizeof ev) == -1);
    /* a single-frame enhanced object is not evidence of anything */
    h[0] = hint(-1, -1, -1, 1, 1, ECT);
    assert_true(rp_completion_expected(h, 1, ev, sizeof ev) == -1);
    assert_true(rp_completion_is_enhanced(ECT));
    assert_false(rp_completion_is_enhanced(CT));
    assert_false(rp_completion_is_enhanced(NULL));
}

static void test_decide(void **state)
{
    (void)state;
    rp_conf_completion rule = {"CT", 3, 1};
    char why[128];
    double wait = -1;
    double now = 1000000.0;
    rp_series_progress p = {.instances = 4,
                            .last_seen = now - 1.0,
                            .expected = 5,
                            .evidence = "images_in_acquisition=5"};
    assert_int_equal(rp_completion_decide(&p, &rule, now, &wait, why, sizeof why),
                     RP_COMPLETE_WAIT);
    assert_true(wait > 1.99 && wait < 2.01);

    p.instances = 5;
    assert_int_equal(rp_completion_decide(&p, &rule, now, &wait, why, sizeof why),
                     RP_COMPLETE_EXPECTED);
    assert_string_equal(why, "expected_count=5 (images_in_acquisition=5)");

    /* expected count switched off for the modality: wait for quiet */
    rule.use_expected_count = 0;
    assert_int_equal(rp_completion_decide(&p, &rule, now, &wait, why, sizeof why),
                     RP_COMPLETE_WAIT);
    rule.use_expected_count = 1;

    /* more than expected (reopened series): only quiet decides */
    p.instances = 6;
    assert_int_equal(rp_completion_decide(&p, &rule, now, &wait, why, sizeof why),
                     RP_COMPLETE_WAIT);
    assert_int_equal(rp_completion_decide(&p, &rule, now + 2.5, &wait, why, sizeof why),
                     RP_COMPLETE_QUIET);
    assert_string_equal(why, "quiet_s=3 (idle 3.5s)");

    /* exactly at the quiet boundary */
    p.expected = -1;
    assert_int_equal(rp_completion_decide(&p, &rule, p.last_seen + 3.0, &wait, why, sizeof why),
                     RP_COMPLETE_QUIET);

    /* node was down for an hour: completes on the first pass */
    assert_int_equal(rp_completion_decide(&p, &rule, now + 3600, &wait, why, sizeof why),
                     RP_COMPLETE_QUIET);

    /* clock stepped back: keep waiting, never complete early */
    assert_int_equal(rp_completion_decide(&p, &rule, p.last_seen - 100, &wait, why, sizeof why),
                     RP_COMPLETE_WAIT);
    assert_true(wait > 2.99 && wait < 3.01);

    /* the operator wins, whatever the timers say */
    p.triggered = 1;
    assert_int_equal(rp_completion_decide(&p, &rule, p.last_seen, &wait, why, sizeof why),
                     RP_COMPLETE_OPERATOR);
    assert_string_equal(why, "operator");

    /* an empty series never completes by itself */
    p.triggered = 0;
    p.instances = 0;
    assert_int_equal(rp_completion_decide(&p, &rule, now + 3600, &wait, why, sizeof why),
                     RP_COMPLETE_WAIT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expected_none),
        cmocka_unit_test(test_expected_images_in_acquisition),
        cmocka_unit_test(test_expected_slices_times_temporal),
        cmocka_unit_test(test_expected_enhanced),
        cmocka_unit_test(test_decide),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
