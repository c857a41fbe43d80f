/* mp_test: the msgpack cursor on every width, truncation and hostile counts. */
#include "mp.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>


/* One encoding: its bytes and what reading it gives. */
typedef struct {
    const char *bytes;
    size_t len;
    int64_t v;
} s_int_t;

/* Every integer width through mp_read_int, mp_read_uint (when >= 0) and
 * mp_skip; every shorter prefix is MP_TRUNCATED for all three. */
static void s_ints(void)
{
    const s_int_t t[] = {
        {"\x00", 1, 0}, {"\x7f", 1, 127}, {"\xe0", 1, -32}, {"\xff", 1, -1},
        {"\xcc\x80", 2, 128}, {"\xcd\xff\xff", 3, 65535},
        {"\xce\xff\xff\xff\xff", 5, 4294967295LL},
        {"\xcf\x7f\xff\xff\xff\xff\xff\xff\xff", 9, INT64_MAX},
        {"\xd0\x80", 2, -128}, {"\xd0\x7f", 2, 127}, {"\xd1\x80\x00", 3, -32768},
        {"\xd2\xff\xff\xff\xfe", 5, -2}, {"\xd2\x7f\xff\xff\xff", 5, INT32_MAX},
        {"\xd3\x80\x00\x00\x00\x00\x00\x00\x00", 9, INT64_MIN},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        mp_reader_t r;
        int64_t s;
        uint64_t u;
        mp_reader_init(&r, t[i].bytes, t[i].len);
        assert(mp_read_int(&r, &s) == 0 && s == t[i].v && mp_left(&r) == 0);
        mp_reader_init(&r, t[i].bytes, t[i].len);
        if (t[i].v >= 0)
            assert(mp_read_uint(&r, &u) == 0 && u == (uint64_t)t[i].v);
        else
            assert(mp_read_uint(&r, &u) == -1 && r.err == MP_RANGE);
        mp_reader_init(&r, t[i].bytes, t[i].len);
        assert(mp_skip(&r, 0) == 0 && mp_left(&r) == 0);
        for (size_t cut = 0; cut < t[i].len; cut++) {
            mp_reader_init(&r, t[i].bytes, cut);
            assert(mp_read_int(&r, &s) == -1 && r.err == MP_TRUNCATED);
            mp_reader_init(&r, t[i].bytes, cut);
            assert(mp_skip(&r, 0) == -1 && r.err == MP_TRUNCATED);
        }
    }
    /* A uint64 past INT64_MAX is a uint, not an int. */
    mp_reader_t r;
    int64_t s;
    mp_reader_init(&r, "\xcf\x80\x00\x00\x00\x00\x00\x00\x00", 9);
    assert(mp_read_int(&r, &s) == -1 && r.err == MP_RANGE);
    /* Neither reads a string, nil, bool or float. */
    const char *other[] = {"\xa0", "\xc0", "\xc2", "\xca\x00\x00\x00\x00"};
    for (size_t i = 0; i < 4; i++) {
        mp_reader_init(&r, other[i], 1);
        assert(mp_read_int(&r, &s) == -1 && r.err == MP_TYPE);
    }
}

/* A value with a payload: strings, binaries, arrays, maps in every width. */
typedef struct {
    char kind; /* 's' str, 'b' bin, 'a' array, 'm' map */
    const char *bytes;
    size_t len;
    uint32_t n; /* length or count */
} s_sized_t;

static void s_sized(void)
{
    const s_sized_t t[] = {
        {'s', "\xa3" "abc", 4, 3},
        {'s', "\xd9\x03" "abc", 5, 3},
        {'s', "\xda\x00\x03" "abc", 6, 3},
        {'s', "\xdb\x00\x00\x00\x03" "abc", 8, 3},
        {'s', "\xa0", 1, 0},
        {'b', "\xc4\x02\x00\x01", 4, 2},
        {'b', "\xc5\x00\x02\x00\x01", 5, 2},
        {'b', "\xc6\x00\x00\x00\x02\x00\x01", 7, 2},
        {'a', "\x92\x01\xa1x", 4, 2},
        {'a', "\xdc\x00\x02\x01\xa1x", 6, 2},
        {'a', "\xdd\x00\x00\x00\x02\x01\xa1x", 8, 2},
        {'m', "\x81\xa1k\x01", 4, 1},
        {'m', "\xde\x00\x01\xa1k\x01", 6, 1},
        {'m', "\xdf\x00\x00\x00\x01\xa1k\x01", 8, 1},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        mp_reader_t r;
        const char *s;
        const uint8_t *b;
        uint32_t n = 99;
        int rc = 0;
        mp_reader_init(&r, t[i].bytes, t[i].len);
        switch (t[i].kind) {
        case 's': rc = mp_read_str(&r, &s, &n, 16); break;
        case 'b': rc = mp_read_bin(&r, &b, &n, 16); break;
        case 'a': rc = mp_read_array(&r, &n); break;
        default: rc = mp_read_map(&r, &n); break;
        }
        assert(rc == 0 && n == t[i].n);
        if (t[i].kind == 's' && n)
            assert(!memcmp(s, "abc", 3) && mp_left(&r) == 0);
        if (t[i].kind == 'b')
            assert(b[0] == 0 && b[1] == 1 && mp_left(&r) == 0);
        /* Every other reader refuses the type without moving. */
        if (t[i].kind != 's') {
            mp_reader_init(&r, t[i].bytes, t[i].len);
            assert(mp_read_str(&r, &s, &n, 16) == -1 && r.err == MP_TYPE);
        }
        if (t[i].kind != 'a') {
            mp_reader_init(&r, t[i].bytes, t[i].len);
            assert(mp_read_array(&r, &n) == -1 && r.err == MP_TYPE);
        }
        if (t[i].kind != 'm') {
            mp_reader_init(&r, t[i].bytes, t[i].len);
            assert(mp_read_map(&r, &n) == -1 && r.err == MP_TYPE);
        }
        if (t[i].kind != 'b') {
            mp_reader_init(&r, t[i].bytes, t[i].len);
            assert(mp_read_bin(&r, &b, &n, 16) == -1 && r.err == MP_TYPE);
        }
        /* The whole value skips; every prefix is truncated. */
        mp_reader_init(&r, t[i].bytes, t[i].len);
        assert(mp_skip(&r, 1) == 0 && mp_left(&r) == 0);
        for (size_t cut = 0; cut < t[i].len; cut++) {
            mp_reader_init(&r, t[i].bytes, cut);
            assert(mp_skip(&r, 1) == -1 && r.err == MP_TRUNCATED);
            if (t[i].kind == 's' || t[i].kind == 'b') {
                mp_reader_init(&r, t[i].bytes, cut);
                rc = t[i].kind == 's' ? mp_read_str(&r, &s, &n, 16)
                                      : mp_read_bin(&r, &b, &n, 16);
                assert(rc == -1 && r.err == MP_TRUNCATED);
            }
        }
        /* Strings and binaries over their maximum are MP_RANGE. */
        if (t[i].kind == 's' && t[i].n) {
            mp_reader_init(&r, t[i].bytes, t[i].len);
            assert(mp_read_str(&r, &s, &n, 2) == -1 && r.err == MP_RANGE);
        }
        if (t[i].kind == 'b') {
            mp_reader_init(&r, t[i].bytes, t[i].len);
            assert(mp_read_bin(&r, &b, &n, 1) == -1 && r.err == MP_RANGE);
        }
    }
    /* Hostile lengths: a few bytes claiming gigabytes fail before any use,
     * for every reader and for mp_skip / mp_to_json. */
    const char *hostile[] = {
        "\xdb\x7f\xff\xff\xff", "\xc6\xff\xff\xff\xff", "\xdd\xff\xff\xff\xff",
        "\xdf\xff\xff\xff\xff", "\xdd\x10\x00\x00\x00", "\xc9\xff\xff\xff\xff\x01",
    };
    for (size_t i = 0; i < sizeof hostile / sizeof *hostile; i++) {
        mp_reader_t r;
        size_t len = i == 5 ? 6 : 5;
        char out[32];
        mp_reader_init(&r, hostile[i], len);
        assert(mp_skip(&r, 8) == -1 && r.err == MP_TRUNCATED);
        mp_reader_init(&r, hostile[i], len);
        assert(mp_to_json(&r, out, sizeof out, 8) == -1 && r.err == MP_TRUNCATED);
    }
}

/* mp_to_json on every kind: numbers, binary as hex, ext and float named,
 * non-string keys, depth limit, and cut-offs at every capacity. */
static void s_json(void)
{
    mp_reader_t r;
    char out[256];
    mp_reader_init(&r, "\x94\xd3\x80\x00\x00\x00\x00\x00\x00\x00\xcf\xff\xff\xff\xff\xff\xff\xff\xff"
                       "\xc4\x02\xab\x01\xc2", 24);
    assert(mp_to_json(&r, out, sizeof out, 4) == 0);
    assert(!strcmp(out, "[-9223372036854775808,18446744073709551615,\"ab01\",false]"));
    mp_reader_init(&r, "\x81\x01\xa1v", 4);
    assert(mp_to_json(&r, out, sizeof out, 4) == 0 && !strcmp(out, "{\"1\":\"v\"}"));
    /* Keys that are not strings stay JSON: [1,"a"] and bin are escaped. */
    mp_reader_init(&r, "\x82\x92\x01\xa1\x61\x02\xc4\x01\xff\xc0", 10);
    assert(mp_to_json(&r, out, sizeof out, 4) == 0);
    assert(!strcmp(out, "{\"[1,\\\"a\\\"]\":2,\"\\\"ff\\\"\":null}"));
    mp_reader_init(&r, "\xd4\x01\x02", 3);
    assert(mp_to_json(&r, out, sizeof out, 4) == 0 && !strcmp(out, "\"<type 0xd4, 3 bytes>\""));
    mp_reader_init(&r, "\x91\x91\x91\x01", 4);
    assert(mp_to_json(&r, out, sizeof out, 2) == -1 && r.err == MP_DEPTH);
    mp_reader_init(&r, "\xa2\\x", 3);
    assert(mp_to_json(&r, out, sizeof out, 0) == 0 && !strcmp(out, "\"\\\\x\""));
    /* Too small a buffer is refused; any larger one gets a prefix of the
     * full text and, when cut, "..." at its end, never past cap. */
    const char *full = "[\"abcdefghijklmnopqrstuvwxyz\",12345,{\"k\":[true,null]}]";
    mp_buf_t b;
    mp_buf_init(&b, 256);
    msgpack_pack_array(&b.pk, 3);
    mp_pack_cstr(&b, "abcdefghijklmnopqrstuvwxyz");
    msgpack_pack_int(&b.pk, 12345);
    msgpack_pack_map(&b.pk, 1);
    mp_pack_cstr(&b, "k");
    msgpack_pack_array(&b.pk, 2);
    msgpack_pack_true(&b.pk);
    msgpack_pack_nil(&b.pk);
    mp_reader_init(&r, b.data, 7);
    assert(mp_to_json(&r, out, 7, 4) == -1);
    for (size_t cap = 8; cap < 80; cap++) {
        memset(out, 'X', sizeof out);
        mp_reader_init(&r, b.data, b.len);
        assert(mp_to_json(&r, out, cap, 4) == 0);
        size_t n = strlen(out);
        assert(n < cap && out[cap] == 'X'); /* nothing written past cap */
        /* Room for "..." is kept until the end, so the full text needs 3
         * bytes more than its length and NUL. */
        if (cap >= strlen(full) + 4) {
            assert(!strcmp(out, full));
        } else {
            assert(n >= 3 && !strcmp(out + n - 3, "...") && !strncmp(out, full, n - 3));
        }
    }
    mp_buf_free(&b);
}

int main(void)
{
    s_ints();
    s_sized();
    s_json();
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
