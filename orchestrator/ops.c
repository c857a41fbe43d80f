/* ops: the operations (ops.h). Reads of stored history are pages.c's;
 * runs in motion are flow.c's; this file checks arguments and decides.
 *
 * invoke, in order: validate; a known request_id answers its run (a
 * retry); busy with if_busy reject answers 409; quotas (queued runs per
 * session, runs in memory); then the run is created queued (row and
 * session in the turn's transaction, its input kept only in the store)
 * and started if its session is idle. */
#include "ops.h"

#include "calls.h"
#include "flow.h"
#include "pages.h"
#include "reply.h"

#include "common/clock.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/mem.h"
#include "proto/orch.h"
#include "proto/render.h"
#include "common/utf8.h"

#include <stdio.h>
#include <string.h>

/* An invoke that names a run it started before: that run's answer. */
static void s_retry(engine_t *self, uint64_t req, const orch_request_t *q, const char *run_id)
{
    if (q->follow) {
        pages_follow(self, req, run_id, 0);
        return;
    }
    run_t *run = runs_live(self->runs, run_id);
    store_run_t row;
    sbuf_reset(&self->json);
    if (run) {
        flow_run_json(run, &self->json, NULL);
        reply_run(self, req, 200, self->json.data, self->json.len, run->run_id,
                  runfsm_name(run->status), run->session->id);
    } else if (store_run_get(self->store, run_id, &row) == 0) {
        pages_row_json(&self->json, &row);
        reply_run(self, req, 200, self->json.data, self->json.len, row.run_id, row.status,
                  row.session_id);
    } else {
        reply_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
    }
}

/* 0, or -1 when answered with an error. */
static int s_invoke_valid(engine_t *self, uint64_t req, const orch_request_t *q, int *reject)
{
    if (self->draining) {
        reply_error(self, req, 503, "unavailable", "the orchestrator is stopping");
        return -1;
    }
    if (!engine_valid_id(&q->session_id)) {
        reply_error(self, req, 400, "bad_request", "session_id must be 1 to 128 printable characters without quotes, slashes, '?', '#' or '%%'");
        return -1;
    }
    if (q->agent_id.len == 0) {
        reply_error(self, req, 400, "bad_request", "agent_id is required");
        return -1;
    }
    if (!engine_valid_id(&q->agent_id)) {
        reply_error(self, req, 400, "bad_request", "agent_id is not a valid id");
        return -1;
    }
    if (q->role.len == 0) {
        reply_error(self, req, 400, "bad_request", "input_message.role is required");
        return -1;
    }
    if (q->request_id.len && !engine_valid_id(&q->request_id)) {
        reply_error(self, req, 400, "bad_request", "request_id is not a valid id");
        return -1;
    }
    /* Its user_input event must fit a page like any event (SPEC §1 Limits). */
    if (flow_input_payload(self, req, &q->role, &q->content) != 0)
        return -1;
    *reject = 0;
    if (q->if_busy.len) {
        if (q->if_busy.len == 6 && memcmp(q->if_busy.ptr, "reject", 6) == 0)
            *reject = 1;
        else if (!(q->if_busy.len == 7 && memcmp(q->if_busy.ptr, "enqueue", 7) == 0)) {
            reply_error(self, req, 400, "bad_request", "if_busy must be \"enqueue\" or \"reject\"");
            return -1;
        }
    }
    return 0;
}

/* 0 when the invoke may create a run, -1 when it was answered (a retry,
 * busy, a quota). */
static int s_invoke_admit(engine_t *self, uint64_t req, const orch_request_t *q, int reject,
                          const char *session_id, session_t *s)
{
    if (q->request_id.len) {
        run_t *prior = runs_find_request(s, q->request_id.ptr, q->request_id.len);
        char found_id[IDS_MAX] = "";
        if (prior) {
            snprintf(found_id, sizeof found_id, "%s", prior->run_id);
        } else {
            char *rid = engine_dup(&q->request_id);
            int rc = store_run_by_request(self->store, session_id, rid, found_id, sizeof found_id);
            mem_free(rid);
            if (rc < 0) {
                reply_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
                return -1;
            }
        }
        if (found_id[0]) {
            s_retry(self, req, q, found_id); /* start nothing new */
            return -1;
        }
    }
    if (reject && s && (s->running || s->qhead)) {
        run_t *busy = s->running ? s->running : s->qhead;
        char msg[300];
        snprintf(msg, sizeof msg, "session '%s' is busy with run %s", session_id, busy->run_id);
        sbuf_reset(&self->json);
        render_error(&self->json, "busy", msg, busy->run_id);
        reply_run(self, req, 409, self->json.data, self->json.len, busy->run_id,
                  runfsm_name(busy->status), s->id);
        return -1;
    }
    /* One session cannot fill the orchestrator: its queue has a maximum
     * of its own, well below the global one. */
    if (s && (s->running || s->qhead) && s->queued >= (size_t)self->cfg.queued_max) {
        reply_error(self, req, 429, "too_many_runs",
                    "session '%s' has %zu runs queued, the maximum (MAP_MAX_QUEUED_RUNS)",
                    session_id, s->queued);
        return -1;
    }
    if (runs_count(self->runs) >= (size_t)self->cfg.runs_max) {
        reply_error(self, req, 503, "unavailable", "too many runs in progress");
        return -1;
    }
    return 0;
}

static void s_invoke(engine_t *self, uint64_t req, const orch_request_t *q)
{
    int reject;
    if (s_invoke_valid(self, req, q, &reject) != 0)
        return;
    char *session_id = engine_dup(&q->session_id);
    session_t *s = runs_session(self->runs, session_id);
    if (s_invoke_admit(self, req, q, reject, session_id, s) != 0) {
        mem_free(session_id);
        return;
    }
    char run_id[IDS_MAX], created_at[CLOCK_RFC3339_LEN];
    ids_new("run_", run_id);
    engine_now(created_at);
    char *agent_id = engine_dup(&q->agent_id);
    char *request_id = q->request_id.len ? engine_dup(&q->request_id) : NULL;
    char *role = engine_dup(&q->role);
    s = runs_session_add(self->runs, session_id);
    mem_free(session_id);
    run_t *run = runs_add(self->runs, s, run_id, agent_id, request_id, role, created_at);
    mem_free(agent_id);
    mem_free(request_id);
    mem_free(role);
    engine_begin(self);
    flow_touch(self, run);
    run->created = 1;
    /* The store holds the input until the run starts (it may wait long). */
    size_t clean_len = 0;
    char *clean = utf8_clean(q->content.ptr, q->content.len, &clean_len);
    engine_store_check(self, store_session_ensure(self->store, s->id, run->created_at),
                       "session_ensure");
    engine_store_check(self,
                       store_run_insert(self->store, run->run_id, s->id, run->agent_id,
                                        run->request_id, run->role,
                                        clean ? clean : (q->content.ptr ? q->content.ptr : ""),
                                        clean ? clean_len : q->content.len, run->created_at),
                       "run_insert");
    mem_free(clean);
    LOGD("run.accepted", "run=%s session=%s agent=%s", run->run_id, s->id, run->agent_id);
    /* The answer goes out before the run's first events, so the edge can
     * say invoke_accepted before any event: running if it starts now,
     * queued if it waits behind another run of the session. */
    const char *status = s->running || s->qhead != run ? "queued" : "running";
    sbuf_reset(&self->json);
    render_run_t r = {run->run_id, s->id, run->agent_id, status, run->created_at, NULL,
                      NULL,        NULL,  0};
    render_run(&self->json, &r);
    if (q->follow) {
        reply_accepted(self, req, self->json.data, self->json.len, run->run_id, status, s->id);
        runs_add_follower(self->runs, run, req, 1);
    } else {
        reply_run(self, req, 200, self->json.data, self->json.len, run->run_id, status, s->id);
    }
    flow_start_next(self, s);
}

static void s_watch(engine_t *self, uint64_t req, const orch_request_t *q)
{
    if (!engine_valid_id(&q->session_id)) {
        reply_error(self, req, 400, "bad_request", "session_id is required");
        return;
    }
    char *id = engine_dup(&q->session_id);
    runs_add_watcher(self->runs, runs_session_add(self->runs, id), req);
    mem_free(id);
    reply_accepted(self, req, "{}", 2, NULL, NULL, NULL);
}

static void s_follow(engine_t *self, uint64_t req, const orch_request_t *q)
{
    char *run_id = engine_dup(&q->run_id);
    pages_follow(self, req, run_id, q->after_seq);
    mem_free(run_id);
}

static void s_agent_json(engine_t *self, sbuf_t *j, const store_agent_t *a)
{
    int native = strcmp(a->kind, "native") == 0;
    render_agent_t r = {a->agent_id, a->name, native ? NULL : a->endpoint,
                        native ? dispatch_workers(self->dispatch, a->agent_id)
                               : dispatch_bridge_workers(self->dispatch),
                        a->created_at};
    render_agent(j, &r);
}

static int s_valid_endpoint(const agent_str_t *e)
{
    if (e->len < 8 || e->len > AGENT_ENDPOINT_MAX)
        return 0;
    size_t scheme = 0;
    if (e->len > 7 && memcmp(e->ptr, "http://", 7) == 0)
        scheme = 7;
    else if (e->len > 8 && memcmp(e->ptr, "https://", 8) == 0)
        scheme = 8;
    if (!scheme || e->len == scheme)
        return 0;
    for (uint32_t i = 0; i < e->len; i++) {
        unsigned char c = (unsigned char)e->ptr[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
            return 0;
    }
    return e->ptr[scheme] != '/';
}

static void s_register(engine_t *self, uint64_t req, const orch_request_t *q)
{
    if (!engine_valid_id(&q->agent_id)) {
        reply_error(self, req, 400, "bad_request", "agent_id must be 1 to 128 printable characters without quotes, slashes, '?', '#' or '%%'");
        return;
    }
    if (!s_valid_endpoint(&q->endpoint)) {
        reply_error(self, req, 400, "bad_request", "endpoint must be an http:// or https:// URL");
        return;
    }
    char *id = engine_dup(&q->agent_id);
    store_agent_t a;
    int known = store_agent_get(self->store, id, &a);
    /* A native agent's id stays its own once its workers were seen. */
    if (dispatch_workers(self->dispatch, id) || (known == 0 && strcmp(a.kind, "native") == 0)) {
        reply_error(self, req, 409, "conflict", "agent '%s' is served by native workers", id);
        mem_free(id);
        return;
    }
    char *name = q->name.len ? engine_dup(&q->name) : mem_strdup(id);
    char *endpoint = engine_dup(&q->endpoint);
    while (strlen(endpoint) > 0 && endpoint[strlen(endpoint) - 1] == '/')
        endpoint[strlen(endpoint) - 1] = '\0'; /* {endpoint}/invoke stays one slash */
    char now[CLOCK_RFC3339_LEN];
    engine_now(now);
    int created = 0;
    engine_begin(self);
    int rc = store_agent_upsert(self->store, id, name, endpoint, now, &created);
    if (rc == 0)
        rc = store_agent_get(self->store, id, &a);
    if (rc != 0) {
        engine_store_check(self, -1, "agent_upsert");
        reply_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
    } else {
        sbuf_reset(&self->json);
        s_agent_json(self, &self->json, &a);
        reply_plain(self, req, created ? 201 : 200, self->json.data, self->json.len);
        LOGI("agent.registered", "agent=%s endpoint=%s new=%d", id, endpoint, created);
    }
    mem_free(id);
    mem_free(name);
    mem_free(endpoint);
}

typedef struct {
    engine_t *self;
    sbuf_t *j;
    int count;
} s_agents_t;

static int s_agent_cb(void *arg, const store_agent_t *a)
{
    s_agents_t *l = arg;
    if (l->count++)
        sbuf_cats(l->j, ",");
    s_agent_json(l->self, l->j, a);
    return 0;
}

static void s_agents(engine_t *self, uint64_t req, const orch_request_t *q)
{
    (void)q;
    sbuf_t j;
    sbuf_init(&j, CORE_PAGE_BYTES);
    sbuf_cats(&j, "{\"agents\":[");
    s_agents_t l = {self, &j, 0};
    if (store_agents_list(self->store, s_agent_cb, &l) != 0 || sbuf_cats(&j, "]}") != 0)
        reply_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
    else
        reply_plain(self, req, 200, j.data, j.len);
    sbuf_free(&j);
}

static void s_cancel(engine_t *self, uint64_t req, const orch_request_t *q)
{
    char *run_id = engine_dup(&q->run_id);
    run_t *run = runs_live(self->runs, run_id);
    if (run) {
        flow_stop_agent(self, run); /* tell the agent to stop */
        flow_run_end(self, run, RUN_CANCEL, "{}");
        sbuf_reset(&self->json);
        sbuf_cats(&self->json, "{\"run_id\":");
        sbuf_json_str(&self->json, run_id, strlen(run_id));
        sbuf_cats(&self->json, ",\"status\":\"cancelled\"}");
        reply_run(self, req, 202, self->json.data, self->json.len, run->run_id, "cancelled",
                  run->session->id);
        mem_free(run_id);
        return;
    }
    store_run_t row;
    int rc = q->run_id.len ? store_run_get(self->store, run_id, &row) : 1;
    if (rc < 0) {
        reply_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
    } else if (rc > 0) {
        reply_error(self, req, 404, "unknown_run", "no run '%s'", run_id);
    } else {
        char msg[300];
        snprintf(msg, sizeof msg, "run '%s' has already ended (%s)", run_id, row.status);
        sbuf_reset(&self->json);
        render_error(&self->json, "conflict", msg, NULL);
        reply_run(self, req, 409, self->json.data, self->json.len, row.run_id, row.status,
                  row.session_id);
    }
    mem_free(run_id);
}

static void s_health(engine_t *self, uint64_t req, const orch_request_t *q)
{
    (void)q;
    char ok[512], pruned[192];
    retention_json(self->retention, pruned, sizeof pruned);
    int n = snprintf(ok, sizeof ok,
                     "{\"status\":\"ok\",\"store\":\"ok\",%s,\"calls_done\":%llu,"
                     "\"calls_failed\":%llu,\"calls_cancelled\":%llu,\"calls_refused\":%llu}",
                     pruned, (unsigned long long)self->calls_done,
                     (unsigned long long)self->calls_failed,
                     (unsigned long long)self->calls_cancelled,
                     (unsigned long long)self->calls_refused);
    reply_plain(self, req, 200, ok, (size_t)n);
}

typedef struct {
    const char *name;
    void (*fn)(engine_t *self, uint64_t req, const orch_request_t *q);
} s_op_t;

static const s_op_t s_ops[] = {
    {"invoke", s_invoke},
    {"watch", s_watch},
    {"follow", s_follow},
    {"events", pages_events},
    {"run", pages_run},
    {"messages", pages_messages},
    {"session_runs", pages_session_runs},
    {"register", s_register},
    {"agents", s_agents},
    {"cancel", s_cancel},
    {"health", s_health},
    {"call", calls_op},
    {"calls", pages_calls},
};

void ops_request(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    engine_t *self = arg;
    (void)w;
    orch_request_t q;
    agent_err_t err = orch_decode_request(body, len, &q);
    if (err) {
        reply_fail(self, req, "bad_request", agent_strerror(err));
        return;
    }
    for (size_t i = 0; i < sizeof s_ops / sizeof *s_ops; i++) {
        if (q.op.len == strlen(s_ops[i].name) && memcmp(q.op.ptr, s_ops[i].name, q.op.len) == 0) {
            s_ops[i].fn(self, req, &q);
            return;
        }
    }
    reply_error(self, req, 400, "bad_request", "unknown op '%.*s'", (int)q.op.len, q.op.ptr);
}

void ops_cancel(worker_t *w, uint64_t req, void *arg)
{
    engine_t *self = arg;
    (void)w;
    /* Queued answers for this request are refused by the library: harmless.
     * A call request takes its child with it. */
    if (!calls_cancel_req(self, req))
        runs_drop_req(self->runs, req);
}
