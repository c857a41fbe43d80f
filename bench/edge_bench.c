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
 *      ingress's resident memory.
 *
 * Every event is checked: seq 1, 2, 3... per run, the deltas concatenate to
 * the input, the run ends run_done. Any mismatch: exit 1.
 * Last line: {"bench":"edge","deltas_per_s":…,"run_p50_ms_c1":…,"idle_10k_mb":…} */
#include "common/clock.h"
#include "common/flags.h"
#include "common/mem.h"
#include "common/sbuf.h"

#include <fcntl.h>
#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

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

/* lws_service waits for activity: a timer every 20 ms bounds each wait, so
 * the phase loops see their deadlines and their end. */
static lws_sorted_usec_list_t s_sul;
static void s_wake(lws_sorted_usec_list_t *sul)
{
    lws_sul_schedule(B.ctx, 0, sul, s_wake, 20 * 1000);
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

/* Connects n clients that each do `runs` runs (0: hello only), services
 * until all are done or the deadline. Returns elapsed seconds. */
static double s_phase(int port, int n, int runs, int64_t deadline_us)
{
    B.clients = mem_alloc((size_t)n * sizeof *B.clients);
    B.n = n;
    B.connected = B.established = B.finished = B.failed = 0;
    B.idle_mode = runs == 0;
    B.phase++;
    int64_t t0 = clock_mono_us();
    int next = 0;
    while (clock_mono_us() < deadline_us) {
        /* Open connections in batches so the accept queue keeps up. */
        for (int k = 0; k < 200 && next < n && next - B.connected - B.failed < 500; k++, next++) {
            client_t *c = &B.clients[next];
            c->id = next;
            c->runs_left = runs;
            sbuf_init(&c->got, 1 << 20);
            struct lws_client_connect_info i;
            memset(&i, 0, sizeof i);
            i.context = B.ctx;
            i.address = "127.0.0.1";
            i.port = port;
            i.path = "/ws";
            i.host = "127.0.0.1";
            i.origin = "127.0.0.1";
            i.protocol = NULL;
            i.local_protocol_name = "bench";
            i.userdata = c;
            i.pwsi = &c->wsi;
            if (!lws_client_connect_via_info(&i)) {
                B.failed++;
                c->closed = 1;
            }
        }
        if (B.finished + B.failed >= n && next >= n)
            break;
        lws_service(B.ctx, 0);
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
        lws_service(B.ctx, 0);
    mem_free(B.clients);
    B.clients = NULL;
}

int main(int argc, char **argv)
{
    long conns = 50, runs = 20, words = 100, lat_runs = 300, idle = 10000, workers = 2;
    const char *bindir = MAP_BIN_DIR;
    flag_t table[] = {
        {"conns", NULL, FLAG_INT, &conns, 1, 10000, "connections in the throughput phase"},
        {"runs", NULL, FLAG_INT, &runs, 1, 100000, "runs per connection (throughput)"},
        {"words", NULL, FLAG_INT, &words, 1, 2000, "words per input (throughput)"},
        {"lat-runs", NULL, FLAG_INT, &lat_runs, 10, 100000, "runs of 20 words at one connection"},
        {"idle", NULL, FLAG_INT, &idle, 0, 100000, "idle connections (0: skip)"},
        {"workers", NULL, FLAG_INT, &workers, 1, 64, "echo worker processes"},
        {"bin-dir", NULL, FLAG_STR, &bindir, 0, 0, "build directory holding the binaries"},
    };
    char err[256];
    int rc = flags_parse(table, 7, argc, argv, "edge_bench: the platform seen from WebSocket clients",
                         err, sizeof err);
    if (rc)
        return rc == 1 ? 0 : (fprintf(stderr, "edge_bench: %s\n", err), 2);
    signal(SIGPIPE, SIG_IGN);
    alarm(600);
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
    char *b1[] = {bin[0], "--endpoint", ep, "--tap", "", "--log-level", "warn", NULL};
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

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = s_protocols;
    info.fd_limit_per_thread = (unsigned)(idle + conns + 64);
    lws_set_log_level(LLL_ERR, NULL);
    B.ctx = lws_create_context(&info);
    lws_sul_schedule(B.ctx, 0, &s_sul, s_wake, 20 * 1000);
    B.lat = mem_alloc(1000000 * sizeof *B.lat);
    B.first = mem_alloc(1000000 * sizeof *B.first);

    /* 1. latency at one connection, 20 words. */
    sbuf_t in;
    sbuf_init(&in, 1 << 20);
    for (int i = 0; i < 20; i++)
        sbuf_catf(&in, "%sw%d", i ? " " : "", i);
    B.input = mem_strdup(sbuf_cstr(&in));
    B.input_len = in.len;
    s_phase(port, 1, 20, clock_mono_us() + 20000000); /* warm-up */
    s_phase_end();
    B.nlat = 0;
    s_phase(port, 1, (int)lat_runs, clock_mono_us() + 60000000);
    s_phase_end();
    qsort(B.lat, B.nlat, sizeof *B.lat, s_cmp);
    qsort(B.first, B.nlat, sizeof *B.first, s_cmp);
    double p50 = B.nlat ? B.lat[B.nlat / 2] / 1000.0 : -1, p99 = B.nlat ? B.lat[B.nlat * 99 / 100] / 1000.0 : -1;
    double f50 = B.nlat ? B.first[B.nlat / 2] / 1000.0 : -1;
    printf("latency, 1 connection, 20-word runs: p50 %.2f ms, p99 %.2f ms, first delta p50 %.2f ms (%zu runs)\n",
           p50, p99, f50, B.nlat);

    /* 2. throughput. */
    sbuf_reset(&in);
    for (long i = 0; i < words; i++)
        sbuf_catf(&in, "%sw%ld", i ? " " : "", i);
    mem_free(B.input);
    B.input = mem_strdup(sbuf_cstr(&in));
    B.input_len = in.len;
    B.nlat = 0;
    B.deltas = B.runs = 0;
    double secs = s_phase(port, (int)conns, (int)runs, clock_mono_us() + 240000000);
    s_phase_end();
    double dps = B.deltas / secs, rps = B.runs / secs;
    qsort(B.lat, B.nlat, sizeof *B.lat, s_cmp);
    printf("throughput, %ld connections x %ld runs x %ld words: %.0f deltas/s, %.0f runs/s, run p50 %.1f ms p99 %.1f ms\n",
           conns, runs, words, dps, rps, B.nlat ? B.lat[B.nlat / 2] / 1000.0 : -1,
           B.nlat ? B.lat[B.nlat * 99 / 100] / 1000.0 : -1);

    /* 3. idle connections. */
    double idle_mb = -1;
    if (idle > 0) {
        long before = s_rss_kb(ingress);
        s_phase(port, (int)idle, 0, clock_mono_us() + 120000000);
        for (int k = 0; k < 100; k++)
            lws_service(B.ctx, 0);
        long after = s_rss_kb(ingress);
        idle_mb = after / 1024.0;
        printf("idle: %d of %ld connections said hello; ingress RSS %.1f MB (%.1f MB before, %.1f KB per connection)\n",
               B.established, idle, after / 1024.0, before / 1024.0,
               B.established ? (after - before) / (double)B.established : 0.0);
        if (B.established < idle)
            B.errors++;
        s_phase_end();
    }
    lws_sul_cancel(&s_sul);
    lws_context_destroy(B.ctx);
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
           "\"run_p99_ms_c1\":%.2f,\"first_delta_p50_ms_c1\":%.2f,\"idle_10k_mb\":%.1f,\"errors\":%llu}\n",
           dps, rps, p50, p99, f50, idle_mb, (unsigned long long)B.errors);
    return B.errors ? 1 : 0;
}
