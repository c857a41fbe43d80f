/* conn: one client connection of the edge (HTTP or WebSocket), as every
 * ingress module sees it. No lws here: `wsi` is opaque to the modules, and
 * edge.c is the only code that hands it to lws (through io.h).
 *
 * Owner: edge.c allocates a conn the first time lws shows a client socket
 * and frees it in LWS_CALLBACK_WSI_DESTROY, after conn_cleanup: lws's own
 * per-transaction user memory is freed at every HTTP keep-alive turn, so
 * nothing of ours lives there. Everything that points at a conn (its
 * pending requests, its session) is unlinked in conn_cleanup, so a late
 * answer finds its request gone, never a freed connection. */
#ifndef MAP_CONN_H
#define MAP_CONN_H
#include "chunked.h"
#include "outq.h"
#include "seqtrack.h"
#include "common/sbuf.h"

#include <stdint.h>

typedef struct pending_t pending_t;
typedef struct session_t session_t;
typedef struct _zhashx_t zhashx_t;

#define CONN_ENDED_MAX 64 /* runs whose terminal event a socket was sent, remembered */

typedef enum { HTTP_IDLE, HTTP_BODY, HTTP_WAIT, HTTP_RESPOND } http_state_t;

/* One HTTP transaction (a request and its one response). */
typedef struct {
    http_state_t state;
    uint64_t txn;            /* transactions so far on this connection */
    int route;               /* route_id_t */
    char arg[129];           /* the id in the path */
    char query[512];         /* the query string (after '?'), for paging */
    char accept[128];
    char last_event_id[32];
    int has_last_event_id;
    char token[33];          /* POST .../calls: the run token of its Bearer header */
    long long content_length; /* -1: none */
    int chunked;             /* Transfer-Encoding: chunked */
    chunked_t dechunk;
    sbuf_t body;
    int body_too_large;
    int body_done;           /* lws has delivered (or will never deliver) the body */
    int body_seen;           /* a body byte came */
    char reqline[24];        /* "METHOD /" (lws's pipelining fault shows it as a body) */
    int close_after;         /* the connection closes after the response */
    int expect_continue;     /* the client waits for 100 Continue before its body */
    int send_continue;       /* "100 Continue" is to be written now */
    /* the response */
    int status;
    const char *content_type;
    char run_id_hdr[129];    /* X-Run-Id */
    int sse;                 /* an event stream: lasts as long as its run */
    int head_only;           /* HEAD: the head of the answer, no body */
    /* an event stream's run (ssefeed.h) */
    int feed_on;
    uint64_t feed_from;      /* the first seq the stream is to show */
    char feed_run[129];
    seqtrack_t track;
    int feed_ended;          /* its terminal event is queued */
    int follow_over;         /* the follow's final answer came */
    const struct ui_header_t *extra; /* more headers to send (the page's CSP...) */
    size_t nextra;
    int headers_sent;
    int finish;              /* the last byte is queued */
} http_txn_t;

typedef struct conn_t {
    uint64_t id;             /* unique in the process, for logs */
    void *wsi;               /* struct lws *: edge.c's business */
    int is_ws;
    outq_t q;                /* bytes to write */
    int closing;             /* close once the queue is written, or now */
    int close_code;
    char close_reason[64];
    pending_t *pendings;     /* requests in flight of this connection */
    size_t npending;
    http_txn_t http;
    /* WebSocket */
    int hello;
    session_t *session;
    struct conn_t *snext;    /* next socket of the session */
    zhashx_t *runs;          /* run_id → seqtrack_t: the runs it follows */
    char (*ended)[129];      /* ring of CONN_ENDED_MAX: runs it saw end (late copies
                                dropped); made at the first end, an idle socket has none */
    unsigned ended_next;
    int drain_wait;          /* runs were not sent for lack of room: fill when drained */
    int need_empty;          /* ... and the next event is larger than the room */
    sbuf_t frag;             /* message being reassembled */
    int frag_too_large;
} conn_t;

/* A fresh connection (not yet HTTP or WebSocket); max_outq bytes queued at most. */
conn_t *conn_new(uint64_t id, void *wsi, size_t max_outq, size_t headroom);
/* Frees what conn_cleanup left; NULL-safe; *self_p = NULL. */
void conn_destroy(conn_t **self_p);

/* Run ended on this socket (its terminal event was sent). */
void conn_mark_ended(conn_t *c, const char *run_id);
int conn_has_ended(const conn_t *c, const char *run_id);
void conn_unmark_ended(conn_t *c, const char *run_id);

#endif
