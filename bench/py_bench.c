/* bench_py: deltas per second of the Python echo agent (the mapagent SDK,
 * agents/python/examples/py_echo.py) against map-echo, in one run, through
 * the real map-broker.
 *
 * Processes: map-broker, map-echo --delay-ms 0 (agent "bench-c") and
 * py_echo.py with MAP_PY_ECHO_DELAY_MS=0 (agent "bench-py"), both at
 * capacity --concurrency. This process is the requester on a raw DEALER,
 * the same for both agents, so the difference is the agents'. Runs have
 * --words words (100: a paragraph, the run shape of bench_store, bench_edge
 * and bench_bridge), each word one delta. Phases: one warm-up run per agent,
 * then --rounds rounds of map-echo then Python, each with --concurrency runs
 * in flight until its runs are done (--runs for map-echo, --py-runs for
 * Python, so that both phases last long enough to measure). The figures are
 * medians over the rounds, the ratio the median of the rounds' ratios.
 * Every run is checked: exactly --words deltas joined equal to the input,
 * and the reply's content equal to the input; a mismatch, an error or a run
 * that does not end in 120 s fails the bench (exit 1).
 *
 * Last line: {"bench":"py","deltas_per_s_py":..,"deltas_per_s_c":..,
 * "ratio":..,"run_p50_us_py":..,"run_p50_us_c":..,...}. */
#include "common/clock.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/mem.h"
#include "proto/agent.h"
#include "proto/frame.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define S_ROUNDS_MAX 20

typedef struct {
    int64_t t0, t_done;  /* µs */
    size_t deltas, matched;
    int ok, failed;
} s_run_t;

typedef struct {
    void *sock;
    uint64_t base;       /* request id of runs[0] */
    s_run_t *runs;
    size_t nruns;
    char *content;
    size_t clen, words;
    size_t finished, errors, unknown;
    int64_t last_hb;
} s_req_t;

static pid_t s_spawn(char *const argv[], char *const envp[])
{
    pid_t pid = fork();
    if (pid == 0) {
        if (envp)
            for (size_t i = 0; envp[i]; i++)
                putenv(envp[i]);
        execv(argv[0], argv);
        fprintf(stderr, "bench_py: cannot run %s: %s\n", argv[0], strerror(errno));
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

static void s_send(void *sock, const uint8_t *hdr, size_t hlen, const void *body, size_t blen)
{
    if (zmq_send(sock, hdr, hlen, body ? ZMQ_SNDMORE : 0) < 0 ||
        (body && zmq_send(sock, body, blen, 0) < 0)) {
        fprintf(stderr, "bench_py: send failed: %s\n", zmq_strerror(errno));
        exit(1);
    }
}

static void s_heartbeat(s_req_t *r)
{
    int64_t now = clock_mono_ms();
    if (now - r->last_hb < 300)
        return;
    r->last_hb = now;
    uint8_t hdr[16];
    size_t n = frame_encode_id(FRAME_HEARTBEAT, 0, hdr, sizeof hdr);
    s_send(r->sock, hdr, n, NULL, 0);
}

static void s_invoke(s_req_t *r, size_t i, const char *agent, mp_buf_t *b)
{
    char run_id[32], service[FRAME_SERVICE_MAX + 1];
    snprintf(run_id, sizeof run_id, "run_%zu", i);
    snprintf(service, sizeof service, "%s%s", AGENT_SERVICE_PREFIX, agent);
    agent_invoke_t inv = {0};
    inv.run_id = (agent_str_t){run_id, (uint32_t)strlen(run_id)};
    inv.session_id = (agent_str_t){"bench", 5};
    inv.agent_id = (agent_str_t){agent, (uint32_t)strlen(agent)};
    inv.input.role = (agent_str_t){"user", 4};
    inv.input.content = (agent_str_t){r->content, (uint32_t)r->clen};
    mp_buf_reset(b);
    agent_encode_invoke(b, &inv, NULL, 0);
    frame_t f = {.type = FRAME_REQUEST, .id = r->base + i, .service = service,
                 .service_len = (uint32_t)strlen(service)};
    uint8_t hdr[FRAME_HEADER_MAX];
    size_t n = frame_encode(&f, hdr, sizeof hdr);
    r->runs[i].t0 = clock_mono_us();
    s_send(r->sock, hdr, n, b->data, b->len);
}

static void s_on_frame(s_req_t *r, const frame_t *f, const uint8_t *body, size_t blen, int64_t now)
{
    if (f->id < r->base || f->id >= r->base + r->nruns)
        return;
    s_run_t *run = &r->runs[f->id - r->base];
    agent_str_t d;
    agent_msg_t out;
    if (run->ok || run->failed) {
        r->errors++; /* a frame after the final */
        return;
    }
    if (f->type == FRAME_STREAM && agent_decode_delta(body, blen, &d) == AGENT_OK) {
        run->deltas++;
        if (run->matched + d.len > r->clen || memcmp(r->content + run->matched, d.ptr, d.len))
            run->failed = 1;
        run->matched += d.len;
        return;
    }
    if (f->type == FRAME_REPLY && agent_decode_done(body, blen, &out) == AGENT_OK) {
        run->t_done = now;
        run->ok = out.content.len == r->clen && !memcmp(out.content.ptr, r->content, r->clen) &&
                  run->deltas == r->words && run->matched == r->clen;
        run->failed = !run->ok;
    } else {
        if (f->type == FRAME_ERROR && f->code_len == 15 && !memcmp(f->code, "unknown_service", 15))
            r->unknown++;
        else if (f->type == FRAME_ERROR)
            fprintf(stderr, "bench_py: run %llu: %.*s: %.*s\n",
                    (unsigned long long)(f->id - r->base), (int)f->code_len, f->code,
                    (int)f->message_len, f->message);
        run->failed = 1;
    }
    r->finished++;
    if (run->failed)
        r->errors++;
}

/* Receives what is ready (waiting up to timeout_ms for the first). */
static void s_receive(s_req_t *r, long timeout_ms)
{
    zmq_pollitem_t it = {.socket = r->sock, .events = ZMQ_POLLIN};
    if (zmq_poll(&it, 1, timeout_ms) <= 0)
        return;
    for (;;) {
        zmq_msg_t hdr, body;
        zmq_msg_init(&hdr);
        if (zmq_msg_recv(&hdr, r->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&hdr);
            return;
        }
        int more = zmq_msg_more(&hdr);
        zmq_msg_init(&body);
        if (more)
            zmq_msg_recv(&body, r->sock, 0);
        frame_t f;
        if (frame_decode(zmq_msg_data(&hdr), zmq_msg_size(&hdr), more, &f) == FRAME_OK)
            s_on_frame(r, &f, zmq_msg_data(&body), zmq_msg_size(&body), clock_mono_us());
        zmq_msg_close(&hdr);
        zmq_msg_close(&body);
    }
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double s_median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, s_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

typedef struct {
    double deltas_per_s;
    double run_p50_us;
    size_t errors;
} s_result_t;

/* n runs of agent, at most inflight at once. */
static s_result_t s_phase(s_req_t *r, size_t n, size_t inflight, const char *agent, mp_buf_t *b)
{
    r->base += r->nruns + 1;
    r->runs = mem_realloc(r->runs, n * sizeof *r->runs);
    memset(r->runs, 0, n * sizeof *r->runs);
    r->nruns = n;
    r->finished = r->errors = r->unknown = 0;
    size_t sent = 0;
    int64_t t0 = clock_mono_us(), deadline = clock_mono_ms() + 120000;
    while (r->finished < n) {
        while (sent < n && sent - r->finished < inflight)
            s_invoke(r, sent++, agent, b);
        s_receive(r, 100);
        s_heartbeat(r);
        if (clock_mono_ms() > deadline) {
            fprintf(stderr, "bench_py: %s: only %zu of %zu runs ended in 120 s\n", agent,
                    r->finished, n);
            exit(1);
        }
    }
    int64_t elapsed = clock_mono_us() - t0;
    double *done = mem_alloc(n * sizeof *done);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        done[i] = (double)(r->runs[i].t_done - r->runs[i].t0);
        total += r->runs[i].deltas;
    }
    s_result_t res = {.errors = r->errors};
    res.run_p50_us = s_median(done, n);
    res.deltas_per_s = elapsed > 0 ? (double)total * 1e6 / (double)elapsed : 0;
    mem_free(done);
    return res;
}

/* Asks agent one run at a time until one is served (it is still starting). */
static void s_wait_agent(s_req_t *r, const char *agent, mp_buf_t *b)
{
    int64_t deadline = clock_mono_ms() + 30000;
    while (clock_mono_ms() < deadline) {
        s_result_t res = s_phase(r, 1, 1, agent, b);
        if (res.errors == 0)
            return;
        if (r->unknown == 0) {
            fprintf(stderr, "bench_py: %s fails its first run\n", agent);
            exit(1);
        }
        usleep(50000);
    }
    fprintf(stderr, "bench_py: agent %s did not come up in 30 s\n", agent);
    exit(1);
}

static int s_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        fprintf(stderr, "bench_py: no free port: %s\n", strerror(errno));
        exit(1);
    }
    close(fd);
    return ntohs(a.sin_port);
}

int main(int argc, char **argv)
{
    long words = 100, concurrency = 32, runs = 20000, py_runs = 2000, rounds = 3;
    const char *bin_dir = MAP_BIN_DIR "/bin";
    const char *py_echo = MAP_SOURCE_DIR "/agents/python/examples/py_echo.py";
    flag_t table[] = {
        {"words", NULL, FLAG_INT, &words, 1, 10000, "words (deltas) per run"},
        {"concurrency", NULL, FLAG_INT, &concurrency, 1, 1000, "runs in flight, and each agent's capacity"},
        {"runs", NULL, FLAG_INT, &runs, 1, 10000000, "map-echo runs per round"},
        {"py-runs", NULL, FLAG_INT, &py_runs, 1, 10000000, "Python runs per round"},
        {"rounds", NULL, FLAG_INT, &rounds, 1, S_ROUNDS_MAX, "rounds of map-echo then Python"},
        {"bin-dir", NULL, FLAG_STR, &bin_dir, 0, 0, "directory of map-broker and map-echo"},
        {"py-echo", NULL, FLAG_STR, &py_echo, 0, 0, "the Python echo agent"},
    };
    char err[256];
    int rc = flags_parse(table, sizeof table / sizeof *table, argc, argv,
                         "bench_py: deltas/s of the Python echo agent against map-echo", err,
                         sizeof err);
    if (rc == 1)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "bench_py: %s\n", err);
        return 2;
    }
    log_init("bench_py");
    log_set_level("warn");
    char ep[64], broker_bin[512], echo_bin[512], cap[16], log_env[] = "MAP_LOG_LEVEL=warn";
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", s_free_port());
    snprintf(broker_bin, sizeof broker_bin, "%s/map-broker", bin_dir);
    snprintf(echo_bin, sizeof echo_bin, "%s/map-echo", bin_dir);
    snprintf(cap, sizeof cap, "%ld", concurrency);
    char *broker_argv[] = {broker_bin, "--endpoint", ep, "--tap", "", "--log-level", "warn", NULL};
    char *echo_argv[] = {echo_bin, "--broker", ep, "--agent", "bench-c", "--delay-ms", "0",
                         "--capacity", cap, "--log-level", "warn", NULL};
    char *py_argv[] = {"/usr/bin/python3", (char *)py_echo, NULL};
    char env_broker[96], env_cap[48];
    snprintf(env_broker, sizeof env_broker, "MAP_BROKER=%s", ep);
    snprintf(env_cap, sizeof env_cap, "MAP_PY_ECHO_CAPACITY=%ld", concurrency);
    char *py_env[] = {env_broker, env_cap, "MAP_PY_ECHO_AGENT=bench-py", "MAP_PY_ECHO_DELAY_MS=0",
                      log_env, NULL};
    signal(SIGPIPE, SIG_IGN);
    pid_t broker = s_spawn(broker_argv, NULL);
    pid_t echo = s_spawn(echo_argv, NULL);
    pid_t py = s_spawn(py_argv, py_env);

    void *ctx = zmq_ctx_new();
    s_req_t r = {0};
    r.sock = zmq_socket(ctx, ZMQ_DEALER);
    int hwm = 1000000, zero = 0;
    zmq_setsockopt(r.sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(r.sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(r.sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_connect(r.sock, ep);
    uint8_t hdr[FRAME_HEADER_MAX];
    frame_t ready = {.type = FRAME_READY, .service = "bench-py-requester", .service_len = 18};
    s_send(r.sock, hdr, frame_encode(&ready, hdr, sizeof hdr), NULL, 0);
    r.words = (size_t)words;
    r.content = mem_alloc((size_t)words * 8 + 1);
    for (long i = 0; i < words; i++)
        r.clen += (size_t)snprintf(r.content + r.clen, 9, i ? " w%ld" : "w%ld", i % 100000);
    mp_buf_t b;
    mp_buf_init(&b, 1u << 20);
    s_wait_agent(&r, "bench-c", &b);
    s_wait_agent(&r, "bench-py", &b);

    double c_rate[S_ROUNDS_MAX], py_rate[S_ROUNDS_MAX], ratio[S_ROUNDS_MAX];
    double c_p50[S_ROUNDS_MAX], py_p50[S_ROUNDS_MAX];
    size_t errors = 0;
    printf("bench_py: %ld-word runs, %ld in flight, %ld rounds of %ld map-echo runs then %ld "
           "Python runs\n", words, concurrency, rounds, runs, py_runs);
    for (long i = 0; i < rounds; i++) {
        s_result_t c = s_phase(&r, (size_t)runs, (size_t)concurrency, "bench-c", &b);
        s_result_t p = s_phase(&r, (size_t)py_runs, (size_t)concurrency, "bench-py", &b);
        c_rate[i] = c.deltas_per_s;
        py_rate[i] = p.deltas_per_s;
        ratio[i] = c.deltas_per_s > 0 ? p.deltas_per_s / c.deltas_per_s : 0;
        c_p50[i] = c.run_p50_us;
        py_p50[i] = p.run_p50_us;
        errors += c.errors + p.errors;
        printf("round %ld: map-echo %.0f deltas/s (run p50 %.0f us), py-echo %.0f deltas/s "
               "(run p50 %.0f us), ratio %.3f\n", i + 1, c.deltas_per_s, c.run_p50_us,
               p.deltas_per_s, p.run_p50_us, ratio[i]);
    }
    double mc = s_median(c_rate, (size_t)rounds), mp = s_median(py_rate, (size_t)rounds);
    double mr = s_median(ratio, (size_t)rounds);
    double pc = s_median(c_p50, (size_t)rounds), pp = s_median(py_p50, (size_t)rounds);
    printf("median: map-echo %.0f deltas/s, py-echo %.0f deltas/s, py/C %.3f; run p50 %.0f us "
           "vs %.0f us; errors %zu\n", mc, mp, mr, pc, pp, errors);
    printf("{\"bench\":\"py\",\"words\":%ld,\"concurrency\":%ld,\"rounds\":%ld,"
           "\"deltas_per_s_py\":%.0f,\"deltas_per_s_c\":%.0f,\"ratio\":%.4f,"
           "\"run_p50_us_py\":%.0f,\"run_p50_us_c\":%.0f,\"errors\":%zu}\n",
           words, concurrency, rounds, mp, mc, mr, pp, pc, errors);
    fflush(stdout);
    zmq_close(r.sock);
    zmq_ctx_term(ctx);
    s_reap(py);
    s_reap(echo);
    s_reap(broker);
    mem_free(r.runs);
    mem_free(r.content);
    mp_buf_free(&b);
    return errors ? 1 : 0;
}
