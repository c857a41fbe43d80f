/* calls_test: the pure part of agent calls: tokens (format, uniqueness,
 * comparison) and the admission rule (depth, calls per run, reentry along
 * the whole chain, reentry allowed), on call trees built with runs.c. */
#include "calls.h"

#include "tests/support/check.h"

#include <string.h>

static void test_tokens(void)
{
    char a[AGENT_TOKEN_LEN + 1], b[AGENT_TOKEN_LEN + 1];
    CHECK(calls_token_new(a) == 0 && calls_token_new(b) == 0);
    CHECK(strlen(a) == AGENT_TOKEN_LEN && strcmp(a, b) != 0);
    for (size_t i = 0; i < AGENT_TOKEN_LEN; i++)
        CHECK((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'f'));
    CHECK(calls_token_eq(a, &(agent_str_t){a, AGENT_TOKEN_LEN}));
    CHECK(!calls_token_eq(a, &(agent_str_t){b, AGENT_TOKEN_LEN}));
    CHECK(!calls_token_eq(a, &(agent_str_t){a, AGENT_TOKEN_LEN - 1})); /* a prefix */
    char flipped[AGENT_TOKEN_LEN + 1];
    memcpy(flipped, a, sizeof flipped);
    flipped[AGENT_TOKEN_LEN - 1] ^= 1; /* the last character only */
    CHECK(!calls_token_eq(a, &(agent_str_t){flipped, AGENT_TOKEN_LEN}));
    CHECK(!calls_token_eq("", &(agent_str_t){"", 0})); /* a run without a token opens nothing */
}

static void test_refusals(void)
{
    runs_t *runs = runs_new();
    session_t *s = runs_session_add(runs, "s1");
    run_t *root = runs_add(runs, s, "run_a", "alpha", NULL, "user", "T0");
    run_t *b = runs_add_child(runs, root, "run_b", "beta", "user", "T1", "c1", NULL, 0, 0);
    run_t *c = runs_add_child(runs, b, "run_c", "gamma", "user", "T2", "c1", NULL, 0, 0);
    CHECK(b->depth == 1 && c->depth == 2 && !strcmp(c->root_run_id, "run_a"));
    CHECK(!strcmp(c->parent_run_id, "run_b") && !strcmp(b->root_run_id, "run_a"));
    CHECK(runs_child_by_call(root, "c1", 2) == b && runs_child_by_call(root, "c2", 2) == NULL);
    /* A child is in no queue: the root stays the session's head. */
    CHECK(s->qhead == root && s->queued == 1);
    calls_limits_t lim = {5, 32, 0};
    char why[200];
    CHECK(calls_refusal(c, "delta", 5, &lim, why, sizeof why) == 0);
    /* Reentry: the caller itself, its parent, its root. */
    CHECK(calls_refusal(c, "gamma", 5, &lim, why, sizeof why) == 1);
    CHECK(!strcmp(why, "agent \"gamma\" is already in the call chain"));
    CHECK(calls_refusal(c, "beta", 4, &lim, why, sizeof why) == 1);
    CHECK(calls_refusal(c, "alpha", 5, &lim, why, sizeof why) == 1);
    CHECK(calls_refusal(c, "alph", 4, &lim, why, sizeof why) == 0); /* a prefix is another id */
    lim.allow_reentry = 1;
    CHECK(calls_refusal(c, "alpha", 5, &lim, why, sizeof why) == 0);
    lim.allow_reentry = 0;
    /* Depth: c is at 2, its child would be at 3. */
    lim.depth_max = 2;
    CHECK(calls_refusal(c, "delta", 5, &lim, why, sizeof why) == 1);
    CHECK(!strcmp(why, "call depth limit (2) reached"));
    CHECK(calls_refusal(b, "delta", 5, &lim, why, sizeof why) == 0);
    /* Calls per run: the count of call_ids it started. */
    lim.depth_max = 5;
    b->ncalls = 32;
    CHECK(calls_refusal(b, "delta", 5, &lim, why, sizeof why) == 1);
    CHECK(!strcmp(why, "calls per run limit (32) reached"));
    /* Freeing a parent orphans its children; freeing a child unlinks it. */
    runs_mark_ended(runs, b);
    runs_free_ended(runs);
    CHECK(c->parent == NULL && root->children == NULL);
    CHECK(calls_refusal(c, "alpha", 5, &lim, why, sizeof why) == 0); /* the chain went with b */
    CHECK(calls_refusal(c, "gamma", 5, &lim, why, sizeof why) == 1);
    runs_destroy(&runs);
}

int main(void)
{
    test_tokens();
    test_refusals();
    return 0;
}
