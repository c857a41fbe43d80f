/* sessions: the WebSocket sessions of this edge, their watches on the
 * orchestrator, and each socket's ordered view of each run.
 *
 * A session is the sockets that said hello with one session_id and one
 * `watch` request to the orchestrator (every event of every run of the
 * session, as committed). It is made with its first socket and freed with
 * its last (the watch is cancelled). A watch that ends (orchestrator
 * restart, broker loss) is renewed by sessions_tick with a backoff, and the
 * runs its sockets follow are then filled from the store.
 *
 * Per socket and run a seqtrack (seqtrack.h) sends each event once, in
 * order, gapless. A socket that is behind (its queue past a quarter of its
 * maximum) is sent no more live events: it catches up from the store, page
 * by page as it drains (sessions_drained), so a slow reader of a long run
 * gets it whole with bounded memory instead of being closed. */
#ifndef MAP_SESSIONS_H
#define MAP_SESSIONS_H
#include "hub.h"
#include "seqtrack.h"
#include "proto/orch.h"

#include <stdint.h>

struct session_t {
    char id[129];
    conn_t *conns;
    uint64_t watch;          /* our watch request, 0 if none */
    int lost;                /* a watch ended: events may have been missed */
};

sessions_t *sessions_new(hub_t *h);
/* Frees every session (sockets must be gone; watches are not cancelled). */
void sessions_destroy(sessions_t **self_p);

/* c (hello done) joins session id (made and watched when new). */
session_t *sessions_join(sessions_t *self, conn_t *c, const char *id);
/* c leaves its session; the last socket frees it and cancels its watch. */
void sessions_leave(sessions_t *self, conn_t *c);
session_t *sessions_find(sessions_t *self, const char *id);
size_t sessions_count(const sessions_t *self);

/* The run's tracker on c, made from seq next when missing (a run that had
 * ended on c is followed again). */
seqtrack_t *sessions_track(sessions_t *self, conn_t *c, const char *run_id, uint64_t next);
void sessions_untrack(conn_t *c, const char *run_id);
/* One event of a run for c: sent in order, once (the tracker is made where
 * the run is when c did not follow it: another socket invoked it). */
void sessions_event(sessions_t *self, conn_t *c, const char *run_id, uint64_t seq, int terminal,
                    const char *json, size_t len);
/* Sends {"type":"event","event":json} to c as it is (no ordering). */
int sessions_send_event(sessions_t *self, conn_t *c, const char *json, size_t len);

/* Answers: a watch's STREAM (accepted or an event); a watch's end (REPLY
 * or ERROR): the session is watched again later. */
void sessions_on_watch(sessions_t *self, pending_t *p, const orch_stream_t *ev);
void sessions_watch_ended(sessions_t *self, pending_t *p);
/* A fill's REPLY (status, the events page JSON) or its failure (json
 * NULL), for c's tracker of run_id (its request is freed already). */
void sessions_on_fill(sessions_t *self, conn_t *c, const char *run_id, unsigned status,
                      const char *json, size_t len);
/* The run is known to have events past what c was sent (a resume's follow
 * ended before c got the run's end): they are filled from the store. */
void sessions_catch_up(sessions_t *self, conn_t *c, const char *run_id);
/* c's queue drained below its low mark: runs it is behind on are filled. */
void sessions_drained(sessions_t *self, conn_t *c);
/* The timer: sessions without a watch try again (with a backoff). */
void sessions_tick(sessions_t *self, int64_t now);
/* The broker link came up: sessions without a watch watch again. */
void sessions_link_up(sessions_t *self);

#endif
