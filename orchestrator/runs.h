/* runs: the registry of the runs in memory, their sessions and the
 * requesters that follow them. Pure bookkeeping: no store, no socket, no
 * event; the engine's modules (flow.c, ops.c) decide, runs.c keeps.
 *
 * Objects and owners (all owned by the registry):
 *   run_t      a queued or running run, key run_id. A run that ends is
 *              marked (runs_mark_ended) and stays until runs_free_ended at
 *              the end of the turn: the store has the rest.
 *              A call's child run (runs_add_child) is in no session queue;
 *              it points to its parent and is in the parent's children
 *              list while both are in memory (freeing either unlinks).
 *   session_t  a session with a running run, queued runs or watchers; freed
 *              when nothing refers to it (runs_session_release).
 *   follower_t a requester streaming one run (follow, invoke with follow).
 *   watcher_t  a requester streaming every run of a session (watch).
 * Requests (the broker's ids) map to the follower or watcher they are, so a
 * cancel finds it (runs_drop_req).
 *
 * The record structs are visible: their fields are the run's state and the
 * engine's modules read and set them; lists and counts are changed only
 * through these functions. */
#ifndef MAP_RUNS_H
#define MAP_RUNS_H
#include "common/clock.h"
#include "common/ids.h"
#include "proto/agent.h"
#include "runfsm.h"

#include <stddef.h>
#include <stdint.h>

typedef struct runs_t runs_t;
typedef struct session_t session_t;

typedef struct follower_t {
    uint64_t req;              /* the requester's request we answer */
    uint64_t next_seq;         /* first seq not yet sent */
    struct follower_t *next;
} follower_t;

typedef struct watcher_t {
    uint64_t req;
    uint64_t batch_turn;       /* reply.c: batches[batch] is ours in that turn */
    size_t batch;
    struct watcher_t *next;
} watcher_t;

typedef struct run_t {
    char run_id[IDS_MAX];
    session_t *session;
    char *agent_id;
    char *request_id;          /* NULL when the invoke had none */
    char *role;                /* the input message's role */
    char *content;             /* its content: NULL while queued (the store has
                                  it; loaded when the run starts) */
    size_t content_len;
    char created_at[CLOCK_RFC3339_LEN];
    run_status_t status;
    uint64_t seq;              /* last seq written */
    uint64_t agent_req;        /* our request to the agent, 0 if none */
    int64_t deadline;          /* mono ms: agent timeout while agent_req */
    int resolving;             /* waiting for the services list */
    int asked_broker;          /* a fresh services list was asked for it */
    int ended;                 /* terminal: freed at the end of the turn */
    int touched;               /* changed in this turn (engine's list) */
    int created;               /* created in this turn */
    int doomed;                /* to fail once the store writes (engine's list) */
    uint64_t seq0;             /* seq when the turn first touched it */
    follower_t *followers;
    size_t nfollowers;
    struct run_t *qnext;       /* session queue link */
    struct run_t *next_ended;  /* ended list link */
    /* Calls (proto/ORCHESTRATOR.md "Agent calls"). */
    char token[AGENT_TOKEN_LEN + 1]; /* the run's call token ("" until set) */
    uint32_t depth;            /* 0: a client's run */
    char *parent_run_id;       /* NULL for a client's run */
    char *root_run_id;         /* NULL for a client's run */
    char *call_id;             /* NULL for a client's run */
    struct run_t *parent;      /* NULL for a client's run, or once the parent is freed */
    struct run_t *children;    /* child runs in memory, newest first */
    struct run_t *sibling;     /* next in the parent's children list */
    uint32_t ncalls;           /* distinct call_ids this run started */
    uint8_t *history;          /* a child's history: raw msgpack messages */
    size_t history_len;
    uint32_t history_count;
    const char *call_output;   /* while a child ends done: its agent_invoke_done payload */
} run_t;

struct session_t {
    char *id;
    run_t *running;
    run_t *qhead, *qtail;      /* queued runs, in order of acceptance */
    size_t queued;             /* runs in that queue */
    watcher_t *watchers;
    size_t runs;               /* run_t that point here, ended ones included
                                  until the turn's end frees them */
};

runs_t *runs_new(void);
/* Frees every run, session, follower and watcher. NULL-safe. */
void runs_destroy(runs_t **self_p);

/* The session, or NULL. */
session_t *runs_session(runs_t *self, const char *id);
/* The session, created empty when missing. */
session_t *runs_session_add(runs_t *self, const char *id);
/* Frees s if no run and no watcher refers to it any more. */
void runs_session_release(runs_t *self, session_t *s);
/* fn(arg, id) as a session is released (freed), before its id goes; NULL: none. */
void runs_on_release(runs_t *self, void (*fn)(void *arg, const char *session_id), void *arg);

/* A new queued run at the end of its session's queue (strings copied;
 * request_id NULL: none). content stays NULL (see run_t). */
run_t *runs_add(runs_t *self, session_t *s, const char *run_id, const char *agent_id,
                const char *request_id, const char *role, const char *created_at);
/* A call's child run of parent, running at once (in no queue; strings
 * copied, depth and root from the parent, history copied: count messages
 * in len raw bytes). */
run_t *runs_add_child(runs_t *self, run_t *parent, const char *run_id, const char *agent_id,
                      const char *role, const char *created_at, const char *call_id,
                      const uint8_t *history, size_t history_len, uint32_t history_count);
/* The child of parent in memory that call_id made, or NULL. */
run_t *runs_child_by_call(const run_t *parent, const char *call_id, size_t len);
/* Any run in memory (one that ended this turn too), or NULL. */
run_t *runs_get(runs_t *self, const char *run_id);
/* A run that has not ended, or NULL. */
run_t *runs_live(runs_t *self, const char *run_id);
size_t runs_count(const runs_t *self);
/* The queued or running run of s started with request_id, or NULL. */
run_t *runs_find_request(const session_t *s, const char *request_id, size_t len);

/* Takes the head of its session's queue to running (run must be it); a
 * child run is in no queue and leaves the session as it is. */
void runs_start(run_t *run);
/* Takes run out of its session's queue if it is in it (and running if it
 * is the running one). */
void runs_dequeue(run_t *run);

void runs_add_follower(runs_t *self, run_t *run, uint64_t req, uint64_t next_seq);
void runs_add_watcher(runs_t *self, session_t *s, uint64_t req);
/* Forgets the follower or watcher that req is. Returns 1 if it was one. */
int runs_drop_req(runs_t *self, uint64_t req);
/* Forgets every follower of run (their requests are answered elsewhere). */
void runs_clear_followers(runs_t *self, run_t *run);
/* The session a watch request watches, or NULL. */
session_t *runs_watched(runs_t *self, uint64_t req);
/* Calls cb for every watch request (shutdown). */
void runs_each_watch(runs_t *self, void (*cb)(void *arg, uint64_t req), void *arg);

/* The run ended: ended is set, it is freed by runs_free_ended. */
void runs_mark_ended(runs_t *self, run_t *run);
/* Undoes runs_mark_ended (a turn that did not commit). */
void runs_unend(runs_t *self, run_t *run);
/* Frees the runs ended this turn (and sessions left empty). */
void runs_free_ended(runs_t *self);
/* Frees a run that must never have existed (created in a turn that did not
 * commit): out of its queue, followers forgotten. */
void runs_forget(runs_t *self, run_t *run);

/* Calls cb for each run in memory, ended ones included; cb may end runs or
 * add some (those are not visited). */
void runs_each(runs_t *self, void (*cb)(void *arg, run_t *run), void *arg);

#endif
