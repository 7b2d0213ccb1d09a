/* WebSockets (RFC 6455, with permessage-deflate from RFC 7692 when enabled).
 *
 * A WebSocket route upgrades a GET request and hands the connection to the callbacks in a
 * crest_ws_opts_t. A crest_ws_t belongs to the loop thread that accepted it: call these functions
 * only from that thread (other threads reach sockets through crest_pubsub_publish() or
 * crest_loop_post()). The handle lives from on_open until on_close returns; do not touch it after.
 *
 * Output shares the connection's write batching: sends made inside a callback go out together at
 * the end of the read that caused them. Bytes not yet taken by the kernel are visible with
 * crest_ws_buffered(); beyond max_buffered a socket is a slow consumer and, by slow_policy, its
 * further messages are dropped or it is closed, so memory never grows without bound.
 *
 * Compressed input (permessage-deflate) is inflated in slices: a loop thread inflates about
 * 256 KiB before it serves its other clients again, and a socket over its inflate_rate waits
 * (it is not read meanwhile), so compression can be turned on without letting one client stall
 * a loop thread. */
#ifndef CREST_WS_H
#define CREST_WS_H

#include <stddef.h>
#include <stdint.h>

#include "crest/app.h"
#include "crest/export.h"
#include "crest/http.h"

typedef struct crest_ws_s crest_ws_t;

typedef enum {
    CREST_WS_SLOW_DROP = 0, /* drop messages to a socket over max_buffered (default) */
    CREST_WS_SLOW_CLOSE = 1 /* close a socket over max_buffered */
} crest_ws_slow_policy_t;

typedef struct {
    /* The socket is open; the upgrade request `req` is readable during this call only (path,
     * query, headers) and must not be answered. Sends made here follow the 101 response. */
    void (*on_open)(crest_ws_t *ws, crest_req_t *req);
    /* A whole message (reassembled from fragments, decompressed, UTF-8 checked when text). The
     * bytes are valid during the call only. */
    void (*on_message)(crest_ws_t *ws, const void *data, size_t len, int binary);
    /* Everything queued has been written: a sender that stopped at max_buffered may go on. */
    void (*on_drain)(crest_ws_t *ws);
    /* The socket is closing: code is the peer's close code (1005 when it sent none, 1006 when the
     * connection dropped without a close frame) or the one crest sent for a protocol error; the
     * reason is valid during the call only. Called once; free the user data here. */
    void (*on_close)(crest_ws_t *ws, int code, const char *reason, size_t reason_len);
    void *data;          /* crest_ws_opts(ws)->data: shared by every socket of the route */
    size_t max_message;  /* largest message (and frame) accepted; default 1 MiB; more -> 1009 */
    size_t max_buffered; /* output a socket may queue before it is slow; default 1 MiB */
    int slow_policy;     /* crest_ws_slow_policy_t; default CREST_WS_SLOW_DROP */
    uint32_t ping_interval_ms; /* idle ping period, and the time to answer it; default 30 s,
                                  0 = never. The first ping comes up to a quarter of it early,
                                  spread over sockets, so that sockets opened together are not
                                  pinged together */
    uint32_t close_timeout_ms; /* wait for the peer's close frame; default 5 s */
    int deflate;               /* accept permessage-deflate offers; default 0 (off) */
    /* With permessage-deflate: inflated bytes one socket may produce per second (a quarter
     * second's worth may be saved up). A faster sender is not read until its budget is back,
     * so a small message that inflates 1000-fold cannot take a loop thread over. Default
     * CREST_WS_INFLATE_RATE; 0 means the default, SIZE_MAX no limit. */
    size_t inflate_rate;
} crest_ws_opts_t;

/* 16 MiB of inflated input per second per socket. */
#define CREST_WS_INFLATE_RATE ((size_t)16 * 1024 * 1024)

/* Fill `opts` with the defaults above (callbacks NULL). */
CREST_API void crest_ws_opts_default(crest_ws_opts_t *opts);

/* Add a WebSocket route: GET `pattern` (as crest_app_route) upgrades with the options in `opts`,
 * which are not copied: they must stay valid and unchanged until the app is freed. Returns what
 * crest_app_route() returns. */
CREST_API int crest_ws_route(crest_app_t *app, const char *pattern, const crest_ws_opts_t *opts);

/* Upgrade `req` from inside a handler (for routes that check something first). Answers 101 and
 * calls opts->on_open before it returns; a request that is not a valid upgrade is answered 400
 * (426 with Sec-WebSocket-Version: 13 for a wrong version). A finishing call: return 0 from the
 * handler afterwards. Returns 0, CREST_EINVAL when the request was rejected, CREST_ENOMEM. */
CREST_API int crest_ws_upgrade(crest_req_t *req, const crest_ws_opts_t *opts);

/* Per-socket user data: the address of a pointer that is NULL at first. */
CREST_API void **crest_ws_data(crest_ws_t *ws);
/* The options the socket was opened with. */
CREST_API const crest_ws_opts_t *crest_ws_opts(const crest_ws_t *ws);
/* The loop thread that owns the socket. */
CREST_API crest_loop_t *crest_ws_loop(const crest_ws_t *ws);

/* Send one message (copied). Returns 0; CREST_EAGAIN when it was dropped because the socket is
 * over max_buffered with the drop policy; CREST_EPIPE when the socket is closing (or was closed by
 * the close policy just now); CREST_ENOMEM. Text is not checked for UTF-8: the caller vouches for
 * it. Inside a callback the frame goes out with the batch; elsewhere it is written now. */
CREST_API int crest_ws_send(crest_ws_t *ws, const void *data, size_t len, int binary);
/* Send a text message from a C string. */
CREST_API int crest_ws_send_text(crest_ws_t *ws, const char *text);
/* Start the close handshake: send a close frame with `code` (1000..4999, a code that may be
 * sent) and `reason` (at most 123 bytes, UTF-8; may be NULL), then wait for the peer's close
 * (at most close_timeout_ms). on_close runs later, not before this returns. Returns 0,
 * CREST_EINVAL for a bad code or reason, CREST_EALREADY when closing already. */
CREST_API int crest_ws_close(crest_ws_t *ws, int code, const char *reason);
/* Bytes queued on the socket and not yet taken by the kernel. */
CREST_API size_t crest_ws_buffered(const crest_ws_t *ws);
/* Messages dropped for this socket by the slow-consumer policy so far. */
CREST_API uint64_t crest_ws_dropped(const crest_ws_t *ws);

#endif
