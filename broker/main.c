/* map-broker: parses flags and runs the broker loop. */
#include "broker.h"

#include "common/flags.h"
#include "common/log.h"
#include "common/sig.h"
#include "proto/frame.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    const char *endpoint = "tcp://127.0.0.1:5555";
    const char *tap = "tcp://127.0.0.1:5556";
    const char *level = "info";
    long heartbeat_ms = 1000, liveness = 3, queue_max = 10000;
    long body_max = FRAME_BODY_MAX_DEFAULT, tap_hwm = 100000;
    int log_json = 0;
    const char *curve_secret = NULL, *curve_allow = NULL;
    flag_t table[] = {
        {"endpoint", "MAP_BROKER", FLAG_STR, &endpoint, 0, 0, "ROUTER endpoint to bind (tcp://, ipc://)"},
        {"tap", "MAP_TAP", FLAG_STR, &tap, 0, 0, "tap XPUB endpoint to bind (empty: no tap)"},
        {"heartbeat-ms", "MAP_HEARTBEAT_MS", FLAG_INT, &heartbeat_ms, 10, 60000, "heartbeat interval"},
        {"liveness", "MAP_LIVENESS", FLAG_INT, &liveness, 1, 100, "missed heartbeats before a peer is dead"},
        {"queue-max", "MAP_QUEUE_MAX", FLAG_INT, &queue_max, 0, 1000000, "requests waiting per service"},
        {"body-max", "MAP_BODY_MAX", FLAG_INT, &body_max, 1024, 64L << 20, "largest body routed, bytes"},
        {"tap-hwm", "MAP_TAP_HWM", FLAG_INT, &tap_hwm, 1, 10000000, "tap copies queued before dropping"},
        {"curve-secret", "MAP_BROKER_CURVE_SECRET", FLAG_STR, &curve_secret, 0, 0,
         "CURVE secret key (z85, from map-keygen): encrypt and authenticate every peer"},
        {"curve-allow", "MAP_CURVE_ALLOW", FLAG_STR, &curve_allow, 0, 0,
         "with CURVE: directory of the public certificates of allowed peers"},
        {"log-level", "MAP_LOG_LEVEL", FLAG_STR, &level, 0, 0, "debug, info, warn or error"},
        {"log-json", "MAP_LOG_JSON", FLAG_BOOL, &log_json, 0, 0, "log JSON lines"},
    };
    char err[256];
    int rc = flags_parse(table, sizeof table / sizeof *table, argc, argv,
                         "map-broker: the ZeroMQ ROUTER hub every process connects to", err,
                         sizeof err);
    if (rc == 1)
        return 0;
    log_init("broker");
    if (rc < 0 || log_set_level(level) != 0) {
        fprintf(stderr, "map-broker: %s\n", rc < 0 ? err : "--log-level must be debug, info, warn or error");
        return 2;
    }
    log_set_json(log_json);
    sig_install();
    broker_config_t cfg = {.endpoint = endpoint,
                           .tap_endpoint = tap,
                           .heartbeat_ms = heartbeat_ms,
                           .liveness = liveness,
                           .queue_max = queue_max,
                           .body_max = body_max,
                           .tap_hwm = tap_hwm,
                           .curve_secret = curve_secret,
                           .curve_allow = curve_allow};
    broker_t *broker = broker_new(&cfg, err, sizeof err);
    if (!broker) {
        fprintf(stderr, "map-broker: %s\n", err);
        return 1;
    }
    LOGI("broker.start", "endpoint=%s tap=%s heartbeat_ms=%ld liveness=%ld queue_max=%ld body_max=%ld",
         endpoint, *tap ? tap : "-", heartbeat_ms, liveness, queue_max, body_max);
    broker_run(broker, &sig_stop);
    broker_stats_t st;
    broker_stats(broker, &st);
    LOGI("broker.stop", "frames_in=%llu frames_out=%llu rejected=%llu dropped=%llu tap_dropped=%llu",
         (unsigned long long)st.frames_in, (unsigned long long)st.frames_out,
         (unsigned long long)st.frames_rejected, (unsigned long long)st.frames_dropped,
         (unsigned long long)st.tap_dropped);
    broker_destroy(&broker);
    return 0;
}
