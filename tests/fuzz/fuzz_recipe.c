/* libFuzzer target: the recipe parser (pipeline/recipe), the text of a rule's `steps =` and
 * of `radprep process --steps`: parse, and for a recipe that parses its canonical
 * description and hash, and the checker used by the configuration.
 * Contract checked: any text gives 0 or RP_ECONF with a NUL-terminated reason, never a crash,
 * leak or undefined behaviour. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/common.h"
#include "pipeline/recipe/recipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char err[512];
    rp_recipe *r = NULL;
    int rc = rp_recipe_parse(text, &r, err, sizeof err);
    if (rc > 0 || (rc == 0 && !r) || !memchr(err, '\0', sizeof err))
        abort();
    if (rc == 0) {
        size_t n = rp_recipe_nsteps(r);
        for (size_t i = 0; i <= n; i++)
            (void)rp_recipe_step_name(r, i);
        char hex[65];
        (void)rp_recipe_hash(r, hex);
        cJSON *d = rp_recipe_describe(r);
        char *s = d ? cJSON_PrintUnformatted(d) : NULL;
        free(s);
        cJSON_Delete(d);
        rp_recipe_free(r);
    }
    (void)rp_recipe_check(text, err, sizeof err);
    free(text);
    return 0;
}
