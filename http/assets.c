/*
 * http/assets — the console's static files (the folder http/assets), compiled into the binary by
 * embed_assets.cmake. Looked up by exact name only: a request can never reach the disk.
 */
#include "http/http_internal.h"

#include <string.h>

#include "common/common.h"

struct rp_http_asset_entry {
    const char *name;
    const unsigned char *data;
    size_t len;
};
extern const struct rp_http_asset_entry rp_http_assets[]; /* assets_data.c (generated) */

static const char *type_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return "application/octet-stream";
    if (strcmp(dot, ".css") == 0)
        return "text/css; charset=utf-8";
    if (strcmp(dot, ".js") == 0)
        return "text/javascript; charset=utf-8";
    if (strcmp(dot, ".svg") == 0)
        return "image/svg+xml";
    if (strcmp(dot, ".png") == 0)
        return "image/png";
    return "application/octet-stream";
}

int rp_http_asset(const char *name, const char **data, size_t *len, const char **type)
{
    for (const struct rp_http_asset_entry *a = rp_http_assets; a->name; a++) {
        if (strcmp(a->name, name) == 0) {
            *data = (const char *)a->data;
            *len = a->len;
            *type = type_of(name);
            return 0;
        }
    }
    return RP_ENOENT;
}
