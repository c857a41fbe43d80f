/* routes_test: the REST table and its bodies. */
#include "routes.h"

#include "proto/orch.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
