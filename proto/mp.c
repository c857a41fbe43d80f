/* mp: msgpack by cursor.
 *
 * Invariant: r->p never passes r->end; each read first checks that the bytes
 * it needs are there. Container counts are bounded by the bytes left (every
 * element takes at least one byte), so a count can never make a decoder loop
 * or allocate beyond the input it was given. */
#include "mp.h"

#include "../common/mem.h"

#include <stdio.h>
#include <string.h>

void mp_reader_init(mp_reader_t *r, const void *buf, size_t len)
{
    r->p = buf;
    r->end = r->p + len;
    r->err = MP_OK;
}

const char *mp_strerror(mp_err_t err)
{
    switch (err) {
    case MP_OK: return "ok";
    case MP_TRUNCATED: return "truncated";
    case MP_TYPE: return "wrong type";
    case MP_RANGE: return "out of range";
    case MP_DEPTH: return "nested too deep";
    }
    return "unknown";
}

size_t mp_left(const mp_reader_t *r)
{
    return (size_t)(r->end - r->p);
}

static int s_fail(mp_reader_t *r, mp_err_t err)
{
    if (r->err == MP_OK)
        r->err = err;
    return -1;
}

/* Reads an n-byte big-endian unsigned integer. Caller checked the length. */
static uint64_t s_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Consumes the type byte plus an n-byte big-endian argument. */
static int s_take(mp_reader_t *r, int n, uint64_t *v)
{
    if (mp_left(r) < (size_t)(1 + n))
        return s_fail(r, MP_TRUNCATED);
    *v = s_be(r->p + 1, n);
    r->p += 1 + n;
    return 0;
}

static int s_count_fits(mp_reader_t *r, uint64_t count, uint64_t per)
{
    if (count * per > mp_left(r))
        return s_fail(r, MP_TRUNCATED);
    return 0;
}

int mp_read_array(mp_reader_t *r, uint32_t *count)
{
    if (r->err)
        return -1;
    if (mp_left(r) < 1)
        return s_fail(r, MP_TRUNCATED);
    uint8_t t = *r->p;
    uint64_t n;
    if ((t & 0xf0) == 0x90) {
        n = t & 0x0f;
        r->p++;
    } else if (t == 0xdc) {
        if (s_take(r, 2, &n))
            return -1;
    } else if (t == 0xdd) {
        if (s_take(r, 4, &n))
            return -1;
    } else {
        return s_fail(r, MP_TYPE);
    }
    if (s_count_fits(r, n, 1))
        return -1;
    *count = (uint32_t)n;
    return 0;
}

int mp_read_map(mp_reader_t *r, uint32_t *count)
{
    if (r->err)
        return -1;
    if (mp_left(r) < 1)
        return s_fail(r, MP_TRUNCATED);
    uint8_t t = *r->p;
    uint64_t n;
    if ((t & 0xf0) == 0x80) {
        n = t & 0x0f;
        r->p++;
    } else if (t == 0xde) {
        if (s_take(r, 2, &n))
            return -1;
    } else if (t == 0xdf) {
        if (s_take(r, 4, &n))
            return -1;
    } else {
        return s_fail(r, MP_TYPE);
    }
    if (s_count_fits(r, n, 2))
        return -1;
    *count = (uint32_t)n;
    return 0;
}

int mp_read_uint(mp_reader_t *r, uint64_t *value)
{
    if (r->err)
        return -1;
    if (mp_left(r) < 1)
        return s_fail(r, MP_TRUNCATED);
    uint8_t t = *r->p;
    uint64_t v;
    if (t <= 0x7f) {
        v = t;
        r->p++;
    } else if (t >= 0xcc && t <= 0xcf) {
        if (s_take(r, 1 << (t - 0xcc), &v))
            return -1;
    } else if (t >= 0xd0 && t <= 0xd3) {
        int64_t sv;
        if (mp_read_int(r, &sv))
            return -1;
        if (sv < 0)
            return s_fail(r, MP_RANGE);
        v = (uint64_t)sv;
    } else if (t >= 0xe0) {
        return s_fail(r, MP_RANGE); /* negative fixint */
    } else {
        return s_fail(r, MP_TYPE);
    }
    *value = v;
    return 0;
}

int mp_read_int(mp_reader_t *r, int64_t *value)
{
    if (r->err)
        return -1;
    if (mp_left(r) < 1)
        return s_fail(r, MP_TRUNCATED);
    uint8_t t = *r->p;
    uint64_t v;
    if (t <= 0x7f) {
        *value = t;
        r->p++;
        return 0;
    }
    if (t >= 0xe0) {
        *value = (int8_t)t;
        r->p++;
        return 0;
    }
    if (t >= 0xcc && t <= 0xcf) {
        if (s_take(r, 1 << (t - 0xcc), &v))
            return -1;
        if (v > INT64_MAX)
            return s_fail(r, MP_RANGE);
        *value = (int64_t)v;
        return 0;
    }
    if (t >= 0xd0 && t <= 0xd3) {
        int n = 1 << (t - 0xd0);
        if (s_take(r, n, &v))
            return -1;
        switch (n) {
        case 1: *value = (int8_t)v; break;
        case 2: *value = (int16_t)v; break;
        case 4: *value = (int32_t)v; break;
        default: *value = (int64_t)v; break;
        }
        return 0;
    }
    return s_fail(r, MP_TYPE);
}

int mp_read_bool(mp_reader_t *r, int *value)
{
    if (r->err)
        return -1;
    if (mp_left(r) < 1)
        return s_fail(r, MP_TRUNCATED);
    if (*r->p != 0xc2 && *r->p != 0xc3)
        return s_fail(r, MP_TYPE);
    *value = *r->p == 0xc3;
    r->p++;
    return 0;
}

int mp_read_nil(mp_reader_t *r)
{
    if (r->err)
        return -1;
    if (mp_left(r) < 1)
        return s_fail(r, MP_TRUNCATED);
    if (*r->p != 0xc0)
        return s_fail(r, MP_TYPE);
    r->p++;
    return 0;
}

int mp_try_nil(mp_reader_t *r)
{
    if (r->err || mp_left(r) < 1 || *r->p != 0xc0)
        return 0;
    r->p++;
    return 1;
}

int mp_read_str(mp_reader_t *r, const char **str, uint32_t *len, uint32_t max)
{
    if (r->err)
        return -1;
    if (mp_left(r) < 1)
        return s_fail(r, MP_TRUNCATED);
    uint8_t t = *r->p;
    uint64_t n;
    if ((t & 0xe0) == 0xa0) {
        n = t & 0x1f;
        r->p++;
    } else if (t >= 0xd9 && t <= 0xdb) {
        if (s_take(r, 1 << (t - 0xd9), &n))
            return -1;
    } else {
        return s_fail(r, MP_TYPE);
    }
    if (n > mp_left(r))
        return s_fail(r, MP_TRUNCATED);
    if (n > max)
        return s_fail(r, MP_RANGE);
    *str = (const char *)r->p;
    *len = (uint32_t)n;
    r->p += n;
    return 0;
}

int mp_read_bin(mp_reader_t *r, const uint8_t **bin, uint32_t *len, uint32_t max)
{
    if (r->err)
        return -1;
    if (mp_left(r) < 1)
        return s_fail(r, MP_TRUNCATED);
    uint8_t t = *r->p;
    uint64_t n;
    if (t >= 0xc4 && t <= 0xc6) {
        if (s_take(r, 1 << (t - 0xc4), &n))
            return -1;
    } else {
        return s_fail(r, MP_TYPE);
    }
    if (n > mp_left(r))
        return s_fail(r, MP_TRUNCATED);
    if (n > max)
        return s_fail(r, MP_RANGE);
    *bin = r->p;
    *len = (uint32_t)n;
    r->p += n;
    return 0;
}

/* Skips n raw bytes after consuming a type byte and an a-byte length. */
static int s_skip_sized(mp_reader_t *r, int a, uint64_t extra)
{
    uint64_t n;
    if (s_take(r, a, &n))
        return -1;
    if (n + extra > mp_left(r))
        return s_fail(r, MP_TRUNCATED);
    r->p += n + extra;
    return 0;
}

int mp_skip(mp_reader_t *r, int max_depth)
{
    if (r->err)
        return -1;
    if (max_depth < 0)
        return s_fail(r, MP_DEPTH);
    if (mp_left(r) < 1)
        return s_fail(r, MP_TRUNCATED);
    uint8_t t = *r->p;
    uint32_t n;
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
        r->p++;
        return 0;
    }
    if ((t & 0xe0) == 0xa0 || (t >= 0xd9 && t <= 0xdb)) {
        const char *s;
        return mp_read_str(r, &s, &n, UINT32_MAX);
    }
    if ((t & 0xf0) == 0x90 || t == 0xdc || t == 0xdd) {
        if (mp_read_array(r, &n))
            return -1;
        for (uint32_t i = 0; i < n; i++)
            if (mp_skip(r, max_depth - 1))
                return -1;
        return 0;
    }
    if ((t & 0xf0) == 0x80 || t == 0xde || t == 0xdf) {
        if (mp_read_map(r, &n))
            return -1;
        for (uint32_t i = 0; i < 2 * n; i++)
            if (mp_skip(r, max_depth - 1))
                return -1;
        return 0;
    }
    switch (t) {
    case 0xc4: return s_skip_sized(r, 1, 0); /* bin 8/16/32 */
    case 0xc5: return s_skip_sized(r, 2, 0);
    case 0xc6: return s_skip_sized(r, 4, 0);
    case 0xc7: return s_skip_sized(r, 1, 1); /* ext 8/16/32: length, type */
    case 0xc8: return s_skip_sized(r, 2, 1);
    case 0xc9: return s_skip_sized(r, 4, 1);
    case 0xca: return s_skip_sized(r, 0, 4); /* float 32/64 */
    case 0xcb: return s_skip_sized(r, 0, 8);
    case 0xcc: case 0xcd: case 0xce: case 0xcf:
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        int64_t v;
        uint64_t u;
        return t <= 0xcf ? mp_read_uint(r, &u) : mp_read_int(r, &v);
    }
    case 0xd4: return s_skip_sized(r, 0, 2); /* fixext 1..16: type + data */
    case 0xd5: return s_skip_sized(r, 0, 3);
    case 0xd6: return s_skip_sized(r, 0, 5);
    case 0xd7: return s_skip_sized(r, 0, 9);
    case 0xd8: return s_skip_sized(r, 0, 17);
    }
    return s_fail(r, MP_TYPE); /* 0xc1: never used */
}

/* JSON output with a cap: o->at never passes cap - 1; once full, "..." ends it. */
typedef struct {
    char *buf;
    size_t cap;
    size_t at;
    int full;
} s_out_t;

static void s_put(s_out_t *o, const char *s, size_t n)
{
    if (o->full)
        return;
    if (o->at + n + 4 > o->cap) {
        size_t room = o->cap > o->at + 4 ? o->cap - o->at - 4 : 0;
        memcpy(o->buf + o->at, s, room);
        o->at += room;
        memcpy(o->buf + o->at, "...", 3);
        o->at += 3;
        o->full = 1;
        return;
    }
    memcpy(o->buf + o->at, s, n);
    o->at += n;
}

static void s_put_jstr(s_out_t *o, const char *s, size_t n)
{
    s_put(o, "\"", 1);
    for (size_t i = 0; i < n && !o->full; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            s_put(o, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            s_put(o, esc, 6);
        } else {
            s_put(o, (const char *)&s[i], 1);
        }
    }
    s_put(o, "\"", 1);
}

static int s_json(mp_reader_t *r, s_out_t *o, int depth)
{
    if (depth < 0)
        return s_fail(r, MP_DEPTH);
    if (mp_left(r) < 1)
        return s_fail(r, MP_TRUNCATED);
    uint8_t t = *r->p;
    char num[32];
    uint32_t n;
    if (t == 0xc0) {
        r->p++;
        s_put(o, "null", 4);
    } else if (t == 0xc2 || t == 0xc3) {
        r->p++;
        s_put(o, t == 0xc3 ? "true" : "false", t == 0xc3 ? 4 : 5);
    } else if (t <= 0x7f || (t >= 0xcc && t <= 0xcf)) {
        uint64_t v;
        if (mp_read_uint(r, &v))
            return -1;
        s_put(o, num, (size_t)snprintf(num, sizeof num, "%llu", (unsigned long long)v));
    } else if (t >= 0xe0 || (t >= 0xd0 && t <= 0xd3)) {
        int64_t v;
        if (mp_read_int(r, &v))
            return -1;
        s_put(o, num, (size_t)snprintf(num, sizeof num, "%lld", (long long)v));
    } else if ((t & 0xe0) == 0xa0 || (t >= 0xd9 && t <= 0xdb)) {
        const char *s;
        if (mp_read_str(r, &s, &n, UINT32_MAX))
            return -1;
        s_put_jstr(o, s, n);
    } else if (t >= 0xc4 && t <= 0xc6) {
        const uint8_t *b;
        if (mp_read_bin(r, &b, &n, UINT32_MAX))
            return -1;
        s_put(o, "\"", 1);
        for (uint32_t i = 0; i < n && !o->full; i++)
            s_put(o, num, (size_t)snprintf(num, sizeof num, "%02x", b[i]));
        s_put(o, "\"", 1);
    } else if ((t & 0xf0) == 0x90 || t == 0xdc || t == 0xdd) {
        if (mp_read_array(r, &n))
            return -1;
        s_put(o, "[", 1);
        for (uint32_t i = 0; i < n; i++) {
            if (i)
                s_put(o, ",", 1);
            if (s_json(r, o, depth - 1))
                return -1;
        }
        s_put(o, "]", 1);
    } else if ((t & 0xf0) == 0x80 || t == 0xde || t == 0xdf) {
        if (mp_read_map(r, &n))
            return -1;
        s_put(o, "{", 1);
        for (uint32_t i = 0; i < n; i++) {
            if (i)
                s_put(o, ",", 1);
            const char *k;
            uint32_t klen;
            if (mp_left(r) && ((*r->p & 0xe0) == 0xa0 || (*r->p >= 0xd9 && *r->p <= 0xdb))) {
                if (mp_read_str(r, &k, &klen, UINT32_MAX))
                    return -1;
                s_put_jstr(o, k, klen);
            } else {
                /* A non-string key: its own JSON text (cut at 128 bytes),
                 * as an escaped string, so the output stays JSON. */
                char kbuf[128];
                s_out_t ko = {kbuf, sizeof kbuf, 0, 0};
                if (s_json(r, &ko, depth - 1))
                    return -1;
                s_put_jstr(o, kbuf, ko.at);
            }
            s_put(o, ":", 1);
            if (s_json(r, o, depth - 1))
                return -1;
        }
        s_put(o, "}", 1);
    } else {
        const uint8_t *before = r->p;
        if (mp_skip(r, 0))
            return -1;
        s_put(o, num, (size_t)snprintf(num, sizeof num, "\"<type 0x%02x, %zu bytes>\"", t,
                                       (size_t)(r->p - before)));
    }
    return 0;
}

int mp_to_json(mp_reader_t *r, char *out, size_t cap, int max_depth)
{
    if (cap < 8)
        return -1;
    s_out_t o = {out, cap, 0, 0};
    int rc = r->err ? -1 : s_json(r, &o, max_depth);
    out[o.at] = '\0';
    return rc;
}

static int s_buf_write(void *data, const char *buf, size_t len)
{
    mp_buf_t *b = data;
    if (b->overflow)
        return -1;
    if (b->len + len > b->max) {
        b->overflow = 1;
        return -1;
    }
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len)
            cap *= 2;
        if (cap > b->max)
            cap = b->max;
        b->data = mem_realloc(b->data, cap);
        b->cap = cap;
    }
    if (len) /* an empty string may come with a NULL pointer */
        memcpy(b->data + b->len, buf, len);
    b->len += len;
    return 0;
}

void mp_buf_init(mp_buf_t *b, size_t max)
{
    memset(b, 0, sizeof *b);
    b->max = max;
    msgpack_packer_init(&b->pk, b, s_buf_write);
}

void mp_buf_reset(mp_buf_t *b)
{
    b->len = 0;
    b->overflow = 0;
}

void mp_buf_free(mp_buf_t *b)
{
    mem_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void mp_pack_str(mp_buf_t *b, const char *s, size_t len)
{
    msgpack_pack_str(&b->pk, len);
    msgpack_pack_str_body(&b->pk, s, len);
}

void mp_pack_cstr(mp_buf_t *b, const char *s)
{
    if (s)
        mp_pack_str(b, s, strlen(s));
    else
        msgpack_pack_nil(&b->pk);
}

void mp_pack_kv_str(mp_buf_t *b, const char *key, const char *s, size_t len)
{
    mp_pack_cstr(b, key);
    mp_pack_str(b, s, len);
}

void mp_pack_kv_cstr(mp_buf_t *b, const char *key, const char *s)
{
    mp_pack_cstr(b, key);
    mp_pack_cstr(b, s);
}

void mp_pack_kv_int(mp_buf_t *b, const char *key, int64_t v)
{
    mp_pack_cstr(b, key);
    msgpack_pack_int64(&b->pk, v);
}
