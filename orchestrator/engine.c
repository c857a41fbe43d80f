/* engine: the orchestrator's loop, the end of each turn, recovery and
 * lifecycle. The work is in modules (core.h has their shared state):
 *   runs.c      the registry of runs, sessions, followers, watchers
 *   flow.c      runs in motion: start, events, agents' answers, end
 *   ops.c       the service's operations (an op table); pages.c the paged reads
 *   calls.c     agent calls: child runs, their tree, tokens, limits
 *   dispatch.c  where an agent is, the services cache, the invoke body
 *   reply.c     answers through outbox.c (persist, then send)
 *   inbox.c     frames kept while the store's lock is held elsewhere
 *
 * One turn: wait for the broker link or a timer; take the store's write
 * lock (BEGIN IMMEDIATE) before the first frame is handled; handle the
 * inbox, then what the socket has, then timers; commit; then send what the
 * turn produced. No requester ever sees what is not persisted. (Agent
 * invokes leave at once: an agent is no requester, and a turn that fails
 * cancels the invokes it sent, flow_stop_agent.)
 *
 * The lock. The turn waits for it a tenth of the heartbeat at most
 * (store_set_busy_ms). When another connection holds it, every frame the
 * turn reads goes to the inbox (copied, in order, bounded) and the next
 * turn tries again: the loop keeps its heartbeats however long the lock is
 * held. Past the inbox's bounds a request fails `unavailable` and a run
 * whose agent frame could not be kept is doomed.
 *
 * The turn's budget. A turn handles frames for a quarter of the heartbeat
 * at most (turn_budget_ms); later frames go to the inbox like frames read
 * under a lock and the next turn (at once) takes them in order. A burst of
 * large requests then costs several short turns instead of one long one
 * that would outlast the broker link's liveness (the library counts a
 * batch that takes longer than that as silence).
 *
 * A failed turn (its writes or its commit failed: a full disk) is rolled
 * back in memory too: runs it created are forgotten; the others get back
 * the seq they had and are doomed: they end with one run_failed/internal as
 * soon as a transaction opens again. Its answers are dropped; their
 * requesters get ERROR internal and stop following or watching. */
#include "engine.h"

#include "calls.h"
#include "core.h"
#include "flow.h"
#include "ops.h"
#include "reply.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/mem.h"
#include "proto/frame.h"
#include "proto/id.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#define S_TICK_MS 100              /* timeout scan interval */
#define S_OUT_RETRY_MS 10          /* wait while answers wait for the socket */
#define S_IN_MAX (1u << 20)        /* frames the inbox keeps at most */
#define S_IN_BYTES (256u << 20)    /* their bytes at most */

/* ---- helpers the modules share (core.h) ---------------------------------- */

char *engine_dup(const agent_str_t *s)
{
    return mem_strndup(s->ptr ? s->ptr : "", s->len);
}

agent_str_t engine_str(const char *s)
{
    return (agent_str_t){s, s ? (uint32_t)strlen(s) : 0};
}

int engine_valid_id(const agent_str_t *s)
{
    return id_valid(s->ptr, s->len);
}

/* Every event has a timestamp: format each millisecond once. */
void engine_now(char *buf)
{
    static int64_t last_ms = -1;
    static char last[CLOCK_RFC3339_LEN];
    int64_t ms = clock_wall_ms();
    if (ms != last_ms) {
        clock_rfc3339(ms, last);
        last_ms = ms;
    }
    memcpy(buf, last, CLOCK_RFC3339_LEN);
}

void engine_begin(engine_t *self)
{
    if (self->in_tx)
        return;
    if (store_begin(self->store) != 0) {
        LOGE("store.error", "op=begin error=\"%s\"", store_errmsg(self->store));
        self->store_failed = 1;
    }
    self->in_tx = 1;
}

void engine_store_check(engine_t *self, int rc, const char *op)
{
    if (rc != 0 && !self->store_failed) {
        LOGE("store.error", "op=%s error=\"%s\"", op, store_errmsg(self->store));
        self->store_failed = 1;
    }
}

/* ---- the lock: the gate and the inbox ------------------------------------- */

/* Takes the write lock for this turn: 1, or 0 when another connection
 * holds it (blocked is set: the turn tries no more). */
static int s_lock(engine_t *self)
{
    if (store_begin(self->store) != 0) {
        if (store_busy(self->store)) {
            self->blocked = 1;
            if (!self->blocked_since) {
                self->blocked_since = clock_mono_ms();
                LOGW("store.locked", "reason=\"%s\"", store_errmsg(self->store));
            }
            return 0;
        }
        LOGE("store.error", "op=begin error=\"%s\"", store_errmsg(self->store));
        self->store_failed = 1;
    }
    self->in_tx = 1;
    if (self->blocked_since) {
        LOGI("store.unlocked", "waited_ms=%lld deferred=%zu",
             (long long)(clock_mono_ms() - self->blocked_since), inbox_count(self->inbox));
        self->blocked_since = 0;
    }
    flow_fail_doomed(self);
    return 1;
}

/* 1 when this turn may handle a frame now (it holds the write lock, taking
 * it if it can), 0 when the caller must keep it: the lock is held
 * elsewhere, or older frames wait (order is kept). */
static int s_gate(engine_t *self)
{
    if (self->replaying)
        return 1;
    if (self->in_tx) {
        if (clock_mono_ms() - self->turn_started <= self->turn_budget_ms)
            return 1;
        self->blocked = 1; /* this turn has done its share: the rest waits, in order */
        return 0;
    }
    if (self->blocked || inbox_count(self->inbox))
        return 0;
    return s_lock(self);
}

/* An agent's frame that could not be kept: its run cannot be told whole,
 * so it stops (the agent is told) and fails once the store writes. */
static void s_kept_none(engine_t *self, uint64_t req, int final)
{
    if (req == dispatch_asked(self->dispatch)) {
        dispatch_forget_ask(self->dispatch); /* asked again at the next refresh */
        return;
    }
    run_t *run = hmap_del(self->agent_reqs, req);
    if (!run)
        return;
    if (!final)
        worker_cancel(self->worker, req);
    run->agent_req = 0;
    LOGE("store.inbox_full", "run=%s frames=%zu bytes=%zu", run->run_id,
         inbox_count(self->inbox), inbox_bytes(self->inbox));
    flow_doom(self, run);
}

static void s_gated_request(worker_t *w, uint64_t id, const uint8_t *body, size_t len, void *arg)
{
    engine_t *self = arg;
    if (s_gate(self))
        ops_request(w, id, body, len, arg);
    else if (inbox_push(self->inbox, INBOX_REQUEST, id, body, len, 0) != 0)
        worker_fail(w, id, "unavailable", "the store is busy; try again");
}

static void s_gated_cancel(worker_t *w, uint64_t id, void *arg)
{
    engine_t *self = arg;
    if (s_gate(self))
        ops_cancel(w, id, arg);
    else
        inbox_push(self->inbox, INBOX_CANCEL, id, NULL, 0, 1);
}

static void s_gated_stream(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    engine_t *self = arg;
    if (s_gate(self))
        flow_on_stream(w, req, body, len, arg);
    else if (inbox_push(self->inbox, INBOX_STREAM, req, body, len, 0) != 0)
        s_kept_none(self, req, 0);
}

static void s_gated_reply(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    engine_t *self = arg;
    if (s_gate(self))
        flow_on_reply(w, req, body, len, arg);
    else if (inbox_push(self->inbox, INBOX_REPLY, req, body, len, 0) != 0)
        s_kept_none(self, req, 1);
}

static void s_gated_error(worker_t *w, uint64_t req, const char *code, const char *message,
                          void *arg)
{
    engine_t *self = arg;
    if (s_gate(self))
        flow_on_error(w, req, code, message, arg);
    else if (inbox_push_error(self->inbox, req, code, message) != 0)
        s_kept_none(self, req, 1);
}

static void s_on_link(worker_t *w, int up, void *arg)
{
    engine_t *self = arg;
    (void)w;
    LOGI(up ? "broker.up" : "broker.lost", "endpoint=%s", self->cfg.broker);
    dispatch_forget_ask(self->dispatch);
    if (up)
        dispatch_ask(self->dispatch, 0, clock_mono_ms());
}

/* At a turn's start: the inbox first, in the order it came, once the lock
 * is ours (doomed runs end as it is taken). */
static void s_turn_start(engine_t *self)
{
    self->blocked = 0;
    if ((!inbox_count(self->inbox) && !self->ndoomed) || (!self->in_tx && !s_lock(self)))
        return;
    self->replaying = 1;
    inbox_item_t *it;
    while (clock_mono_ms() - self->turn_started <= self->turn_budget_ms &&
           (it = inbox_pop(self->inbox))) {
        switch (it->kind) {
        case INBOX_REQUEST: ops_request(self->worker, it->id, it->body, it->len, self); break;
        case INBOX_CANCEL: ops_cancel(self->worker, it->id, self); break;
        case INBOX_STREAM: flow_on_stream(self->worker, it->id, it->body, it->len, self); break;
        case INBOX_REPLY: flow_on_reply(self->worker, it->id, it->body, it->len, self); break;
        case INBOX_ERROR: {
            const char *code = (const char *)it->body;
            flow_on_error(self->worker, it->id, code, code + strlen(code) + 1, self);
            break;
        }
        }
        inbox_item_free(it);
    }
    self->replaying = 0;
}

/* ---- the end of a turn ------------------------------------------------------ */

static void s_rollback_cb(void *arg, uint64_t req)
{
    hmap_put(arg, req, (void *)1);
}

/* The turn's transaction is gone: so is what it did in memory. */
static void s_turn_failed(engine_t *self)
{
    store_rollback(self->store);
    hmap_t *failed = hmap_new(CORE_OUT_ENTRIES);
    outbox_rollback(self->out, s_rollback_cb, failed);
    size_t pos = 0;
    uint64_t req;
    void *value;
    while (hmap_next(failed, &pos, &req, &value) == 0) {
        worker_fail(self->worker, req, "internal", "the store could not commit");
        runs_drop_req(self->runs, req); /* it follows and watches nothing more */
        calls_drop_req(self, req);
    }
    hmap_destroy(&failed);
    size_t forgotten = 0, doomed = 0;
    for (size_t i = 0; i < self->ntouched; i++) {
        run_t *run = self->touched[i];
        run->touched = 0;
        flow_stop_agent(self, run);
        if (run->ended)
            runs_unend(self->runs, run);
        if (run->created) {
            runs_forget(self->runs, run);
            forgotten++;
            continue;
        }
        run->seq = run->seq0;
        if (runfsm_terminal(run->status))
            run->status = RUN_RUNNING; /* the store still has it unfinished */
        flow_doom(self, run);
        doomed++;
    }
    self->ntouched = 0;
    dispatch_forget_recorded(self->dispatch); /* native agents: recorded again */
    /* A store that keeps failing fails every turn: one line a second. */
    static int64_t last_log;
    static unsigned long quiet;
    int64_t now = clock_mono_ms();
    if (now - last_log >= 1000) {
        LOGE("engine.turn_failed", "runs_forgotten=%zu runs_doomed=%zu turns_since_last=%lu",
             forgotten, doomed, quiet);
        last_log = now;
        quiet = 0;
    } else {
        quiet++;
    }
}

/* A session out of memory: its history window goes too (store_hist.c). */
static void s_session_released(void *arg, const char *session_id)
{
    engine_t *self = arg;
    store_history_forget(self->store, session_id);
}

/* Ends the turn: commit, then send (or undo what the turn did). */
static int s_end_turn(engine_t *self)
{
    reply_batches_push(self); /* the watches' batches join the turn's answers */
    if (self->in_tx) {
        int rc = self->store_failed ? -1 : store_commit(self->store);
        self->in_tx = 0;
        if (rc != 0) {
            if (!self->store_failed)
                LOGE("store.error", "op=commit error=\"%s\"", store_errmsg(self->store));
            self->store_failed = 0;
            s_turn_failed(self);
            return -1;
        }
    }
    for (size_t i = 0; i < self->ntouched; i++)
        self->touched[i]->touched = self->touched[i]->created = 0;
    self->ntouched = 0;
    outbox_commit(self->out);
    reply_flush(self);
    runs_free_ended(self->runs);
    return 0;
}

static void s_tick(engine_t *self, int64_t now)
{
    if (self->ndoomed)
        s_gate(self); /* a transaction that opens ends them */
    flow_timeouts(self, now, s_gate);
    if (dispatch_due(self->dispatch, now) && worker_linked(self->worker))
        dispatch_ask(self->dispatch, 0, now);
    if (s_gate(self)) /* inside the turn's transaction, once the store is ours */
        retention_step(self->retention, clock_wall_ms());
}

static void s_fail_watch(void *arg, uint64_t req)
{
    engine_t *self = arg;
    worker_fail(self->worker, req, "unavailable", "the orchestrator is stopping");
}

int engine_turn(engine_t *self, long wait_ms)
{
    zmq_pollitem_t item = {worker_socket(self->worker), 0, ZMQ_POLLIN, 0};
    int64_t now = clock_mono_ms();
    long timeout = worker_timeout_ms(self->worker);
    if (outbox_waiting(self->out) && timeout > S_OUT_RETRY_MS)
        timeout = S_OUT_RETRY_MS; /* answers wait for room in the socket */
    long until_tick = (long)(self->next_tick - now);
    if (until_tick < timeout)
        timeout = until_tick < 0 ? 0 : until_tick;
    if (inbox_count(self->inbox))
        timeout = 0; /* kept frames wait for this turn */
    if (wait_ms >= 0 && wait_ms < timeout)
        timeout = wait_ms;
    if (zmq_poll(&item, 1, timeout) < 0 && errno != EINTR) {
        LOGE("engine.poll", "error=%s", zmq_strerror(errno));
        return -1;
    }
    self->turn_started = clock_mono_ms();
    size_t pending_before = worker_pending(self->worker);
    s_turn_start(self);
    while (worker_process(self->worker) > 0) {
        if (outbox_bytes(self->out) > CORE_OUT_MAX / 2 ||
            outbox_entries(self->out) > CORE_OUT_ENTRIES / 2)
            break; /* commit and send before taking more */
    }
    /* The turn sent requests (agent invokes): their socket's I/O thread was
     * woken on this core and would wait for the commit. One yield lets it
     * send them first, so the agents work while the turn commits (A/B at one
     * connection: run p50 -4%, README Benchmarks). */
    if (worker_pending(self->worker) > pending_before)
        sched_yield();
    now = clock_mono_ms();
    if (now >= self->next_tick) {
        s_tick(self, now);
        self->next_tick = now + S_TICK_MS;
    }
    s_end_turn(self);
    return 0;
}

int engine_run(engine_t *self, volatile sig_atomic_t *stop)
{
    int64_t drain_until = 0;
    for (;;) {
        int64_t now = clock_mono_ms();
        if (*stop && !self->draining) {
            self->draining = 1;
            drain_until = now + self->cfg.drain_ms;
            LOGI("engine.draining", "runs=%zu drain_ms=%ld", runs_count(self->runs),
                 self->cfg.drain_ms);
        }
        if (self->draining && (runs_count(self->runs) == 0 || now >= drain_until))
            break;
        if (engine_turn(self, -1) != 0)
            return -1;
    }
    self->turn_started = clock_mono_ms();
    self->turn_budget_ms = 1L << 30; /* the last turn takes what is left */
    s_turn_start(self);
    if (s_gate(self)) /* locked: recovery ends them at the next start */
        flow_fail_all(self, "the orchestrator stopped before the run ended");
    s_end_turn(self);
    /* Watchers: their streams end with the process. */
    runs_each_watch(self->runs, s_fail_watch, self);
    return 0;
}

/* ---- lifecycle -------------------------------------------------------------- */

/* Ends the runs a crash left unfinished with run_failed/internal, deepest
 * first (store_runs_unfinished's order): a child's parent, still
 * unfinished, gets its agent_call_failed before its own run_failed, so a
 * tree ends whole and each log ends with its terminal event. */
static int s_recover_cb(void *arg, const store_run_t *row, uint64_t last_seq)
{
    engine_t *self = arg;
    char now[CLOCK_RFC3339_LEN];
    engine_now(now);
    (void)last_seq; /* a child recovered before may have written to this log */
    const char *error =
        "{\"code\":\"internal\",\"message\":\"the orchestrator restarted before the run ended\"}";
    char payload[256];
    snprintf(payload, sizeof payload, "{\"error\":%s}", error);
    int64_t event_id;
    uint64_t seq;
    if (store_run_last_seq(self->store, row->run_id, &seq) != 0 ||
        store_event_append(self->store, row->run_id, seq + 1, "run_failed", payload, now,
                           &event_id) != 0 ||
        store_run_set_status(self->store, row->run_id, "failed", now) != 0)
        return -1;
    store_run_t parent;
    int rc = row->parent_run_id[0] ? store_run_get(self->store, row->parent_run_id, &parent) : 1;
    if (rc < 0)
        return -1;
    if (rc == 0 && (!strcmp(parent.status, "running") || !strcmp(parent.status, "queued"))) {
        sbuf_t p;
        sbuf_init(&p, 4096);
        sbuf_cats(&p, "{\"call_id\":");
        sbuf_json_str(&p, row->call_id, strlen(row->call_id));
        sbuf_cats(&p, ",\"child_run_id\":");
        sbuf_json_str(&p, row->run_id, strlen(row->run_id));
        sbuf_cats(&p, ",\"error\":");
        sbuf_cats(&p, error);
        sbuf_cats(&p, "}");
        rc = store_run_last_seq(self->store, parent.run_id, &seq) != 0 ||
             store_event_append(self->store, parent.run_id, seq + 1, "agent_call_failed", p.data,
                                now, &event_id) != 0;
        sbuf_free(&p);
        if (rc)
            return -1;
    }
    LOGW("run.recovered", "run=%s session=%s status=failed was=%s", row->run_id,
         row->session_id, row->status);
    return 0;
}

engine_t *engine_new(const engine_config_t *cfg, char *err, size_t errlen)
{
    engine_t *self = mem_alloc(sizeof *self);
    self->cfg = *cfg;
    if (self->cfg.call_depth_max <= 0)
        self->cfg.call_depth_max = CALLS_DEPTH_DEFAULT;
    if (self->cfg.calls_per_run_max <= 0)
        self->cfg.calls_per_run_max = CALLS_PER_RUN_DEFAULT;
    self->store = store_new(cfg->db, cfg->durability_full ? STORE_FULL : STORE_NORMAL, err, errlen);
    if (!self->store) {
        mem_free(self);
        return NULL;
    }
    if (store_begin(self->store) != 0 ||
        store_runs_unfinished(self->store, s_recover_cb, self) != 0 ||
        store_commit(self->store) != 0) {
        snprintf(err, errlen, "cannot recover unfinished runs in '%s': %s", cfg->db,
                 store_errmsg(self->store));
        store_destroy(&self->store);
        mem_free(self);
        return NULL;
    }
    self->retention = retention_new(self->store, cfg->retention_ms, RETENTION_BATCH_ROWS, err, errlen);
    if (!self->retention) {
        store_destroy(&self->store);
        mem_free(self);
        return NULL;
    }
    /* From now on a lock held elsewhere costs a turn this long, not the loop. */
    long busy_ms = cfg->heartbeat_ms / 10;
    store_set_busy_ms(self->store, (int)(busy_ms < 10 ? 10 : busy_ms > 100 ? 100 : busy_ms));
    worker_handlers_t h = {.on_request = s_gated_request,
                           .on_cancel = s_gated_cancel,
                           .on_stream = s_gated_stream,
                           .on_reply = s_gated_reply,
                           .on_error = s_gated_error,
                           .on_link = s_on_link};
    worker_config_t wc = {.endpoint = cfg->broker,
                          .service = "orchestrator",
                          .capacity = FRAME_CAPACITY_MAX,
                          .heartbeat_ms = cfg->heartbeat_ms,
                          .body_max = CORE_BODY_MAX};
    self->worker = worker_new(&wc, &h, self, err, errlen);
    if (!self->worker) {
        retention_destroy(&self->retention);
        store_destroy(&self->store);
        mem_free(self);
        return NULL;
    }
    self->runs = runs_new();
    runs_on_release(self->runs, s_session_released, self);
    self->dispatch = dispatch_new(self->worker, self->store, CORE_BODY_MAX);
    self->agent_reqs = hmap_new(1000000);
    self->call_reqs = hmap_new(1000000);
    self->inbox = inbox_new(S_IN_MAX, S_IN_BYTES);
    self->out = outbox_new(CORE_OUT_ENTRIES, CORE_OUT_MAX);
    self->refused = hmap_new(CORE_OUT_ENTRIES);
    sbuf_init(&self->json, CORE_JSON_MAX);
    sbuf_init(&self->event, CORE_JSON_MAX);
    mp_buf_init(&self->mp, CORE_JSON_MAX + 4096);
    self->batch_turn = 1; /* a new watcher's 0 names no turn */
    self->next_tick = clock_mono_ms() + S_TICK_MS;
    self->turn_budget_ms = cfg->heartbeat_ms / 4 < 10 ? 10 : cfg->heartbeat_ms / 4;
    return self;
}

void engine_destroy(engine_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    engine_t *self = *self_p;
    runs_destroy(&self->runs);
    dispatch_destroy(&self->dispatch);
    hmap_destroy(&self->agent_reqs);
    if (self->call_reqs) {
        size_t pos = 0;
        uint64_t key;
        void *value;
        while (hmap_next(self->call_reqs, &pos, &key, &value) == 0)
            mem_free(value);
        hmap_destroy(&self->call_reqs);
    }
    worker_destroy(&self->worker);
    retention_destroy(&self->retention);
    store_destroy(&self->store);
    inbox_destroy(&self->inbox);
    outbox_destroy(&self->out);
    hmap_destroy(&self->refused);
    sbuf_free(&self->json);
    sbuf_free(&self->event);
    mp_buf_free(&self->mp);
    reply_batches_free(self);
    mem_free(self->touched);
    mem_free(self->doomed);
    mem_free(self);
    *self_p = NULL;
}
