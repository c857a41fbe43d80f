/* hmap: a map from uint64 keys to pointers. Open addressing with linear
 * probing and backward-shift deletion: no tombstones, so lookups stay short
 * however many inserts and deletes pass through it. The map grows (doubling)
 * and never holds more than its maximum entries, given at creation. */
#ifndef MAP_HMAP_H
#define MAP_HMAP_H
#include <stddef.h>
#include <stdint.h>

typedef struct hmap_t hmap_t;

hmap_t *hmap_new(size_t max_entries);
void hmap_destroy(hmap_t **self_p);
/* Returns the value for key, or NULL. */
void *hmap_get(const hmap_t *self, uint64_t key);
/* Inserts or replaces. Returns 0, or -1 when the map is full (max_entries). */
int hmap_put(hmap_t *self, uint64_t key, void *value);
/* Removes key. Returns the value it had, or NULL. */
void *hmap_del(hmap_t *self, uint64_t key);
size_t hmap_size(const hmap_t *self);
/* Iteration: start with *pos = 0; returns 0 and fills OUT key/value while
 * entries remain, -1 at the end. The map must not change during iteration. */
int hmap_next(const hmap_t *self, size_t *pos, uint64_t *key, void **value);

#endif
