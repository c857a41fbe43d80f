/* routes: SPEC §3's table as code. Ids in paths and bodies are checked to
 * the orchestrator's own rule (proto/id.h), so a bad id is a 400 here and
 * never reaches a JSON document. */
#include "routes.h"

#include "common/mem.h"
#include "common/sbuf.h"
#include "proto/id.h"
#include "proto/orch.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int s_err(route_err_t *e, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int s_err(route_err_t *e, int status, const char *code, const char *fmt, ...)
{
    e->status = status;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}


/* Matches "prefix{id}suffix"; copies id. */
static int s_match_id(const char *path, const char *prefix, const char *suffix, char *id,
                      size_t cap, int *bad)
{
    size_t pl = strlen(prefix), sl = strlen(suffix), n = strlen(path);
    if (n <= pl + sl || strncmp(path, prefix, pl) != 0 || strcmp(path + n - sl, suffix) != 0)
        return 0;
    size_t idlen = n - pl - sl;
    const char *start = path + pl;
    if (memchr(start, '/', idlen))
        return 0;
    if (!id_valid(start, idlen) || idlen >= cap) {
        *bad = 1;
        return 1;
    }
    memcpy(id, start, idlen);
    id[idlen] = '\0';
    return 1;
}

int routes_match(const char *method, const char *path, route_t *out, route_err_t *e)
{
    static const struct {
        const char *method, *path;
        route_id_t id;
    } fixed[] = {
        {"GET", "/health", ROUTE_HEALTH},         {"POST", "/v1/agents/register", ROUTE_REGISTER},
        {"GET", "/v1/agents", ROUTE_AGENTS},      {"POST", "/internal/invoke", ROUTE_INVOKE},
        {"POST", "/internal/send", ROUTE_SEND},   {"GET", "/metrics", ROUTE_METRICS},
    };
    static const struct {
        const char *method, *prefix, *suffix;
        route_id_t id;
    } with_id[] = {
        {"GET", "/v1/runs/", "/events", ROUTE_RUN_EVENTS},
        {"POST", "/v1/runs/", "/cancel", ROUTE_RUN_CANCEL},
        {"GET", "/v1/sessions/", "/messages", ROUTE_MESSAGES},
        {"GET", "/v1/sessions/", "/runs", ROUTE_SESSION_RUNS},
        {"POST", "/v1/runs/", "/calls", ROUTE_RUN_CALL},
        {"GET", "/v1/runs/", "/calls", ROUTE_RUN_CALLS},
        {"GET", "/v1/runs/", "", ROUTE_RUN},
    };
    memset(out, 0, sizeof *out);
    if (!strcmp(path, "/ui") || !strncmp(path, "/ui/", 4)) {
        if (strcmp(method, "GET") != 0)
            return s_err(e, 405, "method_not_allowed", "%s is not allowed on %.200s", method, path);
        if (strlen(path) >= sizeof out->arg)
            return s_err(e, 404, "not_found", "no such path: %.200s", path);
        out->id = ROUTE_UI;
        snprintf(out->arg, sizeof out->arg, "%s", path);
        return 0;
    }
    int path_known = 0;
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
        if (strcmp(path, fixed[i].path) != 0)
            continue;
        path_known = 1;
        if (!strcmp(method, fixed[i].method)) {
            out->id = fixed[i].id;
            return 0;
        }
    }
    /* A path may have one entry per method: every entry is tried. */
    for (size_t i = 0; i < sizeof with_id / sizeof *with_id; i++) {
        int bad = 0;
        char id[129];
        if (!s_match_id(path, with_id[i].prefix, with_id[i].suffix, id, sizeof id, &bad))
            continue;
        if (bad)
            return s_err(e, 400, "bad_request", "the id in the path is not a valid id");
        path_known = 1;
        if (!strcmp(method, with_id[i].method)) {
            out->id = with_id[i].id;
            snprintf(out->arg, sizeof out->arg, "%s", id);
            return 0;
        }
    }
    if (path_known)
        return s_err(e, 405, "method_not_allowed", "%s is not allowed on %s", method, path);
    return s_err(e, 404, "not_found", "no such path: %.200s", path);
}

static json_t *s_load(const char *body, size_t len, route_err_t *e)
{
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        s_err(e, 400, "bad_json", "the body is not valid JSON: %s", jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        s_err(e, 400, "bad_request", "the body must be a JSON object");
        return NULL;
    }
    return root;
}

/* A string member: NULL when absent; -1 (error set) when present but bad. */
static int s_str(json_t *obj, const char *key, const char **out, size_t *len, int id,
                 route_err_t *e)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    *len = 0;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return s_err(e, 400, "bad_request", "%s must be a string", key);
    *out = json_string_value(v);
    *len = json_string_length(v);
    if (id && !id_valid(*out, *len))
        return s_err(e, 400, "bad_request",
                     "%s must be 1 to 128 printable characters without quotes, slashes, '?', '#' or '%%'",
                     key);
    return 0;
}

/* A {"role","content"} object (where names it in errors). strict: other
 * keys are errors (a call's messages); invoke's input_message ignores them,
 * as it always has. */
static int s_message(json_t *msg, const char *where, int strict, const char **role, size_t *rol,
                     const char **content, size_t *cl, route_err_t *e)
{
    if (!json_is_object(msg))
        return s_err(e, 400, "bad_request", "%s must be {\"role\": string, \"content\": string}",
                     where);
    const char *key;
    json_t *v;
    json_object_foreach(msg, key, v) {
        if (strict && strcmp(key, "role") != 0 && strcmp(key, "content") != 0)
            return s_err(e, 400, "bad_request", "%s has an unknown key \"%.64s\"", where, key);
    }
    if (s_str(msg, "role", role, rol, 0, e) || s_str(msg, "content", content, cl, 0, e))
        return -1;
    if (!*role || !*content || *rol == 0 || *rol > 32)
        return s_err(e, 400, "bad_request",
                     "%s needs a role (1 to 32 characters) and a content string", where);
    return 0;
}

int routes_invoke(const char *body, size_t len, mp_buf_t *b, route_err_t *e)
{
    json_t *root = s_load(body, len, e);
    if (!root)
        return -1;
    int rc = -1;
    const char *session, *agent, *request_id, *if_busy, *role, *content;
    size_t sl, al, rl, bl, rol, cl;
    if (s_str(root, "session_id", &session, &sl, 1, e) || s_str(root, "agent_id", &agent, &al, 1, e) ||
        s_str(root, "request_id", &request_id, &rl, 1, e) || s_str(root, "if_busy", &if_busy, &bl, 0, e))
        goto done;
    if (!agent) {
        s_err(e, 400, "bad_request", "agent_id is required");
        goto done;
    }
    if (!session) {
        s_err(e, 400, "bad_request", "session_id is required");
        goto done;
    }
    if (s_message(json_object_get(root, "input_message"), "input_message", 0, &role, &rol,
                  &content, &cl, e))
        goto done;
    if (if_busy && strcmp(if_busy, "reject") != 0 && strcmp(if_busy, "enqueue") != 0) {
        s_err(e, 400, "bad_request", "if_busy must be \"enqueue\" or \"reject\"");
        goto done;
    }
    orch_request_t q = {.op = {"invoke", 6},
                        .session_id = {session, (uint32_t)sl},
                        .agent_id = {agent, (uint32_t)al},
                        .request_id = {request_id, (uint32_t)rl},
                        .if_busy = {if_busy, (uint32_t)bl},
                        .role = {role, (uint32_t)rol},
                        .content = {content, (uint32_t)cl},
                        .follow = 1};
    if (orch_encode_request(b, &q) != 0) {
        s_err(e, 413, "too_large", "the request is over the maximum");
        goto done;
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

int routes_bearer_token(const char *authorization, char *token, size_t cap)
{
    static const char scheme[] = "Bearer ";
    if (!authorization || cap < ROUTES_TOKEN_LEN + 1 ||
        strncasecmp(authorization, scheme, sizeof scheme - 1) != 0)
        return -1;
    const char *v = authorization + sizeof scheme - 1;
    while (*v == ' ')
        v++;
    size_t n = strlen(v);
    while (n > 0 && v[n - 1] == ' ')
        n--;
    if (n != ROUTES_TOKEN_LEN)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f')))
            return -1;
    memcpy(token, v, n);
    token[n] = '\0';
    return 0;
}


int routes_call(const char *run_id, const char *token, const char *body, size_t len, mp_buf_t *b,
                route_err_t *e)
{
    json_t *root = s_load(body, len, e);
    if (!root)
        return -1;
    int rc = -1;
    const char *call_id, *agent, *role, *content;
    size_t cil, al, rol, cl;
    if (s_str(root, "call_id", &call_id, &cil, 1, e) || s_str(root, "agent_id", &agent, &al, 1, e))
        goto done;
    if (!call_id) {
        s_err(e, 400, "bad_request", "call_id is required");
        goto done;
    }
    if (!agent) {
        s_err(e, 400, "bad_request", "agent_id is required");
        goto done;
    }
    if (s_message(json_object_get(root, "input_message"), "input_message", 1, &role, &rol, &content,
                  &cl, e))
        goto done;
    json_t *history = json_object_get(root, "messages");
    if (history && !json_is_null(history) && !json_is_array(history)) {
        s_err(e, 400, "bad_request", "messages must be an array of {\"role\", \"content\"}");
        goto done;
    }
    size_t nh = json_is_array(history) ? json_array_size(history) : 0;
    for (size_t i = 0; i < nh; i++) {
        const char *hr, *hc;
        size_t hrl, hcl;
        char where[40];
        snprintf(where, sizeof where, "messages[%zu]", i);
        if (s_message(json_array_get(history, i), where, 1, &hr, &hrl, &hc, &hcl, e))
            goto done;
    }
    msgpack_pack_map(&b->pk, 7 + (nh > 0));
    mp_pack_kv_cstr(b, "op", "call");
    mp_pack_kv_cstr(b, "run_id", run_id);
    mp_pack_kv_cstr(b, "token", token);
    mp_pack_kv_str(b, "call_id", call_id, cil);
    mp_pack_kv_str(b, "agent_id", agent, al);
    mp_pack_kv_str(b, "role", role, rol);
    mp_pack_kv_str(b, "content", content, cl);
    if (nh > 0) {
        mp_pack_cstr(b, "history");
        msgpack_pack_array(&b->pk, (uint32_t)nh);
        for (size_t i = 0; i < nh; i++) {
            json_t *m = json_array_get(history, i);
            json_t *hr = json_object_get(m, "role"), *hc = json_object_get(m, "content");
            msgpack_pack_map(&b->pk, 2);
            mp_pack_kv_str(b, "role", json_string_value(hr), json_string_length(hr));
            mp_pack_kv_str(b, "content", json_string_value(hc), json_string_length(hc));
        }
    }
    if (b->overflow) {
        s_err(e, 413, "too_large", "the request is over the maximum");
        goto done;
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

int routes_register(const char *body, size_t len, mp_buf_t *b, route_err_t *e)
{
    json_t *root = s_load(body, len, e);
    if (!root)
        return -1;
    int rc = -1;
    const char *id, *name, *endpoint;
    size_t il, nl, el;
    if (s_str(root, "agent_id", &id, &il, 1, e) || s_str(root, "name", &name, &nl, 0, e) ||
        s_str(root, "endpoint", &endpoint, &el, 0, e))
        goto done;
    if (!id || !endpoint) {
        s_err(e, 400, "bad_request", "agent_id and endpoint are required");
        goto done;
    }
    if (nl > 256) {
        s_err(e, 400, "bad_request", "name is at most 256 characters");
        goto done;
    }
    orch_request_t q = {.op = {"register", 8},
                        .agent_id = {id, (uint32_t)il},
                        .name = {name, (uint32_t)nl},
                        .endpoint = {endpoint, (uint32_t)el}};
    if (orch_encode_request(b, &q) != 0) {
        s_err(e, 413, "too_large", "the request is over the maximum");
        goto done;
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

int routes_send(const char *body, size_t len, char *session_id, size_t cap, char **event_json,
                route_err_t *e)
{
    json_t *root = s_load(body, len, e);
    if (!root)
        return -1;
    int rc = -1;
    const char *session;
    size_t sl;
    if (s_str(root, "session_id", &session, &sl, 1, e))
        goto done;
    json_t *event = json_object_get(root, "event");
    if (!session || !json_is_object(event)) {
        s_err(e, 400, "bad_request", "session_id and an event object are required");
        goto done;
    }
    snprintf(session_id, cap, "%s", session);
    *event_json = json_dumps(event, JSON_COMPACT | JSON_REAL_PRECISION(17));
    rc = *event_json ? 0 : s_err(e, 400, "bad_request", "the event cannot be encoded");
done:
    json_decref(root);
    return rc;
}

void routes_error_json(const route_err_t *e, char *out, size_t cap)
{
    sbuf_t j;
    sbuf_init(&j, cap > 1 ? cap - 1 : 1);
    sbuf_cats(&j, "{\"error\":{\"code\":");
    sbuf_json_str(&j, e->code, strlen(e->code));
    sbuf_cats(&j, ",\"message\":");
    sbuf_json_str(&j, e->message, strlen(e->message));
    sbuf_cats(&j, "}}");
    snprintf(out, cap, "%s", sbuf_cstr(&j));
    sbuf_free(&j);
}
