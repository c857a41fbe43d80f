/* outbox: what the orchestrator sends, held until the turn that produced it
 * is committed (persist, then send), then sent in order.
 *
 *   push      appends one answer of the current turn: all or nothing (an
 *             entry exists only when its bytes were appended), refused
 *             past entries_max or bytes_max
 *   commit    the turn is in the store: its entries may go
 *   rollback  the turn is not: its entries are dropped (each reported)
 *   flush     sends committed entries in order; a send the socket refuses
 *             for now (high-water mark) stops the flush and is retried,
 *             with everything after it, at the next flush; an answer whose
 *             request is gone (cancelled, link lost) is dropped
 *
 * So a final reply refused at the high-water mark is kept and retried next
 * turn, never ignored; a push refused because the outbox is full is the
 * caller's to fail visibly (engine: an ERROR `internal` to that request).
 * The outbox never sends by itself: the caller hands flush a send function
 * (the worker library in the engine, a script in outbox_test). */
#ifndef MAP_OUTBOX_H
#define MAP_OUTBOX_H
#include <stddef.h>
#include <stdint.h>

typedef struct outbox_t outbox_t;

typedef enum {
    OUTBOX_STREAM, /* body: a STREAM body */
    OUTBOX_REPLY,  /* body: a REPLY body (final) */
    OUTBOX_FAIL,   /* body: "code\0message\0" (final ERROR) */
} outbox_kind_t;

typedef enum {
    OUTBOX_SENT,   /* gone out */
    OUTBOX_LATER,  /* refused for now (high-water mark): keep it, stop */
    OUTBOX_GONE,   /* its request is over: drop it */
} outbox_sent_t;

typedef outbox_sent_t (*outbox_send_fn)(void *arg, uint64_t req, outbox_kind_t kind,
                                        const void *body, size_t len);

/* Both maxima > 0. */
outbox_t *outbox_new(size_t entries_max, size_t bytes_max);
void outbox_destroy(outbox_t **self_p);

/* Appends a copy of body. Returns 0, or -1 (nothing recorded) when it would
 * pass either maximum. */
int outbox_push(outbox_t *self, uint64_t req, outbox_kind_t kind, const void *body, size_t len);
/* A FAIL entry: code and message NUL-terminated. Same result as push. */
int outbox_push_fail(outbox_t *self, uint64_t req, const char *code, const char *message);
/* The entries pushed since the last commit or rollback may be sent. */
void outbox_commit(outbox_t *self);
/* Drops the entries pushed since the last commit or rollback; calls
 * dropped(arg, req) once per dropped entry (may be NULL). */
void outbox_rollback(outbox_t *self, void (*dropped)(void *arg, uint64_t req), void *arg);
/* Sends committed entries in order until one is refused for now. Returns
 * the number of committed entries still waiting (0: all sent or dropped). */
size_t outbox_flush(outbox_t *self, outbox_send_fn send, void *arg);

size_t outbox_entries(const outbox_t *self); /* all held, committed or not */
size_t outbox_bytes(const outbox_t *self);   /* body bytes held */
size_t outbox_waiting(const outbox_t *self); /* committed, not yet sent */

#endif
