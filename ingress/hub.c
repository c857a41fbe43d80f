/* hub: see hub.h. */
#include "hub.h"

#include "common/log.h"
#include "proto/orch.h"

#include <stdio.h>
#include <string.h>

static void s_view(const agent_str_t *v, char *out, size_t cap)
{
    snprintf(out, cap, "%.*s", (int)(v->len < cap ? v->len : cap - 1), v->ptr ? v->ptr : "");
}

void hub_accepted_fields(const orch_stream_t *ev, hub_reply_t *out)
{
    s_view(&ev->run_id, out->run_id, sizeof out->run_id);
    s_view(&ev->run_status, out->run_status, sizeof out->run_status);
    s_view(&ev->session_id, out->session_id, sizeof out->session_id);
}

void hub_decode_reply(const uint8_t *body, size_t len, hub_reply_t *out)
{
    memset(out, 0, sizeof *out);
    orch_reply_t r;
    if (orch_decode_reply(body, len, &r) != AGENT_OK) {
        static const char bad[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"a bad answer from the orchestrator\"}}";
        out->status = 502;
        out->json = bad;
        out->json_len = sizeof bad - 1;
        return;
    }
    out->status = r.status;
    out->json = r.json.ptr;
    out->json_len = r.json.len;
    s_view(&r.run_id, out->run_id, sizeof out->run_id);
    s_view(&r.run_status, out->run_status, sizeof out->run_status);
    s_view(&r.session_id, out->session_id, sizeof out->session_id);
}

int hub_behind(const hub_t *h, const conn_t *c, size_t more)
{
    return c->q.bytes + more > (size_t)h->cfg.max_outq / 4;
}

int hub_drained(const hub_t *h, const conn_t *c)
{
    return c->need_empty ? c->q.bytes == 0 : c->q.bytes <= (size_t)h->cfg.max_outq / 8;
}

int hub_push(hub_t *h, conn_t *c, const void *data, size_t len)
{
    if (c->closing)
        return -1;
    if (outq_push(&c->q, data, len)) {
        h->m.slow_closed++;
        LOGW("client.slow", "conn=%llu queued=%zu max=%ld ws=%d", (unsigned long long)c->id,
             c->q.bytes, h->cfg.max_outq, c->is_ws);
        outq_clear(&c->q);
        hub_close(h, c, 4008, "too slow to read; reconnect and resume");
        return -1;
    }
    io_wake(h->io, c);
    return 0;
}

void hub_close(hub_t *h, conn_t *c, int code, const char *reason)
{
    c->closing = 1;
    c->close_code = code;
    snprintf(c->close_reason, sizeof c->close_reason, "%s", reason);
    io_kill(h->io, c);
}

pending_t *hub_request(hub_t *h, conn_t *c, pending_kind_t kind, const mp_buf_t *body,
                       long timeout_ms)
{
    if (body->overflow || pending_full(h->pending, c))
        return NULL;
    uint64_t req = io_request(h->io, body->data, body->len);
    if (!req) {
        h->m.orch_unavailable++;
        return NULL;
    }
    h->m.orch_requests++;
    int64_t deadline = timeout_ms ? io_now_ms(h->io) + timeout_ms : 0;
    pending_t *p = pending_add(h->pending, req, kind, c, deadline);
    if (!p)
        io_cancel(h->io, req);
    return p;
}

void hub_drop_requests(hub_t *h, conn_t *c)
{
    while (c->pendings) {
        pending_t *p = c->pendings;
        io_cancel(h->io, p->req);
        pending_free(h->pending, p);
    }
}
