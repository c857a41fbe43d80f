/* registry: the broker's peers, services and requests, and the credit that
 * decides where a request goes (core.h has the objects, their owners and
 * invariants).
 *
 * Where a request goes: to the worker of its service with the most free
 * credit (capacity minus requests held; the first such worker on a tie),
 * else into the service's FIFO while fewer than queue_max wait. A final
 * answer frees its credit; registry_dispatch then moves waiting requests to
 * workers in FIFO order.
 *
 * The registry sends what its changes mean to peers (a REQUEST to the worker
 * that takes one, an ERROR to a requester whose request it ends, a CANCEL to
 * the worker of a request whose requester left) through out.h. */
#ifndef MAP_BROKER_REGISTRY_H
#define MAP_BROKER_REGISTRY_H
#include "core.h"

/* What registry_route did with a request. */
typedef enum {
    REGISTRY_DELIVERED = 0, /* sent to a worker */
    REGISTRY_QUEUED,        /* waiting in its service's FIFO */
    REGISTRY_QUEUE_FULL,    /* no free credit and queue_max waiting: not kept */
    REGISTRY_TOO_MANY,      /* BROKER_REQUESTS_MAX in flight: not kept */
} registry_route_t;

/* Returns the live peer with routing id id, or NULL. OUT: *key_out, the id's
 * key (for registry_peer_new), also when NULL is returned. */
peer_t *registry_peer_find(broker_t *self, const void *id, size_t len, uint64_t *key_out);
/* Adds a peer (no service, capacity 0) with id (len <= BROKER_ID_MAX) under
 * key. Returns it, or NULL when BROKER_PEERS_MAX peers are known or the map
 * refuses the key. */
peer_t *registry_peer_new(broker_t *self, const void *id, size_t len, uint64_t key);
/* Releases a peer now, logging why: out of self->peers; requests it serves
 * fail with worker_lost to their requesters; requests it asked are orphaned
 * (registry_request_orphan); it leaves its service (freed with its queued
 * requests failing unknown_service when it was the last worker). The peer is
 * freed by registry_reap. Only from the top of a frame handler, the heartbeat
 * or the end of the turn, never from inside a send. No-op on a dead peer. */
void registry_mark_dead(broker_t *self, peer_t *peer, const char *why);
/* End of the turn: releases the peers a send found unreachable (which may
 * find more), then frees every dead peer. */
void registry_reap(broker_t *self);

/* Returns the service called name, or NULL. */
service_t *registry_service_get(broker_t *self, const char *name, size_t len);
/* Adds worker to the service called name (created when new), then
 * dispatches its waiting requests. Returns 0, or -1 when another name has
 * the same key or the service table is full. */
int registry_service_attach(broker_t *self, peer_t *worker, const char *name, size_t len);

/* Returns the live worker of svc with the most free credit, the first on a
 * tie, or NULL when none has any. */
peer_t *registry_pick_worker(service_t *svc);
/* Hands req to worker (now held by it) and sends it the REQUEST with our
 * id. Takes body. */
void registry_deliver(broker_t *self, request_t *req, peer_t *worker, zmq_msg_t *body);
/* Moves waiting requests of svc, oldest first, to workers with free credit. */
void registry_dispatch(broker_t *self, service_t *svc);

/* Routes a new request asker made (its id asker_id; not already in
 * asker->asked) to svc, a service with workers: REGISTRY_DELIVERED or
 * REGISTRY_QUEUED (requests counted), or, when it is not kept,
 * REGISTRY_QUEUE_FULL or REGISTRY_TOO_MANY (the caller answers the
 * requester). Takes body: delivered, kept in the queue, or closed. */
registry_route_t registry_route(broker_t *self, peer_t *asker, uint64_t asker_id, service_t *svc,
                                zmq_msg_t *body);
/* Removes req from every index and frees it. Does not dispatch. */
void registry_request_free(broker_t *self, request_t *req);
/* Ends req for its requester (if any) with ERROR code/msg, then frees it. */
void registry_request_fail(broker_t *self, request_t *req, const char *code, const char *msg);
/* The requester no longer waits for req (it left, or cancelled): req leaves
 * asker->asked; held by a worker, the worker is sent CANCEL and req stays,
 * orphaned, until the worker's final frame; queued, req is freed. */
void registry_request_orphan(broker_t *self, request_t *req);

#endif
