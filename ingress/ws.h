/* ws: the WebSocket protocol of SPEC §4 on one socket: reassembled
 * messages in (hello, agent_invoke, resume, cancel, ping), answers out,
 * and the orchestrator's answers to what a socket asked.
 *
 * Isolation: a socket acts only within its session. A resume of another
 * session's run is refused (unknown_run) when the run's session is seen in
 * the follow's accepted answer, and nothing of it stays behind; a cancel
 * first asks for the run and cancels only a run of the socket's session. */
#ifndef MAP_WS_H
#define MAP_WS_H
#include "hub.h"
#include "proto/orch.h"

/* The socket is a WebSocket now (after the upgrade). */
void ws_open(hub_t *h, conn_t *c);
/* A frame's payload (lws gives fragments: first/final mark a message's). */
void ws_receive(hub_t *h, conn_t *c, const void *in, size_t len, int first, int final,
                int binary);
/* The orchestrator's answers to a WebSocket request p (P_WS_*). ws_on_stream
 * may free p (a refused resume); the caller frees p after ws_on_reply and
 * ws_on_error. */
void ws_on_stream(hub_t *h, pending_t *p, const orch_stream_t *ev);
void ws_on_reply(hub_t *h, pending_t *p, const hub_reply_t *r);
void ws_on_error(hub_t *h, pending_t *p, const char *code, const char *message);
/* {"type":"error",...} to c. */
void ws_error(hub_t *h, conn_t *c, const char *code, const char *message, const char *request_id);

#endif
