/* sig: SIGINT and SIGTERM set a flag that loops read; SIGPIPE is ignored
 * (a peer closing a socket is an error value, not a death). Call before
 * creating any czmq object, and call zsys_handler_set(NULL) if czmq is used. */
#ifndef MAP_SIG_H
#define MAP_SIG_H
#include <signal.h>

extern volatile sig_atomic_t sig_stop;

void sig_install(void);

#endif
