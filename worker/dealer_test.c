/* dealer_test: every configuration a peer is refused with (and its reason),
 * CURVE keys taken from the environment, and the socket opened: its
 * options, a bad endpoint and a bad key refused with a reason. */
#include "dealer.h"

#include "tests/support/check.h"

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static int s_refused(worker_config_t cfg, const char *why)
{
    worker_config_t out;
    char err[256] = "";
    return dealer_config(&cfg, &out, err, sizeof err) == -1 && strstr(err, why) != NULL;
}

int main(void)
{
    unsetenv("MAP_CURVE_SERVER_KEY");
    worker_config_t ok = {.endpoint = "tcp://127.0.0.1:1", .service = "agent.x", .capacity = 4};
    CHECK(s_refused((worker_config_t){.service = "a"}, "endpoint is empty"));
    CHECK(s_refused((worker_config_t){.endpoint = "tcp://127.0.0.1:1"}, "service name"));
    char longname[100];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK(s_refused((worker_config_t){.endpoint = "tcp://127.0.0.1:1", .service = longname},
                    "service name"));
    worker_config_t c = ok;
    c.capacity = 1000000;
    CHECK(s_refused(c, "over the maximum"));
    c = ok;
    c.heartbeat_ms = -1;
    CHECK(s_refused(c, "negative"));
    c = ok;
    c.curve_server_key = "k";
    CHECK(s_refused(c, "needs our public and secret keys"));

    worker_config_t out;
    char err[256];
    CHECK(dealer_config(&ok, &out, err, sizeof err) == 0 && !out.curve_server_key);
    CHECK(out.heartbeat_ms == DEALER_HEARTBEAT_DEFAULT && out.liveness == DEALER_LIVENESS_DEFAULT);
    CHECK(out.requests_max == DEALER_REQUESTS_DEFAULT && out.body_max > 0);
    setenv("MAP_CURVE_SERVER_KEY", "S", 1);
    setenv("MAP_CURVE_PUBLIC_KEY", "P", 1);
    setenv("MAP_CURVE_SECRET_KEY", "Q", 1);
    CHECK(dealer_config(&ok, &out, err, sizeof err) == 0);
    CHECK(!strcmp(out.curve_server_key, "S") && !strcmp(out.curve_secret_key, "Q"));
    c = ok;
    c.curve_server_key = "mine"; /* the program's keys win over the environment */
    c.curve_public_key = "p";
    c.curve_secret_key = "s";
    CHECK(dealer_config(&c, &out, err, sizeof err) == 0 && !strcmp(out.curve_server_key, "mine"));
    unsetenv("MAP_CURVE_SERVER_KEY");

    void *ctx = zmq_ctx_new();
    void *sock = dealer_open(ctx, &ok, 1234, err, sizeof err);
    CHECK(sock);
    int v;
    size_t vl = sizeof v;
    CHECK(zmq_getsockopt(sock, ZMQ_SNDHWM, &v, &vl) == 0 && v == 1234);
    CHECK(zmq_getsockopt(sock, ZMQ_IMMEDIATE, &v, &vl) == 0 && v == 1);
    dealer_close(sock, 0);
    worker_config_t bad = ok;
    bad.endpoint = "nonsense://x";
    CHECK(!dealer_open(ctx, &bad, 10, err, sizeof err) && strstr(err, "cannot connect"));
    bad = ok;
    bad.curve_server_key = "short";
    bad.curve_public_key = "short";
    bad.curve_secret_key = "short";
    CHECK(!dealer_open(ctx, &bad, 10, err, sizeof err) && strstr(err, "invalid CURVE key"));
    zmq_ctx_term(ctx);
    return 0;
}
