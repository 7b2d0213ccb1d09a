/* Server-Sent Events: `text/event-stream` responses that stay open.
 *
 * crest_sse_start() answers a GET with 200 and the stream's head, then the connection belongs to
 * the stream (HTTP parsing stops; the body ends when either side closes); a HEAD gets the head
 * alone and no stream. Events are written with crest_sse_send() or arrive from pub/sub topics
 * (crest_sse_subscribe()). A keep-alive comment goes out whenever the stream was quiet for
 * keepalive_ms, so proxies and browsers keep it open. A crest_sse_t belongs to its loop thread; it
 * lives until on_close returns. */
#ifndef CREST_SSE_H
#define CREST_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "crest/export.h"
#include "crest/http.h"
#include "crest/pubsub.h"

typedef struct crest_sse_s crest_sse_t;

typedef struct {
    /* The client left or the server is stopping: free the user data. Called once. */
    void (*on_close)(crest_sse_t *sse);
    void *data;
    uint32_t keepalive_ms; /* default 15 s */
    uint32_t retry_ms;     /* sent as "retry:" to the browser first; default 0 (not sent) */
    size_t max_buffered;   /* output beyond which events are dropped; default 1 MiB */
} crest_sse_opts_t;

/* Fill `opts` with the defaults above. */
CREST_API void crest_sse_opts_default(crest_sse_opts_t *opts);

/* Start an event stream in answer to `req`, during its handler call (a finishing call: return 0
 * from the handler afterwards). `opts` is copied. The client's Last-Event-ID header, if any, is
 * readable with crest_req_header() before this call. Returns the stream, or NULL when the client
 * has gone or memory ran out (the request is finished either way). A HEAD request (routed to a
 * GET route) gets the stream's head alone: the request is finished, its connection stays usable
 * for the next request, and NULL is returned (no stream: opts->on_close is never called). */
CREST_API crest_sse_t *crest_sse_start(crest_req_t *req, const crest_sse_opts_t *opts);

/* Per-stream user data: the address of a pointer (opts->data at first). */
CREST_API void **crest_sse_data(crest_sse_t *sse);

/* Send one event: `event` (NULL: none, which browsers treat as "message"), `id` (NULL: none) and
 * `data` (split into one "data:" line per line). Returns 0, CREST_EAGAIN when dropped because the
 * client is not reading, CREST_EPIPE when the stream is closing, CREST_EINVAL when event or id
 * holds a newline, CREST_ENOMEM. Stream's loop thread only. */
CREST_API int crest_sse_send(crest_sse_t *sse, const char *event, const char *id, const void *data,
                             size_t len);
/* Subscribe the stream to a pub/sub topic (see crest_ws_subscribe()). */
CREST_API int crest_sse_subscribe(crest_sse_t *sse, crest_pubsub_t *ps, const char *topic);
/* End the stream: what was queued is written, then the connection closes; on_close follows. */
CREST_API void crest_sse_end(crest_sse_t *sse);

#endif
