/* out: the broker's sends and its tap.
 *
 * Every send is ZMQ_DONTWAIT on a ROUTER with ZMQ_ROUTER_MANDATORY, so a
 * send never blocks and a vanished peer is an error (EHOSTUNREACH), not a
 * silent drop. Such a peer is only marked (s_defer_dead): releasing it here
 * could free what the caller is using, its requests or its service, so the
 * release waits for the end of the turn (registry_reap).
 *
 * The routing id is the part that can fail: once ZeroMQ accepts it, the
 * header and body of the same message go too.
 *
 * The tap is an XPUB with ZMQ_XPUB_NODROP: at its high-water mark a send
 * fails with EAGAIN, which is the counted drop; nothing is copied while no
 * one subscribes (tap_subscribed, from the XPUB's subscription messages). */
#include "out.h"

#include "common/clock.h"
#include "common/log.h"
#include "proto/mp.h"

#include <errno.h>
#include <string.h>

/* ---- the tap ------------------------------------------------------------ */

/* Copies one frame to the tap: [meta, header, body?]. Never blocks; at the
 * high-water mark the copy is dropped and counted. */
void out_tap(broker_t *self, const char *dir, const peer_t *peer, const char *service,
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
void out_tap_drain(broker_t *self)
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
int out_send(broker_t *self, peer_t *peer, const uint8_t *hdr, size_t hdr_len, zmq_msg_t *body,
             const char *service)
{
    if (peer->dead || peer->unreachable) {
        if (body)
            zmq_msg_close(body);
        return -1;
    }
    out_tap(self, "out", peer, service, hdr, hdr_len, body, NULL);
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

void out_send_id(broker_t *self, peer_t *peer, frame_type_t type, uint64_t id, const char *service)
{
    uint8_t hdr[FRAME_HEADER_MAX];
    size_t n = frame_encode_id(type, id, hdr, sizeof hdr);
    out_send(self, peer, hdr, n, NULL, service);
}

void out_send_error(broker_t *self, peer_t *peer, uint64_t id, const char *code,
                    const char *message, const char *service)
{
    uint8_t hdr[FRAME_HEADER_MAX];
    size_t n = frame_encode_error(id, code, message, hdr, sizeof hdr);
    out_send(self, peer, hdr, n, NULL, service);
}

/* Sends DISCONNECT to a routing id we do not know (no peer object). */
void out_send_disconnect_raw(broker_t *self, const void *id, size_t id_len)
{
    uint8_t hdr[16];
    size_t n = frame_encode_id(FRAME_DISCONNECT, 0, hdr, sizeof hdr);
    if (zmq_send(self->router, id, id_len, ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0)
        return;
    zmq_send(self->router, hdr, n, ZMQ_DONTWAIT);
}

