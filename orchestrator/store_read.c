/* store_read: the store's reads (store.h): runs, pages of events and
 * messages (cut by the caller's callback), a session's runs newest first,
 * a queued run's input, history, agents. All through statements prepared
 * at open (store_sql.h). */
#include "store_sql.h"

#include "common/mem.h"

#include <stdio.h>
#include <string.h>

void store_sql_run_row(sqlite3_stmt *st, store_run_t *out)
{
    store_sql_copy(out->run_id, sizeof out->run_id, st, 0);
    store_sql_copy(out->session_id, sizeof out->session_id, st, 1);
    store_sql_copy(out->agent_id, sizeof out->agent_id, st, 2);
    store_sql_copy(out->status, sizeof out->status, st, 3);
    store_sql_copy(out->request_id, sizeof out->request_id, st, 4);
    store_sql_copy(out->created_at, sizeof out->created_at, st, 5);
    store_sql_copy(out->ended_at, sizeof out->ended_at, st, 6);
    store_sql_copy(out->parent_run_id, sizeof out->parent_run_id, st, 7);
    store_sql_copy(out->root_run_id, sizeof out->root_run_id, st, 8);
    out->depth = (uint32_t)sqlite3_column_int64(st, 9);
    store_sql_copy(out->call_id, sizeof out->call_id, st, 10);
}

int store_run_get(store_t *self, const char *run_id, store_run_t *out)
{
    sqlite3_stmt *st = store_sql_stmt(self, STORE_ST_RUN_GET);
    store_sql_text(st, 1, run_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        store_sql_run_row(st, out);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? 1 : store_sql_fail(self, "reading a run");
}

int store_run_by_request(store_t *self, const char *session_id, const char *request_id,
                         char *out, size_t outlen)
{
    sqlite3_stmt *st = store_sql_stmt(self, STORE_ST_RUN_BY_REQUEST);
    store_sql_text(st, 1, session_id);
    store_sql_text(st, 2, request_id);
    out[0] = '\0';
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        store_sql_copy(out, outlen, st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : store_sql_fail(self, "reading a run by request");
}

int store_run_by_call(store_t *self, const char *parent_run_id, const char *call_id, char *out,
                      size_t outlen)
{
    sqlite3_stmt *st = store_sql_stmt(self, STORE_ST_RUN_BY_CALL);
    store_sql_text(st, 1, parent_run_id);
    store_sql_text(st, 2, call_id);
    out[0] = '\0';
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        store_sql_copy(out, outlen, st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : store_sql_fail(self, "reading a run by call");
}

/* Steps st (bound) over run rows, handing each to cb (0 go on, 1 stop, -1
 * fail); what names the read in errors. */
static int s_each_run(store_t *self, sqlite3_stmt *st, int (*cb)(void *arg, const store_run_t *run),
                      void *arg, const char *what)
{
    int rc;
    store_run_t row;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_sql_run_row(st, &row);
        int stop = cb(arg, &row);
        if (stop > 0)
            break;
        if (stop < 0) {
            sqlite3_reset(st);
            snprintf(self->errmsg, sizeof self->errmsg, "reading %s: stopped by the reader", what);
            return -1;
        }
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW)
        return 0;
    char msg[64];
    snprintf(msg, sizeof msg, "reading %s", what);
    return store_sql_fail(self, msg);
}

int store_run_calls(store_t *self, const char *run_id,
                    int (*cb)(void *arg, const store_run_t *run), void *arg)
{
    sqlite3_stmt *st = store_sql_stmt(self, STORE_ST_RUN_CALLS);
    store_sql_text(st, 1, run_id);
    return s_each_run(self, st, cb, arg, "a run's calls");
}

int store_run_last_seq(store_t *self, const char *run_id, uint64_t *seq)
{
    sqlite3_stmt *st = store_sql_stmt(self, STORE_ST_RUN_LAST_SEQ);
    store_sql_text(st, 1, run_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *seq = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? 0 : store_sql_fail(self, "reading a run's last seq");
}

int store_events_read(store_t *self, const char *run_id, uint64_t after_seq, size_t limit,
                      int (*cb)(void *arg, const store_event_t *e), void *arg)
{
    sqlite3_stmt *st = store_sql_stmt(self, STORE_ST_EVENTS_READ);
    store_sql_text(st, 1, run_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)after_seq);
    sqlite3_bind_int64(st, 3, limit ? (sqlite3_int64)limit : -1);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_event_t e = {
            .event_id = sqlite3_column_int64(st, 0),
            .run_id = (const char *)sqlite3_column_text(st, 1),
            .session_id = (const char *)sqlite3_column_text(st, 2),
            .seq = (uint64_t)sqlite3_column_int64(st, 3),
            .type = (const char *)sqlite3_column_text(st, 4),
            .payload = (const char *)sqlite3_column_text(st, 5),
            .created_at = (const char *)sqlite3_column_text(st, 6),
            .parent_run_id = (const char *)sqlite3_column_text(st, 7),
            .depth = (uint32_t)sqlite3_column_int64(st, 8),
        };
        int stop = cb(arg, &e);
        if (stop > 0)
            break;
        if (stop < 0) {
            sqlite3_reset(st);
            snprintf(self->errmsg, sizeof self->errmsg, "reading events: stopped by the reader");
            return -1;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store_sql_fail(self, "reading events");
}

/* Steps a message query, handing each row to cb (> 0 stops, < 0 fails). */
static int s_messages_each(store_t *self, sqlite3_stmt *st,
                           int (*cb)(void *arg, const store_message_t *m), void *arg)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_message_t m = {
            .message_id = sqlite3_column_int64(st, 0),
            .run_id = (const char *)sqlite3_column_text(st, 1),
            .role = (const char *)sqlite3_column_text(st, 2),
            .content = (const char *)sqlite3_column_text(st, 3),
            .content_len = (size_t)sqlite3_column_bytes(st, 3),
            .created_at = (const char *)sqlite3_column_text(st, 4),
        };
        int stop = cb(arg, &m);
        if (stop > 0)
            break;
        if (stop < 0) {
            sqlite3_reset(st);
            snprintf(self->errmsg, sizeof self->errmsg, "reading messages: stopped by the reader");
            return -1;
        }
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store_sql_fail(self, "reading messages");
}

int store_messages_read(store_t *self, const char *session_id, size_t limit,
                        int (*cb)(void *arg, const store_message_t *m), void *arg)
{
    sqlite3_stmt *st = store_sql_stmt(self, STORE_ST_MESSAGES_READ);
    store_sql_text(st, 1, session_id);
    sqlite3_bind_int64(st, 2, limit ? (sqlite3_int64)limit : -1);
    return s_messages_each(self, st, cb, arg);
}

int store_messages_page(store_t *self, const char *session_id, int64_t before, int64_t after,
                        size_t limit, int (*cb)(void *arg, const store_message_t *m), void *arg)
{
    sqlite3_stmt *st = store_sql_stmt(self, after > 0 ? STORE_ST_MESSAGES_AFTER : STORE_ST_MESSAGES_BEFORE);
    store_sql_text(st, 1, session_id);
    sqlite3_bind_int64(st, 2, after > 0 ? after : before);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    return s_messages_each(self, st, cb, arg);
}

int store_session_runs(store_t *self, const char *session_id, const char *before, size_t limit,
                       int (*cb)(void *arg, const store_run_t *run), void *arg)
{
    sqlite3_stmt *st = store_sql_stmt(self, before ? STORE_ST_SESSION_RUNS_BEFORE : STORE_ST_SESSION_RUNS);
    store_sql_text(st, 1, session_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    if (before)
        store_sql_text(st, 3, before);
    return s_each_run(self, st, cb, arg, "a session's runs");
}

int store_run_input(store_t *self, const char *run_id, char **content, size_t *len)
{
    sqlite3_stmt *st = store_sql_stmt(self, STORE_ST_RUN_INPUT);
    store_sql_text(st, 1, run_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        *len = (size_t)sqlite3_column_bytes(st, 0);
        *content = mem_strndup(v ? v : "", *len);
    }
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? 1 : store_sql_fail(self, "reading a run's input");
}

static void s_agent_row(sqlite3_stmt *st, store_agent_t *a)
{
    store_sql_copy(a->agent_id, sizeof a->agent_id, st, 0);
    store_sql_copy(a->name, sizeof a->name, st, 1);
    store_sql_copy(a->endpoint, sizeof a->endpoint, st, 2);
    store_sql_copy(a->created_at, sizeof a->created_at, st, 3);
    store_sql_copy(a->updated_at, sizeof a->updated_at, st, 4);
    store_sql_copy(a->kind, sizeof a->kind, st, 5);
}

int store_agent_get(store_t *self, const char *agent_id, store_agent_t *out)
{
    sqlite3_stmt *st = store_sql_stmt(self, STORE_ST_AGENT_GET);
    store_sql_text(st, 1, agent_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        s_agent_row(st, out);
    sqlite3_reset(st);
    if (rc == SQLITE_ROW)
        return 0;
    return rc == SQLITE_DONE ? 1 : store_sql_fail(self, "reading an agent");
}

int store_agent_upsert(store_t *self, const char *agent_id, const char *name,
                       const char *endpoint, const char *now, int *created)
{
    sqlite3_stmt *st = store_sql_stmt(self, STORE_ST_AGENT_UPDATE);
    store_sql_text(st, 1, agent_id);
    store_sql_text(st, 2, name);
    store_sql_text(st, 3, endpoint);
    store_sql_text(st, 4, now);
    if (store_sql_done(self, st, "updating an agent") != 0)
        return -1;
    *created = sqlite3_changes(self->db) == 0;
    if (!*created)
        return 0;
    st = store_sql_stmt(self, STORE_ST_AGENT_INSERT);
    store_sql_text(st, 1, agent_id);
    store_sql_text(st, 2, name);
    store_sql_text(st, 3, endpoint);
    store_sql_text(st, 4, now);
    return store_sql_done(self, st, "writing an agent");
}

int store_agent_native(store_t *self, const char *agent_id, const char *now)
{
    sqlite3_stmt *st = store_sql_stmt(self, STORE_ST_AGENT_NATIVE);
    store_sql_text(st, 1, agent_id);
    store_sql_text(st, 2, now);
    return store_sql_done(self, st, "writing a native agent");
}

int store_agent_endpoint(store_t *self, const char *agent_id, char *buf, size_t buflen)
{
    store_agent_t a;
    int rc = store_agent_get(self, agent_id, &a);
    if (rc == 0 && strcmp(a.kind, "http") != 0)
        return 1;
    if (rc == 0)
        snprintf(buf, buflen, "%s", a.endpoint);
    return rc;
}

int store_agents_list(store_t *self, int (*cb)(void *arg, const store_agent_t *a), void *arg)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(self->db,
                           "SELECT agent_id, name, endpoint, created_at, updated_at, kind "
                           "FROM agents ORDER BY agent_id",
                           -1, &st, NULL) != SQLITE_OK)
        return store_sql_fail(self, "listing agents");
    int rc;
    store_agent_t a;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        s_agent_row(st, &a);
        if (cb(arg, &a) != 0)
            break;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : store_sql_fail(self, "listing agents");
}
