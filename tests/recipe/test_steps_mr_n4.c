/* tests/recipe/test_steps_mr_n4.c — the MR steps' parsing and running (foreground, n4 with
 * its field written through the context's writer, fuse refused outside a study) on the
 * brain-like phantom of tests/mr/mr_phantom.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <omp.h>

#include "common/common.h"
#include "pipeline/mr/mr.h"
#include "pipeline/recipe/recipe.h"
#include "tests/mr/mr_phantom.h"
#include "tests/recipe/step_writers_test.h"

static const double T1[6] = {0, 500, 100, 300, 700, 1000};

static const rp_step_def *find_step(const char *name)
{
    return rp_recipe_find_step(name);
}

static int parse(const char *name, const char *const *args, int n, void **params, char *err)
{
    rp_step_args a;
    memset(&a, 0, sizeof a);
    a.n = n;
    for (int i = 0; i < n; i++)
        snprintf(a.arg[i], sizeof a.arg[i], "%s", args[i]);
    return find_step(name)->parse(&a, params, err, 256);
}

static void test_steps_parse(void **state)
{
    (void)state;
    char err[256];
    void *p = NULL;
    for (const char *const *nm =
             (const char *const[]){"headmask", "foreground", "n4", "whitestripe", NULL};
         *nm; nm++) {
        assert_non_null(find_step(*nm));
        assert_int_equal(parse(*nm, NULL, 0, &p, err), 0);
        cJSON *o = cJSON_CreateObject();
        find_step(*nm)->describe(p, o);
        assert_true(cJSON_GetArraySize(o) > 0);
        cJSON_Delete(o);
        free(p);
    }
    /* n4 defaults are ITK's usual usage */
    assert_int_equal(parse("n4", NULL, 0, &p, err), 0);
    cJSON *o = cJSON_CreateObject();
    find_step("n4")->describe(p, o);
    char *txt = cJSON_PrintUnformatted(o);
    assert_non_null(strstr(txt, "\"shrink\":4"));
    assert_non_null(strstr(txt, "\"iterations\":[50,50,50,50]"));
    assert_non_null(strstr(txt, "\"spline_mm\":200"));
    assert_non_null(strstr(txt, "\"convergence\":0.001"));
    free(txt);
    cJSON_Delete(o);
    free(p);
    const char *pos[] = {"2", "100x50x25", "3", "150", "0.0001"};
    assert_int_equal(parse("n4", pos, 5, &p, err), 0);
    const rp_n4_params *np = p;
    assert_int_equal(np->shrink, 2);
    assert_int_equal(np->levels, 3);
    assert_int_equal(np->iterations[2], 25);
    assert_true(np->spline_mm == 150);
    free(p);
    const char *one[] = {"4", "20", "2"};
    assert_int_equal(parse("n4", one, 3, &p, err), 0);
    np = p;
    assert_int_equal(np->levels, 2);
    assert_int_equal(np->iterations[1], 20);
    free(p);
    const char *bad1[] = {"0"}, *bad2[] = {"shrink=4", "bogus=1"}, *bad3[] = {"4", "50xx"};
    assert_int_equal(parse("n4", bad1, 1, &p, err), RP_EINVAL);
    assert_int_equal(parse("n4", bad2, 2, &p, err), RP_EINVAL);
    assert_non_null(strstr(err, "usage"));
    assert_int_equal(parse("n4", bad3, 2, &p, err), RP_EINVAL);
    const char *ws[] = {"t2", "0.1"}, *wsbad[] = {"t3"};
    assert_int_equal(parse("whitestripe", ws, 2, &p, err), 0);
    free(p);
    assert_int_equal(parse("whitestripe", wsbad, 1, &p, err), RP_EINVAL);
    assert_int_equal(parse("nyul", NULL, 0, &p, err), RP_EINVAL);
    const char *ny[] = {"model=/tmp/x.json"};
    assert_int_equal(parse("nyul", ny, 1, &p, err), 0);
    free(p);
    const char *fu[] = {"T1", "flair"}, *fubad[] = {"T7"};
    assert_int_equal(parse("fuse", fu, 2, &p, err), 0);
    free(p);
    assert_int_equal(parse("fuse", fubad, 1, &p, err), RP_EINVAL);
    assert_int_equal(parse("fuse", NULL, 0, &p, err), RP_EINVAL);
    const char *fg[] = {"close=4", "open=1"}, *fgbad[] = {"radius=3"};
    assert_int_equal(parse("foreground", fg, 2, &p, err), 0);
    free(p);
    assert_int_equal(parse("headmask", fgbad, 1, &p, err), RP_EINVAL);
}

/* foreground + n4 through the step table, as the built-in MR rule runs them */
static void test_steps_run(void **state)
{
    (void)state;
    ph_phantom ph;
    assert_int_equal(ph_make(&ph, 96, 96, 64, 2.0, T1, 25, 0.3, 11), 0);
    rp_step_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.vol = rp_volume_clone(ph.biased);
    cJSON *qc = cJSON_CreateObject();
    char err[256];
    void *p = NULL;
    assert_int_equal(parse("foreground", NULL, 0, &p, err), 0);
    ctx.step_qc = cJSON_AddObjectToObject(qc, "foreground");
    assert_int_equal(find_step("foreground")->run(&ctx, p), 0);
    free(p);
    assert_non_null(rp_step_ctx_mask(&ctx, "foreground"));
    char dir[] = "/tmp/rp_test_n4_XXXXXX";
    assert_non_null(mkdtemp(dir));
    ctx.out_dir = dir;
    ctx.out_stem = "t1";
    ctx.writers = &test_step_writers;
    ctx.extra_outputs = cJSON_AddArrayToObject(qc, "extra_outputs");
    const char *wf[] = {"field=yes"};
    assert_int_equal(parse("n4", wf, 1, &p, err), 0);
    ctx.step_qc = cJSON_AddObjectToObject(qc, "n4");
    assert_int_equal(find_step("n4")->run(&ctx, p), 0);
    free(p);
    /* the multiplicative field went out as NIfTI and is listed */
    char path[256];
    snprintf(path, sizeof path, "%s/t1_n4field.nii.gz", dir);
    assert_int_equal(access(path, R_OK), 0);
    cJSON *eo = cJSON_GetArrayItem(ctx.extra_outputs, 0);
    assert_string_equal(cJSON_GetObjectItem(eo, "kind")->valuestring, "n4_bias_field");
    unlink(path);
    rmdir(dir);
    cJSON *ch = cJSON_GetObjectItem(cJSON_GetObjectItem(qc, "n4"), "channels");
    assert_int_equal(cJSON_GetArraySize(ch), 1);
    assert_true(cJSON_GetObjectItem(cJSON_GetArrayItem(ch, 0), "field_max")->valuedouble > 1.1);
    size_t n = rp_volume_nvox(ctx.vol);
    double before = ph_cv(ph.biased->data, ph.label, n, PH_WM);
    double after = ph_cv(ctx.vol->data, ph.label, n, PH_WM);
    printf("step n4: WM CV %.4f -> %.4f\n", before, after);
    assert_true(after < 0.7 * before);
    /* fuse in a single-series context is refused with a reason */
    const char *fu[] = {"T1", "T2"};
    assert_int_equal(parse("fuse", fu, 2, &p, err), 0);
    assert_int_equal(find_step("fuse")->run(&ctx, p), RP_EUNSUPPORTED);
    assert_non_null(strstr(ctx.err, "study"));
    free(p);
    rp_step_ctx_release(&ctx);
    cJSON_Delete(qc);
    ph_free(&ph);
}

/* Same bytes whatever the number of threads (processing is a pure function). */

int main(void)
{
    rp_log_set_level(RP_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_steps_parse),
        cmocka_unit_test(test_steps_run),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
