/* registry: peers, services, requests and the credit.
 *
 * Objects, owners and invariants: core.h. The rules of this file:
 *
 *   - A worker's free credit is derived, never stored: capacity minus the
 *     size of its serving map. registry_pick_worker takes the live worker
 *     with the most (the first on a tie) so the load spreads by what each
 *     can still take, not round-robin over workers that may be full.
 *   - A request with no free credit waits in its service's FIFO, at most
 *     queue_max of them; each final answer frees one credit and the FIFO's
 *     head goes to whichever worker then has the most.
 *   - Releasing a peer ends everything it is part of, in this order: the
 *     requests it serves fail (worker_lost), the requests it asked are
 *     orphaned (their workers get CANCEL and keep them until their final
 *     frame frees the credit), then it leaves its service; the last worker
 *     leaving frees the service and fails its queue (unknown_service).
 *   - A released peer leaves self->peers at once (a new peer may take its
 *     routing id in the same turn) but is freed only by registry_reap: the
 *     frame handler that released it may still hold it.
 *
 * Keys are FNV-1a hashes of routing ids and service names; a lookup that
 * finds another id or name under the same key treats it as unknown. */
#include "registry.h"

#include "out.h"

#include "common/log.h"
#include "common/mem.h"

#include <stdio.h>
#include <string.h>

/* FNV-1a: routing ids and service names are short. */
static uint64_t s_hash(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h ? h : 1;
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
void registry_request_free(broker_t *self, request_t *req)
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
void registry_request_fail(broker_t *self, request_t *req, const char *code, const char *msg)
{
    if (req->asker)
        out_send_error(self, req->asker, req->asker_id, code, msg, req->service->name);
    registry_request_free(self, req);
}

peer_t *registry_pick_worker(service_t *svc)
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
void registry_deliver(broker_t *self, request_t *req, peer_t *worker, zmq_msg_t *body)
{
    uint8_t hdr[FRAME_HEADER_MAX];
    frame_t f = {.type = FRAME_REQUEST,
                 .id = req->rid,
                 .service = req->service->name,
                 .service_len = (uint32_t)strlen(req->service->name)};
    size_t n = frame_encode(&f, hdr, sizeof hdr);
    req->worker = worker;
    hmap_put(worker->serving, req->rid, req);
    out_send(self, worker, hdr, n, body, req->service->name);
}

/* Moves waiting requests to workers with free credit. */
void registry_dispatch(broker_t *self, service_t *svc)
{
    while (svc->head) {
        peer_t *w = registry_pick_worker(svc);
        if (!w)
            return;
        request_t *req = svc->head;
        s_queue_remove(svc, req);
        zmq_msg_t body;
        zmq_msg_init(&body);
        zmq_msg_move(&body, &req->body);
        registry_deliver(self, req, w, &body);
    }
}

registry_route_t registry_route(broker_t *self, peer_t *asker, uint64_t asker_id, service_t *svc,
                                zmq_msg_t *body)
{
    peer_t *worker = registry_pick_worker(svc);
    if (!worker && svc->queued >= (size_t)self->cfg.queue_max) {
        zmq_msg_close(body);
        return REGISTRY_QUEUE_FULL;
    }
    request_t *req = mem_alloc(sizeof *req);
    req->rid = ++self->next_rid;
    req->asker = asker;
    req->asker_id = asker_id;
    req->service = svc;
    zmq_msg_init(&req->body);
    if (hmap_put(self->requests, req->rid, req) != 0) {
        mem_free(req);
        zmq_msg_close(body);
        return REGISTRY_TOO_MANY;
    }
    hmap_put(asker->asked, asker_id, req);
    self->stats.requests++;
    if (worker) {
        registry_deliver(self, req, worker, body);
        return REGISTRY_DELIVERED;
    }
    zmq_msg_move(&req->body, body); /* wait in the FIFO */
    req->prev = svc->tail;
    if (svc->tail)
        svc->tail->next = req;
    else
        svc->head = req;
    svc->tail = req;
    svc->queued++;
    return REGISTRY_QUEUED;
}

void registry_request_orphan(broker_t *self, request_t *req)
{
    hmap_del(req->asker->asked, req->asker_id);
    req->asker = NULL;
    if (req->worker)
        out_send_id(self, req->worker, FRAME_CANCEL, req->rid, req->service->name);
    else
        registry_request_free(self, req);
}

service_t *registry_service_get(broker_t *self, const char *name, size_t len)
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
            registry_request_fail(self, svc->head, "unknown_service", "the service's last worker left");
        LOGI("service.gone", "service=%s", svc->name);
        hmap_del(self->services, svc->key);
        mem_free(svc->workers);
        mem_free(svc);
    }
}

int registry_service_attach(broker_t *self, peer_t *worker, const char *name, size_t len)
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
    registry_dispatch(self, svc);
    return 0;
}

/* ---- peers ---------------------------------------------------------------- */

peer_t *registry_peer_find(broker_t *self, const void *id, size_t len, uint64_t *key_out)
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
        registry_request_fail(self, req, "worker_lost", "the worker serving the request was lost");
    }
    while (hmap_size(peer->asked) > 0) {
        pos = 0;
        hmap_next(peer->asked, &pos, &key, &value);
        registry_request_orphan(self, value);
    }
    s_service_detach(self, peer);
}

/* Only from the top of a frame handler, the heartbeat or the end of the
 * turn, never from inside a send (out.c defers those). */
void registry_mark_dead(broker_t *self, peer_t *peer, const char *why)
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

void registry_reap(broker_t *self)
{
    while (self->unreachable) {
        peer_t *p = self->unreachable;
        self->unreachable = p->next_unreachable;
        if (!p->dead)
            registry_mark_dead(self, p, "unreachable"); /* may defer more peers */
    }
    while (self->dead) {
        peer_t *p = self->dead;
        self->dead = p->next_dead;
        hmap_destroy(&p->serving);
        hmap_destroy(&p->asked);
        mem_free(p);
    }
}

peer_t *registry_peer_new(broker_t *self, const void *id, size_t len, uint64_t key)
{
    if (hmap_size(self->peers) >= BROKER_PEERS_MAX)
        return NULL;
    peer_t *p = mem_alloc(sizeof *p);
    p->key = key;
    memcpy(p->id, id, len);
    p->id_len = len;
    for (size_t i = 0; i < len && i < 7; i++)
        snprintf(p->hex + 2 * i, 3, "%02x", p->id[i]);
    p->serving = hmap_new(FRAME_CAPACITY_MAX);
    p->asked = hmap_new(BROKER_REQUESTS_MAX);
    if (hmap_put(self->peers, key, p) != 0) {
        hmap_destroy(&p->serving);
        hmap_destroy(&p->asked);
        mem_free(p);
        return NULL;
    }
    return p;
}
