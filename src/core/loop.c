#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* The inbox is a mutex-guarded list drained on a uv_async_t wake-up. Posting is rare next to
 * request handling (job completions, shutdown, cross-thread publish), and uv_async_send already
 * coalesces wake-ups, so a lock held for two pointer stores costs nothing measurable. */

void crest__count(_Atomic uint64_t *c, int64_t delta) {
    /* One writer per counter: a relaxed load and store avoid a locked read-modify-write on the
     * request path while readers on other threads still see whole values. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + (uint64_t)delta,
                          memory_order_relaxed);
}

static void on_inbox(uv_async_t *a) {
    crest_loop_t *loop = CREST__CONTAINER_OF(a, crest_loop_t, inbox_async);
    pthread_mutex_lock(&loop->inbox_lock);
    crest__msg_t *m = loop->inbox_head;
    loop->inbox_head = loop->inbox_tail = NULL;
    pthread_mutex_unlock(&loop->inbox_lock);
    while (m != NULL) {
        crest__msg_t *next = m->next;
        /* A borrowed message may be freed by its callback: decide before calling it. */
        crest__msg_t *own = m->borrowed ? NULL : m;
        m->cb(loop, m->arg);
        free(own);
        m = next;
    }
}

int crest_loop_post(crest_loop_t *loop, crest_loop_cb cb, void *arg) {
    crest__msg_t *m = malloc(sizeof(*m));
    if (m == NULL)
        return CREST_ENOMEM;
    m->cb = cb;
    m->arg = arg;
    m->borrowed = 0;
    int rc = crest__loop_post_msg(loop, m);
    if (rc != 0)
        free(m);
    return rc;
}

int crest__loop_post_msg(crest_loop_t *loop, crest__msg_t *m) {
    m->next = NULL;
    pthread_mutex_lock(&loop->inbox_lock);
    if (loop->inbox_closed) {
        pthread_mutex_unlock(&loop->inbox_lock);
        return CREST_ECANCELED;
    }
    if (loop->inbox_tail)
        loop->inbox_tail->next = m;
    else
        loop->inbox_head = m;
    loop->inbox_tail = m;
    /* Sent under the lock so that the loop cannot close the async handle in between. */
    uv_async_send(&loop->inbox_async);
    pthread_mutex_unlock(&loop->inbox_lock);
    return 0;
}

/* A pending timer (crest_loop_after, crest_loop_timer); listed on its loop so that a forced stop
 * can run it, and hashed by id so that crest_loop_cancel finds it in O(1). Owner: its loop until
 * it fires or is cancelled; its memory goes in the uv_close callback. */
struct crest__after_s {
    uv_timer_t timer;
    crest_loop_t *loop;
    crest_loop_cb cb;
    void *arg;
    uint64_t id;
    crest__after_t *next; /* loop->afters */
    crest__after_t *prev;
    crest__after_t *hnext; /* loop->timer_buckets[id & mask] */
};

static void after_on_close(uv_handle_t *h) {
    free(CREST__CONTAINER_OF(h, crest__after_t, timer));
}

/* The bucket list that holds (or would hold) `id`. */
static crest__after_t **bucket_of(crest_loop_t *loop, uint64_t id) {
    return &loop->timer_buckets[id & (loop->timer_nbuckets - 1)];
}

/* Ids grow by one, so the low bits spread them evenly over a power-of-two table; it doubles
 * when the timers outnumber the buckets, which keeps chains about one long. A failed growth
 * only makes chains longer. */
static int hash_add(crest_loop_t *loop, crest__after_t *a) {
    if (loop->timer_count >= loop->timer_nbuckets) {
        size_t n = loop->timer_nbuckets ? loop->timer_nbuckets * 2 : 16;
        crest__after_t **b = calloc(n, sizeof(*b));
        if (b == NULL && loop->timer_nbuckets == 0)
            return CREST_ENOMEM;
        if (b != NULL) {
            for (size_t i = 0; i < loop->timer_nbuckets; i++) {
                for (crest__after_t *t = loop->timer_buckets[i], *next; t != NULL; t = next) {
                    next = t->hnext;
                    t->hnext = b[t->id & (n - 1)];
                    b[t->id & (n - 1)] = t;
                }
            }
            free(loop->timer_buckets);
            loop->timer_buckets = b;
            loop->timer_nbuckets = n;
        }
    }
    crest__after_t **head = bucket_of(loop, a->id);
    a->hnext = *head;
    *head = a;
    loop->timer_count++;
    return 0;
}

static crest__after_t *hash_take(crest_loop_t *loop, uint64_t id) {
    if (loop->timer_nbuckets == 0)
        return NULL;
    for (crest__after_t **p = bucket_of(loop, id); *p != NULL; p = &(*p)->hnext) {
        if ((*p)->id == id) {
            crest__after_t *a = *p;
            *p = a->hnext;
            loop->timer_count--;
            return a;
        }
    }
    return NULL;
}

/* Take `a` (already off the hash table) off the loop's list and close its handle: it will not
 * fire (again). */
static void after_remove(crest_loop_t *loop, crest__after_t *a) {
    if (a->prev)
        a->prev->next = a->next;
    else
        loop->afters = a->next;
    if (a->next)
        a->next->prev = a->prev;
    uv_timer_stop(&a->timer);
    uv_close((uv_handle_t *)&a->timer, after_on_close);
}

static void after_on_timer(uv_timer_t *t) {
    crest__after_t *a = CREST__CONTAINER_OF(t, crest__after_t, timer);
    crest_loop_t *loop = a->loop;
    /* Removed before the call: a cancel from inside it (of itself) finds nothing, and the
     * callback may add timers that reuse nothing of this one. The memory stays until the close
     * callback, after this returns. */
    hash_take(loop, a->id);
    after_remove(loop, a);
    a->cb(loop, a->arg);
    crest__loop_maybe_finish(loop);
}

void crest__loop_fire_timers(crest_loop_t *loop) {
    /* Callbacks may add timers; those run in the next round. Bounded so that a callback that
     * always re-arms cannot keep a stopping loop alive. */
    for (int round = 0; round < 16 && loop->afters != NULL; round++) {
        while (loop->afters != NULL)
            after_on_timer(&loop->afters->timer);
    }
}

uint64_t crest_loop_timer(crest_loop_t *loop, uint64_t ms, crest_loop_cb cb, void *arg) {
    crest__after_t *a = malloc(sizeof(*a));
    if (a == NULL)
        return 0;
    a->loop = loop;
    a->cb = cb;
    a->arg = arg;
    a->id = ++loop->timer_next_id; /* 64 bits: never wraps to 0 in practice */
    if (hash_add(loop, a) != 0) {
        free(a);
        return 0;
    }
    a->prev = NULL;
    a->next = loop->afters;
    if (a->next)
        a->next->prev = a;
    loop->afters = a;
    uv_timer_init(&loop->uv, &a->timer);
    uv_timer_start(&a->timer, after_on_timer, ms, 0);
    return a->id;
}

int crest_loop_after(crest_loop_t *loop, uint64_t ms, crest_loop_cb cb, void *arg) {
    return crest_loop_timer(loop, ms, cb, arg) != 0 ? 0 : CREST_ENOMEM;
}

int crest_loop_cancel(crest_loop_t *loop, uint64_t id) {
    crest__after_t *a = hash_take(loop, id);
    if (a == NULL)
        return CREST_ENOENT;
    after_remove(loop, a);
    /* A draining loop may have waited only for this timer. */
    crest__loop_maybe_finish(loop);
    return 0;
}

void crest__loop_ext_add(crest_loop_t *loop, crest__loop_ext_t *ext) {
    ext->next = loop->exts;
    loop->exts = ext;
}

crest__loop_ext_t *crest__loop_ext_find(const crest_loop_t *loop, const void *owner) {
    for (crest__loop_ext_t *e = loop->exts; e != NULL; e = e->next)
        if (e->owner == owner)
            return e;
    return NULL;
}

static void finish_exts(crest_loop_t *loop) {
    while (loop->exts != NULL) {
        crest__loop_ext_t *e = loop->exts;
        loop->exts = e->next;
        e->finish(e, loop);
    }
}

void crest__loop_maybe_finish(crest_loop_t *loop) {
    if (!loop->draining || loop->finished || loop->afters != NULL ||
        atomic_load_explicit(&loop->open_conns, memory_order_relaxed) != 0)
        return;
    loop->finished = 1;
    /* Before the inbox closes: an extension may still wait for messages to it. */
    finish_exts(loop);
    pthread_mutex_lock(&loop->inbox_lock);
    loop->inbox_closed = 1;
    pthread_mutex_unlock(&loop->inbox_lock);
    /* A message posted before the close was promised to run (crest_loop_post returned 0), but
     * the async handle's callback will not fire once it is closing: deliver those now. */
    on_inbox(&loop->inbox_async);
    /* With these closed nothing of ours keeps the loop alive; uv_run returns. */
    uv_close((uv_handle_t *)&loop->inbox_async, NULL);
    uv_close((uv_handle_t *)&loop->shutdown_timer, NULL);
    crest__wheel_close(&loop->wheel);
}

int crest_loop_index(const crest_loop_t *loop) {
    return loop->index;
}

int crest__loop_init(crest_loop_t *loop, crest__rt_t *rt, int index) {
    memset(loop, 0, sizeof(*loop));
    loop->rt = rt;
    loop->index = index;
    loop->listen_fd = -1;
    loop->spare_fd = -1;
    int rc = uv_loop_init(&loop->uv);
    if (rc)
        return rc;
    loop->uv.data = loop;
    pthread_mutex_init(&loop->inbox_lock, NULL);
    uv_async_init(&loop->uv, &loop->inbox_async, on_inbox);
    crest__wheel_init(&loop->wheel, &loop->uv);
    uv_timer_init(&loop->uv, &loop->shutdown_timer);
    return 0;
}

static void close_any(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

void crest__loop_run(crest_loop_t *loop) {
    uv_run(&loop->uv, UV_RUN_DEFAULT);
    loop->finished = 1;
    finish_exts(loop); /* normally done when the loop finished; not if it never drained */
    /* Whatever is left (only after a forced stop) is closed so that the loop can be freed. */
    uv_walk(&loop->uv, close_any, NULL);
    uv_run(&loop->uv, UV_RUN_DEFAULT);
}

void crest__loop_dispose(crest_loop_t *loop) {
    pthread_mutex_lock(&loop->inbox_lock);
    loop->inbox_closed = 1;
    crest__msg_t *m = loop->inbox_head;
    loop->inbox_head = loop->inbox_tail = NULL;
    pthread_mutex_unlock(&loop->inbox_lock);
    while (m != NULL) { /* posted after the loop stopped: never run, as documented */
        crest__msg_t *next = m->next;
        if (!m->borrowed)
            free(m);
        m = next;
    }
    uv_walk(&loop->uv, close_any, NULL);
    uv_run(&loop->uv, UV_RUN_DEFAULT);
    uv_loop_close(&loop->uv);
    free(loop->timer_buckets);
    loop->timer_buckets = NULL;
    pthread_mutex_destroy(&loop->inbox_lock);
}
