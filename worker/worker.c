/* worker: one DEALER to the broker, serving and making requests.
 *
 * State:
 *   asked    our requests in flight: our id → a marker (no per-request
 *            allocation; the map only says "this id is live").
 *   serving  the broker's requests we hold: broker id → a marker.
 *   linked   1 once the broker answered our READY; 0 after a loss.
 *   expiry   linked: the broker is lost if silent until then; unlinked
 *            with READY sent: READY is sent again if nothing at all came
 *            back until then (frames lost without a DISCONNECT).
 *   ready_sent  READY was accepted by the socket since the last loss or
 *            DISCONNECT.
 *   probe_id the id of the SERVICES probe sent after the last READY. Only
 *            its answer brings the link up: a HEARTBEAT or REPLY may be a
 *            frame the previous broker queued before it died, and taking
 *            it for the new broker's answer would report a link that the
 *            new broker knows nothing of.
 *
 * Why READY is sent once per loss, not every heartbeat: the broker treats a
 * READY from a peer it knows as a restart and forgets everything that peer
 * was part of. Repeating it while the broker is slow to answer would kill
 * fresh work. Instead, after READY we heartbeat as usual; a broker that does
 * not know us (READY lost with a dropped connection, a restarted broker, a
 * reconnect under a new routing id) answers any frame with DISCONNECT, and
 * DISCONNECT makes us send READY again. While READY cannot be sent at all
 * (ZMQ_IMMEDIATE: no connection) it is retried with a backoff of 10 ms up
 * to one heartbeat, and worker_run also waits for POLLOUT. READY is followed
 * by a SERVICES probe (an id of its own, S_PROBE_BIT set), which the broker
 * answers at once after READY: the link is up one round trip after READY,
 * not one heartbeat. Until then REQUEST and CANCEL are served (a broker
 * may hand us work right after READY, before it reads the probe) and the
 * rest is dropped.
 *
 * Link loss (silence for liveness × heartbeat, or DISCONNECT): both maps are
 * swapped for empty ones before the callbacks run, so handlers may call any
 * worker_* function while the old ids are reported.
 *
 * Edge-triggered ZMQ_FD: a send may consume the fd's edge for a message
 * that arrived meanwhile (LIBRARIES.md). A send only marks the state
 * unchecked; the next worker_timeout_ms (which every loop calls before it
 * waits) or the end of worker_process re-reads ZMQ_EVENTS once, and when a
 * message is waiting worker_timeout_ms returns 0, so a foreign loop that
 * waits on the fd still comes back. One re-check per wait instead of one
 * per send: each costs a poll and a getpid syscall inside libzmq, which
 * bench_bridge measured at a tenth of the bridge's time. A drain that ends
 * on EAGAIN leaves the state checked; one cut by the batch bound leaves it
 * readable.
 *
 * Hot path: headers are encoded into stack buffers, bodies go to zmq_send
 * (one copy, the one zmq needs) and received parts reuse two zmq_msg_t per
 * worker_process call. Nothing is allocated per frame. */
#include "worker.h"

#include "dealer.h"
#include "common/clock.h"
#include "common/hmap.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/ratelog.h"
#include "proto/frame.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define S_BATCH 1000              /* messages handled per worker_process */
#define S_HWM 100000              /* messages queued each way */
#define S_READY_RETRY_MIN 10      /* ms, first retry of an unsent READY */
#define S_PROBE_BIT (1ULL << 63)  /* in the ids of SERVICES probes, never in ours */
#define S_CLOSE_LINGER 200        /* ms the last frames may take to leave at destroy */

static char s_live; /* the marker stored in both maps */
#define S_LIVE ((void *)&s_live)

struct worker_t {
    void *ctx;
    void *sock;                   /* DEALER */
    int fd;                       /* its ZMQ_FD */
    worker_handlers_t h;
    void *arg;
    char endpoint[256];           /* for logs */
    char service[FRAME_SERVICE_MAX + 1];
    uint32_t service_len;
    uint32_t capacity;
    long heartbeat_ms;
    long liveness;
    size_t body_max;
    size_t requests_max;
    hmap_t *asked;                /* our id → S_LIVE */
    hmap_t *serving;              /* broker id → S_LIVE */
    uint64_t next_id;             /* last id we gave a request */
    int linked;
    int ready_sent;
    uint64_t probe_id;            /* the probe after the last READY */
    uint64_t probes;              /* probes sent */
    long ready_retry;             /* ms until the next READY attempt */
    int64_t next_ready;           /* mono ms of the next READY attempt */
    int64_t next_heartbeat;       /* mono ms of the next HEARTBEAT */
    int64_t expiry;               /* mono ms: silence deadline (see top) */
    int unchecked;                /* sent since ZMQ_EVENTS was last read */
    int readable;                 /* a message may be waiting: do not block */
    ratelog_t rejects;            /* reject lines: flood control */
};

/* ---- sending ------------------------------------------------------------- */

static void s_recheck(worker_t *w)
{
    int events = 0;
    size_t size = sizeof events;
    w->unchecked = 0;
    if (zmq_getsockopt(w->sock, ZMQ_EVENTS, &events, &size) == 0 && (events & ZMQ_POLLIN))
        w->readable = 1;
}

/* Sends header (+ body when has_body). Returns 0, or -1 when the socket
 * refused the message (no connection, queue full). */
static int s_send(worker_t *w, const uint8_t *hdr, size_t hdr_len, const void *body,
                  size_t body_len, int has_body)
{
    int rc = zmq_send(w->sock, hdr, hdr_len, ZMQ_DONTWAIT | (has_body ? ZMQ_SNDMORE : 0));
    /* Once the first part is accepted, the rest of the message is too. */
    if (rc >= 0 && has_body)
        zmq_send(w->sock, body_len ? body : "", body_len, ZMQ_DONTWAIT);
    w->unchecked = 1;
    return rc < 0 ? -1 : 0;
}

static int s_send_id(worker_t *w, frame_type_t type, uint64_t id)
{
    uint8_t hdr[32];
    size_t n = frame_encode_id(type, id, hdr, sizeof hdr);
    return n ? s_send(w, hdr, n, NULL, 0, 0) : -1;
}

static int s_send_error(worker_t *w, uint64_t id, const char *code, const char *message)
{
    uint8_t hdr[FRAME_HEADER_MAX];
    size_t n = frame_encode_error(id, code, message ? message : "", hdr, sizeof hdr);
    return n ? s_send(w, hdr, n, NULL, 0, 0) : -1;
}

static void s_send_ready(worker_t *w, int64_t now)
{
    uint8_t hdr[FRAME_HEADER_MAX];
    frame_t f = {.type = FRAME_READY,
                 .service = w->service,
                 .service_len = w->service_len,
                 .capacity = w->capacity};
    size_t n = frame_encode(&f, hdr, sizeof hdr);
    if (n && s_send(w, hdr, n, NULL, 0, 0) == 0) {
        w->ready_sent = 1;
        w->next_heartbeat = now + w->heartbeat_ms;
        w->expiry = now + w->heartbeat_ms * w->liveness;
        /* The probe: answered at once, so the link comes up without
         * waiting for the broker's next heartbeat (see the top). */
        w->probe_id = S_PROBE_BIT | ++w->probes;
        s_send_id(w, FRAME_SERVICES, w->probe_id);
        return;
    }
    w->next_ready = now + w->ready_retry;
    w->ready_retry = w->ready_retry * 2 < w->heartbeat_ms ? w->ready_retry * 2 : w->heartbeat_ms;
}

/* ---- the link -------------------------------------------------------------- */

/* Forgets the broker's view of us and reports every live id. */
static void s_lost(worker_t *w, const char *reason, int64_t now)
{
    int was_linked = w->linked;
    w->linked = 0;
    w->ready_sent = 0;
    w->ready_retry = S_READY_RETRY_MIN;
    w->next_ready = now;
    if (was_linked) {
        LOGW("worker.link_lost", "endpoint=%s reason=%s pending=%zu active=%zu", w->endpoint,
             reason, hmap_size(w->asked), hmap_size(w->serving));
        hmap_t *asked = w->asked, *serving = w->serving;
        w->asked = hmap_new(w->requests_max);
        w->serving = hmap_new(FRAME_CAPACITY_MAX);
        size_t pos = 0;
        uint64_t id;
        void *value;
        while (hmap_next(asked, &pos, &id, &value) == 0) {
            if (w->h.on_error)
                w->h.on_error(w, id, "broker_lost", "the link to the broker was lost", w->arg);
        }
        pos = 0;
        while (hmap_next(serving, &pos, &id, &value) == 0) {
            if (w->h.on_cancel)
                w->h.on_cancel(w, id, w->arg);
        }
        hmap_destroy(&asked);
        hmap_destroy(&serving);
        if (w->h.on_link)
            w->h.on_link(w, 0, w->arg);
    }
    s_send_ready(w, now);
}

static void s_up(worker_t *w, int64_t now)
{
    w->linked = 1;
    w->expiry = now + w->heartbeat_ms * w->liveness;
    LOGI("worker.link_up", "endpoint=%s service=%s capacity=%u", w->endpoint, w->service,
         w->capacity);
    if (w->h.on_link)
        w->h.on_link(w, 1, w->arg);
}

/* ---- receiving --------------------------------------------------------------- */

static void s_reject(worker_t *w, const char *reason, size_t size, int64_t now)
{
    unsigned held;
    int show = ratelog_allow(&w->rejects, now, &held);
    if (held)
        LOGW("frame.reject", "reason=flood count=%u", held);
    if (show)
        LOGW("frame.reject", "endpoint=%s reason=%s size=%zu", w->endpoint, reason, size);
}

static void s_on_request(worker_t *w, const frame_t *f, const uint8_t *body, size_t len)
{
    if (w->capacity == 0 || !w->h.on_request) {
        s_send_error(w, f->id, "unknown_service", "this peer serves no requests");
        return;
    }
    if (hmap_get(w->serving, f->id)) {
        LOGW("frame.reject", "endpoint=%s reason=duplicate request id=%llu", w->endpoint,
             (unsigned long long)f->id);
        return;
    }
    if (hmap_put(w->serving, f->id, S_LIVE) != 0) {
        s_send_error(w, f->id, "overloaded", "the worker holds too many requests");
        return;
    }
    w->h.on_request(w, f->id, body, len, w->arg);
}

static void s_on_cancel(worker_t *w, uint64_t id)
{
    if (!hmap_del(w->serving, id))
        return; /* answered already: our final frame is on its way */
    /* Answering at once frees the broker's credit whatever the handler does. */
    s_send_error(w, id, "cancelled", "cancelled by requester");
    if (w->h.on_cancel)
        w->h.on_cancel(w, id, w->arg);
}

static void s_on_answer(worker_t *w, const frame_t *f, const uint8_t *body, size_t len)
{
    if (!hmap_get(w->asked, f->id))
        return; /* cancelled or reported lost: late frames are expected */
    if (f->type == FRAME_STREAM) {
        if (w->h.on_stream)
            w->h.on_stream(w, f->id, body, len, w->arg);
        return;
    }
    hmap_del(w->asked, f->id);
    if (f->type == FRAME_REPLY) {
        if (w->h.on_reply)
            w->h.on_reply(w, f->id, body, len, w->arg);
        return;
    }
    char code[FRAME_CODE_MAX + 1], message[FRAME_MESSAGE_MAX + 1];
    memcpy(code, f->code, f->code_len);
    code[f->code_len] = '\0';
    memcpy(message, f->message, f->message_len);
    message[f->message_len] = '\0';
    if (w->h.on_error)
        w->h.on_error(w, f->id, code, message, w->arg);
}

static void s_on_frame(worker_t *w, const frame_t *f, const uint8_t *body, size_t len, int64_t now)
{
    if (f->type == FRAME_DISCONNECT) {
        /* The broker does not know us (any more): announce again. */
        s_lost(w, "disconnect", now);
        return;
    }
    if (!w->linked) {
        if (!w->ready_sent)
            return; /* sent before the broker could know us: it will forget it */
        if ((f->type == FRAME_REPLY || f->type == FRAME_ERROR) && f->id == w->probe_id) {
            s_up(w, now);
            return;
        }
        if (f->type != FRAME_REQUEST && f->type != FRAME_CANCEL)
            return; /* maybe from the broker before: only the probe's answer counts */
    }
    switch (f->type) {
    case FRAME_HEARTBEAT:
        break;
    case FRAME_REQUEST:
        s_on_request(w, f, body, len);
        break;
    case FRAME_CANCEL:
        s_on_cancel(w, f->id);
        break;
    case FRAME_STREAM:
    case FRAME_REPLY:
    case FRAME_ERROR:
        s_on_answer(w, f, body, len);
        break;
    default: /* READY, SERVICES: only peers send them */
        s_reject(w, "unexpected type", 0, now);
        break;
    }
}

/* Receives and handles one message. Returns 0, or -1 when none was ready. */
static int s_handle_one(worker_t *w, zmq_msg_t *hdr, zmq_msg_t *body, int64_t now)
{
    if (zmq_msg_recv(hdr, w->sock, ZMQ_DONTWAIT) < 0)
        return -1;
    int has_body = 0, extra = 0;
    if (zmq_msg_more(hdr)) {
        /* The rest of a message is there once its first part is. */
        if (zmq_msg_recv(body, w->sock, 0) >= 0) {
            has_body = 1;
            int more = zmq_msg_more(body);
            while (more) {
                zmq_msg_t scratch;
                zmq_msg_init(&scratch);
                if (zmq_msg_recv(&scratch, w->sock, 0) < 0)
                    more = 0;
                else
                    more = zmq_msg_more(&scratch);
                zmq_msg_close(&scratch);
                extra = 1;
            }
        }
    }
    w->expiry = now + w->heartbeat_ms * w->liveness; /* any frame is a sign of life */
    const uint8_t *h = zmq_msg_data(hdr);
    size_t h_len = zmq_msg_size(hdr);
    const uint8_t *b = has_body ? zmq_msg_data(body) : NULL;
    size_t b_len = has_body ? zmq_msg_size(body) : 0;
    frame_t f;
    frame_err_t err;
    if (extra)
        err = FRAME_E_PARTS;
    else if (b_len > w->body_max)
        err = FRAME_E_TOO_LARGE;
    else
        err = frame_decode(h, h_len, has_body, &f);
    if (err != FRAME_OK) {
        s_reject(w, frame_strerror(err), h_len + b_len, now);
        /* A request too large for us is answered so its credit comes back. */
        if (err == FRAME_E_TOO_LARGE && w->linked && frame_decode(h, h_len, 1, &f) == FRAME_OK &&
            f.type == FRAME_REQUEST)
            s_send_error(w, f.id, "too_large", "body over the worker's maximum");
        return 0;
    }
    s_on_frame(w, &f, b, b_len, now);
    return 0;
}

/* ---- the loop ------------------------------------------------------------------ */

int worker_process(worker_t *w)
{
    int64_t now = clock_mono_ms();
    w->readable = 0;
    if (!w->linked && !w->ready_sent && now >= w->next_ready)
        s_send_ready(w, now);
    zmq_msg_t hdr, body;
    zmq_msg_init(&hdr);
    zmq_msg_init(&body);
    int handled = 0;
    while (handled < S_BATCH && s_handle_one(w, &hdr, &body, now) == 0)
        handled++;
    if (handled == S_BATCH)
        w->readable = 1; /* cut by the bound: more may wait */
    else
        w->unchecked = 0; /* ended on EAGAIN, which read the socket's state */
    zmq_msg_close(&hdr);
    zmq_msg_close(&body);
    now = clock_mono_ms();
    if (w->linked && now >= w->expiry) {
        s_lost(w, "silent", now);
    } else if (!w->linked && w->ready_sent && now >= w->expiry) {
        /* READY went unanswered, even by DISCONNECT: announce again. */
        LOGD("worker.ready_again", "endpoint=%s", w->endpoint);
        w->ready_sent = 0;
        s_send_ready(w, now);
    }
    if (w->ready_sent && now >= w->next_heartbeat) {
        s_send_id(w, FRAME_HEARTBEAT, 0);
        w->next_heartbeat = now + w->heartbeat_ms;
    }
    if (w->unchecked)
        s_recheck(w);
    return handled == S_BATCH;
}

int worker_readable(worker_t *w)
{
    if (w->unchecked)
        s_recheck(w);
    return w->readable;
}

long worker_timeout_ms(worker_t *w)
{
    if (worker_readable(w))
        return 0;
    int64_t now = clock_mono_ms();
    int64_t next = w->ready_sent ? w->next_heartbeat : w->next_ready;
    if (w->ready_sent && w->expiry < next)
        next = w->expiry;
    return next > now ? (long)(next - now) : 0;
}

int worker_run(worker_t *w, volatile sig_atomic_t *stop)
{
    while (!*stop) {
        zmq_pollitem_t item = {w->sock, 0, ZMQ_POLLIN, 0};
        if (!w->ready_sent)
            item.events |= ZMQ_POLLOUT; /* the connection is up: READY can go */
        if (zmq_poll(&item, 1, worker_timeout_ms(w)) < 0 && errno != EINTR) {
            LOGE("worker.poll", "error=%s", zmq_strerror(errno));
            return 0;
        }
        if (!w->ready_sent && (item.revents & ZMQ_POLLOUT))
            w->next_ready = 0;
        while (worker_process(w) > 0 && !*stop)
            ;
    }
    return 0;
}

/* ---- serving ----------------------------------------------------------------------- */

/* A request being served may be answered before the probe's answer brought
 * the link up: the broker hands work to a worker right after its READY. A
 * loss empties `serving`, so an answer never reaches a broker that forgot. */
static int s_answer(worker_t *w, frame_type_t type, uint64_t id, const void *body, size_t len)
{
    if (!hmap_get(w->serving, id) || len > w->body_max)
        return -1;
    uint8_t hdr[32];
    size_t n = frame_encode_id(type, id, hdr, sizeof hdr);
    if (!n || s_send(w, hdr, n, body, len, 1) != 0)
        return -1;
    if (type == FRAME_REPLY)
        hmap_del(w->serving, id);
    return 0;
}

int worker_stream(worker_t *w, uint64_t id, const void *body, size_t len)
{
    return s_answer(w, FRAME_STREAM, id, body, len);
}

int worker_reply(worker_t *w, uint64_t id, const void *body, size_t len)
{
    return s_answer(w, FRAME_REPLY, id, body, len);
}

int worker_fail(worker_t *w, uint64_t id, const char *code, const char *message)
{
    if (!hmap_get(w->serving, id) || !code)
        return -1;
    if (s_send_error(w, id, code, message) != 0)
        return -1;
    hmap_del(w->serving, id);
    return 0;
}

size_t worker_active(const worker_t *w)
{
    return hmap_size(w->serving);
}

/* ---- requesting ------------------------------------------------------------------- */

uint64_t worker_request(worker_t *w, const char *service, const void *body, size_t len)
{
    if (!w->linked || !service || len > w->body_max || hmap_size(w->asked) >= w->requests_max)
        return 0;
    size_t service_len = strlen(service);
    if (service_len == 0 || service_len > FRAME_SERVICE_MAX)
        return 0;
    uint64_t id = w->next_id + 1;
    uint8_t hdr[FRAME_HEADER_MAX];
    frame_t f = {.type = FRAME_REQUEST,
                 .id = id,
                 .service = service,
                 .service_len = (uint32_t)service_len};
    size_t n = frame_encode(&f, hdr, sizeof hdr);
    if (!n || s_send(w, hdr, n, body, len, 1) != 0)
        return 0;
    w->next_id = id;
    hmap_put(w->asked, id, S_LIVE); /* cannot fail: size checked above */
    return id;
}

uint64_t worker_services(worker_t *w)
{
    if (!w->linked || hmap_size(w->asked) >= w->requests_max)
        return 0;
    uint64_t id = w->next_id + 1;
    if (s_send_id(w, FRAME_SERVICES, id) != 0)
        return 0;
    w->next_id = id;
    hmap_put(w->asked, id, S_LIVE);
    return id;
}

int worker_cancel(worker_t *w, uint64_t req)
{
    if (!hmap_get(w->asked, req))
        return -1;
    /* The request stays live: the broker's ERROR "cancelled" (or the
     * worker's final frame, if it won the race) ends it. */
    return s_send_id(w, FRAME_CANCEL, req);
}

size_t worker_pending(const worker_t *w)
{
    return hmap_size(w->asked);
}

/* ---- lifecycle -------------------------------------------------------------------- */

worker_t *worker_new(const worker_config_t *cfg_in, const worker_handlers_t *handlers, void *arg,
                     char *err, size_t errlen)
{
    worker_config_t checked;
    if (dealer_config(cfg_in, &checked, err, errlen) != 0)
        return NULL;
    const worker_config_t *cfg = &checked;
    worker_t *w = mem_alloc(sizeof *w);
    if (handlers)
        w->h = *handlers;
    w->arg = arg;
    snprintf(w->endpoint, sizeof w->endpoint, "%s", cfg->endpoint);
    w->service_len = (uint32_t)strlen(cfg->service); /* checked: 1 to FRAME_SERVICE_MAX */
    memcpy(w->service, cfg->service, w->service_len);
    w->capacity = cfg->capacity;
    w->heartbeat_ms = cfg->heartbeat_ms; /* defaults filled by dealer_config */
    w->liveness = cfg->liveness;
    w->body_max = cfg->body_max;
    w->requests_max = cfg->requests_max;
    w->ctx = zmq_ctx_new();
    w->sock = dealer_open(w->ctx, cfg, S_HWM, err, errlen);
    if (!w->sock)
        goto fail;
    size_t fd_size = sizeof w->fd;
    zmq_getsockopt(w->sock, ZMQ_FD, &w->fd, &fd_size);
    w->asked = hmap_new(w->requests_max);
    w->serving = hmap_new(FRAME_CAPACITY_MAX);
    int64_t now = clock_mono_ms();
    w->ready_retry = S_READY_RETRY_MIN;
    w->next_heartbeat = now + w->heartbeat_ms;
    s_send_ready(w, now);
    return w;
fail:
    if (w->sock)
        zmq_close(w->sock);
    zmq_ctx_term(w->ctx);
    mem_free(w);
    return NULL;
}

void worker_destroy(worker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    worker_t *w = *self_p;
    if (w->ready_sent)
        s_send_id(w, FRAME_DISCONNECT, 0);
    /* A short linger lets the last answers (and DISCONNECT) leave; with no
     * connection nothing was queued (ZMQ_IMMEDIATE), so this never hangs long. */
    dealer_close(w->sock, S_CLOSE_LINGER);
    zmq_ctx_term(w->ctx);
    hmap_destroy(&w->asked);
    hmap_destroy(&w->serving);
    mem_free(w);
    *self_p = NULL;
}

void *worker_socket(worker_t *w)
{
    return w->sock;
}

int worker_fd(worker_t *w)
{
    return w->fd;
}

int worker_linked(const worker_t *w)
{
    return w->linked;
}
