/* ratelog_test: ten lines a second shown, the rest counted and reported
 * once at the next second, a quiet second reports nothing. */
#include "ratelog.h"

#include "tests/support/check.h"

int main(void)
{
    ratelog_t r = {0};
    unsigned held;
    int shown = 0;
    for (int i = 0; i < 25; i++) {
        shown += ratelog_allow(&r, 5000 + i, &held);
        CHECK(held == 0);
    }
    CHECK(shown == RATELOG_PER_SECOND && r.quiet == 15);
    CHECK(ratelog_allow(&r, 6000, &held) == 1 && held == 15); /* the next second */
    CHECK(ratelog_allow(&r, 6999, &held) == 1 && held == 0);
    CHECK(ratelog_allow(&r, 9000, &held) == 1 && held == 0);  /* nothing held back */
    return 0;
}
