/* inbox_test: frames come back in the order they went in, copied; the
 * bounds refuse what does not fit (cancels forced through). */
#include "inbox.h"

#include "tests/support/check.h"

#include <string.h>

int main(void)
{
    inbox_t *in = inbox_new(3, 10);
    char body[8] = "abcdef";
    CHECK(inbox_push(in, INBOX_REQUEST, 1, body, 6, 0) == 0);
    body[0] = 'X'; /* the inbox has its own copy */
    CHECK(inbox_push(in, INBOX_STREAM, 2, "12345", 5, 0) == -1); /* 11 bytes > 10 */
    CHECK(inbox_push(in, INBOX_STREAM, 2, "1234", 4, 0) == 0);
    CHECK(inbox_push_error(in, 3, "c", "m") == -1); /* 14 bytes */
    CHECK(inbox_count(in) == 2 && inbox_bytes(in) == 10);
    CHECK(inbox_push(in, INBOX_CANCEL, 4, NULL, 0, 0) == 0);
    CHECK(inbox_push(in, INBOX_CANCEL, 5, NULL, 0, 0) == -1); /* 4 items > 3 */
    CHECK(inbox_push(in, INBOX_CANCEL, 5, NULL, 0, 1) == 0);  /* forced */
    inbox_item_t *it = inbox_pop(in);
    CHECK(it && it->kind == INBOX_REQUEST && it->id == 1 && it->len == 6);
    CHECK(memcmp(it->body, "abcdef", 6) == 0);
    inbox_item_free(it);
    it = inbox_pop(in);
    CHECK(it && it->id == 2 && it->kind == INBOX_STREAM && memcmp(it->body, "1234", 4) == 0);
    inbox_item_free(it);
    CHECK(inbox_push_error(in, 6, "ab", "cd") == 0);
    uint64_t order[] = {4, 5, 6};
    for (int i = 0; i < 3; i++) {
        it = inbox_pop(in);
        CHECK(it && it->id == order[i]);
        if (i == 2)
            CHECK(it->kind == INBOX_ERROR && !strcmp((char *)it->body, "ab") &&
                  !strcmp((char *)it->body + 3, "cd"));
        inbox_item_free(it);
    }
    CHECK(inbox_pop(in) == NULL && inbox_count(in) == 0 && inbox_bytes(in) == 0);
    CHECK(inbox_push(in, INBOX_REPLY, 7, "x", 1, 0) == 0);
    inbox_destroy(&in); /* frees what is left */
    CHECK(in == NULL);
    return 0;
}
