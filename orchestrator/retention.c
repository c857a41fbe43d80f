/* retention: the policy (how old, how much per tick, how often); the SQL is
 * store_prune's.
 *
 * Why it looks like this:
 *   - Age is the run's end (ended_at), so a run that took a week is kept as
 *     long as one that took a second after both ended. The limit is compared
 *     as text: the store writes RFC 3339 UTC with milliseconds, which sorts
 *     as time does.
 *   - One batch of about batch_rows rows per step, one step per timer tick:
 *     a 500-row step took 1.2-1.3 ms at the median, 7-10 ms at p90 and
 *     60-120 ms at p99 (the commits that run a WAL checkpoint, which any
 *     commit of the engine may run too) on a loaded 2-core machine
 *     (bench/retention_bench.c). So the loop never stalls for long, and a
 *     backlog (a first start with a limit on a year of data) drains at
 *     about batch_rows × 10 a second, 5,000 rows, while runs go on; a store
 *     written faster than that for good outgrows its retention.
 *   - A step with nothing to prune sleeps RETENTION_IDLE_MS: one index probe a
 *     second when the store is within its limit. A failed step logs one line
 *     and waits RETENTION_ERROR_MS (a full disk would otherwise log ten lines a
 *     second).
 *   - One info line (retention.pruned) a minute at most, with what went
 *     since the last one: a backlog drains in thousands of steps.
 *   - Counts are totals since start; store_prune's savepoint sits inside the
 *     engine's turn transaction when one is open, so if that turn's commit
 *     fails the batch is undone and counted once more when it is pruned again
 *     (the store, not the count, is the truth). */
#include "retention.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/mem.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define S_KEEP_MAX_MS (100ll * 365 * 24 * 3600 * 1000) /* 100 years */
#define S_LOG_EVERY_MS 60000 /* one retention.pruned line a minute at most */

struct retention_t {
    store_t *store;            /* borrowed */
    int64_t keep_ms;           /* 0: keep everything */
    size_t batch_rows;
    int64_t next_ms;           /* wall ms: no step before this */
    retention_counts_t counts;
    int64_t logged_ms;         /* wall ms of the last retention.pruned line */
    retention_counts_t logged; /* counts at that line */
};

int retention_parse(const char *text, int64_t *keep_ms, char *err, size_t errlen)
{
    if (!text || !*text) {
        *keep_ms = 0;
        return 0;
    }
    size_t len = strlen(text);
    int64_t value = 0;
    size_t i = 0;
    for (; i + 1 < len; i++) {
        if (text[i] < '0' || text[i] > '9' || value > S_KEEP_MAX_MS)
            break;
        value = value * 10 + (text[i] - '0');
    }
    int64_t unit = 0;
    switch (text[len - 1]) {
    case 's': unit = 1000; break;
    case 'm': unit = 60 * 1000; break;
    case 'h': unit = 3600 * 1000; break;
    case 'd': unit = 24 * 3600 * 1000; break;
    default: break;
    }
    if (i == 0 || i + 1 != len || unit == 0 || value == 0 || value > S_KEEP_MAX_MS / unit) {
        snprintf(err, errlen,
                 "'%.64s' is not a duration from 1s to 36500d: a whole number and "
                 "s, m, h or d (e.g. 30d, 12h, 90m), or empty to keep everything",
                 text);
        return -1;
    }
    *keep_ms = value * unit;
    return 0;
}

retention_t *retention_new(store_t *store, int64_t keep_ms, size_t batch_rows, char *err,
                           size_t errlen)
{
    if (keep_ms > 0 && store_prune_prepare(store) != 0) {
        snprintf(err, errlen, "%s", store_errmsg(store));
        return NULL;
    }
    retention_t *self = mem_alloc(sizeof *self);
    self->store = store;
    self->keep_ms = keep_ms > 0 ? keep_ms : 0;
    self->batch_rows = batch_rows > 0 ? batch_rows : RETENTION_BATCH_ROWS;
    return self;
}

void retention_destroy(retention_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    mem_free(*self_p);
    *self_p = NULL;
}

long retention_step(retention_t *self, int64_t now_wall_ms)
{
    if (self->keep_ms == 0 || now_wall_ms < self->next_ms)
        return 0;
    char before[CLOCK_RFC3339_LEN];
    clock_rfc3339(now_wall_ms - self->keep_ms, before);
    store_pruned_t p;
    if (store_prune(self->store, before, self->batch_rows, &p) != 0) {
        self->counts.errors++;
        self->next_ms = now_wall_ms + RETENTION_ERROR_MS;
        LOGW("retention.error", "before=%s error=\"%s\" retry_ms=%d", before,
             store_errmsg(self->store), RETENTION_ERROR_MS);
        return -1;
    }
    uint64_t rows = p.runs + p.events + p.messages + p.sessions;
    if (rows == 0) {
        self->next_ms = now_wall_ms + RETENTION_IDLE_MS;
        return 0;
    }
    self->counts.runs += p.runs;
    self->counts.events += p.events;
    self->counts.messages += p.messages;
    self->counts.sessions += p.sessions;
    self->counts.steps++;
    if (now_wall_ms - self->logged_ms >= S_LOG_EVERY_MS) {
        LOGI("retention.pruned", "before=%s runs=%" PRIu64 " events=%" PRIu64 " messages=%" PRIu64
             " sessions=%" PRIu64 " since_ms=%" PRId64, before,
             self->counts.runs - self->logged.runs, self->counts.events - self->logged.events,
             self->counts.messages - self->logged.messages,
             self->counts.sessions - self->logged.sessions,
             self->logged_ms ? now_wall_ms - self->logged_ms : 0);
        self->logged_ms = now_wall_ms;
        self->logged = self->counts;
    }
    return (long)rows;
}

void retention_counts(const retention_t *self, retention_counts_t *out)
{
    *out = self->counts;
}

size_t retention_json(const retention_t *self, char *buf, size_t cap)
{
    int n = snprintf(buf, cap,
                     "\"pruned_runs\":%" PRIu64 ",\"pruned_events\":%" PRIu64
                     ",\"pruned_messages\":%" PRIu64 ",\"retention_s\":%" PRId64,
                     self->counts.runs, self->counts.events, self->counts.messages,
                     self->keep_ms / 1000);
    if (n < 0)
        n = 0;
    return (size_t)n < cap ? (size_t)n : (cap ? cap - 1 : 0);
}
