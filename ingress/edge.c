/* edge: lws callbacks, orchestrator requests and their answers.
 *
 * Objects and owners:
 *   conn_t     lws's per-connection memory (HTTP or WebSocket); lws frees it
 *              after the CLOSED callback, where everything pointing at it is
 *              dropped (its pending requests are cancelled on the broker).
 *   pending_t  one request to the orchestrator; owned by self->pending
 *              (key: our request id); linked from its connection.
 *   session_t  the WebSockets of one session and its `watch` request to the
 *              orchestrator; owned by self->sessions; freed with its last
 *              socket (the watch is cancelled).
 *
 * Writes happen only in WRITEABLE callbacks. Each connection has a bounded
 * queue of outgoing messages; one that grows past max_outq (a client that
 * stops reading) is closed with 4008 and freed: the client can resume.
 *
 * Ordering per run and socket: events arrive from the session's watch and
 * from resumes; each socket keeps the next seq it expects per run, drops
 * duplicates, and on a gap fetches the missing events from the store
 * (`events`) before sending later ones, so a socket sees every run gapless
 * and in order. */
#include "edge.h"

#include "worker/worker.h"
#include "common/clock.h"
#include "common/hmap.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/sbuf.h"
#include "proto/orch.h"
#include "outq.h"
#include "routes.h"
#include "seqtrack.h"
#include "ui.h"
#include "wsmsg.h"

#include <czmq.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define S_TICK_US (100 * 1000) /* timer: heartbeats, request deadlines, stop */

typedef struct session_t session_t;
typedef struct pending_t pending_t;

typedef struct conn_t {
    struct lws *wsi;
    int is_ws;
    pending_t *pendings;     /* requests of this connection */
    outq_t q;                /* messages to write */
    int closing;             /* close once the queue is written (or now) */
    int close_code;
    char close_reason[64];
    /* HTTP */
    int post;
    route_t route;
    sbuf_t body;
    int body_too_large;
    int responding;          /* a response is queued or being streamed */
    int sse;                 /* streaming events */
    int headers_sent;
    int status;
    char run_id_hdr[129];
    int finish;              /* the last chunk is queued */
    ui_asset_t ui;           /* ROUTE_UI: the page file being served */
    /* WebSocket */
    int hello;
    session_t *session;
    struct conn_t *snext;    /* next socket of the session */
    zhashx_t *runs;          /* run_id → seqtrack_t: the runs it follows */
    sbuf_t frag;             /* message being reassembled */
    int frag_too_large;
} conn_t;

typedef enum { P_HTTP, P_HEALTH, P_WS_INVOKE, P_WS_RESUME, P_WS_CANCEL, P_WS_FILL, P_WATCH } p_kind_t;

struct pending_t {
    uint64_t req;
    p_kind_t kind;
    conn_t *conn;            /* NULL for a watch */
    session_t *session;      /* watch */
    char request_id[129];    /* WS: the client's request id */
    char run_id[129];        /* WS resume/cancel/fill */
    int accepted;            /* a follow's accepted arrived */
    int64_t deadline;        /* mono ms, 0: none (streams) */
    pending_t *cnext;        /* next of the same connection */
};

struct session_t {
    char id[129];
    conn_t *conns;
    uint64_t watch;          /* our watch request, 0 if none */
    int lost;                /* a watch ended: events may have been missed */
};

typedef struct {
    uint64_t http_requests, ws_connections, ws_messages, events_sent, slow_closed, errors,
        orch_requests, orch_unavailable, fills, watches_lost;
} s_metrics_t;

struct edge_t {
    edge_config_t cfg;
    struct lws_context *ctx;
    struct lws_vhost *vhost;
    worker_t *worker;
    hmap_t *pending;
    zhashx_t *sessions;
    lws_sorted_usec_list_t sul;
    volatile sig_atomic_t *stop;
    s_metrics_t m;
    int ready;               /* edge_new is done: callbacks may pump the DEALER */
    int64_t rewatch_at;      /* mono ms: next try for sessions without a watch */
    long rewatch_ms;         /* the try's backoff */
    int64_t http_conns, ws_conns;
    mp_buf_t mp;
};

static edge_t *s_self; /* lws callbacks reach the edge through this */

static void s_free_item(void **item)
{
    mem_free(*item);
    *item = NULL;
}

/* ---- queue and writes ---------------------------------------------------- */

static void s_close_now(conn_t *c, int code, const char *reason)
{
    c->closing = 1;
    c->close_code = code;
    snprintf(c->close_reason, sizeof c->close_reason, "%s", reason);
    lws_callback_on_writable(c->wsi);
    /* A client that reads nothing never becomes writable: cut it anyway. */
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, 2);
}

/* Queues bytes for the connection; a full queue closes it (outq.h). */
static int s_push(conn_t *c, const void *data, size_t len)
{
    if (c->closing)
        return -1;
    if (outq_push(&c->q, data, len)) {
        s_self->m.slow_closed++;
        LOGW("client.slow", "queued=%zu max=%ld ws=%d", c->q.bytes, s_self->cfg.max_outq, c->is_ws);
        outq_clear(&c->q);
        s_close_now(c, 4008, "too slow to read; reconnect and resume");
        return -1;
    }
    lws_callback_on_writable(c->wsi);
    return 0;
}

static void s_ws_json(conn_t *c, sbuf_t *j)
{
    if (!j->overflow)
        s_push(c, j->data, j->len);
}

static void s_ws_error(conn_t *c, const char *code, const char *message, const char *request_id)
{
    sbuf_t j;
    sbuf_init(&j, 4096);
    sbuf_cats(&j, "{\"type\":\"error\",\"code\":");
    sbuf_json_str(&j, code, strlen(code));
    sbuf_cats(&j, ",\"message\":");
    sbuf_json_str(&j, message, strlen(message));
    if (request_id && *request_id) {
        sbuf_cats(&j, ",\"request_id\":");
        sbuf_json_str(&j, request_id, strlen(request_id));
    }
    sbuf_cats(&j, "}");
    s_ws_json(c, &j);
    sbuf_free(&j);
    s_self->m.errors++;
}

/* HTTP: one whole response (status, JSON or text body). */
static void s_http_respond(conn_t *c, int status, const char *body, size_t len)
{
    c->status = status;
    c->responding = 1;
    c->finish = 1;
    s_push(c, body, len);
}

static void s_http_error(conn_t *c, int status, const char *code, const char *message)
{
    route_err_t e = {status, code, ""};
    snprintf(e.message, sizeof e.message, "%s", message);
    char json[600];
    routes_error_json(&e, json, sizeof json);
    s_http_respond(c, status, json, strlen(json));
    s_self->m.errors++;
}

/* /health when something is down: which component, in the health document. */
static void s_health_down(conn_t *c, int broker_down)
{
    const char *doc = broker_down
        ? "{\"status\":\"unavailable\",\"components\":{\"broker\":\"down\",\"orchestrator\":\"unknown\"}}"
        : "{\"status\":\"unavailable\",\"components\":{\"broker\":\"ok\",\"orchestrator\":\"down\"}}";
    s_http_respond(c, 503, doc, strlen(doc));
}

/* ---- requests to the orchestrator ---------------------------------------- */

/* Drains the DEALER; lws then waits on its fd, so what a send may have
 * hidden from the fd (worker_readable) is drained too. */
static void s_pump(void)
{
    while (worker_process(s_self->worker) > 0 || worker_readable(s_self->worker)) {
    }
}

static pending_t *s_request(conn_t *c, p_kind_t kind, const mp_buf_t *body, long timeout_ms)
{
    uint64_t req = worker_request(s_self->worker, "orchestrator", body->data, body->len);
    if (!req) {
        s_self->m.orch_unavailable++;
        return NULL;
    }
    s_self->m.orch_requests++;
    pending_t *p = mem_alloc(sizeof *p);
    p->req = req;
    p->kind = kind;
    p->conn = c;
    p->deadline = timeout_ms ? clock_mono_ms() + timeout_ms : 0;
    if (c) {
        p->cnext = c->pendings;
        c->pendings = p;
    }
    hmap_put(s_self->pending, req, p);
    return p;
}

static void s_pending_unlink(pending_t *p)
{
    hmap_del(s_self->pending, p->req);
    if (p->conn) {
        for (pending_t **pp = &p->conn->pendings; *pp; pp = &(*pp)->cnext) {
            if (*pp == p) {
                *pp = p->cnext;
                break;
            }
        }
    }
}

static void s_pending_free(pending_t *p)
{
    s_pending_unlink(p);
    mem_free(p);
}

/* Builds an orchestrator request body in s_self->mp. */
static const mp_buf_t *s_body(const orch_request_t *q)
{
    mp_buf_reset(&s_self->mp);
    orch_encode_request(&s_self->mp, q);
    return &s_self->mp;
}

#define S_STR(s) ((agent_str_t){(s), (uint32_t)strlen(s)})

/* ---- sessions and event delivery ----------------------------------------- */

static void s_watch(session_t *s)
{
    orch_request_t q = {.op = S_STR("watch"), .session_id = S_STR(s->id)};
    pending_t *p = s_request(NULL, P_WATCH, s_body(&q), 0);
    if (p) {
        p->session = s;
        s->watch = p->req;
    }
}

#define S_REWATCH_MIN_MS 100
#define S_REWATCH_MAX_MS 2000

/* A watch ended (the orchestrator died, the broker lost it): the session
 * is watched again by the timer, with a backoff while the orchestrator is
 * away, and filled once the new watch is accepted. */
static void s_watch_lost(session_t *s)
{
    s->watch = 0;
    s->lost = 1;
    s_self->m.watches_lost++;
    int64_t at = clock_mono_ms() + s_self->rewatch_ms;
    if (!s_self->rewatch_at || at < s_self->rewatch_at)
        s_self->rewatch_at = at;
}

static void s_session_refill(session_t *s);

/* A watch was accepted: the orchestrator is there. If watches were lost
 * (rewatch_at is set), the sessions still without one are watched now, once
 * per recovery, not once per accepted watch; this one catches up on what it
 * missed. */
static void s_watch_back(session_t *s)
{
    s_self->rewatch_ms = S_REWATCH_MIN_MS;
    if (s_self->rewatch_at) {
        s_self->rewatch_at = 0;
        for (session_t *o = zhashx_first(s_self->sessions); o; o = zhashx_next(s_self->sessions)) {
            if (!o->watch)
                s_watch(o);
            if (!o->watch && !s_self->rewatch_at) /* not sent: the timer tries again */
                s_self->rewatch_at = clock_mono_ms() + s_self->rewatch_ms;
        }
    }
    if (s->lost)
        s_session_refill(s);
}

/* The timer's part: while sessions lack a watch, one of them tries again
 * (a probe, not every session at once); its acceptance brings the rest. */
static void s_rewatch(int64_t now)
{
    if (!s_self->rewatch_at || now < s_self->rewatch_at || !worker_linked(s_self->worker))
        return;
    s_self->rewatch_at = 0;
    for (session_t *s = zhashx_first(s_self->sessions); s; s = zhashx_next(s_self->sessions)) {
        if (!s->watch) {
            s_watch(s);
            s_self->rewatch_at = now + s_self->rewatch_ms;
            s_self->rewatch_ms = s_self->rewatch_ms * 2 < S_REWATCH_MAX_MS ? s_self->rewatch_ms * 2
                                                                         : S_REWATCH_MAX_MS;
            return;
        }
    }
}

static void s_session_join(conn_t *c, const char *id)
{
    session_t *s = zhashx_lookup(s_self->sessions, id);
    if (!s) {
        s = mem_alloc(sizeof *s);
        snprintf(s->id, sizeof s->id, "%s", id);
        zhashx_insert(s_self->sessions, id, s);
        s_watch(s);
    }
    c->snext = s->conns;
    s->conns = c;
    c->session = s;
}

static void s_session_leave(conn_t *c)
{
    session_t *s = c->session;
    if (!s)
        return;
    for (conn_t **pp = &s->conns; *pp; pp = &(*pp)->snext) {
        if (*pp == c) {
            *pp = c->snext;
            break;
        }
    }
    c->session = NULL;
    if (s->conns)
        return;
    if (s->watch) {
        pending_t *p = hmap_get(s_self->pending, s->watch);
        worker_cancel(s_self->worker, s->watch);
        if (p)
            s_pending_free(p);
    }
    zhashx_delete(s_self->sessions, s->id);
    mem_free(s);
}

/* Sends the fill seqtrack asked for (filling is set); a request that cannot
 * go out counts as a failed fill. */
static void s_fill(conn_t *c, const char *run_id, seqtrack_t *t)
{
    do {
        orch_request_t q = {.op = S_STR("events"), .run_id = S_STR(run_id),
                            .after_seq = seqtrack_after(t), .limit = ORCH_LIMIT_MAX};
        pending_t *p = s_request(c, P_WS_FILL, s_body(&q), s_self->cfg.request_timeout_ms);
        if (p) {
            snprintf(p->run_id, sizeof p->run_id, "%s", run_id);
            return;
        }
    } while (seqtrack_fill_done(t, 0));
}

/* The run's tracker on this socket; created from seq next when missing. */
static seqtrack_t *s_track(conn_t *c, const char *run_id, uint64_t next)
{
    seqtrack_t *t = zhashx_lookup(c->runs, run_id);
    if (!t) {
        t = mem_alloc(sizeof *t);
        seqtrack_init(t, next);
        zhashx_insert(c->runs, run_id, t);
    }
    return t;
}

static void s_send_event(conn_t *c, const char *json, size_t len)
{
    sbuf_t j;
    sbuf_init(&j, len + 64);
    sbuf_cats(&j, "{\"type\":\"event\",\"event\":");
    sbuf_cat(&j, json, len);
    sbuf_cats(&j, "}");
    s_ws_json(c, &j);
    sbuf_free(&j);
    s_self->m.events_sent++;
}

/* One event of a run for one socket, in order, without duplicates. A run
 * first seen here was invoked by another socket of the session: the socket
 * joins it where it is (earlier events come by resume). */
static void s_ws_event(conn_t *c, const char *run_id, uint64_t seq, int terminal, const char *json,
                       size_t len)
{
    if (c->closing)
        return;
    seqtrack_t *t = s_track(c, run_id, seq);
    switch (seqtrack_live(t, seq)) {
    case SEQ_SEND:
        s_send_event(c, json, len);
        if (terminal)
            zhashx_delete(c->runs, run_id);
        break;
    case SEQ_FILL:
        s_self->m.fills++;
        s_fill(c, run_id, t);
        break;
    case SEQ_DROP:
    case SEQ_HOLD:
        break;
    }
}

/* A session's watch is back after a loss: every run its sockets follow
 * may have missed events meanwhile (even its terminal one), so each is
 * filled from the store. */
static void s_session_refill(session_t *s)
{
    s->lost = 0;
    for (conn_t *c = s->conns; c; c = c->snext) {
        for (seqtrack_t *t = zhashx_first(c->runs); t; t = zhashx_next(c->runs)) {
            if (seqtrack_want_fill(t)) {
                s_self->m.fills++;
                s_fill(c, zhashx_cursor(c->runs), t);
            }
        }
    }
}

static void s_on_fill(conn_t *c, pending_t *p, unsigned status, const char *json, size_t len)
{
    seqtrack_t *t = zhashx_lookup(c->runs, p->run_id);
    if (!t)
        return;
    json_t *doc = status == 200 ? json_loadb(json, len, 0, NULL) : NULL;
    json_t *events = json_object_get(doc, "events");
    size_t i;
    json_t *ev;
    int ended = 0;
    json_array_foreach(events, i, ev) {
        json_int_t seq = json_integer_value(json_object_get(ev, "seq"));
        if (seq <= 0 || !seqtrack_filled(t, (uint64_t)seq))
            continue;
        char *text = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (text) {
            s_send_event(c, text, strlen(text));
            free(text);
        }
        const char *type = json_string_value(json_object_get(ev, "type"));
        if (type && (!strcmp(type, "run_done") || !strcmp(type, "run_failed") ||
                     !strcmp(type, "run_cancelled")))
            ended = 1;
    }
    int ok = json_is_array(events);
    json_decref(doc);
    if (ended)
        zhashx_delete(c->runs, p->run_id);
    else if (seqtrack_fill_done(t, ok))
        s_fill(c, p->run_id, t); /* more came while this one was out */
}

/* ---- answers from the orchestrator --------------------------------------- */

static int s_json_field(const char *json, size_t len, const char *key, char *out, size_t cap)
{
    json_t *doc = json_loadb(json, len, 0, NULL);
    const char *v = json_string_value(json_object_get(doc, key));
    int found = v != NULL;
    snprintf(out, cap, "%s", v ? v : "");
    json_decref(doc);
    return found ? 0 : -1;
}

static void s_sse_event(conn_t *c, const orch_stream_t *ev)
{
    sbuf_t j;
    sbuf_init(&j, ev->json.len + 256);
    sbuf_catf(&j, "id: %llu\nevent: %.*s\ndata: ", (unsigned long long)ev->seq, (int)ev->type.len,
              ev->type.ptr);
    sbuf_cat(&j, ev->json.ptr, ev->json.len);
    sbuf_cats(&j, "\n\n");
    s_push(c, j.data, j.len);
    sbuf_free(&j);
    s_self->m.events_sent++;
}

static void s_on_stream(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    (void)w;
    (void)arg;
    pending_t *p = hmap_get(s_self->pending, req);
    orch_stream_t ev;
    if (!p || orch_decode_stream(body, len, &ev) != AGENT_OK)
        return;
    conn_t *c = p->conn;
    switch (p->kind) {
    case P_WATCH:
        if (ev.accepted) {
            s_watch_back(p->session);
            return;
        }
        char run_id[129];
        snprintf(run_id, sizeof run_id, "%.*s", (int)ev.run_id.len, ev.run_id.ptr);
        for (conn_t *s = p->session->conns; s; s = s->snext)
            s_ws_event(s, run_id, ev.seq, ev.terminal, ev.json.ptr, ev.json.len);
        return;
    case P_HTTP:
        if (ev.accepted) {
            c->sse = 1;
            c->responding = 1;
            c->status = 200;
            s_json_field(ev.json.ptr, ev.json.len, "run_id", c->run_id_hdr, sizeof c->run_id_hdr);
            lws_callback_on_writable(c->wsi);
            return;
        }
        s_sse_event(c, &ev);
        return;
    case P_WS_RESUME:
        if (ev.accepted) {
            /* A run of another session is none of this socket's business. */
            char sid[129] = "";
            s_json_field(ev.json.ptr, ev.json.len, "session_id", sid, sizeof sid);
            if (!c->session || strcmp(sid, c->session->id) != 0) {
                worker_cancel(s_self->worker, req);
                s_ws_error(c, "unknown_run", "no such run in this session", p->run_id);
                s_pending_free(p);
                return;
            }
            p->accepted = 1;
            return;
        }
        if (p->accepted) {
            char rid[129];
            snprintf(rid, sizeof rid, "%.*s", (int)ev.run_id.len, ev.run_id.ptr);
            s_ws_event(c, rid, ev.seq, ev.terminal, ev.json.ptr, ev.json.len);
        }
        return;
    default:
        return;
    }
}

static void s_on_reply(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    (void)w;
    (void)arg;
    pending_t *p = hmap_get(s_self->pending, req);
    unsigned status = 0;
    agent_str_t json = {NULL, 0};
    if (!p)
        return;
    if (orch_decode_reply(body, len, &status, &json) != AGENT_OK) {
        status = 502;
        json = S_STR("{\"error\":{\"code\":\"internal\",\"message\":\"a bad answer from the orchestrator\"}}");
    }
    conn_t *c = p->conn;
    switch (p->kind) {
    case P_HTTP:
        if (c->sse) {
            c->finish = 1; /* the stream ends after its terminal event */
            lws_callback_on_writable(c->wsi);
        } else {
            s_http_respond(c, (int)status, json.ptr, json.len);
        }
        break;
    case P_HEALTH: {
        const char *ok = "{\"status\":\"ok\",\"components\":{\"broker\":\"ok\",\"orchestrator\":\"ok\"}}";
        if (status == 200)
            s_http_respond(c, 200, ok, strlen(ok));
        else
            s_health_down(c, 0);
        break;
    }
    case P_WS_INVOKE:
        if (status == 200) {
            char run_id[129] = "", run_status[32] = "";
            s_json_field(json.ptr, json.len, "run_id", run_id, sizeof run_id);
            s_json_field(json.ptr, json.len, "status", run_status, sizeof run_status);
            /* A run to come is followed from seq 1: a gap, or a watch lost
             * before its first event, is filled from the store. (A retry
             * that names an ended run gets its answer only, as before.) */
            if (*run_id && (!strcmp(run_status, "queued") || !strcmp(run_status, "running")))
                s_track(c, run_id, 1);
            /* Events of the run may only be sent after this: they follow
             * on the session's watch, after this answer. */
            sbuf_t j;
            sbuf_init(&j, 1024);
            sbuf_cats(&j, "{\"type\":\"invoke_accepted\",\"request_id\":");
            sbuf_json_str(&j, p->request_id, strlen(p->request_id));
            sbuf_cats(&j, ",\"run_id\":");
            sbuf_json_str(&j, run_id, strlen(run_id));
            sbuf_cats(&j, "}");
            s_ws_json(c, &j);
            sbuf_free(&j);
        } else {
            char code[64] = "bad_request", message[512] = "";
            json_t *doc = json_loadb(json.ptr, json.len, 0, NULL);
            json_t *err = json_object_get(doc, "error");
            if (json_string_value(json_object_get(err, "code")))
                snprintf(code, sizeof code, "%s", json_string_value(json_object_get(err, "code")));
            if (json_string_value(json_object_get(err, "message")))
                snprintf(message, sizeof message, "%s",
                         json_string_value(json_object_get(err, "message")));
            json_decref(doc);
            if (status >= 500)
                snprintf(code, sizeof code, "unavailable");
            s_ws_error(c, code, message, p->request_id);
        }
        break;
    case P_WS_CANCEL:
        if (status == 404)
            s_ws_error(c, "unknown_run", "no such run", p->request_id);
        else if (status == 409)
            s_ws_error(c, "bad_request", "the run has already ended", p->request_id);
        break;
    case P_WS_RESUME:
        if (status == 404)
            s_ws_error(c, "unknown_run", "no such run", p->run_id);
        break;
    case P_WS_FILL:
        s_on_fill(c, p, status, json.ptr, json.len);
        break;
    case P_WATCH:
        s_watch_lost(p->session);
        break;
    }
    s_pending_free(p);
}

static void s_on_error(worker_t *w, uint64_t req, const char *code, const char *message, void *arg)
{
    (void)w;
    (void)arg;
    pending_t *p = hmap_get(s_self->pending, req);
    if (!p)
        return;
    conn_t *c = p->conn;
    LOGD("orch.error", "req=%llu code=%s", (unsigned long long)req, code);
    switch (p->kind) {
    case P_HTTP:
        if (c->sse) {
            c->finish = 1;
            lws_callback_on_writable(c->wsi);
        } else if (!strcmp(code, "bad_request")) {
            s_http_error(c, 400, "bad_request", message);
        } else {
            s_http_error(c, 503, "unavailable", "the orchestrator cannot be reached");
        }
        break;
    case P_HEALTH:
        /* unknown_service or silence: the orchestrator; a lost link: the broker. */
        s_health_down(c, !strcmp(code, "broker_lost") || !worker_linked(s_self->worker));
        break;
    case P_WS_INVOKE:
    case P_WS_CANCEL:
        s_ws_error(c, "unavailable", "the orchestrator cannot be reached", p->request_id);
        break;
    case P_WS_RESUME:
        s_ws_error(c, "unavailable", "the orchestrator cannot be reached", p->run_id);
        break;
    case P_WS_FILL: {
        seqtrack_t *t = zhashx_lookup(c->runs, p->run_id);
        char run_id[sizeof p->run_id];
        memcpy(run_id, p->run_id, sizeof run_id);
        s_pending_free(p);
        if (t && seqtrack_fill_done(t, 0))
            s_fill(c, run_id, t);
        return;
    }
    case P_WATCH:
        s_watch_lost(p->session);
        break;
    }
    s_pending_free(p);
}

static void s_on_link(worker_t *w, int up, void *arg)
{
    (void)w;
    (void)arg;
    LOGI(up ? "broker.up" : "broker.lost", "endpoint=%s", s_self->cfg.broker);
    if (!up)
        return;
    /* Sessions whose watch was lost watch again; clients resume what they missed. */
    for (session_t *s = zhashx_first(s_self->sessions); s; s = zhashx_next(s_self->sessions))
        if (!s->watch)
            s_watch(s);
}

/* ---- HTTP ------------------------------------------------------------------ */

static int s_authorized(struct lws *wsi)
{
    const char *key = s_self->cfg.api_key;
    if (!key || !*key)
        return 1;
    char auth[512];
    if (lws_hdr_copy(wsi, auth, sizeof auth, WSI_TOKEN_HTTP_AUTHORIZATION) <= 0)
        return 0;
    return !strncmp(auth, "Bearer ", 7) && !strcmp(auth + 7, key);
}

static void s_metrics(conn_t *c)
{
    sbuf_t t;
    sbuf_init(&t, 1 << 16);
    const s_metrics_t *m = &s_self->m;
    sbuf_catf(&t, "# HELP map_ingress_connections Open connections by kind.\n"
                  "# TYPE map_ingress_connections gauge\n"
                  "map_ingress_connections{kind=\"http\"} %lld\n"
                  "map_ingress_connections{kind=\"ws\"} %lld\n",
              (long long)s_self->http_conns, (long long)s_self->ws_conns);
    sbuf_catf(&t, "# TYPE map_ingress_sessions gauge\nmap_ingress_sessions %zu\n",
              zhashx_size(s_self->sessions));
    const struct {
        const char *name;
        uint64_t value;
    } counters[] = {
        {"map_ingress_http_requests_total", m->http_requests},
        {"map_ingress_ws_connections_total", m->ws_connections},
        {"map_ingress_ws_messages_total", m->ws_messages},
        {"map_ingress_events_sent_total", m->events_sent},
        {"map_ingress_orchestrator_requests_total", m->orch_requests},
        {"map_ingress_orchestrator_unavailable_total", m->orch_unavailable},
        {"map_ingress_slow_clients_closed_total", m->slow_closed},
        {"map_ingress_gap_fills_total", m->fills},
        {"map_ingress_watches_lost_total", m->watches_lost},
        {"map_ingress_errors_total", m->errors},
    };
    for (size_t i = 0; i < sizeof counters / sizeof *counters; i++)
        sbuf_catf(&t, "# TYPE %s counter\n%s %llu\n", counters[i].name, counters[i].name,
                  (unsigned long long)counters[i].value);
    sbuf_catf(&t, "# TYPE map_ingress_broker_up gauge\nmap_ingress_broker_up %d\n",
              worker_linked(s_self->worker));
    c->status = 200;
    c->responding = 1;
    c->finish = 1;
    c->sse = 0;
    s_push(c, t.data, t.len);
    sbuf_free(&t);
}

static void s_send_to_session(conn_t *c)
{
    char session[129];
    char *event = NULL;
    route_err_t e;
    if (routes_send(c->body.data ? c->body.data : "", c->body.len, session, sizeof session, &event,
                    &e) != 0) {
        s_http_error(c, e.status, e.code, e.message);
        return;
    }
    int delivered = 0;
    session_t *s = zhashx_lookup(s_self->sessions, session);
    for (conn_t *w = s ? s->conns : NULL; w; w = w->snext) {
        if (!w->closing) {
            s_send_event(w, event, strlen(event));
            delivered++;
        }
    }
    free(event);
    char out[64];
    int n = snprintf(out, sizeof out, "{\"delivered\":%d}", delivered);
    s_http_respond(c, 202, out, (size_t)n);
}

/* Runs a matched route once its body (if any) is in. */
static void s_dispatch(conn_t *c)
{
    struct lws *wsi = c->wsi;
    route_err_t e;
    const char *body = c->body.data ? c->body.data : "";
    mp_buf_reset(&s_self->mp);
    long timeout = s_self->cfg.request_timeout_ms;
    p_kind_t kind = P_HTTP;
    char arg[64];
    orch_request_t q = {0};
    switch (c->route.id) {
    case ROUTE_HEALTH:
        if (!worker_linked(s_self->worker)) {
            s_health_down(c, 1);
            return;
        }
        q.op = S_STR("health");
        kind = P_HEALTH;
        timeout = 1000;
        s_body(&q);
        break;
    case ROUTE_METRICS:
        s_metrics(c);
        return;
    case ROUTE_UI:
        if (ui_find(c->route.arg, &c->ui) != 0)
            s_http_error(c, 404, "not_found", "no such file of the page");
        else
            s_http_respond(c, 200, (const char *)c->ui.data, c->ui.len);
        return;
    case ROUTE_SEND:
        s_send_to_session(c);
        return;
    case ROUTE_REGISTER:
        if (routes_register(body, c->body.len, &s_self->mp, &e) != 0) {
            s_http_error(c, e.status, e.code, e.message);
            return;
        }
        break;
    case ROUTE_INVOKE:
        if (routes_invoke(body, c->body.len, &s_self->mp, &e) != 0) {
            s_http_error(c, e.status, e.code, e.message);
            return;
        }
        timeout = 0; /* a stream: it lasts as long as the run */
        break;
    case ROUTE_AGENTS:
        q.op = S_STR("agents");
        s_body(&q);
        break;
    case ROUTE_RUN:
        q.op = S_STR("run");
        q.run_id = S_STR(c->route.arg);
        s_body(&q);
        break;
    case ROUTE_RUN_CANCEL:
        q.op = S_STR("cancel");
        q.run_id = S_STR(c->route.arg);
        s_body(&q);
        break;
    case ROUTE_MESSAGES:
        q.op = S_STR("messages");
        q.session_id = S_STR(c->route.arg);
        const char *lim = lws_get_urlarg_by_name(wsi, "limit=", arg, sizeof arg);
        if (lim)
            q.limit = strtoull(lim, NULL, 10);
        s_body(&q);
        break;
    case ROUTE_RUN_EVENTS: {
        char accept[256] = "", last[32] = "";
        lws_hdr_copy(wsi, accept, sizeof accept, WSI_TOKEN_HTTP_ACCEPT);
        int has_last = lws_hdr_custom_copy(wsi, last, sizeof last, "last-event-id:", 14) > 0;
        const char *v;
        q.run_id = S_STR(c->route.arg);
        if ((v = lws_get_urlarg_by_name(wsi, "after_seq=", arg, sizeof arg)))
            q.after_seq = strtoull(v, NULL, 10);
        if (has_last)
            q.after_seq = strtoull(last, NULL, 10);
        if (strstr(accept, "text/event-stream") || has_last) {
            q.op = S_STR("follow");
            timeout = 0;
        } else {
            q.op = S_STR("events");
            if ((v = lws_get_urlarg_by_name(wsi, "limit=", arg, sizeof arg)))
                q.limit = strtoull(v, NULL, 10);
        }
        s_body(&q);
        break;
    }
    }
    if (s_self->mp.overflow) {
        s_http_error(c, 413, "too_large", "the request is over the maximum");
        return;
    }
    if (!s_request(c, kind, &s_self->mp, timeout)) {
        if (kind == P_HEALTH)
            s_health_down(c, 1);
        else
            s_http_error(c, 503, "unavailable", "the broker cannot be reached");
        return;
    }
    s_pump();
}

static int s_http_writeable(conn_t *c)
{
    struct lws *wsi = c->wsi;
    if (c->closing)
        return -1; /* too slow a reader: cut */
    if (!c->responding)
        return 0;
    if (!c->headers_sent) {
        unsigned char hdr[LWS_PRE + 2048], *start = hdr + LWS_PRE, *p = start,
                                          *end = hdr + sizeof hdr - 1;
        const char *type = c->sse ? "text/event-stream"
                           : c->route.id == ROUTE_METRICS ? "text/plain; version=0.0.4"
                           : c->ui.content_type ? c->ui.content_type
                                                : "application/json";
        lws_filepos_t clen = c->sse ? LWS_ILLEGAL_HTTP_CONTENT_LEN : (lws_filepos_t)c->q.bytes;
        if (lws_add_http_common_headers(wsi, (unsigned)c->status, type, clen, &p, end))
            return -1;
        if (c->run_id_hdr[0] &&
            lws_add_http_header_by_name(wsi, (const unsigned char *)"x-run-id:",
                                        (const unsigned char *)c->run_id_hdr,
                                        (int)strlen(c->run_id_hdr), &p, end))
            return -1;
        if (c->sse && lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                                  (const unsigned char *)"no-cache", 8, &p, end))
            return -1;
        for (size_t i = 0; i < c->ui.nheaders; i++)
            if (lws_add_http_header_by_name(wsi, (const unsigned char *)c->ui.headers[i].name,
                                            (const unsigned char *)c->ui.headers[i].value,
                                            (int)strlen(c->ui.headers[i].value), &p, end))
                return -1;
        if (lws_finalize_write_http_header(wsi, start, &p, end))
            return -1;
        c->headers_sent = 1;
        if (c->sse) /* a stream lasts as long as its run: no idle timeout */
            lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
        lws_callback_on_writable(wsi);
        return 0;
    }
    outq_msg_t *o = outq_take(&c->q);
    if (o) {
        int last = !c->q.head && c->finish;
        int rc = lws_write(wsi, outq_data(&c->q, o), o->len, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
        outq_msg_free(o);
        if (rc < 0)
            return -1;
        if (!last) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    } else if (!c->finish) {
        return 0; /* more will come */
    }
    /* Done: SSE streams end the connection; others may keep it alive. */
    if (c->sse)
        return -1;
    c->responding = c->headers_sent = c->finish = 0;
    c->run_id_hdr[0] = '\0';
    sbuf_free(&c->body);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static void s_conn_cleanup(conn_t *c)
{
    while (c->pendings) {
        pending_t *p = c->pendings;
        worker_cancel(s_self->worker, p->req);
        s_pending_free(p);
    }
    s_session_leave(c);
    outq_clear(&c->q);
    sbuf_free(&c->body);
    sbuf_free(&c->frag);
    if (c->runs)
        zhashx_destroy(&c->runs);
}

/* ---- WebSocket ------------------------------------------------------------- */

static void s_ws_message(conn_t *c, const char *text, size_t len)
{
    s_self->m.ws_messages++;
    wsmsg_t m;
    const char *code;
    char err[256];
    if (wsmsg_parse(text, len, &m, &code, err, sizeof err) != 0) {
        /* Before hello only hello is accepted, well-formed or not. */
        if (!c->hello && strcmp(code, "bad_json") != 0 && m.type != WSMSG_HELLO)
            s_ws_error(c, "not_hello", "send hello first", m.request_id);
        else
            s_ws_error(c, code, err, m.request_id);
        return;
    }
    if (!c->hello && m.type != WSMSG_HELLO) {
        s_ws_error(c, "not_hello", "send hello first", m.request_id);
        wsmsg_clear(&m);
        return;
    }
    orch_request_t q = {0};
    pending_t *p;
    switch (m.type) {
    case WSMSG_HELLO: {
        const char *key = s_self->cfg.api_key;
        if (key && *key && strcmp(m.api_key, key) != 0) {
            s_ws_error(c, "unauthorized", "a valid api_key is required", NULL);
            s_close_now(c, 4401, "unauthorized");
            break;
        }
        if (c->hello) {
            s_ws_error(c, "bad_request", "hello was already sent", NULL);
            break;
        }
        char id[IDS_MAX];
        const char *sid = m.session_id[0] ? m.session_id : ids_new("s_", id);
        if (strchr(sid, '"') || strchr(sid, '/') || strchr(sid, '\\')) {
            s_ws_error(c, "bad_request", "session_id has characters ids may not have", NULL);
            break;
        }
        c->hello = 1;
        s_session_join(c, sid);
        sbuf_t j;
        sbuf_init(&j, 512);
        sbuf_cats(&j, "{\"type\":\"hello_ok\",\"session_id\":");
        sbuf_json_str(&j, sid, strlen(sid));
        sbuf_cats(&j, "}");
        s_ws_json(c, &j);
        sbuf_free(&j);
        break;
    }
    case WSMSG_INVOKE:
        q.op = S_STR("invoke");
        q.session_id = S_STR(c->session->id);
        q.agent_id = S_STR(m.agent_id);
        q.request_id = S_STR(m.request_id);
        q.role = S_STR(m.role);
        q.content = (agent_str_t){m.content, (uint32_t)m.content_len};
        q.if_busy = m.if_busy_reject ? S_STR("reject") : S_STR("");
        p = s_request(c, P_WS_INVOKE, s_body(&q), s_self->cfg.request_timeout_ms);
        if (!p)
            s_ws_error(c, "unavailable", "the broker cannot be reached", m.request_id);
        else
            snprintf(p->request_id, sizeof p->request_id, "%s", m.request_id);
        break;
    case WSMSG_RESUME: {
        seqtrack_init(s_track(c, m.run_id, 1), m.after_seq + 1);
        q.op = S_STR("follow");
        q.run_id = S_STR(m.run_id);
        q.after_seq = m.after_seq;
        p = s_request(c, P_WS_RESUME, s_body(&q), 0);
        if (!p)
            s_ws_error(c, "unavailable", "the broker cannot be reached", m.run_id);
        else
            snprintf(p->run_id, sizeof p->run_id, "%s", m.run_id);
        break;
    }
    case WSMSG_CANCEL:
        q.op = S_STR("cancel");
        q.run_id = S_STR(m.run_id);
        p = s_request(c, P_WS_CANCEL, s_body(&q), s_self->cfg.request_timeout_ms);
        if (!p)
            s_ws_error(c, "unavailable", "the broker cannot be reached", m.request_id);
        else
            snprintf(p->request_id, sizeof p->request_id, "%s", m.request_id);
        break;
    case WSMSG_PING:
        s_push(c, "{\"type\":\"pong\"}", 15);
        break;
    }
    wsmsg_clear(&m);
    s_pump();
}

static int s_ws_receive(conn_t *c, const void *in, size_t len)
{
    struct lws *wsi = c->wsi;
    if (lws_is_first_fragment(wsi)) {
        sbuf_reset(&c->frag);
        c->frag_too_large = 0;
    }
    if (!c->frag_too_large && sbuf_cat(&c->frag, in, len) != 0)
        c->frag_too_large = 1;
    if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi) > 0)
        return 0;
    if (c->frag_too_large) {
        s_ws_error(c, "too_large", "the message is over the maximum size", NULL);
    } else if (lws_frame_is_binary(wsi)) {
        s_ws_error(c, "bad_request", "messages are JSON text frames", NULL);
    } else {
        s_ws_message(c, c->frag.data ? c->frag.data : "", c->frag.len);
    }
    sbuf_reset(&c->frag);
    return 0;
}

static int s_ws_writeable(conn_t *c)
{
    if (c->closing && !c->q.head) {
        lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
                         (unsigned char *)c->close_reason, strlen(c->close_reason));
        return -1;
    }
    outq_msg_t *o = outq_take(&c->q);
    if (!o)
        return 0;
    int rc = lws_write(c->wsi, outq_data(&c->q, o), o->len, LWS_WRITE_TEXT);
    outq_msg_free(o);
    if (rc < 0)
        return -1;
    if (c->q.head || c->closing)
        lws_callback_on_writable(c->wsi);
    return 0;
}

/* ---- the lws callback -------------------------------------------------------- */

static int s_handle(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    conn_t *c = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        if (c->wsi) /* a kept-alive connection's next request */
            s_conn_cleanup(c);
        memset(c, 0, sizeof *c);
        c->wsi = wsi;
        outq_init(&c->q, (size_t)s_self->cfg.max_outq, LWS_PRE);
        sbuf_init(&c->body, (size_t)s_self->cfg.max_body);
        s_self->m.http_requests++;
        const char *path = in ? in : "/";
        c->post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
        const char *method = c->post ? "POST"
                             : lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0 ? "GET"
                                                                                 : "OTHER";
        route_err_t e;
        if (routes_match(method, path, &c->route, &e) != 0) {
            s_http_error(c, e.status, e.code, e.message);
            return 0;
        }
        /* The page is public (it holds no data): it asks for the key itself. */
        if (c->route.id != ROUTE_HEALTH && c->route.id != ROUTE_UI && !s_authorized(wsi)) {
            s_http_error(c, 401, "unauthorized", "Authorization: Bearer <key> is required");
            return 0;
        }
        char clen[32] = "";
        lws_hdr_copy(wsi, clen, sizeof clen, WSI_TOKEN_HTTP_CONTENT_LENGTH);
        if (c->post && atol(clen) > s_self->cfg.max_body) {
            s_http_error(c, 413, "too_large", "the body is over the maximum size");
            return 0;
        }
        if (!c->post || atol(clen) == 0)
            s_dispatch(c); /* no body to wait for */
        return 0;
    }
    case LWS_CALLBACK_HTTP_BODY:
        if (!c->responding && sbuf_cat(&c->body, in, len) != 0)
            c->body_too_large = 1;
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (c->responding)
            return 0;
        if (c->body_too_large)
            s_http_error(c, 413, "too_large", "the body is over the maximum size");
        else
            s_dispatch(c);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return s_http_writeable(c);
    case LWS_CALLBACK_HTTP_BIND_PROTOCOL:
        s_self->http_conns++;
        return 0;
    case LWS_CALLBACK_CLOSED_HTTP:
        if (s_self->http_conns > 0)
            s_self->http_conns--;
        if (c)
            s_conn_cleanup(c);
        return 0;
    case LWS_CALLBACK_ESTABLISHED: {
        char uri[64] = "";
        lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI);
        if (strcmp(uri, "/ws") != 0)
            return -1;
        memset(c, 0, sizeof *c);
        c->wsi = wsi;
        c->is_ws = 1;
        outq_init(&c->q, (size_t)s_self->cfg.max_outq, LWS_PRE);
        c->runs = zhashx_new();
        zhashx_set_destructor(c->runs, s_free_item);
        sbuf_init(&c->frag, (size_t)s_self->cfg.max_ws_message);
        s_self->ws_conns++;
        s_self->m.ws_connections++;
        return 0;
    }
    case LWS_CALLBACK_RECEIVE:
        return s_ws_receive(c, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return s_ws_writeable(c);
    case LWS_CALLBACK_CLOSED:
        if (s_self->ws_conns > 0)
            s_self->ws_conns--;
        s_conn_cleanup(c);
        return 0;
    case LWS_CALLBACK_RAW_RX_FILE:
        s_pump();
        return 0;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        return 0;
    default:
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

/* Every callback may send to the broker (a request, a cancel); a send can
 * take the edge of the DEALER's fd, so what it hid is drained before lws
 * waits on that fd again (a flag test when nothing was sent). */
static int s_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len)
{
    int rc = s_handle(wsi, reason, user, in, len);
    if (s_self && s_self->ready && worker_readable(s_self->worker))
        s_pump();
    return rc;
}

static struct lws_protocols s_protocols[] = {
    {"map", s_callback, sizeof(conn_t), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* The timer: heartbeats, request deadlines, the stop flag. */
static void s_tick(lws_sorted_usec_list_t *sul)
{
    (void)sul;
    s_pump();
    int64_t now = clock_mono_ms();
    size_t pos = 0;
    uint64_t key;
    void *value;
    pending_t *expired[64];
    size_t n = 0;
    while (n < 64 && hmap_next(s_self->pending, &pos, &key, &value) == 0) {
        pending_t *p = value;
        if (p->deadline && now >= p->deadline)
            expired[n++] = p;
    }
    for (size_t i = 0; i < n; i++) {
        pending_t *p = expired[i];
        worker_cancel(s_self->worker, p->req);
        s_on_error(s_self->worker, p->req, "timeout", "no answer in time", s_self);
    }
    s_rewatch(now);
    if (*s_self->stop)
        lws_cancel_service(s_self->ctx);
    else
        lws_sul_schedule(s_self->ctx, 0, &s_self->sul, s_tick, S_TICK_US);
}

/* ---- lifecycle ------------------------------------------------------------- */

edge_t *edge_new(const edge_config_t *cfg, char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(cfg->http_addr, ':');
    long port = 0;
    if (!colon || colon == cfg->http_addr || (size_t)(colon - cfg->http_addr) >= sizeof host ||
        (port = strtol(colon + 1, NULL, 10)) <= 0 || port > 65535) {
        snprintf(err, errlen, "--http-addr '%s' is not host:port", cfg->http_addr);
        return NULL;
    }
    memcpy(host, cfg->http_addr, (size_t)(colon - cfg->http_addr));
    host[colon - cfg->http_addr] = '\0';
    int loopback = !strcmp(host, "127.0.0.1") || !strcmp(host, "localhost") ||
                   !strcmp(host, "::1") || !strncmp(host, "127.", 4);
    if (!loopback && !(cfg->api_key && *cfg->api_key) && !cfg->allow_remote) {
        snprintf(err, errlen,
                 "refusing to listen on '%s' without an API key; set MAP_API_KEY or --allow-remote",
                 cfg->http_addr);
        return NULL;
    }
    edge_t *self = mem_alloc(sizeof *self);
    self->cfg = *cfg;
    s_self = self;
    worker_handlers_t h = {.on_stream = s_on_stream, .on_reply = s_on_reply,
                           .on_error = s_on_error, .on_link = s_on_link};
    worker_config_t wc = {.endpoint = cfg->broker, .service = "ingress", .capacity = 0,
                          .heartbeat_ms = cfg->heartbeat_ms};
    self->worker = worker_new(&wc, &h, self, err, errlen);
    if (!self->worker) {
        mem_free(self);
        return NULL;
    }
    static lws_retry_bo_t retry;
    retry.secs_since_valid_ping = (uint16_t)cfg->ws_ping_secs;
    retry.secs_since_valid_hangup = (uint16_t)(cfg->ws_ping_secs * 2 + 5);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = (int)port;
    info.iface = host;
    info.protocols = s_protocols;
    info.retry_and_idle_policy = &retry;
    info.timeout_secs = 30;
    lws_set_log_level(LLL_ERR, NULL);
    self->ctx = lws_create_context(&info);
    if (!self->ctx) {
        snprintf(err, errlen, "cannot listen on '%s' (address in use or not local?)", cfg->http_addr);
        worker_destroy(&self->worker);
        mem_free(self);
        return NULL;
    }
    self->vhost = lws_get_vhost_by_name(self->ctx, "default");
    lws_sock_file_fd_type fd;
    fd.filefd = dup(worker_fd(self->worker)); /* lws closes what it adopts */
    if (!self->vhost ||
        !lws_adopt_descriptor_vhost(self->vhost, LWS_ADOPT_RAW_FILE_DESC, fd, "map", NULL)) {
        snprintf(err, errlen, "cannot watch the broker connection");
        lws_context_destroy(self->ctx);
        worker_destroy(&self->worker);
        mem_free(self);
        return NULL;
    }
    self->pending = hmap_new(1000000);
    self->rewatch_ms = S_REWATCH_MIN_MS;
    self->sessions = zhashx_new();
    mp_buf_init(&self->mp, (size_t)cfg->max_body + 4096);
    self->ready = 1;
    return self;
}

int edge_run(edge_t *self, volatile sig_atomic_t *stop)
{
    self->stop = stop;
    lws_sul_schedule(self->ctx, 0, &self->sul, s_tick, S_TICK_US);
    while (!*stop) {
        if (lws_service(self->ctx, 0) < 0)
            break;
    }
    return 0;
}

void edge_destroy(edge_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    edge_t *self = *self_p;
    lws_context_destroy(self->ctx); /* closes every connection (cleanup runs) */
    size_t pos = 0;
    uint64_t key;
    void *value;
    while (hmap_next(self->pending, &pos, &key, &value) == 0)
        mem_free(value); /* watches: their sessions went with the sockets */
    hmap_destroy(&self->pending);
    for (session_t *s = zhashx_first(self->sessions); s; s = zhashx_next(self->sessions))
        mem_free(s);
    zhashx_destroy(&self->sessions);
    worker_destroy(&self->worker);
    mp_buf_free(&self->mp);
    mem_free(self);
    *self_p = NULL;
    s_self = NULL;
}
