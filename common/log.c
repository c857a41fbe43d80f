/* log: formats the whole line in one buffer and writes it with one write(2),
 * so lines of concurrent processes sharing a stderr never interleave. */
#include "log.h"

#include "clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

log_level_t log_threshold = LOG_LEVEL_INFO;
static char s_component[32] = "map";
static int s_json;

void log_init(const char *component)
{
    snprintf(s_component, sizeof s_component, "%s", component);
}

int log_set_level(const char *name)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, names[i]) == 0) {
            log_threshold = (log_level_t)i;
            return 0;
        }
    }
    return -1;
}

void log_set_json(int on)
{
    s_json = on;
}

/* Appends src to the JSON string being built in buf, escaped. */
static size_t s_json_escape(char *buf, size_t at, size_t cap, const char *src)
{
    for (; *src && at + 7 < cap; src++) {
        unsigned char c = (unsigned char)*src;
        if (c == '"' || c == '\\') {
            buf[at++] = '\\';
            buf[at++] = (char)c;
        } else if (c < 0x20) {
            at += (size_t)snprintf(buf + at, cap - at, "\\u%04x", c);
        } else {
            buf[at++] = (char)c;
        }
    }
    return at;
}

void log_write(log_level_t level, const char *tag, const char *fmt, ...)
{
    static const char letters[] = "DIWE";
    static const char *names[] = {"debug", "info", "warn", "error"};
    if ((unsigned)level > LOG_LEVEL_ERROR)
        level = LOG_LEVEL_ERROR;
    char when[CLOCK_RFC3339_LEN];
    char fields[1536];
    char line[2048];
    clock_rfc3339(clock_wall_ms(), when);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(fields, sizeof fields, fmt, ap);
    va_end(ap);
    size_t n;
    if (s_json) {
        n = (size_t)snprintf(line, sizeof line,
                             "{\"time\":\"%s\",\"level\":\"%s\",\"component\":\"%s\","
                             "\"pid\":%d,\"tag\":\"%s\",\"msg\":\"",
                             when, names[level], s_component, (int)getpid(), tag);
        if (n > sizeof line - 8)
            n = sizeof line - 8;
        n = s_json_escape(line, n, sizeof line - 3, fields);
        line[n++] = '"';
        line[n++] = '}';
        line[n++] = '\n';
    } else {
        n = (size_t)snprintf(line, sizeof line, "%s %c %s[%d] %s %s\n", when,
                             letters[level], s_component, (int)getpid(), tag, fields);
        if (n >= sizeof line) {
            n = sizeof line;
            line[n - 1] = '\n';
        }
    }
    ssize_t rc = write(STDERR_FILENO, line, n);
    (void)rc;
}
