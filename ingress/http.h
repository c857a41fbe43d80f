/* http: one HTTP request's life on the edge (SPEC §3): exactly one
 * response per request, whatever the framing.
 *
 *   http_begin      the request line and headers are in: route, policy
 *                   (Origin, Host, key), size; a request without a body is
 *                   dispatched now, one with a body waits for it
 *   http_body       body bytes (a chunked body is decoded here: lws 4.1
 *                   hands it over raw)
 *   http_body_done  lws has delivered the body (Content-Length reached)
 *   http_on_*       the orchestrator's answer becomes the response
 *   http_done       the response is written: keep the connection or not
 *
 * Each request is dispatched at most once (a Content-Length: 0 POST gets
 * HTTP, BODY and BODY_COMPLETION from lws: it is one request). When lws
 * would still expect body bytes after the response (a chunked body, a POST
 * without Content-Length, an early error before the body came), the
 * response says `Connection: close` and the connection ends after it:
 * never a response written into a body, never a wait for one that will
 * not come. No lws here: edge.c turns the lws callbacks into these calls
 * and writes what is queued on the connection. */
#ifndef MAP_HTTP_H
#define MAP_HTTP_H
#include "hub.h"
#include "proto/orch.h"

typedef struct {
    const char *method;        /* GET, POST, or another token */
    const char *path;          /* without the query */
    const char *query;         /* a=1&b=2 (decoded by lws), NULL: none */
    long long content_length;  /* -1: no header; -2: a bad one */
    int chunked;               /* Transfer-Encoding: chunked */
    int bad_te;                /* a Transfer-Encoding other than chunked */
    int expect_continue;       /* Expect: 100-continue */
    const char *origin, *host, *authorization, *accept, *last_event_id; /* NULL: absent */
} http_head_t;

void http_begin(hub_t *h, conn_t *c, const http_head_t *head);
/* Returns 0, or -1 when the connection must be closed at once: lws 4.1
 * hands a body pipelined behind another request as the request's own head
 * again ("POST /x HTTP/1.1..." as its first body bytes) and then spins on
 * it, serving nobody; such a connection is cut (its client sees the close
 * and sends the request again). */
int http_body(hub_t *h, conn_t *c, const void *in, size_t len);
void http_body_done(hub_t *h, conn_t *c);
/* The orchestrator's answers to request p (P_HTTP or P_HEALTH); the caller
 * frees p after http_on_reply and http_on_error. */
void http_on_stream(hub_t *h, pending_t *p, const orch_stream_t *ev);
void http_on_reply(hub_t *h, pending_t *p, const hub_reply_t *r);
void http_on_error(hub_t *h, pending_t *p, const char *code, const char *message);
/* The response's last byte is written. Returns 1 when the connection is to
 * serve another request (the transaction is reset), 0 to close it. */
int http_done(hub_t *h, conn_t *c);

#endif
