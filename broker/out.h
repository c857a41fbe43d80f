/* out: what the broker sends. Frames to peers on the ROUTER, the DISCONNECT
 * to a routing id it does not know, and the copies it publishes on the tap.
 *
 * Nothing here blocks: every send uses ZMQ_DONTWAIT. A send that finds its
 * peer gone (EHOSTUNREACH, ZMQ_ROUTER_MANDATORY) marks the peer unreachable;
 * the peer is released at the end of the turn (registry_reap), never here. */
#ifndef MAP_BROKER_OUT_H
#define MAP_BROKER_OUT_H
#include "core.h"

/* Sends [peer's id, hdr, body?] to peer, after its copy on the tap
 * (direction "out", service shown as service). Takes body: it is sent, or
 * closed on failure. Returns 0, or -1 when the peer is dead or unreachable
 * (nothing counted) or the send failed (frames_dropped counted; on
 * EHOSTUNREACH the peer is marked unreachable). */
int out_send(broker_t *self, peer_t *peer, const uint8_t *hdr, size_t hdr_len, zmq_msg_t *body,
             const char *service);
/* Sends a header-only frame [1,type,id] (CANCEL, DISCONNECT, ...). */
void out_send_id(broker_t *self, peer_t *peer, frame_type_t type, uint64_t id, const char *service);
/* Sends ERROR [1,7,id,code,message]. */
void out_send_error(broker_t *self, peer_t *peer, uint64_t id, const char *code,
                    const char *message, const char *service);
/* Sends DISCONNECT to a routing id we know no peer for; not tapped, not
 * counted. */
void out_send_disconnect_raw(broker_t *self, const void *id, size_t id_len);

/* Publishes one frame on the tap as [meta, hdr, body?], where meta is the
 * msgpack array [1, dir, peer hex or "", service or "", wall µs, note or ""].
 * Does nothing without a tap or a subscriber. body is copied, not taken.
 * At the tap's high-water mark the copy is dropped and counted
 * (tap_dropped); else counted in tap_published. */
void out_tap(broker_t *self, const char *dir, const peer_t *peer, const char *service,
             const void *hdr, size_t hdr_len, zmq_msg_t *body, const char *note);
/* Reads up to 64 subscription changes from the tap's XPUB and counts the
 * subscriptions (tap_subscribed). Never blocks. */
void out_tap_drain(broker_t *self);

#endif
