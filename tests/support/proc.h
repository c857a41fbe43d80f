/* proc: a small helper for process-level tests. Starts binaries by
 * fork + exec and remembers their pids, stops them by pid (also at exit and,
 * through PR_SET_PDEATHSIG, when the test itself dies), picks free loopback
 * ports and waits for conditions until a deadline. */
#ifndef MAP_PROC_H
#define MAP_PROC_H
#include <sys/types.h>

#define PROC_MAX 64 /* processes one test may start */

/* Starts argv[0] with argv; stdout and stderr go to log_path (appended;
 * NULL: inherited). env: "NAME=value" strings added to the environment,
 * NULL-terminated, or NULL. Returns the pid, or -1 (reason on stderr). */
pid_t proc_spawn(char *const argv[], char *const env[], const char *log_path);
/* Sends sig to pid and waits up to timeout_ms for it to exit; then SIGKILL.
 * Returns 0 when it exited within the time (OUT: status as from waitpid,
 * may be NULL), -1 when it had to be killed or was not ours. */
int proc_stop(pid_t pid, int sig, long timeout_ms, int *status);
/* 1 while pid runs, 0 once it exited (it is reaped then). */
int proc_alive(pid_t pid);
/* SIGKILLs and reaps every process still running. Registered with atexit by
 * the first proc_spawn. */
void proc_kill_all(void);
/* A TCP port free on 127.0.0.1 right now, or -1. */
int proc_free_port(void);
/* Calls cond(arg) until it returns non-zero or timeout_ms passed, sleeping
 * 1 ms between calls (cond may itself wait, e.g. poll a socket). Returns 0
 * when the condition held, -1 on timeout. */
int proc_wait_until(int (*cond)(void *arg), void *arg, long timeout_ms);
/* Monotonic milliseconds. */
long long proc_now_ms(void);

#endif
