/* wsframe: the WebSocket frames the edge writes itself (RFC 6455 §5.2), as
 * bytes: a server's frames are unmasked and no extension is offered, so a
 * text frame is a 2 to 10 byte header and the payload. Packing several
 * queued messages into one buffer lets the edge write them in one write.
 * No lws here: edge.c hands the bytes to lws_write(LWS_WRITE_RAW). */
#ifndef MAP_WSFRAME_H
#define MAP_WSFRAME_H
#include "outq.h"

#include <stddef.h>

#define WSFRAME_HDR_MAX 10      /* the largest header of a server frame */
#define WSFRAME_CLOSE_MAX 125   /* a control frame's payload: code + reason */

/* A final text frame's header for a payload of len bytes, into h
 * (WSFRAME_HDR_MAX bytes); returns its size. */
size_t wsframe_text_hdr(unsigned char *h, size_t len);
/* A close frame (code, then reason cut to fit 125 bytes, at a character
 * boundary) into out (2 + WSFRAME_CLOSE_MAX bytes); returns its size. */
size_t wsframe_close(unsigned char *out, unsigned code, const char *reason);
/* Takes the messages at the head of q that fit in max bytes as text
 * frames, written one after the other into out; returns the bytes
 * written (0 when the head alone does not fit: the caller writes it as
 * one frame of its own). */
size_t wsframe_pack(outq_t *q, unsigned char *out, size_t max);

#endif
