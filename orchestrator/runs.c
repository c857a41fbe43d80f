/* runs: the in-memory registry (runs.h).
 *
 * Runs and sessions are in czmq hash tables keyed by id (strings copied by
 * the table); follower and watcher requests in two hmaps keyed by the
 * broker's request id. A session's queue is a singly linked list with a
 * tail pointer and a count; queues stay short (MAP_MAX_QUEUED_RUNS), so
 * removal from the middle walks it.
 *
 * Call trees: a child holds a parent pointer and sits in its parent's
 * children list; freeing a run unlinks it from its parent and orphans its
 * children (parent NULL), so no pointer outlives the run it names.
 *
 * Invariant: session->runs counts the run_t whose session it is, until
 * they are freed; a session is freed only when that count and its watcher
 * list are both empty, never while an ended run of this turn still points
 * to it. */
#include "runs.h"

#include "common/hmap.h"
#include "common/mem.h"

#include <czmq.h>
#include <string.h>

#define S_REQS_MAX 1000000 /* follow and watch requests at once */

struct runs_t {
    zhashx_t *runs;        /* run_id → run_t */
    zhashx_t *sessions;    /* session_id → session_t */
    hmap_t *follow_reqs;   /* follower request → run_t */
    hmap_t *watch_reqs;    /* watcher request → session_t */
    run_t *ended;          /* runs ended this turn */
    void (*released)(void *arg, const char *session_id); /* runs_on_release */
    void *released_arg;
};

runs_t *runs_new(void)
{
    runs_t *self = mem_alloc(sizeof *self);
    self->runs = zhashx_new();
    self->sessions = zhashx_new();
    self->follow_reqs = hmap_new(S_REQS_MAX);
    self->watch_reqs = hmap_new(S_REQS_MAX);
    return self;
}

static void s_free_run(run_t *run)
{
    for (follower_t *f = run->followers; f;) {
        follower_t *next = f->next;
        mem_free(f);
        f = next;
    }
    mem_free(run->agent_id);
    mem_free(run->parent_run_id);
    mem_free(run->root_run_id);
    mem_free(run->call_id);
    mem_free(run->history);
    mem_free(run->request_id);
    mem_free(run->role);
    mem_free(run->content);
    mem_free(run);
}

void runs_destroy(runs_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    runs_t *self = *self_p;
    for (run_t *run = zhashx_first(self->runs); run; run = zhashx_next(self->runs))
        s_free_run(run);
    for (session_t *s = zhashx_first(self->sessions); s; s = zhashx_next(self->sessions)) {
        for (watcher_t *w = s->watchers; w;) {
            watcher_t *next = w->next;
            mem_free(w);
            w = next;
        }
        mem_free(s->id);
        mem_free(s);
    }
    zhashx_destroy(&self->runs);
    zhashx_destroy(&self->sessions);
    hmap_destroy(&self->follow_reqs);
    hmap_destroy(&self->watch_reqs);
    mem_free(self);
    *self_p = NULL;
}

session_t *runs_session(runs_t *self, const char *id)
{
    return zhashx_lookup(self->sessions, id);
}

session_t *runs_session_add(runs_t *self, const char *id)
{
    session_t *s = zhashx_lookup(self->sessions, id);
    if (!s) {
        s = mem_alloc(sizeof *s);
        s->id = mem_strdup(id);
        zhashx_insert(self->sessions, id, s);
    }
    return s;
}

void runs_on_release(runs_t *self, void (*fn)(void *arg, const char *session_id), void *arg)
{
    self->released = fn;
    self->released_arg = arg;
}

void runs_session_release(runs_t *self, session_t *s)
{
    if (s->runs || s->watchers)
        return;
    if (self->released)
        self->released(self->released_arg, s->id);
    zhashx_delete(self->sessions, s->id);
    mem_free(s->id);
    mem_free(s);
}

run_t *runs_add(runs_t *self, session_t *s, const char *run_id, const char *agent_id,
                const char *request_id, const char *role, const char *created_at)
{
    run_t *run = mem_alloc(sizeof *run);
    snprintf(run->run_id, sizeof run->run_id, "%s", run_id);
    snprintf(run->created_at, sizeof run->created_at, "%s", created_at);
    run->session = s;
    run->agent_id = mem_strdup(agent_id);
    run->request_id = request_id ? mem_strdup(request_id) : NULL;
    run->role = mem_strdup(role);
    run->status = RUN_QUEUED;
    if (s->qtail)
        s->qtail->qnext = run;
    else
        s->qhead = run;
    s->qtail = run;
    s->queued++;
    s->runs++;
    zhashx_insert(self->runs, run->run_id, run);
    return run;
}

run_t *runs_add_child(runs_t *self, run_t *parent, const char *run_id, const char *agent_id,
                      const char *role, const char *created_at, const char *call_id,
                      const uint8_t *history, size_t history_len, uint32_t history_count)
{
    session_t *s = parent->session;
    run_t *run = mem_alloc(sizeof *run);
    snprintf(run->run_id, sizeof run->run_id, "%s", run_id);
    snprintf(run->created_at, sizeof run->created_at, "%s", created_at);
    run->session = s;
    run->agent_id = mem_strdup(agent_id);
    run->role = mem_strdup(role);
    run->status = RUN_QUEUED;
    run->depth = parent->depth + 1;
    run->parent_run_id = mem_strdup(parent->run_id);
    run->root_run_id = mem_strdup(parent->root_run_id ? parent->root_run_id : parent->run_id);
    run->call_id = mem_strdup(call_id);
    if (history_len) {
        run->history = mem_alloc(history_len);
        memcpy(run->history, history, history_len);
        run->history_len = history_len;
        run->history_count = history_count;
    }
    run->parent = parent;
    run->sibling = parent->children;
    parent->children = run;
    s->runs++;
    zhashx_insert(self->runs, run->run_id, run);
    return run;
}

run_t *runs_child_by_call(const run_t *parent, const char *call_id, size_t len)
{
    for (run_t *c = parent->children; c; c = c->sibling)
        if (strlen(c->call_id) == len && memcmp(c->call_id, call_id, len) == 0)
            return c;
    return NULL;
}

run_t *runs_get(runs_t *self, const char *run_id)
{
    return zhashx_lookup(self->runs, run_id);
}

run_t *runs_live(runs_t *self, const char *run_id)
{
    run_t *run = zhashx_lookup(self->runs, run_id);
    return run && !run->ended ? run : NULL;
}

size_t runs_count(const runs_t *self)
{
    return zhashx_size(self->runs);
}

static int s_same_request(const run_t *run, const char *request_id, size_t len)
{
    return run->request_id && strlen(run->request_id) == len &&
           memcmp(run->request_id, request_id, len) == 0;
}

run_t *runs_find_request(const session_t *s, const char *request_id, size_t len)
{
    if (!s)
        return NULL;
    if (s->running && s_same_request(s->running, request_id, len))
        return s->running;
    for (run_t *q = s->qhead; q; q = q->qnext)
        if (s_same_request(q, request_id, len))
            return q;
    return NULL;
}

void runs_dequeue(run_t *run)
{
    session_t *s = run->session;
    if (s->running == run)
        s->running = NULL;
    run_t **pp = &s->qhead;
    while (*pp && *pp != run)
        pp = &(*pp)->qnext;
    if (!*pp)
        return;
    *pp = run->qnext;
    run->qnext = NULL;
    s->queued--;
    s->qtail = NULL;
    for (run_t *q = s->qhead; q; q = q->qnext)
        s->qtail = q;
}

void runs_start(run_t *run)
{
    if (run->depth)
        return;
    session_t *s = run->session;
    runs_dequeue(run);
    s->running = run;
}

void runs_add_follower(runs_t *self, run_t *run, uint64_t req, uint64_t next_seq)
{
    follower_t *f = mem_alloc(sizeof *f);
    f->req = req;
    f->next_seq = next_seq;
    f->next = run->followers;
    run->followers = f;
    run->nfollowers++;
    hmap_put(self->follow_reqs, req, run);
}

void runs_add_watcher(runs_t *self, session_t *s, uint64_t req)
{
    watcher_t *w = mem_alloc(sizeof *w);
    w->req = req;
    w->next = s->watchers;
    s->watchers = w;
    hmap_put(self->watch_reqs, req, s);
}

int runs_drop_req(runs_t *self, uint64_t req)
{
    session_t *s = hmap_del(self->watch_reqs, req);
    if (s) {
        for (watcher_t **pp = &s->watchers; *pp; pp = &(*pp)->next) {
            if ((*pp)->req == req) {
                watcher_t *dead = *pp;
                *pp = dead->next;
                mem_free(dead);
                break;
            }
        }
        runs_session_release(self, s);
        return 1;
    }
    run_t *run = hmap_del(self->follow_reqs, req);
    if (!run)
        return 0;
    for (follower_t **pp = &run->followers; *pp; pp = &(*pp)->next) {
        if ((*pp)->req == req) {
            follower_t *dead = *pp;
            *pp = dead->next;
            mem_free(dead);
            run->nfollowers--;
            break;
        }
    }
    return 1;
}

void runs_clear_followers(runs_t *self, run_t *run)
{
    for (follower_t *f = run->followers; f;) {
        follower_t *next = f->next;
        hmap_del(self->follow_reqs, f->req);
        mem_free(f);
        f = next;
    }
    run->followers = NULL;
    run->nfollowers = 0;
}

session_t *runs_watched(runs_t *self, uint64_t req)
{
    return hmap_get(self->watch_reqs, req);
}

void runs_each_watch(runs_t *self, void (*cb)(void *arg, uint64_t req), void *arg)
{
    size_t pos = 0;
    uint64_t key;
    void *value;
    while (hmap_next(self->watch_reqs, &pos, &key, &value) == 0)
        cb(arg, key);
}

void runs_mark_ended(runs_t *self, run_t *run)
{
    run->ended = 1;
    run->next_ended = self->ended;
    self->ended = run;
}

void runs_unend(runs_t *self, run_t *run)
{
    for (run_t **pp = &self->ended; *pp; pp = &(*pp)->next_ended) {
        if (*pp == run) {
            *pp = run->next_ended;
            break;
        }
    }
    run->next_ended = NULL;
    run->ended = 0;
}

static void s_unlink(run_t *run)
{
    if (run->parent) {
        for (run_t **pp = &run->parent->children; *pp; pp = &(*pp)->sibling) {
            if (*pp == run) {
                *pp = run->sibling;
                break;
            }
        }
        run->parent = NULL;
    }
    for (run_t *c = run->children; c;) {
        run_t *next = c->sibling;
        c->parent = NULL;
        c->sibling = NULL;
        c = next;
    }
    run->children = NULL;
}

static void s_remove(runs_t *self, run_t *run)
{
    session_t *s = run->session;
    s_unlink(run);
    runs_dequeue(run); /* nothing in the session points to a freed run */
    zhashx_delete(self->runs, run->run_id);
    s->runs--;
    s_free_run(run);
    runs_session_release(self, s);
}

void runs_free_ended(runs_t *self)
{
    while (self->ended) {
        run_t *run = self->ended;
        self->ended = run->next_ended;
        runs_clear_followers(self, run);
        s_remove(self, run);
    }
}

void runs_forget(runs_t *self, run_t *run)
{
    if (run->ended)
        runs_unend(self, run);
    runs_dequeue(run);
    runs_clear_followers(self, run);
    s_remove(self, run);
}

void runs_each(runs_t *self, void (*cb)(void *arg, run_t *run), void *arg)
{
    zlistx_t *keys = zhashx_keys(self->runs);
    for (const char *k = zlistx_first(keys); k; k = zlistx_next(keys)) {
        run_t *run = zhashx_lookup(self->runs, k);
        if (run)
            cb(arg, run);
    }
    zlistx_destroy(&keys);
}
