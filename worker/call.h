/* call: a native agent calls another agent (SPEC §7, proto/PROTOCOL.md
 * "Calling another agent"), on top of worker_request.
 *
 * A call is op `call` to service `orchestrator` on behalf of the run the
 * agent is serving (its run_id and token come from the invoke body's
 * `platform`). The orchestrator starts a child run and answers like an
 * invoke with follow: STREAM {"accepted"}, STREAM per event of the child,
 * REPLY 200 with the child run. This module turns that into three
 * callbacks per call:
 *
 *   on_accepted  once, with the child run id (before any event)
 *   on_event     each event of the child, in seq order from 1, no gap and
 *                no repeat (a seq past the next expected is filled with op
 *                `events` before later events are delivered)
 *   on_end       exactly once, last: how the call ended (call_end_t)
 *
 * A call never started (call_start returned 0) has no callback. After
 * on_end the handle is dead; call_cancel on it returns -1.
 *
 * Glue: the agent's worker handlers pass every on_stream / on_reply /
 * on_error to call_on_stream / call_on_reply / call_on_error first; each
 * returns 1 when the request was a call's (consumed), 0 when it was not.
 *
 * Callbacks may call call_start and call_cancel (for any call). Threading:
 * the worker's thread. */
#ifndef MAP_CALL_H
#define MAP_CALL_H
#include "worker.h"

#include "proto/agent.h"

#include <stddef.h>
#include <stdint.h>

#define CALL_TOKEN_MAX 64
#define CALL_SERVICE "orchestrator"

typedef struct call_set_t call_set_t;

typedef struct {
    const char *run_id;        /* the calling run (invoke's platform / run_id) */
    const char *token;         /* the run's call token (invoke's platform) */
    const char *agent_id;      /* the agent to call */
    const char *call_id;       /* idempotence key within the run; NULL: generated */
    const char *role;          /* NULL: "user" */
    const char *content;       /* the child's input */
    size_t content_len;
    const agent_msg_t *history; /* the child's history; none by default */
    uint32_t history_count;
} call_spec_t;

typedef struct {
    const char *type;          /* "agent_stream_delta", ... NUL-terminated */
    uint64_t seq;              /* 1, 2, 3, ... */
    int terminal;              /* run_done, run_failed, run_cancelled */
    const char *json;          /* the event object (SPEC §2), NUL-terminated */
    size_t json_len;
    const char *delta;         /* agent_stream_delta: payload.delta, else NULL */
    size_t delta_len;
} call_event_t;

typedef enum {
    CALL_DONE = 0,     /* the child ended run_done; output is its answer */
    CALL_FAILED,       /* the child ended run_failed; code, message its error */
    CALL_CANCELLED,    /* the child ended run_cancelled, or call_cancel */
    CALL_REFUSED,      /* the orchestrator answered an error (forbidden,
                          call_refused, bad_request, ...): no child exists */
    CALL_LOST,         /* the answer broke off: broker_lost, the orchestrator
                          unreachable or failing (code), an undecodable body */
} call_outcome_t;

typedef struct {
    call_outcome_t outcome;
    const char *child_run_id;  /* "" when no child was accepted */
    const char *code;          /* "" for CALL_DONE */
    const char *message;
    const char *output_role;   /* CALL_DONE: the child's output; else "" */
    const char *output;        /* NUL-terminated; output_len bytes */
    size_t output_len;
    unsigned status;           /* CALL_REFUSED: the orchestrator's status */
} call_end_t;

typedef struct {
    void (*on_accepted)(call_set_t *c, uint64_t call, const char *child_run_id, void *user);
    void (*on_event)(call_set_t *c, uint64_t call, const call_event_t *ev, void *user);
    void (*on_end)(call_set_t *c, uint64_t call, const call_end_t *end, void *user);
} call_handlers_t;

/* body_max: largest request body (0: 1 MiB). */
call_set_t *call_set_new(worker_t *w, const call_handlers_t *h, size_t body_max);

/* What call_set_new uses: worker_request and worker_cancel on w. Another
 * transport (a fuzz target, a test) gives its own: request returns the
 * request id (> 0) or 0 when not sent; cancel returns 0, or -1 for an id
 * not in flight. */
typedef struct {
    uint64_t (*request)(void *arg, const char *service, const void *body, size_t len);
    int (*cancel)(void *arg, uint64_t req);
} call_transport_t;
call_set_t *call_set_new_transport(const call_transport_t *t, void *arg, const call_handlers_t *h,
                             size_t body_max);
/* Frees every call without a callback or a frame. NULL-safe. */
void call_set_destroy(call_set_t **self_p);

/* Starts a call; user is passed to its callbacks. Returns the call's handle
 * (> 0), or 0 when it could not be sent (bad spec, too large, link down):
 * err then says why. */
uint64_t call_start(call_set_t *c, const call_spec_t *spec, void *user, char *err, size_t errlen);
/* Cancels a call (the orchestrator cancels the child if it still runs);
 * on_end(CALL_CANCELLED) follows at once. Returns 0, or -1 for a dead handle. */
int call_cancel(call_set_t *c, uint64_t call);
size_t call_set_active(const call_set_t *c);

int call_on_stream(call_set_t *c, uint64_t req, const uint8_t *body, size_t len);
int call_on_reply(call_set_t *c, uint64_t req, const uint8_t *body, size_t len);
int call_on_error(call_set_t *c, uint64_t req, const char *code, const char *message);

/* For tests and tools: the op `call` body. Returns 0, or -1 on overflow. */
int call_encode_request(mp_buf_t *b, const call_spec_t *spec, const char *call_id);

#endif
