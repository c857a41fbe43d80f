/* mem: the one allocator. Zeroes, logs and aborts on out-of-memory, so no
 * caller checks for NULL. Sizes that come from the network are capped before
 * they reach it (see proto/). */
#ifndef MAP_MEM_H
#define MAP_MEM_H
#include <stddef.h>

void *mem_alloc(size_t size);                 /* zeroed; never NULL */
void *mem_realloc(void *ptr, size_t size);    /* never NULL for size > 0 */
char *mem_strndup(const char *s, size_t len); /* NUL-terminated copy */
char *mem_strdup(const char *s);
void mem_free(void *ptr);                     /* NULL-safe */

#endif
