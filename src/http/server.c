/* Connections: accept, read, parse, dispatch, write, time out, close.
 *
 * Reads land in the loop's scratch buffer. Complete requests are parsed and answered in place;
 * only the bytes of a request that has not fully arrived are copied into the connection's rx
 * buffer, so an idle keep-alive connection owns no buffer. Every response of one read batch is
 * appended to the loop's batch queue and written with one uv_try_write (a writev) at the end of
 * the batch; only what the kernel does not take at once is copied into a per-connection tx. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "http/conn.h"

#define SCRATCH_SIZE (64 * 1024)
#define LINGER_MS 2000

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

static void on_close(uv_handle_t *h) {
    crest__conn_t *c = CREST__CONTAINER_OF(h, crest__conn_t, tcp);
    crest_loop_t *loop = conn_loop(c);
    free(c);
    crest__count(&loop->open_conns, -1);
    crest__loop_maybe_finish(loop);
}

static void rx_free(crest__conn_t *c) {
    if (c->rx) {
        free(c->rx->buf);
        free(c->rx);
        c->rx = NULL;
    }
}

void crest__conn_close(crest__conn_t *c) {
    if (c->flags & CONN_CLOSING)
        return;
    c->flags |= CONN_CLOSING;
    crest_loop_t *loop = conn_loop(c);
    crest__wheel_disarm(&loop->wheel, &c->timer);
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
    dst->total = 0;
    for (size_t i = 0; i < dst->nsegs; i++)
        dst->total += dst->segs[i].len;
}

static void tx_start(crest__conn_t *c);

static void tx_free(crest__tx_t *tx) {
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
    tx->inflight.nsegs = 0;
    tx->inflight.total = 0;
    tx->inflight.bytes.len = 0;
    if (status < 0 || (c->flags & CONN_CLOSING)) {
        c->tx = NULL;
        tx_free(tx);
        crest__conn_close(c);
        return;
    }
    if (tx->pending.total > 0) {
        tx_start(c);
        return;
    }
    c->tx = NULL;
    tx_free(tx);
    if (c->flags & CONN_CLOSE_AFTER_WRITE) {
        if (c->req == NULL)
            conn_linger(c);
        return;
    }
    if (c->proto) {
        if (c->proto->on_drain)
            c->proto->on_drain(c);
        return;
    }
    if (c->req == NULL) {
        resume_reading(c);
        conn_idle(c);
    }
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
        crest__conn_close(c); /* tx stays linked; freed below since no callback will come */
        c->tx = NULL;
        tx_free(tx);
        return;
    }
    crest_loop_t *loop = conn_loop(c);
    if (tx->inflight.total + tx->pending.total > loop->app->opts.max_output)
        pause_reading(c);
    /* A client that stops reading is cut off after body_timeout without progress. */
    if (c->req == NULL && c->proto == NULL)
        crest__wheel_arm(&loop->wheel, &c->timer, loop->app->opts.body_timeout_ms);
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

void crest__conn_flush(crest__conn_t *c) {
    crest_loop_t *loop = conn_loop(c);
    if (c->flags & CONN_CLOSING)
        return;
    if (loop->batch_conn == c) {
        crest__outq_t *q = &loop->batch;
        loop->batch_conn = NULL;
        if (q->total > 0) {
            uv_buf_t stackbufs[32];
            uv_buf_t *bufs = q->nsegs <= 32 ? stackbufs : malloc(q->nsegs * sizeof(*bufs));
            if (bufs == NULL) {
                crest__outq_free(q);
                crest__conn_close(c);
                return;
            }
            size_t n = outq_bufs(q, 0, 0, bufs);
            int written = uv_try_write((uv_stream_t *)&c->tcp, bufs, (unsigned)n);
            if (bufs != stackbufs)
                free(bufs);
            if (written < 0 && written != UV_EAGAIN) {
                crest__outq_free(q);
                crest__conn_close(c);
                return;
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
                q->nsegs = 0;
                q->total = 0;
                q->bytes.len = 0;
                if (q->bytes.cap > 4 * SCRATCH_SIZE) /* do not keep a huge batch buffer around */
                    crest_buf_free(&q->bytes);
            }
        }
    }
    if (c->tx) {
        if (c->tx->inflight.total == 0 && c->tx->pending.total > 0)
            tx_start(c); /* no write in flight: start one */
        return;
    }
    if ((c->flags & CONN_CLOSE_AFTER_WRITE) && c->req == NULL)
        conn_linger(c);
}

/* ---- timeouts ---- */

static void on_conn_timer(crest__wheel_node_t *node) {
    crest__conn_t *c = CREST__CONTAINER_OF(node, crest__conn_t, timer);
    if (c->proto && !(c->flags & (CONN_LINGERING | CONN_CLOSING))) {
        c->proto->on_timer(c);
        return;
    }
    if (c->flags & (CONN_LINGERING | CONN_CLOSING) || c->tx != NULL || c->req != NULL) {
        crest__conn_close(c); /* linger over, or a reader that stopped reading */
        return;
    }
    if (c->rx != NULL) {
        /* Header or body timeout: the request did not arrive in time. */
        rx_free(c);
        crest__send_error(c, 408, 1);
        return;
    }
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
    if (c->flags & CONN_CLOSING || c->rx || c->req || c->tx)
        return;
    if (loop->draining) {
        crest__conn_close(c);
        return;
    }
    crest__wheel_arm(&loop->wheel, &c->timer, loop->app->opts.keepalive_timeout_ms);
}

/* ---- reading and parsing ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    crest_loop_t *loop = h->loop->data;
    buf->base = loop->scratch;
    buf->len = loop->scratch_size;
}

static int rx_reserve(crest__rx_t *rx, size_t need) {
    if (need <= rx->cap)
        return 0;
    size_t cap = rx->cap ? rx->cap : 1024;
    while (cap < need)
        cap *= 2;
    char *p = realloc(rx->buf, cap);
    if (p == NULL)
        return CREST_ENOMEM;
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
    if (rx_reserve(rx, len) != 0)
        return CREST_ENOMEM;
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
            reject(c, 503);
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
            if (rx_save(c, p, n) != 0 || rx_reserve(c->rx, hl + cl) != 0) {
                reject(c, 503);
                return n;
            }
            c->rx->head_len = hl;
            send_continue(c, head);
            crest__wheel_arm(&loop->wheel, &c->timer, o->body_timeout_ms);
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
            if (rx_save(c, p, hl + body_len) != 0) {
                reject(c, 503);
                return n;
            }
            c->rx->head_len = hl;
            c->rx->body_len = body_len;
            c->rx->raw_off = hl + body_len;
            c->rx->chunked = saved;
            send_continue(c, head);
            crest__wheel_arm(&loop->wheel, &c->timer, o->body_timeout_ms);
            return 0;
        }
        body = (crest_str_t){p + hl, body_len};
        used = raw_off;
    }
    crest__wheel_disarm(&loop->wheel, &c->timer);
    dispatch(c, head, body);
    return used;
}

/* Parse and answer what arrived. data is the scratch buffer (or NULL, len 0, to go on with
 * input buffered while a request was answered later). */
static void conn_process(crest__conn_t *c, char *data, size_t len) {
    crest_loop_t *loop = conn_loop(c);
    crest__http_date_refresh(loop);
    if (c->rx) {
        crest__rx_t *rx = c->rx;
        if (len > 0) {
            if (rx_reserve(rx, rx->len + len) != 0) {
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
    while (pos < len && c->req == NULL && c->proto == NULL &&
           !(c->flags & (CONN_CLOSE_AFTER_WRITE | CONN_CLOSING))) {
        crest__rx_t *rx = c->rx && data == c->rx->buf ? c->rx : NULL;
        size_t used = handle_request(c, data + pos, len - pos, rx);
        if (used == 0) {
            pos = len; /* saved in rx (from scratch) or kept in place (rx) */
            break;
        }
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
        /* Stopped by a request answered later: keep the pipelined rest. */
        if (rx_save(c, data + pos, len - pos) != 0)
            crest__conn_close(c);
        else
            rx_reset(c->rx);
    }
    c->flags &= ~CONN_IN_DISPATCH;
    crest__conn_flush(c);
    if (c->req != NULL && c->rx != NULL && c->rx->len > loop->app->opts.max_header_bytes)
        pause_reading(c); /* do not buffer an unbounded pipeline behind a slow answer */
    conn_idle(c);
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
    if (c->req != NULL) {
        /* Pipelined input behind a request answered later waits in rx. */
        crest_loop_t *loop = conn_loop(c);
        crest__rx_t *rx = c->rx;
        if (rx == NULL && (rx = c->rx = calloc(1, sizeof(*rx))) == NULL) {
            crest__conn_close(c);
            return;
        }
        if (rx_reserve(rx, rx->len + (size_t)nread) != 0) {
            crest__conn_close(c);
            return;
        }
        memcpy(rx->buf + rx->len, buf->base, (size_t)nread);
        rx->len += (size_t)nread;
        if (rx->len > loop->app->opts.max_header_bytes)
            pause_reading(c);
        return;
    }
    conn_process(c, buf->base, (size_t)nread);
}

size_t crest__conn_buffered(const crest__conn_t *c) {
    crest_loop_t *loop = c->tcp.loop->data;
    size_t n = c->tx ? c->tx->inflight.total + c->tx->pending.total : 0;
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
    /* The read batch (conn_process) hands the bytes after the request to the protocol. */
    return 0;
}

void crest__conn_request_done(crest__conn_t *c) {
    c->req = NULL;
    if (c->flags & (CONN_IN_DISPATCH | CONN_CLOSING))
        return; /* the read batch in progress goes on by itself */
    crest__conn_flush(c);
    if (c->flags & (CONN_CLOSING | CONN_CLOSE_AFTER_WRITE))
        return;
    if (c->tx == NULL)
        resume_reading(c);
    if (c->rx != NULL && c->rx->len > 0)
        conn_process(c, NULL, 0);
    else
        conn_idle(c);
}

/* ---- accepting ---- */

static void on_connection(uv_stream_t *server, int status) {
    crest_loop_t *loop = server->loop->data;
    if (status < 0) {
        crest__log(loop->app, CREST_LOG_WARN, "accept: %s", uv_strerror(status));
        return;
    }
    crest__conn_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        crest__log(loop->app, CREST_LOG_ERROR, "accept: out of memory");
        return;
    }
    uv_tcp_init(&loop->uv, &c->tcp);
    crest__count(&loop->open_conns, 1);
    crest__count(&loop->accepted, 1);
    c->timer.cb = on_conn_timer;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
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

int crest__http_loop_start(crest_loop_t *loop) {
    int rc = uv_tcp_init(&loop->uv, &loop->listener);
    if (rc != 0)
        return rc;
    loop->scratch_size = SCRATCH_SIZE;
    loop->scratch = malloc(SCRATCH_SIZE);
    loop->head = malloc(sizeof(crest__http_head_t));
    if (loop->scratch == NULL || loop->head == NULL)
        return CREST_ENOMEM;
    crest__http_date_refresh(loop);
    rc = uv_tcp_open(&loop->listener, loop->listen_fd);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&loop->listener, loop->app->opts.backlog, on_connection);
    return rc;
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
    free(loop->scratch);
    free(loop->head);
    loop->scratch = NULL;
    loop->head = NULL;
}

/* ---- shutdown ---- */

static void drain_walk(uv_handle_t *h, void *arg) {
    crest_loop_t *loop = arg;
    if (h->type != UV_TCP || h == (uv_handle_t *)&loop->listener || uv_is_closing(h))
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
    if (!uv_is_closing((uv_handle_t *)&loop->listener))
        uv_close((uv_handle_t *)&loop->listener, NULL);
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
