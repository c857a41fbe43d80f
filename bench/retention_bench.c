/* retention_bench: what one retention step costs. Fills a store with
 * --runs ended runs of --events events (200-byte payloads) and two messages
 * each, all 40 days old, then runs retention steps of --batch rows (as the
 * orchestrator's timer does, one per tick) until nothing is left, timing
 * each: the cost of building the indexes on that store, the rows deleted,
 * and the step time's mean, p50, p90, p99 and worst (a step whose commit
 * runs a WAL checkpoint shows in the tail). Checks every row went. */
#include "orchestrator/retention.h"

#include "common/clock.h"
#include "common/flags.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int s_cmp(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
    long runs = 20000, events = 20, batch = RETENTION_BATCH_ROWS;
    const char *db = "/tmp/map-retention-bench.db";
    flag_t table[] = {
        {"runs", NULL, FLAG_INT, &runs, 1, 10000000, "ended runs to prune"},
        {"events", NULL, FLAG_INT, &events, 1, 100000, "events per run"},
        {"batch", NULL, FLAG_INT, &batch, 1, 1000000, "rows per step"},
        {"db", NULL, FLAG_STR, &db, 0, 0, "scratch database (deleted first)"},
    };
    char err[512];
    int rc = flags_parse(table, 4, argc, argv, "retention_bench: the cost of a retention step",
                         err, sizeof err);
    if (rc != 0) {
        if (rc < 0)
            fprintf(stderr, "retention_bench: %s\n", err);
        return rc < 0 ? 2 : 0;
    }
    char path[600];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s%s", db, suffix[i]);
        unlink(path);
    }
    store_t *st = store_new(db, STORE_NORMAL, err, sizeof err);
    if (!st) {
        fprintf(stderr, "retention_bench: %s\n", err);
        return 1;
    }
    int64_t now = clock_wall_ms();
    char t[CLOCK_RFC3339_LEN], id[64], sid[64], payload[203];
    clock_rfc3339(now - 40ll * 86400000, t);
    memset(payload, 'x', sizeof payload);
    payload[0] = payload[201] = '"';
    payload[202] = '\0';
    for (long i = 0; i < runs; i++) {
        if (i % 1000 == 0 && store_begin(st) != 0)
            return 1;
        snprintf(id, sizeof id, "run_%08ld", i);
        snprintf(sid, sizeof sid, "s%ld", i % 500);
        int64_t e;
        if (store_session_ensure(st, sid, t) != 0 ||
            store_run_insert(st, id, sid, "echo", NULL, "user", "hi", 2, t) != 0)
            return 1;
        for (long q = 1; q <= events; q++)
            if (store_event_append(st, id, (uint64_t)q, q == events ? "run_done" : "d", payload, t,
                                   &e) != 0)
                return 1;
        if (store_run_set_status(st, id, "done", t) != 0 ||
            store_message_append(st, sid, id, "user", "hi", 2, t) != 0 ||
            store_message_append(st, sid, id, "assistant", "hi", 2, t) != 0)
            return 1;
        if ((i % 1000 == 999 || i == runs - 1) && store_commit(st) != 0)
            return 1;
    }
    int64_t t0 = clock_mono_us();
    retention_t *r = retention_new(st, 30ll * 86400000, (size_t)batch, err, sizeof err);
    int64_t index_us = clock_mono_us() - t0;
    if (!r) {
        fprintf(stderr, "retention_bench: %s\n", err);
        return 1;
    }
    printf("store: %ld runs x %ld events, indexes built in %.1f ms\n", runs, events,
           index_us / 1000.0);
    size_t cap = (size_t)(runs * (events + 4) / batch + 16);
    int64_t *d = calloc(cap, sizeof *d);
    long steps = 0, rows = 0;
    int64_t sum = 0;
    for (; (size_t)steps < cap; steps++) {
        int64_t a = clock_mono_us();
        long n = retention_step(r, now + steps * 100);
        int64_t us = clock_mono_us() - a;
        if (n < 0)
            return 1;
        if (n == 0)
            break;
        d[steps] = us;
        sum += us;
        rows += n;
    }
    retention_counts_t c;
    retention_counts(r, &c);
    long sessions = runs < 500 ? runs : 500;
    long want = runs * (events + 3) + sessions; /* events, 2 messages, the run; the sessions */
    int ok = c.runs == (uint64_t)runs && c.events == (uint64_t)(runs * events) && rows == want;
    qsort(d, (size_t)steps, sizeof *d, s_cmp);
    double mean = steps ? sum / 1000.0 / steps : 0;
    printf("%ld rows in %ld steps of about %ld: mean %.2f ms, p50 %.2f, p90 %.2f, p99 %.2f, "
           "worst %.2f ms; %s\n",
           rows, steps, batch, mean, d[steps / 2] / 1000.0, d[steps * 9 / 10] / 1000.0,
           d[steps * 99 / 100] / 1000.0, d[steps ? steps - 1 : 0] / 1000.0,
           ok ? "every row went" : "ROWS LEFT");
    printf("{\"bench\":\"retention\",\"runs\":%ld,\"events\":%ld,\"batch\":%ld,\"rows\":%ld,"
           "\"steps\":%ld,\"index_ms\":%.1f,\"step_ms\":{\"mean\":%.2f,\"p50\":%.2f,\"p90\":%.2f,"
           "\"p99\":%.2f,\"max\":%.2f},\"ok\":%s}\n",
           runs, events, batch, rows, steps, index_us / 1000.0, mean, d[steps / 2] / 1000.0,
           d[steps * 9 / 10] / 1000.0, d[steps * 99 / 100] / 1000.0,
           d[steps ? steps - 1 : 0] / 1000.0, ok ? "true" : "false");
    free(d);
    retention_destroy(&r);
    store_destroy(&st);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s%s", db, suffix[i]);
        unlink(path);
    }
    return ok ? 0 : 1;
}
