/* ids: time-ordered ids. Within one millisecond the counter keeps ids of this
 * process increasing; the random tail keeps processes apart. */
#include "ids.h"

#include "clock.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/random.h>

char *ids_new(const char *prefix, char *buf)
{
    static int64_t last_ms;
    static uint32_t counter;
    int64_t ms = clock_wall_ms();
    if (ms <= last_ms) {
        ms = last_ms; /* never go back, even if the wall clock does */
        if (++counter > 0xffff) { /* 4 hex digits used up: borrow the next ms */
            ms = ++last_ms;
            counter = 0;
        }
    } else {
        last_ms = ms;
        counter = 0;
    }
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
        rnd = (uint32_t)clock_mono_us();
    snprintf(buf, IDS_MAX, "%.16s%012llx%04x%08x", prefix,
             (unsigned long long)ms & 0xffffffffffffULL, counter & 0xffff, rnd);
    return buf;
}
