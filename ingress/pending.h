/* pending: the edge's requests to the orchestrator that await an answer.
 *
 * Each is owned by the registry (key: the worker library's request id) and
 * linked from its connection (NULL for a session's watch), so that closing
 * the connection or ending its HTTP transaction removes every one of its
 * requests: a late answer then finds no request and is dropped. Requests
 * with a deadline end with a timeout when it passes (pending_expired).
 * Bounded: at most `max` in all and `max_per_conn` per connection. */
#ifndef MAP_PENDING_H
#define MAP_PENDING_H
#include <stddef.h>
#include <stdint.h>

typedef struct conn_t conn_t;
typedef struct session_t session_t;
typedef struct pending_t pending_t;

typedef enum {
    P_HTTP = 1,     /* an HTTP request: its answer is the response */
    P_HEALTH,       /* /health's probe */
    P_METRICS,      /* /metrics: the orchestrator's counts (its health) */
    P_WS_INVOKE,
    P_WS_RESUME,
    P_WS_CANCEL_RUN, /* a WebSocket cancel: first the run (is it this session's?) */
    P_WS_CANCEL,     /* then the cancel itself */
    P_WS_FILL,      /* events a socket missed */
    P_HTTP_FILL,    /* events an event stream missed or fell behind on */
    P_WATCH,        /* a session's watch */
} pending_kind_t;

struct pending_t {
    uint64_t req;
    pending_kind_t kind;
    conn_t *conn;            /* NULL for a watch */
    session_t *session;      /* watch */
    char request_id[129];    /* WS: the client's request id */
    char run_id[129];        /* WS resume/cancel/fill */
    int accepted;            /* a follow's accepted arrived */
    int made_track;          /* resume: the tracker was made for it */
    int64_t deadline;        /* mono ms; 0: none (streams) */
    struct pending_t *cnext; /* next of the same connection */
};

typedef struct pending_reg_t pending_reg_t;

pending_reg_t *pending_new(size_t max, size_t max_per_conn);
/* Frees every request left (no cancel is sent). NULL-safe. */
void pending_destroy(pending_reg_t **self_p);

/* 1 when c may not have another request in flight (or the registry is full). */
int pending_full(const pending_reg_t *self, const conn_t *c);
/* Records request req (> 0, unique) of c (NULL: none) and links it. */
pending_t *pending_add(pending_reg_t *self, uint64_t req, pending_kind_t kind, conn_t *c,
                       int64_t deadline);
pending_t *pending_get(const pending_reg_t *self, uint64_t req);
/* Unlinks and frees p. */
void pending_free(pending_reg_t *self, pending_t *p);
/* Up to max requests whose deadline is at or before now, into out. */
size_t pending_expired(const pending_reg_t *self, int64_t now, pending_t **out, size_t max);
size_t pending_count(const pending_reg_t *self);

#endif
