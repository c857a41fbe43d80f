/* sse_fuzz: the event-stream parser on random input fed in random pieces.
 *
 * Input layout: byte 0 picks the maximum line/event size (1..256, or 64 KiB
 * when odd bytes say so), byte 1 the flags and a seed for the split points,
 * the rest is the stream. Property: the events (type, data, id) and the
 * final result are the same whether the stream is fed in one piece, in
 * random pieces, or one byte at a time; and no event is longer than the
 * maximum. */
#include "agents/bridge/sse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint8_t *buf;
    size_t len, cap;
    size_t max;
} rec_t;

static void s_put(rec_t *r, const void *p, size_t n)
{
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 256;
        while (cap < r->len + n + 1)
            cap *= 2;
        r->buf = realloc(r->buf, cap);
        if (!r->buf)
            abort();
        r->cap = cap;
    }
    memcpy(r->buf + r->len, p, n);
    r->len += n;
}

static int s_record(void *arg, const sse_event_t *ev)
{
    rec_t *r = arg;
    /* the default type "message" may be longer than a tiny maximum */
    if (ev->data_len > r->max || ev->type_len > (r->max > 7 ? r->max : 7) || ev->id_len > r->max)
        abort();
    if (ev->type[ev->type_len] || ev->data[ev->data_len] || ev->id[ev->id_len])
        abort();
    uint64_t lens[3] = {ev->type_len, ev->data_len, ev->id_len};
    s_put(r, lens, sizeof lens);
    s_put(r, ev->type, ev->type_len);
    s_put(r, ev->data, ev->data_len);
    s_put(r, ev->id, ev->id_len);
    return 0;
}

/* mode 0: whole; 1: one byte at a time; 2: pieces from the seed. */
static sse_err_t s_run(const uint8_t *in, size_t len, size_t max, int flags, int mode,
                       uint32_t seed, rec_t *r)
{
    r->len = 0;
    r->max = max;
    sse_t *p = sse_new(max, flags, s_record, r);
    size_t at = 0;
    sse_err_t rc = SSE_OK;
    while (at < len) {
        size_t n = len - at;
        if (mode == 1) {
            n = 1;
        } else if (mode == 2) {
            seed = seed * 1103515245u + 12345u;
            size_t piece = 1 + (seed >> 16) % 17;
            n = piece < n ? piece : n;
        }
        rc = sse_feed(p, in + at, n);
        at += n;
    }
    if (len == 0)
        rc = sse_feed(p, in, 0);
    int pending;
    if (sse_finish(p, &pending) != rc)
        abort();
    sse_destroy(&p);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max = (data[0] & 1) ? 65536 : 1 + (size_t)(data[0] >> 1) * 2;
    int flags = data[1] & 1 ? SSE_TYPED_EMPTY : 0;
    uint32_t seed = data[1];
    const uint8_t *in = data + 2;
    size_t len = size - 2;

    rec_t whole = {0}, other = {0};
    sse_err_t rc = s_run(in, len, max, flags, 0, seed, &whole);
    for (int mode = 1; mode <= 2; mode++) {
        sse_err_t rc2 = s_run(in, len, max, flags, mode, seed, &other);
        if (rc2 != rc || other.len != whole.len ||
            (whole.len && memcmp(other.buf, whole.buf, whole.len) != 0))
            abort();
    }
    free(whole.buf);
    free(other.buf);
    return 0;
}
