/* answers: see answers.h. */
#include "answers.h"

#include "http.h"
#include "sessions.h"
#include "ssefeed.h"
#include "ws.h"

#include <string.h>

void answers_stream(hub_t *h, uint64_t req, const uint8_t *body, size_t len)
{
    pending_t *p = pending_get(h->pending, req);
    orch_stream_t ev;
    if (!p || orch_decode_stream(body, len, &ev) != AGENT_OK)
        return;
    if (p->kind == P_WATCH)
        sessions_on_watch(h->sessions, p, &ev);
    else if (p->kind == P_HTTP)
        http_on_stream(h, p, &ev);
    else
        ws_on_stream(h, p, &ev); /* may free p */
}

/* A fill's answer is handled after its request is gone: it may ask again. */
static void s_fill_answer(hub_t *h, pending_t *p, unsigned status, const char *json, size_t len)
{
    conn_t *c = p->conn;
    pending_kind_t kind = p->kind;
    char run_id[sizeof p->run_id];
    memcpy(run_id, p->run_id, sizeof run_id);
    pending_free(h->pending, p);
    if (kind == P_HTTP_FILL)
        ssefeed_on_fill(h, c, status, json, len);
    else
        sessions_on_fill(h->sessions, c, run_id, status, json, len);
}

void answers_reply(hub_t *h, uint64_t req, const uint8_t *body, size_t len)
{
    pending_t *p = pending_get(h->pending, req);
    if (!p)
        return;
    hub_reply_t r;
    hub_decode_reply(body, len, &r);
    switch (p->kind) {
    case P_HTTP:
    case P_HEALTH:
    case P_METRICS:
        http_on_reply(h, p, &r);
        break;
    case P_WATCH:
        sessions_watch_ended(h->sessions, p);
        break;
    case P_WS_FILL:
    case P_HTTP_FILL:
        s_fill_answer(h, p, r.status, r.json, r.json_len);
        return;
    default:
        ws_on_reply(h, p, &r);
        break;
    }
    pending_free(h->pending, p);
}

void answers_error(hub_t *h, uint64_t req, const char *code, const char *message)
{
    pending_t *p = pending_get(h->pending, req);
    if (!p)
        return;
    switch (p->kind) {
    case P_HTTP:
    case P_HEALTH:
    case P_METRICS:
        http_on_error(h, p, code, message);
        break;
    case P_WATCH:
        sessions_watch_ended(h->sessions, p);
        break;
    case P_WS_FILL:
    case P_HTTP_FILL:
        s_fill_answer(h, p, 0, NULL, 0);
        return;
    default:
        ws_on_error(h, p, code, message);
        break;
    }
    pending_free(h->pending, p);
}
