/* runfsm_test: every transition of the run state machine, legal or not. */
#include "runfsm.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    /* The legal transitions, exactly. */
    struct { run_status_t from; run_input_t in; run_status_t to; } legal[] = {
        {RUN_QUEUED, RUN_START, RUN_RUNNING},   {RUN_QUEUED, RUN_CANCEL, RUN_CANCELLED},
        {RUN_QUEUED, RUN_FAIL, RUN_FAILED},     {RUN_RUNNING, RUN_FINISH, RUN_DONE},
        {RUN_RUNNING, RUN_FAIL, RUN_FAILED},    {RUN_RUNNING, RUN_CANCEL, RUN_CANCELLED},
    };
    int legal_count = 0;
    for (int from = RUN_QUEUED; from <= RUN_CANCELLED; from++) {
        for (int in = RUN_START; in <= RUN_CANCEL; in++) {
            run_status_t to = (run_status_t)99;
            int rc = runfsm_next((run_status_t)from, (run_input_t)in, &to);
            int expected = -1;
            for (size_t i = 0; i < sizeof legal / sizeof *legal; i++) {
                if (legal[i].from == (run_status_t)from && legal[i].in == (run_input_t)in) {
                    expected = 0;
                    assert(to == legal[i].to);
                }
            }
            assert(rc == expected);
            if (rc != 0)
                assert(to == (run_status_t)99); /* untouched on an illegal input */
            legal_count += rc == 0;
        }
    }
    assert(legal_count == 6);
    /* Nothing leaves a terminal state. */
    assert(runfsm_terminal(RUN_DONE) && runfsm_terminal(RUN_FAILED) &&
           runfsm_terminal(RUN_CANCELLED));
    assert(!runfsm_terminal(RUN_QUEUED) && !runfsm_terminal(RUN_RUNNING));
    /* Out-of-range values are illegal, not undefined. */
    run_status_t to;
    assert(runfsm_next((run_status_t)7, RUN_START, &to) == -1);
    assert(runfsm_next(RUN_QUEUED, (run_input_t)9, &to) == -1);
    /* Names round-trip; terminal events match SPEC §2. */
    for (int s = RUN_QUEUED; s <= RUN_CANCELLED; s++) {
        run_status_t back;
        assert(runfsm_parse(runfsm_name((run_status_t)s), &back) == 0 && back == (run_status_t)s);
    }
    assert(runfsm_parse("paused", &to) == -1);
    assert(strcmp(runfsm_terminal_event(RUN_DONE), "run_done") == 0);
    assert(strcmp(runfsm_terminal_event(RUN_FAILED), "run_failed") == 0);
    assert(strcmp(runfsm_terminal_event(RUN_CANCELLED), "run_cancelled") == 0);
    assert(runfsm_terminal_event(RUN_RUNNING) == NULL);
    printf("runfsm_test: ok\n");
    return 0;
}
