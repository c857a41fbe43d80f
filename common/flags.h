/* flags: one table per program gives each setting its flag, its environment
 * variable, its type, bounds and help. The environment is read first, then
 * the command line overrides it. The value a destination holds before the
 * call is the default shown by --help.
 *
 *   static const char *broker = "tcp://127.0.0.1:5555";
 *   flag_t table[] = {
 *       {"broker", "MAP_BROKER", FLAG_STR, &broker, 0, 0, "broker endpoint"},
 *   };
 *   int rc = flags_parse(table, 1, argc, argv, "broker - the hub", err, sizeof err);
 */
#ifndef MAP_FLAGS_H
#define MAP_FLAGS_H
#include <stddef.h>

typedef enum {
    FLAG_STR,  /* dest: const char ** (points into argv or environ) */
    FLAG_INT,  /* dest: long *, within [min, max] */
    FLAG_BOOL, /* dest: int *; "--name" sets 1, env "1"/"true"/"0"/"false" */
} flag_type_t;

typedef struct {
    const char *name; /* flag without dashes: --name value, --name=value */
    const char *env;  /* environment variable, or NULL */
    flag_type_t type; /* what dest points to */
    void *dest;       /* holds the default, receives the value */
    long min, max;    /* bounds of FLAG_INT */
    const char *help; /* one line */
} flag_t;

/* Returns 0 when parsed, 1 when --help was printed to stdout (exit 0), -1 on
 * a bad flag or value. OUT: err gets one sentence on -1. */
int flags_parse(const flag_t *table, size_t count, int argc, char **argv,
                const char *about, char *err, size_t errlen);

/* Parses a whole decimal long within [min, max]. Returns 0 or -1. */
int flags_parse_long(const char *text, long min, long max, long *out);

#endif
