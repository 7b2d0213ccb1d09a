/* Pub/sub internals shared with the subscriber kinds (src/ws, src/sse). */
#ifndef CREST_PUBSUB_INTERNAL_H
#define CREST_PUBSUB_INTERNAL_H

#include "internal.h"

/* One published message, encoded once for every kind of subscriber and shared by all of them on
 * every loop thread. Owner: its references (the publisher while it fans out, each loop's queue,
 * each output segment that borrows the bytes); the last crest__psmsg_unref frees it. */
typedef struct crest__psmsg_s {
    _Atomic uint32_t refs;
    _Atomic uint32_t queued; /* loop threads' queues holding it (+1 while it is being published) */
    size_t size;             /* of the whole block: what the queues charge for it */
    crest__rt_t *rt;         /* its size is charged to the buffer budget until the free */
    uint32_t topic_len;
    uint64_t hash;
    const char *topic;
    const uint8_t *ws; /* a complete WebSocket frame */
    size_t ws_len;
    const uint8_t *sse; /* a complete SSE event */
    size_t sse_len;
    const uint8_t *extra; /* what a subscriber kind of its own reads (crest__ps_publish_raw) */
    size_t extra_len;
    struct crest__psmsg_s *next[]; /* one link per loop thread's queue */
} crest__psmsg_t;

void crest__psmsg_ref(crest__psmsg_t *m);
/* A crest_release_cb: drops one reference. */
void crest__psmsg_unref(void *m);

/* A subscriber: embedded in a WebSocket or an SSE stream, on one loop thread. */
typedef struct crest__psub_s {
    /* Queue m's bytes on the subscriber's output (without writing yet); returns 1, or 0 when the
     * message was dropped (slow consumer). It may write or close its own subscriber, and what it
     * calls may close others: the walk over the topic's subscribers keeps its place with a cursor
     * node that no subscriber can free. */
    int (*deliver)(struct crest__psub_s *s, crest__psmsg_t *m);
    /* The slice is over: write what deliver queued (or close the subscriber). */
    void (*flush)(struct crest__psub_s *s);
    struct crest__psnode_s *nodes; /* this subscriber's subscriptions */
    struct crest__psub_s *dirty_next;
    struct local_s *dirty_in; /* the loop share whose dirty list holds it, or NULL */
    crest_loop_t *loop;
    uint8_t dirty;
    uint8_t slow; /* crest__ps_slow: publishers do not count it as a reader */
} crest__psub_t;

int crest__ps_subscribe(crest_pubsub_t *ps, crest__psub_t *s, const char *topic);
int crest__ps_unsubscribe(crest_pubsub_t *ps, crest__psub_t *s, const char *topic);
/* Drop every subscription of s (it is closing). Loop thread only. */
void crest__ps_unsubscribe_all(crest__psub_t *s);
/* Call from deliver: s has output to flush at the end of the slice. */
void crest__ps_mark_dirty(crest__psub_t *s);
/* s is (1) or is no longer (0) a slow consumer: over its output limit, it would drop every
 * message. While it is, a loop thread whose other subscribers of a topic are slow too is not sent
 * that topic's messages. Call with 1 when deliver drops for the output limit, with 0 once the
 * output has drained. Loop thread only. */
void crest__ps_slow(crest__psub_t *s, int slow);

/* Publish bytes encoded by the caller to this instance's subscribers of `topic` (never to the
 * bridge): `ws` (complete WebSocket frames, maybe several) for WebSockets, and `extra` for a
 * subscriber kind of its own (src/sio's), both copied into the one shared block. SSE streams get
 * nothing. Any thread; returns as crest_pubsub_publish. */
int crest__ps_publish_raw(crest_pubsub_t *ps, const char *topic, const void *ws, size_t ws_len,
                          const void *extra, size_t extra_len);

/* Something that carries a hub's topics to other instances (src/redis: the Redis bridge). The hub
 * calls it; it never calls back into the hub from these calls. */
typedef struct crest__ps_bridge_s {
    /* A message published on this instance (any thread): carry it to the others. */
    void (*publish)(struct crest__ps_bridge_s *b, const char *topic, size_t topic_len,
                    const char *event, const char *id, const void *data, size_t len, int binary);
    /* A loop thread now has subscribers of `topic` (+1) or no longer has (-1). From that loop
     * thread; in order for each loop. */
    void (*interest)(struct crest__ps_bridge_s *b, const char *topic, size_t len, int delta);
    /* Carry `len` bytes to Redis channel `channel` as they are (another format's messages:
     * src/sio's cluster adapter). Any thread; dropped and counted while Redis is away. */
    void (*publish_raw)(struct crest__ps_bridge_s *b, const char *channel, size_t channel_len,
                        const void *data, size_t len);
    /* Also PSUBSCRIBE `pattern` (copied), now and after every reconnect, and hand each message
     * that arrives on it to cb, on the bridge's own thread (payload valid during the call). Any
     * thread, before the hub is freed. Returns 0 or CREST_ENOMEM. */
    int (*psubscribe)(struct crest__ps_bridge_s *b, const char *pattern,
                      void (*cb)(void *arg, const char *channel, size_t channel_len,
                                 const char *payload, size_t len),
                      void *arg);
    /* Drop the pattern subscriptions made with `arg`: when this returns, none of their
     * callbacks runs or will run. Any thread but the bridge's. */
    void (*punsubscribe)(struct crest__ps_bridge_s *b, void *arg);
    /* Add the bridge's counters to *out (any thread). */
    void (*stats)(struct crest__ps_bridge_s *b, crest_pubsub_stats_t *out);
    /* The hub is being freed: stop and free the bridge. */
    void (*stop)(struct crest__ps_bridge_s *b);
} crest__ps_bridge_t;

/* Attach b to ps (before crest_app_run). Returns 0, or CREST_EEXIST when ps has one. */
int crest__ps_set_bridge(crest_pubsub_t *ps, crest__ps_bridge_t *b);
/* The hub's bridge, or NULL. */
crest__ps_bridge_t *crest__ps_bridge(crest_pubsub_t *ps);
/* The runtime of the hub's app (for its log). */
crest__rt_t *crest__ps_rt(crest_pubsub_t *ps);
/* Deliver a message that came from another instance to this instance's subscribers only (it is
 * not carried again). Any thread. As crest_pubsub_publish_event, with binary. */
int crest__ps_publish_local(crest_pubsub_t *ps, const char *topic, const char *event,
                            const char *id, const void *data, size_t len, int binary);

#endif
