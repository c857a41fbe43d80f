/* tapscan: what a body says about runs and calls, for the tap's run
 * attribution and call trees (tapfmt.c). One pass over a body's top level
 * with the strict readers of proto/mp.h: "run_id", "op", "agent_id",
 * "call_id", the invoke's "platform" map {parent_run_id, root_run_id,
 * depth} (proto/PROTOCOL.md), and a watch batch's events
 * ({"events":[{"run_id",...}, ...]}, proto/ORCHESTRATOR.md). A body that
 * does not decode leaves what was read so far: the tap shows it anyway. */
#ifndef MAP_TAPSCAN_H
#define MAP_TAPSCAN_H
#include "proto/mp.h"

#include <stddef.h>
#include <stdint.h>

#define TAPSCAN_RUN_MAX 128   /* bytes of a run id (longer: shown as none) */
#define TAPSCAN_ID_MAX 128    /* bytes of an agent or call id */
#define TAPSCAN_BATCH_RUNS 16 /* distinct runs of one batch kept */

typedef struct {
    char run[TAPSCAN_RUN_MAX + 1];    /* "run_id" */
    int is_call;                      /* "op" is "call" */
    char agent[TAPSCAN_ID_MAX + 1];   /* "agent_id" */
    char call_id[TAPSCAN_ID_MAX + 1]; /* "call_id" */
    int has_platform;                 /* "platform" is a map */
    char parent[TAPSCAN_RUN_MAX + 1]; /* platform's "parent_run_id" */
    char root[TAPSCAN_RUN_MAX + 1];   /* platform's "root_run_id" */
    uint64_t depth;                   /* platform's "depth" */
    /* A watch's batch: the distinct runs of its events, the first
     * TAPSCAN_BATCH_RUNS. */
    char batch[TAPSCAN_BATCH_RUNS][TAPSCAN_RUN_MAX + 1];
    size_t nbatch;
} tapscan_t;

/* Scans body (NULL: nothing) into in, zeroed first. */
void tapscan(const uint8_t *body, size_t len, tapscan_t *in);
/* A msgpack key (k, klen) is want. */
int tapscan_key(const char *k, uint32_t klen, const char *want);

#endif
