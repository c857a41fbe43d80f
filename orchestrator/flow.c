/* flow: runs in motion (flow.h).
 *
 * Sequence numbers: run->seq is the last seq written; an event is appended
 * with seq + 1 inside the turn's transaction, so seq is gapless per run.
 * A failed turn restores run->seq from run->seq0 (flow_touch), so no seq
 * is ever consumed by a turn that did not commit.
 *
 * Answers from agents: a delta, the final output and an ERROR each end up
 * as events here; text is made valid UTF-8 before it is stored, and an
 * event that would not fit a page (CORE_PAYLOAD_MAX) fails the run
 * agent_error "answer too large" instead of being written.
 *
 * Calls (calls.c): a child's events carry parent_run_id and depth and
 * refresh its ancestors' deadlines; a run that ends first ends its live
 * children; a child that ends tells its parent's log; a child writes no
 * messages and gets its call's history, not the session's. */
#include "flow.h"

#include "calls.h"
#include "reply.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/mem.h"
#include "proto/orch.h"
#include "proto/render.h"
#include "common/utf8.h"

#include <stdio.h>
#include <string.h>

static void s_grow(run_t ***arr, size_t n, size_t *cap)
{
    if (n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *arr = mem_realloc(*arr, *cap * sizeof **arr);
    }
}

void flow_touch(engine_t *self, run_t *run)
{
    if (run->touched)
        return;
    run->touched = 1;
    run->seq0 = run->seq;
    s_grow(&self->touched, self->ntouched, &self->touched_cap);
    self->touched[self->ntouched++] = run;
}

void flow_doom(engine_t *self, run_t *run)
{
    if (run->doomed || run->ended)
        return;
    run->doomed = 1;
    s_grow(&self->doomed, self->ndoomed, &self->doomed_cap);
    self->doomed[self->ndoomed++] = run;
}

void flow_undoom(engine_t *self, run_t *run)
{
    if (!run->doomed)
        return;
    run->doomed = 0;
    for (size_t i = 0; i < self->ndoomed; i++) {
        if (self->doomed[i] == run) {
            self->doomed[i] = self->doomed[--self->ndoomed];
            return;
        }
    }
}

int flow_input_payload(engine_t *self, uint64_t req, const agent_str_t *role,
                       const agent_str_t *content)
{
    sbuf_reset(&self->json);
    sbuf_cats(&self->json, "{\"message\":{\"role\":");
    sbuf_json_str(&self->json, role->ptr, role->len);
    sbuf_cats(&self->json, ",\"content\":");
    sbuf_json_str(&self->json, content->ptr, content->len);
    sbuf_cats(&self->json, "}}");
    if (self->json.overflow || self->json.len > CORE_PAYLOAD_MAX) {
        reply_error(self, req, 413, "too_large",
                    "the input message is over the event maximum (%u bytes of JSON)",
                    (unsigned)CORE_PAYLOAD_MAX);
        return -1;
    }
    return 0;
}

void flow_emit(engine_t *self, run_t *run, const char *type, const char *payload)
{
    char created_at[CLOCK_RFC3339_LEN];
    engine_now(created_at);
    engine_begin(self);
    flow_touch(self, run);
    int64_t event_id = 0;
    uint64_t seq = run->seq + 1;
    engine_store_check(self,
                       store_event_append(self->store, run->run_id, seq, type, payload,
                                          created_at, &event_id),
                       "event_append");
    run->seq = seq;
    sbuf_reset(&self->event);
    render_event_t e = {event_id, run->run_id, run->session->id, seq, type, payload, created_at,
                        run->parent_run_id, run->depth};
    render_event(&self->event, &e);
    if (run->parent)
        calls_refresh(self, run, clock_mono_ms());
    orch_stream_t ev = {.run_id = engine_str(run->run_id),
                        .session_id = engine_str(run->session->id),
                        .type = engine_str(type),
                        .seq = seq,
                        .terminal = runfsm_terminal_type(type),
                        .json = {self->event.data, (uint32_t)self->event.len}};
    mp_buf_reset(&self->mp);
    if (orch_encode_event(&self->mp, &ev) != 0) {
        LOGE("engine.event", "run=%s reason=event over the body maximum", run->run_id);
        return;
    }
    for (follower_t *f = run->followers; f; f = f->next) {
        if (seq >= f->next_seq) {
            reply_push(self, f->req, OUTBOX_STREAM, self->mp.data, self->mp.len);
            f->next_seq = seq + 1;
        }
    }
    for (watcher_t *w = run->session->watchers; w; w = w->next)
        reply_watch_event(self, w, self->mp.data, self->mp.len);
}

void flow_run_json(run_t *run, sbuf_t *j, const char *ended_at)
{
    render_run_t r = {run->run_id,       run->session->id,          run->agent_id,
                      runfsm_name(run->status), run->created_at,  ended_at,
                      run->parent_run_id, run->root_run_id,       run->depth};
    render_run(j, &r);
}

void flow_stop_agent(engine_t *self, run_t *run)
{
    if (run->agent_req) {
        worker_cancel(self->worker, run->agent_req);
        hmap_del(self->agent_reqs, run->agent_req);
        run->agent_req = 0;
    }
    run->resolving = 0;
}

void flow_run_end(engine_t *self, run_t *run, run_input_t input, const char *payload)
{
    run_status_t to;
    flow_undoom(self, run);
    if (run->ended || runfsm_next(run->status, input, &to) != 0) {
        LOGW("run.illegal", "run=%s status=%s input=%d", run->run_id, runfsm_name(run->status),
             (int)input);
        return;
    }
    calls_end_children(self, run); /* no descendant outlives it */
    if (run->agent_req) {
        hmap_del(self->agent_reqs, run->agent_req);
        run->agent_req = 0;
    }
    session_t *s = run->session;
    int was_running = s->running == run;
    if (run->status == RUN_QUEUED)
        runs_dequeue(run);
    run->status = to;
    flow_emit(self, run, runfsm_terminal_event(to), payload);
    char ended_at[CLOCK_RFC3339_LEN];
    engine_now(ended_at);
    engine_store_check(self,
                       store_run_set_status(self->store, run->run_id, runfsm_name(to), ended_at),
                       "run_set_status");
    sbuf_reset(&self->json);
    flow_run_json(run, &self->json, ended_at);
    for (follower_t *f = run->followers; f; f = f->next)
        reply_run(self, f->req, 200, self->json.data, self->json.len, run->run_id,
                  runfsm_name(to), s->id);
    if (run->depth)
        calls_child_ended(self, run, to, payload);
    runs_clear_followers(self->runs, run);
    runs_mark_ended(self->runs, run);
    /* Per run: debug, but a failure is what an operator needs to see. */
    if (to == RUN_FAILED)
        LOGI("run.end", "run=%s session=%s status=%s seq=%llu", run->run_id, s->id,
             runfsm_name(to), (unsigned long long)run->seq);
    else
        LOGD("run.end", "run=%s session=%s status=%s seq=%llu", run->run_id, s->id,
             runfsm_name(to), (unsigned long long)run->seq);
    if (was_running) {
        s->running = NULL;
        flow_start_next(self, s);
    }
}

void flow_run_fail(engine_t *self, run_t *run, const char *code, const char *message)
{
    sbuf_t p;
    sbuf_init(&p, 4096);
    render_error(&p, code, message, NULL);
    flow_run_end(self, run, RUN_FAIL, p.data);
    sbuf_free(&p);
}

/* Sends the invoke to the agent; the run is running and has its first events. */
static void s_invoke_agent(engine_t *self, run_t *run)
{
    char endpoint[AGENT_ENDPOINT_MAX + 1];
    int store_err = 0;
    dispatch_route_t route =
        dispatch_route(self->dispatch, run->agent_id, endpoint, sizeof endpoint, &store_err);
    if (store_err)
        engine_store_check(self, -1, "agent_endpoint");
    if (route == DISPATCH_UNKNOWN) {
        if (!run->asked_broker) {
            /* The cache may predate the agent's workers: ask the broker once
             * before calling the agent unknown. */
            run->asked_broker = 1;
            run->resolving = 1;
            dispatch_ask(self->dispatch, 1, clock_mono_ms());
            return;
        }
        char msg[256];
        snprintf(msg, sizeof msg, "no agent '%s' is registered or served", run->agent_id);
        flow_run_fail(self, run, "unknown_agent", msg);
        return;
    }
    sbuf_reset(&self->json);
    sbuf_cats(&self->json, "{\"agent_id\":");
    sbuf_json_str(&self->json, run->agent_id, strlen(run->agent_id));
    sbuf_cats(&self->json, "}");
    flow_emit(self, run, "agent_invoke_started", self->json.data);
    agent_invoke_t inv = {
        .run_id = engine_str(run->run_id),
        .session_id = engine_str(run->session->id),
        .agent_id = engine_str(run->agent_id),
        .input = {.role = engine_str(run->role),
                  .content = {run->content, (uint32_t)run->content_len}},
        .endpoint = engine_str(route == DISPATCH_HTTP ? endpoint : NULL),
        .timeout_ms = (uint64_t)self->cfg.agent_timeout_ms,
    };
    if (!run->token[0] && calls_token_new(run->token) != 0)
        LOGW("call.token", "run=%s reason=no randomness: the run cannot call agents", run->run_id);
    if (run->token[0])
        inv.platform = (agent_platform_t){
            .token = engine_str(run->token),
            .depth = run->depth,
            .root_run_id = engine_str(run->root_run_id ? run->root_run_id : run->run_id),
            .parent_run_id = engine_str(run->parent_run_id)};
    /* A child gets its call's history (none by default), never the session's. */
    agent_msg_t *given = NULL;
    uint32_t ngiven = 0;
    if (run->depth && run->history_count) {
        given = mem_alloc(run->history_count * sizeof *given);
        const uint8_t *cur = run->history;
        while (ngiven < run->history_count &&
               agent_msgs_next(&cur, run->history + run->history_len, &given[ngiven]) == 0)
            ngiven++;
    }
    int too_large = 0;
    uint64_t req = dispatch_invoke(self->dispatch, &inv, route,
                                   run->depth ? NULL : run->session->id,
                                   (size_t)self->cfg.history_max, given, ngiven, &too_large,
                                   &store_err);
    mem_free(given);
    if (store_err)
        engine_store_check(self, -1, "history");
    if (!req) {
        flow_run_fail(self, run, too_large ? "internal" : "agent_unavailable",
                      too_large ? "the input is over the body maximum"
                                : "the broker cannot be reached");
        return;
    }
    run->agent_req = req;
    run->deadline = calls_deadline(run, clock_mono_ms() + self->cfg.agent_timeout_ms);
    hmap_put(self->agent_reqs, req, run);
}

void flow_run_start(engine_t *self, run_t *run)
{
    run_status_t to;
    if (runfsm_next(run->status, RUN_START, &to) != 0)
        return;
    session_t *s = run->session;
    runs_start(run);
    run->status = to;
    engine_begin(self);
    flow_touch(self, run);
    engine_store_check(self, store_run_set_status(self->store, run->run_id, "running", NULL),
                       "run_set_status");
    if (!run->content &&
        store_run_input(self->store, run->run_id, &run->content, &run->content_len) != 0) {
        LOGE("store.error", "op=run_input run=%s error=\"%s\"", run->run_id,
             store_errmsg(self->store));
        flow_run_fail(self, run, "internal", "the run's input could not be read from the store");
        return;
    }
    LOGD("run.start", "run=%s session=%s agent=%s", run->run_id, s->id, run->agent_id);
    sbuf_reset(&self->json);
    sbuf_cats(&self->json, "{\"agent_id\":");
    sbuf_json_str(&self->json, run->agent_id, strlen(run->agent_id));
    sbuf_cats(&self->json, "}");
    flow_emit(self, run, "run_started", self->json.data);
    sbuf_reset(&self->json);
    sbuf_cats(&self->json, "{\"message\":{\"role\":");
    sbuf_json_str(&self->json, run->role, strlen(run->role));
    sbuf_cats(&self->json, ",\"content\":");
    sbuf_json_str(&self->json, run->content, run->content_len);
    sbuf_cats(&self->json, "}}");
    flow_emit(self, run, "user_input", self->json.data);
    s_invoke_agent(self, run);
}

void flow_start_next(engine_t *self, session_t *s)
{
    if (!s->running && s->qhead && !self->draining)
        flow_run_start(self, s->qhead);
}

/* ---- answers from agents ---------------------------------------------------- */

/* A native agent's workers were seen for the first time: its id is
 * reserved from now on, across restarts. */
static void s_native_seen(void *arg, const char *agent_id)
{
    engine_t *self = arg;
    char now[CLOCK_RFC3339_LEN];
    engine_now(now);
    engine_begin(self);
    engine_store_check(self, store_agent_native(self->store, agent_id, now), "agent_native");
}

static void s_resolve(void *arg, run_t *run)
{
    engine_t *self = arg;
    if (run->resolving && !run->ended) {
        run->resolving = 0;
        s_invoke_agent(self, run);
    }
}

static void s_on_services(engine_t *self, const uint8_t *body, size_t len)
{
    if (dispatch_on_services(self->dispatch, body, len, s_native_seen, self) != 0)
        LOGW("engine.services", "reason=a malformed services list");
    runs_each(self->runs, s_resolve, self); /* runs that waited for it */
}

void flow_on_stream(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    engine_t *self = arg;
    run_t *run = hmap_get(self->agent_reqs, req);
    if (!run) {
        self->dropped_frames++;
        return;
    }
    agent_str_t delta;
    agent_err_t err = agent_decode_delta(body, len, &delta);
    if (err) {
        worker_cancel(w, req);
        char msg[128];
        snprintf(msg, sizeof msg, "the agent sent a bad delta: %s", agent_strerror(err));
        flow_run_fail(self, run, "agent_error", msg);
        return;
    }
    run->deadline = calls_deadline(run, clock_mono_ms() + self->cfg.agent_timeout_ms);
    sbuf_reset(&self->json);
    sbuf_cats(&self->json, "{\"delta\":");
    sbuf_json_str(&self->json, delta.ptr, delta.len); /* invalid UTF-8 becomes U+FFFD */
    sbuf_cats(&self->json, "}");
    if (self->json.overflow || self->json.len > CORE_PAYLOAD_MAX) {
        worker_cancel(w, req);
        flow_run_fail(self, run, "agent_error", "answer too large: a delta is over the event maximum");
        return;
    }
    flow_emit(self, run, "agent_stream_delta", self->json.data);
}

/* A copy of s, valid UTF-8. */
static char *s_clean(const char *s, size_t len, size_t *out_len)
{
    char *clean = utf8_clean(s, len, out_len);
    if (clean)
        return clean;
    *out_len = len;
    return mem_strndup(s, len);
}

void flow_on_reply(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    engine_t *self = arg;
    (void)w;
    if (req == dispatch_asked(self->dispatch)) {
        dispatch_forget_ask(self->dispatch);
        s_on_services(self, body, len);
        return;
    }
    run_t *run = hmap_get(self->agent_reqs, req);
    if (!run) {
        self->dropped_frames++;
        return;
    }
    hmap_del(self->agent_reqs, req);
    run->agent_req = 0;
    agent_msg_t out;
    agent_err_t err = agent_decode_done(body, len, &out);
    if (err) {
        char msg[128];
        snprintf(msg, sizeof msg, "the agent sent a bad final answer: %s", agent_strerror(err));
        flow_run_fail(self, run, "agent_error", msg);
        return;
    }
    sbuf_t p;
    sbuf_init(&p, CORE_JSON_MAX);
    sbuf_cats(&p, "{\"output\":{\"role\":");
    sbuf_json_str(&p, out.role.ptr, out.role.len);
    sbuf_cats(&p, ",\"content\":");
    sbuf_json_str(&p, out.content.ptr, out.content.len);
    sbuf_cats(&p, "}}");
    if (p.overflow || p.len > CORE_PAYLOAD_MAX) {
        sbuf_free(&p);
        flow_run_fail(self, run, "agent_error",
                      "answer too large: the output is over the event maximum");
        return;
    }
    flow_emit(self, run, "agent_invoke_done", p.data);
    if (run->depth) { /* a call: no messages; the parent's log gets the output */
        run->call_output = p.data;
        flow_run_end(self, run, RUN_FINISH, "{}");
        run->call_output = NULL;
        sbuf_free(&p);
        return;
    }
    sbuf_free(&p);
    char created_at[CLOCK_RFC3339_LEN];
    engine_now(created_at);
    engine_store_check(self,
                       store_message_append(self->store, run->session->id, run->run_id, run->role,
                                            run->content, run->content_len, created_at),
                       "message_append");
    /* Stored valid: later histories and pages are built from it. */
    size_t role_len, content_len;
    char *role = s_clean(out.role.ptr, out.role.len, &role_len);
    char *content = s_clean(out.content.ptr, out.content.len, &content_len);
    engine_store_check(self,
                       store_message_append(self->store, run->session->id, run->run_id, role,
                                            content, content_len, created_at),
                       "message_append");
    mem_free(content);
    mem_free(role);
    flow_run_end(self, run, RUN_FINISH, "{}");
}

void flow_on_error(worker_t *w, uint64_t req, const char *code, const char *message, void *arg)
{
    engine_t *self = arg;
    (void)w;
    if (req == dispatch_asked(self->dispatch)) {
        dispatch_forget_ask(self->dispatch);
        return;
    }
    run_t *run = hmap_get(self->agent_reqs, req);
    if (!run)
        return; /* cancelled by us, or ended */
    hmap_del(self->agent_reqs, req);
    run->agent_req = 0;
    char msg[600];
    if (strcmp(code, "unknown_service") == 0)
        snprintf(msg, sizeof msg, "no worker of agent '%s' is connected", run->agent_id);
    else
        snprintf(msg, sizeof msg, "%s", *message ? message : code);
    flow_run_fail(self, run, dispatch_error_code(code), msg);
}

/* ---- ending many ------------------------------------------------------------ */

void flow_fail_doomed(engine_t *self)
{
    while (self->ndoomed) {
        run_t *run = self->doomed[self->ndoomed - 1];
        session_t *s = run->session;
        flow_stop_agent(self, run);
        flow_run_fail(self, run, "internal", "the store could not record this run's events");
        flow_undoom(self, run); /* even if the run could not end */
        flow_start_next(self, s);
    }
}

typedef struct {
    engine_t *self;
    const char *message;
} s_fail_all_t;

static void s_fail_one(void *arg, run_t *run)
{
    s_fail_all_t *fa = arg;
    if (run->ended || (run->parent && !run->parent->ended))
        return; /* a child ends with its root, cancelled */
    flow_stop_agent(fa->self, run);
    flow_run_fail(fa->self, run, "internal", fa->message);
}

void flow_fail_all(engine_t *self, const char *message)
{
    s_fail_all_t fa = {self, message};
    runs_each(self->runs, s_fail_one, &fa);
}

typedef struct {
    engine_t *self;
    int64_t now;
    int (*gate)(engine_t *self);
    int stopped;
} s_timeouts_t;

static void s_timeout_one(void *arg, run_t *run)
{
    s_timeouts_t *t = arg;
    if (t->stopped || run->ended || !run->agent_req || t->now < run->deadline)
        return;
    /* A silent tree times out at its highest silent ancestor, which cancels
     * the rest (a child's deadline is never later than its parent's). */
    for (const run_t *a = run->parent; a; a = a->parent)
        if (!a->ended && a->agent_req && t->now >= a->deadline)
            return;
    if (!t->gate(t->self)) {
        t->stopped = 1; /* frames wait for the lock: so do timeouts */
        return;
    }
    flow_stop_agent(t->self, run);
    char msg[128];
    snprintf(msg, sizeof msg, "the agent sent nothing for %ld ms", t->self->cfg.agent_timeout_ms);
    flow_run_fail(t->self, run, "agent_timeout", msg);
}

void flow_timeouts(engine_t *self, int64_t now, int (*gate)(engine_t *self))
{
    s_timeouts_t t = {self, now, gate, 0};
    runs_each(self->runs, s_timeout_one, &t);
}
