/* ids_test: clock and ids. Ids have the documented shape, are unique and
 * strictly increasing within a process (also past 65,536 in one
 * millisecond, where the counter borrows the next millisecond); clocks never go back; RFC 3339 formatting of known times. */
#include "clock.h"
#include "ids.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#define N 200000

static char s_ids[N][IDS_MAX];

int main(void)
{
    /* Known instants, with milliseconds. */
    char ts[CLOCK_RFC3339_LEN];
    assert(!strcmp(clock_rfc3339(0, ts), "1970-01-01T00:00:00.000Z"));
    assert(!strcmp(clock_rfc3339(1795687200123LL, ts), "2026-11-26T10:00:00.123Z"));
    assert(!strcmp(clock_rfc3339(951782400999LL, ts), "2000-02-29T00:00:00.999Z"));
    assert(strlen(ts) == CLOCK_RFC3339_LEN - 1);

    /* Monotonic clocks never go back; ms and us agree. */
    int64_t ms = clock_mono_ms(), us = clock_mono_us();
    for (int i = 0; i < 1000; i++) {
        int64_t m2 = clock_mono_ms(), u2 = clock_mono_us();
        assert(m2 >= ms && u2 >= us);
        ms = m2;
        us = u2;
    }
    assert(us / 1000 - clock_mono_ms() <= 1 && clock_mono_ms() - us / 1000 < 1000);
    assert(clock_wall_ms() > 1700000000000LL); /* after 2023 */

    /* Shape: prefix + 24 lowercase hex digits; the time part is now. */
    char id[IDS_MAX];
    int64_t before = clock_wall_ms();
    ids_new("run_", id);
    int64_t after = clock_wall_ms();
    assert(strlen(id) == 4 + 24 && !strncmp(id, "run_", 4));
    for (size_t i = 4; i < strlen(id); i++)
        assert(strchr("0123456789abcdef", id[i]));
    unsigned long long t = 0;
    assert(sscanf(id + 4, "%12llx", &t) == 1);
    assert((int64_t)t >= (before & 0xffffffffffffLL) && (int64_t)t <= (after & 0xffffffffffffLL));
    /* A long prefix is cut at 16 bytes and never overflows. */
    ids_new("0123456789abcdefXYZ", id);
    assert(strlen(id) == 16 + 24);
    assert(!strncmp(id, "0123456789abcdef", 16));

    /* Many ids at full speed: strictly increasing, hence unique. */
    for (int i = 0; i < N; i++)
        ids_new("x", s_ids[i]);
    for (int i = 1; i < N; i++)
        assert(strcmp(s_ids[i - 1], s_ids[i]) < 0);
    printf("ids_test: ok\n");
    return 0;
}
