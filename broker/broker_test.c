/* broker_test: the frame handlers of broker.c through the loop itself. The
 * loop (broker_run) runs in a thread of its own on ipc:// endpoints; the
 * test speaks raw frames on DEALERs and checks what each peer receives: a
 * frame from a peer that never sent READY gets DISCONNECT; REQUEST for no
 * service is unknown_service; streams and replies come back with the
 * requester's id; a second request waits, a third is overloaded
 * (queue_max 1); a duplicate id is dropped unanswered; CANCEL answers
 * cancelled and cancels on the worker, whose late REPLY goes nowhere; a
 * body over the maximum is too_large; a worker's DISCONNECT fails its
 * request worker_lost and takes the service; SERVICES lists
 * [name, workers, capacity, free, queued].
 *
 * The broker's state is read only after the loop's thread has ended. */
#include "broker.h"

#include "testkit.h"

#include "common/clock.h"
#include "common/log.h"
#include "proto/mp.h"
#include "tests/support/check.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    broker_t *broker;
    volatile sig_atomic_t stop;
    int rc;
} s_loop_t;

static void *s_loop(void *arg)
{
    s_loop_t *loop = arg;
    loop->rc = broker_run(loop->broker, &loop->stop);
    return NULL;
}

/* Sends [header, body?]; body: len bytes, none when NULL. */
static void s_send(void *sock, const frame_t *f, const void *body, size_t len)
{
    uint8_t hdr[FRAME_HEADER_MAX];
    size_t n = frame_encode(f, hdr, sizeof hdr);
    CHECK(n > 0);
    CHECK(zmq_send(sock, hdr, n, body ? ZMQ_SNDMORE : 0) == (int)n);
    if (body)
        CHECK(zmq_send(sock, body, len, 0) == (int)len);
}

static void s_ready(void *sock, const char *service, uint32_t capacity)
{
    frame_t f = {.type = FRAME_READY,
                 .service = service,
                 .service_len = (uint32_t)strlen(service),
                 .capacity = capacity};
    s_send(sock, &f, NULL, 0);
}

static void s_request(void *sock, uint64_t id, const char *service, const char *text)
{
    frame_t f = {.type = FRAME_REQUEST,
                 .id = id,
                 .service = service,
                 .service_len = (uint32_t)strlen(service)};
    s_send(sock, &f, text, strlen(text));
}

static void s_answer(void *sock, frame_type_t type, uint64_t id, const char *text)
{
    frame_t f = {.type = type, .id = id};
    s_send(sock, &f, text, text ? strlen(text) : 0);
}

/* What SERVICES says of one service. */
typedef struct {
    int found;
    uint64_t workers, capacity, free_credit, queued;
} s_service_t;

/* Asks SERVICES (id) on sock, checks that the next frame is its REPLY and
 * reads what it says of name. */
static s_service_t s_services(void *sock, uint64_t id, const char *name)
{
    frame_t f = {.type = FRAME_SERVICES, .id = id};
    s_send(sock, &f, NULL, 0);
    testkit_frame_t got;
    uint8_t body[256];
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    CHECK(zmq_poll(&item, 1, TESTKIT_WAIT_MS) == 1);
    int n = zmq_recv(sock, got.hdr, sizeof got.hdr, 0);
    CHECK(n > 0);
    int more = 0;
    size_t ml = sizeof more;
    CHECK(zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &ml) == 0 && more);
    int blen = zmq_recv(sock, body, sizeof body, 0);
    CHECK(blen >= 0 && (size_t)blen <= sizeof body);
    CHECK(frame_decode(got.hdr, (size_t)n, 1, &got.f) == FRAME_OK);
    CHECK(got.f.type == FRAME_REPLY && got.f.id == id);

    s_service_t out = {0};
    mp_reader_t rd;
    mp_reader_init(&rd, body, (size_t)blen);
    uint32_t count, fields, len;
    CHECK(mp_read_array(&rd, &count) == 0);
    for (uint32_t i = 0; i < count; i++) {
        const char *s;
        s_service_t one = {.found = 1};
        CHECK(mp_read_array(&rd, &fields) == 0 && fields == 5);
        CHECK(mp_read_str(&rd, &s, &len, FRAME_SERVICE_MAX) == 0);
        CHECK(mp_read_uint(&rd, &one.workers) == 0 && mp_read_uint(&rd, &one.capacity) == 0);
        CHECK(mp_read_uint(&rd, &one.free_credit) == 0 && mp_read_uint(&rd, &one.queued) == 0);
        if (len == strlen(name) && memcmp(s, name, len) == 0)
            out = one;
    }
    CHECK(mp_left(&rd) == 0);
    return out;
}

/* Asks SERVICES until name has workers and free credit (another
 * connection's frames may be handled after this one's), bounded by
 * TESTKIT_WAIT_MS. */
static void s_wait_service(void *sock, const char *name, uint64_t workers, uint64_t free_credit)
{
    int64_t deadline = clock_mono_ms() + TESTKIT_WAIT_MS;
    for (uint64_t id = 1000;; id++) {
        s_service_t svc = s_services(sock, id, name);
        if (svc.workers == workers && svc.free_credit == free_credit)
            return;
        CHECK(clock_mono_ms() < deadline);
        usleep(10 * 1000);
    }
}

int main(void)
{
    log_init("broker_test");
    log_set_level("error");
    testkit_t kit;
    testkit_start(&kit, 1, 0);
    /* No heartbeat during the test: every frame a peer gets is one the
     * test caused. */
    kit.broker->cfg.heartbeat_ms = 60000;
    s_loop_t loop = {.broker = kit.broker};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, s_loop, &loop) == 0);

    /* Not announced: DISCONNECT. */
    void *x = testkit_dealer(&kit, "x1");
    frame_t hb = {.type = FRAME_HEARTBEAT};
    s_send(x, &hb, NULL, 0);
    testkit_expect(x, FRAME_DISCONNECT, 0, NULL);

    void *w = testkit_dealer(&kit, "w1");
    void *r = testkit_dealer(&kit, "r1");
    s_ready(w, "echo", 1);
    s_ready(r, "client", 0);
    s_wait_service(r, "echo", 1, 1);
    s_service_t svc = s_services(r, 1, "echo");
    CHECK(svc.found && svc.capacity == 1 && svc.free_credit == 1 && svc.queued == 0);
    CHECK(!s_services(r, 2, "client").found); /* a requester serves nothing */

    s_request(r, 10, "nosuch", "x");
    testkit_expect_error(r, 10, "unknown_service");

    /* Routed with the broker's id, answered with the requester's. */
    testkit_frame_t got;
    s_request(r, 1, "echo", "ping");
    testkit_expect(w, FRAME_REQUEST, 1, &got);
    CHECK(got.f.service_len == 4 && memcmp(got.f.service, "echo", 4) == 0);
    CHECK(strcmp(got.body, "ping") == 0);
    s_answer(w, FRAME_STREAM, 1, "part");
    testkit_expect(r, FRAME_STREAM, 1, &got);
    CHECK(strcmp(got.body, "part") == 0);

    /* The worker is full: one request waits, the next is overloaded; a
     * duplicate id is dropped without an answer. */
    s_request(r, 2, "echo", "second");
    s_request(r, 3, "echo", "third");
    testkit_expect_error(r, 3, "overloaded");
    s_request(r, 2, "echo", "again");
    svc = s_services(r, 3, "echo"); /* the next frame r gets is this REPLY */
    CHECK(svc.free_credit == 0 && svc.queued == 1);

    /* The final answer lets the waiting request through. */
    s_answer(w, FRAME_REPLY, 1, "pong");
    testkit_expect(r, FRAME_REPLY, 1, &got);
    CHECK(strcmp(got.body, "pong") == 0);
    testkit_expect(w, FRAME_REQUEST, 2, &got);
    CHECK(strcmp(got.body, "second") == 0);

    /* CANCEL: the requester is answered at once, the worker told; its late
     * REPLY reaches no one. */
    frame_t cancel = {.type = FRAME_CANCEL, .id = 2};
    s_send(r, &cancel, NULL, 0);
    testkit_expect_error(r, 2, "cancelled");
    testkit_expect(w, FRAME_CANCEL, 2, NULL);
    s_answer(w, FRAME_REPLY, 2, "late");
    s_wait_service(r, "echo", 1, 1); /* the late REPLY freed the credit */

    /* Over the body maximum: too_large, not routed. */
    size_t big_len = (1u << 20) + 1;
    char *big = calloc(1, big_len + 1);
    CHECK(big);
    memset(big, 'b', big_len);
    s_request(r, 4, "echo", big);
    free(big);
    testkit_expect_error(r, 4, "too_large");

    /* The worker leaves mid-request: worker_lost, and the service goes. */
    s_request(r, 5, "echo", "last");
    testkit_expect(w, FRAME_REQUEST, 3, NULL);
    frame_t bye = {.type = FRAME_DISCONNECT};
    s_send(w, &bye, NULL, 0);
    testkit_expect_error(r, 5, "worker_lost");
    CHECK(!s_services(r, 5, "echo").found);

    loop.stop = 1;
    s_send(r, &hb, NULL, 0); /* wakes the loop's poll */
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(loop.rc == 0);
    broker_stats_t st;
    broker_stats(kit.broker, &st);
    CHECK(st.frames_rejected == 3); /* x1's HEARTBEAT, the duplicate, the large body */
    CHECK(st.requests == 3);        /* 1, 2, 5 */
    CHECK(st.peers == 1);           /* r1 */
    testkit_stop(&kit);
    printf("broker_test: ok\n");
    return 0;
}
