/* outq: the messages a connection has yet to write, bounded in bytes.
 *
 * A client that reads slower than its events come must not grow the edge's
 * memory: a push past the maximum is refused and queues nothing, and the
 * caller closes the connection (WebSocket close 4008: reconnect and resume).
 * Each message keeps `headroom` bytes before its data, which lws_write
 * needs (LWS_PRE); the module itself knows nothing of lws. */
#ifndef MAP_OUTQ_H
#define MAP_OUTQ_H
#include <stddef.h>

typedef struct outq_msg_t {
    struct outq_msg_t *next;
    size_t len;               /* data bytes */
    unsigned char buf[];      /* headroom, then the data */
} outq_msg_t;

typedef struct {
    outq_msg_t *head, *tail;
    size_t bytes;             /* data bytes queued */
    size_t count;             /* messages queued */
    size_t max;               /* bytes allowed */
    size_t headroom;
} outq_t;

void outq_init(outq_t *q, size_t max, size_t headroom);
/* Queues a copy of data. Returns 0, or -1 (nothing queued) when the queue
 * would hold more than max bytes. An empty queue takes one message of any
 * size (the largest event must always get through; it is bounded upstream
 * by the frame limit); while it waits at the head it is not counted, so
 * up to max bytes of others queue behind it (a reply to the same client
 * must not close it as slow). At most max + one message. */
int outq_push(outq_t *q, const void *data, size_t len);
/* Takes the oldest message off the queue (NULL when empty); the caller
 * writes outq_data(q, m) and frees it with outq_msg_free. */
outq_msg_t *outq_take(outq_t *q);
unsigned char *outq_data(const outq_t *q, outq_msg_t *m);
void outq_msg_free(outq_msg_t *m);
/* Frees every message. */
void outq_clear(outq_t *q);

#endif
