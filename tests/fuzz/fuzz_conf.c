/* libFuzzer target: the configuration file parser (conf/), as `radprep config check`, the
 * CLI and radprepd run it on a file an operator (or anyone who can write it) gives them:
 * defaults, load, cross-field validation, every rule's and fusion's recipe through the
 * recipe parser, a copy, then the lookups and the [pull] date and window parsers.
 * Contract checked: any text gives 0 or RP_ECONF with a NUL-terminated reason, never a crash,
 * leak or undefined behaviour. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "conf/conf.h"
#include "fuzz_util.h"
#include "pipeline/recipe/recipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    int fd = rp_fuzz_memfile(data, size, path, sizeof path);
    if (fd < 0)
        return 0;
    rp_conf *c = calloc(1, sizeof *c);
    if (!c || rp_conf_defaults(c) != 0) {
        free(c);
        close(fd);
        return 0;
    }
    char err[1024];
    int rc = rp_conf_load(c, path, err, sizeof err);
    if (rc > 0 || !memchr(err, '\0', sizeof err))
        abort();
    if (rc == 0) {
        (void)rp_conf_validate(c, err, sizeof err);
        (void)rp_conf_validate_rules(c, rp_recipe_check, err, sizeof err);
        (void)rp_conf_validate_fusions(c, rp_recipe_check, err, sizeof err);
        for (size_t i = 0; i < c->n_pulls; i++) {
            char range[64];
            int s, e;
            (void)rp_conf_pull_date_range(c->pulls[i].study_date, 1.7e9, range, sizeof range);
            (void)rp_conf_pull_window("08:00-18:00", &s, &e);
            (void)rp_conf_pull_in_window(&c->pulls[i], 1.7e9, NULL);
            (void)rp_conf_pull_by_name(c, c->pulls[i].name);
        }
        for (size_t i = 0; i < c->n_peers; i++)
            (void)rp_conf_peer_by_name(c, c->peers[i].name);
        rp_conf_series_attrs a = {"MR", "t1_mprage", 2300, 2.3, 900};
        for (size_t i = 0; i < c->n_fusions; i++)
            (void)rp_conf_fusion_match(&c->fusions[i], &a);
        (void)rp_conf_completion_for(c, "CT");
        rp_conf *copy = calloc(1, sizeof *copy);
        if (copy && rp_conf_copy(copy, c) == 0)
            rp_conf_free(copy);
        free(copy);
    }
    rp_conf_free(c);
    free(c);
    close(fd);
    return 0;
}
