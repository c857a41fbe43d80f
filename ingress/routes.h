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
/* POST /v1/agents/register body → {"op":"register",...} in b. */
int routes_register(const char *body, size_t len, mp_buf_t *b, route_err_t *e);
/* POST /internal/send body: OUT session_id and the event's JSON text
 * (compact, caller frees *event_json). */
int routes_send(const char *body, size_t len, char *session_id, size_t cap, char **event_json,
                route_err_t *e);
/* Writes the SPEC error envelope of e into out (NUL-terminated). */
void routes_error_json(const route_err_t *e, char *out, size_t cap);

#endif
