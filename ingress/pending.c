/* pending: see pending.h. A hash map of request id → pending_t, and per
 * connection an intrusive list (connections have few requests at once). */
#include "pending.h"

#include "conn.h"
#include "common/hmap.h"
#include "common/mem.h"

#include <assert.h>

struct pending_reg_t {
    hmap_t *map;
    size_t max;
    size_t max_per_conn;
};

pending_reg_t *pending_new(size_t max, size_t max_per_conn)
{
    pending_reg_t *self = mem_alloc(sizeof *self);
    self->map = hmap_new(max);
    self->max = max;
    self->max_per_conn = max_per_conn;
    return self;
}

void pending_destroy(pending_reg_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pending_reg_t *self = *self_p;
    size_t pos = 0;
    uint64_t key;
    void *value;
    while (hmap_next(self->map, &pos, &key, &value) == 0)
        mem_free(value);
    hmap_destroy(&self->map);
    mem_free(self);
    *self_p = NULL;
}

int pending_full(const pending_reg_t *self, const conn_t *c)
{
    return hmap_size(self->map) >= self->max || (c && c->npending >= self->max_per_conn);
}

pending_t *pending_add(pending_reg_t *self, uint64_t req, pending_kind_t kind, conn_t *c,
                       int64_t deadline)
{
    assert(req > 0 && !hmap_get(self->map, req));
    pending_t *p = mem_alloc(sizeof *p);
    p->req = req;
    p->kind = kind;
    p->conn = c;
    p->deadline = deadline;
    if (hmap_put(self->map, req, p) != 0) {
        mem_free(p);
        return NULL;
    }
    if (c) {
        p->cnext = c->pendings;
        c->pendings = p;
        c->npending++;
    }
    return p;
}

pending_t *pending_get(const pending_reg_t *self, uint64_t req)
{
    return hmap_get(self->map, req);
}

void pending_free(pending_reg_t *self, pending_t *p)
{
    hmap_del(self->map, p->req);
    if (p->conn) {
        for (pending_t **pp = &p->conn->pendings; *pp; pp = &(*pp)->cnext) {
            if (*pp == p) {
                *pp = p->cnext;
                p->conn->npending--;
                break;
            }
        }
    }
    mem_free(p);
}

size_t pending_expired(const pending_reg_t *self, int64_t now, pending_t **out, size_t max)
{
    size_t pos = 0, n = 0;
    uint64_t key;
    void *value;
    while (n < max && hmap_next(self->map, &pos, &key, &value) == 0) {
        pending_t *p = value;
        if (p->deadline && now >= p->deadline)
            out[n++] = p;
    }
    return n;
}

size_t pending_count(const pending_reg_t *self)
{
    return hmap_size(self->map);
}
