/* dispatch: where a run's agent is and how it is asked. The broker's
 * services list is cached (native agents: workers of `agent.<id>`; HTTP
 * agents go through the `bridge`), refreshed every DISPATCH_REFRESH_MS and
 * on demand; an HTTP agent is one with an endpoint in the store. The invoke
 * body carries the session's history, cut to the newest messages that fit
 * one body.
 *
 * Knows the worker library and the store, not runs: the engine (flow.c)
 * decides what a route or an answer means for a run. */
#ifndef MAP_DISPATCH_H
#define MAP_DISPATCH_H
#include "proto/agent.h"
#include "store.h"
#include "worker/worker.h"

#include <stddef.h>
#include <stdint.h>

#define DISPATCH_REFRESH_MS 1000

typedef struct dispatch_t dispatch_t;

typedef enum { DISPATCH_UNKNOWN, DISPATCH_NATIVE, DISPATCH_HTTP } dispatch_route_t;

/* worker may be NULL (tests: no list is asked, no invoke sent). */
dispatch_t *dispatch_new(worker_t *worker, store_t *store, size_t body_max);
void dispatch_destroy(dispatch_t **self_p);

/* Asks the broker for its services unless a request is out (fresh: one is
 * wanted that is newer than the one out). */
void dispatch_ask(dispatch_t *self, int fresh, int64_t now);
/* 1 when the periodic refresh is due. */
int dispatch_due(const dispatch_t *self, int64_t now);
/* The SERVICES request out, 0 if none; dispatch_forget_ask: it is over. */
uint64_t dispatch_asked(const dispatch_t *self);
void dispatch_forget_ask(dispatch_t *self);

/* The broker's answer [[service, workers, capacity, free, queued], ...]:
 * replaces the cache. seen(arg, id) is called for each native agent with
 * workers not recorded before (dispatch_recorded remembers it).
 * Returns 0, or -1 on a malformed list (the cache is then what was read). */
int dispatch_on_services(dispatch_t *self, const uint8_t *body, size_t len,
                         void (*seen)(void *arg, const char *agent_id), void *arg);
/* Forgets which native agents were recorded (a turn that wrote them failed). */
void dispatch_forget_recorded(dispatch_t *self);

size_t dispatch_workers(const dispatch_t *self, const char *agent_id); /* native; 0: none */
size_t dispatch_bridge_workers(const dispatch_t *self);

/* Where agent_id is: HTTP (endpoint copied to buf), native, or unknown.
 * -1 in *store_err when the store could not be read (then UNKNOWN). */
dispatch_route_t dispatch_route(dispatch_t *self, const char *agent_id, char *buf, size_t cap,
                                int *store_err);

/* Sends the invoke (inv without history; inv->endpoint set for HTTP) with up
 * to history_max messages of the session's history, or (session_id NULL: a
 * call's child) the given messages. Returns our request
 * id, or 0: *too_large when even no history fits a body, else the broker
 * could not be reached; *store_err when the history could not be read. */
uint64_t dispatch_invoke(dispatch_t *self, const agent_invoke_t *inv, dispatch_route_t route,
                         const char *session_id, size_t history_max, const agent_msg_t *given,
                         uint32_t ngiven, int *too_large, int *store_err);

/* The run_failed code for an ERROR an agent request ended with. */
const char *dispatch_error_code(const char *code);

#endif
