/* call_test: the call API against a scripted broker that plays the
 * orchestrator (a raw ROUTER on loopback in this process): the op `call`
 * body, events in order, a gap filled with op `events` while live events
 * are dropped, repeats dropped, a follow that ends before the terminal
 * event, a refusal, cancel (late frames never reach the agent), the link
 * lost, and call_start's checks. Each step checks the exact callbacks. */
#include "call.h"

#include "tests/support/check.h"
#include "common/clock.h"
#include "proto/frame.h"
#include "proto/orch.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

static char s_log[8192];

static void s_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void s_note(const char *fmt, ...)
{
    size_t n = strlen(s_log);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s_log + n, sizeof s_log - n, fmt, ap);
    va_end(ap);
}

static void s_expect(const char *want)
{
    if (strcmp(s_log, want) != 0)
        fprintf(stderr, "log  '%s'\nwant '%s'\n", s_log, want);
    CHECK(strcmp(s_log, want) == 0);
    s_log[0] = '\0';
}

static const char *const s_outcomes[] = {"done", "failed", "cancelled", "refused", "lost"};

static void s_on_accepted(call_set_t *c, uint64_t call, const char *child, void *user)
{
    (void)c, (void)call;
    s_note("acc:%s:%s;", (const char *)user, child);
}

static void s_on_event(call_set_t *c, uint64_t call, const call_event_t *ev, void *user)
{
    (void)c, (void)call, (void)user;
    CHECK(ev->json[ev->json_len] == '\0' && strstr(ev->json, ev->type) != NULL);
    if (ev->delta)
        s_note("%llu:%s:%.*s;", (unsigned long long)ev->seq, ev->type, (int)ev->delta_len,
               ev->delta);
    else
        s_note("%llu:%s%s;", (unsigned long long)ev->seq, ev->type, ev->terminal ? "!" : "");
}

static void s_on_end(call_set_t *c, uint64_t call, const call_end_t *end, void *user)
{
    (void)c, (void)call;
    s_note("end:%s:%s:%s:%s:%.*s;", (const char *)user, s_outcomes[end->outcome], end->child_run_id,
           end->code, (int)end->output_len, end->output);
}

/* ---- the worker, glued to calls ------------------------------------------------ */

static call_set_t *s_calls;

static void s_w_stream(worker_t *w, uint64_t id, const uint8_t *b, size_t len, void *arg)
{
    (void)w, (void)arg;
    if (!call_on_stream(s_calls, id, b, len))
        s_note("stray-stream:%llu;", (unsigned long long)id);
}

static void s_w_reply(worker_t *w, uint64_t id, const uint8_t *b, size_t len, void *arg)
{
    (void)w, (void)arg;
    if (!call_on_reply(s_calls, id, b, len))
        s_note("stray-reply:%llu;", (unsigned long long)id);
}

static void s_w_error(worker_t *w, uint64_t id, const char *code, const char *msg, void *arg)
{
    (void)w, (void)arg, (void)msg;
    if (!call_on_error(s_calls, id, code, msg))
        s_note("stray-error:%llu:%s;", (unsigned long long)id, code);
}

/* ---- the scripted broker -------------------------------------------------------------- */

static void *s_router;
static uint8_t s_peer[256];
static size_t s_peer_len;

typedef struct {
    frame_t f;
    char text[512];
    uint8_t body[8192];
    size_t body_len;
} s_msg_t;

static void s_pump(worker_t *w, long ms)
{
    int64_t end = clock_mono_ms() + ms;
    do {
        zmq_pollitem_t item = {worker_socket(w), 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, 2);
        while (worker_process(w) > 0)
            ;
    } while (clock_mono_ms() < end);
}

/* The next frame of type want from the worker (HEARTBEATs skipped). */
static int s_recv(worker_t *w, frame_type_t want, s_msg_t *m)
{
    int64_t deadline = clock_mono_ms() + 2000;
    while (clock_mono_ms() < deadline) {
        worker_process(w);
        zmq_pollitem_t item = {s_router, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 5) <= 0)
            continue;
        int n = zmq_recv(s_router, s_peer, sizeof s_peer, 0);
        CHECK(n > 0);
        s_peer_len = (size_t)n;
        int hn = zmq_recv(s_router, m->text, sizeof m->text, 0);
        CHECK(hn > 0);
        int more = 0;
        size_t size = sizeof more;
        zmq_getsockopt(s_router, ZMQ_RCVMORE, &more, &size);
        m->body_len = 0;
        if (more) {
            int bn = zmq_recv(s_router, m->body, sizeof m->body, 0);
            CHECK(bn >= 0);
            m->body_len = (size_t)bn;
        }
        CHECK(frame_decode(m->text, (size_t)hn, more, &m->f) == FRAME_OK);
        if (m->f.type == FRAME_HEARTBEAT && want != FRAME_HEARTBEAT)
            continue;
        if (m->f.type == FRAME_SERVICES && (m->f.id >> 63) && want != FRAME_SERVICES)
            continue;
        if (m->f.type != want)
            fprintf(stderr, "got %s, want %s\n", frame_type_name(m->f.type), frame_type_name(want));
        CHECK(m->f.type == want);
        return 0;
    }
    return -1;
}

static void s_send(frame_type_t type, uint64_t id, const void *body, size_t len)
{
    uint8_t hdr[FRAME_HEADER_MAX];
    size_t n = frame_encode_id(type, id, hdr, sizeof hdr);
    CHECK(n > 0);
    CHECK(zmq_send(s_router, s_peer, s_peer_len, ZMQ_SNDMORE) >= 0);
    int has_body = frame_has_body(type);
    CHECK(zmq_send(s_router, hdr, n, has_body ? ZMQ_SNDMORE : 0) >= 0);
    if (has_body)
        CHECK(zmq_send(s_router, body, len, 0) >= 0);
}

static agent_str_t s_s(const char *s)
{
    return (agent_str_t){s, (uint32_t)strlen(s)};
}

static mp_buf_t s_buf;

static void s_accepted(uint64_t id, const char *child)
{
    char json[256];
    snprintf(json, sizeof json, "{\"run_id\":\"%s\",\"status\":\"running\",\"depth\":1}", child);
    orch_stream_t acc = {.json = s_s(json), .run_id = s_s(child), .session_id = s_s("s1"),
                         .run_status = s_s("running")};
    mp_buf_reset(&s_buf);
    CHECK(orch_encode_accepted(&s_buf, &acc) == 0);
    s_send(FRAME_STREAM, id, s_buf.data, s_buf.len);
}

/* The event JSON of seq: type and payload by a fixed script per seq. */
static void s_event_json(char *out, size_t cap, const char *child, uint64_t seq, const char *type,
                         const char *payload)
{
    snprintf(out, cap,
             "{\"event_id\":%llu,\"run_id\":\"%s\",\"session_id\":\"s1\",\"seq\":%llu,"
             "\"type\":\"%s\",\"payload\":%s,\"parent_run_id\":\"run_p\",\"depth\":1}",
             (unsigned long long)(100 + seq), child, (unsigned long long)seq, type, payload);
}

static void s_event(uint64_t id, const char *child, uint64_t seq, const char *type,
                    const char *payload)
{
    char json[512];
    s_event_json(json, sizeof json, child, seq, type, payload);
    int terminal = strncmp(type, "run_", 4) == 0 && strcmp(type, "run_started") != 0;
    orch_stream_t ev = {.json = s_s(json), .run_id = s_s(child), .session_id = s_s("s1"),
                        .type = s_s(type), .seq = seq, .terminal = terminal};
    mp_buf_reset(&s_buf);
    CHECK(orch_encode_event(&s_buf, &ev) == 0);
    s_send(FRAME_STREAM, id, s_buf.data, s_buf.len);
}

static void s_reply(uint64_t id, unsigned status, const char *json, const char *child)
{
    orch_reply_t rep = {.status = status, .json = s_s(json)};
    if (child) {
        rep.run_id = s_s(child);
        rep.run_status = s_s("done");
        rep.session_id = s_s("s1");
    }
    mp_buf_reset(&s_buf);
    CHECK(orch_encode_reply(&s_buf, &rep) == 0);
    s_send(FRAME_REPLY, id, s_buf.data, s_buf.len);
}

/* The script of a child's log: seq → (type, payload). */
static const char *const s_types[] = {"", "run_started", "user_input", "agent_invoke_started",
                                      "agent_stream_delta", "agent_stream_delta",
                                      "agent_invoke_done", "run_done"};
static const char *const s_payloads[] = {
    "", "{\"agent_id\":\"echo\"}", "{\"message\":{\"role\":\"user\",\"content\":\"hello\"}}",
    "{\"agent_id\":\"echo\"}", "{\"delta\":\"hel\"}", "{\"delta\":\"lo\"}",
    "{\"output\":{\"role\":\"assistant\",\"content\":\"hello\"}}", "{}"};
#define S_LAST 7
static const char *const s_whole =
    "1:run_started;2:user_input;3:agent_invoke_started;4:agent_stream_delta:hel;"
    "5:agent_stream_delta:lo;6:agent_invoke_done;7:run_done!;";

static void s_script(uint64_t id, const char *child, uint64_t seq)
{
    s_event(id, child, seq, s_types[seq], s_payloads[seq]);
}

/* An events page with seqs from..to of the script. */
static void s_page(uint64_t id, const char *child, uint64_t from, uint64_t to, int has_more)
{
    static char json[8192];
    size_t n = (size_t)snprintf(json, sizeof json, "{\"run_id\":\"%s\",\"events\":[", child);
    for (uint64_t s = from; s <= to; s++) {
        char ev[512];
        s_event_json(ev, sizeof ev, child, s, s_types[s], s_payloads[s]);
        n += (size_t)snprintf(json + n, sizeof json - n, "%s%s", s > from ? "," : "", ev);
    }
    snprintf(json + n, sizeof json - n, "],\"has_more\":%s,\"next_after_seq\":%llu}",
             has_more ? "true" : "false", (unsigned long long)to);
    s_reply(id, 200, json, child);
}

/* Expects an op `events` request for child after after_seq; returns its id. */
static uint64_t s_expect_fill(worker_t *w, const char *child, uint64_t after_seq)
{
    s_msg_t m;
    CHECK(s_recv(w, FRAME_REQUEST, &m) == 0);
    CHECK(m.f.service_len == 12 && memcmp(m.f.service, "orchestrator", 12) == 0);
    orch_request_t q;
    CHECK(orch_decode_request(m.body, m.body_len, &q) == AGENT_OK);
    CHECK(q.op.len == 6 && memcmp(q.op.ptr, "events", 6) == 0);
    CHECK(q.run_id.len == strlen(child) && memcmp(q.run_id.ptr, child, q.run_id.len) == 0);
    if (q.after_seq != after_seq)
        fprintf(stderr, "fill after_seq %llu, want %llu\n", (unsigned long long)q.after_seq,
                (unsigned long long)after_seq);
    CHECK(q.after_seq == after_seq);
    CHECK(q.limit > 0);
    return m.f.id;
}

static uint64_t s_start(worker_t *w, const char *tag, const char *call_id, s_msg_t *m)
{
    char err[128];
    call_spec_t spec = {.run_id = "run_p", .token = "0123456789abcdef0123456789abcdef",
                        .agent_id = "echo", .call_id = call_id, .content = "hello",
                        .content_len = 5};
    uint64_t h = call_start(s_calls, &spec, (void *)tag, err, sizeof err);
    CHECK(h > 0);
    CHECK(s_recv(w, FRAME_REQUEST, m) == 0);
    CHECK(m->f.id == h);
    return h;
}

/* The op `call` body, every key. */
static void s_test_body(worker_t *w)
{
    s_msg_t m;
    char err[128];
    agent_msg_t hist[1] = {{s_s("user"), s_s("earlier")}};
    call_spec_t spec = {.run_id = "run_p", .token = "0123456789abcdef0123456789abcdef",
                        .agent_id = "echo", .call_id = "c1", .content = "hello",
                        .content_len = 5, .history = hist, .history_count = 1};
    uint64_t h = call_start(s_calls, &spec, "b", err, sizeof err);
    CHECK(h > 0);
    CHECK(s_recv(w, FRAME_REQUEST, &m) == 0);
    CHECK(m.f.service_len == 12 && memcmp(m.f.service, "orchestrator", 12) == 0);
    mp_reader_t r;
    mp_reader_init(&r, m.body, m.body_len);
    char json[1024];
    CHECK(mp_to_json(&r, json, sizeof json, 8) == 0);
    const char *want = "{\"op\":\"call\",\"run_id\":\"run_p\","
                       "\"token\":\"0123456789abcdef0123456789abcdef\",\"call_id\":\"c1\","
                       "\"agent_id\":\"echo\",\"role\":\"user\",\"content\":\"hello\","
                       "\"history\":[{\"role\":\"user\",\"content\":\"earlier\"}]}";
    if (strcmp(json, want) != 0)
        fprintf(stderr, "body %s\n", json);
    CHECK(strcmp(json, want) == 0);
    /* The orchestrator's decoder takes it, every field where it belongs. */
    orch_request_t q;
    CHECK(orch_decode_request(m.body, m.body_len, &q) == AGENT_OK);
    CHECK(q.op.len == 4 && memcmp(q.op.ptr, "call", 4) == 0);
    CHECK(q.token.len == 32 && q.call_id.len == 2 && memcmp(q.call_id.ptr, "c1", 2) == 0);
    CHECK(q.run_id.len == 5 && q.agent_id.len == 4 && q.content.len == 5);
    CHECK(q.history_count == 1);
    CHECK(call_cancel(s_calls, h) == 0);
    s_expect("end:b:cancelled::cancelled:;");
    CHECK(s_recv(w, FRAME_CANCEL, &m) == 0 && m.f.id == h);

    /* Refused before anything is sent. */
    spec.token = NULL;
    CHECK(call_start(s_calls, &spec, "b", err, sizeof err) == 0);
    CHECK(strstr(err, "token") != NULL);
    spec.token = "t";
    spec.agent_id = "bad id";
    CHECK(call_start(s_calls, &spec, "b", err, sizeof err) == 0);
    spec.agent_id = "echo";
    spec.call_id = NULL; /* generated */
    h = call_start(s_calls, &spec, "b", err, sizeof err);
    CHECK(h > 0);
    CHECK(s_recv(w, FRAME_REQUEST, &m) == 0);
    mp_reader_init(&r, m.body, m.body_len);
    CHECK(mp_to_json(&r, json, sizeof json, 8) == 0);
    CHECK(strstr(json, "\"call_id\":\"call_") != NULL);
    CHECK(call_cancel(s_calls, h) == 0);
    CHECK(call_cancel(s_calls, h) == -1);
    CHECK(s_recv(w, FRAME_CANCEL, &m) == 0 && m.f.id == h);
    s_log[0] = '\0';
}

/* Everything in order, then the REPLY. */
static void s_test_in_order(worker_t *w)
{
    s_msg_t m;
    uint64_t h = s_start(w, "a", "c1", &m);
    s_accepted(h, "run_c1");
    for (uint64_t s = 1; s <= S_LAST; s++)
        s_script(h, "run_c1", s);
    s_pump(w, 30);
    char want[1024];
    snprintf(want, sizeof want, "acc:a:run_c1;%s", s_whole);
    s_expect(want); /* the end waits for the follow's REPLY */
    s_reply(h, 200, "{\"run_id\":\"run_c1\"}", "run_c1");
    s_pump(w, 30);
    s_expect("end:a:done:run_c1::hello;");
    CHECK(call_set_active(s_calls) == 0);
}

/* A gap: 1, 2, then 5 live. The fill asks after 2; 6 arriving live
 * meanwhile is dropped; the page brings 3..5; 6 is filled again (it came
 * live past the page); a repeat of 6 is dropped; 7 and the REPLY end it. */
static void s_test_gap(worker_t *w)
{
    s_msg_t m;
    uint64_t h = s_start(w, "g", "c2", &m);
    s_accepted(h, "run_c2");
    s_script(h, "run_c2", 1);
    s_script(h, "run_c2", 2);
    s_script(h, "run_c2", 5);
    uint64_t fill = s_expect_fill(w, "run_c2", 2);
    s_script(h, "run_c2", 6);
    s_pump(w, 20);
    s_expect("acc:g:run_c2;1:run_started;2:user_input;");
    s_page(fill, "run_c2", 3, 5, 0);
    fill = s_expect_fill(w, "run_c2", 5);
    s_expect("3:agent_invoke_started;4:agent_stream_delta:hel;5:agent_stream_delta:lo;");
    s_page(fill, "run_c2", 6, 6, 0);
    s_pump(w, 20);
    s_expect("6:agent_invoke_done;");
    s_script(h, "run_c2", 6);
    s_script(h, "run_c2", 7);
    s_reply(h, 200, "{}", "run_c2");
    s_pump(w, 30);
    s_expect("7:run_done!;end:g:done:run_c2::hello;");
    CHECK(call_set_active(s_calls) == 0);
}

/* The follow ends after a page short of the terminal event: read in two
 * pages (has_more), then the end. */
static void s_test_short_follow(worker_t *w)
{
    s_msg_t m;
    uint64_t h = s_start(w, "s", "c3", &m);
    s_accepted(h, "run_c3");
    s_script(h, "run_c3", 1);
    s_reply(h, 200, "{}", "run_c3");
    uint64_t fill = s_expect_fill(w, "run_c3", 1);
    s_page(fill, "run_c3", 2, 4, 1);
    fill = s_expect_fill(w, "run_c3", 4);
    s_page(fill, "run_c3", 5, 7, 0);
    s_pump(w, 30);
    char want[1024];
    snprintf(want, sizeof want, "acc:s:run_c3;%send:s:done:run_c3::hello;", s_whole);
    s_expect(want);
}

/* A child that fails; a refusal; cancel with late frames; the link lost. */
static void s_test_ends(worker_t *w)
{
    s_msg_t m;
    uint64_t h = s_start(w, "f", "c4", &m);
    s_accepted(h, "run_c4");
    s_event(h, "run_c4", 1, "run_started", "{\"agent_id\":\"echo\"}");
    s_event(h, "run_c4", 2, "run_failed",
            "{\"error\":{\"code\":\"worker_lost\",\"message\":\"gone\"}}");
    s_reply(h, 200, "{}", "run_c4");
    s_pump(w, 30);
    s_expect("acc:f:run_c4;1:run_started;2:run_failed!;end:f:failed:run_c4:worker_lost:;");

    h = s_start(w, "r", "c5", &m);
    s_reply(h, 409, "{\"error\":{\"code\":\"call_refused\",\"message\":\"call depth limit (5) "
                    "reached\"}}", NULL);
    s_pump(w, 30);
    s_expect("end:r:refused::call_refused:;");

    h = s_start(w, "x", "c6", &m);
    s_accepted(h, "run_c6");
    s_script(h, "run_c6", 1);
    s_pump(w, 20);
    CHECK(call_cancel(s_calls, h) == 0);
    s_expect("acc:x:run_c6;1:run_started;end:x:cancelled:run_c6:cancelled:;");
    CHECK(s_recv(w, FRAME_CANCEL, &m) == 0 && m.f.id == h);
    s_script(h, "run_c6", 2); /* late frames: consumed, never the agent's */
    uint8_t hdr[FRAME_HEADER_MAX];
    size_t n = frame_encode_error(h, "cancelled", "cancelled by requester", hdr, sizeof hdr);
    CHECK(zmq_send(s_router, s_peer, s_peer_len, ZMQ_SNDMORE) >= 0);
    CHECK(zmq_send(s_router, hdr, n, 0) >= 0);
    s_pump(w, 30);
    s_expect("");
    CHECK(call_set_active(s_calls) == 0);

    h = s_start(w, "l", "c7", &m);
    s_accepted(h, "run_c7");
    s_send(FRAME_DISCONNECT, 0, NULL, 0);
    s_pump(w, 30);
    s_expect("acc:l:run_c7;end:l:lost:run_c7:broker_lost:;");
}

static void s_link(worker_t *w)
{
    s_msg_t m;
    CHECK(s_recv(w, FRAME_READY, &m) == 0);
    CHECK(s_recv(w, FRAME_SERVICES, &m) == 0);
    s_send(FRAME_REPLY, m.f.id, "\x90", 1);
    int64_t deadline = clock_mono_ms() + 2000;
    while (!worker_linked(w) && clock_mono_ms() < deadline)
        s_pump(w, 5);
    CHECK(worker_linked(w));
}

int main(void)
{
    void *ctx = zmq_ctx_new();
    s_router = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(s_router, ZMQ_LINGER, &zero, sizeof zero);
    CHECK(zmq_bind(s_router, "tcp://127.0.0.1:*") == 0);
    char endpoint[128];
    size_t size = sizeof endpoint;
    zmq_getsockopt(s_router, ZMQ_LAST_ENDPOINT, endpoint, &size);
    mp_buf_init(&s_buf, 1 << 16);

    worker_config_t cfg = {.endpoint = endpoint, .service = "caller", .heartbeat_ms = 1000};
    worker_handlers_t wh = {.on_stream = s_w_stream, .on_reply = s_w_reply, .on_error = s_w_error};
    char err[256];
    worker_t *w = worker_new(&cfg, &wh, NULL, err, sizeof err);
    CHECK(w != NULL);
    call_handlers_t ch = {s_on_accepted, s_on_event, s_on_end};
    s_calls = call_set_new(w, &ch, 0);
    s_link(w);

    s_test_body(w);
    s_test_in_order(w);
    s_test_gap(w);
    s_test_short_follow(w);
    s_test_ends(w);

    call_set_destroy(&s_calls);
    CHECK(s_calls == NULL);
    worker_destroy(&w);
    mp_buf_free(&s_buf);
    zmq_close(s_router);
    zmq_ctx_term(ctx);
    printf("call_test: ok\n");
    return 0;
}
