/* tapscan: see tapscan.h. Values of another type than expected are skipped
 * (the line's full rendering shows them), never an error of the scan. */
#include "tapscan.h"

#include <string.h>

#define S_DEPTH 32 /* nesting skipped in a body */

static void s_copy(char *dst, size_t cap, const char *s, uint32_t len)
{
    size_t n = len < cap - 1 ? len : cap - 1;
    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
}

int tapscan_key(const char *k, uint32_t klen, const char *want)
{
    return klen == strlen(want) && memcmp(k, want, klen) == 0;
}

/* A string value into out (cap bytes), or "" when it is none or too long
 * to be an id (skipped: the rendered body shows it). */
static int s_str_val(mp_reader_t *r, char *out, size_t cap)
{
    out[0] = '\0';
    const uint8_t *at = r->p;
    const char *v;
    uint32_t vlen;
    if (mp_read_str(r, &v, &vlen, (uint32_t)cap - 1) == 0) {
        s_copy(out, cap, v, vlen);
        return 0;
    }
    r->p = at;
    r->err = MP_OK;
    return mp_skip(r, S_DEPTH);
}

/* An unsigned value, or 0 when it is another type (skipped). */
static int s_uint_val(mp_reader_t *r, uint64_t *out)
{
    const uint8_t *at = r->p;
    if (mp_read_uint(r, out) == 0)
        return 0;
    *out = 0;
    r->p = at;
    r->err = MP_OK;
    return mp_skip(r, S_DEPTH);
}

static int s_platform(mp_reader_t *r, tapscan_t *in)
{
    uint32_t n;
    if (mp_left(r) == 0 || ((*r->p & 0xf0) != 0x80 && *r->p != 0xde && *r->p != 0xdf))
        return mp_skip(r, S_DEPTH);
    if (mp_read_map(r, &n))
        return -1;
    in->has_platform = 1;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t klen;
        if (mp_read_str(r, &k, &klen, 64))
            return -1;
        int rc;
        if (tapscan_key(k, klen, "parent_run_id"))
            rc = s_str_val(r, in->parent, sizeof in->parent);
        else if (tapscan_key(k, klen, "root_run_id"))
            rc = s_str_val(r, in->root, sizeof in->root);
        else if (tapscan_key(k, klen, "depth"))
            rc = s_uint_val(r, &in->depth);
        else
            rc = mp_skip(r, S_DEPTH);
        if (rc)
            return -1;
    }
    return 0;
}

/* A watch batch's events: each one's "run_id", once per run. */
static int s_batch(mp_reader_t *r, tapscan_t *in)
{
    uint32_t n;
    if (mp_left(r) == 0 || ((*r->p & 0xf0) != 0x90 && *r->p != 0xdc && *r->p != 0xdd))
        return mp_skip(r, S_DEPTH);
    if (mp_read_array(r, &n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t m;
        if (mp_left(r) == 0 || ((*r->p & 0xf0) != 0x80 && *r->p != 0xde && *r->p != 0xdf)) {
            if (mp_skip(r, S_DEPTH))
                return -1;
            continue;
        }
        if (mp_read_map(r, &m))
            return -1;
        for (uint32_t j = 0; j < m; j++) {
            const char *k;
            uint32_t klen;
            if (mp_read_str(r, &k, &klen, 64))
                return -1;
            char run[TAPSCAN_RUN_MAX + 1];
            if (!tapscan_key(k, klen, "run_id")) {
                if (mp_skip(r, S_DEPTH))
                    return -1;
                continue;
            }
            if (s_str_val(r, run, sizeof run))
                return -1;
            size_t b = 0;
            while (b < in->nbatch && strcmp(in->batch[b], run) != 0)
                b++;
            if (run[0] && b == in->nbatch && in->nbatch < TAPSCAN_BATCH_RUNS)
                memcpy(in->batch[in->nbatch++], run, sizeof run);
        }
    }
    return 0;
}

/* Scans a body's top level into in (zeroed first); stops quietly at what
 * does not decode (the line says so from the full rendering). */
void tapscan(const uint8_t *body, size_t len, tapscan_t *in)
{
    memset(in, 0, sizeof *in);
    if (!body)
        return;
    mp_reader_t r;
    mp_reader_init(&r, body, len);
    uint32_t n;
    if (mp_read_map(&r, &n))
        return;
    char op[16];
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t klen;
        if (mp_read_str(&r, &k, &klen, 64))
            return;
        int rc;
        if (tapscan_key(k, klen, "run_id")) {
            rc = s_str_val(&r, in->run, sizeof in->run);
        } else if (tapscan_key(k, klen, "op")) {
            rc = s_str_val(&r, op, sizeof op);
            in->is_call = rc == 0 && strcmp(op, "call") == 0;
        } else if (tapscan_key(k, klen, "agent_id")) {
            rc = s_str_val(&r, in->agent, sizeof in->agent);
        } else if (tapscan_key(k, klen, "call_id")) {
            rc = s_str_val(&r, in->call_id, sizeof in->call_id);
        } else if (tapscan_key(k, klen, "platform")) {
            rc = s_platform(&r, in);
        } else if (tapscan_key(k, klen, "events")) {
            rc = s_batch(&r, in);
        } else {
            rc = mp_skip(&r, S_DEPTH);
        }
        if (rc)
            return;
    }
}

