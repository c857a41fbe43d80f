/* policy: see policy.h. Hosts and origins are compared lower-cased; a
 * port in the Host is ignored for the loopback names (a page served on
 * another port of localhost is still the user's own machine; the Origin
 * rule keeps other pages out). */
#include "policy.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static void s_lower(char *dst, size_t cap, const char *src, size_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[n] = '\0';
}

int policy_init(policy_t *p, const char *allowed_origins, const char *listen_host,
                const char *api_key, int allow_remote, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    const char *h = listen_host ? listen_host : "";
    size_t hl = strlen(h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']')
        h++, hl -= 2;
    s_lower(p->listen_host, sizeof p->listen_host, h, hl);
    p->api_key = api_key && *api_key ? api_key : NULL;
    p->check_host = !p->api_key && !allow_remote;
    const char *s = allowed_origins ? allowed_origins : "";
    while (*s) {
        while (*s == ' ' || *s == ',')
            s++;
        size_t n = strcspn(s, ", ");
        if (!n)
            break;
        if (p->norigins == POLICY_ORIGINS_MAX || n >= sizeof p->origins[0] ||
            (strncmp(s, "http://", 7) && strncmp(s, "https://", 8))) {
            snprintf(err, errlen,
                     "MAP_ALLOWED_ORIGINS takes at most %d origins like https://app.example.com",
                     POLICY_ORIGINS_MAX);
            return -1;
        }
        size_t len = n;
        while (len && s[len - 1] == '/')
            len--;
        s_lower(p->origins[p->norigins++], sizeof p->origins[0], s, len);
        s += n;
    }
    return 0;
}

/* The host part of a Host header value, lower case, without port or []. */
static void s_host_name(const char *host, char *out, size_t cap)
{
    const char *end;
    if (host[0] == '[') {
        end = strchr(host, ']');
        if (!end) {
            out[0] = '\0';
            return;
        }
        s_lower(out, cap, host + 1, (size_t)(end - host - 1));
        return;
    }
    end = strchr(host, ':');
    s_lower(out, cap, host, end ? (size_t)(end - host) : strlen(host));
}

int policy_host_ok(const policy_t *p, const char *host)
{
    if (!p->check_host || !host)
        return 1;
    char name[256];
    s_host_name(host, name, sizeof name);
    return !strcmp(name, "localhost") || !strcmp(name, "127.0.0.1") || !strcmp(name, "::1") ||
           (p->listen_host[0] && !strcmp(name, p->listen_host));
}

int policy_origin_ok(const policy_t *p, const char *origin, const char *host)
{
    if (!origin)
        return 1;
    char o[256];
    size_t ol = strlen(origin);
    if (ol >= sizeof o)
        return 0;
    s_lower(o, sizeof o, origin, ol);
    while (ol && o[ol - 1] == '/')
        o[--ol] = '\0';
    for (size_t i = 0; i < p->norigins; i++)
        if (!strcmp(o, p->origins[i]))
            return 1;
    if (!host || !*host)
        return 0;
    char h[256];
    s_lower(h, sizeof h, host, strlen(host));
    const char *rest = !strncmp(o, "http://", 7) ? o + 7 : !strncmp(o, "https://", 8) ? o + 8 : NULL;
    return rest && !strcmp(rest, h);
}

int policy_key_ok(const policy_t *p, const char *given, size_t len)
{
    if (!p->api_key)
        return 1;
    const unsigned char *k = (const unsigned char *)p->api_key;
    size_t kl = strlen(p->api_key);
    /* Every given byte is compared against the key (cycled), so the time
     * depends on the given length only, never on where they differ. */
    unsigned diff = (unsigned)(len ^ kl);
    for (size_t i = 0; i < len; i++)
        diff |= (unsigned)(((const unsigned char *)given)[i] ^ (kl ? k[i % kl] : 0));
    return diff == 0;
}

int policy_bearer_ok(const policy_t *p, const char *authorization)
{
    if (!p->api_key)
        return 1;
    if (!authorization || strncmp(authorization, "Bearer ", 7) != 0)
        return 0;
    return policy_key_ok(p, authorization + 7, strlen(authorization + 7));
}
