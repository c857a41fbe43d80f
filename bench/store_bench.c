/* store_bench: events persisted and forwarded per second through the whole
 * back end: requester → broker → orchestrator (SQLite, group commit) →
 * broker → echo workers (delay 0) and back, with N concurrent runs.
 *
 * Starts map-broker, map-orchestrator (a fresh database in a temp dir) and
 * the echo workers itself, keeps --runs runs in flight (invoke with follow,
 * one session per slot), counts every event streamed back and checks each
 * run's seq is gapless and ends in run_done. Samples the orchestrator's RSS
 * after the warm-up and at the end (memory must stay flat).
 *
 * Last line: {"bench":"store","events_per_s":…,"rss_start_kb":…,"rss_end_kb":…}
 *
 * Built as bench_scale (or with --scale 1,2,4,8), it measures horizontal
 * scale instead: echo workers that take one run at a time and 5 ms per
 * delta, so a worker serves a fixed number of runs per second; for each
 * worker count it starts that many workers, measures runs/s, drains the
 * runs in flight and stops them. Last line:
 * {"bench":"scale","runs_per_s":{"1":…,"2":…,"4":…,"8":…}} */
#include "worker/worker.h"
#include "common/clock.h"
#include "common/flags.h"
#include "common/hmap.h"
#include "common/mem.h"
#include "common/sig.h"
#include "proto/orch.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#ifndef MAP_BIN_DIR
#define MAP_BIN_DIR "."
#endif

typedef struct {
    uint64_t req;       /* our request id, 0 when the slot is idle */
    uint64_t next_seq;  /* next seq expected */
    int done;           /* terminal event seen */
} slot_t;

typedef struct {
    worker_t *w;
    slot_t *slots;
    hmap_t *by_req;     /* request id → slot */
    long nslots;
    long words;
    uint64_t events;
    uint64_t runs_done;
    uint64_t started;   /* runs started, names the sessions */
    uint64_t errors;
    int measuring;
    int draining;       /* start no new runs */
    char content[65536];
    mp_buf_t mp;
} bench_t;

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

static long s_rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static slot_t *s_slot(bench_t *b, uint64_t req)
{
    return hmap_get(b->by_req, req);
}

static void s_start(bench_t *b, long i)
{
    /* A new session per run: the history sent to the agent stays empty, so
     * the bench measures events, not history copies. */
    char session[48];
    snprintf(session, sizeof session, "bench-%ld-%llu", i, (unsigned long long)++b->started);
    orch_request_t q = {.op = {"invoke", 6},
                        .session_id = {session, (uint32_t)strlen(session)},
                        .agent_id = {"echo", 4},
                        .role = {"user", 4},
                        .content = {b->content, (uint32_t)strlen(b->content)},
                        .follow = 1};
    mp_buf_reset(&b->mp);
    orch_encode_request(&b->mp, &q);
    slot_t *s = &b->slots[i];
    if (s->req)
        hmap_del(b->by_req, s->req);
    s->req = worker_request(b->w, "orchestrator", b->mp.data, b->mp.len);
    if (s->req)
        hmap_put(b->by_req, s->req, s);
    s->next_seq = 1;
    s->done = 0;
}

static void s_on_stream(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    bench_t *b = arg;
    (void)w;
    orch_stream_t ev;
    slot_t *s = s_slot(b, req);
    if (!s || orch_decode_stream(body, len, &ev) != AGENT_OK) {
        b->errors++;
        return;
    }
    if (ev.accepted)
        return;
    if (ev.seq != s->next_seq) {
        fprintf(stderr, "store_bench: gap: seq %llu, expected %llu\n",
                (unsigned long long)ev.seq, (unsigned long long)s->next_seq);
        b->errors++;
    }
    s->next_seq = ev.seq + 1;
    if (ev.terminal) {
        s->done = 1;
        if (!(ev.type.len == 8 && memcmp(ev.type.ptr, "run_done", 8) == 0))
            b->errors++;
    }
    if (b->measuring)
        b->events++;
}

static void s_on_reply(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    bench_t *b = arg;
    (void)w;
    (void)body;
    (void)len;
    slot_t *s = s_slot(b, req);
    if (!s)
        return;
    if (!s->done)
        b->errors++;
    if (b->measuring)
        b->runs_done++;
    if (b->draining) {
        hmap_del(b->by_req, s->req);
        s->req = 0;
        return;
    }
    s_start(b, s - b->slots);
}

static void s_on_error(worker_t *w, uint64_t req, const char *code, const char *msg, void *arg)
{
    bench_t *b = arg;
    (void)w;
    fprintf(stderr, "store_bench: request failed: %s %s\n", code, msg);
    b->errors++;
    slot_t *s = s_slot(b, req);
    if (s && b->draining) {
        hmap_del(b->by_req, s->req);
        s->req = 0;
    } else if (s) {
        s_start(b, s - b->slots);
    }
}

static void s_pump(bench_t *b, zmq_pollitem_t *item, int64_t until_us)
{
    while (!sig_stop && clock_mono_us() < until_us) {
        zmq_poll(item, 1, 20);
        while (worker_process(b->w) > 0) {
        }
    }
}

/* Horizontal scale: runs/s with each count of capacity-1 workers. */
static int s_scale(bench_t *b, const char *counts, const char *echo, const char *endpoint,
                   const char *log, long seconds)
{
    zmq_pollitem_t item = {worker_socket(b->w), 0, ZMQ_POLLIN, 0};
    char json[512] = "";
    size_t at = 0;
    double first = 0, last = 0;
    for (const char *p = counts; *p;) {
        char *end;
        long k = strtol(p, &end, 10);
        if (end == p || k < 1 || k > 64 || (*end && *end != ',')) {
            fprintf(stderr, "store_bench: --scale takes counts from 1 to 64 like 1,2,4,8\n");
            return 2;
        }
        p = *end ? end + 1 : end;
        pid_t pids[64];
        for (long i = 0; i < k; i++) {
            char *eargv[] = {(char *)echo, "--broker", (char *)endpoint, "--delay-ms", "5",
                             "--capacity", "1", "--log-level", "warn", NULL};
            pids[i] = s_spawn(echo, eargv, log);
        }
        s_pump(b, &item, clock_mono_us() + 700000); /* the workers announce themselves */
        b->draining = 0;
        for (long i = 0; i < b->nslots; i++)
            s_start(b, i);
        s_pump(b, &item, clock_mono_us() + 1000000); /* warm-up */
        b->runs_done = 0;
        b->measuring = 1;
        int64_t t0 = clock_mono_us();
        s_pump(b, &item, t0 + seconds * 1000000);
        double rps = b->runs_done / ((double)(clock_mono_us() - t0) / 1e6);
        b->measuring = 0;
        /* Drain: let every run in flight end before the workers go. */
        b->draining = 1;
        int64_t give_up = clock_mono_us() + 60000000;
        while (hmap_size(b->by_req) > 0 && clock_mono_us() < give_up)
            s_pump(b, &item, clock_mono_us() + 50000);
        for (long i = 0; i < k; i++) {
            kill(pids[i], SIGTERM);
            waitpid(pids[i], NULL, 0);
        }
        printf("%ld worker(s), one run at a time, 5 ms per delta: %.1f runs/s\n", k, rps);
        if (!first)
            first = rps;
        last = rps;
        at += (size_t)snprintf(json + at, sizeof json - at, "%s\"%ld\":%.1f", at ? "," : "", k, rps);
    }
    printf("largest count / one worker: %.2fx\n", first > 0 ? last / first : 0.0);
    printf("{\"bench\":\"scale\",\"runs_per_s\":{%s},\"errors\":%llu}\n", json,
           (unsigned long long)b->errors);
    return b->errors ? 1 : 0;
}

int main(int argc, char **argv)
{
    long runs = 100, words = 100, seconds = 10, warmup = 2, workers = 2;
    const char *bindir = MAP_BIN_DIR;
#ifdef MAP_BENCH_SCALE
    const char *scale = "1,2,4,8";
    runs = 64;
    words = 10;
    seconds = 5;
#else
    const char *scale = "";
#endif
    flag_t table[] = {
        {"runs", NULL, FLAG_INT, &runs, 1, 10000, "runs in flight"},
        {"words", NULL, FLAG_INT, &words, 1, 5000, "words per input (deltas per run)"},
        {"seconds", NULL, FLAG_INT, &seconds, 1, 3600, "measured duration"},
        {"warmup", NULL, FLAG_INT, &warmup, 0, 60, "seconds before measuring"},
        {"workers", NULL, FLAG_INT, &workers, 1, 64, "echo worker processes"},
        {"bin-dir", NULL, FLAG_STR, &bindir, 0, 0, "build directory holding the binaries"},
        {"scale", NULL, FLAG_STR, &scale, 0, 0,
         "worker counts to measure horizontal scale with (e.g. 1,2,4,8); empty: the store bench"},
    };
    char err[256];
    int rc = flags_parse(table, sizeof table / sizeof *table, argc, argv,
                         "store_bench: events/s persisted and forwarded with group commit", err,
                         sizeof err);
    if (rc)
        return rc == 1 ? 0 : (fprintf(stderr, "store_bench: %s\n", err), 2);
    sig_install();
    char dir[] = "/tmp/map-store-bench-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    char endpoint[128], db[160], log[160], broker[256], orch[256], echo[256], delay[] = "0";
    snprintf(endpoint, sizeof endpoint, "ipc://%s/broker.ipc", dir);
    snprintf(db, sizeof db, "%s/map.db", dir);
    snprintf(log, sizeof log, "%s/processes.log", dir);
    snprintf(broker, sizeof broker, "%s/broker/map-broker", bindir);
    snprintf(orch, sizeof orch, "%s/orchestrator/map-orchestrator", bindir);
    snprintf(echo, sizeof echo, "%s/agents/echo/map-echo", bindir);
    pid_t pids[80];
    int npids = 0;
    char *bargv[] = {broker, "--endpoint", endpoint, "--tap", "", "--log-level", "warn", NULL};
    pids[npids++] = s_spawn(broker, bargv, log);
    char *oargv[] = {orch, "--broker", endpoint, "--db", db, "--log-level", "warn", NULL};
    pid_t orch_pid = s_spawn(orch, oargv, log);
    pids[npids++] = orch_pid;
    for (long i = 0; i < workers && !*scale; i++) {
        char *eargv[] = {echo, "--broker", endpoint, "--delay-ms", delay, "--capacity", "256",
                         "--log-level", "warn", NULL};
        pids[npids++] = s_spawn(echo, eargv, log);
    }
    bench_t b;
    memset(&b, 0, sizeof b);
    b.nslots = runs;
    b.words = words;
    b.slots = mem_alloc((size_t)runs * sizeof *b.slots);
    b.by_req = hmap_new((size_t)runs * 2);
    mp_buf_init(&b.mp, 1 << 20);
    size_t at = 0;
    for (long i = 0; i < words && at + 16 < sizeof b.content; i++)
        at += (size_t)snprintf(b.content + at, sizeof b.content - at, "%sword%ld", i ? " " : "", i);
    worker_handlers_t h = {.on_stream = s_on_stream, .on_reply = s_on_reply, .on_error = s_on_error};
    worker_config_t wc = {.endpoint = endpoint, .service = "store-bench", .capacity = 0};
    b.w = worker_new(&wc, &h, &b, err, sizeof err);
    if (!b.w) {
        fprintf(stderr, "store_bench: %s\n", err);
        return 1;
    }
    if (*scale) {
        usleep(500000); /* broker and orchestrator come up */
        int src = s_scale(&b, scale, echo, endpoint, log, seconds);
        worker_destroy(&b.w);
        for (int i = npids - 1; i >= 0; i--) {
            kill(pids[i], SIGTERM);
            waitpid(pids[i], NULL, 0);
        }
        mp_buf_free(&b.mp);
        mem_free(b.slots);
        hmap_destroy(&b.by_req);
        return src;
    }
    /* Wait until an echo run goes through (everything is up). */
    int64_t give_up = clock_mono_ms() + 20000;
    zmq_pollitem_t item = {worker_socket(b.w), 0, ZMQ_POLLIN, 0};
    int started = 0;
    while (!sig_stop && clock_mono_ms() < give_up) {
        if (worker_linked(b.w) && !started) {
            usleep(300000); /* workers announce themselves */
            for (long i = 0; i < runs; i++)
                s_start(&b, i);
            started = 1;
        }
        zmq_poll(&item, 1, 50);
        while (worker_process(b.w) > 0) {
        }
        if (started && b.errors == 0) {
            int any_done = 0;
            for (long i = 0; i < runs; i++)
                any_done |= b.slots[i].next_seq > 3;
            if (any_done)
                break;
        }
    }
    int64_t t0 = clock_mono_us();
    int64_t warm_end = t0 + warmup * 1000000;
    int64_t end = warm_end + seconds * 1000000;
    long rss_start = -1;
    while (!sig_stop) {
        int64_t now = clock_mono_us();
        if (!b.measuring && now >= warm_end) {
            b.measuring = 1;
            rss_start = s_rss_kb(orch_pid);
            t0 = now;
        }
        if (now >= end)
            break;
        zmq_poll(&item, 1, 20);
        while (worker_process(b.w) > 0) {
        }
    }
    double elapsed = (double)(clock_mono_us() - t0) / 1e6;
    long rss_end = s_rss_kb(orch_pid);
    worker_destroy(&b.w);
    for (int i = npids - 1; i >= 0; i--) {
        kill(pids[i], SIGTERM);
        waitpid(pids[i], NULL, 0);
    }
    double eps = b.events / elapsed;
    printf("runs in flight: %ld, words per run: %ld, echo workers: %ld\n", runs, words, workers);
    printf("measured %.1f s: %llu events, %llu runs, %llu errors\n", elapsed,
           (unsigned long long)b.events, (unsigned long long)b.runs_done,
           (unsigned long long)b.errors);
    printf("events persisted and forwarded: %.0f/s; runs: %.0f/s\n", eps, b.runs_done / elapsed);
    printf("orchestrator RSS: %ld kB after warm-up, %ld kB at the end\n", rss_start, rss_end);
    printf("{\"bench\":\"store\",\"events_per_s\":%.0f,\"runs_per_s\":%.0f,\"rss_start_kb\":%ld,"
           "\"rss_end_kb\":%ld,\"errors\":%llu}\n",
           eps, b.runs_done / elapsed, rss_start, rss_end, (unsigned long long)b.errors);
    mp_buf_free(&b.mp);
    mem_free(b.slots);
    hmap_destroy(&b.by_req);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "store_bench: could not remove %s\n", dir);
    return b.errors ? 1 : 0;
}
