/* map-tap: prints the broker's live traffic, one line per frame. Subscribes
 * to the broker's tap (an XPUB that publishes only while someone listens and
 * drops rather than slow the broker), decodes with tapfmt. */
#include "tapfmt.h"

#include "common/flags.h"
#include "common/sig.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

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
        {"run", NULL, FLAG_STR, &run, 0, 0, "only frames whose body names this run id"},
        {"type", NULL, FLAG_STR, &type, 0, 0, "only this frame type (REQUEST, STREAM, ...)"},
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
    sbuf_t line;
    sbuf_init(&line, 4u << 20);
    long printed = 0;
    zmq_msg_t parts[3];
    while (!sig_stop && (count == 0 || printed < count)) {
        zmq_pollitem_t item = {sub, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 200) <= 0)
            continue;
        int n = 0, more = 1;
        while (more) {
            zmq_msg_t scratch;
            zmq_msg_t *m = n < 3 ? &parts[n] : &scratch;
            zmq_msg_init(m);
            if (zmq_msg_recv(m, sub, 0) < 0) {
                zmq_msg_close(m);
                break;
            }
            more = zmq_msg_more(m);
            if (m == &scratch)
                zmq_msg_close(m);
            else
                n++;
        }
        if (n >= 2) {
            const uint8_t *body = n > 2 ? zmq_msg_data(&parts[2]) : NULL;
            size_t body_len = n > 2 ? zmq_msg_size(&parts[2]) : 0;
            if (tapfmt_line(&opts, zmq_msg_data(&parts[0]), zmq_msg_size(&parts[0]),
                            zmq_msg_data(&parts[1]), zmq_msg_size(&parts[1]), body, body_len,
                            n > 2, &line)) {
                printf("%s\n", sbuf_cstr(&line));
                fflush(stdout);
                printed++;
            }
        } else if (n == 1) {
            printf("UNDECODABLE tap message: %zu byte(s) in one part\n", zmq_msg_size(&parts[0]));
            fflush(stdout);
            printed++;
        }
        for (int i = 0; i < n; i++)
            zmq_msg_close(&parts[i]);
    }
    sbuf_free(&line);
    zmq_close(sub);
    zmq_ctx_term(ctx);
    return 0;
}
