/* outq_test: order, byte accounting, the maximum (a refused push changes
 * nothing), one message past it into an empty queue, headroom before the
 * data, clear. */
#include "outq.h"

#include "tests/support/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    outq_t q;
    outq_init(&q, 10, 16);
    CHECK(outq_take(&q) == NULL);
    CHECK(outq_push(&q, "abc", 3) == 0);
    CHECK(outq_push(&q, "", 0) == 0);
    CHECK(outq_push(&q, "defgh", 5) == 0);
    CHECK(q.bytes == 8 && q.count == 3);
    /* Past the maximum: refused, nothing changes. */
    CHECK(outq_push(&q, "xyz", 3) == -1);
    CHECK(q.bytes == 8 && q.count == 3);
    CHECK(outq_push(&q, "ij", 2) == 0); /* exactly the maximum */
    CHECK(q.bytes == 10 && q.count == 4);
    CHECK(outq_push(&q, "k", 1) == -1);
    /* Oldest first, data after the headroom, which is the caller's. */
    const char *want[] = {"abc", "", "defgh", "ij"};
    for (int i = 0; i < 4; i++) {
        outq_msg_t *m = outq_take(&q);
        CHECK(m != NULL && m->len == strlen(want[i]));
        unsigned char *d = outq_data(&q, m);
        CHECK(d == m->buf + 16);
        CHECK(memcmp(d, want[i], m->len) == 0);
        memset(m->buf, 0xAA, 16); /* lws writes its framing here */
        outq_msg_free(m);
    }
    CHECK(outq_take(&q) == NULL && q.bytes == 0 && q.count == 0 && !q.head && !q.tail);
    /* After draining, the whole maximum is free again; clear frees all. */
    CHECK(outq_push(&q, "0123456789", 10) == 0);
    CHECK(outq_push(&q, "x", 1) == -1);
    outq_clear(&q);
    CHECK(q.bytes == 0 && q.count == 0 && outq_take(&q) == NULL);
    CHECK(outq_push(&q, "again", 5) == 0);
    outq_clear(&q);
    /* An empty queue takes one message past the maximum; behind it, up
     * to the maximum of others, never a second large one. */
    outq_init(&q, 4, 0);
    CHECK(outq_push(&q, "larger", 6) == 0 && q.bytes == 6);
    CHECK(outq_push(&q, "huge!", 5) == -1 && q.count == 1);
    CHECK(outq_push(&q, "ab", 2) == 0 && outq_push(&q, "cd", 2) == 0 && q.count == 3);
    CHECK(outq_push(&q, "e", 1) == -1 && q.bytes == 10);
    outq_msg_free(outq_take(&q)); /* the large one written: the rest counts */
    CHECK(outq_push(&q, "e", 1) == -1 && q.bytes == 4);
    outq_clear(&q);
    printf("outq_test: ok\n");
    return 0;
}
