/* frame: the broker's wire format (see PROTOCOL.md for the byte layouts).
 *
 * A message between a peer and the broker is one or two ZeroMQ parts:
 *
 *   [header]          READY, HEARTBEAT, DISCONNECT, ERROR, CANCEL, SERVICES
 *   [header, body]    REQUEST, STREAM, REPLY
 *
 * The header is a msgpack array [version, type, ...fields] that the broker
 * reads and rewrites; the body is opaque to the broker and passed through
 * untouched. On the broker's ROUTER the routing id part comes first. */
#ifndef MAP_FRAME_H
#define MAP_FRAME_H
#include <stddef.h>
#include <stdint.h>

#define FRAME_VERSION 1
#define FRAME_HEADER_MAX 1024        /* bytes; a longer header is rejected */
#define FRAME_SERVICE_MAX 64         /* bytes of a service name */
#define FRAME_CODE_MAX 32            /* bytes of an error code */
#define FRAME_MESSAGE_MAX 512        /* bytes of an error message */
#define FRAME_CAPACITY_MAX 100000    /* concurrent requests one worker may take */
#define FRAME_BODY_MAX_DEFAULT (1u << 20) /* default maximum body, 1 MiB */

typedef enum {
    FRAME_READY = 1,      /* peer → broker: [1,1,service,capacity] */
    FRAME_HEARTBEAT = 2,  /* both ways: [1,2] */
    FRAME_DISCONNECT = 3, /* both ways: [1,3] */
    FRAME_REQUEST = 4,    /* requester → broker → worker: [1,4,id,service] + body */
    FRAME_STREAM = 5,     /* worker → broker → requester: [1,5,id] + body */
    FRAME_REPLY = 6,      /* worker → broker → requester: [1,6,id] + body; final */
    FRAME_ERROR = 7,      /* any → requester or worker: [1,7,id,code,message]; final */
    FRAME_CANCEL = 8,     /* requester → broker → worker: [1,8,id] */
    FRAME_SERVICES = 9,   /* requester → broker: [1,9,id]; answered by REPLY */
} frame_type_t;
#define FRAME_TYPE_MAX 9

typedef enum {
    FRAME_OK = 0,
    FRAME_E_EMPTY,      /* no header part */
    FRAME_E_TOO_LARGE,  /* header or body over its maximum */
    FRAME_E_MALFORMED,  /* not a msgpack array, or truncated */
    FRAME_E_VERSION,    /* another protocol version */
    FRAME_E_TYPE,       /* unknown frame type */
    FRAME_E_FIELDS,     /* wrong number of fields for the type */
    FRAME_E_FIELD,      /* a field of the wrong type */
    FRAME_E_RANGE,      /* a field out of bounds (empty service, capacity, ...) */
    FRAME_E_TRAILING,   /* bytes after the header array */
    FRAME_E_BODY,       /* body missing where required, present where not */
    FRAME_E_PARTS,      /* too many message parts */
} frame_err_t;

typedef struct {
    frame_type_t type;
    uint64_t id;          /* REQUEST..SERVICES: request id of the receiver's side */
    const char *service;  /* READY, REQUEST: view, not NUL-terminated */
    uint32_t service_len;
    uint32_t capacity;    /* READY */
    const char *code;     /* ERROR: view */
    uint32_t code_len;
    const char *message;  /* ERROR: view */
    uint32_t message_len;
} frame_t;

const char *frame_strerror(frame_err_t err);
const char *frame_type_name(frame_type_t type); /* "REQUEST", or "?" */
/* Returns 1 if frames of this type carry a body part. */
int frame_has_body(frame_type_t type);

/* Decodes a header. has_body: whether a body part followed it.
 * OUT: frame, written only on FRAME_OK; its strings are views into hdr. */
frame_err_t frame_decode(const void *hdr, size_t len, int has_body, frame_t *frame);

/* Encodes a header into buf (FRAME_HEADER_MAX bytes is always enough for a
 * frame whose strings respect their maxima). Returns its length, or 0 when
 * a field is out of bounds or cap is too small. */
size_t frame_encode(const frame_t *frame, uint8_t *buf, size_t cap);

/* Shorthands for the common headers. Same result as frame_encode. */
size_t frame_encode_id(frame_type_t type, uint64_t id, uint8_t *buf, size_t cap);
size_t frame_encode_error(uint64_t id, const char *code, const char *message,
                          uint8_t *buf, size_t cap);

#endif
