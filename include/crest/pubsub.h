/* Publish/subscribe: named topics whose subscribers are WebSockets and SSE streams on any loop
 * thread.
 *
 * A published message is encoded once (one WebSocket frame, one SSE event) into one
 * reference-counted block; one inbox message per loop thread carries it there and every local
 * subscriber's output queue borrows the same bytes, so a broadcast to 100,000 sockets costs one
 * allocation and no per-recipient copy. Messages from one publishing thread reach each subscriber
 * in the order they were published.
 *
 * Memory and time stay bounded under load. Each loop thread's queue of messages waiting for it
 * holds at most queue_max_messages and queue_max_bytes (crest_pubsub_opts_t); a message that
 * would not fit is dropped for that loop thread and counted. A loop thread is sent a message only
 * when it may have a subscriber of the topic that is not a slow consumer (over its max_buffered):
 * a message that could only be dropped there is not queued at all, and counted. A loop thread
 * delivers a broadcast in slices (at most slice_subscribers subscribers or slice_us
 * microseconds each) and serves its other clients in between. */
#ifndef CREST_PUBSUB_H
#define CREST_PUBSUB_H

#include <stddef.h>
#include <stdint.h>

#include "crest/app.h"
#include "crest/export.h"
#include "crest/ws.h"

typedef struct crest_pubsub_s crest_pubsub_t;

typedef struct {
    /* Messages waiting for one loop thread (queued or being delivered there); default 4096. */
    size_t queue_max_messages;
    /* Their bytes (a message sent to several loop threads counts in each); default 16 MiB. */
    size_t queue_max_bytes;
    /* A loop thread hands a broadcast to at most this many subscribers, or works on it for at
     * most slice_us microseconds, before it serves its other clients and goes on; defaults 256
     * and 1000. Each subscriber gets one write per slice. */
    uint32_t slice_subscribers;
    uint32_t slice_us;
} crest_pubsub_opts_t;

/* Counters of a hub (summed over loop threads; a moment's snapshot). */
typedef struct {
    uint64_t published;       /* crest_pubsub_publish* calls that were accepted */
    uint64_t delivered;       /* messages queued on a WebSocket or an SSE stream */
    uint64_t dropped;         /* deliveries dropped at a slow WebSocket or stream */
    uint64_t queue_dropped;   /* messages dropped for a loop thread whose queue was full */
    uint64_t slow_skipped;    /* messages not sent to a loop thread whose subscribers of the
                                 topic were all slow consumers (each would have dropped it) */
    uint64_t queued_messages; /* now: messages waiting for loop threads (one per thread) */
    uint64_t queued_bytes;    /* now: bytes of the distinct messages waiting, as
crest_pubsub_queued_bytes() */
    /* With a Redis bridge (crest_pubsub_redis): */
    uint64_t redis_up;           /* now: 1 while connected and subscribed, else 0 */
    uint64_t redis_sent;         /* messages published to Redis */
    uint64_t redis_received;     /* messages from other instances delivered here */
    uint64_t redis_dropped;      /* messages not sent: Redis down, or the queue to it full */
    uint64_t redis_refused;      /* messages from Redis over max_message, skipped */
    uint64_t redis_reconnects;   /* connections made again after a loss */
    uint64_t redis_queued_bytes; /* now: bytes waiting to be written to Redis (the queue and what
                                    the socket has not taken), at most max_queue_bytes + one
                                    message */
} crest_pubsub_stats_t;

/* Fill `opts` with the defaults above. */
CREST_API void crest_pubsub_opts_default(crest_pubsub_opts_t *opts);

/* A pub/sub hub for `app` (its topics span every loop thread of the app). NULL only when memory
 * ran out. Create it before crest_app_run(); free it with crest_pubsub_free() after
 * crest_app_run() has returned and before crest_app_free() (its messages are charged to the app's
 * buffer budget). */
CREST_API crest_pubsub_t *crest_pubsub_new(crest_app_t *app);
/* Free the hub and any message still in flight. crest_pubsub_free(NULL) does nothing. */
CREST_API void crest_pubsub_free(crest_pubsub_t *ps);
/* Set the hub's limits (copied). Call before crest_app_run(), from the thread that made the hub.
 * Returns 0, or CREST_EINVAL when a field is 0. */
CREST_API int crest_pubsub_set_opts(crest_pubsub_t *ps, const crest_pubsub_opts_t *opts);

/* Publish `data` to every subscriber of `topic`: WebSockets get a text (or, with `binary`, a
 * binary) message, SSE streams an event "message" whose data is `data`. Any thread; never calls
 * back before it returns. Returns 0 (also when nobody listens), CREST_EINVAL for an empty topic,
 * CREST_ENOBUFS when the app's buffer budget (max_buffer_memory, which counts each message once
 * until every socket has written it) is used up and the message was dropped, CREST_ENOMEM. */
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

/* ---- the Redis bridge: topics that span every instance on one Redis ----
 *
 * With a bridge, a message published on this instance is also published to Redis (one PUBLISH per
 * message, whatever the number of subscribers, threads or instances), and messages other
 * instances publish reach this instance's subscribers. The instance subscribes in Redis only to
 * topics it has local subscribers for, and unsubscribes when the last one leaves; its own
 * messages coming back are recognised and not delivered twice. Messages of one publisher arrive
 * everywhere in the order published.
 *
 * Redis down: local delivery goes on; messages published meanwhile are NOT carried to other
 * instances (dropped and counted in redis_dropped, never delivered twice later); the bridge
 * reconnects by itself (backoff 100 ms doubling to 2 s) and subscribes again to every topic. One
 * log line says it went down, one that it is back. */
typedef struct {
    size_t max_queue_messages; /* published messages waiting to be written to Redis; past it they
                                  are dropped and counted (default 10000) */
    size_t max_queue_bytes;    /* their bytes (default 16 MiB) */
    size_t max_message;        /* a message from Redis bigger than this is skipped as it arrives,
                                  never held, and counted (default 1 MiB) */
    const char *prefix;        /* Redis channel = prefix + topic (default "crest:") */
} crest_redis_opts_t;

/* Fill `opts` with the defaults above. */
CREST_API void crest_redis_opts_default(crest_redis_opts_t *opts);

/* Bridge the hub through the Redis at `url` ("redis://[:PASSWORD@]HOST[:PORT]"; NULL opts for
 * the defaults). Call once, before crest_app_run(), from the thread that made the hub; the host
 * is resolved here (it blocks), then a thread of the bridge's own connects in the background and
 * keeps connecting: Redis need not be up yet. The hub owns the bridge: crest_pubsub_free() stops
 * it. Returns 0, CREST_EINVAL for a malformed URL, CREST_ECONNREFUSED when the host does not
 * resolve, CREST_EEXIST when the hub has a bridge, CREST_ENOMEM. */
CREST_API int crest_pubsub_redis(crest_pubsub_t *ps, const char *url,
                                 const crest_redis_opts_t *opts);

/* Messages published so far, and deliveries to sockets and streams (summed over loop threads;
 * a moment's snapshot). Any thread. */
CREST_API uint64_t crest_pubsub_published(const crest_pubsub_t *ps);
CREST_API uint64_t crest_pubsub_delivered(const crest_pubsub_t *ps);
CREST_API uint64_t crest_pubsub_dropped(const crest_pubsub_t *ps);
/* Every counter at once (`out` is filled). Any thread. */
CREST_API void crest_pubsub_stats(const crest_pubsub_t *ps, crest_pubsub_stats_t *out);
/* Bytes of the published messages that wait in loop threads' queues now, each message counted
 * once however many threads it waits for: the memory the queues hold. Any thread. */
CREST_API size_t crest_pubsub_queued_bytes(const crest_pubsub_t *ps);

#endif
