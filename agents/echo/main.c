/* map-echo: the native echo agent. Parses flags, joins the worker library
 * (serving "agent.<agent>") to the echo module, and runs one loop: wait for
 * the broker or the next echo timer, drain, emit what is due. */
#include "echo.h"

#include "worker/worker.h"
#include "common/clock.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/sig.h"
#include "proto/agent.h"
#include "proto/frame.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

typedef struct {
    worker_t *worker;
    echo_t *echo;
} s_app_t;

static int s_sink_stream(void *arg, uint64_t id, const void *body, size_t len)
{
    s_app_t *app = arg;
    return worker_stream(app->worker, id, body, len);
}

static int s_sink_reply(void *arg, uint64_t id, const void *body, size_t len)
{
    s_app_t *app = arg;
    return worker_reply(app->worker, id, body, len);
}

static int s_sink_fail(void *arg, uint64_t id, const char *code, const char *message)
{
    s_app_t *app = arg;
    return worker_fail(app->worker, id, code, message);
}

static void s_on_request(worker_t *w, uint64_t id, const uint8_t *body, size_t len, void *arg)
{
    s_app_t *app = arg;
    (void)w;
    if (echo_start(app->echo, id, body, len, clock_mono_ms()) != 0)
        LOGD("echo.refused", "id=%llu", (unsigned long long)id);
}

static void s_on_cancel(worker_t *w, uint64_t id, void *arg)
{
    s_app_t *app = arg;
    (void)w;
    echo_cancel(app->echo, id);
}

static void s_on_link(worker_t *w, int up, void *arg)
{
    s_app_t *app = arg;
    LOGI(up ? "echo.link_up" : "echo.link_lost", "jobs=%zu", echo_jobs(app->echo));
    (void)w;
}

static int s_run(s_app_t *app)
{
    void *sock = worker_socket(app->worker);
    while (!sig_stop) {
        int64_t now = clock_mono_ms();
        long timeout = worker_timeout_ms(app->worker);
        long due = echo_timeout_ms(app->echo, now);
        if (due >= 0 && due < timeout)
            timeout = due;
        zmq_pollitem_t item = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, timeout) < 0 && errno != EINTR) {
            LOGE("echo.poll", "error=%s", zmq_strerror(errno));
            return -1;
        }
        while (worker_process(app->worker) > 0 && !sig_stop)
            ;
        echo_run(app->echo, clock_mono_ms());
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *broker = "tcp://127.0.0.1:5555";
    const char *agent = "echo";
    const char *level = "info";
    long capacity = 64, delay_ms = 5, heartbeat_ms = 1000, liveness = 3;
    int log_json = 0;
    flag_t table[] = {
        {"broker", "MAP_BROKER", FLAG_STR, &broker, 0, 0, "broker endpoint to connect to"},
        {"agent", "MAP_ECHO_AGENT", FLAG_STR, &agent, 0, 0, "agent id; served as service agent.<id>"},
        {"capacity", "MAP_ECHO_CAPACITY", FLAG_INT, &capacity, 1, FRAME_CAPACITY_MAX, "invokes served at once"},
        {"delay-ms", "MAP_ECHO_DELAY_MS", FLAG_INT, &delay_ms, 0, 60000, "pause before each word (0: all at once)"},
        {"heartbeat-ms", "MAP_HEARTBEAT_MS", FLAG_INT, &heartbeat_ms, 10, 60000, "heartbeat interval"},
        {"liveness", "MAP_LIVENESS", FLAG_INT, &liveness, 1, 100, "missed heartbeats before the broker is lost"},
        {"log-level", "MAP_LOG_LEVEL", FLAG_STR, &level, 0, 0, "debug, info, warn or error"},
        {"log-json", "MAP_LOG_JSON", FLAG_BOOL, &log_json, 0, 0, "log JSON lines"},
    };
    char err[256];
    int rc = flags_parse(table, sizeof table / sizeof *table, argc, argv,
                         "map-echo: native agent that streams its input back word by word", err,
                         sizeof err);
    if (rc == 1)
        return 0;
    log_init("echo");
    if (rc < 0) {
        fprintf(stderr, "map-echo: %s\n", err);
        return 2;
    }
    if (log_set_level(level) != 0) {
        fprintf(stderr, "map-echo: --log-level must be debug, info, warn or error\n");
        return 2;
    }
    char service[FRAME_SERVICE_MAX + 1];
    size_t agent_len = strlen(agent);
    if (agent_len == 0 || agent_len > AGENT_ID_MAX ||
        strlen(AGENT_SERVICE_PREFIX) + agent_len > FRAME_SERVICE_MAX) {
        fprintf(stderr, "map-echo: --agent must have 1 to %zu bytes\n",
                (size_t)FRAME_SERVICE_MAX - strlen(AGENT_SERVICE_PREFIX));
        return 2;
    }
    snprintf(service, sizeof service, "%s%s", AGENT_SERVICE_PREFIX, agent);
    log_set_json(log_json);
    sig_install();

    s_app_t app = {0};
    echo_sink_t sink = {s_sink_stream, s_sink_reply, s_sink_fail};
    app.echo = echo_new(delay_ms, (size_t)capacity, FRAME_BODY_MAX_DEFAULT, &sink, &app);
    worker_config_t cfg = {.endpoint = broker,
                           .service = service,
                           .capacity = (uint32_t)capacity,
                           .heartbeat_ms = heartbeat_ms,
                           .liveness = liveness};
    worker_handlers_t h = {.on_request = s_on_request, .on_cancel = s_on_cancel, .on_link = s_on_link};
    app.worker = worker_new(&cfg, &h, &app, err, sizeof err);
    if (!app.worker) {
        fprintf(stderr, "map-echo: %s\n", err);
        echo_destroy(&app.echo);
        return 1;
    }
    LOGI("echo.start", "broker=%s service=%s capacity=%ld delay_ms=%ld heartbeat_ms=%ld", broker,
         service, capacity, delay_ms, heartbeat_ms);
    rc = s_run(&app);
    size_t stopped = echo_fail_all(app.echo, "worker_stopping", "the echo agent is stopping");
    echo_stats_t st;
    echo_stats(app.echo, &st);
    LOGI("echo.stop", "started=%llu served=%llu failed=%llu cancelled=%llu stopped=%zu",
         (unsigned long long)st.started, (unsigned long long)st.served,
         (unsigned long long)st.failed, (unsigned long long)st.cancelled, stopped);
    worker_destroy(&app.worker);
    echo_destroy(&app.echo);
    return rc == 0 ? 0 : 1;
}
