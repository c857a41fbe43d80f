/* chunked: a strict, incremental decoder of HTTP/1.1 chunked request
 * bodies (RFC 9112 §7.1). lws 4.1 hands a chunked body to us raw, as if it
 * were the body itself, so the edge decodes it here.
 *
 *   chunk      = size-in-hex [ ";" ext ] CRLF data CRLF
 *   last-chunk = "0"... [ ";" ext ] CRLF, then trailer lines, then CRLF
 *
 * Bounds: a size of at most 15 hex digits, extensions and each trailer line
 * at most CHUNKED_LINE_MAX bytes, the decoded body at most the sbuf's
 * maximum. Bare LF is refused (request smuggling hides in the difference). */
#ifndef MAP_CHUNKED_H
#define MAP_CHUNKED_H
#include "common/sbuf.h"

#include <stddef.h>
#include <stdint.h>

#define CHUNKED_LINE_MAX 1024

typedef enum {
    CHUNKED_MORE = 0,  /* every byte used; more are needed */
    CHUNKED_DONE,      /* the body ended (*used tells where) */
    CHUNKED_BAD_SIZE,  /* not a hex size, or too many digits */
    CHUNKED_BAD_CRLF,  /* a CR not followed by LF, a bare LF, data not followed by CRLF */
    CHUNKED_LONG_LINE, /* an extension or trailer line past CHUNKED_LINE_MAX */
    CHUNKED_TOO_LARGE, /* the decoded body is over the maximum */
} chunked_rc_t;

typedef struct {
    int state;          /* private */
    uint64_t left;      /* data bytes left in this chunk */
    unsigned digits;    /* size digits seen */
    size_t line;        /* bytes of the current extension / trailer line */
} chunked_t;

void chunked_init(chunked_t *d);
/* Feeds len bytes; decoded data is appended to out. OUT used: bytes of in
 * consumed (len unless DONE or an error). After DONE or an error the
 * decoder stays there. */
chunked_rc_t chunked_feed(chunked_t *d, const void *in, size_t len, sbuf_t *out, size_t *used);
const char *chunked_strerror(chunked_rc_t rc);

#endif
