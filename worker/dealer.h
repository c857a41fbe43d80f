/* dealer: a peer's configuration checked and its DEALER socket opened (the
 * options every peer needs, CURVE, the connect), apart from the protocol
 * worker.c speaks over it. CURVE keys the program did not set come from
 * the environment (MAP_CURVE_SERVER_KEY, MAP_CURVE_PUBLIC_KEY,
 * MAP_CURVE_SECRET_KEY), so every peer can use them. */
#ifndef MAP_DEALER_H
#define MAP_DEALER_H
#include "worker.h"

#include <stddef.h>

#define DEALER_HEARTBEAT_DEFAULT 1000 /* ms */
#define DEALER_LIVENESS_DEFAULT 3
#define DEALER_REQUESTS_DEFAULT 100000

/* Checks cfg into *out: cfg with the environment's CURVE keys and the
 * defaults for what it leaves 0 (heartbeat, liveness, body maximum,
 * requests in flight). 0, or -1 with the reason in err. */
int dealer_config(const worker_config_t *cfg, worker_config_t *out, char *err, size_t errlen);
/* A DEALER in ctx with LINGER 0, hwm each way, IMMEDIATE, cfg's CURVE keys,
 * connected to cfg->endpoint; NULL with the reason in err. */
void *dealer_open(void *ctx, const worker_config_t *cfg, int hwm, char *err, size_t errlen);

/* Closes sock, letting what it queued leave for at most linger_ms. */
void dealer_close(void *sock, int linger_ms);

#endif
