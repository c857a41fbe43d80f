/* pages: the reads of stored history, each answer one page that fits a
 * frame (proto/ORCHESTRATOR.md "Pages and the frame limit"): a run's
 * events, a session's messages and runs, one run, and follow (one page of
 * stored events, then live ones). */
#ifndef MAP_PAGES_H
#define MAP_PAGES_H
#include "core.h"
#include "proto/orch.h"

#define PAGES_EVENTS_DEFAULT 1000
#define PAGES_MESSAGES_DEFAULT 100
#define PAGES_MESSAGES_MAX 1000
#define PAGES_RUNS_DEFAULT 50
#define PAGES_RUNS_MAX 1000
#define PAGES_FOLLOW_EVENTS 1000       /* a follow's replay: events */
#define PAGES_FOLLOW_BYTES (4u << 20)  /* and bytes of STREAM bodies */

void pages_events(engine_t *self, uint64_t req, const orch_request_t *q);
void pages_messages(engine_t *self, uint64_t req, const orch_request_t *q);
void pages_session_runs(engine_t *self, uint64_t req, const orch_request_t *q);
void pages_run(engine_t *self, uint64_t req, const orch_request_t *q);
/* op calls: a run's child runs in start order; 404 unknown_run. */
void pages_calls(engine_t *self, uint64_t req, const orch_request_t *q);
/* The run JSON of a stored row. */
void pages_row_json(sbuf_t *j, const store_run_t *row);
/* follow run_id after after_seq: accepted, one page of stored events, then
 * live ones (the requester becomes a follower) or the final reply. */
void pages_follow(engine_t *self, uint64_t req, const char *run_id, uint64_t after_seq);

#endif
