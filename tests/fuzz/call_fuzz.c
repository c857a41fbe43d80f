/* call_fuzz: the call API's state machine (worker/call.c) on any sequence
 * of answers. Two calls start; the input is a list of steps, each an
 * answer to one of the requests in flight (raw bytes, or built: an
 * accepted body, an event of a chosen seq and type, an events page, a
 * final REPLY, an ERROR) or a call_cancel. Checked on every input: each
 * call's events come in seq order from 1 without gap or repeat, nothing
 * comes after its on_end, on_end comes exactly once (call_set_destroy frees
 * what is left, without callbacks), answers go only to requests in flight.
 *
 * Step: [op][selector][n][n bytes]. */
#include "worker/call.h"

#include "proto/frame.h"
#include "proto/orch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_REQS_MAX 64

static uint64_t s_next;
static int s_live[S_REQS_MAX + 1];   /* request id -> in flight */
static uint64_t s_handles[2];
static uint64_t s_last[2];
static int s_ended[2];

static int s_index(uint64_t handle)
{
    for (int i = 0; i < 2; i++)
        if (s_handles[i] == handle)
            return i;
    abort();
}

static uint64_t s_request(void *arg, const char *service, const void *body, size_t len)
{
    (void)arg, (void)body, (void)len;
    if (strcmp(service, CALL_SERVICE) != 0)
        abort();
    if (s_next >= S_REQS_MAX)
        return 0;
    s_live[++s_next] = 1;
    return s_next;
}

static int s_cancel(void *arg, uint64_t req)
{
    (void)arg;
    return req <= S_REQS_MAX && s_live[req] ? 0 : -1;
}

static void s_on_accepted(call_set_t *c, uint64_t call, const char *child, void *user)
{
    (void)c, (void)child, (void)user;
    if (s_ended[s_index(call)])
        abort();
}

static void s_on_event(call_set_t *c, uint64_t call, const call_event_t *ev, void *user)
{
    (void)c, (void)user;
    int i = s_index(call);
    if (s_ended[i] || ev->seq != s_last[i] + 1 || ev->json[ev->json_len] != '\0')
        abort();
    s_last[i] = ev->seq;
}

static void s_on_end(call_set_t *c, uint64_t call, const call_end_t *end, void *user)
{
    (void)c, (void)user;
    int i = s_index(call);
    if (s_ended[i] || !end->code || !end->message || !end->child_run_id || !end->output)
        abort();
    s_ended[i] = 1;
}

static const char *const s_types[] = {"run_started", "agent_stream_delta", "agent_invoke_done",
                                      "run_done", "run_failed", "run_cancelled", "user_input"};

static void s_event_json(char *out, size_t cap, uint64_t seq, const char *type)
{
    snprintf(out, cap,
             "{\"run_id\":\"run_c\",\"seq\":%llu,\"type\":\"%s\",\"payload\":"
             "{\"delta\":\"d\",\"output\":{\"role\":\"assistant\",\"content\":\"x\"},"
             "\"error\":{\"code\":\"worker_lost\",\"message\":\"m\"}}}",
             (unsigned long long)seq, type);
}

static agent_str_t s_s(const char *s)
{
    return (agent_str_t){s, (uint32_t)strlen(s)};
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    s_next = 0;
    memset(s_live, 0, sizeof s_live);
    memset(s_last, 0, sizeof s_last);
    memset(s_ended, 0, sizeof s_ended);
    call_transport_t t = {s_request, s_cancel};
    call_handlers_t h = {s_on_accepted, s_on_event, s_on_end};
    call_set_t *c = call_set_new_transport(&t, NULL, &h, 1 << 16);
    char err[128];
    call_spec_t spec = {.run_id = "run_p", .token = "0123456789abcdef0123456789abcdef",
                        .agent_id = "echo", .call_id = "c1", .content = "hi", .content_len = 2};
    s_handles[0] = call_start(c, &spec, NULL, err, sizeof err);
    spec.call_id = "c2";
    s_handles[1] = call_start(c, &spec, NULL, err, sizeof err);
    if (!s_handles[0] || !s_handles[1])
        abort();
    mp_buf_t b;
    mp_buf_init(&b, 1 << 20);
    static char json[1 << 16];
    size_t pos = 0;
    while (pos + 3 <= size) {
        uint8_t op = data[pos], sel = data[pos + 1], n = data[pos + 2];
        pos += 3;
        if (n > size - pos)
            n = (uint8_t)(size - pos);
        const uint8_t *arg = data + pos;
        pos += n;
        uint64_t req = 1 + sel % (s_next ? s_next : 1);
        if (op % 8 == 3) {
            int i = sel & 1, was_ended = s_ended[i];
            int rc = call_cancel(c, s_handles[i]);
            /* A live call cancels and ends at once; an ended one is refused. */
            if (was_ended ? rc != -1 : rc != 0 || !s_ended[i])
                abort();
            continue;
        }
        if (!s_live[req])
            continue; /* the worker library answers only requests in flight */
        mp_buf_reset(&b);
        switch (op % 8) {
        case 0:
            call_on_stream(c, req, arg, n);
            continue;
        case 1:
            s_live[req] = 0;
            call_on_reply(c, req, arg, n);
            continue;
        case 2:
            s_live[req] = 0;
            call_on_error(c, req, n % 2 ? "worker_lost" : "cancelled", "m");
            continue;
        case 4: {
            orch_stream_t acc = {.json = s_s("{}"), .run_id = s_s("run_c"),
                                 .session_id = s_s("s1"), .run_status = s_s("running")};
            orch_encode_accepted(&b, &acc);
            call_on_stream(c, req, b.data, b.len);
            continue;
        }
        case 5: {
            uint64_t seq = 1 + (n ? arg[0] % 16 : 0);
            const char *type = s_types[(n > 1 ? arg[1] : 0) % 7];
            s_event_json(json, sizeof json, seq, type);
            orch_stream_t ev = {.json = s_s(json), .run_id = s_s("run_c"),
                                .session_id = s_s("s1"), .type = s_s(type), .seq = seq};
            orch_encode_event(&b, &ev);
            call_on_stream(c, req, b.data, b.len);
            continue;
        }
        case 6: {
            uint64_t from = 1 + (n ? arg[0] % 16 : 0), count = n > 1 ? arg[1] % 8 : 0;
            size_t k = (size_t)snprintf(json, sizeof json, "{\"events\":[");
            for (uint64_t s = from; s < from + count; s++) {
                char ev[512];
                size_t at = 2 + (size_t)(s - from);
                s_event_json(ev, sizeof ev, s, s_types[(n > at ? arg[at] : 1) % 7]);
                k += (size_t)snprintf(json + k, sizeof json - k, "%s%s", s > from ? "," : "", ev);
            }
            snprintf(json + k, sizeof json - k, "],\"has_more\":%s}",
                     sel & 0x80 ? "true" : "false");
            orch_reply_t rep = {.status = 200, .json = s_s(json)};
            orch_encode_reply(&b, &rep);
            s_live[req] = 0;
            call_on_reply(c, req, b.data, b.len);
            continue;
        }
        case 7: {
            orch_reply_t rep = {.status = sel & 0x80 ? 409 : 200,
                                .json = s_s(sel & 0x80 ? "{\"error\":{\"code\":\"call_refused\","
                                                         "\"message\":\"m\"}}" : "{}"),
                                .run_id = s_s("run_c"), .run_status = s_s("done"),
                                .session_id = s_s("s1")};
            orch_encode_reply(&b, &rep);
            s_live[req] = 0;
            call_on_reply(c, req, b.data, b.len);
            continue;
        }
        }
    }
    mp_buf_free(&b);
    call_set_destroy(&c);
    return 0;
}
