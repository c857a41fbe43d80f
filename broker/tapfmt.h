/* tapfmt: turns one copy from the broker's tap ([meta, header, body?], see
 * proto/PROTOCOL.md) into one printed line, human or JSON, and applies the
 * tap tool's filters. No network: the tap tool feeds it, tests too. */
#ifndef MAP_TAPFMT_H
#define MAP_TAPFMT_H
#include "common/sbuf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int json;             /* 1: JSON lines with the decoded body */
    const char *service;  /* show only this service, or NULL */
    const char *run_id;   /* show only frames whose body names this run, or NULL */
    const char *type;     /* show only this frame type (case-insensitive), or NULL */
} tapfmt_opts_t;

/* Formats one tap message into out (reset first, no trailing newline).
 * Returns 1 when the line passes the filters, 0 when filtered out.
 * Undecodable meta or header parts give a line that says so (with hex),
 * never an error: nothing is skipped silently. */
int tapfmt_line(const tapfmt_opts_t *opts, const uint8_t *meta, size_t meta_len,
                const uint8_t *hdr, size_t hdr_len, const uint8_t *body, size_t body_len,
                int has_body, sbuf_t *out);

#endif
