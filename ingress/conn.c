/* conn: see conn.h. */
#include "conn.h"

#include "common/mem.h"

#include <czmq.h>
#include <stdio.h>
#include <string.h>

conn_t *conn_new(uint64_t id, void *wsi, size_t max_outq, size_t headroom)
{
    conn_t *c = mem_alloc(sizeof *c);
    c->id = id;
    c->wsi = wsi;
    outq_init(&c->q, max_outq, headroom);
    c->http.content_length = -1;
    return c;
}

void conn_destroy(conn_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    conn_t *c = *self_p;
    outq_clear(&c->q);
    sbuf_free(&c->http.body);
    sbuf_free(&c->frag);
    if (c->runs)
        zhashx_destroy(&c->runs);
    mem_free(c->ended);
    mem_free(c);
    *self_p = NULL;
}

void conn_mark_ended(conn_t *c, const char *run_id)
{
    if (conn_has_ended(c, run_id))
        return;
    if (!c->ended)
        c->ended = mem_alloc(CONN_ENDED_MAX * sizeof *c->ended);
    snprintf(c->ended[c->ended_next % CONN_ENDED_MAX], sizeof c->ended[0], "%s", run_id);
    c->ended_next++;
}

int conn_has_ended(const conn_t *c, const char *run_id)
{
    if (!c->ended)
        return 0;
    for (unsigned i = 0; i < CONN_ENDED_MAX; i++)
        if (c->ended[i][0] && !strcmp(c->ended[i], run_id))
            return 1;
    return 0;
}

void conn_unmark_ended(conn_t *c, const char *run_id)
{
    if (!c->ended)
        return;
    for (unsigned i = 0; i < CONN_ENDED_MAX; i++)
        if (c->ended[i][0] && !strcmp(c->ended[i], run_id))
            c->ended[i][0] = '\0';
}
