/* worker_test: the worker library against a scripted broker (a raw ROUTER on
 * loopback in this process): announce and probe, link up, requesting,
 * serving, cancel in both directions, bad frames, DISCONNECT, silence and
 * the config errors. Every step checks the exact frames and callbacks. */
#include "worker.h"

#include "tests/support/check.h"
#include "common/clock.h"
#include "proto/frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

/* ---- callbacks record events as text -------------------------------------------- */

static char s_events[4096];

static void s_event(const char *fmt, unsigned long long id, const char *text)
{
    size_t n = strlen(s_events);
    snprintf(s_events + n, sizeof s_events - n, fmt, id, text);
}

static void s_on_request(worker_t *w, uint64_t id, const uint8_t *body, size_t len, void *arg)
{
    char text[64];
    snprintf(text, sizeof text, "%.*s", (int)len, (const char *)body);
    s_event("request:%llu:%s;", (unsigned long long)id, text);
}

static void s_on_cancel(worker_t *w, uint64_t id, void *arg)
{
    s_event("cancel:%llu%s;", (unsigned long long)id, "");
}

static void s_on_stream(worker_t *w, uint64_t id, const uint8_t *body, size_t len, void *arg)
{
    char text[64];
    snprintf(text, sizeof text, "%.*s", (int)len, (const char *)body);
    s_event("stream:%llu:%s;", (unsigned long long)id, text);
}

static void s_on_reply(worker_t *w, uint64_t id, const uint8_t *body, size_t len, void *arg)
{
    char text[64];
    snprintf(text, sizeof text, "%.*s", (int)len, (const char *)body);
    s_event("reply:%llu:%s;", (unsigned long long)id, text);
}

static void s_on_error(worker_t *w, uint64_t id, const char *code, const char *message, void *arg)
{
    s_event("error:%llu:%s;", (unsigned long long)id, code);
    CHECK(message != NULL);
}

static void s_on_link(worker_t *w, int up, void *arg)
{
    s_event("link:%llu%s;", (unsigned long long)up, "");
}

/* ---- the scripted broker ----------------------------------------------------------- */

static void *s_router;
static uint8_t s_peer[256]; /* routing id of the worker */
static size_t s_peer_len;
static int s_beat = 1;      /* send HEARTBEATs while the worker is linked */
static int64_t s_next_beat;

static void s_heartbeat(worker_t *w)
{
    int64_t now = clock_mono_ms();
    if (!s_beat || !worker_linked(w) || now < s_next_beat)
        return;
    uint8_t hdr[16];
    size_t n = frame_encode_id(FRAME_HEARTBEAT, 0, hdr, sizeof hdr);
    zmq_send(s_router, s_peer, s_peer_len, ZMQ_SNDMORE);
    zmq_send(s_router, hdr, n, 0);
    s_next_beat = now + 30;
}

typedef struct {
    frame_t f;
    char text[256];      /* header strings copied: the frame's views point here */
    uint8_t body[4096];
    size_t body_len;
    int has_body;
} s_msg_t;

/* Receives the next frame from the worker, running worker_process meanwhile.
 * HEARTBEATs are skipped unless asked for. Returns 0, or -1 after 2 s. */
static int s_recv(worker_t *w, frame_type_t want, s_msg_t *m)
{
    int64_t deadline = clock_mono_ms() + 2000;
    while (clock_mono_ms() < deadline) {
        worker_process(w);
        s_heartbeat(w);
        zmq_pollitem_t item = {s_router, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 5) <= 0)
            continue;
        int n = zmq_recv(s_router, s_peer, sizeof s_peer, 0);
        CHECK(n > 0);
        s_peer_len = (size_t)n;
        uint8_t hdr[FRAME_HEADER_MAX];
        int hn = zmq_recv(s_router, hdr, sizeof hdr, 0);
        CHECK(hn > 0);
        int more = 0;
        size_t size = sizeof more;
        zmq_getsockopt(s_router, ZMQ_RCVMORE, &more, &size);
        m->has_body = more;
        m->body_len = 0;
        if (more) {
            int bn = zmq_recv(s_router, m->body, sizeof m->body, 0);
            CHECK(bn >= 0);
            m->body_len = (size_t)bn;
        }
        memcpy(m->text, hdr, (size_t)hn);
        CHECK(frame_decode(m->text, (size_t)hn, more, &m->f) == FRAME_OK);
        if (m->f.type == FRAME_HEARTBEAT && want != FRAME_HEARTBEAT)
            continue;
        if (m->f.type == FRAME_SERVICES && (m->f.id >> 63) && want != FRAME_SERVICES)
            continue; /* the probe after READY */
        if (m->f.type != want)
            fprintf(stderr, "got %s, want %s\n", frame_type_name(m->f.type),
                    frame_type_name(want));
        CHECK(m->f.type == want);
        return 0;
    }
    return -1;
}

/* Sends raw parts to the worker. */
static void s_send_parts(const void *hdr, size_t hdr_len, const void *body, size_t body_len,
                         int has_body)
{
    CHECK(zmq_send(s_router, s_peer, s_peer_len, ZMQ_SNDMORE) >= 0);
    CHECK(zmq_send(s_router, hdr, hdr_len, has_body ? ZMQ_SNDMORE : 0) >= 0);
    if (has_body)
        CHECK(zmq_send(s_router, body, body_len, 0) >= 0);
}

static void s_send_frame(const frame_t *f, const char *body)
{
    uint8_t hdr[FRAME_HEADER_MAX];
    size_t n = frame_encode(f, hdr, sizeof hdr);
    CHECK(n > 0);
    s_send_parts(hdr, n, body, body ? strlen(body) : 0, frame_has_body(f->type));
}

static void s_send_id(frame_type_t type, uint64_t id, const char *body)
{
    frame_t f = {.type = type, .id = id};
    s_send_frame(&f, body);
}

/* Runs the worker for ms milliseconds. */
static void s_run(worker_t *w, long ms)
{
    int64_t end = clock_mono_ms() + ms;
    while (clock_mono_ms() < end) {
        zmq_pollitem_t item = {worker_socket(w), 0, ZMQ_POLLIN, 0};
        zmq_poll(&item, 1, 2);
        while (worker_process(w) > 0)
            ;
        s_heartbeat(w);
    }
}

/* Runs the worker until s_events contains text. */
static void s_wait_event(worker_t *w, const char *text)
{
    int64_t deadline = clock_mono_ms() + 2000;
    while (!strstr(s_events, text) && clock_mono_ms() < deadline)
        s_run(w, 5);
    if (!strstr(s_events, text))
        fprintf(stderr, "events '%s' lack '%s'\n", s_events, text);
    CHECK(strstr(s_events, text) != NULL);
}

static void s_expect_events(const char *want)
{
    if (strcmp(s_events, want) != 0)
        fprintf(stderr, "events '%s', want '%s'\n", s_events, want);
    CHECK(strcmp(s_events, want) == 0);
    s_events[0] = '\0';
}

static uint64_t s_probe; /* id of the last probe seen */

/* Expects READY [svc, capacity] and the SERVICES probe (a new id each time,
 * top bit set), then links up. */
static void s_announce(worker_t *w, uint32_t capacity)
{
    s_msg_t m;
    CHECK(s_recv(w, FRAME_READY, &m) == 0);
    CHECK(m.f.service_len == 3 && memcmp(m.f.service, "svc", 3) == 0);
    CHECK(m.f.capacity == capacity);
    CHECK(s_recv(w, FRAME_SERVICES, &m) == 0);
    CHECK((m.f.id >> 63) == 1 && m.f.id != s_probe);
    s_probe = m.f.id;
    CHECK(!worker_linked(w));
    s_send_id(FRAME_REPLY, s_probe, "\x90"); /* the probe's answer: [] */
    s_wait_event(w, "link:1;");
    CHECK(worker_linked(w));
    s_expect_events("link:1;");
}

static void s_test_config(void)
{
    char err[256];
    worker_config_t cfg = {.endpoint = "", .service = "svc"};
    worker_handlers_t h = {0};
    CHECK(worker_new(&cfg, &h, NULL, err, sizeof err) == NULL);
    CHECK(strstr(err, "endpoint") != NULL);
    cfg.endpoint = "nonsense://x";
    CHECK(worker_new(&cfg, &h, NULL, err, sizeof err) == NULL);
    CHECK(strstr(err, "nonsense://x") != NULL);
    cfg.endpoint = "tcp://127.0.0.1:1";
    cfg.service = "";
    CHECK(worker_new(&cfg, &h, NULL, err, sizeof err) == NULL);
    CHECK(strstr(err, "service") != NULL);
    cfg.service = "svc";
    cfg.capacity = FRAME_CAPACITY_MAX + 1;
    CHECK(worker_new(&cfg, &h, NULL, err, sizeof err) == NULL);
    CHECK(strstr(err, "capacity") != NULL);
    /* A broker that is not there: created, not linked, requests refused. */
    cfg.capacity = 1;
    worker_t *w = worker_new(&cfg, &h, NULL, err, sizeof err);
    CHECK(w != NULL);
    CHECK(!worker_linked(w));
    CHECK(worker_request(w, "x", "a", 1) == 0);
    CHECK(worker_services(w) == 0);
    CHECK(worker_cancel(w, 1) == -1);
    CHECK(worker_stream(w, 1, "a", 1) == -1);
    CHECK(worker_timeout_ms(w) <= 1000);
    worker_destroy(&w);
    CHECK(w == NULL);
    worker_destroy(&w);
}

int main(void)
{
    s_test_config();

    void *ctx = zmq_ctx_new();
    s_router = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(s_router, ZMQ_LINGER, &zero, sizeof zero);
    CHECK(zmq_bind(s_router, "tcp://127.0.0.1:*") == 0);
    char endpoint[128];
    size_t size = sizeof endpoint;
    zmq_getsockopt(s_router, ZMQ_LAST_ENDPOINT, endpoint, &size);

    worker_config_t cfg = {.endpoint = endpoint,
                           .service = "svc",
                           .capacity = 2,
                           .heartbeat_ms = 50,
                           .liveness = 3,
                           .body_max = 1024};
    worker_handlers_t h = {s_on_request, s_on_cancel, s_on_stream,
                           s_on_reply,   s_on_error,  s_on_link};
    char err[256];
    worker_t *w = worker_new(&cfg, &h, NULL, err, sizeof err);
    CHECK(w != NULL);
    s_announce(w, 2);
    s_msg_t m;

    /* Heartbeats flow while linked. */
    CHECK(s_recv(w, FRAME_HEARTBEAT, &m) == 0);

    /* Requesting: stream, reply; late frames for an ended id are ignored. */
    uint64_t id = worker_request(w, "other", "abc", 3);
    CHECK(id == 1);
    CHECK(worker_pending(w) == 1);
    CHECK(s_recv(w, FRAME_REQUEST, &m) == 0);
    CHECK(m.f.id == 1 && m.f.service_len == 5 && memcmp(m.f.service, "other", 5) == 0);
    CHECK(m.has_body && m.body_len == 3 && memcmp(m.body, "abc", 3) == 0);
    s_send_id(FRAME_STREAM, 1, "d1");
    s_send_id(FRAME_STREAM, 1, "d2");
    s_send_id(FRAME_REPLY, 1, "done");
    s_send_id(FRAME_STREAM, 1, "late");
    s_wait_event(w, "reply:1:done;");
    s_run(w, 20);
    s_expect_events("stream:1:d1;stream:1:d2;reply:1:done;");
    CHECK(worker_pending(w) == 0);

    /* An ERROR ends a request; a body over body_max is refused. */
    CHECK(worker_request(w, "other", "x", 1) == 2);
    CHECK(s_recv(w, FRAME_REQUEST, &m) == 0);
    frame_t e = {.type = FRAME_ERROR, .id = 2, .code = "overloaded", .code_len = 10,
                 .message = "full", .message_len = 4};
    s_send_frame(&e, NULL);
    s_wait_event(w, "error:2:overloaded;");
    s_expect_events("error:2:overloaded;");
    static char big[2048];
    CHECK(worker_request(w, "other", big, sizeof big) == 0);

    /* Cancelling our request: CANCEL goes out, the broker's ERROR ends it. */
    CHECK(worker_request(w, "other", "y", 1) == 3);
    CHECK(s_recv(w, FRAME_REQUEST, &m) == 0);
    CHECK(worker_cancel(w, 3) == 0);
    CHECK(s_recv(w, FRAME_CANCEL, &m) == 0);
    CHECK(m.f.id == 3);
    e = (frame_t){.type = FRAME_ERROR, .id = 3, .code = "cancelled", .code_len = 9,
                  .message = "", .message_len = 0};
    s_send_frame(&e, NULL);
    s_wait_event(w, "error:3:cancelled;");
    s_expect_events("error:3:cancelled;");
    CHECK(worker_cancel(w, 3) == -1);

    /* SERVICES: answered by REPLY with the same id. */
    uint64_t sid = worker_services(w);
    CHECK(sid == 4);
    CHECK(s_recv(w, FRAME_SERVICES, &m) == 0);
    CHECK(m.f.id == sid);
    s_send_id(FRAME_REPLY, sid, "\x90");
    s_wait_event(w, "reply:4:");
    s_expect_events("reply:4:\x90;");

    /* Serving: stream, reply, then the id is closed. */
    frame_t rq = {.type = FRAME_REQUEST, .id = 100, .service = "svc", .service_len = 3};
    s_send_frame(&rq, "in");
    s_wait_event(w, "request:100:in;");
    s_expect_events("request:100:in;");
    CHECK(worker_active(w) == 1);
    CHECK(worker_stream(w, 100, "s1", 2) == 0);
    CHECK(s_recv(w, FRAME_STREAM, &m) == 0);
    CHECK(m.f.id == 100 && m.body_len == 2 && memcmp(m.body, "s1", 2) == 0);
    CHECK(worker_stream(w, 100, big, sizeof big) == -1); /* over body_max */
    CHECK(worker_reply(w, 100, "out", 3) == 0);
    CHECK(s_recv(w, FRAME_REPLY, &m) == 0);
    CHECK(m.f.id == 100 && m.body_len == 3);
    CHECK(worker_reply(w, 100, "again", 5) == -1);
    CHECK(worker_fail(w, 100, "internal", "x") == -1);
    CHECK(worker_active(w) == 0);

    /* worker_fail sends ERROR. */
    rq.id = 101;
    s_send_frame(&rq, "in");
    s_wait_event(w, "request:101:in;");
    s_expect_events("request:101:in;");
    CHECK(worker_fail(w, 101, "bad_request", "no") == 0);
    CHECK(s_recv(w, FRAME_ERROR, &m) == 0);
    CHECK(m.f.id == 101 && m.f.code_len == 11 && memcmp(m.f.code, "bad_request", 11) == 0);

    /* CANCEL from the broker: the library answers ERROR cancelled at once,
     * calls on_cancel, and refuses later answers. */
    rq.id = 102;
    s_send_frame(&rq, "in");
    s_wait_event(w, "request:102:in;");
    s_expect_events("request:102:in;");
    s_send_id(FRAME_CANCEL, 102, NULL);
    s_wait_event(w, "cancel:102;");
    s_expect_events("cancel:102;");
    CHECK(s_recv(w, FRAME_ERROR, &m) == 0);
    CHECK(m.f.id == 102 && m.f.code_len == 9 && memcmp(m.f.code, "cancelled", 9) == 0);
    CHECK(worker_stream(w, 102, "s", 1) == -1);
    CHECK(worker_reply(w, 102, "s", 1) == -1);
    s_send_id(FRAME_CANCEL, 102, NULL); /* again: ignored */

    /* Bad frames are dropped; a request too large is answered too_large. */
    s_send_parts("\xff\x00\x13", 3, NULL, 0, 0);
    s_send_parts("\x93\x02\x05\x01", 4, "b", 1, 1); /* version 2 */
    s_send_parts("\x92\x01\x63", 3, NULL, 0, 0);    /* type 99 */
    s_send_parts("", 0, NULL, 0, 0);
    s_send_parts("\xdd\x10\x00\x00\x00", 5, NULL, 0, 0);
    CHECK(zmq_send(s_router, s_peer, s_peer_len, ZMQ_SNDMORE) >= 0);
    for (int i = 0; i < 4; i++) /* too many parts */
        CHECK(zmq_send(s_router, "x", 1, i < 3 ? ZMQ_SNDMORE : 0) >= 0);
    rq.id = 103;
    uint8_t hdr[FRAME_HEADER_MAX];
    s_send_parts(hdr, frame_encode(&rq, hdr, sizeof hdr), big, sizeof big, 1); /* > body_max */
    CHECK(s_recv(w, FRAME_ERROR, &m) == 0);
    CHECK(m.f.id == 103 && m.f.code_len == 9 && memcmp(m.f.code, "too_large", 9) == 0);
    s_run(w, 20);
    s_expect_events(""); /* none of it reached a handler */
    CHECK(worker_linked(w));

    /* DISCONNECT: every live id is reported, then READY again. */
    rq.id = 104;
    s_send_frame(&rq, "in");
    s_wait_event(w, "request:104:in;");
    s_expect_events("request:104:in;");
    CHECK(worker_request(w, "other", "z", 1) == 5);
    CHECK(s_recv(w, FRAME_REQUEST, &m) == 0);
    s_send_id(FRAME_DISCONNECT, 0, NULL);
    s_wait_event(w, "link:0;");
    s_expect_events("error:5:broker_lost;cancel:104;link:0;");
    CHECK(worker_pending(w) == 0 && worker_active(w) == 0);
    CHECK(worker_stream(w, 104, "s", 1) == -1);
    CHECK(worker_request(w, "other", "z", 1) == 0); /* link down */
    s_announce(w, 2);

    /* Silence: after liveness x heartbeat the link is lost and READY
     * follows. */
    s_beat = 0;
    s_wait_event(w, "link:0;");
    s_expect_events("link:0;");
    s_beat = 1;
    s_announce(w, 2);

    /* A second DISCONNECT while unlinked only re-announces. */
    s_send_id(FRAME_DISCONNECT, 0, NULL);
    s_wait_event(w, "link:0;");
    s_expect_events("link:0;");
    CHECK(s_recv(w, FRAME_READY, &m) == 0);
    s_send_id(FRAME_DISCONNECT, 0, NULL);
    CHECK(s_recv(w, FRAME_READY, &m) == 0);
    s_expect_events("");
    /* READY unanswered for liveness x heartbeat, not even by DISCONNECT:
     * sent again. */
    int64_t t_ready = clock_mono_ms();
    CHECK(s_recv(w, FRAME_READY, &m) == 0);
    CHECK(clock_mono_ms() - t_ready >= 100); /* not before the silence */
    CHECK(s_recv(w, FRAME_SERVICES, &m) == 0);
    uint64_t old_probe = s_probe;
    s_probe = m.f.id;
    CHECK(s_probe != old_probe && (s_probe >> 63) == 1);
    s_expect_events("");
    /* What a dead broker may have left queued does not bring the link up:
     * a HEARTBEAT, or the answer to an earlier probe. */
    s_send_id(FRAME_HEARTBEAT, 0, NULL);
    s_send_id(FRAME_REPLY, old_probe, "\x90");
    s_run(w, 30);
    s_expect_events("");
    CHECK(!worker_linked(w));
    /* A REQUEST is served meanwhile (a broker may hand work over right
     * after READY, before it reads the probe); the probe's answer links. */
    rq.id = 105;
    s_send_frame(&rq, "early");
    s_wait_event(w, "request:105:early;");
    CHECK(!worker_linked(w));
    s_send_id(FRAME_REPLY, s_probe, "\x90");
    s_wait_event(w, "link:1;");
    s_expect_events("request:105:early;link:1;");

    /* A message that arrives while we send is announced by
     * worker_readable (and worker_timeout_ms 0), whatever the fd says. */
    while (worker_process(w) > 0)
        ;
    CHECK(!worker_readable(w));
    s_send_id(FRAME_HEARTBEAT, 0, NULL);
    int sent = 0;
    for (; sent < 50 && !worker_readable(w); sent++) {
        usleep(2000);
        CHECK(worker_request(w, "other", "r", 1) > 0); /* a send: the state is read again */
    }
    CHECK(worker_readable(w));
    CHECK(worker_timeout_ms(w) == 0);
    while (worker_process(w) > 0)
        ;
    CHECK(!worker_readable(w));
    for (int i = 0; i < sent; i++) { /* the requests sent above, ended */
        CHECK(s_recv(w, FRAME_REQUEST, &m) == 0);
        frame_t end = {.type = FRAME_ERROR, .id = m.f.id, .code = "overloaded", .code_len = 10};
        s_send_frame(&end, NULL);
    }
    s_run(w, 20);
    s_events[0] = '\0';
    CHECK(worker_pending(w) == 0);

    /* Destroy says goodbye. */
    worker_destroy(&w);
    int64_t deadline = clock_mono_ms() + 2000;
    int got_disconnect = 0;
    while (!got_disconnect && clock_mono_ms() < deadline) {
        zmq_pollitem_t item = {s_router, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 10) <= 0)
            continue;
        uint8_t buf[256];
        zmq_recv(s_router, buf, sizeof buf, 0);
        int n = zmq_recv(s_router, buf, sizeof buf, 0);
        frame_t f;
        if (n > 0 && frame_decode(buf, (size_t)n, 0, &f) == FRAME_OK && f.type == FRAME_DISCONNECT)
            got_disconnect = 1;
    }
    CHECK(got_disconnect);
    zmq_close(s_router);
    zmq_ctx_term(ctx);
    printf("worker_test: ok\n");
    return 0;
}
