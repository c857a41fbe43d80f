/* fakeio: io.h for the ingress unit tests (one test program includes it
 * once). Requests are recorded decoded; answers are fed by the test. */
#ifndef MAP_FAKEIO_H
#define MAP_FAKEIO_H
#include "hub.h"
#include "io.h"
#include "sessions.h"
#include "proto/orch.h"
#include "tests/support/check.h"

#include <string.h>

#define FAKE_REQ_MAX 256

struct io_t {
    int linked;
    int64_t now;
    uint64_t next_req;
    int refuse;                      /* io_request answers 0 */
    size_t nreq;
    uint64_t req_id[FAKE_REQ_MAX];
    char req_op[FAKE_REQ_MAX][32];
    char req_run[FAKE_REQ_MAX][129];
    char req_session[FAKE_REQ_MAX][129];
    uint64_t req_after[FAKE_REQ_MAX];
    uint64_t req_limit[FAKE_REQ_MAX];
    char req_token[FAKE_REQ_MAX][40];   /* op call: its token, call_id, history count */
    char req_call_id[FAKE_REQ_MAX][129];
    uint32_t req_history[FAKE_REQ_MAX];
    size_t ncancel;
    uint64_t cancelled[FAKE_REQ_MAX];
    int wakes, kills;
};

void io_wake(io_t *io, conn_t *c)
{
    (void)c;
    io->wakes++;
}

void io_kill(io_t *io, conn_t *c)
{
    (void)c;
    io->kills++;
}

/* The string value of key in a request map (out "" when absent); an
 * array under key gives its count in *count. */
static inline void fake_req_str(const void *body, size_t len, const char *key, char *out,
                                size_t cap, uint32_t *count)
{
    mp_reader_t r;
    mp_reader_init(&r, body, len);
    uint32_t n;
    out[0] = '\0';
    CHECK(mp_read_map(&r, &n) == 0);
    for (uint32_t i = 0; i < n; i++) {
        const char *k, *v;
        uint32_t kl, vl;
        CHECK(mp_read_str(&r, &k, &kl, 64) == 0);
        int hit = kl == strlen(key) && !memcmp(k, key, kl);
        if (hit && count && mp_read_array(&r, count) == 0) {
            for (uint32_t j = 0; j < *count; j++)
                CHECK(mp_skip(&r, 4) == 0);
        } else if (hit && !count) {
            CHECK(mp_read_str(&r, &v, &vl, 1 << 20) == 0);
            snprintf(out, cap, "%.*s", (int)vl, v);
        } else {
            CHECK(mp_skip(&r, 4) == 0);
        }
    }
    CHECK(mp_left(&r) == 0);
}

uint64_t io_request(io_t *io, const void *body, size_t len)
{
    if (io->refuse || io->nreq == FAKE_REQ_MAX)
        return 0;
    orch_request_t q;
    CHECK(orch_decode_request(body, len, &q) == AGENT_OK);
    size_t i = io->nreq;
    fake_req_str(body, len, "token", io->req_token[i], sizeof io->req_token[i], NULL);
    fake_req_str(body, len, "call_id", io->req_call_id[i], sizeof io->req_call_id[i], NULL);
    io->req_history[i] = 0;
    char unused[1];
    fake_req_str(body, len, "history", unused, sizeof unused, &io->req_history[i]);
    io->nreq++;
    io->req_id[i] = ++io->next_req;
    snprintf(io->req_op[i], sizeof io->req_op[i], "%.*s", (int)q.op.len, q.op.ptr);
    fake_req_str(body, len, "run_id", io->req_run[i], sizeof io->req_run[i], NULL);
    snprintf(io->req_session[i], sizeof io->req_session[i], "%.*s", (int)q.session_id.len,
             q.session_id.ptr);
    io->req_after[i] = q.after_seq;
    io->req_limit[i] = q.limit;
    return io->req_id[i];
}

void io_cancel(io_t *io, uint64_t req)
{
    if (io->ncancel < FAKE_REQ_MAX)
        io->cancelled[io->ncancel++] = req;
}

int io_linked(io_t *io)
{
    return io->linked;
}

int64_t io_now_ms(io_t *io)
{
    return io->now;
}

/* A hub on a fresh fake io, with small limits. */
static inline void fake_hub(hub_t *h, io_t *io)
{
    memset(h, 0, sizeof *h);
    memset(io, 0, sizeof *io);
    io->linked = 1;
    io->now = 1000;
    h->io = io;
    h->cfg.max_body = 1 << 16;
    h->cfg.max_ws_message = 1 << 16;
    h->cfg.max_outq = 1 << 16;
    h->cfg.request_timeout_ms = 1000;
    h->cfg.max_requests_per_conn = 8;
    h->pending = pending_new(1000, 8);
    h->sessions = sessions_new(h);
    mp_buf_init(&h->mp, 1 << 17);
    char err[128];
    CHECK(policy_init(&h->policy, "", "127.0.0.1", NULL, 0, err, sizeof err) == 0);
}

static inline void fake_hub_free(hub_t *h)
{
    sessions_destroy(&h->sessions);
    pending_destroy(&h->pending);
    mp_buf_free(&h->mp);
}

/* The last request's index, checking its op. */
static inline size_t fake_last(const io_t *io, const char *op)
{
    CHECK(io->nreq > 0);
    CHECK(!strcmp(io->req_op[io->nreq - 1], op));
    return io->nreq - 1;
}

/* Everything queued on c as one string (the queue is emptied). */
static inline void fake_drain(conn_t *c, sbuf_t *out)
{
    sbuf_reset(out);
    outq_msg_t *m;
    while ((m = outq_take(&c->q))) {
        sbuf_cat(out, outq_data(&c->q, m), m->len);
        outq_msg_free(&*m);
    }
    sbuf_cstr(out);
}

/* A REPLY as the orchestrator sends it. */
static inline void fake_reply(hub_reply_t *out, unsigned status, const char *json)
{
    mp_buf_t b;
    mp_buf_init(&b, 1 << 20);
    /* The typed fields, as the orchestrator fills them, from the JSON. */
    static char run[129], st[16], ses[129];
    run[0] = st[0] = ses[0] = '\0';
    const char *k;
    if ((k = strstr(json, "\"run_id\":\"")))
        sscanf(k + 10, "%128[^\"]", run);
    if ((k = strstr(json, "\"status\":\"")))
        sscanf(k + 10, "%15[^\"]", st);
    if ((k = strstr(json, "\"session_id\":\"")))
        sscanf(k + 14, "%128[^\"]", ses);
    orch_reply_t r = {.status = status, .json = {json, (uint32_t)strlen(json)},
                      .run_id = {run, (uint32_t)strlen(run)},
                      .run_status = {st, (uint32_t)strlen(st)},
                      .session_id = {ses, (uint32_t)strlen(ses)}};
    CHECK(orch_encode_reply(&b, &r) == 0);
    static uint8_t copy[1 << 20];
    memcpy(copy, b.data, b.len);
    hub_decode_reply(copy, b.len, out);
    mp_buf_free(&b);
}

#endif
