/* broker: the ROUTER hub. Knows services, workers and their credit, routes
 * requests to workers and their streams, replies and cancels back, detects
 * dead peers by heartbeat and copies every frame to the tap.
 *
 * One thread, one loop (broker_run). Nothing it does blocks: sends to peers
 * use ZMQ_DONTWAIT with ZMQ_ROUTER_MANDATORY, the tap drops at its
 * high-water mark. */
#ifndef MAP_BROKER_H
#define MAP_BROKER_H
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

typedef struct broker_t broker_t;

typedef struct {
    const char *endpoint;     /* ROUTER bind endpoint (tcp://, ipc://) */
    const char *tap_endpoint; /* XPUB bind endpoint; NULL or "" for none */
    long heartbeat_ms;        /* interval of heartbeats both ways */
    long liveness;            /* missed intervals before a peer is dead */
    long queue_max;           /* requests waiting per service */
    long body_max;            /* largest body routed, bytes */
    long tap_hwm;             /* tap copies queued before dropping */
    const char *curve_secret; /* our CURVE secret key (z85); NULL or "": plaintext */
    const char *curve_allow;  /* with CURVE: directory of the client certificates allowed */
} broker_config_t;

typedef struct {
    uint64_t frames_in;      /* frames received from peers */
    uint64_t frames_out;     /* frames sent to peers */
    uint64_t frames_rejected; /* malformed, unknown sender, too large */
    uint64_t frames_dropped; /* sends that failed: peer gone or queue full */
    uint64_t tap_published;  /* copies the tap took */
    uint64_t tap_dropped;    /* copies the tap refused at its high-water mark */
    uint64_t requests;       /* requests accepted */
    uint64_t peers;          /* peers known now */
} broker_stats_t;

/* Binds both endpoints. Returns NULL with one sentence in err when an
 * endpoint is invalid or taken. */
broker_t *broker_new(const broker_config_t *cfg, char *err, size_t errlen);
/* Sends DISCONNECT to every peer and closes. NULL-safe. */
void broker_destroy(broker_t **self_p);
/* Runs until *stop is set. Returns 0. */
int broker_run(broker_t *self, volatile sig_atomic_t *stop);
void broker_stats(const broker_t *self, broker_stats_t *out);

#endif
