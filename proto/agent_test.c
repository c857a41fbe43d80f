/* agent_test: agent bodies round-trip; every rejection has its reason. */
#include "agent.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

static agent_str_t S(const char *s)
{
    return (agent_str_t){s, (uint32_t)strlen(s)};
}

static agent_err_t s_decode_map(void (*fill)(mp_buf_t *))
{
    mp_buf_t b;
    mp_buf_init(&b, 1 << 16);
    fill(&b);
    agent_invoke_t inv;
    agent_err_t err = agent_decode_invoke(b.data, b.len, &inv);
    mp_buf_free(&b);
    return err;
}

static void s_base(mp_buf_t *b, int n)
{
    msgpack_pack_map(&b->pk, (uint32_t)n);
    mp_pack_kv_cstr(b, "run_id", "r");
    mp_pack_kv_cstr(b, "session_id", "s");
    mp_pack_kv_cstr(b, "agent_id", "a");
    mp_pack_cstr(b, "input");
    msgpack_pack_map(&b->pk, 2);
    mp_pack_kv_cstr(b, "role", "user");
    mp_pack_kv_cstr(b, "content", "hi");
}
static void missing_history(mp_buf_t *b) { s_base(b, 4); }
static void repeated_key(mp_buf_t *b)
{
    s_base(b, 6);
    mp_pack_cstr(b, "history");
    msgpack_pack_array(&b->pk, 0);
    mp_pack_kv_cstr(b, "run_id", "again");
}
static void unknown_key(mp_buf_t *b)
{
    s_base(b, 6);
    mp_pack_cstr(b, "history");
    msgpack_pack_array(&b->pk, 0);
    mp_pack_kv_cstr(b, "colour", "blue");
}
static void history_not_array(mp_buf_t *b)
{
    s_base(b, 5);
    mp_pack_kv_cstr(b, "history", "none");
}
static void history_bad_item(mp_buf_t *b)
{
    s_base(b, 5);
    mp_pack_cstr(b, "history");
    msgpack_pack_array(&b->pk, 1);
    msgpack_pack_map(&b->pk, 1);
    mp_pack_kv_cstr(b, "role", "user"); /* no content */
}
static void empty_run_id(mp_buf_t *b)
{
    msgpack_pack_map(&b->pk, 5);
    mp_pack_kv_cstr(b, "run_id", "");
    mp_pack_kv_cstr(b, "session_id", "s");
    mp_pack_kv_cstr(b, "agent_id", "a");
    mp_pack_cstr(b, "input");
    msgpack_pack_map(&b->pk, 2);
    mp_pack_kv_cstr(b, "role", "user");
    mp_pack_kv_cstr(b, "content", "hi");
    mp_pack_cstr(b, "history");
    msgpack_pack_array(&b->pk, 0);
}
static void timeout_negative(mp_buf_t *b)
{
    s_base(b, 6);
    mp_pack_cstr(b, "history");
    msgpack_pack_array(&b->pk, 0);
    mp_pack_cstr(b, "timeout_ms");
    msgpack_pack_int8(&b->pk, -5);
}
static void trailing(mp_buf_t *b)
{
    s_base(b, 5);
    mp_pack_cstr(b, "history");
    msgpack_pack_array(&b->pk, 0);
    msgpack_pack_nil(&b->pk);
}

/* A base body with a "platform" map of the given keys: token, depth, root,
 * parent (NULL = key left out), plus an extra key when extra != NULL. */
static const char *s_tok, *s_root, *s_parent, *s_extra;
static int64_t s_depth;
static void with_platform(mp_buf_t *b)
{
    s_base(b, 6);
    mp_pack_cstr(b, "history");
    msgpack_pack_array(&b->pk, 0);
    mp_pack_cstr(b, "platform");
    uint32_t n = (s_tok != NULL) + (s_depth >= -1) + (s_root != NULL) + (s_parent != NULL) +
                 (s_extra != NULL);
    msgpack_pack_map(&b->pk, n);
    if (s_tok)
        mp_pack_kv_cstr(b, "token", s_tok);
    if (s_depth >= 0) {
        mp_pack_cstr(b, "depth");
        msgpack_pack_uint64(&b->pk, (uint64_t)s_depth);
    } else if (s_depth == -1) {
        mp_pack_kv_cstr(b, "depth", "1"); /* wrong type */
    }
    if (s_root)
        mp_pack_kv_cstr(b, "root_run_id", s_root);
    if (s_parent)
        mp_pack_kv_cstr(b, "parent_run_id", s_parent);
    if (s_extra)
        mp_pack_kv_cstr(b, s_extra, "x");
}
static agent_err_t s_platform_case(const char *tok, int64_t depth, const char *root,
                                   const char *parent, const char *extra)
{
    s_tok = tok, s_depth = depth, s_root = root, s_parent = parent, s_extra = extra;
    return s_decode_map(with_platform);
}

static void s_platform_tests(void)
{
    const char *tok = "0123456789abcdef0123456789abcdef";
    /* Round trip of a child's platform, and of a client run's (no parent). */
    agent_invoke_t inv = {.run_id = S("run_c"), .session_id = S("s1"), .agent_id = S("echo"),
                          .input = {S("user"), S("hi")},
                          .platform = {S(tok), 2, S("run_root"), S("run_p")}};
    mp_buf_t b;
    mp_buf_init(&b, 1 << 16);
    assert(agent_encode_invoke(&b, &inv, NULL, 0) == 0);
    agent_invoke_t got;
    assert(agent_decode_invoke(b.data, b.len, &got) == AGENT_OK);
    assert(got.platform.token.len == 32 && !memcmp(got.platform.token.ptr, tok, 32));
    assert(got.platform.depth == 2);
    assert(got.platform.root_run_id.len == 8 && !memcmp(got.platform.root_run_id.ptr, "run_root", 8));
    assert(got.platform.parent_run_id.len == 5 && !memcmp(got.platform.parent_run_id.ptr, "run_p", 5));
    for (size_t cut = 0; cut < b.len; cut++)
        assert(agent_decode_invoke(b.data, cut, &got) != AGENT_OK);
    mp_buf_reset(&b);
    inv.platform = (agent_platform_t){S(tok), 0, S("run_c"), {NULL, 0}};
    assert(agent_encode_invoke(&b, &inv, NULL, 0) == 0);
    assert(agent_decode_invoke(b.data, b.len, &got) == AGENT_OK);
    assert(got.platform.depth == 0 && got.platform.parent_run_id.len == 0 &&
           got.platform.token.len == 32);
    /* No token: no map at all, and the decoder reports it absent. */
    mp_buf_reset(&b);
    inv.platform = (agent_platform_t){{NULL, 0}, 0, {NULL, 0}, {NULL, 0}};
    assert(agent_encode_invoke(&b, &inv, NULL, 0) == 0);
    assert(agent_decode_invoke(b.data, b.len, &got) == AGENT_OK && got.platform.token.len == 0);
    assert(memmem(b.data, b.len, "platform", 8) == NULL);
    mp_buf_free(&b);

    assert(s_platform_case(tok, 1, "r0", "r1", NULL) == AGENT_OK);
    assert(s_platform_case(tok, 0, "r0", NULL, NULL) == AGENT_OK);
    assert(s_platform_case(tok, 0, "r0", NULL, "colour") == AGENT_E_KEY);
    assert(s_platform_case(tok, 0, "r0", "r1", NULL) == AGENT_E_KEY);   /* parent at depth 0 */
    assert(s_platform_case(tok, 1, "r0", NULL, NULL) == AGENT_E_MISSING); /* no parent at 1 */
    assert(s_platform_case(NULL, 0, "r0", NULL, NULL) == AGENT_E_MISSING);
    assert(s_platform_case(tok, -2, "r0", NULL, NULL) == AGENT_E_MISSING);
    assert(s_platform_case(tok, 0, NULL, NULL, NULL) == AGENT_E_MISSING);
    assert(s_platform_case(tok, -1, "r0", NULL, NULL) == AGENT_E_FIELD);
    assert(s_platform_case("0123456789ABCDEF0123456789abcdef", 0, "r0", NULL, NULL) == AGENT_E_RANGE);
    assert(s_platform_case("0123456789abcdef", 0, "r0", NULL, NULL) == AGENT_E_RANGE);
    assert(s_platform_case("0123456789abcdef0123456789abcdef0", 0, "r0", NULL, NULL) == AGENT_E_RANGE);
    assert(s_platform_case("0123456789abcdef0123456789abcdeg", 0, "r0", NULL, NULL) == AGENT_E_RANGE);
    assert(s_platform_case(tok, 0, "", NULL, NULL) == AGENT_E_RANGE);
}

int main(void)
{
    s_platform_tests();
    agent_msg_t hist[2] = {{S("user"), S("earlier")}, {S("assistant"), S("answer")}};
    agent_invoke_t inv = {.run_id = S("run_1"), .session_id = S("s1"), .agent_id = S("demo"),
                          .input = {S("user"), S("hello world")},
                          .endpoint = S("http://127.0.0.1:8000"), .timeout_ms = 1500};
    mp_buf_t b;
    mp_buf_init(&b, 1 << 16);
    assert(agent_encode_invoke(&b, &inv, hist, 2) == 0);
    agent_invoke_t got;
    assert(agent_decode_invoke(b.data, b.len, &got) == AGENT_OK);
    assert(got.run_id.len == 5 && !memcmp(got.run_id.ptr, "run_1", 5));
    assert(got.input.content.len == 11 && got.timeout_ms == 1500 && got.history_count == 2);
    assert(got.endpoint.len == 21);
    const uint8_t *cur = got.history;
    agent_msg_t m;
    assert(agent_history_next(&got, &cur, &m) == 0 && m.content.len == 7);
    assert(agent_history_next(&got, &cur, &m) == 0 && m.role.len == 9);
    assert(agent_history_next(&got, &cur, &m) == -1);
    /* Every truncation is refused. */
    for (size_t cut = 0; cut < b.len; cut++)
        assert(agent_decode_invoke(b.data, cut, &got) != AGENT_OK);

    mp_buf_reset(&b);
    assert(agent_encode_delta(&b, " big", 4) == 0);
    agent_str_t d;
    assert(agent_decode_delta(b.data, b.len, &d) == AGENT_OK && d.len == 4 && !memcmp(d.ptr, " big", 4));
    mp_buf_reset(&b);
    assert(agent_encode_done(&b, "assistant", "hello", 5) == 0);
    assert(agent_decode_done(b.data, b.len, &m) == AGENT_OK && m.content.len == 5);
    assert(agent_decode_delta(b.data, b.len, &d) == AGENT_E_KEY); /* a done is not a delta */

    assert(s_decode_map(missing_history) == AGENT_E_MISSING);
    assert(s_decode_map(repeated_key) == AGENT_E_KEY);
    assert(s_decode_map(unknown_key) == AGENT_E_KEY);
    assert(s_decode_map(history_not_array) == AGENT_E_FIELD);
    assert(s_decode_map(history_bad_item) == AGENT_E_MISSING);
    assert(s_decode_map(empty_run_id) == AGENT_E_RANGE);
    assert(s_decode_map(timeout_negative) == AGENT_E_RANGE);
    assert(s_decode_map(trailing) == AGENT_E_MALFORMED);
    assert(agent_decode_invoke("\x01", 1, &got) == AGENT_E_MALFORMED);
    mp_buf_free(&b);
    printf("agent_test: ok\n");
    return 0;
}
