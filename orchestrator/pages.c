/* pages: paged reads (pages.h).
 *
 * A page stops at its count or when the next item would pass its bytes;
 * each reader reads one row more than it keeps to learn has_more. A page
 * of messages read newest first (no cursor, before) is written oldest
 * first: the items are built once, their end offsets kept, then copied in
 * reverse. */
#include "pages.h"

#include "flow.h"
#include "reply.h"

#include "common/mem.h"
#include "proto/render.h"

#include <string.h>

/* One page of stored events: as a JSON list (events op) or as STREAM
 * bodies (follow). more is set when an event was left for the next page. */
typedef struct {
    engine_t *self;
    uint64_t req;
    uint64_t last_seq;     /* last seq in the page */
    sbuf_t *list;          /* events op: JSON array being built; NULL: follow */
    size_t count, limit;
    size_t bytes, bytes_max;
    int more;
} s_replay_t;

static int s_replay_cb(void *arg, const store_event_t *e)
{
    s_replay_t *rp = arg;
    engine_t *self = rp->self;
    if (rp->count == rp->limit) {
        rp->more = 1;
        return 1;
    }
    sbuf_reset(&self->json);
    render_event_t ev = {e->event_id, e->run_id,      e->session_id,    e->seq, e->type,
                         e->payload,  e->created_at, e->parent_run_id, e->depth};
    render_event(&self->json, &ev);
    size_t need = self->json.len + 1;
    if (rp->list) {
        if (self->json.overflow || rp->bytes + need > rp->bytes_max) {
            rp->more = 1;
            return 1;
        }
        if (rp->count)
            sbuf_cats(rp->list, ",");
        sbuf_cat(rp->list, self->json.data, self->json.len);
    } else {
        orch_stream_t st = {.run_id = engine_str(e->run_id),
                            .session_id = engine_str(e->session_id),
                            .type = engine_str(e->type),
                            .seq = e->seq,
                            .terminal = runfsm_terminal_type(e->type),
                            .json = {self->json.data, (uint32_t)self->json.len}};
        mp_buf_reset(&self->mp);
        if (self->json.overflow || orch_encode_event(&self->mp, &st) != 0 ||
            self->mp.len > CORE_BODY_MAX ||
            (rp->count && rp->bytes + self->mp.len > rp->bytes_max)) {
            rp->more = 1;
            return 1;
        }
        need = self->mp.len;
        reply_push(self, rp->req, OUTBOX_STREAM, self->mp.data, self->mp.len);
    }
    rp->bytes += need;
    rp->last_seq = e->seq;
    rp->count++;
    return 0;
}

void pages_row_json(sbuf_t *j, const store_run_t *row)
{
    render_run_t r = {row->run_id,        row->session_id,  row->agent_id,
                      row->status,        row->created_at,  row->ended_at,
                      row->parent_run_id, row->root_run_id, row->depth};
    render_run(j, &r);
}

/* The run's row; answered 404/500 when there is none. */
static int s_row(engine_t *self, uint64_t req, const char *run_id, store_run_t *row)
{
    int rc = *run_id ? store_run_get(self->store, run_id, row) : 1;
    if (rc < 0)
        reply_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
    else if (rc > 0)
        reply_error(self, req, 404, "unknown_run", "no run '%s'", run_id);
    return rc;
}

void pages_follow(engine_t *self, uint64_t req, const char *run_id, uint64_t after_seq)
{
    /* A run that ended this turn takes no followers: the store (this turn's
     * transaction) has all of it. */
    run_t *run = runs_live(self->runs, run_id);
    store_run_t row;
    if (!run && s_row(self, req, run_id, &row) != 0)
        return;
    if (run && run->nfollowers >= (size_t)self->cfg.follows_max) {
        reply_error(self, req, 429, "too_many_follows",
                    "run '%s' has %zu followers, the maximum (MAP_MAX_FOLLOWS_PER_RUN)", run_id,
                    run->nfollowers);
        return;
    }
    sbuf_reset(&self->json);
    if (run) {
        flow_run_json(run, &self->json, NULL);
        reply_accepted(self, req, self->json.data, self->json.len, run->run_id,
                       runfsm_name(run->status), run->session->id);
    } else {
        pages_row_json(&self->json, &row);
        reply_accepted(self, req, self->json.data, self->json.len, row.run_id, row.status,
                       row.session_id);
    }
    /* One page, then live: a longer history reaches the edge as a gap
     * (the next live seq is past the page), which it fills with `events`. */
    s_replay_t rp = {.self = self, .req = req, .last_seq = after_seq,
                     .limit = PAGES_FOLLOW_EVENTS, .bytes_max = PAGES_FOLLOW_BYTES};
    if (store_events_read(self->store, run_id, after_seq, PAGES_FOLLOW_EVENTS + 1, s_replay_cb,
                          &rp) != 0) {
        reply_fail(self, req, "internal", store_errmsg(self->store));
        return;
    }
    if (run) {
        uint64_t next = rp.more ? rp.last_seq + 1
                                : (run->seq > after_seq ? run->seq : after_seq) + 1;
        runs_add_follower(self->runs, run, req, next);
        return;
    }
    sbuf_reset(&self->json);
    pages_row_json(&self->json, &row);
    reply_run(self, req, 200, self->json.data, self->json.len, row.run_id, row.status,
              row.session_id);
}

void pages_events(engine_t *self, uint64_t req, const orch_request_t *q)
{
    char *run_id = engine_dup(&q->run_id);
    store_run_t row;
    if (s_row(self, req, run_id, &row) != 0) {
        mem_free(run_id);
        return;
    }
    uint64_t limit = q->limit ? q->limit : PAGES_EVENTS_DEFAULT;
    if (limit > ORCH_LIMIT_MAX)
        limit = ORCH_LIMIT_MAX;
    sbuf_t list;
    sbuf_init(&list, CORE_PAGE_BYTES);
    sbuf_cats(&list, "{\"run_id\":");
    sbuf_json_str(&list, run_id, strlen(run_id));
    sbuf_cats(&list, ",\"events\":[");
    const size_t tail = 64; /* ],"has_more":false,"next_after_seq":<20 digits>} */
    s_replay_t rp = {.self = self, .req = req, .last_seq = q->after_seq, .list = &list,
                     .limit = (size_t)limit, .bytes = list.len,
                     .bytes_max = CORE_PAGE_BYTES - tail};
    if (store_events_read(self->store, run_id, q->after_seq, (size_t)limit + 1, s_replay_cb,
                          &rp) != 0) {
        reply_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
    } else if (rp.count == 0 && rp.more) {
        reply_error(self, req, 500, "internal", "event %llu of run '%s' is over the page maximum",
                    (unsigned long long)q->after_seq + 1, run_id);
    } else {
        sbuf_cats(&list, rp.more ? "],\"has_more\":true" : "],\"has_more\":false");
        sbuf_cats(&list, ",\"next_after_seq\":");
        sbuf_cat_u64(&list, rp.last_seq);
        sbuf_cats(&list, "}");
        reply_run(self, req, 200, list.data, list.len, row.run_id, row.status, row.session_id);
    }
    sbuf_free(&list);
    mem_free(run_id);
}

void pages_run(engine_t *self, uint64_t req, const orch_request_t *q)
{
    char *run_id = engine_dup(&q->run_id);
    store_run_t row;
    if (s_row(self, req, run_id, &row) == 0) {
        sbuf_reset(&self->json);
        pages_row_json(&self->json, &row);
        reply_run(self, req, 200, self->json.data, self->json.len, row.run_id, row.status,
                  row.session_id);
    }
    mem_free(run_id);
}

typedef struct {
    sbuf_t *j;
    size_t count;
    int full;
} s_calls_t;

static int s_call_cb(void *arg, const store_run_t *row)
{
    s_calls_t *c = arg;
    if (c->count++)
        sbuf_cats(c->j, ",");
    pages_row_json(c->j, row);
    if (c->j->overflow || c->j->len > CORE_PAGE_BYTES - 16) {
        c->full = 1;
        return 1;
    }
    return 0;
}

void pages_calls(engine_t *self, uint64_t req, const orch_request_t *q)
{
    char *run_id = engine_dup(&q->run_id);
    store_run_t row;
    if (s_row(self, req, run_id, &row) != 0) {
        mem_free(run_id);
        return;
    }
    /* At most MAP_MAX_CALLS_PER_RUN children of about 500 bytes: one page. */
    sbuf_t j;
    sbuf_init(&j, CORE_PAGE_BYTES);
    sbuf_cats(&j, "{\"run_id\":");
    sbuf_json_str(&j, run_id, strlen(run_id));
    sbuf_cats(&j, ",\"calls\":[");
    s_calls_t c = {&j, 0, 0};
    if (store_run_calls(self->store, run_id, s_call_cb, &c) != 0)
        reply_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
    else if (c.full)
        reply_error(self, req, 500, "internal", "run '%s' has more calls than one page holds", run_id);
    else if (sbuf_cats(&j, "]}") == 0)
        reply_run(self, req, 200, j.data, j.len, row.run_id, row.status, row.session_id);
    sbuf_free(&j);
    mem_free(run_id);
}

typedef struct {
    sbuf_t items;
    size_t ends[PAGES_MESSAGES_MAX];
    size_t count, limit, bytes_max;
    int more;
} s_msgpage_t;

static int s_message_cb(void *arg, const store_message_t *m)
{
    s_msgpage_t *pg = arg;
    if (pg->count == pg->limit) {
        pg->more = 1;
        return 1;
    }
    size_t before = pg->items.len;
    render_message(&pg->items, m->message_id, m->run_id, m->role, m->content, m->content_len,
                   m->created_at);
    if (pg->items.overflow || pg->items.len + pg->count > pg->bytes_max) {
        pg->items.len = before; /* not in this page */
        pg->items.overflow = 0;
        pg->more = 1;
        return 1;
    }
    pg->ends[pg->count++] = pg->items.len;
    return 0;
}

/* A message id cursor: a string of digits. 0 when absent, -1 when bad. */
static int64_t s_cursor(const agent_str_t *c)
{
    if (c->len == 0)
        return 0;
    if (c->len > 18)
        return -1;
    int64_t v = 0;
    for (uint32_t i = 0; i < c->len; i++) {
        if (c->ptr[i] < '0' || c->ptr[i] > '9')
            return -1;
        v = v * 10 + (c->ptr[i] - '0');
    }
    return v > 0 ? v : -1;
}

void pages_messages(engine_t *self, uint64_t req, const orch_request_t *q)
{
    if (!engine_valid_id(&q->session_id)) {
        reply_error(self, req, 400, "bad_request", "session_id is required");
        return;
    }
    int64_t before = s_cursor(&q->before), after = s_cursor(&q->after);
    if (before < 0 || after < 0 || (before && after)) {
        reply_error(self, req, 400, "bad_request", "before or after (not both) must be a message_id");
        return;
    }
    char *id = engine_dup(&q->session_id);
    uint64_t limit = q->limit ? q->limit : PAGES_MESSAGES_DEFAULT;
    if (limit > PAGES_MESSAGES_MAX)
        limit = PAGES_MESSAGES_MAX;
    s_msgpage_t *pg = mem_alloc(sizeof *pg);
    sbuf_t j;
    sbuf_init(&j, CORE_PAGE_BYTES);
    sbuf_cats(&j, "{\"session_id\":");
    sbuf_json_str(&j, id, strlen(id));
    sbuf_cats(&j, ",\"messages\":[");
    sbuf_init(&pg->items, CORE_PAGE_BYTES);
    pg->limit = (size_t)limit;
    pg->bytes_max = CORE_PAGE_BYTES - j.len - 32; /* ],"has_more":false} */
    if (store_messages_page(self->store, id, before, after, (size_t)limit + 1, s_message_cb, pg) !=
        0) {
        reply_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
    } else if (pg->count == 0 && pg->more) {
        reply_error(self, req, 500, "internal", "a message of session '%s' is over the page maximum",
                    id);
    } else {
        /* after: read oldest first; otherwise newest first, written reversed. */
        for (size_t k = 0; k < pg->count; k++) {
            size_t i = after ? k : pg->count - 1 - k;
            size_t start = i ? pg->ends[i - 1] : 0;
            if (k)
                sbuf_cats(&j, ",");
            sbuf_cat(&j, pg->items.data + start, pg->ends[i] - start);
        }
        sbuf_cats(&j, pg->more ? "],\"has_more\":true}" : "],\"has_more\":false}");
        reply_plain(self, req, 200, j.data, j.len);
    }
    sbuf_free(&pg->items);
    mem_free(pg);
    sbuf_free(&j);
    mem_free(id);
}

typedef struct {
    sbuf_t *j;
    size_t count, limit, bytes_max;
    int more;
} s_runpage_t;

static int s_session_run_cb(void *arg, const store_run_t *row)
{
    s_runpage_t *pg = arg;
    if (pg->count == pg->limit) {
        pg->more = 1;
        return 1;
    }
    size_t before = pg->j->len;
    if (pg->count)
        sbuf_cats(pg->j, ",");
    pages_row_json(pg->j, row);
    if (pg->j->overflow || pg->j->len > pg->bytes_max) {
        pg->j->len = before;
        pg->j->overflow = 0;
        pg->more = 1;
        return 1;
    }
    pg->count++;
    return 0;
}

void pages_session_runs(engine_t *self, uint64_t req, const orch_request_t *q)
{
    if (!engine_valid_id(&q->session_id)) {
        reply_error(self, req, 400, "bad_request", "session_id is required");
        return;
    }
    if (q->before.len && !engine_valid_id(&q->before)) {
        reply_error(self, req, 400, "bad_request", "before must be a run_id");
        return;
    }
    char *id = engine_dup(&q->session_id);
    char *before = q->before.len ? engine_dup(&q->before) : NULL;
    uint64_t limit = q->limit ? q->limit : PAGES_RUNS_DEFAULT;
    if (limit > PAGES_RUNS_MAX)
        limit = PAGES_RUNS_MAX;
    sbuf_t j;
    sbuf_init(&j, CORE_PAGE_BYTES);
    sbuf_cats(&j, "{\"session_id\":");
    sbuf_json_str(&j, id, strlen(id));
    sbuf_cats(&j, ",\"runs\":[");
    s_runpage_t pg = {&j, 0, (size_t)limit, CORE_PAGE_BYTES - 32, 0};
    if (store_session_runs(self->store, id, before, (size_t)limit + 1, s_session_run_cb, &pg) != 0) {
        reply_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
    } else {
        sbuf_cats(&j, pg.more ? "],\"has_more\":true}" : "],\"has_more\":false}");
        reply_plain(self, req, 200, j.data, j.len);
    }
    sbuf_free(&j);
    mem_free(before);
    mem_free(id);
}
