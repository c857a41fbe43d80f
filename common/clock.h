/* clock: monotonic time for deadlines, wall time for timestamps. */
#ifndef MAP_CLOCK_H
#define MAP_CLOCK_H
#include <stddef.h>
#include <stdint.h>

#define CLOCK_RFC3339_LEN 25 /* "2026-11-24T10:00:00.123Z" + NUL */

int64_t clock_mono_ms(void);  /* monotonic milliseconds, for deadlines */
int64_t clock_mono_us(void);  /* monotonic microseconds, for measurements */
int64_t clock_wall_ms(void);  /* milliseconds since the Unix epoch */
/* Formats wall milliseconds as RFC 3339 UTC with milliseconds.
 * OUT: buf (at least CLOCK_RFC3339_LEN bytes). Returns buf. */
char *clock_rfc3339(int64_t wall_ms, char *buf);

#endif
