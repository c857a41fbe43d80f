/* testkit: what the broker's unit tests share. A broker on ipc:// endpoints
 * in a temp dir (its loop not running: the test calls the modules), raw
 * DEALERs with routing ids of the test's choosing that the broker knows as
 * peers, and reading what reaches them with proto/frame.h. (broker_test
 * runs the loop in a thread of its own and only speaks frames.)
 *
 * Every wait polls until a deadline (TESTKIT_WAIT_MS); a failed check exits
 * the test (tests/support/check.h). */
#ifndef MAP_BROKER_TESTKIT_H
#define MAP_BROKER_TESTKIT_H
#include "core.h"

#define TESTKIT_WAIT_MS 5000 /* longest wait for a frame */
#define TESTKIT_SOCKS_MAX 16 /* DEALERs one env holds */

typedef struct {
    broker_t *broker;
    void *ctx;                       /* the test's context: DEALERs, the tap's SUB */
    void *socks[TESTKIT_SOCKS_MAX];  /* closed by testkit_stop */
    size_t nsocks;
    char dir[64];                    /* temp dir of the ipc endpoints */
    char endpoint[128];              /* ROUTER */
    char tap_endpoint[128];          /* XPUB, "" without a tap */
} testkit_t;

/* Binds a broker (heartbeat 1000 ms, liveness 3, queue_max, body max
 * 1 MiB, a tap when tap is 1) in a new temp dir. */
void testkit_start(testkit_t *kit, long queue_max, int tap);
/* Destroys the broker, closes the sockets, removes the temp dir. */
void testkit_stop(testkit_t *kit);

/* Connects a DEALER (the kit's) with routing id id to the broker. */
void *testkit_dealer(testkit_t *kit, const char *id);
/* Connects a DEALER with routing id id, waits until the broker's ROUTER
 * has a message from it (so sends to id reach it), then registers it as
 * READY would: a peer named service with capacity, attached to service
 * when capacity > 0. OUT: *sock, the DEALER (the kit's). Returns the peer. */
peer_t *testkit_join(testkit_t *kit, const char *id, const char *service, uint32_t capacity,
                     void **sock);
/* Registers a peer as testkit_join does, without a socket of its own: with
 * an id no DEALER has, sends to it fail (EHOSTUNREACH). */
peer_t *testkit_register(testkit_t *kit, const char *id, const char *service, uint32_t capacity);

/* Receives one message within TESTKIT_WAIT_MS: the header decoded into f
 * (views into hdr, cap bytes) and the body, if any, copied NUL-terminated
 * into body (body_cap bytes, "" without one). Returns 0, or -1 on a timeout,
 * more than two parts or an undecodable header. */
int testkit_recv(void *sock, frame_t *f, uint8_t *hdr, size_t cap, char *body, size_t body_cap);
/* One message as testkit_recv reads it. */
typedef struct {
    frame_t f;                     /* views into hdr */
    uint8_t hdr[FRAME_HEADER_MAX];
    char body[256];                /* NUL-terminated, "" without a body */
} testkit_frame_t;

/* Receives one message and checks it is type with id. OUT: *out when not
 * NULL. */
void testkit_expect(void *sock, frame_type_t type, uint64_t id, testkit_frame_t *out);
/* Receives one message and checks it is ERROR id code. */
void testkit_expect_error(void *sock, uint64_t id, const char *code);
/* Checks that nothing reached sock before now: sends peer a HEARTBEAT and
 * checks that it is the next frame sock receives. */
void testkit_expect_quiet(testkit_t *kit, peer_t *peer, void *sock);
/* A body holding s (long enough that ZeroMQ allocates it: a leak shows). */
void testkit_body(zmq_msg_t *msg, const char *s);

#endif
