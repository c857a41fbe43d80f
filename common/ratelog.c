/* ratelog: see ratelog.h. */
#include "ratelog.h"

int ratelog_allow(ratelog_t *r, int64_t now_ms, unsigned *suppressed)
{
    int64_t second = now_ms / 1000;
    *suppressed = 0;
    if (second != r->second) {
        *suppressed = r->quiet;
        r->second = second;
        r->shown = 0;
        r->quiet = 0;
    }
    if (r->shown < RATELOG_PER_SECOND) {
        r->shown++;
        return 1;
    }
    r->quiet++;
    return 0;
}
