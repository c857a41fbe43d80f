/* wsmsg_fuzz: a WebSocket client message (ingress/wsmsg.c) from any bytes:
 * a message or a SPEC error code, never a crash or a leak. */
#include "ingress/wsmsg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wsmsg_t m;
    const char *code = NULL;
    char err[256];
    if (wsmsg_parse((const char *)data, size, &m, &code, err, sizeof err) == 0) {
        if (m.type < WSMSG_HELLO || m.type > WSMSG_PING)
            abort();
        wsmsg_clear(&m);
    } else if (!code || (strcmp(code, "bad_json") && strcmp(code, "bad_request"))) {
        abort();
    }
    return 0;
}
