/* ssefeed: one run's events on one HTTP event stream (SSE: the
 * /internal/invoke answer, GET .../events with Accept: text/event-stream),
 * each seq once, in order, gapless, paced by the client.
 *
 * The orchestrator's follow replays at most one page and then goes live,
 * so a long run's stream has a gap that is filled from the store (`events`
 * pages), and a client that reads slowly falls behind: its live events are
 * not queued past a quarter of its queue, and it catches up page by page
 * as it drains. The stream ends after the run's terminal event; when the
 * follow ends first (the run ended while the client was behind, or the
 * orchestrator went away), the rest comes from the store, and if the store
 * cannot be reached after SEQTRACK_RETRIES tries the stream ends (the
 * client reconnects with Last-Event-ID). */
#ifndef MAP_SSEFEED_H
#define MAP_SSEFEED_H
#include "hub.h"

/* The follow was accepted: the stream starts at seq next of run_id. */
void ssefeed_start(hub_t *h, conn_t *c, const char *run_id, uint64_t next);
/* A live event of the follow. */
void ssefeed_event(hub_t *h, conn_t *c, const orch_stream_t *ev);
/* A fill's answer (json NULL: it failed); its request is freed already. */
void ssefeed_on_fill(hub_t *h, conn_t *c, unsigned status, const char *json, size_t len);
/* The follow's final answer came (the run ended, or the follow failed). */
void ssefeed_follow_over(hub_t *h, conn_t *c);
/* c's queue drained: a stream that is behind asks for the next page. */
void ssefeed_drained(hub_t *h, conn_t *c);

#endif
