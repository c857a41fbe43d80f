/* routes_test: the REST table and its bodies. */
#include "routes.h"

#include "proto/mp.h"
#include "proto/orch.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The call request in b as "key=value;" text (history as
 * "history=role:content|role:content;"), from the msgpack itself, so the
 * test checks the bytes the orchestrator gets. */
static void s_call_text(const mp_buf_t *b, char *out, size_t cap)
{
    mp_reader_t r;
    mp_reader_init(&r, b->data, b->len);
    uint32_t n;
    assert(mp_read_map(&r, &n) == 0);
    size_t used = 0;
    out[0] = '\0';
    for (uint32_t i = 0; i < n; i++) {
        const char *k, *v;
        uint32_t kl, vl;
        assert(mp_read_str(&r, &k, &kl, 64) == 0);
        used += (size_t)snprintf(out + used, cap - used, "%.*s=", (int)kl, k);
        if (kl == 7 && !memcmp(k, "history", 7)) {
            uint32_t na;
            assert(mp_read_array(&r, &na) == 0);
            for (uint32_t j = 0; j < na; j++) {
                uint32_t nm;
                const char *hk[2], *hv[2];
                uint32_t hkl[2], hvl[2];
                assert(mp_read_map(&r, &nm) == 0 && nm == 2);
                for (int m = 0; m < 2; m++)
                    assert(mp_read_str(&r, &hk[m], &hkl[m], 64) == 0 &&
                           mp_read_str(&r, &hv[m], &hvl[m], 1 << 20) == 0);
                assert(hkl[0] == 4 && !memcmp(hk[0], "role", 4) && hkl[1] == 7);
                used += (size_t)snprintf(out + used, cap - used, "%s%.*s:%.*s", j ? "|" : "",
                                         (int)hvl[0], hv[0], (int)hvl[1], hv[1]);
            }
        } else {
            assert(mp_read_str(&r, &v, &vl, 1 << 20) == 0);
            used += (size_t)snprintf(out + used, cap - used, "%.*s", (int)vl, v);
        }
        used += (size_t)snprintf(out + used, cap - used, ";");
        assert(used < cap);
    }
    assert(mp_left(&r) == 0);
}

static int s_call(const char *body, route_err_t *e, mp_buf_t *b, char *text, size_t cap)
{
    mp_buf_reset(b);
    if (routes_call("run_1", "0123456789abcdef0123456789abcdef", body, strlen(body), b, e) != 0)
        return -1;
    s_call_text(b, text, cap);
    return 0;
}

static int s_invoke(const char *body, route_err_t *e, orch_request_t *q, mp_buf_t *b)
{
    mp_buf_reset(b);
    if (routes_invoke(body, strlen(body), b, e) != 0)
        return -1;
    assert(orch_decode_request(b->data, b->len, q) == AGENT_OK);
    return 0;
}

int main(void)
{
    route_t r;
    route_err_t e;
    assert(routes_match("GET", "/health", &r, &e) == 0 && r.id == ROUTE_HEALTH);
    assert(routes_match("POST", "/internal/invoke", &r, &e) == 0 && r.id == ROUTE_INVOKE);
    assert(routes_match("GET", "/v1/runs/run_1", &r, &e) == 0 && r.id == ROUTE_RUN && !strcmp(r.arg, "run_1"));
    assert(routes_match("GET", "/v1/runs/run_1/events", &r, &e) == 0 && r.id == ROUTE_RUN_EVENTS);
    assert(routes_match("POST", "/v1/runs/run_1/cancel", &r, &e) == 0 && r.id == ROUTE_RUN_CANCEL);
    assert(routes_match("GET", "/v1/sessions/s1/messages", &r, &e) == 0 && !strcmp(r.arg, "s1"));
    assert(routes_match("GET", "/nope", &r, &e) == -1 && e.status == 404);
    assert(routes_match("GET", "/ui", &r, &e) == 0 && r.id == ROUTE_UI && !strcmp(r.arg, "/ui"));
    assert(routes_match("GET", "/ui/app.js", &r, &e) == 0 && r.id == ROUTE_UI && !strcmp(r.arg, "/ui/app.js"));
    assert(routes_match("POST", "/ui", &r, &e) == -1 && e.status == 405);
    assert(routes_match("GET", "/uix", &r, &e) == -1 && e.status == 404);
    assert(routes_match("GET", "/internal/invoke", &r, &e) == -1 && e.status == 405);
    assert(routes_match("DELETE", "/v1/runs/run_1", &r, &e) == -1 && e.status == 405);
    assert(routes_match("GET", "/v1/runs/a/b/events", &r, &e) == -1 && e.status == 404);
    assert(routes_match("GET", "/v1/runs/%22x/events", &r, &e) == -1 && e.status == 400);

    mp_buf_t b;
    mp_buf_init(&b, 1 << 20);
    orch_request_t q;
    assert(s_invoke("{\"session_id\":\"s1\",\"agent_id\":\"echo\",\"input_message\":{\"role\":\"user\",\"content\":\"hello\"}}",
                    &e, &q, &b) == 0);
    assert(q.follow && q.content.len == 5 && q.agent_id.len == 4 && q.session_id.len == 2);
    assert(s_invoke("{\"session_id\":\"s1\",\"input_message\":{\"role\":\"user\",\"content\":\"x\"}}", &e, &q, &b) == -1);
    assert(e.status == 400 && strstr(e.message, "agent_id"));
    assert(s_invoke("{bad", &e, &q, &b) == -1 && !strcmp(e.code, "bad_json"));
    assert(s_invoke("[1]", &e, &q, &b) == -1 && !strcmp(e.code, "bad_request"));
    assert(s_invoke("{\"session_id\":\"s1\",\"agent_id\":5,\"input_message\":{\"role\":\"user\",\"content\":\"x\"}}", &e, &q, &b) == -1);
    assert(s_invoke("{\"session_id\":\"s/1\",\"agent_id\":\"echo\",\"input_message\":{\"role\":\"user\",\"content\":\"x\"}}", &e, &q, &b) == -1);
    assert(s_invoke("{\"session_id\":\"s1\",\"agent_id\":\"echo\",\"input_message\":{\"role\":\"user\"}}", &e, &q, &b) == -1);
    assert(s_invoke("{\"session_id\":\"s1\",\"agent_id\":\"echo\",\"if_busy\":\"later\",\"input_message\":{\"role\":\"user\",\"content\":\"x\"}}", &e, &q, &b) == -1);

    mp_buf_reset(&b);
    const char *reg = "{\"agent_id\":\"demo\",\"name\":\"Demo Agent\",\"endpoint\":\"http://localhost:8000\"}";
    assert(routes_register(reg, strlen(reg), &b, &e) == 0);
    assert(orch_decode_request(b.data, b.len, &q) == AGENT_OK && q.endpoint.len == 21);
    assert(routes_register("{\"agent_id\":\"x\"}", 16, &b, &e) == -1 && e.status == 400);

    /* /v1/runs/{id}/calls: POST a call, GET the list; other methods 405. */
    assert(routes_match("POST", "/v1/runs/run_1/calls", &r, &e) == 0 && r.id == ROUTE_RUN_CALL &&
           !strcmp(r.arg, "run_1"));
    assert(routes_match("GET", "/v1/runs/run_1/calls", &r, &e) == 0 && r.id == ROUTE_RUN_CALLS &&
           !strcmp(r.arg, "run_1"));
    assert(routes_match("DELETE", "/v1/runs/run_1/calls", &r, &e) == -1 && e.status == 405);
    assert(routes_match("POST", "/v1/runs/run%2F1/calls", &r, &e) == -1 && e.status == 400);
    assert(routes_match("POST", "/v1/runs/run_1/events", &r, &e) == -1 && e.status == 405);

    /* The run token: exactly "Bearer " + 32 lowercase hex digits. */
    char tok[ROUTES_TOKEN_LEN + 1];
    assert(routes_bearer_token("Bearer 0123456789abcdef0123456789abcdef", tok, sizeof tok) == 0 &&
           !strcmp(tok, "0123456789abcdef0123456789abcdef"));
    assert(routes_bearer_token("bearer  0123456789abcdef0123456789abcdef ", tok, sizeof tok) == 0);
    const char *bad_auth[] = {NULL, "", "Bearer", "Bearer ", "Basic 0123456789abcdef0123456789abcdef",
                              "Bearer 0123456789ABCDEF0123456789abcdef",
                              "Bearer 0123456789abcdef0123456789abcde",
                              "Bearer 0123456789abcdef0123456789abcdef0",
                              "Bearer 0123456789abcdef 0123456789abcde", "Bearer k3y"};
    for (size_t i = 0; i < sizeof bad_auth / sizeof *bad_auth; i++)
        assert(routes_bearer_token(bad_auth[i], tok, sizeof tok) == -1);
    assert(routes_bearer_token("Bearer 0123456789abcdef0123456789abcdef", tok, 32) == -1);

    /* The call body → op call with the path's run, the token, the history. */
    char text[1024];
    assert(s_call("{\"call_id\":\"c1\",\"agent_id\":\"echo\",\"input_message\":{\"role\":\"user\",\"content\":\"hi there\"}}",
                  &e, &b, text, sizeof text) == 0);
    assert(!strcmp(text, "op=call;run_id=run_1;token=0123456789abcdef0123456789abcdef;call_id=c1;"
                         "agent_id=echo;role=user;content=hi there;"));
    assert(s_call("{\"call_id\":\"c2\",\"agent_id\":\"echo\",\"input_message\":{\"role\":\"user\",\"content\":\"\"},"
                  "\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"content\":\"b\",\"role\":\"assistant\"}],\"extra\":1}",
                  &e, &b, text, sizeof text) == 0);
    assert(strstr(text, ";content=;history=user:a|assistant:b;"));
    assert(s_call("{\"call_id\":\"c3\",\"agent_id\":\"echo\",\"input_message\":{\"role\":\"user\",\"content\":\"x\"},\"messages\":[]}",
                  &e, &b, text, sizeof text) == 0 && !strstr(text, "history"));
    static const struct {
        const char *body, *says;
    } bad_calls[] = {
        {"{\"agent_id\":\"echo\",\"input_message\":{\"role\":\"user\",\"content\":\"x\"}}", "call_id is required"},
        {"{\"call_id\":\"c1\",\"input_message\":{\"role\":\"user\",\"content\":\"x\"}}", "agent_id is required"},
        {"{\"call_id\":\"c/1\",\"agent_id\":\"echo\",\"input_message\":{\"role\":\"user\",\"content\":\"x\"}}", "call_id must be"},
        {"{\"call_id\":7,\"agent_id\":\"echo\",\"input_message\":{\"role\":\"user\",\"content\":\"x\"}}", "call_id must be a string"},
        {"{\"call_id\":\"c1\",\"agent_id\":\"echo\"}", "input_message must be"},
        {"{\"call_id\":\"c1\",\"agent_id\":\"echo\",\"input_message\":{\"role\":\"user\"}}", "input_message needs"},
        {"{\"call_id\":\"c1\",\"agent_id\":\"echo\",\"input_message\":{\"role\":\"user\",\"content\":\"x\",\"x\":1}}", "unknown key \"x\""},
        {"{\"call_id\":\"c1\",\"agent_id\":\"echo\",\"input_message\":{\"role\":\"user\",\"content\":\"x\"},\"messages\":{}}", "messages must be an array"},
        {"{\"call_id\":\"c1\",\"agent_id\":\"echo\",\"input_message\":{\"role\":\"user\",\"content\":\"x\"},\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"\",\"content\":\"b\"}]}", "messages[1] needs"},
        {"{\"call_id\":\"c1\",\"agent_id\":\"echo\",\"input_message\":{\"role\":\"user\",\"content\":\"x\"},\"messages\":[\"hi\"]}", "messages[0] must be"},
        {"[]", "must be a JSON object"},
    };
    for (size_t i = 0; i < sizeof bad_calls / sizeof *bad_calls; i++) {
        assert(s_call(bad_calls[i].body, &e, &b, text, sizeof text) == -1);
        assert(e.status == 400 && strstr(e.message, bad_calls[i].says));
    }
    assert(s_call("{\"call_id\":", &e, &b, text, sizeof text) == -1 && !strcmp(e.code, "bad_json"));
    /* Past the frame's maximum: 413, not a cut request. */
    mp_buf_t small;
    mp_buf_init(&small, 64);
    const char *big = "{\"call_id\":\"c1\",\"agent_id\":\"echo\",\"input_message\":{\"role\":\"user\",\"content\":\"0123456789012345678901234567890123456789\"}}";
    assert(routes_call("run_1", "0123456789abcdef0123456789abcdef", big, strlen(big), &small, &e) == -1 &&
           e.status == 413);
    mp_buf_free(&small);

    char session[129];
    char *ev = NULL;
    const char *send = "{\"session_id\":\"s1\",\"event\":{\"type\":\"note\",\"n\":1}}";
    assert(routes_send(send, strlen(send), session, sizeof session, &ev, &e) == 0);
    assert(!strcmp(session, "s1") && !strcmp(ev, "{\"type\":\"note\",\"n\":1}"));
    free(ev);
    assert(routes_send("{\"session_id\":\"s1\"}", 18, session, sizeof session, &ev, &e) == -1);

    char out[512];
    e = (route_err_t){404, "unknown_run", "no run \"x\""};
    routes_error_json(&e, out, sizeof out);
    assert(!strcmp(out, "{\"error\":{\"code\":\"unknown_run\",\"message\":\"no run \\\"x\\\"\"}}"));
    mp_buf_free(&b);
    printf("routes_test: ok\n");
    return 0;
}
