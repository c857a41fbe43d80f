/* chunked_test: the decoder as a client would feed it, whole and split at
 * every byte, and each way a chunked body can be wrong. */
#include "chunked.h"

#include "tests/support/check.h"

#include <string.h>

/* Decodes text fed in pieces of step bytes; OUT the decoded body. */
static chunked_rc_t s_run(const char *text, size_t step, size_t max, sbuf_t *out, size_t *total)
{
    chunked_t d;
    chunked_init(&d);
    sbuf_init(out, max);
    size_t len = strlen(text), off = 0;
    chunked_rc_t rc = CHUNKED_MORE;
    while (off < len) {
        size_t n = len - off < step ? len - off : step, used = 0;
        rc = chunked_feed(&d, text + off, n, out, &used);
        off += used;
        if (rc != CHUNKED_MORE)
            break;
        CHECK(used == n);
    }
    *total = off;
    return rc;
}

static void s_ok(const char *text, const char *body)
{
    for (size_t step = 1; step <= strlen(text); step++) {
        sbuf_t out;
        size_t used;
        CHECK(s_run(text, step, 1 << 16, &out, &used) == CHUNKED_DONE);
        CHECK(used == strlen(text));
        CHECK(out.len == strlen(body) && !memcmp(sbuf_cstr(&out), body, out.len));
        sbuf_free(&out);
    }
}

static void s_bad(const char *text, chunked_rc_t want)
{
    sbuf_t out;
    size_t used;
    CHECK(s_run(text, 3, 64, &out, &used) == want);
    sbuf_free(&out);
}

int main(void)
{
    s_ok("0\r\n\r\n", "");
    s_ok("5\r\nhello\r\n0\r\n\r\n", "hello");
    s_ok("3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n", "{\"a\":1}");
    s_ok("A;name=value\r\n0123456789\r\n000\r\n\r\n", "0123456789");
    s_ok("2\r\nab\r\n0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n", "ab");
    s_ok("f\r\n0123456789abcde\r\n0\r\n\r\n", "0123456789abcde");

    /* The bytes after the body belong to the next request: not consumed. */
    {
        sbuf_t out;
        sbuf_init(&out, 64);
        chunked_t d;
        chunked_init(&d);
        const char *t = "1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        size_t used;
        CHECK(chunked_feed(&d, t, strlen(t), &out, &used) == CHUNKED_DONE);
        CHECK(used == strlen("1\r\nx\r\n0\r\n\r\n"));
        CHECK(chunked_feed(&d, "more", 4, &out, &used) == CHUNKED_DONE && used == 0);
        sbuf_free(&out);
    }

    s_bad("\r\n", CHUNKED_BAD_SIZE);
    s_bad("g\r\n", CHUNKED_BAD_SIZE);
    s_bad("-1\r\n", CHUNKED_BAD_SIZE);
    s_bad("1000000000000000\r\n", CHUNKED_BAD_SIZE); /* 16 digits */
    s_bad("5\nhello\r\n0\r\n\r\n", CHUNKED_BAD_CRLF); /* bare LF */
    s_bad("5\r\nhelloX\r\n", CHUNKED_BAD_CRLF);       /* data longer than its size */
    s_bad("5\rhello", CHUNKED_BAD_CRLF);
    s_bad("0\r\n\n", CHUNKED_BAD_CRLF);
    s_bad("0\r\nX: 1\n\r\n", CHUNKED_BAD_CRLF);
    s_bad("41\r\n", CHUNKED_TOO_LARGE); /* a size past the maximum: at once */
    s_bad("fffffffffffff\r\n", CHUNKED_TOO_LARGE);
    s_bad("3f\r\n", CHUNKED_MORE); /* size line only: more needed */
    {
        /* over the maximum (64 bytes) */
        char big[256] = "41\r\n";
        memset(big + 4, 'a', 65);
        strcpy(big + 69, "\r\n0\r\n\r\n");
        s_bad(big, CHUNKED_TOO_LARGE);
    }
    {
        char ext[CHUNKED_LINE_MAX + 32] = "1;";
        memset(ext + 2, 'e', CHUNKED_LINE_MAX + 1);
        s_bad(ext, CHUNKED_LONG_LINE);
    }
    CHECK(strcmp(chunked_strerror(CHUNKED_BAD_CRLF), "a chunk line does not end in CRLF") == 0);
    /* An error sticks. */
    {
        chunked_t d;
        chunked_init(&d);
        sbuf_t out;
        sbuf_init(&out, 64);
        size_t used;
        CHECK(chunked_feed(&d, "z", 1, &out, &used) == CHUNKED_BAD_SIZE);
        CHECK(chunked_feed(&d, "0\r\n\r\n", 5, &out, &used) != CHUNKED_DONE);
        sbuf_free(&out);
    }
    printf("chunked_test: ok\n");
    return 0;
}
