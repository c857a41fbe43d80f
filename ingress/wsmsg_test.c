/* wsmsg_test: every client message type and every way one can be wrong. */
#include "wsmsg.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

static int s_parse(const char *text, wsmsg_t *m, const char **code)
{
    char err[256];
    return wsmsg_parse(text, strlen(text), m, code, err, sizeof err);
}

int main(void)
{
    wsmsg_t m;
    const char *code;
    assert(s_parse("{\"type\":\"hello\",\"session_id\":\"s1\",\"api_key\":\"k\"}", &m, &code) == 0);
    assert(m.type == WSMSG_HELLO && !strcmp(m.session_id, "s1") && !strcmp(m.api_key, "k"));
    assert(s_parse("{\"type\":\"hello\"}", &m, &code) == 0 && m.session_id[0] == '\0');
    assert(s_parse("{\"type\":\"agent_invoke\",\"request_id\":\"c1\",\"agent_id\":\"echo\","
                   "\"input_message\":{\"role\":\"user\",\"content\":\"hi \\u00e9\"},\"if_busy\":\"reject\"}",
                   &m, &code) == 0);
    assert(m.type == WSMSG_INVOKE && !strcmp(m.agent_id, "echo") && m.if_busy_reject);
    assert(m.content_len == 5 && !memcmp(m.content, "hi \xc3\xa9", 5));
    wsmsg_clear(&m);
    assert(s_parse("{\"type\":\"resume\",\"run_id\":\"r1\",\"after_seq\":3}", &m, &code) == 0);
    assert(m.type == WSMSG_RESUME && m.after_seq == 3);
    assert(s_parse("{\"type\":\"cancel\",\"run_id\":\"r1\"}", &m, &code) == 0 && m.type == WSMSG_CANCEL);
    assert(s_parse("{\"type\":\"ping\"}", &m, &code) == 0 && m.type == WSMSG_PING);

    /* bad_json: not JSON, trailing garbage, duplicate keys, invalid UTF-8. */
    const char *bad_json[] = {"{", "nope", "{\"type\":\"ping\"} x", "{\"type\":\"ping\",\"type\":\"ping\"}",
                              "{\"type\":\"p\xffng\"}"};
    for (size_t i = 0; i < sizeof bad_json / sizeof *bad_json; i++) {
        assert(s_parse(bad_json[i], &m, &code) == -1);
        assert(!strcmp(code, "bad_json"));
    }
    /* bad_request: shapes, types, bounds; request_id still reported. */
    const char *bad_req[] = {
        "[]", "{}", "{\"type\":5}", "{\"type\":\"dance\"}",
        "{\"type\":\"agent_invoke\",\"request_id\":\"c2\",\"agent_id\":\"echo\"}",
        "{\"type\":\"agent_invoke\",\"request_id\":\"c2\",\"agent_id\":\"echo\",\"input_message\":{\"role\":\"user\",\"content\":5}}",
        "{\"type\":\"agent_invoke\",\"request_id\":\"c2\",\"agent_id\":7,\"input_message\":{\"role\":\"user\",\"content\":\"x\"}}",
        "{\"type\":\"agent_invoke\",\"request_id\":\"c2\",\"agent_id\":\"echo\",\"input_message\":{\"role\":\"user\",\"content\":\"x\"},\"if_busy\":\"maybe\"}",
        "{\"type\":\"agent_invoke\",\"agent_id\":\"echo\",\"input_message\":{\"role\":\"user\",\"content\":\"x\"}}",
        "{\"type\":\"resume\"}", "{\"type\":\"resume\",\"run_id\":\"r\",\"after_seq\":-1}",
        "{\"type\":\"resume\",\"run_id\":\"r\",\"after_seq\":\"3\"}", "{\"type\":\"hello\",\"session_id\":\"\"}",
    };
    for (size_t i = 0; i < sizeof bad_req / sizeof *bad_req; i++) {
        assert(s_parse(bad_req[i], &m, &code) == -1);
        assert(!strcmp(code, "bad_request"));
        assert(m.content == NULL);
    }
    assert(s_parse(bad_req[5], &m, &code) == -1 && !strcmp(m.request_id, "c2"));
    printf("wsmsg_test: ok\n");
    return 0;
}
