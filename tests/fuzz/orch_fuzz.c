/* orch_fuzz: the orchestrator service's body decoders on any bytes; a
 * decoded request, reply or stream body (a batch too) re-encodes and
 * decodes to the same fields. */
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
            !s_same(&r.before, &q.before) || !s_same(&r.after, &q.after) ||
            r.after_seq != q.after_seq || r.limit != q.limit || !!r.follow != !!q.follow ||
            !s_same(&r.token, &q.token) || !s_same(&r.call_id, &q.call_id) ||
            r.history_count != q.history_count || (r.history == NULL) != (q.history == NULL))
            abort();
        /* A decoded history iterates exactly history_count messages. */
        const uint8_t *cur = q.history;
        agent_msg_t m;
        uint32_t n = 0;
        while (agent_msgs_next(&cur, q.history_end, &m) == 0)
            n++;
        if (n != q.history_count)
            abort();
        mp_buf_free(&b);
    }
    orch_reply_t rep;
    if (orch_decode_reply(data, size, &rep) == AGENT_OK) {
        mp_buf_t b;
        mp_buf_init(&b, 1 << 22);
        orch_reply_t again;
        if (orch_encode_reply(&b, &rep) != 0 || orch_decode_reply(b.data, b.len, &again) != AGENT_OK ||
            again.status != rep.status || !s_same(&again.json, &rep.json) ||
            !s_same(&again.run_id, &rep.run_id) || !s_same(&again.run_status, &rep.run_status) ||
            !s_same(&again.session_id, &rep.session_id))
            abort();
        mp_buf_free(&b);
    }
    orch_stream_t s;
    if (orch_decode_stream(data, size, &s) == AGENT_OK && s.batch) {
        /* A batch: its events walk out one by one, count as said, and
         * re-encode to a batch that decodes to the same events. */
        mp_buf_t b, one;
        mp_buf_init(&b, 1 << 22);
        mp_buf_init(&one, 1 << 22);
        orch_stream_t it = s, ev;
        uint32_t n = 0;
        if (orch_batch_begin(&b) != 0)
            abort();
        while (orch_batch_next(&it, &ev)) {
            n++;
            mp_buf_reset(&one);
            if (ev.accepted || ev.batch || ev.seq == 0 || orch_encode_event(&one, &ev) != 0 ||
                orch_batch_add(&b, one.data, one.len) != 0)
                abort();
        }
        orch_stream_t t;
        if (n != s.batch || orch_batch_end(&b, n) != 0 ||
            orch_decode_stream(b.data, b.len, &t) != AGENT_OK || t.batch != n)
            abort();
        orch_stream_t a = s, x, y;
        while (orch_batch_next(&a, &x)) {
            if (!orch_batch_next(&t, &y) || x.seq != y.seq || !s_same(&x.json, &y.json) ||
                !s_same(&x.run_id, &y.run_id) || !s_same(&x.type, &y.type) ||
                !!x.terminal != !!y.terminal)
                abort();
        }
        mp_buf_free(&one);
        mp_buf_free(&b);
    } else if (orch_decode_stream(data, size, &s) == AGENT_OK) {
        mp_buf_t b;
        mp_buf_init(&b, 1 << 22);
        int rc = s.accepted ? orch_encode_accepted(&b, &s) : orch_encode_event(&b, &s);
        orch_stream_t t;
        if (rc != 0 || orch_decode_stream(b.data, b.len, &t) != AGENT_OK ||
            t.accepted != s.accepted || !s_same(&t.json, &s.json) ||
            !s_same(&t.run_id, &s.run_id) || !s_same(&t.run_status, &s.run_status) ||
            t.seq != s.seq || !!t.terminal != !!s.terminal)
            abort();
        mp_buf_free(&b);
    }
    return 0;
}
