/* ws: see ws.h. Every message gets its answer or an error; only an
 * unauthorized hello closes the socket (4401). */
#include "ws.h"

#include "proto/id.h"
#include "seqtrack.h"
#include "sessions.h"
#include "wsmsg.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/sbuf.h"

#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define S_STR(s) ((agent_str_t){(s), (uint32_t)strlen(s)})
/* A socket keeps its reassembly buffer between messages up to this; one
 * that held a larger message gives it back (10,000 sockets that each sent
 * one 1 MB message must not keep 10 GB). */
#define S_FRAG_KEEP (16 * 1024)

void ws_open(hub_t *h, conn_t *c)
{
    c->is_ws = 1;
    sbuf_init(&c->frag, (size_t)h->cfg.max_ws_message);
    h->m.ws_connections++;
}

static void s_json(hub_t *h, conn_t *c, sbuf_t *j)
{
    if (!j->overflow)
        hub_push(h, c, j->data, j->len);
}

void ws_error(hub_t *h, conn_t *c, const char *code, const char *message, const char *request_id)
{
    sbuf_t j;
    sbuf_init(&j, 4096);
    sbuf_cats(&j, "{\"type\":\"error\",\"code\":");
    sbuf_json_str(&j, code, strlen(code));
    sbuf_cats(&j, ",\"message\":");
    sbuf_json_str(&j, message, strlen(message));
    if (request_id && *request_id) {
        sbuf_cats(&j, ",\"request_id\":");
        sbuf_json_str(&j, request_id, strlen(request_id));
    }
    sbuf_cats(&j, "}");
    s_json(h, c, &j);
    sbuf_free(&j);
    h->m.errors++;
}

static const mp_buf_t *s_body(hub_t *h, const orch_request_t *q)
{
    mp_buf_reset(&h->mp);
    orch_encode_request(&h->mp, q);
    return &h->mp;
}

/* Sends q for c; on failure the client hears why (echoing `echo`). */
static pending_t *s_request(hub_t *h, conn_t *c, pending_kind_t kind, const orch_request_t *q,
                            long timeout_ms, const char *echo)
{
    if (pending_full(h->pending, c)) {
        char msg[128];
        snprintf(msg, sizeof msg, "too many requests in flight on this connection (at most %ld)",
                 h->cfg.max_requests_per_conn);
        ws_error(h, c, "unavailable", msg, echo);
        return NULL;
    }
    const mp_buf_t *b = s_body(h, q);
    if (b->overflow) {
        ws_error(h, c, "too_large", "the message is over the maximum size", echo);
        return NULL;
    }
    pending_t *p = hub_request(h, c, kind, b, timeout_ms);
    if (!p)
        ws_error(h, c, "unavailable", "the broker cannot be reached", echo);
    return p;
}

static void s_hello(hub_t *h, conn_t *c, const wsmsg_t *m)
{
    if (!policy_key_ok(&h->policy, m->api_key, strlen(m->api_key))) {
        ws_error(h, c, "unauthorized", "a valid api_key is required", NULL);
        hub_close(h, c, 4401, "unauthorized");
        return;
    }
    if (c->hello) {
        ws_error(h, c, "bad_request", "hello was already sent", NULL);
        return;
    }
    char id[IDS_MAX];
    const char *sid = m->session_id[0] ? m->session_id : ids_new("s_", id);
    if (!id_valid(sid, strlen(sid))) {
        ws_error(h, c, "bad_request",
                 "session_id must be 1 to 128 printable characters without quotes, slashes, "
                 "spaces, '?', '#' or '%'",
                 NULL);
        return;
    }
    c->hello = 1;
    sessions_join(h->sessions, c, sid);
    sbuf_t j;
    sbuf_init(&j, 512);
    sbuf_cats(&j, "{\"type\":\"hello_ok\",\"session_id\":");
    sbuf_json_str(&j, sid, strlen(sid));
    sbuf_cats(&j, "}");
    s_json(h, c, &j);
    sbuf_free(&j);
}

static void s_message(hub_t *h, conn_t *c, const char *text, size_t len)
{
    h->m.ws_messages++;
    wsmsg_t m;
    const char *code;
    char err[256];
    if (wsmsg_parse(text, len, &m, &code, err, sizeof err) != 0) {
        /* Before hello only hello is accepted, well-formed or not. */
        if (!c->hello && strcmp(code, "bad_json") != 0 && m.type != WSMSG_HELLO)
            ws_error(h, c, "not_hello", "send hello first", m.request_id);
        else
            ws_error(h, c, code, err, m.request_id);
        return;
    }
    if (!c->hello && m.type != WSMSG_HELLO) {
        ws_error(h, c, "not_hello", "send hello first", m.request_id);
        wsmsg_clear(&m);
        return;
    }
    orch_request_t q = {0};
    pending_t *p;
    switch (m.type) {
    case WSMSG_HELLO:
        s_hello(h, c, &m);
        break;
    case WSMSG_INVOKE:
        q.op = S_STR("invoke");
        q.session_id = S_STR(c->session->id);
        q.agent_id = S_STR(m.agent_id);
        q.request_id = S_STR(m.request_id);
        q.role = S_STR(m.role);
        q.content = (agent_str_t){m.content, (uint32_t)m.content_len};
        q.if_busy = m.if_busy_reject ? S_STR("reject") : S_STR("");
        p = s_request(h, c, P_WS_INVOKE, &q, h->cfg.request_timeout_ms, m.request_id);
        if (p)
            snprintf(p->request_id, sizeof p->request_id, "%s", m.request_id);
        break;
    case WSMSG_RESUME: {
        /* The tracker comes first (live events of the run may arrive
         * before the follow's accepted); a refusal removes it. */
        int had = c->runs && zhashx_lookup(c->runs, m.run_id) != NULL;
        q.op = S_STR("follow");
        q.run_id = S_STR(m.run_id);
        q.after_seq = m.after_seq;
        p = s_request(h, c, P_WS_RESUME, &q, 0, m.run_id);
        if (!p)
            break;
        seqtrack_init(sessions_track(h->sessions, c, m.run_id, 1), m.after_seq + 1);
        conn_unmark_ended(c, m.run_id);
        snprintf(p->run_id, sizeof p->run_id, "%s", m.run_id);
        snprintf(p->request_id, sizeof p->request_id, "%s", m.request_id);
        p->made_track = !had;
        break;
    }
    case WSMSG_CANCEL:
        q.op = S_STR("run");
        q.run_id = S_STR(m.run_id);
        p = s_request(h, c, P_WS_CANCEL_RUN, &q, h->cfg.request_timeout_ms, m.request_id);
        if (p) {
            snprintf(p->request_id, sizeof p->request_id, "%s", m.request_id);
            snprintf(p->run_id, sizeof p->run_id, "%s", m.run_id);
        }
        break;
    case WSMSG_PING:
        hub_push(h, c, "{\"type\":\"pong\"}", 15);
        break;
    }
    wsmsg_clear(&m);
}

void ws_receive(hub_t *h, conn_t *c, const void *in, size_t len, int first, int final, int binary)
{
    if (first) {
        sbuf_reset(&c->frag);
        c->frag_too_large = 0;
    }
    if (!c->frag_too_large && sbuf_cat(&c->frag, in, len) != 0)
        c->frag_too_large = 1;
    if (!final)
        return;
    if (c->frag_too_large)
        ws_error(h, c, "too_large", "the message is over the maximum size", NULL);
    else if (binary)
        ws_error(h, c, "bad_request", "messages are JSON text frames", NULL);
    else
        s_message(h, c, c->frag.data ? c->frag.data : "", c->frag.len);
    if (c->frag.cap > S_FRAG_KEEP) {
        size_t max = c->frag.max;
        sbuf_free(&c->frag);
        sbuf_init(&c->frag, max);
    } else {
        sbuf_reset(&c->frag);
    }
}

/* A refused resume: the client hears unknown_run and nothing of the run
 * stays on the socket. */
static void s_resume_refused(hub_t *h, pending_t *p)
{
    conn_t *c = p->conn;
    if (p->made_track)
        sessions_untrack(c, p->run_id);
    ws_error(h, c, "unknown_run", "no such run in this session", p->request_id[0] ? p->request_id : p->run_id);
}

void ws_on_stream(hub_t *h, pending_t *p, const orch_stream_t *ev)
{
    conn_t *c = p->conn;
    if (p->kind != P_WS_RESUME)
        return;
    if (ev->accepted) {
        hub_reply_t f;
        hub_accepted_fields(ev, &f);
        if (!c->session || strcmp(f.session_id, c->session->id) != 0) {
            s_resume_refused(h, p);
            io_cancel(h->io, p->req);
            pending_free(h->pending, p);
            return;
        }
        p->accepted = 1;
        return;
    }
    if (!p->accepted)
        return;
    char rid[129];
    snprintf(rid, sizeof rid, "%.*s", (int)ev->run_id.len, ev->run_id.ptr);
    sessions_event(h->sessions, c, rid, ev->seq, ev->terminal, ev->json.ptr, ev->json.len);
}

/* The orchestrator's error answer as a WebSocket error; code NULL: its own
 * code (5xx: unavailable). */
static void s_error_as(hub_t *h, conn_t *c, const hub_reply_t *r, const char *force_code,
                       const char *request_id)
{
    char code[64] = "bad_request", message[512] = "";
    json_t *doc = json_loadb(r->json, r->json_len, 0, NULL);
    json_t *err = json_object_get(doc, "error");
    if (json_string_value(json_object_get(err, "code")))
        snprintf(code, sizeof code, "%s", json_string_value(json_object_get(err, "code")));
    if (json_string_value(json_object_get(err, "message")))
        snprintf(message, sizeof message, "%s", json_string_value(json_object_get(err, "message")));
    json_decref(doc);
    if (r->status >= 500)
        snprintf(code, sizeof code, "unavailable");
    if (force_code)
        snprintf(code, sizeof code, "%s", force_code);
    ws_error(h, c, code, message, request_id);
}

static void s_error_from(hub_t *h, conn_t *c, const hub_reply_t *r, const char *request_id)
{
    s_error_as(h, c, r, NULL, request_id);
}

void ws_on_reply(hub_t *h, pending_t *p, const hub_reply_t *r)
{
    conn_t *c = p->conn;
    orch_request_t q = {0};
    switch (p->kind) {
    case P_WS_INVOKE:
        if (r->status != 200) {
            s_error_from(h, c, r, p->request_id);
            return;
        }
        /* A run to come is followed from seq 1: a gap, or a watch lost
         * before its first event, is filled from the store. (A retry that
         * names an ended run gets its answer only.) */
        if (*r->run_id && (!strcmp(r->run_status, "queued") || !strcmp(r->run_status, "running")))
            sessions_track(h->sessions, c, r->run_id, 1);
        /* Events of the run may only be sent after this: they follow on
         * the session's watch, after this answer. */
        sbuf_t j;
        sbuf_init(&j, 1024);
        sbuf_cats(&j, "{\"type\":\"invoke_accepted\",\"request_id\":");
        sbuf_json_str(&j, p->request_id, strlen(p->request_id));
        sbuf_cats(&j, ",\"run_id\":");
        sbuf_json_str(&j, r->run_id, strlen(r->run_id));
        sbuf_cats(&j, "}");
        s_json(h, c, &j);
        sbuf_free(&j);
        return;
    case P_WS_CANCEL_RUN:
        if (r->status == 404 || (r->status == 200 && (!c->session || strcmp(r->session_id, c->session->id) != 0))) {
            ws_error(h, c, "unknown_run", "no such run in this session", p->request_id);
            return;
        }
        if (r->status != 200) {
            s_error_from(h, c, r, p->request_id);
            return;
        }
        q.op = S_STR("cancel");
        q.run_id = S_STR(p->run_id);
        pending_t *n = s_request(h, c, P_WS_CANCEL, &q, h->cfg.request_timeout_ms, p->request_id);
        if (n)
            snprintf(n->request_id, sizeof n->request_id, "%s", p->request_id);
        return;
    case P_WS_CANCEL:
        if (r->status == 404)
            ws_error(h, c, "unknown_run", "no such run in this session", p->request_id);
        else if (r->status == 409)
            ws_error(h, c, "bad_request", "the run has already ended", p->request_id);
        else if (r->status >= 400)
            s_error_from(h, c, r, p->request_id);
        return;
    case P_WS_RESUME:
        if (r->status == 404) {
            s_resume_refused(h, p);
        } else if (r->status == 200 && p->accepted) { /* the run ended: the rest is in the store */
            sessions_catch_up(h->sessions, c, p->run_id);
        } else if (r->status >= 400) { /* e.g. 429 too_many_follows: try again later */
            if (p->made_track)
                sessions_untrack(c, p->run_id);
            s_error_as(h, c, r, "unavailable", p->request_id[0] ? p->request_id : p->run_id);
        }
        return;
    default:
        return;
    }
}

void ws_on_error(hub_t *h, pending_t *p, const char *code, const char *message)
{
    (void)code;
    (void)message;
    conn_t *c = p->conn;
    switch (p->kind) {
    case P_WS_INVOKE:
    case P_WS_CANCEL_RUN:
    case P_WS_CANCEL:
        ws_error(h, c, "unavailable", "the orchestrator cannot be reached", p->request_id);
        break;
    case P_WS_RESUME:
        ws_error(h, c, "unavailable", "the orchestrator cannot be reached", p->run_id);
        break;
    default:
        break;
    }
}
