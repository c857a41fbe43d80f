/* answers_test: the orchestrator's answers reach the request they answer:
 * an answer for no pending request and an undecodable STREAM change
 * nothing; an invoke's REPLY and ERROR reach the socket and free the
 * request; a watch's final frame ends the watch (the session re-watches). */
#include "answers.h"

#include "fakeio.h"
#include "ws.h"

#include <stdio.h>

static hub_t H;
static io_t IO;
static sbuf_t OUT;

static void s_send(conn_t *c, const char *text)
{
    ws_receive(&H, c, text, strlen(text), 1, 1, 0);
}

static const char *s_out(conn_t *c)
{
    fake_drain(c, &OUT);
    return sbuf_cstr(&OUT);
}

/* A REPLY body: {"status", "json"} and the run's typed fields. */
static void s_reply(mp_buf_t *b, unsigned status, const char *json)
{
    mp_buf_reset(b);
    msgpack_pack_map(&b->pk, 5);
    mp_pack_cstr(b, "status");
    msgpack_pack_uint32(&b->pk, status);
    mp_pack_kv_cstr(b, "json", json);
    mp_pack_kv_cstr(b, "run_id", "run_1");
    mp_pack_kv_cstr(b, "run_status", "queued");
    mp_pack_kv_cstr(b, "session_id", "s1");
}

int main(void)
{
    fake_hub(&H, &IO);
    sbuf_init(&OUT, 1 << 20);
    mp_buf_t b;
    mp_buf_init(&b, 1 << 16);
    conn_t *c = conn_new(1, NULL, 1 << 16, 0);
    ws_open(&H, c);
    s_send(c, "{\"type\":\"hello\",\"session_id\":\"s1\"}");
    CHECK(strstr(s_out(c), "hello_ok"));
    uint64_t watch = IO.req_id[fake_last(&IO, "watch")];

    /* Answers for no request: nothing happens. */
    size_t before = pending_count(H.pending);
    s_reply(&b, 200, "{}");
    answers_reply(&H, 999999, b.data, b.len);
    answers_error(&H, 999999, "worker_lost", "gone");
    answers_stream(&H, 999999, b.data, b.len);
    CHECK(pending_count(H.pending) == before && !*s_out(c));

    /* An invoke's REPLY: invoke_accepted on the socket, the request freed. */
    s_send(c, "{\"type\":\"agent_invoke\",\"request_id\":\"c1\",\"agent_id\":\"echo\","
              "\"input_message\":{\"role\":\"user\",\"content\":\"hi\"}}");
    uint64_t inv = IO.req_id[fake_last(&IO, "invoke")];
    /* a STREAM body that does not decode: dropped, the request stays */
    const uint8_t junk[] = {0xc1};
    answers_stream(&H, inv, junk, sizeof junk);
    CHECK(pending_get(H.pending, inv) && !*s_out(c));
    s_reply(&b, 200, "{\"run_id\":\"run_1\",\"session_id\":\"s1\",\"status\":\"queued\"}");
    answers_reply(&H, inv, b.data, b.len);
    CHECK(strstr(s_out(c), "{\"type\":\"invoke_accepted\",\"request_id\":\"c1\",\"run_id\":\"run_1\"}"));
    CHECK(!pending_get(H.pending, inv));

    /* An invoke's ERROR: the client hears unavailable, the request freed. */
    s_send(c, "{\"type\":\"agent_invoke\",\"request_id\":\"c2\",\"agent_id\":\"echo\","
              "\"input_message\":{\"role\":\"user\",\"content\":\"hi\"}}");
    inv = IO.req_id[fake_last(&IO, "invoke")];
    answers_error(&H, inv, "broker_lost", "the broker went silent");
    const char *o = s_out(c);
    CHECK(strstr(o, "\"type\":\"error\"") && strstr(o, "\"request_id\":\"c2\""));
    CHECK(!pending_get(H.pending, inv));

    /* The watch's ERROR ends it: freed, and the session is watched again at
     * the next tick. */
    answers_error(&H, watch, "broker_lost", "the broker went silent");
    CHECK(!pending_get(H.pending, watch));
    size_t n = IO.nreq;
    IO.now += 10000;
    sessions_tick(H.sessions, IO.now);
    CHECK(IO.nreq > n && !strcmp(IO.req_op[IO.nreq - 1], "watch"));

    hub_drop_requests(&H, c);
    sessions_leave(H.sessions, c);
    conn_destroy(&c);
    fake_hub_free(&H);
    mp_buf_free(&b);
    sbuf_free(&OUT);
    printf("answers_test: ok\n");
    return 0;
}
