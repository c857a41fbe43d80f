/* metrics: the edge's counters and their Prometheus text rendering. */
#ifndef MAP_METRICS_H
#define MAP_METRICS_H
#include "common/sbuf.h"

#include <stdint.h>

typedef struct {
    uint64_t http_requests, ws_connections, ws_messages, events_sent, slow_closed, errors,
        orch_requests, orch_unavailable, fills, watches_lost, forbidden;
} metrics_t;

typedef struct {
    int orch_up;                  /* the orchestrator answered: its counts below */
    uint64_t pruned_runs, pruned_events, pruned_messages; /* retention, since it started */
    uint64_t calls_done, calls_failed, calls_cancelled, calls_refused; /* agent calls, since it started */
} metrics_orch_t;

typedef struct {
    int64_t http_conns, ws_conns; /* open now */
    size_t sessions;
    size_t pending;               /* requests to the orchestrator in flight */
    int broker_up;
} metrics_gauges_t;

/* Appends the whole exposition to out (its maximum must hold ~4 KiB); o
 * NULL or not up: the orchestrator's lines are left out. */
void metrics_render(const metrics_t *m, const metrics_gauges_t *g, const metrics_orch_t *o,
                    sbuf_t *out);
/* The orchestrator's counts from its health JSON. 0, or -1 when unreadable. */
int metrics_orch_parse(const char *json, size_t len, metrics_orch_t *o);

#endif
