/* mp_test: the msgpack cursor on every width, truncation and hostile counts. */
#include "mp.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    /* Unsigned ints in every width, and signed ones. */
    const struct { const char *bytes; size_t len; uint64_t v; } u[] = {
        {"\x05", 1, 5}, {"\xcc\xff", 2, 255}, {"\xcd\x01\x00", 3, 256},
        {"\xce\x00\x01\x00\x00", 5, 65536}, {"\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9, UINT64_MAX},
        {"\xd0\x05", 2, 5}, {"\xd3\x00\x00\x00\x00\x00\x00\x00\x07", 9, 7},
    };
    for (size_t i = 0; i < sizeof u / sizeof *u; i++) {
        mp_reader_t r;
        uint64_t v;
        mp_reader_init(&r, u[i].bytes, u[i].len);
        assert(mp_read_uint(&r, &v) == 0 && v == u[i].v && mp_left(&r) == 0);
        for (size_t cut = 0; cut < u[i].len; cut++) {
            mp_reader_init(&r, u[i].bytes, cut);
            assert(mp_read_uint(&r, &v) == -1 && r.err == MP_TRUNCATED);
        }
    }
    mp_reader_t r;
    uint64_t v;
    int64_t s;
    mp_reader_init(&r, "\xff", 1);
    assert(mp_read_uint(&r, &v) == -1 && r.err == MP_RANGE); /* -1 is not a uint */
    mp_reader_init(&r, "\xff", 1);
    assert(mp_read_int(&r, &s) == 0 && s == -1);
    mp_reader_init(&r, "\xd1\xff\x00", 3);
    assert(mp_read_int(&r, &s) == 0 && s == -256);
    mp_reader_init(&r, "\xa1x", 2);
    assert(mp_read_uint(&r, &v) == -1 && r.err == MP_TYPE);
    /* After an error, every read fails: decoders check once. */
    assert(mp_read_int(&r, &s) == -1);

    /* Strings: fixstr, str8, str16; bounds. */
    const char *str;
    uint32_t n;
    mp_reader_init(&r, "\xa3" "abc", 4);
    assert(mp_read_str(&r, &str, &n, 3) == 0 && n == 3 && !memcmp(str, "abc", 3));
    mp_reader_init(&r, "\xa3" "abc", 4);
    assert(mp_read_str(&r, &str, &n, 2) == -1 && r.err == MP_RANGE);
    mp_reader_init(&r, "\xd9\x03" "abc", 5);
    assert(mp_read_str(&r, &str, &n, 10) == 0 && n == 3);
    mp_reader_init(&r, "\xda\x00\x05" "abc", 6);
    assert(mp_read_str(&r, &str, &n, 10) == -1 && r.err == MP_TRUNCATED);
    const uint8_t *bin;
    mp_reader_init(&r, "\xc4\x02\x00\x01", 4);
    assert(mp_read_bin(&r, &bin, &n, 2) == 0 && n == 2 && bin[1] == 1);

    /* Hostile counts: 5 bytes claiming 2^28 elements are refused at once. */
    mp_reader_init(&r, "\xdd\x10\x00\x00\x00", 5);
    assert(mp_read_array(&r, &n) == -1 && r.err == MP_TRUNCATED);
    mp_reader_init(&r, "\xdf\x10\x00\x00\x00", 5);
    assert(mp_read_map(&r, &n) == -1 && r.err == MP_TRUNCATED);
    mp_reader_init(&r, "\xdc\x00\x02\x01\x02", 5);
    assert(mp_read_array(&r, &n) == 0 && n == 2);

    /* Skipping: nested values, the depth limit, every type byte. */
    const char nested[] = "\x91\x91\x91\x91\x01";
    mp_reader_init(&r, nested, 5);
    assert(mp_skip(&r, 8) == 0 && mp_left(&r) == 0);
    mp_reader_init(&r, nested, 5);
    assert(mp_skip(&r, 2) == -1 && r.err == MP_DEPTH);
    mp_reader_init(&r, "\xc1", 1);
    assert(mp_skip(&r, 4) == -1 && r.err == MP_TYPE);
    mp_reader_init(&r, "\xd6\x01" "abcd", 6); /* fixext 4 */
    assert(mp_skip(&r, 4) == 0 && mp_left(&r) == 0);
    mp_reader_init(&r, "\xcb\x00\x00\x00\x00\x00\x00\xf0\x3f", 9); /* float 64 */
    assert(mp_skip(&r, 4) == 0 && mp_left(&r) == 0);

    /* JSON rendering, and its cut-off. */
    mp_buf_t b;
    mp_buf_init(&b, 1024);
    msgpack_pack_map(&b.pk, 2);
    mp_pack_kv_cstr(&b, "k", "v\"1\n");
    mp_pack_cstr(&b, "n");
    msgpack_pack_array(&b.pk, 3);
    msgpack_pack_int(&b.pk, -3);
    msgpack_pack_nil(&b.pk);
    msgpack_pack_true(&b.pk);
    char out[128];
    mp_reader_init(&r, b.data, b.len);
    assert(mp_to_json(&r, out, sizeof out, 8) == 0);
    assert(strcmp(out, "{\"k\":\"v\\\"1\\u000a\",\"n\":[-3,null,true]}") == 0);
    mp_reader_init(&r, b.data, b.len);
    assert(mp_to_json(&r, out, 12, 8) == 0 && strlen(out) < 12 && strstr(out, "..."));
    /* The writer refuses to pass its maximum. */
    mp_buf_t small;
    mp_buf_init(&small, 4);
    mp_pack_cstr(&small, "longer than four");
    assert(small.overflow);
    mp_buf_free(&small);
    mp_buf_free(&b);
    printf("mp_test: ok\n");
    return 0;
}
