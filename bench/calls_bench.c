/* calls_bench: the cost of an agent call (SPEC §7) through the whole back
 * end: requester → broker → orchestrator (SQLite) → broker → echo, for a
 * direct invoke and for a call made by a running run's agent.
 *
 * Starts map-broker, map-orchestrator (a fresh database, calls per run
 * unbounded for the bench) and one map-echo (delay 0) itself. This process
 * is both the client and the calling agent: a worker of agent.caller (the
 * worker library) that takes one invoke, keeps it open and, with the token
 * of its platform, sends op call to the orchestrator as a native agent's
 * worker library would.
 *
 *   1. direct: --n sequential invokes of echo with follow; per invoke, the
 *      time from the request to the first agent_stream_delta event.
 *   2. call: --n sequential calls of echo from the caller's run; the same
 *      time, to the child's first delta.
 *   3. throughput: --inflight calls in flight for --seconds; calls/s ended
 *      done (each a child run: row, ~7 events, parent's two events).
 *
 * Last line: {"bench":"calls","direct_first_delta_us":{"p50":…,"p99":…},
 *             "call_first_delta_us":{"p50":…,"p99":…},"calls_per_s":…} */
#include "worker/worker.h"
#include "common/clock.h"
#include "common/flags.h"
#include "common/mem.h"
#include "proto/agent.h"
#include "proto/orch.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#ifndef MAP_BIN_DIR
#define MAP_BIN_DIR "."
#endif

#define S_INFLIGHT_MAX 256

typedef struct {
    worker_t *w;
    /* the caller's own invoke (we serve it) */
    uint64_t parent_req;
    char parent_run[AGENT_ID_MAX + 1];
    char token[AGENT_TOKEN_LEN + 1];
    /* our requests */
    uint64_t reqs[S_INFLIGHT_MAX];
    int64_t sent_us[S_INFLIGHT_MAX];
    int got_delta[S_INFLIGHT_MAX];
    long inflight;
    int64_t *samples;
    long nsamples;
    uint64_t ended_done, ended_other, calls;
    mp_buf_t mp;
} bench_t;

static int64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static pid_t s_spawn(const char *bin, char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(bin, argv);
        _exit(127);
    }
    return pid;
}

static int s_slot(bench_t *b, uint64_t req)
{
    for (long i = 0; i < b->inflight; i++)
        if (b->reqs[i] == req)
            return (int)i;
    return -1;
}

static void s_on_request(worker_t *w, uint64_t id, const uint8_t *body, size_t len, void *arg)
{
    bench_t *b = arg;
    agent_invoke_t inv;
    if (b->parent_req || agent_decode_invoke(body, len, &inv) != AGENT_OK ||
        inv.platform.token.len != AGENT_TOKEN_LEN) {
        worker_fail(w, id, "agent_error", "the bench's caller takes one invoke with a token");
        return;
    }
    b->parent_req = id;
    snprintf(b->parent_run, sizeof b->parent_run, "%.*s", (int)inv.run_id.len, inv.run_id.ptr);
    snprintf(b->token, sizeof b->token, "%.*s", (int)inv.platform.token.len, inv.platform.token.ptr);
}

static void s_on_stream(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    (void)w;
    bench_t *b = arg;
    int i = s_slot(b, req);
    orch_stream_t st;
    if (i < 0 || b->got_delta[i] || orch_decode_stream(body, len, &st) != AGENT_OK || st.accepted)
        return;
    if (st.type.len == 18 && memcmp(st.type.ptr, "agent_stream_delta", 18) == 0) {
        b->got_delta[i] = 1;
        if (b->samples)
            b->samples[b->nsamples++] = s_now_us() - b->sent_us[i];
    }
}

static void s_end(bench_t *b, uint64_t req, int done)
{
    int i = s_slot(b, req);
    if (i < 0)
        return;
    b->reqs[i] = b->reqs[b->inflight - 1];
    b->sent_us[i] = b->sent_us[b->inflight - 1];
    b->got_delta[i] = b->got_delta[b->inflight - 1];
    b->inflight--;
    if (done)
        b->ended_done++;
    else
        b->ended_other++;
}

static void s_on_reply(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    (void)w;
    orch_reply_t r;
    int ok = orch_decode_reply(body, len, &r) == AGENT_OK && r.status == 200 &&
             r.run_status.len == 4 && memcmp(r.run_status.ptr, "done", 4) == 0;
    s_end(arg, req, ok);
}

static void s_on_error(worker_t *w, uint64_t req, const char *code, const char *msg, void *arg)
{
    (void)w;
    fprintf(stderr, "calls_bench: request failed: %s %s\n", code, msg);
    s_end(arg, req, 0);
}

static void s_pump(bench_t *b, long ms)
{
    zmq_pollitem_t item = {worker_socket(b->w), 0, ZMQ_POLLIN, 0};
    long t = worker_timeout_ms(b->w);
    zmq_poll(&item, 1, t < ms ? t : ms);
    worker_process(b->w);
}

static agent_str_t S(const char *s)
{
    return (agent_str_t){s, (uint32_t)strlen(s)};
}

static int s_request(bench_t *b, const orch_request_t *q)
{
    mp_buf_reset(&b->mp);
    if (orch_encode_request(&b->mp, q) != 0 || b->inflight == S_INFLIGHT_MAX)
        return -1;
    uint64_t req = worker_request(b->w, "orchestrator", b->mp.data, b->mp.len);
    if (!req)
        return -1;
    b->reqs[b->inflight] = req;
    b->sent_us[b->inflight] = s_now_us();
    b->got_delta[b->inflight] = 0;
    b->inflight++;
    return 0;
}

static int s_call(bench_t *b)
{
    char call_id[32];
    snprintf(call_id, sizeof call_id, "c%llu", (unsigned long long)++b->calls);
    orch_request_t q = {.op = S("call"), .run_id = S(b->parent_run), .token = S(b->token),
                        .call_id = S(call_id), .agent_id = S("echo"), .role = S("user"),
                        .content = S("hello world")};
    return s_request(b, &q);
}

static int s_invoke(bench_t *b, const char *session, const char *agent)
{
    orch_request_t q = {.op = S("invoke"), .session_id = S(session), .agent_id = S(agent),
                        .role = S("user"), .content = S("hello world"), .follow = 1};
    return s_request(b, &q);
}

static int s_cmp(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, c = *(const int64_t *)y;
    return a < c ? -1 : a > c;
}

static void s_pct(int64_t *v, long n, int64_t *p50, int64_t *p99)
{
    qsort(v, (size_t)n, sizeof *v, s_cmp);
    *p50 = n ? v[n / 2] : 0;
    *p99 = n ? v[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] : 0;
}

/* Waits until nothing of ours is in flight (at most ms). */
static int s_drain(bench_t *b, long ms)
{
    int64_t until = clock_mono_ms() + ms;
    while (b->inflight && clock_mono_ms() < until)
        s_pump(b, 10);
    return b->inflight ? -1 : 0;
}

int main(int argc, char **argv)
{
    long n = 200, inflight = 16, seconds = 5;
    const char *bindir = MAP_BIN_DIR;
    flag_t table[] = {
        {"n", NULL, FLAG_INT, &n, 1, 100000, "sequential invokes, then calls, timed"},
        {"inflight", NULL, FLAG_INT, &inflight, 1, S_INFLIGHT_MAX, "calls in flight (throughput)"},
        {"seconds", NULL, FLAG_INT, &seconds, 1, 3600, "throughput phase duration"},
        {"bin-dir", NULL, FLAG_STR, &bindir, 0, 0, "build directory holding the binaries"},
    };
    char err[256];
    int rc = flags_parse(table, sizeof table / sizeof *table, argc, argv,
                         "calls_bench: the cost of an agent call vs a direct invoke", err,
                         sizeof err);
    if (rc)
        return rc == 1 ? 0 : (fprintf(stderr, "calls_bench: %s\n", err), 2);
    char dir[] = "/tmp/map-calls-bench-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char endpoint[128], db[160], log[160], broker[256], orch[256], echo[256];
    snprintf(endpoint, sizeof endpoint, "ipc://%s/broker.ipc", dir);
    snprintf(db, sizeof db, "%s/map.db", dir);
    snprintf(log, sizeof log, "%s/processes.log", dir);
    snprintf(broker, sizeof broker, "%s/broker/map-broker", bindir);
    snprintf(orch, sizeof orch, "%s/orchestrator/map-orchestrator", bindir);
    snprintf(echo, sizeof echo, "%s/agents/echo/map-echo", bindir);
    pid_t pids[3];
    char *bargv[] = {broker, "--endpoint", endpoint, "--tap", "", "--log-level", "warn", NULL};
    pids[0] = s_spawn(broker, bargv, log);
    char *oargv[] = {orch, "--broker", endpoint, "--db", db, "--log-level", "warn",
                     "--max-calls-per-run", "100000", NULL};
    pids[1] = s_spawn(orch, oargv, log);
    char *eargv[] = {echo, "--broker", endpoint, "--delay-ms", "0", "--capacity", "256",
                     "--log-level", "warn", NULL};
    pids[2] = s_spawn(echo, eargv, log);

    bench_t b;
    memset(&b, 0, sizeof b);
    mp_buf_init(&b.mp, 1 << 20);
    worker_handlers_t h = {.on_request = s_on_request, .on_stream = s_on_stream,
                           .on_reply = s_on_reply, .on_error = s_on_error};
    worker_config_t wc = {.endpoint = endpoint, .service = "agent.caller", .capacity = 1};
    b.w = worker_new(&wc, &h, &b, err, sizeof err);
    if (!b.w) {
        fprintf(stderr, "calls_bench: %s\n", err);
        return 1;
    }
    int failed = 0;
    /* Up: the first invoke of echo that ends done (the services warm up). */
    int64_t until = clock_mono_ms() + 15000;
    while (b.ended_done == 0 && clock_mono_ms() < until) {
        if (!b.inflight && s_invoke(&b, "warm", "echo") != 0)
            usleep(50000);
        s_pump(&b, 20);
    }
    failed |= b.ended_done == 0;
    int64_t *direct = mem_alloc((size_t)n * sizeof *direct);
    int64_t *called = mem_alloc((size_t)n * sizeof *called);
    char session[64];
    b.samples = direct;
    for (long i = 0; i < n && !failed; i++) {
        snprintf(session, sizeof session, "direct%ld", i);
        failed |= s_invoke(&b, session, "echo") != 0 || s_drain(&b, 10000) != 0;
    }
    long ndirect = b.nsamples;
    /* The caller's run: invoked without follow, served by us, kept open. */
    b.samples = NULL;
    if (!failed) {
        orch_request_t q = {.op = S("invoke"), .session_id = S("caller"), .agent_id = S("caller"),
                            .role = S("user"), .content = S("fan out")};
        failed |= s_request(&b, &q) != 0 || s_drain(&b, 10000) != 0;
        until = clock_mono_ms() + 10000;
        while (!b.parent_req && clock_mono_ms() < until)
            s_pump(&b, 10);
        failed |= !b.parent_req;
    }
    b.samples = called;
    b.nsamples = 0;
    for (long i = 0; i < n && !failed; i++)
        failed |= s_call(&b) != 0 || s_drain(&b, 10000) != 0;
    long ncalled = b.nsamples;
    b.samples = NULL;
    /* Throughput: inflight calls at once for the time given. */
    uint64_t done0 = b.ended_done, other0 = b.ended_other;
    int64_t t0 = s_now_us(), stop = clock_mono_ms() + seconds * 1000;
    while (!failed && clock_mono_ms() < stop) {
        while (b.inflight < inflight && s_call(&b) == 0)
            ;
        s_pump(&b, 5);
    }
    double elapsed = (double)(s_now_us() - t0) / 1e6;
    uint64_t done = b.ended_done - done0, other = b.ended_other - other0;
    s_drain(&b, 10000);
    if (b.parent_req) {
        mp_buf_reset(&b.mp);
        agent_encode_done(&b.mp, "assistant", "done", 4);
        worker_reply(b.w, b.parent_req, b.mp.data, b.mp.len);
        for (int i = 0; i < 20; i++)
            s_pump(&b, 10);
    }
    worker_destroy(&b.w);
    for (int i = 2; i >= 0; i--) {
        kill(pids[i], SIGTERM);
        waitpid(pids[i], NULL, 0);
    }
    int64_t d50, d99, c50, c99;
    s_pct(direct, ndirect, &d50, &d99);
    s_pct(called, ncalled, &c50, &c99);
    fprintf(stderr, "direct invokes timed: %ld, calls timed: %ld, throughput calls done %llu, "
                    "not done %llu in %.2f s\n",
            ndirect, ncalled, (unsigned long long)done, (unsigned long long)other, elapsed);
    printf("{\"bench\":\"calls\",\"direct_first_delta_us\":{\"p50\":%lld,\"p99\":%lld},"
           "\"call_first_delta_us\":{\"p50\":%lld,\"p99\":%lld},\"calls_per_s\":%.0f}\n",
           (long long)d50, (long long)d99, (long long)c50, (long long)c99,
           elapsed > 0 ? (double)done / elapsed : 0.0);
    mem_free(direct);
    mem_free(called);
    mp_buf_free(&b.mp);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return failed || other || ndirect != n || ncalled != n ? 1 : 0;
}
