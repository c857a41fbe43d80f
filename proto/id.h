/* id: the rule every client-supplied id follows (session, agent, request,
 * run ids), in one place: the orchestrator enforces it and the ingress
 * checks it at the edge, so an id one hop accepts every later hop takes.
 *
 * Ids go into JSON, URLs and log lines as they are: 1 to ID_MAX bytes, none
 * a control byte, space, DEL, '"', '\\', '/', '?', '#' or '%'. Bytes >= 0x80
 * pass (UTF-8 names), the transport has checked the encoding. */
#ifndef MAP_ID_H
#define MAP_ID_H
#include <stddef.h>

#define ID_MAX 128

/* 1 when s[0..len) is a valid id, 0 when not. s may be NULL when len is 0. */
int id_valid(const char *s, size_t len);

#endif
