/* store_prune: retention's deletes (store.h, store_prune*). */
#include "store_sql.h"

#include "common/mem.h"

#include <stdio.h>
#include <string.h>

/* ---- retention -------------------------------------------------------------
 * Pruning reads two indexes made by store_prune_prepare rather than by a
 * migration, so the schema version stays (they only serve retention). Its
 * statements are prepared per call: one call per timer tick, a handful of
 * statements, against hundreds of rows deleted. Candidates are collected
 * before anything is deleted (no delete under a running SELECT), at most
 * S_PRUNE_RUNS_MAX per call. */
#define S_PRUNE_RUNS_MAX 64

int store_prune_prepare(store_t *self)
{
    return store_sql_exec(self,
                  "CREATE INDEX IF NOT EXISTS runs_ended ON runs(ended_at) WHERE ended_at IS NOT NULL;"
                  "CREATE INDEX IF NOT EXISTS messages_run ON messages(run_id);",
                  "creating the retention indexes");
}

typedef enum {
    S_PR_CANDIDATES,
    S_PR_EVENTS,
    S_PR_EVENTS_LEFT,
    S_PR_MESSAGES,
    S_PR_RUN,
    S_PR_SESSION,
    S_PR_COUNT
} s_prune_stmt_t;

static const char *s_prune_sql[S_PR_COUNT] = {
    [S_PR_CANDIDATES] = "SELECT run_id, session_id FROM runs INDEXED BY runs_ended WHERE ended_at IS NOT NULL"
                        " AND ended_at < ?1 AND status IN ('done', 'failed', 'cancelled')"
                        " ORDER BY ended_at LIMIT ?2",
    [S_PR_EVENTS] = "DELETE FROM events WHERE event_id IN (SELECT event_id FROM events"
                    " WHERE run_id = ?1 ORDER BY seq LIMIT ?2)",
    [S_PR_EVENTS_LEFT] = "SELECT EXISTS (SELECT 1 FROM events WHERE run_id = ?1)",
    [S_PR_MESSAGES] = "DELETE FROM messages WHERE run_id = ?1",
    [S_PR_RUN] = "DELETE FROM runs WHERE run_id = ?1 AND status IN ('done', 'failed', 'cancelled')",
    [S_PR_SESSION] = "DELETE FROM sessions WHERE session_id = ?1"
                     " AND NOT EXISTS (SELECT 1 FROM runs WHERE session_id = ?1)",
};

typedef struct {
    char run_id[129];
    char session_id[129];
} s_prune_run_t;

/* Steps a DELETE with the run (or session) id in ?1 and an optional limit in
 * ?2; OUT changes: rows it deleted. */
static int s_prune_delete(store_t *self, sqlite3_stmt *st, const char *id, sqlite3_int64 limit,
                          uint64_t *changes)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    store_sql_text(st, 1, id);
    if (limit > 0)
        sqlite3_bind_int64(st, 2, limit);
    if (store_sql_done(self, st, "pruning") != 0)
        return -1;
    *changes = (uint64_t)sqlite3_changes(self->db);
    return 0;
}

/* Prunes the candidates within budget; 0 or -1. */
static int s_prune_runs(store_t *self, sqlite3_stmt **st, const s_prune_run_t *runs, size_t n,
                        size_t max_rows, store_pruned_t *out)
{
    size_t budget = max_rows;
    for (size_t i = 0; i < n && budget > 0; i++) {
        uint64_t k;
        if (s_prune_delete(self, st[S_PR_EVENTS], runs[i].run_id, (sqlite3_int64)budget, &k) != 0)
            return -1;
        out->events += k;
        budget -= k;
        if (budget == 0) {
            /* The budget ran out exactly on this run: is anything left? */
            sqlite3_stmt *left = st[S_PR_EVENTS_LEFT];
            sqlite3_reset(left);
            store_sql_text(left, 1, runs[i].run_id);
            if (sqlite3_step(left) != SQLITE_ROW)
                return store_sql_fail(self, "pruning");
            int more = sqlite3_column_int(left, 0);
            sqlite3_reset(left);
            if (more)
                return 0; /* the rest of this run next time */
        }
        /* Its last events went: the run's own rows go with them (a few rows
         * past the budget at most: a run has two messages, one row and one
         * session). */
        uint64_t msgs, run, session;
        if (s_prune_delete(self, st[S_PR_MESSAGES], runs[i].run_id, 0, &msgs) != 0 ||
            s_prune_delete(self, st[S_PR_RUN], runs[i].run_id, 0, &run) != 0 ||
            s_prune_delete(self, st[S_PR_SESSION], runs[i].session_id, 0, &session) != 0)
            return -1;
        if (msgs)
            store_hist_forget(self, runs[i].session_id); /* its window changed */
        out->messages += msgs;
        out->runs += run;
        out->sessions += session;
        k = msgs + run + session;
        budget = budget > k ? budget - (size_t)k : 0;
    }
    return 0;
}

int store_prune(store_t *self, const char *before, size_t max_rows, store_pruned_t *out)
{
    memset(out, 0, sizeof *out);
    if (max_rows == 0)
        return 0;
    sqlite3_stmt *st[S_PR_COUNT] = {0};
    s_prune_run_t *runs = NULL;
    int rc = -1;
    for (int i = 0; i < S_PR_COUNT; i++) {
        if (sqlite3_prepare_v2(self->db, s_prune_sql[i], -1, &st[i], NULL) != SQLITE_OK) {
            store_sql_fail(self, "preparing the pruning statements (was store_prune_prepare called?)");
            goto done;
        }
    }
    size_t want = max_rows < S_PRUNE_RUNS_MAX ? max_rows : S_PRUNE_RUNS_MAX, n = 0;
    runs = mem_alloc(want * sizeof *runs);
    store_sql_text(st[S_PR_CANDIDATES], 1, before);
    sqlite3_bind_int64(st[S_PR_CANDIDATES], 2, (sqlite3_int64)want);
    int step;
    while ((step = sqlite3_step(st[S_PR_CANDIDATES])) == SQLITE_ROW && n < want) {
        store_sql_copy(runs[n].run_id, sizeof runs[n].run_id, st[S_PR_CANDIDATES], 0);
        store_sql_copy(runs[n].session_id, sizeof runs[n].session_id, st[S_PR_CANDIDATES], 1);
        n++;
    }
    sqlite3_reset(st[S_PR_CANDIDATES]);
    if (step != SQLITE_DONE && step != SQLITE_ROW) {
        store_sql_fail(self, "listing runs to prune");
        goto done;
    }
    if (n == 0) {
        rc = 0;
        goto done;
    }
    int own_tx = sqlite3_get_autocommit(self->db); /* no caller transaction: RELEASE commits */
    if (store_sql_exec(self, "SAVEPOINT store_prune", "pruning") != 0)
        goto done;
    if (s_prune_runs(self, st, runs, n, max_rows, out) != 0) {
        char why[sizeof self->errmsg];
        snprintf(why, sizeof why, "%s", self->errmsg); /* the rollback must not hide it */
        sqlite3_exec(self->db, "ROLLBACK TO store_prune; RELEASE store_prune", NULL, NULL, NULL);
        snprintf(self->errmsg, sizeof self->errmsg, "%s", why);
        memset(out, 0, sizeof *out);
        goto done;
    }
    if (store_sql_exec(self, "RELEASE store_prune", "committing the pruning") != 0) {
        if (own_tx)
            store_rollback(self);
        else
            sqlite3_exec(self->db, "ROLLBACK TO store_prune; RELEASE store_prune", NULL, NULL, NULL);
        memset(out, 0, sizeof *out);
        goto done;
    }
    rc = 0;
done:
    for (int i = 0; i < S_PR_COUNT; i++)
        sqlite3_finalize(st[i]);
    mem_free(runs);
    return rc;
}
