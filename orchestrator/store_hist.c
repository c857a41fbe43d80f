/* store_hist: store_history and the cache that serves it (store.h).
 *
 * Every run starts with its session's last history_max messages. Read from
 * SQLite that is one index step and one table seek per message, hundreds
 * per run: bench_edge measured it at a quarter of the orchestrator's CPU.
 * The orchestrator is the only writer of the store (ARCHITECTURE.md), and
 * every write of a message goes through this store_t, so the window can be
 * kept in memory and kept right:
 *
 *   - store_message_append adds the message to its session's window (the
 *     oldest falls out past the window's size);
 *   - a rollback (store_rollback, and a failed commit, which rolls back)
 *     forgets every window: the turn's appends are gone from the store;
 *   - retention (store_prune) forgets the window of each session it took
 *     messages from;
 *   - a window read with another size than asked is read again.
 *
 * The engine drops a session's window when the session leaves its memory
 * (no run, no watcher: store_history_forget), so windows are kept for the
 * sessions in use, not for every session ever seen. Bounds besides: at
 * most S_ENTRIES sessions and S_BYTES bytes of windows; a load
 * past either forgets every window first (then the cache fills again with
 * the sessions in use). A window larger than S_BYTES alone is not kept: it
 * is served from the read buffer. Keys are a 64-bit hash of the session
 * id; the entry keeps the id, so a collision is a miss, never a wrong
 * history.
 *
 * The views handed to the callback (role, content) point into the window
 * or the read buffer: valid until the next call into the store. */
#include "store_sql.h"

#include "common/hmap.h"
#include "common/mem.h"

#include <stdio.h>
#include <string.h>

#define S_ENTRIES 100000
#define S_BYTES (64u << 20)
#define S_MSG_OVERHEAD 48   /* counted per message besides its bytes */

typedef struct {
    size_t content_len;
    char data[];             /* role NUL content NUL */
} s_msg_t;

struct store_hist_t {
    char *session_id;
    size_t max;              /* the window's size */
    s_msg_t **ring;          /* n messages from head, oldest first */
    size_t head, n, cap;
    size_t bytes;
};

static uint64_t s_key(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ULL;
    return h;
}

static void s_entry_free(store_t *self, store_hist_t *e)
{
    for (size_t i = 0; i < e->n; i++)
        mem_free(e->ring[(e->head + i) % e->cap]);
    self->hist_bytes -= e->bytes;
    mem_free(e->ring);
    mem_free(e->session_id);
    mem_free(e);
}

void store_hist_clear(store_t *self)
{
    if (!self->hist_map)
        return;
    size_t pos = 0;
    uint64_t key;
    void *value;
    while (hmap_next(self->hist_map, &pos, &key, &value) == 0)
        s_entry_free(self, value);
    hmap_destroy(&self->hist_map);
    self->hist_map = hmap_new(S_ENTRIES);
}

void store_hist_free(store_t *self)
{
    store_hist_clear(self);
    hmap_destroy(&self->hist_map);
    mem_free(self->hist);
    mem_free(self->hist_off);
}

static store_hist_t *s_find(store_t *self, const char *session_id)
{
    store_hist_t *e = self->hist_map ? hmap_get(self->hist_map, s_key(session_id)) : NULL;
    return e && strcmp(e->session_id, session_id) == 0 ? e : NULL;
}

void store_hist_forget(store_t *self, const char *session_id)
{
    if (!self->hist_map)
        return;
    uint64_t key = s_key(session_id);
    store_hist_t *e = hmap_del(self->hist_map, key);
    if (e)
        s_entry_free(self, e); /* a colliding id's entry goes too: only a miss */
}

void store_history_forget(store_t *self, const char *session_id)
{
    store_hist_forget(self, session_id);
}

/* Appends a copy as the newest message, the oldest out past max. */
static void s_push(store_t *self, store_hist_t *e, const char *role, const char *content,
                   size_t len)
{
    size_t role_len = strlen(role);
    s_msg_t *m = mem_alloc(sizeof *m + role_len + 1 + len + 1);
    m->content_len = len;
    memcpy(m->data, role, role_len);
    if (len)
        memcpy(m->data + role_len + 1, content, len);
    size_t cost = role_len + len + S_MSG_OVERHEAD;
    if (e->n == e->max) { /* full: the oldest falls out */
        s_msg_t *old = e->ring[e->head];
        size_t old_cost = strlen(old->data) + old->content_len + S_MSG_OVERHEAD;
        e->bytes -= old_cost;
        self->hist_bytes -= old_cost;
        mem_free(old);
        e->ring[e->head] = m;
        e->head = (e->head + 1) % e->cap;
    } else {
        if (e->n == e->cap) { /* grow, oldest first again at 0 */
            size_t cap = e->cap ? e->cap * 2 : 16;
            if (cap > e->max)
                cap = e->max;
            s_msg_t **ring = mem_alloc(cap * sizeof *ring);
            for (size_t i = 0; i < e->n; i++)
                ring[i] = e->ring[(e->head + i) % e->cap];
            mem_free(e->ring);
            e->ring = ring;
            e->cap = cap;
            e->head = 0;
        }
        e->ring[(e->head + e->n) % e->cap] = m;
        e->n++;
    }
    e->bytes += cost;
    self->hist_bytes += cost;
}

void store_hist_append(store_t *self, const char *session_id, const char *role,
                       const char *content, size_t len)
{
    store_hist_t *e = s_find(self, session_id);
    if (e)
        s_push(self, e, role, content, len);
    if (self->hist_bytes > S_BYTES)
        store_hist_clear(self);
}

/* Grows the read buffer to hold need bytes. */
static void s_room(store_t *self, size_t need)
{
    if (need <= self->hist_cap)
        return;
    size_t cap = self->hist_cap ? self->hist_cap : 4096;
    while (cap < need)
        cap *= 2;
    self->hist = mem_realloc(self->hist, cap);
    self->hist_cap = cap;
}

/* The read buffer's row i: role, and its content after the length. */
static const char *s_row(const store_t *self, size_t i, const char **content, size_t *len)
{
    const char *role = self->hist + self->hist_off[i];
    const char *q = role + strlen(role) + 1;
    memcpy(len, q, sizeof *len);
    *content = q + sizeof *len;
    return role;
}

/* Reads the window newest first into the read buffer (rows at hist_off).
 * Returns the row count, or -1. */
static long s_read(store_t *self, const char *session_id, size_t max, size_t *bytes)
{
    sqlite3_stmt *st = store_sql_stmt(self, STORE_ST_HISTORY);
    store_sql_text(st, 1, session_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    size_t n = 0, used = 0;
    *bytes = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *role = (const char *)sqlite3_column_text(st, 0);
        size_t role_len = (size_t)sqlite3_column_bytes(st, 0);
        const char *content = (const char *)sqlite3_column_text(st, 1);
        size_t content_len = (size_t)sqlite3_column_bytes(st, 1);
        if (n == self->hist_off_cap) {
            self->hist_off_cap = self->hist_off_cap ? self->hist_off_cap * 2 : 64;
            self->hist_off = mem_realloc(self->hist_off, self->hist_off_cap * sizeof *self->hist_off);
        }
        /* role NUL, then the content's length (a size_t), content NUL */
        size_t need = role_len + 1 + sizeof(size_t) + content_len + 1;
        s_room(self, used + need);
        char *p = self->hist + used;
        if (role_len)
            memcpy(p, role, role_len);
        p[role_len] = 0;
        memcpy(p + role_len + 1, &content_len, sizeof content_len);
        if (content_len)
            memcpy(p + role_len + 1 + sizeof content_len, content, content_len);
        p[need - 1] = 0;
        self->hist_off[n++] = used;
        used += need;
        *bytes += role_len + content_len + S_MSG_OVERHEAD;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return store_sql_fail(self, "reading messages");
    return (long)n;
}

/* A window from the read buffer's n rows (newest first there). */
static store_hist_t *s_keep(store_t *self, const char *session_id, size_t max, size_t n,
                            size_t bytes)
{
    store_hist_forget(self, session_id);
    if (bytes > S_BYTES)
        return NULL;
    if (self->hist_bytes + bytes > S_BYTES || hmap_size(self->hist_map) >= S_ENTRIES)
        store_hist_clear(self);
    store_hist_t *e = mem_alloc(sizeof *e);
    e->session_id = mem_strdup(session_id);
    e->max = max;
    while (n-- > 0) {
        const char *content;
        size_t len;
        const char *role = s_row(self, n, &content, &len);
        s_push(self, e, role, content, len);
    }
    hmap_put(self->hist_map, s_key(session_id), e); /* room: cleared above if full */
    return e;
}

int store_history(store_t *self, const char *session_id, size_t max,
                  int (*cb)(void *arg, const char *role, const char *content, size_t len),
                  void *arg)
{
    if (max == 0)
        return 0;
    if (!self->hist_map)
        self->hist_map = hmap_new(S_ENTRIES);
    store_hist_t *e = s_find(self, session_id);
    long n = -1;
    if (!e || e->max != max) {
        size_t bytes;
        if ((n = s_read(self, session_id, max, &bytes)) < 0)
            return -1;
        e = s_keep(self, session_id, max, (size_t)n, bytes);
    }
    if (e) {
        for (size_t i = 0; i < e->n; i++) {
            s_msg_t *m = e->ring[(e->head + i) % e->cap];
            const char *role = m->data;
            if (cb(arg, role, role + strlen(role) + 1, m->content_len) < 0)
                goto stopped;
        }
        return 0;
    }
    while (n-- > 0) { /* not kept: oldest first from the read buffer */
        const char *content;
        size_t len;
        const char *role = s_row(self, (size_t)n, &content, &len);
        if (cb(arg, role, content, len) < 0)
            goto stopped;
    }
    return 0;
stopped:
    snprintf(self->errmsg, sizeof self->errmsg, "reading messages: stopped by the reader");
    return -1;
}
