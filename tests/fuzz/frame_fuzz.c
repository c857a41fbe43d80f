/* frame_fuzz: frame_decode on any bytes. The first byte says whether a body
 * part followed. Property: a decoded frame re-encodes to the same bytes. */
#include "proto/frame.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int has_body = data[0] & 1;
    frame_t f;
    if (frame_decode(data + 1, size - 1, has_body, &f) != FRAME_OK)
        return 0;
    uint8_t out[FRAME_HEADER_MAX];
    size_t n = frame_encode(&f, out, sizeof out);
    /* Canonical encodings only round-trip to themselves; a decoded frame
     * always re-encodes and decodes to the same fields. */
    if (n == 0)
        abort();
    frame_t g;
    if (frame_decode(out, n, has_body, &g) != FRAME_OK)
        abort();
    if (g.type != f.type || g.id != f.id || g.capacity != f.capacity ||
        g.service_len != f.service_len || g.code_len != f.code_len ||
        g.message_len != f.message_len ||
        (f.service_len && memcmp(g.service, f.service, f.service_len)) ||
        (f.code_len && memcmp(g.code, f.code, f.code_len)) ||
        (f.message_len && memcmp(g.message, f.message, f.message_len)))
        abort();
    uint8_t again[FRAME_HEADER_MAX];
    size_t m = frame_encode(&g, again, sizeof again);
    if (m != n || memcmp(out, again, n) != 0)
        abort();
    return 0;
}
