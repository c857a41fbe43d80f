/* wsframe: see wsframe.h. */
#include "wsframe.h"

#include <stdint.h>
#include <string.h>

size_t wsframe_text_hdr(unsigned char *h, size_t len)
{
    h[0] = 0x81; /* FIN, text */
    if (len < 126) {
        h[1] = (unsigned char)len;
        return 2;
    }
    if (len <= 0xffff) {
        h[1] = 126;
        h[2] = (unsigned char)(len >> 8);
        h[3] = (unsigned char)len;
        return 4;
    }
    h[1] = 127;
    for (int i = 0; i < 8; i++)
        h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
    return 10;
}

size_t wsframe_close(unsigned char *out, unsigned code, const char *reason)
{
    size_t rl = reason ? strlen(reason) : 0;
    if (rl > WSFRAME_CLOSE_MAX - 2) {
        rl = WSFRAME_CLOSE_MAX - 2;
        while (rl > 0 && ((unsigned char)reason[rl] & 0xc0) == 0x80)
            rl--; /* not inside a UTF-8 sequence: the reason must stay valid */
    }
    out[0] = 0x88; /* FIN, close */
    out[1] = (unsigned char)(2 + rl);
    out[2] = (unsigned char)(code >> 8);
    out[3] = (unsigned char)code;
    if (rl)
        memcpy(out + 4, reason, rl);
    return 4 + rl;
}

size_t wsframe_pack(outq_t *q, unsigned char *out, size_t max)
{
    size_t n = 0;
    while (q->head && n + WSFRAME_HDR_MAX + q->head->len <= max) {
        outq_msg_t *m = outq_take(q);
        n += wsframe_text_hdr(out + n, m->len);
        memcpy(out + n, outq_data(q, m), m->len);
        n += m->len;
        outq_msg_free(m);
    }
    return n;
}
