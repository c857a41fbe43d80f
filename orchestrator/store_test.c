/* store_test: the store as the orchestrator uses it, and every way opening a
 * database can fail. Each case works in its own temporary directory. */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char s_dir[] = "/tmp/map-store-test-XXXXXX";

static void s_path(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", s_dir, name);
}

static store_t *s_open(const char *name)
{
    char path[256], err[512];
    s_path(path, sizeof path, name);
    store_t *st = store_new(path, STORE_NORMAL, err, sizeof err);
    if (!st)
        fprintf(stderr, "open %s: %s\n", path, err);
    assert(st);
    return st;
}

typedef struct {
    int count;
    uint64_t seqs[64];
    char types[64][32];
    int64_t ids[64];
    char last_session[64];
} s_events_t;

static int s_event_cb(void *arg, const store_event_t *e)
{
    s_events_t *ev = arg;
    ev->seqs[ev->count] = e->seq;
    ev->ids[ev->count] = e->event_id;
    snprintf(ev->types[ev->count], sizeof ev->types[0], "%s", e->type);
    snprintf(ev->last_session, sizeof ev->last_session, "%s", e->session_id);
    ev->count++;
    return 0;
}

static void test_round_trip_and_group_commit(void)
{
    store_t *st = s_open("a.db");
    assert(store_schema_version(st) == STORE_SCHEMA_VERSION);
    const char *t = "2026-11-24T10:00:00.123Z";
    /* One turn: a session, a run, 50 events, in one transaction. */
    assert(store_begin(st) == 0);
    assert(store_session_ensure(st, "s1", t) == 0);
    assert(store_session_ensure(st, "s1", t) == 0); /* idempotent */
    assert(store_run_insert(st, "run_1", "s1", "echo", "c1", "user", "hi", 2, t) == 0);
    int64_t last = 0;
    for (uint64_t seq = 1; seq <= 50; seq++) {
        int64_t id;
        assert(store_event_append(st, "run_1", seq, seq == 50 ? "run_done" : "agent_stream_delta",
                                  "{\"delta\":\"x\"}", t, &id) == 0);
        assert(id > last); /* event ids are global and increasing */
        last = id;
    }
    assert(store_run_set_status(st, "run_1", "done", t) == 0);
    assert(store_commit(st) == 0);
    /* Reads: all, after a seq, with a limit. */
    s_events_t ev = {0};
    assert(store_events_read(st, "run_1", 0, 0, s_event_cb, &ev) == 0);
    assert(ev.count == 50 && ev.seqs[0] == 1 && ev.seqs[49] == 50);
    assert(strcmp(ev.types[49], "run_done") == 0 && strcmp(ev.last_session, "s1") == 0);
    memset(&ev, 0, sizeof ev);
    assert(store_events_read(st, "run_1", 10, 5, s_event_cb, &ev) == 0);
    assert(ev.count == 5 && ev.seqs[0] == 11 && ev.seqs[4] == 15);
    memset(&ev, 0, sizeof ev);
    assert(store_events_read(st, "run_nope", 0, 0, s_event_cb, &ev) == 0 && ev.count == 0);
    /* The run, and the request id that started it. */
    store_run_t run;
    assert(store_run_get(st, "run_1", &run) == 0);
    assert(!strcmp(run.status, "done") && !strcmp(run.ended_at, t) && !strcmp(run.request_id, "c1"));
    assert(store_run_get(st, "run_nope", &run) == 1);
    char found[64];
    assert(store_run_by_request(st, "s1", "c1", found, sizeof found) == 0 && !strcmp(found, "run_1"));
    assert(store_run_by_request(st, "s2", "c1", found, sizeof found) == 0 && found[0] == '\0');
    /* The same request id twice in one session is refused by the schema. */
    assert(store_begin(st) == 0);
    assert(store_run_insert(st, "run_2", "s1", "echo", "c1", "user", "hi", 2, t) == -1);
    assert(strstr(store_errmsg(st), "a.db") != NULL); /* names the file */
    store_rollback(st);
    store_destroy(&st);
    assert(st == NULL);
}

static void test_rollback_leaves_nothing(void)
{
    store_t *st = s_open("b.db");
    const char *t = "2026-11-24T10:00:00.000Z";
    assert(store_begin(st) == 0);
    assert(store_run_insert(st, "run_x", "s1", "echo", NULL, "user", "hi", 2, t) == 0);
    int64_t id;
    assert(store_event_append(st, "run_x", 1, "run_started", "{}", t, &id) == 0);
    /* A second event with the same seq fails: the whole turn goes. */
    assert(store_event_append(st, "run_x", 1, "user_input", "{}", t, &id) == -1);
    store_rollback(st);
    store_run_t run;
    assert(store_run_get(st, "run_x", &run) == 1);
    s_events_t ev = {0};
    assert(store_events_read(st, "run_x", 0, 0, s_event_cb, &ev) == 0 && ev.count == 0);
    store_destroy(&st);
}

typedef struct {
    int count;
    char contents[16][32];
} s_msgs_t;

static int s_msg_cb(void *arg, const store_message_t *m)
{
    s_msgs_t *ms = arg;
    snprintf(ms->contents[ms->count++], 32, "%.*s", (int)m->content_len, m->content);
    return 0;
}

typedef struct {
    int count;
    const char *role[16], *content[16];
    size_t len[16];
} s_hist_t;

static int s_hist_cb(void *arg, const char *role, const char *content, size_t len)
{
    s_hist_t *h = arg;
    assert(h->count < 16);
    h->role[h->count] = role;
    h->content[h->count] = content;
    h->len[h->count++] = len;
    return 0;
}

static void test_messages_newest_window_oldest_first(void)
{
    store_t *st = s_open("c.db");
    assert(store_begin(st) == 0);
    for (int i = 0; i < 10; i++) {
        char c[16];
        int n = snprintf(c, sizeof c, "m%d", i);
        assert(store_message_append(st, "s1", "run_1", i % 2 ? "assistant" : "user", c, (size_t)n,
                                    "2026-11-24T10:00:00.000Z") == 0);
    }
    assert(store_message_append(st, "s2", "run_2", "user", "other", 5, "2026-11-24T10:00:00.000Z") == 0);
    assert(store_commit(st) == 0);
    s_msgs_t ms = {0};
    assert(store_messages_read(st, "s1", 3, s_msg_cb, &ms) == 0);
    assert(ms.count == 3 && !strcmp(ms.contents[0], "m7") && !strcmp(ms.contents[2], "m9"));
    memset(&ms, 0, sizeof ms);
    assert(store_messages_read(st, "s1", 0, s_msg_cb, &ms) == 0 && ms.count == 10);
    memset(&ms, 0, sizeof ms);
    assert(store_messages_read(st, "nobody", 10, s_msg_cb, &ms) == 0 && ms.count == 0);
    /* The history: the same window, oldest first, roles with it; views
     * that hold until the next history read, so a reader keeps pointers. */
    s_hist_t h = {0};
    assert(store_history(st, "s1", 3, s_hist_cb, &h) == 0 && h.count == 3);
    for (int i = 0; i < 3; i++) {
        char want[16];
        snprintf(want, sizeof want, "m%d", 7 + i);
        assert(h.len[i] == strlen(want) && !memcmp(h.content[i], want, h.len[i]));
        assert(h.content[i][h.len[i]] == 0);
        assert(!strcmp(h.role[i], (7 + i) % 2 ? "assistant" : "user"));
    }
    memset(&h, 0, sizeof h);
    assert(store_history(st, "s1", 100, s_hist_cb, &h) == 0 && h.count == 10);
    assert(!memcmp(h.content[0], "m0", 2) && !memcmp(h.content[9], "m9", 2));
    memset(&h, 0, sizeof h);
    assert(store_history(st, "s2", 100, s_hist_cb, &h) == 0 && h.count == 1);
    assert(h.len[0] == 5 && !memcmp(h.content[0], "other", 5));
    memset(&h, 0, sizeof h);
    assert(store_history(st, "s1", 0, s_hist_cb, &h) == 0 && h.count == 0);
    assert(store_history(st, "nobody", 10, s_hist_cb, &h) == 0 && h.count == 0);
    store_destroy(&st);
}

/* The history kept in memory says what the store says: after appends (the
 * window slides), rollbacks (their appends gone) and pruning (a session's
 * old run gone), store_history equals store_messages_read's window. */
static int s_same_window(store_t *st, const char *session, size_t max)
{
    s_hist_t h = {0};
    s_msgs_t ms = {0};
    assert(max <= 16);
    assert(store_history(st, session, max, s_hist_cb, &h) == 0);
    assert(store_messages_read(st, session, max, s_msg_cb, &ms) == 0);
    if (h.count != ms.count)
        return 0;
    for (int i = 0; i < h.count; i++)
        if (strlen(ms.contents[i]) != h.len[i] || memcmp(ms.contents[i], h.content[i], h.len[i]))
            return 0;
    return 1;
}

static void test_history_kept_in_memory_stays_right(void)
{
    store_t *st = s_open("h.db");
    const char *old = "2026-11-01T10:00:00.000Z", *now = "2026-11-24T10:00:00.000Z";
    assert(store_begin(st) == 0);
    assert(store_session_ensure(st, "h1", old) == 0 && store_session_ensure(st, "h2", old) == 0);
    assert(store_run_insert(st, "old_1", "h1", "echo", NULL, "user", "x", 1, old) == 0);
    assert(store_message_append(st, "h1", "old_1", "user", "ancient", 7, old) == 0);
    assert(store_run_set_status(st, "old_1", "done", old) == 0);
    assert(store_commit(st) == 0);
    assert(s_same_window(st, "h1", 4) && s_same_window(st, "h2", 4)); /* loaded */
    unsigned seed = 7;
    int n = 0;
    for (int round = 0; round < 60; round++) {
        seed = seed * 1103515245u + 12345u;
        const char *session = (seed >> 8) % 2 ? "h1" : "h2";
        int rollback = (seed >> 12) % 5 == 0;
        assert(store_begin(st) == 0);
        for (int k = 0; k < 2; k++) {
            char c[16];
            int len = snprintf(c, sizeof c, "n%d", n++);
            assert(store_message_append(st, session, "run_x", k ? "assistant" : "user", c,
                                        (size_t)len, now) == 0);
        }
        if (rollback)
            store_rollback(st);
        else
            assert(store_commit(st) == 0);
        assert(s_same_window(st, "h1", 4) && s_same_window(st, "h2", 4));
    }
    /* Another window size is read again, not cut from the kept one. */
    assert(s_same_window(st, "h1", 9) && s_same_window(st, "h1", 4));
    /* Pruning takes the old runs' messages: h3's kept window had its one. */
    assert(store_begin(st) == 0);
    assert(store_session_ensure(st, "h3", old) == 0);
    assert(store_run_insert(st, "old_3", "h3", "echo", NULL, "user", "x", 1, old) == 0);
    assert(store_message_append(st, "h3", "old_3", "user", "ancient", 7, old) == 0);
    assert(store_run_set_status(st, "old_3", "done", old) == 0);
    assert(store_commit(st) == 0);
    s_hist_t h = {0};
    assert(store_history(st, "h3", 16, s_hist_cb, &h) == 0 && h.count == 1);
    assert(store_prune_prepare(st) == 0);
    store_pruned_t p;
    assert(store_prune(st, "2026-11-10T00:00:00.000Z", 100, &p) == 0 && p.messages == 2);
    memset(&h, 0, sizeof h);
    assert(store_history(st, "h3", 16, s_hist_cb, &h) == 0 && h.count == 0);
    assert(s_same_window(st, "h1", 16) && s_same_window(st, "h3", 16));
    store_destroy(&st);
}

static void test_agents_upsert(void)
{
    store_t *st = s_open("d.db");
    int created = -1;
    assert(store_begin(st) == 0);
    assert(store_agent_upsert(st, "demo", "Demo", "http://127.0.0.1:8000", "T1", &created) == 0);
    assert(created == 1);
    assert(store_agent_upsert(st, "demo", "Demo 2", "http://127.0.0.1:8001", "T2", &created) == 0);
    assert(created == 0);
    assert(store_commit(st) == 0);
    store_agent_t a;
    assert(store_agent_get(st, "demo", &a) == 0);
    assert(!strcmp(a.name, "Demo 2") && !strcmp(a.endpoint, "http://127.0.0.1:8001"));
    assert(!strcmp(a.created_at, "T1") && !strcmp(a.updated_at, "T2"));
    char ep[64];
    assert(store_agent_endpoint(st, "demo", ep, sizeof ep) == 0 && !strcmp(ep, a.endpoint));
    assert(store_agent_endpoint(st, "echo", ep, sizeof ep) == 1);
    assert(!strcmp(a.kind, "http"));
    /* A native agent: recorded once (its first created_at stays), no
     * endpoint, not updatable as an HTTP agent, and an HTTP agent of the
     * same id is left as it is. */
    assert(store_begin(st) == 0);
    assert(store_agent_native(st, "echo", "T3") == 0);
    assert(store_agent_native(st, "echo", "T4") == 0);
    assert(store_agent_native(st, "demo", "T5") == 0);
    assert(store_commit(st) == 0);
    assert(store_agent_get(st, "echo", &a) == 0 && !strcmp(a.kind, "native"));
    assert(!strcmp(a.created_at, "T3") && !strcmp(a.endpoint, ""));
    assert(store_agent_endpoint(st, "echo", ep, sizeof ep) == 1);
    assert(store_agent_get(st, "demo", &a) == 0 && !strcmp(a.kind, "http"));
    assert(store_begin(st) == 0);
    assert(store_agent_upsert(st, "echo", "E", "http://127.0.0.1:9", "T6", &created) != 0);
    store_rollback(st);
    assert(store_agent_get(st, "echo", &a) == 0 && !strcmp(a.kind, "native"));
    store_destroy(&st);
}

typedef struct {
    int count;
    char ids[8][129];
    uint64_t seqs[8];
} s_unfinished_t;

static int s_unfinished_cb(void *arg, const store_run_t *run, uint64_t last_seq)
{
    s_unfinished_t *u = arg;
    snprintf(u->ids[u->count], sizeof u->ids[0], "%s", run->run_id);
    u->seqs[u->count++] = last_seq;
    return 0;
}

static void test_unfinished_runs(void)
{
    store_t *st = s_open("e.db");
    const char *t = "2026-11-24T10:00:00.000Z";
    int64_t id;
    assert(store_begin(st) == 0);
    assert(store_run_insert(st, "run_q", "s1", "echo", NULL, "user", "a", 1, "T1") == 0);
    assert(store_run_insert(st, "run_r", "s2", "echo", NULL, "user", "b", 1, "T2") == 0);
    assert(store_run_insert(st, "run_d", "s3", "echo", NULL, "user", "c", 1, "T3") == 0);
    assert(store_run_set_status(st, "run_r", "running", NULL) == 0);
    assert(store_run_set_status(st, "run_d", "done", t) == 0);
    for (uint64_t s = 1; s <= 3; s++)
        assert(store_event_append(st, "run_r", s, "x", "{}", t, &id) == 0);
    assert(store_commit(st) == 0);
    s_unfinished_t u = {0};
    assert(store_runs_unfinished(st, s_unfinished_cb, &u) == 0);
    assert(u.count == 2);
    assert(!strcmp(u.ids[0], "run_q") && u.seqs[0] == 0);
    assert(!strcmp(u.ids[1], "run_r") && u.seqs[1] == 3);
    store_destroy(&st);
}

/* The first schema, exactly as a build of version 1 wrote it. */
static const char *s_v1 =
    "CREATE TABLE sessions(session_id TEXT PRIMARY KEY, created_at TEXT NOT NULL);"
    "CREATE TABLE runs(run_id TEXT PRIMARY KEY, session_id TEXT NOT NULL, agent_id TEXT NOT NULL,"
    " status TEXT NOT NULL, input_role TEXT NOT NULL, input_content TEXT NOT NULL,"
    " created_at TEXT NOT NULL, ended_at TEXT);"
    "CREATE INDEX runs_session ON runs(session_id, created_at);"
    "CREATE TABLE events(event_id INTEGER PRIMARY KEY, run_id TEXT NOT NULL, seq INTEGER NOT NULL,"
    " type TEXT NOT NULL, payload TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE(run_id, seq));"
    "CREATE TABLE messages(message_id INTEGER PRIMARY KEY, session_id TEXT NOT NULL,"
    " run_id TEXT NOT NULL, role TEXT NOT NULL, content TEXT NOT NULL, created_at TEXT NOT NULL);"
    "CREATE INDEX messages_session ON messages(session_id, message_id);"
    "CREATE TABLE agents(agent_id TEXT PRIMARY KEY, name TEXT NOT NULL, endpoint TEXT NOT NULL,"
    " created_at TEXT NOT NULL);"
    "INSERT INTO runs VALUES('run_old','s1','echo','done','user','hi','T0','T1');"
    "INSERT INTO events(run_id, seq, type, payload, created_at) VALUES('run_old',1,'run_done','{}','T1');"
    "INSERT INTO agents VALUES('demo','Demo','http://127.0.0.1:8000','T0');"
    "PRAGMA user_version = 1;";

static void test_migrates_a_v1_database(void)
{
    char path[256], err[512];
    s_path(path, sizeof path, "v1.db");
    sqlite3 *db;
    assert(sqlite3_open(path, &db) == SQLITE_OK);
    assert(sqlite3_exec(db, s_v1, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    store_t *st = store_new(path, STORE_FULL, err, sizeof err);
    assert(st);
    assert(store_schema_version(st) == STORE_SCHEMA_VERSION);
    /* Old rows are there, and the new columns work. */
    store_run_t run;
    assert(store_run_get(st, "run_old", &run) == 0 && !strcmp(run.status, "done"));
    assert(run.request_id[0] == '\0');
    store_agent_t a;
    assert(store_agent_get(st, "demo", &a) == 0 && !strcmp(a.updated_at, "T0"));
    assert(store_begin(st) == 0);
    assert(store_run_insert(st, "run_new", "s1", "echo", "c9", "user", "x", 1, "T2") == 0);
    assert(store_commit(st) == 0);
    char found[64];
    assert(store_run_by_request(st, "s1", "c9", found, sizeof found) == 0 && !strcmp(found, "run_new"));
    store_destroy(&st);
    /* Opening again is a no-op. */
    st = store_new(path, STORE_NORMAL, err, sizeof err);
    assert(st && store_schema_version(st) == STORE_SCHEMA_VERSION);
    store_destroy(&st);
}

/* A version 3 database as that build left it: a client run ended, one
 * still running (a crash), a native agent. */
static const char *s_v3_upgrade =
    "ALTER TABLE runs ADD COLUMN request_id TEXT;"
    "CREATE UNIQUE INDEX runs_request ON runs(session_id, request_id) WHERE request_id IS NOT NULL;"
    "CREATE INDEX runs_status ON runs(status);"
    "ALTER TABLE agents ADD COLUMN updated_at TEXT;"
    "UPDATE agents SET updated_at = created_at;"
    "ALTER TABLE agents ADD COLUMN kind TEXT NOT NULL DEFAULT 'http';"
    "INSERT INTO runs VALUES('run_live','s1','echo','running','user','yo','T2',NULL,'rq1');"
    "INSERT INTO events(run_id, seq, type, payload, created_at) VALUES('run_live',1,'run_started','{}','T2');"
    "INSERT INTO agents VALUES('echo','echo','','T0','T0','native');"
    "PRAGMA user_version = 3;";

typedef struct {
    int count;
    char ids[8][129];
    uint32_t depths[8];
    char calls[8][129];
} s_calls_t;

static int s_calls_cb(void *arg, const store_run_t *run)
{
    s_calls_t *c = arg;
    snprintf(c->ids[c->count], sizeof c->ids[0], "%s", run->run_id);
    snprintf(c->calls[c->count], sizeof c->calls[0], "%s", run->call_id);
    c->depths[c->count++] = run->depth;
    return 0;
}

static int s_unfinished_list_cb(void *arg, const store_run_t *run, uint64_t last_seq)
{
    (void)last_seq;
    return s_calls_cb(arg, run);
}

static void test_migrates_a_v3_database_and_calls(void)
{
    char path[256], err[512];
    s_path(path, sizeof path, "v3.db");
    sqlite3 *db;
    assert(sqlite3_open(path, &db) == SQLITE_OK);
    assert(sqlite3_exec(db, s_v1, NULL, NULL, NULL) == SQLITE_OK);
    assert(sqlite3_exec(db, s_v3_upgrade, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    store_t *st = store_new(path, STORE_NORMAL, err, sizeof err);
    assert(st && store_schema_version(st) == 4 && STORE_SCHEMA_VERSION == 4);
    /* Old runs read as client runs: no parent, depth 0. */
    store_run_t run;
    assert(store_run_get(st, "run_live", &run) == 0 && !strcmp(run.request_id, "rq1"));
    assert(run.parent_run_id[0] == '\0' && run.root_run_id[0] == '\0' && run.depth == 0 &&
           run.call_id[0] == '\0');
    s_events_t ev = {0};
    /* A call tree under the old running run: two children, a grandchild. */
    store_call_t c1 = {"run_live", "run_live", 1, "c1"}, c2 = {"run_live", "run_live", 1, "c2"};
    store_call_t g1 = {"run_k1", "run_live", 2, "c1"}; /* call ids are per parent */
    assert(store_begin(st) == 0);
    assert(store_run_insert_call(st, "run_k1", "s1", "echo", "user", "a", 1, "T3", &c1) == 0);
    assert(store_run_insert_call(st, "run_k2", "s1", "echo", "user", "b", 1, "T4", &c2) == 0);
    assert(store_run_insert_call(st, "run_g1", "s1", "echo", "user", "c", 1, "T5", &g1) == 0);
    int64_t id;
    assert(store_event_append(st, "run_g1", 1, "run_started", "{}", "T5", &id) == 0);
    assert(store_event_append(st, "run_g1", 2, "user_input", "{}", "T5", &id) == 0);
    assert(store_commit(st) == 0);
    /* A second child with the same call id under the same parent is refused. */
    assert(store_begin(st) == 0);
    assert(store_run_insert_call(st, "run_k3", "s1", "echo", "user", "x", 1, "T6", &c1) == -1);
    store_rollback(st);
    char found[64];
    assert(store_run_by_call(st, "run_live", "c2", found, sizeof found) == 0 && !strcmp(found, "run_k2"));
    assert(store_run_by_call(st, "run_k1", "c1", found, sizeof found) == 0 && !strcmp(found, "run_g1"));
    assert(store_run_by_call(st, "run_live", "c9", found, sizeof found) == 0 && found[0] == '\0');
    assert(store_run_get(st, "run_g1", &run) == 0 && !strcmp(run.parent_run_id, "run_k1") &&
           !strcmp(run.root_run_id, "run_live") && run.depth == 2 && !strcmp(run.call_id, "c1") &&
           !strcmp(run.status, "queued"));
    s_calls_t calls = {0};
    assert(store_run_calls(st, "run_live", s_calls_cb, &calls) == 0);
    assert(calls.count == 2 && !strcmp(calls.ids[0], "run_k1") && !strcmp(calls.ids[1], "run_k2"));
    assert(!strcmp(calls.calls[1], "c2") && calls.depths[0] == 1);
    memset(&calls, 0, sizeof calls);
    assert(store_run_calls(st, "run_g1", s_calls_cb, &calls) == 0 && calls.count == 0);
    /* Events of a child carry its parent and depth; a client run's none. */
    uint64_t last = 0;
    assert(store_run_last_seq(st, "run_g1", &last) == 0 && last == 2);
    assert(store_run_last_seq(st, "run_k2", &last) == 0 && last == 0);
    assert(store_events_read(st, "run_g1", 0, 0, s_event_cb, &ev) == 0 && ev.count == 2);
    /* Recovery reads the deepest first. */
    memset(&calls, 0, sizeof calls);
    assert(store_runs_unfinished(st, s_unfinished_list_cb, &calls) == 0);
    assert(calls.count == 4 && !strcmp(calls.ids[0], "run_g1") && !strcmp(calls.ids[3], "run_live"));
    store_destroy(&st);
    st = store_new(path, STORE_NORMAL, err, sizeof err);
    assert(st && store_schema_version(st) == STORE_SCHEMA_VERSION);
    store_destroy(&st);
}

static int s_parent_cb(void *arg, const store_event_t *e)
{
    char *out = arg;
    snprintf(out, 64, "%s/%u", e->parent_run_id ? e->parent_run_id : "-", e->depth);
    return 0;
}

static void test_event_parent_fields(void)
{
    store_t *st = s_open("pe.db");
    store_call_t c = {"run_p", "run_p", 1, "k"};
    int64_t id;
    assert(store_begin(st) == 0);
    assert(store_run_insert(st, "run_p", "s", "a", NULL, "user", "x", 1, "T0") == 0);
    assert(store_run_insert_call(st, "run_c", "s", "b", "user", "y", 1, "T1", &c) == 0);
    assert(store_event_append(st, "run_p", 1, "run_started", "{}", "T0", &id) == 0);
    assert(store_event_append(st, "run_c", 1, "run_started", "{}", "T1", &id) == 0);
    assert(store_commit(st) == 0);
    char got[64] = "";
    assert(store_events_read(st, "run_c", 0, 0, s_parent_cb, got) == 0 && !strcmp(got, "run_p/1"));
    assert(store_events_read(st, "run_p", 0, 0, s_parent_cb, got) == 0 && !strcmp(got, "-/0"));
    store_destroy(&st);
}

static void test_open_errors_name_the_file(void)
{
    char path[256], err[512];
    /* A directory where the file should be. */
    s_path(path, sizeof path, "adir");
    assert(mkdir(path, 0755) == 0);
    assert(store_new(path, STORE_NORMAL, err, sizeof err) == NULL);
    assert(strstr(err, path) && strstr(err, "directory"));
    /* A path whose parent's parent does not exist. */
    s_path(path, sizeof path, "no/such/dir/map.db");
    assert(store_new(path, STORE_NORMAL, err, sizeof err) == NULL);
    assert(strstr(err, path));
    /* A missing last directory is made (./data/map.db on a fresh checkout). */
    s_path(path, sizeof path, "data/map.db");
    store_t *st = store_new(path, STORE_NORMAL, err, sizeof err);
    assert(st);
    store_destroy(&st);
    /* A file that is not a database. */
    s_path(path, sizeof path, "garbage.db");
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 512; i++)
        fputs("this is not a database ", f);
    fclose(f);
    assert(store_new(path, STORE_NORMAL, err, sizeof err) == NULL);
    assert(strstr(err, path) && strstr(err, "not a database"));
    /* A database from a newer build is refused, not damaged. */
    s_path(path, sizeof path, "future.db");
    sqlite3 *db;
    assert(sqlite3_open(path, &db) == SQLITE_OK);
    assert(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    assert(store_new(path, STORE_NORMAL, err, sizeof err) == NULL);
    assert(strstr(err, path) && strstr(err, "newer"));
    /* An empty path. */
    assert(store_new("", STORE_NORMAL, err, sizeof err) == NULL);
}

/* A COMMIT that cannot write (the file size limit stands in for a full disk)
 * fails, names the file and leaves nothing of the turn; the store works on
 * once the disk has room again. */
static void test_failed_commit_leaves_nothing(void)
{
    store_t *st = s_open("f.db");
    const char *t = "2026-11-24T10:00:00.000Z";
    int64_t id, before = -1, after = -1;
    assert(store_begin(st) == 0);
    assert(store_event_append(st, "run_0", 1, "run_done", "{}", t, &id) == 0);
    assert(store_commit(st) == 0);
    assert(store_last_event_id(st, &before) == 0 && before == id);

    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, tiny;
    assert(getrlimit(RLIMIT_FSIZE, &old) == 0);
    tiny = old;
    tiny.rlim_cur = 1;
    assert(store_begin(st) == 0);
    assert(store_run_insert(st, "run_f", "s1", "echo", "c1", "user", "hi", 2, t) == 0);
    for (uint64_t seq = 1; seq <= 20; seq++)
        assert(store_event_append(st, "run_f", seq, "agent_stream_delta", "{\"delta\":\"x\"}", t,
                                  &id) == 0);
    assert(setrlimit(RLIMIT_FSIZE, &tiny) == 0);
    int rc = store_commit(st);
    assert(setrlimit(RLIMIT_FSIZE, &old) == 0);
    signal(SIGXFSZ, SIG_DFL);
    if (rc != -1)
        fprintf(stderr, "commit under a 1-byte file limit did not fail\n");
    assert(rc == -1);
    fprintf(stderr, "store_test: failed commit: %s\n", store_errmsg(st));
    assert(strstr(store_errmsg(st), "f.db"));
    /* No store_rollback here: store_commit ended the transaction itself, or
     * the store_begin below would fail. */

    store_run_t run;
    assert(store_run_get(st, "run_f", &run) == 1);
    s_events_t ev = {0};
    assert(store_events_read(st, "run_f", 0, 0, s_event_cb, &ev) == 0 && ev.count == 0);
    char found[64];
    assert(store_run_by_request(st, "s1", "c1", found, sizeof found) == 0 && found[0] == '\0');
    /* The next turn commits, the same ids are free again. */
    assert(store_begin(st) == 0);
    assert(store_run_insert(st, "run_f", "s1", "echo", "c1", "user", "hi", 2, t) == 0);
    assert(store_event_append(st, "run_f", 1, "run_started", "{}", t, &id) == 0);
    assert(store_commit(st) == 0);
    assert(store_last_event_id(st, &after) == 0 && after == id && after > before);
    store_destroy(&st);
    /* And the file reopens intact. */
    st = s_open("f.db");
    assert(store_run_get(st, "run_f", &run) == 0);
    store_destroy(&st);
}

/* Events appended per second in transactions of `batch` rows (a figure for
 * the log: no assertion on time). */
static void s_bench(int batch, int total)
{
    char name[32];
    snprintf(name, sizeof name, "bench%d.db", batch);
    store_t *st = s_open(name);
    const char *t = "2026-11-24T10:00:00.000Z";
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    uint64_t seq = 0;
    for (int done = 0; done < total; done += batch) {
        assert(store_begin(st) == 0);
        for (int i = 0; i < batch; i++) {
            int64_t id;
            assert(store_event_append(st, "run_b", ++seq, "agent_stream_delta",
                                      "{\"delta\":\"hello\"}", t, &id) == 0);
        }
        assert(store_commit(st) == 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    int64_t last;
    assert(store_last_event_id(st, &last) == 0 && last == total);
    printf("store_test: %d events in transactions of %d: %.0f events/s (this build)\n", total,
           batch, s > 0 ? total / s : 0.0);
    store_destroy(&st);
}

/* Makes a file read-only even for root: the immutable attribute when the
 * process may set it, the mode bits otherwise. 0 when done. */
static int s_make_readonly(const char *path, int set)
{
    if (geteuid() != 0)
        return chmod(path, set ? 0444 : 0644);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    int flags = 0;
    int rc = ioctl(fd, FS_IOC_GETFLAGS, &flags);
    if (rc == 0) {
        flags = set ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
        rc = ioctl(fd, FS_IOC_SETFLAGS, &flags);
    }
    close(fd);
    return rc;
}

static void test_open_errors_more(void)
{
    char path[256], err[512];
    /* A path below a regular file. */
    s_path(path, sizeof path, "plain");
    FILE *f = fopen(path, "w");
    assert(f);
    fputs("x", f);
    fclose(f);
    s_path(path, sizeof path, "plain/map.db");
    assert(store_new(path, STORE_NORMAL, err, sizeof err) == NULL);
    fprintf(stderr, "store_test: below a file: %s\n", err);
    assert(strstr(err, path));

    /* A read-only database file. */
    s_path(path, sizeof path, "ro.db");
    store_t *st = s_open("ro.db");
    store_destroy(&st);
    if (s_make_readonly(path, 1) != 0) {
        printf("store_test: read-only case not run: cannot make %s read-only as uid %d (%s)\n",
               path, (int)geteuid(), strerror(errno));
    } else {
        st = store_new(path, STORE_NORMAL, err, sizeof err);
        assert(s_make_readonly(path, 0) == 0);
        assert(st == NULL);
        fprintf(stderr, "store_test: read-only: %s\n", err);
        assert(strstr(err, path) && strstr(err, "read-only"));
    }

    /* A database whose header is sound but whose table pages are damaged. */
    s_path(path, sizeof path, "damaged.db");
    st = s_open("damaged.db");
    const char *t = "2026-11-24T10:00:00.000Z";
    assert(store_begin(st) == 0);
    for (uint64_t seq = 1; seq <= 2000; seq++) {
        int64_t id;
        assert(store_event_append(st, "run_1", seq, "agent_stream_delta",
                                  "{\"delta\":\"some text to fill pages\"}", t, &id) == 0);
    }
    assert(store_commit(st) == 0);
    store_destroy(&st); /* checkpoints: everything is in the main file */
    int fd = open(path, O_WRONLY);
    assert(fd >= 0);
    char junk[4096];
    memset(junk, 0xA5, sizeof junk);
    for (off_t page = 1; page < 40; page += 2) /* page 0 (header, schema) kept */
        assert(pwrite(fd, junk, sizeof junk, page * 4096) == (ssize_t)sizeof junk);
    close(fd);
    assert(store_new(path, STORE_NORMAL, err, sizeof err) == NULL);
    fprintf(stderr, "store_test: damaged: %s\n", err);
    assert(strstr(err, path) && (strstr(err, "damaged") || strstr(err, "malformed")));
}

/* A lock held by another connection: begin fails at once (after the busy
 * wait) and says so; once released, the next begin works. */
static void test_busy_is_reported(void)
{
    store_t *a = s_open("busy.db");
    char path[512];
    s_path(path, sizeof path, "busy.db");
    char err[512];
    store_t *b = store_new(path, STORE_NORMAL, err, sizeof err);
    assert(b);
    store_set_busy_ms(b, 20);
    assert(store_begin(a) == 0);
    assert(store_begin(b) != 0 && store_busy(b));
    assert(store_commit(a) == 0);
    assert(store_begin(b) == 0 && !store_busy(b));
    assert(store_commit(b) == 0);
    store_destroy(&b);
    store_destroy(&a);
}

typedef struct {
    int count;
    int64_t ids[16];
    char runs[16][129];
} s_page_t;

static int s_page_msg(void *arg, const store_message_t *m)
{
    s_page_t *p = arg;
    p->ids[p->count++] = m->message_id;
    return p->count == 3 ? 1 : 0; /* 1 stops the read, which succeeds */
}

static int s_page_run(void *arg, const store_run_t *r)
{
    s_page_t *p = arg;
    snprintf(p->runs[p->count++], sizeof p->runs[0], "%s", r->run_id);
    return 0;
}

/* Message pages both ways, a reader that stops early, a session's runs
 * newest first with a cursor, a run's input read back. */
static void test_pages(void)
{
    store_t *st = s_open("pages.db");
    assert(store_begin(st) == 0);
    assert(store_session_ensure(st, "s", "T0") == 0);
    const char *runs[] = {"run_a", "run_b", "run_c"};
    const char *times[] = {"T1", "T2", "T2"};
    for (int i = 0; i < 3; i++)
        assert(store_run_insert(st, runs[i], "s", "echo", NULL, "user", "in\0put", 6, times[i]) == 0);
    for (int i = 0; i < 6; i++)
        assert(store_message_append(st, "s", "run_a", "user", "m", 1, "T3") == 0);
    assert(store_commit(st) == 0);
    s_page_t p = {0};
    assert(store_messages_page(st, "s", 0, 0, 10, s_page_msg, &p) == 0);
    assert(p.count == 3 && p.ids[0] == 6 && p.ids[2] == 4); /* newest first, stopped */
    memset(&p, 0, sizeof p);
    assert(store_messages_page(st, "s", 3, 0, 2, s_page_msg, &p) == 0);
    assert(p.count == 2 && p.ids[0] == 2 && p.ids[1] == 1);
    memset(&p, 0, sizeof p);
    assert(store_messages_page(st, "s", 0, 4, 10, s_page_msg, &p) == 0);
    assert(p.count == 2 && p.ids[0] == 5 && p.ids[1] == 6); /* oldest first */
    memset(&p, 0, sizeof p);
    assert(store_session_runs(st, "s", NULL, 10, s_page_run, &p) == 0);
    assert(p.count == 3 && !strcmp(p.runs[0], "run_c") && !strcmp(p.runs[2], "run_a"));
    memset(&p, 0, sizeof p);
    assert(store_session_runs(st, "s", "run_c", 1, s_page_run, &p) == 0);
    assert(p.count == 1 && !strcmp(p.runs[0], "run_b"));
    memset(&p, 0, sizeof p);
    assert(store_session_runs(st, "s", "run_nope", 10, s_page_run, &p) == 0 && p.count == 0);
    char *content = NULL;
    size_t len = 0;
    assert(store_run_input(st, "run_b", &content, &len) == 0);
    assert(len == 6 && memcmp(content, "in\0put", 6) == 0);
    free(content);
    assert(store_run_input(st, "run_nope", &content, &len) == 1);
    store_destroy(&st);
}

int main(void)
{
    assert(mkdtemp(s_dir));
    test_busy_is_reported();
    test_pages();
    test_round_trip_and_group_commit();
    test_rollback_leaves_nothing();
    test_messages_newest_window_oldest_first();
    test_history_kept_in_memory_stays_right();
    test_agents_upsert();
    test_unfinished_runs();
    test_migrates_a_v1_database();
    test_migrates_a_v3_database_and_calls();
    test_event_parent_fields();
    test_open_errors_name_the_file();
    test_failed_commit_leaves_nothing();
    test_open_errors_more();
    s_bench(100, 20000);
    s_bench(1000, 20000);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", s_dir);
    if (system(cmd) != 0)
        return 1;
    printf("store_test: ok\n");
    return 0;
}
