/* keepalive_test: sockets pinged after ping_ms of silence and cut
 * grace_ms after their ping, a pong (heard) saving one, the budget spread
 * over ticks in time order, forgetting a socket on any list, and a model
 * check: 2,000 random steps on 50 sockets against the rule computed
 * directly (ping due, cut due). */
#include "keepalive.h"

#include "tests/support/check.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define N 50

typedef struct {
    ka_node_t node;
    int pings, cuts;
    int64_t heard, pinged_at; /* the model: -1 pinged_at when not pinged */
    int gone;
} sock_t;

static sock_t s_socks[N];

static sock_t *s_of(ka_node_t *n)
{
    return (sock_t *)((char *)n - offsetof(sock_t, node));
}

static void s_ping(void *arg, ka_node_t *n)
{
    (void)arg;
    s_of(n)->pings++;
}

static void s_cut(void *arg, ka_node_t *n)
{
    (void)arg;
    s_of(n)->cuts++;
}

static void s_basics(void)
{
    ka_t ka;
    ka_init(&ka, 1000, 6000);
    memset(s_socks, 0, sizeof s_socks);
    ka_heard(&ka, &s_socks[0].node, 0);
    ka_heard(&ka, &s_socks[1].node, 500);
    CHECK(ka_tick(&ka, 999, 100, s_ping, s_cut, NULL) == 0);
    CHECK(ka_tick(&ka, 1000, 100, s_ping, s_cut, NULL) == 1 && s_socks[0].pings == 1);
    CHECK(ka_tick(&ka, 1500, 100, s_ping, s_cut, NULL) == 1 && s_socks[1].pings == 1);
    ka_heard(&ka, &s_socks[1].node, 2000); /* its pong */
    CHECK(ka_tick(&ka, 6999, 100, s_ping, s_cut, NULL) == 1); /* 1 silent since 2000: pinged again */
    CHECK(s_socks[1].pings == 2 && s_socks[0].cuts == 0);
    CHECK(ka_tick(&ka, 7000, 100, s_ping, s_cut, NULL) == 1 && s_socks[0].cuts == 1);
    CHECK(s_socks[0].node.next == NULL); /* cut: on no list */
    ka_forget(&s_socks[1].node);         /* gone while pinged */
    ka_forget(&s_socks[1].node);         /* twice: harmless */
    CHECK(ka_tick(&ka, 100000, 100, s_ping, s_cut, NULL) == 0);
    CHECK(ka.idle.next == &ka.idle && ka.pinged.next == &ka.pinged);

    /* the budget: 10 due, 3 a tick, oldest first */
    memset(s_socks, 0, sizeof s_socks);
    for (int i = 0; i < 10; i++)
        ka_heard(&ka, &s_socks[i].node, i);
    CHECK(ka_tick(&ka, 5000, 3, s_ping, s_cut, NULL) == 3);
    CHECK(s_socks[2].pings == 1 && s_socks[3].pings == 0);
    CHECK(ka_tick(&ka, 5000, 3, s_ping, s_cut, NULL) == 3 && s_socks[5].pings == 1);
    for (int i = 0; i < 10; i++)
        ka_forget(&s_socks[i].node);
}

static void s_model(void)
{
    ka_t ka;
    const int64_t ping = 100, grace = 250;
    ka_init(&ka, ping, grace);
    memset(s_socks, 0, sizeof s_socks);
    int64_t now = 0;
    srand(7);
    for (int i = 0; i < N; i++) {
        ka_heard(&ka, &s_socks[i].node, now);
        s_socks[i].heard = now;
        s_socks[i].pinged_at = -1;
    }
    for (int step = 0; step < 2000; step++) {
        now += rand() % 40;
        int k = rand() % N;
        sock_t *s = &s_socks[k];
        int r = rand() % 10;
        if (r < 4 && !s->gone) { /* a frame or a pong */
            ka_heard(&ka, &s->node, now);
            s->heard = now;
            s->pinged_at = -1;
        } else if (r == 4 && !s->gone) {
            ka_forget(&s->node);
            s->gone = 1;
        }
        int pings[N], cuts[N];
        for (int i = 0; i < N; i++) {
            pings[i] = s_socks[i].pings;
            cuts[i] = s_socks[i].cuts;
        }
        ka_tick(&ka, now, 1000, s_ping, s_cut, NULL); /* no budget limit: exact rule */
        for (int i = 0; i < N; i++) {
            sock_t *x = &s_socks[i];
            int want_cut = !x->gone && x->pinged_at >= 0 && x->pinged_at + grace <= now;
            CHECK(x->cuts - cuts[i] == want_cut);
            if (want_cut) {
                x->gone = 1;
                continue;
            }
            int want_ping = !x->gone && x->pinged_at < 0 && x->heard + ping <= now;
            CHECK(x->pings - pings[i] == want_ping);
            if (want_ping)
                x->pinged_at = now;
        }
    }
}

int main(void)
{
    s_basics();
    s_model();
    return 0;
}
