/* tapfmt_test: lines for decodable and undecodable tap copies, filters, run
 * attribution of a request's later frames, call trees (op call lines, the
 * platform's parent/root, --run following a tree, tokens hidden), and JSON
 * that stays valid. */
#include "tapfmt.h"

#include "proto/agent.h"
#include "proto/frame.h"
#include "proto/mp.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

static size_t s_meta_of(uint8_t *out, const char *dir, const char *peer, const char *service,
                        const char *note)
{
    mp_buf_t b;
    mp_buf_init(&b, 256);
    msgpack_pack_array(&b.pk, 6);
    msgpack_pack_uint8(&b.pk, 1);
    mp_pack_cstr(&b, dir);
    mp_pack_cstr(&b, peer);
    mp_pack_cstr(&b, service);
    msgpack_pack_uint64(&b.pk, 1795683600123000ULL);
    mp_pack_cstr(&b, note);
    memcpy(out, b.data, b.len);
    size_t n = b.len;
    mp_buf_free(&b);
    return n;
}

static size_t s_meta(uint8_t *out, const char *dir, const char *service, const char *note)
{
    return s_meta_of(out, dir, "006b8b4567", service, note);
}

/* Formats with a fresh tapfmt_t of these options. */
static int s_fmt(tapfmt_opts_t o, const uint8_t *meta, size_t mlen, const uint8_t *hdr,
                 size_t hlen, const uint8_t *body, size_t blen, int has_body, sbuf_t *line)
{
    tapfmt_t *t = tapfmt_new(&o);
    int rc = tapfmt_line(t, meta, mlen, hdr, hlen, body, blen, has_body, line);
    tapfmt_destroy(&t);
    assert(t == NULL);
    return rc;
}

static size_t s_request_hdr(uint8_t *hdr, uint64_t id)
{
    frame_t f = {.type = FRAME_REQUEST, .id = id, .service = "agent.echo", .service_len = 10};
    return frame_encode(&f, hdr, FRAME_HEADER_MAX);
}

/* A request's STREAM and REPLY frames carry no run id; they get their
 * REQUEST's, on each side (requester's id in, broker's id out), and a final
 * frame forgets it. */
static void s_runs(sbuf_t *line)
{
    tapfmt_opts_t o = {.json = 1, .run_id = "run_7"};
    tapfmt_t *t = tapfmt_new(&o);
    uint8_t meta[256], hdr[FRAME_HEADER_MAX];
    mp_buf_t inv, delta;
    mp_buf_init(&inv, 1024);
    mp_buf_init(&delta, 1024);
    msgpack_pack_map(&inv.pk, 1);
    mp_pack_kv_cstr(&inv, "run_id", "run_7");
    assert(agent_encode_delta(&delta, "hi", 2) == 0);
    /* REQUEST in from requester aa (its id 3), out to worker bb (id 900). */
    size_t ml = s_meta_of(meta, "in", "aa", "agent.echo", "");
    size_t hl = s_request_hdr(hdr, 3);
    assert(tapfmt_line(t, meta, ml, hdr, hl, inv.data, inv.len, 1, line) == 1);
    ml = s_meta_of(meta, "out", "bb", "agent.echo", "");
    hl = s_request_hdr(hdr, 900);
    assert(tapfmt_line(t, meta, ml, hdr, hl, inv.data, inv.len, 1, line) == 1);
    /* Another run's request is filtered out, and so are its frames. */
    ml = s_meta_of(meta, "in", "cc", "agent.echo", "");
    hl = s_request_hdr(hdr, 3);
    mp_buf_t other;
    mp_buf_init(&other, 1024);
    msgpack_pack_map(&other.pk, 1);
    mp_pack_kv_cstr(&other, "run_id", "run_8");
    assert(tapfmt_line(t, meta, ml, hdr, hl, other.data, other.len, 1, line) == 0);
    hl = frame_encode_id(FRAME_STREAM, 3, hdr, sizeof hdr);
    assert(tapfmt_line(t, meta, ml, hdr, hl, delta.data, delta.len, 1, line) == 0);
    /* STREAM in from the worker (broker's id), out to the requester. */
    ml = s_meta_of(meta, "in", "bb", "agent.echo", "");
    hl = frame_encode_id(FRAME_STREAM, 900, hdr, sizeof hdr);
    assert(tapfmt_line(t, meta, ml, hdr, hl, delta.data, delta.len, 1, line) == 1);
    assert(strstr(sbuf_cstr(line), "\"run_id\":\"run_7\""));
    ml = s_meta_of(meta, "out", "aa", "agent.echo", "");
    hl = frame_encode_id(FRAME_STREAM, 3, hdr, sizeof hdr);
    assert(tapfmt_line(t, meta, ml, hdr, hl, delta.data, delta.len, 1, line) == 1);
    /* The same id on another peer is another request. */
    ml = s_meta_of(meta, "out", "dd", "agent.echo", "");
    assert(tapfmt_line(t, meta, ml, hdr, hl, delta.data, delta.len, 1, line) == 0);
    /* REPLY out to the requester: shown, then forgotten. */
    ml = s_meta_of(meta, "out", "aa", "agent.echo", "");
    hl = frame_encode_id(FRAME_REPLY, 3, hdr, sizeof hdr);
    assert(tapfmt_line(t, meta, ml, hdr, hl, delta.data, delta.len, 1, line) == 1);
    assert(tapfmt_line(t, meta, ml, hdr, hl, delta.data, delta.len, 1, line) == 0);
    /* ERROR in from the worker ends its side too. */
    ml = s_meta_of(meta, "in", "bb", "agent.echo", "");
    hl = frame_encode_error(900, "boom", "it broke", hdr, sizeof hdr);
    assert(tapfmt_line(t, meta, ml, hdr, hl, NULL, 0, 0, line) == 1);
    assert(strstr(sbuf_cstr(line), "\"code\":\"boom\",\"message\":\"it broke\""));
    assert(tapfmt_line(t, meta, ml, hdr, hl, NULL, 0, 0, line) == 0);
    mp_buf_free(&inv);
    mp_buf_free(&delta);
    mp_buf_free(&other);
    tapfmt_destroy(&t);
}

/* A watch's batch ({"events":[...]}, ORCHESTRATOR.md) names its runs only
 * inside its events: --run shows a batch holding one of the followed run's
 * events (named by that run), not one of other runs only. */
static void s_batch_body(mp_buf_t *b, const char *run_a, const char *run_b)
{
    mp_buf_reset(b);
    msgpack_pack_map(&b->pk, 1);
    mp_pack_cstr(b, "events");
    msgpack_pack_array(&b->pk, 3);
    const char *runs[3] = {run_a, run_b, run_a};
    for (int i = 0; i < 3; i++) {
        msgpack_pack_map(&b->pk, 3);
        mp_pack_kv_cstr(b, "run_id", runs[i]);
        mp_pack_kv_cstr(b, "session_id", "s1");
        mp_pack_cstr(b, "seq");
        msgpack_pack_uint64(&b->pk, (uint64_t)i + 1);
    }
}

static void s_watch_batches(sbuf_t *line)
{
    tapfmt_opts_t o = {.run_id = "run_9"};
    tapfmt_t *t = tapfmt_new(&o);
    uint8_t meta[256], hdr[FRAME_HEADER_MAX];
    mp_buf_t b;
    mp_buf_init(&b, 1024);
    size_t ml = s_meta_of(meta, "out", "ee", "orchestrator", "");
    size_t hl = frame_encode_id(FRAME_STREAM, 41, hdr, sizeof hdr);
    s_batch_body(&b, "run_1", "run_9");
    assert(tapfmt_line(t, meta, ml, hdr, hl, b.data, b.len, 1, line) == 1);
    assert(strstr(sbuf_cstr(line), "run=run_9"));
    s_batch_body(&b, "run_1", "run_2");
    assert(tapfmt_line(t, meta, ml, hdr, hl, b.data, b.len, 1, line) == 0);
    tapfmt_destroy(&t);
    /* unfiltered: named by its first run */
    tapfmt_opts_t all = {0};
    assert(s_fmt(all, meta, ml, hdr, hl, b.data, b.len, 1, line) == 1);
    assert(strstr(sbuf_cstr(line), "run=run_1"));
    mp_buf_free(&b);
}

/* Bodies a peer may send: JSON lines stay valid JSON. */
static void s_bodies(sbuf_t *line)
{
    uint8_t meta[256], hdr[FRAME_HEADER_MAX];
    size_t ml = s_meta(meta, "in", "agent.echo", "");
    size_t hl = frame_encode_id(FRAME_STREAM, 1, hdr, sizeof hdr);
    tapfmt_opts_t js = {.json = 1}, human = {0};
    /* Invalid UTF-8, a float, an integer key, a negative number. */
    const uint8_t odd[] = {0x84, 0xa1, 'a', 0xa2, 0xff, 'x', 0xa1, 'f', 0xcb, 0x3f, 0xf8, 0, 0,
                           0,    0,    0,   0,    0x07, 0xc3, 0xa1, 'n', 0xff};
    assert(s_fmt(js, meta, ml, hdr, hl, odd, sizeof odd, 1, line) == 1);
    assert(strstr(sbuf_cstr(line),
                  "\"body\":{\"a\":\"\\ufffdx\",\"f\":1.5,\"7\":true,\"n\":-1},\"body_bytes\":22}"));
    /* Trailing bytes after the body, and a truncated body: undecodable. */
    const uint8_t trailing[] = {0x80, 0x01};
    assert(s_fmt(js, meta, ml, hdr, hl, trailing, sizeof trailing, 1, line) == 1);
    assert(strstr(sbuf_cstr(line), "\"body\":null,\"body_error\":\"trailing bytes\""));
    const uint8_t cut[] = {0x81, 0xa1, 'k'};
    assert(s_fmt(human, meta, ml, hdr, hl, cut, sizeof cut, 1, line) == 1);
    assert(strstr(sbuf_cstr(line), " body=undecodable(") && strstr(sbuf_cstr(line), "hex=81a16b"));
    /* A long body: the human preview is cut, marked, on a character. */
    mp_buf_t big;
    mp_buf_init(&big, 1 << 16);
    char text[300];
    for (size_t i = 0; i + 2 < sizeof text; i += 2)
        memcpy(text + i, "\xc3\xa9", 2); /* é */
    text[sizeof text - 2] = '\0';
    assert(agent_encode_delta(&big, text, strlen(text)) == 0);
    assert(s_fmt(human, meta, ml, hdr, hl, big.data, big.len, 1, line) == 1);
    const char *l = sbuf_cstr(line);
    const char *p = strstr(l, "{\"delta\":\"");
    assert(p && strstr(p, "...") && strlen(p) <= 80 + 3);
    assert(((uint8_t)p[strlen(p) - 4] & 0xc0) != 0xc0); /* no lead byte left alone */
    mp_buf_free(&big);
    /* A frame without id or body: no padding left at the end. */
    hl = frame_encode_id(FRAME_HEARTBEAT, 0, hdr, sizeof hdr);
    assert(hl > 0 && s_fmt(human, meta, ml, hdr, hl, NULL, 0, 0, line) == 1);
    l = sbuf_cstr(line);
    assert(strlen(l) > 10 && strcmp(l + strlen(l) - 10, " HEARTBEAT") == 0);
    /* Wrong part counts. */
    tapfmt_t *t = tapfmt_new(&js);
    assert(tapfmt_bad_parts(t, 1, meta, 2, line) == 1);
    assert(strcmp(sbuf_cstr(line), "{\"type\":\"UNDECODABLE\",\"error\":\"tap message of 1 "
                                   "part(s)\",\"first_hex\":\"9601\"}") == 0);
    tapfmt_destroy(&t);
    tapfmt_opts_t only_reply = {.type = "reply"};
    t = tapfmt_new(&only_reply);
    assert(tapfmt_bad_parts(t, 5, meta, 2, line) == 0);
    tapfmt_destroy(&t);
    tapfmt_destroy(&t); /* NULL-safe */
}


#define S_TOKEN "0123456789abcdef0123456789abcdef"

/* An agent invoke body with its platform: parent NULL for a client run. */
static void s_invoke(mp_buf_t *b, const char *run, const char *parent, const char *root,
                     unsigned depth)
{
    b->len = 0;
    msgpack_pack_map(&b->pk, 3);
    mp_pack_kv_cstr(b, "run_id", run);
    mp_pack_kv_cstr(b, "agent_id", "echo");
    mp_pack_cstr(b, "platform");
    msgpack_pack_map(&b->pk, parent ? 4 : 3);
    mp_pack_kv_cstr(b, "token", S_TOKEN);
    mp_pack_cstr(b, "depth");
    msgpack_pack_uint32(&b->pk, depth);
    mp_pack_kv_cstr(b, "root_run_id", root);
    if (parent)
        mp_pack_kv_cstr(b, "parent_run_id", parent);
}

/* An op call body: parent run, token, call id, agent. */
static void s_call(mp_buf_t *b, const char *parent, const char *call_id, const char *agent)
{
    b->len = 0;
    msgpack_pack_map(&b->pk, 7);
    mp_pack_kv_cstr(b, "op", "call");
    mp_pack_kv_cstr(b, "run_id", parent);
    mp_pack_kv_cstr(b, "token", S_TOKEN);
    mp_pack_kv_cstr(b, "call_id", call_id);
    mp_pack_kv_cstr(b, "agent_id", agent);
    mp_pack_kv_cstr(b, "role", "user");
    mp_pack_kv_cstr(b, "content", "hi");
}

/* One REQUEST (in from peer, with id) through t. */
static int s_req(tapfmt_t *t, const char *peer, const char *service, uint64_t id,
                 const mp_buf_t *body, sbuf_t *line)
{
    uint8_t meta[256], hdr[FRAME_HEADER_MAX];
    size_t ml = s_meta_of(meta, "in", peer, service, "");
    frame_t f = {.type = FRAME_REQUEST, .id = id, .service = service,
                 .service_len = (uint32_t)strlen(service)};
    size_t hl = frame_encode(&f, hdr, sizeof hdr);
    return tapfmt_line(t, meta, ml, hdr, hl, body->data, body->len, 1, line);
}

/* One bodiless-run STREAM (a delta) in from peer under id. */
static int s_delta(tapfmt_t *t, const char *peer, uint64_t id, sbuf_t *line)
{
    uint8_t meta[256], hdr[FRAME_HEADER_MAX];
    mp_buf_t d;
    mp_buf_init(&d, 256);
    assert(agent_encode_delta(&d, "x", 1) == 0);
    size_t ml = s_meta_of(meta, "in", peer, "agent.echo", "");
    size_t hl = frame_encode_id(FRAME_STREAM, id, hdr, sizeof hdr);
    int rc = tapfmt_line(t, meta, ml, hdr, hl, d.data, d.len, 1, line);
    mp_buf_free(&d);
    return rc;
}

/* Call trees: how a call and a child's invoke read, and --run following
 * the tree under a run (children, grandchildren, their frames), not its
 * siblings nor other trees. */
static void s_tree(sbuf_t *line)
{
    mp_buf_t b;
    mp_buf_init(&b, 4096);
    tapfmt_opts_t human = {0};
    tapfmt_t *t = tapfmt_new(&human);
    s_call(&b, "run_P", "c1", "echo");
    assert(s_req(t, "ww", "orchestrator", 5, &b, line) == 1);
    const char *l = sbuf_cstr(line);
    assert(strstr(l, " REQUEST") && strstr(l, " run=run_P call run_P \xe2\x86\x92 echo (c1)"));
    assert(!strstr(l, S_TOKEN) && strstr(l, "\"token\":\"<token>\""));
    s_invoke(&b, "run_C", "run_P", "run_P", 1);
    assert(s_req(t, "oo", "agent.echo", 9, &b, line) == 1);
    l = sbuf_cstr(line);
    assert(strstr(l, " run=run_C parent=run_P root=run_P depth=1"));
    assert(!strstr(l, S_TOKEN));
    s_invoke(&b, "run_P", NULL, "run_P", 0); /* a client run: no parent shown */
    assert(s_req(t, "oo", "agent.echo", 10, &b, line) == 1);
    assert(strstr(sbuf_cstr(line), " run=run_P") && !strstr(sbuf_cstr(line), "parent="));
    tapfmt_destroy(&t);
    /* JSON: the token hidden too, the line still JSON with the rest. */
    tapfmt_opts_t js = {.json = 1};
    t = tapfmt_new(&js);
    s_call(&b, "run_P", "c1", "echo");
    assert(s_req(t, "ww", "orchestrator", 5, &b, line) == 1);
    assert(strstr(sbuf_cstr(line), "\"body\":{\"op\":\"call\",\"run_id\":\"run_P\",\"token\":"
                                   "\"<token>\",\"call_id\":\"c1\",\"agent_id\":\"echo\""));
    tapfmt_destroy(&t);

    /* --run run_P: the whole tree. */
    tapfmt_opts_t o = {.run_id = "run_P"};
    t = tapfmt_new(&o);
    s_invoke(&b, "run_P", NULL, "run_P", 0);
    assert(s_req(t, "oo", "agent.planner", 1, &b, line) == 1);
    s_call(&b, "run_P", "c1", "echo"); /* the planner calls echo */
    assert(s_req(t, "ww", "orchestrator", 7, &b, line) == 1);
    s_invoke(&b, "run_C", "run_P", "run_P", 1);
    assert(s_req(t, "oo", "agent.echo", 2, &b, line) == 1);
    assert(s_delta(t, "oo", 2, line) == 1); /* the child's frames, by its REQUEST */
    s_call(&b, "run_C", "g1", "echo");     /* the child calls again */
    assert(s_req(t, "ee", "orchestrator", 1, &b, line) == 1);
    s_invoke(&b, "run_G", "run_C", "run_P", 2);
    assert(s_req(t, "oo", "agent.echo", 3, &b, line) == 1);
    assert(s_delta(t, "oo", 3, line) == 1);
    /* A call's answer names the child before its invoke shows: followed,
     * with its caller. */
    {
        uint8_t meta[256], hdr[FRAME_HEADER_MAX];
        mp_buf_t acc;
        mp_buf_init(&acc, 1024);
        msgpack_pack_map(&acc.pk, 4);
        mp_pack_kv_cstr(&acc, "accepted", "{\"run_id\":\"run_C3\"}");
        mp_pack_kv_cstr(&acc, "run_id", "run_C3");
        mp_pack_kv_cstr(&acc, "run_status", "running");
        mp_pack_kv_cstr(&acc, "session_id", "s1");
        s_call(&b, "run_P", "c3", "echo");
        assert(s_req(t, "ww", "orchestrator", 30, &b, line) == 1);
        size_t ml = s_meta_of(meta, "out", "ww", "orchestrator", "");
        size_t hl = frame_encode_id(FRAME_STREAM, 30, hdr, sizeof hdr);
        assert(tapfmt_line(t, meta, ml, hdr, hl, acc.data, acc.len, 1, line) == 1);
        assert(strstr(sbuf_cstr(line), " run=run_C3 caller=run_P"));
        b.len = 0; /* the child's own requests now pass: an op events, say */
        msgpack_pack_map(&b.pk, 2);
        mp_pack_kv_cstr(&b, "op", "events");
        mp_pack_kv_cstr(&b, "run_id", "run_C3");
        assert(s_req(t, "ww", "orchestrator", 31, &b, line) == 1);
        /* Not a call: an answer naming another run follows nothing. */
        b.len = 0;
        msgpack_pack_map(&b.pk, 1);
        mp_pack_kv_cstr(&b, "run_id", "run_P");
        assert(s_req(t, "ww", "orchestrator", 32, &b, line) == 1);
        acc.len = 0;
        msgpack_pack_map(&acc.pk, 1);
        mp_pack_kv_cstr(&acc, "run_id", "run_R");
        hl = frame_encode_id(FRAME_STREAM, 32, hdr, sizeof hdr);
        assert(tapfmt_line(t, meta, ml, hdr, hl, acc.data, acc.len, 1, line) == 0);
        mp_buf_free(&acc);
    }
    /* Another tree, and a run named only by a stranger's platform. */
    s_invoke(&b, "run_Q", NULL, "run_Q", 0);
    assert(s_req(t, "oo", "agent.echo", 4, &b, line) == 0);
    assert(s_delta(t, "oo", 4, line) == 0);
    s_invoke(&b, "run_Q1", "run_Q", "run_Q", 1);
    assert(s_req(t, "oo", "agent.echo", 5, &b, line) == 0);
    s_call(&b, "run_Q", "c1", "echo");
    assert(s_req(t, "ww", "orchestrator", 8, &b, line) == 0);
    /* A grandchild named by its root only (its parent forgotten) still joins. */
    s_invoke(&b, "run_G2", "run_lost", "run_P", 3);
    assert(s_req(t, "oo", "agent.echo", 6, &b, line) == 1);
    /* Past the ring's size: the newest children and the root stay followed. */
    char id[32];
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof id, "run_k%d", i);
        s_invoke(&b, id, "run_P", "run_P", 1);
        assert(s_req(t, "oo", "agent.echo", 100 + (uint64_t)i, &b, line) == 1);
    }
    s_invoke(&b, "run_P", NULL, "run_P", 0);
    assert(s_req(t, "oo", "agent.echo", 1000, &b, line) == 1);
    assert(s_delta(t, "oo", 399, line) == 1);
    s_call(&b, "run_k299", "z", "echo");
    assert(s_req(t, "ww", "orchestrator", 9, &b, line) == 1);
    tapfmt_destroy(&t);

    /* --run run_C: the subtree under a child, not its parent nor sibling. */
    tapfmt_opts_t oc = {.run_id = "run_C"};
    t = tapfmt_new(&oc);
    s_invoke(&b, "run_P", NULL, "run_P", 0);
    assert(s_req(t, "oo", "agent.planner", 1, &b, line) == 0);
    s_invoke(&b, "run_C", "run_P", "run_P", 1);
    assert(s_req(t, "oo", "agent.echo", 2, &b, line) == 1);
    s_invoke(&b, "run_C2", "run_P", "run_P", 1);
    assert(s_req(t, "oo", "agent.echo", 3, &b, line) == 0);
    s_invoke(&b, "run_G", "run_C", "run_P", 2);
    assert(s_req(t, "oo", "agent.echo", 4, &b, line) == 1);
    tapfmt_destroy(&t);

    /* Odd platforms: not a map, a string depth, an id too long to be one.
     * Still a line each, nothing followed by mistake. */
    t = tapfmt_new(&o);
    b.len = 0;
    msgpack_pack_map(&b.pk, 2);
    mp_pack_kv_cstr(&b, "run_id", "run_X");
    mp_pack_kv_cstr(&b, "platform", "run_P");
    assert(s_req(t, "oo", "agent.echo", 1, &b, line) == 0);
    char longid[300];
    memset(longid, 'p', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    b.len = 0;
    msgpack_pack_map(&b.pk, 2);
    mp_pack_kv_cstr(&b, "run_id", "run_Y");
    mp_pack_cstr(&b, "platform");
    msgpack_pack_map(&b.pk, 3);
    mp_pack_kv_cstr(&b, "depth", "two");
    mp_pack_kv_cstr(&b, "parent_run_id", longid);
    mp_pack_kv_cstr(&b, "root_run_id", "run_P");
    assert(s_req(t, "oo", "agent.echo", 2, &b, line) == 1); /* by its root */
    tapfmt_destroy(&t);
    t = tapfmt_new(&human);
    assert(s_req(t, "oo", "agent.echo", 2, &b, line) == 1);
    l = sbuf_cstr(line);
    assert(strstr(l, " run=run_Y") && !strstr(l, "parent=")); /* no usable parent */
    tapfmt_destroy(&t);
    mp_buf_free(&b);
}

int main(void)
{
    uint8_t meta[256], hdr[FRAME_HEADER_MAX];
    size_t mlen = s_meta(meta, "out", "agent.echo", "");
    size_t hlen = frame_encode_id(FRAME_STREAM, 42, hdr, sizeof hdr);
    mp_buf_t body;
    mp_buf_init(&body, 1024);
    msgpack_pack_map(&body.pk, 2);
    mp_pack_kv_cstr(&body, "run_id", "run_abc");
    mp_pack_kv_cstr(&body, "delta", " world");
    sbuf_t line;
    sbuf_init(&line, 1 << 20);

    tapfmt_opts_t human = {0};
    assert(s_fmt(human, meta, mlen, hdr, hlen, body.data, body.len, 1, &line) == 1);
    const char *l = sbuf_cstr(&line);
    assert(strstr(l, "2026-11-26T09:00:00.123Z"));
    assert(strstr(l, "broker \xe2\x86\x92 006b8b4567     agent.echo"));
    assert(strstr(l, "STREAM") && strstr(l, "id=42") && strstr(l, "run=run_abc"));
    assert(strstr(l, "\" world\""));

    tapfmt_opts_t js = {.json = 1};
    assert(s_fmt(js, meta, mlen, hdr, hlen, body.data, body.len, 1, &line) == 1);
    l = sbuf_cstr(&line);
    assert(strstr(l, "\"type\":\"STREAM\"") && strstr(l, "\"id\":42"));
    assert(strstr(l, "\"run_id\":\"run_abc\""));
    assert(strstr(l, "\"body\":{\"run_id\":\"run_abc\",\"delta\":\" world\"}"));

    /* Filters: service, run, type (case-insensitive). */
    tapfmt_opts_t f1 = {.service = "orchestrator"};
    assert(s_fmt(f1, meta, mlen, hdr, hlen, body.data, body.len, 1, &line) == 0);
    tapfmt_opts_t f2 = {.run_id = "run_other"};
    assert(s_fmt(f2, meta, mlen, hdr, hlen, body.data, body.len, 1, &line) == 0);
    tapfmt_opts_t f3 = {.type = "stream", .run_id = "run_abc", .service = "agent.echo"};
    assert(s_fmt(f3, meta, mlen, hdr, hlen, body.data, body.len, 1, &line) == 1);
    tapfmt_opts_t f4 = {.type = "REPLY"};
    assert(s_fmt(f4, meta, mlen, hdr, hlen, body.data, body.len, 1, &line) == 0);

    /* A rejected frame: shown as undecodable, with its reason and bytes. */
    size_t rlen = s_meta(meta, "in", "", "rejected: wrong_version");
    const uint8_t bad[] = {0x92, 0x02, 0x02};
    assert(s_fmt(human, meta, rlen, bad, sizeof bad, NULL, 0, 0, &line) == 1);
    l = sbuf_cstr(&line);
    assert(strstr(l, "UNDECODABLE") && strstr(l, "reason=wrong_version") && strstr(l, "920202"));
    assert(strstr(l, "note=\"rejected: wrong_version\""));
    assert(s_fmt(js, meta, rlen, bad, sizeof bad, NULL, 0, 0, &line) == 1);
    assert(strstr(sbuf_cstr(&line), "\"header_hex\":\"920202\""));
    /* Garbage meta and garbage body: still one line, saying so. */
    const uint8_t junk[] = {0xc1, 0xff};
    assert(s_fmt(js, junk, sizeof junk, hdr, hlen, junk, sizeof junk, 1, &line) == 1);
    l = sbuf_cstr(&line);
    assert(strstr(l, "\"meta\":\"undecodable\"") && strstr(l, "\"meta_hex\":\"c1ff\""));
    assert(strstr(l, "\"body\":null,\"body_error\":\"") && strstr(l, "\"body_hex\":\"c1ff\""));
    s_runs(&line);
    s_watch_batches(&line);
    s_bodies(&line);
    s_tree(&line);
    mp_buf_free(&body);
    sbuf_free(&line);
    printf("tapfmt_test: ok\n");
    return 0;
}
