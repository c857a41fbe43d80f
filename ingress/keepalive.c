/* keepalive: see keepalive.h. */
#include "keepalive.h"

#include <stddef.h>

static void s_head_init(ka_node_t *h)
{
    h->prev = h->next = h;
}

static void s_append(ka_node_t *h, ka_node_t *n)
{
    n->prev = h->prev;
    n->next = h;
    h->prev->next = n;
    h->prev = n;
}

void ka_init(ka_t *ka, int64_t ping_ms, int64_t grace_ms)
{
    s_head_init(&ka->idle);
    s_head_init(&ka->pinged);
    ka->ping_ms = ping_ms;
    ka->grace_ms = grace_ms;
}

void ka_forget(ka_node_t *n)
{
    if (!n->next)
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = NULL;
}

void ka_heard(ka_t *ka, ka_node_t *n, int64_t now)
{
    ka_forget(n);
    n->ms = now;
    s_append(&ka->idle, n);
}

int ka_tick(ka_t *ka, int64_t now, int budget, void (*ping)(void *arg, ka_node_t *n),
            void (*cut)(void *arg, ka_node_t *n), void *arg)
{
    int done = 0;
    while (done < budget && ka->pinged.next != &ka->pinged) {
        ka_node_t *n = ka->pinged.next;
        if (n->ms + ka->grace_ms > now)
            break;
        ka_forget(n); /* silent since its ping: cut */
        cut(arg, n);
        done++;
    }
    while (done < budget && ka->idle.next != &ka->idle) {
        ka_node_t *n = ka->idle.next;
        if (n->ms + ka->ping_ms > now)
            break;
        ka_forget(n);
        n->ms = now;
        s_append(&ka->pinged, n);
        ping(arg, n);
        done++;
    }
    return done;
}
