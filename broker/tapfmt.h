/* tapfmt: turns one copy from the broker's tap ([meta, header, body?], see
 * proto/PROTOCOL.md) into one printed line, human or JSON, and applies the
 * tap tool's filters. No network: the tap tool feeds it, tests too.
 *
 * A tapfmt_t remembers which run each request in flight belongs to: the
 * REQUEST body names its run ("run_id"), the STREAM/REPLY/ERROR/CANCEL
 * frames of the same request (same peer, same id) do not, so they get the
 * run of their REQUEST. The memory is a fixed table (a cache: a collision
 * forgets the older request); a request's final frame frees its entry.
 * With a run filter it also remembers the runs of that run's call tree
 * (children named by their invoke's "platform"), see tapfmt.c. */
#ifndef MAP_TAPFMT_H
#define MAP_TAPFMT_H
#include "common/sbuf.h"

#include <stddef.h>
#include <stdint.h>

#define TAPFMT_PREVIEW 80          /* bytes of body JSON in a human line */
#define TAPFMT_BODY_JSON (1u << 20) /* largest body JSON in a JSON line */
#define TAPFMT_LINE_MAX (4u << 20) /* an sbuf of this maximum holds any line */

typedef struct tapfmt_t tapfmt_t;

typedef struct {
    int json;             /* 1: JSON lines with the decoded body */
    const char *service;  /* show only this service, or NULL */
    const char *run_id;   /* show only frames of this run's call tree, or NULL */
    const char *type;     /* show only this frame type (case-insensitive), or NULL */
} tapfmt_opts_t;

/* Copies the options. Never NULL. */
tapfmt_t *tapfmt_new(const tapfmt_opts_t *opts);
/* NULL-safe; sets *self_p = NULL. */
void tapfmt_destroy(tapfmt_t **self_p);

/* Formats one tap message into out (reset first, no trailing newline; out's
 * maximum should be TAPFMT_LINE_MAX). body is NULL when has_body is 0.
 * Returns 1 when the line passes the filters, 0 when filtered out.
 * Undecodable meta, header or body parts give a line that says so (reason
 * and the first bytes in hex), never an error: nothing is skipped silently.
 * JSON lines are always valid JSON (invalid UTF-8 shown as U+FFFD). */
int tapfmt_line(tapfmt_t *self, const uint8_t *meta, size_t meta_len, const uint8_t *hdr,
                size_t hdr_len, const uint8_t *body, size_t body_len, int has_body,
                sbuf_t *out);

/* Formats a tap message with the wrong number of parts (not 2 or 3): one
 * UNDECODABLE line with the part count and the first part's first bytes.
 * Filters apply as to any undecodable frame (no service, no run). Returns
 * 1 when shown, 0 when filtered out. */
int tapfmt_bad_parts(tapfmt_t *self, int parts, const uint8_t *first, size_t first_len,
                     sbuf_t *out);

#endif
