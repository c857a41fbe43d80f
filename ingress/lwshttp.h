/* lwshttp: the HTTP bytes lws reads and writes for the edge: a request's
 * head turned into an http_head_t, the response headers and body parts,
 * "100 Continue", and the refusal of a WebSocket upgrade (a real HTTP
 * answer). The only
 * ingress code besides edge.c that includes libwebsockets.h. */
#ifndef MAP_LWSHTTP_H
#define MAP_LWSHTTP_H
#include "http.h"
#include "hub.h"
#include "policy.h"

struct lws;

/* Storage for the header values an http_head_t points into. */
typedef struct {
    http_head_t head;
    char query[512], clen[32], te[64], expect[64], origin[256], host[256], auth[512],
        accept[128], last[32];
} lwshttp_req_t;

/* Reads the request's method, path (in), query and headers into r. */
void lwshttp_read(struct lws *wsi, const char *path, lwshttp_req_t *r);
/* Writes "HTTP/1.1 100 Continue". */
void lwshttp_continue(struct lws *wsi);
/* Writes the response head of t (clen: body bytes; ignored for SSE). */
int lwshttp_headers(struct lws *wsi, const http_txn_t *t, size_t clen);
/* LWS_CALLBACK_HTTP_WRITEABLE: the head once, then one queued body part
 * per call (an event stream asks for its next page as it drains), the
 * transaction completed after the last. -1: cut the connection. */
int lwshttp_writeable(hub_t *h, conn_t *c);
/* LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: 0 to let the upgrade go on, 1 when
 * it was refused with an answer (404 other paths, 403 forbidden_origin),
 * -1 to hang up. OUT forbidden: 1 when refused by the policy. */
int lwshttp_confirm_upgrade(struct lws *wsi, const policy_t *p, int *forbidden);

#endif
