/* dispatch_test: the services cache from the broker's list (and a
 * malformed one), native agents reported once until forgotten, routing
 * from the cache and the store, ERROR codes mapped to run_failed codes. */
#include "dispatch.h"

#include "tests/support/check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char s_seen[256];

static void s_on_seen(void *arg, const char *id)
{
    (void)arg;
    strncat(s_seen, id, sizeof s_seen - strlen(s_seen) - 2);
    strcat(s_seen, ";");
}

int main(void)
{
    char dir[] = "/tmp/map-dispatch-test-XXXXXX";
    CHECK(mkdtemp(dir));
    char path[256], err[512];
    snprintf(path, sizeof path, "%s/d.db", dir);
    store_t *st = store_new(path, STORE_NORMAL, err, sizeof err);
    CHECK(st);
    int created;
    CHECK(store_begin(st) == 0);
    CHECK(store_agent_upsert(st, "demo", "Demo", "http://127.0.0.1:8000", "T", &created) == 0);
    CHECK(store_commit(st) == 0);
    dispatch_t *d = dispatch_new(NULL, st, 1 << 20);

    /* [["agent.echo",2,2,2,0],["bridge",3,9,9,0],["agent.idle",0,0,0,0],["orchestrator",1,1,1,0]] */
    const char list[] = "\x94"
                        "\x95\xaa" "agent.echo" "\x02\x02\x02\x00"
                        "\x95\xa6" "bridge" "\x03\x09\x09\x00"
                        "\x95\xaa" "agent.idle" "\x00\x00\x00\x00"
                        "\x95\xac" "orchestrator" "\x01\x01\x01\x00";
    CHECK(dispatch_on_services(d, (const uint8_t *)list, sizeof list - 1, s_on_seen, NULL) == 0);
    CHECK(!strcmp(s_seen, "echo;")); /* a service with no worker is no agent */
    CHECK(dispatch_workers(d, "echo") == 2 && dispatch_workers(d, "idle") == 0);
    CHECK(dispatch_bridge_workers(d) == 3);
    s_seen[0] = '\0';
    CHECK(dispatch_on_services(d, (const uint8_t *)list, sizeof list - 1, s_on_seen, NULL) == 0);
    CHECK(s_seen[0] == '\0'); /* reported once */
    dispatch_forget_recorded(d);
    CHECK(dispatch_on_services(d, (const uint8_t *)list, sizeof list - 1, s_on_seen, NULL) == 0);
    CHECK(!strcmp(s_seen, "echo;"));
    /* Malformed: an entry of 4 fields. */
    CHECK(dispatch_on_services(d, (const uint8_t *)"\x91\x94\xa1x\x01\x01\x01", 7, NULL, NULL) == -1);
    CHECK(dispatch_on_services(d, (const uint8_t *)"\x01", 1, NULL, NULL) == -1);
    CHECK(dispatch_on_services(d, (const uint8_t *)list, sizeof list - 1, NULL, NULL) == 0);

    char ep[256];
    int store_err = 0;
    CHECK(dispatch_route(d, "demo", ep, sizeof ep, &store_err) == DISPATCH_HTTP);
    CHECK(!strcmp(ep, "http://127.0.0.1:8000") && !store_err);
    CHECK(dispatch_route(d, "echo", ep, sizeof ep, &store_err) == DISPATCH_NATIVE);
    CHECK(dispatch_route(d, "nobody", ep, sizeof ep, &store_err) == DISPATCH_UNKNOWN);
    /* A native agent recorded in the store is not an HTTP one. */
    CHECK(store_begin(st) == 0 && store_agent_native(st, "echo", "T") == 0 && store_commit(st) == 0);
    CHECK(dispatch_route(d, "echo", ep, sizeof ep, &store_err) == DISPATCH_NATIVE);

    CHECK(!strcmp(dispatch_error_code("agent_timeout"), "agent_timeout"));
    CHECK(!strcmp(dispatch_error_code("broker_lost"), "worker_lost"));
    CHECK(!strcmp(dispatch_error_code("unknown_service"), "agent_unavailable"));
    CHECK(!strcmp(dispatch_error_code("overloaded"), "agent_unavailable"));
    CHECK(!strcmp(dispatch_error_code("whatever"), "agent_error"));

    /* No worker: nothing is asked, nothing is sent. */
    dispatch_ask(d, 1, 0);
    CHECK(dispatch_asked(d) == 0);
    CHECK(!dispatch_due(d, -1) && dispatch_due(d, 0));

    dispatch_destroy(&d);
    CHECK(d == NULL);
    store_destroy(&st);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return 0;
}
