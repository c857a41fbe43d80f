/* sse_test: every event-stream rule the parser follows, each stream fed
 * whole, one byte at a time, split at every point, and (short streams) split
 * at every pair of points: the events and the result must not change.
 *
 * Events are recorded as type US data US id RS (US = \x1f, RS = \x1e) so a
 * whole run compares as one string. */
#include "sse.h"

#include "common/sbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define US "\x1f"
#define RS "\x1e"
#define EV(t, d, i) t US d US i RS

static int failures;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
            failures++;                                                        \
        }                                                                      \
    } while (0)

typedef struct {
    sbuf_t log;
    int stop_after; /* stop after this many events; 0: never */
    int count;
} rec_t;

static int s_record(void *arg, const sse_event_t *ev)
{
    rec_t *r = arg;
    /* Strings are NUL-terminated at their length. */
    if (ev->type[ev->type_len] != '\0' || ev->data[ev->data_len] != '\0' ||
        ev->id[ev->id_len] != '\0')
        sbuf_cats(&r->log, "<not NUL-terminated>");
    sbuf_cat(&r->log, ev->type, ev->type_len);
    sbuf_cats(&r->log, US);
    sbuf_cat(&r->log, ev->data, ev->data_len);
    sbuf_cats(&r->log, US);
    sbuf_cat(&r->log, ev->id, ev->id_len);
    sbuf_cats(&r->log, RS);
    r->count++;
    return r->stop_after && r->count >= r->stop_after;
}

/* Feeds in pieces ending at cuts[0..ncuts) then the rest. */
static sse_err_t s_run(const char *in, size_t len, size_t max, int flags, const size_t *cuts,
                       size_t ncuts, int stop_after, sbuf_t *out, int *pending)
{
    rec_t r = {.stop_after = stop_after};
    sbuf_init(&r.log, 1 << 20);
    sse_t *p = sse_new(max, flags, s_record, &r);
    size_t at = 0;
    sse_err_t rc = SSE_OK;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        rc = sse_feed(p, in + at, to - at);
        at = to;
    }
    sse_err_t fin = sse_finish(p, pending);
    if (fin != rc)
        sbuf_cats(&r.log, "<finish disagrees>");
    sse_destroy(&p);
    if (p)
        sbuf_cats(&r.log, "<destroy did not clear>");
    sbuf_reset(out);
    sbuf_cat(out, r.log.data ? r.log.data : "", r.log.len);
    sbuf_free(&r.log);
    return rc;
}

typedef struct {
    const char *name;
    const char *in;
    size_t len; /* 0: strlen(in) */
    size_t max;
    int flags;
    const char *want;
    sse_err_t rc;
    int pending; /* -1: don't check */
} case_t;

static const case_t cases[] = {
    {"one event", "data: hello\n\n", 0, 64, 0, EV("message", "hello", ""), SSE_OK, 0},
    {"typed", "event: delta\ndata: {\"delta\":\"hel\"}\n\n", 0, 64, 0,
     EV("delta", "{\"delta\":\"hel\"}", ""), SSE_OK, 0},
    {"data joined", "data: a\ndata: b\ndata: c\n\n", 0, 64, 0, EV("message", "a\nb\nc", ""), SSE_OK, 0},
    {"crlf", "event: x\r\ndata: a\r\ndata: b\r\n\r\n", 0, 64, 0, EV("x", "a\nb", ""), SSE_OK, 0},
    {"cr", "data: a\r\rdata: b\r\r", 0, 64, 0, EV("message", "a", "") EV("message", "b", ""), SSE_OK, 0},
    {"mixed ends", "data: a\r\ndata: b\rdata: c\n\r\n", 0, 64, 0, EV("message", "a\nb\nc", ""), SSE_OK, 0},
    {"cr cr lf is two ends", "data: a\r\r\ndata: b\n\n", 0, 64, 0,
     EV("message", "a", "") EV("message", "b", ""), SSE_OK, 0},
    {"lf cr is two ends", "data: a\n\rdata: b\n\n", 0, 64, 0,
     EV("message", "a", "") EV("message", "b", ""), SSE_OK, 0},
    {"comments", ": ping\ndata: x\n:\n: more\n\n:tail\n", 0, 64, 0, EV("message", "x", ""), SSE_OK, 0},
    {"comment only block", ": keepalive\n\n", 0, 64, 0, "", SSE_OK, 0},
    {"no space", "data:x\nevent:t\n\n", 0, 64, 0, EV("t", "x", ""), SSE_OK, 0},
    {"one space stripped", "data:  x \n\n", 0, 64, 0, EV("message", " x ", ""), SSE_OK, 0},
    {"colon in value", "data: a: b:c\n\n", 0, 64, 0, EV("message", "a: b:c", ""), SSE_OK, 0},
    {"field without colon", "data\n\n", 0, 64, 0, EV("message", "", ""), SSE_OK, 0},
    {"empty data lines", "data:\ndata\n\n", 0, 64, 0, EV("message", "\n", ""), SSE_OK, 0},
    {"trailing empty data", "data: a\ndata:\n\n", 0, 64, 0, EV("message", "a\n", ""), SSE_OK, 0},
    {"event without data", "event: foo\n\ndata: b\n\n", 0, 64, 0, EV("message", "b", ""), SSE_OK, 0},
    {"typed empty option", "event: done\n\ndata: b\n\n\n", 0, 64, SSE_TYPED_EMPTY,
     EV("done", "", "") EV("message", "b", ""), SSE_OK, 0},
    {"typed empty needs a type", "id: 3\n\n", 0, 64, SSE_TYPED_EMPTY, "", SSE_OK, 0},
    {"type resets", "event: a\ndata: 1\n\ndata: 2\n\n", 0, 64, 0,
     EV("a", "1", "") EV("message", "2", ""), SSE_OK, 0},
    {"last event wins", "event: a\nevent: b\ndata: 1\n\n", 0, 64, 0, EV("b", "1", ""), SSE_OK, 0},
    {"empty event name", "event:\ndata: 1\n\n", 0, 64, 0, EV("message", "1", ""), SSE_OK, 0},
    {"id persists", "id: 7\ndata: a\n\ndata: b\n\n", 0, 64, 0, EV("message", "a", "7") EV("message", "b", "7"),
     SSE_OK, 0},
    {"id reset", "id: 1\ndata: a\n\nid\ndata: b\n\n", 0, 64, 0, EV("message", "a", "1") EV("message", "b", ""),
     SSE_OK, 0},
    {"id with NUL ignored", "id: 1\ndata: a\n\nid: x\0y\ndata: b\n\n", 32, 64, 0,
     EV("message", "a", "1") EV("message", "b", "1"), SSE_OK, 0},
    {"id of undispatched event kept", "id: 9\n\ndata: a\n\n", 0, 64, 0, EV("message", "a", "9"), SSE_OK, 0},
    {"unknown fields", "foo: bar\nDATA: no\ndata : no\ndata: a\n\n", 0, 64, 0, EV("message", "a", ""),
     SSE_OK, 0},
    {"retry", "retry: 1500\nretry: 15x\nretry:\ndata: a\n\n", 0, 64, 0, EV("message", "a", ""), SSE_OK, 0},
    {"bom", "\xEF\xBB\xBF" "data: a\n\n", 0, 64, 0, EV("message", "a", ""), SSE_OK, 0},
    {"bom alone on first line", "\xEF\xBB\xBF\ndata: a\n\n", 0, 64, 0, EV("message", "a", ""), SSE_OK, 0},
    {"only one bom", "\xEF\xBB\xBF\xEF\xBB\xBF" "data: a\n\ndata: b\n\n", 0, 64, 0, EV("message", "b", ""),
     SSE_OK, 0},
    {"bom later is data", "data: a\n\n\xEF\xBB\xBF" "data: b\n\n", 0, 64, 0, EV("message", "a", ""), SSE_OK, 0},
    {"partial bom is not a bom", "\xEF\xBB" "data: a\n\ndata: b\n\n", 0, 64, 0, EV("message", "b", ""),
     SSE_OK, 0},
    {"utf-8 passed as is", "data: h\xC3\xA9\xFF\n\n", 0, 64, 0, EV("message", "h\xC3\xA9\xFF", ""), SSE_OK, 0},
    {"incomplete event dropped", "data: a\n\ndata: b\n", 0, 64, 0, EV("message", "a", ""), SSE_OK, 1},
    {"incomplete line dropped", "data: a\n\ndata: b", 0, 64, 0, EV("message", "a", ""), SSE_OK, 1},
    {"only a comment pending is nothing", "data: a\n\n: x\n", 0, 64, 0, EV("message", "a", ""), SSE_OK, 0},
    {"blank lines", "\n\n\ndata: a\n\n\n\n", 0, 64, 0, EV("message", "a", ""), SSE_OK, 0},
    {"empty stream", "", 0, 64, 0, "", SSE_OK, 0},
    {"line at max", "data:12345\n\n", 0, 10, 0, EV("message", "12345", ""), SSE_OK, 0},
    {"line over max", "data: a\n\ndata:123456\n\ndata: c\n\n", 0, 10, 0, EV("message", "a", ""), SSE_E_LINE, -1},
    {"open line over max", "data: a\n\ndata:123456", 0, 10, 0, EV("message", "a", ""), SSE_E_LINE, -1},
    {"comment over max", ":1234567890\n\n", 0, 10, 0, "", SSE_E_LINE, -1},
    {"event at max", "data:12345\ndata:1234\n\n", 0, 10, 0, EV("message", "12345\n1234", ""), SSE_OK, 0},
    {"event over max", "data: a\n\ndata:12345\ndata:12345\n\n", 0, 10, 0, EV("message", "a", ""), SSE_E_EVENT,
     -1},
    {"empty data lines at max", "data\ndata\ndata\ndata\ndata\n\n", 0, 4, 0, EV("message", "\n\n\n\n", ""), SSE_OK, 0},
    {"empty data lines over max", "data\ndata\ndata\ndata\ndata\ndata\n\n", 0, 4, 0, "", SSE_E_EVENT, -1},
};

static int s_check_case(const case_t *c)
{
    size_t len = c->len ? c->len : strlen(c->in);
    sbuf_t out;
    sbuf_init(&out, 1 << 20);
    int pending = -1;
    int bad = 0;
    /* whole */
    sse_err_t rc = s_run(c->in, len, c->max, c->flags, NULL, 0, 0, &out, &pending);
    if (rc != c->rc || strcmp(sbuf_cstr(&out), c->want) != 0 ||
        (c->pending >= 0 && pending != c->pending)) {
        fprintf(stderr, "case '%s' whole: rc=%s pending=%d events differ\n", c->name, sse_strerror(rc),
                pending);
        bad = 1;
    }
    /* one byte at a time */
    size_t *cuts = malloc((len + 1) * sizeof *cuts);
    for (size_t i = 0; i < len; i++)
        cuts[i] = i;
    rc = s_run(c->in, len, c->max, c->flags, cuts, len, 0, &out, &pending);
    if (rc != c->rc || strcmp(sbuf_cstr(&out), c->want) != 0 ||
        (c->pending >= 0 && pending != c->pending)) {
        fprintf(stderr, "case '%s' byte by byte: rc=%s\n", c->name, sse_strerror(rc));
        bad = 1;
    }
    /* every split point, and every pair of them */
    for (size_t i = 0; i <= len && !bad; i++) {
        size_t two[2] = {i, 0};
        rc = s_run(c->in, len, c->max, c->flags, two, 1, 0, &out, &pending);
        if (rc != c->rc || strcmp(sbuf_cstr(&out), c->want) != 0 ||
            (c->pending >= 0 && pending != c->pending)) {
            fprintf(stderr, "case '%s' split at %zu: rc=%s\n", c->name, i, sse_strerror(rc));
            bad = 1;
        }
        for (size_t j = i; j <= len && !bad; j++) {
            two[1] = j;
            rc = s_run(c->in, len, c->max, c->flags, two, 2, 0, &out, &pending);
            if (rc != c->rc || strcmp(sbuf_cstr(&out), c->want) != 0) {
                fprintf(stderr, "case '%s' split at %zu,%zu: rc=%s\n", c->name, i, j, sse_strerror(rc));
                bad = 1;
            }
        }
    }
    free(cuts);
    sbuf_free(&out);
    return bad;
}

static void s_test_stop(void)
{
    const char *in = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    size_t len = strlen(in);
    sbuf_t out;
    sbuf_init(&out, 4096);
    for (size_t i = 0; i <= len; i++) {
        size_t cut[1] = {i};
        int pending;
        sse_err_t rc = s_run(in, len, 64, 0, cut, 1, 2, &out, &pending);
        CHECK(rc == SSE_STOPPED, "split %zu rc=%s", i, sse_strerror(rc));
        CHECK(strcmp(sbuf_cstr(&out), EV("message", "1", "") EV("message", "2", "")) == 0,
              "split %zu: events after stop", i);
    }
    sbuf_free(&out);
}

static void s_test_sticky_and_retry(void)
{
    rec_t r = {0};
    sbuf_init(&r.log, 4096);
    sse_t *p = sse_new(12, 0, s_record, &r);
    CHECK(sse_retry(p) == -1, "no retry yet");
    CHECK(sse_feed(p, "retry: 250\n", 11) == SSE_OK, "retry line");
    CHECK(sse_retry(p) == 250, "retry=%lld", sse_retry(p));
    CHECK(sse_feed(p, "retry: 9x\n", 10) == SSE_OK, "bad retry line");
    CHECK(sse_retry(p) == 250, "bad retry ignored");
    CHECK(sse_feed(p, "", 0) == SSE_OK, "empty feed");
    CHECK(sse_feed(p, "data: 123456789", 15) == SSE_E_LINE, "long line");
    CHECK(sse_feed(p, "\n\ndata: a\n\n", 11) == SSE_E_LINE, "error is sticky");
    CHECK(r.count == 0, "nothing dispatched after the error");
    CHECK(sse_finish(p, NULL) == SSE_E_LINE, "finish reports the error");
    sse_destroy(&p);
    sse_destroy(&p); /* NULL-safe */
    sse_destroy(NULL);
    sbuf_free(&r.log);
    CHECK(strcmp(sse_strerror(SSE_E_EVENT), "event too large") == 0, "strerror");
}

/* A CR closing one chunk and an LF opening the next are one line end: the
 * event is dispatched at the CR already, and the LF adds no blank line. */
static void s_test_cr_lf_across_feeds(void)
{
    rec_t r = {0};
    sbuf_init(&r.log, 4096);
    sse_t *p = sse_new(64, 0, s_record, &r);
    sse_feed(p, "data: a\r", 8);
    sse_feed(p, "\n", 1);
    CHECK(r.count == 0, "no blank line from the CRLF pair");
    sse_feed(p, "\r", 1);
    CHECK(r.count == 1, "dispatched at the CR, not waiting for the next chunk");
    sse_feed(p, "\n", 1);
    sse_feed(p, "data: b\n", 8);
    sse_feed(p, "\n", 1);
    CHECK(r.count == 2, "second event count=%d", r.count);
    CHECK(strcmp(sbuf_cstr(&r.log), EV("message", "a", "") EV("message", "b", "")) == 0, "events");
    sse_destroy(&p);
    sbuf_free(&r.log);
}

int main(void)
{
    size_t n = sizeof cases / sizeof *cases;
    for (size_t i = 0; i < n; i++)
        failures += s_check_case(&cases[i]);
    s_test_stop();
    s_test_sticky_and_retry();
    s_test_cr_lf_across_feeds();
    if (failures) {
        fprintf(stderr, "sse_test: %d failure(s)\n", failures);
        return 1;
    }
    printf("sse_test: %zu streams, every split: ok\n", n);
    return 0;
}
