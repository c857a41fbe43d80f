/* ssefeed: see ssefeed.h. The same pacing rule as a WebSocket's
 * (sessions.c): hub_behind / hub_drained. */
#include "ssefeed.h"

#include "seqtrack.h"
#include "common/log.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_STR(s) ((agent_str_t){(s), (uint32_t)strlen(s)})

static int s_push_event(hub_t *h, conn_t *c, uint64_t seq, const char *type, size_t type_len,
                        const char *json, size_t len)
{
    sbuf_t j;
    sbuf_init(&j, len + type_len + 64);
    sbuf_cats(&j, "id: ");
    sbuf_cat_u64(&j, seq);
    sbuf_cats(&j, "\nevent: ");
    sbuf_cat(&j, type, type_len);
    sbuf_cats(&j, "\ndata: ");
    sbuf_cat(&j, json, len);
    sbuf_cats(&j, "\n\n");
    int rc = j.overflow ? -1 : hub_push(h, c, j.data, j.len);
    sbuf_free(&j);
    if (rc == 0)
        h->m.events_sent++;
    return rc;
}

static void s_finish(hub_t *h, conn_t *c)
{
    c->http.finish = 1; /* the stream ends after what is queued */
    io_wake(h->io, c);
}

static void s_fill(hub_t *h, conn_t *c)
{
    http_txn_t *t = &c->http;
    seqtrack_t *tr = &t->track;
    if (c->closing || t->finish) {
        seqtrack_fill_later(tr);
        return;
    }
    if (!hub_drained(h, c)) {
        seqtrack_fill_later(tr);
        c->drain_wait = 1;
        return;
    }
    do {
        orch_request_t q = {.op = S_STR("events"), .run_id = S_STR(t->feed_run),
                            .after_seq = seqtrack_after(tr), .limit = 1000};
        mp_buf_reset(&h->mp);
        orch_encode_request(&h->mp, &q);
        if (hub_request(h, c, P_HTTP_FILL, &h->mp, h->cfg.request_timeout_ms)) {
            h->m.fills++;
            return;
        }
    } while (seqtrack_fill_done(tr, 0));
    if (t->follow_over) /* the store is out of reach and nothing else comes */
        s_finish(h, c);
}

void ssefeed_start(hub_t *h, conn_t *c, const char *run_id, uint64_t next)
{
    (void)h;
    http_txn_t *t = &c->http;
    snprintf(t->feed_run, sizeof t->feed_run, "%s", run_id);
    seqtrack_init(&t->track, next);
    t->feed_on = 1;
}

void ssefeed_event(hub_t *h, conn_t *c, const orch_stream_t *ev)
{
    http_txn_t *t = &c->http;
    seqtrack_t *tr = &t->track;
    if (!t->feed_on || t->feed_ended || c->closing)
        return;
    if (ev->seq == tr->next && !tr->filling && hub_behind(h, c, ev->json.len + 64)) {
        seqtrack_skip(tr, ev->seq);
        c->drain_wait = 1;
        return;
    }
    switch (seqtrack_live(tr, ev->seq)) {
    case SEQ_SEND:
        if (s_push_event(h, c, ev->seq, ev->type.ptr, ev->type.len, ev->json.ptr, ev->json.len) ==
                0 &&
            ev->terminal) {
            t->feed_ended = 1;
            s_finish(h, c);
        }
        break;
    case SEQ_FILL:
        s_fill(h, c);
        break;
    case SEQ_DROP:
    case SEQ_HOLD:
        break;
    }
}

static int s_is_terminal(const char *type)
{
    return type && (!strcmp(type, "run_done") || !strcmp(type, "run_failed") ||
                    !strcmp(type, "run_cancelled"));
}

void ssefeed_on_fill(hub_t *h, conn_t *c, unsigned status, const char *json, size_t len)
{
    http_txn_t *t = &c->http;
    seqtrack_t *tr = &t->track;
    if (!t->feed_on || t->feed_ended)
        return;
    json_t *doc = json && status == 200 ? json_loadb(json, len, 0, NULL) : NULL;
    json_t *events = json_object_get(doc, "events");
    int ok = json_is_array(events), full = 0, sent = 0;
    int has_more = json_is_true(json_object_get(doc, "has_more"));
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev) {
        json_int_t seq = json_integer_value(json_object_get(ev, "seq"));
        if (seq <= 0 || (uint64_t)seq != tr->next)
            continue;
        const char *type = json_string_value(json_object_get(ev, "type"));
        char *text = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
        if (!text || !type) {
            free(text);
            break;
        }
        if (hub_behind(h, c, strlen(text) + 64) && c->q.bytes > 0) {
            c->need_empty = !sent;
            free(text);
            full = 1;
            break;
        }
        seqtrack_filled(tr, (uint64_t)seq);
        s_push_event(h, c, (uint64_t)seq, type, strlen(type), text, strlen(text));
        sent++;
        free(text);
        if (s_is_terminal(type)) {
            t->feed_ended = 1;
            break;
        }
    }
    json_decref(doc);
    if (t->feed_ended) {
        s_finish(h, c);
        return;
    }
    if (full || (ok && has_more))
        seqtrack_skip(tr, tr->next); /* more is known to exist */
    if (seqtrack_fill_done(tr, ok))
        s_fill(h, c);
    else if (t->follow_over && !tr->filling)
        s_finish(h, c); /* nothing more in the store (the run's end was at or
                           before the client's start), or given up: it resumes */
}

void ssefeed_follow_over(hub_t *h, conn_t *c)
{
    http_txn_t *t = &c->http;
    t->follow_over = 1;
    if (!t->feed_on || t->feed_ended) {
        s_finish(h, c);
        return;
    }
    /* The run ended (or the follow failed) before this stream got its
     * end: the rest, if any, is in the store. */
    if (seqtrack_want_fill(&t->track))
        s_fill(h, c);
}

void ssefeed_drained(hub_t *h, conn_t *c)
{
    http_txn_t *t = &c->http;
    if (!t->feed_on || t->feed_ended || !c->drain_wait || !hub_drained(h, c))
        return;
    c->drain_wait = 0;
    c->need_empty = 0;
    if (seqtrack_behind(&t->track) && seqtrack_want_fill(&t->track))
        s_fill(h, c);
}
