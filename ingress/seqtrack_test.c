/* seqtrack_test: the order of one run's events on one socket, against a
 * model: a store of seqs 1..N, live deliveries that lose, repeat and
 * reorder events, fills answered from the store (or failing), and the check
 * that the socket got 1..N exactly once, in order. */
#include "seqtrack.h"

#include "tests/support/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void s_basics(void)
{
    seqtrack_t t;
    seqtrack_init(&t, 1);
    CHECK(seqtrack_live(&t, 1) == SEQ_SEND);
    CHECK(seqtrack_live(&t, 2) == SEQ_SEND);
    CHECK(seqtrack_live(&t, 2) == SEQ_DROP);
    CHECK(seqtrack_live(&t, 1) == SEQ_DROP);
    /* A gap: 3 is lost, 4 arrives: fill after 2. */
    CHECK(seqtrack_live(&t, 4) == SEQ_FILL);
    CHECK(seqtrack_after(&t) == 2);
    CHECK(seqtrack_live(&t, 5) == SEQ_HOLD);
    CHECK(seqtrack_want_fill(&t) == 0); /* one is out */
    /* The fill brings 3 and 4 (5 was stored after it was read). */
    CHECK(seqtrack_filled(&t, 3) == 1);
    CHECK(seqtrack_filled(&t, 4) == 1);
    CHECK(seqtrack_fill_done(&t, 1) == 1); /* 5 was held: fill again */
    CHECK(seqtrack_after(&t) == 4);
    CHECK(seqtrack_live(&t, 6) == SEQ_HOLD);
    CHECK(seqtrack_filled(&t, 4) == 0); /* repeated: skipped */
    CHECK(seqtrack_filled(&t, 5) == 1);
    CHECK(seqtrack_filled(&t, 6) == 1);
    CHECK(seqtrack_fill_done(&t, 1) == 0);
    CHECK(seqtrack_live(&t, 7) == SEQ_SEND);

    /* next itself while a fill is out is held: it must follow the fill. */
    seqtrack_init(&t, 1);
    CHECK(seqtrack_live(&t, 3) == SEQ_FILL);
    CHECK(seqtrack_live(&t, 1) == SEQ_HOLD);
    CHECK(seqtrack_filled(&t, 1) && seqtrack_filled(&t, 2) && seqtrack_filled(&t, 3));
    CHECK(seqtrack_fill_done(&t, 1) == 0);

    /* Joined mid-run: starts where it joined. */
    seqtrack_init(&t, 40);
    CHECK(seqtrack_live(&t, 39) == SEQ_DROP);
    CHECK(seqtrack_live(&t, 40) == SEQ_SEND);

    /* A watch back after a loss: one fill, from where the socket is. */
    seqtrack_init(&t, 1);
    CHECK(seqtrack_live(&t, 1) == SEQ_SEND);
    CHECK(seqtrack_want_fill(&t) == 1);
    CHECK(seqtrack_after(&t) == 1);
    CHECK(seqtrack_want_fill(&t) == 0);
    CHECK(seqtrack_filled(&t, 2) == 1);
    CHECK(seqtrack_fill_done(&t, 1) == 0); /* nothing held */

    /* Failing fills: retried at once SEQTRACK_RETRIES times, then left to
     * the next live event. */
    seqtrack_init(&t, 1);
    CHECK(seqtrack_live(&t, 2) == SEQ_FILL);
    for (int i = 0; i < SEQTRACK_RETRIES; i++)
        CHECK(seqtrack_fill_done(&t, 0) == 1);
    CHECK(seqtrack_fill_done(&t, 0) == 0);
    CHECK(!t.filling);
    CHECK(seqtrack_live(&t, 3) == SEQ_FILL); /* the next live event asks again */
    CHECK(seqtrack_filled(&t, 1) && seqtrack_filled(&t, 2) && seqtrack_filled(&t, 3));
    CHECK(seqtrack_fill_done(&t, 1) == 0);
    CHECK(t.failures == 0);
}

/* The model: N events; live delivery loses, repeats and delays; fills read
 * the store as it is when they are answered (a prefix 1..stored). */
static unsigned s_rand(unsigned *state)
{
    *state = *state * 1103515245u + 12345u;
    return (*state >> 16) & 0x7fff;
}

enum { N = 200 };

/* The socket's side of the model: what it was sent, and the fill it has out. */
typedef struct {
    seqtrack_t t;
    uint64_t got[N + 1];  /* times each seq was sent */
    uint64_t last;        /* the last seq sent */
    int fill_out;
    uint64_t fill_after;
} sock_t;

static void s_sent(sock_t *k, uint64_t seq)
{
    CHECK(seq == k->last + 1);
    k->last = seq;
    k->got[seq]++;
}

static void s_fill_asked(sock_t *k)
{
    CHECK(!k->fill_out);
    k->fill_out = 1;
    k->fill_after = seqtrack_after(&k->t);
}

static void s_live(sock_t *k, uint64_t seq)
{
    seq_action_t a = seqtrack_live(&k->t, seq);
    if (a == SEQ_SEND)
        s_sent(k, seq);
    else if (a == SEQ_FILL)
        s_fill_asked(k);
}

static void s_model(unsigned seed)
{
    static sock_t k;
    memset(&k, 0, sizeof k);
    seqtrack_init(&k.t, 1);
    unsigned st = seed;
    uint64_t pending[8], stored = 1;
    int npending = 0;
    for (int turn = 0; turn < 100000; turn++) {
        unsigned r = s_rand(&st) % 100;
        if (stored <= N && r < 50) {
            /* The next event is stored and published: lost 10%, delayed
             * 15%, repeated 5%. */
            uint64_t seq = stored++;
            unsigned fate = s_rand(&st) % 100;
            if (fate < 10)
                continue;
            if (fate < 25 && npending < 8) {
                pending[npending++] = seq;
                continue;
            }
            for (int n = 0; n < (fate < 30 ? 2 : 1); n++)
                s_live(&k, seq);
        } else if (r < 65 && npending) {
            /* A delayed event arrives late. */
            uint64_t seq = pending[0];
            memmove(pending, pending + 1, (size_t)--npending * sizeof *pending);
            s_live(&k, seq);
        } else if (k.fill_out) {
            /* The fill is answered from the store as it is now; 10% fail. */
            k.fill_out = 0;
            int ok = s_rand(&st) % 10 != 0;
            for (uint64_t seq = k.fill_after + 1; ok && seq < stored; seq++)
                if (seqtrack_filled(&k.t, seq))
                    s_sent(&k, seq);
            if (seqtrack_fill_done(&k.t, ok))
                s_fill_asked(&k);
        } else if (stored > N && !npending) {
            /* The end: what was lost at the tail comes by a watch's return. */
            if (k.last == N || !seqtrack_want_fill(&k.t))
                break;
            s_fill_asked(&k);
        }
    }
    CHECK(k.last == N);
    for (int i = 1; i <= N; i++)
        CHECK(k.got[i] == 1);
}

int main(void)
{
    s_basics();
    for (unsigned seed = 1; seed <= 2000; seed++)
        s_model(seed);
    printf("seqtrack_test: ok (2000 random deliveries of 200 events)\n");
    return 0;
}
