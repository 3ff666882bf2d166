/* tests/recipe/test_steps_mr_norm.c — the whitestripe step on phantoms with known tissue
 * classes: an explicit contrast, and the contrast detected from the series header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/common.h"
#include "pipeline/recipe/recipe.h"
#include "tests/mr/mr_phantom.h"

static const double T1[6] = {0, 500, 100, 300, 700, 1000};
static const double T2[6] = {0, 600, 100, 2000, 1100, 800};

static rp_mask *head_mask(const ph_phantom *ph)
{
    rp_mask *m = rp_mask_like(ph->clean, "head");
    size_t n = rp_volume_nvox(ph->clean);
    for (size_t i = 0; i < n; i++)
        m->data[i] = ph->label[i] >= PH_SCALP;
    return m;
}

static void test_whitestripe_step(void **state)
{
    (void)state;
    ph_phantom ph;
    assert_int_equal(ph_make(&ph, 64, 64, 48, 3.0, T1, 25, 0.0, 9), 0);
    rp_step_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.vol = rp_volume_clone(ph.clean);
    rp_step_ctx_add_mask(&ctx, head_mask(&ph));
    const rp_step_def *d = rp_recipe_find_step("whitestripe");
    assert_non_null(d);
    rp_step_args a = {.n = 1};
    strcpy(a.arg[0], "t1");
    void *p = NULL;
    char err[256];
    assert_int_equal(d->parse(&a, &p, err, sizeof err), 0);
    cJSON *qc = cJSON_CreateObject();
    ctx.step_qc = qc;
    assert_int_equal(d->run(&ctx, p), 0);
    size_t n = rp_volume_nvox(ctx.vol);
    double wm = ph_mean(ctx.vol->data, ph.label, n, PH_WM);
    double gm = ph_mean(ctx.vol->data, ph.label, n, PH_GM);
    assert_true(fabs(wm) < 0.02 * fabs(gm - wm));
    assert_true(cJSON_GetObjectItem(qc, "mu")->valuedouble > 900);
    cJSON_Delete(qc);
    free(p);
    rp_step_ctx_release(&ctx);
    ph_free(&ph);

    /* no argument on a T2 series: the header says T2, so the largest mode is WM */
    double keep = ph_wm_radius;
    ph_wm_radius = 0.72;
    assert_int_equal(ph_make(&ph, 64, 64, 48, 3.0, T2, 25, 0.0, 10), 0);
    ph_wm_radius = keep;
    memset(&ctx, 0, sizeof ctx);
    ctx.vol = rp_volume_clone(ph.clean);
    rp_step_ctx_add_mask(&ctx, head_mask(&ph));
    rp_series_info t2info;
    memset(&t2info, 0, sizeof t2info);
    snprintf(t2info.series_description, sizeof t2info.series_description, "t2_tse_tra");
    t2info.repetition_time = 6000;
    t2info.echo_time = 95;
    t2info.inversion_time = -1;
    ctx.info = &t2info;
    rp_step_args none = {.n = 0};
    assert_int_equal(d->parse(&none, &p, err, sizeof err), 0);
    qc = cJSON_CreateObject();
    ctx.step_qc = qc;
    assert_int_equal(d->run(&ctx, p), 0);
    assert_string_equal(cJSON_GetObjectItem(qc, "contrast_detected")->valuestring, "T2");
    n = rp_volume_nvox(ctx.vol);
    wm = ph_mean(ctx.vol->data, ph.label, n, PH_WM);
    gm = ph_mean(ctx.vol->data, ph.label, n, PH_GM);
    printf("whitestripe auto on a T2 series: z(WM) %.3f z(GM) %.2f\n", wm, gm);
    assert_true(fabs(wm) < 0.02 * fabs(gm - wm));
    cJSON_Delete(qc);
    free(p);
    rp_step_ctx_release(&ctx);
    ph_free(&ph);
}

/* intensity transform of a training/held-back scan: a*v^g + b */

int main(void)
{
    rp_log_set_level(RP_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whitestripe_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
