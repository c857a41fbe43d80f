/* echo_test: word splitting at its edges, then whole jobs driven through a
 * recording sink: all at once, paced, cancelled, refused sends, bad bodies. */
#include "echo.h"

#include "tests/support/check.h"
#include "proto/agent.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- splitting ---------------------------------------------------------------- */

/* Splits text and joins the deltas with '|'. */
static void s_split(const char *text, char *out, size_t cap)
{
    size_t len = strlen(text), pos = 0, o = 0;
    out[0] = '\0';
    while (pos < len) {
        size_t end = echo_next_delta(text, len, pos);
        CHECK(end > pos); /* always progresses */
        if (o)
            out[o++] = '|';
        CHECK(o + (end - pos) + 1 < cap);
        memcpy(out + o, text + pos, end - pos);
        o += end - pos;
        out[o] = '\0';
        pos = end;
    }
}

static void s_expect_split(const char *text, const char *want)
{
    char got[256];
    s_split(text, got, sizeof got);
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "split '%s': got '%s', want '%s'\n", text, got, want);
        exit(1);
    }
}

static void s_test_split(void)
{
    CHECK(echo_next_delta("", 0, 0) == 0);
    s_expect_split("", "");
    s_expect_split("hello", "hello");
    s_expect_split("hello world", "hello| world");
    s_expect_split("  lead", "  lead");
    s_expect_split("trail  ", "trail|  ");
    s_expect_split("a   b", "a|   b");
    s_expect_split("   ", "   ");
    s_expect_split("a\tb\nc\r\nd", "a|\tb|\nc|\r\nd");
    s_expect_split("\v\fx", "\v\fx");
    /* UTF-8: multi-byte sequences hold no ASCII whitespace, never cut. */
    s_expect_split("héllo wörld 日本語 🙂!", "héllo| wörld| 日本語| 🙂!");
    /* A non-breaking space (U+00A0) is not ASCII whitespace: part of the word. */
    s_expect_split("a\xc2\xa0" "b c", "a\xc2\xa0" "b| c");
}

/* ---- jobs --------------------------------------------------------------------- */

#define S_IDS 8

typedef struct {
    char text[S_IDS][512]; /* deltas concatenated, per id */
    int deltas[S_IDS];
    int replied[S_IDS];
    char reply[S_IDS][512];
    char code[S_IDS][64];
    int refuse;            /* sends to refuse before accepting again */
    int calls;
} s_rec_t;

static int s_stream(void *arg, uint64_t id, const void *body, size_t len)
{
    s_rec_t *r = arg;
    r->calls++;
    if (r->refuse > 0) {
        r->refuse--;
        return -1;
    }
    agent_str_t d;
    CHECK(id < S_IDS);
    CHECK(agent_decode_delta(body, len, &d) == AGENT_OK);
    CHECK(d.len > 0);
    CHECK(!r->replied[id] && !r->code[id][0]);
    strncat(r->text[id], d.ptr, d.len);
    r->deltas[id]++;
    return 0;
}

static int s_reply(void *arg, uint64_t id, const void *body, size_t len)
{
    s_rec_t *r = arg;
    r->calls++;
    if (r->refuse > 0) {
        r->refuse--;
        return -1;
    }
    agent_msg_t out;
    CHECK(id < S_IDS);
    CHECK(agent_decode_done(body, len, &out) == AGENT_OK);
    CHECK(out.role.len == 9 && memcmp(out.role.ptr, "assistant", 9) == 0);
    CHECK(!r->replied[id] && !r->code[id][0]);
    memcpy(r->reply[id], out.content.ptr, out.content.len);
    r->replied[id] = 1;
    return 0;
}

static int s_fail(void *arg, uint64_t id, const char *code, const char *message)
{
    s_rec_t *r = arg;
    CHECK(id < S_IDS);
    CHECK(!r->replied[id] && !r->code[id][0]);
    snprintf(r->code[id], sizeof r->code[id], "%s", code);
    CHECK(message != NULL);
    return 0;
}

static size_t s_invoke(uint8_t *buf, size_t cap, const char *content)
{
    mp_buf_t b;
    mp_buf_init(&b, cap);
    agent_invoke_t inv = {0};
    inv.run_id = (agent_str_t){"run_1", 5};
    inv.session_id = (agent_str_t){"ses_1", 5};
    inv.agent_id = (agent_str_t){"echo", 4};
    inv.input.role = (agent_str_t){"user", 4};
    inv.input.content = (agent_str_t){content, (uint32_t)strlen(content)};
    CHECK(agent_encode_invoke(&b, &inv, NULL, 0) == 0);
    CHECK(b.len <= cap);
    memcpy(buf, b.data, b.len);
    size_t n = b.len;
    mp_buf_free(&b);
    return n;
}

static const echo_sink_t s_sink = {s_stream, s_reply, s_fail};

static void s_test_burst(void)
{
    s_rec_t r = {0};
    echo_t *e = echo_new(0, 4, 1 << 16, &s_sink, &r);
    uint8_t body[1024];
    const char *in = "  the quick\tbrown  fox ";
    size_t n = s_invoke(body, sizeof body, in);
    CHECK(echo_start(e, 1, body, n, 1000) == 0);
    CHECK(r.replied[1]);
    CHECK(strcmp(r.text[1], in) == 0);
    CHECK(strcmp(r.reply[1], in) == 0);
    CHECK(r.deltas[1] == 5);
    CHECK(echo_jobs(e) == 0);
    CHECK(echo_timeout_ms(e, 1000) == -1);
    /* Empty input: no delta, a reply with empty content. */
    n = s_invoke(body, sizeof body, "");
    CHECK(echo_start(e, 2, body, n, 1000) == 0);
    CHECK(r.replied[2] && r.deltas[2] == 0 && r.reply[2][0] == '\0');
    /* Bad body. */
    CHECK(echo_start(e, 3, "\x81\xa1x", 3, 1000) == -1);
    CHECK(strcmp(r.code[3], "bad_request") == 0);
    echo_stats_t st;
    echo_stats(e, &st);
    CHECK(st.started == 2 && st.served == 2 && st.failed == 1 && st.cancelled == 0);
    echo_destroy(&e);
    CHECK(e == NULL);
    echo_destroy(&e);
}

static void s_test_paced(void)
{
    s_rec_t r = {0};
    echo_t *e = echo_new(50, 4, 1 << 16, &s_sink, &r);
    uint8_t body[1024];
    size_t n = s_invoke(body, sizeof body, "one two three");
    CHECK(echo_start(e, 1, body, n, 1000) == 0);
    n = s_invoke(body, sizeof body, "a b c d e f");
    CHECK(echo_start(e, 2, body, n, 1010) == 0);
    CHECK(r.deltas[1] == 0 && r.deltas[2] == 0);
    CHECK(echo_timeout_ms(e, 1000) == 50);
    echo_run(e, 1049);
    CHECK(r.deltas[1] == 0);
    echo_run(e, 1050);
    CHECK(r.deltas[1] == 1 && r.deltas[2] == 0);
    CHECK(strcmp(r.text[1], "one") == 0);
    CHECK(echo_timeout_ms(e, 1050) == 10); /* job 2, due at 1060 */
    echo_run(e, 1060);
    CHECK(r.deltas[2] == 1);
    /* Cancel job 2: nothing more is sent for it. */
    CHECK(echo_cancel(e, 2) == 0);
    CHECK(echo_cancel(e, 2) == -1);
    echo_run(e, 1100);
    CHECK(r.deltas[1] == 2);
    echo_run(e, 1150); /* last word and the reply in one tick */
    CHECK(r.deltas[1] == 3 && r.replied[1]);
    CHECK(strcmp(r.reply[1], "one two three") == 0);
    CHECK(r.deltas[2] == 1 && !r.replied[2] && !r.code[2][0]);
    CHECK(echo_jobs(e) == 0);
    /* Stopping fails what runs. */
    n = s_invoke(body, sizeof body, "x y");
    CHECK(echo_start(e, 3, body, n, 2000) == 0);
    CHECK(echo_fail_all(e, "worker_stopping", "stopping") == 1);
    CHECK(strcmp(r.code[3], "worker_stopping") == 0);
    echo_stats_t st;
    echo_stats(e, &st);
    CHECK(st.started == 3 && st.served == 1 && st.cancelled == 1 && st.failed == 1);
    echo_destroy(&e);
}

static void s_test_limits(void)
{
    s_rec_t r = {0};
    echo_t *e = echo_new(10, 1, 1 << 16, &s_sink, &r);
    uint8_t body[1024];
    size_t n = s_invoke(body, sizeof body, "a b");
    CHECK(echo_start(e, 1, body, n, 0) == 0);
    CHECK(echo_start(e, 1, body, n, 0) == -1); /* same id running: left alone */
    CHECK(r.code[1][0] == '\0');
    CHECK(echo_start(e, 2, body, n, 0) == -1); /* over jobs_max */
    CHECK(strcmp(r.code[2], "overloaded") == 0);
    echo_destroy(&e);

    /* Refused sends are retried, then the job fails. */
    memset(&r, 0, sizeof r);
    e = echo_new(0, 2, 1 << 16, &s_sink, &r);
    n = s_invoke(body, sizeof body, "x y");
    r.refuse = 2;
    CHECK(echo_start(e, 1, body, n, 0) == 0);
    CHECK(r.deltas[1] == 0 && echo_jobs(e) == 1);
    CHECK(echo_timeout_ms(e, 0) == ECHO_RETRY_MS);
    echo_run(e, ECHO_RETRY_MS); /* refused again */
    CHECK(r.deltas[1] == 0);
    echo_run(e, 2 * ECHO_RETRY_MS);
    CHECK(r.replied[1] && strcmp(r.text[1], "x y") == 0);
    r.refuse = 1000000;
    CHECK(echo_start(e, 2, body, n, 0) == 0);
    for (int i = 1; i <= ECHO_RETRIES_MAX + 1; i++)
        echo_run(e, (int64_t)i * ECHO_RETRY_MS);
    CHECK(strcmp(r.code[2], "internal") == 0);
    CHECK(echo_jobs(e) == 0);
    echo_destroy(&e);

    /* Output over the body maximum. */
    memset(&r, 0, sizeof r);
    e = echo_new(0, 2, 64, &s_sink, &r);
    char big[200];
    memset(big, 'w', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    n = s_invoke(body, sizeof body, big);
    CHECK(echo_start(e, 1, body, n, 0) == 0);
    CHECK(strcmp(r.code[1], "too_large") == 0);
    echo_destroy(&e);
}

int main(void)
{
    s_test_split();
    s_test_burst();
    s_test_paced();
    s_test_limits();
    printf("echo_test: ok\n");
    return 0;
}
