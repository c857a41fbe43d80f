/* dispatch: services cache, routing and the invoke body (dispatch.h).
 *
 * The cache is a czmq hash id → worker count, rebuilt whole from each
 * answer. `recorded` keeps the native ids already written to the store as
 * agents (kind native), so each is written once per process. */
#include "dispatch.h"

#include "common/clock.h"
#include "common/mem.h"
#include "proto/frame.h"

#include <czmq.h>
#include <stdio.h>
#include <string.h>

struct dispatch_t {
    worker_t *worker;
    store_t *store;
    size_t body_max;
    zhashx_t *native;          /* agent id → worker count */
    zhashx_t *recorded;        /* native ids written to the store */
    size_t bridge_workers;
    uint64_t asked;            /* SERVICES request out, 0 if none */
    int stale;                 /* a list newer than the one asked is wanted */
    int64_t next_refresh;
    agent_msg_t *hist;         /* dispatch_invoke: views into the store's history */
    uint32_t nhist, hist_cap;
    mp_buf_t body;             /* dispatch_invoke: the invoke body, kept */
};

dispatch_t *dispatch_new(worker_t *worker, store_t *store, size_t body_max)
{
    dispatch_t *self = mem_alloc(sizeof *self);
    self->worker = worker;
    self->store = store;
    self->body_max = body_max;
    mp_buf_init(&self->body, body_max);
    self->native = zhashx_new();
    self->recorded = zhashx_new();
    return self;
}

void dispatch_destroy(dispatch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    dispatch_t *self = *self_p;
    zhashx_destroy(&self->native);
    zhashx_destroy(&self->recorded);
    mem_free(self->hist);
    mp_buf_free(&self->body);
    mem_free(self);
    *self_p = NULL;
}

void dispatch_ask(dispatch_t *self, int fresh, int64_t now)
{
    if (fresh)
        self->stale = 1;
    if ((self->asked && !self->stale) || !self->worker)
        return;
    self->stale = 0;
    self->asked = worker_services(self->worker);
    self->next_refresh = now + DISPATCH_REFRESH_MS;
}

int dispatch_due(const dispatch_t *self, int64_t now)
{
    return now >= self->next_refresh;
}

uint64_t dispatch_asked(const dispatch_t *self)
{
    return self->asked;
}

void dispatch_forget_ask(dispatch_t *self)
{
    self->asked = 0;
}

int dispatch_on_services(dispatch_t *self, const uint8_t *body, size_t len,
                         void (*seen)(void *arg, const char *agent_id), void *arg)
{
    mp_reader_t r;
    mp_reader_init(&r, body, len);
    uint32_t n;
    if (mp_read_array(&r, &n))
        return -1;
    zhashx_purge(self->native);
    self->bridge_workers = 0;
    size_t plen = strlen(AGENT_SERVICE_PREFIX);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t fields, name_len;
        const char *name;
        uint64_t workers, skip;
        if (mp_read_array(&r, &fields) || fields != 5 ||
            mp_read_str(&r, &name, &name_len, FRAME_SERVICE_MAX) || mp_read_uint(&r, &workers) ||
            mp_read_uint(&r, &skip) || mp_read_uint(&r, &skip) || mp_read_uint(&r, &skip))
            return -1;
        if (name_len == 6 && memcmp(name, "bridge", 6) == 0)
            self->bridge_workers = (size_t)workers;
        if (name_len > plen && memcmp(name, AGENT_SERVICE_PREFIX, plen) == 0 && workers > 0) {
            char id[FRAME_SERVICE_MAX + 1];
            memcpy(id, name + plen, name_len - plen);
            id[name_len - plen] = '\0';
            zhashx_insert(self->native, id, (void *)(uintptr_t)workers);
            if (!zhashx_lookup(self->recorded, id)) {
                zhashx_insert(self->recorded, id, (void *)1);
                if (seen)
                    seen(arg, id);
            }
        }
    }
    return 0;
}

void dispatch_forget_recorded(dispatch_t *self)
{
    zhashx_purge(self->recorded);
}

size_t dispatch_workers(const dispatch_t *self, const char *agent_id)
{
    return (size_t)(uintptr_t)zhashx_lookup(self->native, agent_id);
}

size_t dispatch_bridge_workers(const dispatch_t *self)
{
    return self->bridge_workers;
}

dispatch_route_t dispatch_route(dispatch_t *self, const char *agent_id, char *buf, size_t cap,
                                int *store_err)
{
    buf[0] = '\0';
    int rc = store_agent_endpoint(self->store, agent_id, buf, cap);
    if (rc < 0)
        *store_err = 1;
    if (rc == 0 && buf[0])
        return DISPATCH_HTTP;
    return zhashx_lookup(self->native, agent_id) ? DISPATCH_NATIVE : DISPATCH_UNKNOWN;
}

/* Views: the store keeps the bytes until its next history read, which
 * comes after this invoke's body is encoded. */
static int s_history_cb(void *arg, const char *role, const char *content, size_t content_len)
{
    dispatch_t *self = arg;
    if (self->nhist == self->hist_cap) {
        self->hist_cap = self->hist_cap ? self->hist_cap * 2 : 64;
        self->hist = mem_realloc(self->hist, self->hist_cap * sizeof *self->hist);
    }
    agent_msg_t *m = &self->hist[self->nhist++];
    m->role.ptr = role;
    m->role.len = (uint32_t)strlen(role);
    m->content.ptr = content;
    m->content.len = (uint32_t)content_len;
    return 0;
}

uint64_t dispatch_invoke(dispatch_t *self, const agent_invoke_t *inv, dispatch_route_t route,
                         const char *session_id, size_t history_max, const agent_msg_t *given,
                         uint32_t ngiven, int *too_large, int *store_err)
{
    char service[FRAME_SERVICE_MAX + 1];
    if (route == DISPATCH_HTTP)
        snprintf(service, sizeof service, "bridge");
    else
        snprintf(service, sizeof service, AGENT_SERVICE_PREFIX "%.*s", (int)inv->agent_id.len,
                 inv->agent_id.ptr);
    self->nhist = 0;
    if (session_id && store_history(self->store, session_id, history_max, s_history_cb, self) != 0)
        *store_err = 1;
    const agent_msg_t *msgs = session_id ? self->hist : given;
    uint32_t count = session_id ? self->nhist : ngiven;
    mp_buf_t *b = &self->body;
    mp_buf_reset(b);
    /* Too much history for one body: keep the newest messages that fit. */
    uint32_t skip = 0;
    while (agent_encode_invoke(b, inv, msgs ? msgs + skip : NULL, count - skip) != 0 &&
           skip < count) {
        mp_buf_reset(b);
        skip = skip + (count - skip + 1) / 2;
    }
    *too_large = b->overflow;
    uint64_t req = b->overflow || !self->worker ? 0
                                                : worker_request(self->worker, service, b->data, b->len);
    self->nhist = 0;
    return req;
}

const char *dispatch_error_code(const char *code)
{
    static const char *passed[] = {"agent_unavailable", "agent_error", "agent_timeout",
                                   "worker_lost", "unknown_agent", "internal"};
    for (size_t i = 0; i < sizeof passed / sizeof *passed; i++)
        if (strcmp(code, passed[i]) == 0)
            return passed[i];
    if (strcmp(code, "broker_lost") == 0)
        return "worker_lost";
    if (strcmp(code, "unknown_service") == 0 || strcmp(code, "overloaded") == 0 ||
        strcmp(code, "worker_stopping") == 0)
        return "agent_unavailable";
    return "agent_error";
}
