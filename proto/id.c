/* id: the id rule (id.h). One pass, no allocation. */
#include "id.h"

int id_valid(const char *s, size_t len)
{
    if (len == 0 || len > ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || c == '"' || c == '\\' || c == '/' || c == '?' ||
            c == '#' || c == '%')
            return 0;
    }
    return 1;
}
