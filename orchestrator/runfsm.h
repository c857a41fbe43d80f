/* runfsm: the run state machine of SPEC §2, as a pure function.
 *
 *   queued  --start-->  running
 *   queued  --cancel--> cancelled      queued  --fail--> failed
 *   running --finish--> done           running --fail--> failed
 *   running --cancel--> cancelled
 *
 * done, failed and cancelled are terminal: nothing leaves them. */
#ifndef MAP_RUNFSM_H
#define MAP_RUNFSM_H

typedef enum { RUN_QUEUED = 0, RUN_RUNNING, RUN_DONE, RUN_FAILED, RUN_CANCELLED } run_status_t;
typedef enum { RUN_START = 0, RUN_FINISH, RUN_FAIL, RUN_CANCEL } run_input_t;

/* Returns 0 and sets *to, or -1 when the input is illegal in state from. */
int runfsm_next(run_status_t from, run_input_t input, run_status_t *to);
int runfsm_terminal(run_status_t status);
const char *runfsm_name(run_status_t status);         /* "queued", ... */
int runfsm_parse(const char *name, run_status_t *out); /* 0 or -1 */
/* The terminal event type of a terminal status ("run_done", ...), or NULL. */
const char *runfsm_terminal_event(run_status_t status);
/* 1 when an event of this type ends its run (run_done, run_failed,
 * run_cancelled). */
int runfsm_terminal_type(const char *type);

#endif
