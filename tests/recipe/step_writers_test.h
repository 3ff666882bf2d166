/* tests/recipe/step_writers_test.h — stand-ins for pipeline/write's file writers
 * (rp_step_writers, pipeline/step/step.h). Recipe tests link rp_recipe only, so a step that
 * writes a file (png, n4's field, the QC montage) writes the raw samples here: the test still
 * sees the path, the listing and a file of the expected size; the PNG and NIfTI encodings
 * are tested in tests/write. */
#ifndef RP_TESTS_RECIPE_STEP_WRITERS_TEST_H
#define RP_TESTS_RECIPE_STEP_WRITERS_TEST_H

#include <stdio.h>

#include "common/common.h"
#include "pipeline/step/step.h"

static int test_write_raw(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return RP_EIO;
    size_t w = fwrite(p, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : RP_EIO;
}

static int test_write_png(const char *path, const void *pixels, int w, int h, int channels,
                          int bit_depth)
{
    if (!path || !pixels || w < 1 || h < 1 || (bit_depth != 8 && bit_depth != 16))
        return RP_EINVAL;
    return test_write_raw(path, pixels, (size_t)w * h * channels * (bit_depth / 8));
}

static int test_write_nifti(const char *path, const rp_volume *v, const char *descrip, char *err,
                            size_t errlen)
{
    (void)descrip;
    int rc = test_write_raw(path, v->data, rp_volume_nvox(v) * (size_t)v->dim[3] * sizeof(float));
    if (rc && err)
        snprintf(err, errlen, "cannot write %s", path);
    return rc;
}

static const rp_step_writers test_step_writers = {.png = test_write_png, .nifti = test_write_nifti};

#endif
