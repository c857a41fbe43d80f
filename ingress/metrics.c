/* metrics: see metrics.h. One table of counters, so a new one is one line. */
#include "metrics.h"

#include <jansson.h>

int metrics_orch_parse(const char *json, size_t len, metrics_orch_t *o)
{
    json_t *doc = json_loadb(json, len, 0, NULL);
    if (!json_is_object(doc)) {
        json_decref(doc);
        return -1;
    }
    o->orch_up = 1;
    o->pruned_runs = (uint64_t)json_integer_value(json_object_get(doc, "pruned_runs"));
    o->pruned_events = (uint64_t)json_integer_value(json_object_get(doc, "pruned_events"));
    o->pruned_messages = (uint64_t)json_integer_value(json_object_get(doc, "pruned_messages"));
    o->calls_done = (uint64_t)json_integer_value(json_object_get(doc, "calls_done"));
    o->calls_failed = (uint64_t)json_integer_value(json_object_get(doc, "calls_failed"));
    o->calls_cancelled = (uint64_t)json_integer_value(json_object_get(doc, "calls_cancelled"));
    o->calls_refused = (uint64_t)json_integer_value(json_object_get(doc, "calls_refused"));
    json_decref(doc);
    return 0;
}

void metrics_render(const metrics_t *m, const metrics_gauges_t *g, const metrics_orch_t *o,
                    sbuf_t *t)
{
    sbuf_catf(t, "# HELP map_ingress_connections Open connections by kind.\n"
                 "# TYPE map_ingress_connections gauge\n"
                 "map_ingress_connections{kind=\"http\"} %lld\n"
                 "map_ingress_connections{kind=\"ws\"} %lld\n",
              (long long)g->http_conns, (long long)g->ws_conns);
    sbuf_catf(t, "# TYPE map_ingress_sessions gauge\nmap_ingress_sessions %zu\n", g->sessions);
    sbuf_catf(t, "# TYPE map_ingress_orchestrator_pending gauge\nmap_ingress_orchestrator_pending %zu\n",
              g->pending);
    const struct {
        const char *name;
        uint64_t value;
    } counters[] = {
        {"map_ingress_http_requests_total", m->http_requests},
        {"map_ingress_ws_connections_total", m->ws_connections},
        {"map_ingress_ws_messages_total", m->ws_messages},
        {"map_ingress_events_sent_total", m->events_sent},
        {"map_ingress_orchestrator_requests_total", m->orch_requests},
        {"map_ingress_orchestrator_unavailable_total", m->orch_unavailable},
        {"map_ingress_slow_clients_closed_total", m->slow_closed},
        {"map_ingress_gap_fills_total", m->fills},
        {"map_ingress_watches_lost_total", m->watches_lost},
        {"map_ingress_forbidden_total", m->forbidden},
        {"map_ingress_errors_total", m->errors},
    };
    for (size_t i = 0; i < sizeof counters / sizeof *counters; i++)
        sbuf_catf(t, "# TYPE %s counter\n%s %llu\n", counters[i].name, counters[i].name,
                  (unsigned long long)counters[i].value);
    sbuf_catf(t, "# TYPE map_ingress_broker_up gauge\nmap_ingress_broker_up %d\n", g->broker_up);
    sbuf_catf(t, "# TYPE map_orchestrator_up gauge\nmap_orchestrator_up %d\n", o && o->orch_up);
    if (!o || !o->orch_up)
        return;
    sbuf_catf(t, "# HELP map_orchestrator_pruned_total Rows retention deleted since the orchestrator started.\n"
                 "# TYPE map_orchestrator_pruned_total counter\n"
                 "map_orchestrator_pruned_total{table=\"runs\"} %llu\n"
                 "map_orchestrator_pruned_total{table=\"events\"} %llu\n"
                 "map_orchestrator_pruned_total{table=\"messages\"} %llu\n",
              (unsigned long long)o->pruned_runs, (unsigned long long)o->pruned_events,
              (unsigned long long)o->pruned_messages);
    sbuf_catf(t, "# HELP map_calls_total Agent calls (child runs, SPEC 7) by outcome since the orchestrator started.\n"
                 "# TYPE map_calls_total counter\n"
                 "map_calls_total{outcome=\"done\"} %llu\n"
                 "map_calls_total{outcome=\"failed\"} %llu\n"
                 "map_calls_total{outcome=\"cancelled\"} %llu\n"
                 "map_calls_total{outcome=\"refused\"} %llu\n",
              (unsigned long long)o->calls_done, (unsigned long long)o->calls_failed,
              (unsigned long long)o->calls_cancelled, (unsigned long long)o->calls_refused);
}
