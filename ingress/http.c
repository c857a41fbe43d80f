/* http: see http.h.
 *
 * States of a transaction: IDLE (none) → BODY (its body is awaited) →
 * WAIT (asked the orchestrator) → RESPOND (the response is queued, maybe
 * still streaming). Every entry point checks the state, so whatever order
 * and number of callbacks lws makes, a request is dispatched once and
 * answered once. */
#include "http.h"

#include "routes.h"
#include "ssefeed.h"
#include "ui.h"
#include "proto/id.h"
#include "sessions.h"
#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_STR(s) ((agent_str_t){(s), (uint32_t)strlen(s)})

/* ---- responses -------------------------------------------------------- */

static void s_respond_type(hub_t *h, conn_t *c, int status, const char *type, const char *body,
                           size_t len)
{
    http_txn_t *t = &c->http;
    t->state = HTTP_RESPOND;
    t->status = status;
    t->content_type = type;
    t->finish = 1;
    /* A body still to come: lws discards a Content-Length's worth and keeps
     * the connection; "everything" (chunked, no length) it would read as
     * body forever, and a client that sent Expect: 100-continue may never
     * send it: those connections end after the answer. */
    if (!t->body_done && (t->chunked || t->content_length < 0 || t->expect_continue ||
                          t->content_length > h->cfg.max_body))
        t->close_after = 1;
    hub_push(h, c, body, len); /* refused: c is closing */
    io_wake(h->io, c);
}

static void s_respond(hub_t *h, conn_t *c, int status, const char *body, size_t len)
{
    s_respond_type(h, c, status, "application/json", body, len);
}

static void s_error(hub_t *h, conn_t *c, int status, const char *code, const char *message)
{
    route_err_t e = {status, code, ""};
    snprintf(e.message, sizeof e.message, "%s", message);
    char json[600];
    routes_error_json(&e, json, sizeof json);
    s_respond(h, c, status, json, strlen(json));
    h->m.errors++;
}

static void s_health_down(hub_t *h, conn_t *c, int broker_down)
{
    const char *doc = broker_down
        ? "{\"status\":\"unavailable\",\"components\":{\"broker\":\"down\",\"orchestrator\":\"unknown\"}}"
        : "{\"status\":\"unavailable\",\"components\":{\"broker\":\"ok\",\"orchestrator\":\"down\"}}";
    s_respond(h, c, 503, doc, strlen(doc));
}

/* ---- the query string --------------------------------------------------- */

/* The value of name= in query (a=1&b=2), copied into out. 1 when present. */
static int s_arg(const char *query, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    for (const char *q = query; q && *q;) {
        size_t n = strcspn(q, "&");
        if (n > nl && !strncmp(q, name, nl) && q[nl] == '=') {
            size_t vl = n - nl - 1;
            if (vl >= cap)
                vl = cap - 1; /* too long: s_uint refuses it anyway */
            memcpy(out, q + nl + 1, vl);
            out[vl] = '\0';
            return 1;
        }
        q += n;
        if (*q == '&')
            q++;
    }
    return 0;
}

/* Decimal digits only, at most max. 0, or -1. */
static int s_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!*s || strlen(s) > 19)
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* An optional numeric argument; -1 (400 sent) when present and bad. */
static int s_num_arg(hub_t *h, conn_t *c, const char *name, uint64_t min, uint64_t max,
                     uint64_t *out)
{
    char v[32];
    if (!s_arg(c->http.query, name, v, sizeof v))
        return 0;
    if (s_uint(v, min, max, out) == 0)
        return 0;
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be a whole number from %llu to %llu", name,
             (unsigned long long)min, (unsigned long long)max);
    s_error(h, c, 400, "bad_request", msg);
    return -1;
}

/* An optional id argument (a paging cursor) into out; -1 (400 sent) when
 * present and not an id. */
static int s_id_arg(hub_t *h, conn_t *c, const char *name, char *out, size_t cap,
                    agent_str_t *view)
{
    if (!s_arg(c->http.query, name, out, cap))
        return 0;
    if (!id_valid(out, strlen(out))) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s must be an id", name);
        s_error(h, c, 400, "bad_request", msg);
        return -1;
    }
    *view = S_STR(out);
    return 0;
}

/* ---- dispatch ------------------------------------------------------------ */

static void s_metrics(hub_t *h, conn_t *c, const metrics_orch_t *o)
{
    sbuf_t t;
    sbuf_init(&t, 1 << 16);
    metrics_gauges_t g = {.http_conns = h->http_conns, .ws_conns = h->ws_conns,
                          .sessions = sessions_count(h->sessions),
                          .pending = pending_count(h->pending), .broker_up = io_linked(h->io)};
    metrics_render(&h->m, &g, o, &t);
    s_respond_type(h, c, 200, "text/plain; version=0.0.4", t.data, t.len);
    sbuf_free(&t);
}

static void s_send_to_session(hub_t *h, conn_t *c)
{
    char session[129];
    char *event = NULL;
    route_err_t e;
    sbuf_t *b = &c->http.body;
    if (routes_send(b->data ? b->data : "", b->len, session, sizeof session, &event, &e) != 0) {
        s_error(h, c, e.status, e.code, e.message);
        return;
    }
    int delivered = 0;
    session_t *s = sessions_find(h->sessions, session);
    for (conn_t *w = s ? s->conns : NULL; w; w = w->snext)
        if (!w->closing && sessions_send_event(h->sessions, w, event, strlen(event)) == 0)
            delivered++;
    free(event);
    char out[64];
    int n = snprintf(out, sizeof out, "{\"delivered\":%d}", delivered);
    s_respond(h, c, 202, out, (size_t)n);
}

static void s_dispatch(hub_t *h, conn_t *c)
{
    http_txn_t *t = &c->http;
    t->state = HTTP_WAIT;
    route_err_t e;
    const char *body = t->body.data ? t->body.data : "";
    mp_buf_t *mp = &h->mp;
    mp_buf_reset(mp);
    long timeout = h->cfg.request_timeout_ms;
    pending_kind_t kind = P_HTTP;
    orch_request_t q = {0};
    uint64_t v;
    char before[ID_MAX + 2], after[ID_MAX + 2];
    switch ((route_id_t)t->route) {
    case ROUTE_HEALTH:
        if (!io_linked(h->io)) {
            s_health_down(h, c, 1);
            return;
        }
        q.op = S_STR("health");
        kind = P_HEALTH;
        timeout = 1000;
        break;
    case ROUTE_METRICS: /* with the orchestrator's counts, from its health */
        q.op = S_STR("health");
        kind = P_METRICS;
        timeout = 1000;
        break;
    case ROUTE_UI: {
        ui_asset_t a;
        if (ui_find(t->arg, &a) != 0) {
            s_error(h, c, 404, "not_found", "no such file of the page");
            return;
        }
        t->extra = a.headers;
        t->nextra = a.nheaders;
        s_respond_type(h, c, 200, a.content_type, (const char *)a.data, a.len);
        return;
    }
    case ROUTE_SEND:
        s_send_to_session(h, c);
        return;
    case ROUTE_REGISTER:
        if (routes_register(body, t->body.len, mp, &e) != 0) {
            s_error(h, c, e.status, e.code, e.message);
            return;
        }
        break;
    case ROUTE_INVOKE:
        if (routes_invoke(body, t->body.len, mp, &e) != 0) {
            s_error(h, c, e.status, e.code, e.message);
            return;
        }
        timeout = 0; /* a stream: it lasts as long as the run */
        t->feed_from = 1;
        break;
    case ROUTE_RUN_CALL: /* answered as invoke: the child's events as SSE */
        if (routes_call(t->arg, t->token, body, t->body.len, mp, &e) != 0) {
            s_error(h, c, e.status, e.code, e.message);
            return;
        }
        timeout = 0;
        t->feed_from = 1;
        break;
    case ROUTE_RUN_CALLS:
        q.op = S_STR("calls");
        q.run_id = S_STR(t->arg);
        break;
    case ROUTE_AGENTS:
        q.op = S_STR("agents");
        break;
    case ROUTE_RUN:
        q.op = S_STR("run");
        q.run_id = S_STR(t->arg);
        break;
    case ROUTE_RUN_CANCEL:
        q.op = S_STR("cancel");
        q.run_id = S_STR(t->arg);
        break;
    case ROUTE_MESSAGES:
        q.op = S_STR("messages");
        q.session_id = S_STR(t->arg);
        if (s_num_arg(h, c, "limit", 1, 1000, &q.limit) != 0 ||
            s_id_arg(h, c, "before", before, sizeof before, &q.before) != 0 ||
            s_id_arg(h, c, "after", after, sizeof after, &q.after) != 0)
            return;
        if (q.before.len && q.after.len) {
            s_error(h, c, 400, "bad_request", "before and after cannot both be given");
            return;
        }
        break;
    case ROUTE_SESSION_RUNS:
        q.op = S_STR("session_runs");
        q.session_id = S_STR(t->arg);
        if (s_num_arg(h, c, "limit", 1, 1000, &q.limit) != 0 ||
            s_id_arg(h, c, "before", before, sizeof before, &q.before) != 0)
            return;
        break;
    case ROUTE_RUN_EVENTS:
        q.run_id = S_STR(t->arg);
        if (s_num_arg(h, c, "after_seq", 0, INT64_MAX, &q.after_seq) != 0)
            return;
        if (t->has_last_event_id) {
            if (s_uint(t->last_event_id, 0, INT64_MAX, &v) != 0) {
                s_error(h, c, 400, "bad_request", "Last-Event-ID must be a seq");
                return;
            }
            q.after_seq = v;
        }
        if (strstr(t->accept, "text/event-stream") || t->has_last_event_id) {
            q.op = S_STR("follow");
            t->feed_from = q.after_seq + 1;
            timeout = 0;
        } else {
            q.op = S_STR("events");
            if (s_num_arg(h, c, "limit", 1, ORCH_LIMIT_MAX, &q.limit) != 0)
                return;
        }
        break;
    }
    if (q.op.len)
        orch_encode_request(mp, &q);
    if (mp->overflow) {
        s_error(h, c, 413, "too_large", "the request is over the maximum");
        return;
    }
    if (pending_full(h->pending, c)) {
        s_error(h, c, 503, "unavailable", "too many requests in flight");
        return;
    }
    if (!hub_request(h, c, kind, mp, timeout)) {
        if (kind == P_METRICS)
            s_metrics(h, c, NULL);
        else if (kind == P_HEALTH)
            s_health_down(h, c, 1);
        else
            s_error(h, c, 503, "unavailable", "the broker cannot be reached");
    }
}

/* ---- the request ----------------------------------------------------------- */

static void s_reset(conn_t *c, long max_body)
{
    http_txn_t *t = &c->http;
    uint64_t txn = t->txn;
    sbuf_free(&t->body);
    memset(t, 0, sizeof *t);
    t->txn = txn + 1;
    t->content_length = -1;
    sbuf_init(&t->body, (size_t)max_body);
    chunked_init(&t->dechunk);
}

void http_begin(hub_t *h, conn_t *c, const http_head_t *hd)
{
    s_reset(c, h->cfg.max_body);
    http_txn_t *t = &c->http;
    h->m.http_requests++;
    snprintf(t->query, sizeof t->query, "%s", hd->query ? hd->query : "");
    snprintf(t->accept, sizeof t->accept, "%s", hd->accept ? hd->accept : "");
    if (hd->last_event_id) {
        t->has_last_event_id = 1;
        snprintf(t->last_event_id, sizeof t->last_event_id, "%s", hd->last_event_id);
    }
    int post = !strcmp(hd->method, "POST"), get = !strcmp(hd->method, "GET");
    snprintf(t->reqline, sizeof t->reqline, "%s /", hd->method); /* lws cleans the path: "//" */
    t->chunked = hd->chunked;
    t->content_length = hd->content_length;
    t->expect_continue = hd->expect_continue;
    /* What lws will still hand us as body: a Content-Length's worth, or, for
     * a chunked body or a POST/PUT/PATCH without one, "everything". */
    int body_expected = hd->chunked || hd->content_length > 0;
    t->body_done = !body_expected;
    /* lws reads "everything" as the body of a POST, PUT or PATCH without a
     * length (RFC 9112 says none): such a connection ends after its answer. */
    if (!hd->chunked && hd->content_length < 0 &&
        (post || !strcmp(hd->method, "PUT") || !strcmp(hd->method, "PATCH")))
        t->close_after = 1;
    t->head_only = !strcmp(hd->method, "HEAD");
    t->state = body_expected ? HTTP_BODY : HTTP_WAIT;

    /* lws reads a body for POST, PUT, PATCH and whatever has a length; a
     * chunked body on another method it would take for the next request. */
    int body_method = post || !strcmp(hd->method, "PUT") || !strcmp(hd->method, "PATCH");
    if (hd->chunked && !body_method) {
        t->close_after = 1;
        s_error(h, c, 400, "bad_request", "a chunked body is only read on POST");
        return;
    }
    if (hd->content_length == -2 || hd->bad_te || (hd->chunked && hd->content_length >= 0)) {
        t->close_after = 1;
        s_error(h, c, 400, "bad_request",
                "the body framing is invalid (Content-Length or Transfer-Encoding)");
        return;
    }
    if (!policy_origin_ok(&h->policy, hd->origin, hd->host)) {
        h->m.forbidden++;
        s_error(h, c, 403, "forbidden_origin", "requests from this web origin are not allowed");
        return;
    }
    if (!policy_host_ok(&h->policy, hd->host)) {
        h->m.forbidden++;
        s_error(h, c, 403, "forbidden_origin", "this Host is not served without an API key");
        return;
    }
    route_t r;
    route_err_t e;
    if (routes_match(post ? "POST" : get ? "GET" : hd->method, hd->path, &r, &e) != 0) {
        s_error(h, c, e.status, e.code, e.message);
        return;
    }
    t->route = r.id;
    snprintf(t->arg, sizeof t->arg, "%s", r.arg);
    /* The page holds no data and asks for the key itself (a browser sends
     * no Authorization header when it opens a page). A call is authorized
     * by its run's token instead of the key (SPEC §7): an agent gets the
     * token, never the key; the orchestrator checks it against the run. */
    if (r.id == ROUTE_RUN_CALL) {
        if (routes_bearer_token(hd->authorization, t->token, sizeof t->token) != 0) {
            s_error(h, c, 401, "unauthorized", "Authorization: Bearer <the run's token> is required");
            return;
        }
    } else if (r.id != ROUTE_HEALTH && r.id != ROUTE_UI &&
               !policy_bearer_ok(&h->policy, hd->authorization)) {
        s_error(h, c, 401, "unauthorized", "Authorization: Bearer <key> is required");
        return;
    }
    if (hd->content_length > h->cfg.max_body) {
        s_error(h, c, 413, "too_large", "the body is over the maximum size");
        return;
    }
    if (body_expected) {
        t->send_continue = hd->expect_continue;
        return;
    }
    s_dispatch(h, c);
}

int http_body(hub_t *h, conn_t *c, const void *in, size_t len)
{
    http_txn_t *t = &c->http;
    if (!t->body_seen) {
        t->body_seen = 1;
        /* A body with a length (or chunked) that starts as this request's
         * own line ("POST /...", or for a short Content-Length its first
         * bytes) is lws's pipelining fault: no JSON body starts so, and a
         * chunk size is hex. (A POST without a length is read to the end of
         * the connection instead: no fault there.) */
        size_t rl = strlen(t->reqline);
        int sized = t->content_length > 0 || t->chunked;
        int again = len >= rl ? !memcmp(in, t->reqline, rl)
                              : !t->chunked && !memcmp(in, t->reqline, len);
        if (sized && again) {
            LOGW("http.pipeline_cut", "conn=%llu request=%.40s", (unsigned long long)c->id,
                 t->reqline);
            return -1;
        }
    }
    if (t->state != HTTP_BODY)
        return 0; /* no body was expected (lws reads on anyway): not ours */
    if (!t->chunked) {
        if (sbuf_cat(&t->body, in, len) != 0)
            s_error(h, c, 413, "too_large", "the body is over the maximum size");
        return 0;
    }
    size_t used;
    chunked_rc_t rc = chunked_feed(&t->dechunk, in, len, &t->body, &used);
    if (rc == CHUNKED_MORE)
        return 0;
    /* lws goes on reading the connection as this body: it ends after the
     * response whatever comes next (a pipelined request is the client's
     * to send again: RFC 9112 §9.3.2). */
    t->close_after = 1;
    t->body_done = 1;
    if (rc == CHUNKED_DONE)
        s_dispatch(h, c);
    else if (rc == CHUNKED_TOO_LARGE)
        s_error(h, c, 413, "too_large", "the body is over the maximum size");
    else
        s_error(h, c, 400, "bad_request", chunked_strerror(rc));
    return 0;
}

void http_body_done(hub_t *h, conn_t *c)
{
    http_txn_t *t = &c->http;
    int was_done = t->body_done;
    t->body_done = 1;
    if (t->state != HTTP_BODY || was_done)
        return;
    if (t->chunked)
        s_error(h, c, 400, "bad_request", "the chunked body was cut short");
    else
        s_dispatch(h, c);
}

/* ---- answers --------------------------------------------------------------- */

void http_on_stream(hub_t *h, pending_t *p, const orch_stream_t *ev)
{
    conn_t *c = p->conn;
    http_txn_t *t = &c->http;
    if (p->kind != P_HTTP || t->state == HTTP_IDLE)
        return;
    if (ev->accepted) {
        hub_reply_t f;
        hub_accepted_fields(ev, &f);
        t->state = HTTP_RESPOND;
        t->sse = 1;
        t->status = 200;
        t->content_type = "text/event-stream";
        snprintf(t->run_id_hdr, sizeof t->run_id_hdr, "%s", f.run_id);
        ssefeed_start(h, c, f.run_id, t->feed_from);
        io_wake(h->io, c);
        return;
    }
    if (t->sse)
        ssefeed_event(h, c, ev);
}

void http_on_reply(hub_t *h, pending_t *p, const hub_reply_t *r)
{
    conn_t *c = p->conn;
    http_txn_t *t = &c->http;
    if (t->state != HTTP_WAIT && !(t->state == HTTP_RESPOND && t->sse))
        return;
    if (p->kind == P_METRICS) {
        metrics_orch_t o = {0};
        if (r->status != 200 || metrics_orch_parse(r->json, r->json_len, &o) != 0)
            o.orch_up = 0;
        s_metrics(h, c, &o);
        return;
    }
    if (p->kind == P_HEALTH) {
        const char *ok = "{\"status\":\"ok\",\"components\":{\"broker\":\"ok\",\"orchestrator\":\"ok\"}}";
        if (r->status == 200)
            s_respond(h, c, 200, ok, strlen(ok));
        else
            s_health_down(h, c, 0);
        return;
    }
    if (t->sse) {
        ssefeed_follow_over(h, c); /* the stream ends after its terminal event */
        return;
    }
    s_respond(h, c, (int)r->status, r->json, r->json_len);
}

void http_on_error(hub_t *h, pending_t *p, const char *code, const char *message)
{
    conn_t *c = p->conn;
    http_txn_t *t = &c->http;
    if (t->state != HTTP_WAIT && !(t->state == HTTP_RESPOND && t->sse))
        return;
    LOGD("orch.error", "conn=%llu code=%s", (unsigned long long)c->id, code);
    if (p->kind == P_METRICS) {
        s_metrics(h, c, NULL);
    } else if (p->kind == P_HEALTH) {
        /* unknown_service or silence: the orchestrator; a lost link: the broker. */
        s_health_down(h, c, !strcmp(code, "broker_lost") || !io_linked(h->io));
    } else if (t->sse) {
        ssefeed_follow_over(h, c);
    } else if (!strcmp(code, "bad_request")) {
        s_error(h, c, 400, "bad_request", message);
    } else if (!strcmp(code, "too_large")) {
        s_error(h, c, 413, "too_large", message);
    } else {
        s_error(h, c, 503, "unavailable", "the orchestrator cannot be reached");
    }
}

int http_done(hub_t *h, conn_t *c)
{
    http_txn_t *t = &c->http;
    int keep = !t->close_after && !t->sse && !c->closing;
    hub_drop_requests(h, c); /* none should be left; if any, they are over */
    s_reset(c, h->cfg.max_body);
    c->http.state = HTTP_IDLE;
    return keep;
}
