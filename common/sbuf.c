/* sbuf: bounded string building. The JSON escaper validates UTF-8 itself
 * (overlongs, surrogates and code points past U+10FFFF are invalid) so that
 * text from any peer renders as valid JSON. */
#include "sbuf.h"

#include "utf8.h"

#include "mem.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

void sbuf_init(sbuf_t *s, size_t max)
{
    memset(s, 0, sizeof *s);
    s->max = max;
}

void sbuf_reset(sbuf_t *s)
{
    s->len = 0;
    s->overflow = 0;
    if (s->data)
        s->data[0] = '\0';
}

void sbuf_free(sbuf_t *s)
{
    mem_free(s->data);
    memset(s, 0, sizeof *s);
}

static int s_reserve(sbuf_t *s, size_t more)
{
    if (s->overflow || more > s->max || s->len + more > s->max) {
        s->overflow = 1;
        return -1;
    }
    if (s->len + more + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->len + more + 1)
            cap *= 2;
        s->data = mem_realloc(s->data, cap);
        s->cap = cap;
    }
    return 0;
}

int sbuf_cat(sbuf_t *s, const void *data, size_t len)
{
    if (s_reserve(s, len))
        return -1;
    if (len)
        memcpy(s->data + s->len, data, len);
    s->len += len;
    s->data[s->len] = '\0';
    return 0;
}

int sbuf_cats(sbuf_t *s, const char *str)
{
    return sbuf_cat(s, str, strlen(str));
}

int sbuf_catf(sbuf_t *s, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    if ((size_t)n < sizeof small)
        return sbuf_cat(s, small, (size_t)n);
    if (s_reserve(s, (size_t)n))
        return -1;
    va_start(ap, fmt);
    vsnprintf(s->data + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
    return 0;
}

int sbuf_cat_u64(sbuf_t *s, unsigned long long v)
{
    char digits[24];
    size_t n = sizeof digits;
    do {
        digits[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return sbuf_cat(s, digits + n, sizeof digits - n);
}

int sbuf_json_str(sbuf_t *s, const char *str, size_t len)
{
    const unsigned char *p = (const unsigned char *)str;
    sbuf_cat(s, "\"", 1);
    size_t run = 0; /* bytes copied as they are, pending */
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            run++;
            i++;
            continue;
        }
        size_t n = c >= 0x80 ? utf8_seq_len(p + i, len - i) : 0;
        if (n > 1) {
            run += n;
            i += n;
            continue;
        }
        sbuf_cat(s, p + i - run, run);
        run = 0;
        char esc[8];
        switch (c) {
        case '"': sbuf_cat(s, "\\\"", 2); break;
        case '\\': sbuf_cat(s, "\\\\", 2); break;
        case '\n': sbuf_cat(s, "\\n", 2); break;
        case '\r': sbuf_cat(s, "\\r", 2); break;
        case '\t': sbuf_cat(s, "\\t", 2); break;
        default:
            if (c < 0x20) {
                snprintf(esc, sizeof esc, "\\u%04x", c);
                sbuf_cat(s, esc, 6);
            } else {
                sbuf_cat(s, "\\ufffd", 6); /* invalid UTF-8 byte */
            }
        }
        i++;
    }
    sbuf_cat(s, p + len - run, run);
    return sbuf_cat(s, "\"", 1);
}

const char *sbuf_cstr(sbuf_t *s)
{
    return s->data ? s->data : "";
}
