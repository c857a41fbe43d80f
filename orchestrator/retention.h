/* retention: keeps the store bounded in time (MAP_RETENTION). Ended runs
 * whose end is older than the limit go with their events, their messages and
 * their emptied session, a bounded batch per timer tick; queued and running
 * runs are never touched. Without a limit it does nothing.
 *
 *   int64_t keep_ms;
 *   if (retention_parse("30d", &keep_ms, err, sizeof err) != 0) ... one line, exit 2
 *   retention_t *r = retention_new(store, keep_ms, RETENTION_BATCH_ROWS, err, sizeof err);
 *   retention_step(r, clock_wall_ms());          (from the loop's timer)
 */
#ifndef MAP_RETENTION_H
#define MAP_RETENTION_H
#include "store.h"

#include <stddef.h>
#include <stdint.h>

#define RETENTION_BATCH_ROWS 500  /* rows deleted per step, about (store_prune) */
#define RETENTION_IDLE_MS 1000    /* after a step with nothing to prune: next look */
#define RETENTION_ERROR_MS 10000  /* after a failed step: next try */

typedef struct retention_t retention_t;

/* Parses a duration: a whole number > 0 and one unit, s, m, h or d
 * ("30d", "12h", "90m", "45s"); "" (or NULL) is no limit (*keep_ms = 0).
 * Returns 0, or -1 with one sentence in err. OUT keep_ms. */
int retention_parse(const char *text, int64_t *keep_ms, char *err, size_t errlen);

/* store: borrowed, must outlive the object. keep_ms 0: keep everything (no
 * step does anything). Otherwise makes the indexes pruning reads
 * (store_prune_prepare; blocking, once per database). NULL + err on a store
 * error. */
retention_t *retention_new(store_t *store, int64_t keep_ms, size_t batch_rows, char *err,
                           size_t errlen);
void retention_destroy(retention_t **self_p);

/* One batch, unless the last step found nothing (or failed) less than
 * RETENTION_IDLE_MS (RETENTION_ERROR_MS) ago. Prunes runs that ended before
 * now_wall_ms - keep_ms. Runs inside the caller's open transaction if there
 * is one (store_prune's savepoint), so a step never waits for a commit of its
 * own. Returns the rows deleted (0: nothing due), or -1 on a store error
 * (logged; nothing of the step was deleted). */
long retention_step(retention_t *self, int64_t now_wall_ms);

/* Totals since retention_new. */
typedef struct {
    uint64_t runs, events, messages, sessions;
    uint64_t steps;   /* steps that deleted something */
    uint64_t errors;  /* failed steps */
} retention_counts_t;
void retention_counts(const retention_t *self, retention_counts_t *out);

/* The totals as JSON members for a health document, without braces:
 * "pruned_runs":N,"pruned_events":N,"pruned_messages":N,"retention_s":N
 * (retention_s 0: keep everything). OUT buf; returns its length. */
size_t retention_json(const retention_t *self, char *buf, size_t cap);

#endif
