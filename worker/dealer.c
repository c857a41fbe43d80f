/* dealer: see dealer.h. */
#include "dealer.h"

#include "proto/frame.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

int dealer_config(const worker_config_t *cfg, worker_config_t *out, char *err, size_t errlen)
{
    if (!cfg || !cfg->endpoint || !*cfg->endpoint) {
        snprintf(err, errlen, "the broker endpoint is empty");
        return -1;
    }
    size_t service_len = cfg->service ? strlen(cfg->service) : 0;
    if (service_len == 0 || service_len > FRAME_SERVICE_MAX) {
        snprintf(err, errlen, "the service name must have 1 to %d bytes", FRAME_SERVICE_MAX);
        return -1;
    }
    if (cfg->capacity > FRAME_CAPACITY_MAX) {
        snprintf(err, errlen, "capacity %u is over the maximum %d", cfg->capacity,
                 FRAME_CAPACITY_MAX);
        return -1;
    }
    if (cfg->heartbeat_ms < 0 || cfg->liveness < 0) {
        snprintf(err, errlen, "heartbeat and liveness must not be negative");
        return -1;
    }
    *out = *cfg;
    if (!out->heartbeat_ms)
        out->heartbeat_ms = DEALER_HEARTBEAT_DEFAULT;
    if (!out->liveness)
        out->liveness = DEALER_LIVENESS_DEFAULT;
    if (!out->body_max)
        out->body_max = FRAME_BODY_MAX_DEFAULT;
    if (!out->requests_max)
        out->requests_max = DEALER_REQUESTS_DEFAULT;
    const char *server = getenv("MAP_CURVE_SERVER_KEY");
    if (!out->curve_server_key && server && *server) {
        out->curve_server_key = server;
        out->curve_public_key = getenv("MAP_CURVE_PUBLIC_KEY");
        out->curve_secret_key = getenv("MAP_CURVE_SECRET_KEY");
    }
    if (out->curve_server_key && (!out->curve_public_key || !out->curve_secret_key)) {
        snprintf(err, errlen, "a CURVE server key needs our public and secret keys too "
                              "(MAP_CURVE_PUBLIC_KEY, MAP_CURVE_SECRET_KEY)");
        return -1;
    }
    return 0;
}

static int s_setopt_int(void *sock, int option, int value)
{
    return zmq_setsockopt(sock, option, &value, sizeof value);
}

static int s_setopt_str(void *sock, int option, const char *value)
{
    return zmq_setsockopt(sock, option, value, strlen(value));
}

void *dealer_open(void *ctx, const worker_config_t *cfg, int hwm, char *err, size_t errlen)
{
    void *sock = zmq_socket(ctx, ZMQ_DEALER);
    if (!sock) {
        snprintf(err, errlen, "cannot create a DEALER socket: %s", zmq_strerror(errno));
        return NULL;
    }
    if (s_setopt_int(sock, ZMQ_LINGER, 0) || s_setopt_int(sock, ZMQ_SNDHWM, hwm) ||
        s_setopt_int(sock, ZMQ_RCVHWM, hwm) || s_setopt_int(sock, ZMQ_IMMEDIATE, 1)) {
        snprintf(err, errlen, "cannot set socket options: %s", zmq_strerror(errno));
        goto fail;
    }
    if (cfg->curve_server_key &&
        (s_setopt_str(sock, ZMQ_CURVE_SERVERKEY, cfg->curve_server_key) ||
         s_setopt_str(sock, ZMQ_CURVE_PUBLICKEY, cfg->curve_public_key) ||
         s_setopt_str(sock, ZMQ_CURVE_SECRETKEY, cfg->curve_secret_key))) {
        snprintf(err, errlen, "invalid CURVE key (40 z85 characters expected): %s",
                 zmq_strerror(errno));
        goto fail;
    }
    if (zmq_connect(sock, cfg->endpoint) != 0) {
        snprintf(err, errlen, "cannot connect to broker endpoint '%s': %s", cfg->endpoint,
                 zmq_strerror(errno));
        goto fail;
    }
    return sock;
fail:
    zmq_close(sock);
    return NULL;
}

void dealer_close(void *sock, int linger_ms)
{
    s_setopt_int(sock, ZMQ_LINGER, linger_ms);
    zmq_close(sock);
}
