/* bridge: the HTTP/SSE bridge worker. Serves broker service "bridge": each
 * invoke (proto/agent.h, with `endpoint`) becomes one POST {endpoint}/invoke
 * on libcurl's multi interface, whose SSE answer is passed on delta by
 * delta (STREAM) and finished with REPLY or ERROR (see relay.h for the
 * codes). One thread waits on curl and the broker's DEALER together with
 * curl_multi_poll; many invokes run at once, up to the capacity announced
 * to the broker. */
#ifndef MAP_BRIDGE_H
#define MAP_BRIDGE_H
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bridge_t bridge_t;

typedef struct {
    const char *broker;    /* broker ROUTER endpoint */
    const char *service;   /* NULL: "bridge" */
    uint32_t capacity;     /* invokes at once (1..FRAME_CAPACITY_MAX) */
    long timeout_ms;       /* idle timeout when the invoke names none */
    size_t max_response;   /* largest answer body of one agent, bytes */
    long heartbeat_ms;     /* 0: the worker library's default */
    const char *public_url; /* the edge's base URL agents call (platform.calls_url);
                               NULL: http://127.0.0.1:8080 (relay_public_url) */
} bridge_config_t;

typedef struct {
    uint64_t invokes;      /* invokes received */
    uint64_t done;         /* answered with REPLY */
    uint64_t failed;       /* answered with ERROR */
    uint64_t cancelled;    /* aborted by a cancel */
    uint64_t deltas;       /* deltas passed on */
    uint64_t connects;     /* TCP connections opened (the rest reused one) */
    uint64_t turns;        /* loop turns */
} bridge_stats_t;

/* Returns NULL with one sentence in err (bad endpoint, curl setup). */
bridge_t *bridge_new(const bridge_config_t *cfg, char *err, size_t errlen);
/* Runs the loop until *stop is set, then fails every invoke in flight with
 * "worker_stopping". Returns 0. */
int bridge_run(bridge_t *self, volatile sig_atomic_t *stop);
void bridge_stats(const bridge_t *self, bridge_stats_t *out);
/* Aborts what is left, disconnects from the broker. NULL-safe. */
void bridge_destroy(bridge_t **self_p);

#endif
