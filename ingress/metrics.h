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
    int64_t http_conns, ws_conns; /* open now */
    size_t sessions;
    size_t pending;               /* requests to the orchestrator in flight */
    int broker_up;
} metrics_gauges_t;

/* Appends the whole exposition to out (its maximum must hold ~4 KiB). */
void metrics_render(const metrics_t *m, const metrics_gauges_t *g, sbuf_t *out);

#endif
