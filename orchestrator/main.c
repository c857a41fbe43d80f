/* map-orchestrator: parses flags, opens the engine, runs it. */
#include "engine.h"
#include "retention.h"

#include "common/flags.h"
#include "common/log.h"
#include "common/sig.h"

#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *broker = "tcp://127.0.0.1:5555";
    const char *db = "./data/map.db";
    const char *durability = "normal";
    const char *level = "info";
    const char *retention = "";
    long agent_timeout_ms = 30000, heartbeat_ms = 1000, history_max = 200, drain_ms = 2000;
    long runs_max = 100000, queued_max = 64, follows_max = 256;
    long call_depth_max = 5, calls_per_run_max = 32;
    int log_json = 0, allow_reentry = 0;
    flag_t table[] = {
        {"broker", "MAP_BROKER", FLAG_STR, &broker, 0, 0, "broker endpoint"},
        {"db", "MAP_DB", FLAG_STR, &db, 0, 0, "SQLite database path"},
        {"durability", "MAP_DURABILITY", FLAG_STR, &durability, 0, 0,
         "normal (survives a process crash) or full (fsync each commit)"},
        {"agent-timeout-ms", "MAP_AGENT_TIMEOUT_MS", FLAG_INT, &agent_timeout_ms, 10, 3600000,
         "a run fails with agent_timeout after this long without a frame from its agent"},
        {"heartbeat-ms", "MAP_HEARTBEAT_MS", FLAG_INT, &heartbeat_ms, 10, 60000, "broker heartbeat"},
        {"history-max", "MAP_HISTORY_MAX", FLAG_INT, &history_max, 0, 100000,
         "messages of session history sent with an invoke"},
        {"drain-ms", "MAP_DRAIN_MS", FLAG_INT, &drain_ms, 0, 600000,
         "on SIGTERM, time given to running runs before they fail"},
        {"runs-max", "MAP_RUNS_MAX", FLAG_INT, &runs_max, 1, 10000000, "runs in progress at once"},
        {"retention", "MAP_RETENTION", FLAG_STR, &retention, 0, 0,
         "prune ended runs (events, messages) older than this: 30d, 12h, 90m; empty keeps all"},
        {"max-queued-runs", "MAP_MAX_QUEUED_RUNS", FLAG_INT, &queued_max, 1, 1000000,
         "runs one session may have waiting behind its running one (429 too_many_runs past it)"},
        {"max-follows-per-run", "MAP_MAX_FOLLOWS_PER_RUN", FLAG_INT, &follows_max, 1, 1000000,
         "requesters following one run at once (429 too_many_follows past it)"},
        {"max-call-depth", "MAP_MAX_CALL_DEPTH", FLAG_INT, &call_depth_max, 1, 1000,
         "deepest agent call (a child run's depth; 409 call_refused past it)"},
        {"max-calls-per-run", "MAP_MAX_CALLS_PER_RUN", FLAG_INT, &calls_per_run_max, 1, 100000,
         "agent calls (distinct call_ids) one run may start (409 call_refused past it)"},
        {"allow-reentry", "MAP_ALLOW_REENTRY", FLAG_BOOL, &allow_reentry, 0, 0,
         "let an agent be called by a run whose call chain already has it (A->B->A)"},
        {"log-level", "MAP_LOG_LEVEL", FLAG_STR, &level, 0, 0, "debug, info, warn or error"},
        {"log-json", "MAP_LOG_JSON", FLAG_BOOL, &log_json, 0, 0, "log JSON lines"},
    };
    char err[512];
    int rc = flags_parse(table, sizeof table / sizeof *table, argc, argv,
                         "map-orchestrator: runs, their event log (SQLite) and replay", err,
                         sizeof err);
    if (rc == 1)
        return 0;
    log_init("orchestrator");
    if (rc == 0 && log_set_level(level) != 0)
        snprintf(err, sizeof err, "--log-level must be debug, info, warn or error"), rc = -1;
    if (rc == 0 && strcmp(durability, "normal") != 0 && strcmp(durability, "full") != 0)
        snprintf(err, sizeof err, "--durability must be normal or full"), rc = -1;
    int64_t retention_ms = 0;
    char why[300];
    if (rc == 0 && retention_parse(retention, &retention_ms, why, sizeof why) != 0)
        snprintf(err, sizeof err, "--retention (MAP_RETENTION): %s", why), rc = -1;
    if (rc < 0) {
        fprintf(stderr, "map-orchestrator: %s\n", err);
        return 2;
    }
    log_set_json(log_json);
    zsys_handler_set(NULL); /* czmq must not take SIGINT/SIGTERM */
    sig_install();
    /* A file-size limit reached is a failed write (EFBIG), like a full disk,
     * not the end of the process: the engine fails the turn and goes on. */
    signal(SIGXFSZ, SIG_IGN);
    engine_config_t cfg = {.broker = broker,
                           .db = db,
                           .durability_full = strcmp(durability, "full") == 0,
                           .agent_timeout_ms = agent_timeout_ms,
                           .heartbeat_ms = heartbeat_ms,
                           .history_max = history_max,
                           .drain_ms = drain_ms,
                           .runs_max = runs_max,
                           .retention_ms = retention_ms,
                           .queued_max = queued_max,
                           .follows_max = follows_max,
                           .call_depth_max = call_depth_max,
                           .calls_per_run_max = calls_per_run_max,
                           .allow_reentry = allow_reentry};
    engine_t *engine = engine_new(&cfg, err, sizeof err);
    if (!engine) {
        fprintf(stderr, "map-orchestrator: %s\n", err);
        return 1;
    }
    LOGI("orchestrator.start", "broker=%s db=%s durability=%s agent_timeout_ms=%ld retention=%s",
         broker, db, durability, agent_timeout_ms, *retention ? retention : "all");
    rc = engine_run(engine, &sig_stop);
    engine_destroy(&engine);
    LOGI("orchestrator.stop", "clean=%d", rc == 0);
    return rc == 0 ? 0 : 1;
}
