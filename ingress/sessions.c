/* sessions: see sessions.h.
 *
 * Re-watch after a loss: the timer probes with one session at a time
 * (100 ms doubling to 2 s); the first accepted watch proves the
 * orchestrator back and every other session without a watch is watched at
 * once, once per recovery (not once per accepted watch: O(sessions²)).
 *
 * A watch's STREAM may be a batch (the events of one orchestrator turn,
 * proto/ORCHESTRATOR.md): each of its events is handled as a lone one. */
#include "sessions.h"

#include "seqtrack.h"
#include "common/log.h"
#include "common/mem.h"

#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define S_REWATCH_MIN_MS 100
#define S_REWATCH_MAX_MS 2000

struct sessions_t {
    hub_t *h;
    zhashx_t *map;           /* id → session_t */
    int64_t rewatch_at;      /* mono ms: next try for sessions without a watch; 0 none */
    long rewatch_ms;         /* the try's backoff */
    sbuf_t wrap;             /* the socket message of an event, kept (no allocation per event) */
    const char *wrap_of;     /* the event JSON wrap was built from, and its */
    size_t wrap_len;         /* length; NULL: none to reuse */
    int wrap_live;           /* one watch event is going to its sockets: reuse */
};

#define S_WRAP_KEEP (64u << 10) /* wrap's memory kept past one event at most */

static void s_free_item(void **item)
{
    mem_free(*item);
    *item = NULL;
}

sessions_t *sessions_new(hub_t *h)
{
    sessions_t *self = mem_alloc(sizeof *self);
    self->h = h;
    self->map = zhashx_new();
    zhashx_set_destructor(self->map, s_free_item);
    self->rewatch_ms = S_REWATCH_MIN_MS;
    sbuf_init(&self->wrap, (4u << 20) + 64); /* past any body (1 MiB) */
    return self;
}

void sessions_destroy(sessions_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zhashx_destroy(&(*self_p)->map);
    sbuf_free(&(*self_p)->wrap);
    mem_free(*self_p);
    *self_p = NULL;
}

static const mp_buf_t *s_body(sessions_t *self, const orch_request_t *q)
{
    mp_buf_reset(&self->h->mp);
    orch_encode_request(&self->h->mp, q);
    return &self->h->mp;
}

#define S_STR(s) ((agent_str_t){(s), (uint32_t)strlen(s)})

static void s_watch(sessions_t *self, session_t *s)
{
    orch_request_t q = {.op = S_STR("watch"), .session_id = S_STR(s->id)};
    pending_t *p = hub_request(self->h, NULL, P_WATCH, s_body(self, &q), 0);
    if (p) {
        p->session = s;
        s->watch = p->req;
    }
}

session_t *sessions_join(sessions_t *self, conn_t *c, const char *id)
{
    session_t *s = zhashx_lookup(self->map, id);
    if (!s) {
        s = mem_alloc(sizeof *s);
        snprintf(s->id, sizeof s->id, "%s", id);
        zhashx_insert(self->map, id, s);
        s_watch(self, s);
        if (!s->watch && !self->rewatch_at) /* not sent: the timer tries */
            self->rewatch_at = io_now_ms(self->h->io) + self->rewatch_ms;
    }
    c->snext = s->conns;
    s->conns = c;
    c->session = s;
    return s;
}

void sessions_leave(sessions_t *self, conn_t *c)
{
    session_t *s = c->session;
    if (!s)
        return;
    for (conn_t **pp = &s->conns; *pp; pp = &(*pp)->snext) {
        if (*pp == c) {
            *pp = c->snext;
            break;
        }
    }
    c->session = NULL;
    c->snext = NULL;
    if (s->conns)
        return;
    if (s->watch) {
        pending_t *p = pending_get(self->h->pending, s->watch);
        io_cancel(self->h->io, s->watch);
        if (p)
            pending_free(self->h->pending, p);
    }
    zhashx_delete(self->map, s->id); /* frees s */
}

session_t *sessions_find(sessions_t *self, const char *id)
{
    return zhashx_lookup(self->map, id);
}

size_t sessions_count(const sessions_t *self)
{
    return zhashx_size(self->map);
}

seqtrack_t *sessions_track(sessions_t *self, conn_t *c, const char *run_id, uint64_t next)
{
    (void)self;
    if (!c->runs) {
        c->runs = zhashx_new();
        zhashx_set_destructor(c->runs, s_free_item);
    }
    seqtrack_t *t = zhashx_lookup(c->runs, run_id);
    if (!t) {
        t = mem_alloc(sizeof *t);
        seqtrack_init(t, next);
        zhashx_insert(c->runs, run_id, t);
        conn_unmark_ended(c, run_id);
    }
    return t;
}

void sessions_untrack(conn_t *c, const char *run_id)
{
    if (c->runs)
        zhashx_delete(c->runs, run_id);
}

int sessions_send_event(sessions_t *self, conn_t *c, const char *json, size_t len)
{
    sbuf_t *j = &self->wrap;
    if (!self->wrap_live || self->wrap_of != json || self->wrap_len != len) {
        sbuf_reset(j);
        sbuf_cats(j, "{\"type\":\"event\",\"event\":");
        sbuf_cat(j, json, len);
        sbuf_cats(j, "}");
        self->wrap_of = json;
        self->wrap_len = len;
    }
    int rc = j->overflow ? -1 : hub_push(self->h, c, j->data, j->len);
    if (!self->wrap_live && j->cap > S_WRAP_KEEP) {
        sbuf_free(j);
        sbuf_init(j, (4u << 20) + 64);
    }
    if (rc == 0)
        self->h->m.events_sent++;
    return rc;
}

/* Sends the fill the tracker asked for (filling is set), unless c is
 * behind (then later, from sessions_drained). A request that cannot go
 * out counts as a failed fill. */
static void s_fill(sessions_t *self, conn_t *c, const char *run_id, seqtrack_t *t)
{
    if (c->closing) {
        seqtrack_fill_later(t);
        return;
    }
    if (!hub_drained(self->h, c)) {
        seqtrack_fill_later(t);
        c->drain_wait = 1;
        return;
    }
    do {
        orch_request_t q = {.op = S_STR("events"), .run_id = S_STR(run_id),
                            .after_seq = seqtrack_after(t), .limit = 1000};
        pending_t *p = hub_request(self->h, c, P_WS_FILL, s_body(self, &q),
                                   self->h->cfg.request_timeout_ms);
        if (p) {
            snprintf(p->run_id, sizeof p->run_id, "%s", run_id);
            self->h->m.fills++;
            return;
        }
    } while (seqtrack_fill_done(t, 0));
}

static void s_ended(conn_t *c, const char *run_id)
{
    conn_mark_ended(c, run_id);
    sessions_untrack(c, run_id);
}

void sessions_event(sessions_t *self, conn_t *c, const char *run_id, uint64_t seq, int terminal,
                    const char *json, size_t len)
{
    if (c->closing)
        return;
    seqtrack_t *t = c->runs ? zhashx_lookup(c->runs, run_id) : NULL;
    if (!t) {
        if (conn_has_ended(c, run_id)) /* a late copy: its end was sent */
            return;
        t = sessions_track(self, c, run_id, seq);
    }
    if (seq == t->next && !t->filling && hub_behind(self->h, c, len + 64)) {
        seqtrack_skip(t, seq);
        c->drain_wait = 1;
        return;
    }
    switch (seqtrack_live(t, seq)) {
    case SEQ_SEND:
        if (sessions_send_event(self, c, json, len) == 0 && terminal)
            s_ended(c, run_id);
        break;
    case SEQ_FILL:
        s_fill(self, c, run_id, t);
        break;
    case SEQ_DROP:
    case SEQ_HOLD:
        break;
    }
}

void sessions_catch_up(sessions_t *self, conn_t *c, const char *run_id)
{
    seqtrack_t *t = c->runs ? zhashx_lookup(c->runs, run_id) : NULL;
    if (!t)
        return; /* its end was sent */
    if (seqtrack_want_fill(t))
        s_fill(self, c, run_id, t);
}

void sessions_drained(sessions_t *self, conn_t *c)
{
    if (!c->drain_wait || !c->runs || !hub_drained(self->h, c))
        return;
    c->drain_wait = 0;
    c->need_empty = 0;
    /* Collect first: s_fill may not change c->runs, but keep the cursor
     * out of it anyway. */
    for (seqtrack_t *t = zhashx_first(c->runs); t; t = zhashx_next(c->runs))
        if (seqtrack_behind(t) && seqtrack_want_fill(t))
            s_fill(self, c, zhashx_cursor(c->runs), t);
}

/* A session's watch is back after a loss: every run its sockets follow
 * may have missed events meanwhile (even its terminal one). */
static void s_refill(sessions_t *self, session_t *s)
{
    s->lost = 0;
    for (conn_t *c = s->conns; c; c = c->snext) {
        if (!c->runs)
            continue;
        for (seqtrack_t *t = zhashx_first(c->runs); t; t = zhashx_next(c->runs))
            if (seqtrack_want_fill(t))
                s_fill(self, c, zhashx_cursor(c->runs), t);
    }
}

/* One event to every socket of the session: its message is built at the
 * first that sends it and reused by the others. Reuse only inside this
 * loop (wrap_live), and wrap_of cleared first: a pointer from an earlier
 * event that happens to match names other bytes. */
static void s_watch_event(sessions_t *self, session_t *s, const orch_stream_t *ev)
{
    char run_id[129];
    snprintf(run_id, sizeof run_id, "%.*s", (int)ev->run_id.len, ev->run_id.ptr);
    self->wrap_of = NULL;
    self->wrap_live = 1;
    for (conn_t *c = s->conns; c; c = c->snext)
        sessions_event(self, c, run_id, ev->seq, ev->terminal, ev->json.ptr, ev->json.len);
    self->wrap_live = 0;
    self->wrap_of = NULL;
    if (self->wrap.cap > S_WRAP_KEEP) {
        sbuf_free(&self->wrap);
        sbuf_init(&self->wrap, (4u << 20) + 64);
    }
}

void sessions_on_watch(sessions_t *self, pending_t *p, const orch_stream_t *ev)
{
    session_t *s = p->session;
    if (ev->accepted) {
        self->rewatch_ms = S_REWATCH_MIN_MS;
        if (self->rewatch_at) {
            self->rewatch_at = 0;
            for (session_t *o = zhashx_first(self->map); o; o = zhashx_next(self->map)) {
                if (!o->watch)
                    s_watch(self, o);
                if (!o->watch && !self->rewatch_at)
                    self->rewatch_at = io_now_ms(self->h->io) + self->rewatch_ms;
            }
        }
        if (s->lost)
            s_refill(self, s);
        return;
    }
    if (!ev->batch) {
        s_watch_event(self, s, ev);
        return;
    }
    orch_stream_t batch = *ev, one;
    while (orch_batch_next(&batch, &one))
        s_watch_event(self, s, &one);
}

void sessions_watch_ended(sessions_t *self, pending_t *p)
{
    session_t *s = p->session;
    s->watch = 0;
    s->lost = 1;
    self->h->m.watches_lost++;
    int64_t at = io_now_ms(self->h->io) + self->rewatch_ms;
    if (!self->rewatch_at || at < self->rewatch_at)
        self->rewatch_at = at;
}

static int s_is_terminal(const char *type)
{
    return type && (!strcmp(type, "run_done") || !strcmp(type, "run_failed") ||
                    !strcmp(type, "run_cancelled"));
}

void sessions_on_fill(sessions_t *self, conn_t *c, const char *run_id, unsigned status,
                      const char *json, size_t len)
{
    seqtrack_t *t = c->runs ? zhashx_lookup(c->runs, run_id) : NULL;
    if (!t)
        return;
    json_t *doc = json && status == 200 ? json_loadb(json, len, 0, NULL) : NULL;
    json_t *events = json_object_get(doc, "events");
    int ok = json_is_array(events), ended = 0;
    int has_more = json_is_true(json_object_get(doc, "has_more"));
    size_t i;
    json_t *ev;
    int full = 0, sent = 0;
    json_array_foreach(events, i, ev) {
        json_int_t seq = json_integer_value(json_object_get(ev, "seq"));
        if (seq <= 0 || (uint64_t)seq != t->next)
            continue;
        char *text = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
        if (!text)
            break;
        /* No room: the rest of the page waits in the store; the socket
         * asks again from here once it drained. */
        if (hub_behind(self->h, c, strlen(text) + 64) && c->q.bytes > 0) {
            /* An event larger than the room waits for an empty queue. */
            c->need_empty = !sent;
            free(text);
            seqtrack_skip(t, (uint64_t)seq);
            full = 1;
            break;
        }
        sent++;
        seqtrack_filled(t, (uint64_t)seq);
        sessions_send_event(self, c, text, strlen(text));
        free(text);
        if (s_is_terminal(json_string_value(json_object_get(ev, "type"))))
            ended = 1;
    }
    json_decref(doc);
    if (ended) {
        s_ended(c, run_id);
        return;
    }
    if (full || (ok && has_more))
        seqtrack_skip(t, t->next); /* more is known to exist */
    if (seqtrack_fill_done(t, ok))
        s_fill(self, c, run_id, t);
}

void sessions_tick(sessions_t *self, int64_t now)
{
    if (!self->rewatch_at || now < self->rewatch_at || !io_linked(self->h->io))
        return;
    self->rewatch_at = 0;
    for (session_t *s = zhashx_first(self->map); s; s = zhashx_next(self->map)) {
        if (!s->watch) {
            s_watch(self, s);
            self->rewatch_at = now + self->rewatch_ms;
            self->rewatch_ms = self->rewatch_ms * 2 < S_REWATCH_MAX_MS ? self->rewatch_ms * 2
                                                                     : S_REWATCH_MAX_MS;
            return;
        }
    }
}

void sessions_link_up(sessions_t *self)
{
    for (session_t *s = zhashx_first(self->map); s; s = zhashx_next(self->map))
        if (!s->watch)
            s_watch(self, s);
}
