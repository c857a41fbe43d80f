/* hub: what the ingress modules share: the configuration, the outside
 * world (io.h), the requests in flight, the sessions, the counters, and the
 * few operations every module needs on a connection (queue bytes, close,
 * ask the orchestrator). edge.c owns the one hub; tests make their own. */
#ifndef MAP_HUB_H
#define MAP_HUB_H
#include "conn.h"
#include "edge.h"
#include "io.h"
#include "metrics.h"
#include "pending.h"
#include "policy.h"
#include "proto/mp.h"
#include "proto/orch.h"

typedef struct sessions_t sessions_t;

typedef struct {
    edge_config_t cfg;
    io_t *io;
    pending_reg_t *pending;
    sessions_t *sessions;
    metrics_t m;
    policy_t policy;
    mp_buf_t mp;             /* scratch for request bodies */
    int64_t http_conns, ws_conns;
} hub_t;

/* An orchestrator REPLY, with the run it is about (empty strings when it
 * names none). */
typedef struct {
    unsigned status;
    const char *json;        /* view into the body */
    size_t json_len;
    char run_id[129];
    char run_status[16];
    char session_id[129];
} hub_reply_t;

/* Decodes a REPLY body; a bad one becomes a 502 with an internal error. */
void hub_decode_reply(const uint8_t *body, size_t len, hub_reply_t *out);
/* The run fields of an {"accepted"} STREAM body (typed: no JSON parsed). */
void hub_accepted_fields(const orch_stream_t *ev, hub_reply_t *out);

/* Pacing of event streams (WebSocket and SSE): c is behind when its queue
 * would pass a quarter of its maximum with `more` bytes; it has drained
 * when it holds an eighth or less (nothing at all with need_empty). A page
 * of events (at most one frame between processes) then fits with room. */
int hub_behind(const hub_t *h, const conn_t *c, size_t more);
int hub_drained(const hub_t *h, const conn_t *c);

/* Queues bytes on c; a queue past its maximum closes c (4008: too slow,
 * reconnect and resume) and queues nothing. 0, or -1 when not queued. */
int hub_push(hub_t *h, conn_t *c, const void *data, size_t len);
/* Closes c after what is queued (code and reason for a WebSocket). */
void hub_close(hub_t *h, conn_t *c, int code, const char *reason);
/* Sends body to the orchestrator as a request of c (NULL: of nobody) and
 * records it; timeout_ms 0: no deadline. NULL when it could not be sent
 * (counted) or c has too many requests in flight. */
pending_t *hub_request(hub_t *h, conn_t *c, pending_kind_t kind, const mp_buf_t *body,
                       long timeout_ms);
/* Cancels and forgets every request of c (it is closing or its HTTP
 * transaction ended). */
void hub_drop_requests(hub_t *h, conn_t *c);

#endif
