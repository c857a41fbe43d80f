/* out_test: what the broker sends and copies to its tap. A frame reaches
 * its peer as [header, body?] and is counted; a DISCONNECT reaches a routing
 * id the broker has no peer for; a send to a vanished peer fails, is counted
 * as dropped and leaves the peer for the end of the turn, when it is
 * released (a worker's requests fail as any lost worker's do); the tap
 * copies [meta, header, body?] only while someone subscribes, and at its
 * high-water mark drops and counts the copy while the frame still goes.
 *
 * The broker's loop does not run: the test calls out.c and reads what
 * reaches its raw DEALERs and a SUB on the tap (testkit.h). */
#include "out.h"

#include "registry.h"
#include "testkit.h"

#include "common/clock.h"
#include "common/log.h"
#include "proto/mp.h"
#include "tests/support/check.h"

#include <stdio.h>
#include <string.h>

#define S_TAP_SENDS_MAX 1000000 /* copies tried before the tap must have dropped one */

static size_t s_reply(uint64_t id, uint8_t *hdr)
{
    return frame_encode_id(FRAME_REPLY, id, hdr, FRAME_HEADER_MAX);
}

static void test_send(void)
{
    testkit_t kit;
    testkit_start(&kit, 10, 0);
    broker_t *b = kit.broker;
    void *sw, *sr;
    peer_t *w = testkit_join(&kit, "w1", "echo", 1, &sw);
    peer_t *r = testkit_join(&kit, "r1", "client", 0, &sr);
    uint64_t out0 = b->stats.frames_out;

    uint8_t hdr[FRAME_HEADER_MAX];
    size_t n = s_reply(5, hdr);
    zmq_msg_t body;
    testkit_body(&body, "hello");
    CHECK(out_send(b, w, hdr, n, &body, "echo") == 0);
    testkit_frame_t got;
    testkit_expect(sw, FRAME_REPLY, 5, &got);
    CHECK(strcmp(got.body, "hello") == 0);
    CHECK(b->stats.frames_out == out0 + 1);

    out_send_error(b, r, 9, "too_large", "over the maximum", "");
    testkit_expect(sr, FRAME_ERROR, 9, &got);
    CHECK(got.body[0] == '\0');
    CHECK(got.f.code_len == 9 && memcmp(got.f.code, "too_large", 9) == 0);
    CHECK(got.f.message_len == 16 && memcmp(got.f.message, "over the maximum", 16) == 0);
    CHECK(b->stats.frames_out == out0 + 2);

    /* A routing id with no peer behind it (w1, once released) still gets
     * its DISCONNECT; it is not counted, and one nobody has is no error. */
    registry_mark_dead(b, w, "test");
    registry_reap(b);
    out_send_disconnect_raw(b, "w1", 2);
    testkit_expect(sw, FRAME_DISCONNECT, 0, NULL);
    uint64_t dropped = b->stats.frames_dropped;
    out_send_disconnect_raw(b, "nobody", 6);
    CHECK(b->stats.frames_out == out0 + 2 && b->stats.frames_dropped == dropped);
    testkit_expect_quiet(&kit, r, sr);
    testkit_stop(&kit);
}

static void test_unreachable(void)
{
    testkit_t kit;
    testkit_start(&kit, 10, 0);
    broker_t *b = kit.broker;
    void *sr;
    peer_t *r = testkit_join(&kit, "r1", "client", 0, &sr);
    peer_t *ghost = testkit_register(&kit, "ghost", "client", 0);
    uint64_t dropped = b->stats.frames_dropped, out0 = b->stats.frames_out;

    uint8_t hdr[FRAME_HEADER_MAX];
    size_t n = s_reply(1, hdr);
    zmq_msg_t body;
    testkit_body(&body, "lost"); /* closed by the failed send: a leak would show */
    CHECK(out_send(b, ghost, hdr, n, &body, "") == -1);
    CHECK(b->stats.frames_dropped == dropped + 1 && b->stats.frames_out == out0);
    CHECK(ghost->unreachable == 1 && !ghost->dead && b->unreachable == ghost);
    /* Marked: later sends fail at once, uncounted. */
    testkit_body(&body, "lost again");
    CHECK(out_send(b, ghost, hdr, n, &body, "") == -1);
    CHECK(b->stats.frames_dropped == dropped + 1 && b->unreachable == ghost);
    uint64_t key;
    CHECK(registry_peer_find(b, "ghost", 5, &key) == ghost); /* until the end of the turn */
    registry_reap(b);
    CHECK(registry_peer_find(b, "ghost", 5, &key) == NULL && b->unreachable == NULL);

    /* A worker that vanished: its request counts as delivered, the next one
     * waits (it is not picked), and at the end of the turn it is released
     * like any lost worker. */
    peer_t *gw = testkit_register(&kit, "gw", "echo", 1);
    service_t *svc = gw->service;
    testkit_body(&body, "first");
    CHECK(registry_route(b, r, 21, svc, &body) == REGISTRY_DELIVERED);
    CHECK(gw->unreachable == 1 && hmap_size(gw->serving) == 1);
    testkit_body(&body, "second");
    CHECK(registry_route(b, r, 22, svc, &body) == REGISTRY_QUEUED);
    testkit_expect_quiet(&kit, r, sr);
    registry_reap(b);
    testkit_expect_error(sr, 21, "worker_lost");
    testkit_expect_error(sr, 22, "unknown_service");
    CHECK(hmap_size(b->requests) == 0 && registry_service_get(b, "echo", 4) == NULL);
    CHECK(registry_peer_find(b, "gw", 2, &key) == NULL && registry_peer_find(b, "r1", 2, &key) == r);
    testkit_stop(&kit);
}

/* Drains the tap's subscription messages until it counts want (bounded). */
static void s_tap_wait(broker_t *b, int want)
{
    int64_t deadline = clock_mono_ms() + TESTKIT_WAIT_MS;
    for (;;) {
        out_tap_drain(b);
        if (b->tap_subscribed == want)
            return;
        int64_t left = deadline - clock_mono_ms();
        CHECK(left > 0);
        zmq_pollitem_t item = {b->tap, 0, ZMQ_POLLIN, 0};
        CHECK(zmq_poll(&item, 1, (long)left) >= 0);
    }
}

/* Receives one copy from the tap and checks its meta. OUT: hdr (n bytes),
 * body ("" without). */
static void s_tap_copy(void *sub, const char *dir, const char *peer, const char *service,
                       const char *note, uint8_t *hdr, int *n, char *body, size_t body_cap)
{
    zmq_pollitem_t item = {sub, 0, ZMQ_POLLIN, 0};
    CHECK(zmq_poll(&item, 1, TESTKIT_WAIT_MS) == 1);
    uint8_t meta[256];
    int mlen = zmq_recv(sub, meta, sizeof meta, 0);
    CHECK(mlen > 0 && (size_t)mlen <= sizeof meta);
    int more = 0;
    size_t ml = sizeof more;
    CHECK(zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &ml) == 0 && more);
    *n = zmq_recv(sub, hdr, FRAME_HEADER_MAX, 0);
    CHECK(*n > 0);
    body[0] = '\0';
    CHECK(zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &ml) == 0);
    if (more) {
        int b = zmq_recv(sub, body, body_cap - 1, 0);
        CHECK(b >= 0);
        body[(size_t)b < body_cap - 1 ? (size_t)b : body_cap - 1] = '\0';
        CHECK(zmq_getsockopt(sub, ZMQ_RCVMORE, &more, &ml) == 0 && !more);
    }

    mp_reader_t rd;
    mp_reader_init(&rd, meta, (size_t)mlen);
    uint32_t count, len;
    uint64_t version, ts;
    const char *s;
    CHECK(mp_read_array(&rd, &count) == 0 && count == 6);
    CHECK(mp_read_uint(&rd, &version) == 0 && version == 1);
    const char *want[] = {dir, peer, service};
    for (int i = 0; i < 3; i++) {
        CHECK(mp_read_str(&rd, &s, &len, 64) == 0);
        CHECK(len == strlen(want[i]) && memcmp(s, want[i], len) == 0);
    }
    CHECK(mp_read_uint(&rd, &ts) == 0 && ts > 0);
    CHECK(mp_read_str(&rd, &s, &len, 64) == 0);
    CHECK(len == strlen(note) && memcmp(s, note, len) == 0);
    CHECK(mp_left(&rd) == 0);
}

static void test_tap(void)
{
    testkit_t kit;
    testkit_start(&kit, 10, 1);
    broker_t *b = kit.broker;
    void *sw;
    peer_t *w = testkit_join(&kit, "w1", "echo", 1, &sw);
    uint8_t hdr[FRAME_HEADER_MAX], got[FRAME_HEADER_MAX];
    size_t n = s_reply(5, hdr);
    uint8_t cancel[FRAME_HEADER_MAX]; /* a frame without a body */
    size_t cn = frame_encode_id(FRAME_CANCEL, 5, cancel, sizeof cancel);
    char text[128];

    /* No subscriber: no copy. */
    CHECK(out_send(b, w, cancel, cn, NULL, "echo") == 0);
    testkit_expect(sw, FRAME_CANCEL, 5, NULL);
    CHECK(b->stats.tap_published == 0 && b->stats.tap_dropped == 0);

    void *sub = zmq_socket(kit.ctx, ZMQ_SUB);
    CHECK(sub);
    CHECK(kit.nsocks < TESTKIT_SOCKS_MAX);
    kit.socks[kit.nsocks++] = sub; /* closed by testkit_stop */
    int zero = 0, one = 1;
    CHECK(zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero) == 0);
    CHECK(zmq_setsockopt(sub, ZMQ_RCVHWM, &one, sizeof one) == 0);
    CHECK(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0) == 0);
    CHECK(zmq_connect(sub, kit.tap_endpoint) == 0);
    s_tap_wait(b, 1);

    /* A frame out: [meta, header, body], meta naming direction, peer, service. */
    zmq_msg_t body;
    testkit_body(&body, "tapped");
    CHECK(out_send(b, w, hdr, n, &body, "echo") == 0);
    int hlen;
    s_tap_copy(sub, "out", w->hex, "echo", "", got, &hlen, text, sizeof text);
    CHECK((size_t)hlen == n && memcmp(got, hdr, n) == 0);
    CHECK(strcmp(text, "tapped") == 0);
    CHECK(strcmp(w->hex, "7731") == 0); /* "w1" in hex */
    CHECK(b->stats.tap_published == 1);
    testkit_frame_t sent;
    testkit_expect(sw, FRAME_REPLY, 5, &sent);
    CHECK(strcmp(sent.body, "tapped") == 0); /* the tap copied, not took */

    /* A copy with no peer and a note, as a rejected frame is shown. */
    out_tap(b, "in", NULL, NULL, cancel, cn, NULL, "rejected: truncated");
    s_tap_copy(sub, "in", "", "", "rejected: truncated", got, &hlen, text, sizeof text);
    CHECK((size_t)hlen == cn && memcmp(got, cancel, cn) == 0);
    CHECK(text[0] == '\0' && b->stats.tap_published == 2);

    /* Nobody reads the tap: at its high-water mark copies are dropped and
     * counted, and the frames still reach their peer. */
    uint64_t tries = 0;
    while (b->stats.tap_dropped == 0 && tries < S_TAP_SENDS_MAX) {
        out_tap(b, "in", w, "echo", cancel, cn, NULL, NULL);
        tries++;
    }
    CHECK(b->stats.tap_dropped == 1);
    CHECK(b->stats.tap_published + b->stats.tap_dropped == 2 + tries);
    uint64_t copies = b->stats.tap_published + b->stats.tap_dropped;
    CHECK(out_send(b, w, cancel, cn, NULL, "echo") == 0);
    testkit_expect(sw, FRAME_CANCEL, 5, NULL);
    CHECK(b->stats.tap_published + b->stats.tap_dropped == copies + 1);

    /* Unsubscribed: no more copies. */
    CHECK(zmq_setsockopt(sub, ZMQ_UNSUBSCRIBE, "", 0) == 0);
    s_tap_wait(b, 0);
    uint64_t published = b->stats.tap_published, tap_dropped = b->stats.tap_dropped;
    CHECK(out_send(b, w, cancel, cn, NULL, "echo") == 0);
    CHECK(b->stats.tap_published == published && b->stats.tap_dropped == tap_dropped);
    testkit_stop(&kit);
}

int main(void)
{
    log_init("out_test");
    log_set_level("warn");
    test_send();
    test_unreachable();
    test_tap();
    printf("out_test: ok\n");
    return 0;
}
