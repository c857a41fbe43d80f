/* core: the broker's state, shared by the files that make up the broker
 * (broker.c: the loop, the frame handlers, heartbeats and lifecycle;
 * registry.c: peers, services, requests and the credit; out.c: sending and
 * the tap). Not an API: components use broker.h; the broker's unit tests
 * include this to build and inspect the state.
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
 *   - Peers are freed only at the end of a loop turn (registry_reap), never
 *     while a frame of theirs is being handled.
 *
 * broker_new creates everything here and broker_destroy frees it; the
 * modules borrow. One thread. */
#ifndef MAP_BROKER_CORE_H
#define MAP_BROKER_CORE_H
#include "broker.h"

#include "common/hmap.h"
#include "common/ratelog.h"
#include "proto/frame.h"

#include <czmq.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#define BROKER_PEERS_MAX 100000      /* peers known at once */
#define BROKER_REQUESTS_MAX 1000000  /* requests routed at once */
#define BROKER_ID_MAX 255            /* bytes of a ZeroMQ routing id */

typedef struct service_t service_t;
typedef struct request_t request_t;

typedef struct peer_t {
    uint64_t key;            /* hash of id, key in self->peers */
    uint8_t id[BROKER_ID_MAX]; /* ZeroMQ routing id */
    size_t id_len;
    char hex[16];            /* first bytes of id in hex, for logs and the tap */
    char name[FRAME_SERVICE_MAX + 1]; /* name from READY */
    service_t *service;      /* NULL for a requester */
    uint32_t capacity;       /* concurrent requests it takes */
    hmap_t *serving;         /* rid → request held by this worker */
    hmap_t *asked;           /* requester's id → request it waits for */
    int64_t expiry;          /* mono ms after which it is dead */
    int dead;                /* released; freed by registry_reap */
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

#endif
