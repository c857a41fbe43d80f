/* check: the unit tests' assertion. Unlike assert(), it stays on in every
 * build type and names the file, line and the condition that failed. */
#ifndef MAP_CHECK_H
#define MAP_CHECK_H
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                                \
        }                                                                           \
    } while (0)

#endif
