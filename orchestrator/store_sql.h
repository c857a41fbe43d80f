/* store_sql: the SQLite store's own toolkit, shared by its three files
 * and included by nothing else: store.c (the connection, the schema and
 * its migrations, transactions, writes, recovery), store_read.c (reads:
 * runs, pages of events and messages, history, agents) and store_prune.c
 * (retention). The public interface is store.h. */
#ifndef MAP_STORE_SQL_H
#define MAP_STORE_SQL_H
#include "store.h"

#include <sqlite3.h>

/* The statements prepared once at open (their SQL is in store.c). */
typedef enum {
    STORE_ST_SESSION_ENSURE,
    STORE_ST_RUN_INSERT,
    STORE_ST_RUN_STATUS,
    STORE_ST_RUN_STATUS_ENDED,
    STORE_ST_EVENT_APPEND,
    STORE_ST_MESSAGE_APPEND,
    STORE_ST_RUN_GET,
    STORE_ST_RUN_BY_REQUEST,
    STORE_ST_EVENTS_READ,
    STORE_ST_MESSAGES_READ,
    STORE_ST_HISTORY,
    STORE_ST_AGENT_GET,
    STORE_ST_AGENT_INSERT,
    STORE_ST_AGENT_UPDATE,
    STORE_ST_AGENT_NATIVE,
    STORE_ST_MESSAGES_BEFORE,
    STORE_ST_MESSAGES_AFTER,
    STORE_ST_SESSION_RUNS,
    STORE_ST_SESSION_RUNS_BEFORE,
    STORE_ST_RUN_INPUT,
    STORE_ST_RUN_BY_CALL,
    STORE_ST_RUN_CALLS,
    STORE_ST_RUN_LAST_SEQ,
    STORE_ST_BEGIN,      /* the transaction statements: a turn runs two, */
    STORE_ST_COMMIT,     /* and sqlite3_exec would parse them each time */
    STORE_ST_ROLLBACK,
    STORE_ST_STMT_COUNT
} store_stmt_id_t;

struct store_t {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *stmts[STORE_ST_STMT_COUNT];
    int last_code;            /* extended code of the last failure */
    char *hist;               /* store_hist.c: the rows read, kept from call to call */
    size_t hist_cap;
    size_t *hist_off;         /* per row: role at off, content after its NUL */
    size_t hist_off_cap;
    struct hmap_t *hist_map;  /* session id hash → store_hist_t (the windows) */
    size_t hist_bytes;        /* their bytes */
    char errmsg[512];
};

/* Records the failure of what (one sentence in errmsg). Returns -1. */
int store_sql_fail(store_t *self, const char *what);
int store_sql_exec(store_t *self, const char *sql, const char *what);
/* The prepared statement id, reset and unbound. */
sqlite3_stmt *store_sql_stmt(store_t *self, store_stmt_id_t id);
/* Steps a statement that returns no row. */
int store_sql_done(store_t *self, sqlite3_stmt *st, const char *what);
/* Binds s, or NULL. */
void store_sql_text(sqlite3_stmt *st, int i, const char *s);
/* Column col as text into dst ("" for NULL). */
void store_sql_copy(char *dst, size_t cap, sqlite3_stmt *st, int col);
/* The call columns of a runs row, after its first seven. */
#define STORE_SQL_CALL_COLS \
    "COALESCE(parent_run_id, ''), COALESCE(root_run_id, ''), depth, COALESCE(call_id, '')"
/* store_hist.c: the history windows kept in memory (see there). */
typedef struct store_hist_t store_hist_t;
void store_hist_append(store_t *self, const char *session_id, const char *role,
                       const char *content, size_t len);
void store_hist_forget(store_t *self, const char *session_id);
void store_hist_clear(store_t *self);
void store_hist_free(store_t *self);

/* A runs row (run_id, session_id, agent_id, status, request_id,
 * created_at, ended_at, then STORE_SQL_CALL_COLS) into out. */
void store_sql_run_row(sqlite3_stmt *st, store_run_t *out);

#endif
