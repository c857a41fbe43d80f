/* utf8_test: what is valid stays as it is; each invalid byte becomes one
 * U+FFFD and the rest is kept. */
#include "utf8.h"

#include "common/mem.h"
#include "tests/support/check.h"

#include <string.h>

static void s_clean(const char *in, size_t len, const char *want)
{
    size_t n = 0;
    char *out = utf8_clean(in, len, &n);
    CHECK(out != NULL);
    CHECK(n == strlen(want) && memcmp(out, want, n) == 0 && out[n] == '\0');
    CHECK(utf8_valid(out, n));
    mem_free(out);
}

int main(void)
{
    const char *ok[] = {"", "hello", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "a\0b"};
    size_t lens[] = {0, 5, 5, 3, 4, 3};
    for (int i = 0; i < 6; i++) {
        size_t n = 99;
        CHECK(utf8_valid(ok[i], lens[i]));
        CHECK(utf8_clean(ok[i], lens[i], &n) == NULL && n == 99);
    }
    CHECK(!utf8_valid("\xff", 1));
    s_clean("\xff", 1, "\xef\xbf\xbd");
    s_clean("A\xff\xfe" "B", 4, "A\xef\xbf\xbd\xef\xbf\xbd" "B");
    s_clean("\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd");           /* overlong '/' */
    s_clean("\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* a surrogate */
    s_clean("\xf4\x90\x80\x80", 4,
            "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* past U+10FFFF */
    s_clean("x\xe2\x82", 3, "x\xef\xbf\xbd\xef\xbf\xbd");       /* cut short */
    s_clean("\xc3\xa9\x80\xc3\xa9", 5, "\xc3\xa9\xef\xbf\xbd\xc3\xa9");
    return 0;
}
