/* reply: answers through the outbox (reply.h). The outbox knows bytes;
 * this module knows the orchestrator's bodies (proto/orch.h) and the
 * worker library that sends them.
 *
 * Watch batches: a watcher's events of one turn go out as one STREAM
 * (one frame through the broker and the edge instead of one per event).
 * A watcher finds its batch by index (batch, batch_turn), so a watcher
 * freed mid-turn leaves nothing dangling: a batch names its request only,
 * and a request that is gone drops its answer at the send like any other.
 * Buffers are kept from turn to turn (no allocation per event); one that
 * grew past S_BATCH_KEEP is freed after its push. */
#include "reply.h"

#include "common/log.h"
#include "proto/orch.h"
#include "proto/render.h"

#include "common/mem.h"

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

#define S_BATCH_KEEP (64u << 10)

static void s_batch_push(engine_t *self, core_batch_t *b)
{
    if (b->count && orch_batch_end(&b->body, b->count) == 0)
        reply_push(self, b->req, OUTBOX_STREAM, b->body.data, b->body.len);
    b->count = 0;
    orch_batch_begin(&b->body);
}

void reply_watch_event(engine_t *self, watcher_t *w, const void *body, size_t len)
{
    if (hmap_get(self->refused, w->req))
        return;
    if (w->batch_turn != self->batch_turn) {
        if (self->nbatches == self->batches_cap) {
            size_t cap = self->batches_cap ? self->batches_cap * 2 : 64;
            self->batches = mem_realloc(self->batches, cap * sizeof *self->batches);
            memset(self->batches + self->batches_cap, 0,
                   (cap - self->batches_cap) * sizeof *self->batches);
            self->batches_cap = cap;
        }
        core_batch_t *b = &self->batches[self->nbatches];
        if (!b->body.max)
            mp_buf_init(&b->body, CORE_BODY_MAX);
        b->req = w->req;
        b->count = 0;
        orch_batch_begin(&b->body);
        w->batch = self->nbatches++;
        w->batch_turn = self->batch_turn;
    }
    core_batch_t *b = &self->batches[w->batch];
    if (b->count < ORCH_BATCH_MAX && orch_batch_add(&b->body, body, len) == 0) {
        b->count++;
        return;
    }
    s_batch_push(self, b); /* full: what it holds goes first */
    if (orch_batch_add(&b->body, body, len) == 0)
        b->count++;
    else /* an event too large for any batch goes alone */
        reply_push(self, w->req, OUTBOX_STREAM, body, len);
}

void reply_batches_push(engine_t *self)
{
    for (size_t i = 0; i < self->nbatches; i++) {
        core_batch_t *b = &self->batches[i];
        s_batch_push(self, b);
        if (b->body.cap > S_BATCH_KEEP) {
            mp_buf_free(&b->body);
            memset(&b->body, 0, sizeof b->body);
        }
    }
    self->nbatches = 0;
    self->batch_turn++;
}

void reply_batches_free(engine_t *self)
{
    for (size_t i = 0; i < self->batches_cap; i++)
        if (self->batches[i].body.max)
            mp_buf_free(&self->batches[i].body);
    mem_free(self->batches);
    self->batches = NULL;
    self->nbatches = self->batches_cap = 0;
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
