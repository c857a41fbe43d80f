/* render: the JSON documents that cross a process boundary as text (SPEC
 * §2-§4): runs, events, agents, messages and the one error envelope. The
 * orchestrator renders each once; the edge sends it as it is.
 *
 * Every function appends to j (sbuf_t: bounded, sets overflow) and returns
 * 0, or -1 once j overflowed. Strings are NUL-terminated UTF-8, escaped
 * here (invalid bytes become U+FFFD); payload is JSON text, copied as is.
 * NULL for an optional string renders null. */
#ifndef MAP_RENDER_H
#define MAP_RENDER_H
#include "common/sbuf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *run_id, *session_id, *agent_id;
    const char *status;       /* queued, running, done, failed, cancelled */
    const char *created_at;
    const char *ended_at;     /* NULL or "": null */
    const char *parent_run_id, *root_run_id; /* a call's child; NULL or "": null */
    uint32_t depth;           /* 0 for a client's run */
} render_run_t;

/* {"run_id","session_id","agent_id","status","created_at","ended_at",
 *  "parent_run_id","root_run_id","depth"} */
int render_run(sbuf_t *j, const render_run_t *r);

typedef struct {
    int64_t event_id;
    const char *run_id, *session_id;
    uint64_t seq;
    const char *type;
    const char *payload;      /* JSON text */
    const char *created_at;
    const char *parent_run_id; /* a call's child: its parent; NULL or "": a client's run */
    uint32_t depth;
} render_event_t;

/* {"event_id","run_id","session_id","seq","type","payload","created_at"},
 * then "parent_run_id","depth" for a child run's event (SPEC §2). */
int render_event(sbuf_t *j, const render_event_t *e);

/* The one error envelope, for answers and run_failed payloads alike:
 * {"error":{"code","message"}}, with "run_id" inside "error" when run_id is
 * not NULL (busy). */
int render_error(sbuf_t *j, const char *code, const char *message, const char *run_id);

typedef struct {
    const char *agent_id, *name;
    const char *endpoint;     /* NULL: a native agent ("kind":"native") */
    size_t workers;
    const char *created_at;
} render_agent_t;

/* {"agent_id","name","endpoint","kind","workers","created_at"} */
int render_agent(sbuf_t *j, const render_agent_t *a);

/* {"message_id":"<id>","run_id","role","content","created_at"} */
int render_message(sbuf_t *j, int64_t message_id, const char *run_id, const char *role,
                   const char *content, size_t content_len, const char *created_at);

#endif
