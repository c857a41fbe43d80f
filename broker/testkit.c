/* testkit: a broker without its loop, and raw peers, for the unit tests.
 *
 * The broker binds ipc:// endpoints in a temp dir of its own; the test's
 * DEALERs live in a second context, so broker_destroy can end the broker's
 * context while they are still open. A DEALER counts as joined once the
 * ROUTER has read a message from it: before that, a send to its routing id
 * would fail (ZMQ_ROUTER_MANDATORY). */
#include "testkit.h"

#include "out.h"
#include "registry.h"

#include "common/clock.h"
#include "tests/support/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_BODY_MIN 64 /* bytes: over ZeroMQ's inline size, so bodies are allocated */

void testkit_start(testkit_t *kit, long queue_max, int tap)
{
    memset(kit, 0, sizeof *kit);
    snprintf(kit->dir, sizeof kit->dir, "/tmp/map-broker-test-XXXXXX");
    CHECK(mkdtemp(kit->dir));
    snprintf(kit->endpoint, sizeof kit->endpoint, "ipc://%s/router", kit->dir);
    if (tap)
        snprintf(kit->tap_endpoint, sizeof kit->tap_endpoint, "ipc://%s/tap", kit->dir);
    broker_config_t cfg = {.endpoint = kit->endpoint,
                           .tap_endpoint = kit->tap_endpoint,
                           .heartbeat_ms = 1000,
                           .liveness = 3,
                           .queue_max = queue_max,
                           .body_max = 1 << 20,
                           .tap_hwm = 1000};
    char err[256];
    kit->broker = broker_new(&cfg, err, sizeof err);
    if (!kit->broker)
        fprintf(stderr, "broker_new: %s\n", err);
    CHECK(kit->broker);
    kit->ctx = zmq_ctx_new();
    CHECK(kit->ctx);
}

void testkit_stop(testkit_t *kit)
{
    broker_destroy(&kit->broker);
    CHECK(kit->broker == NULL);
    for (size_t i = 0; i < kit->nsocks; i++)
        zmq_close(kit->socks[i]);
    zmq_ctx_term(kit->ctx);
    char path[256];
    snprintf(path, sizeof path, "%s/router", kit->dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/tap", kit->dir);
    unlink(path);
    CHECK(rmdir(kit->dir) == 0);
}

/* As s_on_ready registers a peer. */
peer_t *testkit_register(testkit_t *kit, const char *id, const char *service, uint32_t capacity)
{
    broker_t *b = kit->broker;
    uint64_t key;
    CHECK(registry_peer_find(b, id, strlen(id), &key) == NULL);
    peer_t *p = registry_peer_new(b, id, strlen(id), key);
    CHECK(p);
    size_t len = service ? strlen(service) : 0;
    CHECK(len <= FRAME_SERVICE_MAX);
    if (len)
        memcpy(p->name, service, len);
    p->capacity = capacity;
    p->expiry = clock_mono_ms() + b->cfg.heartbeat_ms * b->cfg.liveness;
    if (capacity > 0)
        CHECK(registry_service_attach(b, p, service, len) == 0);
    return p;
}

/* Reads messages off the broker's ROUTER until one from id (bounded). */
static void s_router_heard(testkit_t *kit, const char *id)
{
    void *router = kit->broker->router;
    int64_t deadline = clock_mono_ms() + TESTKIT_WAIT_MS;
    for (;;) {
        int64_t left = deadline - clock_mono_ms();
        CHECK(left > 0);
        zmq_pollitem_t item = {router, 0, ZMQ_POLLIN, 0};
        CHECK(zmq_poll(&item, 1, (long)left) >= 0);
        if (!(item.revents & ZMQ_POLLIN))
            continue;
        char from[256];
        int n = zmq_recv(router, from, sizeof from, 0);
        CHECK(n >= 0);
        int more = 1;
        size_t ml = sizeof more;
        for (int parts = 0; more && parts < 8; parts++) { /* the rest of the message */
            char scratch[64];
            CHECK(zmq_getsockopt(router, ZMQ_RCVMORE, &more, &ml) == 0);
            if (more)
                CHECK(zmq_recv(router, scratch, sizeof scratch, 0) >= 0);
        }
        if ((size_t)n == strlen(id) && memcmp(from, id, (size_t)n) == 0)
            return;
    }
}

void *testkit_dealer(testkit_t *kit, const char *id)
{
    CHECK(kit->nsocks < TESTKIT_SOCKS_MAX);
    void *s = zmq_socket(kit->ctx, ZMQ_DEALER);
    CHECK(s);
    kit->socks[kit->nsocks++] = s;
    int zero = 0;
    CHECK(zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero) == 0);
    CHECK(zmq_setsockopt(s, ZMQ_ROUTING_ID, id, strlen(id)) == 0);
    CHECK(zmq_connect(s, kit->endpoint) == 0);
    return s;
}

peer_t *testkit_join(testkit_t *kit, const char *id, const char *service, uint32_t capacity,
                     void **sock)
{
    void *s = testkit_dealer(kit, id);
    uint8_t hdr[16];
    size_t n = frame_encode_id(FRAME_HEARTBEAT, 0, hdr, sizeof hdr);
    CHECK(zmq_send(s, hdr, n, 0) == (int)n);
    s_router_heard(kit, id);
    *sock = s;
    return testkit_register(kit, id, service, capacity);
}

int testkit_recv(void *sock, frame_t *f, uint8_t *hdr, size_t cap, char *body, size_t body_cap)
{
    zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, TESTKIT_WAIT_MS) <= 0)
        return -1;
    int n = zmq_recv(sock, hdr, cap, ZMQ_DONTWAIT);
    if (n < 0 || (size_t)n > cap)
        return -1;
    body[0] = '\0';
    int more = 0, parts = 1;
    size_t ml = sizeof more;
    zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &ml);
    while (more && parts < 8) {
        int b = zmq_recv(sock, body, body_cap - 1, 0);
        if (b < 0)
            return -1;
        body[(size_t)b < body_cap - 1 ? (size_t)b : body_cap - 1] = '\0';
        parts++;
        zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &ml);
    }
    if (more || parts > 2)
        return -1;
    return frame_decode(hdr, (size_t)n, parts == 2, f) == FRAME_OK ? 0 : -1;
}

void testkit_expect(void *sock, frame_type_t type, uint64_t id, testkit_frame_t *out)
{
    testkit_frame_t scratch;
    testkit_frame_t *got = out ? out : &scratch;
    CHECK(testkit_recv(sock, &got->f, got->hdr, sizeof got->hdr, got->body, sizeof got->body) == 0);
    CHECK(got->f.type == type);
    CHECK(got->f.id == id);
}

void testkit_expect_error(void *sock, uint64_t id, const char *code)
{
    testkit_frame_t got;
    testkit_expect(sock, FRAME_ERROR, id, &got);
    CHECK(got.f.code_len == strlen(code) && memcmp(got.f.code, code, got.f.code_len) == 0);
}

void testkit_expect_quiet(testkit_t *kit, peer_t *peer, void *sock)
{
    out_send_id(kit->broker, peer, FRAME_HEARTBEAT, 0, "");
    testkit_expect(sock, FRAME_HEARTBEAT, 0, NULL);
}

void testkit_body(zmq_msg_t *msg, const char *s)
{
    size_t len = strlen(s);
    size_t size = len < S_BODY_MIN ? S_BODY_MIN : len;
    CHECK(zmq_msg_init_size(msg, size) == 0);
    memset(zmq_msg_data(msg), 0, size);
    memcpy(zmq_msg_data(msg), s, len);
}
