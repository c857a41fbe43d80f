/* ws_test: the WebSocket protocol on a fake connection: hello and its id
 * rule and key, invoke, a resume and a cancel of another session's run
 * refused with nothing left behind, fragments, limits. */
#include "ws.h"

#include "fakeio.h"

#include <czmq.h>
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

static pending_t *s_last_pending(void)
{
    return pending_get(H.pending, IO.req_id[IO.nreq - 1]);
}

static void s_accepted(pending_t *p, const char *run_id, const char *session)
{
    orch_stream_t ev = {.accepted = 1, .json = {"{}", 2},
                        .run_id = {run_id, (uint32_t)strlen(run_id)},
                        .session_id = {session, (uint32_t)strlen(session)},
                        .run_status = {"running", 7}};
    ws_on_stream(&H, p, &ev);
}

int main(void)
{
    fake_hub(&H, &IO);
    sbuf_init(&OUT, 1 << 20);
    conn_t *c = conn_new(1, NULL, 1 << 16, 0);
    ws_open(&H, c);

    /* Nothing before hello; a bad session id is refused; then hello. */
    s_send(c, "{\"type\":\"ping\"}");
    CHECK(strstr(s_out(c), "\"code\":\"not_hello\""));
    const char *bad[] = {"a?b", "a#b", "a%b", "a b", "a/b", "a\\\\b"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char msg[256];
        snprintf(msg, sizeof msg, "{\"type\":\"hello\",\"session_id\":\"%s\"}", bad[i]);
        s_send(c, msg);
        CHECK(strstr(s_out(c), "\"code\":\"bad_request\""));
        CHECK(!c->hello);
    }
    s_send(c, "{\"type\":\"hello\",\"session_id\":\"s1\"}");
    CHECK(strstr(s_out(c), "{\"type\":\"hello_ok\",\"session_id\":\"s1\"}"));
    CHECK(c->hello && c->session && !strcmp(IO.req_op[IO.nreq - 1], "watch"));
    s_send(c, "{\"type\":\"hello\",\"session_id\":\"s1\"}");
    CHECK(strstr(s_out(c), "already"));
    s_send(c, "{\"type\":\"ping\"}");
    CHECK(!strcmp(s_out(c), "{\"type\":\"pong\"}"));

    /* invoke → the request names the socket's session; the reply is
     * invoke_accepted and the run is followed from seq 1. */
    s_send(c, "{\"type\":\"agent_invoke\",\"request_id\":\"c1\",\"agent_id\":\"echo\","
              "\"input_message\":{\"role\":\"user\",\"content\":\"hi\"}}");
    size_t i = fake_last(&IO, "invoke");
    CHECK(!strcmp(IO.req_session[i], "s1"));
    pending_t *p = s_last_pending();
    hub_reply_t r;
    fake_reply(&r, 200, "{\"run_id\":\"run_1\",\"session_id\":\"s1\",\"status\":\"queued\"}");
    ws_on_reply(&H, p, &r);
    pending_free(H.pending, p);
    CHECK(strstr(s_out(c), "{\"type\":\"invoke_accepted\",\"request_id\":\"c1\",\"run_id\":\"run_1\"}"));
    CHECK(zhashx_lookup(c->runs, "run_1"));

    /* resume of another session's run: unknown_run, the follow cancelled,
     * no tracker left (so no event of it can reach this socket later). */
    s_send(c, "{\"type\":\"resume\",\"run_id\":\"run_x\",\"after_seq\":0}");
    fake_last(&IO, "follow");
    p = s_last_pending();
    uint64_t req = p->req;
    CHECK(zhashx_lookup(c->runs, "run_x"));
    s_accepted(p, "run_x", "other");
    CHECK(strstr(s_out(c), "\"code\":\"unknown_run\""));
    CHECK(!zhashx_lookup(c->runs, "run_x"));
    CHECK(!pending_get(H.pending, req) && IO.cancelled[IO.ncancel - 1] == req);

    /* resume of an unknown run: 404 → unknown_run, no tracker. */
    s_send(c, "{\"type\":\"resume\",\"run_id\":\"run_y\",\"after_seq\":3}");
    CHECK(IO.req_after[fake_last(&IO, "follow")] == 3);
    p = s_last_pending();
    fake_reply(&r, 404, "{\"error\":{\"code\":\"unknown_run\",\"message\":\"no such run\"}}");
    ws_on_reply(&H, p, &r);
    pending_free(H.pending, p);
    CHECK(strstr(s_out(c), "\"code\":\"unknown_run\""));
    CHECK(!zhashx_lookup(c->runs, "run_y"));

    /* cancel of another session's run: asked about first, then refused; no
     * cancel is sent. */
    s_send(c, "{\"type\":\"cancel\",\"run_id\":\"run_x\",\"request_id\":\"k1\"}");
    fake_last(&IO, "run");
    p = s_last_pending();
    size_t nreq = IO.nreq;
    fake_reply(&r, 200, "{\"run_id\":\"run_x\",\"session_id\":\"other\",\"status\":\"running\"}");
    ws_on_reply(&H, p, &r);
    pending_free(H.pending, p);
    CHECK(strstr(s_out(c), "\"code\":\"unknown_run\"") && strstr(OUT.data, "\"request_id\":\"k1\""));
    CHECK(IO.nreq == nreq);
    /* ... and of its own: the cancel goes out. */
    s_send(c, "{\"type\":\"cancel\",\"run_id\":\"run_1\"}");
    p = s_last_pending();
    fake_reply(&r, 200, "{\"run_id\":\"run_1\",\"session_id\":\"s1\",\"status\":\"running\"}");
    ws_on_reply(&H, p, &r);
    pending_free(H.pending, p);
    CHECK(!strcmp(IO.req_run[fake_last(&IO, "cancel")], "run_1"));

    /* Fragments are one message; past the maximum, too_large; binary refused. */
    const char *ping = "{\"type\":\"ping\"}";
    ws_receive(&H, c, ping, 5, 1, 0, 0);
    ws_receive(&H, c, ping + 5, 5, 0, 0, 0);
    ws_receive(&H, c, ping + 10, strlen(ping) - 10, 0, 1, 0);
    CHECK(!strcmp(s_out(c), "{\"type\":\"pong\"}"));
    static char big[(1 << 16) + 10];
    memset(big, ' ', sizeof big);
    ws_receive(&H, c, big, sizeof big, 1, 1, 0);
    CHECK(strstr(s_out(c), "\"code\":\"too_large\"") && !c->closing);
    /* A large message's buffer is given back once it is handled; a small
     * one's is kept for the next. */
    static char padded[40000];
    memset(padded, ' ', sizeof padded);
    memcpy(padded + sizeof padded - strlen(ping) - 1, ping, strlen(ping));
    ws_receive(&H, c, padded, sizeof padded - 1, 1, 1, 0);
    CHECK(!strcmp(s_out(c), "{\"type\":\"pong\"}") && c->frag.cap == 0);
    ws_receive(&H, c, ping, strlen(ping), 1, 1, 0);
    CHECK(!strcmp(s_out(c), "{\"type\":\"pong\"}") && c->frag.cap > 0 && c->frag.cap <= 16384);
    ws_receive(&H, c, ping, strlen(ping), 1, 1, 1);
    CHECK(strstr(s_out(c), "text frames"));
    s_send(c, "{not json");
    CHECK(strstr(s_out(c), "\"code\":\"bad_json\""));

    /* Requests in flight per connection are bounded. */
    for (int k = 0; k < 12; k++)
        s_send(c, "{\"type\":\"resume\",\"run_id\":\"run_1\",\"after_seq\":0}");
    CHECK(c->npending <= (size_t)H.cfg.max_requests_per_conn);
    CHECK(strstr(s_out(c), "too many requests in flight"));

    /* The orchestrator away: unavailable. */
    hub_drop_requests(&H, c);
    IO.refuse = 1;
    s_send(c, "{\"type\":\"agent_invoke\",\"request_id\":\"c2\",\"agent_id\":\"echo\","
              "\"input_message\":{\"role\":\"user\",\"content\":\"hi\"}}");
    CHECK(strstr(s_out(c), "\"code\":\"unavailable\"") && strstr(OUT.data, "\"request_id\":\"c2\""));
    IO.refuse = 0;

    /* With a key, a wrong one closes 4401. */
    char err[128];
    CHECK(policy_init(&H.policy, "", "127.0.0.1", "k3y", 0, err, sizeof err) == 0);
    conn_t *d = conn_new(2, NULL, 1 << 16, 0);
    ws_open(&H, d);
    s_send(d, "{\"type\":\"hello\",\"api_key\":\"nope\"}");
    CHECK(strstr(s_out(d), "\"code\":\"unauthorized\"") && d->closing && d->close_code == 4401);
    conn_t *e = conn_new(3, NULL, 1 << 16, 0);
    ws_open(&H, e);
    s_send(e, "{\"type\":\"hello\",\"api_key\":\"k3y\"}");
    CHECK(strstr(s_out(e), "hello_ok") && e->hello);

    conn_t *all[] = {c, d, e};
    for (size_t k = 0; k < 3; k++) {
        hub_drop_requests(&H, all[k]);
        sessions_leave(H.sessions, all[k]);
        conn_destroy(&all[k]);
    }
    sbuf_free(&OUT);
    fake_hub_free(&H);
    printf("ws_test: ok\n");
    return 0;
}
