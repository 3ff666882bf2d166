/* Unit tests for [fusion NAME] (conf/conf_fusion.c): defaults, sequences with built-in and
 * file criteria, every key, line-numbered errors, copies, normalize recipe validation, and
 * the sequence matcher the node and the pipeline share. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "conf/conf.h"

static char path[128];

static int load(rp_conf *c, const char *text, char *err, size_t errlen)
{
    snprintf(path, sizeof path, "/tmp/rp_conf_fusion_%d.ini", (int)getpid());
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    assert_int_equal(rp_conf_defaults(c), 0);
    int rc = rp_conf_load(c, path, err, errlen);
    unlink(path);
    return rc;
}

static void expect_error(const char *text, int line, const char *why)
{
    rp_conf c;
    char err[1024], want[1024];
    assert_int_equal(load(&c, text, err, sizeof err), RP_ECONF);
    snprintf(want, sizeof want, "%s:%d: %s", path, line, why);
    if (strncmp(err, want, strlen(want)) != 0)
        fail_msg("got  \"%s\"\nwant \"%s...\"", err, want);
    rp_conf_free(&c);
}

static void test_full_section(void **state)
{
    (void)state;
    rp_conf c;
    char err[512] = "";
    int rc = load(&c,
                  "[fusion brain]\n"
                  "sequences = T1 T2:*t2*|*tse* FLAIR\n"
                  "FLAIR.ti_ms = 1500..3000\n"
                  "FLAIR.te_ms = 60..400\n"
                  "reference = T2\n"
                  "normalize = none\n"
                  "interpolation = nearest\n"
                  "layout = both\n"
                  "register = rigid\n"
                  "FLAIR.register = rigid_scale\n"
                  "T2.register = none\n"
                  "[fusion other]\n"
                  "sequences = BOLD\n",
                  err, sizeof err);
    assert_int_equal(rc, 0);
    assert_int_equal(c.n_fusions, 2);
    const rp_conf_fusion *f = rp_conf_fusion_by_name(&c, "brain");
    assert_non_null(f);
    assert_string_equal(f->modality, "MR");
    assert_int_equal(f->n_seq, 3);
    assert_string_equal(f->seq[0].name, "T1");
    assert_int_equal(f->seq[0].custom, 0); /* built-in matcher */
    assert_string_equal(f->seq[1].description, "*t2*|*tse*");
    assert_int_equal(f->seq[1].custom, 1);
    assert_true(f->seq[1].tr_lo > f->seq[1].tr_hi); /* no TR bound */
    assert_int_equal(f->seq[2].custom, 1);
    assert_string_equal(f->seq[2].description, "");
    assert_true(f->seq[2].ti_lo == 1500 && f->seq[2].ti_hi == 3000);
    assert_int_equal(f->reference, 1);
    assert_string_equal(f->normalize, "");
    assert_int_equal(f->order, 0);
    assert_int_equal(f->layout, RP_FUSION_LAYOUT_NIFTI4D | RP_FUSION_LAYOUT_NNUNET);
    /* register: the rule's setting, per sequence overrides (a matching criterion it is not:
     * T2 keeps its glob, FLAIR its ranges) */
    assert_int_equal(f->register_mode, RP_FUSION_REG_RIGID);
    assert_int_equal(f->seq[0].register_mode, -1);
    assert_int_equal(f->seq[1].register_mode, RP_FUSION_REG_NONE);
    assert_int_equal(f->seq[2].register_mode, RP_FUSION_REG_RIGID_SCALE);
    assert_string_equal(f->seq[1].description, "*t2*|*tse*");
    f = rp_conf_fusion_by_name(&c, "other");
    assert_int_equal(f->register_mode, RP_FUSION_REG_NONE);
    assert_non_null(f);
    assert_int_equal(f->reference, 0);
    assert_int_equal(f->layout, RP_FUSION_LAYOUT_NIFTI4D);
    assert_int_equal(f->order, 1);
    assert_non_null(strstr(f->normalize, "zscore_in(foreground)"));
    /* copies carry the fusions */
    rp_conf d;
    assert_int_equal(rp_conf_copy(&d, &c), 0);
    assert_non_null(rp_conf_fusion_by_name(&d, "brain"));
    assert_null(rp_conf_fusion_by_name(&d, "nope"));
    rp_conf_free(&d);
    rp_conf_free(&c);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("[fusion a]\nlayout = both\n", 1, "fusion a: sequences is required");
    expect_error("[fusion a]\nsequences = T1 T1\n", 2, "sequences: 'T1' is listed twice");
    expect_error("[fusion a]\nsequences = T1 X\n", 1, "fusion a: sequence X has no built-in");
    expect_error("[fusion a]\nsequences = T1\nT2.te_ms = 1..2\n", 3,
                 "T2.te_ms: sequence 'T2' is not in `sequences`");
    expect_error("[fusion a]\nsequences = T1\nT1.te_ms = 5\n", 3, "T1.te_ms: expected LO..HI");
    expect_error("[fusion a]\nsequences = T1\nT1.color = red\n", 3, "unknown key 'T1.color'");
    expect_error("[fusion a]\nsequences = T1\nlayout = tar\n", 3,
                 "layout: 'tar' is not one of nifti4d|nnunet|both");
    expect_error("[fusion a]\nsequences = T1\ninterpolation = cubic\n", 3, "interpolation:");
    expect_error("[fusion a]\nsequences = T1\nreference = T2\n", 3,
                 "reference: 'T2' is not one of the sequences");
    expect_error("[fusion a]\nsequences = T1\nsequences = T2\n", 3, "duplicate key 'sequences'");
    expect_error("[fusion a]\nsequences = T1\nbogus = 1\n", 3, "unknown key 'bogus'");
    expect_error("[fusion a]\nsequences = T1\n[fusion a]\nsequences = T1\n", 3,
                 "duplicate [fusion a]");
    expect_error("[fusion abcdefghijklmnopqrstuvwxyz]\nsequences = T1\n", 1,
                 "fusion name 'abcdefghijklmnopqrstuvwxyz' is too long");
    expect_error("[fusion a]\nsequences = T1:\n", 2, "sequences: 'T1:' needs a description glob");
    expect_error("[fusion a]\nsequences = T1\nregister = affine\n", 3,
                 "register: 'affine' is not one of none|rigid|rigid_scale");
    expect_error("[fusion a]\nsequences = T1\nT1.register = yes\n", 3,
                 "T1.register: 'yes' is not one of none|rigid|rigid_scale");
}

static int fake_check(const char *steps, char *err, size_t errlen)
{
    if (strstr(steps, "bad")) {
        snprintf(err, errlen, "unknown step 'bad'");
        return RP_ECONF;
    }
    return 0;
}

static void test_validate_normalize(void **state)
{
    (void)state;
    rp_conf c;
    char err[512] = "";
    assert_int_equal(
        load(&c, "[fusion a]\nsequences = T1\n\nnormalize = n4 bad\n", err, sizeof err), 0);
    assert_int_equal(rp_conf_validate_fusions(&c, fake_check, err, sizeof err), RP_ECONF);
    assert_non_null(strstr(err, ":4: fusion a: normalize: unknown step 'bad'"));
    rp_conf_free(&c);
    assert_int_equal(load(&c, "[fusion a]\nsequences = T1\nnormalize = zscore\n", err, sizeof err),
                     0);
    assert_int_equal(rp_conf_validate_fusions(&c, fake_check, err, sizeof err), 0);
    rp_conf_free(&c);
}

static void test_matcher(void **state)
{
    (void)state;
    rp_conf_fusion_seq q;
    assert_int_equal(rp_conf_seq_builtin("flair", &q), 0);
    assert_string_equal(q.name, "FLAIR");
    assert_int_equal(rp_conf_seq_builtin("T9", &q), RP_ENOENT);

    rp_conf c;
    char err[512] = "";
    assert_int_equal(load(&c,
                          "[fusion brain]\n"
                          "sequences = T1 T2 FLAIR\n"
                          "[fusion mine]\n"
                          "modality = MR CT\n"
                          "sequences = A:*spine*\n"
                          "A.tr_ms = 100..200\n",
                          err, sizeof err),
                     0);
    const rp_conf_fusion *brain = rp_conf_fusion_by_name(&c, "brain");
    const rp_conf_fusion *mine = rp_conf_fusion_by_name(&c, "mine");
    assert_non_null(brain);
    assert_non_null(mine);
    rp_conf_series_attrs mprage = {"MR", "T1_MPRAGE_sag", 2300, 2.98, 900};
    rp_conf_series_attrs t1_no_ti = {"MR", "t1_se_tra", 500, 10, -1};
    rp_conf_series_attrs t2 = {"MR", "t2_tse_tra", 5000, 90, -1};
    rp_conf_series_attrs flair = {"MR", "t2_tirm_flair", 9000, 90, 2500};
    rp_conf_series_attrs no_te = {"MR", "t2_tse_tra", 5000, -1, -1};
    rp_conf_series_attrs ct = {"CT", "t1 anything", 2300, 2.98, 900};
    assert_int_equal(rp_conf_fusion_match(brain, &mprage), 1u << 0);
    assert_int_equal(rp_conf_fusion_match(brain, &t1_no_ti), 1u << 0); /* TI absent is fine */
    assert_int_equal(rp_conf_fusion_match(brain, &t2), 1u << 1);
    /* a FLAIR is T2-weighted too (the assignment, one series per sequence, tells them apart);
     * a T2 without inversion is no FLAIR */
    assert_int_equal(rp_conf_fusion_match(brain, &flair), (1u << 1) | (1u << 2));
    assert_int_equal(rp_conf_fusion_match(brain, &no_te), 0); /* a set range needs a value */
    assert_int_equal(rp_conf_fusion_match(brain, &ct), 0);    /* modality MR by default */
    /* file criteria are used as written, and the modality list is the rule's */
    rp_conf_series_attrs spine_ct = {"ct", "Spine bone", 150, -1, -1};
    rp_conf_series_attrs spine_slow = {"CT", "spine", 250, -1, -1};
    assert_int_equal(rp_conf_fusion_match(mine, &spine_ct), 1u);
    assert_int_equal(rp_conf_fusion_match(mine, &spine_slow), 0);
    rp_conf_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_section),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_validate_normalize),
        cmocka_unit_test(test_matcher),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
