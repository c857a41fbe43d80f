/* store: the orchestrator's database (SPEC §6), one module behind a small
 * interface so that another backend (PostgreSQL) can follow without touching
 * the run logic. SQLite here: WAL, prepared statements, group commit.
 *
 * Writes happen between store_begin and store_commit (one transaction per
 * loop turn); a failed commit is rolled back whole, so no half-written turn
 * survives. Reads may run inside or outside a transaction.
 *
 * Every function returns 0, or -1 with the reason in store_errmsg (one
 * sentence naming the file for I/O errors). Lookups return 1 for "not found".
 * Strings handed to callbacks are valid only during the call. */
#ifndef MAP_STORE_H
#define MAP_STORE_H
#include <stddef.h>
#include <stdint.h>

#define STORE_SCHEMA_VERSION 4

typedef struct store_t store_t;
typedef enum { STORE_NORMAL = 0, STORE_FULL = 1 } store_durability_t;

typedef struct {
    char run_id[129];
    char session_id[129];
    char agent_id[129];
    char status[16];      /* queued, running, done, failed, cancelled */
    char request_id[129]; /* "" when none */
    char created_at[32];
    char ended_at[32];    /* "" while not ended */
    char parent_run_id[129]; /* a call's child run: its parent; "" for a client's run */
    char root_run_id[129];   /* "" for a client's run */
    uint32_t depth;          /* 0 for a client's run */
    char call_id[129];       /* "" for a client's run */
} store_run_t;

/* What makes a run a call's child (store_run_insert_call). */
typedef struct {
    const char *parent_run_id;
    const char *root_run_id;
    uint32_t depth;          /* >= 1 */
    const char *call_id;
} store_call_t;

typedef struct {
    int64_t event_id;
    const char *run_id;
    const char *session_id;
    uint64_t seq;
    const char *type;
    const char *payload;  /* JSON text */
    const char *created_at;
    const char *parent_run_id; /* the run's parent, NULL for a client's run */
    uint32_t depth;            /* the run's depth */
} store_event_t;

typedef struct {
    int64_t message_id;
    const char *run_id;
    const char *role;
    const char *content;
    size_t content_len;
    const char *created_at;
} store_message_t;

typedef struct {
    char agent_id[129];
    char name[257];
    char endpoint[2049];
    char created_at[32];
    char updated_at[32];
    char kind[8];         /* "http" or "native" (endpoint "") */
} store_agent_t;

/* Opens (creating it and, if missing, its last directory), sets WAL and the
 * durability (NORMAL: survives a process crash; FULL: fsync each commit),
 * checks the file and migrates it to STORE_SCHEMA_VERSION. NULL + err when
 * the path is bad, the file is not a database or cannot be written. */
store_t *store_new(const char *path, store_durability_t durability, char *err, size_t errlen);
void store_destroy(store_t **self_p);
const char *store_errmsg(const store_t *self);
int store_schema_version(store_t *self); /* the file's version, -1 on error */

/* Takes the write lock (BEGIN IMMEDIATE), waiting at most the busy time
 * (5 s from store_new; see store_set_busy_ms). */
int store_begin(store_t *self);
/* 1 when the last failure was another connection holding the lock. */
int store_busy(const store_t *self);
void store_set_busy_ms(store_t *self, int ms);
int store_commit(store_t *self);   /* on failure the turn is rolled back whole */
void store_rollback(store_t *self);

int store_session_ensure(store_t *self, const char *session_id, const char *created_at);
int store_run_insert(store_t *self, const char *run_id, const char *session_id,
                     const char *agent_id, const char *request_id /* NULL: none */,
                     const char *role, const char *content, size_t content_len,
                     const char *created_at);
/* A call's child run, queued like any (no request_id); (parent_run_id,
 * call_id) is unique: a repeat fails. */
int store_run_insert_call(store_t *self, const char *run_id, const char *session_id,
                          const char *agent_id, const char *role, const char *content,
                          size_t content_len, const char *created_at, const store_call_t *call);
/* ended_at NULL leaves it unset. */
int store_run_set_status(store_t *self, const char *run_id, const char *status,
                         const char *ended_at);
/* OUT event_id: the new event's global id (increasing). */
int store_event_append(store_t *self, const char *run_id, uint64_t seq, const char *type,
                       const char *payload, const char *created_at, int64_t *event_id);
int store_message_append(store_t *self, const char *session_id, const char *run_id,
                         const char *role, const char *content, size_t content_len,
                         const char *created_at);

/* 0 and *out filled, 1 when unknown. */
int store_run_get(store_t *self, const char *run_id, store_run_t *out);
/* The run a (session, request_id) started: 0 with out filled, or 0 with
 * out[0] == '\0' when none. */
int store_run_by_request(store_t *self, const char *session_id, const char *request_id,
                         char *out, size_t outlen);
/* The child run parent_run_id's call call_id made: 0 with out filled, or 0
 * with out[0] == '\0' when none. */
int store_run_by_call(store_t *self, const char *parent_run_id, const char *call_id, char *out,
                      size_t outlen);
/* The child runs of run_id in start order (created_at, run_id). */
int store_run_calls(store_t *self, const char *run_id,
                    int (*cb)(void *arg, const store_run_t *run), void *arg);
/* The last seq run_id wrote (0: none). */
int store_run_last_seq(store_t *self, const char *run_id, uint64_t *seq);
/* Readers' callbacks return 0 to go on, 1 to stop (the read succeeds), -1
 * to fail it. */
/* Events with seq > after_seq in seq order, at most limit (0: all). */
int store_events_read(store_t *self, const char *run_id, uint64_t after_seq, size_t limit,
                      int (*cb)(void *arg, const store_event_t *e), void *arg);
/* The last `limit` messages of the session, oldest first. */
int store_messages_read(store_t *self, const char *session_id, size_t limit,
                        int (*cb)(void *arg, const store_message_t *m), void *arg);
/* One page of the session's messages. after > 0: the first `limit` with
 * message_id > after, oldest first. Otherwise the last `limit` with
 * message_id < before (before 0: from the newest), NEWEST first. */
int store_messages_page(store_t *self, const char *session_id, int64_t before, int64_t after,
                        size_t limit, int (*cb)(void *arg, const store_message_t *m), void *arg);
/* The session's runs newest first (created_at, then run_id), at most limit,
 * only those created before run `before` (NULL: from the newest; an unknown
 * run: none). */
int store_session_runs(store_t *self, const char *session_id, const char *before, size_t limit,
                       int (*cb)(void *arg, const store_run_t *run), void *arg);
/* A run's input content. 0 with *content (the caller's, NUL-terminated) and
 * *len, 1 when the run is unknown. */
int store_run_input(store_t *self, const char *run_id, char **content, size_t *len);
/* The session's last `max` messages oldest first, for an agent's history.
 * Served from a window kept in memory per session (store_hist.c: this
 * store_t is the only writer; appends, rollbacks and pruning keep it
 * right), read from SQLite when missing. role and content point into the
 * store's own memory, valid until the next call into the store (a reader
 * keeps views, not copies); content is NUL-terminated too. */
int store_history(store_t *self, const char *session_id, size_t max,
                  int (*cb)(void *arg, const char *role, const char *content, size_t len),
                  void *arg);
/* Drops the session's window from memory (the engine: the session has no
 * run and no watcher left); the next store_history reads it again. */
void store_history_forget(store_t *self, const char *session_id);

/* OUT created: 1 when the agent is new, 0 when it was updated. */
int store_agent_upsert(store_t *self, const char *agent_id, const char *name,
                       const char *endpoint, const char *now, int *created);
int store_agent_get(store_t *self, const char *agent_id, store_agent_t *out); /* 0, 1, -1 */
/* Records a native agent the first time its workers are seen (later calls
 * and an HTTP agent of that id change nothing). */
int store_agent_native(store_t *self, const char *agent_id, const char *now);
/* 0 with the endpoint in buf, 1 when no HTTP agent has that id. */
int store_agent_endpoint(store_t *self, const char *agent_id, char *buf, size_t buflen);
/* Every agent, HTTP and native, by id. */
int store_agents_list(store_t *self, int (*cb)(void *arg, const store_agent_t *a), void *arg);

/* Runs left queued or running (a crash), with the last seq each wrote,
 * deepest first (a tree's children before their parents), then by
 * created_at. */
int store_runs_unfinished(store_t *self,
                          int (*cb)(void *arg, const store_run_t *run, uint64_t last_seq),
                          void *arg);

/* The highest event id written so far (0 when none). */
int store_last_event_id(store_t *self, int64_t *event_id);

/* ---- retention (orchestrator/retention.c) ----------------------------------
 * Pruning deletes ended runs with their events, their messages and, once it
 * has no run left, their session. */

/* Rows one store_prune call deleted. */
typedef struct {
    uint64_t runs;
    uint64_t events;
    uint64_t messages;
    uint64_t sessions;
} store_pruned_t;

/* Creates, if missing, the two indexes pruning reads: ended runs by end time
 * (a partial index: queued and running runs are not in it) and messages by
 * run. Blocking: on a large database made without them, building them reads
 * the whole runs and messages tables once. The schema version is unchanged
 * (indexes only; a database without them is as valid). */
int store_prune_prepare(store_t *self);

/* Deletes about max_rows rows (> 0) of the runs that ended (done, failed,
 * cancelled) with ended_at < before (RFC 3339, as the store writes it),
 * oldest end first. A run's events go lowest seq first; its messages, its
 * row and its session (when no other run is left in it) go with its last
 * events, so a run larger than max_rows is spread over several calls (it is
 * found again: it is still the oldest) and a run whose row is gone has no
 * event left. A queued or running run is never touched. All in one savepoint:
 * inside the caller's transaction if one is open, its own otherwise; on
 * failure nothing of the call is deleted. OUT out: what went (zeroed first). */
int store_prune(store_t *self, const char *before, size_t max_rows, store_pruned_t *out);

#endif
