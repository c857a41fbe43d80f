/* bridge: libcurl multi + the worker library in one loop.
 *
 * Each invoke is one xfer_t: an easy handle, its relay (the state machine,
 * relay.h) and its idle deadline. The loop, one thread:
 *
 *   worker_process until 0        (ZMQ_FD is edge-triggered: drain, and
 *                                  drain again after every turn that sent)
 *   expire idle transfers         (after the drain, so that invokes it just
 *                                  started count for the wait)
 *   curl_multi_poll(worker fd)    until the nearest of: curl's timeout, the
 *                                  worker's heartbeat, an xfer's deadline
 *   curl_multi_perform            (header/write callbacks feed the relays,
 *                                  whose deltas and replies go to the outbox)
 *   reap finished transfers, send the outbox (see "the outbox" below)
 *
 * Ownership: the bridge owns every xfer; `live` maps the worker's request id
 * to the xfer until its final answer (done or fail) has been sent. A
 * transfer answered with done stays a little longer, draining the rest of
 * the response (at most DRAIN_MS) so that its keep-alive connection goes
 * back to curl's pool instead of being closed mid-response. A relay that
 * fails inside a curl callback makes the callback return an error, so curl
 * ends the transfer itself; handles are removed only outside callbacks.
 *
 * Idle timeout: our own per-transfer deadline, pushed back by every byte
 * (headers included) while the relay streams, rather than
 * CURLOPT_LOW_SPEED_TIME, whose unit is whole seconds. Sweeping every xfer
 * each turn is O(capacity), a few hundred compares. */
#include "bridge.h"

#include "agents/bridge/relay.h"
#include "worker/worker.h"
#include "common/clock.h"
#include "common/hmap.h"
#include "common/log.h"
#include "common/mem.h"
#include "proto/agent.h"
#include "proto/frame.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DRAIN_MS 1000                  /* reading the tail after done */
#define TIMEOUT_MAX_MS (24L * 3600000) /* cap of an invoke's timeout_ms */
#define BRIDGE_SPARE_MAX 64            /* finished easy handles kept for reuse */

typedef struct xfer_t xfer_t;

struct xfer_t {
    bridge_t *bridge;      /* owner */
    uint64_t id;           /* worker request id */
    int live;              /* in bridge->live: no final sent yet */
    int aborted;           /* a frame was lost: curl is to end it */
    CURL *easy;            /* the HTTP transfer */
    relay_t *relay;        /* its state machine */
    char *body;            /* JSON request body (mem_free) */
    long timeout_ms;       /* idle timeout */
    int64_t deadline;      /* monotonic ms: idle or drain deadline */
    int64_t started_us;    /* for the debug log */
    xfer_t *prev, *next;   /* bridge->head list: every xfer */
    char run[AGENT_ID_MAX + 1];        /* run id, for logs */
    char errbuf[CURL_ERROR_SIZE];      /* curl's last error */
};

/* One STREAM or REPLY waiting in the outbox: its body is out.data[off..+len]. */
typedef struct {
    uint64_t id;                   /* worker request id */
    int reply;                     /* 1: REPLY (final), 0: STREAM */
    size_t off, len;               /* body in bridge->out */
} pending_t;

struct bridge_t {
    worker_t *worker;              /* the DEALER to the broker */
    CURLM *multi;                  /* every transfer, one connection pool */
    struct curl_slist *headers;    /* request headers shared by all */
    hmap_t *live;                  /* request id -> xfer_t, until final */
    xfer_t *head;                  /* every xfer */
    long timeout_ms;               /* default idle timeout */
    size_t max_response;           /* largest answer */
    size_t body_max;               /* the worker library's largest body */
    char public_url[RELAY_PUBLIC_URL_MAX]; /* the edge's base, for platform.calls_url */
    int stopping;                  /* refuse new invokes */
    int64_t now;                   /* mono ms, read once per wake-up (curl's
                                      callbacks come by the dozen per turn) */
    mp_buf_t out;                  /* outbox bodies, encoded back to back */
    pending_t *pending;            /* outbox entries, in order */
    CURL *spare[BRIDGE_SPARE_MAX]; /* finished easy handles, for reuse */
    size_t nspare;
    size_t npending, pending_cap;
    bridge_stats_t stats;
};

static void s_xfer_free(xfer_t *x);

/* --- the outbox ----------------------------------------------------------
 *
 * Deltas and replies produced while curl's callbacks run are encoded into
 * one buffer and sent together at the end of the loop turn (or as soon as
 * OUTBOX_FLUSH bytes wait): a burst of zmq_send calls wakes the ZeroMQ I/O
 * thread once instead of once per delta, which bench_bridge measured as the
 * largest cost of the bridge. A fail is rare: the outbox is sent first, so
 * the answers of one invoke keep their order. */

#define OUTBOX_FLUSH (256u * 1024)

static void s_final(xfer_t *x)
{
    if (!x->live)
        return;
    x->live = 0;
    hmap_del(x->bridge->live, x->id);
    x->deadline = x->bridge->now + DRAIN_MS;
}

/* A frame of an invoke could not be sent: the invoke fails with internal
 * (if the library still has it) and its transfer is stopped. */
static void s_lost(bridge_t *b, uint64_t id, int reply)
{
    if (worker_fail(b->worker, id, "internal",
                    reply ? "the bridge could not send the agent's output"
                          : "the bridge could not pass a delta on to the broker") == 0) {
        b->stats.failed++;
        LOGW("bridge.fail", "id=%llu code=internal reason=%s", (unsigned long long)id,
             reply ? "reply_not_sent" : "delta_not_sent");
    }
    xfer_t *x = hmap_get(b->live, id);
    if (x) {
        x->aborted = 1;
        s_final(x);
    }
}

static void s_flush(bridge_t *b)
{
    for (size_t i = 0; i < b->npending; i++) {
        pending_t *p = &b->pending[i];
        const uint8_t *body = b->out.data + p->off;
        int rc = p->reply ? worker_reply(b->worker, p->id, body, p->len)
                          : worker_stream(b->worker, p->id, body, p->len);
        if (rc == 0 && p->reply)
            b->stats.done++;
        else if (rc == 0)
            b->stats.deltas++;
        else
            s_lost(b, p->id, p->reply);
    }
    b->npending = 0;
    mp_buf_reset(&b->out);
}

/* Encodes a delta (reply 0) or a done body (reply 1, with role) into the
 * outbox. Returns 0, or -1 when it does not fit even in an empty outbox. */
static int s_queue(bridge_t *b, uint64_t id, int reply, const char *role, const char *text, size_t len)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        size_t off = b->out.len;
        int rc = reply ? agent_encode_done(&b->out, role, text, len) : agent_encode_delta(&b->out, text, len);
        if (rc == 0 && !b->out.overflow) {
            if (b->npending == b->pending_cap) {
                b->pending_cap = b->pending_cap ? b->pending_cap * 2 : 256;
                b->pending = mem_realloc(b->pending, b->pending_cap * sizeof *b->pending);
            }
            b->pending[b->npending++] = (pending_t){.id = id, .reply = reply, .off = off, .len = b->out.len - off};
            if (b->out.len >= OUTBOX_FLUSH)
                s_flush(b);
            return 0;
        }
        b->out.len = off;
        b->out.overflow = 0;
        s_flush(b);
    }
    return -1;
}

/* --- the relay's sink ---------------------------------------------------- */

static int s_sink_delta(void *arg, const char *text, size_t len)
{
    xfer_t *x = arg;
    if (!x->live)
        return -1;
    return s_queue(x->bridge, x->id, 0, NULL, text, len);
}

static void s_sink_done(void *arg, const char *role, size_t role_len, const char *content, size_t len)
{
    xfer_t *x = arg;
    bridge_t *b = x->bridge;
    if (!x->live)
        return;
    char r[AGENT_ROLE_MAX + 1];
    memcpy(r, role, role_len);
    r[role_len] = '\0';
    if (s_queue(b, x->id, 1, r, content, len) == 0) {
        LOGD("bridge.done", "run=%s id=%llu bytes=%zu us=%lld", x->run, (unsigned long long)x->id, len,
             (long long)(clock_mono_us() - x->started_us));
    } else {
        b->stats.failed++;
        LOGW("bridge.fail", "run=%s id=%llu code=internal reason=reply_too_large bytes=%zu", x->run,
             (unsigned long long)x->id, len);
        worker_fail(b->worker, x->id, "internal", "the agent's output is too large to send");
    }
    s_final(x);
}

static void s_sink_fail(void *arg, const char *code, const char *message)
{
    xfer_t *x = arg;
    bridge_t *b = x->bridge;
    if (!x->live)
        return;
    b->stats.failed++;
    LOGW("bridge.fail", "run=%s id=%llu code=%s message=\"%s\"", x->run, (unsigned long long)x->id, code,
         message);
    s_flush(b);
    worker_fail(b->worker, x->id, code, message);
    s_final(x);
}

static const relay_sink_t s_sink = {s_sink_delta, s_sink_done, s_sink_fail};

/* --- curl callbacks ----------------------------------------------------- */

static void s_touch(xfer_t *x)
{
    if (relay_state(x->relay) == RELAY_STREAMING)
        x->deadline = x->bridge->now + x->timeout_ms;
}

static size_t s_on_header(char *buf, size_t size, size_t n, void *arg)
{
    xfer_t *x = arg;
    size_t len = size * n;
    if (x->aborted)
        return 0;
    s_touch(x);
    if (len == 2 ? (buf[0] == '\r' && buf[1] == '\n') : (len == 1 && buf[0] == '\n')) {
        long status = 0;
        char *ct = NULL;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(x->easy, CURLINFO_CONTENT_TYPE, &ct);
        if (relay_headers(x->relay, status, ct))
            return 0; /* failed: curl ends the transfer */
    }
    return len;
}

static size_t s_on_body(char *buf, size_t size, size_t n, void *arg)
{
    xfer_t *x = arg;
    size_t len = size * n;
    if (x->aborted)
        return 0;
    s_touch(x);
    if (relay_body(x->relay, buf, len))
        return 0;
    return len;
}

/* --- invokes ------------------------------------------------------------ */

static void s_refuse(bridge_t *b, uint64_t id, const char *code, const char *message)
{
    b->stats.failed++;
    LOGW("bridge.refuse", "id=%llu code=%s message=\"%s\"", (unsigned long long)id, code, message);
    worker_fail(b->worker, id, code, message);
}

/* An easy handle with the options every transfer shares: a spare one (a
 * finished transfer's, which keeps them and curl's per-handle caches), or a
 * new one. The caller sets the per-transfer options. NULL on failure. */
static CURL *s_easy(bridge_t *b)
{
    if (b->nspare)
        return b->spare[--b->nspare];
    CURL *e = curl_easy_init();
    if (!e)
        return NULL;
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, b->headers);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "map-bridge/1");
    return e;
}

static void s_on_request(worker_t *w, uint64_t id, const uint8_t *body, size_t len, void *arg)
{
    bridge_t *b = arg;
    b->stats.invokes++;
    if (b->stopping) {
        s_refuse(b, id, "worker_stopping", "the bridge is stopping");
        return;
    }
    char err[256], url[RELAY_URL_MAX];
    if (len > b->max_response) {
        /* The request to the agent is held to the answer's maximum (larger
         * bodies, up to the library's body_max, get here; past it the
         * library answers too_large itself). */
        snprintf(err, sizeof err, "the invoke body is larger than %zu bytes", b->max_response);
        s_refuse(b, id, "bad_request", err);
        return;
    }
    agent_invoke_t inv;
    agent_err_t aerr = agent_decode_invoke(body, len, &inv);
    if (aerr != AGENT_OK) {
        snprintf(err, sizeof err, "bad invoke body: %s", agent_strerror(aerr));
        s_refuse(b, id, "bad_request", err);
        return;
    }
    if (relay_url(inv.endpoint, url, sizeof url, err, sizeof err)) {
        s_refuse(b, id, "bad_request", err);
        return;
    }
    char *json = relay_request_json(&inv, b->public_url, err, sizeof err);
    if (!json) {
        s_refuse(b, id, "bad_request", err);
        return;
    }
    xfer_t *x = mem_alloc(sizeof *x);
    x->bridge = b;
    x->id = id;
    x->body = json;
    x->timeout_ms = inv.timeout_ms ? (long)(inv.timeout_ms < TIMEOUT_MAX_MS ? inv.timeout_ms : TIMEOUT_MAX_MS)
                                   : b->timeout_ms;
    x->started_us = clock_mono_us();
    x->deadline = b->now + x->timeout_ms;
    memcpy(x->run, inv.run_id.ptr, inv.run_id.len);
    x->relay = relay_new(b->max_response, &s_sink, x);
    x->easy = s_easy(b);
    x->next = b->head;
    if (b->head)
        b->head->prev = x;
    b->head = x;
    if (!x->easy) {
        s_refuse(b, id, "internal", "the bridge could not create an HTTP transfer");
        s_xfer_free(x);
        return;
    }
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)strlen(x->body));
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, x->timeout_ms);
    if (curl_multi_add_handle(b->multi, e) != CURLM_OK) {
        s_refuse(b, id, "internal", "the bridge could not start an HTTP transfer");
        s_xfer_free(x);
        return;
    }
    if (hmap_put(b->live, id, x)) {
        s_refuse(b, id, "overloaded", "the bridge has too many invokes in flight");
        s_xfer_free(x);
        return;
    }
    x->live = 1;
    LOGD("bridge.invoke", "run=%s id=%llu url=%s timeout_ms=%ld", x->run, (unsigned long long)id, url,
         x->timeout_ms);
}

static void s_on_cancel(worker_t *w, uint64_t id, void *arg)
{
    bridge_t *b = arg;
    xfer_t *x = hmap_get(b->live, id);
    if (!x)
        return;
    b->stats.cancelled++;
    LOGI("bridge.cancel", "run=%s id=%llu", x->run, (unsigned long long)id);
    s_xfer_free(x); /* aborts the HTTP request now: the agent sees the close */
}

static void s_on_link(worker_t *w, int up, void *arg)
{
    LOGI(up ? "bridge.link_up" : "bridge.link_lost", "active=%zu", worker_active(w));
}

static void s_xfer_free(xfer_t *x)
{
    bridge_t *b = x->bridge;
    if (x->live)
        hmap_del(b->live, x->id);
    if (x->prev)
        x->prev->next = x->next;
    else
        b->head = x->next;
    if (x->next)
        x->next->prev = x->prev;
    if (x->easy) {
        long connects = 0;
        if (curl_easy_getinfo(x->easy, CURLINFO_NUM_CONNECTS, &connects) == CURLE_OK && connects > 0)
            b->stats.connects += (uint64_t)connects;
        curl_multi_remove_handle(b->multi, x->easy);
        curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, NULL);
        if (b->nspare < BRIDGE_SPARE_MAX)
            b->spare[b->nspare++] = x->easy; /* options kept: see s_easy */
        else
            curl_easy_cleanup(x->easy);
    }
    relay_destroy(&x->relay);
    mem_free(x->body);
    mem_free(x);
}

/* --- the loop ----------------------------------------------------------- */

static void s_reap(bridge_t *b)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(b->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        xfer_t *x = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        CURLcode rc = msg->data.result;
        relay_end(x->relay, rc, x->errbuf);
        s_xfer_free(x);
    }
}

/* Expires idle transfers; returns the nearest deadline left (or -1). */
static int64_t s_sweep(bridge_t *b)
{
    int64_t now = clock_mono_ms(), nearest = -1;
    xfer_t *next;
    for (xfer_t *x = b->head; x; x = next) {
        next = x->next;
        if (now >= x->deadline) {
            relay_timeout(x->relay, x->timeout_ms); /* fails it if still streaming */
            s_xfer_free(x);
        } else if (nearest < 0 || x->deadline < nearest) {
            nearest = x->deadline;
        }
    }
    return nearest;
}

int bridge_run(bridge_t *self, volatile sig_atomic_t *stop)
{
    while (!*stop) {
        self->now = clock_mono_ms();
        while (worker_process(self->worker) > 0)
            ;
        /* After the drain: invokes it just started count for the wait. */
        int64_t nearest = s_sweep(self);
        long wait = worker_timeout_ms(self->worker);
        long curl_wait = -1;
        curl_multi_timeout(self->multi, &curl_wait);
        if (curl_wait >= 0 && curl_wait < wait)
            wait = curl_wait;
        if (nearest >= 0) {
            int64_t until = nearest - clock_mono_ms();
            if (until < wait)
                wait = until < 0 ? 0 : (long)until;
        }
        if (wait < 0 || wait > 1000)
            wait = 1000;
        struct curl_waitfd wfd = {.fd = worker_fd(self->worker), .events = CURL_WAIT_POLLIN};
        curl_multi_poll(self->multi, &wfd, 1, (int)wait, NULL);
        self->now = clock_mono_ms();
        self->stats.turns++;
        int running = 0;
        curl_multi_perform(self->multi, &running);
        s_reap(self);
        s_flush(self); /* the end of the turn: answers leave together */
    }
    self->stopping = 1;
    s_flush(self);
    size_t failed = 0;
    while (self->head) {
        xfer_t *x = self->head;
        if (x->live) {
            worker_fail(self->worker, x->id, "worker_stopping", "the bridge is stopping");
            self->stats.failed++;
            failed++;
        }
        s_xfer_free(x);
    }
    while (worker_process(self->worker) > 0)
        ;
    LOGI("bridge.stopping", "failed_in_flight=%zu", failed);
    return 0;
}

void bridge_stats(const bridge_t *self, bridge_stats_t *out)
{
    *out = self->stats;
}

bridge_t *bridge_new(const bridge_config_t *cfg, char *err, size_t errlen)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "libcurl could not be initialised");
        return NULL;
    }
    bridge_t *self = mem_alloc(sizeof *self);
    self->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
    /* One limit chain: an answer is at most what one frame carries. */
    self->max_response = cfg->max_response && cfg->max_response < RELAY_ANSWER_MAX
                             ? cfg->max_response
                             : RELAY_ANSWER_MAX;
    self->body_max = FRAME_BODY_MAX_DEFAULT;
    uint32_t capacity = cfg->capacity ? cfg->capacity : 256;
    if (relay_public_url(cfg->public_url, NULL, self->public_url, sizeof self->public_url, err,
                         errlen) != 0) {
        mem_free(self);
        curl_global_cleanup();
        return NULL;
    }
    mp_buf_init(&self->out, self->body_max + OUTBOX_FLUSH);
    self->live = hmap_new((size_t)capacity * 2 + 64);
    self->multi = curl_multi_init();
    if (!self->multi) {
        snprintf(err, errlen, "libcurl could not create a multi handle");
        goto fail;
    }
    curl_multi_setopt(self->multi, CURLMOPT_MAXCONNECTS, (long)capacity);
    const char *hdrs[] = {"Content-Type: application/json", "Accept: text/event-stream",
                          "Cache-Control: no-cache", "Expect:"};
    for (size_t i = 0; i < sizeof hdrs / sizeof *hdrs; i++) {
        struct curl_slist *l = curl_slist_append(self->headers, hdrs[i]);
        if (!l) {
            snprintf(err, errlen, "libcurl could not build the request headers");
            goto fail;
        }
        self->headers = l;
    }
    worker_config_t wcfg = {
        .endpoint = cfg->broker,
        .service = cfg->service ? cfg->service : "bridge",
        .capacity = capacity,
        .heartbeat_ms = cfg->heartbeat_ms,
        .body_max = self->body_max,
    };
    worker_handlers_t h = {.on_request = s_on_request, .on_cancel = s_on_cancel, .on_link = s_on_link};
    self->worker = worker_new(&wcfg, &h, self, err, errlen);
    if (!self->worker)
        goto fail;
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    LOGI("bridge.start", "broker=%s service=%s capacity=%u timeout_ms=%ld max_response=%zu public_url=%s curl=%s resolver=%s",
         cfg->broker, wcfg.service, capacity, self->timeout_ms, self->max_response, self->public_url, v->version,
         (v->features & CURL_VERSION_ASYNCHDNS) ? "async" : "blocking");
    return self;
fail:
    bridge_destroy(&self);
    return NULL;
}

void bridge_destroy(bridge_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    bridge_t *self = *self_p;
    while (self->head)
        s_xfer_free(self->head);
    worker_destroy(&self->worker);
    while (self->nspare)
        curl_easy_cleanup(self->spare[--self->nspare]);
    if (self->multi)
        curl_multi_cleanup(self->multi);
    curl_slist_free_all(self->headers);
    hmap_destroy(&self->live);
    mp_buf_free(&self->out);
    mem_free(self->pending);
    mem_free(self);
    *self_p = NULL;
    curl_global_cleanup();
}
