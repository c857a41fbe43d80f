/* call: agent calls over the worker library (see call.h).
 *
 * State per call (s_call_t):
 *   follow   the op `call` request while the orchestrator's answer runs;
 *            0 once its REPLY or ERROR came.
 *   fill     an op `events` request in flight (0: none).
 *   last     the last seq delivered to on_event; high the largest seq seen
 *            live (a STREAM past last + 1 is a gap).
 *   terminal 1 once the child's terminal event was delivered: its outcome,
 *            error and the output of its agent_invoke_done are kept.
 *
 * Order: a live event is delivered only when its seq is last + 1. A seq
 * past that starts a fill (op `events` after_seq = last) and the live
 * events meanwhile are dropped (they are stored before they are sent, so
 * the page has them); after each page the call fills again while has_more,
 * or high > last. A repeat (seq <= last) is dropped. The follow's REPLY
 * before the terminal event (the follow sent one page and then its end)
 * fills to the terminal event too. A page that brings nothing new while
 * something is missing is read once more (it may predate what it was asked
 * for); a second one ends the call CALL_LOST rather than looping.
 *
 * End: on_end runs when the terminal event was delivered and the follow is
 * over (its REPLY follows the terminal event at once), or on a refusal, a
 * transport error or call_cancel. Requests still in flight at the end are
 * cancelled and their ids stay in `reqs` marked S_ZOMBIE until their final
 * frame, so the late frames are consumed here and never reach the agent.
 *
 * Lookup: `reqs` maps worker request ids (follow and fill) to their call,
 * `calls` maps handles (the follow's id, kept after the follow ends) to
 * calls. Event JSON is parsed with jansson only to read payload.delta,
 * the output and the error. */
#include "call.h"

#include "common/hmap.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/mem.h"
#include "proto/frame.h"
#include "proto/id.h"
#include "proto/orch.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define S_CALLS_MAX 100000
#define S_PAGE 1000           /* events asked per fill */
#define S_CODE_MAX 64
#define S_MESSAGE_MAX 512

static char s_zombie_mark;
#define S_ZOMBIE ((void *)&s_zombie_mark)

typedef struct {
    uint64_t handle;
    uint64_t follow;
    uint64_t fill;
    void *user;
    char child[AGENT_ID_MAX + 1];
    int accepted;
    uint64_t last;
    uint64_t high;
    int terminal;
    unsigned empty_pages;    /* fills in a row that brought nothing */
    call_outcome_t outcome;
    char code[S_CODE_MAX + 1];
    char message[S_MESSAGE_MAX + 1];
    char role[AGENT_ROLE_MAX + 1];
    char *output;
    size_t output_len;
} s_call_t;

struct call_set_t {
    call_transport_t t;
    void *targ;
    call_handlers_t h;
    size_t body_max;
    hmap_t *reqs;    /* worker request id → s_call_t, or S_ZOMBIE */
    hmap_t *calls;   /* handle → s_call_t */
    mp_buf_t out;
};

static void s_copy(char *dst, size_t cap, const char *src, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, src, len);
    dst[len] = '\0';
}

static uint64_t s_worker_request(void *arg, const char *service, const void *body, size_t len)
{
    return worker_request(arg, service, body, len);
}

static int s_worker_cancel(void *arg, uint64_t req)
{
    return worker_cancel(arg, req);
}

call_set_t *call_set_new(worker_t *w, const call_handlers_t *h, size_t body_max)
{
    call_transport_t t = {s_worker_request, s_worker_cancel};
    return call_set_new_transport(&t, w, h, body_max);
}

call_set_t *call_set_new_transport(const call_transport_t *t, void *arg, const call_handlers_t *h,
                             size_t body_max)
{
    call_set_t *c = mem_alloc(sizeof *c);
    c->t = *t;
    c->targ = arg;
    if (h)
        c->h = *h;
    c->body_max = body_max ? body_max : FRAME_BODY_MAX_DEFAULT;
    c->reqs = hmap_new(S_CALLS_MAX * 2);
    c->calls = hmap_new(S_CALLS_MAX);
    mp_buf_init(&c->out, c->body_max);
    return c;
}

static void s_free(s_call_t *call)
{
    mem_free(call->output);
    mem_free(call);
}

void call_set_destroy(call_set_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    call_set_t *c = *self_p;
    size_t pos = 0;
    uint64_t key;
    void *value;
    while (hmap_next(c->calls, &pos, &key, &value) == 0)
        s_free(value);
    hmap_destroy(&c->calls);
    hmap_destroy(&c->reqs);
    mp_buf_free(&c->out);
    mem_free(c);
    *self_p = NULL;
}

size_t call_set_active(const call_set_t *c)
{
    return hmap_size(c->calls);
}

/* ---- the request --------------------------------------------------------- */

int call_encode_request(mp_buf_t *b, const call_spec_t *s, const char *call_id)
{
    const char *role = s->role ? s->role : "user";
    msgpack_pack_map(&b->pk, 7 + (s->history_count > 0));
    mp_pack_kv_cstr(b, "op", "call");
    mp_pack_kv_cstr(b, "run_id", s->run_id);
    mp_pack_kv_cstr(b, "token", s->token);
    mp_pack_kv_cstr(b, "call_id", call_id);
    mp_pack_kv_cstr(b, "agent_id", s->agent_id);
    mp_pack_kv_cstr(b, "role", role);
    mp_pack_kv_str(b, "content", s->content ? s->content : "", s->content_len);
    if (s->history_count > 0) {
        mp_pack_cstr(b, "history");
        msgpack_pack_array(&b->pk, s->history_count);
        for (uint32_t i = 0; i < s->history_count; i++) {
            msgpack_pack_map(&b->pk, 2);
            mp_pack_kv_str(b, "role", s->history[i].role.ptr, s->history[i].role.len);
            mp_pack_kv_str(b, "content", s->history[i].content.ptr, s->history[i].content.len);
        }
    }
    return b->overflow ? -1 : 0;
}

static int s_id_ok(const char *s)
{
    return s && id_valid(s, strlen(s));
}

uint64_t call_start(call_set_t *c, const call_spec_t *spec, void *user, char *err, size_t errlen)
{
    char generated[IDS_MAX];
    const char *call_id = spec->call_id ? spec->call_id : ids_new("call_", generated);
    if (!s_id_ok(spec->run_id) || !s_id_ok(spec->agent_id) || !s_id_ok(call_id)) {
        snprintf(err, errlen, "run_id, agent_id and call_id must be valid ids");
        return 0;
    }
    if (!spec->token || !*spec->token || strlen(spec->token) > CALL_TOKEN_MAX) {
        snprintf(err, errlen, "the call token is missing (the invoke carried no platform)");
        return 0;
    }
    if (hmap_size(c->calls) >= S_CALLS_MAX) {
        snprintf(err, errlen, "too many calls in flight");
        return 0;
    }
    mp_buf_reset(&c->out);
    if (call_encode_request(&c->out, spec, call_id) != 0) {
        snprintf(err, errlen, "the call is over the body maximum");
        return 0;
    }
    uint64_t req = c->t.request(c->targ, CALL_SERVICE, c->out.data, c->out.len);
    if (!req) {
        snprintf(err, errlen, "the request could not be sent (no broker link, or queue full)");
        return 0;
    }
    s_call_t *call = mem_alloc(sizeof *call);
    call->handle = call->follow = req;
    call->user = user;
    hmap_put(c->reqs, req, call);
    hmap_put(c->calls, req, call);
    return req;
}

/* ---- the end ----------------------------------------------------------------- */

/* Retires a request of the call: cancelled and left as a zombie when live. */
static void s_retire(call_set_t *c, uint64_t *req)
{
    if (!*req)
        return;
    if (c->t.cancel(c->targ, *req) == 0)
        hmap_put(c->reqs, *req, S_ZOMBIE);
    else
        hmap_del(c->reqs, *req);
    *req = 0;
}

static void s_end(call_set_t *c, s_call_t *call, call_outcome_t outcome, const char *code,
                  const char *message, unsigned status)
{
    s_retire(c, &call->follow);
    s_retire(c, &call->fill);
    hmap_del(c->calls, call->handle);
    call_end_t end = {.outcome = outcome,
                      .child_run_id = call->child,
                      .code = code ? code : "",
                      .message = message ? message : "",
                      .output_role = "",
                      .output = "",
                      .status = status};
    if (outcome == CALL_DONE) {
        end.output_role = call->role[0] ? call->role : "assistant";
        end.output = call->output ? call->output : "";
        end.output_len = call->output_len;
    }
    if (c->h.on_end)
        c->h.on_end(c, call->handle, &end, call->user);
    s_free(call);
}

static void s_end_terminal(call_set_t *c, s_call_t *call)
{
    s_end(c, call, call->outcome, call->code, call->message, 200);
}

int call_cancel(call_set_t *c, uint64_t handle)
{
    s_call_t *call = hmap_get(c->calls, handle);
    if (!call)
        return -1;
    s_end(c, call, CALL_CANCELLED, "cancelled", "the caller cancelled the call", 0);
    return 0;
}

/* ---- events -------------------------------------------------------------------- */

static const char *s_jstr(json_t *obj, const char *key, size_t *len)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v)) {
        if (len)
            *len = 0;
        return "";
    }
    if (len)
        *len = json_string_length(v);
    return json_string_value(v);
}

/* Keeps what the end needs from an event the child logged. */
static void s_note(s_call_t *call, const char *type, json_t *payload)
{
    if (strcmp(type, "agent_invoke_done") == 0) {
        json_t *out = json_object_get(payload, "output");
        size_t len;
        const char *content = s_jstr(out, "content", &len);
        mem_free(call->output);
        call->output = mem_strndup(content, len);
        call->output_len = len;
        const char *role = s_jstr(out, "role", NULL);
        s_copy(call->role, sizeof call->role, role, strlen(role));
    } else if (strcmp(type, "run_done") == 0) {
        call->outcome = CALL_DONE;
    } else if (strcmp(type, "run_failed") == 0) {
        json_t *e = json_object_get(payload, "error");
        const char *code = s_jstr(e, "code", NULL), *msg = s_jstr(e, "message", NULL);
        if (!*code)
            code = "internal";
        call->outcome = CALL_FAILED;
        s_copy(call->code, sizeof call->code, code, strlen(code));
        s_copy(call->message, sizeof call->message, msg, strlen(msg));
    } else if (strcmp(type, "run_cancelled") == 0) {
        call->outcome = CALL_CANCELLED;
        s_copy(call->code, sizeof call->code, "cancelled", 9);
        s_copy(call->message, sizeof call->message, "the child run was cancelled", 27);
    }
}

static int s_is_terminal(const char *type)
{
    return strcmp(type, "run_done") == 0 || strcmp(type, "run_failed") == 0 ||
           strcmp(type, "run_cancelled") == 0;
}

/* Delivers the event seq (already checked to be last + 1). ev is the parsed
 * object, json its text. Returns 0, or -1 when the call ended meanwhile. */
static int s_deliver(call_set_t *c, s_call_t *call, uint64_t seq, json_t *ev, const char *json,
                     size_t json_len)
{
    const char *type = s_jstr(ev, "type", NULL);
    json_t *payload = json_object_get(ev, "payload");
    call_event_t out = {.type = type,
                        .seq = seq,
                        .terminal = s_is_terminal(type),
                        .json = json,
                        .json_len = json_len};
    if (strcmp(type, "agent_stream_delta") == 0)
        out.delta = s_jstr(payload, "delta", &out.delta_len);
    call->last = seq;
    s_note(call, type, payload);
    if (out.terminal)
        call->terminal = 1;
    uint64_t handle = call->handle;
    if (c->h.on_event)
        c->h.on_event(c, handle, &out, call->user);
    return hmap_get(c->calls, handle) == call ? 0 : -1;
}

static void s_fill(call_set_t *c, s_call_t *call)
{
    if (call->fill)
        return;
    orch_request_t q;
    memset(&q, 0, sizeof q);
    q.op = (agent_str_t){"events", 6};
    q.run_id = (agent_str_t){call->child, (uint32_t)strlen(call->child)};
    q.after_seq = call->last;
    q.limit = S_PAGE;
    mp_buf_reset(&c->out);
    uint64_t req = 0;
    if (orch_encode_request(&c->out, &q) == 0)
        req = c->t.request(c->targ, CALL_SERVICE, c->out.data, c->out.len);
    if (!req) {
        s_end(c, call, CALL_LOST, "internal", "the child's missing events could not be asked for",
              0);
        return;
    }
    call->fill = req;
    hmap_put(c->reqs, req, call);
}

/* What comes after an event or a page: end, fill, or wait for more. */
static void s_next(call_set_t *c, s_call_t *call)
{
    if (call->terminal) {
        if (!call->follow)
            s_end_terminal(c, call);
        return;
    }
    if (call->high > call->last || !call->follow)
        s_fill(c, call);
}

static void s_on_event(call_set_t *c, s_call_t *call, const orch_stream_t *st)
{
    if (st->seq <= call->last || call->terminal)
        return; /* a repeat */
    if (st->seq > call->high)
        call->high = st->seq;
    if (st->seq > call->last + 1 || call->fill) {
        s_fill(c, call); /* a gap, or one being filled: the page brings it */
        return;
    }
    json_error_t jerr;
    json_t *ev = json_loadb(st->json.ptr, st->json.len, 0, &jerr);
    if (!json_is_object(ev)) {
        json_decref(ev);
        s_end(c, call, CALL_LOST, "internal", "an event of the child is not a JSON object", 0);
        return;
    }
    char *text = mem_strndup(st->json.ptr, st->json.len);
    int rc = s_deliver(c, call, st->seq, ev, text, st->json.len);
    mem_free(text);
    json_decref(ev);
    if (rc == 0)
        s_next(c, call);
}

/* A page of op `events`: {"run_id","events":[...],"has_more","next_after_seq"}. */
static void s_on_page(call_set_t *c, s_call_t *call, const orch_reply_t *rep)
{
    call->fill = 0;
    if (rep->status != 200) {
        s_end(c, call, CALL_LOST, "internal", "the child's events could not be read", 0);
        return;
    }
    json_error_t jerr;
    json_t *page = json_loadb(rep->json.ptr, rep->json.len, 0, &jerr);
    json_t *events = json_object_get(page, "events");
    if (!json_is_array(events)) {
        json_decref(page);
        s_end(c, call, CALL_LOST, "internal", "the child's events page does not decode", 0);
        return;
    }
    uint64_t before = call->last, handle = call->handle;
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        json_t *jseq = json_object_get(ev, "seq");
        if (!json_is_integer(jseq) || json_integer_value(jseq) <= 0)
            continue;
        uint64_t seq = (uint64_t)json_integer_value(jseq);
        if (seq != call->last + 1 || call->terminal)
            continue;
        char *text = json_dumps(ev, JSON_COMPACT);
        int rc = s_deliver(c, call, seq, ev, text, text ? strlen(text) : 0);
        free(text);
        if (rc != 0) {
            json_decref(page);
            return;
        }
    }
    int has_more = json_is_true(json_object_get(page, "has_more"));
    json_decref(page);
    if (hmap_get(c->calls, handle) != call)
        return;
    if (call->last == before && !call->terminal) {
        /* A page may have been read before the event that asked for it was
         * stored: one more is read after it was. Two empty pages in a row
         * while the run is over: the log lacks its end. */
        if (++call->empty_pages < 2) {
            s_fill(c, call);
            return;
        }
        call->empty_pages = 0;
        if (!call->follow) {
            s_end(c, call, CALL_LOST, "internal", "the child's log ended without its end", 0);
            return;
        }
        call->high = call->last; /* nothing stored past last yet: wait for live events */
        return;
    }
    call->empty_pages = 0;
    if (has_more && !call->terminal)
        s_fill(c, call);
    else
        s_next(c, call);
}

/* ---- the glue ---------------------------------------------------------------------- */

static void s_set_child(s_call_t *call, const agent_str_t *run_id)
{
    s_copy(call->child, sizeof call->child, run_id->ptr, run_id->len);
}

int call_on_stream(call_set_t *c, uint64_t req, const uint8_t *body, size_t len)
{
    s_call_t *call = hmap_get(c->reqs, req);
    if (!call)
        return 0;
    if (call == S_ZOMBIE || req != call->follow)
        return 1;
    orch_stream_t st;
    if (orch_decode_stream(body, len, &st) != AGENT_OK || st.run_id.len == 0) {
        s_end(c, call, CALL_LOST, "internal", "the orchestrator's stream does not decode", 0);
        return 1;
    }
    if (st.accepted) {
        if (call->accepted)
            return 1;
        call->accepted = 1;
        s_set_child(call, &st.run_id);
        if (c->h.on_accepted)
            c->h.on_accepted(c, call->handle, call->child, call->user);
        return 1;
    }
    if (!call->accepted)
        return 1; /* an event before the accepted body: not the contract, ignored */
    s_on_event(c, call, &st);
    return 1;
}

/* The error envelope {"error":{"code","message"}} of a refusal. */
static void s_refused(call_set_t *c, s_call_t *call, const orch_reply_t *rep)
{
    json_error_t jerr;
    json_t *doc = json_loadb(rep->json.ptr, rep->json.len, 0, &jerr);
    json_t *e = json_object_get(doc, "error");
    char code[S_CODE_MAX + 1], message[S_MESSAGE_MAX + 1];
    const char *jc = s_jstr(e, "code", NULL), *jm = s_jstr(e, "message", NULL);
    s_copy(code, sizeof code, *jc ? jc : "internal", strlen(*jc ? jc : "internal"));
    s_copy(message, sizeof message, jm, strlen(jm));
    json_decref(doc);
    s_end(c, call, call->accepted ? CALL_LOST : CALL_REFUSED, code, message, rep->status);
}

int call_on_reply(call_set_t *c, uint64_t req, const uint8_t *body, size_t len)
{
    s_call_t *call = hmap_del(c->reqs, req);
    if (!call)
        return 0;
    if (call == S_ZOMBIE)
        return 1;
    orch_reply_t rep;
    if (orch_decode_reply(body, len, &rep) != AGENT_OK) {
        if (req == call->fill)
            call->fill = 0;
        else
            call->follow = 0;
        s_end(c, call, CALL_LOST, "internal", "the orchestrator's reply does not decode", 0);
        return 1;
    }
    if (req == call->fill) {
        s_on_page(c, call, &rep);
        return 1;
    }
    call->follow = 0;
    if (rep.status != 200) {
        s_refused(c, call, &rep);
        return 1;
    }
    if (!call->accepted && rep.run_id.len > 0) {
        call->accepted = 1;
        s_set_child(call, &rep.run_id);
        if (c->h.on_accepted)
            c->h.on_accepted(c, call->handle, call->child, call->user);
        if (hmap_get(c->calls, req) != call)
            return 1;
    }
    if (!call->accepted) {
        s_end(c, call, CALL_LOST, "internal", "the orchestrator answered without a child run", 0);
        return 1;
    }
    s_next(c, call);
    return 1;
}

int call_on_error(call_set_t *c, uint64_t req, const char *code, const char *message)
{
    s_call_t *call = hmap_del(c->reqs, req);
    if (!call)
        return 0;
    if (call == S_ZOMBIE)
        return 1;
    if (req == call->fill)
        call->fill = 0;
    else
        call->follow = 0;
    if (call->terminal && !call->follow && !call->fill) {
        s_end_terminal(c, call); /* the end was known: the broken-off REPLY adds nothing */
        return 1;
    }
    LOGD("call.lost", "child=%s code=%s", call->child, code);
    s_end(c, call, CALL_LOST, code, message, 0);
    return 1;
}
