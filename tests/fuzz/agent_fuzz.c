/* agent_fuzz: the agent body decoders on any bytes; a decoded invoke's
 * history iterates exactly history_count messages, and a decoded body
 * re-encodes and decodes to the same fields. */
#include "proto/agent.h"

#include <stdlib.h>
#include <string.h>

static int s_same(const agent_str_t *a, const agent_str_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->ptr, b->ptr, a->len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    agent_invoke_t inv;
    if (agent_decode_invoke(data, size, &inv) == AGENT_OK) {
        const uint8_t *cur = inv.history;
        agent_msg_t m;
        uint32_t n = 0;
        while (agent_history_next(&inv, &cur, &m) == 0)
            n++;
        if (n != inv.history_count)
            abort();
        mp_buf_t b;
        mp_buf_init(&b, 1 << 22);
        agent_msg_t *hist = calloc(n ? n : 1, sizeof *hist);
        cur = inv.history;
        for (uint32_t i = 0; i < n; i++)
            agent_history_next(&inv, &cur, &hist[i]);
        if (agent_encode_invoke(&b, &inv, hist, n) != 0)
            abort();
        agent_invoke_t back;
        if (agent_decode_invoke(b.data, b.len, &back) != AGENT_OK ||
            !s_same(&back.run_id, &inv.run_id) || !s_same(&back.input.content, &inv.input.content) ||
            back.history_count != n || back.timeout_ms != inv.timeout_ms ||
            !s_same(&back.platform.token, &inv.platform.token) ||
            back.platform.depth != inv.platform.depth ||
            !s_same(&back.platform.root_run_id, &inv.platform.root_run_id) ||
            !s_same(&back.platform.parent_run_id, &inv.platform.parent_run_id))
            abort();
        free(hist);
        mp_buf_free(&b);
    }
    agent_str_t d;
    agent_decode_delta(data, size, &d);
    agent_msg_t out;
    agent_decode_done(data, size, &out);
    return 0;
}
