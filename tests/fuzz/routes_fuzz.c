/* routes_fuzz: the body of POST /v1/runs/{id}/calls (ingress/routes.c) and
 * an Authorization header from any bytes: a request the orchestrator
 * decodes, or a SPEC error (400 bad_json/bad_request, 413 too_large);
 * never a crash, a leak or a half-written request. */
#include "ingress/routes.h"
#include "proto/mp.h"
#include "proto/orch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static mp_buf_t b;
    static int init;
    if (!init) {
        mp_buf_init(&b, 1 << 16); /* small: the 413 path is reached too */
        init = 1;
    }
    mp_buf_reset(&b);
    route_err_t e;
    if (routes_call("run_1", "0123456789abcdef0123456789abcdef", (const char *)data, size, &b, &e) == 0) {
        orch_request_t q;
        if (b.overflow || orch_decode_request(b.data, b.len, &q) != AGENT_OK ||
            q.op.len != 4 || memcmp(q.op.ptr, "call", 4) != 0)
            abort();
    } else if (!((e.status == 400 && (!strcmp(e.code, "bad_json") || !strcmp(e.code, "bad_request"))) ||
                 (e.status == 413 && !strcmp(e.code, "too_large")))) {
        abort();
    }
    /* The same bytes as a header value (up to the first NUL). */
    char header[256], token[ROUTES_TOKEN_LEN + 1];
    size_t n = size < sizeof header - 1 ? size : sizeof header - 1;
    memcpy(header, data, n);
    header[n] = '\0';
    if (routes_bearer_token(header, token, sizeof token) == 0) {
        if (strlen(token) != ROUTES_TOKEN_LEN || strspn(token, "0123456789abcdef") != ROUTES_TOKEN_LEN)
            abort();
    }
    return 0;
}
