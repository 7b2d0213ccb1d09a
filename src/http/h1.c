/* HTTP/1.1: the protocol every connection starts with.
 *
 * Requests are parsed in place in the loop's read buffer; only the bytes of a request that has
 * not fully arrived are copied into the connection's rx buffer, so an idle keep-alive connection
 * owns no buffer. Pipelined requests are answered in one batch whose responses go out in one
 * write. Responses are serialised straight into the connection's output queue: the whole head in
 * one reserved run of bytes, a copied body right behind it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"

/* Output one read batch of a connection may produce before the loop serves others: a few
 * large answers, or thousands of small pipelined ones. */
#define BATCH_OUTPUT (32 * 1024)

/* The bytes of a request that has not fully arrived (it exists only then: an idle connection
 * has none). The request always starts at buf[0]. Owner: its connection. */
typedef struct crest__h1_rx_s {
    char *buf;
    size_t len;
    size_t cap;
    size_t scanned;  /* head scan state for crest__http_parse_head */
    size_t head_len; /* 0 until the head is complete */
    size_t body_len; /* decoded body bytes at buf[head_len ..] */
    size_t raw_off;  /* chunked: first byte not decoded yet */
    crest__http_chunked_t chunked;
    uint64_t body_start; /* loop time (ms) when the body began to arrive */
    unsigned continue_sent : 1;
    unsigned header_timer : 1; /* the header deadline is armed for this request */
} h1_rx_t;

typedef crest__h1_t h1_t;

enum {
    H1_IN_DISPATCH = 1 << 0,   /* inside the read batch: it flushes at its end */
    H1_INPUT_PENDING = 1 << 1, /* rx holds bytes not parsed yet (a batch stopped before them) */
};

static void h1_batch(crest__conn_t *c, char *data, size_t len, uint64_t start);
static void h1_next(crest__conn_t *c);

static crest_loop_t *conn_loop(const crest__conn_t *c) {
    return c->tcp.loop->data;
}

static h1_t *h1_of(crest__conn_t *c) {
    return crest__conn_extra(c);
}

/* ---- the request buffer ---- */

static void rx_free(crest__conn_t *c) {
    h1_t *h = h1_of(c);
    if (h->rx) {
        crest__mem_give(conn_loop(c)->rt, conn_loop(c), h->rx->cap);
        free(h->rx->buf);
        free(h->rx);
        h->rx = NULL;
    }
    c->pflags &= ~(uint32_t)H1_INPUT_PENDING;
}

/* Make room for `need` bytes; rx->cap is what the memory budget holds for rx (CREST_ENOBUFS
 * when it is used up). */
static int rx_reserve(crest__conn_t *c, h1_rx_t *rx, size_t need) {
    if (need <= rx->cap)
        return 0;
    size_t cap = rx->cap ? rx->cap : 1024;
    while (cap < need)
        cap *= 2;
    crest__rt_t *rt = conn_loop(c)->rt;
    if (crest__mem_take(rt, cap - rx->cap) != 0)
        return CREST_ENOBUFS;
    char *p = realloc(rx->buf, cap);
    if (p == NULL) {
        crest__mem_give(rt, NULL, cap - rx->cap);
        return CREST_ENOMEM;
    }
    rx->buf = p;
    rx->cap = cap;
    return 0;
}

/* Forget the parse state of the request at the front (a new request starts there). */
static void rx_reset(h1_rx_t *rx) {
    rx->scanned = rx->head_len = rx->body_len = rx->raw_off = 0;
    rx->continue_sent = rx->header_timer = 0;
}

/* Keep the unfinished request data[0..len) for the next read. */
static int rx_save(crest__conn_t *c, const char *data, size_t len) {
    h1_t *h = h1_of(c);
    if (h->rx == NULL && (h->rx = calloc(1, sizeof(*h->rx))) == NULL)
        return CREST_ENOMEM;
    h1_rx_t *rx = h->rx;
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

/* ---- writing ---- */

/* Write what was queued, unless the read batch in progress will; a connection whose last
 * response said Connection: close lingers once it is all out (crest__conn_flush). */
static void h1_push(crest__conn_t *c) {
    if (!(c->pflags & H1_IN_DISPATCH))
        crest__conn_flush(c);
}

/* The request waiting for a drain callback needs on_written to come. */
static void h1_notify(crest__conn_t *c) {
    crest_req_t *req = h1_of(c)->req;
    if (req != NULL && req->drain_cb != NULL)
        c->flags |= CONN_NOTIFY_WRITTEN;
    else
        c->flags &= ~(uint32_t)CONN_NOTIFY_WRITTEN;
}

/* The request answered later just finished: write, and go on with buffered input after the
 * loop has polled the others. */
static void h1_request_done(crest__conn_t *c) {
    h1_of(c)->req = NULL;
    c->flags &= ~(uint32_t)CONN_NOTIFY_WRITTEN;
    if (c->pflags & H1_IN_DISPATCH || c->flags & CONN_CLOSING)
        return; /* the read batch in progress goes on by itself */
    if (c->flags & CONN_CLOSE_AFTER_WRITE)
        rx_free(c); /* whatever the client pipelined behind is not answered */
    crest__conn_flush(c);
    h1_next(c);
}

static int w_head(crest_req_t *req, int status, const char *ctype, int64_t body_len) {
    crest_loop_t *loop = req->loop;
    crest__http_loop_t *hl = crest__http_loop(loop);
    crest__conn_t *c = req->conn;
    crest__outq_t *q = crest__conn_out(c);
    if (q == NULL)
        return CREST_ENOMEM;
    if (!(c->pflags & H1_IN_DISPATCH))
        crest__http_date_refresh(loop); /* a batch refreshed it when it began */
    if (loop->draining)
        req->keep_alive = 0; /* shutting down: this is the connection's last response */
    if (req->body_stream != NULL && !req->body_stream->ended)
        req->keep_alive = 0; /* the rest of a streamed body will not be read */
    if (body_len == -1) {
        if (req->version_minor == 0)
            req->keep_alive = 0; /* HTTP/1.0 has no chunked framing: the body ends at close */
        else
            req->chunked = 1;
    }
    size_t ctype_len = ctype ? strlen(ctype) : 0;
    const crest_app_t *app = crest__app_of(loop);
    size_t hsts_len = c->tls ? app->hsts_len : 0;
    size_t need = 64 + hl->date_line_len + ctype_len + 64 + req->res_headers.len + hsts_len + 64;
    if (q->bytes.cap - q->bytes.len < need) { /* grow once for the whole head */
        size_t cap =
            q->bytes.cap * 2 > q->bytes.len + need ? q->bytes.cap * 2 : q->bytes.len + need;
        char *p = realloc(q->bytes.ptr, cap);
        if (p == NULL)
            return CREST_ENOMEM;
        q->bytes.ptr = p;
        q->bytes.cap = cap;
    }
    char *start = q->bytes.ptr + q->bytes.len, *o = start;
    size_t n;
    const char *line = crest__status_line(status, &n);
    if (line) {
        memcpy(o, line, n);
        o += n;
    } else {
        o += sprintf(o, "HTTP/1.1 %d Unknown\r\n", status);
    }
    memcpy(o, hl->date_line, hl->date_line_len);
    o += hl->date_line_len;
    if (ctype) {
        memcpy(o, "Content-Type: ", 14);
        o += 14;
        memcpy(o, ctype, ctype_len);
        o += ctype_len;
        *o++ = '\r';
        *o++ = '\n';
    }
    if (body_len >= 0) {
        if (status != 204 && status != 304) {
            memcpy(o, "Content-Length: ", 16);
            o += 16;
            char num[24];
            char *d = crest__fmt_u64(num + sizeof(num), (uint64_t)body_len);
            memcpy(o, d, (size_t)(num + sizeof(num) - d));
            o += num + sizeof(num) - d;
            *o++ = '\r';
            *o++ = '\n';
        }
    } else if (req->chunked) {
        memcpy(o, "Transfer-Encoding: chunked\r\n", 28);
        o += 28;
    }
    memcpy(o, req->res_headers.ptr ? req->res_headers.ptr : "", req->res_headers.len);
    o += req->res_headers.len;
    memcpy(o, app->hsts, hsts_len);
    o += hsts_len;
    if (!req->keep_alive) {
        memcpy(o, "Connection: close\r\n", 19);
        o += 19;
    } else if (req->version_minor == 0) {
        memcpy(o, "Connection: keep-alive\r\n", 24);
        o += 24;
    }
    *o++ = '\r';
    *o++ = '\n';
    q->bytes.len += (size_t)(o - start);
    return crest__outq_commit(q, (size_t)(o - start));
}

static int w_body(crest_req_t *req, const void *data, size_t len, crest_release_cb release,
                  void *arg) {
    crest__outq_t *q = crest__conn_out(req->conn);
    int rc = q ? 0 : CREST_ENOMEM;
    if (rc == 0 && req->chunked) {
        char line[24];
        int n = snprintf(line, sizeof(line), "%zx\r\n", len);
        rc = crest__outq_copy(q, line, (size_t)n);
    }
    if (rc == 0) {
        if (release != NULL) {
            rc = crest__outq_borrow(q, data, len, release, arg);
            release = NULL; /* the queue owns the release now, even on failure */
        } else {
            rc = crest__outq_copy(q, data, len);
        }
    }
    if (rc == 0 && req->chunked)
        rc = crest__outq_copy(q, "\r\n", 2);
    if (release != NULL)
        release(arg);
    return rc;
}

static int w_end(crest_req_t *req) {
    if (!req->chunked || req->head_only)
        return 0;
    crest__outq_t *q = crest__conn_out(req->conn);
    return q ? crest__outq_copy(q, "0\r\n\r\n", 5) : CREST_ENOMEM;
}

/* The request leaves its connection and is recycled; the connection goes on. */
static void w_finish(crest_req_t *req) {
    crest__conn_t *c = req->conn;
    if (c != NULL && !req->keep_alive)
        c->flags |= CONN_CLOSE_AFTER_WRITE;
    crest__req_free(req);
    if (c != NULL && h1_of(c)->req == req) /* compares the pointer only: req is recycled */
        h1_request_done(c);
}

static size_t w_buffered(const crest_req_t *req) {
    return crest__conn_buffered(req->conn);
}

static void w_push(crest_req_t *req) {
    h1_push(req->conn);
}

static void w_want_drain(crest_req_t *req) {
    /* Outside a read batch the output is already in a write whose completion checks the mark;
     * inside one, the batch's flush sees the flag and writes asynchronously. */
    h1_notify(req->conn);
    h1_push(req->conn);
}

static void w_abort(crest_req_t *req) {
    crest__conn_close(req->conn); /* detaches req from its connection */
}

/* The file goes straight from the page cache to the socket, after what is queued before it;
 * inside a read batch the batch's output is still to be written first. */
static int64_t w_sendfile(crest_req_t *req, int fd, uint64_t *off, uint64_t len) {
    crest__conn_t *c = req->conn;
    if (c->tls != NULL)
        return CREST_ENOTSUP;
    if (c->pflags & H1_IN_DISPATCH)
        return 0;
    if (crest__conn_buffered(c) > 0) {
        crest__conn_flush(c);
        if (c->flags & CONN_CLOSING)
            return CREST_ECANCELED;
        if (crest__conn_buffered(c) > 0)
            return 0;
    }
    return crest__conn_sendfile(c, fd, off, len);
}

static void w_body_pull(crest_req_t *req);

const crest__writer_t crest__h1_writer = {
    w_head, w_body,       w_end,   w_finish,    w_buffered,
    w_push, w_want_drain, w_abort, w_body_pull, w_sendfile,
};

void crest__send_error(crest__conn_t *c, int status, int version_minor) {
    crest_loop_t *loop = conn_loop(c);
    crest_req_t *req = crest__req_new(loop, c, &crest__h1_writer);
    if (req == NULL) {
        crest__conn_close(c);
        return;
    }
    req->version_minor = (unsigned)version_minor & 1;
    req->keep_alive = 0;
    h1_of(c)->req = req;
    crest__res_reject(req, status);
}

/* ---- parsing and dispatching ---- */

static void reject(crest__conn_t *c, int status) {
    rx_free(c);
    crest__send_error(c, status, 1);
}

/* A rejection of a request whose head was read (400 for a missing Host, 413, 417, a bad chunked
 * body, 503): the error handler and the head hooks see its method, path and headers (a CORS
 * origin, a request id). The head points into rx, freed only after the answer was queued. */
static void reject_head(crest__conn_t *c, int status, crest__http_head_t *head) {
    crest_req_t *req = crest__req_new(conn_loop(c), c, &crest__h1_writer);
    if (req == NULL) {
        reject(c, status);
        return;
    }
    req->head = head;
    req->method = head->method_id;
    req->version_minor = (unsigned)head->version_minor & 1;
    req->head_only = head->method_id == CREST_METHOD_HEAD;
    req->keep_alive = 0;
    h1_of(c)->req = req;
    crest__res_reject(req, status);
    rx_free(c);
}

/* Queue the interim 100 Continue the client waits for before it sends the body (RFC 9110
 * 10.1.1); 0, or nonzero when the connection was closed for want of memory. */
static int queue_continue(crest__conn_t *c) {
    crest__outq_t *q = crest__conn_out(c);
    if (q != NULL && crest__outq_copy(q, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0)
        return 0;
    crest__conn_close(c);
    return 1;
}

static void send_continue(crest__conn_t *c, const crest__http_head_t *head) {
    h1_rx_t *rx = h1_of(c)->rx;
    if (!head->expect_continue || head->version_minor == 0 || rx == NULL || rx->continue_sent)
        return;
    rx->continue_sent = 1;
    queue_continue(c);
}

/* The body of a request whose route streams it (crest_app_route_stream) is read as it comes,
 * after the chain ran with the head alone: its framing is kept with it. 0 or CREST_ENOMEM. */
static int stream_begin(crest__conn_t *c, crest_req_t *req, const crest__http_head_t *head,
                        uint64_t limit) {
    crest__body_t *b = crest__body_new(req, limit);
    if (b == NULL)
        return CREST_ENOMEM;
    b->framing = (uint8_t)head->body_kind; /* LENGTH or CHUNKED: only those stream */
    if (head->body_kind == CREST__BODY_LENGTH) {
        b->remaining = head->content_length;
        b->ended = b->remaining == 0;
    } else {
        crest__http_chunked_init(&b->chunked, 4096, conn_loop(c)->rt->opts->max_header_bytes);
    }
    return 0;
}

/* Run the request through the chain. stream_limit > 0: its route streams the body (body is
 * empty; the body follows through body_feed). */
static void dispatch(crest__conn_t *c, crest__http_head_t *head, crest_str_t body,
                     uint64_t stream_limit) {
    crest_loop_t *loop = conn_loop(c);
    crest_req_t *req = crest__req_new(loop, c, &crest__h1_writer);
    if (req == NULL) {
        reject(c, 503);
        return;
    }
    h1_t *h = h1_of(c);
    req->head = head;
    req->body = body;
    req->method = head->method_id;
    req->version_minor = (unsigned)head->version_minor & 1;
    req->keep_alive = head->keep_alive && !loop->draining;
    req->head_only = head->method_id == CREST_METHOD_HEAD;
    h->req = req;
    h->requests++;
    if (stream_limit > 0 && stream_begin(c, req, head, stream_limit) != 0) {
        req->keep_alive = 0;
        crest__res_reject(req, 503);
        return;
    }
    crest__http_dispatch(req, &h->req);
}

/* ---- a streamed request body ---- */

/* Arm the body's deadline (the connection's timer, unless output being written holds it for the
 * write deadline: h1_on_written arms this again once that is met, keeping the rate's measure, so
 * that writes the body causes (an echo) do not excuse a client that trickles it). */
static void body_deadline(crest__conn_t *c) {
    crest_loop_t *loop = conn_loop(c);
    if (c->tx == NULL)
        crest__wheel_arm(&loop->wheel, &c->timer, loop->rt->opts->body_timeout_ms);
}

/* Hand the streamed body of the connection's request what data[0..len) holds of it (its framing
 * taken off in place) while the consumer takes it; then its end, once all arrived. Returns the
 * bytes used; the rest is the client's next request, or body the consumer did not want yet. The
 * request may have ended on return (h->req tells). */
static size_t body_feed(crest__conn_t *c, crest_req_t *req, char *data, size_t len) {
    h1_t *h = h1_of(c);
    crest__body_t *b = req->body_stream;
    size_t pos = 0;
    while (pos < len && !b->ended && crest__body_wants(req)) {
        char *piece = data + pos;
        size_t n;
        if (b->framing == CREST__BODY_LENGTH) {
            n = len - pos < b->remaining ? len - pos : (size_t)b->remaining;
            b->remaining -= n;
            b->ended = b->remaining == 0;
            pos += n;
        } else {
            size_t consumed = 0;
            n = len - pos;
            int d = crest__http_chunked_decode(&b->chunked, piece, &n, &consumed);
            if (d < 0) { /* the answer closes the connection: the body never ended */
                crest__body_end(req, CREST_EINVAL);
                return len;
            }
            b->ended = d == 1;
            pos += consumed;
        }
        if (n > 0 && (crest__body_data(req, piece, n) != 0 || h->req != req))
            break;
    }
    if (h->req != req)
        return pos;
    if (b->ended && crest__body_wants(req))
        crest__body_end(req, 0);
    if (h->req == req && !crest__body_open(req) && c->tx == NULL)
        crest__wheel_disarm(&conn_loop(c)->wheel, &c->timer); /* the body's deadline is over */
    return pos;
}

/* The consumer is ready: what rx holds of the body first, then reading again. */
static void body_pull(crest__conn_t *c, crest_req_t *req) {
    h1_t *h = h1_of(c);
    if (!crest__body_wants(req))
        return;
    h1_rx_t *rx = h->rx;
    size_t used = body_feed(c, req, rx ? rx->buf : NULL, rx ? rx->len : 0);
    if (c->flags & CONN_CLOSING)
        return;
    if (h->rx != NULL && used > 0) {
        /* What rx still holds is more body for later, or the client's next request. */
        if (used == h->rx->len) {
            rx_free(c);
        } else {
            memmove(h->rx->buf, h->rx->buf + used, h->rx->len - used);
            h->rx->len -= used;
        }
    }
    if (h->req == req && crest__body_open(req) && h->rx == NULL)
        crest__conn_reading(c, 1);
}

static void w_body_pull(crest_req_t *req) {
    crest__conn_t *c = req->conn;
    crest__body_t *b = req->body_stream;
    if (!b->continued && !b->ended && !req->started && req->version_minor == 1 &&
        req->head != NULL && req->head->expect_continue) {
        b->continued = 1;
        if (queue_continue(c))
            return;
        h1_push(c);
    }
    crest__conn_park(c); /* h1_on_resume feeds it */
}

/* The head is complete and the body is not: its deadline starts (once, not per read). */
static void body_begins(crest__conn_t *c, size_t head_len) {
    crest_loop_t *loop = conn_loop(c);
    h1_rx_t *rx = h1_of(c)->rx;
    rx->head_len = head_len;
    rx->body_start = uv_now(&loop->uv);
    crest__wheel_arm(&loop->wheel, &c->timer, loop->rt->opts->body_timeout_ms);
}

/* Handle the request at p[0..n). rx is the connection's rx when p is its buffer (then the
 * request's parse state continues), NULL when p is the loop's scratch. Returns the bytes the
 * request took (it was answered or rejected), or 0 when it is incomplete and was saved. */
static size_t handle_request(crest__conn_t *c, char *p, size_t n, h1_rx_t *rx) {
    crest_loop_t *loop = conn_loop(c);
    const crest_app_opts_t *o = loop->rt->opts;
    crest__http_head_t *head = &crest__http_loop(loop)->head;
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
        h1_rx_t *saved = h1_of(c)->rx;
        saved->scanned = scanned;
        if (!saved->header_timer) {
            /* The header deadline runs from the first byte, not from the last read. */
            saved->header_timer = 1;
            crest__wheel_arm(&loop->wheel, &c->timer, o->header_timeout_ms);
        }
        return 0;
    }
    size_t hl = (size_t)r;
    if (head->version_minor == 1 && !head->has_host) {
        reject_head(c, 400, head);
        return n;
    }
    if (head->expect_unknown) {
        reject_head(c, 417, head);
        return n;
    }
    crest_str_t body = {NULL, 0};
    size_t used = hl;
    /* Only a request with a body looks its route up here (the chain gives a bodiless one to a
     * streaming route with its body ended). */
    const crest_app_t *app = crest__app_of(loop);
    uint64_t stream = app->stream_routes && head->body_kind != CREST__BODY_NONE
                          ? crest__app_body_streams(app, head->method_id, head->path)
                          : 0;
    if (stream > 0) {
        if (head->body_kind == CREST__BODY_LENGTH && head->content_length > stream) {
            reject_head(c, 413, head);
            return n;
        }
    } else if (head->body_kind == CREST__BODY_LENGTH) {
        if (head->content_length > o->max_body) {
            reject_head(c, 413, head);
            return n;
        }
        size_t cl = (size_t)head->content_length;
        if (n - hl < cl) {
            if (rx != NULL && rx->head_len > 0)
                return 0; /* more of a body already under way: its deadline is running */
            /* The whole body is reserved (and charged to the budget) now: refusing it before
             * the client sends it beats refusing it half-way. */
            if (rx_save(c, p, n) != 0 || rx_reserve(c, h1_of(c)->rx, hl + cl) != 0) {
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
            reject_head(c, 400, head);
            return n;
        }
        memmove(p + hl + body_len, p + raw_off, dec);
        body_len += dec;
        raw_off += consumed;
        if (body_len > o->max_body) {
            reject_head(c, 413, head);
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
            h1_rx_t *r2 = h1_of(c)->rx;
            r2->body_len = body_len;
            r2->raw_off = hl + body_len;
            r2->chunked = saved;
            send_continue(c, head);
            return 0;
        }
        body = (crest_str_t){p + hl, body_len};
        used = raw_off;
    }
    if (c->tx != NULL && crest__mem_over(loop->rt)) {
        /* Past the buffer budget, a connection that already holds unsent output gets no more
         * work (a fresh one still does: /metrics must answer during an overload). */
        reject_head(c, 503, head);
        return n;
    }
    if (c->tx != NULL)
        crest__conn_write_deadline(c); /* output of earlier requests is still being written */
    else
        crest__wheel_disarm(&loop->wheel, &c->timer);
    dispatch(c, head, body, stream);
    crest_req_t *req = h1_of(c)->req;
    if (stream > 0 && req != NULL && crest__body_open(req)) {
        crest__body_rate_mark(req->body_stream, uv_now(&loop->uv));
        body_deadline(c);
    }
    return used;
}

/* Parse and answer what arrived. data is the scratch buffer (or NULL, len 0, to go on with
 * input buffered in rx). One call is one batch: it stops early, keeping the rest in rx, once the
 * connection has max_output queued (before the next request's work, so a client that does not
 * read cannot make us produce more) or has used its share of the loop (batch_requests requests
 * or batch_us), so that one connection's pipeline cannot hold the others up. */
static void h1_batch(crest__conn_t *c, char *data, size_t len, uint64_t start) {
    crest_loop_t *loop = conn_loop(c);
    const crest_app_opts_t *o = loop->rt->opts;
    h1_t *h = h1_of(c);
    crest__http_date_refresh(loop);
    c->pflags &= ~(uint32_t)H1_INPUT_PENDING;
    if (h->rx) {
        h1_rx_t *rx = h->rx;
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
    crest__conn_batch_begin(c);
    c->pflags |= H1_IN_DISPATCH;
    size_t pos = 0;
    unsigned served = 0;
    size_t out0 = 0;
    while (pos < len && h->req == NULL && c->proto == &crest__h1_proto &&
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
        h1_rx_t *rx = h->rx && data == h->rx->buf ? h->rx : NULL;
        size_t used = handle_request(c, data + pos, len - pos, rx);
        if (used == 0) {
            pos = len; /* saved in rx (from scratch) or kept in place (rx) */
            break;
        }
        served++;
        pos += used;
        if (h->rx && data == h->rx->buf && !(c->flags & CONN_CLOSING)) {
            /* The request at the front of rx is done: move the rest to the front with a fresh
             * parse state, or free rx when nothing is left. */
            h1_rx_t *r = h->rx;
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
    if (c->proto != &crest__h1_proto) {
        /* Upgraded: what followed the upgrade request belongs to the new protocol. */
        c->pflags &= ~(uint32_t)H1_IN_DISPATCH;
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
            rx_reset(h->rx);
            c->pflags |= H1_INPUT_PENDING;
        }
    }
    c->pflags &= ~(uint32_t)H1_IN_DISPATCH;
    if (c->flags & CONN_CLOSE_AFTER_WRITE)
        rx_free(c); /* whatever the client pipelined behind is not answered */
    h1_notify(c);
    crest__conn_flush(c);
    if (h->req != NULL && h->rx != NULL && h->rx->len > o->max_header_bytes)
        crest__conn_reading(c, 0); /* do not buffer an unbounded pipeline behind a slow answer */
    h1_next(c);
}

/* One batch, its time added to the loop's turn. */
static void h1_process(crest__conn_t *c, char *data, size_t len) {
    crest_loop_t *loop = conn_loop(c);
    uint64_t start = uv_hrtime();
    h1_batch(c, data, len, start);
    loop->turn_ns += uv_hrtime() - start;
}

/* ---- the protocol ---- */

/* Nothing in flight: wait for the next request, or close when shutting down. */
static void h1_idle(crest__conn_t *c) {
    crest_loop_t *loop = conn_loop(c);
    h1_t *h = h1_of(c);
    if (c->flags & (CONN_CLOSING | CONN_LINGERING) || h->req || c->tx)
        return;
    if (h->rx) {
        /* Part of a request: its deadline may have given way to a write deadline meanwhile. */
        if (c->timer.next == NULL)
            crest__wheel_arm(&loop->wheel, &c->timer,
                             h->rx->head_len ? loop->rt->opts->body_timeout_ms
                                             : loop->rt->opts->header_timeout_ms);
        return;
    }
    if (loop->draining) {
        /* Not closed at once: a request may be on its way (see CREST__DRAIN_GRACE_MS); it is
         * answered with Connection: close, and otherwise the close is a clean one (a linger). */
        crest__wheel_arm(&loop->wheel, &c->timer, CREST__DRAIN_GRACE_MS);
        return;
    }
    crest__wheel_arm(&loop->wheel, &c->timer, loop->rt->opts->keepalive_timeout_ms);
}

/* The connection has no request in progress and nothing blocks it: decide what comes next. */
static void h1_next(crest__conn_t *c) {
    h1_t *h = h1_of(c);
    if (c->flags & (CONN_CLOSING | CONN_LINGERING | CONN_CLOSE_AFTER_WRITE) ||
        c->proto != &crest__h1_proto || h->req)
        return;
    crest_loop_t *loop = conn_loop(c);
    if (crest__conn_buffered(c) > loop->rt->opts->max_output) {
        crest__conn_reading(c, 0); /* on_written comes back here */
        return;
    }
    if (c->pflags & H1_INPUT_PENDING) {
        crest__conn_reading(c, 0); /* nothing more is read until what we have is parsed */
        crest__conn_park(c);
        return;
    }
    crest__conn_reading(c, 1);
    h1_idle(c);
}

/* The HTTP/2 connection preface (RFC 9113 3.4): a client that knows the server speaks HTTP/2
 * (prior knowledge, on cleartext) sends it instead of a first request. */
static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_PREFACE_LEN (sizeof(h2_preface) - 1)

/* The connection's first bytes so far (the prefix in rx, then data) are the HTTP/2 preface or
 * the start of it: switch to HTTP/2 once it is whole, or keep the prefix in rx until it is.
 * Returns 0, having taken nothing, for anything else (HTTP/1.1 goes on). */
static int h1_maybe_h2(crest__conn_t *c, char *data, size_t len) {
    h1_t *h = h1_of(c);
    size_t have = h->rx ? h->rx->len : 0;
    size_t n = len < H2_PREFACE_LEN - have ? len : H2_PREFACE_LEN - have;
    if ((have > 0 && memcmp(h->rx->buf, h2_preface, have) != 0) ||
        memcmp(data, h2_preface + have, n) != 0)
        return 0;
    if (have + len < H2_PREFACE_LEN) {
        /* Only a prefix so far: it waits for the rest (HTTP/1.1 would take it for a request line
         * with a version it does not speak). */
        int rc = have == 0 ? rx_save(c, data, len) : rx_reserve(c, h->rx, have + len);
        if (rc != 0) {
            crest__conn_close(c);
            return 1;
        }
        if (have > 0) {
            memcpy(h->rx->buf + have, data, len);
            h->rx->len = have + len;
        }
        return 1;
    }
    char prefix[H2_PREFACE_LEN]; /* rx's bytes: the preface's first `have` */
    memcpy(prefix, h2_preface, have);
    rx_free(c);
    crest__h2_open(c);
    if (have > 0 && !(c->flags & CONN_CLOSING))
        c->proto->on_data(c, prefix, have);
    if (!(c->flags & CONN_CLOSING))
        c->proto->on_data(c, data, len);
    return 1;
}

static void h1_on_data(crest__conn_t *c, char *data, size_t len) {
    crest_loop_t *loop = conn_loop(c);
    h1_t *h = h1_of(c);
    /* Only a connection's first bytes can be the HTTP/2 preface: a served request, or rx holding
     * more than a prefix of it, skip the check. */
    if (h->requests == 0 && (h->rx == NULL || h->rx->len < H2_PREFACE_LEN) &&
        h1_maybe_h2(c, data, len))
        return;
    if (h->req != NULL && h->rx == NULL && crest__body_wants(h->req) && crest__body_open(h->req)) {
        /* A streamed body straight from the read buffer; what is left is the next request. */
        size_t used = body_feed(c, h->req, data, len);
        data += used;
        len -= used;
        if (len == 0 || (c->flags & (CONN_CLOSING | CONN_CLOSE_AFTER_WRITE)))
            return;
    }
    if (h->req != NULL || crest__loop_busy(loop)) {
        /* Pipelined input behind a request answered later waits in rx; so does input that
         * arrives when this turn of the loop has run long already (many connections ready at
         * once, each with expensive requests): it is parsed in the next round of parked
         * connections, after the loop has polled again. */
        h1_rx_t *rx = h->rx;
        if (rx == NULL && (rx = h->rx = calloc(1, sizeof(*rx))) == NULL) {
            crest__conn_close(c);
            return;
        }
        if (rx_reserve(c, rx, rx->len + len) != 0) {
            crest__conn_close(c);
            return;
        }
        memcpy(rx->buf + rx->len, data, len);
        rx->len += len;
        c->pflags |= H1_INPUT_PENDING;
        if (h->req == NULL)
            h1_next(c); /* parks it */
        else if (rx->len > loop->rt->opts->max_header_bytes)
            crest__conn_reading(c, 0);
        return;
    }
    h1_process(c, data, len);
}

static void h1_on_resume(crest__conn_t *c) {
    crest_req_t *req = h1_of(c)->req;
    if (req != NULL && req->body_stream != NULL) {
        body_pull(c, req);
        return;
    }
    if (h1_of(c)->req == NULL && (c->pflags & H1_INPUT_PENDING) &&
        crest__conn_buffered(c) <= conn_loop(c)->rt->opts->max_output)
        h1_process(c, NULL, 0);
    else
        h1_next(c);
}

static void h1_on_written(crest__conn_t *c) {
    crest_req_t *req = h1_of(c)->req;
    if (req != NULL && crest__body_open(req) && c->tx == NULL) {
        /* The write deadline held the timer: the body's own runs again, and reading too if
         * the output stopped it. */
        body_deadline(c);
        if (h1_of(c)->rx == NULL)
            crest__conn_reading(c, 1);
    }
    if (req != NULL) {
        if (req->drain_cb != NULL && crest__conn_buffered(c) <= req->drain_mark) {
            crest_drain_cb cb = req->drain_cb;
            req->drain_cb = NULL;
            c->flags &= ~(uint32_t)CONN_NOTIFY_WRITTEN;
            cb(req, req->drain_arg);
        }
        return;
    }
    h1_next(c);
}

static void h1_on_timer(crest__conn_t *c) {
    crest_loop_t *loop = conn_loop(c);
    const crest_app_opts_t *o = loop->rt->opts;
    h1_t *h = h1_of(c);
    if (h->req != NULL && crest__body_open(h->req)) {
        /* A streamed body's deadline: met while it keeps coming at min_body_rate, and never
         * the client's fault while nobody takes it. Too slow: 408, and the connection closes. */
        crest__body_t *b = h->req->body_stream;
        uint64_t now = uv_now(&loop->uv), elapsed = now - b->rate_start;
        if (!crest__body_wants(h->req) ||
            (b->received - b->rate_mark) * 1000 >= elapsed * o->min_body_rate) {
            crest__body_rate_mark(b, now);
            crest__wheel_arm(&loop->wheel, &c->timer, o->body_timeout_ms);
            return;
        }
        crest__body_end(h->req, CREST_ETIMEDOUT);
        return;
    }
    if (h->req != NULL) {
        crest__conn_close(c);
        return;
    }
    h1_rx_t *rx = h->rx;
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
    if (loop->draining || c->tls != NULL)
        crest__conn_linger(c); /* the shutdown grace is over, or TLS: the end is announced */
    else
        crest__conn_close(c); /* idle keep-alive connection */
}

static void h1_on_shutdown(crest__conn_t *c) {
    h1_idle(c); /* closes it when idle; busy ones close after their response */
}

static void h1_on_close(crest__conn_t *c) {
    h1_t *h = h1_of(c);
    rx_free(c);
    crest_req_t *req = h->req;
    if (req != NULL) {
        /* The request outlives its connection until the application finishes it. */
        h->req = NULL;
        req->conn = NULL;
        req->aborted = 1;
        /* The client left before the body's last call (maybe whole but held by a pause). */
        if (crest__body_owed(req) && crest__body_end(req, CREST_ECANCELED))
            return; /* the app finished req in its body callback */
        if (req->abort_cb)
            req->abort_cb(req, req->abort_arg);
    }
}

const crest__proto_t crest__h1_proto = {
    .on_data = h1_on_data,
    .on_resume = h1_on_resume,
    .on_written = h1_on_written,
    .on_timer = h1_on_timer,
    .on_shutdown = h1_on_shutdown,
    .on_close = h1_on_close,
    .flags = CREST__PROTO_WRITE_DEADLINE | CREST__PROTO_OUTPUT_PAUSES_READ,
};

void crest__h1_open(crest__conn_t *c) {
    c->proto = &crest__h1_proto;
    c->proto_data = h1_of(c);
    /* A connection that never sends a byte is dropped after the header timeout. */
    crest_loop_t *loop = conn_loop(c);
    crest__wheel_arm(&loop->wheel, &c->timer, loop->rt->opts->header_timeout_ms);
}

/* ---- moving a request's connection to another loop thread ----
 *
 * The request is written out again as HTTP/1.1 (its head, and its body with a Content-Length
 * whatever framing it came with), followed by whatever the client sent after it, and the
 * connection moves with those bytes as its first input (crest__conn_move). Until the move is
 * done (output of earlier requests may still be being written) the connection is driven by
 * the small protocol below, which only gathers input. */
typedef struct {
    crest_loop_t *to;
    crest_buf_t replay; /* heap memory: crest__conn_move takes it */
} h1_move_t;

static void mv_try(crest__conn_t *c) {
    h1_move_t *mv = c->proto_data;
    char *replay = mv->replay.ptr;
    mv->replay.ptr = NULL; /* on_close, which the move runs, must not free it */
    int rc = crest__conn_move(c, mv->to, replay, mv->replay.len);
    if (rc == 0)
        return;
    mv->replay.ptr = replay;
    if (rc == CREST_EBUSY)
        c->flags |= CONN_NOTIFY_WRITTEN; /* on_written comes back here */
    else
        crest__conn_close(c);
}

static void mv_on_data(crest__conn_t *c, char *data, size_t len) {
    h1_move_t *mv = c->proto_data;
    const crest_app_opts_t *o = conn_loop(c)->rt->opts;
    /* Bounded like a pipeline behind a request answered later. */
    if (crest_buf_append(&mv->replay, data, len) != 0 ||
        mv->replay.len > o->max_body + 2 * o->max_header_bytes)
        crest__conn_close(c);
}

static void mv_on_written(crest__conn_t *c) {
    if (c->tx == NULL) {
        c->flags &= ~(uint32_t)CONN_NOTIFY_WRITTEN;
        mv_try(c);
    }
}

static void mv_on_timer(crest__conn_t *c) {
    crest__conn_close(c); /* only the write deadline is ever armed here */
}

static void mv_on_close(crest__conn_t *c) {
    h1_move_t *mv = c->proto_data;
    crest_buf_free(&mv->replay);
    free(mv);
}

static const crest__proto_t mv_proto = {
    .on_data = mv_on_data,
    .on_resume = mv_try,
    .on_written = mv_on_written,
    .on_timer = mv_on_timer,
    .on_shutdown = crest__conn_close,
    .on_close = mv_on_close,
    .flags = CREST__PROTO_WRITE_DEADLINE,
};

static int is_framing(crest_str_t name) {
    return crest__str_ieq(name, "content-length") || crest__str_ieq(name, "transfer-encoding") ||
           crest__str_ieq(name, "expect");
}

int crest__req_move(crest_req_t *req, crest_loop_t *to) {
    crest__conn_t *c = req->conn;
    if (c == NULL)
        return CREST_ECANCELED;
    const crest__body_t *bs = req->body_stream;
    if (c->proto != &crest__h1_proto || (c->flags & CONN_MEMORY))
        return CREST_ENOTSUP;
    /* A streamed body can go along only while none of it was taken: its bytes then follow the
     * head as they came, framing and all. */
    if (bs != NULL && (bs->cb != NULL || bs->received > 0 || bs->continued))
        return CREST_ENOTSUP;
    const crest__http_head_t *head = req->head;
    if (head == NULL || h1_of(c)->req != req || req->started)
        return CREST_EINVAL;
    h1_move_t *mv = calloc(1, sizeof(*mv));
    if (mv == NULL)
        return CREST_ENOMEM;
    mv->to = to;
    crest_buf_t *b = &mv->replay;
    crest_buf_printf(b, "%.*s %.*s HTTP/1.%d\r\n", (int)head->method.len, head->method.ptr,
                     (int)head->target.len, head->target.ptr, head->version_minor);
    for (size_t i = 0; i < head->num_headers; i++) {
        const crest_header_t *hd = &head->headers[i];
        if (bs == NULL && is_framing(hd->name))
            continue;
        crest_buf_append(b, hd->name.ptr, hd->name.len);
        crest_buf_append(b, ": ", 2);
        crest_buf_append(b, hd->value.ptr, hd->value.len);
        crest_buf_append(b, "\r\n", 2);
    }
    if (bs == NULL && head->body_kind != CREST__BODY_NONE)
        crest_buf_printf(b, "Content-Length: %zu\r\n", req->body.len);
    crest_buf_append(b, "\r\n", 2);
    if (bs == NULL)
        crest_buf_append(b, req->body.ptr, req->body.len);
    if (b->err) {
        crest_buf_free(b);
        free(mv);
        return CREST_ENOMEM;
    }
    int rc = crest__conn_takeover(req, &mv_proto, mv);
    if (rc != 0) {
        crest_buf_free(b);
        free(mv);
        return rc;
    }
    /* The bytes after the request reach mv_on_data when the read batch goes on; the move is
     * tried after that, once the loop has polled (mv_try). */
    crest__conn_park(c);
    return 0;
}

int crest__conn_takeover(crest_req_t *req, const crest__proto_t *proto, void *proto_data) {
    crest__conn_t *c = req->conn;
    if (c == NULL || (c->flags & CONN_CLOSING))
        return CREST_ECANCELED;
    h1_t *h = h1_of(c);
    if (c->proto != &crest__h1_proto || h->req != req || req->started || req->head == NULL)
        return CREST_EINVAL;
    crest_loop_t *loop = conn_loop(c);
    crest__wheel_disarm(&loop->wheel, &c->timer);
    c->proto = proto;
    c->proto_data = proto_data;
    h->req = NULL;
    c->flags &= ~(uint32_t)CONN_NOTIFY_WRITTEN;
    crest__req_free(req);
    /* HTTP may have stopped reading (the upgrade was parked behind a request answered later, or
     * output was over max_output); the protocol keeps its own limits from here. */
    crest__conn_reading(c, 1);
    /* The read batch (h1_batch) hands the bytes after the request to the protocol. */
    return 0;
}
