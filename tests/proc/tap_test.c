/* tap_test: map-tap against a real broker and map-echo on loopback.
 *
 *   tap_test BROKER_BIN ECHO_BIN TAP_BIN
 *
 *   1. map-tap --json --run R --count 8 while one request of run R goes
 *      through the broker (worker library, agent_encode_invoke body):
 *      exactly the request's frames, in order: REQUEST in (requester),
 *      REQUEST out (worker), STREAM in/out per word, REPLY in, REPLY out;
 *      peers, ids, service, bodies and times consistent. The STREAM and
 *      REPLY bodies carry no run id: the tap attributes them by request.
 *   2. map-tap (human lines) --service agent.echo --type reply --count 2 on
 *      a second request: its two REPLY lines, with arrows and its run.
 *   3. map-tap --type undecodable --count 1 while a raw DEALER sends bytes
 *      that are no frame: the rejected frame is shown, with its reason.
 *
 * The broker logs (at info) each tap subscription it sees; the test waits
 * for that line before sending, since the tap publishes only to
 * subscribers. Processes are stopped by pid even on failure (proc.c); waits
 * poll a condition until a deadline, no timing is asserted. */
#include "tests/support/proc.h"

#include "worker/worker.h"
#include "common/log.h"
#include "proto/agent.h"
#include "proto/mp.h"

#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: check failed: %s (logs in %s)\n", __FILE__, __LINE__, \
                    #cond, s_dir);                                                        \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

#define S_WAIT_MS 15000     /* any one wait */
#define S_SERVICE "agent.echo"
#define S_OUT_MAX (1 << 20) /* bytes of a tap output read back */

static char s_dir[64] = "?";
static const char *s_broker_bin, *s_echo_bin, *s_tap_bin;
static char s_endpoint[64], s_tap[64], s_broker_log[128];

/* ---- files ------------------------------------------------------------------ */

/* Reads a whole (small) file, NUL-terminated, into a static buffer. */
static const char *s_read(const char *path)
{
    static char buf[S_OUT_MAX + 1];
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return buf;
    size_t n = fread(buf, 1, S_OUT_MAX, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static int s_count_of(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

typedef struct {
    int want; /* tap subscriptions the broker must have logged */
} s_subs_t;

static int s_subscribed(void *arg)
{
    const s_subs_t *s = arg;
    return s_count_of(s_read(s_broker_log), "tap.subscribers topics=1") >= s->want;
}

typedef struct {
    pid_t pid;
    int exit_code; /* once exited: its code, or -1 when killed by a signal */
} s_child_t;

/* Peeks at the child's end without reaping it (WNOWAIT), so proc.c still
 * owns the pid and reaps it (proc_alive) with nothing else ever signalled. */
static int s_exited(void *arg)
{
    s_child_t *c = arg;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == 0)
        return 0;
    c->exit_code = si.si_code == CLD_EXITED ? si.si_status : -1;
    return 1;
}

/* Starts map-tap with extra flags, its stdout and stderr to out_path, and
 * waits until the broker saw it subscribe (the nth subscription). */
static pid_t s_start_tap(const char *out_path, int nth, char *const extra[])
{
    char *argv[16] = {(char *)s_tap_bin, "--tap", s_tap};
    int n = 3;
    for (int i = 0; extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = proc_spawn(argv, NULL, out_path);
    CHECK(pid > 0);
    s_subs_t subs = {nth};
    CHECK(proc_wait_until(s_subscribed, &subs, S_WAIT_MS) == 0);
    return pid;
}

/* Waits for map-tap to print its --count lines and exit 0. */
static void s_wait_tap(pid_t pid)
{
    s_child_t child = {pid, -1};
    CHECK(proc_wait_until(s_exited, &child, S_WAIT_MS) == 0);
    CHECK(proc_alive(pid) == 0); /* reaped */
    CHECK(child.exit_code == 0);
}

/* ---- the requester -------------------------------------------------------------- */

typedef struct {
    worker_t *w;
    uint64_t id;             /* request in flight, 0 when none */
    int streams;             /* STREAMs received for it */
    char deltas[2][64];      /* their texts */
    int replied;             /* REPLY received */
    char error[64];          /* an ERROR's code, or "" */
    int echo_workers;        /* from SERVICES: workers of agent.echo, -1 unknown */
    uint64_t services_id;    /* SERVICES in flight */
} s_client_t;

static void s_on_stream(worker_t *w, uint64_t id, const uint8_t *body, size_t len, void *arg)
{
    s_client_t *c = arg;
    CHECK(id == c->id);
    agent_str_t d;
    CHECK(agent_decode_delta(body, len, &d) == AGENT_OK);
    if (c->streams < 2)
        snprintf(c->deltas[c->streams], sizeof c->deltas[0], "%.*s", (int)d.len, d.ptr);
    c->streams++;
}

/* A SERVICES answer: [[service, workers, capacity, free, queued], ...]. */
static void s_on_services(s_client_t *c, const uint8_t *body, size_t len)
{
    mp_reader_t r;
    mp_reader_init(&r, body, len);
    uint32_t n, fields;
    CHECK(mp_read_array(&r, &n) == 0);
    for (uint32_t i = 0; i < n; i++) {
        const char *name;
        uint32_t nlen;
        uint64_t workers;
        CHECK(mp_read_array(&r, &fields) == 0 && fields >= 2);
        CHECK(mp_read_str(&r, &name, &nlen, 256) == 0 && mp_read_uint(&r, &workers) == 0);
        for (uint32_t k = 2; k < fields; k++)
            CHECK(mp_skip(&r, 4) == 0);
        if (nlen == strlen(S_SERVICE) && memcmp(name, S_SERVICE, nlen) == 0)
            c->echo_workers = (int)workers;
    }
}

static void s_on_reply(worker_t *w, uint64_t id, const uint8_t *body, size_t len, void *arg)
{
    s_client_t *c = arg;
    if (id == c->services_id) {
        c->services_id = 0;
        s_on_services(c, body, len);
        return;
    }
    CHECK(id == c->id);
    agent_msg_t out;
    CHECK(agent_decode_done(body, len, &out) == AGENT_OK);
    c->replied = 1;
}

static void s_on_error(worker_t *w, uint64_t id, const char *code, const char *message,
                       void *arg)
{
    s_client_t *c = arg;
    snprintf(c->error, sizeof c->error, "%s", code);
    fprintf(stderr, "tap_test: request %llu failed: %s %s\n", (unsigned long long)id, code,
            message);
}

static void s_pump(s_client_t *c, long ms)
{
    long timeout = worker_timeout_ms(c->w);
    zmq_pollitem_t item = {worker_socket(c->w), 0, ZMQ_POLLIN, 0};
    zmq_poll(&item, 1, timeout < ms ? timeout : ms);
    while (worker_process(c->w) > 0)
        ;
}

static int s_echo_ready(void *arg)
{
    s_client_t *c = arg;
    if (c->echo_workers > 0)
        return 1;
    if (c->services_id == 0 && worker_linked(c->w))
        c->services_id = worker_services(c->w);
    s_pump(c, 20);
    return 0;
}

static int s_done(void *arg)
{
    s_client_t *c = arg;
    s_pump(c, 20);
    return c->replied || c->error[0];
}

/* Sends one invoke of run_id with content through the broker and waits for
 * its REPLY. */
static void s_invoke(s_client_t *c, const char *run_id, const char *content)
{
    agent_invoke_t inv = {
        .run_id = {run_id, (uint32_t)strlen(run_id)},
        .session_id = {"s_tap", 5},
        .agent_id = {"echo", 4},
        .input = {{"user", 4}, {content, (uint32_t)strlen(content)}},
    };
    mp_buf_t b;
    mp_buf_init(&b, 4096);
    CHECK(agent_encode_invoke(&b, &inv, NULL, 0) == 0);
    c->streams = 0;
    c->replied = 0;
    c->error[0] = '\0';
    c->id = worker_request(c->w, S_SERVICE, b.data, b.len);
    mp_buf_free(&b);
    CHECK(c->id > 0);
    CHECK(proc_wait_until(s_done, c, S_WAIT_MS) == 0);
    CHECK(c->replied && !c->error[0]);
}

/* ---- checks on the JSON lines ----------------------------------------------------- */

static const char *s_str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    CHECK(s != NULL);
    return s;
}

static json_int_t s_int(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    CHECK(json_is_integer(v));
    return json_integer_value(v);
}

/* Phase 1: the frames of one request, in order, nothing else. */
static void s_check_request(const char *text, const s_client_t *c, const char *run_id)
{
    static const struct {
        const char *dir, *type;
        int requester; /* 1: the requester's side, 0: the worker's */
    } want[] = {{"in", "REQUEST", 1},  {"out", "REQUEST", 0}, {"in", "STREAM", 0},
                {"out", "STREAM", 1},  {"in", "STREAM", 0},   {"out", "STREAM", 1},
                {"in", "REPLY", 0},    {"out", "REPLY", 1}};
    const int n = (int)(sizeof want / sizeof *want);
    char peer[2][64] = {"", ""};     /* [requester side, worker side] */
    json_int_t id[2] = {-1, -1};
    char last_time[64] = "";
    int i = 0;
    for (const char *line = text; *line; i++) {
        const char *nl = strchr(line, '\n');
        CHECK(nl != NULL);
        CHECK(i < n);
        json_error_t jerr;
        json_t *o = json_loadb(line, (size_t)(nl - line), 0, &jerr);
        if (!o)
            fprintf(stderr, "tap_test: line %d is not JSON: %s: %.*s\n", i + 1, jerr.text,
                    (int)(nl - line), line);
        CHECK(o != NULL);
        int side = want[i].requester ? 0 : 1;
        CHECK(strcmp(s_str(o, "dir"), want[i].dir) == 0);
        CHECK(strcmp(s_str(o, "type"), want[i].type) == 0);
        CHECK(strcmp(s_str(o, "service"), S_SERVICE) == 0);
        CHECK(strcmp(s_str(o, "run_id"), run_id) == 0);
        CHECK(strcmp(s_str(o, "note"), "") == 0);
        /* One peer and one id per side, the two sides apart. */
        const char *p = s_str(o, "peer");
        CHECK(p[0] != '\0' && strlen(p) < sizeof peer[0]);
        if (!peer[side][0])
            snprintf(peer[side], sizeof peer[side], "%s", p);
        CHECK(strcmp(peer[side], p) == 0);
        json_int_t fid = s_int(o, "id");
        if (id[side] < 0)
            id[side] = fid;
        CHECK(id[side] == fid);
        /* Times: RFC 3339 ms, never going back. */
        const char *t = s_str(o, "time");
        CHECK(strlen(t) == 24 && t[10] == 'T' && t[23] == 'Z');
        CHECK(strcmp(last_time, t) <= 0);
        snprintf(last_time, sizeof last_time, "%s", t);
        /* Bodies as the requester sent and received them. */
        json_t *body = json_object_get(o, "body");
        CHECK(json_is_object(body));
        if (strcmp(want[i].type, "REQUEST") == 0) {
            CHECK(strcmp(s_str(o, "target"), S_SERVICE) == 0);
            CHECK(strcmp(s_str(body, "run_id"), run_id) == 0);
            CHECK(strcmp(s_str(json_object_get(body, "input"), "content"), "hello tap") == 0);
        } else if (strcmp(want[i].type, "STREAM") == 0) {
            CHECK(strcmp(s_str(body, "delta"), c->deltas[(i - 2) / 2]) == 0);
        } else {
            CHECK(strcmp(s_str(json_object_get(body, "output"), "content"), "hello tap") == 0);
        }
        json_decref(o);
        line = nl + 1;
    }
    CHECK(i == n);
    CHECK(strcmp(peer[0], peer[1]) != 0);
    CHECK(id[0] == (json_int_t)c->id);
}

/* ---- main ------------------------------------------------------------------------ */

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: tap_test BROKER_BIN ECHO_BIN TAP_BIN\n");
        return 2;
    }
    log_init("tap_test");
    s_broker_bin = argv[1];
    s_echo_bin = argv[2];
    s_tap_bin = argv[3];
    snprintf(s_dir, sizeof s_dir, "/tmp/tap_test.XXXXXX");
    CHECK(mkdtemp(s_dir) != NULL);
    int port = proc_free_port(), tap = proc_free_port();
    CHECK(port > 0 && tap > 0 && port != tap);
    snprintf(s_endpoint, sizeof s_endpoint, "tcp://127.0.0.1:%d", port);
    snprintf(s_tap, sizeof s_tap, "tcp://127.0.0.1:%d", tap);
    snprintf(s_broker_log, sizeof s_broker_log, "%s/broker.log", s_dir);
    printf("tap_test: broker %s, tap %s, logs in %s\n", s_endpoint, s_tap, s_dir);

    /* info: the broker logs the tap's subscriptions, which the test waits for. */
    char *broker[] = {(char *)s_broker_bin, "--endpoint", s_endpoint, "--tap", s_tap,
                      "--log-level", "info", NULL};
    CHECK(proc_spawn(broker, NULL, s_broker_log) > 0);
    char echo_log[128];
    snprintf(echo_log, sizeof echo_log, "%s/echo.log", s_dir);
    char *echo[] = {(char *)s_echo_bin, "--broker", s_endpoint, "--delay-ms", "0",
                    "--log-level", "warn", NULL};
    CHECK(proc_spawn(echo, NULL, echo_log) > 0);

    s_client_t c = {.echo_workers = -1};
    worker_config_t cfg = {.endpoint = s_endpoint, .service = "test.tap", .capacity = 0};
    worker_handlers_t h = {.on_stream = s_on_stream, .on_reply = s_on_reply,
                           .on_error = s_on_error};
    char err[256];
    c.w = worker_new(&cfg, &h, &c, err, sizeof err);
    if (!c.w)
        fprintf(stderr, "worker_new: %s\n", err);
    CHECK(c.w != NULL);
    CHECK(proc_wait_until(s_echo_ready, &c, S_WAIT_MS) == 0);

    /* 1. JSON lines of one run. */
    char out1[128];
    snprintf(out1, sizeof out1, "%s/tap1.out", s_dir);
    pid_t t1 = s_start_tap(out1, 1,
                           (char *[]){"--json", "--run", "run_tap_one", "--count", "8", NULL});
    s_invoke(&c, "run_tap_one", "hello tap");
    CHECK(c.streams == 2);
    s_wait_tap(t1);
    s_check_request(s_read(out1), &c, "run_tap_one");
    printf("tap_test: one request's 8 frames in order, attributed to its run\n");

    /* 2. Human lines, filtered by service and type. */
    char out2[128];
    snprintf(out2, sizeof out2, "%s/tap2.out", s_dir);
    pid_t t2 = s_start_tap(out2, 2,
                           (char *[]){"--service", S_SERVICE, "--type", "reply", "--count", "2",
                                      NULL});
    s_invoke(&c, "run_tap_two", "hello tap");
    s_wait_tap(t2);
    const char *text = s_read(out2);
    CHECK(s_count_of(text, "\n") == 2);
    const char *second = strchr(text, '\n') + 1;
    CHECK(strstr(text, "\xe2\x86\x92 broker ") < second);         /* in from the worker */
    CHECK(strstr(second, "broker \xe2\x86\x92 ") != NULL);        /* out to the requester */
    CHECK(s_count_of(text, " REPLY ") == 2 && s_count_of(text, " agent.echo ") == 2);
    CHECK(s_count_of(text, " run=run_tap_two ") == 2);
    CHECK(s_count_of(text, "{\"output\":{\"role\":\"assistant\"") == 2);
    CHECK(strstr(text, "HEARTBEAT") == NULL && strstr(text, "STREAM") == NULL);
    printf("tap_test: human lines, --service and --type\n");

    /* 3. A rejected frame is shown. */
    char out3[128];
    snprintf(out3, sizeof out3, "%s/tap3.out", s_dir);
    pid_t t3 = s_start_tap(out3, 3, (char *[]){"--type", "UNDECODABLE", "--count", "1", NULL});
    void *ctx = zmq_ctx_new();
    void *raw = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(raw, ZMQ_LINGER, &zero, sizeof zero);
    CHECK(zmq_connect(raw, s_endpoint) == 0);
    CHECK(zmq_send(raw, "\xff\xfegarbage", 9, 0) == 9);
    s_wait_tap(t3);
    text = s_read(out3);
    CHECK(s_count_of(text, "\n") == 1);
    CHECK(strstr(text, " UNDECODABLE ") && strstr(text, " hex=fffe67617262616765"));
    CHECK(strstr(text, " note=\"rejected: "));
    zmq_close(raw);
    zmq_ctx_term(ctx);
    printf("tap_test: a rejected frame shown with its reason and bytes\n");

    worker_destroy(&c.w);
    proc_kill_all();
    const char *files[] = {"broker.log", "echo.log", "tap1.out", "tap2.out", "tap3.out"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char path[160];
        snprintf(path, sizeof path, "%s/%s", s_dir, files[i]);
        unlink(path);
    }
    rmdir(s_dir);
    printf("tap_test: ok\n");
    return 0;
}
