/* calls: agent calls (calls.h).
 *
 * op call, in order: validate (400); the parent is live, running and the
 * token is its own (403, one answer for all three: no oracle); stopping
 * (503); a call_id the parent used before answers that child, from seq 1,
 * and starts nothing; the limits and reentry (409 call_refused); sizes and
 * the runs maximum (413, 503); then the child is created (row with its
 * call fields, agent_call_started in the parent's log, same turn), the
 * requester follows it from seq 1 and it starts at once: a child never
 * waits in its session's queue behind its own root.
 *
 * Call requests: every request that follows a child because of op call
 * (the first and the repeats) is kept, request → child run id (an id, not
 * a pointer: a run can be forgotten by a failed turn), until the child
 * ends or the request is cancelled; a CANCEL of one cancels the child. So
 * a native caller's worker that dies cancels its children (the broker
 * cancels a dead peer's requests), and so does an HTTP client that leaves
 * POST /calls (the edge cancels its request).
 *
 * The end of a tree. A run that ends, whatever ends it, first cancels its
 * live children (each of which first cancels its own: deepest first); a
 * child that ends writes agent_call_* in its parent's log after its own
 * terminal event. So a parent's terminal event is always the last of its
 * log and no descendant outlives it.
 *
 * Tokens are compared in constant time and never stored or logged. */
#include "calls.h"

#include "flow.h"
#include "pages.h"
#include "reply.h"

#include "common/clock.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/utf8.h"
#include "proto/render.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

int calls_token_new(char out[AGENT_TOKEN_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t raw[AGENT_TOKEN_LEN / 2];
    size_t got = 0;
    for (int tries = 0; got < sizeof raw && tries < 8; tries++) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n > 0)
            got += (size_t)n;
    }
    if (got < sizeof raw) {
        out[0] = '\0';
        return -1;
    }
    for (size_t i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[AGENT_TOKEN_LEN] = '\0';
    return 0;
}

int calls_token_eq(const char *token, const agent_str_t *given)
{
    if (strlen(token) != AGENT_TOKEN_LEN || given->len != AGENT_TOKEN_LEN)
        return 0;
    unsigned diff = 0;
    for (size_t i = 0; i < AGENT_TOKEN_LEN; i++)
        diff |= (unsigned)(token[i] ^ given->ptr[i]);
    return diff == 0;
}

static int s_same(const char *a, const char *b, size_t len)
{
    return a && strlen(a) == len && memcmp(a, b, len) == 0;
}

int calls_refusal(const run_t *parent, const char *agent_id, size_t len,
                  const calls_limits_t *lim, char *reason, size_t cap)
{
    if ((long)parent->depth + 1 > lim->depth_max) {
        snprintf(reason, cap, "call depth limit (%ld) reached", lim->depth_max);
        return 1;
    }
    if ((long)parent->ncalls >= lim->per_run_max) {
        snprintf(reason, cap, "calls per run limit (%ld) reached", lim->per_run_max);
        return 1;
    }
    if (!lim->allow_reentry) {
        for (const run_t *a = parent; a; a = a->parent) {
            if (s_same(a->agent_id, agent_id, len)) {
                snprintf(reason, cap, "agent \"%.*s\" is already in the call chain", (int)len,
                         agent_id);
                return 1;
            }
        }
    }
    return 0;
}

/* ---- call requests ---------------------------------------------------------- */

static void s_track(engine_t *self, uint64_t req, const run_t *child)
{
    char *old = hmap_del(self->call_reqs, req);
    mem_free(old);
    if (hmap_put(self->call_reqs, req, mem_strdup(child->run_id)) != 0)
        LOGW("calls.track", "reason=too many call requests req=%llu", (unsigned long long)req);
}

void calls_drop_req(engine_t *self, uint64_t req)
{
    mem_free(hmap_del(self->call_reqs, req));
}

int calls_cancel_req(engine_t *self, uint64_t req)
{
    char *run_id = hmap_del(self->call_reqs, req);
    if (!run_id)
        return 0;
    run_t *child = runs_live(self->runs, run_id);
    mem_free(run_id);
    runs_drop_req(self->runs, req); /* the requester is gone: no answer */
    if (child) {
        LOGD("call.cancelled", "run=%s reason=the call request was cancelled", child->run_id);
        flow_stop_agent(self, child);
        flow_run_end(self, child, RUN_CANCEL, "{}");
    }
    return 1;
}

/* ---- the end of a tree ------------------------------------------------------ */

void calls_end_children(engine_t *self, run_t *run)
{
    for (run_t *c = run->children; c; c = c->sibling) {
        if (c->ended)
            continue;
        flow_stop_agent(self, c);
        flow_run_end(self, c, RUN_CANCEL, "{}");
    }
}

void calls_child_ended(engine_t *self, run_t *child, run_status_t to, const char *payload)
{
    for (follower_t *f = child->followers; f; f = f->next)
        calls_drop_req(self, f->req);
    if (to == RUN_DONE)
        self->calls_done++;
    else if (to == RUN_FAILED)
        self->calls_failed++;
    else
        self->calls_cancelled++;
    run_t *parent = child->parent;
    if (!parent || parent->ended)
        return;
    sbuf_t p;
    sbuf_init(&p, CORE_JSON_MAX);
    sbuf_cats(&p, "{\"call_id\":");
    sbuf_json_str(&p, child->call_id, strlen(child->call_id));
    sbuf_cats(&p, ",\"child_run_id\":");
    sbuf_json_str(&p, child->run_id, strlen(child->run_id));
    const char *type = "agent_call_cancelled";
    if (to == RUN_DONE) {
        type = "agent_call_done";
        /* {"output":{...}} → ,"output":{...}} */
        const char *out = child->call_output;
        if (out && out[0] == '{' && out[1] == '"') {
            sbuf_cats(&p, ",");
            sbuf_cats(&p, out + 1);
        } else {
            sbuf_cats(&p, ",\"output\":null}");
        }
    } else if (to == RUN_FAILED) {
        type = "agent_call_failed";
        if (payload && payload[0] == '{' && payload[1] == '"') {
            sbuf_cats(&p, ",");
            sbuf_cats(&p, payload + 1); /* ,"error":{...}} */
        } else {
            sbuf_cats(&p, ",\"error\":{\"code\":\"internal\",\"message\":\"\"}}");
        }
    } else {
        sbuf_cats(&p, "}");
    }
    if (p.overflow || p.len > CORE_PAYLOAD_MAX) {
        /* The child's output was within the event maximum; the few bytes
         * of ids added may pass it: the parent is told the call failed. */
        sbuf_reset(&p);
        sbuf_cats(&p, "{\"call_id\":");
        sbuf_json_str(&p, child->call_id, strlen(child->call_id));
        sbuf_cats(&p, ",\"child_run_id\":");
        sbuf_json_str(&p, child->run_id, strlen(child->run_id));
        sbuf_cats(&p, ",\"error\":{\"code\":\"agent_error\",\"message\":\"answer too large: "
                      "the output is over the event maximum\"}}");
        type = "agent_call_failed";
    }
    flow_emit(self, parent, type, p.data);
    sbuf_free(&p);
}

/* ---- deadlines -------------------------------------------------------------- */

void calls_refresh(engine_t *self, run_t *run, int64_t now)
{
    for (run_t *a = run->parent; a; a = a->parent)
        if (a->agent_req && !a->ended)
            a->deadline = now + self->cfg.agent_timeout_ms;
}

int64_t calls_deadline(const run_t *run, int64_t want)
{
    const run_t *p = run->parent;
    if (p && p->agent_req && !p->ended && p->deadline < want)
        return p->deadline;
    return want;
}

/* ---- op call ---------------------------------------------------------------- */

/* 0, or -1 when answered 400. */
static int s_valid(engine_t *self, uint64_t req, const orch_request_t *q)
{
    const char *what = NULL;
    if (!engine_valid_id(&q->run_id))
        what = "run_id is not a valid id";
    else if (q->token.len == 0)
        what = "token is required";
    else if (!engine_valid_id(&q->call_id))
        what = "call_id must be 1 to 128 printable characters without quotes, slashes, '?', '#' or '%'";
    else if (!engine_valid_id(&q->agent_id))
        what = "agent_id is not a valid id";
    else if (q->role.len == 0)
        what = "input_message.role is required";
    if (what) {
        reply_error(self, req, 400, "bad_request", "%s", what);
        return -1;
    }
    return 0;
}

/* The parent the token opens, or NULL (answered 403). */
static run_t *s_parent(engine_t *self, uint64_t req, const orch_request_t *q)
{
    char *run_id = engine_dup(&q->run_id);
    run_t *parent = runs_live(self->runs, run_id);
    mem_free(run_id);
    if (!parent || parent->status != RUN_RUNNING || !calls_token_eq(parent->token, &q->token)) {
        reply_error(self, req, 403, "forbidden", "the token is not valid for this run");
        return NULL;
    }
    return parent;
}

/* A call_id the parent used: that child's answer. 1 when answered. */
static int s_repeat(engine_t *self, uint64_t req, run_t *parent, const orch_request_t *q)
{
    run_t *child = runs_child_by_call(parent, q->call_id.ptr, q->call_id.len);
    char found[IDS_MAX] = "";
    if (child) {
        snprintf(found, sizeof found, "%s", child->run_id);
    } else {
        char *call_id = engine_dup(&q->call_id);
        int rc = store_run_by_call(self->store, parent->run_id, call_id, found, sizeof found);
        mem_free(call_id);
        if (rc < 0) {
            reply_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
            return 1;
        }
    }
    if (!found[0])
        return 0;
    pages_follow(self, req, found, 0);
    run_t *live = runs_live(self->runs, found);
    if (live)
        for (follower_t *f = live->followers; f; f = f->next)
            if (f->req == req)
                s_track(self, req, live);
    return 1;
}

/* 0 when the child may be created; -1 when answered. */
static int s_admit(engine_t *self, uint64_t req, run_t *parent, const orch_request_t *q)
{
    calls_limits_t lim = {self->cfg.call_depth_max, self->cfg.calls_per_run_max,
                          self->cfg.allow_reentry};
    char reason[300];
    if (calls_refusal(parent, q->agent_id.ptr, q->agent_id.len, &lim, reason, sizeof reason)) {
        self->calls_refused++;
        LOGD("call.refused", "run=%s agent=%.*s reason=\"%s\"", parent->run_id,
             (int)q->agent_id.len, q->agent_id.ptr, reason);
        reply_error(self, req, 409, "call_refused", "%s", reason);
        return -1;
    }
    if (flow_input_payload(self, req, &q->role, &q->content) != 0)
        return -1;
    if (runs_count(self->runs) >= (size_t)self->cfg.runs_max) {
        reply_error(self, req, 503, "unavailable", "too many runs in progress");
        return -1;
    }
    return 0;
}

void calls_op(engine_t *self, uint64_t req, const orch_request_t *q)
{
    if (s_valid(self, req, q) != 0)
        return;
    run_t *parent = s_parent(self, req, q);
    if (!parent)
        return;
    if (self->draining) {
        reply_error(self, req, 503, "unavailable", "the orchestrator is stopping");
        return;
    }
    if (s_repeat(self, req, parent, q) || s_admit(self, req, parent, q) != 0)
        return;
    char run_id[IDS_MAX], created_at[CLOCK_RFC3339_LEN];
    ids_new("run_", run_id);
    engine_now(created_at);
    char *agent_id = engine_dup(&q->agent_id);
    char *role = engine_dup(&q->role);
    char *call_id = engine_dup(&q->call_id);
    size_t hist_len = q->history ? (size_t)(q->history_end - q->history) : 0;
    run_t *child = runs_add_child(self->runs, parent, run_id, agent_id, role, created_at, call_id,
                                  q->history, hist_len, q->history_count);
    mem_free(agent_id);
    mem_free(role);
    mem_free(call_id);
    engine_begin(self);
    flow_touch(self, child);
    child->created = 1;
    parent->ncalls++;
    size_t clean_len = 0;
    char *clean = utf8_clean(q->content.ptr, q->content.len, &clean_len);
    if (clean) {
        child->content = clean;
        child->content_len = clean_len;
    } else {
        child->content = mem_strndup(q->content.ptr ? q->content.ptr : "", q->content.len);
        child->content_len = q->content.len;
    }
    store_call_t call = {child->parent_run_id, child->root_run_id, child->depth, child->call_id};
    engine_store_check(self,
                       store_run_insert_call(self->store, child->run_id, child->session->id,
                                             child->agent_id, child->role, child->content,
                                             child->content_len, child->created_at, &call),
                       "run_insert_call");
    LOGD("call.accepted", "run=%s parent=%s depth=%u agent=%s", child->run_id, parent->run_id,
         child->depth, child->agent_id);
    sbuf_reset(&self->json);
    sbuf_cats(&self->json, "{\"call_id\":");
    sbuf_json_str(&self->json, child->call_id, strlen(child->call_id));
    sbuf_cats(&self->json, ",\"child_run_id\":");
    sbuf_json_str(&self->json, child->run_id, strlen(child->run_id));
    sbuf_cats(&self->json, ",\"agent_id\":");
    sbuf_json_str(&self->json, child->agent_id, strlen(child->agent_id));
    sbuf_cats(&self->json, ",\"depth\":");
    sbuf_cat_u64(&self->json, child->depth);
    sbuf_cats(&self->json, "}");
    flow_emit(self, parent, "agent_call_started", self->json.data);
    /* Accepted (running: it starts now, in this turn), then every event
     * from seq 1. */
    sbuf_t acc;
    sbuf_init(&acc, CORE_JSON_MAX);
    render_run_t r = {child->run_id,     child->session->id,  child->agent_id,
                      "running",         child->created_at,   NULL,
                      child->parent_run_id, child->root_run_id, child->depth};
    render_run(&acc, &r);
    reply_accepted(self, req, acc.data, acc.len, child->run_id, "running", child->session->id);
    sbuf_free(&acc);
    runs_add_follower(self->runs, child, req, 1);
    s_track(self, req, child);
    flow_run_start(self, child);
}
