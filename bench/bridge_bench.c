/* bench_bridge: what the HTTP/SSE bridge costs against a native worker.
 *
 * One process, threads: a broker (broker.h), the bridge (bridge.h) serving
 * "bridge", a fast local SSE agent (a tiny HTTP/1.1 keep-alive server on
 * one epoll thread that answers POST /invoke with one `delta` event per word
 * of the input, chunked, all at once, then `done`), and a native worker serving "agent.bench" that
 * does the same over the worker library (what map-echo --delay-ms 0 does).
 * The main thread is a requester on a raw DEALER, so the requesting side is
 * the same for both paths and costs nothing of the worker library. With
 * --echo-bin and --bridge-bin, the real map-echo (--delay-ms 0) and
 * map-bridge run as processes instead (scripts/bench.sh can pass them).
 * The CPU lines show where the time goes, per thread of this process.
 *
 * Phases, each on both paths: sequential runs (latency from REQUEST to the
 * first delta and to the reply), then --rounds rounds of native then bridge,
 * each with --concurrency runs in flight until its share of --runs is done
 * (deltas per second; the figures are medians over the rounds, the ratio
 * the median of the rounds' ratios). Every run is checked: exactly the
 * expected deltas, joined equal to the input, and the reply's content equal
 * to the input; any mismatch or error fails the bench (exit 1).
 *
 * Runs have 100 words (deltas) by default, the run shape of bench_store and
 * bench_edge: an answer of a paragraph. The bridge pays one HTTP request
 * and response per run on top of the native path, so its share of the
 * native rate grows with the answer: --words 20 shows short answers.
 *
 * Last line: {"bench":"bridge","deltas_per_s_bridge":..,"deltas_per_s_native":..,
 * "added_p50_us":..,...} where added_p50_us is the median first-delta
 * latency through the bridge minus the native one. */
#include "agents/bridge/bridge.h"
#include "worker/worker.h"
#include "broker/broker.h"
#include "common/clock.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/mem.h"
#include "common/sbuf.h"
#include "proto/agent.h"
#include "proto/frame.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define NATIVE_AGENT "bench"
#define NATIVE_SERVICE "agent." NATIVE_AGENT
#define REQ_BODY_MAX (1u << 20)

/* ---- shared: the words of a text, each with the whitespace before it ---- */

typedef struct {
    const char *p;
    size_t len;
} word_t;

/* Returns the number of words; fills at most max. */
static size_t s_words(const char *text, size_t len, word_t *out, size_t max)
{
    size_t n = 0, i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && text[i] == ' ')
            i++;
        while (i < len && text[i] != ' ')
            i++;
        if (n < max)
            out[n] = (word_t){text + start, i - start};
        n++;
    }
    return n;
}

/* ---- the fast local SSE agent ------------------------------------------ */

static void s_chunk(sbuf_t *out, const char *data, size_t len)
{
    sbuf_catf(out, "%zx\r\n", len);
    sbuf_cat(out, data, len);
    sbuf_cats(out, "\r\n");
}

/* The input's content in a request body from the bridge, which writes
 * compact JSON with input_message as {"role":..,"content":..}: found with
 * memmem when it has no escapes, else with jansson. Returns 0 and a copy in
 * out, or -1. */
static int s_agent_content(const char *body, size_t len, sbuf_t *out)
{
    static const char key[] = "\"input_message\":{\"role\":\"user\",\"content\":\"";
    const char *p = memmem(body, len, key, sizeof key - 1);
    if (p) {
        const char *s = p + sizeof key - 1, *end = body + len, *q = s;
        while (q < end && *q != '"' && *q != '\\')
            q++;
        if (q < end && *q == '"')
            return sbuf_cat(out, s, (size_t)(q - s));
    }
    json_error_t jerr;
    json_t *j = json_loadb(body, len, 0, &jerr);
    json_t *c = json_object_get(json_object_get(j, "input_message"), "content");
    int rc = json_is_string(c) ? sbuf_cat(out, json_string_value(c), json_string_length(c)) : -1;
    json_decref(j);
    return rc;
}

/* The answer's cache: the chunked SSE body for the last content seen (every
 * run of a phase sends the same input, and building it is not the bridge's
 * cost). */
typedef struct {
    sbuf_t content, body, in, ev;
} agent_cache_t;

/* Appends the whole chunked SSE answer to one request body. */
static void s_agent_answer(const char *req, size_t len, sbuf_t *out, agent_cache_t *k)
{
    sbuf_cats(out, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                   "Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n");
    sbuf_reset(&k->in);
    if (s_agent_content(req, len, &k->in) == 0 && k->body.len && k->in.len == k->content.len &&
        memcmp(k->in.data, k->content.data, k->in.len) == 0) {
        sbuf_cat(out, k->body.data, k->body.len);
        return;
    }
    const char *content = k->in.len ? k->in.data : "";
    size_t clen = k->in.len, i = 0;
    sbuf_reset(&k->body);
    while (i < clen) {
        size_t start = i;
        while (i < clen && content[i] == ' ')
            i++;
        while (i < clen && content[i] != ' ')
            i++;
        sbuf_reset(&k->ev);
        sbuf_cats(&k->ev, "event: delta\ndata: {\"delta\":");
        sbuf_json_str(&k->ev, content + start, i - start);
        sbuf_cats(&k->ev, "}\n\n");
        s_chunk(&k->body, k->ev.data, k->ev.len);
    }
    sbuf_reset(&k->ev);
    sbuf_cats(&k->ev, "event: done\ndata: {\"output\":{\"role\":\"assistant\",\"content\":");
    sbuf_json_str(&k->ev, content, clen);
    sbuf_cats(&k->ev, "}}\n\n");
    s_chunk(&k->body, k->ev.data, k->ev.len);
    sbuf_cats(&k->body, "0\r\n\r\n");
    sbuf_reset(&k->content);
    sbuf_cat(&k->content, content, clen);
    sbuf_cat(out, k->body.data, k->body.len);
}

/* One connection of the agent: input bytes, and the answers not yet written. */
typedef struct {
    int fd;
    char *buf;                  /* REQ_BUF + 1 bytes */
    size_t len;                 /* input bytes held */
    sbuf_t out;                 /* answers to write */
    size_t sent;                /* bytes of out written */
    int want_out;               /* EPOLLOUT is on */
} aconn_t;

#define REQ_BUF (REQ_BODY_MAX + 8192)

static void s_aconn_close(int ep, aconn_t *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    sbuf_free(&c->out);
    mem_free(c->buf);
    mem_free(c);
}

/* Answers every whole request held. Returns 0, or -1 on a bad one. */
static int s_aconn_answer(aconn_t *c, agent_cache_t *ev)
{
    for (;;) {
        c->buf[c->len] = '\0';
        char *end = strstr(c->buf, "\r\n\r\n");
        if (!end)
            return c->len == REQ_BUF ? -1 : 0;
        size_t hdr_len = (size_t)(end - c->buf) + 4;
        const char *cl = strcasestr(c->buf, "\r\ncontent-length:");
        long body_len = 0;
        if (cl && cl < end)
            body_len = strtol(cl + 17, NULL, 10);
        if (body_len < 0 || (size_t)body_len > REQ_BODY_MAX)
            return -1;
        size_t need = hdr_len + (size_t)body_len;
        if (c->len < need)
            return 0;
        s_agent_answer(c->buf + hdr_len, need - hdr_len, &c->out, ev);
        if (c->out.overflow)
            return -1;
        memmove(c->buf, c->buf + need, c->len - need);
        c->len -= need;
    }
}

/* Writes what it can of the answers. Returns 0, or -1 on a dead peer. */
static int s_aconn_write(int ep, aconn_t *c)
{
    while (c->sent < c->out.len) {
        ssize_t n = write(c->fd, c->out.data + c->sent, c->out.len - c->sent);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0)
            return -1;
        c->sent += (size_t)n;
    }
    if (c->sent == c->out.len) {
        sbuf_reset(&c->out);
        c->sent = 0;
    }
    int want = c->out.len > 0;
    if (want != c->want_out) {
        struct epoll_event e = {.events = EPOLLIN | (want ? EPOLLOUT : 0u), .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
        c->want_out = want;
    }
    return 0;
}

/* Reads what is there; answers it. Returns 0, or -1 to close. */
static int s_aconn_read(int ep, aconn_t *c, agent_cache_t *ev)
{
    for (;;) {
        if (c->len == REQ_BUF)
            return -1;
        ssize_t n = read(c->fd, c->buf + c->len, REQ_BUF - c->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0)
            return -1;
        size_t room = REQ_BUF - c->len;
        c->len += (size_t)n;
        if (s_aconn_answer(c, ev))
            return -1;
        if ((size_t)n < room)
            break; /* a short read took all there was: epoll says when more comes */
    }
    return s_aconn_write(ep, c);
}

/* The agent: one thread, one epoll set, every connection non-blocking (as a
 * fast event-loop HTTP server would be: no thread wake-up per request). */
static void *s_agent_thread(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    pthread_setname_np(pthread_self(), "agent");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
    if (ep < 0 || fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK) || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e)) {
        fprintf(stderr, "bench_bridge: agent: epoll: %s\n", strerror(errno));
        exit(1);
    }
    agent_cache_t ev;
    sbuf_init(&ev.content, REQ_BODY_MAX);
    sbuf_init(&ev.in, REQ_BODY_MAX);
    sbuf_init(&ev.body, 64u << 20);
    sbuf_init(&ev.ev, 1u << 20);
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            aconn_t *c = evs[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    int one = 1;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    c = mem_alloc(sizeof *c);
                    c->fd = fd;
                    c->buf = mem_alloc(REQ_BUF + 1);
                    sbuf_init(&c->out, 64u << 20);
                    struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce))
                        s_aconn_close(ep, c);
                }
                continue;
            }
            int rc = 0;
            if (evs[i].events & EPOLLOUT)
                rc = s_aconn_write(ep, c);
            if (rc == 0 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                rc = s_aconn_read(ep, c, &ev);
            if (rc)
                s_aconn_close(ep, c);
        }
    }
    return NULL;
}

/* Listens on 127.0.0.1 (port 0 = any free one). Returns the fd and port. */
static int s_listen(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 1024) ||
        getsockname(fd, (struct sockaddr *)&a, &alen)) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

/* ---- the native worker: map-echo with no delay ------------------------- */

static mp_buf_t s_native_out;

static void s_native_request(worker_t *w, uint64_t id, const uint8_t *body, size_t len, void *arg)
{
    agent_invoke_t inv;
    if (agent_decode_invoke(body, len, &inv) != AGENT_OK) {
        worker_fail(w, id, "bad_request", "bad invoke body");
        return;
    }
    const char *c = inv.input.content.ptr;
    size_t clen = inv.input.content.len, i = 0;
    while (i < clen) {
        size_t start = i;
        while (i < clen && c[i] == ' ')
            i++;
        while (i < clen && c[i] != ' ')
            i++;
        mp_buf_reset(&s_native_out);
        agent_encode_delta(&s_native_out, c + start, i - start);
        if (worker_stream(w, id, s_native_out.data, s_native_out.len))
            return;
    }
    mp_buf_reset(&s_native_out);
    agent_encode_done(&s_native_out, "assistant", c, clen);
    worker_reply(w, id, s_native_out.data, s_native_out.len);
}

static volatile sig_atomic_t s_stop_native, s_stop_bridge, s_stop_broker;
static const char *s_broker_ep;

static void *s_native_thread(void *arg)
{
    pthread_setname_np(pthread_self(), "native");
    worker_handlers_t h = {.on_request = s_native_request};
    worker_config_t cfg = {.endpoint = s_broker_ep, .service = NATIVE_SERVICE, .capacity = 1000};
    char err[256];
    mp_buf_init(&s_native_out, 1u << 20);
    worker_t *w = worker_new(&cfg, &h, NULL, err, sizeof err);
    if (!w) {
        fprintf(stderr, "bench_bridge: native worker: %s\n", err);
        exit(1);
    }
    worker_run(w, &s_stop_native);
    worker_destroy(&w);
    mp_buf_free(&s_native_out);
    return NULL;
}

static void *s_bridge_thread(void *arg)
{
    pthread_setname_np(pthread_self(), "bridge");
    bridge_run(arg, &s_stop_bridge);
    return NULL;
}

static void *s_broker_thread(void *arg)
{
    pthread_setname_np(pthread_self(), "broker");
    broker_run(arg, &s_stop_broker);
    return NULL;
}

/* ---- processes (--echo-bin, --bridge-bin) ------------------------------ */

static pid_t s_spawn(char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        fprintf(stderr, "bench_bridge: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

static void s_reap_child(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    int status;
    waitpid(pid, &status, 0);
}

/* ---- the requester ----------------------------------------------------- */

typedef struct {
    int64_t t0, t_first, t_done; /* µs */
    size_t deltas;               /* received */
    size_t matched;              /* bytes of the input matched so far */
    int ok;                      /* reply received and checked */
    int failed;
} run_t;

typedef struct {
    void *sock;
    uint64_t base;               /* request id of runs[0] */
    run_t *runs;
    size_t nruns;
    const char *content;         /* every run sends the same input */
    size_t clen, words;
    size_t finished, errors;
    int64_t last_hb;
    int quiet;                   /* warm-up: errors expected, not shown */
} req_t;

static void s_send(void *sock, const uint8_t *hdr, size_t hlen, const void *body, size_t blen)
{
    int flags = body ? ZMQ_SNDMORE : 0;
    if (zmq_send(sock, hdr, hlen, flags) < 0 || (body && zmq_send(sock, body, blen, 0) < 0)) {
        fprintf(stderr, "bench_bridge: send failed: %s\n", zmq_strerror(errno));
        exit(1);
    }
}

static void s_heartbeat(req_t *r)
{
    int64_t now = clock_mono_ms();
    if (now - r->last_hb < 300)
        return;
    r->last_hb = now;
    uint8_t hdr[16];
    size_t n = frame_encode_id(FRAME_HEARTBEAT, 0, hdr, sizeof hdr);
    s_send(r->sock, hdr, n, NULL, 0);
}

static void s_invoke(req_t *r, size_t i, const char *service, const char *endpoint, mp_buf_t *b)
{
    agent_invoke_t inv = {0};
    char run_id[32];
    snprintf(run_id, sizeof run_id, "run_%zu", i);
    inv.run_id = (agent_str_t){run_id, (uint32_t)strlen(run_id)};
    inv.session_id = (agent_str_t){"bench", 5};
    inv.agent_id = (agent_str_t){"bench", 5};
    inv.input.role = (agent_str_t){"user", 4};
    inv.input.content = (agent_str_t){r->content, (uint32_t)r->clen};
    if (endpoint)
        inv.endpoint = (agent_str_t){endpoint, (uint32_t)strlen(endpoint)};
    mp_buf_reset(b);
    agent_encode_invoke(b, &inv, NULL, 0);
    frame_t f = {.type = FRAME_REQUEST, .id = r->base + i, .service = service,
                 .service_len = (uint32_t)strlen(service)};
    uint8_t hdr[FRAME_HEADER_MAX];
    size_t n = frame_encode(&f, hdr, sizeof hdr);
    r->runs[i].t0 = clock_mono_us();
    s_send(r->sock, hdr, n, b->data, b->len);
}

/* Receives what is ready (waiting up to timeout_ms for the first). */
static void s_receive(req_t *r, long timeout_ms)
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
        while (zmq_msg_more(&body)) { /* never expected: drop extra parts */
            zmq_msg_close(&body);
            zmq_msg_init(&body);
            zmq_msg_recv(&body, r->sock, 0);
        }
        int64_t now = clock_mono_us();
        frame_t f;
        if (frame_decode(zmq_msg_data(&hdr), zmq_msg_size(&hdr), more, &f) == FRAME_OK &&
            f.id >= r->base && f.id < r->base + r->nruns) {
            run_t *run = &r->runs[f.id - r->base];
            agent_str_t d;
            agent_msg_t out;
            if (run->ok || run->failed) {
                /* a frame after the final: counts as an error */
                r->errors++;
            } else if (f.type == FRAME_STREAM &&
                       agent_decode_delta(zmq_msg_data(&body), zmq_msg_size(&body), &d) == AGENT_OK) {
                if (!run->t_first)
                    run->t_first = now;
                run->deltas++;
                if (run->matched + d.len > r->clen || memcmp(r->content + run->matched, d.ptr, d.len))
                    run->failed = 1;
                run->matched += d.len;
            } else if (f.type == FRAME_REPLY &&
                       agent_decode_done(zmq_msg_data(&body), zmq_msg_size(&body), &out) == AGENT_OK) {
                run->t_done = now;
                run->ok = out.content.len == r->clen && !memcmp(out.content.ptr, r->content, r->clen) &&
                          run->deltas == r->words && run->matched == r->clen;
                run->failed = !run->ok;
            } else {
                if (f.type == FRAME_ERROR && r->errors < 5 && !r->quiet)
                    fprintf(stderr, "bench_bridge: run %llu: %.*s: %.*s\n",
                            (unsigned long long)(f.id - r->base), (int)f.code_len, f.code,
                            (int)f.message_len, f.message);
                run->failed = 1;
            }
            if (run->ok || run->failed) {
                r->finished++;
                if (run->failed)
                    r->errors++;
            }
        }
        zmq_msg_close(&hdr);
        zmq_msg_close(&body);
    }
}

/* CPU time (ms) and context switches (the thread blocked or was
 * preempted: about one per wake-up) of each thread of this process, summed
 * by thread name. */
typedef struct {
    char name[8][16];
    double ms[8];
    double switches[8];
    int n;
} cpu_t;

/* Voluntary + involuntary context switches of one thread of this process. */
static double s_switches(const char *tid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/self/task/%.20s/status", tid);
    FILE *f = fopen(path, "r");
    double n = 0;
    unsigned long v;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "voluntary_ctxt_switches: %lu", &v) == 1 ||
            sscanf(line, "nonvoluntary_ctxt_switches: %lu", &v) == 1)
            n += (double)v;
    if (f)
        fclose(f);
    return n;
}

static void s_cpu(cpu_t *c)
{
    memset(c, 0, sizeof *c);
    char path[64];
    DIR *ls = opendir("/proc/self/task");
    struct dirent *de;
    long tick = sysconf(_SC_CLK_TCK);
    while (ls && (de = readdir(ls))) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "/proc/self/task/%.20s/stat", de->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        char line[1024];
        if (fgets(line, sizeof line, f)) {
            char *open = strchr(line, '('), *close_ = strrchr(line, ')');
            unsigned long ut = 0, st = 0;
            if (open && close_ &&
                sscanf(close_ + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2) {
                char name[16];
                snprintf(name, sizeof name, "%.*s", (int)(close_ - open - 1), open + 1);
                int k = 0;
                while (k < c->n && strcmp(c->name[k], name))
                    k++;
                if (k == c->n && c->n < 8)
                    snprintf(c->name[c->n++], 16, "%s", name);
                if (k < 8)
                    c->ms[k] += (double)(ut + st) * 1000.0 / (double)tick;
                if (k < 8)
                    c->switches[k] += s_switches(de->d_name);
            }
        }
        fclose(f);
    }
    if (ls)
        closedir(ls);
}

/* acc += b - a, thread name by thread name. */
static void s_cpu_acc(cpu_t *acc, const cpu_t *a, const cpu_t *b)
{
    for (int k = 0; k < b->n; k++) {
        double before = 0;
        for (int j = 0; j < a->n; j++)
            if (!strcmp(a->name[j], b->name[k]))
                before = a->ms[j];
        double sw_before = 0;
        for (int j = 0; j < a->n; j++)
            if (!strcmp(a->name[j], b->name[k]))
                sw_before = a->switches[j];
        int i = 0;
        while (i < acc->n && strcmp(acc->name[i], b->name[k]))
            i++;
        if (i == acc->n && acc->n < 8)
            snprintf(acc->name[acc->n++], 16, "%s", b->name[k]);
        if (i < 8) {
            acc->ms[i] += b->ms[k] - before;
            acc->switches[i] += b->switches[k] - sw_before;
        }
    }
}

static void s_cpu_print(const char *what, const cpu_t *c, double wall_ms)
{
    printf("cpu %s (wall %.0f ms):", what, wall_ms);
    for (int k = 0; k < c->n; k++)
        if (c->ms[k] > 0)
            printf(" %s=%.0f", c->name[k], c->ms[k]);
    printf(" ms; context switches:");
    for (int k = 0; k < c->n; k++)
        if (c->switches[k] > 0)
            printf(" %s=%.0f", c->name[k], c->switches[k]);
    printf("\n");
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of n values (sorts them). */
static double s_median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, s_cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double deltas_per_s;
    int64_t first_p50, first_p99, done_p50; /* µs */
    size_t errors;
} result_t;

/* n runs, at most inflight at once; returns the measurements. */
static result_t s_phase(req_t *r, size_t n, size_t inflight, const char *service, const char *endpoint,
                        mp_buf_t *b, int64_t *firsts_out)
{
    r->base += r->nruns + 1;
    r->runs = mem_realloc(r->runs, n * sizeof *r->runs);
    memset(r->runs, 0, n * sizeof *r->runs);
    r->nruns = n;
    r->finished = r->errors = 0;
    size_t sent = 0;
    int64_t t0 = clock_mono_us(), deadline = clock_mono_ms() + 120000;
    while (r->finished < n) {
        while (sent < n && sent - r->finished < inflight)
            s_invoke(r, sent++, service, endpoint, b);
        s_receive(r, 100);
        s_heartbeat(r);
        if (clock_mono_ms() > deadline) {
            fprintf(stderr, "bench_bridge: %s: only %zu of %zu runs finished in 120 s\n", service,
                    r->finished, n);
            exit(1);
        }
    }
    int64_t elapsed = clock_mono_us() - t0;
    result_t res = {.errors = r->errors};
    int64_t *first = mem_alloc(n * sizeof *first), *done = mem_alloc(n * sizeof *done);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        first[i] = r->runs[i].t_first ? r->runs[i].t_first - r->runs[i].t0 : 0;
        done[i] = r->runs[i].t_done ? r->runs[i].t_done - r->runs[i].t0 : 0;
        total += r->runs[i].deltas;
    }
    if (firsts_out)
        memcpy(firsts_out, first, n * sizeof *first);
    qsort(first, n, sizeof *first, s_cmp_i64);
    qsort(done, n, sizeof *done, s_cmp_i64);
    res.first_p50 = first[n / 2];
    res.first_p99 = first[n * 99 / 100];
    res.done_p50 = done[n / 2];
    res.deltas_per_s = elapsed > 0 ? (double)total * 1e6 / (double)elapsed : 0;
    mem_free(first);
    mem_free(done);
    return res;
}

int main(int argc, char **argv)
{
    long runs = 10000, words = 100, concurrency = 32, seq_runs = 1000, rounds = 5;
    const char *level = "warn", *echo_bin = "", *bridge_bin = "";
    flag_t table[] = {
        {"echo-bin", NULL, FLAG_STR, &echo_bin, 0, 0,
         "run this map-echo (--delay-ms 0) as the native worker instead of one in this process"},
        {"bridge-bin", NULL, FLAG_STR, &bridge_bin, 0, 0,
         "run this map-bridge instead of the bridge in this process"},
        {"runs", NULL, FLAG_INT, &runs, 1, 10000000, "runs of the throughput phase, per path"},
        {"rounds", NULL, FLAG_INT, &rounds, 1, 100, "throughput rounds (native then bridge); figures are medians"},
        {"words", NULL, FLAG_INT, &words, 1, 10000, "words (deltas) per run"},
        {"concurrency", NULL, FLAG_INT, &concurrency, 1, 10000, "runs in flight in the throughput phase"},
        {"seq-runs", NULL, FLAG_INT, &seq_runs, 1, 1000000, "sequential runs of the latency phase, per path"},
        {"log-level", "MAP_LOG_LEVEL", FLAG_STR, &level, 0, 0, "log level of the bridge and broker"},
    };
    char err[256];
    int rc = flags_parse(table, sizeof table / sizeof *table, argc, argv,
                         "bench_bridge: deltas/s and added latency of the HTTP/SSE bridge against a native worker",
                         err, sizeof err);
    if (rc == 1)
        return 0;
    log_init("bench");
    if (rc < 0 || log_set_level(level)) {
        fprintf(stderr, "bench_bridge: %s\n", rc < 0 ? err : "bad --log-level");
        return 2;
    }
    if ((size_t)words * 12 + 64 > REQ_BODY_MAX / 2) {
        fprintf(stderr, "bench_bridge: --words too large\n");
        return 2;
    }

    /* The fast agent. */
    int aport = 0, lfd = s_listen(&aport);
    if (lfd < 0) {
        fprintf(stderr, "bench_bridge: cannot listen on 127.0.0.1\n");
        return 1;
    }
    pthread_t agent_t;
    pthread_create(&agent_t, NULL, s_agent_thread, (void *)(intptr_t)lfd);
    pthread_detach(agent_t);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "http://127.0.0.1:%d", aport);

    /* The broker, on a port that was free a moment ago. */
    int bport = 0, tmp = s_listen(&bport);
    close(tmp);
    char broker_ep[64];
    snprintf(broker_ep, sizeof broker_ep, "tcp://127.0.0.1:%d", bport);
    s_broker_ep = broker_ep;
    broker_config_t bcfg = {.endpoint = broker_ep, .tap_endpoint = "", .heartbeat_ms = 1000, .liveness = 5,
                            .queue_max = 100000, .body_max = FRAME_BODY_MAX_DEFAULT, .tap_hwm = 1000};
    broker_t *broker = broker_new(&bcfg, err, sizeof err);
    if (!broker) {
        fprintf(stderr, "bench_bridge: broker: %s\n", err);
        return 1;
    }
    bridge_t *bridge = NULL;
    pid_t bridge_pid = 0, echo_pid = 0;
    char cap_text[24];
    snprintf(cap_text, sizeof cap_text, "%ld", concurrency < 256 ? 256 : concurrency);
    if (*bridge_bin) {
        char *argv_[] = {(char *)bridge_bin, "--broker", broker_ep, "--capacity", cap_text,
                         "--log-level", (char *)level, NULL};
        bridge_pid = s_spawn(argv_);
    } else {
        bridge_config_t gcfg = {.broker = broker_ep, .capacity = (uint32_t)atol(cap_text),
                                .timeout_ms = 30000, .max_response = 8u << 20};
        bridge = bridge_new(&gcfg, err, sizeof err);
        if (!bridge) {
            fprintf(stderr, "bench_bridge: bridge: %s\n", err);
            return 1;
        }
    }
    if (*echo_bin) {
        char *argv_[] = {(char *)echo_bin, "--broker", broker_ep, "--agent", NATIVE_AGENT,
                         "--delay-ms", "0", "--capacity", "1000", "--log-level", (char *)level, NULL};
        echo_pid = s_spawn(argv_);
    }
    pthread_t broker_t_, bridge_t_, native_t;
    pthread_create(&broker_t_, NULL, s_broker_thread, broker);
    if (bridge)
        pthread_create(&bridge_t_, NULL, s_bridge_thread, bridge);
    if (!echo_pid)
        pthread_create(&native_t, NULL, s_native_thread, NULL);
    printf("bench_bridge: bridge %s, native worker %s\n", bridge ? "in this process" : bridge_bin,
           echo_pid ? echo_bin : "in this process (what map-echo --delay-ms 0 does)");

    /* The requester. */
    void *ctx = zmq_ctx_new();
    req_t r = {0};
    r.sock = zmq_socket(ctx, ZMQ_DEALER);
    int hwm = 0, linger = 0;
    zmq_setsockopt(r.sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(r.sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(r.sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect(r.sock, broker_ep);
    {
        frame_t f = {.type = FRAME_READY, .service = "bench", .service_len = 5, .capacity = 0};
        uint8_t hdr[FRAME_HEADER_MAX];
        s_send(r.sock, hdr, frame_encode(&f, hdr, sizeof hdr), NULL, 0);
    }
    sbuf_t content;
    sbuf_init(&content, REQ_BODY_MAX);
    for (long i = 0; i < words; i++)
        sbuf_catf(&content, "%sword%ld", i ? " " : "", i);
    r.content = content.data;
    r.clen = content.len;
    r.words = s_words(r.content, r.clen, NULL, 0);
    mp_buf_t b;
    mp_buf_init(&b, REQ_BODY_MAX);

    /* Warm-up: both services known to the broker, connections open. Runs
     * that meet unknown_service are retried for up to 10 s. */
    int64_t until = clock_mono_ms() + 10000;
    r.quiet = 1;
    for (;;) {
        result_t w1 = s_phase(&r, 20, 20, "bridge", endpoint, &b, NULL);
        result_t w2 = s_phase(&r, 20, 20, NATIVE_SERVICE, NULL, &b, NULL);
        if (!w1.errors && !w2.errors)
            break;
        if (clock_mono_ms() > until) {
            fprintf(stderr, "bench_bridge: warm-up runs keep failing\n");
            return 1;
        }
        usleep(100000);
    }
    r.quiet = 0;

    printf("bench_bridge: %ld words per run; latency: %ld sequential runs; throughput: %ld runs, %ld in flight\n",
           words, seq_runs, runs, concurrency);
    /* Latency: both paths in turns, so that a busy neighbour on the machine
     * slows both alike. */
    enum { TURNS = 5 };
    size_t per = (size_t)seq_runs / TURNS ? (size_t)seq_runs / TURNS : 1;
    int64_t *lat_n = mem_alloc(per * TURNS * sizeof *lat_n), *lat_b = mem_alloc(per * TURNS * sizeof *lat_b);
    result_t nl = {0}, bl = {0};
    for (int t = 0; t < TURNS; t++) {
        result_t x = s_phase(&r, per, 1, NATIVE_SERVICE, NULL, &b, lat_n + t * per);
        result_t y = s_phase(&r, per, 1, "bridge", endpoint, &b, lat_b + t * per);
        nl.errors += x.errors;
        bl.errors += y.errors;
    }
    qsort(lat_n, per * TURNS, sizeof *lat_n, s_cmp_i64);
    qsort(lat_b, per * TURNS, sizeof *lat_b, s_cmp_i64);
    nl.first_p50 = lat_n[per * TURNS / 2];
    nl.first_p99 = lat_n[per * TURNS * 99 / 100];
    bl.first_p50 = lat_b[per * TURNS / 2];
    bl.first_p99 = lat_b[per * TURNS * 99 / 100];
    mem_free(lat_n);
    mem_free(lat_b);
    printf("sequential  native: first delta p50 %lld us p99 %lld us\n", (long long)nl.first_p50,
           (long long)nl.first_p99);
    printf("sequential  bridge: first delta p50 %lld us p99 %lld us\n", (long long)bl.first_p50,
           (long long)bl.first_p99);
    /* Throughput: rounds, each native then bridge, so that a neighbour
     * that takes the machine for a while slows both alike; the figures
     * are the medians over the rounds. */
    cpu_t cn = {0}, cb = {0}, c0, c1, c2;
    double *rate_n = mem_alloc((size_t)rounds * sizeof *rate_n), *rate_b = mem_alloc((size_t)rounds * sizeof *rate_b);
    double *ratio_r = mem_alloc((size_t)rounds * sizeof *ratio_r);
    double *p50_n = mem_alloc((size_t)rounds * sizeof *p50_n), *p50_b = mem_alloc((size_t)rounds * sizeof *p50_b);
    double wall_n = 0, wall_b = 0;
    size_t per_round = (size_t)(runs / rounds) ? (size_t)(runs / rounds) : 1, t_errors = 0;
    for (long t = 0; t < rounds; t++) {
        s_cpu(&c0);
        int64_t w0 = clock_mono_us();
        result_t x = s_phase(&r, per_round, (size_t)concurrency, NATIVE_SERVICE, NULL, &b, NULL);
        int64_t w1 = clock_mono_us();
        s_cpu(&c1);
        result_t y = s_phase(&r, per_round, (size_t)concurrency, "bridge", endpoint, &b, NULL);
        int64_t w2 = clock_mono_us();
        s_cpu(&c2);
        s_cpu_acc(&cn, &c0, &c1);
        s_cpu_acc(&cb, &c1, &c2);
        wall_n += (double)(w1 - w0) / 1000.0;
        wall_b += (double)(w2 - w1) / 1000.0;
        rate_n[t] = x.deltas_per_s;
        rate_b[t] = y.deltas_per_s;
        ratio_r[t] = x.deltas_per_s > 0 ? y.deltas_per_s / x.deltas_per_s : 0;
        p50_n[t] = (double)x.first_p50;
        p50_b[t] = (double)y.first_p50;
        t_errors += x.errors + y.errors;
        printf("round %ld: native %.0f, bridge %.0f deltas/s, ratio %.2f\n", t + 1, rate_n[t], rate_b[t],
               ratio_r[t]);
    }
    s_cpu_print("native", &cn, wall_n);
    s_cpu_print("bridge", &cb, wall_b);
    double tn = s_median(rate_n, (size_t)rounds), tb = s_median(rate_b, (size_t)rounds);
    /* The ratio: the median of the rounds' ratios (each pairs two phases
     * run back to back, so it is the least disturbed figure). */
    double ratio = s_median(ratio_r, (size_t)rounds), ratio_lo = ratio_r[0], ratio_hi = ratio_r[rounds - 1];
    printf("throughput  native: %.0f deltas/s median (first delta p50 %.0f us)\n", tn,
           s_median(p50_n, (size_t)rounds));
    printf("throughput  bridge: %.0f deltas/s median (first delta p50 %.0f us)\n", tb,
           s_median(p50_b, (size_t)rounds));
    size_t errors = nl.errors + bl.errors + t_errors;
    printf("bridge/native throughput: %.2f median of the rounds (%.2f..%.2f), %.2f of the medians "
           "(target >= 0.5); errors: %zu\n",
           ratio, ratio_lo, ratio_hi, tn > 0 ? tb / tn : 0, errors);
    mem_free(rate_n);
    mem_free(rate_b);
    mem_free(ratio_r);
    mem_free(p50_n);
    mem_free(p50_b);

    s_stop_native = s_stop_bridge = 1;
    if (!echo_pid)
        pthread_join(native_t, NULL);
    if (bridge) {
        pthread_join(bridge_t_, NULL);
        bridge_stats_t gst;
        bridge_stats(bridge, &gst);
        printf("bridge: %llu invokes, %llu loop turns (%.1f per invoke), %llu connections\n",
               (unsigned long long)gst.invokes, (unsigned long long)gst.turns,
               gst.invokes ? (double)gst.turns / (double)gst.invokes : 0.0, (unsigned long long)gst.connects);
        bridge_destroy(&bridge);
    }
    s_reap_child(bridge_pid);
    s_reap_child(echo_pid);
    s_stop_broker = 1;
    pthread_join(broker_t_, NULL);
    broker_destroy(&broker);
    zmq_close(r.sock);
    zmq_ctx_term(ctx);
    mem_free(r.runs);
    mp_buf_free(&b);
    sbuf_free(&content);
    close(lfd);

    printf("{\"bench\":\"bridge\",\"deltas_per_s_bridge\":%.0f,\"deltas_per_s_native\":%.0f,"
           "\"added_p50_us\":%lld,\"first_delta_p50_us_bridge\":%lld,\"first_delta_p50_us_native\":%lld,"
           "\"ratio\":%.2f,\"words\":%ld,\"concurrency\":%ld,\"runs\":%ld,\"rounds\":%ld,\"errors\":%zu}\n",
           tb, tn, (long long)(bl.first_p50 - nl.first_p50), (long long)bl.first_p50,
           (long long)nl.first_p50, ratio, words, concurrency, runs, rounds, errors);
    return errors ? 1 : 0;
}
