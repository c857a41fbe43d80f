/* broker: the loop, the frames from peers, heartbeats and lifecycle.
 *
 * The state and its invariants are in core.h; where requests go (peers,
 * services, credit, the queue) is registry.c; what the broker sends and
 * copies to the tap is out.c. This file reads one message at a time off the
 * ROUTER, checks it (strict decode, body maximum, known sender), copies it
 * to the tap and hands it to its handler (s_on_*).
 *
 * The loop (broker_run) is one zmq_poll over the ROUTER and the tap's XPUB
 * until the next heartbeat is due; then up to S_BATCH messages; then the
 * heartbeat when due; then registry_reap, the only place peers are freed.
 *
 * Why ids are rewritten: each requester numbers its own requests; the broker
 * gives each request its own id so that workers see one id space and the
 * stream path needs one hash lookup, no per-requester state. */
#include "broker.h"

#include "core.h"
#include "out.h"
#include "registry.h"

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
        out_tap(self, "in", &shown, "", hdr, hdr_len, body, note);
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
        registry_mark_dead(self, peer, "re-announced");
        peer = NULL;
    }
    peer = registry_peer_new(self, id, id_len, key);
    if (!peer) {
        LOGW("peer.refused", "reason=too many peers");
        return;
    }
    memcpy(peer->name, f->service, f->service_len);
    peer->capacity = f->capacity;
    peer->expiry = clock_mono_ms() + self->cfg.heartbeat_ms * self->cfg.liveness;
    if (f->capacity > 0 && registry_service_attach(self, peer, f->service, f->service_len) != 0) {
        LOGW("peer.refused", "peer=%s service=%s reason=service table full", peer->hex,
             peer->name);
        registry_mark_dead(self, peer, "refused");
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
    service_t *svc = registry_service_get(self, f->service, f->service_len);
    const char *tap_service = svc ? svc->name : "";
    if (!svc || svc->workers_len == 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "no worker serves '%.*s'", (int)f->service_len, f->service);
        zmq_msg_close(body);
        out_send_error(self, asker, f->id, "unknown_service", msg, tap_service);
        return;
    }
    switch (registry_route(self, asker, f->id, svc, body)) {
    case REGISTRY_QUEUE_FULL:
        out_send_error(self, asker, f->id, "overloaded", "the service's queue is full", svc->name);
        break;
    case REGISTRY_TOO_MANY:
        out_send_error(self, asker, f->id, "overloaded", "too many requests in flight", svc->name);
        break;
    case REGISTRY_DELIVERED:
    case REGISTRY_QUEUED:
        break;
    }
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
        out_send(self, req->asker, hdr, n, body, req->service->name);
    } else if (body) {
        zmq_msg_close(body);
    }
    if (final) {
        service_t *svc = req->service;
        registry_request_free(self, req);
        registry_dispatch(self, svc);
    }
}

static void s_on_cancel(broker_t *self, peer_t *asker, const frame_t *f)
{
    request_t *req = hmap_get(asker->asked, f->id);
    if (!req)
        return; /* ended already: the final frame is on its way */
    out_send_error(self, asker, f->id, "cancelled", "cancelled by requester", req->service->name);
    registry_request_orphan(self, req);
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
        out_send_error(self, asker, f->id, "too_large", "service list over the body maximum", "");
    } else {
        uint8_t hdr[FRAME_HEADER_MAX];
        size_t n = frame_encode_id(FRAME_REPLY, f->id, hdr, sizeof hdr);
        zmq_msg_t body;
        zmq_msg_init_size(&body, b.len);
        memcpy(zmq_msg_data(&body), b.data, b.len);
        out_send(self, asker, hdr, n, &body, "");
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
    peer_t *peer = registry_peer_find(self, id, id_len, &key);
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
            out_send_error(self, peer, f.id, "too_large", "body over the broker's maximum", "");
        goto done;
    }
    if (!peer && f.type != FRAME_READY) {
        if (f.type != FRAME_DISCONNECT) {
            s_reject(self, id, id_len, "unknown peer", hdr, hdr_len, body);
            out_send_disconnect_raw(self, id, id_len);
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
        out_tap(self, "in", peer, shown, hdr, hdr_len, body, NULL);
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
        registry_mark_dead(self, peer, "disconnected");
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
 * stay valid until registry_reap. Caller frees the array. */
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
            registry_mark_dead(self, p, "heartbeat expired");
        else
            out_send(self, p, hdr, n, NULL, p->service ? p->service->name : "");
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
            out_tap_drain(self);
        for (int i = 0; i < S_BATCH; i++) {
            if (s_handle_one(self) < 0)
                break;
        }
        now = clock_mono_ms();
        if (now >= self->next_heartbeat) {
            s_heartbeat(self, now);
            self->next_heartbeat = now + self->cfg.heartbeat_ms;
        }
        registry_reap(self);
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
    self->peers = hmap_new(BROKER_PEERS_MAX);
    self->services = hmap_new(BROKER_PEERS_MAX);
    self->requests = hmap_new(BROKER_REQUESTS_MAX);
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
        out_send(self, all[i], hdr, n, NULL, "");
    for (size_t i = 0; i < count; i++) {
        all[i]->unreachable = 1; /* no more sends while everything goes */
        registry_mark_dead(self, all[i], "broker stopping");
    }
    mem_free(all);
    registry_reap(self);
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
