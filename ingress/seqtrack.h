/* seqtrack: one run's events on one WebSocket, each seq once, in order,
 * with no gap (SPEC §4).
 *
 * A socket gets a run's events from its session's watch (live), from a
 * resume, and from "fills": `events` requests to the orchestrator for what
 * the live path missed (a watch lost with the orchestrator or the broker,
 * frames dropped on the way). The store is gapless, so asking for
 * everything after the last seq sent always closes a gap.
 *
 *   live seq <  next        already sent: drop
 *   live seq == next        send, next = seq + 1
 *   live seq >  next        a gap: drop it, remember it, and fill (unless a
 *                           fill is out: it, or the one after it, brings it)
 *   fill answer             send the events from next on, in order; if live
 *                           events past them were dropped meanwhile, fill
 *                           again
 *
 * A failed fill (orchestrator away, timeout) is retried at once up to
 * SEQTRACK_RETRIES times in a row; after that the next live event (or a
 * watch coming back) starts the next one, so a dead orchestrator is not
 * asked in a loop. Pure state: the caller sends and requests. */
#ifndef MAP_SEQTRACK_H
#define MAP_SEQTRACK_H
#include <stdint.h>

#define SEQTRACK_RETRIES 3

typedef struct {
    uint64_t next;       /* the next seq to send (1: from the start) */
    uint64_t held_max;   /* highest seq dropped ahead of next, 0: none */
    int filling;         /* a fill is out */
    unsigned failures;   /* fills failed in a row */
} seqtrack_t;

typedef enum {
    SEQ_SEND, /* send it: next moved past it */
    SEQ_DROP, /* sent before */
    SEQ_FILL, /* ahead: drop it and fill after seqtrack_after (filling is set) */
    SEQ_HOLD, /* ahead while a fill is out: drop it */
} seq_action_t;

/* A run this socket follows from seq next on. */
void seqtrack_init(seqtrack_t *t, uint64_t next);
/* A live event. */
seq_action_t seqtrack_live(seqtrack_t *t, uint64_t seq);
/* The after_seq of the fill to send. */
uint64_t seqtrack_after(const seqtrack_t *t);
/* Asks for a fill outside seqtrack_live (a watch came back): 1 when one is
 * to be sent (filling is set), 0 when one is out already. */
int seqtrack_want_fill(seqtrack_t *t);
/* An event of the fill's answer, in the order given: 1 to send it. */
int seqtrack_filled(seqtrack_t *t, uint64_t seq);
/* The fill's answer is handled (ok 0: it failed). Returns 1 when another
 * fill is to be sent now (filling is set again). */
int seqtrack_fill_done(seqtrack_t *t, int ok);
/* A live event in turn (seq == next) that the socket has no room for now:
 * it is not sent, and the socket catches up from the store later (a fill
 * once it drained). */
void seqtrack_skip(seqtrack_t *t, uint64_t seq);
/* The fill that seqtrack_live/want_fill/fill_done asked for is not sent
 * now (the socket is behind): filling is cleared; want_fill asks again. */
void seqtrack_fill_later(seqtrack_t *t);
/* 1 when events past next are known to exist (dropped or skipped). */
int seqtrack_behind(const seqtrack_t *t);

#endif
