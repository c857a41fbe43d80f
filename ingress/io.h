/* io: what the ingress modules ask of the outside world (lws and the
 * broker link). edge.c implements it; unit tests implement it with fakes
 * (jech/babeld's mocked_kernel.c), so sessions, pending, http and ws are
 * tested without a socket. */
#ifndef MAP_IO_H
#define MAP_IO_H
#include <stddef.h>
#include <stdint.h>

typedef struct io_t io_t;
typedef struct conn_t conn_t;

/* Bytes were queued on c: call back when it can be written. */
void io_wake(io_t *io, conn_t *c);
/* c is closing (c->closing set): cut it soon even if it never reads. */
void io_kill(io_t *io, conn_t *c);
/* Sends a request body to the orchestrator. Returns the request id, or 0
 * when it could not be sent (link down, queue full, too many in flight). */
uint64_t io_request(io_t *io, const void *body, size_t len);
/* Cancels a request of ours (no answer will follow). */
void io_cancel(io_t *io, uint64_t req);
/* 1 while the broker is heard. */
int io_linked(io_t *io);
/* Monotonic milliseconds. */
int64_t io_now_ms(io_t *io);

#endif
