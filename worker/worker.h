/* worker: the library every peer of the broker links: native agents, the
 * HTTP bridge, the orchestrator, the ingress, tests and benchmarks.
 *
 * A worker_t is one DEALER connected to the broker. It announces itself with
 * READY (service + capacity; capacity 0 = a requester that serves nothing),
 * heartbeats, notices a dead or restarted broker and re-announces by itself.
 * It can serve requests (on_request, then worker_stream*, then worker_reply
 * or worker_fail) and make them (worker_request, then on_stream* and one of
 * on_reply / on_error). Every request ends for both sides in exactly one
 * final callback or call.
 *
 * Link loss (broker silent for liveness × heartbeat, or DISCONNECT): every
 * request this peer made gets on_error(code "broker_lost"); every request it
 * was serving gets on_cancel (the broker has forgotten it). Then READY is
 * sent again each heartbeat until the broker answers.
 *
 * Threading: one thread. Nothing blocks: sends use ZMQ_DONTWAIT and fail with
 * -1 when the link is down or the send queue is full. Callbacks run inside
 * worker_process; they may call any worker_* function but worker_destroy. */
#ifndef MAP_WORKER_H
#define MAP_WORKER_H
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

typedef struct worker_t worker_t;

typedef struct {
    /* Serving. body is valid only during the call. */
    void (*on_request)(worker_t *w, uint64_t id, const uint8_t *body, size_t len, void *arg);
    /* The request is over on the broker's side (requester cancelled or gone,
     * or link lost): stop work on it; the library has answered already and
     * ignores later worker_stream/reply/fail for id. */
    void (*on_cancel)(worker_t *w, uint64_t id, void *arg);
    /* Requesting. body valid only during the call. */
    void (*on_stream)(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg);
    void (*on_reply)(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg);
    /* code, message: NUL-terminated, valid only during the call. Codes from
     * the broker: unknown_service, overloaded, worker_lost, cancelled,
     * too_large, bad_frame; from the library: broker_lost; any code a worker
     * sends with worker_fail. */
    void (*on_error)(worker_t *w, uint64_t req, const char *code, const char *message,
                     void *arg);
    /* The link to the broker came up (1) or was lost (0). May be NULL. */
    void (*on_link)(worker_t *w, int up, void *arg);
} worker_handlers_t;

typedef struct {
    const char *endpoint;   /* broker ROUTER endpoint, e.g. tcp://127.0.0.1:5555 */
    const char *service;    /* announced name; with capacity 0 only a label */
    uint32_t capacity;      /* concurrent requests served; 0: requester only */
    long heartbeat_ms;      /* 0: default 1000 */
    long liveness;          /* missed heartbeats before the broker is lost; 0: 3 */
    size_t body_max;        /* largest body accepted or sent; 0: 1 MiB */
    size_t requests_max;    /* requests of ours in flight at once; 0: 100000 */
    const char *curve_server_key; /* broker's public key (z85); NULL: from the environment
                                     (MAP_CURVE_SERVER_KEY, MAP_CURVE_PUBLIC_KEY,
                                     MAP_CURVE_SECRET_KEY), or plaintext when unset */
    const char *curve_public_key; /* our key pair (z85), with curve_server_key */
    const char *curve_secret_key;
} worker_config_t;

/* Connects (asynchronously: the broker need not be up yet) and sends READY.
 * Returns NULL with one sentence in err on a bad endpoint or config. */
worker_t *worker_new(const worker_config_t *cfg, const worker_handlers_t *handlers, void *arg,
                     char *err, size_t errlen);
/* Sends DISCONNECT, closes the socket. NULL-safe; sets *self_p = NULL. */
void worker_destroy(worker_t **self_p);

void *worker_socket(worker_t *w);  /* the DEALER, for zmq_poll */
int worker_fd(worker_t *w);        /* its ZMQ_FD (edge-triggered), for other loops */
/* Handles every message ready (up to a batch bound) and the heartbeat timer.
 * Returns 1 when it stopped at the batch bound (call it again), 0 when it
 * read the socket empty. Never blocks. */
int worker_process(worker_t *w);
/* Milliseconds until worker_process must run for the heartbeat timer; 0
 * when a message may be waiting. Call it before every wait on worker_fd:
 * after sends, it is what re-reads the edge-triggered fd's state. */
long worker_timeout_ms(worker_t *w);
/* 1 when a message may be waiting that the fd will not announce (a send
 * took its edge): call worker_process again before waiting on worker_fd. */
int worker_readable(worker_t *w);
/* Runs zmq_poll + worker_process until *stop is set. Returns 0. */
int worker_run(worker_t *w, volatile sig_atomic_t *stop);
int worker_linked(const worker_t *w); /* 1 while the broker is heard */

/* Serving side. Each returns 0, or -1 (unknown/ended id, too large, link down). */
int worker_stream(worker_t *w, uint64_t id, const void *body, size_t len);
int worker_reply(worker_t *w, uint64_t id, const void *body, size_t len);    /* final */
int worker_fail(worker_t *w, uint64_t id, const char *code, const char *message); /* final */
size_t worker_active(const worker_t *w); /* requests being served */

/* Requesting side. Returns the request id (> 0), or 0 when it could not be
 * sent (link down, send queue full, body too large, too many in flight). */
uint64_t worker_request(worker_t *w, const char *service, const void *body, size_t len);
/* Asks the broker which services it knows. The answer arrives as on_reply
 * with a msgpack body [[service, workers, capacity, free, queued], ...]. */
uint64_t worker_services(worker_t *w);
/* Cancels a request of ours; on_error(code "cancelled") follows. Returns 0,
 * or -1 for an unknown id. */
int worker_cancel(worker_t *w, uint64_t req);
size_t worker_pending(const worker_t *w); /* requests of ours in flight */

#endif
