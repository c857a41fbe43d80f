/* flags_test: environment then argv, bounds, bad flags, --help. */
#include "flags.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    const char *broker = "tcp://127.0.0.1:5555";
    long n = 3;
    int on = 0;
    flag_t t[] = {
        {"broker", "T_BROKER", FLAG_STR, &broker, 0, 0, "endpoint"},
        {"count", "T_COUNT", FLAG_INT, &n, 1, 10, "count"},
        {"json", "T_JSON", FLAG_BOOL, &on, 0, 0, "json"},
    };
    char err[256];
    setenv("T_BROKER", "ipc:///tmp/x", 1);
    setenv("T_COUNT", "4", 1);
    char *a1[] = {"p", "--count", "7", NULL};
    assert(flags_parse(t, 3, 3, a1, "about", err, sizeof err) == 0);
    assert(!strcmp(broker, "ipc:///tmp/x") && n == 7 && on == 0); /* flag beats env */
    char *a2[] = {"p", "--broker=tcp://h:1", "--json", NULL};
    assert(flags_parse(t, 3, 3, a2, "about", err, sizeof err) == 0);
    assert(!strcmp(broker, "tcp://h:1") && on == 1);
    char *a3[] = {"p", "--count", "11", NULL};
    assert(flags_parse(t, 3, 3, a3, "about", err, sizeof err) == -1 && strstr(err, "--count"));
    char *a4[] = {"p", "--count", "4x", NULL};
    assert(flags_parse(t, 3, 3, a4, "about", err, sizeof err) == -1);
    char *a5[] = {"p", "--nope", NULL};
    assert(flags_parse(t, 3, 2, a5, "about", err, sizeof err) == -1 && strstr(err, "unknown flag"));
    char *a6[] = {"p", "--count", NULL};
    assert(flags_parse(t, 3, 2, a6, "about", err, sizeof err) == -1 && strstr(err, "needs a value"));
    char *a7[] = {"p", "stray", NULL};
    assert(flags_parse(t, 3, 2, a7, "about", err, sizeof err) == -1);
    setenv("T_JSON", "maybe", 1);
    char *a8[] = {"p", NULL};
    assert(flags_parse(t, 3, 1, a8, "about", err, sizeof err) == -1 && strstr(err, "T_JSON"));
    unsetenv("T_JSON");
    char *a9[] = {"p", "--help", NULL};
    assert(flags_parse(t, 3, 2, a9, "about", err, sizeof err) == 1);
    long v;
    assert(flags_parse_long("-5", -10, 10, &v) == 0 && v == -5);
    assert(flags_parse_long("", 0, 10, &v) == -1);
    assert(flags_parse_long("99999999999999999999", 0, 10, &v) == -1);
    printf("flags_test: ok\n");
    return 0;
}
