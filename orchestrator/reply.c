/* reply: answers through the outbox (reply.h). The outbox knows bytes;
 * this module knows the orchestrator's bodies (proto/orch.h) and the
 * worker library that sends them. */
#include "reply.h"

#include "common/log.h"
#include "proto/orch.h"
#include "proto/render.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void reply_push(engine_t *self, uint64_t req, outbox_kind_t kind, const void *body, size_t len)
{
    if (hmap_get(self->refused, req))
        return; /* it fails at the turn's end; nothing more for it */
    if (outbox_push(self->out, req, kind, body, len) == 0)
        return;
    LOGE("engine.outbox", "reason=full req=%llu entries=%zu bytes=%zu", (unsigned long long)req,
         outbox_entries(self->out), outbox_bytes(self->out));
    hmap_put(self->refused, req, (void *)1);
}

void reply_run(engine_t *self, uint64_t req, unsigned status, const char *json, size_t len,
               const char *run_id, const char *run_status, const char *session_id)
{
    orch_reply_t r = {.status = status,
                      .json = {json, (uint32_t)len},
                      .run_id = engine_str(run_id),
                      .run_status = engine_str(run_id ? run_status : NULL),
                      .session_id = engine_str(run_id ? session_id : NULL)};
    mp_buf_reset(&self->mp);
    orch_encode_reply(&self->mp, &r);
    reply_push(self, req, OUTBOX_REPLY, self->mp.data, self->mp.len);
}

void reply_plain(engine_t *self, uint64_t req, unsigned status, const char *json, size_t len)
{
    reply_run(self, req, status, json, len, NULL, NULL, NULL);
}

void reply_error(engine_t *self, uint64_t req, unsigned status, const char *code,
                 const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sbuf_t j;
    sbuf_init(&j, 4096);
    render_error(&j, code, msg, NULL);
    reply_plain(self, req, status, j.data, j.len);
    sbuf_free(&j);
}

void reply_accepted(engine_t *self, uint64_t req, const char *json, size_t len,
                    const char *run_id, const char *run_status, const char *session_id)
{
    orch_stream_t acc = {.json = {json, (uint32_t)len},
                         .run_id = engine_str(run_id),
                         .run_status = engine_str(run_id ? run_status : NULL),
                         .session_id = engine_str(run_id ? session_id : NULL)};
    mp_buf_reset(&self->mp);
    orch_encode_accepted(&self->mp, &acc);
    reply_push(self, req, OUTBOX_STREAM, self->mp.data, self->mp.len);
}

void reply_fail(engine_t *self, uint64_t req, const char *code, const char *message)
{
    if (hmap_get(self->refused, req))
        return;
    if (outbox_push_fail(self->out, req, code, message) != 0)
        hmap_put(self->refused, req, (void *)1);
}

/* The outbox's socket: a refusal with EAGAIN is the high-water mark (try
 * again later); any other is a request that is over (cancelled, link lost:
 * the library said so through on_cancel). */
static outbox_sent_t s_send(void *arg, uint64_t req, outbox_kind_t kind, const void *body,
                            size_t len)
{
    engine_t *self = arg;
    errno = 0;
    int rc;
    switch (kind) {
    case OUTBOX_STREAM: rc = worker_stream(self->worker, req, body, len); break;
    case OUTBOX_REPLY: rc = worker_reply(self->worker, req, body, len); break;
    default: rc = worker_fail(self->worker, req, body, (const char *)body + strlen(body) + 1); break;
    }
    if (rc == 0)
        return OUTBOX_SENT;
    return errno == EAGAIN ? OUTBOX_LATER : OUTBOX_GONE;
}

void reply_flush(engine_t *self)
{
    outbox_flush(self->out, s_send, self);
    if (hmap_size(self->refused) == 0)
        return;
    size_t pos = 0;
    uint64_t req;
    void *value;
    while (hmap_next(self->refused, &pos, &req, &value) == 0) {
        worker_fail(self->worker, req, "internal",
                    "the answer is over the orchestrator's outbox maximum");
        runs_drop_req(self->runs, req); /* it follows and watches nothing more */
    }
    hmap_destroy(&self->refused);
    self->refused = hmap_new(CORE_OUT_ENTRIES);
}
