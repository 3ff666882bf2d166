/* conf/conf_rule — which [rule] a series gets (see conf.h): decided on the node from what the
 * index keeps of the series, so that the job's resources are known before it is submitted. */
#include "conf/conf.h"

#include <ctype.h>
#include <fnmatch.h>
#include <string.h>
#include <strings.h>

/* 1 when `value` is a word of the space/comma separated `list`, or the list is empty. */
static int list_has(const char *list, const char *value)
{
    int any = 0;
    for (const char *p = list; *p;) {
        while (*p && (isspace((unsigned char)*p) || *p == ','))
            p++;
        const char *b = p;
        while (*p && !isspace((unsigned char)*p) && *p != ',')
            p++;
        if (p > b) {
            any = 1;
            size_t n = (size_t)(p - b);
            if (value && strlen(value) == n && strncasecmp(b, value, n) == 0)
                return 1;
        }
    }
    return !any;
}

static int rule_matches(const rp_conf_rule *r, const char *modality, const char *body_part,
                        const char *description, double thickness)
{
    if (!list_has(r->modality, modality) || !list_has(r->body_part, body_part))
        return 0;
    if (r->series_description[0] &&
        fnmatch(r->series_description, description ? description : "", FNM_CASEFOLD) != 0)
        return 0;
    if (r->slice_thickness_min >= 0 && !(thickness >= r->slice_thickness_min))
        return 0;
    if (r->slice_thickness_max >= 0 && !(thickness > 0 && thickness <= r->slice_thickness_max))
        return 0;
    return 1;
}

const rp_conf_rule *rp_conf_match_rule(const rp_conf *c, const char *modality,
                                       const char *body_part, const char *description,
                                       double slice_thickness)
{
    const rp_conf_rule *best = NULL;
    for (size_t i = 0; c && i < c->n_rules; i++) {
        const rp_conf_rule *r = &c->rules[i];
        if (!rule_matches(r, modality, body_part, description, slice_thickness))
            continue;
        if (!best || r->priority > best->priority ||
            (r->priority == best->priority && best->builtin && !r->builtin))
            best = r;
    }
    return best;
}
