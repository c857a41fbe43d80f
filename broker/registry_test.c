/* registry_test: the broker's registry as a requester and workers see it.
 * Services come with their first worker and go with their last; a request
 * goes to the worker with the most free credit (the first on a tie), else
 * waits in its service's FIFO up to queue_max; a final answer lets the
 * oldest waiting request through; a lost worker's requests fail worker_lost
 * and, with its last worker, the queue fails unknown_service; a requester
 * that leaves or cancels orphans its requests (CANCEL to their workers,
 * which keep the credit until their final frame); released peers leave the
 * peer table at once and are freed by registry_reap.
 *
 * The broker's loop does not run: the test calls the registry and reads
 * what reaches its raw DEALERs (testkit.h). */
#include "registry.h"

#include "out.h"
#include "testkit.h"

#include "common/log.h"
#include "tests/support/check.h"

#include <stdio.h>
#include <string.h>

static registry_route_t s_route(testkit_t *kit, peer_t *asker, uint64_t id, service_t *svc,
                                const char *text)
{
    zmq_msg_t body;
    testkit_body(&body, text);
    return registry_route(kit->broker, asker, id, svc, &body); /* takes body, as s_on_request */
}

/* The next frame on sock is REQUEST rid for service with body text. */
static void s_expect_request(void *sock, uint64_t rid, const char *service, const char *text)
{
    testkit_frame_t got;
    testkit_expect(sock, FRAME_REQUEST, rid, &got);
    CHECK(got.f.service_len == strlen(service));
    CHECK(memcmp(got.f.service, service, got.f.service_len) == 0);
    CHECK(strcmp(got.body, text) == 0);
}

static uint64_t s_peers(broker_t *b)
{
    broker_stats_t st;
    broker_stats(b, &st);
    return st.peers;
}

static void test_services(void)
{
    testkit_t kit;
    testkit_start(&kit, 10, 0);
    broker_t *b = kit.broker;
    void *s1, *s2, *s3, *sr;
    peer_t *w1 = testkit_join(&kit, "w1", "echo", 2, &s1);
    service_t *svc = registry_service_get(b, "echo", 4);
    CHECK(svc && strcmp(svc->name, "echo") == 0);
    CHECK(svc->workers_len == 1 && svc->workers[0] == w1 && w1->service == svc);
    CHECK(registry_service_get(b, "ech", 3) == NULL);
    CHECK(registry_service_get(b, "echo2", 5) == NULL);

    peer_t *r = testkit_join(&kit, "r1", "client", 0, &sr);
    CHECK(r->service == NULL);
    CHECK(hmap_size(b->services) == 1); /* a requester serves nothing */
    CHECK(registry_service_get(b, "client", 6) == NULL);

    peer_t *w2 = testkit_join(&kit, "w2", "echo", 1, &s2);
    CHECK(registry_service_get(b, "echo", 4) == svc && svc->workers_len == 2);
    peer_t *w3 = testkit_join(&kit, "w3", "other", 1, &s3);
    CHECK(hmap_size(b->services) == 2 && w3->service != svc);
    CHECK(s_peers(b) == 4);

    /* A worker that goes leaves its service; the peer table forgets it at
     * once, the memory waits for the end of the turn. */
    uint64_t key;
    registry_mark_dead(b, w1, "test");
    CHECK(w1->dead == 1);
    CHECK(registry_peer_find(b, "w1", 2, &key) == NULL);
    CHECK(b->dead == w1);
    CHECK(svc->workers_len == 1 && svc->workers[0] == w2);
    registry_mark_dead(b, w1, "twice"); /* a dead peer: nothing more */
    CHECK(b->dead == w1 && w1->next_dead == NULL);
    registry_reap(b);
    CHECK(b->dead == NULL);
    CHECK(s_peers(b) == 3);

    /* The last worker takes the service with it. */
    registry_mark_dead(b, w2, "test");
    CHECK(registry_service_get(b, "echo", 4) == NULL);
    CHECK(hmap_size(b->services) == 1);
    registry_reap(b);
    CHECK(registry_peer_find(b, "r1", 2, &key) == r);
    CHECK(registry_peer_find(b, "w3", 2, &key) == w3);
    CHECK(s_peers(b) == 2);
    testkit_stop(&kit);
}

static void test_credit(void)
{
    testkit_t kit;
    testkit_start(&kit, 10, 0);
    broker_t *b = kit.broker;
    void *s1, *s2, *sr;
    peer_t *w1 = testkit_join(&kit, "w1", "echo", 1, &s1);
    peer_t *w2 = testkit_join(&kit, "w2", "echo", 3, &s2);
    peer_t *r = testkit_join(&kit, "r1", "client", 0, &sr);
    service_t *svc = w1->service;

    /* Most free credit first: w2 (3) over w1 (1). */
    CHECK(registry_pick_worker(svc) == w2);
    CHECK(s_route(&kit, r, 100, svc, "a") == REGISTRY_DELIVERED);
    s_expect_request(s2, 1, "echo", "a"); /* the broker's id, not the requester's */
    CHECK(hmap_size(w2->serving) == 1);
    request_t *req = hmap_get(r->asked, 100);
    CHECK(req && req->rid == 1 && req->worker == w2 && req->asker == r && req->asker_id == 100);
    CHECK(hmap_get(b->requests, 1) == req);

    CHECK(s_route(&kit, r, 101, svc, "b") == REGISTRY_DELIVERED); /* w2: 2 free over 1 */
    s_expect_request(s2, 2, "echo", "b");
    /* A tie (1 and 1) goes to the first worker. */
    CHECK(registry_pick_worker(svc) == w1);
    CHECK(s_route(&kit, r, 102, svc, "c") == REGISTRY_DELIVERED);
    s_expect_request(s1, 3, "echo", "c");
    CHECK(s_route(&kit, r, 103, svc, "d") == REGISTRY_DELIVERED);
    s_expect_request(s2, 4, "echo", "d");
    CHECK(registry_pick_worker(svc) == NULL); /* 1/1 and 3/3 held */
    CHECK(b->stats.requests == 4);

    /* A final frame frees its credit. */
    registry_request_free(b, hmap_get(r->asked, 101));
    CHECK(hmap_get(r->asked, 101) == NULL && hmap_get(b->requests, 2) == NULL);
    CHECK(hmap_size(w2->serving) == 2);
    CHECK(registry_pick_worker(svc) == w2);
    /* Neither a dead nor an unreachable worker is picked. */
    w2->unreachable = 1;
    CHECK(registry_pick_worker(svc) == NULL);
    w2->unreachable = 0;
    w2->dead = 1;
    CHECK(registry_pick_worker(svc) == NULL);
    w2->dead = 0;
    CHECK(registry_pick_worker(svc) == w2);
    testkit_expect_quiet(&kit, w1, s1);
    testkit_expect_quiet(&kit, r, sr); /* nothing was answered */
    testkit_stop(&kit);
}

static void test_queue(void)
{
    testkit_t kit;
    testkit_start(&kit, 2, 0);
    broker_t *b = kit.broker;
    void *sw, *sr;
    peer_t *w = testkit_join(&kit, "w1", "echo", 1, &sw);
    peer_t *r = testkit_join(&kit, "r1", "client", 0, &sr);
    service_t *svc = w->service;

    CHECK(s_route(&kit, r, 1, svc, "first") == REGISTRY_DELIVERED);
    s_expect_request(sw, 1, "echo", "first");
    CHECK(s_route(&kit, r, 2, svc, "second") == REGISTRY_QUEUED);
    CHECK(s_route(&kit, r, 3, svc, "third") == REGISTRY_QUEUED);
    CHECK(svc->queued == 2);
    request_t *q2 = hmap_get(r->asked, 2), *q3 = hmap_get(r->asked, 3);
    CHECK(q2 && q2->worker == NULL && svc->head == q2 && q2->next == q3 && svc->tail == q3);
    /* queue_max waiting: the next one is not kept (the caller answers it). */
    CHECK(s_route(&kit, r, 4, svc, "fourth") == REGISTRY_QUEUE_FULL);
    CHECK(hmap_get(r->asked, 4) == NULL);
    CHECK(svc->queued == 2 && hmap_size(b->requests) == 3 && b->stats.requests == 3);
    CHECK(b->next_rid == 3);

    /* The worker's final frame lets the oldest waiting request through. */
    registry_request_free(b, hmap_get(w->serving, 1));
    registry_dispatch(b, svc);
    s_expect_request(sw, q2->rid, "echo", "second");
    CHECK(q2->worker == w && svc->queued == 1 && svc->head == q3);
    /* While the worker is full, dispatch moves nothing. */
    registry_dispatch(b, svc);
    CHECK(svc->queued == 1);
    registry_request_free(b, q2);
    registry_dispatch(b, svc);
    s_expect_request(sw, q3->rid, "echo", "third");
    CHECK(svc->queued == 0 && svc->head == NULL && svc->tail == NULL);

    /* A queue of 0: a request with no free credit is refused at once. */
    b->cfg.queue_max = 0;
    CHECK(s_route(&kit, r, 5, svc, "fifth") == REGISTRY_QUEUE_FULL);
    CHECK(svc->queued == 0 && hmap_size(b->requests) == 1);
    testkit_expect_quiet(&kit, w, sw);
    testkit_expect_quiet(&kit, r, sr);
    testkit_stop(&kit);
}

static void test_worker_lost(void)
{
    testkit_t kit;
    testkit_start(&kit, 10, 0);
    broker_t *b = kit.broker;
    void *s1, *s2, *sr;
    peer_t *w1 = testkit_join(&kit, "w1", "echo", 1, &s1);
    peer_t *w2 = testkit_join(&kit, "w2", "echo", 1, &s2);
    peer_t *r = testkit_join(&kit, "r1", "client", 0, &sr);
    service_t *svc = w1->service;
    CHECK(s_route(&kit, r, 11, svc, "a") == REGISTRY_DELIVERED);
    CHECK(s_route(&kit, r, 12, svc, "b") == REGISTRY_DELIVERED);
    CHECK(s_route(&kit, r, 13, svc, "c") == REGISTRY_QUEUED);
    CHECK(s_route(&kit, r, 14, svc, "d") == REGISTRY_QUEUED);
    s_expect_request(s1, 1, "echo", "a");
    s_expect_request(s2, 2, "echo", "b");

    /* A worker lost: its request fails; the queue waits for the others. */
    registry_mark_dead(b, w1, "heartbeat expired");
    testkit_expect_error(sr, 11, "worker_lost");
    testkit_expect_quiet(&kit, r, sr);
    CHECK(hmap_get(r->asked, 11) == NULL && hmap_get(b->requests, 1) == NULL);
    CHECK(svc->queued == 2 && svc->workers_len == 1);
    testkit_expect_quiet(&kit, w2, s2); /* nothing more for w2: it is full */

    /* The last worker lost: its request fails, then the queue, oldest first. */
    registry_mark_dead(b, w2, "disconnected");
    testkit_expect_error(sr, 12, "worker_lost");
    testkit_expect_error(sr, 13, "unknown_service");
    testkit_expect_error(sr, 14, "unknown_service");
    testkit_expect_quiet(&kit, r, sr);
    CHECK(hmap_size(r->asked) == 0 && hmap_size(b->requests) == 0);
    CHECK(registry_service_get(b, "echo", 4) == NULL);
    registry_reap(b);
    CHECK(s_peers(b) == 1);
    testkit_stop(&kit);
}

static void test_requester_leaves(void)
{
    testkit_t kit;
    testkit_start(&kit, 10, 0);
    broker_t *b = kit.broker;
    void *sw, *s1, *s2;
    peer_t *w = testkit_join(&kit, "w1", "echo", 1, &sw);
    peer_t *r1 = testkit_join(&kit, "r1", "client", 0, &s1);
    peer_t *r2 = testkit_join(&kit, "r2", "client", 0, &s2);
    service_t *svc = w->service;
    CHECK(s_route(&kit, r1, 7, svc, "held") == REGISTRY_DELIVERED);
    CHECK(s_route(&kit, r1, 8, svc, "waiting") == REGISTRY_QUEUED);
    CHECK(s_route(&kit, r2, 7, svc, "other") == REGISTRY_QUEUED); /* ids are per requester */
    s_expect_request(sw, 1, "echo", "held");
    request_t *held = hmap_get(w->serving, 1);

    /* The requester leaves: its held request is cancelled on the worker and
     * stays, orphaned, holding the credit; its queued one is gone. */
    registry_mark_dead(b, r1, "disconnected");
    testkit_expect(sw, FRAME_CANCEL, 1, NULL);
    CHECK(held->asker == NULL && hmap_get(b->requests, 1) == held);
    CHECK(svc->queued == 1 && svc->head == hmap_get(r2->asked, 7));
    CHECK(registry_pick_worker(svc) == NULL);
    registry_reap(b);

    /* The worker's final frame frees the credit; r2's request goes. */
    registry_request_free(b, held);
    registry_dispatch(b, svc);
    s_expect_request(sw, 3, "echo", "other");
    CHECK(hmap_size(b->requests) == 1);

    /* A cancel orphans the same way: CANCEL to the worker, the requester
     * no longer waits for it. */
    request_t *req = hmap_get(r2->asked, 7);
    registry_request_orphan(b, req);
    testkit_expect(sw, FRAME_CANCEL, 3, NULL);
    CHECK(hmap_size(r2->asked) == 0 && req->asker == NULL && hmap_size(w->serving) == 1);
    /* Queued, an orphan is freed at once. */
    CHECK(s_route(&kit, r2, 9, svc, "queued") == REGISTRY_QUEUED);
    registry_request_orphan(b, hmap_get(r2->asked, 9));
    CHECK(svc->queued == 0 && hmap_size(b->requests) == 1);
    testkit_expect_quiet(&kit, w, sw);
    testkit_expect_quiet(&kit, r2, s2); /* the broker's cancel answer is s_on_cancel's */
    testkit_stop(&kit);
}

static void test_reannounce_id(void)
{
    /* A released peer's routing id is free at once: a new peer can take it
     * in the same turn, before the old one is reaped. */
    testkit_t kit;
    testkit_start(&kit, 10, 0);
    broker_t *b = kit.broker;
    void *sw;
    peer_t *old = testkit_join(&kit, "w1", "echo", 1, &sw);
    registry_mark_dead(b, old, "re-announced");
    peer_t *fresh = testkit_register(&kit, "w1", "echo", 2);
    uint64_t key;
    CHECK(fresh != old && registry_peer_find(b, "w1", 2, &key) == fresh);
    CHECK(fresh->service && fresh->service->workers_len == 1 && fresh->service->workers[0] == fresh);
    registry_reap(b);
    CHECK(s_peers(b) == 1);
    testkit_expect_quiet(&kit, fresh, sw);
    testkit_stop(&kit);
}

int main(void)
{
    log_init("registry_test");
    log_set_level("warn");
    test_services();
    test_credit();
    test_queue();
    test_worker_lost();
    test_requester_leaves();
    test_reannounce_id();
    printf("registry_test: ok\n");
    return 0;
}
