/* proc: fork + exec, kill + wait by pid, free ports, deadlines (see proc.h).
 *
 * Every spawned pid is kept in a table until it is reaped, so a test that
 * fails half-way still stops what it started: proc_kill_all runs at exit,
 * and children ask the kernel for SIGKILL when their parent dies (a crash or
 * an abort skips atexit). Only our own pids are ever signalled. */
#include "proc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t s_pids[PROC_MAX]; /* running children; 0 = free slot */
static int s_atexit;

long long proc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_forget(pid_t pid)
{
    for (int i = 0; i < PROC_MAX; i++)
        if (s_pids[i] == pid)
            s_pids[i] = 0;
}

pid_t proc_spawn(char *const argv[], char *const env[], const char *log_path)
{
    int slot = -1;
    for (int i = 0; i < PROC_MAX && slot < 0; i++)
        if (s_pids[i] == 0)
            slot = i;
    if (slot < 0) {
        fprintf(stderr, "proc: more than %d processes\n", PROC_MAX);
        return -1;
    }
    if (!s_atexit) {
        atexit(proc_kill_all);
        s_atexit = 1;
    }
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "proc: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127); /* the parent died before prctl */
        if (log_path) {
            int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
                close(fd);
            }
        }
        for (int i = 0; env && env[i]; i++)
            putenv(env[i]);
        execv(argv[0], argv);
        fprintf(stderr, "proc: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    s_pids[slot] = pid;
    return pid;
}

int proc_alive(pid_t pid)
{
    int status;
    pid_t rc = waitpid(pid, &status, WNOHANG);
    if (rc == 0)
        return 1;
    s_forget(pid);
    return 0;
}

int proc_stop(pid_t pid, int sig, long timeout_ms, int *status)
{
    int known = 0;
    for (int i = 0; i < PROC_MAX; i++)
        known |= s_pids[i] == pid;
    if (!known || pid <= 0)
        return -1;
    int st = 0;
    kill(pid, sig);
    long long deadline = proc_now_ms() + timeout_ms;
    for (;;) {
        pid_t rc = waitpid(pid, &st, WNOHANG);
        if (rc == pid || (rc < 0 && errno == ECHILD)) {
            s_forget(pid);
            if (status)
                *status = st;
            return 0;
        }
        if (proc_now_ms() >= deadline)
            break;
        usleep(2000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    s_forget(pid);
    if (status)
        *status = st;
    return -1;
}

void proc_kill_all(void)
{
    for (int i = 0; i < PROC_MAX; i++) {
        if (s_pids[i] > 0) {
            kill(s_pids[i], SIGKILL);
            waitpid(s_pids[i], NULL, 0);
            s_pids[i] = 0;
        }
    }
}

/* One port from the kernel (port 0), or -1. */
static int s_any_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* The kernel may give a just-closed port again: two calls in a row (a
 * broker's port and its tap's) must not get the same one. */
int proc_free_port(void)
{
    static int given[64];
    static int ngiven;
    for (int attempt = 0; attempt < 100; attempt++) {
        int port = s_any_port(), seen = 0, n = ngiven < 64 ? ngiven : 64;
        for (int i = 0; i < n && !seen; i++)
            seen = given[i] == port;
        if (port > 0 && !seen) {
            given[ngiven++ % 64] = port;
            return port;
        }
    }
    return -1;
}

int proc_wait_until(int (*cond)(void *arg), void *arg, long timeout_ms)
{
    long long deadline = proc_now_ms() + timeout_ms;
    for (;;) {
        if (cond(arg))
            return 0;
        if (proc_now_ms() >= deadline)
            return -1;
        usleep(1000);
    }
}
