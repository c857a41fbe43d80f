/* metrics_test: the exposition has every counter and gauge, in the text
 * format Prometheus reads (TYPE line, then name value). */
#include "metrics.h"

#include "tests/support/check.h"

#include <string.h>

int main(void)
{
    metrics_t m = {.http_requests = 7, .forbidden = 2, .fills = 3};
    metrics_gauges_t g = {.http_conns = 4, .ws_conns = 5, .sessions = 6, .pending = 9,
                          .broker_up = 1};
    sbuf_t t;
    sbuf_init(&t, 1 << 16);
    metrics_orch_t o;
    const char *health = "{\"status\":\"ok\",\"pruned_runs\":11,\"pruned_events\":220,"
                         "\"pruned_messages\":22,\"calls_done\":5,\"calls_failed\":1,"
                         "\"calls_cancelled\":2,\"calls_refused\":3}";
    CHECK(metrics_orch_parse(health, strlen(health), &o) == 0);
    CHECK(metrics_orch_parse("nope", 4, &o) == -1);
    metrics_render(&m, &g, &o, &t);
    const char *s = sbuf_cstr(&t);
    CHECK(!t.overflow);
    CHECK(strstr(s, "# TYPE map_ingress_http_requests_total counter\nmap_ingress_http_requests_total 7\n"));
    CHECK(strstr(s, "map_ingress_forbidden_total 2\n"));
    CHECK(strstr(s, "map_ingress_gap_fills_total 3\n"));
    CHECK(strstr(s, "map_ingress_connections{kind=\"http\"} 4\n"));
    CHECK(strstr(s, "map_ingress_connections{kind=\"ws\"} 5\n"));
    CHECK(strstr(s, "map_ingress_sessions 6\n"));
    CHECK(strstr(s, "map_ingress_orchestrator_pending 9\n"));
    CHECK(strstr(s, "map_ingress_broker_up 1\n"));
    CHECK(strstr(s, "map_orchestrator_up 1\n"));
    CHECK(strstr(s, "map_orchestrator_pruned_total{table=\"runs\"} 11\n"));
    CHECK(strstr(s, "map_orchestrator_pruned_total{table=\"events\"} 220\n"));
    CHECK(strstr(s, "map_orchestrator_pruned_total{table=\"messages\"} 22\n"));
    CHECK(strstr(s, "# TYPE map_calls_total counter\n"));
    CHECK(strstr(s, "map_calls_total{outcome=\"done\"} 5\n"));
    CHECK(strstr(s, "map_calls_total{outcome=\"failed\"} 1\n"));
    CHECK(strstr(s, "map_calls_total{outcome=\"cancelled\"} 2\n"));
    CHECK(strstr(s, "map_calls_total{outcome=\"refused\"} 3\n"));
    /* Every sample line is "name[{labels}] value". */
    for (const char *line = s; *line;) {
        const char *end = strchr(line, '\n');
        CHECK(end);
        if (*line != '#') {
            const char *sp = memchr(line, ' ', (size_t)(end - line));
            CHECK(sp && sp > line && sp + 1 < end);
        }
        line = end + 1;
    }
    /* The orchestrator away: its lines are left out, up says 0. */
    sbuf_reset(&t);
    metrics_render(&m, &g, NULL, &t);
    CHECK(strstr(sbuf_cstr(&t), "map_orchestrator_up 0\n") && !strstr(t.data, "pruned") &&
          !strstr(t.data, "map_calls_total"));
    sbuf_free(&t);
    printf("metrics_test: ok\n");
    return 0;
}
