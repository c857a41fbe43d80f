/* bench_call: the cost of an agent call (SPEC §7) through the real
 * map-broker, map-orchestrator (a fresh store) and map-echo --delay-ms 0.
 *
 * This process is one worker_t: a requester of the orchestrator and the
 * native agent "bench-caller" (worker/call.h) at once. Phases:
 *
 *   direct   --runs invokes of echo one after the other (op invoke with
 *            follow, a session each: no history, like a child): latency
 *            from the REQUEST to the first agent_stream_delta event.
 *   call     --runs invokes of bench-caller one after the other; each makes
 *            one call to echo with the same input: latency from call_start
 *            to the child's first agent_stream_delta event (on_event), the
 *            same measure as direct but through op call, a child run and
 *            the call API. The parent answers with the child's output.
 *   calls/s  --parents invokes of bench-caller, --concurrency in flight,
 *            each making --calls calls one after the other: calls ended
 *            CALL_DONE per second of the phase.
 *
 * Every run and call is checked (the child's output equals the input, each
 * parent ends done); an error or a phase that does not end in 120 s fails
 * the bench (exit 1). Last line: {"bench":"call","direct_p50_us",
 * "direct_p99_us","call_p50_us","call_p99_us","calls_per_s",...}. */
#include "worker/call.h"
#include "worker/worker.h"

#include "common/clock.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/mem.h"
#include "proto/agent.h"
#include "proto/orch.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define S_PHASE_MS 120000

typedef struct {
    uint64_t req;          /* the parent's invoke being served (bench-caller) */
    char run_id[AGENT_ID_MAX + 1];
    char token[CALL_TOKEN_MAX + 1];
    long calls_left;
    long made;
    int64_t t0;            /* µs of the current call_start */
    int seen_delta;
} s_job_t;

typedef struct {
    worker_t *w;
    call_set_t *calls;
    mp_buf_t out;
    char *content;
    size_t clen;
    long calls_per_parent;
    /* the direct phase's current invoke */
    uint64_t direct_req;
    int64_t direct_t0;
    int direct_seen;
    /* measures */
    int64_t *lat;          /* µs, one per run of the phase */
    size_t nlat, lat_cap;
    size_t parents_done, calls_done, errors;
    size_t parents_in_flight;
    s_job_t *jobs[1024];   /* allocated one by one: calls hold pointers to them */
    size_t njobs;
} s_bench_t;

static s_bench_t s_b;

static void s_record(int64_t us)
{
    if (s_b.nlat < s_b.lat_cap)
        s_b.lat[s_b.nlat++] = us;
}

/* ---- the agent side: bench-caller --------------------------------------- */

static s_job_t *s_job_of(uint64_t req)
{
    for (size_t i = 0; i < s_b.njobs; i++)
        if (s_b.jobs[i]->req == req)
            return s_b.jobs[i];
    return NULL;
}

static void s_job_free(s_job_t *job)
{
    for (size_t i = 0; i < s_b.njobs; i++)
        if (s_b.jobs[i] == job) {
            s_b.jobs[i] = s_b.jobs[--s_b.njobs];
            break;
        }
    mem_free(job);
}

static void s_call_next(s_job_t *job)
{
    char call_id[32], err[128];
    snprintf(call_id, sizeof call_id, "k%ld", job->made);
    call_spec_t spec = {.run_id = job->run_id, .token = job->token, .agent_id = "echo",
                        .call_id = call_id, .content = s_b.content, .content_len = s_b.clen};
    job->t0 = clock_mono_us();
    job->seen_delta = 0;
    if (!call_start(s_b.calls, &spec, job, err, sizeof err)) {
        fprintf(stderr, "bench_call: call_start: %s\n", err);
        s_b.errors++;
        worker_fail(s_b.w, job->req, "agent_error", err);
        s_job_free(job);
        return;
    }
    job->made++;
}

static void s_on_event(call_set_t *c, uint64_t call, const call_event_t *ev, void *user)
{
    s_job_t *job = user;
    (void)c, (void)call;
    if (ev->delta && !job->seen_delta) {
        job->seen_delta = 1;
        s_record(clock_mono_us() - job->t0);
    }
}

static void s_on_end(call_set_t *c, uint64_t call, const call_end_t *end, void *user)
{
    s_job_t *job = user;
    (void)c, (void)call;
    if (end->outcome != CALL_DONE || end->output_len != s_b.clen ||
        memcmp(end->output, s_b.content, s_b.clen) != 0) {
        fprintf(stderr, "bench_call: call ended %d %s %s\n", (int)end->outcome, end->code,
                end->message);
        s_b.errors++;
    } else {
        s_b.calls_done++;
    }
    if (--job->calls_left > 0 && end->outcome == CALL_DONE) {
        s_call_next(job);
        return;
    }
    mp_buf_reset(&s_b.out);
    agent_encode_done(&s_b.out, "assistant", end->output, end->output_len);
    worker_reply(s_b.w, job->req, s_b.out.data, s_b.out.len);
    s_job_free(job);
}

static void s_on_request(worker_t *w, uint64_t id, const uint8_t *body, size_t len, void *arg)
{
    (void)arg;
    agent_invoke_t inv;
    if (agent_decode_invoke(body, len, &inv) != AGENT_OK || inv.platform.token.len == 0 ||
        s_b.njobs == sizeof s_b.jobs / sizeof *s_b.jobs) {
        worker_fail(w, id, "bad_request", "no platform, or too many jobs");
        s_b.errors++;
        return;
    }
    s_job_t *job = mem_alloc(sizeof *job);
    s_b.jobs[s_b.njobs++] = job;
    job->req = id;
    snprintf(job->run_id, sizeof job->run_id, "%.*s", (int)inv.run_id.len, inv.run_id.ptr);
    snprintf(job->token, sizeof job->token, "%.*s", (int)inv.platform.token.len,
             inv.platform.token.ptr);
    job->calls_left = s_b.calls_per_parent;
    s_call_next(job);
}

static void s_on_cancel(worker_t *w, uint64_t id, void *arg)
{
    (void)w, (void)arg;
    s_job_t *job = s_job_of(id);
    fprintf(stderr, "bench_call: a parent was cancelled\n");
    s_b.errors++;
    if (job)
        s_job_free(job);
}

/* ---- the requester side: invokes ------------------------------------------ */

static uint64_t s_invoke(const char *agent, const char *session)
{
    orch_request_t q;
    memset(&q, 0, sizeof q);
    q.op = (agent_str_t){"invoke", 6};
    q.session_id = (agent_str_t){session, (uint32_t)strlen(session)};
    q.agent_id = (agent_str_t){agent, (uint32_t)strlen(agent)};
    q.role = (agent_str_t){"user", 4};
    q.content = (agent_str_t){s_b.content, (uint32_t)s_b.clen};
    q.follow = 1;
    mp_buf_reset(&s_b.out);
    orch_encode_request(&s_b.out, &q);
    return worker_request(s_b.w, "orchestrator", s_b.out.data, s_b.out.len);
}

static void s_on_stream(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    (void)w, (void)arg;
    if (call_on_stream(s_b.calls, req, body, len))
        return;
    orch_stream_t st;
    if (req == s_b.direct_req && !s_b.direct_seen && orch_decode_stream(body, len, &st) == 0 &&
        !st.accepted && st.type.len == 18 && memcmp(st.type.ptr, "agent_stream_delta", 18) == 0) {
        s_b.direct_seen = 1;
        s_record(clock_mono_us() - s_b.direct_t0);
    }
}

static void s_on_reply(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    (void)w, (void)arg;
    if (call_on_reply(s_b.calls, req, body, len))
        return;
    orch_reply_t rep;
    if (orch_decode_reply(body, len, &rep) != 0 || rep.status != 200 ||
        rep.run_status.len != 4 || memcmp(rep.run_status.ptr, "done", 4) != 0) {
        fprintf(stderr, "bench_call: a run did not end done\n");
        s_b.errors++;
    }
    if (req == s_b.direct_req)
        s_b.direct_req = 0;
    else
        s_b.parents_done++, s_b.parents_in_flight--;
}

static void s_on_error(worker_t *w, uint64_t req, const char *code, const char *message,
                       void *arg)
{
    (void)w, (void)arg;
    if (call_on_error(s_b.calls, req, code, message))
        return;
    fprintf(stderr, "bench_call: request failed: %s %s\n", code, message);
    s_b.errors++;
    if (req == s_b.direct_req)
        s_b.direct_req = 0;
    else
        s_b.parents_done++, s_b.parents_in_flight--;
}

/* ---- the loop ------------------------------------------------------------------ */

static void s_turn(void)
{
    zmq_pollitem_t item = {worker_socket(s_b.w), 0, ZMQ_POLLIN, 0};
    long t = worker_timeout_ms(s_b.w);
    zmq_poll(&item, 1, t < 50 ? t : 50);
    while (worker_process(s_b.w) > 0)
        ;
}

static int s_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double s_pct(double p)
{
    if (s_b.nlat == 0)
        return 0;
    qsort(s_b.lat, s_b.nlat, sizeof *s_b.lat, s_cmp);
    size_t i = (size_t)(p * (double)(s_b.nlat - 1) + 0.5);
    return (double)s_b.lat[i];
}

/* Runs one invoke of agent at a time, runs times; latencies in s_b.lat. */
static int s_sequential(const char *agent, long runs, const char *prefix)
{
    s_b.nlat = 0;
    for (long i = 0; i < runs; i++) {
        /* A session per run: a direct run then has no history, like a
         * child (one session for all would send a growing history with
         * every direct invoke). */
        char session[64];
        snprintf(session, sizeof session, "%s-%ld", prefix, i);
        int64_t deadline = clock_mono_ms() + S_PHASE_MS;
        if (strcmp(agent, "echo") == 0) {
            s_b.direct_seen = 0;
            s_b.direct_t0 = clock_mono_us();
            s_b.direct_req = s_invoke(agent, session);
            while (s_b.direct_req && clock_mono_ms() < deadline)
                s_turn();
            if (s_b.direct_req)
                return -1;
        } else {
            size_t before = s_b.parents_done;
            s_b.parents_in_flight++;
            if (!s_invoke(agent, session))
                return -1;
            while (s_b.parents_done == before && clock_mono_ms() < deadline)
                s_turn();
            if (s_b.parents_done == before)
                return -1;
        }
    }
    return 0;
}

static int s_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        fprintf(stderr, "bench_call: no free port: %s\n", strerror(errno));
        exit(1);
    }
    close(fd);
    return ntohs(a.sin_port);
}

static pid_t s_spawn(char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        fprintf(stderr, "bench_call: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

static void s_reap(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
}

/* The first direct invoke that ends done: the stack is up. */
static int s_wait_stack(void)
{
    int64_t deadline = clock_mono_ms() + 30000;
    while (clock_mono_ms() < deadline) {
        if (!worker_linked(s_b.w)) {
            s_turn();
            continue;
        }
        size_t errors = s_b.errors;
        s_b.direct_t0 = clock_mono_us();
        s_b.direct_req = s_invoke("echo", "warm-up");
        int64_t until = clock_mono_ms() + 2000;
        while (s_b.direct_req && clock_mono_ms() < until)
            s_turn();
        if (!s_b.direct_req && s_b.errors == errors)
            return 0;
        s_b.errors = errors; /* not up yet: unknown agent, no orchestrator */
        usleep(100000);
    }
    return -1;
}

int main(int argc, char **argv)
{
    long runs = 300, words = 10, concurrency = 16, parents = 128, calls = 8;
    const char *bin_dir = MAP_BIN_DIR "/bin";
    flag_t table[] = {
        {"runs", NULL, FLAG_INT, &runs, 1, 1000000, "runs of the latency phases"},
        {"words", NULL, FLAG_INT, &words, 1, 10000, "words (deltas) of each input"},
        {"concurrency", NULL, FLAG_INT, &concurrency, 1, 1000, "parents in flight (calls/s)"},
        {"parents", NULL, FLAG_INT, &parents, 1, 1000000, "parents of the calls/s phase"},
        {"calls", NULL, FLAG_INT, &calls, 1, 32, "calls per parent (calls/s), one after the other"},
        {"bin-dir", NULL, FLAG_STR, &bin_dir, 0, 0, "directory of the map-* programs"},
    };
    char err[256];
    int rc = flags_parse(table, sizeof table / sizeof *table, argc, argv,
                         "bench_call: the cost of an agent call", err, sizeof err);
    if (rc == 1)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "bench_call: %s\n", err);
        return 2;
    }
    log_init("bench_call");
    log_set_level("warn");
    signal(SIGPIPE, SIG_IGN);
    char ep[64], db[128], broker_bin[512], orch_bin[512], echo_bin[512], cap[16];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", s_free_port());
    snprintf(db, sizeof db, "/tmp/bench_call_%d.db", (int)getpid());
    snprintf(broker_bin, sizeof broker_bin, "%s/map-broker", bin_dir);
    snprintf(orch_bin, sizeof orch_bin, "%s/map-orchestrator", bin_dir);
    snprintf(echo_bin, sizeof echo_bin, "%s/map-echo", bin_dir);
    snprintf(cap, sizeof cap, "%ld", concurrency * 2 + 8);
    char *broker_argv[] = {broker_bin, "--endpoint", ep, "--tap", "", "--log-level", "warn", NULL};
    char *orch_argv[] = {orch_bin, "--broker", ep, "--db", db, "--log-level", "warn", NULL};
    char *echo_argv[] = {echo_bin, "--broker", ep, "--delay-ms", "0", "--capacity", cap,
                         "--log-level", "warn", NULL};
    pid_t broker = s_spawn(broker_argv), orch = s_spawn(orch_argv), echo = s_spawn(echo_argv);

    s_b.content = mem_alloc((size_t)words * 8 + 1);
    for (long i = 0; i < words; i++)
        s_b.clen += (size_t)snprintf(s_b.content + s_b.clen, 9, i ? " w%ld" : "w%ld", i % 100000);
    mp_buf_init(&s_b.out, 1u << 20);
    s_b.lat_cap = (size_t)(runs > parents * calls ? runs : parents * calls);
    s_b.lat = mem_alloc(s_b.lat_cap * sizeof *s_b.lat);
    worker_config_t cfg = {.endpoint = ep, .service = "agent.bench-caller",
                           .capacity = (uint32_t)(concurrency + 8)};
    worker_handlers_t h = {.on_request = s_on_request, .on_cancel = s_on_cancel,
                           .on_stream = s_on_stream, .on_reply = s_on_reply,
                           .on_error = s_on_error};
    s_b.w = worker_new(&cfg, &h, NULL, err, sizeof err);
    if (!s_b.w) {
        fprintf(stderr, "bench_call: %s\n", err);
        return 1;
    }
    call_handlers_t ch = {.on_event = s_on_event, .on_end = s_on_end};
    s_b.calls = call_set_new(s_b.w, &ch, 0);
    int failed = s_wait_stack() != 0;
    if (failed)
        fprintf(stderr, "bench_call: the stack did not come up in 30 s\n");
    double d50 = 0, d99 = 0, c50 = 0, c99 = 0, rate = 0;
    if (!failed) {
        printf("bench_call: %ld-word inputs; %ld direct invokes, %ld calls, one at a time; then "
               "%ld parents x %ld calls, %ld parents in flight\n", words, runs, runs, parents,
               calls, concurrency);
        s_b.calls_per_parent = 1;
        failed = s_sequential("echo", runs, "direct") != 0;
        d50 = s_pct(0.50), d99 = s_pct(0.99);
        failed = failed || s_sequential("bench-caller", runs, "call") != 0;
        c50 = s_pct(0.50), c99 = s_pct(0.99);
    }
    if (!failed) {
        s_b.calls_per_parent = calls;
        s_b.calls_done = 0;
        s_b.parents_done = 0;
        long started = 0;
        int64_t t0 = clock_mono_us(), deadline = clock_mono_ms() + S_PHASE_MS;
        while ((long)s_b.parents_done < parents && clock_mono_ms() < deadline) {
            while (started < parents && (long)s_b.parents_in_flight < concurrency) {
                char session[64];
                snprintf(session, sizeof session, "rate-%ld", started);
                if (!s_invoke("bench-caller", session))
                    break;
                started++;
                s_b.parents_in_flight++;
            }
            s_turn();
        }
        double secs = (double)(clock_mono_us() - t0) / 1e6;
        failed = (long)s_b.parents_done < parents;
        rate = secs > 0 ? (double)s_b.calls_done / secs : 0;
    }
    printf("first delta: direct invoke p50 %.0f us p99 %.0f us; through a call p50 %.0f us "
           "p99 %.0f us; %.0f calls/s; errors %zu\n", d50, d99, c50, c99, rate, s_b.errors);
    printf("{\"bench\":\"call\",\"words\":%ld,\"runs\":%ld,\"direct_p50_us\":%.0f,"
           "\"direct_p99_us\":%.0f,\"call_p50_us\":%.0f,\"call_p99_us\":%.0f,"
           "\"calls_per_s\":%.0f,\"parents\":%ld,\"calls_per_parent\":%ld,\"concurrency\":%ld,"
           "\"errors\":%zu}\n",
           words, runs, d50, d99, c50, c99, rate, parents, calls, concurrency, s_b.errors);
    fflush(stdout);
    call_set_destroy(&s_b.calls);
    worker_destroy(&s_b.w);
    s_reap(echo);
    s_reap(orch);
    s_reap(broker);
    char path[160];
    unlink(db);
    snprintf(path, sizeof path, "%s-wal", db);
    unlink(path);
    snprintf(path, sizeof path, "%s-shm", db);
    unlink(path);
    mp_buf_free(&s_b.out);
    mem_free(s_b.lat);
    mem_free(s_b.content);
    return failed || s_b.errors ? 1 : 0;
}
