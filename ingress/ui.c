/* ui: serves the browser page from memory.
 *
 * The files under ingress/ui/ are turned into byte arrays at build time
 * (embed.cmake → ui_assets.c), so the ingress binary is the whole page: no
 * install step, no path on disk an attacker could steer, no CDN. A request
 * path matches a file only by exact name against that fixed table, which
 * makes traversal impossible by construction rather than by filtering.
 *
 * Every file carries the same headers: a Content-Security-Policy that
 * allows scripts, styles and connections to the edge's own origin only and
 * nothing inline (the page has no inline script or style: keep it so),
 * nosniff, no framing, no referrer, and no-cache so that a new ingress
 * build is picked up on reload. The Origin policy of SPEC §3 is the edge's
 * and applies to the API the page calls; the page itself is same-origin. */
#include "ui.h"

#include <string.h>

static const ui_header_t s_headers[] = {
    {"content-security-policy:", UI_CSP},
    {"x-content-type-options:", "nosniff"},
    {"x-frame-options:", "DENY"},
    {"referrer-policy:", "no-referrer"},
    {"cross-origin-opener-policy:", "same-origin"},
    {"cross-origin-resource-policy:", "same-origin"},
    {"cache-control:", "no-cache"},
};

const char *ui_content_type(const char *name)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"}, {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},   {".png", "image/png"},
        {".svg", "image/svg+xml"},
    };
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        size_t el = strlen(types[i].ext);
        if (n > el && !strcmp(name + n - el, types[i].ext))
            return types[i].type;
    }
    return "application/octet-stream";
}

int ui_find(const char *path, ui_asset_t *out)
{
    const char *name;
    if (!strcmp(path, "/ui") || !strcmp(path, "/ui/"))
        name = "index.html";
    else if (!strncmp(path, "/ui/", 4))
        name = path + 4;
    else
        return -1;
    for (size_t i = 0; i < ui_files_count; i++) {
        if (strcmp(ui_files[i].name, name) != 0)
            continue;
        out->data = ui_files[i].data;
        out->len = ui_files[i].len;
        out->content_type = ui_content_type(name);
        out->headers = s_headers;
        out->nheaders = sizeof s_headers / sizeof *s_headers;
        return 0;
    }
    return -1;
}
