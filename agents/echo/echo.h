/* echo: the native echo agent's logic, without a network. An invoke's input
 * content comes back word by word as deltas, then as the whole output.
 *
 * Each delta is a word with the whitespace before it, so the deltas
 * concatenate exactly to the input; whitespace after the last word is a
 * delta of its own; empty content gives no delta. Words are split on ASCII
 * whitespace only, so a UTF-8 sequence is never cut.
 *
 * Pacing: with delay_ms > 0 a job emits one delta every delay_ms (the first
 * one delay_ms after it started) and replies with its last delta. With
 * delay_ms 0 a job emits everything at once, inside echo_start. A send the
 * sink refuses (queue full) is retried on the next tick, at most
 * ECHO_RETRIES_MAX times, then the job fails with "internal".
 *
 * Every job has the same delay, so the timer queue is a FIFO: a job that
 * emitted goes to the back, due after every job already waiting. */
#ifndef MAP_ECHO_H
#define MAP_ECHO_H
#include <stddef.h>
#include <stdint.h>

#define ECHO_RETRY_MS 10     /* retry interval of a refused send with delay 0 */
#define ECHO_RETRIES_MAX 100 /* refused sends in a row before a job fails */

typedef struct echo_t echo_t;

/* Where a job's frames go (the worker library, or a test). Each returns 0,
 * or -1 when the frame could not be sent. */
typedef struct {
    int (*stream)(void *arg, uint64_t id, const void *body, size_t len);
    int (*reply)(void *arg, uint64_t id, const void *body, size_t len);
    int (*fail)(void *arg, uint64_t id, const char *code, const char *message);
} echo_sink_t;

typedef struct {
    uint64_t started;   /* invokes accepted */
    uint64_t served;    /* invokes answered with REPLY */
    uint64_t failed;    /* invokes refused or failed by the echo */
    uint64_t cancelled; /* invokes stopped by echo_cancel */
} echo_stats_t;

/* Returns the end of the delta that starts at pos: the whitespace from pos,
 * then the word after it. Returns len at the end of text. */
size_t echo_next_delta(const char *text, size_t len, size_t pos);

/* jobs_max: concurrent jobs; body_max: largest body sent. Copies sink. */
echo_t *echo_new(long delay_ms, size_t jobs_max, size_t body_max, const echo_sink_t *sink,
                 void *arg);
/* Frees every job without sending anything. NULL-safe; sets *self_p = NULL. */
void echo_destroy(echo_t **self_p);

/* Takes an invoke body (read during the call only). A body that does not
 * decode is failed with "bad_request", a job over jobs_max with
 * "overloaded"; an id already running is refused without an answer.
 * Returns 0 when a job started (it may have finished already,
 * with delay 0), -1 when the invoke was refused. */
int echo_start(echo_t *self, uint64_t id, const void *body, size_t len, int64_t now_ms);
/* Stops a job without sending anything (the requester is gone). Returns 0,
 * or -1 for an unknown id. */
int echo_cancel(echo_t *self, uint64_t id);
/* Emits what is due at now_ms. */
void echo_run(echo_t *self, int64_t now_ms);
/* Milliseconds until echo_run has work; -1 when no job waits. */
long echo_timeout_ms(const echo_t *self, int64_t now_ms);
/* Fails every job with code and message. Returns how many. */
size_t echo_fail_all(echo_t *self, const char *code, const char *message);
size_t echo_jobs(const echo_t *self);
void echo_stats(const echo_t *self, echo_stats_t *out);

#endif
