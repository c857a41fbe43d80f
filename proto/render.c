/* render: JSON renderings (render.h). Field order is fixed (clients and
 * tests compare documents), keys are literals, values go through
 * sbuf_json_str. */
#include "render.h"

#include <string.h>

static void s_str(sbuf_t *j, const char *key, const char *v)
{
    sbuf_cats(j, key);
    if (v)
        sbuf_json_str(j, v, strlen(v));
    else
        sbuf_cats(j, "null");
}

int render_run(sbuf_t *j, const render_run_t *r)
{
    s_str(j, "{\"run_id\":", r->run_id);
    s_str(j, ",\"session_id\":", r->session_id);
    s_str(j, ",\"agent_id\":", r->agent_id);
    s_str(j, ",\"status\":", r->status);
    s_str(j, ",\"created_at\":", r->created_at);
    s_str(j, ",\"ended_at\":", r->ended_at && *r->ended_at ? r->ended_at : NULL);
    int child = r->parent_run_id && *r->parent_run_id;
    s_str(j, ",\"parent_run_id\":", child ? r->parent_run_id : NULL);
    s_str(j, ",\"root_run_id\":", child && r->root_run_id && *r->root_run_id ? r->root_run_id : NULL);
    sbuf_cats(j, ",\"depth\":");
    sbuf_cat_u64(j, child ? r->depth : 0);
    return sbuf_cats(j, "}");
}

int render_event(sbuf_t *j, const render_event_t *e)
{
    sbuf_cats(j, "{\"event_id\":");
    sbuf_cat_u64(j, (unsigned long long)e->event_id);
    s_str(j, ",\"run_id\":", e->run_id);
    s_str(j, ",\"session_id\":", e->session_id);
    sbuf_cats(j, ",\"seq\":");
    sbuf_cat_u64(j, e->seq);
    s_str(j, ",\"type\":", e->type);
    sbuf_cats(j, ",\"payload\":");
    sbuf_cats(j, e->payload);
    s_str(j, ",\"created_at\":", e->created_at);
    if (e->parent_run_id && *e->parent_run_id) {
        s_str(j, ",\"parent_run_id\":", e->parent_run_id);
        sbuf_cats(j, ",\"depth\":");
        sbuf_cat_u64(j, e->depth);
    }
    return sbuf_cats(j, "}");
}

int render_error(sbuf_t *j, const char *code, const char *message, const char *run_id)
{
    s_str(j, "{\"error\":{\"code\":", code);
    s_str(j, ",\"message\":", message);
    if (run_id)
        s_str(j, ",\"run_id\":", run_id);
    return sbuf_cats(j, "}}");
}

int render_agent(sbuf_t *j, const render_agent_t *a)
{
    s_str(j, "{\"agent_id\":", a->agent_id);
    s_str(j, ",\"name\":", a->name);
    s_str(j, ",\"endpoint\":", a->endpoint);
    sbuf_cats(j, a->endpoint ? ",\"kind\":\"http\",\"workers\":" : ",\"kind\":\"native\",\"workers\":");
    sbuf_cat_u64(j, a->workers);
    s_str(j, ",\"created_at\":", a->created_at);
    return sbuf_cats(j, "}");
}

int render_message(sbuf_t *j, int64_t message_id, const char *run_id, const char *role,
                   const char *content, size_t content_len, const char *created_at)
{
    sbuf_cats(j, "{\"message_id\":\"");
    sbuf_cat_u64(j, (unsigned long long)message_id);
    s_str(j, "\",\"run_id\":", run_id);
    s_str(j, ",\"role\":", role);
    sbuf_cats(j, ",\"content\":");
    sbuf_json_str(j, content, content_len);
    s_str(j, ",\"created_at\":", created_at);
    return sbuf_cats(j, "}");
}
