/* retention_test: the retention policy against a real store in a temporary
 * directory: what goes, what stays, batch bounds, a run larger than a batch,
 * the savepoint inside an open transaction, the duration parser. */
#include "retention.h"

#include "common/clock.h"
#include "tests/support/check.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char s_dir[] = "/tmp/map-retention-test-XXXXXX";
static char s_db[256];

#define S_DAY_MS (24ll * 3600 * 1000)

/* A run in session sid, created and (unless status is queued/running) ended
 * at wall ms `at`, with `events` events, the last terminal, and its two
 * messages when done. */
static void s_run(store_t *st, const char *sid, const char *run_id, const char *status,
                  int64_t at, int events)
{
    char t[CLOCK_RFC3339_LEN];
    clock_rfc3339(at, t);
    CHECK(store_begin(st) == 0);
    CHECK(store_session_ensure(st, sid, t) == 0);
    CHECK(store_run_insert(st, run_id, sid, "echo", NULL, "user", "hi", 2, t) == 0);
    int ended = strcmp(status, "queued") != 0 && strcmp(status, "running") != 0;
    for (int seq = 1; seq <= events; seq++) {
        int64_t id;
        const char *type = ended && seq == events ? "run_done" : "agent_stream_delta";
        CHECK(store_event_append(st, run_id, (uint64_t)seq, type, "{}", t, &id) == 0);
    }
    if (strcmp(status, "queued") != 0)
        CHECK(store_run_set_status(st, run_id, status, ended ? t : NULL) == 0);
    if (ended) {
        CHECK(store_message_append(st, sid, run_id, "user", "hi", 2, t) == 0);
        CHECK(store_message_append(st, sid, run_id, "assistant", "hi", 2, t) == 0);
    }
    CHECK(store_commit(st) == 0);
}

/* One integer from SQL on a second connection (what another process sees). */
static long long s_count(const char *sql)
{
    sqlite3 *db;
    CHECK(sqlite3_open_v2(s_db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *q;
    CHECK(sqlite3_prepare_v2(db, sql, -1, &q, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(q) == SQLITE_ROW);
    long long v = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    sqlite3_close(db);
    return v;
}

static int s_run_exists(const char *run_id)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM runs WHERE run_id = '%s'", run_id);
    return (int)s_count(sql);
}

/* Events of a run form 1..n (kept runs) or a contiguous tail k..n (a run
 * being pruned, lowest seqs first): returns the count, -1 otherwise. */
static long long s_events_contiguous(const char *run_id, long long want_last)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT CASE WHEN count(*) = 0 THEN 0 WHEN max(seq) = %lld AND"
             " max(seq) - min(seq) + 1 = count(*) THEN count(*) ELSE -1 END"
             " FROM events WHERE run_id = '%s'",
             want_last, run_id);
    return s_count(sql);
}

static store_t *s_open(const char *name)
{
    char err[512];
    snprintf(s_db, sizeof s_db, "%s/%s", s_dir, name);
    store_t *st = store_new(s_db, STORE_NORMAL, err, sizeof err);
    if (!st)
        fprintf(stderr, "%s\n", err);
    CHECK(st);
    return st;
}

static void test_parse(void)
{
    char err[256];
    int64_t ms = -1;
    CHECK(retention_parse("30d", &ms, err, sizeof err) == 0 && ms == 30 * S_DAY_MS);
    CHECK(retention_parse("12h", &ms, err, sizeof err) == 0 && ms == 12ll * 3600 * 1000);
    CHECK(retention_parse("90m", &ms, err, sizeof err) == 0 && ms == 90ll * 60 * 1000);
    CHECK(retention_parse("45s", &ms, err, sizeof err) == 0 && ms == 45000);
    CHECK(retention_parse("36500d", &ms, err, sizeof err) == 0 && ms == 36500 * S_DAY_MS);
    CHECK(retention_parse("", &ms, err, sizeof err) == 0 && ms == 0);
    CHECK(retention_parse(NULL, &ms, err, sizeof err) == 0 && ms == 0);
    const char *bad[] = {"0d", "30", "d", "30x", "-1d", "1.5h", " 30d", "30d ", "30dd",
                         "36501d", "99999999999999999999d", "1e3s", "+3d"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        ms = 7;
        CHECK(retention_parse(bad[i], &ms, err, sizeof err) == -1);
        CHECK(ms == 7); /* untouched */
        CHECK(strstr(err, "is not a duration") && strstr(err, "30d"));
    }
}

/* Old ended runs go with their events, messages and emptied sessions; new
 * runs, and queued or running runs however old, stay whole. */
static void test_prunes_old_ended_only(void)
{
    store_t *st = s_open("a.db");
    int64_t now = clock_wall_ms(), old = now - 40 * S_DAY_MS, fresh = now - 1000;
    char id[64];
    for (int i = 0; i < 30; i++) {
        snprintf(id, sizeof id, "run_old_%02d", i);
        s_run(st, i < 20 ? "s_old" : "s_mixed", id, i % 3 == 0 ? "failed" : "done", old + i, 10);
    }
    s_run(st, "s_old_cancel", "run_old_cancel", "cancelled", old, 3);
    s_run(st, "s_mixed", "run_new_1", "done", fresh, 10);
    s_run(st, "s_running", "run_old_running", "running", old, 5);
    s_run(st, "s_queued", "run_old_queued", "queued", old, 0);
    char err[256];
    retention_t *r = retention_new(st, 30 * S_DAY_MS, 100, err, sizeof err);
    CHECK(r);
    CHECK(s_count("SELECT count(*) FROM sqlite_schema WHERE name IN ('runs_ended', 'messages_run')") == 2);
    /* 31 old ended runs × (10 events + 2 messages + run) + sessions: several
     * steps of about 100 rows each. */
    long total = 0;
    int steps = 0;
    int64_t t = now;
    for (; steps < 100; steps++, t += 100) {
        long rows = retention_step(r, t);
        CHECK(rows >= 0);
        CHECK(rows <= 100 + 4); /* the batch, and a run's own rows past it */
        if (rows == 0)
            break;
        total += rows;
    }
    CHECK(steps >= 4);
    retention_counts_t c;
    retention_counts(r, &c);
    CHECK(c.runs == 31 && c.events == 20 * 10 + 10 * 10 + 3 && c.messages == 62);
    CHECK(c.sessions == 2); /* s_old and s_old_cancel emptied; s_mixed keeps run_new_1 */
    CHECK((long)(c.runs + c.events + c.messages + c.sessions) == total);
    CHECK(s_count("SELECT count(*) FROM runs WHERE run_id LIKE 'run_old_%' AND run_id NOT IN"
                  " ('run_old_running', 'run_old_queued')") == 0);
    CHECK(s_count("SELECT count(*) FROM events WHERE run_id LIKE 'run_old_%' AND run_id NOT IN"
                  " ('run_old_running', 'run_old_queued')") == 0);
    CHECK(s_count("SELECT count(*) FROM messages WHERE run_id LIKE 'run_old_%'") == 0);
    CHECK(s_count("SELECT count(*) FROM sessions WHERE session_id IN ('s_old', 's_old_cancel')") == 0);
    CHECK(s_count("SELECT count(*) FROM sessions WHERE session_id IN ('s_mixed', 's_running', 's_queued')") == 3);
    CHECK(s_run_exists("run_new_1") && s_events_contiguous("run_new_1", 10) == 10);
    CHECK(s_count("SELECT count(*) FROM messages WHERE run_id = 'run_new_1'") == 2);
    CHECK(s_run_exists("run_old_running") && s_events_contiguous("run_old_running", 5) == 5);
    CHECK(s_run_exists("run_old_queued"));
    /* Nothing due: the next look is RETENTION_IDLE_MS away, and finds nothing. */
    CHECK(retention_step(r, t + 1) == 0);
    CHECK(retention_step(r, t + RETENTION_IDLE_MS + 1) == 0);
    /* The running run ends now: kept, it is new. */
    char ended[CLOCK_RFC3339_LEN];
    clock_rfc3339(t, ended);
    CHECK(store_run_set_status(st, "run_old_running", "done", ended) == 0);
    CHECK(retention_step(r, t + 3 * RETENTION_IDLE_MS) == 0);
    CHECK(s_run_exists("run_old_running"));
    /* 31 days later it is old, and so is run_new_1: both go, a run ended
     * 20 days later stays; the queued run stays whatever its age. */
    s_run(st, "s_later", "run_later", "done", t + 20 * S_DAY_MS, 2);
    CHECK(retention_step(r, t + 31 * S_DAY_MS) == 5 + 1 + 1 + 10 + 2 + 1 + 1);
    CHECK(!s_run_exists("run_old_running") && s_events_contiguous("run_old_running", 5) == 0);
    CHECK(!s_run_exists("run_new_1"));
    CHECK(s_run_exists("run_later") && s_events_contiguous("run_later", 2) == 2);
    CHECK(s_run_exists("run_old_queued"));
    char json[256];
    size_t n = retention_json(r, json, sizeof json);
    CHECK(n == strlen(json));
    CHECK(strcmp(json, "\"pruned_runs\":33,\"pruned_events\":318,\"pruned_messages\":64,"
                       "\"retention_s\":2592000") == 0);
    retention_destroy(&r);
    CHECK(r == NULL);
    store_destroy(&st);
}

/* A run larger than a batch is spread over steps; its row stays until its
 * last event goes, its remaining events are always the highest seqs, and a
 * step never exceeds the batch. */
static void test_large_run_in_steps(void)
{
    store_t *st = s_open("b.db");
    int64_t now = clock_wall_ms();
    s_run(st, "s1", "run_big", "done", now - 2 * S_DAY_MS, 1234);
    s_run(st, "s1", "run_small", "done", now - 2 * S_DAY_MS + 1, 4);
    char err[256];
    retention_t *r = retention_new(st, S_DAY_MS, 500, err, sizeof err);
    CHECK(r);
    CHECK(retention_step(r, now) == 500);
    CHECK(s_run_exists("run_big") && s_events_contiguous("run_big", 1234) == 734);
    CHECK(retention_step(r, now + 100) == 500);
    CHECK(s_run_exists("run_big") && s_events_contiguous("run_big", 1234) == 234);
    /* 234 events, 2 messages, the run; then run_small whole (4 + 2 + 1) and
     * the emptied session. */
    CHECK(retention_step(r, now + 200) == 234 + 2 + 1 + 4 + 2 + 1 + 1);
    CHECK(!s_run_exists("run_big") && !s_run_exists("run_small"));
    CHECK(s_count("SELECT count(*) FROM events") == 0);
    CHECK(retention_step(r, now + 300) == 0);
    retention_destroy(&r);
    store_destroy(&st);
}

/* Inside an open transaction the step is part of it: a rollback brings the
 * rows back. Without a limit nothing is ever pruned and no index is made. */
static void test_transaction_and_disabled(void)
{
    store_t *st = s_open("c.db");
    int64_t now = clock_wall_ms();
    s_run(st, "s1", "run_a", "done", now - 10 * S_DAY_MS, 3);
    char err[256];
    retention_t *off = retention_new(st, 0, 500, err, sizeof err);
    CHECK(off);
    CHECK(retention_step(off, now) == 0 && retention_step(off, now + 100 * S_DAY_MS) == 0);
    CHECK(s_run_exists("run_a"));
    CHECK(s_count("SELECT count(*) FROM sqlite_schema WHERE name = 'runs_ended'") == 0);
    char json[256];
    retention_json(off, json, sizeof json);
    CHECK(strstr(json, "\"pruned_runs\":0") && strstr(json, "\"retention_s\":0"));
    retention_destroy(&off);

    retention_t *r = retention_new(st, S_DAY_MS, 500, err, sizeof err);
    CHECK(r);
    CHECK(store_begin(st) == 0);
    CHECK(retention_step(r, now) == 3 + 2 + 1 + 1);
    store_rollback(st);
    CHECK(s_run_exists("run_a") && s_events_contiguous("run_a", 3) == 3);
    CHECK(store_begin(st) == 0);
    CHECK(retention_step(r, now + 100) == 7);
    CHECK(store_commit(st) == 0);
    CHECK(!s_run_exists("run_a"));
    retention_destroy(&r);
    store_destroy(&st);
}

/* The candidates are read through the partial index (INDEXED BY: a bounded
 * read however many runs are kept, never a scan and a sort): without it
 * store_prune refuses rather than scans; the messages of a run are found by
 * their index. */
static void test_reads_through_indexes(void)
{
    store_t *st = s_open("d.db");
    store_pruned_t p;
    CHECK(store_prune(st, "2030-01-01T00:00:00.000Z", 500, &p) == -1);
    CHECK(strstr(store_errmsg(st), "store_prune_prepare"));
    char err[256];
    retention_t *r = retention_new(st, S_DAY_MS, 500, err, sizeof err);
    CHECK(r);
    CHECK(store_prune(st, "2030-01-01T00:00:00.000Z", 500, &p) == 0 && p.runs == 0);
    sqlite3 *db;
    CHECK(sqlite3_open_v2(s_db, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
    sqlite3_stmt *q;
    CHECK(sqlite3_prepare_v2(db, "EXPLAIN QUERY PLAN DELETE FROM messages WHERE run_id = 'x'", -1,
                             &q, NULL) == SQLITE_OK);
    int found = 0;
    while (sqlite3_step(q) == SQLITE_ROW)
        found |= strstr((const char *)sqlite3_column_text(q, 3), "messages_run") != NULL;
    sqlite3_finalize(q);
    CHECK(found);
    sqlite3_close(db);
    retention_destroy(&r);
    store_destroy(&st);
}

int main(void)
{
    CHECK(mkdtemp(s_dir));
    test_parse();
    test_prunes_old_ended_only();
    test_large_run_in_steps();
    test_transaction_and_disabled();
    test_reads_through_indexes();
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s_dir);
    CHECK(system(cmd) == 0);
    printf("retention_test: ok\n");
    return 0;
}
