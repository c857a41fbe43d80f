/* edge_bench: the whole platform seen from WebSocket clients (SPEC §4).
 *
 * Starts map-broker, map-orchestrator (fresh database), echo workers
 * (delay 0) and map-ingress itself, then drives them with lws WebSocket
 * clients in one thread:
 *
 *   1. latency: 1 connection, --lat-runs runs of 20 words one after the
 *      other: run latency (invoke sent → terminal event) and time to first
 *      delta, p50/p99;
 *   2. throughput: --conns connections, each --runs runs of --words words:
 *      deltas/s and runs/s delivered to the clients;
 *   3. idle: --idle connections that said hello and then wait: the
 *      ingress's resident memory;
 *   4. storm: one client runs 20-word runs one after the other while a
 *      second process opens --storm connections in a burst (each says
 *      hello, then holds): that client's run p50/p99 before, during (until
 *      the last storm connection has its hello_ok) and --storm-after
 *      seconds after, the storm held.
 *
 * --peer-url ws://host:port/path runs the same phases against a second
 * WebSocket URL (the original design's replica, ../shared/peer) right
 * after the platform, and prints the ratio of each figure from this run
 * (--peer-pid: its ingress, for the idle RSS).
 *
 * --tap ENDPOINT binds the broker's tap there (none by default: it costs
 * the broker a copy of every frame), so `map-tap --json` or any SUB reader
 * can take a timeline of the runs: the tap's meta has microsecond times.
 *
 * The clients run on libuv (epoll), as the edge does: a poll() over 10,000
 * descriptors in the bench itself would be measured as the edge's delay.
 *
 * Every event is checked: seq 1, 2, 3... per run, the deltas concatenate to
 * the input, the run ends run_done. Any mismatch: exit 1.
 * Last line: {"bench":"edge","deltas_per_s":…,"run_p50_ms_c1":…,"idle_10k_mb":…,
 * "storm_during_p99_ms":…,"storm_after_p99_ms":…, with a peer "peer_…" and "ratio_…"} */
#include "common/clock.h"
#include "common/flags.h"
#include "common/mem.h"
#include "common/sbuf.h"

#include <fcntl.h>
#include <libwebsockets.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#ifndef MAP_BIN_DIR
#define MAP_BIN_DIR "."
#endif

typedef struct {
    struct lws *wsi;
    int id;
    int state;            /* 0 connecting, 1 hello sent, 2 idle, 3 run sent, 4 done */
    int runs_left;
    int want_write;
    uint64_t next_seq;
    int64_t t_sent, t_first;
    sbuf_t got;           /* deltas of the current run */
    int closed;
} client_t;

static struct {
    struct lws_context *ctx;
    client_t *clients;
    int n;
    int words;
    char *input;
    size_t input_len;
    int64_t *lat, *first;
    size_t nlat;
    uint64_t deltas, runs, errors;
    int connected, established, finished, failed;
    int idle_mode;
    int phase;
    uv_loop_t loop;
    const char *host;     /* the phase's target */
    int port;
    const char *path;
} B;

static void s_fail(client_t *c, const char *why)
{
    if (B.errors++ < 5)
        fprintf(stderr, "edge_bench: client %d: %s\n", c->id, why);
}

static void s_run_done(client_t *c)
{
    int64_t now = clock_mono_us();
    if (B.nlat < 1000000) {
        B.lat[B.nlat] = now - c->t_sent;
        B.first[B.nlat] = c->t_first ? c->t_first - c->t_sent : now - c->t_sent;
        B.nlat++;
    }
    if (c->got.len != B.input_len || memcmp(c->got.data, B.input, B.input_len) != 0)
        s_fail(c, "the deltas do not rebuild the input");
    B.runs++;
    c->runs_left--;
    c->state = c->runs_left > 0 ? 2 : 4;
    if (c->state == 4)
        B.finished++;
    else
        lws_callback_on_writable(c->wsi);
}

/* Reads `"key":` followed by a number or a plain string (no escapes: our
 * inputs are ASCII words). */
static const char *s_field(const char *msg, const char *key, size_t *len)
{
    const char *p = strstr(msg, key);
    if (!p)
        return NULL;
    p += strlen(key);
    if (*p == '"') {
        const char *end = strchr(p + 1, '"');
        if (!end)
            return NULL;
        *len = (size_t)(end - p - 1);
        return p + 1;
    }
    *len = strspn(p, "0123456789");
    return p;
}

static void s_message(client_t *c, const char *msg)
{
    size_t len;
    if (c->state == 1) {
        if (!strstr(msg, "\"hello_ok\""))
            s_fail(c, "no hello_ok");
        c->state = B.idle_mode ? 4 : 2;
        B.established++;
        if (B.idle_mode)
            B.finished++;
        if (!B.idle_mode)
            lws_callback_on_writable(c->wsi);
        return;
    }
    if (strncmp(msg, "{\"type\":\"invoke_accepted\"", 25) == 0)
        return;
    if (strncmp(msg, "{\"type\":\"event\"", 15) != 0) {
        s_fail(c, msg);
        return;
    }
    const char *seq = s_field(msg, "\"seq\":", &len);
    const char *type = s_field(msg, "\"type\":", &len); /* the first is "event" */
    type = type ? s_field(type + len, "\"type\":", &len) : NULL;
    if (!seq || !type) {
        s_fail(c, "an event without seq or type");
        return;
    }
    if ((uint64_t)strtoull(seq, NULL, 10) != c->next_seq)
        s_fail(c, "seq out of order");
    c->next_seq++;
    if (len == 18 && !memcmp(type, "agent_stream_delta", 18)) {
        size_t dl;
        const char *d = s_field(msg, "\"delta\":", &dl);
        if (!c->t_first)
            c->t_first = clock_mono_us();
        if (d)
            sbuf_cat(&c->got, d, dl);
        B.deltas++;
    } else if (len == 8 && !memcmp(type, "run_done", 8)) {
        s_run_done(c);
    } else if (len == 10 && (!memcmp(type, "run_failed", 10))) {
        s_fail(c, "a run failed");
        s_run_done(c);
    }
}

static int s_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                      size_t len)
{
    client_t *c = user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        B.connected++;
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (lws_is_first_fragment(wsi))
            c->got.len = c->got.len; /* fragments are appended below */
        {
            static sbuf_t frag;
            static int init;
            if (!init) {
                sbuf_init(&frag, 1 << 24);
                init = 1;
            }
            if (lws_is_first_fragment(wsi))
                sbuf_reset(&frag);
            sbuf_cat(&frag, in, len);
            if (lws_is_final_fragment(wsi))
                s_message(c, sbuf_cstr(&frag));
        }
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        unsigned char buf[LWS_PRE + 65536];
        char *p = (char *)buf + LWS_PRE;
        int n = 0;
        if (c->state == 0) {
            /* A session per phase and client: request ids repeat across phases. */
            n = snprintf(p, 512, "{\"type\":\"hello\",\"session_id\":\"bench-%d-%d-%d\"}", getpid(),
                         B.phase, c->id);
            c->state = 1;
        } else if (c->state == 2) {
            n = snprintf(p, 65000,
                         "{\"type\":\"agent_invoke\",\"request_id\":\"r%d\",\"agent_id\":\"echo\","
                         "\"input_message\":{\"role\":\"user\",\"content\":\"%s\"}}",
                         c->runs_left, B.input);
            c->state = 3;
            c->next_seq = 1;
            c->t_first = 0;
            sbuf_reset(&c->got);
            c->t_sent = clock_mono_us();
        }
        if (n > 0 && lws_write(wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_TEXT) < n)
            return -1;
        return 0;
    }
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (c && !c->closed) {
            c->closed = 1;
            B.failed++;
            s_fail(c, in ? (const char *)in : "connection error");
        }
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
        if (c && !c->closed) {
            c->closed = 1;
            if (c->state != 4) {
                B.failed++;
                s_fail(c, "closed early");
            }
        }
        return 0;
    default:
        return 0;
    }
}

static struct lws_protocols s_protocols[] = {
    {"bench", s_callback, sizeof(client_t), 1 << 16, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* The loop waits for activity: a timer every 20 ms bounds each wait, so
 * the phase loops see their deadlines and their end. */
static lws_sorted_usec_list_t s_sul;
static void s_wake(lws_sorted_usec_list_t *sul)
{
    lws_sul_schedule(B.ctx, 0, sul, s_wake, 20 * 1000);
}

static void s_service(void)
{
    uv_run(&B.loop, UV_RUN_ONCE);
}

/* A client context on a loop of our own (libuv: epoll). */
static int s_context_new(long fds)
{
    if (uv_loop_init(&B.loop) != 0)
        return -1;
    void *loops[1] = {&B.loop};
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = s_protocols;
    info.fd_limit_per_thread = (unsigned)fds;
    info.options = LWS_SERVER_OPTION_LIBUV;
    info.foreign_loops = loops;
    lws_set_log_level(LLL_ERR, NULL);
    B.ctx = lws_create_context(&info);
    if (!B.ctx)
        return -1;
    lws_sul_schedule(B.ctx, 0, &s_sul, s_wake, 20 * 1000);
    return 0;
}

static void s_context_destroy(void)
{
    lws_sul_cancel(&s_sul);
    lws_context_destroy(B.ctx);
    B.ctx = NULL;
    for (int k = 0; k < 1000 && uv_run(&B.loop, UV_RUN_NOWAIT); k++) {
    }
    uv_loop_close(&B.loop);
}

static pid_t s_spawn(char *const argv[], const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static long s_rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static int s_cmp(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* p50 and p99 in ms of the run latencies lat[from, to) (sorted in place). */
static void s_pct(size_t from, size_t to, double *p50, double *p99)
{
    size_t n = to > from ? to - from : 0;
    *p50 = *p99 = -1;
    if (!n)
        return;
    qsort(B.lat + from, n, sizeof *B.lat, s_cmp);
    *p50 = B.lat[from + n / 2] / 1000.0;
    *p99 = B.lat[from + n * 99 / 100] / 1000.0;
}

static void s_connect(client_t *c, int id, int runs)
{
    memset(c, 0, sizeof *c);
    c->id = id;
    c->runs_left = runs;
    sbuf_init(&c->got, 1 << 20);
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof i);
    i.context = B.ctx;
    i.address = B.host;
    i.port = B.port;
    i.path = B.path;
    i.host = B.host;
    i.origin = B.host;
    i.protocol = NULL;
    i.local_protocol_name = "bench";
    i.userdata = c;
    i.pwsi = &c->wsi;
    if (!lws_client_connect_via_info(&i)) {
        B.failed++;
        c->closed = 1;
    }
}

static void s_phase_begin(int n, int runs)
{
    B.clients = mem_alloc((size_t)n * sizeof *B.clients);
    B.n = n;
    B.connected = B.established = B.finished = B.failed = 0;
    B.idle_mode = runs == 0;
    B.phase++;
}

/* Connects n clients that each do `runs` runs (0: hello only), services
 * until all are done or the deadline. Returns elapsed seconds. */
static double s_phase(int n, int runs, int64_t deadline_us)
{
    s_phase_begin(n, runs);
    int64_t t0 = clock_mono_us();
    int next = 0;
    while (clock_mono_us() < deadline_us) {
        /* Open connections in batches so the accept queue keeps up. */
        for (int k = 0; k < 200 && next < n && next - B.connected - B.failed < 500; k++, next++)
            s_connect(&B.clients[next], next, runs);
        if (B.finished + B.failed >= n && next >= n)
            break;
        s_service();
    }
    return (double)(clock_mono_us() - t0) / 1e6;
}

static void s_phase_end(void)
{
    /* Closed with a reset (linger 0), not a FIN: 10,000 closes would leave
     * as many client ports in TIME_WAIT for a minute, and a second run
     * soon after found no free port to connect from. */
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    for (int i = 0; i < B.n; i++) {
        if (B.clients[i].wsi && !B.clients[i].closed) {
            setsockopt(lws_get_socket_fd(B.clients[i].wsi), SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
            lws_set_timeout(B.clients[i].wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_SYNC);
        }
        sbuf_free(&B.clients[i].got);
    }
    for (int k = 0; k < 50; k++)
        uv_run(&B.loop, UV_RUN_NOWAIT);
    mem_free(B.clients);
    B.clients = NULL;
}

static volatile sig_atomic_t s_storm_stop;
static void s_on_term(int sig)
{
    (void)sig;
    s_storm_stop = 1;
}

/* The storm's process: n connections in a burst, each says hello; writes
 * how many did to fd, then holds them until SIGTERM. Never returns. */
static void s_storm_child(int n, int fd)
{
    signal(SIGTERM, s_on_term);
    if (s_context_new(n + 64) != 0)
        _exit(1);
    s_phase(n, 0, clock_mono_us() + 120000000);
    int est = B.established;
    if (write(fd, &est, sizeof est) != (ssize_t)sizeof est)
        _exit(1);
    while (!s_storm_stop)
        s_service(); /* answers the edge's pings */
    s_phase_end();
    _exit(0);
}

typedef struct {
    double lat_p50, lat_p99, first_p50;   /* 1 connection, 20 words */
    double dps, rps, tput_p50, tput_p99;  /* --conns */
    double idle_mb, idle_kb_per_conn;
    int storm_established;
    double storm_secs;                    /* the burst until the last hello_ok */
    double before_p50, before_p99, during_p50, during_p99, after_p50, after_p99;
} figures_t;

/* Phase 4: the storm's figures into f. */
static void s_storm(int n, double after_s, figures_t *f)
{
    s_phase_begin(1, 1 << 30);
    B.nlat = 0;
    s_connect(&B.clients[0], 0, 1 << 30);
    int64_t t0 = clock_mono_us();
    while (clock_mono_us() - t0 < 2000000 && !B.failed)
        s_service(); /* before */
    size_t i_before = B.nlat;
    int fds[2];
    if (pipe(fds) != 0)
        return;
    fflush(stdout);
    int64_t t_storm = clock_mono_us();
    pid_t child = fork();
    if (child == 0) {
        close(fds[0]);
        s_storm_child(n, fds[1]);
    }
    close(fds[1]);
    size_t i_during = B.nlat, i_after = 0;
    int64_t t_est = 0;
    while (!B.failed && clock_mono_us() - t_storm < 180000000) {
        s_service();
        if (!t_est) {
            struct pollfd p = {.fd = fds[0], .events = POLLIN};
            if (poll(&p, 1, 0) == 1) {
                if (read(fds[0], &f->storm_established, sizeof f->storm_established) <= 0)
                    f->storm_established = 0;
                t_est = clock_mono_us();
                f->storm_secs = (double)(t_est - t_storm) / 1e6;
                i_after = B.nlat;
            }
        } else if (clock_mono_us() - t_est >= (int64_t)(after_s * 1e6)) {
            break;
        }
    }
    size_t i_end = B.nlat;
    if (!t_est)
        i_after = i_end;
    if (child > 0) {
        kill(child, SIGTERM);
        waitpid(child, NULL, 0);
    }
    close(fds[0]);
    if (B.clients[0].state != 4 && !B.clients[0].closed)
        B.clients[0].state = 4; /* its last run is cut on purpose */
    s_phase_end();
    s_pct(0, i_before, &f->before_p50, &f->before_p99);
    s_pct(i_during, i_after, &f->during_p50, &f->during_p99);
    s_pct(i_after, i_end, &f->after_p50, &f->after_p99);
    if (f->storm_established < n)
        B.errors++;
}

static void s_set_input(long words)
{
    sbuf_t in;
    sbuf_init(&in, 1 << 20);
    for (long i = 0; i < words; i++)
        sbuf_catf(&in, "%sw%ld", i ? " " : "", i);
    mem_free(B.input);
    B.input = mem_strdup(sbuf_cstr(&in));
    B.input_len = in.len;
    sbuf_free(&in);
}

typedef struct {
    long conns, runs, words, lat_runs, idle, storm;
    double storm_after;
} load_t;

/* Every phase against one target; pid: its ingress (RSS), or 0. */
static void s_measure(const char *name, const load_t *L, pid_t pid, figures_t *f)
{
    /* 1. latency at one connection, 20 words. */
    s_set_input(20);
    s_phase(1, 20, clock_mono_us() + 20000000); /* warm-up */
    s_phase_end();
    B.nlat = 0;
    s_phase(1, (int)L->lat_runs, clock_mono_us() + 60000000);
    s_phase_end();
    qsort(B.first, B.nlat, sizeof *B.first, s_cmp);
    f->first_p50 = B.nlat ? B.first[B.nlat / 2] / 1000.0 : -1;
    size_t nl = B.nlat;
    s_pct(0, B.nlat, &f->lat_p50, &f->lat_p99);
    printf("%s: latency, 1 connection, 20-word runs: p50 %.2f ms, p99 %.2f ms, first delta p50 %.2f ms (%zu runs)\n",
           name, f->lat_p50, f->lat_p99, f->first_p50, nl);

    /* 2. throughput. */
    s_set_input(L->words);
    B.nlat = 0;
    B.deltas = B.runs = 0;
    double secs = s_phase((int)L->conns, (int)L->runs, clock_mono_us() + 240000000);
    s_phase_end();
    f->dps = B.deltas / secs;
    f->rps = B.runs / secs;
    s_pct(0, B.nlat, &f->tput_p50, &f->tput_p99);
    printf("%s: throughput, %ld connections x %ld runs x %ld words: %.0f deltas/s, %.0f runs/s, run p50 %.1f ms p99 %.1f ms\n",
           name, L->conns, L->runs, L->words, f->dps, f->rps, f->tput_p50, f->tput_p99);

    /* 3. idle connections. */
    f->idle_mb = f->idle_kb_per_conn = -1;
    if (L->idle > 0) {
        long before = pid ? s_rss_kb(pid) : -1;
        s_phase((int)L->idle, 0, clock_mono_us() + 120000000);
        for (int k = 0; k < 100; k++)
            uv_run(&B.loop, UV_RUN_NOWAIT);
        long after = pid ? s_rss_kb(pid) : -1;
        if (after > 0) {
            f->idle_mb = after / 1024.0;
            f->idle_kb_per_conn = B.established ? (after - before) / (double)B.established : 0.0;
        }
        printf("%s: idle: %d of %ld connections said hello; ingress RSS %.1f MB (%.1f MB before, %.1f KB per connection)\n",
               name, B.established, L->idle, f->idle_mb, before / 1024.0, f->idle_kb_per_conn);
        if (B.established < L->idle)
            B.errors++;
        s_phase_end();
    }

    /* 4. the storm, 20-word runs. */
    if (L->storm > 0) {
        s_set_input(20);
        s_storm((int)L->storm, L->storm_after, f);
        printf("%s: storm of %ld connections (%d said hello in %.1f s): an active client's 20-word runs "
               "p50/p99 before %.2f/%.2f ms, during %.2f/%.2f ms, %.0f s after %.2f/%.2f ms\n",
               name, L->storm, f->storm_established, f->storm_secs, f->before_p50, f->before_p99,
               f->during_p50, f->during_p99, L->storm_after, f->after_p50, f->after_p99);
    }
    fflush(stdout);
}

/* ws://host:port/path into static storage. */
static int s_parse_url(const char *url, const char **host, int *port, const char **path)
{
    static char h[128], p[256];
    if (strncmp(url, "ws://", 5) != 0)
        return -1;
    const char *a = url + 5, *slash = strchr(a, '/'), *colon = strchr(a, ':');
    if (!colon || (slash && colon > slash) || (size_t)(colon - a) >= sizeof h)
        return -1;
    memcpy(h, a, (size_t)(colon - a));
    h[colon - a] = '\0';
    long n;
    char num[16];
    size_t nl = (size_t)((slash ? slash : colon + strlen(colon)) - colon - 1);
    if (nl == 0 || nl >= sizeof num)
        return -1;
    memcpy(num, colon + 1, nl);
    num[nl] = '\0';
    if (flags_parse_long(num, 1, 65535, &n) != 0)
        return -1;
    snprintf(p, sizeof p, "%s", slash ? slash : "/");
    *host = h;
    *port = (int)n;
    *path = p;
    return 0;
}

static double s_ratio(double a, double b)
{
    return a > 0 && b > 0 ? a / b : -1;
}

int main(int argc, char **argv)
{
    long conns = 50, runs = 20, words = 100, lat_runs = 300, idle = 10000, workers = 2;
    long storm = 10000, storm_after = 10, peer_pid = 0;
    const char *bindir = MAP_BIN_DIR, *peer_url = "", *tap = "";
    flag_t table[] = {
        {"conns", NULL, FLAG_INT, &conns, 1, 10000, "connections in the throughput phase"},
        {"runs", NULL, FLAG_INT, &runs, 1, 100000, "runs per connection (throughput)"},
        {"words", NULL, FLAG_INT, &words, 1, 2000, "words per input (throughput)"},
        {"lat-runs", NULL, FLAG_INT, &lat_runs, 10, 100000, "runs of 20 words at one connection"},
        {"idle", NULL, FLAG_INT, &idle, 0, 100000, "idle connections (0: skip)"},
        {"storm", NULL, FLAG_INT, &storm, 0, 100000, "connections opened in a burst beside an active client (0: skip)"},
        {"storm-after", NULL, FLAG_INT, &storm_after, 1, 600, "seconds measured after the storm, held"},
        {"workers", NULL, FLAG_INT, &workers, 1, 64, "echo worker processes"},
        {"bin-dir", NULL, FLAG_STR, &bindir, 0, 0, "build directory holding the binaries"},
        {"peer-url", NULL, FLAG_STR, &peer_url, 0, 0, "ws://host:port/path: the same load against it, ratios"},
        {"tap", NULL, FLAG_STR, &tap, 0, 0, "the broker's tap endpoint (empty: none), for map-tap timelines"},
        {"peer-pid", NULL, FLAG_INT, &peer_pid, 0, 1L << 22, "the peer's ingress process (its idle RSS)"},
    };
    char err[256];
    int rc = flags_parse(table, sizeof table / sizeof *table, argc, argv,
                         "edge_bench: the platform seen from WebSocket clients", err, sizeof err);
    const char *peer_host = NULL, *peer_path = NULL;
    int peer_port = 0;
    if (rc == 0 && *peer_url && s_parse_url(peer_url, &peer_host, &peer_port, &peer_path) != 0)
        snprintf(err, sizeof err, "--peer-url '%s' is not ws://host:port/path", peer_url), rc = -1;
    if (rc)
        return rc == 1 ? 0 : (fprintf(stderr, "edge_bench: %s\n", err), 2);
    signal(SIGPIPE, SIG_IGN);
    alarm(*peer_url ? 1500 : 900);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl); /* inherited by the ingress too */
    char dir[] = "/tmp/map-edge-bench-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char ep[128], db[160], log[160], http[64], bin[6][256];
    int port = 30000 + (int)(getpid() % 20000);
    snprintf(ep, sizeof ep, "ipc://%s/broker.ipc", dir);
    snprintf(db, sizeof db, "%s/map.db", dir);
    snprintf(log, sizeof log, "%s/processes.log", dir);
    snprintf(http, sizeof http, "127.0.0.1:%d", port);
    const char *names[] = {"broker/map-broker", "orchestrator/map-orchestrator",
                           "agents/echo/map-echo", "ingress/map-ingress"};
    for (int i = 0; i < 4; i++)
        snprintf(bin[i], sizeof bin[i], "%s/%s", bindir, names[i]);
    pid_t pids[70];
    int np = 0;
    char *b1[] = {bin[0], "--endpoint", ep, "--tap", (char *)tap, "--log-level", "warn", NULL};
    pids[np++] = s_spawn(b1, log);
    char *b2[] = {bin[1], "--broker", ep, "--db", db, "--log-level", "warn", NULL};
    pids[np++] = s_spawn(b2, log);
    for (long i = 0; i < workers; i++) {
        char *b3[] = {bin[2], "--broker", ep, "--delay-ms", "0", "--capacity", "512",
                      "--log-level", "warn", NULL};
        pids[np++] = s_spawn(b3, log);
    }
    char *b4[] = {bin[3], "--broker", ep, "--http-addr", http, "--log-level", "warn",
                  "--max-outq", "16777216", NULL};
    pid_t ingress = s_spawn(b4, log);
    pids[np++] = ingress;
    usleep(800000);

    if (s_context_new(idle + conns + 64) != 0) {
        fprintf(stderr, "edge_bench: no lws client context\n");
        return 1;
    }
    B.lat = mem_alloc(1000000 * sizeof *B.lat);
    B.first = mem_alloc(1000000 * sizeof *B.first);
    load_t L = {conns, runs, words, lat_runs, idle, storm, (double)storm_after};
    figures_t me = {0}, peer = {0};
    B.host = "127.0.0.1";
    B.port = port;
    B.path = "/ws";
    s_measure("platform", &L, ingress, &me);
    uint64_t my_errors = B.errors;
    if (*peer_url) {
        B.host = peer_host;
        B.port = peer_port;
        B.path = peer_path;
        s_measure("peer", &L, (pid_t)peer_pid, &peer);
        printf("ratio platform/peer: deltas/s %.2fx, run p50 %.2fx faster, idle RSS %.2fx smaller, "
               "storm p99 during %.2fx, after %.2fx faster (peer errors: %llu)\n",
               s_ratio(me.dps, peer.dps), s_ratio(peer.lat_p50, me.lat_p50),
               s_ratio(peer.idle_mb, me.idle_mb), s_ratio(peer.during_p99, me.during_p99),
               s_ratio(peer.after_p99, me.after_p99), (unsigned long long)(B.errors - my_errors));
    }
    s_context_destroy();
    for (int i = np - 1; i >= 0; i--) {
        kill(pids[i], SIGTERM);
        waitpid(pids[i], NULL, 0);
    }
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "edge_bench: could not remove %s\n", dir);
    if (B.errors)
        fprintf(stderr, "edge_bench: %llu error(s)\n", (unsigned long long)B.errors);
    printf("{\"bench\":\"edge\",\"deltas_per_s\":%.0f,\"runs_per_s\":%.0f,\"run_p50_ms_c1\":%.2f,"
           "\"run_p99_ms_c1\":%.2f,\"first_delta_p50_ms_c1\":%.2f,\"idle_10k_mb\":%.1f,"
           "\"storm_conns\":%d,\"storm_secs\":%.2f,\"storm_before_p50_ms\":%.2f,"
           "\"storm_during_p50_ms\":%.2f,\"storm_during_p99_ms\":%.2f,"
           "\"storm_after_p50_ms\":%.2f,\"storm_after_p99_ms\":%.2f",
           me.dps, me.rps, me.lat_p50, me.lat_p99, me.first_p50, me.idle_mb, me.storm_established,
           me.storm_secs, me.before_p50, me.during_p50, me.during_p99, me.after_p50, me.after_p99);
    if (*peer_url)
        printf(",\"peer_deltas_per_s\":%.0f,\"peer_run_p50_ms_c1\":%.2f,\"peer_idle_10k_mb\":%.1f,"
               "\"peer_storm_during_p99_ms\":%.2f,\"peer_storm_after_p99_ms\":%.2f,"
               "\"ratio_deltas_per_s\":%.2f,\"ratio_run_p50\":%.2f,\"ratio_idle_mb\":%.2f",
               peer.dps, peer.lat_p50, peer.idle_mb, peer.during_p99, peer.after_p99,
               s_ratio(me.dps, peer.dps), s_ratio(peer.lat_p50, me.lat_p50),
               s_ratio(peer.idle_mb, me.idle_mb));
    printf(",\"errors\":%llu}\n", (unsigned long long)B.errors);
    return B.errors ? 1 : 0;
}
