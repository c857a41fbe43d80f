/* seqtrack_test: the order of one run's events on one socket, against a
 * model: a store of seqs 1..N, live deliveries that lose, repeat and
 * reorder events, fills answered from the store (or failing), and the check
 * that the socket got 1..N exactly once, in order. */
#include "seqtrack.h"

#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

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

static void s_model(unsigned seed)
{
    enum { N = 200 };
    seqtrack_t t;
    seqtrack_init(&t, 1);
    uint64_t got[N + 1] = {0}, last = 0, sent = 0;
    unsigned st = seed;
    int fill_out = 0;
    uint64_t fill_after = 0;
    uint64_t pending[8];
    int npending = 0;
    uint64_t stored = 1;
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
            for (int k = 0; k < (fate < 30 ? 2 : 1); k++) {
                seq_action_t a = seqtrack_live(&t, seq);
                if (a == SEQ_SEND) {
                    CHECK(seq == last + 1);
                    last = seq;
                    got[seq]++;
                    sent++;
                } else if (a == SEQ_FILL) {
                    CHECK(!fill_out);
                    fill_out = 1;
                    fill_after = seqtrack_after(&t);
                }
            }
        } else if (r < 65 && npending) {
            /* A delayed event arrives late. */
            uint64_t seq = pending[0];
            for (int i = 1; i < npending; i++)
                pending[i - 1] = pending[i];
            npending--;
            seq_action_t a = seqtrack_live(&t, seq);
            if (a == SEQ_SEND) {
                CHECK(seq == last + 1);
                last = seq;
                got[seq]++;
                sent++;
            } else if (a == SEQ_FILL) {
                CHECK(!fill_out);
                fill_out = 1;
                fill_after = seqtrack_after(&t);
            }
        } else if (fill_out) {
            /* The fill is answered from the store as it is now; 10% fail. */
            fill_out = 0;
            int ok = s_rand(&st) % 10 != 0;
            if (ok) {
                for (uint64_t seq = fill_after + 1; seq < stored; seq++) {
                    if (seqtrack_filled(&t, seq)) {
                        CHECK(seq == last + 1);
                        last = seq;
                        got[seq]++;
                        sent++;
                    }
                }
            }
            if (seqtrack_fill_done(&t, ok)) {
                fill_out = 1;
                fill_after = seqtrack_after(&t);
            }
        } else if (stored > N && !npending && !fill_out) {
            /* The end: what was lost at the tail comes by a watch's return. */
            if (last < N && seqtrack_want_fill(&t)) {
                fill_out = 1;
                fill_after = seqtrack_after(&t);
            } else {
                break;
            }
        }
    }
    CHECK(last == N && sent == N);
    for (int i = 1; i <= N; i++)
        CHECK(got[i] == 1);
}

int main(void)
{
    s_basics();
    for (unsigned seed = 1; seed <= 2000; seed++)
        s_model(seed);
    printf("seqtrack_test: ok (2000 random deliveries of 200 events)\n");
    return 0;
}
