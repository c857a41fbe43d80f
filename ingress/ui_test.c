/* ui_test: the paths the page answers, the bytes embedded (equal to the
 * files in ingress/ui/), content types, the CSP and the other headers, and
 * that the page needs nothing the CSP forbids (no inline script or style). */
#include "ui.h"

#include "tests/support/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *s_header(const ui_asset_t *a, const char *name)
{
    for (size_t i = 0; i < a->nheaders; i++)
        if (!strcmp(a->headers[i].name, name))
            return a->headers[i].value;
    return NULL;
}

/* The source file's bytes (UI_SRC_DIR is the source tree's ingress/ui). */
static char *s_slurp(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", UI_SRC_DIR, name);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    CHECK(fseek(f, 0, SEEK_END) == 0);
    long n = ftell(f);
    CHECK(n >= 0 && n < (1L << 24));
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    CHECK(buf != NULL);
    CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void s_check_served(const char *path, const char *file, const char *type)
{
    ui_asset_t a;
    memset(&a, 0, sizeof a);
    CHECK(ui_find(path, &a) == 0);
    CHECK(!strcmp(a.content_type, type));
    size_t len;
    char *src = s_slurp(file, &len);
    CHECK(a.len == len && len > 0);
    CHECK(memcmp(a.data, src, len) == 0);
    CHECK(a.data[len] == '\0');
    free(src);
    const char *csp = s_header(&a, "content-security-policy:");
    CHECK(csp != NULL && !strcmp(csp, UI_CSP));
    CHECK(strstr(csp, "default-src 'none'") && strstr(csp, "script-src 'self'"));
    CHECK(strstr(csp, "connect-src 'self'") && strstr(csp, "frame-ancestors 'none'"));
    CHECK(!strstr(csp, "unsafe") && !strstr(csp, "*") && !strstr(csp, "http"));
    CHECK(s_header(&a, "x-content-type-options:") && !strcmp(s_header(&a, "x-content-type-options:"), "nosniff"));
    CHECK(s_header(&a, "x-frame-options:") && !strcmp(s_header(&a, "x-frame-options:"), "DENY"));
    CHECK(s_header(&a, "cache-control:") != NULL);
}

/* The CSP allows no inline code: the page must have none, or it breaks. */
static void s_check_no_inline(void)
{
    size_t len;
    char *html = s_slurp("index.html", &len);
    for (char *p = html; (p = strstr(p, "<script")) != NULL; p++) {
        char *end = strchr(p, '>');
        CHECK(end != NULL);
        *end = '\0';
        CHECK(strstr(p, " src=\"") != NULL); /* an external script, never inline */
        *end = '>';
    }
    CHECK(strstr(html, "<style") == NULL);
    CHECK(strstr(html, " style=") == NULL);
    CHECK(strstr(html, " onclick=") == NULL && strstr(html, " onload=") == NULL);
    CHECK(strstr(html, "javascript:") == NULL);
    CHECK(strstr(html, "http://") == NULL && strstr(html, "https://") == NULL); /* no CDN */
    free(html);
}

int main(void)
{
    s_check_served("/ui", "index.html", "text/html; charset=utf-8");
    s_check_served("/ui/", "index.html", "text/html; charset=utf-8");
    s_check_served("/ui/index.html", "index.html", "text/html; charset=utf-8");
    s_check_served("/ui/app.js", "app.js", "text/javascript; charset=utf-8");
    s_check_served("/ui/app.css", "app.css", "text/css; charset=utf-8");
    s_check_served("/ui/runs.js", "runs.js", "text/javascript; charset=utf-8");
    s_check_served("/ui/view.js", "view.js", "text/javascript; charset=utf-8");

    /* Nothing else: no traversal, no prefix tricks, no directories. */
    const char *refused[] = {"/",          "/uix",          "/ui//app.js", "/ui/../ui/app.js",
                             "/ui/nope.js", "/ui/app.js/",  "/UI",         "/ui/app.js?x=1",
                             "/ui/./app.js", "/v1/agents",  "",            "/ui/app"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        ui_asset_t a = {.len = 7};
        CHECK(ui_find(refused[i], &a) == -1);
        CHECK(a.len == 7); /* untouched */
    }

    CHECK(!strcmp(ui_content_type("a.png"), "image/png"));
    CHECK(!strcmp(ui_content_type("a.svg"), "image/svg+xml"));
    CHECK(!strcmp(ui_content_type("js"), "application/octet-stream"));
    CHECK(!strcmp(ui_content_type("a.bin"), "application/octet-stream"));

    s_check_no_inline();
    printf("ui_test: ok (%zu files)\n", ui_files_count);
    return 0;
}
