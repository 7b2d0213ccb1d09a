/* Topics and cross-thread fan-out.
 *
 * Each loop thread keeps its own table of topics and their local subscribers; only that thread
 * touches it, so subscribing and delivering take no lock. A publisher (any thread) encodes the
 * message once, appends it to the queue of every loop that has subscribers (a short mutex) and
 * posts one inbox message to a loop whose queue was empty. The loop drains the whole queue in one
 * go: every message goes to every local subscriber as a borrowed segment of the same bytes, and
 * each subscriber is written once at the end, so a burst of messages costs one write per socket,
 * not one per message. */
#include <stdlib.h>
#include <string.h>

#include "pubsub/pubsub.h"
#include "sse/encode.h"
#include "ws/frame.h"

/* A subscription: a subscriber in a topic's list. */
typedef struct crest__psnode_s {
    struct topic_s *topic;
    crest__psub_t *sub;
    struct crest__psnode_s *prev; /* in the topic's list */
    struct crest__psnode_s *next;
    struct crest__psnode_s *sub_next; /* in the subscriber's list */
    struct local_s *local;
} psnode_t;

typedef struct topic_s {
    struct topic_s *chain; /* hash bucket */
    psnode_t *subs;
    uint64_t hash;
    size_t len;
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
    int posted;             /* guarded by lock: an inbox message is on its way */
    _Atomic uint64_t nsubs; /* subscriptions on this loop; publishers skip loops with none */
    /* Loop thread only. */
    topic_t **buckets;
    size_t nbuckets;
    size_t ntopics;
    crest__psub_t *dirty;
    _Atomic uint64_t delivered;
    _Atomic uint64_t dropped;
} local_t;

struct crest_pubsub_s {
    crest_app_t *app;
    pthread_mutex_t init_lock;
    _Atomic(local_t *) locals; /* one per loop thread, made when the first loop subscribes */
    int nlocals;
    _Atomic uint64_t published;
};

crest_pubsub_t *crest_pubsub_new(crest_app_t *app) {
    crest_pubsub_t *ps = calloc(1, sizeof(*ps));
    if (ps == NULL)
        return NULL;
    ps->app = app;
    pthread_mutex_init(&ps->init_lock, NULL);
    return ps;
}

void crest__psmsg_ref(crest__psmsg_t *m) {
    atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void crest__psmsg_unref(void *arg) {
    crest__psmsg_t *m = arg;
    /* acq_rel: every thread's last use of the bytes happens before the free. (A release
     * decrement plus an acquire fence would do, but ThreadSanitizer does not model fences.) */
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
        free(m);
}

void crest_pubsub_free(crest_pubsub_t *ps) {
    if (ps == NULL)
        return;
    local_t *locals = atomic_load(&ps->locals);
    for (int i = 0; locals && i < ps->nlocals; i++) {
        local_t *l = &locals[i];
        /* Messages that reached a loop after it stopped were never delivered. */
        crest__psmsg_t *m = l->qhead;
        while (m != NULL) {
            crest__psmsg_t *next = m->next[i];
            crest__psmsg_unref(m);
            m = next;
        }
        for (size_t b = 0; b < l->nbuckets; b++) {
            topic_t *t = l->buckets[b];
            while (t != NULL) { /* only when subscribers outlived their loop: free the nodes */
                topic_t *chain = t->chain;
                psnode_t *n = t->subs;
                while (n != NULL) {
                    psnode_t *nx = n->next;
                    free(n);
                    n = nx;
                }
                free(t);
                t = chain;
            }
        }
        free(l->buckets);
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
    if (l == NULL && ps->app->loops != NULL) {
        int n = crest_app_threads(ps->app);
        l = calloc((size_t)n, sizeof(*l));
        if (l != NULL) {
            for (int i = 0; i < n; i++) {
                l[i].ps = ps;
                l[i].loop = &ps->app->loops[i];
                l[i].index = i;
                pthread_mutex_init(&l[i].lock, NULL);
            }
            ps->nlocals = n;
            atomic_store_explicit(&ps->locals, l, memory_order_release);
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
    free(t);
}

static local_t *local_of(crest_pubsub_t *ps, crest_loop_t *loop) {
    local_t *locals = locals_get(ps);
    if (locals == NULL || loop->index >= ps->nlocals)
        return NULL;
    return &locals[loop->index];
}

int crest__ps_subscribe(crest_pubsub_t *ps, crest__psub_t *s, const char *name) {
    size_t len = name ? strlen(name) : 0;
    if (len == 0)
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
        t->hash = h;
        t->len = len;
        memcpy(t->name, name, len + 1);
        t->chain = l->buckets[h & (l->nbuckets - 1)];
        l->buckets[h & (l->nbuckets - 1)] = t;
        l->ntopics++;
    }
    psnode_t *n = malloc(sizeof(*n));
    if (n == NULL) {
        if (t->subs == NULL)
            topic_remove(l, t);
        return CREST_ENOMEM;
    }
    n->topic = t;
    n->sub = s;
    n->local = l;
    n->prev = NULL;
    n->next = t->subs;
    if (t->subs)
        t->subs->prev = n;
    t->subs = n;
    n->sub_next = s->nodes;
    s->nodes = n;
    crest__count(&l->nsubs, 1);
    return 0;
}

static void node_unlink(psnode_t *n) {
    topic_t *t = n->topic;
    local_t *l = n->local;
    if (n->prev)
        n->prev->next = n->next;
    else
        t->subs = n->next;
    if (n->next)
        n->next->prev = n->prev;
    crest__count(&l->nsubs, -1);
    if (t->subs == NULL)
        topic_remove(l, t);
    free(n);
}

int crest__ps_unsubscribe(crest_pubsub_t *ps, crest__psub_t *s, const char *name) {
    size_t len = name ? strlen(name) : 0;
    for (psnode_t **pp = &s->nodes; *pp; pp = &(*pp)->sub_next) {
        psnode_t *n = *pp;
        if (n->local->ps == ps && n->topic->len == len && memcmp(n->topic->name, name, len) == 0) {
            *pp = n->sub_next;
            node_unlink(n);
            return 0;
        }
    }
    return CREST_ENOENT;
}

void crest__ps_unsubscribe_all(crest__psub_t *s) {
    while (s->nodes) {
        psnode_t *n = s->nodes;
        s->nodes = n->sub_next;
        local_t *l = n->local;
        if (s->dirty) { /* closing in the middle of a batch: leave the dirty list */
            for (crest__psub_t **pp = &l->dirty; *pp; pp = &(*pp)->dirty_next)
                if (*pp == s) {
                    *pp = s->dirty_next;
                    break;
                }
            s->dirty = 0;
        }
        node_unlink(n);
    }
}

void crest__ps_mark_dirty(crest__psub_t *s) {
    if (s->dirty || s->nodes == NULL)
        return;
    s->dirty = 1;
    local_t *l = s->nodes->local;
    s->dirty_next = l->dirty;
    l->dirty = s;
}

/* ---- delivery (on the loop thread) ---- */

static void on_deliver(crest_loop_t *loop, void *arg) {
    (void)loop;
    local_t *l = arg;
    pthread_mutex_lock(&l->lock);
    crest__psmsg_t *m = l->qhead;
    l->qhead = l->qtail = NULL;
    l->posted = 0;
    pthread_mutex_unlock(&l->lock);
    uint64_t delivered = 0, dropped = 0;
    while (m != NULL) {
        crest__psmsg_t *next = m->next[l->index];
        topic_t *t = topic_find(l, m->topic, m->topic_len, m->hash);
        psnode_t *nx;
        for (psnode_t *n = t ? t->subs : NULL; n; n = nx) {
            nx = n->next; /* deliver may close its own subscriber, which frees n */
            if (n->sub->deliver(n->sub, m))
                delivered++;
            else
                dropped++;
        }
        crest__psmsg_unref(m);
        m = next;
    }
    /* One write per subscriber for the whole batch. A flush may close its subscriber, which then
     * leaves the list by itself (crest__ps_unsubscribe_all). */
    while (l->dirty) {
        crest__psub_t *s = l->dirty;
        l->dirty = s->dirty_next;
        s->dirty = 0;
        s->flush(s);
    }
    crest__count(&l->delivered, (int64_t)delivered);
    crest__count(&l->dropped, (int64_t)dropped);
}

/* ---- publishing (any thread) ---- */

static int publish(crest_pubsub_t *ps, const char *topic, const char *event, const char *id,
                   const void *data, size_t len, int binary) {
    size_t tlen = topic ? strlen(topic) : 0;
    if (tlen == 0 || tlen > UINT32_MAX)
        return CREST_EINVAL;
    atomic_fetch_add_explicit(&ps->published, 1, memory_order_relaxed);
    local_t *locals = atomic_load_explicit(&ps->locals, memory_order_acquire);
    if (locals == NULL)
        return 0; /* not running yet, or nobody ever subscribed */
    int any = 0;
    for (int i = 0; i < ps->nlocals && !any; i++)
        any = atomic_load_explicit(&locals[i].nsubs, memory_order_relaxed) != 0;
    if (!any)
        return 0;

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
    size_t links = (size_t)ps->nlocals * sizeof(crest__psmsg_t *);
    size_t size = sizeof(crest__psmsg_t) + links + tlen + 1 + hlen + len + sse.len;
    crest__psmsg_t *m = malloc(size);
    if (m == NULL) {
        crest_buf_free(&sse);
        return CREST_ENOMEM;
    }
    char *p = (char *)m + sizeof(*m) + links;
    atomic_init(&m->refs, 1); /* the publisher's, dropped at the end */
    m->topic = p;
    m->topic_len = (uint32_t)tlen;
    m->hash = hash_topic(topic, tlen);
    memcpy(p, topic, tlen + 1);
    p += tlen + 1;
    m->ws = (const uint8_t *)p;
    m->ws_len = hlen + len;
    memcpy(p, hdr, hlen);
    if (len)
        memcpy(p + hlen, data, len);
    p += hlen + len;
    m->sse = (const uint8_t *)p;
    m->sse_len = sse.len;
    if (sse.len)
        memcpy(p, sse.ptr, sse.len);
    crest_buf_free(&sse);

    for (int i = 0; i < ps->nlocals; i++) {
        local_t *l = &locals[i];
        if (atomic_load_explicit(&l->nsubs, memory_order_relaxed) == 0)
            continue;
        crest__psmsg_ref(m);
        m->next[i] = NULL;
        pthread_mutex_lock(&l->lock);
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
    crest__psmsg_unref(m);
    return 0;
}

int crest_pubsub_publish(crest_pubsub_t *ps, const char *topic, const void *data, size_t len,
                         int binary) {
    return publish(ps, topic, NULL, NULL, data, len, binary);
}

int crest_pubsub_publish_event(crest_pubsub_t *ps, const char *topic, const char *event,
                               const char *id, const void *data, size_t len) {
    return publish(ps, topic, event, id, data, len, 0);
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
    return sum(ps, offsetof(local_t, delivered));
}

uint64_t crest_pubsub_dropped(const crest_pubsub_t *ps) {
    return sum(ps, offsetof(local_t, dropped));
}
