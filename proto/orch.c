/* orch: codecs of the orchestrator service's bodies. Same strictness as
 * agent.c: each key known and seen once, values typed and bounded, nothing
 * after the map. Argument strings are bounded by their meaning (ids 128
 * bytes, content by the body maximum the transport enforced). */
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
                                       "follow"};
    mp_reader_t r;
    mp_reader_init(&r, body, len);
    orch_request_t q;
    memset(&q, 0, sizeof q);
    uint32_t n, seen = 0;
    if (mp_read_map(&r, &n))
        return AGENT_E_MALFORMED;
    for (uint32_t i = 0; i < n; i++) {
        agent_err_t err = AGENT_OK;
        int k = agent_read_key(&r, keys, 13, &seen, &err);
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

agent_err_t orch_decode_reply(const void *body, size_t len, unsigned *status, agent_str_t *json)
{
    static const char *const keys[] = {"status", "json"};
    mp_reader_t r;
    mp_reader_init(&r, body, len);
    uint32_t n, seen = 0;
    uint64_t st = 0;
    agent_str_t j = {NULL, 0};
    if (mp_read_map(&r, &n))
        return AGENT_E_MALFORMED;
    for (uint32_t i = 0; i < n; i++) {
        agent_err_t err = AGENT_OK;
        int k = agent_read_key(&r, keys, 2, &seen, &err);
        if (k < 0)
            return err;
        if (k == 0 && mp_read_uint(&r, &st))
            return agent_err_of(&r);
        if (k == 1 && (err = s_str(&r, &j, UINT32_MAX)))
            return err;
    }
    if (seen != 3)
        return AGENT_E_MISSING;
    if (st < 100 || st > 599)
        return AGENT_E_RANGE;
    if (mp_left(&r) != 0)
        return AGENT_E_MALFORMED;
    *status = (unsigned)st;
    *json = j;
    return AGENT_OK;
}

agent_err_t orch_decode_stream(const void *body, size_t len, orch_stream_t *out)
{
    static const char *const keys[] = {"accepted", "run_id", "session_id", "seq",
                                       "type",     "terminal", "event"};
    enum { EVENT_KEYS = 0x7e };
    mp_reader_t r;
    mp_reader_init(&r, body, len);
    orch_stream_t s;
    memset(&s, 0, sizeof s);
    uint32_t n, seen = 0;
    if (mp_read_map(&r, &n))
        return AGENT_E_MALFORMED;
    for (uint32_t i = 0; i < n; i++) {
        agent_err_t err = AGENT_OK;
        int k = agent_read_key(&r, keys, 7, &seen, &err);
        if (k < 0)
            return err;
        switch (k) {
        case 0: err = s_str(&r, &s.json, UINT32_MAX); break;
        case 1: err = s_str(&r, &s.run_id, AGENT_ID_MAX); break;
        case 2: err = s_str(&r, &s.session_id, AGENT_ID_MAX); break;
        case 3:
            if (mp_read_uint(&r, &s.seq))
                err = agent_err_of(&r);
            break;
        case 4: err = s_str(&r, &s.type, 64); break;
        case 5:
            if (mp_read_bool(&r, &s.terminal))
                err = agent_err_of(&r);
            break;
        case 6: err = s_str(&r, &s.json, UINT32_MAX); break;
        }
        if (err)
            return err;
    }
    if (seen == 1) {
        s.accepted = 1;
    } else if (seen != EVENT_KEYS) {
        return (seen & 1) ? AGENT_E_KEY : AGENT_E_MISSING;
    } else if (s.seq == 0 || s.run_id.len == 0) {
        return AGENT_E_RANGE;
    }
    if (mp_left(&r) != 0)
        return AGENT_E_MALFORMED;
    *out = s;
    return AGENT_OK;
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
                                 &q->name,    &q->endpoint};
    static const char *const names[] = {"op",      "session_id", "agent_id", "run_id",
                                        "request_id", "role",    "content",  "if_busy",
                                        "name",    "endpoint"};
    uint32_t n = 0;
    for (int i = 0; i < 10; i++)
        n += strs[i]->len > 0;
    /* content may be empty and still meaningful for invoke */
    int empty_content = q->content.len == 0 && q->role.len > 0;
    n += empty_content + (q->after_seq > 0) + (q->limit > 0) + (q->follow != 0);
    msgpack_pack_map(&b->pk, n);
    for (int i = 0; i < 10; i++)
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
    return b->overflow ? -1 : 0;
}

int orch_encode_reply(mp_buf_t *b, unsigned status, const char *json, size_t len)
{
    msgpack_pack_map(&b->pk, 2);
    mp_pack_kv_int(b, "status", status);
    mp_pack_kv_str(b, "json", json, len);
    return b->overflow ? -1 : 0;
}

int orch_encode_accepted(mp_buf_t *b, const char *json, size_t len)
{
    msgpack_pack_map(&b->pk, 1);
    mp_pack_kv_str(b, "accepted", json, len);
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
