/* tapfmt_test: lines for decodable and undecodable tap copies, and filters. */
#include "tapfmt.h"

#include "proto/agent.h"
#include "proto/frame.h"
#include "proto/mp.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

static size_t s_meta(uint8_t *out, const char *dir, const char *service, const char *note)
{
    mp_buf_t b;
    mp_buf_init(&b, 256);
    msgpack_pack_array(&b.pk, 6);
    msgpack_pack_uint8(&b.pk, 1);
    mp_pack_cstr(&b, dir);
    mp_pack_cstr(&b, "006b8b4567");
    mp_pack_cstr(&b, service);
    msgpack_pack_uint64(&b.pk, 1795683600123000ULL);
    mp_pack_cstr(&b, note);
    memcpy(out, b.data, b.len);
    size_t n = b.len;
    mp_buf_free(&b);
    return n;
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
    assert(tapfmt_line(&human, meta, mlen, hdr, hlen, body.data, body.len, 1, &line) == 1);
    const char *l = sbuf_cstr(&line);
    assert(strstr(l, "2026-11-26T09:00:00.123Z"));
    assert(strstr(l, "<- 006b8b4567 agent.echo"));
    assert(strstr(l, "STREAM") && strstr(l, "id=42") && strstr(l, "run=run_abc"));
    assert(strstr(l, "\" world\""));

    tapfmt_opts_t js = {.json = 1};
    assert(tapfmt_line(&js, meta, mlen, hdr, hlen, body.data, body.len, 1, &line) == 1);
    l = sbuf_cstr(&line);
    assert(strstr(l, "\"type\":\"STREAM\"") && strstr(l, "\"id\":42"));
    assert(strstr(l, "\"run_id\":\"run_abc\""));
    assert(strstr(l, "\"body\":{\"run_id\":\"run_abc\",\"delta\":\" world\"}"));

    /* Filters: service, run, type (case-insensitive). */
    tapfmt_opts_t f1 = {.service = "orchestrator"};
    assert(tapfmt_line(&f1, meta, mlen, hdr, hlen, body.data, body.len, 1, &line) == 0);
    tapfmt_opts_t f2 = {.run_id = "run_other"};
    assert(tapfmt_line(&f2, meta, mlen, hdr, hlen, body.data, body.len, 1, &line) == 0);
    tapfmt_opts_t f3 = {.type = "stream", .run_id = "run_abc", .service = "agent.echo"};
    assert(tapfmt_line(&f3, meta, mlen, hdr, hlen, body.data, body.len, 1, &line) == 1);
    tapfmt_opts_t f4 = {.type = "REPLY"};
    assert(tapfmt_line(&f4, meta, mlen, hdr, hlen, body.data, body.len, 1, &line) == 0);

    /* A rejected frame: shown as undecodable, with its reason and bytes. */
    size_t rlen = s_meta(meta, "in", "", "rejected: wrong_version");
    const uint8_t bad[] = {0x92, 0x02, 0x02};
    assert(tapfmt_line(&human, meta, rlen, bad, sizeof bad, NULL, 0, 0, &line) == 1);
    l = sbuf_cstr(&line);
    assert(strstr(l, "UNDECODABLE") && strstr(l, "reason=wrong_version") && strstr(l, "920202"));
    assert(strstr(l, "note=\"rejected: wrong_version\""));
    assert(tapfmt_line(&js, meta, rlen, bad, sizeof bad, NULL, 0, 0, &line) == 1);
    assert(strstr(sbuf_cstr(&line), "\"header_hex\":\"920202\""));
    /* Garbage meta and garbage body: still one line, saying so. */
    const uint8_t junk[] = {0xc1, 0xff};
    assert(tapfmt_line(&js, junk, sizeof junk, hdr, hlen, junk, sizeof junk, 1, &line) == 1);
    l = sbuf_cstr(&line);
    assert(strstr(l, "\"meta\":\"undecodable\"") && strstr(l, "undecodable_hex"));
    mp_buf_free(&body);
    sbuf_free(&line);
    printf("tapfmt_test: ok\n");
    return 0;
}
