/* ratelog: flood control for a log line that input can trigger (a peer
 * sending garbage): at most RATELOG_PER_SECOND lines a second, and the count
 * of those held back said once when the second is over. */
#ifndef MAP_RATELOG_H
#define MAP_RATELOG_H
#include <stdint.h>

#define RATELOG_PER_SECOND 10

typedef struct {
    int64_t second;  /* the second being counted (mono ms / 1000) */
    unsigned shown;  /* lines logged in it */
    unsigned quiet;  /* lines held back in it */
} ratelog_t;

/* One more line at now_ms: returns 1 to log it, 0 to hold it back. OUT
 * suppressed: the lines held back in the second that just ended (0: none),
 * for the caller to log as one line. */
int ratelog_allow(ratelog_t *r, int64_t now_ms, unsigned *suppressed);

#endif
