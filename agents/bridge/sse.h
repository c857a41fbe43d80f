/* sse: an incremental text/event-stream parser (HTML living standard,
 * "Server-sent events", section "Interpreting an event stream").
 *
 * Bytes arrive in chunks split anywhere (inside a line, between a CR and its
 * LF, inside the UTF-8 BOM); each complete event is handed to a callback as
 * (type, data, id). The parser is bounded: one maximum, fixed at creation,
 * applies to a line (without its line end) and to an event's joined data;
 * passing it is an error value and the parser stops.
 *
 * Rules followed: lines end with CRLF, LF or CR; a UTF-8 BOM at the very
 * start is skipped; a line starting with ':' is a comment; "field: value"
 * has one optional space after the colon stripped; a line without a colon
 * is a field with an empty value; `data` lines are joined with "\n";
 * `event` sets the type (default "message"); `id` (unless it contains NUL)
 * sets the last event id, which persists across events; `retry` with only
 * ASCII digits sets the reconnection time; unknown fields are ignored; a
 * blank line dispatches; an event without data is not dispatched; an event
 * still open at the end of the stream is discarded. Bytes are not decoded:
 * invalid UTF-8 is passed on as it came.
 *
 * One deliberate option: SSE_TYPED_EMPTY also dispatches an event that has
 * an `event` line but no `data` line (with empty data), for agents that
 * finish with "event: done\n\n". */
#ifndef MAP_SSE_H
#define MAP_SSE_H
#include <stddef.h>

typedef struct sse_t sse_t;

/* One event; every string is NUL-terminated and valid only during the
 * callback. */
typedef struct {
    const char *type; /* "message" when the event named none */
    size_t type_len;
    const char *data; /* data lines joined with "\n" */
    size_t data_len;
    const char *id;   /* last event id seen so far ("" if none) */
    size_t id_len;
} sse_event_t;

/* Returns 0 to go on, non-zero to stop the parser (sse_feed then returns
 * SSE_STOPPED, now and on every later call). */
typedef int (*sse_event_fn)(void *arg, const sse_event_t *ev);

typedef enum {
    SSE_OK = 0,
    SSE_STOPPED,      /* the callback asked to stop */
    SSE_E_LINE,       /* a line longer than the maximum */
    SSE_E_EVENT,      /* an event's data longer than the maximum */
} sse_err_t;

enum { SSE_TYPED_EMPTY = 1 };

/* max: largest line and largest event data, bytes (> 0). flags: 0 or
 * SSE_TYPED_EMPTY. Never NULL (the allocator aborts on OOM). */
sse_t *sse_new(size_t max, int flags, sse_event_fn fn, void *arg);
void sse_destroy(sse_t **self_p);
/* Parses len bytes, calling fn for each event completed. After a non-OK
 * result every later feed returns the same result and parses nothing. */
sse_err_t sse_feed(sse_t *self, const void *buf, size_t len);
/* End of stream: drops a partial line and a partial event. Returns the
 * sticky result (SSE_OK if none). Returns 1 in *pending when something was
 * dropped (bytes of a line or fields of an undispatched event); may be NULL. */
sse_err_t sse_finish(sse_t *self, int *pending);
const char *sse_strerror(sse_err_t err);
/* Reconnection time from the last valid `retry` field, or -1. */
long long sse_retry(const sse_t *self);

#endif
