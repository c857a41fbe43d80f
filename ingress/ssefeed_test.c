/* ssefeed_test: an event stream on a fake connection: live events in
 * order, a gap filled from the store, a slow client caught up page by page,
 * the end after the terminal event, a follow that ended first. */
#include "ssefeed.h"

#include "fakeio.h"

#include <stdio.h>

static hub_t H;
static io_t IO;
static sbuf_t OUT;

static const char *s_out(conn_t *c)
{
    fake_drain(c, &OUT);
    return sbuf_cstr(&OUT);
}

static void s_live(conn_t *c, uint64_t seq, const char *type, int terminal)
{
    char json[128];
    snprintf(json, sizeof json, "{\"seq\":%llu,\"type\":\"%s\"}", (unsigned long long)seq, type);
    orch_stream_t ev = {.json = {json, (uint32_t)strlen(json)},
                        .type = {type, (uint32_t)strlen(type)},
                        .seq = seq,
                        .terminal = terminal};
    ssefeed_event(&H, c, &ev);
}

/* Answers c's one fill with events from..to (the last terminal if end). */
static void s_fill(conn_t *c, uint64_t from, uint64_t to, int end, int has_more)
{
    CHECK(c->npending == 1 && c->pendings->kind == P_HTTP_FILL);
    size_t i = fake_last(&IO, "events");
    CHECK(IO.req_after[i] == from - 1 && !strcmp(IO.req_run[i], "run_1"));
    sbuf_t j;
    sbuf_init(&j, 1 << 20);
    sbuf_cats(&j, "{\"run_id\":\"run_1\",\"events\":[");
    for (uint64_t s = from; s <= to; s++)
        sbuf_catf(&j, "%s{\"seq\":%llu,\"type\":\"%s\"}", s == from ? "" : ",",
                  (unsigned long long)s, end && s == to ? "run_done" : "agent_stream_delta");
    sbuf_catf(&j, "],\"has_more\":%s}", has_more ? "true" : "false");
    pending_free(H.pending, c->pendings);
    ssefeed_on_fill(&H, c, 200, sbuf_cstr(&j), j.len);
    sbuf_free(&j);
}

static int s_count(const char *text, uint64_t seq)
{
    char needle[32];
    snprintf(needle, sizeof needle, "id: %llu\n", (unsigned long long)seq);
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

int main(void)
{
    fake_hub(&H, &IO);
    sbuf_init(&OUT, 1 << 22);
    conn_t *c = conn_new(1, NULL, (size_t)H.cfg.max_outq, 0);
    c->http.sse = 1;

    /* Live events in order; a repeat dropped. */
    ssefeed_start(&H, c, "run_1", 1);
    s_live(c, 1, "run_started", 0);
    s_live(c, 2, "user_input", 0);
    s_live(c, 2, "user_input", 0);
    CHECK(!strcmp(s_out(c), "id: 1\nevent: run_started\ndata: {\"seq\":1,\"type\":\"run_started\"}\n\n"
                            "id: 2\nevent: user_input\ndata: {\"seq\":2,\"type\":\"user_input\"}\n\n"));

    /* A gap (the follow replayed one page, then went live): filled. */
    s_live(c, 6, "agent_stream_delta", 0);
    s_fill(c, 3, 6, 0, 0);
    const char *o = s_out(c);
    for (uint64_t q = 3; q <= 6; q++)
        CHECK(s_count(o, q) == 1);
    CHECK(strstr(o, "id: 3\n") < strstr(o, "id: 6\n"));

    /* A slow client: live events past a quarter of its queue wait in the
     * store; once drained it is caught up page by page, each event once. */
    size_t big = (size_t)H.cfg.max_outq / 4;
    char *filler = malloc(big);
    memset(filler, 'x', big);
    CHECK(hub_push(&H, c, filler, big - 50) == 0);
    free(filler);
    for (uint64_t q = 7; q <= 9; q++)
        s_live(c, q, "agent_stream_delta", 0);
    CHECK(c->drain_wait && c->npending == 0 && !c->closing);
    s_out(c);
    ssefeed_drained(&H, c);
    s_fill(c, 7, 8, 0, 1);
    s_fill(c, 9, 12, 1, 0);
    o = s_out(c);
    for (uint64_t q = 7; q <= 12; q++)
        CHECK(s_count(o, q) == 1);
    CHECK(c->http.feed_ended && c->http.finish);

    /* A follow that ended before the stream got its end: the rest from the
     * store; a store with nothing more ends the stream too. */
    conn_t *d = conn_new(2, NULL, (size_t)H.cfg.max_outq, 0);
    d->http.sse = 1;
    ssefeed_start(&H, d, "run_1", 4);
    ssefeed_follow_over(&H, d);
    s_fill(d, 4, 5, 1, 0);
    CHECK(s_count(s_out(d), 4) == 1 && d->http.finish);
    conn_t *e = conn_new(3, NULL, (size_t)H.cfg.max_outq, 0);
    e->http.sse = 1;
    ssefeed_start(&H, e, "run_1", 99); /* resumed past the end */
    ssefeed_follow_over(&H, e);
    s_fill(e, 99, 98, 0, 0);
    CHECK(e->http.finish && !strcmp(s_out(e), ""));
    /* The store out of reach: the stream ends (the client resumes). */
    conn_t *f = conn_new(4, NULL, (size_t)H.cfg.max_outq, 0);
    f->http.sse = 1;
    ssefeed_start(&H, f, "run_1", 1);
    IO.refuse = 1;
    ssefeed_follow_over(&H, f);
    CHECK(f->http.finish && f->npending == 0);
    IO.refuse = 0;

    conn_t *all[] = {c, d, e, f};
    for (size_t k = 0; k < 4; k++) {
        hub_drop_requests(&H, all[k]);
        conn_destroy(&all[k]);
    }
    sbuf_free(&OUT);
    fake_hub_free(&H);
    printf("ssefeed_test: ok\n");
    return 0;
}
