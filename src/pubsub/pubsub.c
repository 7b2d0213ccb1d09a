/* Topics and cross-thread fan-out.
 *
 * Each loop thread keeps its own table of topics and their local subscribers; only that thread
 * touches it, so subscribing and delivering take no lock. A publisher (any thread) encodes the
 * message once, appends it to the queue of every loop that may have a reader of the topic (a
 * short mutex) and posts one inbox message to a loop whose queue was idle. The loop takes the
 * whole queue and delivers it in slices: every message goes to every local subscriber as a
 * borrowed segment of the same bytes, and each subscriber is written once at the end of a slice,
 * so a burst of messages costs one write per socket, not one per message.
 *
 * Bounds, because a publisher can always outrun a loop that fans out to thousands of sockets:
 * - Each loop's queue is limited in messages and bytes, counted from the publish until the loop
 *   has delivered the message; a message that does not fit is dropped for that loop (counted).
 * - A publisher asks, without the loop's lock, whether the loop may have a topic subscriber that
 *   is not a slow consumer: each loop publishes two counting Bloom filters of topic hashes (all
 *   topics with a subscriber; topics with a subscriber that is not slow), written by the loop
 *   thread alone and read with relaxed atomics. A false positive costs a wasted post; a false
 *   negative cannot happen, because a counter only drops when a topic that was counted in it
 *   leaves (a saturated counter stays, which only adds false positives).
 * - A loop delivers to at most slice_subscribers subscribers or for slice_us, then re-posts
 *   itself and serves its other clients before it goes on. Its place in the topic's list is a
 *   cursor node that no subscriber can free, so subscribers may leave or close (their own socket
 *   or, from their callbacks, any other) while a broadcast is under way. */
#include <stdlib.h>
#include <string.h>

#include "codec/sse_event.h"
#include "codec/ws_frame.h"
#include "http/http.h"
#include "pubsub/pubsub.h"

/* Counting Bloom filter: two slots per topic out of FILTER_SLOTS 16-bit counters (16 KiB per
 * filter per loop thread, made with the hub's first subscription). A counter counts topics, not
 * subscribers, so it stays small; at 500 topics on one loop about 1% of queries for an absent
 * topic pass. */
#define FILTER_BITS 13
#define FILTER_SLOTS (1u << FILTER_BITS)
/* Consecutive messages of one topic go to each subscriber together (one pass over the list). */
#define RUN_MAX 64
#define SLICE_BYTES (1024 * 1024) /* queued on subscribers per slice, at most (one run more) */

/* A subscription: a subscriber in a topic's list. A node with sub == NULL is the delivery cursor
 * of its loop (local_t.cursor). */
typedef struct crest__psnode_s {
    struct topic_s *topic;
    crest__psub_t *sub;
    struct crest__psnode_s *prev; /* in the topic's list */
    struct crest__psnode_s *next;
    struct crest__psnode_s *sub_next; /* in the subscriber's list */
} psnode_t;

/* Kept small, as is a node: a room of one (a socket's own) costs a topic and a node. */
typedef struct topic_s {
    struct topic_s *chain; /* hash bucket */
    struct local_s *local; /* the loop share it belongs to */
    psnode_t *subs;
    uint64_t hash;
    uint32_t len;
    uint32_t nsubs;  /* subscribers (the cursor is not one) */
    uint32_t nready; /* subscribers that are not slow */
    uint8_t walked;  /* the cursor is in the list: the topic stays even without subscribers */
    char name[];
} topic_t;

/* One loop thread's share of the hub. */
typedef struct local_s {
    crest_pubsub_t *ps;
    crest_loop_t *loop;
    int index;
    pthread_mutex_t lock;
    crest__psmsg_t *qhead; /* guarded by lock */
    crest__psmsg_t *qtail;
    int posted; /* guarded by lock: on_deliver is posted or running and will look at the queue */
    /* Messages for this loop (queued or being delivered) and their bytes: checked by publishers
     * under the lock, lowered by the loop without it. */
    _Atomic uint64_t qcount;
    _Atomic uint64_t qbytes;
    _Atomic uint64_t queue_dropped; /* added to by publishers */
    _Atomic uint64_t slow_skipped;
    /* Written by the loop thread only, read by publishers (relaxed). */
    _Atomic uint16_t *topics; /* filter of topics with a subscriber here */
    _Atomic uint16_t *ready;  /* filter of topics with a subscriber that is not slow */
    /* Loop thread only. */
    topic_t **buckets;
    size_t nbuckets;
    size_t ntopics;
    crest__psub_t *dirty;
    crest__psmsg_t *cur;  /* messages taken from the queue, delivered in order */
    size_t run_len;       /* messages of cur's run (same topic) being walked */
    psnode_t cursor;      /* in the run's topic list while a walk is under way (topic != NULL) */
    psnode_t *walk_node;  /* the node being delivered to; cleared if it leaves meanwhile */
    uint64_t delivered;   /* accumulated in the slice, then published below */
    uint64_t dropped_now; /* idem */
    _Atomic uint64_t delivered_total;
    _Atomic uint64_t dropped;
} local_t;

struct crest_pubsub_s {
    crest__rt_t *rt;
    crest_app_t *app; /* its metrics source is listed there (crest_app_metrics) */
    crest_pubsub_opts_t opts;
    pthread_mutex_t init_lock;
    _Atomic(local_t *) locals; /* one per loop thread, made when the first loop subscribes */
    int nlocals;
    _Atomic uint64_t published;
    _Atomic uint64_t queued_bytes; /* distinct messages in at least one queue */
    crest__ps_bridge_t *bridge;    /* set before the app runs, or NULL */
};

/* The share whose slice is running on this thread: deliver marks its subscribers dirty there. */
static _Thread_local local_t *delivering;

void crest_pubsub_opts_default(crest_pubsub_opts_t *o) {
    memset(o, 0, sizeof(*o));
    o->queue_max_messages = 4096;
    o->queue_max_bytes = 16 * 1024 * 1024;
    o->slice_subscribers = 256;
    o->slice_us = 1000;
}

static void write_metrics(const crest_app_t *app, void *arg, crest_buf_t *b);

crest_pubsub_t *crest_pubsub_new(crest_app_t *app) {
    crest_pubsub_t *ps = calloc(1, sizeof(*ps));
    if (ps == NULL)
        return NULL;
    ps->rt = &app->rt;
    ps->app = app;
    crest_pubsub_opts_default(&ps->opts);
    pthread_mutex_init(&ps->init_lock, NULL);
    if (crest__metrics_add(app, write_metrics, ps) != 0) {
        pthread_mutex_destroy(&ps->init_lock);
        free(ps);
        return NULL;
    }
    return ps;
}

int crest_pubsub_set_opts(crest_pubsub_t *ps, const crest_pubsub_opts_t *o) {
    if (o == NULL || o->queue_max_messages == 0 || o->queue_max_bytes == 0 ||
        o->slice_subscribers == 0 || o->slice_us == 0)
        return CREST_EINVAL;
    ps->opts = *o;
    return 0;
}

void crest__psmsg_ref(crest__psmsg_t *m) {
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void crest__psmsg_unref(void *arg) {
    crest__psmsg_t *m = arg;
    /* acq_rel: every thread's last use of the bytes happens before the free. (A release
     * decrement plus an acquire fence would do, but ThreadSanitizer does not model fences.) */
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1) {
        crest__mem_give(m->rt, NULL, m->size);
        free(m);
    }
}

/* A queue (or the publisher) lets go of m: it no longer counts in the hub's queued bytes once no
 * queue holds it, though sockets may still borrow its bytes. */
static void unqueue(crest_pubsub_t *ps, crest__psmsg_t *m) {
    if (atomic_fetch_sub_explicit(&m->queued, 1, memory_order_relaxed) == 1)
        atomic_fetch_sub_explicit(&ps->queued_bytes, m->size, memory_order_relaxed);
    crest__psmsg_unref(m);
}

static void unqueue_list(local_t *l, crest__psmsg_t *m) {
    while (m != NULL) {
        crest__psmsg_t *next = m->next[l->index];
        unqueue(l->ps, m);
        m = next;
    }
}

crest__ps_bridge_t *crest__ps_bridge(crest_pubsub_t *ps) {
    return ps->bridge;
}

crest__rt_t *crest__ps_rt(crest_pubsub_t *ps) {
    return ps->rt;
}

int crest__ps_set_bridge(crest_pubsub_t *ps, crest__ps_bridge_t *b) {
    if (ps->bridge != NULL)
        return CREST_EEXIST;
    ps->bridge = b;
    return 0;
}

void crest_pubsub_free(crest_pubsub_t *ps) {
    if (ps == NULL)
        return;
    crest__metrics_remove(ps->app, write_metrics, ps); /* /metrics reads no more of it */
    /* First: the bridge may still be handing messages to the hub. */
    if (ps->bridge != NULL)
        ps->bridge->stop(ps->bridge);
    local_t *locals = atomic_load(&ps->locals);
    for (int i = 0; locals && i < ps->nlocals; i++) {
        local_t *l = &locals[i];
        /* Messages that reached a loop after it stopped (or in the middle of a broadcast that
         * could not go on) were never delivered. */
        unqueue_list(l, l->qhead);
        unqueue_list(l, l->cur);
        for (size_t b = 0; b < l->nbuckets; b++) {
            topic_t *t = l->buckets[b];
            while (t != NULL) { /* only when subscribers outlived their loop: free the nodes */
                topic_t *chain = t->chain;
                psnode_t *n = t->subs;
                while (n != NULL) {
                    psnode_t *nx = n->next;
                    if (n != &l->cursor)
                        free(n);
                    n = nx;
                }
                free(t);
                t = chain;
            }
        }
        free(l->buckets);
        free(l->topics);
        pthread_mutex_destroy(&l->lock);
    }
    free(locals);
    pthread_mutex_destroy(&ps->init_lock);
    free(ps);
}

static local_t *locals_get(crest_pubsub_t *ps) {
    local_t *l = atomic_load_explicit(&ps->locals, memory_order_acquire);
    if (l != NULL)
        return l;
    pthread_mutex_lock(&ps->init_lock);
    l = atomic_load_explicit(&ps->locals, memory_order_relaxed);
    if (l == NULL && ps->rt->loops != NULL) {
        int n = ps->rt->nthreads;
        l = calloc((size_t)n, sizeof(*l));
        int ok = l != NULL;
        for (int i = 0; ok && i < n; i++) {
            l[i].ps = ps;
            l[i].loop = &ps->rt->loops[i];
            l[i].index = i;
            l[i].topics = calloc(2 * FILTER_SLOTS, sizeof(*l[i].topics));
            l[i].ready = l[i].topics + FILTER_SLOTS;
            ok = l[i].topics != NULL;
            pthread_mutex_init(&l[i].lock, NULL);
        }
        if (ok) {
            ps->nlocals = n;
            atomic_store_explicit(&ps->locals, l, memory_order_release);
        } else if (l != NULL) {
            for (int i = 0; i < n; i++) {
                free(l[i].topics);
                pthread_mutex_destroy(&l[i].lock);
            }
            free(l);
            l = NULL;
        }
    }
    pthread_mutex_unlock(&ps->init_lock);
    return l;
}

static uint64_t hash_topic(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a: topics are short, distribution is enough */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* ---- the filters ---- */

/* The two slots of a topic: the top bits of a multiplicative mix of its hash (FNV's low bits
 * differ little between topics that differ only in their last characters). */
static void filter_slots(uint64_t h, uint32_t slot[2]) {
    uint64_t x = h * 0x9E3779B97F4A7C15ull;
    slot[0] = (uint32_t)(x >> (64 - FILTER_BITS));
    slot[1] = (uint32_t)(x >> (64 - 2 * FILTER_BITS)) & (FILTER_SLOTS - 1);
}

/* Loop thread only: it is the one writer, so a relaxed load and store do. */
static void filter_add(_Atomic uint16_t *f, uint64_t h, int delta) {
    uint32_t slot[2];
    filter_slots(h, slot);
    for (int i = 0; i < 2; i++) {
        uint16_t v = atomic_load_explicit(&f[slot[i]], memory_order_relaxed);
        if (v == UINT16_MAX)
            continue; /* saturated: it stays, which can only make a false positive */
        atomic_store_explicit(&f[slot[i]], (uint16_t)(v + delta), memory_order_relaxed);
    }
}

static int filter_has(_Atomic uint16_t *f, uint64_t h) {
    uint32_t slot[2];
    filter_slots(h, slot);
    return atomic_load_explicit(&f[slot[0]], memory_order_relaxed) != 0 &&
           atomic_load_explicit(&f[slot[1]], memory_order_relaxed) != 0;
}

/* ---- topics (loop thread) ---- */

static topic_t *topic_find(local_t *l, const char *name, size_t len, uint64_t h) {
    if (l->nbuckets == 0)
        return NULL;
    for (topic_t *t = l->buckets[h & (l->nbuckets - 1)]; t; t = t->chain)
        if (t->hash == h && t->len == len && memcmp(t->name, name, len) == 0)
            return t;
    return NULL;
}

static int table_grow(local_t *l) {
    size_t n = l->nbuckets ? l->nbuckets * 2 : 16;
    topic_t **b = calloc(n, sizeof(*b));
    if (b == NULL)
        return CREST_ENOMEM;
    for (size_t i = 0; i < l->nbuckets; i++) {
        topic_t *t = l->buckets[i];
        while (t) {
            topic_t *chain = t->chain;
            t->chain = b[t->hash & (n - 1)];
            b[t->hash & (n - 1)] = t;
            t = chain;
        }
    }
    free(l->buckets);
    l->buckets = b;
    l->nbuckets = n;
    return 0;
}

static void topic_remove(local_t *l, topic_t *t) {
    topic_t **pp = &l->buckets[t->hash & (l->nbuckets - 1)];
    while (*pp != t)
        pp = &(*pp)->chain;
    *pp = t->chain;
    l->ntopics--;
    filter_add(l->topics, t->hash, -1);
    if (l->ps->bridge != NULL)
        l->ps->bridge->interest(l->ps->bridge, t->name, t->len, -1);
    free(t);
}

/* A reader of t appeared (+1) or went (-1): the ready filter counts topics with one. */
static void topic_ready(local_t *l, topic_t *t, int delta) {
    t->nready += (uint32_t)delta;
    if ((delta > 0 && t->nready == 1) || (delta < 0 && t->nready == 0))
        filter_add(l->ready, t->hash, delta);
}

static local_t *local_of(crest_pubsub_t *ps, crest_loop_t *loop) {
    local_t *locals = locals_get(ps);
    if (locals == NULL || loop->index >= ps->nlocals)
        return NULL;
    return &locals[loop->index];
}

int crest__ps_subscribe(crest_pubsub_t *ps, crest__psub_t *s, const char *name) {
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > UINT32_MAX)
        return CREST_EINVAL;
    local_t *l = local_of(ps, s->loop);
    if (l == NULL)
        return CREST_ENOMEM;
    uint64_t h = hash_topic(name, len);
    topic_t *t = topic_find(l, name, len, h);
    if (t != NULL) {
        for (psnode_t *n = s->nodes; n; n = n->sub_next)
            if (n->topic == t)
                return 0;
    } else {
        if (l->ntopics >= l->nbuckets && table_grow(l) != 0)
            return CREST_ENOMEM;
        t = malloc(sizeof(*t) + len + 1);
        if (t == NULL)
            return CREST_ENOMEM;
        t->subs = NULL;
        t->local = l;
        t->hash = h;
        t->len = (uint32_t)len;
        t->nsubs = t->nready = 0;
        t->walked = 0;
        memcpy(t->name, name, len + 1);
        t->chain = l->buckets[h & (l->nbuckets - 1)];
        l->buckets[h & (l->nbuckets - 1)] = t;
        l->ntopics++;
        filter_add(l->topics, h, 1);
        if (ps->bridge != NULL)
            ps->bridge->interest(ps->bridge, name, len, 1);
    }
    psnode_t *n = malloc(sizeof(*n));
    if (n == NULL) {
        if (t->nsubs == 0 && !t->walked)
            topic_remove(l, t);
        return CREST_ENOMEM;
    }
    n->topic = t;
    n->sub = s;
    n->prev = NULL;
    n->next = t->subs;
    if (t->subs)
        t->subs->prev = n;
    t->subs = n;
    n->sub_next = s->nodes;
    s->nodes = n;
    t->nsubs++;
    if (!s->slow)
        topic_ready(l, t, 1);
    return 0;
}

static void list_unlink(topic_t *t, psnode_t *n) {
    if (n->prev)
        n->prev->next = n->next;
    else
        t->subs = n->next;
    if (n->next)
        n->next->prev = n->prev;
}

static void node_unlink(psnode_t *n) {
    topic_t *t = n->topic;
    local_t *l = t->local;
    list_unlink(t, n);
    if (l->walk_node == n)
        l->walk_node = NULL; /* the walk delivers no more of its run to this node */
    t->nsubs--;
    if (!n->sub->slow)
        topic_ready(l, t, -1);
    if (t->nsubs == 0 && !t->walked)
        topic_remove(l, t);
    free(n);
}

int crest__ps_unsubscribe(crest_pubsub_t *ps, crest__psub_t *s, const char *name) {
    size_t len = name ? strlen(name) : 0;
    for (psnode_t **pp = &s->nodes; *pp; pp = &(*pp)->sub_next) {
        psnode_t *n = *pp;
        if (n->topic->local->ps == ps && n->topic->len == len &&
            memcmp(n->topic->name, name, len) == 0) {
            *pp = n->sub_next;
            node_unlink(n);
            return 0;
        }
    }
    return CREST_ENOENT;
}

void crest__ps_unsubscribe_all(crest__psub_t *s) {
    if (s->dirty) { /* closing in the middle of a slice: leave the dirty list */
        for (crest__psub_t **pp = &s->dirty_in->dirty; *pp; pp = &(*pp)->dirty_next)
            if (*pp == s) {
                *pp = s->dirty_next;
                break;
            }
        s->dirty = 0;
        s->dirty_in = NULL;
    }
    while (s->nodes) {
        psnode_t *n = s->nodes;
        s->nodes = n->sub_next;
        node_unlink(n);
    }
}

void crest__ps_mark_dirty(crest__psub_t *s) {
    local_t *l = delivering;
    if (s->dirty || l == NULL)
        return;
    s->dirty = 1;
    s->dirty_in = l;
    s->dirty_next = l->dirty;
    l->dirty = s;
}

void crest__ps_slow(crest__psub_t *s, int slow) {
    slow = slow != 0;
    if (s->slow == slow)
        return;
    s->slow = (uint8_t)slow;
    for (psnode_t *n = s->nodes; n; n = n->sub_next)
        topic_ready(n->topic->local, n->topic, slow ? -1 : 1);
}

/* ---- delivery (on the loop thread) ---- */

static int same_topic(const crest__psmsg_t *a, const crest__psmsg_t *b) {
    return a->hash == b->hash && a->topic_len == b->topic_len &&
           memcmp(a->topic, b->topic, a->topic_len) == 0;
}

/* The first `n` messages of l->cur are delivered: the loop's queue lets go of them. */
static void release_run(local_t *l, size_t n) {
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        crest__psmsg_t *m = l->cur;
        l->cur = m->next[l->index];
        bytes += m->size;
        unqueue(l->ps, m);
    }
    atomic_fetch_sub_explicit(&l->qcount, n, memory_order_relaxed);
    atomic_fetch_sub_explicit(&l->qbytes, bytes, memory_order_relaxed);
}

typedef struct {
    uint64_t start; /* uv_hrtime at the slice's start */
    uint64_t max_ns;
    uint32_t subs; /* subscribers handed messages in this slice */
    uint32_t max_subs;
    size_t bytes; /* queued on subscribers in this slice */
} budget_t;

static int budget_spent(budget_t *b) {
    /* Bytes count too: the slice's writes (at its end) copy what was queued into the kernel,
     * which for large messages to many fresh sockets costs far more than the deliveries. */
    if (b->subs >= b->max_subs || b->bytes >= SLICE_BYTES)
        return 1;
    /* The clock is read every eighth subscriber: a delivery costs well under a microsecond. */
    return (b->subs & 7) == 0 && b->subs > 0 && uv_hrtime() - b->start >= b->max_ns;
}

/* Deliver the run at l->cur (up to RUN_MAX consecutive messages of one topic) to the topic's
 * subscribers, from the cursor on. Returns 1 when the run is done, 0 when the slice's budget ran
 * out first (the cursor keeps the place). */
static int walk_run(local_t *l, budget_t *b) {
    crest__psmsg_t *m = l->cur;
    topic_t *t = l->cursor.topic;
    if (t == NULL) {
        size_t n = 1;
        for (crest__psmsg_t *x = m->next[l->index]; x && n < RUN_MAX && same_topic(m, x);
             x = x->next[l->index])
            n++;
        l->run_len = n;
        t = topic_find(l, m->topic, m->topic_len, m->hash);
        if (t == NULL) { /* a false positive, or the last subscriber left meanwhile */
            release_run(l, n);
            return 1;
        }
        /* The cursor starts at the head: subscribers that join during the walk come before it
         * and get the next messages, not these. */
        l->cursor.topic = t;
        l->cursor.prev = NULL;
        l->cursor.next = t->subs;
        if (t->subs)
            t->subs->prev = &l->cursor;
        t->subs = &l->cursor;
        t->walked = 1;
    }
    psnode_t *c = &l->cursor;
    psnode_t *n;
    while ((n = c->next) != NULL) {
        if (budget_spent(b))
            return 0;
        /* Step the cursor past n before delivering: whatever deliver closes, the cursor stays
         * in the list and its next is the node to visit after n. */
        list_unlink(t, c);
        c->prev = n;
        c->next = n->next;
        if (n->next)
            n->next->prev = c;
        n->next = c;
        crest__psub_t *s = n->sub;
        b->subs++;
        l->walk_node = n;
        crest__psmsg_t *x = m;
        for (size_t i = 0; i < l->run_len && l->walk_node == n; i++, x = x->next[l->index]) {
            if (s->deliver(s, x)) {
                l->delivered++;
                b->bytes += x->ws_len > x->sse_len ? x->ws_len : x->sse_len;
            } else
                l->dropped_now++;
        }
        l->walk_node = NULL;
    }
    list_unlink(t, c);
    c->topic = NULL;
    t->walked = 0;
    if (t->nsubs == 0)
        topic_remove(l, t);
    release_run(l, l->run_len);
    return 1;
}

static void on_deliver(crest_loop_t *loop, void *arg) {
    local_t *l = arg;
    budget_t b = {uv_hrtime(), (uint64_t)l->ps->opts.slice_us * 1000, 0,
                  l->ps->opts.slice_subscribers, 0};
    int more = 0;
    delivering = l;
    for (;;) {
        if (l->cur == NULL) {
            pthread_mutex_lock(&l->lock);
            l->cur = l->qhead;
            l->qhead = l->qtail = NULL;
            if (l->cur == NULL)
                l->posted = 0;
            pthread_mutex_unlock(&l->lock);
            if (l->cur == NULL)
                break;
        }
        if (!walk_run(l, &b)) {
            more = 1;
            break;
        }
    }
    /* One write per subscriber for the slice. A flush may close its subscriber, which then
     * leaves the list by itself (crest__ps_unsubscribe_all), and so may others it closes. */
    while (l->dirty) {
        crest__psub_t *s = l->dirty;
        l->dirty = s->dirty_next;
        s->dirty = 0;
        s->dirty_in = NULL;
        s->flush(s);
    }
    delivering = NULL;
    crest__count(&l->delivered_total, (int64_t)l->delivered);
    crest__count(&l->dropped, (int64_t)l->dropped_now);
    l->delivered = l->dropped_now = 0;
    /* Out of budget: the rest waits behind whatever else the loop has to do. `posted` stays
     * set, so publishers do not post again. If the loop is stopping, crest_pubsub_free frees
     * what is left. */
    if (more)
        crest_loop_post(loop, on_deliver, l);
}

/* ---- publishing (any thread) ---- */

/* Whether loop share l should be sent a message of topic hash h; counts the skip when its only
 * subscribers are slow. */
static int wants(local_t *l, uint64_t h) {
    if (filter_has(l->ready, h))
        return 1;
    if (filter_has(l->topics, h))
        atomic_fetch_add_explicit(&l->slow_skipped, 1, memory_order_relaxed);
    return 0;
}

/* A message's bytes, in the order they are laid out in its block. */
typedef struct {
    const void *ws_head; /* a frame header in front of ws, or NULL */
    size_t ws_head_len;
    const void *ws;
    size_t ws_len;
    const void *sse;
    size_t sse_len;
    const void *extra;
    size_t extra_len;
} parts_t;

/* Where a message of a topic goes on this instance. */
typedef struct {
    size_t tlen;
    uint64_t hash;
    local_t *locals;
    uint64_t want; /* the loops that may have a reader, as a bit set for the first 64 (the
                      others are asked again when queued) */
} aim_t;

/* Check the topic and count the message as published: 0, or CREST_EINVAL. */
static int aim_topic(crest_pubsub_t *ps, const char *topic, aim_t *a) {
    a->tlen = topic ? strlen(topic) : 0;
    if (a->tlen == 0 || a->tlen > UINT32_MAX)
        return CREST_EINVAL;
    atomic_fetch_add_explicit(&ps->published, 1, memory_order_relaxed);
    return 0;
}

/* The loops that may have a reader of the topic: 1 when there is one, 0 when none (nothing to
 * encode: the hub is not running yet, nobody ever subscribed, or nobody reads the topic). */
static int aim_loops(crest_pubsub_t *ps, const char *topic, aim_t *a) {
    a->locals = atomic_load_explicit(&ps->locals, memory_order_acquire);
    if (a->locals == NULL)
        return 0;
    a->hash = hash_topic(topic, a->tlen);
    a->want = 0;
    int any = 0;
    for (int i = 0; i < ps->nlocals; i++)
        if (wants(&a->locals[i], a->hash)) {
            any = 1;
            if (i < 64)
                a->want |= 1ull << i;
        }
    return any;
}

/* Make the one block of a message and hand it to every loop it is aimed at. */
static int publish_block(crest_pubsub_t *ps, const aim_t *a, const char *topic, const parts_t *pt) {
    local_t *locals = a->locals;
    uint64_t want = a->want, h = a->hash;
    size_t tlen = a->tlen;
    size_t links = (size_t)ps->nlocals * sizeof(crest__psmsg_t *);
    size_t size = sizeof(crest__psmsg_t) + links + tlen + 1 + pt->ws_head_len + pt->ws_len +
                  pt->sse_len + pt->extra_len;
    /* The block is charged once, for its whole life, however many queues and sockets share it. */
    if (crest__mem_take(ps->rt, size) != 0)
        return CREST_ENOBUFS;
    crest__psmsg_t *m = malloc(size);
    if (m == NULL) {
        crest__mem_give(ps->rt, NULL, size);
        return CREST_ENOMEM;
    }
    m->rt = ps->rt;
    char *p = (char *)m + sizeof(*m) + links;
    atomic_init(&m->refs, 1);   /* the publisher's, dropped at the end */
    atomic_init(&m->queued, 1); /* idem: the bytes count as queued while it is handed out */
    atomic_fetch_add_explicit(&ps->queued_bytes, size, memory_order_relaxed);
    m->size = size;
    m->topic = p;
    m->topic_len = (uint32_t)tlen;
    m->hash = h;
    memcpy(p, topic, tlen + 1);
    p += tlen + 1;
    m->ws = (const uint8_t *)p;
    m->ws_len = pt->ws_head_len + pt->ws_len;
    if (pt->ws_head_len)
        memcpy(p, pt->ws_head, pt->ws_head_len);
    if (pt->ws_len)
        memcpy(p + pt->ws_head_len, pt->ws, pt->ws_len);
    p += m->ws_len;
    m->sse = (const uint8_t *)p;
    m->sse_len = pt->sse_len;
    if (pt->sse_len)
        memcpy(p, pt->sse, pt->sse_len);
    p += pt->sse_len;
    m->extra = (const uint8_t *)p;
    m->extra_len = pt->extra_len;
    if (pt->extra_len)
        memcpy(p, pt->extra, pt->extra_len);

    const crest_pubsub_opts_t *o = &ps->opts;
    for (int i = 0; i < ps->nlocals; i++) {
        local_t *l = &locals[i];
        if (i < 64 ? !(want & (1ull << i)) : !filter_has(l->ready, h))
            continue;
        m->next[i] = NULL;
        pthread_mutex_lock(&l->lock);
        /* The limit counts what the loop has not finished delivering, not only what waits in
         * the queue: a loop in the middle of a huge broadcast holds all of it. */
        if (atomic_load_explicit(&l->qcount, memory_order_relaxed) >= o->queue_max_messages ||
            atomic_load_explicit(&l->qbytes, memory_order_relaxed) + size > o->queue_max_bytes) {
            pthread_mutex_unlock(&l->lock);
            atomic_fetch_add_explicit(&l->queue_dropped, 1, memory_order_relaxed);
            continue;
        }
        crest__psmsg_ref(m);
        atomic_fetch_add_explicit(&m->queued, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&l->qcount, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&l->qbytes, size, memory_order_relaxed);
        if (l->qtail)
            l->qtail->next[i] = m;
        else
            l->qhead = m;
        l->qtail = m;
        int post = !l->posted;
        l->posted = 1;
        pthread_mutex_unlock(&l->lock);
        /* A loop that has stopped keeps the message queued; crest_pubsub_free frees it. */
        if (post && crest_loop_post(l->loop, on_deliver, l) != 0) {
            pthread_mutex_lock(&l->lock);
            l->posted = 0;
            pthread_mutex_unlock(&l->lock);
        }
    }
    unqueue(ps, m);
    return 0;
}

static int publish(crest_pubsub_t *ps, const char *topic, const char *event, const char *id,
                   const void *data, size_t len, int binary, int local_only) {
    aim_t a;
    if (aim_topic(ps, topic, &a) != 0)
        return CREST_EINVAL;
    /* Other instances first: they may have subscribers when this one has none. */
    if (ps->bridge != NULL && !local_only)
        ps->bridge->publish(ps->bridge, topic, a.tlen, event, id, data, len, binary);
    if (!aim_loops(ps, topic, &a))
        return 0; /* encoded for nobody */

    /* Both encodings in one block: the SSE event is small next to the saved copies. */
    char sse_mem[512];
    crest_buf_t sse = CREST_BUF_ON(sse_mem);
    if (!binary)
        crest__sse_encode(&sse, event ? event : "message", id, data, len);
    if (sse.err) {
        crest_buf_free(&sse);
        return CREST_ENOMEM;
    }
    uint8_t hdr[CREST__WS_MAX_HEADER];
    size_t hlen =
        crest__ws_header(hdr, binary ? CREST__WS_BINARY : CREST__WS_TEXT, 1, 0, len, NULL);
    parts_t pt = {hdr, hlen, data, len, sse.ptr, sse.len, NULL, 0};
    int rc = publish_block(ps, &a, topic, &pt);
    crest_buf_free(&sse);
    return rc;
}

int crest__ps_publish_raw(crest_pubsub_t *ps, const char *topic, const void *ws, size_t ws_len,
                          const void *extra, size_t extra_len) {
    aim_t a;
    if (aim_topic(ps, topic, &a) != 0)
        return CREST_EINVAL;
    if (!aim_loops(ps, topic, &a))
        return 0;
    parts_t pt = {NULL, 0, ws, ws_len, NULL, 0, extra, extra_len};
    return publish_block(ps, &a, topic, &pt);
}

int crest_pubsub_publish(crest_pubsub_t *ps, const char *topic, const void *data, size_t len,
                         int binary) {
    return publish(ps, topic, NULL, NULL, data, len, binary, 0);
}

int crest_pubsub_publish_event(crest_pubsub_t *ps, const char *topic, const char *event,
                               const char *id, const void *data, size_t len) {
    return publish(ps, topic, event, id, data, len, 0, 0);
}

int crest__ps_publish_local(crest_pubsub_t *ps, const char *topic, const char *event,
                            const char *id, const void *data, size_t len, int binary) {
    return publish(ps, topic, event, id, data, len, binary, 1);
}

static uint64_t sum(const crest_pubsub_t *ps, size_t field) {
    local_t *locals = atomic_load_explicit(&((crest_pubsub_t *)ps)->locals, memory_order_acquire);
    uint64_t n = 0;
    for (int i = 0; locals && i < ps->nlocals; i++)
        n += atomic_load_explicit((_Atomic uint64_t *)((char *)&locals[i] + field),
                                  memory_order_relaxed);
    return n;
}

uint64_t crest_pubsub_published(const crest_pubsub_t *ps) {
    return atomic_load_explicit(&((crest_pubsub_t *)ps)->published, memory_order_relaxed);
}

uint64_t crest_pubsub_delivered(const crest_pubsub_t *ps) {
    return sum(ps, offsetof(local_t, delivered_total));
}

uint64_t crest_pubsub_dropped(const crest_pubsub_t *ps) {
    return sum(ps, offsetof(local_t, dropped));
}

size_t crest_pubsub_queued_bytes(const crest_pubsub_t *ps) {
    return (size_t)atomic_load_explicit(&((crest_pubsub_t *)ps)->queued_bytes,
                                        memory_order_relaxed);
}

void crest_pubsub_stats(const crest_pubsub_t *ps, crest_pubsub_stats_t *out) {
    out->published = crest_pubsub_published(ps);
    out->delivered = crest_pubsub_delivered(ps);
    out->dropped = crest_pubsub_dropped(ps);
    out->queue_dropped = sum(ps, offsetof(local_t, queue_dropped));
    out->slow_skipped = sum(ps, offsetof(local_t, slow_skipped));
    out->queued_messages = sum(ps, offsetof(local_t, qcount));
    out->queued_bytes = crest_pubsub_queued_bytes(ps);
    out->redis_up = out->redis_sent = out->redis_received = 0;
    out->redis_dropped = out->redis_refused = out->redis_reconnects = 0;
    out->redis_queued_bytes = 0;
    if (ps->bridge != NULL)
        ps->bridge->stats(ps->bridge, out);
}

/* The hub's and its bridge's lines of crest_app_metrics (a source registered with the app). */
static void write_metrics(const crest_app_t *app, void *arg, crest_buf_t *b) {
    (void)app;
    const crest_pubsub_t *ps = arg;
    crest_pubsub_stats_t s;
    crest_pubsub_stats(ps, &s);
    struct {
        const char *name, *type, *help;
        uint64_t v;
    } g[] = {
        {"crest_pubsub_published_total", "counter",
         "Messages published to chat rooms and event streams.", s.published},
        {"crest_pubsub_delivered_total", "counter",
         "Published messages queued to a WebSocket or an event stream.", s.delivered},
        {"crest_pubsub_dropped_total", "counter", "Deliveries dropped for slow consumers.",
         s.dropped},
        {"crest_pubsub_queue_dropped_total", "counter",
         "Messages dropped for a loop thread whose pub/sub queue was full.", s.queue_dropped},
        {"crest_pubsub_slow_skipped_total", "counter",
         "Messages not sent to a loop thread whose subscribers of the topic were all slow "
         "consumers.",
         s.slow_skipped},
        {"crest_pubsub_queued_messages", "gauge", "Messages waiting for loop threads.",
         s.queued_messages},
        {"crest_pubsub_queued_bytes", "gauge", "Bytes of the messages waiting for loop threads.",
         s.queued_bytes},
        {"crest_redis_up", "gauge",
         "1 while the Redis bridge is connected, 0 while it is down (or not configured).",
         s.redis_up},
        {"crest_redis_sent_total", "counter", "Messages published to Redis.", s.redis_sent},
        {"crest_redis_received_total", "counter", "Messages from other instances delivered here.",
         s.redis_received},
        {"crest_redis_dropped_total", "counter",
         "Messages not carried to other instances: Redis down, or the queue to it full.",
         s.redis_dropped},
        {"crest_redis_refused_total", "counter", "Messages from Redis over the size limit.",
         s.redis_refused},
        {"crest_redis_reconnects_total", "counter", "Connections to Redis made again.",
         s.redis_reconnects},
        {"crest_redis_queued_bytes", "gauge", "Bytes waiting to be written to Redis.",
         s.redis_queued_bytes},
    };
    for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++)
        crest_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", g[i].name, g[i].help,
                         g[i].name, g[i].type, g[i].name, (unsigned long long)g[i].v);
}
