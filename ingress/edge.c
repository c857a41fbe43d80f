/* edge: the lws context, the callback switch, the broker link, lifecycle.
 *
 * The modules do the work without lws (http.c, ws.c, sessions.c,
 * pending.c, policy.c, metrics.c: each has a unit test); this file turns
 * lws callbacks into their calls, implements io.h for them, and writes
 * what they queued (below: when).
 *
 * Connections: an econn_t (the modules' conn_t and what this file keeps
 * beside it) hangs on the wsi's opaque user data, made at the first
 * callback that shows a client socket, freed at WSI_DESTROY (lws frees its
 * own per-protocol user memory at every HTTP keep-alive turn).
 * The edge reaches itself through the context's user pointer: no global.
 *
 * The loop is libuv's (epoll), ours, lent to lws as a foreign loop: a
 * wake-up costs what is ready, not the number of sockets. The broker link
 * (a worker_t requester) is watched in it with a uv_poll on ZMQ_FD; what a
 * send may hide from that edge-triggered fd is drained after every
 * callback (worker_readable).
 *
 * No per-connection lws timer on a WebSocket (keepalive.c): lws keeps its timers in one
 * sorted list (an insertion walks it, O(connections)), and its keep-alive
 * re-arms one per received frame. Ours are two lists in time order, O(1)
 * each step: `idle` (sockets by when they were last heard from) and
 * `pinged` (by when their ping went). Every frame moves a socket to the
 * tail of idle; the tick pings the heads idle for ws_ping_secs and cuts
 * those pinged ws_ping_secs + 5 s ago without an answer (as lws's
 * retry policy did: hang-up at 2 * ping + 5 s of silence).
 *
 * Writes: every frame queued for a WebSocket goes out in one write (the
 * frames' headers built here: a server's frames are not masked, and no
 * extension is offered), bounded by S_BATCH_MAX bytes. A WebSocket woken
 * (io_wake) joins the `dirty` list, written once the DEALER is drained or
 * the callback is over: all that one drain queued for it in one write,
 * and no writable request in the common case (on libuv each costs epoll_ctl
 * calls, and a wake-up). A socket lws still holds bytes for (a partial
 * send), or with a ping or close due, waits for WRITEABLE instead. */
#include "edge.h"

#include "answers.h"
#include "http.h"
#include "hub.h"
#include "keepalive.h"
#include "lwshttp.h"
#include "sessions.h"
#include "ssefeed.h"
#include "ws.h"
#include "wsframe.h"
#include "worker/worker.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/mem.h"
#include "proto/frame.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#define S_TICK_US (100 * 1000) /* timer: heartbeats, request deadlines, re-watch, stop */
#define S_PINGS_PER_TICK 1000  /* a burst of sockets gets its pings spread over ticks */
#define S_BATCH_MAX (256 * 1024) /* bytes of frames written at once */
/* lws's receive buffer per WebSocket (its default: 4 KB each, most of an
 * idle socket's memory). A larger message arrives in more RECEIVE
 * callbacks, reassembled by ws.c either way. lws caps each send at the
 * protocol's tx_packet_size, else at this: the protocol sets that to a
 * batch (lws's default had cut every write at 4 KB). */
#define S_RX_BUFFER 128

/* What edge.c keeps of a connection besides the modules' conn_t: the
 * wsi's opaque user data. */
typedef struct {
    conn_t *c;
    ka_node_t ka;     /* keep-alive (WebSockets only) */
    int ping_due;     /* a ping is to be written */
    int close_sent;   /* our close frame is written: nothing more */
    lws_dll2_t dirty; /* on edge's dirty: frames to write */
} econn_t;

struct io_t {
    edge_t *edge;
};

struct edge_t {
    hub_t hub;
    io_t io;
    struct lws_context *ctx;
    struct lws_vhost *vhost;
    worker_t *worker;
    lws_sorted_usec_list_t sul;
    uv_loop_t loop;
    uv_poll_t zpoll;         /* the DEALER's ZMQ_FD */
    int zpoll_on;
    ka_t ka;                 /* WebSockets' pings and hang-ups */
    lws_dll2_owner_t dirty;  /* WebSockets with frames to write now */
    int flushing;
    unsigned char *batch;    /* LWS_PRE + frames: one write */
    volatile sig_atomic_t *stop;
    int ready;               /* edge_new is done: callbacks may pump the DEALER */
    uint64_t next_conn;
};

/* ---- io.h for the modules ------------------------------------------------ */

void io_wake(io_t *io, conn_t *c)
{
    edge_t *self = io->edge;
    econn_t *e = c->is_ws ? lws_get_opaque_user_data(c->wsi) : NULL;
    if (!e || !self->ready) {
        lws_callback_on_writable(c->wsi);
        return;
    }
    if (lws_dll2_is_detached(&e->dirty))
        lws_dll2_add_tail(&e->dirty, &self->dirty);
}

void io_kill(io_t *io, conn_t *c)
{
    (void)io;
    lws_callback_on_writable(c->wsi);
    /* A client that reads nothing never becomes writable: cut it anyway. */
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, 2);
}

uint64_t io_request(io_t *io, const void *body, size_t len)
{
    return worker_request(io->edge->worker, "orchestrator", body, len);
}

void io_cancel(io_t *io, uint64_t req)
{
    worker_cancel(io->edge->worker, req);
}

int io_linked(io_t *io)
{
    return worker_linked(io->edge->worker);
}

int64_t io_now_ms(io_t *io)
{
    (void)io;
    return clock_mono_ms();
}

/* ---- answers from the orchestrator --------------------------------------- */

static void s_on_stream(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    (void)w;
    answers_stream(&((edge_t *)arg)->hub, req, body, len);
}

static void s_on_reply(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    (void)w;
    answers_reply(&((edge_t *)arg)->hub, req, body, len);
}

static void s_on_error(worker_t *w, uint64_t req, const char *code, const char *message, void *arg)
{
    (void)w;
    answers_error(&((edge_t *)arg)->hub, req, code, message);
}

static void s_on_link(worker_t *w, int up, void *arg)
{
    (void)w;
    edge_t *self = arg;
    LOGI(up ? "broker.up" : "broker.lost", "endpoint=%s", self->hub.cfg.broker);
    if (up && self->ready)
        sessions_link_up(self->hub.sessions);
}

/* Drains the DEALER; lws then waits on its fd, so what a send may have
 * hidden from the fd (worker_readable) is drained too. */
static void s_pump(edge_t *self)
{
    while (worker_process(self->worker) > 0 || worker_readable(self->worker)) {
    }
}

/* ---- writes ---------------------------------------------------------------- */

/* The frames at the head of c's queue: those that fit in one batch as one
 * write, or a head larger than a batch alone (lws frames it). Returns
 * lws_write's result. */
static int s_ws_send(edge_t *self, conn_t *c)
{
    size_t n = wsframe_pack(&c->q, self->batch + LWS_PRE, S_BATCH_MAX);
    if (n)
        return lws_write(c->wsi, self->batch + LWS_PRE, n, LWS_WRITE_RAW);
    outq_msg_t *o = outq_take(&c->q);
    int rc = lws_write(c->wsi, outq_data(&c->q, o), o->len, LWS_WRITE_TEXT);
    outq_msg_free(o);
    return rc;
}

/* The close frame (code, reason) written by us: on lws's libuv loop a
 * callback's -1 after lws_close_reason cut the socket without it. The
 * client answers with its close and lws ends the socket; one that does
 * not is cut by io_kill's timeout. */
static int s_ws_close(econn_t *e)
{
    conn_t *c = e->c;
    unsigned char buf[LWS_PRE + 2 + WSFRAME_CLOSE_MAX];
    size_t n = wsframe_close(buf + LWS_PRE, (unsigned)c->close_code, c->close_reason);
    e->close_sent = 1;
    return lws_write(c->wsi, buf + LWS_PRE, n, LWS_WRITE_RAW) < 0 ? -1 : 0;
}

static int s_ws_writeable(edge_t *self, econn_t *e)
{
    conn_t *c = e->c;
    if (e->close_sent)
        return 0;
    if (c->closing && !c->q.head)
        return s_ws_close(e);
    int rc;
    if (e->ping_due) {
        unsigned char ping[LWS_PRE + 1];
        e->ping_due = 0;
        rc = lws_write(c->wsi, ping + LWS_PRE, 0, LWS_WRITE_PING);
    } else if (!c->q.head) {
        return 0;
    } else {
        rc = s_ws_send(self, c);
    }
    if (rc < 0)
        return -1;
    if (c->q.head || c->closing)
        lws_callback_on_writable(c->wsi);
    sessions_drained(self->hub.sessions, c);
    return 0;
}

/* Writes the dirty WebSockets' frames (a bounded number of turns: what
 * is left waits for the next flush). */
static void s_flush(edge_t *self)
{
    if (self->flushing)
        return;
    self->flushing = 1;
    lws_dll2_t *d;
    for (int turns = 0; turns < 65536 && (d = lws_dll2_get_head(&self->dirty)); turns++) {
        econn_t *e = lws_container_of(d, econn_t, dirty);
        conn_t *c = e->c;
        lws_dll2_remove(&e->dirty);
        if (e->close_sent || !c->q.head)
            continue;
        if (c->closing || e->ping_due || lws_partial_buffered(c->wsi)) {
            lws_callback_on_writable(c->wsi);
            continue;
        }
        if (s_ws_send(self, c) < 0) { /* the socket is gone: lws closes it */
            lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
            continue;
        }
        if (c->q.head)
            lws_callback_on_writable(c->wsi);
        sessions_drained(self->hub.sessions, c);
    }
    self->flushing = 0;
}

/* ---- keep-alive (keepalive.c) ------------------------------------------------ */

static void s_ka_ping(void *arg, ka_node_t *n)
{
    (void)arg;
    econn_t *e = lws_container_of(n, econn_t, ka);
    e->ping_due = 1;
    lws_callback_on_writable(e->c->wsi);
}

static void s_ka_cut(void *arg, ka_node_t *n)
{
    (void)arg;
    econn_t *e = lws_container_of(n, econn_t, ka);
    lws_set_timeout(e->c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* ---- the lws callback -------------------------------------------------------- */

static econn_t *s_conn(edge_t *self, struct lws *wsi)
{
    econn_t *e = lws_get_opaque_user_data(wsi);
    if (!e) {
        e = mem_alloc(sizeof *e);
        e->c = conn_new(++self->next_conn, wsi, (size_t)self->hub.cfg.max_outq, LWS_PRE);
        lws_set_opaque_user_data(wsi, e);
        self->hub.http_conns++;
    }
    return e;
}

static void s_conn_gone(edge_t *self, struct lws *wsi)
{
    econn_t *e = lws_get_opaque_user_data(wsi);
    if (!e)
        return;
    lws_set_opaque_user_data(wsi, NULL);
    ka_forget(&e->ka);
    lws_dll2_remove(&e->dirty);
    conn_t *c = e->c;
    mem_free(e);
    hub_drop_requests(&self->hub, c);
    sessions_leave(self->hub.sessions, c);
    if (c->is_ws)
        self->hub.ws_conns--;
    else
        self->hub.http_conns--;
    conn_destroy(&c);
}

static int s_handle(edge_t *self, struct lws *wsi, enum lws_callback_reasons reason, void *in,
                    size_t len)
{
    econn_t *e = lws_get_opaque_user_data(wsi);
    conn_t *c = e ? e->c : NULL;
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        lwshttp_req_t r;
        lwshttp_read(wsi, in, &r);
        c = s_conn(self, wsi)->c;
        http_begin(&self->hub, c, &r.head);
        if (c->http.send_continue) {
            c->http.send_continue = 0;
            lwshttp_continue(wsi);
        }
        return 0;
    }
    case LWS_CALLBACK_HTTP_BODY:
        return c && len ? http_body(&self->hub, c, in, len) : 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (c)
            http_body_done(&self->hub, c);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return c ? lwshttp_writeable(&self->hub, c) : 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
        int forbidden;
        int rc = lwshttp_confirm_upgrade(wsi, &self->hub.policy, &forbidden);
        self->hub.m.forbidden += (uint64_t)forbidden;
        return rc;
    }
    case LWS_CALLBACK_ESTABLISHED:
        e = s_conn(self, wsi);
        c = e->c;
        ka_heard(&self->ka, &e->ka, clock_mono_ms());
        hub_drop_requests(&self->hub, c);
        self->hub.http_conns--;
        self->hub.ws_conns++;
        ws_open(&self->hub, c);
        return 0;
    case LWS_CALLBACK_RECEIVE_PONG:
        if (e)
            ka_heard(&self->ka, &e->ka, clock_mono_ms());
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (!c)
            return 0;
        ka_heard(&self->ka, &e->ka, clock_mono_ms());
        ws_receive(&self->hub, c, in, len, lws_is_first_fragment(wsi),
                       lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi),
                       lws_frame_is_binary(wsi));
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return e ? s_ws_writeable(self, e) : 0;
    case LWS_CALLBACK_WSI_DESTROY:
        s_conn_gone(self, wsi);
        return 0;
    default:
        return 0;
    }
}

/* Every callback may send to the broker (a request, a cancel); a send can
 * take the edge of the DEALER's fd, so what it hid is drained before lws
 * waits on that fd again (a flag test when nothing was sent). */
static int s_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len)
{
    (void)user;
    struct lws_context *ctx = lws_get_context(wsi);
    edge_t *self = ctx ? lws_context_user(ctx) : NULL;
    if (!self)
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    int rc = s_handle(self, wsi, reason, in, len);
    if (self->ready && worker_readable(self->worker))
        s_pump(self);
    if (self->ready)
        s_flush(self);
    return rc;
}

static struct lws_protocols s_protocols[] = {
    {"map", s_callback, 0, S_RX_BUFFER, 0, NULL, S_BATCH_MAX},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* The timer: heartbeats, request deadlines, re-watch, the stop flag. */
static void s_tick(lws_sorted_usec_list_t *sul)
{
    edge_t *self = lws_container_of(sul, edge_t, sul);
    s_pump(self);
    int64_t now = clock_mono_ms();
    pending_t *expired[64];
    size_t n = pending_expired(self->hub.pending, now, expired, 64);
    for (size_t i = 0; i < n; i++) {
        uint64_t req = expired[i]->req;
        worker_cancel(self->worker, req);
        answers_error(&self->hub, req, "timeout", "no answer in time");
    }
    sessions_tick(self->hub.sessions, now);
    s_flush(self);
    ka_tick(&self->ka, now, S_PINGS_PER_TICK, s_ka_ping, s_ka_cut, self);
    if (*self->stop)
        uv_stop(&self->loop);
    else
        lws_sul_schedule(self->ctx, 0, &self->sul, s_tick, S_TICK_US);
}

/* The DEALER's fd is readable: drain it. */
static void s_on_zmq(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    edge_t *self = h->data;
    if (self->ready) {
        s_pump(self);
        s_flush(self);
    }
}

/* With a foreign loop lws's destruction is in steps that complete as its
 * handles close in the loop; self->ctx is NULL when it is all done
 * (info.pcontext). Then the loop itself closes. */
static void s_loop_close(edge_t *self)
{
    for (int i = 0; i < 8 && self->ctx; i++) {
        lws_context_destroy(self->ctx);
        for (int k = 0; k < 1000 && self->ctx && uv_run(&self->loop, UV_RUN_NOWAIT); k++) {
        }
    }
    if (self->zpoll_on) {
        uv_poll_stop(&self->zpoll);
        uv_close((uv_handle_t *)&self->zpoll, NULL);
        self->zpoll_on = 0;
    }
    for (int i = 0; i < 1000 && uv_run(&self->loop, UV_RUN_NOWAIT); i++) {
    }
    if (uv_loop_close(&self->loop) != 0)
        LOGW("edge.loop", "handles still open at exit");
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
                   !strcmp(host, "::1") || !strcmp(host, "[::1]") || !strncmp(host, "127.", 4);
    if (!loopback && !(cfg->api_key && *cfg->api_key) && !cfg->allow_remote) {
        snprintf(err, errlen,
                 "refusing to listen on '%s' without an API key; set MAP_API_KEY or --allow-remote",
                 cfg->http_addr);
        return NULL;
    }
    edge_t *self = mem_alloc(sizeof *self);
    hub_t *h = &self->hub;
    h->cfg = *cfg;
    if (h->cfg.max_requests_per_conn <= 0)
        h->cfg.max_requests_per_conn = 256;
    if (policy_init(&h->policy, cfg->allowed_origins, host, cfg->api_key, cfg->allow_remote, err,
                    errlen) != 0) {
        mem_free(self);
        return NULL;
    }
    self->io.edge = self;
    h->io = &self->io;
    worker_handlers_t wh = {.on_stream = s_on_stream, .on_reply = s_on_reply,
                            .on_error = s_on_error, .on_link = s_on_link};
    worker_config_t wc = {.endpoint = cfg->broker, .service = "ingress", .capacity = 0,
                          .heartbeat_ms = cfg->heartbeat_ms};
    self->worker = worker_new(&wc, &wh, self, err, errlen);
    if (!self->worker) {
        mem_free(self);
        return NULL;
    }
    h->pending = pending_new(1000000, (size_t)h->cfg.max_requests_per_conn);
    h->sessions = sessions_new(h);
    /* A request to the orchestrator is one frame: past it, 413 at the edge. */
    mp_buf_init(&h->mp, FRAME_BODY_MAX_DEFAULT);
    /* hang-up at 2 * ping + 5 s of silence, as lws's retry policy had it */
    ka_init(&self->ka, (int64_t)cfg->ws_ping_secs * 1000, ((int64_t)cfg->ws_ping_secs + 5) * 1000);
    self->batch = mem_alloc(LWS_PRE + S_BATCH_MAX);
    /* No lws keep-alive (one sorted timer per socket): ours (keepalive.c). */
    static const lws_retry_bo_t no_validity = {.secs_since_valid_ping = 0,
                                               .secs_since_valid_hangup = 0};
    if (uv_loop_init(&self->loop) != 0) {
        snprintf(err, errlen, "cannot make an event loop");
        goto fail_loop;
    }
    void *loops[1] = {&self->loop};
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = (int)port;
    info.iface = host[0] == '[' ? NULL : host;
    info.protocols = s_protocols;
    info.retry_and_idle_policy = &no_validity;
    info.timeout_secs = 30;
    info.user = self;
    info.options = LWS_SERVER_OPTION_LIBUV;
    info.foreign_loops = loops;
    info.pcontext = &self->ctx;
    lws_set_log_level(LLL_ERR, NULL);
    self->ctx = lws_create_context(&info);
    if (!self->ctx) {
        snprintf(err, errlen, "cannot listen on '%s' (address in use or not local?)", cfg->http_addr);
        goto fail;
    }
    self->vhost = lws_get_vhost_by_name(self->ctx, "default");
    self->zpoll.data = self;
    if (!self->vhost || uv_poll_init(&self->loop, &self->zpoll, worker_fd(self->worker)) != 0) {
        snprintf(err, errlen, "cannot watch the broker connection");
        goto fail;
    }
    self->zpoll_on = 1;
    if (uv_poll_start(&self->zpoll, UV_READABLE, s_on_zmq) != 0) {
        snprintf(err, errlen, "cannot watch the broker connection");
        goto fail;
    }
    self->ready = 1;
    return self;
fail:
    s_loop_close(self);
fail_loop:
    mem_free(self->batch);
    sessions_destroy(&h->sessions);
    pending_destroy(&h->pending);
    mp_buf_free(&h->mp);
    worker_destroy(&self->worker);
    mem_free(self);
    return NULL;
}

int edge_run(edge_t *self, volatile sig_atomic_t *stop)
{
    self->stop = stop;
    lws_sul_schedule(self->ctx, 0, &self->sul, s_tick, S_TICK_US);
    uv_run(&self->loop, UV_RUN_DEFAULT); /* until the tick sees the stop flag */
    return 0;
}

void edge_destroy(edge_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    edge_t *self = *self_p;
    self->ready = 0;
    lws_sul_cancel(&self->sul);
    s_loop_close(self); /* closes every connection (WSI_DESTROY frees them) */
    mem_free(self->batch);
    pending_destroy(&self->hub.pending); /* watches: their sessions went with the sockets */
    sessions_destroy(&self->hub.sessions);
    worker_destroy(&self->worker);
    mp_buf_free(&self->hub.mp);
    mem_free(self);
    *self_p = NULL;
}
