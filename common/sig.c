/* sig: handlers without SA_RESTART, so a blocking zmq_poll or poll returns
 * EINTR and the loop sees sig_stop at once. */
#include "sig.h"

#include <string.h>

volatile sig_atomic_t sig_stop;

static void s_on_signal(int signo)
{
    (void)signo;
    sig_stop = 1;
}

void sig_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}
