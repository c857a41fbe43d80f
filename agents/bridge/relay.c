/* relay: the per-invoke state machine of the HTTP bridge (see relay.h).
 *
 * Every way out of STREAMING goes through s_fail or s_done, which set the
 * state before calling the sink, so exactly one final reaches the sink
 * whatever arrives afterwards (more bytes, the transfer's end, a timeout).
 *
 * The answer is counted as it arrives and cut at max_response; the SSE
 * parser and the joined deltas are bounded by the same number, so one
 * invoke never holds more than about twice max_response.
 *
 * Delta data is decoded with jansson only when it looks like JSON (starts
 * with '{' or '"'); anything else, and JSON that is not an object or a
 * string, is passed on as the plain text it is. */
#include "relay.h"

#include "agents/bridge/sse.h"
#include "common/mem.h"
#include "common/sbuf.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct relay_t {
    relay_state_t state;  /* see relay.h */
    const relay_sink_t *sink;
    void *arg;            /* sink argument */
    size_t max;           /* max_response */
    size_t received;      /* body bytes so far */
    int headers_ok;       /* a 2xx event-stream answer */
    sse_t *sse;           /* parser of the body */
    sbuf_t joined;        /* deltas so far, for a done without output */
};

static int s_on_event(void *arg, const sse_event_t *ev);

relay_t *relay_new(size_t max_response, const relay_sink_t *sink, void *arg)
{
    relay_t *self = mem_alloc(sizeof *self);
    self->sink = sink;
    self->arg = arg;
    self->max = max_response ? max_response : 1;
    self->sse = sse_new(self->max, SSE_TYPED_EMPTY, s_on_event, self);
    sbuf_init(&self->joined, self->max);
    return self;
}

void relay_destroy(relay_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    relay_t *self = *self_p;
    sse_destroy(&self->sse);
    sbuf_free(&self->joined);
    mem_free(self);
    *self_p = NULL;
}

relay_state_t relay_state(const relay_t *self)
{
    return self->state;
}

/* Copies at most max bytes of s into out without cutting a UTF-8 sequence
 * and replacing control characters with spaces (messages are one line). */
static void s_clip(char *out, size_t cap, const char *s, size_t len, size_t max)
{
    if (max > cap - 1)
        max = cap - 1;
    if (len > max) {
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xC0) == 0x80)
            len--;
    }
    for (size_t i = 0; i < len; i++)
        out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? ' ' : s[i];
    out[len] = '\0';
}

static void s_fail(relay_t *self, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void s_fail(relay_t *self, const char *code, const char *fmt, ...)
{
    if (self->state != RELAY_STREAMING)
        return;
    self->state = RELAY_FAILED;
    char msg[RELAY_MESSAGE_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        msg[0] = '\0';
    self->sink->fail(self->arg, code, msg);
}

static void s_done(relay_t *self, const char *role, size_t role_len, const char *content,
                   size_t len)
{
    if (self->state != RELAY_STREAMING)
        return;
    self->state = RELAY_DONE;
    self->sink->done(self->arg, role, role_len, content, len);
}

static void s_delta(relay_t *self, const char *text, size_t len)
{
    if (len == 0)
        return;
    if (sbuf_cat(&self->joined, text, len)) {
        s_fail(self, "agent_error", "answer too large: the agent's answer is larger than %zu bytes",
               self->max);
        return;
    }
    if (self->sink->delta(self->arg, text, len))
        s_fail(self, "internal", "the bridge could not pass a delta on to the broker");
}

/* The common shape {"delta":"text"} (or "content", "text") whose string
 * has no escape, quote or control character: the text is the bytes between
 * the quotes, no JSON parser needed. Returns 1 with text and len set, or 0
 * (anything else: the caller parses it with jansson). */
static int s_simple_delta(const char *d, size_t n, const char **text, size_t *len)
{
    static const char *const prefixes[] = {"{\"delta\":\"", "{\"content\":\"", "{\"text\":\""};
    for (size_t i = 0; i < 3; i++) {
        size_t plen = strlen(prefixes[i]);
        if (n < plen + 2 || memcmp(d, prefixes[i], plen) != 0 || d[n - 2] != '"' || d[n - 1] != '}')
            continue;
        const char *s = d + plen, *end = d + n - 2;
        for (const char *p = s; p < end; p++)
            if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20)
                return 0;
        *text = s;
        *len = (size_t)(end - s);
        return 1;
    }
    return 0;
}

static void s_on_delta_event(relay_t *self, const sse_event_t *ev)
{
    const char *d = ev->data;
    if (ev->data_len == 0 || (d[0] != '{' && d[0] != '"')) {
        s_delta(self, d, ev->data_len);
        return;
    }
    const char *text;
    size_t text_len;
    if (s_simple_delta(d, ev->data_len, &text, &text_len)) {
        s_delta(self, text, text_len);
        return;
    }
    json_error_t jerr;
    json_t *j = json_loadb(d, ev->data_len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!j) {
        s_delta(self, d, ev->data_len); /* plain text that starts like JSON */
        return;
    }
    if (json_is_string(j)) {
        s_delta(self, json_string_value(j), json_string_length(j));
    } else if (json_is_object(j)) {
        static const char *const keys[] = {"delta", "content", "text"};
        json_t *v = NULL;
        for (size_t i = 0; i < 3 && !v; i++)
            v = json_object_get(j, keys[i]);
        if (json_is_string(v)) {
            s_delta(self, json_string_value(v), json_string_length(v));
        } else {
            char what[81];
            s_clip(what, sizeof what, d, ev->data_len, 80);
            s_fail(self, "agent_error",
                   "malformed %s event: no string delta, content or text in %s", ev->type, what);
        }
    } else {
        s_delta(self, d, ev->data_len);
    }
    json_decref(j);
}

/* Valid UTF-8 as jansson judges it: no overlong forms, no surrogates,
 * nothing past U+10FFFF. */
static int s_utf8_ok(const char *p, size_t n)
{
    const unsigned char *s = (const unsigned char *)p, *end = s + n;
    while (s < end) {
        unsigned c = *s;
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (len == 0 || (size_t)(end - s) < len)
            return 0;
        unsigned cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
        for (size_t i = 1; i < len; i++) {
            if ((s[i] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        s += len;
    }
    return 1;
}

/* A JSON string at *p with no escape or control character: its bytes up to
 * the closing quote. Returns 1 and advances *p past the quote, or 0. */
static int s_plain_str(const char **p, const char *end, const char **str, size_t *len)
{
    const char *s = *p;
    if (s >= end || *s != '"')
        return 0;
    const char *q = ++s;
    while (q < end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
        q++;
    if (q >= end || *q != '"' || !s_utf8_ok(s, (size_t)(q - s)))
        return 0;
    *str = s;
    *len = (size_t)(q - s);
    *p = q + 1;
    return 1;
}

static int s_lit(const char **p, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
        return 0;
    *p += n;
    return 1;
}

/* The common shape {"output":{"role":"R","content":"C"}}, exactly so, with
 * plain strings: what jansson would find, without building a tree. Returns
 * 1 with the views set, or 0 (the caller parses with jansson). */
static int s_simple_done(const char *d, size_t n, const char **role, size_t *role_len,
                         const char **content, size_t *content_len)
{
    const char *p = d, *end = d + n;
    return s_lit(&p, end, "{\"output\":{\"role\":") && s_plain_str(&p, end, role, role_len) &&
           s_lit(&p, end, ",\"content\":") && s_plain_str(&p, end, content, content_len) &&
           s_lit(&p, end, "}}") && p == end;
}

static void s_on_done_event(relay_t *self, const sse_event_t *ev)
{
    static const char assistant[] = "assistant";
    size_t blank = 0;
    while (blank < ev->data_len && (ev->data[blank] == ' ' || ev->data[blank] == '\t' ||
                                     ev->data[blank] == '\r' || ev->data[blank] == '\n'))
        blank++;
    if (blank == ev->data_len) { /* empty (or only whitespace): the joined deltas */
        s_done(self, assistant, sizeof assistant - 1, self->joined.data ? self->joined.data : "",
               self->joined.len);
        return;
    }
    const char *fast_role, *fast_content;
    size_t fast_role_len, fast_content_len;
    if (s_simple_done(ev->data, ev->data_len, &fast_role, &fast_role_len, &fast_content, &fast_content_len)) {
        if (fast_role_len == 0 || fast_role_len > AGENT_ROLE_MAX) {
            fast_role = assistant;
            fast_role_len = sizeof assistant - 1;
        }
        s_done(self, fast_role, fast_role_len, fast_content, fast_content_len);
        return;
    }
    json_error_t jerr;
    json_t *j = json_loadb(ev->data, ev->data_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j || !json_is_object(j)) {
        s_fail(self, "agent_error", "malformed done event: %s",
               j ? "data is not a JSON object" : jerr.text);
        json_decref(j);
        return;
    }
    json_t *out = json_object_get(j, "output");
    const char *role = assistant;
    size_t role_len = sizeof assistant - 1;
    const char *content = self->joined.data ? self->joined.data : "";
    size_t len = self->joined.len;
    if (json_is_string(out)) {
        content = json_string_value(out);
        len = json_string_length(out);
    } else if (json_is_object(out)) {
        json_t *c = json_object_get(out, "content");
        json_t *r = json_object_get(out, "role");
        if (c && !json_is_string(c)) {
            s_fail(self, "agent_error", "malformed done event: output.content is not a string");
            json_decref(j);
            return;
        }
        if (c) {
            content = json_string_value(c);
            len = json_string_length(c);
        }
        if (json_is_string(r) && json_string_length(r) > 0 &&
            json_string_length(r) <= AGENT_ROLE_MAX) {
            role = json_string_value(r);
            role_len = json_string_length(r);
        }
    } else if (out && !json_is_null(out)) {
        s_fail(self, "agent_error", "malformed done event: output is neither an object nor a string");
        json_decref(j);
        return;
    }
    s_done(self, role, role_len, content, len);
    json_decref(j);
}

static void s_on_error_event(relay_t *self, const sse_event_t *ev)
{
    char code[65] = "", msg[301];
    json_error_t jerr;
    json_t *j = json_loadb(ev->data, ev->data_len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *c = json_object_get(j, "code");
    json_t *m = json_object_get(j, "message");
    if (json_is_string(m))
        s_clip(msg, sizeof msg, json_string_value(m), json_string_length(m), 300);
    else
        s_clip(msg, sizeof msg, ev->data, ev->data_len, 300);
    if (json_is_string(c))
        s_clip(code, sizeof code, json_string_value(c), json_string_length(c), 64);
    json_decref(j);
    s_fail(self, "agent_error", "the agent failed: %s%s%s", code, *code ? ": " : "",
           *msg ? msg : "(no message)");
}

static int s_on_event(void *arg, const sse_event_t *ev)
{
    relay_t *self = arg;
    if (self->state != RELAY_STREAMING)
        return 1;
    if (strcmp(ev->type, "delta") == 0 || strcmp(ev->type, "message") == 0) {
        /* An unnamed event with no data line is never dispatched, so an
         * empty data here is a real (empty) delta. */
        s_on_delta_event(self, ev);
    } else if (strcmp(ev->type, "done") == 0) {
        s_on_done_event(self, ev);
    } else if (strcmp(ev->type, "error") == 0) {
        s_on_error_event(self, ev);
    }
    return self->state != RELAY_STREAMING;
}

/* "text/event-stream", any case, then nothing, parameters or spaces. */
static int s_is_event_stream(const char *ct)
{
    static const char want[] = "text/event-stream";
    if (!ct)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, want, sizeof want - 1) != 0)
        return 0;
    char next = ct[sizeof want - 1];
    return next == '\0' || next == ';' || next == ' ' || next == '\t';
}

int relay_headers(relay_t *self, long status, const char *content_type)
{
    if (self->state != RELAY_STREAMING)
        return self->state == RELAY_DONE ? 0 : -1;
    if (status < 200)
        return 0;
    if (status >= 500)
        s_fail(self, "agent_unavailable", "the agent answered HTTP %ld (server error)", status);
    else if (status >= 400)
        s_fail(self, "agent_error", "the agent answered HTTP %ld (client error)", status);
    else if (status >= 300)
        s_fail(self, "agent_error", "the agent answered HTTP %ld (redirects are not followed)",
               status);
    else if (!s_is_event_stream(content_type)) {
        char ct[81];
        s_clip(ct, sizeof ct, content_type ? content_type : "none",
               strlen(content_type ? content_type : "none"), 80);
        s_fail(self, "agent_error",
               "the agent answered Content-Type %s, expected text/event-stream", ct);
    } else
        self->headers_ok = 1;
    return self->state == RELAY_STREAMING ? 0 : -1;
}

int relay_body(relay_t *self, const void *buf, size_t len)
{
    if (self->state == RELAY_FAILED)
        return -1;
    if (len > self->max - self->received) {
        s_fail(self, "agent_error", "answer too large: the agent's answer is larger than %zu bytes", self->max);
        return -1;
    }
    self->received += len;
    if (self->state == RELAY_DONE)
        return 0;
    if (!self->headers_ok) {
        s_fail(self, "agent_error", "the agent sent a body before valid headers");
        return -1;
    }
    sse_err_t rc = sse_feed(self->sse, buf, len);
    if (rc == SSE_E_LINE || rc == SSE_E_EVENT)
        s_fail(self, "agent_error", "malformed event stream: %s", sse_strerror(rc));
    return self->state == RELAY_FAILED ? -1 : 0;
}

void relay_end(relay_t *self, CURLcode rc, const char *errbuf)
{
    if (self->state != RELAY_STREAMING)
        return;
    const char *why = errbuf && *errbuf ? errbuf : curl_easy_strerror(rc);
    char detail[201];
    s_clip(detail, sizeof detail, why, strlen(why), 200);
    switch (rc) {
    case CURLE_OK:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
        if (self->headers_ok) {
            int pending = 0;
            sse_finish(self->sse, &pending);
            s_fail(self, "agent_error", "the agent closed the stream before done%s",
                   pending ? " (in the middle of an event)" : "");
        } else {
            s_fail(self, "agent_error", "the agent's answer was cut: %s", detail);
        }
        break;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
        s_fail(self, "agent_unavailable", "cannot reach the agent: %s", detail);
        break;
    case CURLE_OPERATION_TIMEDOUT:
        s_fail(self, "agent_timeout", "the agent timed out: %s", detail);
        break;
    default:
        s_fail(self, "agent_error", "the call to the agent failed: %s", detail);
        break;
    }
}

void relay_timeout(relay_t *self, long timeout_ms)
{
    s_fail(self, "agent_timeout", "no byte from the agent for %ld ms", timeout_ms);
}

/* Appends "key":"value" (value a JSON string). Returns 0, or -1 when the
 * value is not valid UTF-8 (jansson's rule, as the agent's parser will). */
static int s_jfield(sbuf_t *out, const char *key, agent_str_t v)
{
    const char *p = v.ptr ? v.ptr : "";
    if (!s_utf8_ok(p, v.len))
        return -1;
    sbuf_cats(out, key);
    sbuf_json_str(out, p, v.len);
    return 0;
}

static int s_jmsg(sbuf_t *out, const agent_msg_t *m)
{
    if (s_jfield(out, "{\"role\":", m->role) || s_jfield(out, ",\"content\":", m->content))
        return -1;
    sbuf_cats(out, "}");
    return 0;
}

char *relay_request_json(const agent_invoke_t *inv, const char *public_url, char *err,
                         size_t errlen)
{
    /* Written directly, with no tree. No maximum of its own: the invoke it
     * comes from is bounded (bridge.c refuses one over max_response), and
     * JSON takes at most 6 bytes per byte of it. */
    sbuf_t out;
    sbuf_init(&out, SIZE_MAX / 2);
    const char *why = NULL;
    if (s_jfield(&out, "{\"run_id\":", inv->run_id) ||
        s_jfield(&out, ",\"session_id\":", inv->session_id) ||
        s_jfield(&out, ",\"agent_id\":", inv->agent_id)) {
        why = "an id is not valid UTF-8";
    } else if (sbuf_cats(&out, ",\"input_message\":") || s_jmsg(&out, &inv->input)) {
        why = "the input message is not valid UTF-8";
    } else {
        sbuf_cats(&out, ",\"messages\":[");
        const uint8_t *cur = inv->history;
        agent_msg_t m;
        for (uint32_t i = 0; i < inv->history_count && agent_history_next(inv, &cur, &m) == 0; i++) {
            if ((i && sbuf_cats(&out, ",")) || s_jmsg(&out, &m)) {
                why = "a history message is not valid UTF-8";
                break;
            }
        }
        sbuf_cats(&out, "]");
        if (!why && inv->platform.token.len > 0) {
            /* The token is hex and the run id URL-safe (proto/id.h): the
             * URL needs no escaping, only JSON's. */
            sbuf_t url;
            sbuf_init(&url, RELAY_PUBLIC_URL_MAX + AGENT_ID_MAX + 32);
            sbuf_catf(&url, "%s/v1/runs/%.*s/calls", public_url ? public_url : "",
                      (int)inv->run_id.len, inv->run_id.ptr ? inv->run_id.ptr : "");
            sbuf_cats(&out, ",\"platform\":{\"calls_url\":");
            sbuf_json_str(&out, url.data ? url.data : "", url.len);
            if (url.overflow)
                why = "the calls URL is too long";
            sbuf_free(&url);
            if (s_jfield(&out, ",\"token\":", inv->platform.token))
                why = "the run token is not valid UTF-8";
            sbuf_catf(&out, ",\"depth\":%llu}", (unsigned long long)inv->platform.depth);
        }
        sbuf_cats(&out, "}");
    }
    if (why || out.overflow) {
        snprintf(err, errlen, "%s", why ? why : "the request could not be encoded");
        sbuf_free(&out);
        return NULL;
    }
    sbuf_cstr(&out);
    return out.data; /* the caller frees it with mem_free */
}

int relay_public_url(const char *url, const char *http_addr, char *out, size_t cap, char *err,
                     size_t errlen)
{
    char built[RELAY_PUBLIC_URL_MAX];
    if (!url || !*url) {
        const char *addr = http_addr && *http_addr ? http_addr : "127.0.0.1:8080";
        if ((size_t)snprintf(built, sizeof built, "http://%s", addr) >= sizeof built) {
            snprintf(err, errlen, "the public URL is too long");
            return -1;
        }
        url = built;
    }
    size_t len = strlen(url);
    size_t scheme = len >= 7 && strncasecmp(url, "http://", 7) == 0    ? 7
                    : len >= 8 && strncasecmp(url, "https://", 8) == 0 ? 8
                                                                       : 0;
    if (!scheme) {
        snprintf(err, errlen, "the public URL is not an http:// or https:// URL");
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c <= 0x20 || c == 0x7f || c == '"' || c == '?' || c == '#') {
            snprintf(err, errlen, "the public URL contains spaces, controls, quotes, '?' or '#'");
            return -1;
        }
    }
    while (len > scheme && url[len - 1] == '/')
        len--;
    if (len == scheme || url[scheme] == '/') {
        snprintf(err, errlen, "the public URL has no host");
        return -1;
    }
    if (len >= cap || len >= RELAY_PUBLIC_URL_MAX) {
        snprintf(err, errlen, "the public URL is too long");
        return -1;
    }
    memcpy(out, url, len);
    out[len] = '\0';
    return 0;
}

int relay_url(agent_str_t endpoint, char *out, size_t cap, char *err, size_t errlen)
{
    const char *e = endpoint.ptr;
    size_t len = endpoint.len;
    if (!e || len == 0) {
        snprintf(err, errlen, "the invoke names no endpoint");
        return -1;
    }
    size_t scheme = len >= 7 && strncasecmp(e, "http://", 7) == 0    ? 7
                    : len >= 8 && strncasecmp(e, "https://", 8) == 0 ? 8
                                                                     : 0;
    if (!scheme) {
        snprintf(err, errlen, "the endpoint is not an http:// or https:// URL");
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)e[i];
        if (c <= 0x20 || c == 0x7f) {
            snprintf(err, errlen, "the endpoint contains spaces or control characters");
            return -1;
        }
    }
    while (len > scheme && e[len - 1] == '/')
        len--;
    if (len == scheme || e[scheme] == '/') {
        snprintf(err, errlen, "the endpoint has no host");
        return -1;
    }
    if (len + sizeof "/invoke" > cap) {
        snprintf(err, errlen, "the endpoint is too long");
        return -1;
    }
    memcpy(out, e, len);
    memcpy(out + len, "/invoke", sizeof "/invoke");
    return 0;
}
