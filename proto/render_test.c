/* render_test: every rendering parses as JSON (jansson, strict) with the
 * fields and values SPEC §2-§4 name, escaping included. */
#include "render.h"

#include "tests/support/check.h"

#include <jansson.h>
#include <string.h>

static json_t *s_parse(sbuf_t *j)
{
    CHECK(!j->overflow);
    json_error_t e;
    json_t *doc = json_loadb(j->data, j->len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
    if (!doc)
        fprintf(stderr, "%s\n%.*s\n", e.text, (int)j->len, j->data);
    CHECK(doc != NULL);
    return doc;
}

static const char *s_get(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

int main(void)
{
    sbuf_t j;
    sbuf_init(&j, 1 << 16);
    render_run_t run = {"run_1", "s\"1", "echo", "running", "2026-01-01T00:00:00.000Z", NULL,
                        NULL, NULL, 0};
    CHECK(render_run(&j, &run) == 0);
    json_t *d = s_parse(&j);
    CHECK(!strcmp(s_get(d, "session_id"), "s\"1") && !strcmp(s_get(d, "status"), "running"));
    CHECK(json_is_null(json_object_get(d, "ended_at")) && json_is_null(json_object_get(d, "parent_run_id")));
    CHECK(json_is_null(json_object_get(d, "root_run_id")) && json_integer_value(json_object_get(d, "depth")) == 0);
    CHECK(json_object_size(d) == 9);
    json_decref(d);

    sbuf_reset(&j);
    run.ended_at = "2026-01-01T00:00:01.000Z";
    render_run(&j, &run);
    d = s_parse(&j);
    CHECK(!strcmp(s_get(d, "ended_at"), "2026-01-01T00:00:01.000Z"));
    json_decref(d);

    sbuf_reset(&j);
    render_event_t ev = {42, "run_1", "s1", 3, "agent_stream_delta", "{\"delta\":\"h\\u00e9\"}",
                         "2026-01-01T00:00:00.000Z", NULL, 0};
    CHECK(render_event(&j, &ev) == 0);
    d = s_parse(&j);
    CHECK(json_integer_value(json_object_get(d, "event_id")) == 42);
    CHECK(json_integer_value(json_object_get(d, "seq")) == 3);
    CHECK(!strcmp(s_get(json_object_get(d, "payload"), "delta"), "h\xc3\xa9"));
    CHECK(json_object_get(d, "parent_run_id") == NULL && json_object_get(d, "depth") == NULL);
    json_decref(d);
    /* A child run's event carries its parent and depth; its run object too. */
    sbuf_reset(&j);
    ev.parent_run_id = "run_0";
    ev.depth = 2;
    CHECK(render_event(&j, &ev) == 0);
    d = s_parse(&j);
    CHECK(!strcmp(s_get(d, "parent_run_id"), "run_0") && json_integer_value(json_object_get(d, "depth")) == 2);
    CHECK(json_object_size(d) == 9);
    json_decref(d);
    sbuf_reset(&j);
    render_run_t child = {"run_2", "s1", "echo", "done", "T", "T2", "run_1", "run_0", 2};
    CHECK(render_run(&j, &child) == 0);
    d = s_parse(&j);
    CHECK(!strcmp(s_get(d, "parent_run_id"), "run_1") && !strcmp(s_get(d, "root_run_id"), "run_0"));
    CHECK(json_integer_value(json_object_get(d, "depth")) == 2 && json_object_size(d) == 9);
    json_decref(d);

    sbuf_reset(&j);
    CHECK(render_error(&j, "busy", "line\none \xff", "run_9") == 0);
    d = s_parse(&j);
    json_t *e = json_object_get(d, "error");
    CHECK(!strcmp(s_get(e, "code"), "busy") && !strcmp(s_get(e, "message"), "line\none \xef\xbf\xbd"));
    CHECK(!strcmp(s_get(e, "run_id"), "run_9") && json_object_size(d) == 1);
    json_decref(d);
    sbuf_reset(&j);
    render_error(&j, "internal", "x", NULL);
    d = s_parse(&j);
    CHECK(json_object_get(json_object_get(d, "error"), "run_id") == NULL);
    json_decref(d);

    sbuf_reset(&j);
    render_agent_t http = {"demo", "Demo", "http://127.0.0.1:8000", 2, "T"};
    render_agent(&j, &http);
    d = s_parse(&j);
    CHECK(!strcmp(s_get(d, "kind"), "http") && json_integer_value(json_object_get(d, "workers")) == 2);
    json_decref(d);
    sbuf_reset(&j);
    render_agent_t native = {"echo", "echo", NULL, 0, "T"};
    render_agent(&j, &native);
    d = s_parse(&j);
    CHECK(!strcmp(s_get(d, "kind"), "native") && json_is_null(json_object_get(d, "endpoint")));
    CHECK(!strcmp(s_get(d, "created_at"), "T"));
    json_decref(d);

    sbuf_reset(&j);
    CHECK(render_message(&j, 7, "run_1", "user", "a\0b", 3, "T") == 0);
    d = s_parse(&j);
    CHECK(!strcmp(s_get(d, "message_id"), "7"));
    size_t n = json_string_length(json_object_get(d, "content"));
    CHECK(n == 3);
    json_decref(d);

    /* Overflow is reported. */
    sbuf_t small;
    sbuf_init(&small, 16);
    CHECK(render_run(&small, &run) == -1 && small.overflow);
    sbuf_free(&small);
    sbuf_free(&j);
    return 0;
}
