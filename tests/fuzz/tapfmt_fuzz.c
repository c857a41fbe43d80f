/* tapfmt_fuzz: tap lines for any body bytes, as an agent REQUEST, an op
 * call's answer and a STREAM, through a tapfmt_t following a call tree
 * (--run) and one printing JSON. Properties: a JSON line always parses as
 * JSON (jansson), and no string under a "token" key ever shows but as
 * "<token>" in it. The first byte picks the REQUEST's service. */
#include "broker/tapfmt.h"
#include "proto/frame.h"
#include "proto/mp.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t s_meta(uint8_t *out, size_t cap, const char *dir, const char *peer,
                     const char *service)
{
    mp_buf_t b;
    mp_buf_init(&b, 256);
    msgpack_pack_array(&b.pk, 6);
    msgpack_pack_uint8(&b.pk, 1);
    mp_pack_cstr(&b, dir);
    mp_pack_cstr(&b, peer);
    mp_pack_cstr(&b, service);
    msgpack_pack_uint64(&b.pk, 1795683600123000ULL);
    mp_pack_cstr(&b, "");
    size_t n = b.len <= cap ? b.len : 0;
    memcpy(out, b.data, n);
    mp_buf_free(&b);
    return n;
}

/* Aborts when a "token" key anywhere holds anything but "<token>". */
static void s_no_token(const json_t *v, int depth)
{
    if (depth > 64)
        return;
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            if (strcmp(k, "token") == 0 && json_is_string(x) &&
                strcmp(json_string_value(x), "<token>") != 0)
                abort();
            s_no_token(x, depth + 1);
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            s_no_token(json_array_get(v, i), depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *service = (data[0] & 1) ? "orchestrator" : "agent.echo";
    const uint8_t *body = data + 1;
    size_t blen = size - 1;
    tapfmt_opts_t tree = {.run_id = "run_P"}, js = {.json = 1};
    tapfmt_t *t[2] = {tapfmt_new(&tree), tapfmt_new(&js)};
    sbuf_t line;
    sbuf_init(&line, TAPFMT_LINE_MAX);
    uint8_t meta[256], hdr[FRAME_HEADER_MAX];
    for (int i = 0; i < 2; i++) {
        frame_t f = {.type = FRAME_REQUEST, .id = 7, .service = service,
                     .service_len = (uint32_t)strlen(service)};
        size_t hl = frame_encode(&f, hdr, sizeof hdr);
        size_t ml = s_meta(meta, sizeof meta, "in", "aa", service);
        for (int k = 0; k < 3; k++) { /* the REQUEST, its answer, its end */
            if (k == 1)
                hl = frame_encode_id(FRAME_STREAM, 7, hdr, sizeof hdr);
            if (k == 2)
                hl = frame_encode_id(FRAME_REPLY, 7, hdr, sizeof hdr);
            int shown = tapfmt_line(t[i], meta, ml, hdr, hl, body, blen, 1, &line);
            if (shown && i == 1 && !line.overflow) {
                json_error_t err;
                json_t *doc = json_loadb(line.data, line.len, JSON_ALLOW_NUL, &err);
                /* Valid JSON jansson cannot load: a NUL in a key, an
                 * integer past int64 (a msgpack uint64 is shown as is). */
                int jansson_limit = !doc && (strstr(err.text, "NUL") || strstr(err.text, "too big integer"));
                if (!doc && !jansson_limit) {
                    fprintf(stderr, "not JSON (%s): %.*s\n", err.text, (int)line.len, line.data);
                    abort();
                }
                if (!doc)
                    continue;
                s_no_token(doc, 0);
                json_decref(doc);
            }
        }
    }
    sbuf_free(&line);
    tapfmt_destroy(&t[0]);
    tapfmt_destroy(&t[1]);
    return 0;
}
