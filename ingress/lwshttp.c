/* lwshttp: see lwshttp.h. A header too long for its buffer is treated as
 * present but unusable: a bad Origin or Host is refused, not skipped. */
#include "lwshttp.h"

#include "ssefeed.h"
#include "ui.h"

#include <errno.h>
#include <libwebsockets.h>
#include <stdlib.h>
#include <string.h>

/* A header's value into buf (NUL-terminated); NULL when absent or too long. */
static const char *s_hdr(struct lws *wsi, enum lws_token_indexes tok, char *buf, int cap)
{
    int n = lws_hdr_total_length(wsi, tok);
    if (n <= 0 || n >= cap || lws_hdr_copy(wsi, buf, cap, tok) < 0)
        return NULL;
    return buf;
}

/* Like s_hdr, but a value too long for buf comes back as `toolong`. */
static const char *s_hdr_or(struct lws *wsi, enum lws_token_indexes tok, char *buf, int cap,
                            const char *toolong)
{
    const char *v = s_hdr(wsi, tok, buf, cap);
    return v || lws_hdr_total_length(wsi, tok) <= 0 ? v : toolong;
}

/* The query string, rebuilt from lws's fragments (a=1&b=2). */
static const char *s_query(struct lws *wsi, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < 32; i++) {
        char frag[256];
        int n = lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i);
        if (n < 0 || used + (size_t)n + 2 >= cap)
            break;
        if (used)
            buf[used++] = '&';
        memcpy(buf + used, frag, (size_t)n);
        used += (size_t)n;
        buf[used] = '\0';
    }
    return used ? buf : NULL;
}

static const char *s_method(struct lws *wsi)
{
    static const struct {
        enum lws_token_indexes tok;
        const char *name;
    } m[] = {{WSI_TOKEN_GET_URI, "GET"},       {WSI_TOKEN_POST_URI, "POST"},
             {WSI_TOKEN_PUT_URI, "PUT"},       {WSI_TOKEN_PATCH_URI, "PATCH"},
             {WSI_TOKEN_DELETE_URI, "DELETE"}, {WSI_TOKEN_OPTIONS_URI, "OPTIONS"},
             {WSI_TOKEN_HEAD_URI, "HEAD"}};
    for (size_t i = 0; i < sizeof m / sizeof *m; i++)
        if (lws_hdr_total_length(wsi, m[i].tok) > 0)
            return m[i].name;
    return "OTHER";
}

void lwshttp_read(struct lws *wsi, const char *path, lwshttp_req_t *r)
{
    http_head_t *hd = &r->head;
    memset(hd, 0, sizeof *hd);
    hd->method = s_method(wsi);
    hd->path = path ? path : "/";
    hd->query = s_query(wsi, r->query, sizeof r->query);
    hd->content_length = -1;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
        const char *v = s_hdr(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, r->clen, sizeof r->clen);
        char *end = NULL;
        errno = 0;
        long long n = v ? strtoll(v, &end, 10) : -1;
        hd->content_length =
            v && *v >= '0' && *v <= '9' && end && !*end && n >= 0 && errno != ERANGE ? n : -2;
    }
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
        const char *v = s_hdr(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING, r->te, sizeof r->te);
        if (v && !strcasecmp(v, "chunked"))
            hd->chunked = 1;
        else
            hd->bad_te = 1;
    }
    const char *ex = s_hdr(wsi, WSI_TOKEN_HTTP_EXPECT, r->expect, sizeof r->expect);
    hd->expect_continue = ex && !strcasecmp(ex, "100-continue");
    hd->origin = s_hdr_or(wsi, WSI_TOKEN_ORIGIN, r->origin, sizeof r->origin, "invalid:too-long");
    hd->host = s_hdr_or(wsi, WSI_TOKEN_HOST, r->host, sizeof r->host, "invalid.too-long");
    hd->authorization = s_hdr(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, r->auth, sizeof r->auth);
    hd->accept = s_hdr(wsi, WSI_TOKEN_HTTP_ACCEPT, r->accept, sizeof r->accept);
    if (lws_hdr_custom_copy(wsi, r->last, sizeof r->last, "last-event-id:", 14) > 0)
        hd->last_event_id = r->last;
}

void lwshttp_continue(struct lws *wsi)
{
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    unsigned char buf[LWS_PRE + sizeof cont];
    memcpy(buf + LWS_PRE, cont, sizeof cont - 1);
    lws_write(wsi, buf + LWS_PRE, sizeof cont - 1, LWS_WRITE_RAW);
}

static int s_header(struct lws *wsi, const char *name, const char *value, unsigned char **p,
                    unsigned char *end)
{
    return lws_add_http_header_by_name(wsi, (const unsigned char *)name,
                                       (const unsigned char *)value, (int)strlen(value), p, end);
}

int lwshttp_headers(struct lws *wsi, const http_txn_t *t, size_t clen)
{
    unsigned char hdr[LWS_PRE + 2048], *start = hdr + LWS_PRE, *p = start,
                                      *end = hdr + sizeof hdr - 1;
    lws_filepos_t len = t->sse ? LWS_ILLEGAL_HTTP_CONTENT_LEN : (lws_filepos_t)clen;
    if (lws_add_http_common_headers(wsi, (unsigned)t->status,
                                    t->content_type ? t->content_type : "application/json", len,
                                    &p, end))
        return -1;
    if (t->run_id_hdr[0] && s_header(wsi, "x-run-id:", t->run_id_hdr, &p, end))
        return -1;
    if (t->sse && s_header(wsi, "cache-control:", "no-cache", &p, end))
        return -1;
    if ((t->close_after || t->sse) && s_header(wsi, "connection:", "close", &p, end))
        return -1;
    for (size_t i = 0; i < t->nextra; i++)
        if (s_header(wsi, t->extra[i].name, t->extra[i].value, &p, end))
            return -1;
    return lws_finalize_write_http_header(wsi, start, &p, end) ? -1 : 0;
}

int lwshttp_confirm_upgrade(struct lws *wsi, const policy_t *pol, int *forbidden)
{
    *forbidden = 0;
    char uri[64], origin[256], host[256];
    const char *u = s_hdr(wsi, WSI_TOKEN_GET_URI, uri, sizeof uri);
    const char *o = s_hdr_or(wsi, WSI_TOKEN_ORIGIN, origin, sizeof origin, "invalid:too-long");
    const char *hs = s_hdr_or(wsi, WSI_TOKEN_HOST, host, sizeof host, "invalid.too-long");
    int status = 0;
    const char *body = NULL;
    if (!u || strcmp(u, "/ws") != 0) {
        status = 404;
        body = "{\"error\":{\"code\":\"not_found\",\"message\":\"WebSocket is served on /ws\"}}";
    } else if (!policy_origin_ok(pol, o, hs) || !policy_host_ok(pol, hs)) {
        status = 403;
        *forbidden = 1;
        body = "{\"error\":{\"code\":\"forbidden_origin\",\"message\":\"WebSockets from this web "
               "origin are not allowed\"}}";
    }
    if (!status)
        return 0;
    unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
    size_t bl = strlen(body);
    if (lws_add_http_common_headers(wsi, (unsigned)status, "application/json", bl, &p, end) ||
        s_header(wsi, "connection:", "close", &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    unsigned char out[LWS_PRE + 256];
    memcpy(out + LWS_PRE, body, bl);
    if (lws_write(wsi, out + LWS_PRE, bl, LWS_WRITE_HTTP_FINAL) < 0)
        return -1;
    return 1;
}

int lwshttp_writeable(hub_t *h, conn_t *c)
{
    struct lws *wsi = c->wsi;
    http_txn_t *t = &c->http;
    if (c->closing)
        return -1; /* too slow a reader: cut */
    if (t->state != HTTP_RESPOND)
        return 0;
    if (!t->headers_sent) {
        if (lwshttp_headers(wsi, t, c->q.bytes))
            return -1;
        t->headers_sent = 1;
        if (t->sse) /* a stream lasts as long as its run: no idle timeout */
            lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
        if (t->head_only) /* the body is not sent (RFC 9110 §9.3.2) */
            outq_clear(&c->q);
        lws_callback_on_writable(wsi);
        return 0;
    }
    ssefeed_drained(h, c); /* a stream behind asks for its next page */
    outq_msg_t *o = outq_take(&c->q);
    if (o) {
        int last = !c->q.head && t->finish;
        int rc = lws_write(wsi, outq_data(&c->q, o), o->len, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
        outq_msg_free(o);
        if (rc < 0)
            return -1;
        if (!last) {
            lws_callback_on_writable(wsi);
            return 0;
        }
    } else if (!t->finish) {
        return 0; /* more will come */
    }
    if (!http_done(h, c))
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}
