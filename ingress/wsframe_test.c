/* wsframe_test: headers at every length boundary, the close frame and its
 * reason cut at a character boundary, packing queued messages (order,
 * the byte bound, a head too large for a batch left for the caller), each
 * checked by parsing the bytes back as RFC 6455 frames. */
#include "wsframe.h"

#include "tests/support/check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Parses one unmasked frame at p: its opcode, payload and size. */
static size_t s_parse(const unsigned char *p, int *op, const unsigned char **payload, uint64_t *len)
{
    CHECK((p[0] & 0x80) && !(p[0] & 0x70)); /* FIN, no RSV */
    CHECK(!(p[1] & 0x80));                  /* a server's frames are unmasked */
    *op = p[0] & 0x0f;
    uint64_t n = p[1] & 0x7f;
    size_t h = 2;
    if (n == 126) {
        n = (uint64_t)p[2] << 8 | p[3];
        CHECK(n >= 126); /* the shortest form (RFC 6455 §5.2) */
        h = 4;
    } else if (n == 127) {
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | p[2 + i];
        CHECK(n > 0xffff && !(n >> 63));
        h = 10;
    }
    *payload = p + h;
    *len = n;
    return h + (size_t)n;
}

static void s_header_lengths(void)
{
    static const size_t lens[] = {0, 1, 125, 126, 127, 65535, 65536, 1 << 20};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        unsigned char *buf = calloc(1, WSFRAME_HDR_MAX + lens[i]);
        size_t h = wsframe_text_hdr(buf, lens[i]);
        CHECK(h == (lens[i] < 126 ? 2u : lens[i] <= 0xffff ? 4u : 10u));
        int op;
        const unsigned char *pl;
        uint64_t n;
        CHECK(s_parse(buf, &op, &pl, &n) == h + lens[i]);
        CHECK(op == 1 && n == lens[i] && pl == buf + h);
        free(buf);
    }
}

static void s_close(void)
{
    unsigned char out[2 + WSFRAME_CLOSE_MAX];
    size_t n = wsframe_close(out, 4008, "too slow");
    int op;
    const unsigned char *pl;
    uint64_t len;
    CHECK(s_parse(out, &op, &pl, &len) == n && op == 8 && len == 10);
    CHECK(pl[0] == 4008 >> 8 && pl[1] == (4008 & 0xff) && !memcmp(pl + 2, "too slow", 8));
    CHECK(wsframe_close(out, 1000, NULL) == 4);

    char reason[300];
    memset(reason, 'r', sizeof reason);
    reason[sizeof reason - 1] = '\0';
    CHECK(wsframe_close(out, 1000, reason) == 2 + WSFRAME_CLOSE_MAX); /* 123 bytes of reason */
    /* "é" (2 bytes) straddling the cut: it goes whole */
    memset(reason, 'r', sizeof reason);
    reason[122] = (char)0xc3;
    reason[123] = (char)0xa9;
    reason[124] = '\0';
    n = wsframe_close(out, 1000, reason);
    CHECK(n == 4 + 122 && out[1] == 2 + 122 && (unsigned char)out[4 + 121] == 'r');
}

static void s_pack(void)
{
    outq_t q;
    outq_init(&q, 1 << 20, 16);
    CHECK(outq_push(&q, "one", 3) == 0);
    CHECK(outq_push(&q, "", 0) == 0);
    char mid[200];
    memset(mid, 'm', sizeof mid);
    CHECK(outq_push(&q, mid, sizeof mid) == 0);
    CHECK(outq_push(&q, "last", 4) == 0);

    /* The bound reserves a full header (10 bytes) for each frame it takes:
     * the third needs 7 + 10 + 200 = 217, the fourth 211 + 10 + 4 = 225. */
    unsigned char out[512];
    size_t max = 220;
    size_t n = wsframe_pack(&q, out, max);
    CHECK(n == 5 + 2 + 204);
    CHECK(q.count == 1 && q.bytes == 4);
    const unsigned char *p = out, *pl;
    int op;
    uint64_t len;
    p += s_parse(p, &op, &pl, &len);
    CHECK(op == 1 && len == 3 && !memcmp(pl, "one", 3));
    p += s_parse(p, &op, &pl, &len);
    CHECK(op == 1 && len == 0);
    p += s_parse(p, &op, &pl, &len);
    CHECK(op == 1 && len == sizeof mid && !memcmp(pl, mid, sizeof mid));
    CHECK(p == out + n);

    CHECK(wsframe_pack(&q, out, sizeof out) == 6 && q.count == 0 && !q.head);
    CHECK(s_parse(out, &op, &pl, &len) == 6 && len == 4 && !memcmp(pl, "last", 4));
    CHECK(wsframe_pack(&q, out, sizeof out) == 0); /* empty */

    /* a head larger than the batch: nothing taken, the caller frames it */
    CHECK(outq_push(&q, mid, sizeof mid) == 0);
    CHECK(wsframe_pack(&q, out, 100) == 0 && q.count == 1);
    outq_clear(&q);
}

int main(void)
{
    s_header_lengths();
    s_close();
    s_pack();
    return 0;
}
