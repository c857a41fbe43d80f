/* fanout: the native fan-out agent's logic (agents/fanout/main.c runs it).
 * Each invoke calls the target agent (default "echo") twice at once through
 * the worker library's call API (worker/call.h): call "c1" with the input
 * as it is, call "c2" with its words in reverse order. Each child's end is
 * streamed as one progress delta ("c1: <answer>\n", in the order the
 * children end); the output is both lines in call order:
 *
 *   c1: <c1's output>\n
 *   c2: <c2's output>
 *
 * A child that failed, was cancelled or was refused shows as
 * "c2 failed (code: message)" in its line: the run still answers (the agent
 * decides what a failed child means; here, nothing worse than a line).
 * Cancel of the invoke cancels both calls. An invoke without a call token
 * (not from the orchestrator) is failed "bad_request". */
#ifndef MAP_FANOUT_H
#define MAP_FANOUT_H
#include "worker/call.h"
#include "worker/worker.h"

#include <stddef.h>
#include <stdint.h>

#define FANOUT_CALLS 2

typedef struct fanout_t fanout_t;

typedef struct {
    uint64_t started;   /* invokes that made their calls */
    uint64_t answered;  /* invokes answered with REPLY */
    uint64_t failed;    /* invokes failed (bad body, calls not sent) */
    uint64_t cancelled; /* invokes cancelled (their calls with them) */
    uint64_t children_failed; /* calls that did not end CALL_DONE */
} fanout_stats_t;

/* Writes text's words (split on ASCII whitespace) in reverse order, one
 * space between them, into out (cap bytes, >= len + 1). Returns the length. */
size_t fanout_reverse_words(const char *text, size_t len, char *out, size_t cap);

/* w: the worker serving the invokes; target: the agent called. jobs_max:
 * invokes at once. Creates the call_set_t it uses (fanout_calls). */
fanout_t *fanout_new(worker_t *w, const char *target, size_t jobs_max);
void fanout_destroy(fanout_t **self_p);
call_set_t *fanout_calls(fanout_t *self);

/* The worker's serving callbacks. */
void fanout_on_request(fanout_t *self, uint64_t id, const uint8_t *body, size_t len);
void fanout_on_cancel(fanout_t *self, uint64_t id);
/* Fails every invoke (their calls cancelled). Returns how many. */
size_t fanout_fail_all(fanout_t *self, const char *code, const char *message);
size_t fanout_jobs(const fanout_t *self);
void fanout_stats(const fanout_t *self, fanout_stats_t *out);

#endif
