/* flags: the environment is applied first so that a flag always wins, and
 * every value is validated the same way whichever way it came. */
#include "flags.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int flags_parse_long(const char *text, long min, long max, long *out)
{
    if (!text || !*text)
        return -1;
    errno = 0;
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if (errno || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int s_set(const flag_t *f, const char *value, const char *origin, char *err,
                 size_t errlen)
{
    switch (f->type) {
    case FLAG_STR:
        *(const char **)f->dest = value;
        return 0;
    case FLAG_INT: {
        long v;
        if (flags_parse_long(value, f->min, f->max, &v) != 0) {
            snprintf(err, errlen, "%s: '%s' is not a whole number from %ld to %ld",
                     origin, value, f->min, f->max);
            return -1;
        }
        *(long *)f->dest = v;
        return 0;
    }
    case FLAG_BOOL:
        if (!strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "yes")) {
            *(int *)f->dest = 1;
        } else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "no")) {
            *(int *)f->dest = 0;
        } else {
            snprintf(err, errlen, "%s: '%s' is not true or false", origin, value);
            return -1;
        }
        return 0;
    }
    return -1;
}

static void s_help(const flag_t *table, size_t count, const char *about)
{
    printf("%s\n\nOptions (flag, environment variable, default):\n", about);
    for (size_t i = 0; i < count; i++) {
        const flag_t *f = &table[i];
        char def[256];
        if (f->type == FLAG_STR) {
            const char *v = *(const char **)f->dest;
            snprintf(def, sizeof def, "%s", v ? v : "(unset)");
        } else if (f->type == FLAG_INT) {
            snprintf(def, sizeof def, "%ld", *(long *)f->dest);
        } else {
            snprintf(def, sizeof def, "%s", *(int *)f->dest ? "true" : "false");
        }
        printf("  --%-18s %-22s %s (default: %s)\n", f->name, f->env ? f->env : "",
               f->help, def);
    }
    printf("  --%-18s %-22s %s\n", "help", "", "print this help and exit");
}

int flags_parse(const flag_t *table, size_t count, int argc, char **argv,
                const char *about, char *err, size_t errlen)
{
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--help") || !strcmp(argv[a], "-h")) {
            s_help(table, count, about);
            return 1;
        }
    }
    for (size_t i = 0; i < count; i++) {
        const char *v = table[i].env ? getenv(table[i].env) : NULL;
        if (v && *v && s_set(&table[i], v, table[i].env, err, errlen) != 0)
            return -1;
    }
    for (int a = 1; a < argc; a++) {
        const char *arg = argv[a];
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(err, errlen, "unexpected argument '%s' (see --help)", arg);
            return -1;
        }
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const flag_t *f = NULL;
        for (size_t i = 0; i < count; i++) {
            if (strlen(table[i].name) == name_len && !strncmp(table[i].name, name, name_len))
                f = &table[i];
        }
        if (!f) {
            snprintf(err, errlen, "unknown flag '%s' (see --help)", arg);
            return -1;
        }
        const char *value = eq ? eq + 1 : NULL;
        if (!value && f->type == FLAG_BOOL) {
            value = "1";
        } else if (!value) {
            if (a + 1 >= argc) {
                snprintf(err, errlen, "flag --%s needs a value", f->name);
                return -1;
            }
            value = argv[++a];
        }
        char origin[64];
        snprintf(origin, sizeof origin, "--%s", f->name);
        if (s_set(f, value, origin, err, errlen) != 0)
            return -1;
    }
    return 0;
}
