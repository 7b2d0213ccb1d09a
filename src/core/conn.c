/* Client connections: accept, read, write, park, time out, linger, close, drain.
 *
 * A connection knows bytes, not requests: what it reads goes to its protocol (c->proto: HTTP/1.1
 * from the first byte, then perhaps a WebSocket or an event stream), and what the protocol
 * queues with crest__conn_out is written here. Reads land in the loop's scratch buffer, which
 * the protocol parses in place. Output of one read batch goes to the loop's batch queue and out
 * in one uv_try_write (a writev) when the batch is flushed; only what the kernel does not take
 * at once is moved to the connection's own tx.
 *
 * Below a connection is its transport: a TCP socket (uv_tcp_t), TLS over it (core/tls.c), or
 * memory (the test client's, crest__conn_adopt_memory). A memory connection is a crest__conn_t
 * like the others, with the same protocol, timers, parking, drain and close; its uv_tcp_t is
 * initialised but never opened, so it has no descriptor yet is a handle that the loop's walks
 * (drain_walk) and uv_close see. Where a socket would be read, written or shut down, CONN_MEMORY
 * (one flag test, on paths that test flags already) turns to the memory transport instead: its
 * state hangs off c->tcp.data (unused by sockets), so a TCP connection does not grow by a byte. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

#define SCRATCH_SIZE (64 * 1024)
#define TLS_STAGE_SIZE (16 * 1024) /* one TLS record */
#define LINGER_MS 2000
#define ACCEPTS_PER_WAKEUP 64 /* then other connections of the loop get their turn */
#define ACCEPT_RETRY_MS 100
#define ACCEPT_BACKOFF_MAX_MS 1000

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void accept_resume(crest_loop_t *loop);
static void tx_free(crest__conn_t *c, crest__tx_t *tx);
static void read_start(crest__conn_t *c);

/* The memory transport, at the end of the file. */
typedef struct memconn_s memconn_t;
static void mem_free(memconn_t *m);
static void mem_cancel(crest__conn_t *c);
static void mem_end(crest__conn_t *c);
static void mem_read_start(crest__conn_t *c);
static int mem_write(crest__conn_t *c, const uv_buf_t *bufs, size_t n);
static int mem_write_async(crest__conn_t *c, const uv_buf_t *bufs, size_t n);
static int64_t mem_sendfile(crest__conn_t *c, int fd, uint64_t *off, uint64_t len);

static crest_loop_t *conn_loop(const crest__conn_t *c) {
    return crest__conn_loop(c);
}

/* ---- closing ---- */

static void on_close(uv_handle_t *h) {
    crest__conn_t *c = CREST__CONTAINER_OF(h, crest__conn_t, tcp);
    crest_loop_t *loop = conn_loop(c);
    memconn_t *m = (c->flags & CONN_MEMORY) ? c->tcp.data : NULL;
    free(c);
    crest__count(&loop->open_conns, -1);
    int64_t open = atomic_fetch_sub_explicit(&loop->rt->conns, 1, memory_order_relaxed) - 1;
    if (m != NULL)
        mem_free(m); /* tells the client, after the counts: the connection is gone */
    if (loop->accept_paused && (uint64_t)open < loop->rt->opts->max_connections)
        accept_resume(loop);
    crest__loop_maybe_finish(loop);
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
    if (loop->batch_conn == c) {
        crest__outq_free(&loop->batch);
        loop->batch_conn = NULL;
    }
    if (c->proto && c->proto->on_close)
        c->proto->on_close(c);
    crest__tls_free(c);
    if (c->flags & CONN_MEMORY)
        mem_cancel(c); /* a write's completion, input: nothing more comes through the kick */
    if (c->tx != NULL && (c->tx->inflight.total == 0 || (c->flags & CONN_MEMORY))) {
        /* Output queued but never handed to libuv (or handed to a memory client, whose
         * completion was just cancelled): no on_write will come to free it. */
        tx_free(c, c->tx);
        c->tx = NULL;
    }
    /* A write in progress is cancelled by uv_close; on_write then frees the tx. */
    uv_close((uv_handle_t *)&c->tcp, on_close);
}

void crest__conn_linger(crest__conn_t *c) {
    crest_loop_t *loop = conn_loop(c);
    if (c->flags & (CONN_LINGERING | CONN_CLOSING))
        return;
    if (c->tls != NULL && crest__tls_close_notify(c)) {
        /* Over TLS the end is announced with close_notify before the FIN (RFC 8446 6.1):
         * without it a client cannot tell a body delimited by the close from one cut short. The
         * linger comes back here once the alert is written. */
        c->flags |= CONN_CLOSE_AFTER_WRITE;
        crest__conn_raw_flush(c);
        return;
    }
    c->flags |= CONN_LINGERING;
    if (c->flags & CONN_MEMORY) {
        mem_end(c); /* the memory client's EOF */
    } else {
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0 || shutdown(fd, SHUT_WR) != 0) {
            crest__conn_close(c);
            return;
        }
    }
    if (c->flags & CONN_PARKED)
        unpark(c);
    if (c->flags & CONN_READ_PAUSED) {
        c->flags &= ~CONN_READ_PAUSED;
        read_start(c);
    }
    crest__wheel_arm(&loop->wheel, &c->timer, LINGER_MS);
}

/* ---- reading ---- */

static void read_start(crest__conn_t *c) {
    if (c->flags & CONN_MEMORY)
        mem_read_start(c);
    else
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

void crest__conn_reading(crest__conn_t *c, int on) {
    if (!on) {
        if (!(c->flags & CONN_READ_PAUSED)) {
            c->flags |= CONN_READ_PAUSED;
            if (!(c->flags & CONN_MEMORY)) /* memory input waits for the flag to clear */
                uv_read_stop((uv_stream_t *)&c->tcp);
        }
    } else if ((c->flags & CONN_READ_PAUSED) && !(c->flags & CONN_CLOSING)) {
        c->flags &= ~CONN_READ_PAUSED;
        read_start(c);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    crest_loop_t *loop = h->loop->data;
    buf->base = loop->scratch;
    buf->len = loop->scratch_size;
}

/* Bytes read (from the socket, or handed in by a memory client) to the transport above. */
static void conn_input(crest__conn_t *c, char *data, size_t len) {
    if (c->flags & (CONN_LINGERING | CONN_CLOSE_AFTER_WRITE))
        return; /* discarded: the connection is closing after its last output */
    if (c->tls)
        crest__tls_on_read(c, data, len);
    else
        c->proto->on_data(c, data, len);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    crest__conn_t *c = CREST__CONTAINER_OF(s, crest__conn_t, tcp);
    if (nread == 0 || (c->flags & CONN_CLOSING))
        return;
    if (nread < 0) {
        /* EOF or an error. */
        crest__conn_close(c);
        return;
    }
    conn_input(c, buf->base, (size_t)nread);
}

/* ---- going on after a pause ---- */

static void on_resume(uv_idle_t *h) {
    crest_loop_t *loop = CREST__CONTAINER_OF(h, crest_loop_t, resume_idle);
    /* One round: each connection parked before it gets one turn, for as long as the round's
     * time lasts; the rest go first in the next round, after the loop has polled again, so input
     * that just arrived waits for one round at most, however many pipelines are busy.
     * Connections are taken off the head one at a time (never a detached chain): handling one
     * may close and unpark another. */
    size_t n = loop->nparked;
    uint64_t start = uv_hrtime(), budget = 2 * (uint64_t)loop->rt->opts->batch_us * 1000;
    while (n-- > 0 && loop->parked != NULL && uv_hrtime() - start < budget) {
        crest__conn_t *c = loop->parked;
        loop->parked = c->parked_next;
        if (loop->parked == NULL)
            loop->parked_tail = NULL;
        loop->nparked--;
        c->parked_next = NULL;
        c->flags &= ~(uint32_t)CONN_PARKED;
        if (!(c->flags & CONN_CLOSING) && c->proto->on_resume)
            c->proto->on_resume(c);
    }
    if (loop->parked == NULL)
        uv_idle_stop(h);
}

void crest__conn_park(crest__conn_t *c) {
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

int crest__loop_busy(const crest_loop_t *loop) {
    return loop->turn_ns > 2 * (uint64_t)loop->rt->opts->batch_us * 1000;
}

static void on_prepare(uv_prepare_t *p) {
    CREST__CONTAINER_OF(p, crest_loop_t, turn_prepare)->turn_ns = 0;
}

/* ---- writing ---- */

/* Hand the kernel what it takes of q now (one writev): the bytes written, 0 when it takes none,
 * or a negative error. Nothing is consumed from q. */
static int outq_try_write(crest__conn_t *c, crest__outq_t *q) {
    uv_buf_t stackbufs[32];
    uv_buf_t *bufs = q->nsegs <= 32 ? stackbufs : malloc(q->nsegs * sizeof(*bufs));
    if (bufs == NULL)
        return CREST_ENOMEM;
    size_t n = crest__outq_bufs(q, 0, 0, bufs);
    int written = (c->flags & CONN_MEMORY)
                      ? mem_write(c, bufs, n)
                      : uv_try_write((uv_stream_t *)&c->tcp, bufs, (unsigned)n);
    if (bufs != stackbufs)
        free(bufs);
    return written == UV_EAGAIN ? 0 : written;
}

static void tx_start(crest__conn_t *c);

/* Keep the memory budget's count of this connection's unsent output in step (bytes shared with
 * other queues are charged once by their owner). */
static void tx_account(crest__conn_t *c, crest__tx_t *tx) {
    size_t want = tx->inflight.total - tx->inflight.shared + tx->pending.total - tx->pending.shared;
    crest_loop_t *loop = conn_loop(c);
    if (want > tx->charged)
        crest__mem_charge(loop->rt, want - tx->charged);
    else if (want < tx->charged)
        crest__mem_give(loop->rt, loop, tx->charged - want);
    tx->charged = want;
}

static void tx_free(crest__conn_t *c, crest__tx_t *tx) {
    crest_loop_t *loop = conn_loop(c);
    crest__mem_give(loop->rt, loop, tx->charged);
    crest__outq_free(&tx->inflight);
    crest__outq_free(&tx->pending);
    free(tx->bufs);
    free(tx);
}

/* The write of tx->inflight completed (libuv's callback, or a memory connection's kick). */
static void tx_written(crest__conn_t *c, crest__tx_t *tx, int status) {
    size_t seg, off;
    crest__outq_consume(&tx->inflight, tx->inflight.total, &seg, &off);
    crest__outq_reset(&tx->inflight);
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
        /* The write deadline is met; the protocol arms what comes next. */
        if ((c->proto->flags & CREST__PROTO_WRITE_DEADLINE) && !(c->flags & CONN_LINGERING))
            crest__wheel_disarm(&conn_loop(c)->wheel, &c->timer);
    }
    if (c->flags & CONN_CLOSE_AFTER_WRITE) {
        if (c->tx == NULL)
            crest__conn_linger(c);
        return;
    }
    if (c->proto->on_written)
        c->proto->on_written(c);
}

static void on_write(uv_write_t *w, int status) {
    tx_written(CREST__CONTAINER_OF(w->handle, crest__conn_t, tcp),
               CREST__CONTAINER_OF(w, crest__tx_t, req), status);
}

/* Hand tx->pending to libuv (or the memory client) as the new inflight queue. */
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
    size_t n = crest__outq_bufs(&tx->inflight, 0, 0, tx->bufs);
    int rc = (c->flags & CONN_MEMORY)
                 ? mem_write_async(c, tx->bufs, n)
                 : uv_write(&tx->req, (uv_stream_t *)&c->tcp, tx->bufs, (unsigned)n, on_write);
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
    /* Request-response protocols stop reading here; the others (WebSocket, SSE) keep limits of
     * their own and resume reading themselves, so they are not paused behind their back. */
    if ((c->proto->flags & CREST__PROTO_OUTPUT_PAUSES_READ) &&
        crest__conn_buffered(c) > loop->rt->opts->max_output)
        crest__conn_reading(c, 0);
    /* A client that takes none of its output is cut off after write_timeout; any progress (a
     * completed write, or fewer bytes left when the deadline comes) earns another period. */
    if ((c->proto->flags & CREST__PROTO_WRITE_DEADLINE) && !(c->flags & CONN_LINGERING))
        crest__conn_write_deadline(c);
}

void crest__conn_write_deadline(crest__conn_t *c) {
    crest_loop_t *loop = conn_loop(c);
    c->tx->last_left = c->tcp.write_queue_size + c->tx->pending.total;
    crest__wheel_arm(&loop->wheel, &c->timer, loop->rt->opts->write_timeout_ms);
}

static crest__tx_t *tx_new(crest__conn_t *c) {
    c->tx = calloc(1, sizeof(*c->tx));
    return c->tx;
}

crest__outq_t *crest__conn_out(crest__conn_t *c) {
    return c->tls ? crest__tls_plain(c) : crest__conn_raw_out(c);
}

crest__outq_t *crest__conn_raw_out(crest__conn_t *c) {
    crest_loop_t *loop = conn_loop(c);
    if (c->tx)
        return &c->tx->pending;
    if (loop->batch_conn == c)
        return &loop->batch;
    if (loop->batch_conn == NULL) {
        loop->batch_conn = c;
        return &loop->batch;
    }
    /* Another connection's batch is open (a handler answering for a second connection). */
    crest__tx_t *tx = tx_new(c);
    return tx ? &tx->pending : NULL;
}

void crest__conn_batch_begin(crest__conn_t *c) {
    crest_loop_t *loop = conn_loop(c);
    if (loop->batch_conn != NULL && loop->batch_conn != c)
        crest__conn_flush(loop->batch_conn);
    loop->batch_conn = c;
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
    crest__outq_consume(q, (size_t)written, &seg, &off);
    if (seg < q->nsegs) {
        crest__outq_t rest;
        crest__outq_take(&rest, q, seg, off);
        *q = rest;
    } else {
        crest__outq_reset(q);
    }
    return 0;
}

void crest__conn_flush(crest__conn_t *c) {
    if (c->tls != NULL && !(c->flags & CONN_CLOSING) && crest__tls_encrypt(c) != 0) {
        crest__conn_close(c);
        return;
    }
    crest__conn_raw_flush(c);
}

void crest__conn_raw_flush(crest__conn_t *c) {
    crest_loop_t *loop = conn_loop(c);
    if (c->flags & CONN_CLOSING)
        return;
    if (loop->batch_conn == c) {
        crest__outq_t *q = &loop->batch;
        loop->batch_conn = NULL;
        if (q->total > 0) {
            int written = 0;
            /* A protocol waiting for on_written needs the callback to come, so its output always
             * takes the uv_write path (whose callback is asynchronous even when the kernel takes
             * everything at once). */
            if (!(c->flags & CONN_NOTIFY_WRITTEN)) {
                written = outq_try_write(c, q);
                if (written < 0) {
                    crest__outq_free(q);
                    crest__conn_close(c);
                    return;
                }
            }
            size_t seg, off;
            crest__outq_consume(q, written > 0 ? (size_t)written : 0, &seg, &off);
            if (seg < q->nsegs) {
                /* The kernel took only part: the rest becomes the connection's own. */
                if (tx_new(c) == NULL) {
                    crest__outq_free(q);
                    crest__conn_close(c);
                    return;
                }
                crest__outq_take(&c->tx->pending, q, seg, off);
            } else {
                crest__outq_reset(q);
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
    if (c->flags & CONN_CLOSE_AFTER_WRITE)
        crest__conn_linger(c);
}

int64_t crest__conn_sendfile(crest__conn_t *c, int fd, uint64_t *off, uint64_t len) {
    if (c->flags & CONN_CLOSING)
        return CREST_ECANCELED;
    if (c->flags & CONN_MEMORY)
        return mem_sendfile(c, fd, off, len);
    uv_os_fd_t sock;
    if (uv_fileno((const uv_handle_t *)&c->tcp, &sock) != 0)
        return CREST_EINVAL;
    off_t o = (off_t)*off;
    /* One call moves what the socket buffer takes; a cap keeps a huge file from asking more. */
    ssize_t n = sendfile(sock, fd, &o, len < ((uint64_t)1 << 30) ? (size_t)len : (size_t)1 << 30);
    if (n > 0) {
        *off = (uint64_t)o;
        return n;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    int err = n == 0 ? CREST_EIO : -errno; /* 0: the file is shorter than it was */
    crest__conn_close(c);
    return err;
}

size_t crest__conn_buffered(const crest__conn_t *c) {
    crest_loop_t *loop = c->tcp.loop->data;
    /* Of the write in flight, only what libuv has not handed to the kernel yet: its callback
     * comes a turn later even when the kernel took everything at once, and counting those bytes
     * made a fast reader look slow. */
    size_t n = c->tx ? c->tcp.write_queue_size + c->tx->pending.total : 0;
    if (loop->batch_conn == c)
        n += loop->batch.total;
    if (c->tls)
        n += crest__tls_pending(c);
    return n;
}

/* ---- the connection's timer ---- */

static void on_conn_timer(crest__wheel_node_t *node) {
    crest__conn_t *c = CREST__CONTAINER_OF(node, crest__conn_t, timer);
    crest_loop_t *loop = conn_loop(c);
    if (c->flags & (CONN_LINGERING | CONN_CLOSING)) {
        crest__conn_close(c); /* linger over */
        return;
    }
    if (c->tx != NULL && (c->proto->flags & CREST__PROTO_WRITE_DEADLINE)) {
        /* The write deadline: libuv reports no partial progress, so compare what is left. */
        size_t left = c->tcp.write_queue_size + c->tx->pending.total;
        if (left < c->tx->last_left) {
            c->tx->last_left = left;
            crest__wheel_arm(&loop->wheel, &c->timer, loop->rt->opts->write_timeout_ms);
            return;
        }
        crest__count(&loop->write_timeouts, 1);
        crest__conn_close(c); /* a reader that stopped reading */
        return;
    }
    c->proto->on_timer(c);
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

/* Out of descriptors: close the spare one, accept what waits in the queue and give each the
 * protocol's refusal (an HTTP 503) and a close, rather than leave clients hanging in the queue,
 * then take the spare back. */
static void accept_shed(crest_loop_t *loop) {
    const crest__rt_hooks_t *h = loop->rt->hooks;
    if (loop->spare_fd < 0)
        return;
    close(loop->spare_fd);
    loop->spare_fd = -1;
    for (int i = 0; i < loop->rt->opts->backlog; i++) {
        int fd = accept4(loop->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        if (loop->rt->tls == NULL) { /* a TLS client could not read it before a handshake */
            ssize_t n = send(fd, h->refusal, h->refusal_len, MSG_NOSIGNAL);
            (void)n; /* best effort: the close below is what matters */
        }
        shutdown(fd, SHUT_WR);
        close(fd);
        crest__count(&loop->refused_conns, 1);
    }
    loop->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

void crest__addr_from_sockaddr(crest__addr_t *a, const void *sockaddr) {
    const struct sockaddr *sa = sockaddr;
    memset(a, 0, sizeof(*a));
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = sockaddr;
        a->family = 4;
        a->ip[10] = a->ip[11] = 0xff;
        memcpy(a->ip + 12, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = sockaddr;
        a->family = 6;
        memcpy(a->ip, &in6->sin6_addr, 16);
    }
}

size_t crest__addr_format(const crest__addr_t *a, char *buf, size_t cap) {
    const char *s = NULL;
    if (a->family == 4 && cap >= 16) {
        /* By hand: glibc's inet_ntop formats with sprintf, which cost more than the rest of an
         * access log line (this runs once per logged request). */
        char *o = buf;
        for (int i = 12; i < 16; i++) {
            unsigned v = a->ip[i];
            if (v >= 100)
                *o++ = (char)('0' + v / 100);
            if (v >= 10)
                *o++ = (char)('0' + v / 10 % 10);
            *o++ = (char)('0' + v % 10);
            *o++ = i < 15 ? '.' : '\0';
        }
        return (size_t)(o - buf - 1);
    }
    if (a->family == 4)
        s = inet_ntop(AF_INET, a->ip + 12, buf, (socklen_t)cap);
    else if (a->family == 6)
        s = inet_ntop(AF_INET6, a->ip, buf, (socklen_t)cap);
    if (s == NULL) {
        if (cap)
            buf[0] = '\0';
        return 0;
    }
    return strlen(buf);
}

/* A new connection on `loop` (counted as accepted unless it moved from another loop), its handle
 * initialised (not opened); NULL when memory ran out. */
static crest__conn_t *conn_new(crest_loop_t *loop, const crest__addr_t *peer, int accepted) {
    crest__conn_t *c = calloc(1, sizeof(*c) + loop->rt->hooks->conn_extra);
    if (c == NULL) {
        crest__log_limited(loop->rt, &loop->log_accept, CREST_LOG_ERROR, "accept: out of memory");
        return NULL;
    }
    uv_tcp_init(&loop->uv, &c->tcp);
    crest__count(&loop->open_conns, 1);
    if (accepted)
        crest__count(&loop->accepted, 1);
    atomic_fetch_add_explicit(&loop->rt->conns, 1, memory_order_relaxed);
    c->timer.cb = on_conn_timer;
    c->peer = *peer;
    return c;
}

/* Make a connection of the accepted socket fd (its owner now): the layer above installs its
 * protocol and reading starts. Returns 0, or CREST_ENOMEM or libuv's error (fd is closed then). */
static int conn_adopt(crest_loop_t *loop, int fd, const crest__addr_t *peer) {
    crest__conn_t *c = conn_new(loop, peer, 1);
    if (c == NULL) {
        close(fd);
        return CREST_ENOMEM;
    }
    int rc = uv_tcp_open(&c->tcp, fd);
    if (rc != 0) {
        close(fd);
        c->flags |= CONN_CLOSING;
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return rc;
    }
    /* Output goes out in one write per batch already; Nagle would only delay it. */
    uv_tcp_nodelay(&c->tcp, 1);
    if (loop->rt->tls != NULL && crest__tls_accept(c) != 0) {
        crest__conn_close(c);
        return CREST_ENOMEM;
    }
    loop->rt->hooks->conn_open(c);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    return 0;
}

/* ---- moving a connection to another loop thread ----
 *
 * The socket's descriptor is duplicated, the connection closed on its old loop (closing the
 * original descriptor: the duplicate keeps the socket open, so the client sees nothing) and the
 * duplicate made a connection on the new loop, with the TLS session carried over. libuv removes
 * the old descriptor from its epoll set before closing it, so the old loop hears nothing more of
 * the socket. */
typedef struct {
    crest__msg_t msg;
    int fd;
    crest__tls_t *tls;
    crest__addr_t peer;
    char *replay;
    size_t len;
} move_t;

static void move_free(move_t *mv) {
    if (mv->fd >= 0)
        close(mv->fd);
    crest__tls_discard(mv->tls);
    free(mv->replay);
    free(mv);
}

static void on_moved(crest_loop_t *loop, void *arg) {
    move_t *mv = arg;
    if (loop->draining) {
        move_free(mv); /* the client sees the close a draining server gives idle connections */
        return;
    }
    crest__conn_t *c = conn_new(loop, &mv->peer, 0);
    if (c == NULL) {
        move_free(mv);
        return;
    }
    if (uv_tcp_open(&c->tcp, mv->fd) != 0) {
        c->flags |= CONN_CLOSING;
        uv_close((uv_handle_t *)&c->tcp, on_close);
        move_free(mv);
        return;
    }
    mv->fd = -1;
    uv_tcp_nodelay(&c->tcp, 1);
    if (mv->tls != NULL) {
        crest__tls_attach(c, mv->tls);
        mv->tls = NULL;
    }
    loop->rt->hooks->conn_open(c);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    /* The replay is plaintext, as the protocol would have had it from the transport. */
    if (mv->len > 0)
        c->proto->on_data(c, mv->replay, mv->len);
    move_free(mv);
}

int crest__conn_move(crest__conn_t *c, crest_loop_t *to, char *replay, size_t len) {
    if (c->flags & CONN_MEMORY)
        return CREST_ENOTSUP;
    if (c->flags & (CONN_CLOSING | CONN_LINGERING | CONN_CLOSE_AFTER_WRITE))
        return CREST_ECANCELED;
    crest_loop_t *loop = conn_loop(c);
    if (c->tx != NULL || (loop->batch_conn == c && loop->batch.total > 0) ||
        (c->tls != NULL && crest__tls_pending(c) > 0))
        return CREST_EBUSY;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
        return CREST_EINVAL;
    move_t *mv = calloc(1, sizeof(*mv));
    if (mv == NULL)
        return CREST_ENOMEM;
    mv->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (mv->fd < 0) {
        int err = errno;
        free(mv);
        return err == EMFILE || err == ENFILE ? CREST_EMFILE : CREST_EINVAL;
    }
    mv->peer = c->peer;
    mv->tls = c->tls;
    mv->replay = replay;
    mv->len = len;
    mv->msg.cb = on_moved;
    mv->msg.arg = mv;
    mv->msg.borrowed = 1; /* on_moved frees mv */
    /* Taken before the post: from the post on, `to` may use them at any moment. */
    c->tls = NULL;
    if (crest__loop_post_msg(to, &mv->msg) != 0) {
        c->tls = mv->tls;
        close(mv->fd);
        free(mv);
        return CREST_ECANCELED;
    }
    /* Closed at once, in this call: this loop reads nothing more of the socket. */
    uv_read_stop((uv_stream_t *)&c->tcp);
    crest__conn_close(c);
    return 0;
}

static void on_listener(uv_poll_t *p, int status, int events) {
    crest_loop_t *loop = CREST__CONTAINER_OF(p, crest_loop_t, listener);
    crest__rt_t *rt = loop->rt;
    (void)events;
    if (status < 0) {
        crest__log_limited(rt, &loop->log_accept, CREST_LOG_WARN, "listener: %s",
                           uv_strerror(status));
        accept_pause(loop, ACCEPT_RETRY_MS);
        return;
    }
    for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
        int64_t open = atomic_load_explicit(&rt->conns, memory_order_relaxed);
        if ((uint64_t)open >= rt->opts->max_connections) {
            crest__log_limited(rt, &loop->log_accept, CREST_LOG_WARN,
                               "%lld connections open, the cap (--max-connections): accepting "
                               "paused until some close",
                               (long long)open);
            accept_pause(loop, ACCEPT_RETRY_MS);
            return;
        }
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof(peer);
        peer.ss_family = AF_UNSPEC;
        int fd = accept4(loop->listen_fd, (struct sockaddr *)&peer, &peer_len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            loop->accept_backoff = 0;
            crest__addr_t addr;
            crest__addr_from_sockaddr(&addr, &peer);
            conn_adopt(loop, fd, &addr);
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
            crest__log_limited(rt, &loop->log_accept, CREST_LOG_ERROR,
                               "accept: %s with %lld connections open: accepting paused for "
                               "%u ms (raise the open-file limit or lower --max-connections)",
                               strerror(err), (long long)open, loop->accept_backoff);
            accept_pause(loop, loop->accept_backoff);
            return;
        }
        /* ENOBUFS, ENOMEM and the like: the kernel is short of memory; back off too. */
        crest__log_limited(rt, &loop->log_accept, CREST_LOG_ERROR, "accept: %s", strerror(err));
        accept_pause(loop, ACCEPT_RETRY_MS);
        return;
    }
}

/* ---- a loop's connections: start, stop, drain ---- */

int crest__conn_loop_start(crest_loop_t *loop) {
    uv_idle_init(&loop->uv, &loop->resume_idle);
    uv_prepare_init(&loop->uv, &loop->turn_prepare);
    uv_prepare_start(&loop->turn_prepare, on_prepare);
    uv_unref((uv_handle_t *)&loop->turn_prepare); /* it keeps no loop alive */
    uv_timer_init(&loop->uv, &loop->accept_timer);
    loop->scratch_size = SCRATCH_SIZE;
    loop->scratch = malloc(SCRATCH_SIZE);
    if (loop->scratch == NULL)
        return CREST_ENOMEM;
    if (loop->rt->tls != NULL) {
        loop->tls_plain_size = SCRATCH_SIZE;
        loop->tls_plain = malloc(SCRATCH_SIZE);
        loop->tls_stage = malloc(TLS_STAGE_SIZE);
        if (loop->tls_plain == NULL || loop->tls_stage == NULL)
            return CREST_ENOMEM;
    }
    if (loop->listen_fd < 0)
        return 0; /* no listener: connections are handed over (the test client's loop) */
    int rc = uv_poll_init(&loop->uv, &loop->listener, loop->listen_fd);
    if (rc != 0)
        return rc;
    loop->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return uv_poll_start(&loop->listener, UV_READABLE, on_listener);
}

void crest__conn_loop_stop(crest_loop_t *loop) {
    crest__outq_free(&loop->batch);
    loop->stopped = 1;
    if (loop->spare_fd >= 0)
        close(loop->spare_fd);
    loop->spare_fd = -1;
    if (loop->listen_fd >= 0)
        close(loop->listen_fd);
    loop->listen_fd = -1;
    free(loop->scratch);
    free(loop->tls_plain);
    free(loop->tls_stage);
    crest__outq_free(&loop->tls_spare);
    loop->scratch = loop->tls_plain = loop->tls_stage = NULL;
}

const char crest__foreign_tcp = 0;

static void drain_walk(uv_handle_t *h, void *arg) {
    crest_loop_t *loop = arg;
    if (h->type != UV_TCP || uv_is_closing(h) || h->data == &crest__foreign_tcp)
        return;
    crest__conn_t *c = CREST__CONTAINER_OF(h, crest__conn_t, tcp);
    if (loop->stopped) /* forced */
        crest__conn_close(c);
    else
        c->proto->on_shutdown(c); /* closes it when idle; busy ones close when done */
}

static void on_shutdown_timeout(uv_timer_t *t) {
    crest__conn_loop_force(CREST__CONTAINER_OF(t, crest_loop_t, shutdown_timer));
}

void crest__conn_loop_drain(crest_loop_t *loop) {
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
    if (loop->rt->hooks->loop_drain)
        loop->rt->hooks->loop_drain(loop);
    uv_walk(&loop->uv, drain_walk, loop);
    uv_timer_start(&loop->shutdown_timer, on_shutdown_timeout, loop->rt->opts->shutdown_timeout_ms,
                   0);
    crest__loop_maybe_finish(loop);
}

void crest__conn_loop_force(crest_loop_t *loop) {
    if (!loop->draining)
        crest__conn_loop_drain(loop);
    if (loop->finished)
        return;
    crest__log(loop->rt, CREST_LOG_WARN, "loop %d: shutdown timeout, closing %llu connections",
               loop->index,
               (unsigned long long)atomic_load_explicit(&loop->open_conns, memory_order_relaxed));
    int was = loop->stopped;
    loop->stopped = 1; /* makes drain_walk close every connection */
    uv_walk(&loop->uv, drain_walk, loop);
    loop->stopped = was;
    crest__loop_fire_timers(loop);
}

/* ---- the memory transport ----
 * The test client's (http/testing.c): its bytes are handed in with crest__conn_feed and the
 * server's output goes to its sink, all on the loop's thread, with no descriptor. Input is
 * copied and delivered from a kick (a zero-delay loop timer), never from inside the caller's
 * call: the protocol runs from the loop as it does after a socket's read, and a protocol that
 * turns reading back on from inside its own on_data is not re-entered. The kick also completes
 * a write made with the uv_write path (a protocol waiting for on_written expects its callback
 * later, never during the write). Output is handed to the sink whole: a memory client takes
 * everything at once, so a memory connection has no backpressure (its output never waits in a
 * tx past the next kick). No TLS: the client speaks cleartext. */

struct memconn_s {
    crest__memsink_t sink;
    crest_buf_t in; /* input not delivered yet, from in_off */
    size_t in_off;
    int eof;       /* the client ended its input (after what is in `in`) */
    int write_due; /* a write awaits its completion (tx_written) in the kick */
    uint64_t kick; /* the pending kick's timer id, or 0 */
};

static void mem_free(memconn_t *m) {
    crest__memsink_t sink = m->sink;
    crest_buf_free(&m->in);
    free(m);
    sink.on_close(sink.arg);
}

/* Input that can go now, in pieces of the loop's scratch buffer as reads bring it; then the
 * client's EOF, once reading is on and everything before it went. */
static void mem_deliver(crest__conn_t *c) {
    memconn_t *m = c->tcp.data;
    crest_loop_t *loop = conn_loop(c);
    while (m->in_off < m->in.len && !(c->flags & (CONN_READ_PAUSED | CONN_CLOSING))) {
        size_t n = m->in.len - m->in_off;
        if (n > loop->scratch_size)
            n = loop->scratch_size;
        memcpy(loop->scratch, m->in.ptr + m->in_off, n);
        m->in_off += n;
        conn_input(c, loop->scratch, n);
    }
    if (c->flags & CONN_CLOSING)
        return; /* m goes with the connection */
    if (m->in_off == m->in.len) {
        m->in.len = 0;
        m->in_off = 0;
        if (m->in.cap > 4 * SCRATCH_SIZE) /* a large body's copy is not kept */
            crest_buf_free(&m->in);
        if (m->eof && !(c->flags & CONN_READ_PAUSED))
            crest__conn_close(c);
    }
}

static void mem_on_kick(crest_loop_t *loop, void *arg) {
    (void)loop;
    crest__conn_t *c = arg;
    memconn_t *m = c->tcp.data;
    m->kick = 0;
    if (m->write_due) {
        m->write_due = 0;
        tx_written(c, c->tx, 0);
        if (c->flags & CONN_CLOSING)
            return;
    }
    mem_deliver(c);
}

/* Have the kick run (once) soon. */
static int mem_kick(crest__conn_t *c) {
    memconn_t *m = c->tcp.data;
    if (m->kick == 0 && (m->kick = crest_loop_timer(conn_loop(c), 0, mem_on_kick, c)) == 0)
        return CREST_ENOMEM;
    return 0;
}

static void mem_cancel(crest__conn_t *c) {
    memconn_t *m = c->tcp.data;
    if (m->kick != 0)
        crest_loop_cancel(conn_loop(c), m->kick);
    m->kick = 0;
    m->write_due = 0;
}

static void mem_end(crest__conn_t *c) {
    memconn_t *m = c->tcp.data;
    if (m->sink.on_end != NULL)
        m->sink.on_end(m->sink.arg);
}

static void mem_read_start(crest__conn_t *c) {
    memconn_t *m = c->tcp.data;
    if ((m->in_off < m->in.len || m->eof) && mem_kick(c) != 0)
        crest__conn_close(c);
}

/* uv_try_write's part: the client takes everything (at most 1 GiB a call: the count is an int,
 * and the caller writes the rest next). */
static int mem_write(crest__conn_t *c, const uv_buf_t *bufs, size_t n) {
    memconn_t *m = c->tcp.data;
    const size_t cap = (size_t)1 << 30;
    size_t total = 0, i = 0;
    while (i < n && total + bufs[i].len <= cap)
        total += bufs[i++].len;
    if (i == 0) { /* one buffer over the cap: its first GiB */
        uv_buf_t b = uv_buf_init(bufs[0].base, (unsigned)cap);
        m->sink.on_output(m->sink.arg, &b, 1);
        return (int)cap;
    }
    m->sink.on_output(m->sink.arg, bufs, i);
    return (int)total;
}

/* uv_write's part: the client takes everything now; the completion comes with the kick. */
static int mem_write_async(crest__conn_t *c, const uv_buf_t *bufs, size_t n) {
    memconn_t *m = c->tcp.data;
    int rc = mem_kick(c);
    if (rc != 0)
        return rc;
    m->sink.on_output(m->sink.arg, bufs, n);
    m->write_due = 1;
    return 0;
}

/* sendfile's part: the file's bytes read into memory and handed over, a slice at a time. */
static int64_t mem_sendfile(crest__conn_t *c, int fd, uint64_t *off, uint64_t len) {
    memconn_t *m = c->tcp.data;
    size_t want = len < 4 * SCRATCH_SIZE ? (size_t)len : 4 * SCRATCH_SIZE;
    char *buf = malloc(want > 0 ? want : 1);
    if (buf == NULL)
        return CREST_ENOMEM;
    ssize_t n;
    do
        n = pread(fd, buf, want, (off_t)*off);
    while (n < 0 && errno == EINTR);
    if (n <= 0) {
        int err = n == 0 ? CREST_EIO : -errno; /* 0: the file is shorter than it was */
        free(buf);
        crest__conn_close(c);
        return err;
    }
    uv_buf_t b = uv_buf_init(buf, (unsigned)n);
    m->sink.on_output(m->sink.arg, &b, 1);
    free(buf);
    *off += (uint64_t)n;
    return n;
}

int crest__conn_adopt_memory(crest_loop_t *loop, const crest__addr_t *peer,
                             const crest__memsink_t *sink, crest__conn_t **out) {
    *out = NULL;
    memconn_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return CREST_ENOMEM;
    crest__conn_t *c = conn_new(loop, peer, 1);
    if (c == NULL) {
        free(m);
        return CREST_ENOMEM;
    }
    m->sink = *sink;
    m->in = (crest_buf_t)CREST_BUF_INIT;
    c->tcp.data = m;
    c->flags |= CONN_MEMORY;
    loop->rt->hooks->conn_open(c);
    *out = c;
    return 0;
}

int crest__conn_feed(crest__conn_t *c, const void *data, size_t len) {
    memconn_t *m = c->tcp.data;
    if (c->flags & CONN_CLOSING)
        return CREST_ECANCELED;
    if (m->eof)
        return CREST_EINVAL;
    if (len == 0)
        return 0;
    if (crest_buf_append(&m->in, data, len) != 0)
        return CREST_ENOMEM;
    if (!(c->flags & CONN_READ_PAUSED))
        return mem_kick(c);
    return 0;
}

void crest__conn_feed_end(crest__conn_t *c) {
    memconn_t *m = c->tcp.data;
    if (c->flags & CONN_CLOSING)
        return;
    m->eof = 1;
    if (!(c->flags & CONN_READ_PAUSED) && mem_kick(c) != 0)
        crest__conn_close(c); /* no memory to wait with: the client is gone either way */
}
