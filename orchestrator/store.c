/* store: SQLite behind the store_* interface. This file: the connection,
 * the schema and its migrations, transactions, writes and recovery; the
 * reads are in store_read.c, retention's deletes in store_prune.c, what
 * they share in store_sql.h.
 *
 * Schema versions live in PRAGMA user_version and migrate forward one step
 * at a time, each step in its own transaction:
 *   1  the first schema: sessions, runs, events, messages, agents
 *   2  idempotent invokes (runs.request_id, unique per session), agents'
 *      updated_at, the index recovery reads runs by
 *   3  agents.kind: native agents are rows too (endpoint ''), written when
 *      their first worker is seen, so their id stays reserved and their
 *      created_at is known across restarts
 *   4  agent calls: runs.parent_run_id, root_run_id, depth (0 for client
 *      runs), call_id; (parent_run_id, call_id) unique, which is also the
 *      index a run's calls are listed by
 *
 * Why these choices:
 *   - events.event_id is the rowid: global, increasing, free to assign.
 *     (run_id, seq) is unique, which is also the index replay reads.
 *   - WAL with synchronous=NORMAL survives a process crash (what a client was
 *     shown was committed first); FULL adds an fsync per commit for power
 *     loss. Batching a loop turn per transaction matters far more than the
 *     sync mode (LIBRARIES.md).
 *   - Hot statements are prepared once and reset after each use.
 *   - Opening checks the file for real (refuses a connection SQLite could
 *     only open read-only, writes once, reads the schema and both ends of
 *     every table, quick_check on a small file), so a corrupt or read-only
 *     file fails at start with a sentence naming it, not at the first event.
 *   - runs keep no last_seq column: recovery reads MAX(seq) per unfinished
 *     run from the (run_id, seq) index, one write less per event. */
#include "store_sql.h"

#include "common/mem.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char *s_sql[STORE_ST_STMT_COUNT] = {
    [STORE_ST_SESSION_ENSURE] = "INSERT OR IGNORE INTO sessions(session_id, created_at) VALUES(?1, ?2)",
    [STORE_ST_RUN_INSERT] = "INSERT INTO runs(run_id, session_id, agent_id, status, request_id, "
                     "input_role, input_content, created_at, parent_run_id, root_run_id, depth, "
                     "call_id) VALUES(?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [STORE_ST_RUN_STATUS] = "UPDATE runs SET status = ?2 WHERE run_id = ?1",
    [STORE_ST_RUN_STATUS_ENDED] = "UPDATE runs SET status = ?2, ended_at = ?3 WHERE run_id = ?1",
    [STORE_ST_EVENT_APPEND] = "INSERT INTO events(run_id, seq, type, payload, created_at) "
                       "VALUES(?1, ?2, ?3, ?4, ?5)",
    [STORE_ST_MESSAGE_APPEND] = "INSERT INTO messages(session_id, run_id, role, content, created_at) "
                         "VALUES(?1, ?2, ?3, ?4, ?5)",
    [STORE_ST_RUN_GET] = "SELECT run_id, session_id, agent_id, status, COALESCE(request_id, ''), "
                  "created_at, COALESCE(ended_at, ''), " STORE_SQL_CALL_COLS " FROM runs "
                  "WHERE run_id = ?1",
    [STORE_ST_RUN_BY_CALL] = "SELECT run_id FROM runs WHERE parent_run_id = ?1 AND call_id = ?2",
    [STORE_ST_RUN_CALLS] = "SELECT run_id, session_id, agent_id, status, COALESCE(request_id, ''), "
                    "created_at, COALESCE(ended_at, ''), " STORE_SQL_CALL_COLS " FROM runs "
                    "WHERE parent_run_id = ?1 ORDER BY created_at, run_id",
    [STORE_ST_RUN_LAST_SEQ] = "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?1",
    [STORE_ST_RUN_BY_REQUEST] = "SELECT run_id FROM runs WHERE session_id = ?1 AND request_id = ?2",
    [STORE_ST_EVENTS_READ] = "SELECT e.event_id, e.run_id, r.session_id, e.seq, e.type, e.payload, "
                      "e.created_at, r.parent_run_id, r.depth FROM events e "
                      "JOIN runs r ON r.run_id = e.run_id "
                      "WHERE e.run_id = ?1 AND e.seq > ?2 ORDER BY e.seq LIMIT ?3",
    [STORE_ST_MESSAGES_READ] = "SELECT message_id, run_id, role, content, created_at FROM "
                        "(SELECT * FROM messages WHERE session_id = ?1 "
                        "ORDER BY message_id DESC LIMIT ?2) ORDER BY message_id",
    /* Newest first straight off messages_session: no subquery to copy, no
     * sort (store_history turns the rows around). */
    [STORE_ST_HISTORY] = "SELECT role, content FROM messages WHERE session_id = ?1 "
                         "ORDER BY message_id DESC LIMIT ?2",
    [STORE_ST_AGENT_GET] = "SELECT agent_id, name, endpoint, created_at, updated_at, kind FROM agents "
                    "WHERE agent_id = ?1",
    [STORE_ST_AGENT_INSERT] = "INSERT INTO agents(agent_id, name, endpoint, created_at, updated_at) "
                       "VALUES(?1, ?2, ?3, ?4, ?4)",
    [STORE_ST_AGENT_UPDATE] = "UPDATE agents SET name = ?2, endpoint = ?3, updated_at = ?4 "
                       "WHERE agent_id = ?1 AND kind = 'http'",
    [STORE_ST_AGENT_NATIVE] = "INSERT OR IGNORE INTO agents(agent_id, name, endpoint, created_at, "
                       "updated_at, kind) VALUES(?1, ?1, '', ?2, ?2, 'native')",
    /* Pages: newest first before a cursor (?2 = 0: from the newest), oldest
     * first after one; the caller reverses the former. */
    [STORE_ST_MESSAGES_BEFORE] = "SELECT message_id, run_id, role, content, created_at FROM messages "
                          "WHERE session_id = ?1 AND (?2 = 0 OR message_id < ?2) "
                          "ORDER BY message_id DESC LIMIT ?3",
    [STORE_ST_MESSAGES_AFTER] = "SELECT message_id, run_id, role, content, created_at FROM messages "
                         "WHERE session_id = ?1 AND message_id > ?2 ORDER BY message_id LIMIT ?3",
    [STORE_ST_SESSION_RUNS] = "SELECT run_id, session_id, agent_id, status, COALESCE(request_id, ''), "
                       "created_at, COALESCE(ended_at, ''), " STORE_SQL_CALL_COLS " FROM runs "
                       "WHERE session_id = ?1 "
                       "ORDER BY created_at DESC, run_id DESC LIMIT ?2",
    [STORE_ST_SESSION_RUNS_BEFORE] = "SELECT run_id, session_id, agent_id, status, "
                              "COALESCE(request_id, ''), created_at, COALESCE(ended_at, ''), "
                              STORE_SQL_CALL_COLS " FROM runs WHERE session_id = ?1 AND "
                              "(created_at, run_id) < "
                              "(SELECT created_at, run_id FROM runs WHERE run_id = ?3 AND "
                              "session_id = ?1) ORDER BY created_at DESC, run_id DESC LIMIT ?2",
    [STORE_ST_RUN_INPUT] = "SELECT input_content FROM runs WHERE run_id = ?1",
    [STORE_ST_BEGIN] = "BEGIN IMMEDIATE",
    [STORE_ST_COMMIT] = "COMMIT",
    [STORE_ST_ROLLBACK] = "ROLLBACK",
};

/* Migration i brings a database from version i to i + 1. */
static const char *s_migrations[] = {
    /* 0 → 1: the first schema. */
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
    " created_at TEXT NOT NULL);",
    /* 1 → 2: idempotent invokes, agent updates, recovery's index. */
    "ALTER TABLE runs ADD COLUMN request_id TEXT;"
    "CREATE UNIQUE INDEX runs_request ON runs(session_id, request_id) WHERE request_id IS NOT NULL;"
    "CREATE INDEX runs_status ON runs(status);"
    "ALTER TABLE agents ADD COLUMN updated_at TEXT;"
    "UPDATE agents SET updated_at = created_at;",
    /* 2 → 3: native agents recorded. */
    "ALTER TABLE agents ADD COLUMN kind TEXT NOT NULL DEFAULT 'http';",
    /* 3 → 4: agent calls (child runs). */
    "ALTER TABLE runs ADD COLUMN parent_run_id TEXT;"
    "ALTER TABLE runs ADD COLUMN root_run_id TEXT;"
    "ALTER TABLE runs ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE runs ADD COLUMN call_id TEXT;"
    "CREATE UNIQUE INDEX runs_call ON runs(parent_run_id, call_id) WHERE parent_run_id IS NOT NULL;",
};

int store_sql_fail(store_t *self, const char *what)
{
    int code = sqlite3_extended_errcode(self->db);
    self->last_code = code;
    const char *hint = "";
    switch (code & 0xff) {
    case SQLITE_FULL: hint = " (the disk is full)"; break;
    case SQLITE_READONLY: hint = " (the file or its directory is read-only)"; break;
    case SQLITE_CORRUPT: case SQLITE_NOTADB: hint = " (the file is damaged or not a database)"; break;
    case SQLITE_IOERR: hint = " (an I/O error)"; break;
    case SQLITE_CANTOPEN: hint = " (does its directory exist and is it writable?)"; break;
    default: break;
    }
    snprintf(self->errmsg, sizeof self->errmsg, "database '%s': %s: %s%s", self->path, what,
             sqlite3_errmsg(self->db), hint);
    return -1;
}

const char *store_errmsg(const store_t *self)
{
    return self->errmsg;
}

int store_sql_exec(store_t *self, const char *sql, const char *what)
{
    char *msg = NULL;
    if (sqlite3_exec(self->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        sqlite3_free(msg);
        return store_sql_fail(self, what);
    }
    return 0;
}

sqlite3_stmt *store_sql_stmt(store_t *self, store_stmt_id_t id)
{
    sqlite3_stmt *st = self->stmts[id];
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return st;
}

/* Steps a statement that returns no row. */
int store_sql_done(store_t *self, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : store_sql_fail(self, what);
}

void store_sql_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

void store_sql_copy(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
    const char *v = (const char *)sqlite3_column_text(st, col);
    snprintf(dst, cap, "%s", v ? v : "");
}

int store_schema_version(store_t *self)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(self->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        return store_sql_fail(self, "reading the schema version");
    int v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
    sqlite3_finalize(st);
    return v;
}

static int s_migrate(store_t *self)
{
    int version = store_schema_version(self);
    if (version < 0)
        return -1;
    if (version > STORE_SCHEMA_VERSION) {
        snprintf(self->errmsg, sizeof self->errmsg,
                 "database '%s' has schema version %d, newer than this build's %d", self->path,
                 version, STORE_SCHEMA_VERSION);
        return -1;
    }
    for (int v = version; v < STORE_SCHEMA_VERSION; v++) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
        if (store_sql_exec(self, "BEGIN IMMEDIATE", "starting a migration") != 0)
            return -1;
        if (store_sql_exec(self, s_migrations[v], "migrating the schema") != 0 ||
            store_sql_exec(self, sql, "recording the schema version") != 0) {
            store_sql_exec(self, "ROLLBACK", "rolling back a migration");
            return -1;
        }
        if (store_sql_exec(self, "COMMIT", "committing a migration") != 0)
            return -1;
    }
    return 0;
}

/* Damage found at start beats damage found at the first event. A full
 * PRAGMA quick_check reads every page (seconds per GB), so it runs only on a
 * small file; every open reads the schema and both ends of every table (the
 * pages new rows go to), which is a few pages whatever the size. */
#define S_QUICK_CHECK_MAX_BYTES (64ll << 20)

static int s_check(store_t *self)
{
    static const char *probes =
        "SELECT (SELECT min(rowid) FROM sessions), (SELECT max(rowid) FROM sessions),"
        " (SELECT min(rowid) FROM runs), (SELECT max(rowid) FROM runs),"
        " (SELECT min(rowid) FROM events), (SELECT max(rowid) FROM events),"
        " (SELECT min(rowid) FROM messages), (SELECT max(rowid) FROM messages),"
        " (SELECT min(rowid) FROM agents), (SELECT max(rowid) FROM agents),"
        " (SELECT count(*) FROM sqlite_schema)";
    if (store_sql_exec(self, probes, "checking the file") != 0)
        return -1;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(self->db,
                           "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size",
                           -1, &st, NULL) != SQLITE_OK)
        return store_sql_fail(self, "checking the file");
    sqlite3_int64 bytes = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    if (bytes > S_QUICK_CHECK_MAX_BYTES)
        return 0;
    if (sqlite3_prepare_v2(self->db, "PRAGMA quick_check(1)", -1, &st, NULL) != SQLITE_OK)
        return store_sql_fail(self, "checking the file");
    int rc = sqlite3_step(st);
    const char *verdict = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    if (rc == SQLITE_ROW && verdict && strcmp(verdict, "ok") != 0) {
        snprintf(self->errmsg, sizeof self->errmsg,
                 "database '%s' is damaged (quick_check: %.200s)", self->path, verdict);
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : store_sql_fail(self, "checking the file");
}

/* ./data/map.db works on a fresh checkout: make the last directory only. */
static void s_make_parent(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return;
    *slash = '\0';
    struct stat sb;
    if (stat(dir, &sb) != 0)
        mkdir(dir, 0755); /* failure shows up as the open's error */
}

store_t *store_new(const char *path, store_durability_t durability, char *err, size_t errlen)
{
    if (!path || !*path) {
        snprintf(err, errlen, "the database path is empty");
        return NULL;
    }
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "database '%s' is a directory, not a file", path);
        return NULL;
    }
    s_make_parent(path);
    store_t *self = mem_alloc(sizeof *self);
    self->path = mem_strdup(path);
    int rc = sqlite3_open_v2(path, &self->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        if (self->db)
            store_sql_fail(self, "cannot open");
        else
            snprintf(self->errmsg, sizeof self->errmsg, "database '%s': cannot open", path);
        goto fail;
    }
    sqlite3_extended_result_codes(self->db, 1);
    /* SQLite falls back to reading a file it cannot open for writing, and a
     * read-only file may still start a write transaction: ask. */
    if (sqlite3_db_readonly(self->db, "main") == 1) {
        snprintf(self->errmsg, sizeof self->errmsg,
                 "database '%s' is read-only (the file cannot be opened for writing)", path);
        goto fail;
    }
    sqlite3_busy_timeout(self->db, 5000);
    if (store_sql_exec(self, "PRAGMA journal_mode = WAL", "switching to WAL") != 0)
        goto fail;
    if (store_sql_exec(self, durability == STORE_FULL ? "PRAGMA synchronous = FULL"
                                              : "PRAGMA synchronous = NORMAL",
               "setting durability") != 0)
        goto fail;
    /* Checkpoint every ~16 MB of WAL rather than 4 MB: a quarter of the
     * checkpoint syncs at hundreds of thousands of events a second. */
    store_sql_exec(self, "PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 4000",
           "setting pragmas");
    /* A write proves the file can be written (a read-only file fails here). */
    if (store_sql_exec(self, "BEGIN IMMEDIATE; COMMIT", "checking the file can be written") != 0)
        goto fail;
    if (s_migrate(self) != 0 || s_check(self) != 0)
        goto fail;
    for (int i = 0; i < STORE_ST_STMT_COUNT; i++) {
        if (sqlite3_prepare_v3(self->db, s_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &self->stmts[i], NULL) != SQLITE_OK) {
            store_sql_fail(self, "preparing statements");
            goto fail;
        }
    }
    return self;
fail:
    snprintf(err, errlen, "%s", self->errmsg);
    store_destroy(&self);
    return NULL;
}

void store_destroy(store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    store_t *self = *self_p;
    for (int i = 0; i < STORE_ST_STMT_COUNT; i++)
        sqlite3_finalize(self->stmts[i]);
    if (self->db)
        sqlite3_close(self->db); /* the last connection checkpoints the WAL */
    mem_free(self->path);
    store_hist_free(self);
    mem_free(self);
    *self_p = NULL;
}

/* IMMEDIATE: the write lock is taken here or not at all, so a turn learns
 * that another connection holds it before it writes anything. */
int store_begin(store_t *self)
{
    self->last_code = 0;
    return store_sql_done(self, store_sql_stmt(self, STORE_ST_BEGIN), "beginning a transaction");
}

int store_busy(const store_t *self)
{
    int c = self->last_code & 0xff;
    return c == SQLITE_BUSY || c == SQLITE_LOCKED;
}

void store_set_busy_ms(store_t *self, int ms)
{
    sqlite3_busy_timeout(self->db, ms);
}

/* A COMMIT that fails on SQLITE_BUSY leaves the transaction open, one that
 * fails on I/O may have rolled it back already: roll back either way so the
 * turn is gone whole and the next store_begin starts clean. */
int store_commit(store_t *self)
{
    if (store_sql_done(self, store_sql_stmt(self, STORE_ST_COMMIT), "committing") == 0)
        return 0;
    store_rollback(self);
    return -1;
}

void store_rollback(store_t *self)
{
    store_hist_clear(self); /* the windows may hold messages rolled back */
    if (!sqlite3_get_autocommit(self->db)) {
        sqlite3_stmt *st = store_sql_stmt(self, STORE_ST_ROLLBACK);
        sqlite3_step(st);
        sqlite3_reset(st);
    }
}

int store_session_ensure(store_t *self, const char *session_id, const char *created_at)
{
    sqlite3_stmt *st = store_sql_stmt(self, STORE_ST_SESSION_ENSURE);
    store_sql_text(st, 1, session_id);
    store_sql_text(st, 2, created_at);
    return store_sql_done(self, st, "writing a session");
}

static int s_run_insert(store_t *self, const char *run_id, const char *session_id,
                        const char *agent_id, const char *request_id, const char *role,
                        const char *content, size_t content_len, const char *created_at,
                        const store_call_t *call)
{
    sqlite3_stmt *st = store_sql_stmt(self, STORE_ST_RUN_INSERT);
    store_sql_text(st, 1, run_id);
    store_sql_text(st, 2, session_id);
    store_sql_text(st, 3, agent_id);
    store_sql_text(st, 4, request_id);
    store_sql_text(st, 5, role);
    sqlite3_bind_text(st, 6, content, (int)content_len, SQLITE_STATIC);
    store_sql_text(st, 7, created_at);
    store_sql_text(st, 8, call ? call->parent_run_id : NULL);
    store_sql_text(st, 9, call ? call->root_run_id : NULL);
    sqlite3_bind_int64(st, 10, call ? (sqlite3_int64)call->depth : 0);
    store_sql_text(st, 11, call ? call->call_id : NULL);
    return store_sql_done(self, st, "writing a run");
}

int store_run_insert(store_t *self, const char *run_id, const char *session_id,
                     const char *agent_id, const char *request_id, const char *role,
                     const char *content, size_t content_len, const char *created_at)
{
    return s_run_insert(self, run_id, session_id, agent_id, request_id, role, content,
                        content_len, created_at, NULL);
}

int store_run_insert_call(store_t *self, const char *run_id, const char *session_id,
                          const char *agent_id, const char *role, const char *content,
                          size_t content_len, const char *created_at, const store_call_t *call)
{
    return s_run_insert(self, run_id, session_id, agent_id, NULL, role, content, content_len,
                        created_at, call);
}

int store_run_set_status(store_t *self, const char *run_id, const char *status,
                         const char *ended_at)
{
    sqlite3_stmt *st = store_sql_stmt(self, ended_at ? STORE_ST_RUN_STATUS_ENDED : STORE_ST_RUN_STATUS);
    store_sql_text(st, 1, run_id);
    store_sql_text(st, 2, status);
    if (ended_at)
        store_sql_text(st, 3, ended_at);
    return store_sql_done(self, st, "writing a run's status");
}

int store_event_append(store_t *self, const char *run_id, uint64_t seq, const char *type,
                       const char *payload, const char *created_at, int64_t *event_id)
{
    sqlite3_stmt *st = store_sql_stmt(self, STORE_ST_EVENT_APPEND);
    store_sql_text(st, 1, run_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    store_sql_text(st, 3, type);
    store_sql_text(st, 4, payload);
    store_sql_text(st, 5, created_at);
    if (store_sql_done(self, st, "writing an event") != 0)
        return -1;
    *event_id = sqlite3_last_insert_rowid(self->db);
    return 0;
}

int store_message_append(store_t *self, const char *session_id, const char *run_id,
                         const char *role, const char *content, size_t content_len,
                         const char *created_at)
{
    sqlite3_stmt *st = store_sql_stmt(self, STORE_ST_MESSAGE_APPEND);
    store_sql_text(st, 1, session_id);
    store_sql_text(st, 2, run_id);
    store_sql_text(st, 3, role);
    sqlite3_bind_text(st, 4, content, (int)content_len, SQLITE_STATIC);
    store_sql_text(st, 5, created_at);
    if (store_sql_done(self, st, "writing a message") != 0)
        return -1;
    store_hist_append(self, session_id, role, content, content_len);
    return 0;
}

int store_runs_unfinished(store_t *self,
                          int (*cb)(void *arg, const store_run_t *run, uint64_t last_seq),
                          void *arg)
{
    /* Collect first: the callback writes to the rows being read. */
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(self->db,
                           "SELECT run_id, session_id, agent_id, status, COALESCE(request_id, ''),"
                           " created_at, COALESCE(ended_at, ''), " STORE_SQL_CALL_COLS ","
                           " (SELECT COALESCE(MAX(seq), 0) FROM events e WHERE e.run_id = r.run_id)"
                           " FROM runs r WHERE status IN ('queued', 'running')"
                           " ORDER BY depth DESC, created_at",
                           -1, &st, NULL) != SQLITE_OK)
        return store_sql_fail(self, "listing unfinished runs");
    store_run_t *runs = NULL;
    uint64_t *seqs = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            runs = mem_realloc(runs, cap * sizeof *runs);
            seqs = mem_realloc(seqs, cap * sizeof *seqs);
        }
        store_sql_run_row(st, &runs[n]);
        seqs[n++] = (uint64_t)sqlite3_column_int64(st, 11);
    }
    sqlite3_finalize(st);
    int result = rc == SQLITE_DONE ? 0 : store_sql_fail(self, "listing unfinished runs");
    for (size_t i = 0; i < n && result == 0; i++)
        if (cb(arg, &runs[i], seqs[i]) != 0)
            result = -1;
    mem_free(runs);
    mem_free(seqs);
    return result;
}

int store_last_event_id(store_t *self, int64_t *event_id)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(self->db, "SELECT COALESCE(MAX(event_id), 0) FROM events", -1, &st,
                           NULL) != SQLITE_OK)
        return store_sql_fail(self, "reading the last event id");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *event_id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : store_sql_fail(self, "reading the last event id");
}

