/* sse: incremental event-stream parsing.
 *
 * A line that lies whole inside one chunk is parsed in place; only the tail
 * of a chunk (a line still open) is copied into the line buffer, so a stream
 * fed in large chunks is copied once, into the event's data. A CR ends a
 * line at once (an event is never held back waiting for the next chunk);
 * skip_lf remembers it so that an LF that follows, in this chunk or the
 * next, is taken as the second half of a CRLF and not as a blank line.
 *
 * The BOM is recognised when the first line is complete: it can only be at
 * the start of that line, and deciding then needs no state of its own for a
 * BOM split across chunks.
 *
 * Invariants: line.len <= max; data.len <= max + 1 (each value is followed
 * by "\n" until dispatch removes the last one); type and id are copies of
 * one line's value, so <= max. After the first non-OK result, state keeps
 * it and nothing more is parsed, so the outcome does not depend on how the
 * input was split (the fuzz target checks that property). */
#include "sse.h"

#include "common/mem.h"
#include "common/sbuf.h"

#include <stdint.h>
#include <string.h>

struct sse_t {
    sse_event_fn fn;   /* event callback */
    void *arg;         /* its argument */
    size_t max;        /* largest line and event data */
    int flags;         /* SSE_TYPED_EMPTY */
    sse_err_t state;   /* sticky result */
    int started;       /* the first line is complete (BOM decided) */
    int skip_lf;       /* the last line ended with CR */
    int open;          /* a field line since the last dispatch */
    long long retry;   /* reconnection time, -1 if none */
    sbuf_t line;       /* the open line, across chunks */
    sbuf_t data;       /* data buffer */
    sbuf_t type;       /* event type buffer */
    sbuf_t id;         /* last event id buffer */
};

sse_t *sse_new(size_t max, int flags, sse_event_fn fn, void *arg)
{
    sse_t *self = mem_alloc(sizeof *self);
    self->fn = fn;
    self->arg = arg;
    self->max = max ? max : 1;
    self->flags = flags;
    self->retry = -1;
    sbuf_init(&self->line, self->max);
    sbuf_init(&self->data, self->max + 1);
    sbuf_init(&self->type, self->max);
    sbuf_init(&self->id, self->max);
    return self;
}

void sse_destroy(sse_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    sse_t *self = *self_p;
    sbuf_free(&self->line);
    sbuf_free(&self->data);
    sbuf_free(&self->type);
    sbuf_free(&self->id);
    mem_free(self);
    *self_p = NULL;
}

const char *sse_strerror(sse_err_t err)
{
    switch (err) {
    case SSE_OK: return "ok";
    case SSE_STOPPED: return "stopped";
    case SSE_E_LINE: return "line too long";
    case SSE_E_EVENT: return "event too large";
    }
    return "unknown";
}

long long sse_retry(const sse_t *self)
{
    return self->retry;
}

static void s_dispatch(sse_t *self)
{
    self->open = 0;
    if (self->data.len == 0) {
        if (!(self->flags & SSE_TYPED_EMPTY) || self->type.len == 0) {
            sbuf_reset(&self->type);
            return;
        }
    } else {
        self->data.len--; /* the "\n" after the last value */
        self->data.data[self->data.len] = '\0';
    }
    sse_event_t ev = {
        .type = self->type.len ? self->type.data : "message",
        .type_len = self->type.len ? self->type.len : 7,
        .data = sbuf_cstr(&self->data),
        .data_len = self->data.len,
        .id = sbuf_cstr(&self->id),
        .id_len = self->id.len,
    };
    int stop = self->fn(self->arg, &ev);
    sbuf_reset(&self->data);
    sbuf_reset(&self->type);
    if (stop)
        self->state = SSE_STOPPED;
}

static int s_is(const char *field, size_t flen, const char *name)
{
    return strlen(name) == flen && memcmp(field, name, flen) == 0;
}

/* Digits only, at most 18 of them (so no overflow); else ignored. */
static void s_retry(sse_t *self, const char *value, size_t vlen)
{
    if (vlen == 0 || vlen > 18)
        return;
    long long v = 0;
    for (size_t i = 0; i < vlen; i++) {
        if (value[i] < '0' || value[i] > '9')
            return;
        v = v * 10 + (value[i] - '0');
    }
    self->retry = v;
}

static void s_line(sse_t *self, const char *line, size_t len)
{
    if (!self->started) {
        self->started = 1;
        if (len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
            line += 3;
            len -= 3;
        }
    }
    if (len == 0) {
        s_dispatch(self);
        return;
    }
    if (line[0] == ':')
        return;
    const char *colon = memchr(line, ':', len);
    size_t flen = colon ? (size_t)(colon - line) : len;
    const char *value = colon ? colon + 1 : line + len;
    size_t vlen = len - flen - (colon ? 1 : 0);
    if (vlen > 0 && value[0] == ' ') {
        value++;
        vlen--;
    }
    self->open = 1;
    if (s_is(line, flen, "data")) {
        if (self->data.len + vlen + 1 > self->max + 1) {
            self->state = SSE_E_EVENT;
            return;
        }
        sbuf_cat(&self->data, value, vlen);
        sbuf_cat(&self->data, "\n", 1);
    } else if (s_is(line, flen, "event")) {
        sbuf_reset(&self->type);
        sbuf_cat(&self->type, value, vlen);
    } else if (s_is(line, flen, "id")) {
        if (!memchr(value, '\0', vlen)) {
            sbuf_reset(&self->id);
            sbuf_cat(&self->id, value, vlen);
        }
    } else if (s_is(line, flen, "retry")) {
        s_retry(self, value, vlen);
    }
}

sse_err_t sse_feed(sse_t *self, const void *buf, size_t len)
{
    const char *p = buf;
    const char *end = p + len;
    while (self->state == SSE_OK && p < end) {
        if (self->skip_lf) {
            self->skip_lf = 0;
            if (*p == '\n') {
                p++;
                continue;
            }
        }
        const char *q = p;
        while (q < end && *q != '\n' && *q != '\r')
            q++;
        if (q == end) {
            if (sbuf_cat(&self->line, p, (size_t)(end - p)))
                self->state = SSE_E_LINE;
            break;
        }
        self->skip_lf = *q == '\r';
        if (self->line.len) {
            if (sbuf_cat(&self->line, p, (size_t)(q - p))) {
                self->state = SSE_E_LINE;
                break;
            }
            s_line(self, self->line.data, self->line.len);
            sbuf_reset(&self->line);
        } else {
            if ((size_t)(q - p) > self->max) {
                self->state = SSE_E_LINE;
                break;
            }
            s_line(self, p, (size_t)(q - p));
        }
        p = q + 1;
    }
    return self->state;
}

sse_err_t sse_finish(sse_t *self, int *pending)
{
    if (pending)
        *pending = self->line.len > 0 || self->open;
    sbuf_reset(&self->line);
    sbuf_reset(&self->data);
    sbuf_reset(&self->type);
    self->open = 0;
    return self->state;
}
