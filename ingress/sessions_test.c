/* sessions_test: sessions with fake connections: one watch per session,
 * events to every socket once and in order, gaps filled from the store,
 * late copies after a run's end dropped, a slow socket caught up page by
 * page instead of closed, watches renewed after a loss. */
#include "sessions.h"

#include "fakeio.h"

#include <stdio.h>

static hub_t H;
static io_t IO;

static conn_t *s_sock(uint64_t id, const char *session)
{
    conn_t *c = conn_new(id, NULL, (size_t)H.cfg.max_outq, 0);
    c->is_ws = 1;
    c->hello = 1;
    sessions_join(H.sessions, c, session);
    return c;
}

static void s_event_json(char *out, size_t cap, const char *run, uint64_t seq, const char *type)
{
    snprintf(out, cap,
             "{\"event_id\":%llu,\"run_id\":\"%s\",\"session_id\":\"s1\",\"seq\":%llu,"
             "\"type\":\"%s\",\"payload\":{}}",
             (unsigned long long)seq, run, (unsigned long long)seq, type);
}

/* A live event on session s's watch. */
static void s_live(session_t *s, const char *run, uint64_t seq, const char *type, int terminal)
{
    pending_t *w = pending_get(H.pending, s->watch);
    CHECK(w);
    char json[512];
    s_event_json(json, sizeof json, run, seq, type);
    orch_stream_t ev = {.json = {json, (uint32_t)strlen(json)},
                        .run_id = {run, (uint32_t)strlen(run)},
                        .type = {type, (uint32_t)strlen(type)},
                        .seq = seq,
                        .terminal = terminal};
    sessions_on_watch(H.sessions, w, &ev);
}

/* One batch body on session s's watch, decoded as the edge decodes it:
 * event i of runs[i] with seqs[i], event term_at the terminal one. */
static void s_live_batch(session_t *s, const char *const *runs, const uint64_t *seqs, size_t n,
                         size_t term_at)
{
    mp_buf_t b, one;
    mp_buf_init(&b, 1 << 20);
    mp_buf_init(&one, 1 << 16);
    CHECK(orch_batch_begin(&b) == 0);
    for (size_t i = 0; i < n; i++) {
        int term = i == term_at;
        const char *type = seqs[i] == 1 ? "run_started" : term ? "run_done" : "agent_stream_delta";
        char json[512];
        s_event_json(json, sizeof json, runs[i], seqs[i], type);
        orch_stream_t ev = {.json = {json, (uint32_t)strlen(json)},
                            .run_id = {runs[i], (uint32_t)strlen(runs[i])},
                            .session_id = {"s2", 2},
                            .type = {type, (uint32_t)strlen(type)},
                            .seq = seqs[i],
                            .terminal = term};
        mp_buf_reset(&one);
        CHECK(orch_encode_event(&one, &ev) == 0);
        CHECK(orch_batch_add(&b, one.data, one.len) == 0);
    }
    CHECK(orch_batch_end(&b, (uint32_t)n) == 0);
    orch_stream_t got;
    CHECK(orch_decode_stream(b.data, b.len, &got) == AGENT_OK && got.batch == n);
    sessions_on_watch(H.sessions, pending_get(H.pending, s->watch), &got);
    mp_buf_free(&one);
    mp_buf_free(&b);
}

/* How many times "\"seq\":N," appears for run in text. */
static int s_count(const char *text, uint64_t seq)
{
    char needle[64];
    snprintf(needle, sizeof needle, "\"seq\":%llu,", (unsigned long long)seq);
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* Answers the last fill with events from..to (terminal at end if to == end). */
static void s_answer_fill(conn_t *c, uint64_t from, uint64_t to, uint64_t end, int has_more)
{
    pending_t *p = NULL;
    size_t i = IO.nreq;
    while (i-- > 0) { /* c's latest fill still out */
        p = pending_get(H.pending, IO.req_id[i]);
        if (p && p->kind == P_WS_FILL && p->conn == c)
            break;
        p = NULL;
    }
    CHECK(p && !strcmp(IO.req_op[i], "events"));
    CHECK(IO.req_after[i] == from - 1);
    sbuf_t j;
    sbuf_init(&j, 1 << 20);
    sbuf_catf(&j, "{\"run_id\":\"%s\",\"events\":[", p->run_id);
    for (uint64_t s = from; s <= to; s++) {
        char ev[512];
        s_event_json(ev, sizeof ev, p->run_id, s, s == end ? "run_done" : "agent_stream_delta");
        sbuf_catf(&j, "%s%s", s == from ? "" : ",", ev);
    }
    sbuf_catf(&j, "],\"has_more\":%s}", has_more ? "true" : "false");
    char run[129];
    snprintf(run, sizeof run, "%s", p->run_id);
    pending_free(H.pending, p);
    sessions_on_fill(H.sessions, c, run, 200, sbuf_cstr(&j), j.len);
    sbuf_free(&j);
}

int main(void)
{
    fake_hub(&H, &IO);
    sbuf_t out;
    sbuf_init(&out, 1 << 22);

    /* Two sockets, one session, one watch. */
    conn_t *a = s_sock(1, "s1"), *b = s_sock(2, "s1");
    session_t *s = sessions_find(H.sessions, "s1");
    CHECK(s && s->conns && sessions_count(H.sessions) == 1);
    CHECK(IO.nreq == 1 && !strcmp(IO.req_op[0], "watch") && !strcmp(IO.req_session[0], "s1"));
    orch_stream_t acc = {.accepted = 1, .json = {"{}", 2}};
    sessions_on_watch(H.sessions, pending_get(H.pending, s->watch), &acc);

    /* In order, once each, to both; a repeat is dropped. */
    s_live(s, "r1", 1, "run_started", 0);
    s_live(s, "r1", 2, "agent_stream_delta", 0);
    s_live(s, "r1", 2, "agent_stream_delta", 0);
    fake_drain(a, &out);
    CHECK(s_count(out.data, 1) == 1 && s_count(out.data, 2) == 1);
    CHECK(strncmp(out.data, "{\"type\":\"event\",\"event\":{", 25) == 0);
    fake_drain(b, &out);
    CHECK(s_count(out.data, 1) == 1 && s_count(out.data, 2) == 1);

    /* A gap: seq 5 after 2 → a fill from 3, then 3..5 once, in order. */
    size_t before = IO.nreq;
    s_live(s, "r1", 5, "agent_stream_delta", 0);
    CHECK(IO.nreq == before + 2); /* one fill per socket */
    CHECK(!strcmp(IO.req_op[IO.nreq - 1], "events"));
    s_answer_fill(b, 3, 5, 0, 0);
    s_answer_fill(a, 3, 5, 0, 0);
    fake_drain(a, &out);
    CHECK(s_count(out.data, 3) == 1 && s_count(out.data, 4) == 1 && s_count(out.data, 5) == 1);
    CHECK(strstr(out.data, "\"seq\":3,") < strstr(out.data, "\"seq\":4,"));

    /* The run ends; a late copy of any of its events is dropped. */
    s_live(s, "r1", 6, "run_done", 1);
    fake_drain(a, &out);
    CHECK(s_count(out.data, 6) == 1);
    CHECK(conn_has_ended(a, "r1"));
    s_live(s, "r1", 6, "run_done", 1);
    s_live(s, "r1", 4, "agent_stream_delta", 0);
    fake_drain(a, &out);
    CHECK(out.len == 0);
    fake_drain(b, &out);

    /* A slow socket: live events past a quarter of its queue are not
     * queued; it is caught up from the store once drained, page by page. */
    size_t big = (size_t)H.cfg.max_outq / 4;
    char *filler = malloc(big);
    memset(filler, 'x', big);
    CHECK(hub_push(&H, a, filler, big - 100) == 0);
    free(filler);
    before = IO.nreq;
    for (uint64_t q = 1; q <= 5; q++)
        s_live(s, "r2", q, q == 1 ? "run_started" : "agent_stream_delta", 0);
    CHECK(a->drain_wait && !a->closing);
    CHECK(IO.nreq == before); /* no fill while it is behind */
    fake_drain(b, &out);
    CHECK(s_count(out.data, 5) == 1); /* the other socket is not held back */
    fake_drain(a, &out);            /* the client read */
    sessions_drained(H.sessions, a);
    s_answer_fill(a, 1, 3, 0, 1);   /* a page, more to come */
    s_answer_fill(a, 4, 7, 7, 0);   /* the rest, to the end */
    fake_drain(a, &out);
    for (uint64_t q = 1; q <= 7; q++)
        CHECK(s_count(out.data, q) == 1);
    CHECK(conn_has_ended(a, "r2"));

    /* A page that does not fit: what fits is sent, the rest is asked for
     * again once the socket drained; every event once, in order. */
    fake_drain(a, &out);
    filler = malloc(big);
    memset(filler, 'y', big);
    CHECK(hub_push(&H, a, filler, big - 100) == 0);
    free(filler);
    s_live(s, "r4", 1, "run_started", 0); /* skipped: no room */
    CHECK(a->drain_wait);
    fake_drain(a, &out);
    sessions_drained(H.sessions, a);
    CHECK(hub_push(&H, a, "z", 1) == 0); /* something queued: the page is paced */
    filler = malloc(big);
    memset(filler, 'y', big);
    CHECK(hub_push(&H, a, filler, big - 1200) == 0);
    free(filler);
    s_answer_fill(a, 1, 30, 30, 0);
    fake_drain(a, &out);
    int got = 0;
    for (uint64_t q = 1; q <= 30; q++)
        got += s_count(out.data, q);
    CHECK(got > 0 && got < 30 && !a->closing); /* a part of the page */
    sbuf_t all;
    sbuf_init(&all, 1 << 22);
    sbuf_cat(&all, out.data, out.len);
    for (int round = 0; round < 40 && !conn_has_ended(a, "r4"); round++) {
        sessions_drained(H.sessions, a);
        pending_t *fp = NULL;
        for (size_t k = IO.nreq; k-- > 0;) {
            fp = pending_get(H.pending, IO.req_id[k]);
            if (fp && fp->kind == P_WS_FILL && fp->conn == a)
                break;
            fp = NULL;
        }
        CHECK(fp);
        s_answer_fill(a, IO.req_after[IO.nreq - 1] + 1, 30, 30, 0);
        fake_drain(a, &out);
        sbuf_cat(&all, out.data, out.len);
    }
    CHECK(conn_has_ended(a, "r4"));
    sbuf_cstr(&all);
    for (uint64_t q = 1; q <= 30; q++)
        CHECK(s_count(all.data, q) == 1);
    sbuf_free(&all);

    /* The watch is lost: renewed by the timer, then the followed runs are
     * filled from the store. */
    sessions_track(H.sessions, b, "r3", 1);
    pending_t *w = pending_get(H.pending, s->watch);
    sessions_watch_ended(H.sessions, w);
    pending_free(H.pending, w);
    CHECK(s->watch == 0 && H.m.watches_lost == 1);
    before = IO.nreq;
    sessions_tick(H.sessions, IO.now + 50);
    CHECK(IO.nreq == before); /* the backoff */
    sessions_tick(H.sessions, IO.now + 100);
    fake_last(&IO, "watch");
    sessions_on_watch(H.sessions, pending_get(H.pending, s->watch), &acc);
    int found = 0;
    for (size_t k = before; k < IO.nreq; k++)
        found += !strcmp(IO.req_op[k], "events") && !strcmp(IO.req_run[k], "r3") &&
                 IO.req_after[k] == 0;
    CHECK(found == 1);

    /* A batch (one orchestrator turn): two runs interleaved, each event
     * once and in its run's order; the terminal one ends its run. */
    conn_t *c3 = s_sock(3, "s2");
    session_t *s2 = sessions_find(H.sessions, "s2");
    CHECK(s2 && s2->watch);
    sessions_on_watch(H.sessions, pending_get(H.pending, s2->watch), &acc);
    const char *bruns[] = {"r5", "r6", "r5", "r5", "r6", "r5"};
    const uint64_t bseqs[] = {1, 1, 2, 3, 2, 3};
    s_live_batch(s2, bruns, bseqs, 6, 3);
    fake_drain(c3, &out);
    CHECK(strstr(out.data, "\"run_id\":\"r5\",\"session_id\":\"s1\",\"seq\":3,"));
    CHECK(strstr(out.data, "\"run_id\":\"r6\",\"session_id\":\"s1\",\"seq\":2,"));
    int n5 = 0;
    for (const char *q = out.data; (q = strstr(q, "\"run_id\":\"r5\"")); q++)
        n5++;
    CHECK(n5 == 3); /* the late copy of seq 3 dropped */
    CHECK(strstr(out.data, "\"run_id\":\"r5\",\"session_id\":\"s1\",\"seq\":1,") <
          strstr(out.data, "\"run_id\":\"r5\",\"session_id\":\"s1\",\"seq\":2,"));
    CHECK(conn_has_ended(c3, "r5") && !conn_has_ended(c3, "r6"));
    hub_drop_requests(&H, c3);
    sessions_leave(H.sessions, c3);
    conn_destroy(&c3);

    /* The last socket out frees the session and cancels its watch. */
    uint64_t watch = s->watch;
    sessions_leave(H.sessions, a);
    CHECK(sessions_count(H.sessions) == 1);
    hub_drop_requests(&H, b);
    sessions_leave(H.sessions, b);
    CHECK(sessions_count(H.sessions) == 0);
    CHECK(IO.ncancel >= 1 && IO.cancelled[IO.ncancel - 1] == watch);
    CHECK(pending_get(H.pending, watch) == NULL);

    conn_destroy(&a);
    conn_destroy(&b);
    sbuf_free(&out);
    fake_hub_free(&H);
    printf("sessions_test: ok\n");
    return 0;
}
