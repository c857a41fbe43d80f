/* wsmsg: jansson does the JSON (rejecting duplicate keys, invalid UTF-8 and
 * trailing garbage); this module checks the shape of each message type and
 * copies what it needs into fixed buffers, so nothing here outlives the
 * parse but the content. */
#include "wsmsg.h"

#include "common/mem.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static int s_copy_id(json_t *obj, const char *key, char *dst, size_t cap, int required,
                     char *err, size_t errlen)
{
    json_t *v = json_object_get(obj, key);
    if (!v) {
        if (required)
            snprintf(err, errlen, "%s is required", key);
        return required ? -1 : 0;
    }
    if (!json_is_string(v)) {
        snprintf(err, errlen, "%s must be a string", key);
        return -1;
    }
    size_t n = json_string_length(v);
    if (n == 0 || n >= cap) {
        snprintf(err, errlen, "%s must be 1 to %zu characters", key, cap - 1);
        return -1;
    }
    memcpy(dst, json_string_value(v), n);
    dst[n] = '\0';
    if (strlen(dst) != n) {
        snprintf(err, errlen, "%s must not contain NUL", key);
        return -1;
    }
    return 0;
}

void wsmsg_clear(wsmsg_t *m)
{
    mem_free(m->content);
    m->content = NULL;
}

int wsmsg_parse(const char *text, size_t len, wsmsg_t *out, const char **code, char *err,
                size_t errlen)
{
    memset(out, 0, sizeof *out);
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    *code = "bad_request";
    if (!root) {
        *code = "bad_json";
        snprintf(err, errlen, "not valid JSON: %s", jerr.text);
        return -1;
    }
    int rc = -1;
    if (!json_is_object(root)) {
        snprintf(err, errlen, "a message is a JSON object");
        goto done;
    }
    /* The request id first, so that errors can name it. */
    json_t *rid = json_object_get(root, "request_id");
    if (rid && json_is_string(rid) && json_string_length(rid) > 0 &&
        json_string_length(rid) < sizeof out->request_id)
        snprintf(out->request_id, sizeof out->request_id, "%s", json_string_value(rid));
    json_t *type = json_object_get(root, "type");
    if (!json_is_string(type)) {
        snprintf(err, errlen, "type is required and must be a string");
        goto done;
    }
    const char *t = json_string_value(type);
    if (!strcmp(t, "hello")) {
        out->type = WSMSG_HELLO;
        if (s_copy_id(root, "session_id", out->session_id, sizeof out->session_id, 0, err, errlen) ||
            s_copy_id(root, "api_key", out->api_key, sizeof out->api_key, 0, err, errlen))
            goto done;
    } else if (!strcmp(t, "agent_invoke")) {
        out->type = WSMSG_INVOKE;
        if (s_copy_id(root, "request_id", out->request_id, sizeof out->request_id, 1, err, errlen) ||
            s_copy_id(root, "agent_id", out->agent_id, sizeof out->agent_id, 1, err, errlen))
            goto done;
        json_t *msg = json_object_get(root, "input_message");
        json_t *role = json_object_get(msg, "role");
        json_t *content = json_object_get(msg, "content");
        if (!json_is_object(msg) || !json_is_string(role) || !json_is_string(content)) {
            snprintf(err, errlen, "input_message must be {\"role\": string, \"content\": string}");
            goto done;
        }
        if (json_string_length(role) == 0 || json_string_length(role) >= sizeof out->role) {
            snprintf(err, errlen, "input_message.role must be 1 to 32 characters");
            goto done;
        }
        snprintf(out->role, sizeof out->role, "%s", json_string_value(role));
        json_t *busy = json_object_get(root, "if_busy");
        if (busy) {
            const char *b = json_is_string(busy) ? json_string_value(busy) : "";
            if (!strcmp(b, "reject"))
                out->if_busy_reject = 1;
            else if (strcmp(b, "enqueue") != 0) {
                snprintf(err, errlen, "if_busy must be \"enqueue\" or \"reject\"");
                goto done;
            }
        }
        out->content_len = json_string_length(content);
        out->content = mem_strndup(json_string_value(content), out->content_len);
    } else if (!strcmp(t, "resume") || !strcmp(t, "cancel")) {
        out->type = !strcmp(t, "resume") ? WSMSG_RESUME : WSMSG_CANCEL;
        if (s_copy_id(root, "run_id", out->run_id, sizeof out->run_id, 1, err, errlen))
            goto done;
        json_t *after = json_object_get(root, "after_seq");
        if (out->type == WSMSG_RESUME && after) {
            if (!json_is_integer(after) || json_integer_value(after) < 0) {
                snprintf(err, errlen, "after_seq must be a whole number >= 0");
                goto done;
            }
            out->after_seq = (unsigned long long)json_integer_value(after);
        }
    } else if (!strcmp(t, "ping")) {
        out->type = WSMSG_PING;
    } else {
        snprintf(err, errlen, "unknown message type '%.40s'", t);
        goto done;
    }
    rc = 0;
done:
    if (rc != 0)
        wsmsg_clear(out);
    json_decref(root);
    return rc;
}
