/* seqtrack: see seqtrack.h. */
#include "seqtrack.h"

void seqtrack_init(seqtrack_t *t, uint64_t next)
{
    *t = (seqtrack_t){.next = next ? next : 1};
}

seq_action_t seqtrack_live(seqtrack_t *t, uint64_t seq)
{
    if (seq < t->next)
        return SEQ_DROP;
    if (seq == t->next && !t->filling) {
        t->next = seq + 1;
        return SEQ_SEND;
    }
    /* Ahead, or next itself while a fill is out (the fill brings it, in
     * order with what precedes it). */
    if (seq > t->held_max)
        t->held_max = seq;
    if (t->filling)
        return SEQ_HOLD;
    t->filling = 1;
    return SEQ_FILL;
}

uint64_t seqtrack_after(const seqtrack_t *t)
{
    return t->next - 1;
}

int seqtrack_want_fill(seqtrack_t *t)
{
    if (t->filling)
        return 0;
    t->filling = 1;
    return 1;
}

int seqtrack_filled(seqtrack_t *t, uint64_t seq)
{
    if (seq != t->next)
        return 0;
    t->next = seq + 1;
    return 1;
}

int seqtrack_fill_done(seqtrack_t *t, int ok)
{
    t->filling = 0;
    t->failures = ok ? 0 : t->failures + 1;
    if (t->held_max < t->next || t->failures > SEQTRACK_RETRIES)
        return 0;
    t->filling = 1;
    return 1;
}

void seqtrack_skip(seqtrack_t *t, uint64_t seq)
{
    if (seq > t->held_max)
        t->held_max = seq;
}

void seqtrack_fill_later(seqtrack_t *t)
{
    t->filling = 0;
}

int seqtrack_behind(const seqtrack_t *t)
{
    return t->held_max >= t->next;
}
