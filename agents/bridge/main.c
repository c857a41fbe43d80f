/* map-bridge: parses flags and runs the HTTP/SSE bridge worker (bridge.h). */
#include "bridge.h"
#include "relay.h"

#include "common/flags.h"
#include "common/log.h"
#include "common/sig.h"
#include "proto/frame.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    const char *broker = "tcp://127.0.0.1:5555";
    const char *level = "info";
    long capacity = 256, timeout_ms = 30000, max_response = RELAY_ANSWER_MAX, heartbeat_ms = 1000;
    const char *public_url = "";
    int log_json = 0;
    flag_t table[] = {
        {"broker", "MAP_BROKER", FLAG_STR, &broker, 0, 0, "broker ROUTER endpoint to connect to"},
        {"capacity", "MAP_BRIDGE_CAPACITY", FLAG_INT, &capacity, 1, FRAME_CAPACITY_MAX,
         "invokes served at once"},
        {"timeout-ms", "MAP_BRIDGE_TIMEOUT_MS", FLAG_INT, &timeout_ms, 1, 24L * 3600000,
         "an agent silent this long fails with agent_timeout (unless the invoke sets timeout_ms)"},
        {"max-response", "MAP_BRIDGE_MAX_RESPONSE", FLAG_INT, &max_response, 1024, RELAY_ANSWER_MAX,
         "largest answer accepted from one agent, bytes"},
        {"public-url", "MAP_PUBLIC_URL", FLAG_STR, &public_url, 0, 0,
         "the edge's base URL that agents call back (platform.calls_url = <it>/v1/runs/<run>/calls); "
         "default http:// + MAP_HTTP_ADDR (127.0.0.1:8080)"},
        {"heartbeat-ms", "MAP_HEARTBEAT_MS", FLAG_INT, &heartbeat_ms, 10, 60000, "heartbeat interval"},
        {"log-level", "MAP_LOG_LEVEL", FLAG_STR, &level, 0, 0, "debug, info, warn or error"},
        {"log-json", "MAP_LOG_JSON", FLAG_BOOL, &log_json, 0, 0, "log JSON lines"},
    };
    char err[256];
    int rc = flags_parse(table, sizeof table / sizeof *table, argc, argv,
                         "map-bridge: serves agents registered by HTTP endpoint (POST /invoke, SSE) as broker "
                         "service \"bridge\"",
                         err, sizeof err);
    if (rc == 1)
        return 0;
    log_init("bridge");
    if (rc < 0 || log_set_level(level) != 0) {
        fprintf(stderr, "map-bridge: %s\n",
                rc < 0 ? err : "--log-level must be debug, info, warn or error");
        return 2;
    }
    log_set_json(log_json);
    char base[RELAY_PUBLIC_URL_MAX];
    if (relay_public_url(public_url, getenv("MAP_HTTP_ADDR"), base, sizeof base, err, sizeof err) != 0) {
        fprintf(stderr, "map-bridge: --public-url: %s\n", err);
        return 2;
    }
    sig_install();
    bridge_config_t cfg = {.broker = broker,
                           .capacity = (uint32_t)capacity,
                           .timeout_ms = timeout_ms,
                           .max_response = (size_t)max_response,
                           .heartbeat_ms = heartbeat_ms,
                           .public_url = base};
    bridge_t *bridge = bridge_new(&cfg, err, sizeof err);
    if (!bridge) {
        fprintf(stderr, "map-bridge: %s\n", err);
        return 1;
    }
    bridge_run(bridge, &sig_stop);
    bridge_stats_t st;
    bridge_stats(bridge, &st);
    LOGI("bridge.stop", "invokes=%llu done=%llu failed=%llu cancelled=%llu deltas=%llu connects=%llu",
         (unsigned long long)st.invokes, (unsigned long long)st.done, (unsigned long long)st.failed,
         (unsigned long long)st.cancelled, (unsigned long long)st.deltas,
         (unsigned long long)st.connects);
    bridge_destroy(&bridge);
    return 0;
}
