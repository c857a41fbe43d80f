/* chunked: see chunked.h. One state per position in the grammar; every
 * byte is looked at once; nothing is allocated but the output. */
#include "chunked.h"

enum {
    S_SIZE,      /* hex digits of a size */
    S_EXT,       /* after ';' until CR */
    S_SIZE_LF,   /* CR seen after the size line */
    S_DATA,      /* left bytes of data */
    S_DATA_CR,   /* CR after data */
    S_DATA_LF,   /* LF after data */
    S_LINE0,     /* start of a trailer line (or the final CRLF) */
    S_TRAILER,   /* inside a trailer line */
    S_TRAILER_LF,
    S_END_LF,    /* the final CR seen */
    S_DONE,
    S_ERROR,
};

void chunked_init(chunked_t *d)
{
    d->state = S_SIZE;
    d->left = 0;
    d->digits = 0;
    d->line = 0;
}

static int s_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static chunked_rc_t s_fail(chunked_t *d, chunked_rc_t rc, size_t i, size_t *used)
{
    d->state = S_ERROR;
    *used = i;
    return rc;
}

chunked_rc_t chunked_feed(chunked_t *d, const void *in, size_t len, sbuf_t *out, size_t *used)
{
    const unsigned char *p = in;
    size_t i = 0;
    if (d->state == S_DONE) {
        *used = 0;
        return CHUNKED_DONE;
    }
    if (d->state == S_ERROR) {
        *used = 0;
        return CHUNKED_BAD_SIZE;
    }
    while (i < len) {
        unsigned char c = p[i];
        switch (d->state) {
        case S_SIZE: {
            int h = s_hex(c);
            if (h >= 0) {
                if (++d->digits > 15)
                    return s_fail(d, CHUNKED_BAD_SIZE, i, used);
                d->left = d->left * 16 + (uint64_t)h;
            } else if (d->digits == 0) {
                return s_fail(d, CHUNKED_BAD_SIZE, i, used);
            } else if (c == ';' || c == ' ' || c == '\t') {
                d->state = S_EXT;
                d->line = 0;
            } else if (c == '\r') {
                d->state = S_SIZE_LF;
            } else {
                return s_fail(d, c == '\n' ? CHUNKED_BAD_CRLF : CHUNKED_BAD_SIZE, i, used);
            }
            i++;
            break;
        }
        case S_EXT:
            if (c == '\r')
                d->state = S_SIZE_LF;
            else if (c == '\n')
                return s_fail(d, CHUNKED_BAD_CRLF, i, used);
            else if (++d->line > CHUNKED_LINE_MAX)
                return s_fail(d, CHUNKED_LONG_LINE, i, used);
            i++;
            break;
        case S_SIZE_LF:
            if (c != '\n')
                return s_fail(d, CHUNKED_BAD_CRLF, i, used);
            if (d->left > out->max - out->len) /* say so now, not after the data */
                return s_fail(d, CHUNKED_TOO_LARGE, i, used);
            i++;
            d->digits = 0;
            if (d->left == 0) {
                d->state = S_LINE0;
                d->line = 0;
            } else {
                d->state = S_DATA;
            }
            break;
        case S_DATA: {
            size_t n = len - i;
            if ((uint64_t)n > d->left)
                n = (size_t)d->left;
            if (sbuf_cat(out, p + i, n) != 0)
                return s_fail(d, CHUNKED_TOO_LARGE, i, used);
            i += n;
            d->left -= n;
            if (d->left == 0)
                d->state = S_DATA_CR;
            break;
        }
        case S_DATA_CR:
            if (c != '\r')
                return s_fail(d, CHUNKED_BAD_CRLF, i, used);
            d->state = S_DATA_LF;
            i++;
            break;
        case S_DATA_LF:
            if (c != '\n')
                return s_fail(d, CHUNKED_BAD_CRLF, i, used);
            d->state = S_SIZE;
            i++;
            break;
        case S_LINE0:
            if (c == '\r') {
                d->state = S_END_LF;
            } else if (c == '\n') {
                return s_fail(d, CHUNKED_BAD_CRLF, i, used);
            } else {
                d->state = S_TRAILER;
                d->line = 1;
            }
            i++;
            break;
        case S_TRAILER:
            if (c == '\r')
                d->state = S_TRAILER_LF;
            else if (c == '\n')
                return s_fail(d, CHUNKED_BAD_CRLF, i, used);
            else if (++d->line > CHUNKED_LINE_MAX)
                return s_fail(d, CHUNKED_LONG_LINE, i, used);
            i++;
            break;
        case S_TRAILER_LF:
            if (c != '\n')
                return s_fail(d, CHUNKED_BAD_CRLF, i, used);
            d->state = S_LINE0;
            d->line = 0;
            i++;
            break;
        case S_END_LF:
            if (c != '\n')
                return s_fail(d, CHUNKED_BAD_CRLF, i, used);
            d->state = S_DONE;
            *used = i + 1;
            return CHUNKED_DONE;
        }
    }
    *used = i;
    return CHUNKED_MORE;
}

const char *chunked_strerror(chunked_rc_t rc)
{
    switch (rc) {
    case CHUNKED_MORE:
        return "more bytes are needed";
    case CHUNKED_DONE:
        return "done";
    case CHUNKED_BAD_SIZE:
        return "a chunk size is not 1 to 15 hex digits";
    case CHUNKED_BAD_CRLF:
        return "a chunk line does not end in CRLF";
    case CHUNKED_LONG_LINE:
        return "a chunk extension or trailer line is too long";
    case CHUNKED_TOO_LARGE:
        return "the body is over the maximum size";
    }
    return "unknown";
}
