/* engine: runs, their events and the requesters that watch them.
 *
 * Objects and owners:
 *   run_t      a queued or running run; owned by self->runs (key run_id).
 *              Ended runs leave memory at the end of the turn that ended
 *              them: the store has everything about them.
 *   session_t  a session with a running run, queued runs or watchers; owned
 *              by self->sessions; freed when it has none of them.
 *   follower   a requester streaming one run (follow, invoke with follow);
 *              watcher: a requester streaming every run of a session.
 *
 * The outbox (outbox.c): everything the turn sends to requesters (events,
 * replies, failures) is queued there and sent after the turn's transaction
 * committed, so no requester ever sees what is not persisted. A send the
 * socket refuses at its high-water mark stays in the outbox and goes at the
 * next turn, in order. A push the outbox refuses (full: S_OUT_ENTRIES or
 * S_OUT_MAX) fails that request visibly at the turn's end: ERROR `internal`,
 * and it stops following or watching.
 *
 * Sequence numbers: run->seq is the last seq written; events are appended
 * with seq + 1 inside the turn's transaction, so seq is gapless per run.
 *
 * The store's lock and failed turns. A turn takes the write lock (BEGIN
 * IMMEDIATE) before it handles its first frame, waiting a small fraction of
 * the heartbeat (store_set_busy_ms). When another connection holds the
 * lock, the turn defers every frame it reads (copied, in order, bounded by
 * S_IN_MAX / S_IN_BYTES) and the next turn tries again, so the loop keeps
 * answering heartbeats however long the lock is held. A turn whose writes
 * or commit fail (a full disk) is rolled back in memory too: runs it
 * created are forgotten, the others get back the seq they had, and every
 * run it touched is "doomed": it ends with one run_failed/internal as soon
 * as a transaction opens again. Its answers are dropped; their requesters
 * get ERROR internal. */
#include "engine.h"

#include "worker/worker.h"
#include "common/clock.h"
#include "common/hmap.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/sbuf.h"
#include "proto/agent.h"
#include "proto/frame.h"
#include "proto/id.h"
#include "proto/orch.h"
#include "proto/utf8.h"
#include "outbox.h"
#include "runfsm.h"
#include "store.h"

#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#define S_BODY_MAX (1u << 20)      /* largest body we send (the broker's frame limit) */
#define S_JSON_MAX (8u << 20)      /* largest JSON answer we build */
/* Paged answers: the JSON of one page leaves room in its REPLY body for
 * the map and the typed fields, so a page always fits a frame; one event
 * (or message) leaves room in a page for the envelope, so a page always
 * holds at least one. Events past S_EVENT_MAX are refused where they are
 * made (413 for an input, agent_error for an agent's answer). */
#define S_PAGE_BYTES (S_BODY_MAX - 8192)
#define S_EVENT_MAX (S_PAGE_BYTES - 2048)
#define S_PAYLOAD_MAX (S_EVENT_MAX - 1024) /* an event's payload JSON: ids, type, time fit */
#define S_EVENTS_DEFAULT 1000
#define S_MESSAGES_DEFAULT 100
#define S_MESSAGES_MAX 1000
#define S_RUNS_DEFAULT 50
#define S_RUNS_MAX 1000
/* follow replays one page of stored events (count and bytes of STREAM
 * bodies) before going live; the edge fills the rest with `events`. */
#define S_FOLLOW_EVENTS 1000
#define S_FOLLOW_BYTES (4u << 20)
#define S_OUT_MAX (256u << 20)     /* bytes the outbox holds */
#define S_OUT_ENTRIES (1u << 20)   /* answers the outbox holds */
#define S_OUT_RETRY_MS 10          /* wait while answers wait for the socket */
#define S_TICK_MS 100              /* timeout scan interval */
#define S_SERVICES_MS 1000         /* services cache refresh */

typedef struct session_t session_t;

typedef struct follower_t {
    uint64_t req;              /* the requester's request we answer */
    uint64_t next_seq;         /* first seq not yet sent */
    struct follower_t *next;
} follower_t;

typedef struct watcher_t {
    uint64_t req;
    struct watcher_t *next;
} watcher_t;

typedef struct run_t {
    char run_id[IDS_MAX];
    session_t *session;
    char *agent_id;
    char *request_id;          /* NULL when the invoke had none */
    char *role;                /* the input message's role */
    char *content;             /* its content: NULL while queued (the store has
                                  it; loaded when the run starts) */
    size_t content_len;
    size_t nfollowers;
    char created_at[CLOCK_RFC3339_LEN];
    run_status_t status;
    uint64_t seq;              /* last seq written */
    uint64_t agent_req;        /* our request to the agent, 0 if none */
    int64_t deadline;          /* mono ms: agent timeout while agent_req */
    int resolving;             /* waiting for the services list */
    int asked_broker;          /* a fresh services list was asked for it */
    int ended;                 /* terminal: freed at the end of the turn */
    int touched;               /* changed in this turn (in self->touched) */
    int created;               /* created in this turn */
    int doomed;                /* in self->doomed: to fail once the store writes */
    uint64_t seq0;             /* seq when the turn first touched it */
    follower_t *followers;
    struct run_t *qnext;       /* session queue link */
    struct run_t *next_ended;  /* self->ended link */
} run_t;

struct session_t {
    char *id;
    run_t *running;
    run_t *qhead, *qtail;      /* queued runs, in order of acceptance */
    size_t queued;             /* runs in that queue */
    watcher_t *watchers;
    size_t runs;               /* run_t that point here, ended ones included
                                  until the turn's end frees them */
};

#define S_OUT_STREAM OUTBOX_STREAM
#define S_OUT_REPLY OUTBOX_REPLY

/* A frame read while the store's lock is held elsewhere, kept for the
 * next turn that gets it. */
typedef enum { S_IN_REQUEST, S_IN_CANCEL, S_IN_STREAM, S_IN_REPLY, S_IN_ERROR } s_in_kind_t;

typedef struct s_in_t {
    s_in_kind_t kind;
    uint64_t id;
    size_t len;                /* body bytes; ERROR: code\0message\0 */
    struct s_in_t *next;
    uint8_t body[];
} s_in_t;

#define S_IN_MAX (1u << 20)        /* frames deferred at most */
#define S_IN_BYTES (256u << 20)    /* their bytes at most */

struct engine_t {
    engine_config_t cfg;
    store_t *store;
    worker_t *worker;
    zhashx_t *runs;            /* run_id → run_t (queued/running) */
    zhashx_t *sessions;        /* session_id → session_t */
    zhashx_t *native;          /* agent id → worker count (from the broker) */
    zhashx_t *native_seen;     /* native agent ids recorded in the store */
    hmap_t *agent_reqs;        /* our agent request id → run_t */
    hmap_t *follow_reqs;       /* follower request → run_t */
    hmap_t *watch_reqs;        /* watcher request → session_t */
    uint64_t services_req;     /* outstanding SERVICES request, 0 if none */
    size_t bridge_workers;     /* workers of the `bridge` service */
    int services_stale;        /* a run waits for a list newer than the one asked */
    int64_t next_services;
    int64_t next_tick;
    int in_tx;                 /* a transaction is open this turn */
    int store_failed;          /* a write failed this turn */
    int blocked;               /* this turn found the lock held elsewhere */
    int replaying;             /* handling deferred frames */
    int64_t blocked_since;     /* mono ms the lock was first found held, 0: not */
    s_in_t *in_head, *in_tail; /* deferred frames, oldest first */
    size_t in_count, in_bytes;
    run_t **touched;           /* runs this turn changed */
    size_t ntouched, touched_cap;
    run_t **doomed;            /* runs to fail with internal (a failed turn) */
    size_t ndoomed, doomed_cap;
    outbox_t *out;             /* answers: sent once their turn is committed */
    hmap_t *refused;           /* requests whose answer the full outbox refused */
    mp_buf_t mp;               /* scratch encoder */
    sbuf_t json;               /* scratch JSON: answers and payloads */
    sbuf_t event;              /* scratch JSON: the event s_emit renders */
    run_t *ended;              /* runs to free after the flush */
    int draining;              /* stopping: new invokes refused */
    uint64_t dropped_frames;   /* agent frames for ended runs */
};

/* ---- small helpers -------------------------------------------------------- */

static char *s_dup(const agent_str_t *s)
{
    return mem_strndup(s->ptr ? s->ptr : "", s->len);
}

/* Every event has a timestamp: format each millisecond once. */
static void s_now(char *buf)
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

/* Ids from clients go into JSON and URLs: the rule of proto/id.h. */
static int s_valid_id(const agent_str_t *s)
{
    return id_valid(s->ptr, s->len);
}

static agent_str_t s_str(const char *s)
{
    return (agent_str_t){s, s ? (uint32_t)strlen(s) : 0};
}

static void s_begin(engine_t *self)
{
    if (self->in_tx)
        return;
    if (store_begin(self->store) != 0) {
        LOGE("store.error", "op=begin error=\"%s\"", store_errmsg(self->store));
        self->store_failed = 1;
    }
    self->in_tx = 1;
}

static void s_store_check(engine_t *self, int rc, const char *op)
{
    if (rc != 0 && !self->store_failed) {
        LOGE("store.error", "op=%s error=\"%s\"", op, store_errmsg(self->store));
        self->store_failed = 1;
    }
}

/* ---- failed turns ----------------------------------------------------------- */

static void s_grow(run_t ***arr, size_t n, size_t *cap)
{
    if (n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *arr = mem_realloc(*arr, *cap * sizeof **arr);
    }
}

/* The turn changes run: remember what to roll back to. */
static void s_touch(engine_t *self, run_t *run)
{
    if (run->touched)
        return;
    run->touched = 1;
    run->seq0 = run->seq;
    s_grow(&self->touched, self->ntouched, &self->touched_cap);
    self->touched[self->ntouched++] = run;
}

static void s_doom(engine_t *self, run_t *run)
{
    if (run->doomed || run->ended)
        return;
    run->doomed = 1;
    s_grow(&self->doomed, self->ndoomed, &self->doomed_cap);
    self->doomed[self->ndoomed++] = run;
}

static void s_undoom(engine_t *self, run_t *run)
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

/* ---- the outbox ----------------------------------------------------------- */

static void s_out_push(engine_t *self, uint64_t req, outbox_kind_t kind, const void *body,
                       size_t len)
{
    if (hmap_get(self->refused, req))
        return; /* it fails at the turn's end; nothing more for it */
    if (outbox_push(self->out, req, kind, body, len) == 0)
        return;
    LOGE("engine.outbox", "reason=full req=%llu entries=%zu bytes=%zu", (unsigned long long)req,
         outbox_entries(self->out), outbox_bytes(self->out));
    hmap_put(self->refused, req, (void *)1);
}

/* A reply about one run carries its id, status and session typed
 * (run_id NULL: about no run). */
static void s_out_run_reply(engine_t *self, uint64_t req, unsigned status, const char *json,
                            size_t len, const char *run_id, const char *run_status,
                            const char *session_id)
{
    orch_reply_t r = {.status = status,
                      .json = {json, (uint32_t)len},
                      .run_id = s_str(run_id),
                      .run_status = s_str(run_id ? run_status : NULL),
                      .session_id = s_str(run_id ? session_id : NULL)};
    mp_buf_reset(&self->mp);
    orch_encode_reply(&self->mp, &r);
    s_out_push(self, req, S_OUT_REPLY, self->mp.data, self->mp.len);
}

static void s_out_reply(engine_t *self, uint64_t req, unsigned status, const char *json,
                        size_t len)
{
    s_out_run_reply(self, req, status, json, len, NULL, NULL, NULL);
}

static void s_out_error(engine_t *self, uint64_t req, unsigned status, const char *code,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void s_out_error(engine_t *self, uint64_t req, unsigned status, const char *code,
                        const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sbuf_t j;
    sbuf_init(&j, 4096);
    sbuf_cats(&j, "{\"error\":{\"code\":");
    sbuf_json_str(&j, code, strlen(code));
    sbuf_cats(&j, ",\"message\":");
    sbuf_json_str(&j, msg, strlen(msg));
    sbuf_cats(&j, "}}");
    s_out_reply(self, req, status, j.data, j.len);
    sbuf_free(&j);
}

/* run_id NULL: accepted about no run (a watch). */
static void s_out_accepted(engine_t *self, uint64_t req, const char *json, size_t len,
                           const char *run_id, const char *run_status, const char *session_id)
{
    orch_stream_t acc = {.json = {json, (uint32_t)len},
                         .run_id = s_str(run_id),
                         .run_status = s_str(run_id ? run_status : NULL),
                         .session_id = s_str(run_id ? session_id : NULL)};
    mp_buf_reset(&self->mp);
    orch_encode_accepted(&self->mp, &acc);
    s_out_push(self, req, S_OUT_STREAM, self->mp.data, self->mp.len);
}

static void s_out_fail(engine_t *self, uint64_t req, const char *code, const char *message)
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

static void s_on_cancel(worker_t *w, uint64_t id, void *arg);

/* Sends what is committed; fails the requests the full outbox refused. */
static void s_flush(engine_t *self)
{
    outbox_flush(self->out, s_send, self);
    if (hmap_size(self->refused) == 0)
        return;
    size_t pos = 0;
    uint64_t req;
    void *value;
    while (hmap_next(self->refused, &pos, &req, &value) == 0) {
        worker_fail(self->worker, req, "internal", "the answer is over the orchestrator's outbox maximum");
        s_on_cancel(self->worker, req, self); /* it follows and watches nothing more */
    }
    hmap_destroy(&self->refused);
    self->refused = hmap_new(S_OUT_ENTRIES);
}

/* ---- JSON of runs and events ---------------------------------------------- */

static void s_json_run(sbuf_t *j, const char *run_id, const char *session_id,
                       const char *agent_id, const char *status, const char *created_at,
                       const char *ended_at)
{
    sbuf_cats(j, "{\"run_id\":");
    sbuf_json_str(j, run_id, strlen(run_id));
    sbuf_cats(j, ",\"session_id\":");
    sbuf_json_str(j, session_id, strlen(session_id));
    sbuf_cats(j, ",\"agent_id\":");
    sbuf_json_str(j, agent_id, strlen(agent_id));
    sbuf_cats(j, ",\"status\":");
    sbuf_json_str(j, status, strlen(status));
    sbuf_cats(j, ",\"created_at\":");
    sbuf_json_str(j, created_at, strlen(created_at));
    sbuf_cats(j, ",\"ended_at\":");
    if (ended_at && *ended_at)
        sbuf_json_str(j, ended_at, strlen(ended_at));
    else
        sbuf_cats(j, "null");
    /* Client runs (SPEC §3); calls (§7) will fill these. */
    sbuf_cats(j, ",\"parent_run_id\":null,\"root_run_id\":null,\"depth\":0}");
}

static void s_json_event(sbuf_t *j, int64_t event_id, const char *run_id, const char *session_id,
                         uint64_t seq, const char *type, const char *payload,
                         const char *created_at)
{
    sbuf_cats(j, "{\"event_id\":");
    sbuf_cat_u64(j, (unsigned long long)event_id);
    sbuf_cats(j, ",\"run_id\":");
    sbuf_json_str(j, run_id, strlen(run_id));
    sbuf_cats(j, ",\"session_id\":");
    sbuf_json_str(j, session_id, strlen(session_id));
    sbuf_cats(j, ",\"seq\":");
    sbuf_cat_u64(j, seq);
    sbuf_cats(j, ",\"type\":");
    sbuf_json_str(j, type, strlen(type));
    sbuf_cats(j, ",\"payload\":");
    sbuf_cats(j, payload);
    sbuf_cats(j, ",\"created_at\":");
    sbuf_json_str(j, created_at, strlen(created_at));
    sbuf_cats(j, "}");
}

/* ---- sessions --------------------------------------------------------------- */

static session_t *s_session(engine_t *self, const char *id)
{
    session_t *s = zhashx_lookup(self->sessions, id);
    if (!s) {
        s = mem_alloc(sizeof *s);
        s->id = mem_strdup(id);
        zhashx_insert(self->sessions, id, s);
    }
    return s;
}

/* Frees a session nothing refers to any more: no run (a run that ended
 * this turn still points here until s_runs_free_ended), no watcher. */
static void s_session_maybe_free(engine_t *self, session_t *s)
{
    if (s->runs || s->watchers)
        return;
    zhashx_delete(self->sessions, s->id);
    mem_free(s->id);
    mem_free(s);
}

/* ---- events ----------------------------------------------------------------- */

/* Writes one event of the run and queues it for every follower and watcher.
 * payload: JSON text. */
static void s_emit(engine_t *self, run_t *run, const char *type, const char *payload)
{
    char created_at[CLOCK_RFC3339_LEN];
    s_now(created_at);
    s_begin(self);
    s_touch(self, run);
    int64_t event_id = 0;
    uint64_t seq = run->seq + 1;
    s_store_check(self,
                  store_event_append(self->store, run->run_id, seq, type, payload, created_at,
                                     &event_id),
                  "event_append");
    run->seq = seq;
    int terminal = strcmp(type, "run_done") == 0 || strcmp(type, "run_failed") == 0 ||
                   strcmp(type, "run_cancelled") == 0;
    sbuf_reset(&self->event);
    s_json_event(&self->event, event_id, run->run_id, run->session->id, seq, type, payload,
                 created_at);
    orch_stream_t ev = {.run_id = {run->run_id, (uint32_t)strlen(run->run_id)},
                        .session_id = {run->session->id, (uint32_t)strlen(run->session->id)},
                        .type = {type, (uint32_t)strlen(type)},
                        .seq = seq,
                        .terminal = terminal,
                        .json = {self->event.data, (uint32_t)self->event.len}};
    mp_buf_reset(&self->mp);
    if (orch_encode_event(&self->mp, &ev) != 0) {
        LOGE("engine.event", "run=%s reason=event over the body maximum", run->run_id);
        return;
    }
    for (follower_t *f = run->followers; f; f = f->next) {
        if (seq >= f->next_seq) {
            s_out_push(self, f->req, S_OUT_STREAM, self->mp.data, self->mp.len);
            f->next_seq = seq + 1;
        }
    }
    for (watcher_t *w = run->session->watchers; w; w = w->next)
        s_out_push(self, w->req, S_OUT_STREAM, self->mp.data, self->mp.len);
}

static void s_run_json(engine_t *self, run_t *run, sbuf_t *j, const char *ended_at)
{
    s_json_run(j, run->run_id, run->session->id, run->agent_id, runfsm_name(run->status),
               run->created_at, ended_at);
}

static void s_start_next(engine_t *self, session_t *s);

/* Ends a run: the terminal event, the store row, the followers' replies. */
static void s_run_end(engine_t *self, run_t *run, run_input_t input, const char *payload)
{
    run_status_t to;
    s_undoom(self, run);
    if (run->ended || runfsm_next(run->status, input, &to) != 0) {
        LOGW("run.illegal", "run=%s status=%s input=%d", run->run_id, runfsm_name(run->status),
             (int)input);
        return;
    }
    if (run->agent_req) {
        hmap_del(self->agent_reqs, run->agent_req);
        run->agent_req = 0;
    }
    session_t *s = run->session;
    if (run->status == RUN_QUEUED) {
        run_t **pp = &s->qhead;
        while (*pp && *pp != run)
            pp = &(*pp)->qnext;
        if (*pp) {
            *pp = run->qnext;
            s->queued--;
            if (s->qtail == run) {
                s->qtail = NULL;
                for (run_t *q = s->qhead; q; q = q->qnext)
                    s->qtail = q;
            }
        }
    }
    run->status = to;
    s_emit(self, run, runfsm_terminal_event(to), payload);
    char ended_at[CLOCK_RFC3339_LEN];
    s_now(ended_at);
    s_store_check(self, store_run_set_status(self->store, run->run_id, runfsm_name(to), ended_at),
                  "run_set_status");
    sbuf_reset(&self->json);
    s_run_json(self, run, &self->json, ended_at);
    for (follower_t *f = run->followers; f;) {
        follower_t *next = f->next;
        s_out_run_reply(self, f->req, 200, self->json.data, self->json.len, run->run_id,
                        runfsm_name(to), s->id);
        hmap_del(self->follow_reqs, f->req);
        mem_free(f);
        f = next;
    }
    run->followers = NULL;
    run->nfollowers = 0;
    run->ended = 1;
    run->next_ended = self->ended;
    self->ended = run;
    LOGI("run.end", "run=%s session=%s status=%s seq=%llu", run->run_id, s->id,
         runfsm_name(to), (unsigned long long)run->seq);
    if (s->running == run) {
        s->running = NULL;
        s_start_next(self, s);
    }
}

static void s_run_fail(engine_t *self, run_t *run, const char *code, const char *message)
{
    sbuf_t p;
    sbuf_init(&p, 4096);
    sbuf_cats(&p, "{\"error\":{\"code\":");
    sbuf_json_str(&p, code, strlen(code));
    sbuf_cats(&p, ",\"message\":");
    sbuf_json_str(&p, message, strlen(message));
    sbuf_cats(&p, "}}");
    s_run_end(self, run, RUN_FAIL, p.data);
    sbuf_free(&p);
}

static void s_runs_free_ended(engine_t *self)
{
    while (self->ended) {
        run_t *run = self->ended;
        self->ended = run->next_ended;
        zhashx_delete(self->runs, run->run_id);
        session_t *s = run->session;
        s->runs--;
        mem_free(run->agent_id);
        mem_free(run->request_id);
        mem_free(run->role);
        mem_free(run->content);
        mem_free(run);
        s_session_maybe_free(self, s);
    }
}

/* ---- agents ----------------------------------------------------------------- */

typedef struct {
    agent_msg_t *msgs;
    uint32_t count, cap;
} s_history_t;

static int s_history_cb(void *arg, const char *role, const char *content, size_t content_len)
{
    s_history_t *h = arg;
    if (h->count == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 16;
        h->msgs = mem_realloc(h->msgs, h->cap * sizeof *h->msgs);
    }
    agent_msg_t *m = &h->msgs[h->count++];
    m->role.ptr = mem_strdup(role);
    m->role.len = (uint32_t)strlen(role);
    m->content.ptr = mem_strndup(content, content_len);
    m->content.len = (uint32_t)content_len;
    return 0;
}

static void s_request_services(engine_t *self)
{
    if (self->services_req && !self->services_stale)
        return;
    self->services_stale = 0;
    self->services_req = worker_services(self->worker);
    self->next_services = clock_mono_ms() + S_SERVICES_MS;
}

/* Sends the invoke to the agent; the run is running and has its first events. */
static void s_invoke_agent(engine_t *self, run_t *run)
{
    char endpoint[AGENT_ENDPOINT_MAX + 1] = "";
    char service[FRAME_SERVICE_MAX + 1];
    int http = store_agent_endpoint(self->store, run->agent_id, endpoint, sizeof endpoint) == 0 &&
               endpoint[0];
    int native = zhashx_lookup(self->native, run->agent_id) != NULL;
    if (!http && !native) {
        if (!run->asked_broker) {
            /* The cache may predate the agent's workers: ask the broker once
             * before calling the agent unknown. */
            run->asked_broker = 1;
            run->resolving = 1;
            self->services_stale = 1;
            s_request_services(self);
            return;
        }
        char msg[256];
        snprintf(msg, sizeof msg, "no agent '%s' is registered or served", run->agent_id);
        s_run_fail(self, run, "unknown_agent", msg);
        return;
    }
    if (http)
        snprintf(service, sizeof service, "bridge");
    else
        snprintf(service, sizeof service, AGENT_SERVICE_PREFIX "%s", run->agent_id);
    sbuf_reset(&self->json);
    sbuf_cats(&self->json, "{\"agent_id\":");
    sbuf_json_str(&self->json, run->agent_id, strlen(run->agent_id));
    sbuf_cats(&self->json, "}");
    s_emit(self, run, "agent_invoke_started", self->json.data);

    s_history_t h = {0};
    s_store_check(self,
                  store_history(self->store, run->session->id, (size_t)self->cfg.history_max,
                                s_history_cb, &h),
                  "history");
    agent_invoke_t inv = {
        .run_id = {run->run_id, (uint32_t)strlen(run->run_id)},
        .session_id = {run->session->id, (uint32_t)strlen(run->session->id)},
        .agent_id = {run->agent_id, (uint32_t)strlen(run->agent_id)},
        .input = {.role = {run->role, (uint32_t)strlen(run->role)},
                  .content = {run->content, (uint32_t)run->content_len}},
        .endpoint = {endpoint, http ? (uint32_t)strlen(endpoint) : 0},
        .timeout_ms = (uint64_t)self->cfg.agent_timeout_ms,
    };
    mp_buf_t b;
    mp_buf_init(&b, S_BODY_MAX);
    /* Too much history for one body: keep the newest messages that fit. */
    uint32_t skip = 0;
    while (agent_encode_invoke(&b, &inv, h.msgs + skip, h.count - skip) != 0 && skip < h.count) {
        mp_buf_reset(&b);
        skip = skip + (h.count - skip + 1) / 2;
    }
    uint64_t req = b.overflow ? 0 : worker_request(self->worker, service, b.data, b.len);
    int too_large = b.overflow;
    mp_buf_free(&b);
    for (uint32_t i = 0; i < h.count; i++) {
        mem_free((void *)h.msgs[i].role.ptr);
        mem_free((void *)h.msgs[i].content.ptr);
    }
    mem_free(h.msgs);
    if (!req) {
        s_run_fail(self, run, too_large ? "internal" : "agent_unavailable",
                   too_large ? "the input is over the body maximum"
                             : "the broker cannot be reached");
        return;
    }
    run->agent_req = req;
    run->deadline = clock_mono_ms() + self->cfg.agent_timeout_ms;
    hmap_put(self->agent_reqs, req, run);
}

/* Starts a queued run: running, run_started, user_input, then the agent. */
static void s_run_start(engine_t *self, run_t *run)
{
    run_status_t to;
    if (runfsm_next(run->status, RUN_START, &to) != 0)
        return;
    session_t *s = run->session;
    s->qhead = run->qnext;
    if (!s->qhead)
        s->qtail = NULL;
    run->qnext = NULL;
    s->queued--;
    s->running = run;
    run->status = to;
    s_begin(self);
    s_touch(self, run);
    s_store_check(self, store_run_set_status(self->store, run->run_id, "running", NULL),
                  "run_set_status");
    if (!run->content &&
        store_run_input(self->store, run->run_id, &run->content, &run->content_len) != 0) {
        LOGE("store.error", "op=run_input run=%s error=\"%s\"", run->run_id,
             store_errmsg(self->store));
        s_run_fail(self, run, "internal", "the run's input could not be read from the store");
        return;
    }
    LOGI("run.start", "run=%s session=%s agent=%s", run->run_id, s->id, run->agent_id);
    sbuf_reset(&self->json);
    sbuf_cats(&self->json, "{\"agent_id\":");
    sbuf_json_str(&self->json, run->agent_id, strlen(run->agent_id));
    sbuf_cats(&self->json, "}");
    s_emit(self, run, "run_started", self->json.data);
    sbuf_reset(&self->json);
    sbuf_cats(&self->json, "{\"message\":{\"role\":");
    sbuf_json_str(&self->json, run->role, strlen(run->role));
    sbuf_cats(&self->json, ",\"content\":");
    sbuf_json_str(&self->json, run->content, run->content_len);
    sbuf_cats(&self->json, "}}");
    s_emit(self, run, "user_input", self->json.data);
    s_invoke_agent(self, run);
}

static void s_start_next(engine_t *self, session_t *s)
{
    if (!s->running && s->qhead && !self->draining)
        s_run_start(self, s->qhead);
}

/* ---- answers from agents ---------------------------------------------------- */

static const char *s_map_agent_error(const char *code)
{
    static const char *passed[] = {"agent_unavailable", "agent_error", "agent_timeout",
                                   "worker_lost", "unknown_agent", "internal"};
    for (size_t i = 0; i < sizeof passed / sizeof *passed; i++)
        if (strcmp(code, passed[i]) == 0)
            return passed[i];
    if (strcmp(code, "broker_lost") == 0)
        return "worker_lost";
    if (strcmp(code, "unknown_service") == 0 || strcmp(code, "overloaded") == 0 ||
        strcmp(code, "worker_stopping") == 0)
        return "agent_unavailable";
    return "agent_error";
}

static void s_on_services(engine_t *self, const uint8_t *body, size_t len)
{
    mp_reader_t r;
    mp_reader_init(&r, body, len);
    uint32_t n;
    if (mp_read_array(&r, &n))
        return;
    zhashx_purge(self->native);
    self->bridge_workers = 0;
    size_t plen = strlen(AGENT_SERVICE_PREFIX);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t fields, name_len;
        const char *name;
        uint64_t workers, skip;
        if (mp_read_array(&r, &fields) || fields != 5 ||
            mp_read_str(&r, &name, &name_len, FRAME_SERVICE_MAX) || mp_read_uint(&r, &workers) ||
            mp_read_uint(&r, &skip) || mp_read_uint(&r, &skip) || mp_read_uint(&r, &skip))
            return;
        if (name_len == 6 && memcmp(name, "bridge", 6) == 0)
            self->bridge_workers = (size_t)workers;
        if (name_len > plen && memcmp(name, AGENT_SERVICE_PREFIX, plen) == 0 && workers > 0) {
            char id[FRAME_SERVICE_MAX + 1];
            memcpy(id, name + plen, name_len - plen);
            id[name_len - plen] = '\0';
            zhashx_insert(self->native, id, (void *)(uintptr_t)workers);
            if (!zhashx_lookup(self->native_seen, id)) {
                /* Its id is reserved from now on, across restarts. */
                char now[CLOCK_RFC3339_LEN];
                s_now(now);
                s_begin(self);
                s_store_check(self, store_agent_native(self->store, id, now), "agent_native");
                zhashx_insert(self->native_seen, id, (void *)1);
            }
        }
    }
    /* Runs that waited for this answer resolve now. */
    zlistx_t *keys = zhashx_keys(self->runs);
    for (const char *k = zlistx_first(keys); k; k = zlistx_next(keys)) {
        run_t *run = zhashx_lookup(self->runs, k);
        if (run && run->resolving && !run->ended) {
            run->resolving = 0;
            s_invoke_agent(self, run);
        }
    }
    zlistx_destroy(&keys);
}

static void s_on_stream(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
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
        s_run_fail(self, run, "agent_error", msg);
        return;
    }
    run->deadline = clock_mono_ms() + self->cfg.agent_timeout_ms;
    sbuf_reset(&self->json);
    sbuf_cats(&self->json, "{\"delta\":");
    sbuf_json_str(&self->json, delta.ptr, delta.len);
    sbuf_cats(&self->json, "}");
    if (self->json.overflow || self->json.len > S_PAYLOAD_MAX) {
        worker_cancel(w, req);
        s_run_fail(self, run, "agent_error", "answer too large: a delta is over the event maximum");
        return;
    }
    s_emit(self, run, "agent_stream_delta", self->json.data);
}

static void s_on_reply(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    engine_t *self = arg;
    if (req == self->services_req) {
        self->services_req = 0;
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
        s_run_fail(self, run, "agent_error", msg);
        return;
    }
    char *role = s_dup(&out.role);
    char created_at[CLOCK_RFC3339_LEN];
    s_now(created_at);
    sbuf_t p;
    sbuf_init(&p, S_JSON_MAX);
    sbuf_cats(&p, "{\"output\":{\"role\":");
    sbuf_json_str(&p, out.role.ptr, out.role.len);
    sbuf_cats(&p, ",\"content\":");
    sbuf_json_str(&p, out.content.ptr, out.content.len);
    sbuf_cats(&p, "}}");
    if (p.overflow || p.len > S_PAYLOAD_MAX) {
        sbuf_free(&p);
        mem_free(role);
        s_run_fail(self, run, "agent_error", "answer too large: the output is over the event maximum");
        return;
    }
    s_emit(self, run, "agent_invoke_done", p.data);
    sbuf_free(&p);
    s_store_check(self,
                  store_message_append(self->store, run->session->id, run->run_id, run->role,
                                       run->content, run->content_len, created_at),
                  "message_append");
    /* Stored valid: later histories and pages are built from it. */
    size_t content_len = 0;
    char *content = utf8_clean(out.content.ptr, out.content.len, &content_len);
    if (!content) {
        content = s_dup(&out.content);
        content_len = out.content.len;
    }
    size_t role_len = 0;
    char *clean_role = utf8_clean(role, strlen(role), &role_len);
    if (clean_role) {
        mem_free(role);
        role = clean_role;
    }
    s_store_check(self,
                  store_message_append(self->store, run->session->id, run->run_id, role, content,
                                       content_len, created_at),
                  "message_append");
    mem_free(content);
    mem_free(role);
    s_run_end(self, run, RUN_FINISH, "{}");
    (void)w;
}

static void s_on_error(worker_t *w, uint64_t req, const char *code, const char *message,
                       void *arg)
{
    engine_t *self = arg;
    (void)w;
    if (req == self->services_req) {
        self->services_req = 0;
        return;
    }
    run_t *run = hmap_get(self->agent_reqs, req);
    if (!run)
        return; /* cancelled by us, or ended */
    hmap_del(self->agent_reqs, req);
    run->agent_req = 0;
    const char *mapped = s_map_agent_error(code);
    char msg[600];
    if (strcmp(code, "unknown_service") == 0)
        snprintf(msg, sizeof msg, "no worker of agent '%s' is connected", run->agent_id);
    else
        snprintf(msg, sizeof msg, "%s", *message ? message : code);
    s_run_fail(self, run, mapped, msg);
}

/* ---- requests from the edge ------------------------------------------------- */

static run_t *s_find_by_request(session_t *s, const agent_str_t *request_id)
{
    if (!s)
        return NULL;
    if (s->running && s->running->request_id &&
        strlen(s->running->request_id) == request_id->len &&
        memcmp(s->running->request_id, request_id->ptr, request_id->len) == 0)
        return s->running;
    for (run_t *q = s->qhead; q; q = q->qnext)
        if (q->request_id && strlen(q->request_id) == request_id->len &&
            memcmp(q->request_id, request_id->ptr, request_id->len) == 0)
            return q;
    return NULL;
}

static void s_add_follower(engine_t *self, run_t *run, uint64_t req, uint64_t next_seq)
{
    follower_t *f = mem_alloc(sizeof *f);
    f->req = req;
    f->next_seq = next_seq;
    f->next = run->followers;
    run->followers = f;
    run->nfollowers++;
    hmap_put(self->follow_reqs, req, run);
}

/* One page of stored events: as a JSON list (events op) or as STREAM
 * bodies (follow). Stops at `limit` events or when the next would pass
 * `bytes`; more is set when an event was left for the next page. */
typedef struct {
    engine_t *self;
    uint64_t req;
    uint64_t last_seq;     /* last seq in the page */
    sbuf_t *list;          /* events op: JSON array being built; NULL: follow */
    size_t count, limit;
    size_t bytes, bytes_max;
    int more;
} s_replay_t;

static int s_is_terminal(const char *type)
{
    return strcmp(type, "run_done") == 0 || strcmp(type, "run_failed") == 0 ||
           strcmp(type, "run_cancelled") == 0;
}

static int s_replay_cb(void *arg, const store_event_t *e)
{
    s_replay_t *rp = arg;
    engine_t *self = rp->self;
    if (rp->count == rp->limit) {
        rp->more = 1;
        return 1;
    }
    sbuf_reset(&self->json);
    s_json_event(&self->json, e->event_id, e->run_id, e->session_id, e->seq, e->type,
                 e->payload, e->created_at);
    size_t need = self->json.len + 1;
    if (rp->list) {
        if (self->json.overflow || rp->bytes + need > rp->bytes_max) {
            rp->more = 1;
            return 1;
        }
        if (rp->count)
            sbuf_cats(rp->list, ",");
        sbuf_cat(rp->list, self->json.data, self->json.len);
    } else {
        orch_stream_t ev = {.run_id = s_str(e->run_id),
                            .session_id = s_str(e->session_id),
                            .type = s_str(e->type),
                            .seq = e->seq,
                            .terminal = s_is_terminal(e->type),
                            .json = {self->json.data, (uint32_t)self->json.len}};
        mp_buf_reset(&self->mp);
        if (self->json.overflow || orch_encode_event(&self->mp, &ev) != 0 ||
            self->mp.len > S_BODY_MAX || (rp->count && rp->bytes + self->mp.len > rp->bytes_max)) {
            rp->more = 1;
            return 1;
        }
        need = self->mp.len;
        s_out_push(self, rp->req, S_OUT_STREAM, self->mp.data, self->mp.len);
    }
    rp->bytes += need;
    rp->last_seq = e->seq;
    rp->count++;
    return 0;
}

/* A run that has not ended, or NULL. A run that ended in this loop turn
 * stays in self->runs until the turn's end (s_runs_free_ended), but it
 * takes no followers any more: its row and events are in the store (this
 * turn's transaction). */
static run_t *s_live_run(engine_t *self, const char *run_id)
{
    run_t *run = zhashx_lookup(self->runs, run_id);
    return run && !run->ended ? run : NULL;
}

/* follow: stored events after after_seq, then live ones while the run runs. */
static void s_follow(engine_t *self, uint64_t req, const char *run_id, uint64_t after_seq)
{
    run_t *run = s_live_run(self, run_id);
    store_run_t row;
    if (!run) {
        int rc = store_run_get(self->store, run_id, &row);
        if (rc != 0) {
            if (rc < 0)
                s_out_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
            else
                s_out_error(self, req, 404, "unknown_run", "no run '%s'", run_id);
            return;
        }
    }
    if (run && run->nfollowers >= (size_t)self->cfg.follows_max) {
        s_out_error(self, req, 429, "too_many_follows",
                    "run '%s' has %zu followers, the maximum (MAP_MAX_FOLLOWS_PER_RUN)", run_id,
                    run->nfollowers);
        return;
    }
    sbuf_reset(&self->json);
    if (run) {
        s_run_json(self, run, &self->json, NULL);
        s_out_accepted(self, req, self->json.data, self->json.len, run->run_id,
                       runfsm_name(run->status), run->session->id);
    } else {
        s_json_run(&self->json, row.run_id, row.session_id, row.agent_id, row.status,
                   row.created_at, row.ended_at);
        s_out_accepted(self, req, self->json.data, self->json.len, row.run_id, row.status,
                       row.session_id);
    }
    /* One page, then live: a longer history reaches the edge as a gap
     * (the next live seq is past the page), which it fills with `events`. */
    s_replay_t rp = {.self = self, .req = req, .last_seq = after_seq,
                     .limit = S_FOLLOW_EVENTS, .bytes_max = S_FOLLOW_BYTES};
    if (store_events_read(self->store, run_id, after_seq, S_FOLLOW_EVENTS + 1, s_replay_cb, &rp) !=
        0) {
        s_out_fail(self, req, "internal", store_errmsg(self->store));
        return;
    }
    if (run) {
        uint64_t next = rp.more ? rp.last_seq + 1
                                : (run->seq > after_seq ? run->seq : after_seq) + 1;
        s_add_follower(self, run, req, next);
        return;
    }
    sbuf_reset(&self->json);
    s_json_run(&self->json, row.run_id, row.session_id, row.agent_id, row.status,
               row.created_at, row.ended_at);
    s_out_run_reply(self, req, 200, self->json.data, self->json.len, row.run_id, row.status,
                    row.session_id);
}

static void s_op_invoke(engine_t *self, uint64_t req, const orch_request_t *q)
{
    if (self->draining) {
        s_out_error(self, req, 503, "unavailable", "the orchestrator is stopping");
        return;
    }
    if (!s_valid_id(&q->session_id)) {
        s_out_error(self, req, 400, "bad_request", "session_id must be 1 to 128 printable characters without quotes, slashes, '?', '#' or '%%'");
        return;
    }
    if (q->agent_id.len == 0) {
        s_out_error(self, req, 400, "bad_request", "agent_id is required");
        return;
    }
    if (!s_valid_id(&q->agent_id)) {
        s_out_error(self, req, 400, "bad_request", "agent_id is not a valid id");
        return;
    }
    if (q->role.len == 0) {
        s_out_error(self, req, 400, "bad_request", "input_message.role is required");
        return;
    }
    if (q->request_id.len && !s_valid_id(&q->request_id)) {
        s_out_error(self, req, 400, "bad_request", "request_id is not a valid id");
        return;
    }
    /* Its user_input event must fit a page like any event (SPEC §1 Limits). */
    sbuf_reset(&self->json);
    sbuf_cats(&self->json, "{\"message\":{\"role\":");
    sbuf_json_str(&self->json, q->role.ptr, q->role.len);
    sbuf_cats(&self->json, ",\"content\":");
    sbuf_json_str(&self->json, q->content.ptr, q->content.len);
    sbuf_cats(&self->json, "}}");
    if (self->json.overflow || self->json.len > S_PAYLOAD_MAX) {
        s_out_error(self, req, 413, "too_large",
                    "the input message is over the event maximum (%u bytes of JSON)",
                    (unsigned)S_PAYLOAD_MAX);
        return;
    }
    int reject = 0;
    if (q->if_busy.len) {
        if (q->if_busy.len == 6 && memcmp(q->if_busy.ptr, "reject", 6) == 0)
            reject = 1;
        else if (!(q->if_busy.len == 7 && memcmp(q->if_busy.ptr, "enqueue", 7) == 0)) {
            s_out_error(self, req, 400, "bad_request", "if_busy must be \"enqueue\" or \"reject\"");
            return;
        }
    }
    char *session_id = s_dup(&q->session_id);
    session_t *s = zhashx_lookup(self->sessions, session_id);
    if (q->request_id.len) {
        run_t *prior = s_find_by_request(s, &q->request_id);
        char found_id[IDS_MAX] = "";
        if (prior) {
            snprintf(found_id, sizeof found_id, "%s", prior->run_id);
        } else {
            char *rid = s_dup(&q->request_id);
            int rc = store_run_by_request(self->store, session_id, rid, found_id, sizeof found_id);
            mem_free(rid);
            if (rc < 0) {
                s_out_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
                mem_free(session_id);
                return;
            }
        }
        if (found_id[0]) {
            /* A retry: answer with the run it started, start nothing new. */
            if (q->follow) {
                s_follow(self, req, found_id, 0);
            } else {
                run_t *run = s_live_run(self, found_id);
                store_run_t row;
                sbuf_reset(&self->json);
                if (run) {
                    s_run_json(self, run, &self->json, NULL);
                    s_out_run_reply(self, req, 200, self->json.data, self->json.len,
                                    run->run_id, runfsm_name(run->status), run->session->id);
                } else if (store_run_get(self->store, found_id, &row) == 0) {
                    s_json_run(&self->json, row.run_id, row.session_id, row.agent_id,
                               row.status, row.created_at, row.ended_at);
                    s_out_run_reply(self, req, 200, self->json.data, self->json.len,
                                    row.run_id, row.status, row.session_id);
                } else {
                    s_out_error(self, req, 500, "internal", "store: %s",
                                store_errmsg(self->store));
                }
            }
            mem_free(session_id);
            return;
        }
    }
    if (reject && s && (s->running || s->qhead)) {
        run_t *busy = s->running ? s->running : s->qhead;
        sbuf_reset(&self->json);
        sbuf_cats(&self->json, "{\"error\":{\"code\":\"busy\",\"message\":");
        char msg[300];
        snprintf(msg, sizeof msg, "session '%s' is busy with run %s", session_id, busy->run_id);
        sbuf_json_str(&self->json, msg, strlen(msg));
        sbuf_cats(&self->json, ",\"run_id\":");
        sbuf_json_str(&self->json, busy->run_id, strlen(busy->run_id));
        sbuf_cats(&self->json, "}}");
        s_out_run_reply(self, req, 409, self->json.data, self->json.len, busy->run_id,
                        runfsm_name(busy->status), s->id);
        mem_free(session_id);
        return;
    }
    /* One session cannot fill the orchestrator: its queue has a maximum
     * of its own, well below the global one. */
    if (s && (s->running || s->qhead) && s->queued >= (size_t)self->cfg.queued_max) {
        s_out_error(self, req, 429, "too_many_runs",
                    "session '%s' has %zu runs queued, the maximum (MAP_MAX_QUEUED_RUNS)",
                    session_id, s->queued);
        mem_free(session_id);
        return;
    }
    if (zhashx_size(self->runs) >= (size_t)self->cfg.runs_max) {
        s_out_error(self, req, 503, "unavailable", "too many runs in progress");
        mem_free(session_id);
        return;
    }
    run_t *run = mem_alloc(sizeof *run);
    ids_new("run_", run->run_id);
    s = s_session(self, session_id);
    mem_free(session_id);
    run->session = s;
    s->runs++;
    run->agent_id = s_dup(&q->agent_id);
    run->request_id = q->request_id.len ? s_dup(&q->request_id) : NULL;
    run->role = s_dup(&q->role);
    size_t clean_len = 0;
    char *clean = utf8_clean(q->content.ptr, q->content.len, &clean_len);
    run->content = clean ? clean : s_dup(&q->content);
    run->content_len = clean ? clean_len : q->content.len;
    run->status = RUN_QUEUED;
    s_now(run->created_at);
    zhashx_insert(self->runs, run->run_id, run);
    s_begin(self);
    s_touch(self, run);
    run->created = 1;
    s_store_check(self, store_session_ensure(self->store, s->id, run->created_at),
                  "session_ensure");
    s_store_check(self,
                  store_run_insert(self->store, run->run_id, s->id, run->agent_id,
                                   run->request_id, run->role, run->content, run->content_len,
                                   run->created_at),
                  "run_insert");
    if (s->qtail)
        s->qtail->qnext = run;
    else
        s->qhead = run;
    s->qtail = run;
    s->queued++;
    /* The store holds the input until the run starts (it may wait long). */
    mem_free(run->content);
    run->content = NULL;
    run->content_len = 0;
    LOGD("run.accepted", "run=%s session=%s agent=%s", run->run_id, s->id, run->agent_id);
    /* The answer goes out before the run's first events, so the edge can
     * say invoke_accepted before any event: running if it starts now,
     * queued if it waits behind another run of the session. */
    const char *status = s->running || s->qhead != run ? "queued" : "running";
    sbuf_reset(&self->json);
    s_json_run(&self->json, run->run_id, s->id, run->agent_id, status, run->created_at, NULL);
    if (q->follow) {
        s_out_accepted(self, req, self->json.data, self->json.len, run->run_id, status, s->id);
        s_add_follower(self, run, req, 1);
    } else {
        s_out_run_reply(self, req, 200, self->json.data, self->json.len, run->run_id, status,
                        s->id);
    }
    s_start_next(self, s);
}

static void s_op_watch(engine_t *self, uint64_t req, const orch_request_t *q)
{
    if (!s_valid_id(&q->session_id)) {
        s_out_error(self, req, 400, "bad_request", "session_id is required");
        return;
    }
    char *id = s_dup(&q->session_id);
    session_t *s = s_session(self, id);
    mem_free(id);
    watcher_t *w = mem_alloc(sizeof *w);
    w->req = req;
    w->next = s->watchers;
    s->watchers = w;
    hmap_put(self->watch_reqs, req, s);
    s_out_accepted(self, req, "{}", 2, NULL, NULL, NULL);
}

static void s_op_events(engine_t *self, uint64_t req, const orch_request_t *q)
{
    char *run_id = s_dup(&q->run_id);
    store_run_t row;
    int rc = q->run_id.len ? store_run_get(self->store, run_id, &row) : 1;
    if (rc != 0) {
        if (rc < 0)
            s_out_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
        else
            s_out_error(self, req, 404, "unknown_run", "no run '%s'", run_id);
        mem_free(run_id);
        return;
    }
    uint64_t limit = q->limit ? q->limit : S_EVENTS_DEFAULT;
    if (limit > ORCH_LIMIT_MAX)
        limit = ORCH_LIMIT_MAX;
    sbuf_t list;
    sbuf_init(&list, S_PAGE_BYTES);
    sbuf_cats(&list, "{\"run_id\":");
    sbuf_json_str(&list, run_id, strlen(run_id));
    sbuf_cats(&list, ",\"events\":[");
    const size_t tail = 64; /* ],"has_more":false,"next_after_seq":<20 digits>} */
    s_replay_t rp = {.self = self, .req = req, .last_seq = q->after_seq, .list = &list,
                     .limit = (size_t)limit, .bytes = list.len, .bytes_max = S_PAGE_BYTES - tail};
    if (store_events_read(self->store, run_id, q->after_seq, (size_t)limit + 1, s_replay_cb, &rp) !=
        0) {
        s_out_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
    } else if (rp.count == 0 && rp.more) {
        s_out_error(self, req, 500, "internal", "event %llu of run '%s' is over the page maximum",
                    (unsigned long long)q->after_seq + 1, run_id);
    } else {
        sbuf_cats(&list, rp.more ? "],\"has_more\":true" : "],\"has_more\":false");
        sbuf_cats(&list, ",\"next_after_seq\":");
        sbuf_cat_u64(&list, rp.last_seq);
        sbuf_cats(&list, "}");
        s_out_run_reply(self, req, 200, list.data, list.len, row.run_id, row.status,
                        row.session_id);
    }
    sbuf_free(&list);
    mem_free(run_id);
}

static void s_op_run(engine_t *self, uint64_t req, const orch_request_t *q)
{
    char *run_id = s_dup(&q->run_id);
    store_run_t row;
    int rc = q->run_id.len ? store_run_get(self->store, run_id, &row) : 1;
    if (rc < 0)
        s_out_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
    else if (rc > 0)
        s_out_error(self, req, 404, "unknown_run", "no run '%s'", run_id);
    else {
        sbuf_reset(&self->json);
        s_json_run(&self->json, row.run_id, row.session_id, row.agent_id, row.status,
                   row.created_at, row.ended_at);
        s_out_run_reply(self, req, 200, self->json.data, self->json.len, row.run_id, row.status,
                        row.session_id);
    }
    mem_free(run_id);
}

typedef struct {
    sbuf_t *j;
    int count;
} s_list_t;

/* A page of messages: each message's JSON goes to `items`, its end offset
 * to `ends`, so a page read newest first can be written oldest first. */
typedef struct {
    sbuf_t items;
    size_t ends[S_MESSAGES_MAX];
    size_t count, limit, bytes_max;
    int more;
} s_msgpage_t;

static int s_message_cb(void *arg, const store_message_t *m)
{
    s_msgpage_t *pg = arg;
    if (pg->count == pg->limit) {
        pg->more = 1;
        return 1;
    }
    size_t before = pg->items.len;
    sbuf_catf(&pg->items, "{\"message_id\":\"%lld\",\"run_id\":", (long long)m->message_id);
    sbuf_json_str(&pg->items, m->run_id, strlen(m->run_id));
    sbuf_cats(&pg->items, ",\"role\":");
    sbuf_json_str(&pg->items, m->role, strlen(m->role));
    sbuf_cats(&pg->items, ",\"content\":");
    sbuf_json_str(&pg->items, m->content, m->content_len);
    sbuf_cats(&pg->items, ",\"created_at\":");
    sbuf_json_str(&pg->items, m->created_at, strlen(m->created_at));
    sbuf_cats(&pg->items, "}");
    if (pg->items.overflow || pg->items.len + pg->count > pg->bytes_max) {
        pg->items.len = before; /* not in this page */
        pg->items.overflow = 0;
        pg->more = 1;
        return 1;
    }
    pg->ends[pg->count++] = pg->items.len;
    return 0;
}

/* A message id cursor: a string of digits. 0 when absent, -1 when bad. */
static int64_t s_cursor(const agent_str_t *c)
{
    if (c->len == 0)
        return 0;
    if (c->len > 18)
        return -1;
    int64_t v = 0;
    for (uint32_t i = 0; i < c->len; i++) {
        if (c->ptr[i] < '0' || c->ptr[i] > '9')
            return -1;
        v = v * 10 + (c->ptr[i] - '0');
    }
    return v > 0 ? v : -1;
}

static void s_op_messages(engine_t *self, uint64_t req, const orch_request_t *q)
{
    if (!s_valid_id(&q->session_id)) {
        s_out_error(self, req, 400, "bad_request", "session_id is required");
        return;
    }
    int64_t before = s_cursor(&q->before), after = s_cursor(&q->after);
    if (before < 0 || after < 0 || (before && after)) {
        s_out_error(self, req, 400, "bad_request",
                    "before or after (not both) must be a message_id");
        return;
    }
    char *id = s_dup(&q->session_id);
    uint64_t limit = q->limit ? q->limit : S_MESSAGES_DEFAULT;
    if (limit > S_MESSAGES_MAX)
        limit = S_MESSAGES_MAX;
    s_msgpage_t *pg = mem_alloc(sizeof *pg);
    sbuf_t j;
    sbuf_init(&j, S_PAGE_BYTES);
    sbuf_cats(&j, "{\"session_id\":");
    sbuf_json_str(&j, id, strlen(id));
    sbuf_cats(&j, ",\"messages\":[");
    sbuf_init(&pg->items, S_PAGE_BYTES);
    pg->limit = (size_t)limit;
    pg->bytes_max = S_PAGE_BYTES - j.len - 32; /* ],"has_more":false} */
    if (store_messages_page(self->store, id, before, after, (size_t)limit + 1, s_message_cb, pg) !=
        0) {
        s_out_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
    } else if (pg->count == 0 && pg->more) {
        s_out_error(self, req, 500, "internal", "a message of session '%s' is over the page maximum",
                    id);
    } else {
        /* after: read oldest first; otherwise newest first, written reversed. */
        for (size_t k = 0; k < pg->count; k++) {
            size_t i = after ? k : pg->count - 1 - k;
            size_t start = i ? pg->ends[i - 1] : 0;
            if (k)
                sbuf_cats(&j, ",");
            sbuf_cat(&j, pg->items.data + start, pg->ends[i] - start);
        }
        sbuf_cats(&j, pg->more ? "],\"has_more\":true}" : "],\"has_more\":false}");
        s_out_reply(self, req, 200, j.data, j.len);
    }
    sbuf_free(&pg->items);
    mem_free(pg);
    sbuf_free(&j);
    mem_free(id);
}

typedef struct {
    sbuf_t *j;
    size_t count, limit, bytes_max;
    int more;
} s_runpage_t;

static int s_session_run_cb(void *arg, const store_run_t *row)
{
    s_runpage_t *pg = arg;
    if (pg->count == pg->limit) {
        pg->more = 1;
        return 1;
    }
    size_t before = pg->j->len;
    if (pg->count)
        sbuf_cats(pg->j, ",");
    s_json_run(pg->j, row->run_id, row->session_id, row->agent_id, row->status, row->created_at,
               row->ended_at);
    if (pg->j->overflow || pg->j->len > pg->bytes_max) {
        pg->j->len = before;
        pg->j->overflow = 0;
        pg->more = 1;
        return 1;
    }
    pg->count++;
    return 0;
}

/* session_runs: the session's runs newest first, paged by `before`. */
static void s_op_session_runs(engine_t *self, uint64_t req, const orch_request_t *q)
{
    if (!s_valid_id(&q->session_id)) {
        s_out_error(self, req, 400, "bad_request", "session_id is required");
        return;
    }
    if (q->before.len && !s_valid_id(&q->before)) {
        s_out_error(self, req, 400, "bad_request", "before must be a run_id");
        return;
    }
    char *id = s_dup(&q->session_id);
    char *before = q->before.len ? s_dup(&q->before) : NULL;
    uint64_t limit = q->limit ? q->limit : S_RUNS_DEFAULT;
    if (limit > S_RUNS_MAX)
        limit = S_RUNS_MAX;
    sbuf_t j;
    sbuf_init(&j, S_PAGE_BYTES);
    sbuf_cats(&j, "{\"session_id\":");
    sbuf_json_str(&j, id, strlen(id));
    sbuf_cats(&j, ",\"runs\":[");
    s_runpage_t pg = {&j, 0, (size_t)limit, S_PAGE_BYTES - 32, 0};
    if (store_session_runs(self->store, id, before, (size_t)limit + 1, s_session_run_cb, &pg) != 0) {
        s_out_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
    } else {
        sbuf_cats(&j, pg.more ? "],\"has_more\":true}" : "],\"has_more\":false}");
        s_out_reply(self, req, 200, j.data, j.len);
    }
    sbuf_free(&j);
    mem_free(before);
    mem_free(id);
}

static void s_json_agent(sbuf_t *j, const store_agent_t *a, size_t workers)
{
    sbuf_cats(j, "{\"agent_id\":");
    sbuf_json_str(j, a->agent_id, strlen(a->agent_id));
    sbuf_cats(j, ",\"name\":");
    sbuf_json_str(j, a->name, strlen(a->name));
    sbuf_cats(j, ",\"endpoint\":");
    sbuf_json_str(j, a->endpoint, strlen(a->endpoint));
    sbuf_catf(j, ",\"kind\":\"http\",\"workers\":%zu,\"created_at\":", workers);
    sbuf_json_str(j, a->created_at, strlen(a->created_at));
    sbuf_cats(j, "}");
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

static void s_op_register(engine_t *self, uint64_t req, const orch_request_t *q)
{
    if (!s_valid_id(&q->agent_id)) {
        s_out_error(self, req, 400, "bad_request", "agent_id must be 1 to 128 printable characters without quotes, slashes, '?', '#' or '%%'");
        return;
    }
    if (!s_valid_endpoint(&q->endpoint)) {
        s_out_error(self, req, 400, "bad_request", "endpoint must be an http:// or https:// URL");
        return;
    }
    char *id = s_dup(&q->agent_id);
    store_agent_t prior;
    int known = store_agent_get(self->store, id, &prior);
    if (zhashx_lookup(self->native, id) || (known == 0 && strcmp(prior.kind, "native") == 0)) {
        s_out_error(self, req, 409, "conflict", "agent '%s' is served by native workers", id);
        mem_free(id);
        return;
    }
    char *name = q->name.len ? s_dup(&q->name) : mem_strdup(id);
    char *endpoint = s_dup(&q->endpoint);
    while (strlen(endpoint) > 0 && endpoint[strlen(endpoint) - 1] == '/')
        endpoint[strlen(endpoint) - 1] = '\0'; /* {endpoint}/invoke stays one slash */
    char now[CLOCK_RFC3339_LEN];
    s_now(now);
    int created = 0;
    s_begin(self);
    int rc = store_agent_upsert(self->store, id, name, endpoint, now, &created);
    store_agent_t a;
    if (rc == 0)
        rc = store_agent_get(self->store, id, &a);
    if (rc != 0) {
        s_store_check(self, -1, "agent_upsert");
        s_out_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
    } else {
        sbuf_reset(&self->json);
        s_json_agent(&self->json, &a, self->bridge_workers);
        s_out_reply(self, req, created ? 201 : 200, self->json.data, self->json.len);
        LOGI("agent.registered", "agent=%s endpoint=%s new=%d", id, endpoint, created);
    }
    mem_free(id);
    mem_free(name);
    mem_free(endpoint);
}

typedef struct {
    s_list_t list;
    size_t workers;
    zhashx_t *native;
} s_agents_t;

static int s_agent_cb(void *arg, const store_agent_t *a)
{
    s_agents_t *l = arg;
    if (l->list.count++)
        sbuf_cats(l->list.j, ",");
    if (strcmp(a->kind, "native") != 0) {
        s_json_agent(l->list.j, a, l->workers);
        return 0;
    }
    /* Native: workers as the broker counts them now (0 while they reconnect). */
    sbuf_cats(l->list.j, "{\"agent_id\":");
    sbuf_json_str(l->list.j, a->agent_id, strlen(a->agent_id));
    sbuf_cats(l->list.j, ",\"name\":");
    sbuf_json_str(l->list.j, a->name, strlen(a->name));
    sbuf_catf(l->list.j, ",\"endpoint\":null,\"kind\":\"native\",\"workers\":%zu,\"created_at\":",
              (size_t)(uintptr_t)zhashx_lookup(l->native, a->agent_id));
    sbuf_json_str(l->list.j, a->created_at, strlen(a->created_at));
    sbuf_cats(l->list.j, "}");
    return 0;
}

static void s_op_agents(engine_t *self, uint64_t req)
{
    sbuf_t j;
    sbuf_init(&j, S_JSON_MAX);
    sbuf_cats(&j, "{\"agents\":[");
    s_agents_t l = {{&j, 0}, self->bridge_workers, self->native};
    if (store_agents_list(self->store, s_agent_cb, &l) != 0)
        s_out_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
    else {
        sbuf_cats(&j, "]}");
        s_out_reply(self, req, 200, j.data, j.len);
    }
    sbuf_free(&j);
}

static void s_op_cancel(engine_t *self, uint64_t req, const orch_request_t *q)
{
    char *run_id = s_dup(&q->run_id);
    run_t *run = zhashx_lookup(self->runs, run_id);
    if (run && !run->ended) {
        if (run->agent_req) {
            worker_cancel(self->worker, run->agent_req); /* tell the agent to stop */
            hmap_del(self->agent_reqs, run->agent_req);
            run->agent_req = 0;
        }
        run->resolving = 0;
        s_run_end(self, run, RUN_CANCEL, "{}");
        sbuf_reset(&self->json);
        sbuf_cats(&self->json, "{\"run_id\":");
        sbuf_json_str(&self->json, run_id, strlen(run_id));
        sbuf_cats(&self->json, ",\"status\":\"cancelled\"}");
        s_out_run_reply(self, req, 202, self->json.data, self->json.len, run->run_id,
                        "cancelled", run->session->id);
        mem_free(run_id);
        return;
    }
    store_run_t row;
    int rc = q->run_id.len ? store_run_get(self->store, run_id, &row) : 1;
    if (rc < 0)
        s_out_error(self, req, 500, "internal", "store: %s", store_errmsg(self->store));
    else if (rc > 0)
        s_out_error(self, req, 404, "unknown_run", "no run '%s'", run_id);
    else {
        char msg[300];
        snprintf(msg, sizeof msg, "run '%s' has already ended (%s)", run_id, row.status);
        sbuf_reset(&self->json);
        sbuf_cats(&self->json, "{\"error\":{\"code\":\"conflict\",\"message\":");
        sbuf_json_str(&self->json, msg, strlen(msg));
        sbuf_cats(&self->json, "}}");
        s_out_run_reply(self, req, 409, self->json.data, self->json.len, row.run_id, row.status,
                        row.session_id);
    }
    mem_free(run_id);
}

static void s_on_request(worker_t *w, uint64_t id, const uint8_t *body, size_t len, void *arg)
{
    engine_t *self = arg;
    (void)w;
    orch_request_t q;
    agent_err_t err = orch_decode_request(body, len, &q);
    if (err) {
        s_out_fail(self, id, "bad_request", agent_strerror(err));
        return;
    }
#define S_OP(name) (q.op.len == strlen(name) && memcmp(q.op.ptr, name, q.op.len) == 0)
    if (S_OP("invoke")) {
        s_op_invoke(self, id, &q);
    } else if (S_OP("watch")) {
        s_op_watch(self, id, &q);
    } else if (S_OP("follow")) {
        char *run_id = s_dup(&q.run_id);
        s_follow(self, id, run_id, q.after_seq);
        mem_free(run_id);
    } else if (S_OP("events")) {
        s_op_events(self, id, &q);
    } else if (S_OP("run")) {
        s_op_run(self, id, &q);
    } else if (S_OP("messages")) {
        s_op_messages(self, id, &q);
    } else if (S_OP("session_runs")) {
        s_op_session_runs(self, id, &q);
    } else if (S_OP("register")) {
        s_op_register(self, id, &q);
    } else if (S_OP("agents")) {
        s_op_agents(self, id);
    } else if (S_OP("cancel")) {
        s_op_cancel(self, id, &q);
    } else if (S_OP("health")) {
        const char *ok = "{\"status\":\"ok\",\"store\":\"ok\"}";
        s_out_reply(self, id, 200, ok, strlen(ok));
    } else {
        s_out_error(self, id, 400, "bad_request", "unknown op '%.*s'", (int)q.op.len, q.op.ptr);
    }
#undef S_OP
}

/* A requester stopped following (cancelled, or the link dropped). */
static void s_on_cancel(worker_t *w, uint64_t id, void *arg)
{
    engine_t *self = arg;
    (void)w;
    session_t *s = hmap_del(self->watch_reqs, id);
    if (s) {
        for (watcher_t **pp = &s->watchers; *pp; pp = &(*pp)->next) {
            if ((*pp)->req == id) {
                watcher_t *dead = *pp;
                *pp = dead->next;
                mem_free(dead);
                break;
            }
        }
        s_session_maybe_free(self, s);
        return;
    }
    run_t *run = hmap_del(self->follow_reqs, id);
    if (run) {
        for (follower_t **pp = &run->followers; *pp; pp = &(*pp)->next) {
            if ((*pp)->req == id) {
                follower_t *dead = *pp;
                *pp = dead->next;
                mem_free(dead);
                run->nfollowers--;
                break;
            }
        }
    }
    /* Queued answers for this request are refused by the library: harmless. */
}

static void s_on_link(worker_t *w, int up, void *arg)
{
    engine_t *self = arg;
    (void)w;
    LOGI(up ? "broker.up" : "broker.lost", "endpoint=%s", self->cfg.broker);
    self->services_req = 0;
    if (up)
        s_request_services(self);
}

/* ---- the store's lock: the gate and deferred frames ------------------------- */

static void s_fail_doomed(engine_t *self);

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
             (long long)(clock_mono_ms() - self->blocked_since), self->in_count);
        self->blocked_since = 0;
    }
    s_fail_doomed(self);
    return 1;
}

/* 1 when this turn may handle a frame now (it holds the write lock, taking
 * it if it can), 0 when the caller must defer it: the lock is held
 * elsewhere, or older frames wait (order is kept). */
static int s_gate(engine_t *self)
{
    if (self->replaying || self->in_tx)
        return 1;
    if (self->blocked || self->in_head)
        return 0;
    return s_lock(self);
}

/* Keeps a copy of a frame for the next turn. -1 past the bounds (force:
 * kept anyway; cancels are small and must not be lost). */
static int s_defer(engine_t *self, s_in_kind_t kind, uint64_t id, const void *body, size_t len,
                   int force)
{
    if (!force && (self->in_count >= S_IN_MAX || len > S_IN_BYTES - self->in_bytes))
        return -1;
    s_in_t *in = mem_alloc(sizeof *in + len);
    in->kind = kind;
    in->id = id;
    in->len = len;
    if (len)
        memcpy(in->body, body, len);
    if (self->in_tail)
        self->in_tail->next = in;
    else
        self->in_head = in;
    self->in_tail = in;
    self->in_count++;
    self->in_bytes += len;
    return 0;
}

/* An agent's frame that could not be kept: its run cannot be told whole,
 * so it stops (the agent is told) and fails once the store writes. */
static void s_defer_lost(engine_t *self, uint64_t req, int final)
{
    if (req == self->services_req) {
        self->services_req = 0; /* asked again at the next refresh */
        return;
    }
    run_t *run = hmap_del(self->agent_reqs, req);
    if (!run)
        return;
    if (!final)
        worker_cancel(self->worker, req);
    run->agent_req = 0;
    LOGE("store.deferred_full", "run=%s frames=%zu bytes=%zu", run->run_id, self->in_count,
         self->in_bytes);
    s_doom(self, run);
}

static void s_gated_request(worker_t *w, uint64_t id, const uint8_t *body, size_t len, void *arg)
{
    engine_t *self = arg;
    if (s_gate(self))
        s_on_request(w, id, body, len, arg);
    else if (s_defer(self, S_IN_REQUEST, id, body, len, 0) != 0)
        worker_fail(w, id, "unavailable", "the store is busy; try again");
}

static void s_gated_cancel(worker_t *w, uint64_t id, void *arg)
{
    engine_t *self = arg;
    if (s_gate(self))
        s_on_cancel(w, id, arg);
    else
        s_defer(self, S_IN_CANCEL, id, NULL, 0, 1);
}

static void s_gated_stream(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    engine_t *self = arg;
    if (s_gate(self))
        s_on_stream(w, req, body, len, arg);
    else if (s_defer(self, S_IN_STREAM, req, body, len, 0) != 0)
        s_defer_lost(self, req, 0);
}

static void s_gated_reply(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    engine_t *self = arg;
    if (s_gate(self))
        s_on_reply(w, req, body, len, arg);
    else if (s_defer(self, S_IN_REPLY, req, body, len, 0) != 0)
        s_defer_lost(self, req, 1);
}

static void s_gated_error(worker_t *w, uint64_t req, const char *code, const char *message,
                          void *arg)
{
    engine_t *self = arg;
    if (s_gate(self)) {
        s_on_error(w, req, code, message, arg);
        return;
    }
    size_t cl = strlen(code), ml = strlen(message);
    char *buf = mem_alloc(cl + ml + 2);
    memcpy(buf, code, cl + 1);
    memcpy(buf + cl + 1, message, ml + 1);
    if (s_defer(self, S_IN_ERROR, req, buf, cl + ml + 2, 0) != 0)
        s_defer_lost(self, req, 1);
    mem_free(buf);
}

/* At a turn's start: deferred frames first, in the order they came, once
 * the lock is ours. */
static void s_turn_start(engine_t *self)
{
    self->blocked = 0;
    if ((!self->in_head && !self->ndoomed) || (!self->in_tx && !s_lock(self)))
        return;
    self->replaying = 1;
    while (self->in_head) {
        s_in_t *in = self->in_head;
        self->in_head = in->next;
        if (!self->in_head)
            self->in_tail = NULL;
        self->in_count--;
        self->in_bytes -= in->len;
        switch (in->kind) {
        case S_IN_REQUEST: s_on_request(self->worker, in->id, in->body, in->len, self); break;
        case S_IN_CANCEL: s_on_cancel(self->worker, in->id, self); break;
        case S_IN_STREAM: s_on_stream(self->worker, in->id, in->body, in->len, self); break;
        case S_IN_REPLY: s_on_reply(self->worker, in->id, in->body, in->len, self); break;
        case S_IN_ERROR: {
            const char *code = (const char *)in->body;
            s_on_error(self->worker, in->id, code, code + strlen(code) + 1, self);
            break;
        }
        }
        mem_free(in);
    }
    self->replaying = 0;
}

/* Removes a run from the list of runs ended in this turn. */
static void s_ended_remove(engine_t *self, run_t *run)
{
    for (run_t **pp = &self->ended; *pp; pp = &(*pp)->next_ended) {
        if (*pp == run) {
            *pp = run->next_ended;
            run->next_ended = NULL;
            return;
        }
    }
}

/* A run created in a turn that did not commit: it never existed. */
static void s_run_forget(engine_t *self, run_t *run)
{
    session_t *s = run->session;
    if (s->running == run)
        s->running = NULL;
    run_t **pp = &s->qhead;
    while (*pp && *pp != run)
        pp = &(*pp)->qnext;
    if (*pp) {
        *pp = run->qnext;
        s->queued--;
    }
    s->qtail = NULL;
    for (run_t *q = s->qhead; q; q = q->qnext)
        s->qtail = q;
    for (follower_t *f = run->followers; f;) {
        follower_t *next = f->next;
        hmap_del(self->follow_reqs, f->req);
        mem_free(f);
        f = next;
    }
    zhashx_delete(self->runs, run->run_id);
    s->runs--;
    mem_free(run->agent_id);
    mem_free(run->request_id);
    mem_free(run->role);
    mem_free(run->content);
    mem_free(run);
    s_session_maybe_free(self, s);
}

static void s_rollback_cb(void *arg, uint64_t req)
{
    hmap_put(arg, req, (void *)1);
}

/* The turn's transaction is gone: so is what it did in memory. */
static void s_turn_failed(engine_t *self)
{
    store_rollback(self->store);
    hmap_t *failed = hmap_new(S_OUT_ENTRIES);
    outbox_rollback(self->out, s_rollback_cb, failed);
    size_t pos = 0;
    uint64_t req;
    void *value;
    while (hmap_next(failed, &pos, &req, &value) == 0) {
        worker_fail(self->worker, req, "internal", "the store could not commit");
        s_on_cancel(self->worker, req, self); /* it follows and watches nothing more */
    }
    hmap_destroy(&failed);
    size_t forgotten = 0, doomed = 0;
    for (size_t i = 0; i < self->ntouched; i++) {
        run_t *run = self->touched[i];
        run->touched = 0;
        if (run->agent_req) {
            worker_cancel(self->worker, run->agent_req);
            hmap_del(self->agent_reqs, run->agent_req);
            run->agent_req = 0;
        }
        run->resolving = 0;
        if (run->ended) {
            s_ended_remove(self, run);
            run->ended = 0;
        }
        if (run->created) {
            s_run_forget(self, run);
            forgotten++;
            continue;
        }
        run->seq = run->seq0;
        if (runfsm_terminal(run->status))
            run->status = RUN_RUNNING; /* the store still has it unfinished */
        s_doom(self, run);
        doomed++;
    }
    self->ntouched = 0;
    zhashx_purge(self->native_seen); /* recorded again at the next services list */
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

/* Ends the doomed runs (the turn holds the lock). */
static void s_fail_doomed(engine_t *self)
{
    while (self->ndoomed) {
        run_t *run = self->doomed[self->ndoomed - 1];
        session_t *s = run->session;
        if (run->agent_req) {
            worker_cancel(self->worker, run->agent_req);
            hmap_del(self->agent_reqs, run->agent_req);
            run->agent_req = 0;
        }
        run->resolving = 0;
        s_run_fail(self, run, "internal", "the store could not record this run's events");
        s_undoom(self, run); /* even if the run could not end */
        s_start_next(self, s);
    }
}

/* ---- the loop --------------------------------------------------------------- */

/* Ends the turn: commit, then send (or fail what the turn touched). */
static int s_end_turn(engine_t *self)
{
    if (self->in_tx) {
        int rc = self->store_failed ? -1 : store_commit(self->store);
        self->in_tx = 0;
        if (rc != 0) {
            if (!self->store_failed)
                LOGE("store.error", "op=commit error=\"%s\"", store_errmsg(self->store));
            self->store_failed = 0;
            /* Nothing of the turn is persisted: its answers must not go out,
             * its runs end once the store writes again. */
            s_turn_failed(self);
            return -1;
        }
    }
    for (size_t i = 0; i < self->ntouched; i++)
        self->touched[i]->touched = self->touched[i]->created = 0;
    self->ntouched = 0;
    outbox_commit(self->out);
    s_flush(self);
    s_runs_free_ended(self);
    return 0;
}

static void s_tick(engine_t *self, int64_t now)
{
    if (self->ndoomed)
        s_gate(self); /* a transaction that opens ends them */
    zlistx_t *keys = zhashx_keys(self->runs);
    for (const char *k = zlistx_first(keys); k; k = zlistx_next(keys)) {
        run_t *run = zhashx_lookup(self->runs, k);
        if (run && !run->ended && run->agent_req && now >= run->deadline) {
            if (!s_gate(self))
                break; /* frames wait for the lock: so do timeouts */
            worker_cancel(self->worker, run->agent_req);
            hmap_del(self->agent_reqs, run->agent_req);
            run->agent_req = 0;
            char msg[128];
            snprintf(msg, sizeof msg, "the agent sent nothing for %ld ms",
                     self->cfg.agent_timeout_ms);
            s_run_fail(self, run, "agent_timeout", msg);
        }
    }
    zlistx_destroy(&keys);
    if (now >= self->next_services && worker_linked(self->worker))
        s_request_services(self);
}

static void s_fail_all(engine_t *self, const char *message)
{
    s_turn_start(self);
    if (!s_gate(self))
        return; /* the store is locked: recovery ends them at the next start */
    zlistx_t *keys = zhashx_keys(self->runs);
    for (const char *k = zlistx_first(keys); k; k = zlistx_next(keys)) {
        run_t *run = zhashx_lookup(self->runs, k);
        if (!run || run->ended)
            continue;
        if (run->agent_req) {
            worker_cancel(self->worker, run->agent_req);
            hmap_del(self->agent_reqs, run->agent_req);
            run->agent_req = 0;
        }
        s_run_fail(self, run, "internal", message);
    }
    zlistx_destroy(&keys);
}

int engine_run(engine_t *self, volatile sig_atomic_t *stop)
{
    zmq_pollitem_t item = {worker_socket(self->worker), 0, ZMQ_POLLIN, 0};
    int64_t drain_until = 0;
    for (;;) {
        int64_t now = clock_mono_ms();
        if (*stop && !self->draining) {
            self->draining = 1;
            drain_until = now + self->cfg.drain_ms;
            LOGI("engine.draining", "runs=%zu drain_ms=%ld", zhashx_size(self->runs),
                 self->cfg.drain_ms);
        }
        if (self->draining && (zhashx_size(self->runs) == 0 || now >= drain_until))
            break;
        long timeout = worker_timeout_ms(self->worker);
        if (outbox_waiting(self->out) && timeout > S_OUT_RETRY_MS)
            timeout = S_OUT_RETRY_MS; /* answers wait for room in the socket */
        long until_tick = (long)(self->next_tick - now);
        if (until_tick < timeout)
            timeout = until_tick < 0 ? 0 : until_tick;
        if (zmq_poll(&item, 1, timeout) < 0 && errno != EINTR) {
            LOGE("engine.poll", "error=%s", zmq_strerror(errno));
            return -1;
        }
        s_turn_start(self);
        while (worker_process(self->worker) > 0) {
            if (outbox_bytes(self->out) > S_OUT_MAX / 2 ||
                outbox_entries(self->out) > S_OUT_ENTRIES / 2)
                break; /* commit and send before taking more */
        }
        now = clock_mono_ms();
        if (now >= self->next_tick) {
            s_tick(self, now);
            self->next_tick = now + S_TICK_MS;
        }
        s_end_turn(self);
    }
    s_fail_all(self, "the orchestrator stopped before the run ended");
    s_end_turn(self);
    /* Watchers: their streams end with the process. */
    size_t pos = 0;
    uint64_t key;
    void *value;
    while (hmap_next(self->watch_reqs, &pos, &key, &value) == 0)
        worker_fail(self->worker, key, "unavailable", "the orchestrator is stopping");
    return 0;
}

/* ---- lifecycle -------------------------------------------------------------- */

/* Ends the runs a crash left unfinished with run_failed/internal. */
static int s_recover_cb(void *arg, const store_run_t *row, uint64_t last_seq)
{
    engine_t *self = arg;
    char now[CLOCK_RFC3339_LEN];
    s_now(now);
    const char *payload =
        "{\"error\":{\"code\":\"internal\",\"message\":\"the orchestrator restarted before the run ended\"}}";
    int64_t event_id;
    if (store_event_append(self->store, row->run_id, last_seq + 1, "run_failed", payload, now,
                           &event_id) != 0 ||
        store_run_set_status(self->store, row->run_id, "failed", now) != 0)
        return -1;
    LOGW("run.recovered", "run=%s session=%s status=failed was=%s", row->run_id,
         row->session_id, row->status);
    return 0;
}

engine_t *engine_new(const engine_config_t *cfg, char *err, size_t errlen)
{
    engine_t *self = mem_alloc(sizeof *self);
    self->cfg = *cfg;
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
                          .body_max = S_BODY_MAX};
    self->worker = worker_new(&wc, &h, self, err, errlen);
    if (!self->worker) {
        store_destroy(&self->store);
        mem_free(self);
        return NULL;
    }
    self->runs = zhashx_new();
    self->sessions = zhashx_new();
    self->native = zhashx_new();
    self->native_seen = zhashx_new();
    self->agent_reqs = hmap_new(1000000);
    self->follow_reqs = hmap_new(1000000);
    self->watch_reqs = hmap_new(1000000);
    self->out = outbox_new(S_OUT_ENTRIES, S_OUT_MAX);
    self->refused = hmap_new(S_OUT_ENTRIES);
    sbuf_init(&self->json, S_JSON_MAX);
    sbuf_init(&self->event, S_JSON_MAX);
    mp_buf_init(&self->mp, S_JSON_MAX + 4096);
    self->next_tick = clock_mono_ms() + S_TICK_MS;
    return self;
}

void engine_destroy(engine_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    engine_t *self = *self_p;
    /* Runs still in memory (only if engine_run was not called to the end). */
    zlistx_t *keys = zhashx_keys(self->runs);
    for (const char *k = zlistx_first(keys); k; k = zlistx_next(keys)) {
        run_t *run = zhashx_lookup(self->runs, k);
        for (follower_t *f = run->followers; f;) {
            follower_t *next = f->next;
            mem_free(f);
            f = next;
        }
        run->followers = NULL;
        run->ended = 1;
        run->next_ended = self->ended;
        self->ended = run;
        if (run->session->running == run)
            run->session->running = NULL;
        run->session->qhead = run->session->qtail = NULL;
    }
    zlistx_destroy(&keys);
    s_runs_free_ended(self);
    keys = zhashx_keys(self->sessions);
    for (const char *k = zlistx_first(keys); k; k = zlistx_next(keys)) {
        session_t *s = zhashx_lookup(self->sessions, k);
        for (watcher_t *w = s->watchers; w;) {
            watcher_t *next = w->next;
            mem_free(w);
            w = next;
        }
        mem_free(s->id);
        mem_free(s);
    }
    zlistx_destroy(&keys);
    zhashx_destroy(&self->runs);
    zhashx_destroy(&self->sessions);
    zhashx_destroy(&self->native);
    zhashx_destroy(&self->native_seen);
    hmap_destroy(&self->agent_reqs);
    hmap_destroy(&self->follow_reqs);
    hmap_destroy(&self->watch_reqs);
    worker_destroy(&self->worker);
    store_destroy(&self->store);
    outbox_destroy(&self->out);
    hmap_destroy(&self->refused);
    while (self->in_head) {
        s_in_t *in = self->in_head;
        self->in_head = in->next;
        mem_free(in);
    }
    mem_free(self->touched);
    mem_free(self->doomed);
    sbuf_free(&self->json);
    sbuf_free(&self->event);
    mp_buf_free(&self->mp);
    mem_free(self);
    *self_p = NULL;
}
