/* orch_fuzz: the orchestrator service's body decoders on any bytes; a
 * decoded request re-encodes and decodes to the same fields. */
#include "proto/orch.h"

#include <stdlib.h>
#include <string.h>

static int s_same(const agent_str_t *a, const agent_str_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    orch_request_t q;
    if (orch_decode_request(data, size, &q) == AGENT_OK) {
        mp_buf_t b;
        mp_buf_init(&b, 1 << 22);
        if (orch_encode_request(&b, &q) != 0)
            abort();
        orch_request_t r;
        if (orch_decode_request(b.data, b.len, &r) != AGENT_OK || !s_same(&r.op, &q.op) ||
            !s_same(&r.session_id, &q.session_id) || !s_same(&r.content, &q.content) ||
            r.after_seq != q.after_seq || r.limit != q.limit || !!r.follow != !!q.follow)
            abort();
        mp_buf_free(&b);
    }
    unsigned status;
    agent_str_t json;
    orch_decode_reply(data, size, &status, &json);
    orch_stream_t s;
    orch_decode_stream(data, size, &s);
    return 0;
}
