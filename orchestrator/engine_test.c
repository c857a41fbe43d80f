/* engine_test: the orchestrator's engine against a scripted broker (a raw
 * ROUTER on loopback in this process, as worker/worker_test.c does): it
 * plays the edge asking for operations and the agent answering them, and
 * checks the exact frames and bodies the engine sends. Covers the op table
 * (unknown op, bad body, health), a whole run (typed answers, every event
 * in order, then the final reply), a cancel, agent calls (the token, the
 * child's invoke and stream, the parent's log, a repeat, refusals, a
 * cancelled call request, a cancelled parent), and a store lock held by
 * another connection (the request waits, the link stays up, the answer
 * comes once it is released). */
#include "engine.h"

#include "core.h" /* to look at a queued run's memory */
#include "tests/support/check.h"
#include "common/clock.h"
#include "common/log.h"
#include "proto/agent.h"
#include "proto/frame.h"
#include "proto/orch.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

static void *s_router;
static uint8_t s_peer[256];
static size_t s_peer_len;
static int64_t s_next_beat;

typedef struct {
    frame_t f;
    char text[FRAME_HEADER_MAX];
    size_t text_len;
    int more;
    uint8_t body[65536];
    size_t body_len;
} s_msg_t;

#define S_BACKLOG 128
static s_msg_t s_backlog[S_BACKLOG];
static int s_nbacklog;

static void s_send_parts(const void *hdr, size_t hdr_len, const void *body, size_t body_len,
                         int has_body)
{
    CHECK(zmq_send(s_router, s_peer, s_peer_len, ZMQ_SNDMORE) >= 0);
    CHECK(zmq_send(s_router, hdr, hdr_len, has_body ? ZMQ_SNDMORE : 0) >= 0);
    if (has_body)
        CHECK(zmq_send(s_router, body, body_len, 0) >= 0);
}

static void s_send(frame_type_t type, uint64_t id, const char *service, const void *body,
                   size_t len)
{
    frame_t f = {.type = type, .id = id, .service = service,
                 .service_len = service ? strlen(service) : 0};
    uint8_t hdr[FRAME_HEADER_MAX];
    size_t n = frame_encode(&f, hdr, sizeof hdr);
    CHECK(n > 0);
    s_send_parts(hdr, n, body, len, frame_has_body(type));
}

/* Keeps the engine's link alive: the broker's heartbeats. */
static void s_heartbeat(void)
{
    int64_t now = clock_mono_ms();
    if (!s_peer_len || now < s_next_beat)
        return;
    uint8_t hdr[16];
    size_t n = frame_encode_id(FRAME_HEARTBEAT, 0, hdr, sizeof hdr);
    s_send_parts(hdr, n, NULL, 0, 0);
    s_next_beat = now + 50;
}

/* Runs engine turns until a frame of type (and id, unless 0) from the
 * engine is there; others are kept for later. 0, or -1 after ms. */
static int s_take(engine_t *e, frame_type_t type, uint64_t id, s_msg_t *out, long ms)
{
    int64_t deadline = clock_mono_ms() + ms;
    for (;;) {
        for (int i = 0; i < s_nbacklog; i++) {
            s_msg_t *m = &s_backlog[i];
            if (m->f.type == type && (!id || m->f.id == id)) {
                *out = *m;
                /* the frame's views point into text: decode the copy again */
                CHECK(frame_decode(out->text, out->text_len, out->more, &out->f) == FRAME_OK);
                memmove(m, m + 1, (size_t)(s_nbacklog - i - 1) * sizeof *m);
                s_nbacklog--;
                return 0;
            }
        }
        if (clock_mono_ms() >= deadline)
            return -1;
        engine_turn(e, 2);
        s_heartbeat();
        zmq_pollitem_t item = {s_router, 0, ZMQ_POLLIN, 0};
        while (zmq_poll(&item, 1, 0) > 0) {
            int n = zmq_recv(s_router, s_peer, sizeof s_peer, 0);
            CHECK(n > 0);
            s_peer_len = (size_t)n;
            CHECK(s_nbacklog < S_BACKLOG);
            s_msg_t *m = &s_backlog[s_nbacklog];
            memset(m->text, 0, sizeof m->text);
            int hn = zmq_recv(s_router, m->text, sizeof m->text, 0);
            CHECK(hn > 0);
            int more = 0;
            size_t size = sizeof more;
            zmq_getsockopt(s_router, ZMQ_RCVMORE, &more, &size);
            m->body_len = 0;
            if (more) {
                int bn = zmq_recv(s_router, m->body, sizeof m->body, 0);
                CHECK(bn >= 0 && (size_t)bn <= sizeof m->body);
                m->body_len = (size_t)bn;
            }
            m->text_len = (size_t)hn;
            m->more = more;
            CHECK(frame_decode(m->text, (size_t)hn, more, &m->f) == FRAME_OK);
            if (m->f.type != FRAME_HEARTBEAT)
                s_nbacklog++;
        }
    }
}

static int s_has(engine_t *e, frame_type_t type, uint64_t id, long ms)
{
    s_msg_t m;
    return s_take(e, type, id, &m, ms) == 0;
}

static void s_request(uint64_t id, const orch_request_t *q)
{
    mp_buf_t b;
    mp_buf_init(&b, 1 << 16);
    CHECK(orch_encode_request(&b, q) == 0);
    s_send(FRAME_REQUEST, id, "orchestrator", b.data, b.len);
    mp_buf_free(&b);
}

static agent_str_t S(const char *s)
{
    return (agent_str_t){s, (uint32_t)strlen(s)};
}

static int s_eq(agent_str_t a, const char *s)
{
    return a.len == strlen(s) && memcmp(a.ptr, s, a.len) == 0;
}

static void s_reply(engine_t *e, uint64_t id, orch_reply_t *r, s_msg_t *keep)
{
    CHECK(s_take(e, FRAME_REPLY, id, keep, 5000) == 0);
    CHECK(orch_decode_reply(keep->body, keep->body_len, r) == AGENT_OK);
}

/* The types of a run's stored events, comma separated, into out. */
static void s_log(engine_t *e, uint64_t id, const char *run_id, char *out, size_t cap)
{
    orch_reply_t r;
    s_msg_t m;
    s_request(id, &(orch_request_t){.op = S("events"), .run_id = S(run_id)});
    s_reply(e, id, &r, &m);
    CHECK(r.status == 200);
    out[0] = '\0';
    const char *p = r.json.ptr, *end = r.json.ptr + r.json.len;
    size_t n = 0;
    while ((p = memmem(p, (size_t)(end - p), "\"type\":\"", 8)) != NULL) {
        p += 8;
        const char *q = memchr(p, '"', (size_t)(end - p));
        CHECK(q);
        n += (size_t)snprintf(out + n, cap - n, "%s%.*s", n ? "," : "", (int)(q - p), p);
        CHECK(n < cap);
    }
}

/* An op call from the parent's agent. */
static void s_call(uint64_t id, const char *run_id, const char *token, const char *call_id,
                   const char *agent_id, const char *content)
{
    s_request(id, &(orch_request_t){.op = S("call"), .run_id = S(run_id), .token = S(token),
                                    .call_id = S(call_id), .agent_id = S(agent_id),
                                    .role = S("user"), .content = S(content)});
}

/* Takes the agent invoke of a call's child: its run id and platform. */
static uint64_t s_child_invoke(engine_t *e, char *run_id, agent_invoke_t *inv, s_msg_t *m)
{
    CHECK(s_take(e, FRAME_REQUEST, 0, m, 5000) == 0);
    CHECK(agent_decode_invoke(m->body, m->body_len, inv) == AGENT_OK);
    snprintf(run_id, 129, "%.*s", (int)inv->run_id.len, inv->run_id.ptr);
    return m->f.id;
}

static void test_calls(engine_t *e)
{
    s_msg_t m;
    orch_reply_t r;
    orch_stream_t st;
    agent_invoke_t inv;
    mp_buf_t b;
    mp_buf_init(&b, 1 << 16);
    /* The parent: agent "caller" in session s3, history of none. */
    s_request(100, &(orch_request_t){.op = S("invoke"), .session_id = S("s3"),
                                     .agent_id = S("caller"), .role = S("user"),
                                     .content = S("go")});
    s_reply(e, 100, &r, &m);
    CHECK(s_take(e, FRAME_REQUEST, 0, &m, 5000) == 0);
    uint64_t parent_req = m.f.id;
    CHECK(agent_decode_invoke(m.body, m.body_len, &inv) == AGENT_OK);
    char parent[129], token[AGENT_TOKEN_LEN + 1];
    snprintf(parent, sizeof parent, "%.*s", (int)inv.run_id.len, inv.run_id.ptr);
    /* Every invoke carries the run's token and place: a client run's root is itself. */
    CHECK(inv.platform.token.len == AGENT_TOKEN_LEN && inv.platform.depth == 0);
    CHECK(s_eq(inv.platform.root_run_id, parent) && inv.platform.parent_run_id.len == 0);
    snprintf(token, sizeof token, "%.*s", (int)inv.platform.token.len, inv.platform.token.ptr);

    /* A wrong token, an unknown run: the same 403. */
    char wrong[AGENT_TOKEN_LEN + 1];
    memcpy(wrong, token, sizeof wrong);
    wrong[0] = wrong[0] == 'a' ? 'b' : 'a';
    s_call(101, parent, wrong, "c1", "echo", "x");
    s_reply(e, 101, &r, &m);
    CHECK(r.status == 403 && strstr(r.json.ptr, "\"forbidden\""));
    s_call(102, "run_nope", token, "c1", "echo", "x");
    s_reply(e, 102, &r, &m);
    CHECK(r.status == 403 && strstr(r.json.ptr, "\"forbidden\""));
    s_call(103, parent, token, "", "echo", "x");
    s_reply(e, 103, &r, &m);
    CHECK(r.status == 400);
    /* Reentry: caller calling caller. */
    s_call(104, parent, token, "c0", "caller", "x");
    s_reply(e, 104, &r, &m);
    CHECK(r.status == 409 && strstr(r.json.ptr, "\"call_refused\"") &&
          strstr(r.json.ptr, "already in the call chain"));

    /* A call with a history: accepted running (typed), the child's invoke. */
    mp_buf_t h;
    mp_buf_init(&h, 4096);
    agent_msg_t hist[1] = {{S("user"), S("context")}};
    orch_encode_msgs(&h, hist, 1);
    s_request(110, &(orch_request_t){.op = S("call"), .run_id = S(parent), .token = S(token),
                                     .call_id = S("c1"), .agent_id = S("echo"),
                                     .role = S("user"), .content = S("sub"), .history_count = 1,
                                     .history = h.data, .history_end = h.data + h.len});
    mp_buf_free(&h);
    CHECK(s_take(e, FRAME_STREAM, 110, &m, 5000) == 0);
    CHECK(orch_decode_stream(m.body, m.body_len, &st) == AGENT_OK && st.accepted);
    CHECK(s_eq(st.run_status, "running") && s_eq(st.session_id, "s3"));
    CHECK(strstr(st.json.ptr, "\"depth\":1") && strstr(st.json.ptr, parent));
    char child[129];
    snprintf(child, sizeof child, "%.*s", (int)st.run_id.len, st.run_id.ptr);
    char got[129];
    uint64_t child_req = s_child_invoke(e, got, &inv, &m);
    CHECK(!strcmp(got, child) && m.f.service_len == 10 && !memcmp(m.f.service, "agent.echo", 10));
    CHECK(inv.platform.depth == 1 && s_eq(inv.platform.parent_run_id, parent));
    CHECK(s_eq(inv.platform.root_run_id, parent) && inv.history_count == 1);
    CHECK(inv.platform.token.len == AGENT_TOKEN_LEN && !s_eq(inv.platform.token, token));
    mp_buf_reset(&b);
    agent_encode_delta(&b, "su", 2);
    s_send(FRAME_STREAM, child_req, NULL, b.data, b.len);
    mp_buf_reset(&b);
    agent_encode_done(&b, "assistant", "sub", 3);
    s_send(FRAME_REPLY, child_req, NULL, b.data, b.len);
    const char *types[] = {"run_started", "user_input", "agent_invoke_started",
                           "agent_stream_delta", "agent_invoke_done", "run_done"};
    for (uint64_t seq = 1; seq <= 6; seq++) {
        CHECK(s_take(e, FRAME_STREAM, 110, &m, 5000) == 0);
        CHECK(orch_decode_stream(m.body, m.body_len, &st) == AGENT_OK && !st.accepted);
        CHECK(st.seq == seq && s_eq(st.type, types[seq - 1]) && s_eq(st.run_id, child));
        CHECK(strstr(st.json.ptr, "\"parent_run_id\"") && strstr(st.json.ptr, "\"depth\":1"));
    }
    s_reply(e, 110, &r, &m);
    CHECK(r.status == 200 && s_eq(r.run_id, child) && s_eq(r.run_status, "done"));
    char log[1024];
    s_log(e, 111, parent, log, sizeof log);
    CHECK(!strcmp(log, "run_started,user_input,agent_invoke_started,agent_call_started,"
                       "agent_call_done"));
    s_request(112, &(orch_request_t){.op = S("events"), .run_id = S(parent), .after_seq = 4});
    s_reply(e, 112, &r, &m);
    CHECK(strstr(r.json.ptr, "\"output\":{\"role\":\"assistant\",\"content\":\"sub\"}"));
    CHECK(strstr(r.json.ptr, "\"call_id\":\"c1\"") && strstr(r.json.ptr, child));
    /* Children write no messages. */
    s_request(113, &(orch_request_t){.op = S("messages"), .session_id = S("s3")});
    s_reply(e, 113, &r, &m);
    CHECK(r.status == 200 && strstr(r.json.ptr, "\"messages\":[]"));
    /* The same call_id: the same child, from seq 1, nothing started. */
    s_call(114, parent, token, "c1", "echo", "other");
    CHECK(s_take(e, FRAME_STREAM, 114, &m, 5000) == 0);
    CHECK(orch_decode_stream(m.body, m.body_len, &st) == AGENT_OK && st.accepted &&
          s_eq(st.run_id, child) && s_eq(st.run_status, "done"));
    for (uint64_t seq = 1; seq <= 6; seq++) {
        CHECK(s_take(e, FRAME_STREAM, 114, &m, 5000) == 0);
        CHECK(orch_decode_stream(m.body, m.body_len, &st) == AGENT_OK && st.seq == seq);
    }
    s_reply(e, 114, &r, &m);
    CHECK(r.status == 200 && s_eq(r.run_id, child));
    CHECK(!s_has(e, FRAME_REQUEST, 0, 50));
    /* op calls lists it; health counts it. */
    s_request(115, &(orch_request_t){.op = S("calls"), .run_id = S(parent)});
    s_reply(e, 115, &r, &m);
    CHECK(r.status == 200 && strstr(r.json.ptr, child) && strstr(r.json.ptr, "\"calls\":[{"));
    s_request(116, &(orch_request_t){.op = S("calls"), .run_id = S("run_nope")});
    s_reply(e, 116, &r, &m);
    CHECK(r.status == 404);
    s_request(117, &(orch_request_t){.op = S("health")});
    s_reply(e, 117, &r, &m);
    CHECK(strstr(r.json.ptr, "\"calls_done\":1") && strstr(r.json.ptr, "\"calls_refused\":1"));

    /* A CANCEL of the call request cancels the child; the agent is told. */
    s_call(120, parent, token, "c2", "echo", "slow");
    CHECK(s_take(e, FRAME_STREAM, 120, &m, 5000) == 0);
    CHECK(orch_decode_stream(m.body, m.body_len, &st) == AGENT_OK && st.accepted);
    snprintf(child, sizeof child, "%.*s", (int)st.run_id.len, st.run_id.ptr);
    child_req = s_child_invoke(e, got, &inv, &m);
    s_send(FRAME_CANCEL, 120, NULL, NULL, 0);
    CHECK(s_take(e, FRAME_CANCEL, child_req, &m, 5000) == 0);
    s_request(121, &(orch_request_t){.op = S("run"), .run_id = S(child)});
    s_reply(e, 121, &r, &m);
    CHECK(s_eq(r.run_status, "cancelled"));
    s_log(e, 122, parent, log, sizeof log);
    CHECK(strstr(log, "agent_call_started,agent_call_cancelled") != NULL);

    /* A cancelled parent cancels its live child first; its terminal event is last. */
    s_call(130, parent, token, "c3", "echo", "slow");
    CHECK(s_take(e, FRAME_STREAM, 130, &m, 5000) == 0);
    CHECK(orch_decode_stream(m.body, m.body_len, &st) == AGENT_OK && st.accepted);
    snprintf(child, sizeof child, "%.*s", (int)st.run_id.len, st.run_id.ptr);
    child_req = s_child_invoke(e, got, &inv, &m);
    s_request(131, &(orch_request_t){.op = S("cancel"), .run_id = S(parent)});
    s_reply(e, 131, &r, &m);
    CHECK(r.status == 202);
    s_reply(e, 130, &r, &m); /* the call's follow ends with the child */
    CHECK(s_eq(r.run_id, child) && s_eq(r.run_status, "cancelled"));
    s_log(e, 132, parent, log, sizeof log);
    size_t len = strlen(log);
    CHECK(len > 40 && !strcmp(log + len - strlen("agent_call_cancelled,run_cancelled"),
                              "agent_call_cancelled,run_cancelled"));
    s_log(e, 133, child, log, sizeof log);
    CHECK(!strcmp(log, "run_started,user_input,agent_invoke_started,run_cancelled"));
    /* The token died with its run. */
    s_call(134, parent, token, "c4", "echo", "x");
    s_reply(e, 134, &r, &m);
    CHECK(r.status == 403);
    (void)parent_req;
    mp_buf_free(&b);
}

int main(void)
{
    log_set_level("warn");
    char dir[] = "/tmp/map-engine-test-XXXXXX";
    CHECK(mkdtemp(dir));
    char db[256];
    snprintf(db, sizeof db, "%s/map.db", dir);
    void *ctx = zmq_ctx_new();
    s_router = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(s_router, ZMQ_LINGER, &zero, sizeof zero);
    CHECK(zmq_bind(s_router, "tcp://127.0.0.1:*") == 0);
    char endpoint[128];
    size_t size = sizeof endpoint;
    zmq_getsockopt(s_router, ZMQ_LAST_ENDPOINT, endpoint, &size);
    engine_config_t cfg = {.broker = endpoint, .db = db, .agent_timeout_ms = 30000,
                           .heartbeat_ms = 200, .history_max = 10, .drain_ms = 100,
                           .runs_max = 100, .queued_max = 4, .follows_max = 4};
    char err[512];
    engine_t *e = engine_new(&cfg, err, sizeof err);
    CHECK(e != NULL);

    /* The engine announces itself and probes; link up; it asks for services. */
    s_msg_t m;
    CHECK(s_take(e, FRAME_READY, 0, &m, 5000) == 0);
    CHECK(m.f.service_len == 12 && memcmp(m.f.service, "orchestrator", 12) == 0);
    CHECK(s_take(e, FRAME_SERVICES, 0, &m, 5000) == 0 && (m.f.id >> 63));
    s_send(FRAME_REPLY, m.f.id, NULL, "\x90", 1);
    CHECK(s_take(e, FRAME_SERVICES, 0, &m, 5000) == 0 && !(m.f.id >> 63));
    /* [["agent.echo", 1, 1, 1, 0], ["agent.caller", 1, 1, 1, 0]] */
    const char services[] = "\x92\x95\xaa" "agent.echo" "\x01\x01\x01\x00"
                            "\x95\xac" "agent.caller" "\x01\x01\x01\x00";
    s_send(FRAME_REPLY, m.f.id, NULL, services, sizeof services - 1);

    /* The op table: unknown op, a body that does not decode, health. */
    orch_reply_t r;
    s_request(10, &(orch_request_t){.op = S("frobnicate")});
    s_reply(e, 10, &r, &m);
    CHECK(r.status == 400 && strstr((const char *)r.json.ptr, "bad_request") && r.run_id.len == 0);
    s_send(FRAME_REQUEST, 11, "orchestrator", "\x01", 1);
    CHECK(s_take(e, FRAME_ERROR, 11, &m, 5000) == 0);
    CHECK(m.f.code_len == 11 && memcmp(m.f.code, "bad_request", 11) == 0);
    s_request(12, &(orch_request_t){.op = S("health")});
    s_reply(e, 12, &r, &m);
    CHECK(r.status == 200);

    /* A whole run: accepted (typed), the agent's invoke, its answers, every
     * event in seq order, the final reply typed done. */
    s_request(20, &(orch_request_t){.op = S("invoke"), .session_id = S("s1"),
                                    .agent_id = S("echo"), .role = S("user"),
                                    .content = S("hi"), .follow = 1});
    CHECK(s_take(e, FRAME_REQUEST, 0, &m, 5000) == 0);
    CHECK(m.f.service_len == 10 && memcmp(m.f.service, "agent.echo", 10) == 0);
    uint64_t agent_req = m.f.id;
    agent_invoke_t inv;
    CHECK(agent_decode_invoke(m.body, m.body_len, &inv) == AGENT_OK);
    CHECK(s_eq(inv.session_id, "s1") && s_eq(inv.input.content, "hi") && inv.history_count == 0);
    char run_id[129];
    snprintf(run_id, sizeof run_id, "%.*s", (int)inv.run_id.len, inv.run_id.ptr);
    orch_stream_t st;
    CHECK(s_take(e, FRAME_STREAM, 20, &m, 5000) == 0);
    CHECK(orch_decode_stream(m.body, m.body_len, &st) == AGENT_OK && st.accepted);
    CHECK(s_eq(st.run_id, run_id) && s_eq(st.run_status, "running") && s_eq(st.session_id, "s1"));
    mp_buf_t b;
    mp_buf_init(&b, 4096);
    agent_encode_delta(&b, "hi", 2);
    s_send(FRAME_STREAM, agent_req, NULL, b.data, b.len);
    mp_buf_reset(&b);
    agent_encode_done(&b, "assistant", "hi", 2);
    s_send(FRAME_REPLY, agent_req, NULL, b.data, b.len);
    const char *types[] = {"run_started", "user_input", "agent_invoke_started",
                           "agent_stream_delta", "agent_invoke_done", "run_done"};
    for (uint64_t seq = 1; seq <= 6; seq++) {
        CHECK(s_take(e, FRAME_STREAM, 20, &m, 5000) == 0);
        CHECK(orch_decode_stream(m.body, m.body_len, &st) == AGENT_OK && !st.accepted);
        CHECK(st.seq == seq && s_eq(st.type, types[seq - 1]) && st.terminal == (seq == 6));
    }
    s_reply(e, 20, &r, &m);
    CHECK(r.status == 200 && s_eq(r.run_id, run_id) && s_eq(r.run_status, "done"));
    CHECK(s_eq(r.session_id, "s1"));

    test_calls(e);

    /* Paged events of it; a cancel of the ended run is 409, typed. */
    s_request(21, &(orch_request_t){.op = S("events"), .run_id = S(run_id), .limit = 4});
    s_reply(e, 21, &r, &m);
    CHECK(r.status == 200 && strstr(r.json.ptr, "\"has_more\":true,\"next_after_seq\":4}"));
    s_request(22, &(orch_request_t){.op = S("cancel"), .run_id = S(run_id)});
    s_reply(e, 22, &r, &m);
    CHECK(r.status == 409 && s_eq(r.run_status, "done"));

    /* A queued run's input stays in the store until it starts; the running
     * one has it (it is in the invoke the agent got). */
    s_request(40, &(orch_request_t){.op = S("invoke"), .session_id = S("s2"),
                                    .agent_id = S("echo"), .role = S("user"),
                                    .content = S("first input")});
    s_request(41, &(orch_request_t){.op = S("invoke"), .session_id = S("s2"),
                                    .agent_id = S("echo"), .role = S("user"),
                                    .content = S("second input")});
    orch_reply_t r40, r41;
    s_msg_t m40, m41;
    s_reply(e, 40, &r40, &m40);
    s_reply(e, 41, &r41, &m41);
    CHECK(s_eq(r40.run_status, "running") && s_eq(r41.run_status, "queued"));
    char id40[129], id41[129];
    snprintf(id40, sizeof id40, "%.*s", (int)r40.run_id.len, r40.run_id.ptr);
    snprintf(id41, sizeof id41, "%.*s", (int)r41.run_id.len, r41.run_id.ptr);
    run_t *running = runs_live(e->runs, id40), *queued = runs_live(e->runs, id41);
    CHECK(running && running->content && !strcmp(running->content, "first input"));
    CHECK(queued && queued->content == NULL && queued->status == RUN_QUEUED);
    CHECK(s_take(e, FRAME_REQUEST, 0, &m, 5000) == 0); /* the agent's invoke of the first */
    s_request(42, &(orch_request_t){.op = S("cancel"), .run_id = S(id40)});
    s_reply(e, 42, &r, &m);
    CHECK(r.status == 202);
    /* The second starts: its input read back from the store. */
    CHECK(s_take(e, FRAME_CANCEL, 0, &m, 5000) == 0);
    CHECK(s_take(e, FRAME_REQUEST, 0, &m, 5000) == 0);
    CHECK(agent_decode_invoke(m.body, m.body_len, &inv) == AGENT_OK);
    CHECK(s_eq(inv.input.content, "second input") && inv.history_count == 0);
    s_request(43, &(orch_request_t){.op = S("cancel"), .run_id = S(id41)});
    s_reply(e, 43, &r, &m);
    CHECK(r.status == 202);

    /* The lock held by another connection: the request waits (nothing is
     * answered, heartbeats go on), then is answered once it is free. */
    sqlite3 *other;
    CHECK(sqlite3_open(db, &other) == SQLITE_OK);
    CHECK(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK);
    s_request(30, &(orch_request_t){.op = S("run"), .run_id = S(run_id)});
    CHECK(!s_has(e, FRAME_REPLY, 30, 600)); /* longer than the link's liveness */
    CHECK(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(other);
    s_reply(e, 30, &r, &m);
    CHECK(r.status == 200 && s_eq(r.run_status, "done"));
    /* The link stayed up: no READY again. */
    CHECK(!s_has(e, FRAME_READY, 0, 50));

    mp_buf_free(&b);
    engine_destroy(&e);
    CHECK(e == NULL);
    zmq_close(s_router);
    zmq_ctx_term(ctx);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return 0;
}
