/* outbox_test: the outbox as the engine drives it, with a scripted sender
 * standing in for the socket (one answer per call: sent, later, gone). */
#include "outbox.h"

#include "tests/support/check.h"

#include <string.h>

typedef struct {
    outbox_sent_t script[64]; /* answer of each send call; past count: SENT */
    size_t count, calls;
    uint64_t reqs[64];        /* what was sent, in order */
    outbox_kind_t kinds[64];
    char bodies[64][32];
    size_t sent;
} s_sock_t;

static outbox_sent_t s_send(void *arg, uint64_t req, outbox_kind_t kind, const void *body,
                            size_t len)
{
    s_sock_t *s = arg;
    outbox_sent_t r = s->calls < s->count ? s->script[s->calls] : OUTBOX_SENT;
    s->calls++;
    if (r == OUTBOX_SENT) {
        CHECK(s->sent < 64 && len < 32);
        s->reqs[s->sent] = req;
        s->kinds[s->sent] = kind;
        memcpy(s->bodies[s->sent], body, len);
        s->bodies[s->sent][len] = '\0';
        s->sent++;
    }
    return r;
}

static void test_nothing_goes_before_commit(void)
{
    outbox_t *o = outbox_new(16, 1024);
    s_sock_t sock = {0};
    CHECK(outbox_push(o, 1, OUTBOX_STREAM, "a", 1) == 0);
    CHECK(outbox_push(o, 1, OUTBOX_REPLY, "b", 1) == 0);
    CHECK(outbox_flush(o, s_send, &sock) == 0 && sock.calls == 0);
    CHECK(outbox_entries(o) == 2 && outbox_waiting(o) == 0 && outbox_bytes(o) == 2);
    outbox_commit(o);
    CHECK(outbox_waiting(o) == 2);
    CHECK(outbox_flush(o, s_send, &sock) == 0);
    CHECK(sock.sent == 2 && !strcmp(sock.bodies[0], "a") && !strcmp(sock.bodies[1], "b"));
    CHECK(sock.kinds[1] == OUTBOX_REPLY && outbox_entries(o) == 0 && outbox_bytes(o) == 0);
    outbox_destroy(&o);
    CHECK(o == NULL);
}

static void s_count(void *arg, uint64_t req)
{
    uint64_t *sum = arg;
    *sum += req;
}

static void test_rollback_drops_the_turn_only(void)
{
    outbox_t *o = outbox_new(16, 1024);
    s_sock_t sock = {.script = {OUTBOX_LATER}, .count = 1};
    CHECK(outbox_push(o, 1, OUTBOX_STREAM, "kept", 4) == 0);
    outbox_commit(o);
    CHECK(outbox_flush(o, s_send, &sock) == 1); /* refused for now: kept */
    CHECK(outbox_push(o, 2, OUTBOX_STREAM, "turn", 4) == 0);
    CHECK(outbox_push(o, 3, OUTBOX_REPLY, "turn2", 5) == 0);
    uint64_t sum = 0;
    outbox_rollback(o, s_count, &sum);
    CHECK(sum == 5 && outbox_entries(o) == 1 && outbox_bytes(o) == 4);
    CHECK(outbox_flush(o, s_send, &sock) == 0);
    CHECK(sock.sent == 1 && sock.reqs[0] == 1 && !strcmp(sock.bodies[0], "kept"));
    /* A rollback of an empty turn changes nothing. */
    sum = 0;
    outbox_rollback(o, s_count, &sum);
    CHECK(sum == 0 && outbox_entries(o) == 0);
    outbox_destroy(&o);
}

static void test_push_is_all_or_nothing(void)
{
    outbox_t *o = outbox_new(3, 10);
    CHECK(outbox_push(o, 1, OUTBOX_STREAM, "123456", 6) == 0);
    CHECK(outbox_push(o, 2, OUTBOX_STREAM, "12345", 5) == -1); /* 11 bytes > 10 */
    CHECK(outbox_entries(o) == 1 && outbox_bytes(o) == 6);
    CHECK(outbox_push(o, 2, OUTBOX_STREAM, "1234", 4) == 0);   /* exactly 10 */
    CHECK(outbox_push(o, 3, OUTBOX_STREAM, "", 0) == 0);
    CHECK(outbox_push(o, 4, OUTBOX_STREAM, "", 0) == -1);      /* 4 entries > 3 */
    CHECK(outbox_push_fail(o, 4, "internal", "x") == -1);
    CHECK(outbox_entries(o) == 3 && outbox_bytes(o) == 10);
    outbox_commit(o);
    s_sock_t sock = {0};
    CHECK(outbox_flush(o, s_send, &sock) == 0);
    CHECK(sock.sent == 3 && !strcmp(sock.bodies[0], "123456") && !strcmp(sock.bodies[1], "1234"));
    /* Room again once sent. */
    CHECK(outbox_push_fail(o, 5, "internal", "message") == -1); /* 17 bytes > 10 */
    CHECK(outbox_push_fail(o, 5, "code", "msg") == 0);
    outbox_commit(o);
    CHECK(outbox_flush(o, s_send, &sock) == 0);
    CHECK(sock.kinds[3] == OUTBOX_FAIL && !strcmp(sock.bodies[3], "code"));
    CHECK(!strcmp(sock.bodies[3] + strlen("code") + 1, "msg"));
    outbox_destroy(&o);
}

static void test_refused_sends_are_retried_in_order(void)
{
    outbox_t *o = outbox_new(64, 4096);
    /* send 1 ok, send 2 refused (HWM), retry: 2 gone (request over), 3 ok,
     * 4 refused, retry: 4 ok, 5 ok */
    s_sock_t sock = {.script = {OUTBOX_SENT, OUTBOX_LATER, OUTBOX_GONE, OUTBOX_SENT, OUTBOX_LATER},
                     .count = 5};
    const char *bodies[] = {"e1", "e2", "e3", "final4", "final5"};
    for (int i = 0; i < 5; i++)
        CHECK(outbox_push(o, (uint64_t)i + 1, i >= 3 ? OUTBOX_REPLY : OUTBOX_STREAM, bodies[i],
                          strlen(bodies[i])) == 0);
    outbox_commit(o);
    CHECK(outbox_flush(o, s_send, &sock) == 4);
    CHECK(sock.sent == 1 && outbox_bytes(o) == 2 + 2 + 6 + 6);
    /* A new turn queues behind what waits, and waits for its commit. */
    CHECK(outbox_push(o, 6, OUTBOX_STREAM, "e6", 2) == 0);
    CHECK(outbox_flush(o, s_send, &sock) == 2); /* e2 gone, e3 sent, final4 later */
    CHECK(sock.sent == 2 && !strcmp(sock.bodies[1], "e3"));
    CHECK(outbox_waiting(o) == 2 && outbox_entries(o) == 3);
    outbox_commit(o);
    CHECK(outbox_flush(o, s_send, &sock) == 0);
    CHECK(sock.sent == 5 && !strcmp(sock.bodies[2], "final4") && !strcmp(sock.bodies[3], "final5"));
    CHECK(!strcmp(sock.bodies[4], "e6") && sock.reqs[4] == 6);
    CHECK(outbox_entries(o) == 0 && outbox_bytes(o) == 0);
    outbox_destroy(&o);
}

static void test_many_turns_stay_within_the_maxima(void)
{
    outbox_t *o = outbox_new(100, 1000);
    s_sock_t sock = {0};
    for (int turn = 0; turn < 1000; turn++) {
        for (int i = 0; i < 50; i++)
            CHECK(outbox_push(o, 1, OUTBOX_STREAM, "0123456789", 10) == 0);
        if (turn % 3 == 0) {
            outbox_rollback(o, NULL, NULL);
        } else {
            outbox_commit(o);
            sock.sent = 0;
            CHECK(outbox_flush(o, s_send, &sock) == 0 && sock.sent == 50);
        }
        CHECK(outbox_entries(o) == 0 && outbox_bytes(o) == 0);
    }
    outbox_destroy(&o);
    outbox_destroy(&o); /* NULL-safe */
}

int main(void)
{
    test_nothing_goes_before_commit();
    test_rollback_drops_the_turn_only();
    test_push_is_all_or_nothing();
    test_refused_sends_are_retried_in_order();
    test_many_turns_stay_within_the_maxima();
    return 0;
}
