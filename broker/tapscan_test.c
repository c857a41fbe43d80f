/* tapscan_test: the keys a tap line is attributed by, from bodies built
 * here: an invoke with its platform, an op call, a watch batch (distinct
 * runs, the bound), values of other types skipped, ids too long shown as
 * none, and bodies that do not decode (what was read stays). */
#include "tapscan.h"

#include "tests/support/check.h"

#include <stdio.h>
#include <string.h>

static void s_invoke(mp_buf_t *b)
{
    mp_buf_reset(b);
    msgpack_pack_map(&b->pk, 4);
    mp_pack_kv_cstr(b, "run_id", "run_2");
    mp_pack_kv_cstr(b, "agent_id", "echo");
    mp_pack_cstr(b, "input");
    msgpack_pack_map(&b->pk, 1);
    mp_pack_kv_cstr(b, "run_id", "run_inner"); /* nested: not the body's run */
    mp_pack_cstr(b, "platform");
    msgpack_pack_map(&b->pk, 4);
    mp_pack_kv_cstr(b, "token", "0123456789abcdef0123456789abcdef");
    mp_pack_cstr(b, "depth");
    msgpack_pack_uint64(&b->pk, 2);
    mp_pack_kv_cstr(b, "root_run_id", "run_0");
    mp_pack_kv_cstr(b, "parent_run_id", "run_1");
}

int main(void)
{
    mp_buf_t b;
    mp_buf_init(&b, 1 << 16);
    tapscan_t in;

    s_invoke(&b);
    tapscan(b.data, b.len, &in);
    CHECK(!strcmp(in.run, "run_2") && !strcmp(in.agent, "echo") && !in.is_call);
    CHECK(in.has_platform && !strcmp(in.parent, "run_1") && !strcmp(in.root, "run_0"));
    CHECK(in.depth == 2 && in.nbatch == 0);
    /* cut anywhere: what came before the cut stays (the run id's value
     * ends at byte 14: a fixmap, "run_id", "run_2") */
    for (size_t n = 0; n < b.len; n++) {
        tapscan(b.data, n, &in);
        CHECK(!strcmp(in.run, n >= 14 ? "run_2" : ""));
    }

    mp_buf_reset(&b);
    msgpack_pack_map(&b.pk, 4);
    mp_pack_kv_cstr(&b, "op", "call");
    mp_pack_kv_cstr(&b, "run_id", "run_1");
    mp_pack_kv_cstr(&b, "call_id", "c1");
    mp_pack_cstr(&b, "agent_id");
    msgpack_pack_uint64(&b.pk, 7); /* another type: skipped */
    tapscan(b.data, b.len, &in);
    CHECK(in.is_call && !strcmp(in.run, "run_1") && !strcmp(in.call_id, "c1") && !in.agent[0]);

    /* a watch batch: 20 events of 18 runs (two repeated), 16 kept */
    mp_buf_reset(&b);
    msgpack_pack_map(&b.pk, 1);
    mp_pack_cstr(&b, "events");
    msgpack_pack_array(&b.pk, 21);
    for (int i = 0; i < 20; i++) {
        char run[16];
        snprintf(run, sizeof run, "run_%d", i < 2 ? 0 : i - 2);
        msgpack_pack_map(&b.pk, 2);
        mp_pack_kv_cstr(&b, "seq", "x");
        mp_pack_kv_cstr(&b, "run_id", run);
    }
    msgpack_pack_nil(&b.pk); /* not a map: skipped */
    tapscan(b.data, b.len, &in);
    CHECK(in.nbatch == TAPSCAN_BATCH_RUNS && !in.run[0]);
    CHECK(!strcmp(in.batch[0], "run_0") && !strcmp(in.batch[1], "run_1"));
    CHECK(!strcmp(in.batch[15], "run_15"));

    /* a run id past the maximum is none */
    char longid[TAPSCAN_RUN_MAX + 10];
    memset(longid, 'r', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    mp_buf_reset(&b);
    msgpack_pack_map(&b.pk, 2);
    mp_pack_kv_cstr(&b, "run_id", longid);
    mp_pack_kv_cstr(&b, "agent_id", "a");
    tapscan(b.data, b.len, &in);
    CHECK(!in.run[0] && !strcmp(in.agent, "a"));

    /* not a map, nothing, garbage */
    const uint8_t junk[] = {0xc1, 0x93, 0x01};
    tapscan(junk, sizeof junk, &in);
    CHECK(!in.run[0] && !in.has_platform);
    tapscan(NULL, 0, &in);
    CHECK(!in.run[0]);
    CHECK(tapscan_key("token", 5, "token") && !tapscan_key("toke", 4, "token"));
    mp_buf_free(&b);
    printf("tapscan_test: ok\n");
    return 0;
}
