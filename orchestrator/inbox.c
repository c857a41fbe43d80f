/* inbox: a FIFO of copied frames (inbox.h): a singly linked list with a
 * tail, each item one allocation with its body inline. */
#include "inbox.h"

#include "common/mem.h"

#include <string.h>

struct inbox_t {
    inbox_item_t *head, *tail;
    size_t count, bytes;
    size_t items_max, bytes_max;
};

inbox_t *inbox_new(size_t items_max, size_t bytes_max)
{
    inbox_t *self = mem_alloc(sizeof *self);
    self->items_max = items_max;
    self->bytes_max = bytes_max;
    return self;
}

void inbox_destroy(inbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    inbox_t *self = *self_p;
    inbox_item_t *it;
    while ((it = inbox_pop(self)))
        inbox_item_free(it);
    mem_free(self);
    *self_p = NULL;
}

int inbox_push(inbox_t *self, inbox_kind_t kind, uint64_t id, const void *body, size_t len,
               int force)
{
    if (!force && (self->count >= self->items_max || len > self->bytes_max - self->bytes))
        return -1;
    inbox_item_t *it = mem_alloc(sizeof *it + len);
    it->kind = kind;
    it->id = id;
    it->len = len;
    if (len)
        memcpy(it->body, body, len);
    if (self->tail)
        self->tail->next = it;
    else
        self->head = it;
    self->tail = it;
    self->count++;
    self->bytes += len;
    return 0;
}

int inbox_push_error(inbox_t *self, uint64_t id, const char *code, const char *message)
{
    size_t cl = strlen(code), ml = strlen(message);
    char *buf = mem_alloc(cl + ml + 2);
    memcpy(buf, code, cl + 1);
    memcpy(buf + cl + 1, message, ml + 1);
    int rc = inbox_push(self, INBOX_ERROR, id, buf, cl + ml + 2, 0);
    mem_free(buf);
    return rc;
}

inbox_item_t *inbox_pop(inbox_t *self)
{
    inbox_item_t *it = self->head;
    if (!it)
        return NULL;
    self->head = it->next;
    if (!self->head)
        self->tail = NULL;
    self->count--;
    self->bytes -= it->len;
    it->next = NULL;
    return it;
}

void inbox_item_free(inbox_item_t *item)
{
    mem_free(item);
}

size_t inbox_count(const inbox_t *self)
{
    return self->count;
}

size_t inbox_bytes(const inbox_t *self)
{
    return self->bytes;
}
