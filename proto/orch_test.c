/* orch_test: every orchestrator body round-trips through its encoder and
 * decoder, and every rejection has its reason (the exact agent_err_t). */
#include "orch.h"

#include "id.h"
#include "tests/support/check.h"

#include <string.h>

static agent_str_t S(const char *s)
{
    return (agent_str_t){s, (uint32_t)strlen(s)};
}

static int s_eq(agent_str_t a, const char *s)
{
    return a.len == strlen(s) && (a.len == 0 || memcmp(a.ptr, s, a.len) == 0);
}

static void test_request_round_trip(void)
{
    orch_request_t q = {.op = S("messages"), .session_id = S("s1"), .agent_id = S("echo"),
                        .run_id = S("run_1"), .request_id = S("c1"), .role = S("user"),
                        .content = S("hello"), .if_busy = S("reject"), .name = S("N"),
                        .endpoint = S("http://x"), .before = S("12"), .after = S("3"),
                        .after_seq = 7, .limit = 50, .follow = 1};
    mp_buf_t b;
    mp_buf_init(&b, 1 << 16);
    CHECK(orch_encode_request(&b, &q) == 0);
    orch_request_t r;
    CHECK(orch_decode_request(b.data, b.len, &r) == AGENT_OK);
    CHECK(s_eq(r.op, "messages") && s_eq(r.session_id, "s1") && s_eq(r.agent_id, "echo"));
    CHECK(s_eq(r.run_id, "run_1") && s_eq(r.request_id, "c1") && s_eq(r.role, "user"));
    CHECK(s_eq(r.content, "hello") && s_eq(r.if_busy, "reject") && s_eq(r.name, "N"));
    CHECK(s_eq(r.endpoint, "http://x") && s_eq(r.before, "12") && s_eq(r.after, "3"));
    CHECK(r.after_seq == 7 && r.limit == 50 && r.follow == 1);
    /* Only op: everything else absent. */
    mp_buf_reset(&b);
    orch_request_t only = {.op = S("health")};
    CHECK(orch_encode_request(&b, &only) == 0);
    CHECK(orch_decode_request(b.data, b.len, &r) == AGENT_OK);
    CHECK(s_eq(r.op, "health") && r.before.len == 0 && r.after.len == 0 && r.limit == 0);
    /* An empty content with a role is kept (invoke of ""). */
    mp_buf_reset(&b);
    orch_request_t empty = {.op = S("invoke"), .role = S("user")};
    CHECK(orch_encode_request(&b, &empty) == 0);
    CHECK(orch_decode_request(b.data, b.len, &r) == AGENT_OK && r.content.ptr && r.content.len == 0);
    mp_buf_free(&b);
}

static agent_err_t s_request(const char *const *kv, int extra_trailing);

/* op call: token, call_id and a history round-trip; a bad history entry is
 * refused with its reason. */
static void test_call_request(void)
{
    mp_buf_t h, b;
    mp_buf_init(&h, 1 << 16);
    mp_buf_init(&b, 1 << 16);
    agent_msg_t msgs[2] = {{S("user"), S("earlier")}, {S("assistant"), S("said")}};
    CHECK(orch_encode_msgs(&h, msgs, 2) == 0);
    orch_request_t q = {.op = S("call"), .run_id = S("run_p"), .agent_id = S("echo"),
                        .token = S("0123456789abcdef0123456789abcdef"), .call_id = S("c1"),
                        .role = S("user"), .content = S("hi"), .history_count = 2,
                        .history = h.data, .history_end = h.data + h.len};
    CHECK(orch_encode_request(&b, &q) == 0);
    orch_request_t r;
    CHECK(orch_decode_request(b.data, b.len, &r) == AGENT_OK);
    CHECK(s_eq(r.token, "0123456789abcdef0123456789abcdef") && s_eq(r.call_id, "c1"));
    CHECK(r.history_count == 2 && r.history != NULL);
    const uint8_t *cur = r.history;
    agent_msg_t m;
    CHECK(agent_msgs_next(&cur, r.history_end, &m) == 0 && s_eq(m.content, "earlier"));
    CHECK(agent_msgs_next(&cur, r.history_end, &m) == 0 && s_eq(m.role, "assistant"));
    CHECK(agent_msgs_next(&cur, r.history_end, &m) == -1);
    for (size_t cut = 0; cut < b.len; cut++)
        CHECK(orch_decode_request(b.data, cut, &r) != AGENT_OK);
    /* An empty history is a history of none; no history is absent. */
    mp_buf_reset(&b);
    q.history_count = 0;
    q.history_end = q.history;
    CHECK(orch_encode_request(&b, &q) == 0);
    CHECK(orch_decode_request(b.data, b.len, &r) == AGENT_OK && r.history_count == 0);
    mp_buf_reset(&b);
    q.history = q.history_end = NULL;
    CHECK(orch_encode_request(&b, &q) == 0);
    CHECK(orch_decode_request(b.data, b.len, &r) == AGENT_OK && r.history == NULL);
    /* A history entry without content; a history that is not an array. */
    mp_buf_reset(&b);
    msgpack_pack_map(&b.pk, 2);
    mp_pack_kv_cstr(&b, "op", "call");
    mp_pack_cstr(&b, "history");
    msgpack_pack_array(&b.pk, 1);
    msgpack_pack_map(&b.pk, 1);
    mp_pack_kv_cstr(&b, "role", "user");
    CHECK(orch_decode_request(b.data, b.len, &r) == AGENT_E_MISSING);
    mp_buf_reset(&b);
    msgpack_pack_map(&b.pk, 2);
    mp_pack_kv_cstr(&b, "op", "call");
    mp_pack_kv_cstr(&b, "history", "none");
    CHECK(orch_decode_request(b.data, b.len, &r) == AGENT_E_FIELD);
    char tok[80];
    memset(tok, 'a', sizeof tok - 1);
    tok[sizeof tok - 1] = '\0';
    mp_buf_free(&h);
    mp_buf_free(&b);
    CHECK(s_request((const char *[]){"op", "call", "token", tok, NULL}, 0) == AGENT_E_RANGE);
}

/* Packs a map from key/value string pairs (NULL ends), then extra raw. */
static agent_err_t s_request(const char *const *kv, int extra_trailing)
{
    mp_buf_t b;
    mp_buf_init(&b, 1 << 16);
    uint32_t n = 0;
    while (kv[2 * n])
        n++;
    msgpack_pack_map(&b.pk, n);
    for (uint32_t i = 0; i < n; i++)
        mp_pack_kv_cstr(&b, kv[2 * i], kv[2 * i + 1]);
    if (extra_trailing)
        msgpack_pack_nil(&b.pk);
    orch_request_t q;
    agent_err_t err = orch_decode_request(b.data, b.len, &q);
    mp_buf_free(&b);
    return err;
}

static void test_request_errors(void)
{
    CHECK(orch_decode_request("\x01", 1, &(orch_request_t){0}) == AGENT_E_MALFORMED);
    CHECK(s_request((const char *[]){"op", "run", NULL}, 1) == AGENT_E_MALFORMED);
    CHECK(s_request((const char *[]){"op", "run", "nope", "x", NULL}, 0) == AGENT_E_KEY);
    CHECK(s_request((const char *[]){"op", "run", "op", "run", NULL}, 0) == AGENT_E_KEY);
    CHECK(s_request((const char *[]){"run_id", "r", NULL}, 0) == AGENT_E_MISSING);
    CHECK(s_request((const char *[]){"op", "", NULL}, 0) == AGENT_E_RANGE);
    CHECK(s_request((const char *[]){"op", "a_very_long_operation_name", NULL}, 0) == AGENT_E_RANGE);
    char id[200];
    memset(id, 'x', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    CHECK(s_request((const char *[]){"op", "messages", "before", id, NULL}, 0) == AGENT_E_RANGE);
    /* A string where a number goes. */
    CHECK(s_request((const char *[]){"op", "events", "limit", "10", NULL}, 0) == AGENT_E_FIELD);
    CHECK(s_request((const char *[]){"op", "events", "follow", "yes", NULL}, 0) == AGENT_E_FIELD);
}

static void test_reply_round_trip(void)
{
    mp_buf_t b;
    mp_buf_init(&b, 1 << 16);
    orch_reply_t in = {.status = 200, .json = S("{\"run_id\":\"run_1\"}"), .run_id = S("run_1"),
                       .run_status = S("running"), .session_id = S("s1")};
    CHECK(orch_encode_reply(&b, &in) == 0);
    orch_reply_t out;
    CHECK(orch_decode_reply(b.data, b.len, &out) == AGENT_OK);
    CHECK(out.status == 200 && s_eq(out.json, "{\"run_id\":\"run_1\"}"));
    CHECK(s_eq(out.run_id, "run_1") && s_eq(out.run_status, "running") && s_eq(out.session_id, "s1"));
    /* An answer about no run: the typed fields stay out. */
    mp_buf_reset(&b);
    orch_reply_t plain = {.status = 404, .json = S("{}")};
    CHECK(orch_encode_reply(&b, &plain) == 0);
    CHECK(orch_decode_reply(b.data, b.len, &out) == AGENT_OK);
    CHECK(out.status == 404 && out.run_id.len == 0 && out.run_status.len == 0 &&
          out.session_id.len == 0);
    /* Every status a run can have passes. */
    const char *names[] = {"queued", "running", "done", "failed", "cancelled"};
    for (int i = 0; i < 5; i++) {
        mp_buf_reset(&b);
        orch_reply_t r = {.status = 200, .json = S("{}"), .run_id = S("r"), .run_status = S(names[i])};
        CHECK(orch_encode_reply(&b, &r) == 0);
        CHECK(orch_decode_reply(b.data, b.len, &out) == AGENT_OK && s_eq(out.run_status, names[i]));
    }
    mp_buf_free(&b);
}

static agent_err_t s_reply(uint64_t status, const char *const *kv, int with_status, int trailing)
{
    mp_buf_t b;
    mp_buf_init(&b, 1 << 16);
    uint32_t n = 0;
    while (kv[2 * n])
        n++;
    msgpack_pack_map(&b.pk, n + (with_status != 0));
    if (with_status == 1)
        mp_pack_kv_int(&b, "status", (int64_t)status);
    if (with_status == 2)
        mp_pack_kv_cstr(&b, "status", "200");
    for (uint32_t i = 0; i < n; i++)
        mp_pack_kv_cstr(&b, kv[2 * i], kv[2 * i + 1]);
    if (trailing)
        msgpack_pack_nil(&b.pk);
    orch_reply_t r;
    agent_err_t err = orch_decode_reply(b.data, b.len, &r);
    mp_buf_free(&b);
    return err;
}

static void test_reply_errors(void)
{
    CHECK(orch_decode_reply("\xc0", 1, &(orch_reply_t){0}) == AGENT_E_MALFORMED);
    CHECK(s_reply(200, (const char *[]){"json", "{}", NULL}, 1, 1) == AGENT_E_MALFORMED);
    CHECK(s_reply(200, (const char *[]){NULL}, 1, 0) == AGENT_E_MISSING);
    CHECK(s_reply(200, (const char *[]){"json", "{}", NULL}, 0, 0) == AGENT_E_MISSING);
    CHECK(s_reply(200, (const char *[]){"json", "{}", "extra", "x", NULL}, 1, 0) == AGENT_E_KEY);
    CHECK(s_reply(200, (const char *[]){"json", "{}", "json", "{}", NULL}, 1, 0) == AGENT_E_KEY);
    CHECK(s_reply(99, (const char *[]){"json", "{}", NULL}, 1, 0) == AGENT_E_RANGE);
    CHECK(s_reply(600, (const char *[]){"json", "{}", NULL}, 1, 0) == AGENT_E_RANGE);
    CHECK(s_reply(200, (const char *[]){"json", "{}", NULL}, 2, 0) == AGENT_E_FIELD);
    CHECK(s_reply(200, (const char *[]){"json", "{}", "run_status", "paused", NULL}, 1, 0) ==
          AGENT_E_RANGE);
    CHECK(s_reply(200, (const char *[]){"json", "{}", "run_id", "", NULL}, 1, 0) == AGENT_E_RANGE);
    CHECK(s_reply(200, (const char *[]){"json", "{}", "session_id", "", NULL}, 1, 0) ==
          AGENT_E_RANGE);
}

static void test_stream_round_trip(void)
{
    mp_buf_t b;
    mp_buf_init(&b, 1 << 16);
    orch_stream_t acc = {.json = S("{\"run_id\":\"r\"}"), .run_id = S("r"), .session_id = S("s"),
                         .run_status = S("queued")};
    CHECK(orch_encode_accepted(&b, &acc) == 0);
    orch_stream_t out;
    CHECK(orch_decode_stream(b.data, b.len, &out) == AGENT_OK);
    CHECK(out.accepted && s_eq(out.json, "{\"run_id\":\"r\"}") && s_eq(out.run_id, "r"));
    CHECK(s_eq(out.session_id, "s") && s_eq(out.run_status, "queued"));
    /* The watch's accepted body names no run. */
    mp_buf_reset(&b);
    orch_stream_t watch = {.json = S("{}")};
    CHECK(orch_encode_accepted(&b, &watch) == 0);
    CHECK(orch_decode_stream(b.data, b.len, &out) == AGENT_OK);
    CHECK(out.accepted && out.run_id.len == 0 && out.run_status.len == 0 && s_eq(out.json, "{}"));
    mp_buf_reset(&b);
    orch_stream_t ev = {.run_id = S("r"), .session_id = S("s"), .seq = 3, .type = S("run_done"),
                        .terminal = 1, .json = S("{\"seq\":3}")};
    CHECK(orch_encode_event(&b, &ev) == 0);
    CHECK(orch_decode_stream(b.data, b.len, &out) == AGENT_OK);
    CHECK(!out.accepted && s_eq(out.run_id, "r") && s_eq(out.session_id, "s") && out.seq == 3);
    CHECK(s_eq(out.type, "run_done") && out.terminal && s_eq(out.json, "{\"seq\":3}"));
    CHECK(out.run_status.len == 0);
    mp_buf_free(&b);
}

/* An event body with one key changed: drop (skip) or add (extra). */
static agent_err_t s_event(const char *skip, const char *extra, uint64_t seq, const char *run_id)
{
    mp_buf_t b;
    mp_buf_init(&b, 1 << 16);
    const char *keys[] = {"run_id", "session_id", "seq", "type", "terminal", "event"};
    uint32_t n = 6 - (skip != NULL) + (extra != NULL);
    msgpack_pack_map(&b.pk, n);
    for (int i = 0; i < 6; i++) {
        if (skip && strcmp(skip, keys[i]) == 0)
            continue;
        if (i == 0)
            mp_pack_kv_cstr(&b, "run_id", run_id);
        else if (i == 1)
            mp_pack_kv_cstr(&b, "session_id", "s");
        else if (i == 2)
            mp_pack_kv_int(&b, "seq", (int64_t)seq);
        else if (i == 3)
            mp_pack_kv_cstr(&b, "type", "x");
        else if (i == 4) {
            mp_pack_cstr(&b, "terminal");
            msgpack_pack_false(&b.pk);
        } else
            mp_pack_kv_cstr(&b, "event", "{}");
    }
    if (extra)
        mp_pack_kv_cstr(&b, extra, "queued");
    orch_stream_t s;
    agent_err_t err = orch_decode_stream(b.data, b.len, &s);
    mp_buf_free(&b);
    return err;
}

static void test_stream_errors(void)
{
    CHECK(s_event(NULL, NULL, 1, "r") == AGENT_OK);
    CHECK(orch_decode_stream("\x93", 1, &(orch_stream_t){0}) == AGENT_E_MALFORMED);
    CHECK(s_event("seq", NULL, 1, "r") == AGENT_E_MISSING);
    CHECK(s_event("event", NULL, 1, "r") == AGENT_E_MISSING);
    CHECK(s_event(NULL, "nope", 1, "r") == AGENT_E_KEY);
    CHECK(s_event(NULL, "accepted", 1, "r") == AGENT_E_KEY);   /* both kinds at once */
    CHECK(s_event(NULL, "run_status", 1, "r") == AGENT_E_KEY); /* only in accepted */
    CHECK(s_event(NULL, NULL, 0, "r") == AGENT_E_RANGE);       /* seq starts at 1 */
    CHECK(s_event(NULL, NULL, 1, "") == AGENT_E_RANGE);
    /* accepted with a run status that is none */
    mp_buf_t b;
    mp_buf_init(&b, 1024);
    msgpack_pack_map(&b.pk, 2);
    mp_pack_kv_cstr(&b, "accepted", "{}");
    mp_pack_kv_cstr(&b, "run_status", "sleeping");
    orch_stream_t s;
    CHECK(orch_decode_stream(b.data, b.len, &s) == AGENT_E_RANGE);
    mp_buf_reset(&b);
    msgpack_pack_map(&b.pk, 1);
    mp_pack_cstr(&b, "accepted");
    msgpack_pack_int(&b.pk, 1);
    CHECK(orch_decode_stream(b.data, b.len, &s) == AGENT_E_FIELD);
    mp_buf_free(&b);
}

/* A batch carries its events in order, each decoded as one event body
 * would be; a bad element refuses the whole body; the maximum holds. */
static void test_stream_batch(void)
{
    mp_buf_t b, ev;
    mp_buf_init(&b, 1 << 16);
    mp_buf_init(&ev, 1 << 16);
    CHECK(orch_batch_begin(&b) == 0);
    const char *types[] = {"run_started", "delta", "run_done"};
    for (int i = 0; i < 3; i++) {
        orch_stream_t e = {.run_id = S("r"), .session_id = S("s"), .seq = (uint64_t)i + 1,
                           .type = S(types[i]), .terminal = i == 2, .json = S("{\"x\":1}")};
        mp_buf_reset(&ev);
        CHECK(orch_encode_event(&ev, &e) == 0);
        CHECK(orch_batch_add(&b, ev.data, ev.len) == 0);
    }
    CHECK(orch_batch_end(&b, 3) == 0);
    orch_stream_t out, one;
    CHECK(orch_decode_stream(b.data, b.len, &out) == AGENT_OK);
    CHECK(out.batch == 3 && !out.accepted && out.json.len == 0);
    for (int i = 0; i < 3; i++) {
        CHECK(orch_batch_next(&out, &one) == 1);
        CHECK(one.seq == (uint64_t)i + 1 && s_eq(one.type, types[i]) && s_eq(one.run_id, "r"));
        CHECK(s_eq(one.session_id, "s") && one.terminal == (i == 2) && s_eq(one.json, "{\"x\":1}"));
        CHECK(one.batch == 0);
    }
    CHECK(orch_batch_next(&out, &one) == 0);
    /* A count that says more or fewer than the body holds. */
    CHECK(orch_batch_end(&b, 4) == 0);
    CHECK(orch_decode_stream(b.data, b.len, &out) == AGENT_E_MALFORMED);
    CHECK(orch_batch_end(&b, 2) == 0);
    CHECK(orch_decode_stream(b.data, b.len, &out) == AGENT_E_MALFORMED);
    CHECK(orch_batch_end(&b, 0) == -1);
    /* An accepted body inside a batch. */
    CHECK(orch_batch_begin(&b) == 0);
    mp_buf_reset(&ev);
    CHECK(orch_encode_accepted(&ev, &(orch_stream_t){.json = S("{}")}) == 0);
    CHECK(orch_batch_add(&b, ev.data, ev.len) == 0);
    CHECK(orch_batch_end(&b, 1) == 0);
    CHECK(orch_decode_stream(b.data, b.len, &out) == AGENT_E_KEY);
    /* An empty array, and a batch with a second key. */
    CHECK(orch_decode_stream("\x81\xa6" "events\x90", 9, &out) == AGENT_E_RANGE);
    CHECK(orch_decode_stream("\x82\xa6" "events\x90\xa3seq\x01", 14, &out) == AGENT_E_KEY);
    /* The maximum: an add that would pass it is refused, b unchanged. */
    orch_stream_t e = {.run_id = S("r"), .session_id = S("s"), .seq = 1, .type = S("delta"),
                       .json = S("{}")};
    mp_buf_reset(&ev);
    CHECK(orch_encode_event(&ev, &e) == 0);
    mp_buf_t small;
    mp_buf_init(&small, orch_batch_overhead() + ev.len + 4);
    CHECK(orch_batch_begin(&small) == 0);
    CHECK(orch_batch_add(&small, ev.data, ev.len) == 0);
    size_t held = small.len;
    CHECK(orch_batch_add(&small, ev.data, ev.len) == -1);
    CHECK(small.len == held && !small.overflow);
    CHECK(orch_batch_end(&small, 1) == 0);
    CHECK(orch_decode_stream(small.data, small.len, &out) == AGENT_OK && out.batch == 1);
    mp_buf_free(&small);
    mp_buf_free(&ev);
    mp_buf_free(&b);
}

static void test_id_rule(void)
{
    CHECK(id_valid("s1", 2));
    CHECK(id_valid("run_0193a2b4c5d6000a1f2e3d4c", 28));
    CHECK(id_valid("caf\xc3\xa9", 5));
    CHECK(!id_valid("", 0));
    CHECK(!id_valid(NULL, 0));
    const char *bad[] = {"a b", "a/b", "a?b", "a#b", "a%b", "a\"b", "a\\b", "a\x7f", "a\tb"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(!id_valid(bad[i], strlen(bad[i])));
    char id[ID_MAX + 1];
    memset(id, 'a', sizeof id);
    CHECK(id_valid(id, ID_MAX));
    CHECK(!id_valid(id, ID_MAX + 1));
}

int main(void)
{
    test_request_round_trip();
    test_request_errors();
    test_call_request();
    test_reply_round_trip();
    test_reply_errors();
    test_stream_round_trip();
    test_stream_errors();
    test_stream_batch();
    test_id_rule();
    return 0;
}
