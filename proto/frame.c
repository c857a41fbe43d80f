/* frame: encoder and one strict decoder per frame type.
 *
 * Byte layout of every header (msgpack):
 *
 *   fixarray(n) | uint version=1 | uint type | fields of the type...
 *
 *   READY      [1, 1, service: str 1..64, capacity: uint 0..100000]
 *   HEARTBEAT  [1, 2]
 *   DISCONNECT [1, 3]
 *   REQUEST    [1, 4, id: uint64, service: str 1..64]   + body part
 *   STREAM     [1, 5, id: uint64]                       + body part
 *   REPLY      [1, 6, id: uint64]                       + body part
 *   ERROR      [1, 7, id: uint64, code: str 1..32, message: str 0..512]
 *   CANCEL     [1, 8, id: uint64]
 *   SERVICES   [1, 9, id: uint64]
 *
 * The decoder checks, in order: size, array, version (before anything else,
 * so a peer of another version always learns it), type, field count, each
 * field, trailing bytes, body presence. Outputs are written last. */
#include "frame.h"

#include "mp.h"

#include <string.h>

const char *frame_strerror(frame_err_t err)
{
    switch (err) {
    case FRAME_OK: return "ok";
    case FRAME_E_EMPTY: return "empty";
    case FRAME_E_TOO_LARGE: return "too_large";
    case FRAME_E_MALFORMED: return "malformed";
    case FRAME_E_VERSION: return "wrong_version";
    case FRAME_E_TYPE: return "unknown_type";
    case FRAME_E_FIELDS: return "wrong_field_count";
    case FRAME_E_FIELD: return "wrong_field_type";
    case FRAME_E_RANGE: return "field_out_of_range";
    case FRAME_E_TRAILING: return "trailing_bytes";
    case FRAME_E_BODY: return "body_mismatch";
    case FRAME_E_PARTS: return "too_many_parts";
    }
    return "unknown";
}

static const char *s_names[] = {"?",     "READY",  "HEARTBEAT", "DISCONNECT", "REQUEST",
                                "STREAM", "REPLY", "ERROR",     "CANCEL",     "SERVICES"};
/* Fields after [version, type], per type. */
static const uint32_t s_fields[] = {0, 2, 0, 0, 2, 1, 1, 3, 1, 1};

const char *frame_type_name(frame_type_t type)
{
    return type >= 1 && type <= FRAME_TYPE_MAX ? s_names[type] : "?";
}

int frame_has_body(frame_type_t type)
{
    return type == FRAME_REQUEST || type == FRAME_STREAM || type == FRAME_REPLY;
}

static frame_err_t s_mp_err(const mp_reader_t *r)
{
    switch (r->err) {
    case MP_TYPE: return FRAME_E_FIELD;
    case MP_RANGE: return FRAME_E_RANGE;
    default: return FRAME_E_MALFORMED;
    }
}

static frame_err_t s_decode_service(mp_reader_t *r, frame_t *f)
{
    const char *s;
    uint32_t n;
    if (mp_read_str(r, &s, &n, FRAME_SERVICE_MAX))
        return s_mp_err(r);
    if (n == 0)
        return FRAME_E_RANGE;
    f->service = s;
    f->service_len = n;
    return FRAME_OK;
}

static frame_err_t s_decode_ready(mp_reader_t *r, frame_t *f)
{
    frame_err_t err = s_decode_service(r, f);
    if (err)
        return err;
    uint64_t cap;
    if (mp_read_uint(r, &cap))
        return s_mp_err(r);
    if (cap > FRAME_CAPACITY_MAX)
        return FRAME_E_RANGE;
    f->capacity = (uint32_t)cap;
    return FRAME_OK;
}

static frame_err_t s_decode_id(mp_reader_t *r, frame_t *f)
{
    if (mp_read_uint(r, &f->id))
        return s_mp_err(r);
    return FRAME_OK;
}

static frame_err_t s_decode_request(mp_reader_t *r, frame_t *f)
{
    frame_err_t err = s_decode_id(r, f);
    return err ? err : s_decode_service(r, f);
}

static frame_err_t s_decode_error(mp_reader_t *r, frame_t *f)
{
    frame_err_t err = s_decode_id(r, f);
    if (err)
        return err;
    if (mp_read_str(r, &f->code, &f->code_len, FRAME_CODE_MAX))
        return s_mp_err(r);
    if (f->code_len == 0)
        return FRAME_E_RANGE;
    if (mp_read_str(r, &f->message, &f->message_len, FRAME_MESSAGE_MAX))
        return s_mp_err(r);
    return FRAME_OK;
}

static frame_err_t s_decode_none(mp_reader_t *r, frame_t *f)
{
    (void)r;
    (void)f;
    return FRAME_OK;
}

typedef frame_err_t (*s_decoder_t)(mp_reader_t *, frame_t *);
static const s_decoder_t s_decoders[] = {
    NULL,          s_decode_ready, s_decode_none,  s_decode_none, s_decode_request,
    s_decode_id,   s_decode_id,    s_decode_error, s_decode_id,   s_decode_id,
};

frame_err_t frame_decode(const void *hdr, size_t len, int has_body, frame_t *frame)
{
    if (len == 0)
        return FRAME_E_EMPTY;
    if (len > FRAME_HEADER_MAX)
        return FRAME_E_TOO_LARGE;
    mp_reader_t r;
    mp_reader_init(&r, hdr, len);
    uint32_t count;
    if (mp_read_array(&r, &count))
        return FRAME_E_MALFORMED;
    if (count < 2)
        return count == 0 ? FRAME_E_MALFORMED : FRAME_E_FIELDS;
    uint64_t version, type;
    if (mp_read_uint(&r, &version))
        return s_mp_err(&r);
    if (version != FRAME_VERSION)
        return FRAME_E_VERSION;
    if (mp_read_uint(&r, &type))
        return s_mp_err(&r);
    if (type < 1 || type > FRAME_TYPE_MAX)
        return FRAME_E_TYPE;
    if (count - 2 != s_fields[type])
        return FRAME_E_FIELDS;
    frame_t f;
    memset(&f, 0, sizeof f);
    f.type = (frame_type_t)type;
    frame_err_t err = s_decoders[type](&r, &f);
    if (err)
        return err;
    if (mp_left(&r) != 0)
        return FRAME_E_TRAILING;
    if (!!has_body != frame_has_body(f.type))
        return FRAME_E_BODY;
    *frame = f;
    return FRAME_OK;
}

/* A fixed buffer under msgpack-c's packer: overflow sets full. */
typedef struct {
    uint8_t *buf;
    size_t cap;
    size_t len;
    int full;
} s_fixed_t;

static int s_fixed_write(void *data, const char *buf, size_t len)
{
    s_fixed_t *w = data;
    if (w->full || w->len + len > w->cap) {
        w->full = 1;
        return -1;
    }
    if (len) /* an empty string may come with a NULL pointer */
        memcpy(w->buf + w->len, buf, len);
    w->len += len;
    return 0;
}

static void s_pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

size_t frame_encode(const frame_t *f, uint8_t *buf, size_t cap)
{
    if (f->type < 1 || f->type > FRAME_TYPE_MAX)
        return 0;
    if ((f->type == FRAME_READY || f->type == FRAME_REQUEST) &&
        (f->service_len == 0 || f->service_len > FRAME_SERVICE_MAX))
        return 0;
    if (f->type == FRAME_READY && f->capacity > FRAME_CAPACITY_MAX)
        return 0;
    if (f->type == FRAME_ERROR && (f->code_len == 0 || f->code_len > FRAME_CODE_MAX ||
                                   f->message_len > FRAME_MESSAGE_MAX))
        return 0;
    s_fixed_t w = {buf, cap, 0, 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &w, s_fixed_write);
    msgpack_pack_array(&pk, 2 + s_fields[f->type]);
    msgpack_pack_uint8(&pk, FRAME_VERSION);
    msgpack_pack_uint8(&pk, (uint8_t)f->type);
    switch (f->type) {
    case FRAME_READY:
        s_pack_str(&pk, f->service, f->service_len);
        msgpack_pack_uint32(&pk, f->capacity);
        break;
    case FRAME_REQUEST:
        msgpack_pack_uint64(&pk, f->id);
        s_pack_str(&pk, f->service, f->service_len);
        break;
    case FRAME_ERROR:
        msgpack_pack_uint64(&pk, f->id);
        s_pack_str(&pk, f->code, f->code_len);
        s_pack_str(&pk, f->message, f->message_len);
        break;
    case FRAME_STREAM: case FRAME_REPLY: case FRAME_CANCEL: case FRAME_SERVICES:
        msgpack_pack_uint64(&pk, f->id);
        break;
    case FRAME_HEARTBEAT: case FRAME_DISCONNECT:
        break;
    }
    return w.full ? 0 : w.len;
}

size_t frame_encode_id(frame_type_t type, uint64_t id, uint8_t *buf, size_t cap)
{
    frame_t f = {.type = type, .id = id};
    return frame_encode(&f, buf, cap);
}

size_t frame_encode_error(uint64_t id, const char *code, const char *message,
                          uint8_t *buf, size_t cap)
{
    size_t mlen = strlen(message);
    frame_t f = {.type = FRAME_ERROR,
                 .id = id,
                 .code = code,
                 .code_len = (uint32_t)strlen(code),
                 .message = message,
                 .message_len = (uint32_t)(mlen > FRAME_MESSAGE_MAX ? FRAME_MESSAGE_MAX : mlen)};
    return frame_encode(&f, buf, cap);
}
