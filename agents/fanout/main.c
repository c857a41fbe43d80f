/* map-fanout: the native fan-out agent. Parses flags, joins the worker
 * library (serving "agent.<agent>", making calls through worker/call.h) to
 * the fanout module, and runs the worker's loop. */
#include "fanout.h"

#include "worker/call.h"
#include "worker/worker.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/sig.h"
#include "proto/agent.h"
#include "proto/frame.h"

#include <stdio.h>
#include <string.h>

/* The worker's arg: the fanout, made once the worker exists. */
typedef struct {
    fanout_t *fan;
} s_app_t;

static void s_on_request(worker_t *w, uint64_t id, const uint8_t *body, size_t len, void *arg)
{
    (void)w;
    fanout_on_request(((s_app_t *)arg)->fan, id, body, len);
}

static void s_on_cancel(worker_t *w, uint64_t id, void *arg)
{
    (void)w;
    fanout_on_cancel(((s_app_t *)arg)->fan, id);
}

static void s_on_stream(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    (void)w;
    call_on_stream(fanout_calls(((s_app_t *)arg)->fan), req, body, len);
}

static void s_on_reply(worker_t *w, uint64_t req, const uint8_t *body, size_t len, void *arg)
{
    (void)w;
    call_on_reply(fanout_calls(((s_app_t *)arg)->fan), req, body, len);
}

static void s_on_error(worker_t *w, uint64_t req, const char *code, const char *message,
                       void *arg)
{
    (void)w;
    call_on_error(fanout_calls(((s_app_t *)arg)->fan), req, code, message);
}

static void s_on_link(worker_t *w, int up, void *arg)
{
    (void)w;
    LOGI(up ? "fanout.link_up" : "fanout.link_lost", "jobs=%zu", fanout_jobs(((s_app_t *)arg)->fan));
}

int main(int argc, char **argv)
{
    const char *broker = "tcp://127.0.0.1:5555";
    const char *agent = "fanout";
    const char *target = "echo";
    const char *level = "info";
    long capacity = 32, heartbeat_ms = 1000, liveness = 3;
    int log_json = 0;
    flag_t table[] = {
        {"broker", "MAP_BROKER", FLAG_STR, &broker, 0, 0, "broker endpoint to connect to"},
        {"agent", "MAP_FANOUT_AGENT", FLAG_STR, &agent, 0, 0, "agent id; served as service agent.<id>"},
        {"target", "MAP_FANOUT_TARGET", FLAG_STR, &target, 0, 0, "the agent called twice per input"},
        {"capacity", "MAP_FANOUT_CAPACITY", FLAG_INT, &capacity, 1, FRAME_CAPACITY_MAX, "invokes served at once"},
        {"heartbeat-ms", "MAP_HEARTBEAT_MS", FLAG_INT, &heartbeat_ms, 10, 60000, "heartbeat interval"},
        {"liveness", "MAP_LIVENESS", FLAG_INT, &liveness, 1, 100, "missed heartbeats before the broker is lost"},
        {"log-level", "MAP_LOG_LEVEL", FLAG_STR, &level, 0, 0, "debug, info, warn or error"},
        {"log-json", "MAP_LOG_JSON", FLAG_BOOL, &log_json, 0, 0, "log JSON lines"},
    };
    char err[256];
    int rc = flags_parse(table, sizeof table / sizeof *table, argc, argv,
                         "map-fanout: native agent that calls another agent twice per input "
                         "and merges the answers", err, sizeof err);
    if (rc == 1)
        return 0;
    log_init("fanout");
    if (rc < 0) {
        fprintf(stderr, "map-fanout: %s\n", err);
        return 2;
    }
    if (log_set_level(level) != 0) {
        fprintf(stderr, "map-fanout: --log-level must be debug, info, warn or error\n");
        return 2;
    }
    size_t agent_len = strlen(agent), target_len = strlen(target);
    if (agent_len == 0 || strlen(AGENT_SERVICE_PREFIX) + agent_len > FRAME_SERVICE_MAX ||
        target_len == 0 || target_len > AGENT_ID_MAX) {
        fprintf(stderr, "map-fanout: --agent and --target must have 1 to %zu bytes\n",
                (size_t)FRAME_SERVICE_MAX - strlen(AGENT_SERVICE_PREFIX));
        return 2;
    }
    char service[FRAME_SERVICE_MAX + 1];
    snprintf(service, sizeof service, "%s%s", AGENT_SERVICE_PREFIX, agent);
    log_set_json(log_json);
    sig_install();

    worker_config_t cfg = {.endpoint = broker,
                           .service = service,
                           .capacity = (uint32_t)capacity,
                           .heartbeat_ms = heartbeat_ms,
                           .liveness = liveness};
    worker_handlers_t h = {.on_request = s_on_request,
                           .on_cancel = s_on_cancel,
                           .on_stream = s_on_stream,
                           .on_reply = s_on_reply,
                           .on_error = s_on_error,
                           .on_link = s_on_link};
    s_app_t app = {0};
    worker_t *w = worker_new(&cfg, &h, &app, err, sizeof err);
    if (!w) {
        fprintf(stderr, "map-fanout: %s\n", err);
        return 1;
    }
    /* Nothing reaches the handlers before worker_run. */
    app.fan = fanout_new(w, target, (size_t)capacity);
    fanout_t *fan = app.fan;
    LOGI("fanout.start", "broker=%s service=%s target=%s capacity=%ld", broker, service, target,
         capacity);
    worker_run(w, &sig_stop);
    size_t stopped = fanout_fail_all(fan, "worker_stopping", "the fanout agent is stopping");
    fanout_stats_t st;
    fanout_stats(fan, &st);
    LOGI("fanout.stop",
         "started=%llu answered=%llu failed=%llu cancelled=%llu children_failed=%llu stopped=%zu",
         (unsigned long long)st.started, (unsigned long long)st.answered,
         (unsigned long long)st.failed, (unsigned long long)st.cancelled,
         (unsigned long long)st.children_failed, stopped);
    worker_destroy(&w);
    fanout_destroy(&fan);
    return 0;
}
