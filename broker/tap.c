/* map-tap: prints the broker's live traffic, one line per frame. Subscribes
 * to the broker's tap (an XPUB that publishes only while someone listens and
 * drops rather than slow the broker), decodes and filters with tapfmt; this
 * file only parses flags and moves messages. Every message received gives a
 * line unless a filter hides it, malformed ones included. */
#include "tapfmt.h"

#include "common/flags.h"
#include "common/sig.h"
#include "proto/frame.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <zmq.h>

static int s_known_type(const char *name)
{
    if (strcasecmp(name, "UNDECODABLE") == 0)
        return 1;
    for (int t = 1; t <= FRAME_TYPE_MAX; t++)
        if (strcasecmp(name, frame_type_name((frame_type_t)t)) == 0)
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    const char *tap = "tcp://127.0.0.1:5556";
    const char *service = NULL, *run = NULL, *type = NULL;
    int json = 0;
    long count = 0;
    flag_t table[] = {
        {"tap", "MAP_TAP", FLAG_STR, &tap, 0, 0, "the broker's tap endpoint"},
        {"json", NULL, FLAG_BOOL, &json, 0, 0, "print JSON lines with the decoded body"},
        {"service", NULL, FLAG_STR, &service, 0, 0, "only frames of this service"},
        {"run", NULL, FLAG_STR, &run, 0, 0,
         "only frames of this run and of its call tree (the runs it called, and theirs)"},
        {"type", NULL, FLAG_STR, &type, 0, 0, "only this frame type (READY, REQUEST, STREAM, ..., UNDECODABLE)"},
        {"count", NULL, FLAG_INT, &count, 0, 1000000000, "exit after this many lines (0: never)"},
    };
    char err[256];
    int rc = flags_parse(table, sizeof table / sizeof *table, argc, argv,
                         "map-tap: the broker's live traffic, decoded, one line per frame", err,
                         sizeof err);
    if (rc == 1)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "map-tap: %s\n", err);
        return 2;
    }
    if (type && !s_known_type(type)) {
        fprintf(stderr, "map-tap: --type must be a frame type name (READY, HEARTBEAT, DISCONNECT, "
                        "REQUEST, STREAM, REPLY, ERROR, CANCEL, SERVICES) or UNDECODABLE\n");
        return 2;
    }
    sig_install();
    void *ctx = zmq_ctx_new();
    void *sub = zmq_socket(ctx, ZMQ_SUB);
    int zero = 0;
    zmq_setsockopt(sub, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(sub, tap) != 0) {
        fprintf(stderr, "map-tap: cannot connect to tap endpoint '%s': %s\n", tap,
                zmq_strerror(errno));
        zmq_close(sub);
        zmq_ctx_term(ctx);
        return 1;
    }
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "", 0);
    tapfmt_opts_t opts = {json, service, run, type};
    tapfmt_t *fmt = tapfmt_new(&opts);
    sbuf_t line;
    sbuf_init(&line, TAPFMT_LINE_MAX);
    long printed = 0;
    enum { S_PARTS = 4 }; /* one more than a tap message has, to see extra parts */
    zmq_msg_t parts[S_PARTS];
    while (!sig_stop && (count == 0 || printed < count)) {
        zmq_pollitem_t item = {sub, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 200) <= 0)
            continue;
        int n = 0, total = 0, more = 1;
        while (more) {
            zmq_msg_t scratch;
            zmq_msg_t *m = n < S_PARTS ? &parts[n] : &scratch;
            zmq_msg_init(m);
            if (zmq_msg_recv(m, sub, 0) < 0) {
                zmq_msg_close(m);
                break;
            }
            more = zmq_msg_more(m);
            total++;
            if (m == &scratch)
                zmq_msg_close(m);
            else
                n++;
        }
        int shown = 0;
        if (total == 2 || total == 3) {
            int has_body = total == 3;
            shown = tapfmt_line(fmt, zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]),
                                zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]),
                                has_body ? zmq_msg_data(&parts[2]) : NULL,
                                has_body ? zmq_msg_size(&parts[2]) : 0, has_body, &line);
        } else if (total > 0) {
            shown = tapfmt_bad_parts(fmt, total, zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]),
                                     &line);
        }
        for (int i = 0; i < n; i++)
            zmq_msg_close(&parts[i]);
        if (shown) {
            fwrite(sbuf_cstr(&line), 1, line.len, stdout);
            fputs(line.overflow ? " [line cut]\n" : "\n", stdout);
            fflush(stdout);
            printed++;
        }
    }
    tapfmt_destroy(&fmt);
    sbuf_free(&line);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return 0;
}
