/* outbox: a FIFO of answers in one byte buffer (outbox.h).
 *
 * Layout: entries[head .. len) are held; entries[head .. mark) are
 * committed, entries[mark .. len) belong to the open turn. Each entry's body
 * is bytes[off .. off + blen). Sent entries are consumed from head; when
 * head reaches len both arrays restart at 0, and a flush that leaves a
 * tail compacts it to the front, so memory stays within the maxima.
 *
 * Invariants: head <= mark <= len <= entries_max; used <= bytes_max; an
 * entry exists only when its bytes do (push checks both maxima before it
 * writes anything). */
#include "outbox.h"

#include "common/mem.h"

#include <assert.h>
#include <string.h>

typedef struct {
    uint64_t req;
    outbox_kind_t kind;
    size_t off, len;
} s_entry_t;

struct outbox_t {
    s_entry_t *entries;
    size_t head, mark, len;      /* see the layout above */
    size_t cap, entries_max;
    uint8_t *bytes;
    size_t used, bytes_cap, bytes_max;
};

outbox_t *outbox_new(size_t entries_max, size_t bytes_max)
{
    assert(entries_max > 0 && bytes_max > 0);
    outbox_t *self = mem_alloc(sizeof *self);
    self->entries_max = entries_max;
    self->bytes_max = bytes_max;
    return self;
}

void outbox_destroy(outbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    outbox_t *self = *self_p;
    mem_free(self->entries);
    mem_free(self->bytes);
    mem_free(self);
    *self_p = NULL;
}

int outbox_push(outbox_t *self, uint64_t req, outbox_kind_t kind, const void *body, size_t len)
{
    if (self->len >= self->entries_max || len > self->bytes_max - self->used)
        return -1;
    if (self->len == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 256;
        if (cap > self->entries_max)
            cap = self->entries_max;
        self->entries = mem_realloc(self->entries, cap * sizeof *self->entries);
        self->cap = cap;
    }
    if (self->used + len > self->bytes_cap) {
        size_t cap = self->bytes_cap ? self->bytes_cap : 4096;
        while (cap < self->used + len)
            cap *= 2;
        if (cap > self->bytes_max)
            cap = self->bytes_max;
        self->bytes = mem_realloc(self->bytes, cap);
        self->bytes_cap = cap;
    }
    if (len)
        memcpy(self->bytes + self->used, body, len);
    self->entries[self->len++] = (s_entry_t){req, kind, self->used, len};
    self->used += len;
    return 0;
}

int outbox_push_fail(outbox_t *self, uint64_t req, const char *code, const char *message)
{
    size_t cl = strlen(code), ml = strlen(message);
    if (cl + ml + 2 > self->bytes_max)
        return -1;
    char *buf = mem_alloc(cl + ml + 2);
    memcpy(buf, code, cl + 1);
    memcpy(buf + cl + 1, message, ml + 1);
    int rc = outbox_push(self, req, OUTBOX_FAIL, buf, cl + ml + 2);
    mem_free(buf);
    return rc;
}

void outbox_commit(outbox_t *self)
{
    self->mark = self->len;
}

void outbox_rollback(outbox_t *self, void (*dropped)(void *arg, uint64_t req), void *arg)
{
    for (size_t i = self->mark; i < self->len; i++)
        if (dropped)
            dropped(arg, self->entries[i].req);
    if (self->len > self->mark)
        self->used = self->entries[self->mark].off;
    self->len = self->mark;
    if (self->head == self->len)
        self->head = self->mark = self->len = self->used = 0;
}

/* Moves the held entries (and their bytes) to the front. */
static void s_compact(outbox_t *self)
{
    if (self->head == 0)
        return;
    size_t base = self->head < self->len ? self->entries[self->head].off : self->used;
    memmove(self->bytes, self->bytes + base, self->used - base);
    self->used -= base;
    size_t n = self->len - self->head;
    memmove(self->entries, self->entries + self->head, n * sizeof *self->entries);
    for (size_t i = 0; i < n; i++)
        self->entries[i].off -= base;
    self->mark -= self->head;
    self->len = n;
    self->head = 0;
}

size_t outbox_flush(outbox_t *self, outbox_send_fn send, void *arg)
{
    while (self->head < self->mark) {
        s_entry_t *e = &self->entries[self->head];
        if (send(arg, e->req, e->kind, self->bytes + e->off, e->len) == OUTBOX_LATER)
            break;
        self->head++;
    }
    if (self->head == self->len)
        self->head = self->mark = self->len = self->used = 0;
    else
        s_compact(self);
    return self->mark - self->head;
}

size_t outbox_entries(const outbox_t *self)
{
    return self->len - self->head;
}

size_t outbox_bytes(const outbox_t *self)
{
    return self->head < self->len ? self->used - self->entries[self->head].off : 0;
}

size_t outbox_waiting(const outbox_t *self)
{
    return self->mark - self->head;
}
