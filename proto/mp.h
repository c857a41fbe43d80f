/* mp: strict msgpack reading and bounded writing.
 *
 * Reading walks the buffer with a cursor and builds no object tree, so a
 * hostile length prefix cannot make it allocate: every container count is
 * checked against the bytes left before anything is read. Every read
 * returns 0, or -1 with the reason in r->err; after an error every later
 * read fails too, so a decoder can read all fields and check once.
 *
 * Writing packs with msgpack-c's packer into an mp_buf_t that grows up to a
 * maximum fixed at creation; packing past it sets overflow. */
#ifndef MAP_MP_H
#define MAP_MP_H
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    MP_OK = 0,
    MP_TRUNCATED, /* the value runs past the end of the buffer */
    MP_TYPE,      /* another type than the one asked for */
    MP_RANGE,     /* a number or length outside the allowed bounds */
    MP_DEPTH,     /* nested deeper than allowed */
} mp_err_t;

typedef struct {
    const uint8_t *p;   /* next byte */
    const uint8_t *end; /* one past the last byte */
    mp_err_t err;       /* first error met, MP_OK if none */
} mp_reader_t;

void mp_reader_init(mp_reader_t *r, const void *buf, size_t len);
const char *mp_strerror(mp_err_t err);
size_t mp_left(const mp_reader_t *r);

int mp_read_array(mp_reader_t *r, uint32_t *count);
int mp_read_map(mp_reader_t *r, uint32_t *count);
int mp_read_uint(mp_reader_t *r, uint64_t *value);   /* any non-negative int */
int mp_read_int(mp_reader_t *r, int64_t *value);
int mp_read_bool(mp_reader_t *r, int *value);
int mp_read_nil(mp_reader_t *r);
/* Returns 1 if the next value is nil (and consumes it), 0 if not. */
int mp_try_nil(mp_reader_t *r);
/* str: a view into the buffer, not NUL-terminated, at most max bytes. */
int mp_read_str(mp_reader_t *r, const char **str, uint32_t *len, uint32_t max);
int mp_read_bin(mp_reader_t *r, const uint8_t **bin, uint32_t *len, uint32_t max);
/* Skips one value of any type, nested at most max_depth deep. */
int mp_skip(mp_reader_t *r, int max_depth);
/* Writes one value as JSON into out (NUL-terminated, cut at cap with "..."),
 * nested at most max_depth. Binary is written as a string of hex. */
int mp_to_json(mp_reader_t *r, char *out, size_t cap, int max_depth);

typedef struct {
    uint8_t *data;    /* bytes packed so far */
    size_t len;       /* bytes used */
    size_t cap;       /* bytes allocated */
    size_t max;       /* bytes allowed */
    int overflow;     /* set when a write would pass max */
    msgpack_packer pk; /* packer writing into this buffer */
} mp_buf_t;

void mp_buf_init(mp_buf_t *b, size_t max);
void mp_buf_reset(mp_buf_t *b);   /* len = 0, overflow = 0; keeps memory */
void mp_buf_free(mp_buf_t *b);
/* Convenience packers on b->pk. */
void mp_pack_str(mp_buf_t *b, const char *s, size_t len);
void mp_pack_cstr(mp_buf_t *b, const char *s); /* NULL packs nil */
void mp_pack_kv_str(mp_buf_t *b, const char *key, const char *s, size_t len);
void mp_pack_kv_cstr(mp_buf_t *b, const char *key, const char *s);
void mp_pack_kv_int(mp_buf_t *b, const char *key, int64_t v);

#endif
