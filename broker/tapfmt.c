/* tapfmt: decoding for display. Every part is decoded with the strict
 * decoders of proto/; whatever fails is shown as what it is (reason + the
 * first bytes in hex) so a broken peer is visible on the tap, not hidden. */
#include "tapfmt.h"

#include "common/clock.h"
#include "proto/frame.h"
#include "proto/mp.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define S_PREVIEW 80        /* characters of body in a human line */
#define S_BODY_JSON (1 << 20) /* largest body rendered in a JSON line */

typedef struct {
    char dir[8];
    char peer[32];
    char service[FRAME_SERVICE_MAX + 1];
    uint64_t time_us;
    char note[128];
    int ok;
} s_meta_t;

static void s_copy(char *dst, size_t cap, const char *s, uint32_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
}

/* meta = [1, dir, peer, service, time_us, note] */
static void s_meta(const uint8_t *p, size_t len, s_meta_t *m)
{
    memset(m, 0, sizeof *m);
    mp_reader_t r;
    mp_reader_init(&r, p, len);
    uint32_t n, slen;
    uint64_t v;
    const char *s;
    if (mp_read_array(&r, &n) || n != 6 || mp_read_uint(&r, &v) || v != 1)
        return;
    if (mp_read_str(&r, &s, &slen, 16))
        return;
    s_copy(m->dir, sizeof m->dir, s, slen);
    if (mp_read_str(&r, &s, &slen, 64))
        return;
    s_copy(m->peer, sizeof m->peer, s, slen);
    if (mp_read_str(&r, &s, &slen, FRAME_SERVICE_MAX))
        return;
    s_copy(m->service, sizeof m->service, s, slen);
    if (mp_read_uint(&r, &m->time_us) || mp_read_str(&r, &s, &slen, 256))
        return;
    s_copy(m->note, sizeof m->note, s, slen);
    m->ok = mp_left(&r) == 0;
}

/* The body's top-level "run_id", if it is a map that has one. */
static int s_run_id(const uint8_t *body, size_t len, char *out, size_t cap)
{
    mp_reader_t r;
    mp_reader_init(&r, body, len);
    uint32_t n;
    out[0] = '\0';
    if (!body || mp_read_map(&r, &n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *k, *v;
        uint32_t klen, vlen;
        if (mp_read_str(&r, &k, &klen, 64))
            return -1;
        if (klen == 6 && memcmp(k, "run_id", 6) == 0 && mp_read_str(&r, &v, &vlen, 128) == 0) {
            s_copy(out, cap, v, vlen);
            return 0;
        }
        if (mp_skip(&r, 32))
            return -1;
    }
    return -1;
}

static void s_hex(sbuf_t *out, const uint8_t *p, size_t len, size_t max)
{
    for (size_t i = 0; i < len && i < max; i++)
        sbuf_catf(out, "%02x", p[i]);
    if (len > max)
        sbuf_cats(out, "...");
}

int tapfmt_line(const tapfmt_opts_t *o, const uint8_t *meta, size_t meta_len, const uint8_t *hdr,
                size_t hdr_len, const uint8_t *body, size_t body_len, int has_body, sbuf_t *out)
{
    sbuf_reset(out);
    s_meta_t m;
    s_meta(meta, meta_len, &m);
    frame_t f;
    frame_err_t ferr = frame_decode(hdr, hdr_len, has_body, &f);
    const char *type = ferr == FRAME_OK ? frame_type_name(f.type) : "UNDECODABLE";
    char run[129];
    s_run_id(has_body ? body : NULL, body_len, run, sizeof run);
    if (o->service && strcmp(o->service, m.service) != 0)
        return 0;
    if (o->run_id && strcmp(o->run_id, run) != 0)
        return 0;
    if (o->type && strcasecmp(o->type, type) != 0)
        return 0;
    char when[CLOCK_RFC3339_LEN] = "-";
    if (m.ok)
        clock_rfc3339((int64_t)(m.time_us / 1000), when);
    char body_json[S_PREVIEW * 4];
    body_json[0] = '\0';
    if (o->json) {
        sbuf_cats(out, "{\"time\":");
        sbuf_json_str(out, when, strlen(when));
        sbuf_cats(out, ",\"dir\":");
        sbuf_json_str(out, m.dir, strlen(m.dir));
        sbuf_cats(out, ",\"peer\":");
        sbuf_json_str(out, m.peer, strlen(m.peer));
        sbuf_cats(out, ",\"service\":");
        sbuf_json_str(out, m.service, strlen(m.service));
        sbuf_cats(out, ",\"type\":");
        sbuf_json_str(out, type, strlen(type));
        if (ferr == FRAME_OK) {
            sbuf_catf(out, ",\"id\":%llu", (unsigned long long)f.id);
            if (f.type == FRAME_READY || f.type == FRAME_REQUEST) {
                sbuf_cats(out, ",\"target\":");
                sbuf_json_str(out, f.service, f.service_len);
            }
            if (f.type == FRAME_READY)
                sbuf_catf(out, ",\"capacity\":%u", f.capacity);
            if (f.type == FRAME_ERROR) {
                sbuf_cats(out, ",\"code\":");
                sbuf_json_str(out, f.code, f.code_len);
                sbuf_cats(out, ",\"message\":");
                sbuf_json_str(out, f.message, f.message_len);
            }
        } else {
            sbuf_cats(out, ",\"error\":");
            sbuf_json_str(out, frame_strerror(ferr), strlen(frame_strerror(ferr)));
            sbuf_cats(out, ",\"header_hex\":\"");
            s_hex(out, hdr, hdr_len, 64);
            sbuf_cats(out, "\"");
        }
        if (!m.ok)
            sbuf_cats(out, ",\"meta\":\"undecodable\"");
        sbuf_cats(out, ",\"run_id\":");
        if (run[0])
            sbuf_json_str(out, run, strlen(run));
        else
            sbuf_cats(out, "null");
        sbuf_cats(out, ",\"note\":");
        sbuf_json_str(out, m.note, strlen(m.note));
        sbuf_cats(out, ",\"body\":");
        if (!has_body) {
            sbuf_cats(out, "null");
        } else {
            /* A body that does not decode, or does not fit, is shown as
             * hex saying so. */
            static char buf[S_BODY_JSON];
            mp_reader_t r;
            mp_reader_init(&r, body, body_len);
            if (mp_to_json(&r, buf, sizeof buf, 32) == 0 && mp_left(&r) == 0 &&
                strlen(buf) < sizeof buf - 4) {
                sbuf_cats(out, buf);
            } else {
                sbuf_cats(out, "{\"undecodable_hex\":\"");
                s_hex(out, body, body_len, 256);
                sbuf_cats(out, "\"}");
            }
        }
        sbuf_cats(out, "}");
        return 1;
    }
    /* Human: time dir peer service type id run preview */
    const char *arrow = strcmp(m.dir, "in") == 0 ? "->" : strcmp(m.dir, "out") == 0 ? "<-" : "??";
    sbuf_catf(out, "%s %s %-10s %-16s %-10s", when, arrow, m.peer[0] ? m.peer : "-",
              m.service[0] ? m.service : "-", type);
    if (ferr == FRAME_OK) {
        if (f.type >= FRAME_REQUEST)
            sbuf_catf(out, " id=%llu", (unsigned long long)f.id);
        if (f.type == FRAME_READY)
            sbuf_catf(out, " service=%.*s capacity=%u", (int)f.service_len, f.service, f.capacity);
        if (f.type == FRAME_ERROR)
            sbuf_catf(out, " code=%.*s message=\"%.*s\"", (int)f.code_len, f.code,
                      (int)f.message_len, f.message);
    } else {
        sbuf_catf(out, " reason=%s hex=", frame_strerror(ferr));
        s_hex(out, hdr, hdr_len, 24);
    }
    if (run[0])
        sbuf_catf(out, " run=%s", run);
    if (m.note[0])
        sbuf_catf(out, " note=\"%s\"", m.note);
    if (!m.ok)
        sbuf_cats(out, " meta=undecodable");
    if (has_body) {
        mp_reader_t r;
        mp_reader_init(&r, body, body_len);
        if (mp_to_json(&r, body_json, S_PREVIEW, 32) == 0 || body_json[0])
            sbuf_catf(out, " %s", body_json);
        else {
            sbuf_cats(out, " body_hex=");
            s_hex(out, body, body_len, 24);
        }
    }
    return 1;
}
