/* http_test: one response per request whatever the framing: the callback
 * sequences lws makes for each framing, the policy, query checks, the
 * answer, and keep-alive or close after it. */
#include "http.h"

#include "fakeio.h"

#include <stdio.h>

static hub_t H;
static io_t IO;
static sbuf_t OUT;

static http_head_t s_head(const char *method, const char *path)
{
    return (http_head_t){.method = method, .path = path, .content_length = -1,
                         .host = "127.0.0.1:8080"};
}

static const char *s_out(conn_t *c)
{
    fake_drain(c, &OUT);
    return sbuf_cstr(&OUT);
}

/* Answers c's one request with status/json; checks exactly one was sent. */
static void s_answer(conn_t *c, unsigned status, const char *json)
{
    CHECK(c->npending == 1);
    pending_t *p = c->pendings;
    hub_reply_t r;
    fake_reply(&r, status, json);
    http_on_reply(&H, p, &r);
    pending_free(H.pending, p);
}

int main(void)
{
    fake_hub(&H, &IO);
    sbuf_init(&OUT, 1 << 20);
    conn_t *c = conn_new(1, NULL, 1 << 16, 0);

    /* POST Content-Length: 0 (Python's http.client): lws calls HTTP, BODY
     * (empty) and BODY_COMPLETION; one request goes out, one answer. */
    http_head_t h = s_head("POST", "/v1/runs/run_1/cancel");
    h.content_length = 0;
    size_t n0 = IO.nreq;
    http_begin(&H, c, &h);
    http_body(&H, c, "", 0);
    http_body_done(&H, c);
    CHECK(IO.nreq == n0 + 1 && !strcmp(IO.req_op[IO.nreq - 1], "cancel"));
    s_answer(c, 404, "{\"error\":{\"code\":\"unknown_run\",\"message\":\"no such run\"}}");
    /* a second answer (none can come: the request is gone) changes nothing */
    CHECK(c->npending == 0);
    CHECK(c->http.status == 404 && c->http.finish);
    CHECK(!strcmp(s_out(c), "{\"error\":{\"code\":\"unknown_run\",\"message\":\"no such run\"}}"));
    CHECK(http_done(&H, c) == 1); /* keep-alive */

    /* POST with no Content-Length (curl -X POST): no body, answered, and
     * the connection closes after (lws would read on as a body). */
    h = s_head("POST", "/v1/runs/run_1/cancel");
    http_begin(&H, c, &h);
    CHECK(IO.nreq == n0 + 2);
    s_answer(c, 202, "{\"run_id\":\"run_1\",\"status\":\"cancelled\"}");
    CHECK(c->http.close_after);
    CHECK(http_done(&H, c) == 0);

    /* A chunked body, in pieces: decoded, dispatched once, then close. */
    h = s_head("POST", "/v1/agents/register");
    h.chunked = 1;
    http_begin(&H, c, &h);
    CHECK(IO.nreq == n0 + 2 && c->http.state == HTTP_BODY);
    const char *body = "{\"agent_id\":\"a1\",\"name\":\"A\",\"endpoint\":\"http://127.0.0.1:9/\"}";
    char chunk[256];
    snprintf(chunk, sizeof chunk, "%zx\r\n%s\r\n0\r\n\r\n", strlen(body), body);
    http_body(&H, c, chunk, 7);
    CHECK(IO.nreq == n0 + 2);
    http_body(&H, c, chunk + 7, strlen(chunk) - 7);
    CHECK(IO.nreq == n0 + 3 && !strcmp(IO.req_op[IO.nreq - 1], "register"));
    http_body_done(&H, c); /* lws may never say it; if it does, nothing more */
    CHECK(IO.nreq == n0 + 3);
    s_answer(c, 201, "{\"agent_id\":\"a1\"}");
    CHECK(http_done(&H, c) == 0);

    /* A bad chunk: 400, close. */
    h = s_head("POST", "/internal/invoke");
    h.chunked = 1;
    http_begin(&H, c, &h);
    http_body(&H, c, "zz\r\n", 4);
    CHECK(c->http.status == 400 && strstr(s_out(c), "chunk"));
    CHECK(http_done(&H, c) == 0);

    /* Content-Length and chunked both, or a bad Content-Length: 400. */
    h = s_head("POST", "/internal/invoke");
    h.chunked = 1;
    h.content_length = 10;
    http_begin(&H, c, &h);
    CHECK(c->http.status == 400 && c->http.close_after);
    http_done(&H, c);
    h = s_head("POST", "/internal/invoke");
    h.content_length = -2;
    http_begin(&H, c, &h);
    CHECK(c->http.status == 400);
    http_done(&H, c);

    /* A body with Content-Length: dispatched at completion, keep-alive. */
    h = s_head("POST", "/internal/invoke");
    h.content_length = 2;
    h.expect_continue = 1;
    http_begin(&H, c, &h);
    CHECK(c->http.send_continue && c->http.state == HTTP_BODY);
    http_body(&H, c, "{}", 2);
    http_body_done(&H, c);
    CHECK(c->http.status == 400 && strstr(s_out(c), "agent_id is required"));
    CHECK(http_done(&H, c) == 1);

    /* lws 4.1 hands a pipelined body as the request's own head again:
     * the connection is cut, nothing is dispatched. */
    h = s_head("POST", "/internal/send");
    h.content_length = 2;
    size_t nb = IO.nreq;
    http_begin(&H, c, &h);
    CHECK(http_body(&H, c, "PO", 2) == -1 && IO.nreq == nb);
    http_done(&H, c);
    h = s_head("POST", "/internal/send");
    h.content_length = 40;
    http_begin(&H, c, &h);
    CHECK(http_body(&H, c, "POST /internal/send HTTP/1.1\r\nHost: x\r\n", 40) == -1);
    http_done(&H, c);
    h = s_head("POST", "/internal/send");
    h.content_length = 2;
    http_begin(&H, c, &h);
    CHECK(http_body(&H, c, "{}", 2) == 0);
    http_body_done(&H, c);
    CHECK(c->http.status == 400); /* routes_send: no session_id */
    s_out(c);
    http_done(&H, c);

    /* Too large a Content-Length: 413 at once, and close (the body will
     * not be read). No 100 Continue. */
    h = s_head("POST", "/internal/invoke");
    h.content_length = (1 << 16) + 1;
    h.expect_continue = 1;
    http_begin(&H, c, &h);
    CHECK(c->http.status == 413 && !c->http.send_continue && c->http.close_after);
    http_done(&H, c);

    /* Origin and Host (SPEC §3). */
    h = s_head("GET", "/v1/agents");
    h.origin = "https://evil.example";
    http_begin(&H, c, &h);
    CHECK(c->http.status == 403 && strstr(s_out(c), "forbidden_origin"));
    http_done(&H, c);
    h = s_head("GET", "/v1/agents");
    h.origin = "http://127.0.0.1:8080";
    http_begin(&H, c, &h);
    CHECK(!strcmp(IO.req_op[IO.nreq - 1], "agents"));
    s_answer(c, 200, "{\"agents\":[]}");
    http_done(&H, c);
    h = s_head("GET", "/health");
    h.host = "rebound.example:8080";
    http_begin(&H, c, &h);
    CHECK(c->http.status == 403);
    http_done(&H, c);

    /* Query numbers are checked: 400 bad_request, nothing sent. */
    const char *bad[] = {"after_seq=-1", "limit=-1", "limit=abc", "limit=0", "limit=10001",
                         "after_seq=99999999999999999999", "after_seq="};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        h = s_head("GET", "/v1/runs/run_1/events");
        h.query = bad[i];
        size_t before = IO.nreq;
        http_begin(&H, c, &h);
        CHECK(c->http.status == 400 && IO.nreq == before);
        http_done(&H, c);
    }
    h = s_head("GET", "/v1/runs/run_1/events");
    h.query = "after_seq=5&limit=20";
    http_begin(&H, c, &h);
    size_t i = fake_last(&IO, "events");
    CHECK(IO.req_after[i] == 5 && IO.req_limit[i] == 20);
    s_answer(c, 200, "{\"run_id\":\"run_1\",\"events\":[],\"has_more\":false}");
    CHECK(strstr(s_out(c), "has_more"));
    http_done(&H, c);

    /* SSE: accepted → X-Run-Id, events, the final reply ends the stream. */
    h = s_head("GET", "/v1/runs/run_1/events");
    h.accept = "text/event-stream";
    http_begin(&H, c, &h);
    fake_last(&IO, "follow");
    pending_t *p = c->pendings;
    const char *run = "{\"run_id\":\"run_1\",\"session_id\":\"s1\",\"status\":\"running\"}";
    orch_stream_t ev = {.accepted = 1, .json = {run, (uint32_t)strlen(run)},
                        .run_id = {"run_1", 5}, .session_id = {"s1", 2}, .run_status = {"running", 7}};
    http_on_stream(&H, p, &ev);
    CHECK(c->http.sse && !strcmp(c->http.run_id_hdr, "run_1"));
    const char *e1 = "{\"seq\":1}";
    ev = (orch_stream_t){.json = {e1, (uint32_t)strlen(e1)}, .type = {"run_done", 8}, .seq = 1,
                         .terminal = 1};
    http_on_stream(&H, p, &ev);
    CHECK(!strcmp(s_out(c), "id: 1\nevent: run_done\ndata: {\"seq\":1}\n\n"));
    s_answer(c, 200, run);
    CHECK(c->http.finish && http_done(&H, c) == 0);

    /* POST /v1/runs/{id}/calls: the run token, not the key; no bearer or
     * a malformed one is 401 and nothing is sent. */
    const char *tok = "0123456789abcdef0123456789abcdef";
    const char *call = "{\"call_id\":\"c1\",\"agent_id\":\"echo\","
                       "\"input_message\":{\"role\":\"user\",\"content\":\"hi\"},"
                       "\"messages\":[{\"role\":\"user\",\"content\":\"before\"}]}";
    const char *auths[] = {NULL, "Bearer", "Bearer nothex", "Basic 0123456789abcdef0123456789abcdef"};
    for (size_t a = 0; a < sizeof auths / sizeof *auths; a++) {
        h = s_head("POST", "/v1/runs/run_1/calls");
        h.content_length = (long long)strlen(call);
        h.authorization = auths[a];
        size_t before = IO.nreq;
        http_begin(&H, c, &h);
        CHECK(c->http.status == 401 && strstr(s_out(c), "unauthorized") && IO.nreq == before);
        http_done(&H, c);
    }
    /* A bad body: 400 naming what, nothing sent. */
    h = s_head("POST", "/v1/runs/run_1/calls");
    h.content_length = 2;
    h.authorization = "Bearer 0123456789abcdef0123456789abcdef";
    size_t nc = IO.nreq;
    http_begin(&H, c, &h);
    http_body(&H, c, "{}", 2);
    http_body_done(&H, c);
    CHECK(c->http.status == 400 && strstr(s_out(c), "call_id is required") && IO.nreq == nc);
    http_done(&H, c);
    /* A good one: op call with the path's run, the token, the history; the
     * child's accepted run gives X-Run-Id and its events stream. */
    h = s_head("POST", "/v1/runs/run_1/calls");
    h.content_length = (long long)strlen(call);
    h.authorization = "Bearer 0123456789abcdef0123456789abcdef";
    http_begin(&H, c, &h);
    http_body(&H, c, call, strlen(call));
    http_body_done(&H, c);
    i = fake_last(&IO, "call");
    CHECK(!strcmp(IO.req_run[i], "run_1") && !strcmp(IO.req_token[i], tok) &&
          !strcmp(IO.req_call_id[i], "c1") && IO.req_history[i] == 1);
    p = c->pendings;
    const char *child = "{\"run_id\":\"run_2\",\"session_id\":\"s1\",\"status\":\"running\","
                        "\"parent_run_id\":\"run_1\",\"root_run_id\":\"run_1\",\"depth\":1}";
    ev = (orch_stream_t){.accepted = 1, .json = {child, (uint32_t)strlen(child)},
                         .run_id = {"run_2", 5}, .session_id = {"s1", 2},
                         .run_status = {"running", 7}};
    http_on_stream(&H, p, &ev);
    CHECK(c->http.sse && c->http.status == 200 && !strcmp(c->http.run_id_hdr, "run_2"));
    const char *c1 = "{\"run_id\":\"run_2\",\"seq\":1,\"parent_run_id\":\"run_1\",\"depth\":1}";
    ev = (orch_stream_t){.json = {c1, (uint32_t)strlen(c1)}, .run_id = {"run_2", 5},
                         .type = {"run_done", 8}, .seq = 1, .terminal = 1};
    http_on_stream(&H, p, &ev);
    CHECK(strstr(s_out(c), "id: 1\nevent: run_done\ndata: {\"run_id\":\"run_2\""));
    s_answer(c, 200, child);
    CHECK(c->http.finish && http_done(&H, c) == 0);
    /* Refused (a bad token, a limit): the orchestrator's status and envelope. */
    static const struct {
        unsigned status;
        const char *json;
    } refusals[] = {
        {403, "{\"error\":{\"code\":\"forbidden\",\"message\":\"the token does not allow calls from this run\"}}"},
        {409, "{\"error\":{\"code\":\"call_refused\",\"message\":\"call depth limit (5) reached\"}}"},
    };
    for (size_t k = 0; k < sizeof refusals / sizeof *refusals; k++) {
        h = s_head("POST", "/v1/runs/run_1/calls");
        h.content_length = (long long)strlen(call);
        h.authorization = "Bearer 0123456789abcdef0123456789abcdef";
        http_begin(&H, c, &h);
        http_body(&H, c, call, strlen(call));
        http_body_done(&H, c);
        fake_last(&IO, "call");
        s_answer(c, refusals[k].status, refusals[k].json);
        CHECK(c->http.status == (int)refusals[k].status && !c->http.sse &&
              !strcmp(s_out(c), refusals[k].json));
        CHECK(http_done(&H, c) == 1);
    }
    /* GET .../calls: op calls for that run. */
    h = s_head("GET", "/v1/runs/run_1/calls");
    http_begin(&H, c, &h);
    i = fake_last(&IO, "calls");
    CHECK(!strcmp(IO.req_run[i], "run_1"));
    s_answer(c, 200, "{\"run_id\":\"run_1\",\"calls\":[]}");
    CHECK(strstr(s_out(c), "\"calls\":[]"));
    http_done(&H, c);

    /* The orchestrator silent: the timeout answers 503 once. */
    h = s_head("GET", "/v1/runs/run_1");
    http_begin(&H, c, &h);
    p = c->pendings;
    http_on_error(&H, p, "timeout", "no answer in time");
    pending_free(H.pending, p);
    CHECK(c->http.status == 503 && strstr(s_out(c), "unavailable"));
    http_done(&H, c);

    /* Unknown path, wrong method: 404 / 405. The key: 401 but /health. */
    h = s_head("GET", "/nope");
    http_begin(&H, c, &h);
    CHECK(c->http.status == 404);
    http_done(&H, c);
    h = s_head("DELETE", "/v1/agents");
    http_begin(&H, c, &h);
    CHECK(c->http.status == 405 && !c->http.close_after); /* lws expects no body of a DELETE */
    http_done(&H, c);
    char err[128];
    CHECK(policy_init(&H.policy, "", "127.0.0.1", "k3y", 0, err, sizeof err) == 0);
    h = s_head("GET", "/v1/agents");
    http_begin(&H, c, &h);
    CHECK(c->http.status == 401);
    http_done(&H, c);
    h = s_head("GET", "/v1/agents");
    h.authorization = "Bearer k3y";
    http_begin(&H, c, &h);
    CHECK(c->npending == 1);
    s_answer(c, 200, "{\"agents\":[]}");
    http_done(&H, c);
    /* With a key, a call is still authorized by its run token alone; the
     * key is not a run token (401). */
    h = s_head("POST", "/v1/runs/run_1/calls");
    h.content_length = (long long)strlen(call);
    h.authorization = "Bearer 0123456789abcdef0123456789abcdef";
    http_begin(&H, c, &h);
    http_body(&H, c, call, strlen(call));
    http_body_done(&H, c);
    fake_last(&IO, "call");
    s_answer(c, 403, "{\"error\":{\"code\":\"forbidden\",\"message\":\"no\"}}");
    http_done(&H, c);
    h = s_head("POST", "/v1/runs/run_1/calls");
    h.content_length = (long long)strlen(call);
    h.authorization = "Bearer k3y";
    http_begin(&H, c, &h);
    CHECK(c->http.status == 401);
    http_done(&H, c);
    /* ... and the Origin rule holds for it too. */
    h = s_head("POST", "/v1/runs/run_1/calls");
    h.content_length = (long long)strlen(call);
    h.authorization = "Bearer 0123456789abcdef0123456789abcdef";
    h.origin = "https://evil.example";
    http_begin(&H, c, &h);
    CHECK(c->http.status == 403 && strstr(s_out(c), "forbidden_origin"));
    http_done(&H, c);
    /* The client of a call leaves: the call request is cancelled (the
     * orchestrator cancels the child). */
    h = s_head("POST", "/v1/runs/run_1/calls");
    h.content_length = (long long)strlen(call);
    h.authorization = "Bearer 0123456789abcdef0123456789abcdef";
    http_begin(&H, c, &h);
    http_body(&H, c, call, strlen(call));
    http_body_done(&H, c);
    fake_last(&IO, "call");
    uint64_t creq = c->pendings->req;
    hub_drop_requests(&H, c);
    CHECK(IO.cancelled[IO.ncancel - 1] == creq);
    http_done(&H, c);
    h = s_head("GET", "/v1/agents");
    h.authorization = "Bearer k3y";
    http_begin(&H, c, &h);
    CHECK(c->npending == 1);
    /* The client leaves before the answer: its request goes, and the
     * cancel is sent; a late answer finds nothing. */
    uint64_t req = c->pendings->req;
    hub_drop_requests(&H, c);
    CHECK(!pending_get(H.pending, req) && IO.cancelled[IO.ncancel - 1] == req);

    conn_destroy(&c);
    sbuf_free(&OUT);
    fake_hub_free(&H);
    printf("http_test: ok\n");
    return 0;
}
