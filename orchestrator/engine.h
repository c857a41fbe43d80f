/* engine: the orchestrator. Serves the `orchestrator` service over the
 * broker (proto/ORCHESTRATOR.md), owns the runs' state machine and the
 * store, invokes agents (native `agent.<id>` workers or the `bridge` for
 * HTTP agents) and streams every event to the requesters that follow it.
 *
 * One thread, one loop: wait on the broker link, handle what is ready, then
 * at the end of the turn commit the turn's writes in one transaction and only
 * then send what the turn produced (persist, then send). */
#ifndef MAP_ENGINE_H
#define MAP_ENGINE_H
#include <signal.h>
#include <stdint.h>

typedef struct engine_t engine_t;

typedef struct {
    const char *broker;        /* broker endpoint */
    const char *db;            /* SQLite path */
    int durability_full;       /* 1: fsync every commit */
    long agent_timeout_ms;     /* no frame from the agent for this long: agent_timeout */
    long heartbeat_ms;         /* broker heartbeat */
    long history_max;          /* messages of history sent with an invoke */
    long drain_ms;             /* on stop: time given to running runs */
    long runs_max;             /* runs in memory (queued + running) */
    int64_t retention_ms;      /* ended runs older than this are pruned; 0: keep all */
    long queued_max;           /* queued runs per session: past it 429 too_many_runs */
    long follows_max;          /* follows of one run at once: past it 429 too_many_follows */
    long call_depth_max;       /* calls: deepest child (0: CALLS_DEPTH_DEFAULT, 5) */
    long calls_per_run_max;    /* calls one run may start (0: CALLS_PER_RUN_DEFAULT, 32) */
    int allow_reentry;         /* 1: an agent may be called from its own call chain */
} engine_config_t;

/* Opens the store (recovering runs a crash left unfinished) and connects.
 * Returns NULL with one sentence in err on a bad database or endpoint. */
engine_t *engine_new(const engine_config_t *cfg, char *err, size_t errlen);
void engine_destroy(engine_t **self_p);
/* One loop turn: waits at most wait_ms (-1: until the next timer) for the
 * broker link, handles what is ready, commits, sends. Returns 0, or -1
 * when the wait itself failed. For tests and engine_run. */
int engine_turn(engine_t *self, long wait_ms);
/* Runs until *stop; then drains (drain_ms) and fails what is left with a
 * terminal event. Returns 0, or -1 on a fatal store error. */
int engine_run(engine_t *self, volatile sig_atomic_t *stop);

#endif
