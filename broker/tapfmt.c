/* tapfmt: decoding for display. Every part is decoded with the strict
 * decoders of proto/; whatever fails is shown as what it is (reason + the
 * first bytes in hex) so a broken peer is visible on the tap, not hidden.
 *
 * Bodies are rendered to JSON here rather than with mp_to_json: a JSON line
 * must stay valid JSON whatever a peer sent (invalid UTF-8 becomes U+FFFD
 * through sbuf_json_str, a non-string map key is shown as the string of its
 * JSON, floats as numbers) and rendering stops at a limit instead of
 * producing a cut document.
 *
 * Run attribution: a REQUEST's body carries "run_id"; the broker passes the
 * body through untouched, so both REQUEST copies (in from the requester with
 * the requester's id, out to the worker with the broker's id) name it. Each
 * is remembered under (peer, id), which is exactly what the later frames of
 * that request show on the tap: STREAM/REPLY/ERROR in from the worker under
 * the broker's id, out to the requester under the requester's id.
 *
 * Call trees (proto/ORCHESTRATOR.md, op "call"): a REQUEST body's top level
 * is scanned once (tapscan.c) for "run_id", "op", "agent_id", "call_id" and the
 * invoke's "platform" map {parent_run_id, root_run_id, depth}. A call shows
 * as "call <parent> → <agent> (<call_id>)", an agent's REQUEST as
 * "parent=... root=... depth=N". --run ID follows the tree under ID: the set
 * of followed runs starts as {ID}, and an agent REQUEST whose platform names
 * a followed run as parent or root adds its own run, and so does the
 * answer of a followed run's call (its body names the child: whichever of
 * the two reaches the broker first), so children, grandchildren and their
 * frames all pass. A call's answers show "caller=<parent>". The set is
 * bounded (a ring of S_FOLLOW runs; past it the oldest child is forgotten,
 * never ID).
 *
 * Any value under a "token" key (the run's call token, a bearer secret) is
 * shown as "<token>" in every line: a tap's output ends up in terminals and
 * bug reports, a live token must not. */
#include "tapfmt.h"

#include "tapscan.h"

#include "common/clock.h"
#include "common/mem.h"
#include "proto/frame.h"
#include "proto/mp.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define S_SLOTS 4096     /* requests whose run is remembered (a cache) */
#define S_PEER_MAX 32    /* bytes of a peer's hex id kept */
#define S_RUN_MAX TAPSCAN_RUN_MAX
#define S_DEPTH 32       /* nesting rendered in a body */
#define S_FOLLOW 256     /* runs of the followed tree remembered (--run) */

typedef struct {
    char peer[S_PEER_MAX + 1]; /* "" = free slot */
    uint64_t id;               /* request id as seen on this peer's side */
    char run[S_RUN_MAX + 1];   /* the run it belongs to */
    int call;                  /* an op call: its answers name the child run */
} s_slot_t;

struct tapfmt_t {
    int json;             /* JSON lines */
    char *service;        /* filters, owned copies or NULL */
    char *run_id;
    char *type;
    s_slot_t *slots;      /* S_SLOTS entries */
    char (*follow)[S_RUN_MAX + 1]; /* S_FOLLOW runs of --run's tree, a ring */
    size_t follow_n;      /* entries used */
    size_t follow_next;   /* the ring's next slot once full */
    sbuf_t scratch;       /* body JSON, then the human preview */
};

typedef struct {
    char dir[8];
    char peer[S_PEER_MAX + 1];
    char service[FRAME_SERVICE_MAX + 1];
    uint64_t time_us;
    char note[128];
    int ok;               /* the whole meta part decoded */
} s_meta_t;

static char *s_dup(const char *s)
{
    return s ? mem_strdup(s) : NULL;
}

tapfmt_t *tapfmt_new(const tapfmt_opts_t *opts)
{
    tapfmt_t *self = mem_alloc(sizeof *self);
    self->json = opts->json;
    self->service = s_dup(opts->service);
    self->run_id = s_dup(opts->run_id);
    self->type = s_dup(opts->type);
    self->slots = mem_alloc(S_SLOTS * sizeof *self->slots);
    self->follow = mem_alloc(S_FOLLOW * sizeof *self->follow);
    sbuf_init(&self->scratch, TAPFMT_BODY_JSON + 64);
    return self;
}

void tapfmt_destroy(tapfmt_t **self_p)
{
    tapfmt_t *self = *self_p;
    if (!self)
        return;
    mem_free(self->service);
    mem_free(self->run_id);
    mem_free(self->type);
    mem_free(self->slots);
    mem_free(self->follow);
    sbuf_free(&self->scratch);
    mem_free(self);
    *self_p = NULL;
}

static void s_copy(char *dst, size_t cap, const char *s, uint32_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
}

/* ---- runs of requests in flight ---------------------------------------- */

static s_slot_t *s_slot(tapfmt_t *self, const char *peer, uint64_t id)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const char *p = peer; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    for (int i = 0; i < 8; i++)
        h = (h ^ ((id >> (8 * i)) & 0xff)) * 1099511628211ULL;
    return &self->slots[h % S_SLOTS];
}

static void s_remember(tapfmt_t *self, const char *peer, uint64_t id, const char *run, int call)
{
    s_slot_t *s = s_slot(self, peer, id);
    s_copy(s->peer, sizeof s->peer, peer, (uint32_t)strlen(peer));
    s->id = id;
    s_copy(s->run, sizeof s->run, run, (uint32_t)strlen(run));
    s->call = call;
}

/* The run of request (peer, id), copied into run (S_RUN_MAX + 1 bytes), or
 * "", and whether it is an op call. forget: the frame is final, free the
 * entry. */
static int s_recall(tapfmt_t *self, const char *peer, uint64_t id, int forget, char *run)
{
    s_slot_t *s = s_slot(self, peer, id);
    run[0] = '\0';
    if (!s->peer[0] || s->id != id || strcmp(s->peer, peer) != 0)
        return 0;
    memcpy(run, s->run, sizeof s->run);
    if (forget)
        s->peer[0] = '\0';
    return s->call;
}

/* ---- decoding ----------------------------------------------------------- */

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
    if (mp_read_str(&r, &s, &slen, S_PEER_MAX))
        return;
    s_copy(m->peer, sizeof m->peer, s, slen);
    if (mp_read_str(&r, &s, &slen, FRAME_SERVICE_MAX))
        return;
    s_copy(m->service, sizeof m->service, s, slen);
    if (mp_read_uint(&r, &m->time_us))
        return;
    if (mp_read_str(&r, &s, &slen, sizeof m->note - 1))
        return;
    s_copy(m->note, sizeof m->note, s, slen);
    m->ok = mp_left(&r) == 0;
}

static int s_is_str(uint8_t t)
{
    return (t & 0xe0) == 0xa0 || (t >= 0xd9 && t <= 0xdb);
}

/* ---- the followed tree (--run) ------------------------------------------ */

static int s_followed(const tapfmt_t *self, const char *run)
{
    if (!run[0])
        return 0;
    if (strcmp(self->run_id, run) == 0)
        return 1;
    for (size_t i = 0; i < self->follow_n; i++)
        if (strcmp(self->follow[i], run) == 0)
            return 1;
    return 0;
}

static void s_follow(tapfmt_t *self, const char *run)
{
    if (!run[0] || s_followed(self, run))
        return;
    size_t at;
    if (self->follow_n < S_FOLLOW) {
        at = self->follow_n++;
    } else {
        at = self->follow_next;
        self->follow_next = (at + 1) % S_FOLLOW;
    }
    s_copy(self->follow[at], sizeof self->follow[at], run, (uint32_t)strlen(run));
}

static uint64_t s_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Appends one msgpack value as JSON. Returns 0, -1 when the value does not
 * decode (reason in r->err), 1 when out passed limit (rendering stopped). */
static int s_json(tapfmt_t *self, mp_reader_t *r, sbuf_t *out, size_t limit, int depth)
{
    if (out->len > limit || out->overflow)
        return 1;
    if (depth < 0) {
        r->err = MP_DEPTH;
        return -1;
    }
    if (mp_left(r) < 1) {
        r->err = MP_TRUNCATED;
        return -1;
    }
    uint8_t t = *r->p;
    uint32_t n;
    int rc;
    if (t == 0xc0) {
        r->p++;
        sbuf_cats(out, "null");
    } else if (t == 0xc2 || t == 0xc3) {
        r->p++;
        sbuf_cats(out, t == 0xc3 ? "true" : "false");
    } else if (t <= 0x7f || (t >= 0xcc && t <= 0xcf)) {
        uint64_t v;
        if (mp_read_uint(r, &v))
            return -1;
        sbuf_cat_u64(out, v);
    } else if (t >= 0xe0 || (t >= 0xd0 && t <= 0xd3)) {
        int64_t v;
        if (mp_read_int(r, &v))
            return -1;
        sbuf_catf(out, "%lld", (long long)v);
    } else if (t == 0xca || t == 0xcb) {
        size_t w = t == 0xca ? 4 : 8;
        if (mp_left(r) < 1 + w) {
            r->err = MP_TRUNCATED;
            return -1;
        }
        uint64_t bits = s_be(r->p + 1, (int)w);
        double d;
        if (w == 4) {
            uint32_t b32 = (uint32_t)bits;
            float f;
            memcpy(&f, &b32, sizeof f);
            d = f;
        } else {
            memcpy(&d, &bits, sizeof d);
        }
        r->p += 1 + w;
        if (isfinite(d))
            sbuf_catf(out, "%.17g", d);
        else
            sbuf_cats(out, "null"); /* JSON has no NaN or infinity */
    } else if (s_is_str(t)) {
        const char *s;
        if (mp_read_str(r, &s, &n, UINT32_MAX))
            return -1;
        sbuf_json_str(out, s, n);
    } else if (t >= 0xc4 && t <= 0xc6) {
        const uint8_t *b;
        if (mp_read_bin(r, &b, &n, UINT32_MAX))
            return -1;
        sbuf_cats(out, "\"");
        for (uint32_t i = 0; i < n && out->len <= limit; i++)
            sbuf_catf(out, "%02x", b[i]);
        sbuf_cats(out, "\"");
    } else if ((t & 0xf0) == 0x90 || t == 0xdc || t == 0xdd) {
        if (mp_read_array(r, &n))
            return -1;
        sbuf_cats(out, "[");
        for (uint32_t i = 0; i < n; i++) {
            if (i)
                sbuf_cats(out, ",");
            if ((rc = s_json(self, r, out, limit, depth - 1)) != 0)
                return rc;
        }
        sbuf_cats(out, "]");
    } else if ((t & 0xf0) == 0x80 || t == 0xde || t == 0xdf) {
        if (mp_read_map(r, &n))
            return -1;
        sbuf_cats(out, "{");
        for (uint32_t i = 0; i < n; i++) {
            if (i)
                sbuf_cats(out, ",");
            int secret = 0;
            if (mp_left(r) && s_is_str(*r->p)) {
                const char *k;
                uint32_t klen;
                if (mp_read_str(r, &k, &klen, UINT32_MAX))
                    return -1;
                sbuf_json_str(out, k, klen);
                secret = tapscan_key(k, klen, "token");
            } else {
                /* JSON keys are strings: show the key's JSON as one. Rare,
                 * so a small bounded buffer of its own (keys nest). */
                sbuf_t kb;
                sbuf_init(&kb, 4096);
                rc = s_json(self, r, &kb, kb.max, depth - 1);
                if (rc == 0)
                    sbuf_json_str(out, sbuf_cstr(&kb), kb.len);
                sbuf_free(&kb);
                if (rc > 0)
                    r->err = MP_RANGE; /* a key too large to show */
                if (rc != 0)
                    return -1;
            }
            sbuf_cats(out, ":");
            if (secret && mp_left(r)) { /* whatever its type: never shown */
                if (mp_skip(r, S_DEPTH))
                    return -1;
                sbuf_cats(out, "\"<token>\""); /* a live bearer secret */
                continue;
            }
            if ((rc = s_json(self, r, out, limit, depth - 1)) != 0)
                return rc;
        }
        sbuf_cats(out, "}");
    } else {
        const uint8_t *before = r->p;
        if (mp_skip(r, 0))
            return -1;
        sbuf_catf(out, "\"<type 0x%02x, %zu bytes>\"", t, (size_t)(r->p - before));
    }
    return out->len > limit || out->overflow ? 1 : 0;
}

/* Renders a whole body into self->scratch. Returns 0 (scratch holds its
 * JSON), 1 (cut at limit: scratch holds a prefix), or -1 (undecodable:
 * OUT reason). */
static int s_body_json(tapfmt_t *self, const uint8_t *body, size_t len, size_t limit,
                       const char **reason)
{
    sbuf_reset(&self->scratch);
    mp_reader_t r;
    mp_reader_init(&r, body, len);
    int rc = s_json(self, &r, &self->scratch, limit, S_DEPTH);
    if (rc < 0) {
        *reason = mp_strerror(r.err);
        return -1;
    }
    if (rc == 0 && mp_left(&r) != 0) {
        *reason = "trailing bytes";
        return -1;
    }
    return rc;
}

static void s_hex(sbuf_t *out, const uint8_t *p, size_t len, size_t max)
{
    for (size_t i = 0; i < len && i < max; i++)
        sbuf_catf(out, "%02x", p[i]);
    if (len > max)
        sbuf_cats(out, "...");
}

static void s_kv_str(sbuf_t *out, const char *key, const char *s, size_t len)
{
    sbuf_catf(out, ",\"%s\":", key);
    sbuf_json_str(out, s, len);
}

/* ---- lines ---------------------------------------------------------------- */

static int s_pass(const tapfmt_t *self, const char *service, const char *run, const char *type)
{
    if (self->service && strcmp(self->service, service) != 0)
        return 0;
    if (self->run_id && !s_followed(self, run))
        return 0;
    if (self->type && strcasecmp(self->type, type) != 0)
        return 0;
    return 1;
}

/* "→ broker" for a frame the broker received, "broker →" for one it sent. */
static const char *s_arrow(const char *dir)
{
    if (strcmp(dir, "in") == 0)
        return "\xe2\x86\x92 broker"; /* U+2192 */
    if (strcmp(dir, "out") == 0)
        return "broker \xe2\x86\x92";
    return "? broker";
}

int tapfmt_line(tapfmt_t *self, const uint8_t *meta, size_t meta_len, const uint8_t *hdr,
                size_t hdr_len, const uint8_t *body, size_t body_len, int has_body,
                sbuf_t *out)
{
    sbuf_reset(out);
    if (!has_body)
        body = NULL, body_len = 0;
    s_meta_t m;
    s_meta(meta, meta_len, &m);
    frame_t f;
    frame_err_t ferr = frame_decode(hdr, hdr_len, has_body, &f);
    const char *type = ferr == FRAME_OK ? frame_type_name(f.type) : "UNDECODABLE";

    /* The run: named by the body, else remembered from the REQUEST. */
    tapscan_t info;
    tapscan(body, body_len, &info);
    char *run = info.run;
    if (!run[0] && info.nbatch) { /* a watch batch: its first followed run, or its first */
        size_t b = 0;
        while (self->run_id && b < info.nbatch && !s_followed(self, info.batch[b]))
            b++;
        memcpy(run, info.batch[b < info.nbatch ? b : 0], sizeof info.batch[0]);
    }
    int is_request = ferr == FRAME_OK && f.type == FRAME_REQUEST;
    if (is_request && self->run_id && info.has_platform &&
        (s_followed(self, info.parent) || s_followed(self, info.root)))
        s_follow(self, run); /* a child (or deeper) run of the followed tree */
    char caller[S_RUN_MAX + 1] = ""; /* an op call's answer: the calling run */
    if (ferr == FRAME_OK && m.ok && m.peer[0]) {
        if (f.type == FRAME_REQUEST && run[0]) {
            s_remember(self, m.peer, f.id, run, info.is_call);
        } else if (f.type == FRAME_STREAM || f.type == FRAME_REPLY || f.type == FRAME_ERROR ||
                   f.type == FRAME_CANCEL) {
            char seen[S_RUN_MAX + 1];
            int call = s_recall(self, m.peer, f.id, f.type == FRAME_REPLY || f.type == FRAME_ERROR,
                                seen);
            if (!run[0])
                memcpy(run, seen, sizeof seen);
            if (call && strcmp(run, seen) != 0) {
                memcpy(caller, seen, sizeof seen); /* the answer names the child */
                if (self->run_id && s_followed(self, caller))
                    s_follow(self, run);
            }
        }
    }
    if (!s_pass(self, m.service, run, type))
        return 0;

    char when[CLOCK_RFC3339_LEN] = "-";
    if (m.ok)
        clock_rfc3339((int64_t)(m.time_us / 1000), when);
    const char *why = NULL;
    if (self->json) {
        sbuf_cats(out, "{\"time\":");
        sbuf_json_str(out, when, strlen(when));
        s_kv_str(out, "dir", m.dir, strlen(m.dir));
        s_kv_str(out, "peer", m.peer, strlen(m.peer));
        s_kv_str(out, "service", m.service, strlen(m.service));
        s_kv_str(out, "type", type, strlen(type));
        if (ferr == FRAME_OK) {
            if (f.type >= FRAME_REQUEST) {
                sbuf_cats(out, ",\"id\":");
                sbuf_cat_u64(out, f.id);
            }
            if (f.type == FRAME_READY || f.type == FRAME_REQUEST)
                s_kv_str(out, "target", f.service, f.service_len);
            if (f.type == FRAME_READY)
                sbuf_catf(out, ",\"capacity\":%u", f.capacity);
            if (f.type == FRAME_ERROR) {
                s_kv_str(out, "code", f.code, f.code_len);
                s_kv_str(out, "message", f.message, f.message_len);
            }
        } else {
            const char *e = frame_strerror(ferr);
            s_kv_str(out, "error", e, strlen(e));
            sbuf_cats(out, ",\"header_hex\":\"");
            s_hex(out, hdr, hdr_len, 64);
            sbuf_cats(out, "\"");
        }
        if (!m.ok) {
            sbuf_cats(out, ",\"meta\":\"undecodable\",\"meta_hex\":\"");
            s_hex(out, meta, meta_len, 64);
            sbuf_cats(out, "\"");
        }
        sbuf_cats(out, ",\"run_id\":");
        if (run[0])
            sbuf_json_str(out, run, strlen(run));
        else
            sbuf_cats(out, "null");
        s_kv_str(out, "note", m.note, strlen(m.note));
        sbuf_cats(out, ",\"body\":");
        if (!has_body) {
            sbuf_cats(out, "null");
        } else {
            int rc = s_body_json(self, body, body_len, TAPFMT_BODY_JSON, &why);
            if (rc == 0) {
                sbuf_cat(out, self->scratch.data, self->scratch.len);
            } else {
                sbuf_cats(out, "null");
                const char *e = rc > 0 ? "too large to show" : why;
                s_kv_str(out, "body_error", e, strlen(e));
                sbuf_cats(out, ",\"body_hex\":\"");
                s_hex(out, body, body_len, 256);
                sbuf_cats(out, "\"");
            }
            sbuf_cats(out, ",\"body_bytes\":");
            sbuf_cat_u64(out, body_len);
        }
        sbuf_cats(out, "}");
        return 1;
    }

    /* Human: time, direction, peer, service, type, id, run, preview. */
    sbuf_catf(out, "%s %s %-14s %-16s %-11s", when, s_arrow(m.dir), m.peer[0] ? m.peer : "-",
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
    if (is_request && info.is_call)
        sbuf_catf(out, " call %s \xe2\x86\x92 %s (%s)", run[0] ? run : "?",
                  info.agent[0] ? info.agent : "?", info.call_id[0] ? info.call_id : "?");
    if (caller[0])
        sbuf_catf(out, " caller=%s", caller);
    if (is_request && info.has_platform && info.parent[0])
        sbuf_catf(out, " parent=%s root=%s depth=%llu", info.parent,
                  info.root[0] ? info.root : "?", (unsigned long long)info.depth);
    if (m.note[0])
        sbuf_catf(out, " note=\"%s\"", m.note);
    if (!m.ok) {
        sbuf_cats(out, " meta=undecodable meta_hex=");
        s_hex(out, meta, meta_len, 24);
    }
    if (has_body) {
        int rc = s_body_json(self, body, body_len, TAPFMT_PREVIEW, &why);
        if (rc >= 0) {
            size_t cut = self->scratch.len;
            if (cut > TAPFMT_PREVIEW) {
                cut = TAPFMT_PREVIEW;
                while (cut > 0 && ((uint8_t)self->scratch.data[cut] & 0xc0) == 0x80)
                    cut--; /* not inside a UTF-8 sequence */
            }
            sbuf_cats(out, " ");
            sbuf_cat(out, self->scratch.data, cut);
            if (cut < self->scratch.len || rc > 0)
                sbuf_cats(out, "...");
        } else {
            sbuf_catf(out, " body=undecodable(%s) hex=", why);
            s_hex(out, body, body_len, 24);
        }
    }
    while (out->len > 0 && out->data[out->len - 1] == ' ') /* the type column's padding */
        out->data[--out->len] = '\0';
    return 1;
}

int tapfmt_bad_parts(tapfmt_t *self, int parts, const uint8_t *first, size_t first_len,
                     sbuf_t *out)
{
    sbuf_reset(out);
    if (!s_pass(self, "", "", "UNDECODABLE"))
        return 0;
    if (self->json) {
        sbuf_catf(out, "{\"type\":\"UNDECODABLE\",\"error\":\"tap message of %d part(s)\","
                       "\"first_hex\":\"", parts);
        s_hex(out, first, first_len, 64);
        sbuf_cats(out, "\"}");
    } else {
        sbuf_catf(out, "UNDECODABLE tap message of %d part(s), first %zu byte(s): ", parts,
                  first_len);
        s_hex(out, first, first_len, 24);
    }
    return 1;
}
