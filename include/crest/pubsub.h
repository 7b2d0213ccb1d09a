/* Publish/subscribe: named topics whose subscribers are WebSockets and SSE streams on any loop
 * thread.
 *
 * A published message is encoded once (one WebSocket frame, one SSE event) into one
 * reference-counted block; one inbox message per loop thread carries it there and every local
 * subscriber's output queue borrows the same bytes, so a broadcast to 100,000 sockets costs one
 * allocation and no per-recipient copy. Messages from one publishing thread reach each subscriber
 * in the order they were published. */
#ifndef CREST_PUBSUB_H
#define CREST_PUBSUB_H

#include <stddef.h>
#include <stdint.h>

#include "crest/app.h"
#include "crest/export.h"
#include "crest/ws.h"

typedef struct crest_pubsub_s crest_pubsub_t;

/* A pub/sub hub for `app` (its topics span every loop thread of the app). NULL only when memory
 * ran out. Create it before crest_app_run(); free it with crest_pubsub_free() after
 * crest_app_run() has returned. */
CREST_API crest_pubsub_t *crest_pubsub_new(crest_app_t *app);
/* Free the hub and any message still in flight. crest_pubsub_free(NULL) does nothing. */
CREST_API void crest_pubsub_free(crest_pubsub_t *ps);

/* Publish `data` to every subscriber of `topic`: WebSockets get a text (or, with `binary`, a
 * binary) message, SSE streams an event "message" whose data is `data`. Any thread; never calls
 * back before it returns. Returns 0 (also when nobody listens), CREST_EINVAL for an empty topic,
 * CREST_ENOMEM. */
CREST_API int crest_pubsub_publish(crest_pubsub_t *ps, const char *topic, const void *data,
                                   size_t len, int binary);
/* As crest_pubsub_publish() for text, with the SSE event's name (NULL: "message") and id (NULL:
 * none), which WebSockets do not see. Any thread. */
CREST_API int crest_pubsub_publish_event(crest_pubsub_t *ps, const char *topic, const char *event,
                                         const char *id, const void *data, size_t len);

/* Subscribe a WebSocket to `topic` (copied); subscribing twice is a no-op. The subscription ends
 * with crest_ws_unsubscribe() or when the socket closes. Only on the socket's loop thread.
 * Returns 0, CREST_EINVAL, CREST_ENOMEM. */
CREST_API int crest_ws_subscribe(crest_ws_t *ws, crest_pubsub_t *ps, const char *topic);
/* Returns 0, or CREST_ENOENT when the socket was not subscribed. Socket's loop thread only. */
CREST_API int crest_ws_unsubscribe(crest_ws_t *ws, crest_pubsub_t *ps, const char *topic);

/* Messages published so far, and deliveries to sockets and streams (summed over loop threads;
 * a moment's snapshot). Any thread. */
CREST_API uint64_t crest_pubsub_published(const crest_pubsub_t *ps);
CREST_API uint64_t crest_pubsub_delivered(const crest_pubsub_t *ps);
CREST_API uint64_t crest_pubsub_dropped(const crest_pubsub_t *ps);

#endif
