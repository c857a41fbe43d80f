/* hmap_test: the map against a plain array model over random operations,
 * including the deletion patterns backward shifting must get right. */
#include "hmap.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#define KEYS 4096

int main(void)
{
    hmap_t *m = hmap_new(KEYS);
    static void *model[KEYS];
    srand(42);
    for (int op = 0; op < 200000; op++) {
        /* Keys with the same low bits collide in probe runs on purpose. */
        uint64_t k = (uint64_t)(rand() % KEYS);
        uint64_t key = k * 1024;
        int what = rand() % 3;
        if (what == 0) {
            void *v = (void *)(uintptr_t)(op + 1);
            assert(hmap_put(m, key, v) == 0);
            model[k] = v;
        } else if (what == 1) {
            assert(hmap_del(m, key) == model[k]);
            model[k] = NULL;
        } else {
            assert(hmap_get(m, key) == model[k]);
        }
    }
    size_t count = 0;
    for (int k = 0; k < KEYS; k++) {
        assert(hmap_get(m, (uint64_t)k * 1024) == model[k]);
        count += model[k] != NULL;
    }
    assert(hmap_size(m) == count);
    /* Iteration sees every entry once. */
    size_t pos = 0, seen = 0;
    uint64_t key;
    void *value;
    while (hmap_next(m, &pos, &key, &value) == 0) {
        assert(model[key / 1024] == value);
        seen++;
    }
    assert(seen == count);
    hmap_destroy(&m);
    assert(m == NULL);
    /* The maximum holds: the map refuses new keys, not replacements. */
    m = hmap_new(2);
    assert(hmap_put(m, 1, (void *)1) == 0 && hmap_put(m, 2, (void *)2) == 0);
    assert(hmap_put(m, 3, (void *)3) == -1);
    assert(hmap_put(m, 2, (void *)9) == 0 && hmap_get(m, 2) == (void *)9);
    hmap_destroy(&m);
    hmap_destroy(&m); /* NULL-safe */
    printf("hmap_test: ok\n");
    return 0;
}
