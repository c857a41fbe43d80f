/* fanout_test: the word reversal of the second call (words in reverse
 * order, whitespace runs collapsed, UTF-8 bytes untouched, bounded). The
 * calls themselves are tested with real processes (tests/proc/test_fanout.py). */
#include "fanout.h"

#include "tests/support/check.h"

#include <string.h>

static void s_rev(const char *in, const char *want, size_t cap)
{
    char out[256];
    size_t n = fanout_reverse_words(in, strlen(in), out, cap);
    if (strcmp(out, want) != 0)
        fprintf(stderr, "'%s' -> '%s', want '%s'\n", in, out, want);
    CHECK(strcmp(out, want) == 0 && n == strlen(want));
}

int main(void)
{
    s_rev("hello world", "world hello", 256);
    s_rev("  one\ttwo\n three  ", "three two one", 256);
    s_rev("", "", 256);
    s_rev("   ", "", 256);
    s_rev("single", "single", 256);
    s_rev("h\xc3\xa9llo w\xc3\xb6rld", "w\xc3\xb6rld h\xc3\xa9llo", 256);
    s_rev("abc def", "def", 4); /* bounded: cap 4 keeps 3 bytes */
    printf("fanout_test: ok\n");
    return 0;
}
