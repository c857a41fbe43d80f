/* outq: see outq.h. */
#include "outq.h"

#include "common/mem.h"

#include <string.h>

void outq_init(outq_t *q, size_t max, size_t headroom)
{
    *q = (outq_t){.max = max, .headroom = headroom};
}

int outq_push(outq_t *q, const void *data, size_t len)
{
    /* The one message past the maximum an empty queue took (the head,
     * until written) does not count: small ones may queue behind it. */
    size_t counted = q->bytes;
    if (q->head && q->head->len > q->max)
        counted -= q->head->len;
    if (q->count && (len > q->max - counted || counted > q->max))
        return -1;
    outq_msg_t *m = mem_alloc(sizeof *m + q->headroom + len);
    m->len = len;
    if (len)
        memcpy(m->buf + q->headroom, data, len);
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    q->bytes += len;
    q->count++;
    return 0;
}

outq_msg_t *outq_take(outq_t *q)
{
    outq_msg_t *m = q->head;
    if (!m)
        return NULL;
    q->head = m->next;
    if (!q->head)
        q->tail = NULL;
    q->bytes -= m->len;
    q->count--;
    m->next = NULL;
    return m;
}

unsigned char *outq_data(const outq_t *q, outq_msg_t *m)
{
    return m->buf + q->headroom;
}

void outq_msg_free(outq_msg_t *m)
{
    mem_free(m);
}

void outq_clear(outq_t *q)
{
    outq_msg_t *m;
    while ((m = outq_take(q)))
        outq_msg_free(m);
}
