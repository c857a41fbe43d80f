/* runs_test: the registry as the engine uses it: queues in order, requests
 * found again, followers and watchers dropped by request, sessions freed
 * only when nothing points to them, runs forgotten or ended and freed. */
#include "runs.h"

#include "tests/support/check.h"

#include <string.h>

static void s_count(void *arg, run_t *run)
{
    (void)run;
    (*(int *)arg)++;
}

static void s_sum(void *arg, uint64_t req)
{
    *(uint64_t *)arg += req;
}

static void test_queue_and_requests(void)
{
    runs_t *r = runs_new();
    CHECK(runs_session(r, "s1") == NULL);
    session_t *s = runs_session_add(r, "s1");
    CHECK(runs_session_add(r, "s1") == s && runs_session(r, "s1") == s);
    run_t *a = runs_add(r, s, "run_a", "echo", "c1", "user", "T1");
    run_t *b = runs_add(r, s, "run_b", "echo", NULL, "user", "T2");
    run_t *c = runs_add(r, s, "run_c", "echo", "c3", "user", "T3");
    CHECK(s->qhead == a && a->qnext == b && s->qtail == c && s->queued == 3 && s->runs == 3);
    CHECK(a->status == RUN_QUEUED && a->content == NULL && !strcmp(a->created_at, "T1"));
    CHECK(runs_get(r, "run_b") == b && runs_live(r, "run_b") == b && runs_count(r) == 3);
    CHECK(runs_find_request(s, "c3", 2) == c && runs_find_request(s, "c", 1) == NULL);
    CHECK(runs_find_request(NULL, "c1", 2) == NULL);
    runs_start(a);
    CHECK(s->running == a && s->qhead == b && s->queued == 2);
    CHECK(runs_find_request(s, "c1", 2) == a); /* the running one too */
    runs_dequeue(c);                           /* from the tail */
    CHECK(s->qhead == b && s->qtail == b && b->qnext == NULL && s->queued == 1);
    runs_mark_ended(r, c);
    CHECK(runs_live(r, "run_c") == NULL && runs_get(r, "run_c") == c);
    int n = 0;
    runs_each(r, s_count, &n);
    CHECK(n == 3);
    runs_free_ended(r);
    CHECK(runs_get(r, "run_c") == NULL && s->runs == 2 && runs_count(r) == 2);
    runs_destroy(&r);
    CHECK(r == NULL);
    runs_destroy(&r);
}

static void test_followers_and_watchers(void)
{
    runs_t *r = runs_new();
    session_t *s = runs_session_add(r, "s");
    run_t *run = runs_add(r, s, "run_1", "echo", NULL, "user", "T");
    runs_add_follower(r, run, 10, 1);
    runs_add_follower(r, run, 11, 4);
    runs_add_watcher(r, s, 20);
    runs_add_watcher(r, s, 21);
    CHECK(run->nfollowers == 2 && run->followers->req == 11 && run->followers->next_seq == 4);
    CHECK(runs_watched(r, 20) == s && runs_watched(r, 10) == NULL);
    CHECK(runs_drop_req(r, 10) == 1 && run->nfollowers == 1 && run->followers->req == 11);
    CHECK(runs_drop_req(r, 10) == 0 && runs_drop_req(r, 99) == 0);
    CHECK(runs_drop_req(r, 20) == 1 && runs_watched(r, 20) == NULL);
    uint64_t sum = 0;
    runs_each_watch(r, s_sum, &sum);
    CHECK(sum == 21);
    runs_clear_followers(r, run);
    CHECK(run->followers == NULL && run->nfollowers == 0 && runs_drop_req(r, 11) == 0);
    /* The session outlives its last run while a watcher remains. */
    runs_start(run);
    runs_mark_ended(r, run);
    runs_free_ended(r);
    CHECK(runs_session(r, "s") == s && s->runs == 0 && s->running == NULL);
    CHECK(runs_drop_req(r, 21) == 1 && runs_session(r, "s") == NULL);
    runs_destroy(&r);
}

static void test_forget_and_unend(void)
{
    runs_t *r = runs_new();
    session_t *s = runs_session_add(r, "s");
    run_t *a = runs_add(r, s, "run_a", "echo", NULL, "user", "T");
    run_t *b = runs_add(r, s, "run_b", "echo", NULL, "user", "T");
    runs_start(a);
    runs_add_follower(r, b, 5, 1);
    /* b never existed: out of the queue, its follower gone. */
    runs_forget(r, b);
    CHECK(runs_get(r, "run_b") == NULL && s->qhead == NULL && s->qtail == NULL && s->queued == 0);
    CHECK(runs_drop_req(r, 5) == 0 && s->runs == 1);
    /* a ended in a turn that did not commit: back in memory, not freed. */
    runs_mark_ended(r, a);
    runs_unend(r, a);
    runs_free_ended(r);
    CHECK(runs_live(r, "run_a") == a && !a->ended);
    /* A run ended this turn keeps its session until it is freed. */
    runs_mark_ended(r, a);
    runs_dequeue(a);
    runs_session_release(r, s);
    CHECK(runs_session(r, "s") == s);
    runs_free_ended(r);
    CHECK(runs_session(r, "s") == NULL && runs_count(r) == 0);
    /* Forgetting a run that ended in the same turn. */
    s = runs_session_add(r, "t");
    run_t *c = runs_add(r, s, "run_c", "echo", NULL, "user", "T");
    runs_mark_ended(r, c);
    runs_forget(r, c);
    runs_free_ended(r);
    CHECK(runs_count(r) == 0 && runs_session(r, "t") == NULL);
    runs_destroy(&r);
}

/* A call tree: children in no queue, started without touching the session,
 * linked both ways, unlinked when freed or forgotten; the session lives
 * while a child points to it. */
static void test_children(void)
{
    runs_t *r = runs_new();
    session_t *s = runs_session_add(r, "s1");
    run_t *root = runs_add(r, s, "run_r", "caller", NULL, "user", "T1");
    runs_start(root);
    uint8_t hist[] = {0x82, 0xa4, 'r', 'o', 'l', 'e', 0xa4, 'u', 's', 'e', 'r',
                      0xa7, 'c', 'o', 'n', 't', 'e', 'n', 't', 0xa1, 'x'};
    run_t *a = runs_add_child(r, root, "run_a", "echo", "user", "T2", "c1", hist, sizeof hist, 1);
    run_t *b = runs_add_child(r, root, "run_b", "echo", "user", "T3", "c2", NULL, 0, 0);
    run_t *g = runs_add_child(r, a, "run_g", "echo", "user", "T4", "c1", NULL, 0, 0);
    CHECK(s->running == root && s->qhead == NULL && s->queued == 0 && s->runs == 4);
    runs_start(a); /* a child leaves the session as it is */
    CHECK(s->running == root && s->queued == 0);
    CHECK(root->children == b && b->sibling == a && a->children == g && g->parent == a);
    CHECK(a->history_len == sizeof hist && a->history_count == 1 && a->history != hist &&
          !memcmp(a->history, hist, sizeof hist) && b->history == NULL);
    CHECK(g->depth == 2 && !strcmp(g->root_run_id, "run_r") && !strcmp(g->parent_run_id, "run_a"));
    CHECK(runs_child_by_call(a, "c1", 2) == g && runs_child_by_call(root, "c1", 2) == a);
    /* Forgotten (a failed turn): out of its parent's list, its child orphaned. */
    runs_forget(r, a);
    CHECK(root->children == b && b->sibling == NULL && g->parent == NULL);
    CHECK(runs_child_by_call(root, "c1", 2) == NULL && runs_count(r) == 3);
    /* The root ends and is freed first: the child keeps its ids, loses the pointer. */
    runs_mark_ended(r, root);
    runs_free_ended(r);
    CHECK(b->parent == NULL && !strcmp(b->parent_run_id, "run_r") && runs_session(r, "s1") == s);
    runs_mark_ended(r, b);
    runs_mark_ended(r, g);
    runs_free_ended(r);
    CHECK(runs_count(r) == 0 && runs_session(r, "s1") == NULL);
    runs_destroy(&r);
}

static char s_released[8][64];
static int s_nreleased;

static void s_on_release(void *arg, const char *session_id)
{
    (void)arg;
    CHECK(s_nreleased < 8);
    snprintf(s_released[s_nreleased++], 64, "%s", session_id);
}

/* The release hook hears of a session once, as it is freed: not while a
 * watcher still holds it. */
static void test_release_hook(void)
{
    runs_t *r = runs_new();
    runs_on_release(r, s_on_release, NULL);
    session_t *s = runs_session_add(r, "gone");
    runs_add_watcher(r, s, 7);
    runs_session_release(r, s);
    CHECK(s_nreleased == 0 && runs_session(r, "gone") == s);
    CHECK(runs_drop_req(r, 7) == 1);
    CHECK(s_nreleased == 1 && !strcmp(s_released[0], "gone") && !runs_session(r, "gone"));
    runs_destroy(&r);
    CHECK(s_nreleased == 1);
}

int main(void)
{
    test_release_hook();
    test_children();
    test_queue_and_requests();
    test_followers_and_watchers();
    test_forget_and_unend();
    return 0;
}
