/* chunked_fuzz: the chunked-body decoder (ingress/chunked.c) on any bytes.
 * Properties: never reads past its input or the body maximum; the same
 * input fed whole and split in two (at a point the input's first byte
 * picks) gives the same result, the same body and the same bytes used. */
#include "ingress/chunked.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static chunked_rc_t s_run(const uint8_t *data, size_t size, size_t split, sbuf_t *out,
                          size_t *used)
{
    chunked_t d;
    chunked_init(&d);
    size_t u1 = 0, u2 = 0;
    chunked_rc_t rc = chunked_feed(&d, data, split, out, &u1);
    if (rc == CHUNKED_MORE && split < size)
        rc = chunked_feed(&d, data + split, size - split, out, &u2);
    *used = u1 + u2;
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t split = (size_t)data[0] % size;
    data++, size--;
    if (split > size)
        split = size;
    sbuf_t a, b;
    sbuf_init(&a, 4096);
    sbuf_init(&b, 4096);
    size_t ua, ub;
    chunked_rc_t ra = s_run(data, size, size, &a, &ua);
    chunked_rc_t rb = s_run(data, size, split, &b, &ub);
    if (ra != rb || a.len != b.len || (a.len && memcmp(a.data, b.data, a.len)) || a.len > 4096 ||
        ua > size)
        abort();
    if (ra == CHUNKED_DONE && ua != ub)
        abort();
    sbuf_free(&a);
    sbuf_free(&b);
    return 0;
}
