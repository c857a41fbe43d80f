/* conform_agent: the protocol conformance suite's agent, written on the C
 * worker library (worker/worker.h). tests/proc/conform_agent.py is the same
 * agent on the Python SDK (agents/python/mapagent); test_conformance.py
 * drives both with the same scenarios and assertions.
 *
 * The input's content is a command:
 *   stream N   N deltas "w0 ", "w1 ", ... then the reply, their concatenation
 *   fail       ERROR agent_error "boom"
 *   hang       nothing until cancelled; the cancel is logged
 *              "conform.cancelled run=<run_id>"
 *   big N      one delta of N bytes 'x' (over the body maximum: ERROR
 *              agent_error "answer too large", as the SDK does), reply "ok"
 *   hold MS    delta "start" at once, the reply "done" MS later
 *   other      the content as one delta, then as the reply
 * Every request is logged "conform.request run=<run_id> active=<n>".
 *
 * Settings from the environment (flags override): MAP_BROKER,
 * MAP_CONFORM_AGENT (served as agent.<id>), MAP_CONFORM_CAPACITY,
 * MAP_HEARTBEAT_MS, MAP_LIVENESS, MAP_BODY_MAX. */
#include "worker/worker.h"
#include "common/clock.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/sig.h"
#include "proto/agent.h"
#include "proto/frame.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define S_JOBS_MAX 256

typedef struct {
    uint64_t id;             /* broker id; 0: free slot */
    int64_t due;             /* mono ms of the reply; 0: hang */
    char run_id[AGENT_ID_MAX + 1];
} s_job_t;

typedef struct {
    worker_t *w;
    mp_buf_t out;
    s_job_t jobs[S_JOBS_MAX];
    size_t active;
} s_app_t;

static s_job_t *s_job_find(s_app_t *app, uint64_t id)
{
    for (size_t i = 0; i < S_JOBS_MAX; i++)
        if (app->jobs[i].id == id)
            return &app->jobs[i];
    return NULL;
}

static void s_job_end(s_app_t *app, s_job_t *job)
{
    job->id = 0;
    app->active--;
}

/* Streams text as one delta; 0, or -1 after failing the request. */
static int s_delta(s_app_t *app, uint64_t id, const char *text, size_t len)
{
    mp_buf_reset(&app->out);
    if (agent_encode_delta(&app->out, text, len) != 0) {
        worker_fail(app->w, id, "agent_error", "answer too large");
        return -1;
    }
    return worker_stream(app->w, id, app->out.data, app->out.len);
}

static void s_reply(s_app_t *app, uint64_t id, const char *text, size_t len)
{
    mp_buf_reset(&app->out);
    if (agent_encode_done(&app->out, "assistant", text, len) != 0) {
        worker_fail(app->w, id, "agent_error", "answer too large");
        return;
    }
    worker_reply(app->w, id, app->out.data, app->out.len);
}

static long s_arg(const char *content, size_t len, const char *cmd)
{
    size_t n = strlen(cmd);
    char num[24];
    if (len <= n || len - n >= sizeof num || memcmp(content, cmd, n) != 0)
        return -1;
    memcpy(num, content + n, len - n);
    num[len - n] = '\0';
    long v;
    return flags_parse_long(num, 0, 100000000, &v) == 0 ? v : -1;
}

static void s_on_request(worker_t *w, uint64_t id, const uint8_t *body, size_t len, void *arg)
{
    s_app_t *app = arg;
    agent_invoke_t inv;
    if (agent_decode_invoke(body, len, &inv) != AGENT_OK) {
        worker_fail(w, id, "bad_request", "invoke body does not decode");
        return;
    }
    s_job_t *job = s_job_find(app, 0);
    if (!job) {
        worker_fail(w, id, "overloaded", "too many jobs");
        return;
    }
    job->id = id;
    job->due = 0;
    memcpy(job->run_id, inv.run_id.ptr, inv.run_id.len);
    job->run_id[inv.run_id.len] = '\0';
    app->active++;
    LOGI("conform.request", "run=%s active=%zu", job->run_id, app->active);
    const char *c = inv.input.content.ptr;
    size_t clen = inv.input.content.len;
    long n;
    if ((n = s_arg(c, clen, "stream ")) >= 0) {
        char *all = mem_alloc((size_t)n * 12 + 1);
        size_t at = 0;
        for (long i = 0; i < n; i++) {
            char d[16];
            int dl = snprintf(d, sizeof d, "w%ld ", i);
            s_delta(app, id, d, (size_t)dl);
            memcpy(all + at, d, (size_t)dl);
            at += (size_t)dl;
        }
        s_reply(app, id, all, at);
        mem_free(all);
    } else if (clen == 4 && memcmp(c, "fail", 4) == 0) {
        worker_fail(w, id, "agent_error", "boom");
    } else if (clen == 4 && memcmp(c, "hang", 4) == 0) {
        return; /* until on_cancel */
    } else if ((n = s_arg(c, clen, "big ")) >= 0) {
        char *x = mem_alloc((size_t)n + 1);
        memset(x, 'x', (size_t)n);
        if (s_delta(app, id, x, (size_t)n) == 0)
            s_reply(app, id, "ok", 2);
        mem_free(x);
    } else if ((n = s_arg(c, clen, "hold ")) >= 0) {
        s_delta(app, id, "start", 5);
        job->due = clock_mono_ms() + n;
        return;
    } else {
        s_delta(app, id, c, clen);
        s_reply(app, id, c, clen);
    }
    s_job_end(app, job);
}

static void s_on_cancel(worker_t *w, uint64_t id, void *arg)
{
    s_app_t *app = arg;
    (void)w;
    s_job_t *job = s_job_find(app, id);
    if (!job)
        return;
    LOGI("conform.cancelled", "run=%s", job->run_id);
    s_job_end(app, job);
}

/* Replies to the holds that are due; returns ms until the next one, or -1. */
static long s_due(s_app_t *app)
{
    int64_t now = clock_mono_ms();
    long next = -1;
    for (size_t i = 0; i < S_JOBS_MAX; i++) {
        s_job_t *job = &app->jobs[i];
        if (!job->id || !job->due)
            continue;
        if (job->due <= now) {
            s_reply(app, job->id, "done", 4);
            s_job_end(app, job);
        } else if (next < 0 || job->due - now < next) {
            next = (long)(job->due - now);
        }
    }
    return next;
}

int main(int argc, char **argv)
{
    const char *broker = "tcp://127.0.0.1:5555";
    const char *agent = "conform";
    long capacity = 4, heartbeat_ms = 1000, liveness = 3, body_max = FRAME_BODY_MAX_DEFAULT;
    flag_t table[] = {
        {"broker", "MAP_BROKER", FLAG_STR, &broker, 0, 0, "broker endpoint"},
        {"agent", "MAP_CONFORM_AGENT", FLAG_STR, &agent, 0, 0, "agent id (agent.<id>)"},
        {"capacity", "MAP_CONFORM_CAPACITY", FLAG_INT, &capacity, 1, S_JOBS_MAX, "requests at once"},
        {"heartbeat-ms", "MAP_HEARTBEAT_MS", FLAG_INT, &heartbeat_ms, 10, 60000, "heartbeat interval"},
        {"liveness", "MAP_LIVENESS", FLAG_INT, &liveness, 1, 100, "missed heartbeats"},
        {"body-max", "MAP_BODY_MAX", FLAG_INT, &body_max, 1024, 1L << 30, "largest body"},
    };
    char err[256];
    int rc = flags_parse(table, sizeof table / sizeof *table, argc, argv,
                         "conform_agent: the conformance suite's agent on the C worker library",
                         err, sizeof err);
    if (rc == 1)
        return 0;
    log_init("conform");
    if (rc < 0) {
        fprintf(stderr, "conform_agent: %s\n", err);
        return 2;
    }
    char service[FRAME_SERVICE_MAX + 1];
    snprintf(service, sizeof service, "%s%s", AGENT_SERVICE_PREFIX, agent);
    sig_install();
    s_app_t app = {0};
    mp_buf_init(&app.out, (size_t)body_max);
    worker_config_t cfg = {.endpoint = broker,
                           .service = service,
                           .capacity = (uint32_t)capacity,
                           .heartbeat_ms = heartbeat_ms,
                           .liveness = liveness,
                           .body_max = (size_t)body_max};
    worker_handlers_t h = {.on_request = s_on_request, .on_cancel = s_on_cancel};
    app.w = worker_new(&cfg, &h, &app, err, sizeof err);
    if (!app.w) {
        fprintf(stderr, "conform_agent: %s\n", err);
        mp_buf_free(&app.out);
        return 1;
    }
    while (!sig_stop) {
        long timeout = worker_timeout_ms(app.w);
        long due = s_due(&app);
        if (due >= 0 && due < timeout)
            timeout = due;
        zmq_pollitem_t item = {worker_socket(app.w), 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, timeout) < 0 && errno != EINTR)
            break;
        while (worker_process(app.w) > 0 && !sig_stop)
            ;
    }
    worker_destroy(&app.w);
    mp_buf_free(&app.out);
    return 0;
}
