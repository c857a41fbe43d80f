/* orch: the bodies of the `orchestrator` service (proto/ORCHESTRATOR.md).
 *
 *   request (REQUEST body)  {"op": str, ...arguments}   keys below, all optional
 *                           but op; strings are views into the body
 *   reply   (REPLY body)    {"status": uint, "json": str,
 *                            "run_id": str, "run_status": str, "session_id": str}
 *                           the last three only in answers about one run
 *   stream  (STREAM body)   {"accepted": str, "run_id": str, "run_status": str,
 *                            "session_id": str}   (the last three optional) or
 *                           {"run_id": str, "session_id": str, "seq": uint,
 *                            "type": str, "terminal": bool, "event": str}
 *                           or a batch (watch streams): {"events": [event, ...]},
 *                           1..ORCH_BATCH_MAX event maps as above, in order
 *
 * The typed run fields repeat what the JSON says, so a reader (the edge)
 * never parses the JSON to route an answer. run_status is one of queued,
 * running, done, failed, cancelled.
 *
 * Decoders are strict (known keys once, right types, bounds, no trailing
 * bytes) and return an agent_err_t (same reasons as agent bodies). */
#ifndef MAP_ORCH_H
#define MAP_ORCH_H
#include "agent.h"

#define ORCH_OP_MAX 16
#define ORCH_LIMIT_MAX 10000
#define ORCH_BATCH_MAX 100000 /* events in one batch body */

typedef struct {
    agent_str_t op;          /* invoke, watch, follow, events, run, messages,
                                session_runs, register, agents, cancel, health,
                                call, calls */
    agent_str_t session_id;
    agent_str_t agent_id;
    agent_str_t run_id;
    agent_str_t request_id;
    agent_str_t role;
    agent_str_t content;
    agent_str_t if_busy;     /* "enqueue" or "reject"; len 0 when absent */
    agent_str_t name;
    agent_str_t endpoint;
    agent_str_t before;      /* paging cursors (messages: message ids, */
    agent_str_t after;       /* session_runs: a run id); len 0 when absent */
    uint64_t after_seq;      /* 0 when absent */
    uint64_t limit;          /* 0 when absent */
    int follow;              /* 0 when absent */
    agent_str_t token;       /* call: the parent run's token (at most 64 bytes) */
    agent_str_t call_id;     /* call */
    uint32_t history_count;  /* call: messages in "history" (0 when absent) */
    const uint8_t *history;  /* their raw msgpack span (NULL when absent);  */
    const uint8_t *history_end; /* read with agent_msgs_next */
} orch_request_t;

typedef struct {
    int accepted;            /* 1: an {"accepted"} body; json holds it */
    agent_str_t json;        /* accepted: run JSON; else the event JSON */
    agent_str_t run_id;      /* accepted: len 0 when about no run (watch) */
    agent_str_t session_id;
    agent_str_t run_status;  /* accepted only: the run's status; len 0 if none */
    agent_str_t type;
    uint64_t seq;
    int terminal;
    uint32_t batch;          /* > 0: a batch of that many events, every other
                                field empty; read them with orch_batch_next */
    const uint8_t *events;   /* batch: the next event's map */
    const uint8_t *events_end;
} orch_stream_t;

typedef struct {
    unsigned status;         /* HTTP-like, 100..599 */
    agent_str_t json;        /* the JSON document to show */
    agent_str_t run_id;      /* the run the answer is about; len 0 if none */
    agent_str_t run_status;  /* "queued","running","done","failed","cancelled"; len 0 if none */
    agent_str_t session_id;  /* that run's session; len 0 if none */
} orch_reply_t;

/* 1 when s names a run status (queued, running, done, failed, cancelled). */
int orch_run_status_valid(const agent_str_t *s);

agent_err_t orch_decode_request(const void *body, size_t len, orch_request_t *out);
agent_err_t orch_decode_reply(const void *body, size_t len, orch_reply_t *out);
/* Checks a batch whole (every event) before it returns AGENT_OK. */
agent_err_t orch_decode_stream(const void *body, size_t len, orch_stream_t *out);
/* The next event of a decoded batch into ev (a view into the body); 1, or 0
 * once all were read. Advances batch->events. */
int orch_batch_next(orch_stream_t *batch, orch_stream_t *ev);

/* Encoders append to b (reset first). Return 0, or -1 on overflow. Fields of
 * the request with len 0 (and numbers 0, follow 0) are left out; "history"
 * is written when history is not NULL (its raw span copied as it is: build
 * it with orch_encode_msgs). */
int orch_encode_request(mp_buf_t *b, const orch_request_t *req);
/* Packs count {"role","content"} maps back to back (no array header): the
 * raw span orch_request_t.history points to. */
int orch_encode_msgs(mp_buf_t *b, const agent_msg_t *msgs, uint32_t count);
/* Typed fields of len 0 are left out. */
int orch_encode_reply(mp_buf_t *b, const orch_reply_t *r);
/* From acc: json, and run_id, session_id, run_status when len > 0. */
int orch_encode_accepted(mp_buf_t *b, const orch_stream_t *acc);
int orch_encode_event(mp_buf_t *b, const orch_stream_t *ev);
/* A batch body in b: begin (resets b), add event bodies made by
 * orch_encode_event (copied as they are), end with their count (1 to
 * ORCH_BATCH_MAX). add returns -1, b unchanged, when the body would pass
 * b's maximum: end and send what b holds, then begin again. */
int orch_batch_begin(mp_buf_t *b);
int orch_batch_add(mp_buf_t *b, const void *event_body, size_t len);
int orch_batch_end(mp_buf_t *b, uint32_t count);
size_t orch_batch_overhead(void); /* the bytes of a batch besides its events */

#endif
