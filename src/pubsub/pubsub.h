/* Pub/sub internals shared with the subscriber kinds (src/ws, src/sse). */
#ifndef CREST_PUBSUB_INTERNAL_H
#define CREST_PUBSUB_INTERNAL_H

#include "internal.h"

/* One published message, encoded once for every kind of subscriber and shared by all of them on
 * every loop thread. Owner: its references (the publisher while it fans out, each loop's queue,
 * each output segment that borrows the bytes); the last crest__psmsg_unref frees it. */
typedef struct crest__psmsg_s {
    _Atomic uint32_t refs;
    uint32_t topic_len;
    uint64_t hash;
    const char *topic;
    const uint8_t *ws; /* a complete WebSocket frame */
    size_t ws_len;
    const uint8_t *sse; /* a complete SSE event */
    size_t sse_len;
    struct crest__psmsg_s *next[]; /* one link per loop thread's queue */
} crest__psmsg_t;

void crest__psmsg_ref(crest__psmsg_t *m);
/* A crest_release_cb: drops one reference. */
void crest__psmsg_unref(void *m);

/* A subscriber: embedded in a WebSocket or an SSE stream, on one loop thread. */
typedef struct crest__psub_s {
    /* Queue m's bytes on the subscriber's output (without writing yet); returns 1, or 0 when the
     * message was dropped (slow consumer). It may write (and so close) its own subscriber, but no
     * other: the topic's subscriber list is being walked. */
    int (*deliver)(struct crest__psub_s *s, crest__psmsg_t *m);
    /* The batch is over: write what deliver queued (or close the subscriber). */
    void (*flush)(struct crest__psub_s *s);
    struct crest__psnode_s *nodes; /* this subscriber's subscriptions */
    struct crest__psub_s *dirty_next;
    crest_loop_t *loop;
    uint8_t dirty;
} crest__psub_t;

int crest__ps_subscribe(crest_pubsub_t *ps, crest__psub_t *s, const char *topic);
int crest__ps_unsubscribe(crest_pubsub_t *ps, crest__psub_t *s, const char *topic);
/* Drop every subscription of s (it is closing). Loop thread only. */
void crest__ps_unsubscribe_all(crest__psub_t *s);
/* Call from deliver: s has output to flush at the end of the batch. */
void crest__ps_mark_dirty(crest__psub_t *s);

#endif
