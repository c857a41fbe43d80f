/* relay: one invoke of an external agent, as a state machine that knows
 * nothing of sockets. The bridge feeds it what libcurl reports (the status
 * and content type once the headers are in, body bytes as they come, the
 * transfer's end, an idle timeout) and the relay answers through a sink:
 * zero or more deltas, then exactly one of done or fail.
 *
 *   STREAMING --done event--> DONE     (done sent; the rest of the answer
 *       |                               is read and ignored, so that the
 *       |                               keep-alive connection can be reused)
 *       +--error, bad status, bad content type, malformed event, answer too
 *          large, cut before done, unreachable, timeout--> FAILED (fail sent)
 *
 * Answer format (SPEC §5): a text/event-stream of `delta` events (or
 * unnamed ones) whose data is JSON with a string `delta`, `content` or
 * `text`, a JSON string, or plain non-JSON text; then `done` with
 * {"output":{"role","content"}}, or data empty / {} / without output (the
 * output is then the deltas joined). `event: error` with {"code","message"}
 * fails the invoke. Other event types are ignored.
 *
 * Failure codes: agent_unavailable (cannot connect or resolve, HTTP 5xx),
 * agent_error (HTTP 4xx or other non-2xx, wrong content type, error event,
 * malformed event, cut before done, answer over the maximum),
 * agent_timeout (no byte for the timeout). */
#ifndef MAP_RELAY_H
#define MAP_RELAY_H
#include "proto/agent.h"
#include "proto/frame.h"

#include <curl/curl.h>
#include <stddef.h>

typedef struct relay_t relay_t;

typedef struct {
    /* A delta to pass on now. Returns 0, or -1 when it could not be passed
     * on (the relay then fails with code "internal"). */
    int (*delta)(void *arg, const char *text, size_t len);
    /* Final: the output. Strings valid only during the call. */
    void (*done)(void *arg, const char *role, size_t role_len, const char *content, size_t len);
    /* Final: a SPEC error code and one sentence (at most RELAY_MESSAGE_MAX
     * bytes, NUL-terminated). */
    void (*fail)(void *arg, const char *code, const char *message);
} relay_sink_t;

typedef enum {
    RELAY_STREAMING = 0, /* reading the answer */
    RELAY_DONE,          /* done sent; draining what is left */
    RELAY_FAILED,        /* fail sent */
} relay_state_t;

#define RELAY_MESSAGE_MAX 400
/* The largest answer an agent may give: what one frame between processes
 * carries (FRAME_BODY_MAX_DEFAULT), less room for the REPLY's own fields,
 * so whatever the bridge accepts the broker and the orchestrator carry
 * (the orchestrator still refuses, as agent_error, an answer whose JSON
 * escaping grows it past one event). */
#define RELAY_ANSWER_MAX (FRAME_BODY_MAX_DEFAULT - 16384)
#define RELAY_URL_MAX (AGENT_ENDPOINT_MAX + 16)

/* max_response: largest answer body, bytes; it also bounds one SSE line or
 * event and the joined deltas. Never NULL. */
relay_t *relay_new(size_t max_response, const relay_sink_t *sink, void *arg);
void relay_destroy(relay_t **self_p);
relay_state_t relay_state(const relay_t *self);

/* The response headers are complete. status < 200 (interim) is ignored.
 * content_type may be NULL. Returns 0 to go on reading, -1 to stop the
 * transfer (the relay has failed). */
int relay_headers(relay_t *self, long status, const char *content_type);
/* Body bytes. Returns 0 to go on reading, -1 to stop the transfer (failed,
 * or past the maximum while draining after done). */
int relay_body(relay_t *self, const void *buf, size_t len);
/* The transfer ended with rc (errbuf: curl's message, may be ""). Fails the
 * relay if it is still streaming. */
void relay_end(relay_t *self, CURLcode rc, const char *errbuf);
/* No byte for timeout_ms: fails the relay if it is still streaming. */
void relay_timeout(relay_t *self, long timeout_ms);

/* The JSON body of POST /invoke for inv (SPEC §5). When inv has a platform
 * map (a run token), the body gets "platform":{"calls_url":
 * "<public_url>/v1/runs/<run_id>/calls","token","depth"} (SPEC §7);
 * public_url is a relay_public_url result. Returns a string the caller
 * frees with mem_free(), or NULL with one sentence in err (text that is
 * not valid UTF-8). */
char *relay_request_json(const agent_invoke_t *inv, const char *public_url, char *err,
                         size_t errlen);
/* The edge's public base URL (where agents reach /v1/runs/.../calls) into
 * out (RELAY_PUBLIC_URL_MAX bytes), trailing "/" dropped: url, or when url
 * is NULL/"" "http://" + http_addr, or "http://127.0.0.1:8080" when that
 * is NULL/"" too. Returns 0, or -1 with one sentence in err when it is not
 * http(s)://host..., has spaces or controls, or is too long. */
#define RELAY_PUBLIC_URL_MAX 512
int relay_public_url(const char *url, const char *http_addr, char *out, size_t cap, char *err,
                     size_t errlen);
/* "{endpoint}/invoke" into out (RELAY_URL_MAX bytes), a trailing "/" of the
 * endpoint dropped. Returns 0, or -1 with one sentence in err when the
 * endpoint is missing, not http(s)://host..., or has spaces or controls. */
int relay_url(agent_str_t endpoint, char *out, size_t cap, char *err, size_t errlen);

#endif
