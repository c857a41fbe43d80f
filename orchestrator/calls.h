/* calls: agent calls (proto/ORCHESTRATOR.md "Agent calls", SPEC §7). A
 * running run's agent calls another agent with op `call`; the call is a
 * child run of the calling run, started at once outside its session's
 * queue, answered like an invoke with follow.
 *
 * The pure part (tokens, the admission rule) has no engine and is what
 * calls_test checks; the rest is the engine's: the op, the call requests
 * (a CANCEL of one cancels its child), the parent's agent_call_* events,
 * the end of a tree and the deadlines of its ancestors.
 *
 * Callers hold the turn's write lock (engine.c's gate). */
#ifndef MAP_CALLS_H
#define MAP_CALLS_H
#include "core.h"
#include "proto/orch.h"

#define CALLS_DEPTH_DEFAULT 5
#define CALLS_PER_RUN_DEFAULT 32

typedef struct {
    long depth_max;          /* a child deeper than this is refused */
    long per_run_max;        /* distinct call_ids one run may start */
    int allow_reentry;       /* 1: an agent already in the chain may be called */
} calls_limits_t;

/* A fresh call token: 128 bits from getrandom, 32 lowercase hex + NUL.
 * Returns 0, or -1 when the kernel gave no randomness. */
int calls_token_new(char out[AGENT_TOKEN_LEN + 1]);
/* 1 when given is token (constant time in the token's length). */
int calls_token_eq(const char *token, const agent_str_t *given);
/* Whether parent may call agent_id now: 0, or 1 with the reason (SPEC §7
 * wording: "call depth limit (5) reached", ...) in reason. */
int calls_refusal(const run_t *parent, const char *agent_id, size_t len,
                  const calls_limits_t *lim, char *reason, size_t cap);

/* op call. */
void calls_op(engine_t *self, uint64_t req, const orch_request_t *q);
/* A CANCEL of req: when it is a call request, its child (still live) is
 * cancelled. Returns 1 if it was one. */
int calls_cancel_req(engine_t *self, uint64_t req);
/* Forgets req as a call request (its answer is gone another way). */
void calls_drop_req(engine_t *self, uint64_t req);
/* Before run's terminal event: every live descendant ends run_cancelled,
 * deepest first, each with agent_call_cancelled in its parent's log. */
void calls_end_children(engine_t *self, run_t *run);
/* After a child's terminal event (status to, its payload): the parent's
 * agent_call_done/failed/cancelled, the counters, the call requests
 * forgotten. */
void calls_child_ended(engine_t *self, run_t *child, run_status_t to, const char *payload);
/* An event of run: the agent deadline of each waiting ancestor is now +
 * the timeout. */
void calls_refresh(engine_t *self, run_t *run, int64_t now);
/* want, capped at the parent's deadline when the parent waits on its agent. */
int64_t calls_deadline(const run_t *run, int64_t want);

#endif
