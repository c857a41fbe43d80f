/* frame_test: every frame type round-trips, and every rejection is the
 * exact error it should be. Written as examples of the codec. */
#include "frame.h"

#include "mp.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

static size_t s_pack(uint8_t *out, size_t cap, void (*fill)(mp_buf_t *))
{
    mp_buf_t b;
    mp_buf_init(&b, 1 << 20);
    fill(&b);
    assert(!b.overflow && b.len <= cap);
    memcpy(out, b.data, b.len);
    size_t n = b.len;
    mp_buf_free(&b);
    return n;
}

static void s_round_trip(const frame_t *f)
{
    uint8_t buf[FRAME_HEADER_MAX], again[FRAME_HEADER_MAX];
    size_t n = frame_encode(f, buf, sizeof buf);
    assert(n > 0);
    frame_t g;
    assert(frame_decode(buf, n, frame_has_body(f->type), &g) == FRAME_OK);
    assert(g.type == f->type && g.id == f->id && g.capacity == f->capacity);
    assert(g.service_len == f->service_len && g.code_len == f->code_len &&
           g.message_len == f->message_len);
    assert(!f->service_len || !memcmp(g.service, f->service, f->service_len));
    assert(!f->code_len || !memcmp(g.code, f->code, f->code_len));
    assert(!f->message_len || !memcmp(g.message, f->message, f->message_len));
    assert(frame_encode(&g, again, sizeof again) == n && !memcmp(buf, again, n));
    /* Every proper prefix is rejected, never read past. */
    for (size_t cut = 0; cut < n; cut++) {
        frame_t h;
        frame_err_t err = frame_decode(buf, cut, frame_has_body(f->type), &h);
        assert(err == (cut == 0 ? FRAME_E_EMPTY : FRAME_E_MALFORMED));
    }
    /* Body presence is checked: the opposite is refused. */
    assert(frame_decode(buf, n, !frame_has_body(f->type), &g) == FRAME_E_BODY);
}

static frame_err_t s_decode_arr(void (*fill)(mp_buf_t *), int has_body)
{
    uint8_t buf[4096];
    size_t n = s_pack(buf, sizeof buf, fill);
    frame_t f;
    memset(&f, 0xab, sizeof f);
    frame_t before = f;
    frame_err_t err = frame_decode(buf, n, has_body, &f);
    if (err != FRAME_OK)
        assert(memcmp(&f, &before, sizeof f) == 0); /* outputs untouched on error */
    return err;
}

#define ARR(name, ...)                                                                         \
    static void name(mp_buf_t *b) { __VA_ARGS__; }
ARR(v2_heartbeat, msgpack_pack_array(&b->pk, 2); msgpack_pack_uint8(&b->pk, 2);
    msgpack_pack_uint8(&b->pk, 2))
ARR(v2_garbage_type, msgpack_pack_array(&b->pk, 2); msgpack_pack_uint8(&b->pk, 9);
    mp_pack_cstr(b, "x"))
ARR(type0, msgpack_pack_array(&b->pk, 2); msgpack_pack_uint8(&b->pk, 1); msgpack_pack_uint8(&b->pk, 0))
ARR(type10, msgpack_pack_array(&b->pk, 2); msgpack_pack_uint8(&b->pk, 1); msgpack_pack_uint8(&b->pk, 10))
ARR(one_elem, msgpack_pack_array(&b->pk, 1); msgpack_pack_uint8(&b->pk, 1))
ARR(empty_arr, msgpack_pack_array(&b->pk, 0))
ARR(not_array, msgpack_pack_map(&b->pk, 0))
ARR(hb_extra, msgpack_pack_array(&b->pk, 3); msgpack_pack_uint8(&b->pk, 1);
    msgpack_pack_uint8(&b->pk, 2); msgpack_pack_uint8(&b->pk, 0))
ARR(ready_short, msgpack_pack_array(&b->pk, 3); msgpack_pack_uint8(&b->pk, 1);
    msgpack_pack_uint8(&b->pk, 1); mp_pack_cstr(b, "svc"))
ARR(ready_int_service, msgpack_pack_array(&b->pk, 4); msgpack_pack_uint8(&b->pk, 1);
    msgpack_pack_uint8(&b->pk, 1); msgpack_pack_uint8(&b->pk, 5); msgpack_pack_uint8(&b->pk, 1))
ARR(ready_empty_service, msgpack_pack_array(&b->pk, 4); msgpack_pack_uint8(&b->pk, 1);
    msgpack_pack_uint8(&b->pk, 1); mp_pack_cstr(b, ""); msgpack_pack_uint8(&b->pk, 1))
ARR(ready_long_service, msgpack_pack_array(&b->pk, 4); msgpack_pack_uint8(&b->pk, 1);
    msgpack_pack_uint8(&b->pk, 1);
    mp_pack_cstr(b, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    msgpack_pack_uint8(&b->pk, 1))
ARR(ready_capacity_big, msgpack_pack_array(&b->pk, 4); msgpack_pack_uint8(&b->pk, 1);
    msgpack_pack_uint8(&b->pk, 1); mp_pack_cstr(b, "svc"); msgpack_pack_uint32(&b->pk, 100001))
ARR(ready_capacity_neg, msgpack_pack_array(&b->pk, 4); msgpack_pack_uint8(&b->pk, 1);
    msgpack_pack_uint8(&b->pk, 1); mp_pack_cstr(b, "svc"); msgpack_pack_int8(&b->pk, -1))
ARR(stream_str_id, msgpack_pack_array(&b->pk, 3); msgpack_pack_uint8(&b->pk, 1);
    msgpack_pack_uint8(&b->pk, 5); mp_pack_cstr(b, "7"))
ARR(error_empty_code, msgpack_pack_array(&b->pk, 5); msgpack_pack_uint8(&b->pk, 1);
    msgpack_pack_uint8(&b->pk, 7); msgpack_pack_uint8(&b->pk, 1); mp_pack_cstr(b, "");
    mp_pack_cstr(b, "m"))
ARR(error_long_code, msgpack_pack_array(&b->pk, 5); msgpack_pack_uint8(&b->pk, 1);
    msgpack_pack_uint8(&b->pk, 7); msgpack_pack_uint8(&b->pk, 1);
    mp_pack_cstr(b, "cccccccccccccccccccccccccccccccccc"); mp_pack_cstr(b, "m"))
ARR(error_long_message, msgpack_pack_array(&b->pk, 5); msgpack_pack_uint8(&b->pk, 1);
    msgpack_pack_uint8(&b->pk, 7); msgpack_pack_uint8(&b->pk, 1); mp_pack_cstr(b, "c");
    char m[600]; memset(m, 'm', sizeof m); mp_pack_str(b, m, sizeof m))
ARR(trailing, msgpack_pack_array(&b->pk, 2); msgpack_pack_uint8(&b->pk, 1);
    msgpack_pack_uint8(&b->pk, 2); msgpack_pack_uint8(&b->pk, 0))
ARR(huge_count, msgpack_pack_array(&b->pk, 0x10000000))

int main(void)
{
    /* Every type round-trips to the same bytes. */
    frame_t ready = {.type = FRAME_READY, .service = "agent.echo", .service_len = 10, .capacity = 64};
    frame_t requester = {.type = FRAME_READY, .service = "ingress", .service_len = 7, .capacity = 0};
    frame_t hb = {.type = FRAME_HEARTBEAT};
    frame_t bye = {.type = FRAME_DISCONNECT};
    frame_t req = {.type = FRAME_REQUEST, .id = 7, .service = "orchestrator", .service_len = 12};
    frame_t big = {.type = FRAME_STREAM, .id = UINT64_MAX};
    frame_t rep = {.type = FRAME_REPLY, .id = 1u << 20};
    frame_t err = {.type = FRAME_ERROR, .id = 3, .code = "worker_lost", .code_len = 11,
                   .message = "the worker was lost", .message_len = 19};
    frame_t err_empty = {.type = FRAME_ERROR, .id = 3, .code = "x", .code_len = 1};
    frame_t can = {.type = FRAME_CANCEL, .id = 9};
    frame_t svc = {.type = FRAME_SERVICES, .id = 0};
    const frame_t *all[] = {&ready, &requester, &hb, &bye, &req, &big, &rep, &err, &err_empty, &can, &svc};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        s_round_trip(all[i]);
    for (int t = 1; t <= FRAME_TYPE_MAX; t++)
        assert(strcmp(frame_type_name((frame_type_t)t), "?") != 0);
    assert(strcmp(frame_type_name((frame_type_t)0), "?") == 0);

    /* The exact shorthand bytes. */
    uint8_t b[FRAME_HEADER_MAX];
    size_t n = frame_encode_id(FRAME_STREAM, 7, b, sizeof b);
    assert(n == 4 && !memcmp(b, "\x93\x01\x05\x07", 4));
    n = frame_encode_error(1, "cancelled", "by requester", b, sizeof b);
    frame_t d;
    assert(frame_decode(b, n, 0, &d) == FRAME_OK && d.code_len == 9);
    /* The encoder refuses what the decoder would refuse. */
    frame_t bad = {.type = FRAME_READY, .service = "", .service_len = 0};
    assert(frame_encode(&bad, b, sizeof b) == 0);
    bad = (frame_t){.type = (frame_type_t)12};
    assert(frame_encode(&bad, b, sizeof b) == 0);
    assert(frame_encode(&req, b, 3) == 0); /* too small a buffer */

    /* Every rejection, exactly. */
    assert(frame_decode(b, 0, 0, &d) == FRAME_E_EMPTY);
    uint8_t large[FRAME_HEADER_MAX + 1] = {0x92, 0x01, 0x02};
    assert(frame_decode(large, sizeof large, 0, &d) == FRAME_E_TOO_LARGE);
    assert(s_decode_arr(not_array, 0) == FRAME_E_MALFORMED);
    assert(s_decode_arr(empty_arr, 0) == FRAME_E_MALFORMED);
    assert(s_decode_arr(one_elem, 0) == FRAME_E_FIELDS);
    assert(s_decode_arr(v2_heartbeat, 0) == FRAME_E_VERSION);
    assert(s_decode_arr(v2_garbage_type, 0) == FRAME_E_VERSION); /* version before type */
    assert(s_decode_arr(type0, 0) == FRAME_E_TYPE);
    assert(s_decode_arr(type10, 0) == FRAME_E_TYPE);
    assert(s_decode_arr(hb_extra, 0) == FRAME_E_FIELDS);
    assert(s_decode_arr(ready_short, 0) == FRAME_E_FIELDS);
    assert(s_decode_arr(ready_int_service, 0) == FRAME_E_FIELD);
    assert(s_decode_arr(ready_empty_service, 0) == FRAME_E_RANGE);
    assert(s_decode_arr(ready_long_service, 0) == FRAME_E_RANGE);
    assert(s_decode_arr(ready_capacity_big, 0) == FRAME_E_RANGE);
    assert(s_decode_arr(ready_capacity_neg, 0) == FRAME_E_RANGE);
    assert(s_decode_arr(stream_str_id, 1) == FRAME_E_FIELD);
    assert(s_decode_arr(error_empty_code, 0) == FRAME_E_RANGE);
    assert(s_decode_arr(error_long_code, 0) == FRAME_E_RANGE);
    assert(s_decode_arr(error_long_message, 0) == FRAME_E_RANGE);
    assert(s_decode_arr(trailing, 0) == FRAME_E_TRAILING);
    assert(s_decode_arr(huge_count, 0) == FRAME_E_MALFORMED); /* a count past the bytes */
    for (int e = FRAME_OK; e <= FRAME_E_PARTS; e++)
        assert(strcmp(frame_strerror((frame_err_t)e), "unknown") != 0);
    printf("frame_test: ok\n");
    return 0;
}
