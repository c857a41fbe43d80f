/* agent: codecs of the agent bodies. Maps are read key by key; a bitmask of
 * keys seen rejects repeats and finds missing required keys. History is not
 * copied or counted into an allocation: the decoder validates every entry
 * once and leaves a cursor, so a peer's count never sizes an allocation.
 * The "platform" map is as strict as the body: its keys known and once,
 * the token exactly 32 lowercase hex digits, parent_run_id present exactly
 * when depth >= 1. */
#include "agent.h"

#include <string.h>

const char *agent_strerror(agent_err_t err)
{
    switch (err) {
    case AGENT_OK: return "ok";
    case AGENT_E_MALFORMED: return "malformed";
    case AGENT_E_KEY: return "unknown or repeated key";
    case AGENT_E_MISSING: return "missing key";
    case AGENT_E_FIELD: return "wrong field type";
    case AGENT_E_RANGE: return "field out of range";
    }
    return "unknown";
}

agent_err_t agent_err_of(const mp_reader_t *r)
{
    switch (r->err) {
    case MP_TYPE: return AGENT_E_FIELD;
    case MP_RANGE: return AGENT_E_RANGE;
    default: return AGENT_E_MALFORMED;
    }
}

int agent_read_key(mp_reader_t *r, const char *const *keys, int nkeys, uint32_t *seen,
                   agent_err_t *err)
{
    const char *k;
    uint32_t klen;
    if (mp_read_str(r, &k, &klen, 32)) {
        *err = r->err == MP_RANGE ? AGENT_E_KEY : agent_err_of(r);
        return -1;
    }
    for (int i = 0; i < nkeys; i++) {
        if (strlen(keys[i]) == klen && memcmp(keys[i], k, klen) == 0) {
            if (*seen & (1u << i)) {
                *err = AGENT_E_KEY;
                return -1;
            }
            *seen |= 1u << i;
            return i;
        }
    }
    *err = AGENT_E_KEY;
    return -1;
}

static agent_err_t s_str(mp_reader_t *r, agent_str_t *s, uint32_t max, int nonempty)
{
    if (mp_read_str(r, &s->ptr, &s->len, max))
        return agent_err_of(r);
    if (nonempty && s->len == 0)
        return AGENT_E_RANGE;
    return AGENT_OK;
}

/* {"role": str, "content": str} */
static agent_err_t s_msg(mp_reader_t *r, agent_msg_t *m)
{
    static const char *const keys[] = {"role", "content"};
    uint32_t n, seen = 0;
    if (mp_read_map(r, &n))
        return agent_err_of(r);
    for (uint32_t i = 0; i < n; i++) {
        agent_err_t err = AGENT_OK;
        int k = agent_read_key(r, keys, 2, &seen, &err);
        if (k < 0)
            return err;
        err = k == 0 ? s_str(r, &m->role, AGENT_ROLE_MAX, 1)
                     : s_str(r, &m->content, UINT32_MAX, 0);
        if (err)
            return err;
    }
    return seen == 3 ? AGENT_OK : AGENT_E_MISSING;
}

static int s_is_token(const agent_str_t *t)
{
    if (t->len != AGENT_TOKEN_LEN)
        return 0;
    for (uint32_t i = 0; i < t->len; i++) {
        char c = t->ptr[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return 1;
}

/* {"token", "depth", "root_run_id", "parent_run_id" (depth >= 1)} */
static agent_err_t s_platform(mp_reader_t *r, agent_platform_t *p)
{
    static const char *const keys[] = {"token", "depth", "root_run_id", "parent_run_id"};
    enum { REQUIRED = 0x7 };
    uint32_t n, seen = 0;
    memset(p, 0, sizeof *p);
    if (mp_read_map(r, &n))
        return agent_err_of(r);
    for (uint32_t i = 0; i < n; i++) {
        agent_err_t err = AGENT_OK;
        int k = agent_read_key(r, keys, 4, &seen, &err);
        if (k < 0)
            return err;
        switch (k) {
        case 0:
            err = s_str(r, &p->token, AGENT_TOKEN_LEN, 1);
            if (!err && !s_is_token(&p->token))
                err = AGENT_E_RANGE;
            break;
        case 1:
            if (mp_read_uint(r, &p->depth))
                err = agent_err_of(r);
            break;
        case 2: err = s_str(r, &p->root_run_id, AGENT_ID_MAX, 1); break;
        case 3: err = s_str(r, &p->parent_run_id, AGENT_ID_MAX, 1); break;
        }
        if (err)
            return err;
    }
    if ((seen & REQUIRED) != REQUIRED)
        return AGENT_E_MISSING;
    int has_parent = (seen & 0x8) != 0;
    if (p->depth >= 1 && !has_parent)
        return AGENT_E_MISSING;
    if (p->depth == 0 && has_parent)
        return AGENT_E_KEY;
    return AGENT_OK;
}

agent_err_t agent_decode_invoke(const void *body, size_t len, agent_invoke_t *out)
{
    static const char *const keys[] = {"run_id", "session_id", "agent_id", "input",
                                       "history", "endpoint", "timeout_ms", "platform"};
    enum { REQUIRED = 0x1f };
    mp_reader_t r;
    mp_reader_init(&r, body, len);
    agent_invoke_t inv;
    memset(&inv, 0, sizeof inv);
    uint32_t n, seen = 0;
    if (mp_read_map(&r, &n))
        return AGENT_E_MALFORMED;
    for (uint32_t i = 0; i < n; i++) {
        agent_err_t err = AGENT_OK;
        int k = agent_read_key(&r, keys, 8, &seen, &err);
        if (k < 0)
            return err;
        switch (k) {
        case 0: err = s_str(&r, &inv.run_id, AGENT_ID_MAX, 1); break;
        case 1: err = s_str(&r, &inv.session_id, AGENT_ID_MAX, 1); break;
        case 2: err = s_str(&r, &inv.agent_id, AGENT_ID_MAX, 1); break;
        case 3: err = s_msg(&r, &inv.input); break;
        case 4: err = agent_read_msgs(&r, &inv.history_count, &inv.history, &inv.history_end); break;
        case 5: err = s_str(&r, &inv.endpoint, AGENT_ENDPOINT_MAX, 1); break;
        case 6:
            if (mp_read_uint(&r, &inv.timeout_ms))
                err = agent_err_of(&r);
            break;
        case 7: err = s_platform(&r, &inv.platform); break;
        }
        if (err)
            return err;
    }
    if ((seen & REQUIRED) != REQUIRED)
        return AGENT_E_MISSING;
    if (mp_left(&r) != 0)
        return AGENT_E_MALFORMED;
    *out = inv;
    return AGENT_OK;
}

agent_err_t agent_read_msgs(mp_reader_t *r, uint32_t *count, const uint8_t **start,
                            const uint8_t **end)
{
    uint32_t n;
    if (mp_read_array(r, &n))
        return agent_err_of(r);
    if (n > AGENT_HISTORY_MAX)
        return AGENT_E_RANGE;
    *count = n;
    *start = r->p;
    for (uint32_t j = 0; j < n; j++) {
        agent_msg_t m;
        agent_err_t err = s_msg(r, &m);
        if (err)
            return err;
    }
    *end = r->p;
    return AGENT_OK;
}

int agent_msgs_next(const uint8_t **cursor, const uint8_t *end, agent_msg_t *msg)
{
    if (!*cursor || *cursor >= end)
        return -1;
    mp_reader_t r;
    mp_reader_init(&r, *cursor, (size_t)(end - *cursor));
    if (s_msg(&r, msg) != AGENT_OK) /* validated by the decoder: cannot fail */
        return -1;
    *cursor = r.p;
    return 0;
}

int agent_history_next(const agent_invoke_t *inv, const uint8_t **cursor, agent_msg_t *msg)
{
    return agent_msgs_next(cursor, inv->history_end, msg);
}

agent_err_t agent_decode_delta(const void *body, size_t len, agent_str_t *delta)
{
    static const char *const keys[] = {"delta"};
    mp_reader_t r;
    mp_reader_init(&r, body, len);
    uint32_t n, seen = 0;
    agent_str_t d = {NULL, 0};
    if (mp_read_map(&r, &n))
        return AGENT_E_MALFORMED;
    for (uint32_t i = 0; i < n; i++) {
        agent_err_t err = AGENT_OK;
        if (agent_read_key(&r, keys, 1, &seen, &err) < 0)
            return err;
        if ((err = s_str(&r, &d, UINT32_MAX, 0)))
            return err;
    }
    if (seen != 1)
        return AGENT_E_MISSING;
    if (mp_left(&r) != 0)
        return AGENT_E_MALFORMED;
    *delta = d;
    return AGENT_OK;
}

agent_err_t agent_decode_done(const void *body, size_t len, agent_msg_t *output)
{
    static const char *const keys[] = {"output"};
    mp_reader_t r;
    mp_reader_init(&r, body, len);
    uint32_t n, seen = 0;
    agent_msg_t m;
    memset(&m, 0, sizeof m);
    if (mp_read_map(&r, &n))
        return AGENT_E_MALFORMED;
    for (uint32_t i = 0; i < n; i++) {
        agent_err_t err = AGENT_OK;
        if (agent_read_key(&r, keys, 1, &seen, &err) < 0)
            return err;
        if ((err = s_msg(&r, &m)))
            return err;
    }
    if (seen != 1)
        return AGENT_E_MISSING;
    if (mp_left(&r) != 0)
        return AGENT_E_MALFORMED;
    *output = m;
    return AGENT_OK;
}

static void s_pack_msg(mp_buf_t *b, const agent_msg_t *m)
{
    msgpack_pack_map(&b->pk, 2);
    mp_pack_kv_str(b, "role", m->role.ptr, m->role.len);
    mp_pack_kv_str(b, "content", m->content.ptr, m->content.len);
}

int agent_encode_invoke(mp_buf_t *b, const agent_invoke_t *inv, const agent_msg_t *history,
                        uint32_t history_count)
{
    const agent_platform_t *p = &inv->platform;
    int extra = (inv->endpoint.len > 0) + (inv->timeout_ms > 0) + (p->token.len > 0);
    msgpack_pack_map(&b->pk, 5 + extra);
    mp_pack_kv_str(b, "run_id", inv->run_id.ptr, inv->run_id.len);
    mp_pack_kv_str(b, "session_id", inv->session_id.ptr, inv->session_id.len);
    mp_pack_kv_str(b, "agent_id", inv->agent_id.ptr, inv->agent_id.len);
    mp_pack_cstr(b, "input");
    s_pack_msg(b, &inv->input);
    mp_pack_cstr(b, "history");
    msgpack_pack_array(&b->pk, history_count);
    for (uint32_t i = 0; i < history_count; i++)
        s_pack_msg(b, &history[i]);
    if (inv->endpoint.len)
        mp_pack_kv_str(b, "endpoint", inv->endpoint.ptr, inv->endpoint.len);
    if (inv->timeout_ms) {
        mp_pack_cstr(b, "timeout_ms");
        msgpack_pack_uint64(&b->pk, inv->timeout_ms);
    }
    if (p->token.len) {
        int parent = p->depth >= 1;
        mp_pack_cstr(b, "platform");
        msgpack_pack_map(&b->pk, 3 + (uint32_t)parent);
        mp_pack_kv_str(b, "token", p->token.ptr, p->token.len);
        mp_pack_cstr(b, "depth");
        msgpack_pack_uint64(&b->pk, p->depth);
        mp_pack_kv_str(b, "root_run_id", p->root_run_id.ptr, p->root_run_id.len);
        if (parent)
            mp_pack_kv_str(b, "parent_run_id", p->parent_run_id.ptr, p->parent_run_id.len);
    }
    return b->overflow ? -1 : 0;
}

int agent_encode_delta(mp_buf_t *b, const char *delta, size_t len)
{
    msgpack_pack_map(&b->pk, 1);
    mp_pack_kv_str(b, "delta", delta, len);
    return b->overflow ? -1 : 0;
}

int agent_encode_done(mp_buf_t *b, const char *role, const char *content, size_t len)
{
    msgpack_pack_map(&b->pk, 1);
    mp_pack_cstr(b, "output");
    msgpack_pack_map(&b->pk, 2);
    mp_pack_kv_cstr(b, "role", role);
    mp_pack_kv_str(b, "content", content, len);
    return b->overflow ? -1 : 0;
}
