/* engine_test: the orchestrator's engine against a scripted broker (a raw
 * ROUTER on loopback in this process, as worker/worker_test.c does): it
 * plays the edge asking for operations and the agent answering them, and
 * checks the exact frames and bodies the engine sends. Covers the op table
 * (unknown op, bad body, health), a whole run (typed answers, every event
 * in order, then the final reply), a cancel, and a store lock held by
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
    /* [["agent.echo", 1, 1, 1, 0]] */
    const char services[] = "\x91\x95\xaa" "agent.echo" "\x01\x01\x01\x00";
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
