/* broker_bench: what the broker costs.
 *
 *   1. stream frames/s through the broker: one requester, N worker threads
 *      (raw DEALERs speaking the frames with frame_encode, so the broker is
 *      measured, not the worker library); each request is answered by a
 *      burst of STREAM frames and a REPLY; --inflight requests are kept in
 *      flight (pipelining: the broker never waits for the requester).
 *   2. the round trip requester → broker → worker → broker → requester
 *      (REQUEST → REPLY, one at a time), over ipc and over tcp.
 *   3. the floor, in the same run: a raw DEALER ↔ ROUTER echo over ipc,
 *      the same number of round trips.
 *
 * Starts map-broker itself (tap off; heartbeats rare and liveness long so
 * an idle bench worker is never declared dead) on ipc:///tmp/map-bench-<pid>.ipc
 * and on a free tcp port, waits until its workers are registered (SERVICES),
 * and checks what it counts: every STREAM and REPLY id is a request in
 * flight, each request gets exactly --burst STREAMs then one REPLY, every
 * round trip's REPLY id matches, every raw echo returns what was sent. Any
 * mismatch: exit 1. A global deadline (--deadline-s) bounds the run: past
 * it the broker is killed (by pid) and the bench exits 3. The broker child
 * also dies with the bench (PR_SET_PDEATHSIG).
 *
 * Last line: {"bench":"broker","frames_per_s":…,"rtt_p50_us_ipc":…,
 *             "raw_rtt_p50_us_ipc":…,"rtt_p50_us_tcp":…, …}
 * (a figure not measured, for --endpoint-kind ipc or tcp, is null). */
#include "common/clock.h"
#include "common/flags.h"
#include "common/mem.h"
#include "proto/frame.h"
#include "proto/mp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#ifndef MAP_BROKER_BIN
#define MAP_BROKER_BIN "map-broker"
#endif

#define S_WARMUP 100          /* round trips left out of the figures */
#define S_RECV_TIMEOUT_MS 5000 /* a frame later than this is lost */
#define S_WORKERS_MAX 64

typedef struct {
    void *ctx;
    const char *endpoint;
    long burst;          /* STREAM frames per request */
    volatile int stop;
} s_worker_arg_t;

static volatile pid_t s_broker_pid; /* running broker child, for the deadline */
static char s_ipc_paths[2][96];     /* ipc socket files to remove, even at the deadline */

static void s_on_deadline(int sig)
{
    static const char msg[] = "bench_broker: global deadline passed; broker killed\n";
    pid_t pid = s_broker_pid;
    if (pid > 0)
        kill(pid, SIGKILL);
    for (int i = 0; i < 2; i++)
        if (s_ipc_paths[i][0])
            unlink(s_ipc_paths[i]);
    ssize_t rc = write(2, msg, sizeof msg - 1);
    (void)rc;
    _exit(3);
}

/* ---- frames on raw sockets -------------------------------------------------- */

static void s_send_hdr(void *sock, const uint8_t *hdr, size_t n, const void *body, size_t blen)
{
    zmq_send(sock, hdr, n, body ? ZMQ_SNDMORE : 0);
    if (body)
        zmq_send(sock, body, blen, 0);
}

static void *s_dealer(void *ctx, const char *endpoint)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0, hwm = 1000000;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_connect(s, endpoint);
    return s;
}

static void s_ready(void *s, const char *service, uint32_t capacity)
{
    uint8_t hdr[FRAME_HEADER_MAX];
    frame_t f = {.type = FRAME_READY, .service = service, .service_len = (uint32_t)strlen(service),
                 .capacity = capacity};
    size_t n = frame_encode(&f, hdr, sizeof hdr);
    s_send_hdr(s, hdr, n, NULL, 0);
}

/* Receives one whole message: its header decoded into f (views into hdr)
 * and, if body is not NULL, its body copied (at most cap bytes; OUT blen).
 * Returns 0, or -1 on a timeout or an undecodable frame. */
static int s_recv_frame(void *s, frame_t *f, uint8_t *hdr, size_t cap, uint8_t *body,
                        size_t body_cap, size_t *blen)
{
    int n = zmq_recv(s, hdr, cap, 0);
    if (n < 0 || (size_t)n > cap)
        return -1;
    int more = 0, has_body = 0;
    size_t ml = sizeof more;
    zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ml);
    uint8_t scratch[4096];
    while (more) {
        int b = zmq_recv(s, body && !has_body ? body : scratch, body && !has_body ? body_cap : sizeof scratch, 0);
        if (b < 0)
            return -1;
        if (body && !has_body && blen)
            *blen = (size_t)b < body_cap ? (size_t)b : body_cap;
        has_body++;
        zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ml);
    }
    if (has_body > 1)
        return -1;
    return frame_decode(hdr, (size_t)n, has_body, f) == FRAME_OK ? 0 : -1;
}

/* ---- the broker child ------------------------------------------------------- */

static pid_t s_broker_start(const char *bin, const char *endpoint)
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        execl(bin, bin, "--endpoint", endpoint, "--tap", "", "--heartbeat-ms", "10000",
              "--liveness", "100", "--log-level", "warn", (char *)NULL);
        fprintf(stderr, "bench_broker: exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    if (pid > 0)
        s_broker_pid = pid;
    return pid;
}

static void s_broker_stop(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (int i = 0; i < 2000; i++) { /* 2 s, then SIGKILL */
        if (waitpid(pid, NULL, WNOHANG) == pid) {
            s_broker_pid = 0;
            return;
        }
        usleep(1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    s_broker_pid = 0;
}

/* Workers of service in a SERVICES answer [[service, workers, ...], ...],
 * or -1. */
static long s_workers_of(const uint8_t *body, size_t len, const char *service)
{
    mp_reader_t r;
    mp_reader_init(&r, body, len);
    uint32_t n, fields;
    if (mp_read_array(&r, &n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *name;
        uint32_t nlen;
        uint64_t workers;
        if (mp_read_array(&r, &fields) || fields < 2 || mp_read_str(&r, &name, &nlen, 256) ||
            mp_read_uint(&r, &workers))
            return -1;
        for (uint32_t k = 2; k < fields; k++)
            if (mp_skip(&r, 4))
                return -1;
        if (nlen == strlen(service) && memcmp(name, service, nlen) == 0)
            return (long)workers;
    }
    return 0;
}

/* Asks the broker (SERVICES) until service has `want` workers. The broker
 * pid is watched: a broker that exited (bad endpoint, port taken) is an
 * error at once. Returns 0, or -1 after timeout_ms. */
static int s_wait_workers(void *ctx, const char *endpoint, pid_t broker, const char *service,
                          long want, long timeout_ms)
{
    void *s = s_dealer(ctx, endpoint);
    s_ready(s, "bench-probe", 0);
    int wait = 100;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &wait, sizeof wait);
    int64_t deadline = clock_mono_ms() + timeout_ms;
    uint64_t id = 0;
    int rc = -1;
    while (clock_mono_ms() < deadline) {
        pid_t w = waitpid(broker, NULL, WNOHANG);
        if (w == broker || w < 0) { /* < 0: reaped by an earlier wait */
            fprintf(stderr, "bench_broker: map-broker exited at start (%s)\n", endpoint);
            s_broker_pid = 0;
            break;
        }
        uint8_t hdr[FRAME_HEADER_MAX], in[FRAME_HEADER_MAX], body[65536];
        size_t n = frame_encode_id(FRAME_SERVICES, ++id, hdr, sizeof hdr);
        s_send_hdr(s, hdr, n, NULL, 0);
        frame_t f;
        size_t blen = 0;
        int64_t until = clock_mono_ms() + 200;
        long got = -1;
        while (clock_mono_ms() < until) {
            if (s_recv_frame(s, &f, in, sizeof in, body, sizeof body, &blen) != 0)
                continue;
            if (f.type == FRAME_REPLY && f.id == id) {
                got = s_workers_of(body, blen, service);
                break;
            }
        }
        if (got >= want) {
            rc = 0;
            break;
        }
        usleep(10000);
    }
    zmq_close(s);
    return rc;
}

/* ---- 1. stream frames/s ------------------------------------------------------- */

/* A worker: answers each REQUEST with `burst` STREAM frames and a REPLY. */
static void *s_worker(void *p)
{
    s_worker_arg_t *a = p;
    void *s = s_dealer(a->ctx, a->endpoint);
    s_ready(s, "bench", 1000);
    static const char body[] = "\x81\xa5" "delta" "\xa4" "word"; /* {"delta":"word"} */
    uint8_t in[FRAME_HEADER_MAX], hdr[32];
    int timeout = 100;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    while (!a->stop) {
        frame_t f;
        if (s_recv_frame(s, &f, in, sizeof in, NULL, 0, NULL) != 0 || f.type != FRAME_REQUEST)
            continue;
        size_t hl = frame_encode_id(FRAME_STREAM, f.id, hdr, sizeof hdr);
        for (long i = 0; i < a->burst; i++)
            s_send_hdr(s, hdr, hl, body, sizeof body - 1);
        hl = frame_encode_id(FRAME_REPLY, f.id, hdr, sizeof hdr);
        s_send_hdr(s, hdr, hl, body, sizeof body - 1);
    }
    zmq_close(s);
    return NULL;
}

/* Moves requests × burst STREAM frames (+ one REPLY each) to one requester,
 * inflight requests at a time. OUT: frames/s. Returns the errors counted. */
static int s_stream(void *ctx, const char *endpoint, pid_t broker, long workers, long requests,
                    long burst, long inflight, double *fps)
{
    s_worker_arg_t wa = {ctx, endpoint, burst, 0};
    pthread_t th[S_WORKERS_MAX];
    for (long i = 0; i < workers; i++)
        pthread_create(&th[i], NULL, s_worker, &wa);
    int errors = 0;
    *fps = -1;
    if (s_wait_workers(ctx, endpoint, broker, "bench", workers, 10000) != 0) {
        fprintf(stderr, "bench_broker: the stream workers did not register (%s)\n", endpoint);
        errors++;
        goto done;
    }
    void *c = s_dealer(ctx, endpoint);
    s_ready(c, "bench-client", 0);
    int timeout = S_RECV_TIMEOUT_MS;
    zmq_setsockopt(c, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    /* Per request: STREAMs received, and whether its REPLY came (-1). */
    long *got = mem_alloc((size_t)(requests + 1) * sizeof *got);
    uint8_t hdr[FRAME_HEADER_MAX], in[FRAME_HEADER_MAX];
    frame_t req = {.type = FRAME_REQUEST, .service = "bench", .service_len = 5};
    long sent = 0, replies = 0;
    uint64_t streamed = 0;
    int64_t t0 = clock_mono_us();
    for (; sent < inflight && sent < requests; sent++) {
        req.id = (uint64_t)sent + 1;
        size_t n = frame_encode(&req, hdr, sizeof hdr);
        s_send_hdr(c, hdr, n, "\x80", 1);
    }
    while (replies < requests) {
        frame_t f;
        if (s_recv_frame(c, &f, in, sizeof in, NULL, 0, NULL) != 0) {
            fprintf(stderr, "bench_broker: lost frames (%ld of %ld replies)\n", replies, requests);
            errors++;
            break;
        }
        if (f.type == FRAME_HEARTBEAT)
            continue;
        if ((f.type == FRAME_STREAM || f.type == FRAME_REPLY) &&
            (f.id < 1 || f.id > (uint64_t)sent || got[f.id] < 0)) {
            fprintf(stderr, "bench_broker: %s for id %llu, not in flight\n",
                    frame_type_name(f.type), (unsigned long long)f.id);
            errors++;
            break;
        }
        if (f.type == FRAME_STREAM) {
            streamed++;
            got[f.id]++;
        } else if (f.type == FRAME_REPLY) {
            if (got[f.id] != burst) {
                fprintf(stderr, "bench_broker: request %llu: %ld STREAM frames, want %ld\n",
                        (unsigned long long)f.id, got[f.id], burst);
                errors++;
            }
            got[f.id] = -1;
            replies++;
            if (sent < requests) {
                req.id = (uint64_t)++sent;
                size_t n = frame_encode(&req, hdr, sizeof hdr);
                s_send_hdr(c, hdr, n, "\x80", 1);
            }
        } else {
            fprintf(stderr, "bench_broker: unexpected %s (%.*s)\n", frame_type_name(f.type),
                    f.type == FRAME_ERROR ? (int)f.code_len : 0, f.type == FRAME_ERROR ? f.code : "");
            errors++;
            break;
        }
    }
    double secs = (double)(clock_mono_us() - t0) / 1e6;
    if (streamed != (uint64_t)requests * (uint64_t)burst || replies != requests) {
        fprintf(stderr, "bench_broker: counted %llu STREAM + %ld REPLY, sent %llu + %ld\n",
                (unsigned long long)streamed, replies,
                (unsigned long long)requests * (unsigned long long)burst, requests);
        errors++;
    }
    *fps = secs > 0 ? (double)(streamed + (uint64_t)replies) / secs : 0;
    printf("stream over %s: %llu frames + %ld replies in %.2f s, %ld workers, %ld in flight: "
           "%.0f frames/s\n",
           endpoint, (unsigned long long)streamed, replies, secs, workers, inflight, *fps);
    mem_free(got);
    zmq_close(c);
done:
    wa.stop = 1;
    for (long i = 0; i < workers; i++)
        pthread_join(th[i], NULL);
    return errors;
}

/* ---- 2. round trips through the broker ------------------------------------------ */

static int s_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* A worker for the round trip: answers each REQUEST with one REPLY. */
static void *s_rtt_worker(void *p)
{
    s_worker_arg_t *a = p;
    void *s = s_dealer(a->ctx, a->endpoint);
    s_ready(s, "bench-rtt", 1);
    uint8_t in[FRAME_HEADER_MAX], hdr[32];
    int timeout = 100;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    while (!a->stop) {
        frame_t f;
        if (s_recv_frame(s, &f, in, sizeof in, NULL, 0, NULL) != 0 || f.type != FRAME_REQUEST)
            continue;
        size_t hl = frame_encode_id(FRAME_REPLY, f.id, hdr, sizeof hdr);
        s_send_hdr(s, hdr, hl, "\x80", 1);
    }
    zmq_close(s);
    return NULL;
}

/* count round trips REQUEST → REPLY through the broker. OUT p50, p99 in µs.
 * Returns the errors counted (a lost or mismatched reply ends the run). */
static int s_rtt(void *ctx, const char *endpoint, pid_t broker, long count, int64_t *p50,
                 int64_t *p99)
{
    s_worker_arg_t wa = {ctx, endpoint, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, s_rtt_worker, &wa);
    int errors = 0;
    *p50 = *p99 = -1;
    if (s_wait_workers(ctx, endpoint, broker, "bench-rtt", 1, 10000) != 0) {
        fprintf(stderr, "bench_broker: the round-trip worker did not register (%s)\n", endpoint);
        errors++;
        goto done;
    }
    void *c = s_dealer(ctx, endpoint);
    s_ready(c, "bench-client", 0);
    int timeout = S_RECV_TIMEOUT_MS;
    zmq_setsockopt(c, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    int64_t *t = mem_alloc((size_t)count * sizeof *t);
    uint8_t hdr[FRAME_HEADER_MAX], in[FRAME_HEADER_MAX];
    frame_t req = {.type = FRAME_REQUEST, .service = "bench-rtt", .service_len = 9};
    long i;
    for (i = 0; i < count + S_WARMUP; i++) {
        req.id = (uint64_t)i + 1;
        size_t n = frame_encode(&req, hdr, sizeof hdr);
        int64_t t0 = clock_mono_us();
        s_send_hdr(c, hdr, n, "\x80", 1);
        frame_t f;
        int rc;
        while ((rc = s_recv_frame(c, &f, in, sizeof in, NULL, 0, NULL)) == 0 &&
               f.type == FRAME_HEARTBEAT)
            ;
        int64_t dt = clock_mono_us() - t0;
        if (rc != 0 || f.type != FRAME_REPLY || f.id != req.id) {
            fprintf(stderr, "bench_broker: round trip %ld over %s: %s\n", i, endpoint,
                    rc != 0 ? "no reply" : "wrong frame or id");
            errors++;
            break;
        }
        if (i >= S_WARMUP)
            t[i - S_WARMUP] = dt;
    }
    if (!errors) {
        qsort(t, (size_t)count, sizeof *t, s_cmp);
        *p50 = t[count / 2];
        *p99 = t[count * 99 / 100];
    }
    mem_free(t);
    zmq_close(c);
done:
    wa.stop = 1;
    pthread_join(th, NULL);
    return errors;
}

/* ---- 3. the floor: raw DEALER <-> ROUTER ----------------------------------------- */

static void *s_raw_echo(void *p)
{
    s_worker_arg_t *a = p;
    void *r = zmq_socket(a->ctx, ZMQ_ROUTER);
    int timeout = 100, zero = 0;
    zmq_setsockopt(r, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(r, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(r, a->endpoint) != 0)
        fprintf(stderr, "bench_broker: bind %s: %s\n", a->endpoint, zmq_strerror(errno));
    while (!a->stop) {
        zmq_msg_t id, m;
        zmq_msg_init(&id);
        if (zmq_msg_recv(&id, r, 0) < 0) {
            zmq_msg_close(&id);
            continue;
        }
        zmq_msg_init(&m);
        zmq_msg_recv(&m, r, 0);
        zmq_msg_send(&id, r, ZMQ_SNDMORE);
        zmq_msg_send(&m, r, 0);
    }
    zmq_close(r);
    return NULL;
}

static int s_raw_rtt(void *ctx, const char *endpoint, long count, int64_t *p50, int64_t *p99)
{
    s_worker_arg_t a = {ctx, endpoint, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, s_raw_echo, &a);
    void *c = s_dealer(ctx, endpoint);
    int timeout = S_RECV_TIMEOUT_MS;
    zmq_setsockopt(c, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    int64_t *t = mem_alloc((size_t)count * sizeof *t);
    int errors = 0;
    *p50 = *p99 = -1;
    for (long i = 0; i < count + S_WARMUP; i++) {
        char ping[32], pong[64];
        int len = snprintf(ping, sizeof ping, "ping %ld", i);
        int64_t t0 = clock_mono_us();
        zmq_send(c, ping, (size_t)len, 0);
        int n = zmq_recv(c, pong, sizeof pong, 0);
        int64_t dt = clock_mono_us() - t0;
        if (n != len || memcmp(ping, pong, (size_t)len) != 0) {
            fprintf(stderr, "bench_broker: raw round trip %ld: %s\n", i,
                    n < 0 ? "no echo" : "wrong echo");
            errors++;
            break;
        }
        if (i >= S_WARMUP)
            t[i - S_WARMUP] = dt;
    }
    if (!errors) {
        qsort(t, (size_t)count, sizeof *t, s_cmp);
        *p50 = t[count / 2];
        *p99 = t[count * 99 / 100];
    }
    mem_free(t);
    zmq_close(c);
    a.stop = 1;
    pthread_join(th, NULL);
    return errors;
}

/* ---- main --------------------------------------------------------------------- */

static int s_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* A figure for the JSON line: null when not measured. */
static const char *s_num(char *buf, size_t cap, double v)
{
    if (v < 0)
        return "null";
    snprintf(buf, cap, "%.0f", v);
    return buf;
}

int main(int argc, char **argv)
{
    long frames = 2000000, workers = 2, rtt = 20000, burst = 1000, inflight = 8, deadline_s = 120;
    const char *broker_bin = MAP_BROKER_BIN, *kind = "both";
    flag_t table[] = {
        {"frames", NULL, FLAG_INT, &frames, 1, 1000000000, "stream frames to move"},
        {"workers", NULL, FLAG_INT, &workers, 1, S_WORKERS_MAX, "stream worker threads"},
        {"burst", NULL, FLAG_INT, &burst, 1, 1000000, "STREAM frames per request"},
        {"inflight", NULL, FLAG_INT, &inflight, 1, 1000, "requests in flight while streaming"},
        {"rtt", NULL, FLAG_INT, &rtt, 1, 10000000, "round trips per measurement"},
        {"endpoint-kind", NULL, FLAG_STR, &kind, 0, 0, "ipc, tcp or both"},
        {"deadline-s", NULL, FLAG_INT, &deadline_s, 1, 3600, "the whole run's time bound"},
        {"broker-bin", NULL, FLAG_STR, &broker_bin, 0, 0, "map-broker binary"},
    };
    char err[256];
    int rc = flags_parse(table, sizeof table / sizeof *table, argc, argv,
                         "bench_broker: frames/s and round trips through the broker", err,
                         sizeof err);
    if (rc == 1)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "bench_broker: %s\n", err);
        return 2;
    }
    int use_ipc = strcmp(kind, "ipc") == 0 || strcmp(kind, "both") == 0;
    int use_tcp = strcmp(kind, "tcp") == 0 || strcmp(kind, "both") == 0;
    if (!use_ipc && !use_tcp) {
        fprintf(stderr, "bench_broker: --endpoint-kind must be ipc, tcp or both\n");
        return 2;
    }
    if (access(broker_bin, X_OK) != 0) {
        fprintf(stderr, "bench_broker: no map-broker at %s (build it, or --broker-bin)\n",
                broker_bin);
        return 2;
    }
    if (burst > frames)
        burst = frames;
    long requests = frames / burst;
    frames = requests * burst;
    char ipc[96], tcp[64], raw[96];
    snprintf(ipc, sizeof ipc, "ipc:///tmp/map-bench-%d.ipc", (int)getpid());
    snprintf(raw, sizeof raw, "ipc:///tmp/map-bench-raw-%d.ipc", (int)getpid());
    snprintf(s_ipc_paths[0], sizeof s_ipc_paths[0], "%s", ipc + 6);
    snprintf(s_ipc_paths[1], sizeof s_ipc_paths[1], "%s", raw + 6);
    signal(SIGALRM, s_on_deadline);
    alarm((unsigned)deadline_s);
    int port = use_tcp ? s_free_port() : 0;
    if (port < 0) {
        fprintf(stderr, "bench_broker: no free tcp port on 127.0.0.1\n");
        return 1;
    }
    snprintf(tcp, sizeof tcp, "tcp://127.0.0.1:%d", port);
    printf("bench_broker: %ld frames (%ld requests x %ld), %ld workers, %ld round trips, %s\n",
           frames, requests, burst, workers, rtt, kind);
    void *ctx = zmq_ctx_new();
    int errors = 0;
    double fps = -1, fps_tcp = -1;
    int64_t p50_ipc = -1, p99_ipc = -1, p50_tcp = -1, p99_tcp = -1, raw_p50 = -1, raw_p99 = -1;

    if (use_ipc) {
        pid_t pid = s_broker_start(broker_bin, ipc);
        errors += pid > 0 ? 0 : 1;
        if (pid > 0) {
            errors += s_stream(ctx, ipc, pid, workers, requests, burst, inflight, &fps);
            errors += s_rtt(ctx, ipc, pid, rtt, &p50_ipc, &p99_ipc);
            if (p50_ipc >= 0)
                printf("round trip via broker, ipc: p50 %lld us, p99 %lld us\n",
                       (long long)p50_ipc, (long long)p99_ipc);
            s_broker_stop(pid);
        }
    }
    if (use_tcp) {
        pid_t pid = s_broker_start(broker_bin, tcp);
        errors += pid > 0 ? 0 : 1;
        if (pid > 0) {
            double *dst = use_ipc ? &fps_tcp : &fps;
            errors += s_stream(ctx, tcp, pid, workers, requests, burst, inflight, dst);
            errors += s_rtt(ctx, tcp, pid, rtt, &p50_tcp, &p99_tcp);
            if (p50_tcp >= 0)
                printf("round trip via broker, tcp: p50 %lld us, p99 %lld us\n",
                       (long long)p50_tcp, (long long)p99_tcp);
            s_broker_stop(pid);
        }
    }
    /* The floor, over ipc whatever the kind: what the broker is compared with. */
    errors += s_raw_rtt(ctx, raw, rtt, &raw_p50, &raw_p99);
    printf("raw DEALER<->ROUTER round trip, ipc: p50 %lld us, p99 %lld us", (long long)raw_p50,
           (long long)raw_p99);
    if (p50_ipc > 0 && raw_p50 > 0)
        printf(" (the broker's two extra hops: %.2fx)", (double)p50_ipc / (double)raw_p50);
    printf("\n");
    zmq_ctx_term(ctx);
    unlink(s_ipc_paths[0]);
    unlink(s_ipc_paths[1]);
    if (fps >= 0 && fps < 500000)
        printf("note: %.0f frames/s is under the 500000 target\n", fps);
    if (errors)
        fprintf(stderr, "bench_broker: %d error(s): results not valid\n", errors);
    char b[8][32];
    printf("{\"bench\":\"broker\",\"frames_per_s\":%s,\"rtt_p50_us_ipc\":%s,"
           "\"raw_rtt_p50_us_ipc\":%s,\"rtt_p50_us_tcp\":%s,\"frames_per_s_tcp\":%s,"
           "\"rtt_p99_us_ipc\":%s,\"rtt_p99_us_tcp\":%s,\"raw_rtt_p99_us_ipc\":%s,"
           "\"frames\":%ld,\"workers\":%ld,\"round_trips\":%ld,\"errors\":%d}\n",
           s_num(b[0], 32, fps), s_num(b[1], 32, (double)p50_ipc), s_num(b[2], 32, (double)raw_p50),
           s_num(b[3], 32, (double)p50_tcp), s_num(b[4], 32, fps_tcp),
           s_num(b[5], 32, (double)p99_ipc), s_num(b[6], 32, (double)p99_tcp),
           s_num(b[7], 32, (double)raw_p99), frames, workers, rtt, errors);
    return errors ? 1 : 0;
}
