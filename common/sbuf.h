/* sbuf: a growing byte string with a maximum fixed at creation (curl's
 * dynbuf). Appending past the maximum sets overflow and appends nothing more;
 * callers check overflow once at the end. Also writes JSON strings: any
 * bytes in, valid JSON out (invalid UTF-8 becomes U+FFFD). */
#ifndef MAP_SBUF_H
#define MAP_SBUF_H
#include <stddef.h>

typedef struct {
    char *data;   /* NUL-terminated when len > 0 or after sbuf_cstr */
    size_t len;   /* bytes used, without the NUL */
    size_t cap;   /* bytes allocated */
    size_t max;   /* bytes allowed */
    int overflow; /* set once an append did not fit */
} sbuf_t;

void sbuf_init(sbuf_t *s, size_t max);
void sbuf_reset(sbuf_t *s);            /* empties; keeps memory */
void sbuf_free(sbuf_t *s);
int sbuf_cat(sbuf_t *s, const void *data, size_t len); /* 0, or -1 on overflow */
int sbuf_cats(sbuf_t *s, const char *str);
int sbuf_catf(sbuf_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends an integer in decimal (no printf on hot paths). */
int sbuf_cat_u64(sbuf_t *s, unsigned long long v);
/* Appends str as a quoted, escaped JSON string. */
int sbuf_json_str(sbuf_t *s, const char *str, size_t len);
const char *sbuf_cstr(sbuf_t *s);      /* data, never NULL */

#endif
