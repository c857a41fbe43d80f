/* agent: the bodies exchanged with agent workers (services "agent.<id>" and
 * "bridge"). Each body is one msgpack map with string keys:
 *
 *   invoke (REQUEST body)  {"run_id": str, "session_id": str, "agent_id": str,
 *                           "input": {"role": str, "content": str},
 *                           "history": [{"role": str, "content": str}, ...],
 *                           "endpoint": str   (optional: bridge only),
 *                           "timeout_ms": uint (optional),
 *                           "platform": {"token": str (32 lowercase hex),
 *                                        "depth": uint, "root_run_id": str,
 *                                        "parent_run_id": str (only when
 *                                        depth >= 1)} (optional: the run's
 *                                        call token and place in its tree)}
 *   delta  (STREAM body)   {"delta": str}
 *   done   (REPLY body)    {"output": {"role": str, "content": str}}
 *
 * A worker fails an invoke with an ERROR frame (code, message), not a body.
 * Decoders are strict: every key known and present once, every value of its
 * type and within its maximum, nothing after the map. Decoded strings are
 * views into the body. */
#ifndef MAP_AGENT_H
#define MAP_AGENT_H
#include "mp.h"

#include <stddef.h>
#include <stdint.h>

#define AGENT_ID_MAX 128        /* run, session and agent ids */
#define AGENT_ROLE_MAX 32
#define AGENT_ENDPOINT_MAX 2048
#define AGENT_HISTORY_MAX 10000 /* messages of history in one invoke */
#define AGENT_SERVICE_PREFIX "agent."
#define AGENT_TOKEN_LEN 32      /* a call token: 128 bits, lowercase hex */

typedef struct {
    const char *ptr; /* view, not NUL-terminated */
    uint32_t len;
} agent_str_t;

typedef struct {
    agent_str_t role;
    agent_str_t content;
} agent_msg_t;

/* The invoke's "platform" map: what the agent needs to call other agents
 * (orchestrator op "call", or the bridge's calls_url). Absent when
 * token.len == 0 (the encoder then writes no map). */
typedef struct {
    agent_str_t token;         /* AGENT_TOKEN_LEN lowercase hex; len 0 when absent */
    uint64_t depth;            /* 0 for a client's run */
    agent_str_t root_run_id;
    agent_str_t parent_run_id; /* len 0 when depth == 0 */
} agent_platform_t;

typedef struct {
    agent_str_t run_id;
    agent_str_t session_id;
    agent_str_t agent_id;
    agent_msg_t input;
    agent_str_t endpoint;      /* len 0 when absent */
    uint64_t timeout_ms;       /* 0 when absent */
    uint32_t history_count;    /* messages in history */
    const uint8_t *history;    /* first history message; read with agent_history_next */
    const uint8_t *history_end;
    agent_platform_t platform; /* token.len 0 when absent */
} agent_invoke_t;

typedef enum {
    AGENT_OK = 0,
    AGENT_E_MALFORMED, /* not a msgpack map, truncated or trailing bytes */
    AGENT_E_KEY,       /* unknown or repeated key */
    AGENT_E_MISSING,   /* a required key is absent */
    AGENT_E_FIELD,     /* a value of the wrong type */
    AGENT_E_RANGE,     /* a value too long, empty where it must not be */
} agent_err_t;

const char *agent_strerror(agent_err_t err);

/* For the body decoders of proto/ (agent.c, orch.c): the reason of a
 * reader's error, and one map key looked up in keys (at most 32; *seen
 * marks the keys met, so a repeat is an error). Returns the key's index, or
 * -1 with *err set. */
agent_err_t agent_err_of(const mp_reader_t *r);
int agent_read_key(mp_reader_t *r, const char *const *keys, int nkeys, uint32_t *seen,
                   agent_err_t *err);

agent_err_t agent_decode_invoke(const void *body, size_t len, agent_invoke_t *out);
/* Reads the next history message. Returns 0, or -1 past the last one.
 * *cursor starts at inv->history. */
int agent_history_next(const agent_invoke_t *inv, const uint8_t **cursor, agent_msg_t *msg);
/* For orch.c's call request: reads an array of {"role","content"} messages
 * (at most AGENT_HISTORY_MAX), each validated; *start..*end is the raw
 * span of its messages, read back with agent_msgs_next. */
agent_err_t agent_read_msgs(mp_reader_t *r, uint32_t *count, const uint8_t **start,
                            const uint8_t **end);
int agent_msgs_next(const uint8_t **cursor, const uint8_t *end, agent_msg_t *msg);
agent_err_t agent_decode_delta(const void *body, size_t len, agent_str_t *delta);
agent_err_t agent_decode_done(const void *body, size_t len, agent_msg_t *output);

/* Encoders append one body to b (reset it first). Return 0, or -1 on overflow. */
int agent_encode_invoke(mp_buf_t *b, const agent_invoke_t *inv, const agent_msg_t *history,
                        uint32_t history_count);
int agent_encode_delta(mp_buf_t *b, const char *delta, size_t len);
int agent_encode_done(mp_buf_t *b, const char *role, const char *content, size_t len);

#endif
