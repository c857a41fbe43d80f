/* utf8: text from peers made valid UTF-8 before it is stored, so that
 * every later answer built from it (an agent's history, a JSON page)
 * encodes. Each byte that does not start a valid sequence (overlong forms,
 * surrogates and code points past U+10FFFF included) becomes U+FFFD, as
 * sbuf_json_str does in JSON. */
#ifndef MAP_UTF8_H
#define MAP_UTF8_H
#include <stddef.h>

/* Length of the valid sequence at p (1..4 bytes of left), or 0 when p[0]
 * starts none. */
size_t utf8_seq_len(const unsigned char *p, size_t left);
/* 1 when s[0..len) is valid UTF-8. */
int utf8_valid(const char *s, size_t len);
/* A copy of s with every invalid byte replaced by U+FFFD (EF BF BD),
 * NUL-terminated, the caller's to free (mem_free); *out_len its length.
 * NULL when s is valid already (nothing to replace). */
char *utf8_clean(const char *s, size_t len, size_t *out_len);

#endif
