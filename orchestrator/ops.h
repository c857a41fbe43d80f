/* ops: the `orchestrator` service's operations (proto/ORCHESTRATOR.md),
 * one table from op name to handler. A request body is decoded strictly;
 * a body that does not decode gets ERROR bad_request, an unknown op REPLY
 * 400. Callers hold the turn's write lock (engine.c's gate). */
#ifndef MAP_OPS_H
#define MAP_OPS_H
#include "core.h"

/* on_request: handles one request of a requester. */
void ops_request(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg);
/* on_cancel: the requester stopped following or watching (or is gone). */
void ops_cancel(worker_t *w, uint64_t req, void *arg);

#endif
