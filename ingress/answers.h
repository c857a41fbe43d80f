/* answers: the orchestrator's answers (STREAM, REPLY, ERROR frames of our
 * requests) routed to the module whose request it is, by its pending kind:
 * http.c, ws.c, sessions.c (watches and their fills), ssefeed.c (fills).
 * An answer for a request no longer pending (its connection left, it timed
 * out) or a STREAM body that does not decode is dropped. The final frames
 * free the pending request (a fill's before its module sees the answer, so
 * that it may ask again). No lws: edge.c hands the worker library's
 * callbacks here. */
#ifndef MAP_ANSWERS_H
#define MAP_ANSWERS_H
#include "hub.h"

#include <stddef.h>
#include <stdint.h>

void answers_stream(hub_t *h, uint64_t req, const uint8_t *body, size_t len);
void answers_reply(hub_t *h, uint64_t req, const uint8_t *body, size_t len);
void answers_error(hub_t *h, uint64_t req, const char *code, const char *message);

#endif
