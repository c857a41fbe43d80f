/* orch: the bodies of the `orchestrator` service (proto/ORCHESTRATOR.md).
 *
 *   request (REQUEST body)  {"op": str, ...arguments}   keys below, all optional
 *                           but op; strings are views into the body
 *   reply   (REPLY body)    {"status": uint, "json": str}
 *   stream  (STREAM body)   {"accepted": str}  or
 *                           {"run_id": str, "session_id": str, "seq": uint,
 *                            "type": str, "terminal": bool, "event": str}
 *
 * Decoders are strict (known keys once, right types, bounds, no trailing
 * bytes) and return an agent_err_t (same reasons as agent bodies). */
#ifndef MAP_ORCH_H
#define MAP_ORCH_H
#include "agent.h"

#define ORCH_OP_MAX 16
#define ORCH_LIMIT_MAX 10000

typedef struct {
    agent_str_t op;          /* invoke, watch, follow, events, run, messages,
                                register, agents, cancel, health */
    agent_str_t session_id;
    agent_str_t agent_id;
    agent_str_t run_id;
    agent_str_t request_id;
    agent_str_t role;
    agent_str_t content;
    agent_str_t if_busy;     /* "enqueue" or "reject"; len 0 when absent */
    agent_str_t name;
    agent_str_t endpoint;
    uint64_t after_seq;      /* 0 when absent */
    uint64_t limit;          /* 0 when absent */
    int follow;              /* 0 when absent */
} orch_request_t;

typedef struct {
    int accepted;            /* 1: an {"accepted"} body; json holds it */
    agent_str_t json;        /* accepted: run JSON; else the event JSON */
    agent_str_t run_id;
    agent_str_t session_id;
    agent_str_t type;
    uint64_t seq;
    int terminal;
} orch_stream_t;

agent_err_t orch_decode_request(const void *body, size_t len, orch_request_t *out);
agent_err_t orch_decode_reply(const void *body, size_t len, unsigned *status, agent_str_t *json);
agent_err_t orch_decode_stream(const void *body, size_t len, orch_stream_t *out);

/* Encoders append to b (reset first). Return 0, or -1 on overflow. Fields of
 * the request with len 0 (and numbers 0, follow 0) are left out. */
int orch_encode_request(mp_buf_t *b, const orch_request_t *req);
int orch_encode_reply(mp_buf_t *b, unsigned status, const char *json, size_t len);
int orch_encode_accepted(mp_buf_t *b, const char *json, size_t len);
int orch_encode_event(mp_buf_t *b, const orch_stream_t *ev);

#endif
