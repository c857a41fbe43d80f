/* edge: the HTTP + WebSocket server (libwebsockets) on one port, serving
 * SPEC §3 and §4 through the orchestrator over the broker.
 *
 * One thread, one libuv loop (epoll) that lws runs in. The broker link (a
 * worker_t requester) is watched in it and drained whenever it is
 * readable, after every send and on a short timer (ZMQ_FD is edge-triggered). */
#ifndef MAP_EDGE_H
#define MAP_EDGE_H
#include <signal.h>
#include <stddef.h>

typedef struct edge_t edge_t;

typedef struct {
    const char *http_addr;   /* host:port */
    const char *broker;      /* broker endpoint */
    const char *api_key;     /* NULL or "": no auth */
    int allow_remote;        /* listen beyond loopback without a key */
    long max_body;           /* HTTP body bytes */
    long max_ws_message;     /* WebSocket message bytes */
    long max_outq;           /* bytes queued per connection before it is closed */
    long request_timeout_ms; /* an orchestrator answer later than this: 503 */
    long ws_ping_secs;       /* WebSocket keep-alive ping interval */
    long heartbeat_ms;       /* broker heartbeat */
    long max_requests_per_conn; /* orchestrator requests in flight per connection */
    const char *allowed_origins; /* comma-separated web origins besides our own */
} edge_config_t;

/* Binds the port and connects to the broker. NULL + err on a bad address,
 * a taken port, or a bad endpoint. */
edge_t *edge_new(const edge_config_t *cfg, char *err, size_t errlen);
int edge_run(edge_t *self, volatile sig_atomic_t *stop);
void edge_destroy(edge_t **self_p);

#endif
