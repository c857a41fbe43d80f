/* map-ingress: parses flags, opens the edge, runs it. */
#include "edge.h"

#include "common/flags.h"
#include "common/log.h"
#include "common/sig.h"

#include <czmq.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    const char *http_addr = "127.0.0.1:8080";
    const char *broker = "tcp://127.0.0.1:5555";
    const char *api_key = NULL;
    const char *level = "info";
    int allow_remote = 0, log_json = 0;
    long max_body = 1 << 20, max_ws = 1 << 20, max_outq = 4 << 20, timeout_ms = 10000;
    long ping_secs = 20, heartbeat_ms = 1000, per_conn = 256;
    const char *origins = "";
    flag_t table[] = {
        {"http-addr", "MAP_HTTP_ADDR", FLAG_STR, &http_addr, 0, 0, "HTTP + WebSocket address host:port"},
        {"broker", "MAP_BROKER", FLAG_STR, &broker, 0, 0, "broker endpoint"},
        {"api-key", "MAP_API_KEY", FLAG_STR, &api_key, 0, 0, "API key (unset: no auth, loopback only)"},
        {"allow-remote", "MAP_ALLOW_REMOTE", FLAG_BOOL, &allow_remote, 0, 0,
         "listen beyond loopback without an API key"},
        {"max-body", "MAP_MAX_BODY", FLAG_INT, &max_body, 1024, 64L << 20, "largest HTTP body, bytes"},
        {"max-ws-message", "MAP_MAX_WS_MESSAGE", FLAG_INT, &max_ws, 1024, 64L << 20,
         "largest WebSocket message, bytes"},
        {"max-outq", "MAP_MAX_OUTQ", FLAG_INT, &max_outq, 4096, 1L << 30,
         "bytes queued per connection before a slow reader is closed"},
        {"request-timeout-ms", "MAP_REQUEST_TIMEOUT_MS", FLAG_INT, &timeout_ms, 100, 600000,
         "an orchestrator answer later than this is a 503"},
        {"ws-ping-secs", "MAP_WS_PING_SECS", FLAG_INT, &ping_secs, 1, 3600,
         "WebSocket keep-alive ping interval"},
        {"heartbeat-ms", "MAP_HEARTBEAT_MS", FLAG_INT, &heartbeat_ms, 10, 60000, "broker heartbeat"},
        {"allowed-origins", "MAP_ALLOWED_ORIGINS", FLAG_STR, &origins, 0, 0,
         "web origins allowed besides the edge's own (comma-separated)"},
        {"max-requests-per-conn", "MAP_MAX_REQUESTS_PER_CONN", FLAG_INT, &per_conn, 1, 100000,
         "orchestrator requests in flight per connection"},
        {"log-level", "MAP_LOG_LEVEL", FLAG_STR, &level, 0, 0, "debug, info, warn or error"},
        {"log-json", "MAP_LOG_JSON", FLAG_BOOL, &log_json, 0, 0, "log JSON lines"},
    };
    char err[512];
    int rc = flags_parse(table, sizeof table / sizeof *table, argc, argv,
                         "map-ingress: the HTTP + WebSocket edge (REST API and /ws)", err, sizeof err);
    if (rc == 1)
        return 0;
    log_init("ingress");
    if (rc == 0 && log_set_level(level) != 0)
        snprintf(err, sizeof err, "--log-level must be debug, info, warn or error"), rc = -1;
    if (rc < 0) {
        fprintf(stderr, "map-ingress: %s\n", err);
        return 2;
    }
    log_set_json(log_json);
    zsys_handler_set(NULL);
    edge_config_t cfg = {.http_addr = http_addr, .broker = broker, .api_key = api_key,
                         .allow_remote = allow_remote, .max_body = max_body,
                         .max_ws_message = max_ws, .max_outq = max_outq,
                         .request_timeout_ms = timeout_ms, .ws_ping_secs = ping_secs,
                         .heartbeat_ms = heartbeat_ms, .max_requests_per_conn = per_conn,
                         .allowed_origins = origins};
    edge_t *edge = edge_new(&cfg, err, sizeof err);
    if (!edge) {
        fprintf(stderr, "map-ingress: %s\n", err);
        return 1;
    }
    sig_install(); /* after the edge: lws's event-loop setup takes SIGTERM otherwise */
    LOGI("ingress.start", "http_addr=%s broker=%s auth=%s", http_addr, broker,
         api_key && *api_key ? "api_key" : "none");
    edge_run(edge, &sig_stop);
    edge_destroy(&edge);
    LOGI("ingress.stop", "clean=1");
    return 0;
}
