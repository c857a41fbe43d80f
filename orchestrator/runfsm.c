/* runfsm: one table, so the legal transitions are read in one place. */
#include "runfsm.h"

#include <string.h>

#define S_ILLEGAL (-1)

/* s_table[from][input] = to, or S_ILLEGAL. */
static const int s_table[5][4] = {
    /*              START        FINISH     FAIL        CANCEL */
    /* queued  */ {RUN_RUNNING, S_ILLEGAL, RUN_FAILED, RUN_CANCELLED},
    /* running */ {S_ILLEGAL, RUN_DONE, RUN_FAILED, RUN_CANCELLED},
    /* done    */ {S_ILLEGAL, S_ILLEGAL, S_ILLEGAL, S_ILLEGAL},
    /* failed  */ {S_ILLEGAL, S_ILLEGAL, S_ILLEGAL, S_ILLEGAL},
    /* cancel. */ {S_ILLEGAL, S_ILLEGAL, S_ILLEGAL, S_ILLEGAL},
};

static const char *s_names[] = {"queued", "running", "done", "failed", "cancelled"};

int runfsm_next(run_status_t from, run_input_t input, run_status_t *to)
{
    if ((unsigned)from > RUN_CANCELLED || (unsigned)input > RUN_CANCEL)
        return -1;
    int next = s_table[from][input];
    if (next == S_ILLEGAL)
        return -1;
    *to = (run_status_t)next;
    return 0;
}

int runfsm_terminal(run_status_t status)
{
    return status == RUN_DONE || status == RUN_FAILED || status == RUN_CANCELLED;
}

const char *runfsm_name(run_status_t status)
{
    return (unsigned)status <= RUN_CANCELLED ? s_names[status] : "unknown";
}

int runfsm_parse(const char *name, run_status_t *out)
{
    for (int i = 0; i <= RUN_CANCELLED; i++) {
        if (strcmp(name, s_names[i]) == 0) {
            *out = (run_status_t)i;
            return 0;
        }
    }
    return -1;
}

const char *runfsm_terminal_event(run_status_t status)
{
    switch (status) {
    case RUN_DONE: return "run_done";
    case RUN_FAILED: return "run_failed";
    case RUN_CANCELLED: return "run_cancelled";
    default: return NULL;
    }
}

int runfsm_terminal_type(const char *type)
{
    return strcmp(type, "run_done") == 0 || strcmp(type, "run_failed") == 0 ||
           strcmp(type, "run_cancelled") == 0;
}
