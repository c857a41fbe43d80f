/* broker: routing, credit, heartbeats and the tap.
 *
 * Objects and owners:
 *   peer_t     one DEALER we have heard from; owned by self->peers (key: hash
 *              of its routing id). A worker (capacity > 0) belongs to one
 *              service; a requester (capacity 0) to none. Every peer can make
 *              requests.
 *   service_t  a name with its workers and a FIFO of waiting requests; owned
 *              by self->services; freed when its last worker goes.
 *   request_t  one routed request; owned by self->requests (key: our id,
 *              "rid"). Also indexed by its requester (requester->asked, key:
 *              the requester's id) while the requester waits for it, and by
 *              its worker (worker->serving, key: rid) while a worker holds it.
 *
 * Invariants:
 *   - A request is either queued (on its service's FIFO, worker NULL) or held
 *     by exactly one worker; a worker holds at most `capacity` requests.
 *   - The requester sees exactly one final frame (REPLY or ERROR) per
 *     request: the worker's, or one the broker makes (worker_lost,
 *     cancelled, overloaded, unknown_service). After it the request is gone
 *     from requester->asked; a request whose requester left or cancelled
 *     stays, "orphaned", until its worker's final frame frees the credit.
 *   - Peers are freed only at the end of a loop turn (s_reap), never while a
 *     frame of theirs is being handled.
 *
 * Why ids are rewritten: each requester numbers its own requests; the broker
 * gives each request its own id so that workers see one id space and the
 * stream path needs one hash lookup, no per-requester state. */
#include "broker.h"

#include "common/clock.h"
#include "common/hmap.h"
#include "common/log.h"
#include "common/ratelog.h"
#include "common/mem.h"
#include "proto/frame.h"
#include "proto/mp.h"

#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#define S_BATCH 4096         /* frames handled per poll before timers run */
#define S_PEERS_MAX 100000   /* peers known at once */
#define S_REQUESTS_MAX 1000000 /* requests routed at once */
#define S_ID_MAX 255         /* bytes of a ZeroMQ routing id */

typedef struct service_t service_t;
typedef struct request_t request_t;

typedef struct peer_t {
    uint64_t key;            /* hash of id, key in self->peers */
    uint8_t id[S_ID_MAX];    /* ZeroMQ routing id */
    size_t id_len;
    char hex[16];            /* first bytes of id in hex, for logs and the tap */
    char name[FRAME_SERVICE_MAX + 1]; /* name from READY */
    service_t *service;      /* NULL for a requester */
    uint32_t capacity;       /* concurrent requests it takes */
    hmap_t *serving;         /* rid → request held by this worker */
    hmap_t *asked;           /* requester's id → request it waits for */
    int64_t expiry;          /* mono ms after which it is dead */
    int dead;                /* released; freed by s_reap */
    int unreachable;         /* a send failed: release at the end of the turn */
    struct peer_t *next_dead; /* link in self->dead */
    struct peer_t *next_unreachable; /* link in self->unreachable */
} peer_t;

struct service_t {
    uint64_t key;            /* hash of name, key in self->services */
    char name[FRAME_SERVICE_MAX + 1];
    peer_t **workers;        /* array of workers_len */
    size_t workers_len, workers_cap;
    request_t *head, *tail;  /* FIFO of waiting requests */
    size_t queued;
};

struct request_t {
    uint64_t rid;            /* our id, seen by the worker */
    uint64_t asker_id;       /* the requester's id, seen by the requester */
    peer_t *asker;           /* NULL once orphaned */
    peer_t *worker;          /* NULL while queued */
    service_t *service;
    zmq_msg_t body;          /* kept only while queued */
    request_t *prev, *next;  /* FIFO links while queued */
};

struct broker_t {
    void *ctx;
    int ctx_owned;           /* 0: czmq's context (CURVE), which czmq ends */
    zactor_t *auth;          /* czmq's ZAP handler when CURVE is on */
    void *router;
    void *tap;               /* XPUB or NULL */
    broker_config_t cfg;
    hmap_t *peers;
    hmap_t *services;
    hmap_t *requests;
    uint64_t next_rid;
    int tap_subscribed;      /* subscriptions the XPUB has reported */
    peer_t *dead;            /* released peers to free at the end of the turn */
    peer_t *unreachable;     /* peers to release at the end of the turn */
    int64_t next_heartbeat;
    ratelog_t rejects;       /* reject lines: flood control */
    broker_stats_t stats;
};

/* FNV-1a: routing ids and service names are short. */
static uint64_t s_hash(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h ? h : 1;
}

/* ---- the tap ------------------------------------------------------------ */

/* Copies one frame to the tap: [meta, header, body?]. Never blocks; at the
 * high-water mark the copy is dropped and counted. */
static void s_tap(broker_t *self, const char *dir, const peer_t *peer, const char *service,
                  const void *hdr, size_t hdr_len, zmq_msg_t *body, const char *note)
{
    if (!self->tap || self->tap_subscribed <= 0)
        return;
    uint8_t meta[256];
    mp_buf_t b;
    mp_buf_init(&b, sizeof meta);
    msgpack_pack_array(&b.pk, 6);
    msgpack_pack_uint8(&b.pk, 1);
    mp_pack_cstr(&b, dir);
    mp_pack_cstr(&b, peer ? peer->hex : "");
    mp_pack_cstr(&b, service ? service : "");
    msgpack_pack_uint64(&b.pk, (uint64_t)clock_wall_ms() * 1000 + (uint64_t)(clock_mono_us() % 1000));
    mp_pack_cstr(&b, note ? note : "");
    if (b.overflow) {
        mp_buf_free(&b);
        return;
    }
    memcpy(meta, b.data, b.len);
    size_t meta_len = b.len;
    mp_buf_free(&b);
    if (zmq_send(self->tap, meta, meta_len, ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0) {
        self->stats.tap_dropped++;
        return;
    }
    zmq_send(self->tap, hdr, hdr_len, ZMQ_DONTWAIT | (body ? ZMQ_SNDMORE : 0));
    if (body) {
        zmq_msg_t copy;
        zmq_msg_init(&copy);
        zmq_msg_copy(&copy, body);
        if (zmq_msg_send(&copy, self->tap, ZMQ_DONTWAIT) < 0)
            zmq_msg_close(&copy);
    }
    self->stats.tap_published++;
}

/* Reads subscription changes from the XPUB: 1 = subscribe, 0 = unsubscribe. */
static void s_tap_drain(broker_t *self)
{
    uint8_t buf[256];
    for (int i = 0; i < 64; i++) {
        int n = zmq_recv(self->tap, buf, sizeof buf, ZMQ_DONTWAIT);
        if (n < 0)
            return;
        if (n >= 1 && buf[0] == 1)
            self->tap_subscribed++;
        else if (n >= 1 && buf[0] == 0 && self->tap_subscribed > 0)
            self->tap_subscribed--;
        LOGI("tap.subscribers", "topics=%d", self->tap_subscribed);
    }
}

/* ---- sending -------------------------------------------------------------- */

/* A send found the peer gone. Releasing it here could free what the caller
 * is using (its requests, its service), so it waits for the end of the turn. */
static void s_defer_dead(broker_t *self, peer_t *peer)
{
    if (peer->unreachable || peer->dead)
        return;
    peer->unreachable = 1;
    peer->next_unreachable = self->unreachable;
    self->unreachable = peer;
}

/* Sends [id, header, body?] to peer; takes body (closes it on failure). */
static int s_send(broker_t *self, peer_t *peer, const uint8_t *hdr, size_t hdr_len,
                  zmq_msg_t *body, const char *service)
{
    if (peer->dead || peer->unreachable) {
        if (body)
            zmq_msg_close(body);
        return -1;
    }
    s_tap(self, "out", peer, service, hdr, hdr_len, body, NULL);
    if (zmq_send(self->router, peer->id, peer->id_len, ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0) {
        self->stats.frames_dropped++;
        if (errno == EHOSTUNREACH)
            s_defer_dead(self, peer);
        else
            LOGW("frame.drop", "peer=%s reason=%s", peer->hex, zmq_strerror(errno));
        if (body)
            zmq_msg_close(body);
        return -1;
    }
    /* Once the routing id is accepted the rest of the message is too. */
    zmq_send(self->router, hdr, hdr_len, ZMQ_DONTWAIT | (body ? ZMQ_SNDMORE : 0));
    if (body && zmq_msg_send(body, self->router, ZMQ_DONTWAIT) < 0)
        zmq_msg_close(body);
    self->stats.frames_out++;
    return 0;
}

static void s_send_id(broker_t *self, peer_t *peer, frame_type_t type, uint64_t id,
                      const char *service)
{
    uint8_t hdr[FRAME_HEADER_MAX];
    size_t n = frame_encode_id(type, id, hdr, sizeof hdr);
    s_send(self, peer, hdr, n, NULL, service);
}

static void s_send_error(broker_t *self, peer_t *peer, uint64_t id, const char *code,
                         const char *message, const char *service)
{
    uint8_t hdr[FRAME_HEADER_MAX];
    size_t n = frame_encode_error(id, code, message, hdr, sizeof hdr);
    s_send(self, peer, hdr, n, NULL, service);
}

/* Sends DISCONNECT to a routing id we do not know (no peer object). */
static void s_send_disconnect_raw(broker_t *self, const void *id, size_t id_len)
{
    uint8_t hdr[16];
    size_t n = frame_encode_id(FRAME_DISCONNECT, 0, hdr, sizeof hdr);
    if (zmq_send(self->router, id, id_len, ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0)
        return;
    zmq_send(self->router, hdr, n, ZMQ_DONTWAIT);
}

/* ---- requests and services ------------------------------------------------ */

static void s_queue_remove(service_t *svc, request_t *req)
{
    if (req->prev)
        req->prev->next = req->next;
    else
        svc->head = req->next;
    if (req->next)
        req->next->prev = req->prev;
    else
        svc->tail = req->prev;
    req->prev = req->next = NULL;
    svc->queued--;
}

/* Removes the request from every index and frees it. */
static void s_request_free(broker_t *self, request_t *req)
{
    hmap_del(self->requests, req->rid);
    if (req->asker)
        hmap_del(req->asker->asked, req->asker_id);
    if (req->worker)
        hmap_del(req->worker->serving, req->rid);
    else if (req->service)
        s_queue_remove(req->service, req);
    zmq_msg_close(&req->body);
    mem_free(req);
}

/* Ends a request for its requester with an error the broker makes. */
static void s_request_fail(broker_t *self, request_t *req, const char *code, const char *msg)
{
    if (req->asker)
        s_send_error(self, req->asker, req->asker_id, code, msg, req->service->name);
    s_request_free(self, req);
}

static peer_t *s_pick_worker(service_t *svc)
{
    peer_t *best = NULL;
    size_t best_free = 0;
    for (size_t i = 0; i < svc->workers_len; i++) {
        peer_t *w = svc->workers[i];
        size_t busy = hmap_size(w->serving);
        size_t free_credit = w->capacity > busy ? w->capacity - busy : 0;
        if (!w->dead && !w->unreachable && free_credit > best_free) {
            best = w;
            best_free = free_credit;
        }
    }
    return best;
}

/* Hands a request to a worker: takes body. */
static void s_deliver(broker_t *self, request_t *req, peer_t *worker, zmq_msg_t *body)
{
    uint8_t hdr[FRAME_HEADER_MAX];
    frame_t f = {.type = FRAME_REQUEST,
                 .id = req->rid,
                 .service = req->service->name,
                 .service_len = (uint32_t)strlen(req->service->name)};
    size_t n = frame_encode(&f, hdr, sizeof hdr);
    req->worker = worker;
    hmap_put(worker->serving, req->rid, req);
    s_send(self, worker, hdr, n, body, req->service->name);
}

/* Moves waiting requests to workers with free credit. */
static void s_dispatch(broker_t *self, service_t *svc)
{
    while (svc->head) {
        peer_t *w = s_pick_worker(svc);
        if (!w)
            return;
        request_t *req = svc->head;
        s_queue_remove(svc, req);
        zmq_msg_t body;
        zmq_msg_init(&body);
        zmq_msg_move(&body, &req->body);
        s_deliver(self, req, w, &body);
    }
}

static service_t *s_service_get(broker_t *self, const char *name, size_t len)
{
    service_t *svc = hmap_get(self->services, s_hash(name, len));
    if (svc && (strlen(svc->name) != len || memcmp(svc->name, name, len) != 0))
        return NULL; /* hash collision with another name: treat as unknown */
    return svc;
}

static void s_service_detach(broker_t *self, peer_t *worker)
{
    service_t *svc = worker->service;
    if (!svc)
        return;
    for (size_t i = 0; i < svc->workers_len; i++) {
        if (svc->workers[i] == worker) {
            svc->workers[i] = svc->workers[--svc->workers_len];
            break;
        }
    }
    worker->service = NULL;
    if (svc->workers_len == 0) {
        while (svc->head)
            s_request_fail(self, svc->head, "unknown_service", "the service's last worker left");
        LOGI("service.gone", "service=%s", svc->name);
        hmap_del(self->services, svc->key);
        mem_free(svc->workers);
        mem_free(svc);
    }
}

static int s_service_attach(broker_t *self, peer_t *worker, const char *name, size_t len)
{
    uint64_t key = s_hash(name, len);
    service_t *svc = hmap_get(self->services, key);
    if (svc && (strlen(svc->name) != len || memcmp(svc->name, name, len) != 0))
        return -1;
    if (!svc) {
        svc = mem_alloc(sizeof *svc);
        svc->key = key;
        memcpy(svc->name, name, len);
        if (hmap_put(self->services, key, svc) != 0) {
            mem_free(svc);
            return -1;
        }
        LOGI("service.new", "service=%s", svc->name);
    }
    if (svc->workers_len == svc->workers_cap) {
        svc->workers_cap = svc->workers_cap ? svc->workers_cap * 2 : 4;
        svc->workers = mem_realloc(svc->workers, svc->workers_cap * sizeof *svc->workers);
    }
    svc->workers[svc->workers_len++] = worker;
    worker->service = svc;
    s_dispatch(self, svc);
    return 0;
}

/* ---- peers ---------------------------------------------------------------- */

static peer_t *s_peer_find(broker_t *self, const void *id, size_t len, uint64_t *key_out)
{
    uint64_t key = s_hash(id, len);
    *key_out = key;
    peer_t *p = hmap_get(self->peers, key);
    if (p && (p->id_len != len || memcmp(p->id, id, len) != 0))
        return NULL;
    return p;
}

/* Ends everything a peer is part of: requests it serves fail with
 * worker_lost, requests it asked are cancelled on their workers. */
static void s_peer_release(broker_t *self, peer_t *peer)
{
    size_t pos = 0;
    uint64_t key;
    void *value;
    while (hmap_size(peer->serving) > 0) {
        pos = 0;
        hmap_next(peer->serving, &pos, &key, &value);
        request_t *req = value;
        s_request_fail(self, req, "worker_lost", "the worker serving the request was lost");
    }
    while (hmap_size(peer->asked) > 0) {
        pos = 0;
        hmap_next(peer->asked, &pos, &key, &value);
        request_t *req = value;
        hmap_del(peer->asked, req->asker_id);
        req->asker = NULL;
        if (req->worker)
            s_send_id(self, req->worker, FRAME_CANCEL, req->rid, req->service->name);
        else
            s_request_free(self, req);
    }
    s_service_detach(self, peer);
}

/* Releases a peer now: only from the top of a frame handler, the heartbeat
 * or the end of the turn, never from inside a send. */
static void s_mark_dead(broker_t *self, peer_t *peer, const char *why)
{
    if (peer->dead)
        return;
    peer->dead = 1;
    LOGI("peer.lost", "peer=%s name=%s reason=%s", peer->hex, peer->name, why);
    hmap_del(self->peers, peer->key);
    s_peer_release(self, peer);
    peer->next_dead = self->dead;
    self->dead = peer;
}

static void s_reap(broker_t *self)
{
    while (self->unreachable) {
        peer_t *p = self->unreachable;
        self->unreachable = p->next_unreachable;
        if (!p->dead)
            s_mark_dead(self, p, "unreachable"); /* may defer more peers */
    }
    while (self->dead) {
        peer_t *p = self->dead;
        self->dead = p->next_dead;
        hmap_destroy(&p->serving);
        hmap_destroy(&p->asked);
        mem_free(p);
    }
}

static peer_t *s_peer_new(broker_t *self, const void *id, size_t len, uint64_t key)
{
    if (hmap_size(self->peers) >= S_PEERS_MAX)
        return NULL;
    peer_t *p = mem_alloc(sizeof *p);
    p->key = key;
    memcpy(p->id, id, len);
    p->id_len = len;
    for (size_t i = 0; i < len && i < 7; i++)
        snprintf(p->hex + 2 * i, 3, "%02x", p->id[i]);
    p->serving = hmap_new(FRAME_CAPACITY_MAX);
    p->asked = hmap_new(S_REQUESTS_MAX);
    if (hmap_put(self->peers, key, p) != 0) {
        hmap_destroy(&p->serving);
        hmap_destroy(&p->asked);
        mem_free(p);
        return NULL;
    }
    return p;
}

/* ---- frames from peers ---------------------------------------------------- */

static void s_reject(broker_t *self, const uint8_t *id, size_t id_len, const char *reason,
                     const void *hdr, size_t hdr_len, zmq_msg_t *body)
{
    self->stats.frames_rejected++;
    char hex[16] = "";
    for (size_t i = 0; i < id_len && i < 7; i++)
        snprintf(hex + 2 * i, 3, "%02x", id[i]);
    char note[64];
    snprintf(note, sizeof note, "rejected: %s", reason);
    if (self->tap && self->tap_subscribed > 0) {
        peer_t shown;
        memcpy(shown.hex, hex, sizeof hex);
        s_tap(self, "in", &shown, "", hdr, hdr_len, body, note);
    }
    unsigned held;
    int show = ratelog_allow(&self->rejects, clock_mono_ms(), &held);
    if (held)
        LOGW("frame.reject", "suppressed=%u (last second)", held);
    if (show)
        LOGW("frame.reject", "peer=%s reason=%s size=%zu", hex, reason, hdr_len);
}

static void s_on_ready(broker_t *self, peer_t *peer, const frame_t *f, const uint8_t *id,
                       size_t id_len, uint64_t key)
{
    if (peer) {
        /* A known peer announcing again has lost its state (it thought the
         * link was down): forget what it was part of, then register anew. */
        s_mark_dead(self, peer, "re-announced");
        peer = NULL;
    }
    peer = s_peer_new(self, id, id_len, key);
    if (!peer) {
        LOGW("peer.refused", "reason=too many peers");
        return;
    }
    memcpy(peer->name, f->service, f->service_len);
    peer->capacity = f->capacity;
    peer->expiry = clock_mono_ms() + self->cfg.heartbeat_ms * self->cfg.liveness;
    if (f->capacity > 0 && s_service_attach(self, peer, f->service, f->service_len) != 0) {
        LOGW("peer.refused", "peer=%s service=%s reason=service table full", peer->hex,
             peer->name);
        s_mark_dead(self, peer, "refused");
        return;
    }
    LOGI("peer.joined", "peer=%s name=%s capacity=%u", peer->hex, peer->name, peer->capacity);
}

static void s_on_request(broker_t *self, peer_t *asker, const frame_t *f, zmq_msg_t *body)
{
    if (hmap_get(asker->asked, f->id)) {
        LOGW("frame.reject", "peer=%s reason=duplicate request id=%llu", asker->hex,
             (unsigned long long)f->id);
        self->stats.frames_rejected++;
        zmq_msg_close(body);
        return;
    }
    service_t *svc = s_service_get(self, f->service, f->service_len);
    const char *tap_service = svc ? svc->name : "";
    if (!svc || svc->workers_len == 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "no worker serves '%.*s'", (int)f->service_len, f->service);
        zmq_msg_close(body);
        s_send_error(self, asker, f->id, "unknown_service", msg, tap_service);
        return;
    }
    peer_t *worker = s_pick_worker(svc);
    if (!worker && svc->queued >= (size_t)self->cfg.queue_max) {
        zmq_msg_close(body);
        s_send_error(self, asker, f->id, "overloaded", "the service's queue is full", svc->name);
        return;
    }
    request_t *req = mem_alloc(sizeof *req);
    req->rid = ++self->next_rid;
    req->asker = asker;
    req->asker_id = f->id;
    req->service = svc;
    zmq_msg_init(&req->body);
    if (hmap_put(self->requests, req->rid, req) != 0) {
        mem_free(req);
        zmq_msg_close(body);
        s_send_error(self, asker, f->id, "overloaded", "too many requests in flight", svc->name);
        return;
    }
    hmap_put(asker->asked, f->id, req);
    self->stats.requests++;
    if (worker) {
        s_deliver(self, req, worker, body);
        return;
    }
    zmq_msg_move(&req->body, body); /* wait in the FIFO */
    req->prev = svc->tail;
    if (svc->tail)
        svc->tail->next = req;
    else
        svc->head = req;
    svc->tail = req;
    svc->queued++;
}

/* STREAM, REPLY, ERROR from a worker: forward to the requester. */
static void s_on_answer(broker_t *self, peer_t *worker, const frame_t *f, zmq_msg_t *body)
{
    request_t *req = hmap_get(worker->serving, f->id);
    if (!req) {
        /* Ended already (cancelled, or the requester left): nothing to do. */
        if (body)
            zmq_msg_close(body);
        return;
    }
    int final = f->type != FRAME_STREAM;
    if (req->asker) {
        uint8_t hdr[FRAME_HEADER_MAX];
        frame_t out = *f;
        out.id = req->asker_id;
        size_t n = frame_encode(&out, hdr, sizeof hdr);
        s_send(self, req->asker, hdr, n, body, req->service->name);
    } else if (body) {
        zmq_msg_close(body);
    }
    if (final) {
        service_t *svc = req->service;
        s_request_free(self, req);
        s_dispatch(self, svc);
    }
}

static void s_on_cancel(broker_t *self, peer_t *asker, const frame_t *f)
{
    request_t *req = hmap_get(asker->asked, f->id);
    if (!req)
        return; /* ended already: the final frame is on its way */
    s_send_error(self, asker, f->id, "cancelled", "cancelled by requester", req->service->name);
    hmap_del(asker->asked, f->id);
    req->asker = NULL;
    if (req->worker)
        s_send_id(self, req->worker, FRAME_CANCEL, req->rid, req->service->name);
    else
        s_request_free(self, req);
}

static void s_on_services(broker_t *self, peer_t *asker, const frame_t *f)
{
    mp_buf_t b;
    mp_buf_init(&b, (size_t)self->cfg.body_max);
    msgpack_pack_array(&b.pk, (uint32_t)hmap_size(self->services));
    size_t pos = 0;
    uint64_t key;
    void *value;
    while (hmap_next(self->services, &pos, &key, &value) == 0) {
        service_t *svc = value;
        uint64_t capacity = 0, busy = 0;
        for (size_t i = 0; i < svc->workers_len; i++) {
            capacity += svc->workers[i]->capacity;
            busy += hmap_size(svc->workers[i]->serving);
        }
        msgpack_pack_array(&b.pk, 5);
        mp_pack_cstr(&b, svc->name);
        msgpack_pack_uint64(&b.pk, svc->workers_len);
        msgpack_pack_uint64(&b.pk, capacity);
        msgpack_pack_uint64(&b.pk, capacity > busy ? capacity - busy : 0);
        msgpack_pack_uint64(&b.pk, svc->queued);
    }
    if (b.overflow) {
        s_send_error(self, asker, f->id, "too_large", "service list over the body maximum", "");
    } else {
        uint8_t hdr[FRAME_HEADER_MAX];
        size_t n = frame_encode_id(FRAME_REPLY, f->id, hdr, sizeof hdr);
        zmq_msg_t body;
        zmq_msg_init_size(&body, b.len);
        memcpy(zmq_msg_data(&body), b.data, b.len);
        s_send(self, asker, hdr, n, &body, "");
    }
    mp_buf_free(&b);
}

/* Receives and handles one message. Returns 0, or -1 when none was ready. */
static int s_handle_one(broker_t *self)
{
    zmq_msg_t parts[3]; /* routing id, header, body */
    int count = 0, extra = 0;
    zmq_msg_init(&parts[0]);
    if (zmq_msg_recv(&parts[0], self->router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&parts[0]);
        return -1;
    }
    count = 1;
    int more = zmq_msg_more(&parts[0]);
    while (more) { /* the rest of a message is there once its first part is */
        zmq_msg_t scratch;
        zmq_msg_t *m = count < 3 ? &parts[count] : &scratch;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, self->router, 0) < 0) {
            zmq_msg_close(m);
            break;
        }
        more = zmq_msg_more(m);
        if (m == &scratch) {
            zmq_msg_close(m);
            extra = 1;
        } else {
            count++;
        }
    }
    self->stats.frames_in++;
    const uint8_t *id = zmq_msg_data(&parts[0]);
    size_t id_len = zmq_msg_size(&parts[0]);
    const uint8_t *hdr = count > 1 ? zmq_msg_data(&parts[1]) : NULL;
    size_t hdr_len = count > 1 ? zmq_msg_size(&parts[1]) : 0;
    zmq_msg_t *body = count > 2 ? &parts[2] : NULL;
    uint64_t key;
    peer_t *peer = s_peer_find(self, id, id_len, &key);
    frame_t f;
    frame_err_t err = FRAME_OK;
    if (count < 2)
        err = FRAME_E_EMPTY;
    else if (extra)
        err = FRAME_E_PARTS;
    else if (body && zmq_msg_size(body) > (size_t)self->cfg.body_max)
        err = FRAME_E_TOO_LARGE;
    else
        err = frame_decode(hdr, hdr_len, body != NULL, &f);
    if (err != FRAME_OK) {
        s_reject(self, id, id_len, frame_strerror(err), hdr, hdr_len, body);
        /* A too-large request is answered so the requester is not left waiting. */
        if (err == FRAME_E_TOO_LARGE && peer && frame_decode(hdr, hdr_len, 1, &f) == FRAME_OK &&
            f.type == FRAME_REQUEST)
            s_send_error(self, peer, f.id, "too_large", "body over the broker's maximum", "");
        goto done;
    }
    if (!peer && f.type != FRAME_READY) {
        if (f.type != FRAME_DISCONNECT) {
            s_reject(self, id, id_len, "unknown peer", hdr, hdr_len, body);
            s_send_disconnect_raw(self, id, id_len);
        }
        goto done;
    }
    const char *svc_name = peer && peer->service ? peer->service->name : "";
    if (f.type == FRAME_REQUEST)
        svc_name = "";
    if (self->tap && self->tap_subscribed > 0) {
        const char *shown = svc_name;
        char name[FRAME_SERVICE_MAX + 1];
        if (f.type == FRAME_REQUEST || f.type == FRAME_READY) {
            memcpy(name, f.service, f.service_len);
            name[f.service_len] = '\0';
            shown = name;
        } else if (peer && f.type != FRAME_HEARTBEAT) {
            /* Answers name requests the peer serves (our ids); a CANCEL
             * names one it asked for (its ids): two id spaces. */
            request_t *req = f.type == FRAME_CANCEL ? hmap_get(peer->asked, f.id)
                                                    : hmap_get(peer->serving, f.id);
            if (req)
                shown = req->service->name;
        }
        s_tap(self, "in", peer, shown, hdr, hdr_len, body, NULL);
    }
    if (peer)
        peer->expiry = clock_mono_ms() + self->cfg.heartbeat_ms * self->cfg.liveness;
    switch (f.type) {
    case FRAME_READY:
        s_on_ready(self, peer, &f, id, id_len, key);
        break;
    case FRAME_HEARTBEAT:
        break;
    case FRAME_DISCONNECT:
        s_mark_dead(self, peer, "disconnected");
        break;
    case FRAME_REQUEST:
        s_on_request(self, peer, &f, body);
        body = NULL;
        break;
    case FRAME_STREAM:
    case FRAME_REPLY:
    case FRAME_ERROR:
        s_on_answer(self, peer, &f, body);
        body = NULL;
        break;
    case FRAME_CANCEL:
        s_on_cancel(self, peer, &f);
        break;
    case FRAME_SERVICES:
        s_on_services(self, peer, &f);
        break;
    }
done:
    for (int i = 0; i < count; i++) {
        if (i == 2 && !body)
            continue; /* moved on */
        zmq_msg_close(&parts[i]);
    }
    return 0;
}

/* ---- heartbeats and the loop ------------------------------------------------ */

/* Copies the peer pointers: sends and releases change the map. Pointers
 * stay valid until s_reap. Caller frees the array. */
static peer_t **s_peers_snapshot(broker_t *self, size_t *count)
{
    size_t n = hmap_size(self->peers), pos = 0, i = 0;
    peer_t **all = mem_alloc((n ? n : 1) * sizeof *all);
    uint64_t key;
    void *value;
    while (i < n && hmap_next(self->peers, &pos, &key, &value) == 0)
        all[i++] = value;
    *count = i;
    return all;
}

static void s_heartbeat(broker_t *self, int64_t now)
{
    uint8_t hdr[16];
    size_t n = frame_encode_id(FRAME_HEARTBEAT, 0, hdr, sizeof hdr);
    size_t count;
    peer_t **all = s_peers_snapshot(self, &count);
    for (size_t i = 0; i < count; i++) {
        peer_t *p = all[i];
        if (p->dead)
            continue;
        if (p->expiry <= now)
            s_mark_dead(self, p, "heartbeat expired");
        else
            s_send(self, p, hdr, n, NULL, p->service ? p->service->name : "");
    }
    mem_free(all);
}

int broker_run(broker_t *self, volatile sig_atomic_t *stop)
{
    zmq_pollitem_t items[2] = {{self->router, 0, ZMQ_POLLIN, 0}, {self->tap, 0, ZMQ_POLLIN, 0}};
    int nitems = self->tap ? 2 : 1;
    self->next_heartbeat = clock_mono_ms() + self->cfg.heartbeat_ms;
    while (!*stop) {
        int64_t now = clock_mono_ms();
        long timeout = self->next_heartbeat > now ? (long)(self->next_heartbeat - now) : 0;
        int rc = zmq_poll(items, nitems, timeout);
        if (rc < 0 && errno != EINTR) {
            LOGE("broker.poll", "error=%s", zmq_strerror(errno));
            return -1;
        }
        if (nitems == 2 && (items[1].revents & ZMQ_POLLIN))
            s_tap_drain(self);
        for (int i = 0; i < S_BATCH; i++) {
            if (s_handle_one(self) < 0)
                break;
        }
        now = clock_mono_ms();
        if (now >= self->next_heartbeat) {
            s_heartbeat(self, now);
            self->next_heartbeat = now + self->cfg.heartbeat_ms;
        }
        s_reap(self);
    }
    return 0;
}

/* ---- lifecycle -------------------------------------------------------------- */

static int s_bind(void *sock, const char *endpoint, const char *what, char *err, size_t errlen)
{
    if (zmq_bind(sock, endpoint) != 0) {
        snprintf(err, errlen, "cannot bind %s endpoint '%s': %s", what, endpoint,
                 zmq_strerror(errno));
        return -1;
    }
    return 0;
}

broker_t *broker_new(const broker_config_t *cfg, char *err, size_t errlen)
{
    broker_t *self = mem_alloc(sizeof *self);
    self->cfg = *cfg;
    int curve = cfg->curve_secret && *cfg->curve_secret;
    if (curve) {
        /* zauth answers ZAP requests in czmq's context: the ROUTER must live
         * there too. Only allowed client certificates get through. */
        struct stat sb;
        if (!cfg->curve_allow || stat(cfg->curve_allow, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
            snprintf(err, errlen, "CURVE needs a directory of allowed client certificates "
                                  "(--curve-allow), '%s' is not one",
                     cfg->curve_allow ? cfg->curve_allow : "");
            mem_free(self);
            return NULL;
        }
        zsys_handler_set(NULL);
        self->ctx = zsys_init();
        self->auth = zactor_new(zauth, NULL);
        zstr_sendx(self->auth, "CURVE", cfg->curve_allow, NULL);
        zsock_wait(self->auth);
    } else {
        self->ctx = zmq_ctx_new();
        self->ctx_owned = 1;
    }
    self->router = zmq_socket(self->ctx, ZMQ_ROUTER);
    int one = 1, zero = 0, hwm = 1000000;
    if (curve && (zmq_setsockopt(self->router, ZMQ_CURVE_SERVER, &one, sizeof one) ||
                  zmq_setsockopt(self->router, ZMQ_ZAP_DOMAIN, "global", 6) ||
                  zmq_setsockopt(self->router, ZMQ_CURVE_SECRETKEY, cfg->curve_secret,
                                 strlen(cfg->curve_secret)))) {
        snprintf(err, errlen, "invalid CURVE secret key (40 z85 characters expected)");
        goto fail;
    }
    zmq_setsockopt(self->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(self->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(self->router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    /* Bodies a little over the maximum get a too_large answer; only absurd
     * sizes are cut at the socket, before they are buffered. */
    int64_t maxmsg = 2 * (int64_t)cfg->body_max + FRAME_HEADER_MAX;
    zmq_setsockopt(self->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (s_bind(self->router, cfg->endpoint, "broker", err, errlen) != 0)
        goto fail;
    if (cfg->tap_endpoint && *cfg->tap_endpoint) {
        self->tap = zmq_socket(self->ctx, ZMQ_XPUB);
        int tap_hwm = (int)cfg->tap_hwm;
        zmq_setsockopt(self->tap, ZMQ_XPUB_NODROP, &one, sizeof one); /* EAGAIN = counted drop */
        zmq_setsockopt(self->tap, ZMQ_SNDHWM, &tap_hwm, sizeof tap_hwm);
        zmq_setsockopt(self->tap, ZMQ_LINGER, &zero, sizeof zero);
        if (s_bind(self->tap, cfg->tap_endpoint, "tap", err, errlen) != 0)
            goto fail;
    }
    self->peers = hmap_new(S_PEERS_MAX);
    self->services = hmap_new(S_PEERS_MAX);
    self->requests = hmap_new(S_REQUESTS_MAX);
    return self;
fail:
    zmq_close(self->router);
    if (self->tap)
        zmq_close(self->tap);
    zactor_destroy(&self->auth);
    if (self->ctx_owned)
        zmq_ctx_term(self->ctx);
    mem_free(self);
    return NULL;
}

void broker_destroy(broker_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    broker_t *self = *self_p;
    uint8_t hdr[16];
    size_t n = frame_encode_id(FRAME_DISCONNECT, 0, hdr, sizeof hdr);
    size_t count;
    peer_t **all = s_peers_snapshot(self, &count);
    for (size_t i = 0; i < count; i++)
        s_send(self, all[i], hdr, n, NULL, "");
    for (size_t i = 0; i < count; i++) {
        all[i]->unreachable = 1; /* no more sends while everything goes */
        s_mark_dead(self, all[i], "broker stopping");
    }
    mem_free(all);
    s_reap(self);
    /* Orphaned requests whose worker is gone were freed with it; none remain. */
    hmap_destroy(&self->peers);
    hmap_destroy(&self->services);
    hmap_destroy(&self->requests);
    zmq_close(self->router);
    if (self->tap)
        zmq_close(self->tap);
    zactor_destroy(&self->auth);
    if (self->ctx_owned)
        zmq_ctx_term(self->ctx);
    mem_free(self);
    *self_p = NULL;
}

void broker_stats(const broker_t *self, broker_stats_t *out)
{
    *out = self->stats;
    out->peers = hmap_size(self->peers);
}
