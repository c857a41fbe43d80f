/* inbox: frames the orchestrator read while it could not handle them (the
 * store's write lock was held by another connection), kept in arrival
 * order for the turn that gets the lock. Bounded in frames and bytes; a
 * push past the bounds is refused unless forced (cancels: tiny, and losing
 * one would leave a follower behind). */
#ifndef MAP_INBOX_H
#define MAP_INBOX_H
#include <stddef.h>
#include <stdint.h>

typedef struct inbox_t inbox_t;

typedef enum { INBOX_REQUEST, INBOX_CANCEL, INBOX_STREAM, INBOX_REPLY, INBOX_ERROR } inbox_kind_t;

typedef struct inbox_item_t {
    inbox_kind_t kind;
    uint64_t id;               /* the broker's request id */
    size_t len;                /* body bytes; ERROR: "code\0message\0" */
    struct inbox_item_t *next;
    uint8_t body[];
} inbox_item_t;

inbox_t *inbox_new(size_t items_max, size_t bytes_max);
void inbox_destroy(inbox_t **self_p); /* frees what is left; NULL-safe */
/* Copies body. 0, or -1 (nothing kept) past a bound when !force. */
int inbox_push(inbox_t *self, inbox_kind_t kind, uint64_t id, const void *body, size_t len,
               int force);
/* An ERROR frame: code and message NUL-terminated. Same result as push. */
int inbox_push_error(inbox_t *self, uint64_t id, const char *code, const char *message);
/* The oldest item (the caller's: inbox_item_free), or NULL when empty. */
inbox_item_t *inbox_pop(inbox_t *self);
void inbox_item_free(inbox_item_t *item);
size_t inbox_count(const inbox_t *self);
size_t inbox_bytes(const inbox_t *self);

#endif
