/* keepalive: when to ping a WebSocket and when to cut it, O(1) per step
 * whatever the number of sockets.
 *
 * Two lists in time order: `idle` (sockets by when they were last heard
 * from) and `pinged` (by when their ping went). Hearing from a socket moves
 * it to the tail of idle; a tick pings the heads of idle that have been
 * silent for ping_ms (they move to pinged) and cuts the heads of pinged
 * whose ping is grace_ms old, at most `budget` of both per tick (a burst of
 * sockets gets its pings spread over ticks). lws's own keep-alive keeps one
 * timer per socket in a sorted list: an insertion per received frame walks
 * it, O(connections).
 *
 * The nodes are the caller's (inside its connection record); no memory is
 * allocated here. One thread. */
#ifndef MAP_KEEPALIVE_H
#define MAP_KEEPALIVE_H
#include <stdint.h>

typedef struct ka_node_t {
    struct ka_node_t *prev, *next; /* NULL, NULL: on no list */
    int64_t ms;                    /* idle: last heard from; pinged: when pinged */
} ka_node_t;

typedef struct {
    ka_node_t idle, pinged;        /* list heads (circular, sentinels) */
    int64_t ping_ms, grace_ms;
} ka_t;

void ka_init(ka_t *ka, int64_t ping_ms, int64_t grace_ms);
/* n was heard from at now: to the tail of idle (from wherever it was). */
void ka_heard(ka_t *ka, ka_node_t *n, int64_t now);
/* n leaves the lists (its socket is gone). Safe on a node on none. */
void ka_forget(ka_node_t *n);
/* Pings and cuts what is due at now, at most budget in all: ping(arg, n)
 * for a socket to ping (n is then on pinged), cut(arg, n) for one to close
 * (n is then on no list). Returns how many it did. */
int ka_tick(ka_t *ka, int64_t now, int budget, void (*ping)(void *arg, ka_node_t *n),
            void (*cut)(void *arg, ka_node_t *n), void *arg);

#endif
