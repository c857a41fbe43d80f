/* routes: the REST paths of SPEC §3 and the bodies of its POSTs, as pure
 * functions: path + method → route; JSON body → an orchestrator request
 * (proto/orch.h) or a SPEC error (status, code, message). */
#ifndef MAP_ROUTES_H
#define MAP_ROUTES_H
#include "proto/mp.h"

#include <stddef.h>

typedef enum {
    ROUTE_HEALTH = 1,
    ROUTE_REGISTER,
    ROUTE_AGENTS,
    ROUTE_INVOKE,
    ROUTE_RUN,
    ROUTE_RUN_EVENTS,
    ROUTE_RUN_CANCEL,
    ROUTE_MESSAGES,
    ROUTE_SEND,
    ROUTE_METRICS,
    ROUTE_SESSION_RUNS,
    ROUTE_UI,          /* GET /ui and /ui/<file>: the browser page (ui.h); arg: the path */
    ROUTE_RUN_CALL,    /* POST /v1/runs/{id}/calls: a child run (SPEC §7), run token auth */
    ROUTE_RUN_CALLS,   /* GET /v1/runs/{id}/calls: the run's children */
} route_id_t;

typedef struct {
    route_id_t id;
    char arg[129]; /* run_id or session_id from the path */
} route_t;

typedef struct {
    int status;        /* HTTP status */
    const char *code;  /* SPEC error code */
    char message[256];
} route_err_t;

/* Returns 0 with *out set, or -1 with e: 404 unknown path, 405 known path
 * with another method, 400 a bad id in the path. */
int routes_match(const char *method, const char *path, route_t *out, route_err_t *e);

/* POST /internal/invoke body → {"op":"invoke",...,"follow":true} in b. */
int routes_invoke(const char *body, size_t len, mp_buf_t *b, route_err_t *e);
/* The run token of an Authorization header ("Bearer <32 lowercase hex>")
 * into token (cap >= ROUTES_TOKEN_LEN + 1). 0, or -1 when absent or
 * malformed (the edge answers 401). */
#define ROUTES_TOKEN_LEN 32
int routes_bearer_token(const char *authorization, char *token, size_t cap);
/* POST /v1/runs/{run_id}/calls body {"call_id","agent_id","input_message":
 * {"role","content"},"messages":[{"role","content"},...]} (messages
 * optional) → {"op":"call","run_id","token","call_id","agent_id","role",
 * "content","history"} in b (ORCHESTRATOR.md, op call). Unknown top-level
 * keys are ignored, as for invoke; inside a message they are errors. */
int routes_call(const char *run_id, const char *token, const char *body, size_t len, mp_buf_t *b,
                route_err_t *e);
/* POST /v1/agents/register body → {"op":"register",...} in b. */
int routes_register(const char *body, size_t len, mp_buf_t *b, route_err_t *e);
/* POST /internal/send body: OUT session_id and the event's JSON text
 * (compact, caller frees *event_json). */
int routes_send(const char *body, size_t len, char *session_id, size_t cap, char **event_json,
                route_err_t *e);
/* Writes the SPEC error envelope of e into out (NUL-terminated). */
void routes_error_json(const route_err_t *e, char *out, size_t cap);

#endif
