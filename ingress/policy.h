/* policy: who may talk to the edge (SPEC §3). Pure functions of header
 * values, so each rule has a unit test.
 *
 * - Origin: a request or WebSocket upgrade that carries an Origin header
 *   must name the edge's own origin (http(s)://<the Host it was sent to>)
 *   or one of MAP_ALLOWED_ORIGINS (exact, case-insensitive); "null" and
 *   anything else is refused (403 forbidden_origin). No Origin: allowed
 *   (curl, SDKs: not a browser).
 * - Host: without an API key (and unless --allow-remote), the Host must
 *   name the listen address or localhost / 127.0.0.1 / [::1], any port, so
 *   a DNS-rebound name cannot reach the edge. No Host header (HTTP/1.0):
 *   allowed.
 * - The API key is compared in constant time. */
#ifndef MAP_POLICY_H
#define MAP_POLICY_H
#include <stddef.h>

#define POLICY_ORIGINS_MAX 16

typedef struct {
    char origins[POLICY_ORIGINS_MAX][256]; /* allowed besides our own, lower case */
    size_t norigins;
    char listen_host[256];   /* the listen address's host, lower case, without [] */
    int check_host;          /* no API key and not --allow-remote */
    const char *api_key;     /* NULL or "": none */
} policy_t;

/* Fills p from the comma-separated allowed origins, the listen host, the
 * key and allow_remote. -1 with err on a malformed origin list. */
int policy_init(policy_t *p, const char *allowed_origins, const char *listen_host,
                const char *api_key, int allow_remote, char *err, size_t errlen);
/* origin/host: header values, NULL when absent. 1 when allowed. */
int policy_origin_ok(const policy_t *p, const char *origin, const char *host);
int policy_host_ok(const policy_t *p, const char *host);
/* 1 when no key is configured, or given (len bytes) equals it; constant time
 * in the given bytes. */
int policy_key_ok(const policy_t *p, const char *given, size_t len);
/* The same for an Authorization header value ("Bearer <key>"). */
int policy_bearer_ok(const policy_t *p, const char *authorization);

#endif
