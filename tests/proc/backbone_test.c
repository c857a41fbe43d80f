/* backbone_test: the broker, the worker library and map-echo as real
 * processes on loopback. One case per run:
 *
 *   backbone_test CASE BROKER_BIN ECHO_BIN
 *
 *   spread   3 echo workers serve 1,000 requests from one requester with
 *            many in flight: every answer complete and exact, every worker
 *            served at least 20% (each echo reports served=N at SIGTERM).
 *   kill     one echo is SIGKILLed mid-stream: its requests end with
 *            worker_lost within the liveness window, the others complete;
 *            then one is SIGTERMed mid-stream: its requests end with
 *            worker_stopping, it exits 0.
 *   restart  the broker is SIGKILLed and started again on the same port:
 *            in-flight requests end with broker_lost, and the workers and
 *            the requester are back, serving, within 3 s.
 *   garbage  a raw DEALER sends random bytes, truncated and wrong-version
 *            frames, extra parts and oversized headers between valid
 *            requests: every valid request completes, the broker lives.
 *
 * Processes are started by pid and stopped by pid even on failure (proc.c).
 * Waits poll a condition until a deadline; the only time bounds asserted
 * are the ones the contract names (liveness window, 3 s restart). */
#include "tests/support/proc.h"

#include "worker/worker.h"
#include "common/hmap.h"
#include "common/log.h"
#include "common/mem.h"
#include "proto/agent.h"
#include "proto/frame.h"
#include "proto/mp.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s (logs in %s)\n", __FILE__, __LINE__, \
                    #cond, s_dir);                                                   \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

#define S_HEARTBEAT_MS 200
#define S_LIVENESS 3
#define S_SERVICE "agent.echo"
#define S_INPUT_MAX 4096

static char s_dir[64] = "?";   /* logs of this run */
static const char *s_broker_bin;
static const char *s_echo_bin;
static char s_endpoint[64];    /* tcp://127.0.0.1:PORT */
static char s_tap[64];
static uint64_t s_rand_state = 0x9e3779b97f4a7c15ULL;

static uint64_t s_rand(void)
{
    uint64_t x = s_rand_state; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return s_rand_state = x;
}

/* ---- processes ------------------------------------------------------------------ */

static pid_t s_start_broker(void)
{
    char hb[16], lv[16], log[128];
    snprintf(hb, sizeof hb, "%d", S_HEARTBEAT_MS);
    snprintf(lv, sizeof lv, "%d", S_LIVENESS);
    snprintf(log, sizeof log, "%s/broker.log", s_dir);
    char *argv[] = {(char *)s_broker_bin, "--endpoint", s_endpoint, "--tap", s_tap,
                    "--heartbeat-ms", hb, "--liveness", lv, "--log-level", "warn", NULL};
    pid_t pid = proc_spawn(argv, NULL, log);
    CHECK(pid > 0);
    return pid;
}

static pid_t s_start_echo(int index, long delay_ms, long capacity)
{
    char delay[16], cap[16], hb[16], lv[16], log[128];
    snprintf(delay, sizeof delay, "%ld", delay_ms);
    snprintf(cap, sizeof cap, "%ld", capacity);
    snprintf(hb, sizeof hb, "%d", S_HEARTBEAT_MS);
    snprintf(lv, sizeof lv, "%d", S_LIVENESS);
    snprintf(log, sizeof log, "%s/echo%d.log", s_dir, index);
    char *argv[] = {(char *)s_echo_bin, "--broker", s_endpoint, "--delay-ms", delay,
                    "--capacity", cap, "--heartbeat-ms", hb, "--liveness", lv,
                    "--log-level", "info", NULL};
    pid_t pid = proc_spawn(argv, NULL, log);
    CHECK(pid > 0);
    return pid;
}

/* Reads served=N from the echo's "echo.stop" line. Returns -1 if absent. */
static long s_echo_served(int index)
{
    char path[128], buf[65536];
    snprintf(path, sizeof path, "%s/echo%d.log", s_dir, index);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *line = strstr(buf, "echo.stop");
    const char *served = line ? strstr(line, " served=") : NULL;
    if (!served)
        return -1;
    return strtol(served + 8, NULL, 10);
}

/* ---- the requester ---------------------------------------------------------------- */

typedef struct {
    char input[S_INPUT_MAX];
    size_t input_len;
    char got[S_INPUT_MAX];   /* deltas so far */
    size_t got_len;
    int deltas;
    int ended;               /* 1 reply, 2 error */
    int bad;                 /* a frame that does not fit the input */
    char code[FRAME_CODE_MAX + 1];
    long long t_end;
} s_req_t;

typedef struct {
    worker_t *w;
    hmap_t *reqs;            /* id → s_req_t */
    s_req_t *all;            /* every request made, in order */
    size_t count, cap;
    uint64_t services_id;    /* SERVICES in flight */
    long echo_workers;       /* from the last SERVICES answer, -1 unknown */
    int links_up, links_lost;
} s_client_t;

static void s_on_stream(worker_t *w, uint64_t id, const uint8_t *body, size_t len, void *arg)
{
    s_client_t *c = arg;
    s_req_t *r = hmap_get(c->reqs, id);
    agent_str_t d;
    if (!r || r->ended || agent_decode_delta(body, len, &d) != AGENT_OK || d.len == 0 ||
        r->got_len + d.len > r->input_len ||
        memcmp(r->input + r->got_len, d.ptr, d.len) != 0) {
        if (r)
            r->bad = 1;
        fprintf(stderr, "bad delta for request %llu\n", (unsigned long long)id);
        return;
    }
    memcpy(r->got + r->got_len, d.ptr, d.len);
    r->got_len += d.len;
    r->deltas++;
}

/* SERVICES answer: [[service, workers, capacity, free, queued], ...]. */
static void s_read_services(s_client_t *c, const uint8_t *body, size_t len)
{
    mp_reader_t rd;
    mp_reader_init(&rd, body, len);
    uint32_t n;
    CHECK(mp_read_array(&rd, &n) == 0);
    c->echo_workers = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t fields;
        const char *name;
        uint32_t name_len;
        uint64_t workers, v;
        CHECK(mp_read_array(&rd, &fields) == 0 && fields == 5);
        CHECK(mp_read_str(&rd, &name, &name_len, FRAME_SERVICE_MAX) == 0);
        CHECK(mp_read_uint(&rd, &workers) == 0);
        for (int k = 0; k < 3; k++)
            CHECK(mp_read_uint(&rd, &v) == 0);
        if (name_len == strlen(S_SERVICE) && memcmp(name, S_SERVICE, name_len) == 0)
            c->echo_workers = (long)workers;
    }
    CHECK(mp_left(&rd) == 0);
}

static void s_on_reply(worker_t *w, uint64_t id, const uint8_t *body, size_t len, void *arg)
{
    s_client_t *c = arg;
    if (id == c->services_id) {
        c->services_id = 0;
        s_read_services(c, body, len);
        return;
    }
    s_req_t *r = hmap_del(c->reqs, id);
    CHECK(r != NULL);
    agent_msg_t out;
    r->ended = 1;
    r->t_end = proc_now_ms();
    if (agent_decode_done(body, len, &out) != AGENT_OK || out.content.len != r->input_len ||
        memcmp(out.content.ptr, r->input, r->input_len) != 0 || r->got_len != r->input_len) {
        r->bad = 1;
        fprintf(stderr, "bad reply for request %llu\n", (unsigned long long)id);
    }
}

static void s_on_error(worker_t *w, uint64_t id, const char *code, const char *message,
                       void *arg)
{
    s_client_t *c = arg;
    if (id == c->services_id) {
        c->services_id = 0;
        return;
    }
    s_req_t *r = hmap_del(c->reqs, id);
    CHECK(r != NULL);
    r->ended = 2;
    r->t_end = proc_now_ms();
    snprintf(r->code, sizeof r->code, "%s", code);
}

static void s_on_link(worker_t *w, int up, void *arg)
{
    s_client_t *c = arg;
    if (up)
        c->links_up++;
    else
        c->links_lost++;
}

static void s_client_init(s_client_t *c, size_t max_requests)
{
    memset(c, 0, sizeof *c);
    c->reqs = hmap_new(max_requests + 1);
    c->cap = max_requests;
    c->all = mem_alloc(max_requests * sizeof *c->all);
    c->echo_workers = -1;
    worker_config_t cfg = {.endpoint = s_endpoint,
                           .service = "test.client",
                           .capacity = 0,
                           .heartbeat_ms = S_HEARTBEAT_MS,
                           .liveness = S_LIVENESS};
    worker_handlers_t h = {.on_stream = s_on_stream,
                           .on_reply = s_on_reply,
                           .on_error = s_on_error,
                           .on_link = s_on_link};
    char err[256];
    c->w = worker_new(&cfg, &h, c, err, sizeof err);
    if (!c->w)
        fprintf(stderr, "worker_new: %s\n", err);
    CHECK(c->w != NULL);
}

static void s_client_free(s_client_t *c)
{
    worker_destroy(&c->w);
    hmap_destroy(&c->reqs);
    mem_free(c->all);
}

/* Runs the requester's loop for up to ms milliseconds. */
static void s_pump(s_client_t *c, long ms)
{
    long timeout = worker_timeout_ms(c->w);
    if (timeout > ms)
        timeout = ms;
    zmq_pollitem_t item = {worker_socket(c->w), 0, ZMQ_POLLIN, 0};
    zmq_poll(&item, 1, timeout);
    while (worker_process(c->w) > 0)
        ;
}

/* Random words: ASCII, UTF-8, separated by spaces, tabs, newlines. */
static size_t s_make_input(char *out, size_t cap, int words)
{
    static const char *vocab[] = {"alpha", "beta", "γάμμα", "日本語", "🙂", "x", "quick",
                                  "naïve", "z", "lorem", "ipsum", "\xc2\xa0nbsp"};
    static const char *seps[] = {" ", " ", " ", "  ", "\t", "\n", " \t ", "\r\n"};
    size_t n = 0;
    if (s_rand() % 4 == 0)
        n += (size_t)snprintf(out + n, cap - n, "  ");
    for (int i = 0; i < words; i++) {
        const char *sep = i ? seps[s_rand() % 8] : "";
        const char *word = vocab[s_rand() % 12];
        int k = snprintf(out + n, cap - n, "%s%s", sep, word);
        CHECK(k > 0 && (size_t)k < cap - n);
        n += (size_t)k;
    }
    if (s_rand() % 4 == 0 && n + 2 < cap)
        n += (size_t)snprintf(out + n, cap - n, " \n");
    return n;
}

static uint64_t s_send(s_client_t *c, int words)
{
    CHECK(c->count < c->cap);
    s_req_t *r = &c->all[c->count];
    memset(r, 0, sizeof *r);
    r->input_len = s_make_input(r->input, sizeof r->input, words);
    uint8_t body[S_INPUT_MAX + 256];
    mp_buf_t b;
    mp_buf_init(&b, sizeof body);
    agent_invoke_t inv = {0};
    inv.run_id = (agent_str_t){"run_test", 8};
    inv.session_id = (agent_str_t){"ses_test", 8};
    inv.agent_id = (agent_str_t){"echo", 4};
    inv.input.role = (agent_str_t){"user", 4};
    inv.input.content = (agent_str_t){r->input, (uint32_t)r->input_len};
    CHECK(agent_encode_invoke(&b, &inv, NULL, 0) == 0);
    uint64_t id = worker_request(c->w, S_SERVICE, b.data, b.len);
    mp_buf_free(&b);
    if (id) {
        CHECK(hmap_put(c->reqs, id, r) == 0);
        c->count++;
    }
    return id;
}

typedef struct {
    s_client_t *c;
    long workers;
} s_workers_arg_t;

/* Condition: SERVICES says agent.echo has the wanted workers. */
static int s_has_workers(void *arg)
{
    s_workers_arg_t *a = arg;
    s_client_t *c = a->c;
    if (worker_linked(c->w) && !c->services_id && c->echo_workers != a->workers)
        c->services_id = worker_services(c->w);
    s_pump(c, 20);
    return c->echo_workers == a->workers && !c->services_id;
}

static void s_wait_workers(s_client_t *c, long workers, long timeout_ms)
{
    s_workers_arg_t a = {c, workers};
    c->echo_workers = -1;
    int rc = proc_wait_until(s_has_workers, &a, timeout_ms);
    if (rc != 0)
        fprintf(stderr, "agent.echo workers: %ld, want %ld\n", c->echo_workers, workers);
    CHECK(rc == 0);
}

static int s_all_ended(void *arg)
{
    s_client_t *c = arg;
    s_pump(c, 20);
    return hmap_size(c->reqs) == 0;
}

static int s_all_streaming(void *arg)
{
    s_client_t *c = arg;
    s_pump(c, 20);
    for (size_t i = 0; i < c->count; i++)
        if (!c->all[i].ended && c->all[i].deltas == 0)
            return 0;
    return 1;
}

/* Sends n requests of words words, at most inflight at once, and waits for
 * all of them. */
static void s_run_batch(s_client_t *c, size_t n, size_t inflight, int words_min, int words_span,
                        long timeout_ms)
{
    size_t sent = 0;
    long long deadline = proc_now_ms() + timeout_ms;
    while ((sent < n || hmap_size(c->reqs) > 0) && proc_now_ms() < deadline) {
        while (sent < n && hmap_size(c->reqs) < inflight) {
            CHECK(s_send(c, words_min + (int)(s_rand() % (uint64_t)words_span)) != 0);
            sent++;
        }
        s_pump(c, 20);
    }
    CHECK(sent == n);
    CHECK(hmap_size(c->reqs) == 0);
}

static void s_check_all_exact(s_client_t *c, size_t from)
{
    for (size_t i = from; i < c->count; i++) {
        s_req_t *r = &c->all[i];
        if (r->ended != 1 || r->bad)
            fprintf(stderr, "request %zu: ended=%d bad=%d code=%s\n", i, r->ended, r->bad,
                    r->code);
        CHECK(r->ended == 1 && !r->bad);
        CHECK(r->got_len == r->input_len && memcmp(r->got, r->input, r->input_len) == 0);
    }
}

static int s_linked(void *arg)
{
    s_client_t *c = arg;
    s_pump(c, 20);
    return worker_linked(c->w);
}

/* ---- cases ------------------------------------------------------------------------ */

static int s_case_spread(void)
{
    pid_t broker = s_start_broker();
    pid_t echo[3];
    for (int i = 0; i < 3; i++)
        echo[i] = s_start_echo(i, 1, 16);
    s_client_t c;
    s_client_init(&c, 1000);
    CHECK(proc_wait_until(s_linked, &c, 10000) == 0);
    s_wait_workers(&c, 3, 10000);
    s_run_batch(&c, 1000, 200, 3, 10, 120000);
    s_check_all_exact(&c, 0);
    long total = 0;
    for (int i = 0; i < 3; i++) {
        int status;
        CHECK(proc_stop(echo[i], SIGTERM, 5000, &status) == 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        long served = s_echo_served(i);
        printf("echo %d served %ld\n", i, served);
        CHECK(served >= 200); /* at least 20% of 1,000 */
        total += served;
    }
    CHECK(total == 1000);
    CHECK(proc_alive(broker));
    s_client_free(&c);
    CHECK(proc_stop(broker, SIGTERM, 5000, NULL) == 0);
    return 0;
}

static int s_case_kill(void)
{
    pid_t broker = s_start_broker();
    pid_t echo[3];
    for (int i = 0; i < 3; i++)
        echo[i] = s_start_echo(i, 50, 8);
    s_client_t c;
    s_client_init(&c, 64);
    CHECK(proc_wait_until(s_linked, &c, 10000) == 0);
    s_wait_workers(&c, 3, 10000);
    /* 24 requests of 100 words at 50 ms: 5 s each, 8 on each worker. */
    for (int i = 0; i < 24; i++)
        CHECK(s_send(&c, 100) != 0);
    CHECK(proc_wait_until(s_all_streaming, &c, 10000) == 0);
    long long t_kill = proc_now_ms();
    CHECK(proc_stop(echo[0], SIGKILL, 5000, NULL) == 0);
    CHECK(proc_wait_until(s_all_ended, &c, 30000) == 0);
    int lost = 0, done = 0;
    long long window = (long long)S_HEARTBEAT_MS * S_LIVENESS;
    for (size_t i = 0; i < c.count; i++) {
        s_req_t *r = &c.all[i];
        CHECK(!r->bad);
        if (r->ended == 2) {
            if (strcmp(r->code, "worker_lost") != 0)
                fprintf(stderr, "request %zu: code %s\n", i, r->code);
            CHECK(strcmp(r->code, "worker_lost") == 0);
            /* The liveness window, plus one heartbeat for the broker's
             * timer phase and 500 ms for a loaded machine. */
            printf("lost after %lld ms\n", r->t_end - t_kill);
            CHECK(r->t_end - t_kill <= window + S_HEARTBEAT_MS + 500);
            CHECK(r->got_len < r->input_len); /* it was cut mid-stream */
            lost++;
        } else {
            CHECK(r->ended == 1 && r->got_len == r->input_len);
            done++;
        }
    }
    printf("lost %d, completed %d\n", lost, done);
    CHECK(lost >= 1 && done >= 1 && lost + done == 24);
    /* The survivors keep serving. */
    s_wait_workers(&c, 2, 10000);
    size_t from = c.count;
    s_run_batch(&c, 20, 20, 2, 3, 30000);
    s_check_all_exact(&c, from);
    /* SIGTERM stops a worker cleanly: its invokes end with worker_stopping
     * at once, the other worker's complete, and it exits 0. */
    from = c.count;
    for (int i = 0; i < 8; i++)
        CHECK(s_send(&c, 40) != 0);
    CHECK(proc_wait_until(s_all_streaming, &c, 10000) == 0);
    int status;
    CHECK(proc_stop(echo[1], SIGTERM, 5000, &status) == 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(proc_wait_until(s_all_ended, &c, 30000) == 0);
    int stopped = 0;
    done = 0;
    for (size_t i = from; i < c.count; i++) {
        s_req_t *r = &c.all[i];
        CHECK(!r->bad);
        if (r->ended == 2) {
            if (strcmp(r->code, "worker_stopping") != 0)
                fprintf(stderr, "request %zu: code %s\n", i, r->code);
            CHECK(strcmp(r->code, "worker_stopping") == 0);
            stopped++;
        } else {
            CHECK(r->ended == 1 && r->got_len == r->input_len);
            done++;
        }
    }
    printf("stopped %d, completed %d\n", stopped, done);
    CHECK(stopped >= 1 && done >= 1);
    s_client_free(&c);
    CHECK(proc_stop(echo[2], SIGTERM, 5000, NULL) == 0);
    CHECK(proc_stop(broker, SIGTERM, 5000, NULL) == 0);
    return 0;
}

typedef struct {
    s_client_t *c;
    uint64_t probe;       /* request in flight, 0 none */
    int probe_ok;
} s_resume_arg_t;

/* Condition: a request made after the restart completed, and all three
 * workers are registered again. */
static int s_resumed(void *arg)
{
    s_resume_arg_t *a = arg;
    s_client_t *c = a->c;
    s_pump(c, 10);
    if (!worker_linked(c->w))
        return 0;
    if (!a->probe_ok) {
        if (a->probe && !hmap_get(c->reqs, a->probe)) {
            s_req_t *r = &c->all[c->count - 1];
            a->probe = 0;
            a->probe_ok = r->ended == 1 && !r->bad;
        }
        if (!a->probe_ok && !a->probe)
            a->probe = s_send(c, 3);
        return 0;
    }
    if (!c->services_id && c->echo_workers != 3)
        c->services_id = worker_services(c->w);
    return c->echo_workers == 3;
}

static int s_case_restart(void)
{
    pid_t broker = s_start_broker();
    pid_t echo[3];
    for (int i = 0; i < 3; i++)
        echo[i] = s_start_echo(i, 20, 16);
    s_client_t c;
    s_client_init(&c, 256);
    CHECK(proc_wait_until(s_linked, &c, 10000) == 0);
    s_wait_workers(&c, 3, 10000);
    s_run_batch(&c, 30, 30, 2, 4, 30000);
    s_check_all_exact(&c, 0);
    /* 9 requests of 50 words at 20 ms: 1 s each, cut by the restart. */
    size_t from = c.count;
    for (int i = 0; i < 9; i++)
        CHECK(s_send(&c, 50) != 0);
    CHECK(proc_wait_until(s_all_streaming, &c, 10000) == 0);
    CHECK(proc_stop(broker, SIGKILL, 5000, NULL) == 0);
    int lost_before = c.links_lost;
    broker = s_start_broker();
    long long t_restart = proc_now_ms();
    s_resume_arg_t a = {&c, 0, 0};
    c.echo_workers = -1;
    int rc = proc_wait_until(s_resumed, &a, 3000);
    printf("resumed after %lld ms (probe_ok=%d workers=%ld)\n", proc_now_ms() - t_restart,
           a.probe_ok, c.echo_workers);
    CHECK(rc == 0);
    CHECK(c.links_lost == lost_before + 1);
    for (size_t i = from; i < from + 9; i++) {
        s_req_t *r = &c.all[i];
        if (r->ended != 2 || strcmp(r->code, "broker_lost") != 0)
            fprintf(stderr, "request %zu: ended=%d code=%s\n", i, r->ended, r->code);
        CHECK(r->ended == 2 && strcmp(r->code, "broker_lost") == 0);
    }
    from = c.count;
    s_run_batch(&c, 100, 50, 2, 4, 30000);
    s_check_all_exact(&c, from);
    s_client_free(&c);
    for (int i = 0; i < 3; i++) {
        int status;
        CHECK(proc_stop(echo[i], SIGTERM, 5000, &status) == 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    CHECK(proc_stop(broker, SIGTERM, 5000, NULL) == 0);
    return 0;
}

/* One bad message of kind k from the raw DEALER. */
static void s_send_garbage(void *raw, int k)
{
    uint8_t buf[4096];
    uint8_t hdr[FRAME_HEADER_MAX];
    size_t n;
    frame_t f = {.type = FRAME_REQUEST, .id = 7, .service = S_SERVICE,
                 .service_len = (uint32_t)strlen(S_SERVICE)};
    switch (k % 12) {
    case 0: /* random bytes, random length */
        n = s_rand() % sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)s_rand();
        zmq_send(raw, buf, n, ZMQ_DONTWAIT);
        break;
    case 1: /* a truncated REQUEST header, then a body */
        n = frame_encode(&f, hdr, sizeof hdr);
        zmq_send(raw, hdr, 1 + s_rand() % (n - 1), ZMQ_DONTWAIT | ZMQ_SNDMORE);
        zmq_send(raw, "body", 4, ZMQ_DONTWAIT);
        break;
    case 2: /* another protocol version */
        n = frame_encode(&f, hdr, sizeof hdr);
        hdr[1] = 2;
        zmq_send(raw, hdr, n, ZMQ_DONTWAIT | ZMQ_SNDMORE);
        zmq_send(raw, "body", 4, ZMQ_DONTWAIT);
        break;
    case 3: /* an unknown type */
        zmq_send(raw, "\x92\x01\x63", 3, ZMQ_DONTWAIT);
        break;
    case 4: /* empty message */
        zmq_send(raw, "", 0, ZMQ_DONTWAIT);
        break;
    case 5: /* a header over FRAME_HEADER_MAX */
        memset(buf, 0xc0, 2000);
        zmq_send(raw, buf, 2000, ZMQ_DONTWAIT);
        break;
    case 6: /* too many parts */
        for (int i = 0; i < 5; i++)
            zmq_send(raw, "x", 1, ZMQ_DONTWAIT | (i < 4 ? ZMQ_SNDMORE : 0));
        break;
    case 7: /* REQUEST without its body */
        n = frame_encode(&f, hdr, sizeof hdr);
        zmq_send(raw, hdr, n, ZMQ_DONTWAIT);
        break;
    case 8: /* a hostile container count */
        zmq_send(raw, "\xdd\x10\x00\x00\x00\x01\x02", 7, ZMQ_DONTWAIT);
        break;
    case 9: /* STREAM and CANCEL for ids nobody has */
        n = frame_encode_id(FRAME_STREAM, s_rand(), hdr, sizeof hdr);
        zmq_send(raw, hdr, n, ZMQ_DONTWAIT | ZMQ_SNDMORE);
        zmq_send(raw, "\x80", 1, ZMQ_DONTWAIT);
        n = frame_encode_id(FRAME_CANCEL, s_rand(), hdr, sizeof hdr);
        zmq_send(raw, hdr, n, ZMQ_DONTWAIT);
        break;
    case 10: /* READY with a capacity over the maximum, an empty service */
        zmq_send(raw, "\x94\x01\x01\xaa" "agent.echo\xce\xff\xff\xff\xff", 16, ZMQ_DONTWAIT);
        zmq_send(raw, "\x94\x01\x01\xa0\x01", 5, ZMQ_DONTWAIT);
        break;
    default: /* a valid requester READY, so later garbage comes from a known peer */
        f = (frame_t){.type = FRAME_READY, .service = "garbage", .service_len = 7};
        n = frame_encode(&f, hdr, sizeof hdr);
        zmq_send(raw, hdr, n, ZMQ_DONTWAIT);
        break;
    }
    while (zmq_recv(raw, buf, sizeof buf, ZMQ_DONTWAIT) >= 0)
        ; /* DISCONNECT, HEARTBEAT, ERROR answers: not our concern */
}

static int s_case_garbage(void)
{
    pid_t broker = s_start_broker();
    pid_t echo[2];
    for (int i = 0; i < 2; i++)
        echo[i] = s_start_echo(i, 0, 32);
    s_client_t c;
    s_client_init(&c, 1000);
    CHECK(proc_wait_until(s_linked, &c, 10000) == 0);
    s_wait_workers(&c, 2, 10000);
    void *ctx = zmq_ctx_new();
    void *raw = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(raw, ZMQ_LINGER, &zero, sizeof zero);
    CHECK(zmq_connect(raw, s_endpoint) == 0);
    for (int round = 0; round < 600; round++) {
        s_send_garbage(raw, round);
        if (round % 2 == 0)
            CHECK(s_send(&c, 1 + (int)(s_rand() % 8)) != 0);
        s_pump(&c, 1);
    }
    CHECK(proc_wait_until(s_all_ended, &c, 30000) == 0);
    s_check_all_exact(&c, 0);
    CHECK(c.count == 300);
    CHECK(c.links_lost == 0);
    CHECK(proc_alive(broker));
    /* A second peer that only ever sends garbage, and another batch. */
    void *raw2 = zmq_socket(ctx, ZMQ_DEALER);
    zmq_setsockopt(raw2, ZMQ_LINGER, &zero, sizeof zero);
    CHECK(zmq_connect(raw2, s_endpoint) == 0);
    for (int round = 0; round < 200; round++)
        s_send_garbage(raw2, (int)(s_rand() % 11));
    size_t from = c.count;
    s_run_batch(&c, 200, 50, 1, 8, 30000);
    s_check_all_exact(&c, from);
    CHECK(proc_alive(broker));
    zmq_close(raw);
    zmq_close(raw2);
    zmq_ctx_term(ctx);
    s_client_free(&c);
    for (int i = 0; i < 2; i++)
        CHECK(proc_stop(echo[i], SIGTERM, 5000, NULL) == 0);
    int status;
    CHECK(proc_stop(broker, SIGTERM, 5000, &status) == 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    return 0;
}

/* Removes the run's logs after a pass; a failure keeps them. */
static void s_clean_dir(void)
{
    const char *names[] = {"broker.log", "echo0.log", "echo1.log", "echo2.log"};
    char path[128];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(path, sizeof path, "%s/%s", s_dir, names[i]);
        unlink(path);
    }
    rmdir(s_dir);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: backbone_test spread|kill|restart|garbage BROKER_BIN ECHO_BIN\n");
        return 2;
    }
    log_init("backbone_test");
    s_broker_bin = argv[2];
    s_echo_bin = argv[3];
    snprintf(s_dir, sizeof s_dir, "/tmp/backbone.XXXXXX");
    CHECK(mkdtemp(s_dir) != NULL);
    int port = proc_free_port(), tap = proc_free_port();
    CHECK(port > 0 && tap > 0 && port != tap);
    snprintf(s_endpoint, sizeof s_endpoint, "tcp://127.0.0.1:%d", port);
    snprintf(s_tap, sizeof s_tap, "tcp://127.0.0.1:%d", tap);
    s_rand_state ^= (uint64_t)getpid() << 16;
    printf("backbone_test %s: broker %s, logs in %s, seed %llx\n", argv[1], s_endpoint, s_dir,
           (unsigned long long)s_rand_state);
    int rc;
    if (strcmp(argv[1], "spread") == 0)
        rc = s_case_spread();
    else if (strcmp(argv[1], "kill") == 0)
        rc = s_case_kill();
    else if (strcmp(argv[1], "restart") == 0)
        rc = s_case_restart();
    else if (strcmp(argv[1], "garbage") == 0)
        rc = s_case_garbage();
    else {
        fprintf(stderr, "unknown case '%s'\n", argv[1]);
        return 2;
    }
    proc_kill_all();
    if (rc == 0) {
        s_clean_dir();
        printf("backbone_test %s: ok\n", argv[1]);
    }
    return rc;
}
