/* edge: the lws context, the callback switch, the broker link, lifecycle.
 *
 * The modules do the work without lws (http.c, ws.c, sessions.c,
 * pending.c, policy.c, metrics.c: each has a unit test); this file turns
 * lws callbacks into their calls, implements io.h for them, and writes
 * what they queued, only from WRITEABLE callbacks.
 *
 * Connections: our conn_t hangs on the wsi's opaque user data, made at the
 * first callback that shows a client socket, freed at WSI_DESTROY (lws
 * frees its own per-protocol user memory at every HTTP keep-alive turn).
 * The edge reaches itself through the context's user pointer: no global.
 *
 * The broker link (a worker_t requester) is adopted as a raw fd; what a
 * send may hide from that edge-triggered fd is drained after every
 * callback (worker_readable). */
#include "edge.h"

#include "http.h"
#include "hub.h"
#include "lwshttp.h"
#include "sessions.h"
#include "ssefeed.h"
#include "ws.h"
#include "worker/worker.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/mem.h"
#include "proto/frame.h"

#include <libwebsockets.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define S_TICK_US (100 * 1000) /* timer: heartbeats, request deadlines, re-watch, stop */

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
    volatile sig_atomic_t *stop;
    int ready;               /* edge_new is done: callbacks may pump the DEALER */
    uint64_t next_conn;
};

/* ---- io.h for the modules ------------------------------------------------ */

void io_wake(io_t *io, conn_t *c)
{
    (void)io;
    lws_callback_on_writable(c->wsi);
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
    edge_t *self = arg;
    pending_t *p = pending_get(self->hub.pending, req);
    orch_stream_t ev;
    if (!p || orch_decode_stream(body, len, &ev) != AGENT_OK)
        return;
    if (p->kind == P_WATCH)
        sessions_on_watch(self->hub.sessions, p, &ev);
    else if (p->kind == P_HTTP)
        http_on_stream(&self->hub, p, &ev);
    else
        ws_on_stream(&self->hub, p, &ev); /* may free p */
}

/* A fill's answer is handled after its request is gone: it may ask again. */
static void s_fill_answer(edge_t *self, pending_t *p, unsigned status, const char *json,
                          size_t len)
{
    conn_t *c = p->conn;
    pending_kind_t kind = p->kind;
    char run_id[sizeof p->run_id];
    memcpy(run_id, p->run_id, sizeof run_id);
    pending_free(self->hub.pending, p);
    if (kind == P_HTTP_FILL)
        ssefeed_on_fill(&self->hub, c, status, json, len);
    else
        sessions_on_fill(self->hub.sessions, c, run_id, status, json, len);
}

static void s_on_reply(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    (void)w;
    edge_t *self = arg;
    pending_t *p = pending_get(self->hub.pending, req);
    if (!p)
        return;
    hub_reply_t r;
    hub_decode_reply(body, len, &r);
    switch (p->kind) {
    case P_HTTP:
    case P_HEALTH:
    case P_METRICS:
        http_on_reply(&self->hub, p, &r);
        break;
    case P_WATCH:
        sessions_watch_ended(self->hub.sessions, p);
        break;
    case P_WS_FILL:
    case P_HTTP_FILL:
        s_fill_answer(self, p, r.status, r.json, r.json_len);
        return;
    default:
        ws_on_reply(&self->hub, p, &r);
        break;
    }
    pending_free(self->hub.pending, p);
}

static void s_on_error(worker_t *w, uint64_t req, const char *code, const char *message, void *arg)
{
    (void)w;
    edge_t *self = arg;
    pending_t *p = pending_get(self->hub.pending, req);
    if (!p)
        return;
    switch (p->kind) {
    case P_HTTP:
    case P_HEALTH:
    case P_METRICS:
        http_on_error(&self->hub, p, code, message);
        break;
    case P_WATCH:
        sessions_watch_ended(self->hub.sessions, p);
        break;
    case P_WS_FILL:
    case P_HTTP_FILL:
        s_fill_answer(self, p, 0, NULL, 0);
        return;
    default:
        ws_on_error(&self->hub, p, code, message);
        break;
    }
    pending_free(self->hub.pending, p);
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

static int s_http_writeable(edge_t *self, conn_t *c)
{
    struct lws *wsi = c->wsi;
    http_txn_t *t = &c->http;
    if (c->closing)
        return -1; /* too slow a reader: cut */
    if (t->state != HTTP_RESPOND)
        return 0;
    if (!t->headers_sent) {
        if (lwshttp_headers(wsi, t, c->q.bytes))
            return -1;
        t->headers_sent = 1;
        if (t->sse) /* a stream lasts as long as its run: no idle timeout */
            lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
        if (t->head_only) /* the body is not sent (RFC 9110 §9.3.2) */
            outq_clear(&c->q);
        lws_callback_on_writable(wsi);
        return 0;
    }
    ssefeed_drained(&self->hub, c); /* a stream behind asks for its next page */
    outq_msg_t *o = outq_take(&c->q);
    if (o) {
        int last = !c->q.head && t->finish;
        int rc = lws_write(wsi, outq_data(&c->q, o), o->len, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
        outq_msg_free(o);
        if (rc < 0)
            return -1;
        if (!last) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    } else if (!t->finish) {
        return 0; /* more will come */
    }
    if (!http_done(&self->hub, c))
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int s_ws_writeable(edge_t *self, conn_t *c)
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
    sessions_drained(self->hub.sessions, c);
    return 0;
}

/* ---- the lws callback -------------------------------------------------------- */

static conn_t *s_conn(edge_t *self, struct lws *wsi)
{
    conn_t *c = lws_get_opaque_user_data(wsi);
    if (!c) {
        c = conn_new(++self->next_conn, wsi, (size_t)self->hub.cfg.max_outq, LWS_PRE);
        lws_set_opaque_user_data(wsi, c);
        self->hub.http_conns++;
    }
    return c;
}

static void s_conn_gone(edge_t *self, struct lws *wsi)
{
    conn_t *c = lws_get_opaque_user_data(wsi);
    if (!c)
        return;
    lws_set_opaque_user_data(wsi, NULL);
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
    conn_t *c = lws_get_opaque_user_data(wsi);
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        lwshttp_req_t r;
        lwshttp_read(wsi, in, &r);
        c = s_conn(self, wsi);
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
        return c ? s_http_writeable(self, c) : 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
        int forbidden;
        int rc = lwshttp_confirm_upgrade(wsi, &self->hub.policy, &forbidden);
        self->hub.m.forbidden += (uint64_t)forbidden;
        return rc;
    }
    case LWS_CALLBACK_ESTABLISHED:
        c = s_conn(self, wsi);
        hub_drop_requests(&self->hub, c);
        self->hub.http_conns--;
        self->hub.ws_conns++;
        ws_open(&self->hub, c);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        if (c)
            ws_receive(&self->hub, c, in, len, lws_is_first_fragment(wsi),
                       lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi),
                       lws_frame_is_binary(wsi));
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return c ? s_ws_writeable(self, c) : 0;
    case LWS_CALLBACK_WSI_DESTROY:
        s_conn_gone(self, wsi);
        return 0;
    case LWS_CALLBACK_RAW_RX_FILE:
        s_pump(self);
        return 0;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
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
    return rc;
}

static struct lws_protocols s_protocols[] = {
    {"map", s_callback, 0, 0, 0, NULL, 0},
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
        s_on_error(self->worker, req, "timeout", "no answer in time", self);
    }
    sessions_tick(self->hub.sessions, now);
    if (*self->stop)
        lws_cancel_service(self->ctx);
    else
        lws_sul_schedule(self->ctx, 0, &self->sul, s_tick, S_TICK_US);
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
    static lws_retry_bo_t retry;
    retry.secs_since_valid_ping = (uint16_t)cfg->ws_ping_secs;
    retry.secs_since_valid_hangup = (uint16_t)(cfg->ws_ping_secs * 2 + 5);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = (int)port;
    info.iface = host[0] == '[' ? NULL : host;
    info.protocols = s_protocols;
    info.retry_and_idle_policy = &retry;
    info.timeout_secs = 30;
    info.user = self;
    lws_set_log_level(LLL_ERR, NULL);
    self->ctx = lws_create_context(&info);
    if (!self->ctx) {
        snprintf(err, errlen, "cannot listen on '%s' (address in use or not local?)", cfg->http_addr);
        goto fail;
    }
    self->vhost = lws_get_vhost_by_name(self->ctx, "default");
    lws_sock_file_fd_type fd;
    fd.filefd = dup(worker_fd(self->worker)); /* lws closes what it adopts */
    if (!self->vhost ||
        !lws_adopt_descriptor_vhost(self->vhost, LWS_ADOPT_RAW_FILE_DESC, fd, "map", NULL)) {
        snprintf(err, errlen, "cannot watch the broker connection");
        goto fail;
    }
    self->ready = 1;
    return self;
fail:
    if (self->ctx)
        lws_context_destroy(self->ctx);
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
    self->ready = 0;
    lws_context_destroy(self->ctx); /* closes every connection (WSI_DESTROY frees them) */
    pending_destroy(&self->hub.pending); /* watches: their sessions went with the sockets */
    sessions_destroy(&self->hub.sessions);
    worker_destroy(&self->worker);
    mp_buf_free(&self->hub.mp);
    mem_free(self);
    *self_p = NULL;
}
