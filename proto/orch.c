/* orch: codecs of the orchestrator service's bodies. Same strictness as
 * agent.c: each key known and seen once, values typed and bounded, nothing
 * after the map. Argument strings are bounded by their meaning (ids 128
 * bytes, content by the body maximum the transport enforced). The typed run
 * fields of replies and accepted bodies (run_id, run_status, session_id)
 * are optional but never empty, and run_status is one of the five run
 * states; an accepted body carries no event key, an event body no
 * run_status. */
#include "orch.h"

#include <string.h>

static agent_err_t s_str(mp_reader_t *r, agent_str_t *s, uint32_t max)
{
    if (mp_read_str(r, &s->ptr, &s->len, max))
        return agent_err_of(r);
    return AGENT_OK;
}

agent_err_t orch_decode_request(const void *body, size_t len, orch_request_t *out)
{
    static const char *const keys[] = {"op",      "session_id", "agent_id", "run_id",
                                       "request_id", "role",    "content",  "if_busy",
                                       "name",    "endpoint",   "after_seq", "limit",
                                       "follow",  "before",     "after",
                                       "token",   "call_id",    "history"};
    mp_reader_t r;
    mp_reader_init(&r, body, len);
    orch_request_t q;
    memset(&q, 0, sizeof q);
    uint32_t n, seen = 0;
    if (mp_read_map(&r, &n))
        return AGENT_E_MALFORMED;
    for (uint32_t i = 0; i < n; i++) {
        agent_err_t err = AGENT_OK;
        int k = agent_read_key(&r, keys, 18, &seen, &err);
        if (k < 0)
            return err;
        switch (k) {
        case 0: err = s_str(&r, &q.op, ORCH_OP_MAX); break;
        case 1: err = s_str(&r, &q.session_id, AGENT_ID_MAX); break;
        case 2: err = s_str(&r, &q.agent_id, AGENT_ID_MAX); break;
        case 3: err = s_str(&r, &q.run_id, AGENT_ID_MAX); break;
        case 4: err = s_str(&r, &q.request_id, AGENT_ID_MAX); break;
        case 5: err = s_str(&r, &q.role, AGENT_ROLE_MAX); break;
        case 6: err = s_str(&r, &q.content, UINT32_MAX); break;
        case 7: err = s_str(&r, &q.if_busy, 16); break;
        case 8: err = s_str(&r, &q.name, 256); break;
        case 9: err = s_str(&r, &q.endpoint, AGENT_ENDPOINT_MAX); break;
        case 10:
            if (mp_read_uint(&r, &q.after_seq))
                err = agent_err_of(&r);
            break;
        case 11:
            if (mp_read_uint(&r, &q.limit))
                err = agent_err_of(&r);
            break;
        case 12:
            if (mp_read_bool(&r, &q.follow))
                err = agent_err_of(&r);
            break;
        case 13: err = s_str(&r, &q.before, AGENT_ID_MAX); break;
        case 14: err = s_str(&r, &q.after, AGENT_ID_MAX); break;
        case 15: err = s_str(&r, &q.token, 64); break;
        case 16: err = s_str(&r, &q.call_id, AGENT_ID_MAX); break;
        case 17: err = agent_read_msgs(&r, &q.history_count, &q.history, &q.history_end); break;
        }
        if (err)
            return err;
    }
    if (!(seen & 1))
        return AGENT_E_MISSING;
    if (q.op.len == 0)
        return AGENT_E_RANGE;
    if (mp_left(&r) != 0)
        return AGENT_E_MALFORMED;
    *out = q;
    return AGENT_OK;
}

int orch_run_status_valid(const agent_str_t *s)
{
    static const char *const names[] = {"queued", "running", "done", "failed", "cancelled"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (s->len == strlen(names[i]) && memcmp(s->ptr, names[i], s->len) == 0)
            return 1;
    return 0;
}

/* The typed run fields both answers may carry: empty is not a value. */
static agent_err_t s_run_field(mp_reader_t *r, agent_str_t *s, int status)
{
    agent_err_t err = s_str(r, s, AGENT_ID_MAX);
    if (err)
        return err;
    if (s->len == 0 || (status && !orch_run_status_valid(s)))
        return AGENT_E_RANGE;
    return AGENT_OK;
}

agent_err_t orch_decode_reply(const void *body, size_t len, orch_reply_t *out)
{
    static const char *const keys[] = {"status", "json", "run_id", "run_status", "session_id"};
    mp_reader_t r;
    mp_reader_init(&r, body, len);
    uint32_t n, seen = 0;
    uint64_t st = 0;
    orch_reply_t rep;
    memset(&rep, 0, sizeof rep);
    if (mp_read_map(&r, &n))
        return AGENT_E_MALFORMED;
    for (uint32_t i = 0; i < n; i++) {
        agent_err_t err = AGENT_OK;
        int k = agent_read_key(&r, keys, 5, &seen, &err);
        if (k < 0)
            return err;
        switch (k) {
        case 0:
            if (mp_read_uint(&r, &st))
                err = agent_err_of(&r);
            break;
        case 1: err = s_str(&r, &rep.json, UINT32_MAX); break;
        case 2: err = s_run_field(&r, &rep.run_id, 0); break;
        case 3: err = s_run_field(&r, &rep.run_status, 1); break;
        case 4: err = s_run_field(&r, &rep.session_id, 0); break;
        }
        if (err)
            return err;
    }
    if ((seen & 3) != 3)
        return AGENT_E_MISSING;
    if (st < 100 || st > 599)
        return AGENT_E_RANGE;
    if (mp_left(&r) != 0)
        return AGENT_E_MALFORMED;
    rep.status = (unsigned)st;
    *out = rep;
    return AGENT_OK;
}

/* One STREAM map (an accepted body or one event) from r; nested: inside a
 * batch, where only event maps are allowed. */
static agent_err_t s_stream_map(mp_reader_t *r, orch_stream_t *out, int nested)
{
    static const char *const keys[] = {"accepted", "run_id",   "session_id", "seq",
                                       "type",     "terminal", "event",      "run_status"};
    enum { EVENT_KEYS = 0x7e, ACCEPTED_KEYS = 0x87 /* accepted, run_id, session_id, run_status */ };
    orch_stream_t s;
    memset(&s, 0, sizeof s);
    uint32_t n, seen = 0;
    if (mp_read_map(r, &n))
        return AGENT_E_MALFORMED;
    for (uint32_t i = 0; i < n; i++) {
        agent_err_t err = AGENT_OK;
        int k = agent_read_key(r, keys, 8, &seen, &err);
        if (k < 0)
            return err;
        switch (k) {
        case 0: err = s_str(r, &s.json, UINT32_MAX); break;
        case 1: err = s_run_field(r, &s.run_id, 0); break;
        case 2: err = s_run_field(r, &s.session_id, 0); break;
        case 3:
            if (mp_read_uint(r, &s.seq))
                err = agent_err_of(r);
            break;
        case 4: err = s_str(r, &s.type, 64); break;
        case 5:
            if (mp_read_bool(r, &s.terminal))
                err = agent_err_of(r);
            break;
        case 6: err = s_str(r, &s.json, UINT32_MAX); break;
        case 7: err = s_run_field(r, &s.run_status, 1); break;
        }
        if (err)
            return err;
    }
    if (seen & 1) {
        if (nested || (seen & ~(uint32_t)ACCEPTED_KEYS))
            return AGENT_E_KEY; /* an accepted body with event keys, or in a batch */
        s.accepted = 1;
    } else if (seen & 0x80) {
        return AGENT_E_KEY; /* run_status belongs to accepted bodies */
    } else if (seen != EVENT_KEYS) {
        return AGENT_E_MISSING;
    } else if (s.seq == 0) {
        return AGENT_E_RANGE;
    }
    *out = s;
    return AGENT_OK;
}

/* {"events": [event map, ...]}: every element is checked here, so
 * orch_batch_next only walks what is known good. */
static agent_err_t s_stream_batch(mp_reader_t *r, orch_stream_t *out)
{
    static const char *const keys[] = {"events"};
    uint32_t n, seen = 0, count;
    agent_err_t err = AGENT_OK;
    if (mp_read_map(r, &n) || n != 1)
        return AGENT_E_MALFORMED;
    if (agent_read_key(r, keys, 1, &seen, &err) < 0)
        return err;
    if (mp_read_array(r, &count))
        return agent_err_of(r);
    if (count == 0 || count > ORCH_BATCH_MAX)
        return AGENT_E_RANGE;
    const uint8_t *start = r->p;
    for (uint32_t i = 0; i < count; i++) {
        orch_stream_t ev;
        if ((err = s_stream_map(r, &ev, 1)) != AGENT_OK)
            return err;
    }
    memset(out, 0, sizeof *out);
    out->batch = count;
    out->events = start;
    out->events_end = r->p;
    return AGENT_OK;
}

agent_err_t orch_decode_stream(const void *body, size_t len, orch_stream_t *out)
{
    mp_reader_t r;
    mp_reader_init(&r, body, len);
    /* A batch's map has one key, "events" (fixstr 6): look before reading. */
    static const uint8_t batch_head[] = {0x81, 0xa6, 'e', 'v', 'e', 'n', 't', 's'};
    int batch = len >= sizeof batch_head && memcmp(body, batch_head, sizeof batch_head) == 0;
    orch_stream_t s;
    agent_err_t err = batch ? s_stream_batch(&r, &s) : s_stream_map(&r, &s, 0);
    if (err)
        return err;
    if (mp_left(&r) != 0)
        return AGENT_E_MALFORMED;
    *out = s;
    return AGENT_OK;
}

int orch_batch_next(orch_stream_t *batch, orch_stream_t *ev)
{
    if (!batch->events || batch->events >= batch->events_end)
        return 0;
    mp_reader_t r;
    mp_reader_init(&r, batch->events, (size_t)(batch->events_end - batch->events));
    if (s_stream_map(&r, ev, 1) != AGENT_OK) {
        batch->events = batch->events_end; /* not reached: decode checked them */
        return 0;
    }
    batch->events = r.p;
    return 1;
}

static void s_kv(mp_buf_t *b, const char *key, const agent_str_t *v)
{
    if (v->len)
        mp_pack_kv_str(b, key, v->ptr, v->len);
}

int orch_encode_request(mp_buf_t *b, const orch_request_t *q)
{
    const agent_str_t *strs[] = {&q->op,      &q->session_id, &q->agent_id, &q->run_id,
                                 &q->request_id, &q->role,    &q->content,  &q->if_busy,
                                 &q->name,    &q->endpoint,   &q->before,   &q->after,
                                 &q->token,   &q->call_id};
    static const char *const names[] = {"op",      "session_id", "agent_id", "run_id",
                                        "request_id", "role",    "content",  "if_busy",
                                        "name",    "endpoint",   "before",   "after",
                                        "token",   "call_id"};
    enum { NSTRS = sizeof names / sizeof *names };
    uint32_t n = 0;
    for (int i = 0; i < NSTRS; i++)
        n += strs[i]->len > 0;
    /* content may be empty and still meaningful for invoke */
    int empty_content = q->content.len == 0 && q->role.len > 0;
    n += empty_content + (q->after_seq > 0) + (q->limit > 0) + (q->follow != 0) +
         (q->history != NULL);
    msgpack_pack_map(&b->pk, n);
    for (int i = 0; i < NSTRS; i++)
        s_kv(b, names[i], strs[i]);
    if (empty_content)
        mp_pack_kv_str(b, "content", "", 0);
    if (q->after_seq) {
        mp_pack_cstr(b, "after_seq");
        msgpack_pack_uint64(&b->pk, q->after_seq);
    }
    if (q->limit) {
        mp_pack_cstr(b, "limit");
        msgpack_pack_uint64(&b->pk, q->limit);
    }
    if (q->follow) {
        mp_pack_cstr(b, "follow");
        msgpack_pack_true(&b->pk);
    }
    if (q->history) {
        mp_pack_cstr(b, "history");
        msgpack_pack_array(&b->pk, q->history_count);
        if (q->history_end > q->history)
            msgpack_pack_str_body(&b->pk, q->history, (size_t)(q->history_end - q->history));
    }
    return b->overflow ? -1 : 0;
}

int orch_encode_msgs(mp_buf_t *b, const agent_msg_t *msgs, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        msgpack_pack_map(&b->pk, 2);
        mp_pack_kv_str(b, "role", msgs[i].role.ptr, msgs[i].role.len);
        mp_pack_kv_str(b, "content", msgs[i].content.ptr, msgs[i].content.len);
    }
    return b->overflow ? -1 : 0;
}

int orch_encode_reply(mp_buf_t *b, const orch_reply_t *r)
{
    uint32_t n = 2 + (r->run_id.len > 0) + (r->run_status.len > 0) + (r->session_id.len > 0);
    msgpack_pack_map(&b->pk, n);
    mp_pack_kv_int(b, "status", r->status);
    mp_pack_kv_str(b, "json", r->json.ptr, r->json.len);
    s_kv(b, "run_id", &r->run_id);
    s_kv(b, "run_status", &r->run_status);
    s_kv(b, "session_id", &r->session_id);
    return b->overflow ? -1 : 0;
}

int orch_encode_accepted(mp_buf_t *b, const orch_stream_t *acc)
{
    uint32_t n = 1 + (acc->run_id.len > 0) + (acc->run_status.len > 0) + (acc->session_id.len > 0);
    msgpack_pack_map(&b->pk, n);
    mp_pack_kv_str(b, "accepted", acc->json.ptr, acc->json.len);
    s_kv(b, "run_id", &acc->run_id);
    s_kv(b, "run_status", &acc->run_status);
    s_kv(b, "session_id", &acc->session_id);
    return b->overflow ? -1 : 0;
}

int orch_encode_event(mp_buf_t *b, const orch_stream_t *ev)
{
    msgpack_pack_map(&b->pk, 6);
    mp_pack_kv_str(b, "run_id", ev->run_id.ptr, ev->run_id.len);
    mp_pack_kv_str(b, "session_id", ev->session_id.ptr, ev->session_id.len);
    mp_pack_cstr(b, "seq");
    msgpack_pack_uint64(&b->pk, ev->seq);
    mp_pack_kv_str(b, "type", ev->type.ptr, ev->type.len);
    mp_pack_cstr(b, "terminal");
    if (ev->terminal)
        msgpack_pack_true(&b->pk);
    else
        msgpack_pack_false(&b->pk);
    mp_pack_kv_str(b, "event", ev->json.ptr, ev->json.len);
    return b->overflow ? -1 : 0;
}

/* The header has a fixed size (array32), so the count is written at the
 * end without moving the events. */
#define S_BATCH_HEAD 13
static const uint8_t s_batch_head[S_BATCH_HEAD] = {0x81, 0xa6, 'e', 'v', 'e', 'n', 't', 's',
                                                   0xdd, 0, 0, 0, 0};

int orch_batch_begin(mp_buf_t *b)
{
    mp_buf_reset(b);
    msgpack_pack_str_body(&b->pk, s_batch_head, S_BATCH_HEAD);
    return b->overflow ? -1 : 0;
}

int orch_batch_add(mp_buf_t *b, const void *event_body, size_t len)
{
    if (b->overflow || len > b->max - b->len)
        return -1;
    msgpack_pack_str_body(&b->pk, event_body, len);
    return b->overflow ? -1 : 0;
}

int orch_batch_end(mp_buf_t *b, uint32_t count)
{
    if (b->overflow || b->len < S_BATCH_HEAD || count == 0 || count > ORCH_BATCH_MAX)
        return -1;
    b->data[9] = (uint8_t)(count >> 24);
    b->data[10] = (uint8_t)(count >> 16);
    b->data[11] = (uint8_t)(count >> 8);
    b->data[12] = (uint8_t)count;
    return 0;
}

size_t orch_batch_overhead(void)
{
    return S_BATCH_HEAD;
}
