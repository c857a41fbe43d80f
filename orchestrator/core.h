/* core: the engine's state, shared by the modules that make up the
 * orchestrator's loop (engine.c, flow.c, ops.c, calls.c, pages.c, reply.c). Not an
 * API: components and tests use engine.h.
 *
 * Ownership: engine_new creates everything here and engine_destroy frees
 * it; the modules borrow. One thread. */
#ifndef MAP_CORE_H
#define MAP_CORE_H
#include "dispatch.h"
#include "engine.h"
#include "inbox.h"
#include "outbox.h"
#include "retention.h"
#include "runs.h"
#include "store.h"

#include "common/hmap.h"
#include "common/sbuf.h"
#include "proto/agent.h"
#include "proto/mp.h"
#include "worker/worker.h"

#include <stddef.h>
#include <stdint.h>

#define CORE_BODY_MAX (1u << 20)      /* largest body we send (the broker's frame limit) */
#define CORE_JSON_MAX (8u << 20)      /* largest JSON we build */
/* Paged answers: the JSON of one page leaves room in its REPLY body for
 * the map and the typed fields, so a page always fits a frame; one event
 * (or message) leaves room in a page for the envelope, so a page always
 * holds at least one. Events past CORE_EVENT_MAX are refused where they
 * are made (413 for an input, agent_error for an agent's answer). */
#define CORE_PAGE_BYTES (CORE_BODY_MAX - 8192)
#define CORE_EVENT_MAX (CORE_PAGE_BYTES - 2048)
#define CORE_PAYLOAD_MAX (CORE_EVENT_MAX - 1024) /* an event's payload JSON */
#define CORE_OUT_MAX (256u << 20)     /* bytes the outbox holds */
#define CORE_OUT_ENTRIES (1u << 20)   /* answers the outbox holds */

/* The events one turn made for one watch: one STREAM batch body
 * (proto/orch.h), pushed at the turn's end (reply.c). */
typedef struct {
    uint64_t req;
    uint32_t count;
    mp_buf_t body;             /* max 0: not yet initialised */
} core_batch_t;

struct engine_t {
    engine_config_t cfg;
    store_t *store;
    worker_t *worker;
    runs_t *runs;              /* runs, sessions, followers, watchers */
    retention_t *retention;    /* MAP_RETENTION: prunes old ended runs per tick */
    dispatch_t *dispatch;      /* services cache, routing */
    hmap_t *agent_reqs;        /* our agent request id → run_t */
    int64_t next_tick;
    int64_t turn_started;      /* mono ms the turn began */
    long turn_budget_ms;       /* a turn handles frames this long, then commits */
    int in_tx;                 /* a transaction is open this turn */
    int store_failed;          /* a write failed this turn */
    int blocked;               /* this turn found the lock held elsewhere */
    int replaying;             /* handling frames from the inbox */
    int64_t blocked_since;     /* mono ms the lock was first found held, 0: not */
    inbox_t *inbox;            /* frames kept while the lock is held elsewhere */
    run_t **touched;           /* runs this turn changed */
    size_t ntouched, touched_cap;
    run_t **doomed;            /* runs to fail with internal (a failed turn) */
    size_t ndoomed, doomed_cap;
    outbox_t *out;             /* answers: sent once their turn is committed */
    hmap_t *refused;           /* requests whose answer the full outbox refused */
    mp_buf_t mp;               /* scratch encoder */
    sbuf_t json;               /* scratch JSON: answers and payloads */
    sbuf_t event;              /* scratch JSON: the event flow_emit renders */
    int draining;              /* stopping: new invokes refused */
    uint64_t dropped_frames;   /* agent frames for ended runs */
    hmap_t *call_reqs;         /* op call requests → their child's run id (calls.c) */
    uint64_t calls_done, calls_failed, calls_cancelled, calls_refused; /* since start */
    core_batch_t *batches;     /* reply.c: this turn's watch batches, in first-event order */
    size_t nbatches, batches_cap;
    uint64_t batch_turn;       /* > 0; a watcher's batch_turn equal to it: batches[batch] */
};

/* engine.c: small helpers every module uses. */
char *engine_dup(const agent_str_t *s);          /* NUL-terminated copy, the caller's */
agent_str_t engine_str(const char *s);           /* a view of s (NULL: empty) */
int engine_valid_id(const agent_str_t *s);       /* proto/id.h's rule */
void engine_now(char *buf);                      /* RFC 3339 wall time, CLOCK_RFC3339_LEN */
void engine_begin(engine_t *self);               /* the turn's transaction (gated already) */
void engine_store_check(engine_t *self, int rc, const char *op); /* rc != 0: the turn fails */

#endif
