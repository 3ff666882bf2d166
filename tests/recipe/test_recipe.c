/* tests/recipe/test_recipe.c — recipe parser, registry, hash, rule matching, runner QC. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "common/common.h"
#include "conf/conf.h"
#include "pipeline/recipe/recipe.h"

static void expect_ok(const char *text, size_t nsteps)
{
    char err[512] = "";
    rp_recipe *r = NULL;
    int rc = rp_recipe_parse(text, &r, err, sizeof err);
    if (rc)
        fail_msg("'%s' should parse: %s", text, err);
    assert_int_equal(rp_recipe_nsteps(r), nsteps);
    rp_recipe_free(r);
}

static void expect_err(const char *text, const char *needle)
{
    char err[512] = "";
    rp_recipe *r = (rp_recipe *)1;
    int rc = rp_recipe_parse(text, &r, err, sizeof err);
    assert_int_equal(rc, RP_ECONF);
    assert_null(r);
    if (!strstr(err, needle))
        fail_msg("error for '%s' is '%s', expected it to mention '%s'", text, err, needle);
    assert_int_equal(rp_recipe_check(text, err, sizeof err), RP_ECONF);
}

static void test_good_recipes(void **state)
{
    (void)state;
    expect_ok(
        "hu resample(1,1,1,bspline3) bodymask lungmask metal clip(-1200,600) normalize(minmax)", 7);
    expect_ok("hu clip(-1200,600) resample(1,1,1,bspline3) window(lung) lungmask normalize(minmax)",
              6);
    expect_ok("  hu   clip( -1200 , 600 )\tresample (1.5)  ", 3);
    expect_ok("crop(background)", 1);
    expect_ok("multiwindow(lung,mediastinal,bone)", 1);
    expect_ok("multiwindow(lung, -600/1500, 40/80)", 1);
    expect_ok("normalize(zscore_in(body)) normalize(zscore) normalize(percentile(0.5, 99.5))", 3);
    expect_ok(
        "reorient(LPS) reorient(RAS) crop(foreground,4) crop(mask,lung,10) crop_or_pad(128,128,64)",
        5);
    expect_ok(
        "denoise(gaussian) denoise(gaussian,1.5) denoise(median,2) denoise(edge-preserving,10,30)",
        4);
    expect_ok("patches(96,48) patches(64x64x32,inside(lung),100,files)", 2);
    expect_ok("resample(0.8,0.8,2.5,linear,aniso) resample(2,nearest)", 2);
    expect_ok("window(40,80) clip(bone) clip(soft_tissue) clip(full_body) clip(lung)", 5);
    expect_ok("hu()", 1);
}

static void test_unknown_and_bad(void **state)
{
    (void)state;
    expect_err("hu foo clip(0,1)", "unknown step 'foo' (step 2)");
    expect_err("hu resample", "give 1 or 3 spacings");
    expect_err("clip(1)", "unknown range '1'");
    expect_err("clip(600,-1200)", "must be below");
    expect_err("clip(a,b)", "not a number");
    expect_err("clip(1,2,3)", "expected 1 or 2 arguments");
    expect_err("window(liver)", "unknown window 'liver'");
    expect_err("window(40,-1)", "width must be > 0");
    expect_err("resample(1,1,1,cubicc)", "neither a spacing");
    expect_err("resample(1,1)", "give 1 or 3 spacings");
    expect_err("resample(0,1,1)", "out of range");
    expect_err("normalize(percentile(99,1))", "0 <= lo < hi <= 100");
    expect_err("normalize(percentile(1))", "percentile needs two numbers");
    expect_err("normalize(zscore(3))", "takes no arguments");
    expect_err("normalize(minmax", "unbalanced");
    expect_err("clip(-1200,600))", "unbalanced");
    expect_err("clip(-1200,,600)", "malformed");
    expect_err("lungmask(-500,x)", "'x' is not a number");
    expect_err("crop(middle)", "expected foreground, mask or background");
    expect_err("denoise(median,9)", "median radius");
    expect_err("reorient(XYZ)", "RAS or LPS");
    expect_err("patches(96)", "expected 2 to 4");
    expect_err("", "no steps");
    expect_err("   ", "no steps");
    expect_err("multiwindow(lung)", "got 1 windows");
    /* reasons carry the usage */
    char err[512];
    rp_recipe_check("clip(x,1)", err, sizeof err);
    assert_non_null(strstr(err, "usage: clip(lo,hi)"));
    assert_non_null(strstr(err, "step 1 'clip(x,1)'"));
}

static void test_arg_call(void **state)
{
    (void)state;
    char name[64];
    rp_step_args a;
    assert_int_equal(rp_arg_call("normalize(percentile(0.5,99.5))", name, sizeof name, &a), 0);
    assert_string_equal(name, "normalize");
    assert_int_equal(a.n, 1);
    assert_string_equal(a.arg[0], "percentile(0.5,99.5)");
    assert_int_equal(rp_arg_call("f( a , g(b, h(c,d)) ,e )", name, sizeof name, &a), 0);
    assert_int_equal(a.n, 3);
    assert_string_equal(a.arg[1], "g(b, h(c,d))");
    assert_string_equal(a.arg[2], "e");
    assert_int_equal(rp_arg_call("plain", name, sizeof name, &a), 0);
    assert_int_equal(a.n, 0);
    assert_int_not_equal(rp_arg_call("f(a))", name, sizeof name, &a), 0);
    assert_int_not_equal(rp_arg_call("f((a)", name, sizeof name, &a), 0);
    assert_int_not_equal(rp_arg_call("f(a) x", name, sizeof name, &a), 0);
    assert_int_not_equal(rp_arg_call("f(a,)", name, sizeof name, &a), 0);
    double d;
    int i;
    assert_int_equal(rp_arg_double(" 1e3", &d), 0);
    assert_true(d == 1000);
    assert_int_not_equal(rp_arg_double("1.5mm", &d), 0);
    assert_int_not_equal(rp_arg_double("nan", &d), 0);
    assert_int_not_equal(rp_arg_int("1.5", &i), 0);
    assert_int_equal(rp_arg_int("-7", &i), 0);
    assert_int_equal(i, -7);
}

static void hash_of(const char *text, char hex[65])
{
    rp_recipe *r;
    char err[256];
    assert_int_equal(rp_recipe_parse(text, &r, err, sizeof err), 0);
    assert_int_equal(rp_recipe_hash(r, hex), 0);
    rp_recipe_free(r);
}

static void test_hash(void **state)
{
    (void)state;
    char a[65], b[65], c[65], d[65];
    hash_of("hu clip(-1200,600) resample(1,1,1,bspline3) window(lung)", a);
    hash_of("  hu  clip( -1200.0 , 6e2 )   resample(1, 1,1) window(-600,1500)", b);
    hash_of("hu clip(-1200,601) resample(1,1,1,bspline3) window(lung)", c);
    hash_of("hu resample(1,1,1,bspline3) clip(-1200,600) window(lung)", d);
    assert_int_equal(strlen(a), 64);
    assert_string_equal(a, b);     /* spelling, blanks, defaults do not matter */
    assert_string_not_equal(a, c); /* parameters do */
    assert_string_not_equal(a, d); /* order does */
    /* stable across runs: the description text is fixed, so is the hash */
    rp_recipe *r;
    char err[256];
    assert_int_equal(rp_recipe_parse("clip(lung)", &r, err, sizeof err), 0);
    cJSON *desc = rp_recipe_describe(r);
    char *txt = cJSON_PrintUnformatted(desc);
    assert_string_equal(txt, "[{\"step\":\"clip\",\"params\":{\"lo\":-1200,\"hi\":600,"
                             "\"units\":\"HU\",\"range\":\"lung\"}}]");
    char h[65];
    assert_int_equal(rp_recipe_hash(r, h), 0);
    /* sha256 of the text above, computed independently */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "printf '%%s' '%s' | sha256sum", txt);
    FILE *p = popen(cmd, "r");
    char line[128] = "";
    assert_non_null(fgets(line, sizeof line, p));
    pclose(p);
    assert_memory_equal(line, h, 64);
    free(txt);
    cJSON_Delete(desc);
    rp_recipe_free(r);
}

static void test_builtin_rules_parse(void **state)
{
    (void)state;
    /* the exact strings of the built-in rules (conf) */
    expect_ok(
        "hu resample(1,1,1,bspline3) bodymask lungmask metal clip(-1200,600) normalize(minmax)", 7);
    rp_conf c;
    assert_int_equal(rp_conf_defaults(&c), 0);
    char err[512];
    for (size_t i = 0; i < c.n_rules; i++)
        if (rp_recipe_check(c.rules[i].steps, err, sizeof err) != 0)
            fail_msg("built-in rule %s: %s", c.rules[i].name, err);
    assert_int_equal(rp_conf_validate_rules(&c, rp_recipe_check, err, sizeof err), 0);
    rp_conf_free(&c);
}

static void test_other_tables_linked(void **state)
{
    (void)state;
    /* the registry searches every area's table: a step of each resolves */
    assert_non_null(rp_recipe_find_step("clahe"));
    assert_non_null(rp_recipe_find_step("n4"));
    assert_non_null(rp_recipe_find_step("lungmask"));
    assert_non_null(rp_recipe_find_step("patches"));
    assert_null(rp_recipe_find_step("nope"));
}

static void test_rule_match(void **state)
{
    (void)state;
    rp_conf_rule rules[4];
    memset(rules, 0, sizeof rules);
    for (int i = 0; i < 4; i++) {
        rules[i].slice_thickness_min = rules[i].slice_thickness_max = -1;
        snprintf(rules[i].name, sizeof rules[i].name, "r%d", i);
    }
    strcpy(rules[0].modality, "CT");
    rules[0].builtin = 1;
    strcpy(rules[1].modality, "ct");
    strcpy(rules[1].body_part, "CHEST LUNG");
    strcpy(rules[1].series_description, "*lung*");
    rules[1].slice_thickness_max = 3;
    strcpy(rules[2].modality, "MR");
    strcpy(rules[3].modality, "CT"); /* user rule, same priority as the built-in */
    strcpy(rules[3].body_part, "HEAD");
    rp_conf c = {.rules = rules, .n_rules = 4};
    rp_series_info s = {0};
    strcpy(s.modality, "CT");
    strcpy(s.body_part, "chest");
    strcpy(s.series_description, "Thorax LUNG 1.25");
    s.slice_thickness = 1.25;
    assert_string_equal(rp_recipe_match(&c, &s)->name, "r1"); /* user beats built-in */
    s.slice_thickness = 5;
    assert_string_equal(rp_recipe_match(&c, &s)->name, "r0");
    strcpy(s.body_part, "HEAD");
    assert_string_equal(rp_recipe_match(&c, &s)->name, "r3");
    rules[0].priority = 10;
    assert_string_equal(rp_recipe_match(&c, &s)->name, "r0");
    strcpy(s.modality, "US");
    assert_null(rp_recipe_match(&c, &s));
}

static void test_runner_qc(void **state)
{
    (void)state;
    rp_volume *v = rp_volume_new(20, 20, 10, 1);
    for (size_t i = 0; i < rp_volume_nvox(v); i++)
        v->data[i] = (float)((int)(i % 3000) - 1500);
    rp_step_ctx ctx = {.vol = v, .qc = cJSON_CreateObject()};
    rp_recipe *r;
    char err[256];
    assert_int_equal(rp_recipe_parse("hu clip(lung) normalize(minmax)", &r, err, sizeof err), 0);
    assert_int_equal(rp_recipe_run(r, &ctx), 0);
    cJSON *steps = cJSON_GetObjectItem(ctx.qc, "steps");
    assert_int_equal(cJSON_GetArraySize(steps), 3);
    cJSON *clip = cJSON_GetArrayItem(steps, 1);
    assert_string_equal(cJSON_GetObjectItem(clip, "step")->valuestring, "clip");
    double before_min =
        cJSON_GetObjectItem(cJSON_GetObjectItem(clip, "before"), "min")->valuedouble;
    double after_min = cJSON_GetObjectItem(cJSON_GetObjectItem(clip, "after"), "min")->valuedouble;
    assert_true(before_min == -1500 && after_min == -1200);
    double f = cJSON_GetObjectItem(clip, "clipped_fraction")->valuedouble;
    size_t n = 0, out = 0;
    for (size_t i = 0; i < 4000; i++, n++) {
        int val = (int)(i % 3000) - 1500;
        out += val < -1200 || val > 600;
    }
    assert_true(fabs(f - (double)out / n) < 1e-9);
    cJSON *norm = cJSON_GetArrayItem(steps, 2);
    assert_true(cJSON_GetObjectItem(cJSON_GetObjectItem(norm, "after"), "max")->valuedouble == 1);
    assert_non_null(cJSON_GetObjectItem(ctx.qc, "masks"));
    rp_recipe_free(r);
    /* a failing step names itself */
    assert_int_equal(rp_recipe_parse("normalize(zscore_in(lung))", &r, err, sizeof err), 0);
    assert_int_not_equal(rp_recipe_run(r, &ctx), 0);
    assert_non_null(strstr(ctx.err, "step 1 'normalize(zscore_in(lung))' failed"));
    assert_non_null(strstr(ctx.err, "does not exist"));
    rp_recipe_free(r);
    cJSON_Delete(ctx.qc);
    rp_step_ctx_release(&ctx);
}

/* clip + normalize(minmax) takes the volume's extent from the runner's QC statistics when no
 * step changed the voxels since; a step that did (here a z-score, which shrinks the range to
 * about +-1.7) must make it measure again, with QC and without: the result spans [0, 1]
 * (a stale extent of -1500..1499 would give [0.41, 0.59]). */
static void test_fused_extent_fresh(void **state)
{
    (void)state;
    for (int with_qc = 0; with_qc <= 1; with_qc++) {
        rp_volume *v = rp_volume_new(20, 20, 10, 1);
        for (size_t i = 0; i < rp_volume_nvox(v); i++)
            v->data[i] = (float)((int)(i % 3000) - 1500);
        rp_step_ctx ctx = {.vol = v, .qc = with_qc ? cJSON_CreateObject() : NULL};
        rp_recipe *r;
        char err[256];
        assert_int_equal(
            rp_recipe_parse("hu normalize(zscore) clip(-10,10) normalize(minmax)", &r, err,
                            sizeof err),
            0);
        assert_int_equal(rp_recipe_run(r, &ctx), 0);
        float mn = INFINITY, mx = -INFINITY;
        for (size_t i = 0; i < rp_volume_nvox(ctx.vol); i++) {
            mn = fminf(mn, ctx.vol->data[i]);
            mx = fmaxf(mx, ctx.vol->data[i]);
        }
        assert_true(mn == 0.0f && mx == 1.0f);
        rp_recipe_free(r);
        cJSON_Delete(ctx.qc);
        rp_step_ctx_release(&ctx);
    }
}

/* Statistics measured while a volume was written reach the QC report as they are: the
 * caller's of the input (rp_step_ctx.stats_of) become step 1's "before", the resampler's its
 * "after", and they equal a separate pass over the same voxels. A step that measures nothing
 * (the z-score, in place, so vol->data stays the same pointer) must get a fresh pass: with
 * the runner not clearing stats_of, its "after" would repeat the input's (mean 0.5, not 0). */
static void test_step_stats_handover(void **state)
{
    (void)state;
    rp_volume *v = rp_volume_new(30, 20, 12, 1);
    for (size_t i = 0; i < rp_volume_nvox(v); i++)
        v->data[i] = (float)((int)(i * 7 % 1000) - 499); /* integers: exact sums */
    for (int a = 0; a < 3; a++)
        v->affine[a][a] = a == 2 ? 2.5 : 0.7;
    rp_volume_update_spacing(v);
    cJSON *want_before = rp_qc_stats(v);
    rp_step_ctx ctx = {.vol = v, .qc = cJSON_CreateObject()};
    rp_vstats_init(&ctx.stats);
    rp_vstats_add(&ctx.stats, v->data, rp_volume_nvox(v));
    ctx.stats_of = v->data;
    rp_recipe *r;
    char err[256];
    assert_int_equal(rp_recipe_parse("resample(1,1,1,bspline3)", &r, err, sizeof err), 0);
    assert_int_equal(rp_recipe_run(r, &ctx), 0);
    cJSON *step = cJSON_GetArrayItem(cJSON_GetObjectItem(ctx.qc, "steps"), 0);
    cJSON *want_after = rp_qc_stats(ctx.vol);
    assert_true(cJSON_Compare(cJSON_GetObjectItem(step, "before"), want_before, 1));
    assert_true(cJSON_Compare(cJSON_GetObjectItem(step, "after"), want_after, 1));
    rp_recipe_free(r);
    cJSON_Delete(want_after);
    cJSON_Delete(ctx.qc);
    /* in place, measuring nothing */
    ctx.qc = cJSON_CreateObject();
    for (size_t i = 0; i < rp_volume_nvox(ctx.vol); i++)
        ctx.vol->data[i] = (float)(i % 2); /* mean 0.5 */
    rp_vstats_init(&ctx.stats);
    rp_vstats_add(&ctx.stats, ctx.vol->data, rp_volume_nvox(ctx.vol));
    ctx.stats_of = ctx.vol->data;
    const float *before_ptr = ctx.vol->data;
    assert_int_equal(rp_recipe_parse("normalize(zscore)", &r, err, sizeof err), 0);
    assert_int_equal(rp_recipe_run(r, &ctx), 0);
    assert_ptr_equal(ctx.vol->data, before_ptr);
    step = cJSON_GetArrayItem(cJSON_GetObjectItem(ctx.qc, "steps"), 0);
    want_after = rp_qc_stats(ctx.vol);
    assert_true(cJSON_Compare(cJSON_GetObjectItem(step, "after"), want_after, 1));
    assert_true(fabs(cJSON_GetObjectItem(cJSON_GetObjectItem(step, "after"), "mean")->valuedouble) <
                1e-6);
    rp_recipe_free(r);
    cJSON_Delete(want_after);
    cJSON_Delete(want_before);
    cJSON_Delete(ctx.qc);
    rp_step_ctx_release(&ctx);
}

/* Every step on degenerate volumes (one voxel, one line, constant, NaN): an error with a
 * reason is fine, a crash or a hang is not. */
static void test_degenerate_inputs(void **state)
{
    (void)state;
    static const char *recipes[] = {
        "hu resample(1,1,1,bspline3) bodymask lungmask metal clip(-1200,600) normalize(minmax)",
        "window(lung)", "multiwindow(lung,bone)", "normalize(zscore)",
        "normalize(percentile(1,99))", "resample(0.5,0.5,0.5,linear,aniso)", "resample(3,nearest)",
        "reorient(LPS)", "crop(foreground)", "crop(background)", "crop_or_pad(3,3,3)",
        "denoise(gaussian,2)", "denoise(median,2)", "denoise(edge-preserving)",
        "bodymask crop(mask,body) patches(2,1)", "lungmask patches(4,inside(lung),3)",
    };
    const int dims[][3] = {{1, 1, 1}, {5, 1, 1}, {1, 1, 6}, {4, 3, 2}};
    for (size_t r = 0; r < sizeof recipes / sizeof recipes[0]; r++)
        for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++)
            for (int fill = 0; fill < 3; fill++) {
                rp_volume *v = rp_volume_new(dims[d][0], dims[d][1], dims[d][2], 1);
                for (size_t i = 0; i < rp_volume_nvox(v); i++)
                    v->data[i] = fill == 0 ? -1000.0f : fill == 1 ? (float)(i * 37 % 5000) - 1000
                                                                  : NAN;
                rp_step_ctx ctx = {.vol = v, .qc = cJSON_CreateObject()};
                rp_recipe *rec;
                char err[256];
                assert_int_equal(rp_recipe_parse(recipes[r], &rec, err, sizeof err), 0);
                int rc = rp_recipe_run(rec, &ctx);
                if (rc)
                    assert_true(ctx.err[0] != '\0');
                else
                    assert_non_null(ctx.vol);
                rp_recipe_free(rec);
                cJSON_Delete(ctx.qc);
                rp_step_ctx_release(&ctx);
            }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_recipes),
        cmocka_unit_test(test_unknown_and_bad),
        cmocka_unit_test(test_arg_call),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_builtin_rules_parse),
        cmocka_unit_test(test_other_tables_linked),
        cmocka_unit_test(test_rule_match),
        cmocka_unit_test(test_degenerate_inputs),
        cmocka_unit_test(test_runner_qc),
        cmocka_unit_test(test_fused_extent_fresh),
        cmocka_unit_test(test_step_stats_handover),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
