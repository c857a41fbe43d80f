/* sbuf_test: bounded appends and JSON strings from any bytes. */
#include "sbuf.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

static const char *s_json(sbuf_t *s, const char *in, size_t len)
{
    sbuf_reset(s);
    sbuf_json_str(s, in, len);
    return sbuf_cstr(s);
}

int main(void)
{
    sbuf_t s;
    sbuf_init(&s, 1 << 16);
    assert(!strcmp(s_json(&s, "plain", 5), "\"plain\""));
    assert(!strcmp(s_json(&s, "q\"b\\n\nt\t\x01", 9), "\"q\\\"b\\\\n\\nt\\t\\u0001\""));
    assert(!strcmp(s_json(&s, "h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 12), "\"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""));
    /* Invalid UTF-8 becomes U+FFFD: lone continuation, overlong, surrogate,
     * past U+10FFFF, truncated sequence. */
    assert(!strcmp(s_json(&s, "a\x80z", 3), "\"a\\ufffdz\""));
    assert(!strcmp(s_json(&s, "\xc0\xaf", 2), "\"\\ufffd\\ufffd\""));
    assert(!strcmp(s_json(&s, "\xed\xa0\x80", 3), "\"\\ufffd\\ufffd\\ufffd\""));
    assert(!strcmp(s_json(&s, "\xf4\x90\x80\x80", 4), "\"\\ufffd\\ufffd\\ufffd\\ufffd\""));
    assert(!strcmp(s_json(&s, "\xe2\x82", 2), "\"\\ufffd\\ufffd\""));
    assert(!strcmp(s_json(&s, "nul\0x", 5), "\"nul\\u0000x\""));
    sbuf_reset(&s);
    assert(sbuf_cat_u64(&s, 0) == 0 && sbuf_cat_u64(&s, 18446744073709551615ULL) == 0);
    assert(!strcmp(sbuf_cstr(&s), "018446744073709551615"));
    sbuf_free(&s);
    /* The maximum holds and overflow sticks. */
    sbuf_init(&s, 8);
    assert(sbuf_cats(&s, "1234") == 0 && sbuf_catf(&s, "%d", 5678) == 0);
    assert(sbuf_cats(&s, "9") == -1 && s.overflow && s.len == 8);
    assert(sbuf_cats(&s, "") == -1);
    sbuf_reset(&s);
    assert(!s.overflow && s.len == 0 && sbuf_cats(&s, "ok") == 0);
    sbuf_free(&s);
    printf("sbuf_test: ok\n");
    return 0;
}
