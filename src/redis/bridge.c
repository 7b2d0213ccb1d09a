/* The Redis bridge (crest/pubsub.h): a hub's topics carried between instances through Redis
 * pub/sub.
 *
 * One thread of its own runs a libuv loop with two connections to Redis: one in subscriber mode
 * (SUBSCRIBE/UNSUBSCRIBE, then only messages come), one for PUBLISH (a connection in subscriber
 * mode cannot publish). Loop threads and publishers talk to it through two mutex-guarded queues
 * and a uv_async_t: interest changes (a loop's first subscriber of a topic, its last leaving) and
 * messages to publish. The bridge keeps, per topic, how many loop threads have subscribers; it
 * subscribes in Redis when that goes from 0 to 1 and unsubscribes when it goes back to 0.
 *
 * Exactly once. A message goes to Redis once, with a header naming the instance (a random 64-bit
 * id) that published it; an instance delivers a message from Redis only if another instance
 * published it (its own subscribers had it at publish time). Redis delivers each message once
 * per subscribed connection, and a connection is subscribed to a channel or not (SUBSCRIBE twice
 * is one subscription), so a reconnect, which makes new connections and subscribes again, can
 * neither lose a subscription nor double one. What is published while Redis is away is dropped
 * and counted, never queued for later, so it cannot arrive twice either.
 *
 * Order. One publishing thread's messages enter the queue in order, go out on one connection in
 * order, and Redis hands them to every subscriber connection in order; the receiving bridge
 * delivers them in order through the hub.
 *
 * Bounds. The queue to Redis holds at most max_queue_messages / max_queue_bytes, and what libuv
 * has not written yet counts in it; beyond, messages are dropped and counted. From Redis, the
 * RESP reader (src/codec/resp.c) skips a payload over max_message as it streams past. */
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/uio.h>

#include "codec/resp.h"
#include "pubsub/pubsub.h"

#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 2000
#define READ_SIZE 65536
/* The header of a message in Redis: magic, instance id, kind, event length, id length. */
#define MAGIC0 'c'
#define MAGIC1 '1'
#define HEADER 15
#define NO_ID 0xffff

typedef struct item_s {
    struct item_s *next;
    int delta;  /* interest items: +1 / -1 */
    size_t len; /* publish items: the RESP command's bytes; interest items: the topic's */
    char data[];
} item_t;

typedef struct topic_s {
    struct topic_s *next;
    int loops; /* loop threads with subscribers of it */
    size_t len;
    char name[];
} btopic_t;

/* A pattern subscription of another format's messages (src/sio's cluster adapter). Listed under
 * the lock; cb and arg never change. */
typedef struct pat_s {
    struct pat_s *next;
    void (*cb)(void *arg, const char *channel, size_t channel_len, const char *payload, size_t len);
    void *arg;
    int sent; /* bridge thread: PSUBSCRIBE went out on the current connection */
    size_t len;
    char name[];
} pat_t;

typedef struct bridge_s bridge_t;

typedef struct {
    uv_tcp_t tcp;
    bridge_t *b;
    crest__resp_t reader;
    int open;      /* the handle is initialised and not closed yet */
    int connected; /* connect succeeded */
    int ready;     /* connected, and AUTH accepted when there is a password */
    uv_connect_t req;
} rconn_t;

/* Owner: the hub (ps->bridge); freed by stop. Fields under "bridge thread" are touched by it
 * alone; the queues by anyone under lock. */
struct bridge_s {
    crest__ps_bridge_t iface; /* first: the hub holds a pointer to it */
    crest_pubsub_t *ps;
    crest__rt_t *rt;
    crest_redis_opts_t opts;
    char prefix[64];
    size_t prefix_len;
    char *password;
    struct sockaddr_storage addr;
    uint8_t instance[8];
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    item_t *pub_head, *pub_tail; /* guarded by lock */
    size_t pub_n, pub_bytes;
    item_t *int_head, *int_tail;
    pat_t *pats;             /* guarded by lock (the list; the bridge thread alone sets `sent`) */
    pthread_mutex_t cb_lock; /* held while a pattern's callback runs (b_punsubscribe waits) */
    _Atomic int stopping;
    /* bridge thread */
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t retry;
    rconn_t sub, pub;
    int up;
    uint32_t backoff;
    int was_up;    /* it was connected once: a later connection is a reconnect */
    int said_down; /* the "down" log line is written for this outage */
    btopic_t *topics;
    char rbuf[READ_SIZE];
    crest__ratelimit_t log_rl;
    _Atomic size_t unwritten; /* bytes handed to libuv for Redis and not written yet */
    /* counters: any thread reads (relaxed) */
    _Atomic uint64_t n_up, n_sent, n_received, n_dropped, n_refused, n_reconnects;
};

static void count(_Atomic uint64_t *c) {
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ---- from any thread ---- */

static void enqueue(bridge_t *b, item_t *it);

/* Queue PUBLISH <channel> <payload>, each given in pieces (copied here, once, into the command's
 * RESP bytes), unless Redis is away: then it is dropped and counted. */
static void publish_pieces(bridge_t *b, const struct iovec *chan, int nchan, const struct iovec *pl,
                           int npl) {
    if (!atomic_load_explicit(&b->n_up, memory_order_relaxed)) {
        count(&b->n_dropped); /* Redis is away: not promised to other instances */
        return;
    }
    size_t clen = 0, plen = 0;
    for (int i = 0; i < nchan; i++)
        clen += chan[i].iov_len;
    for (int i = 0; i < npl; i++)
        plen += pl[i].iov_len;
    size_t cap = 64 + clen + plen;
    item_t *it = malloc(sizeof(*it) + cap);
    if (it == NULL) {
        count(&b->n_dropped);
        return;
    }
    char *p = it->data + snprintf(it->data, cap, "*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n", clen);
    for (int i = 0; i < nchan; p += chan[i].iov_len, i++)
        memcpy(p, chan[i].iov_base, chan[i].iov_len);
    p += sprintf(p, "\r\n$%zu\r\n", plen);
    for (int i = 0; i < npl; p += pl[i].iov_len, i++)
        if (pl[i].iov_len)
            memcpy(p, pl[i].iov_base, pl[i].iov_len);
    memcpy(p, "\r\n", 2);
    it->len = (size_t)(p + 2 - it->data);
    enqueue(b, it);
}

static void b_publish(crest__ps_bridge_t *iface, const char *topic, size_t topic_len,
                      const char *event, const char *id, const void *data, size_t len, int binary) {
    bridge_t *b = (bridge_t *)iface;
    size_t elen = event ? strlen(event) : 0, ilen = id ? strlen(id) : 0;
    if (elen > 0xfffe || ilen > 0xfffe) {
        count(&b->n_dropped);
        return;
    }
    /* PUBLISH <prefix+topic> <header event id data>. */
    uint8_t h[HEADER];
    h[0] = MAGIC0;
    h[1] = MAGIC1;
    memcpy(h + 2, b->instance, 8);
    h[10] = (uint8_t)binary;
    h[11] = (uint8_t)(event ? elen >> 8 : 0xff);
    h[12] = (uint8_t)(event ? elen & 0xff : 0xff);
    h[13] = (uint8_t)(id ? ilen >> 8 : 0xff);
    h[14] = (uint8_t)(id ? ilen & 0xff : 0xff);
    struct iovec chan[2] = {{b->prefix, b->prefix_len}, {(void *)topic, topic_len}};
    struct iovec pl[4] = {{h, HEADER},
                          {(void *)(event ? event : ""), elen},
                          {(void *)(id ? id : ""), ilen},
                          {(void *)data, len}};
    publish_pieces(b, chan, 2, pl, 4);
}

/* Queue a PUBLISH for the bridge thread, or drop it when the queue is full. */
static void enqueue(bridge_t *b, item_t *it) {
    it->next = NULL;
    pthread_mutex_lock(&b->lock);
    /* A slow Redis leaves bytes in libuv's write queue: they count against the limit too. */
    size_t waiting = b->pub_bytes + atomic_load_explicit(&b->unwritten, memory_order_relaxed);
    if (b->stopping || b->pub_n >= b->opts.max_queue_messages ||
        waiting + it->len > b->opts.max_queue_bytes) {
        pthread_mutex_unlock(&b->lock);
        free(it);
        count(&b->n_dropped);
        return;
    }
    if (b->pub_tail)
        b->pub_tail->next = it;
    else
        b->pub_head = it;
    b->pub_tail = it;
    b->pub_n++;
    b->pub_bytes += it->len;
    int wake = b->pub_n == 1;
    pthread_mutex_unlock(&b->lock);
    if (wake)
        uv_async_send(&b->wake);
}

static void b_publish_raw(crest__ps_bridge_t *iface, const char *channel, size_t channel_len,
                          const void *data, size_t len) {
    struct iovec chan = {(void *)channel, channel_len}, pl = {(void *)data, len};
    publish_pieces((bridge_t *)iface, &chan, 1, &pl, 1);
}

static int b_psubscribe(crest__ps_bridge_t *iface, const char *pattern,
                        void (*cb)(void *, const char *, size_t, const char *, size_t), void *arg) {
    bridge_t *b = (bridge_t *)iface;
    size_t len = strlen(pattern);
    pat_t *pt = calloc(1, sizeof(*pt) + len + 1);
    if (pt == NULL)
        return CREST_ENOMEM;
    pt->cb = cb;
    pt->arg = arg;
    pt->len = len;
    memcpy(pt->name, pattern, len + 1);
    pthread_mutex_lock(&b->lock);
    pt->next = b->pats;
    b->pats = pt;
    pthread_mutex_unlock(&b->lock);
    uv_async_send(&b->wake); /* subscribed there, if Redis is up */
    return 0;
}

static void b_punsubscribe(crest__ps_bridge_t *iface, void *arg) {
    bridge_t *b = (bridge_t *)iface;
    /* Once both locks are held no callback of arg's runs, and none starts after. Redis keeps the
     * subscription until the bridge stops; what arrives on it is ignored. */
    pthread_mutex_lock(&b->cb_lock);
    pthread_mutex_lock(&b->lock);
    for (pat_t **pp = &b->pats; *pp != NULL;) {
        pat_t *pt = *pp;
        if (pt->arg == arg) {
            *pp = pt->next;
            free(pt);
        } else {
            pp = &pt->next;
        }
    }
    pthread_mutex_unlock(&b->lock);
    pthread_mutex_unlock(&b->cb_lock);
}

static void b_interest(crest__ps_bridge_t *iface, const char *topic, size_t len, int delta) {
    bridge_t *b = (bridge_t *)iface;
    item_t *it = malloc(sizeof(*it) + len + 1);
    if (it == NULL)
        return; /* out of memory: this change is lost, so the topic may stay subscribed (or
                   unsubscribed) in Redis until its count next changes */
    it->next = NULL;
    it->delta = delta;
    it->len = len;
    memcpy(it->data, topic, len);
    it->data[len] = '\0';
    pthread_mutex_lock(&b->lock);
    if (b->int_tail)
        b->int_tail->next = it;
    else
        b->int_head = it;
    b->int_tail = it;
    pthread_mutex_unlock(&b->lock);
    uv_async_send(&b->wake);
}

static void b_stats(crest__ps_bridge_t *iface, crest_pubsub_stats_t *out) {
    bridge_t *b = (bridge_t *)iface;
    out->redis_up = atomic_load_explicit(&b->n_up, memory_order_relaxed);
    out->redis_sent = atomic_load_explicit(&b->n_sent, memory_order_relaxed);
    out->redis_received = atomic_load_explicit(&b->n_received, memory_order_relaxed);
    out->redis_dropped = atomic_load_explicit(&b->n_dropped, memory_order_relaxed);
    out->redis_refused = atomic_load_explicit(&b->n_refused, memory_order_relaxed);
    out->redis_reconnects = atomic_load_explicit(&b->n_reconnects, memory_order_relaxed);
    pthread_mutex_lock(&b->lock);
    out->redis_queued_bytes =
        b->pub_bytes + atomic_load_explicit(&b->unwritten, memory_order_relaxed);
    pthread_mutex_unlock(&b->lock);
}

/* ---- the bridge thread ---- */

static void write_done(uv_write_t *w, int status) {
    (void)status; /* a failed write shows up as a read error too */
    bridge_t *b = w->handle->loop->data;
    atomic_store_explicit(&b->unwritten, uv_stream_get_write_queue_size(w->handle),
                          memory_order_relaxed);
    free(w->data);
    free(w);
}

/* Write buf (len bytes, taken: freed after the write) on c. */
static int conn_write(rconn_t *c, char *buf, size_t len) {
    uv_write_t *w = malloc(sizeof(*w));
    if (w == NULL) {
        free(buf);
        return CREST_ENOMEM;
    }
    w->data = buf;
    uv_buf_t ub = uv_buf_init(buf, (unsigned)len);
    int rc = uv_write(w, (uv_stream_t *)&c->tcp, &ub, 1, write_done);
    if (rc != 0) {
        free(buf);
        free(w);
    }
    return rc;
}

/* SUBSCRIBE or UNSUBSCRIBE the given topics (n of them) on the subscriber connection. */
static void send_sub(bridge_t *b, const char *verb, btopic_t **topics, int n) {
    if (n == 0)
        return;
    crest_buf_t cmd = CREST_BUF_INIT;
    crest_buf_printf(&cmd, "*%d\r\n$%zu\r\n%s\r\n", n + 1, strlen(verb), verb);
    for (int i = 0; i < n; i++) {
        crest_buf_printf(&cmd, "$%zu\r\n", b->prefix_len + topics[i]->len);
        crest_buf_append(&cmd, b->prefix, b->prefix_len);
        crest_buf_append(&cmd, topics[i]->name, topics[i]->len);
        crest_buf_append(&cmd, "\r\n", 2);
    }
    if (cmd.err == 0)
        conn_write(&b->sub, cmd.ptr, cmd.len);
    else
        crest_buf_free(&cmd);
}

/* PSUBSCRIBE the patterns not sent on this connection yet. Bridge thread. */
static void send_pats(bridge_t *b) {
    crest_buf_t cmd = CREST_BUF_INIT;
    pthread_mutex_lock(&b->lock);
    for (pat_t *pt = b->pats; pt; pt = pt->next)
        if (!pt->sent) {
            pt->sent = 1;
            crest_buf_printf(&cmd, "*2\r\n$10\r\nPSUBSCRIBE\r\n$%zu\r\n%s\r\n", pt->len, pt->name);
        }
    pthread_mutex_unlock(&b->lock);
    if (cmd.len > 0 && cmd.err == 0)
        conn_write(&b->sub, cmd.ptr, cmd.len);
    else
        crest_buf_free(&cmd);
}

static void go_down(bridge_t *b, const char *why);
static void go_up(bridge_t *b);

static void conn_closed(uv_handle_t *h) {
    rconn_t *c = h->data;
    c->open = 0;
}

static void conn_close(rconn_t *c) {
    if (c->open && !uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, conn_closed);
    c->connected = 0;
    c->ready = 0;
    crest__resp_free(&c->reader);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
    (void)hint;
    rconn_t *c = h->data;
    *buf = uv_buf_init(c->b->rbuf, sizeof(c->b->rbuf));
}

/* A message from Redis: deliver it here unless this instance published it. */
static void on_message(bridge_t *b, const crest__resp_val_t *chan, const crest__resp_val_t *pl) {
    if (pl->refused) {
        count(&b->n_refused);
        return;
    }
    const uint8_t *h = (const uint8_t *)pl->ptr;
    if (pl->len < HEADER || h[0] != MAGIC0 || h[1] != MAGIC1 || chan->len <= b->prefix_len ||
        memcmp(chan->ptr, b->prefix, b->prefix_len) != 0)
        return; /* not ours: someone else publishing on our channels */
    if (memcmp(h + 2, b->instance, 8) == 0)
        return; /* our own, delivered here when it was published */
    size_t elen = ((size_t)h[11] << 8) | h[12], ilen = ((size_t)h[13] << 8) | h[14];
    int has_event = elen != NO_ID, has_id = ilen != NO_ID;
    size_t el = has_event ? elen : 0, il = has_id ? ilen : 0;
    if (HEADER + el + il > pl->len)
        return;
    char topic[512], event[256], id[256];
    size_t tlen = chan->len - b->prefix_len;
    if (tlen >= sizeof(topic) || el >= sizeof(event) || il >= sizeof(id))
        return;
    memcpy(topic, chan->ptr + b->prefix_len, tlen);
    topic[tlen] = '\0';
    memcpy(event, pl->ptr + HEADER, el);
    event[el] = '\0';
    memcpy(id, pl->ptr + HEADER + el, il);
    id[il] = '\0';
    const char *data = pl->ptr + HEADER + el + il;
    size_t dlen = pl->len - HEADER - el - il;
    crest__ps_publish_local(b->ps, topic, has_event ? event : NULL, has_id ? id : NULL, data, dlen,
                            h[10] != 0);
    count(&b->n_received);
}

/* A message on one of the patterns: to its subscriber, as it is. */
static void on_pmessage(bridge_t *b, const crest__resp_val_t *pat, const crest__resp_val_t *chan,
                        const crest__resp_val_t *pl) {
    if (pl->refused || pat->refused || chan->refused) {
        count(&b->n_refused);
        return;
    }
    pthread_mutex_lock(&b->cb_lock);
    pthread_mutex_lock(&b->lock);
    pat_t *pt = b->pats;
    while (pt && !(pt->len == pat->len && memcmp(pt->name, pat->ptr, pat->len) == 0))
        pt = pt->next;
    pthread_mutex_unlock(&b->lock);
    if (pt != NULL) {
        count(&b->n_received);
        pt->cb(pt->arg, chan->ptr, chan->len, pl->ptr, pl->len);
    }
    pthread_mutex_unlock(&b->cb_lock);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    rconn_t *c = s->data;
    bridge_t *b = c->b;
    if (nread < 0) {
        go_down(b, nread == UV_EOF ? "Redis closed the connection" : uv_strerror((int)nread));
        return;
    }
    size_t off = 0;
    while (off < (size_t)nread) {
        crest__resp_reply_t r;
        size_t used = 0;
        int rc = crest__resp_read(&c->reader, buf->base + off, (size_t)nread - off, &used, &r);
        off += used;
        if (rc < 0) {
            go_down(b, "protocol error from Redis");
            return;
        }
        if (rc == 0)
            break;
        if (r.type == CREST__RESP_ERROR) {
            /* A refused AUTH, or a Redis that refuses our commands (a read-only replica, out of
             * memory): the bridge is not working; say so and try again later. */
            char why[160];
            snprintf(why, sizeof(why), "%.*s", (int)(r.elem[0].len < 150 ? r.elem[0].len : 150),
                     r.elem[0].ptr);
            go_down(b, why);
            return;
        }
        if (!c->ready) { /* the answer to AUTH */
            c->ready = 1;
            if (b->sub.ready && b->pub.ready)
                go_up(b);
            continue;
        }
        if (c == &b->pub) {
            if (r.type == CREST__RESP_INT)
                count(&b->n_sent);
            continue;
        }
        if (r.type == CREST__RESP_ARRAY && r.n == 3 && r.elem[0].type == CREST__RESP_BULK &&
            r.elem[0].len == 7 && memcmp(r.elem[0].ptr, "message", 7) == 0 &&
            r.elem[1].type == CREST__RESP_BULK && !r.elem[1].refused &&
            r.elem[2].type == CREST__RESP_BULK)
            on_message(b, &r.elem[1], &r.elem[2]);
        else if (r.type == CREST__RESP_ARRAY && r.n == 4 && r.elem[0].type == CREST__RESP_BULK &&
                 r.elem[0].len == 8 && memcmp(r.elem[0].ptr, "pmessage", 8) == 0 &&
                 r.elem[1].type == CREST__RESP_BULK && r.elem[2].type == CREST__RESP_BULK &&
                 r.elem[3].type == CREST__RESP_BULK)
            on_pmessage(b, &r.elem[1], &r.elem[2], &r.elem[3]);
    }
}

/* Both connections are made: subscribe to every topic with local subscribers, go up. */
static void go_up(bridge_t *b) {
    int n = 0;
    for (btopic_t *t = b->topics; t; t = t->next)
        n++;
    btopic_t **all = n ? malloc((size_t)n * sizeof(*all)) : NULL;
    if (n && all == NULL) {
        go_down(b, "out of memory");
        return;
    }
    n = 0;
    for (btopic_t *t = b->topics; t; t = t->next)
        all[n++] = t;
    send_sub(b, "SUBSCRIBE", all, n);
    free(all);
    send_pats(b);
    b->up = 1;
    b->backoff = 0;
    b->said_down = 0;
    atomic_store_explicit(&b->n_up, 1, memory_order_relaxed);
    if (b->was_up)
        count(&b->n_reconnects);
    crest__log(b->rt, CREST_LOG_INFO, "redis: bridge %s (%d topics)",
               b->was_up ? "connected again" : "connected", n);
    b->was_up = 1;
}

static void on_connect(uv_connect_t *req, int status) {
    rconn_t *c = req->data;
    bridge_t *b = c->b;
    if (status != 0) {
        if (status != UV_ECANCELED)
            go_down(b, uv_strerror(status));
        return;
    }
    c->connected = 1;
    c->ready = b->password == NULL;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (b->password != NULL) {
        const char *argv[] = {"AUTH", b->password};
        size_t lens[] = {4, strlen(b->password)};
        crest_buf_t cmd = CREST_BUF_INIT;
        if (crest__resp_command(&cmd, 2, argv, lens) == 0)
            conn_write(c, cmd.ptr, cmd.len);
        else
            crest_buf_free(&cmd);
    }
    if (b->sub.ready && b->pub.ready)
        go_up(b);
}

static void conn_open(bridge_t *b, rconn_t *c) {
    c->b = b;
    /* Payloads over max_message are skipped as they stream past; channel names and replies are
     * short. */
    crest__resp_init(&c->reader, b->opts.max_message + HEADER + 512, 512);
    uv_tcp_init(&b->loop, &c->tcp);
    uv_tcp_nodelay(&c->tcp, 1);
    c->tcp.data = c;
    c->open = 1;
    c->connected = 0;
    c->req.data = c;
    int rc = uv_tcp_connect(&c->req, &c->tcp, (const struct sockaddr *)&b->addr, on_connect);
    if (rc != 0)
        go_down(b, uv_strerror(rc));
}

static void on_retry(uv_timer_t *t) {
    bridge_t *b = CREST__CONTAINER_OF(t, bridge_t, retry);
    if (b->sub.open || b->pub.open) { /* still closing: come back */
        uv_timer_start(&b->retry, on_retry, 10, 0);
        return;
    }
    conn_open(b, &b->sub);
    conn_open(b, &b->pub);
}

static void go_down(bridge_t *b, const char *why) {
    if (uv_is_active((uv_handle_t *)&b->retry))
        return; /* already down and waiting */
    if (!b->said_down)
        crest__log(b->rt, CREST_LOG_WARN,
                   "redis: bridge down (%s); messages are not carried to other instances until "
                   "it is back",
                   why);
    b->said_down = 1;
    atomic_store_explicit(&b->unwritten, 0, memory_order_relaxed);
    b->up = 0;
    atomic_store_explicit(&b->n_up, 0, memory_order_relaxed);
    pthread_mutex_lock(&b->lock);
    for (pat_t *pt = b->pats; pt; pt = pt->next)
        pt->sent = 0; /* subscribed again on the next connection */
    pthread_mutex_unlock(&b->lock);
    conn_close(&b->sub);
    conn_close(&b->pub);
    b->backoff = b->backoff ? b->backoff * 2 : RETRY_MIN_MS;
    if (b->backoff > RETRY_MAX_MS)
        b->backoff = RETRY_MAX_MS;
    if (!b->stopping)
        uv_timer_start(&b->retry, on_retry, b->backoff, 0);
}

static btopic_t **topic_slot(bridge_t *b, const char *name, size_t len) {
    btopic_t **pp = &b->topics;
    while (*pp && !((*pp)->len == len && memcmp((*pp)->name, name, len) == 0))
        pp = &(*pp)->next;
    return pp;
}

static void on_wake(uv_async_t *a) {
    bridge_t *b = CREST__CONTAINER_OF(a, bridge_t, wake);
    pthread_mutex_lock(&b->lock);
    item_t *pubs = b->pub_head, *ints = b->int_head;
    b->pub_head = b->pub_tail = NULL;
    b->int_head = b->int_tail = NULL;
    b->pub_n = 0;
    /* The bytes taken count as unwritten until the write below says what libuv holds: without
     * this, publishers would see neither for a moment and overfill the queue. */
    atomic_fetch_add_explicit(&b->unwritten, b->pub_bytes, memory_order_relaxed);
    b->pub_bytes = 0;
    int stopping = b->stopping;
    pthread_mutex_unlock(&b->lock);
    /* Interest first: a subscriber that joined before a message was published is subscribed in
     * Redis before that message goes out (this instance's own message is local anyway). */
    while (ints != NULL) {
        item_t *it = ints;
        ints = it->next;
        btopic_t **pp = topic_slot(b, it->data, it->len);
        btopic_t *t = *pp;
        if (it->delta > 0) {
            if (t == NULL && (t = calloc(1, sizeof(*t) + it->len + 1)) != NULL) {
                t->len = it->len;
                memcpy(t->name, it->data, it->len + 1);
                t->next = b->topics;
                b->topics = t;
                if (b->up)
                    send_sub(b, "SUBSCRIBE", &t, 1);
            }
            if (t != NULL)
                t->loops++;
        } else if (t != NULL && --t->loops <= 0) {
            *pp = t->next;
            if (b->up)
                send_sub(b, "UNSUBSCRIBE", &t, 1);
            free(t);
        }
        free(it);
    }
    if (b->up)
        send_pats(b);
    /* Messages: one write for all that waited. */
    size_t total = 0, n = 0;
    for (item_t *it = pubs; it; it = it->next) {
        total += it->len;
        n++;
    }
    char *buf = NULL;
    if (n > 0 && b->up && !stopping && (buf = malloc(total)) != NULL) {
        size_t at = 0;
        for (item_t *it = pubs; it; it = it->next) {
            memcpy(buf + at, it->data, it->len);
            at += it->len;
        }
        if (conn_write(&b->pub, buf, total) != 0)
            buf = NULL;
        else
            atomic_store_explicit(&b->unwritten,
                                  uv_stream_get_write_queue_size((uv_stream_t *)&b->pub.tcp),
                                  memory_order_relaxed);
    }
    if (buf == NULL) /* nothing written: what libuv holds (if anything) is all that waits */
        atomic_store_explicit(
            &b->unwritten,
            b->pub.open ? uv_stream_get_write_queue_size((uv_stream_t *)&b->pub.tcp) : 0,
            memory_order_relaxed);
    while (pubs != NULL) {
        item_t *it = pubs;
        pubs = it->next;
        if (buf == NULL)
            count(&b->n_dropped);
        free(it);
    }
    if (stopping) {
        uv_timer_stop(&b->retry);
        conn_close(&b->sub);
        conn_close(&b->pub);
        uv_close((uv_handle_t *)&b->retry, NULL);
        uv_close((uv_handle_t *)&b->wake, NULL);
    }
}

static void *bridge_main(void *arg) {
    bridge_t *b = arg;
    conn_open(b, &b->sub);
    conn_open(b, &b->pub);
    uv_run(&b->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void b_stop(crest__ps_bridge_t *iface) {
    bridge_t *b = (bridge_t *)iface;
    pthread_mutex_lock(&b->lock);
    b->stopping = 1;
    pthread_mutex_unlock(&b->lock);
    if (b->started) {
        uv_async_send(&b->wake);
        pthread_join(b->thread, NULL);
    } else { /* the thread never ran: close its handles here */
        uv_close((uv_handle_t *)&b->retry, NULL);
        uv_close((uv_handle_t *)&b->wake, NULL);
        uv_run(&b->loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&b->loop);
    while (b->topics) {
        btopic_t *t = b->topics;
        b->topics = t->next;
        free(t);
    }
    while (b->pats) {
        pat_t *pt = b->pats;
        b->pats = pt->next;
        free(pt);
    }
    for (item_t *it = b->pub_head; it;) {
        item_t *next = it->next;
        free(it);
        it = next;
    }
    for (item_t *it = b->int_head; it;) {
        item_t *next = it->next;
        free(it);
        it = next;
    }
    pthread_mutex_destroy(&b->lock);
    pthread_mutex_destroy(&b->cb_lock);
    free(b->password);
    free(b);
}

/* ---- set-up ---- */

void crest_redis_opts_default(crest_redis_opts_t *o) {
    o->max_queue_messages = 10000;
    o->max_queue_bytes = 16 * 1024 * 1024;
    o->max_message = 1024 * 1024;
    o->prefix = "crest:";
}

/* redis://[:PASSWORD@]HOST[:PORT][/...]: host, port and password. */
static int parse_url(const char *url, char *host, size_t hcap, char *port, size_t pcap,
                     char **password) {
    if (strncmp(url, "redis://", 8) != 0)
        return CREST_EINVAL;
    const char *p = url + 8;
    const char *at = strchr(p, '@');
    const char *end = p + strcspn(p, "/?");
    if (at != NULL && at < end) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        if (at > pw && (*password = strndup(pw, (size_t)(at - pw))) == NULL)
            return CREST_ENOMEM;
        p = at + 1;
    }
    const char *colon = memchr(p, ':', (size_t)(end - p));
    const char *hend = colon ? colon : end;
    if (hend == p || (size_t)(hend - p) >= hcap)
        return CREST_EINVAL;
    memcpy(host, p, (size_t)(hend - p));
    host[hend - p] = '\0';
    if (colon) {
        size_t n = (size_t)(end - colon - 1);
        if (n == 0 || n >= pcap || strspn(colon + 1, "0123456789") < n)
            return CREST_EINVAL;
        memcpy(port, colon + 1, n);
        port[n] = '\0';
    } else {
        snprintf(port, pcap, "6379");
    }
    return 0;
}

int crest_pubsub_redis(crest_pubsub_t *ps, const char *url, const crest_redis_opts_t *opts) {
    bridge_t *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return CREST_ENOMEM;
    if (opts)
        b->opts = *opts;
    else
        crest_redis_opts_default(&b->opts);
    if (b->opts.prefix == NULL)
        b->opts.prefix = "crest:";
    if (b->opts.max_queue_messages == 0 || b->opts.max_queue_bytes == 0 ||
        b->opts.max_message == 0 || strlen(b->opts.prefix) >= sizeof(b->prefix)) {
        free(b);
        return CREST_EINVAL;
    }
    b->prefix_len = strlen(b->opts.prefix);
    memcpy(b->prefix, b->opts.prefix, b->prefix_len + 1);
    char host[256], port[16];
    int rc = parse_url(url, host, sizeof(host), port, sizeof(port), &b->password);
    if (rc == 0) {
        struct addrinfo hints = {0}, *ai = NULL;
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo(host, port, &hints, &ai) != 0 || ai == NULL) {
            rc = CREST_ECONNREFUSED;
        } else {
            memcpy(&b->addr, ai->ai_addr, ai->ai_addrlen);
            freeaddrinfo(ai);
        }
    }
    if (rc == 0 && getrandom(b->instance, sizeof(b->instance), 0) != sizeof(b->instance))
        rc = CREST_EINVAL;
    if (rc == 0)
        rc = crest__ps_set_bridge(ps, &b->iface);
    if (rc != 0) {
        free(b->password);
        free(b);
        return rc;
    }
    b->iface.publish = b_publish;
    b->iface.interest = b_interest;
    b->iface.publish_raw = b_publish_raw;
    b->iface.psubscribe = b_psubscribe;
    b->iface.punsubscribe = b_punsubscribe;
    b->iface.stats = b_stats;
    b->iface.stop = b_stop;
    b->ps = ps;
    b->rt = crest__ps_rt(ps);
    pthread_mutex_init(&b->lock, NULL);
    pthread_mutex_init(&b->cb_lock, NULL);
    uv_loop_init(&b->loop);
    b->loop.data = b;
    uv_async_init(&b->loop, &b->wake, on_wake);
    uv_timer_init(&b->loop, &b->retry);
    /* The thread starts with every signal blocked: SIGTERM and SIGINT belong to crest's signal
     * thread, and a thread made before crest_app_run would otherwise take them (and die). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    if (pthread_create(&b->thread, NULL, bridge_main, b) == 0)
        b->started = 1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return 0;
}
