/* wsmsg: one WebSocket text message from a client (SPEC §4) parsed and
 * validated into an action, or a SPEC error code. No network, no state. */
#ifndef MAP_WSMSG_H
#define MAP_WSMSG_H
#include <stddef.h>

typedef enum {
    WSMSG_HELLO = 1,
    WSMSG_INVOKE,
    WSMSG_RESUME,
    WSMSG_CANCEL,
    WSMSG_PING,
} wsmsg_type_t;

typedef struct {
    wsmsg_type_t type;
    char session_id[129];  /* hello: "" when omitted */
    char api_key[257];     /* hello */
    char request_id[129];  /* invoke (required), any message (echoed in errors) */
    char agent_id[129];    /* invoke */
    char role[33];         /* invoke */
    char *content;         /* invoke: the caller frees it (wsmsg_clear) */
    size_t content_len;
    int if_busy_reject;    /* invoke */
    char run_id[129];      /* resume, cancel */
    unsigned long long after_seq; /* resume */
} wsmsg_t;

/* Parses text of len bytes. Returns 0, or -1 with *code set to bad_json or
 * bad_request and a sentence in err. request_id is filled whenever the
 * message had a usable one, also on error. */
int wsmsg_parse(const char *text, size_t len, wsmsg_t *out, const char **code, char *err,
                size_t errlen);
void wsmsg_clear(wsmsg_t *m);

#endif
