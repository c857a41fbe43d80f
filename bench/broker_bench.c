/* broker_bench: what the broker costs.
 *
 *   1. stream frames/s through the broker: one requester, N worker threads
 *      (raw DEALERs speaking the frames, so the broker is measured, not the
 *      worker library); each request is answered by a burst of STREAM frames
 *      and a REPLY; several requests are in flight.
 *   2. the round trip requester → broker → worker → broker → requester
 *      (REQUEST → REPLY, one at a time), over ipc and over tcp.
 *   3. the floor, in the same run: a raw DEALER ↔ ROUTER echo over ipc.
 *
 * Starts map-broker itself (tap off) and checks every frame it counts.
 * Last line: {"bench":"broker","frames_per_s":…,"rtt_p50_us_ipc":…,
 *             "raw_rtt_p50_us_ipc":…,"rtt_p50_us_tcp":…} */
#include "common/clock.h"
#include "common/flags.h"
#include "proto/frame.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#ifndef MAP_BROKER_BIN
#define MAP_BROKER_BIN "map-broker"
#endif

typedef struct {
    void *ctx;
    const char *endpoint;
    long burst;          /* STREAM frames per request */
    volatile int stop;
} s_worker_arg_t;

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
        int n = zmq_recv(s, in, sizeof in, 0);
        if (n < 0)
            continue;
        int more = 0;
        size_t ml = sizeof more;
        zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ml);
        char scratch[4096];
        while (more) {
            zmq_recv(s, scratch, sizeof scratch, 0);
            zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ml);
        }
        frame_t f;
        if (frame_decode(in, (size_t)n, 1, &f) != FRAME_OK || f.type != FRAME_REQUEST)
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

/* Receives one whole message into hdr; returns its frame or -1. */
static int s_recv_frame(void *s, frame_t *f, uint8_t *hdr, size_t cap)
{
    int n = zmq_recv(s, hdr, cap, 0);
    if (n < 0)
        return -1;
    int more = 0, has_body = 0;
    size_t ml = sizeof more;
    zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ml);
    char scratch[4096];
    while (more) {
        zmq_recv(s, scratch, sizeof scratch, 0);
        has_body = 1;
        zmq_getsockopt(s, ZMQ_RCVMORE, &more, &ml);
    }
    return frame_decode(hdr, (size_t)n, has_body, f) == FRAME_OK ? 0 : -1;
}

static int s_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Round trips REQUEST → REPLY through the broker. OUT p50, p99 in µs. */
static int s_rtt(void *ctx, const char *endpoint, long count, int64_t *p50, int64_t *p99)
{
    void *c = s_dealer(ctx, endpoint);
    s_ready(c, "bench-client", 0);
    int timeout = 5000;
    zmq_setsockopt(c, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    int64_t *t = malloc((size_t)count * sizeof *t);
    uint8_t hdr[FRAME_HEADER_MAX], in[FRAME_HEADER_MAX];
    frame_t req = {.type = FRAME_REQUEST, .service = "bench-rtt", .service_len = 9};
    int errors = 0;
    usleep(200000);
    for (long i = 0; i < count + 100; i++) {
        req.id = (uint64_t)i + 1;
        size_t n = frame_encode(&req, hdr, sizeof hdr);
        int64_t t0 = clock_mono_us();
        s_send_hdr(c, hdr, n, "\x80", 1);
        frame_t f;
        do {
            if (s_recv_frame(c, &f, in, sizeof in) != 0) {
                errors++;
                break;
            }
        } while (f.type == FRAME_HEARTBEAT);
        if (f.type != FRAME_REPLY || f.id != req.id)
            errors++;
        if (i >= 100) /* warm-up left out */
            t[i - 100] = clock_mono_us() - t0;
    }
    qsort(t, (size_t)count, sizeof *t, s_cmp);
    *p50 = t[count / 2];
    *p99 = t[count * 99 / 100];
    free(t);
    zmq_close(c);
    return errors;
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
        if (s_recv_frame(s, &f, in, sizeof in) != 0 || f.type != FRAME_REQUEST)
            continue;
        size_t hl = frame_encode_id(FRAME_REPLY, f.id, hdr, sizeof hdr);
        s_send_hdr(s, hdr, hl, "\x80", 1);
    }
    zmq_close(s);
    return NULL;
}

static void *s_raw_echo(void *p)
{
    s_worker_arg_t *a = p;
    void *r = zmq_socket(a->ctx, ZMQ_ROUTER);
    int timeout = 100, zero = 0;
    zmq_setsockopt(r, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt(r, ZMQ_LINGER, &zero, sizeof zero);
    zmq_bind(r, a->endpoint);
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

static void s_raw_rtt(void *ctx, const char *endpoint, long count, int64_t *p50)
{
    s_worker_arg_t a = {ctx, endpoint, 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, s_raw_echo, &a);
    usleep(100000);
    void *c = s_dealer(ctx, endpoint);
    int64_t *t = malloc((size_t)count * sizeof *t);
    char buf[64];
    for (long i = 0; i < count + 100; i++) {
        int64_t t0 = clock_mono_us();
        zmq_send(c, "ping-ping-ping", 14, 0);
        zmq_recv(c, buf, sizeof buf, 0);
        if (i >= 100)
            t[i - 100] = clock_mono_us() - t0;
    }
    qsort(t, (size_t)count, sizeof *t, s_cmp);
    *p50 = t[count / 2];
    free(t);
    zmq_close(c);
    a.stop = 1;
    pthread_join(th, NULL);
}

static pid_t s_broker(const char *bin, const char *endpoint)
{
    pid_t pid = fork();
    if (pid == 0) {
        execl(bin, bin, "--endpoint", endpoint, "--tap", "", "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    usleep(200000);
    return pid;
}

int main(int argc, char **argv)
{
    long frames = 2000000, workers = 2, rtt = 20000, burst = 1000, inflight = 8;
    const char *broker_bin = MAP_BROKER_BIN;
    flag_t table[] = {
        {"frames", NULL, FLAG_INT, &frames, 1000, 1000000000, "stream frames to move"},
        {"workers", NULL, FLAG_INT, &workers, 1, 64, "worker threads"},
        {"burst", NULL, FLAG_INT, &burst, 1, 1000000, "stream frames per request"},
        {"inflight", NULL, FLAG_INT, &inflight, 1, 1000, "requests in flight"},
        {"rtt", NULL, FLAG_INT, &rtt, 100, 10000000, "round trips per measurement"},
        {"broker-bin", NULL, FLAG_STR, &broker_bin, 0, 0, "map-broker binary"},
    };
    char err[256];
    int rc = flags_parse(table, 6, argc, argv, "broker_bench: frames/s and round trips through the broker",
                         err, sizeof err);
    if (rc)
        return rc == 1 ? 0 : (fprintf(stderr, "broker_bench: %s\n", err), 2);
    alarm(300); /* bounded whatever happens */
    char ipc[96], tcp[64], raw[96];
    snprintf(ipc, sizeof ipc, "ipc:///tmp/map-bench-%d.ipc", (int)getpid());
    snprintf(raw, sizeof raw, "ipc:///tmp/map-bench-raw-%d.ipc", (int)getpid());
    snprintf(tcp, sizeof tcp, "tcp://127.0.0.1:%d", 20000 + (int)(getpid() % 20000));
    void *ctx = zmq_ctx_new();
    int errors = 0;

    /* 1. Stream frames through the broker over ipc. */
    pid_t bpid = s_broker(broker_bin, ipc);
    s_worker_arg_t wa = {ctx, ipc, burst, 0};
    pthread_t th[64];
    for (long i = 0; i < workers; i++)
        pthread_create(&th[i], NULL, s_worker, &wa);
    pthread_t rtt_th;
    pthread_create(&rtt_th, NULL, s_rtt_worker, &wa);
    void *c = s_dealer(ctx, ipc);
    s_ready(c, "bench-client", 0);
    usleep(300000);
    long requests = frames / burst;
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
    int timeout = 5000;
    zmq_setsockopt(c, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    while (replies < requests) {
        frame_t f;
        if (s_recv_frame(c, &f, in, sizeof in) != 0) {
            fprintf(stderr, "broker_bench: lost frames (%ld of %ld replies)\n", replies, requests);
            errors++;
            break;
        }
        if (f.type == FRAME_STREAM) {
            streamed++;
        } else if (f.type == FRAME_REPLY) {
            replies++;
            if (sent < requests) {
                req.id = (uint64_t)++sent;
                size_t n = frame_encode(&req, hdr, sizeof hdr);
                s_send_hdr(c, hdr, n, "\x80", 1);
            }
        } else if (f.type == FRAME_ERROR) {
            fprintf(stderr, "broker_bench: error %.*s\n", (int)f.code_len, f.code);
            errors++;
            break;
        }
    }
    double secs = (double)(clock_mono_us() - t0) / 1e6;
    if (streamed != (uint64_t)(requests * burst))
        errors++;
    double fps = (double)(streamed + (uint64_t)replies) / secs;
    zmq_close(c);
    printf("stream: %llu frames + %ld replies in %.2f s over ipc, %ld workers: %.0f frames/s\n",
           (unsigned long long)streamed, replies, secs, workers, fps);

    /* 2. Round trip through the broker over ipc. */
    int64_t p50_ipc, p99_ipc;
    errors += s_rtt(ctx, ipc, rtt, &p50_ipc, &p99_ipc);
    printf("round trip via broker, ipc: p50 %lld us, p99 %lld us\n", (long long)p50_ipc,
           (long long)p99_ipc);
    wa.stop = 1;
    for (long i = 0; i < workers; i++)
        pthread_join(th[i], NULL);
    pthread_join(rtt_th, NULL);
    kill(bpid, SIGTERM);
    waitpid(bpid, NULL, 0);

    /* ... and over tcp. */
    bpid = s_broker(broker_bin, tcp);
    s_worker_arg_t ta = {ctx, tcp, burst, 0};
    pthread_create(&rtt_th, NULL, s_rtt_worker, &ta);
    int64_t p50_tcp, p99_tcp;
    errors += s_rtt(ctx, tcp, rtt, &p50_tcp, &p99_tcp);
    printf("round trip via broker, tcp: p50 %lld us, p99 %lld us\n", (long long)p50_tcp,
           (long long)p99_tcp);
    ta.stop = 1;
    pthread_join(rtt_th, NULL);
    kill(bpid, SIGTERM);
    waitpid(bpid, NULL, 0);

    /* 3. The floor. */
    int64_t raw_p50;
    s_raw_rtt(ctx, raw, rtt, &raw_p50);
    printf("raw DEALER<->ROUTER round trip, ipc: p50 %lld us (broker adds %.2fx)\n",
           (long long)raw_p50, raw_p50 ? (double)p50_ipc / (double)raw_p50 : 0.0);
    zmq_ctx_term(ctx);
    if (errors)
        fprintf(stderr, "broker_bench: %d error(s)\n", errors);
    printf("{\"bench\":\"broker\",\"frames_per_s\":%.0f,\"rtt_p50_us_ipc\":%lld,"
           "\"raw_rtt_p50_us_ipc\":%lld,\"rtt_p50_us_tcp\":%lld,\"rtt_p99_us_ipc\":%lld,"
           "\"errors\":%d}\n",
           fps, (long long)p50_ipc, (long long)raw_p50, (long long)p50_tcp, (long long)p99_ipc,
           errors);
    return errors ? 1 : 0;
}
