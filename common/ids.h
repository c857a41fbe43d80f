/* ids: generated ids, unique, URL-safe and sortable by creation time:
 * prefix + 12 hex digits of wall milliseconds + 4 hex of a per-process
 * counter + 8 hex random, e.g. "run_0193a2b4c5d6000a1f2e3d4c". */
#ifndef MAP_IDS_H
#define MAP_IDS_H
#include <stddef.h>

#define IDS_MAX 48 /* room for any prefix up to 16 bytes */

/* Writes a new id into buf (IDS_MAX bytes). Returns buf. */
char *ids_new(const char *prefix, char *buf);

#endif
