/* reply: the engine's answers to requesters, through the outbox (persist,
 * then send). Each function queues one answer for the request req; a push
 * the full outbox refuses marks req refused: reply_flush fails it (ERROR
 * internal) and forgets its follow or watch. Nothing here sends before
 * reply_flush, which the engine calls after the turn committed. */
#ifndef MAP_REPLY_H
#define MAP_REPLY_H
#include "core.h"

void reply_push(engine_t *self, uint64_t req, outbox_kind_t kind, const void *body, size_t len);
/* A REPLY about one run: run_id, run_status, session_id typed (run_id
 * NULL: about no run). */
void reply_run(engine_t *self, uint64_t req, unsigned status, const char *json, size_t len,
               const char *run_id, const char *run_status, const char *session_id);
void reply_plain(engine_t *self, uint64_t req, unsigned status, const char *json, size_t len);
/* A REPLY with the error envelope, message formatted. */
void reply_error(engine_t *self, uint64_t req, unsigned status, const char *code,
                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The first STREAM of a follow: {"accepted"} (run_id NULL: a watch). */
void reply_accepted(engine_t *self, uint64_t req, const char *json, size_t len,
                    const char *run_id, const char *run_status, const char *session_id);
/* A final ERROR frame. */
void reply_fail(engine_t *self, uint64_t req, const char *code, const char *message);
/* One event body (orch_encode_event) for watcher w: added to w's batch of
 * this turn, which goes to the outbox at reply_batches_push (or earlier,
 * whole, when the next event would pass the body maximum). */
void reply_watch_event(engine_t *self, watcher_t *w, const void *body, size_t len);
/* Pushes every batch of the turn (in the order their first events came)
 * and starts the next turn's. The engine calls it before it commits or
 * rolls back the outbox, so batches share the fate of the turn's answers. */
void reply_batches_push(engine_t *self);
/* Frees the batch buffers (engine_destroy). */
void reply_batches_free(engine_t *self);
/* Sends what is committed (a send refused at the high-water mark waits for
 * the next call) and fails the refused requests. */
void reply_flush(engine_t *self);

#endif
