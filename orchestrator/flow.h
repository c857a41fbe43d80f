/* flow: runs in motion. Starting a run, its events (each written to the
 * store in the turn's transaction and queued for its followers and its
 * session's watchers), the agent's answers, the end of a run, and the runs
 * a failed turn dooms. Every change to a run goes through here so that the
 * turn knows what to roll back (flow_touch).
 *
 * Callers hold the turn's write lock (engine.c's gate). */
#ifndef MAP_FLOW_H
#define MAP_FLOW_H
#include "core.h"

/* The turn changes run: it is remembered with its seq (a failed turn puts
 * it back). */
void flow_touch(engine_t *self, run_t *run);
/* run ends with run_failed/internal at the next turn that writes. */
void flow_doom(engine_t *self, run_t *run);
void flow_undoom(engine_t *self, run_t *run);

/* The user_input payload of an input message into self->json. 0, or -1
 * after answering req 413 too_large: its event would not fit a page
 * (SPEC §1 Limits). */
int flow_input_payload(engine_t *self, uint64_t req, const agent_str_t *role,
                       const agent_str_t *content);
/* Writes one event (payload: JSON text) and queues it for the followers
 * and watchers. */
void flow_emit(engine_t *self, run_t *run, const char *type, const char *payload);
/* The run JSON of a run in memory (ended_at NULL: not ended). */
void flow_run_json(run_t *run, sbuf_t *j, const char *ended_at);
/* Starts a queued run: running, run_started, user_input, then its agent
 * (a session's head, or a call's child). */
void flow_run_start(engine_t *self, run_t *run);
/* Starts the session's next queued run if none runs. */
void flow_start_next(engine_t *self, session_t *s);
/* Ends a run: the terminal event, the store row, the followers' replies. */
void flow_run_end(engine_t *self, run_t *run, run_input_t input, const char *payload);
void flow_run_fail(engine_t *self, run_t *run, const char *code, const char *message);
/* Tells the agent to stop (if it was asked) and forgets the request. */
void flow_stop_agent(engine_t *self, run_t *run);

/* The worker library's requesting callbacks (the engine gates them). */
void flow_on_stream(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg);
void flow_on_reply(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg);
void flow_on_error(worker_t *w, uint64_t req, const char *code, const char *message, void *arg);

/* Fails every doomed run (internal). */
void flow_fail_doomed(engine_t *self);
/* Fails every run in memory (stopping). */
void flow_fail_all(engine_t *self, const char *message);
/* Fails the runs whose agent has been silent past the timeout; stops when
 * gate(self) says the turn cannot write. */
void flow_timeouts(engine_t *self, int64_t now, int (*gate)(engine_t *self));

#endif
