/* Connections: accept, read, parse, dispatch, write, time out, close.
 *
 * Reads land in the loop's scratch buffer. Complete requests are parsed and answered in place;
 * only the bytes of a request that has not fully arrived are copied into the connection's rx
 * buffer, so an idle keep-alive connection owns no buffer. Every response of one read batch is
 * appended to the loop's batch queue and written with one uv_try_write (a writev) at the end of
 * the batch; only what the kernel does not take at once is copied into a per-connection tx. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/conn.h"

#define SCRATCH_SIZE (64 * 1024)
#define LINGER_MS 2000
/* At shutdown an idle keep-alive connection is kept this long before its close begins, so that
 * a request the client sent just before (it could not know) is answered with Connection: close
 * instead of meeting a closed socket. */
#define DRAIN_GRACE_MS 250
/* Output one read batch of a connection may produce before the loop serves others: a few
 * large answers, or thousands of small pipelined ones. */
#define BATCH_OUTPUT (32 * 1024)
#define ACCEPTS_PER_WAKEUP 64 /* then other connections of the loop get their turn */
#define ACCEPT_RETRY_MS 100
#define ACCEPT_BACKOFF_MAX_MS 1000

static void conn_process(crest__conn_t *c, char *data, size_t len);
static void conn_idle(crest__conn_t *c);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static crest_loop_t *conn_loop(const crest__conn_t *c) {
    return c->tcp.loop->data;
}

/* ---- Date header cache ---- */

void crest__http_date_refresh(crest_loop_t *loop) {
    /* time() is a vDSO call; the formatted line changes once a second. */
    time_t now = time(NULL);
    if (now == loop->date_sec && loop->date_line_len)
        return;
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&now, &tm);
    int n = snprintf(loop->date_line, sizeof(loop->date_line),
                     "Server: %s\r\nDate: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
                     loop->app->server_name, days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
                     tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    loop->date_line_len = n > 0 && (size_t)n < sizeof(loop->date_line) ? (size_t)n : 0;
    loop->date_sec = now;
}

/* ---- closing ---- */

static void accept_resume(crest_loop_t *loop);
static void tx_free(crest__conn_t *c, crest__tx_t *tx);

static void on_close(uv_handle_t *h) {
    crest__conn_t *c = CREST__CONTAINER_OF(h, crest__conn_t, tcp);
    crest_loop_t *loop = conn_loop(c);
    free(c);
    crest__count(&loop->open_conns, -1);
    int64_t open = atomic_fetch_sub_explicit(&loop->app->conns, 1, memory_order_relaxed) - 1;
    if (loop->accept_paused && (uint64_t)open < loop->app->opts.max_connections)
        accept_resume(loop);
    crest__loop_maybe_finish(loop);
}

static void rx_free(crest__conn_t *c) {
    if (c->rx) {
        crest__mem_give(conn_loop(c)->app, conn_loop(c), c->rx->cap);
        free(c->rx->buf);
        free(c->rx);
        c->rx = NULL;
    }
    c->flags &= ~(uint32_t)CONN_INPUT_PENDING;
}

static void unpark(crest__conn_t *c) {
    crest_loop_t *loop = conn_loop(c);
    crest__conn_t **pp = &loop->parked, *prev = NULL;
    while (*pp != NULL && *pp != c) {
        prev = *pp;
        pp = &(*pp)->parked_next;
    }
    if (*pp == c) {
        *pp = c->parked_next;
        if (loop->parked_tail == c)
            loop->parked_tail = prev;
        loop->nparked--;
    }
    c->parked_next = NULL;
    c->flags &= ~(uint32_t)CONN_PARKED;
}

void crest__conn_close(crest__conn_t *c) {
    if (c->flags & CONN_CLOSING)
        return;
    c->flags |= CONN_CLOSING;
    crest_loop_t *loop = conn_loop(c);
    crest__wheel_disarm(&loop->wheel, &c->timer);
    if (c->flags & CONN_PARKED)
        unpark(c);
    rx_free(c);
    if (loop->batch_conn == c) {
        crest__outq_free(&loop->batch);
        loop->batch_conn = NULL;
    }
    if (c->proto && c->proto->on_close)
        c->proto->on_close(c);
    crest_req_t *req = c->req;
    if (req != NULL) {
        /* The request outlives its connection until the application finishes it. */
        c->req = NULL;
        req->conn = NULL;
        req->aborted = 1;
        if (req->abort_cb)
            req->abort_cb(req, req->abort_arg);
    }
    if (c->tx != NULL && c->tx->inflight.total == 0) {
        /* Output queued but never handed to libuv: no on_write will come to free it. */
        tx_free(c, c->tx);
        c->tx = NULL;
    }
    /* A write in progress is cancelled by uv_close; on_write then frees the tx. */
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* After a final response with Connection: close, shut down the write side and read until the
 * client closes (or LINGER_MS passes): closing at once with unread request bytes in the socket
 * makes the kernel send a reset that can destroy the response before the client reads it. */
static void conn_linger(crest__conn_t *c) {
    crest_loop_t *loop = conn_loop(c);
    if (c->flags & (CONN_LINGERING | CONN_CLOSING))
        return;
    c->flags |= CONN_LINGERING;
    rx_free(c);
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0 || shutdown(fd, SHUT_WR) != 0) {
        crest__conn_close(c);
        return;
    }
    if (c->flags & CONN_PARKED)
        unpark(c);
    if (c->flags & CONN_READ_PAUSED) {
        c->flags &= ~CONN_READ_PAUSED;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
    crest__wheel_arm(&loop->wheel, &c->timer, LINGER_MS);
}

/* ---- writing ---- */

static void pause_reading(crest__conn_t *c) {
    if (!(c->flags & CONN_READ_PAUSED)) {
        c->flags |= CONN_READ_PAUSED;
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
}

static void resume_reading(crest__conn_t *c) {
    if ((c->flags & CONN_READ_PAUSED) && !(c->flags & CONN_CLOSING)) {
        c->flags &= ~CONN_READ_PAUSED;
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    }
}

/* Release the first `done` bytes of q's segments (they were written). */
static void outq_consume(crest__outq_t *q, size_t done, size_t *first_seg, size_t *first_off) {
    size_t i = 0;
    while (i < q->nsegs && done >= q->segs[i].len) {
        done -= q->segs[i].len;
        if (q->segs[i].release) {
            q->segs[i].release(q->segs[i].arg);
            q->segs[i].release = NULL;
        }
        i++;
    }
    *first_seg = i;
    *first_off = done;
}

static size_t outq_bufs(crest__outq_t *q, size_t from, size_t off, uv_buf_t *bufs) {
    size_t n = 0;
    for (size_t i = from; i < q->nsegs; i++, off = 0) {
        crest__seg_t *s = &q->segs[i];
        const char *base = s->ext ? s->ext : q->bytes.ptr + s->off;
        bufs[n++] = uv_buf_init((char *)base + off, (unsigned)(s->len - off));
    }
    return n;
}

/* Hand q's unwritten part (from segment `from`, byte `off`) to dst, which must be empty: the
 * buffers change owner instead of being copied. q is left empty. */
static void outq_take(crest__outq_t *dst, crest__outq_t *q, size_t from, size_t off) {
    *dst = *q;
    memset(q, 0, sizeof(*q));
    dst->nsegs -= from;
    memmove(dst->segs, dst->segs + from, dst->nsegs * sizeof(*dst->segs));
    crest__seg_t *first = &dst->segs[0];
    if (first->ext)
        first->ext += off;
    else
        first->off += off;
    first->len -= off;
    dst->total = dst->shared = 0;
    for (size_t i = 0; i < dst->nsegs; i++) {
        dst->total += dst->segs[i].len;
        if (dst->segs[i].shared)
            dst->shared += dst->segs[i].len;
    }
}

/* Hand the kernel what it takes of q now (one writev): the bytes written, 0 when it takes none,
 * or a negative error. Nothing is consumed from q. */
static int outq_try_write(crest__conn_t *c, crest__outq_t *q) {
    uv_buf_t stackbufs[32];
    uv_buf_t *bufs = q->nsegs <= 32 ? stackbufs : malloc(q->nsegs * sizeof(*bufs));
    if (bufs == NULL)
        return CREST_ENOMEM;
    size_t n = outq_bufs(q, 0, 0, bufs);
    int written = uv_try_write((uv_stream_t *)&c->tcp, bufs, (unsigned)n);
    if (bufs != stackbufs)
        free(bufs);
    return written == UV_EAGAIN ? 0 : written;
}

/* Empty q and keep its memory for the next output. */
static void outq_reset(crest__outq_t *q) {
    q->nsegs = 0;
    q->total = 0;
    q->shared = 0;
    q->bytes.len = 0;
}

static void tx_start(crest__conn_t *c);
static void conn_next(crest__conn_t *c);

/* Keep the memory budget's count of this connection's unsent output in step (bytes shared with
 * other queues are charged once by their owner). */
static void tx_account(crest__conn_t *c, crest__tx_t *tx) {
    size_t want = tx->inflight.total - tx->inflight.shared + tx->pending.total - tx->pending.shared;
    crest_loop_t *loop = conn_loop(c);
    if (want > tx->charged)
        crest__mem_charge(loop->app, want - tx->charged);
    else if (want < tx->charged)
        crest__mem_give(loop->app, loop, tx->charged - want);
    tx->charged = want;
}

static void tx_free(crest__conn_t *c, crest__tx_t *tx) {
    crest_loop_t *loop = conn_loop(c);
    crest__mem_give(loop->app, loop, tx->charged);
    crest__outq_free(&tx->inflight);
    crest__outq_free(&tx->pending);
    free(tx->bufs);
    free(tx);
}

static void on_write(uv_write_t *w, int status) {
    crest__tx_t *tx = CREST__CONTAINER_OF(w, crest__tx_t, req);
    crest__conn_t *c = CREST__CONTAINER_OF(w->handle, crest__conn_t, tcp);
    size_t seg, off;
    outq_consume(&tx->inflight, tx->inflight.total, &seg, &off);
    outq_reset(&tx->inflight);
    if (status < 0 || (c->flags & CONN_CLOSING)) {
        c->tx = NULL;
        tx_free(c, tx);
        crest__conn_close(c);
        return;
    }
    if (tx->pending.total > 0) {
        tx_start(c);
        if (c->flags & CONN_CLOSING)
            return;
    } else {
        c->tx = NULL;
        tx_free(c, tx);
        /* The write deadline is met; conn_idle arms what comes next (keep-alive, or the deadline
         * of a request that began to arrive meanwhile). */
        if (c->proto == NULL && !(c->flags & CONN_LINGERING))
            crest__wheel_disarm(&conn_loop(c)->wheel, &c->timer);
    }
    if (c->proto) {
        if (c->tx == NULL && c->proto->on_drain)
            c->proto->on_drain(c);
        return;
    }
    if (c->flags & CONN_CLOSE_AFTER_WRITE) {
        if (c->tx == NULL && c->req == NULL)
            conn_linger(c);
        return;
    }
    crest_req_t *req = c->req;
    if (req != NULL) {
        if (req->drain_cb != NULL && crest__conn_buffered(c) <= req->drain_mark) {
            crest_drain_cb cb = req->drain_cb;
            req->drain_cb = NULL;
            cb(req, req->drain_arg);
        }
        return;
    }
    conn_next(c);
}

/* Hand tx->pending to libuv as the new inflight queue. */
static void tx_start(crest__conn_t *c) {
    crest__tx_t *tx = c->tx;
    crest__outq_t t = tx->inflight;
    tx->inflight = tx->pending;
    tx->pending = t;
    if (tx->inflight.nsegs > tx->nbufs) {
        uv_buf_t *b = realloc(tx->bufs, tx->inflight.nsegs * sizeof(*b));
        if (b == NULL) {
            crest__conn_close(c);
            return;
        }
        tx->bufs = b;
        tx->nbufs = tx->inflight.nsegs;
    }
    size_t n = outq_bufs(&tx->inflight, 0, 0, tx->bufs);
    int rc = uv_write(&tx->req, (uv_stream_t *)&c->tcp, tx->bufs, (unsigned)n, on_write);
    if (rc != 0) {
        /* No callback will come: put the output back where conn_close frees it. */
        crest__outq_t back = tx->pending;
        tx->pending = tx->inflight;
        tx->inflight = back;
        tx->inflight.total = 0;
        crest__conn_close(c);
        return;
    }
    tx_account(c, tx);
    crest_loop_t *loop = conn_loop(c);
    /* HTTP stops reading here; a protocol that took the connection over (WebSocket, SSE) keeps
     * its own limit and resumes reading itself, so it is not paused behind its back. */
    if (c->proto == NULL && crest__conn_buffered(c) > loop->app->opts.max_output)
        pause_reading(c);
    /* A client that takes none of its output is cut off after write_timeout; any progress (a
     * completed write, or fewer bytes left when the deadline comes) earns another period. */
    if (c->proto == NULL && !(c->flags & CONN_LINGERING)) {
        tx->last_left = c->tcp.write_queue_size + tx->pending.total;
        crest__wheel_arm(&loop->wheel, &c->timer, loop->app->opts.write_timeout_ms);
    }
}

static crest__tx_t *tx_new(crest__conn_t *c) {
    c->tx = calloc(1, sizeof(*c->tx));
    return c->tx;
}

crest__outq_t *crest__conn_out(crest__conn_t *c) {
    crest_loop_t *loop = conn_loop(c);
    if (c->tx)
        return &c->tx->pending;
    if (loop->batch_conn == c)
        return &loop->batch;
    if (loop->batch_conn == NULL) {
        loop->batch_conn = c;
        crest__http_date_refresh(loop);
        return &loop->batch;
    }
    /* Another connection's batch is open (a handler answering for a second connection). */
    crest__tx_t *tx = tx_new(c);
    return tx ? &tx->pending : NULL;
}

/* The write in flight is all in the kernel and only its callback is still to come: write what
 * queued up since then at once instead of a turn later (a pub/sub burst judges readers slow by
 * what stays queued). Returns nonzero when the connection was closed. */
static int pending_try_write(crest__conn_t *c) {
    crest__outq_t *q = &c->tx->pending;
    int written = outq_try_write(c, q);
    if (written < 0 && written != CREST_ENOMEM) {
        crest__conn_close(c);
        return 1;
    }
    if (written <= 0)
        return 0; /* it goes out after the write in flight */
    size_t seg, off;
    outq_consume(q, (size_t)written, &seg, &off);
    if (seg < q->nsegs) {
        crest__outq_t rest;
        outq_take(&rest, q, seg, off);
        *q = rest;
    } else {
        outq_reset(q);
    }
    return 0;
}

void crest__conn_flush(crest__conn_t *c) {
    crest_loop_t *loop = conn_loop(c);
    if (c->flags & CONN_CLOSING)
        return;
    if (loop->batch_conn == c) {
        crest__outq_t *q = &loop->batch;
        loop->batch_conn = NULL;
        if (q->total > 0) {
            int written = 0;
            /* A request waiting for a drain callback needs on_write to come, so its output always
             * takes the uv_write path (whose callback is asynchronous even when the kernel takes
             * everything at once). */
            if (c->req == NULL || c->req->drain_cb == NULL) {
                written = outq_try_write(c, q);
                if (written < 0) {
                    crest__outq_free(q);
                    crest__conn_close(c);
                    return;
                }
            }
            size_t seg, off;
            outq_consume(q, written > 0 ? (size_t)written : 0, &seg, &off);
            if (seg < q->nsegs) {
                /* The kernel took only part: the rest becomes the connection's own. */
                if (tx_new(c) == NULL) {
                    crest__outq_free(q);
                    crest__conn_close(c);
                    return;
                }
                outq_take(&c->tx->pending, q, seg, off);
            } else {
                outq_reset(q);
                if (q->bytes.cap > 4 * SCRATCH_SIZE) /* do not keep a huge batch buffer around */
                    crest_buf_free(&q->bytes);
            }
        }
    }
    if (c->tx) {
        crest__tx_t *tx = c->tx;
        if (tx->inflight.total == 0 && tx->pending.total > 0) {
            tx_start(c); /* no write in flight: start one */
            return;
        }
        if (tx->pending.total > 0 && c->tcp.write_queue_size == 0 && pending_try_write(c) != 0)
            return; /* closed */
        tx_account(c, tx);
        return;
    }
    if ((c->flags & CONN_CLOSE_AFTER_WRITE) && c->req == NULL)
        conn_linger(c);
}

/* ---- timeouts ---- */

static void on_conn_timer(crest__wheel_node_t *node) {
    crest__conn_t *c = CREST__CONTAINER_OF(node, crest__conn_t, timer);
    crest_loop_t *loop = conn_loop(c);
    const crest_app_opts_t *o = &loop->app->opts;
    if (c->proto && !(c->flags & (CONN_LINGERING | CONN_CLOSING))) {
        c->proto->on_timer(c);
        return;
    }
    if (c->flags & (CONN_LINGERING | CONN_CLOSING)) {
        crest__conn_close(c); /* linger over */
        return;
    }
    if (c->tx != NULL) {
        /* The write deadline: libuv reports no partial progress, so compare what is left. */
        size_t left = c->tcp.write_queue_size + c->tx->pending.total;
        if (left < c->tx->last_left) {
            c->tx->last_left = left;
            crest__wheel_arm(&loop->wheel, &c->timer, o->write_timeout_ms);
            return;
        }
        crest__count(&loop->write_timeouts, 1);
        crest__conn_close(c); /* a reader that stopped reading */
        return;
    }
    if (c->req != NULL) {
        crest__conn_close(c);
        return;
    }
    crest__rx_t *rx = c->rx;
    if (rx != NULL && rx->head_len > 0) {
        /* The body deadline: met once the body keeps coming at min_body_rate, so a large upload
         * on a slow but honest link goes on while a trickle (a few bytes now and then, to hold
         * memory) ends with 408 however long it keeps at it. */
        uint64_t elapsed = uv_now(&loop->uv) - rx->body_start;
        uint64_t got = rx->len - rx->head_len;
        if (got * 1000 >= elapsed * o->min_body_rate) {
            crest__wheel_arm(&loop->wheel, &c->timer, o->body_timeout_ms);
            return;
        }
    }
    if (rx != NULL) {
        /* Header or body timeout: the request did not arrive in time. */
        rx_free(c);
        crest__send_error(c, 408, 1);
        return;
    }
    if (loop->draining)
        conn_linger(c); /* the shutdown grace of an idle connection is over */
    else
        crest__conn_close(c); /* idle keep-alive connection */
}

/* Nothing in flight: wait for the next request, or close when shutting down. */
static void conn_idle(crest__conn_t *c) {
    crest_loop_t *loop = conn_loop(c);
    if (c->proto) {
        if (loop->draining && !(c->flags & CONN_CLOSING))
            c->proto->on_shutdown(c);
        return;
    }
    if (c->flags & (CONN_CLOSING | CONN_LINGERING) || c->req || c->tx)
        return;
    if (c->rx) {
        /* Part of a request: its deadline may have given way to a write deadline meanwhile. */
        if (c->timer.next == NULL)
            crest__wheel_arm(&loop->wheel, &c->timer,
                             c->rx->head_len ? loop->app->opts.body_timeout_ms
                                             : loop->app->opts.header_timeout_ms);
        return;
    }
    if (loop->draining) {
        /* Not closed at once: a request may be on its way (see DRAIN_GRACE_MS); it is answered
         * with Connection: close, and otherwise the close is a clean one (conn_linger). */
        crest__wheel_arm(&loop->wheel, &c->timer, DRAIN_GRACE_MS);
        return;
    }
    crest__wheel_arm(&loop->wheel, &c->timer, loop->app->opts.keepalive_timeout_ms);
}

/* ---- going on after a pause ---- */

static void on_resume(uv_idle_t *h);

/* Queue c to go on with its buffered input after the loop has polled the others. */
static void park(crest__conn_t *c) {
    crest_loop_t *loop = conn_loop(c);
    if (c->flags & CONN_PARKED)
        return;
    c->flags |= CONN_PARKED;
    c->parked_next = NULL;
    if (loop->parked_tail)
        loop->parked_tail->parked_next = c;
    else
        loop->parked = c;
    loop->parked_tail = c;
    loop->nparked++;
    if (!uv_is_active((uv_handle_t *)&loop->resume_idle))
        uv_idle_start(&loop->resume_idle, on_resume);
}

/* The connection has no request in progress and nothing blocks it: decide what comes next. */
static void conn_next(crest__conn_t *c) {
    if (c->flags & (CONN_CLOSING | CONN_LINGERING | CONN_CLOSE_AFTER_WRITE) || c->proto || c->req)
        return;
    crest_loop_t *loop = conn_loop(c);
    if (crest__conn_buffered(c) > loop->app->opts.max_output) {
        pause_reading(c); /* on_write comes back here */
        return;
    }
    if (c->flags & CONN_INPUT_PENDING) {
        pause_reading(c); /* nothing more is read until what we have is parsed */
        park(c);
        return;
    }
    resume_reading(c);
    conn_idle(c);
}

static void on_resume(uv_idle_t *h) {
    crest_loop_t *loop = CREST__CONTAINER_OF(h, crest_loop_t, resume_idle);
    const crest_app_opts_t *o = &loop->app->opts;
    /* One round: each connection parked before it gets one batch, for as long as the round's
     * time lasts; the rest go first in the next round, after the loop has polled again, so a
     * request that just arrived waits for one round at most, however many pipelines are busy.
     * Connections are taken off the head one at a time (never a detached chain): handling one
     * may close and unpark another. */
    size_t n = loop->nparked;
    uint64_t start = uv_hrtime(), budget = 2 * (uint64_t)o->batch_us * 1000;
    while (n-- > 0 && loop->parked != NULL && uv_hrtime() - start < budget) {
        crest__conn_t *c = loop->parked;
        loop->parked = c->parked_next;
        if (loop->parked == NULL)
            loop->parked_tail = NULL;
        loop->nparked--;
        c->parked_next = NULL;
        c->flags &= ~(uint32_t)CONN_PARKED;
        if (c->flags & CONN_CLOSING)
            continue;
        if (c->req == NULL && (c->flags & CONN_INPUT_PENDING) &&
            crest__conn_buffered(c) <= o->max_output)
            conn_process(c, NULL, 0);
        else
            conn_next(c);
    }
    if (loop->parked == NULL)
        uv_idle_stop(h);
}

/* ---- reading and parsing ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    crest_loop_t *loop = h->loop->data;
    buf->base = loop->scratch;
    buf->len = loop->scratch_size;
}

/* Make room for `need` bytes; rx->cap is what the memory budget holds for rx (CREST_ENOBUFS
 * when it is used up). */
static int rx_reserve(crest__conn_t *c, crest__rx_t *rx, size_t need) {
    if (need <= rx->cap)
        return 0;
    size_t cap = rx->cap ? rx->cap : 1024;
    while (cap < need)
        cap *= 2;
    crest_app_t *app = conn_loop(c)->app;
    if (crest__mem_take(app, cap - rx->cap) != 0)
        return CREST_ENOBUFS;
    char *p = realloc(rx->buf, cap);
    if (p == NULL) {
        crest__mem_give(app, NULL, cap - rx->cap);
        return CREST_ENOMEM;
    }
    rx->buf = p;
    rx->cap = cap;
    return 0;
}

/* Forget the parse state of the request at the front (a new request starts there). */
static void rx_reset(crest__rx_t *rx) {
    rx->scanned = rx->head_len = rx->body_len = rx->raw_off = 0;
    rx->continue_sent = rx->header_timer = 0;
}

/* Keep the unfinished request data[0..len) for the next read. */
static int rx_save(crest__conn_t *c, const char *data, size_t len) {
    if (c->rx == NULL && (c->rx = calloc(1, sizeof(*c->rx))) == NULL)
        return CREST_ENOMEM;
    crest__rx_t *rx = c->rx;
    if (data == rx->buf) {
        rx->len = len;
        return 0;
    }
    int rc = rx_reserve(c, rx, len);
    if (rc != 0)
        return rc;
    memmove(rx->buf, data, len);
    rx->len = len;
    return 0;
}

static void reject(crest__conn_t *c, int status) {
    rx_free(c);
    crest__send_error(c, status, 1);
}

static void send_continue(crest__conn_t *c, const crest__http_head_t *head) {
    crest__rx_t *rx = c->rx;
    if (!head->expect_continue || head->version_minor == 0 || rx == NULL || rx->continue_sent)
        return;
    rx->continue_sent = 1;
    crest__outq_t *q = crest__conn_out(c);
    if (q == NULL || crest__outq_copy(q, "HTTP/1.1 100 Continue\r\n\r\n", 25) != 0)
        crest__conn_close(c);
}

static int mw_matches(const crest__mw_t *mw, crest_str_t path) {
    if (mw->len == 0)
        return 1;
    if (path.len < mw->len || memcmp(path.ptr, mw->prefix, mw->len) != 0)
        return 0;
    return path.len == mw->len || path.ptr[mw->len] == '/' || mw->prefix[mw->len - 1] == '/';
}

static void dispatch(crest__conn_t *c, crest__http_head_t *head, crest_str_t body) {
    crest_loop_t *loop = conn_loop(c);
    crest_app_t *app = loop->app;
    crest_req_t *req = crest__req_new(loop, c);
    if (req == NULL) {
        reject(c, 503);
        return;
    }
    crest__match_t match;
    req->head = head;
    req->match = &match;
    match.nparams = 0;
    req->body = body;
    req->method = head->method_id;
    req->version_minor = (unsigned)head->version_minor & 1;
    req->keep_alive = head->keep_alive && !loop->draining;
    req->head_only = head->method_id == CREST_METHOD_HEAD;
    c->req = req;
    c->requests++;

    int rc = CREST_NEXT;
    for (size_t i = 0; i < app->nmws && rc == CREST_NEXT && c->req == req; i++)
        if (mw_matches(&app->mws[i], head->path))
            rc = app->mws[i].cb(req, app->mws[i].data);
    if (rc == CREST_NEXT && c->req == req) {
        int found = crest__router_match(app->router, head->method_id, head->path.ptr,
                                        head->path.len, &match);
        if (found == 200)
            rc = match.route->cb(req, match.route->data);
        if (rc == CREST_NEXT && c->req == req) {
            if (found == 405) {
                char allow[128];
                crest__router_allow(match.allowed, allow, sizeof(allow));
                crest_res_header(req, "Allow", allow);
                rc = crest_res_status(req, 405);
            } else if (app->not_found) {
                rc = app->not_found(req, app->not_found_data);
            }
            if (rc == CREST_NEXT && c->req == req)
                rc = crest_res_status(req, 404);
        }
    }
    if (c->req != req)
        return; /* answered, or the connection closed (req then lives on detached) */
    /* Still open: answered later. The views into the read buffer end here. */
    req->head = NULL;
    req->match = NULL;
    req->body = (crest_str_t){NULL, 0};
    if (rc < 0) {
        crest__log(app, CREST_LOG_ERROR, "handler failed: %s", crest_strerror(rc));
        if (req->started)
            crest__conn_close(c);
        else
            crest_res_status(req, rc == CREST_ENOMEM ? 503 : 500);
    }
}

/* The head is complete and the body is not: its deadline starts (once, not per read). */
static void body_begins(crest__conn_t *c, size_t head_len) {
    crest_loop_t *loop = conn_loop(c);
    c->rx->head_len = head_len;
    c->rx->body_start = uv_now(&loop->uv);
    crest__wheel_arm(&loop->wheel, &c->timer, loop->app->opts.body_timeout_ms);
}

/* Handle the request at p[0..n). rx is the connection's rx when p is its buffer (then the
 * request's parse state continues), NULL when p is the loop's scratch. Returns the bytes the
 * request took (it was answered or rejected), or 0 when it is incomplete and was saved. */
static size_t handle_request(crest__conn_t *c, char *p, size_t n, crest__rx_t *rx) {
    crest_loop_t *loop = conn_loop(c);
    const crest_app_opts_t *o = &loop->app->opts;
    crest__http_head_t *head = loop->head;
    crest__http_limits_t limits = {o->max_request_line, o->max_header_bytes, o->max_headers};
    size_t scanned = rx && rx->head_len == 0 ? rx->scanned : 0;
    int r = crest__http_parse_head(p, n, &limits, &scanned, head);
    if (r < 0) {
        reject(c, -r);
        return n;
    }
    if (r == 0) {
        if (rx_save(c, p, n) != 0) {
            reject(c, 503); /* out of memory, or the buffer budget is used up */
            return n;
        }
        c->rx->scanned = scanned;
        if (!c->rx->header_timer) {
            /* The header deadline runs from the first byte, not from the last read. */
            c->rx->header_timer = 1;
            crest__wheel_arm(&loop->wheel, &c->timer, o->header_timeout_ms);
        }
        return 0;
    }
    size_t hl = (size_t)r;
    if (head->version_minor == 1 && !head->has_host) {
        reject(c, 400);
        return n;
    }
    if (head->expect_unknown) {
        reject(c, 417);
        return n;
    }
    crest_str_t body = {NULL, 0};
    size_t used = hl;
    if (head->body_kind == CREST__BODY_LENGTH) {
        if (head->content_length > o->max_body) {
            reject(c, 413);
            return n;
        }
        size_t cl = (size_t)head->content_length;
        if (n - hl < cl) {
            if (rx != NULL && rx->head_len > 0)
                return 0; /* more of a body already under way: its deadline is running */
            /* The whole body is reserved (and charged to the budget) now: refusing it before
             * the client sends it beats refusing it half-way. */
            if (rx_save(c, p, n) != 0 || rx_reserve(c, c->rx, hl + cl) != 0) {
                reject(c, 503);
                return n;
            }
            body_begins(c, hl);
            send_continue(c, head);
            return 0;
        }
        body = (crest_str_t){p + hl, cl};
        used = hl + cl;
    } else if (head->body_kind == CREST__BODY_CHUNKED) {
        crest__http_chunked_t local;
        crest__http_chunked_t *ch = &local;
        size_t body_len = 0, raw_off = hl;
        if (rx && rx->head_len) {
            ch = &rx->chunked;
            body_len = rx->body_len;
            raw_off = rx->raw_off;
        } else {
            crest__http_chunked_init(ch, 4096, o->max_header_bytes);
        }
        size_t dec = n - raw_off, consumed = 0;
        int d = crest__http_chunked_decode(ch, p + raw_off, &dec, &consumed);
        if (d < 0) {
            reject(c, 400);
            return n;
        }
        memmove(p + hl + body_len, p + raw_off, dec);
        body_len += dec;
        raw_off += consumed;
        if (body_len > o->max_body) {
            reject(c, 413);
            return n;
        }
        if (d == 0) {
            /* Keep the head and the body decoded so far; all raw input was consumed. */
            crest__http_chunked_t saved = *ch;
            int first = rx == NULL || rx->head_len == 0;
            if (rx_save(c, p, hl + body_len) != 0) {
                reject(c, 503);
                return n;
            }
            if (first)
                body_begins(c, hl);
            c->rx->body_len = body_len;
            c->rx->raw_off = hl + body_len;
            c->rx->chunked = saved;
            send_continue(c, head);
            return 0;
        }
        body = (crest_str_t){p + hl, body_len};
        used = raw_off;
    }
    if (c->tx != NULL && crest__mem_over(loop->app)) {
        /* Past the buffer budget, a connection that already holds unsent output gets no more
         * work (a fresh one still does: /metrics must answer during an overload). */
        reject(c, 503);
        return n;
    }
    if (c->tx != NULL) {
        /* Output of earlier requests is still being written: its deadline goes on. */
        c->tx->last_left = c->tcp.write_queue_size + c->tx->pending.total;
        crest__wheel_arm(&loop->wheel, &c->timer, o->write_timeout_ms);
    } else {
        crest__wheel_disarm(&loop->wheel, &c->timer);
    }
    dispatch(c, head, body);
    return used;
}

/* Parse and answer what arrived. data is the scratch buffer (or NULL, len 0, to go on with
 * input buffered in rx). One call is one batch: it stops early, keeping the rest in rx, once the
 * connection has max_output queued (before the next request's work, so a client that does not
 * read cannot make us produce more) or has used its share of the loop (batch_requests requests
 * or batch_us), so that one connection's pipeline cannot hold the others up. */
static void conn_batch(crest__conn_t *c, char *data, size_t len, uint64_t start) {
    crest_loop_t *loop = conn_loop(c);
    const crest_app_opts_t *o = &loop->app->opts;
    crest__http_date_refresh(loop);
    c->flags &= ~(uint32_t)CONN_INPUT_PENDING;
    if (c->rx) {
        crest__rx_t *rx = c->rx;
        if (len > 0) {
            if (rx_reserve(c, rx, rx->len + len) != 0) {
                reject(c, 503);
                crest__conn_flush(c);
                return;
            }
            memcpy(rx->buf + rx->len, data, len);
            rx->len += len;
        }
        data = rx->buf;
        len = rx->len;
    }
    if (loop->batch_conn != NULL && loop->batch_conn != c)
        crest__conn_flush(loop->batch_conn);
    loop->batch_conn = c;
    c->flags |= CONN_IN_DISPATCH;
    size_t pos = 0;
    unsigned served = 0;
    size_t out0 = 0;
    while (pos < len && c->req == NULL && c->proto == NULL &&
           !(c->flags & (CONN_CLOSE_AFTER_WRITE | CONN_CLOSING))) {
        if (served > 0) {
            size_t out = crest__conn_buffered(c);
            if (served >= o->batch_requests || out > o->max_output || out - out0 > BATCH_OUTPUT)
                break;
            /* The clock is read after the first request (one that took the whole budget ends
             * the batch) and then every few: cheap requests cannot run long, and expensive ones
             * are mostly caught by their output first. */
            if ((served == 1 || served % 4 == 0) &&
                uv_hrtime() - start > (uint64_t)o->batch_us * 1000)
                break;
        } else {
            out0 = crest__conn_buffered(c);
        }
        crest__rx_t *rx = c->rx && data == c->rx->buf ? c->rx : NULL;
        size_t used = handle_request(c, data + pos, len - pos, rx);
        if (used == 0) {
            pos = len; /* saved in rx (from scratch) or kept in place (rx) */
            break;
        }
        served++;
        pos += used;
        if (c->rx && data == c->rx->buf && !(c->flags & CONN_CLOSING)) {
            /* The request at the front of rx is done: move the rest to the front with a fresh
             * parse state, or free rx when nothing is left. */
            crest__rx_t *r = c->rx;
            size_t rest = len - pos;
            if (rest == 0) {
                rx_free(c);
                break;
            }
            memmove(r->buf, r->buf + pos, rest);
            r->len = rest;
            rx_reset(r);
            data = r->buf;
            len = rest;
            pos = 0;
        }
    }
    if (c->proto != NULL) {
        /* Upgraded: what followed the upgrade request belongs to the new protocol. */
        c->flags &= ~CONN_IN_DISPATCH;
        crest__conn_flush(c);
        if (pos < len && !(c->flags & CONN_CLOSING))
            c->proto->on_data(c, data + pos, len - pos);
        rx_free(c); /* after on_data: data may point into it */
        return;
    }
    if (pos < len && !(c->flags & (CONN_CLOSING | CONN_CLOSE_AFTER_WRITE))) {
        /* Stopped by a request answered later or by the batch's budget: keep the rest. */
        if (rx_save(c, data + pos, len - pos) != 0) {
            crest__conn_close(c);
        } else {
            rx_reset(c->rx);
            c->flags |= CONN_INPUT_PENDING;
        }
    }
    c->flags &= ~CONN_IN_DISPATCH;
    crest__conn_flush(c);
    if (c->req != NULL && c->rx != NULL && c->rx->len > o->max_header_bytes)
        pause_reading(c); /* do not buffer an unbounded pipeline behind a slow answer */
    conn_next(c);
}

/* The batches of this turn of the loop (since it last went to poll) have run longer than two
 * batches' budget. */
static int loop_busy(crest_loop_t *loop) {
    return loop->turn_ns > 2 * (uint64_t)loop->app->opts.batch_us * 1000;
}

static void on_prepare(uv_prepare_t *p) {
    CREST__CONTAINER_OF(p, crest_loop_t, turn_prepare)->turn_ns = 0;
}

/* One batch, its time added to the loop's turn. */
static void conn_process(crest__conn_t *c, char *data, size_t len) {
    crest_loop_t *loop = conn_loop(c);
    uint64_t start = uv_hrtime();
    conn_batch(c, data, len, start);
    loop->turn_ns += uv_hrtime() - start;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    crest__conn_t *c = CREST__CONTAINER_OF(s, crest__conn_t, tcp);
    if (nread == 0 || (c->flags & CONN_CLOSING))
        return;
    if (nread < 0) {
        /* EOF or an error. A request being answered later is aborted. */
        crest__conn_close(c);
        return;
    }
    if (c->flags & (CONN_LINGERING | CONN_CLOSE_AFTER_WRITE))
        return; /* discarded: the connection is closing after its last response */
    if (c->proto) {
        c->proto->on_data(c, buf->base, (size_t)nread);
        return;
    }
    crest_loop_t *loop = conn_loop(c);
    if (c->req != NULL || loop_busy(loop)) {
        /* Pipelined input behind a request answered later waits in rx; so does input that
         * arrives when this turn of the loop has run long already (many connections ready at
         * once, each with expensive requests): it is parsed in the next round of parked
         * connections, after the loop has polled again. */
        crest__rx_t *rx = c->rx;
        if (rx == NULL && (rx = c->rx = calloc(1, sizeof(*rx))) == NULL) {
            crest__conn_close(c);
            return;
        }
        if (rx_reserve(c, rx, rx->len + (size_t)nread) != 0) {
            crest__conn_close(c);
            return;
        }
        memcpy(rx->buf + rx->len, buf->base, (size_t)nread);
        rx->len += (size_t)nread;
        c->flags |= CONN_INPUT_PENDING;
        if (c->req == NULL)
            conn_next(c); /* parks it */
        else if (rx->len > loop->app->opts.max_header_bytes)
            pause_reading(c);
        return;
    }
    conn_process(c, buf->base, (size_t)nread);
}

size_t crest__conn_buffered(const crest__conn_t *c) {
    crest_loop_t *loop = c->tcp.loop->data;
    /* Of the write in flight, only what libuv has not handed to the kernel yet: its callback
     * comes a turn later even when the kernel took everything at once, and counting those bytes
     * made a fast reader look slow. */
    size_t n = c->tx ? c->tcp.write_queue_size + c->tx->pending.total : 0;
    if (loop->batch_conn == c)
        n += loop->batch.total;
    return n;
}

void crest__conn_reading(crest__conn_t *c, int on) {
    if (on)
        resume_reading(c);
    else
        pause_reading(c);
}

int crest__conn_takeover(crest_req_t *req, const crest__proto_t *proto, void *proto_data) {
    crest__conn_t *c = req->conn;
    if (c == NULL || (c->flags & CONN_CLOSING))
        return CREST_ECANCELED;
    if (c->req != req || req->started || req->head == NULL)
        return CREST_EINVAL;
    crest_loop_t *loop = conn_loop(c);
    crest__wheel_disarm(&loop->wheel, &c->timer);
    c->proto = proto;
    c->proto_data = proto_data;
    c->req = NULL;
    crest__req_free(req);
    /* HTTP may have stopped reading (the upgrade was parked behind a request answered later, or
     * output was over max_output); the protocol keeps its own limits from here. */
    resume_reading(c);
    /* The read batch (conn_process) hands the bytes after the request to the protocol. */
    return 0;
}

void crest__conn_request_done(crest__conn_t *c) {
    c->req = NULL;
    if (c->flags & (CONN_IN_DISPATCH | CONN_CLOSING))
        return; /* the read batch in progress goes on by itself */
    crest__conn_flush(c);
    conn_next(c); /* pipelined input goes on after the loop has polled the others */
}

/* ---- accepting ----
 * The listening socket is polled and accepted here rather than through uv_listen: libuv's own
 * accept loop retries a failing accept4() at once and for ever when the process is out of
 * descriptors (EMFILE), which kept both loop threads spinning and logging and deaf to SIGTERM.
 * Here accepting pauses: at the connection cap until a connection closes (or a short retry, for
 * caps reached through other loops), and after EMFILE/ENFILE with a backoff, once the listen
 * queue has been drained with the spare descriptor so waiting clients get a clean answer. */

static void on_listener(uv_poll_t *p, int status, int events);

static void on_accept_timer(uv_timer_t *t) {
    accept_resume(CREST__CONTAINER_OF(t, crest_loop_t, accept_timer));
}

static void accept_pause(crest_loop_t *loop, uint32_t retry_ms) {
    if (!loop->accept_paused && !loop->draining) {
        uv_poll_stop(&loop->listener);
        loop->accept_paused = 1;
        crest__count(&loop->refused_conns, 1);
    }
    if (loop->accept_paused)
        uv_timer_start(&loop->accept_timer, on_accept_timer, retry_ms, 0);
}

static void accept_resume(crest_loop_t *loop) {
    if (!loop->accept_paused || loop->draining)
        return;
    loop->accept_paused = 0;
    uv_timer_stop(&loop->accept_timer);
    uv_poll_start(&loop->listener, UV_READABLE, on_listener);
}

/* Out of descriptors: close the spare one, accept what waits in the queue and answer each with a
 * 503 and a close (rather than leave clients hanging in the queue), then take the spare back. */
static void accept_shed(crest_loop_t *loop) {
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                               "Retry-After: 1\r\nConnection: close\r\n\r\n";
    if (loop->spare_fd < 0)
        return;
    close(loop->spare_fd);
    loop->spare_fd = -1;
    for (int i = 0; i < loop->app->opts.backlog; i++) {
        int fd = accept4(loop->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        ssize_t n = send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL);
        (void)n; /* best effort: the close below is what matters */
        shutdown(fd, SHUT_WR);
        close(fd);
        crest__count(&loop->refused_conns, 1);
    }
    loop->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void conn_new(crest_loop_t *loop, int fd) {
    crest__conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        crest__log_limited(loop->app, &loop->log_accept, CREST_LOG_ERROR, "accept: out of memory");
        close(fd);
        return;
    }
    uv_tcp_init(&loop->uv, &c->tcp);
    crest__count(&loop->open_conns, 1);
    crest__count(&loop->accepted, 1);
    atomic_fetch_add_explicit(&loop->app->conns, 1, memory_order_relaxed);
    c->timer.cb = on_conn_timer;
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        c->flags |= CONN_CLOSING;
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    /* Responses go out in one write per batch already; Nagle would only delay them. */
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    /* A connection that never sends a byte is dropped after the header timeout. */
    crest__wheel_arm(&loop->wheel, &c->timer, loop->app->opts.header_timeout_ms);
}

static void on_listener(uv_poll_t *p, int status, int events) {
    crest_loop_t *loop = CREST__CONTAINER_OF(p, crest_loop_t, listener);
    crest_app_t *app = loop->app;
    (void)events;
    if (status < 0) {
        crest__log_limited(app, &loop->log_accept, CREST_LOG_WARN, "listener: %s",
                           uv_strerror(status));
        accept_pause(loop, ACCEPT_RETRY_MS);
        return;
    }
    for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
        int64_t open = atomic_load_explicit(&app->conns, memory_order_relaxed);
        if ((uint64_t)open >= app->opts.max_connections) {
            crest__log_limited(app, &loop->log_accept, CREST_LOG_WARN,
                               "%lld connections open, the cap (--max-connections): accepting "
                               "paused until some close",
                               (long long)open);
            accept_pause(loop, ACCEPT_RETRY_MS);
            return;
        }
        int fd = accept4(loop->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            loop->accept_backoff = 0;
            conn_new(loop, fd);
            continue;
        }
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK)
            return;
        if (err == EINTR || err == ECONNABORTED || err == EPROTO)
            continue;
        if (err == EMFILE || err == ENFILE) {
            accept_shed(loop);
            loop->accept_backoff = loop->accept_backoff ? loop->accept_backoff * 2 : 10;
            if (loop->accept_backoff > ACCEPT_BACKOFF_MAX_MS)
                loop->accept_backoff = ACCEPT_BACKOFF_MAX_MS;
            crest__log_limited(app, &loop->log_accept, CREST_LOG_ERROR,
                               "accept: %s with %lld connections open: accepting paused for "
                               "%u ms (raise the open-file limit or lower --max-connections)",
                               strerror(err), (long long)open, loop->accept_backoff);
            accept_pause(loop, loop->accept_backoff);
            return;
        }
        /* ENOBUFS, ENOMEM and the like: the kernel is short of memory; back off too. */
        crest__log_limited(app, &loop->log_accept, CREST_LOG_ERROR, "accept: %s", strerror(err));
        accept_pause(loop, ACCEPT_RETRY_MS);
        return;
    }
}

int crest__http_loop_start(crest_loop_t *loop) {
    uv_idle_init(&loop->uv, &loop->resume_idle);
    uv_prepare_init(&loop->uv, &loop->turn_prepare);
    uv_prepare_start(&loop->turn_prepare, on_prepare);
    uv_unref((uv_handle_t *)&loop->turn_prepare); /* it keeps no loop alive */
    uv_timer_init(&loop->uv, &loop->accept_timer);
    int rc = uv_poll_init(&loop->uv, &loop->listener, loop->listen_fd);
    if (rc != 0)
        return rc;
    loop->scratch_size = SCRATCH_SIZE;
    loop->scratch = malloc(SCRATCH_SIZE);
    loop->head = malloc(sizeof(crest__http_head_t));
    if (loop->scratch == NULL || loop->head == NULL)
        return CREST_ENOMEM;
    loop->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    crest__http_date_refresh(loop);
    return uv_poll_start(&loop->listener, UV_READABLE, on_listener);
}

void crest__http_loop_stop(crest_loop_t *loop) {
    crest__outq_free(&loop->batch);
    while (loop->free_reqs) {
        crest_req_t *r = loop->free_reqs;
        loop->free_reqs = r->next_free;
        crest_buf_free(&r->res_headers);
        free(r);
    }
    loop->stopped = 1;
    if (loop->spare_fd >= 0)
        close(loop->spare_fd);
    loop->spare_fd = -1;
    if (loop->listen_fd >= 0)
        close(loop->listen_fd);
    loop->listen_fd = -1;
    free(loop->scratch);
    free(loop->head);
    loop->scratch = NULL;
    loop->head = NULL;
}

/* ---- shutdown ---- */

static void drain_walk(uv_handle_t *h, void *arg) {
    crest_loop_t *loop = arg;
    if (h->type != UV_TCP || uv_is_closing(h))
        return;
    crest__conn_t *c = CREST__CONTAINER_OF(h, crest__conn_t, tcp);
    if (loop->stopped) /* forced */
        crest__conn_close(c);
    else
        conn_idle(c); /* closes it when idle; busy ones close after their response */
}

static void on_shutdown_timeout(uv_timer_t *t) {
    crest__http_loop_force(CREST__CONTAINER_OF(t, crest_loop_t, shutdown_timer));
}

void crest__http_loop_drain(crest_loop_t *loop) {
    if (loop->draining)
        return;
    loop->draining = 1;
    /* Stop accepting; connections still in the queue get a reset, as from any server that
     * stops listening (with SO_REUSEPORT, new ones go to listeners still open). */
    if (uv_is_active((uv_handle_t *)&loop->accept_timer))
        uv_timer_stop(&loop->accept_timer);
    if (loop->listener.type == UV_POLL && !uv_is_closing((uv_handle_t *)&loop->listener))
        uv_close((uv_handle_t *)&loop->listener, NULL); /* no longer watched from here on */
    if (loop->listen_fd >= 0)
        close(loop->listen_fd);
    loop->listen_fd = -1;
    uv_walk(&loop->uv, drain_walk, loop);
    uv_timer_start(&loop->shutdown_timer, on_shutdown_timeout, loop->app->opts.shutdown_timeout_ms,
                   0);
    crest__loop_maybe_finish(loop);
}

void crest__http_loop_force(crest_loop_t *loop) {
    if (!loop->draining)
        crest__http_loop_drain(loop);
    if (loop->finished)
        return;
    crest__log(loop->app, CREST_LOG_WARN, "loop %d: shutdown timeout, closing %llu connections",
               loop->index,
               (unsigned long long)atomic_load_explicit(&loop->open_conns, memory_order_relaxed));
    int was = loop->stopped;
    loop->stopped = 1; /* makes drain_walk close every connection */
    uv_walk(&loop->uv, drain_walk, loop);
    loop->stopped = was;
    crest__loop_fire_timers(loop);
}
