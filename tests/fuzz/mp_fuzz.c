/* mp_fuzz: the msgpack walker on any bytes: skipping and JSON rendering
 * never read past the buffer, and agree on where a value ends. */
#include "proto/mp.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mp_reader_t a, b;
    mp_reader_init(&a, data, size);
    mp_reader_init(&b, data, size);
    int skipped = mp_skip(&a, 16);
    char out[512];
    int rendered = mp_to_json(&b, out, sizeof out, 16);
    if ((skipped == 0) != (rendered == 0))
        abort();
    if (skipped == 0 && a.p != b.p)
        abort();
    return 0;
}
