/* hmap: open addressing on a power-of-two table, at most 50% full.
 * Invariant: every entry lies on the probe run from its home slot with no
 * empty slot between (backward-shift deletion keeps it so). Empty slots have
 * value NULL, so NULL cannot be stored. */
#include "hmap.h"

#include "mem.h"

#include <assert.h>

typedef struct {
    uint64_t key;
    void *value; /* NULL: empty slot */
} s_slot_t;

struct hmap_t {
    s_slot_t *slots; /* table of cap slots */
    size_t cap;      /* power of two */
    size_t size;     /* entries held */
    size_t max;      /* entries allowed */
};

static size_t s_home(uint64_t key, size_t cap)
{
    key ^= key >> 33; /* murmur3 finalizer: ids are often sequential */
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    key *= 0xc4ceb9fe1a85ec53ULL;
    key ^= key >> 33;
    return (size_t)key & (cap - 1);
}

hmap_t *hmap_new(size_t max_entries)
{
    hmap_t *self = mem_alloc(sizeof *self);
    self->cap = 16;
    self->max = max_entries;
    self->slots = mem_alloc(self->cap * sizeof *self->slots);
    return self;
}

void hmap_destroy(hmap_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    mem_free((*self_p)->slots);
    mem_free(*self_p);
    *self_p = NULL;
}

void *hmap_get(const hmap_t *self, uint64_t key)
{
    size_t mask = self->cap - 1;
    for (size_t i = s_home(key, self->cap);; i = (i + 1) & mask) {
        if (!self->slots[i].value)
            return NULL;
        if (self->slots[i].key == key)
            return self->slots[i].value;
    }
}

static void s_grow(hmap_t *self)
{
    s_slot_t *old = self->slots;
    size_t old_cap = self->cap;
    self->cap *= 2;
    self->slots = mem_alloc(self->cap * sizeof *self->slots);
    size_t mask = self->cap - 1;
    for (size_t j = 0; j < old_cap; j++) {
        if (!old[j].value)
            continue;
        size_t i = s_home(old[j].key, self->cap);
        while (self->slots[i].value)
            i = (i + 1) & mask;
        self->slots[i] = old[j];
    }
    mem_free(old);
}

int hmap_put(hmap_t *self, uint64_t key, void *value)
{
    assert(value);
    size_t mask = self->cap - 1;
    size_t i = s_home(key, self->cap);
    for (; self->slots[i].value; i = (i + 1) & mask) {
        if (self->slots[i].key == key) {
            self->slots[i].value = value;
            return 0;
        }
    }
    if (self->size >= self->max)
        return -1;
    if ((self->size + 1) * 2 > self->cap) {
        s_grow(self);
        return hmap_put(self, key, value);
    }
    self->slots[i].key = key;
    self->slots[i].value = value;
    self->size++;
    return 0;
}

void *hmap_del(hmap_t *self, uint64_t key)
{
    size_t mask = self->cap - 1;
    size_t i = s_home(key, self->cap);
    for (;; i = (i + 1) & mask) {
        if (!self->slots[i].value)
            return NULL;
        if (self->slots[i].key == key)
            break;
    }
    void *value = self->slots[i].value;
    /* Backward shift: pull later entries of the run into the hole when their
     * home slot does not lie cyclically in (hole, j]. */
    size_t hole = i;
    for (size_t j = (i + 1) & mask; self->slots[j].value; j = (j + 1) & mask) {
        size_t home = s_home(self->slots[j].key, self->cap);
        int in_between = hole <= j ? (home > hole && home <= j)
                                   : (home > hole || home <= j);
        if (!in_between) {
            self->slots[hole] = self->slots[j];
            hole = j;
        }
    }
    self->slots[hole].value = NULL;
    self->slots[hole].key = 0;
    self->size--;
    return value;
}

size_t hmap_size(const hmap_t *self)
{
    return self->size;
}

int hmap_next(const hmap_t *self, size_t *pos, uint64_t *key, void **value)
{
    for (; *pos < self->cap; (*pos)++) {
        if (self->slots[*pos].value) {
            *key = self->slots[*pos].key;
            *value = self->slots[*pos].value;
            (*pos)++;
            return 0;
        }
    }
    return -1;
}
